//! fork, _exit, waitpid, pidfd and kill.
//!
//! Signals are raw numbers here (`libc::c_int`), checked by [`signal_number`]
//! before they reach the kernel: every signal from 1 to `SIGRTMAX`,
//! real-time ones included (nix's `Signal` names only the classic ones).

use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Forks; the child runs `setup`, then takes `child` out of the option, runs it under
/// `catch_unwind` and ends with `_exit` with the code it returns (1 if it
/// panicked). Returns the child's pid and a pidfd for it in the parent
/// (`Some` whenever it returns `Ok`); the parent's copy of `child` stays in
/// the option; never returns in the child.
///
/// It is glibc's `fork`, so every `pthread_atfork` handler runs (other
/// libraries' too: a random generator that reseeds in the child, an
/// allocator that resets its locks). A `clone3` with `CLONE_PIDFD` would
/// save the `pidfd_open` but would skip those handlers, a trap for
/// programs that rely on them; it was measured and not kept.
///
/// The pidfd is opened before the child can be reaped by anyone else: if
/// `SIGCHLD` is ignored (or `SA_NOCLDWAIT` is set), the kernel would reap a
/// child that ends at once, and its pid could be recycled before
/// `pidfd_open`. So while the disposition says so, it is set to the default
/// from before the fork until the pidfd is open (and back to the caller's
/// in the child, first thing). A child of another part of the program that
/// ends within that window (microseconds) stays a zombie until someone
/// waits for it, instead of being reaped by the kernel.
///
/// `alone` says the process has one thread (the caller's): then the hooks
/// registered in [`atfork`](super::atfork) hold nothing across the fork,
/// sparing both processes the copies of the pages that unlocking would
/// write (see there).
///
/// # Safety
///
/// If other threads run, the child gets a copy of every lock they held at
/// the moment of the fork, held forever: `child` must not take any lock
/// that another thread might hold. Stdout's, stderr's and the locks
/// registered in [`atfork`](super::atfork) (the crate's heap lock) are safe
/// (held by this thread across the fork, unless `alone`); glibc's allocator
/// resets its own. With one thread there is no such hazard. Another thread
/// that reaps any child (`waitpid(-1)`) or changes `SIGCHLD`'s disposition
/// meanwhile can make the pidfd name another process; with one thread
/// there is no such thread. `alone` must be true only if the process has no
/// other thread.
pub(crate) unsafe fn fork<S: FnOnce(), F: FnOnce() -> i32>(
    alone: bool,
    setup: S,
    child: &mut Option<F>,
) -> Result<(Pid, Option<OwnedFd>)> {
    // Take the locks a child may need while no other thread of this process
    // holds them, and hold them across the fork: stdout's and stderr's
    // (printing, and the flush at exit), then those registered in `atfork`
    // (the shared heap's). Without this, a child forked while another
    // thread prints would inherit stdout's lock held forever and hang at its
    // first print or at exit.
    // The child is a copy of this thread, so it can release them: Rust's
    // stdio locks are reentrant locks owned by this thread's id, which the
    // child's thread shares.
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    // Flush so that buffered output is not written twice (once per process).
    let _ = out.flush();
    let _ = err.flush();
    let hooks = super::atfork::prepare(!alone);
    let sigchld = ChildReaping::hold();
    // SAFETY: the caller upholds the multithreading rule above; the child
    // never returns from this function (it ends in `_exit`).
    let forked = unsafe { nix::unistd::fork() };
    hooks.forked(matches!(forked, Ok(nix::unistd::ForkResult::Child)));
    let forked = match forked {
        Ok(nix::unistd::ForkResult::Child) => {
            sigchld.restore();
            Ok(Forked::Child)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let pidfd = pidfd_open(child);
            sigchld.restore();
            match pidfd {
                Ok(fd) => Ok(Forked::Parent(child, Some(fd))),
                Err(e) => {
                    // Without a pidfd the child cannot be managed safely:
                    // stop it rather than leak it (it is still ours to
                    // reap: reaping was held off until now).
                    let _ = kill(child, libc::SIGKILL);
                    let _ = reap(child, true);
                    drop(err);
                    drop(out);
                    return Err(e);
                }
            }
        }
        Err(e) => Err(e),
    };
    match forked {
        Err(e) => Err(Error::os("fork", e)),
        Ok(Forked::Parent(pid, pidfd)) => Ok((pid, pidfd)),
        Ok(Forked::Child) => {
            // The child keeps its stdio guards to the end and flushes through
            // them: unlocking and locking again would write to pages it
            // shares copy-on-write with its parent, for nothing (the locks
            // are reentrant: printing still works).
            setup();
            let code = match child.take() {
                Some(f) => catch_unwind(AssertUnwindSafe(f)).unwrap_or(1),
                None => 1,
            };
            let _ = out.flush();
            let _ = err.flush();
            // SAFETY: `_exit` is always safe to call; it does not return.
            unsafe { libc::_exit(code) }
        }
    }
}

