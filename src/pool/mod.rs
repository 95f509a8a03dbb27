//! A pool of worker processes, like Python's `multiprocessing.Pool`:
//! `apply`, `apply_async`, `map`, `map_async`, `imap`, `imap_unordered`,
//! `starmap`, with chunks, callbacks, an initializer and
//! `max_tasks_per_child`, and without Python's hangs: a worker killed in the
//! middle of a task makes that task's result an error, and a failing
//! initializer is reported instead of being retried for ever.
//!
//! ```
//! use multiproc::pool::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # // Doctests run on a thread: opt in to forking there.
//! let pool = Pool::builder().processes(2);
//! # let pool = unsafe { pool.allow_threads() };
//! let pool = pool.build()?;
//! assert_eq!(pool.map(square, 0..10)?, (0..10).map(|x| x * x).collect::<Vec<_>>());
//! let r = pool.apply_async(square, 7)?;
//! assert_eq!(r.get()?, 49);
//! pool.close();
//! pool.join()?;
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # Tasks
//!
//! A task is a plain function, `fn(A) -> R` (or `fn(A, B) -> R` for
//! `starmap`), with arguments and results that serde can encode (postcard,
//! as elsewhere in the crate). The functions must be the program's own:
//! a function of a shared library (a plugin, a `cdylib`, a
//! `-C prefer-dynamic` build) is refused with [`Error::ForeignCode`], since
//! a worker could not find it. The parent registers each function in a
//! table that only it can write, and the task ring names functions by
//! their index in that table, so a worker never calls an address read from
//! memory another process could write (a process forked from the pool's
//! owner can still give it functions the owner registered, but no new
//! ones). Shared objects for the workers (a [`Lock`](crate::Lock),
//! a [`Value`](crate::Value)) are given to the
//! [initializer](PoolBuilder::initializer), as Python requires for pool
//! workers.
//!
//! # Errors in tasks
//!
//! A task that panics fails alone, with [`Error::TaskFailed`]: its text is
//! the panic's message and where it panicked in the worker, like
//! `three is not allowed (at src/main.rs:12:9)`, followed by the worker's
//! backtrace when `RUST_BACKTRACE` (or `RUST_LIB_BACKTRACE`) is set and not
//! `0` in the worker's environment, as Python's `RemoteTraceback` shows the
//! worker's traceback. The worker does not also print such a panic to its
//! stderr: the error has all of it.
//!
//! `imap` and its kin return the iterator itself, with one `Result` per
//! item; an error found before any task was submitted (a closed pool, say)
//! is the iterator's first and only item.
//!
//! # How it works
//!
//! Tasks go to the workers through one shared-memory ring (the queues'
//! ring) in chunks, and results come back through another; in the steady
//! state neither side makes a system call per task (waiters spin briefly
//! before they sleep on a futex). Each worker has a slot in shared memory
//! naming the chunk it runs; it is written under the ring's consumer lock
//! before the chunk leaves the ring, so a worker killed at any moment is
//! either still without the chunk (which stays in the ring for another) or
//! has its slot naming it. The parent then fails that chunk's tasks with
//! [`Error::WorkerDied`] and starts a new worker.
//!
//! # Supervision: no threads
//!
//! Python's pool runs three handler threads in the parent. This one runs
//! none: results are collected, dead or retired workers replaced, and
//! callbacks run inside the calls made on the pool and its handles (`get`,
//! `wait`, `ready`, `map`, `join`, the iterators' `next`, ...), by whichever
//! thread makes them. A parent that waits for results therefore always
//! supervises, and workers are forked by the caller's own thread, so a
//! single-threaded program forks from a single-threaded process, which is
//! always safe. While no call is made, the workers go on with the tasks
//! already queued, but a dead worker is replaced, and a callback run, only
//! at the next call. Waiting calls look at the workers at least every
//! 20 ms, so a killed worker is noticed within about that.
//!
//! # Dying with the parent
//!
//! Workers die with the pool's process however it ends, SIGKILL included,
//! even in the middle of a task: each has the kernel's parent-death signal
//! set, with the check for a parent that died before it was set. The kernel
//! sends that signal when the *thread* that started the worker ends, and the
//! pool starts workers (and their replacements) from whichever thread calls
//! into it. So a worker started by the process's main thread gets SIGKILL
//! (the main thread ends with the process, unless it calls
//! `pthread_exit`), and one started by another thread gets a real-time
//! signal (`SIGRTMAX - 2`) whose handler kills the worker only if the
//! pool's process is gone, not when just that thread ended. A task that
//! blocks or takes over that signal gives this up for its worker (which
//! then notices a dead parent only between tasks).
//!
//! # Dropping
//!
//! Dropping the pool terminates it, like leaving Python's `with Pool()`
//! block: the workers are killed and reaped, unfinished tasks fail with
//! [`Error::PoolTerminated`]. Call [`close`](Pool::close) then
//! [`join`](Pool::join) to let them finish first.

