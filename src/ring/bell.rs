//! How a ring's sleepers are woken without losing a wake-up.
//!
//! A side that finds nothing to do (a reader with no bytes, a writer with
//! no room) spins for a while ([`wait`](crate::sync::wait)), then must
//! sleep. The other side publishes (a store of its counter) and must then
//! wake it, but only when someone sleeps: a busy ring should make no system
//! call. Both orders of "sleeper registers, then looks again" and
//! "publisher publishes, then looks for sleepers" must end with one of them
//! seeing the other: the sleeper sees the publication and does not sleep,
//! or the publisher sees the sleeper and rings. Two handshakes do that here:
//!
//! - **A flag or a count with fences** ([`register`] and [`sleepers_after`]):
//!   the sleeper stores its mark, then a `SeqCst` fence, then looks at the
//!   counter; the publisher stores its counter, then a `SeqCst` fence, then
//!   looks at the mark. Two fences order the two store/load pairs, so the
//!   two loads cannot both miss (the store-buffering pattern). The pipe uses
//!   this for its reader (`rx_armed`, a flag the ringer takes back) and its
//!   writer waiting for room (`tx_waiting`, a count of sleepers).
//! - **Bits in a lock word** ([`arm`] and [`release`]): when every
//!   publication is made under a lock, the release of that lock (a swap of
//!   its word, which a lock needs anyway) is the publisher's look: the
//!   sleeper sets its bit in the word with a read-modify-write, then looks
//!   again. The two read-modify-writes of one word are ordered: if the
//!   sleeper's comes first the swap returns the bit and the releaser rings;
//!   if the swap comes first, the sleeper's `fetch_or` (Acquire) reads from
//!   it (Release), so the published counter is visible to its next look. No
//!   fence at all on the publisher's path. The queue uses this (its side
//!   locks; when a side lock is kept biased, the owner releases nothing and
//!   a barrier on the sleeper's side takes the swap's place, see
//!   `ring::bias`).
//!
//! The sleep itself is a futex wait on a sequence word ([`ring`] bumps it
//! and wakes every sleeper: the one place where a ring's sleepers are
//! woken) or, for a pipe reader's longer waits and waits from outside a
//! receive, a `poll` on its socket (each kind of pipe sleeper has its own
//! flag, and one publication looks at both). A sleeper loads
//! the sequence *before* it registers, so a ring after the registration
//! always changes the word it sleeps on. A sleeper killed while registered
//! leaves its mark set, which costs the next publisher one needless ring.
//!
//! Both handshakes are written once, generic over the atomic word
//! ([`Word`]), so the model checker runs this very code: `cargo test` with
//! `RUSTFLAGS="--cfg loom"` explores every interleaving (and every allowed
//! reordering of the memory model) of a publisher and a sleeper, and
//! checks that a sleeper that decided to sleep is always rung.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::futex;

/// The atomic operations the handshakes use, on a 32-bit word: the
/// standard atomic here, the model checker's in its tests.
pub(crate) trait Word {
    fn load(&self, o: Ordering) -> u32;
    fn store(&self, v: u32, o: Ordering);
    fn swap(&self, v: u32, o: Ordering) -> u32;
    #[cfg_attr(not(feature = "queue"), allow(dead_code))]
    fn fetch_or(&self, v: u32, o: Ordering) -> u32;
    fn fetch_add(&self, v: u32, o: Ordering) -> u32;
    fn fetch_sub(&self, v: u32, o: Ordering) -> u32;
    /// A fence of the same memory model as the word.
    fn fence(o: Ordering);
}

impl Word for AtomicU32 {
    #[inline(always)]
    fn load(&self, o: Ordering) -> u32 {
        AtomicU32::load(self, o)
    }
    #[inline(always)]
    fn store(&self, v: u32, o: Ordering) {
        AtomicU32::store(self, v, o)
    }
    #[inline(always)]
    fn swap(&self, v: u32, o: Ordering) -> u32 {
        AtomicU32::swap(self, v, o)
    }
    #[inline(always)]
    fn fetch_or(&self, v: u32, o: Ordering) -> u32 {
        AtomicU32::fetch_or(self, v, o)
    }
    #[inline(always)]
    fn fetch_add(&self, v: u32, o: Ordering) -> u32 {
        AtomicU32::fetch_add(self, v, o)
    }
    #[inline(always)]
    fn fetch_sub(&self, v: u32, o: Ordering) -> u32 {
        AtomicU32::fetch_sub(self, v, o)
    }
    #[inline(always)]
    fn fence(o: Ordering) {
        std::sync::atomic::fence(o)
    }
}