enum Forked {
    Parent(Pid, Option<OwnedFd>),
    Child,
}

/// Holds off the kernel's automatic reaping of children (`SIGCHLD` set to
/// `SIG_IGN`, or `SA_NOCLDWAIT`) until [`restore`](ChildReaping::restore)
/// puts the caller's disposition back.
struct ChildReaping(Option<libc::sigaction>);

impl ChildReaping {
    fn hold() -> ChildReaping {
        // SAFETY: an all-zero `sigaction` is a valid value to be written.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: queries the disposition (no new one given) into `old`.
        if unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) } != 0 {
            return ChildReaping(None);
        }
        if old.sa_sigaction != libc::SIG_IGN && old.sa_flags & libc::SA_NOCLDWAIT == 0 {
            return ChildReaping(None);
        }
        // The same disposition without the automatic reaping: a handler
        // stays installed (without `SA_NOCLDWAIT`), `SIG_IGN` becomes the
        // default (which ignores the signal too, but leaves a zombie).
        let mut held = old;
        held.sa_flags &= !libc::SA_NOCLDWAIT;
        if held.sa_sigaction == libc::SIG_IGN {
            held.sa_sigaction = libc::SIG_DFL;
        }
        // SAFETY: sets a valid disposition; changes no memory of ours.
        if unsafe { libc::sigaction(libc::SIGCHLD, &held, std::ptr::null_mut()) } != 0 {
            return ChildReaping(None);
        }
        ChildReaping(Some(old))
    }

    fn restore(self) {
        if let Some(old) = self.0 {
            // SAFETY: puts back the disposition read in `hold`.
            unsafe { libc::sigaction(libc::SIGCHLD, &old, std::ptr::null_mut()) };
        }
    }
}

/// Ends the calling process at once with `code`, after flushing stdout and
/// stderr, without running destructors or `atexit` handlers (which belong
/// to the parent's copy of the program).
pub(crate) fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// How a child ended.
pub(crate) enum Reaped {
    Exited(i32),
    /// Killed by this signal (its number, real-time ones included).
    Signaled(libc::c_int),
}

/// `sig` if it is a signal number that can be sent or set (1 to
/// `SIGRTMAX`); [`Error::InvalidArgument`] otherwise (0, the "is it
/// there" probe of `kill`, is not a signal).
pub(crate) fn signal_number(sig: libc::c_int) -> Result<libc::c_int> {
    if (1..=libc::SIGRTMAX()).contains(&sig) {
        Ok(sig)
    } else {
        Err(Error::InvalidArgument(
            "not a signal number (1 to SIGRTMAX)",
        ))
    }
}

/// Reaps `pid` if it has ended (`block`: wait until it does). `Ok(None)`:
/// still running.
pub(crate) fn reap(pid: Pid, block: bool) -> Result<Option<Reaped>> {
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status into a valid, owned c_int.
        let r = unsafe { libc::waitpid(pid.as_raw(), &mut status, flags) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::os("waitpid", e));
        }
        if r == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some(Reaped::Exited(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some(Reaped::Signaled(libc::WTERMSIG(status))));
        }
        // Stopped or continued (not asked for, but harmless): not an end.
    }
}