mod worker;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::process::code::CodePtr;
use crate::process::{ExitStatus, Process, StartMethod};
use crate::queue::ring::{Core, GetFail, OnWait, Payload};
use crate::shm::ShmBox;
use worker::{CodeTable, TaskCode, WorkerArgs, WorkerSlot};

/// How often waiting calls look for dead workers.
const SCAN: Duration = Duration::from_millis(20);
/// The default size of each ring (tasks, results).
const RING_BYTES: usize = 1 << 20;
/// Consecutive workers that may die (by a signal) before finishing their
/// initializer before the pool gives up.
const STARTUP_FAILURES: u32 = 3;

/// How many chunks an `imap` keeps submitted ahead of what it yielded,
/// per worker.
const IMAP_AHEAD_PER_WORKER: usize = 64;

/// A worker process. `Process` is not `Send` because it keeps the closure
/// it forked (any closure, in general); this one's is the pool's own.
struct WorkerProc(Process<'static, ()>);

// SAFETY: the `Process` was made by `Process::call_with` from
// `worker_main::<I>` and a `WorkerArgs<I>` with `I: Send`: its kept closure
// and kept arguments own only that `WorkerArgs` (Arcs of `Send + Sync`
// shared-memory handles and an `I`), and its other fields (pid, pidfd,
// pipes, the report slot) are plain data and descriptors. Nothing in it is
// tied to the thread that made it.
unsafe impl Send for WorkerProc {}

/// Checks the claim above: what a worker's `Process` keeps is `Send`.
#[allow(dead_code)]
fn worker_args_are_send<I: Send>() {
    fn send<T: Send>() {}
    send::<WorkerArgs<I>>();
}

struct Worker {
    proc: WorkerProc,
    serial: u64,
    slot: Arc<ShmBox<WorkerSlot>>,
    /// It said it retires (`max_tasks_per_child`).
    retiring: bool,
}

/// Why a chunk has no result (cloneable, unlike [`Error`]).
#[derive(Clone, Debug)]
enum Failure {
    Died { pid: i32, status: ExitStatus },
    Init(String),
    Terminated,
    Closed,
    Codec(String),
}

impl Failure {
    fn to_error(&self) -> Error {
        match self {
            Failure::Died { pid, status } => Error::WorkerDied {
                pid: *pid,
                status: *status,
            },
            Failure::Init(m) => Error::InitializerFailed(m.clone()),
            Failure::Terminated => Error::PoolTerminated,
            Failure::Closed => Error::PoolClosed,
            Failure::Codec(m) => Error::Codec(m.clone()),
        }
    }
}

enum ChunkOutcome {
    /// The chunk's tagged items, as the worker wrote them.
    Done(Vec<u8>),
    Failed(Failure),
}

struct Chunk {
    count: u32,
    outcome: Option<ChunkOutcome>,
}

/// Every chunk of a finished job, in order: what handles decode.
type Outcome = Vec<Chunk>;

type Callback = Box<dyn FnOnce(&Outcome) + Send>;

struct Job {
    chunks: Vec<Chunk>,
    /// Chunks with an outcome.
    done: usize,
    /// No more chunks will be added.
    sealed: bool,
    /// `imap`: chunks are taken one by one, the job never completes as a
    /// whole; `arrivals` lists them in completion order.
    streaming: bool,
    arrivals: VecDeque<u32>,
    callbacks: Vec<Callback>,
    completed: Option<Arc<Outcome>>,
    /// A handle still refers to the job.
    handle: bool,
}

struct State {
    workers: Vec<Option<Worker>>,
    jobs: HashMap<u32, Job>,
    next_job: u32,
    next_serial: u64,
    closed: bool,
    terminated: bool,
    broken: Option<String>,
    startup_failures: u32,
    next_scan: Instant,
    /// Callbacks of finished jobs, run once the state is unlocked.
    ready: Vec<(Callback, Arc<Outcome>)>,
    /// The functions the workers may run.
    table: CodeTable,
}

type Starter = Box<
    dyn Fn(u64, Arc<Core>, Arc<Core>, Arc<ShmBox<WorkerSlot>>) -> Result<WorkerProc> + Send + Sync,
>;

struct Inner {
    tasks: Arc<Core>,
    results: Arc<Core>,
    processes: usize,
    starter: Starter,
    state: Mutex<State>,
}

/// A pool of worker processes; see the [module documentation](self).
///
/// `Pool` is `Send` and `Sync`: several threads may give it work and wait
/// for results at once.
pub struct Pool {
    inner: Arc<Inner>,
}

/// Settings for a [`Pool`]: `Pool::builder().processes(4).build()`.
#[must_use]
pub struct PoolBuilder<I = ()> {
    processes: Option<usize>,
    init: Option<(fn(I), I)>,
    max_tasks_per_child: Option<u64>,
    start_method: Option<StartMethod>,
    allow_threads: bool,
    ring_bytes: usize,
}

impl Default for PoolBuilder<()> {
    fn default() -> Self {
        PoolBuilder {
            processes: None,
            init: None,
            max_tasks_per_child: None,
            start_method: None,
            allow_threads: false,
            ring_bytes: RING_BYTES,
        }
    }
}

impl<I> PoolBuilder<I> {
    /// The number of workers (default: the cores available to this process,
    /// as Python's `os.process_cpu_count()`). Zero is refused at `build`.
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Each worker ends after this many chunks (Python's
    /// `maxtasksperchild`, which counts chunks too) and a new one takes its
    /// place. Without it, workers live as long as the pool. Zero is refused
    /// at `build`, as in Python.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// The start method of the workers (default: the one in force,
    /// [`crate::start_method`]). With spawn the program must call
    /// [`crate::init`] first in `main`, and the initializer's arguments
    /// cross over serialized (shared objects as references to the same
    /// shared memory).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = Some(method);
        self
    }

    /// The size of each of the two shared-memory rings (tasks, results);
    /// default 1 MiB. Larger chunks than a quarter of it still go through,
    /// in pieces.
    pub fn ring_bytes(mut self, bytes: usize) -> Self {
        self.ring_bytes = bytes;
        self
    }

    /// Lets the fork start method fork workers while this process has other
    /// threads (see [`Process::allow_threads`]).
    ///
    /// # Safety
    ///
    /// As for [`Process::allow_threads`]: the tasks and the initializer must
    /// not take a lock that another thread of this process may hold while
    /// the pool forks (a `Mutex` in a static, a logger's lock). The pool's
    /// own code in the workers uses only the shared-memory rings, the
    /// allocator and stdio, which are safe. Workers are forked from inside
    /// the pool's calls ([`build`](PoolBuilder::build), and later any call
    /// that replaces a dead or retired worker), by the thread making them.
    pub unsafe fn allow_threads(mut self) -> Self {
        self.allow_threads = true;
        self
    }

    /// Runs `f(args)` in every worker when it starts (Python's
    /// `initializer` and `initargs`); each worker gets a clone of `args`.
    /// Hand shared objects to the workers this way, usually as
    /// `Arc<Value<T>>` and the like. An initializer that panics makes the
    /// pool fail every task with [`Error::InitializerFailed`] and start no
    /// more workers. `f` must be a function of the main executable
    /// ([`build`](PoolBuilder::build) refuses one from a shared library).
    pub fn initializer<J>(self, f: fn(J), args: J) -> PoolBuilder<J>
    where
        J: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        PoolBuilder {
            processes: self.processes,
            init: Some((f, args)),
            max_tasks_per_child: self.max_tasks_per_child,
            start_method: self.start_method,
            allow_threads: self.allow_threads,
            ring_bytes: self.ring_bytes,
        }
    }
}

