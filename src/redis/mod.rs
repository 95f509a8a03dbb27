//! A queue and a pool kept in a Redis server (feature `redis`), so that
//! work can spread over processes on several machines.
//!
//! [`RedisQueue<T>`] has the `put`/`get` API of [`Queue`](crate::Queue):
//! items are encoded with `postcard`, kept in a Redis list and taken in
//! FIFO order (`RPUSH` to put, `BLPOP`/`LPOP` to take). Any process that
//! opens a queue of the same name on the same server shares it: a forked
//! child, a spawned one, or a program on another machine.
//!
//! ```no_run
//! use multiproc::redis::RedisQueue;
//!
//! let q = RedisQueue::<f64>::open("redis://127.0.0.1:6379/", "partial-sums")?;
//! q.put(0.5).unwrap();
//! assert_eq!(q.get().unwrap(), 0.5);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # Connections and processes
//!
//! A `RedisQueue` keeps a small pool of connections: a call takes one (or
//! connects), uses it and puts it back, so threads can share a queue and a
//! blocking `get` on one thread does not hold up a `put` on another. The
//! pool remembers the process id it was made in; in a forked child the
//! first call finds another pid, drops the inherited connections (closing
//! only the child's copies of their sockets) and connects anew, so parent
//! and child never share a socket.
//!
//! A connection that fails is dropped, and the call returns
//! [`RedisGetError::Server`] or [`RedisPutError::Server`] (with the item); the next
//! call connects again. No command is retried: a put whose connection broke
//! after the command was sent may or may not have been stored.
//!
//! # Keys, `close` and `delete`
//!
//! A queue named `NAME` uses three keys (see [`RedisQueue::key`]):
//! `multiproc:queue:{NAME}` is the list of items, `…:closed` is set by
//! [`close`](RedisQueue::close), and `…:wake` holds a marker that wakes the
//! getters blocked when the queue was closed.
//!
//! - [`close`](RedisQueue::close) closes the queue for everyone, as the
//!   shared-memory queues' `close` does: puts fail with
//!   [`RedisPutError::Closed`] (the check and the push are one server-side
//!   script, so no put slips in after the close), and gets fail with
//!   [`RedisGetError::Closed`] once the items already there are taken, blocked
//!   ones included.
//! - [`delete`](RedisQueue::delete) removes the three keys: the items left
//!   are dropped and the name is free (and open) again. Use it once no
//!   process uses the queue; getters blocked at that moment go on waiting,
//!   for items put after it.
//! - Dropping a `RedisQueue` only closes its connections; the items stay in
//!   the server for the next process that opens the name.
//!
//! # What a blocking call waits for
//!
//! [`get`](RedisQueue::get) waits without limit for an item (in `BLPOP`s of
//! 5 s; a server that goes away ends the wait with an error at once: its
//! socket is closed).
//! [`get_timeout`](RedisQueue::get_timeout) lets the server time the wait
//! (`BLPOP` with a timeout, in milliseconds at least 1). No socket read
//! timeout is set, so a server that is alive but stalled (stopped with
//! `SIGSTOP`, or cut off by the network without a reset) stalls the call.
//!
//! # When a process is killed
//!
//! The server does each command whole, so a killed client never leaves a
//! half-written item. What is lost:
//! - a producer killed during `put`: that item, unless the server had
//!   already received the whole command (then it is in the queue);
//! - a consumer killed during `get` after the server took the item out of
//!   the list (the reply was on its way): that item;
//! - a getter killed in the instant between taking the close marker and
//!   putting it back: the prompt wake-up of the other blocked getters. The
//!   queue stays closed (puts are refused, `try_get` sees it); a blocked
//!   `get` notices within 5 s, a `get_timeout` when its time is up.
//!
//! Nothing else is lost, duplicated or reordered; if the server itself dies
//! without persistence, everything in it is gone.
//!
//! [`JoinableRedisQueue`] adds `task_done`/`join`, and
//! [`RedisStreamQueue`] is a queue on a stream whose `get` is at least once
//! (an item whose consumer died before acknowledging it is handed out
//! again).
//!
//! # The distributed pool
//!
//! [`RedisPool`] has the local [`Pool`](crate::Pool)'s API (`map`, `imap`,
//! `imap_unordered`, `starmap`, `apply_async` with callbacks, `close`,
//! `join`) and its tasks live in a Redis stream, run by workers on any
//! host: the same program calling [`worker`] from `main` (or local worker
//! processes the pool forks, [`RedisPoolBuilder::local_workers`]).
//!
//! ```no_run
//! use multiproc::redis::{RedisPool, worker};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> multiproc::Result<()> {
//!     let url = "redis://10.0.0.1:6379/";
//!     if std::env::args().nth(1).as_deref() == Some("worker") {
//!         return Ok(worker(url, "squares")?); // on every other host
//!     }
//!     let pool = RedisPool::builder(url, "squares").local_workers(2).build()?;
//!     assert_eq!(pool.map(square, 0..1000)?[999], 998_001);
//!     Ok(())
//! }
//! ```
//!
//! Its tasks' calls (`apply`, `map`, the handles' `get`, each item of an
//! `imap`) fail with a [`RedisTaskError`]: the task panicked or was
//! dead-lettered (`TaskFailed`), the server failed while the work was
//! given (`Server`), a timeout, a closed handle. Building, joining and
//! the other calls of the pool (and of the queues, the workers and
//! [`LocalServer`]) return a [`RedisError`]: the server unreachable, a
//! key of the wrong type, a refusal, a timeout, ... `?` turns any of them
//! into [`crate::Error`].
//!
//! - **Same build, signed tasks.** A task names its function by its
//!   offset in the executable's code, with the executable's SHA-256 (the
//!   build identity) and an HMAC under the authkey (`$MULTIPROC_AUTHKEY`,
//!   the same secret for the pool and every worker; a forked local worker
//!   shares the pool's own). A worker runs only tasks signed with its key
//!   and made by its own build; any other fails with an error saying
//!   which (and the worker stops), so a stale binary never jumps into
//!   different code and a client of the server without the key cannot
//!   make a worker run anything. Anyone with the key can run any of the
//!   program's task functions on the workers: guard it like a password.
//! - **At-least-once execution, exactly-once results.** A consumer group
//!   hands each entry (a chunk of items) to one worker. A worker beats
//!   every quarter of the claim deadline ([`RedisPoolBuilder::claim_after`],
//!   30 s by default), which also keeps the entry it runs fresh; an entry
//!   idle past the deadline belonged to a dead worker, and any live
//!   worker claims it (`XAUTOCLAIM`) and runs it again. Results are stored
//!   under the entry's id, once (`HSETNX` in a script that also
//!   acknowledges the entry), so a task that ran twice is reported once;
//!   once the caller collected a result it deletes the entry, and a late
//!   duplicate finds it gone.
//! - **Dead letters.** An entry whose deliveries ended without a result
//!   [`max_deliveries`](RedisPoolBuilder::max_deliveries) times (3 by
//!   default: it kills its workers, say) goes to the stream
//!   `multiproc:pool:{NAME}:dead`, and its tasks fail with an error naming
//!   the attempts. The workers and the caller both watch for these.
//! - **Workers** record host, pid and start time with each heartbeat;
//!   [`RedisPool::workers`] lists those heard from within the deadline.
//!   [`RedisPool::stop_workers`] stops every worker of the name.
//! - **A caller restart.** Results stay on the server until the caller
//!   that submitted them collects them (when the job is complete, or an
//!   `imap` yields the chunk). [`RedisPool::attach`] then
//!   [`recover`](RedisPool::recover) collects what a killed caller left,
//!   waiting for the tasks still running.
//! - **A server restart** with its data (AOF) loses nothing: workers and
//!   callers connect again (a worker gives up after a minute without the
//!   server); a server that lost its data loses the tasks in it.
//!
//! Keys: `multiproc:pool:{NAME}:` `tasks` (the stream), `results` (hash
//! by entry id), `done` (a stream of the ids whose result came), `dead`,
//! `workers` and `info` (heartbeats), `config`, `stop`, `jobseq`.
//!
//! # Starting a server
//!
//! [`LocalServer`] starts a private `redis-server` on a free loopback port
//! (no persistence, a temporary directory) and stops it when dropped: for
//! tests, examples and single-machine runs.

