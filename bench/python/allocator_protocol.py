"""What an allocator written in Python costs a container, against the built-in pool.

Two measurements, median of RUNS runs, ns per element:

- ``List(dtype="int64").push_back`` of N ints, then the list dropped (every node allocated
  and freed once), over: the pool itself; a TracingAllocator around it (a built-in wrapper,
  no Python code per call); a Python allocator delegating each call to the pool; a Python
  bump allocator carving nodes out of one big pool block (Python code, but no call into
  another allocator);
- the adaptor alone: one ``allocate`` + ``deallocate`` pair for a container
  (``_native._protocol_roundtrip``), Python allocator vs the pool.

Run: ``python bench/python/allocator_protocol.py``.
"""

import gc
import statistics
import time

import stlalloc
from stlalloc._native import _protocol_roundtrip

N = 100_000
RUNS = 5


class Delegating:
    """Every call goes to a pool."""

    def __init__(self, pool):
        self.pool = pool

    def allocate(self, n):
        return self.pool.allocate(n)

    def deallocate(self, p, n):
        self.pool.deallocate(p, n)


class Bump:
    """Nodes carved from one big pool block; nothing is reused until reset."""

    def __init__(self, pool, size):
        self.base = self.next = pool.allocate(size)
        self.end = self.base + size

    def allocate(self, n):
        p = self.next
        self.next += (n + 7) & ~7
        if self.next > self.end:
            raise MemoryError("bump block exhausted")
        return p

    def deallocate(self, p, n):
        pass


def list_run(allocator):
    lst = stlalloc.List(dtype="int64", allocator=allocator)
    push = lst.push_back
    gc.collect()
    t = time.perf_counter()
    for i in range(N):
        push(i)
    del lst, push
    return (time.perf_counter() - t) / N * 1e9


def median(f, *args):
    return statistics.median(f(*args) for _ in range(RUNS))


def main():
    pool = stlalloc.PoolAllocator()
    node = stlalloc.List(dtype="int64").node_size()
    makers = {
        "pool": lambda: pool,
        "TracingAllocator(pool)": lambda: stlalloc.TracingAllocator(pool),
        "Python, delegating to the pool": lambda: Delegating(pool),
        "Python, bump in one pool block": lambda: Bump(pool, N * node + 4096),
    }
    print(f"List(dtype='int64').push_back x {N:,}, then dropped: ns per element")
    base = None
    for name, make in makers.items():
        ns = statistics.median(list_run(make()) for _ in range(RUNS))
        base = base or ns
        print(f"  {name:34} {ns:8.1f}   x{ns / base:4.1f}")
    print(f"one allocate+deallocate pair for a container ({node} bytes): ns per pair")
    base = None
    for name, alloc in (("pool", pool), ("Python, delegating", Delegating(pool))):

        def pairs(alloc=alloc):
            t = time.perf_counter()
            _protocol_roundtrip(alloc, node, N)
            return (time.perf_counter() - t) / N * 1e9

        ns = median(pairs)
        base = base or ns
        print(f"  {name:34} {ns:8.1f}   x{ns / base:4.1f}")


if __name__ == "__main__":
    main()
