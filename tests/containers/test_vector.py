"""Vector: std::vector over the allocators (SPEC §5).

A hypothesis state machine per dtype runs the same operations on a Vector and a list and
checks, after every step, the contents, the capacity the libstdc++ growth rule predicts,
and that the pool holds exactly the vector's one block. Then: the storage really lives in
the allocator, the buffer export guard, garbage collection, every error leaving the vector
unchanged, and Python code re-entering the vector.
"""

import array
import gc
import threading
import weakref
from collections.abc import MutableSequence

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from stlalloc import AllocatorError, MallocAllocator, PoolAllocator, Vector, default_pool

SMALL_ARENA = 1 << 20


def live(pool):
    s = pool.stats()
    return (s.live_blocks, s.live_bytes, s.large_live_blocks, s.large_live_bytes)


def one_block(cap):
    """What a default pool holds for a vector of capacity `cap`: its one block."""
    nbytes = cap * 8
    if nbytes == 0:
        return (0, 0, 0, 0)
    if nbytes <= 128:
        return (1, nbytes, 0, 0)
    return (0, 0, 1, nbytes)


def state(v):
    return (list(v), len(v), v.capacity(), v.data())


indices = st.integers(-40, 40)
slices = st.builds(
    slice,
    st.none() | st.integers(-30, 30),
    st.none() | st.integers(-30, 30),
    st.none() | st.integers(-4, 4).filter(bool),
)


