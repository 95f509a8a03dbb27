//! Async forms of [`Connection`] (feature `tokio`).
//!
//! A receiver waits on the connection's descriptor through tokio
//! (`AsyncFd`): for a [`pipe`](crate::pipe) end that is the doorbell
//! socket, which the writer rings once the receiver has armed its bell (the
//! same handshake as a blocking receiver, see the pipe ring's
//! documentation), so a message wakes the task through the runtime's own
//! epoll. A writer of a [`pipe`](crate::pipe) end that finds no room for a
//! message waits on the ring's `room` word through the futex reactor,
//! counted in `tx_waiting` as a blocking writer is, and checks that its
//! peer is still there after every slice.
//!
//! [`Connection`]'s own async methods register the descriptor with the
//! runtime for each call (a `dup` and two `epoll_ctl`); an
//! [`AsyncConnection`] registers it once, for hot loops.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::Counted;
use super::error::IntoAsyncError;
use super::reactor::{Slept, wait_word};
use crate::connection::frame;
use crate::connection::stream::{self as ring, CAP};
use crate::connection::{RecvError, SendError};
use crate::deadline::Deadline;
use crate::sync::wait::Site;
use crate::{Connection, sys};

/// How an async receiver spins on a pipe's ring before it arms the bell
/// and parks the task: as long as a blocking receiver (the crate's one
/// wait strategy, [`Site`]: only while a CPU is to spare, with a budget
/// that shrinks while spins go unrewarded). A reply that comes within
/// the spin is taken without the doorbell, the runtime's epoll and a
/// wake-up of this thread, which is what a round trip costs otherwise.
static RECV_SPIN: Site = Site::new(Duration::from_micros(50));

/// Registers a duplicate of `conn`'s descriptor with the current tokio
/// runtime: the one step that can fail before an async call waits.
fn register(conn: &Connection) -> Result<AsyncFd<OwnedFd>, IntoAsyncError> {
    let fd = conn
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| IntoAsyncError::Os {
            call: "dup",
            source,
        })?;
    super::register_readable(fd)
}

/// [`register`] for a receiving call: its failures are a receive's `Os`.
fn register_recv(conn: &Connection) -> Result<AsyncFd<OwnedFd>, RecvError> {
    register(conn).map_err(|e| {
        let (call, source) = e.into_os();
        RecvError::Os { call, source }
    })
}

/// Waits until a message (or the end of stream) can be read from `conn`.
async fn readable(conn: &Connection, afd: &AsyncFd<OwnedFd>) -> Result<(), RecvError> {
    // Bytes already in a pipe's ring: no system call at all.
    let bytes_there = || conn.stream().is_some_and(|s| s.ready_now());
    // A pipe's peer that answers quickly: spin as a blocking receiver
    // does, before the system calls of arming and parking.
    if conn.stream().is_some()
        && RECV_SPIN
            .spin_until(Deadline::NEVER, || bytes_there().then_some(()))
            .is_some()
    {
        return Ok(());
    }
    // Drains old bell bytes and arms the bell (a pipe's ring), so that a
    // message written after it rings the socket; whether one is there
    // already (or the stream ended). Other connections: a zero-timeout
    // poll.
    let arm = || -> Result<bool, RecvError> {
        match conn.stream() {
            Some(s) => Ok(s.arm(conn.as_fd())),
            None => conn.poll(Some(Duration::ZERO)),
        }
    };
    loop {
        if bytes_there() || arm()? {
            return Ok(());
        }
        let mut ready = afd.readable().await.map_err(|source| RecvError::Os {
            call: "poll",
            source,
        })?;
        // Woken by the bell: the bytes are in the ring (the bell byte is
        // drained by the next wait's arming).
        if bytes_there() || arm()? {
            return Ok(());
        }
        // Nothing but bells (drained above): wait for the next edge.
        ready.clear_ready();
    }
}

/// Waits until `stream`'s sending direction has room for `need` bytes (or
/// the counters are corrupt, or `need` exceeds the ring: then the blocking
/// send reports or streams), or the peer is gone.
async fn room(conn: &Connection, stream: &ring::Stream, need: usize) -> Result<(), SendError> {
    if need > CAP {
        return Ok(());
    }
    loop {
        let (free, word, waiting) = stream.room_async();
        match free {
            Some(f) if f < need => {}
            _ => return Ok(()),
        }
        // The blocking writer's handshake: counted, then the sequence, then
        // one more look; the reader bumps and wakes `room` when it frees
        // bytes and sees a writer counted.
        let counted = Counted::new(waiting);
        fence(Ordering::SeqCst);
        let seq = word.load(Ordering::SeqCst);
        let (free, _, _) = stream.room_async();
        if free.is_some_and(|f| f < need)
            && wait_word(word, seq, ring::SLICE).await == Slept::Slice
            && sys::fd::hung_up(&[conn.as_fd()])[0]
        {
            return Err(SendError::Os {
                call: "send",
                source: nix::errno::Errno::EPIPE.into(),
            });
        }
        drop(counted);
    }
}

async fn send_bytes(conn: &Connection, buf: &[u8]) -> Result<(), SendError> {
    if let Some(s) = conn.stream()
        && conn.writable()
    {
        let mut header = [0u8; frame::LONG];
        let need = frame::encode_header(buf.len() as u64, &mut header) + buf.len();
        room(conn, s, need).await?;
    }
    conn.send_bytes(buf)
}

