//! A request/reply mailbox in shared memory for two processes on one host:
//! one request slot and one reply slot, each with a sequence word that is
//! also a futex. The manager uses it for calls between a client and the
//! server thread that serves its connection, so that a call costs no system
//! call at all while both sides are awake (each spins briefly before it
//! sleeps on the futex).
//!
//! The other process is not trusted: lengths it writes are checked, and
//! message bytes are copied out before they are read, so whatever it does
//! to the memory yields at worst a message that fails to decode.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys::futex;
use crate::sys::mem::SharedMapping;

/// The largest message a slot holds; longer ones go over the socket.
pub(crate) const SLOT: usize = 60 * 1024;
/// The length word's value for "this message travels on the socket".
pub(crate) const ON_SOCKET: u32 = u32::MAX;
const HEADER: usize = 256;

/// One direction: a sequence number, a length, whether the reader sleeps.
#[repr(C)]
struct Side {
    seq: AtomicU32,
    len: AtomicU32,
    sleeping: AtomicU32,
    _pad: [u32; 29],
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
        let map = SharedMapping::new(c"multiproc-manager-mailbox", HEADER + 2 * SLOT, false)?;
        Ok(Mailbox { map })
    }

    /// Maps the mailbox another process made (its memfd).
    pub(crate) fn from_fd(fd: std::os::fd::OwnedFd) -> Result<Mailbox> {
        let map = SharedMapping::from_fd(fd)?;
        if map.len() < HEADER + 2 * SLOT {
            return Err(Error::InvalidSize {
                size: map.len(),
                reason: "a mailbox mapping is too small",
            });
        }
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
                // copies the slot only after seeing `seq` (Release below).
                unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), self.data(slot), n) };
                n as u32
            }
            None => ON_SOCKET,
        };
        side.len.store(len, Ordering::Relaxed);
        side.seq.store(seq, Ordering::SeqCst);
        if side.sleeping.load(Ordering::SeqCst) != 0 {
            futex::wake(&side.seq, 1);
        }
    }

    /// Waits until `slot`'s sequence is `seq`: spins for `spin`, then
    /// sleeps on the futex in `slice`s, asking `stop` after each.
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
        let start = Instant::now();
        let mut rounds = 0u32;
        while start.elapsed() < spin {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
            if let Some(n) = arrived(side) {
                return Arrival::Message(n);
            }
            rounds += 1;
            if rounds % 2 == 0 {
                // If the other side shares this CPU, let it run: spinning
                // would only delay it.
                std::thread::yield_now();
            }
        }
        loop {
            let cur = side.seq.load(Ordering::SeqCst);
            if cur == seq {
                return Arrival::Message(side.len.load(Ordering::Relaxed));
            }
            side.sleeping.store(1, Ordering::SeqCst);
            if side.seq.load(Ordering::SeqCst) == cur {
                futex::wait(&side.seq, cur, Some(slice));
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
        out.reserve(n);
        // SAFETY: the slot has SLOT >= n bytes; `out` has room for n bytes
        // (reserved) in its own memory, so the ranges do not overlap; the
        // bytes are plain u8, valid whatever the other process wrote.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data(slot), out.as_mut_ptr(), n);
            out.set_len(n);
        }
        Ok(())
    }
}
