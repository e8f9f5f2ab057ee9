//! `Vector<T, A>`: `std::vector<T, A>` of SGI STL / libstdc++ over any [`BlockAllocator`].
//!
//! The elements live in one block of `capacity * size_of::<T>()` bytes from the allocator.
//! Growth follows libstdc++'s `_M_check_len`: when `k` more elements do not fit, the new
//! capacity is `size + max(size, k)` (so `push` goes 0, 1, 2, 4, 8, …). Each growth
//! allocates the new block, moves the elements (a bitwise copy), then deallocates the old
//! block: the call sequence a tracing allocator sees from C++. The deallocation is the
//! caller's: the old block comes back as a [`Retired`] (see [`super::retired`]), freed when
//! the caller drops it, so that no method of a vector runs its allocator's `deallocate`.
//!
//! Invariants (checked by `check_invariants` in the tests):
//! - `len <= cap`;
//! - `cap == 0  ⇔  ptr == null`;
//! - `cap > 0  ⇒  alloc.block_containing(ptr) == Some((ptr, s))` with
//!   `s >= cap * size_of::<T>()`: the storage is the live block allocated for `cap` elements;
//! - the elements `[0, len)` are initialized and owned by the vector; `[len, cap)` are not.
//!
//! Strong guarantee: every operation that can fail allocates before it changes anything,
//! so an `AllocError` leaves the vector as it was.
//!
//! A caller that must not hold its own lock while the allocator runs (an out-of-memory
//! handler or a Python allocator may re-enter it) grows in three steps:
//! [`Vector::grown_capacity`] with the lock, [`Storage::allocate`] without it,
//! [`Vector::adopt`] with it again, and drops what `adopt` retires once unlocked.

use super::retired::Retired;
use crate::block_allocator::BlockAllocator;
use crate::error::AllocError;
use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop};
use std::ops::{Deref, DerefMut, Range};
use std::ptr::{self, NonNull};

