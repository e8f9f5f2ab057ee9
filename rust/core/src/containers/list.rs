//! `std::list` over any [`BlockAllocator`]: a doubly linked list with one node per element,
//! each node ONE allocation of [`List::node_size`] bytes holding `prev`, `next` and the value
//! (24 bytes for 8-byte values), as libstdc++'s `_List_node`.
//!
//! Like libstdc++, the list keeps its ends in the list object itself (no allocated header
//! node), so a list of `n` elements owns exactly `n` blocks of the allocator.
//!
//! Invariants (checked by `check_invariants` in the tests):
//! - `len == |nodes reachable from head by next| == |nodes reachable from tail by prev|`;
//! - `head.prev == None`, `tail.next == None`, and `x.next.prev == x` for every node `x`;
//! - `head == None  <=>  tail == None  <=>  len == 0`;
//! - every node `x` is the start of a live block of the allocator of at least `node_size()`
//!   bytes: `alloc.block_containing(x) == Some((x, size))` with `size >= node_size()`;
//! - `generation` changes whenever nodes are linked, unlinked or relinked.
//!
//! Safety rests on the `BlockAllocator` contract: `allocate(n)` gives a fresh block of at
//! least `n` bytes, aligned to `alignment()`, that nobody else uses until `deallocate`.
//! Alignment and null are checked anyway, as they cost nothing.
//!
//! Every operation either completes or leaves the list as it was: nodes are allocated
//! before anything is linked, and a panicking comparison cannot leave a broken chain.
//!
//! No `&mut self` method frees a node (see [`super::retired`]): an unlinked node comes back
//! as an [`Unlinked`] (its value and its [`Retired`] block), or inside another list
//! (`take`, `extract_if`, `unique_by`), and its block is freed when that is dropped, by then
//! outside any lock the caller held. Only `Drop` of the list frees directly.

use super::retired::Retired;
use crate::block_allocator::BlockAllocator;
use crate::error::AllocError;
use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

type Link<T> = Option<NonNull<Node<T>>>;

/// The layout of a node: what each block of the allocator holds.
#[repr(C)]
struct Node<T> {
    prev: Link<T>,
    next: Link<T>,
    value: T,
}

/// Source of list identities, so that a [`Cursor`] is only ever honoured by its own list.
static NEXT_LIST_ID: AtomicU64 = AtomicU64::new(1);

pub struct List<T, A: BlockAllocator> {
    head: Link<T>,
    tail: Link<T>,
    len: usize,
    id: u64,
    generation: u64,
    alloc: A,
    /// The list owns its values (for drop check), through its nodes.
    _owns: PhantomData<T>,
}

// SAFETY: the list owns its nodes exclusively, as `std::collections::LinkedList` does; sending
// it sends the values and the allocator.
unsafe impl<T: Send, A: BlockAllocator + Send> Send for List<T, A> {}
// SAFETY: `&List` only gives out `&T` and `&A`.
unsafe impl<T: Sync, A: BlockAllocator + Sync> Sync for List<T, A> {}

/// Allocates a node from `alloc` and moves `value` into it, unlinked. Inlined: a frame of
/// its own cost `List.push_back` 25 of the 218 instructions it spent in the binding.
#[inline(always)]
fn alloc_node<T, A: BlockAllocator>(alloc: &A, value: T) -> Result<NonNull<Node<T>>, AllocError> {
    let size = size_of::<Node<T>>();
    let p = alloc.allocate_claimed(size)?;
    if p % align_of::<Node<T>>() != 0 {
        // The allocator broke its alignment promise: give the block back, refuse it.
        let _ = alloc.deallocate_claimed(p, size);
        return Err(AllocError::Misaligned {
            addr: p,
            align: align_of::<Node<T>>(),
        });
    }
    // Not `ok_or`: an error built on every call and dropped cost 20 instructions a push.
    let Some(node) = NonNull::new(p as *mut Node<T>) else {
        return Err(AllocError::OutOfMemory { size });
    };
    // SAFETY: `p` is a fresh block of at least `size` bytes, suitably aligned (checked), that
    // no one else uses (the allocator contract).
    unsafe {
        node.as_ptr().write(Node {
            prev: None,
            next: None,
            value,
        })
    };
    Ok(node)
}

/// Moves the value out of an unlinked node and frees its block; if the allocator refuses
/// the block, it is leaked (see [`super::retired`]).
///
/// # Safety
/// `node` must be an unlinked node allocated by `alloc_node` from `alloc`, not yet freed.
unsafe fn free_node<T, A: BlockAllocator>(alloc: &A, node: NonNull<Node<T>>) -> T {
    // SAFETY: per the caller.
    let (value, addr) = unsafe { take_value(node) };
    let _ = alloc.deallocate_claimed(addr, size_of::<Node<T>>());
    value
}

