//! The first level's table of small live blocks: a radix tree over addresses, as a page
//! table is, so that a lookup, an insertion and a removal are a walk of four nodes, with no
//! hashing, no probing and no table-wide rehash ever (a hash table's growth and shrinking
//! rehash every entry again and again as a container grows and is freed).
//!
//! A block is one `u32` slot in the leaf covering its start. A slot stands for a 32-byte
//! window of addresses: glibc's smallest chunk is 32 bytes, so no two blocks it hands out
//! start in one window (should another malloc do so, the second block is kept elsewhere).
//! An address splits as `addr = root << 35 | mid << 23 | bottom << 11 | leaf << 5 | half << 4`,
//! with `addr % 16 == 0`, `16 <= addr < 2^47`: the root has `2^12` entries, a mid and a
//! bottom node `2^12`, a leaf `2^6` slots (a leaf covers 2 KiB of addresses: blocks malloc
//! hands out one after the other share its cache lines).
//! `slot = LIVE | half << 21 | claimed << 20 | owner << 10 | (size - 1)`, with
//! `1 <= size <= MAX_SIZE`, `owner < MAX_OWNERS`; 0 is no block. A block that does not pack
//! (`Entry::packs`) is kept elsewhere.
//!
//! The leaf last found or made is *hot*: a call for an address it covers goes straight to
//! it, with no walk (a growing container's nodes, a list freed in order, an allocate/free
//! loop all stay in one leaf for up to 64 calls in a row; a walk is four dependent loads,
//! each a likely cache miss with a million blocks live).
//!
//! Memory: a dense heap of 32-byte chunks costs 272 / 64 = 4.25 bytes of leaf per block.
//! Leaves go when their last block goes and they are no longer hot (one empty leaf is kept
//! as a spare, so that blocks coming and going across leaves allocate no leaf); mid and
//! bottom nodes stay once made, 32 KiB per 4 MiB of addresses that ever held a small block
//! (0.8% of that span).
//!
//! Invariants (`check_invariants`, run by the tests):
//! - `len == |{nonzero slots}|`;
//! - every leaf present in a bottom node has `live == |{nonzero slots of it}|`, and
//!   `live > 0` unless it is the hot leaf;
//! - `hot_span == NO_SPAN`, or the leaf covering `[hot_span * LEAF_SPAN, +LEAF_SPAN)` is
//!   present and `hot` points to it;
//! - the spare leaf, if any, is all zero.

use std::alloc::Layout;
use std::ptr::NonNull;

/// The largest size a packed block can have; it bounds the interior lookup to
/// `MAX_SIZE / 16` probes.
pub(crate) const MAX_SIZE: usize = 1024;
/// Owners with a slot index below this pack; the others' blocks are kept elsewhere.
pub(crate) const MAX_OWNERS: usize = 1024;
const ADDR_LIMIT: usize = 1 << 47;
const GRANULE: usize = 16;
const WINDOW: usize = 32;
const LEAF_BITS: u32 = 6;
const NODE_BITS: u32 = 12;
const ROOT_BITS: u32 = 47 - 5 - LEAF_BITS - 2 * NODE_BITS;
const LEAF_SLOTS: usize = 1 << LEAF_BITS;
const NODE_SLOTS: usize = 1 << NODE_BITS;
const ROOT_SLOTS: usize = 1 << ROOT_BITS;
/// Bytes of addresses one leaf covers.
const LEAF_SPAN: usize = WINDOW * LEAF_SLOTS;
/// `hot_span` when no leaf is hot: no key (`< ADDR_LIMIT`) is in this span.
const NO_SPAN: usize = usize::MAX;
const LIVE: u32 = 1 << 31;
const CLAIMED: u32 = 1 << 20;
/// The block starts 16 bytes into its window.
const HALF: u32 = 1 << 21;

/// What the table knows of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub size: usize,
    pub owner: usize,
    pub claimed: bool,
}

impl Entry {
    /// Whether a block at `addr` with this entry fits in one slot.
    #[inline]
    pub fn packs(&self, addr: usize) -> bool {
        is_key(addr) && (1..=MAX_SIZE).contains(&self.size) && self.owner < MAX_OWNERS
    }

