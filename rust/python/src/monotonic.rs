//! `MonotonicAllocator`: `std::pmr::monotonic_buffer_resource` for Python.

use crate::builtin;
use crate::convert::{Addr, Size};
use crate::errors::OrRaise;
use crate::gil_lock::PyPoolLock;
use crate::malloc::PyMallocAllocator;
use crate::stats::{stats_class, syscalls_dict};
use crate::view::make_view;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{PyTraverseError, PyVisit};
use std::sync::Arc;
use stlalloc_core::adaptors::monotonic::{Monotonic, MonotonicStats};
use stlalloc_core::lending::registry;
use stlalloc_core::{BlockAllocator, MallocAlloc, DEFAULT_ARENA_SIZE};

pub type PyMono = Monotonic<Arc<MallocAlloc>, PyPoolLock>;

/// ``std::pmr::monotonic_buffer_resource`` over an ``mmap``'d arena of ``arena_size``
/// bytes: a pure break pointer. ``allocate`` moves the break up (blocks aligned to
/// ``align``, sizes rounded to 8); ``deallocate`` gives nothing back, it only retires the
/// block; ``release()`` gives everything back at once (refused while a container holds a
/// block or a view is alive). When the arena cannot serve a request, buffers come from
/// ``upstream`` (a MallocAllocator), each twice the last.
#[pyclass(frozen, module = "stlalloc", name = "MonotonicAllocator")]
pub struct PyMonotonicAllocator {
    pub inner: Arc<PyMono>,
    upstream: Py<PyMallocAllocator>,
}

#[pymethods]
impl PyMonotonicAllocator {
    #[new]
    #[pyo3(signature = (*, arena_size = Size(DEFAULT_ARENA_SIZE), upstream = None, align = Size(8)))]
    fn new(
        py: Python<'_>,
        arena_size: Size,
        upstream: Option<Py<PyMallocAllocator>>,
        align: Size,
    ) -> PyResult<Self> {
        let upstream = match upstream {
            Some(u) => u,
            None => Py::new(py, PyMallocAllocator::with_limit(None))?,
        };
        let core_upstream = upstream.get().inner.clone();
        let inner = Arc::new(Monotonic::new(arena_size.0, align.0, core_upstream).or_raise()?);
        registry::register(&(inner.clone() as Arc<dyn BlockAllocator>));
        Ok(Self { inner, upstream })
    }

    #[getter]
    fn align(&self) -> usize {
        self.inner.align()
    }

    /// The alignment every block is promised (the allocator protocol's name for ``align``).
    #[getter]
    fn alignment(&self) -> usize {
        self.inner.align()
    }

    /// The first-level allocator that gives buffers once the arena is exhausted.
    #[getter]
    fn upstream(&self, py: Python<'_>) -> Py<PyMallocAllocator> {
        self.upstream.clone_ref(py)
    }

    /// Moves the break up by ``n`` bytes (rounded to 8, aligned to ``align``); 0 for 0.
    fn allocate(&self, n: Size) -> PyResult<usize> {
        self.inner.allocate(n.0).or_raise()
    }

    /// Retires the block: its memory comes back only with ``release()``. Misuse (a foreign
    /// pointer, a double free, a size of another 8-byte class) raises AllocatorError.
    fn deallocate(&self, p: Addr, n: Size) -> PyResult<()> {
        self.inner.deallocate(p.0, n.0).or_raise()
    }

    /// In place when the block shrinks or is the last one below the break; else a new
    /// block, the contents copied, the old one retired.
    fn reallocate(&self, p: Addr, old_n: Size, new_n: Size) -> PyResult<usize> {
        self.inner.reallocate(p.0, old_n.0, new_n.0).or_raise()
    }

    /// True if ``p`` lies inside a live block of this allocator.
    fn owns(&self, p: Addr) -> bool {
        self.inner.owns(p.0)
    }

    /// A writable zero-copy memoryview of ``[p, p+n)``, which must lie inside one live
    /// block. While the view is exported the block cannot be freed, moved or released.
    fn view<'py>(&self, py: Python<'py>, p: Addr, n: Size) -> PyResult<Bound<'py, PyAny>> {
        make_view(py, self.inner.clone(), p.0, n.0)
    }

    fn stats(&self) -> PyMonotonicStats {
        PyMonotonicStats(self.inner.stats())
    }

    /// Gives every arena page and upstream buffer back and moves the break to 0: every
    /// live block is deallocated with it (its address must not be used again). Refused
    /// with AllocatorError while a container holds a block or a view is alive.
    fn release(&self) -> PyResult<()> {
        self.inner.release().or_raise()
    }

    /// Equal only to itself (and to TracingAllocators around it).
    fn __eq__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> bool {
        builtin::equal(slf.as_any(), other)
    }

    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        builtin::hash(slf.as_any())
    }

    fn __repr__(&self) -> String {
        let s = self.inner.stats();
        format!(
            "MonotonicAllocator(align={}, bytes_used={}, live_blocks={}, upstream_buffers={})",
            s.align, s.bytes_used, s.live_blocks, s.upstream_buffers
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.upstream)
    }
}

/// A snapshot of a MonotonicAllocator.
#[pyclass(frozen, eq, module = "stlalloc", name = "MonotonicStats")]
#[derive(PartialEq)]
pub struct PyMonotonicStats(MonotonicStats);

stats_class! {
    PyMonotonicStats, "MonotonicStats",
    fields {
        align: usize,
        /// Blocks handed out and neither deallocated nor released, and their rounded sizes.
        live_blocks: usize,
        live_bytes: usize,
        allocations: u64,
        deallocations: u64,
        /// Blocks still live when ``release()`` retired them all.
        released_blocks: u64,
        releases: u64,
        /// Bytes below every break: live blocks, retired ones, alignment padding.
        bytes_used: usize,
        arena_reserved: usize,
        /// The arena's break.
        arena_used: usize,
        /// Arena bytes resident in RAM (``mincore``).
        arena_resident: usize,
        upstream_buffers: usize,
        upstream_bytes: usize,
        /// The size of the next upstream buffer: it doubles with each one (pmr's growth).
        next_buffer_size: usize,
    }
    repr [
        live_blocks, live_bytes, allocations, deallocations, released_blocks, releases,
        bytes_used, arena_used, upstream_buffers, upstream_bytes, next_buffer_size,
    ]
    more {
        /// System calls the arena made: ``{"mmap": .., "munmap": .., "mprotect": .., "madvise": ..}``.
        #[getter]
        fn syscalls<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
            syscalls_dict(py, &self.0.syscalls)
        }
    }
}
