use super::SharedPool;
use crate::block_allocator::BlockAllocator;
use crate::{AllocError, MallocAlloc, Params, PoolStats};
use std::sync::Arc;

const ARENA: usize = 1 << 20;

fn pool(heaps: usize) -> SharedPool {
    pool_with(heaps, ARENA)
}

fn pool_with(heaps: usize, arena: usize) -> SharedPool {
    let upstream = Arc::new(MallocAlloc::new(None));
    SharedPool::with_heaps(Params::default(), arena, upstream, heaps).unwrap()
}

/// Runs `f` on a new thread, which exits before this returns.
fn in_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

/// The heap whose arena holds `p`.
fn heap_of(pool: &SharedPool, p: usize) -> Option<usize> {
    (0..pool.max_heaps()).find(|&i| {
        pool.lock_heap(i).is_some_and(|h| {
            let a = h.pool().arena();
            p >= a.base() && p < a.base() + a.reserved()
        })
    })
}

/// One allocation and its free: the calling thread then holds a heap (the first caller
/// heap 0).
fn hold_a_heap(pool: &SharedPool) {
    let p = pool.allocate(8).unwrap();
    pool.deallocate(p, 8).unwrap();
}

fn heap_stats(pool: &SharedPool) -> Vec<PoolStats> {
    (0..pool.heap_count())
        .map(|i| pool.lock_heap(i).unwrap().stats())
        .collect()
}

/// A heap's state with its addresses made relative to its arena, to compare heaps.
fn relative(pool: &SharedPool, i: usize) -> (PoolStats, Vec<Vec<usize>>) {
    let h = pool.lock_heap(i).unwrap();
    let base = h.pool().arena().base();
    let lists = (0..h.params().nfreelists())
        .map(|c| h.free_list(c).iter().map(|p| p - base).collect())
        .collect();
    let mut stats = h.stats();
    stats.arena_resident = 0;
    (stats, lists)
}

/// SPEC §3's example, returning the offsets of the blocks from the arena's base.
fn spec_example(pool: &SharedPool) -> Vec<usize> {
    [8, 32, 64, 8]
        .iter()
        .map(|&n| pool.allocate(n).unwrap())
        .collect()
}

#[test]
fn one_thread_has_one_heap_exactly_sgi() {
    let multi = pool(4);
    let single = pool(1);
    let a = spec_example(&multi);
    let b = spec_example(&single);
    assert_eq!(multi.heap_count(), 1);
    assert_eq!(multi.stats().heap_size, 2904);
    assert_eq!(relative(&multi, 0), relative(&single, 0));
    let base = |p: &SharedPool| p.lock_heap(0).unwrap().pool().arena().base();
    let offsets = |v: &[usize], p: &SharedPool| v.iter().map(|x| x - base(p)).collect::<Vec<_>>();
    assert_eq!(offsets(&a, &multi), offsets(&b, &single));
    multi.check_invariants();
}

#[test]
fn a_second_thread_gets_a_heap_of_its_own_exactly_sgi() {
    let pool = pool(4);
    let mine = pool.allocate(8).unwrap();
    let theirs = in_thread(|| spec_example(&pool));
    assert_eq!(pool.heap_count(), 2);
    assert_eq!(heap_of(&pool, mine), Some(0));
    assert!(theirs.iter().all(|&p| heap_of(&pool, p) == Some(1)));
    // Heap 1 did what a fresh pool does with the same calls.
    let fresh = self::pool(1);
    spec_example(&fresh);
    assert_eq!(relative(&pool, 1), relative(&fresh, 0));
    // Heap 0 saw only its own call.
    let s0 = &heap_stats(&pool)[0];
    assert_eq!((s0.heap_size, s0.live_blocks), (320, 1));
    pool.check_invariants();
}

