"""stlalloc.List: std::list over the allocators (SPEC §5), checked against collections.deque."""

import collections
import ctypes
import functools
import gc
import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import stlalloc
from stlalloc import AllocatorError, List, MallocAllocator, PoolAllocator

NODE = 24  # prev, next, an 8-byte value

VALUES = {
    "int64": st.integers(-3, 3) | st.integers(-(2**63), 2**63 - 1),
    "float64": st.floats(-3, 3, allow_nan=False) | st.floats(allow_nan=False),
    "object": st.integers(-3, 3) | st.floats(-3, 3, allow_nan=False),
}


def state(lst):
    """What must stay the same when an operation fails: values and nodes."""
    return list(lst), lst.node_addresses()


def live_blocks(pool):
    return pool.stats().live_blocks


# ---------------------------------------------------------------- model-based test


def unique_model(values):
    kept = []
    for v in values:
        if not (kept and (kept[-1] is v or kept[-1] == v)):
            kept.append(v)
    return kept


def merge_model(mine, theirs):
    """std::list::merge: take from `theirs` only when strictly less (stable)."""
    out, i, j = [], 0, 0
    while i < len(mine) and j < len(theirs):
        if theirs[j] < mine[i]:
            out.append(theirs[j])
            j += 1
        else:
            out.append(mine[i])
            i += 1
    return out + mine[i:] + theirs[j:]


class ListVsDeque(RuleBasedStateMachine):
    """The same operations on a List and a deque; after each, equal contents, and exactly
    one live pool block of round_up(node_size) bytes per element."""

    dtype = "object"

    @initialize()
    def start(self):
        self.pool = PoolAllocator()
        self.list = List(dtype=self.dtype, allocator=self.pool)
        self.model = collections.deque()

    def values(self):
        return VALUES[self.dtype]

    def other(self, xs):
        return List(xs, dtype=self.dtype, allocator=self.pool)

    @rule(data=st.data())
    def push(self, data):
        x = data.draw(self.values())
        if data.draw(st.booleans()):
            self.list.push_back(x)
            self.model.append(x)
        else:
            self.list.appendleft(x)
            self.model.appendleft(x)

    @rule(front=st.booleans())
    def pop(self, front):
        if not self.model:
            with pytest.raises(IndexError):
                self.list.pop_front() if front else self.list.pop()
            return
        expected = self.model.popleft() if front else self.model.pop()
        assert (self.list.popleft() if front else self.list.pop_back()) == expected

    @rule(i=st.integers(-8, 8), data=st.data())
    def insert(self, i, data):
        x = data.draw(self.values())
        self.list.insert(i, x)
        self.model.insert(i, x)

    @rule(i=st.integers(-8, 8))
    def delete(self, i):
        if -len(self.model) <= i < len(self.model):
            del self.list[i]
            del self.model[i]
        else:
            with pytest.raises(IndexError):
                del self.list[i]

    @rule(i=st.integers(-8, 8), data=st.data())
    def set_and_get(self, i, data):
        x = data.draw(self.values())
        if -len(self.model) <= i < len(self.model):
            self.list[i] = x
            self.model[i] = x
            assert self.list[i] == self.model[i]
        else:
            with pytest.raises(IndexError):
                self.list[i] = x

    @rule(data=st.data())
    def erase_all_equal(self, data):
        x = data.draw(self.values())
        kept = [v for v in self.model if not (v is x or v == x)]
        assert self.list.erase(x) == len(self.model) - len(kept)
        self.model = collections.deque(kept)

    @rule(data=st.data())
    def remove_first_equal(self, data):
        x = data.draw(self.values())
        if x in self.model:
            self.list.remove(x)
            self.model.remove(x)
        else:
            with pytest.raises(ValueError):
                self.list.remove(x)

    @rule(data=st.data())
    def erase_if(self, data):
        x = data.draw(self.values())
        kept = [v for v in self.model if not v < x]
        assert self.list.erase_if(lambda v: v < x) == len(self.model) - len(kept)
        self.model = collections.deque(kept)

    @rule()
    def reverse(self):
        self.list.reverse()
        self.model.reverse()

    @rule(reverse=st.booleans(), keyed=st.booleans())
    def sort(self, reverse, keyed):
        key = abs if keyed else None
        before = sorted(self.list.node_addresses())
        stats = self.pool.stats()
        self.list.sort(key=key, reverse=reverse)
        self.model = collections.deque(sorted(self.model, key=key, reverse=reverse))
        assert self.pool.stats() == stats
        assert sorted(self.list.node_addresses()) == before

    @rule()
    def unique(self):
        kept = unique_model(self.model)
        assert self.list.unique() == len(self.model) - len(kept)
        self.model = collections.deque(kept)

    @rule(data=st.data(), front=st.booleans())
    def extend(self, data, front):
        xs = data.draw(st.lists(self.values(), max_size=5))
        if front:
            self.list.extendleft(xs)
            self.model.extendleft(xs)
        else:
            self.list.extend(xs)
            self.model.extend(xs)

    @rule(data=st.data())
    def splice(self, data):
        xs = data.draw(st.lists(self.values(), max_size=5))
        other = self.other(xs)
        self.list.splice(other)
        assert len(other) == 0
        self.model.extend(xs)

    @rule(data=st.data())
    def merge(self, data):
        other = self.other(sorted(data.draw(st.lists(self.values(), max_size=5))))
        theirs = list(other)
        self.list.sort()
        self.model = collections.deque(merge_model(sorted(self.model), theirs))
        self.list.merge(other)
        assert len(other) == 0

    @precondition(lambda self: len(self.model) > 6)
    @rule()
    def clear(self):
        self.list.clear()
        self.model.clear()

    @invariant()
    def same_contents_one_block_per_element(self):
        assert list(self.list) == list(self.model)
        assert list(reversed(self.list)) == list(reversed(self.model))
        assert len(self.list) == len(self.model)
        nodes = self.list.node_addresses()
        assert len(set(nodes)) == len(nodes) == len(self.model)
        s = self.pool.stats()
        assert (s.live_blocks, s.live_bytes) == (len(self.model), len(self.model) * NODE)
        if self.model:
            assert (self.list.front(), self.list.back()) == (self.model[0], self.model[-1])


