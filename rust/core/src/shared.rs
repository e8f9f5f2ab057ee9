//! The thread-safe pool that Python uses: SGI pools (`CheckedPool`s) behind locks, one
//! heap per thread up to K (see `heaps`), with every upstream *allocation* made outside
//! the locks, so an out-of-memory handler that runs during it may call back into this
//! pool (SGI's handler re-entrancy) without deadlock.
//!
//! Used from one thread it has one heap and makes exactly the calls of `Pool`, in the
//! same order, so its addresses, free lists and statistics are those of SPEC §3. Used
//! from several, each heap is such a pool for the blocks it handed out:
//! - every heap's conservation equation holds, and so does their sum, which `stats` shows:
//!   `Σ heap_size == Σ live_bytes + Σ free_bytes + Σ chunk_bytes_left`;
//! - a block is freed into the heap it came from, whichever thread frees it (by another
//!   thread than its heap's owner, without the lock: see `heaps`, `remote_frees`);
//! - a thread holds at most one heap lock at a time, so heaps cannot deadlock (the
//!   inspections that lock them all take them in index order).

pub mod heaps;
mod inspect;
mod owner_fence;
mod remote_frees;
#[cfg(test)]
mod tests;
mod thread_token;

use crate::checked::BlockKind;
use crate::error::AllocError;
use crate::raw_lock::{RawLock, SpinLock};
use crate::sgi::first_level::{check_size, MallocAlloc};
use crate::sgi::params::Params;
use crate::sgi::pool::NeedChunk;
use crate::sgi::upstream::Upstream;
use crate::shared::heaps::{Heap, Heaps, PoolGuard};
use std::ptr::NonNull;
use std::sync::Arc;

pub struct SharedPool<U: Upstream + Clone = Arc<MallocAlloc>, L: RawLock = SpinLock> {
    params: Params,
    upstream: U,
    heaps: Heaps<U, L>,
}

// SAFETY: the heaps are `Sync` (each behind its lock); `upstream` is only called through
// `&self`, as every `Upstream` may be, and cloned into heaps made by any thread.
unsafe impl<U: Upstream + Clone + Send, L: RawLock> Sync for SharedPool<U, L> {}
// SAFETY: as above; every field is owned.
unsafe impl<U: Upstream + Clone + Send, L: RawLock> Send for SharedPool<U, L> {}

impl<U: Upstream + Clone + Send, L: RawLock> SharedPool<U, L> {
    /// One heap: one SGI pool, whatever the threads.
    pub fn new(params: Params, arena_size: usize, upstream: U) -> Result<Self, AllocError> {
        Self::with_heaps(params, arena_size, upstream, 1)
    }

    /// Up to `heaps` heaps (at least one), each an SGI pool over an arena of `arena_size`
    /// bytes of its own, made when a thread first needs it: see `heaps`.
    pub fn with_heaps(
        params: Params,
        arena_size: usize,
        upstream: U,
        heaps: usize,
    ) -> Result<Self, AllocError> {
        Ok(Self {
            params,
            heaps: Heaps::new(params, arena_size, upstream.clone(), heaps)?,
            upstream,
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// Heap `i` (0 is the one a single thread uses), locked, if it was made.
    pub fn lock_heap(&self, i: usize) -> Option<PoolGuard<'_, U, L>> {
        self.heaps.get(i).map(Heap::lock)
    }

    /// The heap owning the block `(p, n)`, locked; heap 0 if no heap knows `p` (its errors
    /// for `(p, n)` are then what one SGI pool would say).
    #[inline]
    pub fn lock_owner(&self, p: usize, n: usize) -> PoolGuard<'_, U, L> {
        self.heaps.lock_owner(p, n)
    }

    /// The heap holding the live block that contains `addr`, locked; heap 0 if none does.
    pub fn lock_holding(&self, addr: usize) -> PoolGuard<'_, U, L> {
        self.heaps.lock_holding(addr)
    }

