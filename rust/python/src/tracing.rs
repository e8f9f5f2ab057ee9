//! `TracingAllocator(inner)`: any allocator, built-in or a Python object following the
//! protocol, with every allocation call recorded as an `AllocatorEvent`.

use crate::alloc_arg::AllocatorArg;
use crate::builtin;
use crate::convert::{Addr, Size};
use crate::errors::{AllocatorError, OrRaise};
use crate::view::make_view;
use pyo3::exceptions::{PyBufferError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};
use std::sync::Arc;
use stlalloc_core::adaptors::tracing::{Event, Failure, FailureKind, Op, Tracing};
use stlalloc_core::lending::registry;
use stlalloc_core::BlockAllocator;

pub type PyTrace = Tracing<Arc<dyn BlockAllocator>>;

/// Forwards every call to ``inner`` (any allocator: built-in, or an object with
/// ``allocate(n)`` and ``deallocate(p, n)``) and records each ``allocate``,
/// ``deallocate`` and ``reallocate`` — from Python or from a container — as an
/// AllocatorEvent, failed calls included. ``events()`` returns them, ``clear()`` empties
/// them. A TracingAllocator equals its inner allocator: each frees the other's blocks.
#[pyclass(frozen, module = "stlalloc", name = "TracingAllocator")]
pub struct PyTracingAllocator {
    pub inner: Arc<PyTrace>,
    /// The wrapped allocator object.
    pub object: Py<PyAny>,
}

#[pymethods]
impl PyTracingAllocator {
    #[new]
    fn new(py: Python<'_>, inner: &Bound<'_, PyAny>) -> PyResult<Self> {
        if inner.is_none() {
            return Err(PyTypeError::new_err(
                "TracingAllocator needs an allocator to wrap",
            ));
        }
        let core = AllocatorArg::from_py(py, Some(inner))?.core;
        let tracing = Arc::new(Tracing::new(core));
        registry::register(&(tracing.clone() as Arc<dyn BlockAllocator>));
        Ok(Self {
            inner: tracing,
            object: inner.clone().unbind(),
        })
    }

    /// The wrapped allocator.
    #[getter]
    fn inner(&self, py: Python<'_>) -> Py<PyAny> {
        self.object.clone_ref(py)
    }

    /// The alignment every block is promised (the inner allocator's).
    #[getter]
    fn alignment(&self) -> usize {
        self.inner.alignment()
    }

    fn allocate(&self, n: Size) -> PyResult<usize> {
        self.inner.allocate(n.0).or_raise()
    }

    fn deallocate(&self, p: Addr, n: Size) -> PyResult<()> {
        self.inner.deallocate(p.0, n.0).or_raise()
    }

    /// Recorded as one event: ``address`` the old block, ``old_size`` its size, ``size``
    /// the new size, ``result`` the new block.
    fn reallocate(&self, p: Addr, old_n: Size, new_n: Size) -> PyResult<usize> {
        self.inner.reallocate(p.0, old_n.0, new_n.0).or_raise()
    }

    /// True if ``p`` lies inside a live block of the inner allocator.
    fn owns(&self, p: Addr) -> bool {
        self.inner.owns(p.0)
    }

    /// A writable zero-copy memoryview of ``[p, p+n)``, inside one live block of the inner
    /// allocator that no container holds.
    fn view<'py>(&self, py: Python<'py>, p: Addr, n: Size) -> PyResult<Bound<'py, PyAny>> {
        make_view(py, self.inner.clone(), p.0, n.0)
    }

    /// The inner allocator's ``stats()`` (AttributeError if it has none).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.object.bind(py).call_method0("stats")
    }

    /// Every call so far, oldest first.
    fn events(&self, py: Python<'_>) -> PyResult<Vec<PyAllocatorEvent>> {
        self.inner
            .events()
            .into_iter()
            .map(|e| PyAllocatorEvent::from_core(py, e))
            .collect()
    }

    fn clear(&self) {
        self.inner.clear();
    }

    fn __eq__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> bool {
        builtin::equal(slf.as_any(), other)
    }

    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        builtin::hash(slf.as_any())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "TracingAllocator({}, events={})",
            self.object.bind(py).repr()?,
            self.inner.events().len()
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.object)
    }
}

/// One allocator call. ``op`` is ``"allocate"``, ``"deallocate"`` or ``"reallocate"``;
/// ``address`` the block the call is about (the new block of an allocate, 0 if it failed;
/// the block freed or moved otherwise); ``size`` the size asked (the new size of a
/// reallocate, whose old size is ``old_size``; None for the other calls); ``result`` the
/// address returned (None for deallocate) or, for a failed call, the exception it raised
/// (of the same class and message; an error raised by Python code the allocator ran is
/// recorded as a RuntimeError).
#[pyclass(frozen, module = "stlalloc", name = "AllocatorEvent")]
pub struct PyAllocatorEvent {
    #[pyo3(get)]
    op: &'static str,
    #[pyo3(get)]
    address: usize,
    #[pyo3(get)]
    size: usize,
    #[pyo3(get)]
    old_size: Option<usize>,
    #[pyo3(get)]
    result: Py<PyAny>,
}

fn exception(py: Python<'_>, f: &Failure) -> PyResult<Py<PyAny>> {
    let msg = f.message.clone();
    let err = match f.kind {
        FailureKind::OutOfMemory => PyMemoryError::new_err(msg),
        FailureKind::Pinned => PyBufferError::new_err(msg),
        FailureKind::Misuse => AllocatorError::new_err(msg),
        FailureKind::Handler => PyRuntimeError::new_err(msg),
        FailureKind::InvalidParameter => PyValueError::new_err(msg),
    };
    Ok(err.into_value(py).into_any())
}

impl PyAllocatorEvent {
    fn from_core(py: Python<'_>, e: Event) -> PyResult<Self> {
        let (op, old_size) = match e.op {
            Op::Allocate => ("allocate", None),
            Op::Deallocate => ("deallocate", None),
            Op::Reallocate { old_size } => ("reallocate", Some(old_size)),
        };
        let result = match &e.result {
            Ok(_) if op == "deallocate" => py.None(),
            Ok(p) => p.into_pyobject(py)?.into_any().unbind(),
            Err(f) => exception(py, f)?,
        };
        Ok(Self {
            op,
            address: e.address,
            size: e.size,
            old_size,
            result,
        })
    }
}

#[pymethods]
impl PyAllocatorEvent {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let result = self.result.bind(py);
        let shown = match result.extract::<usize>() {
            Ok(p) => format!("{p:#x}"),
            Err(_) => result.repr()?.to_string(),
        };
        let old = self
            .old_size
            .map_or(String::new(), |o| format!(", old_size={o}"));
        Ok(format!(
            "AllocatorEvent(op={:?}, address={:#x}, size={}{old}, result={shown})",
            self.op, self.address, self.size
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.result)
    }
}
