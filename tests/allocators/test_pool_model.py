"""The pool against a pure-Python reference model of SGI's second level (SPEC §3).

The model names every pool address ``(region, offset)``: region 0 is the arena, region
``k >= 1`` the k-th chunk taken from the upstream allocator. A region's real base is learnt
the first time the pool returns a block of it (a new chunk's first object is always the
block ``allocate`` returns), after which every address the pool shows (returned blocks and
every free list, head first) must be exactly the model's.

After every step the machine compares addresses, every free list, every SGI field of
``stats()``, the upstream's statistics, and checks SPEC §3's conservation equation.
"""

import random

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from stlalloc import AllocatorError, MallocAllocator, PoolAllocator

ARENA = 0
MALLOC_ALIGN = 16  # glibc malloc on x86-64; larger alignments need posix_memalign


# --------------------------------------------------------------------------------------
# The reference model
# --------------------------------------------------------------------------------------


class UpstreamModel:
    """The first level as the pool sees it: live bytes against a limit, failures counted."""

    def __init__(self, limit):
        self.limit = limit
        self.live_blocks = 0
        self.live_bytes = 0
        self.failures = 0

    def _fits(self, n, freed=0):
        return self.limit is None or self.live_bytes - freed + n <= self.limit

    def allocate(self, n):
        if not self._fits(n):
            self.failures += 1
            raise MemoryError(n)
        self.live_blocks += 1
        self.live_bytes += n

    def deallocate(self, n):
        self.live_blocks -= 1
        self.live_bytes -= n

    def reallocate(self, old, new, align):
        if align > MALLOC_ALIGN:
            # realloc cannot keep a larger alignment: allocate, copy, free.
            self.allocate(new)
            self.deallocate(old)
            return
        if not self._fits(new, freed=old):
            self.failures += 1
            raise MemoryError(new)
        self.live_bytes += new - old


class SGIPool:
    """SGI's ``__default_alloc_template``, exactly as SPEC §3 states it.

    Free lists are stacks whose head is the *last* element. Small blocks are
    ``(region, offset)``; large blocks (sent upstream) are ``("L", serial)``.
    """

    def __init__(self, align, max_bytes, refill, arena_reserved, upstream):
        self.align = align
        self.max_bytes = max_bytes
        self.nobjs = refill
        self.nfreelists = max_bytes // align
        self.arena_reserved = arena_reserved
        self.up = upstream
        self.free = [[] for _ in range(self.nfreelists)]
        self.chunk = None  # (region, start_offset, end_offset)
        self.heap_size = 0
        self.brk = 0
        self.next_region = 1
        self.chunks = {}  # upstream region -> bytes
        self.live = {}  # small key -> round_up(n)
        self.large = {}  # large key -> n
        self.next_large = 0
        self.refills = 0
        self.chunk_requests = 0
        self.upstream_chunk_bytes = 0

    # SGI's arithmetic
    def round_up(self, n):
        return (n + self.align - 1) & ~(self.align - 1)

    def index(self, n):
        return (n + self.align - 1) // self.align - 1

    def class_size(self, i):
        return (i + 1) * self.align

    @property
    def chunk_bytes_left(self):
        return 0 if self.chunk is None else self.chunk[2] - self.chunk[1]

    @property
    def live_bytes(self):
        return sum(self.live.values())

    @property
    def large_live_bytes(self):
        return sum(self.large.values())

    # SPEC §3
    def allocate(self, n):
        if n == 0:
            return None
        if n > self.max_bytes:
            self.up.allocate(n)
            key = ("L", self.next_large)
            self.next_large += 1
            self.large[key] = n
            return key
        i = self.index(n)
        key = self.free[i].pop() if self.free[i] else self._refill(self.round_up(n))
        self.live[key] = self.round_up(n)
        return key

    def deallocate(self, key, n):
        if key is None and n == 0:
            return
        if n > self.max_bytes:
            assert self.large.pop(key) == n
            self.up.deallocate(n)
        else:
            assert self.live.pop(key) == self.round_up(n)
            self.free[self.index(n)].append(key)

    def reallocate(self, key, old, new):
        """Returns the new key; on MemoryError ``key`` is still live."""
        if key is None and old == 0:
            return self.allocate(new)
        if new == 0:
            self.deallocate(key, old)
            return None
        if old > self.max_bytes and new > self.max_bytes:
            self.up.reallocate(old, new, self.align)
            self.large[key] = new
            return key
        if old <= self.max_bytes and new <= self.max_bytes:
            if self.round_up(old) == self.round_up(new):
                return key
        q = self.allocate(new)
        self.deallocate(key, old)
        return q

    def release(self):
        assert not self.live and not self.large
        for n in self.chunks.values():
            self.up.deallocate(n)
        self.chunks.clear()
        self.free = [[] for _ in range(self.nfreelists)]
        self.chunk = None
        self.heap_size = 0
        self.brk = 0
        self.upstream_chunk_bytes = 0

    def _refill(self, size):
        (region, start), nobjs = self._chunk_alloc(size, self.nobjs)
        self.refills += 1
        i = self.index(size)
        # chunk+size ends up at the head.
        for k in range(nobjs - 1, 0, -1):
            self.free[i].append((region, start + k * size))
        return (region, start)

    def _chunk_alloc(self, size, nobjs):
        while True:
            total = size * nobjs
            left = self.chunk_bytes_left
            if left >= size:
                n = nobjs if left >= total else left // size
                region, start, end = self.chunk
                self.chunk = (region, start + n * size, end)
                return (region, start), n
            self.chunk_requests += 1
            bytes_to_get = 2 * total + self.round_up(self.heap_size >> 4)
            if left > 0:
                region, start, _ = self.chunk
                self.free[self.index(left)].append((region, start))
            self.chunk = None
            if self.arena_reserved - self.brk >= bytes_to_get:
                self.chunk = (ARENA, self.brk, self.brk + bytes_to_get)
                self.brk += bytes_to_get
                self.heap_size += bytes_to_get
                continue
            for i in range(self.index(size), self.nfreelists):
                if self.free[i]:
                    region, off = self.free[i].pop()
                    self.chunk = (region, off, off + self.class_size(i))
                    break
            else:
                self.up.allocate(bytes_to_get)  # MemoryError propagates
                region = self.next_region
                self.next_region += 1
                self.chunks[region] = bytes_to_get
                self.chunk = (region, 0, bytes_to_get)
                self.heap_size += bytes_to_get
                self.upstream_chunk_bytes += bytes_to_get


