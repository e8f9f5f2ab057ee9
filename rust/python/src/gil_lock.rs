//! The lock of the pools Python uses.
//!
//! On a GIL-enabled interpreter every call into a pool comes from Python code holding the
//! GIL, and no pool operation runs Python code or releases the GIL while its lock is held
//! (upstream allocations, which may run a Python out-of-memory handler, happen outside it).
//! So the GIL already excludes every other caller, and the pool's own lock only needs to
//! catch a broken promise, with plain loads and stores instead of an atomic swap. On a
//! free-threaded interpreter there is no GIL, and the pool takes a real spin lock.

#[cfg(not(Py_GIL_DISABLED))]
pub use gil::GilLock as PyPoolLock;
#[cfg(Py_GIL_DISABLED)]
pub use stlalloc_core::SpinLock as PyPoolLock;

#[cfg(not(Py_GIL_DISABLED))]
mod gil {
    use std::sync::atomic::{AtomicBool, Ordering};
    use stlalloc_core::RawLock;

    #[derive(Default)]
    pub struct GilLock {
        held: AtomicBool,
    }

    /// Out of line, so the lock itself stays two instructions on the fast path.
    #[cold]
    #[inline(never)]
    fn reentered() -> ! {
        panic!("a pool was re-entered while locked")
    }

    // SAFETY: every pool using this lock lives inside a Python object of this extension and
    // is only reached from methods called with the GIL held (see the module comment); the
    // GIL admits one thread at a time, and `held` turns an accidental re-entry on that
    // thread into a panic (a Python exception) instead of two `&mut` to one pool.
    unsafe impl RawLock for GilLock {
        // One heap: the GIL admits one thread at a time (see `pool::heaps`).
        const OWNER_HEAPS: bool = false;

        #[inline]
        fn lock(&self) {
            if self.held.load(Ordering::Relaxed) {
                reentered();
            }
            self.held.store(true, Ordering::Relaxed);
        }

        /// A pool held already (the caller re-entered) is not taken: the full path then
        /// tells the re-entry.
        #[inline(always)]
        fn try_lock(&self) -> bool {
            if self.held.load(Ordering::Relaxed) {
                return false;
            }
            self.held.store(true, Ordering::Relaxed);
            true
        }

        #[inline]
        unsafe fn unlock(&self) {
            self.held.store(false, Ordering::Relaxed);
        }
    }
}

/// A container's lock, by the same argument: on a GIL-enabled interpreter the GIL (which
/// `lock` asks for as a `Python` token) already excludes other callers, so the lock only
/// tells a re-entry, with plain loads and stores; on a free-threaded one it is a mutex that
/// waits without blocking the interpreter, and that knows its owner thread so that a
/// re-entry is told rather than waited for forever. Containers never run Python code while
/// locked (see `engine`), so a re-entry is a bug; it is a `RuntimeError`, never a panic.
#[cfg(not(Py_GIL_DISABLED))]
pub use gil_mutex::{GilMutex, GilMutexGuard};

#[cfg(Py_GIL_DISABLED)]
pub use free_threaded::{GilMutex, GilMutexGuard};

#[cold]
#[inline(never)]
pub fn reentered() -> pyo3::PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(
        "a container was used by code it called while it was busy",
    )
}

#[cfg(not(Py_GIL_DISABLED))]
mod gil_mutex {
    use pyo3::{PyResult, Python};
    use std::cell::UnsafeCell;
    use std::ops::{Deref, DerefMut};
    use std::sync::atomic::{AtomicBool, Ordering};

    pub struct GilMutex<T> {
        held: AtomicBool,
        value: UnsafeCell<T>,
    }

    // SAFETY: `value` is reached only through a guard, made by `lock` (which takes the GIL
    // token, so one thread at a time) or `try_lock` (called by the garbage collector, which
    // holds the GIL), and `held` refuses a second guard.
    unsafe impl<T: Send> Sync for GilMutex<T> {}

