//! `List`: SGI's `std::list` for Python, a doubly linked list whose nodes are blocks of
//! the chosen allocator (one per element). The logic is the core's `List`; this layer
//! converts, locks and raises (see `typed` for the locking rules).

mod alloc;
mod fast;
mod typed;

pub use fast::install_all as install_fast;

use crate::alloc_arg::AllocatorArg;
use crate::dtype::{by_dtype, each, each_pair, ByDtype, Dtype, Family};
use crate::elem::{items_equal, Elem};
use crate::seq::{clamped, subscript, SliceSpec};
use crate::sequence::{self, check_same, Sequence};
use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyDict, PyList, PySlice, PyTuple};
use pyo3::{PyTraverseError, PyVisit};
use std::sync::{Mutex, PoisonError};
use stlalloc_core::containers::list::Cursor;
use typed::{Alloc, CoreList, Typed, UNBOUNDED, WHOLE};

/// The list engines, one per element type.
struct Lists;

impl Family for Lists {
    type Of<T: Elem> = Typed<T>;
}

type AnyList = ByDtype<Lists>;

/// A list of the last `maxlen` of `iterable`'s values.
fn build(
    dtype: Dtype,
    alloc: &Alloc,
    iterable: Option<&Bound<'_, PyAny>>,
    maxlen: usize,
) -> PyResult<AnyList> {
    by_dtype!(dtype, T => {
        let list = Typed::build(alloc, iterable, false, maxlen)?;
        Ok(T::wrap(Typed::<T>::new(list, maxlen)))
    })
}

fn wrap<T: Elem>(list: CoreList<T>, maxlen: usize) -> AnyList {
    T::wrap(Typed::new(list, maxlen))
}

/// `maxlen` as `deque` takes it: `None` or an int `>= 0`.
fn parse_maxlen(maxlen: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
    match maxlen.filter(|m| !m.is_none()) {
        None => Ok(UNBOUNDED),
        Some(m) => usize::try_from(m.extract::<isize>()?)
            .map_err(|_| PyValueError::new_err("maxlen must be non-negative")),
    }
}

const LIST_INDEX: &str = "List indices must be integers or slices";

/// ``std::list``: a doubly linked list, one node per element, each node one block of
/// ``node_size()`` bytes (prev, next, value) from ``allocator`` (default: ``default_pool()``).
///
/// ``dtype`` is ``"int64"``, ``"float64"`` or ``"object"``. The C++ names
/// (``push_back``, ``pop_front``, ``splice``, ``merge``, ``unique``…) and the ``deque``
/// ones (``append``, ``popleft``, ``extendleft``…, ``maxlen``) are both there; ``sort``
/// relinks nodes and allocates none.
#[pyclass(frozen, weakref, subclass, module = "stlalloc", name = "List")]
pub struct StdList {
    inner: AnyList,
    dtype: Dtype,
    allocator: Py<PyAny>,
}

impl StdList {
    fn from_parts(inner: AnyList, dtype: Dtype, allocator: Py<PyAny>) -> Self {
        Self {
            inner,
            dtype,
            allocator,
        }
    }

    fn maxlen_of(&self) -> usize {
        each!(&self.inner, t => t.maxlen())
    }

    /// The error for a two-list operation between different dtypes.
    fn dtype_mismatch(&self, other: &Self, what: &str) -> PyErr {
        PyTypeError::new_err(format!(
            "cannot {what} a List of dtype '{}' into one of dtype '{}'",
            other.dtype.name(),
            self.dtype.name()
        ))
    }
}