def test_model_reproduces_the_spec_example():
    m = SGIPool(8, 128, 20, 1 << 20, UpstreamModel(None))
    a = m.allocate(8)
    assert a == (ARENA, 0)
    assert (m.heap_size, m.chunk_bytes_left, len(m.free[0])) == (320, 160, 19)
    assert m.allocate(8) == (ARENA, 8)
    assert m.allocate(32) == (ARENA, 160)
    assert (len(m.free[3]), m.chunk_bytes_left) == (4, 0)
    assert m.allocate(64) == (ARENA, 320)
    assert m.heap_size == 2904


# --------------------------------------------------------------------------------------
# Driving the pool and the model together
# --------------------------------------------------------------------------------------


def pattern(tag, n):
    return bytes((tag + j) & 0xFF for j in range(n))


class Block:
    __slots__ = ("addr", "n", "key", "tag")

    def __init__(self, addr, n, key, tag):
        self.addr, self.n, self.key, self.tag = addr, n, key, tag


class Harness:
    """A real pool and the model, fed the same calls; ``check()`` compares them."""

    def __init__(self, align, max_bytes, refill, arena_size, limit):
        self.upstream = MallocAllocator(limit=limit)
        self.pool = PoolAllocator(
            align=align,
            max_bytes=max_bytes,
            refill=refill,
            arena_size=arena_size,
            upstream=self.upstream,
        )
        st0 = self.pool.stats()
        assert st0.arena_reserved >= arena_size
        self.model = SGIPool(align, max_bytes, refill, st0.arena_reserved, UpstreamModel(limit))
        self.align = align
        self.max_bytes = max_bytes
        self.bases = {}
        self.large_addr = {}
        self.blocks = []
        self.freed = []
        self.tags = 0

    # addresses
    def actual(self, key):
        if key[0] == "L":
            return self.large_addr[key]
        region, off = key
        return self.bases[region] + off

    def bind(self, key, addr):
        assert addr % self.align == 0, f"{addr:#x} is not {self.align}-aligned"
        if key[0] == "L":
            self.large_addr[key] = addr
            return
        region, off = key
        if region not in self.bases:
            assert off == 0, "a new region's first block is its start"
            self.bases[region] = addr
        assert addr == self.actual(key), f"pool gave {addr:#x}, SGI model {key}"

    # contents
    def fill(self, b):
        if b.n:
            with self.pool.view(b.addr, b.n) as mv:
                mv[:] = pattern(b.tag, b.n)

    def verify(self, b, n):
        if n:
            with self.pool.view(b.addr, n) as mv:
                assert mv.tobytes() == pattern(b.tag, n), "block contents changed"

    def new_tag(self):
        self.tags = self.tags % 251 + 1
        return self.tags

    def same_class_size(self, rnd, b):
        """A size the block may be freed with: its class for small blocks, exact if large."""
        if b.n > self.max_bytes:
            return b.n
        top = self.model.round_up(b.n)
        return rnd.randint(top - self.align + 1, top)

    # operations
    def allocate(self, n):
        try:
            p = self.pool.allocate(n)
        except MemoryError:
            with pytest.raises(MemoryError):
                self.model.allocate(n)
            return
        key = self.model.allocate(n)
        if n == 0:
            assert p == 0 and key is None
            return
        self.bind(key, p)
        b = Block(p, n, key, self.new_tag())
        self.fill(b)
        self.blocks.append(b)

    def deallocate(self, idx, n):
        b = self.blocks.pop(idx)
        self.verify(b, b.n)
        self.pool.deallocate(b.addr, n)
        self.model.deallocate(b.key, n)
        self.freed = [*self.freed[-15:], (b.addr, n)]

    def reallocate(self, idx, old, new):
        b = self.blocks[idx]
        try:
            q = self.pool.reallocate(b.addr, old, new)
        except MemoryError:
            with pytest.raises(MemoryError):
                self.model.reallocate(b.key, old, new)
            self.verify(b, b.n)
            return
        key = self.model.reallocate(b.key, old, new)
        if new == 0:
            assert q == 0 and key is None
            self.blocks.pop(idx)
            return
        if key != b.key or key[0] == "L":
            self.bind(key, q)
        assert q == self.actual(key)
        b.addr, b.key = q, key
        # The pool copies min(old, new) bytes; `old` may be below the size first asked.
        self.verify(b, min(b.n, old, new))
        b.n = new
        self.fill(b)

    def release(self):
        assert not self.blocks
        self.pool.release()
        self.model.release()
        self.bases = {r: a for r, a in self.bases.items() if r == ARENA}
        self.freed.clear()
        st = self.pool.stats()
        assert st.arena_resident == 0

    def double_free(self, idx):
        addr, n = self.freed[idx]
        if any(b.addr == addr for b in self.blocks):
            return
        with pytest.raises(AllocatorError):
            self.pool.deallocate(addr, n)

    def wrong_class(self, idx, rnd):
        b = self.blocks[idx]
        if b.n > self.max_bytes:
            bad = b.n + rnd.choice([-1, 1])
        else:
            ru = self.model.round_up
            bad = rnd.choice([n for n in range(1, self.max_bytes + 40) if ru(n) != ru(b.n)])
        with pytest.raises(AllocatorError):
            self.pool.deallocate(b.addr, bad)
        with pytest.raises(AllocatorError):
            self.pool.reallocate(b.addr, bad, b.n)

    # the comparison
    def check(self):
        m, st = self.model, self.pool.stats()
        assert (st.align, st.max_bytes, st.refill, st.nfreelists) == (
            m.align,
            m.max_bytes,
            m.nobjs,
            m.nfreelists,
        )
        assert st.heap_size == m.heap_size
        assert st.chunk_bytes_left == m.chunk_bytes_left
        assert st.free_list_lengths == tuple(len(f) for f in m.free)
        assert (st.live_blocks, st.live_bytes) == (len(m.live), m.live_bytes)
        assert (st.large_live_blocks, st.large_live_bytes) == (len(m.large), m.large_live_bytes)
        assert (st.refills, st.chunk_requests) == (m.refills, m.chunk_requests)
        assert st.arena_used == m.brk
        assert st.upstream_chunk_bytes == m.upstream_chunk_bytes
        assert st.heap_size == st.arena_used + st.upstream_chunk_bytes
        for i in range(m.nfreelists):
            want = [self.actual(k) for k in reversed(m.free[i])]
            assert self.pool.free_list(i) == want, f"free list {i}"
        assert (
            st.heap_size
            == st.live_bytes
            + sum(k * (i + 1) * st.align for i, k in enumerate(st.free_list_lengths))
            + st.chunk_bytes_left
        ), "SPEC §3 conservation"
        us = self.upstream.stats()
        assert (us.live_blocks, us.live_bytes, us.failures) == (
            m.up.live_blocks,
            m.up.live_bytes,
            m.up.failures,
        )
        assert us.allocations - us.deallocations == us.live_blocks

    def drain(self):
        while self.blocks:
            b = self.blocks[-1]
            self.deallocate(len(self.blocks) - 1, b.n)
        self.check()
        st = self.pool.stats()
        assert st.live_blocks == st.large_live_blocks == 0


