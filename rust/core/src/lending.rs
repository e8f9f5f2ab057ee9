//! Lending: how memory from a foreign allocator (a Python object with `allocate` and
//! `deallocate`) can back a container safely. A foreign allocator returns addresses; each
//! must lie inside a live block of a built-in allocator (the [`registry`]), and that block is
//! *lent*: claimed (`BlockAllocator::claim`) for as long as any piece carved from it is
//! handed out, so nobody frees, moves, views or lends it meanwhile, and the loan keeps its
//! allocator alive. The ledger is what an adaptor's `unsafe impl BlockAllocator` rests on.
//!
//! Invariants of a [`Ledger`], for every loan `(start, size, core, claims)` (checked by
//! [`Ledger::check`]):
//! - `claims` is not empty (the last piece given back ends the loan);
//! - `start <= p < e <= start + size` for every claim `p → e`, and consecutive claims
//!   `p1 → e1`, `p2 → e2` (by start) satisfy `e1 <= p2`: pieces never overlap;
//! - consecutive loans satisfy `start1 + size1 <= start2`;
//! - `core.block_spanning(start, size) == (start, size)` and `core.claim(start)` fails:
//!   the backing block is live and claimed, by the loan.
//!
//! Lock order: the ledger, then the registry, then an allocator's own lock.

pub mod registry;

use crate::block_allocator::BlockAllocator;
use crate::error::AllocError;
use registry::Registry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// The allocator a lender's last loan came from: tried first next time (a foreign allocator
/// usually draws from one), which spares the walk of the registry.
pub type Hint = Mutex<Option<Weak<dyn BlockAllocator>>>;

/// A backing block lent, and the pieces handed out of it (start → end).
struct Loan {
    core: Arc<dyn BlockAllocator>,
    size: usize,
    claims: BTreeMap<usize, usize>,
}

/// Every lent backing block, by start.
pub struct Ledger {
    loans: Mutex<BTreeMap<usize, Loan>>,
}

/// The process-wide ledger, over the process-wide registry: the one [`lend`] and
/// [`unlend`] use.
static PROCESS: Ledger = Ledger::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The refusal of `[addr, addr+len)`, saying why.
pub fn unavailable(addr: usize, len: usize, why: impl Into<String>) -> AllocError {
    AllocError::NotAvailable {
        addr,
        len,
        why: why.into(),
    }
}

