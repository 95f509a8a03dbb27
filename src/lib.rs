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
pub use value::{RawValue, Value, ValueWithLock, WrongGuard};

// The README's Rust examples run as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The Rust column of the README's table "What is here", cell by cell, so
/// that every call it shows compiles (the table's cells are code too).
///
/// ```rust,no_run
/// # #![allow(unused)]
/// use std::time::Duration;
/// use multiproc::manager::{Manager, QueueProxy, SharedMemoryManager};
/// use multiproc::pool::TaskError;
/// use multiproc::*;
///
/// fn f(x: u64) -> u64 { x }
/// fn pred(x: &mut u64) -> bool { *x > 0 }
/// # #[derive(Default, serde::Serialize, serde::Deserialize)]
/// # struct Counter(u64);
/// # multiproc::manager_type! {
/// #     pub proxy CounterProxy for Counter as "Counter" {
/// #         fn add(&mut self, k: u64) -> u64;
/// #     }
/// # }
/// # impl Counter { fn add(&mut self, k: u64) -> u64 { self.0 += k; self.0 } }
///
/// fn table() -> multiproc::Result<()> {
///     let (n, t, x, name, url) = (4usize, Duration::from_secs(1), 1u64, "/shm-name", "redis://h/");
///     let k: &[u8] = b"key";
///     let address = Address::parse("unix:/tmp/s")?;
///     // Value, RawValue, Array, RawArray
///     let v = Value::new(0.0f64)?;
///     let v = Value::new(0u64)?;
///     *v.lock()? += 1;
///     v.update(|x| *x += 1);
///     v.set(v.get());
///     let r = RawValue::new(0i32)?;
///     r.set(r.get());
///     r.swap(1);
///     r.fetch_add(1);
///     let a = Array::<i32>::zeroed(10)?;
///     let a = Array::from_slice(&[1.0, 2.0])?;
///     let a = RawArray::<f64>::zeroed(n)?;
///     a.set(0, a.get(0)?)?;
///     // Locks, semaphores, conditions, events, barriers
///     let (l, rl) = (Lock::new()?, RLock::new()?);
///     let g = l.lock_timeout(t);
///     drop(g);
///     let (s, b) = (Semaphore::new(2)?, BoundedSemaphore::new(2)?);
///     let (a, b) = (Value::with_lock(0i32, &l)?, Value::with_lock(0i32, &l)?);
///     let arr = Array::<f64>::zeroed_with_lock(n, &l)?;
///     let c = Condition::with_lock(&l)?;
///     {
///         let mut g = l.lock()?;
///         a.set_with(&mut g, 1)?;
///         b.get_with(&mut g)?;
///     }
///     let cond = Condition::new()?;
///     let c = Value::new(0u64)?;
///     let mut guard = c.lock()?;
///     cond.wait_while_timeout(&mut guard, t, |x| !pred(x));
///     drop(guard);
///     let e = Event::new()?;
///     let action = || {};
///     let bar = Barrier::with_action(2, action)?.with_timeout(t);
///     // Shared memory
///     let shm = SharedMemory::create(Some(name), n)?;
///     let shm = SharedMemory::open(name)?;
///     let sl = ShareableList::create(Some(name), &[1i64.into(), 2.5.into(), "a".into()])?;
///     let sl = ShareableList::open(name)?;
///     let items: Vec<ShareableItem> = vec![1i64.into()];
///     let smm = SharedMemoryManager::start()?;
///     smm.shared_memory(n)?;
///     smm.shareable_list(&items)?;
///     let (shm, created) = SharedMemory::open_or_create(name, n)?;
///     // Processes
///     let mut p = Process::new(|| {});
///     p.start()?;
///     p.join()?;
///     process::scope(|s| Ok::<_, multiproc::Error>(s.spawn(|| {})?.join()?))?;
///     (p.exit_code(), p.is_alive());
///     p.terminate()?;
///     p.kill()?;
///     p.join_timeout(t)?;
///     let p = Process::new(|| {}).with_daemon(true).with_name("name");
///     multiproc::init();
///     let mut p = Process::spawn(f, x)?;
///     set_start_method(StartMethod::Spawn);
///     let mut p = Process::call(f, x)?;
///     let me = current_process();
///     (me.name(), me.pid(), me.authkey());
///     if let Some(pp) = multiproc::parent_process() {
///         (pp.pid(), pp.is_alive());
///         pp.join_timeout(Some(t))?;
///     }
///     (multiproc::cpu_count(), multiproc::process_cpu_count());
///     multiproc::log_to_stderr(::log::Level::Info); // `log` is the crate here
///     let pids: Vec<i32> = active_children();
///     // Connections
///     let (a, b) = multiproc::pipe(true)?;
///     let conn = a;
///     multiproc::process::wait(&[&p, &conn], Some(t))?;
///     conn.send_bytes(b"b")?;
///     conn.recv_bytes()?;
///     conn.poll(Some(t))?;
///     let value = 1u64;
///     conn.send(&value)?;
///     conn.recv::<u64>()?;
///     let mut l = Listener::bind(&Address::parse("unix:/tmp/s")?, Some(k))?;
///     let c = l.accept()?;
///     let c = Client::connect(&address, Some(k))?;
///     let file = std::fs::File::open("/dev/null").unwrap();
///     let fd = std::os::fd::AsFd::as_fd(&file);
///     conn.send_handle(fd)?;
///     let fd = conn.recv_handle()?;
///     conn.send_connection(&b)?;
///     let other = conn.recv_connection()?;
///     // Queues
///     let q = Queue::bounded(n)?;
///     q.put(x)?;
///     let y: u64 = q.get_timeout(t)?;
///     q.try_put(x)?;
///     let q = JoinableQueue::<u64>::new()?;
///     q.task_done()?;
///     q.join();
///     // Pool
///     let xs = vec![1u64, 2];
///     let p = Pool::new(4)?;
///     p.map(f, xs.clone())?;
///     let cb = |r: &u64| {};
///     p.apply_async(f, x)?.callback(cb).get_timeout(t)?;
///     let chunksize = 2;
///     let mut it = p.imap_chunked(f, xs.clone(), chunksize);
///     let it2 = p.imap_unordered(f, xs.clone());
///     if let Some(Err(TaskError::Timeout)) = it.next_timeout(t) {}
///     let e: TaskError = TaskError::PoolClosed;
///     matches!(e, TaskError::TaskFailed { .. } | TaskError::WorkerDied { .. } | TaskError::PoolTerminated);
///     let lock = Lock::new()?;
///     let init = |_l: Lock| {};
///     let p = Pool::builder().initializer(init, lock).max_tasks_per_child(10).build()?;
///     // Manager
///     let m = Manager::start()?;
///     let list = m.list::<u64>()?;
///     let dict = m.dict::<String, u64>()?;
///     let ns = m.namespace()?;
///     let mq = m.queue::<u64>()?;
///     let ml = m.lock()?;
///     let key = k;
///     let client = Manager::connect(&address, key)?;
///     let m2 = Manager::builder().address(Address::parse("tcp:127.0.0.1:0")?).start()?;
///     m2.address();
///     m.expose("jobs", &mq)?;
///     let jobs = client.get::<QueueProxy<u64>>("jobs")?;
///     let builder = Manager::builder();
///     builder.serve_with_setup(|m| m.expose("jobs", &m.queue::<u64>()?))?;
///     let outer = m.list::<multiproc::manager::ListProxy<u64>>()?;
///     outer.push(&m.list::<u64>()?)?;
///     let b = Manager::builder().register::<Counter>();
///     // Redis
///     let rq = RedisQueue::<u64>::open(url, name)?;
///     rq.put(x)?;
///     let _: u64 = rq.get()?;
///     let _: u64 = rq.get_timeout(t)?;
///     Ok(())
/// }
/// ```
#[cfg(all(
    doctest,
    feature = "manager",
    feature = "pool",
    feature = "redis",
    feature = "log"
))]
pub struct ReadmeTable;
