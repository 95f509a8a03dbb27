//! The shared-memory data path of the connections made by [`pipe`](super::pipe): one
//! byte ring per direction (the crate's [byte ring](crate::ring): its
//! arithmetic, copies and wake-up handshakes), with the pair's socket kept
//! as a doorbell and as the witness of the peer's life.
//!
//! # The stream
//!
//! Each direction is a byte stream exactly like the socket's: the same
//! CPython framing (length header, then the bytes) goes through it, so the
//! message logic above (boundaries, oversized messages skipped, truncation)
//! is the same for both paths. `tail` counts the bytes ever written, `head`
//! the bytes ever read; byte `x` lives at `x % CAP`. A writer copies into
//! the free space and publishes with one `Release` store of `tail` (at most
//! [`PUBLISH`] bytes at a time, so that the reader copies out while the
//! writer copies in); a reader copies out and frees with one store of
//! `head`. Writers of one end hold that direction's `send` lock for a whole
//! message, readers the `recv` lock, so messages never interleave even when
//! several processes share an end.
//!
//! # Sleeping and the doorbells
//!
//! A reader that finds nothing spins for a while ([`READ_SPIN`]: only
//! while a CPU is to spare, see [`wait`]), then sleeps in two stages:
//!
//! 1. **A futex nap** of at most [`NAP`]: it sets `rx_sleep` and sleeps on
//!    the sequence word `data`. A writer that published bytes and finds
//!    the flag takes it back, bumps `data` and wakes it ([`bell::ring`]).
//!    That is one system call for the writer and one for the reader per
//!    message that finds the reader asleep, as a socket's write and
//!    blocking read; the old socket doorbell cost up to four (a send, a
//!    `poll`, and a peek and a read to drain the bell byte).
//! 2. **The socket**, for longer waits (and for waits from outside a
//!    receive: [`arm`](Stream::arm) for [`process::wait`](crate::process::wait)
//!    and the async receive): the waiter drains old bell bytes, sets
//!    `rx_armed` and sleeps in `poll` on its socket; a writer that finds
//!    that flag writes one byte (a bell) to its own socket end, which makes
//!    the waiter's descriptor readable. A sleeper wakes at least every
//!    [`SLICE`] to look again, so a bell taken by another reader of the
//!    same end costs at most that.
//!
//! Both flags follow the flag handshake of [`bell`] (a store, a fence and
//! a load on both sides, so that either the reader sees the bytes or the
//! writer sees the flag; the loom model covers one publication ringing
//! both kinds of sleepers), and only writers, under the send lock, take
//! them back. A reader that set `rx_sleep` and then found bytes leaves it
//! set: the next publication makes one needless wake.
//!
//! A writer that finds the ring full sleeps on the futex word `room` (the
//! reader rings it, [`bell::ring`], when it frees bytes and `tx_waiting`
//! counts a sleeper: the count handshake of [`bell`]),
//! checking every [`SLICE`] that the peer is still there.
//!
//! # End of stream and dead peers
//!
//! The kernel still tells when every copy of the peer end is closed (or the
//! process that had it died): the socket reads as end of file and polls as
//! hung up. A reader reports end of stream only when the socket says so
//! *and* the ring is empty, so bytes written before the close are read
//! first; a message cut short reads as truncated, as on a socket.
//!
//! The futex nap must not sleep through the peer's end. A dropped end
//! (its descriptor closed first) bumps the channel's `hangups` count and
//! then rings `data` and `room` of the other side unconditionally; a
//! sleeper about to sleep asks the kernel (a `poll`) only when `hangups`
//! moved since it last found its peer alive (the loom model "a close is
//! never slept through"). A peer that died, or exited with its end still
//! open, bumps nothing: its reader learns it when its nap ends, within
//! [`NAP`], and its writers at their next wait for room.
//!
//! A writer must fail with `EPIPE` once every reader copy is closed, as a
//! socket write would, without a system call per message while the reader
//! is there. Before a message it asks the kernel unless the reader proves
//! itself: `rx_busy` set (a reader holds the `recv` lock, so an end is
//! open), or a sleeping reader's flag set (the publication's wake counts
//! the woken sleepers; none woken, and the writer asks the kernel; a
//! socket bell's send fails by itself). Once found closed, the direction
//! fails at once for good in this process (a socket never un-hangs). A
//! reader killed inside a receive but not asleep leaves `rx_busy` set, so
//! its writers learn of it only when the ring is full and a wait for room
//! ends its slice: at most a ring's worth of bytes is written into the
//! void, as into a dead peer's socket buffer, and nothing hangs.
//!
//! A process killed holding a direction's `send` lock in the middle of a
//! message leaves a partial message in the stream, exactly as a partial
//! socket write would: the next writer takes the (robust) lock over within
//! about 40 ms. Likewise a reader killed in the middle of a message leaves
//! the rest of it at the head of the stream, as on a socket shared by
//! several readers; with one reader per end (the usual case) neither
//! happens to anyone else.
//!
//! # Untrusted counters
//!
//! Any process that maps the channel can write its counters. Every copy
//! is bounded by the ring's size, known to this process, and both sides
//! check that the tail is at most a ring ahead of the head before they
//! use the distance ([`used`]). Counters that fail poison the direction: a
//! writer gets [`Error::Corrupt`], and a reader finds the stream ended (a
//! message cut short reads as truncated, as when a writer is killed); no
//! byte outside the ring is touched. The ring's bytes are only ever copied
//! with atomic operations ([`shm::copy`](crate::shm::copy)), never lent as
//! a slice, so a process that writes them behind the protocol's back
//! garbles the stream but makes no data race here.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::ring::bell::{self, Mark};
use crate::ring::{self, Bytes};
use crate::shm::heap::{self, Allocation};
use crate::sync::raw::{Acquired, RawProcessMutex};
use crate::sync::wait::{self, Site, Slept};