impl<I> PoolBuilder<I>
where
    I: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Starts the workers.
    ///
    /// Errors: [`Error::InvalidArgument`] for zero processes or a zero
    /// `max_tasks_per_child`;
    /// [`Error::ThreadedFork`] when forking from a multithreaded process
    /// without [`allow_threads`](PoolBuilder::allow_threads);
    /// [`Error::ForeignCode`] for an initializer that is not in the main
    /// executable; the error of a worker that could not be started (the
    /// others are stopped).
    pub fn build(self) -> Result<Pool> {
        let processes = match self.processes {
            Some(0) => {
                return Err(Error::InvalidArgument("a pool needs at least one process"));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        // 0 in the workers: no limit.
        let max_tasks = match self.max_tasks_per_child {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "max_tasks_per_child must be at least 1",
                ));
            }
            Some(n) => n,
            None => 0,
        };
        let init = match self.init {
            Some((f, args)) => Some((CodePtr::new(f)?.offset(), args)),
            None => None,
        };
        let table = CodeTable::new()?;
        let table_fd = table.descriptor();
        let tasks = Arc::new(Core::new(0, self.ring_bytes, false)?);
        let results = Arc::new(Core::new(0, self.ring_bytes, false)?);
        let method = self.start_method.unwrap_or_else(crate::start_method);
        let allow = self.allow_threads;
        let starter: Starter = Box::new(move |serial, tasks, results, slot| {
            // The worker dies with this process (see "Dying with the
            // parent" in the module documentation).
            let parent = crate::sys::thread::pid();
            let by_main_thread = crate::sys::thread::tid() as i32 == parent;
            let args = WorkerArgs {
                tasks,
                results,
                slot,
                serial,
                max_tasks,
                table: table_fd.clone(),
                init: init.clone(),
                parent,
                by_other_thread: !by_main_thread,
            };
            let p = Process::call_with(method, worker::worker_main::<I>, args)?
                .with_name(format!("PoolWorker-{serial}"))
                .with_daemon(true)
                .with_die_with_parent(by_main_thread);
            let mut p = if allow {
                // SAFETY: the caller of `allow_threads` on the builder took
                // the responsibility (see there); otherwise `start` refuses
                // to fork from a multithreaded process.
                unsafe { p.allow_threads() }
            } else {
                p
            };
            p.start()?;
            Ok(WorkerProc(p))
        });
        let pool = Pool {
            inner: Arc::new(Inner {
                tasks,
                results,
                processes,
                starter,
                state: Mutex::new(State {
                    workers: (0..processes).map(|_| None).collect(),
                    jobs: HashMap::new(),
                    next_job: 1,
                    next_serial: 1,
                    closed: false,
                    terminated: false,
                    broken: None,
                    startup_failures: 0,
                    next_scan: Instant::now() + SCAN,
                    ready: Vec::new(),
                    table,
                }),
            }),
        };
        {
            let mut st = pool.inner.lock();
            for pos in 0..processes {
                // On an error the pool is dropped, which stops the others.
                pool.inner.start_worker(&mut st, pos)?;
            }
        }
        Ok(pool)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unlocks the state and runs the callbacks of jobs that finished. A
    /// callback that panics does not keep the others from running; the
    /// first panic goes on in the caller afterwards.
    fn finish(&self, st: MutexGuard<'_, State>) {
        if let Some(p) = self.run_callbacks(st) {
            std::panic::resume_unwind(p);
        }
    }

    /// [`finish`](Inner::finish), handing back the first panic of a
    /// callback instead of resuming it (for `Drop`).
    fn run_callbacks(
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

    fn start_worker(&self, st: &mut State, pos: usize) -> Result<()> {
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
    fn refusal(&self, st: &State) -> Option<Error> {
        if let Some(m) = &st.broken {
            Some(Error::InitializerFailed(m.clone()))
        } else if st.closed || st.terminated {
            Some(Error::PoolClosed)
        } else {
            None
        }
    }

    fn new_job(&self, st: &mut State, streaming: bool) -> u32 {
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
    fn submit(&self, st: &mut State, msg: &[u8]) -> std::result::Result<(), Failure> {
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
    fn add_chunk<X: Serialize>(
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
    fn seal(&self, st: &mut State, job: u32) {
        if let Some(j) = st.jobs.get_mut(&job) {
            j.sealed = true;
        }
        self.check_complete(st, job);
        self.close_ring_if_done(st);
    }

    /// After `close`, the task ring is closed (so idle workers exit) once
    /// no `imap` made before `close` still has input to submit.
    fn close_ring_if_done(&self, st: &State) {
        if st.closed && !st.jobs.values().any(|j| j.streaming && !j.sealed) {
            self.tasks.close();
        }
    }

    /// Records the outcome of chunk `id` (the first one only).
    fn settle(&self, st: &mut State, id: u64, outcome: ChunkOutcome) {
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

    fn check_complete(&self, st: &mut State, job: u32) {
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
    fn handle(&self, st: &mut State, payload: Payload) {
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
    fn drain(&self, st: &mut State) {
        while self.results.len() > 0 {
            match self.results.get(Deadline::after(Duration::ZERO)) {
                Ok(p) => self.handle(st, p),
                Err(_) => break,
            }
        }
    }

    /// Waits until `deadline` (at most until the next scan) for results,
    /// takes what came, and looks at the workers when a scan is due.
    fn pump(&self, st: &mut State, deadline: Deadline) {
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
    fn scan(&self, st: &mut State) {
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
    fn ended(&self, st: &mut State, pos: usize) {
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
    fn break_pool(&self, st: &mut State) {
        let msg = st.broken.clone().unwrap_or_default();
        self.stop_all(st, Failure::Init(msg));
    }

    /// Kills and reaps every worker, keeps the results already sent, and
    /// fails every other task with `why`.
    fn stop_all(&self, st: &mut State, why: Failure) {
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
    fn terminate(&self) -> Option<Box<dyn std::any::Any + Send>> {
        let mut st = self.lock();
        if !st.terminated {
            st.terminated = true;
            st.closed = true;
            self.stop_all(&mut st, Failure::Terminated);
        }
        self.run_callbacks(st)
    }

    /// Waits until job `job` completes or `deadline` passes.
    fn wait_job(&self, job: u32, deadline: Deadline) -> Option<Arc<Outcome>> {
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

    fn drop_handle(&self, job: u32) {
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

fn position(st: &State, serial: u64) -> Option<usize> {
    st.workers
        .iter()
        .position(|w| w.as_ref().is_some_and(|w| w.serial == serial))
}

/// Decodes one chunk's items into `out`.
fn decode_chunk<R: DeserializeOwned>(c: &Chunk, out: &mut impl Extend<Result<R>>) {
    match &c.outcome {
        Some(ChunkOutcome::Done(bytes)) => {
            let mut rest: &[u8] = bytes;
            for _ in 0..c.count {
                let Some((&tag, tail)) = rest.split_first() else {
                    out.extend(Some(Err(Error::Codec("a result is missing".into()))));
                    continue;
                };
                let item = if tag == worker::ITEM_OK {
                    postcard::take_from_bytes::<R>(tail)
                        .map(|(r, t)| {
                            rest = t;
                            r
                        })
                        .map_err(|e| Error::Codec(format!("a task's result: {e}")))
                } else {
                    match postcard::take_from_bytes::<String>(tail) {
                        Ok((m, t)) => {
                            rest = t;
                            Err(match tag {
                                worker::ITEM_DECODE => Error::Codec(m),
                                _ => Error::TaskFailed(m),
                            })
                        }
                        Err(e) => Err(Error::Codec(format!("a task's error: {e}"))),
                    }
                };
                out.extend(Some(item));
            }
        }
        Some(ChunkOutcome::Failed(f)) => {
            out.extend((0..c.count).map(|_| Err(f.to_error())));
        }
        None => out.extend((0..c.count).map(|_| Err(Error::PoolTerminated))),
    }
}

fn decode_all<R: DeserializeOwned>(o: &Outcome) -> Result<Vec<R>> {
    let mut items: Vec<Result<R>> = Vec::new();
    for c in o {
        decode_chunk(c, &mut items);
    }
    items.into_iter().collect()
}

fn decode_one<R: DeserializeOwned>(o: &Outcome) -> Result<R> {
    decode_all::<R>(o)?
        .pop()
        .ok_or_else(|| Error::Codec("a task's result is missing".into()))
}

/// Python's default chunk size for `map`: `len / (4 * workers)`, rounded
/// up.
fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers).max(1)
}

impl Pool {
    /// A pool of `processes` workers with the default settings (the start
    /// method in force, no initializer). Use [`Pool::builder`] for more.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// Settings for a pool; the default number of workers is the number of
    /// cores available.
    pub fn builder() -> PoolBuilder<()> {
        PoolBuilder::default()
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.inner.processes
    }

    /// The pids of the workers now running (for looking at them, or
    /// killing one in a test).
    pub fn pids(&self) -> Vec<i32> {
        let st = self.inner.lock();
        st.workers
            .iter()
            .flatten()
            .filter_map(|w| w.proc.0.pid())
            .collect()
    }

    fn start_map<X: Serialize, T>(
        &self,
        code: Result<TaskCode>,
        items: Vec<X>,
        chunksize: Option<usize>,
        decode: fn(&Outcome) -> Result<T>,
    ) -> Result<AsyncResult<T>> {
        let inner = &self.inner;
        let cs = match chunksize {
            Some(0) => return Err(Error::InvalidArgument("chunksize must be at least 1")),
            Some(c) => c,
            None => default_chunksize(items.len(), inner.processes),
        };
        let mut st = inner.lock();
        if let Some(e) = inner.refusal(&st) {
            return Err(e);
        }
        let function = st.table.index(code?)?;
        let job = inner.new_job(&mut st, false);
        let mut buf = Vec::with_capacity(64);
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            inner.add_chunk(&mut st, job, function, items.by_ref().take(cs), &mut buf);
        }
        inner.seal(&mut st, job);
        inner.finish(st);
        Ok(AsyncResult {
            inner: self.inner.clone(),
            job,
            decode,
        })
    }

    /// Runs `f(arg)` in a worker and waits for its result (Python's
    /// `apply`). A panic in `f` is [`Error::TaskFailed`] with its message
    /// and location (and the worker's backtrace when `RUST_BACKTRACE` is
    /// set); the worker does not also print it.
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Queues `f(arg)` and returns a handle to its result (Python's
    /// `apply_async`); add callbacks with [`AsyncResult::callback`] and
    /// [`AsyncResult::error_callback`].
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let code = worker::code1(f);
        self.start_map(code, vec![arg], Some(1), decode_one::<R>)
    }

    /// `f` over every item, results in order (Python's `map`), in chunks of
    /// the default size (`len / (4 * processes)` rounded up). The first
    /// failed task's error is returned.
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async(f, items)?.get()
    }

    /// [`map`](Pool::map) with chunks of `chunksize` items.
    pub fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async_chunked(f, items, chunksize)?.get()
    }

    /// [`map`](Pool::map) without waiting: a handle to the list of results.
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let code = worker::code1(f);
        self.start_map(code, items.into_iter().collect(), None, decode_all::<R>)
    }

    /// [`map_async`](Pool::map_async) with chunks of `chunksize` items.
    pub fn map_async_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let code = worker::code1(f);
        self.start_map(
            code,
            items.into_iter().collect(),
            Some(chunksize),
            decode_all::<R>,
        )
    }

    /// `f(a, b)` for every pair, results in order (Python's `starmap`).
    /// For more arguments, use [`map`](Pool::map) with a tuple.
    pub fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.starmap_async(f, items, None)?.get()
    }

    /// [`starmap`](Pool::starmap) without waiting, with chunks of
    /// `chunksize` items (`None`: the default size).
    pub fn starmap_async<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let code = worker::code2(f);
        self.start_map(
            code,
            items.into_iter().collect(),
            chunksize,
            decode_all::<R>,
        )
    }

    fn start_imap<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
        ordered: bool,
    ) -> IMap<'a, A, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let inner = &self.inner;
        let mut it = IMap {
            inner: self.inner.clone(),
            job: None,
            function: 0,
            input: Box::new(std::iter::empty()),
            chunksize,
            ordered,
            ahead: IMAP_AHEAD_PER_WORKER * inner.processes,
            submitted: 0,
            taken: 0,
            exhausted: true,
            buffered: VecDeque::new(),
            buf: Vec::new(),
        };
        let started = (|| {
            if chunksize == 0 {
                return Err(Error::InvalidArgument("chunksize must be at least 1"));
            }
            let code = worker::code1(f)?;
            let mut st = inner.lock();
            if let Some(e) = inner.refusal(&st) {
                return Err(e);
            }
            let function = st.table.index(code)?;
            Ok((inner.new_job(&mut st, true), function))
        })();
        match started {
            Ok((job, function)) => {
                it.job = Some(job);
                it.function = function;
                it.input = Box::new(items.into_iter());
                it.exhausted = false;
            }
            // Nothing was submitted: the error is the only item.
            Err(e) => it.buffered.push_back(Err(e)),
        }
        it
    }

    /// A lazy iterator of `f` over `items`, results in order (Python's
    /// `imap`, chunk size 1). Items are taken from `items` as results are
    /// consumed, a bounded number of chunks ahead.
    ///
    /// Errors come per item: a task's panic is that item's
    /// [`Error::TaskFailed`]. An error found before any task is submitted
    /// (the pool is closed, `f` is not in the main executable, a chunk size
    /// of 0) is the first and only item, so `for r in pool.imap(..)` always
    /// sees it. [`IMap::next_timeout`] waits a bounded time for the next
    /// result (Python's `it.next(timeout)`).
    pub fn imap<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> IMap<'a, A, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, 1, true)
    }

    /// [`imap`](Pool::imap) with chunks of `chunksize` items.
    pub fn imap_chunked<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> IMap<'a, A, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, chunksize, true)
    }

    /// Like [`imap`](Pool::imap), but results come in the order they are
    /// finished (Python's `imap_unordered`).
    pub fn imap_unordered<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> IMap<'a, A, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, 1, false)
    }

    /// [`imap_unordered`](Pool::imap_unordered) with chunks of `chunksize`
    /// items (each chunk's results stay together, in order).
    pub fn imap_unordered_chunked<'a, A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> IMap<'a, A, R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, chunksize, false)
    }

    /// Accepts no more work; the workers finish what was queued, then exit
    /// (Python's `close`). An `imap` made before goes on taking its input
    /// until [`join`](Pool::join) (Python's takes all of it at once).
    pub fn close(&self) {
        let mut st = self.inner.lock();
        st.closed = true;
        self.inner.close_ring_if_done(&st);
        self.inner.finish(st);
    }

    /// Stops the workers at once (SIGKILL) and reaps them; unfinished tasks
    /// fail with [`Error::PoolTerminated`] (Python's `terminate`). Results
    /// already sent are kept.
    pub fn terminate(&self) {
        if let Some(p) = self.inner.terminate() {
            std::panic::resume_unwind(p);
        }
    }

    /// Waits for the workers to finish the queued work and exit, after
    /// [`close`](Pool::close) or [`terminate`](Pool::terminate) (Python's
    /// `join`); [`Error::InvalidArgument`] if neither was called. Workers
    /// that die meanwhile are replaced while work remains, and every result
    /// is collected, so handles have their results afterwards. An `imap`
    /// with input not yet taken gets [`Error::PoolClosed`] for the rest.
    pub fn join(&self) -> Result<()> {
        loop {
            let mut st = self.inner.lock();
            if !st.closed {
                return Err(Error::InvalidArgument(
                    "join a pool only after close or terminate",
                ));
            }
            self.inner.tasks.close();
            st.next_scan = Instant::now();
            self.inner.scan(&mut st);
            if st.workers.iter().all(Option::is_none) {
                self.inner.drain(&mut st);
                self.inner.finish(st);
                return Ok(());
            }
            self.inner
                .pump(&mut st, Deadline::after(Duration::from_millis(2)));
            self.inner.finish(st);
        }
    }
}

