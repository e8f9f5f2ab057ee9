//! The safe, address-based interface of every built-in allocator: what containers, views
//! and the Python layer rely on. Every method validates its arguments; misuse is an error
//! and changes nothing.

use crate::error::AllocError;
use crate::raw_lock::RawLock;
use crate::sgi::first_level::{MallocAlloc, MALLOC_ALIGN};
use crate::sgi::params::MIN_ALIGN;
use crate::sgi::upstream::Upstream;
use crate::shared::SharedPool;

/// # Safety
/// Containers build on these promises, so an implementation must keep them:
/// - `allocate(n)` and `allocate_claimed(n)` return 0 for `n == 0`, else the address of a
///   block of at least `n` writable bytes aligned to `alignment()`, disjoint from every
///   other live block, valid until it is deallocated;
/// - a block handed out by `allocate_claimed` (or `claim`ed) is freed, moved, exposed
///   (`pin`) or handed out again only through `deallocate_claimed`;
/// - `block_containing` reports only live blocks.
pub unsafe trait BlockAllocator: Send + Sync {
    /// A block of at least `n` bytes, aligned to `alignment()`; 0 for `n == 0`.
    fn allocate(&self, n: usize) -> Result<usize, AllocError>;
    /// Frees the live block `p` allocated with size `n` (or one of its class).
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError>;
    fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError>;
    /// `(start, size)` of the live block containing `addr`.
    fn block_containing(&self, addr: usize) -> Option<(usize, usize)>;
    /// Forbids freeing or moving the live block at `start` until `unpin`.
    fn pin(&self, start: usize) -> Result<(), AllocError>;
    fn unpin(&self, start: usize);
    /// Hands the live block at `start` to a container: `deallocate`, `reallocate` and
    /// `pin` refuse it from now on, so a user cannot free or overwrite what a container
    /// links through.
    fn claim(&self, start: usize) -> Result<(), AllocError>;
    /// Undoes `claim`.
    fn unclaim(&self, start: usize);
    /// The alignment every block is promised.
    fn alignment(&self) -> usize;

    /// A block for a container, claimed as it is handed out.
    fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        let p = self.allocate(n)?;
        if p != 0 {
            if let Err(e) = self.claim(p) {
                let _ = self.deallocate(p, n);
                return Err(e);
            }
        }
        Ok(p)
    }

    /// Frees a block obtained from `allocate_claimed` (or claimed).
    fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        self.unclaim(p);
        self.deallocate(p, n)
    }

    /// `allocate_claimed(n)` when its fast path alone serves it, calling no function (so
    /// running no foreign code: a container may call it under a lock under which nothing
    /// may be called), with a block aligned to `align` as well; `None`, changing nothing,
    /// in every other case, for the caller to take `allocate_claimed`. By default an
    /// allocator has no such path and serves nothing this way.
    #[inline(always)]
    fn try_allocate_claimed(&self, n: usize, align: usize) -> Option<usize> {
        let _ = (n, align);
        None
    }

    /// `deallocate_claimed(p, n)` when its fast path alone serves it, calling no function,
    /// as `try_allocate_claimed`: whether it freed the block (false changes nothing).
    #[inline(always)]
    fn try_deallocate_claimed(&self, p: usize, n: usize) -> bool {
        let _ = (p, n);
        false
    }

    /// C++ allocator equality: allocators with the same key can free each other's memory.
    /// By default an allocator is equal only to itself; every `MallocAlloc` shares one key.
    fn equality_key(&self) -> usize {
        self as *const Self as *const () as usize
    }

    /// Whether memory from `self` may be deallocated by `other`, and the reverse.
    /// Containers require it for `splice`, `swap` and `merge`.
    fn same_as(&self, other: &Self) -> bool
    where
        Self: Sized,
    {
        self.equality_key() == other.equality_key()
    }

    fn owns(&self, addr: usize) -> bool {
        self.block_containing(addr).is_some()
    }

    /// The live block containing all of `[addr, addr+len)`.
    fn block_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
        spanning(self.block_containing(addr), addr, len)
    }

    /// `block_spanning`, then `pin` of that block, as one step where the allocator can
    /// (so that no other thread frees it in between); `(start, size)` of the pinned block.
    fn pin_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
        let (start, size) = self.block_spanning(addr, len)?;
        self.pin(start)?;
        Ok((start, size))
    }
}

/// The block `found` if it holds all of `[addr, addr+len)`.
pub(crate) fn spanning(
    found: Option<(usize, usize)>,
    addr: usize,
    len: usize,
) -> Result<(usize, usize), AllocError> {
    let out = || AllocError::OutOfBlock { addr, len };
    let (start, size) = found.ok_or_else(out)?;
    let end = addr.checked_add(len).ok_or_else(out)?;
    if end <= start + size {
        Ok((start, size))
    } else {
        Err(out())
    }
}

