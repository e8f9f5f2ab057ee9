//! The arena: one `mmap` reservation handed out from its start by a bump pointer, the
//! *break*, as `brk` moves the program break.
//!
//! Invariants (checked by `check_invariants` in tests):
//! - `0 <= brk <= committed <= reserved`, `committed % page == 0`, `reserved % page == 0`;
//! - `[base, base+committed)` is readable and writable, `[base+committed, base+reserved)`
//!   has no access, so a stray access past the committed pages faults instead of passing;
//! - every system call made is counted in `syscalls`.
//!
//! Pages are committed (made accessible) as the break crosses them, the way the kernel
//! extends the heap segment on `brk`, at least doubling the committed size each time (from
//! `MIN_COMMIT`), so a heap of `h` bytes costs about `log2(h / MIN_COMMIT)` `mprotect` calls.
//! Committing costs no memory: a page becomes resident only when first touched.
//! `release()` drops the pages and moves the break back to 0.

use crate::error::AllocError;
use crate::os::syscalls::{self, SyscallCounts};
use std::ptr::NonNull;

/// The first commit, like glibc's 128 KiB top pad.
const MIN_COMMIT: usize = 128 << 10;

pub struct Arena {
    base: *mut u8,
    reserved: usize,
    committed: usize,
    brk: usize,
    page: usize,
    syscalls: SyscallCounts,
}

// SAFETY: the arena owns its mapping outright; moving it to another thread moves that
// ownership, and all mutation goes through `&mut self`.
unsafe impl Send for Arena {}

impl Arena {
    /// Reserves `size` bytes, rounded up to whole pages. A size of 0 makes an arena that
    /// refuses every request, without a mapping.
    pub fn new(size: usize) -> Result<Self, AllocError> {
        let page = syscalls::page_size();
        let reserved = size
            .checked_next_multiple_of(page)
            .filter(|&r| r <= isize::MAX as usize)
            .ok_or(AllocError::TooLarge { size })?;
        let mut syscalls = SyscallCounts::default();
        let base = if reserved == 0 {
            std::ptr::null_mut()
        } else {
            syscalls::mmap_reserve(&mut syscalls, reserved)
                .map_err(|_| AllocError::OutOfMemory { size: reserved })?
        };
        Ok(Self {
            base,
            reserved,
            committed: 0,
            brk: 0,
            page,
            syscalls,
        })
    }

    /// Moves the break up by exactly `n` bytes and returns the old break, or `None` when
    /// fewer than `n` bytes are left (the arena is then unchanged).
    pub fn sbrk(&mut self, n: usize) -> Option<NonNull<u8>> {
        if n > self.reserved - self.brk {
            return None;
        }
        let new_brk = self.brk + n;
        if new_brk > self.committed {
            let grown = (2 * self.committed).max(MIN_COMMIT);
            let target = new_brk
                .next_multiple_of(self.page)
                .max(grown)
                .min(self.reserved);
            // SAFETY: `[committed, target)` lies inside our reservation (target <=
            // reserved) and is page-aligned at both ends; nothing refers into it yet.
            let ok = unsafe {
                syscalls::mprotect(
                    &mut self.syscalls,
                    self.base.add(self.committed),
                    target - self.committed,
                    true,
                )
            };
            if !ok {
                return None;
            }
            self.committed = target;
        }
        // SAFETY: brk <= reserved, so the old break is inside (or one past) the mapping,
        // and the mapping is not null because n <= reserved - brk admits n > 0 only then.
        let old = unsafe { self.base.add(self.brk) };
        self.brk = new_brk;
        NonNull::new(old)
    }

