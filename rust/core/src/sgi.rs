//! SGI STL 3.3's two levels, as `stl_alloc.h` has them, unchecked.
//!
//! - `params`: the pool's parameters and SGI's size arithmetic (`round_up`, the index);
//! - `free_lists`: SGI's `free_list` array, its first heads inside the pool;
//! - `pool`: the second level, `__default_alloc_template` (`free_list`, `refill`,
//!   `chunk_alloc`, `heap_size`, `start_free`, `end_free`) over an `os::arena`;
//! - `first_level`: `__malloc_alloc_template`, libc `malloc` with the out-of-memory
//!   handler loop, and its table of live blocks;
//! - `upstream`: where a pool sends what it does not serve itself (the first level).
//!
//! Calls `os` and the crate's top-level modules, never a layer above.

pub mod first_level;
pub mod free_lists;
pub mod params;
pub mod pool;
pub mod upstream;
