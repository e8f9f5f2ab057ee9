//! The allocators under test, behind one small trait, and the process-wide instances the
//! workloads run on (like the C++ globals of `bench/cpp`: one pool per process, kept
//! across runs, so every run after the first reuses the pages the first one touched).

use std::alloc::{handle_alloc_error, Layout};
use std::ptr::NonNull;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use stlalloc_core::{
    AllocError, LibcMalloc, MallocAlloc, Params, Pool, RawLock, Sgi, SharedPool, SpinLock,
    DEFAULT_ARENA_SIZE,
};

/// Every block the workloads ask for is at most 128 bytes of 8-byte values: 8-byte
/// alignment is what SGI's pool promises and what the C++ workloads get.
const ALIGN: usize = 8;

/// A raw allocator as the workloads see it: SGI's `allocate(n)` / `deallocate(p, n)`.
/// Failure is not part of the benchmark: it aborts, as `operator new` would throw.
pub trait RawAlloc {
    /// A block of at least `n >= 1` bytes, aligned to 8.
    fn allocate(&mut self, n: usize) -> NonNull<u8>;

    /// # Safety
    /// `p` must come from `allocate(n)` of this allocator (or of one sharing its state)
    /// and not have been deallocated since.
    unsafe fn deallocate(&mut self, p: NonNull<u8>, n: usize);
}

#[cold]
#[inline(never)]
fn out_of_memory(n: usize) -> ! {
    handle_alloc_error(Layout::from_size_align(n, ALIGN).unwrap_or(Layout::new::<u64>()))
}

/// System `malloc`/`free` (glibc here), called directly as `std::allocator` ends up doing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Malloc;

impl RawAlloc for Malloc {
    #[inline]
    fn allocate(&mut self, n: usize) -> NonNull<u8> {
        // SAFETY: malloc accepts any size; null is handled.
        let p = unsafe { libc::malloc(n) };
        NonNull::new(p.cast()).unwrap_or_else(|| out_of_memory(n))
    }

    #[inline]
    unsafe fn deallocate(&mut self, p: NonNull<u8>, _n: usize) {
        // SAFETY: the caller guarantees `p` is a live block from `malloc`.
        unsafe { libc::free(p.as_ptr().cast()) }
    }
}

/// The core's single-threaded, unchecked SGI pool with SGI's parameters as constants, as
/// `stl_alloc.h` has them: the counterpart of the C++ `sgi_free_list`.
impl RawAlloc for Pool<LibcMalloc, Sgi> {
    // `always`: the error type's drop glue makes this look big to the inliner, yet the
    // free-list pop it wraps is a few instructions; a call here doubles pair24's time.
    #[inline(always)]
    fn allocate(&mut self, n: usize) -> NonNull<u8> {
        match Pool::allocate(self, n).ok().and_then(NonNull::new) {
            Some(p) => p,
            None => out_of_memory(n),
        }
    }

    #[inline(always)]
    unsafe fn deallocate(&mut self, p: NonNull<u8>, n: usize) {
        // SAFETY: the caller's guarantee is the pool's contract.
        unsafe { Pool::deallocate(self, p.as_ptr(), n) }
    }
}

/// The thread-safe checked pool, through its public API only, whatever its lock: the spin
/// lock of `SharedPool`'s default, or the GIL-based lock of the Python binding. A handle is
/// a shared reference: threads may each hold one.
pub struct Shared<'a, L: RawLock = SpinLock>(pub &'a SharedPool<Arc<MallocAlloc>, L>);

// Not derived: the derive would ask `L: Clone`, and a reference is copyable whatever `L` is.
impl<L: RawLock> Clone for Shared<'_, L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L: RawLock> Copy for Shared<'_, L> {}

