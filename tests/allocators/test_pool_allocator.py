"""PoolAllocator: SPEC §3's worked example, SGI semantics, views, release, misuse, threads."""

import ctypes
import random
import sys
import threading

import pytest
from stats_fields import MALLOC_FIELDS, POOL_FIELDS, conserved

import stlalloc
from stlalloc import (
    DEFAULT_ARENA_SIZE,
    AllocatorError,
    MallocAllocator,
    PoolAllocator,
    default_pool,
)


def snapshot(pool):
    """Every statistic of the pool and its upstream, and every free list."""
    st = pool.stats()
    us = pool.upstream.stats()
    return (
        {f: getattr(st, f) for f in POOL_FIELDS},
        {f: getattr(us, f) for f in MALLOC_FIELDS},
        [pool.free_list(i) for i in range(st.nfreelists)],
    )


# --------------------------------------------------------------------------------------
# SPEC §3
# --------------------------------------------------------------------------------------


def test_spec_worked_example():
    pool = PoolAllocator()
    a = pool.allocate(8)
    st = pool.stats()
    assert st.heap_size == 320
    assert st.chunk_bytes_left == 160
    assert st.free_list_lengths[0] == 19
    assert st.arena_used == 320
    assert pool.free_list(0) == [a + 8 * k for k in range(1, 20)], "chunk+size at the head"
    assert pool.allocate(8) == a + 8

    b = pool.allocate(32)
    assert b == a + 160, "carved from the 160 bytes left in the chunk"
    st = pool.stats()
    assert st.free_list_lengths[3] == 4
    assert pool.free_list(3) == [b + 32, b + 64, b + 96, b + 128]
    assert st.chunk_bytes_left == 0
    assert st.heap_size == 320

    c = pool.allocate(64)
    assert c == a + 320, "the next chunk follows at the break"
    st = pool.stats()
    assert st.heap_size == 2904 == 320 + 2 * 1280 + 24
    assert st.arena_used == 2904
    assert st.chunk_bytes_left == 2584 - 20 * 64
    assert st.free_list_lengths[7] == 19
    assert (st.refills, st.chunk_requests) == (3, 2)
    assert (st.live_blocks, st.live_bytes) == (4, 8 + 8 + 32 + 64)
    assert conserved(st)


def test_fresh_pool_defaults():
    pool = PoolAllocator()
    st = pool.stats()
    assert (pool.align, pool.max_bytes, pool.refill, pool.nfreelists) == (8, 128, 20, 16)
    assert (st.align, st.max_bytes, st.refill, st.nfreelists) == (8, 128, 20, 16)
    assert st.free_list_lengths == (0,) * 16
    assert isinstance(st.free_list_lengths, tuple)
    assert st.heap_size == st.chunk_bytes_left == st.live_blocks == st.live_bytes == 0
    assert st.arena_reserved == DEFAULT_ARENA_SIZE
    assert st.arena_used == st.arena_resident == 0
    assert set(st.syscalls) >= {"mmap", "munmap", "mprotect", "madvise"}
    assert st.syscalls["mmap"] == 1
    assert isinstance(pool.upstream, MallocAllocator)


def test_deallocate_is_lifo_and_size_class_is_what_counts():
    pool = PoolAllocator()
    a, b = pool.allocate(24), pool.allocate(24)
    pool.deallocate(a, 24)
    pool.deallocate(b, 17)  # 17 is of 24's class
    assert pool.free_list(2)[:2] == [b, a]
    assert pool.allocate(20) == b
    assert pool.allocate(24) == a


def test_zero_sizes():
    pool = PoolAllocator()
    before = snapshot(pool)
    assert pool.allocate(0) == 0
    pool.deallocate(0, 0)
    assert pool.reallocate(0, 0, 0) == 0
    assert snapshot(pool) == before
    p = pool.allocate(8)
    assert pool.reallocate(p, 8, 0) == 0
    assert pool.free_list(0)[0] == p
    q = pool.reallocate(0, 0, 8)
    assert q == p


