//! Passing a [`Connection`] itself to another process, as Python pickles a
//! connection through `multiprocessing.reduction`: over a connection that
//! carries descriptors (a Unix socket), one `sendmsg` takes a short record
//! describing the end and its descriptors.
//!
//! # The record
//!
//! 16 bytes: the tag `b'C'` (never a shared-memory pipe's bell, 0, nor the
//! byte 1 of a handle sent with `send_handle`), the version 1, the kind
//! (0: the bytes go through the descriptor itself, a socket or a kernel
//! pipe; 1: a shared-memory [`pipe`](super::pipe) end), the flags (bit 0
//! readable, bit 1 writable), the sending direction of a shared-memory end
//! (0 or 1), three zero bytes, then the end's largest message (u64, little
//! endian). The descriptors ride on the record's first byte: the socket
//! (kind 0 and 1), then the channel's memfd (kind 1).
//!
//! # What a receiver checks
//!
//! The peer may be hostile: every field and descriptor is checked before
//! anything is adopted, and whatever is refused is closed and reported as
//! [`RecvError::Decode`]. The record must be exactly as above, with exactly
//! the descriptors its kind needs. A kind 0 descriptor must be a stream
//! socket or a pipe; a kind 1 socket must be a Unix stream socket, and its
//! memfd must be sealed against shrinking (the crate seals the memfds of
//! its pipes) and hold both rings and their header, so the mapping can
//! never be cut short under this process. The bytes of the rings stay
//! untrusted, as they are for any pipe (see [`stream`](super::stream)).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{Connection, RecvError, SendError, stream};
use crate::error::{Error, Result};

const TAG: u8 = b'C';
const VERSION: u8 = 1;
const RECORD: usize = 16;
const KIND_FD: u8 = 0;
const KIND_STREAM: u8 = 1;
const READABLE: u8 = 1;
const WRITABLE: u8 = 2;

/// The 16 bytes that describe an end (see the module docs).
fn encode(kind: u8, readable: bool, writable: bool, tx: u8, max_message: u64) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0] = TAG;
    r[1] = VERSION;
    r[2] = kind;
    r[3] = (u8::from(readable) * READABLE) | (u8::from(writable) * WRITABLE);
    r[4] = tx;
    r[8..].copy_from_slice(&max_message.to_le_bytes());
    r
}

/// A record's fields, checked.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    kind: u8,
    readable: bool,
    writable: bool,
    tx: usize,
    max_message: u64,
}

fn bad(why: &str) -> Error {
    Error::Codec(format!("a received connection was refused: {why}"))
}

fn decode(r: &[u8]) -> Result<Record> {
    if r.len() != RECORD {
        return Err(bad("its record has the wrong length"));
    }
    if r[0] != TAG || r[1] != VERSION {
        return Err(bad("not a connection record of this version"));
    }
    if r[3] & !(READABLE | WRITABLE) != 0 || r[3] == 0 || r[5..8] != [0, 0, 0] {
        return Err(bad("unknown flags"));
    }
    let kind = r[2];
    if kind != KIND_FD && kind != KIND_STREAM {
        return Err(bad("unknown kind"));
    }
    if r[4] > 1 || (kind == KIND_FD && r[4] != 0) {
        return Err(bad("no such direction"));
    }
    let max_message = u64::from_le_bytes(r[8..].try_into().expect("eight bytes"));
    Ok(Record {
        kind,
        readable: r[3] & READABLE != 0,
        writable: r[3] & WRITABLE != 0,
        tx: usize::from(r[4]),
        max_message,
    })
}

/// A connection from a checked record and its descriptors.
fn adopt(rec: Record, mut fds: Vec<OwnedFd>) -> Result<Connection> {
    let want = if rec.kind == KIND_STREAM { 2 } else { 1 };
    if fds.len() != want {
        return Err(bad("it came with the wrong number of descriptors"));
    }
    let memfd = (rec.kind == KIND_STREAM).then(|| fds.pop().expect("two descriptors"));
    let sock = fds.pop().expect("one descriptor");
    let socket = match crate::sys::socket::stream_socket_kind(sock.as_fd()) {
        Some(unix) => {
            if memfd.is_some() && !unix {
                return Err(bad("a shared-memory pipe's doorbell must be a Unix socket"));
            }
            true
        }
        None if memfd.is_none() && crate::sys::fd::is_fifo(sock.as_fd()) => false,
        None => return Err(bad("its descriptor is neither a stream socket nor a pipe")),
    };
    let stream = match memfd {
        Some(fd) => Some(stream::Stream::adopt(fd, rec.tx).map_err(|e| match e {
            Error::Os { .. } => e,
            _ => bad("its shared memory is not a sealed pipe channel"),
        })?),
        None => None,
    };
    let mut conn = Connection::new(sock, rec.readable, rec.writable, socket);
    conn.max_message = rec.max_message;
    conn.stream = stream;
    Ok(conn)
}

