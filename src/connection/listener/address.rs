//! [`Address`]: where a listener listens and a client connects (a Unix
//! socket path, a Linux abstract name, or TCP).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::AddressError;
#[cfg(doc)]
use super::{Client, Listener};

/// Where a [`Listener`] listens and a [`Client`] connects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix socket at a path in the file system (Python: a `str` path).
    Unix(PathBuf),
    /// A Linux abstract Unix socket name, without the leading NUL (Python:
    /// a name starting with `'\0'`). It vanishes with its last socket.
    Abstract(Vec<u8>),
    /// A TCP address (Python: a `(host, port)` tuple). Port 0 binds any free
    /// port; [`Listener::address`] tells which.
    Tcp(SocketAddr),
}

impl Address {
    /// Parses `unix:PATH`, `abstract:NAME`, `tcp:HOST:PORT` (the host is
    /// resolved; the first address found is used), a bare path starting with
    /// `/` or `.`, a bare name starting with NUL (abstract, as Python writes
    /// it), or a bare `HOST:PORT`.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(AddressError::EmptyPath);
            }
            Ok(Address::Unix(PathBuf::from(p)))
        } else if let Some(n) = s.strip_prefix("abstract:") {
            Ok(Address::Abstract(n.as_bytes().to_vec()))
        } else if let Some(n) = s.strip_prefix('\0') {
            Ok(Address::Abstract(n.as_bytes().to_vec()))
        } else if s.starts_with('/') || s.starts_with('.') {
            Ok(Address::Unix(PathBuf::from(s)))
        } else {
            let hp = s.strip_prefix("tcp:").unwrap_or(s);
            let mut addrs = hp
                .to_socket_addrs()
                .map_err(|source| AddressError::Invalid {
                    address: s.to_owned(),
                    source,
                })?;
            addrs
                .next()
                .map(Address::Tcp)
                .ok_or_else(|| AddressError::NoAddress {
                    address: s.to_owned(),
                })
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Address, AddressError> {
        Address::parse(s)
    }
}

impl fmt::Display for Address {
    /// The form [`Address::parse`] reads back (an abstract name that is not
    /// UTF-8 is shown lossily).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Abstract(n) => write!(f, "abstract:{}", String::from_utf8_lossy(n)),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Self {
        Address::Unix(p)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Self {
        Address::Unix(p.to_path_buf())
    }
}
