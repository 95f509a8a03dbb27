//! Async forms of the blocking calls (feature `tokio`): await processes,
//! pipes, queues, locks, semaphores and events from an async task without
//! a thread per waiter and without busy polling.
//!
//! | blocking | async | wakes on |
//! |---|---|---|
//! | [`Process::join`](crate::Process::join) | [`Process::join_async`](crate::Process::join_async) | the pidfd (tokio `AsyncFd`) |
//! | [`Connection::recv_bytes`](crate::Connection::recv_bytes), `send_bytes`, `poll` | [`Connection::recv_bytes_async`](crate::Connection::recv_bytes_async), `send_bytes_async`, `poll_async` (and [`AsyncConnection`]) | the pipe's doorbell socket (`AsyncFd`); room: the futex reactor |
//! | [`Queue::get`](crate::Queue::get), `put` | [`Queue::get_async`](crate::Queue::get_async), `put_async` | the futex reactor |
//! | [`JoinableQueue::join`](crate::JoinableQueue::join) | [`JoinableQueue::join_async`](crate::JoinableQueue::join_async) | the futex reactor |
//! | [`Event::wait`](crate::Event::wait) | [`Event::wait_async`](crate::Event::wait_async) | the futex reactor |
//! | [`Semaphore::acquire`](crate::Semaphore::acquire) | [`Semaphore::acquire_async`](crate::Semaphore::acquire_async) | the futex reactor |
//! | [`Lock::lock`](crate::Lock::lock) | [`Lock::lock_async`](crate::Lock::lock_async) | the futex reactor |
//! | [`Barrier::wait`](crate::Barrier::wait) | [`Barrier::wait_async`](crate::Barrier::wait_async) | the futex reactor |
//! | pool [`AsyncResult::get`](crate::pool::AsyncResult::get), `wait` (feature `pool`) | [`get_async`](crate::pool::AsyncResult::get_async), `wait_async`, `(&result).await`, `result.await` | the futex reactor (the results ring's bell) |
//! | pool [`IMap::next`](crate::pool::IMap) (feature `pool`) | [`IMap::next_async`](crate::pool::IMap::next_async) | the futex reactor |
//! | every manager proxy method (feature `manager`) | [`proxy_call(\|\| proxy.method(..))`](proxy_call), [`Proxy::call_async`](crate::manager::Proxy::call_async) | the connection's socket (`AsyncFd`) |
//!
//! # The wake-up: a futex reactor
//!
//! Every shared primitive sleeps on a futex word in shared memory, and its
//! wakers (any process) `FUTEX_WAKE` that word after a change, following
//! each primitive's handshake (a flag or count the sleeper sets before it
//! sleeps, so that the waker wakes only when someone sleeps). A futex word
//! has no file descriptor for an async runtime to watch; rather than give
//! every object an eventfd that every waker would have to know and ring
//! (a descriptor per object, passed to every process, a system call more on
//! every waker's path), the async side sleeps on **the same words, with
//! the same handshakes**, through one thread per process:
//!
//! - An async waiter runs its primitive's handshake exactly as a blocking
//!   sleeper does (counts itself in `sleepers`, arms the queue's bell bit,
//!   marks the lock contended, arms the pipe's doorbell), looks once more,
//!   and registers the (word, value it read) pair with the process's
//!   *reactor*, then returns `Pending`.
//! - The reactor thread sleeps in one `futex_waitv` (Linux 5.16) on every
//!   registered word at once (up to 127 per reactor thread; a second
//!   thread is started for more), plus a private control word that makes
//!   it take new registrations in. The kernel compares each word with its
//!   value, so a change between the waiter's look and the reactor's sleep
//!   is never slept through (as for a plain futex wait).
//! - When a word is woken (or found changed), the reactor wakes every
//!   task registered on it; each looks again, as a woken blocking sleeper
//!   does. Many tasks waiting on one word cost one entry.
//!
//! So **the wakers are unchanged**: the synchronous fast path keeps its
//! speed (no check for async waiters at all), a process that never uses
//! the async forms starts no thread, and wakers in other processes (forked
//! or spawned, whatever they inherited) wake async waiters with the very
//! `FUTEX_WAKE` they already make. A waker wakes async waiters only when
//! the handshake says someone sleeps, like it wakes blocking ones.
//!
//! Pipes made by [`pipe`](crate::pipe) already have a descriptor: their
//! doorbell socket, which the writer rings (one byte) when the reader has
//! armed it. The async receive arms it and registers the socket with tokio
//! (`AsyncFd`), so a message wakes the task through the runtime's own
//! epoll, with no reactor thread in between. A process is awaited through
//! its pidfd the same way.
//!
//! # The pool and the manager
//!
//! A pool's [`AsyncResult`](crate::pool::AsyncResult) and
//! [`IMap`](crate::pool::IMap) wait as a blocking waiter does (collecting
//! the results that came, replacing dead workers, running callbacks, on
//! the polling thread), but park the task on the results ring's bell
//! through the futex reactor instead of sleeping in the ring: see
//! `pool::asynchronous`'s notes on [`AsyncResult::get_async`](crate::pool::AsyncResult::get_async).
//!
//! A manager proxy's calls are awaited through [`proxy_call`]: it runs the
//! blocking method with its calls to the server recorded, sends each on a
//! socket-only connection of the session whose reply it awaits through
//! tokio, and runs the method again with the replies (see [`manager`]).
//! A call dropped mid-way closes its connection, so no later call reads
//! its reply.
//!
//! # Dead wakers and liveness
//!
//! Every async wait on a futex word is bounded by a *slice*, as the blocking
//! sleeps are (the reactor times it, so no tokio timer is needed): after a
//! slice without news the waiter makes the same liveness checks as its
//! blocking form (a lock's owner dead: taken over; a queue's large writer
//! or receiver dead: its item dropped; a pipe's peer gone: `EPIPE`). A
//! waker killed mid-operation therefore never leaves an async waiter asleep
//! for ever. The pidfd and the doorbell socket report a dead process
//! themselves (readable / hung up).
//!
//! # Cancellation
//!
//! Every future here may be dropped at any `.await` point: nothing is
//! taken before the call returns it (an item, a message, a permit, the
//! lock), and a dropped waiter deregisters. A waiter the reactor woke but
//! that was dropped before it looked passes the wake-up on (one
//! `FUTEX_WAKE` on the word), so that a waker that woke one sleeper (a
//! semaphore release, a lock release) loses it to nobody. Each method says
//! what a dropped future leaves behind.
//!
//! # What does block the thread
//!
//! An async receive on a [`pipe`](crate::pipe) first spins on the ring as
//! a blocking receive does (the crate's one wait strategy,
//! `sync::wait`: at most 50 us, only while a CPU is to spare, shorter
//! while spins go unrewarded): a quick peer's reply is then taken without
//! the doorbell, the runtime's epoll and a wake-up, which would cost a
//! round trip tens of microseconds more. Other tasks of the runtime's
//! thread wait that long.
//!
//! The primitives' own short critical sections are still taken by
//! blocking: a queue side lock or a pipe's send/receive lock is held by
//! another process only for one copy (or, if that process died holding
//! it, until the robust mutex notices, about 40 ms). Each method documents
//! where it may block beyond that (a pipe message longer than the ring
//! streams while it is read; a queue item larger than a quarter of the
//! ring goes in only when the ring can take it whole).
//!
//! # Fork
//!
//! The reactor belongs to the process that started it: a fork child that
//! awaits starts its own (the parent's thread does not exist there), and
//! never touches the parent's state. The runtime itself does not survive a
//! fork either: build a new one in the child.
//!
//! # Runtimes
//!
//! The futex waits need nothing from the runtime (the reactor times the
//! slices and wakes tasks through their `Waker`s), so they work under any
//! executor. The descriptor waits (a pipe's receive and `poll_async`, a
//! process's join) use tokio's `AsyncFd`: they need a tokio runtime with
//! its I/O driver enabled, and fail with an error (not a panic) outside
//! one.
//!
//! # Not covered yet
//!
//! Without `futex_waitv` (a kernel older than 5.16), the reactor wakes its
//! waiters every 2 ms to look (a degraded poll, only on such kernels).