def machine_for(dtype):
    machine = type(f"ListVsDeque_{dtype}", (ListVsDeque,), {"dtype": dtype})
    machine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
    return machine.TestCase


TestInt64 = machine_for("int64")
TestFloat64 = machine_for("float64")
TestObject = machine_for("object")


# ---------------------------------------------------------------- nodes in the allocator


@pytest.mark.parametrize("dtype", ["int64", "float64", "object"])
def test_one_node_allocation_per_element_and_none_for_the_list(dtype):
    pool = PoolAllocator()
    lst = List(dtype=dtype, allocator=pool)
    assert live_blocks(pool) == 0
    lst.extend(range(1000))
    assert lst.node_size() == NODE
    s = pool.stats()
    assert (s.live_blocks, s.live_bytes, s.large_live_blocks) == (1000, 1000 * NODE, 0)
    assert all(pool.owns(a) for a in lst.node_addresses())
    del lst
    assert live_blocks(pool) == 0


def test_nodes_over_malloc_allocators_keep_each_owners_books_and_refuse_users():
    # A List serves a MallocAllocator directly and a TracingAllocator around one through
    # the protocol: equal allocators either way, each node counted against the allocator
    # that made it wherever it is spliced, and never freed or viewed from Python.
    a, b = MallocAllocator(), MallocAllocator()
    traced = stlalloc.TracingAllocator(b)
    x = List(range(100), dtype="int64", allocator=a)
    y = List(range(100, 150), dtype="int64", allocator=traced)
    z = List(range(150, 170), dtype="int64", allocator=b)
    x.splice(y)
    x.splice(z)
    assert list(x) == list(range(170)) and len(y) == len(z) == 0
    sa, sb = a.stats(), b.stats()
    assert (sa.live_blocks, sa.live_bytes) == (100, 100 * NODE)
    assert (sb.live_blocks, sb.live_bytes) == (70, 70 * NODE)
    for p in x.node_addresses()[::17]:
        assert a.owns(p) and b.owns(p + NODE - 1)
        with pytest.raises(AllocatorError):
            a.deallocate(p, NODE)
        with pytest.raises(AllocatorError):
            b.view(p, 8)
    assert (a.stats(), b.stats()) == (sa, sb)
    for _ in range(80):
        x.pop()  # b's 20, the 50 b made through the tracer, then 10 of a's
    assert (a.stats().live_blocks, b.stats().live_blocks) == (90, 0)
    del x, y, z
    sa, sb = a.stats(), b.stats()
    assert (sa.live_blocks, sa.live_bytes, sa.allocations, sa.deallocations) == (0, 0, 100, 100)
    assert (sb.live_blocks, sb.live_bytes, sb.allocations, sb.deallocations) == (0, 0, 70, 70)


