//! The errors of a manager's calls: what connecting to (or starting) a
//! server can meet ([`ConnectError`]), and what a call through a proxy, or
//! a [`Manager`](super::Manager) method that makes or finds objects, can
//! ([`ProxyError`]). Both convert into [`crate::Error`] variant for
//! variant, so `?` works in a function returning [`crate::Result`].

use std::io;

use crate::error::{Error, RemoteErrorKind, map_variants};
use crate::process::StartError;

/// Why a [`Manager`](super::Manager) could not be had: connecting to a
/// server ([`Manager::connect`](super::Manager::connect)) or starting one
/// and connecting to it ([`Manager::start`](super::Manager::start),
/// [`ManagerBuilder::start`](super::ManagerBuilder::start)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No server answers at the address, it closed the connection during
    /// the handshake, or the server started here ended (or did not answer
    /// in time) before serving; the text says which.
    #[error("manager server unreachable: {0}")]
    ServerGone(String),
    /// The server and this process do not share the authkey (or the
    /// server speaks another authentication).
    #[error("authentication failed: {0}")]
    AuthenticationFailed(&'static str),
    /// The peer does not speak the manager protocol as expected (a frame
    /// that makes no sense, a reply out of step).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server process could not be started.
    #[error("the manager server was not started: {0}")]
    Start(#[source] StartError),
    /// The server's initializer
    /// ([`ManagerBuilder::initializer`](super::ManagerBuilder::initializer))
    /// failed: the server did not serve.
    #[error("initializer failed: {0}")]
    InitializerFailed(String),
    /// A registered type's or task's function lives in a shared library,
    /// not in the main executable, so the server process could not find it
    /// (see [`Error::ForeignCode`]).
    #[error(
        "the function at {address:#x} is in {object}, not in the main executable: only the program's own functions can run in another process"
    )]
    ForeignCode {
        /// The function's address in this process.
        address: usize,
        /// The file of the object it lives in.
        object: String,
    },
    /// The options cannot be used as given; the text says why.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A system call failed (making the server's private directory, the
    /// shared memory of its report, a socket); `call` names it.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

/// Why a call through a manager proxy (or a [`Manager`](super::Manager)
/// method that makes, exposes or finds objects) failed.
///
/// Match on it to tell the server being gone from a method that failed in
/// the server:
///
/// ```no_run
/// use multiproc::RemoteErrorKind;
/// use multiproc::manager::{Manager, ProxyError};
///
/// let m = Manager::start()?;
/// let ns = m.namespace()?;
/// match ns.get::<u32>("missing") {
///     Ok(v) => println!("{v}"),
///     Err(ProxyError::Remote { kind: RemoteErrorKind::Key, .. }) => println!("no such field"),
///     Err(ProxyError::ServerGone(why)) => println!("the server is gone: {why}"),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The manager server cannot be reached: it was shut down or killed,
    /// or the connection to it broke. Calls fail with this promptly; none
    /// waits for a server that is gone.
    #[error("manager server unreachable: {0}")]
    ServerGone(String),
    /// The method failed in the server: the kind (an index past the end,
    /// a missing key, an empty queue, an unknown object, a registered
    /// type's own error, ...) and the server's message. Python re-raises
    /// the server's exception in the caller the same way.
    #[error("remote {kind}: {message}")]
    Remote {
        /// What went wrong, as the server classified it.
        kind: RemoteErrorKind,
        /// The server's message.
        message: String,
    },
    /// A blocking call's timeout passed (a barrier's `wait_timeout`, a
    /// joinable queue's `join_timeout`).
    #[error("timed out")]
    Timeout,
    /// The barrier is broken (aborted, reset while parties waited, or a
    /// wait timed out).
    #[error("barrier is broken")]
    BrokenBarrier,
    /// A lock released by a caller that does not hold it.
    #[error("cannot release a lock that this thread does not hold")]
    NotOwner,
    /// A bounded semaphore released more often than it was acquired.
    #[error("released too many times")]
    ReleasedTooManyTimes,
    /// An argument could not be encoded, or an answer decoded as the type
    /// asked for (a proxy fetched with other element types than its
    /// object's).
    #[error("codec: {0}")]
    Codec(String),
    /// The call was refused before it went out (a proxy of another type,
    /// of another server); the text says why.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A proxy used for the first time in a process connects to its
    /// server: the server refused this process's authkey.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(&'static str),
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

