//! `PoolAllocator`: the second level (SGI's `alloc`) for Python, and `default_pool()`.

use crate::builtin;
use crate::convert::{Addr, Size};
use crate::errors::OrRaise;
use crate::fastcall::{Fallbacks, FastPair};
use crate::gil_lock::PyPoolLock;
use crate::malloc::PyMallocAllocator;
use crate::stats::PyPoolStats;
use crate::view::make_view;
use pyo3::exceptions::{PyIndexError, PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use pyo3::{PyTraverseError, PyVisit};
use std::sync::Arc;
use stlalloc_core::adaptors::debug::DebugPool;
use stlalloc_core::checked::spans::{Region, RegionKind, SpanKind};
use stlalloc_core::lending::registry;
use stlalloc_core::{
    AllocError, BlockAllocator, MallocAlloc, Params, SharedPool, DEFAULT_ARENA_SIZE,
};

/// The pool behind a `PoolAllocator`: checked, over a `MallocAllocator`, locked by the GIL
/// (or a spin lock on free-threaded builds).
pub type PyPool = SharedPool<Arc<MallocAlloc>, PyPoolLock>;

/// How many heaps a pool may make. With the GIL, one: the GIL serialises every call
/// anyway, and users inspecting `free_list(i)` from several threads expect one SGI pool.
/// Free-threaded, 64, whatever the cores: every thread gets a heap it owns and enters with
/// no lock and no atomic read-modify-write; a thread beyond them shares one, locked, and
/// pays a process-wide barrier per call. Heaps are made when a thread first allocates,
/// each reserving its arena's address space; a pool used from one thread has heap 0 only.
fn heaps() -> usize {
    if cfg!(Py_GIL_DISABLED) {
        64
    } else {
        1
    }
}

/// SGI's second-level allocator: ``nfreelists = max_bytes // align`` free lists of
/// ``align``-byte size classes, refilled ``refill`` blocks at a time from chunks of an
/// ``mmap``'d arena of ``arena_size`` bytes; requests above ``max_bytes`` (and chunks once
/// the arena is exhausted) go to ``upstream``, a MallocAllocator.
#[pyclass(frozen, module = "stlalloc", name = "PoolAllocator")]
pub struct PyPoolAllocator {
    /// The pool: statistics, free lists, pictures.
    pub inner: Arc<PyPool>,
    /// What serves blocks: the pool itself, or its debug wrapper.
    pub blocks: Arc<dyn BlockAllocator>,
    upstream: Py<PyMallocAllocator>,
}

#[pymethods]
impl PyPoolAllocator {
    #[new]
    #[pyo3(signature = (*, align = Size(8), max_bytes = Size(128), refill = Size(20), arena_size = Size(DEFAULT_ARENA_SIZE), upstream = None, debug = false))]
    fn new(
        py: Python<'_>,
        align: Size,
        max_bytes: Size,
        refill: Size,
        arena_size: Size,
        upstream: Option<Py<PyMallocAllocator>>,
        debug: bool,
    ) -> PyResult<Self> {
        let params = Params::new(align.0, max_bytes.0, refill.0).or_raise()?;
        let upstream = match upstream {
            Some(u) => u,
            None => Py::new(py, PyMallocAllocator::with_limit(None))?,
        };
        let core_upstream = upstream.get().inner.clone();
        let pool = SharedPool::with_heaps(params, arena_size.0, core_upstream, heaps());
        let inner = Arc::new(pool.or_raise()?);
        let blocks: Arc<dyn BlockAllocator> = if debug {
            Arc::new(DebugPool::new(inner.clone()))
        } else {
            inner.clone()
        };
        registry::register(&blocks);
        Ok(Self {
            inner,
            blocks,
            upstream,
        })
    }

    /// Debug mode: size cookies, freed blocks filled with 0xdd and checked on reuse.
    #[getter]
    fn debug(&self) -> bool {
        self.is_debug()
    }

    #[getter]
    fn align(&self) -> usize {
        self.inner.params().align()
    }

    #[getter]
    fn max_bytes(&self) -> usize {
        self.inner.params().max_bytes()
    }

    #[getter]
    fn refill(&self) -> usize {
        self.inner.params().refill()
    }

    #[getter]
    fn nfreelists(&self) -> usize {
        self.inner.params().nfreelists()
    }

    /// The first-level allocator behind this pool.
    #[getter]
    fn upstream(&self, py: Python<'_>) -> Py<PyMallocAllocator> {
        self.upstream.clone_ref(py)
    }

    /// A block of ``round_up(n)`` bytes from ``free_list[size_class(n)]`` (refilled from
    /// the arena when empty); above ``max_bytes`` from upstream; 0 for ``n == 0``.
    // `fastcall` serves the common call (`allocate(n)`, an exact int) itself and falls
    // back on this method, and on `deallocate` below, for every other: keep them in step.
    fn allocate(&self, n: Size) -> PyResult<usize> {
        self.blocks.allocate(n.0).or_raise()
    }

    /// Pushes ``p`` back on its free list (LIFO); ``n`` must be of the block's size class.
    fn deallocate(&self, p: Addr, n: Size) -> PyResult<()> {
        self.blocks.deallocate(p.0, n.0).or_raise()
    }

    /// SGI's reallocate: upstream ``realloc`` when both sizes are above ``max_bytes``,
    /// ``p`` itself when the size class does not change, else allocate, copy, deallocate.
    fn reallocate(&self, p: Addr, old_n: Size, new_n: Size) -> PyResult<usize> {
        self.blocks.reallocate(p.0, old_n.0, new_n.0).or_raise()
    }

    /// True if ``p`` lies inside a live block of this pool (pool or upstream block).
    fn owns(&self, p: Addr) -> bool {
        self.blocks.owns(p.0)
    }

    /// A writable zero-copy memoryview of ``[p, p+n)``, which must lie inside one live
    /// block. While the view is exported the block cannot be freed or reallocated.
    fn view<'py>(&self, py: Python<'py>, p: Addr, n: Size) -> PyResult<Bound<'py, PyAny>> {
        make_view(py, self.blocks.clone(), p.0, n.0)
    }

    fn stats(&self) -> PyPoolStats {
        PyPoolStats(self.inner.stats())
    }

    /// ``(n + align - 1) & ~(align - 1)``.
    fn round_up(&self, n: Size) -> PyResult<usize> {
        let align = self.inner.params().align();
        n.0.checked_add(align - 1)
            .map(|m| m & !(align - 1))
            .ok_or_else(|| PyMemoryError::new_err("size too large to round up"))
    }

    /// The free list index of an ``n``-byte request, ``1 <= n <= max_bytes``.
    fn size_class(&self, n: Size) -> PyResult<usize> {
        let params = self.inner.params();
        if n.0 == 0 || n.0 > params.max_bytes() {
            return Err(PyValueError::new_err(format!(
                "size {} has no size class: classes cover 1..={} bytes",
                n.0,
                params.max_bytes()
            )));
        }
        Ok(params.index(n.0))
    }

    /// The addresses on free list ``i``, head first (the next block ``allocate`` returns).
    fn free_list(&self, i: isize) -> PyResult<Vec<usize>> {
        let n = self.inner.params().nfreelists();
        let i = usize::try_from(i)
            .ok()
            .filter(|&i| i < n)
            .ok_or_else(|| PyIndexError::new_err(format!("free list {i} out of range 0..{n}")))?;
        Ok(self.inner.free_list(i))
    }

    /// Every region (the arena, then each upstream chunk) as a dict ``kind, base, len,
    /// used, spans``, spans being ``(start, size, kind, free_list_index_or_None)`` with kind
    /// ``"live"``, ``"free"`` or ``"chunk"``, in address order; they tile ``[base,
    /// base+used)``.
    fn layout<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let regions = self.inner.layout();
        regions.into_iter().map(|r| region_dict(py, r)).collect()
    }

    /// Gives every arena page and upstream chunk back to the system (SGI never does).
    /// Refused with AllocatorError while any block is live.
    fn release(&self) -> PyResult<()> {
        self.inner.release().or_raise()
    }

    /// Allocators are equal when one can free the other's memory: only the same pool
    /// (and TracingAllocators around it).
    fn __eq__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> bool {
        builtin::equal(slf.as_any(), other)
    }

    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        builtin::hash(slf.as_any())
    }

    fn __repr__(&self) -> String {
        let p = self.inner.params();
        let s = self.inner.stats();
        format!(
            "PoolAllocator(align={}, max_bytes={}, refill={}, heap_size={}, live_blocks={})",
            p.align(),
            p.max_bytes(),
            p.refill(),
            s.heap_size,
            s.live_blocks + s.large_live_blocks
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.upstream)
    }
}