impl Ledger {
    pub const fn new() -> Self {
        Ledger {
            loans: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records `[p, p+n)` as handed out: inside a block already lent (and overlapping none
    /// of its pieces), or inside a live block of `registry` (or of `hint`'s allocator) lent
    /// now. `hint` is updated. Returns the backing block's start; on error nothing changed.
    pub fn lend(
        &self,
        registry: &Registry,
        p: usize,
        n: usize,
        hint: &Hint,
    ) -> Result<usize, AllocError> {
        let end = p
            .checked_add(n)
            .ok_or(AllocError::OutOfBlock { addr: p, len: n })?;
        let mut loans = lock(&self.loans);
        let lent = loans
            .range_mut(..=p)
            .next_back()
            .filter(|(&start, loan)| end <= start + loan.size);
        if let Some((&start, loan)) = lent {
            let before = loan.claims.range(..end).next_back();
            if before.is_some_and(|(_, &e)| e > p) {
                return Err(unavailable(
                    p,
                    n,
                    "it overlaps a block already handed to a container",
                ));
            }
            loan.claims.insert(p, end);
            return Ok(start);
        }
        let tried = lock(hint).as_ref().and_then(Weak::upgrade);
        let (core, start, size) = lend_backing(registry, p, n, tried)?;
        *lock(hint) = Some(Arc::downgrade(&core));
        let claims = BTreeMap::from([(p, end)]);
        loans.insert(start, Loan { core, size, claims });
        Ok(start)
    }

    /// Forgets the piece `p` of the loan at `backing`; the last piece ends the loan: the
    /// backing block is unclaimed, and freed if `orphaned` (its lender is gone and cannot
    /// free it).
    ///
    /// # Panics
    /// If `backing` is not lent: a caller passes only what [`Ledger::lend`] returned.
    pub fn unlend(&self, p: usize, backing: usize, orphaned: bool) {
        let mut loans = lock(&self.loans);
        let loan = loans.get_mut(&backing).expect("a held block is on loan");
        loan.claims.remove(&p);
        if loan.claims.is_empty() {
            let loan = loans.remove(&backing).expect("just found");
            drop(loans);
            loan.core.unclaim(backing);
            if orphaned {
                // A refusal (a debug pool's cookie wants the size first asked) leaks it.
                let _ = loan.core.deallocate(backing, loan.size);
            }
        }
    }

    /// Checks the invariants at the top of this module: the first one broken, if any.
    pub fn check(&self) -> Result<(), String> {
        let loans = lock(&self.loans);
        let mut prev_end = 0;
        for (&start, loan) in loans.iter() {
            if start < prev_end {
                return Err(format!("loan {start:#x} overlaps the loan before it"));
            }
            prev_end = start + loan.size;
            if loan.claims.is_empty() {
                return Err(format!("loan {start:#x} has no pieces"));
            }
            let mut piece_end = start;
            for (&p, &e) in &loan.claims {
                if p < piece_end || p >= e || e > prev_end {
                    return Err(format!(
                        "piece {p:#x}..{e:#x} of loan {start:#x} is misplaced"
                    ));
                }
                piece_end = e;
            }
            if loan.core.block_spanning(start, loan.size).ok() != Some((start, loan.size)) {
                return Err(format!("loan {start:#x} is not a live block"));
            }
            if loan.core.claim(start).is_ok() {
                loan.core.unclaim(start);
                return Err(format!("loan {start:#x} was not claimed"));
            }
        }
        Ok(())
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

/// Claims the live block of `registry` (or of `hint`'s allocator) that `[p, p+n)` lies in,
/// if nobody holds or views it.
fn lend_backing(
    registry: &Registry,
    p: usize,
    n: usize,
    hint: Option<Arc<dyn BlockAllocator>>,
) -> Result<registry::Spanning, AllocError> {
    let claim = |core: &Arc<dyn BlockAllocator>, start: usize, size: usize| {
        core.claim(start)?;
        // Checked again once claimed: the block may have changed since it was found.
        if core.block_spanning(p, n).ok() == Some((start, size)) {
            Ok(())
        } else {
            core.unclaim(start);
            Err(AllocError::NotLive { addr: start })
        }
    };
    if let Some(core) = hint {
        if let Ok((start, size)) = core.block_spanning(p, n) {
            if claim(&core, start, size).is_ok() {
                return Ok((core, start, size));
            }
        }
    }
    let candidates = registry.blocks_spanning(p, n);
    if candidates.is_empty() {
        return Err(unavailable(
            p,
            n,
            "it does not lie inside a live block of a built-in allocator",
        ));
    }
    let mut refusal = None;
    for (core, start, size) in candidates {
        match claim(&core, start, size) {
            Ok(()) => return Ok((core, start, size)),
            Err(AllocError::NotLive { .. }) => {}
            Err(e) => refusal = Some((start, e)),
        }
    }
    let Some((start, e)) = refusal else {
        return Err(unavailable(p, n, "its block was freed meanwhile"));
    };
    let why = match e {
        AllocError::Claimed { .. } => format!("its block {start:#x} belongs to a container"),
        AllocError::Pinned { .. } => {
            format!("its block {start:#x} is pinned (a view of it is alive, or a pool holds it)")
        }
        e => format!("its block {start:#x} cannot be lent: {e}"),
    };
    Err(unavailable(p, n, why))
}

/// [`Ledger::lend`] on the process-wide ledger and registry.
pub fn lend(p: usize, n: usize, hint: &Hint) -> Result<usize, AllocError> {
    PROCESS.lend(registry::process(), p, n, hint)
}

/// [`Ledger::unlend`] on the process-wide ledger.
pub fn unlend(p: usize, backing: usize, orphaned: bool) {
    PROCESS.unlend(p, backing, orphaned)
}

#[cfg(test)]
mod tests;
