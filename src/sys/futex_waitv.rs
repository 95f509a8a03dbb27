//! `futex_waitv` (Linux 5.16): one thread sleeps on many shared futex
//! words at once. The async wake-up ([`crate::aio`]) is built on it: one
//! reactor thread per process waits for every word that async waiters of
//! that process wait on, so the words need no file descriptor and the
//! wakers (other processes, unchanged) wake it with their usual
//! `FUTEX_WAKE`.
//!
//! The kernel only reads the words (and only through the addresses given):
//! an address that is no longer mapped gives `EFAULT`, never a fault here,
//! so a caller that passes addresses of memory it does not keep alive makes
//! no access of its own to it.

use std::time::Duration;

/// The most words one call waits on (`FUTEX_WAITV_MAX`).
pub(crate) const MAX: usize = 128;

/// One word to wait on: the kernel's `struct futex_waitv`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct WaitV {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// `FUTEX2_SIZE_U32`: a 32-bit word (shared: no `FUTEX2_PRIVATE`, the words
/// live in `MAP_SHARED` memory and the wakers are other processes).
const FUTEX2_SIZE_U32: u32 = 0x02;

impl WaitV {
    /// Sleep while the 32-bit word at `addr` holds `expected`. The address
    /// is only handed to the kernel, never dereferenced here.
    pub(crate) fn new(addr: usize, expected: u32) -> WaitV {
        WaitV {
            val: expected as u64,
            uaddr: addr as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        }
    }
}

/// How a [`wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// Word `i` was woken.
    Word(usize),
    /// Some word no longer held its value when the call began (`EAGAIN`),
    /// or a signal interrupted the call: look at every word.
    Changed,
    /// The timeout passed.
    TimedOut,
    /// Some address is not mapped (`EFAULT`): the caller finds which one.
    Fault,
    /// The kernel has no `futex_waitv` (`ENOSYS`), or refused the call.
    Unsupported,
}

/// Sleeps until one of `words` is woken, or one of them does not hold its
/// value, or `timeout` passes (`CLOCK_MONOTONIC`).
pub(crate) fn wait(words: &[WaitV], timeout: Duration) -> Woke {
    if words.is_empty() || words.len() > MAX {
        return Woke::Unsupported;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if r != 0 {
        return Woke::Unsupported;
    }
    let total = now.tv_nsec as u128 + timeout.subsec_nanos() as u128;
    let secs = (now.tv_sec as u64)
        .saturating_add(timeout.as_secs())
        .saturating_add((total / 1_000_000_000) as u64)
        .min(i64::MAX as u64 / 2);
    let until = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: (total % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `words` is a valid array of `words.len()` (at most MAX)
    // `struct futex_waitv`, and `until` a valid timespec, both living until
    // the call returns; the kernel only reads the words' addresses through
    // its own checked user accesses (EFAULT for an unmapped one).
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            words.as_ptr(),
            words.len() as libc::c_uint,
            0 as libc::c_uint,
            &until as *const libc::timespec,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return Woke::Word(r as usize);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Woke::Changed,
        Some(libc::ETIMEDOUT) => Woke::TimedOut,
        Some(libc::EFAULT) => Woke::Fault,
        _ => Woke::Unsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn waits_on_several_words_and_reports_which_was_woken() {
        let words = std::sync::Arc::new([AtomicU32::new(0), AtomicU32::new(7)]);
        let w2 = words.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w2[1].store(8, std::sync::atomic::Ordering::SeqCst);
            crate::sys::futex::wake_all(&w2[1]);
        });
        let v = [
            WaitV::new(words[0].as_ptr() as usize, 0),
            WaitV::new(words[1].as_ptr() as usize, 7),
        ];
        let mut got = wait(&v, Duration::from_secs(10));
        while got == Woke::Changed && words[1].load(std::sync::atomic::Ordering::SeqCst) == 7 {
            got = wait(&v, Duration::from_secs(10));
        }
        assert!(matches!(got, Woke::Word(1) | Woke::Changed), "{got:?}");
        t.join().unwrap();
        // A stale value returns at once; a timeout is a timeout.
        assert_eq!(wait(&v, Duration::from_millis(1)), Woke::Changed);
        let v = [WaitV::new(words[0].as_ptr() as usize, 0)];
        assert_eq!(wait(&v, Duration::from_millis(5)), Woke::TimedOut);
        // An unmapped address is a fault, not a crash.
        assert_eq!(wait(&[WaitV::new(8, 0)], Duration::ZERO), Woke::Fault);
        let v = [WaitV::new(words[0].as_ptr() as usize, 0)];
        assert_eq!(wait(&v, Duration::ZERO), Woke::TimedOut);
    }
}
