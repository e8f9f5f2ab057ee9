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
  mallocs and frees blocks above 128 KiB. So the child runs one module of its own,
  ``stlalloc/probe/_measure.py`` (the constants and the measurements), which imports
  nothing heavier than ctypes and json, and is sent it compiled.
* An interpreter has called malloc thousands of times before any probe starts, so no probe
  sees a virgin heap. Each probe sets up the state it needs from what it finds (the top
  chunk's size, the free memory elsewhere) and says so in its docstring.
* The child runs without ``MALLOC_*`` and ``GLIBC_TUNABLES`` in its environment: setting
  malloc's tunables switches the dynamic threshold off, and the claims are about glibc's
  defaults.
* Where ``strace`` is installed and allowed to trace, claims 1 and 5 also report what the
  kernel saw; without it they rest on the break and maps deltas alone.

Only ``probe_pool`` needs the native extension, and it imports it when called.

The package: ``_measure`` (the child's code), ``_child`` (running it), ``results`` (what
the probes return), ``claims`` (the probes). Everything public is here.
"""

from stlalloc.probe._measure import (
    DEFAULT_MMAP_THRESHOLD,
    DEFAULT_MMAP_THRESHOLD_MAX,
    DEFAULT_TOP_PAD,
    DEFAULT_TRIM_THRESHOLD,
    IS_MMAPPED,
    MALLOC_ALIGNMENT,
    MINSIZE,
    NON_MAIN_ARENA,
    PAGE,
    PREV_INUSE,
    SIZE_SZ,
    KiB,
    MiB,
    mmapped_size,
    request2size,
)
from stlalloc.probe.claims import (
    CLAIM_PROBES,
    as_json,
    glibc_version,
    probe_chunk_header,
    probe_dynamic_threshold,
    probe_first_touch,
    probe_library_calls,
    probe_pool,
    probe_thresholds,
    probe_top_pad,
    probe_trim,
    require_glibc,
    run_all,
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

__all__ = [
    "KiB",
    "MiB",
    "SIZE_SZ",
    "MALLOC_ALIGNMENT",
    "MINSIZE",
    "PREV_INUSE",
    "IS_MMAPPED",
    "NON_MAIN_ARENA",
    "DEFAULT_MMAP_THRESHOLD",
    "DEFAULT_MMAP_THRESHOLD_MAX",
    "DEFAULT_TRIM_THRESHOLD",
    "DEFAULT_TOP_PAD",
    "PAGE",
    "request2size",
    "mmapped_size",
    "glibc_version",
    "require_glibc",
    "Finding",
    "Placement",
    "LibraryCalls",
    "Thresholds",
    "Trim",
    "DynamicThreshold",
    "TopPad",
    "Chunk",
    "ChunkHeader",
    "FirstTouch",
    "PoolVsMalloc",
    "Evidence",
    "probe_library_calls",
    "probe_thresholds",
    "probe_trim",
    "probe_dynamic_threshold",
    "probe_top_pad",
    "probe_chunk_header",
    "probe_first_touch",
    "probe_pool",
    "CLAIM_PROBES",
    "run_all",
    "as_json",
]
