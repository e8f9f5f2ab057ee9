//! The allocator of a Python `List`: the built-in pool and the first level named as
//! themselves, any other allocator behind `dyn`.
//!
//! A push or pop spends most of its time in the allocator, and a `dyn` call keeps the
//! pool's fast path (one pop off a free list) out of line, behind a call and a frame of its
//! own. Naming the pool's type lets the compiler inline that path into the list's push; the
//! same for a `MallocAllocator`'s (`malloc` and one slot of the first level's table). Every
//! other allocator (a debug pool, a tracing one, a Python object) is served as before.
//!
//! Invariants: `To::Pool(p)` (or `To::Malloc(m)`) and `To::Any(q)` for the same allocator
//! behave alike, since both forward to the same object: `equality_key` is the pool's
//! address (the first level's shared key) either way, so C++
//! allocator equality (`same_as`, hence `splice`, `merge`, `swap`) is unchanged; and
//! `key == to.equality_key()`, read once, since an allocator's key is fixed for its life
//! (its address, or the one all malloc allocators share).

use crate::alloc_arg::AllocatorArg;
use crate::malloc::PyMallocAllocator;
use crate::pool::{PyPool, PyPoolAllocator};
use pyo3::prelude::*;
use std::sync::Arc;
use stlalloc_core::{AllocError, BlockAllocator, MallocAlloc};

/// Forwards a call to whichever allocator a `To` holds.
macro_rules! forward {
    ($to:expr, $a:ident => $call:expr) => {
        match $to {
            To::Pool($a) => $call,
            To::Malloc($a) => $call,
            To::Any($a) => $call,
        }
    };
}

#[derive(Clone)]
pub struct Alloc {
    to: To,
    /// Kept so that equality, asked on every push (is the node the list's own?), is one
    /// compare: asking `to` cost a push 8 instructions (both variants tested, then the
    /// handles compared).
    key: usize,
}

#[derive(Clone)]
enum To {
    /// A plain (non-debug) `PoolAllocator`'s pool.
    Pool(Arc<PyPool>),
    /// A `MallocAllocator`'s first level.
    Malloc(Arc<MallocAlloc>),
    Any(Arc<dyn BlockAllocator>),
}

impl Alloc {
    /// The allocator a List made with `arg` uses.
    pub fn of(py: Python<'_>, arg: &AllocatorArg) -> Self {
        let object = arg.object.bind(py);
        let to = if let Ok(pool) = object.cast::<PyPoolAllocator>() {
            match pool.get().plain_pool() {
                Some(pool) => To::Pool(pool.clone()),
                None => To::Any(arg.core.clone()),
            }
        } else if let Ok(malloc) = object.cast::<PyMallocAllocator>() {
            To::Malloc(malloc.get().inner.clone())
        } else {
            To::Any(arg.core.clone())
        };
        let key = forward!(&to, a => a.equality_key());
        Self { to, key }
    }
}

// SAFETY: forwards every call to the allocator it holds, which keeps the promises.
// `allocate_claimed` and `deallocate_claimed` are a push's and a pop's, inlined into them.
unsafe impl BlockAllocator for Alloc {
    #[inline]
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        forward!(&self.to, a => a.allocate(n))
    }
    #[inline]
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        forward!(&self.to, a => a.deallocate(p, n))
    }
    fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        forward!(&self.to, a => a.reallocate(p, old, new))
    }
    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        forward!(&self.to, a => a.block_containing(addr))
    }
    fn pin(&self, start: usize) -> Result<(), AllocError> {
        forward!(&self.to, a => a.pin(start))
    }
    fn unpin(&self, start: usize) {
        forward!(&self.to, a => a.unpin(start))
    }
    fn claim(&self, start: usize) -> Result<(), AllocError> {
        forward!(&self.to, a => a.claim(start))
    }
    fn unclaim(&self, start: usize) {
        forward!(&self.to, a => a.unclaim(start))
    }
    #[inline(always)]
    fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        forward!(&self.to, a => a.allocate_claimed(n))
    }
    #[inline(always)]
    fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        forward!(&self.to, a => a.deallocate_claimed(p, n))
    }
    /// The pool's call-free path; none for any other allocator (reaching it is a call).
    #[inline(always)]
    fn try_allocate_claimed(&self, n: usize, align: usize) -> Option<usize> {
        match &self.to {
            To::Pool(a) => a.try_allocate_claimed(n, align),
            To::Malloc(_) | To::Any(_) => None,
        }
    }
    #[inline(always)]
    fn try_deallocate_claimed(&self, p: usize, n: usize) -> bool {
        match &self.to {
            To::Pool(a) => a.try_deallocate_claimed(p, n),
            To::Malloc(_) | To::Any(_) => false,
        }
    }
    fn pin_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
        forward!(&self.to, a => a.pin_spanning(addr, len))
    }
    fn alignment(&self) -> usize {
        forward!(&self.to, a => a.alignment())
    }
    fn equality_key(&self) -> usize {
        self.key
    }
    #[inline]
    fn same_as(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
