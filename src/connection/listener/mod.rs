//! `Listener` and `Client`: connections between processes that did not
//! inherit a pipe from each other, over a Unix socket (a path or a Linux
//! abstract name) or TCP, like Python's `multiprocessing.connection`.
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

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{self as unix, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::MsgFlags;

use super::Connection;
use crate::error::{Error, Result};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// The digest a multiproc challenge asks for.
const PREFERRED_DIGEST: &str = "sha256";
/// Random bytes in a multiproc challenge (after the `{sha256}` prefix).
const NONCE_LEN: usize = 40;
/// The random bytes of an old-style (MD5 only) challenge.
const LEGACY_CHALLENGE_LEN: usize = 20;
/// The length of a bare HMAC-MD5 answer.
const MD5_LEN: usize = 16;
/// The longest handshake message read.
const HANDSHAKE_MAX: usize = 256;
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

/// The error of a failed authentication (a wrong key on one side or the
/// other, or a peer that does not speak the protocol).
fn auth_failed(msg: &'static str) -> Error {
    Error::AuthenticationFailed(msg)
}

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
    pub fn parse(s: &str) -> Result<Address> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(Error::InvalidArgument("empty Unix socket path"));
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
            let mut addrs = hp.to_socket_addrs().map_err(|_| {
                Error::InvalidArgument("not an address: expected unix:, abstract: or tcp:HOST:PORT")
            })?;
            addrs
                .next()
                .map(Address::Tcp)
                .ok_or(Error::InvalidArgument("host name resolved to no address"))
        }
    }
}