impl Drop for Pool {
    /// Terminates the pool (as Python's `with Pool() as p:` does on exit):
    /// no worker or zombie is left.
    fn drop(&mut self) {
        // Never panic in drop: a callback's panic is dropped here.
        drop(self.inner.terminate());
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("Pool")
            .field("processes", &self.inner.processes)
            .field("running", &st.workers.iter().flatten().count())
            .field("closed", &st.closed)
            .field("terminated", &st.terminated)
            .finish()
    }
}

/// The result of [`Pool::apply_async`] or [`Pool::map_async`] to come
/// (Python's `AsyncResult`). Waiting on it also runs the pool (see the
/// [module documentation](self)).
pub struct AsyncResult<T> {
    inner: Arc<Inner>,
    job: u32,
    decode: fn(&Outcome) -> Result<T>,
}

impl<T> AsyncResult<T> {
    /// Waits for the result. A failed task gives its error:
    /// [`Error::TaskFailed`] (a panic, a result that could not be encoded),
    /// [`Error::WorkerDied`], [`Error::PoolTerminated`],
    /// [`Error::InitializerFailed`].
    pub fn get(&self) -> Result<T> {
        match self.inner.wait_job(self.job, Deadline::NEVER) {
            Some(o) => (self.decode)(&o),
            None => Err(Error::PoolTerminated),
        }
    }