class VectorMachine(RuleBasedStateMachine):
    """A Vector against a list, plus the capacity the growth rule predicts."""

    dtype = "object"
    values = st.text(max_size=3)
    convert = staticmethod(lambda x: x)
    key = staticmethod(len)

    def __init__(self):
        super().__init__()
        self.pool = PoolAllocator(arena_size=SMALL_ARENA)
        self.v = Vector(dtype=self.dtype, allocator=self.pool)
        self.model = []
        self.cap = 0

    def grow(self, removed, inserted):
        """libstdc++ _M_check_len, after erasing `removed`: base + max(base, inserted)."""
        base = len(self.model) - removed
        if base + inserted > self.cap:
            self.cap = base + max(base, inserted)

    def converted(self, xs):
        return [self.convert(x) for x in xs]

    @invariant()
    def agrees_with_the_list_and_holds_one_block(self):
        assert list(self.v) == self.model
        assert len(self.v) == len(self.model)
        assert self.v.capacity() == self.cap
        assert live(self.pool) == one_block(self.cap)
        if self.cap:
            assert self.pool.owns(self.v.data())
        else:
            assert self.v.data() == 0

    @rule(x=st.data())
    def push_back(self, x):
        x = x.draw(self.values)
        self.grow(0, 1)
        self.model.append(self.convert(x))
        self.v.push_back(x)

    @rule(x=st.data())
    def append(self, x):
        x = x.draw(self.values)
        self.grow(0, 1)
        self.model.append(self.convert(x))
        self.v.append(x)

    @rule(i=indices, data=st.data())
    def insert(self, i, data):
        x = data.draw(self.values)
        self.grow(0, 1)
        self.model.insert(i, self.convert(x))
        self.v.insert(i, x)

    @rule(i=st.none() | indices)
    def pop(self, i):
        args = () if i is None else (i,)
        try:
            want = self.model.pop(*args)
        except IndexError:
            with pytest.raises(IndexError):
                self.v.pop(*args)
            return
        assert self.v.pop(*args) == want

    @precondition(lambda self: self.model)
    @rule()
    def pop_back_front_back(self):
        assert self.v.front() == self.model[0]
        assert self.v.back() == self.model[-1]
        assert self.v.pop_back() == self.model.pop()

    @rule(i=indices, data=st.data())
    def setitem(self, i, data):
        x = data.draw(self.values)
        try:
            self.model[i] = self.convert(x)
        except IndexError:
            with pytest.raises(IndexError):
                self.v[i] = x
            return
        self.v[i] = x

    @rule(i=indices)
    def getitem_and_delitem(self, i):
        try:
            want = self.model[i]
        except IndexError:
            with pytest.raises(IndexError):
                self.v[i]
            with pytest.raises(IndexError):
                del self.v[i]
            return
        assert self.v[i] == want
        del self.model[i]
        del self.v[i]

    @rule(s=slices)
    def get_slice(self, s):
        part = self.v[s]
        assert isinstance(part, Vector) and part.dtype == self.dtype
        assert list(part) == self.model[s]
        assert part.capacity() == len(part)

    @rule(s=slices, data=st.data())
    def set_slice(self, s, data):
        start, stop, step = s.indices(len(self.model))
        selected = len(range(start, stop, step))
        if step == 1:
            xs = data.draw(st.lists(self.values, max_size=12))
            self.grow(selected, len(xs))
        else:
            xs = data.draw(st.lists(self.values, min_size=selected, max_size=selected + 1))
        if len(xs) != selected and step != 1:
            with pytest.raises(ValueError):
                self.v[s] = xs
            return
        self.model[s] = self.converted(xs)
        self.v[s] = xs

    @rule(s=slices)
    def del_slice(self, s):
        del self.model[s]
        del self.v[s]

    @rule(data=st.data(), inplace=st.booleans())
    def extend(self, data, inplace):
        xs = data.draw(st.lists(self.values, max_size=20))
        self.grow(0, len(xs))
        self.model.extend(self.converted(xs))
        if inplace:
            before = self.v
            self.v += iter(xs)
            assert self.v is before
        else:
            self.v.extend(xs)

    @precondition(lambda self: len(self.model) < 50)
    @rule()
    def extend_with_itself(self):
        self.grow(0, len(self.model))
        self.model.extend(list(self.model))
        self.v.extend(self.v)

    @rule()
    def reverse(self):
        self.model.reverse()
        self.v.reverse()

    @rule(reverse=st.booleans(), keyed=st.booleans())
    def sort(self, reverse, keyed):
        key = self.key if keyed else None
        self.model.sort(key=key, reverse=reverse)
        self.v.sort(key=key, reverse=reverse)

    @rule(data=st.data())
    def remove(self, data):
        x = data.draw(st.sampled_from(self.model) if self.model else self.values)
        try:
            self.model.remove(self.convert(x))
        except ValueError:
            with pytest.raises(ValueError):
                self.v.remove(x)
            return
        self.v.remove(x)

    @rule(data=st.data())
    def erase(self, data):
        x = data.draw(st.sampled_from(self.model) if self.model else self.values)
        kept = [y for y in self.model if not y == self.convert(x)]
        assert self.v.erase(x) == len(self.model) - len(kept)
        self.model = kept

    @rule(data=st.data())
    def erase_if(self, data):
        x = self.convert(data.draw(self.values))
        kept = [y for y in self.model if not y == x]
        assert self.v.erase_if(lambda y: y == x) == len(self.model) - len(kept)
        self.model = kept

    @rule(data=st.data())
    def search(self, data):
        x = data.draw(st.sampled_from(self.model) if self.model else self.values)
        assert (x in self.v) == (self.convert(x) in self.model)
        assert self.v.count(x) == self.model.count(self.convert(x))
        if x in self.model:
            assert self.v.index(x) == self.model.index(x)
            start = data.draw(indices)
            try:
                want = self.model.index(x, start)
            except ValueError:
                with pytest.raises(ValueError):
                    self.v.index(x, start)
            else:
                assert self.v.index(x, start) == want

    @rule(n=st.integers(0, 60), data=st.data())
    def resize(self, n, data):
        x = data.draw(self.values)
        if n > len(self.model):
            self.grow(0, n - len(self.model))
        self.model[n:] = [self.convert(x)] * (n - len(self.model))
        self.v.resize(n, x)

    @rule(n=st.integers(0, 80))
    def reserve(self, n):
        self.cap = max(self.cap, n)
        self.v.reserve(n)

    @rule()
    def shrink_to_fit(self):
        self.cap = len(self.model)
        self.v.shrink_to_fit()

    @rule()
    def clear(self):
        self.model.clear()
        self.v.clear()

    @rule()
    def equality_and_copy(self):
        assert self.v == self.model and not (self.v != self.model)
        c = self.v.copy()
        assert c == self.v and c.get_allocator() is self.pool
        assert c.capacity() == len(self.model)
        assert list(reversed(self.v)) == self.model[::-1]

    def teardown(self):
        del self.v
        assert live(self.pool) == (0, 0, 0, 0), "dropping the vector returns its block"