/// Bytes of storage for `cap` elements of `T`.
fn bytes_for<T>(cap: usize) -> Result<usize, AllocError> {
    cap.checked_mul(mem::size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or(AllocError::TooLarge { size: usize::MAX })
}

/// A block for `cap` elements of `T`, allocated ahead of [`Vector::adopt`]. Freed when
/// dropped unless a vector adopted it.
#[must_use = "a Storage is freed when dropped; pass it to Vector::adopt"]
pub struct Storage<T, A: BlockAllocator> {
    block: Retired<A>,
    addr: usize,
    cap: usize,
    _elems: PhantomData<T>,
}

impl<T, A: BlockAllocator> Storage<T, A> {
    /// A block of `cap * size_of::<T>()` bytes from `alloc` (none for `cap == 0`).
    pub fn allocate(alloc: A, cap: usize) -> Result<Self, AllocError> {
        let bytes = bytes_for::<T>(cap)?;
        let addr = alloc.allocate_claimed(bytes)?;
        Ok(Self {
            block: Retired::block(alloc, addr, bytes),
            addr,
            cap,
            _elems: PhantomData,
        })
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }
}

/// `std::vector<T, A>`: see the module documentation for its rules and invariants.
pub struct Vector<T, A: BlockAllocator> {
    /// The storage block, null when `cap == 0`.
    ptr: *mut T,
    len: usize,
    cap: usize,
    alloc: A,
    _owns: PhantomData<T>,
}

// SAFETY: the vector owns its elements and its block alone; sending it sends them, which
// is sound when `T` and the allocator handle may be sent.
unsafe impl<T: Send, A: BlockAllocator> Send for Vector<T, A> {}
// SAFETY: through `&Vector` only `&[T]` is reachable, which may be shared when `T: Sync`.
unsafe impl<T: Sync, A: BlockAllocator> Sync for Vector<T, A> {}

impl<T, A: BlockAllocator> Vector<T, A> {
    /// The element size, checked at compile time: zero-sized elements need no storage, and
    /// a vector of them could not say where its storage lives.
    const ELEM: usize = {
        assert!(
            mem::size_of::<T>() != 0,
            "Vector needs elements of non-zero size"
        );
        mem::size_of::<T>()
    };

    /// An empty vector (no storage) over `alloc`.
    ///
    /// # Panics
    /// If `T` needs a larger alignment than `alloc` promises.
    pub fn new_in(alloc: A) -> Self {
        assert!(
            mem::align_of::<T>() <= alloc.alignment(),
            "elements need {}-byte alignment; the allocator promises {}",
            mem::align_of::<T>(),
            alloc.alignment()
        );
        let _ = Self::ELEM;
        Self {
            ptr: ptr::null_mut(),
            len: 0,
            cap: 0,
            alloc,
            _owns: PhantomData,
        }
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

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The storage address (`data()` in C++); 0 when there is no storage.
    pub fn data(&self) -> usize {
        self.ptr as usize
    }

    /// Bytes of the storage block, `capacity * size_of::<T>()`.
    pub fn storage_bytes(&self) -> usize {
        self.cap * Self::ELEM
    }

    /// The capacity that replacing `removed` elements by `inserted` ones grows to, or `None`
    /// when they fit. As C++ would do it (erase, then insert): with `base = len - removed`,
    /// `base + max(base, inserted)` (libstdc++ `_M_check_len`).
    pub fn grown_capacity(
        &self,
        removed: usize,
        inserted: usize,
    ) -> Result<Option<usize>, AllocError> {
        let base = self.len - removed.min(self.len);
        if inserted <= self.cap - base {
            return Ok(None);
        }
        let cap = base
            .checked_add(base.max(inserted))
            .ok_or(AllocError::TooLarge { size: usize::MAX })?;
        bytes_for::<T>(cap)?;
        Ok(Some(cap))
    }

    /// `push_back(x)` if there is room; `x` back otherwise. Never allocates.
    #[inline]
    pub fn push_within_capacity(&mut self, x: T) -> Result<(), T> {
        if self.len == self.cap {
            return Err(x);
        }
        // SAFETY: `len < cap`, so slot `len` is inside the block and uninitialized.
        unsafe { self.ptr.add(self.len).write(x) };
        self.len += 1;
        Ok(())
    }

    /// `pop_back()`, returning the element.
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot `len` (the old last) is initialized and now outside `[0, len)`, so
        // it is read exactly once.
        Some(unsafe { self.ptr.add(self.len).read() })
    }

    /// Removes and returns the element at `i`, shifting the rest down.
    ///
    /// # Panics
    /// If `i >= len`.
    pub fn remove(&mut self, i: usize) -> T {
        assert!(i < self.len, "remove index {i} beyond len {}", self.len);
        // SAFETY: slot `i` is initialized; it is read once, then overwritten by the shift of
        // `[i+1, len)`, after which `len` drops by one.
        unsafe {
            let at = self.ptr.add(i);
            let x = at.read();
            ptr::copy(at.add(1), at, self.len - i - 1);
            self.len -= 1;
            x
        }
    }

    /// Removes the elements in `range` and returns them, keeping the capacity.
    pub fn drain(&mut self, range: Range<usize>) -> Vec<T> {
        self.check_range(&range);
        self.replace(range, Vec::new())
    }

    /// `erase(first, last)`, keeping the capacity. Elements whose drop does something (they
    /// own resources) come back, for the caller to drop when it sees fit; the others are
    /// dropped in place, and nothing is allocated for them.
    #[must_use = "the removed elements are dropped with the returned Vec"]
    pub fn erase(&mut self, range: Range<usize>) -> Vec<T> {
        if mem::needs_drop::<T>() {
            return self.drain(range);
        }
        self.check_range(&range);
        let tail = self.len - range.end;
        // SAFETY: `[start, end)` holds elements without drop glue, so they are simply
        // abandoned; the initialized tail moves down into place.
        unsafe {
            ptr::copy(self.ptr.add(range.end), self.ptr.add(range.start), tail);
        }
        self.len = range.start + tail;
        Vec::new()
    }

    /// Removes the elements from `n` on (nothing if `n >= len`), as [`Self::erase`].
    #[must_use = "the removed elements are dropped with the returned Vec"]
    pub fn truncate(&mut self, n: usize) -> Vec<T> {
        if n < self.len {
            self.erase(n..self.len)
        } else {
            Vec::new()
        }
    }

    /// `clear()`: removes every element, as [`Self::erase`], keeping the capacity.
    #[must_use = "the removed elements are dropped with the returned Vec"]
    pub fn clear(&mut self) -> Vec<T> {
        self.truncate(0)
    }

    fn check_range(&self, range: &Range<usize>) {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "range {range:?} not inside a vector of {} elements",
            self.len
        );
    }

    /// Replaces `range` by `items` in place; the caller made room for them.
    fn replace(&mut self, range: Range<usize>, items: Vec<T>) -> Vec<T> {
        let (start, end, k) = (range.start, range.end, items.len());
        let tail = self.len - end;
        debug_assert!(start + k + tail <= self.cap);
        // Allocated before anything moves, so a failure here changes nothing.
        let mut removed = Vec::with_capacity(range.len());
        let mut items = ManuallyDrop::new(items);
        // SAFETY: `[start, end)` is initialized and is moved into `removed`'s buffer (room
        // reserved above); the tail then moves to `start + k`, inside the block because
        // `start + k + tail <= cap`; the `k` items are moved in after it and `items` is
        // never dropped, so each element has exactly one owner throughout.
        unsafe {
            let at = self.ptr.add(start);
            ptr::copy_nonoverlapping(at, removed.as_mut_ptr(), range.len());
            removed.set_len(range.len());
            ptr::copy(self.ptr.add(end), at.add(k), tail);
            ptr::copy_nonoverlapping(items.as_ptr(), at, k);
            items.set_len(0);
            ManuallyDrop::drop(&mut items);
        }
        self.len = start + k + tail;
        removed
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        assert!(self.len <= self.cap, "len <= cap");
        assert_eq!(
            self.cap == 0,
            self.ptr.is_null(),
            "cap == 0 <=> ptr == null"
        );
        if self.cap > 0 {
            let (start, size) = self
                .alloc
                .block_containing(self.data())
                .expect("storage is a live block");
            assert_eq!(start, self.data(), "storage starts its block");
            assert!(size >= self.storage_bytes(), "the block holds cap elements");
        }
    }
}

