//! The checked pool as Python gets it (`SharedPool`, one heap: a `CheckedPool` behind a
//! lock), any parameters, a small arena and a small upstream limit so both run out,
//! driven by arbitrary calls and checked against the model and SPEC §3's conservation:
//! `heap_size == live_bytes + Σ free_list_lengths[i]*(i+1)*align + chunk_bytes_left`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use stlalloc_core::{AllocError, MallocAlloc, Params, PoolStats, SharedPool};
use stlalloc_fuzz::{Block, Model, Op, Subject};

#[derive(Arbitrary, Debug)]
struct Input {
    align_log: u8,
    classes: u8,
    refill: u8,
    arena_pages: u8,
    ops: Vec<Op>,
}

struct Pool {
    pool: SharedPool,
    arena: (usize, usize),
}

impl Subject for Pool {
    type A = SharedPool;
    type Stats = PoolStats;
    fn alloc(&self) -> &SharedPool {
        &self.pool
    }
    fn stats(&self) -> PoolStats {
        self.pool.stats()
    }
    fn extent(&self, n: usize) -> usize {
        let params = self.pool.params();
        if n <= params.max_bytes() {
            params.round_up(n)
        } else {
            n
        }
    }
    fn frees_with(&self, asked: usize, n: usize) -> bool {
        let max = self.pool.params().max_bytes();
        if asked > max {
            n == asked
        } else {
            (1..=max).contains(&n) && self.extent(n) == self.extent(asked)
        }
    }
    fn may_release(&self, live: &[Block]) -> bool {
        live.is_empty()
    }
    fn release(&self) -> Result<(), AllocError> {
        self.pool.release()
    }
    fn region(&self) -> (usize, usize) {
        self.arena
    }
    fn check(&self, live: &[Block]) {
        self.pool.check_invariants();
        let s = self.pool.stats();
        let free: usize = s
            .free_list_lengths
            .iter()
            .enumerate()
            .map(|(i, len)| len * (i + 1) * s.align)
            .sum();
        assert_eq!(
            s.heap_size,
            s.live_bytes + free + s.chunk_bytes_left,
            "conservation"
        );
        let max = s.max_bytes;
        let small = live.iter().filter(|b| b.asked <= max);
        assert_eq!(s.live_blocks, small.clone().count());
        assert_eq!(
            s.live_bytes,
            small.map(|b| self.extent(b.asked)).sum::<usize>()
        );
        assert_eq!(s.large_live_blocks, live.len() - s.live_blocks);
    }
}

fuzz_target!(|input: Input| {
    let align = 8 << (input.align_log % 4);
    let max_bytes = align * (1 + usize::from(input.classes % 32));
    let refill = 1 + usize::from(input.refill % 24);
    let Ok(params) = Params::new(align, max_bytes, refill) else {
        return;
    };
    let arena = 4096 * (1 + usize::from(input.arena_pages % 8));
    let upstream = Arc::new(MallocAlloc::new(Some(1 << 16)));
    let pool = SharedPool::new(params, arena, upstream).expect("a valid pool");
    let first = &pool.layout()[0];
    let arena = (first.base, first.len);
    Model::new(Pool { pool, arena }).run(&input.ops);
});
