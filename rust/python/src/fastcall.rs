//! CPython entry points of their own for the methods a Python program calls millions of
//! times: an allocator's `allocate(n)` and `deallocate(p, n)` (issue #4), a container's
//! `push_back`, `append`, `pop`... (issue #14). One mechanism for all of them.
//!
//! PyO3's generic method wrapper (argument parser, `FromPyObject`) costs more than the work
//! itself. A [`FastMethod`] serves the common call inline: positional arguments only, of
//! the kinds it checks for (an exact `int`, say); for any other it answers `None` and the
//! call goes, unchanged, to the PyO3 wrapper the class had before (kept at installation),
//! so every message and exception type stays the one the `#[pymethods]` give. A call it
//! serves runs the same Rust method the PyO3 wrapper would, so an error raised is that
//! method's error; the call is never repeated.
//!
//! CPython calls an entry point directly, so PyO3 does not know the thread is attached: a
//! `Py` dropped there would have its decref deferred to PyO3's pool. (PyO3's trampoline,
//! which would tell it, costs 100 instructions a call, a quarter of a `List.push_back`.)
//! So a fast method drops no `Py` when it succeeds: what it lets go of (the object a
//! `c[i] = x` replaces) it releases through its token (`Elem::release`, as a `Bound`),
//! which decrefs at once, as CPython does. Every error is raised attached
//! (`attach::attached`), which first releases what was deferred (the value a failed push
//! converted, say): an object is still released before the call returns (but not while
//! the interpreter finalizes, when PyO3 refuses to attach: see `attach`). Panics become
//! `PanicException`s, as PyO3 makes them, since nothing may unwind into CPython.
//!
//! A method may also serve its commonest case with no call at all
//! ([`FastMethod::call_free`]): its entry point then runs that case inline and hands
//! every other call, by a tail call, to the full entry point, so it needs no frame.
//!
//! The fast method is a method descriptor in the class's dict, so a subclass that
//! overrides the name in Python gets its override: attribute lookup finds it first.

mod slots;

pub use slots::{install_slots, FastSlots, SlotFallbacks};

use crate::attach::attached;
use crate::errors::to_py;
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::{IntoPyObject, PyClass};
use std::any::Any;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::OnceLock;
use stlalloc_core::AllocError;

type FastFn = ffi::PyCFunctionFastWithKeywords;

/// PyO3's wrapper of a method, of the calling convention its descriptor's flags name.
#[derive(Clone, Copy)]
pub enum Original {
    FastWithKeywords(FastFn),
    NoArgs(ffi::PyCFunction),
}

/// Where `install` keeps the PyO3 wrapper a fast method falls back on.
pub type Fallback = OnceLock<Original>;

/// A method of `Class` with a fast entry point. Frozen classes only, so that `&self` is
/// reached without a borrow flag.
pub trait FastMethod: 'static {
    type Class: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync;
    const NAME: &'static str;
    fn fallback() -> &'static Fallback;
    /// Serves a call of positional `args`: `Some(result)` (a new reference), or `None`
    /// to hand the call unchanged to the PyO3 method. Runs no Python code before deciding,
    /// and drops no `Py` unless it fails, releasing through `py` instead (see the
    /// module's notes).
    fn call(
        this: &Self::Class,
        py: Python<'_>,
        args: &[*mut ffi::PyObject],
    ) -> Option<PyResult<*mut ffi::PyObject>>;
    /// Whether `call_free` serves anything: if not, the entry point installed is the full
    /// one, with no call-free part to pass through.
    const CALL_FREE: bool = false;
    /// Serves the common case of a call of positional `args` with no function called on
    /// its way, so that the entry point needs no frame (see `entry`): `Some(result)`, a
    /// new reference, never an error; or `None`, having changed nothing, for `call` to
    /// serve. By default it serves nothing.
    #[inline(always)]
    fn call_free(
        this: &Self::Class,
        py: Python<'_>,
        args: &[*mut ffi::PyObject],
    ) -> Option<*mut ffi::PyObject> {
        let _ = (this, py, args);
        None
    }
}

