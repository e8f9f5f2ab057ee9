//! stlalloc-core: the allocators of SGI STL 3.3 (`stl_alloc.h`) over real memory.
//!
//! - [`MallocAlloc`]: the first level, `malloc` with SGI's out-of-memory handler loop;
//! - [`Pool`]: the second level, SGI's free lists over an `mmap`'d [`Arena`],
//!   single-threaded and unchecked, as fast as the original;
//! - [`CheckedPool`]: the same pool validating every call;
//! - [`SharedPool`]: the checked pool, thread-safe, a heap per thread up to K; what
//!   Python uses;
//! - [`object_domain::ObjectDomain`]: the pool under an interpreter's object allocator.

pub mod api2;
pub mod arena;
pub mod block_allocator;
pub mod blockmap;
pub mod checked;
pub mod classmap;
pub mod containers;
pub mod debug;
pub mod error;
mod granules;
pub mod heaps;
pub mod layout;
pub mod lending;
pub mod malloc_alloc;
pub mod monotonic;
pub mod object_domain;
mod owner_fence;
pub mod params;
pub mod pool;
pub mod raw_lock;
pub mod shared_pool;
pub mod stats;
mod sync;
pub mod syscalls;
mod thread_token;
pub mod tracing;
pub mod upstream;

pub use arena::Arena;
pub use block_allocator::BlockAllocator;
pub use checked::CheckedPool;
pub use error::{AllocError, HandlerError};
pub use malloc_alloc::{MallocAlloc, MallocStats, OomHandler};
pub use params::{Params, PoolParams, Sgi};
pub use pool::{NeedChunk, Pool};
pub use raw_lock::{RawLock, SpinLock};
pub use shared_pool::SharedPool;
pub use stats::PoolStats;
pub use syscalls::SyscallCounts;
pub use upstream::{LibcMalloc, Upstream};

/// The default arena reservation: 64 MiB of address space, committed as the break moves.
pub const DEFAULT_ARENA_SIZE: usize = 64 << 20;
