//! Counted system calls: every call the arena makes to change its memory goes through
//! here, so the counts shown to users are exactly the calls made, not an estimate.
//! `mincore` only observes (it is how `stats()` reads residency), so it is not counted:
//! reading statistics must not change them.

use std::io;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyscallCounts {
    pub mmap: u64,
    pub munmap: u64,
    pub mprotect: u64,
    pub madvise: u64,
}

impl SyscallCounts {
    /// `(name, count)` pairs in a fixed order, for reports.
    pub fn entries(&self) -> [(&'static str, u64); 4] {
        [
            ("mmap", self.mmap),
            ("munmap", self.munmap),
            ("mprotect", self.mprotect),
            ("madvise", self.madvise),
        ]
    }
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096)
}

/// Reserves `len` bytes of address space with no access and no swap reservation.
pub fn mmap_reserve(counts: &mut SyscallCounts, len: usize) -> io::Result<*mut u8> {
    counts.mmap += 1;
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing
    // aliases no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p.cast())
    }
}

/// # Safety
/// `[p, p+len)` must be a whole-page range of a mapping this process owns and that no
/// live reference points into when access is removed.
pub unsafe fn mprotect(counts: &mut SyscallCounts, p: *mut u8, len: usize, writable: bool) -> bool {
    counts.mprotect += 1;
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_NONE
    };
    // SAFETY: the caller guarantees the range is ours and unreferenced if made inaccessible.
    unsafe { libc::mprotect(p.cast(), len, prot) == 0 }
}

/// # Safety
/// `[p, p+len)` must be whole pages of a private anonymous mapping whose contents nobody
/// needs any more: they read back as zeros afterwards.
pub unsafe fn madvise_dontneed(counts: &mut SyscallCounts, p: *mut u8, len: usize) {
    counts.madvise += 1;
    // SAFETY: per the caller's guarantee the pages may be dropped.
    unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
}

/// # Safety
/// `[p, p+len)` must be a mapping created by `mmap_reserve` and not used afterwards.
pub unsafe fn munmap(counts: &mut SyscallCounts, p: *mut u8, len: usize) {
    counts.munmap += 1;
    // SAFETY: per the caller's guarantee nothing refers to the mapping any more.
    unsafe { libc::munmap(p.cast(), len) };
}

/// Bytes of `[p, p+len)` (whole pages of one mapping) that are resident in RAM.
pub fn mincore_resident(p: *mut u8, len: usize) -> usize {
    let page = page_size();
    let pages = len.div_ceil(page);
    if pages == 0 {
        return 0;
    }
    let mut vec = vec![0u8; pages];
    // SAFETY: `vec` has one byte per page of the range, as mincore requires; mincore only
    // reads the page tables of a mapping we own.
    let rc = unsafe { libc::mincore(p.cast(), len, vec.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    vec.iter().filter(|&&b| b & 1 != 0).count() * page
}
