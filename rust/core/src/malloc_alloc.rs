//! The first level: SGI's `__malloc_alloc_template`, a wrapper over libc `malloc`, `free`
//! and `realloc` with the out-of-memory handler loop.
//!
//! Every `MallocAlloc` is equal to every other (SPEC §8, as C++ allocator equality): memory
//! from one may be freed or resized by any. So live blocks are kept in one process-wide
//! registry, each with its owner — the allocator that made it, whose statistics and limit
//! it counts against — and its pins. The registry catches every misuse before libc sees it.
//!
//! Invariants (checked in tests), for every owner `o`:
//! - `stats[o].live_blocks == |{b : b.owner == o}|`,
//!   `stats[o].live_bytes == Σ_{b.owner == o} b.size <= limit[o]`;
//! - `stats[o].allocations - stats[o].deallocations == stats[o].live_blocks`.
//!
//! The handler runs with no lock held, so it may deallocate blocks of this very allocator.

use crate::error::{AllocError, HandlerError};
use crate::sync::lock;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
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

struct Block {
    size: usize,
    owner: u64,
    /// Views exporting the block, and pools holding it as a chunk or large block.
    pins: usize,
    /// Held by a container: only `deallocate_owned` frees it.
    claimed: bool,
    /// A pool's chunk or large block: never exposed (a view would let Python code
    /// overwrite the pool's free-list links).
    pool_held: bool,
}

struct Owner {
    stats: MallocStats,
    limit: Option<usize>,
    /// False once the allocator is dropped: its record stays while a view or a container
    /// still holds one of its blocks, and goes with the last of them.
    alive: bool,
}

struct Registry {
    blocks: BTreeMap<usize, Block>,
    owners: BTreeMap<u64, Owner>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    blocks: BTreeMap::new(),
    owners: BTreeMap::new(),
});
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    lock(&REGISTRY)
}

impl Registry {
    fn stats_mut(&mut self, owner: u64) -> &mut MallocStats {
        &mut self
            .owners
            .get_mut(&owner)
            .expect("a live allocator is registered")
            .stats
    }

    /// True if `owner` may hold `n` more bytes once `freed` are given back.
    fn within_limit(&self, owner: u64, freed: usize, n: usize) -> bool {
        let o = &self.owners[&owner];
        o.limit
            .is_none_or(|limit| o.stats.live_bytes - freed + n <= limit)
    }

    /// The live block at `p` of exactly `n` bytes with no more than `pins` pins.
    fn check(&self, p: usize, n: usize, pins: usize) -> Result<&Block, AllocError> {
        match self.blocks.get(&p) {
            Some(b) if b.size != n => Err(AllocError::SizeMismatch {
                addr: p,
                size: n,
                block_size: b.size,
            }),
            Some(b) if b.pins > pins => Err(AllocError::Pinned { addr: p }),
            Some(b) if b.claimed => Err(AllocError::Owned { addr: p }),
            Some(b) => Ok(b),
            None => Err(AllocError::NotLive { addr: p }),
        }
    }

    fn forget(&mut self, p: usize) -> Block {
        let b = self.blocks.remove(&p).expect("checked as live");
        let st = self.stats_mut(b.owner);
        st.live_blocks -= 1;
        st.live_bytes -= b.size;
        st.deallocations += 1;
        let o = &self.owners[&b.owner];
        if !o.alive && o.stats.live_blocks == 0 {
            self.owners.remove(&b.owner);
        }
        b
    }

    /// Frees the block at `p`, whose owner is gone, once nothing holds it any more.
    fn reap_orphan(&mut self, p: usize) {
        let Some(b) = self.blocks.get(&p) else { return };
        if b.pins > 0 || b.claimed || self.owners[&b.owner].alive {
            return;
        }
        self.forget(p);
        // SAFETY: a live malloc block whose allocator is gone and that no view, pool or
        // container holds any more: forgotten above, so freed exactly once.
        unsafe { libc::free(p as *mut libc::c_void) };
    }
}

pub struct MallocAlloc {
    id: u64,
    limit: Option<usize>,
    handler: Mutex<Option<Arc<dyn OomHandler>>>,
}

/// Rejects sizes no allocation can have before any libc call sees them.
pub(crate) fn check_size(size: usize) -> Result<(), AllocError> {
    if size > isize::MAX as usize - 4096 {
        Err(AllocError::TooLarge { size })
    } else {
        Ok(())
    }
}