#[test]
fn frees_from_another_thread_go_to_the_owner_heap() {
    let pool = pool(4);
    pool.allocate(8).unwrap();
    let theirs = in_thread(|| [pool.allocate(24).unwrap(), pool.allocate(24).unwrap()]);
    let heap0 = relative(&pool, 0);
    for &p in &theirs {
        pool.deallocate(p, 24).unwrap();
    }
    assert_eq!(relative(&pool, 0), heap0, "heap 0 unchanged");
    let list = pool.lock_heap(1).unwrap().free_list(2);
    assert_eq!(&list[..2], &[theirs[1], theirs[0]], "LIFO on heap 1's list");
    // The heap taken over by the next thread hands the block out again.
    assert_eq!(in_thread(|| pool.allocate(24).unwrap()), theirs[1]);
    pool.check_invariants();
}

#[test]
fn misuse_across_heaps_is_an_error_leaving_every_heap_unchanged() {
    let pool = pool(4);
    let mine = pool.allocate(16).unwrap();
    let theirs = in_thread(|| {
        let p = pool.allocate(16).unwrap();
        pool.deallocate(p, 16).unwrap();
        (p, pool.allocate(40).unwrap())
    });
    let before = heap_stats(&pool);
    let lists: Vec<_> = (0..16).map(|i| pool.free_list(i)).collect();
    let cases = [
        (theirs.0, 16),
        (theirs.1, 16),
        (theirs.1 + 8, 40),
        (mine + 4, 16),
    ];
    for (p, n) in cases {
        assert!(pool.deallocate(p, n).is_err(), "free({p:#x}, {n})");
        assert!(pool.reallocate(p, n, 100).is_err());
    }
    assert!(matches!(
        pool.deallocate(theirs.0, 16),
        Err(AllocError::NotLive { .. })
    ));
    assert!(matches!(
        pool.deallocate(theirs.1, 16),
        Err(AllocError::SizeMismatch { .. })
    ));
    let foreign = Box::new(0u64);
    let addr = &*foreign as *const u64 as usize;
    assert!(matches!(
        pool.deallocate(addr, 8),
        Err(AllocError::Foreign { .. })
    ));
    assert_eq!(heap_stats(&pool), before);
    assert_eq!(
        (0..16).map(|i| pool.free_list(i)).collect::<Vec<_>>(),
        lists
    );
    pool.check_invariants();
}

#[test]
fn large_blocks_and_upstream_chunks_are_found_in_their_heap() {
    // A one-page arena: most chunks come from upstream, outside any arena.
    let pool = pool_with(4, 4096);
    pool.allocate(8).unwrap();
    let theirs = in_thread(|| {
        let small: Vec<usize> = (0..200).map(|_| pool.allocate(64).unwrap()).collect();
        (small, pool.allocate(1000).unwrap())
    });
    assert!(pool.lock_heap(1).unwrap().stats().upstream_chunk_bytes > 0);
    let in_chunk = *theirs.0.last().unwrap();
    assert_eq!(heap_of(&pool, in_chunk), None);
    assert_eq!(
        BlockAllocator::block_containing(&pool, in_chunk + 3),
        Some((in_chunk, 64))
    );
    BlockAllocator::pin(&pool, in_chunk).unwrap();
    assert!(matches!(
        pool.deallocate(in_chunk, 64),
        Err(AllocError::Pinned { .. })
    ));
    BlockAllocator::unpin(&pool, in_chunk);
    assert!(matches!(
        pool.deallocate(theirs.1, 999),
        Err(AllocError::SizeMismatch { .. })
    ));
    let moved = pool.reallocate(theirs.1, 1000, 5000).unwrap();
    let s1 = pool.lock_heap(1).unwrap().stats();
    assert_eq!((s1.large_live_blocks, s1.large_live_bytes), (1, 5000));
    pool.deallocate(moved, 5000).unwrap();
    for &p in &theirs.0 {
        pool.deallocate(p, 64).unwrap();
    }
    let s1 = pool.lock_heap(1).unwrap().stats();
    assert_eq!((s1.live_blocks, s1.large_live_blocks), (0, 0));
    pool.check_invariants();
}

