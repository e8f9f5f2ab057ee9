//! The model the allocator targets are checked against, after every step.
//!
//! A program is a list of `Op`s over any `BlockAllocator`, with arbitrary addresses and
//! sizes (the live blocks, inside them, freed ones, the region's edges, any `u64`). The
//! model predicts, for each call, whether it must succeed; a call that must fail has to
//! fail and leave the allocator's statistics exactly as they were; one that must succeed
//! has to, and a block's bytes stay what was written to them until it is freed (so two
//! live blocks never overlap and a move copies). After every step the target checks its
//! own invariants and the conservation equation (`Subject::check`).

use arbitrary::Arbitrary;
use stlalloc_core::block_allocator::BlockAllocator;
use stlalloc_core::AllocError;

/// Sizes at the edges: 0, a granule either side, the pool's classes, and the top of the
/// address space, where rounding or `p + n` would wrap.
const EDGES: [usize; 14] = [
    0,
    1,
    7,
    8,
    9,
    127,
    128,
    129,
    4096,
    1 << 40,
    isize::MAX as usize,
    isize::MAX as usize + 1,
    usize::MAX - 7,
    usize::MAX,
];

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Addr {
    /// The start of live block `i` (modulo how many there are).
    Live(u8),
    /// Live block `i`, `off` bytes in (modulo its extent and a little beyond).
    Inside(u8, u16),
    /// A block freed earlier.
    Freed(u8),
    /// `off` bytes into the allocator's first region (modulo its length and a little).
    Region(u32),
    /// The top of the address space, `off` bytes below its end.
    Top(u16),
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Size {
    /// The size live block `i` was allocated with.
    Of(u8),
    Small(u8),
    Medium(u16),
    Edge(u8),
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Op {
    Allocate(Size),
    AllocateClaimed(Size),
    /// Frees live block `i` with its own size (claimed or not, as it is held).
    Free(u8),
    Deallocate(Addr, Size),
    DeallocateClaimed(Addr, Size),
    Reallocate(Addr, Size, Size),
    /// Moves live block `i` to a new size.
    Resize(u8, Size),
    Claim(Addr),
    Unclaim(Addr),
    Pin(Addr),
    Unpin(Addr),
    PinSpanning(Addr, Size),
    BlockContaining(Addr),
    /// Writes a new byte over live block `i`.
    Write(u8, u8),
    Release,
}

/// What the target is, as the model needs to know it.
pub trait Subject {
    type A: BlockAllocator;
    type Stats: PartialEq + std::fmt::Debug;
    fn alloc(&self) -> &Self::A;
    fn stats(&self) -> Self::Stats;
    /// The bytes `block_containing` reports for a block asked with `n` bytes.
    fn extent(&self, n: usize) -> usize;
    /// Whether a block asked with `asked` bytes is freed by a call naming `n`.
    fn frees_with(&self, asked: usize, n: usize) -> bool;
    /// Whether `release` must succeed with these live blocks, and then retires them all.
    fn may_release(&self, live: &[Block]) -> bool;
    fn release(&self) -> Result<(), AllocError>;
    /// `[base, base+len)` of the first region, where most blocks are.
    fn region(&self) -> (usize, usize);
    /// Panics if an invariant of the allocator is broken.
    fn check(&self, live: &[Block]);
}

#[derive(Debug, Clone, Copy)]
pub struct Block {
    pub addr: usize,
    pub asked: usize,
    pub claimed: bool,
    pub pins: u32,
    /// The first `filled` bytes of the block hold `byte`.
    pub byte: u8,
    pub filled: usize,
}

/// Bytes written into a new or scribbled block: enough to catch an overlap or a bad copy,
/// few enough to keep a run fast.
const FILL: usize = 512;

pub struct Model<S: Subject> {
    pub subject: S,
    pub live: Vec<Block>,
    freed: Vec<usize>,
    next_byte: u8,
}

fn is_oom(e: &AllocError) -> bool {
    matches!(
        e,
        AllocError::OutOfMemory { .. } | AllocError::TooLarge { .. }
    )
}

impl<S: Subject> Model<S> {
    pub fn new(subject: S) -> Self {
        Self {
            subject,
            live: Vec::new(),
            freed: Vec::new(),
            next_byte: 1,
        }
    }

    pub fn run(&mut self, ops: &[Op]) {
        for &op in ops {
            self.step(op);
            self.subject.check(&self.live);
        }
        self.finish();
    }

    /// Frees every block the model holds, then checks that nothing is left.
    fn finish(&mut self) {
        while let Some(b) = self.live.last().copied() {
            let a = self.subject.alloc();
            self.verify(&b);
            for _ in 0..b.pins {
                a.unpin(b.addr);
            }
            let done = if b.claimed {
                a.deallocate_claimed(b.addr, b.asked)
            } else {
                a.deallocate(b.addr, b.asked)
            };
            done.unwrap_or_else(|e| panic!("freeing {b:?} at the end: {e}"));
            self.live.pop();
        }
        self.subject.check(&self.live);
    }

    fn addr(&self, a: Addr) -> usize {
        let nth = |i: u8| self.live.get(usize::from(i) % self.live.len().max(1));
        match a {
            Addr::Live(i) => nth(i).map_or(0, |b| b.addr),
            Addr::Inside(i, off) => nth(i).map_or(0, |b| {
                let span = self.subject.extent(b.asked) + 16;
                b.addr.wrapping_add(usize::from(off) % span)
            }),
            Addr::Freed(i) => self
                .freed
                .get(usize::from(i) % self.freed.len().max(1))
                .copied()
                .unwrap_or(0),
            Addr::Region(off) => {
                let (base, len) = self.subject.region();
                base.wrapping_add(off as usize % (len + 64))
            }
            Addr::Top(off) => usize::MAX - usize::from(off),
            Addr::Raw(p) => p as usize,
        }
    }

    fn size(&self, s: Size) -> usize {
        match s {
            Size::Of(i) => self
                .live
                .get(usize::from(i) % self.live.len().max(1))
                .map_or(0, |b| b.asked),
            Size::Small(n) => n.into(),
            Size::Medium(n) => n.into(),
            Size::Edge(i) => EDGES[usize::from(i) % EDGES.len()],
            Size::Raw(n) => n as usize,
        }
    }

    fn index_at(&self, p: usize) -> Option<usize> {
        self.live.iter().position(|b| b.addr == p)
    }

    /// The model's `block_containing`.
    fn containing(&self, addr: usize) -> Option<(usize, usize)> {
        self.live.iter().find_map(|b| {
            let size = self.subject.extent(b.asked);
            (addr >= b.addr && addr - b.addr < size).then_some((b.addr, size))
        })
    }

    fn fill(&mut self, p: usize, asked: usize) -> (u8, usize) {
        let byte = self.next_byte;
        self.next_byte = self.next_byte.wrapping_add(1).max(1);
        let filled = asked.min(FILL);
        // SAFETY: `p` is a live block of at least `asked >= filled` writable bytes that
        // the model alone uses.
        unsafe { std::ptr::write_bytes(p as *mut u8, byte, filled) };
        (byte, filled)
    }

    /// Panics unless the block still holds what was written to it.
    fn verify(&self, b: &Block) {
        // SAFETY: `b` is live (the caller has not freed it yet) with `filled` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(b.addr as *const u8, b.filled) };
        if let Some(i) = bytes.iter().position(|&x| x != b.byte) {
            panic!("block {:#x}: byte {i} changed while live", b.addr);
        }
    }

    fn add(&mut self, p: usize, asked: usize, claimed: bool) {
        let align = self.subject.alloc().alignment();
        assert_eq!(p % align, 0, "{p:#x} is not {align}-aligned");
        let end = p + self.subject.extent(asked);
        for b in &self.live {
            let b_end = b.addr + self.subject.extent(b.asked);
            assert!(end <= b.addr || b_end <= p, "{p:#x} overlaps {b:?}");
        }
        let (byte, filled) = self.fill(p, asked);
        self.live.push(Block {
            addr: p,
            asked,
            claimed,
            pins: 0,
            byte,
            filled,
        });
    }

    fn forget(&mut self, i: usize) {
        let b = self.live.swap_remove(i);
        self.freed.push(b.addr);
        if self.freed.len() > 64 {
            self.freed.remove(0);
        }
    }

    /// Runs `call`, which must fail and change nothing.
    fn refused<T: std::fmt::Debug>(
        &self,
        what: &str,
        call: impl FnOnce() -> Result<T, AllocError>,
    ) {
        let before = self.subject.stats();
        match call() {
            Ok(v) => panic!("{what}: accepted ({v:?}) but the model refuses it"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        assert_eq!(
            self.subject.stats(),
            before,
            "{what}: a refused call changed state"
        );
    }

    fn allocate(&mut self, n: usize, claimed: bool) {
        let a = self.subject.alloc();
        let got = if claimed {
            a.allocate_claimed(n)
        } else {
            a.allocate(n)
        };
        match got {
            Ok(0) => assert_eq!(n, 0, "allocate({n}) returned 0"),
            Ok(p) => {
                assert!(n > 0, "allocate(0) returned {p:#x}");
                self.add(p, n, claimed);
            }
            Err(e) => assert!(is_oom(&e), "allocate({n}): {e}"),
        }
    }

    /// Whether `(p, n)` names a live block free to be freed by `deallocate` (`claimed`
    /// false) or `deallocate_claimed`.
    fn freeable(&self, p: usize, n: usize, claimed: bool) -> Option<usize> {
        let i = self.index_at(p)?;
        let b = &self.live[i];
        (self.subject.frees_with(b.asked, n) && b.pins == 0 && b.claimed == claimed).then_some(i)
    }

    fn deallocate(&mut self, p: usize, n: usize, claimed: bool) {
        let a = self.subject.alloc();
        let call = || {
            if claimed {
                a.deallocate_claimed(p, n)
            } else {
                a.deallocate(p, n)
            }
        };
        if p == 0 && n == 0 {
            // Does nothing: an Ok, or (`deallocate_claimed` of some) an error.
            let before = self.subject.stats();
            let _ = call();
            assert_eq!(
                self.subject.stats(),
                before,
                "deallocate(0, 0) did something"
            );
            return;
        }
        match self.freeable(p, n, claimed) {
            Some(i) => {
                self.verify(&self.live[i]);
                call().unwrap_or_else(|e| panic!("deallocate({p:#x}, {n}): {e}"));
                self.forget(i);
            }
            None => self.refused(&format!("deallocate({p:#x}, {n}, claimed {claimed})"), call),
        }
    }

    fn reallocate(&mut self, p: usize, old: usize, new: usize) {
        if p == 0 && old == 0 {
            return self.allocate(new, false);
        }
        if new == 0 {
            return self.deallocate(p, old, false);
        }
        let a = self.subject.alloc();
        let Some(i) = self.freeable(p, old, false) else {
            return self.refused(&format!("reallocate({p:#x}, {old}, {new})"), || {
                a.reallocate(p, old, new)
            });
        };
        match a.reallocate(p, old, new) {
            Ok(q) => {
                let mut b = self.live.swap_remove(i);
                // Only the `min(old, new)` bytes the caller named are copied.
                b.filled = b.filled.min(old).min(new);
                b.addr = q;
                b.asked = new;
                self.verify(&b);
                if q != p {
                    self.freed.push(p);
                }
                let (byte, filled) = self.fill(q, new);
                let end = q + self.subject.extent(new);
                for o in &self.live {
                    let o_end = o.addr + self.subject.extent(o.asked);
                    assert!(end <= o.addr || o_end <= q, "moved {q:#x} overlaps {o:?}");
                }
                self.live.push(Block { byte, filled, ..b });
            }
            Err(e) => {
                assert!(is_oom(&e), "reallocate({p:#x}, {old}, {new}): {e}");
                self.verify(&self.live[i]);
            }
        }
    }

    fn claim(&mut self, p: usize) {
        let a = self.subject.alloc();
        match self.index_at(p) {
            Some(i) if !self.live[i].claimed && self.live[i].pins == 0 => {
                a.claim(p).unwrap_or_else(|e| panic!("claim({p:#x}): {e}"));
                self.live[i].claimed = true;
            }
            _ => self.refused(&format!("claim({p:#x})"), || a.claim(p)),
        }
    }

    fn pin(&mut self, p: usize) {
        let a = self.subject.alloc();
        match self.index_at(p) {
            Some(i) if !self.live[i].claimed => {
                a.pin(p).unwrap_or_else(|e| panic!("pin({p:#x}): {e}"));
                self.live[i].pins += 1;
            }
            _ => self.refused(&format!("pin({p:#x})"), || a.pin(p)),
        }
    }

    fn pin_spanning(&mut self, addr: usize, len: usize) {
        let a = self.subject.alloc();
        let found = self
            .containing(addr)
            .filter(|&(start, size)| addr.checked_add(len).is_some_and(|end| end <= start + size));
        match found.and_then(|(start, _)| self.index_at(start)) {
            Some(i) if !self.live[i].claimed => {
                let got = a.pin_spanning(addr, len);
                let (start, size) = got.unwrap_or_else(|e| panic!("pin_spanning: {e}"));
                assert_eq!(Some((start, size)), found);
                self.live[i].pins += 1;
            }
            _ => self.refused(&format!("pin_spanning({addr:#x}, {len})"), || {
                a.pin_spanning(addr, len)
            }),
        }
    }

    fn step(&mut self, op: Op) {
        let a = self.subject.alloc();
        match op {
            Op::Allocate(s) => self.allocate(self.size(s), false),
            Op::AllocateClaimed(s) => self.allocate(self.size(s), true),
            Op::Free(i) => {
                if let Some(b) = self.live.get(usize::from(i) % self.live.len().max(1)) {
                    let (p, n, claimed) = (b.addr, b.asked, b.claimed);
                    self.deallocate(p, n, claimed);
                }
            }
            Op::Deallocate(p, s) => self.deallocate(self.addr(p), self.size(s), false),
            Op::DeallocateClaimed(p, s) => self.deallocate(self.addr(p), self.size(s), true),
            Op::Reallocate(p, old, new) => {
                self.reallocate(self.addr(p), self.size(old), self.size(new))
            }
            Op::Resize(i, new) => {
                if let Some(b) = self.live.get(usize::from(i) % self.live.len().max(1)) {
                    let (p, n) = (b.addr, b.asked);
                    self.reallocate(p, n, self.size(new));
                }
            }
            Op::Claim(p) => self.claim(self.addr(p)),
            Op::Unclaim(p) => {
                let p = self.addr(p);
                a.unclaim(p);
                if let Some(i) = self.index_at(p) {
                    self.live[i].claimed = false;
                }
            }
            Op::Pin(p) => self.pin(self.addr(p)),
            Op::Unpin(p) => {
                let p = self.addr(p);
                a.unpin(p);
                if let Some(i) = self.index_at(p) {
                    self.live[i].pins = self.live[i].pins.saturating_sub(1);
                }
            }
            Op::PinSpanning(p, s) => self.pin_spanning(self.addr(p), self.size(s)),
            Op::BlockContaining(p) => {
                let p = self.addr(p);
                assert_eq!(
                    a.block_containing(p),
                    self.containing(p),
                    "block_containing({p:#x})"
                );
                assert_eq!(a.owns(p), self.containing(p).is_some());
            }
            Op::Write(i, byte) => {
                let i = usize::from(i) % self.live.len().max(1);
                if let Some(b) = self.live.get_mut(i) {
                    b.byte = byte;
                    b.filled = b.asked.min(FILL);
                    // SAFETY: a live block of at least `asked >= filled` bytes, ours.
                    unsafe { std::ptr::write_bytes(b.addr as *mut u8, byte, b.filled) };
                }
            }
            Op::Release => {
                if self.subject.may_release(&self.live) {
                    self.subject.release().expect("release");
                    self.live.clear();
                    self.freed.clear();
                } else {
                    self.refused("release()", || self.subject.release());
                }
            }
        }
    }
}
