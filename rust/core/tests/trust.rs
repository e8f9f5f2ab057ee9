//! Misuse at the edges of the address space and of the size range, and a move racing a
//! free: every bad `(p, n)` is an error that names what is wrong and changes nothing.

use std::sync::Arc;
use stlalloc_core::adaptors::debug::DebugPool;
use stlalloc_core::adaptors::monotonic::Monotonic;
use stlalloc_core::block_allocator::BlockAllocator;
use stlalloc_core::{AllocError, MallocAlloc, Params, SharedPool};

fn pool(align: usize, arena: usize) -> SharedPool {
    let params = Params::new(align, 128, 20).unwrap();
    SharedPool::new(params, arena, Arc::new(MallocAlloc::new(None))).unwrap()
}

/// Addresses and sizes around a live block `a` of `n` bytes (`len` rounded), the region's
/// edges and the ends of the address space.
fn bad_calls(a: usize, len: usize, n: usize, arena: (usize, usize)) -> Vec<(usize, usize)> {
    let mut addrs = vec![
        0,
        1,
        a + 1,
        a + 8,
        a + len - 1,
        a + len,
        arena.0,
        arena.0 + arena.1 - 1,
        arena.0 + arena.1,
        arena.0.wrapping_sub(8),
        usize::MAX,
        usize::MAX - 7,
        usize::MAX & !4095,
    ];
    addrs.retain(|&p| p != a);
    let sizes = [
        0,
        1,
        n,
        len,
        129,
        4096,
        isize::MAX as usize,
        usize::MAX - 7,
        usize::MAX,
    ];
    let mut calls: Vec<_> = addrs
        .iter()
        .flat_map(|&p| sizes.iter().map(move |&s| (p, s)))
        .collect();
    calls.extend([
        (a, 0),
        (a, usize::MAX),
        (a, usize::MAX - 7),
        (a, 129),
        (a, len + 8),
    ]);
    calls.retain(|&c| c != (0, 0));
    calls
}

#[test]
fn the_pool_refuses_every_edge_and_changes_nothing() {
    for align in [8, 16] {
        let p = pool(align, 1 << 16);
        let other = pool(align, 1 << 16);
        let a = p.allocate(24).unwrap();
        let theirs = other.allocate(24).unwrap();
        let freed = p.allocate(24).unwrap();
        p.deallocate(freed, 24).unwrap();
        let base = a; // a fresh pool's first block is its arena's first byte
        let len = (24 + align - 1) & !(align - 1);
        let before = p.stats();
        let mut calls = bad_calls(a, len, 24, (base, 1 << 16));
        calls.extend([(theirs, 24), (freed, 24), (a + 20 * len, 24)]);
        for (q, n) in calls {
            let errs = [
                p.deallocate(q, n).err(),
                p.reallocate(q, n, 40).err(),
                p.reallocate(q, n, 0).err(),
            ];
            for e in errs {
                let e = e.unwrap_or_else(|| panic!("({q:#x}, {n}) accepted"));
                assert!(!e.to_string().is_empty());
            }
            let _ = p.block_spanning(q, n);
            let _ = p.owns(q);
            assert_eq!(p.stats(), before, "({q:#x}, {n}) changed the pool");
        }
        p.check_invariants();
        p.deallocate(a, 24).unwrap();
    }
}

#[test]
fn an_interior_granule_with_size_zero_is_named_as_inside_a_block() {
    let p = pool(8, 1 << 16);
    let a = p.allocate(24).unwrap();
    match p.deallocate(a + 8, 0) {
        Err(AllocError::Interior { addr, start, size }) => {
            assert_eq!((addr, start, size), (a + 8, a, 24));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.deallocate(a, 0),
        Err(AllocError::SizeMismatch {
            size: 0,
            block_size: 24,
            ..
        })
    ));
    p.check_invariants();
}

#[test]
fn the_debug_pool_and_the_monotonic_allocator_refuse_the_edges_too() {
    let upstream = Arc::new(MallocAlloc::new(None));
    let d = DebugPool::new(Arc::new(pool(8, 1 << 16)));
    let q = d.allocate(24).unwrap();
    let before = d.pool().stats();
    for (p, n) in bad_calls(q, 24, 24, (q - 8, 1 << 16)) {
        assert!(d.deallocate(p, n).is_err(), "debug ({p:#x}, {n})");
        assert!(d.reallocate(p, n, 8).is_err(), "debug ({p:#x}, {n})");
    }
    assert_eq!(d.pool().stats(), before);
    let m = Monotonic::<_>::new(1 << 16, 8, upstream).unwrap();
    let a = m.allocate(24).unwrap();
    let before = m.stats();
    for (p, n) in bad_calls(a, 24, 24, (a, 1 << 16)) {
        assert!(m.deallocate(p, n).is_err(), "monotonic ({p:#x}, {n})");
        assert!(m.reallocate(p, n, 8).is_err(), "monotonic ({p:#x}, {n})");
    }
    assert_eq!(m.stats(), before);
    m.check_invariants();
}

