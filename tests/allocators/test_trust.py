"""Issue 11's reproducers: an interior address freed with size 0, and a free that races a
reallocate of its block. Both must be a clear AllocatorError that changes nothing."""

import threading

import pytest
from stats_fields import POOL_STATE_FIELDS

from stlalloc import AllocatorError, MallocAllocator, PoolAllocator, TracingAllocator


def state(pool):
    s = pool.stats()
    return tuple(getattr(s, f) for f in POOL_STATE_FIELDS)


@pytest.mark.parametrize(
    "make",
    [
        lambda: PoolAllocator(),
        lambda: PoolAllocator(align=16),
        lambda: PoolAllocator(arena_size=4096),
        lambda: PoolAllocator(debug=True),
    ],
    ids=["default", "align16", "small-arena", "debug"],
)
@pytest.mark.parametrize("traced", [False, True], ids=["direct", "traced"])
def test_an_interior_address_freed_with_size_0_is_an_allocator_error(make, traced):
    pool = make()
    alloc = TracingAllocator(pool) if traced else pool
    a = alloc.allocate(24)
    before = state(pool)
    interior = a + pool.align
    with pytest.raises(AllocatorError, match=f"{interior:#x} lies inside the live block {a:#x}"):
        alloc.deallocate(interior, 0)
    for n in (0, 2**64 - 1):
        with pytest.raises((AllocatorError, MemoryError)):
            alloc.deallocate(interior, n)
        with pytest.raises((AllocatorError, MemoryError)):
            alloc.reallocate(interior, n, 8)
    # The debug pool's size cookie names the size the block was asked with.
    with pytest.raises(AllocatorError, match="cookie says 24" if pool.debug else "size 0 belongs"):
        alloc.deallocate(a, 0)
    assert state(pool) == before
    alloc.deallocate(a, 24)
    assert pool.stats().live_blocks == 0


class GaveUp(Exception):
    pass


def test_a_free_of_a_block_being_reallocated_says_so():
    # The move needs a chunk the upstream refuses, so its out-of-memory handler runs while
    # the block is being copied out: there the free must be refused as a move in progress.
    up = MallocAllocator(limit=0)
    pool = PoolAllocator(arena_size=4096, upstream=up)
    p = pool.allocate(24)
    held = []
    with pytest.raises(MemoryError):
        while True:
            held.append(pool.allocate(128))
    seen = []

    def handler():
        for call in (lambda: pool.deallocate(p, 24), lambda: pool.view(p, 8)):
            try:
                call()
            except Exception as e:  # noqa: BLE001 - recorded and checked below
                seen.append(e)
        raise GaveUp

    up.set_malloc_handler(handler)
    with pytest.raises(GaveUp):
        pool.reallocate(p, 24, 128)
    assert len(seen) == 2
    for e in seen:
        assert type(e) is AllocatorError, repr(e)
        assert f"block {p:#x} is being reallocated by another call" in str(e)
    up.set_malloc_handler(None)
    pool.deallocate(p, 24)
    for q in held:
        pool.deallocate(q, 128)
    assert pool.stats().live_blocks == 0


def race(start, out, name, fn, *args):
    start.wait()
    try:
        out[name] = fn(*args)
    except Exception as e:  # noqa: BLE001 - classified by the test
        out[name] = e


def test_a_free_racing_a_reallocate_never_blames_a_view():
    # On free-threaded CPython the two calls really overlap; with the GIL they take turns.
    # Either way the loser gets an AllocatorError (moving, or already freed), never the
    # BufferError of an exported block: no view exists.
    pool = PoolAllocator()
    errors = []
    for _ in range(300):
        p = pool.allocate(24)
        start = threading.Barrier(2)
        out = {}
        threads = [
            threading.Thread(target=race, args=(start, out, "move", pool.reallocate, p, 24, 100)),
            threading.Thread(target=race, args=(start, out, "free", pool.deallocate, p, 24)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        moved, freed = out["move"], out["free"]
        if isinstance(moved, int):
            pool.deallocate(moved, 100)
        errors += [e for e in (moved, freed) if isinstance(e, BaseException)]
        assert isinstance(moved, int) or freed is None, out
    assert all(type(e) is AllocatorError for e in errors), errors
    assert pool.stats().live_blocks == 0
