//! [`Client`]: connecting to a listener, with the handshake when a key is
//! given.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self as unix, UnixStream};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::UnixAddr;

#[cfg(doc)]
use super::Listener;
use super::auth::{Handshake, Progress, Role};
use super::{Address, ConnectError, Connection};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::sys::{fd, socket};

/// Connecting to a [`Listener`] (or a Python one), like Python's
/// `multiprocessing.connection.Client`.
#[derive(Debug)]
#[non_exhaustive]
pub struct Client;

impl Client {
    /// Connects to `address`. With `authkey` the handshake is run (the
    /// listener must have the same key); it waits as long as the listener
    /// takes to call `accept`.
    pub fn connect(address: &Address, authkey: Option<&[u8]>) -> Result<Connection, ConnectError> {
        Client::connect_timeout(address, authkey, None)
    }

    /// Connects with this process's key,
    /// [`current_process().authkey()`](crate::CurrentProcess::authkey).
    pub fn connect_default_key(address: &Address) -> Result<Connection, ConnectError> {
        let key = crate::current_process::current_process().authkey().to_vec();
        Client::connect(address, Some(&key))
    }

    /// Like [`connect`](Self::connect), giving up on the handshake with
    /// [`ConnectError::Timeout`] after `timeout` (`None`: no limit).
    pub fn connect_timeout(
        address: &Address,
        authkey: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<Connection, ConnectError> {
        connect_with(address, authkey, timeout, false).map_err(ConnectError::from_internal)
    }

    /// Like [`connect_timeout`](Self::connect_timeout), but the handshake is
    /// HMAC-SHA256 in both directions or nothing: a challenge for another
    /// digest (or an old-style MD5 one) is refused, and our own challenge
    /// asks for SHA-256. The manager's client uses this.
    pub fn connect_sha256_only(
        address: &Address,
        authkey: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Connection, ConnectError> {
        connect_with(address, Some(authkey), timeout, true).map_err(ConnectError::from_internal)
    }
}

fn connect_with(
    address: &Address,
    authkey: Option<&[u8]>,
    timeout: Option<Duration>,
    sha256_only: bool,
) -> Result<Connection> {
    let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
    let fd = match timeout {
        None => connect_socket(address)?,
        Some(_) => connect_socket_until(address, deadline)?,
    };
    let Some(key) = authkey else {
        return Ok(Connection::from_fd(fd, true, true));
    };
    let mut h = Handshake::new(fd, Role::Client, far_future(), sha256_only)?;
    loop {
        if deadline.expired() {
            return Err(Error::Timeout);
        }
        match fd::poll(&[(h.fd.as_fd(), h.interest())], deadline.remaining()) {
            Ok(ready) if !ready[0] => continue,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("poll", e)),
        }
        if let Progress::Done = h.step(key)? {
            return Ok(Connection::from_fd(h.into_fd()?, true, true));
        }
    }
}

pub(super) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

fn connect_socket(address: &Address) -> Result<OwnedFd> {
    Ok(match address {
        Address::Unix(p) => UnixStream::connect(p)
            .map_err(|e| Error::os("connect", e))?
            .into(),
        Address::Abstract(n) => {
            let sa =
                unix::SocketAddr::from_abstract_name(n).map_err(|e| Error::os("connect", e))?;
            UnixStream::connect_addr(&sa)
                .map_err(|e| Error::os("connect", e))?
                .into()
        }
        Address::Tcp(a) => {
            let s = TcpStream::connect(a).map_err(|e| Error::os("connect", e))?;
            let _ = s.set_nodelay(true);
            s.into()
        }
    })
}

/// Connects by `deadline`: [`Error::Timeout`] if the listener's backlog
/// stays full (a listener that does not accept) or the peer does not
/// answer until then.
fn connect_socket_until(address: &Address, deadline: Deadline) -> Result<OwnedFd> {
    // A timeout too long to represent is no limit (`Duration::MAX`).
    let left = || deadline.remaining().unwrap_or(Duration::MAX);
    let ua = match address {
        Address::Tcp(a) => {
            if left().is_zero() {
                return Err(Error::Timeout);
            }
            let s = TcpStream::connect_timeout(a, left()).map_err(|e| {
                if e.kind() == io::ErrorKind::TimedOut {
                    Error::Timeout
                } else {
                    Error::os("connect", e)
                }
            })?;
            let _ = s.set_nodelay(true);
            return Ok(s.into());
        }
        Address::Unix(p) => UnixAddr::new(p.as_path()).map_err(|e| Error::os("connect", e))?,
        Address::Abstract(n) => {
            UnixAddr::new_abstract(n.as_slice()).map_err(|e| Error::os("connect", e))?
        }
    };
    let fd = socket::unix_stream_nonblocking()?;
    loop {
        match socket::connect(fd.as_fd(), &ua) {
            Ok(()) => break,
            Err(Errno::EINTR) => continue,
            // The listener's backlog is full: it is not accepting. A Unix
            // socket cannot be polled for room there; look again shortly.
            Err(Errno::EAGAIN) => {
                if left().is_zero() {
                    return Err(Error::Timeout);
                }
                std::thread::sleep(left().min(Duration::from_millis(2)));
            }
            Err(e) => return Err(Error::os("connect", e)),
        }
    }
    fd::set_nonblocking(fd.as_fd(), false)?;
    Ok(fd)
}
