//! Async forms of [`Event`], [`Semaphore`], [`BoundedSemaphore`],
//! [`Lock`] and [`Barrier`] (feature `tokio`), on the futex reactor (see [`crate::aio`]).

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::reactor::{Slept, wait_word};
use super::{Backoff, Counted};
use crate::error::{LockError, LockResult, OwnerDied};
use crate::sync::barrier::{Arrive, CHECK};
use crate::sync::raw::{CONTENDED, OWNER_CHECK, RawProcessMutex, take_over_dead};
use crate::sync::semaphore::SemState;
use crate::sys::thread;
use crate::{Barrier, BarrierError, BoundedSemaphore, Event, Lock, Semaphore};

/// An event's waiters need no liveness check: a long slice.
const EVENT_SLICE: Duration = Duration::from_secs(60);
/// As the blocking semaphore: a look every second.
const SEM_SLICE: Duration = Duration::from_secs(1);

impl Event {
    /// Waits until the flag is set, without blocking the thread: the async
    /// form of [`wait`](Event::wait).
    ///
    /// Cancellation: dropping the future takes nothing and changes
    /// nothing.
    pub async fn wait_async(&self) {
        loop {
            if self.is_set() {
                return;
            }
            // `set` wakes every sleeper on the word after it changes it from
            // 0: a look at 0 followed by the reactor's futex wait on 0 loses
            // no set.
            wait_word(&self.flag, 0, EVENT_SLICE).await;
        }
    }
}

async fn sem_down(s: &SemState) {
    loop {
        if s.try_down() {
            return;
        }
        let counted = Counted::new(&s.sleepers);
        // The blocking handshake: counted first, then one more look, so a
        // release either is seen here or sees the count and wakes the word.
        if s.value.load(Ordering::SeqCst) == 0 {
            wait_word(&s.value, 0, SEM_SLICE).await;
        }
        drop(counted);
    }
}

impl Semaphore {
    /// Takes one unit, waiting without blocking the thread for one to be
    /// released: the async form of [`acquire`](Semaphore::acquire).
    ///
    /// Cancellation: a unit is taken only in the step that returns it, so
    /// a dropped future holds none; a release that woke it (and only it)
    /// is passed on to another sleeper.
    pub async fn acquire_async(&self) {
        sem_down(&self.inner).await
    }
}

impl BoundedSemaphore {
    /// The async form of [`acquire`](BoundedSemaphore::acquire); see
    /// [`Semaphore::acquire_async`].
    pub async fn acquire_async(&self) {
        self.sem.acquire_async().await
    }
}

/// A party that arrived and waits for the release; if its future is
/// dropped first, it leaves the round broken (as a timed-out `wait` does),
/// so that the others are not released with a party that has gone.
struct Party<'a> {
    barrier: &'a Barrier,
    gen_: u64,
    done: bool,
}

impl Drop for Party<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.barrier.leave(self.gen_);
        }
    }
}

impl Barrier {
    /// Waits for all parties without blocking the thread; returns this
    /// party's arrival index: the async form of [`wait`](Barrier::wait),
    /// with its errors. The last party to arrive runs the action (if any)
    /// on the calling thread, as `wait` does.
    ///
    /// Cancellation: a future dropped before this party arrived changes
    /// nothing. One dropped after it arrived (and before the round was
    /// released) breaks the round, as a `wait_timeout` that timed out
    /// does: the other parties get [`BarrierError::BrokenBarrier`]
    /// rather than a release that counted a party no longer there.
    pub async fn wait_async(&self) -> Result<u32, BarrierError> {
        self.wait_async_any()
            .await
            .map_err(BarrierError::from_internal)
    }

