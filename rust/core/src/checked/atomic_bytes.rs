//! A zeroed array of `AtomicU8` that another thread may reach without a reference to its
//! owner: a class map's bytes, which a heap's owner writes with plain (Relaxed) loads and
//! stores while other threads claim blocks in it with a compare-exchange (see
//! `shared::remote_frees`). Held through a raw pointer, not a `Box` or `Vec`, so that the
//! owner's `&mut` to the map asserts nothing about the bytes that another thread's
//! `Shared` view would contradict.
//!
//! Invariant: `ptr` points at `len` initialised `AtomicU8`s allocated with
//! `Layout::array::<u8>(len)` (zeroed, so its untouched pages stay unmapped), freed when
//! this drops; `len == 0` holds a dangling pointer and allocates nothing.

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU8;

pub struct AtomicBytes {
    ptr: NonNull<AtomicU8>,
    len: usize,
}

// SAFETY: the bytes are atomics (`Sync`), and the allocation is owned.
unsafe impl Send for AtomicBytes {}
// SAFETY: as above: every access is atomic.
unsafe impl Sync for AtomicBytes {}

impl AtomicBytes {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        if len == 0 {
            return Self {
                ptr: NonNull::dangling(),
                len,
            };
        }
        let layout = Layout::array::<u8>(len).expect("a map no larger than its region");
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<AtomicU8>()) else {
            handle_alloc_error(layout)
        };
        Self { ptr, len }
    }

    /// A view of the bytes that does not borrow `self`: valid while `self` lives.
    pub fn shared(&self) -> Shared {
        Shared {
            ptr: self.ptr,
            len: self.len,
        }
    }
}

impl Deref for AtomicBytes {
    type Target = [AtomicU8];
    #[inline(always)]
    fn deref(&self) -> &[AtomicU8] {
        // SAFETY: `len` initialised atomics at `ptr` (zero is a valid `AtomicU8`, which has
        // `u8`'s size and alignment), alive while `self` is.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AtomicBytes {
    fn drop(&mut self) {
        if self.len != 0 {
            let layout = Layout::array::<u8>(self.len).expect("allocated with it");
            // SAFETY: allocated in `zeroed` with this layout, freed once.
            unsafe { dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

/// The bytes of an `AtomicBytes`, for a thread that holds no reference to it.
#[derive(Clone, Copy)]
pub struct Shared {
    ptr: NonNull<AtomicU8>,
    len: usize,
}

// SAFETY: it only hands out `&AtomicU8`, which any thread may use.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    /// Byte `g`, if in range.
    ///
    /// # Safety
    /// The `AtomicBytes` this came from is alive for as long as the result is used.
    #[inline]
    pub unsafe fn get<'a>(self, g: usize) -> Option<&'a AtomicU8> {
        // SAFETY: `g < len` atomics at `ptr`, alive as the caller promises.
        (g < self.len).then(|| unsafe { &*self.ptr.as_ptr().add(g) })
    }
}
