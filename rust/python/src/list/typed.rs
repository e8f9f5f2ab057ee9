//! The engine behind the Python `List`, one per element type: a core list behind the
//! engine's lock (`engine` states the rules). What is particular to lists:
//! - nodes are allocated before locking (`Detached`) and linked under the lock; unlinked
//!   nodes come out of the lock as `Unlinked` (or in a list) and are freed after it;
//! - two lists are locked in address order;
//! - `len <= maxlen` after every operation, as in `deque`: a push at one end past `maxlen`
//!   drops the node at the other end, an `extend` keeps the last `maxlen` values (`maxlen`
//!   is [`UNBOUNDED`] for a list without one, and changes only under the lock).

mod call_free;

use crate::elem::{collect, py_eq, Elem, Probe};
use crate::engine::{Guard, Locked};
use crate::errors::OrRaise;
use crate::seq::{insertion_point, resolve, search_bounds, SliceSpec};
use pyo3::exceptions::{PyIndexError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyRange};
use pyo3::{PyTraverseError, PyVisit};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use stlalloc_core::containers::list::{Cursor, Detached, List, StaleCursor, Unlinked};
use stlalloc_core::{AllocError, BlockAllocator};

pub use super::alloc::Alloc;
pub type CoreList<T> = List<T, Alloc>;

pub struct Typed<T> {
    /// The list's allocator, reachable without the lock to allocate nodes beforehand.
    alloc: Alloc,
    /// `deque`'s `maxlen`, read and written under the lock.
    maxlen: AtomicUsize,
    state: Locked<CoreList<T>>,
}

/// The `maxlen` of a list without one (no count of nodes reaches it).
pub const UNBOUNDED: usize = usize::MAX;

type ListGuard<'a, T> = Guard<'a, CoreList<T>>;

/// `(start, stop)` of a search of the whole list.
pub const WHOLE: (isize, isize) = (0, isize::MAX);