// SAFETY: malloc's blocks, tracked in the registry that enforces claims and pins.
unsafe impl BlockAllocator for MallocAlloc {
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        MallocAlloc::allocate(self, n)
    }
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        MallocAlloc::deallocate(self, p, n)
    }
    fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        MallocAlloc::reallocate(self, p, old, new)
    }
    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        MallocAlloc::block_containing(self, addr)
    }
    fn pin(&self, start: usize) -> Result<(), AllocError> {
        MallocAlloc::pin(self, start)
    }
    fn unpin(&self, start: usize) {
        MallocAlloc::unpin(self, start)
    }
    fn claim(&self, start: usize) -> Result<(), AllocError> {
        MallocAlloc::claim(self, start)
    }
    fn unclaim(&self, start: usize) {
        MallocAlloc::unclaim(self, start)
    }
    #[inline]
    fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        MallocAlloc::allocate_claimed(self, n)
    }
    #[inline]
    fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        MallocAlloc::deallocate_claimed(self, p, n)
    }
    fn pin_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
        MallocAlloc::pin_spanning(self, addr, len)
    }
    fn alignment(&self) -> usize {
        MALLOC_ALIGN
    }
    /// Every MallocAlloc frees every other's blocks (one registry): one key for all.
    fn equality_key(&self) -> usize {
        0
    }
}

// SAFETY: the checked pool's blocks, tracked in its block maps that enforce claims and pins.
unsafe impl<U: Upstream + Clone + Send + Sync, L: RawLock> BlockAllocator for SharedPool<U, L> {
    #[inline]
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        SharedPool::allocate(self, n)
    }
    #[inline]
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        SharedPool::deallocate(self, p, n)
    }
    fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        SharedPool::reallocate(self, p, old, new)
    }
    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        self.lock_holding(addr).block_containing(addr)
    }
    fn pin(&self, start: usize) -> Result<(), AllocError> {
        self.lock_holding(start).pin(start)
    }
    fn unpin(&self, start: usize) {
        self.lock_holding(start).unpin(start)
    }
    fn claim(&self, start: usize) -> Result<(), AllocError> {
        self.lock_holding(start).claim(start)
    }
    fn unclaim(&self, start: usize) {
        self.lock_holding(start).unclaim(start)
    }
    fn pin_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
        let mut pool = self.lock_holding(addr);
        let (start, size) = spanning(pool.block_containing(addr), addr, len)?;
        pool.pin(start)?;
        Ok((start, size))
    }
    #[inline]
    fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        SharedPool::allocate_claimed(self, n)
    }
    #[inline]
    fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        SharedPool::deallocate_claimed(self, p, n)
    }
    #[inline(always)]
    fn try_allocate_claimed(&self, n: usize, align: usize) -> Option<usize> {
        // Every pool aligns to `MIN_ALIGN` at least: a smaller `align` (a constant, in a
        // container) costs no compare.
        if align > MIN_ALIGN && align > self.params().align() {
            return None;
        }
        SharedPool::try_allocate_claimed(self, n)
    }
    #[inline(always)]
    fn try_deallocate_claimed(&self, p: usize, n: usize) -> bool {
        SharedPool::try_deallocate_claimed(self, p, n)
    }
    fn alignment(&self) -> usize {
        self.params().align()
    }
}

/// The methods of a handle (`Arc<A>`, `&A`) that forward to the allocator it points to.
/// A container's block calls are inlined whole: when the target is a concrete pool they
/// bring its fast path into the container's method (a list's pop: 146 -> 127 instructions).
macro_rules! forward_to_target {
    () => {
        #[inline]
        fn allocate(&self, n: usize) -> Result<usize, AllocError> {
            (**self).allocate(n)
        }
        #[inline]
        fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
            (**self).deallocate(p, n)
        }
        fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
            (**self).reallocate(p, old, new)
        }
        fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
            (**self).block_containing(addr)
        }
        fn pin(&self, start: usize) -> Result<(), AllocError> {
            (**self).pin(start)
        }
        fn unpin(&self, start: usize) {
            (**self).unpin(start)
        }
        fn claim(&self, start: usize) -> Result<(), AllocError> {
            (**self).claim(start)
        }
        fn unclaim(&self, start: usize) {
            (**self).unclaim(start)
        }
        #[inline(always)]
        fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
            (**self).allocate_claimed(n)
        }
        #[inline(always)]
        fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
            (**self).deallocate_claimed(p, n)
        }
        #[inline(always)]
        fn try_allocate_claimed(&self, n: usize, align: usize) -> Option<usize> {
            (**self).try_allocate_claimed(n, align)
        }
        #[inline(always)]
        fn try_deallocate_claimed(&self, p: usize, n: usize) -> bool {
            (**self).try_deallocate_claimed(p, n)
        }
        fn pin_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
            (**self).pin_spanning(addr, len)
        }
        fn alignment(&self) -> usize {
            (**self).alignment()
        }
        fn equality_key(&self) -> usize {
            (**self).equality_key()
        }
    };
}

// SAFETY: forwards every call to `A`, which keeps the promises.
unsafe impl<A: BlockAllocator + ?Sized> BlockAllocator for std::sync::Arc<A> {
    forward_to_target!();
    /// Two handles of one allocator are the same without asking it: a list's push links a
    /// node of the list's own allocator, and this saves it two dynamic calls.
    #[inline]
    fn same_as(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(self, other) || self.equality_key() == other.equality_key()
    }
}

// SAFETY: forwards every call to `A`, which keeps the promises.
unsafe impl<A: BlockAllocator + ?Sized> BlockAllocator for &A {
    forward_to_target!();
    /// A borrowed handle is the same as another one to the same allocator.
    #[inline]
    fn same_as(&self, other: &Self) -> bool {
        std::ptr::addr_eq(*self, *other) || self.equality_key() == other.equality_key()
    }
}
