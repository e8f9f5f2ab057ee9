//! The pool against a plain model of SGI's algorithm: after every step of random operation
//! sequences the two agree on every address handed out, every free list (in order),
//! `heap_size` and `chunk_bytes_left`, and the pool's invariants (SPEC §3's conservation
//! equation among them) hold.
//!
//! The model names memory as `(region, offset)`: region 0 is the arena, region k the k-th
//! chunk taken from upstream, so it needs no real addresses to predict the pool's.

use proptest::prelude::*;
use std::sync::Arc;
use stlalloc_core::{AllocError, MallocAlloc, Params, SharedPool};

type Addr = (usize, usize);

struct Model {
    align: usize,
    max: usize,
    refill: usize,
    free_list: Vec<Vec<Addr>>, // head last
    start_free: Addr,
    end_free: Addr,
    heap_size: usize,
    arena_size: usize,
    brk: usize,
    chunks: usize,
    upstream_live: usize,
    upstream_limit: usize,
}

impl Model {
    fn round_up(&self, n: usize) -> usize {
        (n + self.align - 1) & !(self.align - 1)
    }
    fn index(&self, n: usize) -> usize {
        n.div_ceil(self.align) - 1
    }
    fn left(&self) -> usize {
        self.end_free.1 - self.start_free.1
    }

    /// `None` when the upstream limit refuses the chunk (the pool raises MemoryError).
    fn allocate(&mut self, n: usize) -> Option<Option<Addr>> {
        if n > self.max {
            if self.upstream_live + n > self.upstream_limit {
                return None;
            }
            self.upstream_live += n;
            return Some(None);
        }
        let i = self.index(n);
        if let Some(a) = self.free_list[i].pop() {
            return Some(Some(a));
        }
        self.refill(self.round_up(n)).map(Some)
    }

    fn refill(&mut self, size: usize) -> Option<Addr> {
        let (chunk, nobjs) = self.chunk_alloc(size, self.refill)?;
        let i = self.index(size);
        for k in (1..nobjs).rev() {
            self.free_list[i].push((chunk.0, chunk.1 + k * size));
        }
        Some(chunk)
    }

    fn chunk_alloc(&mut self, size: usize, nobjs: usize) -> Option<(Addr, usize)> {
        loop {
            let total = size * nobjs;
            let left = self.left();
            if left >= size {
                let nobjs = if left >= total { nobjs } else { left / size };
                let r = self.start_free;
                self.start_free.1 += nobjs * size;
                return Some((r, nobjs));
            }
            let bytes_to_get = 2 * total + self.round_up(self.heap_size >> 4);
            if left > 0 {
                let i = self.index(left);
                self.free_list[i].push(self.start_free);
            }
            self.start_free = (0, 0);
            self.end_free = (0, 0);
            if self.arena_size - self.brk >= bytes_to_get {
                self.start_free = (0, self.brk);
                self.end_free = (0, self.brk + bytes_to_get);
                self.brk += bytes_to_get;
                self.heap_size += bytes_to_get;
                continue;
            }
            let borrowed = (self.index(size)..self.free_list.len())
                .find_map(|i| self.free_list[i].pop().map(|a| (a, (i + 1) * self.align)));
            if let Some((a, bytes)) = borrowed {
                self.start_free = a;
                self.end_free = (a.0, a.1 + bytes);
                continue;
            }
            if self.upstream_live + bytes_to_get > self.upstream_limit {
                return None;
            }
            self.upstream_live += bytes_to_get;
            self.chunks += 1;
            self.start_free = (self.chunks, 0);
            self.end_free = (self.chunks, bytes_to_get);
            self.heap_size += bytes_to_get;
        }
    }

    fn deallocate(&mut self, a: Option<Addr>, n: usize) {
        match a {
            None => self.upstream_live -= n,
            Some(a) => {
                let i = self.index(n);
                self.free_list[i].push(a);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize),
    Free(usize),
    Realloc(usize, usize),
}

fn op(max: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1..=max + max / 4).prop_map(Op::Alloc),
        4 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), 1..=max + max / 4).prop_map(|(i, n)| Op::Realloc(i, n)),
    ]
}

struct Harness {
    pool: SharedPool,
    model: Model,
    live: Vec<(usize, usize, Option<Addr>)>, // (address, size, model address)
}

impl Harness {
    fn new(params: Params, arena_size: usize, limit: usize) -> Self {
        let upstream = Arc::new(MallocAlloc::new(Some(limit)));
        let pool = SharedPool::new(params, arena_size, upstream).unwrap();
        let reserved = pool.stats().arena_reserved;
        let model = Model {
            align: params.align(),
            max: params.max_bytes(),
            refill: params.refill(),
            free_list: vec![Vec::new(); params.nfreelists()],
            start_free: (0, 0),
            end_free: (0, 0),
            heap_size: 0,
            arena_size: reserved,
            brk: 0,
            chunks: 0,
            upstream_live: 0,
            upstream_limit: limit,
        };
        Self {
            pool,
            model,
            live: Vec::new(),
        }
    }

