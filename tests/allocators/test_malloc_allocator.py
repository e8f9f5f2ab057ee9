"""MallocAllocator: SGI's first level over libc malloc (SPEC §4)."""

import ctypes

import pytest

from stlalloc import AllocatorError, MallocAllocator, PoolAllocator

FIELDS = ("live_blocks", "live_bytes", "allocations", "deallocations", "failures", "handler_calls")


def snapshot(m):
    s = m.stats()
    return {f: getattr(s, f) for f in FIELDS}


def test_allocate_deallocate_and_counters():
    m = MallocAllocator()
    assert m.limit is None
    assert snapshot(m) == dict.fromkeys(FIELDS, 0)
    sizes = [1, 7, 16, 100, 4096, 200_000]
    blocks = [(m.allocate(n), n) for n in sizes]
    assert all(p % 16 == 0 for p, _ in blocks)
    assert len({p for p, _ in blocks}) == len(blocks)
    s = m.stats()
    assert (s.live_blocks, s.live_bytes, s.allocations, s.deallocations) == (
        6,
        sum(sizes),
        6,
        0,
    )
    for p, n in blocks:
        assert m.owns(p) and m.owns(p + n - 1) and not m.owns(p + n)
        with m.view(p, n) as mv:
            mv[:] = b"\x5a" * n
    for p, n in blocks[::2]:
        m.deallocate(p, n)
    s = m.stats()
    assert (s.live_blocks, s.live_bytes, s.allocations, s.deallocations) == (
        3,
        7 + 100 + 200_000,
        6,
        3,
    )
    for p, n in blocks[1::2]:
        with m.view(p, n) as mv:
            assert mv.tobytes() == b"\x5a" * n
        m.deallocate(p, n)
    s = m.stats()
    assert (s.live_blocks, s.live_bytes, s.allocations, s.deallocations) == (0, 0, 6, 6)
    assert (s.failures, s.handler_calls) == (0, 0)


def test_zero_sizes():
    m = MallocAllocator()
    before = snapshot(m)
    assert m.allocate(0) == 0
    m.deallocate(0, 0)
    assert m.reallocate(0, 0, 0) == 0
    assert snapshot(m) == before
    p = m.reallocate(0, 0, 24)  # realloc(NULL, n) is malloc
    assert m.stats().live_bytes == 24
    assert m.reallocate(p, 24, 0) == 0  # realloc to 0 frees
    assert (m.stats().live_blocks, m.stats().live_bytes) == (0, 0)


def test_reallocate_keeps_contents():
    m = MallocAllocator()
    p = m.allocate(10)
    with m.view(p, 10) as mv:
        mv[:] = b"0123456789"
    q = m.reallocate(p, 10, 100_000)
    assert q % 16 == 0
    with m.view(q, 10) as mv:
        assert mv.tobytes() == b"0123456789"
    assert m.stats().live_bytes == 100_000 and m.stats().live_blocks == 1
    r = m.reallocate(q, 100_000, 4)
    with m.view(r, 4) as mv:
        assert mv.tobytes() == b"0123"
    with pytest.raises(AllocatorError):
        m.view(r, 5)
    assert m.stats().live_bytes == 4
    s = m.stats()
    assert s.allocations - s.deallocations == s.live_blocks == 1
    m.deallocate(r, 4)


def test_view_is_zero_copy_and_pins():
    m = MallocAllocator()
    p = m.allocate(32)
    mv = m.view(p, 32)
    assert not mv.readonly and mv.nbytes == 32
    mv[:] = bytes(range(32))
    assert ctypes.string_at(p, 32) == bytes(range(32))
    part = m.view(p + 8, 4)
    assert part.tobytes() == bytes(range(8, 12))
    part[0] = 0
    assert mv[8] == 0
    before = snapshot(m)
    for call in (
        lambda: m.deallocate(p, 32),
        lambda: m.reallocate(p, 32, 64),
        lambda: m.reallocate(p, 32, 0),
    ):
        with pytest.raises(BufferError):
            call()
        assert snapshot(m) == before
    mv.release()
    with pytest.raises(BufferError):
        m.deallocate(p, 32)
    part.release()
    q = m.reallocate(p, 32, 64)
    m.deallocate(q, 64)
    assert m.stats().live_blocks == 0


def test_limit():
    m = MallocAllocator(limit=100)
    assert m.limit == 100
    a = m.allocate(60)
    b = m.allocate(40)
    before = snapshot(m)
    with pytest.raises(MemoryError):
        m.allocate(1)
    after = snapshot(m)
    assert after["failures"] == before["failures"] + 1
    after["failures"] = before["failures"]
    assert after == before
    m.deallocate(b, 40)
    b = m.reallocate(a, 60, 100)  # the old block's bytes count as freed
    assert m.stats().live_bytes == 100
    with pytest.raises(MemoryError):
        m.reallocate(b, 100, 101)
    assert m.stats().live_bytes == 100 and m.owns(b)
    m.deallocate(b, 100)

    zero = MallocAllocator(limit=0)
    assert zero.allocate(0) == 0
    with pytest.raises(MemoryError):
        zero.allocate(1)
    assert zero.stats().failures == 1

    with pytest.raises(ValueError):
        MallocAllocator(limit=-1)
    with pytest.raises(TypeError):
        MallocAllocator(limit=1.5)
    with pytest.raises(TypeError):
        MallocAllocator(100)  # keyword-only


@pytest.fixture
def busy():
    m = MallocAllocator()
    a = m.allocate(64)
    b = m.allocate(1000)
    freed = m.allocate(48)
    m.deallocate(freed, 48)
    pool = PoolAllocator()
    foreign = pool.allocate(32)
    return m, a, b, freed, foreign


