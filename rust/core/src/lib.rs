//! stlalloc-core: the allocators of SGI STL 3.3 (`stl_alloc.h`) over real memory.
//!
//! - [`MallocAlloc`]: the first level, `malloc` with SGI's out-of-memory handler loop;
//! - [`Pool`]: the second level, SGI's free lists over an `mmap`'d [`Arena`],
//!   single-threaded and unchecked, as fast as the original;
//! - [`CheckedPool`]: the same pool validating every call;
//! - [`SharedPool`]: the checked pool, thread-safe, a heap per thread up to K; what
//!   Python uses;
//! - [`object_domain::ObjectDomain`]: the pool under an interpreter's object allocator.
//!
//! # Crate map
//!
//! The layers, bottom up; a layer calls only the layers listed before it:
//!
//! - `error`, `stats`, `sync`, `raw_lock`: what every layer shares (errors, statistics,
//!   the lock type parameter and the `shuttle` switch);
//! - `os`: the `mmap`'d arena and its counted system calls;
//! - `sgi`: SGI's two levels as `stl_alloc.h` has them, unchecked (`params`, `pool`,
//!   `first_level`, `upstream`); calls `os`;
//! - `checked`: `CheckedPool`, the pool validating every call over block maps and the
//!   spans of every byte; calls `sgi`;
//! - `shared`: `SharedPool`, checked pools behind locks, a heap per thread; calls `checked`;
//! - `block_allocator`: the address-based interface the layers above compose over,
//!   implemented here for `MallocAlloc` and `SharedPool` (one exception to the order:
//!   `sgi::first_level` uses its `spanning` helper);
//! - `adaptors`: debug, monotonic, tracing and allocator-api2 over a `BlockAllocator`;
//! - `containers`: `Vector` and `List` over any `BlockAllocator`;
//! - `lending`: the ledger that lets a foreign allocator back a container with blocks of
//!   a built-in one, over any `BlockAllocator`;
//! - `object_domain`: the unchecked SGI pool as an interpreter's object allocator, finding
//!   a freed block's class in `checked`'s class map; calls `sgi` and `checked`.
//!
//! No layer calls one above it; `containers` and `lending` see allocators only through
//! `BlockAllocator` (their tests build concrete pools).

pub mod adaptors;
pub mod block_allocator;
pub mod checked;
pub mod containers;
pub mod error;
pub mod lending;
pub mod object_domain;
pub mod os;
pub mod raw_lock;
pub mod sgi;
pub mod shared;
pub mod stats;
mod sync;

pub use block_allocator::BlockAllocator;
pub use checked::CheckedPool;
pub use error::{AllocError, HandlerError};
pub use os::arena::Arena;
pub use os::syscalls::SyscallCounts;
pub use raw_lock::{RawLock, SpinLock};
pub use sgi::first_level::{MallocAlloc, MallocStats, OomHandler};
pub use sgi::params::{Params, PoolParams, Sgi};
pub use sgi::pool::{NeedChunk, Pool};
pub use sgi::upstream::{LibcMalloc, Upstream};
pub use shared::SharedPool;
pub use stats::PoolStats;

/// The default arena reservation: 64 MiB of address space, committed as the break moves.
pub const DEFAULT_ARENA_SIZE: usize = 64 << 20;
