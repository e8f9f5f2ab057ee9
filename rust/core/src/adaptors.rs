//! Allocators composed over a `BlockAllocator`, each adding one behaviour:
//!
//! - `debug`: SGI's `debug_alloc` and beyond (size cookies, freed bytes checked);
//! - `monotonic`: `std::pmr::monotonic_buffer_resource` over an arena;
//! - `tracing`: every allocation call recorded as an event;
//! - `allocator_api2`: the pool as an `allocator_api2::alloc::Allocator`.
//!
//! May call every layer below (`shared`, `checked`, `sgi`, `os`), never `containers`.

pub mod allocator_api2;
pub mod debug;
pub mod monotonic;
pub mod tracing;
