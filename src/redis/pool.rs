//! The caller side of the distributed pool: [`RedisPool`].
//!
//! See the [module documentation](super#the-distributed-pool).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::task::{self, Keys, TaskCode};
use super::worker::{self, Config, RedisWorker};
use super::{Link, RedisError, RedisTaskError};
use crate::process::Process;
use crate::task_items::{ResultHandle, keep_or_run};

/// The longest one wait on the server lasts while a call waits for
/// results (callbacks and the janitor run between waits).
const PUMP_SLICE: Duration = Duration::from_millis(100);

/// Settings for a [`RedisPool`]: `RedisPool::builder(url, name)`.
#[must_use]
pub struct RedisPoolBuilder {
    url: String,
    name: String,
    key: Option<Vec<u8>>,
    local: usize,
    claim_after: Option<Duration>,
    max_deliveries: Option<u32>,
    allow_threads: bool,
}

impl RedisPoolBuilder {
    /// Starts `n` worker processes on this machine (forked; they run
    /// [`worker`](super::worker) and stop at [`join`](RedisPool::join) or
    /// when the pool is dropped, and die with the pool's process, SIGKILL
    /// included: the kernel ties that to the thread that called `build`,
    /// so build from a thread that outlives the pool). Workers elsewhere
    /// may join in any time.
    pub fn local_workers(mut self, n: usize) -> Self {
        self.local = n;
        self
    }

    /// The secret shared by the pool and its workers, which sign and check
    /// every task (a worker runs code named by a task only if it is signed
    /// with it). By default `$MULTIPROC_AUTHKEY`, or this process's authkey
    /// (which forked local workers share).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.key = Some(key.to_vec());
        self
    }

    /// How long an entry handed to a worker may go without a heartbeat
    /// from it before another worker (or the caller's janitor) takes it
    /// for the work of a dead worker and runs it again (30 s by default).
    /// Workers beat every quarter of it. A setting of the pool's name on
    /// the server: every worker follows it.
    pub fn claim_after(mut self, d: Duration) -> Self {
        self.claim_after = Some(d.max(Duration::from_millis(10)));
        self
    }

    /// How many times an entry may be delivered (its workers dying each
    /// time) before it goes to the dead-letter stream and its tasks fail
    /// with an error naming the attempts (3 by default). A setting of the
    /// pool's name on the server.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = Some(n.max(1));
        self
    }

    /// Lets [`local_workers`](Self::local_workers) fork while other threads
    /// run.
    ///
    /// # Safety
    ///
    /// As for [`Process::allow_threads`]: no lock another thread may hold
    /// at the fork is taken in the child (the worker takes only its own).
    pub unsafe fn allow_threads(mut self) -> Self {
        self.allow_threads = true;
        self
    }

    /// Connects, records the settings on the server, starts the local
    /// workers.
    pub fn build(self) -> Result<RedisPool, RedisError> {
        let link = Link::new(&self.url)?;
        let keys = Keys::new(&self.name)?;
        let key = worker::authkey(self.key.as_deref());
        task::build_id()?;
        worker::ensure_group(&link, &keys)?;
        if self.claim_after.is_some() || self.max_deliveries.is_some() {
            link.with_con(|c| {
                let mut cmd = ::redis::cmd("HSET");
                cmd.arg(&keys.config);
                if let Some(d) = self.claim_after {
                    cmd.arg("claim_after_ms").arg(d.as_millis() as u64);
                }
                if let Some(n) = self.max_deliveries {
                    cmd.arg("max_deliveries").arg(n);
                }
                cmd.query::<()>(c)
            })?;
        }
        let last_done = last_id(&link, &keys.done)?;
        let token = format!("{}-{}", std::process::id(), worker::now_ms(&link)?);
        let inner = Arc::new(Inner {
            link,
            keys,
            key,
            state: Mutex::new(State {
                jobs: HashMap::new(),
                entries: HashMap::new(),
                last_done,
                next_janitor: Instant::now(),
                closed: false,
                terminated: false,
                ready: Vec::new(),
            }),
        });
        let mut pool = RedisPool {
            inner,
            url: self.url.clone(),
            name: self.name.clone(),
            token,
            locals: Vec::new(),
        };
        for _ in 0..self.local {
            let url = self.url.clone();
            let name = self.name.clone();
            let key = pool.inner.key.clone();
            let token = pool.token.clone();
            let p = Process::new(move || -> crate::Result<()> {
                Ok(RedisWorker::new(&url, &name)?
                    .authkey(&key)
                    .token(token)
                    .run()?)
            })
            // A local worker dies with the pool's process (killed included:
            // its entries are then claimed by other workers), and is
            // killed if its handle is dropped.
            .with_die_with_parent(true)
            .with_daemon(true);
            let mut p = if self.allow_threads {
                // SAFETY: the caller of `allow_threads` vouched for it.
                unsafe { p.allow_threads() }
            } else {
                p
            };
            p.start().map_err(RedisError::local_worker)?;
            pool.locals.push(p);
        }
        Ok(pool)
    }
}

