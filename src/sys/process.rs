//! fork, _exit, waitpid, pidfd and kill.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Forks; the child runs `setup`, then takes `child` out of the option, runs it under
/// `catch_unwind` and ends with `_exit` with the code it returns (1 if it
/// panicked). Returns the child's pid in the parent, and its pidfd when the
/// fork made one; the parent's copy of `child` stays in the option; never
/// returns in the child.
///
/// With `one_thread` (the caller checked that this process has no other
/// thread) the fork is a `clone3` with `CLONE_PIDFD`: the pidfd comes with
/// the child, so a child that ends and is reaped by someone else at once
/// (`SIGCHLD` ignored) is still tracked, and no `pidfd_open` follows. Like
/// glibc's own fork it makes the kernel write the child's thread id into
/// glibc's thread descriptor and registers the robust-futex list again in
/// the child; unlike it, it does not run `pthread_atfork` handlers (this
/// crate resets its own caches itself, [`thread::after_fork_in_child`]).
/// Otherwise, or if the kernel refuses `clone3`, it is glibc's `fork`.
///
/// [`thread::after_fork_in_child`]: crate::sys::thread::after_fork_in_child
///
/// # Safety
///
/// If other threads run, the child gets a copy of every lock they held at
/// the moment of the fork, held forever: `child` must not take any lock
/// that another thread might hold. Stdout's, stderr's and this crate's heap
/// lock are safe (held by this thread across the fork); glibc's allocator
/// resets its own. With one thread there is no such hazard. `one_thread`
/// must be false unless this process has exactly one thread.
pub(crate) unsafe fn fork<S: FnOnce(), F: FnOnce() -> i32>(
    setup: S,
    child: &mut Option<F>,
    one_thread: bool,
) -> Result<(Pid, Option<OwnedFd>)> {
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
    let forked = if one_thread {
        // SAFETY: the caller promises a single thread; the child never
        // returns from this function (it ends in `_exit` below).
        match unsafe { clone_pidfd() } {
            Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM) => None,
            r => Some(r),
        }
    } else {
        None
    };
    let forked = match forked {
        Some(r) => r,
        // SAFETY: the caller upholds the multithreading rule above; the child
        // never returns from this function (it ends in `_exit`).
        None => unsafe { nix::unistd::fork() }.map(|r| match r {
            nix::unistd::ForkResult::Parent { child } => Forked::Parent(child, None),
            nix::unistd::ForkResult::Child => Forked::Child,
        }),
    };
    drop(heap);
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

/// `struct clone_args` up to `tls` (`CLONE_ARGS_SIZE_VER0`, 64 bytes).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

/// `prctl(PR_GET_TID_ADDRESS)`: where the kernel clears the calling
/// thread's id at its end (glibc's thread descriptor's `tid`).
const PR_GET_TID_ADDRESS: libc::c_int = 40;

/// A fork through `clone3` with `CLONE_PIDFD`, doing in the child what
/// glibc's `_Fork` does (the thread descriptor's `tid`, the robust-futex
/// list) and resetting this crate's cached ids. `ENOSYS` or `EPERM` when
/// the kernel (or a seccomp filter) refuses `clone3`, or when the thread's
/// own addresses cannot be read: the caller then uses glibc's `fork`.
///
/// # Safety
///
/// As for `fork(2)` in a process with a single thread (which the caller
/// guarantees): the child must not return into code that assumes it is the
/// parent; the caller ends it with `_exit`.
unsafe fn clone_pidfd() -> nix::Result<Forked> {
    let mut tid_addr: *mut libc::pid_t = std::ptr::null_mut();
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer to the address given.
    if unsafe { libc::prctl(PR_GET_TID_ADDRESS, &mut tid_addr as *mut *mut libc::pid_t) } != 0
        || tid_addr.is_null()
    {
        return Err(nix::errno::Errno::ENOSYS);
    }
    let mut robust: *mut libc::c_void = std::ptr::null_mut();
    let mut robust_len: libc::size_t = 0;
    // SAFETY: get_robust_list for the calling thread (pid 0) writes a
    // pointer and a length into the two locations given.
    if unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut robust as *mut *mut libc::c_void,
            &mut robust_len as *mut libc::size_t,
        )
    } != 0
    {
        return Err(nix::errno::Errno::ENOSYS);
    }
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        // As glibc's _Fork: the kernel writes the child's id into the
        // thread descriptor (and clears it at the child's end).
        flags: (libc::CLONE_PIDFD | libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        child_tid: tid_addr as u64,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
    };
    // SAFETY: clone3 with a valid, fully initialised clone_args of the size
    // given; no new stack (the child continues on a copy of this one, as
    // after fork), `pidfd` and `tid_addr` are valid for writes in the
    // parent and (as copies) in the child.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    if r == 0 {
        // The child. glibc's fork handlers did not run: reset what this
        // crate caches per process and thread, and register the robust
        // list again (the kernel does not carry it over).
        crate::sys::thread::after_fork_in_child();
        // SAFETY: the list head of this thread's copy lives at the same
        // address as in the parent (the memory is a copy).
        unsafe { libc::syscall(libc::SYS_set_robust_list, robust, robust_len) };
        return Ok(Forked::Child);
    }
    // SAFETY: the kernel stored a new descriptor for the child in `pidfd`
    // (CLONE_PIDFD); nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Forked::Parent(Pid::from_raw(r as i32), Some(fd)))
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
        // zeroed); `si_pid` and `si_status` are valid to read for SIGCHLD
        // information, and read as 0 from the zeroed value.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => Reaped::Exited(status),
            _ => match Signal::try_from(status) {
                Ok(s) => Reaped::Signaled(s),
                // A signal number nix does not know (a real-time signal):
                // report it as the shell would, 128 + n.
                Err(_) => Reaped::Exited(128 + status),
            },
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

