//! The pool's scheduler: the workers, the jobs and their chunks, and the
//! one lock over them ([`Inner`]). Whoever waits on the pool runs it
//! ([`Inner::pump`]): takes results off the result ring, settles chunks,
//! replaces dead workers (see the [pool's documentation](super)).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::deadline::Deadline;
use crate::error::Result;
use crate::process::{ExitStatus, Process};
use crate::ring::records::{Core, GetFail, OnWait, Payload};
use crate::shm::ShmBox;

use super::TaskError;
use super::worker::{self, CodeTable, WorkerArgs, WorkerSlot};
use super::{SCAN, STARTUP_FAILURES};

/// A worker process. `Process` is not `Send` because it keeps the closure
/// it forked (any closure, in general); this one's is the pool's own.
pub(super) struct WorkerProc(pub(super) Process<'static, ()>);

// SAFETY: the `Process` was made by `Process::call_with` from
// `worker_main::<I>` and a `WorkerArgs<I>` with `I: Send`: its kept closure
// and kept arguments own only that `WorkerArgs` (Arcs of `Send + Sync`
// shared-memory handles and an `I`), and its other fields (pid, pidfd,
// pipes, the report slot) are plain data and descriptors. Nothing in it is
// tied to the thread that made it.
unsafe impl Send for WorkerProc {}

/// Checks the claim above: what a worker's `Process` keeps is `Send`.
#[allow(dead_code)]
pub(super) fn worker_args_are_send<I: Send>() {
    pub(super) fn send<T: Send>() {}
    send::<WorkerArgs<I>>();
}

pub(super) struct Worker {
    pub(super) proc: WorkerProc,
    pub(super) serial: u64,
    pub(super) slot: Arc<ShmBox<WorkerSlot>>,
    /// It said it retires (`max_tasks_per_child`).
    pub(super) retiring: bool,
}

/// Why a chunk has no result (cloneable, unlike [`TaskError`]).
#[derive(Clone, Debug)]
pub(super) enum Failure {
    Died { pid: i32, status: ExitStatus },
    Init(String),
    Terminated,
    Closed,
    Codec(String),
}

impl Failure {
    pub(super) fn to_error(&self) -> TaskError {
        match self {
            Failure::Died { pid, status } => TaskError::WorkerDied {
                pid: *pid,
                status: *status,
            },
            Failure::Init(m) => TaskError::InitializerFailed(m.clone()),
            Failure::Terminated => TaskError::PoolTerminated,
            Failure::Closed => TaskError::PoolClosed,
            Failure::Codec(m) => TaskError::Codec(m.clone()),
        }
    }
}

pub(super) enum ChunkOutcome {
    /// The chunk's tagged items, as the worker wrote them.
    Done(Vec<u8>),
    Failed(Failure),
}

pub(crate) struct Chunk {
    pub(super) count: u32,
    pub(super) outcome: Option<ChunkOutcome>,
}

/// Every chunk of a finished job, in order: what handles decode.
pub(super) type Outcome = Vec<Chunk>;

pub(super) type Callback = crate::task_items::Callback<Outcome>;

pub(super) struct Job {
    pub(super) chunks: Vec<Chunk>,
    /// Chunks with an outcome.
    pub(super) done: usize,
    /// No more chunks will be added.
    pub(super) sealed: bool,
    /// `imap`: chunks are taken one by one, the job never completes as a
    /// whole; `arrivals` lists them in completion order.
    pub(super) streaming: bool,
    pub(super) arrivals: VecDeque<u32>,
    pub(super) callbacks: Vec<Callback>,
    pub(super) completed: Option<Arc<Outcome>>,
    /// A handle still refers to the job.
    pub(super) handle: bool,
}

pub(super) struct State {
    pub(super) workers: Vec<Option<Worker>>,
    pub(super) jobs: HashMap<u32, Job>,
    pub(super) next_job: u32,
    pub(super) next_serial: u64,
    pub(super) closed: bool,
    pub(super) terminated: bool,
    pub(super) broken: Option<String>,
    pub(super) startup_failures: u32,
    pub(super) next_scan: Instant,
    /// Callbacks of finished jobs, run once the state is unlocked.
    pub(super) ready: Vec<(Callback, Arc<Outcome>)>,
    /// The functions the workers may run.
    pub(super) table: CodeTable,
}

pub(super) type Starter = Box<
    dyn Fn(u64, Arc<Core>, Arc<Core>, Arc<ShmBox<WorkerSlot>>) -> Result<WorkerProc> + Send + Sync,
>;

pub(super) struct Inner {
    pub(super) tasks: Arc<Core>,
    pub(super) results: Arc<Core>,
    pub(super) processes: usize,
    pub(super) starter: Starter,
    pub(super) state: Mutex<State>,
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unlocks the state and runs the callbacks of jobs that finished. A
    /// callback that panics does not keep the others from running; the
    /// first panic goes on in the caller afterwards.
    pub(super) fn finish(&self, st: MutexGuard<'_, State>) {
        if let Some(p) = self.run_callbacks(st) {
            std::panic::resume_unwind(p);
        }
    }

    /// [`finish`](Inner::finish), handing back the first panic of a
    /// callback instead of resuming it (for `Drop`).
    pub(super) fn run_callbacks(
        &self,
        mut st: MutexGuard<'_, State>,
    ) -> Option<Box<dyn std::any::Any + Send>> {
        if st.ready.is_empty() {
            return None;
        }
        let ready = std::mem::take(&mut st.ready);
        drop(st);
        let mut panic = None;
        for (cb, outcome) in ready {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(&outcome)));
            if let Err(p) = r {
                panic.get_or_insert(p);
            }
        }
        panic
    }

    pub(super) fn start_worker(&self, st: &mut State, pos: usize) -> Result<()> {
        let slot = Arc::new(ShmBox::new(WorkerSlot {
            in_flight: std::sync::atomic::AtomicU64::new(0),
            state: std::sync::atomic::AtomicU32::new(worker::STATE_STARTING),
        })?);
        let serial = st.next_serial;
        st.next_serial += 1;
        let proc = (self.starter)(
            serial,
            self.tasks.clone(),
            self.results.clone(),
            slot.clone(),
        )?;
        st.workers[pos] = Some(Worker {
            proc,
            serial,
            slot,
            retiring: false,
        });
        Ok(())
    }

    /// Why new work is refused, if it is.
    pub(super) fn refusal(&self, st: &State) -> Option<TaskError> {
        if let Some(m) = &st.broken {
            Some(TaskError::InitializerFailed(m.clone()))
        } else if st.closed || st.terminated {
            Some(TaskError::PoolClosed)
        } else {
            None
        }
    }

    pub(super) fn new_job(&self, st: &mut State, streaming: bool) -> u32 {
        let mut id = st.next_job;
        while id == 0 || st.jobs.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        st.next_job = id.wrapping_add(1);
        st.jobs.insert(
            id,
            Job {
                chunks: Vec::new(),
                done: 0,
                sealed: false,
                streaming,
                arrivals: VecDeque::new(),
                callbacks: Vec::new(),
                completed: None,
                handle: true,
            },
        );
        id
    }

    /// Puts one encoded chunk in the task ring, collecting results while
    /// the ring is full. The chunk is already listed in its job.
    ///
    /// Whenever there is no room, results are collected for up to a
    /// millisecond (workers may be waiting for room in the result ring)
    /// before the ring is looked at again. A chunk larger than a quarter of
    /// the ring goes in pieces as a worker takes them, and is never started
    /// over: the pieces already sent stay sent while results are collected.
    pub(super) fn submit(&self, st: &mut State, msg: &[u8]) -> std::result::Result<(), Failure> {
        let mut stopped = None;
        let r = self.tasks.put_with(msg, Deadline::NEVER, &mut || {
            if st.terminated {
                stopped = Some(Failure::Terminated);
                return OnWait::Stop;
            }
            if let Some(m) = &st.broken {
                stopped = Some(Failure::Init(m.clone()));
                return OnWait::Stop;
            }
            self.pump(st, Deadline::after(Duration::from_millis(1)));
            OnWait::Again
        });
        match (r, stopped) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(f)) => Err(f),
            (Err(_), None) if st.terminated => Err(Failure::Terminated),
            (Err(_), None) => match &st.broken {
                Some(m) => Err(Failure::Init(m.clone())),
                None => Err(Failure::Closed),
            },
        }
    }

    /// Adds a chunk of `items` to job `job` and submits it.
    pub(super) fn add_chunk<X: Serialize>(
        &self,
        st: &mut State,
        job: u32,
        function: u32,
        items: impl Iterator<Item = X>,
        buf: &mut Vec<u8>,
    ) {
        let Some(j) = st.jobs.get_mut(&job) else {
            return;
        };
        let idx = j.chunks.len() as u32;
        let id = ((job as u64) << 32) | idx as u64;
        buf.clear();
        worker::push_header(buf, id, function);
        let mut count = 0u32;
        let mut failure = None;
        for x in items {
            count += 1;
            if failure.is_none()
                && let Err(e) = postcard::to_io(&x, &mut *buf)
            {
                failure = Some(Failure::Codec(format!(
                    "a task's argument could not be serialized: {e}"
                )));
            }
        }
        worker::set_count(buf, count);
        j.chunks.push(Chunk {
            count,
            outcome: None,
        });
        let failure = match failure {
            Some(f) => Some(f),
            None => self.submit(st, buf).err(),
        };
        if let Some(f) = failure {
            self.settle(st, id, ChunkOutcome::Failed(f));
        }
    }

    /// Marks the job's last chunk added; completes it if all are done.
    pub(super) fn seal(&self, st: &mut State, job: u32) {
        if let Some(j) = st.jobs.get_mut(&job) {
            j.sealed = true;
        }
        self.check_complete(st, job);
        self.close_ring_if_done(st);
    }

    /// After `close`, the task ring is closed (so idle workers exit) once
    /// no `imap` made before `close` still has input to submit.
    pub(super) fn close_ring_if_done(&self, st: &State) {
        if st.closed && !st.jobs.values().any(|j| j.streaming && !j.sealed) {
            self.tasks.close();
        }
    }

    /// Records the outcome of chunk `id` (the first one only).
    pub(super) fn settle(&self, st: &mut State, id: u64, outcome: ChunkOutcome) {
        let job = (id >> 32) as u32;
        let Some(j) = st.jobs.get_mut(&job) else {
            return;
        };
        let idx = id as u32;
        let Some(c) = j.chunks.get_mut(idx as usize) else {
            return;
        };
        if c.outcome.is_some() {
            return;
        }
        c.outcome = Some(outcome);
        j.done += 1;
        if j.streaming {
            j.arrivals.push_back(idx);
        }
        self.check_complete(st, job);
    }

    pub(super) fn check_complete(&self, st: &mut State, job: u32) {
        let Some(j) = st.jobs.get_mut(&job) else {
            return;
        };
        if j.streaming || !j.sealed || j.done < j.chunks.len() || j.completed.is_some() {
            return;
        }
        let outcome = Arc::new(std::mem::take(&mut j.chunks));
        j.completed = Some(outcome.clone());
        for cb in j.callbacks.drain(..) {
            st.ready.push((cb, outcome.clone()));
        }
        if !j.handle {
            st.jobs.remove(&job);
        }
    }

    /// Handles one message from the result ring.
    pub(super) fn handle(&self, st: &mut State, payload: Payload) {
        let msg = payload.as_slice();
        match msg.first() {
            Some(&worker::MSG_RESULT) if msg.len() >= 9 => {
                let mut w = [0u8; 8];
                w.copy_from_slice(&msg[1..9]);
                let id = u64::from_le_bytes(w);
                self.settle(st, id, ChunkOutcome::Done(payload.into_tail(9)));
            }
            Some(&worker::MSG_RETIRED) => {
                let serial = worker::message_serial(msg);
                if let Some(pos) = position(st, serial) {
                    if let Some(w) = st.workers[pos].as_mut() {
                        w.retiring = true;
                        // It exits right after this message.
                        let _ = w.proc.0.join();
                    }
                    self.ended(st, pos);
                }
            }
            Some(&worker::MSG_INIT_FAILED) => {
                let serial = worker::message_serial(msg);
                let text = String::from_utf8_lossy(msg.get(9..).unwrap_or_default()).into_owned();
                if st.broken.is_none() {
                    st.broken = Some(text);
                }
                if let Some(pos) = position(st, serial) {
                    if let Some(w) = st.workers[pos].as_mut() {
                        let _ = w.proc.0.join();
                    }
                    self.ended(st, pos);
                }
                self.break_pool(st);
            }
            _ => {}
        }
    }

    /// Takes every result now in the ring.
    pub(super) fn drain(&self, st: &mut State) {
        while self.results.len() > 0 {
            match self.results.get(Deadline::after(Duration::ZERO)) {
                Ok(p) => self.handle(st, p),
                Err(_) => break,
            }
        }
    }

    /// Waits until `deadline` (at most until the next scan) for results,
    /// takes what came, and looks at the workers when a scan is due.
    pub(super) fn pump(&self, st: &mut State, deadline: Deadline) {
        let now = Instant::now();
        if now >= st.next_scan {
            self.scan(st);
        }
        let until = st.next_scan.saturating_duration_since(now);
        let wait = match deadline.remaining() {
            Some(r) => r.min(until),
            None => until,
        };
        match self.results.get(Deadline::after(wait)) {
            Ok(p) => {
                self.handle(st, p);
                self.drain(st);
            }
            Err(GetFail::Empty | GetFail::Closed) => {}
        }
    }

    /// Replaces the workers that ended.
    pub(super) fn scan(&self, st: &mut State) {
        st.next_scan = Instant::now() + SCAN;
        let ended: Vec<(usize, u64)> = st
            .workers
            .iter_mut()
            .enumerate()
            .filter_map(|(i, w)| {
                let w = w.as_mut()?;
                (!w.proc.0.is_alive()).then_some((i, w.serial))
            })
            .collect();
        if ended.is_empty() {
            return;
        }
        // Results a dead worker put before it died count.
        self.drain(st);
        for (pos, serial) in ended {
            // The drain may have handled this worker already (it retired),
            // and put a new one in its place.
            if position(st, serial) == Some(pos) {
                self.ended(st, pos);
            }
        }
    }

    /// Worker `pos` has ended (and is reaped): fail the chunk it held,
    /// note an initializer failure, start a replacement if work remains.
    pub(super) fn ended(&self, st: &mut State, pos: usize) {
        let Some(mut w) = st.workers[pos].take() else {
            return;
        };
        let status = w.proc.0.join().unwrap_or(ExitStatus::Exited(-1));
        let pid = w.proc.0.pid().unwrap_or(0);
        let held = w.slot.in_flight.load(Ordering::Acquire);
        if held != 0 {
            self.settle(
                st,
                held,
                ChunkOutcome::Failed(Failure::Died { pid, status }),
            );
        }
        if !w.retiring && w.slot.state.load(Ordering::Acquire) == worker::STATE_STARTING {
            if w.proc.0.panicked() || matches!(status, ExitStatus::Exited(_)) {
                if st.broken.is_none() {
                    let msg = w.proc.0.message().unwrap_or_else(|| status.to_string());
                    st.broken = Some(msg);
                }
            } else {
                st.startup_failures += 1;
                if st.startup_failures >= STARTUP_FAILURES && st.broken.is_none() {
                    st.broken = Some(format!(
                        "{STARTUP_FAILURES} workers in a row ended during their start ({status})"
                    ));
                }
            }
        } else {
            st.startup_failures = 0;
        }
        if st.broken.is_some() {
            self.break_pool(st);
            return;
        }
        let work_left = !(self.tasks.is_closed() && self.tasks.len() == 0);
        if !st.terminated
            && work_left
            && let Err(e) = self.start_worker(st, pos)
        {
            st.broken = Some(format!("a new worker could not be started: {e}"));
            self.break_pool(st);
        }
    }

    /// After an initializer failure: stop every worker, fail every task.
    pub(super) fn break_pool(&self, st: &mut State) {
        let msg = st.broken.clone().unwrap_or_default();
        self.stop_all(st, Failure::Init(msg));
    }

    /// Kills and reaps every worker, keeps the results already sent, and
    /// fails every other task with `why`.
    pub(super) fn stop_all(&self, st: &mut State, why: Failure) {
        self.tasks.close();
        for w in st.workers.iter_mut().flatten() {
            let _ = w.proc.0.kill();
        }
        for w in st.workers.iter_mut().flatten() {
            let _ = w.proc.0.join();
        }
        self.drain(st);
        for w in &mut st.workers {
            *w = None;
        }
        let ids: Vec<u64> = st
            .jobs
            .iter()
            .flat_map(|(&job, j)| {
                j.chunks
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.outcome.is_none())
                    .map(move |(i, _)| ((job as u64) << 32) | i as u64)
            })
            .collect();
        for id in ids {
            self.settle(st, id, ChunkOutcome::Failed(why.clone()));
        }
        let jobs: Vec<u32> = st.jobs.keys().copied().collect();
        for job in jobs {
            self.seal(st, job);
        }
    }

    /// Stops everything; returns a callback's panic, if one panicked.
    pub(super) fn terminate(&self) -> Option<Box<dyn std::any::Any + Send>> {
        let mut st = self.lock();
        if !st.terminated {
            st.terminated = true;
            st.closed = true;
            self.stop_all(&mut st, Failure::Terminated);
        }
        self.run_callbacks(st)
    }

    /// Waits until job `job` completes or `deadline` passes.
    pub(super) fn wait_job(&self, job: u32, deadline: Deadline) -> Option<Arc<Outcome>> {
        loop {
            let mut st = self.lock();
            let done = match st.jobs.get(&job) {
                Some(j) => j.completed.clone(),
                None => None,
            };
            if done.is_some() || deadline.expired() || !st.jobs.contains_key(&job) {
                self.finish(st);
                return done;
            }
            self.pump(&mut st, deadline);
            self.finish(st);
        }
    }

    pub(super) fn drop_handle(&self, job: u32) {
        let mut st = self.lock();
        if let Some(j) = st.jobs.get_mut(&job) {
            if j.completed.is_some() || j.callbacks.is_empty() {
                st.jobs.remove(&job);
            } else {
                j.handle = false;
            }
        }
    }
}