/// Declares a [`FastMethod`] `$marker` of `$class` named `$name`, served by `$body` with
/// `$this`, `$py` and `$args` bound as in [`FastMethod::call`], and first, if given, by
/// `$free` as its [`FastMethod::call_free`].
macro_rules! fast_method {
    ($marker:ident, $class:ty, $name:literal, |$this:ident, $py:ident, $args:ident| $body:expr
     $(, call_free: |$fthis:ident, $fpy:ident, $fargs:ident| $free:expr)?) => {
        pub struct $marker;
        impl $crate::fastcall::FastMethod for $marker {
            type Class = $class;
            const NAME: &'static str = $name;
            fn fallback() -> &'static $crate::fastcall::Fallback {
                static FALLBACK: $crate::fastcall::Fallback = std::sync::OnceLock::new();
                &FALLBACK
            }
            #[inline(always)]
            fn call(
                $this: &$class,
                $py: pyo3::Python<'_>,
                $args: &[*mut pyo3::ffi::PyObject],
            ) -> Option<pyo3::PyResult<*mut pyo3::ffi::PyObject>> {
                $body
            }
            $(
                const CALL_FREE: bool = true;
                #[inline(always)]
                fn call_free(
                    $fthis: &$class,
                    $fpy: pyo3::Python<'_>,
                    $fargs: &[*mut pyo3::ffi::PyObject],
                ) -> Option<*mut pyo3::ffi::PyObject> {
                    $free
                }
            )?
        }
    };
}
pub(crate) use fast_method;

/// What a fast method returns, as the `#[pymethods]` return it: `()` is `None`.
pub trait Ret {
    fn into_ptr(self, py: Python<'_>) -> *mut ffi::PyObject;
}

impl Ret for () {
    #[inline(always)]
    fn into_ptr(self, py: Python<'_>) -> *mut ffi::PyObject {
        py.None().into_ptr()
    }
}

impl Ret for usize {
    #[inline(always)]
    fn into_ptr(self, py: Python<'_>) -> *mut ffi::PyObject {
        self.into_pyobject(py)
            .map_or_else(|e| match e {}, Bound::into_ptr)
    }
}

impl Ret for Bound<'_, PyAny> {
    #[inline(always)]
    fn into_ptr(self, _py: Python<'_>) -> *mut ffi::PyObject {
        Bound::into_ptr(self)
    }
}

/// A method's result as the new reference CPython expects.
#[inline(always)]
pub fn ret<R: Ret>(py: Python<'_>, r: PyResult<R>) -> Option<PyResult<*mut ffi::PyObject>> {
    Some(r.map(|v| v.into_ptr(py)))
}

/// Argument `p` for the call.
///
/// # Safety
/// `p` is one of the live arguments CPython passed to the running call.
#[inline(always)]
pub unsafe fn arg<'a, 'py>(py: Python<'py>, p: *mut ffi::PyObject) -> Borrowed<'a, 'py, PyAny> {
    // SAFETY: the caller's promise; CPython keeps the arguments alive for the whole call.
    unsafe { borrowed(py, p) }
}

/// `p`, which CPython passed, as a `Borrowed`, without `Borrowed::from_ptr`'s null check
/// (CPython never passes null as `self` or an argument): 2 instructions a pointer.
///
/// # Safety
/// `p` is a live object CPython passed to the running call.
#[inline(always)]
unsafe fn borrowed<'a, 'py>(py: Python<'py>, p: *mut ffi::PyObject) -> Borrowed<'a, 'py, PyAny> {
    // SAFETY: the caller's promise: `p` is live, hence not null.
    unsafe { Borrowed::from_ptr_or_opt(py, p).unwrap_unchecked() }
}

/// The value of an exact `int` that fits an `isize`; `None` for anything else (`bool` and
/// other subclasses included), with no error left set, for the PyO3 wrapper to judge.
#[inline(always)]
pub fn exact_isize(obj: *mut ffi::PyObject) -> Option<isize> {
    // SAFETY: `obj` is a live argument of the running call, which is attached.
    unsafe {
        if ffi::PyLong_CheckExact(obj) == 0 {
            return None;
        }
        let v = ffi::PyLong_AsSsize_t(obj);
        if v == -1 && !ffi::PyErr_Occurred().is_null() {
            ffi::PyErr_Clear(); // too large
            return None;
        }
        Some(v)
    }
}

