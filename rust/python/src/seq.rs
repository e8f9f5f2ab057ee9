//! Indices and slices as Python lists take them, for sequence containers.
//!
//! A slice is unpacked from its object once (which may run `__index__`, Python code) and
//! fitted to the container's length later, under the container's lock, without Python.

use pyo3::exceptions::{PyIndexError, PyOverflowError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PySlice;
use std::ops::Range;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// `obj` as a subscript index: anything with `__index__`; otherwise `TypeError` as a
/// list raises it (`rule`: "Vector indices must be integers or slices", say), and an int
/// too large for an index `IndexError`.
pub fn subscript(obj: &Bound<'_, PyAny>, rule: &str) -> PyResult<isize> {
    // SAFETY: `obj` is a valid object; PyIndex_Check only reads its type.
    if unsafe { ffi::PyIndex_Check(obj.as_ptr()) } == 0 {
        return Err(PyTypeError::new_err(format!(
            "{rule}, not {}",
            type_name(obj)
        )));
    }
    obj.extract::<isize>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(obj.py()) {
            PyIndexError::new_err(format!(
                "cannot fit '{}' into an index-sized integer",
                type_name(obj)
            ))
        } else {
            e
        }
    })
}

/// An int argument clamped to the index range, as `list.index(x, start, stop)` takes it.
pub fn clamped(obj: &Bound<'_, PyAny>) -> PyResult<isize> {
    match obj.extract::<isize>() {
        Ok(i) => Ok(i),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
            Ok(if obj.lt(0)? { isize::MIN } else { isize::MAX })
        }
        Err(e) => Err(e),
    }
}

/// `i` (negative counts from the end) as a position in `[0, len)`.
pub fn resolve(i: isize, len: usize) -> Option<usize> {
    let j = if i < 0 {
        i.checked_add(len as isize)?
    } else {
        i
    };
    usize::try_from(j).ok().filter(|&j| j < len)
}

/// `i` as `list.insert` places it: from the end when negative, clamped to `[0, len]`.
pub fn insertion_point(i: isize, len: usize) -> usize {
    let j = if i < 0 {
        i.saturating_add(len as isize)
    } else {
        i
    };
    usize::try_from(j).unwrap_or(0).min(len)
}

/// `[start, stop)` of `list.index(x, start, stop)` on `len` elements.
pub fn search_bounds(start: isize, stop: isize, len: usize) -> Range<usize> {
    let fit = |i: isize| insertion_point(i, len);
    fit(start)..fit(stop)
}

#[derive(Debug, Clone, Copy)]
pub struct SliceSpec {
    start: isize,
    stop: isize,
    step: isize,
}

/// The positions a slice selects in a sequence of some length.
#[derive(Debug, Clone, Copy)]
pub struct Positions {
    pub start: usize,
    pub step: isize,
    pub count: usize,
    /// Where a step-1 slice ends (`>= start`), for assignment of another length.
    stop: usize,
}

impl SliceSpec {
    /// `[:]`, every position.
    pub fn whole() -> Self {
        Self {
            start: 0,
            stop: isize::MAX,
            step: 1,
        }
    }

    /// `slice.start/stop/step` as indices; runs `__index__` and rejects a zero step.
    pub fn unpack(slice: &Bound<'_, PySlice>) -> PyResult<Self> {
        let (mut start, mut stop, mut step) = (0, 0, 0);
        // SAFETY: `slice` is a valid slice object and the out-pointers are valid.
        let r = unsafe { ffi::PySlice_Unpack(slice.as_ptr(), &mut start, &mut stop, &mut step) };
        if r < 0 {
            return Err(PyErr::fetch(slice.py()));
        }
        Ok(Self { start, stop, step })
    }

    /// Step-1 slices may be assigned any number of items; extended ones exactly as many.
    pub fn is_contiguous(&self) -> bool {
        self.step == 1
    }

    /// The positions this slice selects among `len` elements (pure arithmetic).
    pub fn fit(self, len: usize) -> Positions {
        let (mut start, mut stop) = (self.start, self.stop);
        // SAFETY: plain arithmetic on the out-pointers; `step` is non-zero (unpack checked).
        let count =
            unsafe { ffi::PySlice_AdjustIndices(len as isize, &mut start, &mut stop, self.step) };
        Positions {
            // A negative start (-1) only occurs with a count of 0.
            start: start.max(0) as usize,
            step: self.step,
            count: count as usize,
            stop: stop.max(start).max(0) as usize,
        }
    }
}

impl Positions {
    /// The range of a step-1 slice (possibly empty, where assignment inserts).
    pub fn contiguous(&self) -> Option<Range<usize>> {
        (self.step == 1).then_some(self.start..self.stop)
    }

    /// The selected positions in slice order.
    pub fn iter(&self) -> impl Iterator<Item = usize> {
        let (start, step) = (self.start as isize, self.step);
        (0..self.count as isize).map(move |k| (start + k * step) as usize)
    }

    /// The selected positions in ascending order, as `(first, stride)`.
    pub fn ascending(&self) -> (usize, usize) {
        let stride = self.step.unsigned_abs();
        if self.step > 0 || self.count == 0 {
            (self.start, stride)
        } else {
            (self.start - (self.count - 1) * stride, stride)
        }
    }
}
