"""The model: the documented exceptions, the allocators under test and their live blocks,
the out-of-memory handlers, views and containers the programs keep."""

from __future__ import annotations

import collections

import stlalloc
from stlalloc import AllocatorError, PoolAllocator

DOCUMENTED = (
    AllocatorError,
    ValueError,
    TypeError,
    MemoryError,
    BufferError,
    IndexError,
    OverflowError,
)
NON_INTS = (1.0, "8", None, b"8", [8], 8j)
HUGE = 2**64


class GaveUp(Exception):
    """Raised by the fuzz's out-of-memory handlers: it must reach the caller (SPEC §4)."""


class Failure(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def round_up(n, align):
    return (n + align - 1) & ~(align - 1)


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


class Block:
    __slots__ = ("addr", "n", "tag", "owner")

    def __init__(self, addr, n, tag, owner):
        self.addr, self.n, self.tag, self.owner = addr, n, tag, owner


class Alloc:
    """One allocator under test and the model of its live blocks.

    MallocAllocators share one model (``World.malloc_live``): every MallocAllocator frees
    any other's blocks, while statistics stay with the allocator that made the block.
    """

    def __init__(self, name, obj, *, up=None, limit=None, debug=False):
        self.name, self.obj, self.up, self.limit, self.debug = name, obj, up, limit, debug
        self.is_pool = isinstance(obj, PoolAllocator)
        if self.is_pool:
            self.align, self.max_bytes = obj.align, obj.max_bytes
            self.alignment = obj.align
            self.live: dict[int, Block] = {}
        else:
            self.alignment = 16
        self.freed: collections.deque = collections.deque(maxlen=64)
        self.handler = None

    def group(self):
        return self.name if self.is_pool else "malloc"

    def extent(self, n):
        """Bytes of a block of ``n`` that ``view`` and ``owns`` cover."""
        if not self.is_pool:
            return n
        if self.debug:
            inner = n + self.align
            return round_up(inner, self.align) - self.align if inner <= self.max_bytes else n
        return round_up(n, self.align) if n <= self.max_bytes else n

    def inner(self, n):
        """(is_small, bytes) the pool accounts for a user block of ``n``."""
        m = n + self.align if self.debug else n
        return (True, round_up(m, self.align)) if m <= self.max_bytes else (False, m)

    def limited(self):
        return (self.up.limit if self.is_pool else self.limit) is not None


def stats_tuple(s, fields):
    return tuple(getattr(s, f) for f in fields)


# --------------------------------------------------------------------------------------
# Out-of-memory handlers
# --------------------------------------------------------------------------------------


class Handler:
    """SGI's handler, in the fuzz's variants.

    ``free``: frees one block of the allocator it serves (re-entering it), gives up when
    none is left; ``alloc``: allocates a small block from the pool it serves (re-entering
    it while the outer call waits for a chunk), then frees; ``raise``: gives up at once;
    ``view``: exports the block being moved, then frees (the caller must then refuse to
    finish the move and lose nothing).
    """

    def __init__(self, world, target, mode):
        self.w, self.target, self.mode = world, target, mode
        self.calls = 0
        self.depth = 0

    def __call__(self):
        w = self.w
        self.calls += 1
        w.counts["handler_calls"] += 1
        if self.mode == "raise" or self.calls > 24 or self.depth:
            raise GaveUp(self.mode)
        self.depth += 1
        try:
            if self.mode == "alloc" and self.target.is_pool and w.rng.random() < 0.5:
                w.alloc_block(self.target, w.rng.randint(1, self.target.max_bytes), inner=True)
                return
            if self.mode == "view" and w.in_flight and w.rng.random() < 0.5:
                a, b = w.in_flight
                w.views.append(View(a, a.obj.view(b.addr, 1), b, 0, 1))
                w.pins[(a.group(), b.addr)] += 1
                return
            victims = [b for b in w.blocks_of(self.target) if w.may_free(self.target, b)]
            if not victims:
                raise GaveUp("nothing left to free")
            w.free_block(self.target, w.rng.choice(victims), inner=True)
        finally:
            self.depth -= 1


class View:
    __slots__ = ("alloc", "mv", "block", "off", "length")

    def __init__(self, alloc, mv, block, off, length):
        self.alloc, self.mv, self.block, self.off, self.length = alloc, mv, block, off, length


# --------------------------------------------------------------------------------------
# Containers (SPEC §5), used only once the package has them
# --------------------------------------------------------------------------------------


class Cont:
    def __init__(self, kind, dtype, obj, pool):
        self.kind, self.dtype, self.obj, self.pool = kind, dtype, obj, pool
        self.model = list(obj)
        self.export = None


def container_kinds():
    return [k for k in ("Vector", "List") if hasattr(stlalloc, k)]