/// The bytes of one direction's ring: 256 KiB, small enough that what a
/// writer copied in is still in the CPU's cache when a reader time-sharing
/// that CPU copies it out. Beside busy processes (writer and reader on one
/// CPU by turns) 1 MiB messages moved at 0.83-0.88x of a socketpair with a
/// 1 MiB ring and 1.19-1.23x with this one; idle, both ran at 16-17 GB/s
/// (`multiproc bench [--hogs 2] --workload pipe_bw`, 2026-12-06).
pub(crate) const CAP: usize = 1 << 18;
/// The most bytes a writer copies before it publishes them (an eighth of
/// the ring, so the reader copies out while the writer copies in).
const PUBLISH: usize = CAP / 8;
/// How a reader (or a writer without room) spins before it sleeps (see
/// [`wait`]): waking a sleeping process costs tens of microseconds here.
static READ_SPIN: Site = Site::new(Duration::from_micros(50));
static ROOM_SPIN: Site = Site::new(Duration::from_micros(50));
/// The longest single sleep: then the sleeper looks again (and a writer
/// checks that its peer still exists).
pub(crate) const SLICE: Duration = Duration::from_millis(50);
/// How often a reader looks at the ring while a passed handle, not yet
/// received, keeps its socket readable.
const HANDLE_PENDING: Duration = Duration::from_millis(1);
/// The longest a reader sleeps on the futex word before it sleeps on the
/// socket instead (and so learns of a peer that died with its end open).
const NAP: Duration = Duration::from_millis(5);

/// One direction's shared state: writers' line, readers' line, bells.
#[derive(Debug)]
#[repr(C, align(64))]
struct Dir {
    send: RawProcessMutex,
    tail: AtomicU64,
    _p1: [u8; 48],
    recv: RawProcessMutex,
    head: AtomicU64,
    /// 1 while a reader holds `recv` (in a receive): a live reader, so a
    /// writer need not ask the kernel whether the peer end is closed. (A
    /// reader killed in a receive leaves it set: see the module docs.)
    rx_busy: AtomicU32,
    _p2: [u8; 44],
    /// Set by a waiter about to sleep on the socket (`poll`, `arm`).
    rx_armed: AtomicU32,
    /// Set by a reader about to sleep on the futex word `data`.
    rx_sleep: AtomicU32,
    /// Bumped (and woken) by a writer that published while `rx_sleep` was
    /// set, and by a closing end.
    data: AtomicU32,
    /// Bumped by a reader that freed room while a writer waits.
    room: AtomicU32,
    /// Writers asleep on `room`.
    tx_waiting: AtomicU32,
}

#[derive(Debug)]
#[repr(C)]
struct Shared {
    dirs: [Dir; 2],
    /// Bumped by every end dropped (after its descriptor is closed): a
    /// side about to sleep asks the kernel whether its peer is gone only
    /// when this moved since it last asked.
    hangups: AtomicU32,
}

// SAFETY: atomics, raw mutexes (single atomic words) and padding bytes: no
// pointers, no drop glue, all-zero is valid.
unsafe impl crate::ShmSafe for Shared {}