impl FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Address> {
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

/// The socket file a path listener removes when it is dropped, if it is
/// still the one it made, and only in the process that made it.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    pid: u32,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && m.dev() == self.dev
            && m.ino() == self.ino
        {
            let _ = std::fs::remove_file(&self.path);
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
    /// serves is `EADDRINUSE`. (An abstract name has no file and no mode:
    /// any local process may connect to it, which is what the key is for.)
    pub fn bind(address: &Address, authkey: Option<&[u8]>) -> Result<Listener> {
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
    pub fn bind_default_key(address: &Address) -> Result<Listener> {
        let key = crate::process::current_process().authkey().to_vec();
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
    /// or it rejected our answer) makes this return an authentication error,
    /// as Python's `AuthenticationError`; call `accept` again to go on. A
    /// peer that hangs up, breaks the protocol's framing or misses the
    /// handshake deadline is dropped quietly. Handshakes still running when
    /// this returns go on at the next call.
    pub fn accept(&mut self) -> Result<Connection> {
        self.accept_until(None)
    }

    /// Like [`accept`](Self::accept), giving up with [`Error::Timeout`]
    /// after `timeout`.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Connection> {
        self.accept_until(Some(Instant::now() + timeout))
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

    fn accept_until(&mut self, deadline: Option<Instant>) -> Result<Connection> {
        loop {
            let now = Instant::now();
            self.pending.retain(|h| h.deadline > now);
            // Work the handshakes that can move (new or ready ones).
            let listen_ready;
            {
                let mut fds = Vec::with_capacity(self.pending.len() + 1);
                fds.push(PollFd::new(self.socket.fd(), PollFlags::POLLIN));
                for h in &self.pending {
                    fds.push(PollFd::new(h.fd.as_fd(), h.interest()));
                }
                let mut wake = deadline;
                for h in &self.pending {
                    wake = Some(wake.map_or(h.deadline, |w| w.min(h.deadline)));
                }
                match nix::poll::poll(&mut fds, poll_timeout(wake)) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(Error::os("poll", e)),
                }
                let ready: Vec<bool> = fds
                    .iter()
                    .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                    .collect();
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
            if deadline.is_some_and(|d| Instant::now() >= d) {
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

fn is_auth_error(e: &Error) -> bool {
    matches!(e, Error::AuthenticationFailed(_))
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.fd()
    }
}

/// Binds a Unix socket at `path`, replacing a socket file nobody listens on.
/// Whether a listening Unix socket is bound to `path`, from
/// `/proc/net/unix` (this network namespace's sockets); `None` if the
/// table cannot be read.
fn someone_listens(path: &Path) -> Option<bool> {
    /// `__SO_ACCEPTCON` in the Flags column: the socket listens.
    const ACCEPTCON: u32 = 0x10000;
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let canonical = std::fs::canonicalize(path).ok();
    Some(table.lines().skip(1).any(|line| {
        // Num RefCount Protocol Flags Type St Inode Path (which may hold spaces)
        let mut cols = line
            .splitn(8, char::is_whitespace)
            .filter(|c| !c.is_empty());
        let flags = cols.nth(3).and_then(|f| u32::from_str_radix(f, 16).ok());
        let bound = line.split_whitespace().nth(7).map(|_| {
            // The path is everything after the seventh column.
            let mut rest = line.trim_start();
            for _ in 0..7 {
                rest = rest
                    .split_once(char::is_whitespace)
                    .map_or("", |(_, r)| r)
                    .trim_start();
            }
            rest
        });
        match (flags, bound) {
            (Some(f), Some(b)) if f & ACCEPTCON != 0 => {
                Path::new(b) == path || canonical.as_deref() == Some(Path::new(b))
            }
            _ => false,
        }
    }))
}

/// Binds and listens on a new Unix socket at `path`, its file created mode
/// 0600 (read and write for the owner only), whatever the umask.
///
/// Linux gives the file of a bound Unix socket the socket's own inode mode,
/// less the umask: the mode is set on the socket (`fchmod`) before `bind`,
/// so the file never exists with a wider one. Changing the umask around
/// `bind` would do the same, but the umask is process-wide: a file another
/// thread creates meanwhile would get ours. Binding inside a private
/// directory and renaming would leave the kernel's socket table naming the
/// old path, which is how a live listener is told from a stale file.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
    };
    use nix::sys::stat::{Mode, fchmod};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    fchmod(&fd, Mode::S_IRUSR | Mode::S_IWUSR)?;
    bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    // A kernel that ignored the socket's mode: narrow it now.
    let m = std::fs::symlink_metadata(path)?;
    if m.mode() & 0o077 != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    listen(&fd, Backlog::MAXCONN)?;
    Ok(UnixListener::from(fd))
}

fn bind_unix_path(path: &Path) -> Result<UnixListener> {
    match bind_private(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket = std::fs::symlink_metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false);
            if !is_socket {
                return Err(Error::os("bind", e));
            }
            // Is anybody listening on it? Asked of the kernel's socket
            // table, not by connecting: a probe connection would sit in a
            // live listener's queue and be accepted as a (dead) client.
            let stale = match someone_listens(path) {
                Some(listening) => !listening,
                // No /proc: fall back to a probe connection.
                None => matches!(
                    UnixStream::connect(path),
                    Err(c) if c.raw_os_error() == Some(libc::ECONNREFUSED)
                ),
            };
            if stale {
                let _ = std::fs::remove_file(path);
                bind_private(path).map_err(|e| Error::os("bind", e))
            } else {
                Err(Error::os("bind", e))
            }
        }
        Err(e) => Err(Error::os("bind", e)),
    }
}

/// Connecting to a [`Listener`] (or a Python one), like Python's
/// `multiprocessing.connection.Client`.
#[derive(Debug)]
#[non_exhaustive]
pub struct Client;

impl Client {
    /// Connects to `address`. With `authkey` the handshake is run (the
    /// listener must have the same key); it waits as long as the listener
    /// takes to call `accept`.
    pub fn connect(address: &Address, authkey: Option<&[u8]>) -> Result<Connection> {
        Client::connect_timeout(address, authkey, None)
    }

    /// Connects with this process's key,
    /// [`current_process().authkey()`](crate::CurrentProcess::authkey).
    pub fn connect_default_key(address: &Address) -> Result<Connection> {
        let key = crate::process::current_process().authkey().to_vec();
        Client::connect(address, Some(&key))
    }

    /// Like [`connect`](Self::connect), giving up on the handshake with
    /// [`Error::Timeout`] after `timeout` (`None`: no limit).
    pub fn connect_timeout(
        address: &Address,
        authkey: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<Connection> {
        connect_with(address, authkey, timeout, false)
    }

    /// Like [`connect_timeout`](Self::connect_timeout), but the handshake is
    /// HMAC-SHA256 in both directions or nothing: a challenge for another
    /// digest (or an old-style MD5 one) is refused, and our own challenge
    /// asks for SHA-256. The manager's client uses this.
    pub fn connect_sha256_only(
        address: &Address,
        authkey: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Connection> {
        connect_with(address, Some(authkey), timeout, true)
    }
}

fn connect_with(
    address: &Address,
    authkey: Option<&[u8]>,
    timeout: Option<Duration>,
    sha256_only: bool,
) -> Result<Connection> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let fd = match deadline {
        None => connect_socket(address)?,
        Some(d) => connect_socket_until(address, d)?,
    };
    let Some(key) = authkey else {
        return Ok(Connection::from_fd(fd, true, true));
    };
    let mut h = Handshake::new(fd, Role::Client, far_future(), sha256_only)?;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::Timeout);
        }
        let mut fds = [PollFd::new(h.fd.as_fd(), h.interest())];
        match nix::poll::poll(&mut fds, poll_timeout(deadline)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("poll", e)),
        }
        if let Progress::Done = h.step(key)? {
            return Ok(Connection::from_fd(h.into_fd()?, true, true));
        }
    }
}