def test_above_max_bytes_goes_upstream():
    up = MallocAllocator()
    pool = PoolAllocator(upstream=up)
    assert pool.upstream is up
    p = pool.allocate(129)
    st = pool.stats()
    assert (st.large_live_blocks, st.large_live_bytes) == (1, 129)
    assert (st.live_blocks, st.heap_size) == (0, 0)
    assert (up.stats().live_blocks, up.stats().live_bytes) == (1, 129)
    assert up.owns(p) and pool.owns(p) and pool.owns(p + 128) and not pool.owns(p + 129)
    with pool.view(p, 129) as mv:
        mv[:] = bytes(range(129))
    q = pool.reallocate(p, 129, 4000)
    with pool.view(q, 129) as mv:
        assert mv.tobytes() == bytes(range(129))
    assert up.stats().live_bytes == 4000
    pool.deallocate(q, 4000)
    st = pool.stats()
    assert (st.large_live_blocks, st.large_live_bytes) == (0, 0)
    assert (up.stats().live_blocks, up.stats().live_bytes) == (0, 0)

    big = PoolAllocator(align=16, max_bytes=256)
    p = big.allocate(200)
    assert big.stats().live_bytes == 208 and big.stats().large_live_blocks == 0


def test_reallocate_semantics():
    pool = PoolAllocator()
    p = pool.allocate(20)
    with pool.view(p, 20) as mv:
        mv[:] = b"0123456789abcdefghij"
    assert pool.reallocate(p, 20, 17) == p, "same round_up: the block itself"
    assert pool.reallocate(p, 24, 24) == p
    q = pool.reallocate(p, 24, 100)
    assert q != p
    assert pool.free_list(2)[0] == p, "the old block went back to its list"
    with pool.view(q, 20) as mv:
        assert mv.tobytes() == b"0123456789abcdefghij"
    r = pool.reallocate(q, 100, 1000)  # small -> large
    assert pool.free_list(12)[0] == q
    assert pool.stats().large_live_blocks == 1
    with pool.view(r, 20) as mv:
        assert mv.tobytes() == b"0123456789abcdefghij"
    s = pool.reallocate(r, 1000, 5)  # large -> small, copies 5 bytes
    assert pool.stats().large_live_blocks == 0
    with pool.view(s, 5) as mv:
        assert mv.tobytes() == b"01234"
    pool.deallocate(s, 5)
    assert pool.stats().live_blocks == 0


@pytest.mark.parametrize("align", [8, 16, 32, 64])
def test_round_up_size_class_free_list(align):
    pool = PoolAllocator(align=align, max_bytes=4 * align)
    assert pool.nfreelists == 4
    assert pool.round_up(0) == 0
    assert pool.round_up(1) == align
    assert pool.round_up(align) == align
    assert pool.round_up(align + 1) == 2 * align
    assert pool.round_up(10**6) == (10**6 + align - 1) // align * align
    for n in range(1, 4 * align + 1):
        assert pool.size_class(n) == (n + align - 1) // align - 1
    for bad in (0, 4 * align + 1):
        with pytest.raises(ValueError):
            pool.size_class(bad)
    with pytest.raises(ValueError):
        pool.round_up(-1)
    with pytest.raises(TypeError):
        pool.size_class(1.0)
    for i in range(4):
        assert pool.free_list(i) == []
    for bad in (-1, 4, 100):
        with pytest.raises(IndexError):
            pool.free_list(bad)
    p = pool.allocate(1)
    assert p % align == 0
    assert len(pool.free_list(0)) == 19
    assert all(x % align == 0 for x in pool.free_list(0))


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"align": 4}, ValueError),
        ({"align": 12}, ValueError),
        ({"align": 0}, ValueError),
        ({"align": 24, "max_bytes": 96}, ValueError),
        ({"align": -8}, ValueError),
        ({"max_bytes": 100}, ValueError),
        ({"max_bytes": 0}, ValueError),
        ({"align": 16, "max_bytes": 120}, ValueError),
        ({"refill": 0}, ValueError),
        ({"refill": -1}, ValueError),
        ({"align": 8.0}, TypeError),
        ({"max_bytes": "128"}, TypeError),
        ({"refill": None}, TypeError),
        ({"upstream": object()}, TypeError),
    ],
)
def test_parameter_validation(kwargs, exc):
    with pytest.raises(exc):
        PoolAllocator(**kwargs)