    /// [`get`](AsyncResult::get), waiting at most `timeout`; then
    /// [`Error::Timeout`] (the result may still come: call again).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        match self.inner.wait_job(self.job, Deadline::after(timeout)) {
            Some(o) => (self.decode)(&o),
            None => Err(Error::Timeout),
        }
    }

    /// Waits until the result is there (Python's `wait()`).
    pub fn wait(&self) {
        self.inner.wait_job(self.job, Deadline::NEVER);
    }

    /// Waits at most `timeout`; returns whether the result is there.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.inner
            .wait_job(self.job, Deadline::after(timeout))
            .is_some()
    }

    /// Whether the result is there (collecting results that came, without
    /// waiting).
    pub fn ready(&self) -> bool {
        self.inner
            .wait_job(self.job, Deadline::after(Duration::ZERO))
            .is_some()
    }

    /// Whether the call completed without error; `None` while not
    /// [`ready`](AsyncResult::ready) (Python raises `ValueError` there).
    pub fn successful(&self) -> Option<bool> {
        self.inner
            .wait_job(self.job, Deadline::after(Duration::ZERO))
            .map(|o| (self.decode)(&o).is_ok())
    }
}

impl<T: 'static> AsyncResult<T> {
    fn on_done(self, cb: Callback) -> Self {
        let mut st = self.inner.lock();
        let done = st.jobs.get(&self.job).and_then(|j| j.completed.clone());
        let now = match done {
            Some(o) => Some((cb, o)),
            None => {
                if let Some(j) = st.jobs.get_mut(&self.job) {
                    j.callbacks.push(cb);
                }
                None
            }
        };
        drop(st);
        if let Some((cb, o)) = now {
            cb(&o);
        }
        self
    }

    /// Calls `f` with the result once it is there, if it is not an error
    /// (Python's `callback`), in the thread whose pool call collects it, or
    /// at once if it is already there. It runs even if this handle was
    /// dropped, once some call on the pool collects the result. If `f`
    /// panics, the panic surfaces in that call, after the other callbacks
    /// ran.
    pub fn callback(self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        let decode = self.decode;
        self.on_done(Box::new(move |o| {
            if let Ok(v) = decode(o) {
                f(&v)
            }
        }))
    }

    /// Calls `f` with the error once the result is there, if it is one
    /// (Python's `error_callback`): see [`callback`](AsyncResult::callback).
    pub fn error_callback(self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        let decode = self.decode;
        self.on_done(Box::new(move |o| {
            if let Err(e) = decode(o) {
                f(&e)
            }
        }))
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        self.inner.drop_handle(self.job);
    }
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job)
            .finish()
    }
}

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: one
/// `Result` per item. An error found before any task was submitted is its
/// only item.
pub struct IMap<'a, A, R> {
    inner: Arc<Inner>,
    /// None: the iterator failed to start (its error is in `buffered`).
    job: Option<u32>,
    function: u32,
    input: Box<dyn Iterator<Item = A> + 'a>,
    chunksize: usize,
    ordered: bool,
    ahead: usize,
    submitted: usize,
    taken: usize,
    exhausted: bool,
    buffered: VecDeque<Result<R>>,
    buf: Vec<u8>,
}

