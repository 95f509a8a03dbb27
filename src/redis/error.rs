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