/// Reaps the child that `pidfd` refers to if it has ended (`block`: wait
/// until it does); `Ok(None)`: still running. Unlike [`reap`] by pid, this
/// can never reap another process that reused the pid. An error with
/// `ECHILD` means the child is no longer ours to reap: someone else reaped
/// it (a `waitpid(-1)`, `SIGCHLD` ignored, another reaper).
pub(crate) fn reap_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> Result<Option<Reaped>> {
    let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: all-zero is a valid siginfo_t (plain integers and unions
        // of them); a zero `si_pid` after WNOHANG means "still running".
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with P_PIDFD reads the descriptor (valid while
        // borrowed) and writes only into `info`, a valid siginfo_t.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::os("waitid", e));
        }
        // SAFETY: waitid filled `info` for a child state change (or left it
        // zeroed); `si_pid` is valid to read for SIGCHLD information, and
        // reads as 0 from the zeroed value.
        let pid = unsafe { info.si_pid() };
        // SAFETY: as for `si_pid`: `si_status` is part of SIGCHLD
        // information, 0 in the zeroed value.
        let status = unsafe { info.si_status() };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => Reaped::Exited(status),
            _ => Reaped::Signaled(status),
        }));
    }
}

/// A pidfd for `pid` (`pidfd_open`), readable once the process ends.
pub(crate) fn pidfd_open(pid: Pid) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(Error::last_os("pidfd_open"));
    }
    // SAFETY: the kernel just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `sig` (checked by [`signal_number`]) through the pidfd, so a
/// recycled pid is never signalled. An `Os` error with `ESRCH` once the
/// process is gone for good (reaped; a zombie still takes signals).
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, sig: libc::c_int) -> Result<()> {
    let sig = signal_number(sig)?;
    // SAFETY: plain syscall; the descriptor is valid while borrowed, and a
    // null siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(Error::last_os("pidfd_send_signal"));
    }
    Ok(())
}

/// In a fork child: be killed with `sig` when the parent (`parent`, the pid
/// before the fork) dies. If it died already, exits at once (the classic
/// race: the parent may die between fork and prctl).
pub(crate) fn die_with_parent(parent: i32, sig: libc::c_int) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number (an invalid one
    // is refused with EINVAL, and then this process exits); no pointers.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    if r != 0 || nix::unistd::getppid().as_raw() != parent {
        exit(1);
    }
}

/// The parent process watched by [`die_with_parent_process`].
#[cfg(feature = "pool")]
static WATCHED_PARENT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The signal [`die_with_parent_process`] has the kernel send: a real-time
/// signal (`SIGRTMAX - 2`) that nothing else in the crate uses.
#[cfg(feature = "pool")]
fn parent_thread_signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

/// The handler of [`parent_thread_signal`]: the thread that started this
/// process ended; if the process it belonged to is gone too (this process
/// was handed to another reaper, so the parent pid changed), SIGKILL this
/// process. Only async-signal-safe calls: `getppid`, `getpid`, `kill` and
/// an atomic load.
#[cfg(feature = "pool")]
extern "C" fn on_parent_thread_gone(_: libc::c_int) {
    // SAFETY: getppid has no preconditions.
    let now = unsafe { libc::getppid() };
    if now != WATCHED_PARENT.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        // SAFETY: signalling this process with SIGKILL is what is wanted.
        unsafe { libc::kill(me, libc::SIGKILL) };
    }
}

/// In a child started by a thread that may end before its process does
/// (the parent-death signal fires when the *thread* that forked ends): be
/// killed with SIGKILL when the parent *process* `parent` dies, however it
/// dies, and not when only that thread ends. The kernel sends a real-time
/// signal (`SIGRTMAX - 2`) each time the child's parent thread ends; its
/// handler kills this process if the parent process is gone (the child then
/// belongs to another reaper), and ignores it otherwise (the child then
/// belongs to another thread of the same parent). If the parent died
/// before this, exits at once. The child must keep that signal's handler
/// and leave the signal unblocked.
#[cfg(feature = "pool")]
pub(crate) fn die_with_parent_process(parent: i32) {
    WATCHED_PARENT.store(parent, std::sync::atomic::Ordering::Relaxed);
    let sig = parent_thread_signal();
    // SAFETY: a zeroed sigaction is a valid starting value; the fields set
    // below name a handler of the right type and an empty mask.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_parent_thread_gone as extern "C" fn(libc::c_int) as libc::sighandler_t;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: `act.sa_mask` is a valid sigset_t to initialize.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    // SAFETY: valid pointers; the handler only makes async-signal-safe
    // calls.
    let installed = unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } == 0;
    // SAFETY: a zeroed sigset_t is then initialized by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: `set` is an initialized sigset_t; `sig` a valid signal.
    unsafe { libc::sigaddset(&mut set, sig) };
    // SAFETY: valid pointer to an initialized set; unblocks only `sig`.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; no pointers.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    if !installed || r != 0 || nix::unistd::getppid().as_raw() != parent {
        exit(1);
    }
}

