use super::registry::Registry;
use super::{lock, Hint, Ledger};
use crate::block_allocator::BlockAllocator;
use crate::{AllocError, MallocAlloc, Params, SharedPool};
use proptest::prelude::*;
use std::sync::{Arc, Mutex};

/// A pool, and a registry and a ledger of this test's own (the process-wide ones are
/// shared by every test thread).
struct World {
    pool: Arc<dyn BlockAllocator>,
    registry: Registry,
    ledger: Ledger,
    hint: Hint,
}

fn world() -> World {
    let upstream = Arc::new(MallocAlloc::new(None));
    let pool: SharedPool = SharedPool::new(Params::default(), 1 << 20, upstream).unwrap();
    let pool: Arc<dyn BlockAllocator> = Arc::new(pool);
    let registry = Registry::new();
    registry.register(&pool);
    World {
        pool,
        registry,
        ledger: Ledger::new(),
        hint: Mutex::new(None),
    }
}

impl World {
    fn lend(&self, p: usize, n: usize) -> Result<usize, AllocError> {
        let r = self.ledger.lend(&self.registry, p, n, &self.hint);
        self.ledger.check().unwrap();
        r
    }

    fn unlend(&self, p: usize, backing: usize, orphaned: bool) {
        self.ledger.unlend(p, backing, orphaned);
        self.ledger.check().unwrap();
    }

    fn loans(&self) -> usize {
        lock(&self.ledger.loans).len()
    }
}

fn why(r: Result<usize, AllocError>) -> String {
    match r {
        Err(AllocError::NotAvailable { why, .. }) => why,
        r => panic!("expected a refusal, got {r:?}"),
    }
}

#[test]
fn a_lent_block_is_claimed_until_its_last_piece_comes_back() {
    let w = world();
    let b = w.pool.allocate(128).unwrap();
    assert_eq!(w.lend(b + 16, 32).ok(), Some(b));
    assert_eq!(
        w.lend(b + 48, 16).ok(),
        Some(b),
        "a second piece of the same loan"
    );
    assert_eq!(w.loans(), 1);
    assert!(matches!(
        w.pool.deallocate(b, 128),
        Err(AllocError::Claimed { .. })
    ));
    assert!(matches!(w.pool.pin(b), Err(AllocError::Claimed { .. })));
    w.unlend(b + 16, b, false);
    assert!(w.pool.claim(b).is_err(), "still lent");
    w.unlend(b + 48, b, false);
    assert_eq!(w.loans(), 0);
    w.pool.deallocate(b, 128).unwrap();
}

#[test]
fn an_orphaned_loan_frees_its_block_with_its_last_piece() {
    let w = world();
    let b = w.pool.allocate(64).unwrap();
    w.lend(b, 8).unwrap();
    w.lend(b + 8, 8).unwrap();
    w.unlend(b, b, true);
    assert_eq!(
        w.pool.block_containing(b),
        Some((b, 64)),
        "one piece is still out"
    );
    w.unlend(b + 8, b, true);
    assert_eq!(w.pool.block_containing(b), None);
}

#[test]
fn overlapping_pieces_are_refused_and_change_nothing() {
    let w = world();
    let b = w.pool.allocate(128).unwrap();
    w.lend(b + 32, 32).unwrap();
    for (p, n) in [(b + 32, 32), (b + 16, 17), (b + 63, 1), (b, 128)] {
        let why = why(w.lend(p, n));
        assert!(why.contains("overlaps"), "{p:#x}+{n}: {why}");
    }
    // Touching is not overlapping.
    w.lend(b + 16, 16).unwrap();
    w.lend(b + 64, 64).unwrap();
    let pieces: Vec<_> = lock(&w.ledger.loans)[&b]
        .claims
        .clone()
        .into_iter()
        .collect();
    assert_eq!(
        pieces,
        [(b + 16, b + 32), (b + 32, b + 64), (b + 64, b + 128)]
    );
}

#[test]
fn only_blocks_a_built_in_allocator_vouches_for_are_lent() {
    let w = world();
    let b = w.pool.allocate(32).unwrap();
    let outside = [(b + 16, 17), (b + 32, 8), (usize::MAX - 4, 8)];
    for (p, n) in outside {
        assert!(w.lend(p, n).is_err(), "{p:#x}+{n}");
    }
    assert!(why(w.lend(b + 24, 16)).contains("does not lie inside a live block"));
    w.pool.deallocate(b, 32).unwrap();
    assert!(why(w.lend(b, 8)).contains("does not lie inside a live block"));
    // A lent block's pieces may not run past its end either.
    let b = w.pool.allocate(32).unwrap();
    w.lend(b, 8).unwrap();
    assert!(w.lend(b + 24, 16).is_err());
    assert_eq!(w.loans(), 1);
}

