//! The heaps of a `SharedPool`: up to K complete SGI pools (`CheckedPool`s), each behind
//! its own lock and over its own arena, so that threads allocating at once do not fight
//! over one lock. Heap 0 exists from the start; heap `i > 0` is made the first time a
//! thread claims slot `i`. A thread allocates from the heap whose slot it holds (heap 0
//! for the first thread to come, so a pool used from one thread is one SGI pool, SPEC §3);
//! when every slot is held, from a heap chosen by its token, shared (locked, so correct).
//! A block is freed, moved, pinned or claimed in the heap that handed it out, whichever
//! thread asks: every heap stays an exact SGI pool.
//!
//! Invariants:
//! - every heap is a `CheckedPool` with its invariants, among them its own conservation
//!   `heap_size_h == live_bytes_h + free_bytes_h + chunk_bytes_left_h`, hence summed:
//!   `Σ heap_size_h == Σ live_bytes_h + Σ free_bytes_h + Σ chunk_bytes_left_h`;
//! - `arenas[i]` is empty until heap `i` exists, then its arena's reservation (which never
//!   moves), so an address in it belongs to heap `i` and no other;
//! - a live block is live in exactly one heap; regions of distinct heaps are disjoint, so
//!   every heap but the block's own calls it `Foreign`.

use crate::checked::CheckedPool;
use crate::error::AllocError;
use crate::params::Params;
use crate::raw_lock::RawLock;
use crate::sync::model::{self, Mutex};
use crate::thread_token::{self, FREE};
use crate::upstream::Upstream;
use model::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

/// One SGI pool and its lock, on cache lines of its own: the owner thread writes the lock
/// and free lists at every call, and a neighbour's writes there would cost it a miss.
#[repr(align(128))]
pub struct Heap<U: Upstream, L: RawLock> {
    lock: L,
    pool: UnsafeCell<CheckedPool<U>>,
    exclusive: model::Exclusive,
}

// SAFETY: `pool` is reached only through `PoolGuard`, which holds `lock` (mutual exclusion
// by `RawLock`'s contract); the pool itself may move between threads (`CheckedPool: Send`).
unsafe impl<U: Upstream + Send, L: RawLock> Sync for Heap<U, L> {}
// SAFETY: as above; every field is owned.
unsafe impl<U: Upstream + Send, L: RawLock> Send for Heap<U, L> {}

impl<U: Upstream, L: RawLock> Heap<U, L> {
    fn new(pool: CheckedPool<U>) -> Self {
        Self {
            lock: L::default(),
            pool: UnsafeCell::new(pool),
            exclusive: model::Exclusive::default(),
        }
    }

    #[inline]
    pub fn lock(&self) -> PoolGuard<'_, U, L> {
        self.lock.lock();
        self.exclusive.enter();
        PoolGuard { heap: self }
    }
}

/// A locked heap; unlocks when dropped.
pub struct PoolGuard<'a, U: Upstream, L: RawLock> {
    heap: &'a Heap<U, L>,
}

impl<'a, U: Upstream, L: RawLock> PoolGuard<'a, U, L> {
    /// The heap, to lock it again after letting it go.
    pub fn heap(&self) -> &'a Heap<U, L> {
        self.heap
    }
}

impl<U: Upstream, L: RawLock> Deref for PoolGuard<'_, U, L> {
    type Target = CheckedPool<U>;
    #[inline]
    fn deref(&self) -> &CheckedPool<U> {
        // SAFETY: this guard holds the lock, so no other reference to the pool exists.
        unsafe { &*self.heap.pool.get() }
    }
}

impl<U: Upstream, L: RawLock> DerefMut for PoolGuard<'_, U, L> {
    #[inline]
    fn deref_mut(&mut self) -> &mut CheckedPool<U> {
        // SAFETY: this guard holds the lock, so no other reference to the pool exists.
        unsafe { &mut *self.heap.pool.get() }
    }
}

