//! The built-in allocator classes seen as one: their cores, and C++ allocator equality
//! across all of them (and protocol objects) for `__eq__` and `__hash__`.

use crate::malloc::PyMallocAllocator;
use crate::monotonic::PyMonotonicAllocator;
use crate::pool::PyPoolAllocator;
use crate::tracing::PyTracingAllocator;
use pyo3::prelude::*;
use std::sync::Arc;
use stlalloc_core::BlockAllocator;

/// The core of a built-in allocator object (what serves its blocks), or `None`.
pub fn builtin(obj: &Bound<'_, PyAny>) -> Option<Arc<dyn BlockAllocator>> {
    if let Ok(a) = obj.cast::<PyPoolAllocator>() {
        return Some(a.get().blocks.clone());
    }
    if let Ok(a) = obj.cast::<PyMallocAllocator>() {
        return Some(a.get().inner.clone());
    }
    if let Ok(a) = obj.cast::<PyMonotonicAllocator>() {
        return Some(a.get().inner.clone());
    }
    if let Ok(a) = obj.cast::<PyTracingAllocator>() {
        return Some(a.get().inner.clone());
    }
    None
}

/// C++ equality as a key: equal keys free each other's memory. A protocol object's key is
/// its identity (its adaptor frees only what it handed out).
pub fn equality_key(obj: &Bound<'_, PyAny>) -> usize {
    builtin(obj).map_or(obj.as_ptr() as usize, |core| core.equality_key())
}

/// `a == b` for allocators: each can free the other's memory.
pub fn equal(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> bool {
    equality_key(a) == equality_key(b)
}

/// A hash consistent with `equal`: built-ins hash their key; a TracingAllocator around a
/// protocol object (which it equals) hashes as that object.
pub fn hash(obj: &Bound<'_, PyAny>) -> PyResult<isize> {
    if let Ok(t) = obj.cast::<PyTracingAllocator>() {
        return hash(t.get().object.bind(obj.py()));
    }
    match builtin(obj) {
        Some(core) => Ok(core.equality_key() as isize),
        None => obj.hash(),
    }
}
