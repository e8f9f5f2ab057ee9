//! Filling a `Py_buffer` for memory we hand out: one-dimensional, contiguous, writable.

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use std::ffi::{c_int, c_void, CStr};

/// A one-dimensional contiguous buffer of `len` bytes at `buf`, items of `itemsize` bytes
/// described by `format`.
pub struct Region {
    pub buf: *mut u8,
    pub len: usize,
    pub itemsize: usize,
    pub format: &'static CStr,
}

/// # Safety
/// `view` must be the `Py_buffer` CPython passed to `__getbuffer__`, and `region` must stay
/// valid and unmoved until the matching `__releasebuffer__` (`owner` is kept alive by the
/// view for that long).
pub unsafe fn fill(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    region: &Region,
    owner: Bound<'_, PyAny>,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("no buffer to fill"));
    }
    let shape_and_strides = flags & ffi::PyBUF_ND == ffi::PyBUF_ND;
    // SAFETY: `view` is CPython's buffer struct for this request (caller's guarantee); every
    // pointer stored in it lives as long as `owner`, whose reference the view takes.
    unsafe {
        (*view).obj = owner.into_ptr();
        (*view).buf = region.buf.cast::<c_void>();
        (*view).len = region.len as isize;
        (*view).readonly = 0;
        (*view).itemsize = region.itemsize as isize;
        (*view).format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
            region.format.as_ptr().cast_mut()
        } else {
            std::ptr::null_mut()
        };
        (*view).ndim = 1;
        // `shape` must be len / itemsize items: CPython reads it from the struct's own
        // `internal` slot we point at, which lives as long as the view.
        (*view).internal = std::ptr::null_mut();
        (*view).shape = if shape_and_strides {
            let items = Box::new([
                (region.len / region.itemsize) as isize,
                region.itemsize as isize,
            ]);
            let raw = Box::into_raw(items);
            (*view).internal = raw.cast();
            raw.cast::<isize>()
        } else {
            std::ptr::null_mut()
        };
        (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
            if (*view).shape.is_null() {
                std::ptr::null_mut()
            } else {
                (*view).shape.add(1)
            }
        } else {
            std::ptr::null_mut()
        };
        (*view).suboffsets = std::ptr::null_mut();
    }
    Ok(())
}

/// Frees what `fill` allocated for the view.
///
/// # Safety
/// `view` must be a buffer filled by `fill`, released once.
pub unsafe fn release(view: *mut ffi::Py_buffer) {
    // SAFETY: `internal` is null or the box `fill` leaked for shape and strides.
    unsafe {
        let internal = (*view).internal.cast::<[isize; 2]>();
        if !internal.is_null() {
            drop(Box::from_raw(internal));
            (*view).internal = std::ptr::null_mut();
        }
    }
}
