//! The allocator protocol: any Python object with `allocate(n) -> int` and
//! `deallocate(p, n)` can back a container, through `PyProtocolAllocator`.
//!
//! Memory safety does not rest on the object. Every address it returns must lie, with all
//! `n` bytes, inside a live block of a built-in allocator that no container holds and no
//! view pins, and must not overlap a block already handed to a container; anything else is
//! an `AllocatorError` and the container never sees the address. An accepted block is
//! *lent*: the ledger of `stlalloc_core::lending` claims its backing block
//! (`BlockAllocator::claim`, as containers claim theirs) until the last block carved from
//! it comes back. While lent, no Python code can free, resize or view the backing block,
//! and the loan keeps the backing allocator alive even if Python drops it. Claiming rather
//! than pinning matters: a pinned block could still be viewed and overwritten, and the
//! object's own `deallocate` must be able to free the block once it is given back
//! (unclaimed first).
//!
//! Python code runs with no lock of this crate held: the adaptor locks only around map
//! updates, before or after calling the object, so the object may use any allocator or
//! container, the one it serves included.
//!
//! Once a block is validated as one the adaptor handed out, `deallocate` does not fail
//! (C++ allocators' `deallocate` does not throw): the block is given back, then the
//! object's `deallocate` runs, and an exception it raises goes to `sys.unraisablehook`.
//! C++ allocators have no `reallocate`; the adaptor's is allocate, copy, deallocate.
//!
//! One adaptor serves each object, so containers over the same object can exchange blocks
//! (`splice`). Protocol allocators compare by identity: an adaptor frees only what it
//! handed out. The adaptor holds its object weakly when it can: the containers and
//! TracingAllocators that use it keep it alive and show it to the garbage collector, so
//! a strong reference here would only hide cycles through it (an allocator that refers to
//! its containers) from the collector.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use stlalloc_core::lending::{self, unavailable};
use stlalloc_core::{AllocError, BlockAllocator, HandlerError};

mod hooks;

pub use hooks::{_block_view, _protocol_roundtrip};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The adaptor of each object, by address (while an adaptor is used, its object is alive:
/// its containers and tracers hold it).
static ADAPTORS: Mutex<Option<HashMap<usize, Weak<PyProtocolAllocator>>>> = Mutex::new(None);

/// A block handed out by the adaptor.
struct Held {
    size: usize,
    backing: usize,
    /// Views of it (through a TracingAllocator around the object).
    pins: usize,
    /// Held by a container (`allocate_claimed`, `claim`).
    claimed: bool,
}

/// The object: weakly if it supports weak references (see the module notes).
enum Target {
    Weak(Py<PyWeakrefReference>),
    Strong(Py<PyAny>),
}

pub struct PyProtocolAllocator {
    object: Target,
    /// The object's address: its identity, the equality key.
    key: usize,
    alignment: usize,
    held: Mutex<BTreeMap<usize, Held>>,
    /// The allocator of the last backing block lent.
    hint: lending::Hint,
}

/// The adaptor of `obj`, made on first use: `TypeError` unless it has callable
/// `allocate` and `deallocate`. It promises the object's `alignment` (an int attribute, a
/// power of two; at least 8, what containers need), else 8.
pub fn adaptor_for(obj: &Bound<'_, PyAny>) -> PyResult<Arc<PyProtocolAllocator>> {
    let key = obj.as_ptr() as usize;
    let known = lock(&ADAPTORS)
        .as_ref()
        .and_then(|m| m.get(&key))
        .and_then(Weak::upgrade)
        .filter(|a| a.object(obj.py()).is_some_and(|o| o.is(obj)));
    if let Some(a) = known {
        return Ok(a);
    }
    for name in ["allocate", "deallocate"] {
        if !obj.getattr(name).is_ok_and(|m| m.is_callable()) {
            return Err(PyTypeError::new_err(format!(
                "an allocator must be a built-in one or have allocate(n) and deallocate(p, n) \
                 methods; {} has no callable {name}",
                obj.get_type().name()?
            )));
        }
    }
    let alignment = match obj.getattr("alignment") {
        Ok(a) => match a.extract::<usize>() {
            Ok(a) if a.is_power_of_two() => a.max(8),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "alignment must be a power of two, not {}",
                    a.repr()?
                )))
            }
        },
        Err(_) => 8,
    };
    let object = match PyWeakrefReference::new(obj) {
        Ok(w) => Target::Weak(w.unbind()),
        Err(_) => Target::Strong(obj.clone().unbind()),
    };
    let adaptor = Arc::new(PyProtocolAllocator {
        object,
        key,
        alignment,
        held: Mutex::new(BTreeMap::new()),
        hint: Mutex::new(None),
    });
    let mut all = lock(&ADAPTORS);
    let map = all.get_or_insert_with(HashMap::new);
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(key, Arc::downgrade(&adaptor));
    Ok(adaptor)
}

