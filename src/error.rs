//! The crate's coarse error type, and the per-call errors of the locks and
//! of object creation. Other modules define the errors of their own calls
//! (`queue::PutError<T>`, `connection::RecvError`, `process::StartError`,
//! `SharedMemoryError`, ...); every per-call error converts into [`Error`],
//! so `?` works in a function returning [`Result`].

use std::fmt;
use std::io;

/// Converts between two error enums whose variants of the same meaning
/// carry the same fields: each listed variant of `$src` becomes the variant
/// of `$dst` of the same name (or the one named after `as`) with its
/// fields moved over; arms after the list (`, pattern => value, ...`) take
/// the rest. The one home of the per-call errors' variant-for-variant
/// conversions (into [`Error`], and `from_internal` out of it).
///
/// ```text
/// map_variants!(e, SendError => Error {
///     BadConnection(m), Encode(m) as Codec, Os { call, source },
/// })
/// ```
macro_rules! map_variants {
    ($e:expr, $src:ident => $dst:ident {
        $( $v:ident $( ( $($t:ident),* ) )? $( { $($f:ident),* } )? $( as $w:ident )? ),* $(,)?
    } $(, $($arm:tt)*)?) => {
        match $e {
            $(
                $src::$v $( ( $($t),* ) )? $( { $($f),* } )? =>
                    $crate::error::map_variants!(
                        @arm $dst [$($w)? $v] $( ( $($t),* ) )? $( { $($f),* } )?
                    ),
            )*
            $($($arm)*)?
        }
    };
    (@arm $dst:ident [$w:ident $($_v:ident)?] ( $($t:ident),* )) => { $dst::$w( $($t),* ) };
    (@arm $dst:ident [$w:ident $($_v:ident)?] { $($f:ident),* }) => { $dst::$w { $($f),* } };
    (@arm $dst:ident [$w:ident $($_v:ident)?]) => { $dst::$w };
}
pub(crate) use map_variants;

