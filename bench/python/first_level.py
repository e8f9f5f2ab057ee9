"""The first level's tax from Python (issue #14): MallocAllocator against a PoolAllocator.

- pair: ``deallocate(allocate(24), 24)`` in a loop, ns per pair, with no other block live
  and with 1M blocks of 24 bytes live in the same allocator (both allocators alike);
- push_back: ``List(dtype="int64").push_back`` of N ints over each allocator, ns per call;
- heap: glibc's bytes in use (``mallinfo2``: ``uordblks`` on the heap plus ``hblkhd`` in
  mmapped chunks, so the MallocAllocator's own table counts wherever it lives) per node of a
  live 1M-node int64 List over a MallocAllocator, measured in a fresh child process.

Medians of RUNS runs, the contenders taking turns in each round, timed in CPU time of the
thread (``time.thread_time``) so that other processes on a busy machine do not count; ratios
are malloc / pool, against the targets of the issue (pair 1.3, push_back 1.5, 48 bytes per
node).

    python bench/python/first_level.py
"""

import ctypes
import json
import statistics
import subprocess
import sys
import time

import stlalloc

PAIRS = 1_000_000
PUSHES = 300_000
LIVE = 1_000_000
NODES = 1_000_000
RUNS = 7


def pairs(alloc, n=24):
    a, d = alloc.allocate, alloc.deallocate

    def run():
        t = time.thread_time()
        for _ in range(PAIRS):
            d(a(n), n)
        return (time.thread_time() - t) / PAIRS * 1e9

    return run


def pushes(alloc):
    values = range(PUSHES)

    def run():
        lst = stlalloc.List(dtype="int64", allocator=alloc)
        push = lst.push_back
        t = time.thread_time()
        for v in values:
            push(v)
        return (time.thread_time() - t) / PUSHES * 1e9

    return run


def medians(contenders):
    """Median ns of each run function, taking turns, after one warm-up run each."""
    for run in contenders:
        run()
    times = [[] for _ in contenders]
    for _ in range(RUNS):
        for ts, run in zip(times, contenders, strict=True):
            ts.append(run())
    return [statistics.median(ts) for ts in times]


def row(name, malloc_ns, pool_ns, limit):
    ratio = malloc_ns / pool_ns
    verdict = "ok" if ratio <= limit else "MISSED"
    print(
        f"{name:28} malloc {malloc_ns:6.1f} ns  pool {pool_ns:6.1f} ns  "
        f"ratio {ratio:.2f} (target <= {limit}) {verdict}"
    )


class Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()
    ]


def heap_in_use():
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    m = libc.mallinfo2()
    return m.uordblks, m.hblkhd


def heap_per_node():
    """Runs in the child: bytes in use per node of a live 1M-node List."""
    alloc = stlalloc.MallocAllocator()
    (heap0, mmapped0) = heap_in_use()
    lst = stlalloc.List(range(NODES), dtype="int64", allocator=alloc)
    heap, mmapped = heap_in_use()
    assert len(lst) == NODES and alloc.stats().live_blocks == NODES
    return {"uordblks": (heap - heap0) / NODES, "hblkhd": (mmapped - mmapped0) / NODES}


def main():
    if sys.argv[1:] == ["heap"]:
        print(json.dumps(heap_per_node()))
        return
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "?")
    print(f"CPU: {cpu}; Python {sys.version.split()[0]}; medians of {RUNS} runs")
    malloc, pool = stlalloc.MallocAllocator(), stlalloc.PoolAllocator()
    row("pair24, 0 live", *medians([pairs(malloc), pairs(pool)]), 1.3)
    held = [(a, [a.allocate(24) for _ in range(LIVE)]) for a in (malloc, pool)]
    row("pair24, 1M live", *medians([pairs(malloc), pairs(pool)]), 1.3)
    for a, blocks in held:
        for p in blocks:
            a.deallocate(p, 24)
    del held
    row("List.push_back (int64)", *medians([pushes(malloc), pushes(pool)]), 1.5)
    child = subprocess.run(
        [sys.executable, __file__, "heap"], capture_output=True, text=True, check=True
    )
    figures = json.loads(child.stdout)
    total = figures["uordblks"] + figures["hblkhd"]
    verdict = "ok" if total <= 48 else "MISSED"
    print(
        f"heap bytes per node, 1M-node int64 List over MallocAllocator: {total:.1f} "
        f"(uordblks {figures['uordblks']:.1f} + hblkhd {figures['hblkhd']:.1f}; "
        f"target <= 48) {verdict}"
    )


if __name__ == "__main__":
    main()
