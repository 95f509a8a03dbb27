//! File descriptors: pipes, flags (non-blocking, close-on-exec), plain
//! reads and writes, `poll`, file sizes. Sockets are in
//! [`socket`](super::socket).
//!
//! Calls that the callers retry or sort by errno (`EINTR`, `EAGAIN`,
//! `ECONNRESET`) return `nix::Result`, so each caller keeps deciding what
//! an errno means to it; the others return the crate's `Result`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::deadline::Deadline;
use crate::error::{Error, Result};

/// A pipe with both ends close-on-exec: (read, write).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::os("pipe2", e))
}

/// Asks for a pipe buffer of `bytes` (`F_SETPIPE_SZ`); false if the kernel
/// refused (over `/proc/sys/fs/pipe-max-size` for an unprivileged process,
/// or not a pipe). The pipe works either way.
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, bytes: i32) -> bool {
    // SAFETY: F_SETPIPE_SZ takes an integer argument and changes no memory
    // of ours; the descriptor is valid while borrowed.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) >= 0 }
}

/// Turns `O_NONBLOCK` on or off.
#[cfg_attr(not(feature = "listener"), allow(dead_code))]
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::os("fcntl", e))?;
    let mut flags = OFlag::from_bits_retain(flags);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| Error::os("fcntl", e))?;
    Ok(())
}

/// Marks `fd` close-on-exec; false if that failed.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> bool {
    use nix::fcntl::{F_SETFD, FdFlag, fcntl};
    fcntl(fd, F_SETFD(FdFlag::FD_CLOEXEC)).is_ok()
}

/// Clears close-on-exec on the descriptor number `fd`, so a program this
/// process execs inherits it. Async-signal-safe (one `fcntl`, no
/// allocation): callable between fork and exec. At worst `EBADF`.
#[cfg(feature = "spawn")]
pub(crate) fn clear_cloexec_raw(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl(F_SETFD) on a descriptor number takes an integer
    // argument and changes no memory; a bad number is EBADF.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Closes the descriptor number `fd`; errors are ignored.
///
/// # Safety
///
/// The caller owns `fd` (e.g. through an `OwnedFd` it will never drop) and
/// never uses it again.
pub(crate) unsafe fn close_raw(fd: RawFd) {
    let _ = nix::unistd::close(fd);
}

/// Whether `fd` is a socket (`fstat`); false if that cannot be told.
pub(crate) fn is_socket(fd: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd)
        .map(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK)
        .unwrap_or(false)
}

/// Whether `fd` is a pipe or FIFO (`fstat`); false if that cannot be told.
pub(crate) fn is_fifo(fd: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd)
        .map(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFIFO)
        .unwrap_or(false)
}

/// The size in bytes of the file `fd` (`fstat`'s `st_size`).
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> Result<i64> {
    nix::sys::stat::fstat(fd)
        .map(|st| st.st_size)
        .map_err(|e| Error::os("fstat", e))
}

/// Sets the size of the file `fd` (`ftruncate`).
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: libc::off_t) -> Result<()> {
    nix::unistd::ftruncate(fd, len).map_err(|e| Error::os("ftruncate", e))
}

/// One `read` into `buf`: how many bytes came (0 at end of file).
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<usize> {
    nix::unistd::read(fd, buf)
}

/// One `writev` of `slices` (to a pipe or file; sockets use
/// [`send_vectored`](super::socket::send_vectored)): how many bytes went.
pub(crate) fn writev(fd: BorrowedFd<'_>, slices: &[IoSlice<'_>]) -> nix::Result<usize> {
    nix::sys::uio::writev(fd, slices)
}

/// Writes all of `data` to `fd`, retrying on EINTR; errors are dropped
/// (the reader may be gone, which is not the writer's problem).
pub(crate) fn write_all(fd: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return,
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// Reads what `fd` has without blocking into `buf`; true at end of file.
pub(crate) fn read_available(fd: &OwnedFd, buf: &mut Vec<u8>) -> Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match poll(&[(fd.as_fd(), Interest::Read)], Some(Duration::ZERO)) {
            Ok(r) if r[0] => {}
            Ok(_) => return Ok(false),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("poll", e)),
        }
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("read", e)),
        }
    }
}

