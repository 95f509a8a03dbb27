//! `Barrier`.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::wait;
use crate::deadline::Deadline;
use crate::error::{CreateError, Error, Result};
use crate::shm::ShmBox;
use crate::sys::futex;
use crate::sys::thread;

// The state word. Without a lock inside, no party can die holding one.
//   bits 0..32   parties arrived in this generation, or while TRIPPING the
//                thread id of the party running the action
//   bits 32..61  generation
//   bit 61       TRIPPING: the last party arrived and runs the action
//   bit 62       RESET: the previous generation ended by `reset`
//   bit 63       BROKEN
const LOW: u64 = 0xFFFF_FFFF;
const GEN_SHIFT: u32 = 32;
const GEN_MASK: u64 = (1 << 29) - 1;
const TRIPPING: u64 = 1 << 61;
const RESET: u64 = 1 << 62;
const BROKEN: u64 = 1 << 63;

/// How long a waiter sleeps before it checks that the party running the
/// action is still alive.
pub(crate) const CHECK: Duration = Duration::from_millis(40);

fn generation(s: u64) -> u64 {
    (s >> GEN_SHIFT) & GEN_MASK
}

fn next_generation(s: u64) -> u64 {
    ((generation(s) + 1) & GEN_MASK) << GEN_SHIFT
}

#[derive(Debug)]
struct BarrierState {
    state: AtomicU64,
    /// Bumped on every change waiters must see; they sleep on it.
    seq: AtomicU32,
    parties: u32,
}

// SAFETY: atomics and a plain integer; no pointers or drop glue.
unsafe impl crate::ShmSafe for BarrierState {}

impl BarrierState {
    fn publish(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake_all(&self.seq);
    }

    /// Sets BROKEN if the state is still `s`; true if it did.
    fn break_from(&self, s: u64) -> bool {
        let ok = self
            .state
            .compare_exchange(s, s | BROKEN, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if ok {
            self.publish();
        }
        ok
    }
}

type Action = Box<dyn Fn() + Send + Sync>;

/// What one look of a party that has not arrived found.
pub(crate) enum Arrive {
    /// Its outcome: broken, or released by this party as the last one.
    Done(Result<u32>),
    /// The round is being released: wait for a change of `seq` from `s`.
    Wait { seq: u32, s: u64 },
    /// Arrived in generation `gen_` as `index`: wait for the release.
    Arrived { gen_: u64, index: u32 },
}

/// A meeting point for a fixed number of processes, like Python's
/// `multiprocessing.Barrier`.
///
/// Each of the `parties` calls [`wait`](Barrier::wait); all return together
/// once the last arrives, each with a distinct index `0..parties` (arrival
/// order). The optional action runs once per round, in the last party to
/// arrive, before any is released; if it panics, the barrier breaks and the
/// panic continues in that party.
///
/// A broken barrier (aborted, timed out, reset under waiters, or an action
/// that panicked or whose process died) makes every waiting and later
/// `wait` fail with [`Error::BrokenBarrier`] until [`reset`](Barrier::reset).
/// A party killed while waiting does not hold the others up: it already
/// counted as arrived.
///
/// # Examples
///
/// ```
/// let b = multiproc::Barrier::new(1)?;
/// assert_eq!(b.wait()?, 0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct Barrier {
    inner: ShmBox<BarrierState>,
    /// Each process runs its own copy; a spawned process has none.
    #[cfg_attr(feature = "spawn", serde(skip))]
    action: Option<Action>,
    /// What [`wait`](Barrier::wait) waits at most (Python's `timeout=`
    /// argument of the constructor); a property of this handle, copied to
    /// fork children and sent to spawned ones.
    default_timeout: Option<Duration>,
}

impl Barrier {
    /// A barrier for `parties` parties (at least 1).
    pub fn new(parties: u32) -> Result<Barrier, CreateError> {
        if parties == 0 {
            return Err(CreateError::InvalidArgument(
                "a barrier needs at least one party",
            ));
        }
        Ok(Barrier {
            inner: ShmBox::new(BarrierState {
                state: AtomicU64::new(0),
                seq: AtomicU32::new(0),
                parties,
            })
            .map_err(CreateError::from_internal)?,
            action: None,
            default_timeout: None,
        })
    }

    /// A barrier whose `action` runs once per round, in the last party to
    /// arrive, before the others are released. Each process runs its own copy
    /// of the closure (a fork child inherits it).
    pub fn with_action(
        parties: u32,
        action: impl Fn() + Send + Sync + 'static,
    ) -> Result<Barrier, CreateError> {
        let mut b = Barrier::new(parties)?;
        b.action = Some(Box::new(action));
        Ok(b)
    }

