//! The monotonic allocator (a pure break pointer) over a small arena and a small upstream
//! limit, driven by arbitrary calls and checked against the model: blocks never overlap,
//! keep their bytes, and `release()` retires them all unless one is held.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use stlalloc_core::adaptors::monotonic::{Monotonic, MonotonicStats};
use stlalloc_core::{AllocError, MallocAlloc};
use stlalloc_fuzz::{Block, Model, Op, Subject};

#[derive(Arbitrary, Debug)]
struct Input {
    align_log: u8,
    ops: Vec<Op>,
}

struct Mono {
    m: Monotonic,
    arena: (usize, usize),
}

impl Subject for Mono {
    type A = Monotonic;
    type Stats = MonotonicStats;
    fn alloc(&self) -> &Monotonic {
        &self.m
    }
    fn stats(&self) -> MonotonicStats {
        self.m.stats()
    }
    fn extent(&self, n: usize) -> usize {
        n.next_multiple_of(8)
    }
    fn frees_with(&self, asked: usize, n: usize) -> bool {
        n != 0 && n.checked_next_multiple_of(8) == Some(self.extent(asked))
    }
    fn may_release(&self, live: &[Block]) -> bool {
        live.iter().all(|b| !b.claimed && b.pins == 0)
    }
    fn release(&self) -> Result<(), AllocError> {
        self.m.release()
    }
    fn region(&self) -> (usize, usize) {
        self.arena
    }
    fn check(&self, live: &[Block]) {
        self.m.check_invariants();
        let s = self.m.stats();
        assert_eq!(s.live_blocks, live.len());
        assert_eq!(
            s.live_bytes,
            live.iter().map(|b| self.extent(b.asked)).sum::<usize>()
        );
    }
}

fuzz_target!(|input: Input| {
    let align = 8 << (input.align_log % 4);
    let upstream = Arc::new(MallocAlloc::new(Some(1 << 16)));
    let m = Monotonic::new(8192, align, upstream).expect("a valid allocator");
    let base = m.allocate(1).expect("a fresh arena has room");
    m.deallocate(base, 1).expect("just allocated");
    let arena = (base, 8192);
    Model::new(Mono { m, arena }).run(&input.ops);
});
