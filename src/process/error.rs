//! The errors of starting and joining a [`Process`](super::Process): what
//! `start` can meet ([`StartError`]) and what `join` can ([`JoinError`]).
//! Both convert into [`crate::Error`] variant for variant, so `?` works in
//! a function returning [`crate::Result`].

use std::io;

use crate::error::Error;

/// Why a child was not started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `start` was called on a process that was already started.
    #[error("process already started")]
    AlreadyStarted,
    /// `fork` was asked for while other threads run; see
    /// [`Process::allow_threads`](crate::Process::allow_threads).
    #[error(
        "refusing to fork: this process has {threads} threads, and a forked child gets a copy of \
         any lock another thread holds (see Process::allow_threads)"
    )]
    ThreadedFork {
        /// How many threads the process had.
        threads: usize,
    },
    /// The function to run in the child lives in a shared library, not in
    /// the main executable (see [`Error::ForeignCode`]).
    #[error(
        "the function at {address:#x} is in {object}, not in the main executable: only the program's own functions can run in another process"
    )]
    ForeignCode {
        /// The function's address in this process.
        address: usize,
        /// The file of the object it lives in.
        object: String,
    },
    /// A spawned child's arguments could not be encoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The start cannot be made as asked (from a scope of another process,
    /// a spawn without the executable's path, ...); the text says why.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A system call failed (`fork`, `pidfd_open`, `execve`'s preparation,
    /// a pipe); `call` names it.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

/// Why a child's end could not be learned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The process was never started.
    #[error("process not started")]
    NotStarted,
    /// The child ended but someone else reaped it first (a `waitpid(-1)`,
    /// `SIGCHLD` set to `SIG_IGN`, another library's reaper), so how it
    /// ended is unknown: Python's `exitcode` is `None` here.
    #[error("process {pid} was reaped by someone else: its exit status is unknown")]
    ReapedElsewhere {
        /// The child's pid (possibly reused by now).
        pid: i32,
    },
    /// A system call failed (`waitid`, `poll`, reading the child's report).
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

impl StartError {
    /// The start error for what the layers below (which speak [`Error`])
    /// reported. Nothing else reaches a start; were it to, the error is
    /// kept whole as the source of an `Os` error.
    pub(crate) fn from_internal(e: Error) -> StartError {
        match e {
            Error::AlreadyStarted => StartError::AlreadyStarted,
            Error::ThreadedFork { threads } => StartError::ThreadedFork { threads },
            Error::ForeignCode { address, object } => StartError::ForeignCode { address, object },
            Error::Codec(m) => StartError::Codec(m),
            Error::InvalidArgument(m) => StartError::InvalidArgument(m),
            Error::Os { call, source } => StartError::Os { call, source },
            other => StartError::Os {
                call: "start",
                source: io::Error::other(other),
            },
        }
    }
}

impl JoinError {
    /// The join error for what the layers below reported (see
    /// [`StartError::from_internal`]).
    pub(crate) fn from_internal(e: Error) -> JoinError {
        match e {
            Error::NotStarted => JoinError::NotStarted,
            Error::ReapedElsewhere { pid } => JoinError::ReapedElsewhere { pid },
            Error::Os { call, source } => JoinError::Os { call, source },
            other => JoinError::Os {
                call: "join",
                source: io::Error::other(other),
            },
        }
    }
}

impl From<StartError> for Error {
    fn from(e: StartError) -> Error {
        match e {
            StartError::AlreadyStarted => Error::AlreadyStarted,
            StartError::ThreadedFork { threads } => Error::ThreadedFork { threads },
            StartError::ForeignCode { address, object } => Error::ForeignCode { address, object },
            StartError::Codec(m) => Error::Codec(m),
            StartError::InvalidArgument(m) => Error::InvalidArgument(m),
            StartError::Os { call, source } => Error::Os { call, source },
        }
    }
}

impl From<JoinError> for Error {
    fn from(e: JoinError) -> Error {
        match e {
            JoinError::NotStarted => Error::NotStarted,
            JoinError::ReapedElsewhere { pid } => Error::ReapedElsewhere { pid },
            JoinError::Os { call, source } => Error::Os { call, source },
        }
    }
}
