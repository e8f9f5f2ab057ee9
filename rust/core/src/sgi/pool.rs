//! The second level: SGI's `__default_alloc_template`, single-threaded and unchecked.
//!
//! `nfreelists` LIFO free lists of blocks of `(i+1)*align` bytes, refilled `refill` blocks
//! at a time from chunks; chunks come from the arena by its break, and once the arena is
//! exhausted from a larger free list or from the upstream allocator.
//!
//! Invariants (SPEC §3; `live` counts are kept by callers, checked in tests):
//! - `heap_size == live_bytes + Σ_i |free_list[i]|·(i+1)·align + (end_free − start_free)`;
//! - `heap_size == arena.used() + upstream_chunk_bytes`;
//! - `blocks[i] == |free_list[i]| + live[i]`: `blocks` counts the blocks of each class that
//!   exist, and changes only where blocks are made or unmade (refill, leftover, borrow), so
//!   the fast paths are SGI's pop and push and nothing else;
//! - every block on list `i` is `(i+1)·align` bytes of arena or upstream-chunk memory,
//!   aligned to `align`, on no other list;
//! - `start_free <= end_free`, both null when the chunk is empty after a failed request.

use crate::error::AllocError;
use crate::os::arena::Arena;
use crate::sgi::free_lists::FreeLists;
use crate::sgi::params::{Params, PoolParams};
use crate::sgi::upstream::{LibcMalloc, Upstream};
use std::ptr::{self, NonNull};

/// SGI's `_Obj`: a free block's first word links it to the next free block.
#[repr(C)]
pub(crate) struct Obj {
    pub(crate) next: *mut Obj,
}

/// The arena (and the larger free lists) could not give `bytes` for a chunk: the caller
/// should get them from the upstream allocator and pass them to `add_chunk`. The pool is
/// consistent meanwhile: the old chunk's leftover is already on its free list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedChunk {
    pub bytes: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounters {
    /// Calls of `refill` (a free list was empty).
    pub refills: u64,
    /// Chunk requests that computed a `bytes_to_get` (the chunk could not serve one object).
    pub chunk_requests: u64,
    /// Bytes of chunks taken from the upstream allocator.
    pub upstream_chunk_bytes: usize,
}

pub struct Pool<U: Upstream = LibcMalloc, P: PoolParams = Params> {
    params: P,
    free_list: FreeLists,
    /// Blocks of each class, free or live.
    blocks: Box<[usize]>,
    start_free: *mut u8,
    end_free: *mut u8,
    heap_size: usize,
    arena: Arena,
    upstream: U,
    upstream_chunks: Vec<(NonNull<u8>, usize)>,
    counters: PoolCounters,
    /// Debug mode: new chunks are filled with this byte, so never-used blocks carry it.
    chunk_fill: Option<u8>,
}

// SAFETY: the pool owns every block its pointers reach (arena pages and upstream chunks);
// moving it moves that ownership. `U: Send` covers the upstream.
unsafe impl<U: Upstream + Send, P: PoolParams> Send for Pool<U, P> {}

impl<U: Upstream, P: PoolParams> Pool<U, P> {
    pub fn new(params: P, arena_size: usize, upstream: U) -> Result<Self, AllocError> {
        let n = params.nfreelists();
        Ok(Self {
            params,
            free_list: FreeLists::new(n),
            blocks: vec![0; n].into_boxed_slice(),
            start_free: ptr::null_mut(),
            end_free: ptr::null_mut(),
            heap_size: 0,
            arena: Arena::new(arena_size)?,
            upstream,
            upstream_chunks: Vec::new(),
            counters: PoolCounters::default(),
            chunk_fill: None,
        })
    }

    /// SGI's `allocate`: null for 0 bytes, the upstream above `max_bytes`, else a block of
    /// `round_up(n)` bytes from `free_list[index(n)]`.
    #[inline]
    pub fn allocate(&mut self, n: usize) -> Result<*mut u8, AllocError> {
        // SGI's fast path, a pop from a non-empty free list, inlines into the caller; all the
        // rest (0 bytes, large requests, refills) stays out of line, so that the caller's
        // loop is the pop and nothing else.
        if n.wrapping_sub(1) < self.params.max_bytes() {
            if let Some(p) = self.pop(self.params.index(n)) {
                return Ok(p.as_ptr());
            }
        }
        self.allocate_slow(n)
    }

