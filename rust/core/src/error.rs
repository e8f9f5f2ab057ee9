//! Every way an allocator call can fail, as one error type shared by all layers.
//!
//! Misuse (foreign or misaligned pointers, double frees, size mismatches, exported
//! blocks) is detected *before* any state changes, so a call that returns one of those
//! errors leaves the allocator exactly as it was.

use std::any::Any;
use std::fmt;

/// What an out-of-memory handler raised; carried back to the caller untouched.
pub struct HandlerError(pub Box<dyn Any + Send>);

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerError(..)")
    }
}

#[derive(Debug)]
pub enum AllocError {
    /// The system (or the configured limit) refused `size` bytes and no handler freed any.
    OutOfMemory { size: usize },
    /// A size no allocator can serve (beyond `isize::MAX` once rounded).
    TooLarge { size: usize },
    /// The out-of-memory handler failed; its error is passed through.
    Handler(HandlerError),
    /// The address is not memory of this allocator.
    Foreign { addr: usize },
    /// The address is inside this allocator's memory but not on a block boundary.
    Misaligned { addr: usize, align: usize },
    /// The address is a block boundary of this allocator, but no live block starts there.
    NotLive { addr: usize },
    /// `addr` lies inside the live block `[start, start+size)`, not at its start.
    Interior {
        addr: usize,
        start: usize,
        size: usize,
    },
    /// A live block starts at `addr`, but it was allocated with a size of another class.
    SizeMismatch {
        addr: usize,
        size: usize,
        block_size: usize,
    },
    /// The block is exported (a view of it is alive), so it may not move or be freed.
    Pinned { addr: usize },
    /// Another call is moving the block (`reallocate` copies it with no lock held): it may
    /// not be freed, moved or viewed meanwhile, and is no longer live once moved.
    Moving { addr: usize },
    /// The block belongs to a container, which alone may free, move or expose it.
    Claimed { addr: usize },
    /// `[addr, addr+len)` does not lie inside one live block.
    OutOfBlock { addr: usize, len: usize },
    /// Debug mode: the size cookie of the block does not match the size it is freed with
    /// (a wrong size, or a write before the block's start).
    BadCookie {
        addr: usize,
        size: usize,
        cookie: usize,
    },
    /// Debug mode: a free block was written to after it was freed.
    WriteAfterFree { addr: usize, offset: usize },
    /// `release()` was asked while blocks are still live.
    LiveBlocks { blocks: usize },
    /// A construction parameter is out of its domain.
    InvalidParameter(String),
    /// Two containers use unequal allocators, so nodes of one cannot be freed by the other.
    AllocatorMismatch,
    /// A Python allocator returned `[addr, addr+len)`, which a container may not use
    /// (`why` says why).
    NotAvailable {
        addr: usize,
        len: usize,
        why: String,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory { size } => write!(f, "out of memory allocating {size} bytes"),
            Self::TooLarge { size } => {
                write!(f, "{size} bytes is more than any allocator can give")
            }
            Self::Handler(_) => f.write_str("the out-of-memory handler failed"),
            Self::Foreign { addr } => write!(f, "{addr:#x} is not memory of this allocator"),
            Self::Misaligned { addr, align } => {
                write!(
                    f,
                    "{addr:#x} is not a block address (blocks are {align}-byte aligned)"
                )
            }
            Self::NotLive { addr } => {
                write!(
                    f,
                    "no live block at {addr:#x} (double free or never allocated)"
                )
            }
            Self::Interior { addr, start, size } => write!(
                f,
                "{addr:#x} lies inside the live block {start:#x} of {size} bytes, not at its \
                 start"
            ),
            Self::SizeMismatch {
                addr,
                size,
                block_size,
            } => write!(
                f,
                "block {addr:#x} holds {block_size} bytes; size {size} belongs to another class"
            ),
            Self::Pinned { addr } => {
                write!(
                    f,
                    "block {addr:#x} is exported by a view; release the view first"
                )
            }
            Self::Moving { addr } => write!(
                f,
                "block {addr:#x} is being reallocated by another call: it cannot be freed, \
                 resized or viewed meanwhile, and is no longer live once moved"
            ),
            Self::Claimed { addr } => write!(
                f,
                "block {addr:#x} belongs to a container: it cannot be freed, resized or viewed \
                 directly"
            ),
            Self::OutOfBlock { addr, len } => {
                write!(
                    f,
                    "[{addr:#x}, {addr:#x}+{len}) does not lie inside one live block"
                )
            }
            Self::BadCookie { addr, size, cookie } => write!(
                f,
                "block {addr:#x} freed with size {size}, but its size cookie says {cookie} \
                 (wrong size, or a write before the block)"
            ),
            Self::WriteAfterFree { addr, offset } => write!(
                f,
                "block {addr:#x} was written to after it was freed (first changed byte at \
                 offset {offset})"
            ),
            Self::LiveBlocks { blocks } => {
                write!(
                    f,
                    "{blocks} blocks are still live; deallocate them before release()"
                )
            }
            Self::InvalidParameter(why) => f.write_str(why),
            Self::AllocatorMismatch => f.write_str(
                "the containers use different allocators: memory of one cannot be freed by the other",
            ),
            Self::NotAvailable { addr, len, why } => {
                write!(f, "[{addr:#x}, {addr:#x}+{len}) cannot back a container: {why}")
            }
        }
    }
}

impl std::error::Error for AllocError {}
