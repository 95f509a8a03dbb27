//! Waiting on many objects at once (Python's
//! `multiprocessing.connection.wait`): connections, processes, anything
//! that becomes ready when a descriptor turns readable.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::WaitError;
use crate::error::{Error, map_variants};
use crate::sys::fd as sysfd;

/// Something [`wait`] can wait on: it becomes ready once a file descriptor
/// is readable (a process's pidfd once it ended; later, a connection with
/// data).
pub trait Waitable {
    /// The descriptor that becomes readable, or `None` if there is nothing
    /// to wait for (a process not started).
    fn ready_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Called by [`wait`] just before it polls the descriptors: returns
    /// true if the object is ready already although its descriptor may not
    /// show it, and otherwise arranges for the descriptor to become
    /// readable once it is ready. A [`Connection`](crate::Connection)
    /// made by [`pipe`](crate::pipe) carries its bytes in shared memory and
    /// needs this; descriptor-only objects keep the default (false).
    fn prepare_wait(&self) -> bool {
        false
    }
}

/// Waits until at least one of `objects` is ready, at most `timeout`
/// (forever on `None`), and returns the indexes of those that are, like
/// Python's `multiprocessing.connection.wait`. A process is ready once it
/// ended (it is not reaped: `join` it). An empty list is returned on
/// timeout. A process never started is [`WaitError::NotStarted`] (Python
/// raises too).
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>, WaitError> {
    let fds = objects
        .iter()
        .enumerate()
        .map(|(index, o)| o.ready_fd().ok_or(WaitError::NotStarted { index }))
        .collect::<Result<Vec<_>, _>>()?;
    let ready: Vec<usize> = objects
        .iter()
        .enumerate()
        .filter(|(_, o)| o.prepare_wait())
        .map(|(i, _)| i)
        .collect();
    if !ready.is_empty() {
        // Also report the others that are ready now.
        let mut now = sysfd::poll_readable(&fds, Some(Duration::ZERO)).map_err(wait_error)?;
        now.extend(ready);
        now.sort_unstable();
        now.dedup();
        return Ok(now);
    }
    if fds.is_empty() {
        if let Some(t) = timeout {
            std::thread::sleep(t);
        }
        return Ok(Vec::new());
    }
    sysfd::poll_readable(&fds, timeout).map_err(wait_error)
}

/// The wait error for what `poll_readable` (which speaks [`Error`])
/// reported: a failed `poll`. Nothing else; were it to, the error is kept
/// whole as the source of an `Os` error.
fn wait_error(e: Error) -> WaitError {
    map_variants!(e, Error => WaitError { Os { call, source } },
        other => WaitError::Os { call: "poll", source: std::io::Error::other(other) })
}