    #[cold]
    #[inline(never)]
    fn allocate_slow(&mut self, n: usize) -> Result<*mut u8, AllocError> {
        if n == 0 {
            return Ok(ptr::null_mut());
        }
        if n > self.params.max_bytes() {
            return Ok(self.upstream.allocate(n, self.params.align())?.as_ptr());
        }
        match self.allocate_small(n) {
            Ok(p) => Ok(p.as_ptr()),
            Err(need) => self.allocate_from_upstream_chunk(n, need),
        }
    }

    #[cold]
    fn allocate_from_upstream_chunk(
        &mut self,
        n: usize,
        mut need: NeedChunk,
    ) -> Result<*mut u8, AllocError> {
        loop {
            let chunk = self.upstream.allocate(need.bytes, self.params.align())?;
            self.add_chunk(chunk, need.bytes);
            match self.allocate_small(n) {
                Ok(p) => return Ok(p.as_ptr()),
                Err(again) => need = again,
            }
        }
    }

    /// SGI's `deallocate`.
    ///
    /// # Safety
    /// `p` must come from `allocate(n)` (or `reallocate(.., n)`) of this pool, with an `n` of
    /// the same size class, and not have been deallocated since. Null with 0 is allowed.
    #[inline]
    pub unsafe fn deallocate(&mut self, p: *mut u8, n: usize) {
        if n == 0 {
            return;
        }
        let Some(p) = NonNull::new(p) else { return };
        if n > self.params.max_bytes() {
            // SAFETY: per the caller, `p` is a live upstream block of `n` bytes.
            unsafe { self.upstream.deallocate(p, n) }
        } else {
            // SAFETY: per the caller, `p` is a live pool block of `n`'s class.
            unsafe { self.deallocate_small(p, n) }
        }
    }

    /// SGI's `reallocate`: upstream `realloc` when both sizes are large, `p` itself when
    /// the class does not change, else allocate, copy `min(old, new)`, deallocate.
    ///
    /// # Safety
    /// As for `deallocate(p, old)`. On error `p` is still live and unchanged.
    pub unsafe fn reallocate(
        &mut self,
        p: *mut u8,
        old: usize,
        new: usize,
    ) -> Result<*mut u8, AllocError> {
        let max = self.params.max_bytes();
        if p.is_null() {
            return self.allocate(new);
        }
        if new == 0 {
            // SAFETY: the caller's guarantee for `(p, old)`.
            unsafe { self.deallocate(p, old) };
            return Ok(ptr::null_mut());
        }
        if old > max && new > max {
            let p = NonNull::new(p).expect("checked above");
            // SAFETY: per the caller `p` is a live upstream block of `old` bytes.
            let q = unsafe { self.upstream.reallocate(p, old, new, self.params.align())? };
            return Ok(q.as_ptr());
        }
        if old <= max && new <= max && self.params.round_up(old) == self.params.round_up(new) {
            return Ok(p);
        }
        let q = self.allocate(new)?;
        // SAFETY: `p` holds `old` bytes, `q` at least `new`, and they are distinct blocks.
        unsafe {
            ptr::copy_nonoverlapping(p, q, old.min(new));
            self.deallocate(p, old);
        }
        Ok(q)
    }

    /// The free-list path of `allocate` for `1 <= n <= max_bytes`, without upstream calls.
    #[inline]
    pub fn allocate_small(&mut self, n: usize) -> Result<NonNull<u8>, NeedChunk> {
        debug_assert!(n >= 1 && n <= self.params.max_bytes());
        match self.pop(self.params.index(n)) {
            Some(p) => Ok(p),
            None => self.refill(self.params.round_up(n)),
        }
    }