#[test]
fn an_upstream_chunk_closes_the_owners_arena_path_until_release() {
    // A one-page arena: the heap soon takes chunks from upstream, whose blocks the owner's
    // arena allocation path (which finds a block's byte with no range check) must not see:
    // the debug build's `try_pop_arena_only` panics on a chunk's block. The owner still
    // allocates and frees without the lock, through the checked path.
    let pool = pool_with(2, 4096);
    let gates = || pool.heaps.get(0).unwrap().gates();
    let biased = super::owner_fence::available();
    hold_a_heap(&pool);
    assert_eq!(
        gates(),
        (false, true),
        "a new heap: unrequested, arena path open"
    );
    in_thread(|| drop(pool.lock_heap(0)));
    assert_eq!(gates(), (biased, !biased), "a request closes both paths");
    for _ in 0..100 {
        hold_a_heap(&pool);
    }
    assert_eq!(gates(), (false, true), "the owner's rebias opens both");
    let live: Vec<usize> = (0..2000).map(|_| pool.allocate(24).unwrap()).collect();
    assert_eq!(
        gates(),
        (false, false),
        "a chunk closes the arena path only"
    );
    // The owner frees its chunks' blocks without its heap's lock, which would request it.
    for &p in &live {
        pool.deallocate(p, 24).unwrap();
    }
    assert_eq!(gates(), (false, false));
    assert!(pool.lock_heap(0).unwrap().has_chunks());
    assert_eq!(gates(), (biased, false), "locking requests a biased heap");
    // Far more than REBIAS_AFTER calls: the owner takes its bias back, but not the arena
    // path while a chunk is there.
    for _ in 0..1000 {
        let p = pool.allocate(24).unwrap();
        pool.deallocate(p, 24).unwrap();
    }
    assert_eq!(gates(), (false, false));
    pool.check_invariants();
    pool.release().unwrap();
    assert!(!pool.lock_heap(0).unwrap().has_chunks());
    // No chunk left: the rebias opens the arena path again.
    for _ in 0..200 {
        let p = pool.allocate(8).unwrap();
        pool.deallocate(p, 8).unwrap();
    }
    assert_eq!(gates(), (false, biased));
    pool.check_invariants();
}

#[test]
fn an_owner_frees_its_chunks_blocks_without_asking_other_heaps() {
    let pool = pool_with(2, 4096);
    hold_a_heap(&pool);
    let gates = |i: usize| pool.heaps.get(i).unwrap().gates();
    assert_eq!(gates(0), (false, true));
    let freed = in_thread(|| {
        let live: Vec<usize> = (0..2000).map(|_| pool.allocate(24).unwrap()).collect();
        for &p in &live {
            pool.deallocate(p, 24).unwrap();
        }
        assert_eq!(pool.heaps.get(1).unwrap().gates(), (false, false));
        live
    });
    // Heap 1's owner found its chunks' blocks in its own heap: it locked (and so
    // requested) no other heap to look for them there.
    assert_eq!(gates(0), (false, true));
    assert!(
        freed.iter().any(|&p| heap_of(&pool, p).is_none()),
        "blocks of chunks"
    );
    pool.check_invariants();
}

#[test]
fn reallocate_moves_into_the_callers_heap_and_frees_in_the_owners() {
    let pool = pool(4);
    pool.allocate(8).unwrap();
    let p = in_thread(|| pool.allocate(16).unwrap());
    // SAFETY: `p` is a live block of 16 bytes.
    unsafe { (p as *mut u64).write(0x5ca1ab1e) };
    let q = pool.reallocate(p, 16, 100).unwrap();
    assert_eq!(heap_of(&pool, q), Some(0));
    // SAFETY: `q` is live with at least 8 bytes, copied from `p`.
    assert_eq!(unsafe { (q as *const u64).read() }, 0x5ca1ab1e);
    assert_eq!(pool.lock_heap(1).unwrap().free_list(1)[0], p);
    pool.check_invariants();
}

