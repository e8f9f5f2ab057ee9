"""Vector and List as complete Python sequences (SPEC §5), beyond CPython's own suites
(test_cpython_sequences.py): what is particular to these containers — dtypes, allocators
kept or chosen on pickling, the C++ names beside the Python ones."""

import copy
import gc
import operator
import pickle
import re
import weakref
from pathlib import Path

import pytest

from stlalloc import List, MallocAllocator, PoolAllocator, Vector, default_pool

KINDS = [Vector, List]
DTYPES = ["int64", "float64", "object"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pickle_keeps_values_dtype_and_kind_of_allocator(kind, dtype):
    pool = PoolAllocator()
    malloc = MallocAllocator()
    for allocator, comes_back_over in ((pool, default_pool()), (malloc, None)):
        c = kind([1, 2, 3], dtype=dtype, allocator=allocator)
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            back = pickle.loads(pickle.dumps(c, proto))
            assert type(back) is kind and back.dtype == dtype
            assert list(back) == [1, 2, 3] and back == c
            if comes_back_over is None:
                # Over a MallocAllocator: a new one (any frees any other's blocks).
                assert isinstance(back.get_allocator(), MallocAllocator)
            else:
                assert back.get_allocator() is comes_back_over


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_of_a_container_holding_itself(kind):
    c = kind([1, "a"])
    c.append(c)
    back = pickle.loads(pickle.dumps(c))
    assert back[2] is back and back[0] == 1 and back[1] == "a"


class Tagged(Vector):
    pass


class TaggedList(List):
    pass


@pytest.mark.parametrize("sub", [Tagged, TaggedList])
def test_subclasses_keep_type_and_attributes_through_pickle_and_copy(sub):
    pool = PoolAllocator()
    c = sub([1, 2], dtype="int64", allocator=pool)
    c.tag = ["x"]
    back = pickle.loads(pickle.dumps(c))
    assert type(back) is sub and back.tag == ["x"] and list(back) == [1, 2]
    shallow = copy.copy(c)
    assert type(shallow) is sub and shallow.tag is c.tag
    assert shallow.get_allocator() is pool and shallow.dtype == "int64"
    deep = copy.deepcopy(c)
    assert type(deep) is sub and deep.tag == c.tag and deep.tag is not c.tag
    assert deep.get_allocator() is pool
    # As for list: the results of +, *, slicing and .copy() are the base type.
    base = Vector if sub is Tagged else List
    for result in (c + c, c * 2, 2 * c, c[:], c.copy()):
        assert type(result) is base
        assert result.get_allocator() is pool and result.dtype == "int64"


@pytest.mark.parametrize("kind", KINDS)
def test_copies_keep_the_allocator(kind):
    pool = PoolAllocator()
    inner = [1]
    c = kind([inner], allocator=pool)
    shallow, deep = copy.copy(c), copy.deepcopy(c)
    assert shallow.get_allocator() is pool and deep.get_allocator() is pool
    assert shallow[0] is inner and deep[0] == inner and deep[0] is not inner
    c.append(c)
    deep = copy.deepcopy(c)
    assert deep[1] is deep


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ordering_is_lexicographic(kind, dtype):
    samples = [[], [0], [1], [0, 1], [1, 0], [0, 0, 0], [2]]
    for a in samples:
        for b in samples:
            for op in (operator.lt, operator.le, operator.gt, operator.ge, operator.eq):
                x, y = kind(a, dtype=dtype), kind(b, dtype=dtype)
                assert op(x, y) == op(a, b), (op, a, b)


def test_vector_orders_against_lists_and_list_against_lists_only():
    assert Vector([1, 2]) < [1, 3] and [1, 3] > Vector([1, 2])
    assert List([1]) != [1]
    with pytest.raises(TypeError):
        assert List([1]) < [2]
    with pytest.raises(TypeError):
        List([1]) + [2]
    assert Vector([1]) + [2] == [1, 2]


@pytest.mark.parametrize("kind", KINDS)
def test_repetition_and_concatenation(kind):
    pool = PoolAllocator()
    c = kind([1, 2], dtype="int64", allocator=pool)
    assert list(c * 3) == [1, 2] * 3 and list(-1 * c) == []
    assert list(c + kind([3], dtype="object")) == [1, 2, 3]
    with pytest.raises(TypeError):
        c + kind(["x"])  # converted to the left operand's dtype
    with pytest.raises(TypeError):
        c * "x"
    with pytest.raises(TypeError):
        c *= 1.5
    with pytest.raises(OverflowError):
        c * 2**100
    with pytest.raises(MemoryError):
        c * (2**62)
    assert list(c) == [1, 2]
    same = c
    c *= 2
    assert c is same and list(c) == [1, 2, 1, 2]
    c += [5]
    assert list(c) == [1, 2, 1, 2, 5]
    c *= 0
    assert len(c) == 0 and c.get_allocator() is pool


@pytest.mark.parametrize("kind", KINDS)
def test_init_replaces_contents_but_not_dtype_or_allocator(kind):
    pool = PoolAllocator()
    c = kind([1, 2], dtype="int64", allocator=pool)
    c.__init__([3])
    assert list(c) == [3]
    c.__init__([4], dtype="int64", allocator=pool)
    assert list(c) == [4]
    with pytest.raises(ValueError, match="dtype"):
        c.__init__([5], dtype="float64")
    with pytest.raises(ValueError, match="allocator"):
        c.__init__([5], allocator=PoolAllocator())
    with pytest.raises(TypeError):
        c.__init__(["x"])
    assert list(c) == [4]
    with pytest.raises(TypeError):
        kind([1], unknown=1)


@pytest.mark.parametrize("kind", KINDS)
def test_weak_references(kind):
    c = kind([1])
    ref = weakref.ref(c)
    assert ref() is c
    del c
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backwards", [False, True])
def test_exhausted_iterators_let_go(kind, backwards):
    c = kind([1, 2])
    ref = weakref.ref(c)
    it = reversed(c) if backwards else iter(c)
    del c
    assert ref() is not None
    assert len(list(it)) == 2
    assert ref() is None  # without a collection: the iterator dropped its reference
    assert list(it) == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_remove_is_pythons_erase_is_cpps(kind, dtype):
    c = kind([1, 2, 1, 3, 1], dtype=dtype)
    assert c.remove(1) is None
    assert list(c) == [2, 1, 3, 1]
    with pytest.raises(ValueError):
        c.remove(9)
    assert c.erase(1) == 2 and list(c) == [2, 3]
    assert c.erase(9) == 0 and c.erase(2**70) == 0
    assert c.erase_if(lambda v: v > 2) == 1 and list(c) == [2]
    with pytest.raises(ZeroDivisionError):
        c.erase_if(lambda v: 1 / 0)
    assert list(c) == [2]


def test_erase_if_refuses_a_vector_changed_by_its_predicate():
    v = Vector([1, 2, 3])
    with pytest.raises(ValueError, match="modified during erase_if"):
        v.erase_if(lambda x: v.append(x) or x == 2)
    assert list(v) == [1, 2, 3, 1, 2, 3]


def test_list_index_takes_start_and_stop():
    lst = List("abcabc")
    assert (lst.index("a"), lst.index("a", 1), lst.index("c", -2, 6)) == (0, 3, 5)
    with pytest.raises(ValueError):
        lst.index("a", 1, 3)
    assert lst.index("b", -(2**100), 2**100) == 1
    ints = List([5, 6, 5], dtype="int64")
    assert ints.index(5, 1) == 2 and ints.index(5, 0, 1) == 0
    with pytest.raises(ValueError):
        ints.index(6, 2)


def test_list_slices_are_new_lists_over_the_same_allocator():
    pool = PoolAllocator()
    lst = List(range(6), dtype="int64", allocator=pool)
    part = lst[1:5:2]
    assert list(part) == [1, 3] and part.get_allocator() is pool
    assert list(lst[::-1]) == [5, 4, 3, 2, 1, 0]
    with pytest.raises(ValueError):
        lst[::0]


DOC = Path(__file__).resolve().parents[2] / "docs" / "containers.md"


@pytest.mark.skipif(not DOC.exists(), reason="run from a source checkout")
def test_containers_doc_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "the containers doc has its example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)


def test_list_rotate_relinks_the_same_nodes():
    lst = List(range(5), dtype="int64")
    nodes = sorted(lst.node_addresses())
    lst.rotate(2)
    assert list(lst) == [3, 4, 0, 1, 2] and sorted(lst.node_addresses()) == nodes
    lst.rotate(-7)
    assert list(lst) == [0, 1, 2, 3, 4]
    it = iter(lst)
    lst.rotate()
    with pytest.raises(RuntimeError, match="mutated during iteration"):
        next(it)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("walk", [iter, reversed])
def test_iterators_pickle_with_their_container(kind, walk):
    c = kind(range(5), dtype="int64")
    it = walk(c)
    next(it)
    it2, c2 = pickle.loads(pickle.dumps((it, c)))
    assert type(it2) is type(it) and c2 == c
    c2[2] = 20  # the copy iterates the copied container
    assert list(it2) == list(walk([0, 1, 20, 3, 4]))[1:]
    assert list(it) == list(walk(range(5)))[1:]
    back = pickle.loads(pickle.dumps(it))  # exhausted: over an empty container
    assert type(back) is type(it) and list(back) == []