/// What [`poll`] waits for on a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Readable (or hung up, or in error).
    Read,
    /// Writable (or hung up, or in error).
    #[cfg_attr(not(feature = "listener"), allow(dead_code))]
    Write,
}

/// The `poll` timeout for `timeout`: `None` waits forever; a duration is
/// rounded up to whole milliseconds (a wait never ends early), capped at
/// the largest the call takes (the callers loop to a later deadline).
fn poll_timeout(timeout: Option<Duration>) -> PollTimeout {
    match timeout {
        None => PollTimeout::NONE,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// One `poll` of `fds`, waiting at most `timeout` (`None`: until one is
/// ready): for each, whether it reported any event (the one asked for,
/// hang-up or error). `EINTR` is returned to the caller, who decides
/// whether to wait again.
pub(crate) fn poll(
    fds: &[(BorrowedFd<'_>, Interest)],
    timeout: Option<Duration>,
) -> nix::Result<Vec<bool>> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|&(fd, i)| {
            let flags = match i {
                Interest::Read => PollFlags::POLLIN,
                Interest::Write => PollFlags::POLLOUT,
            };
            PollFd::new(fd, flags)
        })
        .collect();
    nix::poll::poll(&mut pfds, poll_timeout(timeout))?;
    Ok(pfds
        .iter()
        .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
        .collect())
}

/// Waits until any of `fds` is readable or hung up, at most `timeout`
/// (forever on `None`); returns which ones are.
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> Result<Vec<usize>> {
    let deadline = timeout.map(Deadline::after);
    let interest: Vec<_> = fds.iter().map(|&fd| (fd, Interest::Read)).collect();
    loop {
        // `None`: no deadline, or one too far to represent.
        match poll(&interest, deadline.and_then(|d| d.remaining())) {
            Ok(ready) if ready.iter().any(|&r| r) => {
                return Ok(ready
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| **r)
                    .map(|(i, _)| i)
                    .collect());
            }
            Ok(_) => {
                if deadline.is_some_and(|d| d.expired()) {
                    return Ok(Vec::new());
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("poll", e)),
        }
    }
}

/// Which of `fds` are hung up now (`POLLHUP`, or `POLLERR`: for a pipe
/// read end every write end closed, for a socket the peer gone); does not
/// wait. On an error none is.
pub(crate) fn hung_up(fds: &[BorrowedFd<'_>]) -> Vec<bool> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::empty()))
        .collect();
    loop {
        match nix::poll::poll(&mut pfds, PollTimeout::ZERO) {
            Ok(_) => {
                return pfds
                    .iter()
                    .map(|p| {
                        p.revents()
                            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
                    })
                    .collect();
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return vec![false; fds.len()],
        }
    }
}

/// The contents of descriptor `fd` if it is a memfd named `name` (one this
/// process inherited under a number it was told), read without taking the
/// descriptor over; `None` for anything else (closed, another file, a
/// memfd of another name). The file offset is left alone (`pread`).
#[cfg(feature = "spawn")]
pub(crate) fn inherited_memfd(fd: RawFd, name: &std::ffi::CStr) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_reports_each_descriptor_and_rounds_timeouts_up() {
        let (r, w) = pipe().unwrap();
        // Nothing to read; the write end has room.
        let got = poll(
            &[(r.as_fd(), Interest::Read), (w.as_fd(), Interest::Write)],
            Some(Duration::ZERO),
        )
        .unwrap();
        assert_eq!(got, [false, true]);
        write_all(&w, b"x");
        assert_eq!(poll_readable(&[r.as_fd()], None).unwrap(), [0]);
        // A sub-millisecond timeout waits (rounded up), never spins at 0.
        assert_eq!(
            poll_timeout(Some(Duration::from_nanos(1))),
            PollTimeout::try_from(1).unwrap()
        );
        assert_eq!(
            poll_timeout(Some(Duration::from_secs(u64::MAX))),
            PollTimeout::MAX
        );
        let mut buf = Vec::new();
        assert!(!read_available(&r, &mut buf).unwrap());
        assert_eq!(buf, b"x");
        drop(w);
        assert_eq!(hung_up(&[r.as_fd()]), [true]);
        assert!(read_available(&r, &mut buf).unwrap());
    }
}
