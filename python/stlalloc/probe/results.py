"""What the probes return: one frozen dataclass per claim of SPEC section 6."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from stlalloc.probe._measure import IS_MMAPPED


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
