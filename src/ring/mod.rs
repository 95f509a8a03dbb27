//! The byte ring: the one building block under the queue (and the pool's
//! task and result queues, which are queues) and the pipe's shared-memory
//! stream.
//!
//! A ring is `cap` bytes of shared memory (`cap` a power of two) and two
//! counters that only grow: the *tail*, bytes ever written, moved by the
//! writing side, and the *head*, bytes ever read, moved by the reading
//! side. Byte counter `x` lives at offset `x % cap`; the bytes from head to
//! tail are committed (readable), the rest is free. A writer copies into
//! free space and then publishes with one `Release` store of the tail; a
//! reader copies committed bytes out and then frees them with one store of
//! the head. So a process killed at any point leaves either the old or the
//! new counter: an unpublished write is overwritten by the next writer, and
//! bytes whose head was not advanced are still there for the next reader.
//! What each user of the ring may lose beyond that (a partial message, an
//! item) is stated in its own module.
//!
//! This module holds what every ring shares:
//! - the index arithmetic: [`used`] (how far apart two counters are, with
//!   the counters' own wrap-around, refusing a distance no ring can hold),
//!   [`Bytes::split`] (where a copy at a counter lands, in one piece or two
//!   across the ring's end);
//! - the copies in and out ([`Bytes`]), always atomic (see
//!   [`shm::copy`](crate::shm::copy)): any process mapping the ring can
//!   write its bytes, which may garble data but never makes a data race
//!   here, and every copy is bounded by the ring's size as this process
//!   knows it, never by a size read from shared memory;
//! - the wake-up protocols ([`bell`]): how a side that found nothing to do
//!   registers as a sleeper without missing a publication made meanwhile.
//!
//! Users: [`records`] (the queue: records of encoded items, robust locks
//! per side, large items in chunks) and the pipe's stream
//! (`connection/stream.rs`: a plain byte stream whose reader naps on a
//! futex word, then sleeps on the pair's socket).

pub(crate) mod bell;
#[cfg(feature = "queue")]
pub(crate) mod bias;
#[cfg(feature = "queue")]
pub(crate) mod records;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::shm::copy;
use crate::shm::heap::Allocation;

/// A ring counter: bytes ever written or read, wrapping at its width (the
/// pipe keeps `u64` counters, the queue packs `u32` ones with item counts).
pub(crate) trait Counter: Copy {
    /// `self - older`, modulo the counter's width.
    fn since(self, older: Self) -> u64;
}

impl Counter for u32 {
    fn since(self, older: u32) -> u64 {
        self.wrapping_sub(older) as u64
    }
}

impl Counter for u64 {
    fn since(self, older: u64) -> u64 {
        self.wrapping_sub(older)
    }
}

/// The committed bytes between `head` and `tail` in a ring of `cap` bytes,
/// or `None` if that is more than the ring holds: no protocol of this crate
/// writes such counters, another process scribbled on them (or an old copy
/// of the head was used; the caller then loads the real one).
///
/// Wrap-around of the counters themselves is the normal case: a tail that
/// wrapped past zero while the head did not is still the right distance
/// ahead.
pub(crate) fn used<C: Counter>(tail: C, head: C, cap: usize) -> Option<usize> {
    let n = tail.since(head);
    (n <= cap as u64).then_some(n as usize)
}

/// The free bytes past `tail` in a ring of `cap` bytes (see [`used`]).
pub(crate) fn free<C: Counter>(tail: C, head: C, cap: usize) -> Option<usize> {
    used(tail, head, cap).map(|u| cap - u)
}

/// A ring's bytes: an address in a shared mapping and the ring's size, as
/// this process checked it when it made the value (never re-read from
/// shared memory).
///
/// The copies are `unsafe`: the caller's protocol must make the range
/// free space it owns (writes) or committed bytes (reads), and the mapping
/// the value was made from must still be alive (each user keeps its
/// [`Allocation`] beside it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bytes {
    base: NonNull<u8>,
    cap: usize,
}

// SAFETY: an address in a shared mapping, only ever accessed through the
// atomic copies below (which any thread may make); the mapping's lifetime
// is the owner's business (see the methods' contracts), as for
// `Allocation`, which is `Send` and `Sync` too.
unsafe impl Send for Bytes {}
// SAFETY: as above.
unsafe impl Sync for Bytes {}

impl Bytes {
    /// The `cap` bytes at `start` in `alloc`, if `cap` is a power of two of
    /// at least 8 bytes, the range lies inside the allocation's mapping and
    /// starts 8-aligned (so whole 8-byte words at multiples of 8 stay
    /// inside, and aligned: [`Bytes::word`]).
    pub(crate) fn new(alloc: &Allocation, start: usize, cap: usize) -> Option<Bytes> {
        let fits = cap.is_power_of_two()
            && cap >= 8
            && start
                .checked_add(cap)
                .is_some_and(|end| end <= crate::shm::usable_len(alloc));
        if !fits {
            return None;
        }
        let base = NonNull::new(alloc.ptr().as_ptr().wrapping_add(start))?;
        base.as_ptr()
            .cast::<u64>()
            .is_aligned()
            .then_some(Bytes { base, cap })
    }

