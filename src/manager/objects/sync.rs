//! Synchronization objects: one generic blocking object ([`Blocking`])
//! serves the lock, the reentrant lock, the semaphore and the lock of a
//! condition: acquire (with its wait, deadline and cancellation), release
//! and the end of a holder's session are written once, over a [`Permits`]
//! rule that says when a permit is free and who may give it back. The
//! condition, event and barrier follow.
//!
//! A session that ends (its process exited, died or dropped its
//! connections) gives back the locks it holds, so that a killed holder
//! cannot block the others for ever (Python's manager leaves them locked).
//! A semaphore has no owner and keeps its count.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use super::{Answer, deadline};
use crate::error::{Error, RemoteErrorKind as K, Result};
use crate::manager::protocol::{dec_args, remote};
use crate::manager::server::Cx;

/// An operation on a blocking object: a lock, reentrant lock or semaphore
/// (and, inside [`ConditionOp::Lock`], a condition's lock).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockingOp {
    /// Takes a permit, waiting for one unless `block` is false, at most
    /// `timeout` (`None`: as long as it takes). Answer: whether it did.
    Acquire {
        /// Whether to wait at all.
        block: bool,
        /// The longest wait.
        timeout: Option<Duration>,
    },
    /// Gives permits back: 1 for a lock ([`Error::NotOwner`] if the caller
    /// may not), `n` for a semaphore ([`Error::ReleasedTooManyTimes`] past
    /// a bounded one's bound). Answer: unit.
    Release(u64),
    /// Answer: the permits free now (a lock: 1 if unlocked, else 0; a
    /// semaphore: its value).
    Available,
}

/// Whom a release wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// One waiter.
    One,
    /// Every waiter.
    All,
    /// Up to this many.
    Some(u64),
}

/// The rule of one kind of blocking object, kept under its mutex.
pub(crate) trait Permits: Send {
    /// Takes a permit for `caller` (a thread: pid << 32 | tid) of
    /// `session` if one is free now; whether it did.
    fn try_take(&mut self, caller: u64, session: u64) -> bool;
    /// Gives `n` permits back for `caller`; whom to wake.
    fn give(&mut self, caller: u64, n: u64) -> Result<Wake>;
    /// Frees what `session` holds; whether anything was freed.
    fn drop_session(&mut self, session: u64) -> bool;
    /// The permits free now.
    fn available(&self) -> u64;
}

/// A blocking object: its rule's state behind a mutex, and the condition
/// variable its acquirers wait on.
pub(crate) struct Blocking<P> {
    state: Mutex<P>,
    cv: Condvar,
}

impl<P: Permits> Blocking<P> {
    fn new(permits: P) -> Blocking<P> {
        Blocking {
            state: Mutex::new(permits),
            cv: Condvar::new(),
        }
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: BlockingOp, cx: &Cx<'_>) -> Result<Answer> {
        Ok(match op {
            BlockingOp::Acquire { block, timeout } => {
                Answer::Bool(self.acquire(block, timeout, cx)?)
            }
            BlockingOp::Release(n) => {
                self.release(n, cx)?;
                Answer::Unit
            }
            BlockingOp::Available => Answer::Count(self.available()),
        })
    }

    /// Takes a permit for the caller; whether it did before the deadline.
    pub(crate) fn acquire(
        &self,
        block: bool,
        timeout: Option<Duration>,
        cx: &Cx<'_>,
    ) -> Result<bool> {
        let mut s = self.state.lock();
        self.acquire_locked(&mut s, block, timeout, cx)
    }

    /// [`acquire`](Self::acquire) with the state already locked.
    fn acquire_locked(
        &self,
        s: &mut MutexGuard<'_, P>,
        block: bool,
        timeout: Option<Duration>,
        cx: &Cx<'_>,
    ) -> Result<bool> {
        let d = deadline(block, timeout);
        loop {
            if s.try_take(cx.caller, cx.session) {
                return Ok(true);
            }
            if !cx.wait(&self.cv, s, d)? {
                return Ok(false);
            }
        }
    }

