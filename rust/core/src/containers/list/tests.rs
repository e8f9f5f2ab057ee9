use super::*;
use crate::{MallocAlloc, Params, SharedPool};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;

type Pool = Arc<SharedPool>;

fn pool() -> Pool {
    let upstream = Arc::new(MallocAlloc::new(None));
    Arc::new(SharedPool::new(Params::default(), 1 << 20, upstream).unwrap())
}

fn list_of(alloc: &Pool, values: impl IntoIterator<Item = i64>) -> List<i64, Pool> {
    let mut l = List::new(alloc.clone());
    for v in values {
        l.push_back(v).unwrap();
    }
    l
}

fn contents<T: Clone, A: BlockAllocator>(l: &List<T, A>) -> Vec<T> {
    l.iter().cloned().collect()
}

impl<T, A: BlockAllocator> List<T, A> {
    /// Panics unless every invariant of the module notes holds.
    pub(super) fn check_invariants(&self) {
        assert_eq!(self.head.is_none(), self.len == 0);
        assert_eq!(self.tail.is_none(), self.len == 0);
        let forward: Vec<_> = self.nodes().collect();
        assert_eq!(forward.len(), self.len, "len == nodes reachable from head");
        // SAFETY: the nodes of a list that passed the checks above are live.
        let backward: Vec<_> =
            std::iter::successors(self.tail, |n| unsafe { (*n.as_ptr()).prev }).collect();
        assert_eq!(backward.len(), self.len, "len == nodes reachable from tail");
        assert!(
            forward.iter().eq(backward.iter().rev()),
            "prev mirrors next"
        );
        for &node in &forward {
            let addr = node.as_ptr() as usize;
            let (start, size) = self
                .alloc
                .block_containing(addr)
                .expect("node is a live block");
            assert_eq!(start, addr);
            assert!(size >= Self::node_size());
        }
    }
}

#[test]
fn node_is_prev_next_value() {
    assert_eq!(List::<i64, Pool>::node_size(), 24);
    assert_eq!(List::<f64, Pool>::node_size(), 24);
    assert_eq!(List::<u8, Pool>::node_size(), 24);
    assert_eq!(List::<(), Pool>::node_size(), 16);
}

#[test]
fn one_block_per_element_and_none_for_the_list() {
    let alloc = pool();
    let mut l = List::new(alloc.clone());
    assert_eq!(alloc.stats().live_blocks, 0);
    for i in 0..1000 {
        l.push_back(i).unwrap();
    }
    let s = alloc.stats();
    assert_eq!((s.live_blocks, s.live_bytes), (1000, 24_000));
    l.check_invariants();
    drop(l);
    assert_eq!(alloc.stats().live_blocks, 0, "dropping returns every block");
}

#[test]
fn ends_indexing_and_removal() {
    let alloc = pool();
    let mut l = list_of(&alloc, [2, 3]);
    l.push_front(1).unwrap();
    l.push_back(4).unwrap();
    l.insert(2, 9).unwrap();
    l.insert(5, 10).unwrap();
    l.insert(0, 0).unwrap();
    assert_eq!(contents(&l), [0, 1, 2, 9, 3, 4, 10]);
    assert_eq!((l.front(), l.back()), (Some(&0), Some(&10)));
    assert_eq!((l.get(3), l.get(6), l.get(7)), (Some(&9), Some(&10), None));
    *l.get_mut(5).unwrap() = 40;
    assert_eq!(l.remove_at(3).map(Unlinked::into_value), Some(9));
    assert_eq!(l.remove_at(6).map(Unlinked::into_value), None);
    assert_eq!(
        (
            l.pop_front().map(Unlinked::into_value),
            l.pop_back().map(Unlinked::into_value)
        ),
        (Some(0), Some(10))
    );
    assert_eq!(contents(&l), [1, 2, 3, 40]);
    assert_eq!(l.iter().rev().copied().collect::<Vec<_>>(), [40, 3, 2, 1]);
    l.check_invariants();
    assert_eq!(alloc.stats().live_blocks, 4);
    drop(l.take());
    assert_eq!(
        (l.len(), l.pop_back().map(Unlinked::into_value), l.front()),
        (0, None, None)
    );
    assert_eq!(alloc.stats().live_blocks, 0);
}