/// The value of an exact `int` in `0..=usize::MAX`, else `None`, as [`exact_isize`].
#[inline(always)]
fn exact_usize(obj: *mut ffi::PyObject) -> Option<usize> {
    // SAFETY: `obj` is a live argument of the running call, which is attached.
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

/// Puts the fast entry point of `M` in its class's dict, in place of PyO3's method
/// descriptor (whose name and doc, hence `__text_signature__`, it keeps). Must run after
/// the class is added and before any instance is used.
pub fn install<M: FastMethod>(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let descr = ty.getattr(M::NAME)?;
    let method_descr_type = &raw mut ffi::PyMethodDescr_Type;
    // SAFETY: `descr` is a live object; its type is read, not written.
    if unsafe { ffi::Py_TYPE(descr.as_ptr()) } != method_descr_type {
        return Err(not_pyo3::<M>());
    }
    // SAFETY: `descr` is exactly a method descriptor (checked above), so it has this layout,
    // and its `d_method` lives as long as the type, which PyO3 never frees.
    let def = unsafe { &*(*descr.as_ptr().cast::<ffi::PyMethodDescrObject>()).d_method };
    let (original, meth) = if def.ml_flags == ffi::METH_FASTCALL | ffi::METH_KEYWORDS {
        // SAFETY: the flags say which member of the union is set.
        let original = unsafe { def.ml_meth.PyCFunctionFastWithKeywords };
        let fast: FastFn = if M::CALL_FREE {
            entry::<M>
        } else {
            full_entry::<M>
        };
        if original as usize == fast as usize {
            return Ok(()); // already installed: falling back on itself would never end
        }
        let meth = ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: fast,
        };
        (Original::FastWithKeywords(original), meth)
    } else if def.ml_flags == ffi::METH_NOARGS {
        // SAFETY: the flags say which member of the union is set.
        let original = unsafe { def.ml_meth.PyCFunction };
        let fast: ffi::PyCFunction = if M::CALL_FREE {
            noargs_entry::<M>
        } else {
            full_noargs_entry::<M>
        };
        if original as usize == fast as usize {
            return Ok(());
        }
        (
            Original::NoArgs(original),
            ffi::PyMethodDefPointer { PyCFunction: fast },
        )
    } else {
        return Err(not_pyo3::<M>());
    };
    let _ = M::fallback().set(original); // a second module init finds the same wrapper
    let new_def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: def.ml_name,
        ml_meth: meth,
        ml_flags: def.ml_flags,
        ml_doc: def.ml_doc,
    }));
    // SAFETY: `ty` is a live type and `new_def` is leaked, so it outlives the descriptor as
    // CPython requires; the new reference is owned by the `Bound`.
    let new = unsafe {
        Bound::from_owned_ptr_or_err(ty.py(), ffi::PyDescr_NewMethod(ty.as_type_ptr(), new_def))?
    };
    // Setting an attribute of a type also invalidates its method cache (`PyType_Modified`).
    ty.setattr(M::NAME, new)
}

/// A method that is not what PyO3 makes: refused loudly (the module does not import),
/// rather than left slow without anyone knowing.
fn not_pyo3<M: FastMethod>() -> PyErr {
    PyRuntimeError::new_err(format!(
        "no fast entry point for {}: not a METH_FASTCALL|METH_KEYWORDS or METH_NOARGS \
         method descriptor",
        M::NAME
    ))
}

/// Serves a call of positional `args` as `M` does: `None` when `M` hands it on.
///
/// # Safety
/// Attached; `slf` is a live `M::Class` (or subclass instance) for the whole call.
#[inline(always)]
unsafe fn serve<M: FastMethod>(
    slf: *mut ffi::PyObject,
    args: &[*mut ffi::PyObject],
) -> Option<*mut ffi::PyObject> {
    // SAFETY: the caller's promise.
    let (py, this) = unsafe { receiver::<M>(slf) };
    M::call(this.get(), py, args).map(|r| r.unwrap_or_else(raise))
}