/// One mapping of its own (never a slot of the shared heap, which this
/// process could reuse while a child still uses the pair): direction 0's
/// ring, direction 1's, then the [`Shared`] header.
#[derive(Debug)]
struct Channel {
    /// Keeps the mapping alive for `rings`.
    map: Allocation,
    /// Direction 0's ring and direction 1's, checked against the mapping
    /// once.
    rings: [Bytes; 2],
    /// Per direction, process-local: this process found every reader end
    /// closed (the socket hung up, which is for good): its writers fail at
    /// once from then on.
    readers_gone: [AtomicBool; 2],
}

/// One end's view of a shared-memory channel: it sends on one direction
/// and receives on the other.
#[derive(Debug)]
pub(crate) struct Stream {
    ch: Arc<Channel>,
    tx: usize,
    /// [`Shared::hangups`] when this end last found its peer alive, plus
    /// [`SEEN`] (0: never looked).
    seen: AtomicU64,
}

/// Marks [`Stream::seen`] as set.
const SEEN: u64 = 1 << 32;

/// How many bytes lie between `head` and `tail` (read from shared memory),
/// or `None` if that is more than the ring holds: the counters are corrupt.
fn used(tail: u64, head: u64) -> Option<usize> {
    ring::used(tail, head, CAP)
}

/// The error of a writer that found its direction's counters corrupt.
fn corrupt() -> Error {
    Error::Corrupt("a pipe's ring counters are more than the ring apart")
}

/// A raw mutex held; released on drop.
pub(crate) struct Held<'a>(&'a RawProcessMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: a `Held` exists only after this thread acquired the
        // mutex, and is dropped once.
        unsafe { self.0.release() }
    }
}

fn lock(m: &RawProcessMutex) -> Held<'_> {
    match m.acquire(Deadline::NEVER) {
        // A dead owner left at most a partial message, as a dead socket
        // writer would: nothing to mend here.
        Acquired::Clean | Acquired::OwnerDied => {}
        // The word names this thread, yet no call of this module takes a
        // lock while it holds one: the id belonged to a thread that died
        // holding the lock and was handed to this thread since. That is a
        // dead owner's lock, already in our name: take it, as above.
        Acquired::WouldDeadlock => {}
        Acquired::Busy => unreachable!("a wait without deadline ends holding the lock"),
    }
    Held(m)
}

/// The receive lock held, with the reader marked busy; both undone on drop.
pub(crate) struct Reading<'a> {
    busy: &'a AtomicU32,
    _held: Held<'a>,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        // Before the lock is released (fields drop after this).
        self.busy.store(0, Ordering::Relaxed);
    }
}

impl Channel {
    fn new(map: Allocation, rings: [Bytes; 2]) -> Channel {
        Channel {
            map,
            rings,
            readers_gone: [AtomicBool::new(false), AtomicBool::new(false)],
        }
    }
}

impl Drop for Stream {
    /// Tells sleepers of the other end that an end was dropped: they look
    /// whether it was the last copy. (The connection closes its socket
    /// first: its descriptor is declared before its stream.)
    fn drop(&mut self) {
        let shared = self.shared();
        shared.hangups.fetch_add(1, Ordering::SeqCst);
        bell::ring(&self.txd().data);
        bell::ring(&self.rxd().room);
    }
}

/// Where [`read_with`](Stream::read_with) puts the bytes it consumes.
enum Sink<'a> {
    /// The start of this slice.
    Slice(&'a mut [u8]),
    /// The end of this vector, which grows.
    Append(&'a mut Vec<u8>),
    /// Nowhere: the bytes are dropped.
    Skip,
}

/// Whether the socket's peer is gone (every copy closed): it polls as hung
/// up.
fn peer_gone(sock: BorrowedFd<'_>) -> bool {
    crate::sys::fd::hung_up(&[sock])[0]
}

/// The byte a writer sends to wake a reader. (A handle passed with
/// [`Connection::send_handle`](crate::Connection::send_handle) travels
/// with a byte 1, as in CPython, and is never taken for a bell.)
const BELL: u8 = 0;

/// What is left on a socket once its bells are drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// Nothing: a poll on it sleeps until a bell or the end.
    Nothing,
    /// End of file: every copy of the peer end is closed.
    Eof,
    /// A passed handle not yet received: the socket stays readable.
    Handle,
}

