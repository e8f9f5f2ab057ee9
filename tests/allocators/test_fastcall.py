"""The fast entry points of ``allocate`` and ``deallocate`` (issue #4).

A positional call with exact ints takes the fast path; a keyword call always takes PyO3's
wrapper, which the fast path falls back on. So each case is made both ways, and the two
must agree: same result or same exception type and message, same allocator state after.
"""

import gc
import inspect
import sys

import numpy as np
import pytest
from stats_fields import MALLOC_FIELDS, POOL_FIELDS

from stlalloc import AllocatorError, MallocAllocator, PoolAllocator


class Int(int):
    pass


def snapshot(a):
    st = a.stats()
    if isinstance(a, MallocAllocator):
        return {f: getattr(st, f) for f in MALLOC_FIELDS}
    return (
        {f: getattr(st, f) for f in POOL_FIELDS},
        {f: getattr(a.upstream.stats(), f) for f in MALLOC_FIELDS},
        [a.free_list(i) for i in range(st.nfreelists)],
    )


def outcome(call):
    try:
        return ("ok", call())
    except Exception as e:  # noqa: BLE001 - the exception is what is compared
        return (type(e), str(e))


ALLOCATORS = {
    "pool": PoolAllocator,
    "debug_pool": lambda: PoolAllocator(debug=True),
    "malloc": MallocAllocator,
}


@pytest.fixture(params=sorted(ALLOCATORS))
def kind(request):
    return request.param


@pytest.fixture
def alloc(kind):
    return ALLOCATORS[kind]()


def counts(a):
    """The statistics, free list addresses aside: equal for twins given the same calls."""
    snap = snapshot(a)
    return snap if isinstance(a, MallocAllocator) else snap[:2]


SIZES = [0, 1, 8, 24, 128, 129, 4096, True, False, Int(24), np.int64(24), 24.0, "24", None]
BAD_SIZES = [-1, -(2**70), 2**64, 2**70, 2**63]


@pytest.mark.parametrize("n", SIZES + BAD_SIZES, ids=repr)
def test_allocate_positional_and_keyword_agree(kind, n):
    fast, slow = ALLOCATORS[kind](), ALLOCATORS[kind]()
    first = outcome(lambda: fast.allocate(n))
    second = outcome(lambda: slow.allocate(n=n))
    assert counts(fast) == counts(slow)
    if first[0] != "ok":
        assert first == second
        return
    assert second[0] == "ok"
    p, q = first[1], second[1]
    assert (p == 0) == (q == 0) and fast.owns(p) == slow.owns(q)
    # Either form frees either form's block, and a pool's free lists are LIFO.
    fast.deallocate(p=p, n=n)
    slow.deallocate(q, n)
    assert counts(fast) == counts(slow)
    if kind == "pool" and n <= fast.max_bytes:
        assert fast.allocate(n=n) == p and slow.allocate(n) == q


def test_bad_sizes_raise_what_spec_names(alloc):
    for n, exc in [(-1, ValueError), (2**64, MemoryError), (2**63, MemoryError), ("1", TypeError)]:
        with pytest.raises(exc):
            alloc.allocate(n)
    with pytest.raises(TypeError, match="size must be an int, not float"):
        alloc.allocate(1.0)
    with pytest.raises(ValueError, match="size must be non-negative, not -5"):
        alloc.allocate(-5)
    with pytest.raises(MemoryError, match=f"{2**70} bytes is more than any memory"):
        alloc.allocate(2**70)


def deallocate_cases(alloc):
    """(p, n) pairs that are each refused, with one live block ``p`` of 24 bytes."""
    p = alloc.allocate(24)
    align = getattr(alloc, "align", 16)
    return p, [
        (5, 24),  # foreign
        (p + 1, 24),  # misaligned
        (p + align, 24),  # inside the block
        (p, 64),  # another size class
        (p, 0),
        (-p, 24),
        (2**64 + p, 24),
        (p, -24),
        (p, 2**64),
        (p, 24.0),
        (float(p), 24),
        (None, 24),
        (True, 24),
        (np.uint64(p), 24),
    ]


def test_refused_deallocations_agree_and_change_nothing(alloc):
    p, cases = deallocate_cases(alloc)
    for q, n in cases:
        before = snapshot(alloc)
        fast = outcome(lambda q=q, n=n: alloc.deallocate(q, n))
        slow = outcome(lambda q=q, n=n: alloc.deallocate(p=q, n=n))
        assert fast[0] != "ok", (q, n)
        assert fast == slow, (q, n)
        assert snapshot(alloc) == before, (q, n)
    # An int subclass is accepted by the fallback as before.
    assert alloc.deallocate(Int(p), Int(24)) is None


