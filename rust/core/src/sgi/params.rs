//! The pool's parameters and SGI's size arithmetic (`_S_round_up`, `_S_freelist_index`).

use crate::error::AllocError;

/// Smallest supported `align`: every block is aligned to at least this.
pub const MIN_ALIGN: usize = 8;
/// Largest supported `align`: blocks are carved from page-aligned chunks.
pub const MAX_ALIGN: usize = 4096;
/// Largest supported `max_bytes`, so that chunk sizes stay far from overflow.
pub const MAX_MAX_BYTES: usize = 1 << 20;
/// Largest supported `refill`.
pub const MAX_REFILL: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    align: usize,
    max_bytes: usize,
    refill: usize,
    shift: u32,
}

impl Default for Params {
    /// SGI's `_ALIGN = 8`, `_MAX_BYTES = 128`, 20 objects per refill.
    fn default() -> Self {
        Self {
            align: 8,
            max_bytes: 128,
            refill: 20,
            shift: 3,
        }
    }
}

impl Params {
    pub fn new(align: usize, max_bytes: usize, refill: usize) -> Result<Self, AllocError> {
        let bad = |why: String| Err(AllocError::InvalidParameter(why));
        if !align.is_power_of_two() || !(MIN_ALIGN..=MAX_ALIGN).contains(&align) {
            return bad(format!(
                "align must be a power of two from {MIN_ALIGN} to {MAX_ALIGN}, not {align}"
            ));
        }
        if max_bytes == 0 || max_bytes % align != 0 || max_bytes > MAX_MAX_BYTES {
            return bad(format!(
                "max_bytes must be a positive multiple of align ({align}) up to {MAX_MAX_BYTES}, \
                 not {max_bytes}"
            ));
        }
        if !(1..=MAX_REFILL).contains(&refill) {
            return bad(format!(
                "refill must be from 1 to {MAX_REFILL}, not {refill}"
            ));
        }
        Ok(Self {
            align,
            max_bytes,
            refill,
            shift: align.trailing_zeros(),
        })
    }

    pub fn align(&self) -> usize {
        self.align
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub fn refill(&self) -> usize {
        self.refill
    }

    pub fn nfreelists(&self) -> usize {
        self.max_bytes >> self.shift
    }

    /// `(n + align - 1) & ~(align - 1)`; callers keep `n <= max_bytes` or accept wrapping
    /// only for sizes already rejected.
    #[inline]
    pub fn round_up(&self, n: usize) -> usize {
        (n + self.align - 1) & !(self.align - 1)
    }

    /// `(n + align - 1) / align - 1`, for `1 <= n <= max_bytes`: computed as the equal
    /// `(n - 1) / align`, one load and one shift on the allocation fast path.
    #[inline]
    pub fn index(&self, n: usize) -> usize {
        (n - 1) >> self.shift
    }

    /// The block size of free list `i`.
    #[inline]
    pub fn class_size(&self, i: usize) -> usize {
        (i + 1) << self.shift
    }
}

/// What a pool reads of its parameters: at run time (`Params`), or as compile-time
/// constants (`Sgi`), as `stl_alloc.h` declares `_ALIGN`, `_MAX_BYTES` and `_NFREELISTS` as
/// enum constants, so that the fast path's arithmetic folds away.
pub trait PoolParams: Copy + Send + Sync + 'static {
    fn align(&self) -> usize;
    fn max_bytes(&self) -> usize;
    fn refill(&self) -> usize;
    /// `log2(align)`.
    fn shift(&self) -> u32;

    #[inline]
    fn nfreelists(&self) -> usize {
        self.max_bytes() >> self.shift()
    }

    #[inline]
    fn round_up(&self, n: usize) -> usize {
        (n + self.align() - 1) & !(self.align() - 1)
    }

    /// `(n + align - 1) / align - 1`, for `1 <= n <= max_bytes`.
    #[inline]
    fn index(&self, n: usize) -> usize {
        (n - 1) >> self.shift()
    }

    #[inline]
    fn class_size(&self, i: usize) -> usize {
        (i + 1) << self.shift()
    }
}

impl PoolParams for Params {
    #[inline]
    fn align(&self) -> usize {
        self.align
    }
    #[inline]
    fn max_bytes(&self) -> usize {
        self.max_bytes
    }
    #[inline]
    fn refill(&self) -> usize {
        self.refill
    }
    #[inline]
    fn shift(&self) -> u32 {
        self.shift
    }
}

/// SGI's own parameters, as constants: 8-byte alignment, 128 bytes, 20 objects a refill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sgi;

impl PoolParams for Sgi {
    #[inline]
    fn align(&self) -> usize {
        8
    }
    #[inline]
    fn max_bytes(&self) -> usize {
        128
    }
    #[inline]
    fn refill(&self) -> usize {
        20
    }
    #[inline]
    fn shift(&self) -> u32 {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgi_arithmetic() {
        let p = Params::default();
        assert_eq!(p.nfreelists(), 16);
        assert_eq!(
            (p.round_up(1), p.round_up(8), p.round_up(9), p.round_up(128)),
            (8, 8, 16, 128)
        );
        assert_eq!(
            (p.index(1), p.index(8), p.index(9), p.index(128)),
            (0, 0, 1, 15)
        );
        for n in 1..=128 {
            assert_eq!(p.class_size(p.index(n)), p.round_up(n));
        }
    }

    #[test]
    fn sgi_constants_are_the_default_parameters() {
        let (p, s) = (Params::default(), Sgi);
        assert_eq!(
            (p.align(), p.max_bytes(), p.refill()),
            (s.align(), s.max_bytes(), s.refill())
        );
        for n in 1..=128 {
            assert_eq!(PoolParams::index(&s, n), p.index(n));
            assert_eq!(PoolParams::round_up(&s, n), p.round_up(n));
        }
        assert_eq!(PoolParams::nfreelists(&s), 16);
    }

    #[test]
    fn rejects_out_of_domain() {
        assert!(Params::new(12, 120, 20).is_err());
        assert!(Params::new(4, 128, 20).is_err());
        assert!(Params::new(8, 100, 20).is_err());
        assert!(Params::new(8, 0, 20).is_err());
        assert!(Params::new(8, 128, 0).is_err());
        assert_eq!(Params::new(16, 256, 5).unwrap().nfreelists(), 16);
    }
}