class Int64Machine(VectorMachine):
    dtype = "int64"
    values = st.integers(-(2**63), 2**63 - 1)
    convert = staticmethod(int)
    key = staticmethod(abs)


class Float64Machine(VectorMachine):
    dtype = "float64"
    values = st.floats(allow_nan=False) | st.integers(-(2**53), 2**53)
    convert = staticmethod(float)
    key = staticmethod(abs)


MACHINE_SETTINGS = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestObjectVector = VectorMachine.TestCase
TestObjectVector.settings = MACHINE_SETTINGS
TestInt64Vector = Int64Machine.TestCase
TestInt64Vector.settings = MACHINE_SETTINGS
TestFloat64Vector = Float64Machine.TestCase
TestFloat64Vector.settings = MACHINE_SETTINGS


# --- the storage lives in the allocator ---------------------------------------------------


@pytest.fixture
def pool():
    return PoolAllocator(arena_size=SMALL_ARENA)


def test_sixteen_int64_fill_one_pool_block_and_the_seventeenth_moves_upstream(pool):
    v = Vector(dtype="int64", allocator=pool)
    for i in range(16):
        v.push_back(i)
    assert v.capacity() == 16 and live(pool) == (1, 128, 0, 0)
    assert pool.owns(v.data()) and pool.owns(v.data() + 127)
    small = v.data()
    v.push_back(16)
    assert v.capacity() == 32 and v.data() != small
    assert pool.stats().large_live_blocks == 1 and live(pool) == (0, 0, 1, 256)
    assert pool.owns(v.data())
    assert pool.free_list(15)[0] == small, "the old block went back on its free list"


def test_each_growth_allocates_the_new_block_then_frees_the_old():
    m = MallocAllocator()
    v = Vector(dtype="float64", allocator=m)
    caps = []
    for i in range(9):
        v.append(i)
        caps.append(v.capacity())
        assert m.owns(v.data())
    assert caps == [1, 2, 4, 4, 8, 8, 8, 8, 16]
    s = m.stats()
    assert (s.allocations, s.deallocations, s.live_blocks, s.live_bytes) == (5, 4, 1, 128)
    v.extend(range(10))  # 9 + max(9, 10)
    assert v.capacity() == 19
    del v
    assert m.stats().live_blocks == 0


def test_dropping_vectors_returns_every_block(pool):
    start = live(pool)
    vs = [
        Vector(range(n), dtype=d, allocator=pool)
        for n in (3, 16, 40)
        for d in ("int64", "float64", "object")
    ]
    parts = [v[1:] for v in vs]
    assert live(pool) != start
    del vs, parts
    assert live(pool) == start


def test_the_default_allocator_is_the_default_pool_and_copies_keep_theirs(pool):
    assert Vector().get_allocator() is default_pool()
    v = Vector([1, 2], dtype="int64", allocator=pool)
    assert v.get_allocator() is pool
    assert v.copy().get_allocator() is pool and v[:1].get_allocator() is pool


