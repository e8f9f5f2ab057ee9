//! The deferred-free rule of [`super::retired`], checked from outside: an allocator that
//! knows when a container is inside a `&mut self` method (as a caller's lock would be held)
//! counts the blocks freed meanwhile. There must be none, and every block must be freed once
//! what the methods hand back is dropped.

use super::list::{Detached, List, Unlinked};
use super::vector::{Storage, Vector};
use crate::{AllocError, BlockAllocator, MallocAlloc, Params, SharedPool};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

/// A pool that records its frees, and those made while `busy`.
struct Watched {
    pool: SharedPool,
    busy: AtomicBool,
    frees: AtomicUsize,
    frees_while_busy: AtomicUsize,
}

type W = Arc<Watched>;

fn watched() -> W {
    let upstream = Arc::new(MallocAlloc::new(None));
    Arc::new(Watched {
        pool: SharedPool::new(Params::default(), 1 << 20, upstream).unwrap(),
        busy: AtomicBool::new(false),
        frees: AtomicUsize::new(0),
        frees_while_busy: AtomicUsize::new(0),
    })
}

impl Watched {
    /// Runs `f` as a locked container operation.
    fn locked<R>(&self, f: impl FnOnce() -> R) -> R {
        self.busy.store(true, SeqCst);
        let r = f();
        self.busy.store(false, SeqCst);
        r
    }

    fn freed(&self) {
        self.frees.fetch_add(1, SeqCst);
        if self.busy.load(SeqCst) {
            self.frees_while_busy.fetch_add(1, SeqCst);
        }
    }

    fn live(&self) -> usize {
        let s = self.pool.stats();
        s.live_blocks + s.large_live_blocks
    }
}

// SAFETY: forwards to a real pool, only counting.
unsafe impl BlockAllocator for Watched {
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        self.pool.allocate(n)
    }
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        self.freed();
        self.pool.deallocate(p, n)
    }
    fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        self.pool.reallocate(p, old, new)
    }
    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        BlockAllocator::block_containing(&self.pool, addr)
    }
    fn pin(&self, start: usize) -> Result<(), AllocError> {
        BlockAllocator::pin(&self.pool, start)
    }
    fn unpin(&self, start: usize) {
        BlockAllocator::unpin(&self.pool, start)
    }
    fn claim(&self, start: usize) -> Result<(), AllocError> {
        BlockAllocator::claim(&self.pool, start)
    }
    fn unclaim(&self, start: usize) {
        BlockAllocator::unclaim(&self.pool, start)
    }
    fn alignment(&self) -> usize {
        self.pool.params().align()
    }
    fn try_allocate_claimed(&self, n: usize, align: usize) -> Option<usize> {
        BlockAllocator::try_allocate_claimed(&self.pool, n, align)
    }
    fn try_deallocate_claimed(&self, p: usize, n: usize) -> bool {
        let freed = BlockAllocator::try_deallocate_claimed(&self.pool, p, n);
        if freed {
            self.freed();
        }
        freed
    }
}

