//! The queues' errors, one type per kind of call: a blocking call cannot
//! fail with "empty" or "full", a non-blocking one cannot time out. A
//! failed put hands its item back.
//!
//! | call | error |
//! |---|---|
//! | `put` | [`PutError`]: `Closed`, `Encode`, `Corrupt` |
//! | `try_put` | [`TryPutError`]: `Full` and those of `put` |
//! | `put_timeout` | [`PutTimeoutError`]: `Timeout` and those of `put` |
//! | `get` | [`GetError`]: `Closed`, `Decode`, `Corrupt` |
//! | `try_get` | [`TryGetError`]: `Empty` and those of `get` |
//! | `get_timeout` | [`GetTimeoutError`]: `Timeout` and those of `get` |
//! | `task_done` | [`TaskDoneError`] |
//!
//! Each converts into [`crate::Error`] (dropping the item), so `?` works in
//! a function returning [`crate::Result`].

use std::fmt;

const CORRUPT: &str = "the queue's shared memory was corrupted by another process";
const CLOSED: &str = "the queue is closed";
const CLOSED_EMPTY: &str = "the queue is closed and empty";

/// Why [`put`](super::Queue::put) did not enqueue the item; every variant
/// gives the item back ([`into_inner`](PutError::into_inner)).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutError<T> {
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded; the message says why.
    Encode(T, String),
    /// Another process wrote nonsense into the queue's shared memory; the
    /// queue is closed for good (see [`GetError::Corrupt`]).
    Corrupt(T),
}

/// Why [`try_put`](super::Queue::try_put) did not enqueue the item: no room
/// now, or why [`put`](super::Queue::put) fails. Every variant gives the
/// item back.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryPutError<T> {
    /// No room (Python's `put_nowait` raising `queue.Full`).
    Full(T),
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded; the message says why.
    Encode(T, String),
    /// The queue's shared memory was corrupted (see [`PutError::Corrupt`]).
    Corrupt(T),
}

/// Why [`put_timeout`](super::Queue::put_timeout) did not enqueue the
/// item: no room before the timeout, or why [`put`](super::Queue::put)
/// fails. Every variant gives the item back.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutTimeoutError<T> {
    /// No room before the timeout.
    Timeout(T),
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded; the message says why.
    Encode(T, String),
    /// The queue's shared memory was corrupted (see [`PutError::Corrupt`]).
    Corrupt(T),
}

// The three put errors share everything but their first variant.
macro_rules! put_error_common {
    ($ty:ident $(, $own:ident => $what:literal)?) => {
        impl<T> $ty<T> {
            /// The item that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $($ty::$own(t) => t,)?
                    $ty::Closed(t) | $ty::Corrupt(t) => t,
                    $ty::Encode(t, _) => t,
                }
            }

            /// Whether the queue was closed (also after corruption).
            pub fn is_closed(&self) -> bool {
                matches!(self, $ty::Closed(_) | $ty::Corrupt(_))
            }
        }

        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($ty::$own(_) => f.write_str(concat!(stringify!($own), "(..)")),)?
                    $ty::Closed(_) => f.write_str("Closed(..)"),
                    $ty::Encode(_, m) => write!(f, "Encode(.., {m:?})"),
                    $ty::Corrupt(_) => f.write_str("Corrupt(..)"),
                }
            }
        }

        impl<T> fmt::Display for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($ty::$own(_) => f.write_str($what),)?
                    $ty::Closed(_) => f.write_str(CLOSED),
                    $ty::Encode(_, m) => write!(f, "the item could not be encoded: {m}"),
                    $ty::Corrupt(_) => f.write_str(CORRUPT),
                }
            }
        }

        impl<T> std::error::Error for $ty<T> {}

        impl<T> From<$ty<T>> for crate::Error {
            /// The item-less form of the error; the item is dropped.
            fn from(e: $ty<T>) -> crate::Error {
                match e {
                    $($ty::$own(_) => crate::Error::$own,)?
                    $ty::Closed(_) => crate::Error::Closed,
                    $ty::Encode(_, m) => {
                        crate::Error::Codec(format!("the item could not be encoded: {m}"))
                    }
                    $ty::Corrupt(_) => crate::Error::Corrupt(CORRUPT),
                }
            }
        }
    };
}