impl PyProtocolAllocator {
    /// The object, unless it is gone (then no container or tracer uses it any more).
    fn object<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        match &self.object {
            Target::Weak(w) => w.bind(py).upgrade(),
            Target::Strong(o) => Some(o.bind(py).clone()),
        }
    }

    /// Accepts `[p, p+n)` from the object for a container, or says why not.
    fn accept(&self, p: usize, n: usize, claimed: bool) -> Result<(), AllocError> {
        if p == 0 {
            return Err(unavailable(p, n, "allocate() returned 0 (null)"));
        }
        if p % self.alignment != 0 {
            return Err(AllocError::Misaligned {
                addr: p,
                align: self.alignment,
            });
        }
        let backing = lending::lend(p, n, &self.hint)?;
        let held = Held {
            size: n,
            backing,
            pins: 0,
            claimed,
        };
        lock(&self.held).insert(p, held);
        Ok(())
    }

    fn allocate_held(&self, n: usize, claimed: bool) -> Result<usize, AllocError> {
        if n == 0 {
            return Ok(0);
        }
        crate::attach::attached(|py| {
            let object = self
                .object(py)
                .ok_or_else(|| unavailable(0, n, "the allocator object is gone"))?;
            let r = object
                .call_method1(intern!(py, "allocate"), (n,))
                .map_err(|e| AllocError::Handler(HandlerError(Box::new(e))))?;
            let p = r.extract::<usize>().map_err(|_| {
                let shown = r.repr().map_or("?".into(), |s| s.to_string());
                unavailable(
                    0,
                    n,
                    format!("allocate({n}) returned {shown}, not an address"),
                )
            })?;
            self.accept(p, n, claimed)?;
            Ok(p)
        })
    }

    /// Takes `(p, n)` out of `held` if `ok` accepts it.
    fn take(
        &self,
        p: usize,
        n: usize,
        ok: impl Fn(&Held) -> Result<(), AllocError>,
    ) -> Result<Held, AllocError> {
        let mut held = lock(&self.held);
        match held.get(&p) {
            None => return Err(AllocError::NotLive { addr: p }),
            Some(h) if h.size != n => {
                return Err(AllocError::SizeMismatch {
                    addr: p,
                    size: n,
                    block_size: h.size,
                })
            }
            Some(h) => ok(h)?,
        }
        Ok(held.remove(&p).expect("just found"))
    }

    /// Gives a block taken out of `held` back to the object: unlent, then its `deallocate`.
    /// If the object is gone (collected with its containers, which it referred to), the
    /// backing block is freed once its last piece is back. A container may free its blocks
    /// while it is destroyed with an exception in flight (a temporary dropped as a call
    /// fails): that exception is set aside while the object's code runs, as CPython does
    /// around finalizers.
    fn give_back(&self, p: usize, n: usize, backing: usize) {
        crate::attach::attached(|py| {
            let object = self.object(py);
            lending::unlend(p, backing, object.is_none());
            let Some(object) = object else {
                return;
            };
            let in_flight = PyErr::take(py);
            if let Err(e) = object.call_method1(intern!(py, "deallocate"), (p, n)) {
                e.write_unraisable(py, Some(&object));
            }
            if let Some(e) = in_flight {
                e.restore(py);
            }
        });
    }
}