fn far_future() -> Instant {
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
fn connect_socket_until(address: &Address, deadline: Instant) -> Result<OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let left = || deadline.saturating_duration_since(Instant::now());
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
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| Error::os("socket", e))?;
    loop {
        match connect(fd.as_raw_fd(), &ua) {
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
    set_nonblocking(fd.as_fd(), false)?;
    Ok(fd)
}

/// A poll timeout reaching `deadline` (rounded up to whole milliseconds).
fn poll_timeout(deadline: Option<Instant>) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::os("fcntl", e))?;
    let mut flags = OFlag::from_bits_retain(flags);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| Error::os("fcntl", e))?;
    Ok(())
}

fn random_bytes(buf: &mut [u8]) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`,
        // which we borrow mutably for the call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::os("getrandom", e));
        }
        got += n as usize;
    }
    Ok(())
}

/// A digest the handshake knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn from_name(name: &[u8]) -> Option<Digest> {
        match name {
            b"md5" => Some(Digest::Md5),
            b"sha256" => Some(Digest::Sha256),
            b"sha384" => Some(Digest::Sha384),
            _ => None,
        }
    }

    fn mac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, msg),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, msg),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, msg),
        }
    }

    /// Whether `tag` is the HMAC of `msg`, compared in constant time.
    fn verify(self, key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
        fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
            let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
            m.update(msg);
            m.verify_slice(tag).is_ok()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, msg, tag),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, msg, tag),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, msg, tag),
        }
    }
}

/// Reads the `{name}` prefix of `msg`: the digest and the prefix's length;
/// `None` if `msg` has no known prefix.
fn split_digest(msg: &[u8]) -> Option<(Digest, usize)> {
    let body = msg.strip_prefix(b"{")?;
    let close = body.iter().take(21).position(|&b| b == b'}')?;
    Some((Digest::from_name(&body[..close])?, close + 2))
}

/// Our answer to a challenge message (what follows `#CHALLENGE#`).
fn answer(key: &[u8], msg: &[u8], sha256_only: bool) -> Result<Vec<u8>> {
    if sha256_only {
        return match split_digest(msg) {
            Some((Digest::Sha256, prefix)) => {
                let mut out = msg[..prefix].to_vec();
                out.extend_from_slice(&Digest::Sha256.mac(key, msg));
                Ok(out)
            }
            _ => Err(auth_failed("challenge is not HMAC-SHA256")),
        };
    }
    if msg.len() == LEGACY_CHALLENGE_LEN {
        // The old protocol: HMAC-MD5 of the random bytes, no prefix.
        return Ok(Digest::Md5.mac(key, msg));
    }
    let Some((digest, prefix)) = split_digest(msg) else {
        return Err(auth_failed("challenge with an unknown digest or length"));
    };
    let mut out = msg[..prefix].to_vec();
    out.extend_from_slice(&digest.mac(key, msg));
    Ok(out)
}

/// Whether `response` answers our challenge message `msg` (which follows
/// `#CHALLENGE#`): a `{digest}` answer, or a bare HMAC-MD5 one.
fn verify(key: &[u8], msg: &[u8], response: &[u8], sha256_only: bool) -> bool {
    if sha256_only {
        return match split_digest(response) {
            Some((Digest::Sha256, prefix)) => Digest::Sha256.verify(key, msg, &response[prefix..]),
            _ => false,
        };
    }
    if response.len() == MD5_LEN {
        return Digest::Md5.verify(key, msg, response);
    }
    match split_digest(response) {
        Some((digest, prefix)) => digest.verify(key, msg, &response[prefix..]),
        None => false,
    }
}

/// Which side of the handshake: the server challenges first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

