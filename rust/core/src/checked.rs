//! The pool with every call validated: SGI's algorithm (in `Pool`) plus a record of which
//! blocks are live, so that misuse is an error instead of a corrupted free list.
//!
//! Invariants (checked by `check_invariants`):
//! - the pool's conservation equation with `live_bytes` counted here:
//!   `heap_size == live_bytes + free_bytes + chunk_bytes_left`;
//! - `live(i) == pool.class_blocks(i) - |free_list[i]|` is the number of live blocks of
//!   class `i` marked in the maps. Live blocks are counted this way, when asked, rather than
//!   by a counter per call: a counter's read-modify-write on every allocation and free cost
//!   the owner's pair24 8–17 % of its time (`stats` walks the lists instead);
//! - `large_live_blocks == |large|`, `large_live_bytes == Σ large sizes`;
//! - `fast_max == min(max_bytes, SMALL_GRANULES·align)`: a size `1 <= n <= fast_max` has a
//!   class below `nfreelists` and a tag the map's byte holds, so the fast paths need one
//!   compare for both;
//! - `moving ⊆ keys(pins)`, each moving block pinned once (by its move) and unclaimed;
//! - every pinned block is live, and `keys(pins) == {pool blocks PINNED in the maps} ∪
//!   {pinned large blocks}` (the free fast path reads the map's bit, not `pins`);
//! - a block of the arena that another thread freed (`class_map::claim_remote`) stays
//!   counted live, and off every free list, until the owner's `take_back_remote`.
//!
//! Every operation validates before it mutates, so an error leaves the pool unchanged.
//! Upstream *allocations* are left to the caller (`NeedChunk`, `insert_large`), so that a
//! thread-safe wrapper can make them without holding its lock: an out-of-memory handler
//! may re-enter the pool.

pub(crate) mod atomic_bytes;
pub mod block_map;
pub mod class_map;
mod granules;
mod prefetch;
pub mod spans;
#[cfg(test)]
mod tests;

use crate::checked::atomic_bytes::Shared;
use crate::checked::class_map::{ClassMap, SMALL_GRANULES};
use crate::error::AllocError;
use crate::sgi::free_lists::INLINE_LISTS;
use crate::sgi::params::Params;
use crate::sgi::pool::{NeedChunk, Pool};
use crate::sgi::upstream::Upstream;
use crate::stats::PoolStats;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ptr::NonNull;

// The fast paths' classes have their free lists' heads inside the pool.
const _: () = assert!(SMALL_GRANULES <= INLINE_LISTS);

/// The granule shift of SGI's `_ALIGN = 8`, SPEC's default `align`. Each fast path is built
/// twice: with this shift as a constant, which the compiler folds into immediate shifts and
/// a constant class, and with the pool's own (any other `align`), `sgi_shift()` choosing.
/// Shifting by a register read from the pool cost the owner's pair24 0.55 of its 2.93 ns
/// (Intel Xeon model 167): such a shift is two or three µops there, and the pair's loop is
/// bound by how many it issues.
const SGI_SHIFT: u32 = 3;

/// Calls the fast path `$f`, a method generic over `const SGI: bool`, in the build for the
/// pool's shift (see `SGI_SHIFT`).
macro_rules! by_shift {
    ($pool:ident.$f:ident($($arg:expr),*)) => {
        match $pool.sgi_shift() {
            true => $pool.$f::<true>($($arg),*),
            false => $pool.$f::<false>($($arg),*),
        }
    };
}

/// Where a validated block lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// A pool block of `round_up(n)` bytes.
    Small,
    /// A block passed to the upstream allocator.
    Large,
}

pub struct CheckedPool<U: Upstream> {
    pool: Pool<U>,
    arena_map: ClassMap,
    /// The maps of the upstream chunks, in address order.
    chunk_maps: Vec<ClassMap>,
    /// The index of the chunk map a lookup last found: a guess only, trusted once the map
    /// is seen to hold the address. A heap past its arena serves a run of calls from one
    /// chunk (its newest, mostly); without it every such call searched the maps.
    chunk_hint: Cell<usize>,
    large: BTreeMap<usize, usize>,
    /// Large blocks held by a container (small ones are marked in the block maps).
    large_claimed: BTreeSet<usize>,
    pins: HashMap<usize, usize>,
    /// Blocks a `reallocate` is copying (each holds one pin): see `begin_move`.
    moving: BTreeSet<usize>,
    /// The largest size the fast paths serve: `min(max_bytes, SMALL_GRANULES·align)`, so
    /// that one compare proves both a class and a tag that fits the map's byte.
    fast_max: usize,
    large_live_bytes: usize,
}

