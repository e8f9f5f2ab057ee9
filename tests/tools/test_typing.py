"""stlalloc.Allocator, the allocator protocol as a type, at run time.

Static checks (stubtest, the documented examples under mypy --strict and pyright) are
scripts/typecheck's; this checks the runtime side the stubs rely on.
"""

import pytest

import stlalloc
from stlalloc import Allocator


class PyAllocator:
    """The smallest allocator the protocol allows."""

    def __init__(self) -> None:
        self.pool = stlalloc.PoolAllocator()

    def allocate(self, n: int) -> int:
        return self.pool.allocate(n)

    def deallocate(self, p: int, n: int) -> None:
        self.pool.deallocate(p, n)


class OnlyAllocate:
    def allocate(self, n: int) -> int:
        return 0


def test_every_builtin_allocator_is_an_allocator() -> None:
    pool = stlalloc.PoolAllocator()
    builtins = [
        pool,
        stlalloc.MallocAllocator(),
        stlalloc.MonotonicAllocator(),
        stlalloc.TracingAllocator(pool),
        stlalloc.default_pool(),
    ]
    assert all(isinstance(a, Allocator) for a in builtins)


def test_isinstance_agrees_with_what_containers_accept() -> None:
    mine = PyAllocator()
    assert isinstance(mine, Allocator)
    v = stlalloc.Vector(range(3), dtype="int64", allocator=mine)
    assert v.get_allocator() is mine and isinstance(v.get_allocator(), Allocator)

    for bad in (OnlyAllocate(), object(), 42):
        assert not isinstance(bad, Allocator)
        with pytest.raises(TypeError):
            stlalloc.Vector(allocator=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            stlalloc.TracingAllocator(bad)  # type: ignore[arg-type]


def test_allocator_is_exported_and_every_export_exists() -> None:
    assert "Allocator" in stlalloc.__all__
    assert stlalloc.Allocator is Allocator
    assert all(hasattr(stlalloc, name) for name in stlalloc.__all__)
    assert len(set(stlalloc.__all__)) == len(stlalloc.__all__)
