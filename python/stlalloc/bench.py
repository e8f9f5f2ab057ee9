"""``python -m stlalloc bench``: pool vs malloc, natively and from Python (SPEC §7).

Two kinds of rows, each measured ``--runs`` times with the competitors interleaved run by
run (so that drift on a busy machine spreads over all of them), then reported as medians:

- native: the SPEC §7 workloads run in Rust inside the extension (``_native._bench``) over
  system malloc, the single-threaded core pool and the pool as a ``PoolAllocator`` holds
  it; no Python code runs per operation. ``listmem`` runs in a fresh interpreter each time,
  since only a fresh process shows resident memory truly.
- python: what a Python caller pays per call: a pool ``allocate``+``deallocate`` pair
  against ``MallocAllocator``, ``bytearray(24)`` and ctypes ``PyMem_Malloc``/``PyMem_Free``;
  ``Vector.push_back`` against ``array('q').append`` and ``list.append``;
  ``List.push_back`` against ``collections.deque.append``.

The ratio column is speed against the row group's baseline (system malloc natively, the
first competitor named for Python rows): baseline time / this time, or for ``listmem``
baseline bytes / these bytes. Above 1 is better.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat

import stlalloc
from stlalloc import _native

NATIVE_WORKLOADS = (
    "pair8", "pair24", "pair64", "pair128", "list", "vec16", "churn", "batch32", "listmem",
)  # fmt: skip
NATIVE_ALLOCATORS = ("malloc", "pool", "shared_pool")
# Python-level calls per run at scale 1: a few tenths of a second per competitor.
PY_CALLS = 1_000_000
QUICK_SCALE = 0.25
QUICK_RUNS = 3

# A measurement: given the Python call count, one run's figure and its iteration count.
Measure = Callable[[int], tuple[float, int]]


@dataclass
class Row:
    lang: str
    workload: str
    allocator: str
    unit: str
    baseline: str
    iterations: int = 0
    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


@dataclass
class Group:
    """Competitors measured together; the first is the baseline."""

    lang: str
    workload: str
    unit: str
    rows: list[Row]
    measures: list[Measure]


def _native_measure(workload: str, allocator: str, scale: float) -> Measure:
    if workload == "listmem":
        return lambda _calls: _listmem_in_child(allocator, scale)

    def measure(_calls: int) -> tuple[float, int]:
        r = _native._bench(workload, allocator, scale)
        return float(r["value"]), int(r["iterations"])

    return measure


def _listmem_in_child(allocator: str, scale: float) -> tuple[float, int]:
    code = (
        "import json, sys; from stlalloc._native import _bench; "
        "print(json.dumps(_bench('listmem', sys.argv[1], float(sys.argv[2]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, allocator, repr(scale)],
        check=True,
        capture_output=True,
        text=True,
    )
    r = json.loads(out.stdout)
    return float(r["value"]), int(r["iterations"])


def native_groups(scale: float) -> list[Group]:
    groups = []
    for w in NATIVE_WORKLOADS:
        unit = "bytes/node" if w == "listmem" else "ns/op"
        rows = [Row("native", w, a, unit, baseline="malloc") for a in NATIVE_ALLOCATORS]
        groups.append(
            Group(
                "native",
                w,
                unit,
                rows,
                [_native_measure(w, a, scale) for a in NATIVE_ALLOCATORS],
            )
        )
    return groups


def _per_call(loop: Callable[[int], None]) -> Measure:
    def measure(calls: int) -> tuple[float, int]:
        t0 = time.perf_counter_ns()
        loop(calls)
        return (time.perf_counter_ns() - t0) / calls, calls

    return measure


def _pair(alloc: stlalloc.PoolAllocator | stlalloc.MallocAllocator, n: int) -> Measure:
    a, d = alloc.allocate, alloc.deallocate

    def loop(calls: int) -> None:
        for _ in repeat(None, calls):
            d(a(n), n)

    return _per_call(loop)


def _bytearray(n: int) -> Measure:
    def loop(calls: int) -> None:
        for _ in repeat(None, calls):
            bytearray(n)

    return _per_call(loop)


def _pymem(n: int) -> Measure:
    # The interpreter's own symbols, as ctypes.pythonapi, in a handle of our own so that
    # setting argtypes does not touch the shared one. A PyDLL: calls keep the GIL, as
    # PyMem_* require.
    api = ctypes.PyDLL(None)
    malloc, free = api.PyMem_Malloc, api.PyMem_Free
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    free.restype, free.argtypes = None, [ctypes.c_void_p]

    def loop(calls: int) -> None:
        for _ in repeat(None, calls):
            free(malloc(n))

    return _per_call(loop)


def _appends(make: Callable[[], object], method: str) -> Measure:
    """ns per append of ``calls`` ints to a fresh container; freeing it is not timed."""

    def measure(calls: int) -> tuple[float, int]:
        c = make()
        push = getattr(c, method)
        t0 = time.perf_counter_ns()
        for i in range(calls):
            push(i)
        t = time.perf_counter_ns() - t0
        del push, c
        return t / calls, calls

    return measure


def python_groups() -> list[Group]:
    pair = [
        ("MallocAllocator", _pair(stlalloc.MallocAllocator(), 24)),
        ("PoolAllocator", _pair(stlalloc.PoolAllocator(), 24)),
        ("bytearray(24)", _bytearray(24)),
        ("PyMem_Malloc+Free (ctypes)", _pymem(24)),
    ]
    pushes: list[tuple[str, Measure]] = [
        ("array('q').append", _appends(lambda: array("q"), "append")),
        ("list.append", _appends(list, "append")),
        ("Vector.push_back", _appends(lambda: stlalloc.Vector(dtype="int64"), "push_back")),
    ]
    nodes: list[tuple[str, Measure]] = [
        ("deque.append", _appends(deque, "append")),
        ("List.push_back", _appends(lambda: stlalloc.List(dtype="int64"), "push_back")),
    ]
    groups = [
        Group(
            "python",
            "py_pair24",
            "ns/call",
            [Row("python", "py_pair24", name, "ns/call", pair[0][0]) for name, _ in pair],
            [m for _, m in pair],
        )
    ]
    for workload, entries in (("py_push_back", pushes), ("py_list_push_back", nodes)):
        base = entries[0][0]
        groups.append(
            Group(
                "python",
                workload,
                "ns/call",
                [Row("python", workload, name, "ns/call", base) for name, _ in entries],
                [m for _, m in entries],
            )
        )
    return groups


def ratio(row: Row, base: Row | None) -> float | None:
    """Speed against the baseline, > 1 is better (less time, or fewer bytes per node)."""
    if base is None or row.median <= 0:
        return None
    return base.median / row.median


class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.tty = sys.stderr.isatty()

    def step(self, what: str) -> None:
        self.done += 1
        if self.quiet:
            return
        line = f"[{self.done}/{self.total}] {what}"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line)
        elif self.done == self.total or self.done % 10 == 1:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def run_groups(groups: list[Group], runs: int, calls: int, progress: Progress) -> None:
    for g in groups:
        for r in range(runs):
            for row, measure in zip(g.rows, g.measures, strict=True):
                progress.step(f"{g.lang} {g.workload}: {row.allocator} (run {r + 1}/{runs})")
                value, row.iterations = measure(calls)
                row.runs.append(value)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    libc = " ".join(platform.libc_ver())
    return (
        f"{cpu}, {os.cpu_count()} cores, {libc}, Python {platform.python_version()} "
        f"({sys.implementation.name})"
    )


def table(rows: list[Row]) -> str:
    base = {(r.lang, r.workload, r.allocator): r for r in rows}
    lines = [
        f"{'workload':<20} {'allocator':<28} {'median':>10} {'unit':<10} {'speed':>7}  baseline",
    ]
    for r in rows:
        b = base.get((r.lang, r.workload, r.baseline))
        x = ratio(r, b)
        speed = f"{x:.2f}x" if x is not None else "-"
        name = f"{r.lang}:{r.workload}" if r.lang == "native" else r.workload
        lines.append(
            f"{name:<20} {r.allocator:<28} {r.median:>10.2f} {r.unit:<10} {speed:>7}  {r.baseline}"
        )
    return "\n".join(lines)


def json_lines(rows: list[Row]) -> str:
    base = {(r.lang, r.workload, r.allocator): r for r in rows}
    out = []
    for r in rows:
        x = ratio(r, base.get((r.lang, r.workload, r.baseline)))
        obj: dict[str, object] = {
            "lang": r.lang,
            "allocator": r.allocator,
            "workload": r.workload,
            "unit": r.unit,
            "median": round(r.median, 3),
            "runs": [round(v, 3) for v in r.runs],
            "iterations": r.iterations,
            "baseline": r.baseline,
            "ratio": None if x is None else round(x, 3),
        }
        out.append(json.dumps(obj))
    return "\n".join(out)


def plot(rows: list[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = {(r.lang, r.workload, r.allocator): r for r in rows}
    shown = [(r, ratio(r, base.get((r.lang, r.workload, r.baseline)))) for r in rows]
    shown = [(r, x) for r, x in shown if x is not None]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(shown) + 1.5))
    labels = [f"{r.workload}  {r.allocator}" for r, _ in shown]
    colors = ["tab:blue" if r.lang == "native" else "tab:orange" for r, _ in shown]
    ax.barh(range(len(shown)), [x for _, x in shown], color=colors)
    ax.set_yticks(range(len(shown)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("speed vs baseline (native: malloc; python: first competitor), log scale")
    ax.set_title("stlalloc bench: medians, > 1 is better (blue native, orange Python)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m stlalloc bench",
        description="Pool vs malloc: native workloads (SPEC §7) and Python-level calls.",
    )
    p.add_argument("--quick", action="store_true", help=f"scale {QUICK_SCALE}, {QUICK_RUNS} runs")
    p.add_argument("--runs", type=int, help="runs per competitor (default 5; --quick 3)")
    p.add_argument("--json", action="store_true", help="one JSON object per row on stdout")
    p.add_argument("--plot", metavar="FILE.png", help="draw the ratios (needs matplotlib)")
    # Hidden: iteration counts relative to SPEC §7 (the tests run tiny ones).
    p.add_argument("--scale", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = QUICK_RUNS if args.quick else 5
    if args.scale is None:
        args.scale = QUICK_SCALE if args.quick else 1.0
    if args.runs < 1 or not args.scale > 0:
        p.error("--runs must be at least 1 and --scale positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "--plot needs matplotlib, which is not installed: "
                "pip install 'stlalloc[plot]' (or pip install matplotlib)",
                file=sys.stderr,
            )
            return 2
    calls = max(1, round(PY_CALLS * args.scale))
    t0 = time.monotonic()
    # Python-level rows first, on a heap that the native workloads have not churned yet.
    groups = python_groups() + native_groups(args.scale)
    total = args.runs * sum(len(g.measures) for g in groups)
    progress = Progress(total, quiet=False)
    try:
        run_groups(groups, args.runs, calls, progress)
    finally:
        progress.close()
    rows = [r for g in groups for r in g.rows]
    if args.json:
        print(json_lines(rows))
    else:
        print(
            f"# stlalloc bench: {machine()}; runs={args.runs}, scale={args.scale:g}, "
            f"{time.monotonic() - t0:.1f} s"
        )
        print(table(rows))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