impl Sequence for StdList {
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        each!(&self.inner, t => t.objects(py))
    }

    fn operand<'py>(other: &Bound<'py, PyAny>) -> PyResult<Option<Vec<Bound<'py, PyAny>>>> {
        match other.cast::<StdList>() {
            Ok(l) => l.get().items(other.py()).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn equals(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
        let Ok(other) = other.cast::<StdList>() else {
            return Ok(None);
        };
        let theirs = other.get();
        if std::ptr::eq(self, theirs) {
            return Ok(Some(true));
        }
        let native = each_pair!(&self.inner, &theirs.inner,
                                (x, y) => x.native_eq(py, y)?, _ => None);
        if native.is_some() {
            return Ok(native);
        }
        items_equal(&self.items(py)?, &theirs.items(py)?).map(Some)
    }

    fn like(&self, py: Python<'_>, items: &Bound<'_, PyList>) -> PyResult<Self> {
        let alloc = each!(&self.inner, t => t.allocator().clone());
        let inner = build(self.dtype, &alloc, Some(items.as_any()), self.maxlen_of())?;
        Ok(Self::from_parts(
            inner,
            self.dtype,
            self.allocator.clone_ref(py),
        ))
    }

    fn append_all(&self, py: Python<'_>, items: &Bound<'_, PyList>) -> PyResult<()> {
        self.extend(py, items)
    }

    fn clear_all(&self, py: Python<'_>) -> PyResult<()> {
        self.clear(py)
    }
}

