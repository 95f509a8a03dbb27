//! `Semaphore` and `BoundedSemaphore`.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::wait::{self, Site};
use crate::deadline::Deadline;
use crate::error::{CreateError, ReleasedTooManyTimes, Result};
use crate::shm::ShmBox;
use crate::sys::futex;

/// How a waiter spins before it sleeps (see [`wait`]).
static SPIN: Site = Site::new(Duration::from_micros(20));
/// The longest single sleep (a waiter looks again after it; nothing else
/// to check: a semaphore has no owner).
const SLICE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct SemState {
    /// The count; waiters sleep on this word while it is 0.
    pub(crate) value: AtomicU32,
    /// How many may be asleep (a hint that saves a wake call when none are;
    /// a waiter killed while asleep leaves it one too high, which only costs
    /// a needless wake).
    pub(crate) sleepers: AtomicU32,
    /// The most the count may reach (`u32::MAX`: no bound).
    bound: u32,
}

// SAFETY: atomics and a plain integer; no pointers or drop glue.
unsafe impl crate::ShmSafe for SemState {}

impl SemState {
    pub(crate) fn try_down(&self) -> bool {
        let mut v = self.value.load(Ordering::Relaxed);
        while v > 0 {
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    fn down(&self, deadline: Deadline) -> bool {
        loop {
            if self.try_down() {
                return true;
            }
            let spun = SPIN.spin_until(deadline, || {
                (self.value.load(Ordering::Relaxed) > 0 && self.try_down()).then_some(())
            });
            if spun.is_some() {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            // Counted as a sleeper before the last look: an `up` after that
            // look sees the count and wakes (both SeqCst).
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            if self.value.load(Ordering::SeqCst) == 0 {
                wait::sleep(&self.value, 0, deadline, SLICE);
            }
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn up(&self, n: u32) -> Result<(), ReleasedTooManyTimes> {
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            let new = match v.checked_add(n) {
                Some(new) if new <= self.bound => new,
                _ => return Err(ReleasedTooManyTimes),
            };
            match self
                .value
                .compare_exchange_weak(v, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.value, n);
        }
        Ok(())
    }
}

/// A counting semaphore shared by processes, like Python's
/// `multiprocessing.Semaphore`.
///
/// `acquire` takes one unit, waiting while the count is zero; `release`
/// gives one back. A process killed while waiting leaves no trace that could
/// block the others.
///
/// # Examples
///
/// ```
/// let sem = multiproc::Semaphore::new(2)?;
/// assert!(sem.try_acquire());
/// assert!(sem.try_acquire());
/// assert!(!sem.try_acquire());
/// sem.release()?;
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct Semaphore {
    pub(crate) inner: ShmBox<SemState>,
}

impl Semaphore {
    /// A semaphore with `value` units, without upper bound (up to
    /// `u32::MAX - 1`).
    pub fn new(value: u32) -> Result<Semaphore, CreateError> {
        Self::with_bound(value, u32::MAX - 1)
    }

    fn with_bound(value: u32, bound: u32) -> Result<Semaphore, CreateError> {
        if value > bound {
            return Err(CreateError::InvalidArgument(
                "initial value above the semaphore's bound",
            ));
        }
        Ok(Semaphore {
            inner: ShmBox::new(SemState {
                value: AtomicU32::new(value),
                sleepers: AtomicU32::new(0),
                bound,
            })
            .map_err(CreateError::from_internal)?,
        })
    }

    /// Takes one unit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.inner.down(Deadline::NEVER);
    }

    /// Takes one unit if there is one, without waiting.
    #[doc(alias = "acquire(False)")]
    pub fn try_acquire(&self) -> bool {
        self.inner.try_down()
    }

    /// Waits at most `timeout` for a unit; false if none came. A zero
    /// timeout never blocks.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.inner.down(Deadline::after(timeout))
    }

    /// Gives one unit back and wakes a waiter.
    pub fn release(&self) -> Result<(), ReleasedTooManyTimes> {
        self.inner.up(1)
    }

    /// Gives `n` units back and wakes up to `n` waiters.
    pub fn release_n(&self, n: u32) -> Result<(), ReleasedTooManyTimes> {
        self.inner.up(n)
    }

    /// The count right now (Python's `get_value`).
    #[doc(alias = "get_value")]
    pub fn value(&self) -> u32 {
        self.inner.value.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

/// A semaphore whose count may never exceed its initial value, like
/// Python's `multiprocessing.BoundedSemaphore`: a release past the bound is
/// [`ReleasedTooManyTimes`] and changes nothing.
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct BoundedSemaphore {
    pub(crate) sem: Semaphore,
}

impl BoundedSemaphore {
    /// A semaphore with `value` units that may never hold more.
    pub fn new(value: u32) -> Result<BoundedSemaphore, CreateError> {
        Ok(BoundedSemaphore {
            sem: Semaphore::with_bound(value, value)?,
        })
    }

    /// Takes one unit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.sem.acquire()
    }

    /// Takes one unit if there is one, without waiting.
    pub fn try_acquire(&self) -> bool {
        self.sem.try_acquire()
    }

    /// Waits at most `timeout` for a unit; false if none came.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.sem.acquire_timeout(timeout)
    }

    /// Gives one unit back; an error if that would pass the bound.
    pub fn release(&self) -> Result<(), ReleasedTooManyTimes> {
        self.sem.release()
    }

    /// The count right now.
    #[doc(alias = "get_value")]
    pub fn value(&self) -> u32 {
        self.sem.value()
    }

    /// The bound (the initial value).
    pub fn bound(&self) -> u32 {
        self.sem.inner.bound
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("bound", &self.bound())
            .finish()
    }
}