def test_default_allocator_is_the_default_pool_and_copies_keep_theirs():
    assert List().get_allocator() is stlalloc.default_pool()
    pool = PoolAllocator()
    lst = List([1, 2], dtype="float64", allocator=pool)
    twin = lst.copy()
    assert twin.get_allocator() is pool and twin.dtype == "float64"
    assert twin == lst and twin.node_addresses() != lst.node_addresses()
    assert live_blocks(pool) == 4


def test_sort_relinks_nodes_and_allocates_nothing():
    pool = PoolAllocator()
    lst = List([5, 3, 9, 1, 7], dtype="int64", allocator=pool)
    node_of = dict(zip(lst, lst.node_addresses(), strict=True))
    stats = pool.stats()
    lst.sort()
    assert list(lst) == [1, 3, 5, 7, 9]
    assert lst.node_addresses() == [node_of[v] for v in lst]
    lst.sort(key=lambda v: -v)
    assert lst.node_addresses() == [node_of[v] for v in [9, 7, 5, 3, 1]]
    assert pool.stats() == stats


def test_sort_is_stable_in_both_directions():
    pairs = [(2, "a"), (1, "b"), (2, "c"), (1, "d"), (0, "e")]
    lst = List(pairs)
    lst.sort(key=lambda p: p[0], reverse=True)
    assert list(lst) == sorted(pairs, key=lambda p: p[0], reverse=True)
    floats = List([2.0, 1.0, -0.0, 0.0, 1.0], dtype="float64")
    floats.sort(reverse=True)
    assert [str(v) for v in floats] == ["2.0", "1.0", "1.0", "-0.0", "0.0"]


def test_splice_is_constant_time_relinking_and_empties_the_other():
    pool = PoolAllocator()
    a, b = List([1, 2], allocator=pool), List([3], allocator=pool)
    nodes = a.node_addresses() + b.node_addresses()
    stats = pool.stats()
    a.splice(b)
    assert (list(a), len(b), a.node_addresses()) == ([1, 2, 3], 0, nodes)
    assert pool.stats() == stats
    m = MallocAllocator()
    c, d = List([1], dtype="int64", allocator=m), List([2], dtype="int64", allocator=m)
    c.merge(d)
    assert list(c) == [1, 2]


@pytest.mark.parametrize(
    "other_allocator",
    [PoolAllocator, MallocAllocator, stlalloc.default_pool],
    ids=["another pool", "malloc", "default pool"],
)
def test_splice_and_merge_across_allocators_raise_and_change_nothing(other_allocator):
    a = List([1, 3], allocator=PoolAllocator())
    b = List([2], allocator=other_allocator())
    before = state(a), state(b)
    for op in (a.splice, a.merge):
        with pytest.raises(AllocatorError):
            op(b)
        assert (state(a), state(b)) == before


def test_two_list_operations_check_dtype_and_identity():
    pool = PoolAllocator()
    a, b = List([1], dtype="int64", allocator=pool), List([2.0], dtype="float64", allocator=pool)
    with pytest.raises(TypeError):
        a.splice(b)
    with pytest.raises(TypeError):
        a.merge(b)
    with pytest.raises(ValueError):
        a.splice(a)
    a.merge(a)
    assert (list(a), list(b)) == ([1], [2.0])


class Key:
    """Orders by `n` only, so that ties show which list an element came from."""

    def __init__(self, n, tag):
        self.n, self.tag = n, tag

    def __lt__(self, other):
        return self.n < other.n


def test_merge_is_stable():
    pool = PoolAllocator()
    a = List([Key(1, "a"), Key(3, "a")], allocator=pool)
    b = List([Key(1, "b"), Key(3, "b")], allocator=pool)
    a.merge(b)
    assert [(k.n, k.tag) for k in a] == [(1, "a"), (1, "b"), (3, "a"), (3, "b")]


def test_dropping_and_clearing_return_every_block():
    pool = PoolAllocator()
    lst = List(range(100), dtype="int64", allocator=pool)
    lst.clear()
    assert (len(lst), live_blocks(pool)) == (0, 0)
    lst.extend(range(10))
    it = iter(lst)
    del lst
    assert live_blocks(pool) == 10, "an iterator keeps its list alive"
    del it
    assert live_blocks(pool) == 0


