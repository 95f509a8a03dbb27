//! The worker side of the distributed pool: [`worker`] and [`RedisWorker`].
//!
//! A worker reads task entries from the pool's stream as a member of the
//! consumer group, runs them and stores each result under its entry id.
//! A thread beats every quarter of the claim deadline: it records the
//! worker (host, pid, start time) in the pool's worker set, and resets the
//! idle time of the entry it runs, so a long task is not taken for the
//! work of a dead worker. Between reads the worker is also the janitor:
//! it claims entries idle past the deadline (their worker died) and runs
//! them again, and moves those delivered more than the limit to the
//! dead-letter stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::task::{self, Keys, Refusal};
use super::{Link, RedisError};

/// The claim deadline when the pool set none.
pub(crate) const CLAIM_AFTER: Duration = Duration::from_secs(30);
/// The delivery limit when the pool set none.
pub(crate) const MAX_DELIVERIES: u32 = 3;
/// The longest a worker blocks in one read (it looks at the stop flag
/// between reads).
const READ_SLICE: Duration = Duration::from_millis(100);

/// The environment variable read for the authkey when none is given.
pub const AUTHKEY_ENV: &str = "MULTIPROC_AUTHKEY";

/// The authkey: `explicit`, or `$MULTIPROC_AUTHKEY`, or this process's
/// authkey (which a forked child shares with its parent).
pub(crate) fn authkey(explicit: Option<&[u8]>) -> Vec<u8> {
    if let Some(k) = explicit {
        return k.to_vec();
    }
    if let Some(v) = std::env::var_os(AUTHKEY_ENV) {
        use std::os::unix::ffi::OsStrExt;
        return v.as_bytes().to_vec();
    }
    crate::process::current_process().authkey().to_vec()
}

/// This host's name (`/proc/sys/kernel/hostname`).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Pool-wide settings kept in the server (written by the pool).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) claim_after: Duration,
    pub(crate) max_deliveries: u32,
}

impl Config {
    pub(crate) fn read(link: &Link, keys: &Keys) -> Result<Config, RedisError> {
        let (c, m): (Option<u64>, Option<u32>) = link.with_con(|c| {
            ::redis::cmd("HMGET")
                .arg(&keys.config)
                .arg("claim_after_ms")
                .arg("max_deliveries")
                .query(c)
        })?;
        Ok(Config {
            claim_after: c.map_or(CLAIM_AFTER, |ms| Duration::from_millis(ms.max(10))),
            max_deliveries: m.unwrap_or(MAX_DELIVERIES).max(1),
        })
    }

    /// How often a worker beats.
    pub(crate) fn beat(&self) -> Duration {
        (self.claim_after / 4).clamp(Duration::from_millis(20), Duration::from_secs(5))
    }
}

/// Creates the consumer group (and the stream) unless it exists.
pub(crate) fn ensure_group(link: &Link, keys: &Keys) -> Result<(), RedisError> {
    let r = link.with_con(|c| {
        ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&keys.tasks)
            .arg(task::GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query::<()>(c)
    });
    match r {
        Err(e) if !e.names("BUSYGROUP") => Err(e),
        _ => Ok(()),
    }
}

/// Runs a worker of the pool `name` on the server at `url` until the pool
/// stops its workers ([`RedisPool::stop_workers`](super::RedisPool::stop_workers)):
/// call it from `main` of the same program (the same build) as the pool,
/// on any host. The authkey is `$MULTIPROC_AUTHKEY` (the same secret on
/// every host), or this process's own (a forked child's is its parent's).
///
/// Fails when the server is gone for good (about a minute), and when a
/// task came from another build of the program or with a signature that
/// does not match the authkey: that task fails with an error saying so
/// (the caller sees it), and the worker stops rather than fail every task
/// it takes.
pub fn worker(url: &str, name: &str) -> Result<(), RedisError> {
    RedisWorker::new(url, name)?.run()
}

/// A worker of the distributed pool with settings; see [`worker`].
pub struct RedisWorker {
    link: Link,
    keys: Keys,
    key: Vec<u8>,
    token: Option<String>,
    /// How long the server may be unreachable before `run` gives up.
    patience: Duration,
    /// When `run` started (the server's clock, ms).
    started_ms: std::sync::OnceLock<u64>,
}

impl RedisWorker {
    /// A worker of the pool `name` on the server at `url`.
    pub fn new(url: &str, name: &str) -> Result<RedisWorker, RedisError> {
        Ok(RedisWorker {
            link: Link::new(url)?,
            keys: Keys::new(name)?,
            key: authkey(None),
            token: None,
            patience: Duration::from_secs(60),
            started_ms: std::sync::OnceLock::new(),
        })
    }