def test_valid_parameters():
    pool = PoolAllocator(align=16, max_bytes=256, refill=5, arena_size=8192)
    st = pool.stats()
    assert (st.align, st.max_bytes, st.refill, st.nfreelists) == (16, 256, 5, 16)
    assert st.arena_reserved == 8192
    p = pool.allocate(1)
    assert pool.stats().free_list_lengths[0] == 4
    assert pool.stats().heap_size == 2 * 16 * 5
    pool.deallocate(p, 16)
    with pytest.raises(TypeError):
        PoolAllocator(8)  # keyword-only


# --------------------------------------------------------------------------------------
# view()
# --------------------------------------------------------------------------------------


def test_view_is_writable_and_zero_copy():
    pool = PoolAllocator()
    p = pool.allocate(40)
    mv = pool.view(p, 40)
    assert not mv.readonly and mv.nbytes == 40 and mv.format == "B"
    mv[:] = bytes(range(40))
    assert ctypes.string_at(p, 40) == bytes(range(40)), "the view is the block's memory"
    second = pool.view(p + 10, 5)
    assert second.tobytes() == bytes(range(10, 15))
    second[0] = 0xAB
    assert mv[10] == 0xAB
    ctypes.memmove(p, b"xyz", 3)
    assert mv[:3].tobytes() == b"xyz"
    mv.release()
    second.release()
    pool.deallocate(p, 40)


def test_view_covers_the_rounded_block_only():
    pool = PoolAllocator()
    p = pool.allocate(5)
    q = pool.allocate(8)
    assert q == p + 8
    with pool.view(p, 8) as mv:  # the block holds round_up(5) == 8 bytes
        assert mv.nbytes == 8
    before = snapshot(pool)
    for addr, n in [
        (p, 9),  # runs into the next (live) block
        (p, 16),  # spans two live blocks
        (p + 4, 8),
        (q + 8, 1),  # a free block on list 0
        (p - 8, 8),  # below the arena's first block
        (12345, 1),  # not pool memory
    ]:
        with pytest.raises(AllocatorError):
            pool.view(addr, n)
    assert snapshot(pool) == before
    pool.deallocate(q, 8)
    with pytest.raises(AllocatorError):
        pool.view(q, 8)


def test_exported_block_cannot_be_freed_or_moved():
    pool = PoolAllocator()
    p = pool.allocate(16)
    big = pool.allocate(300)
    mv = pool.view(p, 16)
    mv_big = pool.view(big + 100, 10)
    before = snapshot(pool)
    for call in (
        lambda: pool.deallocate(p, 16),
        lambda: pool.reallocate(p, 16, 64),
        lambda: pool.reallocate(p, 16, 12),  # same class: still refused while exported
        lambda: pool.reallocate(p, 16, 0),
        lambda: pool.reallocate(p, 16, 500),
        lambda: pool.deallocate(big, 300),
        lambda: pool.reallocate(big, 300, 600),
        lambda: pool.reallocate(big, 300, 8),
    ):
        with pytest.raises(BufferError):
            call()
        assert snapshot(pool) == before
    mv.release()
    del mv_big
    pool.deallocate(p, 16)
    pool.deallocate(big, 300)
    assert pool.stats().live_blocks == pool.stats().large_live_blocks == 0


def test_two_views_both_must_be_released():
    pool = PoolAllocator()
    p = pool.allocate(16)
    a, b = pool.view(p, 8), pool.view(p + 8, 8)
    a.release()
    with pytest.raises(BufferError):
        pool.deallocate(p, 16)
    b.release()
    pool.deallocate(p, 16)


# --------------------------------------------------------------------------------------
# release()
# --------------------------------------------------------------------------------------