def test_construction_reserves_exactly_once(pool):
    v = Vector(range(1000), dtype="int64", allocator=pool)
    assert (len(v), v.capacity(), live(pool)) == (1000, 1000, (0, 0, 1, 8000))
    assert v[-1] == 999 and v[::-100][:2] == [999, 899]
    gen = Vector((x * 0.5 for x in range(5)), dtype="float64", allocator=pool)
    assert gen == [0.0, 0.5, 1.0, 1.5, 2.0] and gen.capacity() == 5
    assert Vector(range(2**63 - 3, 2**63 - 1), dtype="int64") == [2**63 - 3, 2**63 - 2]
    assert Vector(range(10, -10, -7), dtype="float64") == [10.0, 3.0, -4.0]


def test_mutable_sequence_repr_and_equality():
    v = Vector([1, 2, 3], dtype="int64")
    assert isinstance(v, MutableSequence)
    assert repr(v) == "Vector([1, 2, 3], dtype='int64')"
    assert repr(Vector([0.5], dtype="float64")) == "Vector([0.5], dtype='float64')"
    assert repr(Vector(["a", None])) == "Vector(['a', None], dtype='object')"
    assert v == [1, 2, 3] and [1, 2, 3] == v and v != [1, 2]
    assert v == Vector([1.0, 2.0, 3.0], dtype="float64") == Vector([1, 2, 3])
    assert v != (1, 2, 3), "a list is not equal to a tuple either"
    with pytest.raises(TypeError):
        hash(v)
    assert v.dtype == "int64"


def test_numeric_search_compares_values_as_python_does():
    v = Vector([1, 2, 3], dtype="int64")
    assert 3.0 in v and 2.5 not in v and 2**70 not in v and "a" not in v
    assert v.index(3.0) == 2 and v.count(True) == 1
    f = Vector([0.5, 2**53], dtype="float64")
    assert 2**53 in f and 2**53 + 1 not in f and 0.5 in f and f.index(0.5) == 0


def test_iterators_see_changes_as_list_iterators_do():
    v = Vector([1, 2, 3], dtype="int64")
    it = iter(v)
    assert next(it) == 1
    v.append(4)
    assert list(it) == [2, 3, 4]
    v.append(5)
    assert list(it) == [], "an exhausted iterator stays exhausted"
    rit = reversed(v)
    del v[3:]
    assert list(rit) == [], "reversed() stops when its position is gone"
    assert list(reversed(v)) == [3, 2, 1]


# --- buffer protocol and its guard ---------------------------------------------------------


def test_numeric_vectors_export_zero_copy_buffers(pool):
    v = Vector([1, 2, 3], dtype="int64", allocator=pool)
    m = memoryview(v)
    assert (m.format, m.itemsize, m.nbytes, m.readonly) == ("q", 8, 24, False)
    m[0] = 10
    a = np.asarray(v)
    assert a.ctypes.data == v.data() and a.dtype == np.int64
    a[1] = 20
    assert v == [10, 20, 3]
    f = Vector([0.5], dtype="float64", allocator=pool)
    assert memoryview(f).format == "d" and np.asarray(f).tolist() == [0.5]
    assert np.asarray(Vector(["x", None])).tolist() == ["x", None], "by the sequence protocol"
    with pytest.raises(BufferError):
        memoryview(Vector([1]))


def test_nothing_moves_or_frees_exported_storage(pool):
    v = Vector(range(4), dtype="int64", allocator=pool)
    v.reserve(6)
    m = memoryview(v)
    before = state(v)
    for grow in (
        lambda: v.reserve(7),
        lambda: v.shrink_to_fit(),
        lambda: v.extend(range(3)),
        lambda: v.resize(7),
        lambda: v.__setitem__(slice(0, 0), [1, 2, 3]),
    ):
        with pytest.raises(BufferError):
            grow()
        assert state(v) == before
    # The storage belongs to the vector: the allocator refuses to free it, exported or not.
    with pytest.raises(AllocatorError, match="belongs to a container"):
        pool.deallocate(v.data(), v.capacity() * 8)
    # Room inside the capacity does not move the storage: allowed, as is shrinking.
    v.pop()
    v.append(9)
    assert v.data() == before[3]
    m.release()
    v.extend(range(10))  # 4 + max(4, 10)
    assert v.capacity() == 14 and v.data() != before[3]


