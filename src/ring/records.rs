//! The record ring under every queue (and the pool's task and result
//! queues): records of encoded items in a [byte ring](crate::ring), two
//! robust process-shared locks, and futex sequence words that waiters sleep
//! on. The ring's index arithmetic, its copies and its wake-up handshake
//! (the lock-word bells, [`bell::arm`] and [`bell::release`]) are the
//! [`ring`] module's.
//!
//! # Layout
//!
//! A [`Shared`] header (cache lines of their own for the producers' side,
//! the consumers' side, each futex word, and the settings) and a ring
//! of `cap` bytes (a power of two, at most 1 GiB; rings above 256 KiB get a
//! memfd mapping of their own). `tail` packs the number of items ever put
//! and the bytes ever written, `head` the items ever taken and the bytes
//! ever read, each half modulo 2^32; a byte counter `x` lives at
//! `x % cap`. Between head and tail lie records, each an 8-byte header
//! (`len: u32`, `tag: u32`) then `len` payload bytes padded to a multiple
//! of 8. A record may wrap around the end of the ring (two copies).
//!
//! # Locking and commit
//!
//! Two robust process-shared locks: `put_lock` serializes producers (it
//! guards `tail` and the free space), `get_lock` serializes consumers (it
//! guards `head` and the committed records), so a producer and a consumer
//! never contend, as in a two-lock queue. A producer copies its record into
//! free space, then publishes it and counts it with one `Release` store of
//! `tail`; a consumer copies a record out, then frees it and counts it with
//! one store of `head`. A process killed with either lock held therefore
//! leaves either the old or the new counter, never half a record or a wrong
//! count: an unpublished record is overwritten by the next producer, and a
//! record whose `head` was not yet advanced is still there for the next
//! consumer. The next locker, told by the robust mutex that the owner died
//! (within about 40 ms), has nothing to mend.
//!
//! A thread that keeps taking its side's lock alone (the common case of
//! one producer and one consumer) keeps it *biased* between operations,
//! and enters and leaves with plain loads and stores, with no locked
//! instruction or fence; another thread (or process) that wants the lock
//! revokes the bias first, with a `membarrier` system call. The argument
//! (mutual exclusion, no lost wake-up, dead owners) is in [`bias`]'s
//! documentation. What a killed process leaves is the same either way: a
//! biased owner killed inside an operation is taken over as a dead
//! holder is.
//!
//! Each side also keeps, under its lock, the other side's counter as it
//! last loaded it (`head_seen`, `tail_seen`): an old head only understates
//! the free room and an old tail only the committed records, so either is
//! safe to act on, and the other side's cache line is loaded only when the
//! old value falls short. A process killed at any point leaves such a value
//! old, never wrong.
//!
//! # Waiting
//!
//! A waiter spins a few microseconds, then arms its bell (`not_empty` for
//! consumers, `not_full` for producers) by setting its bit in the other
//! side's lock word (and its own side's, for a change its own side makes:
//! large items), looks at the state once more and sleeps on the bell's
//! sequence word at most [`SLICE`]. Every change a waiter waits for is made
//! under one of the two locks, and the swap that releases a lock returns
//! the bits armed meanwhile: the releaser rings those bells (bumps the
//! sequence, wakes the sleepers). A busy queue thus pays no fence and makes
//! no system call for its waiters: the release it needs anyway is the whole
//! handshake (see [`SideLock`]).
//!
//! A producer waiting for room comes back early from its spin only once a
//! sixteenth of the ring (or of `maxsize`) is free: a full ring refilled one
//! record at a time would have the producer write the cache line the
//! consumer reads, and load the consumers' head, for every item.
//!
//! # Large items
//!
//! An item whose record would be larger than a quarter of the ring goes in
//! chunks (`FIRST`, `CONT`..., `LAST` records carrying a 30-bit item id).
//! Large writers take `big_writer` for the whole item, so their chunks never
//! interleave, and while one is sending (`big_tid` names it) small writers
//! wait, so the chunks of an item are contiguous in the ring. The consumer
//! that takes the `FIRST` chunk names itself in `rx_tid` and is the only one
//! that takes the rest.
//!
//! An item streams: the writer puts each chunk as soon as there is room and
//! the receiver appends each chunk it takes to a buffer that grows with
//! them (no size is announced, so none is trusted or reserved up front).
//! Neither side ever starts an item over. A writer waits for room as long
//! as its caller lets it ([`Core::put_with`]), and gives the item up only
//! at its deadline. A receiver waits only until its deadline: past it, it
//! takes the chunks already in the ring and, if the item is still
//! incomplete, keeps what it has in its handle ([`Partial`]) and reports
//! nothing; the next get of that process, from any thread, takes over
//! `rx_tid` and goes on (a dropped handle clears `rx_tid`). Meanwhile the
//! rest of the item waits in the ring, and other consumers wait behind it.
//!
//! Dead parties are detected through their thread ids:
//! - a large writer that died (or gave up at its deadline) leaves a partial
//!   item: its receiver notices that no chunk can come any more and drops
//!   what it gathered; chunks nobody is receiving are discarded;
//! - a receiver that died leaves chunks at the head that nobody takes: the
//!   next consumer finds `rx_tid` dead and discards them.
//!
//! Liveness is checked (through `/proc`) only after a waiter slept a whole
//! [`SLICE`] without progress, so a dead party is noticed within about that.
//!
//! # Overflow
//!
//! A queue made with a spill ([`Core::new_spilling`]: the public queues of
//! `Queue::new`/`bounded`) never waits for room. The spill is a second
//! record ring of [`SPILL_CAP`] bytes (8 GiB) in a memfd made with the
//! queue and mapped by every process that holds it (inherited by fork, its
//! descriptor passed to spawned children with the ring's), so no segment is
//! ever handed over later. Its pages exist only where items are: consumers
//! give the pages they passed back to the kernel in steps of [`GRAIN`]
//! (`sp_freed`, a hole punched in the memfd), and producers never write
//! more than a spill's size past `sp_freed`, so a page is never given back
//! while being written. Its counters (`sp_tail`, `sp_head`) pack an item
//! count with the byte counter (in 8-byte units, modulo 2^34) and one flag.
//!
//! Items keep one order across both rings. A producer that finds the ring
//! without room (the ring always keeps 8 bytes for this) after spinning
//! for it at most [`JUMP_AFTER`] (consumers at work free room in a moment,
//! and the ring is faster than the spill's fresh pages), or an item too
//! large for one ring record, writes a [`JUMP`] record and sets [`MODE`] in
//! `tail`, in the one store that commits the record; from then on items go
//! to the spill, whole (up to a quarter of it). Every sixteenth spill put
//! looks at the ring, and once half of it is free writes a [`BACK`] record
//! in the spill, committed with `sp_tail`'s flag set, then clears `MODE`.
//! A consumer that takes a `JUMP` sets `MODE` in `head` and takes from the
//! spill; one that takes a `BACK` sets `sp_head`'s flag, then clears
//! `MODE`. A process killed between the two stores of a way back leaves the
//! flag set with `MODE`, which the next one of its side finishes; a flag
//! left set is cleared before the next `JUMP`. So the killed lose what
//! they lose in the ring, nothing more. Large items sent in chunks (above
//! a quarter of the spill) still go through the ring: their writer first
//! brings the producers back from the spill.
//!
//! # Untrusted bytes
//!
//! Any process that maps the queue can write anything into it. Nothing
//! read from shared memory is used before it is checked: the ring's size is
//! read once, checked against the ring's mapping and kept in the handle
//! (`Core::bytes`); every head and tail is checked to lie on the 8-byte grid
//! and at most a ring apart, and every record length to fit in a chunk and
//! in the committed bytes; the same for the spill's counters, which must
//! lie at most a spill apart, and its records. A value that fails poisons
//! the queue
//! (`Core::poison`): it is closed for good and marked corrupt, and the
//! queue's calls fail with a corruption error; nothing is copied out of
//! bounds and no buffer is made from an unchecked length.
//!
//! Nor can such a process make this one's accesses a data race: every
//! access to ring bytes here is atomic (headers and small payloads as
//! `AtomicU64` words, larger payloads through
//! [`shm::copy`](crate::shm::copy), all by way of [`Bytes`]), and no slice
//! is ever made
//! over the ring; a payload is copied out into private memory before
//! anything reads it. A hostile writer can garble items, nothing more.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::ring::{self, Bytes, bell, bias};
use crate::shm::ShmBox;
use crate::shm::heap::{self, Allocation};
use crate::sync::raw::{self, Acquired, RawProcessMutex};
use crate::sync::wait::{self, Site, Slept};
use crate::sys::futex;
use crate::sys::thread;

/// Record header size.
const HDR: u64 = 8;
const KIND_ITEM: u32 = 0;
const KIND_FIRST: u32 = 1;
const KIND_CONT: u32 = 2;
const KIND_LAST: u32 = 3;
const ID_MASK: u32 = u32::MAX >> 2;
/// An empty item record with id 1, in the ring: the items after it are in
/// the spill, up to a [`BACK`] record there (see "Overflow").
const JUMP: u32 = KIND_ITEM | (1 << 2);
/// An empty item record with id 2, in the spill: the items after it are in
/// the ring again, after the [`JUMP`] that led here.
const BACK: u32 = KIND_ITEM | (2 << 2);
/// Bit 0 of the packed `tail` (`head`): the producers put (the consumers
/// take) items in the spill. Byte counters are multiples of 8, so the bit
/// is free; [`unpack`] masks it.
const MODE: u64 = 1;

/// The spill's size: address space reserved in every process that maps the
/// queue, memory used only as far as items fill it.
pub(crate) const SPILL_CAP: usize = 1 << 33;
/// Spill byte counters are kept modulo this (31 bits of 8-byte units).
const SP_MOD: u64 = 1 << 34;
/// Consumed spill memory is given back to the kernel in steps of this.
const GRAIN: u64 = 1 << 20;
/// How long a put finding the ring full waits for room there before it
/// goes to the spill.
const JUMP_AFTER: Duration = Duration::from_micros(50);
/// The largest payload written whole into the spill.
const SPILL_ITEM_MAX: usize = SPILL_CAP / 4 - HDR as usize;

/// The smallest ring: a 4 KiB page.
pub(crate) const MIN_CAP: usize = 4096;
/// The largest ring (1 GiB): byte counters are kept modulo 2^32.
pub(crate) const MAX_CAP: usize = 1 << 30;

/// How a waiter for the other side spins before it sleeps (see
/// [`wait`]): a few microseconds, less than one futex wake-up across CPUs.
static SPIN: Site = Site::new(Duration::from_micros(20));
/// Pauses between two looks at the other side's counter while spinning.
const LOOK_EVERY: u32 = 8;
/// How a producer or consumer spins on its side's busy lock before the
/// lock's own wait.
static LOCK_SPIN: Site = Site::locks(Duration::ZERO, 200);
/// The longest one futex sleep; after a whole slice without progress a
/// waiter checks whether the processes it waits for are alive.
pub(crate) const SLICE: Duration = Duration::from_millis(50);
/// A zero or short timeout still waits this long for the lock itself (held
/// only for one copy, or by a process that died with it, which the mutex
/// notices within about 40 ms).
const LOCK_GRACE: Duration = Duration::from_millis(100);

fn rec_len(len: u64) -> u64 {
    HDR + len.next_multiple_of(8)
}

/// A small item for [`Core::put_inline`]: its `len` bytes at the start of
/// `buf` (the queue's encoding buffer). The rest of `buf` is never read as
/// the item: its first bytes fill the record's padding.
#[derive(Clone, Copy)]
pub(crate) struct Inline<'a> {
    buf: &'a [u8; INLINE],
    /// At most `INLINE` (see `new`).
    len: usize,
}

impl<'a> Inline<'a> {
    /// The item of the first `len` bytes of `buf`; `None` if `len` is
    /// more than `buf` holds.
    #[inline(always)]
    pub(crate) fn new(buf: &'a [u8; INLINE], len: usize) -> Option<Inline<'a>> {
        (len <= INLINE).then_some(Inline { buf, len })
    }

    /// The item's bytes.
    #[inline(always)]
    fn bytes(self) -> &'a [u8] {
        &self.buf[..self.len]
    }

    /// `buf` as ring words, in order (no byte-by-byte assembly: `buf` is
    /// whole words long).
    #[inline(always)]
    fn words(self) -> impl Iterator<Item = u64> {
        self.buf
            .as_chunks::<8>()
            .0
            .iter()
            .map(|w| u64::from_ne_bytes(*w))
    }
}

/// The ring word holding `c` (at most 8 bytes) then zeros, as
/// `u64::from_ne_bytes` of the zero-padded bytes would make it: built in a
/// register (a copy into an 8-byte array took a `memcpy` call for the last,
/// short piece, and then a stalled load of the array).
#[inline(always)]
pub(crate) fn word_of(c: &[u8]) -> u64 {
    if let Ok(w) = <[u8; 8]>::try_from(c) {
        return u64::from_ne_bytes(w);
    }
    let le = c
        .iter()
        .take(8)
        .enumerate()
        .fold(0u64, |w, (j, &b)| w | (b as u64) << (8 * j));
    // (`le` is `from_le_bytes` of the padded bytes; `from_le` turns it
    // into `from_ne_bytes` of them on either byte order.)
    u64::from_le(le)
}

fn tag(kind: u32, id: u32) -> u32 {
    kind | ((id & ID_MASK) << 2)
}

/// A side's lock (`put_lock`, `get_lock`): one futex word holding the
/// owner's thread id, robust as [`RawProcessMutex`] is (a waiter that finds
/// the owner dead after a slice of [`OWNER_CHECK`](raw::OWNER_CHECK) takes the lock over), and
/// two more bits that carry the waiters' bells: a getter (putter) about to
/// sleep sets [`GETTERS`] ([`PUTTERS`]) in the other side's word (and in
/// its own side's when it waits for a change of its own side), and whoever
/// releases that lock next finds the bit in the word it swaps out and
/// rings that bell. Every change a waiter waits for is made under one of
/// the two locks, so the release's swap, which a lock needs anyway, is the
/// notifier's whole handshake: no fence, no extra load, on the fast path.
///
/// Why no wake-up is lost: the waiter's `fetch_or` and the releaser's
/// `swap` are read-modify-writes of one word, so one comes first. If the
/// waiter's does, the swap reads the bit and rings. If the swap does, the
/// waiter's `fetch_or` (Acquire) reads from it (Release) or from a later
/// read-modify-write in its release sequence, so the released change is
/// visible to the waiter's next look, and it does not sleep. The waiter
/// loads the bell's sequence before arming, so a ring after the arm always
/// changes the word the waiter sleeps on.
///
/// A thread that released the lock [`BIAS_AFTER`] times in a row keeps it
/// biased (see [`bias`]): its operations then release nothing, and a
/// waiter that finds the word biased follows its arm with a barrier that
/// the owner's exit pairs with. Anyone else taking the lock revokes the
/// bias, and it is not taken again for [`COOL_DOWN`] releases, so sides
/// shared by several threads stay ordinary locks.
#[derive(Debug)]
#[repr(C)]
struct SideLock {
    word: AtomicU32,
    /// The threads that may hold the lock biased, each with the flag that
    /// says it is inside an operation (see [`bias`]).
    slots: [bias::Slot<AtomicU32>; bias::SLOTS],
    /// The thread that last released the lock the ordinary way, and how
    /// many times in a row it did without meeting anyone (as an `i32`;
    /// negative for a while after a revocation). Hints only: a garbled
    /// value only biases the lock sooner or later.
    last: AtomicU32,
    streak: AtomicU32,
}