mod connection;
mod error;
#[cfg(feature = "manager")]
pub mod manager;
mod process;
mod queue;
pub(crate) mod reactor;
mod sync;

pub use connection::AsyncConnection;
pub use error::IntoAsyncError;
#[cfg(feature = "manager")]
pub use manager::proxy_call;
pub use sync::AsyncLockGuard;

use std::future::poll_fn;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;

use tokio::io::unix::AsyncFd;

/// Registers `fd` with the current tokio runtime for readability; an
/// error (not a panic) outside a runtime.
pub(crate) fn register_readable(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>, IntoAsyncError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(IntoAsyncError::NoRuntime);
    }
    // SAFETY: an `OwnedFd` is an open descriptor, owned (so closed only by
    // its drop, after the `AsyncFd` lets it go), whose `as_raw_fd` is
    // always that same number.
    let r = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
    r.map_err(|e| IntoAsyncError::Os {
        call: "register",
        source: e.into(),
    })
}

/// Waits until one of `fds` is readable (or hung up). Registers duplicates
/// of the descriptors with the current tokio runtime for the duration of
/// the wait.
pub(crate) async fn readable_any(fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut afds = Vec::with_capacity(fds.len());
    for fd in fds {
        afds.push(register_readable(fd.try_clone_to_owned()?).map_err(|e| e.into_os().1)?);
    }
    poll_fn(|cx| {
        for a in &afds {
            if let Poll::Ready(r) = a.poll_read_ready(cx) {
                return Poll::Ready(r.map(|_| ()));
            }
        }
        Poll::Pending
    })
    .await
}

/// The slices of an async waiter: the blocking form's slice first, then
/// twice as long after each slice without news, up to [`Backoff::MAX`]. A
/// thousand idle async waiters thus wake about a thousand times a second
/// in all, not tens of thousands; a party that dies is noticed within
/// about a second (a blocking waiter notices within its slice).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    first: std::time::Duration,
    now: std::time::Duration,
}

impl Backoff {
    pub(crate) const MAX: std::time::Duration = std::time::Duration::from_secs(1);

    pub(crate) fn new(first: std::time::Duration) -> Backoff {
        Backoff { first, now: first }
    }

    /// The slice to wait now.
    pub(crate) fn slice(&self) -> std::time::Duration {
        self.now
    }

    /// After a wait that ended as `slept`.
    pub(crate) fn after(&mut self, slept: reactor::Slept) -> reactor::Slept {
        self.now = match slept {
            reactor::Slept::Woken => self.first,
            reactor::Slept::Slice => (self.now * 2).min(Self::MAX.max(self.first)),
        };
        slept
    }
}

/// Counts an async waiter in a primitive's count of sleepers (a
/// semaphore's `sleepers`, a pipe writer's `tx_waiting`) while it waits,
/// so that the waker wakes the word; uncounts it however the wait ends,
/// cancellation included. (A future leaked with `mem::forget` leaves the
/// count one too high, which costs the wakers a needless wake call, as a
/// blocking sleeper killed while asleep does.)
pub(crate) struct Counted<'a>(&'a AtomicU32);

impl<'a> Counted<'a> {
    pub(crate) fn new(w: &'a AtomicU32) -> Self {
        w.fetch_add(1, Ordering::SeqCst);
        Counted(w)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
