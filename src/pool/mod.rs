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
//! A task is a function of one argument (of two for `starmap`): a
//! function item such as `square`, a closure that captures nothing such
//! as `|x: u64| x + 1`, or an `fn(A) -> R` pointer; its arguments and
//! results are encoded by serde (postcard, as elsewhere in the crate). A
//! closure that captures something cannot cross to a worker and is
//! refused with [`TaskError::InvalidArgument`]. The functions must be the
//! program's own: a function of a shared library (a plugin, a `cdylib`, a
//! `-C prefer-dynamic` build) is refused with [`TaskError::ForeignCode`],
//! since a worker could not find it. The parent registers each function
//! in a table that only it can write, and the task ring names functions
//! by their index in that table, so a worker never calls an address read
//! from memory another process could write. A process forked from the
//! pool's owner can still give it functions the owner registered, but no
//! new ones. The table knows a function item or closure by its type (the
//! same in every process of the program), and an `fn` pointer by its
//! address: in an optimised build a small function can have one copy per
//! codegen unit, so a forked child handing over a pointer may name
//! another copy than the owner registered, and be refused; hand over the
//! function item itself. Shared objects for the workers (a
//! [`Lock`](crate::Lock), a [`Value`](crate::Value)) are given to the
//! [initializer](PoolBuilder::initializer), as Python requires for pool
//! workers.
//!
//! # Errors in tasks
//!
//! Building and joining a pool can fail with a [`PoolError`]; giving it
//! work and waiting for results, with a [`TaskError`], which says what
//! became of the task (it panicked, its worker died, the pool was closed
//! or terminated, ...). Both convert into the crate's [`Error`](crate::Error),
//! so `?` works in a function returning [`multiproc::Result`](crate::Result).
//!
//! A task that panics fails alone, with [`TaskError::TaskFailed`]: its text is
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
//! [`TaskError::WorkerDied`] and starts a new worker.
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
//! [`TaskError::PoolTerminated`]. Call [`close`](Pool::close) then
//! [`join`](Pool::join) to let them finish first.

// The files: `builder` (settings, starting the workers), `submit` (the
// submit methods), `scheduler` (workers, jobs and the pump that runs the
// pool), `async_result` and `imap` (the handles), `worker` (the worker's
// side).
mod async_result;
#[cfg(feature = "tokio")]
mod asynchronous;
mod builder;
mod error;
mod imap;
mod scheduler;
mod submit;
mod worker;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;

pub use async_result::AsyncResult;
#[cfg(feature = "tokio")]
pub use asynchronous::{OwnedResultFuture, ResultFuture};
pub use builder::PoolBuilder;
pub use error::{PoolError, TaskError};
pub use imap::IMap;
use scheduler::Inner;

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

/// A pool of worker processes; see the [module documentation](self).
///
/// `Pool` is `Send` and `Sync`: several threads may give it work and wait
/// for results at once.
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool of `processes` workers with the default settings (the start
    /// method in force, no initializer). Use [`Pool::builder`] for more.
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
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
    /// fail with [`TaskError::PoolTerminated`] (Python's `terminate`). Results
    /// already sent are kept.
    pub fn terminate(&self) {
        if let Some(p) = self.inner.terminate() {
            std::panic::resume_unwind(p);
        }
    }

    /// Waits for the workers to finish the queued work and exit, after
    /// [`close`](Pool::close) or [`terminate`](Pool::terminate) (Python's
    /// `join`); [`PoolError::InvalidArgument`] if neither was called. Workers
    /// that die meanwhile are replaced while work remains, and every result
    /// is collected, so handles have their results afterwards. An `imap`
    /// with input not yet taken gets [`TaskError::PoolClosed`] for the rest.
    pub fn join(&self) -> Result<(), PoolError> {
        loop {
            let mut st = self.inner.lock();
            if !st.closed {
                return Err(PoolError::InvalidArgument(
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

#[cfg(test)]
mod tests {
    use super::scheduler::{Chunk, decode_all};
    use super::*;
    use crate::Process;

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
            Err(TaskError::TaskFailed(m)) => assert!(m.contains("never registered"), "{m}"),
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
        assert!(matches!(
            pool.map(f, [1]),
            Err(TaskError::ForeignCode { .. })
        ));
        assert!(matches!(
            pool.apply(f, 1),
            Err(TaskError::ForeignCode { .. })
        ));
        let mut it = pool.imap(f, [1]);
        assert!(matches!(
            it.next(),
            Some(Err(TaskError::ForeignCode { .. }))
        ));
        assert!(it.next().is_none());
        assert_eq!(pool.map(double, [4]).unwrap(), vec![8]);
        let init = crate::process::code::tests::foreign::<(), ()>();
        // SAFETY: refused before any fork.
        let b = unsafe { Pool::builder().processes(1).allow_threads() }.initializer(init, ());
        assert!(matches!(
            b.build().map(|_| ()),
            Err(PoolError::ForeignCode { .. })
        ));
    }
}