/// A `deallocate` that loses the race with a `reallocate` of the same block is told the
/// block is moving or gone, never that a view exports it (no view exists).
#[test]
fn a_free_racing_a_move_of_its_block_says_the_block_moves() {
    let p = Arc::new(
        SharedPool::<_>::with_heaps(
            Params::default(),
            1 << 20,
            Arc::new(MallocAlloc::new(None)),
            1,
        )
        .unwrap(),
    );
    let (mut moving, mut gone, mut freed) = (0, 0, 0);
    for _ in 0..20_000 {
        let a = p.allocate(24).unwrap();
        let barrier = std::sync::Barrier::new(2);
        let (moved, dropped) = std::thread::scope(|s| {
            let mover = s.spawn(|| {
                barrier.wait();
                p.reallocate(a, 24, 100)
            });
            let freer = s.spawn(|| {
                barrier.wait();
                p.deallocate(a, 24)
            });
            (mover.join().unwrap(), freer.join().unwrap())
        });
        match (&moved, &dropped) {
            (Ok(q), Err(AllocError::Moving { addr })) => {
                assert_eq!(*addr, a);
                moving += 1;
                p.deallocate(*q, 100).unwrap();
            }
            (Ok(q), Err(AllocError::NotLive { addr })) => {
                assert_eq!(*addr, a);
                gone += 1;
                p.deallocate(*q, 100).unwrap();
            }
            (Err(AllocError::NotLive { addr }), Ok(())) => {
                assert_eq!(*addr, a);
                freed += 1;
            }
            other => panic!("reallocate and deallocate of one block: {other:?}"),
        }
    }
    p.check_invariants();
    assert_eq!(p.stats().live_blocks, 0);
    assert!(moving + gone + freed == 20_000);
    eprintln!("moving {moving}, gone {gone}, freed first {freed}");
}

/// The fast paths serve sizes up to 62 granules (the most the block map's byte names);
/// larger pool classes take the full path. Around that edge, on one heap and on a biased
/// owner's, every size is served and freed exactly, and a free with a neighbouring size
/// is refused with the block's own size, changing nothing.
#[test]
fn the_fast_paths_edge_at_62_granules_refuses_neighbouring_sizes() {
    for (align, heaps) in [(8, 1), (8, 2), (16, 1), (16, 2)] {
        let params = Params::new(align, 128 * align, 20).unwrap();
        let upstream = Arc::new(MallocAlloc::new(None));
        let p: SharedPool = SharedPool::with_heaps(params, 1 << 20, upstream, heaps).unwrap();
        let edge = 62 * align;
        let sizes = [
            edge - align,
            edge - 1,
            edge,
            edge + 1,
            edge + align,
            128 * align,
        ];
        let blocks: Vec<_> = sizes.iter().map(|&n| (p.allocate(n).unwrap(), n)).collect();
        let before = p.stats();
        for &(q, n) in &blocks {
            let size = params.round_up(n);
            for wrong in [size - align, size + align] {
                match p.deallocate(q, wrong) {
                    Err(AllocError::SizeMismatch { block_size, .. }) => {
                        assert_eq!(block_size, size, "({q:#x}, {wrong})");
                    }
                    other => panic!("({q:#x}, {wrong}) of a {size}-byte block: {other:?}"),
                }
                assert!(p.deallocate_claimed(q, n).is_err(), "not a container's");
                assert_eq!(p.stats(), before, "({q:#x}, {wrong}) changed the pool");
            }
        }
        p.check_invariants();
        for &(q, n) in &blocks {
            p.deallocate(q, n).unwrap();
            assert!(p.deallocate(q, n).is_err(), "freed twice");
        }
        let again: Vec<_> = sizes.iter().map(|&n| p.allocate(n).unwrap()).collect();
        let mut reused: Vec<_> = blocks.iter().map(|b| b.0).collect();
        reused.sort_unstable();
        let mut sorted = again.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, reused, "each class's block came back first");
        p.check_invariants();
    }
}
