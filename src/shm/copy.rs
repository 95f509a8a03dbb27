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
//!
//! A copy that overlaps a concurrent write may see part old, part new
//! bytes (each word or byte is whole). Rust's memory model does not
//! describe racing atomic accesses of different sizes to the same bytes
//! (say a copy's word store against an `AtomicU32` over half of it); on
//! the targets this crate supports (Linux on x86-64 and AArch64) aligned
//! loads and stores of up to a word are single-copy atomic in hardware,
//! so each access still sees whole old or whole new bytes.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

const WORD: usize = size_of::<usize>();

/// How many bytes from `addr` lead up to the next word boundary, at most
/// `len`.
fn head_len(addr: usize, len: usize) -> usize {
    (addr.next_multiple_of(WORD) - addr).min(len)
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
    let head = head_len(src as usize, len);
    let words = (len - head) / WORD;
    for (i, d) in dst[..head].iter_mut().enumerate() {
        // SAFETY: `src + i` is in the readable range; every concurrent
        // access is atomic (the caller's promise), and a byte is always
        // aligned for `AtomicU8`.
        *d = unsafe { AtomicU8::from_ptr(src.wrapping_add(i).cast_mut()) }.load(Ordering::Relaxed);
    }
    for w in 0..words {
        let at = head + w * WORD;
        // SAFETY: `src + at` is word-aligned (the head brought it to a
        // boundary) and `at + WORD <= len`, in the readable range; every
        // concurrent access is atomic.
        let word =
            unsafe { AtomicUsize::from_ptr(src.wrapping_add(at).cast::<usize>().cast_mut()) }
                .load(Ordering::Relaxed);
        dst[at..at + WORD].copy_from_slice(&word.to_ne_bytes());
    }
    let tail = head + words * WORD;
    for (i, d) in dst[tail..].iter_mut().enumerate() {
        // SAFETY: as for the head bytes.
        *d = unsafe { AtomicU8::from_ptr(src.wrapping_add(tail + i).cast_mut()) }
            .load(Ordering::Relaxed);
    }
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
    if overlaps(dst as usize, data.as_ptr() as usize, len) {
        // SAFETY: the caller promises that nobody else touches the overlap,
        // so this is no race there; `dst` is writable for `len` bytes;
        // `ptr::copy` allows the overlap.
        unsafe { std::ptr::copy(data.as_ptr(), dst, len) };
        return;
    }
    let head = head_len(dst as usize, len);
    let words = (len - head) / WORD;
    for (i, &b) in data[..head].iter().enumerate() {
        // SAFETY: `dst + i` is in the writable range; every concurrent
        // access is atomic (the caller's promise).
        unsafe { AtomicU8::from_ptr(dst.wrapping_add(i)) }.store(b, Ordering::Relaxed);
    }
    for w in 0..words {
        let at = head + w * WORD;
        let mut bytes = [0u8; WORD];
        bytes.copy_from_slice(&data[at..at + WORD]);
        // SAFETY: `dst + at` is word-aligned and `at + WORD <= len`, in the
        // writable range; every concurrent access is atomic.
        unsafe { AtomicUsize::from_ptr(dst.wrapping_add(at).cast::<usize>()) }
            .store(usize::from_ne_bytes(bytes), Ordering::Relaxed);
    }
    let tail = head + words * WORD;
    for (i, &b) in data[tail..].iter().enumerate() {
        // SAFETY: as for the head bytes.
        unsafe { AtomicU8::from_ptr(dst.wrapping_add(tail + i)) }.store(b, Ordering::Relaxed);
    }
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
        let shared: Vec<u8> = (0..64u8).collect();
        for off in 0..WORD + 1 {
            for len in 0..40 {
                let mut out = vec![0xAA; len];
                // SAFETY: `shared` holds 64 bytes, `off + len < 64`; no other
                // thread touches it.
                unsafe { load(shared[off..].as_ptr(), &mut out) };
                assert_eq!(out, &shared[off..off + len]);

                let mut target = [0u8; 64];
                let data: Vec<u8> = (100..100 + len as u8).collect();
                // SAFETY: as above, for writes.
                unsafe { store(&data, target[off..].as_mut_ptr()) };
                assert_eq!(&target[off..off + len], &data[..]);
                assert!(target[..off].iter().all(|&b| b == 0));
                assert!(target[off + len..].iter().all(|&b| b == 0));
            }
        }
    }
}