use std::fmt;
use std::marker::PhantomData;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

mod error;
mod joinable;
mod link;
mod pool;
mod stream;
mod task;
mod worker;

pub use error::{RedisError, RedisGetError, RedisPutError, RedisTaskError};
pub use joinable::JoinableRedisQueue;
pub(crate) use link::Link;
pub use pool::{Recovered, RedisAsyncResult, RedisIMap, RedisPool, RedisPoolBuilder, WorkerInfo};
pub use stream::{Delivery, RedisStreamQueue};
pub use worker::{AUTHKEY_ENV, RedisWorker, worker};

/// Puts `ARGV[1]` at the tail of `KEYS[1]` unless `KEYS[2]` (the closed
/// flag) exists; the list's new length, or -1 if closed.
/// With `ARGV[2]` > 0 (maxsize), -2 if the list holds that many already;
/// with `ARGV[3]` = 1 (a joinable queue), counts the item unfinished in
/// `KEYS[3]`.
const PUT_SCRIPT: &str = "if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end \
     local max = tonumber(ARGV[2]) \
     if max > 0 and redis.call('LLEN', KEYS[1]) >= max then return -2 end \
     local n = redis.call('RPUSH', KEYS[1], ARGV[1]) \
     if ARGV[3] == '1' then redis.call('INCR', KEYS[3]) end \
     return n";