    /// Gives `n` permits back for the caller.
    pub(crate) fn release(&self, n: u64, cx: &Cx<'_>) -> Result<()> {
        let wake = self.state.lock().give(cx.caller, n)?;
        self.wake(wake);
        Ok(())
    }

    fn wake(&self, wake: Wake) {
        match wake {
            Wake::One => {
                self.cv.notify_one();
            }
            Wake::All => {
                self.cv.notify_all();
            }
            Wake::Some(n) => {
                // Each wakes one waiter; past the number waiting it is all.
                for _ in 0..n.min(1 << 16) {
                    if !self.cv.notify_one() {
                        break;
                    }
                }
            }
        }
    }

    /// The session ended: what it held is given back.
    pub(crate) fn session_ended(&self, session: u64) {
        if self.state.lock().drop_session(session) {
            self.cv.notify_all();
        }
    }

    /// The permits free now.
    pub(crate) fn available(&self) -> u64 {
        self.state.lock().available()
    }
}

/// Checks that a lock is released once at a time.
fn once(n: u64) -> Result<()> {
    if n == 1 {
        Ok(())
    } else {
        Err(remote(K::Value, "a lock is released one level at a time"))
    }
}

/// A plain lock's rule: one holder, which any caller may release (as
/// Python's `threading.Lock`); the holder's session, for its end.
#[derive(Default)]
pub(crate) struct Exclusive {
    holder: Option<u64>,
}

impl Permits for Exclusive {
    fn try_take(&mut self, _caller: u64, session: u64) -> bool {
        if self.holder.is_some() {
            return false;
        }
        self.holder = Some(session);
        true
    }

    fn give(&mut self, _caller: u64, n: u64) -> Result<Wake> {
        once(n)?;
        if self.holder.take().is_none() {
            return Err(Error::NotOwner);
        }
        Ok(Wake::One)
    }

    fn drop_session(&mut self, session: u64) -> bool {
        if self.holder == Some(session) {
            self.holder = None;
            return true;
        }
        false
    }

    fn available(&self) -> u64 {
        self.holder.is_none() as u64
    }
}

/// A reentrant lock's rule: the owning thread and its depth; only the
/// owner releases.
#[derive(Default)]
pub(crate) struct Reentrant {
    owner: Option<u64>,
    /// The owner's session.
    session: u64,
    count: u64,
}

impl Permits for Reentrant {
    fn try_take(&mut self, caller: u64, session: u64) -> bool {
        match self.owner {
            None => {
                self.owner = Some(caller);
                self.session = session;
                self.count = 1;
                true
            }
            Some(c) if c == caller => {
                self.count += 1;
                true
            }
            Some(_) => false,
        }
    }

    fn give(&mut self, caller: u64, n: u64) -> Result<Wake> {
        once(n)?;
        if self.owner != Some(caller) {
            return Err(Error::NotOwner);
        }
        self.count -= 1;
        if self.count == 0 {
            self.owner = None;
        }
        Ok(Wake::All)
    }

    fn drop_session(&mut self, session: u64) -> bool {
        if self.owner.is_some() && self.session == session {
            self.owner = None;
            self.count = 0;
            return true;
        }
        false
    }

    fn available(&self) -> u64 {
        self.owner.is_none() as u64
    }
}

/// A semaphore's rule: a count, and for a bounded one the most it may
/// reach. No owner.
pub(crate) struct Counting {
    value: u64,
    bound: Option<u64>,
}

impl Permits for Counting {
    fn try_take(&mut self, _caller: u64, _session: u64) -> bool {
        if self.value == 0 {
            return false;
        }
        self.value -= 1;
        true
    }

    fn give(&mut self, _caller: u64, n: u64) -> Result<Wake> {
        let new = self.value.saturating_add(n);
        if self.bound.is_some_and(|b| new > b) {
            return Err(Error::ReleasedTooManyTimes);
        }
        self.value = new;
        Ok(Wake::Some(n))
    }