/// Why a chunk has no items.
type ChunkOutcome = Result<Vec<u8>, String>;

struct Chunk {
    id: String,
    count: u32,
    outcome: Option<ChunkOutcome>,
}

/// Every chunk of a finished job, in order.
type Outcome = Vec<(u32, ChunkOutcome)>;

type Callback = crate::task_items::Callback<Outcome>;

struct Job {
    chunks: Vec<Chunk>,
    done: usize,
    /// `imap`: chunks are taken one by one (`arrivals` in completion order).
    streaming: bool,
    arrivals: VecDeque<usize>,
    callbacks: Vec<Callback>,
    completed: Option<Arc<Outcome>>,
}

struct State {
    jobs: HashMap<u64, Job>,
    /// Entry id -> (job, chunk index), for the chunks without a result.
    entries: HashMap<String, (u64, usize)>,
    last_done: String,
    next_janitor: Instant,
    closed: bool,
    terminated: bool,
    ready: Vec<(Callback, Arc<Outcome>)>,
}

struct Inner {
    link: Link,
    keys: Keys,
    key: Vec<u8>,
    state: Mutex<State>,
}

/// A pool whose tasks live in a Redis stream, run by workers on any host;
/// see the [module documentation](super#the-distributed-pool).
///
/// It has the local [`Pool`](crate::Pool)'s API: `map`, `imap`,
/// `imap_unordered`, `apply_async` with callbacks, `close`, `join`.
/// Results are collected, and callbacks run, inside the calls that wait
/// (as in the local pool: no thread of its own). It owns its local worker
/// processes, so it is not `Send`; its handles ([`RedisAsyncResult`],
/// [`RedisIMap`]) are.
pub struct RedisPool {
    inner: Arc<Inner>,
    url: String,
    name: String,
    token: String,
    locals: Vec<Process<'static, ()>>,
}

/// A live worker of a distributed pool, from its heartbeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Its consumer name in the group: `host:pid:start`.
    pub id: String,
    /// Its host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// When it started, in ms since the epoch (the server's clock).
    pub started_ms: u64,
    /// Its last heartbeat, in ms since the epoch (the server's clock).
    pub last_beat_ms: u64,
}

/// A result found by [`RedisPool::recover`]: the job (see
/// [`RedisAsyncResult::job`]), the item's index in it, and its result.
#[derive(Debug)]
pub struct Recovered<R> {
    /// The job that submitted the item.
    pub job: u64,
    /// The item's index in its job.
    pub index: u64,
    /// The task's result.
    pub result: Result<R, RedisTaskError>,
}

fn last_id(link: &Link, key: &str) -> Result<String, RedisError> {
    let v = link.with_con(|c| {
        ::redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query::<::redis::Value>(c)
    })?;
    Ok(task::entries(v)
        .into_iter()
        .next()
        .map_or_else(|| "0-0".to_owned(), |(id, _)| id))
}

/// Decodes the items of a chunk.
fn decode_items<R: DeserializeOwned>(
    count: u32,
    o: &ChunkOutcome,
    out: &mut Vec<Result<R, RedisTaskError>>,
) {
    match o {
        Err(m) => out.extend((0..count).map(|_| Err(RedisTaskError::TaskFailed(m.clone())))),
        Ok(bytes) => {
            let mut rest = bytes.as_slice();
            for _ in 0..count {
                let item = match rest.split_first() {
                    Some((&task::ITEM_OK, tail)) => match postcard::take_from_bytes::<R>(tail) {
                        Ok((v, tail)) => {
                            rest = tail;
                            Ok(v)
                        }
                        Err(e) => Err(RedisTaskError::Codec(format!(
                            "a result could not be decoded: {e}"
                        ))),
                    },
                    Some((&task::ITEM_ERR, tail)) => {
                        match postcard::take_from_bytes::<String>(tail) {
                            Ok((m, tail)) => {
                                rest = tail;
                                Err(RedisTaskError::TaskFailed(m))
                            }
                            Err(e) => Err(RedisTaskError::Codec(format!(
                                "a result could not be decoded: {e}"
                            ))),
                        }
                    }
                    _ => Err(RedisTaskError::Codec(
                        "a result is missing or malformed".into(),
                    )),
                };
                let bad = matches!(item, Err(RedisTaskError::Codec(_)));
                out.push(item);
                if bad {
                    // The rest cannot be found.
                    rest = &[];
                }
            }
        }
    }
}

