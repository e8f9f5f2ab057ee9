"""The probes: each measures one claim of SPEC section 6 in a fresh child and judges it."""

from __future__ import annotations

import os
import platform
import struct
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, cast

from stlalloc.probe._child import (
    first_break_move,
    memory_syscalls_between_marks,
    run_child,
    run_traced,
)
from stlalloc.probe._measure import (
    DEFAULT_MMAP_THRESHOLD_MAX,
    DEFAULT_TOP_PAD,
    DEFAULT_TRIM_THRESHOLD,
    FLAG_BITS,
    IS_MMAPPED,
    MINSIZE,
    NON_MAIN_ARENA,
    PAGE,
    PREV_INUSE,
    SIZE_SZ,
    KiB,
    MiB,
    align_up,
    mmapped_size,
    request2size,
)
from stlalloc.probe.results import (
    Chunk,
    ChunkHeader,
    DynamicThreshold,
    Evidence,
    Finding,
    FirstTouch,
    LibraryCalls,
    Placement,
    PoolVsMalloc,
    Thresholds,
    TopPad,
    Trim,
)

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
    figures, trace = run_child("library_calls", {"calls": calls}, trace="%memory,%file")
    traced = None if trace is None else memory_syscalls_between_marks(trace)
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
    figures, _ = run_child("thresholds")
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
    figures, _ = run_child("trim")
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
    figures, _ = run_child("dynamic_threshold")
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
    figures, _ = run_child("top_pad")
    fresh = run_traced([sys.executable, "-I", "-S", "-c", "pass"], "brk")
    fresh_move = None if fresh is None else first_break_move(fresh[1])
    needed = request2size(figures["request"]) + MINSIZE - figures["top_bytes"]
    pad = figures["break_move"] - needed
    first_move = align_up(MINSIZE + MINSIZE + pad, PAGE)
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
        chunk_bytes=word & ~FLAG_BITS,
        flags=word & FLAG_BITS,
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
    figures, _ = run_child("chunk_header")
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
    figures, _ = run_child("first_touch", params)
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
    pool, _ = run_child("pool_side", {**params, "arena_size": arena_size, "path": path})
    libc, _ = run_child("malloc_side", params)
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
