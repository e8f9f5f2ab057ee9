//! Snapshot of a pool's state, with SPEC §4's field names.

use crate::syscalls::SyscallCounts;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    pub align: usize,
    pub max_bytes: usize,
    pub refill: usize,
    pub nfreelists: usize,
    pub heap_size: usize,
    pub chunk_bytes_left: usize,
    pub free_list_lengths: Vec<usize>,
    /// Pool blocks handed out, and their rounded sizes.
    pub live_blocks: usize,
    pub live_bytes: usize,
    /// Blocks above `max_bytes`, sent to the upstream allocator.
    pub large_live_blocks: usize,
    pub large_live_bytes: usize,
    pub refills: u64,
    pub chunk_requests: u64,
    pub arena_reserved: usize,
    pub arena_used: usize,
    pub arena_resident: usize,
    pub upstream_chunk_bytes: usize,
    pub syscalls: SyscallCounts,
}