/// In a fork child: arms a timer that sends SIGKILL to this process after
/// `d`, whatever it does meanwhile (it cannot be caught or ignored).
pub(crate) fn kill_after(d: Duration) -> Result<()> {
    // SAFETY: zeroed sigevent is a valid starting value; the fields set
    // below select a signal notification to the whole process.
    let mut ev: libc::sigevent = unsafe { std::mem::zeroed() };
    ev.sigev_notify = libc::SIGEV_SIGNAL;
    ev.sigev_signo = libc::SIGKILL;
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: valid pointers to a sigevent and a timer_t out-parameter.
    if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut timer) } != 0 {
        return Err(Error::last_os("timer_create"));
    }
    let d = d.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `timer` was just created; `spec` is a valid itimerspec; the old
    // value is not wanted (null).
    if unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) } != 0 {
        return Err(Error::last_os("timer_settime"));
    }
    Ok(())
}

/// Sends `sig` (checked by [`signal_number`]) to `pid` (`kill`). Prefer
/// [`pidfd_signal`], which cannot reach a process that reused the pid; this
/// is for a child not reaped yet (its pid cannot be reused) that has no
/// pidfd.
pub(crate) fn kill(pid: Pid, sig: libc::c_int) -> Result<()> {
    let sig = signal_number(sig)?;
    // SAFETY: kill takes integers and changes no memory of ours.
    if unsafe { libc::kill(pid.as_raw(), sig) } != 0 {
        return Err(Error::last_os("kill"));
    }
    Ok(())
}

/// Sets what `sig` (checked by [`signal_number`]) does to this process:
/// `SIG_IGN` or `SIG_DFL` (no handler code: nothing runs in signal
/// context).
pub(crate) fn set_disposition(sig: libc::c_int, ignore: bool) -> Result<()> {
    let sig = signal_number(sig)?;
    // SAFETY: an all-zero `sigaction` is a valid value (no handler, no
    // flags, an empty mask), completed below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: SIG_IGN and SIG_DFL install no handler code, so nothing runs
    // in signal context; replacing a handler signal-hook installed is the
    // caller's choice and leaves no dangling state (signal-hook's handler
    // simply stops being called). The pointers are valid for the call.
    if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
        return Err(Error::last_os("sigaction"));
    }
    Ok(())
}

/// Puts the calling process in a new process group of its own
/// (`setpgid(0, 0)`). Async-signal-safe: callable between fork and exec.
#[cfg(feature = "spawn")]
pub(crate) fn new_group_raw() -> std::io::Result<()> {
    // SAFETY: setpgid takes integers and changes no memory.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Puts `pid` (0: the caller) in a new process group of its own.
pub(crate) fn new_group(pid: Pid) -> Result<()> {
    nix::unistd::setpgid(pid, pid).map_err(|e| Error::os("setpgid", e))
}

/// Sends `sig` (checked by [`signal_number`]) to the process group `pgid`;
/// a group that no longer exists is not an error.
pub(crate) fn signal_group(pgid: Pid, sig: libc::c_int) -> Result<()> {
    let sig = signal_number(sig)?;
    // SAFETY: killpg takes integers and changes no memory of ours.
    if unsafe { libc::killpg(pgid.as_raw(), sig) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(Error::os("killpg", e));
    }
    Ok(())
}

/// The parent's pid.
pub(crate) fn parent_pid() -> i32 {
    nix::unistd::getppid().as_raw()
}
