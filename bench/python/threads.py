"""Threads on PoolAllocators from Python: made for free-threaded CPython with the GIL off.

A pair is one `allocate(24)` and its `deallocate`, called from Python (for `bytearray(24)`:
one made and dropped). Every scenario runs its threads from one barrier until all finish a
fixed number of pairs each, and reports all threads' pairs per wall-clock second (M pairs/s):

- shared-N: N threads (1, 2, 4, 8) on one shared PoolAllocator;
- own-N: N threads, each on a PoolAllocator of its own;
- bytearray-N: N threads making and dropping bytearray(24) (CPython's own allocator);
- main-first-2: the main thread uses the shared pool first, then 2 threads use it;
- cross-2: a producer allocates batches of blocks and hands each batch to a consumer thread
  that frees them (every free is from another thread); same-2: the same batches, but each
  of 2 threads frees its own.

The scenarios run in turns, round by round (`--runs`, default 5), so a change of load on the
machine touches them all; the figures are medians. Ratios are throughput / throughput of the
row named. Not a timed test: run it by hand, with the interpreter that has stlalloc:

    PYTHON_GIL=0 python bench/python/threads.py [--runs N] [--pairs N] [--json]
"""

import argparse
import collections
import json
import platform
import statistics
import sys
import threading
import time

from stlalloc import PoolAllocator

BATCH = 256  # blocks per hand-over in cross-2 / same-2


def pool_pairs(pool, n):
    a, d = pool.allocate, pool.deallocate
    for _ in range(n):
        d(a(24), 24)


def bytearray_pairs(_, n):
    for _ in range(n):
        bytearray(24)


def run_threads(bodies):
    """Runs each body() in its own thread from one barrier; the wall time until all end."""
    barrier = threading.Barrier(len(bodies) + 1)
    errors = []

    def start(body):
        try:
            barrier.wait()
            body()
        except BaseException as e:  # noqa: BLE001 - re-raised by the caller
            errors.append(e)

    threads = [threading.Thread(target=start, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


def same_threads(nthreads, work, pools, pairs):
    return pairs * nthreads / run_threads([lambda p=p: work(p, pairs) for p in pools])


def shared(nthreads, pairs):
    pool = PoolAllocator()
    return same_threads(nthreads, pool_pairs, [pool] * nthreads, pairs)


def own(nthreads, pairs):
    pools = [PoolAllocator() for _ in range(nthreads)]
    return same_threads(nthreads, pool_pairs, pools, pairs)


def bytearrays(nthreads, pairs):
    return same_threads(nthreads, bytearray_pairs, [None] * nthreads, pairs)


def main_first(pairs):
    pool = PoolAllocator()
    pool_pairs(pool, 1000)  # the main thread is the pool's first user
    return same_threads(2, pool_pairs, [pool, pool], pairs)


def cross(pairs):
    pool = PoolAllocator()
    batches = collections.deque()
    have = threading.Semaphore(0)
    nbatches = pairs // BATCH

    def producer():
        a = pool.allocate
        for _ in range(nbatches):
            batches.append([a(24) for _ in range(BATCH)])
            have.release()

    def consumer():
        d = pool.deallocate
        for _ in range(nbatches):
            have.acquire()
            for p in batches.popleft():
                d(p, 24)

    return nbatches * BATCH / run_threads([producer, consumer])


def same_batches(pairs):
    pool = PoolAllocator()
    nbatches = pairs // BATCH

    def both():
        a, d = pool.allocate, pool.deallocate
        for _ in range(nbatches // 2):
            for p in [a(24) for _ in range(BATCH)]:
                d(p, 24)

    return nbatches // 2 * 2 * BATCH / run_threads([both, both])


def scenarios(pairs):
    rows = {}
    for n in (1, 2, 4, 8):
        rows[f"shared-{n}"] = lambda n=n: shared(n, pairs)
    for n in (1, 2, 4, 8):
        rows[f"own-{n}"] = lambda n=n: own(n, pairs)
    for n in (1, 2, 4, 8):
        rows[f"bytearray-{n}"] = lambda n=n: bytearrays(n, pairs)
    rows["main-first-2"] = lambda: main_first(pairs)
    rows["cross-2"] = lambda: cross(pairs)
    rows["same-2"] = lambda: same_batches(pairs)
    return rows


RATIOS = [  # (row, baseline row): throughput of row / throughput of baseline
    ("shared-2", "shared-1"),
    ("shared-4", "shared-2"),
    ("shared-8", "shared-2"),
    ("main-first-2", "shared-2"),
    ("own-2", "own-1"),
    ("own-4", "own-2"),
    ("shared-2", "own-2"),
    ("shared-1", "bytearray-1"),
    ("shared-2", "bytearray-2"),
    ("own-2", "bytearray-2"),
    ("cross-2", "same-2"),
]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=5, help="rounds over all scenarios")
    ap.add_argument("--pairs", type=int, default=200_000, help="pairs per thread per run")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.pairs < 2 * BATCH:
        ap.error(f"--runs must be >= 1 and --pairs >= {2 * BATCH}")
    rows = scenarios(args.pairs)
    got = {name: [] for name in rows}
    for _ in range(args.runs):
        for name, run in rows.items():
            got[name].append(run() / 1e6)
    med = {name: statistics.median(v) for name, v in got.items()}
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    meta = {
        "python": sys.version.split()[0] + ("" if gil else " (GIL off)"),
        "cpu": cpu_model(),
        "runs": args.runs,
        "pairs_per_thread": args.pairs,
    }
    ratios = {f"{a} / {b}": med[a] / med[b] for a, b in RATIOS}
    if args.json:
        print(json.dumps({**meta, "mpairs_per_s": med, "ratios": ratios}))
        return 0
    print(f"# threads on PoolAllocators: Python {meta['python']}, {meta['cpu']}")
    print(f"# median of {args.runs} runs, {args.pairs} pairs per thread, M pairs/s (all threads)")
    for name, v in med.items():
        print(f"{name:14} {v:8.2f}   (min {min(got[name]):.2f}, max {max(got[name]):.2f})")
    print("# ratios")
    for name, r in ratios.items():
        print(f"{name:28} {r:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
