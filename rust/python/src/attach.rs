//! `Python::attach` for code that Python may call while the interpreter finalizes.
//!
//! PyO3 attaches a thread it does not already count as attached only while the interpreter
//! runs: during finalization `Python::attach` panics (`Py_IsInitialized()` is 0 by then;
//! 3.13 also checks `Py_IsFinalizing()`). A fast entry point (`fastcall`) is not counted,
//! so a `__del__` run at shutdown whose fast call raised, or reached a Python allocator or
//! out-of-memory handler, panicked there; raising that panic panicked again, and the
//! process aborted. CPython runs finalizers attached, so where PyO3 refuses and CPython
//! says this thread is attached, its token is used as it is.

use pyo3::ffi;
use pyo3::Python;

/// Runs `f` attached, as `Python::attach` does; also while the interpreter finalizes, if
/// CPython says the calling thread is attached. Anywhere else PyO3 refuses (in a
/// `__traverse__`, say) it panics as `Python::attach` does.
pub fn attached<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    let mut f = Some(f);
    if let Some(r) = Python::try_attach(|py| f.take().map(|f| f(py))) {
        return r.expect("`try_attach` runs its closure once");
    }
    let f = f.expect("`try_attach` refused without running its closure");
    // SAFETY: only reads the calling thread's current thread state, which is not null
    // exactly while the thread is attached.
    let usable = finalizing() && !unsafe { ffi::compat::PyThreadState_GetUnchecked() }.is_null();
    if !usable {
        return Python::attach(f);
    }
    // SAFETY: CPython says this thread is attached (checked just above).
    f(unsafe { Python::assume_attached() })
}

/// Whether the interpreter is shutting down, as PyO3 tells it (before 3.13 by
/// `Py_IsInitialized()` alone, which finalization clears first).
fn finalizing() -> bool {
    // SAFETY: only reads the runtime's state; callable at any time.
    let uninitialized = unsafe { ffi::Py_IsInitialized() } == 0;
    uninitialized || is_finalizing()
}

#[cfg(Py_3_13)]
fn is_finalizing() -> bool {
    // SAFETY: only reads the runtime's state; callable at any time.
    unsafe { ffi::Py_IsFinalizing() != 0 }
}

#[cfg(not(Py_3_13))]
fn is_finalizing() -> bool {
    false
}