/// Someone sleeps on the lock word itself, waiting for the lock (bit 31,
/// as in every robust lock word, see [`raw::robust_acquire`]).
const CONTENDED: u32 = raw::CONTENDED;
/// A getter waits for a change: ring `not_empty` at the next release.
const GETTERS: u32 = 1 << 30;
/// A putter waits for a change: ring `not_full` at the next release.
const PUTTERS: u32 = 1 << 29;
/// Anything but a free lock's bits: the owner's thread id, and the bias
/// bits (see [`bias`]).
const TID: u32 = PUTTERS - 1;
const _: () = assert!(GETTERS | PUTTERS == bias::BELLS && CONTENDED == bias::CONTENDED);

/// A thread that released a side lock this many times in a row without
/// meeting anyone keeps it biased (see [`bias`]).
const BIAS_AFTER: i32 = 64;
/// After a revocation the lock is not biased again before this many more
/// ordinary releases in a row by one thread: sides shared by several
/// threads do not pay a revocation (a system call) per item.
const COOL_DOWN: i32 = 4096;
/// A thread waiting for an ordinary hold looks this often whether the lock
/// became biased meanwhile (its owner never releases it then).
const BIAS_LOOK: Duration = Duration::from_millis(10);

impl SideLock {
    const fn new() -> SideLock {
        SideLock {
            word: AtomicU32::new(0),
            slots: [const {
                bias::Slot {
                    owner: AtomicU32::new(0),
                    busy: AtomicU32::new(0),
                }
            }; bias::SLOTS],
            last: AtomicU32::new(0),
            streak: AtomicU32::new(0),
        }
    }

    /// Takes the lock if it is free now, keeping the bell bits.
    fn try_acquire(&self, tid: u32) -> bool {
        let w = self.word.load(Ordering::Relaxed);
        w & (TID | CONTENDED) == 0
            && self
                .word
                .compare_exchange(w, w | tid, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Takes the lock, waiting at most until `deadline`: revokes a bias
    /// held by another thread, turns its own into an ordinary hold, and
    /// takes over an owner found dead (`OwnerDied`). `Clean` or
    /// `OwnerDied` leave an ordinary hold of `me`.
    fn acquire(&self, me: u32, deadline: Deadline) -> Acquired {
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w & bias::BIASED != 0 {
                if w & bias::OWNER == me {
                    if bias::unbias_own(&self.word, me) {
                        self.cool_down();
                        return Acquired::Clean;
                    }
                    continue;
                }
                match self.revoke(w, me, deadline) {
                    Some(a) => {
                        self.cool_down();
                        return a;
                    }
                    None if deadline.expired() => return Acquired::Busy,
                    None => continue,
                }
            }
            let look = deadline.min(Deadline::after(BIAS_LOOK));
            match raw::robust_acquire(&self.word, bias::OWNER, me, &raw::LOCK_SPIN, look) {
                Acquired::Busy | Acquired::WouldDeadlock => {
                    if deadline.expired() {
                        return Acquired::Busy;
                    }
                }
                a => {
                    // Taken over from a dead owner that held the lock
                    // biased (or from stray bits): an ordinary hold now.
                    let stray = bias::BIASED | bias::REVOKE | bias::SLOT;
                    if self.word.load(Ordering::Relaxed) & stray != 0 {
                        self.word.fetch_and(!stray, Ordering::Relaxed);
                    }
                    return a;
                }
            }
        }
    }

    /// Takes the lock from the thread it is biased to (`w` as loaded):
    /// marks it revoked, waits for the owner's operation in progress, or
    /// for its death. `None` if the word changed (look again) or the
    /// deadline passed.
    #[cold]
    fn revoke(&self, w: u32, me: u32, deadline: Deadline) -> Option<Acquired> {
        let owner = w & bias::OWNER;
        let fenced = match bias::mark(&self.word, w) {
            bias::Marked::Changed => return None,
            bias::Marked::Yes => true,
            bias::Marked::NoBarrier => false,
        };
        let busy = bias::busy_of(&self.slots, w);
        let idle = || (busy.load(Ordering::Acquire) == 0).then_some(());
        if fenced && LOCK_SPIN.spin_until(deadline, idle).is_some() {
            return bias::take(&self.word, w, me).then_some(Acquired::Clean);
        }
        let mut slices = 0u32;
        loop {
            let b = busy.load(Ordering::Acquire);
            if b == 0 && fenced {
                return bias::take(&self.word, w, me).then_some(Acquired::Clean);
            }
            if !bias::still_revoked(&self.word, w) {
                return None;
            }
            if slices > 0 && !thread::alive(owner) {
                // Dead inside an operation (or before a barrier could
                // order it): what it did is whole or not at all, as for
                // any dead holder.
                return bias::take(&self.word, w, me).then_some(Acquired::OwnerDied);
            }
            if deadline.expired() {
                return None;
            }
            if b == 0 {
                // (No barrier: only the owner's death lets this one in.)
                std::thread::sleep(deadline.slice(Duration::from_millis(1)));
                slices += 1;
            } else if wait::sleep(busy, b, deadline, raw::OWNER_CHECK) == Slept::Slice {
                slices += 1;
            }
        }
    }

    /// No bias for a while (a revocation happened).
    fn cool_down(&self) {
        self.streak
            .store(COOL_DOWN.wrapping_neg() as u32, Ordering::Relaxed);
    }

    /// Counts an ordinary release by `me`; true once `me` released it
    /// [`BIAS_AFTER`] times in a row (the lock held).
    fn streak(&self, me: u32) -> bool {
        let mut s = self.streak.load(Ordering::Relaxed) as i32;
        if self.last.load(Ordering::Relaxed) != me {
            self.last.store(me, Ordering::Relaxed);
            s = s.min(0);
        }
        if s >= BIAS_AFTER {
            return true;
        }
        self.streak
            .store(s.wrapping_add(1) as u32, Ordering::Relaxed);
        false
    }

    /// Releases the lock; returns the bell bits it found (cleared now), for
    /// the caller to ring. Keeps it biased to `me` after a streak.
    ///
    /// # Safety
    ///
    /// The calling thread (`me`) must hold the lock the ordinary way.
    unsafe fn release(&self, me: u32) -> u32 {
        if self.streak(me) {
            match bias::claim(&self.slots, me, thread::alive) {
                Some(slot) if crate::sys::membarrier::register() => {
                    if let Some(armed) = bias::release_biased(&self.word, &self.slots, slot, me) {
                        return armed;
                    }
                }
                // Every slot taken by a live thread (or no barrier): not
                // again for a while.
                _ => self.cool_down(),
            }
        }
        // SAFETY: the caller holds the lock.
        let old = unsafe { bell::release(&self.word) };
        if old & CONTENDED != 0 {
            futex::wake(&self.word, 1);
        }
        old & (GETTERS | PUTTERS)
    }

    /// Asks the next releaser to ring `bit`'s bell. False if the lock is
    /// biased and the barrier that needs could not be issued: the caller
    /// must not sleep long then.
    fn arm(&self, bit: u32) -> bool {
        bias::after_arm::<AtomicU32>(bell::arm(&self.word, bit))
    }
}

/// The producers' side: written by putters, under `put_lock`.
#[derive(Debug)]
#[repr(C, align(64))]
struct PutSide {
    // The producers' own line: the locks and what only producers read.
    // Consumers waiting for items read the tail's line over and over; the
    // lock's read-modify-writes of every put would miss there.
    put_lock: SideLock,
    big_writer: RawProcessMutex,
    next_id: AtomicU32,
    /// The head as last loaded by a producer (under `put_lock`): room
    /// is checked against it, and the real head (on the consumers' cache
    /// line) is loaded only when it shows too little.
    head_seen: AtomicU64,
    // What the consumers read, from offset 64.
    /// `items put << 32 | bytes written`, both modulo 2^32, so one store
    /// commits a record and counts it.
    tail: AtomicU64,
    /// The thread sending a large item (0: none), and that item's id.
    big_tid: AtomicU32,
    big_id: AtomicU32,
    /// The spill's tail: `items put there << 32 | bytes written / 8 << 1 |
    /// closed`, the bit set by the store that commits a [`BACK`] record
    /// (see [`sp_pack`]).
    sp_tail: AtomicU64,
    /// `sp_freed` as last loaded by a producer (under `put_lock`), as
    /// `head_seen` is for the head: an old one only understates the room.
    freed_seen: AtomicU64,
}

/// The consumers' side: written by getters, under `get_lock`.
#[derive(Debug)]
#[repr(C, align(64))]
struct GetSide {
    // The consumers' own line, as for `PutSide`.
    get_lock: SideLock,
    /// The thread receiving a large item (0: none), and that item's id.
    rx_tid: AtomicU32,
    rx_id: AtomicU32,
    /// The tail as last loaded by a consumer (under `get_lock`): records
    /// before it are taken without loading the real tail (on the
    /// producers' cache line).
    tail_seen: AtomicU64,
    // What the producers read, from offset 64.
    /// `items taken << 32 | bytes read`, modulo 2^32.
    head: AtomicU64,
    /// The spill's head, packed as `sp_tail`; the bit is set by the store
    /// that takes a [`BACK`] record.
    sp_head: AtomicU64,
    /// The spill bytes given back to the kernel: a spill byte counter, a
    /// multiple of [`GRAIN`]. Producers write at most a spill's size past
    /// it, so the bytes before it are never being written.
    sp_freed: AtomicU64,
    /// `sp_tail` as last loaded by a consumer (under `get_lock`), as
    /// `tail_seen` is for the tail: an old one only understates what is
    /// committed.
    sp_tail_seen: AtomicU64,
}

/// A futex word that waiters sleep on: a sequence number, bumped by
/// whoever finds the bell's bit armed in a side lock's word (see
/// [`SideLock`]), so a busy queue makes no system calls for its waiters.
#[derive(Debug)]
#[repr(C, align(64))]
struct Bell {
    word: AtomicU32,
}

/// Settings, and the closed flag: written rarely.
#[derive(Debug)]
#[repr(C, align(64))]
struct Waits {
    /// Rung when items arrive; getters sleep on it.
    not_empty: Bell,
    /// Rung when room appears; putters sleep on it.
    not_full: Bell,
    closed: AtomicU32,
    joinable: u32,
    cap: u64,
    maxsize: u64,
    /// The spill's size ([`SPILL_CAP`]), 0 for a queue without one.
    spill: u64,
}

/// The shared header of a queue.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct Shared {
    p: PutSide,
    g: GetSide,
    w: Waits,
    /// Items put and not yet marked done (joinable queues); joiners sleep
    /// on it while it is not 0.
    pub(crate) unfinished: AtomicU32,
}

// SAFETY: atomics, raw mutexes (single atomic words) and plain integers:
// no pointers, no drop glue, all-zero is valid.
unsafe impl crate::ShmSafe for Shared {}

// Each side's lock on a cache line of its own, apart from the counter the
// other side reads.
const _: () = {
    assert!(std::mem::offset_of!(PutSide, tail) == 64);
    assert!(std::mem::offset_of!(GetSide, head) == 64);
};

/// Why a put did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutFail {
    /// No room before the deadline.
    Full,
    /// The queue is closed.
    Closed,
}

/// What a writer with no room does next (see [`Core::put_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnWait {
    /// Wait here for room (or the deadline).
    Sleep,
    /// Look again at once: the caller did its own waiting.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    Again,
    /// Give up the item.
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    Stop,
}

/// What [`Core::spill_put`] did.
enum SpillPut {
    /// The item is in the spill.
    Done,
    /// The producers went back to the ring: put there.
    Back,
    /// No room (or `maxsize` reached): wait.
    Wait,
    /// The spill's counters are impossible.
    Corrupt,
}

/// What [`Core::spill_get`] found.
enum SpillGet {
    /// An item, taken.
    Item(Got),
    /// The consumers went back to the ring: take from there.
    Back,
    /// Nothing in the spill yet.
    Empty,
    /// The spill's counters or a record are impossible.
    Corrupt,
}

/// Why a get returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GetFail {
    /// Nothing arrived before the deadline.
    Empty,
    /// The queue is closed and drained.
    Closed,
}

/// A received payload: small ones without a heap allocation.
pub(crate) enum Payload {
    Inline([u8; INLINE], usize),
    Heap(Vec<u8>),
}

pub(crate) const INLINE: usize = 128;

/// Where a get left its item: a small payload's length in the caller's
/// buffer (see [`Core::get_into`]), or a large payload's own buffer.
pub(crate) enum Got {
    Inline(usize),
    Heap(Vec<u8>),
}

impl Got {
    /// The payload, given the buffer the get wrote small ones to.
    pub(crate) fn bytes<'a>(&'a self, buf: &'a [u8; INLINE]) -> &'a [u8] {
        match self {
            // (`n <= INLINE`, as `read_payload_in` sets it.)
            Got::Inline(n) => &buf[..(*n).min(INLINE)],
            Got::Heap(v) => v,
        }
    }

    fn into_payload(self, buf: [u8; INLINE]) -> Payload {
        match self {
            Got::Inline(n) => Payload::Inline(buf, n),
            Got::Heap(v) => Payload::Heap(v),
        }
    }
}

impl Payload {
    #[cfg_attr(not(any(feature = "pool", feature = "tokio")), allow(dead_code))]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Inline(b, n) => &b[..*n],
            Payload::Heap(v) => v,
        }
    }

    /// The bytes from `start` on, as a vector: a large payload's own
    /// buffer, moved down in place (no second buffer of its size).
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn into_tail(self, start: usize) -> Vec<u8> {
        match self {
            Payload::Inline(b, n) => b[..n].get(start..).unwrap_or_default().to_vec(),
            Payload::Heap(mut v) => {
                v.drain(..start.min(v.len()));
                v
            }
        }
    }
}

/// A snapshot of everything whose change should send a waiter back to look:
/// head, tail, `big_tid`, `rx_tid`, `closed`, the spill's head and tail.
pub(crate) type Snap = (u64, u64, u32, u32, u32, u64, u64);

/// aio hook (issue 17; moves with the ring): a get or put that never waits
/// here but reports what it would have waited for, so that the async forms
/// ([`crate::aio`]) wait for it without blocking their thread.
#[cfg(feature = "tokio")]
#[derive(Debug, Default)]
pub(crate) struct Park {
    /// The caller slept a whole slice without news: check who is alive.
    pub(crate) suspect: bool,
    /// Set when the call found nothing to do: the state to wait for a
    /// change of, and whether the change may come from the caller's own
    /// side (see [`Core::wait`]).
    pub(crate) wait: Option<(Snap, bool)>,
}

#[cfg(feature = "tokio")]
type ParkRef<'a> = Option<&'a mut Park>;
#[cfg(not(feature = "tokio"))]
type ParkRef<'a> = Option<&'a mut std::convert::Infallible>;