impl<U: Upstream> CheckedPool<U> {
    pub fn new(params: Params, arena_size: usize, upstream: U) -> Result<Self, AllocError> {
        let pool = Pool::new(params, arena_size, upstream)?;
        let arena = pool.arena();
        let arena_map = ClassMap::new(arena.base(), arena.reserved(), params.align());
        Ok(Self {
            pool,
            arena_map,
            chunk_maps: Vec::new(),
            chunk_hint: Cell::new(0),
            large: BTreeMap::new(),
            large_claimed: BTreeSet::new(),
            pins: HashMap::new(),
            moving: BTreeSet::new(),
            large_live_bytes: 0,
            fast_max: params.max_bytes().min(SMALL_GRANULES * params.align()),
        })
    }

    pub fn params(&self) -> &Params {
        self.pool.params()
    }

    pub fn pool(&self) -> &Pool<U> {
        &self.pool
    }

    /// The largest size the fast paths (`try_pop`, `try_free`) serve, at least `align`.
    pub fn fast_max(&self) -> usize {
        self.fast_max
    }

    /// Debug mode: fill every new chunk with `byte`.
    pub fn set_chunk_fill(&mut self, byte: Option<u8>) {
        self.pool.set_chunk_fill(byte);
    }

    /// The map of the region holding `addr`: the arena's, checked first because it serves
    /// nearly every block, else an upstream chunk's.
    #[inline]
    fn map_of(&self, addr: usize) -> Option<&ClassMap> {
        if self.arena_map.contains(addr) {
            return Some(&self.arena_map);
        }
        self.chunk_index(addr).map(|i| &self.chunk_maps[i])
    }

    #[inline]
    fn map_of_mut(&mut self, addr: usize) -> &mut ClassMap {
        if self.arena_map.contains(addr) {
            return &mut self.arena_map;
        }
        let i = self
            .chunk_index(addr)
            .expect("a checked block lies in a region");
        &mut self.chunk_maps[i]
    }

    /// The index of the chunk map holding `addr`: the hint's if it does, else found by a
    /// search, which moves the hint there.
    #[inline]
    fn chunk_index(&self, addr: usize) -> Option<usize> {
        let h = self.chunk_hint.get();
        if self.chunk_maps.get(h).is_some_and(|m| m.contains(addr)) {
            return Some(h);
        }
        self.search_chunk_maps(addr)
    }

    #[cold]
    #[inline(never)]
    fn search_chunk_maps(&self, addr: usize) -> Option<usize> {
        let i = self.chunk_maps.partition_point(|m| m.base() <= addr);
        let found = (i > 0 && self.chunk_maps[i - 1].contains(addr)).then(|| i - 1)?;
        self.chunk_hint.set(found);
        Some(found)
    }

    /// A block of `1 <= n <= max_bytes` bytes from the free lists, or the chunk the pool
    /// needs from upstream first.
    pub fn allocate_small(&mut self, n: usize, claimed: bool) -> Result<usize, NeedChunk> {
        let p = self.pool.allocate_small(n)?.as_ptr() as usize;
        let i = self.pool.params().index(n);
        self.map_of_mut(p).mark_new(p, i + 1, claimed);
        Ok(p)
    }

    /// Installs a chunk obtained from upstream after `NeedChunk`.
    pub fn add_chunk(&mut self, chunk: NonNull<u8>, bytes: usize) {
        let base = chunk.as_ptr() as usize;
        let map = ClassMap::new(base, bytes, self.params().align());
        let i = self.chunk_maps.partition_point(|m| m.base() < base);
        self.chunk_maps.insert(i, map);
        // The pool carves the new chunk next.
        self.chunk_hint.set(i);
        self.pool.add_chunk(chunk, bytes);
    }

    /// Records a block of `n > max_bytes` bytes just obtained from upstream, claimed for
    /// a container or not.
    pub fn insert_large(&mut self, p: usize, n: usize, claimed: bool) {
        if claimed {
            self.large_claimed.insert(p);
        }
        self.large.insert(p, n);
        self.large_live_bytes += n;
    }

