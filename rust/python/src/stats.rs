//! Read-only statistics objects with SPEC §4's field names. Each class lists its fields
//! once, in `stats_class!`, which makes the getters and the `__repr__` from the list.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use stlalloc_core::{MallocStats, PoolStats, SyscallCounts};

/// `#[pymethods]` of a stats snapshot `$ty(core stats)`: a getter per field (`name: type`,
/// copied; doc comments kept) and, after `repr:`, the fields its `__repr__` shows, named
/// `$name`. Getters that convert go in `more`, the same impl block (PyO3 takes one).
macro_rules! stats_class {
    (
        $ty:ident, $name:literal,
        fields { $($(#[doc = $doc:literal])* $field:ident: $t:ty,)* }
        repr [$($shown:ident),* $(,)?]
        more { $($more:tt)* }
    ) => {
        #[pymethods]
        impl $ty {
            $(
                $(#[doc = $doc])*
                #[getter]
                fn $field(&self) -> $t {
                    self.0.$field
                }
            )*

            $($more)*

            fn __repr__(&self) -> String {
                let shown = [$(format!(concat!(stringify!($shown), "={:?}"), self.0.$shown)),*];
                format!(concat!($name, "({})"), shown.join(", "))
            }
        }
    };
}
pub(crate) use stats_class;

/// The arena's system calls as ``{"mmap": .., "munmap": .., "mprotect": .., "madvise": ..}``.
pub fn syscalls_dict<'py>(py: Python<'py>, counts: &SyscallCounts) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, count) in counts.entries() {
        d.set_item(name, count)?;
    }
    Ok(d)
}

/// Counters of a MallocAllocator.
#[pyclass(frozen, eq, module = "stlalloc", name = "MallocStats")]
#[derive(PartialEq)]
pub struct PyMallocStats(pub MallocStats);

stats_class! {
    PyMallocStats, "MallocStats",
    fields {
        live_blocks: usize,
        live_bytes: usize,
        allocations: u64,
        deallocations: u64,
        /// Attempts malloc (or the limit) refused, each retry counted.
        failures: u64,
        handler_calls: u64,
    }
    repr [live_blocks, live_bytes, allocations, deallocations, failures, handler_calls]
    more {}
}

/// A snapshot of a PoolAllocator: SGI's state (``heap_size``, the chunk, the free lists)
/// and what the pool has handed out and asked of the system.
#[pyclass(frozen, eq, module = "stlalloc", name = "PoolStats")]
#[derive(PartialEq)]
pub struct PyPoolStats(pub PoolStats);

stats_class! {
    PyPoolStats, "PoolStats",
    fields {
        align: usize,
        max_bytes: usize,
        refill: usize,
        nfreelists: usize,
        /// Bytes of every chunk the pool has obtained (arena and upstream).
        heap_size: usize,
        /// ``end_free - start_free``: the uncarved rest of the current chunk.
        chunk_bytes_left: usize,
        /// Live pool blocks and their rounded sizes.
        live_blocks: usize,
        live_bytes: usize,
        /// Live blocks above ``max_bytes`` (sent upstream) and their sizes.
        large_live_blocks: usize,
        large_live_bytes: usize,
        refills: u64,
        chunk_requests: u64,
        arena_reserved: usize,
        /// The arena's break: bytes handed out from its start.
        arena_used: usize,
        /// Arena bytes resident in RAM (``mincore``).
        arena_resident: usize,
        /// Bytes of chunks taken from upstream once the arena was exhausted.
        upstream_chunk_bytes: usize,
    }
    repr [
        heap_size, chunk_bytes_left, free_list_lengths, live_blocks, live_bytes,
        large_live_blocks, large_live_bytes, refills, chunk_requests, arena_used,
        arena_resident, upstream_chunk_bytes,
    ]
    more {
        /// Blocks on each free list, ``nfreelists`` long.
        #[getter]
        fn free_list_lengths<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
            PyTuple::new(py, &self.0.free_list_lengths)
        }

        /// System calls the arena made: ``{"mmap": .., "munmap": .., "mprotect": .., "madvise": ..}``.
        #[getter]
        fn syscalls<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
            syscalls_dict(py, &self.0.syscalls)
        }
    }
}