/// Moves the value out of an unlinked node, leaving its block (whose address comes back)
/// for the caller to free.
///
/// # Safety
/// `node` must be an initialised, unlinked node owned by the caller, never used again.
unsafe fn take_value<T>(node: NonNull<Node<T>>) -> (T, usize) {
    // SAFETY: the node is initialised and owned by the caller; its value is read once, and
    // the node is not touched again.
    let value = unsafe { std::ptr::read(&raw const (*node.as_ptr()).value) };
    (value, node.as_ptr() as usize)
}

/// A node taken out of a list: its value, and its block, freed when this is dropped (or
/// by [`Unlinked::into_value`]), which the caller does once it holds no lock.
#[must_use = "dropping an Unlinked frees its node, which may run the allocator's code: \
              keep it until the list is unlocked"]
pub struct Unlinked<T, A: BlockAllocator> {
    value: T,
    block: Retired<A>,
}

impl<T, A: BlockAllocator> Unlinked<T, A> {
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Frees the node and returns its value.
    #[inline(always)]
    pub fn into_value(self) -> T {
        self.block.free();
        self.value
    }

    /// [`Self::into_value`] with the node freed through the allocator's call-free path
    /// ([`BlockAllocator::try_deallocate_claimed`]), which calls nothing: `Err(self)`,
    /// unchanged, when that path does not take the block.
    #[inline(always)]
    pub fn try_into_value(mut self) -> Result<T, Self> {
        if !self.block.try_free() {
            return Err(self);
        }
        let Self { value, block } = self;
        // Emptied by `try_free`: forgetting it leaks nothing (dropping it was a call).
        std::mem::forget(block);
        Ok(value)
    }
}

/// A node allocated and filled but not yet in a list, so that a caller can allocate
/// outside whatever lock guards the list (the allocator may run an out-of-memory handler
/// that re-enters). Dropped unlinked, it frees itself.
pub struct Detached<'a, T, A: BlockAllocator> {
    node: NonNull<Node<T>>,
    alloc: &'a A,
}

impl<'a, T, A: BlockAllocator> Detached<'a, T, A> {
    #[inline]
    pub fn new(alloc: &'a A, value: T) -> Result<Self, AllocError> {
        Ok(Self {
            node: alloc_node(alloc, value)?,
            alloc,
        })
    }

    /// Gives up ownership of the node if `alloc` may free it; else hands itself back, to
    /// be freed where the caller sees fit.
    #[inline]
    fn into_node_for(self, alloc: &A) -> Result<NonNull<Node<T>>, Self> {
        if !self.alloc.same_as(alloc) {
            return Err(self);
        }
        let node = self.node;
        std::mem::forget(self);
        Ok(node)
    }
}

impl<T, A: BlockAllocator> fmt::Debug for Detached<'_, T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Detached({:p})", self.node)
    }
}

impl<T: fmt::Debug, A: BlockAllocator> fmt::Debug for Unlinked<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unlinked({:?}, {:?})", self.value, self.block)
    }
}

impl<T, A: BlockAllocator> Drop for Detached<'_, T, A> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a detached node is unlinked and owned by `self`, allocated from `alloc`.
        drop(unsafe { free_node(self.alloc, self.node) });
    }
}

/// A position in a list that outlives borrows of it (a Python iterator holds one). It is
/// honoured only by the list that made it and only while that list's structure is
/// unchanged: any link, unlink or relink makes it stale.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    list: u64,
    generation: u64,
    /// The node to yield next, 0 at the end.
    node: usize,
    backward: bool,
}

/// The list changed structure since the cursor was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleCursor;

impl<T, A: BlockAllocator> List<T, A> {
    pub fn new(alloc: A) -> Self {
        Self {
            head: None,
            tail: None,
            len: 0,
            id: NEXT_LIST_ID.fetch_add(1, Ordering::Relaxed),
            generation: 0,
            alloc,
            _owns: PhantomData,
        }
    }

    /// Bytes of one node: `prev`, `next`, value (with the value's padding).
    pub const fn node_size() -> usize {
        size_of::<Node<T>>()
    }