impl<U: Upstream, L: RawLock> Drop for PoolGuard<'_, U, L> {
    #[inline]
    fn drop(&mut self) {
        self.heap.exclusive.leave();
        // SAFETY: the guard was created by `Heap::lock` and holds the lock.
        unsafe { self.heap.lock.unlock() }
    }
}

/// `[base, base + len)` of a heap's arena, read without its lock.
#[derive(Default)]
struct ArenaRange {
    base: AtomicUsize,
    len: AtomicUsize,
}

impl ArenaRange {
    #[inline]
    fn contains(&self, addr: usize) -> bool {
        // `len` is stored last: a non-zero one comes with its base.
        let len = self.len.load(Ordering::Acquire);
        addr.wrapping_sub(self.base.load(Ordering::Relaxed)) < len
    }

    fn publish<U: Upstream>(&self, pool: &CheckedPool<U>) {
        let arena = pool.pool().arena();
        self.base.store(arena.base(), Ordering::Relaxed);
        self.len.store(arena.reserved(), Ordering::Release);
    }
}

// A std atomic: see `sync::model`.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct Heaps<U: Upstream + Clone, L: RawLock> {
    /// This pool's name in `thread_token`'s cache: unique in the process, never reused.
    id: u64,
    first: Heap<U, L>,
    rest: Box<[OnceLock<Heap<U, L>>]>,
    /// The token of the thread holding each slot, or `FREE`; read at every call of a
    /// thread not holding slot 0, written only when a thread claims or exits.
    owners: Arc<[AtomicU64]>,
    arenas: Box<[ArenaRange]>,
    /// Serialises making heaps, with the chunk fill (debug mode) every heap gets.
    grow: Mutex<Option<u8>>,
    params: Params,
    arena_size: usize,
    upstream: U,
}

