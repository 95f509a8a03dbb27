//! The client side: one session per process and server, a pool of
//! connections in it (one per thread that calls at the same time, so a
//! blocking call on one thread never holds up another), and the call
//! itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::channel::{Channel, ReadEnd, SPIN};
use super::protocol::{
    Bytes, CONTROL, ControlOp, DEFAULT_MAX_FRAME, NO_REPLY, Request, dec, decode_reply, enc,
    encode_body, encode_frame,
};
use crate::connection::listener::{Address, Client};
use crate::error::{Error, Result};
use crate::shm::mailbox::{Arrival, Mailbox, ON_SOCKET, SLOT, Slot};

/// How long connecting (with the handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A process's connections to one server, and the references they hold.
pub(crate) struct Session {
    pid: i32,
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    id: u64,
    idle: Mutex<Vec<Conn>>,
    next_request: AtomicU64,
    /// Socket-only connections of the async calls (`aio::manager`).
    #[cfg(feature = "tokio")]
    idle_plain: Mutex<Vec<Channel>>,
}

struct Conn {
    channel: Channel,
    out: Vec<u8>,
    /// Calls go through this shared-memory mailbox once the server took it
    /// (Unix sockets only: the peer is on this host).
    mailbox: Option<Mailbox>,
    /// The mailbox's last sequence number.
    seq: u32,
    input: Vec<u8>,
}

/// How often a caller sleeping on the mailbox checks that the server is
/// still there (its socket closes when it dies).
const MAILBOX_SLICE: Duration = Duration::from_millis(20);

/// The live sessions of this process (a forked child sees its parent's,
/// which it does not use: their pid is not its own).
static SESSIONS: Mutex<Vec<Weak<Session>>> = Mutex::new(Vec::new());

pub(crate) fn gone(e: impl std::fmt::Display) -> Error {
    Error::ServerGone(e.to_string())
}

/// Maps a failure to reach the server to [`Error::ServerGone`].
pub(crate) fn connect_error(address: &Address, e: Error) -> Error {
    match e {
        Error::Os { call, source } => gone(format!("{call} {address}: {source}")),
        Error::Eof | Error::Truncated { .. } => gone(format!(
            "{address} closed the connection during the handshake"
        )),
        other => other,
    }
}