#[test]
fn held_or_viewed_blocks_are_not_lent() {
    let w = world();
    let claimed = w.pool.allocate_claimed(32).unwrap();
    assert!(why(w.lend(claimed, 8)).contains("belongs to a container"));
    let viewed = w.pool.allocate(32).unwrap();
    w.pool.pin(viewed).unwrap();
    assert!(why(w.lend(viewed, 8)).contains("is pinned"));
    w.pool.unpin(viewed);
    assert_eq!(w.lend(viewed, 8).ok(), Some(viewed));
    assert_eq!(w.loans(), 1);
}

#[test]
fn the_hint_finds_an_allocator_the_registry_does_not_hold() {
    let w = world();
    let b = w.pool.allocate(16).unwrap();
    let lone = Registry::new();
    assert!(w.ledger.lend(&lone, b, 8, &w.hint).is_err());
    *lock(&w.hint) = Some(Arc::downgrade(&w.pool));
    assert_eq!(w.ledger.lend(&lone, b, 8, &w.hint).ok(), Some(b));
    w.ledger.check().unwrap();
    // And a lend through the registry points the hint at the lender's allocator.
    let other = world();
    let c = other.pool.allocate(16).unwrap();
    assert_eq!(w.ledger.lend(&other.registry, c, 8, &w.hint).ok(), Some(c));
    let hinted = lock(&w.hint).as_ref().and_then(|h| h.upgrade()).unwrap();
    assert_eq!(hinted.equality_key(), other.pool.equality_key());
    w.ledger.unlend(c, c, true);
}

#[test]
fn the_registry_asks_each_equal_allocator_once_and_forgets_dropped_ones() {
    let w = world();
    let b = w.pool.allocate(16).unwrap();
    w.registry.register(&w.pool.clone());
    let same_key: Arc<dyn BlockAllocator> = Arc::new(w.pool.clone());
    w.registry.register(&same_key);
    let found = w.registry.blocks_spanning(b, 16);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].1, found[0].2), (b, 16));
    drop(found);
    let gone = world();
    let c = gone.pool.allocate(16).unwrap();
    w.registry.register(&gone.pool);
    assert_eq!(w.registry.blocks_spanning(c, 8).len(), 1);
    drop(gone);
    assert!(w.registry.blocks_spanning(c, 8).is_empty());
}

#[test]
fn the_checker_sees_a_loan_that_is_not_claimed() {
    let w = world();
    let b = w.pool.allocate(16).unwrap();
    w.lend(b, 16).unwrap();
    w.pool.unclaim(b);
    assert!(w.ledger.check().unwrap_err().contains("not claimed"));
    w.pool.claim(b).unwrap();
    w.ledger.check().unwrap();
}

proptest! {
    /// Random pieces lent and given back over a few blocks: the invariants hold after every
    /// step, a refused piece overlaps one handed out (or leaves its block), and once every
    /// piece is back every block can be freed.
    #[test]
    fn random_loans_keep_the_invariants(
        ops in prop::collection::vec((0usize..4, 0usize..16, 1usize..6, any::<bool>()), 1..80)
    ) {
        let w = world();
        let blocks: Vec<usize> = (0..4).map(|_| w.pool.allocate(128).unwrap()).collect();
        let mut out: Vec<(usize, usize, usize)> = Vec::new();
        for (block, slot, len, give_back) in ops {
            if give_back && !out.is_empty() {
                let (p, _, backing) = out.swap_remove(slot % out.len());
                w.unlend(p, backing, false);
                continue;
            }
            let (p, n) = (blocks[block] + slot * 8, len * 8);
            let overlaps = out.iter().any(|&(q, m, _)| p < q + m && q < p + n);
            let inside = slot + len <= 16;
            match w.lend(p, n) {
                Ok(backing) => {
                    prop_assert!(inside && !overlaps);
                    prop_assert_eq!(backing, blocks[block]);
                    out.push((p, n, backing));
                }
                Err(_) => prop_assert!(overlaps || !inside),
            }
        }
        for (p, _, backing) in out {
            w.unlend(p, backing, false);
        }
        prop_assert_eq!(w.loans(), 0);
        for b in blocks {
            prop_assert!(w.pool.deallocate(b, 128).is_ok());
        }
    }
}
