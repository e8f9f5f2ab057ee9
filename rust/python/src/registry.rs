//! Every live built-in allocator of the process (weakly), so that an address a Python
//! allocator returns can be traced to the built-in block it lies in (`protocol`), and
//! `stlalloc.testing` can write only through blocks a built-in allocator vouches for.
//!
//! Each class registers its core at construction. Equal allocators (same
//! `equality_key`: a pool and the TracingAllocators around it; all MallocAllocators) see
//! the same blocks, so only one of each is asked.

use std::sync::{Arc, Mutex, Weak};
use stlalloc_core::BlockAllocator;

static REGISTRY: Mutex<Vec<Weak<dyn BlockAllocator>>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<Weak<dyn BlockAllocator>>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn register(core: &Arc<dyn BlockAllocator>) {
    let mut all = registry();
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(core));
}

/// `(allocator, start, size)` for every live built-in block spanning `[p, p+n)`: one
/// block of memory can be a block of several allocators (a pool's block lent to a Python
/// allocator, then handed out by a TracingAllocator around it).
pub fn blocks_spanning(p: usize, n: usize) -> Vec<(Arc<dyn BlockAllocator>, usize, usize)> {
    let live: Vec<Arc<dyn BlockAllocator>> = registry().iter().filter_map(Weak::upgrade).collect();
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