/// The longest pause of a put waiting for room (it polls, with pauses
/// growing from 1 ms to this).
const ROOM_POLL: Duration = Duration::from_millis(50);

/// How long [`RedisQueue::get`] waits in one `BLPOP` before it looks at
/// the closed flag.
const GET_SLICE: Duration = Duration::from_secs(5);

/// The item in the wake list.
const WAKE_MARKER: &[u8] = b"closed";

/// A multi-producer, multi-consumer FIFO queue kept in a Redis server; see
/// the [module documentation](self).
///
/// Unbounded unless given a [`maxsize`](RedisQueue::with_maxsize). Items are encoded with `postcard`, as in [`Queue`](crate::Queue);
/// an item of any size the server accepts (512 MB by default) goes through.
///
/// It serializes as its URL and name, so a child started with
/// [`Process::spawn`](crate::Process::spawn) can receive it as an argument
/// and connects on first use. (The URL, with any password in it, goes along.)
pub struct RedisQueue<T> {
    link: Link,
    url: String,
    name: String,
    items: String,
    closed: String,
    wake: String,
    unfinished: String,
    maxsize: usize,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> RedisQueue<T> {
    /// Opens the queue `name` on the server at `url` (such as
    /// `redis://127.0.0.1:6379/`, `redis://:password@host:port/db` or
    /// `redis+unix:///path/to/socket`). The queue exists as soon as anyone
    /// puts to it; opening connects once, so that a wrong URL or an absent
    /// server is reported here.
    pub fn open(url: &str, name: &str) -> Result<RedisQueue<T>, RedisError> {
        let q = Self::open_lazy(url, name)?;
        let con = q.link.connect()?;
        q.link.release(con);
        Ok(q)
    }

    /// Like [`open`](Self::open), without connecting: the first call
    /// connects.
    pub fn open_lazy(url: &str, name: &str) -> Result<RedisQueue<T>, RedisError> {
        if name.is_empty() {
            return Err(RedisError::InvalidName {
                name: name.to_owned(),
                reason: "a queue name must not be empty",
            });
        }
        let link = Link::new(url)?;
        let items = format!("multiproc:queue:{{{name}}}");
        Ok(RedisQueue {
            link,
            url: url.to_owned(),
            name: name.to_owned(),
            closed: format!("{items}:closed"),
            wake: format!("{items}:wake"),
            unfinished: format!("{items}:unfinished"),
            maxsize: 0,
            items,
            _items: PhantomData,
        })
    }

    /// The name given to [`open`](Self::open).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URL given to [`open`](Self::open).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bounds the queue (this handle's puts) to `maxsize` items, as
    /// Python's `Queue(maxsize)`: a put waits for room (it polls the
    /// server, every 1 ms growing to 50 ms), `try_put` fails with
    /// [`RedisPutError::Full`]. 0 means unbounded (the default). The check
    /// and the push are one server-side script. Every handle that puts
    /// should use the same bound; it travels with a handle sent to a
    /// spawned child.
    pub fn with_maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// The bound set by [`with_maxsize`](Self::with_maxsize) (0: none).
    pub fn maxsize(&self) -> usize {
        self.maxsize
    }

    /// The key of the Redis list that holds the items:
    /// `multiproc:queue:{NAME}`.
    pub fn key(&self) -> &str {
        &self.items
    }

    pub(crate) fn with_con<R>(
        &self,
        f: impl FnOnce(&mut ::redis::Connection) -> ::redis::RedisResult<R>,
    ) -> Result<R, RedisError> {
        self.link.with_con(f)
    }

    /// Sets how long a call waits for the server's reply (beyond the wait
    /// a blocking `get` asked for) before it fails with a `Server` error
    /// naming the timeout: a server that is stalled (stopped, or cut off
    /// without a reset) no longer hangs a call. 30 s by default; `None`
    /// waits without limit.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.link.set_read_timeout(timeout);
    }