def test_release():
    up = MallocAllocator()
    pool = PoolAllocator(arena_size=4096, upstream=up)
    blocks = [(pool.allocate(n), n) for n in (8, 8, 64, 100, 120, 128, 96, 300)]
    st = pool.stats()
    assert st.upstream_chunk_bytes > 0, "the 4 KiB arena overflowed to upstream"
    assert st.arena_resident > 0
    for p, n in blocks:
        with pool.view(p, n) as mv:
            mv[:] = b"\xff" * n

    before = snapshot(pool)
    with pytest.raises(AllocatorError):
        pool.release()
    assert snapshot(pool) == before
    for p, n in blocks[:-1]:
        pool.deallocate(p, n)
    with pytest.raises(AllocatorError):  # a large block is still live
        pool.release()
    pool.deallocate(*blocks[-1])

    madvise = pool.stats().syscalls["madvise"]
    pool.release()
    st = pool.stats()
    assert st.heap_size == st.chunk_bytes_left == st.arena_used == 0
    assert st.arena_resident == 0
    assert st.upstream_chunk_bytes == 0
    assert st.free_list_lengths == (0,) * 16
    assert st.syscalls["madvise"] > madvise
    assert (up.stats().live_blocks, up.stats().live_bytes) == (0, 0)
    pool.release()  # nothing to give back: fine

    p = pool.allocate(8)
    assert p == blocks[0][0], "the same reservation, from its start again"
    st = pool.stats()
    assert (st.heap_size, st.chunk_bytes_left, st.free_list_lengths[0]) == (320, 160, 19)
    with pool.view(p, 8) as mv:
        assert mv.tobytes() == bytes(8), "returned pages come back zeroed"
    pool.deallocate(p, 8)


# --------------------------------------------------------------------------------------
# Misuse: each raises, and the allocator is exactly as it was
# --------------------------------------------------------------------------------------


@pytest.fixture
def busy_pool():
    """A pool with live small and large blocks, freed blocks, and a partly used chunk."""
    pool = PoolAllocator(arena_size=1 << 16)
    live = [pool.allocate(n) for n in (8, 8, 24, 24, 64)]
    freed = pool.allocate(24)
    pool.deallocate(freed, 24)
    large = pool.allocate(500)
    other = PoolAllocator()
    foreign = other.allocate(8)
    m = MallocAllocator()
    malloced = m.allocate(64)
    yield pool, live, freed, large, foreign, malloced
    m.deallocate(malloced, 64)


HUGE = 2**64
NON_INTS = (1.0, "8", None, b"8", [8])


