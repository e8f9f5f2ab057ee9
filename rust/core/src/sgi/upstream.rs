//! Where a pool sends what it does not serve itself: requests above `max_bytes`, and chunk
//! requests once its arena is exhausted (SGI's `malloc_alloc`).

use crate::error::AllocError;
use crate::sgi::first_level::{self, MallocAlloc, MALLOC_ALIGN};
use std::ptr::NonNull;
use std::sync::Arc;

/// An allocator a pool can draw from.
///
/// # Safety
/// `allocate(n, align)` must return a block of at least `n` bytes aligned to `align`,
/// disjoint from every other live block, valid until passed to `deallocate` or
/// `reallocate`.
pub unsafe trait Upstream {
    fn allocate(&self, n: usize, align: usize) -> Result<NonNull<u8>, AllocError>;

    /// # Safety
    /// `p` must come from `allocate(n, _)` (or `reallocate(.., n, _)`) of this upstream and
    /// not have been deallocated.
    unsafe fn deallocate(&self, p: NonNull<u8>, n: usize);

    /// Resizes a block; on error `p` is still live and unchanged.
    ///
    /// # Safety
    /// As for `deallocate`, with `old` the block's size.
    unsafe fn reallocate(
        &self,
        p: NonNull<u8>,
        old: usize,
        new: usize,
        align: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: the caller's guarantee for `p`.
        unsafe { move_block(self, p, old, new, align) }
    }
}

/// Reallocation by allocate, copy, free: what `realloc` cannot do for alignments above
/// malloc's.
///
/// # Safety
/// As for `Upstream::reallocate`.
unsafe fn move_block<U: Upstream + ?Sized>(
    up: &U,
    p: NonNull<u8>,
    old: usize,
    new: usize,
    align: usize,
) -> Result<NonNull<u8>, AllocError> {
    let q = up.allocate(new, align)?;
    // SAFETY: `p` has `old` readable bytes, `q` has `new` writable bytes, and two live
    // blocks are disjoint.
    unsafe {
        std::ptr::copy_nonoverlapping(p.as_ptr(), q.as_ptr(), old.min(new));
        up.deallocate(p, old);
    }
    Ok(q)
}

/// Plain libc `malloc`, untracked: the upstream of the fast single-threaded pool.
#[derive(Debug, Default, Clone, Copy)]
pub struct LibcMalloc;

// SAFETY: malloc/posix_memalign return disjoint blocks of the asked size and alignment.
unsafe impl Upstream for LibcMalloc {
    fn allocate(&self, n: usize, align: usize) -> Result<NonNull<u8>, AllocError> {
        first_level::check_size(n)?;
        first_level::raw_malloc(n, align).ok_or(AllocError::OutOfMemory { size: n })
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, _n: usize) {
        // SAFETY: the caller guarantees `p` came from malloc/posix_memalign and is live.
        unsafe { libc::free(p.as_ptr().cast()) }
    }

    unsafe fn reallocate(
        &self,
        p: NonNull<u8>,
        old: usize,
        new: usize,
        align: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        if align > MALLOC_ALIGN {
            // SAFETY: the caller's guarantee for `p`.
            return unsafe { move_block(self, p, old, new, align) };
        }
        first_level::check_size(new)?;
        // SAFETY: the caller guarantees `p` is a live malloc block; on null it is untouched.
        let q = unsafe { libc::realloc(p.as_ptr().cast(), new) };
        NonNull::new(q.cast()).ok_or(AllocError::OutOfMemory { size: new })
    }
}

// SAFETY: `allocate_for_pool` returns a fresh live malloc block of `n` bytes and `align`,
// pinned so that nobody else can free it through an equal MallocAlloc.
unsafe impl Upstream for MallocAlloc {
    fn allocate(&self, n: usize, align: usize) -> Result<NonNull<u8>, AllocError> {
        let p = self.allocate_for_pool(n.max(1), align)?;
        Ok(NonNull::new(p as *mut u8).expect("a non-empty allocation is not null"))
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, n: usize) {
        let done = self.deallocate_for_pool(p.as_ptr() as usize, n.max(1));
        // Views refuse pool-held blocks, so nothing but the pool can hold this one.
        debug_assert!(
            done.is_ok(),
            "a pool gave back a block it did not get: {done:?}"
        );
    }

    unsafe fn reallocate(
        &self,
        p: NonNull<u8>,
        old: usize,
        new: usize,
        align: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        if align > MALLOC_ALIGN {
            // SAFETY: the caller's guarantee for `p`.
            return unsafe { move_block(self, p, old, new, align) };
        }
        let q = self.reallocate_for_pool(p.as_ptr() as usize, old.max(1), new.max(1))?;
        Ok(NonNull::new(q as *mut u8).expect("a non-empty allocation is not null"))
    }
}

// SAFETY: forwards to `U`, which upholds the contract.
unsafe impl<U: Upstream + ?Sized> Upstream for Arc<U> {
    fn allocate(&self, n: usize, align: usize) -> Result<NonNull<u8>, AllocError> {
        (**self).allocate(n, align)
    }

    unsafe fn deallocate(&self, p: NonNull<u8>, n: usize) {
        // SAFETY: the caller's guarantee is passed on unchanged.
        unsafe { (**self).deallocate(p, n) }
    }

    unsafe fn reallocate(
        &self,
        p: NonNull<u8>,
        old: usize,
        new: usize,
        align: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: the caller's guarantee is passed on unchanged.
        unsafe { (**self).reallocate(p, old, new, align) }
    }
}
