"""Type-checks the Python examples of README.md and docs/*.md as users would write them.

Each document's ```python blocks run in order in one namespace (tests/tools/test_readme.py and
tests/tools/test_framework_docs.py run them so), so each document becomes one module. Every block
keeps its line numbers: a checker's "README.md.py:42" is line 42 of README.md. Checked by
`mypy --strict` and, when given, by pyright in strict mode, against the installed stlalloc.

A second set of snippets must be *rejected*: calls the stubs forbid (an `allocator=` without
`deallocate`, a dtype that does not exist). If a checker accepts one, the stubs have gone
loose (`Any` where a type belongs) and this check fails.

    python scripts/typed_examples.py [--pyright]     exit status 1 on any finding
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

# Each must draw, from every checker, an error that names the type it breaks.
REJECTED = {
    "no_deallocate": (
        "Allocator",
        """
import stlalloc

class OnlyAllocate:
    def allocate(self, n: int) -> int:
        return 0

stlalloc.Vector(allocator=OnlyAllocate())  # not an Allocator: no deallocate
""",
    ),
    "allocate_returns_str": (
        "Allocator",
        """
import stlalloc

class Textual:
    def allocate(self, n: int) -> str:
        return ""
    def deallocate(self, p: int, n: int) -> None:
        pass

stlalloc.List(allocator=Textual())  # allocate must return an int address
""",
    ),
    "bad_dtype": (
        "'int32'",
        """
import stlalloc

stlalloc.Vector(dtype="int32")  # dtype is "int64", "float64" or "object"
""",
    ),
    "tracing_any": (
        "Allocator",
        """
import stlalloc

stlalloc.TracingAllocator(42)  # the inner allocator follows the protocol
""",
    ),
}


Checker = Callable[[list[Path], Path], tuple[int, str]]


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def as_module(doc: Path) -> str | None:
    """The document's Python blocks, each on its own lines, everything else blank."""
    text = doc.read_text()
    lines = [""] * (text.count("\n") + 1)
    found = False
    for m in BLOCK.finditer(text):
        first = text.count("\n", 0, m.start(1))
        for i, line in enumerate(m.group(1).splitlines()):
            lines[first + i] = line
        found = True
    return "\n".join(lines) if found else None


def run(cmd: list[str], files: list[Path], workdir: Path) -> tuple[int, str]:
    """``cmd`` on ``files`` from ``workdir``, so that findings name "examples/README.md.py"."""
    names = [str(f.relative_to(workdir)) for f in files]
    proc = subprocess.run([*cmd, *names], capture_output=True, text=True, cwd=workdir)
    return proc.returncode, (proc.stdout + proc.stderr).replace(f"{workdir}/", "")


def mypy(files: list[Path], workdir: Path) -> tuple[int, str]:
    # --no-incremental: a cache could hide a stub that changed under the same mtime.
    cmd = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--no-error-summary"]
    return run(cmd, files, workdir)


def pyright(files: list[Path], workdir: Path) -> tuple[int, str]:
    config = workdir / "pyrightconfig.json"
    config.write_text(json.dumps({"typeCheckingMode": "strict", "pythonVersion": "3.11"}))
    cmd = [sys.executable, "-m", "pyright", "--pythonpath", sys.executable, "-p", config.name]
    return run(cmd, files, workdir)


def main() -> int:
    checkers: dict[str, Checker] = {"mypy --strict": mypy}
    if "--pyright" in sys.argv[1:]:
        checkers["pyright (strict)"] = pyright
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        examples = []
        for doc in documents():
            module = as_module(doc)
            if module is not None:
                path = work / "examples" / f"{doc.name}.py"
                path.parent.mkdir(exist_ok=True)
                path.write_text(module)
                examples.append(path)
        rejected = {}
        for name, (expected, source) in REJECTED.items():
            path = work / "rejected" / f"{name}.py"
            path.parent.mkdir(exist_ok=True)
            path.write_text(source.lstrip())
            rejected[path] = expected
        for label, check in checkers.items():
            code, out = check(examples, work)
            names = ", ".join(p.name[:-3] for p in examples)
            if code != 0:
                print(f"!! {label} rejects the examples of {names}:\n{out}")
                status = 1
            else:
                print(f"{label}: the examples of {names} pass")
            accepted = [p.name for p, why in rejected.items() if not rejects(check, p, why, work)]
            if accepted:
                print(f"!! {label} accepts {', '.join(accepted)}, which the stubs must reject")
                status = 1
            else:
                print(f"{label}: rejects each of the {len(rejected)} ill-typed snippets")
    return status


def rejects(check: Checker, path: Path, expected: str, work: Path) -> bool:
    code, out = check([path], work)
    return code != 0 and expected in out


if __name__ == "__main__":
    sys.exit(main())
