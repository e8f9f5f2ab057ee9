//! `MallocAllocator`: the first level (SGI's `malloc_alloc`) for Python.

use crate::builtin;
use crate::convert::{Addr, Size};
use crate::errors::OrRaise;
use crate::fastcall::{Fallbacks, FastPair};
use crate::handler::PyHandler;
use crate::stats::PyMallocStats;
use crate::view::make_view;
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};
use std::sync::{Arc, Mutex};
use stlalloc_core::lending::registry;
use stlalloc_core::{AllocError, BlockAllocator, MallocAlloc};

/// SGI's first-level allocator: libc ``malloc``/``free``/``realloc`` with the
/// out-of-memory handler loop.
///
/// ``limit`` caps the live bytes: a request that would exceed it is treated as ``malloc``
/// returning NULL, so the handler loop can be exercised for real.
#[pyclass(frozen, module = "stlalloc", name = "MallocAllocator")]
pub struct PyMallocAllocator {
    pub inner: Arc<MallocAlloc>,
    /// The Python object behind the core's handler, to return it and to traverse it.
    handler: Mutex<Option<Py<PyAny>>>,
}

impl PyMallocAllocator {
    pub fn with_limit(limit: Option<usize>) -> Self {
        let inner = Arc::new(MallocAlloc::new(limit));
        registry::register(&(inner.clone() as Arc<dyn BlockAllocator>));
        Self {
            inner,
            handler: Mutex::new(None),
        }
    }

    fn handler_slot(&self) -> std::sync::MutexGuard<'_, Option<Py<PyAny>>> {
        self.handler.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PyMallocAllocator {
    #[new]
    #[pyo3(signature = (*, limit = None))]
    fn new(limit: Option<Size>) -> Self {
        Self::with_limit(limit.map(|s| s.0))
    }

    /// The byte limit on live blocks, or None.
    #[getter]
    fn limit(&self) -> Option<usize> {
        self.inner.limit()
    }

    /// ``malloc(n)``: the address of a new block of ``n`` bytes (16-byte aligned); 0 for
    /// ``n == 0``. Runs the out-of-memory handler loop on failure.
    // `fastcall` serves the common call (`allocate(n)`, an exact int) itself and falls
    // back on this method, and on `deallocate` below, for every other: keep them in step.
    fn allocate(&self, n: Size) -> PyResult<usize> {
        MallocAlloc::allocate(&self.inner, n.0).or_raise()
    }

    /// ``free(p)``: ``n`` must be the size the block was allocated with. Every
    /// MallocAllocator is equal to every other, so this frees blocks of any of them.
    fn deallocate(&self, p: Addr, n: Size) -> PyResult<()> {
        MallocAlloc::deallocate(&self.inner, p.0, n.0).or_raise()
    }

    /// ``realloc(p, new_n)`` of a block of ``old_n`` bytes; ``new_n == 0`` frees and
    /// returns 0. On failure the block is unchanged.
    fn reallocate(&self, p: Addr, old_n: Size, new_n: Size) -> PyResult<usize> {
        MallocAlloc::reallocate(&self.inner, p.0, old_n.0, new_n.0).or_raise()
    }

    /// Installs ``handler`` (a callable with no arguments, or None) and returns the
    /// previous one, as ``__set_malloc_handler`` does. On failure the allocator calls it
    /// and retries; it may free blocks of this allocator, or raise to give up.
    fn set_malloc_handler(&self, handler: Option<Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
        if let Some(h) = &handler {
            if !h.is_callable() {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "handler must be callable or None",
                ));
            }
        }
        let mut slot = self.handler_slot();
        let core = handler
            .as_ref()
            .map(|h| Arc::new(PyHandler(h.clone().unbind())) as _);
        self.inner.set_malloc_handler(core);
        Ok(std::mem::replace(&mut *slot, handler.map(Bound::unbind)))
    }

    /// True if ``p`` lies inside a live block of a MallocAllocator (all are equal).
    fn owns(&self, p: Addr) -> bool {
        self.inner.owns(p.0)
    }

    /// A writable zero-copy memoryview of ``[p, p+n)``, which must lie inside one live
    /// block. While the view is exported the block cannot be freed or reallocated.
    fn view<'py>(&self, py: Python<'py>, p: Addr, n: Size) -> PyResult<Bound<'py, PyAny>> {
        make_view(py, self.inner.clone(), p.0, n.0)
    }

    fn stats(&self) -> PyMallocStats {
        PyMallocStats(self.inner.stats())
    }

    /// Every MallocAllocator can free what another allocated: they all compare equal
    /// (and equal the TracingAllocators around them).
    fn __eq__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> bool {
        builtin::equal(slf.as_any(), other)
    }

    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        builtin::hash(slf.as_any())
    }

    fn __repr__(&self) -> String {
        let s = self.inner.stats();
        let limit = self
            .inner
            .limit()
            .map_or("None".to_string(), |l| l.to_string());
        format!(
            "MallocAllocator(limit={limit}, live_blocks={}, live_bytes={})",
            s.live_blocks, s.live_bytes
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(slot) = self.handler.try_lock() {
            if let Some(h) = slot.as_ref() {
                // The core holds a second reference to the same callable.
                visit.call(h)?;
                visit.call(h)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        self.inner.set_malloc_handler(None);
        self.handler_slot().take();
    }
}

/// On a GIL-enabled interpreter, lets the first level's registry rely on the GIL instead of
/// its own spin lock, so that a MallocAllocator call pays no atomic operation (as the pools'
/// `GilLock`). Runs at module initialisation, before any MallocAllocator exists.
pub fn share_the_gil() {
    // SAFETY: on a GIL-enabled interpreter every call this extension makes into a
    // `MallocAlloc` (methods, containers and pools over one, and the drops of all of them)
    // comes from Python code holding the GIL, and none releases it inside the call: the
    // registry's critical sections run only libc `malloc`/`realloc`/`free`, and the
    // out-of-memory handler, which is Python code, runs outside them. No other code of
    // the process reaches this extension's copy of the core, and nothing has called it yet.
    #[cfg(not(Py_GIL_DISABLED))]
    unsafe {
        stlalloc_core::sgi::first_level::assume_outer_lock()
    };
}

static FALLBACKS: Fallbacks = Fallbacks::new();

impl FastPair for PyMallocAllocator {
    fn fallbacks() -> &'static Fallbacks {
        &FALLBACKS
    }

    #[inline(always)]
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        MallocAlloc::allocate(&self.inner, n)
    }

    #[inline(always)]
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        MallocAlloc::deallocate(&self.inner, p, n)
    }
}
