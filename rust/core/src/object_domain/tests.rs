use super::*;
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::HashSet;

/// libc's allocator, remembering its live blocks so that a misrouted free is caught.
#[derive(Default)]
struct Libc {
    live: RefCell<HashSet<usize>>,
}

impl Libc {
    fn track(&self, p: *mut u8) -> *mut u8 {
        if !p.is_null() {
            assert!(self.live.borrow_mut().insert(p as usize));
        }
        p
    }

    fn forget(&self, p: *mut u8) {
        if !p.is_null() {
            assert!(
                self.live.borrow_mut().remove(&(p as usize)),
                "{p:?} is not a live block of the wrapped allocator"
            );
        }
    }
}

// SAFETY: libc's own calls.
unsafe impl Wrapped for Libc {
    fn malloc(&self, n: usize) -> *mut u8 {
        // SAFETY: plain malloc.
        self.track(unsafe { libc::malloc(n) }.cast())
    }

    fn calloc(&self, nelem: usize, elsize: usize) -> *mut u8 {
        // SAFETY: plain calloc.
        self.track(unsafe { libc::calloc(nelem, elsize) }.cast())
    }

    unsafe fn realloc(&self, p: *mut u8, n: usize) -> *mut u8 {
        // SAFETY: the caller passes null or a live block of ours.
        let q: *mut u8 = unsafe { libc::realloc(p.cast(), n) }.cast();
        if !q.is_null() {
            self.forget(p);
            self.track(q);
        }
        q
    }

    unsafe fn free(&self, p: *mut u8) {
        self.forget(p);
        // SAFETY: the caller passes null or a live block of ours.
        unsafe { libc::free(p.cast()) }
    }
}

fn domain(align: usize, max_bytes: usize, arena: usize) -> ObjectDomain<Libc> {
    ObjectDomain::new(align, max_bytes, arena, Libc::default()).unwrap()
}

#[test]
fn small_requests_come_from_the_pool_and_free_finds_their_class() {
    let mut d = domain(16, 512, 1 << 20);
    let p = d.malloc(24);
    assert!(d.owns(p));
    assert_eq!(p as usize % 16, 0);
    // Refilled with SGI's 20 blocks of round_up(24) = 32 bytes: 19 wait on list 1.
    assert_eq!(d.stats().free_list_lengths[1], 19);
    // SAFETY: `p` is live, from this domain.
    unsafe { d.free(p) };
    assert_eq!(d.stats().free_list_lengths[1], 20);
    // LIFO, as SGI: the next block of that class is the one just freed.
    assert_eq!(d.malloc(32), p);
    let s = d.stats();
    assert_eq!((s.pool.malloc, s.pool.free, s.wrapped.total()), (2, 1, 0));
    assert_eq!((s.live_blocks, s.live_bytes), (1, 32));
    d.check_invariants();
}

#[test]
fn large_requests_and_blocks_from_before_go_to_the_wrapped_allocator() {
    let mut d = domain(16, 128, 1 << 20);
    let before = d.wrapped().malloc(40); // made before the switch
    let large = d.malloc(129);
    assert!(!d.owns(large) && !d.owns(before));
    // SAFETY: both are live blocks of the wrapped allocator, which checks it.
    unsafe {
        d.free(large);
        d.free(before);
    }
    assert!(d.wrapped().live.borrow().is_empty());
    let s = d.stats();
    assert_eq!(
        (s.wrapped.malloc, s.wrapped.free, s.pool.total()),
        (1, 2, 0)
    );
    d.check_invariants();
}

#[test]
fn inactive_domain_allocates_from_the_wrapped_one_but_frees_pool_blocks_to_the_pool() {
    let mut d = domain(16, 512, 1 << 20);
    let pooled = d.malloc(48);
    d.set_active(false);
    let later = d.malloc(48);
    assert!(d.owns(pooled) && !d.owns(later));
    // SAFETY: live blocks of this domain.
    unsafe {
        d.free(pooled);
        d.free(later);
    }
    assert_eq!(d.stats().live_blocks, 0);
    assert!(d.wrapped().live.borrow().is_empty());
    d.check_invariants();
}

