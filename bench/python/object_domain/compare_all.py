"""The comparison of docs/object-domain.md: every workload under sgi, pymalloc and malloc
(``stlalloc compare`` on each), interleaved, medians and ratios as a Markdown table, the
raw runs as JSON and the plot.

    python bench/python/object_domain/compare_all.py [--repeat 5] [--plot FILE.png]
        [--json FILE.json]

Needs ``pip install pyperformance pyperf matplotlib`` (the pyperformance rows call the
benchmark code that package ships).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from stlalloc._objcompare import BASELINE, Median, compare, medians, plot
from stlalloc._objdomain import Program

HERE = Path(__file__).resolve().parent
BM = str(HERE / "pyperformance_bm.py")
# name: (script, args); loop counts give each about half a second to a second here.
WORKLOADS = {
    "richards": (BM, ("richards", "3")),
    "deltablue": (BM, ("deltablue", "8")),
    "go": (BM, ("go", "1")),
    "raytrace": (BM, ("raytrace", "1")),
    "deepcopy": (BM, ("deepcopy", "150")),
    "nbody": (BM, ("nbody", "2")),
    "json_roundtrip": (str(HERE / "json_roundtrip.py"), ("5",)),
    "dict_heavy": (str(HERE / "dict_heavy.py"), ("2",)),
    "ast_walk": (str(HERE / "ast_walk.py"), ("3",)),
}


def cpu() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def markdown(rows: dict[str, list[Median]]) -> str:
    out = [
        "| workload | allocator | wall s | CPU s | × pymalloc (CPU) | peak RSS MiB | × pymalloc "
        "| pool share |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, ms in rows.items():
        base = next(m for m in ms if m.allocator == BASELINE)
        for m in ms:
            share = "" if m.pool_share is None else f"{m.pool_share:.1%}"
            out.append(
                f"| {name} | {m.allocator} | {m.seconds:.3f} | {m.cpu_seconds:.3f} "
                f"| {m.cpu_seconds / base.cpu_seconds:.2f} "
                f"| {m.peak_rss_bytes / 2**20:.1f} "
                f"| {m.peak_rss_bytes / base.peak_rss_bytes:.2f} | {share} |"
            )
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument("--json", metavar="FILE.json")
    args = p.parse_args()
    rows: dict[str, list[Median]] = {}
    raw = {}
    for name, (script, wargs) in WORKLOADS.items():
        print(f"== {name}", file=sys.stderr, flush=True)
        results = compare(Program("script", script, wargs), repeat=args.repeat)
        bad = {r.exit_code for runs in results.values() for r in runs} - {0}
        if bad:
            print(f"!! {name} exited with {sorted(bad)}", file=sys.stderr)
            return 1
        rows[name] = medians(results)
        raw[name] = {a: [r.report() for r in runs] for a, runs in results.items()}
    print(f"CPU: {cpu()}; Python {platform.python_version()}; {args.repeat} runs each\n")
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu(), "runs": raw}, indent=1))
    if args.plot:
        title = f"SGI pool vs pymalloc vs malloc as CPython's object allocator ({cpu()})"
        plot(rows, args.plot, title=title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