    /// Uses `key` as the authkey instead of `$MULTIPROC_AUTHKEY`.
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.key = key.to_vec();
        self
    }

    /// Also stops when the pool that started it as a local worker stops.
    pub(crate) fn token(mut self, token: String) -> Self {
        self.token = Some(token);
        self
    }

    /// Runs tasks until stopped; see [`worker`].
    pub fn run(self) -> Result<(), RedisError> {
        // A task's panic reaches the caller with where it happened.
        crate::task_items::install_panic_hook();
        let build = task::build_id()?;
        let started_ms = now_ms(&self.link)?;
        let _ = self.started_ms.set(started_ms);
        let consumer = format!("{}:{}:{}", hostname(), std::process::id(), started_ms);
        ensure_group(&self.link, &self.keys)?;
        let mut config = Config::read(&self.link, &self.keys)?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            running: Mutex::new(None),
        });
        let beat = {
            let shared = shared.clone();
            let link = self.link.fresh();
            let keys = self.keys.clone();
            let consumer = consumer.clone();
            let token = self.token.clone();
            let info = format!("{}\t{}\t{}", hostname(), std::process::id(), started_ms);
            std::thread::Builder::new()
                .name("multiproc-redis-beat".into())
                .spawn(move || {
                    beat_loop(&link, &keys, &consumer, &info, started_ms, token, &shared)
                })
                .map_err(|source| RedisError::Os {
                    call: "pthread_create",
                    source,
                })?
        };
        let r = self.serve(&build, &consumer, &mut config, &shared);
        shared.stop.store(true, Ordering::SeqCst);
        let _ = beat.join();
        let _ = self.link.with_con(|c| {
            ::redis::pipe()
                .cmd("ZREM")
                .arg(&self.keys.workers)
                .arg(&consumer)
                .ignore()
                .cmd("HDEL")
                .arg(&self.keys.info)
                .arg(&consumer)
                .ignore()
                .query::<()>(c)
        });
        r
    }

    fn serve(
        &self,
        build: &[u8; 32],
        consumer: &str,
        config: &mut Config,
        shared: &Shared,
    ) -> Result<(), RedisError> {
        let claim = task::claim_script();
        let mut next_claim = Instant::now();
        let mut down_since: Option<Instant> = None;
        let mut out = Vec::new();
        let mut next_stop_check = Instant::now();
        while !shared.stop.load(Ordering::SeqCst) {
            if Instant::now() >= next_stop_check {
                next_stop_check = Instant::now() + READ_SLICE;
                if let Ok(true) = self.stopped() {
                    break;
                }
            }
            let mut todo = Vec::new();
            let mut failed = None;
            if Instant::now() >= next_claim {
                match Config::read(&self.link, &self.keys) {
                    Ok(c) => *config = c,
                    Err(m) => failed = Some(m),
                }
                next_claim = Instant::now() + config.claim_after / 2;
                let r = self.link.with_con(|c| {
                    ::redis::cmd("EVAL")
                        .arg(&claim)
                        .arg(4)
                        .arg(&self.keys.tasks)
                        .arg(&self.keys.results)
                        .arg(&self.keys.done)
                        .arg(&self.keys.dead)
                        .arg(task::GROUP)
                        .arg(consumer)
                        .arg(config.claim_after.as_millis() as u64)
                        .arg(16)
                        .arg(config.max_deliveries)
                        .query::<::redis::Value>(c)
                });
                match r {
                    Ok(v) => todo.extend(task::entries(v)),
                    Err(m) => failed = Some(m),
                }
            }
            if todo.is_empty() && failed.is_none() {
                let r = self.link.with_blocking_con(READ_SLICE, |c| {
                    ::redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(task::GROUP)
                        .arg(consumer)
                        .arg("COUNT")
                        .arg(1)
                        .arg("BLOCK")
                        .arg(READ_SLICE.as_millis() as u64)
                        .arg("STREAMS")
                        .arg(&self.keys.tasks)
                        .arg(">")
                        .query::<::redis::Value>(c)
                });
                match r {
                    Ok(v) => todo.extend(task::xread_entries(v)),
                    // The group is gone (the server lost its data, or the
                    // pool's keys were deleted): make it again.
                    Err(e) if e.names("NOGROUP") => {
                        let _ = ensure_group(&self.link, &self.keys);
                    }
                    Err(m) => failed = Some(m),
                }
            }
            if let Some(e) = failed {
                let since = *down_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.patience {
                    return Err(gave_up(self.patience, e));
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            down_since = None;
            for (id, fields) in todo {
                *shared.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
                let r = self.run_entry(build, &id, &fields, &mut out);
                *shared.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
                r?;
            }
        }
        Ok(())
    }

    /// Whether the pool stopped this worker (`stop_workers`, or its local
    /// pool's `join`).
    fn stopped(&self) -> Result<bool, RedisError> {
        let started = self.started_ms.get().copied().unwrap_or(0);
        let (stop_at, mine): (Option<u64>, bool) = self.link.with_con(|c| {
            let mut p = ::redis::pipe();
            p.cmd("GET").arg(&self.keys.stop);
            match &self.token {
                Some(t) => p.cmd("EXISTS").arg(self.keys.stop_token(t)),
                None => p.cmd("EXISTS").arg(&self.keys.stop),
            };
            p.query(c)
        })?;
        Ok(stop_at.is_some_and(|t| t >= started) || (self.token.is_some() && mine))
    }

    /// Runs one entry and stores its result. An error stops the worker
    /// (after the task's result says why).
    fn run_entry(
        &self,
        build: &[u8; 32],
        id: &str,
        fields: &[(Vec<u8>, Vec<u8>)],
        out: &mut Vec<u8>,
    ) -> Result<(), RedisError> {
        let t = task::field(fields, b"t");
        let m = task::field(fields, b"m");
        out.clear();
        let mut fatal = None;
        match task::check(&self.key, build, t, m) {
            Ok(c) => {
                task::result_head(out, task::KIND_ITEMS, c.job, c.first, c.count);
                c.run(out);
            }
            Err(why) => {
                let msg = match why {
                    Refusal::Signature => format!(
                        "worker {} (pid {}) refused the task: its signature does not match the \
                         worker's authkey (set {AUTHKEY_ENV} to the same secret for the pool and \
                         every worker)",
                        hostname(),
                        std::process::id()
                    ),
                    Refusal::Build(theirs) => format!(
                        "worker {} (pid {}) runs another build of the program (executable \
                         {}, the task's {theirs}): it refused the task instead of calling into \
                         different code; run the same executable everywhere",
                        hostname(),
                        std::process::id(),
                        task::build_hex(build)
                    ),
                    Refusal::Code(e) => format!("the task names code this build lacks: {e}"),
                };
                task::result_head(
                    out,
                    task::KIND_FAILED,
                    task::u64_at(t, 1),
                    task::u64_at(t, 9),
                    task::u32_at(t, 17),
                );
                out.extend_from_slice(msg.as_bytes());
                fatal = Some(msg);
            }
        }
        self.store(id, out)?;
        match fatal {
            Some(m) => Err(RedisError::TaskRefused(m)),
            None => Ok(()),
        }
    }

    /// Stores a result, trying again while the server is away (the task
    /// is not run again for that).
    fn store(&self, id: &str, payload: &[u8]) -> Result<(), RedisError> {
        let start = Instant::now();
        loop {
            let r = self.link.with_con(|c| {
                ::redis::cmd("EVAL")
                    .arg(task::STORE)
                    .arg(3)
                    .arg(&self.keys.tasks)
                    .arg(&self.keys.results)
                    .arg(&self.keys.done)
                    .arg(task::GROUP)
                    .arg(id)
                    .arg(payload)
                    .query::<i64>(c)
            });
            match r {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > self.patience => return Err(gave_up(self.patience, e)),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// What the worker's two threads share.
struct Shared {
    stop: AtomicBool,
    /// The entry being run.
    running: Mutex<Option<String>>,
}

/// The error of a worker that gave up on a server failing for `patience`:
/// the last failure, saying so.
fn gave_up(patience: Duration, e: RedisError) -> RedisError {
    let m = format!("the worker gives up: the server failed for {patience:?}: {e}");
    match e {
        RedisError::Unreachable(_) => RedisError::Unreachable(m),
        RedisError::WrongType(_) => RedisError::WrongType(m),
        RedisError::Protocol(_) => RedisError::Protocol(m),
        _ => RedisError::Server(m),
    }
}

pub(crate) fn now_ms(link: &Link) -> Result<u64, RedisError> {
    link.with_con(|c| ::redis::cmd("EVAL").arg(task::NOW).arg(0).query::<u64>(c))
}

fn beat_loop(
    link: &Link,
    keys: &Keys,
    consumer: &str,
    info: &str,
    started_ms: u64,
    token: Option<String>,
    shared: &Shared,
) {
    let mut config = Config {
        claim_after: CLAIM_AFTER,
        max_deliveries: MAX_DELIVERIES,
    };
    let stop_token = token.map(|t| keys.stop_token(&t));
    while !shared.stop.load(Ordering::SeqCst) {
        if let Ok(c) = Config::read(link, keys) {
            config = c;
        }
        let running = shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let r = link.with_con(|c| {
            let mut p = ::redis::pipe();
            p.cmd("EVAL")
                .arg(task::BEAT)
                .arg(2)
                .arg(&keys.workers)
                .arg(&keys.info)
                .arg(consumer)
                .arg(info)
                .ignore();
            if let Some(id) = &running {
                // Resets the entry's idle time (JUSTID: no new delivery).
                p.cmd("XCLAIM")
                    .arg(&keys.tasks)
                    .arg(task::GROUP)
                    .arg(consumer)
                    .arg(0)
                    .arg(id)
                    .arg("JUSTID")
                    .ignore();
            }
            p.cmd("GET").arg(&keys.stop);
            match &stop_token {
                Some(k) => p.cmd("EXISTS").arg(k),
                None => p.cmd("EXISTS").arg(&keys.stop),
            };
            p.query::<(Option<u64>, bool)>(c)
        });
        if let Ok((stop_at, mine)) = r
            && (stop_at.is_some_and(|t| t >= started_ms) || (stop_token.is_some() && mine))
        {
            shared.stop.store(true, Ordering::SeqCst);
            return;
        }
        // Sleeps a beat, in slices so that a stop is seen soon.
        let until = Instant::now() + config.beat();
        while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(config.beat()));
        }
    }
}
