//! A pool of worker processes held by the server (Python's
//! `SyncManager.Pool`), used by clients through a `PoolProxy`.
//!
//! Tasks are functions (fn items or closures that capture nothing), and a
//! client names one by its [`task_key`]: a hash of the function's own
//! type, the same in every process running one executable. Not by its code
//! address: in an optimised build a small function can have a copy per
//! codegen unit, so two places in one program can see two addresses for
//! one function. The server never calls anything a client names: it looks
//! the key up in the table of the tasks registered with
//! `ManagerBuilder::pool_task` before it started ([`register`]), which
//! reached it through its own arguments (fork memory or the spawn
//! bootstrap). A key that is not in the table is refused. Arguments and
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

/// Runs one registered task over encoded arguments on a pool: the encoded
/// results, in order.
pub(crate) type TaskRunner = fn(&Pool, &[Bytes<'_>]) -> Result<Vec<Vec<u8>>>;

/// What crosses to the server for a task function: a function of the main
/// executable that gives the runner made for the task's types.
pub(crate) type TaskRegistration = fn(()) -> TaskRunner;

/// The key a task `F` is named by: a hash of its type's `TypeId`, with the
/// fixed keys of `DefaultHasher::new()` (the same in every process running
/// one executable; another build's keys simply miss the table).
pub(crate) fn task_key<F: 'static>() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::any::TypeId::of::<F>().hash(&mut h);
    h.finish()
}

/// The runner of the task `F` (a [`TaskRegistration`]).
pub(crate) fn runner_of<F, A, R>((): ()) -> TaskRunner
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    run_task::<F, A, R>
}

fn run_task<F, A, R>(pool: &Pool, args: &[Bytes<'_>]) -> Result<Vec<Vec<u8>>>
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    let items: Vec<A> = args.iter().map(|b| dec_args(b.0)).collect::<Result<_>>()?;
    pool.map(call_task::<F, A, R>, items)?
        .iter()
        .map(enc)
        .collect()
}

/// Calls the task `F`, a zero-sized function type (an fn item or a closure
/// that captures nothing), on `a`: a plain function the pool's workers can
/// be handed.
fn call_task<F, A, R>(a: A) -> R
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
{
    const { assert!(std::mem::size_of::<F>() == 0) };
    // SAFETY: `F` is zero-sized (checked at compile time above), so a value
    // has no bytes that could be invalid. This function is instantiated
    // only through `runner_of::<F, ..>`, which only
    // `ManagerBuilder::pool_task(f: F)` names, so a value of `F` existed in
    // the program that registered it; `F: Copy`, so making one here is a
    // copy of that value, not a forgery of one nobody was given.
    let f: F = unsafe { std::mem::zeroed() };
    f(a)
}

/// The tasks this process's servers run: key and runner. One table per
/// process: a key names one function type, whose runner is the one made
/// for it, whichever builder registered it.
static TASKS: Mutex<Option<HashMap<u64, TaskRunner>>> = Mutex::new(None);

/// Registers the task of key `key` ([`task_key`]) with its runner.
pub(crate) fn register(key: u64, runner: TaskRunner) {
    TASKS
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(key, runner);
}

fn runner(key: u64) -> Option<TaskRunner> {
    TASKS.lock().as_ref()?.get(&key).copied()
}

/// An operation on a pool.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum PoolOp<'a> {
    /// Runs the task of a key (a registered one, see [`task_key`]) on
    /// each argument. Answer: the results, in order.
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
                Answer::Items(run(&self.0, &args)?)
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