/// Element `i` (negative from the end) of a list of `len`, or `IndexError`.
fn position(i: isize, len: usize) -> PyResult<usize> {
    resolve(i, len).ok_or_else(|| PyIndexError::new_err("List index out of range"))
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
fn into_objects<T: Elem>(py: Python<'_>, values: Vec<T>) -> Vec<Bound<'_, PyAny>> {
    values.into_iter().map(|v| v.into_py(py)).collect()
}

/// The outcome of a link, once unlocked: a node refused (of another allocator) is freed.
#[inline(always)]
fn linked<T>(refused: Option<Detached<'_, T, Alloc>>) -> PyResult<()> {
    match refused {
        None => Ok(()),
        Some(node) => {
            drop(node);
            Err(AllocError::AllocatorMismatch).or_raise()
        }
    }
}

impl<T: Elem> Typed<T> {
    /// A list of the last `maxlen` values of `list` (a copy's `maxlen`, read apart from its
    /// values, may have changed in between).
    pub fn new(mut list: CoreList<T>, maxlen: usize) -> Self {
        drop(Self::trim(&mut list, maxlen, true));
        Self {
            alloc: list.allocator().clone(),
            maxlen: AtomicUsize::new(maxlen),
            state: Locked::new(list),
        }
    }

    pub fn maxlen(&self) -> usize {
        self.maxlen.load(Relaxed)
    }

    pub fn allocator(&self) -> &Alloc {
        &self.alloc
    }

    #[inline]
    fn lock(&self, py: Python<'_>) -> PyResult<ListGuard<'_, T>> {
        self.state.lock(py)
    }

    /// Locks two distinct lists in address order.
    fn lock_pair<'a>(
        &'a self,
        py: Python<'_>,
        other: &'a Self,
    ) -> PyResult<(ListGuard<'a, T>, ListGuard<'a, T>)> {
        if std::ptr::from_ref(self) < std::ptr::from_ref(other) {
            let mine = self.lock(py)?;
            Ok((mine, other.lock(py)?))
        } else {
            let theirs = other.lock(py)?;
            Ok((self.lock(py)?, theirs))
        }
    }

    /// A new core list of the last `limit` of `iterable`'s values (all of them are
    /// taken), built without any lock; each value pushed at the back, or at the front
    /// (`extendleft` order).
    pub fn build(
        alloc: &Alloc,
        iterable: Option<&Bound<'_, PyAny>>,
        front: bool,
        limit: usize,
    ) -> PyResult<CoreList<T>> {
        let mut list = CoreList::new(alloc.clone());
        let Some(iterable) = iterable else {
            return Ok(list);
        };
        let values = collect::<T>(iterable)?;
        let dropped = values.len().saturating_sub(limit);
        for value in values.into_iter().skip(dropped) {
            if front {
                list.push_front(value).or_raise()?;
            } else {
                list.push_back(value).or_raise()?;
            }
        }
        Ok(list)
    }

    /// Links `node` with `link`; a node of another allocator is refused (see `linked`).
    #[inline]
    fn link<'a>(
        &'a self,
        py: Python<'_>,
        node: Detached<'a, T, Alloc>,
        link: impl FnOnce(
            &mut CoreList<T>,
            Detached<'a, T, Alloc>,
        ) -> Result<(), Detached<'a, T, Alloc>>,
    ) -> PyResult<()> {
        let refused = link(&mut *self.lock(py)?, node).err();
        linked(refused)
    }

    /// Inlined whole into the fast entry points (`list::fast`): as a function of its own,
    /// its frame and result cost a push 16 of its 159 instructions.
    #[inline(always)]
    pub fn push(&self, py: Python<'_>, obj: &Bound<'_, PyAny>, front: bool) -> PyResult<()> {
        let node = Detached::new(&self.alloc, T::from_py(obj)?).or_raise()?;
        // Linked here, not through `link`'s closure: `front` is then a constant wherever
        // `push` is inlined (into the fast entry points), and no closure is left out of
        // line (one cost `appendleft` 23 instructions). Past `maxlen`, the node at the
        // other end is taken under the same lock.
        let Some(mut guard) = self.state.lock_plain(py) else {
            return Err(Self::reentered(node));
        };
        // One `&mut` for the push and the eviction: each `DerefMut` counts a version.
        let list = &mut *guard;
        let pushed = if front {
            list.push_front_node(node)
        } else {
            list.push_back_node(node)
        };
        if let Err(refused) = pushed {
            // Nothing was linked, so nothing is evicted (`len <= maxlen` under the lock).
            drop(guard);
            return Err(Self::refused(refused));
        }
        let evicted = self.evict(list, !front);
        drop(guard);
        if evicted.is_none() {
            // Forgetting `None` leaks nothing; dropping it was a call to the drop glue of
            // `Option<Unlinked>` on every push (9 instructions), which the optimizer kept.
            std::mem::forget(evicted);
            return Ok(());
        }
        Self::release(py, evicted);
        Ok(())
    }

    /// A push's node refused by a busy list: freed, then the re-entry's error made (out
    /// of line, so that the push calls nothing while it holds the node).
    #[cold]
    #[inline(never)]
    fn reentered(node: Detached<'_, T, Alloc>) -> PyErr {
        drop(node);
        crate::gil_lock::reentered()
    }

    /// A push's node refused by the list (of another allocator), out of line: freed,
    /// then the error made.
    #[cold]
    #[inline(never)]
    fn refused(node: Detached<'_, T, Alloc>) -> PyErr {
        drop(node);
        crate::errors::to_py(AllocError::AllocatorMismatch)
    }

    /// After a push: takes the node at the other end (the `front` one or the back one) when
    /// the list is now longer than its `maxlen`. One compare when it is not.
    #[inline(always)]
    fn evict(&self, l: &mut CoreList<T>, front: bool) -> Option<Unlinked<T, Alloc>> {
        if l.len() > self.maxlen() {
            Self::unlink_end(l, front)
        } else {
            None
        }
    }

    #[cold]
    #[inline(never)]
    fn unlink_end(l: &mut CoreList<T>, front: bool) -> Option<Unlinked<T, Alloc>> {
        if front {
            l.pop_front()
        } else {
            l.pop_back()
        }
    }

    /// Frees an evicted node and lets go of its value now (pushes are fast entry points,
    /// where a dropped `Py` would wait in PyO3's pool).
    #[cold]
    #[inline(never)]
    fn release(py: Python<'_>, evicted: Option<Unlinked<T, Alloc>>) {
        if let Some(node) = evicted {
            node.into_value().release(py);
        }
    }

    /// Takes out of `l` the values beyond `maxlen`: the first ones, or the last ones
    /// (`extendleft`); `None`, without walking the list, when it is within `maxlen`.
    fn trim(l: &mut CoreList<T>, maxlen: usize, from_front: bool) -> Option<CoreList<T>> {
        let excess = l.len().checked_sub(maxlen).filter(|&e| e > 0)?;
        let kept = maxlen;
        let mut i = 0;
        Some(l.extract_if(|_| {
            i += 1;
            if from_front {
                i <= excess
            } else {
                i > kept
            }
        }))
    }

    /// Builds the new nodes first, then links them in O(1): the list is unchanged if
    /// anything fails.
    pub fn extend(&self, py: Python<'_>, iterable: &Bound<'_, PyAny>, front: bool) -> PyResult<()> {
        let mut new = Self::build(&self.alloc, Some(iterable), front, self.maxlen())?;
        let (spliced, trimmed) = {
            let mut state = self.lock(py)?;
            let spliced = if front {
                let spliced = new.splice(&mut state);
                if spliced.is_ok() {
                    std::mem::swap(&mut *state, &mut new);
                }
                spliced
            } else {
                state.splice(&mut new)
            };
            (spliced, Self::trim(&mut state, self.maxlen(), !front))
        };
        // `new` (refused, or emptied) and what went past `maxlen` are dropped after
        // unlocking.
        drop((new, trimmed));
        spliced.or_raise()
    }

    /// Unlinks a node with `take`; its value comes out and its block is freed unlocked.
    fn unlink(
        &self,
        py: Python<'_>,
        take: impl FnOnce(&mut CoreList<T>) -> PyResult<Unlinked<T, Alloc>>,
    ) -> PyResult<T> {
        let node = take(&mut *self.lock(py)?)?;
        Ok(node.into_value())
    }

    /// Inlined whole into the fast entry points, as `push` is.
    #[inline(always)]
    pub fn pop<'py>(&self, py: Python<'py>, front: bool) -> PyResult<Bound<'py, PyAny>> {
        // Freed through our own handle of the allocator: the pop clones none.
        let alloc = &self.alloc;
        let node = {
            let mut list = self.lock(py)?;
            if front {
                list.pop_front_in(alloc)
            } else {
                list.pop_back_in(alloc)
            }
            .or_raise()?
        };
        // Unlocked: the node is freed now.
        let node = node.ok_or_else(|| PyIndexError::new_err("pop from an empty List"))?;
        Ok(node.into_value().into_py(py))
    }

    pub fn delete(&self, py: Python<'_>, i: isize) -> PyResult<()> {
        let value = self.unlink(py, |l| {
            let i = position(i, l.len())?;
            Ok(l.remove_at(i).expect("index checked"))
        })?;
        drop(value);
        Ok(())
    }

    /// `front()` or `back()`.
    pub fn end<'py>(&self, py: Python<'py>, front: bool) -> PyResult<Bound<'py, PyAny>> {
        let value = {
            let state = self.lock(py)?;
            let end = if front { state.front() } else { state.back() };
            end.map(|v| v.clone_ref(py))
        };
        Ok(value
            .ok_or_else(|| PyIndexError::new_err("empty List has no front or back"))?
            .into_py(py))
    }

    /// `IndexError` when the list is at its `maxlen`, as `deque.insert` (which end would
    /// lose a value is not clear).
    pub fn insert(&self, py: Python<'_>, i: isize, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let node = Detached::new(&self.alloc, T::from_py(obj)?).or_raise()?;
        let mut full = false;
        let linked = self.link(py, node, |l, n| {
            full = l.len() >= self.maxlen();
            if full {
                return Err(n);
            }
            l.insert_node(insertion_point(i, l.len()), n)
        });
        if full {
            return Err(PyIndexError::new_err("List already at its maximum size"));
        }
        linked
    }

    #[inline]
    pub fn get<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        let value = {
            let state = self.lock(py)?;
            let i = position(i, state.len())?;
            state.get(i).expect("index checked").clone_ref(py)
        };
        Ok(value.into_py(py))
    }

    pub fn set(&self, py: Python<'_>, i: isize, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = T::from_py(obj)?;
        let old = {
            let mut state = self.lock(py)?;
            let i = position(i, state.len())?;
            std::mem::replace(state.get_mut(i).expect("index checked"), value)
        };
        old.release(py);
        Ok(())
    }

    pub fn len(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.len())
    }

    pub fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.lock(py)?.take();
        drop(taken);
        Ok(())
    }

    pub fn reverse(&self, py: Python<'_>) -> PyResult<()> {
        self.lock(py)?.reverse();
        Ok(())
    }

    pub fn rotate(&self, py: Python<'_>, k: isize) -> PyResult<()> {
        self.lock(py)?.rotate(k);
        Ok(())
    }

    pub fn node_addresses(&self, py: Python<'_>) -> PyResult<Vec<usize>> {
        Ok(self.lock(py)?.node_addresses())
    }

    fn snapshot(&self, py: Python<'_>) -> PyResult<(Vec<T>, u64)> {
        let state = self.lock(py)?;
        let values = state.iter().map(|v| v.clone_ref(py)).collect();
        Ok((values, state.version()))
    }

    /// The values as Python objects, in order.
    pub fn objects<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        Ok(into_objects(py, self.snapshot(py)?.0))
    }

    /// A new core list with copies of the values, over the same allocator.
    pub fn copy(&self, py: Python<'_>) -> PyResult<CoreList<T>> {
        self.list_of(self.snapshot(py)?.0)
    }

    /// A new core list of `values` over this list's allocator, made without any lock.
    fn list_of(&self, values: Vec<T>) -> PyResult<CoreList<T>> {
        let mut list = CoreList::new(self.alloc.clone());
        for value in values {
            list.push_back(value).or_raise()?;
        }
        Ok(list)
    }

    /// `l[slice]`: a new core list of the selected values, over the same allocator.
    pub fn get_slice(&self, py: Python<'_>, spec: SliceSpec) -> PyResult<CoreList<T>> {
        let values = self.snapshot(py)?.0;
        let pos = spec.fit(values.len());
        let mut values: Vec<Option<T>> = values.into_iter().map(Some).collect();
        let picked = pos.iter().filter_map(|i| values[i].take()).collect();
        self.list_of(picked)
    }

    /// `__init__(iterable)`: the new nodes are made first, then swapped in; the old ones
    /// are freed after unlocking.
    pub fn assign(
        &self,
        py: Python<'_>,
        iterable: Option<&Bound<'_, PyAny>>,
        maxlen: usize,
    ) -> PyResult<()> {
        let mut new = Self::build(&self.alloc, iterable, false, maxlen)?;
        {
            let mut state = self.lock(py)?;
            std::mem::swap(&mut *state, &mut new);
            self.maxlen.store(maxlen, Relaxed);
        }
        drop(new);
        Ok(())
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
        if let (Some(lt), None) = (T::NATIVE_LT, key) {
            let mut state = self.lock(py)?;
            if reverse {
                // Greater first; equal values keep their order, as with `reverse=True`.
                state.sort_by(|a, b| lt(b, a));
            } else {
                state.sort_by(lt);
            }
            return Ok(());
        }
        let (values, version) = self.snapshot(py)?;
        let mut keys = into_objects(py, values);
        if let Some(key) = key {
            keys = keys
                .iter()
                .map(|v| key.call1((v,)))
                .collect::<PyResult<_>>()?;
        }
        let order = sorted_order(&PyList::new(py, keys)?, reverse)?;
        let mut state = self.lock(py)?;
        state.check_unchanged(version, "List", "sort")?;
        state.reorder(&order);
        Ok(())
    }

    /// Positions in `within` (`list.index`'s `start`, `stop`) of the values equal to `x`,
    /// only the first if `first_only`. As `deque` does, a change of the list while Python
    /// compares is an error (`RuntimeError`).
    pub fn find(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        within: (isize, isize),
        first_only: bool,
    ) -> PyResult<Vec<usize>> {
        let mutated = |m| PyRuntimeError::new_err(m);
        Ok(self.find_versioned(py, x, within, first_only, mutated)?.0)
    }

    fn find_versioned(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        (start, stop): (isize, isize),
        first_only: bool,
        mutated: fn(String) -> PyErr,
    ) -> PyResult<(Vec<usize>, u64)> {
        let limit = if first_only { 1 } else { usize::MAX };
        let probe = match T::probe(x) {
            Probe::Never => return Ok((Vec::new(), self.lock(py)?.version())),
            Probe::Equal(v) => v,
            Probe::Python => {
                let (values, version) = self.snapshot(py)?;
                let within = search_bounds(start, stop, values.len());
                let mut hits = Vec::new();
                for (i, v) in values.into_iter().enumerate().take(within.end) {
                    if i < within.start {
                        continue;
                    }
                    let equal = py_eq(&v.into_py(py), x)?;
                    if self.lock(py)?.version() != version {
                        return Err(mutated("List mutated during iteration".to_string()));
                    }
                    if equal {
                        hits.push(i);
                        if hits.len() == limit {
                            break;
                        }
                    }
                }
                return Ok((hits, version));
            }
        };
        let state = self.lock(py)?;
        let within = search_bounds(start, stop, state.len());
        let hits = state.iter().enumerate().take(within.end).skip(within.start);
        let hits = hits.filter(|(_, v)| v.native_eq(&probe) == Some(true));
        Ok((hits.map(|(i, _)| i).take(limit).collect(), state.version()))
    }

    /// Removes the first value equal to `x`, as `deque.remove`: `ValueError` if none,
    /// `IndexError` if the list changes while Python compares.
    pub fn remove(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let mutated = |m| PyIndexError::new_err(m);
        let (hits, version) = self.find_versioned(py, x, WHOLE, true, mutated)?;
        if hits.is_empty() {
            return Err(PyValueError::new_err("List.remove(x): x not in List"));
        }
        self.extract_at(py, hits, version, "remove").map(drop)
    }

    /// Removes every value equal to `x` (C++20 `std::erase`); how many.
    pub fn erase(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mutated = |m| PyRuntimeError::new_err(m);
        let (hits, version) = self.find_versioned(py, x, WHOLE, false, mutated)?;
        self.extract_at(py, hits, version, "erase")
    }

    /// Removes every value for which `pred` is true (`std::erase_if`); how many. `pred`
    /// runs on a snapshot; `ValueError` if the list changed meanwhile (then unchanged).
    pub fn erase_if(&self, py: Python<'_>, pred: &Bound<'_, PyAny>) -> PyResult<usize> {
        let (values, version) = self.snapshot(py)?;
        let mut hits = Vec::new();
        for (i, v) in values.into_iter().enumerate() {
            if pred.call1((v.into_py(py),))?.is_truthy()? {
                hits.push(i);
            }
        }
        self.extract_at(py, hits, version, "erase_if")
    }

    /// Removes the values at `hits` if the list is still at `version`; how many. The
    /// nodes are freed and the values released after the lock.
    fn extract_at(
        &self,
        py: Python<'_>,
        hits: Vec<usize>,
        version: u64,
        during: &str,
    ) -> PyResult<usize> {
        if hits.is_empty() {
            return Ok(0);
        }
        let removed = {
            let mut state = self.lock(py)?;
            state.check_unchanged(version, "List", during)?;
            state.extract_if(at_positions(hits))
        };
        Ok(removed.len())
    }

    /// Removes each value equal to the last one kept before it; how many.
    pub fn unique(&self, py: Python<'_>) -> PyResult<usize> {
        if T::NATIVE_LT.is_some() {
            let removed = self
                .lock(py)?
                .unique_by(|a, b| a.native_eq(b) == Some(true));
            return Ok(removed.len());
        }
        let (values, version) = self.snapshot(py)?;
        let mut values = into_objects(py, values).into_iter().enumerate();
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
        let (mut mine, mut theirs) = self.lock_pair(py, other)?;
        mine.splice(&mut theirs).or_raise()
    }

    /// Merges the sorted `other` into this sorted list by relinking; `other` becomes empty.
    pub fn merge(&self, py: Python<'_>, other: &Self) -> PyResult<()> {
        if std::ptr::eq(self, other) {
            return Ok(());
        }
        if !self.alloc.same_as(&other.alloc) {
            return Err(AllocError::AllocatorMismatch).or_raise();
        }
        if let Some(lt) = T::NATIVE_LT {
            let (mut mine, mut theirs) = self.lock_pair(py, other)?;
            return mine.merge_by(&mut theirs, lt).or_raise();
        }
        let (plan, versions) = self.merge_plan(py, other)?;
        let (mut mine, mut theirs) = self.lock_pair(py, other)?;
        mine.check_unchanged(versions.0, "List", "merge")?;
        theirs.check_unchanged(versions.1, "List", "merge")?;
        // The core merge asks `less(other's first, current)` exactly in the order the plan
        // was made in, so replaying the answers gives the merge Python's `<` decided.
        let mut plan = plan.into_iter();
        mine.merge_by(&mut theirs, |_, _| plan.next().unwrap_or(false))
            .or_raise()
    }

    /// The answers of `other[j] < self[i]` a textbook merge of the snapshots asks for.
    fn merge_plan(&self, py: Python<'_>, other: &Self) -> PyResult<(Vec<bool>, (u64, u64))> {
        let (mine, my_version) = self.snapshot(py)?;
        let (theirs, their_version) = other.snapshot(py)?;
        let (mine, theirs) = (into_objects(py, mine), into_objects(py, theirs));
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
    pub fn native_eq(&self, py: Python<'_>, other: &Self) -> PyResult<Option<bool>> {
        if T::NATIVE_LT.is_none() {
            return Ok(None);
        }
        let (a, b) = (self.snapshot(py)?.0, other.snapshot(py)?.0);
        Ok(Some(
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.native_eq(y) == Some(true)),
        ))
    }

    pub fn cursor(&self, py: Python<'_>, backward: bool) -> PyResult<Cursor> {
        Ok(self.lock(py)?.cursor(backward))
    }

    /// The value under `cursor`, moving it on; `RuntimeError` if the list changed
    /// structure since the cursor was made.
    pub fn advance(&self, py: Python<'_>, cursor: &mut Cursor) -> PyResult<Option<T>> {
        match self.lock(py)?.advance(cursor) {
            Ok(value) => Ok(value.map(|v| v.clone_ref(py))),
            Err(StaleCursor) => Err(PyRuntimeError::new_err("List mutated during iteration")),
        }
    }

    /// For the garbage collector, which must not block: a list locked by a thread the
    /// collector stopped is skipped (its references then count as external).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if !std::mem::needs_drop::<T>() {
            return Ok(());
        }
        match self.state.try_lock() {
            Some(state) => state.iter().try_for_each(|v| v.visit(visit)),
            None => Ok(()),
        }
    }

    /// For the garbage collector: drops every value, outside the lock.
    pub fn clear_for_gc(&self) {
        let taken = self.state.try_lock().map(|mut state| state.take());
        drop(taken);
    }
}
