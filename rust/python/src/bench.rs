//! `_bench(workload, allocator, scale)`: one run of a SPEC §7 workload in Rust, on the
//! allocators Python has, so `python -m stlalloc bench` shows native figures without a
//! Python call per operation. The workloads themselves live in `stlalloc_workloads`.

use crate::pool::PyPool;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::{Arc, OnceLock};
use stlalloc_core::{MallocAlloc, Params, SharedPool, DEFAULT_ARENA_SIZE};
use stlalloc_workloads::alloc::{core_pool, Malloc, Shared};
use stlalloc_workloads::{run_single_threaded, Sample, Workload};

/// The pool as Python gets it (a `PoolAllocator()`: default parameters, its lock), kept for
/// the process like the other allocators' instances, and apart from `default_pool()` so
/// that benchmarks leave the user's pool as it was.
static BENCH_POOL: OnceLock<PyPool> = OnceLock::new();

fn bench_pool() -> PyResult<&'static PyPool> {
    if let Some(pool) = BENCH_POOL.get() {
        return Ok(pool);
    }
    let upstream = Arc::new(MallocAlloc::new(None));
    let pool = SharedPool::new(Params::default(), DEFAULT_ARENA_SIZE, upstream)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(BENCH_POOL.get_or_init(|| pool))
}

/// Runs `workload` once over ``"malloc"`` (libc), ``"pool"`` (the single-threaded core
/// pool) or ``"shared_pool"`` (the pool as a ``PoolAllocator`` holds it), with the SPEC
/// iteration count times ``scale``. ``listmem`` means something only in a fresh process.
/// Returns ``{"workload", "allocator", "unit", "value", "iterations", "checksum"}``.
#[pyfunction]
#[pyo3(name = "_bench", signature = (workload, allocator, scale = 1.0))]
pub fn bench<'py>(
    py: Python<'py>,
    workload: &str,
    allocator: &str,
    scale: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let w = Workload::from_name(workload)
        .filter(|w| w.threads() == 1)
        .ok_or_else(|| PyValueError::new_err(format!("unknown workload: {workload:?}")))?;
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(PyValueError::new_err("scale must be a positive number"));
    }
    let iters = w.iterations(scale);
    let sample: Option<Sample> = match allocator {
        "malloc" => py.detach(|| run_single_threaded(w, &mut Malloc, iters)),
        "pool" => py.detach(|| run_single_threaded(w, &mut *core_pool(), iters)),
        // With the GIL held: it is this pool's lock on a GIL-enabled interpreter.
        "shared_pool" => run_single_threaded(w, &mut Shared(bench_pool()?), iters),
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown allocator: {allocator:?} (malloc, pool, shared_pool)"
            )))
        }
    };
    let sample = sample.expect("single-threaded workloads always run");
    let out = PyDict::new(py);
    out.set_item("workload", w.name())?;
    out.set_item("allocator", allocator)?;
    out.set_item("unit", w.unit().as_str())?;
    out.set_item("value", sample.value)?;
    out.set_item("iterations", iters)?;
    out.set_item("checksum", sample.checksum)?;
    Ok(out)
}