/// `malloc`, or `posix_memalign` above malloc's alignment; `None` when it fails.
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
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        registry().owners.insert(
            id,
            Owner {
                stats: MallocStats::default(),
                limit,
                alive: true,
            },
        );
        Self {
            id,
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
    /// it (no lock held) and try again.
    fn oom_loop<T>(
        &self,
        size: usize,
        mut attempt: impl FnMut(&mut Registry) -> Result<Option<T>, AllocError>,
    ) -> Result<T, AllocError> {
        loop {
            {
                let mut reg = registry();
                if let Some(v) = attempt(&mut reg)? {
                    return Ok(v);
                }
                reg.stats_mut(self.id).failures += 1;
            }
            let handler = lock(&self.handler).clone();
            let Some(handler) = handler else {
                return Err(AllocError::OutOfMemory { size });
            };
            registry().stats_mut(self.id).handler_calls += 1;
            handler.on_oom().map_err(AllocError::Handler)?;
        }
    }

    /// `malloc(n)`, aligned to 16; 0 bytes give the null address 0.
    pub fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        self.allocate_aligned(n, MALLOC_ALIGN)
    }

    /// Like `allocate`, aligned to `align` (a power of two, at least 8).
    pub fn allocate_aligned(&self, n: usize, align: usize) -> Result<usize, AllocError> {
        self.allocate_pinned(n, align, 0)
    }

    /// Allocates a block that starts with `pins` pins (a pool holding it).
    fn allocate_pinned(&self, n: usize, align: usize, pins: usize) -> Result<usize, AllocError> {
        if n == 0 {
            return Ok(0);
        }
        check_size(n)?;
        self.oom_loop(n, |reg| {
            if !reg.within_limit(self.id, 0, n) {
                return Ok(None);
            }
            let Some(p) = raw_malloc(n, align) else {
                return Ok(None);
            };
            let p = p.as_ptr() as usize;
            reg.blocks.insert(
                p,
                Block {
                    size: n,
                    owner: self.id,
                    pins,
                    claimed: false,
                    pool_held: pins > 0,
                },
            );
            let st = reg.stats_mut(self.id);
            st.live_blocks += 1;
            st.live_bytes += n;
            st.allocations += 1;
            Ok(Some(p))
        })
    }

    /// `free(p)` for a live block of exactly `n` bytes, made by any `MallocAlloc`.
    /// `(0, 0)` does nothing.
    pub fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        self.deallocate_pinned(p, n, 0)
    }

    fn deallocate_pinned(&self, p: usize, n: usize, pins: usize) -> Result<(), AllocError> {
        if p == 0 && n == 0 {
            return Ok(());
        }
        let mut reg = registry();
        reg.check(p, n, pins)?;
        reg.forget(p);
        // SAFETY: `p` is a live block that malloc (or posix_memalign) returned, checked
        // above, and it is now forgotten, so it is freed exactly once.
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
            return self.allocate_pinned(new, MALLOC_ALIGN, pins);
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
            let block = reg.blocks.remove(&p).expect("checked as live");
            reg.blocks.insert(q, Block { size: new, ..block });
            let st = reg.stats_mut(owner);
            st.live_bytes = st.live_bytes - old + new;
            Ok(Some(q))
        })
    }

    /// `(start, size)` of the live malloc block containing `addr`.
    pub fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        let reg = registry();
        let (&start, b) = reg.blocks.range(..=addr).next_back()?;
        (addr < start + b.size).then_some((start, b.size))
    }

    /// Marks the live block at `start` as in use (exported by a view, or held by a pool):
    /// it may not be freed or moved until every pin is removed.
    pub fn pin(&self, start: usize) -> Result<(), AllocError> {
        Self::pin_in(&mut registry(), start)
    }

    /// Pins the live block holding all of `[addr, addr+len)`, under one lock.
    pub fn pin_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
        let mut reg = registry();
        let found = reg
            .blocks
            .range(..=addr)
            .next_back()
            .map(|(&start, b)| (start, b.size))
            .filter(|&(start, size)| addr < start + size);
        let (start, size) = crate::block_allocator::spanning(found, addr, len)?;
        Self::pin_in(&mut reg, start)?;
        Ok((start, size))
    }

    fn pin_in(reg: &mut Registry, start: usize) -> Result<(), AllocError> {
        match reg.blocks.get_mut(&start) {
            Some(b) if b.claimed || b.pool_held => Err(AllocError::Owned { addr: start }),
            Some(b) => {
                b.pins += 1;
                Ok(())
            }
            None => Err(AllocError::NotLive { addr: start }),
        }
    }

    /// Hands the live block at `start` to a container: `deallocate`, `reallocate` and
    /// `pin` refuse it until `deallocate_owned` frees it (or `unclaim`).
    pub fn claim(&self, start: usize) -> Result<(), AllocError> {
        match registry().blocks.get_mut(&start) {
            Some(b) if b.pins > 0 => Err(AllocError::Pinned { addr: start }),
            Some(b) if b.claimed => Err(AllocError::Owned { addr: start }),
            Some(b) => {
                b.claimed = true;
                Ok(())
            }
            None => Err(AllocError::NotLive { addr: start }),
        }
    }

    pub fn unclaim(&self, start: usize) {
        if let Some(b) = registry().blocks.get_mut(&start) {
            b.claimed = false;
        }
    }

    /// Frees a block a container holds.
    pub fn deallocate_owned(&self, p: usize, n: usize) -> Result<(), AllocError> {
        let mut reg = registry();
        match reg.blocks.get(&p) {
            Some(b) if b.claimed && b.size == n && b.pins == 0 => {}
            _ => return Err(AllocError::NotLive { addr: p }),
        }
        reg.forget(p);
        // SAFETY: `p` is a live malloc block (checked under this lock), now forgotten, so
        // it is freed exactly once.
        unsafe { libc::free(p as *mut libc::c_void) };
        Ok(())
    }

    pub fn unpin(&self, start: usize) {
        let mut reg = registry();
        if let Some(b) = reg.blocks.get_mut(&start) {
            b.pins = b.pins.saturating_sub(1);
            reg.reap_orphan(start);
        }
    }

    pub fn stats(&self) -> MallocStats {
        registry().owners[&self.id].stats
    }

    // Pools hold their upstream blocks pinned, so a user cannot free them through the
    // MallocAllocator (every MallocAllocator is equal) while the pool still uses them.

    pub(crate) fn allocate_for_pool(&self, n: usize, align: usize) -> Result<usize, AllocError> {
        self.allocate_pinned(n, align, 1)
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
        let mine: Vec<&Block> = reg.blocks.values().filter(|b| b.owner == self.id).collect();
        let st = reg.owners[&self.id].stats;
        assert_eq!(st.live_blocks, mine.len());
        assert_eq!(st.live_bytes, mine.iter().map(|b| b.size).sum::<usize>());
        assert_eq!(st.allocations - st.deallocations, mine.len() as u64);
        assert!(self.limit.is_none_or(|l| st.live_bytes <= l));
    }
}

