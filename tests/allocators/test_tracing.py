"""TracingAllocator: every allocation call of any allocator, recorded as an event."""

import pytest

import stlalloc
from stlalloc import AllocatorError, PoolAllocator, TracingAllocator


def summary(t):
    return [(e.op, e.address, e.size, e.old_size, e.result) for e in t.events()]


def test_records_each_call_in_order():
    t = TracingAllocator(PoolAllocator())
    p = t.allocate(24)
    q = t.reallocate(p, 24, 200)
    t.deallocate(q, 200)
    assert summary(t) == [
        ("allocate", p, 24, None, p),
        ("reallocate", p, 200, 24, q),
        ("deallocate", q, 200, None, None),
    ]
    shown = f'AllocatorEvent(op="allocate", address={p:#x}, size=24, result={p:#x})'
    assert repr(t.events()[0]) == shown
    t.clear()
    assert t.events() == []


def test_failed_calls_are_recorded_with_the_error():
    pool = PoolAllocator()
    t = TracingAllocator(pool)
    p = t.allocate(8)
    t.deallocate(p, 8)
    with pytest.raises(AllocatorError):
        t.deallocate(p, 8)  # double free
    q = pool.allocate(16)
    with pytest.raises(AllocatorError):
        t.deallocate(q, 64)  # a size of another class: refused by the pool
    small = TracingAllocator(stlalloc.MallocAllocator(limit=100))
    with pytest.raises(MemoryError):
        small.allocate(101)
    double, wrong = t.events()[2:]
    assert (double.op, double.address, double.size) == ("deallocate", p, 8)
    assert isinstance(double.result, AllocatorError) and "no live block" in str(double.result)
    assert isinstance(wrong.result, AllocatorError) and "another class" in str(wrong.result)
    (oom,) = small.events()
    assert (oom.op, oom.address, oom.size) == ("allocate", 0, 101)
    assert isinstance(oom.result, MemoryError)


def test_a_failed_move_is_recorded_as_a_reallocate():
    t = TracingAllocator(PoolAllocator())
    p = t.allocate(8)
    view = t.view(p, 8)
    with pytest.raises(BufferError):
        t.reallocate(p, 8, 64)
    view.release()
    e = t.events()[-1]
    assert (e.op, e.address, e.size, e.old_size) == ("reallocate", p, 64, 8)
    assert isinstance(e.result, BufferError)


def test_forwards_owns_view_stats_and_equals_its_inner_allocator():
    pool = PoolAllocator()
    t = TracingAllocator(pool)
    assert t.inner is pool and t.alignment == 8
    p = t.allocate(16)
    assert t.owns(p) and pool.owns(p)
    t.view(p, 16)[:] = b"y" * 16
    assert bytes(pool.view(p, 16)) == b"y" * 16
    assert t.stats() == pool.stats()
    assert t == pool and pool == t and hash(t) == hash(pool)
    assert t != PoolAllocator() and TracingAllocator(t) == pool
    pool.deallocate(p, 16)  # a block of the tracer is a block of the pool, and back
    assert [e.op for e in t.events()] == ["allocate"]


def test_wraps_python_allocators_and_tracers():
    pool = PoolAllocator()

    class Mine:
        def allocate(self, n):
            return pool.allocate(n)

        def deallocate(self, p, n):
            pool.deallocate(p, n)

    mine = Mine()
    t = TracingAllocator(TracingAllocator(mine))
    p = t.allocate(40)
    t.deallocate(p, 40)
    assert [e.op for e in t.events()] == ["allocate", "deallocate"]
    assert [e.op for e in t.inner.events()] == ["allocate", "deallocate"]
    assert t == mine and mine == t and hash(t) == hash(mine)
    with pytest.raises(AttributeError):
        t.stats()
    for bad in (None, 5, object()):
        with pytest.raises(TypeError):
            TracingAllocator(bad)


def test_an_exception_of_a_python_allocator_is_recorded_as_a_runtime_error():
    class Refusing:
        def allocate(self, n):
            raise KeyError("no room")

        def deallocate(self, p, n):
            pass

    t = TracingAllocator(Refusing())
    with pytest.raises(KeyError):
        t.allocate(8)
    (e,) = t.events()
    assert isinstance(e.result, RuntimeError) and "Python allocator" in str(e.result)
