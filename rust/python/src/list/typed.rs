//! One core list of one element type behind its lock, and every operation on it.
//!
//! Locking rules, so that no user ever meets a deadlock or an "Already borrowed" error:
//! - no Python code runs and no Python object is created while a list is locked: values
//!   are extracted, nodes allocated (the allocator may call an out-of-memory handler that
//!   re-enters), objects created, compared and released only outside the lock;
//! - what needs Python comparisons (objects, key functions) works on a snapshot of the
//!   values taken under the lock, then relinks under the lock if the list is unchanged
//!   since, else raises `ValueError` like CPython's "list modified during sort"; the list
//!   is left as it was whenever an operation raises;
//! - two lists are locked in address order.

use super::element::Element;
use crate::errors::OrRaise;
use crate::gil_lock::{GilMutex, GilMutexGuard};
use pyo3::exceptions::{PyIndexError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyRange};
use pyo3::{PyTraverseError, PyVisit};
use std::sync::Arc;
use stlalloc_core::containers::list::{Cursor, Detached, List, StaleCursor};
use stlalloc_core::BlockAllocator;

pub type Alloc = Arc<dyn BlockAllocator>;
pub type CoreList<T> = List<T, Alloc>;

/// What a list's lock guards.
pub struct State<T> {
    list: CoreList<T>,
    /// Values overwritten in place, which the list's generation does not count.
    overwrites: u64,
}

/// Identifies the contents of a list: equal versions, equal lists.
type Version = (u64, u64);

impl<T> State<T> {
    fn version(&self) -> Version {
        (self.list.generation(), self.overwrites)
    }

    /// Refuses to apply a result computed from a snapshot the list has moved away from.
    fn check_unchanged(&self, version: Version, during: &str) -> PyResult<()> {
        if self.version() == version {
            Ok(())
        } else {
            Err(PyValueError::new_err(format!(
                "List modified during {during}"
            )))
        }
    }
}

pub struct Typed<T> {
    /// The list's allocator, reachable without the lock to allocate nodes beforehand.
    alloc: Alloc,
    state: GilMutex<State<T>>,
}

type Guard<'a, T> = GilMutexGuard<'a, State<T>>;

/// Python's `a == b` as containers use it: identity first, then `==`.
fn py_eq(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(a.is(b) || a.eq(b)?)
}

/// Python's index rules: negative counts from the end; `IndexError` out of range.
fn position(i: isize, len: usize) -> PyResult<usize> {
    let i = if i < 0 { i + len as isize } else { i };
    usize::try_from(i)
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| PyIndexError::new_err("List index out of range"))
}

/// `list.insert`'s clamping: any index is fine.
fn insertion_point(i: isize, len: usize) -> usize {
    if i < 0 {
        (i + len as isize).max(0) as usize
    } else {
        (i as usize).min(len)
    }
}

/// A predicate for `extract_if` that is true at the given ascending positions.
fn at_positions<T>(hits: Vec<usize>) -> impl FnMut(&T) -> bool {
    let mut hits = hits.into_iter().peekable();
    let mut i = 0;
    move |_| {
        let hit = hits.next_if_eq(&i).is_some();
        i += 1;
        hit
    }
}

/// The order `sorted(range(n), key=keys.__getitem__, reverse=reverse)`: CPython's own
/// stable sort, so comparisons behave exactly as `list.sort` does.
fn sorted_order(keys: &Bound<'_, PyList>, reverse: bool) -> PyResult<Vec<usize>> {
    let py = keys.py();
    let kwargs = PyDict::new(py);
    kwargs.set_item("key", keys.getattr("__getitem__")?)?;
    kwargs.set_item("reverse", reverse)?;
    let indices = PyRange::new(py, 0, keys.len() as isize)?;
    py.import("builtins")?
        .getattr("sorted")?
        .call((indices,), Some(&kwargs))?
        .extract()
}

