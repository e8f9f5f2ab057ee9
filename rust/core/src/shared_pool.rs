//! The thread-safe pool that Python uses: a `CheckedPool` behind a lock, with every
//! upstream *allocation* made outside the lock, so an out-of-memory handler that runs
//! during it may call back into this pool (SGI's handler re-entrancy) without deadlock.
//!
//! Used from one thread it makes exactly the calls of `Pool`, in the same order, so its
//! addresses, free lists and statistics are those of SPEC §3.

use crate::checked::{BlockKind, CheckedPool};
use crate::error::AllocError;
use crate::malloc_alloc::{check_size, MallocAlloc};
use crate::params::Params;
use crate::pool::NeedChunk;
use crate::raw_lock::{RawLock, SpinLock};
use crate::stats::PoolStats;
use crate::upstream::Upstream;
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

pub struct SharedPool<U: Upstream + Clone = Arc<MallocAlloc>, L: RawLock = SpinLock> {
    params: Params,
    upstream: U,
    lock: L,
    inner: UnsafeCell<CheckedPool<U>>,
}

// SAFETY: `inner` is reached only through `PoolGuard`, which holds `lock` (mutual exclusion
// by `RawLock`'s contract); the pool itself may move between threads (`CheckedPool: Send`).
unsafe impl<U: Upstream + Clone + Send, L: RawLock> Sync for SharedPool<U, L> {}
// SAFETY: as above; every field is owned.
unsafe impl<U: Upstream + Clone + Send, L: RawLock> Send for SharedPool<U, L> {}

/// The locked pool; unlocks when dropped.
pub struct PoolGuard<'a, U: Upstream + Clone, L: RawLock> {
    pool: &'a SharedPool<U, L>,
}

impl<U: Upstream + Clone, L: RawLock> Deref for PoolGuard<'_, U, L> {
    type Target = CheckedPool<U>;
    #[inline]
    fn deref(&self) -> &CheckedPool<U> {
        // SAFETY: this guard holds the lock, so no other reference to `inner` exists.
        unsafe { &*self.pool.inner.get() }
    }
}

impl<U: Upstream + Clone, L: RawLock> DerefMut for PoolGuard<'_, U, L> {
    #[inline]
    fn deref_mut(&mut self) -> &mut CheckedPool<U> {
        // SAFETY: this guard holds the lock, so no other reference to `inner` exists.
        unsafe { &mut *self.pool.inner.get() }
    }
}

impl<U: Upstream + Clone, L: RawLock> Drop for PoolGuard<'_, U, L> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard was created by `lock()` and holds the lock.
        unsafe { self.pool.lock.unlock() }
    }
}

impl<U: Upstream + Clone + Send, L: RawLock> SharedPool<U, L> {
    pub fn new(params: Params, arena_size: usize, upstream: U) -> Result<Self, AllocError> {
        let inner = CheckedPool::new(params, arena_size, upstream.clone())?;
        Ok(Self {
            params,
            upstream,
            lock: L::default(),
            inner: UnsafeCell::new(inner),
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// The locked pool, for inspection (statistics, free lists, pictures).
    #[inline]
    pub fn lock(&self) -> PoolGuard<'_, U, L> {
        self.lock.lock();
        PoolGuard { pool: self }
    }

    /// SPEC §3 `allocate`: 0 for 0 bytes, the upstream above `max_bytes`, else the pool.
    #[inline(always)]
    pub fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        match self.try_pop(n, false) {
            Some(p) => Ok(p),
            None => self.allocate_claimed(n, false),
        }
    }

    /// The allocation fast path, kept small so that callers inline it: one lock, one pop,
    /// one byte of the block map. `None` for every other case.
    #[inline(always)]
    fn try_pop(&self, n: usize, claimed: bool) -> Option<usize> {
        if n.wrapping_sub(1) >= self.params.max_bytes() {
            return None;
        }
        self.lock().try_pop(n, claimed)
    }

    /// `allocate`, the block claimed for a container (see `CheckedPool::claim`) under the
    /// same lock that hands it out: every case, refills and upstream included.
    #[inline(never)]
    fn allocate_claimed(&self, n: usize, claimed: bool) -> Result<usize, AllocError> {
        if n == 0 {
            return Ok(0);
        }
        if n > self.params.max_bytes() {
            check_size(n)?;
            let p = self.upstream.allocate(n, self.params.align())?.as_ptr() as usize;
            self.lock().insert_large(p, n, claimed);
            return Ok(p);
        }
        loop {
            let bytes = match self.lock().allocate_small(n, claimed) {
                Ok(p) => return Ok(p),
                Err(NeedChunk { bytes }) => bytes,
            };
            // The lock is released here: the upstream may run a handler that re-enters.
            let chunk = self.upstream.allocate(bytes, self.params.align())?;
            self.lock().add_chunk(chunk, bytes);
        }
    }

    #[inline(always)]
    pub fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if self.lock().try_free(p, n, false) {
            return Ok(());
        }
        self.deallocate_checked(p, n)
    }