/// The operations that may move the storage: each hands the old block back as a
/// [`Retired`] (empty when nothing moved), so they need an allocator handle to give it.
impl<T, A: BlockAllocator + Clone> Vector<T, A> {
    /// A vector with storage for exactly `cap` elements.
    pub fn with_capacity_in(cap: usize, alloc: A) -> Result<Self, AllocError> {
        let mut v = Self::new_in(alloc);
        // A new vector has no storage to retire.
        v.reserve(cap)?.forget();
        Ok(v)
    }

    /// Moves the elements into `storage` (allocated without holding the caller's lock). On
    /// success the old block comes back retired; on error (`storage` is not a live block of
    /// this vector's allocator big enough for the elements) nothing changes and `storage`
    /// itself comes back retired.
    pub fn adopt(&mut self, storage: Storage<T, A>) -> (Retired<A>, Result<(), AllocError>) {
        let (addr, cap) = (storage.addr, storage.cap);
        if cap < self.len {
            let why = format!("storage for {cap} elements cannot hold {}", self.len);
            return (storage.block, Err(AllocError::InvalidParameter(why)));
        }
        if cap > 0 {
            let bytes = cap * Self::ELEM;
            let fits = self
                .alloc
                .block_containing(addr)
                .is_some_and(|(start, size)| {
                    start == addr && size >= bytes && addr % mem::align_of::<T>() == 0
                });
            if !fits {
                return (
                    storage.block,
                    Err(AllocError::OutOfBlock { addr, len: bytes }),
                );
            }
        }
        (self.move_to(storage), Ok(()))
    }

