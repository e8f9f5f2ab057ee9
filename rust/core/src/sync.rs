//! Locking helpers shared by the thread-safe allocators.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: every allocator operation validates before it mutates,
/// so a panic on another thread cannot have left the state half-changed.
#[inline]
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