#[pymethods]
impl StdList {
    /// An empty List of `dtype` over `allocator`; `__init__` fills it, as for `deque`
    /// (so that a subclass's `__init__` decides what it holds).
    #[new]
    #[pyo3(
        signature = (*_args, dtype = "object", allocator = None, **_kwargs),
        text_signature = "(iterable=(), maxlen=None, *, dtype='object', allocator=None)"
    )]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        dtype: &str,
        allocator: Option<&Bound<'_, PyAny>>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let dtype = Dtype::parse(dtype)?;
        let alloc = AllocatorArg::from_py(py, allocator)?;
        let inner = build(dtype, &Alloc::of(py, &alloc), None, UNBOUNDED)?;
        Ok(Self::from_parts(inner, dtype, alloc.object))
    }

    /// Replaces the contents with the last ``maxlen`` of ``iterable``'s values and sets
    /// ``maxlen``, as ``deque.__init__``; ``dtype`` and ``allocator``, if given, must be
    /// the List's own (ValueError otherwise).
    #[pyo3(signature = (iterable = None, maxlen = None, *, dtype = None, allocator = None))]
    fn __init__(
        &self,
        py: Python<'_>,
        iterable: Option<&Bound<'_, PyAny>>,
        maxlen: Option<&Bound<'_, PyAny>>,
        dtype: Option<&str>,
        allocator: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        check_same(self.dtype, &self.allocator, dtype, allocator)?;
        let maxlen = parse_maxlen(maxlen)?;
        each!(&self.inner, t => t.assign(py, iterable, maxlen))
    }

    /// The bound on the length, as ``deque.maxlen`` (``None``: unbounded). A push at one
    /// end of a full List drops the value at the other end.
    #[getter]
    fn maxlen(&self) -> Option<usize> {
        Some(self.maxlen_of()).filter(|&m| m != UNBOUNDED)
    }

    /// ``"int64"``, ``"float64"`` or ``"object"``.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    /// The allocator the nodes come from.
    fn get_allocator(&self, py: Python<'_>) -> Py<PyAny> {
        self.allocator.clone_ref(py)
    }

    /// Bytes of one node: prev, next and the 8-byte value.
    fn node_size(&self) -> usize {
        by_dtype!(self.dtype, T => CoreList::<T>::node_size())
    }

    /// The address of every node, in list order.
    fn node_addresses(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        each!(&self.inner, t => t.node_addresses(py))
    }

    /// Appends ``x`` in a new node. On allocation failure (``MemoryError``) the list is
    /// unchanged.
    // Inlined into the fast entry point with `Typed::push` (see there); so is `push_front`.
    #[inline(always)]
    fn push_back(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.inner, t => t.push(py, x, false))
    }

    /// ``push_back``.
    fn append(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        self.push_back(py, x)
    }

    #[inline(always)]
    fn push_front(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.inner, t => t.push(py, x, true))
    }

    /// ``push_front``.
    fn appendleft(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        self.push_front(py, x)
    }

    /// Appends every item; if any fails (type, memory) the list is unchanged.
    fn extend(&self, py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.inner, t => t.extend(py, iterable, false))
    }

    /// Pushes every item at the front (so they end up reversed), all or nothing.
    fn extendleft(&self, py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.inner, t => t.extend(py, iterable, true))
    }

    /// Removes and returns the last element; ``IndexError`` if empty.
    #[inline(always)]
    fn pop_back<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        each!(&self.inner, t => t.pop(py, false))
    }

    /// ``pop_back``.
    fn pop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.pop_back(py)
    }

    #[inline(always)]
    fn pop_front<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        each!(&self.inner, t => t.pop(py, true))
    }

    /// ``pop_front``.
    fn popleft<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.pop_front(py)
    }

    /// The first element; ``IndexError`` if empty.
    fn front<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        each!(&self.inner, t => t.end(py, true))
    }

    /// The last element; ``IndexError`` if empty.
    fn back<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        each!(&self.inner, t => t.end(py, false))
    }

    /// Inserts ``x`` before position ``i`` (clamped, negative from the end, as
    /// ``list.insert``).
    fn insert(&self, py: Python<'_>, i: isize, x: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.inner, t => t.insert(py, i, x))
    }

    /// Removes the first element equal to ``x``, as ``deque.remove``; ``ValueError`` if
    /// there is none (C++'s remove-all is ``erase``).
    fn remove(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        each!(&self.inner, t => t.remove(py, x))
    }

    /// Removes every element equal to ``x`` (C++20 ``std::erase``); returns how many.
    fn erase(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        each!(&self.inner, t => t.erase(py, x))
    }

    /// Removes every element for which ``pred`` is true (``std::erase_if``); returns how
    /// many. ``ValueError`` if the List changes while ``pred`` runs (then unchanged).
    fn erase_if(&self, py: Python<'_>, pred: &Bound<'_, PyAny>) -> PyResult<usize> {
        each!(&self.inner, t => t.erase_if(py, pred))
    }

    /// Removes each element equal to the one kept before it (consecutive duplicates);
    /// returns how many.
    fn unique(&self, py: Python<'_>) -> PyResult<usize> {
        each!(&self.inner, t => t.unique(py))
    }

    /// Rotates ``n`` steps to the right (negative: left), as ``deque.rotate``, by
    /// relinking the nodes at one place: nothing is allocated or freed.
    #[pyo3(signature = (n = 1))]
    fn rotate(&self, py: Python<'_>, n: isize) -> PyResult<()> {
        each!(&self.inner, t => t.rotate(py, n))
    }

    /// Reverses the order by relinking.
    fn reverse(&self, py: Python<'_>) -> PyResult<()> {
        each!(&self.inner, t => t.reverse(py))
    }

    /// Stable sort, in place, by relinking the nodes: no node is allocated or freed. If a
    /// comparison or ``key`` raises, or the list is modified meanwhile (``ValueError``),
    /// the order is unchanged.
    #[pyo3(signature = (*, key = None, reverse = false))]
    fn sort(&self, py: Python<'_>, key: Option<&Bound<'_, PyAny>>, reverse: bool) -> PyResult<()> {
        let key = key.filter(|k| !k.is_none());
        each!(&self.inner, t => t.sort(py, key, reverse))
    }

    /// Moves all of ``other``'s nodes to the end of this list in O(1); ``other`` becomes
    /// empty. The allocators must be the same (else ``AllocatorError``, both unchanged).
    fn splice(&self, py: Python<'_>, other: &Bound<'_, StdList>) -> PyResult<()> {
        let other = other.get();
        each_pair!(&self.inner, &other.inner, (a, b) => a.splice(py, b),
                   _ => Err(self.dtype_mismatch(other, "splice")))
    }

    /// Merges the sorted ``other`` into this sorted list by relinking (stable: on ties this
    /// list's elements come first); ``other`` becomes empty. Same allocator required.
    fn merge(&self, py: Python<'_>, other: &Bound<'_, StdList>) -> PyResult<()> {
        let other = other.get();
        each_pair!(&self.inner, &other.inner, (a, b) => a.merge(py, b),
                   _ => Err(self.dtype_mismatch(other, "merge")))
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        each!(&self.inner, t => t.clear(py))
    }

    /// A new List with the same values, dtype and allocator.
    fn copy(&self, py: Python<'_>) -> PyResult<Self> {
        let inner = each!(&self.inner, t => wrap(t.copy(py)?, t.maxlen()));
        Ok(Self::from_parts(
            inner,
            self.dtype,
            self.allocator.clone_ref(py),
        ))
    }

    /// Number of elements equal to ``x``.
    fn count(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        Ok(each!(&self.inner, t => t.find(py, x, WHOLE, false))?.len())
    }

    /// Position of the first element equal to ``x`` in ``[start, stop)`` (as
    /// ``list.index`` takes them); ``ValueError`` if none.
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
        let first = each!(&self.inner, t => t.find(py, x, (start, stop), true))?;
        first
            .first()
            .copied()
            .ok_or_else(|| PyValueError::new_err("value is not in List"))
    }

    fn __contains__(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(!each!(&self.inner, t => t.find(py, x, WHOLE, true))?.is_empty())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        each!(&self.inner, t => t.len(py))
    }

    /// Element ``i`` (negative from the end), walking from the nearer end; a slice is a
    /// new List over the same allocator.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        i: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(slice) = i.cast::<PySlice>() {
            let spec = SliceSpec::unpack(slice)?;
            let inner = each!(&self.inner, t => wrap(t.get_slice(py, spec)?, t.maxlen()));
            let part = Self::from_parts(inner, self.dtype, self.allocator.clone_ref(py));
            return Ok(Bound::new(py, part)?.into_any());
        }
        let i = subscript(i, LIST_INDEX)?;
        each!(&self.inner, t => t.get(py, i))
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        i: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let i = subscript(i, LIST_INDEX)?;
        each!(&self.inner, t => t.set(py, i, x))
    }

    fn __delitem__(&self, py: Python<'_>, i: &Bound<'_, PyAny>) -> PyResult<()> {
        let i = subscript(i, LIST_INDEX)?;
        each!(&self.inner, t => t.delete(py, i))
    }

    fn __iter__(slf: Bound<'_, Self>) -> PyResult<ListIterator> {
        ListIterator::new(slf, false)
    }

    fn __reversed__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, ListReverseIterator>> {
        let py = slf.py();
        Bound::new(py, ListReverseIterator::init(ListIterator::new(slf, true)?))
    }

    /// ``==`` (equal values in the same order, any dtype) and ordering, lexicographic as
    /// ``deque`` compares, with another List.
    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        sequence::compare(self, py, other, op)
    }

    /// Mutable, so unhashable, like a deque.
    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    /// A new List (of this dtype and allocator) of both Lists' values.
    fn __add__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        sequence::concat(self, py, other)
    }

    /// ``extend``.
    fn __iadd__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<()> {
        self.extend(py, other)
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

    /// ``List([1, 2], dtype='int64')``; a List inside itself shows as ``[...]``.
    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let me = slf.get();
        let Some(_guard) = ReprGuard::enter(slf)? else {
            return Ok("[...]".to_string());
        };
        let py = slf.py();
        let items = PyList::new(py, each!(&me.inner, t => t.objects(py))?)?;
        let maxlen = me
            .maxlen()
            .map_or(String::new(), |m| format!(", maxlen={m}"));
        Ok(format!(
            "List({}, dtype='{}'{maxlen})",
            items.repr()?,
            me.dtype.name()
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.allocator)?;
        each!(&self.inner, t => t.traverse(&visit))
    }

    fn __clear__(&self) {
        each!(&self.inner, t => t.clear_for_gc())
    }
}

