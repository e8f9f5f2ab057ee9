//! The Python face of stlalloc-core: converts arguments, validates them, raises. No
//! allocator logic lives here; every decision is the core's.

mod alloc_arg;
mod attach;
mod bench;
mod buffer;
mod builtin;
mod convert;
mod dtype;
mod elem;
mod engine;
mod errors;
mod fastcall;
mod gil_lock;
mod handler;
mod list;
mod malloc;
mod monotonic;
mod pool;
mod protocol;
mod pymem;
mod seq;
mod sequence;
mod stats;
mod tracing;
mod typed_vector;
mod vector;
mod view;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    malloc::share_the_gil();
    m.add("AllocatorError", py.get_type::<errors::AllocatorError>())?;
    m.add_class::<list::StdList>()?;
    m.add_class::<list::ListIterator>()?;
    m.add_class::<list::ListReverseIterator>()?;
    m.add_class::<malloc::PyMallocAllocator>()?;
    m.add_class::<pool::PyPoolAllocator>()?;
    m.add_class::<stats::PyMallocStats>()?;
    m.add_class::<stats::PyPoolStats>()?;
    m.add_class::<view::BlockView>()?;
    m.add_class::<vector::PyVector>()?;
    m.add_class::<vector::VectorIterator>()?;
    m.add_function(wrap_pyfunction!(pool::default_pool, m)?)?;
    m.add_function(wrap_pyfunction!(bench::bench, m)?)?;
    m.add_class::<monotonic::PyMonotonicAllocator>()?;
    m.add_class::<monotonic::PyMonotonicStats>()?;
    m.add_class::<tracing::PyTracingAllocator>()?;
    m.add_class::<tracing::PyAllocatorEvent>()?;
    m.add_function(wrap_pyfunction!(protocol::_protocol_roundtrip, m)?)?;
    m.add_function(wrap_pyfunction!(protocol::_block_view, m)?)?;
    fastcall::install_pair::<malloc::PyMallocAllocator>(
        &py.get_type::<malloc::PyMallocAllocator>(),
    )?;
    fastcall::install_pair::<pool::PyPoolAllocator>(&py.get_type::<pool::PyPoolAllocator>())?;
    list::install_fast(&py.get_type::<list::StdList>())?;
    vector::install_fast(&py.get_type::<vector::PyVector>())?;
    pymem::register(m)?;
    m.add("DEFAULT_ARENA_SIZE", stlalloc_core::DEFAULT_ARENA_SIZE)?;
    Ok(())
}
