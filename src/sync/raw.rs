//! The raw process-shared mutex that every lock of the crate is built on.
//!
//! One 32-bit futex word in shared memory: `0` when unlocked, otherwise the
//! owner's thread id (`gettid`, unique across processes), with the top bit set
//! when someone may be sleeping on it. The fast paths are one compare-and-swap
//! to lock and one swap to unlock, as in Rust std's futex mutex
//! (`library/std/src/sys/sync/mutex/futex.rs`), whose three-state design this
//! follows with the owner id in place of the "locked" state. Those fast
//! paths are `#[inline]` all the way up (`acquire`, `release`, the
//! `lock_api` impl, [`Lock`](crate::Lock)'s and
//! [`Value::update`](crate::Value::update)'s), so that they compile into the
//! caller's loop: called out of line from another crate, an uncontended
//! `Value::update` cost 14.3 ns of CPU against a bare futex lock's 12.4 ns
//! (`multiproc bench --workload counter --procs 1`), inlined 12.2 ns.
//!
//! Keeping the owner's id in the word is what makes the lock robust: a
//! waiter sleeps in slices of [`OWNER_CHECK`], and after each slice checks
//! whether the owner still lives (`/proc/<tid>/stat`). If it died, the waiter
//! takes the lock over with one compare-and-swap and reports
//! [`Acquired::OwnerDied`]. Two waiters cannot both take over: only one
//! compare-and-swap from the dead owner's word succeeds.
//!
//! # One pid namespace
//!
//! A thread id is a number in its process's pid namespace, and liveness is
//! read from this namespace's `/proc`. So every process that uses a lock
//! must live in one pid namespace, as every process this crate starts does
//! (fork and spawn children stay in their parent's). A process in another
//! namespace (a container handed the memory through a descriptor or
//! `/dev/shm`, a child after `unshare(CLONE_NEWPID)`) would write ids that
//! name other threads here: its death could go unnoticed, or its id could
//! be taken for another thread's, even the caller's own (reported as
//! [`Acquired::WouldDeadlock`]). Nothing checks this (a lock is one word,
//! with no room to record a namespace): do not share locks across pid
//! namespaces.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lock_api::GuardNoSend;

use super::wait::{self, Site, Slept};
use crate::deadline::Deadline;
use crate::sys::futex;
use crate::sys::thread;

pub(crate) const CONTENDED: u32 = 1 << 31;
const TID_MASK: u32 = !CONTENDED;

/// How long a waiter sleeps before it checks that the owner is alive. The
/// next acquirer of a lock whose owner died learns it within about this long.
pub(crate) const OWNER_CHECK: Duration = Duration::from_millis(40);

/// How a waiter for a held lock spins before sleeping (see [`wait`]): a
/// fixed 100 pauses whatever the load, as a plain futex mutex does (the
/// owner is most likely running its short critical section), looking at
/// the word after 1, 2, 4, ... pauses rather than after each, and no
/// more: the load check and a longer spin cost the contended counter more
/// than they saved. The queues' side locks wait the same way once their
/// own short spin (a look after each pause) failed.
pub(crate) static LOCK_SPIN: Site = Site::locks_backing_off(Duration::ZERO, 100);

/// How an acquisition went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Acquired from a clean unlock.
    Clean,
    /// Acquired from an owner that died holding the lock.
    OwnerDied,
    /// Not acquired: the lock was busy (or the timeout passed).
    Busy,
    /// Not acquired: the calling thread holds it already, so no wait could
    /// end (see [`RawProcessMutex`] on self-deadlock).
    WouldDeadlock,
}

