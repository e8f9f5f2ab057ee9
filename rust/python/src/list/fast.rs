//! The fast entry points of `List`'s hot methods (see `fastcall`): the deque names and the
//! C++ ones, served without PyO3's argument parser. Each runs the `#[pymethods]` method of
//! the same name, so results and errors are that method's.

use super::StdList;
use crate::fastcall::{arg, fast_method, install, install_slots, ret, FastSlots, SlotFallbacks};
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
});
fast_method!(Append, StdList, "append", |this, py, args| {
    let &[x] = args else { return None };
    // SAFETY: `x` is an argument of the running call.
    ret(py, this.push_back(py, &*unsafe { arg(py, x) }))
});
fast_method!(PushFront, StdList, "push_front", |this, py, args| {
    let &[x] = args else { return None };
    // SAFETY: `x` is an argument of the running call.
    ret(py, this.push_front(py, &*unsafe { arg(py, x) }))
});
fast_method!(AppendLeft, StdList, "appendleft", |this, py, args| {
    let &[x] = args else { return None };
    // SAFETY: `x` is an argument of the running call.
    ret(py, this.push_front(py, &*unsafe { arg(py, x) }))
});
fast_method!(PopBack, StdList, "pop_back", |this, py, args| {
    args.is_empty().then(|| ret(py, this.pop_back(py)))?
});
fast_method!(Pop, StdList, "pop", |this, py, args| {
    args.is_empty().then(|| ret(py, this.pop_back(py)))?
});
fast_method!(PopFront, StdList, "pop_front", |this, py, args| {
    args.is_empty().then(|| ret(py, this.pop_front(py)))?
});
fast_method!(PopLeft, StdList, "popleft", |this, py, args| {
    args.is_empty().then(|| ret(py, this.pop_front(py)))?
});

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
