//! Connections to one Redis server, shared by the queue and the pool: a
//! small set of idle connections of this process, taken by a call and put
//! back after it (see the [module documentation](super#connections-and-processes)).

use std::sync::Mutex;

use super::RedisError;

use ::redis::ConnectionLike;
use std::time::Duration;

/// How long to wait for a TCP connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a reply may take (beyond the time a blocking command asked
/// the server to wait) before the call fails: a stalled server no longer
/// hangs a call.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A server's client and the idle connections made in this process.
pub(crate) struct Link {
    client: ::redis::Client,
    /// The socket read timeout of every connection (None: no limit).
    read_timeout: Option<Duration>,
    idle: Mutex<Idle>,
}

/// Idle connections, and the process they were opened in.
struct Idle {
    pid: u32,
    cons: Vec<::redis::Connection>,
}

impl Link {
    /// A link to the server at `url`; nothing is connected yet.
    pub(crate) fn new(url: &str) -> std::result::Result<Link, RedisError> {
        let client = ::redis::Client::open(url)
            .map_err(|e| RedisError::InvalidUrl(format!("{url:?}: {e}")))?;
        Ok(Link {
            client,
            read_timeout: Some(READ_TIMEOUT),
            idle: Mutex::new(Idle {
                pid: std::process::id(),
                cons: Vec::new(),
            }),
        })
    }

    /// Another link to the same server, with no connection yet.
    pub(crate) fn fresh(&self) -> Link {
        Link {
            client: self.client.clone(),
            read_timeout: self.read_timeout,
            idle: Mutex::new(Idle {
                pid: std::process::id(),
                cons: Vec::new(),
            }),
        }
    }

    /// Sets the socket read timeout of the connections made from now on
    /// (and drops the idle ones, made with the old one).
    pub(crate) fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.read_timeout = t;
        self.idle
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .cons
            .clear();
    }

    /// The socket read timeout.
    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// `host:port` (or the socket path) of the server.
    pub(crate) fn addr(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    /// The error of a failed command.
    pub(crate) fn describe(&self, e: &::redis::RedisError) -> RedisError {
        RedisError::of_command(&self.addr(), e)
    }

    /// A connection made in this process: an idle one, or a new one.
    pub(crate) fn connect(&self) -> std::result::Result<::redis::Connection, RedisError> {
        let pid = std::process::id();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.pid != pid {
                // A forked child: the idle connections are the parent's
                // sockets. Dropping them closes this process's copies only
                // (nothing is sent), and the parent's stay open.
                idle.cons.clear();
                idle.pid = pid;
            }
            if let Some(con) = idle.cons.pop() {
                return Ok(con);
            }
        }
        let con = self
            .client
            // The handshake is read like any reply: a stalled server fails
            // it within the read timeout too.
            .get_connection_with_timeout(
                self.read_timeout
                    .map_or(CONNECT_TIMEOUT, |t| t.min(CONNECT_TIMEOUT)),
            )
            .map_err(|e| {
                if !(e.is_io_error() || e.is_timeout() || e.is_connection_refusal()) {
                    // The server answered the handshake with a refusal (a
                    // wrong password, say).
                    return self.describe(&e);
                }
                let mut m = format!("cannot connect to the redis server at {}: {e}", self.addr());
                if e.is_connection_refusal() {
                    m.push_str(" (is redis-server running there?)");
                }
                RedisError::Unreachable(m)
            })?;
        con.set_read_timeout(self.read_timeout)
            .map_err(|e| self.describe(&e))?;
        Ok(con)
    }

    /// Puts a healthy connection back (if still in the process that made
    /// it).
    pub(crate) fn release(&self, con: ::redis::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.pid == std::process::id() {
            idle.cons.push(con);
        }
    }

    /// Runs `f` on a connection of this process, and keeps the connection
    /// for later calls unless it may be out of step.
    pub(crate) fn with_con<R>(
        &self,
        f: impl FnOnce(&mut ::redis::Connection) -> ::redis::RedisResult<R>,
    ) -> std::result::Result<R, RedisError> {
        self.with_blocking_con(Duration::ZERO, f)
    }

    /// [`with_con`](Self::with_con) for a command that asks the server to
    /// wait up to `block`: the read timeout is lengthened by that much for
    /// this call.
    pub(crate) fn with_blocking_con<R>(
        &self,
        block: Duration,
        f: impl FnOnce(&mut ::redis::Connection) -> ::redis::RedisResult<R>,
    ) -> std::result::Result<R, RedisError> {
        let mut con = self.connect()?;
        let longer = !block.is_zero() && self.read_timeout.is_some();
        if longer {
            let t = self.read_timeout.map(|t| t.saturating_add(block));
            con.set_read_timeout(t).map_err(|e| self.describe(&e))?;
        }
        let r = f(&mut con);
        if longer && r.is_ok() {
            con.set_read_timeout(self.read_timeout)
                .map_err(|e| self.describe(&e))?;
        }
        match r {
            Ok(r) => {
                self.release(con);
                Ok(r)
            }
            Err(e) => {
                let m = self.describe(&e);
                // After an error reply, or a whole reply of an unexpected
                // type, the connection is in step; after anything else (an
                // I/O error, a timeout, a reply cut or garbled) it is
                // dropped.
                let whole_reply = matches!(
                    e.kind(),
                    ::redis::ErrorKind::Server(_)
                        | ::redis::ErrorKind::Extension
                        | ::redis::ErrorKind::UnexpectedReturnType
                );
                if whole_reply && con.is_open() && !longer {
                    self.release(con);
                }
                Err(m)
            }
        }
    }
}
