//! Copies between private buffers and shared bytes that other threads (and
//! processes) may read and write at the same time.
//!
//! A plain `memcpy` over such bytes is a data race, undefined behaviour as
//! soon as another thread of this process touches them concurrently (a
//! [`SharedMemory`](crate::SharedMemory) handle is `Sync` and also hands
//! out atomics over the same bytes). These copies read and write the
//! shared side only with relaxed atomic operations: machine words where
//! the shared address is word-aligned, single bytes at the ragged ends.
//! Relaxed word loads and stores compile to plain moves, so a copy runs at
//! several GB/s; it is not vectorised, which is the price of soundness.
//! On x86-64, copies of [`STRING_MIN`] bytes or more are one `rep movsb`
//! instead (the processor's string copy, which moves whole cache lines):
//! an `asm!` block is opaque to the compiler, and its effect is exactly
//! that of a loop of relaxed single-byte atomic moves (each byte moved
//! whole, in no promised order), which Rust code could write; so it races
//! with nothing the word loop would not race with.
//!
//! A copy that overlaps a concurrent write may see part old, part new
//! bytes (each word or byte is whole). Rust's memory model does not
//! describe racing atomic accesses of different sizes to the same bytes
//! (say a copy's word store against an `AtomicU32` over half of it); on
//! the targets this crate supports (Linux on x86-64 and AArch64) aligned
//! loads and stores of up to a word are single-copy atomic in hardware,
//! so each access still sees whole old or whole new bytes.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

const WORD: usize = size_of::<usize>();

/// From this many bytes on, x86-64 copies use the string copy (see the
/// module docs); below it the word loop's start-up is cheaper.
const STRING_MIN: usize = 1024;

/// Copies `len` bytes from `src` to `dst` with one `rep movsb`.
///
/// # Safety
///
/// `src..src + len` valid for reads, `dst..dst + len` valid for writes,
/// disjoint; every concurrent access to the shared one of them, from this
/// process, atomic (the same promises as the word loops' callers make).
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn string_copy(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's promises make every byte move in bounds and
    // disjoint. The block's effect is a loop of relaxed byte-wide atomic
    // loads from `src` and stores to `dst` (x86-64 moves each byte whole),
    // which is what the word loops do at a finer grain, so it adds no data
    // race. `rep movsb` reads rcx, rsi and rdi (all clobbered, declared),
    // uses the direction flag that Rust keeps clear at an `asm!` entry, and
    // changes no flags nor the stack.
    unsafe {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        );
    }
}

/// How many bytes from `addr` lead up to the next word boundary, at most
/// `len`.
fn head_len(addr: usize, len: usize) -> usize {
    (addr.next_multiple_of(WORD) - addr).min(len)
}

/// The walk both word loops take over `len` bytes whose shared side starts
/// at address `shared`: `byte(at)` for single bytes up to the shared side's
/// first word boundary, then whole words, each read by `get(at)` and
/// written by `put(at, w)` (four reads before their four writes while four
/// words last), then single bytes again. It promises its callers that
/// every offset it passes is in bounds (`at < len` to `byte`,
/// `at + WORD <= len` to `get` and `put`), and that `shared + at` is
/// word-aligned for every offset passed to `get` and `put` (the head
/// brings it to a boundary, and `at` moves on by whole words).
#[inline(always)]
fn walk(
    shared: usize,
    len: usize,
    mut byte: impl FnMut(usize),
    get: impl Fn(usize) -> usize,
    put: impl Fn(usize, usize),
) {
    let head = head_len(shared, len);
    for at in 0..head {
        byte(at);
    }
    let mut at = head;
    while len - at >= 4 * WORD {
        let (a, b, c, d) = (
            get(at),
            get(at + WORD),
            get(at + 2 * WORD),
            get(at + 3 * WORD),
        );
        put(at, a);
        put(at + WORD, b);
        put(at + 2 * WORD, c);
        put(at + 3 * WORD, d);
        at += 4 * WORD;
    }
    while len - at >= WORD {
        put(at, get(at));
        at += WORD;
    }
    while at < len {
        byte(at);
        at += 1;
    }
}

/// Copies `dst.len()` bytes from the shared bytes at `src` into `dst`,
/// reading the shared side only atomically.
///
/// # Safety
///
/// `src..src + dst.len()` must be valid for reads (mapped, and staying
/// mapped during the call), and every concurrent access to those bytes from
/// this process must be atomic (these copies, or atomics); `dst` must not
/// overlap them, or must be borrowed exclusively for the call (it is: a
/// `&mut`), in which case nobody else may touch the overlap anyway.
pub(crate) unsafe fn load(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    if overlaps(src as usize, dst.as_ptr() as usize, len) {
        // SAFETY: the overlap is borrowed exclusively through `dst`, so no
        // other access races with this copy there; the rest of `src` is
        // valid for reads (the caller's promise); `ptr::copy` allows the
        // overlap.
        unsafe { std::ptr::copy(src, dst.as_mut_ptr(), len) };
        return;
    }
    // SAFETY: forwarded from the caller; `dst` is valid for `len` bytes of
    // writes and, checked above, disjoint from the shared range.
    unsafe { load_raw(src, dst.as_mut_ptr(), len) }
}

/// [`load`] into spare (uninitialised) room, say a `Vec`'s spare capacity;
/// every byte of `dst` is written.
///
/// # Safety
///
/// As for [`load`], except that `dst` must not overlap the shared range at
/// all.
pub(crate) unsafe fn load_uninit(src: *const u8, dst: &mut [MaybeUninit<u8>]) {
    // SAFETY: forwarded from the caller; `dst` is valid for its length of
    // writes (a `&mut`), and writing bytes into `MaybeUninit<u8>` is fine.
    unsafe { load_raw(src, dst.as_mut_ptr().cast::<u8>(), dst.len()) }
}