    #[inline]
    fn pack(&self, addr: usize) -> u32 {
        LIVE | half(addr)
            | if self.claimed { CLAIMED } else { 0 }
            | (self.owner as u32) << 10
            | (self.size - 1) as u32
    }

    #[inline]
    fn unpack(slot: u32) -> Entry {
        Entry {
            size: (slot & 0x3ff) as usize + 1,
            owner: (slot >> 10 & 0x3ff) as usize,
            claimed: slot & CLAIMED != 0,
        }
    }
}

/// Whether a block may start at `addr` in this table: other addresses are never looked for,
/// so that `p + 8` never matches the slot of `p`.
#[inline]
fn is_key(addr: usize) -> bool {
    addr >= GRANULE && addr % GRANULE == 0 && addr < ADDR_LIMIT
}

/// `HALF` if a block at `addr` starts in the second half of its window.
#[inline]
fn half(addr: usize) -> u32 {
    if addr % WINDOW == 0 {
        0
    } else {
        HALF
    }
}

/// Whether `slot` holds the block that starts at `addr` (and not another block of its
/// window).
#[inline]
fn holds(slot: u32, addr: usize) -> bool {
    slot != 0 && slot & HALF == half(addr)
}

/// The indices of `addr`, a key, in the root, a mid node, a bottom node and a leaf.
#[inline]
fn split(addr: usize) -> [usize; 4] {
    let g = addr / WINDOW;
    let node = NODE_SLOTS - 1;
    [
        g >> (LEAF_BITS + 2 * NODE_BITS),
        g >> (LEAF_BITS + NODE_BITS) & node,
        g >> LEAF_BITS & node,
        g & (LEAF_SLOTS - 1),
    ]
}

/// The start of the window with these indices.
#[inline]
fn join([r, m, b, l]: [usize; 4]) -> usize {
    (((r << NODE_BITS | m) << NODE_BITS | b) << LEAF_BITS | l) * WINDOW
}

struct Leaf {
    slots: [u32; LEAF_SLOTS],
    live: u32,
}

/// Owns its leaves (made by `Box::into_raw`), held as pointers so that the hot leaf's
/// pointer stays valid whichever of the two reaches the leaf (a `Box` would claim unique
/// access each time it is used).
struct Bottom {
    leaves: [Option<NonNull<Leaf>>; NODE_SLOTS],
}

impl Drop for Bottom {
    fn drop(&mut self) {
        for leaf in self.leaves.iter_mut().filter_map(Option::take) {
            // SAFETY: a present leaf came from `Box::into_raw` and only this node owns it;
            // taken out above, so it is freed once.
            drop(unsafe { Box::from_raw(leaf.as_ptr()) });
        }
    }
}

struct Mid {
    bottoms: [Option<Box<Bottom>>; NODE_SLOTS],
}

struct Root {
    mids: [Option<Box<Mid>>; ROOT_SLOTS],
}

/// # Safety
/// A value of the type whose bytes are all zero is valid (an empty node).
unsafe trait Zeroed {}
// SAFETY: integers, `Option<Box<_>>` and `Option<NonNull<_>>` (null is `None`) are valid
// all zero.
unsafe impl Zeroed for Leaf {}
// SAFETY: as above.
unsafe impl Zeroed for Bottom {}
// SAFETY: as above.
unsafe impl Zeroed for Mid {}
// SAFETY: as above.
unsafe impl Zeroed for Root {}

/// An empty node from the global allocator, or `None` if it has no memory for one (so
/// that the table can refuse a block instead of aborting the process).
fn new_node<T: Zeroed>() -> Option<Box<T>> {
    let layout = Layout::new::<T>();
    const { assert!(size_of::<T>() > 0) };
    // SAFETY: the layout's size is not zero (asserted above).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    // SAFETY: a non-null `p` is a fresh allocation of `T`'s layout from the global
    // allocator, which `Box` frees with that layout; its zero bytes are a valid `T`.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
}