# --------------------------------------------------------------------------------------
# Hypothesis state machine
# --------------------------------------------------------------------------------------


class PoolVsModel(RuleBasedStateMachine):
    h = None

    @initialize(
        align=st.sampled_from([8, 16, 32]),
        nclasses=st.integers(1, 20),
        refill=st.integers(1, 24),
        arena_size=st.sampled_from([4096, 8192, 16384, 65536]),
        limit=st.one_of(st.none(), st.integers(0, 1 << 16)),
        seed=st.integers(0, 2**32 - 1),
    )
    def setup(self, align, nclasses, refill, arena_size, limit, seed):
        self.h = Harness(align, align * nclasses, refill, arena_size, limit)
        self.rnd = random.Random(seed)

    def size(self, data):
        mb = self.h.max_bytes
        return data.draw(
            st.one_of(
                st.integers(1, mb),
                st.integers(1, mb),
                st.integers(mb + 1, 3 * mb + 64),
                st.just(0),
            )
        )

    def some_block(self, data):
        return data.draw(st.integers(0, len(self.h.blocks) - 1))

    @rule(data=st.data())
    def allocate(self, data):
        self.h.allocate(self.size(data))

    @precondition(lambda self: self.h is not None and self.h.blocks)
    @rule(data=st.data())
    def deallocate(self, data):
        idx = self.some_block(data)
        self.h.deallocate(idx, self.h.same_class_size(self.rnd, self.h.blocks[idx]))

    @precondition(lambda self: self.h is not None and self.h.blocks)
    @rule(data=st.data())
    def reallocate(self, data):
        idx = self.some_block(data)
        b = self.h.blocks[idx]
        self.h.reallocate(idx, self.h.same_class_size(self.rnd, b), self.size(data))

    @rule(data=st.data())
    def reallocate_null(self, data):
        n = self.size(data)
        self.h.blocks.append(Block(0, 0, None, 0))
        idx = len(self.h.blocks) - 1
        try:
            self.h.reallocate(idx, 0, n)
        finally:
            if self.h.blocks and self.h.blocks[-1].addr == 0:
                self.h.blocks.pop()

    @precondition(lambda self: self.h is not None and not self.h.blocks)
    @rule()
    def release(self):
        self.h.release()

    @precondition(lambda self: self.h is not None and self.h.freed)
    @rule(data=st.data())
    def double_free(self, data):
        self.h.double_free(data.draw(st.integers(0, len(self.h.freed) - 1)))

    @precondition(lambda self: self.h is not None and self.h.blocks)
    @rule(data=st.data())
    def wrong_class(self, data):
        self.h.wrong_class(self.some_block(data), self.rnd)

    @invariant()
    def matches_model(self):
        if self.h is not None:
            self.h.check()

    def teardown(self):
        if self.h is not None:
            self.h.drain()


