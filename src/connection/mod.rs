//! `Pipe` and `Connection`: framed messages between processes over a
//! socketpair (duplex) or a kernel pipe (one way).
//!
//! The framing is CPython's `multiprocessing.connection`: a 4-byte
//! big-endian signed length, then the bytes; a message longer than
//! 2^31 - 1 bytes has the length -1 and then an 8-byte big-endian length.
//! So a multiproc connection and a Python one can talk over the same
//! descriptor (and over `Listener`/`Client` sockets). The manager's channel
//! uses the same framing, decoded by the same code.
//!
//! A header is only the peer's claim: the receiver commits memory as the
//! body's bytes arrive (64 KiB first, then doubling), whatever length was
//! announced. A message over the maximum is skipped: its announced bytes
//! are read and dropped, with an idle deadline ([`SKIP_IDLE`]) that bounds
//! how long a receive can wait for a body it will not return.

mod error;
pub(crate) mod frame;
#[cfg(feature = "listener")]
pub mod listener;
mod pass;
#[allow(unsafe_code)] // a ring in shared memory
pub(crate) mod stream;
mod waitable;

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;

pub use error::{IntoFdError, RecvError, SendError, WaitError};
pub use waitable::{Waitable, wait};

use crate::error::{CreateError, Error, Result};

/// The default largest message a connection accepts: 4 GiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 4 << 30;

/// How long a receiver keeps checking for data before it sleeps in the
/// kernel, at most (see [`wait`](crate::sync::wait): only while a CPU is to
/// spare, less after spins that caught nothing). Waking a sleeping process
/// costs tens of microseconds here; a reply that comes sooner is caught
/// without that cost.
static SPIN: crate::sync::wait::Site = crate::sync::wait::Site::new(Duration::from_micros(50));

/// How long the body of a message over the maximum may pause (no byte
/// arriving) while it is skipped. Past it the receive returns
/// [`RecvError::MessageTooLarge`] anyway, and the connection is out of step:
/// every later receive is [`RecvError::BadConnection`].
pub const SKIP_IDLE: Duration = Duration::from_secs(2);

/// One end of a pipe: sends and receives whole messages.
///
/// The descriptor behind [`as_raw_fd`](AsRawFd::as_raw_fd) carries the
/// messages themselves for [`pipe_os`] ends, [`Connection::from_fd`] and
/// listener connections; for [`pipe`] ends it is only the doorbell (and
/// passes handles), the bytes being in shared memory. A writer rings that
/// bell only for a reader that asked for it, so to wait for a [`pipe`] end
/// in your own event loop (epoll, mio, `poll(2)`), call
/// [`poll`](Connection::poll) with a zero timeout first: `true`, a message
/// (or the end of stream) is there; `false` armed the bell, and the
/// descriptor polls readable once the next message comes. It may also poll
/// readable with no message (a bell left from an earlier wait): call
/// `poll(Some(Duration::ZERO))` again on every wake-up and go back to
/// waiting while it says `false`.
///
/// # Examples
///
/// ```
/// let (a, b) = multiproc::connection::pipe(true)?;
/// a.send_bytes(b"hello")?;
/// assert_eq!(b.recv_bytes()?, b"hello");
/// b.send_bytes(b"")?; // zero-length messages are messages
/// assert_eq!(a.recv_bytes()?, b"");
/// drop(b);
/// assert!(matches!(a.recv_bytes(), Err(multiproc::RecvError::Eof)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    fd: OwnedFd,
    readable: bool,
    writable: bool,
    socket: bool,
    max_message: u64,
    /// Set when the body of an oversized message stopped coming before it
    /// was skipped: what follows is not at a message boundary.
    out_of_step: AtomicBool,
    /// The shared-memory data path of a [`pipe`] pair (the socket is then
    /// only the doorbell and the witness of the peer's life).
    stream: Option<stream::Stream>,
}