    /// The head of free list `i`, left on the list: a caller that reads what it needs
    /// before `pop_class` writes anything keeps those reads from being repeated.
    ///
    /// # Safety
    /// `i < nfreelists` and `i < INLINE_LISTS`.
    #[inline(always)]
    pub unsafe fn peek_class(&self, i: usize) -> Option<NonNull<u8>> {
        debug_assert!(i < self.params.nfreelists());
        // SAFETY: the caller's promise.
        NonNull::new(unsafe { self.free_list.inline_head(i) }).map(NonNull::cast)
    }

    /// The address of free list `i`'s head, 0 for an empty list.
    ///
    /// # Safety
    /// `i < nfreelists` and `i < INLINE_LISTS`.
    #[inline(always)]
    pub unsafe fn head_addr(&self, i: usize) -> usize {
        // SAFETY: the caller's promise.
        unsafe { self.peek_class(i) }.map_or(0, |q| q.as_ptr() as usize)
    }

    /// The head of free list `i`, if it has one: `allocate_small` without the refill, for
    /// callers that keep their fast path apart.
    ///
    /// # Safety
    /// `i < nfreelists` and `i < INLINE_LISTS`.
    #[inline(always)]
    pub unsafe fn pop_class(&mut self, i: usize) -> Option<NonNull<u8>> {
        debug_assert!(i < self.params.nfreelists());
        // SAFETY: the caller's promise.
        let head = unsafe { self.free_list.inline_head_mut(i) };
        // SAFETY: list `i`'s head.
        unsafe { Self::pop_from(head) }
    }

    /// Pushes `p` on free list `i`: `deallocate_small` with the class already known.
    ///
    /// # Safety
    /// `i < INLINE_LISTS`, and `p` must be a live block of this pool of class `i`
    /// (`class_size(i)` bytes).
    #[inline(always)]
    pub unsafe fn push_class(&mut self, i: usize, p: NonNull<u8>) {
        debug_assert!(i < self.params.nfreelists());
        // SAFETY: the caller's promise.
        let head = unsafe { self.free_list.inline_head_mut(i) };
        // SAFETY: the caller's promise: `p` is a free block of list `i`'s class, ours.
        unsafe { Self::push_onto(head, p) };
    }

    /// Takes the head of `free_list[i]`, if there is one.
    #[inline]
    fn pop(&mut self, i: usize) -> Option<NonNull<u8>> {
        debug_assert!(i < self.params.nfreelists());
        // SAFETY: callers pass `index(n)` of a size `1 <= n <= max_bytes`, which is below
        // `nfreelists`.
        let head = unsafe { self.free_list.head_mut(i) };
        // SAFETY: list `i`'s head.
        unsafe { Self::pop_from(head) }
    }

    /// Takes the block at `head`, if any.
    ///
    /// # Safety
    /// `head` is the head of one of this pool's lists.
    #[inline(always)]
    unsafe fn pop_from(head: &mut *mut Obj) -> Option<NonNull<u8>> {
        let obj = NonNull::new(*head)?;
        // SAFETY: a block on a free list is free memory of ours whose first word is the link
        // written when it was pushed.
        *head = unsafe { (*obj.as_ptr()).next };
        Some(obj.cast())
    }

    /// Pushes `p` on `free_list[index(n)]`.
    ///
    /// # Safety
    /// `p` must be a live block of this pool of `n`'s class (`1 <= n <= max_bytes`).
    #[inline]
    pub unsafe fn deallocate_small(&mut self, p: NonNull<u8>, n: usize) {
        let i = self.params.index(n);
        // SAFETY: the caller guarantees `p` is ours, at least `align >= 8` bytes and aligned,
        // so its first word can hold the link.
        unsafe { self.push(i, p) };
    }

    /// # Safety
    /// `p` must be free memory of this pool of `class_size(i)` bytes, aligned to `align`.
    #[inline]
    unsafe fn push(&mut self, i: usize, p: NonNull<u8>) {
        debug_assert!(i < self.params.nfreelists());
        // SAFETY: callers pass the index of a class, below `nfreelists`.
        let head = unsafe { self.free_list.head_mut(i) };
        // SAFETY: the caller's promise.
        unsafe { Self::push_onto(head, p) };
    }

