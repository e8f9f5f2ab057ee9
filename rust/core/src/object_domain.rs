//! The SGI pool as an interpreter's object allocator: C's `malloc`/`calloc`/`realloc`/
//! `free` without sizes (CPython's `PYMEM_DOMAIN_OBJ`), routed between an unchecked SGI
//! [`Pool`] and the allocator it wraps.
//!
//! Routing:
//! - an allocation of `n <= max_bytes` bytes (0 counts as 1, as pymalloc makes 0 a unique
//!   block) pops a block of `round_up(n)` bytes from the pool; larger ones, and every one
//!   while the domain is inactive or the pool's arena is exhausted, go to the wrapped
//!   allocator;
//! - a free or realloc finds its block by address: inside the arena's reservation the
//!   class map gives the block's size (so its class); outside it the block is the wrapped
//!   allocator's (made before the switch, or too large), and goes back there.
//!
//! Pool chunks come only from the arena (`ArenaOnly` refuses the pool's upstream
//! requests): every pool block then lies in one address range, so one range check routes
//! a free, and a pool that runs out of arena hands the request to the wrapped allocator
//! instead of carving chunks that the range check could not tell from its blocks.
//!
//! Invariants (checked by `check_invariants` in tests):
//! - the live pool blocks are exactly the blocks the class map holds:
//!   `live_blocks == |map|`, `live_bytes == Σ_map size`;
//! - per class, `|free_list[i]| == blocks[i] − |{live blocks of class i}|`;
//! - the pool's accounting (SPEC §3): `heap_size == live_bytes + Σ_i |free_list[i]|·(i+1)·align
//!   + chunk_bytes_left`;
//! - every call is counted once, by the side that served it:
//!   `calls == Σ pool.* + Σ wrapped.*`.

use crate::checked::class_map::ClassMap;
use crate::error::AllocError;
use crate::os::syscalls::SyscallCounts;
use crate::sgi::params::Params;
use crate::sgi::pool::Pool;
use crate::sgi::upstream::Upstream;
use std::ptr::{self, NonNull};

/// The allocator a domain wraps: C's four calls, without sizes.
///
/// # Safety
/// Implementations behave as C's: `malloc`/`calloc` return null or a fresh block of at
/// least the asked size, `realloc` keeps the contents up to the smaller size, `free` and
/// `realloc` accept null and any live block of their own.
pub unsafe trait Wrapped {
    fn malloc(&self, n: usize) -> *mut u8;
    fn calloc(&self, nelem: usize, elsize: usize) -> *mut u8;
    /// # Safety
    /// `p` is null or a live block of this allocator.
    unsafe fn realloc(&self, p: *mut u8, n: usize) -> *mut u8;
    /// # Safety
    /// `p` is null or a live block of this allocator.
    unsafe fn free(&self, p: *mut u8);
}

/// The pool's upstream: none. A chunk the arena cannot give is refused, and the domain
/// sends the request to the wrapped allocator.
struct ArenaOnly;

// SAFETY: it returns no block at all.
unsafe impl Upstream for ArenaOnly {
    fn allocate(&self, n: usize, _align: usize) -> Result<NonNull<u8>, AllocError> {
        Err(AllocError::OutOfMemory { size: n })
    }

    unsafe fn deallocate(&self, _p: NonNull<u8>, _n: usize) {
        // Never called: `allocate` gives no block to give back.
    }
}

/// Calls of one side, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub malloc: u64,
    pub calloc: u64,
    pub realloc: u64,
    pub free: u64,
}

impl Calls {
    pub fn total(&self) -> u64 {
        self.malloc + self.calloc + self.realloc + self.free
    }
}

/// A snapshot of a domain's state, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainStats {
    pub active: bool,
    pub align: usize,
    pub max_bytes: usize,
    /// Calls the pool served (a realloc counts here when its block was the pool's).
    pub pool: Calls,
    /// Calls passed to the wrapped allocator.
    pub wrapped: Calls,
    /// Small requests the pool refused because its arena was exhausted.
    pub arena_full: u64,
    /// Frees of an address inside the arena where no live block starts (a program's
    /// double free); ignored.
    pub stray_frees: u64,
    pub live_blocks: usize,
    /// Rounded sizes of the live pool blocks.
    pub live_bytes: usize,
    /// Rounded bytes of every block the pool handed out.
    pub bytes_allocated: u64,
    pub heap_size: usize,
    pub chunk_bytes_left: usize,
    pub free_list_lengths: Vec<usize>,
    pub refills: u64,
    pub arena_reserved: usize,
    pub arena_used: usize,
    pub syscalls: SyscallCounts,
}