/// A result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in multiproc: the coarse error that every
/// call's own error converts into (with `?` or `into()`).
///
/// Calls return the narrowest error that fits them: [`Value::new`]
/// a [`CreateError`], a lock call a [`LockError`] that carries the guard,
/// a queue's `try_put` a `TryPutError<T>` that carries the item. Turning
/// one into an `Error` keeps its kind (the same variant name where one
/// exists: `Eof`, `Timeout`, `NotFound`, ...) and drops what it carried:
/// a guard (releasing the lock) or an item.
///
/// [`Value::new`]: crate::Value::new
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed. `call` names it; `source` keeps the errno.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed, such as `"memfd_create"`.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
    /// A size that cannot be used (zero where a positive size is needed, or
    /// one that overflows).
    #[error("invalid size {size}: {reason}")]
    InvalidSize {
        /// The size asked for.
        size: usize,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A named object was to be created, but one with that name exists.
    #[error("{name:?} already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// A named object was to be opened or unlinked, but none has that name.
    #[error("{name:?} not found")]
    NotFound {
        /// The name.
        name: String,
    },
    /// A name that cannot be used (empty, too long, or with a `/` or NUL).
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An index past the end of an array.
    #[error("index {index} out of bounds for length {len}")]
    IndexOutOfBounds {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// A lock was released by a process or thread that does not hold it
    /// (Python raises `RuntimeError` or `AssertionError` here).
    #[error("cannot release a lock that this thread does not hold")]
    NotOwner,
    /// A lock or semaphore was released more often than it was acquired
    /// (Python's `ValueError: semaphore or lock released too many times`).
    #[error("released too many times")]
    ReleasedTooManyTimes,
    /// A barrier is broken: aborted, reset while parties waited, timed out,
    /// or its action panicked.
    #[error("barrier is broken")]
    BrokenBarrier,
    /// A blocking call gave up after its timeout.
    #[error("timed out")]
    Timeout,
    /// A call that does not wait found the lock held by someone else
    /// (`try_lock`; [`TryLockError::WouldBlock`] turned into an `Error`).
    #[error("the lock is held by someone else")]
    WouldBlock,
    /// A lock was acquired from an owner that died holding it, and the
    /// per-call error that carried its guard ([`OwnerDied`],
    /// [`LockError::OwnerDied`], [`TryLockError::OwnerDied`]) was turned
    /// into an `Error` (by `?`): that dropped the guard, so the lock is
    /// released with the data as the dead owner left it, and later
    /// acquirers are not told. Repair the data through the guard before
    /// `?` when that matters.
    #[error(
        "the previous owner of the lock died while holding it; the lock was released unrepaired"
    )]
    OwnerDied,
    /// A queue had no room for an item and the call does not wait
    /// (`try_put`); the item was dropped when the queue's error was turned
    /// into an `Error`.
    #[error("the queue is full")]
    Full,
    /// A queue held no item and the call does not wait (`try_get`).
    #[error("the queue is empty")]
    Empty,
    /// The queue is closed (for a get: closed and drained); a put's item
    /// was dropped when the queue's error was turned into an `Error`.
    #[error("the queue is closed")]
    Closed,
    /// `task_done` was called more times than items were put on a joinable
    /// queue (Python raises `ValueError`).
    #[error("task_done() called more times than items were put")]
    TaskDone,
    /// Shared memory holds what this crate never writes there (a length
    /// past its buffer, a size that does not match the mapping, a counter
    /// off its grid): another process wrote where it should not. The text
    /// says what was found; nothing was read or written out of bounds.
    #[error("corrupt shared memory: {0}")]
    Corrupt(&'static str),
    /// The calling thread already holds the lock it asked for, so waiting
    /// for it would never end (the lock's owner word names this thread).
    #[error("this thread already holds the lock; waiting for it would deadlock")]
    WouldDeadlock,
    /// An argument outside the accepted range.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
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
    /// `start` was called on a process that was already started.
    #[error("process already started")]
    AlreadyStarted,
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
    /// A child process did not end well: an exit code other than 0, a
    /// signal, or a panic; with the message it reported, if any.
    #[error("process {name:?} failed ({status}){}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    ChildFailed {
        /// The process's name.
        name: String,
        /// How it ended.
        status: crate::ExitStatus,
        /// Its panic message or error text.
        message: Option<String>,
    },
    /// A value could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The other end of a connection was closed (every copy of it) or its
    /// process died, at a message boundary: no more messages will come.
    #[error("end of stream: the other end closed the connection")]
    Eof,
    /// The other end stopped in the middle of a message (its process was
    /// killed while writing): `got` of `expected` bytes arrived. The partial
    /// message is dropped.
    #[error("truncated message: {got} of {expected} bytes arrived before the end of stream")]
    Truncated {
        /// The length the message announced (header bytes for a cut header).
        expected: u64,
        /// How many bytes came.
        got: u64,
    },
    /// A message longer than the connection accepts. Nothing was allocated
    /// for it; on receive its bytes were skipped, so the next message can
    /// be read.
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
    /// The peer failed authentication, or rejected ours: the two ends do not
    /// share the authkey (Python's `AuthenticationError`).
    #[error("authentication failed: {0}")]
    AuthenticationFailed(&'static str),
    /// The connection cannot be used that way (sending on the read end of
    /// a one-way pipe, or using it after `close`).
    #[error("connection is {0}")]
    BadConnection(&'static str),
    /// A Redis server could not be started, reached or used (feature
    /// `redis`); the message says which server and why.
    #[error("redis: {0}")]
    Redis(String),
    /// A pool task panicked, or its result could not be encoded; the text
    /// says which: for a panic, its message, where in the worker it
    /// panicked (`(at file:line:column)`), and the worker's backtrace when
    /// `RUST_BACKTRACE` asks for one. The pool and its worker go on.
    #[error("task failed: {0}")]
    TaskFailed(String),
    /// The pool worker running the task ended before finishing it (killed
    /// by a signal, say); a new worker took its place.
    #[error("pool worker {pid} ended ({status}) while running the task")]
    WorkerDied {
        /// The worker's pid.
        pid: i32,
        /// How it ended.
        status: crate::ExitStatus,
    },
    /// A pool worker's initializer failed: the pool stops starting workers
    /// and fails every task (Python would start new workers forever). Or a
    /// manager server's (`ManagerBuilder::initializer`) failed: the server did not start.
    #[error("initializer failed: {0}")]
    InitializerFailed(String),
    /// Work was given to a pool after `close` or `terminate`.
    #[error("the pool is closed")]
    PoolClosed,
    /// The pool was terminated (or dropped) before the task finished.
    #[error("the pool was terminated before the task finished")]
    PoolTerminated,
    /// A function to be run in another process (a spawn entry, a pool task
    /// or initializer, a manager type) is not in the main executable: it
    /// lives in a shared library (a plugin, a `cdylib`, a
    /// `-C prefer-dynamic` build), which another process may have loaded
    /// elsewhere or not at all. Only the program's own functions can cross.
    #[error(
        "the function at {address:#x} is in {object}, not in the main executable: only the program's own functions can run in another process"
    )]
    ForeignCode {
        /// The function's address in this process.
        address: usize,
        /// The file of the object it lives in.
        object: String,
    },
    /// A method called through a manager proxy failed in the server: the
    /// server-side kind and message (Python re-raises the server's
    /// exception in the caller the same way).
    #[error("remote {kind}: {message}")]
    Remote {
        /// What went wrong, as the server classified it.
        kind: RemoteErrorKind,
        /// The server's message.
        message: String,
    },
    /// The manager server cannot be reached: it was shut down or killed,
    /// or the connection to it broke. Calls fail with this promptly; none
    /// waits for a server that is gone.
    #[error("manager server unreachable: {0}")]
    ServerGone(String),
}

