//! Model checks of `SharedPool`'s concurrency (issues #11, #12), run by
//! `scripts/modelcheck` with `--features shuttle`, which swaps the pool's atomics, locks
//! and thread-locals for shuttle's (`sync::model`). Each scenario is two threads at a time
//! (the test's main thread and one spawned, or two spawned) on a pool of one heap (locked
//! by everyone) or two (biased: each owner enters its heap with a store and a load, others
//! request it, see `heaps::Heap`), run under shuttle's PCT and random schedulers, and the
//! one-heap scenario also depth-first over every interleaving (see `check`). Shuttle runs
//! every atomic as SeqCst, and the asymmetric fence (`owner_fence`) is a no-op there: these
//! checks prove the protocols' logic, not the weak-memory orderings, which the membarrier
//! side of that fence supplies.
//!
//! After every execution: each heap's invariants and the summed conservation
//! (`check_invariants`), no live block left (`live_blocks == 0`), and no block handed to
//! two owners at once (each owner writes its mark over its block and reads it back before
//! freeing it).
#![cfg(feature = "shuttle")]

use shuttle::scheduler::{DfsScheduler, PctScheduler, RandomScheduler};
use shuttle::sync::{Mutex, MutexGuard};
use shuttle::{thread, Config, Runner};
use std::cell::UnsafeCell;
use std::sync::Arc;
use stlalloc_core::{AllocError, MallocAlloc, Params, RawLock, SharedPool, SpinLock};

/// A lock that blocks (a shuttle mutex) instead of spinning, so that a depth-first search
/// never schedules a waiter forever: the search then ends, having seen every interleaving.
#[derive(Default)]
struct BlockingLock {
    mutex: Mutex<()>,
    guard: UnsafeCell<Option<MutexGuard<'static, ()>>>,
}

// SAFETY: `guard` is written by `lock` after the mutex is taken and taken back by `unlock`
// before it is given up, so only the holder touches it; the mutex itself excludes.
unsafe impl Sync for BlockingLock {}
// SAFETY: as above.
unsafe impl Send for BlockingLock {}

// SAFETY: the shuttle mutex lets one caller at a time between `lock` and `unlock`.
unsafe impl RawLock for BlockingLock {
    fn lock(&self) {
        let guard = self.mutex.lock().unwrap();
        // SAFETY: the guard borrows `self.mutex`, and is dropped by `unlock`, called while
        // `self` lives (a heap's lock is unlocked before the heap is dropped).
        let guard: MutexGuard<'static, ()> = unsafe { std::mem::transmute(guard) };
        // SAFETY: this caller holds the mutex, so no other touches `guard`.
        unsafe { *self.guard.get() = Some(guard) };
    }

    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock (the trait's contract), so it alone has `guard`.
        drop(unsafe { (*self.guard.get()).take() });
    }
}

const ARENA: usize = 1 << 16;
/// Bounds each depth-first search: the smallest scenarios end below it (every interleaving
/// seen); the others, whose interleavings number in the millions, see their first ones.
const DFS_LIMIT: usize = 100_000;
const PCT_RUNS: usize = 10_000;
const RANDOM_RUNS: usize = 10_000;

fn pool<L: RawLock>(heaps: usize) -> Arc<SharedPool<Arc<MallocAlloc>, L>> {
    let upstream = Arc::new(MallocAlloc::new(None));
    Arc::new(SharedPool::with_heaps(Params::default(), ARENA, upstream, heaps).unwrap())
}

/// Allocates `n` bytes and marks them as `mark`'s.
fn take<L: RawLock>(pool: &SharedPool<Arc<MallocAlloc>, L>, n: usize, mark: u8) -> usize {
    let p = pool.allocate(n).unwrap();
    // SAFETY: `p` is a live block of `n` bytes that this caller owns.
    unsafe { std::ptr::write_bytes(p as *mut u8, mark, n) };
    p
}