impl DomainStats {
    /// The pool's share of all calls, in [0, 1] (0 before any call).
    pub fn pool_share(&self) -> f64 {
        let all = self.pool.total() + self.wrapped.total();
        if all == 0 {
            0.0
        } else {
            self.pool.total() as f64 / all as f64
        }
    }
}

pub struct ObjectDomain<W: Wrapped> {
    /// The pool's `max_bytes`, kept here for the fast path, next to `active`.
    max_bytes: usize,
    pool: Pool<ArenaOnly, Params>,
    map: ClassMap,
    wrapped: W,
    active: bool,
    pool_calls: Calls,
    wrapped_calls: Calls,
    arena_full: u64,
    stray_frees: u64,
    live_blocks: usize,
    live_bytes: usize,
    bytes_allocated: u64,
}

impl<W: Wrapped> ObjectDomain<W> {
    /// A domain over a pool of `align`/`max_bytes` (SGI's 20 blocks per refill) in an arena
    /// of `arena_size` bytes, wrapping `wrapped`. It starts active.
    pub fn new(
        align: usize,
        max_bytes: usize,
        arena_size: usize,
        wrapped: W,
    ) -> Result<Self, AllocError> {
        let params = Params::new(align, max_bytes, 20)?;
        let pool = Pool::new(params, arena_size, ArenaOnly)?;
        let map = ClassMap::new(pool.arena().base(), pool.arena().reserved(), align);
        Ok(Self {
            max_bytes,
            pool,
            map,
            wrapped,
            active: true,
            pool_calls: Calls::default(),
            wrapped_calls: Calls::default(),
            arena_full: 0,
            stray_frees: 0,
            live_blocks: 0,
            live_bytes: 0,
            bytes_allocated: 0,
        })
    }