/// How a sleeper marks itself in a flag-or-count handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// Sets the flag to 1 (one kind of sleeper; the ringer takes it back).
    Flag,
    /// Adds one to a count of sleepers (the sleeper takes itself off with
    /// [`unregister`]).
    Count,
}

/// A sleeper's half of the flag-or-count handshake: marks `word`, then a
/// `SeqCst` fence. The caller then looks at the state once more and sleeps
/// only if nothing was published.
#[inline]
pub(crate) fn register<W: Word>(word: &W, mark: Mark) {
    match mark {
        Mark::Flag => word.store(1, Ordering::SeqCst),
        Mark::Count => {
            word.fetch_add(1, Ordering::SeqCst);
        }
    }
    W::fence(Ordering::SeqCst);
}

/// Takes a counted sleeper off again, once it woke (or did not sleep).
#[inline]
pub(crate) fn unregister<W: Word>(word: &W) {
    word.fetch_sub(1, Ordering::SeqCst);
}

/// The publisher's half, after its counter's store: a `SeqCst` fence, then
/// whether someone registered and must be rung. A flag is taken back (one
/// ring per registration); a count is left to the sleepers.
#[inline]
pub(crate) fn sleepers_after<W: Word>(word: &W, mark: Mark) -> bool {
    W::fence(Ordering::SeqCst);
    if word.load(Ordering::Relaxed) == 0 {
        return false;
    }
    match mark {
        Mark::Flag => word.swap(0, Ordering::AcqRel) != 0,
        Mark::Count => true,
    }
}

/// A sleeper's half of the lock-word handshake: asks the next releaser of
/// the lock whose word this is to ring `bit`'s bell. The caller then looks
/// at the state once more. Returns the word as it was (a biased lock's
/// waiter then needs a barrier, see [`bias`](super::bias)).
#[inline]
#[cfg_attr(not(feature = "queue"), allow(dead_code))]
pub(crate) fn arm<W: Word>(lock_word: &W, bit: u32) -> u32 {
    lock_word.fetch_or(bit, Ordering::AcqRel)
}

/// The releaser's half: releases the lock (the word becomes 0) and returns
/// the word it held, whose bell bits the caller rings.
///
/// # Safety
///
/// The calling thread holds the lock (the word names it): releasing a lock
/// held by another thread breaks that thread's critical section.
#[inline]
#[cfg_attr(not(feature = "queue"), allow(dead_code))]
pub(crate) unsafe fn release<W: Word>(lock_word: &W) -> u32 {
    lock_word.swap(0, Ordering::AcqRel)
}

/// Rings a bell: a new value of the sequence word `seq`, and every thread
/// sleeping on it woken; returns how many were (the pipe's writer takes
/// none for a hint that its sleeping reader may be dead). Every wake-up of
/// a ring's sleepers on a futex goes through here.
pub(crate) fn ring(seq: &AtomicU32) -> usize {
    seq.fetch_add(1, Ordering::AcqRel);
    futex::wake_all(seq)
}

