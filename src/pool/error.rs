//! The errors of the [`Pool`](super::Pool)'s calls: what building or
//! joining a pool can meet ([`PoolError`]), and what giving it work and
//! waiting for results can ([`TaskError`]). Both convert into
//! [`crate::Error`] variant for variant, so `?` works in a function
//! returning [`crate::Result`].

use std::io;

use crate::error::{Error, map_variants};
use crate::exit_status::ExitStatus;

/// Why a pool was not built ([`PoolBuilder::build`](super::PoolBuilder::build),
/// [`Pool::new`](super::Pool::new)) or not joined ([`Pool::join`](super::Pool::join)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A setting that cannot be used (zero processes, a zero
    /// `max_tasks_per_child`, rings too small), or `join` before `close`
    /// or `terminate`; the text says which.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The workers would be forked while other threads run; see
    /// [`PoolBuilder::allow_threads`](super::PoolBuilder::allow_threads).
    #[error(
        "refusing to fork: this process has {threads} threads, and a forked child gets a copy of \
         any lock another thread holds (see PoolBuilder::allow_threads)"
    )]
    ThreadedFork {
        /// How many threads the process had.
        threads: usize,
    },
    /// The initializer lives in a shared library, not in the main
    /// executable (see [`Error::ForeignCode`]).
    #[error(
        "the function at {address:#x} is in {object}, not in the main executable: only the program's own functions can run in another process"
    )]
    ForeignCode {
        /// The function's address in this process.
        address: usize,
        /// The file of the object it lives in.
        object: String,
    },
    /// A spawned worker's arguments (the initializer's) could not be
    /// encoded.
    #[error("codec: {0}")]
    Codec(String),
    /// A system call failed (making the shared memory, forking or
    /// spawning a worker); `call` names it.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

/// Why a task gave no result, or work was not taken: the error of the
/// pool's submit calls (`apply_async`, `map_async`, ...), of its waiting
/// calls (`apply`, `map`, [`AsyncResult::get`](super::AsyncResult::get)),
/// and of each item of an [`IMap`](super::IMap).
///
/// ```
/// use multiproc::pool::{Pool, TaskError};
///
/// fn check(x: u32) -> u32 {
///     assert!(x != 3, "three is not allowed");
///     x
/// }
///
/// # // Doctests run on a thread: opt in to forking there.
/// # let pool = unsafe { Pool::builder().processes(1).allow_threads() }.build()?;
/// match pool.apply(check, 3) {
///     Err(TaskError::TaskFailed(m)) => assert!(m.starts_with("three is not allowed")),
///     other => panic!("{other:?}"),
/// }
/// pool.close();
/// assert!(matches!(pool.apply(check, 1), Err(TaskError::PoolClosed)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked, or its result could not be encoded: the text says
    /// which; for a panic, its message, where in the worker it panicked
    /// (`(at file:line:column)`), and the worker's backtrace when
    /// `RUST_BACKTRACE` asks for one. The pool and its worker go on.
    #[error("task failed: {0}")]
    TaskFailed(String),
    /// The worker running the task ended before finishing it (killed by a
    /// signal, say); a new worker took its place.
    #[error("pool worker {pid} ended ({status}) while running the task")]
    WorkerDied {
        /// The worker's pid.
        pid: i32,
        /// How it ended.
        status: ExitStatus,
    },
    /// A worker's initializer failed (or workers kept dying as they
    /// started): the pool starts no more workers and fails every task.
    #[error("initializer failed: {0}")]
    InitializerFailed(String),
    /// Work was given after [`close`](super::Pool::close) or
    /// [`terminate`](super::Pool::terminate) (or, for an `imap`, its input
    /// was not all taken before [`join`](super::Pool::join)).
    #[error("the pool is closed")]
    PoolClosed,
    /// The pool was terminated (or dropped) before the task finished.
    #[error("the pool was terminated before the task finished")]
    PoolTerminated,
    /// No result came within the timeout (`get_timeout`,
    /// `IMap::next_timeout`); it may still come.
    #[error("timed out")]
    Timeout,
    /// An argument could not be encoded, or a result (or the task's
    /// arguments, in the worker) decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The task function lives in a shared library, not in the main
    /// executable (see [`Error::ForeignCode`]).
    #[error(
        "the function at {address:#x} is in {object}, not in the main executable: only the program's own functions can run in another process"
    )]
    ForeignCode {
        /// The function's address in this process.
        address: usize,
        /// The file of the object it lives in.
        object: String,
    },
    /// The work cannot be given as asked: a chunk size of 0, a closure
    /// that captures something (it cannot cross to a worker), a function
    /// the pool's owner never registered given by another process (one it
    /// forked), more task functions than the pool's table holds; the text
    /// says which.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl PoolError {
    /// The pool error for what the layers below (which speak [`Error`])
    /// reported. Anything without a variant here is kept whole as the
    /// source of an `Os` error.
    pub(crate) fn from_internal(e: Error) -> PoolError {
        map_variants!(e, Error => PoolError {
            InvalidArgument(m), ThreadedFork { threads }, ForeignCode { address, object },
            Codec(m), Os { call, source },
        }, Error::InvalidSize { reason, .. } => PoolError::InvalidArgument(reason),
        other => PoolError::Os {
            call: "pool",
            source: io::Error::other(other),
        })
    }
}

impl From<crate::process::StartError> for PoolError {
    fn from(e: crate::process::StartError) -> PoolError {
        PoolError::from_internal(e.into())
    }
}

impl TaskError {
    /// The task error for a refusal of the layers below (a function not in
    /// the main executable). Anything else is kept as a `Codec` error's
    /// text (nothing else reaches a submit).
    pub(crate) fn from_internal(e: Error) -> TaskError {
        map_variants!(e, Error => TaskError {
            ForeignCode { address, object }, InvalidArgument(m), Codec(m),
        }, other => TaskError::Codec(other.to_string()))
    }
}

impl From<PoolError> for Error {
    fn from(e: PoolError) -> Error {
        map_variants!(e, PoolError => Error {
            InvalidArgument(m), ThreadedFork { threads }, ForeignCode { address, object },
            Codec(m), Os { call, source },
        })
    }
}

impl From<TaskError> for Error {
    fn from(e: TaskError) -> Error {
        map_variants!(e, TaskError => Error {
            TaskFailed(m), WorkerDied { pid, status }, InitializerFailed(m), PoolClosed,
            PoolTerminated, Timeout, Codec(m), ForeignCode { address, object },
            InvalidArgument(m),
        })
    }
}