/// A result payload read from the server: its job, first index, count and
/// outcome.
fn parse_result(id: &str, p: &[u8], dead_key: &str) -> Option<(u64, u64, u32, ChunkOutcome)> {
    if p.len() < task::RESULT_HEAD {
        return None;
    }
    let job = task::u64_at(p, 1);
    let first = task::u64_at(p, 9);
    let count = task::u32_at(p, 17);
    let rest = &p[task::RESULT_HEAD..];
    let o = match p[0] {
        task::KIND_ITEMS => Ok(rest.to_vec()),
        task::KIND_FAILED => Err(String::from_utf8_lossy(rest).into_owned()),
        task::KIND_DEAD => Err(format!(
            "the task's entry {id} was delivered {} times without a result (each of its \
             workers died or was lost); it was moved to the dead-letter stream {dead_key}",
            String::from_utf8_lossy(rest)
        )),
        _ => return None,
    };
    Some((job, first, count.min(1 << 20), o))
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Collects the results that came (waiting up to `wait` for one), runs
    /// the janitor when due. Server errors are passed over (the next call
    /// tries again): the caller's waits are bounded by their deadlines.
    fn pump(&self, st: &mut State, wait: Duration) {
        if Instant::now() >= st.next_janitor {
            self.janitor(st);
        }
        let block = wait.as_millis() as u64;
        let r = self.link.with_blocking_con(wait, |c| {
            let mut cmd = ::redis::cmd("XREAD");
            cmd.arg("COUNT").arg(1000);
            if block > 0 {
                cmd.arg("BLOCK").arg(block);
            }
            cmd.arg("STREAMS")
                .arg(&self.keys.done)
                .arg(&st.last_done)
                .query::<::redis::Value>(c)
        });
        let Ok(v) = r else {
            std::thread::sleep(wait.min(Duration::from_millis(50)));
            return;
        };
        let got = task::xread_entries(v);
        if let Some((last, _)) = got.last() {
            st.last_done = last.clone();
        }
        let ids: Vec<String> = got
            .into_iter()
            .map(|(_, f)| String::from_utf8_lossy(task::field(&f, b"i")).into_owned())
            .filter(|id| st.entries.contains_key(id))
            .collect();
        self.fetch(st, &ids);
    }

    /// Reads the results of `ids` (entries of ours) and files them.
    fn fetch(&self, st: &mut State, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let r = self.link.with_con(|c| {
            ::redis::cmd("HMGET")
                .arg(&self.keys.results)
                .arg(ids)
                .query::<Vec<Option<Vec<u8>>>>(c)
        });
        let Ok(payloads) = r else { return };
        for (id, p) in ids.iter().zip(payloads) {
            let Some(p) = p else { continue };
            let Some(&(job, chunk)) = st.entries.get(id) else {
                continue;
            };
            let outcome = match parse_result(id, &p, &self.keys.dead) {
                Some((_, _, _, o)) => o,
                None => Err(format!("the result of entry {id} is malformed")),
            };
            st.entries.remove(id);
            self.file(st, job, chunk, outcome);
        }
    }

    fn file(&self, st: &mut State, job_id: u64, chunk: usize, outcome: ChunkOutcome) {
        let Some(job) = st.jobs.get_mut(&job_id) else {
            return;
        };
        let Some(c) = job.chunks.get_mut(chunk) else {
            return;
        };
        if c.outcome.is_some() {
            return;
        }
        c.outcome = Some(outcome);
        job.done += 1;
        if job.streaming {
            job.arrivals.push_back(chunk);
            return;
        }
        if job.done == job.chunks.len() {
            let ids: Vec<String> = job.chunks.iter().map(|c| c.id.clone()).collect();
            let outcome: Outcome = job
                .chunks
                .iter_mut()
                .map(|c| (c.count, c.outcome.take().unwrap_or(Err(String::new()))))
                .collect();
            let outcome = Arc::new(outcome);
            job.completed = Some(outcome.clone());
            for cb in job.callbacks.drain(..) {
                st.ready.push((cb, outcome.clone()));
            }
            self.forget(&ids);
        }
    }

    /// Removes collected entries and their results from the server. A
    /// worker still running one of them (it was taken for dead) finds the
    /// entry gone and stores nothing.
    fn forget(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let _ = self.link.with_con(|c| {
            ::redis::pipe()
                .cmd("XDEL")
                .arg(&self.keys.tasks)
                .arg(ids)
                .ignore()
                .cmd("HDEL")
                .arg(&self.keys.results)
                .arg(ids)
                .ignore()
                .query::<()>(c)
        });
    }

    /// The caller's janitor: dead-letters entries delivered the limit and
    /// idle past the deadline, and reads the results of its entries
    /// directly (in case a notification was missed).
    fn janitor(&self, st: &mut State) {
        let config = Config::read(&self.link, &self.keys).unwrap_or(Config {
            claim_after: worker::CLAIM_AFTER,
            max_deliveries: worker::MAX_DELIVERIES,
        });
        st.next_janitor = Instant::now() + config.claim_after / 2;
        if st.entries.is_empty() {
            return;
        }
        self.reap(config);
        let ids: Vec<String> = st.entries.keys().take(10_000).cloned().collect();
        self.fetch(st, &ids);
    }

    /// Dead-letters the entries delivered the limit and idle past the
    /// deadline.
    fn reap(&self, config: Config) {
        let _ = self.link.with_con(|c| {
            ::redis::cmd("EVAL")
                .arg(task::reap_script())
                .arg(4)
                .arg(&self.keys.tasks)
                .arg(&self.keys.results)
                .arg(&self.keys.done)
                .arg(&self.keys.dead)
                .arg(task::GROUP)
                .arg(config.claim_after.as_millis() as u64)
                .arg(config.max_deliveries)
                .query::<i64>(c)
        });
    }

    /// Runs the callbacks that became ready (the state unlocked).
    fn finish(&self, mut st: MutexGuard<'_, State>) {
        let ready = std::mem::take(&mut st.ready);
        drop(st);
        for (cb, o) in ready {
            cb(&o);
        }
    }

    /// Waits for job `job` until `deadline`.
    fn wait_job(&self, job: u64, deadline: Option<Instant>) -> Option<Arc<Outcome>> {
        loop {
            let mut st = self.lock();
            match st.jobs.get(&job) {
                Some(j) if j.completed.is_some() => {
                    let o = j.completed.clone();
                    self.finish(st);
                    return o;
                }
                Some(_) => {}
                None => return None,
            }
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // One look without waiting.
                        self.pump(&mut st, Duration::ZERO);
                        let o = st.jobs.get(&job).and_then(|j| j.completed.clone());
                        self.finish(st);
                        return o;
                    }
                    left.min(PUMP_SLICE)
                }
                None => PUMP_SLICE,
            };
            self.pump(&mut st, wait);
            self.finish(st);
        }
    }

    /// Submits the chunks of a new job.
    fn submit<A: Serialize>(
        &self,
        code: TaskCode,
        items: Vec<A>,
        chunksize: usize,
        streaming: bool,
    ) -> Result<u64, RedisTaskError> {
        let build = task::build_id()?;
        {
            let st = self.lock();
            if st.closed || st.terminated {
                return Err(RedisTaskError::PoolClosed);
            }
        }
        let job: u64 = self
            .link
            .with_con(|c| ::redis::cmd("INCR").arg(&self.keys.jobseq).query(c))?;
        let mut bodies = Vec::new();
        let mut counts = Vec::new();
        let mut first = 0u64;
        let mut it = items.into_iter().peekable();
        while it.peek().is_some() {
            let mut t = Vec::new();
            let n = chunksize.min(u32::MAX as usize);
            let chunk: Vec<A> = it.by_ref().take(n).collect();
            task::task_head(&mut t, job, first, chunk.len() as u32, &build, code);
            for a in &chunk {
                postcard::to_io(a, &mut t).map_err(|e| RedisTaskError::Codec(e.to_string()))?;
            }
            let m = task::sign(&self.key, &t);
            counts.push(chunk.len() as u32);
            first += chunk.len() as u64;
            bodies.push((t, m));
        }
        let mut st = self.lock();
        let ids: Vec<String> = self.link.with_con(|c| {
            let mut p = ::redis::pipe();
            for (t, m) in &bodies {
                p.cmd("XADD")
                    .arg(&self.keys.tasks)
                    .arg("*")
                    .arg("t")
                    .arg(t.as_slice())
                    .arg("m")
                    .arg(m.as_slice());
            }
            p.query(c)
        })?;
        let chunks = ids
            .iter()
            .zip(&counts)
            .map(|(id, &count)| Chunk {
                id: id.clone(),
                count,
                outcome: None,
            })
            .collect::<Vec<_>>();
        for (i, id) in ids.iter().enumerate() {
            st.entries.insert(id.clone(), (job, i));
        }
        let empty = chunks.is_empty();
        st.jobs.insert(
            job,
            Job {
                chunks,
                done: 0,
                streaming,
                arrivals: VecDeque::new(),
                callbacks: Vec::new(),
                completed: if empty && !streaming {
                    Some(Arc::new(Vec::new()))
                } else {
                    None
                },
            },
        );
        Ok(job)
    }
}