    /// The read timeout (see [`set_read_timeout`](Self::set_read_timeout)).
    pub fn read_timeout(&self) -> Option<Duration> {
        self.link.read_timeout()
    }

    /// The number of items in the queue (a snapshot);
    /// [`RedisGetError::Server`] if the server cannot tell.
    #[doc(alias = "__len__")]
    pub fn qsize(&self) -> Result<usize, RedisGetError> {
        self.with_con(|c| ::redis::cmd("LLEN").arg(&self.items).query::<usize>(c))
            .map_err(RedisGetError::from)
    }

    /// Whether the queue holds no item (a snapshot).
    pub fn empty(&self) -> Result<bool, RedisGetError> {
        Ok(self.qsize()? == 0)
    }

    /// Closes the queue for every process: later puts fail with
    /// [`RedisPutError::Closed`], and gets fail with [`RedisGetError::Closed`] once
    /// the items already in the queue are taken. Wakes every blocked getter.
    pub fn close(&self) -> Result<(), RedisError> {
        self.with_con(|c| {
            ::redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&self.closed)
                .arg(1)
                .ignore()
                .cmd("DEL")
                .arg(&self.wake)
                .ignore()
                .cmd("RPUSH")
                .arg(&self.wake)
                .arg(WAKE_MARKER)
                .ignore()
                .query::<()>(c)
        })
    }

    /// Whether [`close`](Self::close) was called (and no
    /// [`delete`](Self::delete) since).
    pub fn is_closed(&self) -> Result<bool, RedisError> {
        self.with_con(|c| ::redis::cmd("EXISTS").arg(&self.closed).query::<bool>(c))
    }

    /// Removes the queue from the server: its items (dropped) and its
    /// closed state. The name can be used again at once; see the
    /// [module documentation](self#keys-close-and-delete).
    pub fn delete(&self) -> Result<(), RedisError> {
        self.with_con(|c| {
            ::redis::cmd("DEL")
                .arg(&self.items)
                .arg(&self.closed)
                .arg(&self.wake)
                .arg(&self.unfinished)
                .query::<()>(c)
        })
    }
}

