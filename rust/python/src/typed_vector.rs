//! The engine behind the Python `Vector`, one per element type: a core `Vector<T>` behind
//! a lock, used so that Python can never see it half-changed nor deadlock on it.
//!
//! Rules (each guards against Python code re-entering the vector, or another thread):
//! - no Python code runs while the lock is held. Values are converted before locking;
//!   elements are compared, converted to objects and dropped (a decref may run `__del__`)
//!   after unlocking; storage is allocated unlocked (the allocator may call a Python
//!   out-of-memory handler) and adopted under the lock again (`make_room`);
//! - while a buffer is exported the storage neither moves nor is freed (`BufferError`),
//!   and its block is pinned in the allocator, so the allocator refuses to free it too;
//! - `version` counts content changes, so that `sort` with a key, which runs Python
//!   unlocked, can tell whether the vector changed meanwhile.

use crate::buffer::Region;
use crate::elem::{py_eq, Elem, Probe};
use crate::errors::OrRaise;
use crate::seq::{insertion_point, resolve, search_bounds, Positions, SliceSpec};
use pyo3::exceptions::{PyBufferError, PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3::{PyTraverseError, PyVisit};
use std::mem;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use stlalloc_core::containers::vector::{Storage, Vector};
use stlalloc_core::{AllocError, BlockAllocator};

pub type Alloc = Arc<dyn BlockAllocator>;
type CoreVec<T> = Vector<T, Alloc>;

struct State<T> {
    vec: CoreVec<T>,
    /// Buffers exported and not yet released.
    exports: usize,
    version: u64,
}

type Guard<'a, T> = MutexGuard<'a, State<T>>;

impl<T> State<T> {
    fn check_movable(&self) -> PyResult<()> {
        if self.exports > 0 {
            return Err(PyBufferError::new_err(
                "cannot move or free the storage of a Vector while a buffer of it is exported",
            ));
        }
        Ok(())
    }

    fn changed(&mut self) {
        self.version = self.version.wrapping_add(1);
    }

    /// Removes `range`; elements that own references come back to be dropped unlocked.
    fn take(&mut self, range: Range<usize>) -> Vec<T> {
        if mem::needs_drop::<T>() {
            self.vec.drain(range)
        } else {
            self.vec.erase(range);
            Vec::new()
        }
    }
}

pub struct Typed<T> {
    state: Mutex<State<T>>,
    alloc: Alloc,
}

fn index_error(msg: &str) -> PyErr {
    PyIndexError::new_err(msg.to_string())
}

impl<T: Elem> Typed<T> {
    /// A vector of `items` with capacity exactly `items.len()`, as C++ copies a range.
    pub fn from_items(alloc: Alloc, items: Vec<T>) -> PyResult<Self> {
        let mut vec = Vector::with_capacity_in(items.len(), alloc.clone()).or_raise()?;
        vec.extend_from_vec(items).or_raise()?;
        Ok(Self {
            state: Mutex::new(State {
                vec,
                exports: 0,
                version: 0,
            }),
            alloc,
        })
    }

    #[inline]
    fn lock(&self) -> Guard<'_, T> {
        // Nothing panics between reading and writing the state, so a poisoned lock still
        // guards a consistent vector.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock, with room for what `need` asks (`grown_capacity`-style: the capacity to
    /// move to, or `None`). The block is allocated unlocked, then adopted if the vector
    /// still needs exactly that; otherwise it is freed and the request recomputed.
    fn make_room(
        &self,
        need: impl Fn(&CoreVec<T>) -> Result<Option<usize>, AllocError>,
    ) -> PyResult<Guard<'_, T>> {
        loop {
            let g = self.lock();
            let Some(cap) = need(&g.vec).or_raise()? else {
                return Ok(g);
            };
            g.check_movable()?;
            drop(g);
            let storage = Storage::allocate(&*self.alloc, cap).or_raise()?;
            let mut g = self.lock();
            if g.exports == 0 && need(&g.vec).or_raise()? == Some(cap) {
                g.vec.adopt(storage).or_raise()?;
                return Ok(g);
            }
            // Changed meanwhile (by the handler, or another thread): `storage` is freed
            // here, which runs no Python, and the need is computed again.
        }
    }

    pub fn len(&self) -> usize {
        self.lock().vec.len()
    }

    pub fn capacity(&self) -> usize {
        self.lock().vec.capacity()
    }

    pub fn data(&self) -> usize {
        self.lock().vec.data()
    }

    /// Copies of every element (new references for objects).
    pub fn snapshot(&self, py: Python<'_>) -> Vec<T> {
        self.lock().vec.iter().map(|e| e.clone_ref(py)).collect()
    }

    /// The elements as Python objects, made after unlocking.
    pub fn py_items<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyAny>> {
        let items = self.snapshot(py);
        items.into_iter().map(|e| e.into_py(py)).collect()
    }

    /// Element `i`, if there is one now (iterators re-check the length each step).
    pub fn item(&self, py: Python<'_>, i: usize) -> Option<T> {
        self.lock().vec.get(i).map(|e| e.clone_ref(py))
    }

    pub fn get<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        let item = {
            let g = self.lock();
            let j =
                resolve(i, g.vec.len()).ok_or_else(|| index_error("Vector index out of range"))?;
            g.vec[j].clone_ref(py)
        };
        Ok(item.into_py(py))
    }

    pub fn front<'py>(&self, py: Python<'py>, back: bool) -> PyResult<Bound<'py, PyAny>> {
        let item = {
            let g = self.lock();
            let end = if back { g.vec.last() } else { g.vec.first() };
            let which = if back { "back" } else { "front" };
            end.map(|e| e.clone_ref(py))
                .ok_or_else(|| index_error(&format!("{which}() of an empty Vector")))?
        };
        Ok(item.into_py(py))
    }

    pub fn get_slice(&self, py: Python<'_>, spec: SliceSpec) -> Vec<T> {
        let g = self.lock();
        let pos = spec.fit(g.vec.len());
        pos.iter().map(|i| g.vec[i].clone_ref(py)).collect()
    }

    #[inline]
    pub fn push(&self, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let item = T::from_py(x)?;
        let item = {
            let mut g = self.lock();
            match g.vec.push_within_capacity(item) {
                Ok(()) => {
                    g.changed();
                    return Ok(());
                }
                Err(item) => item,
            }
        };
        self.push_growing(item)
    }

    #[cold]
    fn push_growing(&self, item: T) -> PyResult<()> {
        let mut g = self.make_room(|v| v.grown_capacity(0, 1))?;
        if g.vec.push_within_capacity(item).is_err() {
            unreachable!("make_room made room for one more");
        }
        g.changed();
        Ok(())
    }

    pub fn extend(&self, items: Vec<T>) -> PyResult<()> {
        let k = items.len();
        let mut g = self.make_room(|v| v.grown_capacity(0, k))?;
        // Room was made, so this cannot allocate.
        g.vec.extend_from_vec(items).or_raise()?;
        g.changed();
        Ok(())
    }

    pub fn insert(&self, i: isize, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let item = T::from_py(x)?;
        let mut g = self.make_room(|v| v.grown_capacity(0, 1))?;
        let at = insertion_point(i, g.vec.len());
        g.vec.insert(at, item).or_raise()?;
        g.changed();
        Ok(())
    }

    pub fn set(&self, i: isize, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let item = T::from_py(x)?;
        let old = {
            let mut g = self.lock();
            let j = resolve(i, g.vec.len())
                .ok_or_else(|| index_error("Vector assignment index out of range"))?;
            g.changed();
            mem::replace(&mut g.vec[j], item)
        };
        drop(old);
        Ok(())
    }

    /// `v[slice] = items`: a step-1 slice is replaced by any number of items (C++: erase,
    /// then insert, growing as that would); an extended slice needs exactly as many.
    pub fn set_slice(&self, spec: SliceSpec, items: Vec<T>) -> PyResult<()> {
        let k = items.len();
        let old = if spec.is_contiguous() {
            let mut g = self.make_room(|v| {
                let r = spec.fit(v.len()).contiguous().expect("step 1");
                v.grown_capacity(r.len(), k)
            })?;
            let r = spec.fit(g.vec.len()).contiguous().expect("step 1");
            let old = g.vec.splice(r, items).or_raise()?;
            g.changed();
            old
        } else {
            let mut g = self.lock();
            let pos = spec.fit(g.vec.len());
            if pos.count != k {
                return Err(PyValueError::new_err(format!(
                    "attempt to assign sequence of size {k} to extended slice of size {}",
                    pos.count
                )));
            }
            g.changed();
            pos.iter()
                .zip(items)
                .map(|(i, x)| mem::replace(&mut g.vec[i], x))
                .collect()
        };
        drop(old);
        Ok(())
    }

    pub fn del(&self, i: isize) -> PyResult<()> {
        let old = {
            let mut g = self.lock();
            let j = resolve(i, g.vec.len())
                .ok_or_else(|| index_error("Vector assignment index out of range"))?;
            g.changed();
            g.vec.remove(j)
        };
        drop(old);
        Ok(())
    }

    pub fn del_slice(&self, spec: SliceSpec) {
        let old = {
            let mut g = self.lock();
            let pos = spec.fit(g.vec.len());
            g.changed();
            match pos.contiguous() {
                Some(r) => g.take(r),
                None => Self::take_strided(&mut g, pos),
            }
        };
        drop(old);
    }

    /// Removes the positions of an extended slice, keeping the rest in order: survivors
    /// are swapped down over the removed elements, which end up at the tail.
    fn take_strided(g: &mut State<T>, pos: Positions) -> Vec<T> {
        let (first, stride) = pos.ascending();
        let removed = |i: usize| (i - first) % stride == 0 && (i - first) / stride < pos.count;
        let len = g.vec.len();
        let mut w = first;
        for i in first..len {
            if !removed(i) {
                g.vec.swap(w, i);
                w += 1;
            }
        }
        g.take(w..len)
    }

    pub fn pop<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        let item = {
            let mut g = self.lock();
            if g.vec.is_empty() {
                return Err(index_error("pop from empty Vector"));
            }
            let j = resolve(i, g.vec.len()).ok_or_else(|| index_error("pop index out of range"))?;
            g.changed();
            g.vec.remove(j)
        };
        Ok(item.into_py(py))
    }

    /// The first position in `[start, stop)` (as `list.index` takes them) whose element
    /// equals `x`. Python comparisons run unlocked, one element at a time, as a list does.
    pub fn position(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        start: isize,
        stop: isize,
    ) -> PyResult<Option<usize>> {
        let bounds = search_bounds(start, stop, self.len());
        match T::probe(x) {
            Probe::Never => Ok(None),
            Probe::Equal(v) => {
                let g = self.lock();
                let end = bounds.end.min(g.vec.len());
                Ok((bounds.start..end).find(|&i| g.vec[i].native_eq(&v) == Some(true)))
            }
            Probe::Python => {
                for i in bounds {
                    let Some(item) = self.item(py, i) else { break };
                    if py_eq(&item.into_py(py), x)? {
                        return Ok(Some(i));
                    }
                }
                Ok(None)
            }
        }
    }

    pub fn count(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        match T::probe(x) {
            Probe::Never => Ok(0),
            Probe::Equal(v) => {
                let g = self.lock();
                Ok(g.vec
                    .iter()
                    .filter(|e| e.native_eq(&v) == Some(true))
                    .count())
            }
            Probe::Python => {
                let mut n = 0;
                let mut i = 0;
                while let Some(item) = self.item(py, i) {
                    n += usize::from(py_eq(&item.into_py(py), x)?);
                    i += 1;
                }
                Ok(n)
            }
        }
    }

    /// Removes the first element equal to `x`, as `list.remove` does.
    pub fn remove(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(i) = self.position(py, x, 0, isize::MAX)? else {
            return Err(PyValueError::new_err("Vector.remove(x): x not in Vector"));
        };
        let old = {
            let mut g = self.lock();
            // The comparison ran Python code, which may have shrunk the vector.
            (i < g.vec.len()).then(|| {
                g.changed();
                g.vec.remove(i)
            })
        };
        drop(old);
        Ok(())
    }

    pub fn reverse(&self) {
        let mut g = self.lock();
        g.vec.reverse();
        g.changed();
    }

    /// A stable sort, as `list.sort`. Numbers without a key sort natively under the lock;
    /// otherwise a Python list of the elements is sorted unlocked and written back, unless
    /// the vector changed meanwhile (`ValueError`, as a list raises it).
    pub fn sort(
        &self,
        py: Python<'_>,
        key: Option<&Bound<'_, PyAny>>,
        reverse: bool,
    ) -> PyResult<()> {
        if key.is_none() {
            let mut g = self.lock();
            if T::sort_native(&mut g.vec, reverse) {
                g.changed();
                return Ok(());
            }
        }
        let (items, version) = {
            let g = self.lock();
            let items: Vec<T> = g.vec.iter().map(|e| e.clone_ref(py)).collect();
            (items, g.version)
        };
        let list = PyList::new(py, items.into_iter().map(|e| e.into_py(py)))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("key", key)?;
        kwargs.set_item("reverse", reverse)?;
        list.call_method("sort", (), Some(&kwargs))?;
        let sorted = list
            .iter()
            .map(|o| T::from_py(&o))
            .collect::<PyResult<Vec<T>>>()?;
        let old: Vec<T> = {
            let mut g = self.lock();
            if g.version != version {
                return Err(PyValueError::new_err("Vector modified during sort"));
            }
            g.changed();
            g.vec
                .iter_mut()
                .zip(sorted)
                .map(|(slot, x)| mem::replace(slot, x))
                .collect()
        };
        drop(old);
        Ok(())
    }

    /// `resize(n, value)`: truncates, or appends copies of `value` (default: `T()`).
    pub fn resize(
        &self,
        py: Python<'_>,
        n: usize,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let fill = match value {
            Some(v) => T::from_py(v)?,
            None => T::default_value(py),
        };
        let old = {
            let mut g = self.make_room(|v| v.grown_capacity(0, n.saturating_sub(v.len())))?;
            let len = g.vec.len();
            g.changed();
            if n < len {
                g.take(n..len)
            } else {
                g.vec.resize_with(n, || fill.clone_ref(py)).or_raise()?;
                Vec::new()
            }
        };
        drop(old);
        Ok(())
    }

    /// `reserve(n)`: capacity becomes exactly `n` if it was smaller.
    pub fn reserve(&self, n: usize) -> PyResult<()> {
        self.make_room(|v| Ok((n > v.capacity()).then_some(n)))
            .map(drop)
    }

    /// `shrink_to_fit()`: capacity becomes the length; no storage when empty.
    pub fn shrink_to_fit(&self) -> PyResult<()> {
        self.make_room(|v| Ok((v.capacity() > v.len()).then_some(v.len())))
            .map(drop)
    }

    /// `clear()`: drops every element, keeps the capacity. Also what breaks GC cycles.
    pub fn clear(&self) {
        let old = {
            let mut g = self.lock();
            let len = g.vec.len();
            g.changed();
            g.take(0..len)
        };
        drop(old);
    }

    /// Both vectors' elements compared natively, or `None` when Python must compare them.
    pub fn native_equals(&self, py: Python<'_>, other: &Self) -> Option<bool> {
        // One lock at a time: `other` may be `self`, and two locks could deadlock.
        let mine = self.snapshot(py);
        let g = other.lock();
        if mine.len() != g.vec.len() {
            return Some(false);
        }
        mine.iter()
            .zip(g.vec.iter())
            .map(|(a, b)| a.native_eq(b))
            .try_fold(true, |all, eq| Some(all && eq?))
    }

    /// Pins the storage and describes it for a buffer; `release_export` undoes it.
    pub fn export(&self) -> PyResult<Region> {
        let Some(format) = T::FORMAT else {
            return Err(PyBufferError::new_err(format!(
                "a Vector of dtype '{}' exports no buffer",
                T::DTYPE.name()
            )));
        };
        // The storage is claimed by the vector, so the allocator refuses to free it; the
        // export count keeps the vector itself from moving or freeing it.
        let mut g = self.lock();
        let data = g.vec.data();
        g.exports += 1;
        let buf = if data == 0 {
            // No storage: an empty buffer still needs an aligned non-null address.
            NonNull::<T>::dangling().as_ptr().cast()
        } else {
            data as *mut u8
        };
        Ok(Region {
            buf,
            len: g.vec.len() * mem::size_of::<T>(),
            itemsize: mem::size_of::<T>(),
            format,
        })
    }

    pub fn release_export(&self) {
        self.lock().exports -= 1;
    }

    /// Visits every referenced object. A vector locked elsewhere is skipped rather than
    /// waited for: its references then count as external, which only delays collection.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let g = match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(()),
        };
        g.vec.iter().try_for_each(|e| e.visit(visit))
    }
}
