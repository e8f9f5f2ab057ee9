//! `Vector`: `std::vector` for Python (SPEC §5), with the C++ names and the full
//! `MutableSequence` protocol. Storage is one block of `capacity * 8` bytes from the
//! allocator; numeric vectors export it as a buffer. The work is done by `Typed<T>`, one per
//! dtype; this layer parses arguments and dispatches.

mod fast;

pub use fast::install_all as install_fast;

use crate::alloc_arg::AllocatorArg;
use crate::buffer;
use crate::convert::Size;
use crate::dtype::{by_dtype, each, each_pair, ByDtype, Family};
use crate::elem::{self, items_equal, Elem};
use crate::seq::{clamped, subscript, SliceSpec};
use crate::typed_vector::Typed;
use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyList, PySlice};
use pyo3::{ffi, PyTraverseError, PyVisit};
use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The vector engines, one per element type.
struct Vectors;

impl Family for Vectors {
    type Of<T: Elem> = Typed<T>;
}

type Store = ByDtype<Vectors>;

/// The elements of `iterable` as `T`; a Vector of the same dtype is copied directly.
fn items_from<T: Elem>(py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
    if let Ok(v) = iterable.cast::<PyVector>() {
        if let Some(t) = T::select(&v.get().store) {
            return t.snapshot(py);
        }
    }
    elem::collect(iterable)
}

const VECTOR_INDEX: &str = "Vector indices must be integers or slices";

/// ``std::vector`` over an allocator: one contiguous block of ``capacity() * 8`` bytes.
///
/// ``dtype`` is ``"int64"``, ``"float64"`` or ``"object"``; ``allocator`` a PoolAllocator or
/// MallocAllocator (default: ``default_pool()``). Growth as libstdc++: when full, capacity
/// becomes ``max(1, 2*len)``; inserting ``k`` at once, ``len + max(len, k)``. Numeric
/// vectors export their storage as a buffer (``'q'``/``'d'``); while exported, anything
/// that would move or free the storage raises BufferError.
#[pyclass(frozen, sequence, weakref, module = "stlalloc", name = "Vector")]
pub struct PyVector {
    store: Store,
    allocator: AllocatorArg,
}

impl PyVector {
    fn with_items<T: Elem>(allocator: AllocatorArg, items: Vec<T>) -> PyResult<Self> {
        let typed = Typed::from_items(allocator.core.clone(), items)?;
        Ok(Self {
            store: T::wrap(typed),
            allocator,
        })
    }

    fn build<T: Elem>(
        py: Python<'_>,
        allocator: AllocatorArg,
        iterable: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let items = match iterable {
            Some(it) => items_from::<T>(py, it)?,
            None => Vec::new(),
        };
        Self::with_items(allocator, items)
    }

    fn item<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(each!(&self.store, t => t.item(py, i)?.map(|e| e.into_py(py))))
    }

    fn py_items<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        each!(&self.store, t => t.py_items(py))
    }

    /// Equality with a Vector or a list, as lists compare; `None` for anything else.
    fn equals(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
        if let Ok(o) = other.cast::<PyVector>() {
            let native = each_pair!(&self.store, &o.get().store,
                                    (a, b) => a.native_equals(py, b)?, _ => None);
            if native.is_some() {
                return Ok(native);
            }
            return items_equal(&self.py_items(py)?, &o.get().py_items(py)?).map(Some);
        }
        if let Ok(list) = other.cast::<PyList>() {
            let theirs: Vec<_> = list.iter().collect();
            return items_equal(&self.py_items(py)?, &theirs).map(Some);
        }
        Ok(None)
    }
}

#[pymethods]
impl PyVector {
    #[new]
    #[pyo3(signature = (iterable = None, *, dtype = "object", allocator = None))]
    fn new(
        py: Python<'_>,
        iterable: Option<&Bound<'_, PyAny>>,
        dtype: &str,
        allocator: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let dtype = crate::dtype::Dtype::parse(dtype)?;
        let allocator = AllocatorArg::from_py(py, allocator)?;
        by_dtype!(dtype, T => Self::build::<T>(py, allocator, iterable))
    }

