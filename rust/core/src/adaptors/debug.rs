//! Debug mode, as SGI's `debug_alloc` and beyond: every block carries a size cookie in a
//! header of `align` bytes before the user's bytes, and a freed block's user bytes are
//! filled with `FREED`, checked when the block is handed out again.
//!
//! Layout of a debug block of `n` bytes at user address `q`:
//!   `[q - align, q - align + 8)` the cookie `n` while live (the free-list link while free),
//!   `[q, q + n)` the user's bytes; a pool block of `round_up(n + align)` bytes in all.
//! New chunks are filled with `FREED` too, so a block never handed out checks clean.
//!
//! Every fault is an error naming the block, and leaves the pool as it was: a block found
//! written after free is refilled and pushed back where it was (LIFO), and the caller gets
//! the error instead of the block.

use crate::block_allocator::BlockAllocator;
use crate::checked::CheckedPool;
use crate::error::AllocError;
use crate::raw_lock::{RawLock, SpinLock};
use crate::sgi::upstream::Upstream;
use crate::shared::heaps::PoolGuard;
use crate::shared::SharedPool;
use std::sync::Arc;

/// The byte freed user memory is filled with.
pub const FREED: u8 = 0xdd;

pub struct DebugPool<U: Upstream + Clone + Send + Sync, L: RawLock = SpinLock> {
    pool: Arc<SharedPool<U, L>>,
}

impl<U: Upstream + Clone + Send + Sync, L: RawLock> DebugPool<U, L> {
    pub fn new(pool: Arc<SharedPool<U, L>>) -> Self {
        pool.set_chunk_fill(Some(FREED));
        Self { pool }
    }

    pub fn pool(&self) -> &SharedPool<U, L> {
        &self.pool
    }

    fn header(&self) -> usize {
        self.pool.params().align()
    }

    /// Size of the pool block behind a user block of `n` bytes.
    fn inner_size(&self, n: usize) -> Result<usize, AllocError> {
        n.checked_add(self.header())
            .ok_or(AllocError::TooLarge { size: n })
    }

    /// The first byte of `[p, p + len)` that is not `FREED`.
    fn first_dirty(p: usize, len: usize) -> Option<usize> {
        // SAFETY: callers pass the user bytes of a live pool block, readable memory of ours.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
        bytes.iter().position(|&b| b != FREED)
    }

    fn fill_freed(p: usize, len: usize) {
        // SAFETY: callers pass the user bytes of a block of ours nobody uses any more.
        unsafe { std::ptr::write_bytes(p as *mut u8, FREED, len) };
    }

    /// The user bytes of the pool block at `p` of `inner` bytes, if it is a pool block.
    fn pool_user_bytes(&self, inner: usize) -> Option<usize> {
        (inner <= self.pool.params().max_bytes())
            .then(|| self.pool.params().round_up(inner) - self.header())
    }

    /// Checks the cookie of the live user block `q` against `n`, under the pool's lock;
    /// returns its pool block.
    fn check_cookie(&self, pool: &CheckedPool<U>, q: usize, n: usize) -> Result<usize, AllocError> {
        let p = q
            .checked_sub(self.header())
            .ok_or(AllocError::Foreign { addr: q })?;
        let inner = self.inner_size(n)?;
        pool.validate(p, inner).map_err(|e| match e {
            AllocError::SizeMismatch { .. } => Self::cookie_error(pool, p, q, n),
            other => self.user_error(other, q),
        })?;
        // SAFETY: `p` is a live block of ours of at least `header >= 8` bytes, aligned.
        let cookie = unsafe { (p as *const usize).read() };
        if cookie != n {
            return Err(AllocError::BadCookie {
                addr: q,
                size: n,
                cookie,
            });
        }
        Ok(p)
    }

    /// A pool block's error `e` for the user block `q`, in the user's addresses.
    fn user_error(&self, e: AllocError, q: usize) -> AllocError {
        let header = self.header();
        match e {
            AllocError::NotLive { .. } => AllocError::NotLive { addr: q },
            AllocError::Misaligned { align, .. } => AllocError::Misaligned { addr: q, align },
            AllocError::Foreign { .. } => AllocError::Foreign { addr: q },
            AllocError::Moving { .. } => AllocError::Moving { addr: q },
            AllocError::Pinned { .. } => AllocError::Pinned { addr: q },
            AllocError::Claimed { .. } => AllocError::Claimed { addr: q },
            AllocError::Interior { start, size, .. } => AllocError::Interior {
                addr: q,
                start: start + header,
                size: size - header,
            },
            other => other,
        }
    }

