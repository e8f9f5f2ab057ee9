//! What every byte of a pool is doing right now, region by region: the data behind the
//! pictures (`render`) and a strong invariant.
//!
//! Invariant (checked by `check_tiling`): in every region the spans tile
//! `[base, base + used)` exactly — each byte is in one live block, one free block, or the
//! current chunk's uncarved rest — because the arena only grows by whole chunks and every
//! chunk is carved into blocks from its start, its leftover pushed onto a free list.

use crate::checked::CheckedPool;
use crate::sgi::upstream::Upstream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// A block handed out.
    Live,
    /// A block on `free_list[class]`.
    Free { class: usize },
    /// `[start_free, end_free)`: carved by the next refill.
    Chunk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub size: usize,
    pub kind: SpanKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// The `mmap`'d arena; `used` is its break.
    Arena,
    /// A chunk taken from the upstream allocator once the arena was exhausted.
    UpstreamChunk,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub kind: RegionKind,
    pub base: usize,
    /// Bytes reserved (the arena) or obtained (an upstream chunk).
    pub len: usize,
    /// Bytes handed out from the start: the break, or the whole chunk.
    pub used: usize,
    /// Spans in address order.
    pub spans: Vec<Span>,
}

impl<U: Upstream> CheckedPool<U> {
    /// Every region of the pool with its spans.
    pub fn layout(&self) -> Vec<Region> {
        let pool = self.pool();
        let arena = pool.arena();
        let mut regions = vec![Region {
            kind: RegionKind::Arena,
            base: arena.base(),
            len: arena.reserved(),
            used: arena.used(),
            spans: Vec::new(),
        }];
        regions.extend(pool.upstream_chunks().map(|(base, len)| Region {
            kind: RegionKind::UpstreamChunk,
            base,
            len,
            used: len,
            spans: Vec::new(),
        }));
        let mut spans: Vec<Span> = self
            .live_small_blocks()
            .into_iter()
            .map(|(start, size)| Span {
                start,
                size,
                kind: SpanKind::Live,
            })
            .collect();
        for class in 0..pool.params().nfreelists() {
            let size = pool.params().class_size(class);
            spans.extend(pool.free_list(class).into_iter().map(|start| Span {
                start,
                size,
                kind: SpanKind::Free { class },
            }));
        }
        let (start_free, end_free) = pool.chunk();
        if end_free > start_free {
            spans.push(Span {
                start: start_free,
                size: end_free - start_free,
                kind: SpanKind::Chunk,
            });
        }
        spans.sort_by_key(|s| s.start);
        for span in spans {
            let region = regions
                .iter_mut()
                .find(|r| span.start >= r.base && span.start < r.base + r.used)
                .expect("every span lies in a region of the pool");
            region.spans.push(span);
        }
        regions
    }

    /// Panics unless the spans of every region tile `[base, base + used)`.
    pub fn check_tiling(&self) {
        for region in self.layout() {
            let mut at = region.base;
            for span in &region.spans {
                assert_eq!(span.start, at, "gap or overlap at {at:#x} in {region:?}");
                at += span.size;
            }
            assert_eq!(
                at,
                region.base + region.used,
                "region not covered to its end"
            );
        }
    }
}