/// Two connected ends, like Python's `multiprocessing.Pipe(duplex)`: with
/// `duplex` both ends send and receive; without, the first end only
/// receives and the second only sends.
///
/// Made before a fork, the ends are inherited by the children; close the
/// ends a process does not use, so that end of stream is seen when the last
/// user of the other end goes away.
///
/// Both kinds carry their bytes through shared memory (a ring per
/// direction) and use a socketpair only to wake a sleeping receiver and to
/// learn that the peer is gone: both ends must be used
/// through their [`Connection`]s, by multiproc code in processes forked
/// after the pair was made. For a descriptor handed to another program
/// (a Python peer) or read with plain `read`/`write`, use [`pipe_os`].
///
/// Several processes may send on one end (each message goes whole), and
/// several may receive on one end (each takes whole messages).
#[doc(alias = "Pipe")]
pub fn pipe(duplex: bool) -> Result<(Connection, Connection), CreateError> {
    pipe_any(duplex).map_err(CreateError::from_internal)
}

fn pipe_any(duplex: bool) -> Result<(Connection, Connection)> {
    let (mut a, mut b) = pipe_os_any(true)?;
    let (sa, sb) = stream::Stream::pair()?;
    a.stream = Some(sa);
    b.stream = Some(sb);
    if !duplex {
        // The one-way kind: the same pair, each end used one way only.
        (a.writable, b.readable) = (false, false);
    }
    Ok((a, b))
}

/// Like [`pipe`], but every byte goes through the kernel descriptor (a
/// socketpair when duplex, a kernel pipe otherwise): the kind to hand to a program that is not
/// multiproc (a Python peer on an inherited descriptor), or to read and
/// write with plain `read`/`write` on [`as_raw_fd`](AsRawFd::as_raw_fd).
pub fn pipe_os(duplex: bool) -> Result<(Connection, Connection), CreateError> {
    pipe_os_any(duplex).map_err(CreateError::from_internal)
}

fn pipe_os_any(duplex: bool) -> Result<(Connection, Connection)> {
    if duplex {
        let (a, b) = crate::sys::socket::socketpair()?;
        Ok((
            Connection::new(a, true, true, true),
            Connection::new(b, true, true, true),
        ))
    } else {
        let (r, w) = crate::sys::fd::pipe()?;
        // A bigger pipe buffer (1 MiB, if allowed) lets large messages flow
        // with fewer wakeups; failure is harmless.
        crate::sys::fd::set_pipe_size(w.as_fd(), 1 << 20);
        Ok((
            Connection::new(r, true, false, false),
            Connection::new(w, false, true, false),
        ))
    }
}

impl Connection {
    fn new(fd: OwnedFd, readable: bool, writable: bool, socket: bool) -> Connection {
        Connection {
            fd,
            readable,
            writable,
            socket,
            max_message: DEFAULT_MAX_MESSAGE,
            out_of_step: AtomicBool::new(false),
            stream: None,
        }
    }

    /// A connection over a stream socket or pipe descriptor this process
    /// owns (for instance one inherited by a spawned child).
    pub fn from_fd(fd: OwnedFd, readable: bool, writable: bool) -> Connection {
        let socket = crate::sys::fd::is_socket(fd.as_fd());
        Connection::new(fd, readable, writable, socket)
    }

    /// The descriptor, taken out of the connection (which is consumed):
    /// the socket of a listener connection or of a [`pipe_os`] end. An end
    /// of a shared-memory [`pipe`] is refused ([`IntoFdError`], which
    /// gives the connection back): its descriptor is only a doorbell, the
    /// bytes are not in it.
    pub fn into_fd(self) -> Result<OwnedFd, IntoFdError> {
        if self.stream.is_some() {
            return Err(IntoFdError(self));
        }
        Ok(self.fd)
    }

