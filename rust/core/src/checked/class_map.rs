//! Which pool blocks of a region are live, one byte per `align`-byte granule, so that
//! misuse is caught without a header in the blocks (the pool's memory stays header-free)
//! and the checked fast paths cost one byte store to allocate and one byte compare and
//! store to free.
//!
//! For every live block of `k` granules starting at granule `g`:
//!   `byte[g] & TAG == min(k, BIG)`, `byte[g] & CLAIMED` says whether a container holds
//!   it, `byte[g] & PINNED` whether it is exported, `byte[g+1 .. g+k] == 0`; and
//!   `big[g] == k` exactly when `k >= BIG`.
//! A block freed by a thread other than its heap's owner and not yet taken back by the
//! owner (see `shared::remote_frees`) keeps its tag with both flags set,
//! `byte[g] == REMOTE | k` (`k < BIG`; no live block is both claimed and pinned): it still
//! occupies its granules, but it is no live block to any check, and only the owner's
//! `take_remote` clears it.
//! Every other byte is 0, and `bytes.len() == ceil(len / align)`: every address of the
//! region has a byte, so `off < len` alone proves a granule index in range. So live
//! blocks are the nonzero bytes, and since they never overlap, the block containing an
//! address is the nearest nonzero byte at or before it.
//! A free's fast path compares the byte with the one an unpinned block of its class has:
//! any flag it should not have sends it to the full check. Blocks of `BIG` granules or more
//! exist only with more than 62 size classes; their exact sizes are kept aside so the byte
//! stays one byte.
//!
//! Who writes a byte: the map's owner (its heap's owner, or whoever holds the heap), with
//! plain Relaxed loads and stores on the fast paths (0 → live, live → 0) and
//! compare-exchanges elsewhere; and any thread, through `claim_remote` only, with one
//! compare-exchange from an unpinned live byte `k` or `k | CLAIMED` to `REMOTE | k`.

use crate::checked::atomic_bytes::{AtomicBytes, Shared};
use crate::checked::granules::Granules;
use crate::error::AllocError;
use std::collections::HashMap;
use std::sync::atomic::{
    AtomicU8,
    Ordering::{Acquire, Relaxed, Release},
};

/// Set in a block's byte while a container holds the block.
const CLAIMED: u8 = 0x80;
/// Set in a block's byte while the block is exported (pinned): it may not be freed.
const PINNED: u8 = 0x40;
/// Both flags: a block freed by another thread, not yet taken back by the owner.
const REMOTE: u8 = CLAIMED | PINNED;
/// The bits of a block's byte that hold its tag.
const TAG: u8 = 0x3f;
/// The tag of a block of this many granules or more, whose size is in `big`.
const BIG: usize = TAG as usize;
/// The most granules a block of the fast paths (`mark_new_small`, `take_small`) has.
pub const SMALL_GRANULES: usize = BIG - 1;

pub struct ClassMap {
    region: Granules,
    /// `align - 1`: the offset bits a block's address has clear.
    mask: usize,
    bytes: AtomicBytes,
    big: HashMap<usize, usize>,
}

/// The byte of an unclaimed, unpinned block of `k` granules.
#[inline(always)]
fn tag(k: usize) -> u8 {
    k.min(BIG) as u8
}

/// Whether `b` is the byte of a block freed by another thread (see the module's top).
#[inline(always)]
fn is_remote(b: u8) -> bool {
    b & REMOTE == REMOTE
}

/// The byte of a live block of `1 <= k < BIG` granules, unpinned, claimed or not: the
/// byte a free of that block expects.
#[inline(always)]
pub fn live_byte(k: usize, claimed: bool) -> u8 {
    k as u8 | if claimed { CLAIMED } else { 0 }
}

/// A free by a thread that does not own the map: claims the block whose byte is `byte`
/// if it holds `live_byte(k, claimed)`, with one compare-exchange to `REMOTE | k`; false
/// changes nothing (the block is not such a block now).
#[inline]
pub fn claim_remote(byte: &AtomicU8, k: usize, claimed: bool) -> bool {
    debug_assert!((1..BIG).contains(&k));
    let live = live_byte(k, claimed);
    // Release: the block's last writes (its holder's) happen before whoever takes it back
    // on seeing this byte (`take_remote`), which may be a stale entry's drain, not
    // synchronised with this claim's own slot.
    byte.compare_exchange(live, REMOTE | k as u8, Release, Relaxed)
        .is_ok()
}

