//! `Condition`.

use std::fmt;
use std::time::{Duration, Instant};

use super::raw::RawProcessCondvar;
use super::{Blocking, Mutex, MutexGuard, forever, lock_mutex};
use crate::deadline::Deadline;
use crate::error::{CreateError, LockResult, Result, TryLockResult};
use crate::shm::ShmBox;

struct CondState {
    lock: Mutex<()>,
    cv: lock_api::Condvar<RawProcessCondvar>,
}

// SAFETY: both fields are ShmSafe plain data (two atomic words).
unsafe impl crate::ShmSafe for CondState {}

/// A condition variable shared by processes, like Python's
/// `multiprocessing.Condition`.
///
/// It carries its own lock ([`lock`](Condition::lock)), and its wait
/// methods also take the guard of any other process-shared mutex, such as
/// a [`Value`](crate::Value)'s, so a condition can guard shared data
/// directly.
///
/// Wakeups may be spurious: wait in a loop on the predicate, or use
/// [`wait_while`](Condition::wait_while). `notify(n)` wakes up to `n`
/// sleeping waiters. A waiter that timed out does not swallow a later
/// notify, and a waiter killed while asleep does not block `notify`
/// (CPython's `Condition`, which counts sleepers in a semaphore, hangs there).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let ready = multiproc::Value::new(0u8)?;
/// let cond = multiproc::Condition::new()?;
/// let mut guard = ready.lock().unwrap();
/// *guard = 1;
/// cond.notify_all();
/// // A waiter with a guard of `ready` would now see 1:
/// let r = cond.wait_while_timeout(&mut guard, Duration::ZERO, |ready| *ready == 0);
/// assert!(!r.timed_out());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct Condition {
    inner: ShmBox<CondState>,
    /// The lock given to [`with_lock`](Condition::with_lock), used instead
    /// of the condition's own.
    lock: Option<crate::Lock>,
}

impl Condition {
    /// A new condition variable with its own new lock.
    pub fn new() -> Result<Condition, CreateError> {
        Ok(Condition {
            inner: ShmBox::new(CondState {
                lock: Mutex::new(()),
                cv: lock_api::Condvar::new(),
            })
            .map_err(CreateError::from_internal)?,
            lock: None,
        })
    }

    /// A new condition variable over an existing lock (Python's
    /// `Condition(lock)`): [`lock`](Condition::lock) takes `lock`, so
    /// several conditions (and values made with
    /// [`Value::with_lock`](crate::Value::with_lock)) can share one lock.
    /// The condition keeps a handle on the lock; both live in shared
    /// memory and work across processes like any other.
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// let not_empty = multiproc::Condition::with_lock(&lock)?;
    /// let not_full = multiproc::Condition::with_lock(&lock)?;
    /// let mut g = not_empty.lock().unwrap();
    /// assert!(lock.is_locked());
    /// // Either condition waits with a guard of the shared lock.
    /// let r = not_full.wait_timeout(&mut g, std::time::Duration::ZERO);
    /// assert!(r.timed_out());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_lock(lock: &crate::Lock) -> Result<Condition, CreateError> {
        let mut c = Condition::new()?;
        c.lock = Some(lock.clone());
        Ok(c)
    }

    fn mutex(&self) -> &Mutex<()> {
        match &self.lock {
            Some(l) => l.as_mutex(),
            None => &self.inner.lock,
        }
    }

    /// Takes the condition's lock (its own, or the one given to
    /// [`with_lock`](Condition::with_lock)).
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, ()>> {
        forever(lock_mutex(self.mutex(), Blocking::Until(Deadline::NEVER)))
    }

    /// Takes the condition's lock, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<MutexGuard<'_, ()>> {
        lock_mutex(self.mutex(), Blocking::Until(Deadline::after(timeout)))
    }

    /// Releases the guard's lock, sleeps until notified, takes the lock
    /// again. May return spuriously.
    pub fn wait<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>) {
        self.inner.cv.wait(guard)
    }

    /// Like [`wait`](Condition::wait), for at most `timeout`.
    pub fn wait_timeout<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        timeout: Duration,
    ) -> WaitTimeoutResult {
        WaitTimeoutResult(self.inner.cv.wait_for(guard, timeout).timed_out())
    }

    /// Waits while `condition` holds for the guarded data (Python's
    /// `wait_for` with the predicate negated).
    pub fn wait_while<T: ?Sized, F: FnMut(&mut T) -> bool>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        mut condition: F,
    ) {
        while condition(&mut **guard) {
            self.wait(guard);
        }
    }

    /// Waits while `condition` holds, at most `timeout` in all. The result
    /// tells whether the time ran out with `condition` still true. A zero
    /// timeout checks `condition` once and never blocks.
    #[doc(alias = "wait_for")]
    pub fn wait_while_timeout<T: ?Sized, F: FnMut(&mut T) -> bool>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        timeout: Duration,
        mut condition: F,
    ) -> WaitTimeoutResult {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if !condition(&mut **guard) {
                return WaitTimeoutResult(false);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return WaitTimeoutResult(true);
            }
            self.inner.cv.wait_for(guard, left);
        }
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&self, n: u32) {
        self.inner.cv.raw().notify(n)
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.notify(1)
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.inner.cv.raw().notify_all_waiters()
    }
}

/// Whether a timed wait on a [`Condition`] ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the timeout passed (for
    /// `wait_while_timeout`: with the condition still true).
    pub fn timed_out(self) -> bool {
        self.0
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Condition")
    }
}
