//! Every live built-in allocator of the process (weakly), so that an address a foreign
//! allocator returns can be traced to the built-in block it lies in (the ledger), and a
//! checker can write only through blocks a built-in allocator vouches for.
//!
//! Each built-in allocator registers its core at construction. Equal allocators (same
//! `equality_key`: a pool and the tracers around it; every `MallocAlloc`) see the same
//! blocks, so only one of each is asked.

use crate::block_allocator::BlockAllocator;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// A set of allocators, held weakly: registering keeps nothing alive.
pub struct Registry {
    allocators: Mutex<Vec<Weak<dyn BlockAllocator>>>,
}

/// The process-wide registry, the one [`register`] and [`blocks_spanning`] use.
static PROCESS: Registry = Registry::new();

/// `(allocator, start, size)`: a live block and who vouches for it.
pub type Spanning = (Arc<dyn BlockAllocator>, usize, usize);

impl Registry {
    pub const fn new() -> Self {
        Registry {
            allocators: Mutex::new(Vec::new()),
        }
    }

    fn allocators(&self) -> MutexGuard<'_, Vec<Weak<dyn BlockAllocator>>> {
        self.allocators.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `core`, and forgets the allocators that are gone.
    pub fn register(&self, core: &Arc<dyn BlockAllocator>) {
        let mut all = self.allocators();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(core));
    }

    /// Every live block spanning `[p, p+n)`, one per equality key: one block of memory can
    /// be a block of several allocators (a pool's block lent to a foreign allocator, then
    /// handed out by a tracer around that one).
    pub fn blocks_spanning(&self, p: usize, n: usize) -> Vec<Spanning> {
        // Upgraded first, so no allocator is asked with this lock held.
        let live: Vec<Arc<dyn BlockAllocator>> =
            self.allocators().iter().filter_map(Weak::upgrade).collect();
        let mut keys = Vec::new();
        let mut out = Vec::new();
        for core in live {
            let key = core.equality_key();
            if keys.contains(&key) {
                continue;
            }
            keys.push(key);
            if let Ok((start, size)) = core.block_spanning(p, n) {
                out.push((core, start, size));
            }
        }
        out
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `core` in the process-wide registry.
pub fn register(core: &Arc<dyn BlockAllocator>) {
    PROCESS.register(core)
}

/// [`Registry::blocks_spanning`] over the process-wide registry.
pub fn blocks_spanning(p: usize, n: usize) -> Vec<Spanning> {
    PROCESS.blocks_spanning(p, n)
}

/// The process-wide registry itself, for the process-wide ledger.
pub(super) fn process() -> &'static Registry {
    &PROCESS
}