def misuse_cases(live, freed, large, foreign, malloced):
    a8, _, a24, _, a64 = live
    ae = AllocatorError
    return [
        # deallocate
        ("deallocate", (foreign, 8), ae),
        ("deallocate", (malloced, 64), ae),
        ("deallocate", (12345, 8), ae),
        ("deallocate", (0, 8), ae),
        ("deallocate", (a8 + 1, 8), ae),
        ("deallocate", (a8 + 4, 8), ae),
        ("deallocate", (a24 + 8, 8), ae),
        ("deallocate", (a64 + 32, 32), ae),
        ("deallocate", (large + 16, 500), ae),
        ("deallocate", (freed, 24), ae),  # double free
        ("deallocate", (a8, 16), ae),  # another class
        ("deallocate", (a24, 8), ae),
        ("deallocate", (a24, 32), ae),
        ("deallocate", (a8, 0), ae),
        ("deallocate", (a8, 200), ae),  # claims to be large
        ("deallocate", (large, 499), ae),
        ("deallocate", (large, 501), ae),
        ("deallocate", (large, 64), ae),
        ("deallocate", (a8, -1), ValueError),
        ("deallocate", (-a8, 8), ValueError),
        ("deallocate", (a8, HUGE), MemoryError),
        *[("deallocate", (a8, x), TypeError) for x in NON_INTS],
        *[("deallocate", (x, 8), TypeError) for x in NON_INTS],
        # allocate
        ("allocate", (-1,), ValueError),
        ("allocate", (HUGE,), MemoryError),
        ("allocate", (2**63,), MemoryError),
        ("allocate", (2**63 - 1,), MemoryError),
        *[("allocate", (x,), TypeError) for x in NON_INTS],
        # reallocate
        ("reallocate", (foreign, 8, 16), ae),
        ("reallocate", (malloced, 64, 100), ae),
        ("reallocate", (a8 + 1, 8, 16), ae),
        ("reallocate", (freed, 24, 48), ae),
        ("reallocate", (freed, 24, 0), ae),
        ("reallocate", (a8, 16, 32), ae),
        ("reallocate", (a8, 16, 9), ae),  # same class as the new size, still misuse
        ("reallocate", (a24, 8, 8), ae),
        ("reallocate", (large, 499, 1000), ae),
        ("reallocate", (large, 64, 64), ae),
        ("reallocate", (0, 8, 8), ae),
        ("reallocate", (a8, -1, 8), ValueError),
        ("reallocate", (a8, 8, -1), ValueError),
        ("reallocate", (-a8, 8, 16), ValueError),
        ("reallocate", (a8, 8, HUGE), MemoryError),
        ("reallocate", (a8, 8, 2**63), MemoryError),
        ("reallocate", (large, 500, 2**63), MemoryError),
        ("reallocate", (a8, HUGE, 8), MemoryError),
        *[("reallocate", (a8, 8, x), TypeError) for x in NON_INTS],
        *[("reallocate", (x, 8, 8), TypeError) for x in NON_INTS],
        # view
        ("view", (foreign, 8), ae),
        ("view", (malloced, 8), ae),
        ("view", (freed, 8), ae),
        ("view", (a8, 9), ae),
        ("view", (a8 + 4, 8), ae),
        ("view", (large + 490, 11), ae),
        ("view", (a8, -1), ValueError),
        ("view", (-a8, 8), ValueError),
        ("view", (a8, HUGE), MemoryError),
        *[("view", (a8, x), TypeError) for x in NON_INTS],
        *[("view", (x, 8), TypeError) for x in NON_INTS],
        # owns
        ("owns", (-a8,), ValueError),
        *[("owns", (x,), TypeError) for x in NON_INTS],
        # free_list, round_up, size_class
        ("free_list", ("0",), TypeError),
        ("round_up", (-8,), ValueError),
        ("size_class", (-8,), ValueError),
    ]


def test_misuse_leaves_the_pool_unchanged(busy_pool):
    pool, *blocks = busy_pool
    cases = misuse_cases(*blocks)
    before = snapshot(pool)
    for method, args, exc in cases:
        with pytest.raises(exc):
            getattr(pool, method)(*args)
        assert snapshot(pool) == before, f"{method}{args} changed the pool"


def test_real_malloc_failure_upstream_leaves_the_pool_unchanged(busy_pool):
    pool, live, freed, large, *_ = busy_pool
    before = snapshot(pool)
    for call in (
        lambda: pool.allocate(2**62),
        lambda: pool.reallocate(large, 500, 2**62),
        lambda: pool.reallocate(live[4], 64, 2**62),
    ):
        with pytest.raises(MemoryError):
            call()
    after = snapshot(pool)
    # malloc really returned NULL: the upstream counts the failures, nothing else moves.
    assert after[1]["failures"] == before[1]["failures"] + 3
    after[1]["failures"] = before[1]["failures"]
    assert after == before


def test_misuse_raises_the_precise_type(busy_pool):
    pool, live, freed, large, foreign, malloced = busy_pool
    # AllocatorError is a ValueError; plain ValueError is kept for negative numbers.
    assert issubclass(AllocatorError, ValueError)
    assert stlalloc.AllocatorError is AllocatorError
    with pytest.raises(ValueError) as e:
        pool.deallocate(live[0], -1)
    assert not isinstance(e.value, AllocatorError)