    /// Pushes `p` onto the list whose head is `head`.
    ///
    /// # Safety
    /// `head` is the head of one of this pool's lists, and `p` free memory of ours of that
    /// list's class, aligned to `align`.
    #[inline(always)]
    unsafe fn push_onto(head: &mut *mut Obj, p: NonNull<u8>) {
        let obj = p.cast::<Obj>().as_ptr();
        // SAFETY: the caller guarantees `p` is writable, aligned pool memory of ours.
        unsafe { obj.write(Obj { next: *head }) };
        *head = obj;
    }

    /// SGI's `_S_refill`: get `refill` objects of `size` bytes, return the first and link
    /// the rest onto the (empty) free list, `chunk+size` at the head.
    #[inline(never)]
    fn refill(&mut self, size: usize) -> Result<NonNull<u8>, NeedChunk> {
        let (chunk, nobjs) = self.chunk_alloc(size, self.params.refill())?;
        self.counters.refills += 1;
        let i = self.params.index(size);
        debug_assert!(self.free_list.head(i).is_null());
        self.blocks[i] += nobjs;
        // The pushes of objects `nobjs - 1` down to 1, with the head kept in a register
        // until the end (`push` stored and reloaded it for every object: a raw write may
        // alias the list, for all the compiler knows).
        // SAFETY: `i = index(size)` of a size the pool serves, below `nfreelists`.
        let head = unsafe { self.free_list.head_mut(i) };
        let mut next = *head;
        for k in (1..nobjs).rev() {
            // SAFETY: the chunk spans `nobjs * size` bytes of our memory, so object `k` is
            // inside it, aligned, and free.
            let obj = unsafe { chunk.add(k * size) }.cast::<Obj>().as_ptr();
            // SAFETY: as above: writable, aligned pool memory of ours.
            unsafe { obj.write(Obj { next }) };
            next = obj;
        }
        *head = next;
        Ok(chunk)
    }

    /// SGI's `_S_chunk_alloc`: `nobjs` objects of `size` bytes if the chunk holds them, as
    /// many as it holds if at least one, else a new chunk of `bytes_to_get` bytes.
    fn chunk_alloc(
        &mut self,
        size: usize,
        nobjs: usize,
    ) -> Result<(NonNull<u8>, usize), NeedChunk> {
        loop {
            let total = size * nobjs;
            let left = self.chunk_bytes_left();
            if left >= size {
                let nobjs = if left >= total { nobjs } else { left / size };
                let result = NonNull::new(self.start_free).expect("a non-empty chunk");
                // SAFETY: `nobjs * size <= left`, so the new start stays inside the chunk.
                self.start_free = unsafe { self.start_free.add(nobjs * size) };
                return Ok((result, nobjs));
            }
            self.counters.chunk_requests += 1;
            let bytes_to_get = 2 * total + self.params.round_up(self.heap_size >> 4);
            self.push_leftover();
            if let Some(p) = self.arena.sbrk(bytes_to_get) {
                self.set_new_chunk(p, bytes_to_get);
                self.heap_size += bytes_to_get;
                continue;
            }
            if !self.borrow_larger_block(size) {
                return Err(NeedChunk {
                    bytes: bytes_to_get,
                });
            }
        }
    }

    /// Pushes what is left of the chunk onto the list of its size, emptying the chunk.
    ///
    /// In SGI's flow the leftover is smaller than the request, so it is one block of a
    /// class. A chunk installed by another caller while this one waited for upstream (an
    /// out-of-memory handler that re-enters, another thread) can have any size: it is cut
    /// into `max_bytes` blocks and one of the rest, so no byte is lost.
    fn push_leftover(&mut self) {
        let max = self.params.max_bytes();
        while let Some(p) = NonNull::new(self.start_free).filter(|_| self.chunk_bytes_left() > 0) {
            let piece = self.chunk_bytes_left().min(max);
            let i = self.params.index(piece);
            // SAFETY: the piece is free pool memory at the chunk's start, a multiple of
            // `align` bytes (every carve is) of at most `max_bytes`, so it fits a class.
            unsafe {
                self.push(i, p);
                self.start_free = self.start_free.add(piece);
            }
            self.blocks[i] += 1;
        }
        self.start_free = ptr::null_mut();
        self.end_free = ptr::null_mut();
    }