    /// Moves the elements into `storage` (a live block of this vector's allocator of
    /// `cap >= len` elements) and returns the old block, retired.
    fn move_to(&mut self, storage: Storage<T, A>) -> Retired<A> {
        debug_assert!(storage.cap >= self.len);
        let new = storage.addr as *mut T;
        if self.len > 0 {
            // SAFETY: the old block holds `len` initialized elements; the new one is a
            // distinct live block with room for `cap >= len` (allocated, never shared).
            unsafe { ptr::copy_nonoverlapping(self.ptr, new, self.len) };
        }
        storage.block.forget();
        let old = Retired::block(self.alloc.clone(), self.ptr as usize, self.cap * Self::ELEM);
        self.ptr = new;
        self.cap = storage.cap;
        old
    }

    /// Allocates storage for exactly `cap` elements and moves there.
    fn relocate(&mut self, cap: usize) -> Result<Retired<A>, AllocError> {
        let storage = Storage::allocate(self.alloc.clone(), cap)?;
        Ok(self.move_to(storage))
    }

    fn grow_for(&mut self, removed: usize, inserted: usize) -> Result<Retired<A>, AllocError> {
        match self.grown_capacity(removed, inserted)? {
            Some(cap) => self.relocate(cap),
            None => Ok(Retired::none()),
        }
    }

    /// `reserve(n)`: grows the storage to exactly `n` elements if it is smaller.
    pub fn reserve(&mut self, n: usize) -> Result<Retired<A>, AllocError> {
        if n > self.cap {
            self.relocate(n)
        } else {
            Ok(Retired::none())
        }
    }

    /// `shrink_to_fit()`: moves to storage of exactly `len` elements; none when empty.
    pub fn shrink_to_fit(&mut self) -> Result<Retired<A>, AllocError> {
        if self.cap > self.len {
            self.relocate(self.len)
        } else {
            Ok(Retired::none())
        }
    }

    /// `push_back(x)`, growing to `max(1, 2*len)` when full. On error `x` is dropped.
    pub fn push(&mut self, x: T) -> Result<Retired<A>, AllocError> {
        let old = self.grow_for(0, 1)?;
        self.push_within_capacity(x)
            .map_err(|_| unreachable!("room was made"))?;
        Ok(old)
    }

    /// Inserts `x` before position `i`, growing as `push` does.
    ///
    /// # Panics
    /// If `i > len`.
    pub fn insert(&mut self, i: usize, x: T) -> Result<Retired<A>, AllocError> {
        assert!(i <= self.len, "insert index {i} beyond len {}", self.len);
        let old = self.grow_for(0, 1)?;
        // SAFETY: `len < cap` after growing; shifting `[i, len)` up by one stays inside the
        // block, and slot `i` is then written before it is read.
        unsafe {
            let at = self.ptr.add(i);
            ptr::copy(at, at.add(1), self.len - i);
            at.write(x);
        }
        self.len += 1;
        Ok(old)
    }

    /// Replaces the elements in `range` by `items` (C++: erase, then insert), returning the
    /// removed ones. Grows by `grown_capacity(range.len(), items.len())` first, so an error
    /// changes nothing.
    ///
    /// # Panics
    /// If `range` is not inside `[0, len]`.
    pub fn splice(
        &mut self,
        range: Range<usize>,
        items: Vec<T>,
    ) -> Result<(Vec<T>, Retired<A>), AllocError> {
        self.check_range(&range);
        let old = self.grow_for(range.len(), items.len())?;
        Ok((self.replace(range, items), old))
    }

    /// Appends `items`, growing once by `grown_capacity(0, items.len())`.
    pub fn extend_from_vec(&mut self, items: Vec<T>) -> Result<Retired<A>, AllocError> {
        let end = self.len;
        // Nothing is removed from the end.
        self.splice(end..end, items).map(|(_, old)| old)
    }

    /// `resize(n)`: truncates (as [`Self::truncate`]), or appends elements made by `fill`,
    /// growing once by `grown_capacity(0, n - len)`.
    pub fn resize_with(
        &mut self,
        n: usize,
        mut fill: impl FnMut() -> T,
    ) -> Result<(Vec<T>, Retired<A>), AllocError> {
        if n <= self.len {
            return Ok((self.truncate(n), Retired::none()));
        }
        let old = self.grow_for(0, n - self.len)?;
        while self.len < n {
            // Written one by one, so a panicking `fill` leaves a consistent vector.
            let _ = self.push_within_capacity(fill());
        }
        Ok((Vec::new(), old))
    }
}

