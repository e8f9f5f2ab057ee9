//! Which thread is calling, as a number, so that a `SharedPool` can send each thread to a
//! heap of its own; and the heap slots a thread holds, given back when the thread exits so
//! that a later thread can take the heap over.
//!
//! Invariants:
//! - a token is never `FREE` nor `UNASSIGNED`, and no two threads ever get the same one;
//! - a slot holds `FREE` or the token of a thread that claimed it and has not exited
//!   (its exit stores `FREE` back), unless the claim happened during the thread's exit,
//!   which `claim` refuses.

use crate::sync::model::atomic::{AtomicU64, Ordering};
use crate::sync::model::thread_local;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// The owner of a slot nobody holds.
pub const FREE: u64 = 0;

/// The token of a thread that never needed one: it matches no slot.
const UNASSIGNED: u64 = u64::MAX;

// A std atomic: see `sync::model`.
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The slots a thread claimed: the owner arrays they are in, and their indices; and the
/// thread's token, kept here because thread-locals may be destroyed in any order at exit.
struct Held {
    me: u64,
    slots: Vec<(Arc<[AtomicU64]>, usize)>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // First forget the heap this thread owns: a pool call later in its exit (another
        // thread-local's destructor) must not enter a heap whose slot is given back below.
        let _ = HEAP.try_with(|h| h.set((0, std::ptr::null())));
        for (owners, i) in &self.slots {
            // Only if still ours: the pool may be gone, and then nobody reads it anyway.
            let _ =
                owners[*i].compare_exchange(self.me, FREE, Ordering::Release, Ordering::Relaxed);
        }
    }
}

thread_local! {
    // No destructor, so reading it is one load on the fast path and works during exit.
    static TOKEN: Cell<u64> = const { Cell::new(UNASSIGNED) };
    static HELD: RefCell<Held> = const {
        RefCell::new(Held { me: UNASSIGNED, slots: Vec::new() })
    };
    // The heap this thread holds in the pool it last used, by the pool's id (ids are never
    // reused, so a dropped pool's entry matches nothing).
    static HEAP: Cell<(u64, *const ())> = const { Cell::new((0, std::ptr::null())) };
}

/// The heap the calling thread holds in pool `pool`, if that is the pool it last used.
#[inline(always)]
pub fn cached_heap(pool: u64) -> Option<*const ()> {
    let (id, heap) = HEAP.with(Cell::get);
    (id == pool).then_some(heap)
}

/// Notes that the calling thread holds `heap` in pool `pool`.
pub fn cache_heap(pool: u64, heap: *const ()) {
    HEAP.with(|h| h.set((pool, heap)));
}

/// The token of the thread that forked this process, the only thread a child starts with;
/// `FREE` until then. A std atomic: written by the `pthread_atfork` child handler.
static FORKER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(FREE);

extern "C" fn note_forker() {
    FORKER.store(current(), std::sync::atomic::Ordering::Relaxed);
}

/// From now on, a forked child knows which thread forked it (`forked_by`).
pub fn watch_forks() {
    static WATCH: std::sync::Once = std::sync::Once::new();
    // SAFETY: the handler only reads a thread-local without destructor and stores an
    // atomic, which is async-signal-safe, as a child handler must be.
    WATCH.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(note_forker));
    });
}

/// The token of the thread that forked this process (once `watch_forks` ran), else `FREE`.
pub fn forked_by() -> u64 {
    FORKER.load(std::sync::atomic::Ordering::Relaxed)
}

/// The calling thread's token, or a value that matches no slot if it has none yet.
#[inline]
pub fn current() -> u64 {
    TOKEN.with(Cell::get)
}

/// The calling thread's token, assigned on first use.
pub fn assign() -> u64 {
    TOKEN.with(|t| {
        if t.get() == UNASSIGNED {
            t.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

/// Makes `owners[i]` the calling thread's until it exits. False if the slot is held, or
/// if the thread is exiting (its slots could no longer be given back).
pub fn claim(owners: &Arc<[AtomicU64]>, i: usize) -> bool {
    let me = assign();
    HELD.try_with(|held| {
        if owners[i]
            .compare_exchange(FREE, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let mut held = held.borrow_mut();
        held.me = me;
        // Slots of pools dropped since: only this list still refers to them.
        held.slots.retain(|(o, _)| Arc::strong_count(o) > 1);
        held.slots.push((owners.clone(), i));
        true
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(n: usize) -> Arc<[AtomicU64]> {
        (0..n).map(|_| AtomicU64::new(FREE)).collect()
    }

    #[test]
    fn tokens_are_distinct_and_stable() {
        let a = assign();
        assert_eq!(assign(), a);
        assert_eq!(current(), a);
        let b = std::thread::spawn(assign).join().unwrap();
        assert_ne!(a, b);
        assert!(![FREE, UNASSIGNED].contains(&a));
    }

    #[test]
    fn a_slot_is_given_back_when_its_thread_exits() {
        let o = owners(2);
        let o2 = o.clone();
        let token = std::thread::spawn(move || {
            assert!(claim(&o2, 1));
            assert!(!claim(&o2, 1), "a held slot cannot be claimed again");
            let t = current();
            assert_eq!(o2[1].load(Ordering::Relaxed), t);
            t
        })
        .join()
        .unwrap();
        assert_ne!(token, FREE);
        assert_eq!(o[1].load(Ordering::Relaxed), FREE);
        assert_eq!(o[0].load(Ordering::Relaxed), FREE);
    }
}