impl Drop for MallocAlloc {
    fn drop(&mut self) {
        let mut reg = registry();
        reg.owners.get_mut(&self.id).expect("registered").alive = false;
        // A block a container holds (spliced there from an equal allocator) or a view
        // exports stays live, counted by this owner's record, until it is let go.
        let mine: Vec<usize> = reg
            .blocks
            .iter()
            .filter(|(_, b)| b.owner == self.id)
            .map(|(&p, _)| p)
            .collect();
        for p in mine {
            reg.reap_orphan(p);
        }
        if reg
            .owners
            .get(&self.id)
            .is_some_and(|o| o.stats.live_blocks == 0)
        {
            reg.owners.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_allocator::BlockAllocator;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn tracks_and_rejects_misuse_without_change() {
        let m = MallocAlloc::new(None);
        let p = m.allocate(24).unwrap();
        assert_eq!(m.allocate(0).unwrap(), 0);
        let before = m.stats();
        assert!(matches!(
            m.deallocate(p, 25),
            Err(AllocError::SizeMismatch { block_size: 24, .. })
        ));
        assert!(matches!(
            m.deallocate(p + 8, 24),
            Err(AllocError::NotLive { .. })
        ));
        assert!(matches!(
            m.reallocate(p, 23, 100),
            Err(AllocError::SizeMismatch { .. })
        ));
        assert_eq!(m.stats(), before);
        assert!(m.owns(p + 23) && !m.owns(p + 24));
        m.pin(p).unwrap();
        assert!(matches!(
            m.deallocate(p, 24),
            Err(AllocError::Pinned { .. })
        ));
        m.unpin(p);
        let q = m.reallocate(p, 24, 4000).unwrap();
        m.check_invariants();
        m.deallocate(q, 4000).unwrap();
        assert!(matches!(
            m.deallocate(q, 4000),
            Err(AllocError::NotLive { .. })
        ));
        m.deallocate(0, 0).unwrap();
        let s = m.stats();
        assert_eq!(
            (s.live_blocks, s.live_bytes, s.allocations, s.deallocations),
            (0, 0, 1, 1)
        );
        m.check_invariants();
    }

    #[test]
    fn every_malloc_alloc_frees_what_another_allocated() {
        let (a, b) = (MallocAlloc::new(Some(64)), MallocAlloc::new(None));
        let p = a.allocate(40).unwrap();
        assert!(b.owns(p));
        let q = b.reallocate(p, 40, 48).unwrap();
        assert_eq!(a.stats().live_bytes, 48, "the block stays with its owner");
        assert!(
            matches!(b.reallocate(q, 48, 65), Err(AllocError::OutOfMemory { .. })),
            "a's limit"
        );
        b.deallocate(q, 48).unwrap();
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(
            (sa.live_blocks, sa.deallocations, sb.allocations),
            (0, 1, 0)
        );
        a.check_invariants();
        b.check_invariants();
    }

    #[test]
    fn a_dropped_allocator_keeps_what_a_view_still_exports() {
        let a = MallocAlloc::new(None);
        let b = MallocAlloc::new(None);
        let p = a.allocate(64).unwrap();
        let q = a.allocate(64).unwrap();
        b.pin(p).unwrap();
        drop(a);
        assert_eq!(b.block_containing(p), Some((p, 64)), "kept for the view");
        assert_eq!(b.block_containing(q), None, "the rest is freed");
        b.unpin(p);
        assert_eq!(b.block_containing(p), None, "freed with the last pin");
    }

    #[test]
    fn pool_blocks_cannot_be_freed_or_viewed_by_users() {
        let m = MallocAlloc::new(None);
        let p = m.allocate_for_pool(64, 8).unwrap();
        assert!(matches!(
            m.deallocate(p, 64),
            Err(AllocError::Pinned { .. })
        ));
        assert!(matches!(m.pin(p), Err(AllocError::Owned { .. })));
        m.deallocate_for_pool(p, 64).unwrap();
        m.check_invariants();
    }

    #[test]
    fn a_dropped_allocator_leaves_the_blocks_a_container_claimed() {
        let (a, b) = (MallocAlloc::new(None), MallocAlloc::new(None));
        let kept = a.allocate_owned(24).unwrap();
        a.allocate(8).unwrap();
        drop(a);
        // As after a splice: the container of an equal allocator holds `kept`.
        assert_eq!(b.block_containing(kept), Some((kept, 24)));
        b.deallocate_owned(kept, 24).unwrap();
        assert!(b.block_containing(kept).is_none());
    }

    #[test]
    fn limit_makes_malloc_fail_and_absurd_sizes_are_refused() {
        let m = MallocAlloc::new(Some(100));
        let p = m.allocate(60).unwrap();
        assert!(matches!(
            m.allocate(41),
            Err(AllocError::OutOfMemory { size: 41 })
        ));
        assert!(matches!(
            m.reallocate(p, 60, 101),
            Err(AllocError::OutOfMemory { .. })
        ));
        assert!(matches!(
            m.allocate(usize::MAX),
            Err(AllocError::TooLarge { .. })
        ));
        assert_eq!(m.stats().failures, 2);
        m.deallocate(p, 60).unwrap();
        m.check_invariants();
    }

    struct FreeOne {
        alloc: std::sync::Weak<MallocAlloc>,
        victims: Mutex<Vec<(usize, usize)>>,
        calls: AtomicUsize,
    }

    impl OomHandler for FreeOne {
        fn on_oom(&self) -> Result<(), HandlerError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            match lock(&self.victims).pop() {
                Some((p, n)) => {
                    // Re-entrant: the handler frees a block of the allocator that called it.
                    self.alloc.upgrade().unwrap().deallocate(p, n).unwrap();
                    Ok(())
                }
                None => Err(HandlerError(Box::new("nothing left to free"))),
            }
        }
    }

    #[test]
    fn handler_loop_frees_reentrantly_then_fails_with_its_error() {
        let m = Arc::new(MallocAlloc::new(Some(100)));
        let a = m.allocate(40).unwrap();
        let b = m.allocate(40).unwrap();
        let handler = Arc::new(FreeOne {
            alloc: Arc::downgrade(&m),
            victims: Mutex::new(vec![(a, 40), (b, 40)]),
            calls: AtomicUsize::new(0),
        });
        assert!(m.set_malloc_handler(Some(handler.clone())).is_none());
        // 90 bytes need both blocks freed: two handler calls, then success.
        let c = m.allocate(90).unwrap();
        assert_eq!(handler.calls.load(Ordering::Relaxed), 2);
        assert_eq!(m.stats().handler_calls, 2);
        // Nothing left to free: the handler's error comes back, nothing leaks.
        match m.allocate(20) {
            Err(AllocError::Handler(e)) => {
                assert_eq!(*e.0.downcast::<&str>().unwrap(), "nothing left to free")
            }
            other => panic!("{other:?}"),
        }
        assert!(m.set_malloc_handler(None).is_some());
        m.deallocate(c, 90).unwrap();
        m.check_invariants();
        assert_eq!(m.stats().live_bytes, 0);
    }
}