impl<T, A: BlockAllocator> Deref for Vector<T, A> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        let p = NonNull::new(self.ptr).unwrap_or(NonNull::dangling());
        // SAFETY: `[0, len)` is initialized (dangling is fine for `len == 0`), and `&self`
        // keeps it from changing for the borrow's lifetime.
        unsafe { std::slice::from_raw_parts(p.as_ptr(), self.len) }
    }
}

impl<T, A: BlockAllocator> DerefMut for Vector<T, A> {
    fn deref_mut(&mut self) -> &mut [T] {
        let p = NonNull::new(self.ptr).unwrap_or(NonNull::dangling());
        // SAFETY: as in `deref`, and `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), self.len) }
    }
}

impl<T, A: BlockAllocator> Drop for Vector<T, A> {
    fn drop(&mut self) {
        let len = mem::replace(&mut self.len, 0);
        if len > 0 {
            // SAFETY: `[0, len)` is initialized and, with `len` now 0, owned by nobody else;
            // a panicking destructor leaks the rest rather than dropping anything twice.
            unsafe { ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.ptr, len)) };
        }
        if self.cap > 0 {
            // The block is claimed: only this vector can free it.
            let _ = self
                .alloc
                .deallocate_claimed(self.ptr as usize, self.cap * Self::ELEM);
        }
    }
}