#[test]
fn stats_are_the_sum_of_the_heaps() {
    let pool = pool(4);
    pool.allocate(8).unwrap();
    in_thread(|| {
        pool.allocate(64).unwrap();
        pool.allocate(500).unwrap();
    });
    let heaps = heap_stats(&pool);
    let mut sum = heaps[0].clone();
    sum.add_heap(&heaps[1]);
    let mut total = pool.stats();
    (sum.arena_resident, total.arena_resident) = (0, 0);
    assert_eq!(total, sum);
    assert_eq!(total.heap_size, 320 + 2560);
    assert_eq!(total.arena_reserved, 2 * ARENA);
    assert_eq!(total.large_live_bytes, 500);
    let lists = pool.free_list(0);
    assert_eq!(lists.len(), total.free_list_lengths[0]);
    assert_eq!(pool.layout().len(), 2);
    pool.check_invariants();
}

#[test]
fn release_needs_every_heap_empty() {
    let pool = pool(4);
    let mine = pool.allocate(8).unwrap();
    let theirs = in_thread(|| pool.allocate(8).unwrap());
    pool.deallocate(mine, 8).unwrap();
    let before = heap_stats(&pool);
    assert!(matches!(
        pool.release(),
        Err(AllocError::LiveBlocks { blocks: 1 })
    ));
    assert_eq!(heap_stats(&pool), before);
    pool.deallocate(theirs, 8).unwrap();
    pool.release().unwrap();
    let s = pool.stats();
    assert_eq!((s.heap_size, s.arena_used), (0, 0));
    pool.check_invariants();
}

#[test]
fn an_exited_threads_heap_is_taken_over_with_its_blocks() {
    let pool = pool(2);
    pool.allocate(8).unwrap();
    let (p, q) = in_thread(|| {
        let p = pool.allocate(32).unwrap();
        (p, pool.allocate(32).unwrap())
    });
    in_thread(|| pool.deallocate(q, 32).unwrap());
    // Heap 1's slot is free again; the next thread takes it, and its free list.
    assert_eq!(in_thread(|| pool.allocate(32).unwrap()), q);
    assert_eq!(pool.heap_count(), 2);
    pool.deallocate(p, 32).unwrap();
    pool.deallocate(q, 32).unwrap();
    pool.check_invariants();
}

#[test]
fn one_heap_is_shared_by_every_thread() {
    let pool = pool(1);
    let mine = pool.allocate(8).unwrap();
    let theirs = in_thread(|| pool.allocate(8).unwrap());
    assert_eq!(pool.heap_count(), 1);
    assert_eq!(theirs, mine + 8, "the next block of the same list");
}

#[test]
fn more_threads_than_heaps_share_without_losing_blocks() {
    let pool = pool_with(3, 1 << 16);
    let threads = 8;
    std::thread::scope(|s| {
        for t in 0..threads {
            let pool = &pool;
            s.spawn(move || {
                let mut live: Vec<(usize, usize, u64)> = Vec::new();
                let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ t;
                for i in 0..20_000u64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if live.len() < 64 && (x % 3 != 0 || live.is_empty()) {
                        let n = 1 + (x >> 8) as usize % 200;
                        let p = pool.allocate(n).unwrap();
                        // SAFETY: `p` is a new live block of `n >= 8`... or fewer bytes:
                        // write only its first byte, which exists since `n >= 1`.
                        unsafe { (p as *mut u8).write(i as u8) };
                        live.push((p, n, i));
                    } else {
                        let (p, n, i) = live.swap_remove((x >> 16) as usize % live.len());
                        // SAFETY: `p` is live, ours, and its first byte was written.
                        assert_eq!(unsafe { (p as *const u8).read() }, i as u8);
                        pool.deallocate(p, n).unwrap();
                    }
                }
                for (p, n, _) in live {
                    pool.deallocate(p, n).unwrap();
                }
            });
        }
    });
    assert!(pool.heap_count() <= 3);
    let s = pool.stats();
    assert_eq!((s.live_blocks, s.large_live_blocks), (0, 0));
    pool.check_invariants();
    pool.release().unwrap();
}

