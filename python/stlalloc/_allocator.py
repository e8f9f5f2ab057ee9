"""The allocator protocol of SPEC §8 as a type: what ``allocator=`` and ``TracingAllocator``
accept.

The extension checks the same two methods when it is handed an object (and validates every
address it returns); this Protocol lets type checkers check them before the program runs,
and ``isinstance(obj, Allocator)`` check their presence at run time. The parameters are
positional-only because the extension calls them positionally: an implementation may name
them as it likes. ``deallocate``'s result is ignored, hence ``object``.
"""

from typing import Protocol, runtime_checkable


@runtime_checkable
class Allocator(Protocol):
    """Any object with ``allocate(n) -> int`` and ``deallocate(p, n)``, the built-in
    allocators included."""

    def allocate(self, n: int, /) -> int: ...

    def deallocate(self, p: int, n: int, /) -> object: ...