impl RedisPool {
    /// Settings for a pool named `name` on the server at `url`.
    pub fn builder(url: &str, name: &str) -> RedisPoolBuilder {
        RedisPoolBuilder {
            url: url.to_owned(),
            name: name.to_owned(),
            key: None,
            local: 0,
            claim_after: None,
            max_deliveries: None,
            allow_threads: false,
        }
    }

    /// A pool named `name` on the server at `url`, without local workers.
    pub fn new(url: &str, name: &str) -> Result<RedisPool, RedisError> {
        Self::builder(url, name).build()
    }

    /// Opens the pool `name` again after its caller ended (killed, say):
    /// [`recover`](Self::recover) then gets the results its tasks left,
    /// and new work can be given. Workers keep running what was queued.
    pub fn attach(url: &str, name: &str) -> Result<RedisPool, RedisError> {
        Self::new(url, name)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The live workers: those whose last heartbeat is within the claim
    /// deadline (by the server's clock).
    pub fn workers(&self) -> Result<Vec<WorkerInfo>, RedisError> {
        let inner = &self.inner;
        let config = Config::read(&inner.link, &inner.keys)?;
        let now = worker::now_ms(&inner.link)?;
        let since = now.saturating_sub(config.claim_after.as_millis() as u64);
        let live: Vec<(String, u64)> = inner.link.with_con(|c| {
            ::redis::cmd("ZRANGEBYSCORE")
                .arg(&inner.keys.workers)
                .arg(since)
                .arg("+inf")
                .arg("WITHSCORES")
                .query(c)
        })?;
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&String> = live.iter().map(|(id, _)| id).collect();
        let infos: Vec<Option<String>> = inner.link.with_con(|c| {
            ::redis::cmd("HMGET")
                .arg(&inner.keys.info)
                .arg(&ids)
                .query(c)
        })?;
        Ok(live
            .iter()
            .zip(infos)
            .map(|((id, beat), info)| {
                let info = info.unwrap_or_default();
                let mut parts = info.split('\t');
                WorkerInfo {
                    id: id.clone(),
                    host: parts.next().unwrap_or("").to_owned(),
                    pid: parts.next().and_then(|p| p.parse().ok()).unwrap_or(0),
                    started_ms: parts.next().and_then(|p| p.parse().ok()).unwrap_or(0),
                    last_beat_ms: *beat,
                }
            })
            .collect())
    }

    /// The pids of the local workers.
    pub fn local_pids(&self) -> Vec<i32> {
        self.locals.iter().filter_map(Process::pid).collect()
    }

    fn default_chunksize(&self, len: usize) -> usize {
        let workers = self
            .workers()
            .map_or(0, |w| w.len())
            .max(self.locals.len())
            .max(1);
        len.div_ceil(4 * workers).max(1)
    }

    /// Runs `f(arg)` in a worker and waits for its result.
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R, RedisTaskError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Queues `f(arg)`; a handle to its result, with callbacks.
    pub fn apply_async<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> Result<RedisAsyncResult<R>, RedisTaskError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let job = self.inner.submit(
            TaskCode::new(f).map_err(RedisTaskError::from_internal)?,
            vec![arg],
            1,
            false,
        )?;
        Ok(self.handle(job, decode_one::<R>))
    }

