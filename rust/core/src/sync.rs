//! Locking helpers shared by the thread-safe allocators, and the primitives of the shared
//! pool's concurrency (`model`), which `--features shuttle` swaps for shuttle's so that its
//! scheduler can explore the threads' interleavings (scripts/modelcheck).

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: every allocator operation validates before it mutates,
/// so a panic on another thread cannot have left the state half-changed.
#[inline]
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `SharedPool`'s heaps, locks and thread tokens synchronise with: std's, or under
/// the `shuttle` feature the model checker's (each of their operations a scheduling point).
/// Process-wide counters (`static`s) stay std atomics: a model's primitives live in one
/// execution, and a counter's single `fetch_add` has no interleaving worth exploring.
pub mod model {
    #[cfg(feature = "shuttle")]
    pub use shuttle::{hint::spin_loop, sync::atomic, thread::yield_now, thread_local};
    #[cfg(not(feature = "shuttle"))]
    pub use std::{hint::spin_loop, sync::atomic, thread::yield_now, thread_local};

    /// Under the model checker, a witness of mutual exclusion: the state a lock guards is
    /// entered with a scheduling point inside, so another thread let in by a broken lock
    /// is there at the same time, and `enter` panics. Shuttle cannot see races on the
    /// pool's own memory (plain loads and stores), only this. Outside it, nothing.
    #[derive(Default)]
    pub struct Exclusive {
        #[cfg(feature = "shuttle")]
        inside: std::sync::atomic::AtomicBool,
    }

    impl Exclusive {
        #[inline(always)]
        pub fn enter(&self) {
            #[cfg(feature = "shuttle")]
            {
                use std::sync::atomic::Ordering::SeqCst;
                assert!(
                    !self.inside.swap(true, SeqCst),
                    "two threads inside one lock"
                );
                yield_now();
            }
        }

        #[inline(always)]
        pub fn leave(&self) {
            #[cfg(feature = "shuttle")]
            self.inside
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
