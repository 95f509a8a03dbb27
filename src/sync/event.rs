//! `Event`.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::wait;
use crate::deadline::Deadline;
use crate::error::{CreateError, Result};
use crate::shm::ShmBox;
use crate::sys::futex;

/// A flag that processes wait on, like Python's `multiprocessing.Event`.
///
/// `set` wakes every waiter; `wait` returns at once while the flag is set.
/// A waiter killed while asleep is simply gone: unlike CPython's `Event`
/// (built on a condition variable that counts sleepers), `set` never waits
/// for it.
///
/// # Examples
///
/// ```
/// let ev = multiproc::Event::new()?;
/// assert!(!ev.wait_timeout(std::time::Duration::ZERO));
/// ev.set();
/// assert!(ev.is_set());
/// ev.wait();
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct Event {
    pub(crate) flag: ShmBox<AtomicU32>,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Result<Event, CreateError> {
        Ok(Event {
            flag: ShmBox::new(AtomicU32::new(0)).map_err(CreateError::from_internal)?,
        })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        if self.flag.swap(1, Ordering::Release) == 0 {
            futex::wake_all(&self.flag);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag.store(0, Ordering::Release);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire) != 0
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.wait_until(Deadline::NEVER);
    }

    /// Waits at most `timeout` for the flag; returns whether it is set (as
    /// Python's `wait(timeout)` does). A zero timeout never blocks.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Deadline::after(timeout))
    }

    fn wait_until(&self, deadline: Deadline) -> bool {
        loop {
            if self.is_set() {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            wait::sleep(&self.flag, 0, deadline, Duration::from_secs(1));
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}
