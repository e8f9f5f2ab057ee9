//! The engine behind the Python `Vector`, one per element type: a core `Vector<T>` behind
//! the engine's lock (`engine` states the rules). What is particular to vectors:
//! - storage is allocated unlocked and adopted under the lock again (`make_room`); the old
//!   block is freed after unlocking, deferred to the guard;
//! - while a buffer is exported the storage neither moves nor is freed (`BufferError`);
//!   the allocator refuses to free it too, as the vector claimed it.

use crate::buffer::Region;
use crate::elem::{py_eq, Elem, Probe};
use crate::engine::{Guard, Locked};
use crate::errors::OrRaise;
use crate::seq::{insertion_point, resolve, search_bounds, Positions, SliceSpec};
use pyo3::exceptions::{PyBufferError, PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3::{PyTraverseError, PyVisit};
use std::mem;
use std::ptr::NonNull;
use std::sync::Arc;
use stlalloc_core::containers::vector::{Storage, Vector};
use stlalloc_core::{AllocError, BlockAllocator};

pub type Alloc = Arc<dyn BlockAllocator>;
type CoreVec<T> = Vector<T, Alloc>;

struct State<T> {
    vec: CoreVec<T>,
    /// Buffers exported and not yet released.
    exports: usize,
}

impl<T> State<T> {
    fn check_movable(&self) -> PyResult<()> {
        if self.exports > 0 {
            return Err(PyBufferError::new_err(
                "cannot move or free the storage of a Vector while a buffer of it is exported",
            ));
        }
        Ok(())
    }
}

pub struct Typed<T> {
    state: Locked<State<T>>,
    alloc: Alloc,
}

fn index_error(msg: &str) -> PyErr {
    PyIndexError::new_err(msg.to_string())
}

impl<T: Elem> Typed<T> {
    /// A vector of `items` with capacity exactly `items.len()`, as C++ copies a range. Made
    /// before any lock exists, so it may allocate and free as it goes.
    pub fn from_items(alloc: Alloc, items: Vec<T>) -> PyResult<Self> {
        let mut vec = Vector::with_capacity_in(items.len(), alloc.clone()).or_raise()?;
        drop(vec.extend_from_vec(items).or_raise()?);
        Ok(Self {
            state: Locked::new(State { vec, exports: 0 }),
            alloc,
        })
    }

    #[inline]
    fn lock(&self, py: Python<'_>) -> PyResult<Guard<'_, State<T>>> {
        self.state.lock(py)
    }

    /// The lock, with room for what `need` asks (`grown_capacity`-style: the capacity to
    /// move to, or `None`). The block is allocated unlocked, then adopted if the vector
    /// still needs exactly that; otherwise it is freed and the request recomputed. The
    /// block let go of (the old one, or the refused new one) is freed once the returned
    /// guard unlocks.
    fn make_room(
        &self,
        py: Python<'_>,
        need: impl Fn(&CoreVec<T>) -> Result<Option<usize>, AllocError>,
    ) -> PyResult<Guard<'_, State<T>>> {
        loop {
            let g = self.lock(py)?;
            let Some(cap) = need(&g.vec).or_raise()? else {
                return Ok(g);
            };
            g.check_movable()?;
            drop(g);
            let storage = Storage::allocate(self.alloc.clone(), cap).or_raise()?;
            let mut g = self.lock(py)?;
            if g.exports > 0 || need(&g.vec).or_raise()? != Some(cap) {
                // Changed meanwhile (by the allocator's code, or another thread): the block
                // is freed once unlocked, and the need is computed again.
                g.defer(storage);
                continue;
            }
            let (old, adopted) = g.vec.adopt(storage);
            g.defer(old);
            adopted.or_raise()?;
            return Ok(g);
        }
    }

    pub fn len(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.vec.len())
    }

    pub fn capacity(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.vec.capacity())
    }

    pub fn data(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.vec.data())
    }

    /// Copies of every element (new references for objects) and the version they show.
    fn snapshot_versioned(&self, py: Python<'_>) -> PyResult<(Vec<T>, u64)> {
        let g = self.lock(py)?;
        Ok((g.vec.iter().map(|e| e.clone_ref(py)).collect(), g.version()))
    }

    /// Copies of every element (new references for objects).
    pub fn snapshot(&self, py: Python<'_>) -> PyResult<Vec<T>> {
        Ok(self.snapshot_versioned(py)?.0)
    }

    /// The elements as Python objects, made after unlocking.
    pub fn py_items<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let items = self.snapshot(py)?;
        Ok(items.into_iter().map(|e| e.into_py(py)).collect())
    }

    /// Element `i`, if there is one now (iterators re-check the length each step).
    pub fn item(&self, py: Python<'_>, i: usize) -> PyResult<Option<T>> {
        Ok(self.lock(py)?.vec.get(i).map(|e| e.clone_ref(py)))
    }

    pub fn get<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        let item = {
            let g = self.lock(py)?;
            let j =
                resolve(i, g.vec.len()).ok_or_else(|| index_error("Vector index out of range"))?;
            g.vec[j].clone_ref(py)
        };
        Ok(item.into_py(py))
    }

    pub fn front<'py>(&self, py: Python<'py>, back: bool) -> PyResult<Bound<'py, PyAny>> {
        let item = {
            let g = self.lock(py)?;
            let end = if back { g.vec.last() } else { g.vec.first() };
            let which = if back { "back" } else { "front" };
            end.map(|e| e.clone_ref(py))
                .ok_or_else(|| index_error(&format!("{which}() of an empty Vector")))?
        };
        Ok(item.into_py(py))
    }

    pub fn get_slice(&self, py: Python<'_>, spec: SliceSpec) -> PyResult<Vec<T>> {
        let g = self.lock(py)?;
        let pos = spec.fit(g.vec.len());
        Ok(pos.iter().map(|i| g.vec[i].clone_ref(py)).collect())
    }

    #[inline]
    pub fn push(&self, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let item = T::from_py(x)?;
        let item = {
            let mut g = self.lock(x.py())?;
            match g.vec.push_within_capacity(item) {
                Ok(()) => return Ok(()),
                Err(item) => item,
            }
        };
        self.push_growing(x.py(), item)
    }

    #[cold]
    fn push_growing(&self, py: Python<'_>, item: T) -> PyResult<()> {
        let mut g = self.make_room(py, |v| v.grown_capacity(0, 1))?;
        if g.vec.push_within_capacity(item).is_err() {
            unreachable!("make_room made room for one more");
        }
        Ok(())
    }

    pub fn extend(&self, py: Python<'_>, items: Vec<T>) -> PyResult<()> {
        let k = items.len();
        let mut g = self.make_room(py, |v| v.grown_capacity(0, k))?;
        // Room was made, so nothing moves.
        let old = g.vec.extend_from_vec(items).or_raise()?;
        g.defer(old);
        Ok(())
    }

    pub fn insert(&self, i: isize, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let item = T::from_py(x)?;
        let mut g = self.make_room(x.py(), |v| v.grown_capacity(0, 1))?;
        let at = insertion_point(i, g.vec.len());
        let old = g.vec.insert(at, item).or_raise()?;
        g.defer(old);
        Ok(())
    }

    pub fn set(&self, i: isize, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let item = T::from_py(x)?;
        let old = {
            let mut g = self.lock(x.py())?;
            let j = resolve(i, g.vec.len())
                .ok_or_else(|| index_error("Vector assignment index out of range"))?;
            mem::replace(&mut g.vec[j], item)
        };
        old.release(x.py());
        Ok(())
    }

    /// `v[slice] = items`: a step-1 slice is replaced by any number of items (C++: erase,
    /// then insert, growing as that would); an extended slice needs exactly as many.
    pub fn set_slice(&self, py: Python<'_>, spec: SliceSpec, items: Vec<T>) -> PyResult<()> {
        let k = items.len();
        let old = if spec.is_contiguous() {
            let mut g = self.make_room(py, |v| {
                let r = spec.fit(v.len()).contiguous().expect("step 1");
                v.grown_capacity(r.len(), k)
            })?;
            let r = spec.fit(g.vec.len()).contiguous().expect("step 1");
            let (old, retired) = g.vec.splice(r, items).or_raise()?;
            g.defer(retired);
            old
        } else {
            let mut g = self.lock(py)?;
            let pos = spec.fit(g.vec.len());
            if pos.count != k {
                return Err(PyValueError::new_err(format!(
                    "attempt to assign sequence of size {k} to extended slice of size {}",
                    pos.count
                )));
            }
            pos.iter()
                .zip(items)
                .map(|(i, x)| mem::replace(&mut g.vec[i], x))
                .collect()
        };
        drop(old);
        Ok(())
    }

    /// `__init__(items)`: the contents become `items`, as a step-1 slice of everything.
    pub fn assign(&self, py: Python<'_>, items: Vec<T>) -> PyResult<()> {
        self.set_slice(py, SliceSpec::whole(), items)
    }

    /// `std::erase(v, x)`: removes every element equal to `x`; how many. Numbers are
    /// compared under the lock; objects as `erase_where` does.
    pub fn erase(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<usize> {
        match T::probe(x) {
            Probe::Never => Ok(0),
            Probe::Equal(v) => {
                // Numbers have no drop glue: the core drops them in place.
                let mut g = self.lock(py)?;
                let doomed: Vec<usize> = (0..g.vec.len())
                    .filter(|&i| g.vec[i].native_eq(&v) == Some(true))
                    .collect();
                drop(Self::take_at(&mut g.vec, &doomed));
                Ok(doomed.len())
            }
            Probe::Python => self.erase_where(py, "erase", |e| py_eq(&e.into_py(py), x)),
        }
    }

    /// `std::erase_if(v, pred)`: removes every element for which `pred` is true; how many.
    pub fn erase_if(&self, py: Python<'_>, pred: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.erase_where(py, "erase_if", |e| {
            pred.call1((e.into_py(py),))?.is_truthy()
        })
    }

    /// Removes the elements `hit` picks, decided on a snapshot with Python running unlocked,
    /// and applied only if the vector did not change meanwhile (`ValueError` otherwise,
    /// the vector unchanged). How many.
    fn erase_where(
        &self,
        py: Python<'_>,
        during: &str,
        mut hit: impl FnMut(T) -> PyResult<bool>,
    ) -> PyResult<usize> {
        let (items, version) = self.snapshot_versioned(py)?;
        let mut doomed = Vec::new();
        for (i, e) in items.into_iter().enumerate() {
            if hit(e)? {
                doomed.push(i);
            }
        }
        let removed = {
            let mut g = self.lock(py)?;
            g.check_unchanged(version, "Vector", during)?;
            Self::take_at(&mut g.vec, &doomed)
        };
        drop(removed);
        Ok(doomed.len())
    }

    /// Removes the elements at the ascending positions `doomed`, keeping the rest in order
    /// (survivors swap down over them); the removed that need dropping come back, to be
    /// dropped unlocked (`Vector::erase`).
    fn take_at(vec: &mut CoreVec<T>, doomed: &[usize]) -> Vec<T> {
        let Some(&first) = doomed.first() else {
            return Vec::new();
        };
        let len = vec.len();
        let mut doomed = doomed.iter().peekable();
        let mut w = first;
        for i in first..len {
            if doomed.peek() == Some(&&i) {
                doomed.next();
            } else {
                vec.swap(w, i);
                w += 1;
            }
        }
        vec.erase(w..len)
    }

    pub fn del(&self, py: Python<'_>, i: isize) -> PyResult<()> {
        let old = {
            let mut g = self.lock(py)?;
            let j = resolve(i, g.vec.len())
                .ok_or_else(|| index_error("Vector assignment index out of range"))?;
            g.vec.remove(j)
        };
        drop(old);
        Ok(())
    }

    pub fn del_slice(&self, py: Python<'_>, spec: SliceSpec) -> PyResult<()> {
        let old = {
            let mut g = self.lock(py)?;
            let pos = spec.fit(g.vec.len());
            match pos.contiguous() {
                Some(r) => g.vec.erase(r),
                None => Self::take_strided(&mut g.vec, pos),
            }
        };
        drop(old);
        Ok(())
    }

    /// Removes the positions of an extended slice, keeping the rest in order: survivors
    /// are swapped down over the removed elements, which end up at the tail.
    fn take_strided(vec: &mut CoreVec<T>, pos: Positions) -> Vec<T> {
        let (first, stride) = pos.ascending();
        let removed = |i: usize| (i - first) % stride == 0 && (i - first) / stride < pos.count;
        let len = vec.len();
        let mut w = first;
        for i in first..len {
            if !removed(i) {
                vec.swap(w, i);
                w += 1;
            }
        }
        vec.erase(w..len)
    }

    pub fn pop<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        let item = {
            let mut g = self.lock(py)?;
            if g.vec.is_empty() {
                return Err(index_error("pop from empty Vector"));
            }
            let j = resolve(i, g.vec.len()).ok_or_else(|| index_error("pop index out of range"))?;
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
        let bounds = search_bounds(start, stop, self.len(py)?);
        match T::probe(x) {
            Probe::Never => Ok(None),
            Probe::Equal(v) => {
                let g = self.lock(py)?;
                let end = bounds.end.min(g.vec.len());
                Ok((bounds.start..end).find(|&i| g.vec[i].native_eq(&v) == Some(true)))
            }
            Probe::Python => {
                for i in bounds {
                    let Some(item) = self.item(py, i)? else { break };
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
                let g = self.lock(py)?;
                Ok(g.vec
                    .iter()
                    .filter(|e| e.native_eq(&v) == Some(true))
                    .count())
            }
            Probe::Python => {
                let mut n = 0;
                let mut i = 0;
                while let Some(item) = self.item(py, i)? {
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
            let mut g = self.lock(py)?;
            // The comparison ran Python code, which may have shrunk the vector.
            (i < g.vec.len()).then(|| g.vec.remove(i))
        };
        drop(old);
        Ok(())
    }

    pub fn reverse(&self, py: Python<'_>) -> PyResult<()> {
        self.lock(py)?.vec.reverse();
        Ok(())
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
        if key.is_none() && T::NATIVE_LT.is_some() {
            let mut g = self.lock(py)?;
            T::sort_native(&mut g.vec, reverse);
            return Ok(());
        }
        let (items, version) = self.snapshot_versioned(py)?;
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
            let mut g = self.lock(py)?;
            g.check_unchanged(version, "Vector", "sort")?;
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
            let mut g = self.make_room(py, |v| v.grown_capacity(0, n.saturating_sub(v.len())))?;
            let (old, retired) = g.vec.resize_with(n, || fill.clone_ref(py)).or_raise()?;
            g.defer(retired);
            old
        };
        drop((old, fill));
        Ok(())
    }

    /// `reserve(n)`: capacity becomes exactly `n` if it was smaller.
    pub fn reserve(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        self.make_room(py, |v| Ok((n > v.capacity()).then_some(n)))
            .map(drop)
    }

    /// `shrink_to_fit()`: capacity becomes the length; no storage when empty.
    pub fn shrink_to_fit(&self, py: Python<'_>) -> PyResult<()> {
        self.make_room(py, |v| Ok((v.capacity() > v.len()).then_some(v.len())))
            .map(drop)
    }

    /// `clear()`: drops every element (after unlocking), keeps the capacity.
    pub fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let old = self.lock(py)?.vec.clear();
        drop(old);
        Ok(())
    }

    /// Both vectors' elements compared natively, or `None` when Python must compare them.
    pub fn native_equals(&self, py: Python<'_>, other: &Self) -> PyResult<Option<bool>> {
        // One lock at a time: `other` may be `self`.
        let mine = self.snapshot(py)?;
        let g = other.lock(py)?;
        if mine.len() != g.vec.len() {
            return Ok(Some(false));
        }
        Ok(mine
            .iter()
            .zip(g.vec.iter())
            .map(|(a, b)| a.native_eq(b))
            .try_fold(true, |all, eq| Some(all && eq?)))
    }

    /// Counts an export and describes the storage for a buffer; `release_export` undoes it.
    pub fn export(&self, py: Python<'_>) -> PyResult<Region> {
        let Some(format) = T::FORMAT else {
            return Err(PyBufferError::new_err(format!(
                "a Vector of dtype '{}' exports no buffer",
                T::DTYPE.name()
            )));
        };
        // The storage is claimed by the vector, so the allocator refuses to free it; the
        // export count keeps the vector itself from moving or freeing it.
        let mut g = self.lock(py)?;
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

    /// Called when a buffer is released, which runs no code of the vector's, so the lock is
    /// free (`engine`); were it not, the count would stay up, which only refuses moves.
    pub fn release_export(&self, py: Python<'_>) {
        if let Ok(mut g) = self.lock(py) {
            g.exports -= 1;
        }
    }

    /// Visits every referenced object. A vector locked elsewhere is skipped rather than
    /// waited for: its references then count as external, which only delays collection.
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if !mem::needs_drop::<T>() {
            return Ok(());
        }
        match self.state.try_lock() {
            Some(g) => g.vec.iter().try_for_each(|e| e.visit(visit)),
            None => Ok(()),
        }
    }

    /// For the garbage collector: drops every element, after unlocking.
    pub fn clear_for_gc(&self) {
        let old = self.state.try_lock().map(|mut g| g.vec.clear());
        drop(old);
    }
}
