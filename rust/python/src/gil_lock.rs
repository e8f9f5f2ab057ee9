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
        #[inline]
        fn lock(&self) {
            if self.held.load(Ordering::Relaxed) {
                reentered();
            }
            self.held.store(true, Ordering::Relaxed);
        }

        #[inline]
        unsafe fn unlock(&self) {
            self.held.store(false, Ordering::Relaxed);
        }
    }
}

/// A container's lock, by the same argument: on a GIL-enabled interpreter the GIL (which
/// `lock` asks for as a `Python` token) already excludes other callers, so the lock is a
/// re-entrancy check with plain loads and stores; on a free-threaded one it is a mutex that
/// waits without blocking the interpreter. Containers never run Python code while locked.
#[cfg(not(Py_GIL_DISABLED))]
pub use gil_mutex::{GilMutex, GilMutexGuard};

#[cfg(Py_GIL_DISABLED)]
pub use free_threaded::{GilMutex, GilMutexGuard};

#[cfg(not(Py_GIL_DISABLED))]
mod gil_mutex {
    use pyo3::Python;
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

        #[inline]
        pub fn lock(&self, _py: Python<'_>) -> GilMutexGuard<'_, T> {
            self.try_lock()
                .expect("a container was re-entered while locked")
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
    use pyo3::Python;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    pub type GilMutexGuard<'a, T> = MutexGuard<'a, T>;

    pub struct GilMutex<T>(Mutex<T>);

    impl<T> GilMutex<T> {
        pub fn new(value: T) -> Self {
            Self(Mutex::new(value))
        }

        /// Waits without blocking the interpreter; poisoning is ignored (containers are
        /// consistent after any panic).
        pub fn lock(&self, py: Python<'_>) -> GilMutexGuard<'_, T> {
            self.0
                .lock_py_attached(py)
                .unwrap_or_else(PoisonError::into_inner)
        }

        pub fn try_lock(&self) -> Option<GilMutexGuard<'_, T>> {
            self.0.try_lock().ok()
        }
    }
}