#[test]
fn pops_through_a_handle_of_the_lists_allocator_only() {
    let alloc = pool();
    let mut l = list_of(&alloc, [1, 2, 3]);
    let handle = alloc.clone();
    let back = l.pop_back_in(&handle).unwrap().unwrap();
    let front = l.pop_front_in(&handle).unwrap().unwrap();
    assert_eq!((*back.value(), *front.value()), (3, 1));
    assert_eq!(
        alloc.stats().live_blocks,
        3,
        "the nodes are freed once handed back"
    );
    assert_eq!((back.into_value(), front.into_value()), (3, 1));
    assert_eq!(alloc.stats().live_blocks, 1);
    let stranger = pool();
    let generation = l.generation();
    assert!(matches!(
        l.pop_back_in(&stranger),
        Err(AllocError::AllocatorMismatch)
    ));
    assert!(matches!(
        l.pop_front_in(&stranger),
        Err(AllocError::AllocatorMismatch)
    ));
    assert_eq!((contents(&l), l.generation()), (vec![2], generation));
    l.check_invariants();
    assert_eq!(
        l.pop_back_in(&handle).unwrap().map(Unlinked::into_value),
        Some(2)
    );
    assert!(l.pop_front_in(&handle).unwrap().is_none());
    assert_eq!(alloc.stats().live_blocks + stranger.stats().live_blocks, 0);
}

#[test]
#[should_panic(expected = "beyond length")]
fn insert_beyond_the_end_panics() {
    let mut l = list_of(&pool(), [1]);
    let _ = l.insert(2, 0);
}

#[test]
fn allocation_failure_leaves_the_list_intact() {
    let alloc = Arc::new(MallocAlloc::new(Some(3 * 24)));
    let mut l = List::new(alloc.clone());
    for i in 0..3 {
        l.push_back(i).unwrap();
    }
    let before = l.node_addresses();
    assert!(matches!(
        l.push_back(3),
        Err(AllocError::OutOfMemory { .. })
    ));
    assert!(matches!(
        l.push_front(3),
        Err(AllocError::OutOfMemory { .. })
    ));
    assert!(matches!(
        l.insert(1, 3),
        Err(AllocError::OutOfMemory { .. })
    ));
    assert_eq!((contents(&l), l.node_addresses()), (vec![0, 1, 2], before));
    l.check_invariants();
    assert_eq!(alloc.stats().live_blocks, 3);
}

#[test]
fn remove_unique_reverse() {
    let alloc = pool();
    let mut l = list_of(&alloc, [1, 2, 2, 3, 2, 2, 2, 4, 4, 1]);
    assert_eq!(l.unique(), 4);
    assert_eq!(contents(&l), [1, 2, 3, 2, 4, 1]);
    assert_eq!(l.remove(&2), 2);
    assert_eq!(l.remove(&7), 0);
    assert_eq!(contents(&l), [1, 3, 4, 1]);
    let nodes = l.node_addresses();
    l.reverse();
    assert_eq!(contents(&l), [1, 4, 3, 1]);
    assert_eq!(
        l.node_addresses(),
        nodes.into_iter().rev().collect::<Vec<_>>()
    );
    l.check_invariants();
    assert_eq!(alloc.stats().live_blocks, 4);
}

#[test]
fn unique_compares_with_the_last_kept_element() {
    let alloc = pool();
    // "Equal" = within 1 of the last kept: 2 goes (1 kept), 3 stays, 4 goes (3 kept).
    let mut l = list_of(&alloc, [1, 2, 3, 4, 10]);
    let removed = l.unique_by(|kept, x| x - kept <= 1);
    assert_eq!(
        (contents(&l), contents(&removed)),
        (vec![1, 3, 10], vec![2, 4])
    );
    l.check_invariants();
    removed.check_invariants();
}

#[test]
fn extract_if_moves_nodes_without_allocating() {
    let alloc = pool();
    let mut l = list_of(&alloc, 0..10);
    let nodes = l.node_addresses();
    let stats = alloc.stats();
    let odd = l.extract_if(|v| v % 2 == 1);
    assert_eq!(alloc.stats(), stats);
    assert_eq!(contents(&odd), [1, 3, 5, 7, 9]);
    assert_eq!(
        odd.node_addresses(),
        [nodes[1], nodes[3], nodes[5], nodes[7], nodes[9]]
    );
    l.check_invariants();
    odd.check_invariants();
}

