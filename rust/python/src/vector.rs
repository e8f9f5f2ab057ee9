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
use crate::gil_lock::GilMutex;
use crate::seq::{clamped, subscript, SliceSpec};
use crate::sequence::{self, check_same, Sequence};
use crate::typed_vector::Typed;
use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySlice, PyTuple};
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
#[pyclass(
    frozen,
    sequence,
    weakref,
    subclass,
    module = "stlalloc",
    name = "Vector"
)]
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

impl Sequence for PyVector {
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.py_items(py)
    }

    fn operand<'py>(other: &Bound<'py, PyAny>) -> PyResult<Option<Vec<Bound<'py, PyAny>>>> {
        if let Ok(v) = other.cast::<PyVector>() {
            return v.get().py_items(other.py()).map(Some);
        }
        Ok(other.cast::<PyList>().ok().map(|l| l.iter().collect()))
    }

    fn equals(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
        PyVector::equals(self, py, other)
    }

    fn like(&self, py: Python<'_>, items: &Bound<'_, PyList>) -> PyResult<Self> {
        let allocator = self.allocator.clone_ref(py);
        by_dtype!(self.store.dtype(), T => Self::with_items::<T>(allocator, elem::collect(items)?))
    }

    fn append_all(&self, py: Python<'_>, items: &Bound<'_, PyList>) -> PyResult<()> {
        self.extend(py, items)
    }

    fn clear_all(&self, py: Python<'_>) -> PyResult<()> {
        self.clear(py)
    }
}

#[pymethods]
impl PyVector {
    /// An empty Vector of `dtype` over `allocator`; `__init__` fills it, as for `list`
    /// (so that a subclass's `__init__` decides what it holds).
    #[new]
    #[pyo3(
        signature = (*_args, dtype = "object", allocator = None, **_kwargs),
        text_signature = "(iterable=None, *, dtype='object', allocator=None)"
    )]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        dtype: &str,
        allocator: Option<&Bound<'_, PyAny>>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let dtype = crate::dtype::Dtype::parse(dtype)?;
        let allocator = AllocatorArg::from_py(py, allocator)?;
        by_dtype!(dtype, T => Self::with_items::<T>(allocator, Vec::new()))
    }

    /// Replaces the contents with ``iterable``'s, as ``list.__init__``; ``dtype`` and
    /// ``allocator``, if given, must be the Vector's own (ValueError otherwise).
    #[pyo3(signature = (iterable = None, *, dtype = None, allocator = None))]
    fn __init__(
        &self,
        py: Python<'_>,
        iterable: Option<&Bound<'_, PyAny>>,
        dtype: Option<&str>,
        allocator: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        check_same(self.store.dtype(), &self.allocator.object, dtype, allocator)?;
        each!(&self.store, t => {
            let items = match iterable {
                Some(it) => items_from(py, it)?,
                None => Vec::new(),
            };
            t.assign(py, items)
        })
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
        VectorIterator::new(slf, 0, false)
    }

    fn __reversed__(slf: Bound<'_, Self>) -> PyResult<VectorIterator> {
        let len = slf.get().__len__(slf.py())?;
        Ok(VectorIterator::new(slf, len, true))
    }

    /// ``==`` and ordering with a Vector or a list, lexicographic as lists compare.
    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        sequence::compare(self, py, other, op)
    }

    /// A new Vector (of this dtype and allocator) of both operands' values.
    fn __add__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        sequence::concat(self, py, other)
    }

    fn __mul__(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        sequence::repeat(self, py, n)
    }

    fn __rmul__(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        sequence::repeat(self, py, n)
    }

    fn __imul__(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<()> {
        sequence::repeat_in_place(self, py, n)
    }

    /// Removes every element equal to ``x`` (C++20 ``std::erase``); returns how many.
    fn erase(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        each!(&self.store, t => t.erase(py, x))
    }

    /// Removes every element for which ``pred`` is true (``std::erase_if``); returns how
    /// many. ``ValueError`` if the Vector changes while ``pred`` runs (then unchanged).
    fn erase_if(&self, py: Python<'_>, pred: &Bound<'_, PyAny>) -> PyResult<usize> {
        each!(&self.store, t => t.erase_if(py, pred))
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
/// iterators do: changes made meanwhile are seen, and it never runs past the end. Once
/// exhausted it lets go of the Vector, as a list iterator does.
#[pyclass(frozen, module = "stlalloc", name = "VectorIterator")]
pub struct VectorIterator {
    /// `None` once exhausted. The engine's lock (`gil_lock`): on a GIL build it costs two
    /// plain stores, where a mutex would add a tenth to each step.
    vector: GilMutex<Option<Py<PyVector>>>,
    /// Forwards: the next position. Backwards: one past it.
    next: AtomicUsize,
    reverse: bool,
}

impl VectorIterator {
    fn new(vector: Bound<'_, PyVector>, next: usize, reverse: bool) -> Self {
        Self {
            vector: GilMutex::new(Some(vector.unbind())),
            next: AtomicUsize::new(next),
            reverse,
        }
    }

    fn vector(&self, py: Python<'_>) -> PyResult<Option<Py<PyVector>>> {
        Ok(self.vector.lock(py)?.as_ref().map(|v| v.clone_ref(py)))
    }
}

#[pymethods]
impl VectorIterator {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut slot = self.vector.lock(py)?;
        let Some(vector) = slot.as_ref() else {
            return Ok(None);
        };
        // Reading an element runs no Python code, so it may happen with the slot locked.
        let pos = self.next.load(Ordering::Relaxed);
        let at = if self.reverse {
            pos.checked_sub(1)
        } else {
            Some(pos)
        };
        let item = match at {
            Some(at) => vector.get().item(py, at)?,
            None => None,
        };
        // The Vector is let go of (perhaps its last reference, running a `__del__`) only
        // once the slot is unlocked.
        let gone = match (&item, at) {
            (Some(_), Some(at)) => {
                let after = if self.reverse { at } else { at + 1 };
                self.next.store(after, Ordering::Relaxed);
                None
            }
            _ => slot.take(),
        };
        drop(slot);
        drop(gone);
        Ok(item)
    }

    /// ``(iter, (vector,), position)`` (``reversed`` going backwards), as list iterators
    /// pickle; once exhausted, an iterator over an empty Vector.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (vector, pos) = match self.vector(py)? {
            Some(v) => (
                v.into_bound(py).into_any(),
                self.next.load(Ordering::Relaxed),
            ),
            None => (py.get_type::<PyVector>().call0()?, 0),
        };
        crate::sequence::iterator_reduce(py, vector, self.reverse, pos)
    }

    /// Continues from ``position`` (unpickling); going backwards, at most the length.
    fn __setstate__(&self, py: Python<'_>, position: usize) -> PyResult<()> {
        let position = match (self.reverse, self.vector(py)?) {
            (true, Some(v)) => position.min(v.get().__len__(py)?),
            _ => position,
        };
        self.next.store(position, Ordering::Relaxed);
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The collector does not wait: a slot locked elsewhere counts as external.
        if let Some(slot) = self.vector.try_lock() {
            if let Some(v) = slot.as_ref() {
                visit.call(v)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let gone = self.vector.try_lock().and_then(|mut slot| slot.take());
        drop(gone);
    }
}