    async fn wait_async_any(&self) -> crate::Result<u32> {
        let word = self.seq_word();
        let (gen_, index) = loop {
            match self.arrive_step() {
                Arrive::Done(r) => return r,
                Arrive::Arrived { gen_, index } => break (gen_, index),
                Arrive::Wait { seq, s } => {
                    if wait_word(word, seq, CHECK).await == Slept::Slice {
                        self.check_tripper(s)?;
                    }
                }
            }
        };
        let mut party = Party {
            barrier: self,
            gen_,
            done: false,
        };
        let mut backoff = Backoff::new(CHECK);
        loop {
            match self.release_step(gen_, index) {
                Ok(r) => {
                    party.done = true;
                    return r;
                }
                Err((seq, s)) => {
                    let slept = wait_word(word, seq, backoff.slice()).await;
                    if backoff.after(slept) == Slept::Slice
                        && let Err(e) = self.check_tripper(s)
                    {
                        party.done = true;
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// The guard of a [`Lock`] taken with [`Lock::lock_async`]: releases it on
/// drop.
///
/// Unlike [`LockGuard`](crate::LockGuard), it may be held across `.await`
/// points and moved between threads (it is `Send`): the lock word names
/// this *process* (its id) rather than the thread that took it, so a task
/// that resumes on another worker thread still holds a lock whose owner
/// is alive, and other processes take it over only when this whole process
/// has died. That is sound because a [`Lock`] guards no data of its own:
/// what it excludes is the caller's business, and two holders can never
/// touch memory through it. (A lock that guards data, such as a
/// [`Value`](crate::Value)'s, keeps thread guards: its data would be
/// reachable from two threads if a guard moved.)
///
/// While held this way, a blocking `lock` on the process's main thread
/// (whose thread id is the process id) reports
/// [`LockError::WouldDeadlock`] rather than waiting, as it would for a lock
/// that thread holds.
#[must_use = "the lock is released when the guard is dropped"]
pub struct AsyncLockGuard<'a> {
    raw: &'a RawProcessMutex,
}

impl fmt::Debug for AsyncLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncLockGuard").finish_non_exhaustive()
    }
}

impl Drop for AsyncLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: the guard exists only after `lock_async` took the lock
        // (the word holds this process's id), and is dropped once.
        unsafe { self.raw.release() }
    }
}

impl Lock {
    /// Waits for the lock without blocking the thread, and returns a guard
    /// that may be held across `.await` (see [`AsyncLockGuard`]): the async
    /// form of [`lock`](Lock::lock).
    ///
    /// A lock whose owner died holding it is taken over (as by `lock`):
    /// [`LockError::OwnerDied`], whose guard holds the lock. The owner's
    /// liveness is checked after 40 ms, then at intervals doubling up to a
    /// second while the same owner holds on, so a death is noticed within
    /// about a second.
    /// Never [`LockError::WouldDeadlock`]: another task of this process may
    /// hold it, and waiting for that one is right.
    ///
    /// Cancellation: the lock is taken only in the step that returns the
    /// guard, so a dropped future holds nothing; a release that woke it is
    /// passed on to another sleeper.
    pub async fn lock_async(&self) -> LockResult<AsyncLockGuard<'_>> {
        let raw = self.raw();
        let word = raw.word();
        let me = thread::pid() as u32 & !CONTENDED;
        let tid_mask = !CONTENDED;
        let guard = || AsyncLockGuard { raw };
        // After a wait, take the lock marked contended: others may sleep on
        // it, so the release must wake one (as the blocking path does).
        let mut waited = false;
        let mut backoff = Backoff::new(OWNER_CHECK);
        loop {
            let w = word.load(Ordering::Relaxed);
            if w & tid_mask == 0 {
                let new = w | me | if waited { CONTENDED } else { 0 };
                if word
                    .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(guard());
                }
                continue;
            }
            if w & CONTENDED == 0
                && word
                    .compare_exchange(w, w | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            waited = true;
            let expected = w | CONTENDED;
            let slept = wait_word(word, expected, backoff.slice()).await;
            // Held for a whole slice: is the owner still alive?
            if backoff.after(slept) == Slept::Slice
                && take_over_dead(word, w, tid_mask, me) == Some(true)
            {
                return Err(LockError::OwnerDied(OwnerDied::new(guard())));
            }
        }
    }
}

// The guard only releases the word through `&RawProcessMutex` (atomics), and
// the lock names the process: moving it between threads is fine (see the
// type's documentation).
const _: fn() = || {
    fn send<T: Send>() {}
    send::<AsyncLockGuard<'static>>();
};
