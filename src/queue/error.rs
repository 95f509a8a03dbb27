//! The queues' errors. A failed put hands its item back.

use std::fmt;

/// Why [`put`](super::Queue::put) and its variants did not enqueue the
/// item; every variant gives the item back.
#[derive(Clone, PartialEq, Eq)]
pub enum PutError<T> {
    /// No room (`try_put`, Python's `put_nowait` raising `queue.Full`).
    Full(T),
    /// No room before the timeout (`put_timeout`).
    Timeout(T),
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded; the message says why.
    Encode(T, String),
    /// Another process wrote nonsense into the queue's shared memory; the
    /// queue is closed for good (see [`GetError::Corrupt`]).
    Corrupt(T),
}

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(t) | PutError::Timeout(t) | PutError::Closed(t) => t,
            PutError::Corrupt(t) => t,
            PutError::Encode(t, _) => t,
        }
    }

    /// Whether the queue had no room (`Full` or `Timeout`).
    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_) | PutError::Timeout(_))
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Encode(_, m) => write!(f, "Encode(.., {m:?})"),
            PutError::Corrupt(_) => f.write_str("Corrupt(..)"),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue is full"),
            PutError::Timeout(_) => f.write_str("timed out waiting for room in the queue"),
            PutError::Closed(_) => f.write_str("the queue is closed"),
            PutError::Encode(_, m) => write!(f, "the item could not be encoded: {m}"),
            PutError::Corrupt(_) => f.write_str(CORRUPT),
        }
    }
}

impl<T> std::error::Error for PutError<T> {}

const CORRUPT: &str = "the queue's shared memory was corrupted by another process";

/// Why [`get`](super::Queue::get) and its variants returned no item.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetError {
    /// Nothing to take (`try_get`, Python's `get_nowait` raising
    /// `queue.Empty`).
    Empty,
    /// Nothing arrived before the timeout (`get_timeout`).
    Timeout,
    /// The queue is closed and holds no more items.
    Closed,
    /// An item was taken but could not be decoded as `T` (it is lost).
    Decode(String),
    /// Another process wrote into the queue's shared memory what no queue
    /// writes there (a record length past the ring, counters that cannot
    /// be): the first process to find it closed the queue for good, and
    /// every later call fails so. Nothing was read out of bounds.
    Corrupt,
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("the queue is empty"),
            GetError::Timeout => f.write_str("timed out waiting for an item"),
            GetError::Closed => f.write_str("the queue is closed and empty"),
            GetError::Decode(m) => write!(f, "an item could not be decoded: {m}"),
            GetError::Corrupt => f.write_str(CORRUPT),
        }
    }
}

impl std::error::Error for GetError {}

/// [`JoinableQueue::task_done`](super::JoinableQueue::task_done) was called
/// more times than items were put (Python raises `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskDoneError;

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called more times than items were put")
    }
}

impl std::error::Error for TaskDoneError {}
