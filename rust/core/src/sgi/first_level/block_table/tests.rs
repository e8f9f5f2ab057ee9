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
    assert!(t.reserve_one());
    t.insert(addr, e);
}

/// Addresses that all have the same home slot in a table of `cap` slots.
fn colliding(cap: usize, home: usize, count: usize) -> Vec<usize> {
    (1..)
        .map(|k| k * GRANULE)
        .filter(|&a| BlockTable::home(a, cap) == home)
        .take(count)
        .collect()
}

#[test]
fn packing_round_trips_every_field_at_its_limits() {
    let top = ADDR_LIMIT - GRANULE;
    for (addr, e) in [
        (16, entry(1, 0)),
        (top, entry(MAX_SIZE, MAX_OWNERS - 1)),
        (
            0x7f12_3456_7890,
            Entry {
                size: 24,
                owner: 7,
                claimed: true,
            },
        ),
    ] {
        assert!(e.packs(addr));
        assert_eq!(Entry::unpack(e.pack(addr)), (addr, e));
    }
    assert!(!entry(MAX_SIZE + 1, 0).packs(16));
    assert!(!entry(0, 0).packs(16));
    assert!(!entry(8, MAX_OWNERS).packs(16));
    for addr in [0, 8, 24, ADDR_LIMIT, usize::MAX - 15] {
        assert!(!entry(8, 0).packs(addr), "{addr:#x}");
    }
}

#[test]
fn grows_and_shrinks_with_many_blocks_and_agrees_with_a_model() {
    let mut t = BlockTable::new();
    let mut model = BTreeMap::new();
    let mut caps = vec![];
    for k in 1..=100_000usize {
        let (addr, e) = (k * 48, entry(1 + k % MAX_SIZE, k % 5));
        put(&mut t, addr, e);
        model.insert(addr, e);
        if caps.last() != Some(&t.capacity()) {
            caps.push(t.capacity());
        }
    }
    t.check_invariants();
    assert!(caps.len() > 10, "grew by rehashing: {caps:?}");
    assert!(
        5 * t.len() > 2 * t.capacity(),
        "load above 0.4 after growth"
    );
    for (&addr, &e) in &model {
        assert_eq!(t.get(addr), Some(e));
        assert_eq!(t.get(addr + 16), None, "{addr:#x}: no block there");
    }
    // Remove every other block, then all: the rest stays findable, the table shrinks back.
    for &addr in model.keys().step_by(2) {
        assert!(t.remove(addr).is_some());
    }
    t.check_invariants();
    for (i, (&addr, &e)) in model.iter().enumerate() {
        assert_eq!(t.get(addr), (i % 2 == 1).then_some(e));
    }
    for &addr in model.keys() {
        t.remove(addr);
    }
    t.check_invariants();
    assert_eq!((t.len(), t.capacity()), (0, MIN_CAP));
    assert_eq!(t.iter().count(), 0);
}

#[test]
fn removal_in_a_collision_chain_that_wraps_keeps_the_rest_reachable() {
    let mut t = BlockTable::new();
    assert!(t.reserve_one());
    let cap = t.capacity();
    // Four blocks whose home is the last slot: the chain wraps to slots 0..3.
    let chain = colliding(cap, cap - 1, 4);
    // And one whose home is slot 1, pushed behind the chain.
    let other = colliding(cap, 1, 1)[0];
    for &a in chain.iter().chain([other].iter()) {
        put(&mut t, a, entry(16, 1));
    }
    t.check_invariants();
    for victim in [chain[1], chain[0], other, chain[3], chain[2]] {
        assert_eq!(t.remove(victim), Some(entry(16, 1)));
        assert_eq!(t.remove(victim), None, "a double removal finds nothing");
        t.check_invariants();
        for &a in chain.iter().chain([other].iter()) {
            let expected = t.iter().any(|(b, _)| b == a);
            assert_eq!(t.get(a).is_some(), expected);
        }
    }
    assert_eq!(t.len(), 0);
}

#[test]
fn churn_at_a_fixed_population_never_leaves_debris() {
    // Deletion shifts back instead of leaving tombstones, so alloc/free cycles cannot fill
    // the table with dead slots: the capacity stays put and lookups still end.
    let mut t = BlockTable::new();
    for k in 1..=1000 {
        put(&mut t, k * 32, entry(24, 0));
    }
    let cap = t.capacity();
    let mut state = 12345u64;
    for _ in 0..200_000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = 1 + (state >> 33) as usize % 1000;
        let e = t.remove(k * 32).unwrap();
        put(&mut t, k * 32, e);
    }
    assert_eq!((t.len(), t.capacity()), (1000, cap));
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
        "last byte, 63 probes down"
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
