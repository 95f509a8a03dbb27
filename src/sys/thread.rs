//! Who is running: the calling thread's kernel id, cached, and whether
//! another thread (in any process) is still alive.

use std::cell::Cell;
use std::sync::Once;

thread_local! {
    // 0 means "not looked up yet". Reset in a fork child by `after_fork`.
    static TID: Cell<u32> = const { Cell::new(0) };
}

static ATFORK: Once = Once::new();

/// This process's id, cached (0: not looked up yet). Reset in a fork child.
static PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// How many forks separate this process from the program's first process
/// (one started by `exec`): raised by one in each fork child. Next to
/// `PID`, which the child writes anyway, so it costs the child no page.
static DEPTH: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// In a fork child: drops the cached ids (they are the parent's). Run by
/// `pthread_atfork` after glibc's `fork`, and by `sys::process::fork`
/// itself after a `clone3`, which runs no fork handlers.
pub(crate) extern "C" fn after_fork_in_child() {
    // Only the forking thread exists in the child; its cached ids are the
    // parent's and must be looked up again.
    TID.with(|t| t.set(0));
    PID.store(0, std::sync::atomic::Ordering::Relaxed);
    DEPTH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Registers the fork handler that clears the caches; false if that failed
/// (then nothing may be cached).
fn atfork_registered() -> bool {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only writes a thread-local cell
        // and an atomic, both async-signal-safe in a fork child (no
        // allocation: the cell has a const initializer).
        let r = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        ATFORK_OK.store(r == 0, std::sync::atomic::Ordering::Relaxed);
    });
    ATFORK_OK.load(std::sync::atomic::Ordering::Relaxed)
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
    let t = nix::unistd::gettid().as_raw() as u32;
    if atfork_registered() {
        TID.with(|c| c.set(t));
    }
    t
}

static ATFORK_OK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The calling process's id. Cached; the cache is dropped in a child
/// forked through libc's `fork` (which runs the atfork handlers) or
/// through this crate's `clone3`. A child made by another raw `clone`
/// system call would see its parent's id here, and must not use this
/// crate.
pub(crate) fn pid() -> i32 {
    let p = PID.load(std::sync::atomic::Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    let p = nix::unistd::getpid().as_raw();
    if atfork_registered() {
        PID.store(p, std::sync::atomic::Ordering::Relaxed);
    }
    p
}

/// This process among every process that inherited this one's memory:
/// its id and its fork depth (see `DEPTH`). A descendant never has the
/// same value as an ancestor, even one whose id it reused after that
/// ancestor died (its depth is greater), so state stamped with this value
/// and inherited by fork is recognised as inherited. `None` when the fork
/// handler that keeps the depth could not be registered: then nothing
/// inherited can be told apart by this.
pub(crate) fn incarnation() -> Option<u64> {
    if !atfork_registered() {
        return None;
    }
    let depth = DEPTH.load(std::sync::atomic::Ordering::Relaxed);
    Some(u64::from(depth) << 32 | u64::from(pid() as u32))
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

/// How many threads this process has, or `None` if that cannot be read:
/// the link count of `/proc/self/task` is two plus the number of threads
/// (one `statx`, no file to open and parse).
pub(crate) fn thread_count() -> Option<usize> {
    use std::os::unix::fs::MetadataExt;
    let links = std::fs::metadata("/proc/self/task").ok()?.nlink();
    usize::try_from(links.checked_sub(2)?)
        .ok()
        .filter(|&n| n > 0)
}

/// The CPU the calling thread runs on (`u32::MAX` if unknown).
#[cfg(feature = "manager")]
pub(crate) fn current_cpu() -> u32 {
    // SAFETY: sched_getcpu takes no arguments and only reads the calling
    // thread's state (through the vDSO or rseq).
    let c = unsafe { libc::sched_getcpu() };
    if c < 0 { u32::MAX } else { c as u32 }
}
