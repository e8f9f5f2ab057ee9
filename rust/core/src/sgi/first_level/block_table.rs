//! The first level's table of small live blocks: open addressing with linear probing, one
//! `u64` per slot, no allocation per entry and no tombstones (deletion shifts the cluster
//! back), so a lookup, an insertion and a removal are O(1) expected and a live block costs
//! 8 / load = 10 to 15 bytes.
//!
//! A slot packs a block's start, size, owner and claimed bit:
//! `slot = (addr >> 4) << 21 | claimed << 20 | owner << 10 | (size - 1)`, with `addr % 16 == 0`,
//! `addr < 2^47`, `1 <= size <= MAX_SIZE`, `owner < MAX_OWNERS`; 0 is an empty slot (no block
//! starts below 16). A block that does not pack (`Entry::packs`) is kept elsewhere.
//!
//! Invariants (`check_invariants`, run by the tests), with `cap = slots.len()`:
//! - `len == |{i : slots[i] != 0}|` and `5 * len <= 4 * cap` (load at most 0.8);
//! - no two slots hold the same address;
//! - every entry is reachable from its home: no empty slot lies cyclically in
//!   `[home(addr), i)`, so a lookup may stop at the first empty slot.

/// The largest size a packed block can have; it bounds the interior lookup to
/// `MAX_SIZE / 16` probes.
pub(crate) const MAX_SIZE: usize = 1024;
/// Owners with a slot index below this pack; the others' blocks are kept elsewhere.
pub(crate) const MAX_OWNERS: usize = 1024;
const ADDR_LIMIT: usize = 1 << 47;
const GRANULE: usize = 16;
const REGION: usize = 256;
const KEY_SHIFT: u32 = 21;
const CLAIMED: u64 = 1 << 20;
/// At least `REGION / GRANULE`, so that a home is below `2 * cap`.
const MIN_CAP: usize = 16;
const _: () = assert!(MIN_CAP >= REGION / GRANULE);

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
    fn pack(&self, addr: usize) -> u64 {
        debug_assert!(self.packs(addr));
        ((addr / GRANULE) as u64) << KEY_SHIFT
            | if self.claimed { CLAIMED } else { 0 }
            | (self.owner as u64) << 10
            | (self.size - 1) as u64
    }

    #[inline]
    fn unpack(slot: u64) -> (usize, Entry) {
        let entry = Entry {
            size: (slot & 0x3ff) as usize + 1,
            owner: (slot >> 10 & 0x3ff) as usize,
            claimed: slot & CLAIMED != 0,
        };
        (address(slot), entry)
    }
}

/// Whether a block may start at `addr` in this table: other addresses are never looked for,
/// so that `p + 8` never matches the key of `p`.
#[inline]
fn is_key(addr: usize) -> bool {
    addr >= GRANULE && addr % GRANULE == 0 && addr < ADDR_LIMIT
}

#[inline]
fn address(slot: u64) -> usize {
    (slot >> KEY_SHIFT) as usize * GRANULE
}

pub(crate) struct BlockTable {
    slots: Vec<u64>,
    len: usize,
}