impl ClassMap {
    /// A map of `[base, base+len)` at granularity `align` (a power of two).
    pub fn new(base: usize, len: usize, align: usize) -> Self {
        let region = Granules::new(base, len, align);
        Self {
            region,
            mask: align - 1,
            bytes: AtomicBytes::zeroed(len.div_ceil(align)),
            big: HashMap::new(),
        }
    }

    pub fn base(&self) -> usize {
        self.region.base
    }

    /// The region's length in bytes.
    pub fn region_len(&self) -> usize {
        self.region.len
    }

    /// The bytes, for threads that free blocks of this map without holding it: valid while
    /// the map lives.
    pub fn shared_bytes(&self) -> Shared {
        self.bytes.shared()
    }

    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        self.region.contains(addr)
    }

    #[inline(always)]
    fn byte(&self, g: usize) -> u8 {
        self.bytes[g].load(Relaxed)
    }

    /// The size in bytes of the block whose byte at granule `g` is `b != 0`.
    fn size_at(&self, g: usize, b: u8) -> usize {
        let k = match (b & TAG) as usize {
            BIG => self.big[&g],
            k => k,
        };
        k << self.region.shift
    }

    /// Records a new live block of `k >= 1` granules at `addr`, claimed for a container or
    /// not (its byte is 0: no other thread writes it).
    #[inline]
    pub fn mark_new(&mut self, addr: usize, k: usize, claimed: bool) {
        let g = self.region.granule(addr);
        if k >= BIG {
            self.mark_big(g, k);
        }
        self.bytes[g].store(tag(k) | if claimed { CLAIMED } else { 0 }, Relaxed);
    }

    #[cold]
    #[inline(never)]
    fn mark_big(&mut self, g: usize, k: usize) {
        self.big.insert(g, k);
    }

    /// Whether the live block at `addr` is held by a container.
    #[inline]
    pub fn is_claimed(&self, addr: usize) -> bool {
        self.flag(addr, CLAIMED)
    }

    /// Marks (or unmarks) the live block at `addr` as held by a container; false, changing
    /// nothing, if it is no live block (another thread freed it meanwhile).
    #[must_use]
    pub fn set_claimed(&mut self, addr: usize, claimed: bool) -> bool {
        self.set_flag(addr, CLAIMED, claimed)
    }

    /// Whether the live block at `addr` is exported.
    pub fn is_pinned(&self, addr: usize) -> bool {
        self.flag(addr, PINNED)
    }

    /// Marks (or unmarks) the live block at `addr` as exported; false as `set_claimed`.
    #[must_use]
    pub fn set_pinned(&mut self, addr: usize, pinned: bool) -> bool {
        self.set_flag(addr, PINNED, pinned)
    }

    fn flag(&self, addr: usize, flag: u8) -> bool {
        let b = self.byte(self.region.granule(addr));
        b & flag != 0 && !is_remote(b)
    }

    /// A compare-exchange: another thread's `claim_remote` may change the byte meanwhile.
    fn set_flag(&mut self, addr: usize, flag: u8, on: bool) -> bool {
        let byte = &self.bytes[self.region.granule(addr)];
        let mut b = byte.load(Relaxed);
        loop {
            if b == 0 || is_remote(b) {
                return false;
            }
            let new = if on { b | flag } else { b & !flag };
            match byte.compare_exchange(b, new, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(now) => b = now,
            }
        }
    }

    /// The size in bytes of the live block starting at `addr` (inside this region), or 0
    /// if none starts there: a realloc without a size finds its class here.
    #[inline]
    pub fn size_of(&self, addr: usize) -> usize {
        let g = self.region.granule(addr);
        let b = self.byte(g);
        match (b & TAG) as usize {
            0 => 0,
            _ if addr & self.mask != 0 || is_remote(b) => 0,
            BIG => self.size_at(g, b),
            k => k << self.region.shift,
        }
    }

    /// Forgets the live block starting at `addr` (inside this region) and returns its size,
    /// or returns 0 and changes nothing if none starts there: a free without a size.
    #[inline]
    pub fn take(&mut self, addr: usize) -> usize {
        if addr & self.mask != 0 {
            return 0;
        }
        let g = self.region.granule(addr);
        let b = self.byte(g);
        if b == 0 || is_remote(b) {
            return 0;
        }
        let size = self.size_at(g, b);
        if self.unmark(addr) {
            size
        } else {
            0
        }
    }

    /// Forgets the live block at `addr`, which `check` accepted; false, changing nothing,
    /// if another thread freed it since (`claim_remote`).
    #[inline]
    #[must_use]
    pub fn unmark(&mut self, addr: usize) -> bool {
        let g = self.region.granule(addr);
        let byte = &self.bytes[g];
        let mut b = byte.load(Relaxed);
        loop {
            if b == 0 || is_remote(b) {
                return false;
            }
            match byte.compare_exchange(b, 0, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(now) => b = now,
            }
        }
        if (b & TAG) as usize == BIG {
            self.big.remove(&g);
        }
        true
    }

    /// Takes back a block that another thread freed (`claim_remote`): its granules if the
    /// byte at `addr` says so, the byte cleared; else `None`, changing nothing (an entry
    /// made stale by a racing free the owner won).
    pub fn take_remote(&mut self, addr: usize) -> Option<usize> {
        let off = addr.wrapping_sub(self.region.base);
        if off >= self.region.len || off & self.mask != 0 {
            return None;
        }
        let byte = &self.bytes[off >> self.region.shift];
        // Acquire: with `claim_remote`'s Release; the caller writes the block next.
        let b = byte.load(Acquire);
        if !is_remote(b) {
            return None;
        }
        // Only the owner changes a remote byte: no compare-exchange needed.
        byte.store(0, Relaxed);
        Some((b & TAG) as usize)
    }

    /// Ok if a live block of exactly `size > 0` bytes starts at `addr` (inside this region).
    pub fn check(&self, addr: usize, size: usize) -> Result<(), AllocError> {
        let off = addr.wrapping_sub(self.region.base);
        if off & self.mask != 0 {
            let align = self.mask + 1;
            return Err(AllocError::Misaligned { addr, align });
        }
        let g = off >> self.region.shift;
        let k = size >> self.region.shift;
        let b = self.byte(g);
        // Size 0 has tag 0, the byte of every granule no block starts at: never a block.
        if k != 0 && b & TAG == tag(k) && !is_remote(b) && (k < BIG || self.big[&g] == k) {
            return Ok(());
        }
        Err(self.mismatch(addr, g, b, size))
    }

    #[cold]
    fn mismatch(&self, addr: usize, g: usize, b: u8, size: usize) -> AllocError {
        if b == 0 || is_remote(b) {
            return AllocError::NotLive { addr };
        }
        AllocError::SizeMismatch {
            addr,
            size,
            block_size: self.size_at(g, b),
        }
    }

    /// `log2(align)`: the granule's, which is also the size classes' shift.
    #[inline(always)]
    pub fn shift(&self) -> u32 {
        let shift = self.region.shift;
        // SAFETY: `log2` of a power of two (`Granules::new` asserts it) that fits in a
        // `usize`. Said so that a shift by it needs no mask of its amount.
        unsafe { std::hint::assert_unchecked(shift < usize::BITS) };
        shift
    }

    /// The granule of `addr` if it lies in the region: one compare.
    #[inline(always)]
    pub fn granule_in(&self, addr: usize) -> Option<usize> {
        self.granule_in_by(addr, self.shift())
    }

    /// `granule_in` with the map's `shift` given: the fast paths pass a constant (see
    /// `CheckedPool`'s `sgi_shift`), which the compiler folds into the instruction.
    #[inline(always)]
    pub fn granule_in_by(&self, addr: usize, shift: u32) -> Option<usize> {
        debug_assert_eq!(shift, self.region.shift);
        let off = addr.wrapping_sub(self.region.base);
        (off < self.region.len).then_some(off >> shift)
    }

    /// The granule of `addr`, which the caller knows lies in the region: `granule_in`
    /// without its compare, with the map's `shift` given (as `granule_in_by`).
    ///
    /// # Safety
    /// `addr` lies in the region (`contains(addr)`).
    #[inline(always)]
    pub unsafe fn granule_of_member_by(&self, addr: usize, shift: u32) -> usize {
        debug_assert!(self.contains(addr), "{addr:#x} outside the region");
        debug_assert_eq!(shift, self.region.shift);
        addr.wrapping_sub(self.region.base) >> shift
    }

    /// Records a new live block of `1 <= k < BIG` granules at granule `g`, claimed for a
    /// container or not: the allocation fast path, one byte store (the byte is 0, which no
    /// other thread changes).
    ///
    /// # Safety
    /// `g` is what `granule_in_by` or `granule_of_member_by` of this map returned (so
    /// `g < bytes.len()`).
    #[inline(always)]
    pub unsafe fn mark_small(&mut self, g: usize, k: usize, claimed: bool) {
        debug_assert!((1..BIG).contains(&k) && g < self.bytes.len());
        // SAFETY: `granule_in_by` found `off < len` (or the caller of `granule_of_member_by`
        // promised it), so `g < ceil(len / align) == bytes.len()` (see `new`).
        let byte = unsafe { self.bytes.get_unchecked(g) };
        byte.store(live_byte(k, claimed), Relaxed);
    }

    /// Forgets the live block at `addr` and says true if it is one of `1 <= k < BIG`
    /// granules, unpinned, and held by a container exactly when `claimed`: the free fast
    /// path, one bounds check, a load and a store (no read-modify-write: another thread's
    /// `claim_remote` between them makes that thread's entry stale, see
    /// `shared::remote_frees`). `false` changes nothing and says nothing more; `check`
    /// then says what is wrong. Callers keep `k < BIG` (a `BIG` tag does not give the size).
    #[inline(always)]
    pub fn take_small(&mut self, addr: usize, k: usize, claimed: bool) -> bool {
        self.take_small_by(addr, k, claimed, self.region.shift)
    }

    /// `take_small` with the map's `shift` given (as `granule_in_by`).
    #[inline(always)]
    pub fn take_small_by(&mut self, addr: usize, k: usize, claimed: bool, shift: u32) -> bool {
        debug_assert!((1..BIG).contains(&k));
        debug_assert_eq!(shift, self.region.shift);
        let off = addr.wrapping_sub(self.region.base);
        let want = live_byte(k, claimed);
        // One rotate for the granule and the alignment check: a misaligned `off` carries
        // its low bits to the top, `>= 2^(64 - shift)`, above any map's length, so the
        // bounds check refuses it with the addresses outside the region.
        let g = off.rotate_right(shift);
        match self.bytes.get(g) {
            Some(b) if b.load(Relaxed) == want => {
                #[cfg(feature = "shuttle")]
                crate::sync::model::yield_now();
                b.store(0, Relaxed);
                true
            }
            _ => false,
        }
    }

    /// `(start, size)` of the live block containing `addr`, given blocks of at most
    /// `max_size` bytes.
    pub fn block_containing(&self, addr: usize, max_size: usize) -> Option<(usize, usize)> {
        if !self.contains(addr) {
            return None;
        }
        let g = self.region.granule(addr);
        let lowest = g.saturating_sub((max_size >> self.region.shift).saturating_sub(1));
        let s = (lowest..=g).rev().find(|&s| self.byte(s) != 0)?;
        let b = self.byte(s);
        if is_remote(b) {
            // Blocks do not overlap: inside a freed block, no live one holds `addr`.
            return None;
        }
        let size = self.size_at(s, b);
        let start = self.region.base + (s << self.region.shift);
        (addr < start + size).then_some((start, size))
    }

    /// The first granule in `g..end` where a block starts (its byte nonzero).
    fn next_start(&self, g: usize, end: usize) -> Option<usize> {
        let end = end.min(self.bytes.len());
        (g..end).find(|&s| self.byte(s) != 0)
    }

    /// Every block (live, or freed by another thread and not yet taken back) as
    /// `(granule, byte)`, in address order.
    fn starts(&self) -> impl Iterator<Item = (usize, u8)> + '_ {
        self.starts_below(self.bytes.len())
    }

    /// The blocks starting below granule `end`, as `(granule, byte)`: a scan that reads no
    /// byte of the map from `end` on.
    fn starts_below(&self, end: usize) -> impl Iterator<Item = (usize, u8)> + '_ {
        let mut g = 0;
        std::iter::from_fn(move || {
            let s = self.next_start(g, end)?;
            g = s + 1;
            Some((s, self.byte(s)))
        })
    }

    /// Panics unless the module's equations hold: blocks do not overlap (the bytes inside
    /// a block are 0), `big` holds exactly the blocks tagged `BIG`, and a remote byte is
    /// one of a small class.
    pub fn check_invariants(&self) {
        let align = self.mask + 1;
        assert_eq!(
            self.bytes.len(),
            self.region.len.div_ceil(align),
            "a byte per granule"
        );
        let mut end = 0;
        let mut tagged = 0;
        for (g, b) in self.starts() {
            assert!(g >= end, "granule {g} lies inside the block before it");
            let k = (b & TAG) as usize;
            assert!(!is_remote(b) || (1..BIG).contains(&k), "remote byte {b:#x}");
            tagged += usize::from(k == BIG);
            end = g + (self.size_at(g, b) >> self.region.shift);
            assert!(
                end <= self.bytes.len(),
                "the block at granule {g} overruns the region"
            );
        }
        assert_eq!(tagged, self.big.len(), "|big| == blocks tagged BIG");
        assert!(self
            .big
            .iter()
            .all(|(&g, &k)| k >= BIG && self.byte(g) != 0));
    }

    /// Every block as `live_blocks_below` says, in address order.
    pub fn live_blocks(&self) -> Vec<(usize, usize)> {
        self.live_blocks_below(self.region.base + self.region.len)
    }

    /// The blocks starting below `end` (live, or freed by another thread and not yet taken
    /// back: the pool counts both live), as `(start, size)`, in address order, reading only
    /// the map's bytes below `end`: a map of a mostly unused region stays untouched.
    pub fn live_blocks_below(&self, end: usize) -> Vec<(usize, usize)> {
        let below = end.saturating_sub(self.region.base).min(self.region.len);
        let end = below.div_ceil(self.mask + 1);
        self.starts_below(end)
            .map(|(g, b)| {
                (
                    self.region.base + (g << self.region.shift),
                    self.size_at(g, b),
                )
            })
            .collect()
    }

    /// How many blocks of the map other threads freed and the owner has not taken back.
    pub fn remote_blocks(&self) -> usize {
        self.starts().filter(|&(_, b)| is_remote(b)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_of_and_live_blocks_below() {
        let mut m = ClassMap::new(0x1000, 4096, 16);
        m.mark_new(0x1000, 2, false);
        m.mark_new(0x1100, 4, false);
        m.mark_new(0x1f00, 1, false);
        assert_eq!((m.size_of(0x1000), m.size_of(0x1100)), (32, 64));
        assert_eq!(m.size_of(0x1010), 0, "inside a block, not its start");
        assert_eq!(m.size_of(0x1108), 0, "misaligned");
        assert_eq!((m.take(0x1108), m.take(0x1010)), (0, 0));
        assert_eq!(m.take(0x1f00), 16);
        assert_eq!((m.take(0x1f00), m.size_of(0x1f00)), (0, 0), "taken once");
        let mut big = ClassMap::new(0x1000, 4096, 8);
        big.mark_new(0x1000, 64, false);
        assert_eq!((big.size_of(0x1000), big.take(0x1000)), (512, 512));
        big.check_invariants();
        assert!(big.live_blocks().is_empty());
        assert_eq!(m.live_blocks_below(0x1100), vec![(0x1000, 32)]);
        assert_eq!(
            m.live_blocks_below(0x1101),
            vec![(0x1000, 32), (0x1100, 64)]
        );
        assert_eq!(m.live_blocks_below(usize::MAX), m.live_blocks());
        assert!(m.live_blocks_below(0).is_empty());
    }

    #[test]
    fn checks_extent_exactly() {
        let mut m = ClassMap::new(0x1000, 4096, 8);
        m.mark_new(0x1000, 3, false);
        m.mark_new(0x1018, 1, false);
        m.mark_new(0x1200, 16, true);
        assert!(m.check(0x1000, 24).is_ok());
        for wrong in [8, 32] {
            assert!(matches!(
                m.check(0x1000, wrong),
                Err(AllocError::SizeMismatch { block_size: 24, .. })
            ));
        }
        assert!(matches!(
            m.check(0x1008, 8),
            Err(AllocError::NotLive { .. })
        ));
        assert!(matches!(
            m.check(0x1004, 8),
            Err(AllocError::Misaligned { align: 8, .. })
        ));
        assert_eq!(m.block_containing(0x1010, 128), Some((0x1000, 24)));
        assert_eq!(m.block_containing(0x1018, 128), Some((0x1018, 8)));
        assert_eq!(m.block_containing(0x1020, 128), None);
        assert_eq!(m.block_containing(0x127f, 128), Some((0x1200, 128)));
        assert_eq!(m.block_containing(0x1280, 128), None);
        assert_eq!(
            m.live_blocks(),
            vec![(0x1000, 24), (0x1018, 8), (0x1200, 128)]
        );
        m.check_invariants();
        assert!(m.is_claimed(0x1200) && !m.is_claimed(0x1000));
        assert!(m.unmark(0x1000));
        assert!(matches!(
            m.check(0x1000, 24),
            Err(AllocError::NotLive { .. })
        ));
        assert_eq!(m.block_containing(0x1010, 128), None);
    }

    #[test]
    fn the_fast_path_finds_only_the_claim_it_names() {
        let mut m = ClassMap::new(0, 4096, 8);
        assert_eq!(m.granule_in(4096), None, "outside the region");
        assert_eq!(m.granule_in(usize::MAX), None, "outside the region");
        for (addr, claimed) in [(64, true), (128, false)] {
            let g = m.granule_in(addr).unwrap();
            // SAFETY: `g` is this map's `granule_in`.
            unsafe { m.mark_small(g, 2, claimed) };
        }
        assert!(!m.take_small(64, 2, false), "a container's block");
        assert!(!m.take_small(128, 2, true), "not a container's block");
        assert!(!m.take_small(64, 3, true), "another class");
        assert!(!m.take_small(68, 2, true), "misaligned");
        assert!(!m.take_small(1 << 20, 2, true), "outside the region");
        assert!(!m.take_small(usize::MAX - 7, 2, true), "below the region");
        for align in [8, 16, 64] {
            let mut a = ClassMap::new(0x10000, 4096, align);
            a.mark_new(0x10000 + 2 * align, 1, false);
            for off in (1..align).chain([usize::MAX - align + 1]) {
                let p = (0x10000 + 2 * align).wrapping_add(off);
                assert!(!a.take_small(p, 1, false), "{p:#x}: align {align}");
            }
            assert_eq!(a.live_blocks(), vec![(0x10000 + 2 * align, align)]);
        }
        assert_eq!(
            m.live_blocks(),
            vec![(64, 16), (128, 16)],
            "refusals change nothing"
        );
        assert!(m.take_small(64, 2, true));
        assert!(m.take_small(128, 2, false));
        assert!(m.live_blocks().is_empty());
        assert!(!m.take_small(128, 2, false), "freed");
    }

    #[test]
    fn every_address_of_a_region_has_its_byte() {
        // A length that is not a multiple of the granule: the last, partial granule
        // is still mapped, so `granule_in`'s one compare is its bounds check.
        let mut m = ClassMap::new(0, 4100, 8);
        assert_eq!(m.bytes.len(), 513);
        assert_eq!(m.granule_in(4099), Some(512));
        assert_eq!(m.granule_in(4100), None);
        // SAFETY: 512 is this map's `granule_in(4096)`.
        unsafe { m.mark_small(m.granule_in(4096).unwrap(), 1, false) };
        assert_eq!(m.live_blocks(), vec![(4096, 8)]);
        assert!(m.take_small(4096, 1, false));
    }

    #[test]
    fn a_pinned_block_is_found_but_not_freed_fast() {
        let mut m = ClassMap::new(0, 4096, 8);
        m.mark_new(64, 2, false);
        assert!(m.set_pinned(64, true));
        assert!(m.is_pinned(64) && !m.is_claimed(64));
        assert!(
            m.check(64, 16).is_ok(),
            "pinned, still a live block of 16 bytes"
        );
        assert_eq!(m.block_containing(79, 128), Some((64, 16)));
        assert!(!m.take_small(64, 2, false));
        assert_eq!(m.live_blocks(), vec![(64, 16)]);
        assert!(m.set_pinned(64, false));
        m.check_invariants();
        assert!(m.take_small(64, 2, false));
    }

    #[test]
    fn blocks_of_many_granules_keep_their_exact_size() {
        // 200 and 127 granules: beyond what the byte holds.
        let mut m = ClassMap::new(0, 1 << 16, 8);
        m.mark_new(0, 200, false);
        m.mark_new(1600, 127, false);
        assert!(m.check(0, 1600).is_ok());
        assert!(matches!(
            m.check(0, 1608),
            Err(AllocError::SizeMismatch {
                block_size: 1600,
                ..
            })
        ));
        assert_eq!(m.block_containing(1599, 1 << 12), Some((0, 1600)));
        assert_eq!(m.block_containing(2615, 1 << 12), Some((1600, 1016)));
        m.check_invariants();
        assert!(m.unmark(0) && m.unmark(1600));
        assert!(m.big.is_empty() && m.live_blocks().is_empty());
    }

    #[test]
    fn a_remote_byte_is_no_live_block_until_the_owner_takes_it_back() {
        let mut m = ClassMap::new(0, 4096, 8);
        m.mark_new(64, 3, false);
        m.mark_new(128, 3, true);
        fn byte(m: &ClassMap, addr: usize) -> &AtomicU8 {
            &m.bytes[addr >> 3]
        }
        assert!(!claim_remote(byte(&m, 64), 2, false), "another class");
        assert!(!claim_remote(byte(&m, 64), 3, true), "not a container's");
        assert!(!claim_remote(byte(&m, 128), 3, false), "a container's");
        assert!(m.set_pinned(64, true));
        assert!(!claim_remote(byte(&m, 64), 3, false), "pinned");
        assert!(m.set_pinned(64, false));
        assert!(claim_remote(byte(&m, 64), 3, false));
        assert!(claim_remote(byte(&m, 128), 3, true));
        assert!(!claim_remote(byte(&m, 64), 3, false), "claimed once");
        for addr in [64, 128] {
            assert!(matches!(m.check(addr, 24), Err(AllocError::NotLive { .. })));
            assert_eq!(m.block_containing(addr + 8, 128), None);
            assert!(!m.is_claimed(addr) && !m.is_pinned(addr));
            assert!(!m.set_pinned(addr, true) && !m.set_claimed(addr, false));
            assert!(!m.unmark(addr) && m.take(addr) == 0 && m.size_of(addr) == 0);
            assert!(!m.take_small(addr, 3, addr == 128));
        }
        // Still occupying its granules, as the pool's counts say until taken back.
        assert_eq!(m.live_blocks(), vec![(64, 24), (128, 24)]);
        assert_eq!(m.remote_blocks(), 2);
        m.check_invariants();
        assert_eq!(m.take_remote(64), Some(3));
        assert_eq!(m.take_remote(64), None, "once");
        assert_eq!(m.take_remote(72), None, "no block there");
        assert_eq!(m.take_remote(128), Some(3));
        assert!(m.live_blocks().is_empty());
        m.mark_new(64, 3, false);
        assert_eq!(m.take_remote(64), None, "live again: a stale entry");
        assert!(m.check(64, 24).is_ok());
    }
}
