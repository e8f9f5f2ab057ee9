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
//! - with more than one slot (and `membarrier`), heaps are biased: the thread holding slot
//!   `i` (its owner, which has it cached) enters heap `i` with a store and a load, no lock
//!   and no atomic read-modify-write; any other thread locks it and waits the owner out
//!   (`Heap`). At most one thread has a heap at a time; a thread forgets its cached heap
//!   before its exit gives the slot back, so a heap has at most one owner.
//! - on a biased heap, a small block of its arena freed by a thread that does not own it
//!   goes onto the heap's remote-free list (`remote_frees`), with no lock: its class byte
//!   is written by the heap's holder (plain stores on the owner's fast paths,
//!   compare-exchanges elsewhere) and, from an unpinned live byte to "remote" only, by one
//!   compare-exchange of the freeing thread. Whoever holds the heap through `lock` or
//!   `lock_owned` (every slow path and every inspection) first takes the list back
//!   (`drain`), so `stats`, `free_list`, `layout` and the errors see every free that
//!   returned before they were called; a block freed remotely counts live until then, so
//!   each heap's conservation holds at every moment its holder looks.

use crate::checked::CheckedPool;
use crate::error::AllocError;
use crate::raw_lock::RawLock;
use crate::sgi::params::Params;
use crate::sgi::upstream::Upstream;
use crate::shared::owner_fence;
use crate::shared::remote_frees::RemoteFrees;
use crate::shared::thread_token::{self, FREE};
use crate::sync::model;
use model::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::cell::{Cell, UnsafeCell};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

/// One SGI pool and its lock, on cache lines of its own: the owner thread writes the lock
/// and free lists at every call, and a neighbour's writes there would cost it a miss.
///
/// The heap is *requested* when `owner_max == 0`, else `owner_max == fast_max`, the pool's
/// (never 0: `fast_max >= align`); `arena_max` is `owner_max`, or 0 while the pool holds an
/// upstream chunk:
///   `owner_max ∈ {0, fast_max}`,  `arena_max ∈ {0, owner_max}`,
///   `arena_max != 0  ⇒  ¬pool.has_chunks()`.
/// Only a thread holding `lock` writes them. Each of the owner's fast paths reads one of
/// them after `busy`, and so asks with one load "is the heap mine alone?" and "is `n` a size
/// of the fast paths?" (`1 <= n <= max`): its allocation reads `arena_max`, which also says
/// that every block of the heap lies in its arena (so it finds a block's byte with no range
/// check: `CheckedPool::try_pop_arena_only`); its free, and its allocation in a heap with
/// a chunk, read `owner_max`. A chunk closes `arena_max` as it is installed
/// (`PoolGuard::add_chunk`, under the lock, by the owner itself or by a thread that
/// requested the heap first); a request closes both; `lock_owned`'s rebias opens
/// `owner_max`, and `arena_max` with it unless the pool has a chunk (after `release`, it
/// has none).
///
/// Who may touch `pool` (mutual exclusion, one of):
/// - the owner, between `enter_owned` (or `enter_owned_arena`) and the guard's drop: it
///   stored `busy = true`, then (after `owner_fence::light`) read `owner_max != 0` (or
///   `arena_max != 0`), unrequested;
/// - whoever holds `lock`, and, on a biased heap, is the owner, or has seen the heap
///   requested (or requested it and run `owner_fence::heavy`) and then read `busy == false`.
///
/// A request stays after the thread that made it lets go: the owner then locks too,
/// and the next threads that want the heap need no barrier. The owner clears it (under
/// the lock) after `REBIAS_AFTER` of its calls have found it set, and enters freely again;
/// so a thread freeing another's blocks pays a barrier once per `REBIAS_AFTER` of the
/// owner's calls at most, not once per free.
///
/// With `owner_fence::heavy` between them, Dekker's argument holds: of an owner entering
/// and another thread requesting, at least one sees the other's flag.
///
/// In a child forked while an owner was inside, that owner does not run (only the forking
/// thread does): its `busy` stays set, and a waiter clears it (`owner_left_behind`).
#[repr(align(128))]
pub struct Heap<U: Upstream, L: RawLock> {
    lock: L,
    /// Only the owner writes it (plain stores): true while it is in its fast path.
    busy: AtomicBool,
    /// 0 once a thread other than the owner wanted the heap (the owner then locks), else
    /// `fast_max`: the largest size the owner's fast paths serve.
    owner_max: AtomicUsize,
    /// `owner_max`, or 0 while the pool holds an upstream chunk: the gate of the owner's
    /// allocation fast path, which takes every block to lie in the arena.
    arena_max: AtomicUsize,
    /// The pool's `fast_max`, what `owner_max` holds while the heap is unrequested.
    fast_max: usize,
    /// The owner's calls that found the heap requested since it last took the bias back;
    /// touched by the owner only, under `lock`.
    revoked: Cell<u32>,
    /// Whether the owner enters without the lock (`busy`); else everyone locks.
    biased: bool,
    /// The process the owner claimed the heap in, and the owner's token: in a child
    /// forked since, `busy` may be a flag set by a thread that was copied mid-call and
    /// does not run there (every thread but the forking one).
    owner_pid: AtomicU32,
    owner_token: AtomicU64,
    pool: UnsafeCell<CheckedPool<U>>,
    /// Blocks of the arena freed by other threads (used on biased heaps only).
    remote: RemoteFrees,
    exclusive: model::Exclusive,
}