    /// The arena is exhausted: make the first block of a list of `size` bytes or more the
    /// new chunk, as SGI does when `malloc` fails.
    fn borrow_larger_block(&mut self, size: usize) -> bool {
        let first = self.params.index(size);
        for i in first..self.params.nfreelists() {
            if let Some(obj) = self.pop(i) {
                // The block stops being a block: its bytes become the chunk.
                self.blocks[i] -= 1;
                self.set_chunk(obj, self.params.class_size(i));
                return true;
            }
        }
        false
    }

    /// Makes fresh memory the chunk, filled with the debug pattern if there is one.
    fn set_new_chunk(&mut self, p: NonNull<u8>, bytes: usize) {
        if let Some(byte) = self.chunk_fill {
            // SAFETY: `p` starts `bytes` bytes of fresh, writable pool memory.
            unsafe { ptr::write_bytes(p.as_ptr(), byte, bytes) };
        }
        self.set_chunk(p, bytes);
    }

    /// Debug mode: fill every chunk obtained from now on with `byte`.
    pub fn set_chunk_fill(&mut self, byte: Option<u8>) {
        self.chunk_fill = byte;
    }

    fn set_chunk(&mut self, p: NonNull<u8>, bytes: usize) {
        self.start_free = p.as_ptr();
        // SAFETY: `p` starts a region of `bytes` bytes of ours.
        self.end_free = unsafe { self.start_free.add(bytes) };
    }

    /// Installs a chunk of `bytes` bytes from the upstream allocator, as SGI does with the
    /// result of `malloc_alloc::allocate(bytes_to_get)`. Any chunk still current (another
    /// thread refilled meanwhile) is kept as a leftover.
    pub fn add_chunk(&mut self, chunk: NonNull<u8>, bytes: usize) {
        self.push_leftover();
        self.set_new_chunk(chunk, bytes);
        self.heap_size += bytes;
        self.counters.upstream_chunk_bytes += bytes;
        self.upstream_chunks.push((chunk, bytes));
    }

    /// Gives every page and upstream chunk back and starts over empty.
    ///
    /// # Safety
    /// No block of this pool may be live (used) any more.
    pub unsafe fn release(&mut self) {
        for (p, bytes) in std::mem::take(&mut self.upstream_chunks) {
            // SAFETY: each chunk came from `upstream.allocate(bytes)` and is dropped once.
            unsafe { self.upstream.deallocate(p, bytes) };
        }
        // SAFETY: the caller guarantees no block is in use.
        unsafe { self.arena.release() };
        self.free_list.clear();
        self.blocks.fill(0);
        self.start_free = ptr::null_mut();
        self.end_free = ptr::null_mut();
        self.heap_size = 0;
        self.counters.upstream_chunk_bytes = 0;
    }

    pub fn params(&self) -> &P {
        &self.params
    }

    pub fn heap_size(&self) -> usize {
        self.heap_size
    }

    pub fn chunk_bytes_left(&self) -> usize {
        self.end_free as usize - self.start_free as usize
    }

    /// `[start_free, end_free)` as addresses.
    pub fn chunk(&self) -> (usize, usize) {
        (self.start_free as usize, self.end_free as usize)
    }

    /// The length of list `i`, by walking it (SGI keeps no count; see `class_blocks`).
    pub fn free_list_len(&self, i: usize) -> usize {
        self.free_blocks(i).count()
    }

    /// Blocks of class `i` that exist, free or live: with a count of the live ones this
    /// gives the list's length in O(1).
    pub fn class_blocks(&self, i: usize) -> usize {
        self.blocks[i]
    }

    /// The addresses on list `i`, head first.
    pub fn free_list(&self, i: usize) -> Vec<usize> {
        self.free_blocks(i).collect()
    }

    /// The addresses on list `i`, head first, read as the walk goes.
    fn free_blocks(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let mut p = self.free_list.head(i);
        std::iter::from_fn(move || {
            let block = NonNull::new(p)?;
            // SAFETY: every block on the list is free memory whose first word is its link.
            p = unsafe { (*block.as_ptr()).next };
            Some(block.as_ptr() as usize)
        })
    }

    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    pub fn upstream(&self) -> &U {
        &self.upstream
    }