impl<T: Serialize + DeserializeOwned> RedisQueue<T> {
    /// One try at putting `item` (counted unfinished if `joinable`).
    pub(crate) fn put_once(&self, item: T, joinable: bool) -> Result<(), RedisPutError<T>> {
        let bytes = match postcard::to_stdvec(&item) {
            Ok(b) => b,
            Err(e) => return Err(RedisPutError::Encode(item, e.to_string())),
        };
        let r = self.with_con(|c| {
            ::redis::cmd("EVAL")
                .arg(PUT_SCRIPT)
                .arg(3)
                .arg(&self.items)
                .arg(&self.closed)
                .arg(&self.unfinished)
                .arg(bytes.as_slice())
                .arg(self.maxsize)
                .arg(u8::from(joinable))
                .query::<i64>(c)
        });
        match r {
            Ok(-2) => Err(RedisPutError::Full(item)),
            Ok(n) if n < 0 => Err(RedisPutError::Closed(item)),
            Ok(_) => Ok(()),
            Err(e) => Err(RedisPutError::of_command(item, e)),
        }
    }

    /// Puts until there is room or `deadline` (None: no limit) passes.
    pub(crate) fn put_until(
        &self,
        mut item: T,
        deadline: Option<Instant>,
        joinable: bool,
    ) -> Result<(), RedisPutError<T>> {
        let mut pause = Duration::from_millis(1);
        loop {
            match self.put_once(item, joinable) {
                Err(RedisPutError::Full(back)) => item = back,
                other => return other,
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(RedisPutError::Timeout(item));
            }
            let left = deadline.map_or(pause, |d| d - now);
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(ROOM_POLL);
        }
    }

    /// Puts `item` at the tail, waiting for room in a bounded queue
    /// ([`with_maxsize`](RedisQueue::with_maxsize)). Fails when the queue
    /// is closed, the item cannot be encoded, or the server fails; each
    /// error gives the item back.
    pub fn put(&self, item: T) -> Result<(), RedisPutError<T>> {
        self.put_until(item, None, false)
    }

    /// [`put`](Self::put), waiting at most `timeout` for room;
    /// [`RedisPutError::Timeout`] then.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), RedisPutError<T>> {
        self.put_until(item, Some(Instant::now() + timeout), false)
    }

    /// Puts `item` if there is room now; [`RedisPutError::Full`] if not.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), RedisPutError<T>> {
        self.put_once(item, false)
    }

    fn decode(bytes: &[u8]) -> Result<T, RedisGetError> {
        postcard::from_bytes(bytes).map_err(|e| RedisGetError::Decode(e.to_string()))
    }

    /// `BLPOP items wake seconds`: the item, or `None` when
    /// the server's timeout passed; `Closed` when the wake marker came.
    fn blocking_get(&self, seconds: f64) -> Result<Option<T>, RedisGetError> {
        let block = Duration::from_secs_f64(seconds);
        let r = self.link.with_blocking_con(block, |c| {
            ::redis::cmd("BLPOP")
                .arg(&self.items)
                .arg(&self.wake)
                .arg(seconds)
                .query::<Option<(Vec<u8>, Vec<u8>)>>(c)
        });
        match r? {
            None => Ok(None),
            Some((key, value)) if key == self.items.as_bytes() => Self::decode(&value).map(Some),
            Some(_) => {
                // The queue was closed while empty: hand the marker on to
                // the next blocked getter.
                self.with_con(|c| {
                    ::redis::cmd("RPUSH")
                        .arg(&self.wake)
                        .arg(WAKE_MARKER)
                        .query::<()>(c)
                })
                .map_err(RedisGetError::from)?;
                Err(RedisGetError::Closed)
            }
        }
    }

    /// Takes the oldest item, waiting as long as it takes. Fails with
    /// [`RedisGetError::Closed`] once the queue is closed and drained, and with
    /// [`RedisGetError::Server`] if the server fails or goes away.
    pub fn get(&self) -> Result<T, RedisGetError> {
        loop {
            // Waits in slices, so that a close whose wake-up was lost (see
            // the module documentation) is still seen.
            if let Some(item) = self.blocking_get(GET_SLICE.as_secs_f64())? {
                return Ok(item);
            }
            match self.try_get() {
                Err(RedisGetError::Empty) => continue,
                other => return other,
            }
        }
    }

    /// Takes the oldest item, waiting at most `timeout` (timed by the
    /// server, at least 1 ms); [`RedisGetError::Timeout`] after that. A zero
    /// timeout is [`try_get`](Self::try_get).
    #[doc(alias = "get")]
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, RedisGetError> {
        if timeout.is_zero() {
            return self.try_get();
        }
        // BLPOP reads its timeout in seconds with millisecond precision;
        // 0 would mean "no limit", and the server refuses timeouts that
        // overflow its clock: past a year, wait for ever.
        if timeout > Duration::from_secs(365 * 24 * 3600) {
            return self.get();
        }
        let seconds = timeout.as_secs_f64().max(0.001);
        match self.blocking_get(seconds)? {
            Some(item) => Ok(item),
            // One look at the queue and its closed flag together: Closed
            // if it was closed (and its wake-up lost), an item that came
            // just now, or Timeout.
            None => match self.try_get() {
                Err(RedisGetError::Empty) => Err(RedisGetError::Timeout),
                other => other,
            },
        }
    }

    /// Takes the oldest item if there is one; [`RedisGetError::Empty`] (or
    /// [`RedisGetError::Closed`]) otherwise.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, RedisGetError> {
        let (item, closed) = self
            .with_con(|c| {
                ::redis::pipe()
                    .atomic()
                    .cmd("LPOP")
                    .arg(&self.items)
                    .cmd("EXISTS")
                    .arg(&self.closed)
                    .query::<(Option<Vec<u8>>, bool)>(c)
            })
            .map_err(RedisGetError::from)?;
        match item {
            Some(bytes) => Self::decode(&bytes),
            None if closed => Err(RedisGetError::Closed),
            None => Err(RedisGetError::Empty),
        }
    }
}