// SAFETY: `pool` is reached only through `PoolGuard`, made by the protocol above (mutual
// exclusion), and `revoked` only by the owner under `lock`; the pool itself may move
// between threads (`CheckedPool: Send`).
unsafe impl<U: Upstream + Send, L: RawLock> Sync for Heap<U, L> {}
// SAFETY: as above; every field is owned.
unsafe impl<U: Upstream + Send, L: RawLock> Send for Heap<U, L> {}

/// A waiter checks whether the heap's owner runs in this process (see `fork`) once per this
/// many spins: a real owner leaves within a few dozen instructions.
const OWNER_CHECK_EVERY: u32 = 1 << 10;

/// The owner's calls that find its heap requested before it takes the bias back.
const REBIAS_AFTER: u32 = if cfg!(feature = "shuttle") { 2 } else { 64 };

impl<U: Upstream, L: RawLock> Heap<U, L> {
    fn new(pool: CheckedPool<U>, biased: bool) -> Self {
        // Its bytes are the arena map's, which lives in `pool`, as long as the heap.
        let remote = RemoteFrees::new(&pool);
        let fast_max = pool.fast_max();
        debug_assert!(fast_max > 0);
        Self {
            lock: L::default(),
            busy: AtomicBool::new(false),
            owner_max: AtomicUsize::new(fast_max),
            arena_max: AtomicUsize::new(fast_max),
            fast_max,
            revoked: Cell::new(0),
            biased,
            owner_pid: AtomicU32::new(0),
            owner_token: AtomicU64::new(FREE),
            pool: UnsafeCell::new(pool),
            remote,
            exclusive: model::Exclusive::default(),
        }
    }

