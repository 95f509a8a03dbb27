//! `Value` and `RawValue`: one `T` in shared memory.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::Error;
use crate::error::{CreateError, LockResult, Result, TryLockResult};
use crate::shm::{Atomic, AtomicNumber, ShmBox, ShmSafe};
use crate::sync::{Blocking, MappedMutexGuard, Mutex, MutexGuard, forever, lock_mutex};
use crate::{Lock, LockGuard};

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
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct Value<T: ShmSafe> {
    inner: ShmBox<Mutex<T>>,
}

impl<T: ShmSafe> Value<T> {
    /// `value`, moved into shared memory.
    pub fn new(value: T) -> Result<Value<T>, CreateError> {
        Ok(Value {
            inner: ShmBox::new(Mutex::new(value)).map_err(CreateError::from_internal)?,
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
    #[inline]
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

    /// `value` in shared memory under an existing `lock` rather than a lock
    /// of its own (Python's `Value(typecode, value, lock=L)`): several
    /// values, [arrays](crate::Array::zeroed_with_lock) and
    /// [conditions](crate::Condition::with_lock) can share one lock. The
    /// value keeps a handle on the lock; both work across processes.
    ///
    /// ```
    /// use multiproc::{Lock, Value};
    ///
    /// let lock = Lock::new()?;
    /// let (a, b) = (Value::with_lock(10i64, &lock)?, Value::with_lock(0i64, &lock)?);
    /// // Both updated under one acquisition (Python's `with lock:`).
    /// let mut g = lock.lock().unwrap();
    /// let (x, y) = (a.get_with(&mut g)?, b.get_with(&mut g)?);
    /// a.set_with(&mut g, x - 3)?;
    /// b.set_with(&mut g, y + 3)?;
    /// drop(g);
    /// assert_eq!(a.get() + b.get(), 10);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_lock(value: T, lock: &Lock) -> Result<ValueWithLock<T>, CreateError> {
        Ok(ValueWithLock {
            data: ShmBox::new(value).map_err(CreateError::from_internal)?,
            lock: lock.clone(),
        })
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
#[cfg_attr(feature = "spawn", allow(clippy::unsafe_derive_deserialize))]
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct RawValue<T: Atomic> {
    inner: ShmBox<T>,
}

impl<T: Atomic> RawValue<T> {
    /// `value`, moved into shared memory.
    pub fn new(value: T) -> Result<RawValue<T>, CreateError> {
        Ok(RawValue {
            inner: ShmBox::new(value).map_err(CreateError::from_internal)?,
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

/// [`ValueWithLock::get_with`] or [`set_with`](ValueWithLock::set_with)
/// was given a guard of another lock than the one the value is under:
/// nothing was read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the guard is not of the lock this value is under")]
pub struct WrongGuard;

impl From<WrongGuard> for Error {
    /// [`Error::InvalidArgument`], with the same text.
    fn from(_: WrongGuard) -> Error {
        Error::InvalidArgument("the guard is not of the lock this value is under")
    }
}

/// One `T` in shared memory under a [`Lock`] it shares with others, made
/// by [`Value::with_lock`] (Python's `Value(typecode, value, lock=L)`).
///
/// Its guards ([`lock`](ValueWithLock::lock)) hold the shared lock and
/// deref to the value; [`get_with`](ValueWithLock::get_with) and
/// [`set_with`](ValueWithLock::set_with) reach it under a guard of the
/// lock taken once for several values.
pub struct ValueWithLock<T: ShmSafe> {
    /// Reached only through `as_ptr`, while `lock` is held.
    data: ShmBox<T>,
    lock: Lock,
}

// By hand rather than derived: the value and its lock are adopted only as
// the pair this crate sent (`transfer::check_bundle`), so bytes cannot put
// one value under another's lock.
#[cfg(feature = "spawn")]
impl<T: ShmSafe> serde::Serialize for ValueWithLock<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let r = serde::Serialize::serialize(&(&self.data, &self.lock), s)?;
        crate::shm::transfer::note_bundle(&[self.data.alloc(), self.lock.alloc()]);
        Ok(r)
    }
}

#[cfg(feature = "spawn")]
impl<'de, T: ShmSafe> serde::Deserialize<'de> for ValueWithLock<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (data, lock): (ShmBox<T>, Lock) = serde::Deserialize::deserialize(d)?;
        crate::shm::transfer::check_bundle(&[data.alloc(), lock.alloc()])
            .map_err(serde::de::Error::custom)?;
        Ok(ValueWithLock { data, lock })
    }
}

// SAFETY: the value is only reached while the process-shared lock is held
// (by the holder of a guard, or through `&mut` of a guard of that lock), so
// sharing the handle between threads is as for `std::sync::Mutex<T>`.
unsafe impl<T: ShmSafe> Sync for ValueWithLock<T> {}
// SAFETY: an address in a shared mapping kept alive by the handle.
unsafe impl<T: ShmSafe> Send for ValueWithLock<T> {}

impl<T: ShmSafe> ValueWithLock<T> {
    /// The lock the value is under (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    fn map<'a>(&'a self, g: LockGuard<'a>) -> MappedMutexGuard<'a, T> {
        let ptr = self.data.as_ptr();
        MutexGuard::map(g, |_| {
            // SAFETY: the lock is held for as long as the guard lives, and
            // every access to the value happens under it; valid and aligned
            // (ShmBox's invariant).
            unsafe { &mut *ptr }
        })
    }

    /// Waits for the lock; the guard derefs to the value. Errors as for
    /// [`Value::lock`].
    pub fn lock(&self) -> LockResult<MappedMutexGuard<'_, T>> {
        self.lock
            .lock()
            .map(|g| self.map(g))
            .map_err(|e| e.map(|g| self.map(g)))
    }

    /// Takes the lock if it is free, without waiting.
    pub fn try_lock(&self) -> TryLockResult<MappedMutexGuard<'_, T>> {
        self.lock
            .try_lock()
            .map(|g| self.map(g))
            .map_err(|e| e.map(|g| self.map(g)))
    }

    /// Waits at most `timeout` for the lock. A zero timeout never blocks.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<MappedMutexGuard<'_, T>> {
        self.lock
            .lock_timeout(timeout)
            .map(|g| self.map(g))
            .map_err(|e| e.map(|g| self.map(g)))
    }

