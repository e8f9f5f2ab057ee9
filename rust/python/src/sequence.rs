//! What makes `Vector` and `List` complete Python sequences, written once for both:
//! ordering comparisons, `+`, `*` and `*=`. Each works on the values as Python objects,
//! taken from the container (a snapshot, under its lock) before any Python code runs, so
//! the engine's rules (`engine`) hold: nothing here calls out while a container is locked.
//!
//! Invariants, as `list` keeps them:
//! - `a < b` is lexicographic: at the first `i` with `not a[i] == b[i]`, `a[i] < b[i]`;
//!   when one is a prefix of the other, `len(a) < len(b)`;
//! - `len(a + b) == len(a) + len(b)` and `len(a * n) == len(a) * max(n, 0)`;
//! - results of `+` and `*` are the base type, with `a`'s dtype and allocator.

use crate::dtype::Dtype;
use crate::elem::py_eq;
use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyList, PyTuple};
use pyo3::PyClass;

/// A container seen as a Python sequence.
pub trait Sequence: Sized {
    /// The values, as Python objects (a snapshot).
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>>;
    /// The values of `other` when it may be compared with or added to this container
    /// (`None`: the operation is `NotImplemented`).
    fn operand<'py>(other: &Bound<'py, PyAny>) -> PyResult<Option<Vec<Bound<'py, PyAny>>>>;
    /// `==` without Python comparisons where the values allow it; `None` as `operand`.
    fn equals(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Option<bool>>;
    /// A new container of the base type, with this one's dtype and allocator, holding
    /// `items` (converted to the dtype).
    fn like(&self, py: Python<'_>, items: &Bound<'_, PyList>) -> PyResult<Self>;
    /// Appends `items` (converted); all or nothing.
    fn append_all(&self, py: Python<'_>, items: &Bound<'_, PyList>) -> PyResult<()>;
    fn clear_all(&self, py: Python<'_>) -> PyResult<()>;
}

/// `__init__`'s `dtype` and `allocator`, which may only repeat the container's own (they
/// are chosen once, by `__new__`).
pub fn check_same(
    dtype: Dtype,
    allocator: &Py<PyAny>,
    asked_dtype: Option<&str>,
    asked_allocator: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    if let Some(name) = asked_dtype {
        let asked = Dtype::parse(name)?;
        if asked != dtype {
            return Err(PyValueError::new_err(format!(
                "__init__ cannot change the dtype '{}' to '{}'",
                dtype.name(),
                asked.name()
            )));
        }
    }
    if let Some(a) = asked_allocator.filter(|a| !a.is_none()) {
        if !a.is(allocator) {
            return Err(PyValueError::new_err(
                "__init__ cannot change the allocator; make a new container",
            ));
        }
    }
    Ok(())
}

fn not_implemented(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(py.NotImplemented())
}

/// `a op b` for the six comparisons, as lists compare.
pub fn compare<S: Sequence>(
    me: &S,
    py: Python<'_>,
    other: &Bound<'_, PyAny>,
    op: CompareOp,
) -> PyResult<Py<PyAny>> {
    if matches!(op, CompareOp::Eq | CompareOp::Ne) {
        return match me.equals(py, other)? {
            Some(eq) => Ok(PyBool::new(py, eq == matches!(op, CompareOp::Eq))
                .to_owned()
                .into_any()
                .unbind()),
            None => not_implemented(py),
        };
    }
    let Some(theirs) = S::operand(other)? else {
        return not_implemented(py);
    };
    let mine = me.items(py)?;
    for (a, b) in mine.iter().zip(&theirs) {
        if !py_eq(a, b)? {
            return Ok(a.rich_compare(b, op)?.unbind());
        }
    }
    let (m, t) = (mine.len(), theirs.len());
    let holds = match op {
        CompareOp::Lt => m < t,
        CompareOp::Le => m <= t,
        CompareOp::Gt => m > t,
        CompareOp::Ge => m >= t,
        CompareOp::Eq | CompareOp::Ne => unreachable!("handled above"),
    };
    Ok(PyBool::new(py, holds).to_owned().into_any().unbind())
}

/// `a + b`: a new container; `NotImplemented` for an operand `S` does not take.
pub fn concat<S: Sequence + PyClass + Into<PyClassInitializer<S>>>(
    me: &S,
    py: Python<'_>,
    other: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    let Some(theirs) = S::operand(other)? else {
        return not_implemented(py);
    };
    let all = PyList::new(py, me.items(py)?)?;
    for x in theirs {
        all.append(x)?;
    }
    Ok(Bound::new(py, me.like(py, &all)?)?.into_any().unbind())
}

/// The values repeated `n` times, as `list * n` computes them (negative is 0; too many
/// raise `MemoryError` or `OverflowError`); `None` when `n` is not an integer.
fn repeated<'py>(
    items: Vec<Bound<'py, PyAny>>,
    n: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    // SAFETY: `n` is a valid object; PyIndex_Check only reads its type.
    if unsafe { ffi::PyIndex_Check(n.as_ptr()) } == 0 {
        return Ok(None);
    }
    let list = PyList::new(n.py(), items)?;
    let product = list.as_any().mul(n)?;
    Ok(Some(product.cast_into::<PyList>()?))
}

/// `a * n` and `n * a`.
pub fn repeat<S: Sequence + PyClass + Into<PyClassInitializer<S>>>(
    me: &S,
    py: Python<'_>,
    n: &Bound<'_, PyAny>,
) -> PyResult<Py<PyAny>> {
    match repeated(me.items(py)?, n)? {
        Some(all) => Ok(Bound::new(py, me.like(py, &all)?)?.into_any().unbind()),
        None => not_implemented(py),
    }
}

/// `a *= n`: appends `n - 1` copies of the values (all or nothing), or empties `a`.
pub fn repeat_in_place<S: Sequence>(me: &S, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: `n` is a valid object; PyIndex_Check only reads its type.
    if unsafe { ffi::PyIndex_Check(n.as_ptr()) } == 0 {
        return Err(PyTypeError::new_err(format!(
            "can't multiply sequence by non-int of type '{}'",
            n.get_type().name()?
        )));
    }
    let times = crate::seq::clamped(n)?;
    if times <= 0 {
        return me.clear_all(py);
    }
    let more = PyList::new(py, me.items(py)?)?
        .as_any()
        .mul(times - 1)?
        .cast_into::<PyList>()?;
    me.append_all(py, &more)
}

/// How an iterator over `container` pickles, as list iterators do: `(iter, (container,),
/// position)`, or `reversed` for one going backwards.
pub fn iterator_reduce<'py>(
    py: Python<'py>,
    container: Bound<'py, PyAny>,
    backward: bool,
    position: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let make = if backward { "reversed" } else { "iter" };
    let make = py.import("builtins")?.getattr(make)?;
    PyTuple::new(
        py,
        [
            make,
            PyTuple::new(py, [container])?.into_any(),
            position.into_pyobject(py)?.into_any(),
        ],
    )
}