/// A process-shared mutex on one futex word: the raw lock behind [`Lock`],
/// [`Value`], [`Array`] and the other locks, and the `R` of
/// `lock_api::Mutex<RawProcessMutex, T>` for typed guards.
///
/// Through the `lock_api` traits an owner's death is not reported (their
/// signatures have no room for it): the lock is simply acquired. The
/// crate's own types report it as [`OwnerDied`](crate::OwnerDied).
///
/// # Locking it again from the holding thread
///
/// The word names the holding thread, so a thread that asks for a lock it
/// already holds is told at once instead of waiting for ever: the crate's
/// own blocking calls (`lock`, `lock_timeout`, `acquire`) return
/// [`LockError::WouldDeadlock`](crate::LockError::WouldDeadlock) or
/// [`TryLockError::WouldDeadlock`](crate::TryLockError::WouldDeadlock);
/// `lock_api`'s `lock` (whose signature has no room for an error) panics
/// with a message saying so, and its timed forms return `None` at once.
/// Calls that never wait (`try_lock`, a zero timeout) simply fail, as for
/// any held lock (Python's `acquire(False)` returns `False` here).
///
/// Thread ids are per thread and per process: a fork child runs under a
/// new id, so a lock its parent held at the fork is not the child's; the
/// child waits for the parent to release it (or to die) like any other
/// process. (A parent that keeps holding it while it waits for that child
/// to end deadlocks the two, as two threads would; nothing can tell that
/// apart from a long critical section.) The check cannot be fooled the other way either: the word can
/// hold this thread's id only if this thread wrote it, or if a thread that
/// died holding the lock had the same id, which the kernel hands out again
/// only after the whole id space has been cycled through; waiting for
/// such a lock would never end either, because this thread is alive.
///
/// [`Lock`]: crate::Lock
/// [`Value`]: crate::Value
/// [`Array`]: crate::Array
#[derive(Debug)]
#[repr(transparent)]
pub struct RawProcessMutex {
    word: AtomicU32,
}

// SAFETY: a single atomic word, all-zero is the unlocked state.
unsafe impl crate::ShmSafe for RawProcessMutex {}

impl RawProcessMutex {
    /// An unlocked mutex.
    pub const fn new() -> Self {
        RawProcessMutex {
            word: AtomicU32::new(0),
        }
    }

    /// Locks, waiting at most until `deadline`.
    #[inline]
    pub(crate) fn acquire(&self, deadline: Deadline) -> Acquired {
        let tid = thread::tid();
        if self
            .word
            .compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Acquired::Clean;
        }
        self.acquire_slow(tid, deadline)
    }

    /// Locks if free, without waiting (and without checking the owner).
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let tid = thread::tid();
        self.word
            .compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[cold]
    fn acquire_slow(&self, tid: u32, deadline: Deadline) -> Acquired {
        if self.owner() == tid {
            // Only this thread could release it, and it is here, waiting.
            // A call that would not wait anyway (a zero timeout) is told
            // what any held lock tells it.
            return if deadline.expired() {
                Acquired::Busy
            } else {
                Acquired::WouldDeadlock
            };
        }
        robust_acquire(&self.word, TID_MASK, tid, &LOCK_SPIN, deadline)
    }

    /// Unlocks.
    ///
    /// # Safety
    ///
    /// The mutex must be locked, and the caller must be entitled to end
    /// that acquisition (it holds the guard, or is the owner that acquired
    /// it without one).
    #[inline]
    pub(crate) unsafe fn release(&self) {
        if self.word.swap(0, Ordering::Release) & CONTENDED != 0 {
            futex::wake(&self.word, 1);
        }
    }

    /// aio hook (issue 17): the futex word, for the async lock.
    #[cfg(feature = "tokio")]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// The owner's thread id, or 0 when unlocked.
    #[inline]
    pub(crate) fn owner(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & TID_MASK
    }

    /// Whether the mutex is locked right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.owner() != 0
    }
}

impl Default for RawProcessMutex {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: `acquire` returns Clean or OwnerDied only after a successful
// compare-and-swap with Acquire ordering that installed our id; `release`
// stores 0 with Release ordering. Only one compare-and-swap from any given
// word value succeeds, so at most one holder exists. Guards are not `Send`:
// the word names the acquiring thread, and a waiter that finds that thread
// dead takes the lock over.
unsafe impl lock_api::RawMutex for RawProcessMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawProcessMutex::new();
    type Guard = GuardNoSend;