    /// ``"int64"``, ``"float64"`` or ``"object"``.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.store.dtype().name()
    }

    /// The allocator the storage comes from.
    fn get_allocator(&self, py: Python<'_>) -> Py<PyAny> {
        self.allocator.object.clone_ref(py)
    }

    /// Appends ``x``; when full, moves to storage of ``max(1, 2*len)`` elements.
    fn push_back(&self, x: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.store, t => t.push(x))
    }

    /// Same as ``push_back``.
    fn append(&self, x: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.store, t => t.push(x))
    }

    /// Removes and returns the last element.
    fn pop_back<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        each!(&self.store, t => t.pop(py, -1))
    }

    fn front<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        each!(&self.store, t => t.front(py, false))
    }

    fn back<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        each!(&self.store, t => t.front(py, true))
    }

    /// Grows the storage to exactly ``n`` elements if it is smaller.
    fn reserve(&self, py: Python<'_>, n: Size) -> PyResult<()> {
        each!(&self.store, t => t.reserve(py, n.0))
    }

    fn capacity(&self, py: Python<'_>) -> PyResult<usize> {
        each!(&self.store, t => t.capacity(py))
    }

    /// Moves to storage of exactly ``len`` elements; frees it when empty.
    fn shrink_to_fit(&self, py: Python<'_>) -> PyResult<()> {
        each!(&self.store, t => t.shrink_to_fit(py))
    }

    /// Truncates to ``n`` elements, or appends copies of ``value`` (default 0, 0.0, None).
    #[pyo3(signature = (n, value = None))]
    fn resize(&self, py: Python<'_>, n: Size, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        each!(&self.store, t => t.resize(py, n.0, value))
    }

    /// Removes every element; the capacity stays.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        each!(&self.store, t => t.clear(py))
    }

    /// The storage address; 0 when there is none.
    fn data(&self, py: Python<'_>) -> PyResult<usize> {
        each!(&self.store, t => t.data(py))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        each!(&self.store, t => t.len(py))
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(slice) = key.cast::<PySlice>() {
            let spec = SliceSpec::unpack(slice)?;
            let allocator = self.allocator.clone_ref(py);
            let part =
                each!(&self.store, t => Self::with_items(allocator, t.get_slice(py, spec)?))?;
            return Ok(Bound::new(py, part)?.into_any());
        }
        let i = subscript(key, VECTOR_INDEX)?;
        each!(&self.store, t => t.get(py, i))
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if let Ok(slice) = key.cast::<PySlice>() {
            let spec = SliceSpec::unpack(slice)?;
            return each!(&self.store, t => t.set_slice(py, spec, items_from(py, value)?));
        }
        let i = subscript(key, VECTOR_INDEX)?;
        each!(&self.store, t => t.set(i, value))
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = key.py();
        if let Ok(slice) = key.cast::<PySlice>() {
            let spec = SliceSpec::unpack(slice)?;
            return each!(&self.store, t => t.del_slice(py, spec));
        }
        let i = subscript(key, VECTOR_INDEX)?;
        each!(&self.store, t => t.del(py, i))
    }

    /// Appends every element of ``iterable``, growing at most once.
    fn extend(&self, py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.store, t => t.extend(py, items_from(py, iterable)?))
    }

    fn __iadd__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<()> {
        self.extend(py, other)
    }

    /// Inserts ``x`` before position ``i`` (clamped, negative from the end, as lists do).
    fn insert(&self, i: isize, x: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.store, t => t.insert(i, x))
    }

    #[pyo3(signature = (i = -1))]
    fn pop<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        each!(&self.store, t => t.pop(py, i))
    }

    /// Removes the first element equal to ``x``; ValueError if there is none.
    fn remove(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.store, t => t.remove(py, x))
    }

    #[pyo3(signature = (x, start = None, stop = None))]
    fn index(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        start: Option<&Bound<'_, PyAny>>,
        stop: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let start = start.map_or(Ok(0), clamped)?;
        let stop = stop.map_or(Ok(isize::MAX), clamped)?;
        each!(&self.store, t => t.position(py, x, start, stop))?.ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err("Vector.index(x): x not in Vector")
        })
    }

    fn count(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        each!(&self.store, t => t.count(py, x))
    }

    fn __contains__(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<bool> {
        each!(&self.store, t => t.position(py, x, 0, isize::MAX)).map(|p| p.is_some())
    }

    fn reverse(&self, py: Python<'_>) -> PyResult<()> {
        each!(&self.store, t => t.reverse(py))
    }

    /// Stable sort in place, as ``list.sort``.
    #[pyo3(signature = (*, key = None, reverse = false))]
    fn sort(&self, py: Python<'_>, key: Option<&Bound<'_, PyAny>>, reverse: bool) -> PyResult<()> {
        let key = key.filter(|k| !k.is_none());
        each!(&self.store, t => t.sort(py, key, reverse))
    }

    fn __iter__(slf: Bound<'_, Self>) -> VectorIterator {
        VectorIterator {
            vector: slf.unbind(),
            next: AtomicUsize::new(0),
            reverse: false,
        }
    }

    fn __reversed__(slf: Bound<'_, Self>) -> PyResult<VectorIterator> {
        let len = slf.get().__len__(slf.py())?;
        Ok(VectorIterator {
            vector: slf.unbind(),
            next: AtomicUsize::new(len),
            reverse: true,
        })
    }

    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let want = match op {
            CompareOp::Eq => true,
            CompareOp::Ne => false,
            _ => return Ok(py.NotImplemented()),
        };
        Ok(match self.equals(py, other)? {
            Some(eq) => PyBool::new(py, eq == want).to_owned().into_any().unbind(),
            None => py.NotImplemented(),
        })
    }

    /// Mutable, so unhashable, like a list.
    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        // SAFETY: `slf` is a valid object; every successful enter is left below.
        let entered = unsafe { ffi::Py_ReprEnter(slf.as_ptr()) };
        if entered < 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        if entered > 0 {
            return Ok("Vector(...)".to_string());
        }
        let me = slf.get();
        let items = me
            .py_items(slf.py())
            .and_then(|items| PyList::new(slf.py(), items))
            .and_then(|l| l.repr().map(|r| r.to_string()));
        // SAFETY: paired with the successful `Py_ReprEnter` above.
        unsafe { ffi::Py_ReprLeave(slf.as_ptr()) };
        Ok(format!(
            "Vector({}, dtype='{}')",
            items?,
            me.store.dtype().name()
        ))
    }

    /// A copy over the same allocator, with capacity equal to its length.
    fn copy(&self, py: Python<'_>) -> PyResult<Self> {
        let allocator = self.allocator.clone_ref(py);
        each!(&self.store, t => Self::with_items(allocator, t.snapshot(py)?))
    }

    fn __copy__(&self, py: Python<'_>) -> PyResult<Self> {
        self.copy(py)
    }

    /// # Safety
    /// Called by CPython with its own `Py_buffer`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let me = slf.get();
        let region = each!(&me.store, t => t.export(slf.py()))?;
        let owner = slf.clone().into_any();
        // SAFETY: the storage is pinned and cannot move or be freed until the matching
        // `__releasebuffer__`, and the view keeps this vector alive until then.
        let filled = unsafe { buffer::fill(view, flags, &region, owner) };
        if filled.is_err() {
            each!(&me.store, t => t.release_export(slf.py()));
        }
        filled
    }

    /// # Safety
    /// Called by CPython once per filled view.
    unsafe fn __releasebuffer__(&self, py: Python<'_>, view: *mut ffi::Py_buffer) {
        each!(&self.store, t => t.release_export(py));
        // SAFETY: `view` was filled by `__getbuffer__`.
        unsafe { buffer::release(view) }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.allocator.object)?;
        each!(&self.store, t => t.traverse(&visit))
    }

    fn __clear__(&self) {
        each!(&self.store, t => t.clear_for_gc())
    }
}

/// Iterates a Vector forwards or backwards, reading it afresh at each step as list
/// iterators do: changes made meanwhile are seen, and it never runs past the end.
#[pyclass(frozen, module = "stlalloc", name = "VectorIterator")]
pub struct VectorIterator {
    vector: Py<PyVector>,
    /// Forwards: the next position (`usize::MAX` once exhausted). Backwards: one past it
    /// (0 once exhausted).
    next: AtomicUsize,
    reverse: bool,
}

const EXHAUSTED: usize = usize::MAX;

#[pymethods]
impl VectorIterator {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let v = self.vector.get();
        let pos = self.next.load(Ordering::Relaxed);
        let (at, after, done) = if self.reverse {
            let Some(at) = pos.checked_sub(1) else {
                return Ok(None);
            };
            (at, at, 0)
        } else {
            if pos == EXHAUSTED {
                return Ok(None);
            }
            (pos, pos + 1, EXHAUSTED)
        };
        let item = v.item(py, at)?;
        self.next
            .store(if item.is_some() { after } else { done }, Ordering::Relaxed);
        Ok(item)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.vector)
    }
}
