//! The operating-system layer: the memory a pool carves, and the calls that change it.
//!
//! - `arena`: one `mmap` reservation handed out by a break, as `brk` moves the program break;
//! - `syscalls`: every call the arena makes, counted, so the counts users see are exact.
//!
//! Calls nothing else in the crate but `error`.

pub mod arena;
pub mod syscalls;