/// Checks the mark (nobody else was handed the block meanwhile), then frees it.
fn give<L: RawLock>(pool: &SharedPool<Arc<MallocAlloc>, L>, p: usize, n: usize, mark: u8) {
    // SAFETY: `p` is a live block of `n` bytes that this caller owns.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
    assert!(bytes.iter().all(|&b| b == mark), "block {p:#x} overwritten");
    pool.deallocate(p, n).unwrap();
}

/// One allocation and its free: the calling thread then holds a heap (the first caller
/// heap 0).
fn hold_a_heap<L: RawLock>(pool: &SharedPool<Arc<MallocAlloc>, L>) {
    let p = pool.allocate(8).unwrap();
    pool.deallocate(p, 8).unwrap();
}

fn settled<L: RawLock>(pool: &SharedPool<Arc<MallocAlloc>, L>) {
    pool.check_invariants();
    let s = pool.stats();
    assert_eq!(
        (s.live_blocks, s.large_live_blocks),
        (0, 0),
        "a block leaked"
    );
    assert!(pool.heap_count() <= pool.max_heaps());
}

/// Runs `scenario` under PCT (depth 3) with blocking locks and with the real spin lock,
/// and under the random scheduler with the spin lock; with `dfs`, also depth-first with
/// blocking locks (every interleaving if there are fewer than `DFS_LIMIT`). Depth-first
/// search only suits scenarios where no thread waits by spinning: on a biased heap (two
/// slots) a thread other than the owner spins until the owner leaves its fast path, and
/// a depth-first search may schedule the spinner forever. Prints the executions.
fn check(name: &str, dfs: bool, scenario: fn(bool)) {
    let pct = |spin| {
        Runner::new(PctScheduler::new(3, PCT_RUNS), Config::new()).run(move || scenario(spin))
    };
    let (blocking, spinning) = (pct(false), pct(true));
    let random =
        Runner::new(RandomScheduler::new(RANDOM_RUNS), Config::new()).run(move || scenario(true));
    let mut line = format!(
        "modelcheck {name}: PCT {blocking} runs (blocking locks) + {spinning} (spin lock), random {random}"
    );
    if dfs {
        let n = Runner::new(DfsScheduler::new(Some(DFS_LIMIT), false), Config::new())
            .run(move || scenario(false));
        let how = if n < DFS_LIMIT {
            "all of them"
        } else {
            "bounded"
        };
        line += &format!(", DFS {n} interleavings ({how})");
    }
    println!("{line}");
}

/// Runs `body` with a pool locked by blocking locks (`spin == false`) or spin locks.
macro_rules! with_lock {
    ($spin:expr, $heaps:expr, |$pool:ident| $body:block) => {
        if $spin {
            let $pool = pool::<SpinLock>($heaps);
            $body
        } else {
            let $pool = pool::<BlockingLock>($heaps);
            $body
        }
    };
}

/// Two threads, each allocating and freeing on a heap of its own.
#[test]
fn own_heaps() {
    check("own_heaps", false, |spin| {
        with_lock!(spin, 2, |pool| {
            let p2 = pool.clone();
            let t = thread::spawn(move || {
                let p = take(&p2, 24, 1);
                give(&p2, p, 24, 1);
            });
            let p = take(&pool, 24, 2);
            give(&pool, p, 24, 2);
            t.join().unwrap();
            // One heap if the spawned thread was done (and gave slot 0 back) before.
            settled(&pool);
        })
    });
}

/// Two threads on one heap (K = 1): the lock alone keeps the free list whole.
#[test]
fn one_shared_heap() {
    check("one_shared_heap", true, |spin| {
        with_lock!(spin, 1, |pool| {
            let p2 = pool.clone();
            let t = thread::spawn(move || {
                let p = take(&p2, 24, 1);
                give(&p2, p, 24, 1);
            });
            let p = take(&pool, 24, 2);
            give(&pool, p, 24, 2);
            t.join().unwrap();
            settled(&pool);
        })
    });
}

