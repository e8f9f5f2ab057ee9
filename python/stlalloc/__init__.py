"""stlalloc: the allocators of SGI STL 3.3 (``stl_alloc.h``), in Rust, for Python.

- :class:`MallocAllocator`: the first level, ``malloc`` with SGI's out-of-memory handler loop;
- :class:`PoolAllocator`: the second level, SGI's free lists over an ``mmap``'d arena;
- :func:`default_pool`: the process-wide pool, SGI's ``alloc``;
- :class:`Vector`: ``std::vector`` over any of them, a ``MutableSequence``;
- :class:`List`: ``std::list``, one node per element from any of those allocators;
- :class:`MonotonicAllocator`: ``std::pmr::monotonic_buffer_resource``, a pure break pointer;
- :class:`TracingAllocator`: any allocator, every call recorded as an :class:`AllocatorEvent`;
- the allocator protocol: any object with ``allocate(n)`` and ``deallocate(p, n)`` can back
  a container (:class:`Allocator` types it); :mod:`stlalloc.testing` checks it against the
  C++ allocator requirements;
- :func:`render`: a pool's arena drawn block by block, also ``PoolAllocator.render``;
- :func:`install` / :func:`uninstall`: the SGI pool as CPython's own object allocator
  (``python -m stlalloc run`` runs a whole program so; docs/object-domain.md);
- :mod:`stlalloc.probe`: live evidence of how glibc ``malloc`` uses ``brk`` and ``mmap``.
"""

from collections.abc import MutableSequence

from stlalloc import _sequence
from stlalloc._allocator import Allocator
from stlalloc._native import (
    DEFAULT_ARENA_SIZE,
    AllocatorError,
    AllocatorEvent,
    List,
    MallocAllocator,
    MallocStats,
    MonotonicAllocator,
    MonotonicStats,
    PoolAllocator,
    PoolStats,
    TracingAllocator,
    Vector,
    default_pool,
    install,
    object_domain_stats,
    uninstall,
)
from stlalloc._render import render, render_method

__all__ = [
    "DEFAULT_ARENA_SIZE",
    "Allocator",
    "AllocatorError",
    "AllocatorEvent",
    "List",
    "MallocAllocator",
    "MallocStats",
    "MonotonicAllocator",
    "MonotonicStats",
    "PoolAllocator",
    "PoolStats",
    "TracingAllocator",
    "Vector",
    "default_pool",
    "install",
    "object_domain_stats",
    "render",
    "uninstall",
]

MutableSequence.register(Vector)
# Pickling and copying are written once, in Python, for both containers (`_sequence`).
_sequence.attach()
# The extension returns the layout and the package draws it: the binding imports nothing
# from the package, and `pool.render()` is `render(pool)`.
PoolAllocator.render = render_method  # type: ignore[method-assign]

# `stlalloc.probe` (SPEC §6) and `stlalloc.testing` (§8) load on first use: importing
# stlalloc stays cheap, and `stlalloc.probe` works without importing it by name.
_SUBMODULES = ("probe", "testing")


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"stlalloc.{name}")
    raise AttributeError(f"module 'stlalloc' has no attribute {name!r}")
