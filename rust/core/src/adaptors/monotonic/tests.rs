use super::*;
use crate::os::syscalls;
use proptest::prelude::*;

type Mono = Monotonic<Arc<MallocAlloc>>;

fn mono(arena: usize, align: usize) -> (Mono, Arc<MallocAlloc>) {
    let up = Arc::new(MallocAlloc::new(None));
    (Monotonic::new(arena, align, up.clone()).unwrap(), up)
}

fn fill(p: usize, n: usize, byte: u8) {
    // SAFETY: callers pass a live block of at least `n` bytes that they own.
    unsafe { std::ptr::write_bytes(p as *mut u8, byte, n) }
}

fn holds(p: usize, n: usize, byte: u8) -> bool {
    // SAFETY: callers pass a live block of at least `n` bytes.
    unsafe { std::slice::from_raw_parts(p as *const u8, n) }
        .iter()
        .all(|&b| b == byte)
}

#[test]
fn the_break_moves_by_each_request_rounded_to_8() {
    let (m, _) = mono(1 << 16, 8);
    let a = m.allocate(8).unwrap();
    let b = m.allocate(20).unwrap();
    let c = m.allocate(1).unwrap();
    assert_eq!((b - a, c - b), (8, 24));
    assert_eq!(m.allocate(0).unwrap(), 0);
    let s = m.stats();
    assert_eq!((s.bytes_used, s.live_blocks, s.live_bytes), (40, 3, 40));
    assert_eq!(s.syscalls.mmap, 1);
    m.check_invariants();
}

#[test]
fn alignment_pads_the_break() {
    let (m, _) = mono(1 << 16, 64);
    let a = m.allocate(8).unwrap();
    let b = m.allocate(8).unwrap();
    assert_eq!((a % 64, b - a), (0, 64));
    assert_eq!(m.stats().bytes_used, 72);
    assert!(Mono::new(4096, 12, Arc::new(MallocAlloc::new(None))).is_err());
}

#[test]
fn deallocate_frees_nothing_but_rejects_misuse_without_change() {
    let (m, _) = mono(1 << 16, 8);
    let a = m.allocate(24).unwrap();
    let b = m.allocate(8).unwrap();
    let before = m.stats();
    for (p, n) in [(a, 8), (a, 32), (a + 8, 16), (a + 3, 8), (0x10, 8), (a, 0)] {
        assert!(m.deallocate(p, n).is_err(), "{p:#x} {n}");
    }
    assert!(matches!(
        m.deallocate(a, 32),
        Err(AllocError::SizeMismatch { block_size: 24, .. })
    ));
    assert!(matches!(
        m.deallocate(0x10, 8),
        Err(AllocError::Foreign { .. })
    ));
    assert_eq!(m.stats(), before);
    m.deallocate(a, 17).unwrap(); // same 8-byte class as 24
    assert!(matches!(
        m.deallocate(a, 24),
        Err(AllocError::NotLive { .. })
    ));
    let s = m.stats();
    assert_eq!((s.live_blocks, s.live_bytes, s.bytes_used), (1, 8, 32));
    assert_eq!(
        m.allocate(8).unwrap(),
        b + 8,
        "retired memory is never reused"
    );
    m.check_invariants();
}

#[test]
fn exhausted_arena_goes_upstream_with_geometric_growth() {
    let page = syscalls::page_size();
    let (m, up) = mono(page, 8);
    let a = m.allocate(page - 8).unwrap();
    assert_eq!(m.stats().next_buffer_size, 2 * page);
    let b = m.allocate(16).unwrap();
    assert!(
        up.owns(b) && (b < a || b >= a + page),
        "from an upstream buffer"
    );
    let s = m.stats();
    assert_eq!((s.upstream_buffers, s.upstream_bytes), (1, 2 * page));
    assert_eq!(s.next_buffer_size, 4 * page);
    assert_eq!(up.stats().live_bytes, 2 * page);
    // The arena's last 8 bytes are abandoned, as pmr abandons a buffer's tail.
    assert_eq!(m.allocate(8).unwrap(), b + 16);
    // A request above the next size gets a buffer of its own size.
    let big = 10 * page;
    let c = m.allocate(big).unwrap();
    let s = m.stats();
    assert_eq!(
        (s.upstream_buffers, s.upstream_bytes),
        (2, 2 * page + big + 8)
    );
    assert_eq!(m.block_containing(c + big - 1), Some((c, big)));
    m.check_invariants();
    m.release().unwrap();
    assert_eq!(up.stats().live_blocks, 0, "release gives the buffers back");
    assert_eq!(m.stats().next_buffer_size, 2 * page);
    assert_eq!(
        m.allocate(8).unwrap(),
        a,
        "after release the break starts over"
    );
    m.check_invariants();
}