impl<A: Serialize, R: DeserializeOwned> IMap<'_, A, R> {
    /// Submits chunks until `ahead` are out or the input ends.
    fn top_up(&mut self, st: &mut State) {
        let Some(job) = self.job else {
            return;
        };
        while !self.exhausted && self.submitted - self.taken < self.ahead {
            let mut first = self.input.next();
            if first.is_none() {
                self.exhausted = true;
                self.inner.seal(st, job);
                break;
            }
            let cs = self.chunksize;
            let input = &mut self.input;
            let items = std::iter::from_fn(|| first.take()).chain(input.by_ref().take(cs - 1));
            self.inner
                .add_chunk(st, job, self.function, items, &mut self.buf);
            self.submitted += 1;
        }
    }

    /// The next result, waiting at most `timeout` for it (Python's
    /// `it.next(timeout)`): `Some(Err(Error::Timeout))` if none came in
    /// time. The iterator is still usable after a timeout: the result that
    /// was late comes from a later call. `None` when every result was
    /// yielded.
    ///
    /// The timeout bounds the wait for results; handing the next input
    /// items to the workers (a bounded number of chunks ahead) may also
    /// wait for room in the task ring, as [`next`](Iterator::next) does.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(Deadline::after(timeout))
    }

    fn next_until(&mut self, deadline: Deadline) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.buffered.pop_front() {
                return Some(r);
            }
            let job = self.job?;
            let inner = self.inner.clone();
            let mut st = inner.lock();
            self.top_up(&mut st);
            if self.exhausted && self.taken == self.submitted {
                inner.finish(st);
                return None;
            }
            let Some(j) = st.jobs.get_mut(&job) else {
                inner.finish(st);
                return None;
            };
            let next = if self.ordered {
                let i = self.taken;
                j.chunks
                    .get(i)
                    .is_some_and(|c| c.outcome.is_some())
                    .then_some(i)
            } else {
                j.arrivals.pop_front().map(|i| i as usize)
            };
            match next.and_then(|i| j.chunks.get_mut(i)) {
                Some(c) => {
                    decode_chunk(c, &mut self.buffered);
                    // Consumed: free its bytes.
                    c.outcome = Some(ChunkOutcome::Done(Vec::new()));
                    c.count = 0;
                    self.taken += 1;
                    inner.finish(st);
                }
                None if deadline.expired() => {
                    inner.finish(st);
                    return Some(Err(Error::Timeout));
                }
                None => {
                    inner.pump(&mut st, deadline);
                    inner.finish(st);
                }
            }
        }
    }
}

