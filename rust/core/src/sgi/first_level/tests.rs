use super::*;
use crate::block_allocator::BlockAllocator;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn tracks_and_rejects_misuse_without_change() {
    let m = MallocAlloc::new(None);
    let p = m.allocate(24).unwrap();
    assert_eq!(m.allocate(0).unwrap(), 0);
    let before = m.stats();
    assert!(matches!(
        m.deallocate(p, 25),
        Err(AllocError::SizeMismatch { block_size: 24, .. })
    ));
    assert!(matches!(
        m.deallocate(p + 8, 24),
        Err(AllocError::NotLive { .. })
    ));
    assert!(matches!(
        m.reallocate(p, 23, 100),
        Err(AllocError::SizeMismatch { .. })
    ));
    assert_eq!(m.stats(), before);
    assert!(m.owns(p + 23) && !m.owns(p + 24));
    m.pin(p).unwrap();
    assert!(matches!(
        m.deallocate(p, 24),
        Err(AllocError::Pinned { .. })
    ));
    m.unpin(p);
    let q = m.reallocate(p, 24, 4000).unwrap();
    m.check_invariants();
    m.deallocate(q, 4000).unwrap();
    assert!(matches!(
        m.deallocate(q, 4000),
        Err(AllocError::NotLive { .. })
    ));
    m.deallocate(0, 0).unwrap();
    let s = m.stats();
    assert_eq!(
        (s.live_blocks, s.live_bytes, s.allocations, s.deallocations),
        (0, 0, 1, 1)
    );
    m.check_invariants();
}

#[test]
fn every_malloc_alloc_frees_what_another_allocated() {
    let (a, b) = (MallocAlloc::new(Some(64)), MallocAlloc::new(None));
    let p = a.allocate(40).unwrap();
    assert!(b.owns(p));
    let q = b.reallocate(p, 40, 48).unwrap();
    assert_eq!(a.stats().live_bytes, 48, "the block stays with its owner");
    assert!(
        matches!(b.reallocate(q, 48, 65), Err(AllocError::OutOfMemory { .. })),
        "a's limit"
    );
    b.deallocate(q, 48).unwrap();
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(
        (sa.live_blocks, sa.deallocations, sb.allocations),
        (0, 1, 0)
    );
    a.check_invariants();
    b.check_invariants();
}

#[test]
fn a_dropped_allocator_keeps_what_a_view_still_exports() {
    let a = MallocAlloc::new(None);
    let b = MallocAlloc::new(None);
    let p = a.allocate(64).unwrap();
    let q = a.allocate(64).unwrap();
    b.pin(p).unwrap();
    drop(a);
    assert_eq!(b.block_containing(p), Some((p, 64)), "kept for the view");
    assert_eq!(b.block_containing(q), None, "the rest is freed");
    b.unpin(p);
    assert_eq!(b.block_containing(p), None, "freed with the last pin");
}

#[test]
fn pool_blocks_cannot_be_freed_or_viewed_by_users() {
    let m = MallocAlloc::new(None);
    let p = m.allocate_for_pool(64, 8).unwrap();
    assert!(matches!(
        m.deallocate(p, 64),
        Err(AllocError::Pinned { .. })
    ));
    assert!(matches!(m.pin(p), Err(AllocError::Claimed { .. })));
    m.deallocate_for_pool(p, 64).unwrap();
    m.check_invariants();
}

#[test]
fn a_dropped_allocator_leaves_the_blocks_a_container_claimed() {
    let (a, b) = (MallocAlloc::new(None), MallocAlloc::new(None));
    let kept = a.allocate_claimed(24).unwrap();
    a.allocate(8).unwrap();
    drop(a);
    // As after a splice: the container of an equal allocator holds `kept`.
    assert_eq!(b.block_containing(kept), Some((kept, 24)));
    b.deallocate_claimed(kept, 24).unwrap();
    assert!(b.block_containing(kept).is_none());
}

#[test]
fn limit_makes_malloc_fail_and_absurd_sizes_are_refused() {
    let m = MallocAlloc::new(Some(100));
    let p = m.allocate(60).unwrap();
    assert!(matches!(
        m.allocate(41),
        Err(AllocError::OutOfMemory { size: 41 })
    ));
    assert!(matches!(
        m.reallocate(p, 60, 101),
        Err(AllocError::OutOfMemory { .. })
    ));
    assert!(matches!(
        m.allocate(usize::MAX),
        Err(AllocError::TooLarge { .. })
    ));
    assert_eq!(m.stats().failures, 2);
    m.deallocate(p, 60).unwrap();
    m.check_invariants();
}

