//! An asymmetric fence: a heap's owner thread orders its fast path with a compiler fence
//! only (no instruction), and every other thread that wants the heap pays for both sides
//! with `membarrier(2)`, which runs a full memory barrier on every CPU that is running a
//! thread of this process. This is what lets `heaps::Heap::enter_owned` take the heap
//! with plain stores and an Acquire load: Dekker's store-then-load of `busy` and
//! `requested`, whose store-load order the heavy side supplies.
//!
//! Invariant: after `heavy()` returns, every store that another thread made before its
//! last `light()` is visible to the caller, and every store the caller made before
//! `heavy()` is visible to every load another thread makes after its next `light()`.

use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::OnceLock;

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
/// called once `available()` said yes.
pub fn heavy() {
    if cfg!(feature = "shuttle") {
        return;
    }
    std::sync::atomic::fence(Ordering::SeqCst);
    // SAFETY: registered by `available`; the barrier changes no memory.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
    // Registration succeeded, so the kernel supports the command: only a kernel bug fails.
    assert_eq!(r, 0, "membarrier failed after registering");
    std::sync::atomic::fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

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
            heavy();
        }
    }
}