    pub fn allocator(&self) -> &A {
        &self.alloc
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Changes whenever nodes are linked, unlinked or relinked (not when a value is
    /// overwritten in place).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn touch(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    // ---- linking primitives: the only code that writes `prev`/`next` one by one ----

    /// Links the unlinked `node` before `at` (at the back when `at` is None).
    ///
    /// # Safety
    /// `node` must be an unlinked node this list may own; `at` None or a node of this list.
    #[inline]
    unsafe fn link_before(&mut self, at: Link<T>, node: NonNull<Node<T>>) {
        // SAFETY: `at` is None or a node of this list.
        let prev = unsafe { self.prev_of(at) };
        // SAFETY: `node` is exclusively ours.
        unsafe {
            (*node.as_ptr()).prev = prev;
            (*node.as_ptr()).next = at;
        }
        // SAFETY: `node` now points at `prev` and `at`, nodes of this list (or None).
        unsafe { self.attach(node) };
    }

    /// Writes a new node holding `value` into the fresh block `node`, linked between `prev`
    /// and `next`: its fields written once, links included (a node written unlinked and
    /// then linked had its links stored twice, both kept).
    ///
    /// # Safety
    /// `node` must be a fresh block of `node_size()` bytes, aligned for a node, that this
    /// list may own (freeable by its allocator); `prev` and `next` adjacent nodes of this
    /// list, as `attach` asks.
    #[inline(always)]
    unsafe fn link_new(&mut self, prev: Link<T>, next: Link<T>, node: NonNull<Node<T>>, value: T) {
        // SAFETY: `node` is a fresh block, ours, of a node's size and alignment.
        unsafe { node.as_ptr().write(Node { prev, next, value }) };
        // SAFETY: `node` points at `prev` and `next`, adjacent nodes of this list.
        unsafe { self.attach(node) };
    }

    /// The node a node linked before `at` follows: `at`'s `prev`, or the tail.
    ///
    /// # Safety
    /// `at` is None or a node of this list.
    #[inline(always)]
    unsafe fn prev_of(&self, at: Link<T>) -> Link<T> {
        match at {
            // SAFETY: `at` is a node of this list.
            Some(at) => unsafe { (*at.as_ptr()).prev },
            None => self.tail,
        }
    }

    /// Points the neighbours `node` names at it, completing its link.
    ///
    /// # Safety
    /// `node` is ours, unlinked, and its `prev` and `next` are adjacent nodes of this list
    /// (`prev` the tail when `next` is None, `next` the head when `prev` is None).
    #[inline(always)]
    unsafe fn attach(&mut self, node: NonNull<Node<T>>) {
        // SAFETY: per the caller, `node` is ours and its neighbours are nodes of this list.
        unsafe {
            let (prev, next) = ((*node.as_ptr()).prev, (*node.as_ptr()).next);
            match prev {
                Some(p) => (*p.as_ptr()).next = Some(node),
                None => self.head = Some(node),
            }
            match next {
                Some(a) => (*a.as_ptr()).prev = Some(node),
                None => self.tail = Some(node),
            }
        }
        self.len += 1;
        self.touch();
    }

    /// Unlinks `node` from this list and returns it, still allocated, its own links left as
    /// they were: every caller either links it again (`link_before` writes both) or frees
    /// it, so clearing them was two stores for nothing on every pop.
    ///
    /// # Safety
    /// `node` must be a node of this list.
    #[inline]
    unsafe fn unlink(&mut self, node: NonNull<Node<T>>) -> NonNull<Node<T>> {
        // SAFETY: `node` and its neighbours are nodes of this list.
        unsafe {
            let (prev, next) = ((*node.as_ptr()).prev, (*node.as_ptr()).next);
            match prev {
                Some(p) => (*p.as_ptr()).next = next,
                None => self.head = next,
            }
            match next {
                Some(n) => (*n.as_ptr()).prev = prev,
                None => self.tail = prev,
            }
        }
        self.len -= 1;
        self.touch();
        node
    }

    /// The node at `i < len`, walking from the nearer end.
    fn node_at(&self, i: usize) -> Option<NonNull<Node<T>>> {
        if i >= self.len {
            return None;
        }
        let mut node;
        // SAFETY: the walks stay within `len` nodes of this list (invariant).
        unsafe {
            if i < self.len / 2 {
                node = self.head?;
                for _ in 0..i {
                    node = (*node.as_ptr()).next?;
                }
            } else {
                node = self.tail?;
                for _ in i + 1..self.len {
                    node = (*node.as_ptr()).prev?;
                }
            }
        }
        Some(node)
    }

    /// Unlinks `node` and hands it back with its block still to free.
    ///
    /// # Safety
    /// `node` must be a node of this list.
    #[inline]
    unsafe fn erase(&mut self, node: NonNull<Node<T>>) -> Unlinked<T, A>
    where
        A: Clone,
    {
        let alloc = self.alloc.clone();
        // SAFETY: per the caller; `alloc` is our allocator.
        unsafe { self.erase_into(node, alloc) }
    }

    /// Unlinks `node` and hands it back, its block to be freed through `alloc`.
    ///
    /// # Safety
    /// `node` must be a node of this list; `alloc` a handle of this list's allocator.
    #[inline]
    unsafe fn erase_into<B: BlockAllocator>(
        &mut self,
        node: NonNull<Node<T>>,
        alloc: B,
    ) -> Unlinked<T, B> {
        // SAFETY: per the caller; once unlinked, the node is ours.
        let (value, addr) = unsafe { take_value(self.unlink(node)) };
        let block = Retired::block(alloc, addr, Self::node_size());
        Unlinked { value, block }
    }

    /// The node `end` picks (None on an empty list) unlinked, freed through `alloc` (a
    /// handle the caller keeps: no handle of the list's is cloned); an `alloc` unequal to
    /// the list's allocator is refused and nothing changes.
    #[inline]
    fn pop_in<'a>(
        &mut self,
        alloc: &'a A,
        end: fn(&Self) -> Link<T>,
    ) -> Result<Option<Unlinked<T, &'a A>>, AllocError> {
        if !alloc.same_as(&self.alloc) {
            return Err(AllocError::AllocatorMismatch);
        }
        let Some(node) = end(self) else {
            return Ok(None);
        };
        // SAFETY: `end` gives a node of this list; `alloc` may free it (checked).
        Ok(Some(unsafe { self.erase_into(node, alloc) }))
    }

