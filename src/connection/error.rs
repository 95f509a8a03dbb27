//! The errors of a [`Connection`](super::Connection)'s calls: what a send
//! can meet ([`SendError`]), what a receive can ([`RecvError`]), what
//! [`into_fd`](super::Connection::into_fd) can ([`IntoFdError`]); and what
//! [`wait`](super::wait) can ([`WaitError`]). Each converts into
//! [`crate::Error`] variant for variant, so `?` works in a function
//! returning [`crate::Result`].

use std::io;

use crate::error::{Error, map_variants};

/// Why a message (or a handle) was not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection cannot send: it is the read end of a one-way pipe,
    /// or handles were sent over something other than a Unix socket.
    #[error("connection is {0}")]
    BadConnection(&'static str),
    /// The value could not be encoded (`send`).
    #[error("codec: {0}")]
    Encode(String),
    /// Another process wrote into a shared-memory pipe's ring what no
    /// writer does; the pipe is unusable.
    #[error("corrupt shared memory: {0}")]
    Corrupt(&'static str),
    /// The system call failed: `EPIPE` when the other end is closed by
    /// every process that had it.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

/// Why no message (or handle) was received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The other end was closed (every copy of it) or its process died, at
    /// a message boundary: no more messages will come.
    #[error("end of stream: the other end closed the connection")]
    Eof,
    /// The other end stopped in the middle of a message: `got` of
    /// `expected` bytes arrived; the partial message is dropped.
    #[error("truncated message: {got} of {expected} bytes arrived before the end of stream")]
    Truncated {
        /// The length the message announced (header bytes for a cut header).
        expected: u64,
        /// How many bytes came.
        got: u64,
    },
    /// A message longer than the connection accepts; its bytes were
    /// skipped, so the next message can be read.
    #[error("message of {size} bytes exceeds the maximum of {max}")]
    MessageTooLarge {
        /// The announced size.
        size: u64,
        /// The connection's maximum.
        max: u64,
    },
    /// `recv_bytes_into` got a message longer than the buffer; the message
    /// is here (Python's `BufferTooShort`).
    #[error("buffer too short: the message has {} bytes", .0.len())]
    BufferTooShort(Vec<u8>),
    /// The connection cannot receive: the write end of a one-way pipe,
    /// out of step after a skipped message stopped coming, or a handle
    /// asked of something other than a Unix socket.
    #[error("connection is {0}")]
    BadConnection(&'static str),
    /// The message could not be decoded (`recv`), or the bytes were not
    /// what the call expected (a header, a handle).
    #[error("codec: {0}")]
    Decode(String),
    /// Another process wrote into a shared-memory pipe's ring what no
    /// writer does; nothing was read out of bounds.
    #[error("corrupt shared memory: {0}")]
    Corrupt(&'static str),
    /// The system call failed.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

impl SendError {
    /// The errno of an [`SendError::Os`] (`EPIPE`: the other end is gone).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            SendError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The send error for what the framing and ring layers (which speak
    /// [`Error`]) reported. Nothing else reaches a send; were it to, the
    /// error is kept whole as the source of an `Os` error.
    pub(crate) fn from_internal(e: Error) -> SendError {
        map_variants!(e, Error => SendError {
            BadConnection(m), Codec(m) as Encode, Corrupt(m), Os { call, source },
        }, other => SendError::Os {
            call: "send",
            source: io::Error::other(other),
        })
    }
}

impl RecvError {
    /// The errno of an [`RecvError::Os`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            RecvError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The receive error for what the framing and ring layers reported
    /// (see [`SendError::from_internal`]).
    pub(crate) fn from_internal(e: Error) -> RecvError {
        map_variants!(e, Error => RecvError {
            Eof, Truncated { expected, got }, MessageTooLarge { size, max }, BufferTooShort(m),
            BadConnection(m), Codec(m) as Decode, Corrupt(m), Os { call, source },
        }, other => RecvError::Os {
            call: "recv",
            source: io::Error::other(other),
        })
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Error {
        map_variants!(e, SendError => Error {
            BadConnection(m), Encode(m) as Codec, Corrupt(m), Os { call, source },
        })
    }
}

impl From<RecvError> for Error {
    fn from(e: RecvError) -> Error {
        map_variants!(e, RecvError => Error {
            Eof, Truncated { expected, got }, MessageTooLarge { size, max }, BufferTooShort(m),
            BadConnection(m), Decode(m) as Codec, Corrupt(m), Os { call, source },
        })
    }
}

/// Why [`wait`](super::wait) did not wait.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// `objects[index]` has nothing to wait for: a process never started
    /// (Python raises too).
    #[error("object {index} has nothing to wait for: process not started")]
    NotStarted {
        /// Its index in the list given to `wait`.
        index: usize,
    },
    /// The system call failed.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

impl WaitError {
    /// The errno of a [`WaitError::Os`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            WaitError::Os { source, .. } => source.raw_os_error(),
            WaitError::NotStarted { .. } => None,
        }
    }
}

impl From<WaitError> for Error {
    /// [`Error::NotStarted`] (without the index) or [`Error::Os`].
    fn from(e: WaitError) -> Error {
        map_variants!(e, WaitError => Error { Os { call, source } },
            WaitError::NotStarted { .. } => Error::NotStarted)
    }
}

/// [`Connection::into_fd`](super::Connection::into_fd) of an end of a
/// shared-memory [`pipe`](super::pipe): its descriptor is only a doorbell,
/// the bytes are not in it. The connection is here, unharmed.
#[derive(Debug, thiserror::Error)]
#[error("connection is backed by shared memory: its descriptor carries no data")]
pub struct IntoFdError(pub(super) super::Connection);

impl IntoFdError {
    /// The connection, still usable through its own calls.
    pub fn into_connection(self) -> super::Connection {
        self.0
    }
}

impl From<IntoFdError> for Error {
    /// [`Error::BadConnection`]; the connection is dropped (closed).
    fn from(_: IntoFdError) -> Error {
        Error::BadConnection("backed by shared memory: its descriptor carries no data")
    }
}