/// Reads and drops the bell bytes waiting on `sock`, stopping before
/// anything else (a passed handle).
fn drain_bells(sock: BorrowedFd<'_>) -> Left {
    let mut buf = [0u8; 256];
    loop {
        let n = match crate::sys::socket::recv_nowait(sock, &mut buf, true) {
            Ok(0) => return Left::Eof,
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECONNRESET) => return Left::Eof,
            Err(_) => return Left::Nothing,
        };
        let bells = buf[..n].iter().take_while(|&&b| b == BELL).count();
        if bells == 0 {
            return Left::Handle;
        }
        // Only bell bytes, which carry no descriptors: a plain read of
        // exactly those takes nothing else.
        match crate::sys::socket::recv_nowait(sock, &mut buf[..bells], false) {
            Ok(0) => return Left::Eof,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::ECONNRESET) => return Left::Eof,
            Err(_) => return Left::Nothing,
        }
        if bells < n {
            return Left::Handle;
        }
        if n < buf.len() {
            // Everything there was is drained (one system call less than
            // looking again): a bell come since only makes the next poll
            // return at once, and an end of file shows the same way.
            return Left::Nothing;
        }
    }
}

/// Sleeps until `sock` is readable or hung up, at most `timeout`.
fn sleep_on(sock: BorrowedFd<'_>, timeout: Duration) {
    use crate::sys::fd::{Interest, poll};
    let _ = poll(&[(sock, Interest::Read)], Some(timeout));
}

/// Whether a wait for data ended with data or with the peer gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woke {
    Data,
    Eof,
    TimedOut,
}

impl Stream {
    /// A new channel: the two ends' views.
    pub(crate) fn pair() -> Result<(Stream, Stream)> {
        const { crate::shm::assert_no_drop::<Shared>() };
        // Pages come on first touch: creating a pipe stays cheap, and a
        // pipe carrying little uses little memory.
        let map = heap::alloc_lazy(2 * CAP + std::mem::size_of::<Shared>())?;
        // Zeroed bytes are a valid `Shared`: unlocked mutexes, zero
        // counters and bells.
        let ring = |d: usize| {
            Bytes::new(&map, d * CAP, CAP)
                .ok_or(Error::Corrupt("a pipe's mapping is smaller than its rings"))
        };
        let rings = [ring(0)?, ring(1)?];
        let ch = Arc::new(Channel::new(map, rings));
        Ok((Stream::new(ch.clone(), 0), Stream::new(ch, 1)))
    }

    /// The end whose sending direction is `tx` (0 or 1) of a channel made
    /// by another process's [`pair`](Self::pair) and received as its memfd
    /// `fd`: its size must be sealed and hold both rings and the header
    /// (the bytes themselves are untrusted anyway: see the module docs).
    pub(crate) fn adopt(fd: std::os::fd::OwnedFd, tx: usize) -> Result<Stream> {
        if tx > 1 {
            return Err(Error::InvalidArgument("a pipe has two directions"));
        }
        let map = heap::adopt_block(fd, 2 * CAP + std::mem::size_of::<Shared>())?;
        let ring = |d: usize| {
            Bytes::new(&map, d * CAP, CAP)
                .ok_or(Error::Corrupt("a pipe's mapping is smaller than its rings"))
        };
        let rings = [ring(0)?, ring(1)?];
        Ok(Stream::new(Arc::new(Channel::new(map, rings)), tx))
    }

    /// The channel's memfd and this end's sending direction: what
    /// [`adopt`](Self::adopt) takes in another process.
    pub(crate) fn handover(&self) -> (BorrowedFd<'_>, usize) {
        (self.ch.map.location().0.mapping().fd(), self.tx)
    }

    fn new(ch: Arc<Channel>, tx: usize) -> Stream {
        Stream {
            ch,
            tx,
            seen: AtomicU64::new(0),
        }
    }

    fn shared(&self) -> &Shared {
        let at = self.ch.map.ptr().as_ptr().wrapping_add(2 * CAP);
        // SAFETY: the mapping holds a `Shared` at `2 * CAP` (page aligned,
        // so aligned for it), zeroed when made, which is a valid value
        // (atomics and padding); it lives as long as `self.ch`, and is only
        // ever reached through shared references and atomics.
        unsafe { &*at.cast::<Shared>() }
    }

    fn dir(&self, d: usize) -> &Dir {
        &self.shared().dirs[d]
    }

    /// Whether the peer end is gone, asking the kernel (a `poll`) only if
    /// an end of this channel was dropped since this end last found its
    /// peer alive (or it never looked): the hint for a side about to
    /// sleep. A peer that died or exited without dropping its end is not
    /// hinted: its sleeper finds out when its futex sleep ends ([`NAP`]).
    fn peer_gone_hinted(&self, sock: BorrowedFd<'_>) -> bool {
        let h = SEEN | self.shared().hangups.load(Ordering::SeqCst) as u64;
        if self.seen.load(Ordering::Relaxed) == h {
            return false;
        }
        let gone = peer_gone(sock);
        if !gone {
            self.seen.store(h, Ordering::Relaxed);
        }
        gone
    }

