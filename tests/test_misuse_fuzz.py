"""Random misuse programs, each in a child process (issue 6, SPEC §3-§5).

A program mixes valid and invalid calls on every public type: MallocAllocators (with and
without a limit), PoolAllocators over small arenas (so exhaustion, the free-list scan and
upstream chunks run) with limited upstreams and out-of-memory handlers that free, allocate
or give up, debug pools (write-after-free and cookie faults provoked on purpose), views
kept while their blocks are freed or moved, release(), equality, and — once they exist in
the package — Vectors and Lists over small pools whose growth fails midway.

Every call must succeed or raise one of the documented exceptions; a misuse must leave
every allocator exactly as it was; after every step SPEC §3's conservation equation holds
for every pool and the statistics match a model of the live blocks; block contents are
checked so overlapping or corrupted blocks are caught; at the end everything is freed and
every allocator shows 0 live. Children run the program because a broken allocator
corrupts the process that runs it: the parent asserts that each child exited with 0 and
was not killed by a signal.

Run one program by hand (a failure prints the exact command, with address randomisation
off so that it replays):
    python tests/test_misuse_fuzz.py SEED [STEPS]
Longer runs: STLALLOC_FUZZ_SECONDS=600 pytest -s tests/test_misuse_fuzz.py
"""

from __future__ import annotations

import collections
import ctypes
import functools
import gc
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from stats_fields import MALLOC_COUNT_FIELDS, MALLOC_FAIL_FIELDS, POOL_STATE_FIELDS

import stlalloc
from stlalloc import AllocatorError, MallocAllocator, PoolAllocator

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


# --------------------------------------------------------------------------------------
# The program
# --------------------------------------------------------------------------------------