/// CPython's guard against infinite recursion in `repr` of self-containing containers.
struct ReprGuard<'a, 'py>(&'a Bound<'py, StdList>);

impl<'a, 'py> ReprGuard<'a, 'py> {
    /// None if a `repr` of `obj` is already running on this thread.
    fn enter(obj: &'a Bound<'py, StdList>) -> PyResult<Option<Self>> {
        // SAFETY: `obj` is a live object; every successful enter is paired with a leave
        // in `drop`.
        match unsafe { ffi::Py_ReprEnter(obj.as_ptr()) } {
            0 => Ok(Some(Self(obj))),
            r if r > 0 => Ok(None),
            _ => Err(PyErr::fetch(obj.py())),
        }
    }
}

impl Drop for ReprGuard<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: paired with the successful `Py_ReprEnter` of `enter`.
        unsafe { ffi::Py_ReprLeave(self.0.as_ptr()) }
    }
}

/// Iterates a List from the front (``ListIterator(l)`` is ``iter(l)``), or from the back
/// as its subclass ``ListReverseIterator`` (``reversed(l)``), as deque's two iterator types
/// do. Raises ``RuntimeError`` if the List changes structure meanwhile (overwriting values
/// is fine). Once exhausted it lets go of the List, as a deque iterator does. Pickles as
/// ``iter(list)`` / ``reversed(list)`` advanced as far, as list iterators do.
#[pyclass(frozen, subclass, module = "stlalloc", name = "ListIterator")]
pub struct ListIterator {
    /// None once exhausted.
    state: Mutex<Option<Walk>>,
}

