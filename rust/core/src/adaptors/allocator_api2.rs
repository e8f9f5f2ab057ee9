//! The pool as an [`allocator_api2::alloc::Allocator`] (the stable mirror of Rust's
//! allocator API), so that allocator-api2 and hashbrown collections keep their memory in
//! it: `allocator_api2::vec::Vec::new_in(&pool)`, `hashbrown::HashMap::new_in(&pool)`.
//!
//! Requests go through the checked pool, so they show in its statistics exactly as Python
//! calls do: sizes up to `max_bytes` from the free lists, larger ones upstream.
//!
//! Alignment above the pool's promise (`align`, 8 by default) is served by over-allocating:
//! a block of `size + (layout.align - align)` bytes always contains an aligned `size`-byte
//! range, since the block itself is `align`-aligned. `deallocate` recomputes that request
//! size from the layout and finds the block's start with `block_containing`, so no header
//! is needed. Zero-size layouts get a dangling aligned pointer and never reach the pool.
//!
//! A block pinned by a view (Python's `pool.view`) cannot be freed; `deallocate` then
//! leaves it live in the pool (a leak) rather than freeing memory a view still shows.

use crate::sgi::upstream::Upstream;
use crate::shared::SharedPool;
use allocator_api2::alloc::{AllocError, Allocator, Layout};
use std::ptr::NonNull;

impl<U: Upstream + Clone + Send> SharedPool<U> {
    /// The bytes to ask the pool for so that an aligned `layout.size()` range fits.
    fn api2_request(&self, layout: Layout) -> Option<usize> {
        let extra = layout.align().saturating_sub(self.params().align());
        layout.size().checked_add(extra)
    }
}

// SAFETY: blocks come from the checked pool, which hands out disjoint live blocks valid until
// deallocated (or the pool is dropped, which borrowers of `&SharedPool` outlive); the range
// returned lies inside its block (see `api2_request`) and is aligned to `layout.align()`.
unsafe impl<U: Upstream + Clone + Send> Allocator for SharedPool<U> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            // A non-null address that is a multiple of the alignment, as the trait requires.
            let dangling = NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(dangling, 0));
        }
        let n = self.api2_request(layout).ok_or(AllocError)?;
        let start = SharedPool::allocate(self, n).map_err(|_| AllocError)?;
        let addr = start.next_multiple_of(layout.align());
        let ptr = NonNull::new(addr as *mut u8).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        let n = self
            .api2_request(layout)
            .expect("it fitted when the block was allocated");
        let addr = ptr.as_ptr() as usize;
        let start = if layout.align() <= self.params().align() {
            addr
        } else {
            self.lock_holding(addr)
                .block_containing(addr)
                .expect("the caller guarantees the block is live")
                .0
        };
        // The only possible refusal is a pin (a view of the block): it then stays live.
        let _ = SharedPool::deallocate(self, start, n);
    }
}

#[cfg(test)]
mod tests {
    use crate::{MallocAlloc, Params, SharedPool};
    use allocator_api2::alloc::{Allocator, Layout};
    use std::sync::Arc;

    fn pool() -> SharedPool {
        let upstream = Arc::new(MallocAlloc::new(None));
        SharedPool::new(Params::default(), 1 << 20, upstream).unwrap()
    }

    fn live(pool: &SharedPool) -> (usize, usize, usize, usize) {
        let s = pool.stats();
        (
            s.live_blocks,
            s.live_bytes,
            s.large_live_blocks,
            s.large_live_bytes,
        )
    }

    #[test]
    fn an_allocator_api2_vec_lives_in_the_pool() {
        let pool = pool();
        let mut v = allocator_api2::vec::Vec::with_capacity_in(4, &pool);
        v.extend([1u64, 2, 3, 4]);
        assert_eq!(live(&pool), (1, 32, 0, 0));
        assert!(pool
            .lock_holding(v.as_ptr() as usize)
            .block_containing(v.as_ptr() as usize)
            .is_some());
        v.extend(0..12);
        assert_eq!(
            live(&pool),
            (1, 128, 0, 0),
            "grown to 16 words, the old block freed"
        );
        v.push(99);
        assert_eq!(live(&pool), (0, 0, 1, 256), "32 words go upstream");
        drop(v);
        assert_eq!(live(&pool), (0, 0, 0, 0));
        pool.check_invariants();
    }

    #[test]
    fn a_hashbrown_map_lives_in_the_pool() {
        let pool = pool();
        let mut map = hashbrown::HashMap::new_in(&pool);
        for i in 0..1000u64 {
            map.insert(i, i * i);
        }
        assert_eq!(map[&999], 998001);
        let (small, _, large, large_bytes) = live(&pool);
        assert_eq!(
            (small, large),
            (0, 1),
            "one table, too big for the free lists"
        );
        assert!(large_bytes >= 1000 * 16, "the table holds every entry");
        map.clear();
        map.shrink_to(3);
        let (small, _, large, _) = live(&pool);
        assert_eq!(
            (small, large),
            (1, 0),
            "a small table comes from a free list"
        );
        drop(map);
        assert_eq!(live(&pool), (0, 0, 0, 0));
        pool.check_invariants();
    }

    #[test]
    fn over_aligned_layouts_are_served_from_a_larger_block() {
        let pool = pool();
        let mut blocks = vec![];
        for (size, align) in [(8, 64), (100, 32), (200, 4096), (24, 16)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let p = Allocator::allocate(&pool, layout).unwrap();
            assert_eq!(p.cast::<u8>().as_ptr() as usize % align, 0);
            assert_eq!(p.len(), size);
            // SAFETY: the block has `size` writable bytes.
            unsafe { p.cast::<u8>().as_ptr().write_bytes(0xab, size) };
            blocks.push((p, layout));
        }
        let s = pool.stats();
        assert_eq!(s.live_blocks + s.large_live_blocks, 4);
        for (p, layout) in blocks {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { Allocator::deallocate(&pool, p.cast(), layout) };
        }
        assert_eq!(live(&pool), (0, 0, 0, 0));
        pool.check_invariants();
    }

    #[test]
    fn zero_sizes_never_reach_the_pool_and_failures_are_errors() {
        let pool = pool();
        let layout = Layout::from_size_align(0, 256).unwrap();
        let p = Allocator::allocate(&pool, layout).unwrap();
        assert_eq!((p.cast::<u8>().as_ptr() as usize % 256, p.len()), (0, 0));
        // SAFETY: a zero-size block from this allocator.
        unsafe { Allocator::deallocate(&pool, p.cast(), layout) };
        let huge = Layout::from_size_align(isize::MAX as usize - 7, 8).unwrap();
        assert!(Allocator::allocate(&pool, huge).is_err());
        assert_eq!(live(&pool), (0, 0, 0, 0));
    }
}