#[test]
fn sort_is_stable_relinks_and_allocates_nothing() {
    let alloc = pool();
    let mut l = List::new(alloc.clone());
    let pairs = [(3, 0), (1, 1), (2, 2), (1, 3), (3, 4), (0, 5), (2, 6)];
    for p in pairs {
        l.push_back(p).unwrap();
    }
    let by_value: std::collections::HashMap<_, _> =
        l.iter().copied().zip(l.node_addresses()).collect();
    let stats = alloc.stats();
    l.sort_by(|a, b| a.0 < b.0);
    assert_eq!(alloc.stats(), stats, "sorting allocates and frees nothing");
    let mut expected = pairs.to_vec();
    expected.sort_by_key(|p| p.0);
    assert_eq!(contents(&l), expected);
    let moved: Vec<_> = l.iter().map(|p| by_value[p]).collect();
    assert_eq!(l.node_addresses(), moved, "each value kept its node");
    l.check_invariants();
}

#[test]
fn sort_that_panics_leaves_an_empty_valid_list() {
    let alloc = pool();
    let mut l = list_of(&alloc, [3, 1, 2]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        l.sort_by(|_, _| panic!("bad comparison"))
    }));
    assert!(r.is_err());
    assert!(l.is_empty());
    l.check_invariants();
    l.push_back(5).unwrap();
    assert_eq!(contents(&l), [5]);
}

#[test]
fn reorder_applies_a_permutation() {
    let alloc = pool();
    let mut l = list_of(&alloc, [10, 20, 30, 40]);
    let nodes = l.node_addresses();
    l.reorder(&[2, 0, 3, 1]);
    assert_eq!(contents(&l), [30, 10, 40, 20]);
    assert_eq!(l.node_addresses(), [nodes[2], nodes[0], nodes[3], nodes[1]]);
    l.check_invariants();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.reorder(&[0, 0, 1, 2])));
    assert!(r.is_err());
    assert_eq!(
        contents(&l),
        [30, 10, 40, 20],
        "a bad order changes nothing"
    );
    l.check_invariants();
}

#[test]
fn splice_moves_nodes_in_constant_time_between_equal_allocators() {
    let alloc = pool();
    let mut a = list_of(&alloc, [1, 2]);
    let mut b = list_of(&alloc, [3, 4]);
    let nodes: Vec<_> = a
        .node_addresses()
        .into_iter()
        .chain(b.node_addresses())
        .collect();
    let stats = alloc.stats();
    a.splice(&mut b).unwrap();
    assert_eq!(alloc.stats(), stats);
    assert_eq!((contents(&a), b.len()), (vec![1, 2, 3, 4], 0));
    assert_eq!(a.node_addresses(), nodes);
    a.splice(&mut b).unwrap();
    b.splice(&mut a).unwrap();
    assert_eq!((a.len(), contents(&b)), (0, vec![1, 2, 3, 4]));
    a.check_invariants();
    b.check_invariants();
}

#[test]
fn splice_and_merge_refuse_unequal_allocators() {
    let (p, q) = (pool(), pool());
    let mut a = list_of(&p, [1, 3]);
    let mut b = list_of(&q, [2]);
    let (na, nb) = (a.node_addresses(), b.node_addresses());
    assert!(matches!(
        a.splice(&mut b),
        Err(AllocError::AllocatorMismatch)
    ));
    assert!(matches!(
        a.merge(&mut b),
        Err(AllocError::AllocatorMismatch)
    ));
    assert_eq!((a.node_addresses(), b.node_addresses()), (na, nb));
    assert_eq!((contents(&a), contents(&b)), (vec![1, 3], vec![2]));
    let node = Detached::new(&q, 7).unwrap();
    let refused = a.push_back_node(node).unwrap_err();
    assert_eq!(q.stats().live_blocks, 2, "the refused node comes back");
    drop(refused);
    assert_eq!(q.stats().live_blocks, 1, "the refused node was freed");
    a.check_invariants();
}

#[test]
fn detached_nodes_link_without_allocating_under_the_list() {
    let alloc = pool();
    let mut l = list_of(&alloc, [2]);
    let (front, back, mid) = (
        Detached::new(&alloc, 1).unwrap(),
        Detached::new(&alloc, 4).unwrap(),
        Detached::new(&alloc, 3).unwrap(),
    );
    let stats = alloc.stats();
    l.push_front_node(front).unwrap();
    l.push_back_node(back).unwrap();
    l.insert_node(2, mid).unwrap();
    assert_eq!(alloc.stats(), stats);
    assert_eq!(contents(&l), [1, 2, 3, 4]);
    drop(Detached::new(&alloc, 9).unwrap());
    assert_eq!(alloc.stats().live_blocks, 4);
    l.check_invariants();
}