TestPoolVsModel = PoolVsModel.TestCase


# --------------------------------------------------------------------------------------
# Long seeded runs (the "10,000 operations match the SGI model after every step")
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("align", "max_bytes", "refill", "arena_size", "limit", "steps"),
    [
        (8, 128, 20, 16384, 60000, 10000),
        (16, 256, 7, 4096, 20000, 3000),
        (32, 96, 3, 8192, None, 3000),
    ],
)
def test_long_random_sequences_match_the_model(align, max_bytes, refill, arena_size, limit, steps):
    rnd = random.Random(f"{align}/{max_bytes}/{refill}/{arena_size}")
    h = Harness(align, max_bytes, refill, arena_size, limit)
    for _ in range(steps):
        r = rnd.random()
        live = len(h.blocks)
        small = rnd.randint(1, max_bytes) if rnd.random() < 0.9 else rnd.randint(1, 3 * max_bytes)
        if r < 0.5 or not live:
            h.allocate(small)
        elif r < 0.85:
            idx = rnd.randrange(live)
            h.deallocate(idx, h.same_class_size(rnd, h.blocks[idx]))
        elif r < 0.97:
            idx = rnd.randrange(live)
            h.reallocate(idx, h.same_class_size(rnd, h.blocks[idx]), small)
        elif h.freed:
            h.double_free(rnd.randrange(len(h.freed)))
        h.check()
        if live > 300:
            # Shed blocks so the arena and the limit are reached, then recovered from.
            for _ in range(200):
                idx = rnd.randrange(len(h.blocks))
                h.deallocate(idx, h.blocks[idx].n)
            h.check()
    h.drain()
    h.release()
    h.check()


