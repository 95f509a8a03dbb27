//! Unix stream sockets: socketpairs, sends that never raise `SIGPIPE`,
//! descriptor passing (`SCM_RIGHTS`), and the socket calls of a listener
//! bound with a private mode.
//!
//! As in [`fd`](super::fd), calls whose errno the callers sort (`EINTR`,
//! `EAGAIN`, `ECONNRESET`) return `nix::Result`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};

use crate::error::{Error, Result};

/// A connected pair of Unix stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::os("socketpair", e))
}

/// A new Unix stream socket, close-on-exec and non-blocking, not yet
/// connected.
#[cfg_attr(not(feature = "listener"), allow(dead_code))]
pub(crate) fn unix_stream_nonblocking() -> Result<OwnedFd> {
    nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| Error::os("socket", e))
}

/// One `connect` of the socket `fd` to `addr`.
#[cfg_attr(not(feature = "listener"), allow(dead_code))]
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &UnixAddr) -> nix::Result<()> {
    nix::sys::socket::connect(fd.as_raw_fd(), addr)
}

/// A new Unix stream socket bound at `path`, its file created mode 0600:
/// the mode is set on the socket (`fchmod`) before `bind`, and Linux gives
/// the file the socket's mode (less the umask), so the file never exists
/// with a wider one. Not listening yet: see [`listen`].
#[cfg_attr(not(feature = "listener"), allow(dead_code))]
pub(crate) fn bind_unix_private(path: &Path) -> std::io::Result<OwnedFd> {
    use nix::sys::stat::{Mode, fchmod};
    let fd = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    fchmod(&fd, Mode::S_IRUSR | Mode::S_IWUSR)?;
    nix::sys::socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(fd)
}

/// Listens on the bound socket `fd`, with the largest backlog allowed.
#[cfg_attr(not(feature = "listener"), allow(dead_code))]
pub(crate) fn listen(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::MAXCONN)?;
    Ok(())
}

/// Shuts both directions of the socket `fd` down (errors are ignored):
/// every process's copy of it sees the end of the stream.
#[cfg_attr(not(feature = "manager"), allow(dead_code))]
pub(crate) fn shutdown(fd: BorrowedFd<'_>) {
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
}

/// One `send` of `buf` with `MSG_NOSIGNAL` (a gone peer is `EPIPE`, never
/// `SIGPIPE`): how many bytes went.
#[cfg_attr(not(feature = "listener"), allow(dead_code))]
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> nix::Result<usize> {
    nix::sys::socket::send(fd.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL)
}

/// One `send` of `buf` that does not wait (`MSG_DONTWAIT`: `EAGAIN` when
/// the socket's buffer is full) and never raises `SIGPIPE`.
pub(crate) fn send_nowait(fd: BorrowedFd<'_>, buf: &[u8]) -> nix::Result<usize> {
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    nix::sys::socket::send(fd.as_raw_fd(), buf, flags)
}

/// One `recv` into `buf` that does not wait (`MSG_DONTWAIT`: `EAGAIN` when
/// nothing is there); with `peek`, the bytes stay in the socket
/// (`MSG_PEEK`).
pub(crate) fn recv_nowait(fd: BorrowedFd<'_>, buf: &mut [u8], peek: bool) -> nix::Result<usize> {
    let mut flags = MsgFlags::MSG_DONTWAIT;
    if peek {
        flags |= MsgFlags::MSG_PEEK;
    }
    nix::sys::socket::recv(fd.as_raw_fd(), buf, flags)
}

/// One `sendmsg` of `slices` with `MSG_NOSIGNAL`: how many bytes went.
pub(crate) fn send_vectored(fd: BorrowedFd<'_>, slices: &[IoSlice<'_>]) -> nix::Result<usize> {
    nix::sys::socket::sendmsg::<()>(fd.as_raw_fd(), slices, &[], MsgFlags::MSG_NOSIGNAL, None)
}

/// Sends `data` on the stream socket `fd` with the descriptor `pass`
/// attached (SCM_RIGHTS), retrying on EINTR; how many bytes went (the rest
/// is the caller's to send normally).
pub(crate) fn send_with_fd(
    fd: BorrowedFd<'_>,
    data: &[u8],
    pass: BorrowedFd<'_>,
) -> nix::Result<usize> {
    send_with_fds(fd, data, &[pass])
}

/// [`send_with_fd`] with several descriptors, all attached to the first
/// byte of `data`.
pub(crate) fn send_with_fds(
    fd: BorrowedFd<'_>,
    data: &[u8],
    pass: &[BorrowedFd<'_>],
) -> nix::Result<usize> {
    let fds: Vec<RawFd> = pass.iter().map(|p| p.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(data)];
    loop {
        match nix::sys::socket::sendmsg::<()>(
            fd.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// What kind of stream socket `fd` is: `Some(true)` for a Unix stream
/// socket, `Some(false)` for another stream socket (TCP), `None` for
/// anything else (not a socket, a datagram socket, or not to be told).
pub(crate) fn stream_socket_kind(fd: BorrowedFd<'_>) -> Option<bool> {
    use nix::sys::socket::{SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt};
    if !super::fd::is_socket(fd) {
        return None;
    }
    if getsockopt(&fd, sockopt::SockType).ok()? != SockType::Stream {
        return None;
    }
    let addr: SockaddrStorage = getsockname(fd.as_raw_fd()).ok()?;
    Some(addr.family() == Some(AddressFamily::Unix))
}

/// The most descriptors one `sendmsg` can pass (the kernel's
/// `SCM_MAX_FD`): room for that many means the descriptors of a message are
/// never cut short, so none is installed here without being owned (and
/// closed when not wanted).
const SCM_MAX_FD: usize = 253;

/// One `recvmsg` into `buf` taking the descriptors that come with the
/// bytes (close-on-exec; a stream socket's read stops after the bytes that
/// carry them, so they are one message's, at most [`SCM_MAX_FD`]): the
/// bytes read, and the descriptors, or `Err` with the errno `nix` reports
/// when the control data was cut short anyway (`MSG_CTRUNC`: the bytes were
/// read, the descriptors are not to be trusted).
pub(crate) fn recv_with_fds_checked(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> nix::Result<(usize, nix::Result<Vec<OwnedFd>>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
    let msg = nix::sys::socket::recvmsg::<()>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let fds = msg.cmsgs().map(|cmsgs| {
        let mut fds = Vec::new();
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors in
                // this process for this message (SCM_RIGHTS); nothing else
                // owns them.
                fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
        fds
    });
    Ok((msg.bytes, fds))
}

/// Reads from the stream socket `fd` into `buf` (not waiting: EAGAIN on a
/// non-blocking socket with nothing to read); the bytes read and any
/// descriptors that came with them (SCM_RIGHTS, close-on-exec). Control
/// data cut short is read as no descriptors.
#[cfg(feature = "manager")]
pub(crate) fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> nix::Result<(usize, Vec<OwnedFd>)> {
    let (n, fds) = recv_with_fds_checked(fd, buf)?;
    Ok((n, fds.unwrap_or_default()))
}