#[derive(Debug)]
enum State {
    /// We sent a challenge (the message after `#CHALLENGE#`).
    AwaitResponse(Vec<u8>),
    /// The peer's challenge is due (the server's first, or the client's
    /// after it welcomed our answer).
    AwaitChallenge,
    /// We answered the peer's challenge.
    AwaitVerdict,
    /// Everything is sent once the output drains.
    Finish,
    /// `#FAILURE#` is on its way; then this error.
    Failing(&'static str),
}

enum Progress {
    Waiting,
    Done,
}

/// One handshake on a non-blocking socket, moved along as it becomes
/// readable or writable.
#[derive(Debug)]
struct Handshake {
    fd: OwnedFd,
    role: Role,
    deadline: Instant,
    ready: bool,
    out: Vec<u8>,
    sent: usize,
    input: Vec<u8>,
    state: State,
    sha256_only: bool,
}

impl Handshake {
    fn new(fd: OwnedFd, role: Role, deadline: Instant, sha256_only: bool) -> Result<Handshake> {
        set_nonblocking(fd.as_fd(), true)?;
        let mut h = Handshake {
            fd,
            role,
            deadline,
            ready: false,
            out: Vec::new(),
            sent: 0,
            input: Vec::new(),
            state: State::AwaitChallenge,
            sha256_only,
        };
        if role == Role::Server {
            h.challenge()?;
        }
        Ok(h)
    }

    /// Queues a fresh `{sha256}` challenge.
    fn challenge(&mut self) -> Result<()> {
        let mut msg = format!("{{{PREFERRED_DIGEST}}}").into_bytes();
        let start = msg.len();
        msg.resize(start + NONCE_LEN, 0);
        random_bytes(&mut msg[start..])?;
        let mut full = CHALLENGE.to_vec();
        full.extend_from_slice(&msg);
        self.queue(&full);
        self.state = State::AwaitResponse(msg);
        Ok(())
    }

    fn queue(&mut self, msg: &[u8]) {
        self.out
            .extend_from_slice(&(msg.len() as i32).to_be_bytes());
        self.out.extend_from_slice(msg);
    }

    fn interest(&self) -> PollFlags {
        if self.sent < self.out.len() {
            PollFlags::POLLOUT
        } else {
            PollFlags::POLLIN
        }
    }

    fn into_fd(self) -> Result<OwnedFd> {
        set_nonblocking(self.fd.as_fd(), false)?;
        Ok(self.fd)
    }

    /// Moves as far as possible without blocking.
    fn step(&mut self, key: &[u8]) -> Result<Progress> {
        loop {
            // Drain the output first.
            while self.sent < self.out.len() {
                match nix::sys::socket::send(
                    self.fd.as_raw_fd(),
                    &self.out[self.sent..],
                    MsgFlags::MSG_NOSIGNAL,
                ) {
                    Ok(n) => self.sent += n,
                    Err(Errno::EAGAIN) => return Ok(Progress::Waiting),
                    Err(Errno::EINTR) => {}
                    Err(e) => {
                        if let State::Failing(msg) = self.state {
                            return Err(auth_failed(msg));
                        }
                        return Err(Error::os("send", e));
                    }
                }
            }
            self.out.clear();
            self.sent = 0;
            match self.state {
                State::Finish => return Ok(Progress::Done),
                State::Failing(msg) => return Err(auth_failed(msg)),
                _ => {}
            }
            let Some(msg) = self.read_message()? else {
                return Ok(Progress::Waiting);
            };
            match std::mem::replace(&mut self.state, State::Finish) {
                State::AwaitResponse(challenge) => {
                    if verify(key, &challenge, &msg, self.sha256_only) {
                        self.queue(WELCOME);
                        self.state = match self.role {
                            Role::Server => State::AwaitChallenge,
                            Role::Client => State::Finish,
                        };
                    } else {
                        self.queue(FAILURE);
                        self.state = State::Failing("digest received was wrong");
                    }
                }
                State::AwaitChallenge => {
                    let Some(body) = msg.strip_prefix(CHALLENGE) else {
                        return Err(auth_failed("expected a challenge"));
                    };
                    let reply = answer(key, body, self.sha256_only)?;
                    self.queue(&reply);
                    self.state = State::AwaitVerdict;
                }
                State::AwaitVerdict => {
                    if msg != WELCOME {
                        return Err(auth_failed("digest sent was rejected"));
                    }
                    match self.role {
                        Role::Server => return Ok(Progress::Done),
                        Role::Client => self.challenge()?,
                    }
                }
                State::Finish | State::Failing(_) => unreachable!("handled above"),
            }
        }
    }