# --------------------------------------------------------------------------------------
# MallocAllocator against a dict
# --------------------------------------------------------------------------------------


class MallocVsDict(RuleBasedStateMachine):
    m = None

    @initialize(limit=st.one_of(st.none(), st.integers(0, 4096)))
    def setup(self, limit):
        self.limit = limit
        self.m = MallocAllocator(limit=limit)
        self.live = {}  # addr -> (n, tag)
        self.freed = []
        self.failures = 0
        self.allocations = 0
        self.deallocations = 0
        self.tag = 0

    def fits(self, n, freed=0):
        return self.limit is None or sum(n for n, _ in self.live.values()) - freed + n <= self.limit

    def fill(self, p, n):
        self.tag = self.tag % 251 + 1
        if n:
            with self.m.view(p, n) as mv:
                mv[:] = pattern(self.tag, n)
        self.live[p] = (n, self.tag)

    def verify(self, p, n):
        size, tag = self.live[p]
        with self.m.view(p, n) as mv:
            assert mv.tobytes() == pattern(tag, n)

    @rule(n=st.integers(0, 2048))
    def allocate(self, n):
        if n == 0:
            assert self.m.allocate(0) == 0
            return
        if not self.fits(n):
            with pytest.raises(MemoryError):
                self.m.allocate(n)
            self.failures += 1
            return
        p = self.m.allocate(n)
        assert p % MALLOC_ALIGN == 0
        assert p not in self.live
        self.allocations += 1
        self.fill(p, n)

    @precondition(lambda self: self.m is not None and self.live)
    @rule(data=st.data())
    def deallocate(self, data):
        p = data.draw(st.sampled_from(list(self.live)))
        n, _ = self.live[p]
        self.verify(p, n)
        self.m.deallocate(p, n)
        del self.live[p]
        self.deallocations += 1
        self.freed = [*self.freed[-15:], (p, n)]

    @precondition(lambda self: self.m is not None and self.live)
    @rule(data=st.data(), new=st.integers(0, 2048))
    def reallocate(self, data, new):
        p = data.draw(st.sampled_from(list(self.live)))
        old, tag = self.live[p]
        if new == 0:
            assert self.m.reallocate(p, old, 0) == 0
            del self.live[p]
            self.deallocations += 1
            return
        if not self.fits(new, freed=old):
            with pytest.raises(MemoryError):
                self.m.reallocate(p, old, new)
            self.failures += 1
            self.verify(p, old)
            return
        q = self.m.reallocate(p, old, new)
        assert q % MALLOC_ALIGN == 0
        del self.live[p]
        self.live[q] = (new, tag)
        self.verify(q, min(old, new))
        self.fill(q, new)

    @precondition(lambda self: self.m is not None and self.freed)
    @rule(data=st.data())
    def double_free(self, data):
        p, n = data.draw(st.sampled_from(self.freed))
        if p in self.live:
            return
        with pytest.raises(AllocatorError):
            self.m.deallocate(p, n)

    @precondition(lambda self: self.m is not None and self.live)
    @rule(data=st.data(), delta=st.sampled_from([-1, 1, 8]))
    def wrong_size(self, data, delta):
        p = data.draw(st.sampled_from(list(self.live)))
        n, _ = self.live[p]
        with pytest.raises(AllocatorError):
            self.m.deallocate(p, n + delta)

    @invariant()
    def matches(self):
        if self.m is None:
            return
        s = self.m.stats()
        assert s.live_blocks == len(self.live)
        assert s.live_bytes == sum(n for n, _ in self.live.values())
        assert s.failures == self.failures
        assert s.handler_calls == 0
        assert s.allocations - s.deallocations == s.live_blocks
        # realloc is neither an allocation nor a deallocation; plain calls count exactly.
        assert s.allocations == self.allocations
        assert s.deallocations == self.deallocations
        if self.limit is not None:
            assert s.live_bytes <= self.limit
        for p, (n, _) in self.live.items():
            assert self.m.owns(p) and self.m.owns(p + n - 1)
            assert not self.m.owns(p + n) or (p + n) in self.live

    def teardown(self):
        if self.m is None:
            return
        for p, (n, _) in list(self.live.items()):
            self.m.deallocate(p, n)
        assert self.m.stats().live_bytes == 0


TestMallocVsDict = MallocVsDict.TestCase