impl<A: Serialize, R: DeserializeOwned> Iterator for IMap<'_, A, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(Deadline::NEVER)
    }
}

impl<A, R> Drop for IMap<'_, A, R> {
    fn drop(&mut self) {
        let Some(job) = self.job else {
            return;
        };
        let mut st = self.inner.lock();
        st.jobs.remove(&job);
        self.inner.close_ring_if_done(&st);
    }
}

impl<A, R> fmt::Debug for IMap<'_, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("job", &self.job)
            .field("ordered", &self.ordered)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    /// A pool of one forked worker (the unit-test harness runs on threads).
    fn pool() -> Pool {
        // SAFETY: the worker runs only the pool's code and `double`, which
        // take no lock another thread of the harness could hold.
        unsafe { Pool::builder().processes(1).allow_threads() }
            .build()
            .unwrap()
    }

    #[test]
    fn a_forged_function_index_is_the_tasks_error_not_a_call() {
        let pool = pool();
        assert_eq!(pool.map(double, [1, 2]).unwrap(), vec![2, 4]);
        let worker = pool.pids();
        // A job of one chunk of one task, in the parent's books...
        let (job, id) = {
            let mut st = pool.inner.lock();
            let job = pool.inner.new_job(&mut st, false);
            let j = st.jobs.get_mut(&job).unwrap();
            j.chunks.push(Chunk {
                count: 1,
                outcome: None,
            });
            j.sealed = true;
            (job, (job as u64) << 32)
        };
        // ... whose task message another process writes into the shared
        // ring, naming functions the table does not hold.
        let tasks = pool.inner.tasks.clone();
        let forge = move || {
            for function in [7, u32::MAX] {
                let mut buf = Vec::new();
                worker::push_header(&mut buf, id, function);
                worker::set_count(&mut buf, 1);
                buf.extend_from_slice(&postcard::to_stdvec(&5u32).unwrap());
                if tasks
                    .put(&buf, Deadline::after(Duration::from_secs(5)))
                    .is_err()
                {
                    return 1;
                }
            }
            0
        };
        // SAFETY: the child only encodes and writes to the shared ring.
        let mut p = unsafe { Process::new(forge).allow_threads() };
        p.start().unwrap();
        assert!(
            p.join_timeout(Duration::from_secs(10))
                .unwrap()
                .is_some_and(|s| s.success())
        );
        let forged = AsyncResult {
            inner: pool.inner.clone(),
            job,
            decode: decode_all::<u32>,
        };
        match forged.get_timeout(Duration::from_secs(10)) {
            Err(Error::TaskFailed(m)) => assert!(m.contains("never registered"), "{m}"),
            other => panic!("{other:?}"),
        }
        // The worker lived through it and still runs what was registered.
        assert_eq!(pool.map(double, [3]).unwrap(), vec![6]);
        assert_eq!(pool.pids(), worker);
    }

    #[test]
    fn shared_library_functions_are_refused() {
        let pool = pool();
        let f = crate::process::code::tests::foreign::<u32, u32>();
        assert!(matches!(pool.map(f, [1]), Err(Error::ForeignCode { .. })));
        assert!(matches!(pool.apply(f, 1), Err(Error::ForeignCode { .. })));
        let mut it = pool.imap(f, [1]);
        assert!(matches!(it.next(), Some(Err(Error::ForeignCode { .. }))));
        assert!(it.next().is_none());
        assert_eq!(pool.map(double, [4]).unwrap(), vec![8]);
        let init = crate::process::code::tests::foreign::<(), ()>();
        // SAFETY: refused before any fork.
        let b = unsafe { Pool::builder().processes(1).allow_threads() }.initializer(init, ());
        assert!(matches!(
            b.build().map(|_| ()),
            Err(Error::ForeignCode { .. })
        ));
    }
}