    /// True if `addr` lies below the break.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.base as usize) < self.brk
    }

    pub fn base(&self) -> usize {
        self.base as usize
    }

    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Bytes below the break.
    pub fn used(&self) -> usize {
        self.brk
    }

    pub fn syscalls(&self) -> SyscallCounts {
        self.syscalls
    }

    /// Bytes of the reservation resident in RAM, as `mincore` reports them.
    pub fn resident_bytes(&self) -> usize {
        syscalls::mincore_resident(self.base, self.committed)
    }

    /// Gives every page back to the system and moves the break to 0.
    ///
    /// # Safety
    /// No block carved from the arena may be used afterwards.
    pub unsafe fn release(&mut self) {
        if self.committed > 0 {
            // SAFETY: `[base, base+committed)` is ours, and the caller guarantees nothing
            // below the break is in use any more.
            unsafe {
                syscalls::madvise_dontneed(&mut self.syscalls, self.base, self.committed);
                syscalls::mprotect(&mut self.syscalls, self.base, self.committed, false);
            }
        }
        self.committed = 0;
        self.brk = 0;
    }

    #[cfg(test)]
    pub fn check_invariants(&self) {
        assert!(self.brk <= self.committed && self.committed <= self.reserved);
        assert_eq!(self.committed % self.page, 0);
        assert_eq!(self.reserved % self.page, 0);
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if !self.base.is_null() {
            // SAFETY: the mapping came from `mmap_reserve` with this length and the arena
            // is going away, so nothing carved from it can be used any more.
            unsafe { syscalls::munmap(&mut self.syscalls, self.base, self.reserved) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn break_moves_by_exactly_the_request() {
        let mut a = Arena::new(1 << 16).unwrap();
        let p = a.sbrk(320).unwrap();
        let q = a.sbrk(2584).unwrap();
        assert_eq!(q.as_ptr() as usize - p.as_ptr() as usize, 320);
        assert_eq!(a.used(), 2904);
        a.check_invariants();
        assert_eq!(a.syscalls().mmap, 1);
        assert_eq!(
            a.syscalls().mprotect,
            1,
            "both fit in the first committed page"
        );
    }

    #[test]
    fn refuses_what_does_not_fit_and_stays_unchanged() {
        let mut a = Arena::new(4096).unwrap();
        assert!(a.sbrk(4000).is_some());
        assert!(a.sbrk(97).is_none());
        assert_eq!(a.used(), 4000);
        assert!(a.sbrk(96).is_some());
        a.check_invariants();
    }

    #[test]
    fn commits_grow_geometrically() {
        let mut a = Arena::new(64 << 20).unwrap();
        for _ in 0..1000 {
            a.sbrk(4096).unwrap();
        }
        // 4 MB in 128 KiB, 256 KiB, ... 4 MiB commits.
        assert_eq!(a.syscalls().mprotect, 6);
        a.check_invariants();
        let mut small = Arena::new(8192).unwrap();
        small.sbrk(8192).unwrap();
        assert_eq!(small.syscalls().mprotect, 1, "never past the reservation");
        small.check_invariants();
    }

    #[test]
    fn zero_sized_arena_refuses_everything() {
        let mut a = Arena::new(0).unwrap();
        assert!(a.sbrk(8).is_none());
        assert_eq!(a.syscalls().mmap, 0);
    }

    #[test]
    fn resident_follows_touches_and_release() {
        let page = syscalls::page_size();
        let mut a = Arena::new(64 * page).unwrap();
        let p = a.sbrk(8 * page).unwrap();
        assert_eq!(
            a.resident_bytes(),
            0,
            "committed but untouched pages are not resident"
        );
        for i in 0..4 {
            // SAFETY: the 8 pages below the break are committed and ours.
            unsafe { p.as_ptr().add(i * page).write(1) };
        }
        assert_eq!(a.resident_bytes(), 4 * page);
        // SAFETY: nothing carved is used after this point.
        unsafe { a.release() };
        assert_eq!(a.used(), 0);
        assert_eq!(a.resident_bytes(), 0);
        assert_eq!(a.syscalls().madvise, 1);
        a.check_invariants();
    }
}
