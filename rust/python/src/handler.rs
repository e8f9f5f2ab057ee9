//! A Python callable as SGI's out-of-memory handler.

use pyo3::prelude::*;
use stlalloc_core::{HandlerError, OomHandler};

pub struct PyHandler(pub Py<PyAny>);

impl OomHandler for PyHandler {
    fn on_oom(&self) -> Result<(), HandlerError> {
        crate::attach::attached(|py| match self.0.call0(py) {
            Ok(_) => Ok(()),
            Err(e) => Err(HandlerError(Box::new(e))),
        })
    }
}
