"""Resident bytes per node of a live 1,000,000-node int64 List (SPEC §7 ``listmem``).

Each allocator is measured in a fresh child process, so the parent's heap does not blur
the result:

- pool: the pool's own figures (``heap_size``, ``arena_resident`` by ``mincore``) and the
  growth of the process's resident set;
- malloc: glibc's in-use bytes (``mallinfo2().uordblks``), the distance between
  consecutive nodes (glibc's chunk size for ``malloc(24)``), and the resident set growth.
  The MallocAllocator's own table of live blocks is in RSS, but once large it is an
  mmapped chunk (``hblkhd``), outside ``uordblks``: ``bench/python/first_level.py`` counts
  both. The node stride shows glibc's share alone.
"""

import ctypes
import json
import statistics
import subprocess
import sys

N = 1_000_000


class Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()
    ]


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def in_use():
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    return libc.mallinfo2().uordblks


def measure(kind):
    """Runs in the child: builds the list and reports bytes per node."""
    import stlalloc

    alloc = stlalloc.PoolAllocator() if kind == "pool" else stlalloc.MallocAllocator()
    rss0, used0 = rss(), in_use()
    lst = stlalloc.List(range(N), dtype="int64", allocator=alloc)
    out = {"rss": (rss() - rss0) / N}
    if kind == "pool":
        s = alloc.stats()
        out |= {"heap_size": s.heap_size / N, "arena_resident": s.arena_resident / N}
    else:
        nodes = lst.node_addresses()
        strides = [b - a for a, b in zip(nodes, nodes[1:], strict=False)]
        out |= {"uordblks": (in_use() - used0) / N, "stride": statistics.mode(strides)}
    assert len(lst) == N
    return out


def main():
    if len(sys.argv) == 2:
        print(json.dumps(measure(sys.argv[1])))
        return
    for kind in ("pool", "malloc"):
        child = subprocess.run(
            [sys.executable, __file__, kind], capture_output=True, text=True, check=True
        )
        figures = json.loads(child.stdout)
        shown = ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
        print(f"{kind:6s} bytes per node: {shown}")


if __name__ == "__main__":
    main()