    /// The owner's fast path for a call of `n` bytes, on a biased heap
    /// (`Heaps::mine_biased`): no lock and no atomic read-modify-write, a store and a load.
    /// `Some` only for `1 <= n <= fast_max` (the pool's); `None` for other sizes and while
    /// another thread has the heap (then `lock_owned`).
    #[inline(always)]
    pub fn enter_owned(&self, n: usize) -> Option<OwnedGuard<'_, U, L>> {
        self.enter_through(&self.owner_max, n)
    }

    /// `enter_owned` for the owner's allocation when the pool holds no upstream chunk:
    /// `Some` only then (every block of the heap lies in its arena), `None` also once the
    /// pool took a chunk (then `enter_owned`).
    #[inline(always)]
    pub fn enter_owned_arena(&self, n: usize) -> Option<OwnedGuard<'_, U, L>> {
        self.enter_through(&self.arena_max, n)
    }

    #[inline(always)]
    fn enter_through(&self, gate: &AtomicUsize, n: usize) -> Option<OwnedGuard<'_, U, L>> {
        debug_assert!(self.biased);
        self.busy.store(true, Ordering::Relaxed);
        owner_fence::light();
        if n.wrapping_sub(1) >= gate.load(Ordering::Acquire) {
            self.busy.store(false, Ordering::Release);
            return None;
        }
        debug_assert!(n <= self.fast_max);
        self.exclusive.enter();
        Some(OwnedGuard { heap: self })
    }

    /// The owner's slow path: the lock only (the owner is not in its fast path, so `busy`
    /// is false, and other threads take the lock before they request). Takes the bias
    /// back once enough of its calls found the heap requested.
    #[inline(always)]
    pub fn lock_owned(&self) -> PoolGuard<'_, U, L> {
        self.lock.lock();
        if self.biased && self.is_requested() {
            self.revoked_once_more();
        }
        self.guard()
    }

    /// One more call of the owner found the heap requested: after `REBIAS_AFTER` of them
    /// it opens its fast paths again, the allocation's only if the pool holds no upstream
    /// chunk (see `Heap`). The owner, holding `lock`.
    #[cold]
    #[inline(never)]
    fn revoked_once_more(&self) {
        let n = self.revoked.get() + 1;
        if n == REBIAS_AFTER {
            self.owner_max.store(self.fast_max, Ordering::Relaxed);
            // SAFETY: the owner holds `lock` (see `Heap`): nobody else touches the pool.
            if !unsafe { &*self.pool.get() }.has_chunks() {
                self.arena_max.store(self.fast_max, Ordering::Relaxed);
            }
        }
        self.revoked.set(n % REBIAS_AFTER);
    }

    /// Any thread, the owner included (it then pays the barrier for nothing).
    #[inline(always)]
    pub fn lock(&self) -> PoolGuard<'_, U, L> {
        self.lock.lock();
        if self.biased {
            self.keep_owner_out();
        }
        self.guard()
    }

    /// On a biased heap whose lock this thread just took: requests it (unless it is
    /// requested already), then waits until its owner is out of its fast paths. Out of
    /// line, so that `lock` stays small enough to inline where no heap is biased (the GIL).
    #[inline(never)]
    fn keep_owner_out(&self) {
        if !self.is_requested() {
            // Both gates closed before the barrier: an owner entering through either sees it.
            let arena_max = self.arena_max.load(Ordering::Relaxed);
            self.owner_max.store(0, Ordering::Relaxed);
            self.arena_max.store(0, Ordering::Relaxed);
            if !owner_fence::heavy() {
                self.refused(arena_max);
            }
        }
        let mut spins = 0u32;
        while self.busy.load(Ordering::Acquire) {
            spins = spins.wrapping_add(1);
            if spins % OWNER_CHECK_EVERY == 0 && self.owner_left_behind() {
                break;
            }
            model::spin_loop();
            #[cfg(feature = "shuttle")]
            model::yield_now();
        }
    }

    /// Whether `busy` was set by an owner that does not run in this process: one claimed
    /// in the process this child was forked from, by a thread other than the forking one
    /// (the only thread a child starts with). Copied in the middle of a call, that owner
    /// will never clear the flag here; this clears it, and the caller (holding the lock)
    /// takes the heap as the copy left it.
    #[cold]
    #[inline(never)]
    pub(crate) fn owner_left_behind(&self) -> bool {
        let pid = self.owner_pid.load(Ordering::Relaxed);
        if pid == 0 || pid == std::process::id() {
            return false;
        }
        if self.owner_token.load(Ordering::Relaxed) == thread_token::forked_by() {
            return false;
        }
        self.busy.store(false, Ordering::Relaxed);
        true
    }

    /// Notes that the calling thread, `token`, now owns this heap.
    fn claimed(&self, token: u64) {
        thread_token::watch_forks();
        self.owner_token.store(token, Ordering::Relaxed);
        self.owner_pid.store(std::process::id(), Ordering::Relaxed);
    }

    /// Test only: whether another thread requested the heap, and whether its remote-free
    /// list holds entries.
    #[cfg(test)]
    pub(crate) fn requested_and_pending(&self) -> (bool, bool) {
        (self.is_requested(), self.remote.pending())
    }

    /// Test only: whether the heap is requested, and whether the owner's allocation fast
    /// path (`enter_owned_arena`) is open.
    #[cfg(test)]
    pub(crate) fn gates(&self) -> (bool, bool) {
        (
            self.is_requested(),
            self.arena_max.load(Ordering::Relaxed) != 0,
        )
    }

    /// Test only: the remote-free list.
    #[cfg(test)]
    pub(crate) fn remote(&self) -> &RemoteFrees {
        &self.remote
    }

    /// Test only: makes the heap look entered by its owner, as a thread stopped inside
    /// its fast path leaves it.
    #[cfg(test)]
    pub(crate) fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Release);
    }

    /// Whether a thread other than the owner wanted the heap (the owner then locks).
    #[inline]
    fn is_requested(&self) -> bool {
        self.owner_max.load(Ordering::Relaxed) == 0
    }

    /// The kernel ran no barrier: the owner may be inside without having seen the request,
    /// so the heap cannot be had. Leaves it as it was (unrequested, both gates as they
    /// were, `arena_max` the value it had; unlocked, so that neither the owner nor a later
    /// caller waits on this one) and panics.
    #[cold]
    #[inline(never)]
    fn refused(&self, arena_max: usize) -> ! {
        // The owner may have seen the request meanwhile: it then locks, which is fine.
        self.owner_max.store(self.fast_max, Ordering::Relaxed);
        self.arena_max.store(arena_max, Ordering::Relaxed);
        // SAFETY: taken at the top of `lock`, by this thread.
        unsafe { self.lock.unlock() };
        panic!("membarrier refused after registering: a biased heap cannot be taken");
    }

    /// The heap, held, with the blocks other threads freed taken back first.
    #[inline(always)]
    fn guard(&self) -> PoolGuard<'_, U, L> {
        self.exclusive.enter();
        let mut guard = PoolGuard { heap: self };
        if self.biased && self.remote.pending() {
            Self::take_back(&mut guard);
        }
        guard
    }

    #[cold]
    #[inline(never)]
    fn take_back(guard: &mut PoolGuard<'_, U, L>) {
        let heap = guard.heap;
        heap.remote.drain(guard);
    }

    /// A free of `(p, n)`, a block of this heap's arena, by a thread that does not hold
    /// the heap: onto the remote-free list, no lock. False, changing nothing, if it is not
    /// a live unpinned block of its class there (or the list is full): lock and see.
    #[inline]
    fn free_remote(&self, p: usize, n: usize, claimed: bool) -> bool {
        self.biased && self.remote.push(p, n, claimed)
    }
}