    pub struct GilMutexGuard<'a, T> {
        mutex: &'a GilMutex<T>,
    }

    impl<T> GilMutex<T> {
        pub fn new(value: T) -> Self {
            Self {
                held: AtomicBool::new(false),
                value: UnsafeCell::new(value),
            }
        }

        /// `RuntimeError` while another guard exists (a re-entry: see the type's notes).
        #[inline]
        pub fn lock(&self, py: Python<'_>) -> PyResult<GilMutexGuard<'_, T>> {
            self.lock_or_reentered(py).ok_or_else(super::reentered)
        }

        /// `None` while another guard exists (a re-entry), with no error made yet: a
        /// fast path calls nothing while it holds values it would have to drop.
        #[inline]
        pub fn lock_or_reentered(&self, _py: Python<'_>) -> Option<GilMutexGuard<'_, T>> {
            self.try_lock()
        }

        /// `None` while another guard exists.
        #[inline]
        pub fn try_lock(&self) -> Option<GilMutexGuard<'_, T>> {
            if self.held.load(Ordering::Relaxed) {
                return None;
            }
            self.held.store(true, Ordering::Relaxed);
            Some(GilMutexGuard { mutex: self })
        }
    }

    impl<T> Deref for GilMutexGuard<'_, T> {
        type Target = T;
        #[inline]
        fn deref(&self) -> &T {
            // SAFETY: this guard is the only one (`held`), so no `&mut` to the value exists.
            unsafe { &*self.mutex.value.get() }
        }
    }

    impl<T> DerefMut for GilMutexGuard<'_, T> {
        #[inline]
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: this guard is the only one (`held`), so no other reference exists.
            unsafe { &mut *self.mutex.value.get() }
        }
    }

    impl<T> Drop for GilMutexGuard<'_, T> {
        #[inline]
        fn drop(&mut self) {
            self.mutex.held.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(Py_GIL_DISABLED)]
mod free_threaded {
    use pyo3::sync::MutexExt;
    use pyo3::{PyResult, Python};
    use std::ops::{Deref, DerefMut};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    thread_local! {
        static ME: u8 = const { 0 };
    }

    /// This thread's identity: the address of its thread-local, never 0.
    fn me() -> usize {
        ME.with(|m| m as *const u8 as usize)
    }

    pub struct GilMutex<T> {
        mutex: Mutex<T>,
        /// The thread holding `mutex`, 0 when none.
        owner: AtomicUsize,
    }

    pub struct GilMutexGuard<'a, T> {
        guard: MutexGuard<'a, T>,
        owner: &'a AtomicUsize,
    }

    impl<T> GilMutex<T> {
        pub fn new(value: T) -> Self {
            Self {
                mutex: Mutex::new(value),
                owner: AtomicUsize::new(0),
            }
        }

        /// Waits without blocking the interpreter; `RuntimeError` if this thread holds it
        /// already. Poisoning is ignored (containers are consistent after any panic).
        pub fn lock(&self, py: Python<'_>) -> PyResult<GilMutexGuard<'_, T>> {
            self.lock_or_reentered(py).ok_or_else(super::reentered)
        }

        /// `None` if this thread holds it already, with no error made yet.
        pub fn lock_or_reentered(&self, py: Python<'_>) -> Option<GilMutexGuard<'_, T>> {
            // Only this thread can have stored its own identity, so the check is exact.
            if self.owner.load(Ordering::Relaxed) == me() {
                return None;
            }
            let guard = self
                .mutex
                .lock_py_attached(py)
                .unwrap_or_else(PoisonError::into_inner);
            Some(self.owned(guard))
        }

        pub fn try_lock(&self) -> Option<GilMutexGuard<'_, T>> {
            self.mutex.try_lock().ok().map(|g| self.owned(g))
        }

        fn owned<'a>(&'a self, guard: MutexGuard<'a, T>) -> GilMutexGuard<'a, T> {
            self.owner.store(me(), Ordering::Relaxed);
            GilMutexGuard {
                guard,
                owner: &self.owner,
            }
        }
    }

    impl<T> Deref for GilMutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.guard
        }
    }

    impl<T> DerefMut for GilMutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.guard
        }
    }

    impl<T> Drop for GilMutexGuard<'_, T> {
        fn drop(&mut self) {
            self.owner.store(0, Ordering::Relaxed);
        }
    }
}
