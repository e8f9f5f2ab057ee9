//! The first level: SGI's `__malloc_alloc_template`, a wrapper over libc `malloc`, `free`
//! and `realloc` with the out-of-memory handler loop.
//!
//! Every `MallocAlloc` is equal to every other (SPEC §8, as C++ allocator equality): memory
//! from one may be freed or resized by any. So live blocks are kept in one process-wide
//! registry (`registry`), each with its owner — the allocator that made it, whose statistics
//! and limit it counts against — and its pins. The registry catches every misuse before libc
//! sees it, in O(1) for the small blocks that make up almost every workload (`block_table`).
//!
//! Invariants (checked in tests; stated as equations in `registry`), for every owner `o`:
//! - `stats[o].live_blocks == |{b : b.owner == o}|`,
//!   `stats[o].live_bytes == Σ_{b.owner == o} b.size <= limit[o]`;
//! - `stats[o].allocations - stats[o].deallocations == stats[o].live_blocks`.
//!
//! The handler runs with no lock held, so it may deallocate blocks of this very allocator.

mod block_table;
mod locked;
mod registry;

use crate::error::{AllocError, HandlerError};
use crate::sync::lock;
use locked::{Guard, Locked};
use registry::{Block, Registry};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// malloc's alignment on x86-64 glibc; larger alignments go through `posix_memalign`.
pub const MALLOC_ALIGN: usize = 16;

/// SGI's `__malloc_alloc_oom_handler`: called when `malloc` fails; it should free memory
/// (then the request is retried) or fail (then the request fails with its error).
pub trait OomHandler: Send + Sync {
    fn on_oom(&self) -> Result<(), HandlerError>;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MallocStats {
    pub live_blocks: usize,
    pub live_bytes: usize,
    pub allocations: u64,
    pub deallocations: u64,
    /// Requests `malloc` (or the limit) refused, each retry counted.
    pub failures: u64,
    pub handler_calls: u64,
}

static REGISTRY: Locked<Registry> = Locked::new(Registry::new());

#[inline]
fn registry() -> Guard<'static, Registry> {
    REGISTRY.lock()
}

/// Makes the first level rely on a lock its caller holds instead of its own spin lock.
///
/// # Safety
/// From this call on, every call into any `MallocAlloc` of the process (constructing and
/// dropping included), from any thread, is made holding one same outer lock (a GIL), which
/// is not let go during the call except while an out-of-memory handler runs; no such call
/// is in progress now.
pub unsafe fn assume_outer_lock() {
    // SAFETY: the caller's promise is the one `Locked::assume_outer_lock` asks for: every
    // registry guard lives inside one first-level call, and none is held across a handler.
    unsafe { REGISTRY.assume_outer_lock() }
}

impl Registry {
    /// Frees the block at `p`, whose owner is gone, once nothing holds it any more.
    fn reap_orphan(&mut self, p: usize) {
        let Some(b) = self.get(p) else { return };
        if b.pins > 0 || b.claimed || self.owner(b.owner).alive {
            return;
        }
        self.forget(p);
        // SAFETY: a live malloc block whose allocator is gone and that no view, pool or
        // container holds any more: forgotten above, so freed exactly once.
        unsafe { libc::free(p as *mut libc::c_void) };
    }
}

pub struct MallocAlloc {
    /// Index of this allocator's record in the registry.
    owner: usize,
    limit: Option<usize>,
    handler: Mutex<Option<Arc<dyn OomHandler>>>,
}

/// Rejects sizes no allocation can have before any libc call sees them.
#[inline]
pub(crate) fn check_size(size: usize) -> Result<(), AllocError> {
    if size > isize::MAX as usize - 4096 {
        Err(AllocError::TooLarge { size })
    } else {
        Ok(())
    }
}