#[test]
fn threads_free_each_others_blocks_concurrently() {
    let pool = pool(4);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, usize)>(256);
    std::thread::scope(|s| {
        let pool = &pool;
        s.spawn(move || {
            for i in 0..50_000usize {
                let n = 8 + i % 150;
                tx.send((pool.allocate(n).unwrap(), n)).unwrap();
            }
        });
        s.spawn(move || {
            let mut mine = Vec::new();
            for (p, n) in rx {
                pool.deallocate(p, n).unwrap();
                mine.push(pool.allocate(24).unwrap());
                if mine.len() > 100 {
                    mine.drain(..).for_each(|q| pool.deallocate(q, 24).unwrap());
                }
            }
            mine.into_iter()
                .for_each(|q| pool.deallocate(q, 24).unwrap());
        });
    });
    let s = pool.stats();
    assert_eq!((s.live_blocks, s.large_live_blocks), (0, 0));
    pool.check_invariants();
}

#[test]
fn a_thread_alternating_between_pools_keeps_its_heap_in_each() {
    let (a, b) = (pool(4), pool(4));
    // The main thread takes heap 0 of both; the worker heap 1 of both, switching pools at
    // every call, so its cached heap is always the other pool's.
    a.allocate(8).unwrap();
    b.allocate(8).unwrap();
    let blocks = in_thread(|| {
        (0..6)
            .map(|k| {
                let pool = if k % 2 == 0 { &a } else { &b };
                (k % 2, pool.allocate(16).unwrap())
            })
            .collect::<Vec<_>>()
    });
    for &(which, p) in &blocks {
        let pool = if which == 0 { &a } else { &b };
        assert_eq!(heap_of(pool, p), Some(1));
    }
    // A pool made where a dropped one was is another pool: no heap of the old one is used.
    drop(b);
    let c = pool(4);
    assert_eq!(heap_of(&c, c.allocate(8).unwrap()), Some(0));
    a.check_invariants();
    c.check_invariants();
}

#[test]
fn a_pool_moved_after_use_still_finds_its_heaps() {
    let pool = pool(4);
    let first = pool.allocate(8).unwrap();
    let theirs = in_thread(|| pool.allocate(16).unwrap());
    // Both threads have a heap of this pool cached; the pool moves under them.
    let pool = Box::new(pool);
    let second = pool.allocate(8).unwrap();
    assert_eq!(second, first + 8, "heap 0's list, in the moved pool");
    // A refill changes what lies inside the pool itself (the chunk's bounds): it must be
    // the moved pool's, not a stale copy's. 2 blocks of 64 out of the 160 bytes left.
    let left = |pool: &SharedPool| heap_stats(pool)[0].chunk_bytes_left;
    assert_eq!(left(&pool), 160);
    pool.allocate(64).unwrap();
    assert_eq!(left(&pool), 32, "the moved pool's chunk was cut");
    assert_eq!(pool.stats().live_blocks, 4);
    assert_eq!(in_thread(|| pool.allocate(16).unwrap()), theirs + 16);
    pool.check_invariants();
}

#[test]
fn a_pinned_block_refuses_its_free_and_no_other() {
    let pool = pool(1);
    let [a, b] = [pool.allocate(24).unwrap(), pool.allocate(24).unwrap()];
    pool.pin(a).unwrap();
    pool.pin(a).unwrap();
    // `b` frees on the fast path while `a` is exported.
    pool.deallocate(b, 24).unwrap();
    let before = pool.stats();
    assert!(matches!(
        pool.deallocate(a, 24),
        Err(AllocError::Pinned { .. })
    ));
    assert_eq!(pool.stats(), before, "a refused free changes nothing");
    pool.unpin(a);
    assert!(matches!(
        pool.deallocate(a, 24),
        Err(AllocError::Pinned { .. })
    ));
    pool.unpin(a);
    pool.check_invariants();
    pool.deallocate(a, 24).unwrap();
    assert_eq!(pool.allocate(24).unwrap(), a, "LIFO: freed like any block");
    pool.check_invariants();
}

