//! fork, _exit, waitpid, pidfd and kill.

use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Forks; the child takes `child` out of the option, runs it under
/// `catch_unwind` and ends with `_exit` with the code it returns (1 if it
/// panicked). Returns the child's pid in the parent, whose copy of `child`
/// stays in the option; never returns in the child.
///
/// # Safety
///
/// If other threads run, the child gets a copy of every lock they held at
/// the moment of the fork, held forever: `child` must not take any lock
/// that another thread might hold. Stdout's, stderr's and this crate's heap
/// lock are safe (held by this thread across the fork); glibc's allocator
/// resets its own. With one thread there is no such hazard.
pub(crate) unsafe fn fork<F: FnOnce() -> i32>(child: &mut Option<F>) -> Result<Pid> {
    // Take the locks a child may need while no other thread of this process
    // holds them, and hold them across the fork: stdout's and stderr's
    // (printing, and the flush at exit), then the shared heap's. Without
    // this, a child forked while another thread prints would inherit
    // stdout's lock held forever and hang at its first print or at exit.
    // The child is a copy of this thread, so it can release them: Rust's
    // stdio locks are reentrant locks owned by this thread's id, which the
    // child's thread shares.
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    // Flush so that buffered output is not written twice (once per process).
    let _ = out.flush();
    let _ = err.flush();
    let heap = crate::shm::heap::lock_for_fork();
    // SAFETY: the caller upholds the multithreading rule above; the child
    // never returns from this function (it ends in `_exit`).
    let forked = unsafe { nix::unistd::fork() };
    drop(heap);
    drop(err);
    drop(out);
    match forked {
        Err(e) => Err(Error::os("fork", e)),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child),
        Ok(nix::unistd::ForkResult::Child) => {
            let code = match child.take() {
                Some(f) => catch_unwind(AssertUnwindSafe(f)).unwrap_or(1),
                None => 1,
            };
            exit(code)
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
    Signaled(Signal),
}

/// Reaps `pid` if it has ended (`block`: wait until it does). `Ok(None)`:
/// still running.
pub(crate) fn reap(pid: Pid, block: bool) -> Result<Option<Reaped>> {
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    loop {
        match waitpid(pid, flags) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(Reaped::Exited(code))),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(Reaped::Signaled(sig))),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => continue, // stopped/continued: not an end
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("waitpid", e)),
        }
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

/// Waits until `pidfd` is readable (the process ended) or `timeout`;
/// true if it ended.
pub(crate) fn pidfd_wait(pidfd: &OwnedFd, timeout: Duration) -> Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = crate::sys::futex::Deadline::after(timeout);
    loop {
        let left = deadline.remaining().unwrap_or(Duration::MAX);
        let ms = u16::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if deadline.expired() => return Ok(false),
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("poll", e)),
        }
    }
}

/// Sends `sig` through the pidfd, so a recycled pid is never signalled.
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, sig: Signal) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall; the descriptor is valid while borrowed, and a
    // null siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        // ESRCH: it has already ended; nothing to signal.
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(Error::os("pidfd_send_signal", e));
    }
    Ok(())
}
