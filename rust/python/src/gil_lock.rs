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

    // SAFETY: every pool using this lock lives inside a Python object of this extension and
    // is only reached from methods called with the GIL held (see the module comment); the
    // GIL admits one thread at a time, and `held` turns an accidental re-entry on that
    // thread into a panic (a Python exception) instead of two `&mut` to one pool.
    unsafe impl RawLock for GilLock {
        #[inline]
        fn lock(&self) {
            assert!(
                !self.held.load(Ordering::Relaxed),
                "a pool was re-entered while locked"
            );
            self.held.store(true, Ordering::Relaxed);
        }

        #[inline]
        unsafe fn unlock(&self) {
            self.held.store(false, Ordering::Relaxed);
        }
    }
}
