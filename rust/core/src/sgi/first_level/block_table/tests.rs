use super::*;
use std::collections::BTreeMap;

fn entry(size: usize, owner: usize) -> Entry {
    Entry {
        size,
        owner,
        claimed: size % 3 == 0,
    }
}

fn put(t: &mut BlockTable, addr: usize, e: Entry) {
    assert!(t.insert(addr, e));
}

#[test]
fn packing_round_trips_every_field_at_its_limits() {
    for e in [
        entry(1, 0),
        entry(MAX_SIZE, MAX_OWNERS - 1),
        Entry {
            size: 24,
            owner: 7,
            claimed: true,
        },
    ] {
        for addr in [16, 32, ADDR_LIMIT - GRANULE] {
            assert!(e.packs(addr));
            assert_ne!(e.pack(addr), 0, "a block is never an empty slot");
            assert_eq!(Entry::unpack(e.pack(addr)), e);
            assert!(holds(e.pack(addr), addr) && !holds(e.pack(addr), addr ^ GRANULE));
        }
    }
    assert!(!entry(MAX_SIZE + 1, 0).packs(16));
    assert!(!entry(0, 0).packs(16));
    assert!(!entry(8, MAX_OWNERS).packs(16));
    for addr in [0, 8, 24, ADDR_LIMIT, usize::MAX - 15] {
        assert!(!entry(8, 0).packs(addr), "{addr:#x}");
    }
}

#[test]
fn an_address_splits_into_indices_and_joins_back() {
    for addr in [
        16,
        0x3f0,
        0x400,
        0x5555_5555_5550,
        0x7fff_ffff_fff0,
        ADDR_LIMIT - 16,
    ] {
        let parts = split(addr);
        let limits = [ROOT_SLOTS, NODE_SLOTS, NODE_SLOTS, LEAF_SLOTS];
        assert!(parts.iter().zip(limits).all(|(&i, n)| i < n), "{addr:#x}");
        assert_eq!(join(parts), addr - addr % WINDOW, "{addr:#x}: its window");
    }
    assert_eq!(
        split(ADDR_LIMIT - 16),
        [ROOT_SLOTS - 1, NODE_SLOTS - 1, NODE_SLOTS - 1, 63]
    );
}

#[test]
fn agrees_with_a_model_over_many_blocks_and_frees_every_leaf() {
    let mut t = BlockTable::new();
    let mut model = BTreeMap::new();
    // Dense blocks, a sparse run, and blocks far apart in the address space.
    let addrs = (1..=100_000usize)
        .map(|k| k * 48)
        .chain((0..1000).map(|k| 0x5555_0000_0000 + k * 0x10_0000))
        .chain((0..100).map(|k| 0x7000_0000_0000 + k * (1 << 34)));
    for (k, addr) in addrs.enumerate() {
        let e = entry(1 + k % MAX_SIZE, k % 5);
        put(&mut t, addr, e);
        model.insert(addr, e);
    }
    t.check_invariants();
    assert_eq!(t.len(), model.len());
    assert_eq!(t.iter().collect::<BTreeMap<_, _>>(), model);
    for (&addr, &e) in &model {
        assert_eq!(t.get(addr), Some(e));
        assert_eq!(t.get(addr + 16), None, "{addr:#x}: no block there");
    }
    // Remove every other block, then all: the rest stays findable, the leaves go.
    for &addr in model.keys().step_by(2) {
        assert!(t.remove(addr).is_some());
        assert_eq!(t.remove(addr), None, "a double removal finds nothing");
    }
    t.check_invariants();
    for (i, (&addr, &e)) in model.iter().enumerate() {
        assert_eq!(t.get(addr), (i % 2 == 1).then_some(e));
    }
    for &addr in model.keys() {
        t.remove(addr);
    }
    t.check_invariants();
    assert_eq!(
        (t.len(), t.leaves()),
        (0, 1),
        "only the hot leaf, empty, is left"
    );
    assert_eq!(t.iter().count(), 0);
}

