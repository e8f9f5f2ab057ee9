//! The core's `ObjectDomain` as CPython's object allocator (`PYMEM_DOMAIN_OBJ`), installed
//! with `PyMem_SetAllocator` over the allocator found there, as tracemalloc does.
//!
//! The domain is made once per process and never freed: objects allocated from its pool
//! may outlive any `uninstall()`, so the hook stays installed for good and `uninstall()`
//! only makes it send new blocks to the wrapped allocator (one branch per call), while
//! frees of pool blocks still reach the pool. Its arena, too, lives until the process ends.
//!
//! The hooks take no lock: CPython calls the object domain only with the GIL held, which
//! serialises them. Free-threaded builds (no GIL, mimalloc as the object domain) are refused.
//! Not handled: the hooks are process-wide, so on 3.12+ a subinterpreter with a GIL of its
//! own (`Py_NewInterpreterFromConfig`, `concurrent.interpreters`) would call them at the
//! same time as the main interpreter, unserialised.

use crate::errors::OrRaise;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::ffi::{self, PyMemAllocatorDomain, PyMemAllocatorEx};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use stlalloc_core::object_domain::{Calls, ObjectDomain, Wrapped};

/// Default arena reservation: address space only, pages committed as the break moves.
pub const DEFAULT_OBJECT_ARENA: usize = 1 << 30;
/// Largest arena accepted: its class map takes one byte per `align` bytes of it.
const MAX_OBJECT_ARENA: usize = 16 << 30;

/// The allocator the object domain had before `install()`.
struct Saved(PyMemAllocatorEx);

// SAFETY: these are the object domain's own functions with their own context, called as
// CPython calls them.
unsafe impl Wrapped for Saved {
    fn malloc(&self, n: usize) -> *mut u8 {
        self.0
            .malloc
            .map_or(ptr::null_mut(), |f| f(self.0.ctx, n).cast())
    }

    fn calloc(&self, nelem: usize, elsize: usize) -> *mut u8 {
        self.0
            .calloc
            .map_or(ptr::null_mut(), |f| f(self.0.ctx, nelem, elsize).cast())
    }

    unsafe fn realloc(&self, p: *mut u8, n: usize) -> *mut u8 {
        self.0
            .realloc
            .map_or(ptr::null_mut(), |f| f(self.0.ctx, p.cast(), n).cast())
    }

    unsafe fn free(&self, p: *mut u8) {
        if let Some(f) = self.0.free {
            f(self.0.ctx, p.cast());
        }
    }
}

type Domain = ObjectDomain<Saved>;

/// The process's domain once installed; leaked on purpose (see the module's comment).
static DOMAIN: AtomicPtr<Domain> = AtomicPtr::new(ptr::null_mut());

/// # Safety
/// `ctx` is the installed domain and the GIL is held, so no other reference to it is used
/// during the call.
unsafe fn domain<'a>(ctx: *mut c_void) -> &'a mut Domain {
    // SAFETY: the caller's promise.
    unsafe { &mut *ctx.cast::<Domain>() }
}

extern "C" fn hook_malloc(ctx: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: CPython passes our context and holds the GIL.
    unsafe { domain(ctx) }.malloc(n).cast()
}

extern "C" fn hook_calloc(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    // SAFETY: CPython passes our context and holds the GIL.
    unsafe { domain(ctx) }.calloc(nelem, elsize).cast()
}

extern "C" fn hook_realloc(ctx: *mut c_void, p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: CPython passes our context, holds the GIL, and passes null or a live block
    // of the object domain: ours, or (made before the switch) the wrapped allocator's.
    unsafe { domain(ctx).realloc(p.cast(), n) }.cast()
}

extern "C" fn hook_free(ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: as for `hook_realloc`.
    unsafe { domain(ctx).free(p.cast()) }
}

fn refuse_free_threaded() -> PyResult<()> {
    if cfg!(Py_GIL_DISABLED) {
        return Err(PyRuntimeError::new_err(
            "the SGI pool cannot serve the object domain of a free-threaded build: its hooks \
             rely on the GIL, and that domain must stay mimalloc",
        ));
    }
    Ok(())
}