/// A block of heap 0 freed by a thread on heap 1 while heap 0's owner allocates: it goes
/// back to heap 0's list, whose head it is once both are done.
#[test]
fn cross_thread_free() {
    check("cross_thread_free", false, |spin| {
        with_lock!(spin, 2, |pool| {
            let p = take(&pool, 24, 3);
            let p2 = pool.clone();
            let t = thread::spawn(move || give(&p2, p, 24, 3));
            let q = take(&pool, 24, 4);
            t.join().unwrap();
            give(&pool, q, 24, 4);
            settled(&pool);
            let heap0 = pool.lock_heap(0).unwrap().free_list(2);
            assert!(heap0.contains(&p) && heap0.contains(&q));
        })
    });
}

/// A thread exits holding a live block; a second thread, started while the first may
/// still run, takes its heap over (or shares one while the slot is held), frees the
/// block, and allocates. Then a third thread must find a slot free: heaps were handed back.
#[test]
fn exit_with_live_blocks_then_reuse() {
    check("exit_with_live_blocks_then_reuse", false, |spin| {
        with_lock!(spin, 2, |pool| {
            hold_a_heap(&pool);
            let pa = pool.clone();
            let a = thread::spawn(move || take(&pa, 24, 5));
            let pb = pool.clone();
            let b = thread::spawn(move || {
                let q = take(&pb, 24, 6);
                give(&pb, q, 24, 6);
            });
            let live = a.join().unwrap();
            b.join().unwrap();
            let pc = pool.clone();
            thread::spawn(move || {
                give(&pc, live, 24, 5);
                let r = take(&pc, 24, 7);
                give(&pc, r, 24, 7);
            })
            .join()
            .unwrap();
            settled(&pool);
            assert_eq!(
                pool.heap_count(),
                2,
                "a heap per slot, handed back, not remade"
            );
        })
    });
}

/// The last block a thread freed is the first its heap's next owner gets: the heap was
/// handed back at exit, whole, and taken over; meanwhile the main thread uses heap 0.
#[test]
fn handed_back_heap_is_taken_over_exactly() {
    check("handed_back_heap_is_taken_over_exactly", false, |spin| {
        with_lock!(spin, 2, |pool| {
            hold_a_heap(&pool);
            let pa = pool.clone();
            let (keep, freed) = thread::spawn(move || {
                let keep = take(&pa, 24, 8);
                let freed = take(&pa, 24, 9);
                give(&pa, freed, 24, 9);
                (keep, freed)
            })
            .join()
            .unwrap();
            let pb = pool.clone();
            let again = thread::spawn(move || {
                let r = take(&pb, 24, 10);
                give(&pb, keep, 24, 8);
                give(&pb, r, 24, 10);
                r
            });
            let mine = take(&pool, 24, 11);
            give(&pool, mine, 24, 11);
            assert_eq!(again.join().unwrap(), freed);
            settled(&pool);
        })
    });
}

/// `stats()` and the invariant checks while another thread allocates and frees: every
/// heap, read under its lock, is consistent, and so is the sum.
#[test]
fn stats_during_concurrent_use() {
    check("stats_during_concurrent_use", false, |spin| {
        with_lock!(spin, 2, |pool| {
            hold_a_heap(&pool);
            let p2 = pool.clone();
            let t = thread::spawn(move || {
                let p = take(&p2, 40, 11);
                give(&p2, p, 40, 11);
            });
            pool.check_invariants();
            let s = pool.stats();
            assert!(s.live_blocks <= 1);
            t.join().unwrap();
            settled(&pool);
        })
    });
}

/// The owner makes `n` blocks of `size` bytes and then allocates `rounds` more, one at a
/// time, while another thread `treats` each of its `n` blocks (moves or frees them; the
/// result, if any, is freed by that thread).
fn another_thread_on_the_owners_blocks<L: RawLock + 'static>(
    pool: Arc<SharedPool<Arc<MallocAlloc>, L>>,
    size: usize,
    rounds: u8,
    treat: fn(&SharedPool<Arc<MallocAlloc>, L>, usize, usize, u8),
) {
    let blocks: Vec<usize> = (0..3).map(|i| take(&pool, size, 20 + i)).collect();
    let p2 = pool.clone();
    let t = thread::spawn(move || {
        for (i, p) in blocks.into_iter().enumerate() {
            treat(&p2, p, size, 20 + i as u8);
        }
    });
    for i in 0..rounds {
        let q = take(&pool, size, 30 + i);
        give(&pool, q, size, 30 + i);
    }
    t.join().unwrap();
    settled(&pool);
}