async fn recv_bytes(conn: &Connection, afd: &AsyncFd<OwnedFd>) -> Result<Vec<u8>, RecvError> {
    if !conn.readable() {
        return Err(RecvError::BadConnection("write-only"));
    }
    readable(conn, afd).await?;
    conn.recv_bytes()
}

#[cfg(feature = "spawn")]
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RecvError> {
    postcard::from_bytes(bytes).map_err(|e| RecvError::Decode(format!("recv: {e}")))
}

#[cfg(feature = "spawn")]
fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, SendError> {
    postcard::to_stdvec(value).map_err(|e| SendError::Encode(format!("send: {e}")))
}

impl Connection {
    /// Waits, without blocking the thread, until a message (or the end of
    /// stream) can be read: the async form of [`poll`](Connection::poll)
    /// without a timeout (wrap it in `tokio::time::timeout` for one).
    /// Consumes nothing but bell bytes; cancellation changes nothing.
    pub async fn poll_async(&self) -> Result<(), RecvError> {
        if !self.readable() {
            return Err(RecvError::BadConnection("write-only"));
        }
        readable(self, &register_recv(self)?).await
    }

    /// Receives one message without blocking the thread while none is
    /// there: the async form of [`recv_bytes`](Connection::recv_bytes),
    /// with its errors.
    ///
    /// Cancellation: the message is read only in the step that returns it;
    /// a future dropped while waiting has read nothing (bell bytes aside).
    ///
    /// Once the first bytes of a message are there, the message is read as
    /// `recv_bytes` reads it: one longer than the ring (256 KiB) is read while
    /// the writer writes the rest, on the calling thread. With several
    /// receivers on one end, another may take the message first; this call
    /// then waits on the calling thread as `recv_bytes` does. Give each end
    /// one receiving task.
    pub async fn recv_bytes_async(&self) -> Result<Vec<u8>, RecvError> {
        recv_bytes(self, &register_recv(self)?).await
    }

    /// Sends `buf` as one message, waiting without blocking the thread for
    /// room in a [`pipe`](crate::pipe)'s ring: the async form of
    /// [`send_bytes`](Connection::send_bytes), with its errors (`EPIPE`
    /// once the peer is gone, noticed within a slice while waiting).
    ///
    /// Cancellation: the message is written only in the step that returns;
    /// a future dropped while waiting for room has written nothing.
    ///
    /// A message longer than the ring (256 KiB) streams through it as the
    /// reader takes it, on the calling thread; so does any message on a
    /// [`pipe_os`](crate::connection::pipe_os) connection whose socket
    /// buffer is full.
    pub async fn send_bytes_async(&self, buf: &[u8]) -> Result<(), SendError> {
        send_bytes(self, buf).await
    }

    /// [`recv_bytes_async`](Connection::recv_bytes_async), deserialized as
    /// [`recv`](Connection::recv) does.
    #[cfg(feature = "spawn")]
    pub async fn recv_async<T: serde::de::DeserializeOwned>(&self) -> Result<T, RecvError> {
        decode(&self.recv_bytes_async().await?)
    }

    /// [`send_bytes_async`](Connection::send_bytes_async) of `value`
    /// serialized as [`send`](Connection::send) does.
    #[cfg(feature = "spawn")]
    pub async fn send_async<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<(), SendError> {
        self.send_bytes_async(&encode(value)?).await
    }

    /// This connection with its descriptor registered once with the
    /// current tokio runtime, for many async calls in a row. Must be called
    /// inside a runtime ([`IntoAsyncError::NoRuntime`] otherwise); the
    /// connection is closed on error.
    pub fn into_async(self) -> Result<AsyncConnection, IntoAsyncError> {
        let afd = register(&self)?;
        Ok(AsyncConnection { conn: self, afd })
    }
}

/// A [`Connection`] registered with a tokio runtime (see
/// [`Connection::into_async`]): the same async calls without a
/// registration each. Use it within the runtime it was made in.
#[derive(Debug)]
pub struct AsyncConnection {
    conn: Connection,
    afd: AsyncFd<OwnedFd>,
}

impl AsyncConnection {
    /// See [`Connection::poll_async`].
    pub async fn poll(&self) -> Result<(), RecvError> {
        if !self.conn.readable() {
            return Err(RecvError::BadConnection("write-only"));
        }
        readable(&self.conn, &self.afd).await
    }

    /// See [`Connection::recv_bytes_async`].
    pub async fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        recv_bytes(&self.conn, &self.afd).await
    }

    /// See [`Connection::send_bytes_async`].
    pub async fn send_bytes(&self, buf: &[u8]) -> Result<(), SendError> {
        send_bytes(&self.conn, buf).await
    }

    /// See [`Connection::recv_async`].
    #[cfg(feature = "spawn")]
    pub async fn recv<T: serde::de::DeserializeOwned>(&self) -> Result<T, RecvError> {
        decode(&self.recv_bytes().await?)
    }

    /// See [`Connection::send_async`].
    #[cfg(feature = "spawn")]
    pub async fn send<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        self.send_bytes(&encode(value)?).await
    }

    /// The connection, for its blocking calls.
    pub fn get_ref(&self) -> &Connection {
        &self.conn
    }

    /// The connection, no longer registered.
    pub fn into_inner(self) -> Connection {
        self.conn
    }
}