    /// Which kind of live block `(p, n)` is, or why it is none: the one check every
    /// caller's address and size pass before anything uses them. Nothing in it can wrap:
    /// `n` is compared with `max_bytes` before it is rounded (so `round_up` stays below
    /// `max_bytes + align`) and a size of 0 is no block's; `p` is only compared, or
    /// offset from a region's base after the region was found to contain it.
    #[inline]
    pub fn validate(&self, p: usize, n: usize) -> Result<BlockKind, AllocError> {
        let max = self.params().max_bytes();
        if n > max {
            return match self.large.get(&p) {
                Some(&size) if size == n => Ok(BlockKind::Large),
                _ => Err(self.not_a_block(p, n)),
            };
        }
        if n == 0 {
            return Err(self.not_a_block(p, n));
        }
        match self
            .map_of(p)
            .map(|m| m.check(p, self.params().round_up(n)))
        {
            Some(Ok(())) => Ok(BlockKind::Small),
            _ => Err(self.not_a_block(p, n)),
        }
    }

    /// The most precise error for `(p, n)` that is not a live block of `n`'s kind.
    #[cold]
    fn not_a_block(&self, p: usize, n: usize) -> AllocError {
        let params = self.params();
        let mismatch = |block_size| AllocError::SizeMismatch {
            addr: p,
            size: n,
            block_size,
        };
        if let Some(&size) = self.large.get(&p) {
            return mismatch(size);
        }
        let found = self.block_containing(p);
        if let Some((start, size)) = found.filter(|&(start, _)| start != p) {
            if self.map_of(p).is_none() || (p - start) % params.align() == 0 {
                return AllocError::Interior {
                    addr: p,
                    start,
                    size,
                };
            }
        }
        match self.map_of(p) {
            // A pool block's class is at most `max_bytes`: `n.clamp(1, max)` asks the
            // map for the block's own size whatever `n` is.
            Some(map) => match map.check(p, params.round_up(n.clamp(1, params.max_bytes()))) {
                Err(AllocError::SizeMismatch { block_size, .. }) => mismatch(block_size),
                Err(e) => e,
                Ok(()) => match found {
                    Some((_, size)) => mismatch(size),
                    None => AllocError::NotLive { addr: p },
                },
            },
            None => AllocError::Foreign { addr: p },
        }
    }

    /// Ok if neither a view nor a move in progress holds the block at `p`.
    pub fn check_unpinned(&self, p: usize) -> Result<(), AllocError> {
        if self.pins.is_empty() || !self.pins.contains_key(&p) {
            Ok(())
        } else if self.moving.contains(&p) {
            Err(AllocError::Moving { addr: p })
        } else {
            Err(AllocError::Pinned { addr: p })
        }
    }

    /// Validates and frees `(p, n)`; `(0, 0)` does nothing.
    pub fn deallocate(&mut self, p: usize, n: usize) -> Result<(), AllocError> {
        if self.try_free(p, n, false) {
            return Ok(());
        }
        if p == 0 && n == 0 {
            return Ok(());
        }
        let kind = self.validate(p, n)?;
        self.check_unpinned(p)?;
        if self.is_claimed(kind, p) {
            return Err(AllocError::Claimed { addr: p });
        }
        self.free_validated(kind, p, n)
    }

    /// Frees a block a container holds (`claim`ed), validated like `deallocate`.
    pub fn deallocate_claimed(&mut self, p: usize, n: usize) -> Result<(), AllocError> {
        if self.try_free(p, n, true) {
            return Ok(());
        }
        let kind = self.validate(p, n)?;
        if !self.is_claimed(kind, p) {
            return Err(AllocError::NotLive { addr: p });
        }
        if kind == BlockKind::Large {
            self.large_claimed.remove(&p);
        }
        // A pool block's claim goes with its byte.
        self.free_validated(kind, p, n)
    }

    /// The allocation fast path: the head of `n`'s free list, recorded live and claimed
    /// for a container or not; `None`, changing nothing, when `n` is not in
    /// `1..=fast_max` or the list is empty and the pool must refill (`allocate_small`).
    #[inline(always)]
    pub fn try_pop(&mut self, n: usize, claimed: bool) -> Option<usize> {
        if n.wrapping_sub(1) >= self.fast_max {
            return None;
        }
        // SAFETY: checked just above.
        unsafe { self.try_pop_small(n, claimed) }
    }

    /// `try_pop` for a size the caller already knows is one of the fast paths'.
    ///
    /// # Safety
    /// `1 <= n <= fast_max()`.
    #[inline(always)]
    pub unsafe fn try_pop_small(&mut self, n: usize, claimed: bool) -> Option<usize> {
        // SAFETY: the caller's promise.
        unsafe { by_shift!(self.pop_small(n, claimed)) }
    }