class World:
    def __init__(self, seed, steps):
        self.seed, self.steps = seed, steps
        self.rng = random.Random(seed)
        self.counts = collections.Counter()
        self.raised = collections.Counter()
        self.log = collections.deque(maxlen=12)
        self.malloc_live: dict[int, Block] = {}
        self.views: list[View] = []
        self.pins = collections.Counter()
        self.in_flight = None
        self.tags = 0
        rng = self.rng
        m1 = Alloc("m1", MallocAllocator())
        m2 = Alloc("m2", MallocAllocator(limit=48 << 10), limit=48 << 10)
        self.mallocs = [m1, m2]
        self.pools = [self.new_pool(f"p{k}") for k in range(4)]
        # At least one plain and one debug pool over a 4 KiB arena and a limited upstream.
        self.pools.append(self.new_pool("p4", arena=4096, limit=32 << 10, debug=False))
        self.pools.append(self.new_pool("p5", arena=4096, limit=32 << 10, debug=True))
        self.allocs = self.mallocs + self.pools
        self.conts: list[Cont] = []
        self.cont_pools: list[Alloc] = []
        self.cont_mallocs: list[Alloc] = []
        if container_kinds():
            for k in range(3):
                self.cont_pools.append(
                    self.new_pool(f"c{k}", arena=4096, limit=rng.choice([4096, 16 << 10, 64 << 10]))
                )
            # Two equal MallocAllocators: Lists over them splice into each other, so nodes
            # one of them made end up in a list of the other.
            self.cont_mallocs = [
                Alloc("cm0", MallocAllocator(limit=64 << 10), limit=64 << 10),
                Alloc("cm1", MallocAllocator()),
            ]

    # -- construction ------------------------------------------------------------------

    def new_pool(self, name, *, arena=None, limit=-1, debug=None):
        rng = self.rng
        align = rng.choice([8, 8, 8, 16, 32, 64])
        max_bytes = align * rng.choice([1, 2, 4, 8, 16, 16, 16, 32])
        refill = rng.choice([1, 2, 5, 20, 20, 64])
        if arena is None:
            arena = rng.choice([0, 4096, 4096, 8192, 1 << 16, 1 << 20])
        if limit == -1:
            limit = rng.choice([None, None, 0, 8192, 32 << 10, 256 << 10])
        if debug is None:
            debug = rng.random() < 0.35
        up = Alloc(name + ".up", MallocAllocator(limit=limit), limit=limit)
        obj = PoolAllocator(
            align=align,
            max_bytes=max_bytes,
            refill=refill,
            arena_size=arena,
            upstream=up.obj,
            debug=debug,
        )
        return Alloc(name, obj, up=up, debug=debug)

    # -- the model -----------------------------------------------------------------------

    def blocks_of(self, a):
        if a.is_pool:
            return list(a.live.values())
        return list(self.malloc_live.values())

    def live_map(self, a):
        return a.live if a.is_pool else self.malloc_live

    def pinned(self, a, b):
        return self.pins[(a.group(), b.addr)] > 0

    def may_free(self, a, b):
        flying = self.in_flight is not None and self.in_flight[1] is b
        return not self.pinned(a, b) and not flying

    def handler_of(self, a, caller):
        """The handler a call runs on failure: the pool's upstream's, or the caller's."""
        return a.handler if a.is_pool else caller.handler

    def new_tag(self):
        self.tags += 1
        return self.tags % 255 + 1

    def fill(self, b, start=0):
        if b.n > start:
            ctypes.memset(b.addr + start, b.tag, b.n - start)

    def check_contents(self, b, n=None):
        n = b.n if n is None else n
        got = ctypes.string_at(b.addr, n)
        if got != bytes([b.tag]) * n:
            bad = next(i for i, x in enumerate(got) if x != b.tag)
            raise Failure(f"block {b.addr:#x} ({b.n} bytes) changed at offset {bad}")

    # -- calls ---------------------------------------------------------------------------

    def api(self, what, fn, *args, ok=(), exact=None):
        """Calls ``fn(*args)``: returns ``(True, result)`` or ``(False, exception)``.

        ``exact``: the call is a misuse and must raise this (class or tuple);
        ``ok``: exceptions a valid call may raise (out of memory, a handler giving up).
        """
        self.counts["calls"] += 1
        self.log.append(what)
        if exact is not None:
            self.counts["invalid"] += 1
        try:
            result = fn(*args)
        except BaseException as e:  # noqa: BLE001 - classified below
            self.raised[type(e).__name__] += 1
            if exact is not None:
                check(isinstance(e, exact), f"{what}: raised {e!r}, expected {exact}")
                return False, e
            if isinstance(e, ok):
                return False, e
            if isinstance(e, DOCUMENTED) or isinstance(e, GaveUp):
                raise Failure(f"{what}: a valid call raised {e!r}") from e
            raise Failure(f"{what}: undocumented exception {e!r}") from e
        check(exact is None, f"{what}: returned {result!r}, expected {exact}")
        return True, result

    def snapshot(self):
        """Everything a misuse could change: every allocator's statistics and free lists."""
        snap = []
        for a in self.pools + self.cont_pools:
            snap.append(stats_tuple(a.obj.stats(), POOL_STATE_FIELDS))
            snap.append([a.obj.free_list(i) for i in range(a.obj.nfreelists)])
            snap.append(stats_tuple(a.up.obj.stats(), MALLOC_COUNT_FIELDS))
        for a in self.mallocs + self.cont_mallocs:
            snap.append(stats_tuple(a.obj.stats(), MALLOC_COUNT_FIELDS + MALLOC_FAIL_FIELDS))
        return snap

    def misuse(self, what, fn, *args, exc=AllocatorError):
        before = self.snapshot()
        self.api(what, fn, *args, exact=exc)
        after = self.snapshot()
        check(after == before, f"{what} changed an allocator")

    # -- valid block operations (used by actions and by handlers) ------------------------

    def alloc_block(self, a, n, inner=False):
        ok = (MemoryError, GaveUp) if a.limited() else ()
        if inner:
            # Inside a handler: a nested failure may surface as anything documented.
            ok = (*DOCUMENTED, GaveUp)
        done, p = self.api(f"{a.name}.allocate({n})", a.obj.allocate, n, ok=ok)
        if not done:
            return None
        if n == 0:
            check(p == 0, f"allocate(0) returned {p}")
            return None
        check(p > 0 and p % a.alignment == 0, f"{a.name}.allocate({n}) gave {p:#x}")
        live = self.live_map(a)
        check(p not in live, f"{a.name}.allocate({n}) gave live block {p:#x}")
        b = Block(p, n, self.new_tag(), a)
        self.fill(b)
        live[p] = b
        return b

    def free_block(self, a, b, inner=False, n=None):
        self.check_contents(b)
        n = b.n if n is None else n
        ok = (*DOCUMENTED, GaveUp) if inner else ()
        done, _ = self.api(
            f"{a.name}.deallocate({b.addr:#x}, {n})", a.obj.deallocate, b.addr, n, ok=ok
        )
        if done:
            del self.live_map(a)[b.addr]
            a.freed.append((b.addr, b.n))

    # -- invariants ----------------------------------------------------------------------

    def check_invariants(self):
        for a in self.pools + self.cont_pools:
            st = a.obj.stats()
            free = sum(k * (i + 1) * st.align for i, k in enumerate(st.free_list_lengths))
            check(
                st.heap_size == st.live_bytes + free + st.chunk_bytes_left,
                f"{a.name}: conservation broken: {st}",
            )
            check(len(st.free_list_lengths) == st.nfreelists, f"{a.name}: free lists")
            up = a.up.obj.stats()
            check(
                up.live_bytes == st.upstream_chunk_bytes + st.large_live_bytes,
                f"{a.name}: upstream holds {up.live_bytes} bytes, the pool accounts for "
                f"{st.upstream_chunk_bytes} + {st.large_live_bytes}",
            )
            self.counts["upstream_chunk_checks"] += st.upstream_chunk_bytes > 0
            if a in self.pools:
                small = [a.inner(b.n)[1] for b in a.live.values() if a.inner(b.n)[0]]
                large = [a.inner(b.n)[1] for b in a.live.values() if not a.inner(b.n)[0]]
                got = (st.live_blocks, st.live_bytes, st.large_live_blocks, st.large_live_bytes)
                want = (len(small), sum(small), len(large), sum(large))
                check(got == want, f"{a.name}: live {got}, the model says {want}")
        for a in self.mallocs:
            s = a.obj.stats()
            mine = [b.n for b in self.malloc_live.values() if b.owner is a]
            check(
                (s.live_blocks, s.live_bytes) == (len(mine), sum(mine)),
                f"{a.name}: live ({s.live_blocks}, {s.live_bytes}), model ({len(mine)}, "
                f"{sum(mine)})",
            )
            check(s.allocations - s.deallocations == s.live_blocks, f"{a.name}: counters")
            check(a.limit is None or s.live_bytes <= a.limit, f"{a.name}: above its limit")

    # -- choosing ------------------------------------------------------------------------

    def size_for(self, a):
        r = self.rng.random()
        top = a.max_bytes if a.is_pool else 256
        if r < 0.05:
            return 0
        if r < 0.75:
            return self.rng.randint(1, top)
        if r < 0.95:
            return self.rng.randint(top + 1, 4 * top + 8)
        return self.rng.randint(1000, 20000)

    def pick_alloc(self):
        return self.rng.choice(self.allocs)

    def pick_block(self, a):
        blocks = self.live_map(a)
        if not blocks:
            return None
        return self.rng.choice(list(blocks.values()))

    def via(self, a):
        """The object to call for a block of ``a``: any MallocAllocator serves malloc blocks."""
        return self.rng.choice(self.mallocs) if not a.is_pool else a

    # ----------------------------------------------------------------------------------
    # Actions: valid
    # ----------------------------------------------------------------------------------

    def act_allocate(self):
        a = self.pick_alloc()
        self.alloc_block(a, self.size_for(a))

    def act_deallocate(self):
        a = self.pick_alloc()
        b = self.pick_block(a)
        if b is None:
            return self.act_allocate()
        caller = self.via(a)
        n = b.n
        if a.is_pool and not a.debug and n <= a.max_bytes and self.rng.random() < 0.3:
            # Any size of the block's class frees it (SGI): the pool is told only the class.
            lo = round_up(n, a.align) - a.align + 1
            n = self.rng.randint(lo, round_up(n, a.align))
        if self.pinned(a, b):
            return self.misuse(
                f"{caller.name}.deallocate(exported)",
                caller.obj.deallocate,
                b.addr,
                n,
                exc=BufferError,
            )
        self.check_contents(b)
        self.api(f"{caller.name}.deallocate({b.addr:#x}, {n})", caller.obj.deallocate, b.addr, n)
        del self.live_map(a)[b.addr]
        a.freed.append((b.addr, b.n))

    def act_reallocate(self):
        a = self.pick_alloc()
        b = self.pick_block(a)
        caller = self.via(a)
        new = self.size_for(a)
        if b is None:
            # reallocate(0, 0, n) is allocate(n), by the allocator called.
            ok = (MemoryError, GaveUp) if caller.limited() else ()
            done, p = self.api(
                f"{caller.name}.reallocate(0, 0, {new})", caller.obj.reallocate, 0, 0, new, ok=ok
            )
            if done and p:
                nb = Block(p, new, self.new_tag(), caller if not a.is_pool else a)
                self.fill(nb)
                self.live_map(a)[p] = nb
            return None
        if self.pinned(a, b):
            return self.misuse(
                f"{caller.name}.reallocate(exported)",
                caller.obj.reallocate,
                b.addr,
                b.n,
                new,
                exc=BufferError,
            )
        self.check_contents(b)
        # A malloc block stays with its owner, whose limit applies.
        ok = (MemoryError, GaveUp) if (a if a.is_pool else b.owner).limited() else ()
        self.in_flight = (a, b)
        try:
            done, q = self.api(
                f"{caller.name}.reallocate({b.addr:#x}, {b.n}, {new})",
                caller.obj.reallocate,
                b.addr,
                b.n,
                new,
                ok=(*ok, BufferError, AllocatorError) if self.handler_of(a, caller) else ok,
            )
        finally:
            self.in_flight = None
        live = self.live_map(a)
        if not done:
            # Out of memory, or a handler's own error: it gave up, or it tried to export
            # the block being moved (BufferError: the move is undone; AllocatorError: a
            # large block is out of the record while realloc moves it). The handler never
            # frees the block in flight, so it must still be live and unchanged.
            check(b.addr in live, "the block in flight vanished")
            self.check_contents(b)
            return None
        del live[b.addr]
        a.freed.append((b.addr, b.n))
        if new == 0:
            check(q == 0, f"reallocate to 0 returned {q}")
            return None
        check(q % a.alignment == 0 and q not in live, f"reallocate gave {q:#x}")
        nb = Block(q, new, b.tag, b.owner)
        self.check_contents(nb, min(b.n, new))
        self.fill(nb, min(b.n, new))
        live[q] = nb
        return None

    def act_view(self):
        a = self.pick_alloc()
        b = self.pick_block(a)
        if b is None or len(self.views) > 40:
            return self.act_release_view()
        ext = a.extent(b.n)
        off = self.rng.randrange(ext)
        length = self.rng.randint(0, ext - off)
        caller = self.via(a)
        done, mv = self.api(
            f"{caller.name}.view({b.addr:#x}+{off}, {length})",
            caller.obj.view,
            b.addr + off,
            length,
        )
        check(len(mv) == length and not mv.readonly, "view size")
        inside = max(0, min(b.n, off + length) - off)
        check(mv[:inside].tobytes() == bytes([b.tag]) * inside, "view shows other bytes")
        self.views.append(View(a, mv, b, off, length))
        self.pins[(a.group(), b.addr)] += 1
        return None

    def act_use_view(self):
        if not self.views:
            return self.act_view()
        v = self.rng.choice(self.views)
        inside = max(0, min(v.block.n, v.off + v.length) - v.off)
        # The block is pinned, so it is live and ours: its bytes are the tag.
        check(v.mv[:inside].tobytes() == bytes([v.block.tag]) * inside, "exported block changed")
        if inside:
            v.mv[:inside] = bytes([v.block.tag]) * inside
        return None

    def act_release_view(self):
        if not self.views:
            return None
        v = self.views.pop(self.rng.randrange(len(self.views)))
        if self.rng.random() < 0.5:
            v.mv.release()
            with_released = v.mv
            self.api("view.release() twice", with_released.release)
        self.pins[(v.alloc.group(), v.block.addr)] -= 1
        v.mv = None  # dropping the last reference unexports the block
        return None

    def act_owns(self):
        a = self.pick_alloc()
        b = self.pick_block(a)
        if b is not None:
            ext = a.extent(b.n)
            for addr in (b.addr, b.addr + ext - 1):
                done, r = self.api(f"{a.name}.owns", a.obj.owns, addr)
                check(r is True, f"{a.name}.owns({addr:#x}) of a live block is {r}")
        if a.is_pool and a.freed:
            addr, _ = self.rng.choice(a.freed)
            inside = any(
                x.addr <= addr < x.addr + max(a.extent(x.n), 1) or x.addr - a.align <= addr < x.addr
                for x in a.live.values()
            )
            if not inside:
                done, r = self.api(f"{a.name}.owns(freed)", a.obj.owns, addr)
                check(r is False, f"{a.name}.owns({addr:#x}) of a freed block is {r}")

    def act_introspect(self):
        a = self.rng.choice(self.pools)
        pool = a.obj
        i = self.rng.randrange(pool.nfreelists)
        _, fl = self.api("free_list", pool.free_list, i)
        check(len(fl) == pool.stats().free_list_lengths[i], "free_list length")
        check(all(p % a.align == 0 for p in fl), "free_list alignment")
        if a.live:
            live = set(a.live)
            # A free block is never a live user block (debug: user = block + align).
            shift = a.align if a.debug else 0
            check(not any(p + shift in live for p in fl), "a live block is on a free list")
        n = self.rng.randint(1, a.max_bytes)
        _, r = self.api("round_up", pool.round_up, n)
        check(r == round_up(n, a.align), "round_up")
        _, c = self.api("size_class", pool.size_class, n)
        check(c == (n + a.align - 1) // a.align - 1, "size_class")
        if self.rng.random() < 0.1:
            _, regions = self.api("layout", pool.layout)
            for r in regions:
                pos = r["base"]
                for start, size, _kind, _cls in r["spans"]:
                    check(start == pos, "layout spans must tile the region")
                    pos += size
                check(pos == r["base"] + r["used"], "layout covers the used part")

    def act_equality(self):
        p, q = self.rng.sample(self.pools, 2)
        m1, m2 = self.mallocs
        for what, got, want in (
            ("pool == itself", p.obj == p.obj, True),
            ("pools differ", p.obj == q.obj, False),
            ("pool != other", p.obj != q.obj, True),
            ("malloc equal", m1.obj == m2.obj, True),
            ("upstream equal", p.up.obj == m1.obj, True),
            ("pool vs malloc", p.obj == m1.obj, False),
            ("malloc hash", hash(m1.obj) == hash(p.up.obj), True),
        ):
            self.counts["calls"] += 1
            check(got is want, f"equality: {what}")

    def act_release(self):
        a = self.rng.choice(self.pools)
        if self.rng.random() < 0.5:
            # Drain first, so release can succeed: free every block not exported.
            for b in list(a.live.values()):
                if not self.pinned(a, b):
                    self.free_block(a, b)
        if a.live:
            return self.misuse(f"{a.name}.release() with live blocks", a.obj.release)
        self.api(f"{a.name}.release()", a.obj.release)
        st = a.obj.stats()
        check(
            (st.heap_size, st.chunk_bytes_left, st.arena_used, st.upstream_chunk_bytes)
            == (0, 0, 0, 0),
            f"after release: {st}",
        )
        check(sum(st.free_list_lengths) == 0, "free lists after release")
        check(a.up.obj.stats().live_bytes == 0, "upstream after release")
        a.freed.clear()  # the pages are gone: those addresses are nobody's
        return None

    def act_handler(self):
        limited = [a for a in self.allocs if a.limited()]
        if not limited:
            return
        a = self.rng.choice(limited)
        target_malloc = a.up if a.is_pool else a
        modes = ["free", "free", "alloc", "raise", "view", None, None]
        mode = self.rng.choice(modes)
        h = Handler(self, a, mode) if mode else None
        self.api(f"{a.name}: set_malloc_handler({mode})", target_malloc.obj.set_malloc_handler, h)
        a.handler = h

    def act_debug_write_after_free(self):
        debug = [a for a in self.pools if a.debug]
        if not debug:
            return
        a = self.rng.choice(debug)
        small = a.max_bytes - a.align
        if small < 1:
            return
        b = self.alloc_block(a, self.rng.randint(1, small))
        if b is None:
            return
        self.free_block(a, b)
        ext = a.extent(b.n)
        off = self.rng.randrange(ext)
        # The bug a debug pool exists to catch: a write through a dangling pointer. Safe
        # here: the block is the head of its free list, and the link lives in its header.
        ctypes.memset(b.addr + off, 0x5A, 1)
        before = self.snapshot()
        done, e = self.api(
            f"{a.name}.allocate after a write-after-free", a.obj.allocate, b.n, exact=AllocatorError
        )
        check(f"{b.addr:#x}" in str(e), f"the fault does not name the block: {e}")
        check(self.snapshot() == before, "a detected fault changed the pool")
        again = self.alloc_block(a, b.n)
        check(again is not None and again.addr == b.addr, "the repaired block comes first")

    def act_debug_cookie(self):
        debug = [a for a in self.pools if a.debug and a.live]
        if not debug:
            return
        a = self.rng.choice(debug)
        b = self.rng.choice(list(a.live.values()))
        if self.pinned(a, b):
            return
        cookie = ctypes.c_size_t.from_address(b.addr - a.align)
        saved = cookie.value
        check(saved == b.n, f"cookie {saved} of a {b.n}-byte block")
        cookie.value = saved ^ 0x10  # an underrun from the block before
        self.misuse(f"{a.name}.deallocate with a smashed cookie", a.obj.deallocate, b.addr, b.n)
        cookie.value = saved

    def act_drop_allocators(self):
        # A pool dropped while a view exports one of its blocks lives on for the view; a
        # MallocAllocator dropped frees its own blocks (no view of them through another).
        up = MallocAllocator(limit=self.rng.choice([None, 4096]))
        pool = PoolAllocator(
            arena_size=self.rng.choice([0, 4096]), upstream=up, debug=self.rng.random() < 0.5
        )
        blocks = []
        for _ in range(self.rng.randint(1, 12)):
            n = self.rng.randint(1, 300)
            done, p = self.api("tmp.allocate", pool.allocate, n, ok=(MemoryError,))
            if done:
                ctypes.memset(p, 0x33, n)
                blocks.append((p, n))
        view = pool.view(*blocks[0]) if blocks else None
        del pool, up
        gc.collect()
        if view is not None:
            check(view.tobytes() == b"\x33" * len(view), "a dropped pool's exported block")
            view[:] = b"\x44" * len(view)
            view.release()
        m = MallocAllocator()
        for _ in range(self.rng.randint(0, 5)):
            self.api("tmp malloc", m.allocate, self.rng.randint(1, 5000))
        del m
        self.counts["calls"] += 2

    # ----------------------------------------------------------------------------------
    # Actions: misuse
    # ----------------------------------------------------------------------------------

    def act_misuse(self):
        a = self.pick_alloc()
        obj = a.obj
        b = self.pick_block(a)
        rng = self.rng
        cases = [
            ("allocate(-1)", obj.allocate, (-1,), ValueError),
            ("allocate(2**64)", obj.allocate, (HUGE,), MemoryError),
            ("allocate(2**63)", obj.allocate, (2**63,), MemoryError),
            ("allocate(non-int)", obj.allocate, (rng.choice(NON_INTS),), TypeError),
            ("deallocate(0, n)", obj.deallocate, (0, rng.randint(1, 64)), AllocatorError),
            ("deallocate(12345)", obj.deallocate, (12345, 8), AllocatorError),
            ("deallocate(2**64-8)", obj.deallocate, (HUGE - 8, 8), AllocatorError),
            ("deallocate(2**64)", obj.deallocate, (HUGE, 8), AllocatorError),
            ("deallocate(-p)", obj.deallocate, (-8, 8), ValueError),
            ("deallocate(non-int)", obj.deallocate, (rng.choice(NON_INTS), 8), TypeError),
            ("reallocate(0, n, m)", obj.reallocate, (0, 8, 16), AllocatorError),
            ("view(12345)", obj.view, (12345, 1), AllocatorError),
            ("owns(-1)", obj.owns, (-1,), ValueError),
            ("owns(non-int)", obj.owns, (rng.choice(NON_INTS),), TypeError),
            (
                "set_malloc_handler(42)",
                (obj if not a.is_pool else a.up.obj).set_malloc_handler,
                (42,),
                TypeError,
            ),
        ]
        if a.is_pool:
            nf = obj.nfreelists
            cases += [
                ("free_list(-1)", obj.free_list, (-1,), IndexError),
                ("free_list(nfreelists)", obj.free_list, (nf,), IndexError),
                ("free_list(non-int)", obj.free_list, ("0",), TypeError),
                ("size_class(0)", obj.size_class, (0,), ValueError),
                ("size_class(max+1)", obj.size_class, (a.max_bytes + 1,), ValueError),
                ("round_up(-1)", obj.round_up, (-1,), ValueError),
            ]
        first_b = len(cases)
        if b is not None:
            p, n, ext = b.addr, b.n, a.extent(b.n)
            cases += [
                ("deallocate(p+1)", obj.deallocate, (p + 1, n), AllocatorError),
                ("deallocate(p+4)", obj.deallocate, (p + 4, n), AllocatorError),
                ("deallocate(p, -1)", obj.deallocate, (p, -1), ValueError),
                ("deallocate(p, 2**64)", obj.deallocate, (p, HUGE), MemoryError),
                ("deallocate(p, non-int)", obj.deallocate, (p, rng.choice(NON_INTS)), TypeError),
                ("reallocate(p, -1, n)", obj.reallocate, (p, -1, 8), ValueError),
                ("reallocate(p, n, -1)", obj.reallocate, (p, n, -1), ValueError),
                ("reallocate(p, n, 2**64)", obj.reallocate, (p, n, HUGE), MemoryError),
                ("reallocate(p, n, 2**63)", obj.reallocate, (p, n, 2**63), MemoryError),
                ("reallocate(p+1)", obj.reallocate, (p + 1, n, n + 1), AllocatorError),
                ("view(p, ext+1)", obj.view, (p, ext + 1), AllocatorError),
                ("view(p+ext, 1)", obj.view, (p + ext, 1), AllocatorError)
                if not self.adjacent_live(a, p + ext)
                else ("view(p, -1)", obj.view, (p, -1), ValueError),
                ("view(p, -1)", obj.view, (p, -1), ValueError),
                ("view(p, 2**64)", obj.view, (p, HUGE), MemoryError),
                ("view(p, non-int)", obj.view, (p, rng.choice(NON_INTS)), TypeError),
            ]
            cases.append(("deallocate(p, 0)", obj.deallocate, (p, 0), AllocatorError))
            if ext > a.alignment and (p + a.alignment) not in self.live_map(a):
                cases.append(
                    ("deallocate(interior)", obj.deallocate, (p + a.alignment, n), AllocatorError)
                )
            wrong = self.wrong_size(a, n)
            if wrong is not None:
                cases.append(
                    (
                        f"deallocate(p, {wrong}) of a {n}-byte block",
                        obj.deallocate,
                        (p, wrong),
                        AllocatorError,
                    )
                )
                cases.append(
                    (
                        f"reallocate(p, {wrong}, ..)",
                        obj.reallocate,
                        (p, wrong, wrong + 8),
                        AllocatorError,
                    )
                )
            if a.is_pool:
                # A block of another pool, and a malloc block: foreign to this pool.
                other = rng.choice([x for x in self.pools if x is not a])
                ob = self.pick_block(other)
                if ob is not None:
                    cases.append(
                        (
                            "deallocate(other pool's)",
                            obj.deallocate,
                            (ob.addr, ob.n),
                            AllocatorError,
                        )
                    )
                    cases.append(("view(other pool's)", obj.view, (ob.addr, 1), AllocatorError))
                mb = self.pick_block(self.mallocs[0])
                if mb is not None:
                    cases.append(
                        (
                            "deallocate(malloc block)",
                            obj.deallocate,
                            (mb.addr, mb.n),
                            AllocatorError,
                        )
                    )
                cases.append(("release() with live blocks", obj.release, (), AllocatorError))
            else:
                # Pool memory handed to a MallocAllocator: pool blocks in the arena are not
                # malloc blocks; blocks in upstream chunks or sent upstream are held by
                # their pool (BufferError).
                pa = rng.choice(self.pools)
                pb = self.pick_block(pa)
                if pb is not None:
                    cases.append(
                        (
                            "malloc.deallocate(pool block)",
                            obj.deallocate,
                            (pb.addr, pb.n),
                            (AllocatorError, BufferError),
                        )
                    )
            if self.pinned(a, b):
                # An exported block: refusing to touch it may come before any other check.
                cases[first_b:] = [
                    (w, f, x, (e if isinstance(e, tuple) else (e,)) + (BufferError,))
                    for w, f, x, e in cases[first_b:]
                ]
        # Double frees: an address freed and not live again in this allocator.
        stale = [(p, n) for p, n in a.freed if p not in self.live_map(a)]
        if stale:
            p, n = rng.choice(stale)
            exc = AllocatorError if a.is_pool else (AllocatorError, BufferError)
            cases.append(("double free", obj.deallocate, (p, n), exc))
            cases.append(("reallocate(freed)", obj.reallocate, (p, n, n + 16), exc))
            if a.is_pool:
                cases.append(
                    ("view(freed)", obj.view, (p, 1), AllocatorError)
                    if not self.inside_live(a, p)
                    else cases[0]
                )
        what, fn, args, exc = rng.choice(cases)
        self.misuse(f"{a.name}.{what}", fn, *args, exc=exc)

    def adjacent_live(self, a, addr):
        return self.inside_live(a, addr)

    def inside_live(self, a, addr):
        for x in self.live_map(a).values():
            lo = x.addr - (a.align if a.is_pool and a.debug else 0)
            if lo <= addr < x.addr + max(a.extent(x.n), 1):
                return True
        return False

    def wrong_size(self, a, n):
        """A size that does not describe the block of ``n`` bytes (None if none fits)."""
        rng = self.rng
        if not a.is_pool or a.debug:
            # Exact sizes only: malloc records them, a debug pool's cookie holds them.
            w = n + rng.choice([-1, 1, 8, 100])
            return w if w > 0 else None
        small = n <= a.max_bytes
        if small:
            # Another class, or claiming to be large.
            choices = [round_up(n, a.align) + a.align, a.max_bytes + 8]
            if round_up(n, a.align) > a.align:
                choices.append(round_up(n, a.align) - a.align)
            w = rng.choice(choices)
            other_class = w > a.max_bytes or round_up(w, a.align) != round_up(n, a.align)
            return w if w > 0 and other_class else None
        return rng.choice([n - 1, n + 1, max(1, a.max_bytes // 2)])

    def act_constructor_misuse(self):
        rng = self.rng
        cases = [
            (lambda: PoolAllocator(align=12), ValueError),
            (lambda: PoolAllocator(align=4), ValueError),
            (lambda: PoolAllocator(max_bytes=100), ValueError),
            (lambda: PoolAllocator(max_bytes=0), ValueError),
            (lambda: PoolAllocator(refill=0), ValueError),
            (lambda: PoolAllocator(arena_size=-1), ValueError),
            (lambda: PoolAllocator(arena_size=HUGE), MemoryError),
            (lambda: PoolAllocator(align="8"), TypeError),
            (lambda: PoolAllocator(upstream=self.pools[0].obj), TypeError),
            (lambda: PoolAllocator(8), TypeError),
            (lambda: MallocAllocator(limit=-1), ValueError),
            (lambda: MallocAllocator(limit="x"), TypeError),
        ]
        fn, exc = rng.choice(cases)
        self.misuse("constructor", fn, exc=exc)

    def act_real_oom(self):
        # malloc really returns NULL: counted as a failure, nothing else changes. Only
        # without a handler, which would run (and may free blocks) on the failure.
        a = self.pick_alloc()
        target = a.up if a.is_pool else a
        if target.handler is not None or a.handler is not None:
            return
        before = self.snapshot()
        self.api(f"{a.name}.allocate(2**62)", a.obj.allocate, 2**62, exact=MemoryError)
        after = self.snapshot()
        check(len(before) == len(after), "snapshot shape")
        self.check_invariants()

    def act_malloc_view_of_pool_memory(self):
        # Every MallocAllocator is equal, but memory a pool holds is not a user's block: a
        # MallocAllocator must refuse to export it (or to free it).
        pools = [a for a in self.pools if a.live]
        if not pools:
            return
        a = self.rng.choice(pools)
        b = self.rng.choice(list(a.live.values()))
        m = self.rng.choice(self.mallocs)
        if m.obj.owns(b.addr):
            self.misuse("malloc.view(pool-held memory)", m.obj.view, b.addr, 1)

    # ----------------------------------------------------------------------------------
    # Containers
    # ----------------------------------------------------------------------------------

    def value_for(self, dtype):
        rng = self.rng
        if dtype == "int64":
            return rng.choice([rng.randint(-(2**63), 2**63 - 1), rng.randint(-5, 5)])
        if dtype == "float64":
            return rng.choice([rng.uniform(-1e9, 1e9), 0.5, -0.0, float(rng.randint(0, 9))])
        return rng.choice([rng.randint(0, 9), "s" * rng.randint(0, 3), (1, 2), None, 2.5])

    def act_container(self):
        kinds = container_kinds()
        if not kinds:
            return
        rng = self.rng
        if len(self.conts) < 4 or rng.random() < 0.02:
            if len(self.conts) >= 6:
                self.conts.pop(rng.randrange(len(self.conts))).export = None
                gc.collect()
            kind = rng.choice(kinds)
            dtype = rng.choice(["int64", "float64", "object"])
            pool = rng.choice(self.cont_pools + self.cont_mallocs)
            items = [self.value_for(dtype) for _ in range(rng.randint(0, 40))]
            make = functools.partial(getattr(stlalloc, kind), dtype=dtype, allocator=pool.obj)
            done, obj = self.api(f"{kind}(..)", make, items, ok=(MemoryError,))
            if done:
                check(list(obj) == items, f"{kind} built from a list")
                check(obj.get_allocator() is pool.obj, "get_allocator")
                self.conts.append(Cont(kind, dtype, obj, pool))
            return
        c = rng.choice(self.conts)
        getattr(self, "cont_" + c.kind.lower())(c)
        check(len(c.obj) == len(c.model), f"{c.kind} length {len(c.obj)} != {len(c.model)}")
        if rng.random() < 0.2:
            check(list(c.obj) == c.model, f"{c.kind} contents differ from the model")

    def cont_op(self, c, what, fn, *args, grows=False, exact=None):
        """One container call; on MemoryError (growth failed midway) it must be intact."""
        state = (list(c.obj), c.obj.capacity() if c.kind == "Vector" else None)
        done, r = self.api(
            f"{c.kind}.{what}", fn, *args, ok=(MemoryError,) if grows else (), exact=exact
        )
        if not done:
            after = (list(c.obj), c.obj.capacity() if c.kind == "Vector" else None)
            check(after == state, f"{c.kind}.{what} raised {r!r} and changed the container")
        return done, r

    def bad_value(self, c):
        """A value the container must refuse, and the exception."""
        if c.dtype == "int64":
            return self.rng.choice(
                [
                    (2**63, OverflowError),
                    (-(2**63) - 1, OverflowError),
                    ("x", TypeError),
                    (1.5, TypeError),
                ]
            )
        if c.dtype == "float64":
            return self.rng.choice([("x", TypeError), (None, TypeError)])
        return None

    def stored(self, c, x):
        return float(x) if c.dtype == "float64" else x

    def cont_common(self, c):
        """Operations both containers share; True if one ran."""
        rng = self.rng
        r = rng.random()
        obj, model = c.obj, c.model
        if r < 0.3:
            x = self.value_for(c.dtype)
            done, _ = self.cont_op(c, "append", obj.append, x, grows=True)
            if done:
                model.append(self.stored(c, x))
        elif r < 0.4:
            xs = [self.value_for(c.dtype) for _ in range(rng.choice([1, 5, 50, 300]))]
            done, _ = self.cont_op(c, f"extend({len(xs)})", obj.extend, xs, grows=True)
            if done:
                model.extend(self.stored(c, x) for x in xs)
        elif r < 0.55:
            if model:
                done, x = self.cont_op(c, "pop", obj.pop)
                check(x == model.pop() or x != x, "pop returned another element")
            else:
                self.cont_op(c, "pop() on empty", obj.pop, exact=IndexError)
        elif r < 0.62:
            bad = self.bad_value(c)
            if bad is not None:
                self.cont_op(c, f"append({bad[0]!r})", obj.append, bad[0], exact=bad[1])
        elif r < 0.68:
            i = len(model) + rng.randint(0, 3)
            self.cont_op(c, "[len]", obj.__getitem__, i, exact=IndexError)
        elif r < 0.74 and model:
            i = rng.randrange(-len(model), len(model))
            x = self.value_for(c.dtype)
            self.cont_op(c, "__setitem__", obj.__setitem__, i, x)
            model[i] = self.stored(c, x)
        elif r < 0.78 and model:
            i = rng.randrange(len(model))
            self.cont_op(c, "__delitem__", obj.__delitem__, i)
            del model[i]
        elif r < 0.82:
            i = rng.randint(0, len(model))
            x = self.value_for(c.dtype)
            done, _ = self.cont_op(c, "insert", obj.insert, i, x, grows=True)
            if done:
                model.insert(i, self.stored(c, x))
        elif r < 0.85:
            self.cont_op(c, "reverse", obj.reverse)
            model.reverse()
        elif r < 0.88:
            try:
                want = sorted(model)
            except TypeError:
                return True
            self.cont_op(c, "sort", obj.sort)
            model[:] = want
        elif r < 0.9:
            self.cont_op(c, "clear", obj.clear)
            model.clear()
        elif r < 0.93:
            done, cp = self.cont_op(c, "copy", obj.copy, grows=True)
            if done:
                check(list(cp) == model and cp.get_allocator() is c.pool.obj, "copy")
                del cp
        elif r < 0.95 and c.dtype == "object" and len(model) < 50:
            # A cycle through the container: the garbage collector must free it.
            done, _ = self.cont_op(c, "append(itself)", obj.append, obj, grows=True)
            if done:
                model.append(obj)
        else:
            return False
        return True

    def cont_vector(self, c):
        rng = self.rng
        v, model = c.obj, c.model
        if c.export is not None:
            # Exported storage may not move: growing past the capacity is a BufferError,
            # growing within it is fine.
            if len(model) == v.capacity():
                self.cont_op(
                    c, "append while exported", v.append, self.value_for(c.dtype), exact=BufferError
                )
            else:
                x = self.value_for(c.dtype)
                self.cont_op(c, "append within capacity while exported", v.append, x)
                model.append(self.stored(c, x))
            self.cont_op(
                c,
                "reserve past capacity while exported",
                v.reserve,
                v.capacity() + 1,
                exact=BufferError,
            )
            check(c.export.tolist() == model[: len(c.export)], "the export shows other values")
            if rng.random() < 0.3:
                c.export.release()
                c.export = None
            return
        if self.cont_common(c):
            return
        r = rng.random()
        if r < 0.3:
            n = rng.choice([0, len(model), len(model) + 1, 2 * len(model) + 64, 5000])
            done, _ = self.cont_op(c, f"reserve({n})", v.reserve, n, grows=True)
            if done:
                check(v.capacity() >= n, "reserve")
        elif r < 0.5:
            n = rng.randint(0, len(model) + 20)
            x = self.value_for(c.dtype)
            done, _ = self.cont_op(c, f"resize({n})", v.resize, n, x, grows=True)
            if done:
                model[:] = model[:n] + [self.stored(c, x)] * (n - len(model))
        elif r < 0.6:
            self.cont_op(c, "shrink_to_fit", v.shrink_to_fit, grows=True)
        elif r < 0.7:
            self.cont_op(c, "reserve(-1)", v.reserve, -1, exact=ValueError)
        elif r < 0.9 and c.dtype != "object" and c.export is None:
            _, c.export = self.api("memoryview(Vector)", memoryview, v)
        else:
            if model:
                check(v.front() == model[0] or model[0] != model[0], "front")
                check(v.back() == model[-1] or model[-1] != model[-1], "back")
            else:
                self.cont_op(c, "front() on empty", v.front, exact=IndexError)

    def cont_list(self, c):
        rng = self.rng
        lst, model = c.obj, c.model
        if self.cont_common(c):
            return
        r = rng.random()
        if r < 0.3:
            x = self.value_for(c.dtype)
            done, _ = self.cont_op(c, "appendleft", lst.appendleft, x, grows=True)
            if done:
                model.insert(0, self.stored(c, x))
        elif r < 0.45:
            if model:
                done, x = self.cont_op(c, "popleft", lst.popleft)
                check(x == model.pop(0) or x != x, "popleft")
            else:
                self.cont_op(c, "popleft() on empty", lst.popleft, exact=IndexError)
        elif r < 0.65:
            others = [
                o for o in self.conts if o.kind == "List" and o is not c and o.dtype == c.dtype
            ]
            if not others:
                return
            o = rng.choice(others)
            # Equal allocators: the same pool, or any two MallocAllocators (SPEC §8).
            if o.pool is c.pool or not (o.pool.is_pool or c.pool.is_pool):
                self.cont_op(c, "splice", lst.splice, o.obj)
                model.extend(o.model)
                o.model.clear()
                check(len(o.obj) == 0, "splice leaves the other list empty")
            else:
                before = list(o.obj)
                self.cont_op(c, "splice(other allocator)", lst.splice, o.obj, exact=AllocatorError)
                check(list(o.obj) == before, "a refused splice changed the other list")
        elif r < 0.8:
            xs = [self.value_for(c.dtype) for _ in range(rng.choice([1, 5, 50]))]
            done, _ = self.cont_op(c, "extendleft", lst.extendleft, xs, grows=True)
            if done:
                model[:0] = [self.stored(c, x) for x in reversed(xs)]
        else:
            addrs = lst.node_addresses()
            check(len(addrs) == len(model) and len(set(addrs)) == len(addrs), "node addresses")
            check(all(c.pool.obj.owns(p) for p in addrs[:8]), "nodes live in the allocator")

    # ----------------------------------------------------------------------------------
    # Running
    # ----------------------------------------------------------------------------------

    ACTIONS = (
        ("act_allocate", 22),
        ("act_deallocate", 18),
        ("act_reallocate", 10),
        ("act_view", 6),
        ("act_use_view", 4),
        ("act_release_view", 5),
        ("act_owns", 3),
        ("act_introspect", 2),
        ("act_equality", 1),
        ("act_release", 1),
        ("act_handler", 2),
        ("act_debug_write_after_free", 2),
        ("act_debug_cookie", 1),
        ("act_drop_allocators", 0.3),
        ("act_misuse", 20),
        ("act_constructor_misuse", 1),
        ("act_real_oom", 0.5),
        ("act_container", 14),
        ("act_malloc_view_of_pool_memory", 1),
    )

    def run(self):
        fns = [getattr(self, name) for name, _ in self.ACTIONS]
        weights = [w for _, w in self.ACTIONS]
        for step in range(self.steps):
            self.step = step
            for h in (a.handler for a in self.allocs):
                if h is not None:
                    h.calls = 0
            self.rng.choices(fns, weights)[0]()
            self.check_invariants()
        self.finish()

    def drop_containers(self):
        for c in self.conts:
            check(list(c.obj) == c.model, f"{c.kind} contents at the end")
            if c.export is not None:
                c.export.release()
        self.conts.clear()

    def finish(self):
        # Everything goes back; then nothing may be live anywhere.
        for a in self.pools + self.cont_pools:
            st = a.obj.stats()
            self.counts["refills"] += st.refills
            self.counts["chunk_requests"] += st.chunk_requests
        for v in self.views:
            v.mv.release()
        self.views.clear()
        self.pins.clear()
        for a in self.allocs:
            a.handler = None
            (a.up if a.is_pool else a).obj.set_malloc_handler(None)
        for a in self.pools + [self.mallocs[0]]:
            for b in self.blocks_of(a):
                self.free_block(self.via(a) if not a.is_pool else a, b)
        self.drop_containers()
        # Collected only now: until drop_containers returned, its loop variable kept the
        # last container alive. Containers of objects may hold themselves (a cycle).
        gc.collect()
        self.check_invariants()
        for a in self.pools + self.cont_pools:
            st = a.obj.stats()
            alive = [o for o in gc.get_objects() if type(o).__name__ in ("Vector", "List")]
            check(
                st.live_blocks == st.large_live_blocks == 0,
                f"{a.name}: live at the end: {st}; containers alive: {len(alive)}",
            )
            self.api(f"{a.name}.release()", a.obj.release)
            check(a.up.obj.stats().live_bytes == 0, f"{a.name}: upstream keeps memory")
        for a in self.mallocs + self.cont_mallocs:
            check(a.obj.stats().live_blocks == 0, f"{a.name}: live at the end")


def child_main(seed, steps):
    w = World(seed, steps)
    try:
        w.run()
    except BaseException:
        traceback.print_exc()
        print(f"seed {seed}, step {getattr(w, 'step', '?')}; last calls:", file=sys.stderr)
        for line in w.log:
            print("   ", line, file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "seed": seed,
                "steps": steps,
                **w.counts,
                "raised": dict(w.raised),
                "containers": container_kinds(),
            }
        )
    )
    return 0


# --------------------------------------------------------------------------------------
# The parent: pytest
# --------------------------------------------------------------------------------------

STEPS = int(os.environ.get("STLALLOC_FUZZ_STEPS", "8000"))
CHILDREN = int(os.environ.get("STLALLOC_FUZZ_CHILDREN", "8"))
SECONDS = float(os.environ.get("STLALLOC_FUZZ_SECONDS", "0"))
BASE_SEED = int(os.environ.get("STLALLOC_FUZZ_SEED", "1"))


def child_command(seed):
    """The child's command line: with address randomisation off and a fixed hash seed
    where possible, so that a failing seed replays the same way."""
    cmd = [sys.executable, "-X", "faulthandler", __file__, str(seed), str(STEPS)]
    setarch = shutil.which("setarch")
    if setarch and subprocess.run([setarch, platform.machine(), "-R", "true"]).returncode == 0:
        cmd = [setarch, platform.machine(), "-R", *cmd]
    return cmd


def run_child(seed):
    cmd = child_command(seed)
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    return seed, cmd, proc


def test_random_misuse_programs_survive_in_child_processes():
    # Two children at a time (this machine's cores); with STLALLOC_FUZZ_SECONDS, new seeds
    # keep starting until the time is up.
    deadline = time.monotonic() + SECONDS
    results = []
    seeds = iter(range(BASE_SEED, BASE_SEED + 10**9))
    with ThreadPoolExecutor(max_workers=2) as ex:
        while True:
            batch = [next(seeds) for _ in range(CHILDREN if not results else 2)]
            results += list(ex.map(run_child, batch))
            if time.monotonic() >= deadline:
                break
    totals = collections.Counter()
    raised = collections.Counter()
    for seed, cmd, proc in results:
        how = (
            f"killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exit status {proc.returncode}"
        )
        assert proc.returncode == 0, (
            f"misuse program {seed}: {how}\n"
            f"reproduce: PYTHONHASHSEED=0 {' '.join(cmd)}\n{proc.stderr[-4000:]}"
        )
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        totals.update({k: v for k, v in report.items() if isinstance(v, int) and k != "seed"})
        totals["programs"] += 1
        raised.update(report["raised"])
    print(
        f"\nmisuse fuzz: {totals['programs']} programs of {STEPS} steps, {totals['calls']} "
        f"calls, {totals['invalid']} invalid, {totals['handler_calls']} handler calls, "
        f"{totals['chunk_requests']} chunk requests; containers: "
        f"{container_kinds() or 'none yet'}; raised: {dict(sorted(raised.items()))}"
    )
    assert totals["programs"] >= CHILDREN
    # The programs must reach what they are for: misuse, exhaustion and handlers.
    assert totals["invalid"] > totals["programs"] * STEPS // 10
    assert raised["MemoryError"] > 0 and raised["BufferError"] > 0
    assert totals["handler_calls"] > 0 and totals["upstream_chunk_checks"] > 0


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else STEPS))