    fn cookie_error(pool: &CheckedPool<U>, p: usize, q: usize, n: usize) -> AllocError {
        match pool.block_containing(p) {
            Some((start, _)) if start == p => {
                // SAFETY: `p` starts a live block of ours; its first word is the cookie.
                let cookie = unsafe { (p as *const usize).read() };
                AllocError::BadCookie {
                    addr: q,
                    size: n,
                    cookie,
                }
            }
            _ => AllocError::NotLive { addr: q },
        }
    }

    /// The heap of the pool block behind the user block `(q, n)` (`inner` bytes), locked.
    fn heap_of(&self, q: usize, inner: usize) -> PoolGuard<'_, U, L> {
        self.pool.lock_owner(q.saturating_sub(self.header()), inner)
    }

    /// Checks `(q, n)` as a block free to be freed or moved by its caller (not exported,
    /// held by a container only if `claimed`); returns its pool block.
    fn check_free(
        &self,
        pool: &CheckedPool<U>,
        q: usize,
        n: usize,
        claimed: bool,
    ) -> Result<usize, AllocError> {
        let p = self.check_cookie(pool, q, n)?;
        pool.check_unpinned(p).map_err(|e| self.user_error(e, q))?;
        match (pool.is_claimed_at(p), claimed) {
            (true, false) => Err(AllocError::Claimed { addr: q }),
            (false, true) => Err(AllocError::NotLive { addr: q }),
            _ => Ok(p),
        }
    }

    /// Checks, fills and frees under one lock, so two threads freeing one block cannot
    /// both pass the check.
    fn free(&self, q: usize, n: usize, claimed: bool) -> Result<(), AllocError> {
        let inner = self.inner_size(n)?;
        let mut pool = self.heap_of(q, inner);
        let p = self.check_free(&pool, q, n, claimed)?;
        if let Some(user) = self.pool_user_bytes(inner) {
            Self::fill_freed(q, user);
        }
        if claimed {
            pool.deallocate_claimed(p, inner)
        } else {
            pool.deallocate(p, inner)
        }
    }
}