#[test]
fn merge_is_stable_and_relinks() {
    let alloc = pool();
    let mut a = List::new(alloc.clone());
    let mut b = List::new(alloc.clone());
    for p in [(1, 'a'), (3, 'a'), (3, 'b'), (7, 'a')] {
        a.push_back(p).unwrap();
    }
    for p in [(0, 'c'), (3, 'c'), (8, 'c'), (9, 'c')] {
        b.push_back(p).unwrap();
    }
    let stats = alloc.stats();
    a.merge_by(&mut b, |x, y| x.0 < y.0).unwrap();
    assert_eq!(alloc.stats(), stats);
    let keys: Vec<_> = a.iter().map(|&(k, c)| format!("{k}{c}")).collect();
    assert_eq!(keys, ["0c", "1a", "3a", "3b", "3c", "7a", "8c", "9c"]);
    assert!(b.is_empty());
    a.check_invariants();
    b.check_invariants();
}

#[test]
fn cursors_walk_both_ways_and_go_stale() {
    let alloc = pool();
    let mut l = list_of(&alloc, [1, 2, 3]);
    let mut fwd = l.cursor(false);
    let mut back = l.cursor(true);
    assert_eq!(l.advance(&mut fwd), Ok(Some(&1)));
    assert_eq!(l.advance(&mut back), Ok(Some(&3)));
    assert_eq!(l.advance(&mut back), Ok(Some(&2)));
    let other = list_of(&alloc, [1, 2, 3]);
    assert_eq!(
        other.advance(&mut fwd.clone()),
        Err(StaleCursor),
        "another list's cursor"
    );
    *l.get_mut(0).unwrap() = 5;
    assert_eq!(
        l.advance(&mut fwd),
        Ok(Some(&2)),
        "overwriting a value keeps cursors"
    );
    assert_eq!(l.advance(&mut fwd), Ok(Some(&3)));
    assert_eq!(l.advance(&mut fwd), Ok(None));
    l.push_back(4).unwrap();
    assert_eq!(l.advance(&mut back), Err(StaleCursor));
    let mut empty = List::<i64, Pool>::new(alloc).cursor(false);
    assert_eq!(l.advance(&mut empty), Err(StaleCursor));
}

#[test]
fn take_moves_everything_in_constant_time() {
    let alloc = pool();
    let mut l = list_of(&alloc, [1, 2]);
    let nodes = l.node_addresses();
    let taken = l.take();
    assert_eq!(
        (l.len(), contents(&taken), taken.node_addresses()),
        (0, vec![1, 2], nodes)
    );
    l.check_invariants();
    taken.check_invariants();
}

#[derive(Debug, Clone)]
enum Op {
    PushBack(i64),
    PushFront(i64),
    PopBack,
    PopFront,
    Insert(usize, i64),
    RemoveAt(usize),
    Remove(i64),
    Set(usize, i64),
    Reverse,
    Sort,
    Unique,
    Splice(Vec<i64>),
    Merge(Vec<i64>),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    let v = -4i64..4;
    let many = proptest::collection::vec(-4i64..4, 0..6);
    prop_oneof![
        4 => v.clone().prop_map(Op::PushBack),
        3 => v.clone().prop_map(Op::PushFront),
        2 => Just(Op::PopBack),
        2 => Just(Op::PopFront),
        2 => (0usize..20, v.clone()).prop_map(|(i, x)| Op::Insert(i, x)),
        2 => (0usize..20).prop_map(Op::RemoveAt),
        1 => v.clone().prop_map(Op::Remove),
        1 => (0usize..20, v).prop_map(|(i, x)| Op::Set(i, x)),
        1 => Just(Op::Reverse),
        1 => Just(Op::Sort),
        1 => Just(Op::Unique),
        1 => many.clone().prop_map(Op::Splice),
        1 => many.prop_map(Op::Merge),
        1 => Just(Op::Clear),
    ]
}

