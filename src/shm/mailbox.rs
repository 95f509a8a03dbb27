//! A request/reply mailbox in shared memory for two processes on one host:
//! one request slot and one reply slot, each with a sequence word that is
//! also a futex. The manager uses it for calls between a client and the
//! server thread that serves its connection, so that a call costs no system
//! call at all while both sides are awake (each spins briefly before it
//! sleeps on the futex).
//!
//! The other process is not trusted: lengths it writes are checked, and
//! message bytes are copied in and out with atomic operations
//! ([`shm::copy`](crate::shm::copy)) before they are read, so whatever it does
//! to the memory yields at worst a message that fails to decode, never a
//! data race.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::shm::copy;
use crate::sync::wait::{self, Site};
use crate::sys::futex;
use crate::sys::thread;

/// How a waiter spins before it sleeps (see [`wait`]), at most for the
/// caller's `spin`.
static SPIN: Site = Site::new(Duration::from_secs(1));
use crate::sys::mem::SharedMapping;

/// The largest message a slot holds; longer ones go over the socket.
pub(crate) const SLOT: usize = 60 * 1024;
/// The length word's value for "this message travels on the socket".
pub(crate) const ON_SOCKET: u32 = u32::MAX;
const HEADER: usize = 256;

/// One direction: a sequence number, a length, whether the reader sleeps,
/// and the CPU the writer last posted from.
#[repr(C)]
struct Side {
    seq: AtomicU32,
    len: AtomicU32,
    sleeping: AtomicU32,
    cpu: AtomicU32,
    _pad: [u32; 28],
}

#[repr(C)]
struct Header {
    request: Side,
    reply: Side,
}

const _: () = assert!(std::mem::size_of::<Header>() <= HEADER);

/// Which slot an operation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Client to server.
    Request,
    /// Server to client.
    Reply,
}

/// How a wait for a message ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// A message of this length is in the slot (or [`ON_SOCKET`]).
    Message(u32),
    /// `stop` asked to give up.
    Stopped,
}

/// A mapped mailbox.
pub(crate) struct Mailbox {
    map: SharedMapping,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").finish_non_exhaustive()
    }
}

impl Mailbox {
    /// A new mailbox (zeroed: both sequences at 0).
    pub(crate) fn new() -> Result<Mailbox> {
        let map = SharedMapping::new_sealed(c"multiproc-manager-mailbox", HEADER + 2 * SLOT)?;
        Ok(Mailbox { map })
    }

    /// Maps the mailbox another process made (its memfd, which must be
    /// sealed against shrinking: a truncated mapping would fault).
    pub(crate) fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Mailbox> {
        let map = SharedMapping::from_sealed_fd(fd, HEADER + 2 * SLOT)?;
        Ok(Mailbox { map })
    }

    /// The memfd, to hand to the other process.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.map.fd()
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER bytes (checked when made
        // or adopted), page aligned, and lives as long as `self`; Header is
        // atomics only, valid for any bits, and shared access through
        // atomics is what it is for.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    fn side(&self, slot: Slot) -> &Side {
        match slot {
            Slot::Request => &self.header().request,
            Slot::Reply => &self.header().reply,
        }
    }

    fn data(&self, slot: Slot) -> *mut u8 {
        let off = match slot {
            Slot::Request => HEADER,
            Slot::Reply => HEADER + SLOT,
        };
        // SAFETY: HEADER + 2 * SLOT bytes are mapped (checked when made or
        // adopted), so both slots lie inside the mapping.
        unsafe { self.map.as_ptr().add(off) }
    }

    /// Writes `msg` (at most [`SLOT`] bytes; `None`: "on the socket") into
    /// `slot`, publishes it as message `seq`, and wakes the reader if it
    /// sleeps. The caller owns the slot: the other side reads it only after
    /// this and writes the other slot only.
    pub(crate) fn post(&self, slot: Slot, seq: u32, msg: Option<&[u8]>) {
        let side = self.side(slot);
        let len = match msg {
            Some(m) => {
                let n = m.len().min(SLOT);
                // SAFETY: the slot has SLOT bytes and `n <= SLOT`; `m` is
                // local memory, so the ranges do not overlap. The reader
                // copies the slot only after seeing `seq` (Release below);
                // every access to slot bytes in this process is atomic
                // (these copies), so another process that writes them anyway
                // garbles the message without a data race here.
                unsafe { copy::store(&m[..n], self.data(slot)) };
                n as u32
            }
            None => ON_SOCKET,
        };
        side.len.store(len, Ordering::Relaxed);
        side.cpu.store(thread::current_cpu(), Ordering::Relaxed);
        side.seq.store(seq, Ordering::SeqCst);
        if side.sleeping.load(Ordering::SeqCst) != 0 {
            futex::wake(&side.seq, 1);
        }
    }

