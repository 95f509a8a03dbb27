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
    Bytes, CONTROL, DEFAULT_MAX_FRAME, NO_REPLY, Request, dec, decode_reply, enc, encode_frame,
};
use crate::connection::listener::{Address, Client};
use crate::error::{Error, Result};

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
}

struct Conn {
    channel: Channel,
    out: Vec<u8>,
}

/// The live sessions of this process (a forked child sees its parent's,
/// which it does not use: their pid is not its own).
static SESSIONS: Mutex<Vec<Weak<Session>>> = Mutex::new(Vec::new());

fn gone(e: impl std::fmt::Display) -> Error {
    Error::ServerGone(e.to_string())
}

/// Maps a failure to reach the server to [`Error::ServerGone`].
fn connect_error(address: &Address, e: Error) -> Error {
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
        {
            let mut all = SESSIONS.lock();
            all.retain(|w| w.strong_count() > 0);
            for w in all.iter() {
                if let Some(s) = w.upgrade()
                    && s.pid == pid
                    && s.address == *address
                    && s.authkey == authkey
                {
                    return Ok(s);
                }
            }
        }
        let (conn, id) = Self::open(address, authkey, None)?;
        let s = Arc::new(Session {
            pid,
            address: address.clone(),
            authkey: authkey.to_vec(),
            id,
            idle: Mutex::new(vec![conn]),
            next_request: AtomicU64::new(1),
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

    /// Whether this session belongs to the calling process.
    pub(crate) fn is_current(&self) -> bool {
        self.pid == crate::sys::thread::pid()
    }

    /// Connects, authenticates and says hello; the connection and the
    /// session id the server gave.
    fn open(address: &Address, authkey: &[u8], join: Option<u64>) -> Result<(Conn, u64)> {
        let c = Client::connect_sha256_only(address, authkey, Some(CONNECT_TIMEOUT))
            .map_err(|e| connect_error(address, e))?;
        let mut conn = Conn {
            channel: Channel::new(c.into_fd(), DEFAULT_MAX_FRAME)?,
            out: Vec::with_capacity(256),
        };
        let args = enc(&join)?;
        let reply = conn.call(0, CONTROL, "hello", &args, 0)?;
        let id: u64 = dec(&reply)?;
        Ok((conn, id))
    }

    /// Calls `method` of `object` with encoded `args`; the encoded result.
    pub(crate) fn call(&self, object: u64, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        let mut conn = self.take()?;
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let r = conn.call(id, object, method, args, 0);
        match &r {
            Err(Error::ServerGone(_)) | Err(Error::Codec(_)) => {}
            _ => self.idle.lock().push(conn),
        }
        r
    }

    /// Sends a call whose reply nobody waits for (a decref from `Drop`).
    pub(crate) fn notify(&self, object: u64, method: &str, args: &[u8]) {
        let Ok(mut conn) = self.take() else {
            return;
        };
        if conn.send(0, object, method, args, NO_REPLY).is_ok() {
            self.idle.lock().push(conn);
        }
    }

    fn take(&self) -> Result<Conn> {
        if let Some(c) = self.idle.lock().pop() {
            return Ok(c);
        }
        let (conn, _) = Self::open(&self.address, &self.authkey, Some(self.id))?;
        Ok(conn)
    }
}

impl Conn {
    fn send(&mut self, id: u64, object: u64, method: &str, args: &[u8], flags: u8) -> Result<()> {
        self.out.clear();
        let caller = (crate::sys::thread::pid() as u64) << 32 | crate::sys::thread::tid() as u64;
        encode_frame(
            &Request {
                id,
                object,
                method,
                caller,
                flags,
                args: Bytes(args),
            },
            &mut self.out,
        )?;
        self.channel.send(&self.out).map_err(gone)
    }

    fn call(
        &mut self,
        id: u64,
        object: u64,
        method: &str,
        args: &[u8],
        flags: u8,
    ) -> Result<Vec<u8>> {
        self.send(id, object, method, args, flags)?;
        let range = match self.channel.recv(SPIN, None, &|| false) {
            Ok(r) => r,
            Err(ReadEnd::Closed) => return Err(gone("the server closed the connection")),
            Err(ReadEnd::Bad(e) | ReadEnd::Os(e)) => return Err(gone(e)),
            Err(ReadEnd::Stopped) => return Err(gone("stopped")),
        };
        let reply = decode_reply(self.channel.bytes(range))?;
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
}