#[test]
fn a_zero_sized_arena_takes_everything_upstream() {
    let (m, up) = mono(0, 8);
    let a = m.allocate(100).unwrap();
    assert_eq!(m.stats().upstream_buffers, 1);
    assert!(up.owns(a));
    m.deallocate(a, 100).unwrap();
    m.release().unwrap();
    assert_eq!(up.stats().live_blocks, 0);
}

#[test]
fn containers_claim_blocks_and_views_pin_them() {
    let (m, _) = mono(1 << 16, 8);
    let a = m.allocate(8).unwrap();
    let b = m.allocate_claimed(8).unwrap();
    for refused in [
        m.deallocate(b, 8),
        m.pin(b),
        m.claim(b),
        m.reallocate(b, 8, 16).map(drop),
    ] {
        assert!(
            matches!(refused, Err(AllocError::Claimed { .. })),
            "{refused:?}"
        );
    }
    assert!(matches!(
        m.deallocate_claimed(a, 8),
        Err(AllocError::NotLive { .. })
    ));
    assert!(matches!(
        m.release(),
        Err(AllocError::LiveBlocks { blocks: 1 })
    ));
    m.deallocate_claimed(b, 8).unwrap();
    m.pin(a).unwrap();
    assert!(matches!(m.claim(a), Err(AllocError::Pinned { .. })));
    assert!(matches!(m.deallocate(a, 8), Err(AllocError::Pinned { .. })));
    assert!(matches!(
        m.release(),
        Err(AllocError::LiveBlocks { blocks: 1 })
    ));
    m.unpin(a);
    m.claim(a).unwrap();
    m.unclaim(a);
    m.check_invariants();
}

#[test]
fn release_gives_back_every_block_nobody_holds() {
    let (m, _) = mono(1 << 16, 8);
    let a = m.allocate(8).unwrap();
    let b = m.allocate(8).unwrap();
    m.deallocate(b, 8).unwrap();
    let before = m.stats().syscalls.madvise;
    m.release().unwrap();
    let s = m.stats();
    assert_eq!(
        (s.live_blocks, s.bytes_used, s.released_blocks, s.releases),
        (0, 0, 1, 1)
    );
    assert_eq!(s.syscalls.madvise, before + 1);
    assert_eq!(s.arena_resident, 0);
    assert!(m.block_containing(a).is_none());
    assert!(matches!(
        m.deallocate(a, 8),
        Err(AllocError::NotLive { .. })
    ));
    m.check_invariants();
}

#[test]
fn reallocate_in_place_at_the_break_else_moves() {
    let (m, _) = mono(1 << 16, 8);
    let a = m.allocate(16).unwrap();
    fill(a, 16, 7);
    assert_eq!(
        m.reallocate(a, 16, 40).unwrap(),
        a,
        "the top block grows in place"
    );
    assert_eq!(m.stats().bytes_used, 40);
    assert_eq!(m.reallocate(a, 40, 12).unwrap(), a, "shrinking is in place");
    assert_eq!(m.block_containing(a), Some((a, 16)));
    let b = m.allocate(8).unwrap();
    let c = m.reallocate(a, 12, 64).unwrap();
    assert!(
        c > b && holds(c, 12, 7),
        "not at the top: moved with its contents"
    );
    assert!(matches!(
        m.deallocate(a, 12),
        Err(AllocError::NotLive { .. })
    ));
    m.pin(c).unwrap();
    assert!(matches!(
        m.reallocate(c, 64, 128),
        Err(AllocError::Pinned { .. })
    ));
    m.unpin(c);
    assert_eq!(m.reallocate(c, 64, 0).unwrap(), 0);
    assert_eq!(m.reallocate(0, 0, 8).unwrap(), c + 64);
    m.check_invariants();
}

