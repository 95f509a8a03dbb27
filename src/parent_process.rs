//! `parent_process()`: the process that started this one, as Python's
//! `multiprocessing.parent_process()`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use crate::error::Result;
use crate::process::JoinError;
use crate::process::{current_process, parent_alive};
use crate::sys::fd as sysfd;
use crate::sys::process as sys;

/// The process that started this one with [`Process`](crate::Process)
/// (Python's `parent_process()`): its pid, whether it is alive, and a wait
/// for its end. Not a handle that can signal it: the parent is not this
/// process's to stop.
#[derive(Debug)]
pub struct ParentProcess {
    pid: i32,
}

/// The parent that started this process through [`Process`](crate::Process)
/// (fork or spawn); `None` in a program's first process, as in Python.
///
/// ```
/// // The main process has none.
/// assert!(multiproc::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    let me = current_process();
    (me.name() != "MainProcess").then(|| ParentProcess {
        pid: me.parent_pid(),
    })
}

impl ParentProcess {
    /// The parent's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the parent still runs (this process was not reparented).
    pub fn is_alive(&self) -> bool {
        parent_alive()
    }

    /// Waits until the parent has ended, at most `timeout` (for ever on
    /// `None`); whether it has.
    ///
    /// # Errors
    ///
    /// [`JoinError::Os`] if `pidfd_open` or `poll` fails (the other
    /// variants are a child's, never the parent's).
    pub fn join_timeout(&self, timeout: Option<Duration>) -> Result<bool, JoinError> {
        let Some(fd) = self.pidfd().map_err(JoinError::from_internal)? else {
            return Ok(true);
        };
        // A pidfd turns readable when its process ends.
        let ready =
            sysfd::poll_readable(&[fd.as_fd()], timeout).map_err(JoinError::from_internal)?;
        Ok(!ready.is_empty())
    }

    /// A pidfd on the parent, or `None` if it has ended already. Checked
    /// after opening: while this process's parent is still `pid`, that pid
    /// cannot have been reused, so the descriptor is the parent's.
    fn pidfd(&self) -> Result<Option<OwnedFd>> {
        if !self.is_alive() {
            return Ok(None);
        }
        let fd = match sys::pidfd_open(nix::unistd::Pid::from_raw(self.pid)) {
            Ok(fd) => fd,
            Err(_) if !self.is_alive() => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(self.is_alive().then_some(fd))
    }
}
