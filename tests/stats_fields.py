"""The statistics the tests check: the fields they compare to show that a refused call changed
nothing, and SPEC §3's conservation equation."""

# What a pool's operations change (arena_resident follows page touches, not calls).
POOL_STATE_FIELDS = (
    "heap_size",
    "chunk_bytes_left",
    "free_list_lengths",
    "live_blocks",
    "live_bytes",
    "large_live_blocks",
    "large_live_bytes",
    "refills",
    "chunk_requests",
    "arena_used",
    "upstream_chunk_bytes",
    "syscalls",
)
# Every field of PoolStats.
POOL_FIELDS = (
    "align",
    "max_bytes",
    "refill",
    "nfreelists",
    "arena_reserved",
    "arena_resident",
    *POOL_STATE_FIELDS,
)
# What allocations and frees change in MallocStats, and what failures change.
MALLOC_COUNT_FIELDS = ("live_blocks", "live_bytes", "allocations", "deallocations")
MALLOC_FAIL_FIELDS = ("failures", "handler_calls")
MALLOC_FIELDS = MALLOC_COUNT_FIELDS + MALLOC_FAIL_FIELDS


def conserved(st):
    """SPEC §3: every byte of the heap is live, on a free list, or in the chunk."""
    free = sum(k * (i + 1) * st.align for i, k in enumerate(st.free_list_lengths))
    return st.heap_size == st.live_bytes + free + st.chunk_bytes_left