/// The kind of an [`Error::Remote`]: what the manager's server reported.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "spawn", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// No object with that id lives in the server (freed, or never made).
    UnknownObject,
    /// The object's type has no method of that name (only registered
    /// methods can be called).
    UnknownMethod,
    /// No type of that name is registered with the server.
    UnknownType,
    /// The arguments could not be decoded as the method's parameters (a
    /// proxy of the wrong type, or a corrupt request).
    BadArguments,
    /// An index past the end (Python's `IndexError`).
    Index,
    /// A key that is not there (Python's `KeyError`, or `AttributeError`
    /// for a namespace).
    Key,
    /// A value that is not there (Python's `ValueError` from
    /// `list.remove` and `list.index`), or an argument out of range.
    Value,
    /// A non-blocking get from an empty queue (Python's `queue.Empty`).
    Empty,
    /// A non-blocking put to a full queue (Python's `queue.Full`).
    Full,
    /// The request was malformed or refused by the protocol.
    Protocol,
    /// A registered type's own error, with its name.
    Custom(String),
}

impl fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteErrorKind::UnknownObject => f.write_str("unknown object"),
            RemoteErrorKind::UnknownMethod => f.write_str("unknown method"),
            RemoteErrorKind::UnknownType => f.write_str("unknown type"),
            RemoteErrorKind::BadArguments => f.write_str("bad arguments"),
            RemoteErrorKind::Index => f.write_str("index error"),
            RemoteErrorKind::Key => f.write_str("key error"),
            RemoteErrorKind::Value => f.write_str("value error"),
            RemoteErrorKind::Empty => f.write_str("empty"),
            RemoteErrorKind::Full => f.write_str("full"),
            RemoteErrorKind::Protocol => f.write_str("protocol error"),
            RemoteErrorKind::Custom(name) => write!(f, "{name}"),
        }
    }
}

impl Error {
    /// The error of a failed system call `call`, from `errno`.
    pub(crate) fn last_os(call: &'static str) -> Error {
        Error::Os {
            call,
            source: io::Error::last_os_error(),
        }
    }

    pub(crate) fn os(call: &'static str, source: impl Into<io::Error>) -> Error {
        Error::Os {
            call,
            source: source.into(),
        }
    }