    // ---- std::list operations ----

    pub fn push_back(&mut self, value: T) -> Result<(), AllocError> {
        let node = alloc_node(&self.alloc, value)?;
        // SAFETY: a fresh node from our allocator.
        unsafe { self.link_before(None, node) };
        Ok(())
    }

    pub fn push_front(&mut self, value: T) -> Result<(), AllocError> {
        let node = alloc_node(&self.alloc, value)?;
        // SAFETY: a fresh node from our allocator; `head` is None or a node of this list.
        unsafe { self.link_before(self.head, node) };
        Ok(())
    }

    /// Inserts `value` so that it becomes element `i`.
    ///
    /// # Panics
    /// If `i > len`.
    pub fn insert(&mut self, i: usize, value: T) -> Result<(), AllocError> {
        self.check_insert_index(i);
        let node = alloc_node(&self.alloc, value)?;
        // SAFETY: a fresh node from our allocator, linked at a valid position.
        unsafe { self.link_at(i, node) };
        Ok(())
    }

    fn check_insert_index(&self, i: usize) {
        assert!(
            i <= self.len,
            "insertion index {i} beyond length {}",
            self.len
        );
    }

    /// Links `node` so that it becomes element `i <= len`.
    ///
    /// # Safety
    /// As for `link_before`.
    unsafe fn link_at(&mut self, i: usize, node: NonNull<Node<T>>) {
        let at = self.node_at(i);
        // SAFETY: `at` is a node of this list, or None (i == len) to append.
        unsafe { self.link_before(at, node) };
    }