/// A heap held with its lock (see `Heap`); lets go when dropped.
pub struct PoolGuard<'a, U: Upstream, L: RawLock> {
    heap: &'a Heap<U, L>,
}

impl<'a, U: Upstream, L: RawLock> PoolGuard<'a, U, L> {
    /// The heap, to lock it again after letting it go.
    pub fn heap(&self) -> &'a Heap<U, L> {
        self.heap
    }

    /// `CheckedPool::add_chunk`, closing the owner's allocation fast path first: it takes
    /// every block to lie in the arena, which a chunk's blocks do not (see `Heap`). The
    /// guard has the heap, so its owner is not inside: either this thread is the owner, or
    /// it requested the heap (both gates are 0 already) and waited it out.
    pub fn add_chunk(&mut self, chunk: NonNull<u8>, bytes: usize) {
        self.heap.arena_max.store(0, Ordering::Relaxed);
        (**self).add_chunk(chunk, bytes);
    }
}

impl<U: Upstream, L: RawLock> Deref for PoolGuard<'_, U, L> {
    type Target = CheckedPool<U>;
    #[inline]
    fn deref(&self) -> &CheckedPool<U> {
        // SAFETY: this guard has the heap (see `Heap`), so no other reference to the pool
        // exists.
        unsafe { &*self.heap.pool.get() }
    }
}

