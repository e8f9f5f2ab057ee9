//! The safe, address-based interface of every built-in allocator: what containers, views
//! and the Python layer rely on. Every method validates its arguments; misuse is an error
//! and changes nothing.

use crate::error::AllocError;
use crate::malloc_alloc::{MallocAlloc, MALLOC_ALIGN};
use crate::raw_lock::RawLock;
use crate::shared_pool::SharedPool;
use crate::upstream::Upstream;

pub trait BlockAllocator: Send + Sync {
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
    /// The alignment every block is promised.
    fn alignment(&self) -> usize;

    /// C++ allocator equality: whether memory from one may be deallocated by the other.
    /// Allocators that track their blocks can only free their own, so by default an
    /// allocator is equal only to itself. Containers require it for `splice` and `merge`.
    fn same_as(&self, other: &Self) -> bool
    where
        Self: Sized,
    {
        std::ptr::eq(self, other)
    }

    fn owns(&self, addr: usize) -> bool {
        self.block_containing(addr).is_some()
    }

    /// The live block containing all of `[addr, addr+len)`.
    fn block_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
        let out = || AllocError::OutOfBlock { addr, len };
        let (start, size) = self.block_containing(addr).ok_or_else(out)?;
        let end = addr.checked_add(len).ok_or_else(out)?;
        if end <= start + size {
            Ok((start, size))
        } else {
            Err(out())
        }
    }
}

impl BlockAllocator for MallocAlloc {
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
    fn alignment(&self) -> usize {
        MALLOC_ALIGN
    }
}

impl<U: Upstream + Clone + Send + Sync, L: RawLock> BlockAllocator for SharedPool<U, L> {
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        SharedPool::allocate(self, n)
    }
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        SharedPool::deallocate(self, p, n)
    }
    fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        SharedPool::reallocate(self, p, old, new)
    }
    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        self.lock().block_containing(addr)
    }
    fn pin(&self, start: usize) -> Result<(), AllocError> {
        self.lock().pin(start)
    }
    fn unpin(&self, start: usize) {
        self.lock().unpin(start)
    }
    fn alignment(&self) -> usize {
        self.params().align()
    }
}

impl<A: BlockAllocator + ?Sized> BlockAllocator for std::sync::Arc<A> {
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        (**self).allocate(n)
    }
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
    fn alignment(&self) -> usize {
        (**self).alignment()
    }
    /// Two handles are equal when they share the allocator object.
    fn same_as(&self, other: &Self) -> bool {
        std::ptr::addr_eq(std::sync::Arc::as_ptr(self), std::sync::Arc::as_ptr(other))
    }
}
