"""The framework under the containers: tracing what Vector and List ask of their allocator,
containers backed by Python allocators (and kept memory-safe when those misbehave), and
allocator equality in splice."""

import gc

import pytest

import stlalloc
from stlalloc import AllocatorError, PoolAllocator, TracingAllocator


class Delegating:
    """A user allocator on top of a pool."""

    def __init__(self, pool=None):
        self.pool = pool or PoolAllocator()
        self.bad = False

    def allocate(self, n):
        if self.bad:
            return self.pool.allocate(n) + 8  # runs past the end of its block
        return self.pool.allocate(n)

    def deallocate(self, p, n):
        self.pool.deallocate(p, n)

    def live(self):
        s = self.pool.stats()
        return s.live_blocks + s.large_live_blocks


def test_tracing_a_list_of_1000_shows_one_node_allocation_per_element():
    t = TracingAllocator(PoolAllocator())
    lst = stlalloc.List(range(1000), dtype="int64", allocator=t)
    node = lst.node_size()
    events = t.events()
    assert [(e.op, e.size) for e in events] == [("allocate", node)] * 1000
    nodes = [e.result for e in events]
    assert nodes == lst.node_addresses()
    t.clear()
    del lst
    gc.collect()
    events = t.events()
    assert [(e.op, e.size, e.result) for e in events] == [("deallocate", node, None)] * 1000
    assert sorted(e.address for e in events) == sorted(nodes)


def test_tracing_a_vector_growing_to_17_shows_the_sgi_growth():
    t = TracingAllocator(PoolAllocator())
    v = stlalloc.Vector(dtype="int64", allocator=t)
    for i in range(17):
        v.push_back(i)
    steps = [(e.op, e.size) for e in t.events()]
    grown = [8, 16, 32, 64, 128, 256]
    assert [n for op, n in steps if op == "allocate"] == grown
    # Each growth allocates the new block, moves, then frees the old one.
    expected = [("allocate", 8)]
    for old, new in zip(grown, grown[1:], strict=False):
        expected += [("allocate", new), ("deallocate", old)]
    assert steps == expected
    assert t.events()[-1].address != v.data() and t.events()[-2].result == v.data()


def test_a_vector_over_a_python_allocator():
    a = Delegating()
    v = stlalloc.Vector(range(100), dtype="int64", allocator=a)
    assert list(v) == list(range(100)) and v.get_allocator() is a
    with pytest.raises(AllocatorError, match="belongs to a container"):
        a.pool.deallocate(v.data(), v.capacity() * 8)
    with pytest.raises(AllocatorError):
        a.pool.view(v.data(), 8)
    del v
    gc.collect()
    assert a.live() == 0


def test_a_list_over_a_python_allocator():
    a = Delegating()
    lst = stlalloc.List("abc", allocator=a)
    lst.push_front("z")
    assert list(lst) == ["z", "a", "b", "c"] and a.live() == 4
    del lst
    gc.collect()
    assert a.live() == 0


def test_a_bad_address_leaves_the_vector_unchanged():
    a = Delegating()
    v = stlalloc.Vector([1, 2, 3], dtype="int64", allocator=a)
    before = (list(v), v.capacity(), v.data())
    a.bad = True
    with pytest.raises(AllocatorError, match="does not lie inside"):
        v.extend(range(10))
    assert (list(v), v.capacity(), v.data()) == before
    a.bad = False
    v.extend(range(10))
    assert list(v) == [1, 2, 3, *range(10)]


def test_a_bad_address_leaves_the_list_unchanged():
    a = Delegating()
    lst = stlalloc.List([1, 2, 3], dtype="int64", allocator=a)
    before = (list(lst), lst.node_addresses())
    a.bad = True
    with pytest.raises(AllocatorError, match="does not lie inside"):
        lst.push_back(4)
    with pytest.raises(AllocatorError):
        lst.insert(1, 9)
    assert (list(lst), lst.node_addresses()) == before


def test_a_python_allocator_may_look_at_the_container_while_it_allocates():
    seen = []

    class Peeking(Delegating):
        def allocate(self, n):
            seen.append(len(lst))
            return super().allocate(n)

    lst = stlalloc.List(allocator=Peeking(stlalloc.default_pool()))
    for x in (1, 2, 3):
        lst.push_back(x)
    assert seen == [0, 1, 2] and list(lst) == [1, 2, 3]


def test_splice_moves_nodes_between_equal_allocators_only():
    a = Delegating()
    x, y = stlalloc.List([1, 2], allocator=a), stlalloc.List([3], allocator=a)
    x.splice(y)
    assert list(x) == [1, 2, 3] and len(y) == 0
    with pytest.raises(AllocatorError):
        x.splice(stlalloc.List([4], allocator=Delegating()))
    pool = PoolAllocator()
    p = stlalloc.List([1], allocator=pool)
    p.splice(stlalloc.List([2], allocator=TracingAllocator(pool)))  # equal: the same pool
    m = stlalloc.List([1], allocator=stlalloc.MallocAllocator())
    m.splice(stlalloc.List([2], allocator=stlalloc.MallocAllocator()))  # every malloc is one
    assert list(p) == list(m) == [1, 2]
    del x, p, m
    gc.collect()
    assert a.live() == 0 and pool.stats().live_blocks == 0


def test_a_vector_over_a_monotonic_allocator_retires_each_old_block():
    mono = stlalloc.MonotonicAllocator()
    v = stlalloc.Vector(dtype="int64", allocator=mono)
    for i in range(17):
        v.push_back(i)
    s = mono.stats()
    assert (s.live_blocks, s.deallocations, s.bytes_used) == (1, 5, 8 + 16 + 32 + 64 + 128 + 256)
    with pytest.raises(AllocatorError):
        mono.release()  # the vector still holds its storage
    del v
    gc.collect()
    mono.release()


def test_an_allocator_that_refers_to_its_list_is_collected_with_it():
    import weakref

    a = Delegating()
    a.lst = stlalloc.List([1, 2, 3], allocator=a)
    gone = weakref.ref(a)
    pool = a.pool
    del a
    gc.collect()
    assert gone() is None, "the cycle through the adaptor is visible to the collector"
    assert pool.stats().live_blocks == 0, "a dead allocator's blocks are freed for it"