/// The token and `slf` as the class's object.
///
/// # Safety
/// Attached; `slf` is a live `M::Class` (or subclass instance) for the whole call.
#[inline(always)]
unsafe fn receiver<'a, 'py, M: FastMethod>(
    slf: *mut ffi::PyObject,
) -> (Python<'py>, Borrowed<'a, 'py, M::Class>) {
    // SAFETY: the caller's promise.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: the caller's promise; CPython keeps `slf` alive for the whole call.
    (py, unsafe {
        borrowed(py, slf).cast_unchecked::<M::Class>()
    })
}

/// The PyO3 wrapper `install` kept for `M`.
fn original<M: FastMethod>() -> Original {
    *M::fallback()
        .get()
        .expect("a fast entry point is installed only with its fallback")
}

/// `entry` for a method without arguments.
///
/// # Safety
/// As for `full_noargs_entry`.
unsafe extern "C" fn noargs_entry<M: FastMethod>(
    slf: *mut ffi::PyObject,
    unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's promise: attached, `slf` a live `M::Class` for the call.
    let (py, this) = unsafe { receiver::<M>(slf) };
    if let Some(result) = M::call_free(this.get(), py, &[]) {
        return result;
    }
    // SAFETY: the caller's promise.
    unsafe { full_noargs_entry::<M>(slf, unused) }
}

/// # Safety
/// Called by CPython only, attached, through a `METH_NOARGS` descriptor `install` made,
/// which checks that `slf` is a `M::Class` (or a subclass).
#[inline(never)]
unsafe extern "C" fn full_noargs_entry<M: FastMethod>(
    slf: *mut ffi::PyObject,
    unused: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guarded(null_mut(), || {
        // SAFETY: see `# Safety`.
        if let Some(result) = unsafe { serve::<M>(slf, &[]) } {
            return result;
        }
        match original::<M>() {
            // SAFETY: the wrapper the descriptor had, with the arguments CPython gave us.
            Original::NoArgs(f) => unsafe { f(slf, unused) },
            Original::FastWithKeywords(_) => unreachable!("installed as METH_NOARGS"),
        }
    })
}

/// The entry point of a method with a call-free path: `M::call_free` first, inline, then,
/// past it, everything else out of line (`full_entry`, a tail call). So the common call
/// runs in a function that calls nothing, which needs no frame: no register saved and
/// restored around it (with the full path inline, the six callee-saved registers of the
/// rare cases were pushed and popped on every call).
///
/// # Safety
/// As for `full_entry`.
unsafe extern "C" fn entry<M: FastMethod>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    if !kwnames.is_null() {
        // SAFETY: the caller's promise.
        return unsafe { full_entry::<M>(slf, args, nargs, kwnames) };
    }
    // SAFETY: as in `full_entry`.
    let positional = unsafe { std::slice::from_raw_parts(args, nargs as usize) };
    // SAFETY: the caller's promise: attached, `slf` a live `M::Class` for the call.
    let (py, this) = unsafe { receiver::<M>(slf) };
    if let Some(result) = M::call_free(this.get(), py, positional) {
        return result;
    }
    // SAFETY: the caller's promise, `kwnames` being null (so the register CPython passed it
    // in is free for the call-free path).
    unsafe { full_entry::<M>(slf, args, nargs, null_mut()) }
}

/// # Safety
/// Called by CPython only, attached, through the descriptor `install` made, which checks
/// that `slf` is a `M::Class` (or a subclass); `args` holds `nargs` objects, then the
/// keyword values named in `kwnames` (or null).
#[inline(never)]
unsafe extern "C" fn full_entry<M: FastMethod>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guarded(null_mut(), || {
        if kwnames.is_null() {
            // SAFETY: `args` holds `nargs` live objects; CPython never passes a negative
            // count.
            let positional = unsafe { std::slice::from_raw_parts(args, nargs as usize) };
            // SAFETY: see `# Safety`.
            if let Some(result) = unsafe { serve::<M>(slf, positional) } {
                return result;
            }
        }
        match original::<M>() {
            // SAFETY: the wrapper the descriptor had, which raises its own errors and
            // catches its own panics, with the arguments CPython gave us.
            Original::FastWithKeywords(f) => unsafe { fall_back(slf, args, nargs, kwnames, f) },
            Original::NoArgs(_) => unreachable!("installed as METH_FASTCALL|METH_KEYWORDS"),
        }
    })
}

