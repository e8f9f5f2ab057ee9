//! `try_push` and `Unlinked::try_into_value`, the list's call-free paths: they serve
//! exactly what `push_back`/`push_front` and `into_value` would (the same blocks, so the
//! pool's SPEC §3 state is the same), or change nothing.

use super::*;
use crate::{MallocAlloc, Params, SharedPool};
use std::sync::Arc;

type Pool = Arc<SharedPool>;

fn pool_with(params: Params, arena: usize, heaps: usize) -> Pool {
    let upstream = Arc::new(MallocAlloc::new(None));
    Arc::new(SharedPool::with_heaps(params, arena, upstream, heaps).unwrap())
}

fn pool() -> Pool {
    pool_with(Params::default(), 1 << 20, 1)
}

fn contents<T: Clone, A: BlockAllocator>(l: &List<T, A>) -> Vec<T> {
    l.iter().cloned().collect()
}

/// The addresses of `l`'s nodes, from the start of its pool's arena.
fn offsets<T>(l: &List<T, Pool>) -> Vec<usize> {
    let base = l.allocator().lock_heap(0).unwrap().pool().arena().base();
    l.node_addresses().iter().map(|a| a - base).collect()
}

/// `l` unchanged: the same nodes in the same order, the same generation.
fn snapshot<T, A: BlockAllocator>(l: &List<T, A>) -> (Vec<usize>, u64) {
    (l.node_addresses(), l.generation())
}

#[test]
fn try_push_takes_the_blocks_push_would() {
    let (fast, full) = (pool(), pool());
    let mut a = List::new(fast.clone());
    let mut b = List::new(full.clone());
    // An empty free list needs a refill, which calls: not served, nothing changed.
    assert_eq!(a.try_push(7, false), Err(7));
    assert_eq!((a.len(), fast.stats()), (0, full.stats()));
    a.push_back(0).unwrap();
    b.push_back(0).unwrap();
    for i in 1..=10 {
        let front = i % 3 == 0;
        assert_eq!(a.try_push(i, front), Ok(()));
        if front {
            b.push_front(i).unwrap();
        } else {
            b.push_back(i).unwrap();
        }
    }
    assert_eq!(contents(&a), contents(&b));
    assert_eq!(offsets(&a), offsets(&b), "the same blocks");
    assert_eq!(fast.stats(), full.stats());
    a.check_invariants();
    let back = *a.node_addresses().last().unwrap();
    assert!(
        matches!(fast.deallocate(back, 24), Err(AllocError::Claimed { .. })),
        "the node is claimed for the list"
    );
    drop(a);
    assert_eq!(fast.stats().live_blocks, 0);
}

#[test]
fn try_push_changes_nothing_where_the_path_would_call() {
    // The heap locked (by whoever holds it, here the test).
    let p = pool();
    let mut l = List::new(p.clone());
    l.push_back(1).unwrap();
    let before = (snapshot(&l), p.stats());
    {
        let _held = p.lock_heap(0).unwrap();
        assert_eq!(l.try_push(2, false), Err(2));
        assert_eq!(l.try_push(2, true), Err(2));
    }
    assert_eq!((snapshot(&l), p.stats()), before);
    // A pool of several heaps (which thread's heap is a call away).
    let p = pool_with(Params::default(), 1 << 20, 2);
    let mut l = List::new(p.clone());
    l.push_back(1).unwrap();
    let before = (snapshot(&l), p.stats());
    assert_eq!(l.try_push(2, false), Err(2));
    assert_eq!((snapshot(&l), p.stats()), before);
    // Nodes above the pool's `max_bytes` (the upstream's).
    let p = pool_with(Params::new(8, 16, 20).unwrap(), 1 << 20, 1);
    let mut l = List::new(p.clone());
    l.push_back(1).unwrap();
    let before = (snapshot(&l), p.stats());
    assert_eq!(l.try_push(2, false), Err(2));
    assert_eq!((snapshot(&l), p.stats()), before);
    // An allocator without a call-free path.
    let m = Arc::new(MallocAlloc::new(None));
    let mut l = List::new(m.clone());
    l.push_back(1).unwrap();
    assert_eq!(l.try_push(2, false), Err(2));
    assert_eq!((contents(&l), m.stats().live_blocks), (vec![1], 1));
}