/// Converts values carried out of the lock into Python objects.
fn into_objects<T: Element>(py: Python<'_>, values: Vec<T>) -> PyResult<Vec<Bound<'_, PyAny>>> {
    values.into_iter().map(|v| v.into_py(py)).collect()
}

impl<T: Element> Typed<T> {
    pub fn new(list: CoreList<T>) -> Self {
        Self {
            alloc: list.allocator().clone(),
            state: GilMutex::new(State {
                list,
                overwrites: 0,
            }),
        }
    }

    /// See `GilMutex`: free on GIL builds, a mutex that does not block the interpreter on
    /// free-threaded ones.
    #[inline]
    fn lock(&self, py: Python<'_>) -> Guard<'_, T> {
        self.state.lock(py)
    }

    /// Locks two distinct lists in address order.
    fn lock_pair<'a>(&'a self, py: Python<'_>, other: &'a Self) -> (Guard<'a, T>, Guard<'a, T>) {
        if std::ptr::from_ref(self) < std::ptr::from_ref(other) {
            let mine = self.lock(py);
            (mine, other.lock(py))
        } else {
            let theirs = other.lock(py);
            (self.lock(py), theirs)
        }
    }

    /// A new core list of `iterable`'s values, built without any lock; each value pushed at
    /// the back, or at the front (`extendleft` order).
    pub fn build(
        alloc: &Alloc,
        iterable: Option<&Bound<'_, PyAny>>,
        front: bool,
    ) -> PyResult<CoreList<T>> {
        let mut list = CoreList::new(alloc.clone());
        let Some(iterable) = iterable else {
            return Ok(list);
        };
        for item in iterable.try_iter()? {
            let value = T::extract(&item?)?;
            if front {
                list.push_front(value).or_raise()?;
            } else {
                list.push_back(value).or_raise()?;
            }
        }
        Ok(list)
    }

    pub fn push(&self, py: Python<'_>, obj: &Bound<'_, PyAny>, front: bool) -> PyResult<()> {
        let node = Detached::new(&self.alloc, T::extract(obj)?).or_raise()?;
        let mut state = self.lock(py);
        if front {
            state.list.push_front_node(node)
        } else {
            state.list.push_back_node(node)
        }
        .or_raise()
    }

    /// Builds the new nodes first, then links them in O(1): the list is unchanged if
    /// anything fails.
    pub fn extend(&self, py: Python<'_>, iterable: &Bound<'_, PyAny>, front: bool) -> PyResult<()> {
        let mut new = Self::build(&self.alloc, Some(iterable), front)?;
        let mut state = self.lock(py);
        if front {
            new.splice(&mut state.list).or_raise()?;
            std::mem::swap(&mut state.list, &mut new);
            Ok(())
        } else {
            state.list.splice(&mut new).or_raise()
        }
    }

    pub fn pop<'py>(&self, py: Python<'py>, front: bool) -> PyResult<Bound<'py, PyAny>> {
        let value = {
            let mut state = self.lock(py);
            if front {
                state.list.pop_front()
            } else {
                state.list.pop_back()
            }
        };
        value
            .ok_or_else(|| PyIndexError::new_err("pop from an empty List"))?
            .into_py(py)
    }

    /// `front()` or `back()`.
    pub fn end<'py>(&self, py: Python<'py>, front: bool) -> PyResult<Bound<'py, PyAny>> {
        let value = {
            let state = self.lock(py);
            let end = if front {
                state.list.front()
            } else {
                state.list.back()
            };
            end.map(|v| v.share(py))
        };
        value
            .ok_or_else(|| PyIndexError::new_err("empty List has no front or back"))?
            .into_py(py)
    }

    pub fn insert(&self, py: Python<'_>, i: isize, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let node = Detached::new(&self.alloc, T::extract(obj)?).or_raise()?;
        let mut state = self.lock(py);
        let at = insertion_point(i, state.list.len());
        state.list.insert_node(at, node).or_raise()
    }

    pub fn get<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        let value = {
            let state = self.lock(py);
            let i = position(i, state.list.len())?;
            state.list.get(i).map(|v| v.share(py))
        };
        value.expect("index checked").into_py(py)
    }

    pub fn set(&self, py: Python<'_>, i: isize, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = T::extract(obj)?;
        let old = {
            let mut state = self.lock(py);
            let i = position(i, state.list.len())?;
            state.overwrites += 1;
            std::mem::replace(state.list.get_mut(i).expect("index checked"), value)
        };
        drop(old);
        Ok(())
    }

    pub fn delete(&self, py: Python<'_>, i: isize) -> PyResult<()> {
        let old = {
            let mut state = self.lock(py);
            let i = position(i, state.list.len())?;
            state.list.remove_at(i)
        };
        drop(old);
        Ok(())
    }

    pub fn len(&self, py: Python<'_>) -> usize {
        self.lock(py).list.len()
    }

    pub fn clear(&self, py: Python<'_>) {
        let taken = self.lock(py).list.take();
        drop(taken);
    }

    pub fn reverse(&self, py: Python<'_>) {
        self.lock(py).list.reverse();
    }

    pub fn node_addresses(&self, py: Python<'_>) -> Vec<usize> {
        self.lock(py).list.node_addresses()
    }

    fn snapshot(&self, py: Python<'_>) -> (Vec<T>, Version) {
        let state = self.lock(py);
        let values = state.list.iter().map(|v| v.share(py)).collect();
        (values, state.version())
    }

    /// The values as Python objects, in order.
    pub fn objects<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        into_objects(py, self.snapshot(py).0)
    }

    /// A new core list with copies of the values, over the same allocator.
    pub fn copy(&self, py: Python<'_>) -> PyResult<CoreList<T>> {
        let mut list = CoreList::new(self.alloc.clone());
        for value in self.snapshot(py).0 {
            list.push_back(value).or_raise()?;
        }
        Ok(list)
    }

    /// Stable sort by relinking nodes; no node is allocated. Numbers without a key are
    /// sorted by the core's merge sort under the lock; otherwise CPython's sort orders a
    /// snapshot (of keys, computed first as `list.sort` does) and the nodes are relinked in
    /// that order.
    pub fn sort(
        &self,
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
        reverse: bool,
    ) -> PyResult<()> {
        if let (Some(native), None) = (T::NATIVE, key) {
            let lt = native.lt;
            let mut state = self.lock(py);
            if reverse {
                // Greater first; equal values keep their order, as with `reverse=True`.
                state.list.sort_by(|a, b| lt(b, a));
            } else {
                state.list.sort_by(lt);
            }
            return Ok(());
        }
        let (values, version) = self.snapshot(py);
        let mut keys = into_objects(py, values)?;
        if let Some(key) = key {
            keys = keys
                .iter()
                .map(|v| key.call1((v,)))
                .collect::<PyResult<_>>()?;
        }
        let order = sorted_order(&PyList::new(py, keys)?, reverse)?;
        let mut state = self.lock(py);
        state.check_unchanged(version, "sort")?;
        state.list.reorder(&order);
        Ok(())
    }

    /// Positions of the values equal to `x` (only the first if `first_only`).
    pub fn find(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        first_only: bool,
    ) -> PyResult<Vec<usize>> {
        Ok(self.find_versioned(py, x, first_only)?.0)
    }

    fn find_versioned(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        first_only: bool,
    ) -> PyResult<(Vec<usize>, Version)> {
        let limit = if first_only { 1 } else { usize::MAX };
        if let (Some(native), Some(x)) = (T::NATIVE, T::exact(x)) {
            let state = self.lock(py);
            let hits = state.list.iter().enumerate();
            let hits = hits.filter(|(_, v)| (native.eq)(v, &x)).map(|(i, _)| i);
            return Ok((hits.take(limit).collect(), state.version()));
        }
        let (values, version) = self.snapshot(py);
        let mut hits = Vec::new();
        for (i, v) in values.into_iter().enumerate() {
            if py_eq(&v.into_py(py)?, x)? {
                hits.push(i);
                if hits.len() == limit {
                    break;
                }
            }
        }
        Ok((hits, version))
    }

    /// Removes every value equal to `x` (C++20 `list::remove`); how many.
    pub fn remove(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        let (hits, version) = self.find_versioned(py, x, false)?;
        self.extract_at(py, hits, version, "remove")
    }

    /// Removes the values at `hits` if the list is still at `version`; how many. The
    /// values are released after the lock.
    fn extract_at(
        &self,
        py: Python<'_>,
        hits: Vec<usize>,
        version: Version,
        during: &str,
    ) -> PyResult<usize> {
        if hits.is_empty() {
            return Ok(0);
        }
        let removed = {
            let mut state = self.lock(py);
            state.check_unchanged(version, during)?;
            state.list.extract_if(at_positions(hits))
        };
        Ok(removed.len())
    }

    /// Removes each value equal to the last one kept before it; how many.
    pub fn unique(&self, py: Python<'_>) -> PyResult<usize> {
        if let Some(native) = T::NATIVE {
            let removed = self.lock(py).list.unique_by(native.eq);
            return Ok(removed.len());
        }
        let (values, version) = self.snapshot(py);
        let mut values = into_objects(py, values)?.into_iter().enumerate();
        let Some((_, mut kept)) = values.next() else {
            return Ok(0);
        };
        let mut hits = Vec::new();
        for (i, v) in values {
            if py_eq(&kept, &v)? {
                hits.push(i);
            } else {
                kept = v;
            }
        }
        self.extract_at(py, hits, version, "unique")
    }

    /// Moves all of `other`'s nodes to the back in O(1); `other` becomes empty.
    pub fn splice(&self, py: Python<'_>, other: &Self) -> PyResult<()> {
        if std::ptr::eq(self, other) {
            return Err(PyValueError::new_err("cannot splice a List into itself"));
        }
        let (mut mine, mut theirs) = self.lock_pair(py, other);
        mine.list.splice(&mut theirs.list).or_raise()
    }

    /// Merges the sorted `other` into this sorted list by relinking; `other` becomes empty.
    pub fn merge(&self, py: Python<'_>, other: &Self) -> PyResult<()> {
        if std::ptr::eq(self, other) {
            return Ok(());
        }
        if !self.alloc.same_as(&other.alloc) {
            return Err(stlalloc_core::AllocError::AllocatorMismatch).or_raise();
        }
        if let Some(native) = T::NATIVE {
            let (mut mine, mut theirs) = self.lock_pair(py, other);
            return mine.list.merge_by(&mut theirs.list, native.lt).or_raise();
        }
        let (plan, versions) = self.merge_plan(py, other)?;
        let (mut mine, mut theirs) = self.lock_pair(py, other);
        mine.check_unchanged(versions.0, "merge")?;
        theirs.check_unchanged(versions.1, "merge")?;
        // The core merge asks `less(other's first, current)` exactly in the order the plan
        // was made in, so replaying the answers gives the merge Python's `<` decided.
        let mut plan = plan.into_iter();
        mine.list
            .merge_by(&mut theirs.list, |_, _| plan.next().unwrap_or(false))
            .or_raise()
    }

    /// The answers of `other[j] < self[i]` a textbook merge of the snapshots asks for.
    fn merge_plan(
        &self,
        py: Python<'_>,
        other: &Self,
    ) -> PyResult<(Vec<bool>, (Version, Version))> {
        let (mine, my_version) = self.snapshot(py);
        let (theirs, their_version) = other.snapshot(py);
        let (mine, theirs) = (into_objects(py, mine)?, into_objects(py, theirs)?);
        let (mut i, mut j) = (0, 0);
        let mut plan = Vec::new();
        while i < mine.len() && j < theirs.len() {
            let take_theirs = theirs[j].lt(&mine[i])?;
            plan.push(take_theirs);
            if take_theirs {
                j += 1;
            } else {
                i += 1;
            }
        }
        Ok((plan, (my_version, their_version)))
    }

    /// `Some(equal)` when both lists hold numbers of this dtype.
    pub fn native_eq(&self, py: Python<'_>, other: &Self) -> Option<bool> {
        let native = T::NATIVE?;
        let (a, b) = (self.snapshot(py).0, other.snapshot(py).0);
        Some(a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (native.eq)(x, y)))
    }

    pub fn cursor(&self, py: Python<'_>, backward: bool) -> Cursor {
        self.lock(py).list.cursor(backward)
    }

    /// The value under `cursor`, moving it on; `RuntimeError` if the list changed
    /// structure since the cursor was made.
    pub fn advance(&self, py: Python<'_>, cursor: &mut Cursor) -> PyResult<Option<T>> {
        match self.lock(py).list.advance(cursor) {
            Ok(value) => Ok(value.map(|v| v.share(py))),
            Err(StaleCursor) => Err(PyRuntimeError::new_err("List mutated during iteration")),
        }
    }

    /// For the garbage collector, which must not block: a list locked by a thread the
    /// collector stopped is skipped (its references then count as external).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if !T::HOLDS_REFERENCES {
            return Ok(());
        }
        if let Some(state) = self.state.try_lock() {
            for value in state.list.iter() {
                value.visit(visit)?;
            }
        }
        Ok(())
    }

    /// For the garbage collector: drops every value, outside the lock.
    pub fn clear_for_gc(&self) {
        let taken = match self.state.try_lock() {
            Some(mut state) => state.list.take(),
            None => return,
        };
        drop(taken);
    }
}
