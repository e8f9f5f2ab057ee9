//! The checked pool's lookup of a block's upstream chunk.

use super::CheckedPool;
use crate::sgi::params::Params;
use crate::sgi::pool::NeedChunk;
use crate::sgi::upstream::{LibcMalloc, Upstream};

/// A pool over a one-page arena with `n` live 24-byte blocks, most of them in upstream
/// chunks (the pool takes one whenever it asks).
fn pool_past_its_arena(n: usize) -> (CheckedPool<LibcMalloc>, Vec<usize>) {
    let mut pool = CheckedPool::new(Params::default(), 4096, LibcMalloc).unwrap();
    let mut live = Vec::new();
    while live.len() < n {
        match pool.allocate_small(24, false) {
            Ok(p) => live.push(p),
            Err(NeedChunk { bytes }) => {
                let chunk = pool.pool().upstream().allocate(bytes, 8).unwrap();
                pool.add_chunk(chunk, bytes);
            }
        }
    }
    (pool, live)
}

#[test]
fn a_chunks_block_is_found_from_any_hint_and_the_hint_follows_it() {
    let (mut pool, live) = pool_past_its_arena(3000);
    let chunks = pool.chunk_maps.len();
    assert!(chunks >= 3, "{chunks} chunks");
    let chunk_of = |pool: &CheckedPool<LibcMalloc>, p: usize| {
        (0..pool.chunk_maps.len()).find(|&i| pool.chunk_maps[i].contains(p))
    };
    // A block of each chunk, freed while the hint names another chunk (or none at all):
    // each is found in its own chunk, and the hint then names that chunk.
    let mut freed = Vec::new();
    for c in 0..chunks {
        let p = *live
            .iter()
            .find(|&&p| chunk_of(&pool, p) == Some(c))
            .expect("every chunk has live blocks");
        pool.chunk_hint.set((c + 1) % (chunks + 1));
        // SAFETY: 24 is at most `fast_max`.
        assert!(unsafe { pool.try_free_small_or_chunk(p, 24, false) });
        assert_eq!(
            pool.chunk_hint.get(),
            c,
            "the hint moves to the chunk found"
        );
        freed.push(p);
    }
    // Freed again, from the right hint: refused, the pool unchanged.
    let before = pool.stats();
    for &p in &freed {
        pool.chunk_hint.set(chunk_of(&pool, p).unwrap());
        // SAFETY: as above.
        assert!(!unsafe { pool.try_free_small_or_chunk(p, 24, false) });
    }
    assert_eq!(pool.stats(), before);
    // An address in no region is in no chunk, whatever the hint.
    let outside = Box::new(0u64);
    assert_eq!(pool.chunk_index(&*outside as *const u64 as usize), None);
    pool.check_invariants();
    for p in live.into_iter().filter(|p| !freed.contains(p)) {
        // SAFETY: as above.
        assert!(unsafe { pool.try_free_small_or_chunk(p, 24, false) });
    }
    pool.check_invariants();
    pool.release().unwrap();
    assert_eq!(pool.chunk_index(freed[0]), None, "no chunk after release");
}
