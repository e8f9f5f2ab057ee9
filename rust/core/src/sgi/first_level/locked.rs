//! The registry's lock. By default a spin lock (one atomic swap to take it, a plain store
//! to give it back: the critical sections are a hash-table step and a `malloc`). An embedding
//! program that holds one outer lock around every first-level call — the GIL of a
//! GIL-enabled CPython — may say so once (`assume_outer_lock`); from then on the lock is a
//! re-entrancy check with plain loads and stores, as the pools' `GilLock` in the binding,
//! and a first-level call pays no atomic operation.

use crate::raw_lock::{RawLock, SpinLock};
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

pub(super) struct Locked<T> {
    spin: SpinLock,
    /// Set once by `assume_outer_lock`; never cleared.
    outer: AtomicBool,
    /// In outer-lock mode: a caller is inside.
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is reached only through a `Guard`, and `lock` hands out one guard at a
// time: the spin lock excludes other threads, or (outer mode) the outer lock does, by the
// promise of `assume_outer_lock`.
unsafe impl<T: Send> Sync for Locked<T> {}

pub(super) struct Guard<'a, T> {
    cell: &'a Locked<T>,
    outer: bool,
}

impl<T> Locked<T> {
    pub const fn new(value: T) -> Self {
        Self {
            spin: SpinLock::new(),
            outer: AtomicBool::new(false),
            held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// # Safety
    /// From this call on, every `lock` of this value, from any thread, is made holding one
    /// same outer lock, and the guard is dropped before that lock is let go; no guard is
    /// alive now.
    pub unsafe fn assume_outer_lock(&self) {
        self.outer.store(true, Ordering::Relaxed);
    }

    #[inline]
    pub fn lock(&self) -> Guard<'_, T> {
        let outer = self.outer.load(Ordering::Relaxed);
        if outer {
            if self.held.load(Ordering::Relaxed) {
                reentered();
            }
            self.held.store(true, Ordering::Relaxed);
        } else {
            self.spin.lock();
        }
        Guard { cell: self, outer }
    }
}

/// Out of line, so that the lock stays a few instructions on the fast path.
#[cold]
#[inline(never)]
fn reentered() -> ! {
    panic!("the first level's registry was re-entered while locked")
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one alive (see `Sync` above).
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the only one alive, and `&mut self` makes this the only
        // reference through it.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.outer {
            self.cell.held.store(false, Ordering::Relaxed);
        } else {
            // SAFETY: this guard took the spin lock in `lock` and gives it back once.
            unsafe { self.cell.spin.unlock() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_spin_mode_excludes_threads() {
        let cell = Arc::new(Locked::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        *cell.lock() += 1;
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*cell.lock(), 200_000);
    }

    #[test]
    fn the_outer_mode_relies_on_the_outer_lock_and_catches_reentry() {
        let cell = Arc::new(Locked::new(0u64));
        // SAFETY: every lock below is taken holding `outer`, and no guard is alive.
        unsafe { cell.assume_outer_lock() };
        let outer = Arc::new(Mutex::new(()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (cell, outer) = (cell.clone(), outer.clone());
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        let _held = outer.lock().unwrap();
                        *cell.lock() += 1;
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let _held = outer.lock().unwrap();
        let guard = cell.lock();
        assert_eq!(*guard, 200_000);
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(cell.lock())));
        assert!(again.is_err(), "a second lock while one is held panics");
        drop(guard);
        assert_eq!(*cell.lock(), 200_000);
    }
}