    /// Upstream chunks as `(address, bytes)`, oldest first.
    pub fn upstream_chunks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.upstream_chunks
            .iter()
            .map(|&(p, n)| (p.as_ptr() as usize, n))
    }

    pub fn counters(&self) -> PoolCounters {
        self.counters
    }

    /// `Σ |free_list[i]|·class_size(i)`, by walking the lists.
    pub fn free_bytes(&self) -> usize {
        (0..self.params.nfreelists())
            .map(|i| self.free_list_len(i) * self.params.class_size(i))
            .sum()
    }
}

impl<U: Upstream, P: PoolParams> Drop for Pool<U, P> {
    fn drop(&mut self) {
        for &(p, bytes) in &self.upstream_chunks {
            // SAFETY: each chunk came from `upstream.allocate(bytes)`; the pool and every
            // block in it are going away.
            unsafe { self.upstream.deallocate(p, bytes) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(arena: usize) -> Pool {
        Pool::new(Params::default(), arena, LibcMalloc).unwrap()
    }

    #[test]
    fn spec_worked_example() {
        let mut p = pool(1 << 20);
        let a = p.allocate(8).unwrap();
        assert_eq!(p.heap_size(), 320);
        assert_eq!(p.free_list_len(0), 19);
        assert_eq!(p.chunk_bytes_left(), 160);
        assert_eq!(
            p.free_list(0)[0],
            a as usize + 8,
            "chunk+size heads the list"
        );
        assert_eq!(p.allocate(8).unwrap() as usize, a as usize + 8);

        let b = p.allocate(32).unwrap();
        assert_eq!(
            b as usize,
            a as usize + 160,
            "carved from the 160 bytes left"
        );
        assert_eq!((p.free_list_len(3), p.chunk_bytes_left()), (4, 0));

        p.allocate(64).unwrap();
        assert_eq!(p.heap_size(), 2904, "320 + 2*1280 + round_up(320 >> 4)");
        assert_eq!(p.arena().used(), 2904);
        assert_eq!(p.counters().chunk_requests, 2);
        assert_eq!(p.counters().refills, 3);
    }

    #[test]
    fn a_chunk_installed_meanwhile_is_kept_whole() {
        // A re-entrant caller installed a chunk while this one waited for its own: the
        // 4000 bytes left of it are cut into max_bytes blocks and one of the rest.
        let mut p = pool(0);
        let need = p.allocate_small(128).unwrap_err();
        assert_eq!(need.bytes, 5120);
        let first = LibcMalloc.allocate(5120, 8).unwrap();
        p.add_chunk(first, 5120);
        p.allocate_small(8).unwrap(); // carves 20 * 8 = 160 of them: 4960 left
        let second = LibcMalloc.allocate(5120, 8).unwrap();
        p.add_chunk(second, 5120);
        assert_eq!(p.free_list_len(15), 38, "38 blocks of 128 = 4864 bytes");
        assert_eq!(p.free_list_len(11), 1, "and one of 96");
        assert_eq!(p.heap_size(), 10240);
        assert_eq!(
            p.heap_size(),
            8 + p.free_bytes() + p.chunk_bytes_left(),
            "conservation"
        );
    }

    #[test]
    fn sgi_constants_behave_exactly_as_the_default_parameters() {
        use crate::sgi::params::Sgi;
        let mut a = pool(1 << 16);
        let mut b = Pool::new(Sgi, 1 << 16, LibcMalloc).unwrap();
        let (base_a, base_b) = (a.arena().base(), b.arena().base());
        let mut live: Vec<(*mut u8, *mut u8, usize)> = Vec::new();
        let mut x = 12345u64;
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) as usize;
            if r % 5 < 2 && !live.is_empty() {
                let (p, q, n) = live.swap_remove(r % live.len());
                // SAFETY: p and q are live blocks of n bytes of a and b.
                unsafe {
                    a.deallocate(p, n);
                    b.deallocate(q, n);
                }
            } else {
                let n = 1 + r % 160;
                let (p, q) = (a.allocate(n).unwrap(), b.allocate(n).unwrap());
                if a.arena().contains(p as usize) {
                    assert_eq!(p as usize - base_a, q as usize - base_b, "allocate({n})");
                }
                live.push((p, q, n));
            }
            assert_eq!(
                (a.heap_size(), a.chunk_bytes_left()),
                (b.heap_size(), b.chunk_bytes_left())
            );
        }
        for i in 0..16 {
            assert_eq!(a.free_list_len(i), b.free_list_len(i));
        }
        for (p, q, n) in live {
            // SAFETY: live blocks of n bytes of a and b.
            unsafe {
                a.deallocate(p, n);
                b.deallocate(q, n);
            }
        }
    }

    #[test]
    fn deallocate_is_lifo() {
        let mut p = pool(1 << 20);
        let a = p.allocate(24).unwrap();
        let b = p.allocate(24).unwrap();
        // SAFETY: a and b are live 24-byte blocks of p.
        unsafe {
            p.deallocate(a, 24);
            p.deallocate(b, 20);
        }
        assert_eq!(p.allocate(17).unwrap(), b);
        assert_eq!(p.allocate(24).unwrap(), a);
    }

    #[test]
    fn zero_and_large() {
        let mut p = pool(1 << 20);
        assert!(p.allocate(0).unwrap().is_null());
        let big = p.allocate(129).unwrap();
        assert!(
            !p.arena().contains(big as usize),
            "above max_bytes goes upstream"
        );
        assert_eq!(p.heap_size(), 0);
        // SAFETY: big is a live upstream block of 129 bytes; null with 0 is allowed.
        unsafe {
            p.deallocate(big, 129);
            p.deallocate(ptr::null_mut(), 0);
        }
    }

    #[test]
    fn leftover_is_pushed_and_exhausted_arena_goes_upstream() {
        let mut p = pool(4096);
        p.allocate(8).unwrap(); // 320 from the arena, 160 left in the chunk
        p.allocate(48).unwrap(); // 160 hold 3 objects of 48: 16 left
        assert_eq!((p.free_list_len(5), p.chunk_bytes_left()), (2, 16));
        // 96: bytes_to_get = 2*1920 + round_up(320 >> 4) = 3864 > 3776 left in the arena,
        // no list of 96 bytes or more has a block, so the chunk comes from upstream.
        p.allocate(96).unwrap();
        assert_eq!(p.free_list_len(1), 1, "the 16-byte leftover went to list 1");
        assert_eq!(p.counters().upstream_chunk_bytes, 3864);
        assert_eq!(p.heap_size(), 320 + 3864);
        assert_eq!(p.arena().used(), 320);
    }

    #[test]
    fn exhausted_arena_borrows_a_larger_free_block_before_going_upstream() {
        let mut p = pool(4096);
        p.allocate(8).unwrap(); // heap 320, 160 left
        let big = p.allocate(128).unwrap(); // one object of 128 fits: 32 left
                                            // SAFETY: big is a live 128-byte pool block.
        unsafe { p.deallocate(big, 128) };
        p.allocate(64).unwrap(); // 2*1280 + 24 = 2584 from the arena, 32 → list 3
        assert_eq!((p.heap_size(), p.chunk_bytes_left()), (2904, 1304));
        for _ in 0..10 {
            p.allocate(120).unwrap(); // 1304 hold 10 objects of 120: 104 left
        }
        // 4984 bytes do not fit in the 1192 left: list 14 is empty, list 15 holds `big`,
        // which becomes the chunk and serves one 120-byte object.
        assert_eq!(p.allocate(120).unwrap(), big);
        assert_eq!((p.free_list_len(15), p.chunk_bytes_left()), (0, 8));
        assert_eq!(p.free_list_len(12), 1, "the 104-byte leftover");
        assert_eq!(p.counters().upstream_chunk_bytes, 0);
        p.allocate(120).unwrap();
        assert_eq!(p.counters().upstream_chunk_bytes, 4984);
        assert_eq!(p.heap_size(), 2904 + 4984);
        assert_eq!(
            p.free_list_len(0),
            20,
            "19 from the first refill + the 8-byte leftover"
        );
    }
}
