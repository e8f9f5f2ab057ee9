//! The fast entry points of `List`'s hot methods (see `fastcall`): the deque names and the
//! C++ ones, served without PyO3's argument parser. Each runs the `#[pymethods]` method of
//! the same name, so results and errors are that method's.

use super::StdList;
use crate::dtype::ByDtype;
use crate::fastcall::{arg, fast_method, install, install_slots, ret, FastSlots, SlotFallbacks};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

static SLOTS: SlotFallbacks = SlotFallbacks::new();

impl FastSlots for StdList {
    fn fallbacks() -> &'static SlotFallbacks {
        &SLOTS
    }
    fn len(&self, py: Python<'_>) -> PyResult<usize> {
        self.__len__(py)
    }
    fn get<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.__getitem__(py, key)
    }
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.__setitem__(py, key, value)
    }
}

fast_method!(PushBack, StdList, "push_back", |this, py, args| {
    let &[x] = args else { return None };
    // SAFETY: `x` is an argument of the running call.
    ret(py, this.push_back(py, &*unsafe { arg(py, x) }))
}, call_free: |this, py, args| this.try_push(py, args, false));
fast_method!(Append, StdList, "append", |this, py, args| {
    let &[x] = args else { return None };
    // SAFETY: `x` is an argument of the running call.
    ret(py, this.push_back(py, &*unsafe { arg(py, x) }))
}, call_free: |this, py, args| this.try_push(py, args, false));
fast_method!(PushFront, StdList, "push_front", |this, py, args| {
    let &[x] = args else { return None };
    // SAFETY: `x` is an argument of the running call.
    ret(py, this.push_front(py, &*unsafe { arg(py, x) }))
}, call_free: |this, py, args| this.try_push(py, args, true));
fast_method!(AppendLeft, StdList, "appendleft", |this, py, args| {
    let &[x] = args else { return None };
    // SAFETY: `x` is an argument of the running call.
    ret(py, this.push_front(py, &*unsafe { arg(py, x) }))
}, call_free: |this, py, args| this.try_push(py, args, true));
fast_method!(PopBack, StdList, "pop_back", |this, py, args| {
    args.is_empty().then(|| ret(py, this.pop_back(py)))?
}, call_free: |this, _py, args| this.try_pop(args, false));
fast_method!(Pop, StdList, "pop", |this, py, args| {
    args.is_empty().then(|| ret(py, this.pop_back(py)))?
}, call_free: |this, _py, args| this.try_pop(args, false));
fast_method!(PopFront, StdList, "pop_front", |this, py, args| {
    args.is_empty().then(|| ret(py, this.pop_front(py)))?
}, call_free: |this, _py, args| this.try_pop(args, true));
fast_method!(PopLeft, StdList, "popleft", |this, py, args| {
    args.is_empty().then(|| ret(py, this.pop_front(py)))?
}, call_free: |this, _py, args| this.try_pop(args, true));

/// The call-free paths (`typed::call_free`), which object lists have: a push of one
/// argument, a pop of none; `None` for the rest, which the methods serve.
impl StdList {
    #[inline(always)]
    fn try_push(
        &self,
        py: Python<'_>,
        args: &[*mut ffi::PyObject],
        front: bool,
    ) -> Option<*mut ffi::PyObject> {
        let (&[x], ByDtype::Object(list)) = (args, &self.inner) else {
            return None;
        };
        // SAFETY: `x` is an argument of the running call, live for all of it.
        unsafe { list.try_push(py, x, front) }.then(|| py.None().into_ptr())
    }

    #[inline(always)]
    fn try_pop(&self, args: &[*mut ffi::PyObject], front: bool) -> Option<*mut ffi::PyObject> {
        match (args, &self.inner) {
            ([], ByDtype::Object(list)) => list.try_pop(front),
            _ => None,
        }
    }
}

pub fn install_all(ty: &Bound<'_, PyType>) -> PyResult<()> {
    install::<PushBack>(ty)?;
    install::<Append>(ty)?;
    install::<PushFront>(ty)?;
    install::<AppendLeft>(ty)?;
    install::<PopBack>(ty)?;
    install::<Pop>(ty)?;
    install::<PopFront>(ty)?;
    install::<PopLeft>(ty)?;
    install_slots::<StdList>(ty)
}
