//! Hooks for tests and benchmarks: a container's calls without a container, and views
//! that only ever expose memory a built-in allocator vouches for.

use crate::alloc_arg::AllocatorArg;
use crate::errors::to_py;
use crate::view::make_view;
use pyo3::prelude::*;
use stlalloc_core::lending::{registry, unavailable};

/// Test and benchmark hook: adapts `allocator` as a container does, then `repeat` times
/// allocates `n` bytes for a container (`allocate_claimed`), writes and reads them back, and
/// frees them. Returns the last address.
#[pyfunction]
#[pyo3(signature = (allocator, n, repeat = 1))]
pub fn _protocol_roundtrip(
    py: Python<'_>,
    allocator: &Bound<'_, PyAny>,
    n: usize,
    repeat: usize,
) -> PyResult<usize> {
    let core = AllocatorArg::from_py(py, Some(allocator))?.core;
    let mut p = 0;
    for i in 0..repeat {
        p = core.allocate_claimed(n).map_err(to_py)?;
        if n > 0 {
            let byte = i as u8;
            // SAFETY: `p` is a live block of at least `n` bytes claimed for this function,
            // so nobody else uses it (the allocator contract; for a Python allocator,
            // validated and lent).
            let intact = unsafe {
                std::ptr::write_bytes(p as *mut u8, byte, n);
                std::slice::from_raw_parts(p as *const u8, n)
                    .iter()
                    .all(|&b| b == byte)
            };
            assert!(intact, "a block changed under its only holder");
        }
        core.deallocate_claimed(p, n).map_err(to_py)?;
    }
    Ok(p)
}

/// A writable view of `[p, p+n)` if it lies inside a live block of a built-in allocator
/// that neither a container holds nor anything pins (what `stlalloc.testing` writes
/// through); pinned while the view lives. `AllocatorError` otherwise.
#[pyfunction]
pub fn _block_view<'py>(py: Python<'py>, p: usize, n: usize) -> PyResult<Bound<'py, PyAny>> {
    let mut refusal = unavailable(
        p,
        n,
        "it does not lie inside a live block of a built-in allocator",
    );
    for (core, start, _) in registry::blocks_spanning(p, n) {
        // Claimable means: no container holds it and no view or pool pins it.
        match core.claim(start) {
            Ok(()) => {
                core.unclaim(start);
                return make_view(py, core, p, n);
            }
            Err(e) => refusal = e,
        }
    }
    Err(to_py(refusal))
}