/// A block Python code may free, move or view: no view and no container holds it.
fn free_to_use(p: usize) -> impl Fn(&Held) -> Result<(), AllocError> {
    move |h| {
        if h.claimed {
            Err(AllocError::Claimed { addr: p })
        } else if h.pins > 0 {
            Err(AllocError::Pinned { addr: p })
        } else {
            Ok(())
        }
    }
}

// SAFETY: every block handed out lies inside a live built-in block claimed for the loan
// (so no one else frees, moves, views or lends it, and the loan keeps its allocator alive),
// and blocks handed out never overlap (the invariants of `stlalloc_core::lending`'s ledger);
// the object's code never decides what the adaptor hands out without that validation. Claims, pins and
// `block_containing` are the adaptor's own record.
unsafe impl BlockAllocator for PyProtocolAllocator {
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        self.allocate_held(n, false)
    }

    fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        self.allocate_held(n, true)
    }

    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if p == 0 && n == 0 {
            return Ok(());
        }
        let h = self.take(p, n, free_to_use(p))?;
        self.give_back(p, n, h.backing);
        Ok(())
    }

    fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        if p == 0 && n == 0 {
            return Ok(());
        }
        let is_claimed = |h: &Held| {
            if h.claimed {
                Ok(())
            } else {
                Err(AllocError::NotLive { addr: p })
            }
        };
        let h = self.take(p, n, is_claimed)?;
        self.give_back(p, n, h.backing);
        Ok(())
    }

    fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        if p == 0 && old == 0 {
            return self.allocate(new);
        }
        if new == 0 {
            self.deallocate(p, old)?;
            return Ok(0);
        }
        // Pinned while the object's code runs, so nothing frees `p` meanwhile.
        self.take(p, old, free_to_use(p))
            .map(|h| lock(&self.held).insert(p, Held { pins: 1, ..h }))?;
        let moved = self.allocate(new);
        let mut held = lock(&self.held);
        held.get_mut(&p).expect("a pinned block stays held").pins -= 1;
        let q = moved?;
        let taken = match held.get(&p) {
            Some(h) if h.pins == 0 => Ok(held.remove(&p).expect("just found")),
            _ => Err(AllocError::Pinned { addr: p }),
        };
        drop(held);
        let h = match taken {
            Ok(h) => h,
            Err(e) => {
                self.deallocate(q, new).expect("q was just handed out");
                return Err(e);
            }
        };
        // SAFETY: `p` (`old` bytes, out of `held` now, so only this call uses it) and `q`
        // (`new` bytes) are blocks this adaptor handed out: inside live, lent backing blocks,
        // never overlapping.
        unsafe { std::ptr::copy_nonoverlapping(p as *const u8, q as *mut u8, old.min(new)) };
        self.give_back(p, old, h.backing);
        Ok(q)
    }

    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        let held = lock(&self.held);
        let (&p, h) = held.range(..=addr).next_back()?;
        (addr < p + h.size).then_some((p, h.size))
    }

    fn pin(&self, start: usize) -> Result<(), AllocError> {
        let mut held = lock(&self.held);
        let h = held
            .get_mut(&start)
            .ok_or(AllocError::NotLive { addr: start })?;
        if h.claimed {
            return Err(AllocError::Claimed { addr: start });
        }
        h.pins += 1;
        Ok(())
    }

    fn unpin(&self, start: usize) {
        if let Some(h) = lock(&self.held).get_mut(&start) {
            h.pins = h.pins.saturating_sub(1);
        }
    }

    fn claim(&self, start: usize) -> Result<(), AllocError> {
        let mut held = lock(&self.held);
        let h = held
            .get_mut(&start)
            .ok_or(AllocError::NotLive { addr: start })?;
        free_to_use(start)(h)?;
        h.claimed = true;
        Ok(())
    }

    fn unclaim(&self, start: usize) {
        if let Some(h) = lock(&self.held).get_mut(&start) {
            h.claimed = false;
        }
    }

    fn alignment(&self) -> usize {
        self.alignment
    }

    /// The object's identity: an adaptor frees only the blocks it handed out.
    fn equality_key(&self) -> usize {
        self.key
    }
}
