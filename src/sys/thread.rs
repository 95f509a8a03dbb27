//! Who is running: the calling thread's kernel id, cached, and whether
//! another thread (in any process) is still alive.

use std::cell::Cell;
use std::sync::Once;

thread_local! {
    // 0 means "not looked up yet". Reset in a fork child by `after_fork`.
    static TID: Cell<u32> = const { Cell::new(0) };
}

static ATFORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Only the forking thread exists in the child; its cached id is the
    // parent's thread's id and must be looked up again.
    TID.with(|t| t.set(0));
}

/// The calling thread's id (`gettid`), unique among live threads of every
/// process in the pid namespace. Cached per thread; the cache is dropped in
/// a fork child.
#[inline]
pub(crate) fn tid() -> u32 {
    let t = TID.with(|t| t.get());
    if t != 0 { t } else { tid_slow() }
}

#[cold]
fn tid_slow() -> u32 {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only writes a thread-local cell,
        // which is async-signal-safe in a fork child (no allocation: the cell
        // has a const initializer). On failure the cache would survive fork,
        // so fall back to never caching (checked below).
        let r = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        ATFORK_OK.store(r == 0, std::sync::atomic::Ordering::Relaxed);
    });
    let t = nix::unistd::gettid().as_raw() as u32;
    if ATFORK_OK.load(std::sync::atomic::Ordering::Relaxed) {
        TID.with(|c| c.set(t));
    }
    t
}

static ATFORK_OK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The calling process's id.
pub(crate) fn pid() -> i32 {
    nix::unistd::getpid().as_raw()
}

/// Whether thread `tid` (of any process) is alive: it exists and is not a
/// zombie. Reads `/proc/<tid>/stat`; a thread id is a valid `/proc` entry
/// even when it is not a process id.
///
/// A recycled id reads as alive: with the default `pid_max` a dead owner's id
/// comes back only after the whole id space has been used once more.
pub(crate) fn alive(tid: u32) -> bool {
    if tid == 0 {
        return false;
    }
    let path = format!("/proc/{tid}/stat");
    match std::fs::read(&path) {
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            match stat.iter().rposition(|&b| b == b')') {
                Some(i) => !matches!(stat.get(i + 2), Some(b'Z' | b'X' | b'x')),
                None => true,
            }
        }
        // Gone from /proc, or hidden (a /proc mounted with `hidepid` hides
        // other users' processes): ask the kernel directly. `kill(tid, 0)`
        // accepts any thread id; only ESRCH means no such thread.
        Err(_) => {
            let r = nix::sys::signal::kill(nix::unistd::Pid::from_raw(tid as i32), None);
            r != Err(nix::errno::Errno::ESRCH)
        }
    }
}

/// How many threads this process has (`/proc/self/task`), or `None` if that
/// cannot be read.
pub(crate) fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(|d| d.filter(|e| e.is_ok()).count())
}
