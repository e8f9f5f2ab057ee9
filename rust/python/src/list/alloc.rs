//! The allocator of a Python `List`: the built-in pool named as itself, any other allocator
//! behind `dyn`.
//!
//! A push or pop spends most of its time in the allocator, and a `dyn` call keeps the
//! pool's fast path (one pop off a free list) out of line, behind a call and a frame of its
//! own. Naming the pool's type lets the compiler inline that path into the list's push;
//! every other allocator (a debug pool, malloc, a Python object) is served as before.
//!
//! Invariant: `Alloc::Pool(p)` and `Alloc::Any(q)` for the same pool behave alike, since
//! both forward to the same object: `equality_key` is the pool's address either way, so
//! C++ allocator equality (`same_as`, hence `splice`, `merge`, `swap`) is unchanged.

use crate::alloc_arg::AllocatorArg;
use crate::pool::{PyPool, PyPoolAllocator};
use pyo3::prelude::*;
use std::sync::Arc;
use stlalloc_core::{AllocError, BlockAllocator};

#[derive(Clone)]
pub enum Alloc {
    /// A plain (non-debug) `PoolAllocator`'s pool.
    Pool(Arc<PyPool>),
    Any(Arc<dyn BlockAllocator>),
}

impl Alloc {
    /// The allocator a List made with `arg` uses.
    pub fn of(py: Python<'_>, arg: &AllocatorArg) -> Self {
        match arg.object.bind(py).cast::<PyPoolAllocator>() {
            Ok(pool) => match pool.get().plain_pool() {
                Some(pool) => Self::Pool(pool.clone()),
                None => Self::Any(arg.core.clone()),
            },
            Err(_) => Self::Any(arg.core.clone()),
        }
    }
}

/// Forwards a call to whichever allocator `self` holds.
macro_rules! forward {
    ($self:ident, $a:ident => $call:expr) => {
        match $self {
            Alloc::Pool($a) => $call,
            Alloc::Any($a) => $call,
        }
    };
}

// SAFETY: forwards every call to the allocator it holds, which keeps the promises.
// `allocate_claimed` and `deallocate_claimed` are a push's and a pop's, inlined into them.
unsafe impl BlockAllocator for Alloc {
    #[inline]
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        forward!(self, a => a.allocate(n))
    }
    #[inline]
    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        forward!(self, a => a.deallocate(p, n))
    }
    fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        forward!(self, a => a.reallocate(p, old, new))
    }
    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        forward!(self, a => a.block_containing(addr))
    }
    fn pin(&self, start: usize) -> Result<(), AllocError> {
        forward!(self, a => a.pin(start))
    }
    fn unpin(&self, start: usize) {
        forward!(self, a => a.unpin(start))
    }
    fn claim(&self, start: usize) -> Result<(), AllocError> {
        forward!(self, a => a.claim(start))
    }
    fn unclaim(&self, start: usize) {
        forward!(self, a => a.unclaim(start))
    }
    #[inline(always)]
    fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        forward!(self, a => a.allocate_claimed(n))
    }
    #[inline(always)]
    fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        forward!(self, a => a.deallocate_claimed(p, n))
    }
    fn pin_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
        forward!(self, a => a.pin_spanning(addr, len))
    }
    fn alignment(&self) -> usize {
        forward!(self, a => a.alignment())
    }
    fn equality_key(&self) -> usize {
        forward!(self, a => a.equality_key())
    }
    /// The same handle is the same allocator without asking it (a push links a node of
    /// the list's own allocator): no dynamic call on the fast path.
    #[inline]
    fn same_as(&self, other: &Self) -> bool {
        let same_handle = match (self, other) {
            (Self::Pool(a), Self::Pool(b)) => Arc::ptr_eq(a, b),
            (Self::Any(a), Self::Any(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_handle || self.equality_key() == other.equality_key()
    }
}
