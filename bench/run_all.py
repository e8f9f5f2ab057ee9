#!/usr/bin/env python3
"""Builds and runs every benchmark of SPEC §7 in one run, and writes one report.

    python bench/run_all.py [--quick] [--rounds R] [--runs N] [--scale F] [--no-build]

Run it with the interpreter that has stlalloc installed (e.g. ``.venv/bin/python``).
Steps: ``make -C bench/cpp``; ``cargo build --release -p stlalloc-bench``; ``maturin
develop --release`` when maturin sits beside that interpreter (else the installed
stlalloc is used as it is). Then, in each of R rounds, workload by workload, the Rust
binary and the C++ one take turns (so the two languages see the same machine state), then
the 2-thread rows; then ``python -m stlalloc bench``. Writes ``bench/out/report.md``
(machine, medians, ratios against glibc, the issue 4 targets met or not) and
``bench/out/report.json``.
Needs only the standard library.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RUST_BIN = ROOT / "target" / "release" / "stlalloc-bench"
CPP_BIN = ROOT / "bench" / "cpp" / "build" / "stlbench"

WORKLOADS = ["pair8", "pair24", "pair64", "pair128", "list", "vec16", "churn", "batch32"]
WORKLOADS += ["listmem"]
THREADED = ["pair24_2t", "churn_2t", "pair24_4t", "churn_4t", "pair24_8t", "churn_8t", "xfree_2t"]
# Issue 12: on two threads, each freeing its own blocks, the shared pool ≥ 1.5× glibc.
THREAD_TARGETS = ["pair24_2t", "churn_2t"]
RUST = ["malloc", "pool", "shared_pool", "mimalloc"]
CPP = ["std::allocator", "__pool_alloc", "__mt_alloc", "pmr::unsynchronized_pool", "sgi_free_list"]
# Each language against its own glibc malloc, so compiler differences cancel out.
GLIBC = {"rust": "malloc", "cpp": "std::allocator"}


def log(msg: str) -> None:
    print(f"[run_all] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> str:
    log(" ".join(cmd))
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT, **kw).stdout


def build() -> None:
    run(["make", "-s", "-C", "bench/cpp"])
    run(["cargo", "build", "--release", "-p", "stlalloc-bench"])
    maturin = Path(sys.executable).parent / "maturin"
    if maturin.exists():
        env = dict(os.environ, VIRTUAL_ENV=str(Path(sys.executable).parent.parent))
        run([str(maturin), "develop", "--release"], env=env)
    else:
        log("no maturin beside this interpreter: using the installed stlalloc as it is")


def json_rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def merged(rows: list[dict]) -> list[dict]:
    """One row per (lang, workload, allocator): the runs of every round, their median."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = (r["lang"], r["workload"], r["allocator"])
        if key in out:
            out[key]["runs"] += r["runs"]
        else:
            out[key] = dict(r, runs=list(r["runs"]))
    for r in out.values():
        r["median"] = round(statistics.median(r["runs"]), 3)
    return list(out.values())


def measure(rounds: int, runs: int, scale: float) -> list[dict]:
    """Rust and C++ take turns workload by workload, `rounds` times, `runs` runs each time,
    so that a busy spell of the machine hits both languages alike. Each process's first run
    is cold (fresh pages): with 3 runs per round, a third of the runs are cold, and the
    median is of warm ones."""
    common = ["--runs", str(runs), "--scale", repr(scale), "--json"]
    rows: list[dict] = []
    for k in range(rounds):
        log(f"round {k + 1}/{rounds}")
        for w in WORKLOADS:
            rows += json_rows(run([str(RUST_BIN), "--workloads", w, *common]))
            rows += json_rows(run([str(CPP_BIN), "--workloads", w, *common]))
        rows += json_rows(run([str(RUST_BIN), "--workloads", ",".join(THREADED), *common]))
    py = ["--runs", str(rounds * runs), "--scale", repr(scale), "--json"]
    rows += json_rows(run([sys.executable, "-m", "stlalloc", "bench", *py]))
    return merged(rows)


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        return "unknown"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "glibc": platform.libc_ver()[1] or first_line(["ldd", "--version"]),
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "rustc": first_line(["rustc", "--version"]),
        "cxx": first_line(["g++", "--version"]),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


