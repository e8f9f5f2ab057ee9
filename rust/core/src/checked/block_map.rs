//! Which blocks of a region are live, in two bitmaps over `align`-byte granules, so misuse
//! is caught without a header in the blocks: for the monotonic allocator, whose blocks
//! have any size (the pool's blocks, of a few classes, use the cheaper `ClassMap`).
//!
//! For every live block covering granules `[g0, g1]`:
//!   `starts[g0] == 1`, `ends[g1] == 1`, and no other bit of either map in `[g0, g1]`.
//! All other bits are 0. Live blocks never overlap, so the first end bit at or after a
//! start bit closes that block. `claimed[g0] == 1` marks a live block held by a container:
//! `claimed ⊆ starts`. Cost: 3 bits per `align` bytes (3/64 of the region at 8), resident
//! only where blocks have been live.

use crate::checked::granules::Granules;
use crate::error::AllocError;

pub struct BlockMap {
    region: Granules,
    starts: Vec<u64>,
    ends: Vec<u64>,
    claimed: Vec<u64>,
}

#[inline]
fn get(bits: &[u64], g: usize) -> bool {
    bits[g >> 6] & (1 << (g & 63)) != 0
}

#[inline]
fn set(bits: &mut [u64], g: usize) {
    bits[g >> 6] |= 1 << (g & 63);
}

#[inline]
fn clear(bits: &mut [u64], g: usize) {
    bits[g >> 6] &= !(1 << (g & 63));
}

/// The first set bit in `[g, g+limit)`.
#[inline]
fn next_set(bits: &[u64], g: usize, limit: usize) -> Option<usize> {
    let end = (g + limit).min(bits.len() * 64);
    let mut i = g;
    while i < end {
        let word = bits[i >> 6] >> (i & 63);
        if word != 0 {
            let found = i + word.trailing_zeros() as usize;
            return (found < end).then_some(found);
        }
        i = (i | 63) + 1;
    }
    None
}

/// The last set bit in `(g-limit, g]`.
#[inline]
fn prev_set(bits: &[u64], g: usize, limit: usize) -> Option<usize> {
    let stop = g.saturating_sub(limit.saturating_sub(1));
    let mut i = g as isize;
    while i >= stop as isize {
        let u = i as usize;
        let word = bits[u >> 6] << (63 - (u & 63));
        if word != 0 {
            let found = u - word.leading_zeros() as usize;
            return (found >= stop).then_some(found);
        }
        i = (u & !63) as isize - 1;
    }
    None
}

impl BlockMap {
    /// A map of `[base, base+len)` at granularity `align` (a power of two).
    pub fn new(base: usize, len: usize, align: usize) -> Self {
        let region = Granules::new(base, len, align);
        let words = region.count().div_ceil(64);
        Self {
            region,
            starts: vec![0; words],
            ends: vec![0; words],
            claimed: vec![0; words],
        }
    }

