//! The first level: SGI's `__malloc_alloc_template`, a wrapper over libc `malloc`, `free`
//! and `realloc` with the out-of-memory handler loop.
//!
//! `MallocAlloc` also keeps the set of live blocks, so every misuse is caught before libc
//! sees it, and an optional byte limit that makes failure testable for real.
//!
//! Invariants (checked in tests):
//! - `stats.live_blocks == |live|`, `stats.live_bytes == Σ live sizes <= limit`;
//! - `stats.allocations - stats.deallocations == stats.live_blocks`;
//! - every pinned block is live.
//!
//! The handler runs with no lock held, so it may deallocate blocks of this very allocator.

use crate::error::{AllocError, HandlerError};
use crate::sync::lock;
use std::collections::{BTreeMap, HashMap};
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

#[derive(Default)]
struct State {
    live: BTreeMap<usize, usize>,
    pins: HashMap<usize, usize>,
    stats: MallocStats,
}

pub struct MallocAlloc {
    limit: Option<usize>,
    state: Mutex<State>,
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

fn raw_malloc(n: usize, align: usize) -> Option<NonNull<u8>> {
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
            limit,
            state: Mutex::default(),
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
        mut attempt: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T, AllocError> {
        loop {
            {
                let mut st = lock(&self.state);
                if let Some(v) = attempt(&mut st) {
                    return Ok(v);
                }
                st.stats.failures += 1;
            }
            let handler = lock(&self.handler).clone();
            let Some(handler) = handler else {
                return Err(AllocError::OutOfMemory { size });
            };
            lock(&self.state).stats.handler_calls += 1;
            handler.on_oom().map_err(AllocError::Handler)?;
        }
    }

    fn within_limit(&self, st: &State, freed: usize, n: usize) -> bool {
        self.limit
            .is_none_or(|limit| st.stats.live_bytes - freed + n <= limit)
    }

    /// `malloc(n)`, aligned to 16; 0 bytes give the null address 0.
    pub fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        self.allocate_aligned(n, MALLOC_ALIGN)
    }

    /// Like `allocate`, aligned to `align` (a power of two, at least 8).
    pub fn allocate_aligned(&self, n: usize, align: usize) -> Result<usize, AllocError> {
        if n == 0 {
            return Ok(0);
        }
        check_size(n)?;
        self.oom_loop(n, |st| {
            if !self.within_limit(st, 0, n) {
                return None;
            }
            let p = raw_malloc(n, align)?.as_ptr() as usize;
            st.live.insert(p, n);
            st.stats.live_blocks += 1;
            st.stats.live_bytes += n;
            st.stats.allocations += 1;
            Some(p)
        })
    }

    /// The size of the live block at `p`, or the reason there is none.
    fn live_size(st: &State, p: usize, n: usize) -> Result<usize, AllocError> {
        match st.live.get(&p) {
            Some(&size) if size == n => Ok(size),
            Some(&size) => Err(AllocError::SizeMismatch {
                addr: p,
                size: n,
                block_size: size,
            }),
            None => Err(AllocError::NotLive { addr: p }),
        }
    }

    fn check_unpinned(st: &State, p: usize) -> Result<(), AllocError> {
        if st.pins.contains_key(&p) {
            Err(AllocError::Pinned { addr: p })
        } else {
            Ok(())
        }
    }

    /// `free(p)` for a live block of exactly `n` bytes. `(0, 0)` does nothing.
    pub fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if p == 0 && n == 0 {
            return Ok(());
        }
        let mut st = lock(&self.state);
        Self::live_size(&st, p, n)?;
        Self::check_unpinned(&st, p)?;
        st.live.remove(&p);
        st.stats.live_blocks -= 1;
        st.stats.live_bytes -= n;
        st.stats.deallocations += 1;
        // SAFETY: `p` is a live block that malloc (or posix_memalign) returned, checked
        // above, and it is now forgotten, so it is freed exactly once.
        unsafe { libc::free(p as *mut libc::c_void) };
        Ok(())
    }

    /// `realloc(p, new)` for a live block of `old` bytes, with the OOM loop. `new == 0`
    /// frees; `p == 0` with `old == 0` allocates. On failure `p` stays live and unchanged.
    pub fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        if p == 0 && old == 0 {
            return self.allocate(new);
        }
        if new == 0 {
            self.deallocate(p, old)?;
            return Ok(0);
        }
        check_size(new)?;
        {
            let st = lock(&self.state);
            Self::live_size(&st, p, old)?;
            Self::check_unpinned(&st, p)?;
        }
        self.oom_loop(new, |st| {
            // Re-validated: the handler may have run and freed this very block.
            Self::live_size(st, p, old).ok()?;
            if !self.within_limit(st, old, new) {
                return None;
            }
            // SAFETY: `p` is live with `old` bytes (checked under this lock), so realloc
            // may move or resize it; on null it leaves `p` untouched.
            let q = NonNull::new(unsafe { libc::realloc(p as *mut libc::c_void, new) })?;
            let q = q.as_ptr() as usize;
            st.live.remove(&p);
            st.live.insert(q, new);
            st.stats.live_bytes = st.stats.live_bytes - old + new;
            Some(q)
        })
    }

    /// `(start, size)` of the live block containing `addr`.
    pub fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        let st = lock(&self.state);
        let (&start, &size) = st.live.range(..=addr).next_back()?;
        (addr < start + size).then_some((start, size))
    }

    /// Marks the live block at `start` as exported: it may not be freed or moved until
    /// every pin is removed.
    pub fn pin(&self, start: usize) -> Result<(), AllocError> {
        let mut st = lock(&self.state);
        if !st.live.contains_key(&start) {
            return Err(AllocError::NotLive { addr: start });
        }
        *st.pins.entry(start).or_default() += 1;
        Ok(())
    }

    pub fn unpin(&self, start: usize) {
        let mut st = lock(&self.state);
        if let Some(n) = st.pins.get_mut(&start) {
            *n -= 1;
            if *n == 0 {
                st.pins.remove(&start);
            }
        }
    }

    pub fn stats(&self) -> MallocStats {
        lock(&self.state).stats
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let st = lock(&self.state);
        assert_eq!(st.stats.live_blocks, st.live.len());
        assert_eq!(st.stats.live_bytes, st.live.values().sum::<usize>());
        assert_eq!(
            st.stats.allocations - st.stats.deallocations,
            st.live.len() as u64
        );
        assert!(self.limit.is_none_or(|l| st.stats.live_bytes <= l));
        assert!(st.pins.keys().all(|p| st.live.contains_key(p)));
    }
}

impl Drop for MallocAlloc {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for &p in st.live.keys() {
            // SAFETY: every live block came from malloc and is freed once, here, as the
            // allocator that owns it goes away.
            unsafe { libc::free(p as *mut libc::c_void) };
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