struct FreeOne {
    alloc: std::sync::Weak<MallocAlloc>,
    victims: Mutex<Vec<(usize, usize)>>,
    calls: AtomicUsize,
}

impl OomHandler for FreeOne {
    fn on_oom(&self) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match lock(&self.victims).pop() {
            Some((p, n)) => {
                // Re-entrant: the handler frees a block of the allocator that called it.
                self.alloc.upgrade().unwrap().deallocate(p, n).unwrap();
                Ok(())
            }
            None => Err(HandlerError(Box::new("nothing left to free"))),
        }
    }
}

#[test]
fn handler_loop_frees_reentrantly_then_fails_with_its_error() {
    let m = Arc::new(MallocAlloc::new(Some(100)));
    let a = m.allocate(40).unwrap();
    let b = m.allocate(40).unwrap();
    let handler = Arc::new(FreeOne {
        alloc: Arc::downgrade(&m),
        victims: Mutex::new(vec![(a, 40), (b, 40)]),
        calls: AtomicUsize::new(0),
    });
    assert!(m.set_malloc_handler(Some(handler.clone())).is_none());
    // 90 bytes need both blocks freed: two handler calls, then success.
    let c = m.allocate(90).unwrap();
    assert_eq!(handler.calls.load(Ordering::Relaxed), 2);
    assert_eq!(m.stats().handler_calls, 2);
    // Nothing left to free: the handler's error comes back, nothing leaks.
    match m.allocate(20) {
        Err(AllocError::Handler(e)) => {
            assert_eq!(*e.0.downcast::<&str>().unwrap(), "nothing left to free")
        }
        other => panic!("{other:?}"),
    }
    // SGI's loop: every refused attempt counted, and one handler call after each.
    assert_eq!((m.stats().failures, m.stats().handler_calls), (3, 3));
    assert!(m.set_malloc_handler(None).is_some());
    m.deallocate(c, 90).unwrap();
    m.check_invariants();
    assert_eq!(m.stats().live_bytes, 0);
}

fn is_packed(p: usize) -> bool {
    registry().is_packed(p)
}

#[test]
fn small_blocks_pack_and_the_rest_spill_with_the_same_checks() {
    let m = MallocAlloc::new(None);
    let small = m.allocate(24).unwrap();
    let big = m.allocate(block_table::MAX_SIZE + 1).unwrap();
    let wide = m.allocate_aligned(64, 4096).unwrap();
    assert!(is_packed(small) && !is_packed(big));
    for (p, n) in [(small, 24), (big, block_table::MAX_SIZE + 1), (wide, 64)] {
        assert_eq!(m.block_containing(p + n - 1), Some((p, n)));
        for bad in [p + 8, p + 16, p + n - 1] {
            assert!(
                matches!(m.deallocate(bad, n), Err(AllocError::NotLive { .. })),
                "interior {bad:#x} of {p:#x}"
            );
        }
        assert!(matches!(
            m.deallocate(p, n + 1),
            Err(AllocError::SizeMismatch { .. })
        ));
    }
    m.check_invariants();
    for (p, n) in [(small, 24), (big, block_table::MAX_SIZE + 1), (wide, 64)] {
        m.deallocate(p, n).unwrap();
        assert!(matches!(
            m.deallocate(p, n),
            Err(AllocError::NotLive { .. })
        ));
    }
    m.check_invariants();
}

#[test]
fn addresses_near_the_top_never_overflow() {
    let m = MallocAlloc::new(None);
    let p = m.allocate(32).unwrap();
    let before = m.stats();
    for a in [usize::MAX, usize::MAX - 15, usize::MAX - 7, 1 << 47, 8, 16] {
        assert!(matches!(
            m.deallocate(a, 8),
            Err(AllocError::NotLive { .. })
        ));
        assert!(!m.owns(a), "{a:#x}");
        assert!(m.reallocate(a, 8, 16).is_err());
        assert!(matches!(
            m.pin_spanning(a, 10),
            Err(AllocError::OutOfBlock { .. })
        ));
        assert!(m.claim(a).is_err() && m.pin(a).is_err());
    }
    assert!(matches!(
        m.pin_spanning(p, usize::MAX),
        Err(AllocError::OutOfBlock { .. })
    ));
    assert!(matches!(
        m.allocate(usize::MAX),
        Err(AllocError::TooLarge { .. })
    ));
    assert_eq!(m.stats(), before);
    m.deallocate(p, 32).unwrap();
}

