//! The `allocator=` argument of containers: any built-in allocator (default:
//! `default_pool()`), kept alive by the container and returned by `get_allocator()`.

use crate::malloc::PyMallocAllocator;
use crate::pool::{default_pool, PyPoolAllocator};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use std::sync::Arc;
use stlalloc_core::BlockAllocator;

/// A container's allocator: the core object that serves it and the Python object that
/// owns it.
pub struct AllocatorArg {
    pub core: Arc<dyn BlockAllocator>,
    pub object: Py<PyAny>,
}

impl AllocatorArg {
    /// `None` means `default_pool()`.
    pub fn from_py(py: Python<'_>, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let Some(obj) = obj.filter(|o| !o.is_none()) else {
            let pool = default_pool(py)?;
            let core = pool.get().blocks.clone();
            return Ok(Self {
                core,
                object: pool.into_any(),
            });
        };
        if let Ok(pool) = obj.cast::<PyPoolAllocator>() {
            return Ok(Self {
                core: pool.get().blocks.clone(),
                object: obj.clone().unbind(),
            });
        }
        if let Ok(m) = obj.cast::<PyMallocAllocator>() {
            return Ok(Self {
                core: m.get().inner.clone(),
                object: obj.clone().unbind(),
            });
        }
        let ty = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        Err(PyTypeError::new_err(format!(
            "allocator must be a PoolAllocator or MallocAllocator, not {ty}"
        )))
    }

    pub fn clone_ref(&self, py: Python<'_>) -> Self {
        Self {
            core: self.core.clone(),
            object: self.object.clone_ref(py),
        }
    }
}