/// The model's result of `op`, applied to `m`.
fn apply_model(m: &mut VecDeque<i64>, op: &Op) {
    match op {
        Op::PushBack(x) => m.push_back(*x),
        Op::PushFront(x) => m.push_front(*x),
        Op::PopBack => drop(m.pop_back()),
        Op::PopFront => drop(m.pop_front()),
        Op::Insert(i, x) => m.insert((*i).min(m.len()), *x),
        Op::RemoveAt(i) => drop(m.remove(*i)),
        Op::Remove(x) => m.retain(|v| v != x),
        Op::Set(i, x) => {
            if let Some(v) = m.get_mut(*i) {
                *v = *x
            }
        }
        Op::Reverse => m.make_contiguous().reverse(),
        Op::Sort => m.make_contiguous().sort(),
        Op::Unique => {
            let mut v: Vec<_> = m.drain(..).collect();
            v.dedup();
            m.extend(v);
        }
        Op::Splice(xs) => m.extend(xs),
        Op::Merge(xs) => {
            let mut v: Vec<_> = m.drain(..).collect();
            let mut sorted = xs.clone();
            sorted.sort();
            v.sort();
            v.extend(sorted);
            v.sort();
            m.extend(v);
        }
        Op::Clear => m.clear(),
    }
}

fn apply_list(l: &mut List<i64, Pool>, alloc: &Pool, op: &Op) {
    match op {
        Op::PushBack(x) => l.push_back(*x).unwrap(),
        Op::PushFront(x) => l.push_front(*x).unwrap(),
        Op::PopBack => drop(l.pop_back().map(Unlinked::into_value)),
        Op::PopFront => drop(l.pop_front().map(Unlinked::into_value)),
        Op::Insert(i, x) => l.insert((*i).min(l.len()), *x).unwrap(),
        Op::RemoveAt(i) => drop(l.remove_at(*i).map(Unlinked::into_value)),
        Op::Remove(x) => drop(l.remove(x)),
        Op::Set(i, x) => {
            if let Some(v) = l.get_mut(*i) {
                *v = *x
            }
        }
        Op::Reverse => l.reverse(),
        Op::Sort => l.sort(),
        Op::Unique => drop(l.unique()),
        Op::Splice(xs) => l.splice(&mut list_of(alloc, xs.iter().copied())).unwrap(),
        Op::Merge(xs) => {
            // std::list::merge wants both sorted: sort both first, as the model does.
            let mut other = list_of(alloc, xs.iter().copied());
            other.sort();
            l.sort();
            l.merge(&mut other).unwrap();
        }
        Op::Clear => drop(l.take()),
    }
}

proptest! {
    #[test]
    fn behaves_like_vecdeque_with_one_live_block_per_element(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let alloc = pool();
        let mut l = List::new(alloc.clone());
        let mut model = VecDeque::new();
        let block = alloc.params().round_up(List::<i64, Pool>::node_size());
        for op in &ops {
            apply_list(&mut l, &alloc, op);
            apply_model(&mut model, op);
            prop_assert!(l.iter().eq(model.iter()), "{op:?}: {l:?} vs {model:?}");
            prop_assert!(l.iter().rev().eq(model.iter().rev()));
            l.check_invariants();
            let s = alloc.stats();
            prop_assert_eq!((s.live_blocks, s.live_bytes), (model.len(), model.len() * block));
            prop_assert_eq!(s.large_live_blocks, 0);
        }
        drop(l);
        prop_assert_eq!(alloc.stats().live_blocks, 0);
    }
}

proptest! {
    #[test]
    fn rotate_is_deque_rotate_and_relinks_only(n in 0usize..12, k in -30isize..30) {
        let alloc = pool();
        let mut l = list_of(&alloc, 0..n as i64);
        let mut model: VecDeque<i64> = (0..n as i64).collect();
        let nodes: std::collections::BTreeSet<usize> = l.node_addresses().into_iter().collect();
        let generation = l.generation();
        l.rotate(k);
        if n > 0 {
            let steps = k.rem_euclid(n as isize) as usize;
            model.rotate_right(steps);
        }
        prop_assert_eq!(contents(&l), Vec::from(model));
        let after: std::collections::BTreeSet<usize> = l.node_addresses().into_iter().collect();
        prop_assert_eq!(after, nodes, "the same nodes, relinked");
        l.check_invariants();
        if n >= 2 && k.rem_euclid(n as isize) != 0 {
            prop_assert_ne!(l.generation(), generation, "a rotation is a relink");
        }
    }
}
