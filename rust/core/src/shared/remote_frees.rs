//! A heap's remote-free list: blocks of its arena freed by threads that do not own it,
//! without its lock and without touching the owner's fast path, which the owner takes
//! back onto its SGI free lists when it next holds the heap on a slow path (`drain`).
//!
//! A free by another thread (`push`) checks the address against the arena (immutable
//! once the heap is made), reserves a slot, claims the block with one compare-exchange of
//! its class byte (`class_map::claim_remote`, from "live, class k, claimed as the caller
//! says, not pinned or moving" to "remote") and writes the address into the slot, or
//! `REFUSED` if the claim failed. Anything else (another region, a wrong size, a pinned,
//! moving or freed block, a full buffer) is left to the caller's locked path, which frees
//! it or gives the exact error: misuse is still refused at the call that makes it. The
//! freed block itself is never written: a racy double free (the owner's fast path and
//! another thread at once) may leave an entry whose block is no longer remote, which
//! `drain` drops. Such a stale entry may also find its block remote again, claimed by a
//! later `push`, and take it back first: harmless because that `push` holds a slot already
//! (reserved before its claim), so its block is never handed back to its caller, whose
//! locked path would free it a second time (a block handed out twice).
//!
//! A forked child starts with the forking thread alone: a slot reserved by another thread
//! that the fork copied between reserving and writing would never be written there. So
//! `tail` also says which slots were reserved in an ancestor process (`inherited`): it
//! notes the generation of the process that last reserved one (`raw_lock::generation`,
//! how many forks deep a process is), and the first reservation of a new generation
//! notes the slots below it as inherited. A drain waits for every slot reserved in its
//! own process (its writer runs) and takes an inherited one as it finds it.
//!
//! Invariants (`tail` holds `index`, `inherited <= index <= CAP` and a generation):
//! - `slots[index..CAP]` are 0; each of `slots[0..index]` is 0 until the thread that
//!   reserved it writes its block's address (or `REFUSED`) there, once;
//! - the slots from `inherited(tail, g)` on were reserved in the process of generation
//!   `g`, whose writers run there;
//! - every byte of the arena that is "remote" was made so by a `push` holding a slot
//!   reserved before its claim and not yet drained: the owner alone clears a remote byte,
//!   in `drain`, and nothing else ever changes one;
//! - so after `drain` (which waits for the reserved slots to be written), each remote byte
//!   belongs to a `push` still running, and the heap's statistics, which count such blocks
//!   live until taken back (they are on no free list), satisfy its conservation:
//!   `heap_size == live_bytes + free_bytes + chunk_bytes_left`.

use crate::checked::atomic_bytes::Shared;
use crate::checked::class_map;
use crate::checked::CheckedPool;
use crate::raw_lock::generation;
use crate::sgi::upstream::Upstream;
use crate::sync::model;
use model::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::atomic::AtomicU8;

/// Entries a heap holds before other threads' frees take its lock again. Enough for a
/// consumer thread to run far ahead of a producer that drains on each refill.
const CAP: usize = if cfg!(feature = "shuttle") { 2 } else { 1024 };

/// What a slot holds when its `push` found the block not claimable: no arena address
/// (misaligned), so never taken back.
const REFUSED: usize = 1;

/// On cache lines of its own: other threads write `tail` at every free, and neither the
/// owner's fast path (which writes its heap's other fields) nor their reads of the
/// constant fields should miss because of it.
#[repr(align(128))]
pub struct RemoteFrees {
    tail: Tail,
    bytes: Shared,
    base: usize,
    len: usize,
    shift: u32,
    fast_max: usize,
    slots: Box<[AtomicUsize]>,
}

/// `pack(generation, inherited, index)`: see the module's top.
#[repr(align(128))]
struct Tail(AtomicU64);

fn pack(generation: u32, inherited: usize, index: usize) -> u64 {
    u64::from(generation) << 32 | (inherited as u64) << 16 | index as u64
}

/// How many slots are reserved.
fn index(tail: u64) -> usize {
    (tail & 0xffff) as usize
}

/// How many of the reserved slots, seen from a process of generation `g`, were reserved in
/// an ancestor process: all of them if the last was.
fn inherited(tail: u64, g: u32) -> usize {
    if (tail >> 32) as u32 == g {
        (tail >> 16 & 0xffff) as usize
    } else {
        index(tail)
    }
}