    /// `try_pop_small`, built for `SGI_SHIFT` or for any shift (`shift`).
    ///
    /// # Safety
    /// As `try_pop_small`.
    #[inline(always)]
    unsafe fn pop_small<const SGI: bool>(&mut self, n: usize, claimed: bool) -> Option<usize> {
        debug_assert!(n.wrapping_sub(1) < self.fast_max);
        let shift = self.shift::<SGI>();
        let i = self.class_by(n, shift);
        // Every read first (the head, its granule), then the writes: a write through a
        // pointer would make the compiler read the fields again.
        // SAFETY: `1 <= n <= fast_max <= max_bytes` (the caller's promise), so its class `i`
        // is below `nfreelists`, and below `SMALL_GRANULES <= INLINE_LISTS`.
        let p = unsafe { self.pool.peek_class(i) }?.as_ptr() as usize;
        let g = self.arena_map.granule_in_by(p, shift);
        // SAFETY: as above.
        unsafe { self.pool.pop_class(i) };
        // SAFETY: as above.
        prefetch::along(p, unsafe { self.pool.head_addr(i) });
        // `i + 1 <= SMALL_GRANULES`: `fast_max` keeps the class's tag in the byte.
        match g {
            // SAFETY: `g` is the arena map's own `granule_in_by`.
            Some(g) => unsafe { self.arena_map.mark_small(g, i + 1, claimed) },
            None => self.record_in_chunk(p, i + 1, claimed),
        }
        Some(p)
    }

    /// `try_pop_small` for a pool that holds no upstream chunk: every block on its free
    /// lists was carved from its arena, so the block needs no range check to find its
    /// byte. The owner's fast path of a heap (`shared::heaps`), which keeps itself closed
    /// once its pool takes a chunk.
    ///
    /// # Safety
    /// `1 <= n <= fast_max()`, and `has_chunks()` is false.
    #[inline(always)]
    pub unsafe fn try_pop_arena_only(&mut self, n: usize, claimed: bool) -> Option<usize> {
        // SAFETY: the caller's promise.
        unsafe { by_shift!(self.pop_arena_only(n, claimed)) }
    }

    /// `try_pop_arena_only`, built for `SGI_SHIFT` or for any shift (`shift`).
    ///
    /// # Safety
    /// As `try_pop_arena_only`.
    #[inline(always)]
    unsafe fn pop_arena_only<const SGI: bool>(&mut self, n: usize, claimed: bool) -> Option<usize> {
        debug_assert!(n.wrapping_sub(1) < self.fast_max);
        debug_assert!(!self.has_chunks(), "a pool with upstream chunks");
        let shift = self.shift::<SGI>();
        let i = self.class_by(n, shift);
        // SAFETY: as in `try_pop_small`: `i` is below `nfreelists` and `SMALL_GRANULES`.
        let p = unsafe { self.pool.pop_class(i) }?.as_ptr() as usize;
        // SAFETY: as above.
        prefetch::along(p, unsafe { self.pool.head_addr(i) });
        // SAFETY: with no upstream chunk (the caller's promise) the pool's every block,
        // free `p` included, was carved from its arena, whose whole reservation the arena
        // map covers (`new`).
        let g = unsafe { self.arena_map.granule_of_member_by(p, shift) };
        // SAFETY: `g` is the arena map's own `granule_of_member_by`; `i + 1 <= SMALL_GRANULES`.
        unsafe { self.arena_map.mark_small(g, i + 1, claimed) };
        Some(p)
    }

    /// Whether the pool took a chunk from upstream (its arena ran out) since it was made
    /// or last released: only then may a block of it lie outside the arena.
    #[inline]
    pub fn has_chunks(&self) -> bool {
        !self.chunk_maps.is_empty()
    }

    /// `params.index(n)` for `1 <= n <= max_bytes`, from the arena map's shift (the same
    /// `log2(align)`): for the paths built once (a chunk's free, `try_pop_in_arena`).
    #[inline(always)]
    fn class_of(&self, n: usize) -> usize {
        self.class_by(n, self.arena_map.shift())
    }

    /// `class_of` with the map's shift given: `shift::<SGI>()`.
    #[inline(always)]
    fn class_by(&self, n: usize, shift: u32) -> usize {
        let i = (n - 1) >> shift;
        debug_assert_eq!(i, self.params().index(n));
        i
    }