// SAFETY: forwards to the checked pool, whose blocks keep the promises, offset by the
// header; claims and pins are those of the pool blocks.
unsafe impl<U: Upstream + Clone + Send + Sync, L: RawLock> BlockAllocator for DebugPool<U, L> {
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        if n == 0 {
            return Ok(0);
        }
        let inner = self.inner_size(n)?;
        let p = self.pool.allocate(inner)?;
        let q = p + self.header();
        if let Some(user) = self.pool_user_bytes(inner) {
            if let Some(offset) = Self::first_dirty(q, user) {
                Self::fill_freed(q, user);
                self.pool
                    .deallocate(p, inner)
                    .expect("the block was just allocated");
                return Err(AllocError::WriteAfterFree { addr: q, offset });
            }
        }
        // SAFETY: `p` is a new live block of at least `header >= 8` bytes, aligned.
        unsafe { (p as *mut usize).write(n) };
        Ok(q)
    }

    fn deallocate(&self, q: usize, n: usize) -> Result<(), AllocError> {
        if q == 0 && n == 0 {
            return Ok(());
        }
        self.free(q, n, false)
    }

    fn deallocate_claimed(&self, q: usize, n: usize) -> Result<(), AllocError> {
        self.free(q, n, true)
    }

    fn claim(&self, start: usize) -> Result<(), AllocError> {
        let p = start - self.header().min(start);
        self.pool
            .lock_holding(p)
            .claim(p)
            .map_err(|e| self.user_error(e, start))
    }

    fn unclaim(&self, start: usize) {
        let p = start - self.header().min(start);
        self.pool.lock_holding(p).unclaim(p)
    }

    fn reallocate(&self, q: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        if q == 0 && old == 0 {
            return self.allocate(new);
        }
        if new == 0 {
            self.deallocate(q, old)?;
            return Ok(0);
        }
        let (p, owner) = {
            let mut pool = self.heap_of(q, self.inner_size(old)?);
            let p = self.check_free(&pool, q, old, false)?;
            // Nobody may free or export `q` while it is copied out with no lock held.
            pool.begin_move(p).map_err(|e| self.user_error(e, q))?;
            (p, pool.heap())
        };
        // Always move, so a stale pointer to the old block is caught by the fill.
        let r = match self.allocate(new) {
            Ok(r) => r,
            Err(e) => {
                owner.lock().end_move(p);
                return Err(e);
            }
        };
        // SAFETY: `q` has `old` live bytes (pinned), `r` has `new`; distinct live blocks.
        unsafe { std::ptr::copy_nonoverlapping(q as *const u8, r as *mut u8, old.min(new)) };
        owner.lock().end_move(p);
        if let Err(e) = self.deallocate(q, old) {
            // The old block was exported meanwhile (a handler took a view): undo the move.
            self.deallocate(r, new)
                .expect("r is a live block just allocated");
            return Err(e);
        }
        Ok(r)
    }

    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        let (start, size) = self.pool.lock_holding(addr).block_containing(addr)?;
        let user = start + self.header();
        (addr >= user).then(|| (user, size - self.header()))
    }

    fn pin(&self, start: usize) -> Result<(), AllocError> {
        let p = start - self.header().min(start);
        self.pool
            .lock_holding(p)
            .pin(p)
            .map_err(|e| self.user_error(e, start))
    }

    fn unpin(&self, start: usize) {
        let p = start - self.header().min(start);
        self.pool.lock_holding(p).unpin(p)
    }

    fn alignment(&self) -> usize {
        self.pool.params().align()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sgi::first_level::MallocAlloc;
    use crate::sgi::params::Params;

    fn debug_pool() -> DebugPool<Arc<MallocAlloc>> {
        let upstream = Arc::new(MallocAlloc::new(None));
        DebugPool::new(Arc::new(
            SharedPool::new(Params::default(), 1 << 16, upstream).unwrap(),
        ))
    }

    #[test]
    fn across_heaps_blocks_free_into_their_own_and_stale_writes_show() {
        let upstream = Arc::new(MallocAlloc::new(None));
        let pool = SharedPool::<_, SpinLock>::with_heaps(Params::default(), 1 << 16, upstream, 4);
        let d = DebugPool::new(Arc::new(pool.unwrap()));
        d.allocate(8).unwrap(); // the main thread holds heap 0
        let theirs = std::thread::scope(|s| s.spawn(|| d.allocate(40).unwrap()).join().unwrap());
        assert_eq!(d.pool().heap_count(), 2);
        // Freed from this thread into heap 1, filled; a stale write is caught when heap 1
        // hands the block out again, to the next thread that takes heap 1.
        d.deallocate(theirs, 40).unwrap();
        // SAFETY: the block's memory is still the pool's, mapped and writable (freed, not
        // returned to the system): the write a buggy caller would make after the free.
        unsafe { (theirs as *mut u8).write(1) };
        let again = std::thread::scope(|s| s.spawn(|| d.allocate(40)).join().unwrap());
        assert!(matches!(again, Err(AllocError::WriteAfterFree { .. })));
        d.pool().check_invariants();
    }

    #[test]
    fn cookie_catches_a_wrong_size_even_within_the_class() {
        let d = debug_pool();
        let q = d.allocate(20).unwrap();
        let before = d.pool().stats();
        assert!(matches!(
            d.deallocate(q, 17),
            Err(AllocError::BadCookie {
                size: 17,
                cookie: 20,
                ..
            })
        ));
        assert_eq!(d.pool().stats(), before);
        d.deallocate(q, 20).unwrap();
        assert!(matches!(
            d.deallocate(q, 20),
            Err(AllocError::NotLive { .. })
        ));
    }

    #[test]
    fn write_after_free_is_reported_and_the_pool_is_left_as_it_was() {
        let d = debug_pool();
        let q = d.allocate(24).unwrap();
        d.deallocate(q, 24).unwrap();
        // SAFETY: the block is free pool memory of ours; this is the bug being detected.
        unsafe { ((q + 5) as *mut u8).write(42) };
        let before = (d.pool().stats(), d.pool().free_list(3));
        match d.allocate(24) {
            Err(AllocError::WriteAfterFree { addr, offset }) => assert_eq!((addr, offset), (q, 5)),
            other => panic!("{other:?}"),
        }
        assert_eq!((d.pool().stats(), d.pool().free_list(3)), before);
        assert_eq!(
            d.allocate(24).unwrap(),
            q,
            "the refilled block is clean again"
        );
        d.pool().check_invariants();
    }

    #[test]
    fn a_size_of_another_class_is_a_cookie_error_not_a_second_lock() {
        let d = debug_pool();
        let q = d.allocate(1).unwrap();
        assert!(matches!(
            d.deallocate(q, 101),
            Err(AllocError::BadCookie { cookie: 1, .. })
        ));
        assert!(d.deallocate(q, 0).is_err());
        d.deallocate(q, 1).unwrap();
    }

    #[test]
    fn fresh_blocks_check_clean_and_large_blocks_keep_cookies() {
        let d = debug_pool();
        let blocks: Vec<usize> = (1..=200).map(|n| d.allocate(n).unwrap()).collect();
        for (n, &q) in (1..=200).zip(&blocks) {
            assert_eq!(q % 8, 0);
            assert_eq!(
                d.block_containing(q),
                Some((q, d.block_containing(q).unwrap().1))
            );
            d.deallocate(q, n).unwrap();
        }
        d.pool().check_invariants();
    }
}
