//! A region cut into `align`-byte granules, the unit the block maps index by:
//! granule `g` covers `[base + g·align, base + (g+1)·align)`, for `g < len / align`.

#[derive(Debug, Clone, Copy)]
pub struct Granules {
    pub base: usize,
    pub len: usize,
    /// `log2(align)`.
    pub shift: u32,
}

impl Granules {
    /// `[base, base+len)` at granularity `align` (a power of two).
    pub fn new(base: usize, len: usize, align: usize) -> Self {
        // Checked always: `ClassMap::shift` promises the optimizer `shift < usize::BITS`.
        assert!(
            align.is_power_of_two(),
            "align {align} is not a power of two"
        );
        Self {
            base,
            len,
            shift: align.trailing_zeros(),
        }
    }

    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.base) < self.len
    }

    /// The granule of `addr`, which lies in the region.
    #[inline]
    pub fn granule(&self, addr: usize) -> usize {
        (addr - self.base) >> self.shift
    }

    /// How many granules the region has.
    pub fn count(&self) -> usize {
        self.len >> self.shift
    }
}