struct Walk {
    list: Py<StdList>,
    /// Going backwards for a `ListReverseIterator`.
    cursor: Cursor,
    /// How many values were yielded, for pickling.
    yielded: usize,
}

impl ListIterator {
    fn new(list: Bound<'_, StdList>, backward: bool) -> PyResult<Self> {
        let cursor = each!(&list.get().inner, t => t.cursor(list.py(), backward))?;
        Ok(Self {
            state: Mutex::new(Some(Walk {
                list: list.unbind(),
                cursor,
                yielded: 0,
            })),
        })
    }
}

/// ``reversed(l)``: a [`ListIterator`] going backwards, of its own type so that
/// ``type(reversed(l))(l)`` is ``reversed(l)``.
#[pyclass(frozen, extends = ListIterator, module = "stlalloc", name = "ListReverseIterator")]
pub struct ListReverseIterator;

#[pymethods]
impl ListReverseIterator {
    #[new]
    #[pyo3(signature = (list, /))]
    fn construct(list: Bound<'_, StdList>) -> PyResult<PyClassInitializer<Self>> {
        Ok(ListReverseIterator::init(ListIterator::new(list, true)?))
    }
}

impl ListReverseIterator {
    fn init(walk: ListIterator) -> PyClassInitializer<Self> {
        PyClassInitializer::from(walk).add_subclass(Self)
    }
}

#[pymethods]
impl ListIterator {
    #[new]
    #[pyo3(signature = (list, /))]
    fn construct(list: Bound<'_, StdList>) -> PyResult<Self> {
        Self::new(list, false)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut slot = self
            .state
            .lock_py_attached(py)
            .unwrap_or_else(PoisonError::into_inner);
        let Some(walk) = slot.as_mut() else {
            return Ok(None);
        };
        // Making an int or float object runs no Python code, so it may happen here.
        let value = each!(&walk.list.get().inner, t => {
            t.advance(py, &mut walk.cursor).map(|v| v.map(|v| v.into_py(py)))
        });
        // The List is let go of (perhaps its last reference, running a `__del__`) only once
        // the slot is unlocked.
        let gone = if matches!(value, Ok(Some(_))) {
            walk.yielded += 1;
            None
        } else {
            slot.take()
        };
        drop(slot);
        drop(gone);
        value
    }

    /// ``(iter, (list,), yielded)`` (``reversed`` going backwards); once exhausted, an
    /// iterator of the same type over an empty List.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let (list, yielded) = {
            let slot = slf
                .get()
                .state
                .lock_py_attached(py)
                .unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                Some(w) => (Some(w.list.clone_ref(py)), w.yielded),
                None => (None, 0),
            }
        };
        let backward = slf.is_instance_of::<ListReverseIterator>();
        let list = match list {
            Some(l) => l.into_bound(py).into_any(),
            None => py.get_type::<StdList>().call0()?,
        };
        crate::sequence::iterator_reduce(py, list, backward, yielded)
    }

    /// Advances past the first ``n`` values (unpickling).
    fn __setstate__(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        for _ in 0..n {
            if self.__next__(py)?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The collector does not wait: a slot locked elsewhere counts as external.
        if let Ok(slot) = self.state.try_lock() {
            if let Some(walk) = slot.as_ref() {
                visit.call(&walk.list)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let gone = self.state.try_lock().ok().and_then(|mut slot| slot.take());
        drop(gone);
    }
}
