"""List.push_back vs collections.deque.append (SPEC §7): ns per call, median of 5 runs.

Each run appends N ints to a fresh container through a bound method, then drops it (so a
List's nodes go back to its allocator). Two workloads: the values of ``range(N)`` (SPEC's
``list``: every value a distinct int, which the deque must keep alive) and one small int
over and over (the call alone). Each List kind is compared with the deque in a process of
its own (a MallocAllocator's freed blocks would otherwise slow the deque's mallocs), the
two taking turns within each round, so that noise falls on both alike.
"""

import collections
import statistics
import subprocess
import sys
import time

N = 300_000
RUNS = 5
WORKLOADS = {"range(N)": lambda: range(N), "[7] * N": lambda: [7] * N}
KINDS = ["int64 (pool)", "object (pool)", "int64 (malloc)"]


def one_run(make, values):
    c = make()
    push = c.push_back if hasattr(c, "push_back") else c.append
    t = time.perf_counter()
    for v in values:
        push(v)
    return (time.perf_counter() - t) / N * 1e9


def make_list(kind):
    import stlalloc

    dtype, allocator = kind.split()
    alloc = stlalloc.PoolAllocator() if allocator == "(pool)" else stlalloc.MallocAllocator()
    return lambda: stlalloc.List(dtype=dtype, allocator=alloc)


def compare(workload, kind):
    """Median ns per call of the deque and of the List `kind`, taking turns."""
    values = WORKLOADS[workload]()
    contenders = [collections.deque, make_list(kind)]
    for make in contenders:
        one_run(make, values)  # warm up: fault in the pages, fill the free lists
    times = [[], []]
    for _ in range(RUNS):
        for ts, make in zip(times, contenders, strict=True):
            ts.append(one_run(make, values))
    return [statistics.median(ts) for ts in times]


def main():
    if len(sys.argv) == 3:
        print(*compare(sys.argv[1], sys.argv[2]))
        return
    for workload in WORKLOADS:
        print(f"{workload}, N = {N}:")
        for kind in KINDS:
            child = subprocess.run(
                [sys.executable, __file__, workload, kind],
                capture_output=True,
                text=True,
                check=True,
            )
            deque_ns, list_ns = map(float, child.stdout.split())
            print(
                f"  List.push_back {kind:15s} {list_ns:6.1f} ns/call"
                f"  deque.append {deque_ns:5.1f} ns/call  ratio {list_ns / deque_ns:4.2f}x"
            )


if __name__ == "__main__":
    main()
