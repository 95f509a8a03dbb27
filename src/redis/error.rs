//! The errors of [`RedisQueue`](super::RedisQueue): those of the
//! shared-memory queues, plus a server that failed. A failed put hands its
//! item back.

use std::fmt;

/// Why [`RedisQueue::put`](super::RedisQueue::put) and its variants did
/// not store the item; every variant gives the item back.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisPutError<T> {
    /// No room in a bounded queue (`try_put`, Python's `put_nowait`
    /// raising `queue.Full`).
    Full(T),
    /// No room before the timeout (`put_timeout`).
    Timeout(T),
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded; the message says why.
    Encode(T, String),
    /// The server could not be reached or failed; the message says which
    /// server and why. The item may or may not be in the queue if the
    /// connection broke after it was sent.
    Server(T, String),
}

impl<T> RedisPutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            RedisPutError::Full(t) | RedisPutError::Timeout(t) | RedisPutError::Closed(t) => t,
            RedisPutError::Encode(t, _) | RedisPutError::Server(t, _) => t,
        }
    }

    /// Whether the queue had no room (`Full` or `Timeout`).
    pub fn is_full(&self) -> bool {
        matches!(self, RedisPutError::Full(_) | RedisPutError::Timeout(_))
    }
}

impl<T> fmt::Debug for RedisPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisPutError::Full(_) => f.write_str("Full(..)"),
            RedisPutError::Timeout(_) => f.write_str("Timeout(..)"),
            RedisPutError::Closed(_) => f.write_str("Closed(..)"),
            RedisPutError::Encode(_, m) => write!(f, "Encode(.., {m:?})"),
            RedisPutError::Server(_, m) => write!(f, "Server(.., {m:?})"),
        }
    }
}

impl<T> fmt::Display for RedisPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisPutError::Full(_) => f.write_str("the queue is full"),
            RedisPutError::Timeout(_) => f.write_str("timed out waiting for room in the queue"),
            RedisPutError::Closed(_) => f.write_str("the queue is closed"),
            RedisPutError::Encode(_, m) => write!(f, "the item could not be encoded: {m}"),
            RedisPutError::Server(_, m) => write!(f, "the queue's server failed: {m}"),
        }
    }
}

impl<T> std::error::Error for RedisPutError<T> {}

/// Why [`RedisQueue::get`](super::RedisQueue::get) and its variants
/// returned no item.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisGetError {
    /// Nothing to take (`try_get`, Python's `get_nowait` raising
    /// `queue.Empty`).
    Empty,
    /// Nothing arrived before the timeout (`get_timeout`).
    Timeout,
    /// The queue is closed and holds no more items.
    Closed,
    /// An item was taken but could not be decoded as `T` (it is lost).
    Decode(String),
    /// The server could not be reached or failed (or did not answer within
    /// the read timeout); the message says which server and why.
    Server(String),
}

impl fmt::Display for RedisGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisGetError::Empty => f.write_str("the queue is empty"),
            RedisGetError::Timeout => f.write_str("timed out waiting for an item"),
            RedisGetError::Closed => f.write_str("the queue is closed and empty"),
            RedisGetError::Decode(m) => write!(f, "an item could not be decoded: {m}"),
            RedisGetError::Server(m) => write!(f, "the queue's server failed: {m}"),
        }
    }
}

impl std::error::Error for RedisGetError {}

/// Why a task of a [`RedisPool`](super::RedisPool) gave no result, or work
/// was not taken: the error of its submit calls (`apply_async`,
/// `map_async`, ...), of its waiting calls (`apply`, `map`,
/// [`RedisAsyncResult::get`](super::RedisAsyncResult::get)) and of each
/// item of a [`RedisIMap`](super::RedisIMap).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisTaskError {
    /// The task panicked in its worker (its message, where, and the
    /// worker's backtrace when asked), its result could not be encoded,
    /// its chunk was refused by the worker (another build, a bad
    /// signature), or its entry was delivered the most times allowed
    /// without a result (each of its workers died) and moved to the
    /// dead-letter stream: the text says which.
    #[error("task failed: {0}")]
    TaskFailed(String),
    /// Work was given through a handle that was closed or terminated.
    #[error("the pool is closed")]
    PoolClosed,
    /// The handle was terminated, or its job forgotten, before the result
    /// came.
    #[error("the pool was terminated before the task finished")]
    PoolTerminated,
    /// No result came within the timeout (`get_timeout`, `next_timeout`);
    /// it may still come.
    #[error("timed out")]
    Timeout,
    /// An argument could not be encoded, or a result decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The task function lives in a shared library, not in the main
    /// executable (see [`Error::ForeignCode`](crate::Error::ForeignCode)).
    #[error(
        "the function at {address:#x} is in {object}, not in the main executable: only the program's own functions can run in another process"
    )]
    ForeignCode {
        /// The function's address in this process.
        address: usize,
        /// The file of the object it lives in.
        object: String,
    },
    /// The work cannot be given as asked (a chunk size of 0); the text
    /// says why.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The server could not be reached or failed while the work was given
    /// (or this program's build could not be identified); the message says
    /// which server and why. Waiting calls pass over a failed server and
    /// try again until their deadline.
    #[error("redis: {0}")]
    Server(String),
}

impl RedisTaskError {
    /// The task error for what the layers below (which speak
    /// [`crate::Error`]) reported; anything without a variant here is kept
    /// as a `Server` error's text.
    pub(crate) fn from_internal(e: crate::Error) -> RedisTaskError {
        use crate::Error as E;
        match e {
            E::ForeignCode { address, object } => RedisTaskError::ForeignCode { address, object },
            E::InvalidArgument(m) => RedisTaskError::InvalidArgument(m),
            E::Codec(m) => RedisTaskError::Codec(m),
            E::Redis(m) => RedisTaskError::Server(m),
            other => RedisTaskError::Server(other.to_string()),
        }
    }
}

impl From<RedisTaskError> for crate::Error {
    fn from(e: RedisTaskError) -> crate::Error {
        use crate::Error as E;
        match e {
            RedisTaskError::TaskFailed(m) => E::TaskFailed(m),
            RedisTaskError::PoolClosed => E::PoolClosed,
            RedisTaskError::PoolTerminated => E::PoolTerminated,
            RedisTaskError::Timeout => E::Timeout,
            RedisTaskError::Codec(m) => E::Codec(m),
            RedisTaskError::ForeignCode { address, object } => E::ForeignCode { address, object },
            RedisTaskError::InvalidArgument(m) => E::InvalidArgument(m),
            RedisTaskError::Server(m) => E::Redis(m),
        }
    }
}