    /// Whether the fast paths' constant build serves this pool (its `align` is SGI's).
    #[inline(always)]
    fn sgi_shift(&self) -> bool {
        self.arena_map.shift() == SGI_SHIFT
    }

    /// The arena map's shift as the fast paths' build `SGI` knows it: the constant
    /// `SGI_SHIFT`, which only a pool with `sgi_shift()` runs, or read from the map.
    #[inline(always)]
    fn shift<const SGI: bool>(&self) -> u32 {
        match SGI {
            true => {
                debug_assert!(self.sgi_shift());
                SGI_SHIFT
            }
            false => self.arena_map.shift(),
        }
    }

    /// The rare case of a block cut from an upstream chunk (the arena was exhausted).
    #[cold]
    #[inline(never)]
    fn record_in_chunk(&mut self, p: usize, k: usize, claimed: bool) {
        self.map_of_mut(p).mark_new(p, k, claimed);
    }

    /// `try_pop` when the block it would hand out lies in the arena, as every block does
    /// until the arena runs out; `None`, changing nothing, for one cut from an upstream
    /// chunk (whose record takes a call). So it calls nothing.
    #[inline(always)]
    pub fn try_pop_in_arena(&mut self, n: usize, claimed: bool) -> Option<usize> {
        if n.wrapping_sub(1) >= self.fast_max {
            return None;
        }
        // SAFETY: `1 <= n <= fast_max <= max_bytes`, so its class is below `nfreelists`.
        let head = unsafe { self.pool.peek_class(self.class_of(n)) }?;
        self.arena_map.granule_in(head.as_ptr() as usize)?;
        self.try_pop(n, claimed)
    }

    /// The free fast path: frees `(p, n)` if it is a live, unpinned pool block of the
    /// arena of `n`'s class, `1 <= n <= fast_max`, held by a container exactly when
    /// `claimed`, and says whether it did. `false` changes nothing: the full path then
    /// frees it or says what is wrong.
    #[inline(always)]
    pub fn try_free(&mut self, p: usize, n: usize, claimed: bool) -> bool {
        if n.wrapping_sub(1) >= self.fast_max {
            return false;
        }
        // SAFETY: checked just above.
        unsafe { self.try_free_small(p, n, claimed) }
    }

    /// `try_free` for a size the caller already knows is one of the fast paths'.
    ///
    /// # Safety
    /// `1 <= n <= fast_max()`.
    #[inline(always)]
    pub unsafe fn try_free_small(&mut self, p: usize, n: usize, claimed: bool) -> bool {
        // SAFETY: the caller's promise.
        unsafe { by_shift!(self.free_small(p, n, claimed)) }
    }

    /// `try_free_small`, built for `SGI_SHIFT` or for any shift (`shift`).
    ///
    /// # Safety
    /// As `try_free_small`.
    #[inline(always)]
    unsafe fn free_small<const SGI: bool>(&mut self, p: usize, n: usize, claimed: bool) -> bool {
        debug_assert!(n.wrapping_sub(1) < self.fast_max);
        let shift = self.shift::<SGI>();
        let i = self.class_by(n, shift);
        // `i + 1 <= SMALL_GRANULES`, as `take_small_by` asks.
        if !self.arena_map.take_small_by(p, i + 1, claimed, shift) {
            return false;
        }
        // SAFETY: `n <= fast_max <= SMALL_GRANULES·align` (the caller's promise), so
        // `i < SMALL_GRANULES <= INLINE_LISTS`, and below `nfreelists`.
        prefetch::along(unsafe { self.pool.head_addr(i) }, p);
        // SAFETY: `p` was a live pool block of class `i` (its map byte said so), forgotten
        // just above: it is ours to push, and arena addresses are not null; `i` as above.
        unsafe {
            self.pool
                .push_class(i, NonNull::new_unchecked(p as *mut u8))
        };
        true
    }

    /// `try_free_small`, then, for a block of one of the pool's upstream chunks, the same
    /// with the chunk's map found by a search (out of line): the free of a heap's owner,
    /// whose fallback (its heap's lock, found by address) is far dearer than a search.
    ///
    /// # Safety
    /// `1 <= n <= fast_max()`.
    #[inline(always)]
    pub unsafe fn try_free_small_or_chunk(&mut self, p: usize, n: usize, claimed: bool) -> bool {
        // SAFETY: the caller's promise.
        let freed = unsafe { self.try_free_small(p, n, claimed) };
        freed || self.try_free_in_chunk(p, n, claimed)
    }