    #[cfg_attr(not(feature = "queue"), allow(dead_code))]
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// The offset of byte counter `pos`.
    pub(crate) fn offset(&self, pos: u64) -> usize {
        (pos as usize) & (self.cap - 1)
    }

    /// Where `len` bytes at counter `pos` lie: their offset and how many
    /// fit before the ring's end (the rest, if any, starts at offset 0).
    /// `len` must be at most `cap`.
    pub(crate) fn split(&self, pos: u64, len: usize) -> (usize, usize) {
        let off = self.offset(pos);
        (off, len.min(self.cap - off))
    }

    /// The address of offset `off` (in the ring for `off < cap`).
    fn at(&self, off: usize) -> *mut u8 {
        self.base.as_ptr().wrapping_add(off)
    }

    /// Copies `src` (at most `cap` bytes) into the ring at counter `pos`,
    /// wrapping.
    ///
    /// # Safety
    ///
    /// The mapping this was made from is alive, and `[pos, pos +
    /// src.len())` is free space that only the calling thread writes in this
    /// process (the writers' lock is held, or there is one writer).
    pub(crate) unsafe fn store(&self, pos: u64, src: &[u8]) {
        debug_assert!(src.len() <= self.cap);
        let (off, first) = self.split(pos, src.len());
        let (a, b) = src.split_at(first);
        // SAFETY: `off + first <= cap`: inside the ring, which is mapped
        // (the caller's promise). Every access to ring bytes in this process
        // is atomic (these copies, `word`), so the caller's protocol orders
        // them and another process's stray writes race with nothing; `src`
        // is private memory.
        unsafe { copy::store(a, self.at(off)) };
        if !b.is_empty() {
            // SAFETY: `src.len() - first <= cap`: the rest, from the ring's
            // start, stays inside it; as above.
            unsafe { copy::store(b, self.at(0)) };
        }
    }

    /// Copies the ring bytes at counter `pos` into `dst` (at most `cap`
    /// bytes), wrapping.
    ///
    /// # Safety
    ///
    /// The mapping this was made from is alive, and `[pos, pos +
    /// dst.len())` is committed (before a tail loaded with `Acquire`, not
    /// yet freed: the readers' lock is held, or there is one reader), or is
    /// free space the calling thread wrote.
    pub(crate) unsafe fn load(&self, pos: u64, dst: &mut [u8]) {
        debug_assert!(dst.len() <= self.cap);
        let (off, first) = self.split(pos, dst.len());
        let (a, b) = dst.split_at_mut(first);
        // SAFETY: as in `store`, the copies going the other way (atomic
        // loads); `dst` is private memory.
        unsafe { copy::load(self.at(off), a) };
        if !b.is_empty() {
            // SAFETY: as in `store`.
            unsafe { copy::load(self.at(0), b) };
        }
    }

    /// Appends the `len` ring bytes (at most `cap`) at counter `pos` to
    /// `buf`, which grows by that much (copied into its spare room, no
    /// zero-filling first).
    ///
    /// # Safety
    ///
    /// As for [`Bytes::load`], for `[pos, pos + len)`.
    pub(crate) unsafe fn append(&self, pos: u64, len: usize, buf: &mut Vec<u8>) {
        debug_assert!(len <= self.cap);
        buf.reserve(len);
        let spare = &mut buf.spare_capacity_mut()[..len];
        let (off, first) = self.split(pos, len);
        let (a, b) = spare.split_at_mut(first);
        // SAFETY: as in `load`; the spare room is private to this process.
        unsafe { copy::load_uninit(self.at(off), a) };
        if !b.is_empty() {
            // SAFETY: as in `load`.
            unsafe { copy::load_uninit(self.at(0), b) };
        }
        let new_len = buf.len() + len;
        // SAFETY: the `len` bytes after the old length were written above,
        // within the capacity reserved.
        unsafe { buf.set_len(new_len) };
    }

    /// The 8-byte word at counter `pos`, rounded down to a multiple of 8.
    ///
    /// # Safety
    ///
    /// The mapping this was made from is alive (the word is then inside
    /// the ring and aligned: `cap` and the start are multiples of 8). What
    /// the caller may do with it is as for the copies: load committed
    /// words, store free ones it owns.
    #[cfg_attr(not(feature = "queue"), allow(dead_code))]
    #[inline]
    pub(crate) unsafe fn word(&self, pos: u64) -> &AtomicU64 {
        let off = self.offset(pos) & !7;
        // SAFETY: `off + 8 <= cap`, 8-aligned (see `Bytes::new`), mapped
        // (the caller's promise); only ever accessed atomically here.
        unsafe { AtomicU64::from_ptr(self.at(off).cast::<u64>()) }
    }

    /// Loads the word at `pos` (see [`Bytes::word`]).
    ///
    /// # Safety
    ///
    /// As for [`Bytes::word`].
    #[cfg_attr(not(feature = "queue"), allow(dead_code))]
    #[inline]
    pub(crate) unsafe fn load_word(&self, pos: u64) -> u64 {
        // SAFETY: forwarded.
        unsafe { self.word(pos) }.load(Ordering::Relaxed)
    }