impl ProxyError {
    /// The server-side kind of a [`ProxyError::Remote`], if that is what
    /// this is: `e.kind() == Some(&RemoteErrorKind::Key)`.
    pub fn kind(&self) -> Option<&RemoteErrorKind> {
        match self {
            ProxyError::Remote { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// Whether the server is gone ([`ProxyError::ServerGone`]).
    pub fn is_server_gone(&self) -> bool {
        matches!(self, ProxyError::ServerGone(_))
    }

    /// The proxy error for what the client layer (which speaks [`Error`])
    /// reported. Nothing else reaches a proxy call; were it to, the error
    /// is kept whole as the source of an `Os` error rather than lost.
    pub(crate) fn from_internal(e: Error) -> ProxyError {
        map_variants!(e, Error => ProxyError {
            ServerGone(m), Remote { kind, message }, Timeout, BrokenBarrier, NotOwner,
            ReleasedTooManyTimes, Codec(m), InvalidArgument(m), AuthenticationFailed(m),
            Os { call, source },
        }, other => ProxyError::Os {
            call: "manager call",
            source: io::Error::other(other),
        })
    }
}

impl ConnectError {
    /// The connect error for what the layers below reported (see
    /// [`ProxyError::from_internal`]).
    pub(crate) fn from_internal(e: Error) -> ConnectError {
        map_variants!(e, Error => ConnectError {
            ServerGone(m), AuthenticationFailed(m), Codec(m) as Protocol, InitializerFailed(m),
            ForeignCode { address, object }, InvalidArgument(m), Os { call, source },
        }, Error::BadConnection(m) => ConnectError::Protocol(m.to_string()),
        Error::Remote { kind, message } => ConnectError::Protocol(format!("{kind}: {message}")),
        e @ (Error::ThreadedFork { .. } | Error::AlreadyStarted) => {
            ConnectError::Start(StartError::from_internal(e))
        }
        other => ConnectError::Os {
            call: "connect",
            source: io::Error::other(other),
        })
    }
}

impl From<StartError> for ConnectError {
    fn from(e: StartError) -> ConnectError {
        match e {
            StartError::ForeignCode { address, object } => {
                ConnectError::ForeignCode { address, object }
            }
            other => ConnectError::Start(other),
        }
    }
}

impl From<ProxyError> for Error {
    fn from(e: ProxyError) -> Error {
        map_variants!(e, ProxyError => Error {
            ServerGone(m), Remote { kind, message }, Timeout, BrokenBarrier, NotOwner,
            ReleasedTooManyTimes, Codec(m), InvalidArgument(m), AuthenticationFailed(m),
            Os { call, source },
        })
    }
}

impl From<ConnectError> for Error {
    /// The same kind; [`ConnectError::Protocol`] as [`Error::Codec`].
    fn from(e: ConnectError) -> Error {
        map_variants!(e, ConnectError => Error {
            ServerGone(m), AuthenticationFailed(m), Protocol(m) as Codec, InitializerFailed(m),
            ForeignCode { address, object }, InvalidArgument(m), Os { call, source },
        }, ConnectError::Start(e) => e.into())
    }
}

// The errors of a manager queue's calls that do not wait, or wait for a
// while: each adds its one outcome to what any proxy call can meet. The
// proxy's puts borrow the item, so a put that fails leaves it with the
// caller.
macro_rules! queue_proxy_error {
    ($(#[$doc:meta])* $name:ident: $(#[$own_doc:meta])* $own:ident => $msg:literal, $coarse:ident) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            $(#[$own_doc])*
            #[error($msg)]
            $own,
            /// The call failed as any proxy call can (the server gone, the
            /// item not encodable, ...).
            #[error(transparent)]
            Proxy(#[from] ProxyError),
        }

        impl From<$name> for Error {
            #[doc = concat!("[`Error::", stringify!($coarse), "`], or the proxy error's kind.")]
            fn from(e: $name) -> Error {
                match e {
                    $name::$own => Error::$coarse,
                    $name::Proxy(e) => e.into(),
                }
            }
        }
    };
}

queue_proxy_error!(
    /// Why a manager queue's `try_put` did not put the item.
    TryPutProxyError:
    /// No room now (Python's `put_nowait` raising `queue.Full`).
    Full => "the queue is full", Full
);

queue_proxy_error!(
    /// Why a manager queue's `put_timeout` did not put the item.
    PutTimeoutProxyError:
    /// No room before the timeout (Python's `put(timeout=...)` raising
    /// `queue.Full`).
    Timeout => "timed out waiting for room in the queue", Timeout
);

queue_proxy_error!(
    /// Why a manager queue's `try_get` returned no item.
    TryGetProxyError:
    /// No item now (Python's `get_nowait` raising `queue.Empty`).
    Empty => "the queue is empty", Empty
);

queue_proxy_error!(
    /// Why a manager queue's `get_timeout` returned no item.
    GetTimeoutProxyError:
    /// No item came before the timeout (Python's `get(timeout=...)`
    /// raising `queue.Empty`).
    Timeout => "timed out waiting for an item", Timeout
);

/// Why a server run in this process ([`ManagerBuilder::serve`](super::ManagerBuilder::serve),
/// [`serve_with_setup`](super::ManagerBuilder::serve_with_setup),
/// [`serve`](super::serve)) did not start or stopped with an error. A
/// server stopped by a shutdown request, SIGTERM or SIGINT returns `Ok`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The options cannot be used (no address given, a pool task not
    /// registered); the text says why.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The server's initializer
    /// ([`ManagerBuilder::initializer`](super::ManagerBuilder::initializer))
    /// failed: the server did not serve.
    #[error("initializer failed: {0}")]
    InitializerFailed(String),
    /// A registered type's or task's function lives in a shared library,
    /// not in the main executable (see [`Error::ForeignCode`]).
    #[error(
        "the function at {address:#x} is in {object}, not in the main executable: only the program's own functions can run in another process"
    )]
    ForeignCode {
        /// The function's address in this process.
        address: usize,
        /// The file of the object it lives in.
        object: String,
    },
    /// `serve_with_setup`'s setup failed: its error; the server stopped.
    #[error("the server's setup failed: {0}")]
    Setup(#[source] ProxyError),
    /// A system call failed: listening on the address (`EADDRINUSE` when
    /// a live server has it), a thread, the signal handlers; `call` names
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

impl ServeError {
    /// The errno of a [`ServeError::Os`] (`EADDRINUSE`: the address is
    /// taken).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            ServeError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The serve error for what the server's layers (which speak
    /// [`Error`]) reported; anything without a variant here is kept whole
    /// as the source of an `Os` error.
    pub(crate) fn from_internal(e: Error) -> ServeError {
        map_variants!(e, Error => ServeError {
            InvalidArgument(m), InitializerFailed(m), ForeignCode { address, object },
            Os { call, source },
        }, other => ServeError::Os {
            call: "serve",
            source: io::Error::other(other),
        })
    }
}

impl From<ServeError> for Error {
    fn from(e: ServeError) -> Error {
        map_variants!(e, ServeError => Error {
            InvalidArgument(m), InitializerFailed(m), ForeignCode { address, object },
            Os { call, source },
        }, ServeError::Setup(e) => e.into())
    }
}
