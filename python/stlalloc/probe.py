"""Live evidence of how glibc malloc uses brk and mmap (SPEC section 6).

Each ``probe_*`` function measures one claim of the malloc/brk/mmap note on the running
system and returns the figures as a frozen dataclass, with ``verdict`` (the claim holds
here) and ``explain`` (one short paragraph naming the figures). ``run_all`` runs them all.

How the figures are taken:

* Every probe runs in a fresh child interpreter (``python -I -S``), so the caller's heap
  cannot blur it. The child reaches libc through ctypes: ``sbrk(0)`` for the program break,
  the size word 8 bytes before a pointer for the chunk header, ``mallinfo2`` for the top
  chunk, ``mincore`` and ``/proc/self/statm`` for resident memory, ``getrusage`` for minor
  page faults and ``/proc/self/maps`` snapshots for the mappings that appear and disappear.
* The child must start with malloc's thresholds untouched, and a Python interpreter can
  easily move them (claim 4 at work): compiling a big source file or importing ``typing``
  mallocs and frees blocks above 128 KiB. So the child is sent the compiled bytecode of the
  first part of this file only (the constants and the measurements), which imports nothing
  heavier than ctypes and json.
* An interpreter has called malloc thousands of times before any probe starts, so no probe
  sees a virgin heap. Each probe sets up the state it needs from what it finds (the top
  chunk's size, the free memory elsewhere) and says so in its docstring.
* The child runs without ``MALLOC_*`` and ``GLIBC_TUNABLES`` in its environment: setting
  malloc's tunables switches the dynamic threshold off, and the claims are about glibc's
  defaults.
* Where ``strace`` is installed and allowed to trace, claims 1 and 5 also report what the
  kernel saw; without it they rest on the break and maps deltas alone.

Only ``probe_pool`` needs the native extension, and it imports it when called.
"""

from __future__ import annotations

import ctypes
import functools
import json
import marshal
import mmap
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

KiB = 1024
MiB = 1024 * KiB

# glibc malloc's constants on 64-bit machines (malloc/malloc.c, glibc 2.36): the figures
# the probes compare their measurements with.
SIZE_SZ = 8
"""Bytes in a chunk's size word."""
MALLOC_ALIGNMENT = 16
"""Chunk sizes are multiples of this."""
MINSIZE = 32
"""The smallest chunk."""
PREV_INUSE = 0x1
"""Size-word flag: the chunk just below this one is in use."""
IS_MMAPPED = 0x2
"""Size-word flag: the chunk has its own mmap."""
NON_MAIN_ARENA = 0x4
"""Size-word flag: the chunk belongs to a thread arena, not the brk heap's main arena."""
DEFAULT_MMAP_THRESHOLD = 128 * KiB
"""Chunks at least this big get their own mapping, until the threshold moves."""
DEFAULT_MMAP_THRESHOLD_MAX = 32 * MiB
"""The dynamic threshold never rises above this."""
DEFAULT_TRIM_THRESHOLD = 128 * KiB
"""A free top chunk at least this big is given back to the kernel."""
DEFAULT_TOP_PAD = 128 * KiB
"""Extra bytes the heap grows by whenever it grows, and keeps when it shrinks."""
PAGE = mmap.PAGESIZE
"""The page size of this machine."""

_M_MXFAST = 1  # mallopt's parameter number, from malloc.h
_DEFAULT_MXFAST = 64 * SIZE_SZ // 4
_FLAG_BITS = PREV_INUSE | IS_MMAPPED | NON_MAIN_ARENA

# The claim-1 child touches these paths with access(2) around its loop, so that a strace
# log can be cut to the system calls made inside the loop.
_BEGIN_MARK = "/stlalloc-probe/loop-begins"
_END_MARK = "/stlalloc-probe/loop-ends"
_MEMORY_SYSCALLS = frozenset({"brk", "mmap", "munmap", "mremap", "mprotect", "madvise"})
_CHILD_TIMEOUT = 120


def request2size(n: int) -> int:
    """The chunk size glibc malloc uses for a request of ``n`` bytes (64-bit)."""
    return max(MINSIZE, (n + SIZE_SZ + MALLOC_ALIGNMENT - 1) & ~(MALLOC_ALIGNMENT - 1))


def mmapped_size(n: int) -> int:
    """The size of the mapping glibc creates for a request of ``n`` bytes served by mmap."""
    return _align_up(request2size(n) + SIZE_SZ, PAGE)


def _align_up(n: int, alignment: int) -> int:
    return (n + alignment - 1) & ~(alignment - 1)


def _align_down(n: int, alignment: int) -> int:
    return n & ~(alignment - 1)


# ---------------------------------------------------------------------------------------
# The measurements themselves, which run in the fresh child. Between the steps being
# measured, the code avoids Python objects big enough to reach malloc (CPython's own
# allocator serves objects of up to 512 bytes from its arenas) and new ctypes types.


# struct mallinfo2's fields, in order (malloc.h); keepcost is the top chunk's size.
_MALLINFO_FIELDS = (
    "arena", "ordblks", "smblks", "hblks", "hblkhd",
    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
)  # fmt: skip


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO_FIELDS]


class _Libc:
    """The libc functions the measurements call, with their C signatures."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libc.so.6", use_errno=True)
        self.malloc = _declare(lib.malloc, ctypes.c_void_p, ctypes.c_size_t)
        self.free = _declare(lib.free, None, ctypes.c_void_p)
        self.sbrk = _declare(lib.sbrk, ctypes.c_void_p, ctypes.c_ssize_t)
        self.usable = _declare(lib.malloc_usable_size, ctypes.c_size_t, ctypes.c_void_p)
        self.mallopt = _declare(lib.mallopt, ctypes.c_int, ctypes.c_int, ctypes.c_int)
        self.mallinfo2 = _declare(lib.mallinfo2, _MallInfo2)
        self.mincore = _declare(
            lib.mincore, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
        )

    def brk(self) -> int:
        """The program break: ``sbrk(0)`` answers from libc's copy, with no system call."""
        return self.sbrk(0)

    def word(self, pointer: int) -> int:
        """The chunk's size word, 8 bytes before the pointer."""
        return ctypes.c_size_t.from_address(pointer - SIZE_SZ).value

    def top(self) -> int:
        """Size of the top chunk, the free end of the heap (mallinfo2 keepcost)."""
        return self.mallinfo2().keepcost

    def free_elsewhere(self) -> int:
        """Free bytes in the bins: the largest chunk that a bin can hand out is no bigger."""
        info = self.mallinfo2()
        return info.fordblks - info.keepcost

    def consolidate(self) -> None:
        """Merge the fast bins into their neighbours, so that the top's size is final.

        mallopt consolidates before any change; setting M_MXFAST to its default value
        changes nothing else (and, unlike the threshold options, keeps thresholds dynamic).
        """
        self.mallopt(_M_MXFAST, _DEFAULT_MXFAST)

    def shrink_top(self, target: int) -> None:
        """Carve a live block off the top chunk so that ``target`` bytes of top remain."""
        if self.top() >= target + 2 * MINSIZE:
            self.must_malloc(self.top() - target - SIZE_SZ)

    def must_malloc(self, n: int) -> int:
        """malloc(n), raising MemoryError on NULL."""
        pointer = self.malloc(n)
        if not pointer:
            raise MemoryError(f"malloc({n}) returned NULL")
        return pointer

    def resident_pages(self, start: int, length: int, vector: ctypes.Array[Any]) -> int:
        """Pages of ``[start, start+length)`` in memory (start page-aligned)."""
        if self.mincore(start, length, vector) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        pages = (length + PAGE - 1) // PAGE
        return sum(byte & 1 for byte in vector.raw[:pages])