/// `malloc`, or `posix_memalign` above malloc's alignment; `None` when it fails.
#[inline]
pub(crate) fn raw_malloc(n: usize, align: usize) -> Option<NonNull<u8>> {
    if align <= MALLOC_ALIGN {
        // SAFETY: malloc accepts any size; a null result is handled by the caller.
        NonNull::new(unsafe { libc::malloc(n) }.cast())
    } else {
        let mut p = std::ptr::null_mut();
        // SAFETY: `align` is a power of two and a multiple of the pointer size (callers
        // validate it); `p` is a valid out-pointer.
        let rc = unsafe { libc::posix_memalign(&mut p, align, n) };
        if rc == 0 {
            NonNull::new(p.cast())
        } else {
            None
        }
    }
}

impl MallocAlloc {
    pub fn new(limit: Option<usize>) -> Self {
        Self {
            owner: registry().add_owner(limit),
            limit,
            handler: Mutex::new(None),
        }
    }

    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Installs `handler` (or none) and returns the previous one, as
    /// `__set_malloc_handler` does.
    pub fn set_malloc_handler(
        &self,
        handler: Option<Arc<dyn OomHandler>>,
    ) -> Option<Arc<dyn OomHandler>> {
        std::mem::replace(&mut *lock(&self.handler), handler)
    }

    /// SGI's `_S_oom_malloc` loop around one attempt: with no handler, fail; otherwise call
    /// it (no lock held) and try again. The first attempt is inlined into the caller and the
    /// loop is out of line, so that a request malloc grants runs straight through.
    #[inline(always)]
    fn oom_loop<T>(
        &self,
        size: usize,
        mut attempt: impl FnMut(&mut Registry) -> Result<Option<T>, AllocError>,
    ) -> Result<T, AllocError> {
        {
            let mut reg = registry();
            if let Some(v) = attempt(&mut reg)? {
                return Ok(v);
            }
            reg.stats_mut(self.owner).failures += 1;
        }
        self.handler_loop(size, attempt)
    }

    /// The rest of `oom_loop`, once an attempt failed and was counted.
    #[cold]
    #[inline(never)]
    fn handler_loop<T>(
        &self,
        size: usize,
        mut attempt: impl FnMut(&mut Registry) -> Result<Option<T>, AllocError>,
    ) -> Result<T, AllocError> {
        loop {
            let handler = lock(&self.handler).clone();
            let Some(handler) = handler else {
                return Err(AllocError::OutOfMemory { size });
            };
            registry().stats_mut(self.owner).handler_calls += 1;
            handler.on_oom().map_err(AllocError::Handler)?;
            // The guard goes at the end of this iteration: the handler never runs under it.
            let mut reg = registry();
            if let Some(v) = attempt(&mut reg)? {
                return Ok(v);
            }
            reg.stats_mut(self.owner).failures += 1;
        }
    }

