"""Debug mode: size cookies, freed blocks filled and checked on reuse (SGI's debug_alloc
and beyond). Every fault is an AllocatorError naming the block; the pool is unchanged."""

import ctypes

import pytest

import stlalloc


def snapshot(pool: stlalloc.PoolAllocator) -> tuple:
    return pool.stats(), [pool.free_list(i) for i in range(pool.nfreelists)]


def test_debug_blocks_work_like_plain_ones():
    pool = stlalloc.PoolAllocator(debug=True)
    assert pool.debug and not stlalloc.PoolAllocator().debug
    blocks = [(pool.allocate(n), n) for n in range(1, 300, 7)]
    for p, n in blocks:
        assert p % pool.align == 0 and pool.owns(p)
        view = pool.view(p, n)
        view[:] = b"x" * n
        view.release()
    for p, n in blocks:
        pool.deallocate(p, n)
    s = pool.stats()
    assert s.live_blocks == s.large_live_blocks == 0


def test_size_cookie_catches_a_wrong_size_within_the_same_class():
    pool = stlalloc.PoolAllocator(debug=True)
    p = pool.allocate(20)
    before = snapshot(pool)
    with pytest.raises(stlalloc.AllocatorError, match=rf"{p:#x}.*cookie says 20"):
        pool.deallocate(p, 17)
    assert snapshot(pool) == before
    pool.deallocate(p, 20)
    with pytest.raises(stlalloc.AllocatorError, match="no live block"):
        pool.deallocate(p, 20)


def test_write_after_free_is_reported_naming_the_block():
    pool = stlalloc.PoolAllocator(debug=True)
    p = pool.allocate(24)
    pool.deallocate(p, 24)
    ctypes.memset(p + 3, 0x41, 1)  # the bug: a write through a dangling pointer
    before = snapshot(pool)
    with pytest.raises(stlalloc.AllocatorError, match=rf"{p:#x} was written to after it was freed"):
        pool.allocate(24)
    assert snapshot(pool) == before
    assert pool.allocate(24) == p, "the block was repaired and stays first in line"


def test_freed_memory_is_filled():
    pool = stlalloc.PoolAllocator(debug=True)
    p = pool.allocate(40)
    ctypes.memset(p, 0x11, 40)
    pool.deallocate(p, 40)
    assert ctypes.string_at(p, 40) == b"\xdd" * 40