def test_a_list_containing_itself_is_collected():
    pool = PoolAllocator()
    lst = List([1], allocator=pool)
    lst.append(lst)
    assert repr(lst) == "List([1, [...]], dtype='object')"
    del lst
    gc.collect()
    assert live_blocks(pool) == 0


def test_cycle_through_an_iterator_is_collected():
    pool = PoolAllocator()
    lst = List(allocator=pool)
    lst.append(iter(lst))
    del lst
    gc.collect()
    assert live_blocks(pool) == 0


# ---------------------------------------------------------------- errors leave the list as it was


def test_element_type_errors():
    ints, floats = List([1], dtype="int64"), List([1.5], dtype="float64")
    for lst, bad, error in [
        (ints, "1", TypeError),
        (ints, 1.0, TypeError),
        (ints, 2**63, OverflowError),
        (ints, -(2**63) - 1, OverflowError),
        (floats, "1.5", TypeError),
        (floats, 10**400, OverflowError),
    ]:
        before = state(lst)
        for op in (lst.push_back, lst.push_front, functools.partial(lst.insert, 0)):
            with pytest.raises(error):
                op(bad)
        with pytest.raises(error):
            lst[0] = bad
        with pytest.raises(error):
            lst.extend([7, bad])
        assert state(lst) == before
    ints.append(True)
    floats.append(2)
    assert (list(ints), list(floats)) == ([1, 1], [1.5, 2.0])


def test_constructor_errors():
    with pytest.raises(ValueError):
        List(dtype="int32")
    with pytest.raises(TypeError):
        List(allocator=object())
    with pytest.raises(TypeError):
        List(["x"], dtype="int64")


def test_index_errors():
    lst = List([1, 2], dtype="int64")
    for i in (2, -3, 2**70):
        with pytest.raises(IndexError):
            lst[i]
        with pytest.raises(IndexError):
            del lst[i]
    empty = List()
    for op in (empty.pop, empty.popleft, empty.front, empty.back):
        with pytest.raises(IndexError):
            op()
    assert (lst[-1], lst[-2], list(lst)) == (2, 1, [1, 2])


def test_allocation_failure_is_a_memory_error_and_changes_nothing():
    m = MallocAllocator(limit=3 * NODE)
    lst = List([1, 2, 3], dtype="int64", allocator=m)
    before = state(lst)
    for op in (lst.push_back, lst.push_front, lambda x: lst.insert(1, x)):
        with pytest.raises(MemoryError):
            op(4)
    with pytest.raises(MemoryError):
        lst.copy()
    assert state(lst) == before
    lst.pop()
    with pytest.raises(MemoryError):
        lst.extend([4, 5])
    assert list(lst) == [1, 2]
    assert m.stats().live_blocks == 2


def test_oom_handler_may_free_nodes_of_the_same_list():
    m = MallocAllocator(limit=2 * NODE)
    lst = List(["a", "b"], allocator=m)
    m.set_malloc_handler(lst.popleft)
    lst.append("c")
    assert list(lst) == ["b", "c"]


class Explosive:
    def __eq__(self, other):
        raise RuntimeError("no comparing")

    def __lt__(self, other):
        raise RuntimeError("no comparing")

    __gt__ = __lt__
    __hash__ = None


def test_a_plain_pool_is_served_directly_and_a_debug_pool_through_its_checks():
    # A List names a plain pool's type (its fast path inlined) and reaches any other
    # allocator, a debug pool included, through the allocator's own methods.
    debug = PoolAllocator(debug=True)
    lst = List([1, 2, 3], dtype="int64", allocator=debug)
    first, _, last = lst.node_addresses()
    assert (lst.pop(), lst.popleft()) == (3, 1)
    assert ctypes.string_at(last, NODE) == ctypes.string_at(first, NODE) == b"\xdd" * NODE
    lst.push_back(4)
    lst.appendleft(0)
    assert list(lst) == [0, 2, 4] and debug.stats().live_blocks == 3
    pool = PoolAllocator()
    plain = List([1, 2], dtype="int64", allocator=pool)
    traced = List([3], dtype="int64", allocator=stlalloc.TracingAllocator(pool))
    traced.splice(plain)  # equal allocators: the same pool, named or behind a wrapper
    plain.splice(traced)
    assert [plain.pop() for _ in range(3)] == [2, 1, 3] and pool.stats().live_blocks == 0