/// Another handle on the same queue, with connections of its own.
impl<T> Clone for RedisQueue<T> {
    fn clone(&self) -> Self {
        RedisQueue {
            link: self.link.fresh(),
            url: self.url.clone(),
            name: self.name.clone(),
            items: self.items.clone(),
            closed: self.closed.clone(),
            wake: self.wake.clone(),
            unfinished: self.unfinished.clone(),
            maxsize: self.maxsize,
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for RedisQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQueue")
            .field("server", &self.link.addr())
            .field("key", &self.items)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    url: String,
    name: String,
    maxsize: usize,
}

impl<T> Serialize for RedisQueue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            url: self.url.clone(),
            name: self.name.clone(),
            maxsize: self.maxsize,
        }
        .serialize(s)
    }
}

impl<'de, T> serde::Deserialize<'de> for RedisQueue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        RedisQueue::open_lazy(&w.url, &w.name)
            .map(|q| q.with_maxsize(w.maxsize))
            .map_err(serde::de::Error::custom)
    }
}

/// A private `redis-server` on a free loopback port, stopped (killed and
/// reaped) when dropped, with its temporary directory removed.
///
/// It runs `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no`
/// in a new temporary directory: nothing is written to disk. If
/// `redis-server` is not installed, [`start`](LocalServer::start) fails
/// with an error that says how to install it.
pub struct LocalServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    owner: u32,
    program: PathBuf,
    aof: bool,
}

impl LocalServer {
    /// Starts `redis-server` (found on `PATH`) and waits until it accepts
    /// connections.
    pub fn start() -> Result<LocalServer, RedisError> {
        Self::start_with(Path::new("redis-server"))
    }

    /// Starts the server program at `program` and waits until it accepts
    /// connections.
    pub fn start_with(program: &Path) -> Result<LocalServer, RedisError> {
        Self::start_opts(program, false)
    }

