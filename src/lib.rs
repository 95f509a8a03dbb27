//! Python's `multiprocessing` for Rust on Linux: shared memory, locks that
//! work across processes, `Value` and `Array`.
//!
//! Objects made before a fork are shared with the children: they live in
//! memfd-backed `MAP_SHARED` memory (a shared heap packs small ones into a
//! few mappings), and every lock and wait is a futex word in that memory.
//!
//! ```
//! use multiproc::{Process, Value};
//!
//! let counter = Value::new(0u64)?;
//! multiproc::process::scope(|s| {
//!     let mut children: Vec<Process> = (0..4)
//!         .map(|_| s.process(|| for _ in 0..1000 { counter.update(|c| *c += 1) }))
//!         # .map(|p| unsafe { p.allow_threads() }) // doctests run on a thread
//!         .collect();
//!     for p in &mut children {
//!         p.start()?;
//!     }
//!     for p in &mut children {
//!         assert!(p.join()?.success());
//!     }
//!     Ok::<(), multiproc::Error>(())
//! })?;
//! assert_eq!(counter.get(), 4000);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! Children that borrow (here `counter`) run in a [`process::scope`], which
//! returns only once every child started in it has ended, even if a handle
//! is `mem::forget`-ed or the scope's closure panics; outside a scope,
//! [`Process::new`] takes a `'static` closure that owns what it uses. Safe
//! code therefore cannot free what a running child still uses.
//!
//! # From Python
//!
//! | Python `multiprocessing` | multiproc |
//! |---|---|
//! | `Value('d', 0.0)` | [`Value::new(0.0f64)`](Value::new) |
//! | `with v.get_lock(): v.value += 1` | `*v.lock()? += 1`, or [`v.update(\|x\| *x += 1)`](Value::update) |
//! | `RawValue('i', 0)`; `v.value`, `v.value = x` | [`RawValue::new(0i32)`](RawValue::new) (atomic); [`v.get()`](RawValue::get), [`v.set(x)`](RawValue::set) |
//! | `Value('i', 0, lock=L)`, `Array('d', n, lock=L)`, `Condition(L)` | [`Value::with_lock(0, &l)`](Value::with_lock), [`Array::zeroed_with_lock(n, &l)`](Array::zeroed_with_lock), [`Condition::with_lock(&l)`](Condition::with_lock) |
//! | `Array('i', 10)` / `Array('d', [1.0, 2.0])` | [`Array::<i32>::zeroed(10)`](Array::zeroed) / [`Array::from_slice(&[1.0, 2.0])`](Array::from_slice) |
//! | `RawArray('d', n)` | [`RawArray::<f64>::zeroed(n)`](RawArray::zeroed) |
//! | `Lock()`, `RLock()` | [`Lock::new()`](Lock::new), [`RLock::new()`](RLock::new) |
//! | `lock.acquire(timeout=t)` | [`lock.lock_timeout(t)`](Lock::lock_timeout) (guard) or [`acquire_timeout`](Lock::acquire_timeout) |
//! | `Semaphore(n)`, `BoundedSemaphore(n)` | [`Semaphore::new(n)`](Semaphore::new), [`BoundedSemaphore::new(n)`](BoundedSemaphore::new) |
//! | `Condition()`; `cond.wait_for(pred, t)` | [`Condition::new()`](Condition::new); [`wait_while_timeout`](Condition::wait_while_timeout) |
//! | `Event()`, `Barrier(n, action)` | [`Event::new()`](Event::new), [`Barrier::with_action(n, f)`](Barrier::with_action) |
//! | `shared_memory.ShareableList(seq, name=n)` | [`ShareableList::create`] / [`ShareableList::open`] (byte-compatible with Python's) |
//! | `shared_memory.SharedMemory(name, create, size)` | [`SharedMemory::create`] / [`SharedMemory::open`] / [`SharedMemory::open_or_create`] |
//! | `cpu_count()` | [`cpu_count()`], [`process_cpu_count()`] |
//! | `parent_process()` | [`parent_process()`] (`None` in the main process) |
//! | `Process(target=f).start()` | [`Process::new(f).start()`](Process::start) |
//! | `with Pool(4) as p: p.map(f, xs)` | `Pool::new(4)?.map(f, xs)?` (feature `pool`, module `pool`) |
//!
//! # Safety and `unsafe`
//!
//! Raw system calls live in the private `sys` module (clippy's
//! `disallowed-methods`, in `clippy.toml`, refuses a raw `libc`/`nix` call
//! anywhere else); placement in shared memory in `shm`. Types that may live
//! in shared memory implement the `unsafe` trait [`ShmSafe`].
//!
//! The crate is `#![deny(unsafe_code)]`; `unsafe` is allowed in these
//! modules only, each for the reason given:
//!
//! | module | why |
//! |---|---|
//! | `sys` | the system calls |
//! | `shm` | placement in shared memory: the heap, copies, atomics, [`ShmSafe`] |
//! | `sync` | futex locks in shared memory, their guards |
//! | `value`, `array` | typed views of shared memory |
//! | `shared_memory` | the public `unsafe` views of a [`SharedMemory`] block |
//! | `process::{fork, spawn, code, report, handle}` | fork; inherited descriptors and `pre_exec`; functions named across `exec`; the report slot; [`Process::allow_threads`] |
//! | `ring`, `connection::stream` | rings in shared memory |
//! | `pool`, `manager`, `redis` | forking workers and the server; the worker table; functions named across `exec` (signed tasks for `redis`); a task of a zero-sized function type made again from its type (`pool`, `manager`) |
//! | `aio` | the futex reactor: words registered with the kernel |
//! | `testing` | a function in `.init_array` |
//!
//! # Layers
//!
//! Every arrow points down: a module uses only those below it (`error`,
//! `exit_status`, `deadline` and `mac` are leaves every layer may use).
//!
//! ```text
//! CLI (the multiproc-cli crate, cli/)
//!  |
//! pool, manager, redis
//!  |
//! queue, process, parent_process, task_items (the pools' chunk runner)
//!  |
//! value, array, shared_memory, shareable_list, connection (listener,
//! ring, wait), signal
//!  |
//! current_process (name, pid, authkey)
//!  |
//! shm, sync (one layer: sync's locks are placed by shm; shm's mailbox
//! waits through sync::wait)
//!  |
//! sys (a module above that acts around a fork registers in sys::atfork)
//! ```

