//! The async join of a [`Process`] (feature `tokio`): its pidfd becomes
//! readable when the child ends, and tokio watches it (`AsyncFd`); no
//! thread waits.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use crate::Process;
use crate::process::{ExitStatus, JoinError};

impl<T> Process<'_, T> {
    /// Waits for the child to end without blocking the thread, and reaps
    /// it: the async form of [`join`](Process::join), with its errors
    /// (a child reaped elsewhere is [`JoinError::ReapedElsewhere`] once it
    /// has ended). The child's report pipe is read as it fills, as `join`
    /// reads it.
    ///
    /// Cancellation: the child is reaped only in the step that returns its
    /// status; a dropped future leaves it to a later `join` (or to the
    /// handle's drop).
    pub async fn join_async(&mut self) -> Result<ExitStatus, JoinError> {
        loop {
            if let Some(s) = self.join_timeout(Duration::ZERO)? {
                return Ok(s);
            }
            let Some(pidfd) = self.pidfd() else {
                // Not started: `join` says so.
                return self.join();
            };
            let mut fds: Vec<BorrowedFd<'_>> = vec![pidfd];
            if let Some(r) = self.report_fd() {
                fds.push(r);
            }
            super::readable_any(&fds)
                .await
                .map_err(|source| JoinError::Os {
                    call: "poll",
                    source,
                })?;
        }
    }
}