    /// `malloc(n)`, aligned to 16; 0 bytes give the null address 0.
    #[inline]
    pub fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        self.allocate_as(n, MALLOC_ALIGN, 0, false)
    }

    /// Like `allocate`, aligned to `align` (a power of two, at least 8).
    pub fn allocate_aligned(&self, n: usize, align: usize) -> Result<usize, AllocError> {
        self.allocate_as(n, align, 0, false)
    }

    /// A block for a container, claimed as it is made (one registry step, not two).
    #[inline]
    pub fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        self.allocate_as(n, MALLOC_ALIGN, 0, true)
    }

    /// Allocates a block that starts with `pins` pins (a pool holding it), or claimed.
    #[inline(always)]
    fn allocate_as(
        &self,
        n: usize,
        align: usize,
        pins: usize,
        claimed: bool,
    ) -> Result<usize, AllocError> {
        if n == 0 {
            return Ok(0);
        }
        check_size(n)?;
        let (block, make) = self.new_block(n, align, pins, claimed);
        // `oom_loop`'s first attempt, written out: through its closure and `Result` a
        // granted request cost 30 more instructions.
        {
            let mut reg = registry();
            if let Some(p) = reg.admit(block, make) {
                return Ok(p);
            }
            reg.stats_mut(self.owner).failures += 1;
        }
        self.allocate_handled(n, align, pins, claimed)
    }

    /// A block of `n` bytes for this allocator, with `pins` pins (a pool's) or claimed,
    /// and the call that makes it.
    #[inline(always)]
    fn new_block(
        &self,
        n: usize,
        align: usize,
        pins: usize,
        claimed: bool,
    ) -> (Block, impl FnOnce() -> Option<usize> + Copy) {
        let block = Block {
            size: n,
            owner: self.owner,
            pins,
            claimed,
            pool_held: pins > 0,
        };
        (block, move || {
            raw_malloc(n, align).map(|p| p.as_ptr() as usize)
        })
    }

    /// The handler loop of `allocate_as`, once its first attempt failed and was counted.
    /// Out of line with its arguments in registers: its block and closure, built inline,
    /// were written to the stack on every allocation, granted or not.
    #[cold]
    #[inline(never)]
    fn allocate_handled(
        &self,
        n: usize,
        align: usize,
        pins: usize,
        claimed: bool,
    ) -> Result<usize, AllocError> {
        let (block, make) = self.new_block(n, align, pins, claimed);
        self.handler_loop(n, |reg| Ok(reg.admit(block, make)))
    }

    /// `free(p)` for a live block of exactly `n` bytes, made by any `MallocAlloc`.
    /// `(0, 0)` does nothing.
    #[inline]
    pub fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        self.deallocate_pinned(p, n, 0)
    }

    #[inline(always)]
    fn deallocate_pinned(&self, p: usize, n: usize, pins: usize) -> Result<(), AllocError> {
        if p == 0 && n == 0 {
            return Ok(());
        }
        registry().forget_if(p, |b| b.check(p, n, pins))?;
        // SAFETY: `p` is a live block that malloc (or posix_memalign) returned, checked
        // above, and it is now forgotten, so no other call can reach it: freed exactly once.
        unsafe { libc::free(p as *mut libc::c_void) };
        Ok(())
    }

    /// `realloc(p, new)` for a live block of `old` bytes, with the OOM loop. `new == 0`
    /// frees; `p == 0` with `old == 0` allocates. On failure `p` stays live and unchanged.
    /// The block stays with its owner.
    pub fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        self.reallocate_pinned(p, old, new, 0)
    }

    fn reallocate_pinned(
        &self,
        p: usize,
        old: usize,
        new: usize,
        pins: usize,
    ) -> Result<usize, AllocError> {
        if p == 0 && old == 0 {
            return self.allocate_as(new, MALLOC_ALIGN, pins, false);
        }
        if new == 0 {
            self.deallocate_pinned(p, old, pins)?;
            return Ok(0);
        }
        check_size(new)?;
        registry().check(p, old, pins)?;
        self.oom_loop(new, |reg| {
            // Re-validated: the handler may have run and freed this very block.
            let owner = reg.check(p, old, pins)?.owner;
            if !reg.within_limit(owner, old, new) {
                return Ok(None);
            }
            // SAFETY: `p` is live with `old` bytes (checked under this lock), so realloc
            // may move or resize it; on null it leaves `p` untouched.
            let Some(q) = NonNull::new(unsafe { libc::realloc(p as *mut libc::c_void, new) })
            else {
                return Ok(None);
            };
            let q = q.as_ptr() as usize;
            let block = reg.take(p).expect("checked as live");
            reg.place(q, Block { size: new, ..block });
            let st = reg.stats_mut(owner);
            st.live_bytes = st.live_bytes - old + new;
            Ok(Some(q))
        })
    }

    /// `(start, size)` of the live malloc block containing `addr`.
    pub fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        registry().containing(addr)
    }

    /// Marks the live block at `start` as in use (exported by a view, or held by a pool):
    /// it may not be freed or moved until every pin is removed.
    pub fn pin(&self, start: usize) -> Result<(), AllocError> {
        Self::pin_in(&mut registry(), start)
    }

    /// Pins the live block holding all of `[addr, addr+len)`, under one lock.
    pub fn pin_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
        let mut reg = registry();
        let (start, size) = crate::block_allocator::spanning(reg.containing(addr), addr, len)?;
        Self::pin_in(&mut reg, start)?;
        Ok((start, size))
    }

    fn pin_in(reg: &mut Registry, start: usize) -> Result<(), AllocError> {
        match reg.get(start) {
            Some(b) if b.claimed || b.pool_held => Err(AllocError::Claimed { addr: start }),
            Some(_) => {
                reg.update(start, |b| b.pins += 1);
                Ok(())
            }
            None => Err(AllocError::NotLive { addr: start }),
        }
    }

    /// Hands the live block at `start` to a container: `deallocate`, `reallocate` and
    /// `pin` refuse it until `deallocate_claimed` frees it (or `unclaim`).
    pub fn claim(&self, start: usize) -> Result<(), AllocError> {
        let mut reg = registry();
        match reg.get(start) {
            Some(b) if b.pins > 0 => Err(AllocError::Pinned { addr: start }),
            Some(b) if b.claimed => Err(AllocError::Claimed { addr: start }),
            Some(_) => {
                reg.update(start, |b| b.claimed = true);
                Ok(())
            }
            None => Err(AllocError::NotLive { addr: start }),
        }
    }

    pub fn unclaim(&self, start: usize) {
        registry().update(start, |b| b.claimed = false);
    }

    /// Frees a block a container holds.
    #[inline]
    pub fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        registry().forget_if(p, |b| match b.claimed && b.size == n && b.pins == 0 {
            true => Ok(()),
            false => Err(AllocError::NotLive { addr: p }),
        })?;
        // SAFETY: `p` is a live malloc block (checked under the lock), now forgotten, so
        // it is freed exactly once.
        unsafe { libc::free(p as *mut libc::c_void) };
        Ok(())
    }

    pub fn unpin(&self, start: usize) {
        let mut reg = registry();
        if reg.update(start, |b| b.pins = b.pins.saturating_sub(1)) {
            reg.reap_orphan(start);
        }
    }

    pub fn stats(&self) -> MallocStats {
        registry().owner(self.owner).stats
    }

    // Pools hold their upstream blocks pinned, so a user cannot free them through the
    // MallocAllocator (every MallocAllocator is equal) while the pool still uses them.

    pub(crate) fn allocate_for_pool(&self, n: usize, align: usize) -> Result<usize, AllocError> {
        self.allocate_as(n, align, 1, false)
    }

    pub(crate) fn deallocate_for_pool(&self, p: usize, n: usize) -> Result<(), AllocError> {
        self.deallocate_pinned(p, n, 1)
    }

    pub(crate) fn reallocate_for_pool(
        &self,
        p: usize,
        old: usize,
        new: usize,
    ) -> Result<usize, AllocError> {
        self.reallocate_pinned(p, old, new, 1)
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let reg = registry();
        reg.check_invariants();
        let st = reg.owner(self.owner).stats;
        assert!(self.limit.is_none_or(|l| st.live_bytes <= l));
    }
}

impl Drop for MallocAlloc {
    fn drop(&mut self) {
        let mut reg = registry();
        reg.owner_mut(self.owner).alive = false;
        // A block a container holds (spliced there from an equal allocator) or a view
        // exports stays live, counted by this owner's record, until it is let go.
        if reg.owner(self.owner).stats.live_blocks > 0 {
            for p in reg.blocks_of(self.owner) {
                reg.reap_orphan(p);
            }
        }
        reg.retire_if_done(self.owner);
    }
}

#[cfg(test)]
mod tests;