/// Owners allocate and free on their biased heaps while another thread reads every heap
/// (`stats`, the invariants), which makes each owner stay out while it looks.
#[test]
fn inspections_while_owners_allocate_see_consistent_heaps() {
    let pool = pool(4);
    hold_a_heap(&pool);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let (pool, done) = (&pool, &done);
            s.spawn(move || {
                let mut live = Vec::new();
                for i in 0..20_000usize {
                    let n = 8 + (i * 8 + t as usize * 16) % 120;
                    let p = pool.allocate(n).unwrap();
                    // SAFETY: `p` is a fresh block of `n` bytes.
                    unsafe { std::ptr::write_bytes(p as *mut u8, t, n) };
                    live.push((p, n));
                    if live.len() > 50 {
                        let (q, m) = live.swap_remove(i % live.len());
                        // SAFETY: `q` is a live block of `m` bytes this thread wrote.
                        let bytes = unsafe { std::slice::from_raw_parts(q as *const u8, m) };
                        assert!(bytes.iter().all(|&b| b == t), "block {q:#x} overwritten");
                        pool.deallocate(q, m).unwrap();
                    }
                }
                for (q, m) in live {
                    pool.deallocate(q, m).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::Release);
            });
        }
        let mut looks = 0;
        while !done.load(std::sync::atomic::Ordering::Acquire) || looks < 10 {
            pool.check_invariants();
            looks += 1;
        }
    });
    pool.check_invariants();
    assert_eq!(pool.stats().live_blocks, 0);
}

#[test]
fn only_a_biased_heaps_owner_finds_it_without_the_lock() {
    let single = pool(1);
    let multi = pool(2);
    let (a, b) = (single.allocate(8).unwrap(), multi.allocate(8).unwrap());
    assert!(
        single.heaps.mine_biased().is_none(),
        "one heap: everyone locks"
    );
    let biased = super::owner_fence::available();
    assert_eq!(multi.heaps.mine_biased().is_some(), biased);
    in_thread(|| {
        assert!(multi.heaps.mine_biased().is_none(), "no heap cached yet");
        let c = multi.allocate(8).unwrap();
        let mine = multi.heaps.mine_biased().map(std::ptr::from_ref);
        assert_eq!(mine.is_some(), biased);
        let first = multi.heaps.get(0).map(std::ptr::from_ref);
        assert!(mine.is_none() || mine != first, "heap 1, not heap 0");
        multi.deallocate(c, 8).unwrap();
    });
    single.deallocate(a, 8).unwrap();
    multi.deallocate(b, 8).unwrap();
    multi.check_invariants();
}

#[test]
fn a_refused_barrier_leaves_the_heap_as_it_was_and_the_global_one_stands_in() {
    use super::owner_fence::tests::{refusing, ALL, PRIVATE};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    if !super::owner_fence::available() {
        return;
    }
    let pool = pool(2);
    let mine = pool.allocate(8).unwrap();
    let (a, b) = in_thread(|| (pool.allocate(8).unwrap(), pool.allocate(8).unwrap()));
    // No inspection before the refusals: taking heap 1 would request it with a barrier.
    // A move takes the heap (a free of its block would not: see `remote_frees`).
    let moving = || pool.reallocate(a, 8, 64);
    for _ in 0..2 {
        let refused = catch_unwind(AssertUnwindSafe(|| refusing(ALL, moving)));
        // Refused again: the first refusal left the heap unrequested, so this one asks
        // for a barrier too instead of trusting a request no owner was made to see.
        assert!(refused.is_err(), "no barrier: the heap cannot be had");
    }
    // Not locked: taken at once, with the global barrier (same class: `a` stays).
    assert_eq!(refusing(PRIVATE, || pool.reallocate(a, 8, 7)).unwrap(), a);
    assert_eq!((heap_of(&pool, a), heap_of(&pool, b)), (Some(1), Some(1)));
    assert_eq!(
        pool.stats().live_blocks,
        3,
        "the refused moves moved nothing"
    );
    pool.deallocate(a, 8).unwrap();
    pool.deallocate(b, 8).unwrap();
    pool.deallocate(mine, 8).unwrap();
    assert_eq!(pool.stats().live_blocks, 0);
    pool.check_invariants();
}

