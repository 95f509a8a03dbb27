//! fork, _exit, waitpid, pidfd and kill.

use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Forks; the child runs `setup`, then takes `child` out of the option, runs it under
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
pub(crate) unsafe fn fork<S: FnOnce(), F: FnOnce() -> i32>(
    setup: S,
    child: &mut Option<F>,
) -> Result<Pid> {
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
            setup();
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

/// The parent process watched by [`die_with_parent_process`].
static WATCHED_PARENT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The signal [`die_with_parent_process`] has the kernel send: a real-time
/// signal (`SIGRTMAX - 2`) that nothing else in the crate uses.
fn parent_thread_signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

/// The handler of [`parent_thread_signal`]: the thread that started this
/// process ended; if the process it belonged to is gone too (this process
/// was handed to another reaper, so the parent pid changed), SIGKILL this
/// process. Only async-signal-safe calls: `getppid`, `getpid`, `kill` and
/// an atomic load.
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

/// The contents of descriptor `fd` if it is a memfd named `name` (one this
/// process inherited under a number it was told), read without taking the
/// descriptor over; `None` for anything else (closed, another file, a
/// memfd of another name). The file offset is left alone (`pread`).
#[cfg(feature = "serde")]
pub(crate) fn inherited_memfd(fd: std::os::fd::RawFd, name: &std::ffi::CStr) -> Option<Vec<u8>> {
    const MAX: usize = 1 << 30;
    if fd < 0 {
        return None;
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let want = format!("/memfd:{} (deleted)", name.to_str().ok()?);
    if link.as_os_str() != want.as_str() {
        return None;
    }
    // SAFETY: fcntl on a descriptor number: at worst EBADF; changes nothing.
    if unsafe { libc::fcntl(fd, libc::F_GET_SEALS) } < 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: reads at most `chunk.len()` bytes into `chunk`; pread
        // leaves the descriptor's offset alone, so whoever owns it sees no
        // change; at worst EBADF.
        let r = unsafe {
            libc::pread(
                fd,
                chunk.as_mut_ptr().cast(),
                chunk.len(),
                out.len() as libc::off_t,
            )
        };
        match r {
            0 => return Some(out),
            n if n > 0 && out.len() + (n as usize) <= MAX => {
                out.extend_from_slice(&chunk[..n as usize]);
            }
            n if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => return None,
        }
    }
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
    use std::os::fd::AsRawFd;
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
    use std::os::fd::{AsRawFd, RawFd};
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
