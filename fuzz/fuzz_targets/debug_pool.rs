//! The debug pool (size cookies, freed-byte fill) over a small checked pool, driven by
//! arbitrary calls and checked against the model: a block is freed only with the exact
//! size it was asked with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use stlalloc_core::adaptors::debug::DebugPool;
use stlalloc_core::{AllocError, MallocAlloc, Params, PoolStats, SharedPool};
use stlalloc_fuzz::{Block, Model, Op, Subject};

struct Debug {
    pool: DebugPool<Arc<MallocAlloc>>,
    arena: (usize, usize),
}

impl Subject for Debug {
    type A = DebugPool<Arc<MallocAlloc>>;
    type Stats = PoolStats;
    fn alloc(&self) -> &Self::A {
        &self.pool
    }
    fn stats(&self) -> PoolStats {
        self.pool.pool().stats()
    }
    fn extent(&self, n: usize) -> usize {
        let params = self.pool.pool().params();
        let header = params.align();
        match n.checked_add(header) {
            Some(inner) if inner <= params.max_bytes() => params.round_up(inner) - header,
            _ => n,
        }
    }
    fn frees_with(&self, asked: usize, n: usize) -> bool {
        asked == n
    }
    fn may_release(&self, live: &[Block]) -> bool {
        live.is_empty()
    }
    fn release(&self) -> Result<(), AllocError> {
        self.pool.pool().release()
    }
    fn region(&self) -> (usize, usize) {
        self.arena
    }
    fn check(&self, live: &[Block]) {
        let pool = self.pool.pool();
        pool.check_invariants();
        let s = pool.stats();
        assert_eq!(s.live_blocks + s.large_live_blocks, live.len());
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let upstream = Arc::new(MallocAlloc::new(Some(1 << 16)));
    let pool = SharedPool::new(Params::default(), 8192, upstream).expect("a valid pool");
    let first = &pool.layout()[0];
    let arena = (first.base, first.len);
    let pool = DebugPool::new(Arc::new(pool));
    Model::new(Debug { pool, arena }).run(&ops);
});