    pub fn base(&self) -> usize {
        self.region.base
    }

    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        self.region.contains(addr)
    }

    /// Records the live block `[addr, addr+size)`; `size` is a positive multiple of `align`.
    #[inline]
    pub fn mark(&mut self, addr: usize, size: usize) {
        let g = self.region.granule(addr);
        set(&mut self.starts, g);
        set(&mut self.ends, g + (size >> self.region.shift) - 1);
    }

    /// Whether the live block at `addr` is held by a container.
    #[inline]
    pub fn is_claimed(&self, addr: usize) -> bool {
        get(&self.claimed, self.region.granule(addr))
    }

    /// Marks (or unmarks) the live block at `addr` as held by a container.
    #[inline]
    pub fn set_claimed(&mut self, addr: usize, claimed: bool) {
        let g = self.region.granule(addr);
        if claimed {
            set(&mut self.claimed, g);
        } else {
            clear(&mut self.claimed, g);
        }
    }

    /// `claimed ⊆ starts`: only live blocks are held by containers.
    pub fn claims_are_live(&self) -> bool {
        self.claimed
            .iter()
            .zip(&self.starts)
            .all(|(c, s)| c & !s == 0)
    }

    /// Forgets the live block `[addr, addr+size)`, which `check` accepted.
    #[inline]
    pub fn unmark(&mut self, addr: usize, size: usize) {
        let g = self.region.granule(addr);
        clear(&mut self.starts, g);
        clear(&mut self.ends, g + (size >> self.region.shift) - 1);
    }

    /// Ok if a live block of exactly `size` bytes starts at `addr` (inside this region);
    /// `max_size` bounds any block's size.
    #[inline]
    pub fn check(&self, addr: usize, size: usize, max_size: usize) -> Result<(), AllocError> {
        match self.live_exact(addr, size) {
            Some(_) => Ok(()),
            None => self.locate(addr, size, max_size).map(|_| ()),
        }
    }

    /// The first granule of the live block of exactly `size` bytes at `addr`, when its end
    /// bit shares a word with its start (nearly always): the fast path, with no error built.
    #[inline(always)]
    fn live_exact(&self, addr: usize, size: usize) -> Option<usize> {
        let off = addr.wrapping_sub(self.region.base);
        if off & ((1 << self.region.shift) - 1) != 0 {
            return None;
        }
        let g = off >> self.region.shift;
        let (k, bit) = (size >> self.region.shift, g & 63);
        if k == 0 || bit + k > 64 || !get(&self.starts, g) {
            return None;
        }
        let window = (self.ends[g >> 6] >> bit) & (u64::MAX >> (64 - k));
        (window == 1 << (k - 1)).then_some(g)
    }

    /// `check`, returning the block's first granule.
    #[cold]
    fn locate(&self, addr: usize, size: usize, max_size: usize) -> Result<usize, AllocError> {
        let align = 1usize << self.region.shift;
        if (addr - self.region.base) & (align - 1) != 0 {
            return Err(AllocError::Misaligned { addr, align });
        }
        let g = self.region.granule(addr);
        if !get(&self.starts, g) {
            return Err(AllocError::NotLive { addr });
        }
        let k = size >> self.region.shift;
        let (word, bit) = (g >> 6, g & 63);
        if k >= 1 && bit + k <= 64 {
            // The common case: the block's end bits share one word. Exactly bit k-1 of the
            // k bits from `g` must be set.
            let window = (self.ends[word] >> bit) & (u64::MAX >> (64 - k));
            if window == 1 << (k - 1) {
                return Ok(g);
            }
        }
        self.mismatch(addr, g, size, max_size).map(|()| g)
    }

    #[cold]
    fn mismatch(
        &self,
        addr: usize,
        g: usize,
        size: usize,
        max_size: usize,
    ) -> Result<(), AllocError> {
        let end = next_set(&self.ends, g, max_size >> self.region.shift)
            .expect("a live block's end bit lies within max_size");
        let block_size = (end - g + 1) << self.region.shift;
        if block_size == size {
            Ok(())
        } else {
            Err(AllocError::SizeMismatch {
                addr,
                size,
                block_size,
            })
        }
    }

    /// `(start, size)` of the live block containing `addr`, given blocks of at most
    /// `max_size` bytes.
    pub fn block_containing(&self, addr: usize, max_size: usize) -> Option<(usize, usize)> {
        if !self.contains(addr) {
            return None;
        }
        let g = self.region.granule(addr);
        let limit = max_size >> self.region.shift;
        let s = prev_set(&self.starts, g, limit)?;
        let e = next_set(&self.ends, s, limit)?;
        (e >= g).then(|| {
            (
                self.region.base + (s << self.region.shift),
                (e - s + 1) << self.region.shift,
            )
        })
    }

    /// Every live block as `(start, size)`, in address order.
    pub fn live_blocks(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let total = self.region.count();
        let mut g = 0;
        while let Some(s) = next_set(&self.starts, g, total - g.min(total)) {
            let e = next_set(&self.ends, s, total - s).expect("every start has an end");
            out.push((
                self.region.base + (s << self.region.shift),
                (e - s + 1) << self.region.shift,
            ));
            g = e + 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_extent_exactly() {
        let mut m = BlockMap::new(0x1000, 4096, 8);
        m.mark(0x1000, 24);
        m.mark(0x1018, 8);
        m.mark(0x1200, 128);
        assert!(m.check(0x1000, 24, 128).is_ok());
        assert!(matches!(
            m.check(0x1000, 8, 128),
            Err(AllocError::SizeMismatch { block_size: 24, .. })
        ));
        assert!(matches!(
            m.check(0x1000, 32, 128),
            Err(AllocError::SizeMismatch { block_size: 24, .. })
        ));
        assert!(matches!(
            m.check(0x1008, 8, 128),
            Err(AllocError::NotLive { .. })
        ));
        assert!(matches!(
            m.check(0x1004, 8, 128),
            Err(AllocError::Misaligned { .. })
        ));
        assert!(m.check(0x1018, 8, 128).is_ok());
        assert_eq!(m.block_containing(0x1010, 128), Some((0x1000, 24)));
        assert_eq!(m.block_containing(0x1018, 128), Some((0x1018, 8)));
        assert_eq!(m.block_containing(0x1020, 128), None);
        assert_eq!(m.block_containing(0x127f, 128), Some((0x1200, 128)));
        assert_eq!(m.block_containing(0x1280, 128), None);
        assert_eq!(
            m.live_blocks(),
            vec![(0x1000, 24), (0x1018, 8), (0x1200, 128)]
        );
        m.unmark(0x1000, 24);
        assert!(matches!(
            m.check(0x1000, 24, 128),
            Err(AllocError::NotLive { .. })
        ));
        assert_eq!(m.block_containing(0x1010, 128), None);
    }

    #[test]
    fn word_boundaries() {
        let mut m = BlockMap::new(0, 1 << 16, 8);
        // A 128-byte block starting 3 granules before a 64-granule word boundary.
        let a = (64 - 3) * 8;
        m.mark(a, 128);
        assert!(m.check(a, 128, 128).is_ok());
        assert_eq!(m.block_containing(a + 127, 128), Some((a, 128)));
        assert_eq!(m.block_containing(a + 128, 128), None);
        m.mark(8, 8);
        assert_eq!(m.block_containing(8, 128), Some((8, 8)));
        assert_eq!(m.block_containing(0, 128), None);
    }
}