#[test]
fn a_pin_spills_the_block_and_the_last_unpin_packs_it_again() {
    let m = MallocAlloc::new(None);
    let p = m.allocate(48).unwrap();
    assert_eq!(m.pin_spanning(p + 40, 8).unwrap(), (p, 48));
    m.pin(p).unwrap();
    assert!(!is_packed(p));
    assert!(
        m.claim(p).is_err(),
        "a pinned block is not handed to a container"
    );
    m.unpin(p);
    assert!(!is_packed(p), "still pinned once");
    m.unpin(p);
    assert!(is_packed(p));
    m.claim(p).unwrap();
    assert!(is_packed(p), "a claim packs");
    assert!(matches!(
        m.deallocate(p, 48),
        Err(AllocError::Claimed { .. })
    ));
    assert!(matches!(m.pin(p), Err(AllocError::Claimed { .. })));
    m.check_invariants();
    m.deallocate_claimed(p, 48).unwrap();
    m.check_invariants();
}

#[test]
fn many_blocks_many_sizes_and_reallocations_keep_the_books() {
    let (a, b) = (MallocAlloc::new(None), MallocAlloc::new(None));
    let mut live: Vec<(usize, usize)> = (0..20_000)
        .map(|k| {
            let n = 1 + k * 37 % 2000;
            (a.allocate(n).unwrap(), n)
        })
        .collect();
    a.check_invariants();
    for (k, (p, n)) in live.iter_mut().enumerate().filter(|(k, _)| k % 3 == 0) {
        let new = 1 + k * 53 % 1500;
        *p = b.reallocate(*p, *n, new).unwrap();
        *n = new;
    }
    let s = a.stats();
    assert_eq!(s.live_blocks, live.len());
    assert_eq!(s.live_bytes, live.iter().map(|&(_, n)| n).sum::<usize>());
    for &(p, n) in &live {
        assert_eq!(a.block_containing(p + n / 2), Some((p, n)));
    }
    a.check_invariants();
    for (p, n) in live {
        b.deallocate(p, n).unwrap();
    }
    assert_eq!((a.stats().live_blocks, b.stats().allocations), (0, 0));
    a.check_invariants();
}

#[test]
fn allocators_beyond_the_packed_owners_spill_and_still_count() {
    let all: Vec<MallocAlloc> = (0..block_table::MAX_OWNERS + 8)
        .map(|_| MallocAlloc::new(Some(64)))
        .collect();
    let blocks: Vec<usize> = all.iter().map(|m| m.allocate(16).unwrap()).collect();
    assert!(
        blocks.iter().any(|&p| !is_packed(p)),
        "some owner index >= MAX_OWNERS"
    );
    all[0].check_invariants();
    for (m, &p) in all.iter().zip(&blocks).rev() {
        assert_eq!(m.stats().live_bytes, 16);
        all[0].deallocate(p, 16).unwrap();
        assert_eq!(m.stats().live_bytes, 0);
    }
    all[0].check_invariants();
}

#[test]
fn threads_allocating_and_freeing_each_others_blocks_keep_the_books() {
    let m = Arc::new(MallocAlloc::new(None));
    let handed = Arc::new(Mutex::new(Vec::<(usize, usize)>::new()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (m, handed) = (m.clone(), handed.clone());
            std::thread::spawn(move || {
                let own = MallocAlloc::new(None);
                for k in 0..5000usize {
                    let n = 1 + (k * 7 + t) % 300;
                    let p = own.allocate(n).unwrap();
                    lock(&handed).push((p, n));
                    let popped = lock(&handed).pop();
                    if let Some((q, n)) = popped {
                        m.deallocate(q, n).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(lock(&handed).is_empty());
    m.check_invariants();
}

#[test]
fn a_child_forked_while_another_thread_held_the_registry_does_not_wait_for_it() {
    use crate::raw_lock::tests::{in_forked_child, while_another_thread_holds};
    let m = MallocAlloc::new(None);
    let p = m.allocate(200).unwrap();
    // As a thread inside any first-level call holds it, around its `malloc`.
    while_another_thread_holds(registry, || {
        in_forked_child("the child waited for a thread not in it", || {
            let q = m.allocate(300).unwrap();
            m.deallocate(q, 300).is_ok() && m.deallocate(p, 200).is_ok()
        });
    });
    m.deallocate(p, 200).unwrap();
    m.check_invariants();
}