class Results:
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows
        self.by = {(r["lang"], r["workload"], r["allocator"]): r for r in rows}

    def median(self, lang: str, workload: str, allocator: str) -> float | None:
        r = self.by.get((lang, workload, allocator))
        return r["median"] if r else None

    def speed(
        self, lang: str, workload: str, allocator: str, base: tuple[str, str]
    ) -> float | None:
        """How many times better than `base` (time, bytes: base/this; throughput: this/base)."""
        x, b = self.median(lang, workload, allocator), self.median(base[0], workload, base[1])
        if x is None or b is None or x <= 0 or b <= 0:
            return None
        return x / b if workload in THREADED else b / x


def fmt(x: float | None, suffix: str = "") -> str:
    return "—" if x is None else f"{x:.2f}{suffix}"


def main_table(res: Results) -> list[str]:
    cols = [("rust", a) for a in RUST] + [("cpp", a) for a in CPP]
    head = "| workload | " + " | ".join(
        f"{'Rust' if lang == 'rust' else 'C++'} {a}" for lang, a in cols
    )
    lines = [head + " |", "|---" * (len(cols) + 1) + "|"]
    for w in WORKLOADS:
        cells = []
        for lang, a in cols:
            m = res.median(lang, w, a)
            s = res.speed(lang, w, a, (lang, GLIBC[lang]))
            cells.append("—" if m is None else f"{m:.2f} ({fmt(s, '×')})")
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    return lines


def threads_table(res: Results) -> list[str]:
    lines = ["| workload | malloc | shared_pool | mimalloc |", "|---|---|---|---|"]
    for w in THREADED:
        cells = []
        for a in ("malloc", "shared_pool", "mimalloc"):
            m = res.median("rust", w, a)
            cells.append(
                "—"
                if m is None
                else f"{m:.1f} ({fmt(res.speed('rust', w, a, ('rust', 'malloc')), '×')})"
            )
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    return lines


def python_table(res: Results) -> list[str]:
    lines = ["| workload | allocator | median | unit | vs baseline | baseline |"]
    lines.append("|---|---|---|---|---|---|")
    for r in res.rows:
        if r["lang"] not in ("native", "python"):
            continue
        name = f"native {r['workload']}" if r["lang"] == "native" else r["workload"]
        lines.append(
            f"| {name} | {r['allocator']} | {r['median']:.2f} | {r['unit']} | "
            f"{fmt(r.get('ratio'), '×')} | {r['baseline']} |"
        )
    return lines


def targets(res: Results) -> list[dict]:
    out = []

    def target(name: str, value: float | None, ok: bool | None, how: str) -> None:
        out.append({"target": name, "figure": value, "met": ok, "how": how})

    pool = res.median("rust", "pair24", "pool")
    sgi = res.median("cpp", "pair24", "sgi_free_list")
    r = pool / sgi if pool and sgi else None
    target(
        "pair24: core pool ≤ 1.2× C++ sgi_free_list",
        r,
        r is not None and r <= 1.2,
        f"Rust pool {fmt(pool)} ns / C++ sgi_free_list {fmt(sgi)} ns",
    )
    s = res.speed("rust", "pair24", "pool", ("rust", "malloc"))
    target(
        "pair24: core pool ≥ 5× faster than glibc",
        s,
        s is not None and s >= 5,
        f"Rust malloc {fmt(res.median('rust', 'pair24', 'malloc'))} ns / pool {fmt(pool)} ns",
    )
    # The thread-safe pool twice: with its spin lock (Rust binary), and as a PoolAllocator
    # holds it, locked by the GIL (inside the extension).
    for lang, lock in (("rust", "spin lock"), ("native", "GIL lock")):
        for w in ("pair24", "list", "churn"):
            sp = res.median(lang, w, "shared_pool")
            s = res.speed(lang, w, "shared_pool", (lang, "malloc"))
            target(
                f"{w}: thread-safe pool ({lock}) ≥ 2× faster than glibc",
                s,
                s is not None and s >= 2,
                f"malloc {fmt(res.median(lang, w, 'malloc'))} ns / shared_pool {fmt(sp)} ns",
            )
            pa = res.median("cpp", w, "__pool_alloc")
            s = pa / sp if pa and sp else None
            target(
                f"{w}: thread-safe pool ({lock}) ≥ 5× faster than __pool_alloc",
                s,
                s is not None and s >= 5,
                f"C++ __pool_alloc {fmt(pa)} ns / shared_pool {fmt(sp)} ns",
            )
    for w in THREAD_TARGETS:
        s = res.speed("rust", w, "shared_pool", ("rust", "malloc"))
        target(
            f"{w}: 2-thread throughput ≥ 1.5× glibc",
            s,
            s is not None and s >= 1.5,
            f"shared_pool {fmt(res.median('rust', w, 'shared_pool'))} Mop/s / malloc "
            f"{fmt(res.median('rust', w, 'malloc'))} Mop/s",
        )
    pp = res.median("python", "py_pair24", "PoolAllocator")
    ba = res.median("python", "py_pair24", "bytearray(24)")
    pm = res.median("python", "py_pair24", "PyMem_Malloc+Free (ctypes)")
    s = ba / pp if pp and ba else None
    target(
        "Python: pool pair faster than bytearray(24)",
        s,
        s is not None and s > 1,
        f"bytearray(24) {fmt(ba)} ns / PoolAllocator pair {fmt(pp)} ns",
    )
    s = pm / pp if pp and pm else None
    target(
        "Python: pool pair ≥ 4× faster than ctypes PyMem",
        s,
        s is not None and s >= 4,
        f"PyMem_Malloc+Free {fmt(pm)} ns / PoolAllocator pair {fmt(pp)} ns",
    )
    lp, lm = res.median("rust", "listmem", "pool"), res.median("rust", "listmem", "malloc")
    target(
        "listmem: 24 bytes/node for the pool (glibc 32)",
        lp,
        lp is not None and lp <= 24.5,
        f"Rust pool {fmt(lp)} B/node, malloc {fmt(lm)} B/node",
    )
    return out