#[test]
fn threads_never_share_a_block() {
    let (m, _) = mono(1 << 14, 8);
    let m = Arc::new(m);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..500 {
                    let n = 8 + (i % 5) * 8;
                    let p = m.allocate(n).unwrap();
                    fill(p, n, t);
                    mine.push((p, n));
                    if i % 3 == 0 {
                        let (p, n) = mine.swap_remove(0);
                        m.deallocate(p, n).unwrap();
                    }
                }
                assert!(mine.iter().all(|&(p, n)| holds(p, n, t)));
                mine
            })
        })
        .collect();
    let live: usize = threads.into_iter().map(|t| t.join().unwrap().len()).sum();
    assert_eq!(m.stats().live_blocks, live);
    m.check_invariants();
}

#[derive(Debug, Clone)]
enum Step {
    Allocate(usize),
    AllocateClaimed(usize),
    Deallocate(usize),
    DoubleFree(usize),
    Reallocate(usize, usize),
    Release,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1usize..300).prop_map(Step::Allocate),
        1 => (1usize..300).prop_map(Step::AllocateClaimed),
        2 => any::<usize>().prop_map(Step::Deallocate),
        1 => any::<usize>().prop_map(Step::DoubleFree),
        2 => (any::<usize>(), 1usize..300).prop_map(|(i, n)| Step::Reallocate(i, n)),
        1 => Just(Step::Release),
    ]
}

proptest! {
    /// Against a model of live blocks: every block is aligned, disjoint from every other
    /// live block and keeps its contents; the break only moves up until `release`, which
    /// is refused while a container holds a block; misuse changes nothing; the invariants
    /// hold after every step.
    #[test]
    fn model(steps in prop::collection::vec(step(), 1..120), align in prop::sample::select(vec![8usize, 16, 64])) {
        let (m, up) = mono(4096, align);
        let mut live: Vec<(usize, usize, u8, bool)> = Vec::new();
        let mut dead: Vec<(usize, usize)> = Vec::new();
        let mut tag = 0u8;
        let mut used = 0;
        for s in steps {
            tag = tag.wrapping_add(1);
            match s {
                Step::Allocate(n) => {
                    let p = m.allocate(n).unwrap();
                    prop_assert_eq!(p % align, 0);
                    fill(p, n, tag);
                    live.push((p, n, tag, false));
                }
                Step::AllocateClaimed(n) => {
                    let p = m.allocate_claimed(n).unwrap();
                    fill(p, n, tag);
                    live.push((p, n, tag, true));
                }
                Step::Deallocate(i) if !live.is_empty() => {
                    let (p, n, _, claimed) = live.swap_remove(i % live.len());
                    if claimed {
                        prop_assert!(m.deallocate(p, n).is_err());
                        m.deallocate_claimed(p, n).unwrap();
                    } else {
                        m.deallocate(p, n).unwrap();
                    }
                    dead.push((p, n));
                }
                Step::DoubleFree(i) if !dead.is_empty() => {
                    let (p, n) = dead[i % dead.len()];
                    let before = m.stats();
                    prop_assert!(m.deallocate(p, n).is_err());
                    prop_assert_eq!(m.stats(), before);
                }
                Step::Reallocate(i, new) if !live.is_empty() => {
                    let k = i % live.len();
                    let (p, old, t, claimed) = live[k];
                    if claimed {
                        let before = m.stats();
                        prop_assert!(m.reallocate(p, old, new).is_err());
                        prop_assert_eq!(m.stats(), before);
                        continue;
                    }
                    let q = m.reallocate(p, old, new).unwrap();
                    prop_assert_eq!(q % align, 0);
                    prop_assert!(holds(q, old.min(new), t));
                    fill(q, new, t);
                    live[k] = (q, new, t, false);
                }
                Step::Release if live.iter().any(|b| b.3) => {
                    let before = m.stats();
                    prop_assert!(m.release().is_err());
                    prop_assert_eq!(m.stats(), before);
                }
                Step::Release => {
                    m.release().unwrap();
                    live.clear();
                    dead.clear();
                    used = 0;
                    prop_assert_eq!(up.stats().live_blocks, 0);
                }
                _ => {}
            }
            let s = m.stats();
            prop_assert!(s.bytes_used >= used, "the break never moves down");
            used = s.bytes_used;
            prop_assert_eq!(s.live_blocks, live.len());
            let mut spans: Vec<(usize, usize)> = live.iter().map(|b| (b.0, b.1)).collect();
            spans.sort();
            prop_assert!(spans.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
            for &(p, n, t, _) in &live {
                prop_assert!(holds(p, n, t));
                prop_assert_eq!(m.block_containing(p + n - 1).map(|b| b.0), Some(p));
            }
            m.check_invariants();
        }
    }
}