/// `(count, bytes)` halves of a packed counter (without the [`MODE`] bit).
fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32 & !(MODE as u32))
}

/// `(count, bytes, flag)` of a packed spill counter: the byte counter
/// modulo [`SP_MOD`], always a multiple of 8.
fn sp_unpack(v: u64) -> (u32, u64, bool) {
    ((v >> 32) as u32, ((v as u32 >> 1) as u64) << 3, v & 1 != 0)
}

fn sp_pack(count: u32, bytes: u64, flag: bool) -> u64 {
    ((count as u64) << 32) | (((bytes >> 3) & (u32::MAX >> 1) as u64) << 1) | flag as u64
}

/// `a - b` for spill byte counters (modulo [`SP_MOD`]).
fn sp_dist(a: u64, b: u64) -> u64 {
    a.wrapping_sub(b) & (SP_MOD - 1)
}

fn pack(count: u32, bytes: u32) -> u64 {
    ((count as u64) << 32) | bytes as u64
}

/// The queue's shared state and ring, as one handle.
///
/// The ring's size is kept here, in this process's memory, checked once
/// against the ring's mapping when the handle is made or adopted: the copy
/// in shared memory (`Waits::cap`) is only read then, so another process
/// rewriting it cannot send a copy past the ring.
pub(crate) struct Core {
    shared: ShmBox<Shared>,
    /// Keeps the ring's mapping alive for `bytes`.
    ring: Allocation,
    /// The ring's bytes; their size, checked once against the mapping,
    /// is the ring's size for this process.
    bytes: Bytes,
    /// A large item this process was receiving when a get reached its
    /// deadline, for the next get to go on with (see [`Partial`]).
    stash: Stash,
    /// The overflow area, for a queue that has one.
    spill: Option<Spill>,
}

/// A queue's spill: a mapping of [`SPILL_CAP`] bytes whose pages exist
/// only where items are (see "Overflow" in the module documentation).
struct Spill {
    /// Keeps the mapping alive for `bytes`, and gives consumed pages back.
    alloc: Allocation,
    bytes: Bytes,
}

/// What the serialized spill's allocation is checked to have been sent as.
#[cfg(feature = "spawn")]
struct SpillTag;

/// A large item received in part: what a get that reached its deadline in
/// the middle of the item keeps for the next get of this process.
struct Partial {
    /// The process that received it: a fork child inherits a copy of the
    /// handle (and of this), which is not its to go on with.
    pid: i32,
    /// The thread named in `rx_tid` while it received (the next get, from
    /// any thread of this process, takes over from it).
    owner: u32,
    /// The item's id.
    id: u32,
    /// The bytes so far.
    buf: Vec<u8>,
}

/// At most one [`Partial`], taken and put back with one atomic swap each:
/// no lock, so a fork at any moment leaves nothing held in the child.
#[derive(Default)]
struct Stash(AtomicPtr<Partial>);

impl Stash {
    /// Whether nothing is kept (a plain load: see `take`).
    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.0.load(Ordering::Relaxed).is_null()
    }

    /// Takes the kept item, if any.
    fn take(&self) -> Option<Box<Partial>> {
        // Nearly always empty: a plain load spares every get a
        // read-modify-write. (A `put` racing with this load is as if it
        // came just after the swap: the next get takes it.)
        if self.is_empty() {
            return None;
        }
        let p = self.0.swap(std::ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: a non-null pointer here always comes from `Box::into_raw`
        // in `put`, and the swap above made this the only owner.
        (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
    }

    /// Keeps `p`. Two at once take two gets of one process in a rare race
    /// (one that could not take the consumers' lock in time while its item
    /// was given up by its writer and another thread began the next item):
    /// the one kept before is then dropped, and if it was the newer item,
    /// the rest of it is discarded by other consumers only once the thread
    /// that received it has ended.
    fn put(&self, p: Box<Partial>) {
        let old = self.0.swap(Box::into_raw(p), Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: as in `take`.
            drop(unsafe { Box::from_raw(old) });
        }
    }
}

impl Drop for Stash {
    fn drop(&mut self) {
        drop(self.take());
    }
}

#[cfg(feature = "spawn")]
impl serde::Serialize for Core {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use crate::shm::transfer::{TypeTag, note_sent};
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Core", 3)?;
        st.serialize_field("shared", &self.shared)?;
        st.serialize_field("ring", &self.ring)?;
        let spill = self.spill.as_ref().map(|sp| &sp.alloc);
        st.serialize_field("spill", &spill)?;
        note_sent(&self.ring, TypeTag::of::<Core>(), 0);
        if let Some(a) = spill {
            note_sent(a, TypeTag::of::<SpillTag>(), SPILL_CAP as u64);
        }
        st.end()
    }
}

#[cfg(feature = "spawn")]
impl<'de> serde::Deserialize<'de> for Core {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename = "Core")]
        struct Wire {
            shared: ShmBox<Shared>,
            ring: Allocation,
            spill: Option<Allocation>,
        }
        use crate::shm::transfer::{TypeTag, check_received};
        let w = Wire::deserialize(d)?;
        check_received(&w.ring, TypeTag::of::<Core>(), 0).map_err(serde::de::Error::custom)?;
        if let Some(a) = &w.spill {
            check_received(a, TypeTag::of::<SpillTag>(), SPILL_CAP as u64)
                .map_err(serde::de::Error::custom)?;
        }
        Core::adopt(w.shared, w.ring, w.spill).map_err(serde::de::Error::custom)
    }
}

/// The value `Waits::closed` takes when a process found the ring corrupt.
const CORRUPT: u32 = 2;

/// The large writers' mutex, held. Releases on drop.
struct HeldRaw<'a> {
    m: &'a RawProcessMutex,
}

impl Drop for HeldRaw<'_> {
    fn drop(&mut self) {
        // SAFETY: a `HeldRaw` exists only after a successful acquisition of
        // `m` by this thread, and is dropped once.
        unsafe { self.m.release() }
    }
}

/// A side lock, held. Releases on drop and rings the bells it finds armed.
///
/// Two words (passed in registers): a `Held` built in memory piecewise and
/// read back whole stalls that load until every older store, the last
/// operation's publication included, left the store buffer, which costs
/// what the fence the bias saves would.
struct Held<'a> {
    core: &'a Core,
    /// [`HELD_GET`] (the consumers' lock, else the producers'), and
    /// [`HELD_BIASED`] (entered on the lock's bias, see [`bias`]: left
    /// with plain stores).
    how: u8,
}

const HELD_GET: u8 = 1;
const HELD_BIASED: u8 = 2;

impl Held<'_> {
    #[inline(always)]
    fn lock(&self) -> &SideLock {
        let s = &self.core.shared;
        if self.how & HELD_GET != 0 {
            &s.g.get_lock
        } else {
            &s.p.put_lock
        }
    }
}

impl Drop for Held<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let m = self.lock();
        let armed = if self.how & HELD_BIASED != 0 {
            bias::exit(&m.word, &m.slots)
        } else {
            // SAFETY: an unbiased `Held` exists only after a successful
            // ordinary acquisition of `m` by this thread, and is dropped
            // once.
            unsafe { m.release(thread::tid()) }
        };
        if armed != 0 {
            self.core.ring_armed(armed);
        }
    }
}

impl Drop for Core {
    /// A large item kept in part by this process is lost with the handle:
    /// its receiver mark is cleared, so the consumers of other handles
    /// discard the rest of it instead of waiting for this one.
    fn drop(&mut self) {
        let Some(p) = self.stash.take() else {
            return;
        };
        if p.pid != thread::pid() {
            return;
        }
        let g = &self.shared.g;
        if let Some(held) = self.lock(&g.get_lock, Deadline::after(Duration::ZERO)) {
            if g.rx_tid.load(Ordering::Relaxed) == p.owner
                && g.rx_id.load(Ordering::Relaxed) == p.id
            {
                g.rx_tid.store(0, Ordering::Release);
            }
            drop(held);
        }
    }
}

impl Core {
    /// A queue whose ring is all it holds: a put waits for room.
    pub(crate) fn new(maxsize: usize, bytes: usize, joinable: bool) -> Result<Core> {
        let (shared, ring) = Core::parts(maxsize, bytes, joinable, false)?;
        Core::adopt(shared, ring, None)
    }

    /// A queue whose items overflow into a spill when the ring is full (or
    /// too small for them): a put never waits for room, only for `maxsize`.
    pub(crate) fn new_spilling(maxsize: usize, bytes: usize, joinable: bool) -> Result<Core> {
        let (shared, ring) = Core::parts(maxsize, bytes, joinable, true)?;
        let spill = heap::alloc_lazy(SPILL_CAP)?;
        Core::adopt(shared, ring, Some(spill))
    }

    /// A new queue's header and ring.
    fn parts(
        maxsize: usize,
        bytes: usize,
        joinable: bool,
        spill: bool,
    ) -> Result<(ShmBox<Shared>, Allocation)> {
        if bytes > MAX_CAP {
            return Err(Error::InvalidSize {
                size: bytes,
                reason: "a queue's ring may hold at most 1 GiB",
            });
        }
        let cap = bytes.max(MIN_CAP).next_power_of_two();
        let (ring, _) = heap::alloc(cap, 8)?;
        let shared = ShmBox::new(Shared {
            p: PutSide {
                put_lock: SideLock::new(),
                big_writer: RawProcessMutex::new(),
                tail: AtomicU64::new(0),
                big_tid: AtomicU32::new(0),
                big_id: AtomicU32::new(0),
                next_id: AtomicU32::new(1),
                head_seen: AtomicU64::new(0),
                sp_tail: AtomicU64::new(0),
                freed_seen: AtomicU64::new(0),
            },
            g: GetSide {
                get_lock: SideLock::new(),
                head: AtomicU64::new(0),
                rx_tid: AtomicU32::new(0),
                rx_id: AtomicU32::new(0),
                tail_seen: AtomicU64::new(0),
                sp_head: AtomicU64::new(0),
                sp_freed: AtomicU64::new(0),
                sp_tail_seen: AtomicU64::new(0),
            },
            w: Waits {
                not_empty: Bell {
                    word: AtomicU32::new(0),
                },
                not_full: Bell {
                    word: AtomicU32::new(0),
                },
                closed: AtomicU32::new(0),
                joinable: joinable as u32,
                cap: cap as u64,
                maxsize: maxsize as u64,
                spill: if spill { SPILL_CAP as u64 } else { 0 },
            },
            unfinished: AtomicU32::new(0),
        })?;
        Ok((shared, ring))
    }

