//! `std::pmr::monotonic_buffer_resource` over an arena: a pure break pointer, the `brk` of
//! the note in its simplest form. `allocate` moves the break up (aligned); `deallocate`
//! gives no memory back, it only retires the block; `release()` gives everything back at
//! once. When the arena cannot serve a request, further buffers come from the upstream
//! allocator, each twice the size of the last (pmr's geometric `next_buffer_size`), and go
//! back to it on `release()`.
//!
//! Every block is remembered in a `BlockMap` per region (3 bits per 8 bytes), so misuse
//! (a foreign pointer, a double free, a size of another class) is an error that changes
//! nothing, views can pin blocks and containers claim theirs, as with every allocator of
//! the crate. `release()` is refused while a container holds a block or a view is alive:
//! every other live block is given back with the rest.
//!
//! Invariants (checked by `check_invariants` in tests):
//! - `bytes_used == arena.used() + Σ_b buffers[b].used` (everything below the breaks);
//! - `buffers[b].used <= buffers[b].len`, `upstream_bytes == Σ_b buffers[b].len`;
//! - `live_blocks == |blocks marked live|`, `live_bytes == Σ their sizes <= bytes_used`;
//! - `allocations == deallocations + released_blocks + live_blocks`;
//! - every live block lies below its region's break, `size <= max_block`;
//! - every pinned or claimed block is live; no block is both.
//!
//! Upstream buffers are requested with no lock held: the upstream's out-of-memory handler
//! may call back into this allocator.

use crate::block_allocator::BlockAllocator;
use crate::checked::block_map::BlockMap;
use crate::error::AllocError;
use crate::os::arena::Arena;
use crate::os::syscalls::SyscallCounts;
use crate::raw_lock::{RawLock, SpinLock};
use crate::sgi::first_level::{check_size, MallocAlloc};
use crate::sgi::upstream::Upstream;
use std::collections::{HashMap, HashSet};
use std::ptr::NonNull;
use std::sync::Arc;

mod lock_cell;
mod state;
use lock_cell::LockCell;
use state::{round_up, Buffer, State};

/// Blocks are recorded in 8-byte granules: sizes round up to a multiple of 8.
const GRANULE: usize = 8;
/// `next_buffer_size` stops doubling here; larger requests still get a buffer their size.
const MAX_NEXT_BUFFER: usize = 1 << 30;
/// Largest supported alignment, as for the pool.
pub const MAX_ALIGN: usize = 4096;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonotonicStats {
    pub align: usize,
    pub live_blocks: usize,
    pub live_bytes: usize,
    pub allocations: u64,
    pub deallocations: u64,
    /// Blocks still live when `release()` retired them all.
    pub released_blocks: u64,
    pub releases: u64,
    /// Bytes below every break: live, retired and alignment padding.
    pub bytes_used: usize,
    pub arena_reserved: usize,
    pub arena_used: usize,
    pub arena_resident: usize,
    pub upstream_buffers: usize,
    pub upstream_bytes: usize,
    /// The size of the next upstream buffer (doubling with each one taken).
    pub next_buffer_size: usize,
    pub syscalls: SyscallCounts,
}

pub struct Monotonic<U: Upstream = Arc<MallocAlloc>, L: RawLock = SpinLock> {
    align: usize,
    upstream: U,
    state: LockCell<State, L>,
}

impl<U: Upstream + Send, L: RawLock> Monotonic<U, L> {
    /// An allocator over an arena of `arena_size` bytes (rounded up to pages; 0 sends
    /// everything upstream) whose blocks are aligned to `align` (a power of two, 8 to 4096).
    pub fn new(arena_size: usize, align: usize, upstream: U) -> Result<Self, AllocError> {
        if !align.is_power_of_two() || !(GRANULE..=MAX_ALIGN).contains(&align) {
            return Err(AllocError::InvalidParameter(format!(
                "align must be a power of two from {GRANULE} to {MAX_ALIGN}, not {align}"
            )));
        }
        let arena = Arena::new(arena_size)?;
        let arena_map = BlockMap::new(arena.base(), arena.reserved(), GRANULE);
        let stats = MonotonicStats {
            align,
            ..MonotonicStats::default()
        };
        let state = State {
            next_buffer: State::initial_next_buffer(&arena),
            arena,
            arena_map,
            buffers: Vec::new(),
            max_block: 0,
            pins: HashMap::new(),
            moving: HashSet::new(),
            stats,
        };
        Ok(Self {
            align,
            upstream,
            state: LockCell::new(state),
        })
    }

