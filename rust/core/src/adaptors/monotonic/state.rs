//! The state of a `Monotonic` allocator behind its lock: the arena, the upstream buffers
//! and the maps of their blocks, and the operations on them.

use super::{MonotonicStats, GRANULE, MAX_NEXT_BUFFER};
use crate::checked::block_map::BlockMap;
use crate::error::AllocError;
use crate::os::arena::Arena;
use crate::os::syscalls;
use std::collections::{HashMap, HashSet};

/// One buffer from upstream, carved from its start like the arena.
pub(super) struct Buffer {
    pub base: usize,
    pub len: usize,
    pub used: usize,
    pub map: BlockMap,
}

pub(super) struct State {
    pub arena: Arena,
    pub arena_map: BlockMap,
    /// In the order taken; the last one is carved once the arena has failed a request.
    pub buffers: Vec<Buffer>,
    pub next_buffer: usize,
    /// The largest block ever recorded: bounds every search of the maps.
    pub max_block: usize,
    pub pins: HashMap<usize, usize>,
    /// Blocks a `reallocate` is copying, each holding one pin: refused as `Moving`.
    pub moving: HashSet<usize>,
    pub stats: MonotonicStats,
}

pub(super) fn round_up(n: usize, align: usize) -> Option<usize> {
    n.checked_next_multiple_of(align)
}

impl State {
    pub(super) fn initial_next_buffer(arena: &Arena) -> usize {
        arena
            .reserved()
            .saturating_mul(2)
            .clamp(syscalls::page_size(), MAX_NEXT_BUFFER)
    }

    /// Carves `size` bytes aligned to `align` from the current region, or `None`.
    pub(super) fn carve(&mut self, size: usize, align: usize) -> Option<usize> {
        if let Some(buf) = self.buffers.last_mut() {
            let start = round_up(buf.base + buf.used, align)?;
            let end = start.checked_add(size)?;
            if end > buf.base + buf.len {
                return None;
            }
            buf.used = end - buf.base;
            buf.map.mark(start, size);
            return Some(start);
        }
        let brk = self.arena.base() + self.arena.used();
        let pad = round_up(brk, align)? - brk;
        let old = self.arena.sbrk(pad.checked_add(size)?)?.as_ptr() as usize;
        let start = old + pad;
        self.arena_map.mark(start, size);
        Some(start)
    }

    pub(super) fn record(&mut self, size: usize) {
        self.max_block = self.max_block.max(size);
        self.stats.live_blocks += 1;
        self.stats.live_bytes += size;
        self.stats.allocations += 1;
    }

    /// The map of the region holding `addr`: the arena first, it serves most blocks.
    pub(super) fn map_of(&self, addr: usize) -> Option<&BlockMap> {
        if self.arena_map.contains(addr) {
            return Some(&self.arena_map);
        }
        self.buffers
            .iter()
            .find(|b| b.map.contains(addr))
            .map(|b| &b.map)
    }

    pub(super) fn map_of_mut(&mut self, addr: usize) -> &mut BlockMap {
        if self.arena_map.contains(addr) {
            return &mut self.arena_map;
        }
        let b = self.buffers.iter_mut().find(|b| b.map.contains(addr));
        &mut b.expect("a validated block lies in a region").map
    }

    /// Ok if a live block of `n`'s size starts at `p`: the one check of a caller's
    /// `(p, n)`. `n` is rounded with `checked_next_multiple_of`, `p` located by a map that
    /// contains it; a size of 0 is no block's.
    pub(super) fn validate(&self, p: usize, n: usize) -> Result<usize, AllocError> {
        let size = round_up(n, GRANULE).ok_or(AllocError::TooLarge { size: n })?;
        let map = self.map_of(p).ok_or(AllocError::Foreign { addr: p })?;
        let found = map.block_containing(p, self.max_block);
        if let Some((start, block_size)) = found.filter(|b| b.0 != p && (p - b.0) % GRANULE == 0) {
            return Err(AllocError::Interior {
                addr: p,
                start,
                size: block_size,
            });
        }
        if size == 0 {
            return Err(match found {
                Some((start, block_size)) if start == p => AllocError::SizeMismatch {
                    addr: p,
                    size: n,
                    block_size,
                },
                _ => AllocError::NotLive { addr: p },
            });
        }
        map.check(p, size, self.max_block.max(size))?;
        Ok(size)
    }

    pub(super) fn is_claimed(&self, p: usize) -> bool {
        self.map_of(p).is_some_and(|m| m.is_claimed(p))
    }

    /// Ok if neither a view, a move nor a container holds the block at `p`.
    pub(super) fn check_free_to_use(&self, p: usize) -> Result<(), AllocError> {
        if self.moving.contains(&p) {
            Err(AllocError::Moving { addr: p })
        } else if self.pins.contains_key(&p) {
            Err(AllocError::Pinned { addr: p })
        } else if self.is_claimed(p) {
            Err(AllocError::Claimed { addr: p })
        } else {
            Ok(())
        }
    }

    /// Whether a live block starts at `p`.
    pub(super) fn starts_block(&self, p: usize) -> bool {
        self.block_containing(p).is_some_and(|b| b.0 == p)
    }

    pub(super) fn retire(&mut self, p: usize, size: usize) {
        let map = self.map_of_mut(p);
        map.set_claimed(p, false);
        map.unmark(p, size);
        self.stats.live_blocks -= 1;
        self.stats.live_bytes -= size;
        self.stats.deallocations += 1;
    }

    pub(super) fn block_containing(&self, addr: usize) -> Option<(usize, usize)> {
        self.map_of(addr)?.block_containing(addr, self.max_block)
    }

    /// Resizes the live block `p` of `old` bytes in place if it can: shrinking (the tail is
    /// retired with it), or growing the topmost block of the current region by its break.
    pub(super) fn resize_in_place(&mut self, p: usize, old: usize, new: usize) -> bool {
        let grow = new.saturating_sub(old);
        if grow > 0 {
            let extended = match self.buffers.last_mut() {
                Some(buf) if p + old == buf.base + buf.used && buf.used + grow <= buf.len => {
                    buf.used += grow;
                    true
                }
                Some(_) => false,
                None => {
                    p + old == self.arena.base() + self.arena.used()
                        && self.arena.sbrk(grow).is_some()
                }
            };
            if !extended {
                return false;
            }
        }
        let map = self.map_of_mut(p);
        map.unmark(p, old);
        map.mark(p, new);
        self.max_block = self.max_block.max(new);
        self.stats.live_bytes = self.stats.live_bytes - old + new;
        true
    }

    pub(super) fn live_blocks(&self) -> Vec<(usize, usize)> {
        let mut out = self.arena_map.live_blocks();
        for b in &self.buffers {
            out.extend(b.map.live_blocks());
        }
        out
    }
}