    /// Every free the fast path leaves: upstream blocks, pinned pools, and errors.
    #[inline(never)]
    fn deallocate_checked(&self, p: usize, n: usize) -> Result<(), AllocError> {
        self.lock().deallocate(p, n)
    }

    /// `allocate`, the block handed to a container at once (see `CheckedPool::claim`).
    #[inline(always)]
    pub fn allocate_owned(&self, n: usize) -> Result<usize, AllocError> {
        match self.try_pop(n, true) {
            Some(p) => Ok(p),
            None => self.allocate_claimed(n, true),
        }
    }

    #[inline(always)]
    pub fn deallocate_owned(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if self.lock().try_free(p, n, true) {
            return Ok(());
        }
        self.deallocate_owned_checked(p, n)
    }

    #[inline(never)]
    fn deallocate_owned_checked(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if p == 0 && n == 0 {
            return Ok(());
        }
        self.lock().deallocate_owned(p, n)
    }

    /// SPEC §3 `reallocate`. On error `p` is still live, unchanged, and the pool's state is
    /// as before except for what the failed allocation itself did (SGI's leftover push).
    pub fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        if p == 0 && old == 0 {
            return self.allocate(new);
        }
        if new == 0 {
            self.deallocate(p, old)?;
            return Ok(0);
        }
        let max = self.params.max_bytes();
        check_size(new)?;
        {
            let mut pool = self.lock();
            let kind = pool.validate(p, old)?;
            if pool.is_pinned(p) {
                return Err(AllocError::Pinned { addr: p });
            }
            if pool.is_claimed_at(p) {
                return Err(AllocError::Owned { addr: p });
            }
            if kind == BlockKind::Small
                && new <= max
                && pool.params().round_up(old) == pool.params().round_up(new)
            {
                return Ok(p);
            }
            if old > max && new > max {
                return self.reallocate_large(pool, p, old, new);
            }
            // Nobody may free or export `p` while we copy out of it unlocked.
            pool.pin(p).expect("validated as live");
        }
        let q = match self.allocate(new) {
            Ok(q) => q,
            Err(e) => {
                self.lock().unpin(p);
                return Err(e);
            }
        };
        // SAFETY: `p` is live and pinned (so no one frees it) with `old` bytes; `q` is a new
        // live block of `new` bytes; distinct live blocks never overlap.
        unsafe { std::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, old.min(new)) };
        let mut pool = self.lock();
        pool.unpin(p);
        if let Err(e) = pool.deallocate(p, old) {
            // A view of `p` was taken meanwhile: undo the move.
            pool.deallocate(q, new).expect("q is live and ours");
            return Err(e);
        }
        Ok(q)
    }

    fn reallocate_large(
        &self,
        mut pool: PoolGuard<'_, U, L>,
        p: usize,
        old: usize,
        new: usize,
    ) -> Result<usize, AllocError> {
        // While the block moves it is out of the record: no view or free can reach it.
        pool.take_large(p);
        drop(pool);
        let ptr = NonNull::new(p as *mut u8).expect("validated blocks are not null");
        // SAFETY: `p` is a live upstream block of `old` bytes that nobody else can reach.
        let moved = unsafe { self.upstream.reallocate(ptr, old, new, self.params.align()) };
        let mut pool = self.lock();
        match moved {
            Ok(q) => {
                pool.insert_large(q.as_ptr() as usize, new, false);
                Ok(q.as_ptr() as usize)
            }
            Err(e) => {
                pool.insert_large(p, old, false);
                Err(e)
            }
        }
    }

    pub fn stats(&self) -> PoolStats {
        self.lock().stats()
    }

    pub fn release(&self) -> Result<(), AllocError> {
        self.lock().release()
    }
}