def test_double_free(alloc):
    p = alloc.allocate(24)
    assert alloc.deallocate(p, 24) is None
    before = snapshot(alloc)
    fast = outcome(lambda: alloc.deallocate(p, 24))
    slow = outcome(lambda: alloc.deallocate(p=p, n=24))
    assert fast == slow and fast[0] is AllocatorError
    assert snapshot(alloc) == before


def test_exported_block_cannot_be_freed(alloc):
    p = alloc.allocate(24)
    view = alloc.view(p, 24)
    before = snapshot(alloc)
    fast = outcome(lambda: alloc.deallocate(p, 24))
    slow = outcome(lambda: alloc.deallocate(p, n=24))
    assert fast == slow and fast[0] is BufferError
    assert snapshot(alloc) == before
    view.release()
    alloc.deallocate(p, 24)


def test_argument_counts_and_keywords(alloc):
    p = alloc.allocate(24)
    for call in [
        lambda: alloc.allocate(),
        lambda: alloc.allocate(1, 2),
        lambda: alloc.allocate(24, n=24),
        lambda: alloc.allocate(m=24),
        lambda: alloc.deallocate(p),
        lambda: alloc.deallocate(p, 24, 1),
        lambda: alloc.deallocate(p, 24, n=24),
        lambda: alloc.deallocate(n=24),
    ]:
        with pytest.raises(TypeError):
            call()
    assert alloc.deallocate(p, n=24) is None
    q = alloc.allocate(**{"n": 24})
    assert alloc.deallocate(*(q,), **{"n": 24}) is None
    q = alloc.allocate(*(24,), **{})
    alloc.deallocate(n=24, p=q)
    assert alloc.stats().live_blocks == 0


def test_unbound_calls_check_the_receiver():
    pool, m = PoolAllocator(), MallocAllocator()
    p = PoolAllocator.allocate(pool, 24)
    PoolAllocator.deallocate(pool, p, 24)
    with pytest.raises(TypeError):
        PoolAllocator.allocate(m, 24)
    with pytest.raises(TypeError):
        PoolAllocator.deallocate(m, p, 24)
    with pytest.raises(TypeError):
        MallocAllocator.allocate(pool, 24)
    with pytest.raises(TypeError):
        PoolAllocator.allocate()


def test_signatures_and_docs():
    for cls in (PoolAllocator, MallocAllocator):
        assert str(inspect.signature(cls.allocate)) == "(self, /, n)"
        assert str(inspect.signature(cls.deallocate)) == "(self, /, p, n)"
        assert str(inspect.signature(cls().allocate)) == "(n)"
        assert cls.allocate.__doc__ and cls.deallocate.__doc__
        assert cls.allocate.__name__ == "allocate"
        assert cls.deallocate.__qualname__ == f"{cls.__name__}.deallocate"


def test_an_upstream_handler_runs_once_and_its_exception_passes():
    calls = []

    class Full(Exception):
        pass

    def handler():
        calls.append(1)
        raise Full

    up = MallocAllocator(limit=0)
    up.set_malloc_handler(handler)
    pool = PoolAllocator(upstream=up, arena_size=0)  # every chunk from upstream
    for call in (lambda: pool.allocate(24), lambda: pool.allocate(200), lambda: up.allocate(8)):
        calls.clear()
        with pytest.raises(Full):
            call()
        assert calls == [1], "a failed call must not be repeated by a fallback"
    up.set_malloc_handler(None)
    with pytest.raises(MemoryError):
        pool.allocate(24)


def test_no_references_leak(alloc):
    n = 10**6 + 1  # not a cached small int
    p = alloc.allocate(n)
    refs = sys.getrefcount(p), sys.getrefcount(n)
    assert sys.getrefcount(alloc.allocate(24)) >= 1  # a fresh int, leaked if counted twice
    for _ in range(1000):
        q = alloc.allocate(24)
        alloc.deallocate(q, 24)
        outcome(lambda: alloc.deallocate(p, 8))  # refused: another size
        outcome(lambda: alloc.deallocate(p + 1, n))
        outcome(lambda: alloc.allocate(-n))
    assert (sys.getrefcount(p), sys.getrefcount(n)) == refs
    alloc.deallocate(p, n)
    assert sys.getrefcount(n) == refs[1]


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_a_million_calls_do_not_grow_memory():
    pool = PoolAllocator()
    a, d = pool.allocate, pool.deallocate
    p = a(24)
    for _ in range(100_000):
        d(a(24), 24)
    gc.collect()
    before = rss()
    for _ in range(1_000_000):
        d(a(24), 24)
    for _ in range(100_000):
        outcome(lambda: d(p, 64))
    gc.collect()
    assert rss() - before < 4 << 20
    d(p, 24)
    assert pool.stats().live_blocks == 0