def test_failing_comparisons_leave_the_list_unchanged():
    lst = List([3, Explosive(), 1, 1])
    before = state(lst)
    for op in (
        lst.sort,
        lst.unique,
        lambda: lst.remove(1),
        lambda: lst.erase(1),
        lambda: lst.erase_if(lambda v: v == 1),
        lambda: lst.sort(key=lambda v: v),
    ):
        with pytest.raises(RuntimeError, match="no comparing"):
            op()
        assert state(lst) == before
    with pytest.raises(TypeError):
        List([1, "a"]).sort()
    with pytest.raises(ZeroDivisionError):
        lst.sort(key=lambda v: 1 / 0)
    assert state(lst) == before


def test_modification_during_comparisons_is_detected():
    lst = List([3, 1, 2])

    def key(v):
        if len(lst) == 3:
            lst.append(0)
        return v

    with pytest.raises(ValueError, match="modified during sort"):
        lst.sort(key=key)
    assert list(lst) == [3, 1, 2, 0]

    class Mutator:
        def __eq__(self, other):
            lst.clear()
            return True

    lst.append(Mutator())
    with pytest.raises(RuntimeError, match="mutated during iteration"):
        lst.erase(5)
    assert len(lst) == 0
    # As deque.remove: a change while comparing is an IndexError.
    lst.extend([1, Mutator()])
    with pytest.raises(IndexError, match="mutated during iteration"):
        lst.remove(5)
    assert len(lst) == 0
    lst.extend([1, 2, 3])
    with pytest.raises(ValueError, match="modified during erase_if"):
        lst.erase_if(lambda v: lst.append(v) or v == 2)
    assert list(lst) == [1, 2, 3, 1, 2, 3]


def test_iteration_sees_structural_changes_but_not_overwrites():
    lst = List([1, 2, 3], dtype="int64")
    for i, v in enumerate(lst):
        lst[i] = v * 10
    assert list(lst) == [10, 20, 30]
    it = iter(lst)
    next(it)
    lst.append(4)
    with pytest.raises(RuntimeError, match="mutated during iteration"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


# ---------------------------------------------------------------- the rest of the surface


def test_python_protocol():
    lst = List([1, 2, 2, 3], dtype="int64")
    assert repr(lst) == "List([1, 2, 2, 3], dtype='int64')"
    assert repr(List([0.5], dtype="float64")) == "List([0.5], dtype='float64')"
    assert (2 in lst, 2.0 in lst, "x" in lst, 9 in lst) == (True, True, False, False)
    assert (lst.count(2), lst.count(2.0), lst.index(3)) == (2, 2, 3)
    with pytest.raises(ValueError):
        lst.index(9)
    assert lst == List([1.0, 2.0, 2.0, 3.0], dtype="float64")
    assert lst != List([1, 2, 2], dtype="int64")
    assert lst != [1, 2, 2, 3]
    with pytest.raises(TypeError):
        hash(lst)
    lst.extendleft([0, -1])
    assert list(lst) == [-1, 0, 1, 2, 2, 3]
    assert (lst.front(), lst.back(), lst.dtype) == (-1, 3, "int64")
    assert lst.erase(2) == 2 and lst.unique() == 0
    assert bool(List()) is False


def test_threads_share_a_list():
    # What a List promises to threads: every push and pop is whole (none lost), and an
    # iteration either sees the list from end to end or, when another thread changed its
    # structure meanwhile, stops with RuntimeError("List mutated during iteration"), as
    # collections.deque does. Under the GIL a list() of an int64 List rarely meets a change;
    # with the GIL off (free-threaded CPython) it often does.
    pool = PoolAllocator()
    lst = List(dtype="int64", allocator=pool)
    errors = []
    popped = [[] for _ in range(4)]  # one list per thread

    def work(k):
        try:
            for i in range(2000):
                lst.push_back(i)
                if i % 3 == 0:
                    popped[k].append(lst.pop_front())
                if i % 500 == 0:
                    lst.sort()
                    try:
                        seen = list(lst)
                    except RuntimeError as e:
                        assert "mutated during iteration" in str(e), e
                    else:
                        assert all(0 <= v < 2000 for v in seen)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(lst) == 4 * (2000 - 667)
    assert live_blocks(pool) == len(lst)
    # Nothing lost, nothing duplicated: what is left and what was popped is what was pushed.
    assert sorted([*lst, *(v for vs in popped for v in vs)]) == sorted(list(range(2000)) * 4)