    /// Inactive, new blocks come from the wrapped allocator; frees still find the pool's.
    pub fn set_active(&mut self, active: bool) {
        self.active = active;
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn params(&self) -> &Params {
        self.pool.params()
    }

    pub fn wrapped(&self) -> &W {
        &self.wrapped
    }

    /// Whether `p` lies in the pool's arena, where only pool blocks live.
    #[inline]
    pub fn owns(&self, p: *const u8) -> bool {
        self.map.contains(p as usize)
    }

    #[inline]
    pub fn malloc(&mut self, n: usize) -> *mut u8 {
        if let Some(p) = self.pool_block(n) {
            self.pool_calls.malloc += 1;
            return p.as_ptr();
        }
        self.wrapped_calls.malloc += 1;
        self.wrapped.malloc(n)
    }

    #[inline]
    pub fn calloc(&mut self, nelem: usize, elsize: usize) -> *mut u8 {
        if let Some(n) = nelem.checked_mul(elsize) {
            if let Some(p) = self.pool_block(n) {
                // SAFETY: the block has `round_up(max(n, 1)) >= n` writable bytes.
                unsafe { ptr::write_bytes(p.as_ptr(), 0, n) };
                self.pool_calls.calloc += 1;
                return p.as_ptr();
            }
        }
        self.wrapped_calls.calloc += 1;
        self.wrapped.calloc(nelem, elsize)
    }

    /// # Safety
    /// `p` is null, a live block of this domain, or a live block of the wrapped allocator.
    #[inline]
    pub unsafe fn free(&mut self, p: *mut u8) {
        if self.owns(p) {
            self.pool_calls.free += 1;
            // SAFETY: the caller's promise; `p` is in the arena, so it is the pool's.
            unsafe { self.free_pool_block(p) };
        } else {
            self.wrapped_calls.free += 1;
            // SAFETY: the caller's promise: outside the arena, `p` is the wrapped one's.
            unsafe { self.wrapped.free(p) };
        }
    }

    /// # Safety
    /// As for `free`. On null the block is still live and unchanged.
    pub unsafe fn realloc(&mut self, p: *mut u8, n: usize) -> *mut u8 {
        if !self.owns(p) {
            if p.is_null() {
                // realloc(NULL, n) is malloc(n), which the pool may serve.
                return self.malloc(n);
            }
            self.wrapped_calls.realloc += 1;
            // SAFETY: the caller's promise: outside the arena, `p` is the wrapped one's.
            return unsafe { self.wrapped.realloc(p, n) };
        }
        self.pool_calls.realloc += 1;
        let old = self.map.size_of(p as usize);
        if n <= self.max_bytes && self.params().round_up(n.max(1)) == old {
            return p;
        }
        let q = match self.pool_block(n) {
            Some(q) => q.as_ptr(),
            None => self.wrapped.malloc(n),
        };
        if q.is_null() {
            return q;
        }
        // SAFETY: `p` has `old` bytes, `q` at least `n`, and they are different blocks;
        // then `p`, the caller's live pool block, is freed once.
        unsafe {
            ptr::copy_nonoverlapping(p, q, old.min(n));
            self.free_pool_block(p);
        }
        q
    }

    /// A pool block for `n` bytes, if the pool serves `n` now.
    #[inline]
    fn pool_block(&mut self, n: usize) -> Option<NonNull<u8>> {
        if !self.active || n > self.max_bytes {
            return None;
        }
        let n = n.max(1);
        match self.pool.allocate_small(n) {
            Ok(p) => {
                // Class `i` has `i + 1` granules: shifts, no division on this path.
                let i = self.params().index(n);
                let size = self.params().class_size(i);
                self.map.mark_new(p.as_ptr() as usize, i + 1, false);
                self.live_blocks += 1;
                self.live_bytes += size;
                self.bytes_allocated += size as u64;
                Some(p)
            }
            Err(_) => {
                self.arena_full += 1;
                None
            }
        }
    }

    /// # Safety
    /// `p` lies in the arena and, if a block starts there, it is live and not used again.
    #[inline(always)]
    unsafe fn free_pool_block(&mut self, p: *mut u8) {
        let size = self.map.take(p as usize);
        let Some(block) = NonNull::new(p).filter(|_| size != 0) else {
            self.stray_frees += 1;
            return;
        };
        self.live_blocks -= 1;
        self.live_bytes -= size;
        let i = self.params().index(size);
        // SAFETY: the map says a live block of `size` bytes, class `i`, starts at `p`.
        unsafe { self.pool.push_class(i, block) };
    }

    pub fn stats(&self) -> DomainStats {
        let params = self.params();
        let arena = self.pool.arena();
        DomainStats {
            active: self.active,
            align: params.align(),
            max_bytes: params.max_bytes(),
            pool: self.pool_calls,
            wrapped: self.wrapped_calls,
            arena_full: self.arena_full,
            stray_frees: self.stray_frees,
            live_blocks: self.live_blocks,
            live_bytes: self.live_bytes,
            bytes_allocated: self.bytes_allocated,
            heap_size: self.pool.heap_size(),
            chunk_bytes_left: self.pool.chunk_bytes_left(),
            free_list_lengths: self.free_list_lengths(),
            refills: self.pool.counters().refills,
            arena_reserved: arena.reserved(),
            arena_used: arena.used(),
            syscalls: arena.syscalls(),
        }
    }

    /// `|free_list[i]| == blocks[i] − live[i]`, with the live blocks of each class read
    /// from the class map: one sequential pass over the map's used part (`arena.used()/align`
    /// bytes) instead of a walk of every free block, which after a large program takes
    /// seconds of cache misses.
    fn free_list_lengths(&self) -> Vec<usize> {
        let params = self.params();
        let mut lengths: Vec<usize> = (0..params.nfreelists())
            .map(|i| self.pool.class_blocks(i))
            .collect();
        let arena = self.pool.arena();
        for (_, size) in self.map.live_blocks_below(arena.base() + arena.used()) {
            lengths[params.index(size)] -= 1;
        }
        lengths
    }

    /// Panics unless the module's equations hold.
    pub fn check_invariants(&self) {
        let blocks = self.map.live_blocks();
        assert_eq!(self.live_blocks, blocks.len(), "live_blocks == |map|");
        let mapped: usize = blocks.iter().map(|&(_, size)| size).sum();
        assert_eq!(self.live_bytes, mapped, "live_bytes == Σ map sizes");
        let s = self.stats();
        for (i, &len) in s.free_list_lengths.iter().enumerate() {
            assert_eq!(
                self.pool.free_list_len(i),
                len,
                "|free_list[{i}]| == blocks − live"
            );
        }
        let free: usize = s
            .free_list_lengths
            .iter()
            .enumerate()
            .map(|(i, len)| len * self.params().class_size(i))
            .sum();
        assert_eq!(
            s.heap_size,
            s.live_bytes + free + s.chunk_bytes_left,
            "heap_size == live + free lists + chunk"
        );
        self.map.check_invariants();
    }
}

#[cfg(test)]
mod tests;
