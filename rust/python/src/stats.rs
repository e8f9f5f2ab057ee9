//! Read-only statistics objects with SPEC §4's field names.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use stlalloc_core::{MallocStats, PoolStats};

/// Counters of a MallocAllocator.
#[pyclass(frozen, eq, module = "stlalloc", name = "MallocStats")]
#[derive(PartialEq)]
pub struct PyMallocStats(pub MallocStats);

#[pymethods]
impl PyMallocStats {
    #[getter]
    fn live_blocks(&self) -> usize {
        self.0.live_blocks
    }
    #[getter]
    fn live_bytes(&self) -> usize {
        self.0.live_bytes
    }
    #[getter]
    fn allocations(&self) -> u64 {
        self.0.allocations
    }
    #[getter]
    fn deallocations(&self) -> u64 {
        self.0.deallocations
    }
    /// Attempts malloc (or the limit) refused, each retry counted.
    #[getter]
    fn failures(&self) -> u64 {
        self.0.failures
    }
    #[getter]
    fn handler_calls(&self) -> u64 {
        self.0.handler_calls
    }

    fn __repr__(&self) -> String {
        let s = &self.0;
        format!(
            "MallocStats(live_blocks={}, live_bytes={}, allocations={}, deallocations={}, \
             failures={}, handler_calls={})",
            s.live_blocks,
            s.live_bytes,
            s.allocations,
            s.deallocations,
            s.failures,
            s.handler_calls
        )
    }
}

/// A snapshot of a PoolAllocator: SGI's state (``heap_size``, the chunk, the free lists)
/// and what the pool has handed out and asked of the system.
#[pyclass(frozen, eq, module = "stlalloc", name = "PoolStats")]
#[derive(PartialEq)]
pub struct PyPoolStats(pub PoolStats);

#[pymethods]
impl PyPoolStats {
    #[getter]
    fn align(&self) -> usize {
        self.0.align
    }
    #[getter]
    fn max_bytes(&self) -> usize {
        self.0.max_bytes
    }
    #[getter]
    fn refill(&self) -> usize {
        self.0.refill
    }
    #[getter]
    fn nfreelists(&self) -> usize {
        self.0.nfreelists
    }
    /// Bytes of every chunk the pool has obtained (arena and upstream).
    #[getter]
    fn heap_size(&self) -> usize {
        self.0.heap_size
    }
    /// ``end_free - start_free``: the uncarved rest of the current chunk.
    #[getter]
    fn chunk_bytes_left(&self) -> usize {
        self.0.chunk_bytes_left
    }
    /// Blocks on each free list, ``nfreelists`` long.
    #[getter]
    fn free_list_lengths<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.free_list_lengths)
    }
    /// Live pool blocks and their rounded sizes.
    #[getter]
    fn live_blocks(&self) -> usize {
        self.0.live_blocks
    }
    #[getter]
    fn live_bytes(&self) -> usize {
        self.0.live_bytes
    }
    /// Live blocks above ``max_bytes`` (sent upstream) and their sizes.
    #[getter]
    fn large_live_blocks(&self) -> usize {
        self.0.large_live_blocks
    }
    #[getter]
    fn large_live_bytes(&self) -> usize {
        self.0.large_live_bytes
    }
    #[getter]
    fn refills(&self) -> u64 {
        self.0.refills
    }
    #[getter]
    fn chunk_requests(&self) -> u64 {
        self.0.chunk_requests
    }
    #[getter]
    fn arena_reserved(&self) -> usize {
        self.0.arena_reserved
    }
    /// The arena's break: bytes handed out from its start.
    #[getter]
    fn arena_used(&self) -> usize {
        self.0.arena_used
    }
    /// Arena bytes resident in RAM (``mincore``).
    #[getter]
    fn arena_resident(&self) -> usize {
        self.0.arena_resident
    }
    /// Bytes of chunks taken from upstream once the arena was exhausted.
    #[getter]
    fn upstream_chunk_bytes(&self) -> usize {
        self.0.upstream_chunk_bytes
    }
    /// System calls the arena made: ``{"mmap": .., "munmap": .., "mprotect": .., "madvise": ..}``.
    #[getter]
    fn syscalls<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, count) in self.0.syscalls.entries() {
            d.set_item(name, count)?;
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let s = &self.0;
        format!(
            "PoolStats(heap_size={}, chunk_bytes_left={}, free_list_lengths={:?}, live_blocks={}, \
             live_bytes={}, large_live_blocks={}, large_live_bytes={}, refills={}, \
             chunk_requests={}, arena_used={}, arena_resident={}, upstream_chunk_bytes={})",
            s.heap_size,
            s.chunk_bytes_left,
            s.free_list_lengths,
            s.live_blocks,
            s.live_bytes,
            s.large_live_blocks,
            s.large_live_bytes,
            s.refills,
            s.chunk_requests,
            s.arena_used,
            s.arena_resident,
            s.upstream_chunk_bytes
        )
    }
}
