"""The C++ allocator requirements as a runnable conformance check, for any allocator.

``check_allocator(alloc)`` exercises ``alloc`` — a built-in allocator or any object with
``allocate(n) -> int`` and ``deallocate(p, n)`` — and checks, in this order:

1. ``allocate returns an address``: an ``int`` (not 0, ``n > 0``);
2. ``blocks of the asked size``: all ``n`` bytes of ``[p, p+n)`` lie inside a live block of a
   built-in allocator that no container holds, and take writes;
3. ``aligned to the allocator's promise``: ``p % alignment == 0``, the promise being the
   ``alignment`` attribute, else ``align``, else 8;
4. ``never overlapping while live``;
5. ``contents kept until freed``: what was written to a block reads back until it is freed,
   whatever else is allocated and freed meanwhile;
6. ``deallocate of every block accepted``: no ``deallocate`` of a live block raises;
7. ``reallocate keeps the contents`` (only if ``alloc`` has ``reallocate``): the first
   ``min(old, new)`` bytes move with the block, and the new block meets 1–4;
8. ``equality reflexive and symmetric``: ``a == a``, ``not a != a``, ``(a == b) == (b == a)``
   for other allocators ``b``, and equal allocators hash alike;
9. ``misuse rejected``: a double free and a foreign pointer raise (an ``AllocatorError`` for
   built-ins, which must also stay unchanged: same ``stats()``). This requirement is
   *optional* for user allocators — C++ makes misuse undefined behaviour — and is checked
   for them only with ``misuse=True``; by default it is listed in ``Report.skipped``.

Memory is only ever written through views of blocks a built-in allocator confirms as live
and that neither a container holds nor a pool uses itself (``stlalloc._native._block_view``),
so a broken allocator that hands out wild addresses fails requirement 2 instead of
corrupting the process.

The first broken requirement raises ``AssertionError("<requirement>: <what happened>")``;
otherwise a :class:`Report` says what was checked, with figures.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any

from stlalloc import _native

ADDRESS = "allocate returns an address"
SIZE = "blocks of the asked size"
ALIGNED = "aligned to the allocator's promise"
DISJOINT = "never overlapping while live"
CONTENTS = "contents kept until freed"
DEALLOCATE = "deallocate of every block accepted"
REALLOCATE = "reallocate keeps the contents"
EQUALITY = "equality reflexive and symmetric"
MISUSE = "misuse rejected"

REQUIREMENTS = (
    ADDRESS,
    SIZE,
    ALIGNED,
    DISJOINT,
    CONTENTS,
    DEALLOCATE,
    REALLOCATE,
    EQUALITY,
    MISUSE,
)

_BUILTINS = (
    _native.PoolAllocator,
    _native.MallocAllocator,
    _native.MonotonicAllocator,
    _native.TracingAllocator,
)

DEFAULT_SIZES = (1, 8, 13, 24, 64, 100, 128, 129, 1000, 4096)


@dataclass(frozen=True)
class Report:
    """What ``check_allocator`` checked, and how much it allocated doing so."""

    allocator: str
    alignment: int
    checked: tuple[str, ...]
    skipped: tuple[str, ...]
    allocations: int
    deallocations: int
    reallocations: int
    bytes_allocated: int
    peak_live_blocks: int
    peak_live_bytes: int


class _Broken(AssertionError):
    pass


def _fail(requirement: str, detail: str) -> _Broken:
    return _Broken(f"{requirement}: {detail}")


def _pattern(p: int, n: int, salt: int) -> bytes:
    word = struct.pack("<Q", (p * 0x9E3779B97F4A7C15 + salt) & 0xFFFF_FFFF_FFFF_FFFF)
    return (word * (n // 8 + 1))[:n]


class _Checker:
    def __init__(self, alloc: Any, rng: random.Random) -> None:
        self.alloc = alloc
        self.rng = rng
        promise = getattr(alloc, "alignment", None) or getattr(alloc, "align", None) or 8
        self.alignment = int(promise)
        self.live: dict[int, tuple[int, bytes]] = {}
        self.allocations = self.deallocations = self.reallocations = 0
        self.bytes_allocated = self.peak_blocks = self.peak_bytes = 0

    def _accept(self, p: object, n: int, what: str) -> int:
        """Requirements 1-4 for a block just returned by ``what``."""
        if not isinstance(p, int) or isinstance(p, bool) or p < 0:
            raise _fail(ADDRESS, f"{what} returned {p!r}, not an address")
        if p == 0:
            raise _fail(ADDRESS, f"{what} returned 0 (null) for {n} bytes")
        try:
            _native._block_view(p, n).release()
        except (ValueError, BufferError) as e:
            raise _fail(SIZE, f"{what} returned {p:#x}: {e}") from None
        if p % self.alignment:
            raise _fail(ALIGNED, f"{what} returned {p:#x}, not {self.alignment}-byte aligned")
        for q, (m, _) in self.live.items():
            if p < q + m and q < p + n:
                raise _fail(
                    DISJOINT,
                    f"{what} returned [{p:#x}, {p:#x}+{n}), which overlaps the live block "
                    f"[{q:#x}, {q:#x}+{m})",
                )
        return p

    def _write(self, p: int, n: int) -> None:
        data = _pattern(p, n, self.allocations)
        with _native._block_view(p, n) as view:
            view[:] = data
        self.live[p] = (n, data)
        live_bytes = sum(m for m, _ in self.live.values())
        self.peak_blocks = max(self.peak_blocks, len(self.live))
        self.peak_bytes = max(self.peak_bytes, live_bytes)

    def allocate(self, n: int) -> None:
        p = self._accept(self.alloc.allocate(n), n, f"allocate({n})")
        self.allocations += 1
        self.bytes_allocated += n
        self._write(p, n)

    def verify(self, when: str) -> None:
        for p, (n, data) in self.live.items():
            try:
                with _native._block_view(p, n) as view:
                    now = bytes(view)
            except (ValueError, BufferError) as e:
                gone = f"live block {p:#x} of {n} bytes is gone {when}: {e}"
                raise _fail(CONTENTS, gone) from None
            if now != data:
                at = next(i for i in range(n) if now[i] != data[i])
                raise _fail(
                    CONTENTS,
                    f"live block {p:#x} of {n} bytes changed at offset {at} {when}",
                )

    def deallocate(self, p: int) -> None:
        n, _ = self.live.pop(p)
        try:
            self.alloc.deallocate(p, n)
        except Exception as e:
            raise _fail(DEALLOCATE, f"deallocate({p:#x}, {n}) raised {e!r}") from None
        self.deallocations += 1

    def free_some(self, fraction: float) -> None:
        victims = [p for p in self.live if self.rng.random() < fraction]
        for p in victims:
            self.deallocate(p)
            self.verify(f"after deallocate({p:#x})")

    def reallocate(self, new: int) -> None:
        p = self.rng.choice(sorted(self.live))
        old, data = self.live.pop(p)
        what = f"reallocate({p:#x}, {old}, {new})"
        try:
            q = self.alloc.reallocate(p, old, new)
        except Exception as e:
            raise _fail(REALLOCATE, f"{what} raised {e!r}") from None
        q = self._accept(q, new, what)
        keep = min(old, new)
        with _native._block_view(q, new) as view:
            moved = bytes(view[:keep])
        if moved != data[:keep]:
            raise _fail(REALLOCATE, f"{what} returned {q:#x}, whose first {keep} bytes differ")
        self.reallocations += 1
        self.bytes_allocated += new
        self._write(q, new)


def _others(alloc: Any) -> list[Any]:
    others = [_native.default_pool(), _native.PoolAllocator(), _native.MallocAllocator()]
    try:
        others.append(_native.TracingAllocator(alloc))
    except TypeError:
        pass
    return others


def _check_equality(alloc: Any) -> None:
    same = alloc
    if not alloc == same:
        raise _fail(EQUALITY, f"{alloc!r} == itself is false")
    if alloc != same:
        raise _fail(EQUALITY, f"{alloc!r} != itself is true")
    for b in _others(alloc):
        ab, ba = alloc == b, b == alloc
        if ab != ba:
            raise _fail(EQUALITY, f"{alloc!r} == {b!r} is {ab} but the reverse is {ba}")
        if ab:
            try:
                same = hash(alloc) == hash(b)
            except TypeError:
                continue
            if not same:
                raise _fail(EQUALITY, f"{alloc!r} == {b!r} but their hashes differ")


def _rejects(call: Any, builtin: bool) -> str | None:
    """None if ``call()`` raised as required, else what happened."""
    try:
        call()
    except _native.AllocatorError:
        return None
    except Exception as e:
        return f"raised {e!r}, not AllocatorError" if builtin else None
    return "was accepted"


def _stats(alloc: Any) -> Any:
    """``alloc.stats()``, or None if it has none (a tracer of a user allocator)."""
    try:
        return alloc.stats()
    except AttributeError:
        return None


def _check_misuse(alloc: Any, builtin: bool) -> None:
    stats = (lambda: _stats(alloc)) if builtin else (lambda: None)
    p = alloc.allocate(16)
    alloc.deallocate(p, 16)
    before = stats()
    if (wrong := _rejects(lambda: alloc.deallocate(p, 16), builtin)) is not None:
        raise _fail(MISUSE, f"a double free of {p:#x} {wrong}")
    if stats() != before:
        raise _fail(MISUSE, "a rejected double free changed the allocator's stats()")
    # A block of a pool nobody else knows: no allocator can free it but this pool.
    owner = _native.PoolAllocator()
    q = owner.allocate(16)
    before = stats()
    if (wrong := _rejects(lambda: alloc.deallocate(q, 16), builtin)) is not None:
        raise _fail(MISUSE, f"freeing a foreign block {q:#x} {wrong}")
    if stats() != before:
        raise _fail(MISUSE, "a rejected foreign free changed the allocator's stats()")
    owner.deallocate(q, 16)


def check_allocator(
    alloc: Any,
    *,
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    rounds: int = 3,
    seed: int = 0,
    misuse: bool | None = None,
) -> Report:
    """Checks ``alloc`` against the C++ allocator requirements (see the module docs).

    Each round allocates a block of every size in ``sizes`` (in a seeded random order),
    writes a distinct pattern across each, frees about half of the live blocks and, if
    ``alloc`` has ``reallocate``, resizes one; contents are verified after every step. The
    remaining blocks are freed at the end. ``misuse``: check that misuse raises (default:
    only for built-in allocators; it is optional for user allocators).

    Raises ``AssertionError`` naming the first broken requirement.
    """
    if not sizes or any(n <= 0 for n in sizes):
        raise ValueError("sizes must be positive")
    builtin = isinstance(alloc, _BUILTINS)
    if misuse is None:
        misuse = builtin
    rng = random.Random(seed)
    c = _Checker(alloc, rng)
    has_reallocate = callable(getattr(alloc, "reallocate", None))
    try:
        for _ in range(rounds):
            for n in rng.sample(list(sizes), len(sizes)):
                c.allocate(n)
                c.verify(f"after allocate({n})")
            c.free_some(0.5)
            if has_reallocate and c.live:
                c.reallocate(rng.choice(sizes))
                c.verify("after reallocate")
        for p in list(c.live):
            c.deallocate(p)
        _check_equality(alloc)
        if misuse:
            _check_misuse(alloc, builtin)
    except _Broken as e:
        raise AssertionError(str(e)) from None
    checked = [ADDRESS, SIZE, ALIGNED, DISJOINT, CONTENTS, DEALLOCATE]
    skipped: list[str] = []
    (checked if has_reallocate else skipped).append(REALLOCATE)
    checked.append(EQUALITY)
    (checked if misuse else skipped).append(MISUSE)
    return Report(
        allocator=repr(alloc),
        alignment=c.alignment,
        checked=tuple(checked),
        skipped=tuple(skipped),
        allocations=c.allocations,
        deallocations=c.deallocations,
        reallocations=c.reallocations,
        bytes_allocated=c.bytes_allocated,
        peak_live_blocks=c.peak_blocks,
        peak_live_bytes=c.peak_bytes,
    )