#[test]
fn realloc_keeps_the_block_within_its_class_and_moves_contents_across() {
    let mut d = domain(16, 128, 1 << 20);
    let p = d.malloc(20);
    // SAFETY: `p` has 32 bytes.
    unsafe { ptr::copy_nonoverlapping(b"0123456789abcdefghij".as_ptr(), p, 20) };
    // SAFETY: each pointer passed is live; each result replaces it.
    unsafe {
        assert_eq!(d.realloc(p, 32), p, "same class: the same block");
        let q = d.realloc(p, 100);
        assert!(d.owns(q) && q != p);
        assert_eq!(std::slice::from_raw_parts(q, 20), b"0123456789abcdefghij");
        let big = d.realloc(q, 1000);
        assert!(!d.owns(big));
        assert_eq!(std::slice::from_raw_parts(big, 20), b"0123456789abcdefghij");
        let still_big = d.realloc(big, 10);
        assert!(
            !d.owns(still_big),
            "a wrapped block stays with the wrapped allocator"
        );
        d.free(still_big);
        let fresh = d.realloc(ptr::null_mut(), 8);
        assert!(d.owns(fresh));
        d.free(fresh);
    }
    let s = d.stats();
    assert_eq!(s.live_blocks, 0);
    assert_eq!(s.pool.realloc, 3);
    assert_eq!(s.wrapped.realloc, 1);
    d.check_invariants();
}

#[test]
fn calloc_zeroes_reused_blocks_and_overflow_goes_to_the_wrapped_allocator() {
    let mut d = domain(16, 128, 1 << 20);
    let p = d.malloc(64);
    // SAFETY: `p` has 64 bytes; it is freed once.
    unsafe {
        ptr::write_bytes(p, 0xAB, 64);
        d.free(p);
    }
    let q = d.calloc(4, 16);
    assert_eq!(q, p);
    // SAFETY: `q` has 64 bytes.
    assert!(unsafe { std::slice::from_raw_parts(q, 64) }
        .iter()
        .all(|&b| b == 0));
    assert!(d.calloc(usize::MAX, 2).is_null());
    assert_eq!(d.stats().wrapped.calloc, 1);
    // SAFETY: live.
    unsafe { d.free(q) };
    d.check_invariants();
}

#[test]
fn zero_bytes_is_a_unique_block() {
    let mut d = domain(16, 128, 1 << 20);
    let (a, b) = (d.malloc(0), d.malloc(0));
    assert!(!a.is_null() && a != b && d.owns(a));
    // SAFETY: live.
    unsafe {
        d.free(a);
        d.free(b);
        d.free(ptr::null_mut());
    }
    d.check_invariants();
}

#[test]
fn an_exhausted_arena_sends_small_requests_to_the_wrapped_allocator() {
    let mut d = domain(16, 128, 16384);
    let blocks: Vec<_> = (0..200).map(|_| d.malloc(128)).collect();
    let s = d.stats();
    assert!(s.arena_full > 0, "{s:?}");
    assert!(s.pool.malloc > 0 && s.wrapped.malloc > 0);
    assert!(s.arena_used <= 16384);
    for p in blocks {
        // SAFETY: live.
        unsafe { d.free(p) };
    }
    assert!(d.wrapped().live.borrow().is_empty());
    assert_eq!(d.stats().live_blocks, 0);
    d.check_invariants();
}

#[test]
fn align_8_blocks_are_8_aligned_and_the_largest_classes_work() {
    // With align 8 and max_bytes 512 the top classes have 63 and 64 granules, which the
    // class map keeps in its side table.
    let mut d = domain(8, 512, 1 << 20);
    let ps: Vec<_> = [8, 24, 504, 512, 505]
        .iter()
        .map(|&n| d.malloc(n))
        .collect();
    assert!(ps.iter().all(|&p| d.owns(p) && p as usize % 8 == 0));
    d.check_invariants();
    for p in ps {
        // SAFETY: live.
        unsafe { d.free(p) };
    }
    assert_eq!(d.stats().live_blocks, 0);
    d.check_invariants();
}