    /// `try_free_small` for a block of an upstream chunk (`false` for any other address).
    #[cold]
    #[inline(never)]
    fn try_free_in_chunk(&mut self, p: usize, n: usize, claimed: bool) -> bool {
        if self.arena_map.contains(p) {
            return false;
        }
        let Some(c) = self.chunk_index(p) else {
            return false;
        };
        let i = self.class_of(n);
        // `i + 1 <= SMALL_GRANULES` (`n <= fast_max`), as `take_small` asks.
        if !self.chunk_maps[c].take_small(p, i + 1, claimed) {
            return false;
        }
        // SAFETY: `p` was a live pool block of class `i` (its chunk map's byte said so),
        // forgotten just above: ours to push; chunk addresses are not null;
        // `i < SMALL_GRANULES <= INLINE_LISTS`, as in `try_free_small`.
        unsafe {
            self.pool
                .push_class(i, NonNull::new_unchecked(p as *mut u8))
        };
        true
    }

    #[inline]
    fn is_claimed(&self, kind: BlockKind, p: usize) -> bool {
        match kind {
            BlockKind::Small => self.map_of(p).is_some_and(|m| m.is_claimed(p)),
            BlockKind::Large => self.large_claimed.contains(&p),
        }
    }

    /// False, changing nothing, if another thread freed the pool block meanwhile.
    fn set_claimed(&mut self, kind: BlockKind, p: usize, claimed: bool) -> bool {
        match kind {
            BlockKind::Small => self.map_of_mut(p).set_claimed(p, claimed),
            BlockKind::Large => {
                if claimed {
                    self.large_claimed.insert(p);
                } else {
                    self.large_claimed.remove(&p);
                }
                true
            }
        }
    }

    /// The kind of the live block starting at `start`, whatever its size.
    fn kind_at(&self, start: usize) -> Option<BlockKind> {
        if self.large.contains_key(&start) {
            return Some(BlockKind::Large);
        }
        let (s, _) = self.block_containing(start)?;
        (s == start).then_some(BlockKind::Small)
    }

    /// Hands the live block at `start` to a container: from now on only
    /// `deallocate_claimed` frees it, and `deallocate`, `reallocate` and `pin` refuse it.
    pub fn claim(&mut self, start: usize) -> Result<(), AllocError> {
        let kind = self
            .kind_at(start)
            .ok_or(AllocError::NotLive { addr: start })?;
        self.check_unpinned(start)?;
        if self.is_claimed(kind, start) {
            return Err(AllocError::Claimed { addr: start });
        }
        if !self.set_claimed(kind, start, true) {
            return Err(AllocError::NotLive { addr: start });
        }
        Ok(())
    }

    /// Gives a claimed block back to its allocator's public API.
    pub fn unclaim(&mut self, start: usize) {
        if let Some(kind) = self.kind_at(start) {
            // A block freed meanwhile by another thread has no claim left to give back.
            let _ = self.set_claimed(kind, start, false);
        }
    }

    /// Whether the live block at `start` is held by a container.
    pub fn is_claimed_at(&self, start: usize) -> bool {
        self.kind_at(start)
            .is_some_and(|k| self.is_claimed(k, start))
    }

    /// Frees a validated block; `NotLive`, changing nothing, if another thread freed the
    /// pool block since it was validated.
    #[inline]
    fn free_validated(&mut self, kind: BlockKind, p: usize, n: usize) -> Result<(), AllocError> {
        let ptr = NonNull::new(p as *mut u8).expect("a validated block is not null");
        match kind {
            BlockKind::Small => {
                if !self.map_of_mut(p).unmark(p) {
                    return Err(AllocError::NotLive { addr: p });
                }
                // SAFETY: validated above as a live pool block of `n`'s class.
                unsafe { self.pool.deallocate_small(ptr, n) };
            }
            BlockKind::Large => {
                self.large.remove(&p);
                self.large_live_bytes -= n;
                // SAFETY: validated above as a live upstream block of `n` bytes.
                unsafe { self.pool.upstream().deallocate(ptr, n) };
            }
        }
        Ok(())
    }

    /// Removes the record of large block `p` while the upstream moves it; its size.
    pub fn take_large(&mut self, p: usize) -> Option<usize> {
        let n = self.large.remove(&p)?;
        self.large_live_bytes -= n;
        Some(n)
    }