    /// [`Self::push_back`] with a node allocated beforehand. A node of an allocator unequal
    /// to this list's is refused: it comes back, unlinked, as the error.
    #[inline(always)]
    pub fn push_back_node<'a>(
        &mut self,
        node: Detached<'a, T, A>,
    ) -> Result<(), Detached<'a, T, A>> {
        let node = node.into_node_for(&self.alloc)?;
        // SAFETY: the node is unlinked and freeable by our allocator.
        unsafe { self.link_before(None, node) };
        Ok(())
    }

    #[inline(always)]
    pub fn push_front_node<'a>(
        &mut self,
        node: Detached<'a, T, A>,
    ) -> Result<(), Detached<'a, T, A>> {
        let node = node.into_node_for(&self.alloc)?;
        // SAFETY: as for `push_back_node`; `head` is None or a node of this list.
        unsafe { self.link_before(self.head, node) };
        Ok(())
    }

    /// [`Self::push_back`], or [`Self::push_front`] if `front`, in a block of the
    /// allocator's call-free path ([`BlockAllocator::try_allocate_claimed`]): calls nothing
    /// else, so a caller may hold a lock under which nothing may be called. `Err(value)`,
    /// the list unchanged, when that path has no block.
    #[inline(always)]
    pub fn try_push(&mut self, value: T, front: bool) -> Result<(), T> {
        let align = align_of::<Node<T>>();
        let Some(p) = self.alloc.try_allocate_claimed(Self::node_size(), align) else {
            return Err(value);
        };
        debug_assert!(p != 0 && p % align == 0);
        // SAFETY: the allocator's promise: a block of `node_size() > 0` bytes, so not 0.
        let node = unsafe { NonNull::new_unchecked(p as *mut Node<T>) };
        // The ends' neighbours are known: no `prev` to read (`prev_of`).
        let (prev, next) = if front {
            (None, self.head)
        } else {
            (self.tail, None)
        };
        // SAFETY: a fresh, claimed block of our allocator, of a node's size and (promised)
        // alignment, linked at an end.
        unsafe { self.link_new(prev, next, node, value) };
        Ok(())
    }

    /// [`Self::insert`] with a node allocated beforehand.
    ///
    /// # Panics
    /// If `i > len`.
    pub fn insert_node<'a>(
        &mut self,
        i: usize,
        node: Detached<'a, T, A>,
    ) -> Result<(), Detached<'a, T, A>> {
        self.check_insert_index(i);
        let node = node.into_node_for(&self.alloc)?;
        // SAFETY: the node is unlinked and freeable by our allocator; `i <= len`.
        unsafe { self.link_at(i, node) };
        Ok(())
    }

    #[inline]
    pub fn pop_back(&mut self) -> Option<Unlinked<T, A>>
    where
        A: Clone,
    {
        let tail = self.tail?;
        // SAFETY: `tail` is a node of this list.
        Some(unsafe { self.erase(tail) })
    }

    #[inline]
    pub fn pop_front(&mut self) -> Option<Unlinked<T, A>>
    where
        A: Clone,
    {
        let head = self.head?;
        // SAFETY: `head` is a node of this list.
        Some(unsafe { self.erase(head) })
    }

    /// [`Self::pop_back`], the node freed through `alloc`, a handle of the list's allocator
    /// that the caller keeps (so that a pop clones none); `AllocatorMismatch` for another.
    #[inline]
    pub fn pop_back_in<'a>(
        &mut self,
        alloc: &'a A,
    ) -> Result<Option<Unlinked<T, &'a A>>, AllocError> {
        self.pop_in(alloc, |l| l.tail)
    }

    /// [`Self::pop_front`], the node freed through `alloc`, as [`Self::pop_back_in`].
    #[inline]
    pub fn pop_front_in<'a>(
        &mut self,
        alloc: &'a A,
    ) -> Result<Option<Unlinked<T, &'a A>>, AllocError> {
        self.pop_in(alloc, |l| l.head)
    }

    /// Removes and returns element `i`, if there is one.
    pub fn remove_at(&mut self, i: usize) -> Option<Unlinked<T, A>>
    where
        A: Clone,
    {
        let node = self.node_at(i)?;
        // SAFETY: `node_at` returns nodes of this list.
        Some(unsafe { self.erase(node) })
    }

    pub fn front(&self) -> Option<&T> {
        // SAFETY: `head` is a node of this list, alive as long as `&self`.
        self.head.map(|n| unsafe { &(*n.as_ptr()).value })
    }

    pub fn back(&self) -> Option<&T> {
        // SAFETY: `tail` is a node of this list, alive as long as `&self`.
        self.tail.map(|n| unsafe { &(*n.as_ptr()).value })
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        // SAFETY: a node of this list, alive as long as `&self`.
        self.node_at(i).map(|n| unsafe { &(*n.as_ptr()).value })
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        // SAFETY: a node of this list, borrowed exclusively through `&mut self`.
        self.node_at(i).map(|n| unsafe { &mut (*n.as_ptr()).value })
    }

    /// Removes every element for which `pred` is true, visiting each once, front to back,
    /// and returns them, in order, as a list: no node is freed or allocated, so the caller
    /// decides when the values are dropped.
    pub fn extract_if(&mut self, mut pred: impl FnMut(&T) -> bool) -> Self
    where
        A: Clone,
    {
        let mut removed = Self::new(self.alloc.clone());
        let mut cur = self.head;
        while let Some(node) = cur {
            // SAFETY: `node` is a node of this list; we read its successor before moving it.
            let (next, hit) = unsafe { ((*node.as_ptr()).next, pred(&(*node.as_ptr()).value)) };
            if hit {
                // SAFETY: `node` is ours; `removed` has our allocator, so it may own it.
                unsafe {
                    let node = self.unlink(node);
                    removed.link_before(None, node);
                }
            }
            cur = next;
        }
        removed
    }

    /// C++20 `remove(value)`: removes every element equal to `value`; how many.
    pub fn remove(&mut self, value: &T) -> usize
    where
        T: PartialEq,
        A: Clone,
    {
        self.extract_if(|v| v == value).len()
    }

    /// `unique(eq)`: removes each element `eq` to the last element kept before it (so each
    /// run of equal neighbours keeps its first); returns the removed ones, in order.
    pub fn unique_by(&mut self, mut eq: impl FnMut(&T, &T) -> bool) -> Self
    where
        A: Clone,
    {
        let mut removed = Self::new(self.alloc.clone());
        let Some(mut kept) = self.head else {
            return removed;
        };
        // SAFETY: `kept` and `cur` are nodes of this list; `cur`'s successor is read before it
        // moves to `removed` (same allocator).
        unsafe {
            let mut cur = (*kept.as_ptr()).next;
            while let Some(node) = cur {
                cur = (*node.as_ptr()).next;
                if eq(&(*kept.as_ptr()).value, &(*node.as_ptr()).value) {
                    let node = self.unlink(node);
                    removed.link_before(None, node);
                } else {
                    kept = node;
                }
            }
        }
        removed
    }

    /// `unique()`: removes consecutive duplicates; how many.
    pub fn unique(&mut self) -> usize
    where
        T: PartialEq,
        A: Clone,
    {
        self.unique_by(|a, b| a == b).len()
    }

    /// Reverses the order by swapping every node's links.
    pub fn reverse(&mut self) {
        let mut cur = self.head;
        while let Some(node) = cur {
            // SAFETY: `node` is a node of this list; each is visited once (its old `next`,
            // now `prev`, leads on).
            unsafe {
                let n = &mut *node.as_ptr();
                std::mem::swap(&mut n.prev, &mut n.next);
                cur = n.prev;
            }
        }
        std::mem::swap(&mut self.head, &mut self.tail);
        self.touch();
    }

    /// Rotates `k` steps to the right (`deque.rotate(k)`; negative: to the left): the
    /// last `k mod len` values come first. Relinks the ring at one place, walking
    /// `min(s, len - s)` nodes to find it; no node is allocated or freed.
    pub fn rotate(&mut self, k: isize) {
        let len = self.len as isize;
        if len < 2 {
            return;
        }
        // The index of the node that becomes the head.
        let s = (len - k.rem_euclid(len)) % len;
        if s == 0 {
            return;
        }
        let (Some(old_head), Some(old_tail), Some(new_head)) =
            (self.head, self.tail, self.node_at(s as usize))
        else {
            unreachable!("a list of two or more nodes has ends and node s < len");
        };
        // SAFETY: all three are nodes of this list; `new_head` is not the head (s > 0), so
        // it has a `prev`. Closing the ring and opening it before `new_head` keeps every
        // `x.next.prev == x` and leaves one chain of the same `len` nodes.
        unsafe {
            let new_tail = (*new_head.as_ptr()).prev.expect("s > 0");
            (*old_tail.as_ptr()).next = Some(old_head);
            (*old_head.as_ptr()).prev = Some(old_tail);
            (*new_tail.as_ptr()).next = None;
            (*new_head.as_ptr()).prev = None;
            self.head = Some(new_head);
            self.tail = Some(new_tail);
        }
        self.touch();
    }

    /// Moves every node into a new list with the same allocator, leaving this one empty;
    /// O(1).
    pub fn take(&mut self) -> Self
    where
        A: Clone,
    {
        let mut taken = Self::new(self.alloc.clone());
        taken.head = self.head.take();
        taken.tail = self.tail.take();
        taken.len = std::mem::take(&mut self.len);
        self.touch();
        taken
    }

    /// `splice(end(), other)`: moves all of `other`'s nodes to the back of this list in
    /// O(1), leaving `other` empty. The allocators must be equal (else nothing changes).
    pub fn splice(&mut self, other: &mut Self) -> Result<(), AllocError> {
        if !self.alloc.same_as(&other.alloc) {
            return Err(AllocError::AllocatorMismatch);
        }
        let (Some(first), Some(last)) = (other.head.take(), other.tail.take()) else {
            return Ok(());
        };
        // SAFETY: `first`/`last` are the ends of `other`'s chain, now detached from it; our
        // tail is a node of this list.
        unsafe {
            (*first.as_ptr()).prev = self.tail;
            match self.tail {
                Some(t) => (*t.as_ptr()).next = Some(first),
                None => self.head = Some(first),
            }
        }
        self.tail = Some(last);
        self.len += std::mem::take(&mut other.len);
        self.touch();
        other.touch();
        Ok(())
    }

    /// Merges the sorted `other` into this sorted list by relinking: afterwards this list is
    /// sorted by `less` and `other` is empty; equal elements keep this list's first (stable).
    /// It calls `less(other's first, this list's current)` in the order of the textbook
    /// merge, so a caller may replay decisions made beforehand.
    pub fn merge_by(
        &mut self,
        other: &mut Self,
        mut less: impl FnMut(&T, &T) -> bool,
    ) -> Result<(), AllocError> {
        if !self.alloc.same_as(&other.alloc) {
            return Err(AllocError::AllocatorMismatch);
        }
        self.touch();
        other.touch();
        let mut cur = self.head;
        while let Some(first) = other.head {
            let Some(at) = cur else {
                return self.splice(other);
            };
            // SAFETY: `first` is a node of `other`, `at` of this list; moving a node keeps both
            // lists consistent at every step, even if `less` panics.
            unsafe {
                if less(&(*first.as_ptr()).value, &(*at.as_ptr()).value) {
                    let node = other.unlink(first);
                    self.link_before(Some(at), node);
                } else {
                    cur = (*at.as_ptr()).next;
                }
            }
        }
        Ok(())
    }

    pub fn merge(&mut self, other: &mut Self) -> Result<(), AllocError>
    where
        T: Ord,
    {
        self.merge_by(other, |a, b| a < b)
    }

    /// Stable sort by `less`: a bottom-up merge sort on the links (Tatham's), O(n log n)
    /// comparisons, nothing allocated, every node relinked in place.
    ///
    /// While it runs the chain is held outside the list, so if `less` panics the list is
    /// left empty and its nodes leaked, never half-linked.
    pub fn sort_by(&mut self, mut less: impl FnMut(&T, &T) -> bool) {
        if self.len < 2 {
            return;
        }
        self.touch();
        let len = std::mem::take(&mut self.len);
        let head = self.head.take();
        self.tail = None;
        // SAFETY: the chain from `head` holds exactly our `len` nodes; only `next` links are
        // used while sorting, and `prev` links are rebuilt by `relink_prev`.
        unsafe {
            let head = merge_sort_chain(head, &mut less);
            self.relink_prev(head);
        }
        self.len = len;
    }

    pub fn sort(&mut self)
    where
        T: Ord,
    {
        self.sort_by(|a, b| a < b)
    }

    /// Makes `head` this list's chain, setting every `prev` link and the tail from the
    /// `next` links.
    ///
    /// # Safety
    /// `head` must start a None-terminated `next` chain of this list's nodes.
    unsafe fn relink_prev(&mut self, head: Link<T>) {
        self.head = head;
        let mut prev = None;
        let mut cur = head;
        while let Some(node) = cur {
            // SAFETY: `node` is in the chain (caller's guarantee).
            unsafe {
                (*node.as_ptr()).prev = prev;
                cur = (*node.as_ptr()).next;
            }
            prev = Some(node);
        }
        self.tail = prev;
    }

    /// Relinks the nodes so that element `k` becomes the old element `order[k]`: how a
    /// caller applies a sort computed elsewhere (from keys, or by Python comparisons).
    ///
    /// # Panics
    /// If `order` is not a permutation of `0..len` (the list is then unchanged).
    pub fn reorder(&mut self, order: &[usize]) {
        let nodes: Vec<NonNull<Node<T>>> = self.nodes().collect();
        assert!(
            is_permutation(order, nodes.len()),
            "not a permutation of 0..{}",
            nodes.len()
        );
        for (k, &i) in order.iter().enumerate() {
            let next = order.get(k + 1).map(|&j| nodes[j]);
            // SAFETY: every `nodes[i]` is a node of this list; each gets its `next` once.
            unsafe { (*nodes[i].as_ptr()).next = next };
        }
        // SAFETY: the `next` links now chain all our nodes in the new order, None-terminated.
        unsafe { self.relink_prev(order.first().map(|&i| nodes[i])) };
        self.touch();
    }

    // ---- inspection ----

    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            front: self.head,
            back: self.tail,
            len: self.len,
            _list: PhantomData,
        }
    }

    fn nodes(&self) -> impl Iterator<Item = NonNull<Node<T>>> + '_ {
        // SAFETY: walking `next` links from `head` visits exactly our nodes.
        std::iter::successors(self.head, |n| unsafe { (*n.as_ptr()).next })
    }

    /// The address of every node (its block), in list order.
    pub fn node_addresses(&self) -> Vec<usize> {
        self.nodes().map(|n| n.as_ptr() as usize).collect()
    }

    /// A cursor at the front (or, `backward`, at the back) of this list.
    pub fn cursor(&self, backward: bool) -> Cursor {
        let start = if backward { self.tail } else { self.head };
        Cursor {
            list: self.id,
            generation: self.generation,
            node: start.map_or(0, |n| n.as_ptr() as usize),
            backward,
        }
    }

    /// The element under `cursor`, moving it on; None at the end.
    pub fn advance(&self, cursor: &mut Cursor) -> Result<Option<&T>, StaleCursor> {
        if cursor.list != self.id || cursor.generation != self.generation {
            return Err(StaleCursor);
        }
        let Some(node) = NonNull::new(cursor.node as *mut Node<T>) else {
            return Ok(None);
        };
        // SAFETY: the cursor was made by this list and nothing was unlinked since, so `node`
        // is still one of its nodes.
        let n = unsafe { &*node.as_ptr() };
        let step = if cursor.backward { n.prev } else { n.next };
        cursor.node = step.map_or(0, |s| s.as_ptr() as usize);
        Ok(Some(&n.value))
    }
}