    fn handle<T>(
        &self,
        job: u64,
        decode: fn(&Outcome) -> Result<T, RedisTaskError>,
    ) -> RedisAsyncResult<T> {
        RedisAsyncResult {
            inner: self.inner.clone(),
            job,
            decode,
        }
    }

    /// `f` over every item, results in order; the first failed task's
    /// error is returned. Chunks of `len / (4 * live workers)` rounded up.
    pub fn map<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, RedisTaskError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async(f, items)?.get()
    }

    /// [`map`](Self::map) with chunks of `chunksize` items.
    pub fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, RedisTaskError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async_chunked(f, items, chunksize)?.get()
    }

    /// [`map`](Self::map) without waiting.
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<RedisAsyncResult<Vec<R>>, RedisTaskError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items: Vec<A> = items.into_iter().collect();
        let cs = self.default_chunksize(items.len());
        self.map_async_chunked(f, items, cs)
    }

    /// [`map_async`](Self::map_async) with chunks of `chunksize` items.
    pub fn map_async_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<RedisAsyncResult<Vec<R>>, RedisTaskError>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        if chunksize == 0 {
            return Err(RedisTaskError::InvalidArgument(
                "chunksize must be at least 1",
            ));
        }
        let job = self.inner.submit(
            TaskCode::new(f).map_err(RedisTaskError::from_internal)?,
            items.into_iter().collect(),
            chunksize,
            false,
        )?;
        Ok(self.handle(job, decode_all::<R>))
    }

    /// `f(a, b)` for every pair, results in order.
    pub fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, RedisTaskError>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items: Vec<(A, B)> = items.into_iter().collect();
        let cs = self.default_chunksize(items.len());
        let job = self.inner.submit(
            TaskCode::new2(f).map_err(RedisTaskError::from_internal)?,
            items,
            cs,
            false,
        )?;
        self.handle(job, decode_all::<R>).get()
    }

    fn start_imap<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
        ordered: bool,
    ) -> RedisIMap<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let mut it = RedisIMap {
            inner: self.inner.clone(),
            job: None,
            ordered,
            next: 0,
            buffered: VecDeque::new(),
        };
        let started = (|| {
            if chunksize == 0 {
                return Err(RedisTaskError::InvalidArgument(
                    "chunksize must be at least 1",
                ));
            }
            self.inner.submit(
                TaskCode::new(f).map_err(RedisTaskError::from_internal)?,
                items.into_iter().collect(),
                chunksize,
                true,
            )
        })();
        match started {
            Ok(job) => it.job = Some(job),
            Err(e) => it.buffered.push_back(Err(e)),
        }
        it
    }

    /// An iterator of `f` over `items`, results in order (chunks of 1).
    /// The items are all submitted at once; an error before any was
    /// submitted is the only item.
    pub fn imap<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> RedisIMap<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, 1, true)
    }

    /// [`imap`](Self::imap) with chunks of `chunksize` items.
    pub fn imap_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> RedisIMap<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, chunksize, true)
    }

    /// Like [`imap`](Self::imap), results in the order they are finished.
    pub fn imap_unordered<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> RedisIMap<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, 1, false)
    }

    /// [`imap_unordered`](Self::imap_unordered) with chunks.
    pub fn imap_unordered_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> RedisIMap<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, chunksize, false)
    }

    /// Accepts no more work from this handle.
    pub fn close(&self) {
        self.inner.lock().closed = true;
    }

    /// After [`close`](Self::close): waits until every job given through
    /// this handle has its results (workers that die meanwhile have their
    /// entries run again by others), then stops the local workers.
    /// [`RedisError::InvalidArgument`] if the pool is not closed.
    pub fn join(&mut self) -> Result<(), RedisError> {
        self.join_timeout(None)
    }

    /// [`join`](Self::join), waiting at most `timeout` for the results
    /// ([`RedisError::Timeout`] then, the local workers left running).
    pub fn join_timeout(&mut self, timeout: Option<Duration>) -> Result<(), RedisError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let mut st = self.inner.lock();
            if !st.closed {
                return Err(RedisError::InvalidArgument("join a pool only after close"));
            }
            let pending = st
                .jobs
                .values()
                .any(|j| j.completed.is_none() && j.done < j.chunks.len());
            if !pending {
                self.inner.finish(st);
                break;
            }
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(RedisError::Timeout);
                    }
                    left.min(PUMP_SLICE)
                }
                None => PUMP_SLICE,
            };
            self.inner.pump(&mut st, wait);
            self.inner.finish(st);
        }
        self.stop_locals()
    }

    fn stop_locals(&mut self) -> Result<(), RedisError> {
        if self.locals.is_empty() {
            return Ok(());
        }
        let key = self.inner.keys.stop_token(&self.token);
        let _ = self.inner.link.with_con(|c| {
            ::redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("PX")
                .arg(600_000)
                .query::<()>(c)
        });
        let config = Config::read(&self.inner.link, &self.inner.keys).unwrap_or(Config {
            claim_after: worker::CLAIM_AFTER,
            max_deliveries: worker::MAX_DELIVERIES,
        });
        let patience = config.beat() * 2 + Duration::from_secs(5);
        for mut p in self.locals.drain(..) {
            let ended = p.join_timeout(patience).map_err(RedisError::local_worker)?;
            if ended.is_none() {
                p.kill().map_err(RedisError::local_worker)?;
                p.join().map_err(RedisError::local_worker)?;
            }
        }
        Ok(())
    }

    /// Kills the local workers at once (their entries are run again by
    /// other workers after the claim deadline); handles of unfinished jobs
    /// fail with [`RedisTaskError::PoolTerminated`].
    pub fn terminate(&mut self) -> Result<(), RedisError> {
        {
            let mut st = self.inner.lock();
            st.closed = true;
            st.terminated = true;
        }
        for mut p in self.locals.drain(..) {
            let _ = p.kill();
            p.join().map_err(RedisError::local_worker)?;
        }
        Ok(())
    }

    /// Stops every worker of this pool name (on any host) that started
    /// before now: each finishes the task it runs and exits.
    pub fn stop_workers(&self) -> Result<(), RedisError> {
        let now = worker::now_ms(&self.inner.link)?;
        self.inner.link.with_con(|c| {
            ::redis::cmd("SET")
                .arg(&self.inner.keys.stop)
                .arg(now)
                .query::<()>(c)
        })
    }

    /// Collects the results left on the server by earlier callers of this
    /// pool name (after [`attach`](Self::attach)), waiting up to `timeout`
    /// for the tasks still queued or running; returns what it found
    /// (compare with what was submitted). Each result is removed as it is
    /// returned. Use it once no other caller of the name is running.
    pub fn recover<R: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<Vec<Recovered<R>>, RedisError> {
        let inner = &self.inner;
        let deadline = Instant::now() + timeout;
        let mut found = Vec::new();
        loop {
            let all: Vec<(String, Vec<u8>)> = inner
                .link
                .with_con(|c| ::redis::cmd("HGETALL").arg(&inner.keys.results).query(c))?;
            let mine = {
                let st = inner.lock();
                st.entries.clone()
            };
            let mut ids = Vec::new();
            for (id, p) in all {
                if mine.contains_key(&id) {
                    continue;
                }
                if let Some((job, first, count, o)) = parse_result(&id, &p, &inner.keys.dead) {
                    let mut items = Vec::new();
                    decode_items::<R>(count, &o, &mut items);
                    for (i, result) in items.into_iter().enumerate() {
                        found.push(Recovered {
                            job,
                            index: first + i as u64,
                            result,
                        });
                    }
                }
                ids.push(id);
            }
            inner.forget(&ids);
            let left: usize = inner
                .link
                .with_con(|c| ::redis::cmd("XLEN").arg(&inner.keys.tasks).query(c))?;
            let ours = inner.lock().entries.len();
            if left <= ours || Instant::now() >= deadline {
                return Ok(found);
            }
            // Run the janitor's dead-lettering, then wait for more.
            if let Ok(config) = Config::read(&inner.link, &inner.keys) {
                inner.reap(config);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisPool {
    /// Kills the local workers (as [`terminate`](RedisPool::terminate)).
    fn drop(&mut self) {
        for p in &mut self.locals {
            let _ = p.kill();
            let _ = p.join();
        }
    }
}

impl fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPool")
            .field("server", &self.inner.link.addr())
            .field("name", &self.name)
            .field("local_workers", &self.locals.len())
            .finish_non_exhaustive()
    }
}

fn decode_all<R: DeserializeOwned>(o: &Outcome) -> Result<Vec<R>, RedisTaskError> {
    let mut items = Vec::new();
    for (count, c) in o {
        decode_items::<R>(*count, c, &mut items);
    }
    items.into_iter().collect()
}

fn decode_one<R: DeserializeOwned>(o: &Outcome) -> Result<R, RedisTaskError> {
    decode_all::<R>(o)?
        .into_iter()
        .next()
        .ok_or_else(|| RedisTaskError::Codec("no result".into()))
}

/// The result to come of [`RedisPool::apply_async`] or
/// [`RedisPool::map_async`]. Waiting on it collects results and runs
/// callbacks.
pub struct RedisAsyncResult<T> {
    inner: Arc<Inner>,
    job: u64,
    decode: fn(&Outcome) -> Result<T, RedisTaskError>,
}

impl<T> RedisAsyncResult<T> {
    /// The job's number (unique on the server; see [`Recovered::job`]).
    pub fn job(&self) -> u64 {
        self.job
    }

    /// Waits for the result.
    pub fn get(&self) -> Result<T, RedisTaskError> {
        match self.inner.wait_job(self.job, None) {
            Some(o) => (self.decode)(&o),
            None => Err(RedisTaskError::PoolTerminated),
        }
    }

    /// [`get`](Self::get), waiting at most `timeout`;
    /// [`RedisTaskError::Timeout`] then.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, RedisTaskError> {
        match self
            .inner
            .wait_job(self.job, Some(Instant::now() + timeout))
        {
            Some(o) => (self.decode)(&o),
            None => Err(RedisTaskError::Timeout),
        }
    }

    /// Whether the result is there (collecting what came, without waiting).
    pub fn ready(&self) -> bool {
        self.inner
            .wait_job(self.job, Some(Instant::now()))
            .is_some()
    }
}