#[test]
fn try_push_asks_for_the_nodes_alignment() {
    assert_eq!(align_of::<Node<u128>>(), 16);
    let p = pool();
    let mut l = List::<u128, Pool>::new(p.clone());
    l.push_back(1).unwrap();
    // The pool promises 8 bytes: a block that happens to be 16-aligned is not enough.
    assert_eq!(l.try_push(2, false), Err(2));
    let p = pool_with(Params::new(16, 128, 20).unwrap(), 1 << 20, 1);
    let mut l = List::<u128, Pool>::new(p.clone());
    l.push_back(1).unwrap();
    assert_eq!(l.try_push(2, false), Ok(()));
    assert!(l.node_addresses().iter().all(|a| a % 16 == 0));
    l.check_invariants();
}

#[test]
fn try_push_leaves_blocks_cut_from_upstream_chunks_to_push() {
    // An arena of 4 KiB runs out after a few refills; later blocks come from chunks of
    // the upstream, outside it, which `try_push` leaves alone.
    let p = pool_with(Params::default(), 4096, 1);
    let arena = {
        let heap = p.lock_heap(0).unwrap();
        let arena = heap.pool().arena();
        arena.base()..arena.base() + arena.reserved()
    };
    let mut l = List::new(p.clone());
    let (mut served, mut refused) = (0, 0);
    for i in 0..2000 {
        match l.try_push(i, false) {
            Ok(()) => {
                served += 1;
                let node = *l.node_addresses().last().unwrap();
                assert!(arena.contains(&node), "a served block is the arena's");
            }
            Err(i) => {
                refused += 1;
                let before = l.generation();
                l.push_back(i).unwrap();
                assert_ne!(l.generation(), before);
            }
        }
    }
    let outside = l
        .node_addresses()
        .iter()
        .filter(|a| !arena.contains(a))
        .count();
    assert!(
        served > 0 && outside > 0,
        "{served} served, {outside} outside"
    );
    assert!(
        refused >= outside / 20,
        "each refill's first block is refused at least"
    );
    l.check_invariants();
    drop(l);
    assert_eq!(p.stats().live_blocks, 0);
}

#[test]
fn try_into_value_frees_as_into_value_or_changes_nothing() {
    let (fast, full) = (pool(), pool());
    let mut a = List::new(fast.clone());
    let mut b = List::new(full.clone());
    for i in 0..5 {
        a.push_back(i).unwrap();
        b.push_back(i).unwrap();
    }
    let node = a.pop_back_in(&fast).unwrap().unwrap();
    assert_eq!(node.try_into_value().ok(), Some(4));
    assert_eq!(b.pop_back_in(&full).unwrap().unwrap().into_value(), 4);
    assert_eq!(fast.stats(), full.stats(), "freed as into_value frees");
    // The heap locked: the node comes back, still owed.
    let node = a.pop_front().unwrap();
    let node = {
        let _held = fast.lock_heap(0).unwrap();
        node.try_into_value().unwrap_err()
    };
    assert_eq!(fast.stats().live_blocks, 4);
    assert_eq!(node.into_value(), 0);
    assert_eq!(fast.stats().live_blocks, 3);
    // An allocator without the path.
    let m = Arc::new(MallocAlloc::new(None));
    let mut l = List::new(m.clone());
    l.push_back(1).unwrap();
    let node = l.pop_back().unwrap().try_into_value().unwrap_err();
    assert_eq!(m.stats().live_blocks, 1);
    assert_eq!(node.into_value(), 1);
    assert_eq!(m.stats().live_blocks, 0);
}
