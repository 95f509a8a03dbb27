//! One authenticated stream socket carrying frames, read through a buffer.
//!
//! Reading spins briefly before it sleeps: a reply (or the next request)
//! that comes within [`SPIN`] is picked up without the 20-25 us it costs
//! to wake a sleeping process on this machine class, and an idle reader
//! spins that long once, then sleeps in `poll`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags};

use super::protocol::{HEADER, parse_frame};
use crate::error::{Error, Result};

/// How long a reader polls for data without sleeping: a little more than
/// the 20-25 us a wakeup costs, so that a reply (or the next request) that
/// comes back to back is caught without one.
pub(crate) const SPIN: Duration = Duration::from_micros(60);

/// A framed connection with a read buffer.
#[derive(Debug)]
pub(crate) struct Channel {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// The start of unread bytes in `buf`.
    start: usize,
    /// The end of the bytes read into `buf`.
    end: usize,
    /// The frame handed out last: consumed on the next read.
    last: usize,
    max: usize,
    /// Descriptors that came with the bytes read (SCM_RIGHTS).
    fds: Vec<OwnedFd>,
}

/// Why a read ended without a frame.
pub(crate) enum ReadEnd {
    /// The peer closed (or reset) the connection, or cut a frame short.
    Closed,
    /// A bad or oversized frame header.
    Bad(Error),
    /// An OS error.
    Os(Error),
    /// The `stop` callback asked to give up.
    Stopped,
}

impl Channel {
    pub(crate) fn new(fd: OwnedFd, max: usize) -> Result<Channel> {
        // Reads are non-blocking; waiting is done in poll.
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).map_err(|e| Error::os("fcntl", e))?;
        let mut flags = OFlag::from_bits_retain(flags);
        flags.insert(OFlag::O_NONBLOCK);
        fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).map_err(|e| Error::os("fcntl", e))?;
        Ok(Channel {
            fd,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            last: 0,
            max,
            fds: Vec::new(),
        })
    }

    /// A descriptor that came with the data read, if any.
    pub(crate) fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fds.pop()
    }

    /// Sends one whole frame with `fd` attached to its first bytes.
    pub(crate) fn send_with_fd(&self, frame: &[u8], fd: BorrowedFd<'_>) -> Result<()> {
        let n = loop {
            match crate::sys::process::send_with_fd(self.fd.as_fd(), frame, fd) {
                Ok(n) => break n,
                Err(Errno::EAGAIN) => wait_writable(&[self.fd.as_fd()])?,
                Err(e) => return Err(Error::os("sendmsg", e)),
            }
        };
        self.send(&frame[n..])
    }

    /// Sends one whole frame (already framed by `encode_frame`).
    pub(crate) fn send(&self, frame: &[u8]) -> Result<()> {
        let mut off = 0;
        while off < frame.len() {
            let iov = [IoSlice::new(&frame[off..])];
            match socket::sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                &[],
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => off += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    // The peer is not reading: wait until it does.
                    let fds = [self.fd.as_fd()];
                    wait_writable(&fds)?;
                }
                Err(e) => return Err(Error::os("send", e)),
            }
        }
        Ok(())
    }

    /// Reads the next frame; its body is `bytes(range)`. While waiting it spins for `spin`, then
    /// sleeps in poll, waking every `slice` (if given) to ask `stop`
    /// whether to give up.
    pub(crate) fn recv(
        &mut self,
        spin: Duration,
        slice: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> std::result::Result<std::ops::Range<usize>, ReadEnd> {
        self.start += self.last;
        self.last = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let mut spin_until: Option<Instant> = None;
        let mut rounds = 0u32;
        loop {
            match parse_frame(&self.buf[self.start..self.end], self.max) {
                Ok(Some(len)) => {
                    self.last = HEADER + len;
                    return Ok(self.start + HEADER..self.start + HEADER + len);
                }
                Ok(None) => {}
                Err(e) => return Err(ReadEnd::Bad(e)),
            }
            // Make room: move the partial frame to the front, grow if a
            // frame is longer than the buffer.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let need = if self.end >= HEADER {
                let len = i32::from_be_bytes(self.buf[..HEADER].try_into().expect("4")) as usize;
                HEADER + len
            } else {
                HEADER
            };
            if need > self.buf.len() {
                self.buf.resize(need, 0);
            } else if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match crate::sys::process::recv_with_fds(self.fd.as_fd(), &mut self.buf[self.end..]) {
                Ok((0, _)) => return Err(ReadEnd::Closed),
                Ok((n, fds)) => {
                    self.end += n;
                    self.fds.extend(fds);
                    self.fds.truncate(4);
                    continue;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {}
                Err(Errno::ECONNRESET) => return Err(ReadEnd::Closed),
                Err(e) => return Err(ReadEnd::Os(Error::os("read", e))),
            }
            let now = Instant::now();
            let until = *spin_until.get_or_insert(now + spin);
            if now < until {
                rounds += 1;
                if rounds % 16 == 0 {
                    // Let another runnable thread have the CPU now and then
                    // (more threads than cores is normal for a server).
                    std::thread::yield_now();
                } else {
                    for _ in 0..32 {
                        std::hint::spin_loop();
                    }
                }
                continue;
            }
            loop {
                if stop() {
                    return Err(ReadEnd::Stopped);
                }
                match readable(self.fd.as_fd(), slice) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => return Err(ReadEnd::Os(e)),
                }
            }
        }
    }

    /// The bytes of a frame `recv` returned (valid until the next `recv`).
    pub(crate) fn bytes(&self, r: std::ops::Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    /// Whether the peer has closed its end or sent something (which, while
    /// a call is in progress, it must not): the caller is gone.
    pub(crate) fn peer_gone_or_talking(&self) -> bool {
        readable(self.fd.as_fd(), Some(Duration::ZERO)).unwrap_or(true)
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether `fd` is readable (or closed) within `timeout` (`None`: wait).
fn readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let ms = match timeout {
        None => PollTimeout::NONE,
        Some(t) => {
            PollTimeout::try_from(t.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX)
        }
    };
    let mut p = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(&mut p, ms) {
        Ok(n) => Ok(n > 0),
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(Error::os("poll", e)),
    }
}

fn wait_writable(fds: &[BorrowedFd<'_>]) -> Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut p = [PollFd::new(fds[0], PollFlags::POLLOUT)];
    match poll(&mut p, PollTimeout::NONE) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(Error::os("poll", e)),
    }
}