def report(res: Results, info: dict, args: argparse.Namespace, seconds: float) -> str:
    cmd = "python bench/run_all.py" + (" --quick" if args.quick else "")
    if args.given:
        cmd += f" --rounds {args.rounds} --runs {args.runs} --scale {args.scale:g}"
    lines = [
        "# stlalloc benchmarks (SPEC §7)",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores, glibc {info['glibc']}, "
        f"Linux {info['kernel']}; load average at the end {info['load_average']}",
        f"- date: {info['date']}; {info['rustc']}; {info['cxx']}; Python {info['python']}",
        f"- command: `{cmd}` ({args.rounds} rounds × {args.runs} runs, scale={args.scale:g}, "
        f"{seconds:.0f} s): medians of {args.rounds * args.runs} runs per cell, allocators "
        "interleaved run by run, Rust and C++ taking turns workload by workload each round",
        "",
        "## Rust and C++: median ns/op (listmem: resident bytes/node), (× faster than glibc)",
        "",
        "Ratios are against the same language's glibc column (Rust `malloc`, C++ "
        "`std::allocator`); for listmem, glibc's bytes per node over these.",
        "",
        *main_table(res),
        "",
        "## Threads: Mop/s of all threads (× glibc); *_Nt: N threads each allocating and freeing "
        "its own blocks on one shared pool; xfree_2t: one thread allocates, another frees",
        "",
        *threads_table(res),
        "",
        "## From Python (`python -m stlalloc bench`)",
        "",
        "`native` rows run in Rust inside the extension (`shared_pool` is the pool as a "
        "`PoolAllocator` holds it, locked by the GIL); the others time Python calls.",
        "",
        *python_table(res),
        "",
        "## Targets (issues 4 and 12)",
        "",
        "| target | figure | met | from |",
        "|---|---|---|---|",
    ]
    for t in targets(res):
        met = "—" if t["figure"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {fmt(t['figure'])} | {met} | {t['how']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="scale 0.05, 1 round")
    p.add_argument("--rounds", type=int, help="turns of Rust and C++ (default 2; quick 1)")
    p.add_argument("--runs", type=int, help="runs per allocator per round (default 3)")
    p.add_argument("--scale", type=float, help="iterations relative to SPEC §7 (default 1)")
    p.add_argument("--no-build", action="store_true", help="use what is built")
    args = p.parse_args(argv)
    args.given = any(x is not None for x in (args.rounds, args.runs, args.scale))
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.runs = args.runs or 3
    args.scale = args.scale or (0.05 if args.quick else 1.0)
    for tool in ("make", "cargo", "g++"):
        if not args.no_build and shutil.which(tool) is None:
            log(f"{tool} is required to build the benchmarks")
            return 1
    t0 = time.monotonic()
    if not args.no_build:
        build()
    rows = measure(args.rounds, args.runs, args.scale)
    seconds = time.monotonic() - t0
    info = machine()
    res = Results(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.md").write_text(report(res, info, args, seconds))
    summary = {
        "machine": info,
        "rounds": args.rounds,
        "runs": args.runs,
        "scale": args.scale,
        "seconds": round(seconds, 1),
        "results": rows,
        "targets": targets(res),
    }
    (OUT / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"wrote {OUT / 'report.md'} and report.json in {seconds:.0f} s")
    print((OUT / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