//!
//! # Features
//!
//! None by default; the core above needs none. Each feature is named after
//! what it unlocks: `spawn` (the spawn start method, `Process::with_result`,
//! `Connection::send`/`recv`: serde), `queue`, `pool`, `listener`
//! (`Listener`/`Client` and the HMAC handshake), `signals`
//! (`signal::StopRequest`, `process::start_reaper`), `manager`, `redis`,
//! `log` (the library's records on the `log` facade, `log_to_stderr`),
//! `testing` (forking inside `#[test]`) and `derive` (`#[derive(ShmSafe)]`). On docs.rs each item is marked with
//! the feature it needs.

#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(not(target_os = "linux"))]
compile_error!("multiproc supports Linux only: it is built on memfd, futex, pidfd and /proc");

#[allow(unsafe_code)] // the futex reactor: words registered with the kernel
#[cfg(feature = "tokio")]
pub mod aio;
#[allow(unsafe_code)] // typed views of shared memory
mod array;
pub mod connection;
mod current_process;
mod deadline;
mod error;
mod exit_status;
#[cfg(feature = "log")]
pub mod log;
#[cfg(any(feature = "listener", feature = "redis"))]
mod mac;
#[allow(unsafe_code)] // forking the server, registered functions across exec
#[cfg(feature = "manager")]
pub mod manager;
mod parent_process;
#[allow(unsafe_code)] // forking workers, the worker table, functions across exec, typed tasks
#[cfg(feature = "pool")]
pub mod pool;
pub mod process;
#[cfg(feature = "queue")]
pub mod queue;
#[allow(unsafe_code)] // signed tasks naming functions of this build; forking local workers
#[cfg(feature = "redis")]
pub mod redis;
#[allow(unsafe_code)] // rings in shared memory
mod ring;
mod shareable_list;
#[allow(unsafe_code)] // the public `unsafe` views of a block
mod shared_memory;
#[allow(unsafe_code)] // placement in shared memory
mod shm;
pub mod signal;
#[allow(unsafe_code)] // futex locks in shared memory
pub mod sync;
#[allow(unsafe_code, clippy::disallowed_methods)] // the system calls
mod sys;
#[cfg(any(feature = "pool", feature = "redis"))]
mod task_items;
#[cfg(feature = "testing")]
#[allow(unsafe_code)] // a function in .init_array (see the module)
pub mod testing;
#[allow(unsafe_code)] // typed views of shared memory
mod value;

