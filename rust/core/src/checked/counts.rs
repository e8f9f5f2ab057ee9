//! The live blocks of each size class, as two counters per class rather than one live
//! count: an allocation and a free of one class then add to different words, so that pairs
//! of them do not wait on each other's read-modify-write (one counter chains a
//! store-to-load forwarding per call). The counters of the fast paths' classes
//! (`i < SMALL_GRANULES`) are two inline arrays, each indexed by the class itself, so that
//! a fast path's count is one add to `base + 8·i` (no pointer read, no index arithmetic).
//!
//! Invariant: `live(i) == taken[i] − given[i]` (both wrap; only their difference means
//! anything) for every class `i < nfreelists`, with `taken`/`given` being `small_*[i]` for
//! `i < SMALL_GRANULES`, else `rest[i − SMALL_GRANULES]`.

use crate::checked::class_map::SMALL_GRANULES;

pub struct ClassCounts {
    small_taken: [usize; SMALL_GRANULES],
    small_given: [usize; SMALL_GRANULES],
    /// `(taken, given)` of the classes `SMALL_GRANULES..nfreelists`, if any.
    rest: Box<[(usize, usize)]>,
    nfreelists: usize,
}

impl ClassCounts {
    pub fn new(nfreelists: usize) -> Self {
        Self {
            small_taken: [0; SMALL_GRANULES],
            small_given: [0; SMALL_GRANULES],
            rest: vec![(0, 0); nfreelists.saturating_sub(SMALL_GRANULES)].into_boxed_slice(),
            nfreelists,
        }
    }

    /// A block of class `i < SMALL_GRANULES` handed out: the fast path's count.
    ///
    /// # Safety
    /// `i < SMALL_GRANULES`.
    #[inline(always)]
    pub unsafe fn took_small(&mut self, i: usize) {
        debug_assert!(i < SMALL_GRANULES);
        // SAFETY: the caller's promise, the array's length.
        let c = unsafe { self.small_taken.get_unchecked_mut(i) };
        *c = c.wrapping_add(1);
    }

    /// A block of class `i < SMALL_GRANULES` taken back: the fast path's count.
    ///
    /// # Safety
    /// `i < SMALL_GRANULES`.
    #[inline(always)]
    pub unsafe fn gave_small(&mut self, i: usize) {
        debug_assert!(i < SMALL_GRANULES);
        // SAFETY: the caller's promise, the array's length.
        let c = unsafe { self.small_given.get_unchecked_mut(i) };
        *c = c.wrapping_add(1);
    }

    /// A block of class `i < nfreelists` handed out.
    pub fn took(&mut self, i: usize) {
        match i.checked_sub(SMALL_GRANULES) {
            None => self.small_taken[i] = self.small_taken[i].wrapping_add(1),
            Some(j) => self.rest[j].0 = self.rest[j].0.wrapping_add(1),
        }
    }

    /// A block of class `i < nfreelists` taken back.
    pub fn gave(&mut self, i: usize) {
        match i.checked_sub(SMALL_GRANULES) {
            None => self.small_given[i] = self.small_given[i].wrapping_add(1),
            Some(j) => self.rest[j].1 = self.rest[j].1.wrapping_add(1),
        }
    }

    /// The live blocks of class `i < nfreelists`.
    pub fn live(&self, i: usize) -> usize {
        let (taken, given) = match i.checked_sub(SMALL_GRANULES) {
            None => (self.small_taken[i], self.small_given[i]),
            Some(j) => self.rest[j],
        };
        taken.wrapping_sub(given)
    }

    /// Every class's live blocks, class 0 first.
    pub fn all_live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nfreelists).map(|i| self.live(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_counts_apart_inline_or_not() {
        let mut c = ClassCounts::new(SMALL_GRANULES + 2);
        let last = SMALL_GRANULES + 1;
        // SAFETY: 0 and `SMALL_GRANULES - 1` are below `SMALL_GRANULES`.
        unsafe {
            c.took_small(0);
            c.took_small(0);
            c.gave_small(0);
            c.took_small(SMALL_GRANULES - 1);
        }
        c.took(last);
        c.took(last);
        c.gave(last);
        c.took(SMALL_GRANULES - 1);
        c.gave(SMALL_GRANULES - 1);
        let live: Vec<usize> = c.all_live().collect();
        assert_eq!(live.len(), SMALL_GRANULES + 2);
        assert_eq!((live[0], live[SMALL_GRANULES - 1], live[last]), (1, 1, 1));
        assert_eq!(live.iter().sum::<usize>(), 3, "no other class counted");
        // Wrapping: a free counted before its allocation (another thread's, taken back
        // first) leaves the difference right once both are in.
        let mut w = ClassCounts::new(1);
        w.gave(0);
        assert_eq!(w.live(0), usize::MAX);
        w.took(0);
        assert_eq!(w.live(0), 0);
    }
}