    #[inline]
    fn lock(&self) -> GuardNoSend {
        // An owner's death cannot be reported through this trait; the lock
        // is acquired either way.
        match self.acquire(Deadline::NEVER) {
            Acquired::Clean | Acquired::OwnerDied => GuardNoSend::new(),
            // A bug in the caller, which this signature cannot report:
            // better a clear panic than a thread asleep for ever.
            Acquired::WouldDeadlock => panic!(
                "this thread locked a process-shared mutex it already holds; \
                 waiting would deadlock (drop the first guard first)"
            ),
            Acquired::Busy => unreachable!("a wait without deadline ends holding the lock"),
        }
    }

    #[inline]
    fn try_lock(&self) -> Option<GuardNoSend> {
        self.try_acquire().then(GuardNoSend::new)
    }

    #[inline]
    unsafe fn unlock(&self, _guard: GuardNoSend) {
        // SAFETY: the caller passes the guard of a held acquisition.
        unsafe { self.release() }
    }

    fn is_locked(&self) -> bool {
        RawProcessMutex::is_locked(self)
    }
}

// SAFETY: as for `RawMutex`; a timed acquisition that returns `Busy` has not
// changed the word to our id.
unsafe impl lock_api::RawMutexTimed for RawProcessMutex {
    type Duration = Duration;
    type Instant = std::time::Instant;

    fn try_lock_for(&self, timeout: Duration) -> Option<GuardNoSend> {
        match self.acquire(Deadline::after(timeout)) {
            Acquired::Clean | Acquired::OwnerDied => Some(GuardNoSend::new()),
            Acquired::Busy | Acquired::WouldDeadlock => None,
        }
    }

    fn try_lock_until(&self, timeout: std::time::Instant) -> Option<GuardNoSend> {
        let d = timeout.saturating_duration_since(std::time::Instant::now());
        self.try_lock_for(d)
    }
}

/// A process-shared condition variable word: a sequence number bumped by
/// every notify, as in Rust std's futex condvar
/// (`library/std/src/sys/sync/condvar/futex.rs`).
///
/// A waiter reads the number while holding the mutex, unlocks, and sleeps
/// only while the number is unchanged, so no notify between the unlock and
/// the sleep is lost. A waiter that timed out is no longer in the kernel's
/// queue and so cannot swallow a later notify; a waiter killed while asleep
/// is simply gone from that queue. Wakeups may be spurious.
#[derive(Debug)]
#[repr(transparent)]
pub struct RawProcessCondvar {
    seq: AtomicU32,
}

// SAFETY: a single atomic word; all-zero is a fresh condvar.
unsafe impl crate::ShmSafe for RawProcessCondvar {}

impl RawProcessCondvar {
    /// A condvar with no waiters.
    pub const fn new() -> Self {
        RawProcessCondvar {
            seq: AtomicU32::new(0),
        }
    }

    /// Wakes up to `n` waiters.
    pub(crate) fn notify(&self, n: u32) {
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake(&self.seq, n);
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all_waiters(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake_all(&self.seq);
    }

    /// Unlocks `mutex`, sleeps until notified or `timeout`, locks again.
    /// Returns true if the sleep timed out.
    ///
    /// # Safety
    ///
    /// The caller must hold `mutex`, and must not touch the data it guards
    /// until this returns.
    pub(crate) unsafe fn wait_raw(
        &self,
        mutex: &RawProcessMutex,
        timeout: Option<Duration>,
    ) -> (bool, Acquired) {
        let seq = self.seq.load(Ordering::Relaxed);
        // SAFETY: the caller holds `mutex`.
        unsafe { mutex.release() };
        let r = futex::wait(&self.seq, seq, timeout);
        // Released above, so this thread cannot be its owner now: the
        // result is Clean or OwnerDied.
        let acquired = mutex.acquire(Deadline::NEVER);
        (r == futex::Wait::TimedOut, acquired)
    }
}

impl Default for RawProcessCondvar {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: `wait` reads the sequence number while the mutex is held, then
// unlocks, sleeps only while the number is unchanged, and re-locks before
// returning (never unwinding in between: nothing there panics). Spurious
// wakeups are possible, so notify methods return `false` / `0`.
unsafe impl lock_api::RawCondvar for RawProcessCondvar {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawProcessCondvar::new();
    type RawMutex = RawProcessMutex;

