//! The process-wide record of live first-level blocks and of the allocators that own them.
//!
//! A block that packs into one slot (small, unpinned, not a pool's, of one of the first
//! `MAX_OWNERS` owners: almost every block) lives in `packed`, a radix tree over addresses;
//! the rest in `spilled`, ordered by address.
//!
//! Invariants (checked in tests by `check_invariants`):
//! - `packed ∩ spilled = ∅` (by address), and a block is in `packed` iff it packs (or
//!   in `spilled` though it packs when the table had no memory for a node as it was placed,
//!   or another block started in its 32-byte window, which glibc's chunks never do);
//! - for every owner `o`: `stats[o].live_blocks == |{b : b.owner == o}|`,
//!   `stats[o].live_bytes == Σ_{b.owner == o} b.size <= limit[o]`,
//!   `stats[o].allocations - stats[o].deallocations == stats[o].live_blocks`;
//! - the owner of every block has a record; a record whose allocator is gone has blocks.

use super::block_table::{BlockTable, Entry};
use super::MallocStats;
use crate::error::AllocError;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block {
    pub size: usize,
    /// Index of the owner's record: whose statistics and limit the block counts against.
    pub owner: usize,
    /// Views exporting the block, and pools holding it as a chunk or large block.
    pub pins: usize,
    /// Held by a container: only `deallocate_claimed` frees it.
    pub claimed: bool,
    /// A pool's chunk or large block: never exposed (a view would let Python code
    /// overwrite the pool's free-list links).
    pub pool_held: bool,
}

impl Block {
    #[inline(always)]
    fn packed(&self, addr: usize) -> Option<Entry> {
        let entry = Entry {
            size: self.size,
            owner: self.owner,
            claimed: self.claimed,
        };
        (self.pins == 0 && !self.pool_held && entry.packs(addr)).then_some(entry)
    }

    /// Whether the block at `p` may be freed or moved as one of `n` bytes by a caller
    /// holding `pins` of its pins.
    #[inline]
    pub fn check(&self, p: usize, n: usize, pins: usize) -> Result<(), AllocError> {
        if self.size != n {
            Err(AllocError::SizeMismatch {
                addr: p,
                size: n,
                block_size: self.size,
            })
        } else if self.pins > pins {
            Err(AllocError::Pinned { addr: p })
        } else if self.claimed {
            Err(AllocError::Claimed { addr: p })
        } else {
            Ok(())
        }
    }

    fn from_entry(e: Entry) -> Self {
        Block {
            size: e.size,
            owner: e.owner,
            pins: 0,
            claimed: e.claimed,
            pool_held: false,
        }
    }
}

/// Records in `spilled` the block at `p`, which is not recorded. Out of line, its block
/// in registers: the common allocation packs, and an inlined B-tree insertion, or a block
/// passed in memory, made it keep the block's fields on the stack and read them back.
#[cold]
#[inline(never)]
fn spill(
    spilled: &mut BTreeMap<usize, Block>,
    p: usize,
    size: usize,
    owner: usize,
    pins: usize,
    claimed: bool,
    pool_held: bool,
) {
    let b = Block {
        size,
        owner,
        pins,
        claimed,
        pool_held,
    };
    spilled.insert(p, b);
}

/// `spill` of a whole block.
#[inline(always)]
fn spill_block(spilled: &mut BTreeMap<usize, Block>, p: usize, b: Block) {
    let Block {
        size,
        owner,
        pins,
        claimed,
        pool_held,
    } = b;
    spill(spilled, p, size, owner, pins, claimed, pool_held);
}

pub(super) struct Owner {
    pub stats: MallocStats,
    pub limit: Option<usize>,
    /// False once the allocator is dropped: its record stays while a view or a container
    /// still holds one of its blocks, and goes with the last of them.
    pub alive: bool,
}

pub(super) struct Registry {
    packed: BlockTable,
    spilled: BTreeMap<usize, Block>,
    owners: Vec<Option<Owner>>,
    /// Indices of `owners` that are free for a new allocator.
    vacant: Vec<usize>,
}

impl Registry {
    pub const fn new() -> Self {
        Self {
            packed: BlockTable::new(),
            spilled: BTreeMap::new(),
            owners: Vec::new(),
            vacant: Vec::new(),
        }
    }