pub(crate) struct BlockTable {
    root: Option<Box<Root>>,
    /// An empty leaf, kept so that a block coming and going does not make and free one.
    spare: Option<Box<Leaf>>,
    /// `addr / LEAF_SPAN` of the addresses the hot leaf covers, or `NO_SPAN`.
    hot_span: usize,
    /// The hot leaf, owned by its bottom node; dangling when `hot_span == NO_SPAN`.
    hot: NonNull<Leaf>,
    len: usize,
}

// SAFETY: the table owns every node it points to (`hot` is a second pointer to a leaf of
// its own tree), so moving it to another thread moves all of them; it is reached only
// through `&`/`&mut` of the table.
unsafe impl Send for BlockTable {}

impl BlockTable {
    pub const fn new() -> Self {
        Self {
            root: None,
            spare: None,
            hot_span: NO_SPAN,
            hot: NonNull::dangling(),
            len: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The leaf covering `addr`, a key, if it is the hot one.
    #[inline(always)]
    fn hot_leaf(&self, addr: usize) -> Option<NonNull<Leaf>> {
        (addr / LEAF_SPAN == self.hot_span).then_some(self.hot)
    }

    /// The leaf covering `addr`, a key, found by a walk.
    #[inline]
    fn walk(&self, addr: usize) -> Option<NonNull<Leaf>> {
        let [r, m, b, _] = split(addr);
        let mid = self.root.as_ref()?.mids[r].as_ref()?;
        mid.bottoms[m].as_ref()?.leaves[b]
    }

    /// The leaf covering `addr`, a key, made hot.
    #[inline(always)]
    fn leaf_mut(&mut self, addr: usize) -> Option<&mut Leaf> {
        let leaf = match self.hot_leaf(addr) {
            Some(leaf) => leaf,
            None => self.find_leaf(addr)?,
        };
        // SAFETY: a leaf of this table's tree (hot or just found), which `&mut self` lets
        // no one else reach while the result lives.
        Some(unsafe { &mut *leaf.as_ptr() })
    }

    /// A walk to the leaf covering `addr`, a key, which becomes the hot leaf.
    #[cold]
    #[inline(never)]
    fn find_leaf(&mut self, addr: usize) -> Option<NonNull<Leaf>> {
        let leaf = self.walk(addr)?;
        self.make_hot(addr, leaf);
        Some(leaf)
    }

    /// Makes `leaf`, the one present for `addr`, hot; the leaf hot before goes if empty.
    fn make_hot(&mut self, addr: usize, leaf: NonNull<Leaf>) {
        if self.hot_span != NO_SPAN {
            // SAFETY: the hot leaf is present in the tree (invariant).
            if unsafe { leaf_live(self.hot) } == 0 {
                self.unlink(self.hot_span * LEAF_SPAN);
            }
        }
        self.hot_span = addr / LEAF_SPAN;
        self.hot = leaf;
    }

    /// Takes the empty leaf covering `addr` out of the tree, into the spare or freed.
    fn unlink(&mut self, addr: usize) {
        let [r, m, b, _] = split(addr);
        let holder = self.root.as_mut().and_then(|root| root.mids[r].as_mut());
        let holder = holder.and_then(|mid| mid.bottoms[m].as_mut());
        let Some(leaf) = holder.and_then(|bottom| bottom.leaves[b].take()) else {
            return;
        };
        if addr / LEAF_SPAN == self.hot_span {
            self.hot_span = NO_SPAN;
            self.hot = NonNull::dangling();
        }
        // SAFETY: the leaf came from `Box::into_raw` and was owned by its bottom node, out
        // of which it was just taken; the hot pointer to it, if any, was dropped above.
        let leaf = unsafe { Box::from_raw(leaf.as_ptr()) };
        debug_assert_eq!(leaf.live, 0);
        if self.spare.is_none() {
            self.spare = Some(leaf);
        }
    }

    #[inline]
    pub fn get(&self, addr: usize) -> Option<Entry> {
        if !is_key(addr) {
            return None;
        }
        let leaf = match self.hot_leaf(addr) {
            Some(leaf) => leaf,
            None => self.walk(addr)?,
        };
        // SAFETY: a leaf of this table's tree, read under `&self`, which no `&mut` to it
        // outlives.
        let slot = unsafe { (*leaf.as_ptr()).slots[slot_index(addr)] };
        holds(slot, addr).then(|| Entry::unpack(slot))
    }

    /// Adds the block at `addr`, which must pack and be absent; false if the memory for a
    /// node could not be had or another block starts in its window (then the table holds
    /// the same blocks as before).
    #[inline(always)]
    pub fn insert(&mut self, addr: usize, entry: Entry) -> bool {
        debug_assert!(entry.packs(addr), "insert of a block that packs");
        let leaf = match self.hot_leaf(addr) {
            Some(leaf) => leaf,
            None => match self.make_leaf(addr) {
                Some(leaf) => leaf,
                None => return false,
            },
        };
        // SAFETY: a leaf of this table's tree, which `&mut self` lets no one else reach.
        let leaf = unsafe { &mut *leaf.as_ptr() };
        let l = slot_index(addr);
        let slot = leaf.slots[l];
        if slot != 0 {
            assert!(
                !holds(slot, addr),
                "block {addr:#x} is already in the table"
            );
            return false;
        }
        leaf.slots[l] = entry.pack(addr);
        leaf.live += 1;
        self.len += 1;
        true
    }

    /// The leaf covering `addr`, a key, found or made (nodes on the way too), made hot;
    /// `None` without memory for a node.
    #[cold]
    #[inline(never)]
    fn make_leaf(&mut self, addr: usize) -> Option<NonNull<Leaf>> {
        let [r, m, b, _] = split(addr);
        let root = get_or_make(&mut self.root)?;
        let mid = get_or_make(&mut root.mids[r])?;
        let bottom = get_or_make(&mut mid.bottoms[m])?;
        let holder = &mut bottom.leaves[b];
        let leaf = match *holder {
            Some(leaf) => leaf,
            None => {
                let fresh = self.spare.take().or_else(new_node)?;
                *holder.insert(NonNull::from(Box::leak(fresh)))
            }
        };
        self.make_hot(addr, leaf);
        Some(leaf)
    }

    /// Overwrites the entry of the block at `addr` with one that packs, if the table holds
    /// it.
    pub fn replace(&mut self, addr: usize, entry: Entry) -> bool {
        if !entry.packs(addr) {
            return false;
        }
        let Some(leaf) = self.leaf_mut(addr) else {
            return false;
        };
        let l = slot_index(addr);
        if !holds(leaf.slots[l], addr) {
            return false;
        }
        leaf.slots[l] = entry.pack(addr);
        true
    }

    pub fn remove(&mut self, addr: usize) -> Option<Entry> {
        self.remove_if(addr, |_| Ok::<(), ()>(()))
            .map(|r| r.expect("accepted"))
    }

    /// Removes the block at `addr` if `accept` takes its entry: `None` if no block is
    /// there, `Some(Err)` (and the block stays) if `accept` refuses it.
    #[inline(always)]
    pub fn remove_if<E>(
        &mut self,
        addr: usize,
        accept: impl FnOnce(Entry) -> Result<(), E>,
    ) -> Option<Result<Entry, E>> {
        if !is_key(addr) {
            return None;
        }
        let leaf = self.leaf_mut(addr)?;
        let l = slot_index(addr);
        let slot = leaf.slots[l];
        if !holds(slot, addr) {
            return None;
        }
        let entry = Entry::unpack(slot);
        if let Err(e) = accept(entry) {
            return Some(Err(e));
        }
        // An emptied leaf stays while it is hot (an allocate/free loop reuses it at once),
        // and goes when another leaf becomes hot (`make_hot`).
        leaf.slots[l] = 0;
        leaf.live -= 1;
        self.len -= 1;
        Some(Ok(entry))
    }

    /// The block holding `addr`, if one of this table does: it starts at most
    /// `MAX_SIZE - 1` bytes below, on a multiple of 16, and blocks never overlap, so the
    /// first block found below `addr` is the only candidate.
    pub fn containing(&self, addr: usize) -> Option<(usize, Entry)> {
        if self.len == 0 || addr >= ADDR_LIMIT + MAX_SIZE {
            return None;
        }
        let lowest = addr.saturating_sub(MAX_SIZE - 1).max(GRANULE);
        let mut start = addr - addr % GRANULE;
        while start >= lowest {
            if let Some(entry) = self.get(start) {
                return (addr < start + entry.size).then_some((start, entry));
            }
            start -= GRANULE;
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = (usize, Entry)> + '_ {
        let mids = self.root.iter().flat_map(|root| present(&root.mids));
        let bottoms =
            mids.flat_map(|(r, mid)| present(&mid.bottoms).map(move |(m, b)| ([r, m], b)));
        let leaves = bottoms
            .flat_map(|([r, m], bottom)| present_leaves(bottom).map(move |(b, l)| ([r, m, b], l)));
        leaves.flat_map(|([r, m, b], leaf)| {
            let slots = leaf.slots.iter().enumerate().filter(|(_, &s)| s != 0);
            slots.map(move |(l, &s)| {
                let start = join([r, m, b, l]) + if s & HALF == 0 { 0 } else { GRANULE };
                (start, Entry::unpack(s))
            })
        })
    }

    #[cfg(test)]
    pub fn leaves(&self) -> usize {
        let mids = self.root.iter().flat_map(|root| present(&root.mids));
        let bottoms = mids.flat_map(|(_, mid)| present(&mid.bottoms));
        bottoms.map(|(_, b)| present_leaves(b).count()).sum()
    }

    #[cfg(test)]
    pub fn check_invariants(&self) {
        let mids = self.root.iter().flat_map(|root| present(&root.mids));
        let bottoms = mids.flat_map(|(_, mid)| present(&mid.bottoms));
        let mut used = 0;
        for (_, bottom) in bottoms {
            for (_, leaf) in present_leaves(bottom) {
                let live = leaf.slots.iter().filter(|&&s| s != 0).count();
                let hot = std::ptr::eq(leaf, self.hot.as_ptr());
                assert!(
                    live > 0 || hot,
                    "an empty leaf, not hot, is kept in the tree"
                );
                assert_eq!(leaf.live as usize, live);
                used += live;
            }
        }
        assert_eq!(self.len, used);
        if self.hot_span != NO_SPAN {
            let found = self.walk(self.hot_span * LEAF_SPAN);
            assert_eq!(found, Some(self.hot), "the hot leaf is the one of its span");
        }
        if let Some(spare) = &self.spare {
            assert!(spare.live == 0 && spare.slots.iter().all(|&s| s == 0));
        }
    }
}

/// The index of the slot of `addr` in its leaf.
#[inline(always)]
fn slot_index(addr: usize) -> usize {
    addr / WINDOW % LEAF_SLOTS
}

/// The live blocks of a leaf, the hot one possibly.
///
/// # Safety
/// `leaf` is present in a table that no `&mut` reaches now.
#[inline]
unsafe fn leaf_live(leaf: NonNull<Leaf>) -> u32 {
    // SAFETY: as the caller promises.
    unsafe { (*leaf.as_ptr()).live }
}

/// The node in `holder`, made empty if there is none; `None` without memory for it.
#[inline]
fn get_or_make<T: Zeroed>(holder: &mut Option<Box<T>>) -> Option<&mut T> {
    if holder.is_none() {
        *holder = new_node();
    }
    holder.as_deref_mut()
}

fn present<T>(nodes: &[Option<Box<T>>]) -> impl Iterator<Item = (usize, &T)> {
    nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.as_deref().map(|n| (i, n)))
}

fn present_leaves(bottom: &Bottom) -> impl Iterator<Item = (usize, &Leaf)> {
    let leaves = bottom.leaves.iter().enumerate();
    leaves.filter_map(|(i, leaf)| {
        // SAFETY: a leaf its bottom node owns, read under `&` of that node.
        leaf.map(|leaf| (i, unsafe { &*leaf.as_ptr() }))
    })
}

#[cfg(test)]
mod tests;