impl<T: 'static> ResultHandle for RedisAsyncResult<T> {
    type Outcome = Outcome;
    type Value = T;
    type Error = RedisTaskError;

    fn decoder(&self) -> fn(&Outcome) -> Result<T, RedisTaskError> {
        self.decode
    }

    fn on_done(&self, cb: Callback) {
        let mut st = self.inner.lock();
        let now = match st.jobs.get_mut(&self.job) {
            Some(j) => keep_or_run(&j.completed, &mut j.callbacks, cb),
            // The job is gone: nothing will complete it.
            None => None,
        };
        drop(st);
        if let Some((cb, o)) = now {
            cb(&o);
        }
    }
}

impl<T: 'static> RedisAsyncResult<T> {
    /// Calls `f` with the result once it is there and not an error, in the
    /// thread whose pool call collects it.
    pub fn callback(self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.add_callback(f)
    }

    /// Calls `f` with the error once the result is there, if it is one.
    pub fn error_callback(self, f: impl FnOnce(&RedisTaskError) + Send + 'static) -> Self {
        self.add_error_callback(f)
    }
}

impl<T> Drop for RedisAsyncResult<T> {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        let done = st
            .jobs
            .get(&self.job)
            .is_some_and(|j| j.completed.is_some() && j.callbacks.is_empty());
        if done {
            st.jobs.remove(&self.job);
        }
    }
}

