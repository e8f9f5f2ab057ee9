"""The measurements of :mod:`stlalloc.probe`: the code that runs in the fresh child.

A child interpreter (``python -I -S``) runs this module as ``__main__`` with a
measurement's name and its parameters as JSON, as in ``python -I -S _measure.py trim '{}'``,
and prints the figures as JSON on stdout. The parent (``_child.py``) compiles the module
and sends the child the bytecode, so that the child compiles nothing (see there).

The child must start with malloc's thresholds untouched, so this module imports nothing
heavier than ctypes and json: not ``typing`` and not ``dataclasses`` (reading their large
.pyc files mallocs and frees blocks above 128 KiB, and freeing a mmapped block raises
malloc's threshold, claim 4, before the child could measure it), and nothing else of the
package. The parent imports it too, for glibc's constants.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the child never imports typing
    from typing import Any

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
FLAG_BITS = PREV_INUSE | IS_MMAPPED | NON_MAIN_ARENA

# The claim-1 child touches these paths with access(2) around its loop, so that a strace
# log can be cut to the system calls made inside the loop.
BEGIN_MARK = "/stlalloc-probe/loop-begins"
END_MARK = "/stlalloc-probe/loop-ends"


def request2size(n: int) -> int:
    """The chunk size glibc malloc uses for a request of ``n`` bytes (64-bit)."""
    return max(MINSIZE, (n + SIZE_SZ + MALLOC_ALIGNMENT - 1) & ~(MALLOC_ALIGNMENT - 1))


def mmapped_size(n: int) -> int:
    """The size of the mapping glibc creates for a request of ``n`` bytes served by mmap."""
    return align_up(request2size(n) + SIZE_SZ, PAGE)


def align_up(n: int, alignment: int) -> int:
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
            "chunk_bytes": word & ~FLAG_BITS,
            "flags": word & FLAG_BITS,
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
    os.access(BEGIN_MARK, os.F_OK)
    moves = _malloc_many(lib, blocks, _SMALL_SIZES) + _free_many(lib, blocks)
    os.access(END_MARK, os.F_OK)
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
    # D must lie right above a block that is free when D is freed, so that D's free merges
    # downwards and the top passes the trim threshold whatever the heap held before (a top
    # after growth is only top pad + a page). A request bigger than the top grows the heap and
    # its block, the spacer, lies right below the new top; one that a free chunk elsewhere
    # serves leaves the break where it was, so ask again.
    spacers: list[int] = []
    while len(spacers) < 8:
        # A spacer that malloc mmapped would, once freed, raise the trim threshold: keep it
        # small by carving the top down to a page first, in pieces no bin or mmap serves whole.
        for _ in range(256):
            if lib.top() < 2 * PAGE:
                break
            lib.must_malloc(min(lib.top() - PAGE, _C_BLOCK) - SIZE_SZ)
        brk = lib.brk()
        spacers.append(lib.must_malloc(lib.top() + PAGE))
        if lib.brk() != brk:
            break
    d = lib.must_malloc(lib.top() - _TOP_BEFORE_C - SIZE_SZ)
    c = lib.must_malloc(_C_BLOCK - SIZE_SZ)
    page_start = align_up(a, PAGE)
    page_bytes = _align_down(a + _TRIM_BLOCK - SIZE_SZ, PAGE) - page_start
    brk = lib.brk()
    lib.free(a)
    below_move = lib.brk() - brk
    resident = lib.resident_pages(page_start, page_bytes, vector) * PAGE
    brk = lib.brk()
    lib.free(c)
    small_move, small_top = lib.brk() - brk, lib.top()
    for spacer in spacers:
        lib.free(spacer)  # D above the last one is still live: no trim yet
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
        "flags": lib.word(pointer) & FLAG_BITS,
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
        end = pointer - 2 * SIZE_SZ + (lib.word(pointer) & ~FLAG_BITS)
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
    length = word & ~FLAG_BITS
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
    peak, chunk = lib.brk(), lib.word(pointers[0]) & ~FLAG_BITS
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


def main(argv: list[str]) -> int:
    """The child's entry point: ``argv`` is a measurement's name and its parameters as JSON.

    Prints the figures as JSON on stdout.
    """
    import gc

    gc.disable()  # a collection in the middle of a measured step would free objects
    name, params = argv[0], json.loads(argv[1])
    print(json.dumps(_MEASURES[name](**params)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