fn is_permutation(order: &[usize], n: usize) -> bool {
    let mut seen = vec![false; n];
    order.len() == n
        && order
            .iter()
            .all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
}

/// Tatham's bottom-up merge sort of a None-terminated `next` chain: merges runs of 1, 2,
/// 4, … until one pass makes a single merge. Stable: on ties the left run goes first.
/// Returns the new head; `prev` links are left stale.
///
/// # Safety
/// `head` must start a None-terminated chain of valid nodes owned by the caller.
unsafe fn merge_sort_chain<T>(mut head: Link<T>, less: &mut impl FnMut(&T, &T) -> bool) -> Link<T> {
    let next = |n: NonNull<Node<T>>| {
        // SAFETY: every node reached is in the caller's chain.
        unsafe { (*n.as_ptr()).next }
    };
    let mut run = 1usize;
    loop {
        let mut p = head.take();
        let mut tail: Link<T> = None;
        let mut merges = 0;
        while p.is_some() {
            merges += 1;
            let (mut q, mut psize) = (p, 0);
            while psize < run && q.is_some() {
                psize += 1;
                q = q.and_then(next);
            }
            let mut qsize = run;
            while psize > 0 || (qsize > 0 && q.is_some()) {
                let take_q = match (psize, q) {
                    (0, _) => true,
                    (_, None) => false,
                    _ if qsize == 0 => false,
                    // SAFETY: `p` and `q` are nodes of the chain (both runs non-empty here).
                    (_, Some(qn)) => unsafe {
                        less(&(*qn.as_ptr()).value, &(*p.unwrap().as_ptr()).value)
                    },
                };
                let e = if take_q {
                    qsize -= 1;
                    let e = q.unwrap();
                    q = next(e);
                    e
                } else {
                    psize -= 1;
                    let e = p.unwrap();
                    p = next(e);
                    e
                };
                match tail {
                    // SAFETY: `t` is a node of the chain already placed in the output.
                    Some(t) => unsafe { (*t.as_ptr()).next = Some(e) },
                    None => head = Some(e),
                }
                tail = Some(e);
            }
            p = q;
        }
        if let Some(t) = tail {
            // SAFETY: `t` is the last node of the output chain.
            unsafe { (*t.as_ptr()).next = None };
        }
        if merges <= 1 {
            return head;
        }
        run *= 2;
    }
}