impl BlockTable {
    pub const fn new() -> Self {
        Self {
            slots: Vec::new(),
            len: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The slot a block at `addr` is looked for first. The blocks of one 256-byte region
    /// (at most 16) get consecutive homes, so that blocks malloc hands out one after the
    /// other — a growing list's nodes — share cache lines of the table; regions are
    /// spread by Fibonacci hashing, whose high half of a 128-bit product maps onto any
    /// capacity.
    #[inline]
    fn home(addr: usize, cap: usize) -> usize {
        let hash = ((addr / REGION) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let base = ((hash as u128 * cap as u128) >> 64) as usize;
        let home = base + addr % REGION / GRANULE;
        if home >= cap {
            home - cap
        } else {
            home
        }
    }

    #[inline]
    fn next(i: usize, cap: usize) -> usize {
        if i + 1 == cap {
            0
        } else {
            i + 1
        }
    }

    /// `Ok(i)` if slot `i` holds `addr`; `Err(i)` with `i` the empty slot ending its probe.
    #[inline]
    fn find(&self, addr: usize) -> Option<Result<usize, usize>> {
        let cap = self.slots.len();
        if cap == 0 || !is_key(addr) {
            return None;
        }
        let key = (addr / GRANULE) as u64;
        let mut i = Self::home(addr, cap);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return Some(Err(i));
            }
            if slot >> KEY_SHIFT == key {
                return Some(Ok(i));
            }
            i = Self::next(i, cap);
        }
    }

    pub fn get(&self, addr: usize) -> Option<Entry> {
        self.lookup(addr).map(|(_, e)| e)
    }

    /// The slot holding `addr` and its entry, for `remove_at`.
    #[inline]
    pub fn lookup(&self, addr: usize) -> Option<(usize, Entry)> {
        match self.find(addr)? {
            Ok(i) => Some((i, Entry::unpack(self.slots[i]).1)),
            Err(_) => None,
        }
    }

    /// Makes room for one more entry; false if the memory for it could not be had (then
    /// the table is unchanged).
    #[inline]
    pub fn reserve_one(&mut self) -> bool {
        let cap = self.slots.len();
        if 5 * (self.len + 1) <= 4 * cap {
            return true;
        }
        self.resize((cap + cap / 2).max(MIN_CAP))
    }

    /// Adds the block at `addr`, which must pack and be absent, into room `reserve_one`
    /// made.
    #[inline]
    pub fn insert(&mut self, addr: usize, entry: Entry) {
        assert!(
            entry.packs(addr) && 5 * (self.len + 1) <= 4 * self.slots.len(),
            "insert after reserve_one, of a block that packs"
        );
        match self.find(addr) {
            Some(Err(i)) => self.slots[i] = entry.pack(addr),
            _ => panic!("block {addr:#x} is already in the table"),
        }
        self.len += 1;
    }

    /// Overwrites the entry of the block at `addr`, if the table holds it.
    pub fn replace(&mut self, addr: usize, entry: Entry) -> bool {
        match self.find(addr) {
            Some(Ok(i)) if entry.packs(addr) => {
                self.slots[i] = entry.pack(addr);
                true
            }
            _ => false,
        }
    }

    pub fn remove(&mut self, addr: usize) -> Option<Entry> {
        let (slot, entry) = self.lookup(addr)?;
        self.remove_at(slot);
        Some(entry)
    }

    /// Empties slot `hole`, which `lookup` returned with no change to the table since.
    #[inline]
    pub fn remove_at(&mut self, mut hole: usize) {
        let cap = self.slots.len();
        // Backward shift: move later entries of the cluster into the hole when that keeps
        // them reachable, i.e. when their home is not cyclically in (hole, j].
        let mut j = Self::next(hole, cap);
        while self.slots[j] != 0 {
            let home = Self::home(address(self.slots[j]), cap);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
            j = Self::next(j, cap);
        }
        self.slots[hole] = 0;
        self.len -= 1;
        if cap > MIN_CAP && 8 * self.len < cap {
            // Best effort: a failed shrink keeps the larger table, which stays valid.
            self.resize((cap / 2).max(MIN_CAP));
        }
    }

    /// Rehashes every entry into `cap` slots; false (and unchanged) if they cannot be had.
    fn resize(&mut self, cap: usize) -> bool {
        let mut slots = Vec::new();
        if slots.try_reserve_exact(cap).is_err() {
            return false;
        }
        slots.resize(cap, 0);
        for &slot in self.slots.iter().filter(|&&s| s != 0) {
            let mut i = Self::home(address(slot), cap);
            while slots[i] != 0 {
                i = Self::next(i, cap);
            }
            slots[i] = slot;
        }
        self.slots = slots;
        true
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
        self.slots
            .iter()
            .filter(|&&s| s != 0)
            .map(|&s| Entry::unpack(s))
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[cfg(test)]
    pub fn check_invariants(&self) {
        let cap = self.slots.len();
        let used = self.slots.iter().filter(|&&s| s != 0).count();
        assert_eq!(self.len, used);
        assert!(5 * self.len <= 4 * cap || cap == 0);
        let mut seen = std::collections::HashSet::new();
        for (i, &slot) in self.slots.iter().enumerate() {
            if slot == 0 {
                continue;
            }
            let addr = address(slot);
            assert!(seen.insert(addr), "{addr:#x} twice");
            let mut k = Self::home(addr, cap);
            while k != i {
                assert_ne!(self.slots[k], 0, "{addr:#x} unreachable from its home");
                k = Self::next(k, cap);
            }
        }
    }
}

#[cfg(test)]
mod tests;