    /// `(start, size)` of the live block containing `addr`.
    pub fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        if let Some(found) = self
            .map_of(addr)
            .and_then(|m| m.block_containing(addr, self.params().max_bytes()))
        {
            return Some(found);
        }
        let (&start, &size) = self.large.range(..=addr).next_back()?;
        (addr < start + size).then_some((start, size))
    }

    /// Marks the live block at `start` as exported or borrowed: it may not be freed or
    /// moved until unpinned as often.
    pub fn pin(&mut self, start: usize) -> Result<(), AllocError> {
        if self.is_claimed_at(start) {
            return Err(AllocError::Claimed { addr: start });
        }
        if self.moving.contains(&start) {
            return Err(AllocError::Moving { addr: start });
        }
        match self.block_containing(start) {
            Some((s, _)) if s == start && self.add_pin(start) => Ok(()),
            _ => Err(AllocError::NotLive { addr: start }),
        }
    }

    /// False, changing nothing, if another thread freed the block meanwhile.
    fn add_pin(&mut self, start: usize) -> bool {
        if !self.pins.contains_key(&start) && !self.mark_pinned(start, true) {
            return false;
        }
        *self.pins.entry(start).or_default() += 1;
        true
    }

    /// Undoes one `pin`; a block being moved stays pinned until `end_move`.
    pub fn unpin(&mut self, start: usize) {
        if !self.moving.contains(&start) {
            self.remove_pin(start);
        }
    }

    fn remove_pin(&mut self, start: usize) {
        if let Some(n) = self.pins.get_mut(&start) {
            *n -= 1;
            if *n == 0 {
                self.pins.remove(&start);
                // A pinned byte is no other thread's to change: this cannot fail.
                let unpinned = self.mark_pinned(start, false);
                debug_assert!(unpinned);
            }
        }
    }

    /// Holds the live block at `p` for a `reallocate` that copies it with no lock
    /// held: until `end_move`, every free, move, view or claim of it is refused with
    /// `Moving`, which says what is happening (a view's `Pinned` would not).
    pub fn begin_move(&mut self, p: usize) -> Result<(), AllocError> {
        let kind = self.kind_at(p).ok_or(AllocError::NotLive { addr: p })?;
        self.check_unpinned(p)?;
        if self.is_claimed(kind, p) {
            return Err(AllocError::Claimed { addr: p });
        }
        if !self.add_pin(p) {
            return Err(AllocError::NotLive { addr: p });
        }
        self.moving.insert(p);
        Ok(())
    }

    /// Ends `begin_move`: the block is an ordinary live block again.
    pub fn end_move(&mut self, p: usize) {
        if self.moving.remove(&p) {
            self.remove_pin(p);
        }
    }

    /// Pool blocks carry their pin in the block map too, so the free fast path sees it.
    /// False, changing nothing, if another thread freed the pool block meanwhile.
    fn mark_pinned(&mut self, start: usize, pinned: bool) -> bool {
        self.large.contains_key(&start) || self.map_of_mut(start).set_pinned(start, pinned)
    }

    pub fn is_pinned(&self, start: usize) -> bool {
        self.pins.contains_key(&start)
    }

    /// What a thread that does not hold this pool needs to free its arena's blocks (see
    /// `shared::remote_frees`): the arena map's bytes (valid while the pool lives), its
    /// base and length, `log2(align)`, and `fast_max`.
    pub fn remote_target(&self) -> (Shared, usize, usize, u32, usize) {
        let m = &self.arena_map;
        (
            m.shared_bytes(),
            m.base(),
            m.region_len(),
            m.shift(),
            self.fast_max,
        )
    }

    /// Takes back the arena block at `p` if another thread freed it (its byte says so):
    /// onto its SGI free list. Else nothing: a stale entry.
    pub fn take_back_remote(&mut self, p: usize) -> bool {
        let Some(k) = self.arena_map.take_remote(p) else {
            return false;
        };
        // SAFETY: `p` was a live block of class `k - 1` (its byte said so), freed by its
        // holder and now forgotten by the map: ours to push; arena addresses are not null;
        // `claim_remote` only tags classes of the fast paths, so
        // `k - 1 < SMALL_GRANULES <= INLINE_LISTS`.
        unsafe {
            self.pool
                .push_class(k - 1, NonNull::new_unchecked(p as *mut u8))
        };
        true
    }

    /// Arena blocks freed by other threads and not yet taken back.
    pub fn remote_blocks(&self) -> usize {
        self.arena_map.remote_blocks()
    }

    /// Gives every page and upstream chunk back; refused while any block is live.
    pub fn release(&mut self) -> Result<(), AllocError> {
        let blocks = self.live_blocks() + self.large.len();
        if blocks > 0 {
            return Err(AllocError::LiveBlocks { blocks });
        }
        // SAFETY: no block is live, so nothing carved from the pool is in use.
        unsafe { self.pool.release() };
        self.chunk_maps.clear();
        Ok(())
    }

    pub fn free_list(&self, i: usize) -> Vec<usize> {
        self.pool.free_list(i)
    }

    /// Every live pool block (not large ones) as `(start, size)`, in address order per
    /// region, arena first.
    pub fn live_small_blocks(&self) -> Vec<(usize, usize)> {
        let mut out = self.arena_map.live_blocks();
        for m in &self.chunk_maps {
            out.extend(m.live_blocks());
        }
        out
    }

    pub fn stats(&self) -> PoolStats {
        let params = *self.params();
        let counters = self.pool.counters();
        let arena = self.pool.arena();
        let resident = arena.resident_bytes();
        let lengths: Vec<usize> = (0..params.nfreelists())
            .map(|i| self.pool.free_list_len(i))
            .collect();
        let live: Vec<usize> = (lengths.iter().enumerate())
            .map(|(i, len)| self.pool.class_blocks(i) - len)
            .collect();
        PoolStats {
            align: params.align(),
            max_bytes: params.max_bytes(),
            refill: params.refill(),
            nfreelists: params.nfreelists(),
            heap_size: self.pool.heap_size(),
            chunk_bytes_left: self.pool.chunk_bytes_left(),
            free_list_lengths: lengths,
            live_blocks: live.iter().sum(),
            live_bytes: (live.iter().enumerate())
                .map(|(i, n)| n * params.class_size(i))
                .sum(),
            large_live_blocks: self.large.len(),
            large_live_bytes: self.large_live_bytes,
            refills: counters.refills,
            chunk_requests: counters.chunk_requests,
            arena_reserved: arena.reserved(),
            arena_used: arena.used(),
            arena_resident: resident,
            upstream_chunk_bytes: counters.upstream_chunk_bytes,
            syscalls: arena.syscalls(),
        }
    }

    /// The live blocks of class `i`: those it has that are not on its free list (which
    /// this walks).
    fn live(&self, i: usize) -> usize {
        self.pool.class_blocks(i) - self.pool.free_list_len(i)
    }

    /// Live pool blocks (not large ones), every free list walked.
    pub fn live_blocks(&self) -> usize {
        (0..self.params().nfreelists()).map(|i| self.live(i)).sum()
    }

    /// Panics if any invariant of this module or of `Pool` is broken.
    pub fn check_invariants(&self) {
        let pool = &self.pool;
        let s = self.stats();
        assert_eq!(
            pool.heap_size(),
            s.live_bytes + pool.free_bytes() + pool.chunk_bytes_left(),
            "conservation: heap_size == live_bytes + free bytes + chunk_bytes_left"
        );
        assert_eq!(
            pool.heap_size(),
            pool.arena().used() + pool.counters().upstream_chunk_bytes
        );
        self.arena_map.check_invariants();
        self.chunk_maps.iter().for_each(ClassMap::check_invariants);
        let live = self.live_small_blocks();
        let params = pool.params();
        for i in 0..params.nfreelists() {
            let size = params.class_size(i);
            assert_eq!(
                live.iter().filter(|b| b.1 == size).count(),
                self.live(i),
                "the maps' live blocks of class {i} == its blocks - |free_list[{i}]|"
            );
        }
        assert_eq!(live.len(), s.live_blocks);
        assert_eq!(self.large.values().sum::<usize>(), self.large_live_bytes);
        assert!(self
            .pins
            .keys()
            .all(|&p| self.block_containing(p).is_some_and(|b| b.0 == p)));
        assert!(
            self.moving
                .iter()
                .all(|p| self.pins.get(p) == Some(&1) && !self.is_claimed_at(*p)),
            "a moving block holds exactly its move's pin and no claim"
        );
        let pinned_small = live
            .iter()
            .filter(|&&(p, _)| self.map_of(p).is_some_and(|m| m.is_pinned(p)));
        assert!(
            pinned_small.clone().all(|(p, _)| self.pins.contains_key(p)),
            "a block pinned in the map is pinned"
        );
        let large_pins = self.pins.keys().filter(|p| self.large.contains_key(p));
        assert_eq!(
            pinned_small.count() + large_pins.count(),
            self.pins.len(),
            "every pin is in the map or a large block's"
        );
    }
}
