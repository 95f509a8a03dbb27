//! Synchronization that works across processes: every primitive keeps its
//! state in shared memory and sleeps on shared futex words.

pub(crate) mod barrier;
pub(crate) mod condition;
pub(crate) mod event;
pub(crate) mod lock;
pub(crate) mod raw;
pub(crate) mod semaphore;
pub(crate) mod wait;

use crate::deadline::Deadline;
use crate::error::{LockError, OwnerDied, TryLockError, TryLockResult};
use raw::{Acquired, RawProcessMutex};

/// A `lock_api` mutex over the process-shared raw mutex; lives in shared
/// memory inside [`Value`](crate::Value), [`Lock`](crate::Lock) and the rest.
pub type Mutex<T> = lock_api::Mutex<RawProcessMutex, T>;
/// The guard of a [`Mutex`]: derefs to the data, unlocks on drop.
pub type MutexGuard<'a, T> = lock_api::MutexGuard<'a, RawProcessMutex, T>;
/// A guard of part of a [`Mutex`]'s data (see `MutexGuard::map`), such as
/// the slice of an [`Array`](crate::Array).
pub type MappedMutexGuard<'a, T> = lock_api::MappedMutexGuard<'a, RawProcessMutex, T>;

// SAFETY: the raw mutex is one atomic word and T is plain data, so the pair
// is plain data; an all-zero Mutex is an unlocked one holding all-zero T.
// That `lock_api::Mutex` is exactly that pair (no pointer, no drop glue,
// nothing else) is checked below at compile time, so a `lock_api` release
// that changed it would fail to build rather than put a pointer in shared
// memory.
unsafe impl<T: crate::ShmSafe> crate::ShmSafe for Mutex<T> {}
// SAFETY: one atomic word; all-zero is a condvar without waiters (checked
// below: the wrapper is the raw condvar and nothing else).
unsafe impl crate::ShmSafe for lock_api::Condvar<raw::RawProcessCondvar> {}

/// The size of a `Mutex<T>` made of the raw mutex and a `T` only, in
/// either order, with no padding beyond alignment.
const fn pair_size<T>() -> usize {
    let align = if align_of::<T>() > align_of::<RawProcessMutex>() {
        align_of::<T>()
    } else {
        align_of::<RawProcessMutex>()
    };
    (size_of::<RawProcessMutex>() + size_of::<T>()).next_multiple_of(align)
}

// The layouts `ShmSafe` relies on above. Checked for a spread of payloads:
// a field added to `lock_api::Mutex` (a pointer, a poison flag) changes at
// least one of these sizes.
const _: () = {
    use std::mem::needs_drop;
    assert!(size_of::<RawProcessMutex>() == 4 && align_of::<RawProcessMutex>() == 4);
    assert!(size_of::<Mutex<()>>() == pair_size::<()>());
    assert!(size_of::<Mutex<u8>>() == pair_size::<u8>());
    assert!(size_of::<Mutex<u32>>() == pair_size::<u32>());
    assert!(size_of::<Mutex<u64>>() == pair_size::<u64>());
    assert!(size_of::<Mutex<[u8; 3]>>() == pair_size::<[u8; 3]>());
    assert!(size_of::<Mutex<[u64; 5]>>() == pair_size::<[u64; 5]>());
    assert!(align_of::<Mutex<()>>() == align_of::<RawProcessMutex>());
    assert!(align_of::<Mutex<u64>>() == align_of::<u64>());
    assert!(!needs_drop::<Mutex<()>>() && !needs_drop::<Mutex<[u64; 5]>>());
    type Cv = lock_api::Condvar<raw::RawProcessCondvar>;
    assert!(size_of::<Cv>() == size_of::<raw::RawProcessCondvar>());
    assert!(align_of::<Cv>() == align_of::<raw::RawProcessCondvar>());
    assert!(size_of::<raw::RawProcessCondvar>() == 4);
    assert!(!needs_drop::<Cv>());
};

/// How a blocking lock call should wait.
#[derive(Clone, Copy)]
pub(crate) enum Blocking {
    /// Not at all (`try_lock`).
    No,
    /// Until the deadline (`lock_timeout`, `lock`).
    Until(Deadline),
}

/// Acquires `mutex` as `how` says and wraps the outcome, building the guard
/// with `make` once the lock is held.
pub(crate) fn acquire_with<G>(
    mutex: &RawProcessMutex,
    how: Blocking,
    make: impl FnOnce() -> G,
) -> TryLockResult<G> {
    let acquired = match how {
        Blocking::No => {
            if mutex.try_acquire() {
                Acquired::Clean
            } else {
                return Err(TryLockError::WouldBlock);
            }
        }
        Blocking::Until(d) => mutex.acquire(d),
    };
    match acquired {
        Acquired::Clean => Ok(make()),
        Acquired::OwnerDied => Err(TryLockError::OwnerDied(OwnerDied::new(make()))),
        Acquired::Busy => Err(TryLockError::TimedOut),
        Acquired::WouldDeadlock => Err(TryLockError::WouldDeadlock),
    }
}

/// Turns the result of a call that waits forever into a `LockResult`.
pub(crate) fn forever<G>(r: TryLockResult<G>) -> crate::LockResult<G> {
    match r {
        Ok(g) => Ok(g),
        Err(TryLockError::OwnerDied(e)) => Err(LockError::OwnerDied(e)),
        Err(TryLockError::WouldDeadlock) => Err(LockError::WouldDeadlock),
        Err(TryLockError::WouldBlock | TryLockError::TimedOut) => {
            unreachable!("a wait without deadline only returns once the lock is held")
        }
    }
}

/// Locks a [`Mutex`] through the robust path, building its typed guard.
pub(crate) fn lock_mutex<T>(m: &Mutex<T>, how: Blocking) -> TryLockResult<MutexGuard<'_, T>> {
    // SAFETY: `raw()` is only used to acquire, and the guard is made only
    // once the acquisition succeeded, as `make_guard_unchecked` requires.
    let raw = unsafe { m.raw() };
    acquire_with(raw, how, || {
        // SAFETY: the lock is held by this thread right now.
        unsafe { m.make_guard_unchecked(lock_api::GuardNoSend::new()) }
    })
}