/// Routes the object domain through the SGI pool (new blocks up to `max_bytes`), or
/// re-enables it after `uninstall()`.
#[pyfunction]
#[pyo3(signature = (*, align = 16, max_bytes = 512, arena_size = DEFAULT_OBJECT_ARENA))]
pub fn install(py: Python<'_>, align: usize, max_bytes: usize, arena_size: usize) -> PyResult<()> {
    refuse_free_threaded()?;
    let existing = DOMAIN.load(Ordering::Acquire);
    if !existing.is_null() {
        // SAFETY: the domain is never freed; the GIL we hold keeps other threads' hooks out,
        // and nothing below allocates a Python object (which would run a hook on this
        // thread) while `d` lives: the error is made lazily, from a Rust `String`.
        let d = unsafe { &mut *existing };
        let p = *d.params();
        if (p.align(), p.max_bytes(), d.stats().arena_reserved)
            != (align, max_bytes, arena_size.next_multiple_of(page_size()))
        {
            return Err(PyValueError::new_err(format!(
                "the object domain's pool exists already with align={}, max_bytes={}, \
                 arena_size={}; install() again only with those",
                p.align(),
                p.max_bytes(),
                d.stats().arena_reserved
            )));
        }
        d.set_active(true);
        return Ok(());
    }
    if arena_size > MAX_OBJECT_ARENA {
        return Err(PyValueError::new_err(format!(
            "arena_size must be at most {MAX_OBJECT_ARENA}, not {arena_size}"
        )));
    }
    // tracemalloc.stop() would put back the allocator it saved, dropping the hook while
    // pool blocks are live.
    if py
        .import("tracemalloc")?
        .call_method0("is_tracing")?
        .is_truthy()?
    {
        return Err(PyRuntimeError::new_err(
            "tracemalloc is tracing: stopping it would remove the pool's hook; install() first",
        ));
    }
    let mut saved = PyMemAllocatorEx {
        ctx: ptr::null_mut(),
        malloc: None,
        calloc: None,
        realloc: None,
        free: None,
    };
    // SAFETY: a valid out-pointer; the GIL is held.
    unsafe { ffi::PyMem_GetAllocator(PyMemAllocatorDomain::PYMEM_DOMAIN_OBJ, &mut saved) };
    let d = ObjectDomain::new(align, max_bytes, arena_size, Saved(saved)).or_raise()?;
    let raw = Box::into_raw(Box::new(d));
    let mut ours = PyMemAllocatorEx {
        ctx: raw.cast(),
        malloc: Some(hook_malloc),
        calloc: Some(hook_calloc),
        realloc: Some(hook_realloc),
        free: Some(hook_free),
    };
    DOMAIN.store(raw, Ordering::Release);
    // SAFETY: the hooks and their context live until the process ends; the GIL is held.
    unsafe { ffi::PyMem_SetAllocator(PyMemAllocatorDomain::PYMEM_DOMAIN_OBJ, &mut ours) };
    Ok(())
}

fn page_size() -> usize {
    stlalloc_core::os::syscalls::page_size()
}

/// New blocks go back to the wrapped allocator; blocks of the pool still return to it.
#[pyfunction]
pub fn uninstall() {
    let d = DOMAIN.load(Ordering::Acquire);
    if !d.is_null() {
        // SAFETY: the domain is never freed; the GIL (held by this call) keeps the hooks out.
        unsafe { (*d).set_active(false) };
    }
}

fn calls_dict<'py>(py: Python<'py>, c: &Calls) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("malloc", c.malloc)?;
    d.set_item("calloc", c.calloc)?;
    d.set_item("realloc", c.realloc)?;
    d.set_item("free", c.free)?;
    Ok(d)
}

/// The domain's counters and pool state, or None if `install()` was never called.
#[pyfunction]
pub fn object_domain_stats(py: Python<'_>) -> PyResult<Option<Bound<'_, PyDict>>> {
    let d = DOMAIN.load(Ordering::Acquire);
    if d.is_null() {
        return Ok(None);
    }
    // A snapshot first: building the dict allocates through the hooks, which must not
    // meet a live borrow of the domain.
    // SAFETY: the domain is never freed; the GIL keeps the hooks out during the copy.
    let s = unsafe { (*d).stats() };
    let out = PyDict::new(py);
    out.set_item("installed", s.active)?;
    out.set_item("align", s.align)?;
    out.set_item("max_bytes", s.max_bytes)?;
    out.set_item("allocations", s.pool.malloc + s.pool.calloc)?;
    out.set_item("deallocations", s.pool.free)?;
    out.set_item("reallocations", s.pool.realloc)?;
    out.set_item("pool_calls", calls_dict(py, &s.pool)?)?;
    out.set_item("wrapped_calls", calls_dict(py, &s.wrapped)?)?;
    out.set_item("pool_share", s.pool_share())?;
    out.set_item("arena_full", s.arena_full)?;
    out.set_item("stray_frees", s.stray_frees)?;
    out.set_item("bytes_allocated", s.bytes_allocated)?;
    out.set_item("live_blocks", s.live_blocks)?;
    out.set_item("live_bytes", s.live_bytes)?;
    out.set_item("heap_size", s.heap_size)?;
    out.set_item("chunk_bytes_left", s.chunk_bytes_left)?;
    out.set_item("free_list_lengths", s.free_list_lengths)?;
    out.set_item("refills", s.refills)?;
    out.set_item("arena_reserved", s.arena_reserved)?;
    out.set_item("arena_used", s.arena_used)?;
    out.set_item("syscalls", crate::stats::syscalls_dict(py, &s.syscalls)?)?;
    Ok(Some(out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(install, m)?)?;
    m.add_function(wrap_pyfunction!(uninstall, m)?)?;
    m.add_function(wrap_pyfunction!(object_domain_stats, m)?)?;
    Ok(())
}