/// Calls `f` with `entry`'s arguments, taken in `entry`'s order, so that they stay in the
/// registers CPython passed them in (in `f`'s order, the fast path moved them around
/// first: 4 instructions a call).
///
/// # Safety
/// As for `entry`, whose arguments these are.
#[cold]
#[inline(never)]
unsafe fn fall_back(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    f: FastFn,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's promise.
    unsafe { f(slf, args, nargs, kwnames) }
}

/// Raises `e`. Attached through PyO3 (not an assumed token) where it lets us: making the
/// exception may run Python code, PyO3 must know the thread is attached, and attaching
/// releases the references dropped on the way to the error (see the module's notes).
#[cold]
#[inline(never)]
fn raise(e: PyErr) -> *mut ffi::PyObject {
    attached(|py| e.restore(py));
    null_mut()
}

/// Runs `body`; a panic becomes a `PanicException`, as PyO3 makes it, and `failed` is
/// returned, since nothing may unwind into CPython; a panic while raising it aborts.
#[inline(always)]
pub(crate) fn guarded<R>(failed: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            raise_panic(payload);
            failed
        }
    }
}

#[cold]
#[inline(never)]
fn raise_panic(payload: Box<dyn Any + Send>) {
    let raised = catch_unwind(AssertUnwindSafe(|| {
        let msg = if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else {
            "panic from Rust code".to_owned()
        };
        attached(|py| PanicException::new_err((msg,)).restore(py));
    }));
    if raised.is_err() {
        std::process::abort();
    }
}

/// The allocators' pair: a class whose `allocate` and `deallocate` get fast entry points.
pub trait FastPair: PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
    fn fallbacks() -> &'static Fallbacks;
    fn allocate(&self, n: usize) -> Result<usize, AllocError>;
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError>;
}

/// The PyO3 wrappers of a [`FastPair`]'s methods (a generic impl cannot own a static).
pub struct Fallbacks {
    allocate: Fallback,
    deallocate: Fallback,
}

impl Fallbacks {
    pub const fn new() -> Self {
        Self {
            allocate: OnceLock::new(),
            deallocate: OnceLock::new(),
        }
    }
}

struct Allocate<T>(PhantomData<T>);
struct Deallocate<T>(PhantomData<T>);

impl<T: FastPair> FastMethod for Allocate<T> {
    type Class = T;
    const NAME: &'static str = "allocate";
    fn fallback() -> &'static Fallback {
        &T::fallbacks().allocate
    }
    #[inline(always)]
    fn call(
        this: &T,
        py: Python<'_>,
        args: &[*mut ffi::PyObject],
    ) -> Option<PyResult<*mut ffi::PyObject>> {
        let &[n] = args else { return None };
        let n = exact_usize(n)?;
        ret(py, this.allocate(n).map_err(to_py))
    }
}

impl<T: FastPair> FastMethod for Deallocate<T> {
    type Class = T;
    const NAME: &'static str = "deallocate";
    fn fallback() -> &'static Fallback {
        &T::fallbacks().deallocate
    }
    #[inline(always)]
    fn call(
        this: &T,
        py: Python<'_>,
        args: &[*mut ffi::PyObject],
    ) -> Option<PyResult<*mut ffi::PyObject>> {
        let &[p, n] = args else { return None };
        let (p, n) = (exact_usize(p)?, exact_usize(n)?);
        ret(py, this.deallocate(p, n).map_err(to_py))
    }
}

/// Installs the fast `allocate` and `deallocate` of `T`.
pub fn install_pair<T: FastPair>(ty: &Bound<'_, PyType>) -> PyResult<()> {
    install::<Allocate<T>>(ty)?;
    install::<Deallocate<T>>(ty)
}
