//! SGI's `free_list` array, the heads of a pool's `nfreelists` lists: the first
//! `INLINE_LISTS` inside the pool, so that a pop or push of one of those classes finds its
//! head at a fixed offset from the pool (no pointer read first, as a `Box` would need),
//! the rest, if any, in a box of their own.
//!
//! Invariant: head `i < nfreelists` is `inline[i]` for `i < INLINE_LISTS`, else
//! `rest[i − INLINE_LISTS]`; `inline[i]` is null for `nfreelists <= i < INLINE_LISTS`.

use crate::sgi::pool::Obj;
use std::ptr;

/// Heads kept inside the pool: every class of SGI's defaults (16), and of any pool whose
/// fast paths (`checked::class_map::SMALL_GRANULES` classes) read them.
pub const INLINE_LISTS: usize = 64;

pub(crate) struct FreeLists {
    inline: [*mut Obj; INLINE_LISTS],
    rest: Box<[*mut Obj]>,
}

impl FreeLists {
    /// `nfreelists` empty lists.
    pub fn new(nfreelists: usize) -> Self {
        Self {
            inline: [ptr::null_mut(); INLINE_LISTS],
            rest: vec![ptr::null_mut(); nfreelists.saturating_sub(INLINE_LISTS)].into_boxed_slice(),
        }
    }

    /// Head `i`.
    ///
    /// # Safety
    /// `i < nfreelists`.
    #[inline(always)]
    pub unsafe fn head_mut(&mut self, i: usize) -> &mut *mut Obj {
        match i.checked_sub(INLINE_LISTS) {
            // SAFETY: `i < INLINE_LISTS`, the array's length.
            None => unsafe { self.inline.get_unchecked_mut(i) },
            // SAFETY: `i < nfreelists` (the caller's promise), so `j < rest.len()`.
            Some(j) => unsafe { self.rest.get_unchecked_mut(j) },
        }
    }

    /// Head `i < INLINE_LISTS`, with no branch: the fast paths'.
    ///
    /// # Safety
    /// `i < INLINE_LISTS`.
    #[inline(always)]
    pub unsafe fn inline_head_mut(&mut self, i: usize) -> &mut *mut Obj {
        debug_assert!(i < INLINE_LISTS);
        // SAFETY: the caller's promise, the array's length.
        unsafe { self.inline.get_unchecked_mut(i) }
    }

    /// Head `i < INLINE_LISTS`, read.
    ///
    /// # Safety
    /// `i < INLINE_LISTS`.
    #[inline(always)]
    pub unsafe fn inline_head(&self, i: usize) -> *mut Obj {
        debug_assert!(i < INLINE_LISTS);
        // SAFETY: the caller's promise, the array's length.
        unsafe { *self.inline.get_unchecked(i) }
    }

    /// Head `i < nfreelists`, read (panics past the lists).
    pub fn head(&self, i: usize) -> *mut Obj {
        match i.checked_sub(INLINE_LISTS) {
            None => self.inline[i],
            Some(j) => self.rest[j],
        }
    }

    /// Every list emptied.
    pub fn clear(&mut self) {
        self.inline.fill(ptr::null_mut());
        self.rest.fill(ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_inline_and_boxed_are_distinct() {
        let n = INLINE_LISTS + 3;
        let mut f = FreeLists::new(n);
        let mut objs: Vec<Obj> = (0..n)
            .map(|_| Obj {
                next: ptr::null_mut(),
            })
            .collect();
        for (i, o) in objs.iter_mut().enumerate() {
            // SAFETY: `i < n`, the lists made.
            unsafe { *f.head_mut(i) = o };
        }
        for (i, o) in objs.iter_mut().enumerate() {
            assert_eq!(f.head(i), std::ptr::from_mut(o), "head {i}");
        }
        // SAFETY: 5 < INLINE_LISTS.
        assert_eq!(unsafe { f.inline_head(5) }, f.head(5));
        f.clear();
        assert!((0..n).all(|i| f.head(i).is_null()));
    }
}
