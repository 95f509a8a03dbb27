//! The fence around the kernel: every raw system call of the crate lives in
//! this module tree. The rest of the crate is safe code built on these
//! wrappers.

pub(crate) mod futex;
#[cfg(feature = "tokio")]
pub(crate) mod futex_waitv;
pub(crate) mod limits;
pub(crate) mod mem;
pub(crate) mod process;
pub(crate) mod thread;