    fn drop_session(&mut self, _session: u64) -> bool {
        false
    }

    fn available(&self) -> u64 {
        self.value
    }
}

/// A lock (`"lock"`).
pub(crate) type LockObj = Blocking<Exclusive>;
/// A reentrant lock (`"rlock"`).
pub(crate) type RLockObj = Blocking<Reentrant>;
/// A semaphore, bounded or not (`"semaphore"`).
pub(crate) type SemaphoreObj = Blocking<Counting>;

impl LockObj {
    pub(crate) fn make() -> LockObj {
        Blocking::new(Exclusive::default())
    }
}

impl RLockObj {
    pub(crate) fn make() -> RLockObj {
        Blocking::new(Reentrant::default())
    }
}

impl SemaphoreObj {
    /// From an encoded `(value, bounded)`.
    pub(crate) fn make(init: &[u8]) -> Result<SemaphoreObj> {
        let (value, bounded): (u64, bool) = dec_args(init)?;
        Ok(Blocking::new(Counting {
            value,
            bound: bounded.then_some(value),
        }))
    }
}

// ---------------------------------------------------------------- condition

/// An operation on a condition variable with its own reentrant lock.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConditionOp {
    /// An operation on its lock.
    Lock(BlockingOp),
    /// Releases the lock (which the caller must hold), waits for a
    /// notification at most this long, and takes the lock back at the same
    /// depth. Answer: whether it was notified.
    Wait(Option<Duration>),
    /// Wakes up to this many waiters (the caller must hold the lock).
    /// Answer: unit.
    Notify(u64),
    /// Wakes every waiter (the caller must hold the lock). Answer: unit.
    NotifyAll,
}

/// A condition's state: its lock, and the tickets of its waiters.
#[derive(Default)]
pub(crate) struct CondState {
    lock: Reentrant,
    next_ticket: u64,
    waiting: VecDeque<u64>,
    woken: Vec<u64>,
}

impl Permits for CondState {
    fn try_take(&mut self, caller: u64, session: u64) -> bool {
        self.lock.try_take(caller, session)
    }
    fn give(&mut self, caller: u64, n: u64) -> Result<Wake> {
        self.lock.give(caller, n)
    }
    fn drop_session(&mut self, session: u64) -> bool {
        self.lock.drop_session(session)
    }
    fn available(&self) -> u64 {
        self.lock.available()
    }
}

/// A condition variable with its own reentrant lock (Python's manager
/// `Condition()`, whose default lock is an `RLock`): the lock is the
/// generic blocking object, the waiters wait on a second condition
/// variable.
pub(crate) struct ConditionObj {
    lock: Blocking<CondState>,
    cond_cv: Condvar,
}

impl ConditionObj {
    pub(crate) fn make() -> ConditionObj {
        ConditionObj {
            lock: Blocking::new(CondState::default()),
            cond_cv: Condvar::new(),
        }
    }