impl<U: Upstream, L: RawLock> DerefMut for PoolGuard<'_, U, L> {
    #[inline]
    fn deref_mut(&mut self) -> &mut CheckedPool<U> {
        // SAFETY: this guard has the heap (see `Heap`), so no other reference to the pool
        // exists.
        unsafe { &mut *self.heap.pool.get() }
    }
}

impl<U: Upstream, L: RawLock> Drop for PoolGuard<'_, U, L> {
    #[inline(always)]
    fn drop(&mut self) {
        self.heap.exclusive.leave();
        // SAFETY: a `PoolGuard` is made right after taking the lock.
        unsafe { self.heap.lock.unlock() }
    }
}

/// A biased heap entered by its owner (`Heap::enter_owned`): lets go with one store.
/// A type of its own rather than a `PoolGuard` state, so that letting go needs no branch
/// and no register kept across the pool's work.
pub struct OwnedGuard<'a, U: Upstream, L: RawLock> {
    heap: &'a Heap<U, L>,
}

impl<U: Upstream, L: RawLock> Deref for OwnedGuard<'_, U, L> {
    type Target = CheckedPool<U>;
    #[inline(always)]
    fn deref(&self) -> &CheckedPool<U> {
        // SAFETY: the owner stored `busy` and then saw the heap unrequested: the heap is its
        // alone (see `Heap`) until this guard drops.
        unsafe { &*self.heap.pool.get() }
    }
}

impl<U: Upstream, L: RawLock> DerefMut for OwnedGuard<'_, U, L> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut CheckedPool<U> {
        // SAFETY: as in `deref`.
        unsafe { &mut *self.heap.pool.get() }
    }
}

impl<U: Upstream, L: RawLock> Drop for OwnedGuard<'_, U, L> {
    #[inline(always)]
    fn drop(&mut self) {
        self.heap.exclusive.leave();
        self.heap.busy.store(false, Ordering::Release);
    }
}

/// `Heaps::grow` held, with the fill it guards; lets go when dropped.
struct Growing<'a, L: RawLock> {
    lock: &'a L,
    fill: &'a mut Option<u8>,
}

impl<L: RawLock> Deref for Growing<'_, L> {
    type Target = Option<u8>;
    fn deref(&self) -> &Option<u8> {
        self.fill
    }
}

impl<L: RawLock> DerefMut for Growing<'_, L> {
    fn deref_mut(&mut self) -> &mut Option<u8> {
        self.fill
    }
}