/// The number of CPUs in the system (Python's `multiprocessing.cpu_count()`,
/// which is `os.cpu_count()`): those online. At least 1.
///
/// A process may be allowed fewer (an affinity mask, `taskset`): see
/// [`process_cpu_count`].
///
/// ```
/// assert!(multiproc::cpu_count() >= multiproc::process_cpu_count());
/// ```
pub fn cpu_count() -> usize {
    sys::limits::online_cpus()
        .or_else(|| std::thread::available_parallelism().ok().map(Into::into))
        .unwrap_or(1)
}

/// The number of CPUs this process may run on (Python 3.13's
/// `os.process_cpu_count()`: the size of its affinity mask). At least 1.
pub fn process_cpu_count() -> usize {
    sys::limits::affinity_cpus()
        .or_else(|| std::thread::available_parallelism().ok().map(Into::into))
        .unwrap_or(1)
}

/// Logs on the `log` facade under the target "multiproc" with feature
/// `log`; nothing without it (the arguments are not evaluated).
macro_rules! mp_log {
    ($lvl:ident, $($arg:tt)+) => {{
        #[cfg(feature = "log")]
        ::log::$lvl!(target: $crate::log::TARGET, $($arg)+);
        // Type-checked (and its variables used) but never run.
        #[cfg(not(feature = "log"))]
        if false {
            let _ = format_args!($($arg)+);
        }
    }};
}
pub(crate) use mp_log;

#[cfg(feature = "log")]
pub use crate::log::log_to_stderr;
#[cfg(feature = "redis")]
pub use crate::redis::RedisQueue;
pub use array::{Array, ArrayError, IndexError, RawArray};
#[cfg(feature = "listener")]
pub use connection::listener::{Address, Client, Listener};
pub use connection::{Connection, RecvError, SendError, pipe};
pub use error::{
    CreateError, Error, LockError, LockResult, NotOwner, OwnerDied, ReleasedTooManyTimes,
    RemoteErrorKind, Result, TryLockError, TryLockResult,
};
pub use exit_status::ExitStatus;
pub use parent_process::{ParentProcess, parent_process};
#[cfg(feature = "pool")]
pub use pool::{AsyncResult, IMap, Pool, PoolBuilder};
pub use process::{
    CurrentProcess, GroupError, JoinError, JoinOkError, Process, ProcessGroup, ResultError,
    SignalError, StartError, StartMethod, active_children, current_process, init, parent_alive,
    set_start_method, start_method,
};
#[cfg(feature = "queue")]
pub use queue::{
    GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, SimpleQueue,
    TaskDoneError, TryGetError, TryPutError,
};
pub use shareable_list::{ShareableItem, ShareableList, ShareableListError};
pub use shared_memory::{SharedMemory, SharedMemoryError};
pub use shm::{Atomic, AtomicNumber, ShmSafe};
pub use sync::barrier::{Barrier, BarrierError};
pub use sync::condition::{Condition, WaitTimeoutResult};
pub use sync::event::Event;
pub use sync::lock::{Lock, LockGuard, RLock, RLockGuard};
pub use sync::raw::{RawProcessCondvar, RawProcessMutex};
pub use sync::semaphore::{BoundedSemaphore, Semaphore};
pub use value::{RawValue, Value, ValueWithLock};

// The README's Rust examples run as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
