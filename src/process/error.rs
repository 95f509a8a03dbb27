//! The errors of starting, joining and signalling a
//! [`Process`](super::Process): what `start` can meet ([`StartError`]), what
//! `join` can ([`JoinError`]), what `join_ok` can ([`JoinOkError`]), what
//! `result` can ([`ResultError`]), what `signal`, `terminate` and `kill` can
//! ([`SignalError`]), what a [`ProcessGroup`](super::ProcessGroup)'s
//! calls can ([`GroupError`]), and [`get_context`](super::get_context)'s
//! ([`UnknownStartMethod`]).
//! Each converts into [`crate::Error`] variant for variant, so `?` works in
//! a function returning [`crate::Result`].

use std::io;

use crate::error::{Error, map_variants};
use crate::exit_status::ExitStatus;

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

/// Why [`Process::join_ok`](super::Process::join_ok) did not return `Ok`:
/// the child's end could not be learned, or it did not end well.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinOkError {
    /// The process was never started.
    #[error("process not started")]
    NotStarted,
    /// Someone else reaped the child, so how it ended is unknown (see
    /// [`JoinError::ReapedElsewhere`]).
    #[error("process {pid} was reaped by someone else: its exit status is unknown")]
    ReapedElsewhere {
        /// The child's pid (possibly reused by now).
        pid: i32,
    },
    /// The child did not end well: it panicked, exited with another code
    /// than 0, or a signal ended it; with the message it reported, if any.
    #[error("process {name:?} failed ({status}){}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    ChildFailed {
        /// The process's name.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// Its panic message or error text.
        message: Option<String>,
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

/// Why a signal was not sent ([`Process::signal`](super::Process::signal),
/// [`terminate`](super::Process::terminate), [`kill`](super::Process::kill),
/// [`signal_group`](super::Process::signal_group)).
///
/// A child this handle reaped is no error: signalling it does nothing (its
/// pid may belong to another process by then).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The process was never started.
    #[error("process not started")]
    NotStarted,
    /// The child ended and someone else reaped it (a `waitpid(-1)`,
    /// `SIGCHLD` set to `SIG_IGN`, another library's reaper): there is no
    /// process left to signal, and how it ended is unknown.
    #[error("process {pid} was reaped by someone else: there is nothing to signal")]
    ReapedElsewhere {
        /// The child's pid (possibly reused by now).
        pid: i32,
    },
    /// [`signal_group`](super::Process::signal_group) on a process not
    /// started in a group of its own
    /// ([`with_new_group`](super::Process::with_new_group)).
    #[error("signal_group needs a process started with with_new_group(true)")]
    NoGroup,
    /// A system call failed (`pidfd_send_signal`, `killpg`); `call` names
    /// it (`EPERM`: not allowed to signal that process).
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

/// Why a child's returned value could not be had
/// ([`Process::result`](super::Process::result)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// The process was never started.
    #[error("process not started")]
    NotStarted,
    /// Someone else reaped the child, so neither its status nor its value
    /// can be known (see [`JoinError::ReapedElsewhere`]).
    #[error("process {pid} was reaped by someone else: its exit status is unknown")]
    ReapedElsewhere {
        /// The child's pid (possibly reused by now).
        pid: i32,
    },
    /// The child did not end well: it panicked, exited with another code
    /// than 0, or a signal ended it; with the message it reported, if any.
    #[error("process {name:?} failed ({status}){}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    ChildFailed {
        /// The process's name.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// Its panic message or error text.
        message: Option<String>,
    },
    /// The child ended well but its value could not be decoded.
    #[error("codec: {0}")]
    Codec(String),
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

/// Why a [`ProcessGroup`](super::ProcessGroup) call failed; `index` is the
/// position of the process concerned, as [`push`](super::ProcessGroup::push)
/// returned it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// Process `index` could not be started.
    #[error("process {index} of the group was not started: {source}")]
    Start {
        /// Which process.
        index: usize,
        /// Why.
        #[source]
        source: StartError,
    },
    /// How process `index` ended could not be learned.
    #[error("process {index} of the group could not be joined: {source}")]
    Join {
        /// Which process.
        index: usize,
        /// Why.
        #[source]
        source: JoinError,
    },
    /// Process `index` ended with anything but exit code 0
    /// ([`run_fail_fast`](super::ProcessGroup::run_fail_fast)); the others
    /// were stopped.
    #[error("process {name:?} failed ({status}){}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    ChildFailed {
        /// Which process.
        index: usize,
        /// The process's name.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// Its panic message or error text.
        message: Option<String>,
    },
    /// Process `index` could not be signalled
    /// ([`terminate_all`](super::ProcessGroup::terminate_all),
    /// [`kill_all`](super::ProcessGroup::kill_all), or the stop of
    /// [`run_fail_fast`](super::ProcessGroup::run_fail_fast)).
    #[error("process {index} of the group could not be signalled: {source}")]
    Signal {
        /// Which process.
        index: usize,
        /// Why.
        #[source]
        source: SignalError,
    },
    /// A system call failed while waiting for the processes; `call` names
    /// it.
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
        map_variants!(e, Error => StartError {
            AlreadyStarted, ThreadedFork { threads }, ForeignCode { address, object }, Codec(m),
            InvalidArgument(m), Os { call, source },
        }, other => StartError::Os {
            call: "start",
            source: io::Error::other(other),
        })
    }
}