/// Sends `sig` through the pidfd, so a recycled pid is never signalled.
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, sig: Signal) -> Result<()> {
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

/// A pipe with both ends close-on-exec: (read, write).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::os("pipe2", e))
}

/// Writes all of `data` to `fd`, retrying on EINTR; errors are dropped
/// (the reader may be gone, which is not the writer's problem).
pub(crate) fn write_all(fd: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return,
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// Reads what `fd` has without blocking into `buf`; true at end of file.
pub(crate) fn read_available(fd: &OwnedFd, buf: &mut Vec<u8>) -> Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("poll", e)),
        }
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("read", e)),
        }
    }
}

/// Waits until any of `fds` is readable or hung up, at most `timeout`
/// (forever on `None`); returns which ones are.
pub(crate) fn poll_readable(
    fds: &[std::os::fd::BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> Result<Vec<usize>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = timeout.map(crate::sys::futex::Deadline::after);
    loop {
        let ms = match deadline.and_then(|d| d.remaining()) {
            None => PollTimeout::NONE,
            Some(left) => PollTimeout::from(
                u16::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(u16::MAX),
            ),
        };
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        match poll(&mut pfds, ms) {
            Ok(0) => {
                if deadline.is_some_and(|d| d.expired()) {
                    return Ok(Vec::new());
                }
            }
            Ok(_) => {
                return Ok(pfds
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(i, _)| i)
                    .collect());
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("poll", e)),
        }
    }
}

/// In a fork child: be killed with `sig` when the parent (`parent`, the pid
/// before the fork) dies. If it died already, exits at once (the classic
/// race: the parent may die between fork and prctl).
pub(crate) fn die_with_parent(parent: i32, sig: Signal) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; no pointers.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    if r != 0 || nix::unistd::getppid().as_raw() != parent {
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

/// Puts `pid` (0: the caller) in a new process group of its own.
pub(crate) fn new_group(pid: Pid) -> Result<()> {
    nix::unistd::setpgid(pid, pid).map_err(|e| Error::os("setpgid", e))
}

/// Sends `sig` to the process group `pgid`.
pub(crate) fn signal_group(pgid: Pid, sig: Signal) -> Result<()> {
    match nix::sys::signal::killpg(pgid, sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::os("killpg", e)),
    }
}

/// The parent's pid.
pub(crate) fn parent_pid() -> i32 {
    nix::unistd::getppid().as_raw()
}

/// Fills `buf` with random bytes from the kernel (`getrandom`).
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writes at most `buf.len() - done` bytes into `buf[done..]`.
        let r = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::os("getrandom", e));
        }
        done += r as usize;
    }
    Ok(())
}

/// Sends `data` on the stream socket `fd` with the descriptor `pass`
/// attached (SCM_RIGHTS); how many bytes went (the rest is the caller's to
/// send normally).
#[cfg(feature = "serde")]
pub(crate) fn send_with_fd(
    fd: std::os::fd::BorrowedFd<'_>,
    data: &[u8],
    pass: std::os::fd::BorrowedFd<'_>,
) -> nix::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds = [pass.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(data)];
    loop {
        match sendmsg::<()>(fd.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Reads from the stream socket `fd` into `buf` (not waiting: EAGAIN on a
/// non-blocking socket with nothing to read); the bytes read and any
/// descriptors that came with them (SCM_RIGHTS, close-on-exec).
#[cfg(feature = "serde")]
pub(crate) fn recv_with_fds(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
) -> nix::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::RawFd;
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for r in raw {
                    // SAFETY: the kernel just installed `r` in this process
                    // for this message (SCM_RIGHTS); nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                }
            }
        }
    }
    Ok((msg.bytes, fds))
}