impl Connection {
    /// Passes a copy of the connection end `conn` to the process at the
    /// other end of this one, which takes it with
    /// [`recv_connection`](Self::recv_connection); the received end is fully
    /// usable (both kinds: [`pipe`](super::pipe)'s shared-memory ends and
    /// socket or kernel-pipe ends), as an end inherited through a fork is.
    /// Python's pickling of a `Connection` through
    /// `multiprocessing.reduction`.
    ///
    /// This end must be a Unix socket (as for
    /// [`send_handle`](Self::send_handle)): otherwise
    /// [`SendError::BadConnection`]. `conn` stays open here; close it when
    /// this process is done with it, so that end of stream is seen when
    /// the last user goes away. Like handles, connections travel beside the
    /// messages: the receiver takes them in the order sent, and processes
    /// that send connections over one end at the same time must take turns.
    /// On a shared-memory pipe the record rides on the pipe's socket, not in
    /// its ring, so [`poll`](Self::poll) does not see it: to wait with a
    /// bound, poll the descriptor ([`as_fd`](std::os::fd::AsFd::as_fd)) for
    /// reading.
    ///
    /// ```
    /// use multiproc::connection::pipe;
    ///
    /// let (carrier_a, carrier_b) = pipe(true)?;
    /// let (mine, theirs) = pipe(true)?;
    /// carrier_a.send_connection(&theirs)?;
    /// drop(theirs);
    /// let got = carrier_b.recv_connection()?;
    /// got.send_bytes(b"through a passed end")?;
    /// assert_eq!(mine.recv_bytes()?, b"through a passed end");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn send_connection(&self, conn: &Connection) -> Result<(), SendError> {
        self.send_connection_any(conn)
            .map_err(SendError::from_internal)
    }

    fn send_connection_any(&self, conn: &Connection) -> Result<()> {
        if !self.writable {
            return Err(Error::BadConnection("read-only"));
        }
        if !self.socket {
            return Err(Error::BadConnection("handles need a Unix socket"));
        }
        let (record, fds): ([u8; RECORD], Vec<BorrowedFd<'_>>) = match &conn.stream {
            Some(s) => {
                let (memfd, tx) = s.handover();
                let tx = u8::try_from(tx).expect("a direction is 0 or 1");
                (
                    encode(
                        KIND_STREAM,
                        conn.readable,
                        conn.writable,
                        tx,
                        conn.max_message,
                    ),
                    vec![conn.fd.as_fd(), memfd],
                )
            }
            None => (
                encode(KIND_FD, conn.readable, conn.writable, 0, conn.max_message),
                vec![conn.fd.as_fd()],
            ),
        };
        // The record is small: one `sendmsg` sends it whole (a stream
        // socket takes all of a write this short, or blocks until it can).
        match crate::sys::socket::send_with_fds(self.fd.as_fd(), &record, &fds) {
            Ok(n) if n == RECORD => Ok(()),
            Ok(_) => Err(Error::BadConnection(
                "out of step: a connection record went out in part",
            )),
            Err(e) => Err(Error::os("sendmsg", e)),
        }
    }

    /// Takes a connection end passed by the other end with
    /// [`send_connection`](Self::send_connection) (waiting for it). Its
    /// record and descriptors are checked before anything is adopted (see
    /// the module docs): what a hostile or confused peer sends instead is
    /// [`RecvError::Decode`], its descriptors closed. [`RecvError::Eof`] if
    /// the other end closed first.
    pub fn recv_connection(&self) -> Result<Connection, RecvError> {
        self.recv_connection_any().map_err(RecvError::from_internal)
    }

    fn recv_connection_any(&self) -> Result<Connection> {
        if !self.readable {
            return Err(Error::BadConnection("write-only"));
        }
        if !self.socket {
            return Err(Error::BadConnection("handles need a Unix socket"));
        }
        // A plain socket carries messages too: read the record's bytes only.
        let mut buf = [0u8; 256];
        let want = if self.stream.is_some() {
            buf.len()
        } else {
            RECORD
        };
        let (record, fds) = self.recv_beside(&mut buf[..want])?;
        let fds = fds.map_err(|_| bad("its descriptors were cut short"))?;
        adopt(decode(&buf[record])?, fds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let r = encode(KIND_STREAM, true, false, 1, 1234);
        assert_eq!(
            decode(&r).unwrap(),
            Record {
                kind: KIND_STREAM,
                readable: true,
                writable: false,
                tx: 1,
                max_message: 1234
            }
        );
        let mut bad_tag = r;
        bad_tag[0] = 1;
        assert!(decode(&bad_tag).is_err());
        let mut bad_kind = r;
        bad_kind[2] = 7;
        assert!(decode(&bad_kind).is_err());
        let mut no_way = r;
        no_way[3] = 0;
        assert!(decode(&no_way).is_err());
        let mut bad_dir = r;
        bad_dir[4] = 2;
        assert!(decode(&bad_dir).is_err());
        assert!(decode(&r[..15]).is_err());
        let fd_with_dir = encode(KIND_FD, true, true, 1, 0);
        assert!(decode(&fd_with_dir).is_err());
    }
}
