//! Snapshot of a pool's state, with SPEC §4's field names.

use crate::os::syscalls::SyscallCounts;

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

impl PoolStats {
    /// Adds the state of another heap of the same pool (same parameters): every count and
    /// size summed, class by class for the free lists.
    pub fn add_heap(&mut self, other: &PoolStats) {
        self.heap_size += other.heap_size;
        self.chunk_bytes_left += other.chunk_bytes_left;
        for (n, m) in self
            .free_list_lengths
            .iter_mut()
            .zip(&other.free_list_lengths)
        {
            *n += m;
        }
        self.live_blocks += other.live_blocks;
        self.live_bytes += other.live_bytes;
        self.large_live_blocks += other.large_live_blocks;
        self.large_live_bytes += other.large_live_bytes;
        self.refills += other.refills;
        self.chunk_requests += other.chunk_requests;
        self.arena_reserved += other.arena_reserved;
        self.arena_used += other.arena_used;
        self.arena_resident += other.arena_resident;
        self.upstream_chunk_bytes += other.upstream_chunk_bytes;
        let (s, o) = (&mut self.syscalls, &other.syscalls);
        s.mmap += o.mmap;
        s.munmap += o.munmap;
        s.mprotect += o.mprotect;
        s.madvise += o.madvise;
    }
}
