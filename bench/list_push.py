"""List.push_back vs collections.deque.append (SPEC §7): ns per call, median of 5 runs.

Each run appends N ints to a fresh container through a bound method, then drops it (so a
List's nodes go back to its allocator). Two workloads: the values of ``range(N)`` (SPEC's
``list``: every value a distinct int the deque must keep alive) and one small int over and
over (the call alone). The contenders take turns within each round and CPU time is
measured, so that noise from other processes falls on all of them alike.
"""

import collections
import statistics
import time

import stlalloc

N = 300_000
RUNS = 5


def one_run(make, values):
    c = make()
    push = c.push_back if hasattr(c, "push_back") else c.append
    t = time.process_time()
    for v in values:
        push(v)
    return (time.process_time() - t) / N * 1e9


def compare(contenders, values):
    for make in contenders.values():
        one_run(make, values)  # warm up: fault in the pages, fill the free lists
    times = {name: [] for name in contenders}
    for _ in range(RUNS):
        for name, make in contenders.items():
            times[name].append(one_run(make, values))
    base = statistics.median(times["deque.append"])
    for name, ts in times.items():
        ns = statistics.median(ts)
        print(f"  {name:32s} {ns:6.1f} ns/call  {ns / base:4.2f}x")


def main():
    pool = stlalloc.PoolAllocator()
    malloc = stlalloc.MallocAllocator()
    contenders = {
        "deque.append": collections.deque,
        "List.push_back int64 (pool)": lambda: stlalloc.List(dtype="int64", allocator=pool),
        "List.push_back object (pool)": lambda: stlalloc.List(allocator=pool),
        "List.push_back int64 (malloc)": lambda: stlalloc.List(dtype="int64", allocator=malloc),
    }
    print(f"range({N}):")
    compare(contenders, range(N))
    print(f"[7] * {N}:")
    compare(contenders, [7] * N)


if __name__ == "__main__":
    main()
