//! `Value` and `RawValue`: one `T` in shared memory.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::{LockResult, Result, TryLockResult};
use crate::shm::{Atomic, AtomicNumber, ShmBox, ShmSafe};
use crate::sync::{Blocking, Mutex, MutexGuard, forever, lock_mutex};
use crate::sys::futex::Deadline;

/// One `T` in shared memory with a process-shared lock, like Python's
/// `multiprocessing.Value` (`Value('d', 0.0)` is `Value::new(0.0f64)`).
///
/// Create it before forking; every child sees the same value. The lock's
/// guard derefs to `T`.
///
/// # Examples
///
/// ```
/// let counter = multiproc::Value::new(0u64)?;
/// *counter.lock().unwrap() += 1;
/// counter.update(|v| *v += 1);
/// assert_eq!(counter.get(), 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Differences from Python
///
/// `get`/`set`/`update` take the lock; there is no unlocked `.value`
/// attribute. For lock-free access use [`RawValue`] (atomics).
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct Value<T: ShmSafe> {
    inner: ShmBox<Mutex<T>>,
}

impl<T: ShmSafe> Value<T> {
    /// `value`, moved into shared memory.
    pub fn new(value: T) -> Result<Value<T>> {
        Ok(Value {
            inner: ShmBox::new(Mutex::new(value))?,
        })
    }

    /// Waits for the lock and returns a guard that derefs to the value.
    ///
    /// If the previous holder died with the lock held, the guard comes in
    /// [`OwnerDied`](crate::OwnerDied): the value may be half-updated. If
    /// this thread holds the lock already, the error is
    /// [`LockError::WouldDeadlock`](crate::LockError::WouldDeadlock).
    #[doc(alias = "get_lock")]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        forever(lock_mutex(&self.inner, Blocking::Until(Deadline::NEVER)))
    }

    /// Takes the lock if it is free, without waiting.
    pub fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
        lock_mutex(&self.inner, Blocking::No)
    }

    /// Waits at most `timeout` for the lock. A zero timeout never blocks.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<MutexGuard<'_, T>> {
        lock_mutex(&self.inner, Blocking::Until(Deadline::after(timeout)))
    }

    /// Runs `f` on the value under the lock and returns its result. A lock
    /// whose owner died is recovered silently; use [`lock`](Value::lock) to
    /// learn of it.
    ///
    /// # Panics
    ///
    /// If this thread holds the lock already (a guard from
    /// [`lock`](Value::lock) is alive): waiting would never end. The same
    /// holds for [`get`](Value::get) and [`set`](Value::set); `lock` reports
    /// it as an error instead.
    #[track_caller]
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // A `match`, not a closure, so that a panic names the caller.
        let mut g = match self.lock() {
            Ok(g) => g,
            Err(e) => e.into_guard(),
        };
        f(&mut g)
    }

    /// Stores `value` under the lock.
    ///
    /// # Panics
    ///
    /// If this thread holds the lock already; see [`update`](Value::update).
    #[track_caller]
    pub fn set(&self, value: T) {
        self.update(|v| *v = value)
    }

    /// The `lock_api` mutex inside, for [`Condition::wait`] and generic
    /// code (Python's `get_lock`).
    ///
    /// [`Condition::wait`]: crate::Condition::wait
    pub fn as_mutex(&self) -> &Mutex<T> {
        &self.inner
    }
}

impl<T: ShmSafe + Copy> Value<T> {
    /// A copy of the value, read under the lock.
    ///
    /// # Panics
    ///
    /// If this thread holds the lock already; see [`update`](Value::update).
    #[track_caller]
    pub fn get(&self) -> T {
        self.update(|v| *v)
    }
}

impl<T: ShmSafe + Copy + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Ok(g) => f.debug_tuple("Value").field(&*g).finish(),
            Err(_) => f.write_str("Value(<locked>)"),
        }
    }
}

/// One primitive in shared memory without a lock, like Python's
/// `multiprocessing.RawValue`, but read and written atomically, so
/// concurrent use from many processes is sound (Python's is a plain C
/// value with no such promise).
///
/// Orderings are sequentially consistent; [`as_atomic`](RawValue::as_atomic)
/// gives the atomic itself for finer control.
///
/// # Examples
///
/// ```
/// let hits = multiproc::RawValue::new(0u64)?;
/// hits.fetch_add(5);
/// assert_eq!(hits.get(), 5);
/// hits.set(1);
/// # Ok::<(), multiproc::Error>(())
/// ```
// The derived `Deserialize` is sound: the only field is a `ShmBox`, whose
// own `Deserialize` checks the type, size and alignment of what it adopts;
// the `unsafe` in this type's methods relies on nothing else.
#[cfg_attr(feature = "serde", allow(clippy::unsafe_derive_deserialize))]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct RawValue<T: Atomic> {
    inner: ShmBox<T>,
}

impl<T: Atomic> RawValue<T> {
    /// `value`, moved into shared memory.
    pub fn new(value: T) -> Result<RawValue<T>> {
        Ok(RawValue {
            inner: ShmBox::new(value)?,
        })
    }

    /// The atomic twin of the value (`&AtomicU64` for `u64`, the bits of a
    /// float as `&AtomicU64` for `f64`).
    pub fn as_atomic(&self) -> &T::Repr {
        // SAFETY: the value is valid and aligned for as long as `self`, and
        // every access to it goes through this atomic view.
        unsafe { T::as_atomic(self.inner.as_ptr()) }
    }

    /// Reads the value (Python's `v.value`), atomically. The name is
    /// [`Value::get`]'s and [`RawArray::get`](crate::RawArray::get)'s.
    #[doc(alias = "value")]
    #[doc(alias = "load")]
    pub fn get(&self) -> T {
        T::load(self.as_atomic(), Ordering::SeqCst)
    }

    /// Writes the value (Python's `v.value = x`), atomically.
    #[doc(alias = "store")]
    pub fn set(&self, value: T) {
        T::store(self.as_atomic(), value, Ordering::SeqCst)
    }

    /// The old name of [`get`](Self::get), kept so existing code builds
    /// (hidden from the docs; to be deprecated once the crate's own call
    /// sites have moved to `get`).
    #[doc(hidden)]
    pub fn load(&self) -> T {
        self.get()
    }

    /// The old name of [`set`](Self::set), kept as `load` is.
    #[doc(hidden)]
    pub fn store(&self, value: T) {
        self.set(value)
    }

    /// Writes the value and returns the old one.
    pub fn swap(&self, value: T) -> T {
        T::swap(self.as_atomic(), value, Ordering::SeqCst)
    }

    /// Writes `new` if the value is `current`; returns the previous value,
    /// `Ok` if it was written.
    pub fn compare_exchange(&self, current: T, new: T) -> std::result::Result<T, T> {
        T::compare_exchange(self.as_atomic(), current, new)
    }
}

impl<T: AtomicNumber> RawValue<T> {
    /// Adds `delta` (wrapping for integers); returns the previous value.
    pub fn fetch_add(&self, delta: T) -> T {
        T::fetch_add(self.as_atomic(), delta, Ordering::SeqCst)
    }

    /// Subtracts `delta` (wrapping for integers); returns the previous value.
    pub fn fetch_sub(&self, delta: T) -> T {
        T::fetch_sub(self.as_atomic(), delta, Ordering::SeqCst)
    }
}

impl<T: Atomic + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}