put_error_common!(PutError);
put_error_common!(TryPutError, Full => "the queue is full");
put_error_common!(PutTimeoutError, Timeout => "timed out waiting for room in the queue");

macro_rules! widen_put {
    ($ty:ident) => {
        impl<T> From<PutError<T>> for $ty<T> {
            fn from(e: PutError<T>) -> $ty<T> {
                match e {
                    PutError::Closed(t) => $ty::Closed(t),
                    PutError::Encode(t, m) => $ty::Encode(t, m),
                    PutError::Corrupt(t) => $ty::Corrupt(t),
                }
            }
        }
    };
}

widen_put!(TryPutError);
widen_put!(PutTimeoutError);

/// Why [`get`](super::Queue::get) returned no item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The queue is closed and holds no more items.
    #[error("{CLOSED_EMPTY}")]
    Closed,
    /// An item was taken but could not be decoded as `T` (it is lost).
    #[error("an item could not be decoded: {0}")]
    Decode(String),
    /// Another process wrote into the queue's shared memory what no queue
    /// writes there (a record length past the ring, counters that cannot
    /// be): the first process to find it closed the queue for good, and
    /// every later call fails so. Nothing was read out of bounds.
    #[error("{CORRUPT}")]
    Corrupt,
}

/// Why [`try_get`](super::Queue::try_get) returned no item: none there
/// now, or why [`get`](super::Queue::get) fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryGetError {
    /// Nothing to take (Python's `get_nowait` raising `queue.Empty`).
    #[error("the queue is empty")]
    Empty,
    /// The queue is closed and holds no more items.
    #[error("{CLOSED_EMPTY}")]
    Closed,
    /// An item was taken but could not be decoded as `T` (it is lost).
    #[error("an item could not be decoded: {0}")]
    Decode(String),
    /// The queue's shared memory was corrupted (see [`GetError::Corrupt`]).
    #[error("{CORRUPT}")]
    Corrupt,
}

/// Why [`get_timeout`](super::Queue::get_timeout) returned no item: none
/// arrived before the timeout, or why [`get`](super::Queue::get) fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetTimeoutError {
    /// Nothing arrived before the timeout.
    #[error("timed out waiting for an item")]
    Timeout,
    /// The queue is closed and holds no more items.
    #[error("{CLOSED_EMPTY}")]
    Closed,
    /// An item was taken but could not be decoded as `T` (it is lost).
    #[error("an item could not be decoded: {0}")]
    Decode(String),
    /// The queue's shared memory was corrupted (see [`GetError::Corrupt`]).
    #[error("{CORRUPT}")]
    Corrupt,
}

macro_rules! get_error_common {
    ($ty:ident $(, $own:ident)?) => {
        impl From<$ty> for crate::Error {
            fn from(e: $ty) -> crate::Error {
                match e {
                    $($ty::$own => crate::Error::$own,)?
                    $ty::Closed => crate::Error::Closed,
                    $ty::Decode(m) => {
                        crate::Error::Codec(format!("an item could not be decoded: {m}"))
                    }
                    $ty::Corrupt => crate::Error::Corrupt(CORRUPT),
                }
            }
        }
    };
}

get_error_common!(GetError);
get_error_common!(TryGetError, Empty);
get_error_common!(GetTimeoutError, Timeout);

macro_rules! widen_get {
    ($ty:ident) => {
        impl From<GetError> for $ty {
            fn from(e: GetError) -> $ty {
                match e {
                    GetError::Closed => $ty::Closed,
                    GetError::Decode(m) => $ty::Decode(m),
                    GetError::Corrupt => $ty::Corrupt,
                }
            }
        }
    };
}

widen_get!(TryGetError);
widen_get!(GetTimeoutError);

/// [`JoinableQueue::task_done`](super::JoinableQueue::task_done) was called
/// more times than items were put (Python raises `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called more times than items were put")]
pub struct TaskDoneError;

impl From<TaskDoneError> for crate::Error {
    fn from(_: TaskDoneError) -> crate::Error {
        crate::Error::TaskDone
    }
}