    /// Starts `redis-server` with its data kept on disk in its directory
    /// (an append-only file, written at every command: `--appendonly yes
    /// --appendfsync always`), so that [`restart`](Self::restart) finds it
    /// again.
    pub fn start_persistent() -> Result<LocalServer, RedisError> {
        Self::start_opts(Path::new("redis-server"), true)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and
    /// directory: a persistent one ([`start_persistent`](Self::start_persistent))
    /// comes back with its data.
    pub fn restart(&mut self) -> Result<(), RedisError> {
        self.kill()?;
        let child = Self::spawn_server(&self.program, self.port, &self.dir, self.aof)
            .map_err(|(e, _)| e)?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20)).map_err(|(e, _)| e)
    }

    fn start_opts(program: &Path, aof: bool) -> Result<LocalServer, RedisError> {
        // The free port is found by binding port 0 and letting it go, so
        // another program may take it in between: try a few times.
        let mut last = None;
        for _ in 0..5 {
            match Self::try_start(program, aof) {
                Ok(s) => return Ok(s),
                Err((e, retry)) => {
                    if !retry {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| RedisError::Start("redis-server did not start".into())))
    }

    fn try_start(program: &Path, aof: bool) -> Result<LocalServer, (RedisError, bool)> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| (os("bind", e), false))?
            .port();
        let dir = std::env::temp_dir().join(format!(
            "multiproc-redis-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| (os("mkdir", e), false))?;
        let child = match Self::spawn_server(program, port, &dir, aof) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut server = LocalServer {
            child: Some(child),
            port,
            dir,
            owner: std::process::id(),
            program: program.to_owned(),
            aof,
        };
        match server.wait_ready(Duration::from_secs(20)) {
            Ok(()) => Ok(server),
            Err((e, retry)) => Err((e, retry)),
        }
    }

    fn spawn_server(
        program: &Path,
        port: u16,
        dir: &Path,
        aof: bool,
    ) -> Result<Child, (RedisError, bool)> {
        let log = dir.join("redis.log");
        // stderr to a file, not a pipe no one reads while the server runs.
        let stderr =
            std::fs::File::create(dir.join("stderr")).map_err(|e| (os("open", e), false))?;
        let persistence: &[&str] = if aof {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let spawned = Command::new(program)
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(persistence)
            .args(["--daemonize", "no", "--logfile"])
            .arg(&log)
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn();
        spawned.map_err(|e| {
            let m = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} is not installed (or not on PATH); install it with \
                     `apt-get install redis-server` (Debian, Ubuntu)",
                    program.display()
                )
            } else {
                format!("cannot run {}: {e}", program.display())
            };
            (RedisError::Start(m), false)
        })
    }

    /// Waits until the server answers PING, or fails if it exits.
    fn wait_ready(&mut self, limit: Duration) -> Result<(), (RedisError, bool)> {
        let start = Instant::now();
        let client = ::redis::Client::open(self.url().as_str())
            .map_err(|e| (RedisError::InvalidUrl(e.to_string()), false))?;
        loop {
            let ready = client
                .get_connection_with_timeout(Duration::from_secs(1))
                .and_then(|mut c| ::redis::cmd("PING").query::<String>(&mut c));
            if ready.is_ok() {
                return Ok(());
            }
            let Some(child) = self.child.as_mut() else {
                return Err((RedisError::Start("redis-server was stopped".into()), false));
            };
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                let in_use = log.contains("Address already in use");
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                let m = format!(
                    "redis-server on port {} exited ({status}) before accepting connections: {} {}",
                    self.port,
                    err.trim(),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                );
                self.child = None;
                return Err((RedisError::Start(m), in_use));
            }
            if start.elapsed() > limit {
                return Err((
                    RedisError::Start(format!(
                        "redis-server on port {} did not accept connections within {limit:?}",
                        self.port
                    )),
                    false,
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's URL: `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (`SIGKILL`) and reaps it now; its clients see their
    /// connections closed. Does nothing if it was already stopped.
    pub fn kill(&mut self) -> Result<(), RedisError> {
        if let Some(mut child) = self.child.take() {
            if self.owner != std::process::id() {
                // A forked copy: the server is the parent's to stop.
                return Ok(());
            }
            child.kill().map_err(|e| os("kill", e))?;
            child.wait().map_err(|e| os("waitpid", e))?;
        }
        Ok(())
    }
}

/// The error of a failed system call of this process.
fn os(call: &'static str, source: std::io::Error) -> RedisError {
    RedisError::Os { call, source }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if self.owner != std::process::id() {
            return;
        }
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalServer")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .finish()
    }
}
