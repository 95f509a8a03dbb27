//! The fence around the kernel: every raw system call of the crate lives in
//! this module tree. The rest of the crate is safe code built on these
//! wrappers, and clippy's `disallowed-methods` (see `clippy.toml`) refuses
//! a raw `libc`/`nix` system call anywhere else.
//!
//! | file | what |
//! |---|---|
//! | [`atfork`] | hooks the modules above register to hold their locks across a fork |
//! | [`fd`] | pipes, descriptor flags, reads and writes, `poll`, file sizes |
//! | [`futex`] | wait and wake on a shared word |
//! | [`limits`] | CPUs online and allowed, the descriptor limit |
//! | [`mem`] | memfds and their shared mappings, POSIX shared memory objects |
//! | [`membarrier`] | a barrier on every running thread of registered processes (asymmetric fences) |
//! | [`process`] | fork, exit, reaping (waitpid, pidfd), signals to processes |
//! | [`random`] | `getrandom` |
//! | [`socket`] | socketpairs, sends without SIGPIPE, SCM_RIGHTS, private Unix listeners |
//! | [`thread`] | thread and process ids, the CPU a thread runs on |
//!
//! `sys` calls nothing above it but the crate's leaves, [`error`](crate::error)
//! and [`deadline`](crate::deadline) (time only): a module above that must
//! act around a fork registers in [`atfork`] instead of being called.

pub(crate) mod atfork;
pub(crate) mod fd;
pub(crate) mod futex;
#[cfg(feature = "tokio")]
pub(crate) mod futex_waitv;
pub(crate) mod limits;
pub(crate) mod mem;
#[cfg(feature = "queue")]
pub(crate) mod membarrier;
pub(crate) mod process;
pub(crate) mod random;
pub(crate) mod socket;
pub(crate) mod thread;
