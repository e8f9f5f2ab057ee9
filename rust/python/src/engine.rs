//! The one engine behind `Vector` and `List`: a core container behind a lock, used so that
//! Python never sees it half-changed, never deadlocks on it and never meets a panic.
//!
//! The rules, for every container:
//! - nothing calls out while the container is locked: no Python code runs (values are
//!   converted before locking and turned into objects after), no allocator is called
//!   (blocks are allocated before locking, but for a pool's call-free path,
//!   `BlockAllocator::try_allocate_claimed`, which calls no function at all; the core
//!   containers never free inside a method but hand the block back, see
//!   `stlalloc_core::containers::retired`), no element is dropped (a decref may run
//!   `__del__`);
//! - whatever the container owes after an operation (old storage, unlinked nodes, removed
//!   elements) is either returned out of the locked scope or handed to the [`Guard`] with
//!   [`Guard::defer`], which releases it after unlocking: the guard's fields drop in
//!   order, the lock first;
//! - so Python code that runs meanwhile (an allocator's `deallocate`, `__eq__`, a key
//!   function, `__del__`) may use the container, and finds it consistent. Should a bug
//!   break the first rule, the re-entry is a `RuntimeError` (see `GilMutex`);
//! - what needs Python comparisons works on a snapshot taken under the lock and applies
//!   its result under the lock again only if the container's [`Guard::version`] is
//!   unchanged (`ValueError` "modified during ...", as `list.sort` raises it).

use crate::gil_lock::{GilMutex, GilMutexGuard};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::ops::{Deref, DerefMut};

/// A container's state and how many times it was locked for writing.
struct Slot<S> {
    state: S,
    version: u64,
}

/// A container state `S` behind the engine's lock.
pub struct Locked<S> {
    slot: GilMutex<Slot<S>>,
}

/// Access to a locked state. Writing through it (`DerefMut`) counts as a change of
/// [`Guard::version`]; what is [`deferred`](Guard::defer) to it is dropped once unlocked.
pub struct Guard<'a, S> {
    // Field order matters: the lock is released before the deferred values are dropped.
    slot: GilMutexGuard<'a, Slot<S>>,
    /// What was deferred, as one value (pairs of earlier and later ones), so that a guard
    /// with nothing deferred (the fast paths) is small and drops nothing.
    deferred: Option<Box<dyn Send>>,
}

impl<S> Locked<S> {
    pub fn new(state: S) -> Self {
        Self {
            slot: GilMutex::new(Slot { state, version: 0 }),
        }
    }

    #[inline]
    pub fn lock(&self, py: Python<'_>) -> PyResult<Guard<'_, S>> {
        Ok(Guard {
            slot: self.slot.lock(py)?,
            deferred: None,
        })
    }

    /// A lock for the fast paths, which defer nothing (a [`Guard`]'s deferred values kept
    /// it in memory on a push: 3 of its 144 instructions); `None` on a re-entry, whose
    /// error (`gil_lock::reentered`) the caller makes once it has let go of its values.
    #[inline]
    pub fn lock_plain(&self, py: Python<'_>) -> Option<PlainGuard<'_, S>> {
        self.slot.lock_or_reentered(py).map(PlainGuard)
    }

    /// A lock for the call-free fast paths (`list::typed`'s `try_push`, `try_pop`), taken
    /// without calling anything, or `None`: on a re-entry, and always on a free-threaded
    /// interpreter, whose mutex is taken and given back through calls.
    #[inline(always)]
    pub fn lock_call_free(&self) -> Option<PlainGuard<'_, S>> {
        #[cfg(not(Py_GIL_DISABLED))]
        return self.slot.try_lock().map(PlainGuard);
        #[cfg(Py_GIL_DISABLED)]
        return None;
    }

    /// For the garbage collector, which must not wait: `None` while locked elsewhere.
    pub fn try_lock(&self) -> Option<Guard<'_, S>> {
        Some(Guard {
            slot: self.slot.try_lock()?,
            deferred: None,
        })
    }
}

/// A [`Guard`] without deferred values (see [`Locked::lock_plain`]).
pub struct PlainGuard<'a, S>(GilMutexGuard<'a, Slot<S>>);

impl<S> Guard<'_, S> {
    /// Drops `owed` after the lock is released.
    pub fn defer(&mut self, owed: impl Send + 'static) {
        let owed: Box<dyn Send> = Box::new(owed);
        self.deferred = Some(match self.deferred.take() {
            None => owed,
            Some(earlier) => Box::new((earlier, owed)),
        });
    }

    /// Changes whenever the state was borrowed for writing.
    pub fn version(&self) -> u64 {
        self.slot.version
    }

    /// Refuses to apply a result computed from a snapshot the container has moved away
    /// from (taken at `version`).
    pub fn check_unchanged(&self, version: u64, what: &str, during: &str) -> PyResult<()> {
        if self.version() == version {
            Ok(())
        } else {
            Err(PyValueError::new_err(format!(
                "{what} modified during {during}"
            )))
        }
    }
}

impl<S> Deref for Guard<'_, S> {
    type Target = S;
    #[inline]
    fn deref(&self) -> &S {
        &self.slot.state
    }
}

impl<S> DerefMut for Guard<'_, S> {
    #[inline]
    fn deref_mut(&mut self) -> &mut S {
        self.slot.version = self.slot.version.wrapping_add(1);
        &mut self.slot.state
    }
}

impl<S> Deref for PlainGuard<'_, S> {
    type Target = S;
    #[inline]
    fn deref(&self) -> &S {
        &self.0.state
    }
}

impl<S> DerefMut for PlainGuard<'_, S> {
    #[inline]
    fn deref_mut(&mut self) -> &mut S {
        self.0.version = self.0.version.wrapping_add(1);
        &mut self.0.state
    }
}