    /// Sets the default timeout of [`wait`](Barrier::wait), as Python's
    /// `Barrier(parties, action, timeout)` does: `wait` then behaves as
    /// [`wait_timeout`](Barrier::wait_timeout) with it. Handles made from
    /// this one (fork children, spawned children) keep it.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = multiproc::Barrier::new(2)?.with_timeout(Duration::from_millis(20));
    /// // The second party never comes: the barrier breaks after 20 ms.
    /// assert!(matches!(b.wait(), Err(multiproc::BarrierError::Timeout)));
    /// assert!(b.is_broken());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn with_timeout(mut self, timeout: Duration) -> Barrier {
        self.default_timeout = Some(timeout);
        self
    }

    /// The default timeout of [`wait`](Barrier::wait), if one was set.
    pub fn timeout(&self) -> Option<Duration> {
        self.default_timeout
    }

    /// Waits for all parties (at most the [default
    /// timeout](Barrier::with_timeout), if set); returns this party's
    /// arrival index.
    ///
    /// # Errors
    ///
    /// As for [`wait_timeout`](Self::wait_timeout) (a timeout only with a
    /// default timeout set).
    pub fn wait(&self) -> Result<u32, BarrierError> {
        match self.default_timeout {
            Some(t) => self.wait_timeout(t),
            None => self
                .wait_until(Deadline::NEVER)
                .map_err(BarrierError::from_internal),
        }
    }

    /// Waits at most `timeout`. On timeout the barrier breaks (as in
    /// Python): this party gets [`BarrierError::Timeout`], the others
    /// [`BarrierError::BrokenBarrier`].
    ///
    /// # Errors
    ///
    /// [`BarrierError::BrokenBarrier`] if the barrier is broken (aborted,
    /// reset while this party waited, another party timed out, or the
    /// party running the action panicked or died);
    /// [`BarrierError::Timeout`] if this party's wait timed out.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BarrierError> {
        self.wait_until(Deadline::after(timeout))
            .map_err(BarrierError::from_internal)
    }

    fn wait_until(&self, deadline: Deadline) -> Result<u32> {
        loop {
            match self.arrive_step() {
                Arrive::Done(r) => return r,
                Arrive::Wait { seq, s } => {
                    // A party beyond `parties` while the round is released:
                    // wait for the next round.
                    if !self.sleep(seq, s, deadline)? {
                        return Err(Error::Timeout);
                    }
                }
                Arrive::Arrived { gen_, index } => {
                    return self.wait_release(gen_, index, deadline);
                }
            }
        }
    }

    /// One look of a party that has not arrived yet: arrives (and, as the
    /// last party, runs the action and releases the round) if it can. The
    /// blocking and the async waits share it.
    pub(crate) fn arrive_step(&self) -> Arrive {
        let b = &*self.inner;
        loop {
            let seq = b.seq.load(Ordering::Acquire);
            let s = b.state.load(Ordering::Acquire);
            if s & BROKEN != 0 {
                return Arrive::Done(Err(Error::BrokenBarrier));
            }
            if s & TRIPPING != 0 {
                return Arrive::Wait { seq, s };
            }
            let index = (s & LOW) as u32;
            if index + 1 == b.parties {
                let tripping = (s & (GEN_MASK << GEN_SHIFT)) | TRIPPING | u64::from(thread::tid());
                if b.state
                    .compare_exchange(s, tripping, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                if let Some(action) = &self.action
                    && let Err(panic) = catch_unwind(AssertUnwindSafe(action))
                {
                    b.break_from(tripping);
                    resume_unwind(panic);
                }
                b.state.store(next_generation(s), Ordering::Release);
                b.publish();
                return Arrive::Done(Ok(index));
            }
            if b.state
                .compare_exchange(s, s + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            return Arrive::Arrived {
                gen_: generation(s),
                index,
            };
        }
    }

    fn wait_release(&self, gen_: u64, index: u32, deadline: Deadline) -> Result<u32> {
        let b = &*self.inner;
        loop {
            let (seq, s) = match self.release_step(gen_, index) {
                Ok(r) => return r,
                Err(wait) => wait,
            };
            if !self.sleep(seq, s, deadline)? {
                // Timed out: break the round for everyone, unless it was just
                // released or broken (then look again).
                if b.break_from(s) {
                    return Err(Error::Timeout);
                }
            }
        }
    }

    /// One look of a party that arrived in generation `gen_` as `index`:
    /// its outcome once the round is released or broken, else the sequence
    /// and state to wait for a change of.
    pub(crate) fn release_step(
        &self,
        gen_: u64,
        index: u32,
    ) -> std::result::Result<Result<u32>, (u32, u64)> {
        let b = &*self.inner;
        let seq = b.seq.load(Ordering::Acquire);
        let s = b.state.load(Ordering::Acquire);
        if generation(s) != gen_ {
            let reset = s & RESET != 0 && generation(s) == (gen_ + 1) & GEN_MASK;
            return Ok(if reset {
                Err(Error::BrokenBarrier)
            } else {
                Ok(index)
            });
        }
        if s & BROKEN != 0 {
            return Ok(Err(Error::BrokenBarrier));
        }
        Err((seq, s))
    }

    /// Breaks the round of generation `gen_` if it is still waiting (a
    /// party that left it: a timed-out or dropped wait). True if this broke
    /// it.
    #[cfg(feature = "tokio")]
    pub(crate) fn leave(&self, gen_: u64) -> bool {
        let b = &*self.inner;
        loop {
            let s = b.state.load(Ordering::Acquire);
            if generation(s) != gen_ || s & BROKEN != 0 {
                return false;
            }
            if b.break_from(s) {
                return true;
            }
        }
    }

    /// aio hook (issue 17): the word waiters sleep on.
    #[cfg(feature = "tokio")]
    pub(crate) fn seq_word(&self) -> &AtomicU32 {
        &self.inner.seq
    }

    /// After a whole slice without news while the round is `s`: breaks it
    /// if the party running the action died (then `Err`).
    pub(crate) fn check_tripper(&self, s: u64) -> Result<()> {
        let b = &*self.inner;
        if s & TRIPPING != 0 && !thread::alive((s & LOW) as u32) && b.break_from(s) {
            return Err(Error::BrokenBarrier);
        }
        Ok(())
    }

    /// Sleeps on `seq` for one slice. Returns Ok(false) when the deadline has
    /// passed, Err if the party running the action died.
    fn sleep(&self, seq: u32, s: u64, deadline: Deadline) -> Result<bool> {
        let b = &*self.inner;
        if deadline.expired() {
            return Ok(false);
        }
        if wait::sleep(&b.seq, seq, deadline, CHECK) == wait::Slept::Slice {
            self.check_tripper(s)?;
        }
        Ok(true)
    }

    /// Breaks the barrier: every waiting and later `wait` fails until
    /// [`reset`](Barrier::reset).
    pub fn abort(&self) {
        let b = &*self.inner;
        let s = b.state.fetch_or(BROKEN, Ordering::AcqRel);
        if s & BROKEN == 0 {
            b.publish();
        }
    }

    /// Returns the barrier to its empty, unbroken state. Parties waiting in
    /// the current round fail with [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        let b = &*self.inner;
        let mut s = b.state.load(Ordering::Acquire);
        loop {
            let waiting = s & BROKEN == 0 && (s & LOW != 0 || s & TRIPPING != 0);
            let new = next_generation(s) | if waiting { RESET } else { 0 };
            match b
                .state
                .compare_exchange(s, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        b.publish();
    }

    /// How many parties the barrier waits for.
    pub fn parties(&self) -> u32 {
        self.inner.parties
    }

    /// How many parties wait in the current round.
    pub fn n_waiting(&self) -> u32 {
        let s = self.inner.state.load(Ordering::Acquire);
        if s & (TRIPPING | BROKEN) != 0 {
            0
        } else {
            (s & LOW) as u32
        }
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) & BROKEN != 0
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

/// Why [`Barrier::wait`] failed (Python's `BrokenBarrierError`, told
/// apart from this party's own timeout). Converts into [`Error`] variant
/// for variant, so `?` works in a function returning [`crate::Result`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken: aborted, reset while this party waited,
    /// another party timed out, or the party running the action panicked
    /// or died. Every `wait` fails so until [`Barrier::reset`].
    #[error("barrier is broken")]
    BrokenBarrier,
    /// This party's wait timed out (and broke the barrier for the others).
    #[error("timed out")]
    Timeout,
}

impl BarrierError {
    /// The barrier error for what the waits (which speak [`Error`], shared
    /// with the async waits) reported: they report only these two.
    pub(crate) fn from_internal(e: Error) -> BarrierError {
        match e {
            Error::Timeout => BarrierError::Timeout,
            _ => BarrierError::BrokenBarrier,
        }
    }
}

impl From<BarrierError> for Error {
    fn from(e: BarrierError) -> Error {
        match e {
            BarrierError::BrokenBarrier => Error::BrokenBarrier,
            BarrierError::Timeout => Error::Timeout,
        }
    }
}