#[derive(Debug, Clone)]
enum Op {
    Malloc(usize),
    Calloc(usize),
    Realloc(usize, usize),
    Free(usize),
    Active(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![4 => 0usize..=160, 1 => 161usize..2000];
    prop_oneof![
        4 => size.clone().prop_map(Op::Malloc),
        1 => size.clone().prop_map(Op::Calloc),
        2 => (any::<usize>(), size).prop_map(|(i, n)| Op::Realloc(i, n)),
        4 => any::<usize>().prop_map(Op::Free),
        1 => any::<bool>().prop_map(Op::Active),
    ]
}

proptest! {
    /// Random programs over a small arena: every block keeps its contents, frees reach the
    /// allocator that made the block (the wrapped one checks it), and the equations hold.
    #[test]
    fn random_programs_route_every_block_home(ops in prop::collection::vec(op(), 1..300)) {
        let mut d = domain(16, 128, 8192);
        let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
        for (k, op) in ops.into_iter().enumerate() {
            let tag = k as u8;
            match op {
                Op::Malloc(n) | Op::Calloc(n) => {
                    let p = if matches!(op, Op::Malloc(_)) { d.malloc(n) } else { d.calloc(1, n) };
                    prop_assert!(!p.is_null());
                    prop_assert_eq!(p as usize % 16, 0);
                    // SAFETY: `p` has at least `n` bytes.
                    unsafe { ptr::write_bytes(p, tag, n) };
                    live.push((p, n, tag));
                }
                Op::Realloc(i, n) if !live.is_empty() => {
                    // glibc's realloc(p, 0) frees p: CPython asks for at least 1 byte.
                    let n = n.max(1);
                    let (p, old, t) = live.swap_remove(i % live.len());
                    // SAFETY: `p` is live; it is replaced by the result.
                    let q = unsafe { d.realloc(p, n) };
                    prop_assert!(!q.is_null());
                    // SAFETY: `q` keeps min(old, n) bytes of `p`.
                    let kept = unsafe { std::slice::from_raw_parts(q, old.min(n)) };
                    prop_assert!(kept.iter().all(|&b| b == t));
                    // SAFETY: `q` has `n` bytes.
                    unsafe { ptr::write_bytes(q, t, n) };
                    live.push((q, n, t));
                }
                Op::Free(i) if !live.is_empty() => {
                    let (p, n, t) = live.swap_remove(i % live.len());
                    // SAFETY: `p` has `n` bytes and is live until the free.
                    let bytes = unsafe { std::slice::from_raw_parts(p, n) };
                    prop_assert!(bytes.iter().all(|&b| b == t));
                    // SAFETY: live, freed once.
                    unsafe { d.free(p) };
                }
                Op::Active(on) => d.set_active(on),
                _ => {}
            }
            d.check_invariants();
        }
        for (p, _, _) in live {
            // SAFETY: live, freed once.
            unsafe { d.free(p) };
        }
        prop_assert_eq!(d.stats().live_blocks, 0);
        prop_assert!(d.wrapped().live.borrow().is_empty());
    }
}

#[test]
fn a_free_inside_a_block_is_counted_and_ignored() {
    let mut d = domain(16, 128, 1 << 20);
    let p = d.malloc(32);
    // SAFETY: deliberately the middle of a live block: the class map finds no block there.
    unsafe { d.free(p.add(16)) };
    let s = d.stats();
    assert_eq!((s.stray_frees, s.live_blocks, s.pool.free), (1, 1, 1));
    d.check_invariants();
    // SAFETY: live.
    unsafe { d.free(p) };
    assert_eq!(d.stats().live_blocks, 0);
    d.check_invariants();
}
