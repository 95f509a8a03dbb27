//! `Listener` and `Client`: connections between processes that did not
//! inherit a pipe from each other, over a Unix socket (a path or a Linux
//! abstract name) or TCP, like Python's `multiprocessing.connection`.
//!
//! Each call has its own error: [`Address::parse`] an [`AddressError`],
//! [`Listener::bind`] a [`BindError`] (`InUse` for an address another
//! listener holds), [`Listener::accept`] an [`AcceptError`] and
//! [`Client::connect`] a [`ConnectError`] (`AuthenticationFailed` for a
//! wrong key, `Timeout`, `PeerGone`); all convert into
//! [`Error`] for `?`.
//!
//! With an authentication key, both ends prove that they know it before any
//! message passes: each side sends the other a random challenge and checks
//! its HMAC of it. The exchange is CPython's, so a multiproc listener
//! accepts a Python `Client` and the other way round:
//!
//! * the challenge is `#CHALLENGE#` then the message; a multiproc challenge
//!   (like CPython 3.12's) is `{sha256}` and 40 random bytes, CPython 3.11
//!   and older send 20 random bytes and no prefix;
//! * the answer to a `{name}` message is `{name}` and the HMAC (digest
//!   `name`) of the whole message, prefix included; the answer to a bare
//!   20-byte message is its HMAC-MD5 alone (the old protocol);
//! * the checking side replies `#WELCOME#` or `#FAILURE#`.
//!
//! The accepting side challenges first; the connecting side answers, then
//! challenges back. A multiproc listener accepts a `{sha256}` answer or an
//! old-style HMAC-MD5 one (which is what Python 3.11 sends), and answers an
//! old-style challenge the old way; SHA-256 is preferred wherever the peer
//! knows it. Handshake messages are read with a 256-byte limit, and no
//! payload is read before both checks passed.

mod address;
mod auth;
mod client;
mod error;
mod socket_file;

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{self as unix, UnixListener};
use std::time::{Duration, Instant};

use nix::errno::Errno;

pub use address::Address;
use auth::{Handshake, Progress, Role, is_auth_error};
pub use client::Client;
pub use error::{AcceptError, AddressError, BindError, ConnectError};
use socket_file::{SocketFile, bind_unix_path};

use super::Connection;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::sys::fd::{self, Interest};

/// How long an accepted connection has to finish its handshake by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many handshakes a listener runs at once by default (or half the
/// process's soft limit on open descriptors, if that is lower: a flood must
/// leave descriptors for the rest of the program); past it, the oldest
/// pending one is dropped to make room for a new connection.
pub const DEFAULT_MAX_PENDING: usize = 1024;

/// The default cap on pending handshakes in this process.
fn default_max_pending() -> usize {
    let half = crate::sys::limits::open_files().map_or(u64::MAX, |n| n / 2);
    (DEFAULT_MAX_PENDING as u64).min(half).max(16) as usize
}

/// The listening socket.
#[derive(Debug)]
enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Socket {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Unix(l) => l.as_fd(),
            Socket::Tcp(l) => l.as_fd(),
        }
    }

    /// Accepts one waiting connection; `None` if none waits (the socket is
    /// non-blocking).
    fn accept(&self) -> Result<Option<OwnedFd>> {
        let r = match self {
            Socket::Unix(l) => l.accept().map(|(s, _)| OwnedFd::from(s)),
            Socket::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                OwnedFd::from(s)
            }),
        };
        match r {
            Ok(fd) => Ok(Some(fd)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            // The peer gave up before we took it: nothing to accept.
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(None),
            Err(e) => Err(Error::os("accept", e)),
        }
    }
}

/// A socket that accepts connections, like Python's
/// `multiprocessing.connection.Listener`.
///
/// With an authentication key each accepted connection must pass the
/// handshake (see the [module docs](self)) before [`accept`](Self::accept)
/// returns it. Handshakes run side by side, each with a deadline
/// ([`with_handshake_timeout`](Self::with_handshake_timeout)), without
/// threads, on one poll loop: a client that connects and stays silent holds
/// up nobody. Every waiting connection is taken off the kernel's backlog at
/// once; past [`with_max_pending`](Self::with_max_pending) handshakes (or
/// when the process runs out of descriptors) the oldest pending one is
/// dropped, so a flood of idle connections delays a legitimate client by
/// no more than the time to accept them.
///
/// A listener on a path removes its socket file when dropped (in the
/// process that bound it; a forked child's copy leaves it alone).
///
/// ```
/// use multiproc::connection::listener::{Address, Client, Listener};
///
/// let dir = std::env::temp_dir().join(format!("mp-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("sock");
/// // No key: no handshake, so one thread can connect, then accept.
/// let mut listener = Listener::bind(&Address::Unix(path.clone()), None)?;
/// let client = Client::connect(listener.address(), None)?;
/// let server = listener.accept()?;
/// client.send_bytes(b"ping")?;
/// assert_eq!(server.recv_bytes()?, b"ping");
/// drop(listener);
/// assert!(!path.exists());
/// # std::fs::remove_dir(&dir).unwrap();
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    max_message: Option<u64>,
    sha256_only: bool,
    max_pending: usize,
    pending: Vec<Handshake>,
    // Declared after `socket`: the file goes once the socket is closed.
    _file: Option<SocketFile>,
}