def _declare(function: Any, restype: Any, *argtypes: Any) -> Any:
    function.restype = restype
    function.argtypes = argtypes
    return function


def _minor_faults() -> int:
    import resource  # Unix only: imported where it is used, in the child

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE


def _thp_mode() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii") as f:
            text = f.read()
    except OSError:
        return "unavailable"
    match = re.search(r"\[(\w+)\]", text)
    return match.group(1) if match else text.strip()


class _MapsTape:
    """Snapshots of /proc/self/maps, kept as raw bytes in an anonymous mapping.

    Reading maps into Python strings between two measured steps would call malloc and
    change what is being measured; the tape only calls read(2), into memory malloc does
    not own. ``spans`` decodes a snapshot once the measured steps are over.
    """

    def __init__(self, size: int = 8 * MiB) -> None:
        self._memory = mmap.mmap(-1, size)
        self._view = memoryview(self._memory)
        self._end = 0
        self._marks: list[tuple[int, int]] = []

    def snap(self) -> int:
        """Record the current maps; returns the snapshot's index."""
        start = self._end
        fd = os.open("/proc/self/maps", os.O_RDONLY)
        try:
            while read := os.readv(fd, [self._view[self._end :]]):
                self._end += read
        finally:
            os.close(fd)
        self._marks.append((start, self._end))
        return len(self._marks) - 1

    def spans(self, index: int, *, heap: bool | None = None) -> list[tuple[int, int]]:
        """Merged address ranges of snapshot ``index``; only [heap] or only not with ``heap``."""
        start, end = self._marks[index]
        ranges = []
        for line in bytes(self._view[start:end]).decode().splitlines():
            fields = line.split(maxsplit=5)
            if heap is not None and (fields[-1] == "[heap]") != heap:
                continue
            low, high = (int(part, 16) for part in fields[0].split("-"))
            ranges.append((low, high))
        return _merge(ranges)


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _minus(ranges: list[tuple[int, int]], other: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of ``ranges`` not covered by ``other`` (both merged)."""
    out = []
    for low, high in ranges:
        cursor = low
        for other_low, other_high in other:
            if other_high <= cursor or other_low >= high:
                continue
            if other_low > cursor:
                out.append((cursor, other_low))
            cursor = max(cursor, other_high)
        if cursor < high:
            out.append((cursor, high))
    return out


def _holding(ranges: Sequence[tuple[int, int]], address: int) -> int:
    """Size of the range holding ``address``; 0 if none does."""
    return next((high - low for low, high in ranges if low <= address < high), 0)


class _Watch:
    """malloc and free with the break and the maps recorded around each call.

    Records are kept raw (ints and snapshot indices) and decoded only after the sequence,
    so that decoding cannot call malloc in the middle of it.
    """

    def __init__(self) -> None:
        self.lib = _Libc()
        self.tape = _MapsTape()

    def malloc(self, n: int) -> tuple[int, tuple[int, ...]]:
        """malloc(n): the pointer and a raw record for ``placement``."""
        before = self.tape.snap()
        start = self.lib.brk()
        pointer = self.lib.must_malloc(n)
        moved = self.lib.brk() - start
        after = self.tape.snap()
        return pointer, (n, pointer, self.lib.word(pointer), moved, before, after)

    def free(self, pointer: int) -> tuple[int, int, int]:
        """free(pointer): a raw record for ``unmapped``."""
        before = self.tape.snap()
        self.lib.free(pointer)
        return pointer, before, self.tape.snap()

    def placement(self, record: tuple[int, ...]) -> dict[str, Any]:
        """Decode a malloc record into Placement fields."""
        request, pointer, word, moved, before, after = record
        new = _minus(self.tape.spans(after), self.tape.spans(before))
        return {
            "request": request,
            "chunk_bytes": word & ~_FLAG_BITS,
            "flags": word & _FLAG_BITS,
            "in_heap": _holding(self.tape.spans(after, heap=True), pointer) > 0,
            "break_move": moved,
            "new_mapping_bytes": _holding(new, pointer),
        }

    def unmapped(self, record: tuple[int, int, int]) -> int:
        """Bytes unmapped by a free record, around the freed chunk."""
        pointer, before, after = record
        gone = _minus(self.tape.spans(before), self.tape.spans(after))
        return _holding(gone, pointer - 2 * SIZE_SZ)


_SMALL_SIZES = tuple(range(8, 129, 8))


def _malloc_many(lib: _Libc, blocks: ctypes.Array[Any], sizes: Sequence[int]) -> int:
    """Fill ``blocks`` with malloc'd pointers; the number of calls that moved the break."""
    malloc, sbrk, count = lib.malloc, lib.sbrk, len(sizes)
    moves, brk = 0, sbrk(0)
    for i in range(len(blocks)):
        blocks[i] = malloc(sizes[i % count])
        now = sbrk(0)
        if now != brk:
            moves, brk = moves + 1, now
    return moves


def _free_many(lib: _Libc, blocks: ctypes.Array[Any]) -> int:
    """Free every pointer in ``blocks``; the number of calls that moved the break."""
    free, sbrk = lib.free, lib.sbrk
    moves, brk = 0, sbrk(0)
    for pointer in blocks:
        free(pointer)
        now = sbrk(0)
        if now != brk:
            moves, brk = moves + 1, now
    return moves


def _mapping_changes(tape: _MapsTape, before: int, after: int) -> int:
    """Ranges outside [heap] mapped or unmapped between two snapshots."""
    old, new = tape.spans(before, heap=False), tape.spans(after, heap=False)
    return len(_minus(new, old)) + len(_minus(old, new))


def _measure_library_calls(calls: int) -> dict[str, Any]:
    lib, tape = _Libc(), _MapsTape()
    blocks = (ctypes.c_void_p * (calls // 2))()
    before = tape.snap()
    os.access(_BEGIN_MARK, os.F_OK)
    moves = _malloc_many(lib, blocks, _SMALL_SIZES) + _free_many(lib, blocks)
    os.access(_END_MARK, os.F_OK)
    after = tape.snap()
    return {
        "calls": 2 * len(blocks),
        "break_moves": moves,
        "mapping_changes": _mapping_changes(tape, before, after),
    }


def _measure_thresholds() -> dict[str, Any]:
    watch = _Watch()
    # malloc mmaps only what the top chunk cannot serve: keep the top well under 128 KiB.
    watch.lib.shrink_top(DEFAULT_MMAP_THRESHOLD // 2)
    top = watch.lib.top()
    # Nothing is freed before the last malloc: freeing a mmapped chunk raises the threshold.
    _, small = watch.malloc(64)
    _, at = watch.malloc(DEFAULT_MMAP_THRESHOLD)
    big_pointer, big = watch.malloc(2 * DEFAULT_MMAP_THRESHOLD)
    _, below = watch.malloc(DEFAULT_MMAP_THRESHOLD - MINSIZE + SIZE_SZ)
    freed = watch.free(big_pointer)
    return {
        "top_bytes": top,
        "small": watch.placement(small),
        "below": watch.placement(below),
        "at": watch.placement(at),
        "big": watch.placement(big),
        "big_unmapped_bytes": watch.unmapped(freed),
    }


_TRIM_BLOCK = 96 * KiB
_TOP_BEFORE_C = 48 * KiB
_C_BLOCK = 32 * KiB


def _measure_trim() -> dict[str, Any]:
    lib = _Libc()
    # Made first: creating a ctypes array type mallocs, and later that would carve the top.
    vector = ctypes.create_string_buffer(_TRIM_BLOCK // PAGE)
    lib.consolidate()
    a = lib.must_malloc(_TRIM_BLOCK - SIZE_SZ)
    ctypes.memset(a, 1, _TRIM_BLOCK - SIZE_SZ)  # resident, so we can see it stay resident
    spacer = 0
    if lib.top() < _TOP_BEFORE_C + 16 * KiB:
        # Too little top left to carve D from: a request bigger than the top grows the heap.
        spacer = lib.must_malloc(lib.top() + PAGE)
    d = lib.must_malloc(lib.top() - _TOP_BEFORE_C - SIZE_SZ)
    c = lib.must_malloc(_C_BLOCK - SIZE_SZ)
    page_start = _align_up(a, PAGE)
    page_bytes = _align_down(a + _TRIM_BLOCK - SIZE_SZ, PAGE) - page_start
    brk = lib.brk()
    lib.free(a)
    below_move = lib.brk() - brk
    resident = lib.resident_pages(page_start, page_bytes, vector) * PAGE
    brk = lib.brk()
    lib.free(c)
    small_move, small_top = lib.brk() - brk, lib.top()
    if spacer:
        lib.free(spacer)  # merges into the free A below it; D above it is still live
    brk = lib.brk()
    lib.free(d)
    return {
        "below_bytes": _TRIM_BLOCK,
        "below_break_move": below_move,
        "below_resident_bytes": resident,
        "below_page_bytes": page_bytes,
        "small_top_bytes": small_top,
        "small_top_break_move": small_move,
        "trim_break_move": lib.brk() - brk,
        "top_after_trim": lib.top(),
    }


def _measure_dynamic_threshold() -> dict[str, Any]:
    watch = _Watch()
    pointer, first = watch.malloc(1 * MiB)
    first_freed = watch.free(pointer)
    _, after_raise = watch.malloc(900 * KiB)
    # Just under the 32 MiB cap, then over it: a freed 40 MiB chunk must leave the
    # threshold where it was, so 33 MiB (under 40) is still mmapped.
    pointer, near_cap = watch.malloc(DEFAULT_MMAP_THRESHOLD_MAX - MiB)
    watch.free(pointer)
    _, near_cap_again = watch.malloc(DEFAULT_MMAP_THRESHOLD_MAX - MiB)
    pointer, over_cap = watch.malloc(DEFAULT_MMAP_THRESHOLD_MAX + 8 * MiB)
    watch.free(pointer)
    _, over_cap_after = watch.malloc(DEFAULT_MMAP_THRESHOLD_MAX + MiB)
    records = {
        "first": first,
        "after_raise": after_raise,
        "near_cap": near_cap,
        "near_cap_again": near_cap_again,
        "over_cap": over_cap,
        "over_cap_after": over_cap_after,
    }
    return {
        **{key: watch.placement(record) for key, record in records.items()},
        "first_unmapped_bytes": watch.unmapped(first_freed),
    }


def _measure_top_pad() -> dict[str, Any]:
    lib = _Libc()
    lib.consolidate()
    # A top near 128 KiB would make the request below mmapped instead of grown from brk.
    lib.shrink_top(DEFAULT_MMAP_THRESHOLD // 2)
    top, elsewhere = lib.top(), lib.free_elsewhere()
    # The smallest chunk of (top - MINSIZE + k pages) bigger than the top and than any free
    # chunk: the heap must grow, and by a whole number of pages plus the pad.
    pages = max(1, (max(top, elsewhere) - top + MINSIZE) // PAGE + 1)
    chunk = top - MINSIZE + pages * PAGE
    start = lib.brk()
    pointer = lib.must_malloc(chunk - SIZE_SZ)
    moved = lib.brk() - start
    return {
        "top_bytes": top,
        "free_elsewhere_bytes": elsewhere,
        "request": chunk - SIZE_SZ,
        "flags": lib.word(pointer) & _FLAG_BITS,
        "break_move": moved,
        "top_after": lib.top(),
    }


def _chunk_figures(lib: _Libc, n: int, pointer: int) -> dict[str, int]:
    return {"request": n, "size_word": lib.word(pointer), "usable": lib.usable(pointer)}


def _top_chunk_figures(lib: _Libc, n: int, tries: int = 100_000) -> dict[str, int]:
    """Figures of a malloc(n) carved from the top chunk (repeating it until one is).

    A chunk from a bin may be up to 16 bytes bigger than asked (malloc hands a free chunk
    out whole rather than leave a remainder under 32 bytes), and one parked in tcache or a
    fast bin may have seen the chunk below it freed, clearing its PREV_INUSE. A chunk
    carved from the top has exactly ``request2size(n)`` bytes and a chunk in use below.
    """
    for _ in range(tries):
        pointer = lib.must_malloc(n)
        end = pointer - 2 * SIZE_SZ + (lib.word(pointer) & ~_FLAG_BITS)
        if end == lib.brk() - lib.top():  # the main arena's top ends at the break
            return _chunk_figures(lib, n, pointer)
    raise RuntimeError(f"no malloc({n}) came from the top chunk in {tries} tries")


def _measure_chunk_header() -> dict[str, Any]:
    lib = _Libc()
    small = [_top_chunk_figures(lib, n) for n in (0, 1, 24, 25, 128)]
    big = 2 * DEFAULT_MMAP_THRESHOLD
    mmapped = _chunk_figures(lib, big, lib.must_malloc(big))
    box: list[dict[str, int]] = []
    # A thread's first malloc creates an arena of its own (a mapping, not the brk heap).
    # Above tcache's 1032 bytes: the thread's tcache may hold main-arena chunks it freed.
    worker = threading.Thread(
        target=lambda: box.append(_chunk_figures(lib, 2000, lib.must_malloc(2000)))
    )
    worker.start()
    worker.join()
    return {"small": small, "mmapped": mmapped, "thread": box[0]}


def _measure_first_touch(request: int, touch_pages: int) -> dict[str, Any]:
    lib = _Libc()
    vector = ctypes.create_string_buffer(request // PAGE + 2)  # before: it may be malloc'd
    pointer = lib.must_malloc(request)
    base = pointer - 2 * SIZE_SZ  # an mmapped chunk starts its mapping
    word = lib.word(pointer)
    length = word & ~_FLAG_BITS
    resident_before = lib.resident_pages(base, length, vector)
    rss, faults = _rss_bytes(), _minor_faults()
    for page in range(1, touch_pages + 1):
        ctypes.memset(base + page * PAGE, 1, 1)
    faults = _minor_faults() - faults
    rss = _rss_bytes() - rss
    return {
        "request": request,
        "mmapped": bool(word & IS_MMAPPED),
        "mapping_pages": length // PAGE,
        "resident_after_malloc": resident_before,
        "touched_pages": touch_pages,
        "minor_faults": faults,
        "resident_after_touch": lib.resident_pages(base, length, vector),
        "rss_growth_bytes": rss,
        "thp_mode": _thp_mode(),
    }


def _spacing(addresses: ctypes.Array[Any]) -> int:
    """The most common distance between consecutive addresses (of the first 10,000)."""
    sample: list[int] = addresses[:10_001]
    return Counter(b - a for a, b in zip(sample, sample[1:], strict=False)).most_common(1)[0][0]


def _measure_malloc_side(blocks: int, block_bytes: int) -> dict[str, Any]:
    lib, tape = _Libc(), _MapsTape()
    pointers: ctypes.Array[Any] = (ctypes.c_void_p * blocks)()
    before = tape.snap()
    rss, faults = _rss_bytes(), _minor_faults()
    moves = _malloc_many(lib, pointers, (block_bytes,))
    faults = _minor_faults() - faults
    rss = _rss_bytes() - rss
    after = tape.snap()
    peak, chunk = lib.brk(), lib.word(pointers[0]) & ~_FLAG_BITS
    _free_many(lib, pointers)
    return {
        "syscalls": moves + _mapping_changes(tape, before, after),
        "minor_faults": faults,
        "spacing": _spacing(pointers),
        "header_bytes": chunk - block_bytes,
        "rss_growth_bytes": rss,
        "release_bytes": peak - lib.brk(),
    }


def _measure_pool_side(
    blocks: int, block_bytes: int, arena_size: int, path: list[str]
) -> dict[str, Any]:
    sys.path[:0] = path
    from stlalloc._native import PoolAllocator

    pool = PoolAllocator(arena_size=arena_size)
    addresses = (ctypes.c_uint64 * blocks)()
    allocate, deallocate = pool.allocate, pool.deallocate
    faults = _minor_faults()
    for i in range(blocks):
        addresses[i] = allocate(block_bytes)
    faults = _minor_faults() - faults
    full = pool.stats()
    for address in addresses:
        deallocate(address, block_bytes)
    return {
        "syscalls": dict(pool.stats().syscalls),
        "minor_faults": faults,
        "spacing": _spacing(addresses),
        "resident_bytes": full.arena_resident,
        "heap_bytes": full.heap_size,
        "kept_bytes": pool.stats().heap_size,
    }


_MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "library_calls": _measure_library_calls,
    "thresholds": _measure_thresholds,
    "trim": _measure_trim,
    "dynamic_threshold": _measure_dynamic_threshold,
    "top_pad": _measure_top_pad,
    "chunk_header": _measure_chunk_header,
    "first_touch": _measure_first_touch,
    "malloc_side": _measure_malloc_side,
    "pool_side": _measure_pool_side,
}


def _child_main(argv: list[str]) -> int:
    """The child's entry point: ``argv`` is a measurement's name and its parameters as JSON.

    Prints the figures as JSON on stdout.
    """
    import gc

    gc.disable()  # a collection in the middle of a measured step would free objects
    name, params = argv[0], json.loads(argv[1])
    print(json.dumps(_MEASURES[name](**params)))
    return 0


# ==== end of the child's part ====
# The parent sends the child the bytecode of everything above this line and nothing below.
# dataclasses and typing are imported here, not above, because the child must not import
# them: reading their large .pyc files mallocs and frees blocks above 128 KiB, and freeing
# a mmapped block raises malloc's threshold (claim 4) before the child could measure it.
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any, ClassVar, Protocol, cast  # noqa: E402

# ---------------------------------------------------------------------------------------
# Where the probes can run


def glibc_version() -> str | None:
    """The running glibc's version, such as ``"2.36"``.

    ``None`` when the probes cannot run here: not Linux, not glibc, or not a 64-bit
    machine (the header decoding assumes 8-byte size words).
    """
    if not sys.platform.startswith("linux") or struct.calcsize("P") != 8:
        return None
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    if not libc or not libc.startswith("glibc "):
        return None
    return libc.split()[1]


def require_glibc() -> str:
    """Return the glibc version, or raise ``NotImplementedError`` saying why there is none."""
    version = glibc_version()
    if version is None:
        raise NotImplementedError(
            "stlalloc.probe observes glibc malloc and needs 64-bit Linux with glibc; "
            f"this is {sys.platform} on {platform.machine() or 'an unknown machine'}, "
            "where it is not available"
        )
    return version


# ---------------------------------------------------------------------------------------
# Results


class Finding(Protocol):
    """What every probe result offers: the claim it tests and what was found."""

    claim: ClassVar[int]
    """The claim's number in SPEC section 6."""
    title: ClassVar[str]
    """The claim, as SPEC section 6 states it."""

    @property
    def verdict(self) -> bool:
        """The figures confirm the claim on this system."""

    @property
    def explain(self) -> str:
        """The figures, in words."""


@dataclass(frozen=True)
class Placement:
    """Where one ``malloc(request)`` landed, seen from outside malloc."""

    request: int
    """Bytes asked of malloc."""
    chunk_bytes: int
    """Chunk size read from the size word 8 bytes before the pointer, flags removed."""
    flags: int
    """The size word's low bits: PREV_INUSE 0x1, IS_MMAPPED 0x2, NON_MAIN_ARENA 0x4."""
    in_heap: bool
    """The pointer lies in ``[heap]``, the region that ends at the program break."""
    break_move: int
    """Bytes the program break moved during the call (negative: down)."""
    new_mapping_bytes: int
    """Size of the address range mapped during the call that holds the chunk (0: none)."""

    @property
    def mmapped(self) -> bool:
        """The chunk has its own mapping (IS_MMAPPED set)."""
        return bool(self.flags & IS_MMAPPED)


@dataclass(frozen=True)
class LibraryCalls:
    """Claim 1: how many malloc/free calls reached the kernel."""

    claim: ClassVar[int] = 1
    title: ClassVar[str] = "malloc is a library call: most calls make no system call at all."

    calls: int
    """malloc and free calls made (half each), of sizes 8..128 bytes."""
    break_moves: int
    """Calls after which the program break had moved: each is one brk system call."""
    mapping_changes: int
    """Address ranges outside [heap] mapped or unmapped between the start and the end."""
    traced_syscalls: int | None
    """Memory system calls strace saw during the calls; None without a usable strace."""
    verdict: bool
    """Fewer than 1% of the calls made a system call."""
    explain: str
    """The figures, in words."""


@dataclass(frozen=True)
class Thresholds:
    """Claim 2: small requests come from the brk heap, large ones get their own mapping."""

    claim: ClassVar[int] = 2
    title: ClassVar[str] = (
        "Small requests are served from the brk heap, large ones (at least the mmap "
        "threshold, 128 KiB by default) by their own mmap; freeing the latter unmaps it."
    )

    top_bytes: int
    """Size of the top chunk before the first request (a top this big could serve them)."""
    small: Placement
    """``malloc(64)``."""
    below: Placement
    """The largest request whose chunk is still under 128 KiB: ``malloc(131048)``."""
    at: Placement
    """``malloc(131072)``: its 131088-byte chunk reaches the threshold."""
    big: Placement
    """``malloc(262144)``."""
    big_unmapped_bytes: int
    """Bytes unmapped when ``big`` was freed."""
    verdict: bool
    """Small and just-below requests came from [heap], the others were mmapped and unmapped."""
    explain: str
    """The figures, in words."""


@dataclass(frozen=True)
class Trim:
    """Claim 3: freed brk memory stays; the top shrinks only past the trim threshold."""

    claim: ClassVar[int] = 3
    title: ClassVar[str] = (
        "Freed brk memory stays in the process; the heap top shrinks only when the free "
        "top exceeds the trim threshold (128 KiB by default)."
    )

    below_bytes: int
    """Chunk size of a brk block freed while live blocks lie above it."""
    below_break_move: int
    """Break move when it was freed."""
    below_resident_bytes: int
    """Bytes of its whole pages still resident after the free."""
    below_page_bytes: int
    """Bytes of its whole pages (all were written before the free)."""
    small_top_bytes: int
    """Free top after freeing a block just below it, kept under the trim threshold."""
    small_top_break_move: int
    """Break move during that free."""
    trim_break_move: int
    """Break move during a free that made the free top bigger than the threshold."""
    top_after_trim: int
    """Size of the top chunk the trim left."""
    verdict: bool
    """No move for the first two frees, a move down for the third, leaving the top pad."""
    explain: str
    """The figures, in words."""


@dataclass(frozen=True)
class DynamicThreshold:
    """Claim 4: freeing an mmapped chunk raises the mmap threshold, up to 32 MiB."""

    claim: ClassVar[int] = 4
    title: ClassVar[str] = (
        "The threshold is dynamic: freeing an mmapped chunk raises it (up to 32 MiB), after "
        "which the same size comes from brk."
    )

    first: Placement
    """``malloc(1 MiB)`` in a fresh child."""
    first_unmapped_bytes: int
    """Bytes unmapped when it was freed."""
    after_raise: Placement
    """``malloc(900 KiB)`` after that free."""
    near_cap: Placement
    """``malloc(31 MiB)``, freed at once."""
    near_cap_again: Placement
    """``malloc(31 MiB)`` after that free."""
    over_cap: Placement
    """``malloc(40 MiB)``, freed at once: bigger than the 32 MiB cap."""
    over_cap_after: Placement
    """``malloc(33 MiB)`` after that free."""
    verdict: bool
    """1 MiB and 31 MiB were mmapped and their repeats came from brk; 33 MiB stayed mmapped."""
    explain: str
    """The figures, in words."""


@dataclass(frozen=True)
class TopPad:
    """Claim 5: the heap grows by the request plus a 128 KiB top pad."""

    claim: ClassVar[int] = 5
    title: ClassVar[str] = (
        "The first malloc moves the break by much more than asked (132 KiB of top pad)."
    )

    top_bytes: int
    """Size of the top chunk (the heap's unused end) before the request."""
    free_elsewhere_bytes: int
    """Free bytes outside the top; the request is bigger, so no free chunk can serve it."""
    request: int
    """Bytes asked: more than the top holds, so the heap must grow."""
    flags: int
    """Flag bits of the chunk's size word."""
    break_move: int
    """How far the break moved."""
    top_after: int
    """Size of the top chunk after the request."""
    top_pad: int
    """Break move minus what the request needed beyond the top: the pad malloc added."""
    first_move: int
    """The break move the measured pad implies for the first small malloc of a process."""
    fresh_process_move: int | None
    """First break move strace saw in a freshly started interpreter; None without strace."""
    verdict: bool
    """The pad is 131072 bytes, so a first malloc moves the break by 0x21000."""
    explain: str
    """The figures, in words."""


@dataclass(frozen=True)
class Chunk:
    """The header of one malloc'd block."""

    request: int
    """Bytes asked of malloc."""
    size_word: int
    """The 8 bytes before the pointer."""
    chunk_bytes: int
    """The size in that word (flags removed)."""
    flags: int
    """The flag bits in that word. PREV_INUSE tells about the chunk below: clear when it
    is free (a chunk parked in tcache or a fast bin can see its neighbour freed)."""
    usable: int
    """What ``malloc_usable_size`` reports."""


@dataclass(frozen=True)
class ChunkHeader:
    """Claim 6: the size word before the pointer, with its flag bits."""

    claim: ClassVar[int] = 6
    title: ClassVar[str] = (
        "free knows the size from the chunk header before the pointer: size plus flag bits "
        "(PREV_INUSE, IS_MMAPPED); malloc(24) uses a 32-byte chunk."
    )

    small: tuple[Chunk, ...]
    """``malloc(0)``, ``(1)``, ``(24)``, ``(25)``, ``(128)``, each carved from the top chunk."""
    mmapped: Chunk
    """``malloc(262144)``, served by its own mapping."""
    thread: Chunk
    """``malloc(2000)`` made by a second thread, in that thread's arena."""
    verdict: bool
    """Every chunk size, flag and usable size is what malloc.c says."""
    explain: str
    """The figures, in words."""


@dataclass(frozen=True)
class FirstTouch:
    """Claim 7: a big block is virtual until its pages are written, one fault per page."""

    claim: ClassVar[int] = 7
    title: ClassVar[str] = (
        "malloc hands out virtual memory: resident memory grows only when pages are "
        "touched, one minor page fault per page."
    )

    request: int
    """Bytes asked of malloc (64 MiB)."""
    mmapped: bool
    """The block got its own mapping."""
    mapping_pages: int
    """Pages in that mapping."""
    resident_after_malloc: int
    """Of those, pages resident right after malloc (mincore)."""
    touched_pages: int
    """Pages then written, one byte each."""
    minor_faults: int
    """Minor page faults (getrusage) while writing them."""
    resident_after_touch: int
    """Pages of the mapping resident afterwards."""
    rss_growth_bytes: int
    """Growth of the process's resident set (/proc/self/statm) while writing them."""
    thp_mode: str
    """The transparent huge page mode; with ``always`` a fault can map 2 MiB at once."""
    verdict: bool
    """Untouched pages stayed virtual; each write of a new page cost one fault and one page."""
    explain: str
    """The figures, in words."""


@dataclass(frozen=True)
class PoolVsMalloc:
    """Claim 8: the same allocations from the SGI pool and from glibc malloc."""

    claim: ClassVar[int] = 8
    title: ClassVar[str] = (
        "A pool removes most of this: no header per block, no system call per allocation, "
        "far fewer page faults, and memory kept for reuse."
    )

    blocks: int
    """Blocks allocated (and then all freed) on each side."""
    block_bytes: int
    """Size of each block."""
    pool_syscalls: dict[str, int]
    """System calls the pool made by name (its stats), creating its arena included."""
    pool_minor_faults: int
    """Minor page faults while the pool handed out the blocks."""
    pool_spacing: int
    """Most common distance between consecutive blocks from the pool."""
    pool_resident_bytes: int
    """The pool arena's resident bytes with every block live."""
    pool_heap_bytes: int
    """The pool's heap_size with every block live."""
    pool_kept_bytes: int
    """The pool's heap_size after every block was freed: memory kept for reuse."""
    malloc_syscalls: int
    """Break moves plus mapping changes while malloc handed out the blocks."""
    malloc_minor_faults: int
    """Minor page faults while malloc handed out the blocks."""
    malloc_spacing: int
    """Most common distance between consecutive blocks from malloc."""
    malloc_header_bytes: int
    """Chunk size minus block size: malloc's overhead per block."""
    malloc_rss_growth_bytes: int
    """Growth of the resident set while malloc handed out the blocks."""
    malloc_release_bytes: int
    """How far the break came down once every block was freed."""
    verdict: bool
    """The pool made fewer system calls and faults, had no header and kept its memory."""
    explain: str
    """The figures, in words."""


@dataclass(frozen=True)
class Evidence:
    """Everything ``run_all`` measured."""

    glibc: str
    """The glibc version the probes ran against."""
    results: tuple[Finding, ...]
    """Claims 1-7 in order, then claim 8 when the native extension could be imported."""
    pool_skipped: str | None
    """Why claim 8 was not measured, or None."""


# ---------------------------------------------------------------------------------------
# Running a measurement in a child


def _child_env() -> dict[str, str]:
    # Tunables set by the user would turn glibc's dynamic threshold off.
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"
    }


_CHILD_PART_END = "# ==== end of the child's part ===="

# The child's whole program: run the bytecode read from stdin, then its _child_main.
# -I -S: no site, no user paths, no PYTHON* variables: a small, predictable heap.
_CHILD_BOOT = (
    "import marshal, sys\n"
    "namespace = {'__name__': 'stlalloc.probe.child'}\n"
    "exec(marshal.loads(sys.stdin.buffer.read()), namespace)\n"
    "sys.exit(namespace['_child_main'](sys.argv[1:]))\n"
)


@functools.cache
def _child_bytecode() -> bytes:
    """The child's part of this file, compiled here and marshalled for the child.

    Compiling a file this size in the child would malloc and free blocks above 128 KiB
    and so raise the mmap threshold before the child measures it.
    """
    with open(__file__, encoding="utf-8") as source_file:
        source = source_file.read()
    part = source[: source.index(_CHILD_PART_END)]
    return marshal.dumps(compile(part, __file__, "exec", dont_inherit=True))


def _run(command: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        env=_child_env(),
        timeout=_CHILD_TIMEOUT,
        check=False,
    )


def _traced(
    command: list[str], syscalls: str, stdin: bytes = b""
) -> tuple[bytes, list[str]] | None:
    """Run ``command`` under strace: its stdout and the trace lines, or None if untraceable."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.TemporaryDirectory(prefix="stlalloc-probe-") as tmp:
        log = os.path.join(tmp, "trace")
        proc = _run([strace, "-f", "-qq", "-e", f"trace={syscalls}", "-o", log, *command], stdin)
        # strace fails where ptrace is not allowed (some containers): then go untraced.
        if proc.returncode != 0 or not os.path.exists(log):
            return None
        with open(log, encoding="utf-8", errors="replace") as trace:
            return proc.stdout, trace.read().splitlines()


def _run_child(
    name: str, params: dict[str, Any] | None = None, trace: str | None = None
) -> tuple[dict[str, Any], list[str] | None]:
    """Measure ``name`` in a fresh child: its figures, and strace's lines if ``trace`` asks."""
    command = [sys.executable, "-I", "-S", "-c", _CHILD_BOOT, name, json.dumps(params or {})]
    traced = _traced(command, trace, _child_bytecode()) if trace else None
    if traced is not None:
        stdout, lines = traced
        return json.loads(stdout), lines
    proc = _run(command, _child_bytecode())
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"probe child {name!r} failed:\n{stderr}")
    return json.loads(proc.stdout), None


def _memory_syscalls_between_marks(lines: Iterable[str]) -> int | None:
    """Memory system calls logged between the begin and end marks; None if a mark is missing."""
    inside, count = False, 0
    for line in lines:
        if _BEGIN_MARK in line:
            inside = True
        elif _END_MARK in line:
            return count if inside else None
        elif inside:
            match = re.match(r"(?:\d+\s+)?(\w+)\(", line)
            count += bool(match and match.group(1) in _MEMORY_SYSCALLS)
    return None


def _first_break_move(lines: Iterable[str]) -> int | None:
    """The first brk(2) that moved the break, as a distance from where it started."""
    start = None
    for line in lines:
        match = re.search(r"brk\((NULL|0x[0-9a-f]+)\)\s*=\s*(0x[0-9a-f]+)", line)
        if match is None:
            continue
        argument, result = match.group(1), int(match.group(2), 16)
        if argument == "NULL":
            start = result
        elif start is not None:
            return result - start
    return None


def _size(n: int) -> str:
    """A byte count in the unit a reader expects: ``"96 KiB"``, ``"31 MiB"``, ``"1.5 KiB"``."""
    unit, name = (MiB, "MiB") if abs(n) >= MiB else (KiB, "KiB")
    return f"{n / unit:,.1f}".removesuffix(".0") + f" {name}"


# ---------------------------------------------------------------------------------------
# The probes


def probe_library_calls(calls: int = 1_000_000) -> LibraryCalls:
    """Claim 1: make ``calls`` malloc/free calls and count those that reached the kernel.

    The child mallocs ``calls // 2`` blocks of 8..128 bytes, keeping them, then frees them
    all. After every call it reads the break (``sbrk(0)``, no system call); a change means
    one ``brk``. /proc/self/maps before and after gives the mappings made or removed
    outside [heap]. Under strace, the memory system calls made during the loops are counted
    as well.
    """
    require_glibc()
    figures, trace = _run_child("library_calls", {"calls": calls}, trace="%memory,%file")
    traced = None if trace is None else _memory_syscalls_between_marks(trace)
    kernel = figures["break_moves"] + figures["mapping_changes"]
    share = max(kernel, traced or 0) / figures["calls"]
    strace_note = (
        "" if traced is None else f"; strace counted {traced:,} memory system calls in that time"
    )
    return LibraryCalls(
        **figures,
        traced_syscalls=traced,
        verdict=share < 0.01,
        explain=(
            f"{figures['calls']:,} malloc/free calls of 8..128 bytes moved the break "
            f"{figures['break_moves']:,} times and changed the mappings "
            f"{figures['mapping_changes']:,} times{strace_note}: at most {share:.3%} of the "
            "calls entered the kernel; the rest were served from memory malloc already had."
        ),
    )


def probe_thresholds() -> Thresholds:
    """Claim 2: where requests around the 128 KiB mmap threshold land, and what free does.

    In a fresh child: ``malloc(64)``, ``malloc(131072)``, ``malloc(262144)`` and then
    ``malloc(131048)`` (whose 131056-byte chunk is the biggest under the threshold), each
    with the break and the maps read around it; then the 256 KiB block is freed. The
    just-below request goes last because it grows the top by the pad, after which the top
    could serve a 128 KiB request itself (malloc only mmaps what the top cannot serve).
    """
    require_glibc()
    figures, _ = _run_child("thresholds")
    small, below, at, big = (Placement(**figures[key]) for key in ("small", "below", "at", "big"))
    unmapped = figures["big_unmapped_bytes"]
    verdict = (
        small.in_heap
        and below.in_heap
        and not (small.mmapped or below.mmapped)
        and at.mmapped
        and big.mmapped
        and at.new_mapping_bytes == mmapped_size(at.request)
        and big.new_mapping_bytes == unmapped == mmapped_size(big.request)
    )
    explain = (
        f"malloc(64) landed in [heap]; malloc(131048), whose {below.chunk_bytes}-byte chunk "
        f"is just under the 128 KiB mmap threshold, came from brk too (break "
        f"+{_size(below.break_move)}). malloc(131072) got its own {at.new_mapping_bytes:,}-byte "
        f"mapping and malloc(262144) a {big.new_mapping_bytes:,}-byte one (IS_MMAPPED set "
        f"in both size words); free unmapped the latter ({unmapped:,} bytes)."
    )
    return Thresholds(
        top_bytes=figures["top_bytes"],
        small=small,
        below=below,
        at=at,
        big=big,
        big_unmapped_bytes=unmapped,
        verdict=verdict,
        explain=explain,
    )


def probe_trim() -> Trim:
    """Claim 3: which frees give memory back to the kernel.

    In a fresh child: a 96 KiB block A is malloc'd and written, then blocks D and C are
    carved from the top so that a 16 KiB top is left. Freeing A (live D above it) must not
    move the break and leaves A's pages resident; freeing C gives a 48 KiB free top, under
    the 128 KiB trim threshold: no move; freeing D merges A, D and the top into one free
    top beyond the threshold: the break comes down, keeping the 128 KiB top pad.
    """
    require_glibc()
    figures, _ = _run_child("trim")
    freed_top = figures["top_after_trim"] - figures["trim_break_move"]
    verdict = (
        figures["below_break_move"] == 0
        and figures["below_resident_bytes"] == figures["below_page_bytes"]
        and figures["small_top_bytes"] < DEFAULT_TRIM_THRESHOLD
        and figures["small_top_break_move"] == 0
        and figures["trim_break_move"] < 0
        and freed_top > DEFAULT_TRIM_THRESHOLD
        and DEFAULT_TOP_PAD < figures["top_after_trim"] <= DEFAULT_TOP_PAD + MINSIZE + PAGE
    )
    explain = (
        f"Freeing a {_size(figures['below_bytes'])} brk block below live ones left the break "
        f"where it was (move {figures['below_break_move']}) and "
        f"{figures['below_resident_bytes'] // PAGE} of its {figures['below_page_bytes'] // PAGE}"
        f" pages resident. A free leaving a {_size(figures['small_top_bytes'])} free top, under "
        f"the 128 KiB trim threshold, did not move it (move {figures['small_top_break_move']}). "
        f"A free making the top {_size(freed_top)} moved the break down by "
        f"{_size(-figures['trim_break_move'])}, keeping {figures['top_after_trim']:,} bytes: "
        "the 128 KiB top pad."
    )
    return Trim(**figures, verdict=verdict, explain=explain)


def probe_dynamic_threshold() -> DynamicThreshold:
    """Claim 4: the mmap threshold follows freed mmapped chunks, up to 32 MiB.

    In a fresh child, each step read with the break and the maps: malloc(1 MiB) and free
    it; malloc(900 KiB); malloc(31 MiB), free, malloc(31 MiB) again; malloc(40 MiB), free,
    malloc(33 MiB). If the threshold followed the 40 MiB chunk, 33 MiB would come from brk.
    """
    require_glibc()
    figures, _ = _run_child("dynamic_threshold")
    steps = ("first", "after_raise", "near_cap", "near_cap_again", "over_cap", "over_cap_after")
    first, after, near, again, over, over_after = (Placement(**figures[key]) for key in steps)
    unmapped = figures["first_unmapped_bytes"]
    verdict = (
        first.mmapped
        and unmapped == first.new_mapping_bytes > 0
        and not after.mmapped
        and after.in_heap
        and near.mmapped
        and not again.mmapped
        and again.in_heap
        and over.mmapped
        and over_after.mmapped
    )
    explain = (
        f"malloc(1 MiB) got its own {first.new_mapping_bytes:,}-byte mapping and free unmapped "
        f"it ({unmapped:,} bytes), which raised the threshold (128 KiB by default): "
        f"malloc(900 KiB) then came from brk (break +{_size(after.break_move)}). Freeing a "
        f"mmapped {_size(near.request)} block raised it again (the next one moved the break by "
        f"{_size(again.break_move)}), but freeing a {_size(over.request)} one did not, as it is "
        f"above the {_size(DEFAULT_MMAP_THRESHOLD_MAX)} maximum: "
        f"malloc({_size(over_after.request)}) was still mmapped "
        f"({over_after.new_mapping_bytes:,} bytes)."
    )
    return DynamicThreshold(
        first=first,
        first_unmapped_bytes=unmapped,
        after_raise=after,
        near_cap=near,
        near_cap_again=again,
        over_cap=over,
        over_cap_after=over_after,
        verdict=verdict,
        explain=explain,
    )


def probe_top_pad() -> TopPad:
    """Claim 5: how far the break moves when the heap grows.

    An interpreter's heap has grown long before a probe runs, so the child measures the
    rule instead of the first call: with ``T`` the top chunk's size (mallinfo2 keepcost,
    after consolidating the fast bins), it mallocs a chunk of ``T - 32 + k`` pages, more
    than the top and than all free memory elsewhere, so the heap must grow; glibc then
    moves the break by ``chunk + 32 - T + top_pad`` rounded up to a page, and ``k`` pages
    make the rounding exact. The measured pad gives the first malloc's move,
    ``align_up(32 + 32 + top_pad)``. With strace, the first break move of a freshly
    started interpreter is read as well: that first call, seen directly.
    """
    require_glibc()
    figures, _ = _run_child("top_pad")
    fresh = _traced([sys.executable, "-I", "-S", "-c", "pass"], "brk")
    fresh_move = None if fresh is None else _first_break_move(fresh[1])
    needed = request2size(figures["request"]) + MINSIZE - figures["top_bytes"]
    pad = figures["break_move"] - needed
    first_move = _align_up(MINSIZE + MINSIZE + pad, PAGE)
    verdict = (
        not figures["flags"] & IS_MMAPPED
        and pad == DEFAULT_TOP_PAD
        and figures["top_after"] == pad + MINSIZE
        and fresh_move in (None, first_move)
    )
    fresh_note = (
        ""
        if fresh_move is None
        else f" strace saw a freshly started interpreter's first malloc move it by {fresh_move:#x}."
    )
    explain = (
        f"The top chunk held {figures['top_bytes']:,} bytes; malloc({figures['request']:,}) "
        f"needed {needed:,} beyond it, and the break moved by {figures['break_move']:,}: a pad "
        f"of {pad:,} bytes, left as the new top ({figures['top_after']:,} bytes). So the first "
        f"small malloc of a process moves the break by {first_move:#x} "
        f"({_size(first_move)}) for a 32-byte chunk.{fresh_note}"
    )
    return TopPad(
        **figures,
        top_pad=pad,
        first_move=first_move,
        fresh_process_move=fresh_move,
        verdict=verdict,
        explain=explain,
    )


def _chunk(figures: dict[str, int]) -> Chunk:
    word = figures["size_word"]
    return Chunk(
        request=figures["request"],
        size_word=word,
        chunk_bytes=word & ~_FLAG_BITS,
        flags=word & _FLAG_BITS,
        usable=figures["usable"],
    )


def _decoded(chunk: Chunk) -> str:
    """The size word and what it says, e.g. ``0x21 = 32 | PREV_INUSE``."""
    names = [
        name
        for bit, name in (
            (PREV_INUSE, "PREV_INUSE"),
            (IS_MMAPPED, "IS_MMAPPED"),
            (NON_MAIN_ARENA, "NON_MAIN_ARENA"),
        )
        if chunk.flags & bit
    ]
    return " | ".join([f"{chunk.size_word:#x} = {chunk.chunk_bytes}", *names])


def _heap_chunk_as_documented(chunk: Chunk) -> bool:
    return (
        chunk.chunk_bytes == request2size(chunk.request)
        and chunk.flags == PREV_INUSE
        and chunk.usable == chunk.chunk_bytes - SIZE_SZ
    )


def probe_chunk_header() -> ChunkHeader:
    """Claim 6: read the size word 8 bytes before malloc's pointers and decode it.

    In a fresh child: malloc(0), (1), (24), (25), (128), (262144), and malloc(2000) from a
    second thread (which gets an arena of its own; 2000 bytes is above what the thread's
    tcache holds, which may be chunks of the main arena); each block's size word and
    ``malloc_usable_size`` are read and compared with ``request2size``. Each small
    request is repeated until one is carved from the top chunk, the one place where its
    size is exactly ``request2size`` and PREV_INUSE certain (bins may hand out a chunk
    16 bytes bigger, and a chunk parked in tcache may have seen its lower neighbour freed).
    """
    require_glibc()
    figures, _ = _run_child("chunk_header")
    small = tuple(_chunk(entry) for entry in figures["small"])
    big, thread = _chunk(figures["mmapped"]), _chunk(figures["thread"])
    verdict = (
        all(_heap_chunk_as_documented(chunk) for chunk in small)
        and big.flags == IS_MMAPPED
        and big.chunk_bytes == mmapped_size(big.request)
        and big.usable == big.chunk_bytes - 2 * SIZE_SZ
        and thread.flags == NON_MAIN_ARENA | PREV_INUSE
        and thread.chunk_bytes == request2size(thread.request)
    )
    sizes = ", ".join(f"malloc({c.request}) {c.chunk_bytes}" for c in small)
    by24 = next(c for c in small if c.request == 24)
    explain = (
        f"malloc(24) sits in a {by24.chunk_bytes}-byte chunk: the word before the pointer is "
        f"{_decoded(by24)}. Chunk sizes: {sizes}; malloc_usable_size agrees "
        f"({', '.join(str(c.usable) for c in small)}). A 256 KiB block's word is "
        f"{_decoded(big)}; malloc({thread.request}) in a second thread's arena gives "
        f"{_decoded(thread)}."
    )
    return ChunkHeader(small=small, mmapped=big, thread=thread, verdict=verdict, explain=explain)


def probe_first_touch(request: int = 64 * MiB, touch_pages: int = 1024) -> FirstTouch:
    """Claim 7: resident memory and minor faults of a fresh ``malloc(request)``.

    In a fresh child: mincore counts the resident pages of the block's mapping right after
    malloc; one byte is then written to each of ``touch_pages`` pages (past the header's
    page), counting minor faults with getrusage and resident pages with mincore and statm.
    """
    require_glibc()
    params = {"request": request, "touch_pages": touch_pages}
    figures, _ = _run_child("first_touch", params)
    touched, faults = figures["touched_pages"], figures["minor_faults"]
    grown = figures["resident_after_touch"] - figures["resident_after_malloc"]
    verdict = (
        figures["mmapped"]
        and figures["resident_after_malloc"] <= 1
        and grown == touched
        and touched <= faults <= touched + touched // 20 + 16
    )
    untouched = figures["mapping_pages"] - figures["resident_after_touch"]
    explain = (
        f"malloc({_size(request)}) mapped {figures['mapping_pages']:,} pages, of which "
        f"{figures['resident_after_malloc']} (the header's) was resident. Writing one byte to "
        f"each of {touched:,} pages cost {faults:,} minor faults and made {grown:,} more pages "
        f"resident (RSS +{_size(figures['rss_growth_bytes'])}); the other {untouched:,} pages "
        f"stayed virtual (transparent huge pages: {figures['thp_mode']})."
    )
    return FirstTouch(**figures, verdict=verdict, explain=explain)


def probe_pool(
    blocks: int = 1_000_000, block_bytes: int = 24, arena_size: int = 64 * MiB
) -> PoolVsMalloc:
    """Claim 8: ``blocks`` allocations of ``block_bytes`` from the pool and from malloc.

    Each side runs in its own fresh child. The pool side creates
    ``stlalloc._native.PoolAllocator(arena_size=arena_size)``, allocates every block,
    reads ``stats()`` (system calls, resident arena bytes, heap_size), frees every block and
    reads heap_size again. The malloc side does the same through ctypes, counting break
    moves and mapping changes. Both count minor page faults while allocating and the
    distance between consecutive blocks (malloc's includes the 8-byte size word).

    Raises ``ImportError`` when the native extension is not built.
    """
    require_glibc()
    from stlalloc import _native  # fails here, clearly, when it is not built

    # The child finds the package where this process found it.
    path = [os.path.dirname(os.path.dirname(os.path.abspath(_native.__file__))), *sys.path]
    params = {"blocks": blocks, "block_bytes": block_bytes}
    pool, _ = _run_child("pool_side", {**params, "arena_size": arena_size, "path": path})
    libc, _ = _run_child("malloc_side", params)
    pool_calls = sum(pool["syscalls"].values())
    verdict = (
        pool_calls < libc["syscalls"]
        and pool["minor_faults"] < libc["minor_faults"]
        and pool["spacing"] == block_bytes
        and pool["kept_bytes"] == pool["heap_bytes"]
    )
    per_million = 1_000_000 / blocks
    detail = ", ".join(f"{name} {count}" for name, count in pool["syscalls"].items() if count)
    explain = (
        f"{blocks:,} allocations of {block_bytes} bytes, pool vs malloc. System calls: "
        f"{pool_calls} ({detail or 'none'}) vs {libc['syscalls']:,} (break moves and "
        f"mappings), i.e. {pool_calls * per_million:,.0f} vs "
        f"{libc['syscalls'] * per_million:,.0f} per million allocations. Minor page faults: "
        f"{pool['minor_faults']:,} vs {libc['minor_faults']:,} "
        f"({1 - pool['minor_faults'] / libc['minor_faults']:.0%} fewer). Blocks "
        f"{pool['spacing']} vs {libc['spacing']} bytes apart: {pool['spacing'] - block_bytes} "
        f"vs {libc['header_bytes']} bytes of header per block. Once every block was freed, "
        f"the pool kept its {pool['kept_bytes']:,}-byte heap for reuse; malloc's break came "
        f"down by {libc['release_bytes']:,} bytes."
    )
    return PoolVsMalloc(
        blocks=blocks,
        block_bytes=block_bytes,
        pool_syscalls=pool["syscalls"],
        pool_minor_faults=pool["minor_faults"],
        pool_spacing=pool["spacing"],
        pool_resident_bytes=pool["resident_bytes"],
        pool_heap_bytes=pool["heap_bytes"],
        pool_kept_bytes=pool["kept_bytes"],
        malloc_syscalls=libc["syscalls"],
        malloc_minor_faults=libc["minor_faults"],
        malloc_spacing=libc["spacing"],
        malloc_header_bytes=libc["header_bytes"],
        malloc_rss_growth_bytes=libc["rss_growth_bytes"],
        malloc_release_bytes=libc["release_bytes"],
        verdict=verdict,
        explain=explain,
    )


CLAIM_PROBES: tuple[Callable[[], Finding], ...] = (
    probe_library_calls,
    probe_thresholds,
    probe_trim,
    probe_dynamic_threshold,
    probe_top_pad,
    probe_chunk_header,
    probe_first_touch,
)
"""The probes of claims 1-7, in order; claim 8 is ``probe_pool``."""


def run_all(on_finding: Callable[[Finding], None] | None = None) -> Evidence:
    """Run every probe, in claim order.

    Claim 8 is skipped, with the reason, when the native extension cannot be imported.
    ``on_finding``, if given, is called with each result as soon as it is measured.
    """
    version = require_glibc()
    results: list[Finding] = []

    def record(finding: Finding) -> None:
        results.append(finding)
        if on_finding is not None:
            on_finding(finding)

    for probe in CLAIM_PROBES:
        record(probe())
    skipped = None
    try:
        pool = probe_pool()
    except ImportError as exc:
        skipped = f"the native extension stlalloc._native is not importable ({exc})"
    else:
        record(pool)
    return Evidence(glibc=version, results=tuple(results), pool_skipped=skipped)


def as_json(finding: Finding) -> dict[str, Any]:
    """A finding as plain JSON-ready data, with its claim number and title."""
    return {"claim": finding.claim, "title": finding.title, **asdict(cast(Any, finding))}
