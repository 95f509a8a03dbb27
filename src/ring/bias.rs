//! A lock kept by the thread that keeps taking it: the queue's side locks
//! ([`records`](super::records)) in the common case of one producer and
//! one consumer.
//!
//! A locked instruction costs about 20 ns on the machines this crate was
//! measured on, and a side lock took two per operation (the
//! compare-and-swap that acquires, the swap that releases): most of a
//! small put or get. A thread that took its side's lock many times in a
//! row without meeting anyone releases it *biased* instead: the word keeps
//! its thread id and [`BIASED`], and its next operations enter and leave
//! with plain loads and stores ([`enter`], [`exit`]). Anyone else who wants
//! the lock revokes the bias first ([`mark`], then waits for the owner's
//! `busy` flag to read 0, then [`take`]), and from then on the lock is an
//! ordinary one again, until a new streak.
//!
//! # The words
//!
//! The lock word holds the owner's thread id in [`OWNER`] (Linux thread
//! ids stay below 2^22), [`BIASED`], [`REVOKE`] (someone waits to take the
//! bias away), the owner's [`Slot`] ([`SLOT`]), the waiters' bell bits ([`BELLS`], see [`bell`](super::bell))
//! and the robust lock's `CONTENDED` bit. The `busy` flag of the owner's
//! slot is 1 while it is inside an operation; only that slot's thread
//! writes it (see [`Slot`] for why a flag per lock would not do).
//!
//! # Asymmetric fences
//!
//! The owner's two orderings "store `busy`, then load the word" (entry)
//! and "publish the operation, store `busy` = 0, then load the word"
//! (exit) are store-then-load: only a full fence orders them, and a full
//! fence is what costs 20 ns. The owner uses a compiler fence only
//! ([`Asym::light`]); the rare party that must be ordered against it (a
//! revoker, a waiter arming a bell in a biased word) calls
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` ([`Asym::heavy`],
//! [`crate::sys::membarrier`]), which makes every running thread of every
//! registered process execute a full barrier before it returns (a thread
//! not running passes one in the scheduler). A compiler fence on one side
//! and that barrier on the other together act as two `SeqCst` fences: the
//! standard equivalence, and how the model below checks the protocol
//! (both are `SeqCst` fences there). A process registers before any of
//! its threads takes a bias, so every possible owner is reached.
//!
//! # Why mutual exclusion holds
//!
//! The owner enters with `busy = 1; light fence; load word` and goes on
//! only if the word still names it biased, with no [`REVOKE`]. A revoker
//! sets [`REVOKE`] with a read-modify-write, then `heavy`, then loads
//! `busy`. This is the store-buffering pattern with a fence on each side:
//! either the owner's load sees [`REVOKE`] (it leaves, `busy = 0`, and
//! takes the slow path), or the revoker's load sees `busy = 1` (or a later
//! value) and waits for 0, which the owner stores (`Release`) only after
//! the operation. An operation of the owner that entered after the
//! revoker's barrier sees [`REVOKE`]; one that entered before it is over
//! once the revoker reads 0 (a 0 stored before that operation's 1 comes
//! earlier in `busy`'s modification order than what the revoker must read).
//! The revoker then takes the lock with one compare-and-swap from the
//! biased, revoked word to its own id: an ordinary hold, so the owner's
//! later entries fail and it takes the lock the ordinary way. Two
//! revokers race on that one compare-and-swap.
//!
//! # Why no wake-up is lost
//!
//! A waiter arms its bell with a read-modify-write of the word, which
//! returns the word as it was. If the word was not biased, the bell
//! handshake is the ordinary one (the holder's release, a swap or the
//! compare-and-swap that biases it, returns the bit). If it was biased,
//! the waiter calls `heavy` before its last look at the state: the owner's
//! exit is "publish; `busy = 0`; light fence; load word", so again one of
//! the two sees the other: the waiter sees the publication, or the owner
//! sees the bit, clears it (a read-modify-write, on this rare path only)
//! and rings. A revoker that sleeps on `busy` is woken the same way: the
//! owner's exit that sees [`REVOKE`] wakes `busy`'s sleepers, and a
//! revoker that armed after that exit's load sees `busy = 0` after its
//! barrier.
//!
//! # Dead owners and hostile bytes
//!
//! A biased owner that dies between operations leaves `busy = 0`: a
//! revoker takes over at once. One that dies inside an operation leaves
//! `busy = 1`; the revoker, after a slice of sleep, finds the thread dead
//! and takes over as the robust lock does, and the queue's one-store
//! commits mean that nothing is to mend: the dead lose what a dead holder
//! loses. Every word here can be written by any process mapping the
//! queue: a garbled word makes the owner's checks fail (it takes the slow
//! path) or names a thread that is not there (taken over), and a `busy`
//! stuck at 1 with a live owner only makes a revoker wait until its
//! deadline, as a live holder of an ordinary lock would. No word is used
//! for anything but these comparisons.

use std::sync::atomic::{AtomicU32, Ordering};

use super::bell::Word;

/// The owner's thread id.
pub(crate) const OWNER: u32 = (1 << 22) - 1;
/// The owner keeps the lock between operations.
pub(crate) const BIASED: u32 = 1 << 28;
/// Someone waits to take a biased lock over.
pub(crate) const REVOKE: u32 = 1 << 27;
/// The waiters' bell bits (the queue's `GETTERS` and `PUTTERS`).
pub(crate) const BELLS: u32 = (1 << 30) | (1 << 29);
/// Someone sleeps on the word for the lock (the robust lock's bit).
pub(crate) const CONTENDED: u32 = 1 << 31;

/// The two halves of an asymmetric fence (see the module documentation).
pub(crate) trait Asym: Word + Wake {
    /// The owner's half: orders only the compiler.
    fn light();
    /// The other party's half: a barrier on every running thread of every
    /// registered process. False if it could not be issued.
    fn heavy() -> bool;
    fn compare_exchange(&self, from: u32, to: u32, ok: Ordering, err: Ordering)
    -> Result<u32, u32>;
    fn fetch_and(&self, v: u32, o: Ordering) -> u32;
}

impl Asym for AtomicU32 {
    #[inline(always)]
    fn light() {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }
    fn heavy() -> bool {
        crate::sys::membarrier::barrier()
    }
    #[inline(always)]
    fn compare_exchange(
        &self,
        from: u32,
        to: u32,
        ok: Ordering,
        err: Ordering,
    ) -> Result<u32, u32> {
        AtomicU32::compare_exchange(self, from, to, ok, err)
    }
    #[inline(always)]
    fn fetch_and(&self, v: u32, o: Ordering) -> u32 {
        AtomicU32::fetch_and(self, v, o)
    }
}

/// Where a bias owner says it is inside an operation: a slot claimed by
/// one thread (`owner`, its thread id, taken by a compare-and-swap when it
/// first keeps the lock biased, given up only when that thread is dead),
/// and its `busy` flag, which only that thread writes.
///
/// Why one slot per thread and not one flag per lock: a thread that read
/// the word as biased to itself may be preempted before its store of
/// `busy = 1`, lose the bias meanwhile, and then store 1, see that it lost
/// the bias, and store 0: into a shared flag, that 0 would hide the new
/// owner's operation in progress from a revoker. A stale owner only ever
/// writes its own slot, which no revoker of another owner reads.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Slot<W> {
    pub(crate) owner: W,
    pub(crate) busy: W,
}

/// Slots per lock: threads that may hold one lock biased in turn (more
/// live threads than that simply never bias it).
pub(crate) const SLOTS: usize = 4;
/// Which slot the owner named in the word uses.
pub(crate) const SLOT: u32 = 3 << SLOT_SHIFT;
const SLOT_SHIFT: u32 = 25;

#[inline(always)]
fn slot_of(w: u32) -> usize {
    ((w & SLOT) >> SLOT_SHIFT) as usize
}

/// The owner's entry: true if the lock is biased to `me` and not being
/// revoked; the operation may then go on, and must end with [`exit`]. On
/// false nothing is held.
#[inline(always)]
pub(crate) fn enter<W: Asym>(word: &W, slots: &[Slot<W>; SLOTS], me: u32) -> bool {
    let w = word.load(Ordering::Relaxed) & !BELLS;
    if w & !SLOT != me | BIASED {
        return false;
    }
    let s = slot_of(w);
    let busy = &slots[s].busy;
    busy.store(1, Ordering::Relaxed);
    W::light();
    if word.load(Ordering::Acquire) & !BELLS == w {
        return true;
    }
    if leave(word, busy) {
        wake(busy);
    }
    false
}

/// `busy = 0`, then the look at the word: whether a revoker waits (and
/// must be woken on `busy`).
#[inline(always)]
fn leave<W: Asym>(word: &W, busy: &W) -> bool {
    busy.store(0, Ordering::Release);
    W::light();
    word.load(Ordering::Relaxed) & REVOKE != 0
}

/// The owner's exit from an operation [`enter`] let in: returns the bell
/// bits found armed (cleared now; the caller rings them) and wakes a
/// revoker that waits. (The slot is read from the word again: while the
/// owner is inside, nobody changes the owner or the slot there, since a
/// revoker takes the lock only once `busy` reads 0.)
#[inline(always)]
pub(crate) fn exit<W: Asym>(word: &W, slots: &[Slot<W>; SLOTS]) -> u32 {
    let busy = &slots[slot_of(word.load(Ordering::Relaxed))].busy;
    busy.store(0, Ordering::Release);
    W::light();
    let w = word.load(Ordering::Relaxed);
    if w & (BELLS | REVOKE) == 0 {
        return 0;
    }
    exit_slow(word, busy, w)
}

#[cold]
fn exit_slow<W: Asym>(word: &W, busy: &W, w: u32) -> u32 {
    let bells = if w & BELLS != 0 {
        word.fetch_and(!BELLS, Ordering::AcqRel) & BELLS
    } else {
        0
    };
    if w & REVOKE != 0 {
        wake(busy);
    }
    bells
}

fn wake<W: Asym>(busy: &W) {
    W::wake_all(busy);
}

/// The `busy` flag a revoker of the biased word `w` waits on.
#[inline]
pub(crate) fn busy_of<W>(slots: &[Slot<W>; SLOTS], w: u32) -> &W {
    &slots[slot_of(w)].busy
}

/// How a [`mark`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marked {
    /// Revoked and fenced: wait for `busy` to read 0, then [`take`].
    Yes,
    /// The word is no longer `w`: look again.
    Changed,
    /// Marked, but the barrier could not be issued: only a dead owner may
    /// be taken over.
    NoBarrier,
}

/// A revoker's first step, on the word it loaded (`w`, biased to
/// another thread): sets [`REVOKE`], then the heavy barrier.
pub(crate) fn mark<W: Asym>(word: &W, w: u32) -> Marked {
    // (A read-modify-write even when `REVOKE` is set already: the
    // barrier below then orders a word this thread wrote.)
    if word
        .compare_exchange(w, w | REVOKE, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return Marked::Changed;
    }
    if W::heavy() {
        Marked::Yes
    } else {
        Marked::NoBarrier
    }
}

/// What a revoker compares the word with: the owner, its slot, the bias
/// bits.
const HOLD: u32 = OWNER | BIASED | REVOKE | SLOT;

/// Whether the word is still the biased word `w` (as a revoker loaded
/// it), marked revoked.
#[inline]
pub(crate) fn still_revoked<W: Asym>(word: &W, w: u32) -> bool {
    word.load(Ordering::Relaxed) & HOLD == (w & HOLD) | REVOKE
}

/// A revoker's last step, once `busy` read 0 after [`mark`] (or the owner
/// is dead): takes the lock biased as `was` (the word the revoker loaded)
/// for `me`, as an ordinary hold (the bells and `CONTENDED` kept). False
/// if the word changed meanwhile (the owner gave the bias up, or another
/// revoker took it).
pub(crate) fn take<W: Asym>(word: &W, was: u32, me: u32) -> bool {
    let want = (was & HOLD) | REVOKE;
    let mut w = word.load(Ordering::Relaxed);
    loop {
        if w & HOLD != want {
            return false;
        }
        match word.compare_exchange(
            w,
            (w & (BELLS | CONTENDED)) | me,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(now) => w = now,
        }
    }
}

/// The owner's slow path: the word names `me` biased, but [`enter`]
/// refused (a revoker waits, someone sleeps on the word, or stray bits):
/// turns the bias into an ordinary hold of `me`. False if the word
/// changed (look again).
pub(crate) fn unbias_own<W: Asym>(word: &W, me: u32) -> bool {
    let w = word.load(Ordering::Relaxed);
    w & (OWNER | BIASED) == me | BIASED
        && word
            .compare_exchange(
                w,
                (w & (BELLS | CONTENDED)) | me,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
}

/// The slot `me` owns, or one it claims: free, or owned by a thread that
/// `alive` says is dead (a dead thread stores nothing more). `None` if
/// every slot belongs to another live thread.
pub(crate) fn claim<W: Asym>(
    slots: &[Slot<W>; SLOTS],
    me: u32,
    alive: impl Fn(u32) -> bool,
) -> Option<usize> {
    if let Some(s) = slots
        .iter()
        .position(|s| s.owner.load(Ordering::Relaxed) == me)
    {
        return Some(s);
    }
    for (i, s) in slots.iter().enumerate() {
        let o = s.owner.load(Ordering::Relaxed);
        if (o == 0 || !alive(o))
            && s.owner
                .compare_exchange(o, me, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(i);
        }
    }
    None
}

/// Releases an ordinary hold of `me` by biasing the lock to `me` on its
/// slot `slot` (from [`claim`]): `Some` of the bell bits found (cleared;
/// the caller rings them), or `None` if someone sleeps on the word or a
/// revoker marked it (the caller then releases the ordinary way). The
/// caller's process is registered for the heavy barrier.
pub(crate) fn release_biased<W: Asym>(
    word: &W,
    slots: &[Slot<W>; SLOTS],
    slot: usize,
    me: u32,
) -> Option<u32> {
    let slot = slot % SLOTS;
    // (A dead owner's stale 1 goes; ordered before the word by the
    // compare-and-swap below, which any revoker reads from.)
    slots[slot].busy.store(0, Ordering::Relaxed);
    let mut w = word.load(Ordering::Relaxed);
    loop {
        if w & (CONTENDED | REVOKE | BIASED) != 0 || w & OWNER != me {
            return None;
        }
        let biased = me | BIASED | ((slot as u32) << SLOT_SHIFT);
        match word.compare_exchange(w, biased, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return Some(w & BELLS),
            Err(now) => w = now,
        }
    }
}

/// A waiter's half (see "Why no wake-up is lost"): after arming its bit
/// with a read-modify-write that returned `old`, the barrier that a biased
/// owner's light fence needs. False if the barrier could not be issued:
/// the caller must not sleep long on the publication.
#[inline]
pub(crate) fn after_arm<W: Asym>(old: u32) -> bool {
    old & BIASED == 0 || W::heavy()
}

/// Wakes every thread sleeping on a word (`busy`'s revokers).
pub(crate) trait Wake {
    fn wake_all(w: &Self);
}

impl Wake for AtomicU32 {
    fn wake_all(w: &AtomicU32) {
        crate::sys::futex::wake_all(w);
    }
}

/// The protocol under the model checker, with both halves of the
/// asymmetric fence as `SeqCst` fences (see the module documentation):
/// `RUSTFLAGS="--cfg loom" cargo test --lib --features queue --target-dir target/loom ring::bias`.
#[cfg(all(test, loom))]
mod model {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicU32 as LoomU32;
    use loom::thread;

    impl Asym for LoomU32 {
        fn light() {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
        fn heavy() -> bool {
            loom::sync::atomic::fence(Ordering::SeqCst);
            true
        }
        fn compare_exchange(
            &self,
            from: u32,
            to: u32,
            ok: Ordering,
            err: Ordering,
        ) -> Result<u32, u32> {
            LoomU32::compare_exchange(self, from, to, ok, err)
        }
        fn fetch_and(&self, v: u32, o: Ordering) -> u32 {
            LoomU32::fetch_and(self, v, o)
        }
    }

    impl Wake for LoomU32 {
        fn wake_all(_: &LoomU32) {}
    }

    const X: u32 = 5;
    const R: u32 = 9;
    const GETTERS: u32 = 1 << 30;

    struct Lock {
        word: LoomU32,
        slots: [Slot<LoomU32>; SLOTS],
        /// What the lock guards: loom reports two unordered accesses.
        data: UnsafeCell<u32>,
        /// The published counter and the bell's sequence.
        tail: LoomU32,
        seq: LoomU32,
    }

    fn biased_to_x() -> Arc<Lock> {
        Arc::new(Lock {
            word: LoomU32::new(X | BIASED),
            slots: std::array::from_fn(|i| Slot {
                owner: LoomU32::new(if i == 0 { X } else { 0 }),
                busy: LoomU32::new(0),
            }),
            data: UnsafeCell::new(0),
            tail: LoomU32::new(0),
            seq: LoomU32::new(0),
        })
    }

    /// The revoker's whole path, spinning where the crate sleeps.
    fn revoke(l: &Lock) {
        loop {
            let w = l.word.load(Ordering::Relaxed);
            // (The model's owner has no slow path: the word stays biased
            // to it until taken.)
            assert_eq!(w & (BIASED | OWNER), X | BIASED);
            match mark(&l.word, w) {
                Marked::Changed => continue,
                Marked::NoBarrier => unreachable!(),
                Marked::Yes => {}
            }
            while busy_of(&l.slots, w).load(Ordering::Acquire) != 0 {
                thread::yield_now();
            }
            if take(&l.word, w, R) {
                return;
            }
        }
    }

    /// The biased owner `X`, on a thread of its own: `times` operations,
    /// each writing the guarded data inside `enter`..`exit`.
    fn owner_writes(l: &Arc<Lock>, times: usize) -> thread::JoinHandle<()> {
        let l = l.clone();
        thread::spawn(move || {
            for _ in 0..times {
                if enter(&l.word, &l.slots, X) {
                    // SAFETY: loom checks the claim under test: the owner
                    // is alone inside `enter`..`exit` (a race is reported,
                    // not undefined).
                    l.data.with_mut(|d| unsafe { *d += 1 });
                    exit(&l.word, &l.slots);
                }
            }
        })
    }

    /// The revoker `R`: takes the lock over, then writes the guarded data.
    fn revoke_and_write(l: &Lock) {
        revoke(l);
        // SAFETY: loom checks the claim under test: the revoker holds the
        // lock now (a race with the owner is reported, not undefined).
        l.data.with_mut(|d| unsafe { *d += 10 });
    }

    /// The owner publishes once while a waiter arms its bell, issues the
    /// barrier (`barrier`) or not, and looks: panics "a lost wake-up" if
    /// the waiter would sleep through the publication.
    fn waiter_beside_the_owner(barrier: bool) {
        loom::model(move || {
            let l = biased_to_x();
            let o = {
                let l = l.clone();
                thread::spawn(move || {
                    assert!(enter(&l.word, &l.slots, X));
                    l.tail.store(1, Ordering::Release);
                    if exit(&l.word, &l.slots) & GETTERS != 0 {
                        l.seq.fetch_add(1, Ordering::AcqRel);
                    }
                })
            };
            let v = l.seq.load(Ordering::Acquire);
            let old = crate::ring::bell::arm(&l.word, GETTERS);
            if barrier {
                assert!(after_arm::<LoomU32>(old));
            }
            let slept_on = (l.tail.load(Ordering::Acquire) == 0).then_some(v);
            o.join().unwrap();
            if let Some(v) = slept_on {
                assert_ne!(l.seq.load(Ordering::Acquire), v, "a lost wake-up");
            }
        });
    }

    /// A biased owner's operations and a revoker never overlap, and each
    /// sees the other's writes.
    #[test]
    fn a_revoker_never_overlaps_the_biased_owner() {
        loom::model(|| {
            let l = biased_to_x();
            let o = owner_writes(&l, 2);
            revoke_and_write(&l);
            o.join().unwrap();
        });
    }

    /// A waiter arming its bell in a biased word, then the barrier, then
    /// its last look: never sleeps through the owner's publication.
    #[test]
    fn a_waiter_on_a_biased_owner_is_always_rung() {
        waiter_beside_the_owner(true);
    }

    /// The model has teeth: a waiter that skips the barrier loses a
    /// wake-up in some execution.
    #[test]
    #[should_panic(expected = "a lost wake-up")]
    fn without_the_barrier_a_wake_up_is_lost() {
        waiter_beside_the_owner(false);
    }

    /// A thread that read the word as biased to itself long ago (`Y`, on
    /// slot `slot`) stores `busy = 1`, sees it lost the bias, and stores 0,
    /// while `X`, the owner now, works and `R` revokes it.
    fn a_stale_owner_writes(slot: usize) {
        const Y: u32 = 7;
        loom::model(move || {
            let l = biased_to_x();
            let y = {
                let l = l.clone();
                thread::spawn(move || {
                    let busy = &l.slots[slot].busy;
                    busy.store(1, Ordering::Relaxed);
                    LoomU32::light();
                    assert_ne!(l.word.load(Ordering::Acquire) & !BELLS, Y | BIASED);
                    leave(&l.word, busy);
                })
            };
            let o = owner_writes(&l, 1);
            revoke_and_write(&l);
            o.join().unwrap();
            y.join().unwrap();
        });
    }

    /// A stale owner writes only its own slot: harmless.
    #[test]
    fn a_stale_owner_on_its_own_slot_changes_nothing() {
        a_stale_owner_writes(1);
    }

    /// The model has teeth: a stale owner's 0 in the owner's flag (one
    /// flag per lock) hides the owner's operation from the revoker.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn one_flag_per_lock_lets_a_stale_owner_break_exclusion() {
        a_stale_owner_writes(0);
    }
}
