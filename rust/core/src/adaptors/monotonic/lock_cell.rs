//! A value behind a `RawLock`, so the Python binding can lock the allocator with the GIL
//! (`SharedPool` has its own copy of this pattern, specialised to the pool).

use crate::raw_lock::RawLock;
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};

pub struct LockCell<T, L: RawLock> {
    lock: L,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is reached only through `Guard`, which holds `lock` (mutual exclusion by
// `RawLock`'s contract), so sharing the cell shares `T` between threads one at a time.
unsafe impl<T: Send, L: RawLock> Sync for LockCell<T, L> {}

impl<T, L: RawLock> LockCell<T, L> {
    pub fn new(value: T) -> Self {
        Self {
            lock: L::default(),
            value: UnsafeCell::new(value),
        }
    }

    #[inline]
    pub fn lock(&self) -> Guard<'_, T, L> {
        self.lock.lock();
        Guard { cell: self }
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

/// The locked value; unlocks when dropped.
pub struct Guard<'a, T, L: RawLock> {
    cell: &'a LockCell<T, L>,
}

impl<T, L: RawLock> Deref for Guard<'_, T, L> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock, so no other reference to the value exists.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T, L: RawLock> DerefMut for Guard<'_, T, L> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock, so no other reference to the value exists.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T, L: RawLock> Drop for Guard<'_, T, L> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard was created by `lock()` and holds the lock.
        unsafe { self.cell.lock.unlock() }
    }
}
