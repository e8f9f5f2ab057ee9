"""Checks the wheels scripts/wheels built, and prints their extensions' sizes.

    python scripts/check_wheels.py dist/*.whl      exit status 1 if any wheel fails

For each wheel: tagged manylinux_2_17 (manylinux2014), so that pip installs it on any
glibc >= 2.17; its extension needs no glibc symbol newer than 2.17 (what the tag promises,
read from the ELF's version needs); the extension is stripped (no .debug_* section, no
.symtab) and at most 3 MB.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MAX_BYTES = 3_000_000
GLIBC_MAX = (2, 17)
TAG = "manylinux_2_17_x86_64"


def readelf(path: Path, *flags: str) -> str:
    return subprocess.run(
        ["readelf", "-W", *flags, str(path)], capture_output=True, text=True, check=True
    ).stdout


def problems(wheel: Path, so: Path) -> list[str]:
    found = []
    if TAG not in wheel.name:
        found.append(f"not tagged {TAG}")
    size = so.stat().st_size
    if size > MAX_BYTES:
        found.append(f"extension is {size:,} bytes, above {MAX_BYTES:,}")
    sections = re.findall(r"\]\s+(\.\S+)", readelf(so, "-S"))
    kept = [s for s in sections if s.startswith(".debug") or s == ".symtab"]
    if kept:
        found.append(f"not stripped: {', '.join(kept)}")
    versions = {
        tuple(map(int, v.split(".")))
        for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", readelf(so, "--version-info"))
    }
    if not versions:
        found.append("no glibc version needs found (readelf output changed?)")
    elif max(versions) > GLIBC_MAX:
        newest = ".".join(map(str, max(versions)))
        found.append(f"needs GLIBC_{newest}, newer than the tag's 2.17")
    return found


def main(wheels: list[str]) -> int:
    if not wheels:
        print("usage: check_wheels.py WHEEL...", file=sys.stderr)
        return 2
    status = 0
    print(f"{'wheel':<80} {'extension bytes':>15}")
    for name in wheels:
        wheel = Path(name)
        with zipfile.ZipFile(wheel) as z, tempfile.TemporaryDirectory() as tmp:
            members = [m for m in z.namelist() if m.endswith(".so")]
            if len(members) != 1:
                print(f"!! {wheel.name}: {len(members)} extensions, expected 1")
                status = 1
                continue
            so = Path(z.extract(members[0], tmp))
            print(f"{wheel.name:<80} {so.stat().st_size:>15,}")
            for problem in problems(wheel, so):
                print(f"!! {wheel.name}: {problem}")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
