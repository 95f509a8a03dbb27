//! Groups of processes that fail fast; a process is [`Waitable`] (see
//! [`wait`]).

use std::os::fd::BorrowedFd;
use std::time::Duration;

use crate::signal::Signal;

use super::error::GroupError;
use super::{ExitStatus, Process};
use crate::connection::{Waitable, wait};
use crate::deadline::Deadline;

type Result<T, E = GroupError> = std::result::Result<T, E>;

impl<T> Waitable for Process<'_, T> {
    fn ready_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd()
    }
}

/// Processes run as a unit: wait for whichever ends first, stop them all,
/// or run them so that the first failure stops the rest (fail fast).
///
/// # Examples
///
/// ```
/// use multiproc::{Process, ProcessGroup};
///
/// let mut group = ProcessGroup::new();
/// group.push(Process::new(|| ()));
/// group.push(Process::new(|| 3));
/// # // Doctests run on a thread of their own: opt in to forking there.
/// # let mut group = ProcessGroup::new();
/// # group.push(unsafe { Process::new(|| ()).allow_threads() });
/// # group.push(unsafe { Process::new(|| 3).allow_threads() });
/// let err = group.run_fail_fast().unwrap_err();
/// assert!(matches!(err, multiproc::GroupError::ChildFailed { index: 1, .. }));
/// ```
#[derive(Default)]
pub struct ProcessGroup<'a> {
    procs: Vec<Process<'a>>,
    reported: Vec<bool>,
}

impl<'a> ProcessGroup<'a> {
    /// An empty group.
    pub fn new() -> Self {
        ProcessGroup {
            procs: Vec::new(),
            reported: Vec::new(),
        }
    }

    /// Adds a process (started or not); returns its index.
    pub fn push(&mut self, p: Process<'a>) -> usize {
        self.procs.push(p);
        self.reported.push(false);
        self.procs.len() - 1
    }

    /// How many processes the group has.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether the group has none.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The processes.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Process<'a>> {
        self.procs.iter_mut()
    }

    /// Process `i`.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Process<'a>> {
        self.procs.get_mut(i)
    }

    /// Starts every process not started yet. On an error
    /// ([`GroupError::Start`], naming the process) the ones already started
    /// keep running (`terminate_all` stops them).
    pub fn start(&mut self) -> Result<()> {
        for (index, p) in self.procs.iter_mut().enumerate() {
            if p.pid().is_none() {
                p.start()
                    .map_err(|source| GroupError::Start { index, source })?;
            }
        }
        Ok(())
    }

    /// Waits for the next process to end that this call has not reported
    /// yet, at most `timeout`; returns its index and status (reaped), or
    /// `None` on timeout or when every process has been reported.
    pub fn wait_any(&mut self, timeout: Option<Duration>) -> Result<Option<(usize, ExitStatus)>> {
        let deadline = timeout.map_or(Deadline::NEVER, Deadline::after);
        loop {
            let mut pending = false;
            for (i, p) in self.procs.iter_mut().enumerate() {
                if self.reported[i] || p.pid().is_none() {
                    continue;
                }
                pending = true;
                let joined = p
                    .join_timeout(Duration::ZERO)
                    .map_err(|source| GroupError::Join { index: i, source })?;
                if let Some(s) = joined {
                    self.reported[i] = true;
                    return Ok(Some((i, s)));
                }
            }
            if !pending || deadline.expired() {
                return Ok(None);
            }
            let objs: Vec<&dyn Waitable> = self
                .procs
                .iter()
                .zip(&self.reported)
                .filter(|(p, r)| !**r && p.pid().is_some())
                .map(|(p, _)| p as &dyn Waitable)
                .collect();
            wait(&objs, deadline.remaining()).map_err(|e| GroupError::os("wait", e.into()))?;
        }
    }

    /// Sends SIGTERM to every process still running. Each started process
    /// is tried; the first failure is returned as [`GroupError::Signal`]
    /// with its index (a process someone else reaped:
    /// [`SignalError::ReapedElsewhere`](super::SignalError::ReapedElsewhere)).
    pub fn terminate_all(&mut self) -> Result<()> {
        self.signal_all(Signal::SIGTERM)
    }

    /// Sends SIGKILL to every process still running (see
    /// [`terminate_all`](ProcessGroup::terminate_all)).
    pub fn kill_all(&mut self) -> Result<()> {
        self.signal_all(Signal::SIGKILL)
    }

    fn signal_all(&mut self, sig: Signal) -> Result<()> {
        let mut first_err = None;
        for (index, p) in self.procs.iter_mut().enumerate() {
            if p.pid().is_some()
                && let Err(source) = p.signal(sig)
            {
                first_err.get_or_insert(GroupError::Signal { index, source });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Joins every started process; their statuses in order (`None` for
    /// one never started).
    pub fn join_all(&mut self) -> Result<Vec<Option<ExitStatus>>> {
        self.procs
            .iter_mut()
            .enumerate()
            .map(|(index, p)| {
                if p.pid().is_some() {
                    p.join()
                        .map(Some)
                        .map_err(|source| GroupError::Join { index, source })
                } else {
                    Ok(None)
                }
            })
            .collect()
    }

    /// Starts every process and waits for all of them; as soon as one ends
    /// with anything but exit code 0, stops the others (SIGTERM, then
    /// SIGKILL for any still running after `grace` of one second), joins
    /// them, and returns [`GroupError::ChildFailed`] for the first failure.
    pub fn run_fail_fast(&mut self) -> Result<Vec<ExitStatus>> {
        self.run_fail_fast_with_grace(Duration::from_secs(1))
    }

    /// [`run_fail_fast`](ProcessGroup::run_fail_fast) with a chosen grace
    /// period between SIGTERM and SIGKILL.
    pub fn run_fail_fast_with_grace(&mut self, grace: Duration) -> Result<Vec<ExitStatus>> {
        if let Err(e) = self.start() {
            self.stop(grace)?;
            return Err(e);
        }
        while let Some((i, s)) = self.wait_any(None)? {
            if !s.success() {
                let p = &self.procs[i];
                let failed = GroupError::ChildFailed {
                    index: i,
                    name: p.name().to_owned(),
                    status: s,
                    message: p.message(),
                };
                self.stop(grace)?;
                return Err(failed);
            }
        }
        Ok(self
            .join_all()?
            .into_iter()
            .map(|s| s.unwrap_or(ExitStatus::Exited(0)))
            .collect())
    }

    /// SIGTERM to all, SIGKILL after `grace` to those still running, then
    /// join all.
    fn stop(&mut self, grace: Duration) -> Result<()> {
        self.terminate_all()?;
        let deadline = Deadline::after(grace);
        for (index, p) in self.procs.iter_mut().enumerate() {
            if p.pid().is_some() {
                let left = deadline.remaining().unwrap_or(Duration::ZERO);
                let join = |source| GroupError::Join { index, source };
                if p.join_timeout(left).map_err(join)?.is_none() {
                    p.kill()
                        .map_err(|source| GroupError::Signal { index, source })?;
                    p.join().map_err(join)?;
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for ProcessGroup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.procs).finish()
    }
}
