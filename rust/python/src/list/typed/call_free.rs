//! An object List's push and pop without a call: the common case served with no function
//! called at all, so that the fast entry points serving it need no frame (`fastcall`'s
//! `call_free`). What they cannot serve that way they leave unchanged, for `push` and
//! `pop` to serve (or refuse) as always.
//!
//! The engine's rules hold (see `engine`): the list is locked without a call
//! (`lock_call_free`, never on a free-threaded interpreter), the node comes from its
//! pool's call-free path (`BlockAllocator::try_allocate_claimed`), which calls nothing, so
//! nothing calls out while the list is locked; a popped node is freed after unlocking.
//! Only object lists have these paths: an int or a float is converted by a call.

use super::Typed;
use pyo3::ffi;
use pyo3::prelude::*;
use stlalloc_core::containers::list::Unlinked;
use stlalloc_core::BlockAllocator;

impl Typed<Py<PyAny>> {
    /// Pushes `x` at the back, or at the front, if that takes no call: the list is not in
    /// use (a re-entry), below its `maxlen` (no eviction), and its pool's call-free path has
    /// a node. False, changing nothing, otherwise.
    ///
    /// # Safety
    /// `x` is a live object the caller holds a reference to for the call.
    #[inline(always)]
    pub unsafe fn try_push(&self, py: Python<'_>, x: *mut ffi::PyObject, front: bool) -> bool {
        let Some(mut guard) = self.state.lock_call_free() else {
            return false;
        };
        if guard.len() >= self.maxlen() {
            return false;
        }
        // The list's reference to `x` is taken (its count raised) only once it is linked:
        // a refused value is forgotten, with no decref (whose deallocation is a call).
        // SAFETY: `x` is live (the caller's promise), hence not null.
        let value = unsafe { Bound::from_owned_ptr_or_opt(py, x).unwrap_unchecked() }.unbind();
        match guard.try_push(value, front) {
            Ok(()) => {
                // SAFETY: `x` is live; the new reference is the one the list now holds.
                unsafe { ffi::Py_INCREF(x) };
                true
            }
            Err(value) => {
                std::mem::forget(value);
                false
            }
        }
    }

    /// Pops the value at the front, or at the back, as a new reference, if the list is not
    /// in use and not empty; `None`, changing nothing, otherwise. The node is freed after
    /// unlocking, through its pool's call-free path when that takes it, else (out of line,
    /// the one call) through `deallocate_claimed`.
    #[inline(always)]
    pub fn try_pop(&self, front: bool) -> Option<*mut ffi::PyObject> {
        let node = {
            let mut guard = self.state.lock_call_free()?;
            // Asked first, so that the pop below cannot fail (an error dropped is a call).
            if !self.alloc.same_as(guard.allocator()) {
                return None;
            }
            let list = &mut *guard;
            let popped = if front {
                list.pop_front_in(&self.alloc)
            } else {
                list.pop_back_in(&self.alloc)
            };
            // An empty list: unchanged.
            popped.ok()??
        };
        Some(match node.try_into_value() {
            Ok(value) => value.into_ptr(),
            Err(node) => free_then_value(node),
        })
    }
}

/// A popped node the call-free path did not take back, freed through the full path;
/// its value as a new reference.
#[cold]
#[inline(never)]
fn free_then_value(node: Unlinked<Py<PyAny>, &super::Alloc>) -> *mut ffi::PyObject {
    crate::fastcall::guarded(std::ptr::null_mut(), || node.into_value().into_ptr())
}