impl<U: Upstream + Clone, L: RawLock> Heaps<U, L> {
    /// `count` slots (at least one), heap 0 made now.
    pub fn new(
        params: Params,
        arena_size: usize,
        upstream: U,
        count: usize,
    ) -> Result<Self, AllocError> {
        let count = count.max(1);
        let first = CheckedPool::new(params, arena_size, upstream.clone())?;
        let arenas: Box<[ArenaRange]> = (0..count).map(|_| ArenaRange::default()).collect();
        arenas[0].publish(&first);
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            first: Heap::new(first),
            rest: (1..count).map(|_| OnceLock::new()).collect(),
            owners: (0..count).map(|_| AtomicU64::new(FREE)).collect(),
            arenas,
            grow: Mutex::new(None),
            params,
            arena_size,
            upstream,
        })
    }

    /// K, the most heaps there may be.
    pub fn slots(&self) -> usize {
        self.owners.len()
    }

    /// Heap `i`, if made.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Heap<U, L>> {
        match i {
            0 => Some(&self.first),
            _ => self.rest.get(i - 1)?.get(),
        }
    }

    /// The heaps made so far, heap 0 first.
    pub fn iter(&self) -> impl Iterator<Item = &Heap<U, L>> {
        std::iter::once(&self.first).chain(self.rest.iter().filter_map(OnceLock::get))
    }

    /// The heap the calling thread allocates from.
    #[inline(always)]
    pub fn mine(&self) -> &Heap<U, L> {
        if self.rest.is_empty() {
            return &self.first;
        }
        match thread_token::cached_heap(self.id) {
            Some(heap) if heap.is_null() => &self.first,
            // SAFETY: `cache` stored this pointer under this pool's id, which no other pool
            // has: it points at a heap of `rest`, boxed, so it stays where it is however the
            // pool moves, and lives as long as the pool.
            Some(heap) => unsafe { &*heap.cast::<Heap<U, L>>() },
            None => self.mine_slow(),
        }
    }

    /// A thread without a heap cached for this pool: its own slot, else a free one (the
    /// lowest, so heap 0 first and made heaps before new ones), cached; else a heap shared
    /// by token, not cached, so that a slot freed later is claimed.
    #[inline(never)]
    fn mine_slow(&self) -> &Heap<U, L> {
        let me = thread_token::current();
        if let Some(i) = (self.owners.iter()).position(|o| o.load(Ordering::Relaxed) == me) {
            return self.cache(i);
        }
        for i in 0..self.slots() {
            if self.owners[i].load(Ordering::Relaxed) == FREE
                && thread_token::claim(&self.owners, i)
            {
                self.get_or_make(i);
                return self.cache(i);
            }
        }
        let shared = (thread_token::assign() % self.slots() as u64) as usize;
        self.get(shared).unwrap_or(&self.first)
    }

    /// The heap of slot `i`, which the calling thread holds, noted as its own: as null for
    /// heap 0, which lies inside the pool and moves with it.
    fn cache(&self, i: usize) -> &Heap<U, L> {
        // No heap in a held slot: making it failed; heap 0 serves instead.
        match self.get(i).filter(|_| i > 0) {
            Some(heap) => {
                thread_token::cache_heap(self.id, std::ptr::from_ref(heap).cast());
                heap
            }
            None => {
                thread_token::cache_heap(self.id, std::ptr::null());
                &self.first
            }
        }
    }

    /// Heap `i`, made now if it is not yet; `None` if its arena cannot be reserved.
    fn get_or_make(&self, i: usize) -> Option<&Heap<U, L>> {
        if let Some(h) = self.get(i) {
            return Some(h);
        }
        let fill = model::lock(&self.grow);
        if let Some(h) = self.get(i) {
            return Some(h);
        }
        let mut pool =
            CheckedPool::new(self.params, self.arena_size, self.upstream.clone()).ok()?;
        pool.set_chunk_fill(*fill);
        self.arenas[i].publish(&pool);
        let _ = self.rest[i - 1].set(Heap::new(pool));
        self.get(i)
    }

    /// Debug mode: every chunk of every heap, present or future, filled with `byte`.
    pub fn set_chunk_fill(&self, byte: Option<u8>) {
        let mut fill = model::lock(&self.grow);
        *fill = byte;
        for h in self.iter() {
            h.lock().set_chunk_fill(byte);
        }
    }

    /// The heap whose arena holds `addr`.
    #[inline]
    fn by_arena(&self, addr: usize) -> Option<&Heap<U, L>> {
        // Heap 0 apart: a pool used from one thread pays one range check.
        if self.arenas[0].contains(addr) {
            return Some(&self.first);
        }
        let i = self.arenas.iter().position(|a| a.contains(addr))?;
        self.get(i)
    }

    /// The first heap, locked, for which `found` holds; else heap 0, locked (whose answer
    /// is then every heap's: the address is not theirs).
    fn find_locked(&self, found: impl Fn(&CheckedPool<U>) -> bool) -> PoolGuard<'_, U, L> {
        for h in self.iter() {
            let pool = h.lock();
            if found(&pool) {
                return pool;
            }
        }
        self.first.lock()
    }

    /// The heap that owns the block `(p, n)`, or would if it were live (so that its errors
    /// are those of one SGI pool), locked; heap 0 if no heap knows `p`.
    #[inline]
    pub fn lock_owner(&self, p: usize, n: usize) -> PoolGuard<'_, U, L> {
        if self.rest.is_empty() {
            return self.first.lock();
        }
        if let Some(h) = self.by_arena(p) {
            return h.lock();
        }
        // Upstream chunks and large blocks: only their heap's record knows them.
        self.find_locked(|pool| !matches!(pool.validate(p, n), Err(AllocError::Foreign { .. })))
    }

    /// The heap holding the live block that contains `addr`, locked; heap 0 if none does.
    pub fn lock_holding(&self, addr: usize) -> PoolGuard<'_, U, L> {
        if self.rest.is_empty() {
            return self.first.lock();
        }
        if let Some(h) = self.by_arena(addr) {
            return h.lock();
        }
        self.find_locked(|pool| pool.block_containing(addr).is_some())
    }
}