#[test]
fn a_vector_frees_nothing_inside_its_methods() {
    let w = watched();
    let mut v = Vector::<Arc<u8>, W>::new_in(w.clone());
    let x = Arc::new(7u8);
    let mut owed = Vec::new();
    for _ in 0..20 {
        owed.push(w.locked(|| v.push(x.clone())).unwrap());
    }
    owed.push(w.locked(|| v.insert(3, x.clone())).unwrap());
    let (removed, old) = w.locked(|| v.splice(0..2, vec![x.clone(); 40])).unwrap();
    owed.push(old);
    owed.push(
        w.locked(|| v.extend_from_vec(vec![x.clone(); 100]))
            .unwrap(),
    );
    owed.push(w.locked(|| v.reserve(1000)).unwrap());
    let (shrunk, old) = w.locked(|| v.resize_with(10, || x.clone())).unwrap();
    owed.push(old);
    owed.push(w.locked(|| v.shrink_to_fit()).unwrap());
    let storage = Storage::allocate(w.clone(), 64).unwrap();
    let (old, adopted) = w.locked(|| v.adopt(storage));
    adopted.unwrap();
    owed.push(old);
    let cleared = w.locked(|| v.clear());
    assert_eq!(w.frees_while_busy.load(SeqCst), 0);
    assert_eq!(
        Arc::strong_count(&x),
        1 + removed.len() + shrunk.len() + cleared.len()
    );
    assert_eq!(w.frees.load(SeqCst), 0, "every old block is still owed");
    let moves = owed.iter().filter(|r| r.pending().is_some()).count();
    assert!(moves >= 8, "the storage moved {moves} times");
    drop((owed, removed, shrunk, cleared));
    assert_eq!(w.frees.load(SeqCst), moves);
    assert_eq!(
        (w.live(), Arc::strong_count(&x)),
        (1, 1),
        "only the storage is left"
    );
    drop(v);
    assert_eq!(w.live(), 0);
}

#[test]
fn a_list_frees_nothing_inside_its_methods() {
    let w = watched();
    let mut l = List::<i64, W>::new(w.clone());
    let mut other = List::<i64, W>::new(w.clone());
    for i in 0..10 {
        let node = Detached::new(&w, i).unwrap();
        w.locked(|| l.push_back_node(node)).unwrap();
        other.push_back(i).unwrap();
    }
    let stranger = watched();
    let refused = w.locked(|| l.push_front_node(Detached::new(&stranger, 99).unwrap()));
    let refused = refused.unwrap_err();
    let popped: Vec<Unlinked<i64, W>> = w.locked(|| {
        let mut popped = vec![l.pop_front().unwrap(), l.pop_back().unwrap()];
        popped.push(l.remove_at(3).unwrap());
        popped
    });
    let popped_in = w.locked(|| [l.pop_back_in(&w), l.pop_front_in(&w)]);
    let lists = w.locked(|| {
        l.merge(&mut other).unwrap();
        l.sort_by(|a, b| a > b);
        l.reverse();
        let odd = l.extract_if(|x| x % 2 == 1);
        let dups = l.unique_by(|a, b| a == b);
        [odd, dups, l.take()]
    });
    assert_eq!(w.frees_while_busy.load(SeqCst), 0);
    assert_eq!(w.frees.load(SeqCst), 0);
    let values: Vec<i64> = popped.into_iter().map(Unlinked::into_value).collect();
    assert_eq!(values, [0, 9, 4]);
    assert_eq!(w.frees.load(SeqCst), 3, "into_value frees the node");
    let values = popped_in.map(|n| n.unwrap().unwrap().into_value());
    assert_eq!(values, [8, 1]);
    assert_eq!(
        w.frees.load(SeqCst),
        5,
        "so does one popped through the caller's handle"
    );
    drop(lists);
    drop(refused);
    assert_eq!((w.live(), stranger.live()), (0, 0));
    assert_eq!(w.frees.load(SeqCst), 20);
}

#[test]
fn a_lists_call_free_paths_free_nothing_inside_its_methods() {
    let w = watched();
    let mut l = List::<i64, W>::new(w.clone());
    l.push_back(0).unwrap(); // the refill: the free list has blocks from now on
    for i in 1..5 {
        w.locked(|| l.try_push(i, i % 2 == 0)).unwrap();
    }
    let popped = w.locked(|| [l.pop_back().unwrap(), l.pop_front().unwrap()]);
    assert_eq!(w.frees_while_busy.load(SeqCst), 0);
    assert_eq!(w.frees.load(SeqCst), 0);
    let values = popped.map(|n| n.try_into_value().ok().unwrap());
    assert_eq!(values, [3, 4]);
    assert_eq!(w.frees.load(SeqCst), 2, "try_into_value frees the node");
    drop(l);
    assert_eq!((w.live(), w.frees.load(SeqCst)), (0, 5));
}
