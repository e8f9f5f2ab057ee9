//! A `SharedPool` seen whole: every heap's state, heap 0 first, summed or concatenated,
//! each heap read under its lock. With one heap these are exactly that pool's answers.

use super::SharedPool;
use crate::checked::spans::Region;
use crate::error::AllocError;
use crate::raw_lock::RawLock;
use crate::sgi::upstream::Upstream;
use crate::shared::heaps::{Heap, PoolGuard};
use crate::stats::PoolStats;

impl<U: Upstream + Clone + Send, L: RawLock> SharedPool<U, L> {
    /// How many heaps exist now (one until a second thread allocates).
    pub fn heap_count(&self) -> usize {
        self.heaps.iter().count()
    }

    /// K, the most heaps this pool makes.
    pub fn max_heaps(&self) -> usize {
        self.heaps.slots()
    }

    /// Debug mode: fill every new chunk of every heap with `byte`.
    pub fn set_chunk_fill(&self, byte: Option<u8>) {
        self.heaps.set_chunk_fill(byte);
    }

    /// The heaps' statistics summed (parameters are common to all).
    pub fn stats(&self) -> PoolStats {
        let mut heaps = self.heaps.iter();
        let mut total = heaps.next().expect("heap 0 always exists").lock().stats();
        for h in heaps {
            total.add_heap(&h.lock().stats());
        }
        total
    }

    /// The addresses on free list `i` of every heap, heap 0's first, each head first.
    pub fn free_list(&self, i: usize) -> Vec<usize> {
        self.heaps
            .iter()
            .flat_map(|h| h.lock().free_list(i))
            .collect()
    }

    /// Every heap's regions (`CheckedPool::layout`), heap 0's first.
    pub fn layout(&self) -> Vec<Region> {
        self.heaps.iter().flat_map(|h| h.lock().layout()).collect()
    }

    /// Gives every heap's pages and upstream chunks back; refused, with every heap left
    /// as it was, while any block is live in any heap.
    pub fn release(&self) -> Result<(), AllocError> {
        // All locked at once (in index order), so no block appears between check and act.
        let mut pools: Vec<PoolGuard<'_, U, L>> = self.heaps.iter().map(Heap::lock).collect();
        let blocks: usize = pools
            .iter()
            .map(|p| {
                let s = p.stats();
                s.live_blocks + s.large_live_blocks
            })
            .sum();
        if blocks > 0 {
            return Err(AllocError::LiveBlocks { blocks });
        }
        pools.iter_mut().try_for_each(|p| p.release())
    }

    /// Panics if any heap breaks an invariant, or their sum breaks conservation.
    pub fn check_invariants(&self) {
        for h in self.heaps.iter() {
            h.lock().check_invariants();
        }
        let s = self.stats();
        let free: usize = (s.free_list_lengths.iter().enumerate())
            .map(|(i, n)| n * self.params.class_size(i))
            .sum();
        assert_eq!(
            s.heap_size,
            s.live_bytes + free + s.chunk_bytes_left,
            "Σ conservation: Σ heap_size == Σ live_bytes + Σ free bytes + Σ chunk_bytes_left"
        );
    }
}