HUGE = 2**64
NON_INTS = (1.0, "8", None, b"8", [8])


def test_misuse_leaves_the_allocator_unchanged(busy):
    m, a, b, freed, foreign = busy
    ae = AllocatorError
    cases = [
        ("deallocate", (foreign, 32), ae),
        ("deallocate", (12345, 8), ae),
        ("deallocate", (0, 8), ae),
        ("deallocate", (a + 1, 64), ae),
        ("deallocate", (a + 16, 48), ae),
        ("deallocate", (freed, 48), ae),
        ("deallocate", (a, 63), ae),
        ("deallocate", (a, 65), ae),
        ("deallocate", (a, 0), ae),
        ("deallocate", (b, 64), ae),
        ("deallocate", (a, -1), ValueError),
        ("deallocate", (-a, 64), ValueError),
        ("deallocate", (a, HUGE), MemoryError),
        *[("deallocate", (a, x), TypeError) for x in NON_INTS],
        *[("deallocate", (x, 64), TypeError) for x in NON_INTS],
        ("allocate", (-1,), ValueError),
        ("allocate", (HUGE,), MemoryError),
        ("allocate", (2**63,), MemoryError),
        *[("allocate", (x,), TypeError) for x in NON_INTS],
        ("reallocate", (foreign, 32, 64), ae),
        ("reallocate", (a + 8, 64, 128), ae),
        ("reallocate", (freed, 48, 96), ae),
        ("reallocate", (freed, 48, 0), ae),
        ("reallocate", (a, 32, 128), ae),
        ("reallocate", (0, 8, 8), ae),
        ("reallocate", (a, -1, 8), ValueError),
        ("reallocate", (a, 64, -1), ValueError),
        ("reallocate", (-a, 64, 8), ValueError),
        ("reallocate", (a, 64, HUGE), MemoryError),
        ("reallocate", (a, 64, 2**63), MemoryError),
        *[("reallocate", (a, 64, x), TypeError) for x in NON_INTS],
        ("view", (foreign, 8), ae),
        ("view", (freed, 8), ae),
        ("view", (a, 65), ae),
        ("view", (a + 60, 8), ae),
        ("view", (a, -1), ValueError),
        ("view", (-a, 8), ValueError),
        ("view", (a, HUGE), MemoryError),
        *[("view", (a, x), TypeError) for x in NON_INTS],
        ("owns", (-a,), ValueError),
        *[("owns", (x,), TypeError) for x in NON_INTS],
        ("set_malloc_handler", (42,), TypeError),
    ]
    before = snapshot(m)
    for method, args, exc in cases:
        with pytest.raises(exc):
            getattr(m, method)(*args)
        assert snapshot(m) == before, f"{method}{args} changed the allocator"
    assert m.set_malloc_handler(None) is None
    assert not m.owns(freed) and not m.owns(foreign) and not m.owns(0)
    m.deallocate(a, 64)
    m.deallocate(b, 1000)
    assert m.stats().live_blocks == 0


def test_real_malloc_failure(busy):
    m, a, *_ = busy
    before = snapshot(m)
    with pytest.raises(MemoryError):
        m.allocate(2**62)
    with pytest.raises(MemoryError):
        m.reallocate(a, 64, 2**62)
    after = snapshot(m)
    assert after["failures"] == before["failures"] + 2
    after["failures"] = before["failures"]
    assert after == before
    assert m.owns(a)


def test_all_malloc_allocators_are_equal():
    a, b = MallocAllocator(), MallocAllocator(limit=1)
    assert a == b and b == a and a == a
    assert hash(a) == hash(b)
    assert a != PoolAllocator()
    assert a != object()


def test_equal_malloc_allocators_free_each_others_memory():
    # SPEC §8: "two allocators are equal when memory from one can be deallocated by the
    # other (the same pool object; every MallocAllocator)" -- C++ allocator equality.
    a, b = MallocAllocator(), MallocAllocator()
    assert a == b
    p = a.allocate(8)
    b.deallocate(p, 8)
    assert not a.owns(p) and not b.owns(p)
    assert a.stats().live_blocks + b.stats().live_blocks == 0


def test_repr():
    m = MallocAllocator(limit=64)
    assert "MallocAllocator" in repr(m)
    assert "MallocStats" in repr(m.stats())


def test_many_live_blocks_are_each_checked_and_viewable():
    # Enough blocks to make the first level's table grow many times, of sizes that pack
    # in it (up to 1024) and that do not; every check still holds for each of them.
    m, other = MallocAllocator(), MallocAllocator()
    sizes = [1 + k * 37 % 2000 for k in range(20_000)]
    blocks = [(m.allocate(n), n) for n in sizes]
    for p, n in blocks[::97]:
        assert m.owns(p) and m.owns(p + n - 1)
        with m.view(p + n - 1, 1) as v:
            v[0] = 0x5A
        with pytest.raises(AllocatorError):
            m.deallocate(p, n + 1)
        for bad in (p + 8, p + 16):
            with pytest.raises(AllocatorError):
                m.deallocate(bad, n)
    before = snapshot(m)
    for bad in (2**64 - 1, 2**64 - 16, 2**47, 16):
        assert not m.owns(bad)
        with pytest.raises(AllocatorError):
            m.deallocate(bad, 8)
    with pytest.raises((AllocatorError, MemoryError)):
        m.view(blocks[0][0], 2**64 - 1)
    assert snapshot(m) == before
    for p, n in blocks:
        other.deallocate(p, n)
    s = m.stats()
    assert (s.live_blocks, s.live_bytes, s.deallocations) == (0, 0, len(sizes))
    assert other.stats().deallocations == 0