    /// Records a new allocator; returns its owner index.
    pub fn add_owner(&mut self, limit: Option<usize>) -> usize {
        let owner = Owner {
            stats: MallocStats::default(),
            limit,
            alive: true,
        };
        // Lowest indices first, so that blocks pack while fewer than MAX_OWNERS live.
        self.vacant.sort_unstable_by(|a, b| b.cmp(a));
        match self.vacant.pop() {
            Some(i) => {
                self.owners[i] = Some(owner);
                i
            }
            None => {
                self.owners.push(Some(owner));
                self.owners.len() - 1
            }
        }
    }

    #[inline]
    pub fn owner(&self, i: usize) -> &Owner {
        self.owners[i]
            .as_ref()
            .expect("a block's owner has a record")
    }

    #[inline]
    pub fn owner_mut(&mut self, i: usize) -> &mut Owner {
        self.owners[i]
            .as_mut()
            .expect("a block's owner has a record")
    }

    #[inline]
    pub fn stats_mut(&mut self, i: usize) -> &mut MallocStats {
        &mut self.owner_mut(i).stats
    }

    /// Drops the record of owner `i` if its allocator is gone and it has no block left.
    #[inline]
    pub fn retire_if_done(&mut self, i: usize) {
        let Some(o) = &self.owners[i] else { return };
        if !o.alive && o.stats.live_blocks == 0 {
            self.owners[i] = None;
            self.vacant.push(i);
        }
    }

    /// True if `owner` may hold `n` more bytes once `freed` are given back.
    #[inline]
    pub fn within_limit(&self, owner: usize, freed: usize, n: usize) -> bool {
        let o = self.owner(owner);
        o.limit
            .is_none_or(|limit| o.stats.live_bytes - freed + n <= limit)
    }

    pub fn get(&self, p: usize) -> Option<Block> {
        match self.packed.get(p) {
            Some(e) => Some(Block::from_entry(e)),
            None if self.spilled.is_empty() => None,
            None => self.spilled.get(&p).copied(),
        }
    }

    /// A new block `b` for its owner, at the address `make` returns, recorded and counted;
    /// `None` (and nothing changed) if the owner's limit refuses `b.size` more bytes or
    /// `make` fails. One look at the owner's record, for the common allocation.
    #[inline(always)]
    pub fn admit(&mut self, b: Block, make: impl FnOnce() -> Option<usize>) -> Option<usize> {
        let o = self.owners[b.owner]
            .as_mut()
            .expect("a block's owner has a record");
        if o.limit
            .is_some_and(|limit| o.stats.live_bytes + b.size > limit)
        {
            return None;
        }
        let p = make()?;
        if !b.packed(p).is_some_and(|e| self.packed.insert(p, e)) {
            spill_block(&mut self.spilled, p, b);
        }
        o.stats.live_blocks += 1;
        o.stats.live_bytes += b.size;
        o.stats.allocations += 1;
        Some(p)
    }

    /// Records the block at `p`, which is not recorded: in `packed` if it packs and the
    /// table has (or can get) the memory for it, else in `spilled`.
    #[inline]
    pub fn place(&mut self, p: usize, b: Block) {
        if !b.packed(p).is_some_and(|e| self.packed.insert(p, e)) {
            spill_block(&mut self.spilled, p, b);
        }
    }

    /// Removes the record of the block at `p`.
    pub fn take(&mut self, p: usize) -> Option<Block> {
        match self.packed.remove(p) {
            Some(e) => Some(Block::from_entry(e)),
            None => self.spilled.remove(&p),
        }
    }

    /// Changes the record of the live block at `p`, moving it between `packed` and
    /// `spilled` as it comes to pack or not; false if no block is live there.
    pub fn update(&mut self, p: usize, change: impl FnOnce(&mut Block)) -> bool {
        let Some(mut b) = self.get(p) else {
            return false;
        };
        change(&mut b);
        match b.packed(p) {
            Some(e) if self.packed.replace(p, e) => {}
            _ => {
                self.take(p);
                self.place(p, b);
            }
        }
        true
    }

    /// The live block at `p` of exactly `n` bytes with no more than `pins` pins.
    pub fn check(&self, p: usize, n: usize, pins: usize) -> Result<Block, AllocError> {
        let b = self.get(p).ok_or(AllocError::NotLive { addr: p })?;
        b.check(p, n, pins)?;
        Ok(b)
    }