    /// The session ended: the lock is freed if it held it.
    pub(crate) fn session_ended(&self, session: u64) {
        self.lock.session_ended(session);
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: ConditionOp, cx: &Cx<'_>) -> Result<Answer> {
        let timeout = match op {
            ConditionOp::Lock(op) => return self.lock.call(op, cx),
            ConditionOp::Wait(timeout) => timeout,
            ConditionOp::Notify(n) => {
                let mut s = self.owned(cx)?;
                for _ in 0..n {
                    let Some(t) = s.waiting.pop_front() else {
                        break;
                    };
                    s.woken.push(t);
                }
                self.cond_cv.notify_all();
                return Ok(Answer::Unit);
            }
            ConditionOp::NotifyAll => {
                let mut s = self.owned(cx)?;
                let all: Vec<u64> = s.waiting.drain(..).collect();
                s.woken.extend(all);
                self.cond_cv.notify_all();
                return Ok(Answer::Unit);
            }
        };
        let mut s = self.owned(cx)?;
        // Release the lock entirely, wait for a notification, then take the
        // lock back at the same depth.
        let depth = s.lock.count;
        s.lock.owner = None;
        s.lock.count = 0;
        self.lock.cv.notify_all();
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        s.waiting.push_back(ticket);
        let d = deadline(true, timeout);
        let mut notified = false;
        let mut failure = None;
        loop {
            if let Some(i) = s.woken.iter().position(|&t| t == ticket) {
                s.woken.swap_remove(i);
                notified = true;
                break;
            }
            match cx.wait(&self.cond_cv, &mut s, d) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if !notified {
            s.waiting.retain(|&t| t != ticket);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        self.lock.acquire_locked(&mut s, true, None, cx)?;
        s.lock.count = depth;
        Ok(Answer::Bool(notified))
    }

    /// The state, if the caller holds the lock ([`Error::NotOwner`] if not).
    fn owned(&self, cx: &Cx<'_>) -> Result<MutexGuard<'_, CondState>> {
        let s = self.lock.state.lock();
        if s.lock.owner != Some(cx.caller) {
            return Err(Error::NotOwner);
        }
        Ok(s)
    }
}

// ---------------------------------------------------------------- event, barrier

/// An operation on an event.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventOp {
    /// Sets the flag, waking every waiter. Answer: unit.
    Set,
    /// Clears the flag. Answer: unit.
    Clear,
    /// Answer: whether the flag is set.
    IsSet,
    /// Waits at most this long for the flag. Answer: whether it is set.
    Wait(Option<Duration>),
}

/// An event.
pub(crate) struct EventObj {
    set: Mutex<bool>,
    cv: Condvar,
}

impl EventObj {
    pub(crate) fn make() -> EventObj {
        EventObj {
            set: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: EventOp, cx: &Cx<'_>) -> Result<Answer> {
        let mut s = self.set.lock();
        Ok(match op {
            EventOp::Set => {
                *s = true;
                self.cv.notify_all();
                Answer::Unit
            }
            EventOp::Clear => {
                *s = false;
                Answer::Unit
            }
            EventOp::IsSet => Answer::Bool(*s),
            EventOp::Wait(timeout) => {
                let d = deadline(true, timeout);
                while !*s {
                    if !cx.wait(&self.cv, &mut s, d)? {
                        return Ok(Answer::Bool(false));
                    }
                }
                Answer::Bool(true)
            }
        })
    }
}

/// An operation on a barrier.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BarrierOp {
    /// Waits until all parties wait, at most this long (a timeout breaks
    /// the barrier for everyone, as in Python; [`Error::BrokenBarrier`]).
    /// Answer: the caller's arrival index.
    Wait(Option<Duration>),
    /// Breaks the barrier. Answer: unit.
    Abort,
    /// Back to the initial state; current waiters fail. Answer: unit.
    Reset,
    /// Answer: how many parties it waits for.
    Parties,
    /// Answer: how many wait now.
    NWaiting,
    /// Answer: whether it is broken.
    Broken,
}

struct BarrierState {
    count: u64,
    generation: u64,
    broken: bool,
    /// Generations that a reset ended while parties waited.
    reset_generations: HashSet<u64>,
}

/// A barrier.
pub(crate) struct BarrierObj {
    parties: u64,
    state: Mutex<BarrierState>,
    cv: Condvar,
}

impl BarrierObj {
    /// From an encoded number of parties (at least one).
    pub(crate) fn make(init: &[u8]) -> Result<BarrierObj> {
        let parties: u64 = dec_args(init)?;
        if parties == 0 {
            return Err(remote(K::Value, "a barrier needs at least one party"));
        }
        Ok(BarrierObj {
            parties,
            state: Mutex::new(BarrierState {
                count: 0,
                generation: 0,
                broken: false,
                reset_generations: HashSet::new(),
            }),
            cv: Condvar::new(),
        })
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: BarrierOp, cx: &Cx<'_>) -> Result<Answer> {
        let mut s = self.state.lock();
        Ok(match op {
            BarrierOp::Wait(timeout) => {
                if s.broken {
                    return Err(Error::BrokenBarrier);
                }
                let index = s.count;
                s.count += 1;
                if s.count == self.parties {
                    s.count = 0;
                    s.generation += 1;
                    self.cv.notify_all();
                    return Ok(Answer::Count(index));
                }
                let generation = s.generation;
                let d = deadline(true, timeout);
                loop {
                    if s.generation != generation {
                        if s.reset_generations.remove(&generation) {
                            return Err(Error::BrokenBarrier);
                        }
                        return Ok(Answer::Count(index));
                    }
                    if s.broken {
                        s.count = s.count.saturating_sub(1);
                        return Err(Error::BrokenBarrier);
                    }
                    let woke = cx.wait(&self.cv, &mut s, d);
                    if !matches!(woke, Ok(true)) && s.generation == generation {
                        // A timeout (or a waiter that left) breaks the
                        // barrier for everyone, as in Python.
                        s.broken = true;
                        s.count = s.count.saturating_sub(1);
                        self.cv.notify_all();
                        woke?;
                        return Err(Error::BrokenBarrier);
                    }
                }
            }
            BarrierOp::Abort => {
                s.broken = true;
                self.cv.notify_all();
                Answer::Unit
            }
            BarrierOp::Reset => {
                if s.count > 0 {
                    let g = s.generation;
                    s.reset_generations.insert(g);
                    s.generation += 1;
                    s.count = 0;
                }
                s.broken = false;
                self.cv.notify_all();
                Answer::Unit
            }
            BarrierOp::Parties => Answer::Count(self.parties),
            BarrierOp::NWaiting => Answer::Count(s.count),
            BarrierOp::Broken => Answer::Bool(s.broken),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 1 << 32 | 1;
    const B: u64 = 2 << 32 | 1;

    #[test]
    fn a_lock_has_one_holder_that_anyone_releases_and_its_session_frees() {
        let mut l = Exclusive::default();
        assert!(l.try_take(A, 1));
        assert!(!l.try_take(A, 1), "not reentrant");
        assert_eq!(l.available(), 0);
        assert_eq!(l.give(B, 1).unwrap(), Wake::One);
        assert!(matches!(l.give(B, 1), Err(Error::NotOwner)));
        assert!(l.give(A, 2).is_err());
        assert!(l.try_take(B, 2));
        assert!(!l.drop_session(1));
        assert!(l.drop_session(2));
        assert_eq!(l.available(), 1);
    }

    #[test]
    fn a_reentrant_lock_counts_its_owners_depth() {
        let mut l = Reentrant::default();
        assert!(l.try_take(A, 1));
        assert!(l.try_take(A, 1));
        assert!(!l.try_take(B, 2));
        assert!(matches!(l.give(B, 1), Err(Error::NotOwner)));
        l.give(A, 1).unwrap();
        assert_eq!(l.available(), 0);
        l.give(A, 1).unwrap();
        assert_eq!(l.available(), 1);
        assert!(l.try_take(B, 2));
        assert!(l.try_take(B, 2));
        assert!(!l.drop_session(1));
        assert!(l.drop_session(2), "a dead owner's depth goes at once");
        assert!(l.try_take(A, 1));
    }

    #[test]
    fn a_semaphore_counts_without_owners_and_keeps_its_count_past_sessions() {
        let mut s = Counting {
            value: 1,
            bound: Some(2),
        };
        assert!(s.try_take(A, 1));
        assert!(!s.try_take(B, 2));
        assert!(!s.drop_session(1));
        assert_eq!(s.available(), 0);
        assert_eq!(s.give(B, 2).unwrap(), Wake::Some(2));
        assert!(matches!(s.give(B, 1), Err(Error::ReleasedTooManyTimes)));
        assert_eq!(s.available(), 2);
        let mut unbounded = Counting {
            value: u64::MAX,
            bound: None,
        };
        unbounded.give(A, 5).unwrap();
        assert_eq!(unbounded.available(), u64::MAX);
    }
}