    /// SPEC §3 `allocate`: 0 for 0 bytes, the upstream above `max_bytes`, else the pool.
    #[inline(always)]
    pub fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        match self.try_pop(n, false) {
            Some(p) => Ok(p),
            None => self.allocate_slow_split(n, false),
        }
    }

    /// The allocation fast path, kept small so that callers inline it: the caller's own
    /// biased heap entered with a store and a load, else its heap locked; one pop, one
    /// byte of the block map. `None` for every other case.
    #[inline(always)]
    fn try_pop(&self, n: usize, claimed: bool) -> Option<usize> {
        if let Some(heap) = self.heaps.mine_biased() {
            // SAFETY: `enter_owned_arena(n)` is `Some` only for `1 <= n <= fast_max` and
            // while the heap's pool holds no upstream chunk (`Heap`'s `arena_max`).
            return unsafe { heap.enter_owned_arena(n)?.try_pop_arena_only(n, claimed) };
        }
        self.lock_mine().try_pop(n, claimed)
    }

    /// The owner's allocation in a heap whose pool took an upstream chunk, from the slow
    /// path: the block's byte found with its range checked, still no lock. `None` if the
    /// caller owns no biased heap, another thread requested it, `n` is past `fast_max`
    /// or the list is empty.
    fn try_pop_owned_checked(&self, n: usize, claimed: bool) -> Option<usize> {
        let heap = self.heaps.mine_biased()?;
        // SAFETY: `enter_owned(n)` is `Some` only for `1 <= n <= fast_max`.
        unsafe { heap.enter_owned(n)?.try_pop_small(n, claimed) }
    }

    /// The caller's heap, locked, and the owner kept out if not the caller: the slow paths,
    /// and the fast ones of threads that do not own a biased heap (the GIL flavour's every
    /// call: always inlined there, like the two locks it picks between).
    #[inline(always)]
    fn lock_mine(&self) -> PoolGuard<'_, U, L> {
        match self.heaps.mine() {
            (heap, true) => heap.lock_owned(),
            (heap, false) => heap.lock(),
        }
    }

    /// `allocate_slow` called with its error returned apart: a `Result` returned in
    /// memory would make the inlined fast path write its `Ok` to that memory as well (a
    /// slot the call may read), three stores per allocation; this way only an error is
    /// moved through memory.
    #[inline(always)]
    fn allocate_slow_split(&self, n: usize, claimed: bool) -> Result<usize, AllocError> {
        let mut err = None;
        let p = self.allocate_slow_into(n, claimed, &mut err);
        match err {
            None => Ok(p),
            Some(e) => Err(e),
        }
    }

    /// The block `allocate_slow` hands out; on error 0, and the error in `err`.
    #[inline(never)]
    fn allocate_slow_into(&self, n: usize, claimed: bool, err: &mut Option<AllocError>) -> usize {
        self.allocate_slow(n, claimed).unwrap_or_else(|e| {
            *err = Some(e);
            0
        })
    }

    /// `allocate` past the fast path, every case, refills and upstream included; with
    /// `claimed`, the block is claimed for a container (see `CheckedPool::claim`) under the
    /// same lock that hands it out.
    #[inline]
    fn allocate_slow(&self, n: usize, claimed: bool) -> Result<usize, AllocError> {
        if n == 0 {
            return Ok(0);
        }
        if n > self.params.max_bytes() {
            check_size(n)?;
            let p = self.upstream.allocate(n, self.params.align())?.as_ptr() as usize;
            self.lock_mine().insert_large(p, n, claimed);
            return Ok(p);
        }
        if let Some(p) = self.try_pop_owned_checked(n, claimed) {
            return Ok(p);
        }
        loop {
            let bytes = match self.lock_mine().allocate_small(n, claimed) {
                Ok(p) => return Ok(p),
                Err(NeedChunk { bytes }) => bytes,
            };
            // The lock is released here: the upstream may run a handler that re-enters.
            let chunk = self.upstream.allocate(bytes, self.params.align())?;
            self.lock_mine().add_chunk(chunk, bytes);
        }
    }

    /// Frees `(p, n)` in the heap that handed it out, whichever thread calls.
    #[inline(always)]
    pub fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if self.try_free(p, n, false) {
            return Ok(());
        }
        self.deallocate_checked(p, n)
    }

    /// The free fast path: a live pool block of the caller's own heap's arena, as a
    /// thread's frees mostly are. Blocks of other heaps take the slow path to their own.
    #[inline(always)]
    fn try_free(&self, p: usize, n: usize, claimed: bool) -> bool {
        if let Some(heap) = self.heaps.mine_biased() {
            return heap.enter_owned(n).is_some_and(|mut pool| {
                // SAFETY: `enter_owned(n)` is `Some` only for `1 <= n <= fast_max`.
                unsafe { pool.try_free_small_or_chunk(p, n, claimed) }
            });
        }
        self.lock_mine().try_free(p, n, claimed)
    }

    /// Every free the fast path leaves: upstream blocks, pinned pools, and errors.
    #[inline(never)]
    fn deallocate_checked(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if self.heaps.free_remote(p, n, false) {
            return Ok(());
        }
        self.lock_owner(p, n).deallocate(p, n)
    }

    /// `allocate`, the block handed to a container at once (see `CheckedPool::claim`).
    #[inline(always)]
    pub fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        match self.try_pop(n, true) {
            Some(p) => Ok(p),
            None => self.allocate_slow_split(n, true),
        }
    }

    #[inline(always)]
    pub fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if self.try_free(p, n, true) {
            return Ok(());
        }
        self.deallocate_claimed_checked(p, n)
    }

    #[inline(never)]
    fn deallocate_claimed_checked(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if p == 0 && n == 0 {
            return Ok(());
        }
        if self.heaps.free_remote(p, n, true) {
            return Ok(());
        }
        self.lock_owner(p, n).deallocate_claimed(p, n)
    }

    /// `allocate_claimed(n)` served by its fast path alone, calling nothing (no function,
    /// so no foreign code: a caller may hold a lock under which nothing may be called): a
    /// block of heap 0's arena off `n`'s free list, when heap 0 is the only heap and
    /// unlocked; `None`, changing nothing, in every other case.
    #[inline(always)]
    pub fn try_allocate_claimed(&self, n: usize) -> Option<usize> {
        self.heaps.try_lock_only()?.try_pop_in_arena(n, true)
    }

    /// `deallocate_claimed(p, n)` served by its fast path alone, calling nothing, as
    /// `try_allocate_claimed`: whether it freed the block (false changes nothing).
    #[inline(always)]
    pub fn try_deallocate_claimed(&self, p: usize, n: usize) -> bool {
        // A `match`, not `is_some_and`: its closure was left out of line, a call.
        match self.heaps.try_lock_only() {
            Some(mut pool) => pool.try_free(p, n, true),
            None => false,
        }
    }

    /// SPEC §3 `reallocate`. On error `p` is still live, unchanged, and the pool's state is
    /// as before except for what the failed allocation itself did (SGI's leftover push).
    /// The new block comes from the caller's heap, as any allocation does.
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
        let owner = {
            let mut pool = self.lock_owner(p, old);
            let kind = pool.validate(p, old)?;
            pool.check_unpinned(p)?;
            if pool.is_claimed_at(p) {
                return Err(AllocError::Claimed { addr: p });
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
            pool.begin_move(p)?;
            pool.heap()
        };
        let q = match self.allocate(new) {
            Ok(q) => q,
            Err(e) => {
                self.heaps.lock_any(owner).end_move(p);
                return Err(e);
            }
        };
        // SAFETY: `p` is live and moving (so no one frees it) with `old` bytes; `q` is a new
        // live block of `new` bytes; distinct live blocks never overlap.
        unsafe { std::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, old.min(new)) };
        let freed = {
            let mut pool = self.heaps.lock_any(owner);
            pool.end_move(p);
            pool.deallocate(p, old)
        };
        if let Err(e) = freed {
            // A view of `p` was taken meanwhile: undo the move (in `q`'s heap, maybe
            // another, so with `p`'s heap unlocked: a thread holds one heap lock at most).
            // `q` went to no caller: it can only fail to free if another thread freed it
            // by address meanwhile (a misuse), and then it is free already. Not a panic.
            let _ = self.deallocate(q, new);
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
        let owner = pool.heap();
        drop(pool);
        let ptr = NonNull::new(p as *mut u8).expect("validated blocks are not null");
        // SAFETY: `p` is a live upstream block of `old` bytes that nobody else can reach.
        let moved = unsafe { self.upstream.reallocate(ptr, old, new, self.params.align()) };
        let mut pool = self.heaps.lock_any(owner);
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
}
