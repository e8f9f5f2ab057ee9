//! `Vector` and `List` over a pool with a tiny arena and a tiny upstream limit, so growth
//! runs out midway: every operation either does what `Vec`/`VecDeque` do, or fails and
//! leaves the container as it was; when both are dropped, every block is back and the
//! pool's invariants hold.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use std::sync::Arc;
use stlalloc_core::containers::list::List;
use stlalloc_core::containers::vector::Vector;
use stlalloc_core::{MallocAlloc, Params, SharedPool};

#[derive(Arbitrary, Debug)]
enum Op {
    Push(u64),
    Pop,
    Insert(u16, u64),
    Remove(u16),
    Reserve(u16),
    ShrinkToFit,
    Truncate(u16),
    Extend(u8, u64),
    Resize(u16, u64),
    PushBack(u64),
    PushFront(u64),
    ListInsert(u16, u64),
    PopBack,
    PopFront,
    RemoveAt(u16),
    Reverse,
    Sort,
    Unique,
    ClearList,
    /// Splices a fresh list of `n` values onto the end.
    Splice(u8, u64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    arena_pages: u8,
    upstream_kib: u8,
    ops: Vec<Op>,
}

type Pool = Arc<SharedPool>;

fn step(
    op: &Op,
    v: &mut Vector<u64, Pool>,
    l: &mut List<u64, Pool>,
    mv: &mut Vec<u64>,
    ml: &mut VecDeque<u64>,
) {
    let at = |i: u16, len: usize| usize::from(i) % (len + 1);
    let ok = match *op {
        Op::Push(x) => v.push(x).map(|_old| mv.push(x)).is_ok(),
        Op::Pop => {
            assert_eq!(v.pop(), mv.pop());
            true
        }
        Op::Insert(i, x) => {
            let i = at(i, mv.len());
            v.insert(i, x).map(|_old| mv.insert(i, x)).is_ok()
        }
        Op::Remove(i) => {
            if !mv.is_empty() {
                let i = usize::from(i) % mv.len();
                assert_eq!(v.remove(i), mv.remove(i));
            }
            true
        }
        Op::Reserve(n) => {
            let n = usize::from(n);
            let ok = v.reserve(n).is_ok();
            assert!(!ok || v.capacity() >= n);
            ok
        }
        Op::ShrinkToFit => {
            let ok = v.shrink_to_fit().is_ok();
            assert!(!ok || v.capacity() == v.len());
            ok
        }
        Op::Truncate(n) => {
            drop(v.truncate(n.into()));
            mv.truncate(n.into());
            true
        }
        Op::Extend(n, x) => {
            let items = vec![x; n.into()];
            v.extend_from_vec(items.clone())
                .map(|_old| mv.extend(items))
                .is_ok()
        }
        Op::Resize(n, x) => {
            let n = usize::from(n) % 2048;
            v.resize_with(n, || x).map(|_old| mv.resize(n, x)).is_ok()
        }
        Op::PushBack(x) => l.push_back(x).map(|()| ml.push_back(x)).is_ok(),
        Op::PushFront(x) => l.push_front(x).map(|()| ml.push_front(x)).is_ok(),
        Op::ListInsert(i, x) => {
            let i = at(i, ml.len());
            l.insert(i, x).map(|()| ml.insert(i, x)).is_ok()
        }
        Op::PopBack => {
            assert_eq!(l.pop_back().map(|n| n.into_value()), ml.pop_back());
            true
        }
        Op::PopFront => {
            assert_eq!(l.pop_front().map(|n| n.into_value()), ml.pop_front());
            true
        }
        Op::RemoveAt(i) => {
            let i = at(i, ml.len());
            assert_eq!(l.remove_at(i).map(|n| n.into_value()), ml.remove(i));
            true
        }
        Op::Reverse => {
            l.reverse();
            ml.make_contiguous().reverse();
            true
        }
        Op::Sort => {
            l.sort();
            ml.make_contiguous().sort();
            true
        }
        Op::Unique => {
            let removed = l.unique();
            let before = ml.len();
            let mut kept: Vec<u64> = ml.drain(..).collect();
            kept.dedup();
            ml.extend(kept);
            assert_eq!(removed, before - ml.len());
            true
        }
        Op::ClearList => {
            drop(l.take());
            ml.clear();
            true
        }
        Op::Splice(n, x) => {
            let mut other = List::new(l.allocator().clone());
            let mut made = 0;
            for _ in 0..n {
                if other.push_back(x).is_err() {
                    break;
                }
                made += 1;
            }
            let ok = l.splice(&mut other).is_ok();
            if ok {
                ml.extend(std::iter::repeat_n(x, made));
                assert!(other.is_empty());
            }
            ok
        }
    };
    let _ = ok;
    assert!(v.len() <= v.capacity());
    assert_eq!(&v[..], &mv[..], "the vector after {op:?}");
    assert!(l.iter().eq(ml.iter()), "the list after {op:?}");
    assert_eq!(l.len(), ml.len());
}

fuzz_target!(|input: Input| {
    let arena = 4096 * (1 + usize::from(input.arena_pages % 4));
    let limit = 1024 * usize::from(input.upstream_kib % 32);
    let upstream = Arc::new(MallocAlloc::new(Some(limit)));
    let pool = Arc::new(SharedPool::new(Params::default(), arena, upstream).expect("a valid pool"));
    {
        let mut v = Vector::new_in(pool.clone());
        let mut l = List::new(pool.clone());
        let (mut mv, mut ml) = (Vec::new(), VecDeque::new());
        for op in &input.ops {
            step(op, &mut v, &mut l, &mut mv, &mut ml);
            pool.check_invariants();
        }
    }
    pool.check_invariants();
    let s = pool.stats();
    assert_eq!(
        s.live_blocks + s.large_live_blocks,
        0,
        "the containers leaked"
    );
});
