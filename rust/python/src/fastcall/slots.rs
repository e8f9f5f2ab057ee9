//! Fast type slots for `len(c)`, `c[i]` and `c[i] = x`, the container operations that
//! CPython reaches through the type's slots rather than a method (issue #14).
//!
//! PyO3's slot functions run its trampoline; these call the same `#[pymethods]` methods
//! (`__len__`, `__getitem__`, `__setitem__`) directly, under the rules of `fastcall`: no
//! `Py` dropped on success, errors raised attached. `c[i]` and `c[i] = x` are served for
//! an exact `int` key only, of every dtype: the object `c[i] = x` replaces releases it
//! through the call's token (`Elem::release`); every other key and a deletion go to PyO3's
//! slot, kept at installation. The type's `__len__`/`__getitem__` wrappers keep calling PyO3's
//! functions (CPython bound them at class creation), with the same results.
//!
//! A subclass made later copies these slots, unless it defines the method itself, in which
//! case CPython gives it a slot that calls the override.

use super::{guarded, raise};
use pyo3::exceptions::PyOverflowError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::PyClass;
use std::ffi::c_int;
use std::sync::OnceLock;

/// A class whose `len()`, `c[i]` and `c[i] = x` get fast slots.
pub trait FastSlots: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
    fn fallbacks() -> &'static SlotFallbacks;
    fn len(&self, py: Python<'_>) -> PyResult<usize>;
    /// `self[key]`, for an exact `int` key.
    fn get<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>;
    /// `self[key] = value`, for an exact `int` key; what it replaces is released through
    /// `py` (`Elem::release`), not dropped as a `Py`.
    fn set(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>)
        -> PyResult<()>;
}

/// PyO3's slot functions, which the fast ones fall back on.
pub struct SlotFallbacks {
    subscript: OnceLock<ffi::binaryfunc>,
    ass_subscript: OnceLock<ffi::objobjargproc>,
}

impl SlotFallbacks {
    pub const fn new() -> Self {
        Self {
            subscript: OnceLock::new(),
            ass_subscript: OnceLock::new(),
        }
    }
}

/// Puts the fast slots of `T` in its type, where PyO3 filled them. Must run after the
/// class is added and before any instance is used (and before any subclass is made).
pub fn install_slots<T: FastSlots>(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let tp = ty.as_type_ptr();
    let fb = T::fallbacks();
    // SAFETY: `tp` is a live heap type, which PyO3 never frees; its sequence and mapping
    // structs (when not null) are those of the heap type object, writable. Attached, at
    // module initialisation, so no other thread reads them meanwhile.
    unsafe {
        let seq = (*tp).tp_as_sequence;
        if !seq.is_null() && (*seq).sq_length.is_some() {
            (*seq).sq_length = Some(len::<T>);
        }
        let map = (*tp).tp_as_mapping;
        if !map.is_null() {
            if (*map).mp_length.is_some() {
                (*map).mp_length = Some(len::<T>);
            }
            let fast: ffi::binaryfunc = subscript::<T>;
            if let Some(orig) = (*map).mp_subscript.filter(|&f| f as usize != fast as usize) {
                let _ = fb.subscript.set(orig);
                (*map).mp_subscript = Some(fast);
            }
            let fast: ffi::objobjargproc = ass_subscript::<T>;
            if let Some(orig) = (*map)
                .mp_ass_subscript
                .filter(|&f| f as usize != fast as usize)
            {
                let _ = fb.ass_subscript.set(orig);
                (*map).mp_ass_subscript = Some(fast);
            }
        }
        ffi::PyType_Modified(tp);
    }
    Ok(())
}

/// `slf` as a `T`, borrowed for the call.
///
/// # Safety
/// Attached; `slf` is a live `T` (or subclass instance) for the whole call.
#[inline(always)]
unsafe fn receiver<'a, T: FastSlots>(slf: *mut ffi::PyObject) -> (Python<'a>, &'a T) {
    // SAFETY: the caller's promise; CPython keeps `slf` alive for the whole call.
    unsafe {
        let py = Python::assume_attached();
        (py, Borrowed::from_ptr(py, slf).cast_unchecked::<T>().get())
    }
}

/// # Safety
/// Called by CPython only, attached, from `T`'s type (or a subclass), so `slf` is a `T`.
unsafe extern "C" fn len<T: FastSlots>(slf: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    guarded(-1, || {
        // SAFETY: see `# Safety`.
        let (py, this) = unsafe { receiver::<T>(slf) };
        let n = this.len(py).and_then(|n| {
            isize::try_from(n).map_err(|_| PyOverflowError::new_err("length too large"))
        });
        n.unwrap_or_else(|e| {
            raise(e);
            -1
        })
    })
}

/// # Safety
/// As for `len`; `key` is a live object.
unsafe extern "C" fn subscript<T: FastSlots>(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guarded(std::ptr::null_mut(), || {
        // SAFETY: `key` is a live object.
        if unsafe { ffi::PyLong_CheckExact(key) } != 0 {
            // SAFETY: see `# Safety`.
            let (py, this) = unsafe { receiver::<T>(slf) };
            // SAFETY: `key` is live for the whole call.
            let key = unsafe { Borrowed::from_ptr(py, key) };
            return this.get(py, &key).map_or_else(raise, Bound::into_ptr);
        }
        let f = T::fallbacks()
            .subscript
            .get()
            .expect("installed with its fallback");
        // SAFETY: PyO3's slot, with the arguments CPython gave us.
        unsafe { f(slf, key) }
    })
}

/// # Safety
/// As for `len`; `key` is a live object, `value` a live object or null (a deletion).
unsafe extern "C" fn ass_subscript<T: FastSlots>(
    slf: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
) -> c_int {
    guarded(-1, || {
        // SAFETY: `key` is a live object.
        if !value.is_null() && unsafe { ffi::PyLong_CheckExact(key) } != 0 {
            // SAFETY: see `# Safety`.
            let (py, this) = unsafe { receiver::<T>(slf) };
            // SAFETY: `key` and `value` are live for the whole call.
            let (k, v) = unsafe { (Borrowed::from_ptr(py, key), Borrowed::from_ptr(py, value)) };
            return match this.set(py, &k, &v) {
                Ok(()) => 0,
                Err(e) => {
                    raise(e);
                    -1
                }
            };
        }
        let f = T::fallbacks()
            .ass_subscript
            .get()
            .expect("installed with its fallback");
        // SAFETY: PyO3's slot, with the arguments CPython gave us.
        unsafe { f(slf, key, value) }
    })
}