    /// Stores the word at `pos` (see [`Bytes::word`]).
    ///
    /// # Safety
    ///
    /// As for [`Bytes::word`].
    #[cfg_attr(not(feature = "queue"), allow(dead_code))]
    #[inline]
    pub(crate) unsafe fn store_word(&self, pos: u64, v: u64) {
        // SAFETY: forwarded.
        unsafe { self.word(pos) }.store(v, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::heap;

    #[test]
    fn used_and_free_across_counter_wrap_around() {
        let cap = 4096;
        // Empty, full, in between.
        assert_eq!(used(100u64, 100u64, cap), Some(0));
        assert_eq!(free(100u64, 100u64, cap), Some(cap));
        assert_eq!(used(100u64 + 4096, 100u64, cap), Some(cap));
        assert_eq!(free(100u64 + 4096, 100u64, cap), Some(0));
        assert_eq!(used(150u64, 100u64, cap), Some(50));
        // The tail wrapped past zero, the head not yet: u32 counters (the
        // queue's) and u64 ones (the pipe's).
        assert_eq!(used(8u32, u32::MAX - 7, cap), Some(16));
        assert_eq!(used(8u64, u64::MAX - 7, cap), Some(16));
        assert_eq!(free(8u32, u32::MAX - 7, cap), Some(cap - 16));
        // Both wrapped: plain again.
        assert_eq!(used(u32::MAX, u32::MAX - 4096, cap), Some(cap));
        // More than a ring apart, or the head past the tail (which wraps to
        // a huge distance): refused, never a negative free count.
        assert_eq!(used(100u64 + 4097, 100u64, cap), None);
        assert_eq!(used(100u64, 101u64, cap), None);
        assert_eq!(used(0u32, 1u32, cap), None);
        assert_eq!(free(0u64, 8u64, cap), None);
        // A 1 GiB ring with u32 counters: full is still told from empty.
        assert_eq!(used(1u32 << 30, 0u32, 1 << 30), Some(1 << 30));
        assert_eq!(used((1u32 << 30) + 8, 0u32, 1 << 30), None);
    }

    #[test]
    fn split_finds_the_wrap_point() {
        let map = heap::alloc_lazy(64).unwrap();
        let r = Bytes::new(&map, 0, 64).unwrap();
        assert_eq!(r.split(0, 64), (0, 64));
        assert_eq!(r.split(60, 4), (60, 4));
        assert_eq!(r.split(60, 5), (60, 4));
        assert_eq!(r.split(64 + 63, 64), (63, 1));
        assert_eq!(r.split(u64::MAX, 2), (63, 1));
        assert_eq!(r.split(u32::MAX as u64, 0), (63, 0));
    }

    #[test]
    fn bytes_refuses_what_does_not_fit_its_mapping() {
        let map = heap::alloc_lazy(8192).unwrap();
        let len = crate::shm::usable_len(&map);
        assert!(Bytes::new(&map, 0, 4096).is_some());
        assert!(Bytes::new(&map, 4096, 4096).is_some());
        assert!(Bytes::new(&map, 0, 3000).is_none(), "not a power of two");
        assert!(Bytes::new(&map, 0, 4).is_none(), "less than a word");
        assert!(Bytes::new(&map, 4, 64).is_none(), "not 8-aligned");
        assert!(Bytes::new(&map, len - 2048, 4096).is_none(), "past the end");
        assert!(Bytes::new(&map, usize::MAX - 10, 4096).is_none());
    }

    #[test]
    fn copies_wrap_around_the_ring_end_intact() {
        let map = heap::alloc_lazy(64).unwrap();
        let r = Bytes::new(&map, 0, 64).unwrap();
        for pos in [0u64, 1, 7, 8, 57, 63, 64 * 1000 + 61, u64::MAX - 2] {
            for len in [0usize, 1, 3, 8, 9, 40, 64] {
                let src: Vec<u8> = (0..len)
                    .map(|i| (i as u64 * 31).wrapping_add(pos) as u8)
                    .collect();
                // SAFETY: one thread, no protocol: every byte is ours.
                unsafe { r.store(pos, &src) };
                let mut back = vec![0u8; len];
                // SAFETY: as above.
                unsafe { r.load(pos, &mut back) };
                assert_eq!(back, src, "at {pos}, {len} bytes");
                let mut app = vec![9u8];
                // SAFETY: as above.
                unsafe { r.append(pos, len, &mut app) };
                assert_eq!(&app[1..], &src[..], "appended at {pos}, {len} bytes");
            }
        }
        // Words: whole and aligned, the last one ends at the ring's end.
        // SAFETY: as above.
        unsafe { r.store_word(56, 0x0102_0304_0506_0708) };
        // SAFETY: as above.
        assert_eq!(unsafe { r.load_word(64 + 60) }, 0x0102_0304_0506_0708);
        let mut b = [0u8; 8];
        // SAFETY: as above.
        unsafe { r.load(56, &mut b) };
        assert_eq!(u64::from_ne_bytes(b), 0x0102_0304_0506_0708);
    }
}
