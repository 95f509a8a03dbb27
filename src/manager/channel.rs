//! One authenticated stream socket carrying frames, read through a buffer.
//!
//! The buffer starts at 64 KiB and grows (doubling) only as a frame's bytes
//! arrive, whatever length its header announced, and shrinks back once a
//! large frame is consumed; a frame that stops coming for [`FRAME_IDLE`]
//! midway ends the connection. A peer can thus hold only what it sent, and
//! not for long unless it keeps sending.
//!
//! Reading spins briefly before it sleeps: a reply (or the next request)
//! that comes within [`SPIN`] is picked up without the 20-25 us it costs
//! to wake a sleeping process on this machine class, and an idle reader
//! spins that long once, then sleeps in `poll`. When no CPU is to spare
//! (see [`wait`](crate::sync::wait)), a reader with nothing buffered
//! polls first and reads once the socket is readable.

use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::connection::frame;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::sync::wait::Site;

/// How long a reader polls for data without sleeping: a little more than
/// the 20-25 us a wakeup costs, so that a reply (or the next request) that
/// comes back to back is caught without one.
pub(crate) const SPIN: Duration = Duration::from_micros(60);
/// How a reader spins (see [`wait`](crate::sync::wait)), at most for the caller's `spin`.
static SPIN_SITE: Site = Site::new(SPIN);

/// How long a frame may stop midway (no byte arriving) before the read
/// gives up with [`Error::Timeout`] (and the connection is dropped).
pub(crate) const FRAME_IDLE: Duration = Duration::from_secs(5);

