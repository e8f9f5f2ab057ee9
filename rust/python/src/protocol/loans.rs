//! The loans of the protocol adaptors: which built-in blocks are lent to containers, and
//! which blocks the adaptors carved out of each.

use super::{lock, unavailable};
use crate::registry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use stlalloc_core::{AllocError, BlockAllocator};

/// A backing block lent to containers, and the blocks carved from it (start → end).
struct Loan {
    core: Arc<dyn BlockAllocator>,
    size: usize,
    claims: BTreeMap<usize, usize>,
}

/// Every lent backing block, by start. Lock order: loans, then an allocator's own lock.
static LOANS: Mutex<BTreeMap<usize, Loan>> = Mutex::new(BTreeMap::new());

/// Records `[p, p+n)` as handed to a container: inside a block already lent (and
/// overlapping none of its pieces), or inside a live built-in block lent now. `hint` is
/// the allocator of the adaptor's last loan, updated. Returns the backing block's start.
pub(super) fn lend(
    p: usize,
    n: usize,
    hint: &Mutex<Option<Weak<dyn BlockAllocator>>>,
) -> Result<usize, AllocError> {
    let end = p
        .checked_add(n)
        .ok_or(AllocError::OutOfBlock { addr: p, len: n })?;
    let mut loans = lock(&LOANS);
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
    let (core, start, size) = lend_backing(p, n, tried)?;
    *lock(hint) = Some(Arc::downgrade(&core));
    let claims = BTreeMap::from([(p, end)]);
    loans.insert(start, Loan { core, size, claims });
    Ok(start)
}

/// Forgets a block handed out; the last block of a loan unclaims the backing block,
/// and frees it if `orphaned` (its Python allocator is gone and cannot free it).
pub(super) fn unlend(p: usize, backing: usize, orphaned: bool) {
    let mut loans = lock(&LOANS);
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

/// Claims the live built-in block that `[p, p+n)` lies in, if nobody holds or views it.
/// `hint`: the allocator the last loan came from, tried first (a Python allocator usually
/// draws from one), which spares the walk of the registry.
fn lend_backing(
    p: usize,
    n: usize,
    hint: Option<Arc<dyn BlockAllocator>>,
) -> Result<(Arc<dyn BlockAllocator>, usize, usize), AllocError> {
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
    let candidates = registry::blocks_spanning(p, n);
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
        AllocError::Owned { .. } => format!("its block {start:#x} belongs to a container"),
        AllocError::Pinned { .. } => {
            format!("its block {start:#x} is pinned (a view of it is alive, or a pool holds it)")
        }
        e => format!("its block {start:#x} cannot be lent: {e}"),
    };
    Err(unavailable(p, n, why))
}