/// The handshakes under the model checker (see the module documentation):
/// `RUSTFLAGS="--cfg loom" cargo test --lib --target-dir target/loom ring::bell`
/// (a target directory of its own: the flag rebuilds every dependency).
#[cfg(all(test, loom))]
mod model {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicU32 as LoomU32, AtomicU64};
    use loom::thread;

    impl Word for LoomU32 {
        fn load(&self, o: Ordering) -> u32 {
            LoomU32::load(self, o)
        }
        fn store(&self, v: u32, o: Ordering) {
            LoomU32::store(self, v, o)
        }
        fn swap(&self, v: u32, o: Ordering) -> u32 {
            LoomU32::swap(self, v, o)
        }
        fn fetch_or(&self, v: u32, o: Ordering) -> u32 {
            LoomU32::fetch_or(self, v, o)
        }
        fn fetch_add(&self, v: u32, o: Ordering) -> u32 {
            LoomU32::fetch_add(self, v, o)
        }
        fn fetch_sub(&self, v: u32, o: Ordering) -> u32 {
            LoomU32::fetch_sub(self, v, o)
        }
        fn fence(o: Ordering) {
            loom::sync::atomic::fence(o)
        }
    }

    /// A ring's shared words, as the model sees them.
    #[derive(Default)]
    struct Ring {
        /// The publisher's counter (tail, or head for a writer's room).
        counter: AtomicU64,
        /// The sleepers' mark (a flag, a count, or a lock word's bits).
        mark: LoomU32,
        /// The sequence word sleepers sleep on.
        seq: LoomU32,
    }

    impl Ring {
        fn ring(&self) {
            // As `super::ring`, without the futex: the bump is what a
            // sleeper's futex wait compares against.
            self.seq.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The end of one execution: the sleeper either saw the publication,
    /// or decided to sleep on `seq` with value `v` and must find `seq`
    /// moved on (its futex wait returns at once or is woken).
    fn check(r: &Ring, slept_on: Option<u32>) {
        if let Some(v) = slept_on {
            assert_ne!(r.seq.load(Ordering::Acquire), v, "a lost wake-up");
        }
    }

    fn flag_or_count(mark: Mark) {
        loom::model(move || {
            let r = Arc::new(Ring::default());
            let p = {
                let r = r.clone();
                thread::spawn(move || {
                    r.counter.store(1, Ordering::Release);
                    if sleepers_after(&r.mark, mark) {
                        r.ring();
                    }
                })
            };
            let v = r.seq.load(Ordering::Acquire);
            register(&r.mark, mark);
            let slept_on = (r.counter.load(Ordering::Acquire) == 0).then_some(v);
            p.join().unwrap();
            check(&r, slept_on);
            if mark == Mark::Count {
                unregister(&r.mark);
            }
        });
    }

    #[test]
    fn a_flag_sleeper_is_always_rung() {
        flag_or_count(Mark::Flag);
    }

    #[test]
    fn a_counted_sleeper_is_always_rung() {
        flag_or_count(Mark::Count);
    }

    #[test]
    fn two_flag_sleepers_in_turn_are_both_rung() {
        // The pipe's reader sleeps again after a ring: a second
        // registration against a second publication.
        loom::model(|| {
            let r = Arc::new(Ring::default());
            let p = {
                let r = r.clone();
                thread::spawn(move || {
                    for n in 1..=2 {
                        r.counter.store(n, Ordering::Release);
                        if sleepers_after(&r.mark, Mark::Flag) {
                            r.ring();
                        }
                    }
                })
            };
            for want in 1..=2 {
                let v = r.seq.load(Ordering::Acquire);
                register(&r.mark, Mark::Flag);
                if r.counter.load(Ordering::Acquire) < want {
                    // Asleep until the sequence moves (the model's futex).
                    while r.seq.load(Ordering::Acquire) == v {
                        thread::yield_now();
                    }
                }
            }
            p.join().unwrap();
        });
    }

    /// The pipe's reader has two kinds of sleepers, each with its flag (a
    /// futex sleeper in a receive, a waiter on the socket): one
    /// publication looks at both, and neither is lost.
    #[test]
    fn both_kinds_of_flag_sleepers_are_rung_by_one_publication() {
        loom::model(|| {
            let futex = Arc::new(Ring::default());
            let socket = Arc::new(Ring::default());
            let p = {
                let (f, s) = (futex.clone(), socket.clone());
                thread::spawn(move || {
                    f.counter.store(1, Ordering::Release);
                    let ring_f = sleepers_after(&f.mark, Mark::Flag);
                    let ring_s = sleepers_after(&s.mark, Mark::Flag);
                    if ring_f {
                        f.ring();
                    }
                    if ring_s {
                        s.ring();
                    }
                })
            };
            let w = {
                let (f, s) = (futex.clone(), socket.clone());
                thread::spawn(move || {
                    let v = s.seq.load(Ordering::Acquire);
                    register(&s.mark, Mark::Flag);
                    let slept_on = (f.counter.load(Ordering::Acquire) == 0).then_some(v);
                    (slept_on, s)
                })
            };
            let v = futex.seq.load(Ordering::Acquire);
            register(&futex.mark, Mark::Flag);
            let slept_on = (futex.counter.load(Ordering::Acquire) == 0).then_some(v);
            p.join().unwrap();
            let (their_sleep, s) = w.join().unwrap();
            check(&futex, slept_on);
            check(&s, their_sleep);
        });
    }

    /// A closing end bumps the shared count of hang-ups, then rings the
    /// sequence word unconditionally; a sleeper loads the sequence, then
    /// looks at the count (and at the data): it never sleeps through a
    /// close it did not see.
    #[test]
    fn a_close_is_never_slept_through() {
        loom::model(|| {
            let r = Arc::new(Ring::default());
            let hangups = Arc::new(AtomicU64::new(0));
            let c = {
                let (r, h) = (r.clone(), hangups.clone());
                thread::spawn(move || {
                    h.fetch_add(1, Ordering::SeqCst);
                    r.ring();
                })
            };
            let v = r.seq.load(Ordering::SeqCst);
            register(&r.mark, Mark::Flag);
            let quiet =
                hangups.load(Ordering::SeqCst) == 0 && r.counter.load(Ordering::Acquire) == 0;
            let slept_on = quiet.then_some(v);
            c.join().unwrap();
            check(&r, slept_on);
        });
    }

    /// The lock-word handshake: the publisher takes the lock, stores its
    /// counter, releases and rings the bits it found.
    #[test]
    fn a_lock_bit_sleeper_is_always_rung() {
        const BIT: u32 = 1 << 30;
        const ME: u32 = 7;
        loom::model(|| {
            let r = Arc::new(Ring::default());
            let p = {
                let r = r.clone();
                thread::spawn(move || {
                    // Acquire: only the tid part must be free; the bell bits
                    // are kept (as the queue's side lock does).
                    loop {
                        let w = r.mark.load(Ordering::Relaxed);
                        if r.mark_cas(w, w | ME) {
                            break;
                        }
                        thread::yield_now();
                    }
                    r.counter.store(1, Ordering::Release);
                    // SAFETY: this thread holds the lock (taken above).
                    if unsafe { release(&r.mark) } & BIT != 0 {
                        r.ring();
                    }
                })
            };
            let v = r.seq.load(Ordering::Acquire);
            arm(&r.mark, BIT);
            let slept_on = (r.counter.load(Ordering::Acquire) == 0).then_some(v);
            p.join().unwrap();
            check(&r, slept_on);
        });
    }

    /// The model has teeth here too: a release made of a load and a store
    /// (instead of one swap) lets an arm fall between them.
    #[test]
    #[should_panic(expected = "a lost wake-up")]
    fn a_release_without_a_swap_loses_a_wake_up() {
        const BIT: u32 = 1 << 30;
        const ME: u32 = 7;
        loom::model(|| {
            let r = Arc::new(Ring::default());
            let p = {
                let r = r.clone();
                thread::spawn(move || {
                    loop {
                        let w = r.mark.load(Ordering::Relaxed);
                        if r.mark_cas(w, w | ME) {
                            break;
                        }
                        thread::yield_now();
                    }
                    r.counter.store(1, Ordering::Release);
                    let old = r.mark.load(Ordering::Acquire);
                    r.mark.store(0, Ordering::Release);
                    if old & BIT != 0 {
                        r.ring();
                    }
                })
            };
            let v = r.seq.load(Ordering::Acquire);
            arm(&r.mark, BIT);
            let slept_on = (r.counter.load(Ordering::Acquire) == 0).then_some(v);
            p.join().unwrap();
            check(&r, slept_on);
        });
    }

    impl Ring {
        fn mark_cas(&self, from: u32, to: u32) -> bool {
            self.mark
                .compare_exchange(from, to, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }
    }

    /// The model has teeth: without the publisher's fence, the same code
    /// loses a wake-up in some execution.
    #[test]
    #[should_panic(expected = "a lost wake-up")]
    fn without_the_fence_a_wake_up_is_lost() {
        loom::model(|| {
            let r = Arc::new(Ring::default());
            let p = {
                let r = r.clone();
                thread::spawn(move || {
                    r.counter.store(1, Ordering::Release);
                    if r.mark.load(Ordering::Relaxed) != 0 {
                        r.ring();
                    }
                })
            };
            let v = r.seq.load(Ordering::Acquire);
            register(&r.mark, Mark::Flag);
            let slept_on = (r.counter.load(Ordering::Acquire) == 0).then_some(v);
            p.join().unwrap();
            check(&r, slept_on);
        });
    }
}