    unsafe fn wait(&self, mutex: &RawProcessMutex, _guard: &mut GuardNoSend) {
        // SAFETY: the caller holds `mutex` (its guard is `_guard`).
        unsafe { self.wait_raw(mutex, None) };
    }

    fn notify_one(&self) -> bool {
        self.notify(1);
        false
    }

    fn notify_all(&self) -> usize {
        self.notify_all_waiters();
        0
    }
}

// SAFETY: as for `RawCondvar`, with a bounded sleep.
unsafe impl lock_api::RawCondvarTimed for RawProcessCondvar {
    fn checked_duration_to_instant(timeout: &Duration) -> Option<std::time::Instant> {
        std::time::Instant::now().checked_add(*timeout)
    }

    unsafe fn wait_until(
        &self,
        mutex: &RawProcessMutex,
        _guard: &mut GuardNoSend,
        timeout: &std::time::Instant,
    ) -> bool {
        let d = timeout.saturating_duration_since(std::time::Instant::now());
        // SAFETY: the caller holds `mutex`.
        let (timed_out, _) = unsafe { self.wait_raw(mutex, Some(d)) };
        timed_out
    }
}

/// After a whole slice with the lock word `w` (owner `w & tid_mask`): if
/// that owner still holds it and is dead, tries to take the lock over for
/// `tid` (marked contended). `Some(true)`: taken over; `Some(false)`:
/// another waiter was first (look again); `None`: the owner lives, or is
/// another one now. Shared by the blocking and the async lock waits.
pub(crate) fn take_over_dead(word: &AtomicU32, w: u32, tid_mask: u32, tid: u32) -> Option<bool> {
    let now = word.load(Ordering::Relaxed);
    if now & tid_mask != w & tid_mask || thread::alive(w & tid_mask) {
        return None;
    }
    // Only one compare-and-swap from `now` succeeds.
    Some(
        word.compare_exchange(
            now,
            (now & !tid_mask) | tid | CONTENDED,
            Ordering::Acquire,
            Ordering::Relaxed,
        )
        .is_ok(),
    )
}

/// The robust wait for a futex lock word shared by [`RawProcessMutex`] and
/// the queues' side locks: the owner's thread id in `tid_mask`, bit 31
/// ([`CONTENDED`]) set while someone sleeps on the word, and any other bits
/// (the queues keep their waiters' bells there) left as they are.
///
/// Spins as `site` says (see [`wait`]) while nobody sleeps, then sleeps
/// on the word in slices of [`OWNER_CHECK`]; after a whole slice with the
/// same owner it checks that owner's liveness, and one compare-and-swap
/// takes a dead owner's lock over ([`Acquired::OwnerDied`]).
pub(crate) fn robust_acquire(
    word: &AtomicU32,
    tid_mask: u32,
    tid: u32,
    site: &Site,
    deadline: Deadline,
) -> Acquired {
    // Spin while the owner runs and nobody sleeps: `Some(None)` ends the
    // spin early (someone sleeps, so the release will wake one anyway).
    let spun = site.spin_until(deadline, || {
        let w = word.load(Ordering::Relaxed);
        if w & tid_mask == 0 {
            return word
                .compare_exchange(w, w | tid, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
                .then_some(Some(Acquired::Clean));
        }
        (w & CONTENDED != 0).then_some(None)
    });
    if let Some(Some(acquired)) = spun {
        return acquired;
    }
    loop {
        let w = word.load(Ordering::Relaxed);
        if w & tid_mask == 0 {
            // Free. Take it marked contended: others may sleep on it, so
            // the release must wake one.
            if word
                .compare_exchange(w, w | tid | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Acquired::Clean;
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
        let expected = w | CONTENDED;
        if wait::sleep(word, expected, deadline, OWNER_CHECK) != Slept::Woken {
            // The owner held it for a whole slice: is it still alive?
            match take_over_dead(word, w, tid_mask, tid) {
                Some(true) => return Acquired::OwnerDied,
                Some(false) => continue,
                None => {}
            }
            if deadline.expired() {
                return Acquired::Busy;
            }
        }
    }
}
