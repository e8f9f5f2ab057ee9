//! The fast entry points of `Vector`'s hot methods (see `fastcall`), served without PyO3's
//! argument parser. Each runs the `#[pymethods]` method of the same name, so results and
//! errors are that method's; `pop(i)` takes the fast path only for an exact int index.

use super::PyVector;
use crate::fastcall::{
    arg, exact_isize, fast_method, install, install_slots, ret, FastSlots, SlotFallbacks,
};
use pyo3::prelude::*;
use pyo3::types::PyType;

static SLOTS: SlotFallbacks = SlotFallbacks::new();

impl FastSlots for PyVector {
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

fast_method!(PushBack, PyVector, "push_back", |this, py, args| {
    let &[x] = args else { return None };
    // SAFETY: `x` is an argument of the running call.
    ret(py, this.push_back(&*unsafe { arg(py, x) }))
});
fast_method!(Append, PyVector, "append", |this, py, args| {
    let &[x] = args else { return None };
    // SAFETY: `x` is an argument of the running call.
    ret(py, this.append(&*unsafe { arg(py, x) }))
});
fast_method!(PopBack, PyVector, "pop_back", |this, py, args| {
    args.is_empty().then(|| ret(py, this.pop_back(py)))?
});
fast_method!(Pop, PyVector, "pop", |this, py, args| {
    let i = match *args {
        [] => -1,
        [i] => exact_isize(i)?,
        _ => return None,
    };
    ret(py, this.pop(py, i))
});

pub fn install_all(ty: &Bound<'_, PyType>) -> PyResult<()> {
    install::<PushBack>(ty)?;
    install::<Append>(ty)?;
    install::<PopBack>(ty)?;
    install::<Pop>(ty)?;
    install_slots::<PyVector>(ty)
}