    pub fn align(&self) -> usize {
        self.align
    }

    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// Moves the break up by `n` bytes rounded to 8, aligned to `align`; 0 for `n == 0`.
    pub fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        self.allocate_marked(n, false)
    }

    /// `allocate`, the block claimed for a container under the lock that hands it out.
    pub fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        self.allocate_marked(n, true)
    }

    /// `allocate`, claimed or not: the block is marked under the lock that hands it out.
    fn allocate_marked(&self, n: usize, claimed: bool) -> Result<usize, AllocError> {
        if n == 0 {
            return Ok(0);
        }
        check_size(n)?;
        let size = round_up(n, GRANULE).ok_or(AllocError::TooLarge { size: n })?;
        loop {
            let bytes = {
                let mut st = self.state.lock();
                if let Some(p) = st.carve(size, self.align) {
                    st.record(size);
                    if claimed {
                        st.map_of_mut(p).set_claimed(p, true);
                    }
                    return Ok(p);
                }
                // Room for the block at any alignment of the buffer, and pmr's growth.
                (size + self.align).max(st.next_buffer)
            };
            // No lock held: the upstream may run an out-of-memory handler that re-enters.
            let buf = self.upstream.allocate(bytes, self.align)?;
            self.add_buffer(buf, bytes);
        }
    }

    fn add_buffer(&self, buf: NonNull<u8>, len: usize) {
        let base = buf.as_ptr() as usize;
        let mut st = self.state.lock();
        st.buffers.push(Buffer {
            base,
            len,
            used: 0,
            map: BlockMap::new(base, len, GRANULE),
        });
        st.next_buffer = len.saturating_mul(2).min(MAX_NEXT_BUFFER);
        st.stats.upstream_buffers += 1;
        st.stats.upstream_bytes += len;
    }

    /// Retires the live block `p` of `n` bytes: no memory comes back until `release()`,
    /// but the block can no longer be freed, viewed or pinned. `(0, 0)` does nothing.
    pub fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if p == 0 && n == 0 {
            return Ok(());
        }
        let mut st = self.state.lock();
        let size = st.validate(p, n)?;
        st.check_free_to_use(p)?;
        st.retire(p, size);
        Ok(())
    }

    /// Retires a block a container holds (`allocate_claimed` or `claim`).
    pub fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if p == 0 && n == 0 {
            return Ok(());
        }
        let mut st = self.state.lock();
        let size = st.validate(p, n)?;
        if !st.is_claimed(p) {
            return Err(AllocError::NotLive { addr: p });
        }
        st.retire(p, size);
        Ok(())
    }

    /// Hands the live block at `start` to a container: `deallocate`, `reallocate` and
    /// `pin` refuse it until `unclaim`.
    pub fn claim(&self, start: usize) -> Result<(), AllocError> {
        let mut st = self.state.lock();
        if !st.starts_block(start) {
            return Err(AllocError::NotLive { addr: start });
        }
        st.check_free_to_use(start)?;
        st.map_of_mut(start).set_claimed(start, true);
        Ok(())
    }

    pub fn unclaim(&self, start: usize) {
        let mut st = self.state.lock();
        if st.starts_block(start) {
            st.map_of_mut(start).set_claimed(start, false);
        }
    }

    /// Resizes in place when it can (shrinking; growing the block at the break), else
    /// allocates, copies `min(old, new)` and retires `p`. On error `p` is live, unchanged.
    pub fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        if p == 0 && old == 0 {
            return self.allocate(new);
        }
        if new == 0 {
            self.deallocate(p, old)?;
            return Ok(0);
        }
        check_size(new)?;
        let new_size = round_up(new, GRANULE).ok_or(AllocError::TooLarge { size: new })?;
        let old_size = {
            let mut st = self.state.lock();
            let old_size = st.validate(p, old)?;
            st.check_free_to_use(p)?;
            if st.resize_in_place(p, old_size, new_size) {
                return Ok(p);
            }
            // Nobody may retire, view or release `p` while it is copied unlocked.
            *st.pins.entry(p).or_default() += 1;
            st.moving.insert(p);
            old_size
        };
        let moved = self.allocate(new);
        let mut st = self.state.lock();
        st.moving.remove(&p);
        Self::unpin_in(&mut st, p);
        let q = moved?;
        // SAFETY: `p` is a live block of `old_size >= old` bytes, pinned until now and
        // locked again, so nobody retired or released it; `q` is a new live block of
        // `new_size >= new` bytes; distinct live blocks never overlap.
        unsafe { std::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, old.min(new)) };
        st.retire(p, old_size);
        Ok(q)
    }

    fn unpin_in(st: &mut State, start: usize) {
        if let Some(n) = st.pins.get_mut(&start) {
            *n -= 1;
            if *n == 0 {
                st.pins.remove(&start);
            }
        }
    }

    /// pmr's `release()`: gives every arena page and upstream buffer back and moves the
    /// break to 0; every live block is deallocated with it. Refused (nothing changes) while
    /// a container holds a block (`claim`) or a view pins one.
    pub fn release(&self) -> Result<(), AllocError> {
        let mut st = self.state.lock();
        let live = st.live_blocks();
        let held = live
            .iter()
            .filter(|&&(p, _)| st.check_free_to_use(p).is_err())
            .count();
        if held > 0 {
            return Err(AllocError::LiveBlocks { blocks: held });
        }
        // SAFETY: no container holds a block and no view exports one; every other live
        // block is deallocated by this call (the contract of `release`), so nothing below
        // the break is in use.
        unsafe { st.arena.release() };
        st.arena_map = BlockMap::new(st.arena.base(), st.arena.reserved(), GRANULE);
        for b in std::mem::take(&mut st.buffers) {
            let ptr = NonNull::new(b.base as *mut u8).expect("buffers are not null");
            // SAFETY: the buffer came from `upstream.allocate(len)` and nothing in it is in
            // use any more (as above).
            unsafe { self.upstream.deallocate(ptr, b.len) };
        }
        st.next_buffer = State::initial_next_buffer(&st.arena);
        st.max_block = 0;
        st.stats.released_blocks += live.len() as u64;
        st.stats.live_blocks = 0;
        st.stats.live_bytes = 0;
        st.stats.upstream_buffers = 0;
        st.stats.upstream_bytes = 0;
        st.stats.releases += 1;
        Ok(())
    }

    pub fn stats(&self) -> MonotonicStats {
        let st = self.state.lock();
        let buffers_used: usize = st.buffers.iter().map(|b| b.used).sum();
        MonotonicStats {
            bytes_used: st.arena.used() + buffers_used,
            arena_reserved: st.arena.reserved(),
            arena_used: st.arena.used(),
            arena_resident: st.arena.resident_bytes(),
            next_buffer_size: st.next_buffer,
            syscalls: st.arena.syscalls(),
            ..st.stats
        }
    }

    /// Panics if an invariant of the module comment is broken.
    pub fn check_invariants(&self) {
        let s = self.stats();
        let st = self.state.lock();
        assert_eq!(
            s.bytes_used,
            st.arena.used() + st.buffers.iter().map(|b| b.used).sum::<usize>()
        );
        assert!(st.buffers.iter().all(|b| b.used <= b.len));
        assert_eq!(s.upstream_bytes, st.buffers.iter().map(|b| b.len).sum());
        let live = st.live_blocks();
        assert_eq!(live.len(), s.live_blocks);
        assert_eq!(live.iter().map(|b| b.1).sum::<usize>(), s.live_bytes);
        assert!(s.live_bytes <= s.bytes_used);
        assert_eq!(
            s.allocations,
            s.deallocations + s.released_blocks + s.live_blocks as u64
        );
        let below_break = |&(p, size): &(usize, usize)| {
            let end = p + size;
            (st.arena_map.contains(p) && end <= st.arena.base() + st.arena.used())
                || st
                    .buffers
                    .iter()
                    .any(|b| b.map.contains(p) && end <= b.base + b.used)
        };
        assert!(live.iter().all(below_break));
        assert!(live.iter().all(|b| b.1 <= st.max_block));
        assert!(st.moving.iter().all(|p| st.pins.get(p) == Some(&1)));
        assert!(st
            .pins
            .keys()
            .all(|&p| st.starts_block(p) && !st.is_claimed(p)));
        assert!(st.arena_map.claims_are_live());
        assert!(st.buffers.iter().all(|b| b.map.claims_are_live()));
    }
}

