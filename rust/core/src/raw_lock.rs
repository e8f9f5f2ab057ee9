//! The lock of a `SharedPool`, as a type parameter: a spin lock by default (one atomic
//! compare-exchange to take it, a plain store to give it back), or — in the Python binding of a
//! GIL-enabled interpreter — the interpreter lock the caller already holds, so the pool
//! pays no atomic operation at all.
//!
//! A forked child starts with the forking thread alone: a spin lock that another thread
//! held at that moment would never be let go there, and the child would wait for it
//! forever. So a spin lock holds the *generation* of the process that took it (how many
//! forks deep it is, counted by a `pthread_atfork` child handler), and a waiter that finds
//! it held by an earlier generation takes it over, as its holder left it, as the pools do
//! with an owner's `busy` flag (`shared::heaps`). Invariant: `state == 0` (free) or the
//! generation its holder took it in; a holder of this process's generation runs here, any
//! other was copied by a fork and does not. The crate keeps the promise this needs: no
//! thread holds a spin lock while it runs code that could fork (upstream calls that may
//! run an out-of-memory handler are made unlocked).

use crate::sync::model::atomic::{AtomicU32, Ordering};
use crate::sync::model::{spin_loop, yield_now};
use std::sync::atomic::AtomicU32 as StdAtomicU32;

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
    /// 0, or the generation of the process the holder took it in (see the module's top).
    state: AtomicU32,
}

// SAFETY: a compare-exchange from 0 to this process's generation succeeds for exactly one
// contender until the holder's `store(0, Release)`, which also publishes the holder's
// writes to the next one; a holder of an earlier generation is taken over by one
// compare-exchange too, and does not run in this process (see the module's top).
unsafe impl RawLock for SpinLock {
    #[inline]
    fn lock(&self) {
        let g = generation();
        if (self.state)
            .compare_exchange(0, g, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended(g);
        }
    }

    /// Free only: a lock a fork left held is for `lock` to take over; and before this
    /// process's first `lock` (generation 0) it says no, so that it calls nothing.
    #[inline(always)]
    fn try_lock(&self) -> bool {
        let g = GENERATION.load(std::sync::atomic::Ordering::Relaxed);
        g != 0
            && (self.state)
                .compare_exchange(0, g, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.state.store(0, Ordering::Release);
    }
}

impl SpinLock {
    pub const fn new() -> Self {
        Self {
            state: AtomicU32::new(0),
        }
    }

    #[cold]
    fn lock_contended(&self, g: u32) {
        let mut spins = 0u32;
        loop {
            match self.state.load(Ordering::Relaxed) {
                held if held == g => {
                    if spins < 64 {
                        spin_loop();
                        spins += 1;
                    } else {
                        yield_now();
                    }
                }
                // Free, or held by a thread a fork left behind: ours, as it was left.
                s => {
                    if (self.state)
                        .compare_exchange(s, g, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// This process's generation: 1 in a process that did not start as a fork of one that
/// used a spin lock, one more in each forked child; 0 until the first lock registers the
/// handler that counts. A std atomic: see `sync::model`.
static GENERATION: StdAtomicU32 = StdAtomicU32::new(0);

/// This process's generation (see `GENERATION`); a process's first call registers the
/// handler that counts forks.
#[inline(always)]
pub(crate) fn generation() -> u32 {
    match GENERATION.load(std::sync::atomic::Ordering::Relaxed) {
        0 => count_forks(),
        g => g,
    }
}

/// Registers the child handler (once per process: a child inherits it), then says 1.
#[cold]
#[inline(never)]
fn count_forks() -> u32 {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handler only increments an atomic, which is async-signal-safe, as a
        // child handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(forked)) };
        GENERATION.store(1, std::sync::atomic::Ordering::Relaxed);
    });
    GENERATION.load(std::sync::atomic::Ordering::Relaxed)
}

/// In a child, before any other code runs there: no lock is taken in this generation yet.
extern "C" fn forked() {
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
pub(crate) mod tests {
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

    #[test]
    fn try_lock_takes_a_free_lock_only() {
        let lock = SpinLock::default();
        lock.lock();
        assert!(!lock.try_lock(), "held by this very process");
        // SAFETY: held, by `lock()` above.
        unsafe { lock.unlock() };
        assert!(lock.try_lock(), "free");
        assert!(!lock.try_lock(), "held by the try");
        // SAFETY: held, by the successful `try_lock`.
        unsafe { lock.unlock() };
        // A holder of another generation (a fork's) is `lock`'s to take over, not `try_lock`'s.
        lock.state.store(generation() + 1, Ordering::Relaxed);
        assert!(!lock.try_lock());
        lock.lock();
        // SAFETY: taken over by `lock()`.
        unsafe { lock.unlock() };
        assert!(lock.try_lock());
    }

    /// Runs `f` while another thread, which `hold` runs on, keeps what `hold` returns (a
    /// lock's guard, say); that thread lets go once `f` returns or unwinds.
    pub(crate) fn while_another_thread_holds<G, T>(
        hold: impl FnOnce() -> G + Send,
        f: impl FnOnce() -> T,
    ) -> T {
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || {
                let _held = hold();
                held_tx.send(()).unwrap();
                // Until `f` is done: its end drops the sender, unwinding included.
                let _ = done_rx.recv();
            });
            let _done = done_tx;
            held_rx.recv().unwrap();
            f()
        })
    }

    /// Forks a child that runs `child` and exits 0 if it returns true; panics if the
    /// child fails, or kills it and panics with `hung` if it has not exited after 20 s.
    pub(crate) fn in_forked_child(hung: &str, child: impl FnOnce() -> bool) {
        use std::panic::{catch_unwind, AssertUnwindSafe};
        // SAFETY: the child runs `child`, which uses only this crate and malloc (fork-safe
        // in glibc), then exits without unwinding into the test harness.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = catch_unwind(AssertUnwindSafe(child));
            // SAFETY: ends the child at once, as a forked child of a threaded process should.
            unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // SAFETY: waits for our own child, without blocking.
        while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
            if std::time::Instant::now() > deadline {
                // SAFETY: our own child, hung.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("{hung}");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child: {status:#x}"
        );
    }

    #[test]
    fn a_child_forked_while_another_thread_held_the_lock_takes_it() {
        let lock = SpinLock::default();
        while_another_thread_holds(
            || {
                lock.lock();
                // SAFETY: taken just above, by this thread.
                Release(&lock)
            },
            || {
                in_forked_child(
                    "the child waited for a holder that does not run in it",
                    || {
                        lock.lock();
                        // SAFETY: taken just above.
                        unsafe { lock.unlock() };
                        true
                    },
                );
            },
        );
        // In its own process the holder is waited for: it let go, so this takes it.
        lock.lock();
        // SAFETY: taken just above.
        unsafe { lock.unlock() };
    }

    /// Unlocks a spin lock its creator took, when dropped.
    struct Release<'a>(&'a SpinLock);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            // SAFETY: made right after this thread took the lock.
            unsafe { self.0.unlock() }
        }
    }
}