/// A buffer larger than this is given back once it is empty.
const KEEP: usize = 1 << 20;

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
        crate::sys::fd::set_nonblocking(fd.as_fd(), true)?;
        Ok(Channel {
            fd,
            buf: vec![0; frame::FIRST_READ],
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
            match crate::sys::socket::send_with_fd(self.fd.as_fd(), frame, fd) {
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
            match crate::sys::socket::send_vectored(self.fd.as_fd(), &iov) {
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
    /// whether to give up. A frame begun but not continued for
    /// [`FRAME_IDLE`] is `ReadEnd::Bad(Error::Timeout)`.
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
            if self.buf.len() > KEEP {
                // A large frame went by: give its memory back.
                self.buf = vec![0; frame::FIRST_READ];
            }
        }
        // When this wait would not spin (a busy machine), it sleeps in
        // poll before it reads, which returns at once if bytes are there:
        // one system call less per frame than a read that finds nothing
        // first.
        let mut read_first = self.start < self.end || SPIN_SITE.would_spin(spin);
        let mut spun = !read_first;
        // Whether this call has read the socket: a `stop` that ends the
        // wait before any sleep (an async caller's) must not end it unread.
        let mut tried = false;
        let mut progress = Instant::now();
        loop {
            match frame::locate(&self.buf[self.start..self.end], self.max) {
                Ok(Some((header, len))) => {
                    self.last = header + len;
                    return Ok(self.start + header..self.start + header + len);
                }
                Ok(None) => {}
                Err(e) => return Err(ReadEnd::Bad(e)),
            }
            // Make room: move the partial frame to the front; grow, as the
            // bytes come, a buffer that a frame fills.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                // Full, so the header is whole (the buffer is longer than
                // any header) and its frame longer than the buffer.
                let need = match frame::decode_header(&self.buf) {
                    Ok(Some((header, len))) => header as u64 + len,
                    _ => return Err(ReadEnd::Bad(Error::Codec("bad frame header".into()))),
                };
                let to = frame::grow(self.buf.len(), need).max(self.buf.len() + 1);
                self.buf.resize(to, 0);
            }
            let got = if read_first {
                tried = true;
                crate::sys::socket::recv_with_fds(self.fd.as_fd(), &mut self.buf[self.end..])
            } else {
                read_first = true;
                Err(Errno::EAGAIN)
            };
            match got {
                Ok((0, _)) => return Err(ReadEnd::Closed),
                Ok((n, fds)) => {
                    self.end += n;
                    self.fds.extend(fds);
                    self.fds.truncate(4);
                    progress = Instant::now();
                    continue;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {}
                Err(Errno::ECONNRESET) => return Err(ReadEnd::Closed),
                Err(e) => return Err(ReadEnd::Os(Error::os("read", e))),
            }
            if !spun {
                // Once per wait: poll the socket (without sleeping) while a
                // CPU is to spare (see `sync::wait`), at most `spin`.
                spun = true;
                let fd = self.fd.as_fd();
                let data = SPIN_SITE.spin_within(spin, true, Deadline::NEVER, || {
                    readable(fd, Some(Duration::ZERO)).map_or(Some(()), |r| r.then_some(()))
                });
                if data.is_some() {
                    continue;
                }
            }
            // A frame begun must keep coming.
            let stalled_at = (self.end > 0).then(|| progress + FRAME_IDLE);
            loop {
                if stop() {
                    if !tried {
                        // Read before giving up (the outer loop reads now).
                        break;
                    }
                    return Err(ReadEnd::Stopped);
                }
                let mut wait = slice;
                if let Some(at) = stalled_at {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ReadEnd::Bad(Error::Timeout));
                    }
                    wait = Some(wait.map_or(left, |w| w.min(left)));
                }
                match readable(self.fd.as_fd(), wait) {
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
    use crate::sys::fd::{Interest, poll};
    match poll(&[(fd, Interest::Read)], timeout) {
        Ok(ready) => Ok(ready[0]),
        Err(Errno::EINTR) => Ok(false),
        Err(e) => Err(Error::os("poll", e)),
    }
}

fn wait_writable(fds: &[BorrowedFd<'_>]) -> Result<()> {
    use crate::sys::fd::{Interest, poll};
    match poll(&[(fds[0], Interest::Write)], None) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(Error::os("poll", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn pair() -> (Channel, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Channel::new(a.into(), 1 << 20).unwrap(), b)
    }

    #[test]
    fn a_stalled_frame_times_out_holding_only_what_came() {
        let (mut ch, mut peer) = pair();
        // 63 MiB announced, one byte sent, then nothing (the peer stays).
        peer.write_all(&[0x03, 0xf0, 0, 0, b'x']).unwrap();
        ch.max = 64 << 20;
        let t = Instant::now();
        let r = ch.recv(Duration::ZERO, None, &|| false);
        assert!(matches!(r, Err(ReadEnd::Bad(Error::Timeout))));
        let took = t.elapsed();
        assert!(took >= FRAME_IDLE && took < FRAME_IDLE * 2, "{took:?}");
        assert_eq!(ch.buf.len(), frame::FIRST_READ);
    }

    // A bounded fuzz of the reader: frames of any size up to 300 KiB, with
    // short or long headers, written in chunks of any size, come out whole
    // and in order; the buffer never holds much more than the largest frame.
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn frames_in_any_chunks_come_out_whole(
            sizes in proptest::collection::vec((0usize..300_000, any::<bool>()), 1..4),
            chunk in 1usize..100_000,
        ) {
            let (mut ch, mut peer) = pair();
            let mut stream = Vec::new();
            let mut bodies = Vec::new();
            for (i, (n, long)) in sizes.iter().enumerate() {
                let body: Vec<u8> = (0..*n).map(|k| (k * 31 + i) as u8).collect();
                if *long {
                    stream.extend_from_slice(&(-1i32).to_be_bytes());
                    stream.extend_from_slice(&(*n as u64).to_be_bytes());
                } else {
                    stream.extend_from_slice(&(*n as i32).to_be_bytes());
                }
                stream.extend_from_slice(&body);
                bodies.push(body);
            }
            let writer = std::thread::spawn(move || {
                for c in stream.chunks(chunk) {
                    peer.write_all(c).unwrap();
                }
            });
            let mut largest = frame::FIRST_READ;
            for body in &bodies {
                let r = ch.recv(Duration::ZERO, None, &|| false).ok().unwrap();
                prop_assert_eq!(ch.bytes(r), &body[..]);
                largest = largest.max(body.len() + 12);
                prop_assert!(ch.buf.len() <= 2 * largest);
            }
            writer.join().unwrap();
            prop_assert!(matches!(ch.recv(Duration::ZERO, None, &|| false), Err(ReadEnd::Closed)));
        }
    }
}
