//! `Lock` and `RLock`.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::raw::RawProcessMutex;
use super::{Blocking, Mutex, MutexGuard, acquire_with, forever, lock_mutex};
use crate::deadline::Deadline;
use crate::error::{
    CreateError, LockResult, NotOwner, ReleasedTooManyTimes, Result, TryLockResult,
};
use crate::shm::ShmBox;
use crate::sys::thread;

/// The guard of a [`Lock`]: the lock is held until it drops.
pub type LockGuard<'a> = MutexGuard<'a, ()>;

/// A non-recursive lock shared by processes, like Python's
/// `multiprocessing.Lock`.
///
/// Create it before forking; children inherit it. Locking it again from
/// the thread that holds it would deadlock (it does in Python): `lock`,
/// `lock_timeout`, `acquire` and `acquire_timeout` return
/// [`WouldDeadlock`](crate::LockError::WouldDeadlock) at once instead
/// (with a zero timeout, which never waits, they time out as Python's
/// `acquire(False)` fails). To
/// signal between processes, use an [`Event`](crate::Event) or a
/// [`Semaphore`](crate::Semaphore) rather than a lock taken twice.
///
/// If a process dies while holding the lock, the next acquirer gets
/// [`OwnerDied`](crate::OwnerDied) (holding the guard) within about 50 ms, and the lock
/// works normally afterwards.
///
/// # Examples
///
/// ```
/// let lock = multiproc::Lock::new()?;
/// {
///     let _guard = lock.lock().unwrap_or_else(|died| died.into_guard());
///     assert!(lock.is_locked());
/// }
/// assert!(!lock.is_locked());
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Differences from Python
///
/// The guard releases the lock (Python's `with lock:`). `acquire` and
/// `release` exist for code that must release elsewhere; as in Python any
/// process may release a held `Lock`.
// The derived `Deserialize` is sound: the only field is a `ShmBox`, whose
// own `Deserialize` checks the type, size and alignment of what it adopts;
// the `unsafe` in this type's methods relies on nothing else.
#[cfg_attr(feature = "spawn", allow(clippy::unsafe_derive_deserialize))]
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
#[derive(Clone)]
pub struct Lock {
    /// Shared by the handles of this process that [`Clone`] made (a
    /// [`Condition`](crate::Condition) or a value built over this lock
    /// keeps one): the memory lives while any of them does.
    inner: std::sync::Arc<ShmBox<Mutex<()>>>,
}

impl Lock {
    /// The allocation the lock lives in.
    #[cfg(feature = "spawn")]
    pub(crate) fn alloc(&self) -> &crate::shm::heap::Allocation {
        self.inner.alloc()
    }

    /// A new, unlocked lock in shared memory.
    pub fn new() -> Result<Lock, CreateError> {
        Ok(Lock {
            inner: std::sync::Arc::new(
                ShmBox::new(Mutex::new(())).map_err(CreateError::from_internal)?,
            ),
        })
    }

    /// Whether `guard` is a guard of this lock.
    pub(crate) fn owns(&self, guard: &LockGuard<'_>) -> bool {
        std::ptr::eq(MutexGuard::mutex(guard), self.as_mutex())
    }

    /// Waits for the lock and returns its guard.
    #[inline]
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        forever(lock_mutex(&self.inner, Blocking::Until(Deadline::NEVER)))
    }

    /// Takes the lock if it is free, without waiting.
    #[inline]
    pub fn try_lock(&self) -> TryLockResult<LockGuard<'_>> {
        lock_mutex(&self.inner, Blocking::No)
    }

    /// Waits at most `timeout` for the lock. A zero timeout never blocks.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<LockGuard<'_>> {
        lock_mutex(&self.inner, Blocking::Until(Deadline::after(timeout)))
    }

    /// Acquires the lock without a guard; pair with [`release`](Lock::release).
    #[inline]
    pub fn acquire(&self) -> LockResult<()> {
        forever(acquire_with(
            self.raw(),
            Blocking::Until(Deadline::NEVER),
            || (),
        ))
    }

    /// Acquires the lock without a guard, waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<()> {
        acquire_with(self.raw(), Blocking::Until(Deadline::after(timeout)), || ())
    }

    /// Releases a lock taken with [`acquire`](Lock::acquire), by this or any
    /// other process. Releasing an unlocked lock is
    /// [`ReleasedTooManyTimes`].
    ///
    /// Do not release a lock whose guard is alive somewhere: the guard would
    /// release it once more when it drops.
    #[inline]
    pub fn release(&self) -> Result<(), ReleasedTooManyTimes> {
        if !self.raw().is_locked() {
            return Err(ReleasedTooManyTimes);
        }
        // SAFETY: the lock is held; Python's Lock lets any process release
        // it, and the caller has been told not to do so under a live guard.
        unsafe { self.raw().release() };
        Ok(())
    }

    /// Whether the lock is held right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }

    /// The `lock_api` mutex inside, for use with [`Condition::wait`]
    /// and other generic code.
    ///
    /// [`Condition::wait`]: crate::Condition::wait
    pub fn as_mutex(&self) -> &Mutex<()> {
        &self.inner
    }

    #[inline]
    pub(crate) fn raw(&self) -> &RawProcessMutex {
        // SAFETY: the raw mutex is only used to acquire and release through
        // the robust paths of this module.
        unsafe { self.inner.raw() }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.is_locked())
            .finish()
    }
}