impl Listener {
    /// Binds `address` and listens. With `authkey`, every connection must
    /// authenticate with the same key; with `None` none does (as in Python,
    /// where `authkey=None` means no authentication).
    ///
    /// A Unix socket file is created mode 0600 (only its owner may connect),
    /// whatever the umask, never wider even for a moment. One left behind
    /// by a process that died is replaced; one that a live listener still
    /// serves is [`BindError::InUse`]. (An abstract name has no file and no mode:
    /// any local process may connect to it, which is what the key is for.)
    pub fn bind(address: &Address, authkey: Option<&[u8]>) -> Result<Listener, BindError> {
        Listener::bind_inner(address, authkey).map_err(|e| BindError::from_internal(address, e))
    }

    fn bind_inner(address: &Address, authkey: Option<&[u8]>) -> Result<Listener> {
        let (socket, address, file) = match address {
            Address::Unix(path) => {
                let l = bind_unix_path(path)?;
                let m = std::fs::symlink_metadata(path).map_err(|e| Error::os("stat", e))?;
                let file = SocketFile {
                    path: path.clone(),
                    dev: m.dev(),
                    ino: m.ino(),
                    pid: std::process::id(),
                };
                (Socket::Unix(l), Address::Unix(path.clone()), Some(file))
            }
            Address::Abstract(name) => {
                let sa =
                    unix::SocketAddr::from_abstract_name(name).map_err(|e| Error::os("bind", e))?;
                let l = UnixListener::bind_addr(&sa).map_err(|e| Error::os("bind", e))?;
                (Socket::Unix(l), Address::Abstract(name.clone()), None)
            }
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(|e| Error::os("bind", e))?;
                let real = l.local_addr().map_err(|e| Error::os("getsockname", e))?;
                (Socket::Tcp(l), Address::Tcp(real), None)
            }
        };
        match &socket {
            Socket::Unix(l) => l.set_nonblocking(true),
            Socket::Tcp(l) => l.set_nonblocking(true),
        }
        .map_err(|e| Error::os("fcntl", e))?;
        Ok(Listener {
            socket,
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_message: None,
            sha256_only: false,
            max_pending: default_max_pending(),
            pending: Vec::new(),
            _file: file,
        })
    }

    /// Binds `address` with this process's key,
    /// [`current_process().authkey()`](crate::CurrentProcess::authkey),
    /// which children inherit.
    pub fn bind_default_key(address: &Address) -> Result<Listener, BindError> {
        let key = crate::current_process::current_process().authkey().to_vec();
        Listener::bind(address, Some(&key))
    }

    /// Sets how long an accepted connection has to complete the handshake
    /// before it is dropped (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how many handshakes may be in progress at once (default
    /// [`DEFAULT_MAX_PENDING`], or half the soft limit on open descriptors
    /// if lower; at least 1); a connection coming past it makes room by
    /// dropping the oldest pending one.
    pub fn with_max_pending(mut self, max: usize) -> Self {
        self.max_pending = max.max(1);
        self
    }

    /// Sets the largest message the accepted connections take (see
    /// [`Connection::with_max_message`]).
    pub fn with_max_message(mut self, max: u64) -> Self {
        self.max_message = Some(max);
        self
    }

    /// Accepts only HMAC-SHA256 answers (`{sha256}`), refusing the old
    /// HMAC-MD5 ones and any other digest: both directions of every
    /// handshake are then HMAC-SHA256, since our own challenge asks for it
    /// and a client of ours answers it so. The manager's listener uses this.
    pub fn with_sha256_only(mut self) -> Self {
        self.sha256_only = true;
        self
    }

    /// The address bound: for TCP port 0, the port chosen.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Whether connections must authenticate.
    pub fn authenticates(&self) -> bool {
        self.authkey.is_some()
    }

    /// Waits for a connection and returns it, authenticated if the listener
    /// has a key.
    ///
    /// A peer that fails the check (a wrong key: it was sent `#FAILURE#`,
    /// or it rejected our answer) makes this return
    /// [`AcceptError::AuthenticationFailed`], as Python's `AuthenticationError`; call `accept` again to go on. A
    /// peer that hangs up, breaks the protocol's framing or misses the
    /// handshake deadline is dropped quietly. Handshakes still running when
    /// this returns go on at the next call.
    pub fn accept(&mut self) -> Result<Connection, AcceptError> {
        self.accept_until(Deadline::NEVER)
            .map_err(AcceptError::from_internal)
    }

    /// Like [`accept`](Self::accept), giving up with [`AcceptError::Timeout`]
    /// after `timeout`.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Connection, AcceptError> {
        self.accept_until(Deadline::after(timeout))
            .map_err(AcceptError::from_internal)
    }

    /// Closes the listener (dropping it does the same); connections
    /// accepted already stay open, handshakes in progress are dropped.
    pub fn close(self) {}

    fn finish(&self, fd: OwnedFd) -> Result<Connection> {
        let c = Connection::from_fd(fd, true, true);
        Ok(match self.max_message {
            Some(m) => c.with_max_message(m),
            None => c,
        })
    }

    fn accept_until(&mut self, deadline: Deadline) -> Result<Connection> {
        loop {
            let now = Instant::now();
            self.pending.retain(|h| h.deadline > now);
            // Work the handshakes that can move (new or ready ones).
            let listen_ready;
            {
                let mut fds = Vec::with_capacity(self.pending.len() + 1);
                fds.push((self.socket.fd(), Interest::Read));
                for h in &self.pending {
                    fds.push((h.fd.as_fd(), h.interest()));
                }
                let mut wake = deadline;
                for h in &self.pending {
                    wake = wake.min(Deadline::at(h.deadline));
                }
                let ready = match fd::poll(&fds, wake.remaining()) {
                    Ok(ready) => ready,
                    Err(Errno::EINTR) => vec![false; fds.len()],
                    Err(e) => return Err(Error::os("poll", e)),
                };
                drop(fds);
                listen_ready = ready[0];
                for (h, r) in self.pending.iter_mut().zip(&ready[1..]) {
                    h.ready = *r;
                }
            }
            if let Some(r) = self.advance_pending() {
                return r;
            }
            if listen_ready {
                // Take the whole backlog: a connection left there waits for
                // nothing but our turn.
                loop {
                    let fd = match self.socket.accept() {
                        Ok(Some(fd)) => fd,
                        Ok(None) => break,
                        Err(Error::Os { call, source })
                            if matches!(
                                source.raw_os_error(),
                                Some(libc::EMFILE | libc::ENFILE)
                            ) =>
                        {
                            // Out of descriptors: the oldest handshake
                            // makes room, if there is one.
                            if !self.drop_oldest() {
                                return Err(Error::Os { call, source });
                            }
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    if self.authkey.is_none() {
                        return self.finish(fd);
                    }
                    if self.pending.len() >= self.max_pending {
                        self.drop_oldest();
                    }
                    let deadline = Instant::now() + self.handshake_timeout;
                    match Handshake::new(fd, Role::Server, deadline, self.sha256_only) {
                        Ok(mut h) => {
                            // Its challenge is queued; send it now.
                            h.ready = true;
                            self.pending.push(h);
                        }
                        Err(_) => continue,
                    }
                }
                if let Some(r) = self.advance_pending() {
                    return r;
                }
            }
            if deadline.expired() {
                return Err(Error::Timeout);
            }
        }
    }

    /// Drops the pending handshake that began first (all share one
    /// timeout, so it is the one with the earliest deadline); false if
    /// none is pending.
    fn drop_oldest(&mut self) -> bool {
        let oldest = self
            .pending
            .iter()
            .enumerate()
            .min_by_key(|(_, h)| h.deadline)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                self.pending.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Steps every ready handshake; returns the first that ended in a
    /// connection or an authentication error (dropping it from the list).
    fn advance_pending(&mut self) -> Option<Result<Connection>> {
        let key = self.authkey.as_deref().unwrap_or_default();
        let mut i = 0;
        while i < self.pending.len() {
            if !self.pending[i].ready {
                i += 1;
                continue;
            }
            self.pending[i].ready = false;
            match self.pending[i].step(key) {
                Ok(Progress::Waiting) => i += 1,
                Ok(Progress::Done) => {
                    let h = self.pending.swap_remove(i);
                    return Some(h.into_fd().and_then(|fd| self.finish(fd)));
                }
                Err(e) => {
                    self.pending.swap_remove(i);
                    if is_auth_error(&e) {
                        return Some(Err(e));
                    }
                }
            }
        }
        None
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.fd()
    }
}