impl<L: RawLock> RawAlloc for Shared<'_, L> {
    // Inlined into the workload's loop, as C++ inlines `__pool_alloc`'s header code.
    #[inline(always)]
    fn allocate(&mut self, n: usize) -> NonNull<u8> {
        // The error is moved into the cold arm, so the loop never drops a `Result`.
        match self.0.allocate(n) {
            Ok(p) => NonNull::new(p as *mut u8).unwrap_or_else(|| out_of_memory(n)),
            Err(e) => pool_out_of_memory(e, n),
        }
    }

    #[inline(always)]
    unsafe fn deallocate(&mut self, p: NonNull<u8>, n: usize) {
        // The workloads free only what they allocated: a refusal is a bug in them. Matched,
        // not asserted: the error is dropped only where there is one, out of the loop.
        if let Err(e) = self.0.deallocate(p.as_ptr() as usize, n) {
            refused(e)
        }
    }
}

#[cold]
#[inline(never)]
fn pool_out_of_memory(e: AllocError, n: usize) -> ! {
    drop(e);
    out_of_memory(n)
}

#[cold]
#[inline(never)]
fn refused(e: AllocError) -> ! {
    panic!("shared pool refused a free: {e:?}")
}

/// mimalloc, the general-purpose allocator to beat, called through its `GlobalAlloc`.
#[cfg(feature = "mimalloc")]
#[derive(Debug, Default, Clone, Copy)]
pub struct Mimalloc;

#[cfg(feature = "mimalloc")]
impl RawAlloc for Mimalloc {
    #[inline]
    fn allocate(&mut self, n: usize) -> NonNull<u8> {
        use std::alloc::GlobalAlloc;
        // SAFETY: `n >= 1` and 8 is a power of two, so the layout is valid and non-zero.
        let p = unsafe { mimalloc::MiMalloc.alloc(Layout::from_size_align_unchecked(n, ALIGN)) };
        NonNull::new(p).unwrap_or_else(|| out_of_memory(n))
    }

    #[inline]
    unsafe fn deallocate(&mut self, p: NonNull<u8>, n: usize) {
        use std::alloc::GlobalAlloc;
        // SAFETY: the caller guarantees `p` came from `allocate(n)`, i.e. from `MiMalloc`
        // with this very layout.
        unsafe {
            mimalloc::MiMalloc.dealloc(p.as_ptr(), Layout::from_size_align_unchecked(n, ALIGN))
        }
    }
}

/// The process-wide core pool (SGI's `alloc`): default parameters, the default arena.
static CORE_POOL: LazyLock<Mutex<Pool<LibcMalloc, Sgi>>> = LazyLock::new(|| {
    let pool = Pool::new(Sgi, DEFAULT_ARENA_SIZE, LibcMalloc);
    Mutex::new(pool.expect("cannot reserve the core pool's arena"))
});

/// Heaps of the shared pool, as a free-threaded `PoolAllocator` has them: one per thread
/// (the threaded workloads' and the main thread), made only when a thread needs one.
const SHARED_POOL_HEAPS: usize = 64;

/// The process-wide thread-safe pool as a free-threaded `stlalloc.PoolAllocator()` builds
/// its own (default parameters and arena, a tracked `MallocAlloc` upstream, a heap per
/// thread), with the spin lock that threads need (the GIL binding uses the GIL instead,
/// and one heap). Single-threaded workloads run on heap 0 alone.
static SHARED_POOL: LazyLock<SharedPool> = LazyLock::new(|| {
    SharedPool::with_heaps(
        Params::default(),
        DEFAULT_ARENA_SIZE,
        Arc::new(MallocAlloc::new(None)),
        SHARED_POOL_HEAPS,
    )
    .expect("cannot reserve the shared pool's arena")
});

/// The core pool, locked for the duration of a workload (never per operation).
pub fn core_pool() -> MutexGuard<'static, Pool<LibcMalloc, Sgi>> {
    CORE_POOL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn shared_pool() -> Shared<'static, SpinLock> {
    Shared(&SHARED_POOL)
}