/// Moves from another thread, one after another, while the owner keeps allocating: each
/// move locks the owner's heap and requests it, so the owner locks until it takes the bias
/// back, after which the next move requests it again. (Frees no longer request it: they go
/// onto the remote-free list.)
#[test]
fn repeated_cross_moves_revoke_and_rebias() {
    check("repeated_cross_moves_revoke_and_rebias", false, |spin| {
        with_lock!(spin, 2, |pool| {
            another_thread_on_the_owners_blocks(pool, 24, 3, |pool, p, n, mark| {
                // Shrunk into another class, so it moves, carrying its first 8 bytes.
                let q = pool.reallocate(p, n, 8).unwrap();
                give(pool, q, 8, mark);
            });
        })
    });
}

/// Remote frees (issue #12: another thread's free goes onto the heap's remote-free list,
/// no lock) racing the owner: its allocations, an inspection, a double free by the freeing
/// thread (refused at that call), a free of the same block by the owner and by the other
/// thread at once (at least one succeeds; the block is free once), and the freeing
/// thread's exit, after which its heap, unowned, takes a remote free too; and the block
/// freed twice at once handed out again while an entry for it may be left.
#[test]
fn remote_frees_race_the_owner() {
    check("remote_frees_race_the_owner", false, |spin| {
        with_lock!(spin, 2, |pool| {
            let p = take(&pool, 24, 40);
            let q = take(&pool, 24, 41);
            let p2 = pool.clone();
            let t = thread::spawn(move || {
                give(&p2, p, 24, 40);
                let again = p2.deallocate(p, 24);
                assert!(
                    matches!(again, Err(AllocError::NotLive { .. })),
                    "a double free is refused at its call: {again:?}"
                );
                let kept = take(&p2, 24, 42);
                (kept, p2.deallocate(q, 24).is_ok())
            });
            // Another class: `p`, taken back, cannot be handed out again meanwhile.
            let r = take(&pool, 40, 43);
            pool.check_invariants();
            let mine_q = pool.deallocate(q, 24).is_ok();
            give(&pool, r, 40, 43);
            let (kept, their_q) = t.join().unwrap();
            assert!(mine_q || their_q, "q freed once at least");
            // `q` handed out again: an entry the race may have left is stale, not a free.
            let again = take(&pool, 24, 44);
            pool.check_invariants();
            give(&pool, again, 24, 44);
            give(&pool, kept, 24, 42);
            settled(&pool);
            let list = pool.lock_heap(0).unwrap().free_list(2);
            for b in [p, q] {
                assert_eq!(list.iter().filter(|&&x| x == b).count(), 1, "free once");
            }
        })
    });
}

/// A remote-free list fills (two entries under the model checker): the next free takes
/// the heap's lock, while the owner allocates and its slow path takes the list back.
#[test]
fn a_full_remote_list_takes_the_lock() {
    check("a_full_remote_list_takes_the_lock", false, |spin| {
        with_lock!(spin, 2, |pool| {
            another_thread_on_the_owners_blocks(pool, 8, 2, give);
        })
    });
}

/// The owner and another thread free one block at once (a racy double free): at least
/// one succeeds, and the block is free once; handed out again, it stays live whatever
/// entry the race left on the remote-free list (`drain` drops it as stale).
#[test]
fn owner_and_remote_free_one_block_at_once() {
    check("owner_and_remote_free_one_block_at_once", false, |spin| {
        with_lock!(spin, 2, |pool| {
            let q = take(&pool, 24, 70);
            let p2 = pool.clone();
            let t = thread::spawn(move || p2.deallocate(q, 24).is_ok());
            let mine = pool.deallocate(q, 24).is_ok();
            let theirs = t.join().unwrap();
            assert!(mine || theirs, "freed once at least");
            // `q` again if it is on the list already (else its remote free waits there):
            // whatever entry for it the race left is then stale, and must stay unused.
            let again = take(&pool, 24, 71);
            pool.check_invariants();
            give(&pool, again, 24, 71);
            settled(&pool);
        })
    });
}

