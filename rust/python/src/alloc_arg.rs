//! The `allocator=` argument of containers: any built-in allocator (default:
//! `default_pool()`) or any object following the allocator protocol (`protocol`), kept
//! alive by the container and returned by `get_allocator()`.

use crate::builtin::builtin;
use crate::pool::default_pool;
use crate::protocol::adaptor_for;
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
        let core = match builtin(obj) {
            Some(core) => core,
            None => adaptor_for(obj)?,
        };
        Ok(Self {
            core,
            object: obj.clone().unbind(),
        })
    }

    pub fn clone_ref(&self, py: Python<'_>) -> Self {
        Self {
            core: self.core.clone(),
            object: self.object.clone_ref(py),
        }
    }
}