    /// Reads one whole handshake message, if it has arrived; never reads
    /// past its end (what follows belongs to the connection).
    fn read_message(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            let need = if self.input.len() < 4 {
                4
            } else {
                let len = i32::from_be_bytes(self.input[..4].try_into().expect("4 bytes"));
                if len < 0 || len as usize > HANDSHAKE_MAX {
                    return Err(Error::MessageTooLarge {
                        size: if len < 0 { u64::MAX } else { len as u64 },
                        max: HANDSHAKE_MAX as u64,
                    });
                }
                let need = 4 + len as usize;
                if self.input.len() == need {
                    let msg = self.input[4..].to_vec();
                    self.input.clear();
                    return Ok(Some(msg));
                }
                need
            };
            let have = self.input.len();
            self.input.resize(need, 0);
            match nix::unistd::read(self.fd.as_fd(), &mut self.input[have..need]) {
                Ok(0) => {
                    self.input.truncate(have);
                    return Err(if have == 0 {
                        Error::Eof
                    } else {
                        Error::Truncated {
                            expected: need as u64,
                            got: have as u64,
                        }
                    });
                }
                Ok(n) => self.input.truncate(have + n),
                Err(Errno::EAGAIN) => {
                    self.input.truncate(have);
                    return Ok(None);
                }
                Err(Errno::EINTR) => self.input.truncate(have),
                Err(e) => {
                    self.input.truncate(have);
                    return Err(Error::os("recv", e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    // Expected values computed with Python's `hmac` module.
    #[test]
    fn answers_match_python() {
        let mut modern = b"{sha256}".to_vec();
        modern.extend_from_slice(&[b'x'; 40]);
        let a = answer(b"k", &modern, false).unwrap();
        assert_eq!(&a[..8], b"{sha256}");
        assert_eq!(
            hex(&a[8..]),
            "c88f5842497f089695cef742fe0f3f0363b08f255b0da59a5907f785657c9504"
        );
        assert!(verify(b"k", &modern, &a, false));
        assert!(!verify(b"K", &modern, &a, false));
        // A 3.11 peer answers our challenge with bare HMAC-MD5 of all of it.
        let md5 = Digest::Md5.mac(b"k", &modern);
        assert_eq!(hex(&md5), "b6d8a95c2aec62a2d758f6fc96cc92cf");
        assert!(verify(b"k", &modern, &md5, false));
        let mut bad = md5.clone();
        bad[0] ^= 1;
        assert!(!verify(b"k", &modern, &bad, false));
        // The old challenge: 20 bytes, answered with bare HMAC-MD5.
        let old = answer(b"k", &[b'y'; 20], false).unwrap();
        assert_eq!(hex(&old), "80977f5d629fcb3509faf2e12c90e153");
        // Unknown digests are refused.
        assert!(answer(b"k", b"{sha3_512}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false).is_err());
        assert!(!verify(b"k", &modern, b"{nope}abc", false));
        // SHA-256 only: the MD5 answers and challenges are refused.
        assert!(verify(b"k", &modern, &a, true));
        assert!(!verify(b"k", &modern, &md5, true));
        assert!(answer(b"k", &[b'y'; 20], true).is_err());
        assert_eq!(answer(b"k", &modern, true).unwrap(), a);
        let mut md5_challenge = b"{md5}".to_vec();
        md5_challenge.extend_from_slice(&[b'x'; 40]);
        assert!(answer(b"k", &md5_challenge, true).is_err());
        assert!(answer(b"k", &md5_challenge, false).is_ok());
    }
}

/// A bounded fuzz run of the handshake (a few hundred exchanges): whatever
/// a peer sends before it stops writing, either side's handshake ends
/// (never waits once the input ended), never panics, and never lets the
/// peer in without the key.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn garbage_never_authenticates(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            server in any::<bool>(),
            framed in any::<bool>(),
            sha256_only in any::<bool>(),
        ) {
            let (ours, mut peer) = UnixStream::pair().unwrap();
            // Half the cases frame the garbage like handshake messages, so
            // that it reaches the digest checks.
            let mut input = Vec::new();
            if framed {
                input.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            }
            input.extend_from_slice(&bytes);
            peer.write_all(&input).unwrap();
            peer.shutdown(std::net::Shutdown::Write).unwrap();
            let role = if server { Role::Server } else { Role::Client };
            let mut h = Handshake::new(ours.into(), role, far_future(), sha256_only).unwrap();
            let mut ended = false;
            for _ in 0..16 {
                match h.step(b"key") {
                    Ok(Progress::Done) => prop_assert!(false, "garbage authenticated"),
                    Ok(Progress::Waiting) => {}
                    Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
            prop_assert!(ended, "the handshake kept waiting on ended input");
        }
    }
}