pub(super) fn position(st: &State, serial: u64) -> Option<usize> {
    st.workers
        .iter()
        .position(|w| w.as_ref().is_some_and(|w| w.serial == serial))
}

/// Decodes one chunk's items into `out`.
pub(super) fn decode_chunk<R: DeserializeOwned>(
    c: &Chunk,
    out: &mut impl Extend<Result<R, TaskError>>,
) {
    match &c.outcome {
        Some(ChunkOutcome::Done(bytes)) => {
            let mut rest: &[u8] = bytes;
            for _ in 0..c.count {
                let Some((&tag, tail)) = rest.split_first() else {
                    out.extend(Some(Err(TaskError::Codec("a result is missing".into()))));
                    continue;
                };
                let item = if tag == worker::ITEM_OK {
                    postcard::take_from_bytes::<R>(tail)
                        .map(|(r, t)| {
                            rest = t;
                            r
                        })
                        .map_err(|e| TaskError::Codec(format!("a task's result: {e}")))
                } else {
                    match postcard::take_from_bytes::<String>(tail) {
                        Ok((m, t)) => {
                            rest = t;
                            Err(match tag {
                                worker::ITEM_DECODE => TaskError::Codec(m),
                                _ => TaskError::TaskFailed(m),
                            })
                        }
                        Err(e) => Err(TaskError::Codec(format!("a task's error: {e}"))),
                    }
                };
                out.extend(Some(item));
            }
        }
        Some(ChunkOutcome::Failed(f)) => {
            out.extend((0..c.count).map(|_| Err(f.to_error())));
        }
        None => out.extend((0..c.count).map(|_| Err(TaskError::PoolTerminated))),
    }
}

pub(super) fn decode_all<R: DeserializeOwned>(o: &Outcome) -> Result<Vec<R>, TaskError> {
    let mut items: Vec<Result<R, TaskError>> = Vec::new();
    for c in o {
        decode_chunk(c, &mut items);
    }
    items.into_iter().collect()
}

pub(super) fn decode_one<R: DeserializeOwned>(o: &Outcome) -> Result<R, TaskError> {
    decode_all::<R>(o)?
        .pop()
        .ok_or_else(|| TaskError::Codec("a task's result is missing".into()))
}

/// Python's default chunk size for `map`: `len / (4 * workers)`, rounded
/// up.
pub(super) fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers).max(1)
}
