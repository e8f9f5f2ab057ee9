//! Which pool blocks of a region are live, one byte per `align`-byte granule, so that
//! misuse is caught without a header in the blocks (the pool's memory stays header-free)
//! and the checked fast paths cost one byte store to allocate and one byte compare and
//! store to free.
//!
//! For every live block of `k` granules starting at granule `g`:
//!   `byte[g] & TAG == min(k, BIG)`, `byte[g] & CLAIMED` says whether a container holds
//!   it, `byte[g] & PINNED` whether it is exported, `byte[g+1 .. g+k] == 0`; and
//!   `big[g] == k` exactly when `k >= BIG`.
//! Every other byte is 0, and `bytes.len() == ceil(len / align)`: every address of the
//! region has a byte, so `off < len` alone proves a granule index in range. So live
//! blocks are the nonzero bytes, and since they never overlap, the block containing an
//! address is the nearest nonzero byte at or before it.
//! A free's fast path compares the byte with the one an unpinned block of its class has:
//! any flag it should not have sends it to the full check. Blocks of `BIG` granules or more
//! exist only with more than 62 size classes; their exact sizes are kept aside so the byte
//! stays one byte.

use crate::checked::granules::Granules;
use crate::error::AllocError;
use std::collections::HashMap;

/// Set in a block's byte while a container holds the block.
const CLAIMED: u8 = 0x80;
/// Set in a block's byte while the block is exported (pinned): it may not be freed.
const PINNED: u8 = 0x40;
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
    bytes: Vec<u8>,
    big: HashMap<usize, usize>,
}

/// The byte of an unclaimed, unpinned block of `k` granules.
#[inline(always)]
fn tag(k: usize) -> u8 {
    k.min(BIG) as u8
}

impl ClassMap {
    /// A map of `[base, base+len)` at granularity `align` (a power of two).
    pub fn new(base: usize, len: usize, align: usize) -> Self {
        let region = Granules::new(base, len, align);
        Self {
            region,
            mask: align - 1,
            bytes: vec![0; len.div_ceil(align)],
            big: HashMap::new(),
        }
    }