def test_owns(busy_pool):
    pool, live, freed, large, foreign, malloced = busy_pool
    for p, n in zip(live, (8, 8, 24, 24, 64), strict=True):
        assert pool.owns(p) and pool.owns(p + n - 1)
    assert pool.owns(large) and pool.owns(large + 499) and not pool.owns(large + 500)
    assert not pool.owns(freed)
    assert not pool.owns(foreign)
    assert not pool.owns(malloced)
    assert not pool.owns(0)
    assert not pool.owns(12345)
    before = snapshot(pool)
    assert not pool.owns(2**64 - 1)
    assert snapshot(pool) == before


def test_misuse_then_normal_use(busy_pool):
    pool, live, freed, large, foreign, malloced = busy_pool
    for method, args, exc in misuse_cases(live, freed, large, foreign, malloced):
        with pytest.raises(exc):
            getattr(pool, method)(*args)
    for p, n in zip(live, (8, 8, 24, 24, 64), strict=True):
        pool.deallocate(p, n)
    pool.deallocate(large, 500)
    st = pool.stats()
    assert st.live_blocks == st.large_live_blocks == 0
    assert conserved(st)
    assert pool.free_list(2)[:3] == [live[3], live[2], freed]


# --------------------------------------------------------------------------------------
# Identity and equality
# --------------------------------------------------------------------------------------


def test_default_pool_identity():
    a = default_pool()
    assert a is default_pool()
    assert isinstance(a, PoolAllocator)
    assert (a.align, a.max_bytes, a.refill) == (8, 128, 20)
    assert a.stats().arena_reserved == DEFAULT_ARENA_SIZE
    p = a.allocate(16)
    assert default_pool().owns(p)
    a.deallocate(p, 16)


def test_equality():
    p1, p2 = PoolAllocator(), PoolAllocator()
    assert p1 == p1 and not (p1 != p1)
    assert p1 != p2 and not (p1 == p2)
    assert default_pool() == default_pool()
    assert default_pool() != p1
    m1, m2 = MallocAllocator(), MallocAllocator(limit=10)
    assert m1 == m2 and m2 == m1 and not (m1 != m2)
    assert hash(m1) == hash(m2)
    assert p1.upstream == m1
    assert p1 != m1 and m1 != p1
    assert p1 != object() and m1 != object()
    assert len({p1, p2, p1}) == 2


# --------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------


def test_threads_share_one_pool():
    pool = PoolAllocator(arena_size=1 << 16, upstream=MallocAllocator())
    nthreads, steps = 8, 4000
    errors, done = [], []
    barrier = threading.Barrier(nthreads)

    def worker(seed):
        rnd = random.Random(seed)
        mine = []
        try:
            barrier.wait()
            for _ in range(steps):
                if mine and rnd.random() < 0.45:
                    p, n, tag = mine.pop(rnd.randrange(len(mine)))
                    with pool.view(p, n) as mv:
                        assert mv.tobytes() == bytes([tag]) * n, "another thread wrote here"
                    pool.deallocate(p, n)
                else:
                    n = rnd.randint(1, 160)
                    p = pool.allocate(n)
                    tag = seed * 16 + rnd.randrange(16)
                    with pool.view(p, n) as mv:
                        mv[:] = bytes([tag]) * n
                    mine.append((p, n, tag))
                if rnd.random() < 0.02:
                    assert conserved(pool.stats())
            for p, n, tag in mine:
                with pool.view(p, n) as mv:
                    assert mv.tobytes() == bytes([tag]) * n
                pool.deallocate(p, n)
            done.append(seed)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[0]
    assert sorted(done) == list(range(nthreads))
    st = pool.stats()
    assert st.live_blocks == st.live_bytes == 0
    assert st.large_live_blocks == st.large_live_bytes == 0
    assert conserved(st)
    assert (
        st.heap_size
        == sum(k * (i + 1) * 8 for i, k in enumerate(st.free_list_lengths)) + st.chunk_bytes_left
    )
    assert pool.upstream.stats().live_bytes == st.upstream_chunk_bytes
    pool.release()