    /// The model's name for a real pool address.
    fn region_of(&self, addr: usize) -> Addr {
        let pool = self.pool.lock_heap(0).unwrap();
        let arena = pool.pool().arena();
        if addr >= arena.base() && addr < arena.base() + arena.reserved() {
            return (0, addr - arena.base());
        }
        for (k, (base, len)) in pool.pool().upstream_chunks().enumerate() {
            if addr >= base && addr < base + len {
                return (k + 1, addr - base);
            }
        }
        panic!("{addr:#x} is in no region of the pool");
    }

    fn alloc(&mut self, n: usize) {
        let expected = self.model.allocate(n);
        match (self.pool.allocate(n), expected) {
            (Ok(p), Some(m)) => {
                if let Some(m) = m {
                    assert_eq!(self.region_of(p), m, "allocate({n}) address");
                }
                assert_eq!(p % self.model.align, 0);
                self.live.push((p, n, m));
            }
            (Err(AllocError::OutOfMemory { .. }), None) => {}
            (got, want) => panic!("allocate({n}): pool {got:?}, model {want:?}"),
        }
    }

    fn free(&mut self, i: usize) {
        if self.live.is_empty() {
            return;
        }
        let (p, n, m) = self.live.swap_remove(i % self.live.len());
        self.pool.deallocate(p, n).unwrap();
        self.model.deallocate(m, n);
    }

    fn realloc(&mut self, i: usize, new: usize) {
        if self.live.is_empty() {
            return;
        }
        let k = i % self.live.len();
        let (p, old, m) = self.live[k];
        let max = self.model.max;
        // SPEC §3 reallocate, written out on the model.
        if old > max && new > max {
            // realloc in place needs only the difference; above malloc's 16-byte alignment
            // the upstream allocates, copies and frees, so both blocks are live at once.
            let peak = if self.model.align > 16 { old } else { 0 };
            if self.model.upstream_live - old + new + peak > self.model.upstream_limit {
                assert!(self.pool.reallocate(p, old, new).is_err());
                return;
            }
            self.model.upstream_live = self.model.upstream_live - old + new;
            self.live[k] = (self.pool.reallocate(p, old, new).unwrap(), new, None);
            return;
        }
        if old <= max && new <= max && self.model.round_up(old) == self.model.round_up(new) {
            assert_eq!(self.pool.reallocate(p, old, new).unwrap(), p);
            self.live[k].1 = new;
            return;
        }
        let expected = self.model.allocate(new);
        match (self.pool.reallocate(p, old, new), expected) {
            (Ok(q), Some(mq)) => {
                if let Some(mq) = mq {
                    assert_eq!(self.region_of(q), mq);
                }
                self.model.deallocate(m, old);
                self.live[k] = (q, new, mq);
            }
            (Err(AllocError::OutOfMemory { .. }), None) => {}
            (got, want) => panic!("reallocate: pool {got:?}, model {want:?}"),
        }
    }

    fn compare(&self) {
        let pool = self.pool.lock_heap(0).unwrap();
        pool.check_invariants();
        pool.check_tiling();
        let core = pool.pool();
        assert_eq!(core.heap_size(), self.model.heap_size, "heap_size");
        assert_eq!(
            core.chunk_bytes_left(),
            self.model.left(),
            "chunk_bytes_left"
        );
        drop(pool);
        for (i, list) in self.model.free_list.iter().enumerate() {
            let real = self.pool.free_list(i);
            let real: Vec<Addr> = real.iter().map(|&a| self.region_of(a)).collect();
            let mut model = list.clone();
            model.reverse();
            assert_eq!(real, model, "free_list[{i}]");
        }
    }
}

fn run(params: Params, arena_size: usize, limit: usize, ops: &[Op]) {
    let mut h = Harness::new(params, arena_size, limit);
    for op in ops {
        match *op {
            Op::Alloc(n) => h.alloc(n),
            Op::Free(i) => h.free(i),
            Op::Realloc(i, n) => h.realloc(i, n),
        }
        h.compare();
    }
    for (p, n, _) in std::mem::take(&mut h.live) {
        h.pool.deallocate(p, n).unwrap();
    }
    h.pool.release().unwrap();
    assert_eq!(h.pool.stats().heap_size, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn default_pool_matches_sgi(ops in prop::collection::vec(op(128), 1..2000)) {
        run(Params::default(), 1 << 16, 1 << 20, &ops);
    }

    #[test]
    fn any_parameters_match_sgi(
        shift in 3u32..6,
        classes in 1usize..20,
        refill in 1usize..30,
        pages in 0usize..4,
        limit in 0usize..200_000,
        ops in prop::collection::vec(op(64), 1..1500),
    ) {
        let align = 1 << shift;
        let params = Params::new(align, align * classes, refill).unwrap();
        let ops: Vec<Op> = ops.into_iter().map(|o| match o {
            Op::Alloc(n) => Op::Alloc(n * align * classes / 64 + 1),
            Op::Realloc(i, n) => Op::Realloc(i, n * align * classes / 64 + 1),
            f => f,
        }).collect();
        run(params, pages * 4096, limit, &ops);
    }
}

/// The bar: sequences of 10,000 operations, compared after every step.
#[test]
fn ten_thousand_operations_match_sgi() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 4,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(op(128), 10_000), |ops| {
            run(Params::default(), 1 << 15, 1 << 18, &ops);
            Ok(())
        })
        .unwrap();
}
