//! A pool's call-free pair (`try_allocate_claimed`, `try_deallocate_claimed`): what it
//! serves is exactly what `allocate_claimed` and `deallocate_claimed` would do (the same
//! blocks, the same SPEC §3 state), and everything else, misuse included, it leaves
//! unchanged for the full path to serve or refuse.

use std::sync::Arc;
use stlalloc_core::block_allocator::BlockAllocator;
use stlalloc_core::{AllocError, MallocAlloc, Params, SharedPool};

fn pool() -> SharedPool {
    SharedPool::new(Params::default(), 1 << 20, Arc::new(MallocAlloc::new(None))).unwrap()
}

fn arena_base(p: &SharedPool) -> usize {
    p.lock_heap(0).unwrap().pool().arena().base()
}

#[test]
fn serves_what_the_full_path_would() {
    let (fast, full) = (pool(), pool());
    let (fast_base, full_base) = (arena_base(&fast), arena_base(&full));
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    let mut served = 0;
    for step in 0..3000usize {
        let n = 1 + (step * 37) % 128;
        if step % 3 == 2 && !mine.is_empty() {
            let i = (step * 7) % mine.len();
            let (p, n) = mine.swap_remove(i);
            let (q, _) = theirs.swap_remove(i);
            if fast.try_deallocate_claimed(p, n) {
                served += 1;
            } else {
                fast.deallocate_claimed(p, n).unwrap();
            }
            full.deallocate_claimed(q, n).unwrap();
        } else {
            let p = match BlockAllocator::try_allocate_claimed(&fast, n, 8) {
                Some(p) => {
                    served += 1;
                    p
                }
                None => fast.allocate_claimed(n).unwrap(),
            };
            let q = full.allocate_claimed(n).unwrap();
            assert_eq!(p - fast_base, q - full_base, "step {step}: the same block");
            mine.push((p, n));
            theirs.push((q, n));
        }
        assert_eq!(fast.stats(), full.stats(), "step {step}");
    }
    assert!(
        served > 2500,
        "the call-free pair served {served} of 3000 calls"
    );
    for (p, n) in mine {
        assert!(
            matches!(fast.deallocate(p, n), Err(AllocError::Claimed { .. })),
            "a block of the call-free path is claimed"
        );
        assert!(fast.try_deallocate_claimed(p, n));
    }
    assert_eq!(fast.stats().live_blocks, 0);
}

#[test]
fn leaves_misuse_unchanged_for_the_full_path_to_refuse() {
    let p = pool();
    let claimed = p.allocate_claimed(24).unwrap();
    let plain = p.allocate(24).unwrap();
    let before = p.stats();
    for (addr, n) in [
        (claimed, 200),    // above max_bytes
        (claimed, 0),      // no size
        (claimed, 64),     // another class
        (claimed + 8, 24), // inside the block
        (plain, 24),       // not claimed
        (0, 24),           // not a block
        (usize::MAX, 24),  // outside everything
    ] {
        assert!(!p.try_deallocate_claimed(addr, n), "({addr:#x}, {n})");
        assert_eq!(p.stats(), before, "({addr:#x}, {n}) changed nothing");
    }
    assert!(p.try_deallocate_claimed(claimed, 24));
    assert!(!p.try_deallocate_claimed(claimed, 24), "a double free");
    assert!(matches!(
        p.deallocate_claimed(claimed, 24),
        Err(AllocError::NotLive { .. })
    ));
    assert_eq!(p.try_allocate_claimed(0), None);
    assert_eq!(p.try_allocate_claimed(129), None);
    assert_eq!(BlockAllocator::try_allocate_claimed(&p, 24, 16), None);
    p.deallocate(plain, 24).unwrap();
}

#[test]
fn serves_nothing_while_the_heap_is_held_or_with_several_heaps() {
    let p = pool();
    let a = p.allocate_claimed(24).unwrap();
    {
        let _held = p.lock_heap(0).unwrap();
        assert_eq!(p.try_allocate_claimed(24), None);
        assert!(!p.try_deallocate_claimed(a, 24));
    }
    assert!(p.try_deallocate_claimed(a, 24));
    let upstream = Arc::new(MallocAlloc::new(None));
    let p: SharedPool = SharedPool::with_heaps(Params::default(), 1 << 20, upstream, 2).unwrap();
    let a = p.allocate_claimed(24).unwrap();
    let before = p.stats();
    assert_eq!(p.try_allocate_claimed(24), None);
    assert!(!p.try_deallocate_claimed(a, 24));
    assert_eq!(p.stats(), before);
    p.deallocate_claimed(a, 24).unwrap();
}
