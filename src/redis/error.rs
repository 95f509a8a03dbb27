//! The errors of the Redis side: a queue's put ([`RedisPutError`], which
//! hands its item back) and get ([`RedisGetError`]), a pool's tasks
//! ([`RedisTaskError`]), and everything else ([`RedisError`]: opening,
//! closing and deleting queues, joining, building and steering a pool,
//! running a worker, a [`LocalServer`](super::LocalServer)). Each converts
//! into [`crate::Error`], so `?` works in a function returning
//! [`crate::Result`].

use std::fmt;
use std::io;

use crate::error::map_variants;

/// Why a call of the Redis side that is not a queue's put or get, nor a
/// pool task's, failed: opening or closing a queue, `task_done` and
/// `join`, building, joining or steering a [`RedisPool`](super::RedisPool),
/// running a worker, starting or stopping a
/// [`LocalServer`](super::LocalServer).
///
/// Match on it to tell a server that is gone from one that refused what
/// it was asked:
///
/// ```no_run
/// use multiproc::redis::{RedisError, RedisStreamQueue};
/// use std::time::Duration;
///
/// match RedisStreamQueue::<u32>::open("redis://127.0.0.1:6379/", "jobs", Duration::from_secs(30)) {
///     Ok(q) => drop(q),
///     Err(RedisError::Unreachable(why)) => eprintln!("no server: {why}"),
///     Err(RedisError::WrongType(why)) => eprintln!("the name is taken by other data: {why}"),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The server could not be reached, the connection to it broke, or it
    /// did not answer within the read timeout (stalled); the message says
    /// which server and why. The next call connects again.
    #[error("redis server unreachable: {0}")]
    Unreachable(String),
    /// A key the call uses holds another type of value (Redis's
    /// `WRONGTYPE`): other data, or another kind of multiproc object,
    /// uses the name. Nothing was changed.
    #[error("redis key of the wrong type: {0}")]
    WrongType(String),
    /// The server refused the command (an error reply: out of memory,
    /// read-only replica, no permission, ...); the message is the
    /// server's.
    #[error("redis: {0}")]
    Server(String),
    /// A reply, or an entry kept on the server, is not what this crate
    /// writes there (another program changed the keys, or the server is
    /// not a Redis server).
    #[error("redis protocol: {0}")]
    Protocol(String),
    /// The URL cannot be parsed as a Redis server's.
    #[error("invalid redis URL: {0}")]
    InvalidUrl(String),
    /// A queue or pool name that cannot be used (empty).
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The call cannot be made now (`join` of a pool that was not
    /// closed); the text says why.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The timeout passed first ([`RedisPool::join_timeout`](super::RedisPool::join_timeout)).
    #[error("timed out")]
    Timeout,
    /// [`task_done`](super::JoinableRedisQueue::task_done) was called more
    /// times than items were put (Python raises `ValueError`). The count
    /// stays at 0.
    #[error("task_done() called more times than items were put")]
    TaskDone,
    /// A worker took a task it must not run (made by another build of the
    /// program, or signed with another authkey): the task fails with this
    /// text, and the worker stopped.
    #[error("{0}")]
    TaskRefused(String),
    /// `redis-server` could not be started, or did not accept connections
    /// in time ([`LocalServer`](super::LocalServer)); the message says why
    /// (not installed, exited, port taken).
    #[error("redis-server not started: {0}")]
    Start(String),
    /// A local worker process of a pool could not be started, stopped or
    /// reaped.
    #[error("local worker: {0}")]
    LocalWorker(#[source] Box<crate::Error>),
    /// A system call failed in this process; `call` names it.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

impl RedisError {
    /// Whether the server could not be reached or the connection broke
    /// ([`RedisError::Unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RedisError::Unreachable(_))
    }

    /// The error of a command that failed on `addr`: a broken or stalled
    /// connection, a key of the wrong type, a reply of another shape, or
    /// the server's refusal.
    pub(crate) fn of_command(addr: &str, e: &::redis::RedisError) -> RedisError {
        if e.is_timeout() {
            RedisError::Unreachable(format!(
                "the redis server at {addr} did not answer in time (stalled?): {e}"
            ))
        } else if e.is_connection_dropped() || e.is_io_error() {
            RedisError::Unreachable(format!(
                "lost the connection to the redis server at {addr}: {e}"
            ))
        } else if e.code() == Some("WRONGTYPE") || e.to_string().contains("WRONGTYPE") {
            // (A script's failed call keeps the code in its text.)
            RedisError::WrongType(format!("redis server at {addr}: {e}"))
        } else if matches!(
            e.kind(),
            ::redis::ErrorKind::UnexpectedReturnType | ::redis::ErrorKind::Parse
        ) {
            RedisError::Protocol(format!("redis server at {addr}: {e}"))
        } else {
            RedisError::Server(format!("redis server at {addr}: {e}"))
        }
    }

    /// Whether the server's reply named `code` (`BUSYGROUP`, `NOGROUP`).
    pub(crate) fn names(&self, code: &str) -> bool {
        match self {
            RedisError::Server(m) | RedisError::WrongType(m) | RedisError::Protocol(m) => {
                m.contains(code)
            }
            _ => false,
        }
    }

    /// The text of this error where a lead of its own follows one that
    /// says "redis" already ([`crate::Error::Redis`]'s `redis: `,
    /// [`RedisTaskError::Server`]'s, the put and get errors' `Server`):
    /// its display without its own "redis" lead, so that the text names
    /// Redis once.
    pub(crate) fn detail(&self) -> String {
        match self {
            RedisError::Unreachable(m) => format!("server unreachable: {m}"),
            RedisError::WrongType(m) => format!("key of the wrong type: {m}"),
            RedisError::Server(m) => m.clone(),
            RedisError::Protocol(m) => format!("protocol: {m}"),
            RedisError::InvalidUrl(m) => format!("invalid URL: {m}"),
            other => other.to_string(),
        }
    }

    pub(crate) fn local_worker(e: impl Into<crate::Error>) -> RedisError {
        RedisError::LocalWorker(Box::new(e.into()))
    }
}

impl From<RedisError> for crate::Error {
    /// The same kind where `Error` has it (`InvalidName`, `Timeout`,
    /// `TaskDone`, `Os`, ...); a server's failure as [`crate::Error::Redis`]
    /// with the message (which names Redis once: `redis: server
    /// unreachable: ...`).
    fn from(e: RedisError) -> crate::Error {
        use crate::Error;
        map_variants!(e, RedisError => Error {
            InvalidName { name, reason }, InvalidArgument(m), Timeout, TaskDone,
            Os { call, source },
        }, RedisError::LocalWorker(e) => *e,
        other => Error::Redis(other.detail()))
    }
}

impl From<RedisError> for RedisGetError {
    /// A get that met a key of another type: [`RedisGetError::WrongType`];
    /// a failing server: [`RedisGetError::Server`] with the message.
    fn from(e: RedisError) -> RedisGetError {
        match e {
            RedisError::WrongType(m) => RedisGetError::WrongType(m),
            other => RedisGetError::Server(other.detail()),
        }
    }
}

impl From<RedisError> for RedisTaskError {
    /// [`RedisTaskError::Server`] with the message (the waiting calls pass
    /// over a failed server until their deadline).
    fn from(e: RedisError) -> RedisTaskError {
        match e {
            RedisError::InvalidArgument(m) => RedisTaskError::InvalidArgument(m),
            other => RedisTaskError::Server(other.detail()),
        }
    }
}

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
    /// A key of the queue holds another type of value (Redis's
    /// `WRONGTYPE`): other data, or another kind of multiproc object, uses
    /// the queue's name. Nothing was stored; the message says which server.
    WrongType(T, String),
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
            RedisPutError::Encode(t, _)
            | RedisPutError::WrongType(t, _)
            | RedisPutError::Server(t, _) => t,
        }
    }

    /// The put error of `item` for a command that failed with `e`: a key of
    /// another type, or a failing server.
    pub(crate) fn of_command(item: T, e: RedisError) -> RedisPutError<T> {
        match e {
            RedisError::WrongType(m) => RedisPutError::WrongType(item, m),
            other => RedisPutError::Server(item, other.detail()),
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
            RedisPutError::WrongType(_, m) => write!(f, "WrongType(.., {m:?})"),
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
            RedisPutError::WrongType(_, m) => {
                write!(f, "a key of the queue holds another type of value: {m}")
            }
            RedisPutError::Server(_, m) => write!(f, "the queue's server failed: {m}"),
        }
    }
}

