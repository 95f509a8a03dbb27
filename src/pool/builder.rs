//! [`PoolBuilder`]: a pool's settings, and starting it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::process::code::CodePtr;
use crate::process::{Process, StartMethod};
use crate::ring::records::Core;

use super::scheduler::{Inner, Starter, State, WorkerProc};
use super::worker::{self, CodeTable, WorkerArgs};
use super::{Pool, PoolError, RING_BYTES, SCAN};

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
    /// pool fail every task with [`TaskError::InitializerFailed`](super::TaskError::InitializerFailed) and start no
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
    /// Errors: [`PoolError::InvalidArgument`] for zero processes or a zero
    /// `max_tasks_per_child`;
    /// [`PoolError::ThreadedFork`] when forking from a multithreaded
    /// process without [`allow_threads`](PoolBuilder::allow_threads);
    /// [`PoolError::ForeignCode`] for an initializer that is not in the
    /// main executable; the error of a worker that could not be started
    /// (the others are stopped).
    pub fn build(self) -> Result<Pool, PoolError> {
        self.start().map_err(PoolError::from_internal)
    }

    fn start(self) -> Result<Pool> {
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