    /// A writer's verdict: the reader end is gone (`EPIPE`), remembered for
    /// good (a socket never un-hangs).
    fn readers_gone(&self) -> Error {
        self.ch.readers_gone[self.tx].store(true, Ordering::Relaxed);
        Error::os("send", Errno::EPIPE)
    }

    fn txd(&self) -> &Dir {
        self.dir(self.tx)
    }

    fn rxd(&self) -> &Dir {
        self.dir(1 - self.tx)
    }

    fn ring(&self, d: usize) -> &Bytes {
        &self.ch.rings[d]
    }

    /// Takes this end's send lock for one message.
    pub(crate) fn lock_send(&self) -> Held<'_> {
        lock(&self.txd().send)
    }

    /// Takes this end's receive lock for one message, marked busy (see
    /// [`Dir::rx_busy`]) until the guard drops.
    pub(crate) fn lock_recv(&self) -> Reading<'_> {
        let d = self.rxd();
        let held = lock(&d.recv);
        d.rx_busy.store(1, Ordering::Relaxed);
        Reading {
            busy: &d.rx_busy,
            _held: held,
        }
    }

    /// Writes `parts` into the stream (the caller holds the send lock).
    /// `EPIPE` if the peer is gone before or while waiting for room.
    pub(crate) fn write(&self, sock: BorrowedFd<'_>, parts: &[&[u8]]) -> Result<()> {
        let d = self.txd();
        if self.ch.readers_gone[self.tx].load(Ordering::Relaxed) {
            return Err(Error::os("send", Errno::EPIPE));
        }
        // Is the reader end still open? A reader in a receive proves it
        // without a system call; so does a reader asleep that this
        // message's publication wakes (the wake counts it, see `publish`).
        // Otherwise: a poll.
        let busy = d.rx_busy.load(Ordering::Relaxed) != 0;
        let flagged =
            d.rx_armed.load(Ordering::Relaxed) != 0 || d.rx_sleep.load(Ordering::Relaxed) != 0;
        if !busy && !flagged && peer_gone(sock) {
            return Err(self.readers_gone());
        }
        // Flagged only: the first publication checks (only writers, which
        // hold the send lock as this one does, take the flags back).
        let mut checked = busy || !flagged;
        let ring = self.ring(self.tx);
        let mut tail = d.tail.load(Ordering::Relaxed);
        let mut head = d.head.load(Ordering::Acquire);
        let mut unpublished = 0usize;
        for part in parts {
            let mut off = 0;
            while off < part.len() {
                let mut free = ring::free(tail, head, CAP).ok_or_else(corrupt)?;
                if free == 0 {
                    head = d.head.load(Ordering::Acquire);
                    free = ring::free(tail, head, CAP).ok_or_else(corrupt)?;
                }
                if free == 0 || unpublished >= PUBLISH {
                    if unpublished > 0 {
                        self.publish(sock, tail)?;
                        checked = true;
                        unpublished = 0;
                    }
                    if free == 0 {
                        head = self.wait_room(sock, tail)?;
                    }
                    continue;
                }
                let n = (part.len() - off).min(free).min(PUBLISH);
                let src = &part[off..off + n];
                // SAFETY: `[tail, tail + n)` is free space (`n <= free`) of
                // this direction's ring, which only the holder of the send
                // lock writes; the ring's mapping lives as long as
                // `self.ch`.
                unsafe { ring.store(tail, src) };
                off += n;
                tail += n as u64;
                unpublished += n;
            }
        }
        if unpublished > 0 {
            self.publish(sock, tail)?;
            checked = true;
        }
        if !checked && peer_gone(sock) {
            // Nothing was published (an empty write): look now.
            return Err(self.readers_gone());
        }
        Ok(())
    }

    /// Publishes the bytes up to `tail` and rings the bells of sleeping
    /// readers; `EPIPE` if that finds every copy of the peer end closed
    /// (the bytes are then lost, as a socket's would be).
    fn publish(&self, sock: BorrowedFd<'_>, tail: u64) -> Result<()> {
        let d = self.txd();
        d.tail.store(tail, Ordering::Release);
        let futex = bell::sleepers_after(&d.rx_sleep, Mark::Flag);
        // (The second fence orders nothing new; it keeps the flag
        // handshake whole for this word too.)
        let socket = bell::sleepers_after(&d.rx_armed, Mark::Flag);
        // A reader that set the flag and is asleep in the futex wait is
        // woken and counted; none woken means it did not reach the wait yet,
        // woke already, or died there: then ask the kernel.
        if futex && bell::ring(&d.data) == 0 && !socket && peer_gone(sock) {
            return Err(self.readers_gone());
        }
        if socket {
            // (A full socket buffer already holds bells: harmless.) The send
            // fails if every copy of the peer end is closed.
            if let Err(Errno::EPIPE | Errno::ECONNRESET) =
                crate::sys::socket::send_nowait(sock, &[BELL])
            {
                return Err(self.readers_gone());
            }
        }
        Ok(())
    }

    /// Waits until the ring has room past `tail`; returns the new head.
    fn wait_room(&self, sock: BorrowedFd<'_>, tail: u64) -> Result<u64> {
        let d = self.txd();
        let full = |h: u64| used(tail, h).ok_or_else(corrupt).map(|u| u == CAP);
        // (A corrupt head ends the spin too: the error is reported below.)
        let spun = ROOM_SPIN.spin_until(Deadline::NEVER, || {
            let h = d.head.load(Ordering::Acquire);
            (!full(h).unwrap_or(false)).then_some(h)
        });
        if let Some(h) = spun {
            full(h)?;
            return Ok(h);
        }
        loop {
            let seq = d.room.load(Ordering::SeqCst);
            bell::register(&d.tx_waiting, Mark::Count);
            let h = d.head.load(Ordering::SeqCst);
            let timed_out = full(h).unwrap_or(false)
                && wait::sleep(&d.room, seq, Deadline::NEVER, SLICE) == Slept::Slice;
            bell::unregister(&d.tx_waiting);
            let h = d.head.load(Ordering::Acquire);
            if !full(h)? {
                return Ok(h);
            }
            // A slice without room, or an end dropped (which rings `room`).
            let gone = if timed_out {
                peer_gone(sock)
            } else {
                self.peer_gone_hinted(sock)
            };
            if gone {
                return Err(self.readers_gone());
            }
        }
    }

    /// Frees the bytes up to `head` and wakes a writer waiting for room.
    fn free(&self, head: u64) {
        let d = self.rxd();
        d.head.store(head, Ordering::Release);
        if bell::sleepers_after(&d.tx_waiting, Mark::Count) {
            bell::ring(&d.room);
        }
    }

    /// Bytes readable now; `None` if the counters are corrupt.
    fn available(&self) -> Option<usize> {
        let d = self.rxd();
        used(
            d.tail.load(Ordering::Acquire),
            d.head.load(Ordering::Relaxed),
        )
    }

    /// Bytes readable now (0 if the counters are corrupt).
    pub(crate) fn available_now(&self) -> usize {
        self.available().unwrap_or(0)
    }

    /// Whether a reader should stop waiting: bytes are there, or the
    /// counters are corrupt (the stream reads as ended then).
    fn ready(&self) -> bool {
        self.available() != Some(0)
    }

    /// Waits for bytes (or the peer's end) until `deadline`: a spin, then
    /// a futex sleep of at most [`NAP`], then sleeps on the socket.
    fn wait_data(&self, sock: BorrowedFd<'_>, deadline: Deadline) -> Woke {
        let d = self.rxd();
        if READ_SPIN
            .spin_until(deadline, || self.ready().then_some(()))
            .is_some()
        {
            return Woke::Data;
        }
        // The futex sleep: the writer's wake is one system call, this
        // sleep another, as a socket's write and blocking read. Only a
        // dropped end is hinted here; a peer that died or exited with its
        // end open shows when the nap ends and the socket is looked at.
        let nap = Deadline::after(NAP);
        loop {
            if deadline.expired() {
                // (A zero-timeout poll: no flag that would cost the next
                // publication a needless wake.)
                break;
            }
            let seq = d.data.load(Ordering::SeqCst);
            bell::register(&d.rx_sleep, Mark::Flag);
            if self.ready() {
                return Woke::Data;
            }
            if self.peer_gone_hinted(sock) {
                return if self.ready() { Woke::Data } else { Woke::Eof };
            }
            let until = deadline.min(nap);
            match wait::sleep(&d.data, seq, until, NAP) {
                Slept::Woken => {}
                Slept::Slice | Slept::Expired => break,
            }
            if self.ready() {
                return Woke::Data;
            }
        }
        loop {
            let left = drain_bells(sock);
            bell::register(&d.rx_armed, Mark::Flag);
            if self.ready() {
                return Woke::Data;
            }
            if left == Left::Eof {
                return Woke::Eof;
            }
            if deadline.expired() {
                return Woke::TimedOut;
            }
            if left == Left::Handle {
                // The socket stays readable until the handle is received:
                // look again now and then instead of polling it.
                std::thread::sleep(deadline.slice(HANDLE_PENDING));
            } else {
                sleep_on(sock, deadline.slice(SLICE));
            }
            if self.ready() {
                return Woke::Data;
            }
        }
    }

    /// Moves readable bytes, at most `max` (waiting for some), into `sink`
    /// (at most its room, for a slice) and consumes them; returns how many,
    /// 0 at end of stream. The bytes are copied out with atomic loads, never
    /// lent as a slice over the ring: another process can write them at
    /// any time.
    fn read_with(&self, sock: BorrowedFd<'_>, max: usize, sink: Sink<'_>) -> usize {
        let max = match &sink {
            Sink::Slice(dst) => max.min(dst.len()),
            Sink::Append(_) | Sink::Skip => max,
        };
        if max == 0 {
            return 0;
        }
        if !self.ready() && self.wait_data(sock, Deadline::NEVER) != Woke::Data {
            return 0;
        }
        let d = self.rxd();
        let head = d.head.load(Ordering::Relaxed);
        // Corrupt counters end the stream here (see the module docs).
        let Some(avail) = used(d.tail.load(Ordering::Acquire), head) else {
            return 0;
        };
        if avail == 0 {
            return 0;
        }
        let n = avail.min(max);
        let ring = self.ring(1 - self.tx);
        // SAFETY (both copies): `[head, head + n)` holds published bytes
        // of the receiving direction's ring (before a tail loaded with
        // Acquire), which no writer touches until `head` passes them; the
        // receive lock is held, so no other reader frees them meanwhile.
        // The ring's mapping lives as long as `self.ch`.
        match sink {
            Sink::Slice(dst) => {
                // SAFETY: see above (`n <= dst.len()`: `max` was cut to it).
                unsafe { ring.load(head, &mut dst[..n]) }
            }
            Sink::Append(buf) => {
                // SAFETY: see above.
                unsafe { ring.append(head, n, buf) }
            }
            Sink::Skip => {}
        }
        self.free(head + n as u64);
        n
    }

    /// Fills `buf` unless the stream ends first; returns how much it read
    /// (the caller holds the receive lock).
    pub(crate) fn read_exact_or_eof(&self, sock: BorrowedFd<'_>, buf: &mut [u8]) -> usize {
        let mut got = 0;
        while got < buf.len() {
            let want = buf.len() - got;
            let n = self.read_with(sock, want, Sink::Slice(&mut buf[got..]));
            if n == 0 {
                break;
            }
            got += n;
        }
        got
    }

    /// Appends the next `n` bytes of the stream to `buf` (reserved by the
    /// caller) unless it ends first; returns how many it appended.
    pub(crate) fn read_append(&self, sock: BorrowedFd<'_>, buf: &mut Vec<u8>, n: usize) -> usize {
        let mut got = 0;
        while got < n {
            let k = self.read_with(sock, n - got, Sink::Append(buf));
            if k == 0 {
                break;
            }
            got += k;
        }
        got
    }

    /// Drops the next `n` bytes, waiting at most `idle` for each piece;
    /// true if it gave up because none came for that long (an end of
    /// stream first is not a give-up: the next read reports it).
    pub(crate) fn skip_idle(&self, sock: BorrowedFd<'_>, n: u64, idle: Duration) -> bool {
        let mut got = 0u64;
        while got < n {
            // `None`: corrupt counters, which end the stream (read below).
            if self.available() == Some(0) {
                match self.wait_data(sock, Deadline::after(idle)) {
                    Woke::Data => {}
                    Woke::Eof => return false,
                    Woke::TimedOut => return true,
                }
            }
            let want = (n - got).min(usize::MAX as u64) as usize;
            let k = self.read_with(sock, want, Sink::Skip);
            if k == 0 {
                // The stream ended (the peer is gone, or the counters are
                // corrupt).
                return false;
            }
            got += k as u64;
        }
        false
    }

    /// Whether bytes (or the end of stream) can be read, waiting at most
    /// `timeout`. Consumes nothing but bell bytes.
    pub(crate) fn poll(&self, sock: BorrowedFd<'_>, timeout: Option<Duration>) -> bool {
        let deadline = match timeout {
            None => Deadline::NEVER,
            Some(t) => Deadline::after(t),
        };
        self.wait_data(sock, deadline) != Woke::TimedOut
    }

    /// aio hook (issue 17; moves with the ring): whether bytes are readable
    /// now (or the counters are corrupt), looked up without a system call.
    #[cfg(feature = "tokio")]
    pub(crate) fn ready_now(&self) -> bool {
        self.ready()
    }

    /// aio hook (issue 17; moves with the ring): the free bytes of the
    /// sending direction (`None`: corrupt counters), and the futex word a
    /// writer waits on for room with the count of such writers.
    #[cfg(feature = "tokio")]
    pub(crate) fn room_async(&self) -> (Option<usize>, &AtomicU32, &AtomicU32) {
        let d = self.txd();
        let free = used(
            d.tail.load(Ordering::Relaxed),
            d.head.load(Ordering::Acquire),
        )
        .map(|u| CAP - u);
        (free, &d.room, &d.tx_waiting)
    }

    /// Before a wait on the socket: arms the bell so that data to come
    /// makes the socket readable; true if bytes are readable already.
    pub(crate) fn arm(&self, sock: BorrowedFd<'_>) -> bool {
        let d = self.rxd();
        let left = drain_bells(sock);
        bell::register(&d.rx_armed, Mark::Flag);
        left == Left::Eof || self.ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::socket::socketpair;
    use std::os::fd::AsFd;

    #[test]
    fn odd_sized_writes_and_reads_cross_the_wrap_point_intact() {
        let (a, b) = Stream::pair().unwrap();
        let (sa, sb) = socketpair().unwrap();
        // Over three rings' worth, in pieces of odd sizes (and a few longer
        // than a publish step), so copies start and end at every offset
        // and cross the ring's end.
        let size = |i: usize| match i % 40 {
            7 => PUBLISH + 5,
            _ => (i * 131 + i * i * 3) % 4099 + 1,
        };
        let byte = |k: usize| (k * 7 + k / 253) as u8;
        let mut total = 0;
        let mut sizes = Vec::new();
        while total < 3 * CAP + 4321 {
            sizes.push(size(sizes.len()));
            total += sizes[sizes.len() - 1];
        }
        let writer = {
            let sizes = sizes.clone();
            std::thread::spawn(move || {
                let mut k = 0;
                for n in sizes {
                    let piece: Vec<u8> = (k..k + n).map(byte).collect();
                    a.write(sa.as_fd(), &[&piece[..n / 3], &piece[n / 3..]])
                        .unwrap();
                    k += n;
                }
                a
            })
        };
        // Read back in other odd sizes, alternating both kinds of read.
        let mut got = Vec::with_capacity(total);
        let mut i = 0;
        while got.len() < total {
            let n = size(i + 11).min(total - got.len());
            if i % 2 == 0 {
                let mut buf = vec![0u8; n];
                assert_eq!(b.read_exact_or_eof(sb.as_fd(), &mut buf), n);
                got.extend_from_slice(&buf);
            } else {
                assert_eq!(b.read_append(sb.as_fd(), &mut got, n), n);
            }
            i += 1;
        }
        drop(writer.join().unwrap());
        assert!(
            got.iter().enumerate().all(|(k, &v)| v == byte(k)),
            "bytes damaged"
        );
    }

    #[test]
    fn corrupt_counters_fail_the_writer_and_end_the_reader() {
        let (a, b) = Stream::pair().unwrap();
        let (sa, sb) = socketpair().unwrap();
        a.write(sa.as_fd(), &[b"hello"]).unwrap();
        // Another process moves the head past the tail: before the check,
        // the writer's `CAP - (tail - head)` and the reader's `tail - head`
        // overflowed (a panic in debug builds, in release a writer
        // overwriting unread bytes and a reader taking stale ones).
        b.rxd().head.store(1000, Ordering::Release);
        assert!(matches!(
            a.write(sa.as_fd(), &[b"more"]),
            Err(Error::Corrupt(_))
        ));
        let mut buf = [0u8; 5];
        assert_eq!(b.read_exact_or_eof(sb.as_fd(), &mut buf), 0);
        assert!(b.poll(sb.as_fd(), Some(Duration::ZERO)));
        // A tail more than a ring ahead, the other way round.
        let (c, d) = Stream::pair().unwrap();
        c.txd().tail.store(CAP as u64 + 8, Ordering::Release);
        assert!(matches!(
            c.write(sa.as_fd(), &[b"x"]),
            Err(Error::Corrupt(_))
        ));
        assert!(!d.skip_idle(sb.as_fd(), 4, Duration::from_secs(5)));
    }
}
