//! `view(p, n)`: a writable zero-copy memoryview of part of one live block. The block is
//! pinned while the exporting object lives, so it cannot be freed under the view.

use crate::buffer::{self, Region};
use crate::errors::OrRaise;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyMemoryView;
use std::ffi::c_int;
use std::sync::Arc;
use stlalloc_core::BlockAllocator;

/// The exporter behind a memoryview returned by ``view()``; it pins its block.
#[pyclass(frozen, module = "stlalloc", name = "BlockView")]
pub struct BlockView {
    alloc: Arc<dyn BlockAllocator>,
    start: usize,
    addr: usize,
    len: usize,
}

impl Drop for BlockView {
    fn drop(&mut self) {
        self.alloc.unpin(self.start);
    }
}

#[pymethods]
impl BlockView {
    /// # Safety
    /// Called by CPython with its own `Py_buffer`.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let me = slf.get();
        let region = Region {
            buf: me.addr as *mut u8,
            len: me.len,
            itemsize: 1,
            format: c"B",
        };
        // SAFETY: the block is live and pinned for as long as this object lives, and the
        // view keeps this object alive until it is released.
        unsafe { buffer::fill(view, flags, &region, slf.into_any()) }
    }

    /// # Safety
    /// Called by CPython once per filled view.
    unsafe fn __releasebuffer__(&self, view: *mut ffi::Py_buffer) {
        // SAFETY: `view` was filled by `__getbuffer__`.
        unsafe { buffer::release(view) }
    }
}

pub fn make_view<'py>(
    py: Python<'py>,
    alloc: Arc<dyn BlockAllocator>,
    addr: usize,
    len: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let (start, _) = alloc.pin_spanning(addr, len).or_raise()?;
    let exporter = Bound::new(
        py,
        BlockView {
            alloc,
            start,
            addr,
            len,
        },
    )?;
    Ok(PyMemoryView::from(exporter.as_any())?.into_any())
}