#[test]
fn a_child_forked_while_an_owner_was_inside_does_not_wait_for_it() {
    use crate::raw_lock::tests::in_forked_child;
    let pool = pool(2);
    let mine = pool.allocate(8).unwrap();
    let theirs = in_thread(|| pool.allocate(8).unwrap());
    let (h0, h1) = (pool.heaps.get(0).unwrap(), pool.heaps.get(1).unwrap());
    // Heap 1 as its owner leaves it when stopped inside its fast path.
    h1.set_busy(true);
    in_forked_child(
        "the child waited for an owner that does not run in it",
        || {
            // Heap 1's owner does not run here: taking the heap must not wait for it.
            let taken = pool.stats().live_blocks == 2 && pool.deallocate(theirs, 8).is_ok();
            // Heap 0's owner forked this child: it runs here, so its flag is real.
            h0.set_busy(true);
            let forker_kept = !h0.owner_left_behind();
            h0.set_busy(false);
            taken && forker_kept && pool.deallocate(mine, 8).is_ok()
        },
    );
    h1.set_busy(false);
    assert!(
        !h1.owner_left_behind(),
        "in its own process an owner is never left behind"
    );
    pool.deallocate(theirs, 8).unwrap();
    pool.deallocate(mine, 8).unwrap();
    pool.check_invariants();
}

#[test]
fn another_threads_free_takes_no_lock_and_its_misuse_is_refused_at_that_call() {
    if !super::owner_fence::available() {
        return;
    }
    let pool = pool(2);
    let mine = pool.allocate(8).unwrap();
    let (to_main, from_owner) = std::sync::mpsc::channel();
    let (to_owner, from_main) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let pool = &pool;
        s.spawn(move || {
            let blocks: Vec<usize> = (0..3).map(|_| pool.allocate(24).unwrap()).collect();
            let claimed = pool.allocate_claimed(24).unwrap();
            to_main.send((blocks, claimed)).unwrap();
            // Alive (still the owner) until the other thread is done.
            from_main.recv().unwrap();
        });
        let (blocks, claimed) = from_owner.recv().unwrap();
        let heap = pool.heaps.get(1).unwrap();
        pool.deallocate(blocks[0], 24).unwrap();
        assert_eq!(heap.requested_and_pending(), (false, true), "no lock taken");
        pool.deallocate_claimed(claimed, 24).unwrap();
        // Misuse is refused at once, with the error one SGI pool gives.
        assert!(matches!(
            pool.deallocate(blocks[0], 24),
            Err(AllocError::NotLive { .. })
        ));
        assert!(matches!(
            pool.deallocate_claimed(claimed, 24),
            Err(AllocError::NotLive { .. })
        ));
        assert!(matches!(
            pool.deallocate(blocks[1], 16),
            Err(AllocError::SizeMismatch { .. })
        ));
        let pinned = pool.lock_holding(blocks[2]).pin(blocks[2]);
        assert!(pinned.is_ok());
        assert!(matches!(
            pool.deallocate(blocks[2], 24),
            Err(AllocError::Pinned { .. })
        ));
        pool.lock_holding(blocks[2]).unpin(blocks[2]);
        // Taken back in the order freed: the SGI list's head is the last one.
        let list = pool.lock_heap(1).unwrap().free_list(2);
        assert_eq!(&list[..2], &[claimed, blocks[0]]);
        assert_eq!(pool.stats().live_blocks, 3, "mine and blocks 1, 2");
        pool.deallocate(blocks[1], 24).unwrap();
        pool.deallocate(blocks[2], 24).unwrap();
        pool.check_invariants();
        to_owner.send(()).unwrap();
    });
    pool.deallocate(mine, 8).unwrap();
    assert_eq!(pool.stats().live_blocks, 0);
    pool.check_invariants();
}

