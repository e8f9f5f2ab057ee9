//! CPython entry points of their own for `allocate(n)` and `deallocate(p, n)`, the calls a
//! Python program makes millions of times (issue #4).
//!
//! PyO3's generic method wrapper (trampoline, argument parser, `FromPyObject`) costs more
//! than the pool work itself. These entry points handle only the common call inline: the
//! right number of positional exact `int`s that fit a `usize`, no keywords. Every other
//! call goes, unchanged, to the PyO3 wrapper the class had before (kept at installation),
//! so every message and exception type stays the one `convert` and `errors` give. A core
//! error on the fast path is raised through the same `errors::to_py`; the call is not
//! repeated, since a failed allocation may already have run the out-of-memory handler.

use crate::errors::to_py;
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::PyClass;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::OnceLock;
use stlalloc_core::AllocError;

type FastFn = ffi::PyCFunctionFastWithKeywords;

/// The PyO3 wrappers the fast entry points fall back on, one set per class.
pub struct Fallbacks {
    allocate: OnceLock<FastFn>,
    deallocate: OnceLock<FastFn>,
}

impl Fallbacks {
    pub const fn new() -> Self {
        Self {
            allocate: OnceLock::new(),
            deallocate: OnceLock::new(),
        }
    }
}

/// A class whose `allocate` and `deallocate` get the fast entry points. Frozen, so that
/// `&self` is reached without a borrow flag.
pub trait FastPair: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
    fn fallbacks() -> &'static Fallbacks;
    fn allocate(&self, n: usize) -> Result<usize, AllocError>;
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError>;
}

/// Puts the fast `allocate` and `deallocate` of `T` in its type's dict, in place of PyO3's
/// method descriptors (whose name and doc, hence `__text_signature__`, they keep). Must run
/// after the class is added and before any instance is used.
pub fn install<T: FastPair>(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let fb = T::fallbacks();
    replace(ty, "allocate", allocate::<T>, &fb.allocate)?;
    replace(ty, "deallocate", deallocate::<T>, &fb.deallocate)
}

fn replace(
    ty: &Bound<'_, PyType>,
    name: &str,
    fast: FastFn,
    fallback: &OnceLock<FastFn>,
) -> PyResult<()> {
    let descr = ty.getattr(name)?;
    let method_descr_type = &raw mut ffi::PyMethodDescr_Type;
    // SAFETY: `descr` is a live object; its type is read, not written.
    if unsafe { ffi::Py_TYPE(descr.as_ptr()) } != method_descr_type {
        return Ok(()); // not what PyO3 makes here: keep it rather than guess
    }
    // SAFETY: `descr` is exactly a method descriptor (checked above), so it has this layout,
    // and its `d_method` lives as long as the type, which PyO3 never frees.
    let def = unsafe { &*(*descr.as_ptr().cast::<ffi::PyMethodDescrObject>()).d_method };
    if def.ml_flags != ffi::METH_FASTCALL | ffi::METH_KEYWORDS {
        return Ok(());
    }
    // SAFETY: the flags say which member of the union is set.
    let original = unsafe { def.ml_meth.PyCFunctionFastWithKeywords };
    if original as usize == fast as usize {
        return Ok(()); // already installed: falling back on itself would never end
    }
    let _ = fallback.set(original); // a second module init finds the same wrapper
    let new_def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: def.ml_name,
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: fast,
        },
        ml_flags: def.ml_flags,
        ml_doc: def.ml_doc,
    }));
    // SAFETY: `ty` is a live type and `new_def` is leaked, so it outlives the descriptor as
    // CPython requires; the new reference is owned by the `Bound`.
    let new = unsafe {
        Bound::from_owned_ptr_or_err(ty.py(), ffi::PyDescr_NewMethod(ty.as_type_ptr(), new_def))?
    };
    // Setting an attribute of a type also invalidates its method cache (`PyType_Modified`).
    ty.setattr(name, new)
}

/// `allocate(n)` of a `T`.
///
/// # Safety
/// Called by CPython only, attached to the interpreter, through the descriptor `install`
/// made, which checks that `slf` is a `T`; `args` holds `nargs` objects, then the keyword
/// values named in `kwnames` (or null).
unsafe extern "C" fn allocate<T: FastPair>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guarded(|| {
        if kwnames.is_null() && nargs == 1 {
            // SAFETY: `nargs == 1`, so `args[0]` is a live object.
            if let Some(n) = unsafe { exact_usize(*args) } {
                // SAFETY: CPython called us attached, with `slf` a `T` (see `# Safety`).
                let this = unsafe { receiver::<T>(slf) };
                return match this.get().allocate(n) {
                    // SAFETY: attached; a null return is an error already set.
                    Ok(p) => unsafe { ffi::PyLong_FromSize_t(p) },
                    Err(e) => raise(e),
                };
            }
        }
        let slow = T::fallbacks().allocate.get().copied();
        // SAFETY: the PyO3 wrapper `install` saved, called with our own arguments.
        unsafe { call(slow, slf, args, nargs, kwnames) }
    })
}