impl<T: std::fmt::Debug, A: BlockAllocator> std::fmt::Debug for Vector<T, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sgi::first_level::MallocAlloc;
    use crate::sgi::params::Params;
    use crate::shared::SharedPool;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    fn pool() -> Arc<SharedPool> {
        let upstream = Arc::new(MallocAlloc::new(None));
        Arc::new(SharedPool::new(Params::default(), 1 << 20, upstream).unwrap())
    }

    /// Every block of `pool` live now: `(pool blocks, their bytes, large blocks, bytes)`.
    fn live(pool: &SharedPool) -> (usize, usize, usize, usize) {
        let s = pool.stats();
        (
            s.live_blocks,
            s.live_bytes,
            s.large_live_blocks,
            s.large_live_bytes,
        )
    }

    /// What the pool must hold for a vector of `u64` with capacity `cap`: its one block.
    fn expected_live(cap: usize) -> (usize, usize, usize, usize) {
        match cap * 8 {
            0 => (0, 0, 0, 0),
            b if b <= 128 => (1, b, 0, 0),
            b => (0, 0, 1, b),
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Allocate(usize),
        Deallocate(usize),
    }

    /// Records the sizes of allocator calls, the way a tracing allocator would.
    struct Recorder {
        inner: MallocAlloc,
        calls: Mutex<Vec<Call>>,
    }

    impl Recorder {
        fn new(limit: Option<usize>) -> Arc<Self> {
            Arc::new(Self {
                inner: MallocAlloc::new(limit),
                calls: Mutex::default(),
            })
        }
        fn take(&self) -> Vec<Call> {
            std::mem::take(&mut self.calls.lock().unwrap())
        }
    }

    // SAFETY: forwards to a real allocator, recording the calls.
    unsafe impl BlockAllocator for Recorder {
        fn allocate(&self, n: usize) -> Result<usize, AllocError> {
            self.calls.lock().unwrap().push(Call::Allocate(n));
            self.inner.allocate(n)
        }
        fn deallocate(&self, p: usize, n: usize) -> Result<(), AllocError> {
            self.calls.lock().unwrap().push(Call::Deallocate(n));
            self.inner.deallocate(p, n)
        }
        fn reallocate(&self, _: usize, _: usize, _: usize) -> Result<usize, AllocError> {
            unreachable!("a vector never reallocates in place")
        }
        fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
            self.inner.block_containing(addr)
        }
        fn pin(&self, start: usize) -> Result<(), AllocError> {
            self.inner.pin(start)
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
        fn alignment(&self) -> usize {
            16
        }
    }

    #[test]
    fn push_doubles_and_each_growth_allocates_moves_then_frees() {
        let rec = Recorder::new(None);
        let mut v = Vector::new_in(rec.clone());
        let mut caps = vec![];
        for i in 0..9u64 {
            drop(v.push(i).unwrap());
            caps.push(v.capacity());
            v.check_invariants();
        }
        assert_eq!(caps, [1, 2, 4, 4, 8, 8, 8, 8, 16]);
        use Call::*;
        assert_eq!(
            rec.take(),
            [
                Allocate(8),
                Allocate(16),
                Deallocate(8),
                Allocate(32),
                Deallocate(16),
                Allocate(64),
                Deallocate(32),
                Allocate(128),
                Deallocate(64)
            ]
        );
        assert_eq!(&v[..], (0..9).collect::<Vec<_>>());
        drop(v);
        assert_eq!(rec.take(), [Deallocate(128)]);
        assert_eq!(rec.inner.stats().live_blocks, 0);
    }

    #[test]
    fn inserting_k_at_once_grows_to_size_plus_max_size_k() {
        let p = pool();
        let mut v = Vector::new_in(p.clone());
        drop(v.extend_from_vec(vec![1u64, 2, 3]).unwrap());
        assert_eq!(v.capacity(), 3);
        drop(v.extend_from_vec(vec![4, 5]).unwrap()); // 3 + max(3, 2)
        assert_eq!(v.capacity(), 6);
        drop(v.extend_from_vec((0..10).collect()).unwrap()); // 5 + max(5, 10)
        assert_eq!((v.len(), v.capacity()), (15, 15));
        drop(v.push(0).unwrap()); // 15 + max(15, 1)
        assert_eq!(v.capacity(), 30);
        drop(v.resize_with(70, || 7).unwrap()); // 16 + max(16, 54)
        assert_eq!(v.capacity(), 70);
        assert_eq!(live(&p), expected_live(70));
        v.check_invariants();
    }

    #[test]
    fn reserve_is_exact_shrink_fits_and_clear_keeps_capacity() {
        let p = pool();
        let mut v = Vector::new_in(p.clone());
        drop(v.reserve(10).unwrap());
        drop(v.reserve(5).unwrap());
        assert_eq!((v.len(), v.capacity()), (0, 10));
        drop(v.extend_from_vec(vec![1u64, 2, 3]).unwrap());
        drop(v.shrink_to_fit().unwrap());
        assert_eq!(v.capacity(), 3);
        assert_eq!(live(&p), expected_live(3));
        drop(v.clear());
        assert_eq!((v.len(), v.capacity()), (0, 3));
        drop(v.shrink_to_fit().unwrap());
        assert_eq!((v.capacity(), v.data()), (0, 0));
        assert_eq!(live(&p), expected_live(0));
        v.check_invariants();
    }

    #[test]
    fn sixteen_words_fill_one_pool_block_and_the_seventeenth_goes_upstream() {
        let p = pool();
        let mut v = Vector::new_in(p.clone());
        drop(v.extend_from_vec((0..16u64).collect()).unwrap());
        assert_eq!(live(&p), (1, 128, 0, 0));
        assert!(p.owns(v.data()));
        drop(v.push(16).unwrap());
        assert_eq!(live(&p), (0, 0, 1, 256));
        drop(v);
        assert_eq!(live(&p), (0, 0, 0, 0));
    }

    #[test]
    fn failed_growth_changes_nothing() {
        let rec = Recorder::new(Some(64));
        let mut v = Vector::new_in(rec.clone());
        drop(v.extend_from_vec((0..8u64).collect()).unwrap());
        let before = (v.data(), v.len(), v.capacity());
        assert!(matches!(v.push(8), Err(AllocError::OutOfMemory { .. })));
        assert!(matches!(
            v.insert(0, 9),
            Err(AllocError::OutOfMemory { .. })
        ));
        assert!(v.splice(2..3, vec![0; 5]).is_err());
        assert!(v.reserve(100).is_err());
        assert!(matches!(
            v.reserve(usize::MAX),
            Err(AllocError::TooLarge { .. })
        ));
        assert_eq!((v.data(), v.len(), v.capacity()), before);
        assert_eq!(&v[..], (0..8).collect::<Vec<_>>());
        v.check_invariants();
    }

    #[test]
    fn the_storage_is_claimed_so_nobody_else_frees_moves_or_exposes_it() {
        let p = pool();
        let mut v = Vector::new_in(p.clone());
        drop(v.extend_from_vec(vec![1u64, 2]).unwrap());
        let (data, bytes) = (v.data(), v.capacity() * 8);
        let before = (v.data(), v.capacity(), live(&p));
        assert!(matches!(
            p.deallocate(data, bytes),
            Err(AllocError::Claimed { .. })
        ));
        assert!(matches!(
            p.reallocate(data, bytes, 64),
            Err(AllocError::Claimed { .. })
        ));
        assert!(matches!(p.pin(data), Err(AllocError::Claimed { .. })));
        assert_eq!((v.data(), v.capacity(), live(&p)), before);
        drop(v.push(3).unwrap());
        v.check_invariants();
        drop(v);
        assert_eq!(live(&p), (0, 0, 0, 0));
    }

    #[test]
    fn two_step_growth_adopts_only_blocks_of_its_allocator() {
        let (p, other) = (pool(), pool());
        let mut v = Vector::new_in(p.clone());
        drop(v.push(1u64).unwrap());
        let cap = v.grown_capacity(0, 1).unwrap().unwrap();
        let foreign = Storage::<u64, _>::allocate(other.clone(), cap).unwrap();
        let (refused, adopted) = v.adopt(foreign);
        assert!(matches!(adopted, Err(AllocError::OutOfBlock { .. })));
        assert_eq!(
            live(&other),
            expected_live(2),
            "the refused storage is still owed"
        );
        drop(refused);
        assert_eq!(live(&other), (0, 0, 0, 0), "the refused storage was freed");
        let small = Storage::<u64, _>::allocate(p.clone(), 0).unwrap();
        let (refused, adopted) = v.adopt(small);
        assert!(adopted.is_err() && refused.pending().is_none());
        let s = Storage::<u64, _>::allocate(p.clone(), cap).unwrap();
        assert_eq!(s.capacity(), 2);
        let (old, adopted) = v.adopt(s);
        adopted.unwrap();
        assert_eq!(
            live(&p),
            (2, 8 + 16, 0, 0),
            "the old block is owed until dropped"
        );
        drop(old);
        assert_eq!((v.capacity(), live(&p)), (2, expected_live(2)));
        v.check_invariants();
    }

    #[test]
    fn elements_are_dropped_exactly_once() {
        let token = Arc::new(());
        let p = pool();
        let mut v = Vector::new_in(p.clone());
        for _ in 0..10 {
            drop(v.push(token.clone()).unwrap());
        }
        let x = v.pop().unwrap();
        let y = v.remove(0);
        drop(v.insert(3, x).unwrap());
        let drained = v.drain(1..4);
        let (replaced, _) = v.splice(0..2, vec![y, token.clone()]).unwrap();
        drop(v.erase(0..1));
        drop(v.resize_with(12, || token.clone()).unwrap());
        drop(v.truncate(5));
        assert_eq!(
            Arc::strong_count(&token),
            1 + 5 + drained.len() + replaced.len()
        );
        drop((drained, replaced, v));
        assert_eq!(Arc::strong_count(&token), 1);
        assert_eq!(live(&p), (0, 0, 0, 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u64),
        Pop,
        Insert(usize, u64),
        Remove(usize),
        Extend(Vec<u64>),
        Splice(usize, usize, Vec<u64>),
        Drain(usize, usize),
        Truncate(usize),
        Clear,
        Reserve(usize),
        ShrinkToFit,
        Resize(usize, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let items = || prop::collection::vec(any::<u64>(), 0..40);
        prop_oneof![
            4 => any::<u64>().prop_map(Op::Push),
            1 => Just(Op::Pop),
            2 => (any::<usize>(), any::<u64>()).prop_map(|(i, x)| Op::Insert(i, x)),
            1 => any::<usize>().prop_map(Op::Remove),
            2 => items().prop_map(Op::Extend),
            2 => (any::<usize>(), any::<usize>(), items()).prop_map(|(a, b, v)| Op::Splice(a, b, v)),
            1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Drain(a, b)),
            1 => (0usize..60).prop_map(Op::Truncate),
            1 => Just(Op::Clear),
            1 => (0usize..200).prop_map(Op::Reserve),
            1 => Just(Op::ShrinkToFit),
            1 => (0usize..100, any::<u64>()).prop_map(|(n, x)| Op::Resize(n, x)),
        ]
    }

    /// A plain `Vec` and the capacity the libstdc++ rules predict.
    struct Model {
        items: Vec<u64>,
        cap: usize,
    }

    impl Model {
        fn grow(&mut self, removed: usize, inserted: usize) {
            let base = self.items.len() - removed;
            if base + inserted > self.cap {
                self.cap = base + base.max(inserted);
            }
        }

        /// `[a, b)` as a valid range of the current items, from arbitrary seeds.
        fn range(&self, a: usize, b: usize) -> Range<usize> {
            let n = self.items.len() + 1;
            let (a, b) = (a % n, b % n);
            a.min(b)..a.max(b)
        }

        fn apply(&mut self, op: &Op, v: &mut Vector<u64, Arc<SharedPool>>) {
            let n = self.items.len();
            match op.clone() {
                Op::Push(x) => {
                    self.grow(0, 1);
                    self.items.push(x);
                    drop(v.push(x).unwrap());
                }
                Op::Pop => assert_eq!(v.pop(), self.items.pop()),
                Op::Insert(i, x) => {
                    let i = i % (n + 1);
                    self.grow(0, 1);
                    self.items.insert(i, x);
                    drop(v.insert(i, x).unwrap());
                }
                Op::Remove(i) if n > 0 => assert_eq!(v.remove(i % n), self.items.remove(i % n)),
                Op::Remove(_) => {}
                Op::Extend(xs) => {
                    self.grow(0, xs.len());
                    self.items.extend(&xs);
                    drop(v.extend_from_vec(xs).unwrap());
                }
                Op::Splice(a, b, xs) => {
                    let r = self.range(a, b);
                    self.grow(r.len(), xs.len());
                    let want: Vec<u64> = self.items.splice(r.clone(), xs.clone()).collect();
                    assert_eq!(v.splice(r, xs).unwrap().0, want);
                }
                Op::Drain(a, b) => {
                    let r = self.range(a, b);
                    let want: Vec<u64> = self.items.drain(r.clone()).collect();
                    assert_eq!(v.drain(r), want);
                }
                Op::Truncate(k) => {
                    self.items.truncate(k);
                    drop(v.truncate(k));
                }
                Op::Clear => {
                    self.items.clear();
                    drop(v.clear());
                }
                Op::Reserve(k) => {
                    self.cap = self.cap.max(k);
                    drop(v.reserve(k).unwrap());
                }
                Op::ShrinkToFit => {
                    self.cap = n;
                    drop(v.shrink_to_fit().unwrap());
                }
                Op::Resize(k, x) => {
                    if k > n {
                        self.grow(0, k - n);
                    }
                    self.items.resize(k, x);
                    drop(v.resize_with(k, || x).unwrap());
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn vector_agrees_with_vec_and_holds_exactly_one_block(
            ops in prop::collection::vec(op(), 1..60)
        ) {
            let p = pool();
            let mut v = Vector::new_in(p.clone());
            let mut model = Model { items: vec![], cap: 0 };
            for op in &ops {
                model.apply(op, &mut v);
                prop_assert_eq!(&v[..], &model.items[..]);
                prop_assert_eq!((v.len(), v.capacity()), (model.items.len(), model.cap));
                prop_assert_eq!(live(&p), expected_live(model.cap));
                v.check_invariants();
            }
            drop(v);
            prop_assert_eq!(live(&p), (0, 0, 0, 0));
            p.check_invariants();
        }
    }
}
