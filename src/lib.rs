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
//! | `with Pool(4) as p: p.map(f, xs)` | `Pool::new(4)?.map(f, xs)?` (feature `serde`, module `pool`) |
//!
//! # Safety and `unsafe`
//!
//! Raw system calls live in the private `sys` module; placement in shared
//! memory in `shm`. Types that may live in shared memory implement the
//! `unsafe` trait [`ShmSafe`].

#[cfg(not(target_os = "linux"))]
compile_error!("multiproc supports Linux only: it is built on memfd, futex, pidfd and /proc");

#[cfg(feature = "tokio")]
pub mod aio;
mod array;
pub mod connection;
mod deadline;
mod error;
#[cfg(feature = "serde")]
pub mod manager;
mod parent_process;
#[cfg(feature = "serde")]
pub mod pool;
pub mod process;
#[cfg(feature = "serde")]
pub mod queue;
#[cfg(feature = "redis")]
pub mod redis;
mod shareable_list;
mod shared_memory;
mod shm;
pub mod signal;
pub mod sync;
mod sys;
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

#[cfg(feature = "redis")]
pub use crate::redis::RedisQueue;
pub use array::{Array, RawArray};
pub use connection::listener::{Address, Client, Listener};
pub use connection::{Connection, pipe};
pub use error::{
    Error, LockError, LockResult, OwnerDied, RemoteErrorKind, Result, TryLockError, TryLockResult,
};
pub use parent_process::{ParentProcess, parent_process};
#[cfg(feature = "serde")]
pub use pool::{AsyncResult, IMap, Pool, PoolBuilder};
pub use process::{
    CurrentProcess, ExitStatus, Process, ProcessGroup, StartMethod, active_children,
    current_process, init, parent_alive, set_start_method, start_method,
};
#[cfg(feature = "serde")]
pub use queue::{GetError, JoinableQueue, PutError, Queue, SimpleQueue, TaskDoneError};
pub use shareable_list::{ShareableItem, ShareableList};
pub use shared_memory::SharedMemory;
pub use shm::{Atomic, AtomicNumber, ShmSafe};
pub use sync::barrier::Barrier;
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
