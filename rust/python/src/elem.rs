//! Container elements, one Rust type per dtype: `i64` for "int64", `f64` for "float64",
//! `Py<PyAny>` for "object", the same for every container. Conversions raise what
//! `array.array('q')` / `array('d')` raise: a non-integer into int64 (str, float)
//! `TypeError`, an int out of range `OverflowError`; ints are accepted into float64.

use crate::dtype::{ByDtype, Dtype, Family};
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyList, PyRange, PyRangeMethods, PyTuple};
use pyo3::{ffi, PyTraverseError, PyVisit};
use std::ffi::CStr;

/// How a Python value compares with the elements, decided once per search.
pub enum Probe<T> {
    /// Equal to exactly the elements `native_eq` to this one.
    Equal(T),
    /// Equal to no element (an int beyond int64, say).
    Never,
    /// Only Python can tell: compare element by element.
    Python,
}

pub trait Elem: Sized + Send + Sync + 'static {
    const DTYPE: Dtype;
    /// The buffer-protocol format of numeric elements; `None` exports no buffer.
    const FORMAT: Option<&'static CStr>;
    /// Python's `<` computed in Rust, for numbers; objects compare by calling Python.
    const NATIVE_LT: Option<fn(&Self, &Self) -> bool>;

    /// The engine of family `F` for this element type, if `d` holds that one.
    fn select<F: Family>(d: &ByDtype<F>) -> Option<&F::Of<Self>>;
    fn wrap<F: Family>(engine: F::Of<Self>) -> ByDtype<F>;

    /// May run Python code (`__index__`, `__float__`): never call it with a container
    /// locked.
    fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Self>;
    fn into_py(self, py: Python<'_>) -> Bound<'_, PyAny>;
    /// A copy (for objects a new reference: only an incref, safe under any lock).
    fn clone_ref(&self, py: Python<'_>) -> Self;
    /// Lets go of a value now, through the token: a `Py` dropped where PyO3 does not count
    /// the thread as attached (a fast entry point, see `fastcall`) would wait in PyO3's
    /// pool instead. May run Python code (`__del__`): never call it with a container locked.
    #[inline]
    fn release(self, _py: Python<'_>) {}
    /// What `resize(n)` fills with: `T()` in C++, None for objects.
    fn default_value(py: Python<'_>) -> Self;
    /// The element equal to `i`, for ranges converted without Python calls.
    fn from_i64(i: i64) -> Option<Self>;
    fn probe(x: &Bound<'_, PyAny>) -> Probe<Self>;
    /// Equality without Python, as `array.array` compares numbers; `None` for objects.
    fn native_eq(&self, other: &Self) -> Option<bool>;
    /// Sorts stably by the element's natural order without Python (descending with
    /// `reverse`, equal elements keeping their order, as `list.sort`); `false`, doing
    /// nothing, for objects.
    fn sort_native(items: &mut [Self], reverse: bool) -> bool;

    fn visit(&self, _visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        Ok(())
    }
}

fn lt<T: PartialOrd>(a: &T, b: &T) -> bool {
    a < b
}

impl Elem for i64 {
    const DTYPE: Dtype = Dtype::Int64;
    const FORMAT: Option<&'static CStr> = Some(c"q");
    const NATIVE_LT: Option<fn(&Self, &Self) -> bool> = Some(lt);

    fn select<F: Family>(d: &ByDtype<F>) -> Option<&F::Of<Self>> {
        match d {
            ByDtype::Int(e) => Some(e),
            _ => None,
        }
    }
    fn wrap<F: Family>(engine: F::Of<Self>) -> ByDtype<F> {
        ByDtype::Int(engine)
    }

    #[inline]
    fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        obj.extract()
    }
    fn into_py(self, py: Python<'_>) -> Bound<'_, PyAny> {
        PyInt::new(py, self).into_any()
    }
    fn clone_ref(&self, _py: Python<'_>) -> Self {
        *self
    }
    fn default_value(_py: Python<'_>) -> Self {
        0
    }
    fn from_i64(i: i64) -> Option<Self> {
        Some(i)
    }
    fn probe(x: &Bound<'_, PyAny>) -> Probe<Self> {
        if !x.is_exact_instance_of::<PyInt>() {
            return Probe::Python;
        }
        match x.extract::<i64>() {
            Ok(i) => Probe::Equal(i),
            Err(_) => Probe::Never,
        }
    }
    fn native_eq(&self, other: &Self) -> Option<bool> {
        Some(self == other)
    }
    fn sort_native(items: &mut [Self], reverse: bool) -> bool {
        // Equal ints are indistinguishable, so stability cannot be observed.
        items.sort_unstable();
        if reverse {
            items.reverse();
        }
        true
    }
}

/// Largest magnitude up to which every integer is exactly a double.
const EXACT_INT_IN_F64: i64 = 1 << 53;

/// `-0.0` as `0.0`, so that sorting by `total_cmp` orders like Python's `<` (which finds
/// them equal) for every non-NaN value, while still being a total order.
fn sort_key(x: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x
    }
}

impl Elem for f64 {
    const DTYPE: Dtype = Dtype::Float64;
    const FORMAT: Option<&'static CStr> = Some(c"d");
    const NATIVE_LT: Option<fn(&Self, &Self) -> bool> = Some(lt);

    fn select<F: Family>(d: &ByDtype<F>) -> Option<&F::Of<Self>> {
        match d {
            ByDtype::Float(e) => Some(e),
            _ => None,
        }
    }
    fn wrap<F: Family>(engine: F::Of<Self>) -> ByDtype<F> {
        ByDtype::Float(engine)
    }

    #[inline]
    fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        obj.extract()
    }
    fn into_py(self, py: Python<'_>) -> Bound<'_, PyAny> {
        PyFloat::new(py, self).into_any()
    }
    fn clone_ref(&self, _py: Python<'_>) -> Self {
        *self
    }
    fn default_value(_py: Python<'_>) -> Self {
        0.0
    }
    fn from_i64(i: i64) -> Option<Self> {
        // Rounds to nearest like Python's float(int).
        Some(i as f64)
    }
    fn probe(x: &Bound<'_, PyAny>) -> Probe<Self> {
        if let Ok(f) = x.cast_exact::<PyFloat>() {
            return Probe::Equal(f.value());
        }
        // Python compares int with float exactly; a double holds small ints exactly.
        match x.cast_exact::<PyInt>().map(|i| i.extract::<i64>()) {
            Ok(Ok(i)) if i.abs() <= EXACT_INT_IN_F64 => Probe::Equal(i as f64),
            _ => Probe::Python,
        }
    }
    fn native_eq(&self, other: &Self) -> Option<bool> {
        Some(self == other)
    }
    fn sort_native(items: &mut [Self], reverse: bool) -> bool {
        // 0.0 and -0.0 are equal but distinguishable: reverse around a stable sort, as
        // CPython does, so that they keep their order either way.
        if reverse {
            items.reverse();
        }
        items.sort_by(|a, b| sort_key(*a).total_cmp(&sort_key(*b)));
        if reverse {
            items.reverse();
        }
        true
    }
}

impl Elem for Py<PyAny> {
    const DTYPE: Dtype = Dtype::Object;
    const FORMAT: Option<&'static CStr> = None;
    const NATIVE_LT: Option<fn(&Self, &Self) -> bool> = None;

    fn select<F: Family>(d: &ByDtype<F>) -> Option<&F::Of<Self>> {
        match d {
            ByDtype::Object(e) => Some(e),
            _ => None,
        }
    }
    fn wrap<F: Family>(engine: F::Of<Self>) -> ByDtype<F> {
        ByDtype::Object(engine)
    }

    fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(obj.clone().unbind())
    }
    fn into_py(self, py: Python<'_>) -> Bound<'_, PyAny> {
        self.into_bound(py)
    }
    fn clone_ref(&self, py: Python<'_>) -> Self {
        Py::clone_ref(self, py)
    }
    #[inline]
    fn release(self, py: Python<'_>) {
        self.drop_ref(py);
    }
    fn default_value(py: Python<'_>) -> Self {
        py.None()
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn probe(_: &Bound<'_, PyAny>) -> Probe<Self> {
        Probe::Python
    }
    fn native_eq(&self, _: &Self) -> Option<bool> {
        None
    }
    fn sort_native(_: &mut [Self], _: bool) -> bool {
        false
    }
    fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(self)
    }
}

/// `a == b` as a list compares its items: identity first, then `__eq__`.
pub fn py_eq(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    // SAFETY: both are valid objects for the duration of the call (we hold references).
    let r = unsafe { ffi::PyObject_RichCompareBool(a.as_ptr(), b.as_ptr(), ffi::Py_EQ) };
    if r < 0 {
        Err(PyErr::fetch(a.py()))
    } else {
        Ok(r == 1)
    }
}

/// `a == b` for two sequences of objects, as lists compare.
pub fn items_equal(a: &[Bound<'_, PyAny>], b: &[Bound<'_, PyAny>]) -> PyResult<bool> {
    if a.len() != b.len() {
        return Ok(false);
    }
    for (x, y) in a.iter().zip(b) {
        if !py_eq(x, y)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The elements of `iterable`, converted. Ranges of ints become numbers without a Python
/// call per element; lists and tuples are read in place; anything else is iterated.
pub fn collect<T: Elem>(iterable: &Bound<'_, PyAny>) -> PyResult<Vec<T>> {
    if let Ok(r) = iterable.cast_exact::<PyRange>() {
        if let Some(items) = range_items(r)? {
            return Ok(items);
        }
    }
    if let Ok(list) = iterable.cast_exact::<PyList>() {
        // Re-reads the length each step: a conversion may run Python code that shrinks it.
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            out.push(T::from_py(&item)?);
        }
        return Ok(out);
    }
    if let Ok(t) = iterable.cast_exact::<PyTuple>() {
        return t.iter_borrowed().map(|o| T::from_py(&o)).collect();
    }
    // SAFETY: `iterable` is a valid object; a hint of -1 (error) is handled below.
    let hint = unsafe { ffi::PyObject_LengthHint(iterable.as_ptr(), 0) };
    if hint < 0 {
        return Err(PyErr::fetch(iterable.py()));
    }
    // The hint is only a hint: trust it up to a modest size.
    let mut out = Vec::with_capacity((hint as usize).min(1 << 16));
    for item in iterable.try_iter()? {
        out.push(T::from_py(&item?)?);
    }
    Ok(out)
}

/// The numbers of `range(start, stop, step)` computed in Rust, or `None` when the dtype
/// wants Python objects or the range leaves int64 (then it is iterated like any iterable,
/// which raises `OverflowError` at the first element out of range).
fn range_items<T: Elem>(r: &Bound<'_, PyRange>) -> PyResult<Option<Vec<T>>> {
    if T::from_i64(0).is_none() {
        return Ok(None);
    }
    let (Ok(start), Ok(step)) = (r.start(), r.step()) else {
        return Ok(None);
    };
    let n = r.len()?;
    let last = start as i128 + (n as i128 - 1) * step as i128;
    if n > 0 && i64::try_from(last).is_err() {
        return Ok(None);
    }
    let (start, step) = (start as i64, step as i64);
    // Every element lies between `start` and `last`, so the true value fits in i64 and
    // wrapping arithmetic (mod 2^64) computes it even where `i * step` alone would not fit.
    Ok((0..n as i64)
        .map(|i| T::from_i64(start.wrapping_add(i.wrapping_mul(step))))
        .collect())
}
