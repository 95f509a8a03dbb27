//! The errors of the listener's calls: parsing an [`Address`]
//! ([`AddressError`]), binding one ([`BindError`]), accepting
//! ([`AcceptError`]) and connecting ([`ConnectError`]). Each converts into
//! [`crate::Error`], so `?` works in a function returning [`crate::Result`].

use std::io;

use super::Address;
use crate::error::{Error, map_variants};

/// Why a string is not an [`Address`] ([`Address::parse`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// `unix:` with nothing after it.
    #[error("empty Unix socket path")]
    EmptyPath,
    /// Neither `unix:`, `abstract:`, a path, nor a `HOST:PORT` that
    /// resolves (a missing or bad port, an unknown host); `source` says
    /// what the resolver found wrong.
    #[error(
        "{address:?} is not an address (expected unix:PATH, abstract:NAME or tcp:HOST:PORT): {source}"
    )]
    Invalid {
        /// The string given.
        address: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The host resolved to no address at all.
    #[error("the host of {address:?} resolved to no address")]
    NoAddress {
        /// The string given.
        address: String,
    },
}

impl From<AddressError> for Error {
    /// An [`Error::InvalidArgument`] (the string is dropped).
    fn from(e: AddressError) -> Error {
        Error::InvalidArgument(match e {
            AddressError::EmptyPath => "empty Unix socket path",
            AddressError::Invalid { .. } => {
                "not an address: expected unix:, abstract: or tcp:HOST:PORT"
            }
            AddressError::NoAddress { .. } => "host name resolved to no address",
        })
    }
}

/// Why [`Listener::bind`](super::Listener::bind) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// Another socket has the address (`EADDRINUSE`): a live listener on
    /// the Unix path or abstract name, or on the TCP port; or a file that
    /// is not a socket at the path.
    #[error("{address} is in use: {source}")]
    InUse {
        /// The address asked for.
        address: Address,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The address cannot be bound here: not an address of this host
    /// (`EADDRNOTAVAIL`), or a path or name too long for a socket address.
    #[error("{address} cannot be bound: {source}")]
    Invalid {
        /// The address asked for.
        address: Address,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another system call failed (a missing directory, permissions, no
    /// descriptors left).
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

impl BindError {
    /// The errno of the failure, if the system reported one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            BindError::InUse { source, .. }
            | BindError::Invalid { source, .. }
            | BindError::Os { source, .. } => source.raw_os_error(),
        }
    }

    /// The bind error of `address` for what the socket layer (which speaks
    /// [`Error`]) reported, sorted by errno.
    pub(super) fn from_internal(address: &Address, e: Error) -> BindError {
        let (call, source) = match e {
            Error::Os { call, source } => (call, source),
            other => ("bind", io::Error::other(other)),
        };
        let address = address.clone();
        match source.raw_os_error() {
            Some(libc::EADDRINUSE) => BindError::InUse { address, source },
            Some(libc::EADDRNOTAVAIL | libc::ENAMETOOLONG | libc::EINVAL) => {
                BindError::Invalid { address, source }
            }
            None if source.kind() == io::ErrorKind::InvalidInput => {
                BindError::Invalid { address, source }
            }
            _ => BindError::Os { call, source },
        }
    }
}

impl From<BindError> for Error {
    /// An [`Error::Os`] (`bind`, with the errno).
    fn from(e: BindError) -> Error {
        match e {
            BindError::InUse { source, .. } | BindError::Invalid { source, .. } => Error::Os {
                call: "bind",
                source,
            },
            BindError::Os { call, source } => Error::Os { call, source },
        }
    }
}

/// Why [`Listener::accept`](super::Listener::accept) (or
/// `accept_timeout`) returned no connection. Peers that hang up or break
/// the handshake's framing are dropped quietly, so they never show here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// A peer failed the handshake: it does not have the listener's key
    /// (or rejected ours). Call `accept` again to go on.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(&'static str),
    /// `accept_timeout` gave up.
    #[error("timed out")]
    Timeout,
    /// A system call failed (`accept` out of descriptors with no handshake
    /// to drop, `poll`).
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

impl AcceptError {
    /// The accept error for what the handshake and socket layers reported.
    pub(super) fn from_internal(e: Error) -> AcceptError {
        map_variants!(e, Error => AcceptError {
            AuthenticationFailed(m), Timeout, Os { call, source },
        }, other => AcceptError::Os {
            call: "accept",
            source: io::Error::other(other),
        })
    }
}

impl From<AcceptError> for Error {
    fn from(e: AcceptError) -> Error {
        map_variants!(e, AcceptError => Error {
            AuthenticationFailed(m), Timeout, Os { call, source },
        })
    }
}

/// Why [`Client::connect`](super::Client::connect) (or another connecting
/// call) returned no connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The handshake failed: the listener has another key (or none, or
    /// rejected our answer), or does not speak the protocol.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(&'static str),
    /// The timeout (of `connect_timeout`) passed first.
    #[error("timed out")]
    Timeout,
    /// The listener closed the connection during the handshake (it was
    /// closed, or dropped us as one handshake too many).
    #[error("the listener closed the connection during the handshake")]
    PeerGone,
    /// A system call failed: `ECONNREFUSED` or `ENOENT` when nobody
    /// listens at the address.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: io::Error,
    },
}

impl ConnectError {
    /// The errno of a [`ConnectError::Os`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            ConnectError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The connect error for what the handshake and socket layers
    /// reported: an end of stream (whole or cut) is the peer gone; a
    /// handshake message too large is a failed authentication (the peer
    /// does not speak the protocol).
    pub(super) fn from_internal(e: Error) -> ConnectError {
        map_variants!(e, Error => ConnectError {
            AuthenticationFailed(m), Timeout, Os { call, source },
        },
            Error::Eof | Error::Truncated { .. } => ConnectError::PeerGone,
            Error::MessageTooLarge { .. } => {
                ConnectError::AuthenticationFailed("the handshake message is too large")
            }
            other => ConnectError::Os {
                call: "connect",
                source: io::Error::other(other),
            },
        )
    }
}

impl From<ConnectError> for Error {
    /// Variant for variant; [`ConnectError::PeerGone`] is [`Error::Eof`].
    fn from(e: ConnectError) -> Error {
        map_variants!(e, ConnectError => Error {
            AuthenticationFailed(m), Timeout, PeerGone as Eof, Os { call, source },
        })
    }
}