impl Session {
    /// This process's session with the server at `address`, made (and
    /// connected) if there is none.
    pub(crate) fn get(address: &Address, authkey: &[u8]) -> Result<Arc<Session>> {
        let pid = crate::sys::thread::pid();
        let mut cached = None;
        {
            let mut all = SESSIONS.lock();
            all.retain(|w| w.strong_count() > 0);
            for w in all.iter() {
                if let Some(s) = w.upgrade()
                    && s.pid == pid
                    && s.address == *address
                    && s.authkey == authkey
                {
                    cached = Some(s);
                    break;
                }
            }
        }
        if let Some(s) = cached {
            // A server that died since leaves a session whose connections
            // are closed: not one to hand out.
            if s.alive() {
                return Ok(s);
            }
            SESSIONS
                .lock()
                .retain(|w| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&s)));
        }
        let (conn, id) = Self::open(address, authkey, None, true)?;
        let s = Arc::new(Session {
            pid,
            address: address.clone(),
            authkey: authkey.to_vec(),
            id,
            idle: Mutex::new(vec![conn]),
            next_request: AtomicU64::new(1),
            #[cfg(feature = "tokio")]
            idle_plain: Mutex::new(Vec::new()),
        });
        SESSIONS.lock().push(Arc::downgrade(&s));
        Ok(s)
    }

    /// This process's live session with the server at `address`, whatever
    /// its key.
    pub(crate) fn existing(address: &Address) -> Option<Arc<Session>> {
        let pid = crate::sys::thread::pid();
        SESSIONS
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| s.pid == pid && s.address == *address)
    }

    /// Whether the server still serves this session: its idle connections
    /// are not closed (those that are are dropped), or, with none idle, a
    /// new one can be opened.
    fn alive(&self) -> bool {
        let mut idle = self.idle.lock();
        idle.retain(|c| !c.channel.peer_gone_or_talking());
        if !idle.is_empty() {
            return true;
        }
        drop(idle);
        match Self::open(&self.address, &self.authkey, Some(self.id), true) {
            Ok((conn, _)) => {
                self.idle.lock().push(conn);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether this session belongs to the calling process.
    pub(crate) fn is_current(&self) -> bool {
        self.pid == crate::sys::thread::pid()
    }

    /// Connects, authenticates and says hello (and offers a mailbox if
    /// `mailbox` and the server is on this host); the connection and the
    /// session id the server gave.
    fn open(
        address: &Address,
        authkey: &[u8],
        join: Option<u64>,
        mailbox: bool,
    ) -> Result<(Conn, u64)> {
        let c = Client::connect_sha256_only(address, authkey, Some(CONNECT_TIMEOUT))
            .map_err(|e| connect_error(address, e.into()))?;
        let mut conn = Conn {
            channel: Channel::new(c.into_fd()?, DEFAULT_MAX_FRAME)?,
            out: Vec::with_capacity(256),
            mailbox: None,
            seq: 0,
            input: Vec::new(),
        };
        let args = enc(&ControlOp::Hello(join))?;
        let reply = conn.call(0, CONTROL, None, &args, 0)?;
        let id: u64 = dec(&reply)?;
        if mailbox && !matches!(address, Address::Tcp(_)) {
            // Same host: offer a mailbox; a server that refuses it is
            // served over the socket.
            let mailbox = Mailbox::new()?;
            let args = enc(&ControlOp::Mailbox)?;
            conn.out.clear();
            encode_frame(
                &Request {
                    id: 0,
                    object: CONTROL,
                    method: None,
                    caller: 0,
                    flags: 0,
                    args: Bytes(&args),
                },
                &mut conn.out,
            )?;
            conn.channel
                .send_with_fd(&conn.out, mailbox.fd())
                .map_err(gone)?;
            if conn.recv_socket(0).is_ok() {
                conn.mailbox = Some(mailbox);
            }
        }
        Ok((conn, id))
    }

    /// Calls `object` with an encoded typed operation (`method` `None`),
    /// or its registered type's `method` with encoded `args`; the encoded
    /// result.
    pub(crate) fn call(&self, object: u64, method: Option<&str>, args: &[u8]) -> Result<Vec<u8>> {
        self.call_flags(object, method, args, 0)
    }

    /// Runs an operation on the server itself; its encoded answer.
    pub(crate) fn control(&self, op: &ControlOp<'_>) -> Result<Vec<u8>> {
        self.call(CONTROL, None, &enc(op)?)
    }

    /// Sends an operation on the server itself without waiting for its
    /// answer (a decref from `Drop`).
    pub(crate) fn notify_control(&self, op: &ControlOp<'_>) {
        if let Ok(args) = enc(op) {
            self.notify(CONTROL, None, &args);
        }
    }

    /// [`call`](Self::call) with request flags.
    pub(crate) fn call_flags(
        &self,
        object: u64,
        method: Option<&str>,
        args: &[u8],
        flags: u8,
    ) -> Result<Vec<u8>> {
        // Inside an async call's run (`aio::manager`): recorded or replayed.
        #[cfg(feature = "tokio")]
        if let Some(r) = crate::aio::manager::intercept(self, object, method, args, flags) {
            return r;
        }
        let mut conn = self.take()?;
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let r = conn.call(id, object, method, args, flags);
        match &r {
            Err(Error::ServerGone(_)) | Err(Error::Codec(_)) => {}
            _ => self.idle.lock().push(conn),
        }
        r
    }

    /// Sends a call whose reply nobody waits for (a decref from `Drop`).
    pub(crate) fn notify(&self, object: u64, method: Option<&str>, args: &[u8]) {
        // Inside an async call's run: sent only if the run is the last.
        #[cfg(feature = "tokio")]
        if crate::aio::manager::defer_notify(self, object, method, args) {
            return;
        }
        let Ok(mut conn) = self.take() else {
            return;
        };
        let sent = if conn.mailbox.is_some() {
            // A mailbox call is always answered (the slot is reused).
            conn.call_mailbox(0, object, method, args, NO_REPLY)
                .map(drop)
        } else {
            conn.send(0, object, method, args, NO_REPLY)
        };
        if sent.is_ok() {
            self.idle.lock().push(conn);
        }
    }

    fn take(&self) -> Result<Conn> {
        if let Some(c) = self.idle.lock().pop() {
            return Ok(c);
        }
        let (conn, _) = Self::open(&self.address, &self.authkey, Some(self.id), true)?;
        Ok(conn)
    }
}

/// Hooks of the async calls (`aio::manager`, issue 17): socket-only
/// connections of the session, kept apart from the blocking calls' so that
/// a cancelled async call (whose connection is then closed, with its reply
/// unread) never leaves the session without a connection.
#[cfg(feature = "tokio")]
impl Session {
    /// This session as an `Arc` (it is listed while it lives).
    pub(crate) fn arc(&self) -> Option<Arc<Session>> {
        SESSIONS
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| std::ptr::eq(Arc::as_ptr(s), self))
    }

    /// An idle socket-only connection of this session, or a new one
    /// (connected by blocking, as the blocking calls connect).
    pub(crate) fn take_plain(&self) -> Result<Channel> {
        if let Some(c) = self.idle_plain.lock().pop() {
            return Ok(c);
        }
        let (conn, _) = Self::open(&self.address, &self.authkey, Some(self.id), false)?;
        Ok(conn.channel)
    }

    /// Gives back a connection whose last reply was read whole.
    pub(crate) fn put_plain(&self, c: Channel) {
        self.idle_plain.lock().push(c);
    }

    /// The id of a new request.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }
}

/// The frame of a request from the calling thread (async calls).
#[cfg(feature = "tokio")]
pub(crate) fn encode_call(
    id: u64,
    object: u64,
    method: Option<&str>,
    args: &[u8],
    flags: u8,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    encode_frame(&request(id, object, method, args, flags), out)
}

impl Conn {
    fn send(
        &mut self,
        id: u64,
        object: u64,
        method: Option<&str>,
        args: &[u8],
        flags: u8,
    ) -> Result<()> {
        self.out.clear();
        encode_frame(&request(id, object, method, args, flags), &mut self.out)?;
        self.channel.send(&self.out).map_err(gone)
    }

    fn call(
        &mut self,
        id: u64,
        object: u64,
        method: Option<&str>,
        args: &[u8],
        flags: u8,
    ) -> Result<Vec<u8>> {
        if self.mailbox.is_some() {
            return self.call_mailbox(id, object, method, args, flags);
        }
        self.send(id, object, method, args, flags)?;
        self.recv_socket(id)
    }

    /// Reads the reply to request `id` from the socket.
    fn recv_socket(&mut self, id: u64) -> Result<Vec<u8>> {
        let range = match self.channel.recv(SPIN, None, &|| false) {
            Ok(r) => r,
            Err(ReadEnd::Closed) => return Err(gone("the server closed the connection")),
            Err(ReadEnd::Bad(e) | ReadEnd::Os(e)) => return Err(gone(e)),
            Err(ReadEnd::Stopped) => return Err(gone("stopped")),
        };
        finish(id, self.channel.bytes(range))
    }

    /// A call through the mailbox: no system call while both sides spin.
    fn call_mailbox(
        &mut self,
        id: u64,
        object: u64,
        method: Option<&str>,
        args: &[u8],
        flags: u8,
    ) -> Result<Vec<u8>> {
        let Some(mailbox) = &self.mailbox else {
            return Err(gone("no mailbox"));
        };
        let req = request(id, object, method, args, flags);
        encode_body(&req, &mut self.out)?;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        if self.out.len() <= SLOT {
            mailbox.post(Slot::Request, seq, Some(&self.out));
        } else {
            // Announced first, then sent: the server reads the socket once
            // it sees the announcement.
            mailbox.post(Slot::Request, seq, None);
            self.out.clear();
            encode_frame(&req, &mut self.out)?;
            self.channel.send(&self.out).map_err(gone)?;
        }
        let channel = &self.channel;
        let arrival = mailbox.wait(Slot::Reply, seq, SPIN, MAILBOX_SLICE, &mut || {
            // The server never writes the socket during a call, unless it
            // closed (died, or stops) or a long reply follows (announced in
            // the mailbox first).
            channel.peer_gone_or_talking()
        });
        match arrival {
            Arrival::Stopped => Err(gone("the server closed the connection")),
            Arrival::Message(ON_SOCKET) => self.recv_socket(id),
            Arrival::Message(n) => {
                mailbox.take(Slot::Reply, n, &mut self.input)?;
                finish(id, &self.input)
            }
        }
    }
}

/// A request from the calling thread (the caller: pid << 32 | tid, the
/// owner of a reentrant lock it acquires).
fn request<'a>(
    id: u64,
    object: u64,
    method: Option<&'a str>,
    args: &'a [u8],
    flags: u8,
) -> Request<'a> {
    let caller = (crate::sys::thread::pid() as u64) << 32 | crate::sys::thread::tid() as u64;
    Request {
        id,
        object,
        method,
        caller,
        flags,
        args: Bytes(args),
    }
}

/// The result a reply to request `id` carries.
pub(crate) fn finish(id: u64, body: &[u8]) -> Result<Vec<u8>> {
    let reply = decode_reply(body)?;
    if reply.id != id {
        return Err(Error::Codec(format!(
            "reply {} to request {id}: the connection is out of step",
            reply.id
        )));
    }
    match reply.result {
        Ok(b) => Ok(b.0.to_vec()),
        Err(f) => Err(f.into()),
    }
}