/// `deallocate(p, n)` of a `T`.
///
/// # Safety
/// As for `allocate`.
unsafe extern "C" fn deallocate<T: FastPair>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guarded(|| {
        if kwnames.is_null() && nargs == 2 {
            // SAFETY: `nargs == 2`, so `args[0]` and `args[1]` are live objects.
            let (p, n) = unsafe { (exact_usize(*args), exact_usize(*args.add(1))) };
            if let (Some(p), Some(n)) = (p, n) {
                // SAFETY: CPython called us attached, with `slf` a `T` (see `# Safety`).
                let this = unsafe { receiver::<T>(slf) };
                return match this.get().deallocate(p, n) {
                    // SAFETY: attached; `None` is a live object, and the new reference is
                    // the caller's.
                    Ok(()) => unsafe { ffi::Py_NewRef(ffi::Py_None()) },
                    Err(e) => raise(e),
                };
            }
        }
        let slow = T::fallbacks().deallocate.get().copied();
        // SAFETY: the PyO3 wrapper `install` saved, called with our own arguments.
        unsafe { call(slow, slf, args, nargs, kwnames) }
    })
}

/// The value of an exact `int` in `0..=usize::MAX`; `None` for anything else (`bool` and
/// other subclasses included), with no error left set, for the PyO3 wrapper to judge.
///
/// # Safety
/// Attached to the interpreter; `obj` is a live object.
#[inline(always)]
unsafe fn exact_usize(obj: *mut ffi::PyObject) -> Option<usize> {
    // SAFETY: the caller's promise.
    unsafe {
        if ffi::PyLong_CheckExact(obj) == 0 {
            return None;
        }
        let v = ffi::PyLong_AsSize_t(obj);
        if v == usize::MAX && !ffi::PyErr_Occurred().is_null() {
            ffi::PyErr_Clear(); // negative or too large
            return None;
        }
        Some(v)
    }
}

/// `slf` as a `T`, borrowed for the call.
///
/// # Safety
/// Attached to the interpreter; `slf` is a live `T` for as long as the result is used.
#[inline(always)]
unsafe fn receiver<'a, T: FastPair>(slf: *mut ffi::PyObject) -> Borrowed<'a, 'a, T> {
    // SAFETY: the caller's promise; CPython keeps `slf` alive for the whole call.
    unsafe {
        let py = Python::assume_attached();
        Borrowed::from_ptr(py, slf).cast_unchecked::<T>()
    }
}

/// # Safety
/// As for the entry points, whose arguments these are.
#[cold]
#[inline(never)]
unsafe fn call(
    f: Option<FastFn>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let f = f.expect("a fast entry point is installed only with its fallback");
    // SAFETY: the caller's promise; PyO3's wrapper catches its own panics.
    unsafe { f(slf, args, nargs, kwnames) }
}

/// Raises a core error as the PyO3 methods do. `Python::attach` (not an assumed token):
/// making the exception is Python code, and PyO3 must know the thread is attached.
#[cold]
#[inline(never)]
fn raise(e: AllocError) -> *mut ffi::PyObject {
    Python::attach(|py| to_py(e).restore(py));
    null_mut()
}

/// Runs `body`; a panic becomes a `PanicException`, as PyO3 makes it, since nothing may
/// unwind into CPython; a panic while raising it aborts the process.
#[inline(always)]
fn guarded(body: impl FnOnce() -> *mut ffi::PyObject) -> *mut ffi::PyObject {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => raise_panic(payload),
    }
}

#[cold]
#[inline(never)]
fn raise_panic(payload: Box<dyn Any + Send>) -> *mut ffi::PyObject {
    let raised = catch_unwind(AssertUnwindSafe(|| {
        let msg = if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else {
            "panic from Rust code".to_owned()
        };
        Python::attach(|py| PanicException::new_err((msg,)).restore(py));
    }));
    if raised.is_err() {
        std::process::abort();
    }
    null_mut()
}