    /// Sets the largest message `recv_bytes` accepts (longer ones are an
    /// error and are skipped, never allocated; see [`SKIP_IDLE`]).
    pub fn with_max_message(mut self, max: u64) -> Self {
        self.max_message = max;
        self
    }

    /// The largest message this end accepts.
    pub fn max_message(&self) -> u64 {
        self.max_message
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Sends `buf` as one message.
    ///
    /// Sending to an end whose peer is gone is an error (`EPIPE`), not a
    /// SIGPIPE death: sockets are written with `MSG_NOSIGNAL`, and Rust
    /// programs ignore SIGPIPE (a program that restores it should use the
    /// duplex kind).
    pub fn send_bytes(&self, buf: &[u8]) -> Result<(), SendError> {
        self.send_bytes_any(buf).map_err(SendError::from_internal)
    }

    fn send_bytes_any(&self, buf: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::BadConnection("read-only"));
        }
        let mut header = [0u8; frame::LONG];
        let hlen = frame::encode_header(buf.len() as u64, &mut header);
        self.write_all(&[&header[..hlen], buf])
    }

    fn write_all(&self, parts: &[&[u8]]) -> Result<()> {
        if let Some(s) = &self.stream {
            let _one_writer = s.lock_send();
            return s.write(self.fd.as_fd(), parts);
        }
        let mut part = 0;
        let mut off = 0;
        while part < parts.len() {
            let slices: Vec<IoSlice<'_>> = std::iter::once(&parts[part][off..])
                .chain(parts[part + 1..].iter().copied())
                .map(IoSlice::new)
                .collect();
            let r = if self.socket {
                crate::sys::socket::send_vectored(self.fd.as_fd(), &slices)
            } else {
                crate::sys::fd::writev(self.fd.as_fd(), &slices)
            };
            let mut n = match r {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::os("send", e)),
            };
            while part < parts.len() && n >= parts[part].len() - off {
                n -= parts[part].len() - off;
                part += 1;
                off = 0;
            }
            off += n;
        }
        Ok(())
    }

    /// Receives one message.
    ///
    /// [`RecvError::Eof`] once the other end is closed (by every process that
    /// had it) and no message is left; [`RecvError::Truncated`] if it closed in
    /// the middle of a message; [`RecvError::MessageTooLarge`] for a message
    /// over the maximum (skipped: the next call reads the next message;
    /// if its body stops coming for [`SKIP_IDLE`], the connection is out of
    /// step and later calls are [`RecvError::BadConnection`]).
    ///
    /// Memory grows with the bytes that arrive, not with the length the
    /// peer announced.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_bytes_any().map_err(RecvError::from_internal)
    }

    fn recv_bytes_any(&self) -> Result<Vec<u8>> {
        let _one_reader = self.stream.as_ref().map(|s| s.lock_recv());
        let size = self.recv_header()?;
        self.recv_body(size, Vec::new())
    }

    /// Reads a body of `size` bytes after what `buf` holds already,
    /// growing `buf` as the bytes come in.
    fn recv_body(&self, size: u64, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        let truncated = |got: usize| Error::Truncated {
            expected: size,
            got: got as u64,
        };
        let too_large = || Error::MessageTooLarge {
            size,
            max: self.max_message,
        };
        let size_us = usize::try_from(size).map_err(|_| too_large())?;
        let mut got = buf.len();
        while got < size_us {
            let mut step = frame::grow(got, size) - got;
            if let Some(s) = &self.stream {
                // Bytes already in the ring have arrived: room for them all
                // at once (no regrowth, no copy of what was read).
                step = step.max(s.available_now().min(size_us - got));
            }
            buf.try_reserve_exact(step).map_err(|_| too_large())?;
            let n = match &self.stream {
                // Copied straight from the ring, no zeroing first.
                Some(s) => s.read_append(self.fd.as_fd(), &mut buf, step),
                None => {
                    buf.resize(got + step, 0);
                    let n = self.read_exact_or_eof(&mut buf[got..got + step])?;
                    buf.truncate(got + n);
                    n
                }
            };
            got += n;
            if n < step {
                return Err(truncated(got));
            }
        }
        Ok(buf)
    }

    /// Receives one message into `buf` and returns its length; a message
    /// longer than `buf` is [`RecvError::BufferTooShort`] carrying it (read as
    /// [`recv_bytes`](Self::recv_bytes) does, growing with what arrives).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_bytes_into_any(buf)
            .map_err(RecvError::from_internal)
    }

    fn recv_bytes_into_any(&self, buf: &mut [u8]) -> Result<usize> {
        let _one_reader = self.stream.as_ref().map(|s| s.lock_recv());
        let size = self.recv_header()?;
        if size > buf.len() as u64 {
            return Err(Error::BufferTooShort(self.recv_body(size, Vec::new())?));
        }
        let n = self.read_exact_or_eof(&mut buf[..size as usize])?;
        if n < size as usize {
            return Err(Error::Truncated {
                expected: size,
                got: n as u64,
            });
        }
        Ok(n)
    }

    /// Reads the length header (waiting for it); skips an oversized message.
    fn recv_header(&self) -> Result<u64> {
        if !self.readable {
            return Err(Error::BadConnection("write-only"));
        }
        if self.out_of_step.load(Ordering::Relaxed) {
            return Err(Error::BadConnection(
                "out of step: the body of a message over the maximum stopped coming",
            ));
        }
        self.spin_for_data();
        let mut h = [0u8; frame::LONG];
        let mut have = 0;
        let size = loop {
            if let Some((_, size)) = frame::decode_header(&h[..have])? {
                break size;
            }
            let want = if have < frame::SHORT {
                frame::SHORT
            } else {
                frame::LONG
            };
            let n = self.read_exact_or_eof(&mut h[have..want])?;
            have += n;
            if have < want {
                return Err(match have {
                    0 => Error::Eof,
                    _ => Error::Truncated {
                        expected: want as u64,
                        got: have as u64,
                    },
                });
            }
        };
        if size > self.max_message {
            self.skip(size);
            return Err(Error::MessageTooLarge {
                size,
                max: self.max_message,
            });
        }
        Ok(size)
    }

    /// Reads and drops `n` bytes (an oversized message's body), as long as
    /// they keep coming: after [`SKIP_IDLE`] without any, the connection
    /// is marked out of step. An end of stream first is left for the next
    /// receive to report.
    fn skip(&self, mut n: u64) {
        if let Some(s) = &self.stream {
            if s.skip_idle(self.fd.as_fd(), n, SKIP_IDLE) {
                self.out_of_step.store(true, Ordering::Relaxed);
            }
            return;
        }
        let mut sink = vec![0u8; frame::FIRST_READ];
        while n > 0 {
            match self.ready(Some(SKIP_IDLE)) {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    self.out_of_step.store(true, Ordering::Relaxed);
                    return;
                }
            }
            let step = n.min(sink.len() as u64) as usize;
            match crate::sys::fd::read(self.fd.as_fd(), &mut sink[..step]) {
                Ok(0) | Err(Errno::ECONNRESET) => return,
                Ok(got) => n -= got as u64,
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => {
                    self.out_of_step.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Fills `buf` unless the stream ends first; returns how much it read.
    fn read_exact_or_eof(&self, buf: &mut [u8]) -> Result<usize> {
        if let Some(s) = &self.stream {
            return Ok(s.read_exact_or_eof(self.fd.as_fd(), buf));
        }
        let mut got = 0;
        while got < buf.len() {
            match crate::sys::fd::read(self.fd.as_fd(), &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECONNRESET) => break,
                Err(e) => return Err(Error::os("read", e)),
            }
        }
        Ok(got)
    }

    /// Checks for data for a short while before the blocking read sleeps.
    fn spin_for_data(&self) {
        if self.stream.is_some() {
            return; // the ring's reads spin on shared memory
        }
        SPIN.spin_until(crate::deadline::Deadline::NEVER, || {
            self.ready(Some(Duration::ZERO))
                .unwrap_or(true)
                .then_some(())
        });
    }

    fn ready(&self, timeout: Option<Duration>) -> Result<bool> {
        Ok(!crate::sys::fd::poll_readable(&[self.fd.as_fd()], timeout)?.is_empty())
    }

    /// Whether a message (or end of stream) can be read without waiting,
    /// waiting at most `timeout` for one (`None`: as long as it takes). Never
    /// consumes anything.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool, RecvError> {
        self.poll_any(timeout).map_err(RecvError::from_internal)
    }

    fn poll_any(&self, timeout: Option<Duration>) -> Result<bool> {
        if !self.readable {
            return Err(Error::BadConnection("write-only"));
        }
        if let Some(s) = &self.stream {
            return Ok(s.poll(self.fd.as_fd(), timeout));
        }
        self.ready(timeout)
    }

    /// Passes a copy of the file descriptor `fd` to the process at the
    /// other end, which takes it with [`recv_handle`](Self::recv_handle):
    /// Python's `multiprocessing.reduction.send_handle` (`SCM_RIGHTS` over
    /// the Unix socket, with the same one-byte payload, so a Python peer on
    /// an [`pipe_os`] or [`Listener`](crate::Listener) connection can
    /// receive it).
    ///
    /// Only connections over a Unix stream socket can (those of [`pipe`],
    /// duplex [`pipe_os`] ends, a Unix-address listener's connections):
    /// others are
    /// [`SendError::BadConnection`]. Handles travel beside the messages, not
    /// among them: the receiver calls `recv_handle` for each handle sent,
    /// in order, whatever messages it receives meanwhile.
    pub fn send_handle(&self, fd: BorrowedFd<'_>) -> Result<(), SendError> {
        self.send_handle_any(fd).map_err(SendError::from_internal)
    }

    fn send_handle_any(&self, fd: BorrowedFd<'_>) -> Result<()> {
        if !self.writable {
            return Err(Error::BadConnection("read-only"));
        }
        if !self.socket {
            return Err(Error::BadConnection("handles need a Unix socket"));
        }
        // One byte (Python's payload) carrying the descriptor.
        match crate::sys::socket::send_with_fd(self.fd.as_fd(), &[1u8], fd) {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::os("sendmsg", e)),
        }
    }

    /// Takes a file descriptor passed by the other end with
    /// [`send_handle`](Self::send_handle) (waiting for it): Python's
    /// `multiprocessing.reduction.recv_handle`. The descriptor is new in
    /// this process, close-on-exec. [`RecvError::Eof`] if the other end closed
    /// first.
    pub fn recv_handle(&self) -> Result<OwnedFd, RecvError> {
        self.recv_handle_any().map_err(RecvError::from_internal)
    }

    fn recv_handle_any(&self) -> Result<OwnedFd> {
        if !self.readable {
            return Err(Error::BadConnection("write-only"));
        }
        if !self.socket {
            return Err(Error::BadConnection("handles need a Unix socket"));
        }
        // A plain socket carries messages too: read the handle's byte only.
        let mut buf = [0u8; 64];
        let want = if self.stream.is_some() { buf.len() } else { 1 };
        let (_, got) = self.recv_beside(&mut buf[..want])?;
        let mut got = got.map_err(|e| Error::os("recvmsg", e))?;
        if got.len() > 1 {
            return Err(Error::Codec(format!(
                "expected one handle, got {}",
                got.len()
            )));
        }
        got.pop()
            .ok_or_else(|| Error::Codec("bytes where a handle was expected".into()))
    }

    /// Reads what travels on the socket beside the messages (a handle's
    /// byte, a connection record), with the descriptors riding on it,
    /// waiting for it: the range of `buf` it fills, past a shared-memory
    /// pipe's bells (zero bytes, read and dropped: the kernel never merges
    /// bytes past the one carrying descriptors), and the descriptors (`Err`
    /// if they were cut short). `Eof` if the other end closed first. On a
    /// plain socket, which carries messages too, `buf` must be exactly the
    /// length expected.
    fn recv_beside(
        &self,
        buf: &mut [u8],
    ) -> Result<(std::ops::Range<usize>, nix::Result<Vec<OwnedFd>>)> {
        loop {
            let (bytes, got) = match crate::sys::socket::recv_with_fds_checked(self.fd.as_fd(), buf)
            {
                Ok(m) => m,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECONNRESET) => return Err(Error::Eof),
                Err(e) => return Err(Error::os("recvmsg", e)),
            };
            if bytes == 0 {
                return Err(Error::Eof);
            }
            let bells = if self.stream.is_some() {
                buf[..bytes].iter().take_while(|&&b| b == 0).count()
            } else {
                0
            };
            if bells == bytes && got.as_ref().is_ok_and(Vec::is_empty) {
                continue; // only bells so far
            }
            return Ok((bells..bytes, got));
        }
    }

    /// Test hook, not part of the API: writes `raw` bytes into the stream
    /// as they are (no framing), through whichever path the connection
    /// uses, as a writer killed mid-message or a lying peer would leave
    /// them.
    #[doc(hidden)]
    pub fn __send_raw(&self, raw: &[u8]) -> Result<(), SendError> {
        self.write_all(&[raw]).map_err(SendError::from_internal)
    }

    /// Closes this end (dropping it does the same).
    pub fn close(self) {}

    /// Sends `value` serialized (postcard) as one message.
    #[cfg(feature = "spawn")]
    pub fn send<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let bytes =
            postcard::to_stdvec(value).map_err(|e| SendError::Encode(format!("send: {e}")))?;
        self.send_bytes(&bytes)
    }

    /// Receives one message and deserializes it.
    #[cfg(feature = "spawn")]
    pub fn recv<T: serde::de::DeserializeOwned>(&self) -> Result<T, RecvError> {
        let bytes = self.recv_bytes()?;
        postcard::from_bytes(&bytes).map_err(|e| RecvError::Decode(format!("recv: {e}")))
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Connection {
    /// aio hook (issue 17): the shared-memory path of a [`pipe`] end.
    #[cfg(feature = "tokio")]
    pub(crate) fn stream(&self) -> Option<&stream::Stream> {
        self.stream.as_ref()
    }
}

impl Waitable for Connection {
    /// Ready when a message (or end of stream) can be read.
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        self.readable.then(|| self.fd.as_fd())
    }

    fn prepare_wait(&self) -> bool {
        match &self.stream {
            Some(s) if self.readable => s.arm(self.fd.as_fd()),
            _ => false,
        }
    }
}

/// A bounded fuzz run of the receiving side (a few hundred streams, about
/// a second): whatever bytes a peer writes before it closes, on either
/// transport, every receive returns, no message is over the maximum, and
/// the stream ends in `Eof` or `Truncated` after at most one call per byte.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_stream_ends_cleanly(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            ring in any::<bool>(),
            max in 0u64..64,
        ) {
            let (a, b) = if ring { pipe(true) } else { pipe_os(true) }.unwrap();
            let b = b.with_max_message(max);
            a.__send_raw(&bytes).unwrap();
            drop(a);
            for _ in 0..bytes.len() + 2 {
                match b.recv_bytes() {
                    Ok(m) => prop_assert!(m.len() as u64 <= max),
                    Err(RecvError::MessageTooLarge { size, max: m }) => prop_assert!(size > m),
                    Err(RecvError::Decode(_)) => {}
                    Err(RecvError::Eof | RecvError::Truncated { .. }) => return Ok(()),
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            prop_assert!(false, "the stream never ended");
        }
    }
}