    /// A handle on `shared`, `ring` and `spill`: checks the sizes recorded
    /// in shared memory against the mappings and keeps them.
    fn adopt(shared: ShmBox<Shared>, ring: Allocation, spill: Option<Allocation>) -> Result<Core> {
        let cap = shared.w.cap;
        let bytes = usize::try_from(cap)
            .ok()
            .filter(|cap| (MIN_CAP..=MAX_CAP).contains(cap))
            .and_then(|cap| Bytes::new(&ring, 0, cap));
        let Some(bytes) = bytes else {
            return Err(Error::Corrupt(
                "a queue's recorded ring size does not match its ring",
            ));
        };
        let spill = match (shared.w.spill, spill) {
            (0, None) => None,
            (n, Some(alloc)) if n == SPILL_CAP as u64 => match Bytes::new(&alloc, 0, SPILL_CAP) {
                Some(bytes) => Some(Spill { alloc, bytes }),
                None => return Err(Error::Corrupt("a queue's spill does not match its mapping")),
            },
            _ => return Err(Error::Corrupt("a queue's recorded spill does not match")),
        };
        Ok(Core {
            shared,
            ring,
            bytes,
            stash: Stash::default(),
            spill,
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn cap(&self) -> usize {
        self.bytes.cap()
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.shared.w.maxsize as usize
    }

    /// Items in the queue: put minus taken (a snapshot).
    pub(crate) fn len(&self) -> usize {
        let s = self.shared();
        // Taken first: it never passes put, so the difference is never
        // negative.
        let (gets, _) = unpack(s.g.head.load(Ordering::Acquire));
        let (puts, _) = unpack(s.p.tail.load(Ordering::Acquire));
        puts.wrapping_sub(gets) as usize + self.spilled()
    }

    /// Items in the spill (a snapshot; 0 without one).
    fn spilled(&self) -> usize {
        if self.spill.is_none() {
            return 0;
        }
        let s = self.shared();
        let (gets, ..) = sp_unpack(s.g.sp_head.load(Ordering::Acquire));
        let (puts, ..) = sp_unpack(s.p.sp_tail.load(Ordering::Acquire));
        puts.wrapping_sub(gets) as usize
    }

    /// The payload bytes of the largest item put in one record: a chunk,
    /// or for a queue with a spill, a quarter of the spill.
    pub(crate) fn whole_max(&self) -> usize {
        if self.spill.is_some() {
            SPILL_ITEM_MAX
        } else {
            self.chunk_max()
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.w.closed.load(Ordering::Acquire) != 0
    }

    /// Whether a process found the ring corrupt (see [`Core::poison`]).
    pub(crate) fn is_corrupt(&self) -> bool {
        self.shared.w.closed.load(Ordering::Acquire) == CORRUPT
    }

    /// The ring holds what no producer of this module writes (a counter
    /// off the 8-byte grid, more bytes between head and tail than the ring
    /// holds, a record longer than a chunk or than the committed bytes):
    /// another process wrote into it. Nothing in it can be trusted any
    /// more, so the queue is closed for good, marked corrupt, and everyone
    /// waiting is woken to find that out; the queue's calls then fail with
    /// a corruption error.
    #[cold]
    fn poison(&self) {
        self.shared.w.closed.store(CORRUPT, Ordering::Release);
        self.wake_everyone();
    }

    /// Whether packed counters `head` and `tail` can both be true: byte
    /// counters on the 8-byte grid, at most a ring apart.
    fn sane(&self, head: u64, tail: u64) -> bool {
        let (hb, tb) = (unpack(head).1, unpack(tail).1);
        hb % 8 == 0 && tb % 8 == 0 && ring::used(tb, hb, self.bytes.cap()).is_some()
    }

    pub(crate) fn close(&self) {
        let s = self.shared();
        s.w.closed.store(1, Ordering::Release);
        self.wake_everyone();
    }

    fn wake_everyone(&self) {
        let w = &self.shared.w;
        for bell in [&w.not_empty, &w.not_full] {
            Self::ring(bell);
        }
    }

    /// The payload bytes of the largest item sent in one record.
    pub(crate) fn chunk_max(&self) -> usize {
        self.bytes.cap() / 4 - HDR as usize
    }

    /// Whether `rec` more bytes fit, and (if `count` is set) one more item
    /// is within `maxsize`. `head` and `tail` are packed counters.
    ///
    /// A queue with a spill keeps the last 8 bytes of its ring for a
    /// [`JUMP`] record.
    fn room(&self, head: u64, tail: u64, rec: u64, count: bool) -> bool {
        let (_, hb) = unpack(head);
        let (_, tb) = unpack(tail);
        let keep = if self.spill.is_some() { HDR } else { 0 };
        // (An old head may show more used than the ring holds: no room
        // then, and the caller looks at the real head.)
        ring::free(tb, hb, self.bytes.cap()).is_some_and(|free| free as u64 >= rec + keep)
            && (!count || self.count_room(head, tail))
    }

    /// Whether one more item is within `maxsize`, the spill's items
    /// counted too.
    fn count_room(&self, head: u64, tail: u64) -> bool {
        let max = self.shared.w.maxsize;
        let (gets, _) = unpack(head);
        let (puts, _) = unpack(tail);
        max == 0 || (puts.wrapping_sub(gets) as u64 + self.spilled() as u64) < max
    }

    /// Whether the consumers, moving the head from `seen` to `now`, freed
    /// enough for a waiting putter to come back at once: a sixteenth of the
    /// ring, or of `maxsize` items.
    fn room_goal(&self, seen: u64, now: u64) -> bool {
        let w = &self.shared.w;
        let (c0, b0) = unpack(seen);
        let (c1, b1) = unpack(now);
        // (`unpack` leaves the mode bit out.)
        b1.wrapping_sub(b0) as usize >= self.bytes.cap() / 16
            || (w.maxsize != 0 && c1.wrapping_sub(c0) as u64 >= (w.maxsize / 16).max(1))
    }

    /// Takes a side lock: on its bias (plain loads and stores, see
    /// [`bias`]), or a short spin, then the lock's own wait.
    ///
    /// Inlined, for the reason given at [`Held`].
    #[inline(always)]
    fn lock<'a>(&'a self, m: &'a SideLock, deadline: Deadline) -> Option<Held<'a>> {
        let me = thread::tid();
        let get = if std::ptr::eq(m, &self.shared.g.get_lock) {
            HELD_GET
        } else {
            0
        };
        if bias::enter(&m.word, &m.slots, me) {
            return Some(Held {
                core: self,
                how: get | HELD_BIASED,
            });
        }
        self.lock_slow(m, get, me, deadline)
    }

    #[cold]
    #[inline(never)]
    fn lock_slow<'a>(
        &'a self,
        m: &'a SideLock,
        get: u8,
        me: u32,
        deadline: Deadline,
    ) -> Option<Held<'a>> {
        let held = || Held {
            core: self,
            how: get,
        };
        let spun = LOCK_SPIN.spin_until(deadline, || {
            if m.word.load(Ordering::Relaxed) & bias::BIASED != 0 {
                // Biased: its owner keeps it; only a revocation helps.
                return Some(false);
            }
            m.try_acquire(me).then_some(true)
        });
        if spun == Some(true) {
            return Some(held());
        }
        match m.acquire(me, Self::lock_deadline(deadline)) {
            Acquired::Clean => Some(held()),
            Acquired::OwnerDied => {
                // Nothing to mend: every change became visible in one store
                // (see the module documentation). Others may have slept
                // through the death; wake them to look again.
                self.wake_everyone();
                Some(held())
            }
            // (`SideLock::acquire` never reports `WouldDeadlock`: only
            // `RawProcessMutex` looks for its own id.)
            Acquired::Busy | Acquired::WouldDeadlock => None,
        }
    }

    /// Rings the bells whose bits a release found armed.
    #[cold]
    fn ring_armed(&self, armed: u32) {
        let w = &self.shared.w;
        if armed & GETTERS != 0 {
            Core::ring(&w.not_empty);
        }
        if armed & PUTTERS != 0 {
            Core::ring(&w.not_full);
        }
    }

    /// Takes the large writers' mutex.
    fn lock_big<'a>(&'a self, m: &'a RawProcessMutex, deadline: Deadline) -> Option<HeldRaw<'a>> {
        match m.acquire(Self::lock_deadline(deadline)) {
            Acquired::Clean | Acquired::OwnerDied => Some(HeldRaw { m }),
            // The word names this thread, yet this module never takes the
            // lock while holding it: the id belonged to a thread that died
            // holding it and was handed to this thread since. A dead
            // owner's lock, already in our name: taken, as above.
            Acquired::WouldDeadlock => Some(HeldRaw { m }),
            Acquired::Busy => None,
        }
    }

    /// A zero or short timeout still waits [`LOCK_GRACE`] for a lock.
    fn lock_deadline(deadline: Deadline) -> Deadline {
        match deadline.remaining() {
            None => Deadline::NEVER,
            Some(r) => Deadline::after(r + LOCK_GRACE),
        }
    }

    pub(crate) fn snapshot(&self) -> Snap {
        let s = self.shared();
        (
            s.g.head.load(Ordering::Acquire),
            s.p.tail.load(Ordering::Acquire),
            s.p.big_tid.load(Ordering::Acquire),
            s.g.rx_tid.load(Ordering::Acquire),
            s.w.closed.load(Ordering::Acquire),
            s.g.sp_head.load(Ordering::Acquire),
            s.p.sp_tail.load(Ordering::Acquire),
        )
    }

    /// Waits until the state differs from `snap`: a bounded spin, then futex
    /// sleeps of at most [`SLICE`]. Returns true if it slept a whole slice
    /// without news (so the caller may check who is alive).
    ///
    /// A putter (waiting for room) comes back early from its spin only once
    /// a good share of the ring is free ([`Core::room_goal`]), or at the end
    /// of the spin if anything at all was freed: coming back for every freed
    /// record would have it write the very cache line the consumer is
    /// reading and load the consumers' head line for every item, which
    /// costs both sides a cache-line transfer per item while the ring is
    /// full.
    ///
    /// `own_side`: the change awaited may come from the waiter's own side
    /// (a large item's writer, for a putter; another consumer taking its
    /// chunks, for a getter), so the bell is armed in that side's lock too.
    /// Otherwise only the other side's releases ring it: consumers taking
    /// items do not wake each other.
    fn wait(&self, bell: &Bell, snap: Snap, deadline: Deadline, own_side: bool) -> bool {
        // Spin mostly on the counter the other side moves (the tail for a
        // getter, the head for a putter), looking at everything now and then.
        let getter = std::ptr::eq(bell, &self.shared.w.not_empty);
        // A consumer in the spill waits for the spill's tail.
        let in_spill = getter && snap.0 & MODE != 0;
        let (watch, seen) = if in_spill {
            (&self.shared.p.sp_tail, snap.6)
        } else if getter {
            (&self.shared.p.tail, snap.1)
        } else {
            (&self.shared.g.head, snap.0)
        };
        let enough = |now: u64| {
            if getter {
                now != seen
            } else {
                self.room_goal(seen, now)
            }
        };
        // Every look takes the line from the other side, which then pays to
        // take it back: looking only every few pauses lets a few items (or
        // a few frees) gather, to be handled in one go.
        let mut i = 0u32;
        let spun = SPIN.spin_until(deadline, || {
            i = i.wrapping_add(1);
            if !i.is_multiple_of(LOOK_EVERY) {
                return None;
            }
            if enough(watch.load(Ordering::Relaxed)) {
                return Some(());
            }
            if i.is_multiple_of(64) {
                // Anything else that changed (closed, a large writer
                // or receiver come or gone, the other counter).
                let mut now = self.snapshot();
                if in_spill {
                    now.6 = seen;
                } else if getter {
                    now.1 = seen;
                } else {
                    now.0 = seen;
                }
                if now != snap {
                    return Some(());
                }
            }
            None
        });
        if spun.is_some() {
            return false;
        }
        // Anything freed is worth a look before sleeping.
        if watch.load(Ordering::Relaxed) != seen {
            return false;
        }
        if deadline.expired() {
            return false;
        }
        // Arm the bell in both side locks, then look once more: a change
        // released before the arm is seen here, one released after it
        // rings (see `SideLock`).
        let (v, fenced) = self.arm(getter, own_side);
        if self.snapshot() != snap {
            return false;
        }
        if !fenced {
            let _ = wait::sleep(&bell.word, v, deadline, Duration::from_millis(1));
            return false;
        }
        wait::sleep(&bell.word, v, deadline, SLICE) == Slept::Slice
    }

    /// Arms the getters' (`getter`) or the putters' bell in the other
    /// side's lock (and in the own side's, if `own_side`), and returns the
    /// bell's sequence loaded before the arm, so that a ring after the arm
    /// is never slept through, and false if a side lock is biased and the
    /// barrier it needs failed (see [`bias`]): a short sleep only, then.
    fn arm(&self, getter: bool, own_side: bool) -> (u32, bool) {
        let bell = if getter {
            &self.shared.w.not_empty
        } else {
            &self.shared.w.not_full
        };
        let v = bell.word.load(Ordering::Acquire);
        let (p, g) = (&self.shared.p.put_lock, &self.shared.g.get_lock);
        let (bit, other, own) = if getter {
            (GETTERS, p, g)
        } else {
            (PUTTERS, g, p)
        };
        let mut fenced = other.arm(bit);
        if own_side {
            fenced &= own.arm(bit);
        }
        (v, fenced)
    }

    /// Wakes every sleeper on `bell`: a new sequence, and all of them up
    /// (they share one bit).
    fn ring(bell: &Bell) {
        bell::ring(&bell.word);
    }

    /// Appends the `len` ring bytes at byte counter `pos` to `buf`, which
    /// grows by that much (no zero-filling: the bytes are copied into its
    /// spare room).
    ///
    /// # Safety
    ///
    /// `get_lock` is held and `[pos, pos + len)` lies between the head and
    /// a tail loaded with `Acquire` (committed bytes, which no writer
    /// touches until the head passes them).
    unsafe fn append_at(&self, pos: u32, len: usize, buf: &mut Vec<u8>) {
        // SAFETY: the mapping lives as long as `self.ring`; the range is
        // committed (the caller's promise).
        unsafe { self.bytes.append(pos as u64, len, buf) }
    }

    /// The header at byte counter `pos`: (payload length, tag).
    ///
    /// # Safety
    ///
    /// As for `append_at`, for the 8 header bytes.
    unsafe fn header_at(&self, pos: u32) -> (u32, u32) {
        // SAFETY: forwarded; the ring's mapping lives as long as `self.ring`.
        unsafe { Self::header_in(&self.bytes, pos as u64) }
    }

    /// The header at byte counter `pos` of `b` (the ring or the spill).
    ///
    /// # Safety
    ///
    /// `b`'s mapping is alive; `pos` is a multiple of 8 and the header
    /// there is committed (the consumers' lock is held).
    #[inline(always)]
    unsafe fn header_in(b: &Bytes, pos: u64) -> (u32, u32) {
        // SAFETY: byte counters of records are multiples of 8 (every
        // counter read from shared memory is checked before it is used), so
        // the word is the record's header; the mapping is alive and the
        // header committed (the caller's promise).
        let v = unsafe { b.load_word(pos) };
        (v as u32, (v >> 32) as u32)
    }

    /// Writes a whole record at byte counter `tail` (does not publish it).
    ///
    /// # Safety
    ///
    /// `put_lock` must be held and the record's bytes must be free space.
    unsafe fn write_record(&self, tail: u32, tag: u32, payload: &[u8]) {
        // SAFETY: forwarded; the ring's mapping lives as long as `self.ring`.
        unsafe { Self::write_record_in(&self.bytes, tail as u64, tag, payload) }
    }

    /// Writes a whole record at byte counter `tail` of `b` (the ring or the
    /// spill; does not publish it).
    ///
    /// # Safety
    ///
    /// `b`'s mapping is alive, `put_lock` is held, `tail` is a multiple of
    /// 8 and the record's bytes are free space.
    unsafe fn write_record_in(b: &Bytes, tail: u64, tag: u32, payload: &[u8]) {
        if payload.len() <= INLINE {
            let words = payload.chunks(8).map(word_of);
            // SAFETY: forwarded (the caller's promises), the payload small.
            unsafe { Self::write_small_in(b, tail, tag, payload.len(), words) };
            return;
        }
        // SAFETY: the header's word (see `header_in`); the caller guarantees
        // the record's bytes are free.
        unsafe { b.store_word(tail, (payload.len() as u64) | ((tag as u64) << 32)) };
        // SAFETY: the payload's bytes follow, free too (the caller's).
        unsafe { b.store(tail.wrapping_add(HDR), payload) };
    }

    /// [`write_record_in`](Core::write_record_in) for a payload of `len`
    /// bytes, at most [`INLINE`], given as its words (`len` bytes then any
    /// padding, in ring order): whole-word stores, as `read_payload` reads
    /// them, so no `memcpy` call. At most the record's words are taken
    /// from `words`, whatever it holds.
    ///
    /// # Safety
    ///
    /// As for `write_record_in` (for a record of `len` payload bytes), and
    /// `len <= INLINE`.
    #[inline(always)]
    unsafe fn write_small_in(
        b: &Bytes,
        tail: u64,
        tag: u32,
        len: usize,
        words: impl Iterator<Item = u64>,
    ) {
        let h = (len as u64) | ((tag as u64) << 32);
        // SAFETY: the header's word (see `header_in`); the caller guarantees
        // the record's bytes are free.
        unsafe { b.store_word(tail, h) };
        let at = tail.wrapping_add(HDR);
        for (i, w) in words.take(len.div_ceil(8)).enumerate() {
            // SAFETY: `at` is a multiple of 8 (as `tail` is, the caller's
            // promise) and `i` below `len.div_ceil(8)`, so each word lies
            // within the record (payload and padding), free space the
            // caller owns; the mapping is alive (the caller's promise).
            unsafe { b.store_word(at + 8 * i as u64, w) };
        }
    }

    /// Copies the payload of the record at byte counter `head`.
    ///
    /// # Safety
    ///
    /// `get_lock` must be held and a committed record of `len` payload
    /// bytes must start at `head`.
    #[inline(always)]
    unsafe fn read_payload(&self, head: u32, len: usize, out: &mut [u8; INLINE]) -> Got {
        // SAFETY: forwarded; the ring's mapping lives as long as `self.ring`.
        unsafe { Self::read_payload_in(&self.bytes, head as u64, len, out) }
    }

    /// Copies the payload of the record at byte counter `head` of `b` (the
    /// ring or the spill): a small one into `out` (where the caller reads
    /// it, so it is not moved again on its way out), a large one into a
    /// buffer of its own.
    ///
    /// # Safety
    ///
    /// `b`'s mapping is alive, `get_lock` is held, and a committed record of
    /// `len` payload bytes (at most `b`'s size) starts at `head`, a
    /// multiple of 8.
    #[inline(always)]
    unsafe fn read_payload_in(b: &Bytes, head: u64, len: usize, out: &mut [u8; INLINE]) -> Got {
        let at = head.wrapping_add(HDR);
        if len <= INLINE {
            // Whole words, the record's padding included (`INLINE` is a
            // multiple of 8): no `memcpy` call for a small item.
            for (i, d) in out.chunks_exact_mut(8).take(len.div_ceil(8)).enumerate() {
                // SAFETY: `at` is a multiple of 8, so each word lies within
                // the committed record (payload and padding) the caller
                // names; the mapping is alive (the caller's promise).
                let w = unsafe { b.load_word(at + 8 * i as u64) };
                d.copy_from_slice(&w.to_ne_bytes());
            }
            Got::Inline(len)
        } else {
            let mut v = vec![0u8; len];
            // SAFETY: forwarded from the caller.
            unsafe { b.load(at, &mut v) };
            Got::Heap(v)
        }
    }

    /// Marks one more unfinished task (joinable queues), before the item
    /// is committed, so a `task_done` for it never finds the count at 0.
    fn count_task(&self) {
        let s = self.shared();
        if s.w.joinable != 0 {
            s.unfinished.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Commits a whole item's record of `rec` bytes, written at byte
    /// counter `tb` of the ring (the producers' lock held, the tail's count
    /// `puts`): counts its task, then publishes it in one store.
    #[inline(always)]
    fn commit_item(&self, puts: u32, tb: u32, rec: u64) {
        self.count_task();
        self.shared.p.tail.store(
            pack(puts.wrapping_add(1), tb.wrapping_add(rec as u32)),
            Ordering::Release,
        );
    }

    /// Puts one encoded item, waiting until `deadline` for room.
    #[inline]
    pub(crate) fn put(&self, bytes: &[u8], deadline: Deadline) -> Result<(), PutFail> {
        self.put_with(bytes, deadline, &mut || OnWait::Sleep)
    }

    /// [`put`](Core::put) of the item `item.buf[..item.len]`, trying the
    /// fast path first (see [`put_fast`](Core::put_fast)).
    #[inline]
    pub(crate) fn put_inline(&self, item: Inline<'_>, deadline: Deadline) -> Result<(), PutFail> {
        if self.put_fast(item) {
            return Ok(());
        }
        self.put(item.bytes(), deadline)
    }

    /// The common put, in one run of loads and stores without calls: a
    /// small item, the producers' lock held on its bias by this thread, the
    /// ring (not the spill) with room by the head seen last or the real
    /// one, no large item being written. `false`: nothing was written (and
    /// nothing changed but the lock's enter and exit); the general path,
    /// [`put_small`](Core::put_small), then handles the case, the errors
    /// and the waits. What it writes, it writes as `put_small` does: one
    /// record, then the tail in one store (the commit).
    ///
    /// The payload goes in as whole words of `item.buf`: the bytes past
    /// `item.len` fill the record's padding, which no reader looks at.
    #[inline(always)]
    fn put_fast(&self, item: Inline<'_>) -> bool {
        let len = item.len;
        if len > INLINE || len > self.chunk_max() || self.is_closed() {
            return false;
        }
        let s = self.shared();
        let m = &s.p.put_lock;
        if !bias::enter(&m.word, &m.slots, thread::tid()) {
            return false;
        }
        let held = Held {
            core: self,
            how: HELD_BIASED,
        };
        let tail = s.p.tail.load(Ordering::Relaxed);
        let rec = rec_len(len as u64);
        let fits = |head| self.sane(head, tail) && self.room(head, tail, rec, true);
        // (In the spill, `MODE` is set: the general path goes on there.)
        let mut ok = tail & MODE == 0 && s.p.big_tid.load(Ordering::Relaxed) == 0;
        if ok && !fits(s.p.head_seen.load(Ordering::Relaxed)) {
            let head = s.g.head.load(Ordering::Acquire);
            ok = fits(head);
            if ok {
                s.p.head_seen.store(head, Ordering::Relaxed);
            }
        }
        if ok {
            let (puts, tb) = unpack(tail);
            // SAFETY: the ring's mapping lives as long as `self`;
            // `put_lock` is held (on its bias, entered above); `tb` is on
            // the 8-byte grid (`sane`) and `room` checked the record's
            // space against a sane head; `len` is at most `INLINE`.
            unsafe {
                Self::write_small_in(&self.bytes, tb as u64, tag(KIND_ITEM, 0), len, item.words())
            };
            self.commit_item(puts, tb, rec);
        }
        drop(held);
        ok
    }

    /// [`put`](Core::put), asking `on_wait` what to do each time there is
    /// no room (before waiting for some): the caller can do other work
    /// meanwhile, or give up. A large item goes in chunk by chunk as room
    /// appears; it is given up (taken back from its receiver) only at the
    /// deadline or when `on_wait` says [`OnWait::Stop`], never started
    /// over.
    pub(crate) fn put_with(
        &self,
        bytes: &[u8],
        deadline: Deadline,
        on_wait: &mut dyn FnMut() -> OnWait,
    ) -> Result<(), PutFail> {
        if bytes.len() > self.whole_max() {
            self.put_big(bytes, deadline, on_wait)
        } else {
            self.put_small(bytes, deadline, on_wait, None)
        }
    }

    /// aio hook (issue 17): a put of an item of at most
    /// [`chunk_max`](Core::chunk_max) bytes that never waits for room; where
    /// it would wait it fills `park.wait` and reports [`PutFail::Full`].
    #[cfg(feature = "tokio")]
    pub(crate) fn put_parked(&self, bytes: &[u8], park: &mut Park) -> Result<(), PutFail> {
        park.wait = None;
        debug_assert!(bytes.len() <= self.whole_max());
        self.put_small(bytes, Deadline::NEVER, &mut || OnWait::Stop, Some(park))
    }

    /// aio hook (issue 17): arms the bell a getter (`getter`) or a putter
    /// waits on, as [`Core::wait`] does before it sleeps, and returns the
    /// word and the value to wait on; `None` if the state is no longer
    /// `snap` (look again at once).
    #[cfg(feature = "tokio")]
    pub(crate) fn arm_parked(
        &self,
        getter: bool,
        (snap, own_side): (Snap, bool),
    ) -> Option<(&AtomicU32, u32)> {
        let (v, fenced) = self.arm(getter, own_side);
        if !fenced {
            return None;
        }
        let bell = if getter {
            &self.shared.w.not_empty
        } else {
            &self.shared.w.not_full
        };
        (self.snapshot() == snap).then_some((&bell.word, v))
    }

    /// Fails at the deadline, or asks `on_wait` what to do while there is
    /// no room: waits here ([`Core::wait`]), or not (the caller waited), or
    /// fails. Returns whether the writer may suspect the others of being
    /// dead: after a slice without news, or, when the caller does the
    /// waiting, a whole [`SLICE`] since `idle` (when the writer began to
    /// wait without progress).
    fn room_wait(
        &self,
        snap: Snap,
        deadline: Deadline,
        own_side: bool,
        on_wait: &mut dyn FnMut() -> OnWait,
        idle: &mut Option<std::time::Instant>,
    ) -> Result<bool, PutFail> {
        if deadline.expired() {
            return Err(PutFail::Full);
        }
        match on_wait() {
            OnWait::Stop => Err(PutFail::Full),
            OnWait::Again => {
                let since = idle.get_or_insert_with(std::time::Instant::now);
                Ok(since.elapsed() >= SLICE)
            }
            OnWait::Sleep => Ok(self.wait(&self.shared.w.not_full, snap, deadline, own_side)),
        }
    }

    fn put_small(
        &self,
        bytes: &[u8],
        deadline: Deadline,
        on_wait: &mut dyn FnMut() -> OnWait,
        mut park: ParkRef<'_>,
    ) -> Result<(), PutFail> {
        let s = self.shared();
        let rec = rec_len(bytes.len() as u64);
        #[cfg(feature = "tokio")]
        let mut suspect = park.as_ref().is_some_and(|p| p.suspect);
        #[cfg(not(feature = "tokio"))]
        let mut suspect = false;
        let mut idle = None;
        // Whether this put waited a moment for room before spilling.
        let mut spun = false;
        loop {
            if self.is_closed() {
                return Err(PutFail::Closed);
            }
            let held = self.lock(&s.p.put_lock, deadline).ok_or(PutFail::Full)?;
            let (tail, in_spill) = self.side(&s.p.tail, &s.p.sp_tail);
            if let Some(sp) = &self.spill
                && let Some(st) = in_spill
            {
                match self.spill_put(sp, bytes, tail, st) {
                    SpillPut::Done => return Ok(()),
                    SpillPut::Back => continue,
                    SpillPut::Corrupt => {
                        self.poison();
                        return Err(PutFail::Closed);
                    }
                    SpillPut::Wait => {
                        let snap = self.snapshot();
                        drop(held);
                        #[cfg(feature = "tokio")]
                        if let Some(p) = park.as_deref_mut() {
                            p.wait = Some((snap, false));
                            return Err(PutFail::Full);
                        }
                        suspect = self.room_wait(snap, deadline, false, on_wait, &mut idle)?;
                        continue;
                    }
                }
            }
            // An old head only understates the room: look at the real one
            // (the consumers' cache line) only when the old one is short.
            let mut head = s.p.head_seen.load(Ordering::Relaxed);
            if !self.sane(head, tail) || !self.room(head, tail, rec, true) {
                head = s.g.head.load(Ordering::Acquire);
                if !self.sane(head, tail) {
                    self.poison();
                    return Err(PutFail::Closed);
                }
                s.p.head_seen.store(head, Ordering::Relaxed);
            }
            let bt = s.p.big_tid.load(Ordering::Relaxed);
            let mut blocked = false;
            if bt != 0 {
                if suspect && !thread::alive(bt) {
                    // The large writer died mid-item: stop waiting for it.
                    // Its receiver (if any) notices and drops the part.
                    s.p.big_tid.store(0, Ordering::Release);
                } else {
                    blocked = true;
                }
            }
            let fits = bytes.len() <= self.chunk_max();
            if !blocked && fits && self.room(head, tail, rec, true) {
                let (puts, tb) = unpack(tail);
                // SAFETY: `put_lock` is held and `room` checked the space.
                unsafe { self.write_record(tb, tag(KIND_ITEM, 0), bytes) };
                self.commit_item(puts, tb, rec);
                drop(held);
                return Ok(());
            }
            if !blocked && self.spill.is_some() && self.count_room(head, tail) {
                if fits && !spun && park.is_none() && !deadline.expired() {
                    // A full ring whose consumers are at work has room
                    // again in a moment, and the ring is faster than the
                    // spill: spin for it a little first (a put that may
                    // wait), never sleeping longer than that.
                    spun = true;
                    let snap = self.snapshot();
                    drop(held);
                    let _ = self.wait(&s.w.not_full, snap, Deadline::after(JUMP_AFTER), false);
                    continue;
                }
                // No room in the ring (or the item is too large for it):
                // go on in the spill. The ring always keeps room for this
                // record (see `room`).
                let (puts, tb) = unpack(tail);
                if ring::free(tb, unpack(head).1, self.bytes.cap())
                    .is_some_and(|f| f >= HDR as usize)
                {
                    let st = s.p.sp_tail.load(Ordering::Relaxed);
                    if sp_unpack(st).2 {
                        // (Before the jump: a producer killed after this
                        // store still puts in the ring.)
                        s.p.sp_tail.store(st & !1, Ordering::Relaxed);
                    }
                    // SAFETY: `put_lock` is held and the ring has room for
                    // the header.
                    unsafe { self.write_record(tb, JUMP, &[]) };
                    s.p.tail.store(
                        pack(puts, tb.wrapping_add(HDR as u32)) | MODE,
                        Ordering::Release,
                    );
                    drop(held);
                    continue;
                }
            }
            let snap = self.snapshot();
            drop(held);
            #[cfg(feature = "tokio")]
            if let Some(p) = park.as_deref_mut() {
                p.wait = Some((snap, blocked));
                return Err(PutFail::Full);
            }
            #[cfg(not(feature = "tokio"))]
            let _ = park.as_deref_mut();
            suspect = self.room_wait(snap, deadline, blocked, on_wait, &mut idle)?;
        }
    }

    /// A side's packed counter `word` (the tail or the head, the side's
    /// lock held) and, if the side is in the spill, its spill counter
    /// `sp_word`. A side a process left between the two stores of its way
    /// back (the spill counter's flag set, the mode bit still set) is
    /// brought back to the ring first.
    fn side(&self, word: &AtomicU64, sp_word: &AtomicU64) -> (u64, Option<u64>) {
        let v = word.load(Ordering::Relaxed);
        if self.spill.is_none() || v & MODE == 0 {
            return (v, None);
        }
        let sv = sp_word.load(Ordering::Relaxed);
        if sp_unpack(sv).2 {
            word.store(v & !MODE, Ordering::Release);
            return (v & !MODE, None);
        }
        (v, Some(sv))
    }

    /// A put in the spill (`put_lock` held, the producers in the spill,
    /// `tail` and `st` the packed ring and spill tails). Now and then it
    /// looks whether the ring has room again and goes back there instead.
    fn spill_put(&self, sp: &Spill, bytes: &[u8], tail: u64, st: u64) -> SpillPut {
        let s = self.shared();
        let (sputs, pos, _) = sp_unpack(st);
        let rec = rec_len(bytes.len() as u64);
        let Some(used) = self.spill_used(pos, rec + HDR) else {
            return SpillPut::Corrupt;
        };
        if bytes.len() > SPILL_ITEM_MAX {
            // (`put_with` sends those in chunks, through the ring.)
            return SpillPut::Wait;
        }
        if sputs.is_multiple_of(16) && bytes.len() <= self.chunk_max() {
            // Back to the ring once half of it is free: a `BACK` record
            // ends this stretch of the spill (the consumers come back to
            // the ring after it), committed with the bit that says so.
            let head = s.g.head.load(Ordering::Acquire);
            if self.sane(head, tail) {
                s.p.head_seen.store(head, Ordering::Relaxed);
                let (_, hb) = unpack(head);
                let (_, tb) = unpack(tail);
                let half = ring::free(tb, hb, self.bytes.cap())
                    .is_some_and(|f| f >= self.bytes.cap() / 2 && f as u64 >= rec + HDR);
                if half && used + HDR <= SPILL_CAP as u64 {
                    // SAFETY: `put_lock` is held; the 8 bytes at `pos` are
                    // free (checked against the bytes given back just now).
                    unsafe { Self::write_record_in(&sp.bytes, pos, BACK, &[]) };
                    s.p.sp_tail
                        .store(sp_pack(sputs, pos + HDR, true), Ordering::Release);
                    s.p.tail.store(tail & !MODE, Ordering::Release);
                    return SpillPut::Back;
                }
            }
        }
        if s.w.maxsize != 0 && !self.count_room(s.g.head.load(Ordering::Acquire), tail) {
            return SpillPut::Wait;
        }
        // Keep room for a `BACK` record.
        if used + rec + HDR > SPILL_CAP as u64 {
            return SpillPut::Wait;
        }
        self.count_task();
        // SAFETY: `put_lock` is held; the record's bytes lie within a
        // spill's size of the bytes given back, where no consumer reads
        // (past the spill's tail) and nobody gives memory back.
        unsafe { Self::write_record_in(&sp.bytes, pos, tag(KIND_ITEM, 0), bytes) };
        s.p.sp_tail.store(
            sp_pack(sputs.wrapping_add(1), pos + rec, false),
            Ordering::Release,
        );
        SpillPut::Done
    }

    /// The spill bytes from those given back to the spill's tail `pos`
    /// (`put_lock` held): producers write at most a spill's size past the
    /// bytes given back. `None` if that cannot be.
    ///
    /// The bytes given back as a producer saw them last are used if they
    /// leave room for `need` more bytes: the consumers' line is loaded
    /// only when they do not.
    fn spill_used(&self, pos: u64, need: u64) -> Option<u64> {
        let s = self.shared();
        let used = |freed: u64| {
            let used = sp_dist(pos, freed);
            (used <= SPILL_CAP as u64 && freed.is_multiple_of(GRAIN)).then_some(used)
        };
        let old = used(s.p.freed_seen.load(Ordering::Relaxed));
        if old.is_some_and(|u| u + need <= SPILL_CAP as u64) {
            return old;
        }
        let freed = s.g.sp_freed.load(Ordering::Acquire);
        s.p.freed_seen.store(freed, Ordering::Relaxed);
        used(freed)
    }

    fn put_big(
        &self,
        bytes: &[u8],
        deadline: Deadline,
        on_wait: &mut dyn FnMut() -> OnWait,
    ) -> Result<(), PutFail> {
        let s = self.shared();
        let me = thread::tid();
        // A dead previous holder of `big_writer` needs no mending: its
        // partial item is dropped by its receiver (see `get`).
        let _big = self
            .lock_big(&s.p.big_writer, deadline)
            .ok_or(PutFail::Full)?;
        let id = s.p.next_id.fetch_add(1, Ordering::Relaxed) & ID_MASK;
        let chunk = self.chunk_max();
        let mut off = 0usize;
        let mut started = false;
        let mut idle = None;
        let result = loop {
            if self.is_closed() {
                break Err(PutFail::Closed);
            }
            let Some(held) = self.lock(&s.p.put_lock, deadline) else {
                break Err(PutFail::Full);
            };
            let mut tail = s.p.tail.load(Ordering::Relaxed);
            if let Some(sp) = &self.spill
                && tail & MODE != 0
            {
                // The producers put in the spill: end that stretch with a
                // `BACK` record (or finish a killed producer's), so that
                // the chunks go in the ring after it.
                let st = s.p.sp_tail.load(Ordering::Relaxed);
                let (sputs, pos, back) = sp_unpack(st);
                let Some(used) = self.spill_used(pos, HDR) else {
                    self.poison();
                    break Err(PutFail::Closed);
                };
                if !back && used + HDR <= SPILL_CAP as u64 {
                    // SAFETY: `put_lock` is held; the 8 bytes at `pos` are
                    // free (within a spill's size of the bytes given back).
                    unsafe { Self::write_record_in(&sp.bytes, pos, BACK, &[]) };
                    s.p.sp_tail
                        .store(sp_pack(sputs, pos + HDR, true), Ordering::Release);
                }
                if back || used + HDR <= SPILL_CAP as u64 {
                    tail &= !MODE;
                    s.p.tail.store(tail, Ordering::Release);
                }
            }
            let head = s.g.head.load(Ordering::Acquire);
            if !self.sane(head, tail) {
                self.poison();
                break Err(PutFail::Closed);
            }
            // Keep the producers' old head within a ring of the tail.
            s.p.head_seen.store(head, Ordering::Relaxed);
            let n = chunk.min(bytes.len() - off);
            let rec = rec_len(n as u64);
            let last = off + n == bytes.len();
            // Before the first chunk, `big_tid` may still name a large
            // writer that died (we hold `big_writer`, so it is not sending):
            // it is overwritten below.
            // (Chunks go in the ring only: while the producers put in the
            // spill, wait for them to come back.)
            if tail & MODE == 0 && self.room(head, tail, rec, !started) {
                let kind = match (started, last) {
                    (false, _) => KIND_FIRST,
                    (true, false) => KIND_CONT,
                    (true, true) => KIND_LAST,
                };
                let (puts, tb) = unpack(tail);
                // SAFETY: `put_lock` is held and `room` checked the space.
                unsafe { self.write_record(tb, tag(kind, id), &bytes[off..off + n]) };
                if !started {
                    s.p.big_id.store(id, Ordering::Release);
                    s.p.big_tid.store(me, Ordering::Release);
                    started = true;
                }
                let puts = if last {
                    self.count_task();
                    puts.wrapping_add(1)
                } else {
                    puts
                };
                s.p.tail
                    .store(pack(puts, tb.wrapping_add(rec as u32)), Ordering::Release);
                if last {
                    s.p.big_tid.store(0, Ordering::Release);
                }
                drop(held);
                if last {
                    break Ok(());
                }
                off += n;
                idle = None;
                continue;
            }
            let snap = self.snapshot();
            drop(held);
            if let Err(e) = self.room_wait(snap, deadline, false, on_wait, &mut idle) {
                break Err(e);
            }
        };
        if result.is_err() && started {
            // Give up the item: clear `big_tid` so its receiver drops the
            // part it has and small writers go on.
            if let Some(held) = self.lock(&s.p.put_lock, Deadline::NEVER) {
                if s.p.big_id.load(Ordering::Relaxed) == id
                    && s.p.big_tid.load(Ordering::Relaxed) == me
                {
                    s.p.big_tid.store(0, Ordering::Release);
                }
                drop(held);
            }
        }
        result
    }

    /// Takes one item's payload, waiting until `deadline`.
    ///
    /// A large item is received as its chunks arrive, into a buffer that
    /// grows with them. Past the deadline nothing more is awaited: the
    /// chunks already in the ring when the deadline passed are taken, and
    /// if the item is still incomplete the call fails with
    /// [`GetFail::Empty`] and keeps what it received in the handle; the next
    /// get of this process (from any thread) goes on from there, so a slow
    /// large item is never started over.
    #[inline]
    #[cfg_attr(not(feature = "pool"), allow(dead_code))]
    pub(crate) fn get(&self, deadline: Deadline) -> Result<Payload, GetFail> {
        self.get_noting(deadline, &mut |_| {})
    }

    /// [`get`](Core::get), leaving a small payload in `buf` (read it with
    /// [`Got::bytes`]): the queue's own gets, which decode it from there,
    /// so the payload is copied once, out of the ring.
    #[inline]
    pub(crate) fn get_into(
        &self,
        deadline: Deadline,
        buf: &mut [u8; INLINE],
    ) -> Result<Got, GetFail> {
        let empty_at = match self.get_fast(buf) {
            Ok(got) => return Ok(got),
            Err(empty_at) => empty_at,
        };
        // Found empty (and nothing else unusual): wait for the tail to
        // move, looking every few pauses as `wait` does, and take the item
        // the fast way; the general path does the rest (and the sleep).
        if let Some(tail) = empty_at
            && !deadline.expired()
        {
            let p = &self.shared.p.tail;
            let mut i = 0u32;
            let moved = SPIN.spin_until(deadline, || {
                i = i.wrapping_add(1);
                (i.is_multiple_of(LOOK_EVERY) && p.load(Ordering::Relaxed) != tail).then_some(())
            });
            if moved.is_some()
                && let Ok(got) = self.get_fast(buf)
            {
                return Ok(got);
            }
        }
        self.get_inner(deadline, &mut |_| {}, None, buf)
    }

    /// The common get, in one run of loads and stores without calls: the
    /// consumers' lock held on its bias by this thread, no large item kept
    /// by this handle, the ring (not the spill) with a whole small item at
    /// the head. `Err`: nothing was taken (the tail a consumer saw last
    /// may be brought up to date, as any get does), with the tail if the
    /// ring was found empty and nothing else unusual; the general path,
    /// [`get_inner`](Core::get_inner), then handles the case, the errors
    /// and the waits. What it takes, it takes as `get_inner` does: the
    /// payload copied out, then the head in one store (the commit).
    #[inline(always)]
    fn get_fast(&self, buf: &mut [u8; INLINE]) -> Result<Got, Option<u64>> {
        let s = self.shared();
        if !self.stash.is_empty() {
            return Err(None);
        }
        let m = &s.g.get_lock;
        if !bias::enter(&m.word, &m.slots, thread::tid()) {
            return Err(None);
        }
        let held = Held {
            core: self,
            how: HELD_GET | HELD_BIASED,
        };
        let head = s.g.head.load(Ordering::Relaxed);
        let (gets, hb) = unpack(head);
        let mut tail = s.g.tail_seen.load(Ordering::Relaxed);
        if unpack(tail).1 == hb {
            tail = s.p.tail.load(Ordering::Acquire);
            s.g.tail_seen.store(tail, Ordering::Relaxed);
        }
        let tb = unpack(tail).1;
        // (In the spill, `MODE` is set: the general path goes on there.)
        let mut got = Err(None);
        if head & MODE != 0 || !self.sane(head, tail) {
            // The general path: the spill, or counters to report.
        } else if hb == tb {
            got = Err(Some(tail));
        } else {
            // SAFETY: the ring's mapping lives as long as `self`; head !=
            // tail, both sane (the tail loaded with Acquire, now or by the
            // consumer that stored `tail_seen`), so a committed record
            // starts at head; `get_lock` is held (on its bias).
            let (len, tg) = unsafe { Self::header_in(&self.bytes, hb as u64) };
            let rec = rec_len(len as u64);
            // Only a whole small item; anything else (or a length no
            // producer writes) goes the general way.
            if tg == tag(KIND_ITEM, 0)
                && len as usize <= INLINE
                && len as usize <= self.chunk_max()
                && rec <= tb.wrapping_sub(hb) as u64
            {
                // SAFETY: as above, and the record of `len` payload bytes
                // lies within the committed bytes (checked just above).
                got =
                    Ok(unsafe { Self::read_payload_in(&self.bytes, hb as u64, len as usize, buf) });
                s.g.head.store(
                    pack(gets.wrapping_add(1), hb.wrapping_add(rec as u32)),
                    Ordering::Release,
                );
            }
        }
        drop(held);
        got
    }

    /// [`get`](Core::get), calling `on_take` with the item's first bytes
    /// (a whole small item, or a large item's first chunk) while the item
    /// is still in the ring, just before it is taken out (under the
    /// consumers' lock). A consumer killed before `on_take` leaves the item
    /// in the ring; one killed after it has noted what it took. The pool
    /// notes there which task a worker holds.
    pub(crate) fn get_noting(
        &self,
        deadline: Deadline,
        on_take: &mut dyn FnMut(&[u8]),
    ) -> Result<Payload, GetFail> {
        let mut buf = [0u8; INLINE];
        let got = self.get_inner(deadline, on_take, None, &mut buf)?;
        Ok(got.into_payload(buf))
    }

    /// aio hook (issue 17): a get that never waits; where it would wait it
    /// fills `park.wait` and reports [`GetFail::Empty`] (a large item
    /// received in part is kept in the handle, as at a deadline).
    #[cfg(feature = "tokio")]
    pub(crate) fn get_parked(&self, park: &mut Park) -> Result<Payload, GetFail> {
        park.wait = None;
        let mut buf = [0u8; INLINE];
        let got = self.get_inner(Deadline::NEVER, &mut |_| {}, Some(park), &mut buf)?;
        Ok(got.into_payload(buf))
    }

    fn get_inner(
        &self,
        deadline: Deadline,
        on_take: &mut dyn FnMut(&[u8]),
        mut park: ParkRef<'_>,
        buf: &mut [u8; INLINE],
    ) -> Result<Got, GetFail> {
        let s = self.shared();
        let me = thread::tid();
        #[cfg(feature = "tokio")]
        let mut suspect = park.as_ref().is_some_and(|p| p.suspect);
        #[cfg(not(feature = "tokio"))]
        let mut suspect = false;
        // The large item being received, kept by an earlier get of this
        // process if it reached its deadline in the middle of one.
        let mut rx: Option<Box<Partial>> = self.stash.take().filter(|p| p.pid == thread::pid());
        // The tail when this call first found its deadline passed: the
        // records before it are taken without waiting, no later ones.
        let mut late: Option<u32> = None;
        loop {
            let Some(held) = self.lock(&s.g.get_lock, deadline) else {
                return self.keep(rx);
            };
            if let Some(p) = &mut rx
                && p.owner != me
            {
                // Kept by another get of this process: go on with it if the
                // consumers still know it as ours (nobody discarded it).
                if s.g.rx_tid.load(Ordering::Relaxed) == p.owner
                    && s.g.rx_id.load(Ordering::Relaxed) == p.id
                {
                    s.g.rx_tid.store(me, Ordering::Release);
                    p.owner = me;
                } else {
                    rx = None;
                }
            }
            let (head, in_spill) = self.side(&s.g.head, &s.g.sp_head);
            if let Some(sp) = &self.spill
                && let Some(sh) = in_spill
            {
                // A large item cannot go on in the spill.
                if rx.is_some() {
                    self.abandon_rx(&mut rx, me);
                }
                match self.spill_get(sp, sh, head, on_take, buf) {
                    SpillGet::Item(p) => return Ok(p),
                    SpillGet::Back => continue,
                    SpillGet::Corrupt => {
                        self.poison();
                        return Err(GetFail::Closed);
                    }
                    SpillGet::Empty => {
                        if self.is_closed() {
                            return Err(GetFail::Closed);
                        }
                        let snap = self.snapshot();
                        drop(held);
                        if deadline.expired() {
                            return self.keep(rx);
                        }
                        #[cfg(feature = "tokio")]
                        if let Some(p) = park.as_deref_mut() {
                            p.wait = Some((snap, false));
                            return self.keep(rx);
                        }
                        suspect = self.wait(&s.w.not_empty, snap, deadline, false);
                        continue;
                    }
                }
            }
            let (gets, hb) = unpack(head);
            // Records before the tail a consumer saw last are committed:
            // take them without touching the producers' cache line.
            let mut tail = s.g.tail_seen.load(Ordering::Relaxed);
            let (mut big_tid, mut big_id) = (0, 0);
            if unpack(tail).1 == hb || rx.is_some() {
                // The writer's state is read before the tail: a writer that
                // cleared `big_tid` had published its last chunk before.
                big_tid = s.p.big_tid.load(Ordering::Acquire);
                big_id = s.p.big_id.load(Ordering::Acquire);
                tail = s.p.tail.load(Ordering::Acquire);
                s.g.tail_seen.store(tail, Ordering::Relaxed);
            }
            if !self.sane(head, tail) {
                // The tail a consumer saw last may be old, never wrong: so
                // this is the real one, or the head, gone bad.
                self.poison();
                return Err(GetFail::Closed);
            }
            let (_, tb) = unpack(tail);
            if deadline.expired() && late.is_none() {
                late = Some(tb);
            }
            if hb == tb {
                if let Some(p) = &rx {
                    let writer_gone =
                        big_id != p.id || big_tid == 0 || (suspect && !thread::alive(big_tid));
                    if writer_gone || s.g.rx_tid.load(Ordering::Relaxed) != me {
                        self.abandon_rx(&mut rx, me);
                    }
                }
                if rx.is_none() && self.is_closed() {
                    return Err(GetFail::Closed);
                }
                let snap = self.snapshot();
                drop(held);
                if deadline.expired() {
                    return self.keep(rx);
                }
                #[cfg(feature = "tokio")]
                if let Some(p) = park.as_deref_mut() {
                    p.wait = Some((snap, rx.is_some()));
                    return self.keep(rx);
                }
                #[cfg(not(feature = "tokio"))]
                let _ = park.as_deref_mut();
                suspect = self.wait(&s.w.not_empty, snap, deadline, rx.is_some());
                continue;
            }
            if rx.is_some() && late.is_some_and(|l| hb.wrapping_sub(l) as i32 >= 0) {
                // Everything that was there at the deadline is taken.
                drop(held);
                return self.keep(rx);
            }
            // SAFETY: head != tail (loaded with Acquire), so a committed
            // record starts at head; `get_lock` is held.
            let (len, tg) = unsafe { self.header_at(hb) };
            let kind = tg & 3;
            let id = tg >> 2;
            // No producer writes a record longer than a chunk, nor one past
            // the committed bytes: such a length would send the copies below
            // past the record (and make a buffer as large as it says).
            if len as usize > self.chunk_max() || rec_len(len as u64) > tb.wrapping_sub(hb) as u64 {
                self.poison();
                return Err(GetFail::Closed);
            }
            let rec = rec_len(len as u64) as u32;
            let next = |taken: bool| pack(gets.wrapping_add(taken as u32), hb.wrapping_add(rec));
            if let Some(p) = &mut rx {
                if (kind == KIND_CONT || kind == KIND_LAST)
                    && id == p.id
                    && s.g.rx_tid.load(Ordering::Relaxed) == me
                {
                    // SAFETY: a committed record of `len` payload bytes
                    // starts at head; `get_lock` is held.
                    unsafe {
                        self.append_at(hb.wrapping_add(HDR as u32), len as usize, &mut p.buf)
                    };
                    let last = kind == KIND_LAST;
                    s.g.head.store(next(last), Ordering::Release);
                    if last {
                        s.g.rx_tid.store(0, Ordering::Release);
                    }
                    drop(held);
                    if last {
                        let p = rx.take().expect("receiving");
                        return Ok(Got::Heap(p.buf));
                    }
                    suspect = false;
                    continue;
                }
                // Something else is at the head: our item will not be
                // completed.
                self.abandon_rx(&mut rx, me);
            }
            match kind {
                KIND_ITEM if tg == JUMP && len == 0 && self.spill.is_some() => {
                    // The next items are in the spill.
                    let sh = s.g.sp_head.load(Ordering::Relaxed);
                    if sp_unpack(sh).2 {
                        // (Before the jump: a consumer killed after this
                        // store still takes from the ring.)
                        s.g.sp_head.store(sh & !1, Ordering::Relaxed);
                    }
                    s.g.head.store(
                        pack(gets, hb.wrapping_add(HDR as u32)) | MODE,
                        Ordering::Release,
                    );
                    drop(held);
                    continue;
                }
                KIND_ITEM if id != 0 => {
                    // No producer writes such a record here.
                    self.poison();
                    return Err(GetFail::Closed);
                }
                KIND_ITEM => {
                    // SAFETY: a committed record starts at head; `get_lock`
                    // is held.
                    let got = unsafe { self.read_payload(hb, len as usize, buf) };
                    on_take(got.bytes(buf));
                    s.g.head.store(next(true), Ordering::Release);
                    drop(held);
                    return Ok(got);
                }
                KIND_FIRST => {
                    let mut buf = Vec::new();
                    // SAFETY: a committed record of `len` payload bytes
                    // starts at head; `get_lock` is held.
                    unsafe { self.append_at(hb.wrapping_add(HDR as u32), len as usize, &mut buf) };
                    on_take(&buf);
                    s.g.head.store(next(false), Ordering::Release);
                    s.g.rx_id.store(id, Ordering::Release);
                    s.g.rx_tid.store(me, Ordering::Release);
                    drop(held);
                    rx = Some(Box::new(Partial {
                        pid: thread::pid(),
                        owner: me,
                        id,
                        buf,
                    }));
                    suspect = false;
                }
                _ => {
                    let rt = s.g.rx_tid.load(Ordering::Relaxed);
                    let receiving = rt != 0
                        && rt != me
                        && s.g.rx_id.load(Ordering::Relaxed) == id
                        && (!suspect || thread::alive(rt));
                    if receiving {
                        // Another consumer's chunk: wait for it to take it.
                        let snap = self.snapshot();
                        drop(held);
                        if deadline.expired() {
                            return Err(GetFail::Empty);
                        }
                        #[cfg(feature = "tokio")]
                        if let Some(p) = park.as_deref_mut() {
                            p.wait = Some((snap, true));
                            return Err(GetFail::Empty);
                        }
                        suspect = self.wait(&s.w.not_empty, snap, deadline, true);
                        continue;
                    }
                    // A chunk nobody receives (its receiver died or gave
                    // up): discard it. A discarded last chunk counts as
                    // taken, as its item was counted when put.
                    s.g.head.store(next(kind == KIND_LAST), Ordering::Release);
                    if s.g.rx_id.load(Ordering::Relaxed) == id {
                        s.g.rx_tid.store(0, Ordering::Release);
                    }
                    drop(held);
                }
            }
        }
    }

    /// A get in the spill (`get_lock` held, the consumers in the spill, `sh`
    /// and `head` the packed spill and ring heads).
    fn spill_get(
        &self,
        sp: &Spill,
        sh: u64,
        head: u64,
        on_take: &mut dyn FnMut(&[u8]),
        buf: &mut [u8; INLINE],
    ) -> SpillGet {
        let s = self.shared();
        let (gets, pos, _) = sp_unpack(sh);
        // Records before the spill tail a consumer saw last are committed:
        // the producers' line is loaded only past them.
        let mut avail = sp_dist(sp_unpack(s.g.sp_tail_seen.load(Ordering::Relaxed)).1, pos);
        if avail == 0 || avail > SPILL_CAP as u64 {
            let st = s.p.sp_tail.load(Ordering::Acquire);
            s.g.sp_tail_seen.store(st, Ordering::Relaxed);
            avail = sp_dist(sp_unpack(st).1, pos);
        }
        if avail > SPILL_CAP as u64 {
            return SpillGet::Corrupt;
        }
        if avail == 0 {
            return SpillGet::Empty;
        }
        // SAFETY: `pos` is a multiple of 8 (see `sp_unpack`) before the
        // spill's tail loaded with `Acquire`: a committed header; the
        // spill's mapping lives as long as `self`.
        let (len, tg) = unsafe { Self::header_in(&sp.bytes, pos) };
        let rec = rec_len(len as u64);
        if len as usize > SPILL_ITEM_MAX || rec > avail {
            return SpillGet::Corrupt;
        }
        if tg == tag(KIND_ITEM, 0) {
            // SAFETY: a committed record of `len` payload bytes (less than
            // the spill's size) starts at `pos`; `get_lock` is held.
            let got = unsafe { Self::read_payload_in(&sp.bytes, pos, len as usize, buf) };
            on_take(got.bytes(buf));
            s.g.sp_head.store(
                sp_pack(gets.wrapping_add(1), pos + rec, false),
                Ordering::Release,
            );
            self.give_back(sp, pos + rec);
            SpillGet::Item(got)
        } else if tg == BACK && len == 0 {
            // The next items are in the ring again. Two stores: one killed
            // between them is finished by the next consumer (the bit).
            s.g.sp_head
                .store(sp_pack(gets, pos + HDR, true), Ordering::Release);
            s.g.head.store(head & !MODE, Ordering::Release);
            self.give_back(sp, pos + HDR);
            SpillGet::Back
        } else {
            SpillGet::Corrupt
        }
    }

    /// Gives the spill's pages before byte counter `upto` (rounded down to
    /// a [`GRAIN`]) back to the kernel, from where the last consumer left
    /// off (`get_lock` held). A failure only keeps memory in use a while
    /// longer.
    fn give_back(&self, sp: &Spill, upto: u64) {
        let s = self.shared();
        let done = upto & !(GRAIN - 1) & (SP_MOD - 1);
        let from = s.g.sp_freed.load(Ordering::Relaxed);
        let n = sp_dist(done, from);
        if n == 0 || n > SPILL_CAP as u64 || !from.is_multiple_of(GRAIN) {
            // (Impossible values are refused by the producers, which
            // poison the queue.)
            return;
        }
        let (arena, at, _) = sp.alloc.location();
        let map = arena.mapping();
        let off = sp.bytes.offset(from);
        let first = (n as usize).min(SPILL_CAP - off);
        // Best effort: pages not given back stay in use until the spill
        // comes round to them again (or the queue goes).
        let _ = map.discard(at + off, first);
        if first < n as usize {
            let _ = map.discard(at, n as usize - first);
        }
        s.g.sp_freed.store(done, Ordering::Release);
    }

    /// Keeps a large item received in part (if any) for the next get of
    /// this process, and reports that nothing came in time.
    fn keep(&self, rx: Option<Box<Partial>>) -> Result<Got, GetFail> {
        if let Some(p) = rx {
            self.stash.put(p);
        }
        Err(GetFail::Empty)
    }

    /// Drops a large item being received (`get_lock` held).
    fn abandon_rx(&self, rx: &mut Option<Box<Partial>>, me: u32) {
        let g = &self.shared.g;
        if g.rx_tid.load(Ordering::Relaxed) == me {
            g.rx_tid.store(0, Ordering::Release);
        }
        *rx = None;
    }

    /// Test hook: takes `put_lock`, writes a record at the tail without
    /// publishing it, and keeps the lock: what a writer killed mid-put
    /// leaves behind. Returns false if the ring had no room.
    pub(crate) fn hold_lock_mid_put(&self, bytes: &[u8]) -> bool {
        let s = self.shared();
        let Some(held) = self.lock(&s.p.put_lock, Deadline::NEVER) else {
            return false;
        };
        let tail = s.p.tail.load(Ordering::Relaxed);
        let head = s.g.head.load(Ordering::Acquire);
        let rec = rec_len(bytes.len() as u64);
        if bytes.len() > self.chunk_max()
            || !self.sane(head, tail)
            || !self.room(head, tail, rec, false)
        {
            return false;
        }
        // SAFETY: `put_lock` is held and `room` checked the space.
        unsafe { self.write_record(unpack(tail).1, tag(KIND_ITEM, 0), bytes) };
        std::mem::forget(held);
        true
    }

    /// Test hook: overwrites the length word of the record at the head, as
    /// any process mapping the ring could. False if the ring is empty.
    pub(crate) fn scribble_head_len(&self, len: u32) -> bool {
        let s = self.shared();
        let (head, tail) = (
            s.g.head.load(Ordering::Acquire),
            s.p.tail.load(Ordering::Acquire),
        );
        if !self.sane(head, tail) || head == tail {
            return false;
        }
        // SAFETY: the head is on the 8-byte grid (checked by `sane`), so
        // this is the header's word, in the ring, which lives as long as
        // `self`; consumers read it only under `get_lock`, after this store
        // in this test's program order.
        let word = unsafe { self.bytes.word(unpack(head).1 as u64) };
        let old = word.load(Ordering::Relaxed);
        word.store((old & !0xffff_ffff) | len as u64, Ordering::Release);
        true
    }

    /// Test hook: whether the producers put in the spill now.
    pub(crate) fn spilling(&self) -> bool {
        self.shared.p.tail.load(Ordering::Acquire) & MODE != 0
    }

    /// Test hook: overwrites the spill's tail (`which` 0) or head (1), or
    /// the length word of the record at the spill's head (2), with `v`, as
    /// any process mapping the queue could. False without a spill (or, for
    /// 2, with an empty one).
    pub(crate) fn scribble_spill(&self, which: u8, v: u64) -> bool {
        let s = self.shared();
        let Some(sp) = &self.spill else { return false };
        match which {
            0 => s.p.sp_tail.store(v, Ordering::Release),
            1 => s.g.sp_head.store(v, Ordering::Release),
            _ => {
                let (_, h, _) = sp_unpack(s.g.sp_head.load(Ordering::Acquire));
                let (_, t, _) = sp_unpack(s.p.sp_tail.load(Ordering::Acquire));
                if h == t {
                    return false;
                }
                // SAFETY: `h` is a multiple of 8 (see `sp_unpack`): a word
                // inside the spill, whose mapping lives as long as `self`;
                // accessed atomically only.
                let word = unsafe { sp.bytes.word(h) };
                let old = word.load(Ordering::Relaxed);
                word.store((old & !0xffff_ffff) | (v & 0xffff_ffff), Ordering::Release);
            }
        }
        true
    }

    /// Test hook: whether the producers' lock (`getters` false) or the
    /// consumers' is biased to the calling thread now (see [`bias`]).
    pub(crate) fn biased_to_me(&self, getters: bool) -> bool {
        let m = if getters {
            &self.shared.g.get_lock
        } else {
            &self.shared.p.put_lock
        };
        m.word.load(Ordering::Relaxed) & (bias::OWNER | bias::BIASED)
            == thread::tid() | bias::BIASED
    }

    /// Test hook: takes `get_lock` and keeps it: what a consumer killed
    /// mid-get leaves behind.
    pub(crate) fn hold_lock_mid_get(&self) {
        if let Some(held) = self.lock(&self.shared.g.get_lock, Deadline::NEVER) {
            std::mem::forget(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_item() -> Core {
        let c = Core::new(0, MIN_CAP, false).unwrap();
        c.put(b"hello", Deadline::NEVER).unwrap();
        c
    }

    /// The bytes of test item `i`, `len` of them.
    fn item(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 31 + j * 7 + j / 251) as u8).collect()
    }

    /// Test item `i`'s length: odd sizes around the inline limit and the
    /// word size, now and then one longer than the ring (sent in chunks).
    fn item_len(i: usize) -> usize {
        match i % 50 {
            17 => 3 * MIN_CAP + 13,
            33 => MIN_CAP - 3,
            _ => (i * 37 + i * i) % 301,
        }
    }

    #[test]
    fn a_short_piece_becomes_the_word_of_its_zero_padded_bytes() {
        let bytes: Vec<u8> = (1..=8).map(|b| b * 0x11).collect();
        for n in 0..=8 {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(
                word_of(&bytes[..n]),
                u64::from_ne_bytes(padded),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn get_into_leaves_every_small_size_in_a_reused_buffer_intact() {
        // Every length up to a little past the inline limit, in a ring
        // small enough that records cross its end, through one buffer that
        // still holds the previous (longer or shorter) item's bytes.
        let c = Core::new(0, MIN_CAP, false).unwrap();
        let mut buf = [0xA5u8; INLINE];
        for round in 0..40 {
            for len in 0..=INLINE + 9 {
                let want = item(round * 1000 + len, len);
                c.put(&want, Deadline::NEVER).unwrap();
                let got = c.get_into(Deadline::NEVER, &mut buf).ok().unwrap();
                assert_eq!(got.bytes(&buf), &want[..], "round {round}, {len} bytes");
                assert_eq!(matches!(got, Got::Inline(_)), len <= INLINE);
            }
        }
        assert!(matches!(
            c.get_into(Deadline::after(Duration::ZERO), &mut buf),
            Err(GetFail::Empty)
        ));
    }

    #[test]
    fn items_of_every_size_cross_the_wrap_point_intact() {
        let c = std::sync::Arc::new(Core::new(0, MIN_CAP, false).unwrap());
        const N: usize = 1500;
        let writer = {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    let d = Deadline::after(Duration::from_secs(20));
                    c.put(&item(i, item_len(i)), d).unwrap();
                }
            })
        };
        for i in 0..N {
            let got = c.get(Deadline::after(Duration::from_secs(20))).unwrap();
            assert!(
                got.as_slice() == item(i, item_len(i)),
                "item {i} arrived damaged"
            );
        }
        writer.join().unwrap();
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn counters_wrap_past_two_to_the_32_intact() {
        // Item and byte counters just short of 2^32 (where the packed
        // halves wrap): items of every size, small and chunked, go across
        // the wrap with their count, room and order right.
        let c = Core::new(0, MIN_CAP, false).unwrap();
        let s = c.shared();
        let start = pack(u32::MAX - 5, u32::MAX - 63);
        for w in [&s.p.tail, &s.p.head_seen, &s.g.head, &s.g.tail_seen] {
            w.store(start, Ordering::Relaxed);
        }
        assert_eq!(c.len(), 0);
        let d = || Deadline::after(Duration::from_secs(20));
        for i in 0..12 {
            c.put(&item(i, 24), d()).unwrap();
            assert_eq!(c.len(), 1);
            assert_eq!(c.get(d()).unwrap().as_slice(), item(i, 24));
        }
        let (items, bytes) = unpack(s.p.tail.load(Ordering::Relaxed));
        assert!(items < 100 && bytes < 4096, "both halves wrapped");
        // Fill the ring across the wrap: room is still counted right.
        let mut n = 0;
        while c.put(&item(n, 56), Deadline::after(Duration::ZERO)).is_ok() {
            n += 1;
        }
        assert_eq!(n, MIN_CAP / 64, "a full ring holds cap / record size");
        assert_eq!(c.len(), n);
        for i in 0..n {
            assert_eq!(c.get(d()).unwrap().as_slice(), item(i, 56));
        }
        // A chunked item (larger than the ring) across the counters' wrap,
        // from another thread.
        for w in [&s.p.tail, &s.p.head_seen, &s.g.head, &s.g.tail_seen] {
            w.store(start, Ordering::Relaxed);
        }
        let c = std::sync::Arc::new(c);
        let big = item(7, 3 * MIN_CAP + 13);
        let writer = {
            let (c, big) = (c.clone(), big.clone());
            std::thread::spawn(move || c.put(&big, Deadline::after(Duration::from_secs(20))))
        };
        assert!(c.get(d()).unwrap().as_slice() == big, "the large item");
        writer.join().unwrap().unwrap();
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn another_thread_goes_on_with_an_item_a_timed_out_get_kept() {
        use std::sync::mpsc::channel;
        let c = std::sync::Arc::new(Core::new(0, MIN_CAP, false).unwrap());
        // 64 chunks of 1 KiB: the ring holds 4.
        let item: Vec<u8> = (0..64 * 1016u32).map(|i| (i % 251) as u8).collect();
        let (full_tx, full_rx) = channel::<()>();
        let (go_tx, go_rx) = channel::<()>();
        let writer = {
            let (c, item) = (c.clone(), item.clone());
            std::thread::spawn(move || {
                let mut first = true;
                c.put_with(&item, Deadline::NEVER, &mut || {
                    if first {
                        // The ring is full: stall here until told.
                        first = false;
                        let _ = full_tx.send(());
                        let _ = go_rx.recv();
                    }
                    OnWait::Sleep
                })
            })
        };
        full_rx.recv().unwrap();
        // The writer stalls mid-item: the get takes what is there and
        // returns at its deadline, keeping it.
        let t = std::time::Instant::now();
        assert!(matches!(
            c.get(Deadline::after(Duration::from_millis(50))),
            Err(GetFail::Empty)
        ));
        assert!(t.elapsed() < Duration::from_secs(1));
        go_tx.send(()).unwrap();
        // Another thread of the process goes on with it.
        let got = {
            let c = c.clone();
            std::thread::spawn(move || c.get(Deadline::after(Duration::from_secs(20))))
                .join()
                .unwrap()
        };
        match got {
            Ok(p) => assert!(p.as_slice() == item.as_slice(), "the item arrived damaged"),
            Err(e) => panic!("{e:?}"),
        }
        assert_eq!(writer.join().unwrap(), Ok(()));
        assert_eq!(c.len(), 0);
    }

    /// `put_inline` of `bytes`, from a buffer whose bytes past them are
    /// not zero: they must never show as part of the item.
    fn put_in(c: &Core, bytes: &[u8], deadline: Deadline) -> Result<(), PutFail> {
        let mut buf = [0xABu8; INLINE];
        buf[..bytes.len()].copy_from_slice(bytes);
        c.put_inline(Inline::new(&buf, bytes.len()).unwrap(), deadline)
    }

    /// A ring whose two locks are biased to this thread (so puts and gets
    /// take the fast paths), holding `items` items of 5 bytes.
    fn biased_with(items: usize) -> Core {
        let c = Core::new(0, MIN_CAP, false).unwrap();
        let mut buf = [0u8; INLINE];
        for i in 0..2 * BIAS_AFTER as usize {
            put_in(&c, &[i as u8; 5], Deadline::NEVER).unwrap();
            let got = c.get_into(Deadline::NEVER, &mut buf).unwrap();
            assert_eq!(got.bytes(&buf), &[i as u8; 5]);
        }
        assert!(c.biased_to_me(false) && c.biased_to_me(true));
        for _ in 0..items {
            put_in(&c, b"hello", Deadline::NEVER).unwrap();
        }
        c
    }

    #[test]
    fn the_fast_paths_keep_order_wrap_around_and_fall_back_when_full() {
        // A 4 KiB ring: 16-byte records wrap it many times; with no
        // consumer the 256th put finds it full and reports it (the general
        // path, which knows deadlines), and the fast get then takes all.
        let c = biased_with(0);
        let mut buf = [0u8; INLINE];
        for round in 0..40u32 {
            let mut n = 0u32;
            while put_in(
                &c,
                &(round * 1000 + n).to_le_bytes(),
                Deadline::after(Duration::ZERO),
            )
            .is_ok()
            {
                n += 1;
            }
            assert_eq!(
                n as usize,
                MIN_CAP / 16,
                "a full ring holds 16-byte records end to end"
            );
            for k in 0..n {
                let got = c
                    .get_into(Deadline::after(Duration::ZERO), &mut buf)
                    .unwrap();
                assert_eq!(got.bytes(&buf), (round * 1000 + k).to_le_bytes());
            }
            assert!(matches!(
                c.get_into(Deadline::after(Duration::ZERO), &mut buf),
                Err(GetFail::Empty)
            ));
        }
        assert!(c.biased_to_me(false) && c.biased_to_me(true));
    }

    #[test]
    fn the_fast_get_leaves_scribbled_records_to_the_checks() {
        // Each scribble on a ring whose locks are biased (the fast paths
        // look first): a length past the ring, one past the committed
        // bytes, counters off the grid. Each poisons the queue as the
        // general path does; none is read past.
        for case in 0..3 {
            let c = biased_with(1);
            let mut buf = [0u8; INLINE];
            match case {
                0 => assert!(c.scribble_head_len(u32::MAX - 7)),
                1 => assert!(c.scribble_head_len(64)),
                _ => c.shared.p.tail.store(pack(1, 3), Ordering::Release),
            }
            c.shared.g.tail_seen.store(0, Ordering::Release);
            assert!(
                matches!(
                    c.get_into(Deadline::after(Duration::ZERO), &mut buf),
                    Err(GetFail::Closed)
                ),
                "case {case}"
            );
            assert!(c.is_corrupt(), "case {case}");
            assert!(matches!(
                c.put(b"x", Deadline::after(Duration::ZERO)),
                Err(PutFail::Closed)
            ));
        }
    }

    #[test]
    fn the_fast_put_leaves_a_scribbled_head_to_the_checks() {
        // The consumers' head off the grid, or a ring ahead of the tail:
        // the fast put finds its old head short and the real one insane,
        // writes nothing, and the general path poisons the queue.
        for head in [pack(0, 3), pack(0, 2 * MIN_CAP as u32)] {
            let c = biased_with(0);
            // A head seen last that shows the ring full, so the real one is read.
            let tail = c.shared.p.tail.load(Ordering::Relaxed);
            c.shared
                .p
                .head_seen
                .store(tail.wrapping_sub(MIN_CAP as u64), Ordering::Relaxed);
            c.shared.g.head.store(head, Ordering::Release);
            assert!(matches!(
                put_in(&c, b"x", Deadline::after(Duration::ZERO)),
                Err(PutFail::Closed)
            ));
            assert!(c.is_corrupt());
            assert_eq!(
                c.shared.p.tail.load(Ordering::Relaxed),
                tail,
                "nothing was written"
            );
        }
    }

    #[test]
    fn a_record_length_past_the_ring_poisons_the_queue() {
        // Before the check, this length made the consumer allocate 4 GiB
        // and copy it out of a 4 KiB ring.
        let c = one_item();
        assert!(c.scribble_head_len(u32::MAX - 7));
        assert!(matches!(
            c.get(Deadline::after(Duration::ZERO)),
            Err(GetFail::Closed)
        ));
        assert!(c.is_corrupt());
        assert!(matches!(
            c.put(b"x", Deadline::after(Duration::ZERO)),
            Err(PutFail::Closed)
        ));
    }

    #[test]
    fn a_record_longer_than_what_was_committed_poisons_the_queue() {
        // Within a chunk, but past the tail: bytes no producer published.
        let c = one_item();
        assert!(c.scribble_head_len(64));
        assert!(matches!(
            c.get(Deadline::after(Duration::ZERO)),
            Err(GetFail::Closed)
        ));
        assert!(c.is_corrupt());
    }

    #[test]
    fn counters_off_the_grid_or_a_ring_apart_poison_the_queue() {
        for (head, tail) in [(pack(0, 3), pack(1, 16)), (pack(0, 0), pack(1, 2 * 4096))] {
            let c = one_item();
            c.shared.g.head.store(head, Ordering::Release);
            c.shared.g.tail_seen.store(0, Ordering::Release);
            c.shared.p.tail.store(tail, Ordering::Release);
            assert!(matches!(
                c.get(Deadline::after(Duration::ZERO)),
                Err(GetFail::Closed)
            ));
            assert!(c.is_corrupt());
        }
        // The producers' side looks too.
        let c = one_item();
        c.shared.p.tail.store(pack(1, 12), Ordering::Release);
        c.shared.p.head_seen.store(pack(0, 5), Ordering::Release);
        assert!(matches!(
            c.put(b"x", Deadline::after(Duration::ZERO)),
            Err(PutFail::Closed)
        ));
        assert!(c.is_corrupt());
    }

    #[test]
    fn a_full_ring_overflows_into_the_spill_in_order() {
        // Before the spill, the ring held MIN_CAP / 16 items of 8 bytes and
        // the next put found it full.
        let c = Core::new_spilling(0, MIN_CAP, false).unwrap();
        let z = || Deadline::after(Duration::ZERO);
        let n = 10 * MIN_CAP / 16;
        for i in 0..n {
            c.put(&(i as u64).to_ne_bytes(), z()).unwrap();
        }
        assert!(c.spilling());
        // An item larger than the ring goes whole, after them.
        let big = item(3, 5 * MIN_CAP + 3);
        c.put(&big, z()).unwrap();
        assert_eq!(c.len(), n + 1);
        // Take some, put more: the producers go back to the ring once it
        // has room, the consumers follow the same way.
        let mut next = 0u64;
        let mut put = n as u64;
        let mut saw_big = false;
        for round in 0..6 {
            for _ in 0..MIN_CAP / 8 {
                let p = c.get(z()).unwrap();
                if p.as_slice().len() > 8 {
                    assert!(p.as_slice() == big.as_slice(), "the large item");
                    assert!(!saw_big);
                    saw_big = true;
                    continue;
                }
                assert_eq!(p.as_slice(), next.to_ne_bytes(), "round {round}");
                next += 1;
            }
            for _ in 0..MIN_CAP / 32 {
                c.put(&put.to_ne_bytes(), z()).unwrap();
                put += 1;
            }
        }
        while let Ok(p) = c.get(z()) {
            if p.as_slice().len() > 8 {
                assert!(!saw_big);
                saw_big = true;
                continue;
            }
            assert_eq!(p.as_slice(), next.to_ne_bytes());
            next += 1;
        }
        assert!(saw_big);
        assert_eq!(next, put, "every item, once");
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_drained_spill_gives_its_memory_back() {
        let c = Core::new_spilling(0, MIN_CAP, false).unwrap();
        let d = || Deadline::after(Duration::ZERO);
        let chunk = vec![7u8; 64 << 10];
        // 16 MiB through the spill.
        for _ in 0..256 {
            c.put(&chunk, d()).unwrap();
        }
        for _ in 0..256 {
            assert_eq!(c.get(d()).unwrap().as_slice().len(), chunk.len());
        }
        let freed = c.shared.g.sp_freed.load(Ordering::Relaxed);
        assert_eq!(freed, 16 << 20, "every whole grain given back");
        let sp = c.spill.as_ref().unwrap();
        // Given back: the pages read as zeros now.
        let mut b = [1u8; 8];
        // SAFETY: a test with one thread; the mapping lives with `c`.
        unsafe { sp.bytes.load(4096, &mut b) };
        assert_eq!(b, [0; 8]);
    }

    #[test]
    fn impossible_spill_counters_or_lengths_poison_the_queue() {
        let filled = || {
            let c = Core::new_spilling(0, MIN_CAP, false).unwrap();
            for i in 0..MIN_CAP / 8 {
                c.put(&(i as u64).to_ne_bytes(), Deadline::NEVER).unwrap();
            }
            // Take the ring's items: the head is at the jump.
            for _ in 0..MIN_CAP / 16 - 1 {
                c.get(Deadline::NEVER).unwrap();
            }
            assert!(c.spilling());
            c
        };
        let z = || Deadline::after(Duration::ZERO);
        // A tail more than a spill ahead; a record longer than committed;
        // a record longer than any item; a head past the tail.
        for (which, v) in [
            (0u8, sp_pack(5, SPILL_CAP as u64 + 4096, false)),
            (2, 4096),
            (2, u32::MAX as u64),
            (1, sp_pack(0, 1 << 20, false)),
        ] {
            let c = filled();
            assert!(c.scribble_spill(which, v));
            let mut r = c.get(z());
            while r.is_ok() {
                r = c.get(z());
            }
            assert!(matches!(r, Err(GetFail::Closed)), "{which}: {v:#x}");
            assert!(c.is_corrupt(), "{which}: {v:#x}");
        }
        // The producers' side looks too.
        let c = filled();
        assert!(c.scribble_spill(0, sp_pack(5, SPILL_CAP as u64 + 4096, false)));
        assert!(matches!(c.put(b"x", z()), Err(PutFail::Closed)));
        assert!(c.is_corrupt());
    }

    #[test]
    fn a_recorded_size_that_does_not_fit_the_ring_is_refused() {
        for bad in [0u64, 4095, 8192, 1 << 40] {
            let (shared, ring) = Core::parts(0, MIN_CAP, false, false).unwrap();
            // SAFETY: `as_ptr` points at the live header, valid for
            // `shared`'s life; only a place is named, no reference made.
            let cap = unsafe { &raw mut (*shared.as_ptr()).w.cap };
            // SAFETY: in the header, aligned; nobody else reads or writes
            // it meanwhile (this is what a hostile process could do).
            unsafe { cap.write(bad) };
            assert!(matches!(
                Core::adopt(shared, ring, None),
                Err(Error::Corrupt(_))
            ));
        }
    }
}
