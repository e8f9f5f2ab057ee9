"""The statistics fields the tests compare to show that a refused call changed nothing."""

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