def test_an_empty_vector_exports_an_empty_buffer_and_cannot_grow_meanwhile():
    v = Vector(dtype="float64")
    with memoryview(v) as m:
        assert m.nbytes == 0 and m.tolist() == []
        with pytest.raises(BufferError):
            v.append(1.0)
        assert (len(v), v.capacity()) == (0, 0)
    v.append(1.0)


# --- garbage collection and references ----------------------------------------------------


def test_a_vector_holding_itself_is_collected(pool):
    v = Vector(allocator=pool)
    v.append(v)
    v.append([v])
    ref = weakref.ref(v)
    assert repr(v) == "Vector([Vector(...), [Vector(...)]], dtype='object')"
    del v
    gc.collect()
    assert ref() is None
    assert live(pool) == (0, 0, 0, 0)


def test_an_iterator_cycle_is_collected():
    v = Vector()
    v.append(iter(v))
    ref = weakref.ref(v)
    del v
    gc.collect()
    assert ref() is None


def test_object_vectors_hold_references():
    class Thing:
        pass

    t = Thing()
    ref = weakref.ref(t)
    v = Vector([t])
    del t
    assert ref() is v[0]
    v.clear()
    assert ref() is None


# --- errors leave the vector unchanged -----------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "bad", "error"),
    [
        ("int64", "x", TypeError),
        ("int64", 1.5, TypeError),
        ("int64", None, TypeError),
        ("int64", 2**63, OverflowError),
        ("int64", -(2**63) - 1, OverflowError),
        ("float64", "x", TypeError),
        ("float64", None, TypeError),
        ("float64", 10**400, OverflowError),
    ],
)
def test_wrong_elements_raise_and_change_nothing(dtype, bad, error):
    v = Vector([1, 2, 3], dtype=dtype)
    before = state(v)
    ops = [
        lambda: v.push_back(bad),
        lambda: v.append(bad),
        lambda: v.insert(1, bad),
        lambda: v.extend([4, bad]),
        lambda: v.__setitem__(0, bad),
        lambda: v.__setitem__(slice(0, 2), [7, bad]),
        lambda: Vector([1, bad], dtype=dtype),
    ]
    if bad is not None:  # resize(n, None) means resize(n): the dtype's default value
        ops.append(lambda: v.resize(10, bad))
    for op in ops:
        with pytest.raises(error):
            op()
        assert state(v) == before


def test_ints_go_into_float64_as_array_d_takes_them():
    assert Vector([1, True, 2**60], dtype="float64") == array.array("d", [1, True, 2**60]).tolist()


def test_bad_indices_raise_index_error_and_change_nothing():
    v = Vector([1, 2, 3], dtype="int64")
    before = state(v)
    for op in (
        lambda: v[3],
        lambda: v[-4],
        lambda: v.__setitem__(3, 0),
        lambda: v.__delitem__(-4),
        lambda: v.pop(5),
        lambda: v[2**100],
        lambda: Vector().pop(),
        lambda: Vector().front(),
        lambda: Vector().back(),
        lambda: Vector().pop_back(),
    ):
        with pytest.raises(IndexError):
            op()
    with pytest.raises(TypeError):
        v["a"]
    with pytest.raises(ValueError):
        v[::2] = [1, 2, 3]
    with pytest.raises(ValueError):
        v.remove(7)
    with pytest.raises(ValueError):
        v.index(1, 1)
    assert state(v) == before


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        Vector(dtype="int32")
    with pytest.raises(TypeError):
        Vector(allocator=object())
    v = Vector([1], dtype="int64")
    with pytest.raises(ValueError):
        v.reserve(-1)
    with pytest.raises(ValueError):
        v.resize(-1)
    with pytest.raises(MemoryError):
        v.reserve(2**61)
    with pytest.raises(TypeError):
        v.extend(5)
    assert state(v)[:3] == ([1], 1, 1)


