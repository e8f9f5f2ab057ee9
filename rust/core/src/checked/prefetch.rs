//! A software prefetch along a walk through adjacent blocks: a free list popped in address
//! order, or blocks freed in address order.
//!
//! A pop reads the link stored in the block it hands out, and the next pop reads the link
//! of that one: a chain of dependent loads through memory the program last touched long
//! ago (a list freed front to back, a container rebuilt). When the blocks lie side by side,
//! as a refill carves them and as a container's nodes come back, the chain walks memory at
//! a constant stride, yet the hardware prefetchers follow it poorly: on the Intel Xeon
//! (model 167) these figures come from, a list of 10⁶ 24-byte nodes pushed from a cold
//! free list (a glibc list of the same size built in between) cost 5.8–6.8 ns a node when
//! the list ran upward and 4.0–4.2 when it ran downward; with this prefetch, 2.75–3.05
//! either way.
//!
//! So a pop that finds the new head `next` adjacent to the block `p` it took
//! (`|next − p| <= MAX_STRIDE`) prefetches the block `AHEAD` strides further on. A free does
//! the same with the head it finds and the block it pushes: blocks freed in address order
//! (a container destroyed front to back) are a walk too, whose next blocks the free will
//! write a link into and whose nodes its caller reads to find them (the bench's `list`, 10⁶
//! nodes pushed and destroyed: 7.0–7.1 → 5.65–5.7 ns a node). Any other list (blocks freed
//! in no order) prefetches nothing: a guess there would only evict lines the program uses
//! (it cost a churn of random sizes 12 %). A prefetch is a hint: it never faults, whatever
//! the address, and changes nothing the program can observe, so a wrong guess costs time
//! only.
//! It does cost: the free's prefetch takes the GIL flavour's vec16 (a vector grown from 8 to
//! 128 bytes, each growth freeing the block it just outgrew) from 33 to 38.5 ns; prefetched
//! into L2 only, 35 ns, but `list` then keeps half its gain, so lines pulled into L1 are
//! part of that cost.
//!
//! Invariant: `ahead(p, next)` is `Some(next + (next − p)·AHEAD)` exactly when
//! `|next − p| <= MAX_STRIDE` (wrapping arithmetic), else `None`.

/// Blocks ahead of the new head that a pop prefetches: far enough to cover the memory's
/// latency at a few nanoseconds a pop (64 and 128 measured alike; 32 and 16 too short).
pub const AHEAD: usize = 64;

/// The largest distance between a popped block and the new head that counts as a walk
/// through adjacent blocks: the largest class of SGI's default parameters.
pub const MAX_STRIDE: usize = 128;

/// The address a pop of `p` that left `next` at the head of its list prefetches, if the
/// list runs through adjacent blocks there. `next` is 0 for an emptied list.
#[inline(always)]
pub fn ahead(p: usize, next: usize) -> Option<usize> {
    let stride = next.wrapping_sub(p);
    (stride.wrapping_add(MAX_STRIDE) <= 2 * MAX_STRIDE)
        .then(|| next.wrapping_add(stride.wrapping_mul(AHEAD)))
}

/// Prefetches `ahead(p, next)`, if there is one, into the caches.
#[inline(always)]
pub fn along(p: usize, next: usize) {
    if let Some(a) = ahead(p, next) {
        hint(a);
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn hint(addr: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: PREFETCHT0 reads nothing the program sees and never faults, whatever the
    // address (an unmapped one is dropped); SSE, which it needs, is part of x86-64.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(addr as *const i8) };
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn hint(_addr: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_blocks_either_way_prefetch_ahead_stride_by_stride() {
        let p = 0x10_0000;
        assert_eq!(ahead(p, p + 24), Some(p + 24 + 24 * AHEAD));
        assert_eq!(ahead(p, p - 24), Some(p - 24 - 24 * AHEAD));
        assert_eq!(ahead(p, p + MAX_STRIDE), Some(p + MAX_STRIDE * (AHEAD + 1)));
        assert_eq!(ahead(p, p - MAX_STRIDE), Some(p - MAX_STRIDE * (AHEAD + 1)));
    }

    #[test]
    fn distant_blocks_and_an_emptied_list_prefetch_nothing() {
        let p = 0x10_0000;
        assert_eq!(ahead(p, p + MAX_STRIDE + 8), None);
        assert_eq!(ahead(p, p - MAX_STRIDE - 8), None);
        assert_eq!(ahead(p, 0), None);
    }

    #[test]
    fn any_address_may_be_prefetched() {
        // Unmapped, null and non-canonical addresses: a hint, never a fault.
        for a in [0, 8, 0xdead_0000, usize::MAX, 1 << 63] {
            hint(a);
        }
        along(0x1000, 0x1000 - 16);
    }
}