impl<T, A: BlockAllocator> Drop for List<T, A> {
    fn drop(&mut self) {
        while let Some(head) = self.head {
            // SAFETY: `head` is a node of this list; once unlinked it is ours to free.
            drop(unsafe {
                let node = self.unlink(head);
                free_node(&self.alloc, node)
            });
        }
    }
}

impl<T: fmt::Debug, A: BlockAllocator> fmt::Debug for List<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterates a list from either end.
pub struct Iter<'a, T> {
    front: Link<T>,
    back: Link<T>,
    len: usize,
    _list: PhantomData<&'a T>,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        if self.len == 0 {
            return None;
        }
        let node = self.front?;
        self.len -= 1;
        // SAFETY: `node` is one of the `len` nodes not yet yielded, alive while the list is
        // borrowed for `'a`.
        unsafe {
            self.front = (*node.as_ptr()).next;
            Some(&(*node.as_ptr()).value)
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl<'a, T> DoubleEndedIterator for Iter<'a, T> {
    fn next_back(&mut self) -> Option<&'a T> {
        if self.len == 0 {
            return None;
        }
        let node = self.back?;
        self.len -= 1;
        // SAFETY: as in `next`, from the other end.
        unsafe {
            self.back = (*node.as_ptr()).prev;
            Some(&(*node.as_ptr()).value)
        }
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

impl<'a, T, A: BlockAllocator> IntoIterator for &'a List<T, A> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

#[cfg(test)]
mod call_free_tests;
#[cfg(test)]
mod tests;