def test_allocation_failure_is_memory_error_with_the_vector_unchanged():
    m = MallocAllocator(limit=64)
    v = Vector(range(8), dtype="int64", allocator=m)
    before = state(v)
    for op in (
        lambda: v.push_back(8),
        lambda: v.insert(0, 8),
        lambda: v.extend([8, 9]),
        lambda: v.__setitem__(slice(0, 0), [1]),
        lambda: v.resize(9),
        lambda: v.reserve(9),
    ):
        with pytest.raises(MemoryError):
            op()
        assert state(v) == before
    assert m.stats().live_blocks == 1
    with pytest.raises(MemoryError):
        Vector(range(9), dtype="int64", allocator=m)
    assert m.stats().live_blocks == 1


def test_a_pool_whose_upstream_fails_raises_memory_error_unchanged():
    pool = PoolAllocator(arena_size=SMALL_ARENA, upstream=MallocAllocator(limit=0))
    v = Vector(range(16), dtype="int64", allocator=pool)
    before = state(v)
    with pytest.raises(MemoryError):
        v.append(16)
    assert state(v) == before and live(pool) == (1, 128, 0, 0)


# --- Python code re-entering the vector ----------------------------------------------------


def test_an_oom_handler_may_use_the_vector_while_it_grows():
    m = MallocAllocator(limit=200)
    spare = m.allocate(100)
    v = Vector(range(8), dtype="int64", allocator=m)
    seen = []

    def handler():
        seen.append((len(v), v[0], v.capacity()))
        m.deallocate(spare, 100)

    m.set_malloc_handler(handler)
    v.append(8)
    assert seen == [(8, 0, 8)] and v.capacity() == 16 and v[-1] == 8


def test_an_oom_handler_that_changes_the_vector_makes_growth_start_over():
    m = MallocAllocator(limit=200)
    spare = m.allocate(100)
    v = Vector(range(8), dtype="int64", allocator=m)

    def handler():
        m.set_malloc_handler(None)
        m.deallocate(spare, 100)
        del v[:4]  # now there is room without growing

    m.set_malloc_handler(handler)
    v.append(8)
    assert v == [4, 5, 6, 7, 8] and v.capacity() == 8
    assert m.stats().live_blocks == 1, "the block allocated for nothing was freed"


class Meddler:
    """An element whose comparison empties the vector it is compared in."""

    def __init__(self, victim):
        self.victim = victim

    def __eq__(self, other):
        self.victim.clear()
        return False

    __hash__ = None


def test_comparisons_may_change_the_vector_they_search():
    v = Vector()
    v.extend([Meddler(v), 1, 2])
    assert 2 not in v and len(v) == 0
    v.extend([Meddler(v), 1])
    assert v.count(1) == 0
    v.extend([Meddler(v), 1])
    with pytest.raises(ValueError):
        v.remove(1)
    v.extend([Meddler(v)])
    assert v != [0] and v == []


def test_a_sort_key_that_changes_the_vector_raises_value_error():
    v = Vector([3, 1, 2], dtype="int64")

    def key(x):
        v.append(0)
        return x

    with pytest.raises(ValueError, match="modified during sort"):
        v.sort(key=key)
    assert list(v)[:3] == [3, 1, 2]


def test_elements_dropped_by_the_vector_may_use_it():
    v = Vector()

    class Reporter:
        def __del__(self):
            seen.append(len(v))

    seen = []
    v.extend([Reporter(), Reporter()])
    v.clear()
    v.append(Reporter())
    v[0] = 1
    assert seen == [0, 0, 1]


def test_threads_push_concurrently(pool):
    v = Vector(dtype="int64", allocator=pool)

    def work(base):
        for i in range(2000):
            v.push_back(base + i)

    threads = [threading.Thread(target=work, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v) == sorted(k * 10_000 + i for k in range(4) for i in range(2000))
    assert v.capacity() == 8192 and live(pool) == one_block(8192)