    /// Waits until `slot`'s sequence is `seq`: spins for at most `spin`
    /// (see [`wait`]: not at all when no CPU is to spare), then
    /// sleeps on the futex in `slice`s, asking `stop` before the first and
    /// after each.
    pub(crate) fn wait(
        &self,
        slot: Slot,
        seq: u32,
        spin: Duration,
        slice: Duration,
        stop: &mut dyn FnMut() -> bool,
    ) -> Arrival {
        let side = self.side(slot);
        let arrived = |s: &Side| {
            (s.seq.load(Ordering::Acquire) == seq).then(|| s.len.load(Ordering::Relaxed))
        };
        if let Some(n) = arrived(side) {
            return Arrival::Message(n);
        }
        // A writer that last ran on this CPU needs it to answer: spinning
        // here would only delay it. One on another CPU answers sooner if we
        // spin (when a CPU is to spare, see `wait`).
        let elsewhere = side.cpu.load(Ordering::Relaxed) != thread::current_cpu();
        if let Some(n) = SPIN.spin_within(spin, elsewhere, Deadline::NEVER, || arrived(side)) {
            return Arrival::Message(n);
        }
        let mut asked = false;
        loop {
            let cur = side.seq.load(Ordering::SeqCst);
            if cur == seq {
                return Arrival::Message(side.len.load(Ordering::Relaxed));
            }
            if !asked {
                // Ask once before the first sleep too: a peer that is gone
                // already (a server that exited) is seen now, not a whole
                // slice later.
                asked = true;
                if stop() {
                    return arrived(side).map_or(Arrival::Stopped, Arrival::Message);
                }
            }
            side.sleeping.store(1, Ordering::SeqCst);
            if side.seq.load(Ordering::SeqCst) == cur {
                wait::sleep(&side.seq, cur, Deadline::NEVER, slice);
            }
            side.sleeping.store(0, Ordering::SeqCst);
            if let Some(n) = arrived(side) {
                return Arrival::Message(n);
            }
            if stop() {
                // What `stop` saw (a socket with data, say) may have come
                // after a message that is here now.
                return arrived(side).map_or(Arrival::Stopped, Arrival::Message);
            }
        }
    }

    /// Copies the message of length `len` out of `slot` into `out`
    /// (replacing its contents); an error for a length over [`SLOT`].
    pub(crate) fn take(&self, slot: Slot, len: u32, out: &mut Vec<u8>) -> Result<()> {
        let n = len as usize;
        if n > SLOT {
            return Err(Error::Codec(format!(
                "mailbox message length {n} over {SLOT}"
            )));
        }
        out.clear();
        out.resize(n, 0);
        // SAFETY: the slot has SLOT >= n bytes; `out` holds n bytes in its
        // own memory, so the ranges do not overlap; the bytes are plain u8,
        // valid whatever the other process wrote, and read atomically (as
        // every access to slot bytes in this process), so its concurrent
        // writes are no data race.
        unsafe { copy::load(self.data(slot), out) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(fd: std::os::fd::BorrowedFd<'_>) -> std::os::fd::OwnedFd {
        fd.try_clone_to_owned().unwrap()
    }

    #[test]
    fn only_sealed_mailboxes_are_adopted() {
        let plain = SharedMapping::new(c"plain", HEADER + 2 * SLOT, false).unwrap();
        assert!(Mailbox::from_fd(dup(plain.fd())).is_err());
        let small = SharedMapping::new_sealed(c"small", 4096).unwrap();
        assert!(Mailbox::from_fd(dup(small.fd())).is_err());
        let m = Mailbox::new().unwrap();
        assert!(Mailbox::from_fd(dup(m.fd())).is_ok());
        // The size cannot change under the adopter's feet.
        assert!(crate::sys::fd::set_len(m.fd(), 0).is_err());
    }

    #[test]
    fn ping_pong_between_two_mappings() {
        let a = Mailbox::new().unwrap();
        let b = Mailbox::from_fd(dup(a.fd())).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut buf = Vec::new();
                for seq in 1..=1000u32 {
                    let Arrival::Message(n) = b.wait(
                        Slot::Request,
                        seq,
                        Duration::from_micros(50),
                        Duration::from_millis(10),
                        &mut || false,
                    ) else {
                        panic!("stopped")
                    };
                    b.take(Slot::Request, n, &mut buf).unwrap();
                    buf.push(b'!');
                    b.post(Slot::Reply, seq, Some(&buf));
                }
            });
            let mut buf = Vec::new();
            for seq in 1..=1000u32 {
                let msg = seq.to_le_bytes();
                a.post(Slot::Request, seq, Some(&msg));
                let Arrival::Message(n) = a.wait(
                    Slot::Reply,
                    seq,
                    Duration::from_micros(50),
                    Duration::from_millis(10),
                    &mut || false,
                ) else {
                    panic!("stopped")
                };
                a.take(Slot::Reply, n, &mut buf).unwrap();
                assert_eq!(&buf[..4], &msg);
                assert_eq!(buf[4], b'!');
            }
        });
        // A length over the slot is refused, not read.
        let mut buf = Vec::new();
        assert!(a.take(Slot::Reply, SLOT as u32 + 1, &mut buf).is_err());
        a.post(Slot::Reply, 5000, None);
        assert_eq!(
            a.wait(
                Slot::Reply,
                5000,
                Duration::ZERO,
                Duration::from_millis(1),
                &mut || true
            ),
            Arrival::Message(ON_SOCKET)
        );
        assert_eq!(
            a.wait(
                Slot::Reply,
                5001,
                Duration::ZERO,
                Duration::from_millis(1),
                &mut || true
            ),
            Arrival::Stopped
        );
    }
}
