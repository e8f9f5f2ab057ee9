//! `Tracing<A>`: forwards every call to an allocator and records each allocation call as an
//! event, failed ones included, so a user sees which calls a container makes. A
//! container's `allocate_claimed` / `deallocate_claimed` are recorded as `allocate` /
//! `deallocate`: to the user they are the allocator calls of C++.
//!
//! Recording is one lock and one push; nothing is formatted unless a call fails, and
//! events are only copied out when asked for. Queries and claims (`block_containing`,
//! `pin`, `claim`) are forwarded, not recorded: they do not change what is allocated.
//!
//! A tracing allocator and its inner allocator are equal (same `equality_key`): every block
//! of one is a block of the other.

use crate::block_allocator::BlockAllocator;
use crate::error::AllocError;
use crate::sync::lock;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Allocate,
    Deallocate,
    /// The block moved from `address` (of `old_size` bytes) to the result (of `size`).
    Reallocate {
        old_size: usize,
    },
}

/// What a failed call raised, by kind (as the Python binding maps errors) and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    OutOfMemory,
    /// A block exported by a view cannot be freed or moved.
    Pinned,
    /// A misuse: foreign pointer, double free, size of another class, …
    Misuse,
    /// The out-of-memory handler (or other user code) raised its own error.
    Handler,
    InvalidParameter,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn of(e: &AllocError) -> Self {
        let kind = match e {
            AllocError::OutOfMemory { .. } | AllocError::TooLarge { .. } => {
                FailureKind::OutOfMemory
            }
            AllocError::Pinned { .. } => FailureKind::Pinned,
            AllocError::Handler(_) => FailureKind::Handler,
            AllocError::InvalidParameter(_) => FailureKind::InvalidParameter,
            _ => FailureKind::Misuse,
        };
        let message = match e {
            // The caller got the error itself; the record can only name where it came from.
            AllocError::Handler(_) => {
                "user code the allocator ran (an out-of-memory handler, or a Python \
                 allocator's method) raised; the caller got its exception"
                    .to_string()
            }
            e => e.to_string(),
        };
        Self { kind, message }
    }
}

/// One call: `address` is the block the call is about (the new block of an `allocate`,
/// 0 if it failed; the block freed or moved otherwise), `size` the size asked (the new
/// size of a `reallocate`), `result` the address returned (0 for `deallocate`) or why the
/// call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub op: Op,
    pub address: usize,
    pub size: usize,
    pub result: Result<usize, Failure>,
}

pub struct Tracing<A: BlockAllocator> {
    inner: A,
    events: Mutex<Vec<Event>>,
}

impl<A: BlockAllocator> Tracing<A> {
    pub fn new(inner: A) -> Self {
        Self {
            inner,
            events: Mutex::new(Vec::new()),
        }
    }

    pub fn inner(&self) -> &A {
        &self.inner
    }

    /// A copy of the events so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }

    pub fn clear(&self) {
        lock(&self.events).clear();
    }

    fn record(&self, op: Op, address: usize, size: usize, result: Result<usize, &AllocError>) {
        let result = result.map_err(Failure::of);
        lock(&self.events).push(Event {
            op,
            address,
            size,
            result,
        });
    }
}

// SAFETY: forwards every call to `A`, which keeps the promises; recording touches no block.
unsafe impl<A: BlockAllocator> BlockAllocator for Tracing<A> {
    fn allocate(&self, n: usize) -> Result<usize, AllocError> {
        let r = self.inner.allocate(n);
        let address = *r.as_ref().unwrap_or(&0);
        self.record(Op::Allocate, address, n, r.as_ref().copied());
        r
    }

    fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
        let r = self.inner.deallocate(p, n);
        self.record(Op::Deallocate, p, n, r.as_ref().map(|()| 0));
        r
    }

    fn reallocate(&self, p: usize, old: usize, new: usize) -> Result<usize, AllocError> {
        let r = self.inner.reallocate(p, old, new);
        self.record(
            Op::Reallocate { old_size: old },
            p,
            new,
            r.as_ref().copied(),
        );
        r
    }

    fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        self.inner.block_containing(addr)
    }

    fn pin(&self, start: usize) -> Result<(), AllocError> {
        self.inner.pin(start)
    }
    fn pin_spanning(&self, addr: usize, len: usize) -> Result<(usize, usize), AllocError> {
        self.inner.pin_spanning(addr, len)
    }

    fn unpin(&self, start: usize) {
        self.inner.unpin(start)
    }

    fn claim(&self, start: usize) -> Result<(), AllocError> {
        self.inner.claim(start)
    }

    fn unclaim(&self, start: usize) {
        self.inner.unclaim(start)
    }

    fn allocate_claimed(&self, n: usize) -> Result<usize, AllocError> {
        let r = self.inner.allocate_claimed(n);
        let address = *r.as_ref().unwrap_or(&0);
        self.record(Op::Allocate, address, n, r.as_ref().copied());
        r
    }

    fn deallocate_claimed(&self, p: usize, n: usize) -> Result<(), AllocError> {
        let r = self.inner.deallocate_claimed(p, n);
        self.record(Op::Deallocate, p, n, r.as_ref().map(|()| 0));
        r
    }

    fn alignment(&self) -> usize {
        self.inner.alignment()
    }

    fn equality_key(&self) -> usize {
        self.inner.equality_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sgi::first_level::MallocAlloc;
    use crate::sgi::params::Params;
    use crate::shared::SharedPool;
    use std::sync::Arc;

    #[test]
    fn records_every_call_in_order_failures_included() {
        let t = Tracing::new(MallocAlloc::new(None));
        let p = t.allocate(24).unwrap();
        let q = t.reallocate(p, 24, 100).unwrap();
        assert!(t.deallocate(q, 99).is_err());
        t.deallocate(q, 100).unwrap();
        let e = t.events();
        assert_eq!(e.len(), 4);
        assert_eq!(
            (e[0].op, e[0].address, e[0].size, e[0].result.clone()),
            (Op::Allocate, p, 24, Ok(p))
        );
        assert_eq!(
            (e[1].op, e[1].address, e[1].size, e[1].result.clone()),
            (Op::Reallocate { old_size: 24 }, p, 100, Ok(q))
        );
        let failure = e[2].result.clone().unwrap_err();
        assert_eq!(failure.kind, FailureKind::Misuse);
        assert!(failure.message.contains("holds 100 bytes"), "{failure:?}");
        assert_eq!(
            (e[3].op, e[3].address, e[3].result.clone()),
            (Op::Deallocate, q, Ok(0))
        );
        t.clear();
        assert!(t.events().is_empty());
    }

    #[test]
    fn failed_allocation_is_recorded_with_address_zero() {
        let t = Tracing::new(MallocAlloc::new(Some(10)));
        assert!(t.allocate(11).is_err());
        let e = &t.events()[0];
        assert_eq!((e.op, e.address, e.size), (Op::Allocate, 0, 11));
        assert_eq!(e.result.clone().unwrap_err().kind, FailureKind::OutOfMemory);
    }

    #[test]
    fn equal_to_its_inner_allocator_and_forwards_queries() {
        let pool: Arc<SharedPool> = Arc::new(
            SharedPool::new(Params::default(), 1 << 16, Arc::new(MallocAlloc::new(None))).unwrap(),
        );
        let t = Tracing::new(pool.clone());
        assert_eq!(t.equality_key(), pool.equality_key());
        let other = Tracing::new(MallocAlloc::new(None));
        assert_ne!(t.equality_key(), other.equality_key());
        let p = t.allocate(8).unwrap();
        assert_eq!(t.block_containing(p + 3), Some((p, 8)));
        let claimed = t.allocate_claimed(16).unwrap();
        assert!(matches!(
            pool.deallocate(claimed, 16),
            Err(AllocError::Claimed { .. })
        ));
        t.deallocate_claimed(claimed, 16).unwrap();
        t.pin(p).unwrap();
        assert!(matches!(
            pool.deallocate(p, 8),
            Err(AllocError::Pinned { .. })
        ));
        t.unpin(p);
        // A block of the tracing allocator is a block of the inner one, and back.
        pool.deallocate(p, 8).unwrap();
        let ops: Vec<Op> = t.events().iter().map(|e| e.op).collect();
        assert_eq!(
            ops,
            [Op::Allocate, Op::Allocate, Op::Deallocate],
            "only calls through the wrapper are recorded, a container's as plain ones"
        );
        assert_eq!(t.alignment(), 8);
    }
}
