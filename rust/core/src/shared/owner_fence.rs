//! An asymmetric fence: a heap's owner thread orders its fast path with a compiler fence
//! only (no instruction), and every other thread that wants the heap pays for both sides
//! with `membarrier(2)`, which runs a full memory barrier on every CPU that is running a
//! thread of this process. This is what lets `heaps::Heap::enter_owned` take the heap
//! with plain stores and an Acquire load: Dekker's store-then-load of `busy` and
//! `owner_max` (the request), whose store-load order the heavy side supplies.
//!
//! If the kernel refuses the private barrier after registering (a seccomp filter installed
//! later, say), `heavy` falls back on the global one, which gives the same order to every
//! thread of every process, only far slower; if it refuses both, `heavy` says so and the
//! caller may not take the heap (`heaps::Heap::lock` then leaves it as it was and panics).
//!
//! Invariant: after `heavy()` returns true, every store that another thread made before its
//! last `light()` is visible to the caller, and every store the caller made before
//! `heavy()` is visible to every load another thread makes after its next `light()`.

use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::OnceLock;

const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Whether this process may use the asymmetric fence: the kernel has `membarrier` with
/// private expedited barriers (Linux 4.14) and let this process register for them.
/// Asked once; without it, owners lock their heaps as every other thread does.
pub fn available() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        if cfg!(feature = "shuttle") {
            // The model checker runs every atomic as SeqCst: the fences are no-ops there.
            return true;
        }
        // SAFETY: membarrier takes two integers and a CPU id; registering has no effect on
        // memory, and a kernel without it returns -1 (ENOSYS, or EPERM under seccomp).
        let r = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                0,
                0,
            )
        };
        r == 0
    })
}

/// The owner's side: keeps the compiler from moving memory accesses across it.
#[inline(always)]
pub fn light() {
    compiler_fence(Ordering::SeqCst);
}

/// Everyone else's side: a full barrier on every CPU running one of our threads. Only
/// called once `available()` said yes. False if the kernel refused it (a seccomp filter
/// installed after registering, say) and refused the global barrier too, which orders
/// every thread of every process the same way, only far slower: the caller must then act
/// as if no barrier ran.
#[must_use]
pub fn heavy() -> bool {
    if cfg!(feature = "shuttle") {
        return true;
    }
    std::sync::atomic::fence(Ordering::SeqCst);
    let ok = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) || membarrier(MEMBARRIER_CMD_GLOBAL);
    std::sync::atomic::fence(Ordering::SeqCst);
    ok
}

fn membarrier(cmd: libc::c_int) -> bool {
    #[cfg(test)]
    if tests::refused(cmd) {
        return false;
    }
    // SAFETY: membarrier takes two integers and a CPU id; a barrier changes no memory, and
    // a refusal is -1.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) == 0 }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// The barrier commands the kernel "refuses" to the calling thread (a bit each).
        static REFUSED: Cell<libc::c_int> = const { Cell::new(0) };
    }

    /// Runs `f` with the kernel refusing the barrier commands in `cmds` to this thread,
    /// until `f` returns or unwinds.
    pub(crate) fn refusing<T>(cmds: libc::c_int, f: impl FnOnce() -> T) -> T {
        struct Restore(libc::c_int);
        impl Drop for Restore {
            fn drop(&mut self) {
                REFUSED.with(|r| r.set(self.0));
            }
        }
        let _restore = Restore(REFUSED.with(|r| r.replace(cmds)));
        f()
    }

    pub(crate) const PRIVATE: libc::c_int = MEMBARRIER_CMD_PRIVATE_EXPEDITED;
    pub(crate) const ALL: libc::c_int = MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_GLOBAL;

    pub(super) fn refused(cmd: libc::c_int) -> bool {
        REFUSED.with(|r| r.get() & cmd != 0)
    }

    #[test]
    fn the_global_barrier_stands_in_for_a_refused_private_one() {
        if !available() {
            return;
        }
        assert!(heavy());
        assert!(refusing(PRIVATE, heavy), "global barrier");
        assert!(!refusing(ALL, heavy));
        assert!(heavy(), "refusals were this call's only");
    }

    #[test]
    fn available_exactly_where_the_kernel_offers_private_expedited_barriers() {
        const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
        // SAFETY: a query changes nothing; it returns the supported commands, or -1.
        let offered = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
        let expected =
            offered > 0 && offered & libc::c_long::from(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0;
        // Under valgrind (no membarrier) both are false, and owners lock their heaps.
        assert_eq!(available(), expected);
        if available() {
            light();
            assert!(heavy());
        }
    }
}