impl<T> fmt::Debug for RedisAsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAsyncResult")
            .field("job", &self.job)
            .finish()
    }
}

/// The iterator of [`RedisPool::imap`] and its kin: one `Result` per item.
pub struct RedisIMap<R> {
    inner: Arc<Inner>,
    job: Option<u64>,
    ordered: bool,
    /// Ordered: the next chunk to yield.
    next: usize,
    buffered: VecDeque<Result<R, RedisTaskError>>,
}

impl<R: DeserializeOwned> RedisIMap<R> {
    /// The next result, waiting at most `timeout` (`None` for no limit);
    /// `Some(Err(RedisTaskError::Timeout))` if none came in time.
    pub fn next_timeout(&mut self, timeout: Option<Duration>) -> Option<Result<R, RedisTaskError>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(r) = self.buffered.pop_front() {
                return Some(r);
            }
            let job = self.job?;
            let mut st = self.inner.lock();
            let Some(j) = st.jobs.get_mut(&job) else {
                self.job = None;
                return None;
            };
            let total = j.chunks.len();
            let pick = if self.ordered {
                (self.next < total && j.chunks[self.next].outcome.is_some()).then_some(self.next)
            } else {
                j.arrivals.pop_front()
            };
            if let Some(i) = pick {
                self.next += 1;
                let c = &mut j.chunks[i];
                let o = c.outcome.clone().unwrap_or(Err(String::new()));
                let count = c.count;
                let id = c.id.clone();
                let mut items = Vec::new();
                decode_items::<R>(count, &o, &mut items);
                self.buffered.extend(items);
                let finished = self.next >= total;
                if finished {
                    st.jobs.remove(&job);
                    self.job = None;
                }
                drop(st);
                self.inner.forget(&[id]);
                continue;
            }
            if self.next >= total {
                st.jobs.remove(&job);
                self.job = None;
                return None;
            }
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Some(Err(RedisTaskError::Timeout));
                    }
                    left.min(PUMP_SLICE)
                }
                None => PUMP_SLICE,
            };
            self.inner.pump(&mut st, wait);
            self.inner.finish(st);
        }
    }
}

impl<R: DeserializeOwned> Iterator for RedisIMap<R> {
    type Item = Result<R, RedisTaskError>;

    fn next(&mut self) -> Option<Result<R, RedisTaskError>> {
        self.next_timeout(None)
    }
}

impl<R> Drop for RedisIMap<R> {
    fn drop(&mut self) {
        if let Some(job) = self.job {
            let mut st = self.inner.lock();
            if let Some(j) = st.jobs.remove(&job) {
                for c in j.chunks {
                    st.entries.remove(&c.id);
                }
            }
        }
    }
}

impl<R> fmt::Debug for RedisIMap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisIMap")
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

/// Checks the claim of [`RedisPool`]'s documentation: the handles are `Send`.
#[allow(dead_code)]
fn handles_are_send() {
    fn send<T: Send>() {}
    send::<RedisAsyncResult<u64>>();
    send::<RedisIMap<u64>>();
}
