"""``List``'s two iterator types, as ``deque`` has them: ``iter(l)`` is a ``ListIterator``,
``reversed(l)`` a ``ListReverseIterator`` (its subclass), and each type called with a List
makes the iterator ``iter`` or ``reversed`` would."""

import gc
import pickle

import pytest

from stlalloc import List, PoolAllocator, Vector
from stlalloc._native import ListIterator, ListReverseIterator

DTYPES = ["int64", "float64", "object"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_each_type_makes_its_own_iterator(dtype):
    c = List(range(2000), dtype=dtype)
    assert type(iter(c)) is ListIterator
    assert type(reversed(c)) is ListReverseIterator
    assert issubclass(ListReverseIterator, ListIterator)
    assert list(type(iter(List()))(c)) == list(range(2000))
    assert list(type(reversed(List()))(c)) == list(range(1999, -1, -1))
    assert list(ListReverseIterator(List(dtype=dtype))) == []


@pytest.mark.parametrize("cls", [ListIterator, ListReverseIterator])
@pytest.mark.parametrize(
    "args", [(), (Vector([1]),), ([1],), (iter(List([1])),), (List([1]), 0)], ids=repr
)
def test_anything_but_one_list_is_a_type_error(cls, args):
    with pytest.raises(TypeError):
        cls(*args)
    with pytest.raises(TypeError):
        cls(list=List([1]))  # positional only, as deque's


def test_constructed_iterators_behave_as_made_by_iter_and_reversed():
    c = List("abcd")
    it = ListReverseIterator(c)
    assert next(it) == "d"
    back = pickle.loads(pickle.dumps(it))
    assert type(back) is ListReverseIterator and list(back) == ["c", "b", "a"]
    c.append("e")
    with pytest.raises(RuntimeError):
        next(it)
    assert list(c) == ["a", "b", "c", "d", "e"]


def test_a_reverse_iterator_in_a_cycle_is_collected():
    pool = PoolAllocator()
    c = List(range(3), allocator=pool)
    c.append(ListReverseIterator(c))
    c.append(reversed(c))
    del c
    gc.collect()
    assert pool.stats().live_bytes == 0
