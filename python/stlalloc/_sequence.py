"""Pickling and copying of ``Vector`` and ``List``, attached to both by the package.

- ``pickle`` keeps the values, the dtype, a List's ``maxlen``, the type (a subclass and its
  ``__dict__`` too) and the *kind* of allocator, not the allocator itself (an arena's
  addresses mean nothing in another process): a container over a ``MallocAllocator``
  comes back over a new ``MallocAllocator``; any other (a pool, a monotonic buffer, a
  user's allocator) comes back over ``default_pool()``. The values follow the object
  (pickle's list items), so a container holding itself round-trips.
- ``copy.copy`` and ``copy.deepcopy`` keep the allocator, as C++ copies keep a stateful
  allocator (SPEC §8), the type and a List's ``maxlen``; ``deepcopy`` copies the values too.
"""

from __future__ import annotations

import copy as _copy
from typing import Any

from stlalloc._native import List, MallocAllocator, Vector

# The helpers below work on either container (and their subclasses), so they are typed
# loosely; the stubs declare what users see (`__reduce__`, `__copy__`, `__deepcopy__`).


def _base(cls: type) -> Any:
    return Vector if issubclass(cls, Vector) else List


def _maxlen(seq: Any) -> int | None:
    """A List's ``maxlen`` (read from the base type, which a subclass cannot shadow)."""
    return List.maxlen.__get__(seq) if isinstance(seq, List) else None


def _empty(cls: type, dtype: str, allocator: Any, maxlen: int | None) -> Any:
    new = _base(cls).__new__(cls, dtype=dtype, allocator=allocator)
    if maxlen is not None:
        List.__init__(new, maxlen=maxlen)
    return new


def _restore(cls: type, dtype: str, over_malloc: bool, maxlen: int | None = None) -> Any:
    """An empty ``cls`` container; pickle then appends the values with ``extend``."""
    return _empty(cls, dtype, MallocAllocator() if over_malloc else None, maxlen)


def _state(seq: Any) -> dict[str, Any] | None:
    return getattr(seq, "__dict__", None) or None


def reduce(self: Any) -> tuple[Any, ...]:
    """``__reduce__``: see the module's notes."""
    over_malloc = isinstance(self.get_allocator(), MallocAllocator)
    values = list(_base(type(self)).__iter__(self))
    args = (type(self), self.dtype, over_malloc, _maxlen(self))
    return _restore, args, _state(self), iter(values)


def _empty_like(self: Any) -> Any:
    return _empty(type(self), self.dtype, self.get_allocator(), _maxlen(self))


def copy(self: Any) -> Any:
    """``__copy__``: the same values, type and allocator."""
    new = _empty_like(self)
    base = _base(type(self))
    base.extend(new, base.__iter__(self))
    state = _state(self)
    if state is not None:
        new.__dict__.update(state)
    return new


def deepcopy(self: Any, memo: dict[int, Any]) -> Any:
    """``__deepcopy__``: copies of the values, the same type and allocator."""
    new = _empty_like(self)
    memo[id(self)] = new
    base = _base(type(self))
    base.extend(new, [_copy.deepcopy(x, memo) for x in base.__iter__(self)])
    state = _state(self)
    if state is not None:
        new.__dict__.update(_copy.deepcopy(state, memo))
    return new


def attach() -> None:
    cls: Any
    for cls in (Vector, List):
        cls.__reduce__ = reduce
        cls.__copy__ = copy
        cls.__deepcopy__ = deepcopy