fn region_dict(py: Python<'_>, r: Region) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    let kind = match r.kind {
        RegionKind::Arena => "arena",
        RegionKind::UpstreamChunk => "upstream",
    };
    d.set_item("kind", kind)?;
    d.set_item("base", r.base)?;
    d.set_item("len", r.len)?;
    d.set_item("used", r.used)?;
    let spans: Vec<(usize, usize, &str, Option<usize>)> = r
        .spans
        .iter()
        .map(|s| match s.kind {
            SpanKind::Live => (s.start, s.size, "live", None),
            SpanKind::Free { class } => (s.start, s.size, "free", Some(class)),
            SpanKind::Chunk => (s.start, s.size, "chunk", None),
        })
        .collect();
    d.set_item("spans", spans)?;
    Ok(d)
}

static FALLBACKS: Fallbacks = Fallbacks::new();

impl FastPair for PyPoolAllocator {
    fn fallbacks() -> &'static Fallbacks {
        &FALLBACKS
    }

    /// Straight to the pool, not through `blocks`, unless in debug mode: the dynamic call
    /// cost 3 ns of a 60 ns allocate+deallocate pair from Python.
    #[inline(always)]
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        if self.is_debug() {
            self.blocks.allocate(n)
        } else {
            self.inner.allocate(n)
        }
    }

    #[inline(always)]
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if self.is_debug() {
            self.blocks.deallocate(p, n)
        } else {
            self.inner.deallocate(p, n)
        }
    }
}

impl PyPoolAllocator {
    #[inline(always)]
    fn is_debug(&self) -> bool {
        !std::ptr::addr_eq(Arc::as_ptr(&self.blocks), Arc::as_ptr(&self.inner))
    }

    /// The pool that serves the blocks, unless a debug wrapper does.
    pub fn plain_pool(&self) -> Option<&Arc<PyPool>> {
        (!self.is_debug()).then_some(&self.inner)
    }
}

static DEFAULT_POOL: PyOnceLock<Py<PyPoolAllocator>> = PyOnceLock::new();

/// The process-wide pool, SGI's ``alloc``: default parameters, created on first use.
#[pyfunction]
pub fn default_pool(py: Python<'_>) -> PyResult<Py<PyPoolAllocator>> {
    DEFAULT_POOL
        .get_or_try_init(py, || {
            Py::new(
                py,
                PyPoolAllocator::new(
                    py,
                    Size(8),
                    Size(128),
                    Size(20),
                    Size(DEFAULT_ARENA_SIZE),
                    None,
                    false,
                )?,
            )
        })
        .map(|p| p.clone_ref(py))
}
