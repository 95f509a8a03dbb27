//! A pool of worker processes held by the server (Python's
//! `SyncManager.Pool`), used by clients through a `PoolProxy`.
//!
//! Tasks are plain functions of the main executable, as for
//! [`Pool`](crate::pool::Pool), and a client names one by its code offset.
//! The server never calls an offset it reads from a client: it looks the
//! offset up in the table of the functions registered with
//! `ManagerBuilder::pool_task` before it started ([`register`]), which
//! reached it through its own arguments (fork memory or the spawn
//! bootstrap). An offset that is not in the table is refused. Arguments and
//! results travel encoded and are decoded by serde only.
//!
//! The server has a thread per connection, so its pool spawns its workers
//! (the program must call [`crate::init`] first in `main`), never forks.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Answer;
use crate::error::{RemoteErrorKind as K, Result};
use crate::manager::protocol::{Bytes, dec_args, enc, remote};
use crate::manager::server::Cx;
use crate::pool::Pool;
use crate::process::StartMethod;
use crate::process::code::Code;

/// Runs the task at a function offset over encoded arguments on a pool:
/// the encoded results, in order.
pub(crate) type TaskRunner = fn(&Pool, u64, &[Bytes<'_>]) -> Result<Vec<Vec<u8>>>;

/// What crosses to the server for a task function: a function of the main
/// executable that gives the runner made for the task's types.
pub(crate) type TaskRegistration = fn(()) -> TaskRunner;

/// The runner of a task of type `fn(A) -> R` (a [`TaskRegistration`]).
pub(crate) fn runner_of<A, R>((): ()) -> TaskRunner
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    run_task::<A, R>
}

fn run_task<A, R>(pool: &Pool, function: u64, args: &[Bytes<'_>]) -> Result<Vec<Vec<u8>>>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    let items: Vec<A> = args.iter().map(|b| dec_args(b.0)).collect::<Result<_>>()?;
    let code = Code::from_offset(function)?;
    // SAFETY: `function` is a key of the task table, whose every entry
    // pairs the offset of a `CodePtr<fn(A) -> R>` made by
    // `ManagerBuilder::pool_task::<A, R>` with the registration of this
    // very runner (`runner_of::<A, R>`), made in the same call ([`register`]
    // is given both from the server's arguments, which no other process can
    // write, or from this process's builder); this process runs the same
    // executable image.
    let f = unsafe { code.assume::<fn(A) -> R>() }.get();
    pool.map(f, items)?.iter().map(enc).collect()
}

/// The task functions this process's servers run: function offset and
/// runner. One table per process: an offset names one function, whose
/// runner is the one made for its types, whichever builder registered it.
static TASKS: Mutex<Option<HashMap<u64, TaskRunner>>> = Mutex::new(None);

/// Registers the task at `function` (an offset) with its runner.
pub(crate) fn register(function: u64, runner: TaskRunner) {
    TASKS
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(function, runner);
}

fn runner(function: u64) -> Option<TaskRunner> {
    TASKS.lock().as_ref()?.get(&function).copied()
}

/// An operation on a pool.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum PoolOp<'a> {
    /// Runs the task at a function offset (a registered one) on each
    /// argument. Answer: the results, in order.
    Map(u64, #[serde(borrow)] Vec<Bytes<'a>>),
    /// Accepts no more tasks. Answer: unit.
    Close,
    /// Stops the workers now. Answer: unit.
    Terminate,
    /// Waits for the workers to finish (after `Close`). Answer: unit.
    Join,
}

/// The most workers a client may ask a server's pool for (a number from
/// the wire: a typo should not fork-bomb the server's host).
const MAX_PROCESSES: u64 = 1024;

/// A pool in the server.
pub(crate) struct PoolObj(Pool);

impl PoolObj {
    /// A pool of the encoded `u64` number of workers (0: one per core).
    pub(crate) fn make(init: &[u8]) -> Result<PoolObj> {
        let n: u64 = dec_args(init)?;
        if n > MAX_PROCESSES {
            return Err(remote(
                K::Value,
                format!("a manager's pool has at most {MAX_PROCESSES} processes, not {n}"),
            ));
        }
        let mut b = Pool::builder().start_method(StartMethod::Spawn);
        if n > 0 {
            b = b.processes(n as usize);
        }
        Ok(PoolObj(b.build()?))
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: PoolOp<'_>, _cx: &Cx<'_>) -> Result<Answer> {
        Ok(match op {
            PoolOp::Map(function, args) => {
                let run = runner(function).ok_or_else(|| {
                    remote(
                        K::BadArguments,
                        "that function is not a task of this manager: register it with \
                         ManagerBuilder::pool_task",
                    )
                })?;
                Answer::Items(run(&self.0, function, &args)?)
            }
            PoolOp::Close => {
                self.0.close();
                Answer::Unit
            }
            PoolOp::Terminate => {
                self.0.terminate();
                Answer::Unit
            }
            PoolOp::Join => {
                self.0.join()?;
                Answer::Unit
            }
        })
    }
}