    /// The errno of an [`Error::Os`], if that is what this is.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Why a shared object could not be made: a [`Value`](crate::Value), an
/// [`Array`](crate::Array), a lock or another synchronisation object.
/// Converts into [`Error`] (as [`Error::Os`], [`Error::InvalidSize`] or
/// [`Error::InvalidArgument`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// A system call failed while getting shared memory (`memfd_create`,
    /// `ftruncate`, `mmap`: out of memory, or a limit such as the number of
    /// open files or the size of `/dev/shm`). `call` names it.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
    /// A size that cannot be allocated (it overflows).
    #[error("invalid size {size}: {reason}")]
    InvalidSize {
        /// The size asked for.
        size: usize,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An argument outside the accepted range (a barrier of no parties, a
    /// semaphore value past its maximum).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}

impl CreateError {
    /// The errno of a [`CreateError::Os`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            CreateError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The creation error for what the allocation layer (which speaks
    /// [`Error`]) reported: a system call's failure, a size or an argument.
    /// It reports nothing else; were it to, the error is kept whole as the
    /// source of an `Os` error rather than lost.
    pub(crate) fn from_internal(e: Error) -> CreateError {
        map_variants!(e, Error => CreateError {
            Os { call, source }, InvalidSize { size, reason }, InvalidArgument(m),
        }, other => CreateError::Os {
            call: "shared memory allocation",
            source: io::Error::other(other),
        })
    }
}

impl From<CreateError> for Error {
    fn from(e: CreateError) -> Error {
        map_variants!(e, CreateError => Error {
            Os { call, source }, InvalidSize { size, reason }, InvalidArgument(m),
        })
    }
}

/// A lock or semaphore was released more often than it was acquired
/// ([`Lock::release`](crate::Lock::release) of an unlocked lock, a
/// semaphore past its bound): Python's `ValueError: semaphore or lock
/// released too many times`. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("released too many times")]
pub struct ReleasedTooManyTimes;

impl From<ReleasedTooManyTimes> for Error {
    fn from(_: ReleasedTooManyTimes) -> Error {
        Error::ReleasedTooManyTimes
    }
}

/// [`RLock::release`](crate::RLock::release) by a thread that does not
/// hold the lock (Python raises `RuntimeError`). Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot release a lock that this thread does not hold")]
pub struct NotOwner;

impl From<NotOwner> for Error {
    fn from(_: NotOwner) -> Error {
        Error::NotOwner
    }
}

/// The lock was acquired, but the process or thread that held it before
/// died while holding it, so the data it guards may be half-updated.
///
/// The guard is inside: repair the data through it, then go on. The lock is
/// healthy again once this error is returned; later acquirers see nothing
/// unusual. (Like a robust pthread mutex's `EOWNERDEAD`, but no "make
/// consistent" call is needed.)
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        OwnerDied { guard }
    }

    /// The guard of the lock, now held by the caller.
    pub fn into_guard(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    pub fn guard(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard.
    pub fn guard_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied {
            guard: f(self.guard),
        }
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerDied { .. }")
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous owner of the lock died while holding it")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// Why a blocking lock call (`lock`, `acquire`) did not simply return a
/// guard.
pub enum LockError<G> {
    /// The lock was acquired after its owner died; see [`OwnerDied`].
    OwnerDied(OwnerDied<G>),
    /// The calling thread already holds the lock: waiting would never end,
    /// so nothing was acquired (a second guard would break the lock's
    /// exclusion anyway).
    WouldDeadlock,
}

impl<G> LockError<G> {
    /// The guard of a lock acquired from a dead owner: the usual recovery,
    /// `lock().unwrap_or_else(|e| e.into_guard())`.
    ///
    /// # Panics
    ///
    /// On [`LockError::WouldDeadlock`], which has no guard: the caller
    /// locked a lock it already holds, a bug in the calling code. Match on
    /// the error to handle that case instead.
    #[track_caller]
    pub fn into_guard(self) -> G {
        match self {
            LockError::OwnerDied(e) => e.into_guard(),
            LockError::WouldDeadlock => panic!(
                "this thread locked a lock it already holds (LockError::WouldDeadlock): \
                 drop the first guard before locking again"
            ),
        }
    }

    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(e) => LockError::OwnerDied(e.map(f)),
            LockError::WouldDeadlock => LockError::WouldDeadlock,
        }
    }
}

impl<G> From<OwnerDied<G>> for LockError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        LockError::OwnerDied(e)
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::WouldDeadlock => f.write_str("WouldDeadlock"),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(e) => fmt::Display::fmt(e, f),
            LockError::WouldDeadlock => fmt::Display::fmt(&Error::WouldDeadlock, f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// The result of a blocking lock call: the guard, or why not (the guard
/// inside [`OwnerDied`], or [`LockError::WouldDeadlock`]).
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

/// Why a non-blocking or timed lock call did not simply return a guard.
pub enum TryLockError<G> {
    /// The lock was acquired after its owner died; see [`OwnerDied`].
    OwnerDied(OwnerDied<G>),
    /// Someone else holds the lock (`try_lock`).
    WouldBlock,
    /// Someone else held the lock for the whole timeout (`lock_timeout`).
    TimedOut,
    /// The calling thread already holds the lock (`lock_timeout`): no
    /// wait could end, so none was made. Calls that never wait report such
    /// a lock as any held one: `try_lock` as
    /// [`WouldBlock`](TryLockError::WouldBlock), a zero timeout as
    /// [`TimedOut`](TryLockError::TimedOut).
    WouldDeadlock,
}

impl<G> From<OwnerDied<G>> for TryLockError<G> {
    fn from(e: OwnerDied<G>) -> Self {
        TryLockError::OwnerDied(e)
    }
}

impl<G> TryLockError<G> {
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> TryLockError<H> {
        match self {
            TryLockError::OwnerDied(e) => TryLockError::OwnerDied(e.map(f)),
            TryLockError::WouldBlock => TryLockError::WouldBlock,
            TryLockError::TimedOut => TryLockError::TimedOut,
            TryLockError::WouldDeadlock => TryLockError::WouldDeadlock,
        }
    }
}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            TryLockError::WouldBlock => f.write_str("WouldBlock"),
            TryLockError::TimedOut => f.write_str("TimedOut"),
            TryLockError::WouldDeadlock => f.write_str("WouldDeadlock"),
        }
    }
}

impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryLockError::OwnerDied(e) => fmt::Display::fmt(e, f),
            TryLockError::WouldBlock => f.write_str("the lock is held by someone else"),
            TryLockError::TimedOut => f.write_str("timed out waiting for the lock"),
            TryLockError::WouldDeadlock => fmt::Display::fmt(&Error::WouldDeadlock, f),
        }
    }
}

impl<G> std::error::Error for TryLockError<G> {}

/// The result of `try_lock` and `lock_timeout`.
pub type TryLockResult<G> = std::result::Result<G, TryLockError<G>>;

// `?` on a lock call in a function returning `multiproc::Result`. The guard
// a per-call error carries cannot live in `Error` (it borrows the lock, and
// `Error` is `'static`), so it is dropped: the lock is released.

impl<G> From<OwnerDied<G>> for Error {
    /// [`Error::OwnerDied`]; the guard is dropped, releasing the lock.
    fn from(_: OwnerDied<G>) -> Error {
        Error::OwnerDied
    }
}

impl<G> From<LockError<G>> for Error {
    /// [`Error::OwnerDied`] (the guard is dropped, releasing the lock) or
    /// [`Error::WouldDeadlock`].
    fn from(e: LockError<G>) -> Error {
        match e {
            LockError::OwnerDied(_) => Error::OwnerDied,
            LockError::WouldDeadlock => Error::WouldDeadlock,
        }
    }
}

impl<G> From<TryLockError<G>> for Error {
    /// [`Error::OwnerDied`] (the guard is dropped, releasing the lock),
    /// [`Error::WouldBlock`], [`Error::Timeout`] or [`Error::WouldDeadlock`].
    fn from(e: TryLockError<G>) -> Error {
        match e {
            TryLockError::OwnerDied(_) => Error::OwnerDied,
            TryLockError::WouldBlock => Error::WouldBlock,
            TryLockError::TimedOut => Error::Timeout,
            TryLockError::WouldDeadlock => Error::WouldDeadlock,
        }
    }
}