#[derive(Debug)]
struct RLockState {
    mutex: RawProcessMutex,
    /// How many times the owner holds it; touched only by the owner.
    depth: AtomicU32,
}

// SAFETY: two atomic words; all-zero is an unlocked RLock.
unsafe impl crate::ShmSafe for RLockState {}

/// A recursive lock shared by processes, like Python's
/// `multiprocessing.RLock`: the thread that holds it may take it again, and
/// it is free once released as often as taken.
///
/// The owner is one thread of one process (its kernel thread id); another
/// thread or process that tries to release it gets [`NotOwner`].
// The derived `Deserialize` is sound: the only field is a `ShmBox`, whose
// own `Deserialize` checks the type, size and alignment of what it adopts;
// the `unsafe` in this type's methods relies on nothing else.
#[cfg_attr(feature = "spawn", allow(clippy::unsafe_derive_deserialize))]
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct RLock {
    inner: ShmBox<RLockState>,
}

/// The guard of an [`RLock`]: one level of recursion, released on drop.
#[must_use = "if unused the RLock is released at once"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    // The guard must stay on its thread: ownership is per thread.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl RLock {
    /// A new, unlocked recursive lock in shared memory.
    pub fn new() -> Result<RLock, CreateError> {
        Ok(RLock {
            inner: ShmBox::new(RLockState {
                mutex: RawProcessMutex::new(),
                depth: AtomicU32::new(0),
            })
            .map_err(CreateError::from_internal)?,
        })
    }

    fn enter(&self, how: Blocking) -> TryLockResult<()> {
        if self.is_owned() {
            let d = self.inner.depth.load(Ordering::Relaxed);
            // u32 recursion depth: overflow is a program bug, report it as
            // "would block" rather than wrap.
            if d == u32::MAX {
                return Err(crate::TryLockError::WouldBlock);
            }
            self.inner.depth.store(d + 1, Ordering::Relaxed);
            return Ok(());
        }
        acquire_with(&self.inner.mutex, how, || {
            self.inner.depth.store(1, Ordering::Relaxed);
        })
    }

    /// Takes the lock (again, if this thread holds it) and returns a guard.
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        forever(self.enter(Blocking::Until(Deadline::NEVER)))
            .map(|()| self.guard())
            .map_err(|e| e.map(|()| self.guard()))
    }

    /// Takes the lock if this thread holds it or it is free.
    pub fn try_lock(&self) -> TryLockResult<RLockGuard<'_>> {
        self.enter(Blocking::No)
            .map(|()| self.guard())
            .map_err(|e| e.map(|()| self.guard()))
    }

    /// Waits at most `timeout` for the lock. A zero timeout never blocks.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<RLockGuard<'_>> {
        self.enter(Blocking::Until(Deadline::after(timeout)))
            .map(|()| self.guard())
            .map_err(|e| e.map(|()| self.guard()))
    }

    /// Takes one level of the lock without a guard; pair with
    /// [`release`](RLock::release).
    pub fn acquire(&self) -> LockResult<()> {
        forever(self.enter(Blocking::Until(Deadline::NEVER)))
    }

    /// Releases one level. [`NotOwner`] if the calling thread does not
    /// hold the lock (including a release past the last level).
    pub fn release(&self) -> Result<(), NotOwner> {
        if !self.is_owned() {
            return Err(NotOwner);
        }
        let d = self.inner.depth.load(Ordering::Relaxed);
        if d <= 1 {
            self.inner.depth.store(0, Ordering::Relaxed);
            // SAFETY: this thread owns the mutex (checked above).
            unsafe { self.inner.mutex.release() };
        } else {
            self.inner.depth.store(d - 1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned(&self) -> bool {
        self.inner.mutex.owner() == thread::tid()
    }

    /// Whether any thread of any process holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.inner.mutex.is_locked()
    }

    /// How many times the calling thread holds the lock (0 if it does not).
    pub fn depth(&self) -> u32 {
        if self.is_owned() {
            self.inner.depth.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // The guard proves ownership; release cannot fail here, and if it
        // somehow did, there is nothing better to do in drop.
        let _ = self.lock.release();
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("locked", &self.is_locked())
            .field("owned_here", &self.is_owned())
            .finish()
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RLockGuard")
    }
}
