"""The fast entry points of the containers' hot methods (issue #14).

A positional call takes the fast path when it has the arguments the fast path serves; a
keyword call (or any other shape) always takes PyO3's wrapper, which the fast path falls
back on. Each case is made both ways on twin containers: same result or same exception
type and message, same contents after.
"""

import gc
import inspect
import weakref

import numpy as np
import pytest

from stlalloc import List, MallocAllocator, PoolAllocator, Vector


class Int(int):
    pass


class Index:
    def __index__(self):
        return 1


def outcome(call):
    try:
        return ("ok", call())
    except Exception as e:  # noqa: BLE001 - the exception is what is compared
        return (type(e), str(e))


DTYPES = ["int64", "float64", "object"]
VALUES = [0, -1, 2**62, 2**63, -(2**63) - 1, 2**70, True, 1.5, float("nan"), "x", None,
          Int(3), np.int64(4), Index(), object]  # fmt: skip
ALLOCATORS = [PoolAllocator, MallocAllocator, lambda: PoolAllocator(debug=True)]


def twins(cls, dtype, items=(1, 2, 3)):
    return cls(items, dtype=dtype), cls(items, dtype=dtype)


def same(a, b):
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("cls", "name"),
    [(List, "push_back"), (List, "append"), (List, "push_front"), (List, "appendleft"),
     (Vector, "push_back"), (Vector, "append")],
)  # fmt: skip
@pytest.mark.parametrize("x", VALUES, ids=repr)
def test_push_positional_and_keyword_agree(cls, name, dtype, x):
    fast, slow = twins(cls, dtype)
    first = outcome(lambda: getattr(fast, name)(x))
    second = outcome(lambda: getattr(slow, name)(x=x))
    assert first == second
    assert len(fast) == len(slow)
    assert all(same(a, b) for a, b in zip(fast, slow, strict=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("cls", "name", "end"),
    [(List, "pop", -1), (List, "pop_back", -1), (List, "popleft", 0), (List, "pop_front", 0),
     (Vector, "pop", -1), (Vector, "pop_back", -1)],
)  # fmt: skip
def test_pops_serve_and_raise(cls, name, end, dtype):
    c = cls([1, 2, 3], dtype=dtype)
    expect = list(c)
    while expect:
        assert same(getattr(c, name)(), expect.pop(end))
        assert list(c) == expect
    first = outcome(lambda: getattr(c, name)())
    assert first[0] is IndexError
    # The wrapper judges every other shape, with PyO3's messages.
    assert outcome(lambda: getattr(c, name)(x=1))[0] is TypeError


INDICES = [0, 1, -1, -4, 3, 2**63, -(2**70), True, Int(1), np.int64(1), Index(), 1.0, "1",
           None]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("i", INDICES, ids=repr)
def test_vector_pop_index_positional_and_keyword_agree(dtype, i):
    fast, slow = twins(Vector, dtype, (1, 2, 3, 4))
    first = outcome(lambda: fast.pop(i))
    second = outcome(lambda: slow.pop(i=i))
    assert first == second
    assert list(fast) == list(slow)


@pytest.mark.parametrize(
    "call",
    [lambda c: c.push_back(), lambda c: c.push_back(1, 2), lambda c: c.append(1, x=1),
     lambda c: c.append(y=1), lambda c: c.pop_back(1), lambda c: c.pop(1, 2)],
)  # fmt: skip
@pytest.mark.parametrize("cls", [List, Vector])
def test_wrong_argument_counts_raise_type_error_and_change_nothing(cls, call):
    c = cls([1, 2], dtype="int64")
    with pytest.raises(TypeError):
        call(c)
    assert list(c) == [1, 2]


def test_list_pop_takes_no_index():
    c = List([1, 2])
    with pytest.raises(TypeError):
        c.pop(0)
    assert list(c) == [1, 2]


def held(a):
    st = a.stats()
    return st.live_bytes + getattr(st, "large_live_bytes", 0)


@pytest.mark.parametrize("make", ALLOCATORS)
@pytest.mark.parametrize("cls", [List, Vector])
def test_fast_paths_over_every_allocator(cls, make):
    a = make()
    c = cls(dtype="int64", allocator=a)
    for i in range(1000):
        c.push_back(i)
        c.append(-i)
    assert len(c) == 2000 and held(a) > 0
    while len(c):
        c.pop()
    if cls is Vector:
        c.shrink_to_fit()
    assert held(a) == 0


def test_objects_are_released_at_once():
    """A value dropped on the fast path is released now, not deferred."""

    class Box:
        pass

    c = List()
    b = Box()
    r = weakref.ref(b)
    c.append(b)
    del b
    assert r() is not None
    c.pop()
    assert r() is None
    v = Vector()
    b = Box()
    r = weakref.ref(b)
    v.append(b)
    del b
    v.pop()
    assert r() is None


@pytest.mark.parametrize("cls", [List, Vector])
def test_a_failed_push_releases_its_value_at_once(cls):
    """The value a failed push converted is released before the error reaches Python."""

    class Box:
        pass

    c = cls(allocator=MallocAllocator(limit=0))
    b = Box()
    r = weakref.ref(b)
    with pytest.raises(MemoryError):
        c.append(b)
    del b
    assert r() is None
    assert len(c) == 0


@pytest.mark.parametrize("cls", [List, Vector])
def test_unbound_calls_check_the_receiver(cls):
    c = cls(dtype="int64")
    cls.push_back(c, 1)
    assert cls.pop(c) == 1
    other = Vector if cls is List else List
    with pytest.raises(TypeError):
        cls.push_back(other(), 1)
    with pytest.raises(TypeError):
        cls.pop(PoolAllocator())
    with pytest.raises(TypeError):
        cls.push_back()


@pytest.mark.parametrize(
    ("cls", "names"),
    [(List, ["push_back", "append", "push_front", "appendleft", "pop", "pop_back",
             "popleft", "pop_front"]),
     (Vector, ["push_back", "append", "pop", "pop_back"])],
)  # fmt: skip
def test_signatures_and_docs_are_kept(cls, names):
    for name in names:
        method = getattr(cls, name)
        assert method.__name__ == name
        assert method.__qualname__ == f"{cls.__name__}.{name}"
        assert str(inspect.signature(method)).startswith("(self")
    assert cls.push_back.__doc__


def subclassable(cls):
    try:
        type("Sub", (cls,), {})
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("cls", [List, Vector])
def test_subclass_overrides_win_and_inherited_methods_stay_fast(cls):
    if not subclassable(cls):
        pytest.skip(f"{cls.__name__} is not subclassable yet (issue #14's other half)")
    calls = []

    class Logged(cls):
        def append(self, x):
            calls.append(x)
            super().append(x * 10)

    c = Logged(dtype="int64")
    c.append(1)
    c.push_back(2)
    assert calls == [1]
    assert list(c) == [10, 2]
    assert c.pop() == 2
    gc.collect()


# `c[i]`, `c[i] = x` and `len(c)` go through the type's slots, which the fast path fills;
# the type's `__getitem__`, `__setitem__` and `__len__` wrappers keep PyO3's functions.


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", [List, Vector])
@pytest.mark.parametrize("i", INDICES, ids=repr)
def test_subscript_slot_and_wrapper_agree(cls, dtype, i):
    fast, slow = twins(cls, dtype, (1, 2, 3, 4))
    first = outcome(lambda: fast[i])
    second = outcome(lambda: cls.__getitem__(slow, i))
    assert first == second


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", [List, Vector])
@pytest.mark.parametrize("i", INDICES, ids=repr)
@pytest.mark.parametrize("x", [7, 2**63, 1.5, "x", None], ids=repr)
def test_assignment_slot_and_wrapper_agree(cls, dtype, i, x):
    fast, slow = twins(cls, dtype, (1, 2, 3, 4))

    def assign():
        fast[i] = x

    first = outcome(assign)
    second = outcome(lambda: cls.__setitem__(slow, i, x))
    assert first == second
    assert list(fast) == list(slow)


@pytest.mark.parametrize("cls", [List, Vector])
def test_deletion_and_slices_take_the_wrapper(cls):
    c = cls(range(6), dtype="int64")
    del c[0]
    assert list(c) == [1, 2, 3, 4, 5]
    with pytest.raises(TypeError):
        del c["0"]
    if cls is Vector:
        assert list(c[1:3]) == [2, 3]
        c[0:2] = [9]
        assert list(c) == [9, 3, 4, 5]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", [List, Vector])
def test_len_slot_and_wrapper_agree(cls, dtype):
    c = cls(dtype=dtype)
    for n in range(5):
        assert len(c) == cls.__len__(c) == n
        c.append(n)
    assert bool(c) and not bool(cls(dtype=dtype))


def test_replaced_object_is_released_at_once():
    class Box:
        pass

    for cls in (List, Vector):
        c = cls([Box()])
        r = weakref.ref(c[0])
        c[0] = 1
        assert r() is None


@pytest.mark.parametrize("cls", [List, Vector])
def test_replaced_object_finalizer_may_use_the_container(cls):
    """The replaced object is released after the container is unlocked: its ``__del__``
    may read and write the container, and runs before ``c[i] = x`` returns."""
    seen = []

    class Box:
        def __del__(self):
            seen.append(list(c))
            c[1] = "from __del__"

    c = cls([Box(), 0])
    c[0] = "new"
    assert seen == [["new", 0]]
    assert list(c) == ["new", "from __del__"]