/// A stale entry (left by the owner and another thread freeing one block at once) meets a
/// full remote-free list: the block, handed out again, is freed by a third thread, whose
/// push finds the list full while the owner's slow path drains the stale entry. The block
/// must end up free once, not twice (two owners for one block).
#[test]
fn a_stale_entry_and_a_full_list_free_once() {
    check("a_stale_entry_and_a_full_list_free_once", false, |spin| {
        with_lock!(spin, 2, |pool| {
            let q = take(&pool, 24, 80);
            let s = take(&pool, 8, 81);
            let p2 = pool.clone();
            let t = thread::spawn(move || p2.deallocate(q, 24).is_ok());
            let mine = pool.deallocate(q, 24).is_ok();
            let theirs = t.join().unwrap();
            assert!(mine || theirs, "freed once at least");
            // A second entry (`s`, another class) fills the list when the race left one.
            let p3 = pool.clone();
            thread::spawn(move || give(&p3, s, 8, 81)).join().unwrap();
            let again = take(&pool, 24, 82);
            let p4 = pool.clone();
            let t = thread::spawn(move || give(&p4, again, 24, 82));
            // A slow path of the owner (another class, whose list is empty): it drains.
            let r = take(&pool, 40, 83);
            t.join().unwrap();
            let (a, b) = (take(&pool, 24, 84), take(&pool, 24, 85));
            assert_ne!(a, b, "one block handed out twice");
            give(&pool, a, 24, 84);
            give(&pool, b, 24, 85);
            give(&pool, r, 40, 83);
            settled(&pool);
        })
    });
}

/// A remote free in flight while the owner inspects its pool and then releases it: every
/// inspection sees conservation hold (the block counts live until taken back), and
/// `release` either refuses (the block still live) or gives everything back after taking
/// it back; once the free has returned, `release` succeeds and the pool starts again.
#[test]
fn release_races_a_remote_free() {
    check("release_races_a_remote_free", false, |spin| {
        with_lock!(spin, 2, |pool| {
            let p = take(&pool, 24, 90);
            let p2 = pool.clone();
            let t = thread::spawn(move || give(&p2, p, 24, 90));
            pool.check_invariants();
            let live = pool.stats().live_blocks;
            assert!(live <= 1);
            match pool.release() {
                Ok(()) => assert_eq!(pool.stats().heap_size, 0, "released"),
                Err(AllocError::LiveBlocks { blocks }) => assert_eq!(blocks, 1),
                Err(e) => panic!("{e:?}"),
            }
            t.join().unwrap();
            pool.release().unwrap();
            let q = take(&pool, 24, 91);
            give(&pool, q, 24, 91);
            settled(&pool);
        })
    });
}

/// Another thread frees an exited thread's blocks onto its heap's remote-free list while
/// the next thread takes that heap over and allocates from it: the entries pushed before,
/// during and after the takeover are each taken back once (by the new owner's slow path or
/// an inspection), and no block is handed out twice.
#[test]
fn heap_taken_over_amid_remote_frees() {
    check("heap_taken_over_amid_remote_frees", false, |spin| {
        with_lock!(spin, 2, |pool| {
            hold_a_heap(&pool);
            let pa = pool.clone();
            let blocks = thread::spawn(move || [take(&pa, 8, 92), take(&pa, 8, 93)])
                .join()
                .unwrap();
            let pb = pool.clone();
            let b = thread::spawn(move || {
                let q = take(&pb, 8, 94);
                give(&pb, q, 8, 94);
            });
            give(&pool, blocks[0], 8, 92);
            give(&pool, blocks[1], 8, 93);
            b.join().unwrap();
            settled(&pool);
            let list = pool.lock_heap(1).unwrap().free_list(0);
            for p in blocks {
                assert_eq!(list.iter().filter(|&&x| x == p).count(), 1, "free once");
            }
        })
    });
}
