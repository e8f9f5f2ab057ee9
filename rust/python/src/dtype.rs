//! Element types of containers (`"int64"`, `"float64"`, `"object"`) and the one dispatch
//! from a dtype to the engine of its element type.

use crate::elem::Elem;
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

/// A kind of container: its engine for each element type.
pub trait Family {
    type Of<T: Elem>;
}

/// A container of family `F` whose element type was chosen at run time.
pub enum ByDtype<F: Family> {
    Int(F::Of<i64>),
    Float(F::Of<f64>),
    Object(F::Of<Py<PyAny>>),
}

impl<F: Family> ByDtype<F> {
    pub fn dtype(&self) -> Dtype {
        match self {
            Self::Int(_) => Dtype::Int64,
            Self::Float(_) => Dtype::Float64,
            Self::Object(_) => Dtype::Object,
        }
    }
}

/// Runs `$body` with `$e` bound to the engine of a `ByDtype`, whatever its element type.
macro_rules! each {
    ($d:expr, $e:ident => $body:expr) => {
        match $d {
            $crate::dtype::ByDtype::Int($e) => $body,
            $crate::dtype::ByDtype::Float($e) => $body,
            $crate::dtype::ByDtype::Object($e) => $body,
        }
    };
}

/// Runs `$body` with the engines of two `ByDtype`s of the same element type, else `$other`.
macro_rules! each_pair {
    ($a:expr, $b:expr, ($x:ident, $y:ident) => $body:expr, _ => $other:expr) => {
        match ($a, $b) {
            ($crate::dtype::ByDtype::Int($x), $crate::dtype::ByDtype::Int($y)) => $body,
            ($crate::dtype::ByDtype::Float($x), $crate::dtype::ByDtype::Float($y)) => $body,
            ($crate::dtype::ByDtype::Object($x), $crate::dtype::ByDtype::Object($y)) => $body,
            _ => $other,
        }
    };
}

/// Runs `$body` with the type `$t` set to the element type of `$dtype`.
macro_rules! by_dtype {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            $crate::dtype::Dtype::Int64 => {
                type $t = i64;
                $body
            }
            $crate::dtype::Dtype::Float64 => {
                type $t = f64;
                $body
            }
            $crate::dtype::Dtype::Object => {
                type $t = pyo3::Py<pyo3::PyAny>;
                $body
            }
        }
    };
}

pub(crate) use {by_dtype, each, each_pair};
