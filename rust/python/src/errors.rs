//! Core errors as Python exceptions: misuse is `AllocatorError` (a `ValueError`), exported
//! blocks `BufferError`, exhaustion `MemoryError`; a handler's own exception passes through.

use pyo3::exceptions::{PyBufferError, PyMemoryError, PyValueError};
use pyo3::prelude::*;
use stlalloc_core::AllocError;

pyo3::create_exception!(
    stlalloc,
    AllocatorError,
    PyValueError,
    "Allocator misuse: a foreign or misaligned pointer, a double free, a size of another \
     class. The allocator is left exactly as it was."
);

pub fn to_py(e: AllocError) -> PyErr {
    match e {
        AllocError::Handler(h) => match h.0.downcast::<PyErr>() {
            Ok(err) => *err,
            Err(_) => PyMemoryError::new_err("the out-of-memory handler failed"),
        },
        AllocError::OutOfMemory { .. } | AllocError::TooLarge { .. } => {
            PyMemoryError::new_err(e.to_string())
        }
        AllocError::Pinned { .. } => PyBufferError::new_err(e.to_string()),
        AllocError::InvalidParameter(why) => PyValueError::new_err(why),
        _ => AllocatorError::new_err(e.to_string()),
    }
}

/// `?`-friendly conversion for core results.
pub trait OrRaise<T> {
    fn or_raise(self) -> PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, AllocError> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