#[test]
fn a_refused_removal_leaves_the_block_and_a_failed_one_finds_nothing() {
    let mut t = BlockTable::new();
    put(&mut t, 0x1000, entry(24, 3));
    assert_eq!(t.remove_if(0x1000, |e| Err(e.size)), Some(Err(24)));
    assert_eq!(t.get(0x1000), Some(entry(24, 3)));
    assert_eq!(t.remove_if(0x1010, |_| Ok::<(), ()>(())), None);
    assert_eq!(
        t.remove_if(0x1000, |_| Ok::<(), ()>(())),
        Some(Ok(entry(24, 3)))
    );
    assert_eq!(t.len(), 0);
    t.check_invariants();
}

#[test]
fn churn_keeps_the_hot_leaf_then_one_spare_and_no_other_empty_one() {
    // Allocate/free of one block: its leaf, hot, stays in the tree empty and is reused at
    // once, never freed and made again.
    let mut t = BlockTable::new();
    for _ in 0..1000 {
        put(&mut t, 0x2000, entry(24, 0));
        assert_eq!(t.remove(0x2000), Some(entry(24, 0)));
        assert_eq!(t.leaves(), 1);
        assert!(t.spare.is_none());
        t.check_invariants();
    }
    // Another leaf becoming hot takes the empty one out, into the spare; a block coming
    // and going across leaves makes none and frees none.
    for _ in 0..1000 {
        put(&mut t, 0x2800, entry(24, 0));
        assert!(t.spare.is_some() && t.leaves() == 1);
        assert_eq!(t.remove(0x2800), Some(entry(24, 0)));
        put(&mut t, 0x2000, entry(24, 0));
        assert!(t.spare.is_some() && t.leaves() == 1);
        assert_eq!(t.remove(0x2000), Some(entry(24, 0)));
        t.check_invariants();
    }
    // Two leaves with blocks, then both emptied: one stays hot, the other is freed as the
    // first goes into the spare.
    put(&mut t, 0x2000, entry(24, 0));
    put(&mut t, 0x2800, entry(24, 0));
    put(&mut t, 0x3000, entry(24, 0));
    assert!(t.spare.is_none() && t.leaves() == 3);
    t.remove(0x2000);
    t.remove(0x2800);
    t.remove(0x3000);
    assert!(t.spare.is_some() && t.leaves() == 1);
    assert_eq!((t.len(), t.iter().count()), (0, 0));
    t.check_invariants();
}

#[test]
fn lookups_through_the_hot_leaf_agree_with_walks() {
    // Blocks in three leaves, each made hot in turn by every kind of call: every answer is
    // the one a walk gives.
    let mut t = BlockTable::new();
    let addrs = [0x4000, 0x4020, 0x47f0, 0x4800, 0x4820, 0x9000];
    for &a in &addrs {
        put(&mut t, a, entry(16, 1));
    }
    for (i, &a) in addrs.iter().chain(&addrs).rev().enumerate() {
        let pass = i / addrs.len();
        assert_eq!(t.get(a), Some(entry(16, 1 + pass)), "{a:#x}");
        assert_eq!(t.get(a + 8), None);
        assert!(t.replace(a, entry(16, 2 + pass)));
        assert_eq!(t.containing(a + 15).map(|(s, _)| s), Some(a));
        t.check_invariants();
    }
    assert_eq!(t.remove(0x4800), Some(entry(16, 3)));
    assert_eq!(t.get(0x4800), None);
    assert_eq!(t.remove(0x4828), None, "not a key, in the hot leaf");
    assert_eq!(t.get(0x4820), Some(entry(16, 3)));
    assert_eq!(t.remove(0x4820), Some(entry(16, 3)));
    assert_eq!(t.leaves(), 3, "the emptied leaf is hot");
    assert_eq!(t.get(0x4000), Some(entry(16, 3)));
    assert_eq!(t.leaves(), 3, "a look, under `&`, moves nothing");
    assert_eq!(t.remove(0x4000), Some(entry(16, 3)));
    assert_eq!(t.leaves(), 2, "the leaf hot before, empty, went");
    t.check_invariants();
}