impl<T> std::error::Error for RedisPutError<T> {}

impl<T> From<RedisPutError<T>> for crate::Error {
    /// The same kind (`Full`, `Timeout`, `Closed`, `Codec`, `Redis`); the
    /// item is dropped.
    fn from(e: RedisPutError<T>) -> crate::Error {
        use crate::Error as E;
        match e {
            RedisPutError::Full(_) => E::Full,
            RedisPutError::Timeout(_) => E::Timeout,
            RedisPutError::Closed(_) => E::Closed,
            RedisPutError::Encode(_, m) => E::Codec(m),
            RedisPutError::WrongType(_, m) => E::Redis(wrong_type(&m)),
            RedisPutError::Server(_, m) => E::Redis(m),
        }
    }
}

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
    /// A key of the queue holds another type of value (Redis's
    /// `WRONGTYPE`): other data, or another kind of multiproc object, uses
    /// the queue's name. Nothing was taken; the message says which server.
    WrongType(String),
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
            RedisGetError::WrongType(m) => {
                write!(f, "a key of the queue holds another type of value: {m}")
            }
            RedisGetError::Server(m) => write!(f, "the queue's server failed: {m}"),
        }
    }
}

impl std::error::Error for RedisGetError {}

impl From<RedisGetError> for crate::Error {
    /// The same kind (`Empty`, `Timeout`, `Closed`, `Codec`, `Redis`; a
    /// key of the wrong type as `Redis`).
    fn from(e: RedisGetError) -> crate::Error {
        use crate::Error as E;
        match e {
            RedisGetError::Empty => E::Empty,
            RedisGetError::Timeout => E::Timeout,
            RedisGetError::Closed => E::Closed,
            RedisGetError::Decode(m) => E::Codec(m),
            RedisGetError::WrongType(m) => E::Redis(wrong_type(&m)),
            RedisGetError::Server(m) => E::Redis(m),
        }
    }
}

/// The text of a put's or get's `WrongType` in an [`crate::Error::Redis`],
/// as [`RedisError::detail`] writes a [`RedisError::WrongType`].
fn wrong_type(m: &str) -> String {
    RedisError::WrongType(m.to_owned()).detail()
}

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
        use crate::Error;
        map_variants!(e, Error => RedisTaskError {
            ForeignCode { address, object }, InvalidArgument(m), Codec(m), Redis(m) as Server,
        }, other => RedisTaskError::Server(other.to_string()))
    }
}

impl From<RedisTaskError> for crate::Error {
    fn from(e: RedisTaskError) -> crate::Error {
        use crate::Error;
        map_variants!(e, RedisTaskError => Error {
            TaskFailed(m), PoolClosed, PoolTerminated, Timeout, Codec(m),
            ForeignCode { address, object }, InvalidArgument(m), Server(m) as Redis,
        })
    }
}