    pub fn base(&self) -> usize {
        self.region.base
    }

    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        self.region.contains(addr)
    }

    /// The size in bytes of the live block whose byte at granule `g` is `b != 0`.
    fn size_at(&self, g: usize, b: u8) -> usize {
        let k = match (b & TAG) as usize {
            BIG => self.big[&g],
            k => k,
        };
        k << self.region.shift
    }

    /// Records a new live block of `k >= 1` granules at `addr`, claimed for a container or
    /// not: the allocation fast path.
    #[inline]
    pub fn mark_new(&mut self, addr: usize, k: usize, claimed: bool) {
        let g = self.region.granule(addr);
        if k >= BIG {
            self.mark_big(g, k);
        }
        self.bytes[g] = tag(k) | if claimed { CLAIMED } else { 0 };
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

    /// Marks (or unmarks) the live block at `addr` as held by a container.
    pub fn set_claimed(&mut self, addr: usize, claimed: bool) {
        self.set_flag(addr, CLAIMED, claimed);
    }

    /// Whether the live block at `addr` is exported.
    pub fn is_pinned(&self, addr: usize) -> bool {
        self.flag(addr, PINNED)
    }

    /// Marks (or unmarks) the live block at `addr` as exported.
    pub fn set_pinned(&mut self, addr: usize, pinned: bool) {
        self.set_flag(addr, PINNED, pinned);
    }

    fn flag(&self, addr: usize, flag: u8) -> bool {
        self.bytes[self.region.granule(addr)] & flag != 0
    }

    fn set_flag(&mut self, addr: usize, flag: u8, on: bool) {
        let b = &mut self.bytes[self.region.granule(addr)];
        *b = if on { *b | flag } else { *b & !flag };
    }

    /// The size in bytes of the live block starting at `addr` (inside this region), or 0
    /// if none starts there: a realloc without a size finds its class here.
    #[inline]
    pub fn size_of(&self, addr: usize) -> usize {
        let g = self.region.granule(addr);
        let b = self.bytes[g];
        match (b & TAG) as usize {
            0 => 0,
            _ if addr & self.mask != 0 => 0,
            BIG => self.size_at(g, b),
            k => k << self.region.shift,
        }
    }

    /// Forgets the live block starting at `addr` (inside this region) and returns its size,
    /// or returns 0 and changes nothing if none starts there: a free without a size. One
    /// load and one store unless the block is `BIG`.
    #[inline]
    pub fn take(&mut self, addr: usize) -> usize {
        let g = self.region.granule(addr);
        let b = self.bytes[g];
        match (b & TAG) as usize {
            0 => 0,
            _ if addr & self.mask != 0 => 0,
            BIG => self.take_big(g),
            k => {
                self.bytes[g] = 0;
                k << self.region.shift
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn take_big(&mut self, g: usize) -> usize {
        let k = self
            .big
            .remove(&g)
            .expect("a BIG tag has its size in `big`");
        self.bytes[g] = 0;
        k << self.region.shift
    }

    /// Forgets the live block at `addr`, which `check` accepted.
    #[inline]
    pub fn unmark(&mut self, addr: usize) {
        let g = self.region.granule(addr);
        if (self.bytes[g] & TAG) as usize == BIG {
            self.big.remove(&g);
        }
        self.bytes[g] = 0;
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
        // Size 0 has tag 0, the byte of every granule no block starts at: never a block.
        if k != 0 && self.bytes[g] & TAG == tag(k) && (k < BIG || self.big[&g] == k) {
            return Ok(());
        }
        Err(self.mismatch(addr, g, size))
    }

    #[cold]
    fn mismatch(&self, addr: usize, g: usize, size: usize) -> AllocError {
        match self.bytes[g] {
            0 => AllocError::NotLive { addr },
            b => AllocError::SizeMismatch {
                addr,
                size,
                block_size: self.size_at(g, b),
            },
        }
    }

    /// `log2(align)`: the granule's, which is also the size classes' shift.
    #[inline(always)]
    pub fn shift(&self) -> u32 {
        self.region.shift
    }

    /// The granule of `addr` if it lies in the region: one compare.
    #[inline(always)]
    pub fn granule_in(&self, addr: usize) -> Option<usize> {
        let off = addr.wrapping_sub(self.region.base);
        (off < self.region.len).then_some(off >> self.region.shift)
    }

    /// Records a new live block of `1 <= k < BIG` granules at granule `g`, claimed for a
    /// container or not: the allocation fast path, one byte store.
    ///
    /// # Safety
    /// `g` is what `granule_in` of this map returned (so `g < bytes.len()`).
    #[inline(always)]
    pub unsafe fn mark_small(&mut self, g: usize, k: usize, claimed: bool) {
        debug_assert!((1..BIG).contains(&k) && g < self.bytes.len());
        // SAFETY: `granule_in` found `off < len`, so `g < ceil(len / align) ==
        // bytes.len()` (see `new`); the caller's promise.
        unsafe { *self.bytes.get_unchecked_mut(g) = k as u8 | if claimed { CLAIMED } else { 0 } };
    }

    /// Forgets the live block at `addr` and says true if it is one of `1 <= k < BIG`
    /// granules, unpinned, and held by a container exactly when `claimed`: the free fast
    /// path, one bounds check. `false` changes nothing and says nothing more; `check` then
    /// says what is wrong. Callers keep `k < BIG` (a `BIG` tag does not give the size).
    #[inline(always)]
    pub fn take_small(&mut self, addr: usize, k: usize, claimed: bool) -> bool {
        debug_assert!((1..BIG).contains(&k));
        let off = addr.wrapping_sub(self.region.base);
        let want = k as u8 | if claimed { CLAIMED } else { 0 };
        let g = off >> self.region.shift;
        // Misaligned: computed from the shift the index needs anyway, not loaded.
        if g << self.region.shift != off {
            return false;
        }
        match self.bytes.get_mut(g) {
            Some(b) if *b == want => {
                *b = 0;
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
        let s = lowest + self.bytes[lowest..=g].iter().rposition(|&b| b != 0)?;
        let size = self.size_at(s, self.bytes[s]);
        let start = self.region.base + (s << self.region.shift);
        (addr < start + size).then_some((start, size))
    }

    /// The first granule at or after `g` where a live block starts, a word of 8 granules
    /// at a time (the inspections walk whole regions, mostly empty).
    fn next_start(&self, g: usize, end: usize) -> Option<usize> {
        let rest = self.bytes.get(g..end)?;
        // SAFETY: every bit pattern is a valid `u64`; `align_to` splits `rest` exactly.
        let (head, words, tail) = unsafe { rest.align_to::<u64>() };
        let live = |b: &u8| *b != 0;
        if let Some(i) = head.iter().position(live) {
            return Some(g + i);
        }
        let g = g + head.len();
        if let Some(w) = words.iter().position(|&w| w != 0) {
            let word = g + 8 * w;
            return self.bytes[word..word + 8]
                .iter()
                .position(live)
                .map(|i| word + i);
        }
        let g = g + 8 * words.len();
        tail.iter().position(live).map(|i| g + i)
    }

    /// Every live block as `(granule, byte)`, in address order.
    fn starts(&self) -> impl Iterator<Item = (usize, u8)> + '_ {
        self.starts_below(self.bytes.len())
    }

    /// The live blocks starting below granule `end`, as `(granule, byte)`: a scan that
    /// reads no byte of the map from `end` on.
    fn starts_below(&self, end: usize) -> impl Iterator<Item = (usize, u8)> + '_ {
        let mut g = 0;
        std::iter::from_fn(move || {
            let s = self.next_start(g, end)?;
            g = s + 1;
            Some((s, self.bytes[s]))
        })
    }

    /// Panics unless the module's equations hold: live blocks do not overlap (the bytes
    /// inside a block are 0) and `big` holds exactly the blocks tagged `BIG`.
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
            tagged += usize::from((b & TAG) as usize == BIG);
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
            .all(|(&g, &k)| k >= BIG && self.bytes[g] != 0));
    }

    /// Every live block as `(start, size)`, in address order.
    pub fn live_blocks(&self) -> Vec<(usize, usize)> {
        self.live_blocks_below(self.region.base + self.region.len)
    }

    /// The live blocks starting below `end`, as `(start, size)`, in address order, reading
    /// only the map's bytes below `end`: a map of a mostly unused region stays untouched.
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
        m.unmark(0x1000);
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
        m.set_pinned(64, true);
        assert!(m.is_pinned(64) && !m.is_claimed(64));
        assert!(
            m.check(64, 16).is_ok(),
            "pinned, still a live block of 16 bytes"
        );
        assert_eq!(m.block_containing(79, 128), Some((64, 16)));
        assert!(!m.take_small(64, 2, false));
        assert_eq!(m.live_blocks(), vec![(64, 16)]);
        m.set_pinned(64, false);
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
        m.unmark(0);
        m.unmark(1600);
        assert!(m.big.is_empty() && m.live_blocks().is_empty());
    }
}
