//! The lock of a `SharedPool`, as a type parameter: a spin lock by default (one atomic
//! swap to take it, a plain store to give it back), or — in the Python binding of a
//! GIL-enabled interpreter — the interpreter lock the caller already holds, so the pool
//! pays no atomic operation at all.

use crate::sync::model::atomic::{AtomicBool, Ordering};
use crate::sync::model::{spin_loop, yield_now};

/// Mutual exclusion for a `SharedPool`.
///
/// # Safety
/// While one caller is between `lock()` (or a `try_lock()` that returned true) and
/// `unlock()`, no other `lock()` on the same value may return and no `try_lock()` return
/// true; `unlock` is called only by the holder.
pub unsafe trait RawLock: Send + Sync + Default {
    /// Whether threads using a pool with this lock may own heaps they enter without it,
    /// which every call then looks up (a thread-local read). False for a lock that
    /// serialises every caller already (the GIL's), whose pools skip that look-up.
    const OWNER_HEAPS: bool = true;

    fn lock(&self);

    /// Takes the lock if it is free, without waiting and without calling anything (for the
    /// call-free fast paths: `SharedPool::try_allocate_claimed`); whether it did. A lock that
    /// cannot be tried that way never takes it, and its pools' call-free paths serve nothing.
    #[inline(always)]
    fn try_lock(&self) -> bool {
        false
    }

    /// # Safety
    /// The caller holds the lock.
    unsafe fn unlock(&self);
}

/// Spins briefly, then yields: pool critical sections are a few dozen instructions.
#[derive(Default)]
pub struct SpinLock {
    locked: AtomicBool,
}

// SAFETY: `swap(true, Acquire)` returns false to exactly one contender until the holder's
// `store(false, Release)`, which also publishes the holder's writes to the next one.
unsafe impl RawLock for SpinLock {
    #[inline]
    fn lock(&self) {
        if !self.locked.swap(true, Ordering::Acquire) {
            return;
        }
        self.lock_contended();
    }

    #[inline(always)]
    fn try_lock(&self) -> bool {
        !self.locked.swap(true, Ordering::Acquire)
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

impl SpinLock {
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    spin_loop();
                    spins += 1;
                } else {
                    yield_now();
                }
            }
            if !self.locked.swap(true, Ordering::Acquire) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    struct Counter {
        lock: SpinLock,
        value: UnsafeCell<u64>,
    }
    // SAFETY: `value` is only touched with `lock` held.
    unsafe impl Sync for Counter {}

    #[test]
    fn spin_lock_excludes() {
        let c = Arc::new(Counter {
            lock: SpinLock::default(),
            value: UnsafeCell::new(0),
        });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        c.lock.lock();
                        // SAFETY: the lock is held.
                        unsafe {
                            *c.value.get() += 1;
                            c.lock.unlock();
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        // SAFETY: all threads are joined.
        assert_eq!(unsafe { *c.value.get() }, 400_000);
    }
}