impl RemoteFrees {
    /// The list of `pool`'s arena, whose map must outlive it (the heap holds both).
    pub fn new<U: Upstream>(pool: &CheckedPool<U>) -> Self {
        let (bytes, base, len, shift, fast_max) = pool.remote_target();
        Self {
            bytes,
            base,
            len,
            shift,
            fast_max,
            tail: Tail(AtomicU64::new(0)),
            slots: (0..CAP).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Frees `(p, n)`, a live unpinned block of the arena held by a container exactly when
    /// `claimed`, for a thread that does not hold the heap; false, changing no block, for
    /// anything else (whose slot, if it got one, says `REFUSED`) or a full list (the
    /// caller then takes the heap's lock).
    pub fn push(&self, p: usize, n: usize, claimed: bool) -> bool {
        let Some((byte, k)) = self.target(p, n) else {
            return false;
        };
        // The slot before the claim: a block once remote is the owner's alone to change
        // (see the module's top), so a claim may not be undone when the list is full.
        let Some(slot) = self.reserve() else {
            return false;
        };
        self.fill(slot, byte, p, k, claimed)
    }

    /// The class byte of `(p, n)` and its granules, if `p` is a granule of the arena and
    /// `n` a size of the fast paths.
    #[inline]
    fn target(&self, p: usize, n: usize) -> Option<(&AtomicU8, usize)> {
        if n.wrapping_sub(1) >= self.fast_max {
            return None;
        }
        let off = p.wrapping_sub(self.base);
        if off >= self.len || off & ((1 << self.shift) - 1) != 0 {
            return None;
        }
        let k = ((n - 1) >> self.shift) + 1;
        // SAFETY: the heap holding this list also holds the map the bytes are in.
        let byte = unsafe { self.bytes.get(off >> self.shift) }?;
        Some((byte, k))
    }

    /// Claims the block whose class byte is `byte` and writes the reserved `slot`: `p`,
    /// or `REFUSED` if the block was not one to claim. Whether it claimed it.
    #[inline]
    fn fill(&self, slot: &AtomicUsize, byte: &AtomicU8, p: usize, k: usize, claimed: bool) -> bool {
        #[cfg(feature = "shuttle")]
        model::yield_now();
        // No load of the byte before: one exclusive fetch of its line, no shared one.
        let taken = class_map::claim_remote(byte, k, claimed);
        #[cfg(feature = "shuttle")]
        model::yield_now();
        // Written either way: `drain` waits for every reserved slot.
        // Release: the block's last writes (its holder's) happen before the owner reuses it.
        slot.store(if taken { p } else { REFUSED }, Ordering::Release);
        taken
    }

    /// A slot of `slots[index]`, `index` moved past it; `None` if the list is full.
    fn reserve(&self) -> Option<&AtomicUsize> {
        let g = generation();
        let mut t = self.tail.0.load(Ordering::Acquire);
        loop {
            let i = index(t);
            if i == CAP {
                return None;
            }
            let next = pack(g, inherited(t, g), i + 1);
            match (self.tail.0).compare_exchange_weak(t, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(&self.slots[i]),
                Err(now) => t = now,
            }
        }
    }

    /// Whether any entry may wait: one load, for the slow paths that drain.
    #[inline(always)]
    pub fn pending(&self) -> bool {
        index(self.tail.0.load(Ordering::Relaxed)) != 0
    }

    /// The address (or `REFUSED`) a slot reserved in this process holds once its `push`,
    /// which runs here, writes it.
    fn written(slot: &AtomicUsize) -> usize {
        let mut spins = 0u32;
        loop {
            // Acquire: with the `push`'s Release, its claim and its holder's writes.
            let p = slot.load(Ordering::Acquire);
            if p != 0 {
                return p;
            }
            spins = spins.wrapping_add(1);
            // The pusher is between reserving and writing: a few instructions.
            if spins % 64 == 0 {
                model::yield_now();
            } else {
                model::spin_loop();
            }
            #[cfg(feature = "shuttle")]
            model::yield_now();
        }
    }

    /// Test only: a slot reserved and not written, as a thread copied by a fork between
    /// the two leaves it, or a thread of this process that has yet to write it; its index.
    #[cfg(test)]
    pub(crate) fn reserve_unwritten(&self) -> usize {
        let slot = self.reserve().expect("room");
        (self.slots.iter())
            .position(|s| std::ptr::eq(s, slot))
            .unwrap()
    }

    /// Test only: the rest of a `push` of `(p, n)` whose slot `reserve_unwritten` gave.
    #[cfg(test)]
    pub(crate) fn fill_reserved(&self, i: usize, p: usize, n: usize) -> bool {
        let (byte, k) = self.target(p, n).expect("a block of the arena");
        self.fill(&self.slots[i], byte, p, k, false)
    }

    /// Takes back every entry onto `pool`'s free lists (stale ones dropped), waiting for
    /// the slots reserved in this process to be written; the caller holds the heap (owner
    /// or lock). How many blocks it took back.
    pub fn drain<U: Upstream>(&self, pool: &mut CheckedPool<U>) -> usize {
        let g = generation();
        let mut from = 0;
        let mut taken = 0;
        loop {
            let t = self.tail.0.load(Ordering::Acquire);
            let (end, inherited) = (index(t), inherited(t, g));
            for (i, slot) in self.slots.iter().enumerate().take(end).skip(from) {
                let p = if i < inherited {
                    // Its writer, if it has not written, was left behind by a fork: its
                    // block stays remote, lost to this process, which beats waiting forever.
                    slot.load(Ordering::Acquire)
                } else {
                    Self::written(slot)
                };
                if p != 0 && p != REFUSED {
                    taken += usize::from(pool.take_back_remote(p));
                }
                slot.store(0, Ordering::Relaxed);
            }
            // Release: the zeroed slots, before a later `reserve` (Acquire) hands them out.
            let empty = pack(g, 0, 0);
            match (self.tail.0).compare_exchange(t, empty, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return taken,
                Err(_) => from = end,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AllocError, MallocAlloc, Params};
    use std::sync::Arc;

    fn pool() -> CheckedPool<Arc<MallocAlloc>> {
        let upstream = Arc::new(MallocAlloc::new(None));
        CheckedPool::new(Params::default(), 1 << 20, upstream).unwrap()
    }

    fn small(pool: &mut CheckedPool<Arc<MallocAlloc>>, n: usize) -> usize {
        pool.allocate_small(n, false).unwrap()
    }

    #[test]
    fn a_remote_free_stays_live_until_drained_then_is_free_exactly_once() {
        let mut pool = pool();
        let list = RemoteFrees::new(&pool);
        let (p, q) = (small(&mut pool, 8), small(&mut pool, 24));
        let before = pool.stats();
        assert!(list.push(p, 8, false) && list.push(q, 24, false));
        assert!(list.pending());
        // Counted live, off every free list: conservation holds before the drain.
        assert_eq!(pool.stats(), before);
        assert_eq!(pool.remote_blocks(), 2);
        pool.check_invariants();
        // No live block to the owner's checks: a second free is refused, synchronously.
        assert!(matches!(pool.validate(p, 8), Err(AllocError::NotLive { addr }) if addr == p));
        assert!(!list.push(p, 8, false), "freed twice");
        assert!(matches!(pool.pin(q), Err(AllocError::NotLive { addr }) if addr == q));
        assert_eq!(list.drain(&mut pool), 2);
        assert!(!list.pending() && pool.remote_blocks() == 0);
        assert_eq!(pool.stats().live_blocks, before.live_blocks - 2);
        assert_eq!(pool.free_list(0)[0], p);
        assert_eq!(pool.free_list(2)[0], q);
        assert_eq!(list.drain(&mut pool), 0, "taken back once");
        pool.check_invariants();
    }

    #[test]
    fn only_live_unpinned_blocks_of_the_named_class_and_claim_are_taken() {
        let mut pool = pool();
        let list = RemoteFrees::new(&pool);
        let p = small(&mut pool, 16);
        let c = pool.allocate_small(16, true).unwrap();
        let before = pool.stats();
        for (addr, n, claimed) in [
            (p, 8, false),       // another class
            (p, 16, true),       // not a container's
            (c, 16, false),      // a container's
            (p + 8, 16, false),  // misaligned
            (p + 16, 16, false), // not live
            (p, 0, false),
            (p, 1 << 20, false),        // not a pool size
            (usize::MAX - 7, 8, false), // outside the arena
        ] {
            assert!(!list.push(addr, n, claimed), "{addr:#x} {n} {claimed}");
        }
        pool.pin(p).unwrap();
        assert!(!list.push(p, 16, false), "pinned");
        pool.unpin(p);
        assert_eq!(pool.stats(), before);
        assert_eq!(pool.remote_blocks(), 0, "a refusal claims no block");
        // The refused claims left `REFUSED` in their slots: drained, they take nothing.
        assert_eq!(list.drain(&mut pool), 0);
        assert_eq!(pool.stats(), before);
        assert!(list.push(c, 16, true) && list.push(p, 16, false));
        assert_eq!(list.drain(&mut pool), 2);
        assert_eq!(pool.stats().live_blocks, before.live_blocks - 2);
        pool.check_invariants();
    }

    #[test]
    fn an_entry_whose_block_came_back_live_is_stale_and_dropped() {
        let mut pool = pool();
        let list = RemoteFrees::new(&pool);
        let p = small(&mut pool, 8);
        assert!(list.push(p, 8, false));
        // The owner took it back (as if it had won a racing free), and handed it out again.
        assert!(pool.take_back_remote(p));
        assert_eq!(small(&mut pool, 8), p);
        let live = pool.stats().live_blocks;
        assert_eq!(list.drain(&mut pool), 0, "stale");
        assert_eq!(pool.stats().live_blocks, live, "still live");
        assert!(pool.validate(p, 8).is_ok());
        pool.check_invariants();
    }

    #[test]
    fn a_full_list_refuses_until_drained() {
        let mut pool = pool();
        let list = RemoteFrees::new(&pool);
        let blocks: Vec<usize> = (0..=CAP).map(|_| small(&mut pool, 8)).collect();
        for &p in &blocks[..CAP] {
            assert!(list.push(p, 8, false));
        }
        assert!(!list.push(blocks[CAP], 8, false), "full");
        assert!(pool.validate(blocks[CAP], 8).is_ok(), "refused: still live");
        assert_eq!(list.drain(&mut pool), CAP);
        assert!(list.push(blocks[CAP], 8, false));
        assert_eq!(list.drain(&mut pool), 1);
        assert_eq!(pool.stats().live_blocks, 0);
        pool.check_invariants();
    }

    #[test]
    fn in_a_forked_child_a_drain_waits_for_a_slot_reserved_there() {
        use crate::raw_lock::tests::in_forked_child;
        let mut pool = pool();
        let list = RemoteFrees::new(&pool);
        let p = small(&mut pool, 8);
        in_forked_child("the drain waited forever", || {
            // A thread of the child reserved a slot and is slow to write it (descheduled, say):
            // it runs here, so the drain waits for it rather than take it for one a fork
            // left behind (a drain that gave up would leave the late write past the tail).
            let i = list.reserve_unwritten();
            let taken = std::thread::scope(|s| {
                let list = &list;
                s.spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    assert!(list.fill_reserved(i, p, 8));
                });
                list.drain(&mut pool)
            });
            let clean = list.slots.iter().all(|s| s.load(Ordering::Relaxed) == 0);
            taken == 1 && clean && pool.remote_blocks() == 0 && pool.stats().live_blocks == 0
        });
    }

    #[test]
    fn threads_freeing_at_once_lose_no_block() {
        let mut pool = pool();
        let list = RemoteFrees::new(&pool);
        let blocks: Vec<usize> = (0..CAP).map(|_| small(&mut pool, 8)).collect();
        std::thread::scope(|s| {
            for half in blocks.chunks(CAP / 2) {
                let list = &list;
                s.spawn(move || assert!(half.iter().all(|&p| list.push(p, 8, false))));
            }
        });
        assert_eq!(list.drain(&mut pool), CAP);
        let freed: std::collections::BTreeSet<usize> = pool.free_list(0).into_iter().collect();
        assert_eq!(freed.len(), pool.free_list(0).len(), "no block twice");
        assert!(blocks.iter().all(|p| freed.contains(p)), "every block free");
        assert_eq!(pool.stats().live_blocks, 0);
        pool.check_invariants();
    }
}