/// The copy behind [`load`]: relaxed atomic loads on the shared side
/// (bytes up to a word boundary, then words, four at a time while they
/// last, then bytes), plain stores into the private side.
///
/// # Safety
///
/// `src..src + len` as for [`load`]; `dst..dst + len` valid for writes and
/// disjoint from it.
#[inline]
unsafe fn load_raw(src: *const u8, dst: *mut u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if len >= STRING_MIN {
        // SAFETY: the caller's promises are `string_copy`'s.
        unsafe { string_copy(src, dst, len) };
        return;
    }
    // Every load below reads an address in `src..src + len`, readable (the
    // caller's promise); words only at word-aligned addresses (`walk`'s
    // promise, with `src` the shared side), bytes are always aligned; every
    // concurrent access is atomic (the caller's promise). Every store goes
    // to `dst..dst + len`, valid and private (the caller's promise),
    // unaligned where need be.
    let word = |at: usize| {
        let p = src.wrapping_add(at).cast::<usize>().cast_mut();
        // SAFETY: see above.
        unsafe { AtomicUsize::from_ptr(p) }.load(Ordering::Relaxed)
    };
    let byte = |at: usize| {
        // SAFETY: see above.
        unsafe { AtomicU8::from_ptr(src.wrapping_add(at).cast_mut()) }.load(Ordering::Relaxed)
    };
    let put = |at: usize, w: usize| {
        // SAFETY: see above.
        unsafe { dst.wrapping_add(at).cast::<usize>().write_unaligned(w) }
    };
    let put_byte = |at: usize, b: u8| {
        // SAFETY: see above.
        unsafe { dst.wrapping_add(at).write(b) }
    };
    walk(src as usize, len, |at| put_byte(at, byte(at)), word, put);
}

/// Copies `data` into the shared bytes at `dst`, writing the shared side
/// only atomically.
///
/// # Safety
///
/// `dst..dst + data.len()` must be valid for writes (mapped writable, and
/// staying mapped during the call), and every concurrent access to those
/// bytes from this process must be atomic. `data` may overlap them only if
/// nobody else touches the overlap during the call.
pub(crate) unsafe fn store(data: &[u8], dst: *mut u8) {
    let len = data.len();
    let src = data.as_ptr();
    if overlaps(dst as usize, src as usize, len) {
        // SAFETY: the caller promises that nobody else touches the overlap,
        // so this is no race there; `dst` is writable for `len` bytes;
        // `ptr::copy` allows the overlap.
        unsafe { std::ptr::copy(src, dst, len) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if len >= STRING_MIN {
        // SAFETY: `data` is private memory of `len` bytes, disjoint from
        // `dst` (checked above); the rest is the caller's promise.
        unsafe { string_copy(src, dst, len) };
        return;
    }
    // Every load below reads `data` (in bounds: `walk`'s promise),
    // unaligned where need be; every store goes to `dst..dst + len`,
    // writable (the caller's promise), words only at word-aligned addresses
    // (`walk`'s promise, with `dst` the shared side); every concurrent
    // access to them is atomic (the caller's promise).
    let get = |at: usize| {
        // SAFETY: see above.
        unsafe { src.wrapping_add(at).cast::<usize>().read_unaligned() }
    };
    let word = |at: usize, w: usize| {
        // SAFETY: see above.
        unsafe { AtomicUsize::from_ptr(dst.wrapping_add(at).cast::<usize>()) }
            .store(w, Ordering::Relaxed)
    };
    let byte = |at: usize| {
        // SAFETY: see above.
        unsafe { AtomicU8::from_ptr(dst.wrapping_add(at)) }.store(data[at], Ordering::Relaxed)
    };
    walk(dst as usize, len, byte, get, word);
}

/// Whether `[a, a + len)` and `[b, b + len)` share a byte.
fn overlaps(a: usize, b: usize, len: usize) -> bool {
    len != 0 && a < b.saturating_add(len) && b < a.saturating_add(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_offset_and_length() {
        copies_at_lengths(0..100, 160);
    }

    #[test]
    fn long_copies_take_the_string_copy_at_every_offset() {
        copies_at_lengths(STRING_MIN - 9..STRING_MIN + 9, STRING_MIN + 40);
        copies_at_lengths([3 * STRING_MIN + 5].into_iter(), 3 * STRING_MIN + 40);
    }

    fn copies_at_lengths(lens: impl Iterator<Item = usize> + Clone, size: usize) {
        let shared: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        for off in 0..WORD + 1 {
            for len in lens.clone() {
                let mut out = vec![0xAA; len];
                // SAFETY: `shared` holds `size` bytes, `off + len < size`; no
                // other thread touches it.
                unsafe { load(shared[off..].as_ptr(), &mut out) };
                assert_eq!(out, &shared[off..off + len]);

                let mut spare: Vec<u8> = Vec::with_capacity(len);
                // SAFETY: as above; the spare room is private.
                unsafe {
                    load_uninit(
                        shared[off..].as_ptr(),
                        &mut spare.spare_capacity_mut()[..len],
                    )
                };
                // SAFETY: `load_uninit` wrote all `len` bytes.
                unsafe { spare.set_len(len) };
                assert_eq!(spare, &shared[off..off + len]);

                let mut target = vec![0u8; size];
                let data: Vec<u8> = (0..len).map(|i| (i % 241) as u8 + 7).collect();
                // SAFETY: as above, for writes.
                unsafe { store(&data, target[off..].as_mut_ptr()) };
                assert_eq!(&target[off..off + len], &data[..]);
                assert!(target[..off].iter().all(|&b| b == 0));
                assert!(target[off + len..].iter().all(|&b| b == 0));
            }
        }
    }
}