    /// Runs `f` on the value under the lock (a dead owner's lock is
    /// recovered silently).
    ///
    /// # Panics
    ///
    /// If this thread holds the lock already, as for [`Value::update`].
    #[track_caller]
    #[inline]
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
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
    /// If this thread holds the lock already; see
    /// [`set_with`](Self::set_with) for that case.
    #[track_caller]
    pub fn set(&self, value: T) {
        self.update(|v| *v = value)
    }

    /// Checks that `guard` holds this value's lock.
    fn check(&self, guard: &LockGuard<'_>) -> Result<(), WrongGuard> {
        if self.lock.owns(guard) {
            Ok(())
        } else {
            Err(WrongGuard)
        }
    }

    /// Stores `value` under a guard of the shared lock that the caller
    /// holds already (for updating several values in one acquisition).
    ///
    /// # Errors
    ///
    /// [`WrongGuard`] if `guard` is not of this value's lock (nothing is
    /// stored).
    pub fn set_with(&self, guard: &mut LockGuard<'_>, value: T) -> Result<(), WrongGuard> {
        self.check(guard)?;
        // SAFETY: the guard (exclusively borrowed: no other thread can use
        // it meanwhile) shows the lock is held by this thread; no reference
        // to the value outlives this call.
        unsafe { *self.data.as_ptr() = value };
        Ok(())
    }
}

impl<T: ShmSafe + Copy> ValueWithLock<T> {
    /// A copy of the value, read under the lock.
    ///
    /// # Panics
    ///
    /// If this thread holds the lock already; see
    /// [`get_with`](Self::get_with) for that case.
    #[track_caller]
    pub fn get(&self) -> T {
        self.update(|v| *v)
    }

    /// A copy of the value, under a guard of the shared lock that the
    /// caller holds already.
    ///
    /// # Errors
    ///
    /// [`WrongGuard`] if `guard` is not of this value's lock.
    pub fn get_with(&self, guard: &mut LockGuard<'_>) -> Result<T, WrongGuard> {
        self.check(guard)?;
        // SAFETY: as in `set_with`.
        Ok(unsafe { *self.data.as_ptr() })
    }
}

impl<T: ShmSafe + Copy + fmt::Debug> fmt::Debug for ValueWithLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Ok(g) => f.debug_tuple("ValueWithLock").field(&*g).finish(),
            Err(_) => f.write_str("ValueWithLock(<locked>)"),
        }
    }
}

#[cfg(all(test, feature = "spawn"))]
mod tests {
    use super::*;
    use crate::shm::transfer;

    #[test]
    fn a_value_travels_only_with_the_lock_it_was_sent_with() {
        let (l1, l2) = (Lock::new().unwrap(), Lock::new().unwrap());
        let v1 = Value::with_lock(1u64, &l1).unwrap();
        let v2 = Value::with_lock(2u64, &l2).unwrap();
        let send = |x: &dyn erased::Ser| transfer::collecting(|| x.bytes());
        // Whole: adopted.
        let (bytes, carried) = send(&&v1);
        let back = transfer::receiving(carried, || {
            postcard::from_bytes::<ValueWithLock<u64>>(&bytes.unwrap())
        });
        assert_eq!(back.unwrap().get(), 1);
        // v1's value under v2's lock, both genuine handles, sent beside the
        // two real values: refused.
        let (bytes, carried) = send(&(&v1, &v2, (&v1.data, &v2.lock)));
        let forged = transfer::receiving(carried, || {
            postcard::from_bytes::<(ValueWithLock<u64>, ValueWithLock<u64>, ValueWithLock<u64>)>(
                &bytes.unwrap(),
            )
        });
        assert!(forged.is_err(), "a value was adopted under another lock");
    }

    /// Serializing through a trait object keeps the test's calls short.
    mod erased {
        pub(super) trait Ser {
            fn bytes(&self) -> Result<Vec<u8>, postcard::Error>;
        }
        impl<T: serde::Serialize> Ser for T {
            fn bytes(&self) -> Result<Vec<u8>, postcard::Error> {
                postcard::to_stdvec(self)
            }
        }
    }
}
