//! Shared futex wait and wake.
//!
//! Every call here uses the *shared* futex operations (never the private
//! flag): the words live in `MAP_SHARED` memory and the
//! waiters and wakers are in different processes, whose private futex keys
//! (keyed by address space) would never match.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// How a futex wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Woken by a wake call, a signal, or the word no longer held `expected`.
    /// Callers re-check their condition either way.
    Woken,
    /// The timeout passed.
    TimedOut,
}

/// Sleeps while `word` holds `expected`, at most `timeout` (forever on
/// `None`).
///
/// `FUTEX_WAIT` (shared). Spurious returns are possible; callers loop.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wait {
    let ts;
    let ts_ptr = match timeout {
        Some(d) => {
            ts = libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            &ts as *const libc::timespec
        }
        None => std::ptr::null(),
    };
    // SAFETY: `word` is a valid, aligned 32-bit atomic for the duration of the
    // call; the kernel only reads it. `ts_ptr` is null or points at a
    // timespec that lives until the call returns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        Wait::TimedOut
    } else {
        // 0, EAGAIN (word changed), EINTR (signal): all are "look again".
        Wait::Woken
    }
}

/// Wakes at most `n` processes or threads sleeping on `word`; returns how
/// many were woken.
///
/// `FUTEX_WAKE` (shared).
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32) as i32;
    // SAFETY: `word` is a valid, aligned 32-bit atomic; FUTEX_WAKE does not
    // access it beyond computing the key.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    r.max(0) as usize
}

/// Wakes every sleeper on `word`.
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}