impl<L: RawLock> Drop for Growing<'_, L> {
    fn drop(&mut self) {
        // SAFETY: made by `Heaps::growing` right after taking the lock.
        unsafe { self.lock.unlock() }
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

// A std atomic: see `sync::model`. Ids start at 1: a thread's empty cache holds 0.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The `biased_id` of unbiased heaps: never a pool's id (they count up from 1), so never
/// cached.
const NOT_BIASED: u64 = u64::MAX;

pub struct Heaps<U: Upstream + Clone, L: RawLock> {
    /// This pool's name in `thread_token`'s cache: unique in the process, never reused.
    id: u64,
    /// Heap 0, boxed like the rest so that it stays where it is however the pool moves: a
    /// thread caches every heap it owns as a pointer, heap 0's included.
    first: Box<Heap<U, L>>,
    rest: Box<[OnceLock<Heap<U, L>>]>,
    /// The token of the thread holding each slot, or `FREE`; read at every call of a
    /// thread not holding slot 0, written only when a thread claims or exits.
    owners: Arc<[AtomicU64]>,
    arenas: Box<[ArenaRange]>,
    /// Whether owners enter their heaps without the lock (`Heap`): with more than one
    /// slot, where the kernel provides the asymmetric fence.
    biased: bool,
    /// `id` if `biased`, else `NOT_BIASED`, which no thread caches: the owner's fast
    /// path asks "biased, and mine?" with the one compare of the cached id.
    biased_id: u64,
    /// Serialises making heaps, with the chunk fill (debug mode) every heap gets: a lock
    /// of the heaps' kind, not a `Mutex`, so that a forked child takes over one that a
    /// thread the fork left behind held (see `raw_lock`) rather than wait for it forever.
    grow: L,
    /// Touched only by the holder of `grow`.
    fill: UnsafeCell<Option<u8>>,
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
        let biased = count > 1 && owner_fence::available();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            id,
            first: Box::new(Heap::new(first, biased)),
            rest: (1..count).map(|_| OnceLock::new()).collect(),
            owners: (0..count).map(|_| AtomicU64::new(FREE)).collect(),
            arenas,
            biased,
            biased_id: if biased { id } else { NOT_BIASED },
            grow: L::default(),
            fill: UnsafeCell::new(None),
            params,
            arena_size,
            upstream,
        })
    }

    /// K, the most heaps there may be.
    pub fn slots(&self) -> usize {
        self.owners.len()
    }

    /// Heap 0 locked, if it is the only heap (hence unbiased, with no remote frees to take
    /// back) and its lock is free at once; `None` otherwise. Calls nothing, for the
    /// call-free paths (`SharedPool::try_allocate_claimed`).
    #[inline(always)]
    pub fn try_lock_only(&self) -> Option<PoolGuard<'_, U, L>> {
        if !self.rest.is_empty() || !self.first.lock.try_lock() {
            return None;
        }
        debug_assert!(!self.first.biased);
        self.first.exclusive.enter();
        Some(PoolGuard { heap: &self.first })
    }

    /// Heap `i`, if made.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Heap<U, L>> {
        match i {
            0 => Some(&*self.first),
            _ => self.rest.get(i - 1)?.get(),
        }
    }

    /// The heaps made so far, heap 0 first.
    pub fn iter(&self) -> impl Iterator<Item = &Heap<U, L>> {
        std::iter::once(&*self.first).chain(self.rest.iter().filter_map(OnceLock::get))
    }

    /// The heap the calling thread owns, if the heaps are biased and it has one cached:
    /// the owner's fast path (`Heap::enter_owned`), one thread-local load and one compare
    /// (none with a lock that has no owner heaps).
    /// `None` sends the caller to `mine`, which finds (and caches) its heap.
    #[inline(always)]
    pub fn mine_biased(&self) -> Option<&Heap<U, L>> {
        if !L::OWNER_HEAPS {
            return None;
        }
        let heap = thread_token::cached_heap(self.biased_id)?;
        // SAFETY: `cache` stored this pointer under this pool's id, which no other pool
        // has: it points at one of the pool's heaps, each boxed, so it stays where it is
        // however the pool moves, and lives as long as the pool.
        Some(unsafe { &*heap.cast::<Heap<U, L>>() })
    }

    /// The heap the calling thread allocates from, and whether the thread owns it (holds
    /// its slot). With one slot nobody owns heap 0: all lock it.
    #[inline(always)]
    pub fn mine(&self) -> (&Heap<U, L>, bool) {
        if self.rest.is_empty() {
            return (&self.first, false);
        }
        match thread_token::cached_heap(self.id) {
            // SAFETY: as in `mine_biased`.
            Some(heap) => (unsafe { &*heap.cast::<Heap<U, L>>() }, true),
            None => self.mine_slow(),
        }
    }

    /// Whether the calling thread owns `heap` (has it cached as its own).
    #[inline]
    fn is_mine(&self, heap: &Heap<U, L>) -> bool {
        thread_token::cached_heap(self.id).is_some_and(|c| std::ptr::eq(c.cast(), heap))
    }

    /// `heap` held by the calling thread, whoever owns it: the owner takes the lock only,
    /// anyone else also makes the owner stay out (`Heap::lock`).
    #[inline]
    pub fn lock_any<'a>(&'a self, heap: &'a Heap<U, L>) -> PoolGuard<'a, U, L> {
        if self.is_mine(heap) {
            heap.lock_owned()
        } else {
            heap.lock()
        }
    }

    /// A thread without a heap cached for this pool: its own slot, else a free one (the
    /// lowest, so heap 0 first and made heaps before new ones), cached; else a heap shared
    /// by token, not cached, so that a slot freed later is claimed.
    #[inline(never)]
    fn mine_slow(&self) -> (&Heap<U, L>, bool) {
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
        (self.get(shared).unwrap_or(&self.first), false)
    }

    /// The heap of slot `i`, which the calling thread holds, noted as its own.
    fn cache(&self, i: usize) -> (&Heap<U, L>, bool) {
        let Some(heap) = self.get(i) else {
            // No heap in a held slot: making it failed; heap 0 serves, shared.
            return (&self.first, false);
        };
        heap.claimed(thread_token::current());
        thread_token::cache_heap(self.id, std::ptr::from_ref(heap).cast());
        (heap, true)
    }

    /// Heap `i`, made now if it is not yet; `None` if its arena cannot be reserved.
    fn get_or_make(&self, i: usize) -> Option<&Heap<U, L>> {
        if let Some(h) = self.get(i) {
            return Some(h);
        }
        let fill = self.growing();
        if let Some(h) = self.get(i) {
            return Some(h);
        }
        let mut pool =
            CheckedPool::new(self.params, self.arena_size, self.upstream.clone()).ok()?;
        pool.set_chunk_fill(*fill);
        self.arenas[i].publish(&pool);
        let _ = self.rest[i - 1].set(Heap::new(pool, self.biased));
        self.get(i)
    }

    /// Debug mode: every chunk of every heap, present or future, filled with `byte`.
    pub fn set_chunk_fill(&self, byte: Option<u8>) {
        let mut fill = self.growing();
        *fill = byte;
        for h in self.iter() {
            h.lock().set_chunk_fill(byte);
        }
    }

    /// The chunk fill, with `grow` held until the guard drops.
    fn growing(&self) -> Growing<'_, L> {
        self.grow.lock();
        Growing {
            lock: &self.grow,
            // SAFETY: `grow` is held, and only its holder touches `fill`.
            fill: unsafe { &mut *self.fill.get() },
        }
    }

    /// The heap whose arena holds `addr`.
    #[inline]
    fn by_arena(&self, addr: usize) -> Option<&Heap<U, L>> {
        // Heap 0 apart: a pool used from one thread pays one range check.
        if self.arenas[0].contains(addr) {
            return Some(&*self.first);
        }
        let i = self.arenas.iter().position(|a| a.contains(addr))?;
        self.get(i)
    }

    /// The first heap, locked, for which `found` holds; else heap 0, locked (whose answer
    /// is then every heap's: the address is not theirs).
    fn find_locked(&self, found: impl Fn(&CheckedPool<U>) -> bool) -> PoolGuard<'_, U, L> {
        for h in self.iter() {
            let pool = self.lock_any(h);
            if found(&pool) {
                return pool;
            }
        }
        self.lock_any(&self.first)
    }

    /// The heap that owns the block `(p, n)`, or would if it were live (so that its errors
    /// are those of one SGI pool), locked; heap 0 if no heap knows `p`.
    #[inline]
    pub fn lock_owner(&self, p: usize, n: usize) -> PoolGuard<'_, U, L> {
        if self.rest.is_empty() {
            return self.first.lock();
        }
        if let Some(h) = self.by_arena(p) {
            return self.lock_any(h);
        }
        // Upstream chunks and large blocks: only their heap's record knows them.
        self.find_locked(|pool| !matches!(pool.validate(p, n), Err(AllocError::Foreign { .. })))
    }

    /// Frees `(p, n)` (held by a container if `claimed`) on its heap's remote-free list,
    /// if the caller does not own that heap and the block is a live, unpinned block of the
    /// heap's arena and of `n`'s class: no lock. False, changing nothing, otherwise.
    #[inline]
    pub fn free_remote(&self, p: usize, n: usize, claimed: bool) -> bool {
        if !self.biased {
            return false;
        }
        match self.by_arena(p) {
            Some(h) => !self.is_mine(h) && h.free_remote(p, n, claimed),
            None => false,
        }
    }

    /// The heap holding the live block that contains `addr`, locked; heap 0 if none does.
    pub fn lock_holding(&self, addr: usize) -> PoolGuard<'_, U, L> {
        if self.rest.is_empty() {
            return self.first.lock();
        }
        if let Some(h) = self.by_arena(addr) {
            return self.lock_any(h);
        }
        self.find_locked(|pool| pool.block_containing(addr).is_some())
    }
}