#[test]
fn replace_changes_a_present_block_only() {
    let mut t = BlockTable::new();
    put(&mut t, 0x3000, entry(24, 1));
    assert!(t.replace(0x3000, entry(24, 2)));
    assert_eq!(t.get(0x3000), Some(entry(24, 2)));
    assert!(!t.replace(0x3010, entry(24, 2)), "no block there");
    assert!(!t.replace(0x3000, entry(MAX_SIZE + 1, 2)), "does not pack");
    assert!(!t.replace(0x7000_0000_0000, entry(24, 2)), "no node there");
    assert_eq!(t.get(0x3000), Some(entry(24, 2)));
    t.check_invariants();
}

#[test]
fn interior_lookup_finds_the_block_holding_an_address_and_nothing_else() {
    let mut t = BlockTable::new();
    put(&mut t, 0x1000, entry(MAX_SIZE, 2));
    put(&mut t, 0x1400, entry(24, 3));
    put(&mut t, 0x1440, entry(1, 3));
    let found = |a| t.containing(a).map(|(s, e)| (s, e.size));
    assert_eq!(found(0x1000), Some((0x1000, MAX_SIZE)));
    assert_eq!(
        found(0x13ff),
        Some((0x1000, MAX_SIZE)),
        "last byte, 63 probes down, in the leaf before"
    );
    assert_eq!(found(0x1400 + 23), Some((0x1400, 24)));
    assert_eq!(
        found(0x1400 + 24),
        None,
        "past the end of 0x1400, before 0x1440"
    );
    assert_eq!(found(0x1440), Some((0x1440, 1)));
    assert_eq!(found(0x1441), None);
    assert_eq!(found(0xfff), None);
    for a in [0, 1, 15, ADDR_LIMIT + MAX_SIZE, usize::MAX] {
        assert_eq!(found(a), None, "{a:#x}");
    }
}

#[test]
fn misaligned_or_huge_addresses_are_never_keys() {
    let mut t = BlockTable::new();
    put(&mut t, 0x2000, entry(64, 0));
    for a in [0x2008, 0x2001, 0x200f, 0x2000 + ADDR_LIMIT, usize::MAX, 0] {
        assert_eq!(t.get(a), None, "{a:#x}");
        assert_eq!(t.remove(a), None, "{a:#x}");
    }
    assert_eq!(t.len(), 1);
    t.check_invariants();
}

#[test]
#[should_panic(expected = "already in the table")]
fn a_second_insert_at_one_address_is_a_bug_caught() {
    let mut t = BlockTable::new();
    put(&mut t, 0x2000, entry(64, 0));
    put(&mut t, 0x2000, entry(64, 0));
}

#[test]
fn two_blocks_in_one_window_the_second_is_refused_and_each_told_apart() {
    // glibc never does this (its chunks are 32 bytes at least); another malloc might, and
    // then the second block is refused here and kept elsewhere by the registry.
    let mut t = BlockTable::new();
    put(&mut t, 0x1010, entry(16, 1));
    assert_eq!(t.get(0x1000), None, "the other half of the window");
    assert!(!t.insert(0x1000, entry(16, 2)), "the window is taken");
    assert_eq!(t.remove(0x1000), None);
    assert!(!t.replace(0x1000, entry(16, 2)));
    assert_eq!(t.get(0x1010), Some(entry(16, 1)));
    assert_eq!(t.containing(0x101f).map(|(s, _)| s), Some(0x1010));
    assert_eq!(t.containing(0x100f), None);
    assert_eq!(t.iter().collect::<Vec<_>>(), vec![(0x1010, entry(16, 1))]);
    assert_eq!(t.remove(0x1010), Some(entry(16, 1)));
    put(&mut t, 0x1000, entry(16, 2));
    assert_eq!(t.get(0x1010), None);
    assert_eq!(t.iter().collect::<Vec<_>>(), vec![(0x1000, entry(16, 2))]);
    t.check_invariants();
}
