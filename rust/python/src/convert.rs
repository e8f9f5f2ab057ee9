//! Argument conversion with the exceptions SPEC §4 names: a non-int is a `TypeError`, a
//! negative size or address a `ValueError`, a size beyond any memory a `MemoryError`.

use crate::errors::AllocatorError;
use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyInt;

fn as_int<'a, 'py>(obj: &'a Bound<'py, PyAny>, what: &str) -> PyResult<&'a Bound<'py, PyInt>> {
    obj.cast::<PyInt>().map_err(|_| {
        let ty = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        PyTypeError::new_err(format!("{what} must be an int, not {ty}"))
    })
}

fn is_negative(i: &Bound<'_, PyInt>) -> PyResult<bool> {
    i.lt(0)
}

/// A size in bytes.
pub struct Size(pub usize);

impl<'a, 'py> FromPyObject<'a, 'py> for Size {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let i = as_int(&obj, "size")?;
        match i.extract::<usize>() {
            Ok(n) => Ok(Size(n)),
            Err(_) if is_negative(i)? => Err(PyValueError::new_err(format!(
                "size must be non-negative, not {i}"
            ))),
            Err(_) => Err(PyMemoryError::new_err(format!(
                "{i} bytes is more than any memory"
            ))),
        }
    }
}

/// A memory address (0 is null).
pub struct Addr(pub usize);

impl<'a, 'py> FromPyObject<'a, 'py> for Addr {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let i = as_int(&obj, "address")?;
        match i.extract::<usize>() {
            Ok(p) => Ok(Addr(p)),
            Err(_) if is_negative(i)? => Err(PyValueError::new_err(format!(
                "address must be non-negative, not {i}"
            ))),
            Err(_) => Err(AllocatorError::new_err(format!("{i} is not an address"))),
        }
    }
}