impl<U: Upstream, L: RawLock> Drop for Monotonic<U, L> {
    fn drop(&mut self) {
        for b in std::mem::take(&mut self.state.get_mut().buffers) {
            let ptr = NonNull::new(b.base as *mut u8).expect("buffers are not null");
            // SAFETY: the buffer came from `upstream.allocate(len)`; the allocator and
            // every block carved from it are going away.
            unsafe { self.upstream.deallocate(ptr, b.len) };
        }
    }
}

// SAFETY: blocks are carved from the break, which only moves up until `release()`, so live
// blocks never overlap and stay valid until retired; the block maps enforce claims (a
// claimed block is retired only by `deallocate_claimed`, never pinned, never released) and
// report only live blocks.
unsafe impl<U: Upstream + Send + Sync, L: RawLock> BlockAllocator for Monotonic<U, L> {
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        Monotonic::allocate(self, n)
    }
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        Monotonic::deallocate(self, p, n)
    }
    fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        Monotonic::reallocate(self, p, old, new)
    }
    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        self.state.lock().block_containing(addr)
    }
    fn pin(&self, start: usize) -> Result<(), AllocError> {
        let mut st = self.state.lock();
        if !st.starts_block(start) {
            return Err(AllocError::NotLive { addr: start });
        }
        if st.is_claimed(start) {
            return Err(AllocError::Claimed { addr: start });
        }
        if st.moving.contains(&start) {
            return Err(AllocError::Moving { addr: start });
        }
        *st.pins.entry(start).or_default() += 1;
        Ok(())
    }
    fn unpin(&self, start: usize) {
        let mut st = self.state.lock();
        // A move's pin is its own: only the move ends it.
        if !st.moving.contains(&start) {
            Self::unpin_in(&mut st, start)
        }
    }
    fn claim(&self, start: usize) -> Result<(), AllocError> {
        Monotonic::claim(self, start)
    }
    fn unclaim(&self, start: usize) {
        Monotonic::unclaim(self, start)
    }
    fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        Monotonic::allocate_claimed(self, n)
    }
    fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        Monotonic::deallocate_claimed(self, p, n)
    }
    fn alignment(&self) -> usize {
        self.align
    }
}

#[cfg(test)]
mod tests;