impl JoinError {
    /// The join error for what the layers below reported (see
    /// [`StartError::from_internal`]).
    pub(crate) fn from_internal(e: Error) -> JoinError {
        map_variants!(e, Error => JoinError {
            NotStarted, ReapedElsewhere { pid }, Os { call, source },
        }, other => JoinError::Os {
            call: "join",
            source: io::Error::other(other),
        })
    }
}

impl ResultError {
    /// The result error for what the layers below reported (see
    /// [`StartError::from_internal`]).
    #[cfg(feature = "spawn")]
    pub(crate) fn from_internal(e: Error) -> ResultError {
        map_variants!(e, Error => ResultError {
            NotStarted, ReapedElsewhere { pid }, ChildFailed { name, status, message }, Codec(m),
            Os { call, source },
        }, other => ResultError::Os {
            call: "result",
            source: io::Error::other(other),
        })
    }
}

impl From<JoinError> for ResultError {
    fn from(e: JoinError) -> ResultError {
        map_variants!(e, JoinError => ResultError {
            NotStarted, ReapedElsewhere { pid }, Os { call, source },
        })
    }
}

impl GroupError {
    /// The group error for what a signal or a wait reported: an `Os`
    /// error kept as it is, anything else as the source of one named
    /// `call`.
    pub(crate) fn os(call: &'static str, e: Error) -> GroupError {
        match e {
            Error::Os { call, source } => GroupError::Os { call, source },
            other => GroupError::Os {
                call,
                source: io::Error::other(other),
            },
        }
    }
}

impl From<ResultError> for Error {
    fn from(e: ResultError) -> Error {
        map_variants!(e, ResultError => Error {
            NotStarted, ReapedElsewhere { pid }, ChildFailed { name, status, message }, Codec(m),
            Os { call, source },
        })
    }
}

impl From<GroupError> for Error {
    fn from(e: GroupError) -> Error {
        match e {
            GroupError::Start { source, .. } => source.into(),
            GroupError::Join { source, .. } => source.into(),
            GroupError::ChildFailed {
                name,
                status,
                message,
                ..
            } => Error::ChildFailed {
                name,
                status,
                message,
            },
            GroupError::Signal { source, .. } => source.into(),
            GroupError::Os { call, source } => Error::Os { call, source },
        }
    }
}

impl From<StartError> for Error {
    fn from(e: StartError) -> Error {
        map_variants!(e, StartError => Error {
            AlreadyStarted, ThreadedFork { threads }, ForeignCode { address, object }, Codec(m),
            InvalidArgument(m), Os { call, source },
        })
    }
}

impl From<JoinError> for Error {
    fn from(e: JoinError) -> Error {
        map_variants!(e, JoinError => Error {
            NotStarted, ReapedElsewhere { pid }, Os { call, source },
        })
    }
}

impl SignalError {
    /// The signal error for what the layers below reported (see
    /// [`StartError::from_internal`]).
    pub(crate) fn from_internal(e: Error) -> SignalError {
        map_variants!(e, Error => SignalError {
            NotStarted, ReapedElsewhere { pid }, Os { call, source },
        }, other => SignalError::Os {
            call: "signal",
            source: io::Error::other(other),
        })
    }
}

impl From<JoinError> for JoinOkError {
    fn from(e: JoinError) -> JoinOkError {
        map_variants!(e, JoinError => JoinOkError {
            NotStarted, ReapedElsewhere { pid }, Os { call, source },
        })
    }
}

impl From<JoinOkError> for Error {
    fn from(e: JoinOkError) -> Error {
        map_variants!(e, JoinOkError => Error {
            NotStarted, ReapedElsewhere { pid }, ChildFailed { name, status, message },
            Os { call, source },
        })
    }
}

impl From<SignalError> for Error {
    /// The same kind; [`SignalError::NoGroup`] as [`Error::InvalidArgument`].
    fn from(e: SignalError) -> Error {
        map_variants!(e, SignalError => Error {
            NotStarted, ReapedElsewhere { pid }, Os { call, source },
        }, SignalError::NoGroup => Error::InvalidArgument(
            "signal_group needs a process started with with_new_group(true)",
        ))
    }
}

/// [`get_context`](super::get_context) was given a name that is not a
/// start method: only `"fork"` and `"spawn"` are (Python's `forkserver` is
/// not available).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown start method {name:?}: use \"fork\" or \"spawn\"")]
pub struct UnknownStartMethod {
    /// The name given.
    pub name: String,
}

impl From<UnknownStartMethod> for Error {
    /// [`Error::InvalidArgument`] (without the name).
    fn from(_: UnknownStartMethod) -> Error {
        Error::InvalidArgument("unknown start method: use \"fork\" or \"spawn\"")
    }
}
