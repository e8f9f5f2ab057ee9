//! Element types of containers: `"int64"`, `"float64"`, `"object"`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    Int64,
    Float64,
    Object,
}

impl Dtype {
    pub fn parse(name: &str) -> PyResult<Self> {
        match name {
            "int64" => Ok(Self::Int64),
            "float64" => Ok(Self::Float64),
            "object" => Ok(Self::Object),
            _ => Err(PyValueError::new_err(format!(
                "dtype must be 'int64', 'float64' or 'object', not {name:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Int64 => "int64",
            Self::Float64 => "float64",
            Self::Object => "object",
        }
    }
}
