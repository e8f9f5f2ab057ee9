//! Frees a container owes, handed back instead of done.
//!
//! Freeing a block may run foreign code: a Python allocator's `deallocate`, which may use the
//! very container that frees. A container guarded by a lock must therefore free only once it
//! is unlocked, and the simplest way to make that impossible to get wrong is for the
//! container never to free inside an operation at all. So no `&mut self` method of
//! [`Vector`](super::vector::Vector) or [`List`](super::list::List) frees a block: each hands
//! the block back as a [`Retired`] (or inside an [`Unlinked`](super::list::Unlinked) node),
//! and the block is freed when that value is dropped, by then outside any lock the caller
//! held. Only a container's own `Drop` frees directly: nobody can hold a lock on a container
//! being destroyed.
//!
//! Invariants (checked by `deferred_tests`, with an allocator that counts its frees):
//! - frees during any `&mut self` method of a container `== 0`;
//! - frees once everything the methods handed back is dropped `==` blocks handed back
//!   (`Retired::pending` is `Some`), so nothing is lost on the way.
//!
//! A block the allocator refuses to take back is leaked: it stays a live block of its
//! allocator, and nobody uses it any more.

use crate::block_allocator::BlockAllocator;

/// A block a container has let go of (`bytes` bytes at `addr`, claimed), or nothing; freed
/// through `deallocate_claimed` when dropped.
#[must_use = "dropping a Retired frees its block, which may run the allocator's code: \
              keep it until the container is unlocked"]
pub struct Retired<A: BlockAllocator> {
    block: Option<(A, usize, usize)>,
}

impl<A: BlockAllocator> Retired<A> {
    /// Nothing to free.
    pub fn none() -> Self {
        Self { block: None }
    }

    /// The claimed block `[addr, addr+bytes)` of `alloc`; nothing for `bytes == 0`.
    pub(crate) fn block(alloc: A, addr: usize, bytes: usize) -> Self {
        Self {
            block: (bytes > 0).then_some((alloc, addr, bytes)),
        }
    }

    /// `(addr, bytes)` of the block to free, if any.
    pub fn pending(&self) -> Option<(usize, usize)> {
        self.block.as_ref().map(|&(_, addr, bytes)| (addr, bytes))
    }

    /// Gives up the block without freeing it: someone else took it over.
    pub(crate) fn forget(mut self) {
        self.block = None;
    }
}

impl<A: BlockAllocator> Drop for Retired<A> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<A: BlockAllocator> Retired<A> {
    /// Frees the block now, as dropping does, inlined where a container's hot path frees
    /// (a list's pop: 4 of its 150 instructions were the drop glue's frame).
    #[inline(always)]
    pub(crate) fn free(mut self) {
        self.release();
        std::mem::forget(self);
    }

    /// Frees the block now if the allocator's call-free path
    /// ([`BlockAllocator::try_deallocate_claimed`]) takes it; whether nothing is left to
    /// free (false changes nothing).
    #[inline(always)]
    pub(crate) fn try_free(&mut self) -> bool {
        let freed = match &self.block {
            None => true,
            Some((alloc, addr, bytes)) => alloc.try_deallocate_claimed(*addr, *bytes),
        };
        if freed {
            self.block = None;
        }
        freed
    }

    #[inline(always)]
    fn release(&mut self) {
        if let Some((alloc, addr, bytes)) = self.block.take() {
            let _ = alloc.deallocate_claimed(addr, bytes);
        }
    }
}

impl<A: BlockAllocator> std::fmt::Debug for Retired<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Retired({:?})", self.pending())
    }
}