    /// Forgets the live block at `p` and counts it freed if `accept` takes it; with one
    /// lookup when the block is packed (the common free). `NotLive` if no block is there.
    #[inline(always)]
    pub fn forget_if(
        &mut self,
        p: usize,
        accept: impl Fn(&Block) -> Result<(), AllocError>,
    ) -> Result<(), AllocError> {
        if let Some(taken) = self.packed.remove_if(p, |e| accept(&Block::from_entry(e))) {
            self.count_freed(Block::from_entry(taken?));
            return Ok(());
        }
        self.forget_spilled_if(p, accept)
    }

    /// `forget_if` for a block not in `packed`: out of line, as `spill`.
    #[cold]
    #[inline(never)]
    fn forget_spilled_if(
        &mut self,
        p: usize,
        accept: impl Fn(&Block) -> Result<(), AllocError>,
    ) -> Result<(), AllocError> {
        let b = self.get(p).ok_or(AllocError::NotLive { addr: p })?;
        accept(&b)?;
        self.forget(p);
        Ok(())
    }

    /// Forgets the live block at `p` and counts it freed.
    pub fn forget(&mut self, p: usize) -> Block {
        let b = self.take(p).expect("checked as live");
        self.count_freed(b);
        b
    }

    /// Counts `b` freed, retiring its owner's record if that was its last block and the
    /// allocator is gone: one look at the record.
    #[inline]
    fn count_freed(&mut self, b: Block) {
        let record = &mut self.owners[b.owner];
        let o = record.as_mut().expect("a block's owner has a record");
        o.stats.live_blocks -= 1;
        o.stats.live_bytes -= b.size;
        o.stats.deallocations += 1;
        if !o.alive && o.stats.live_blocks == 0 {
            *record = None;
            self.vacant.push(b.owner);
        }
    }

    /// `(start, size)` of the live block containing `addr`.
    pub fn containing(&self, addr: usize) -> Option<(usize, usize)> {
        if let Some((start, e)) = self.packed.containing(addr) {
            return Some((start, e.size));
        }
        let (&start, b) = self.spilled.range(..=addr).next_back()?;
        (addr - start < b.size).then_some((start, b.size))
    }

    /// The start of every block of `owner`.
    pub fn blocks_of(&self, owner: usize) -> Vec<usize> {
        let packed = self.packed.iter().filter(|(_, e)| e.owner == owner);
        let spilled = self.spilled.iter().filter(|(_, b)| b.owner == owner);
        packed
            .map(|(p, _)| p)
            .chain(spilled.map(|(&p, _)| p))
            .collect()
    }

    #[cfg(test)]
    pub fn is_packed(&self, p: usize) -> bool {
        self.packed.get(p).is_some()
    }

    #[cfg(test)]
    pub fn check_invariants(&self) {
        self.packed.check_invariants();
        let mut counted = BTreeMap::<usize, (usize, usize)>::new();
        let packed = self.packed.iter().map(|(p, e)| (p, Block::from_entry(e)));
        let spilled = self.spilled.iter().map(|(&p, &b)| (p, b));
        for (p, b) in packed.chain(spilled) {
            let in_packed = self.packed.get(p).is_some();
            // No test runs the table out of memory, so placement is exact.
            assert_eq!(in_packed, b.packed(p).is_some(), "{p:#x} in the wrong map");
            assert!(
                !(in_packed && self.spilled.contains_key(&p)),
                "{p:#x} twice"
            );
            let c = counted.entry(b.owner).or_default();
            c.0 += 1;
            c.1 += b.size;
        }
        for (i, o) in self.owners.iter().enumerate() {
            let Some(o) = o else { continue };
            let (blocks, bytes) = counted.remove(&i).unwrap_or_default();
            assert_eq!((o.stats.live_blocks, o.stats.live_bytes), (blocks, bytes));
            assert_eq!(o.stats.allocations - o.stats.deallocations, blocks as u64);
            assert!(o.limit.is_none_or(|l| bytes <= l));
            assert!(o.alive || blocks > 0, "owner {i} gone and empty, yet kept");
        }
        assert!(counted.is_empty(), "blocks without an owner: {counted:?}");
    }
}
