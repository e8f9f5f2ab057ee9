"""``List``'s ``maxlen``, as ``deque`` has it: every operation on a bounded List leaves it
equal to a ``deque`` given the same operations, with ``len <= maxlen``; what goes past the
bound is freed (node and value) before the call returns."""

import copy
import pickle
import weakref
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stlalloc import List, MallocAllocator, PoolAllocator

DTYPES = ["int64", "float64", "object"]


def same(c: List, d: deque) -> None:
    assert list(c) == list(d)
    assert c.maxlen == d.maxlen
    assert len(c) == len(d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deques_maxlen_walkthrough(dtype):
    """test_deque's test_maxlen, but for its repr (List's names the dtype)."""
    it = iter(range(10))
    c = List(it, maxlen=3, dtype=dtype)
    assert list(it) == []
    assert list(c) == [7, 8, 9]
    assert repr(c) == f"List({list(c)!r}, dtype='{dtype}', maxlen=3)"
    assert c == List(range(10), 3, dtype=dtype)
    c.append(10)
    assert list(c) == [8, 9, 10]
    c.appendleft(7)
    assert list(c) == [7, 8, 9]
    c.extend([10, 11])
    assert list(c) == [9, 10, 11]
    c.extendleft([8, 7])
    assert list(c) == [7, 8, 9]
    c.push_back(10)
    c.push_front(6)
    assert list(c) == [6, 8, 9]
    assert "maxlen" not in repr(List(range(3), maxlen=None, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("maxlen", [1, 2, 5])
def test_a_list_fills_up_to_maxlen_then_drops_one_per_push(dtype, maxlen):
    for push, end in (("append", -1), ("appendleft", 0), ("push_back", -1), ("push_front", 0)):
        c = List(maxlen=maxlen, dtype=dtype)
        d = deque(maxlen=maxlen)
        for i in range(3 * maxlen):
            getattr(c, push)(i)
            (d.append if end == -1 else d.appendleft)(i)
            assert len(c) == min(i + 1, maxlen)
            assert list(c) == list(d)


def test_self_holding_bounded_list_repr():
    c = List(range(200), maxlen=10)
    c.append(c)
    assert repr(c).endswith(", 198, 199, [...]], dtype='object', maxlen=10)")


@pytest.mark.parametrize("make", [List, lambda it=(): List(it, dtype="int64")])
def test_maxlen_zero_takes_and_drops_everything(make):
    for fill in (lambda c, it: c.extend(it), lambda c, it: c.extendleft(it)):
        it = iter(range(100))
        c = make()
        c.__init__(maxlen=0)
        fill(c, it)
        assert list(it) == [] and len(c) == 0
    c = make()
    c.__init__(range(5), 0)
    c.append(1)
    c.appendleft(2)
    assert len(c) == 0 and c.maxlen == 0
    with pytest.raises(IndexError, match="maximum size"):
        c.insert(0, 1)
    with pytest.raises(IndexError):
        c.pop()


def test_maxlen_attribute_is_read_only():
    c = List("abc", maxlen=4)
    assert (List().maxlen, List("abc").maxlen, c.maxlen, List("abc", 0).maxlen) == (
        None,
        None,
        4,
        0,
    )
    with pytest.raises(AttributeError):
        c.maxlen = 10
    with pytest.raises(AttributeError):
        del c.maxlen
    assert c.maxlen == 4


@pytest.mark.parametrize(
    ("maxlen", "error"),
    [(-1, ValueError), (-(2**70), OverflowError), (2**70, OverflowError), ("3", TypeError),
     (1.0, TypeError)],
)  # fmt: skip
def test_bad_maxlen_raises_and_changes_nothing(maxlen, error):
    with pytest.raises(error):
        deque([], maxlen)  # the same exception as deque's
    with pytest.raises(error):
        List("abc", maxlen)
    c = List("abc", maxlen=5)
    with pytest.raises(error):
        c.__init__("xy", maxlen)
    assert list(c) == ["a", "b", "c"] and c.maxlen == 5


def test_failed_init_keeps_the_old_maxlen():
    c = List([1, 2], maxlen=5, dtype="int64")
    with pytest.raises(TypeError):
        c.__init__([1, "x"], 1)
    assert list(c) == [1, 2] and c.maxlen == 5


def test_insert_into_a_full_list_raises_and_changes_nothing():
    c = List("ABC", maxlen=3)
    with pytest.raises(IndexError, match="List already at its maximum size"):
        c.insert(2, None)
    assert list(c) == ["A", "B", "C"]
    c = List("ABC", maxlen=4)
    c.insert(1, "Z")
    assert list(c) == ["A", "Z", "B", "C"]


class Sub(List):
    pass


@pytest.mark.parametrize("maxlen", [None, 0, 1, 3, 100])
@pytest.mark.parametrize("allocator", [None, MallocAllocator])
def test_copies_and_pickles_keep_maxlen(maxlen, allocator):
    alloc = allocator() if allocator else None
    c = Sub(range(5), maxlen, dtype="int64", allocator=alloc)
    c.tag = "kept"
    d = deque(range(5), maxlen)
    for other in (
        c.copy(),
        copy.copy(c),
        copy.deepcopy(c),
        pickle.loads(pickle.dumps(c)),
        c[:],
        c + List([7], dtype="int64"),
        c * 2,
        2 * c,
    ):
        assert other.maxlen == maxlen
        assert other.dtype == "int64"
    assert list(c + List([7])) == list(d + deque([7]))
    assert list(c * 3) == list(d * 3)
    for other in (copy.copy(c), copy.deepcopy(c), pickle.loads(pickle.dumps(c))):
        assert type(other) is Sub and other.tag == "kept"
        assert list(other) == list(c)


def test_pickles_of_a_bounded_list_holding_itself():
    c = List("abc", 3)
    c.append(c)
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        e = pickle.loads(pickle.dumps(c, proto))
        assert e[-1] is e and e.maxlen == 3 and list(e)[:2] == ["b", "c"]


def test_evicted_values_are_released_at_once_and_may_use_the_list():
    seen = []

    class Box:
        def __del__(self):
            seen.append(list(c))
            c.appendleft("from __del__")  # evicts the back, an int: no recursion

    c = List(maxlen=2)
    c.append(Box())
    r = weakref.ref(c[0])
    c.append(1)
    c.append(2)  # evicts the Box, whose __del__ runs before append returns
    assert r() is None
    assert seen == [[1, 2]]
    assert list(c) == ["from __del__", 1]


def held(a):
    return a.stats().live_bytes


@pytest.mark.parametrize("dtype", DTYPES)
def test_evicted_nodes_are_freed(dtype):
    pool = PoolAllocator()
    c = List(maxlen=4, dtype=dtype, allocator=pool)
    node = c.node_size()
    for i in range(100):
        c.append(i)
        c.appendleft(-i)
        assert held(pool) == len(c) * node
    c.extend(range(50))
    c.extendleft(range(50))
    c *= 3
    assert held(pool) == len(c) * node == 4 * node
    c.__init__(range(10), 2)
    assert held(pool) == 2 * node and c.maxlen == 2
    del c
    assert held(pool) == 0


VALUES = st.integers(-(2**40), 2**40)
OPS = st.one_of(
    st.tuples(st.just("append"), VALUES),
    st.tuples(st.just("appendleft"), VALUES),
    st.tuples(st.just("extend"), st.lists(VALUES, max_size=8)),
    st.tuples(st.just("extendleft"), st.lists(VALUES, max_size=8)),
    st.tuples(st.just("pop"), st.none()),
    st.tuples(st.just("popleft"), st.none()),
    st.tuples(st.just("insert"), st.tuples(st.integers(-6, 6), VALUES)),
    st.tuples(st.just("imul"), st.integers(-1, 3)),
    st.tuples(st.just("iadd"), st.lists(VALUES, max_size=8)),
    st.tuples(st.just("rotate"), st.integers(-5, 5)),
    st.tuples(st.just("init"), st.tuples(st.lists(VALUES, max_size=8), st.integers(-1, 6))),
    st.tuples(st.just("setitem"), st.tuples(st.integers(-6, 6), VALUES)),
)


def apply(c, op, arg):
    """Runs one operation on a List or a deque: its result or its exception's type."""
    try:
        if op in ("append", "appendleft", "extend", "extendleft", "rotate"):
            getattr(c, op)(arg)
        elif op in ("pop", "popleft"):
            return getattr(c, op)()
        elif op == "insert":
            c.insert(*arg)
        elif op == "imul":
            c *= arg
        elif op == "iadd":
            c += arg
        elif op == "init":
            items, maxlen = arg
            c.__init__(items, None if maxlen < 0 else maxlen)
        elif op == "setitem":
            c[arg[0]] = arg[1]
    except (IndexError, ValueError) as e:
        return type(e)
    return None


@pytest.mark.parametrize("dtype", ["int64", "object"])
@settings(max_examples=150, deadline=None)
@given(maxlen=st.one_of(st.none(), st.integers(0, 5)), ops=st.lists(OPS, max_size=30))
def test_a_bounded_list_behaves_as_a_deque(dtype, maxlen, ops):
    pool = PoolAllocator()
    c = List([], maxlen, dtype=dtype, allocator=pool)
    d = deque([], maxlen)
    for op, arg in ops:
        assert apply(c, op, arg) == apply(d, op, arg), (op, arg)
        same(c, d)
        assert held(pool) == len(c) * c.node_size()
        assert d.maxlen is None or len(c) <= d.maxlen
    again = pickle.loads(pickle.dumps(c))
    assert list(again) == list(d) and again.maxlen == d.maxlen
