//! The element types behind the dtypes: how a Python object becomes a node's value and back.

use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt};
use pyo3::{PyTraverseError, PyVisit};

/// `<` and `==` computed in Rust, for the numeric dtypes.
pub struct Native<T> {
    pub lt: fn(&T, &T) -> bool,
    pub eq: fn(&T, &T) -> bool,
}

pub trait Element: Sized + Send + Sync + 'static {
    /// Set for the numeric dtypes; objects compare by calling Python.
    const NATIVE: Option<Native<Self>>;

    /// Whether values are Python references the garbage collector must be shown.
    const HOLDS_REFERENCES: bool = false;

    /// The value of `obj` for this dtype: `TypeError` for a wrong type, `OverflowError`
    /// for an int out of range. May run Python code (`__index__`, `__float__`), so never
    /// call it with a list locked.
    fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Self>;

    /// `obj`'s value when `obj` is exactly of this dtype's Python type, so that Rust
    /// comparisons give Python's answer; None otherwise (and always for objects).
    fn exact(obj: &Bound<'_, PyAny>) -> Option<Self>;

    /// A copy to carry out of the lock: creates no Python object (numbers are copied,
    /// objects gain a reference), so it is safe under a list's lock.
    fn share(&self, py: Python<'_>) -> Self;

    fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>>;

    /// Reports the Python references held, for the garbage collector.
    fn visit(&self, _visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        Ok(())
    }
}

fn lt<T: PartialOrd>(a: &T, b: &T) -> bool {
    a < b
}

fn eq<T: PartialEq>(a: &T, b: &T) -> bool {
    a == b
}

impl Element for i64 {
    const NATIVE: Option<Native<Self>> = Some(Native { lt, eq });

    fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        obj.extract()
    }

    fn exact(obj: &Bound<'_, PyAny>) -> Option<Self> {
        obj.is_instance_of::<PyInt>()
            .then(|| obj.extract().ok())
            .flatten()
    }

    fn share(&self, _py: Python<'_>) -> Self {
        *self
    }

    fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(self.into_pyobject(py)?.into_any())
    }
}

impl Element for f64 {
    const NATIVE: Option<Native<Self>> = Some(Native { lt, eq });

    /// Anything Python can turn into a float (`__float__`, `__index__`); a str is a
    /// `TypeError`, an int beyond the float range an `OverflowError`.
    fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        obj.extract()
    }

    fn exact(obj: &Bound<'_, PyAny>) -> Option<Self> {
        obj.cast::<PyFloat>().ok().map(|f| f.value())
    }

    fn share(&self, _py: Python<'_>) -> Self {
        *self
    }

    fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(PyFloat::new(py, self).into_any())
    }
}

impl Element for Py<PyAny> {
    const NATIVE: Option<Native<Self>> = None;
    const HOLDS_REFERENCES: bool = true;

    fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(obj.clone().unbind())
    }

    fn exact(_obj: &Bound<'_, PyAny>) -> Option<Self> {
        None
    }

    fn share(&self, py: Python<'_>) -> Self {
        self.clone_ref(py)
    }

    fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(self.into_bound(py))
    }

    fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(self)
    }
}