#[test]
fn the_owner_takes_back_remote_frees_when_its_list_runs_out() {
    if !super::owner_fence::available() {
        return;
    }
    let pool = pool(2);
    pool.allocate(8).unwrap();
    let (to_main, from_owner) = std::sync::mpsc::channel();
    let (to_owner, from_main) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let pool = &pool;
        s.spawn(move || {
            let refill = pool.params().refill();
            let blocks: Vec<usize> = (0..refill).map(|_| pool.allocate(8).unwrap()).collect();
            let refills = pool.lock_heap(1).unwrap().stats().refills;
            to_main.send(blocks.clone()).unwrap();
            from_main.recv().unwrap();
            // The list is empty: the slow path takes the remote frees back, no refill.
            let again: Vec<usize> = (0..refill).map(|_| pool.allocate(8).unwrap()).collect();
            assert_eq!(pool.lock_heap(1).unwrap().stats().refills, refills);
            let mut want = blocks;
            want.sort_unstable();
            let mut got = again;
            got.sort_unstable();
            assert_eq!(got, want, "the same blocks again");
            for p in got {
                pool.deallocate(p, 8).unwrap();
            }
        });
        for p in from_owner.recv().unwrap() {
            pool.deallocate(p, 8).unwrap();
        }
        to_owner.send(()).unwrap();
    });
    pool.check_invariants();
}

#[test]
fn a_child_forked_while_a_remote_free_was_half_done_does_not_wait_for_it() {
    let pool = pool(2);
    let mine = pool.allocate(8).unwrap();
    let theirs = in_thread(|| pool.allocate(8).unwrap());
    let h1 = pool.heaps.get(1).unwrap();
    // A slot of heap 1's list reserved by a thread stopped before it wrote the address.
    h1.remote().reserve_unwritten();
    crate::raw_lock::tests::in_forked_child(
        "the child waited for a remote free that does not run in it",
        || pool.stats().live_blocks == 2 && pool.deallocate(theirs, 8).is_ok(),
    );
    // Heap 1 is not taken here: in this process its slot's writer "runs", and would be
    // waited for.
    pool.deallocate(mine, 8).unwrap();
}

#[test]
fn a_child_forked_while_another_thread_held_a_heap_does_not_wait_for_it() {
    use crate::raw_lock::tests::{in_forked_child, while_another_thread_holds};
    let pool = pool(2);
    let mine = pool.allocate(8).unwrap();
    let theirs = in_thread(|| pool.allocate(8).unwrap());
    // Heap 1 held (its lock taken), as a slow path, an inspection or a drain holds it.
    while_another_thread_holds(
        || pool.lock_heap(1).unwrap(),
        || {
            in_forked_child(
                "the child waited for a heap held by a thread not in it",
                || pool.stats().live_blocks == 2 && pool.deallocate(theirs, 8).is_ok(),
            );
        },
    );
    pool.deallocate(theirs, 8).unwrap();
    pool.deallocate(mine, 8).unwrap();
    pool.check_invariants();
}

#[test]
fn a_child_forked_while_another_thread_was_making_heaps_makes_its_own() {
    use crate::raw_lock::tests::in_forked_child;
    let pool = pool(3);
    let mine = pool.allocate(8).unwrap();
    let heap0 = pool.lock_heap(0).unwrap();
    let pool = &pool;
    std::thread::scope(|s| {
        // Stopped inside `set_chunk_fill`, which holds the heaps' maker while it waits for
        // heap 0 (held by this thread): as a thread making a heap at the fork holds it.
        s.spawn(|| pool.set_chunk_fill(None));
        std::thread::sleep(std::time::Duration::from_millis(100));
        // The parent lets heap 0 go when the closure is dropped, the child when it runs.
        in_forked_child("the child waited for a heap maker not in it", move || {
            drop(heap0);
            // A new thread of the child makes a heap of its own (slot 1).
            in_thread(move || pool.allocate(8).map(|p| pool.deallocate(p, 8))).is_ok()
                && pool.heap_count() == 2
        });
    });
    pool.deallocate(mine, 8).unwrap();
    pool.check_invariants();
}
