//! The socket file of a listener on a path: bound mode 0600 from the
//! start, a stale one (its listener died) replaced, a live one left alone,
//! and removed when the listener that made it is dropped.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys::socket as sys;

/// The socket file a path listener removes when it is dropped, if it is
/// still the one it made, and only in the process that made it.
#[derive(Debug)]
pub(super) struct SocketFile {
    pub(super) path: PathBuf,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) pid: u32,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        if let Ok(m) = std::fs::symlink_metadata(&self.path)
            && m.dev() == self.dev
            && m.ino() == self.ino
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether a listening Unix socket is bound to `path`, from
/// `/proc/net/unix` (this network namespace's sockets); `None` if the
/// table cannot be read.
fn someone_listens(path: &Path) -> Option<bool> {
    /// `__SO_ACCEPTCON` in the Flags column: the socket listens.
    const ACCEPTCON: u32 = 0x10000;
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let canonical = std::fs::canonicalize(path).ok();
    Some(table.lines().skip(1).any(|line| {
        // Num RefCount Protocol Flags Type St Inode Path (which may hold spaces)
        let mut cols = line
            .splitn(8, char::is_whitespace)
            .filter(|c| !c.is_empty());
        let flags = cols.nth(3).and_then(|f| u32::from_str_radix(f, 16).ok());
        let bound = line.split_whitespace().nth(7).map(|_| {
            // The path is everything after the seventh column.
            let mut rest = line.trim_start();
            for _ in 0..7 {
                rest = rest
                    .split_once(char::is_whitespace)
                    .map_or("", |(_, r)| r)
                    .trim_start();
            }
            rest
        });
        match (flags, bound) {
            (Some(f), Some(b)) if f & ACCEPTCON != 0 => {
                Path::new(b) == path || canonical.as_deref() == Some(Path::new(b))
            }
            _ => false,
        }
    }))
}

/// Binds and listens on a new Unix socket at `path`, its file created mode
/// 0600 (read and write for the owner only), whatever the umask.
///
/// Linux gives the file of a bound Unix socket the socket's own inode mode,
/// less the umask: the mode is set on the socket (`fchmod`) before `bind`,
/// so the file never exists with a wider one. Changing the umask around
/// `bind` would do the same, but the umask is process-wide: a file another
/// thread creates meanwhile would get ours. Binding inside a private
/// directory and renaming would leave the kernel's socket table naming the
/// old path, which is how a live listener is told from a stale file.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let fd = sys::bind_unix_private(path)?;
    // A kernel that ignored the socket's mode: narrow it now.
    let m = std::fs::symlink_metadata(path)?;
    if m.mode() & 0o077 != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    sys::listen(fd.as_fd())?;
    Ok(UnixListener::from(fd))
}

/// Binds a Unix socket at `path`, replacing a socket file nobody listens on.
pub(super) fn bind_unix_path(path: &Path) -> Result<UnixListener> {
    match bind_private(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket = std::fs::symlink_metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false);
            if !is_socket {
                return Err(Error::os("bind", e));
            }
            // Is anybody listening on it? Asked of the kernel's socket
            // table, not by connecting: a probe connection would sit in a
            // live listener's queue and be accepted as a (dead) client.
            let stale = match someone_listens(path) {
                Some(listening) => !listening,
                // No /proc: fall back to a probe connection.
                None => matches!(
                    UnixStream::connect(path),
                    Err(c) if c.raw_os_error() == Some(libc::ECONNREFUSED)
                ),
            };
            if stale {
                let _ = std::fs::remove_file(path);
                bind_private(path).map_err(|e| Error::os("bind", e))
            } else {
                Err(Error::os("bind", e))
            }
        }
        Err(e) => Err(Error::os("bind", e)),
    }
}
