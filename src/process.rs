//! `Process`: a child process running a closure (the fork start method).
//!
//! This is the small core the shared-memory types need; see the crate's
//! README for what is still to come (a spawn start method, results and
//! panic messages sent back, process groups).

use std::fmt;
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::sys::process::{self as sys, Reaped};
use crate::sys::thread;

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it.
    Signaled(Signal),
}

impl ExitStatus {
    /// The exit code as Python's `Process.exitcode` reports it: the code, or
    /// minus the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => -(s as i32),
        }
    }

    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

/// What a child's closure may return: its exit code.
pub trait ChildResult {
    /// The exit code this result stands for.
    fn exit_code(self) -> i32;
}

impl ChildResult for () {
    fn exit_code(self) -> i32 {
        0
    }
}

impl ChildResult for i32 {
    fn exit_code(self) -> i32 {
        self
    }
}

impl<E: fmt::Display> ChildResult for std::result::Result<(), E> {
    /// 0, or 1 after printing the error to stderr.
    fn exit_code(self) -> i32 {
        match self {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("Error: {e}");
                1
            }
        }
    }
}

type Body<'a> = Box<dyn FnOnce() -> i32 + 'a>;

/// A child process that runs a closure, like Python's
/// `multiprocessing.Process(target=...)` with the fork start method.
///
/// The child gets a copy of the parent's memory, shares the parent's shared
/// objects ([`Value`](crate::Value), [`Lock`](crate::Lock), ...), runs the
/// closure under `catch_unwind` and ends with `_exit`: exit code 0, the
/// closure's code, or 1 if it panicked. Stdout and stderr are flushed before
/// the fork and before the exit.
///
/// # Dropping
///
/// Dropping a `Process` whose child still runs joins it, because the
/// closure may borrow from the parent and the borrow must outlive the
/// child; a [daemon](Process::with_daemon) is killed instead. Either way no
/// zombie is left.
///
/// # Threads
///
/// `start` refuses to fork while the process has other threads: a forked
/// child inherits every lock those threads held, forever held. A program
/// that knows its child touches no such lock opts in with the `unsafe`
/// [`allow_threads`](Process::allow_threads).
///
/// # Examples
///
/// ```
/// let counter = multiproc::Value::new(0u32)?;
/// let mut p = multiproc::Process::new(|| counter.update(|c| *c += 1));
/// # let mut p = unsafe { p.allow_threads() }; // doctests run on a thread
/// p.start()?;
/// assert!(p.join()?.success());
/// assert_eq!(counter.get(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Process<'a> {
    /// Before `start`: the closure. After: the parent's copy of it, kept
    /// (never called) until the child has ended, so that shared objects
    /// moved into the closure stay allocated while the child uses them.
    body: Option<Body<'a>>,
    name: String,
    allow_threads: bool,
    daemon: bool,
    child: Option<Child>,
}

struct Child {
    pid: Pid,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
}

impl<'a> Process<'a> {
    /// A process that will run `body` once started.
    pub fn new<F, R>(body: F) -> Process<'a>
    where
        F: FnOnce() -> R + 'a,
        R: ChildResult,
    {
        Process {
            body: Some(Box::new(move || body().exit_code())),
            name: String::from("Process"),
            allow_threads: false,
            daemon: false,
            child: None,
        }
    }

    /// Names the process (for messages; Python's `name`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Marks the process as a daemon (Python's `daemon=True`): if it still
    /// runs when its `Process` is dropped, it is killed (SIGKILL) and reaped
    /// rather than joined.
    pub fn with_daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Whether the process is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Allows `start` to fork while other threads run.
    ///
    /// # Safety
    ///
    /// The child gets a copy of each lock another thread held at the moment
    /// of the fork, and such a lock stays held forever in the child. The
    /// closure must not take any lock that another thread may hold when
    /// `start` is called, such as a `Mutex` the threads share, or the lock
    /// inside a library that other threads use (a logger, a runtime).
    ///
    /// What `start` makes safe itself: stdout and stderr (`print!`, and the
    /// flush at exit) and this crate's shared heap are locked by the
    /// forking thread across the fork, so they are free in the child; glibc
    /// resets its allocator's locks in the child, so allocating is fine.
    /// The shared objects made before the fork (their locks are
    /// process-shared and robust) are fine too.
    pub unsafe fn allow_threads(mut self) -> Self {
        self.allow_threads = true;
        self
    }

    /// Forks the child, which runs the closure.
    ///
    /// [`Error::AlreadyStarted`] on a second call; [`Error::ThreadedFork`]
    /// if other threads run and [`allow_threads`](Process::allow_threads)
    /// was not given.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Err(Error::AlreadyStarted);
        }
        if !self.allow_threads
            && let Some(n) = thread::thread_count()
            && n > 1
        {
            return Err(Error::ThreadedFork { threads: n });
        }
        // SAFETY: either this process has one thread, or the caller took
        // responsibility through `allow_threads`.
        let pid = unsafe { sys::fork(&mut self.body)? };
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                // Without a pidfd the child cannot be managed safely: stop
                // it rather than leak it.
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = sys::reap(pid, true);
                return Err(e);
            }
        };
        self.child = Some(Child {
            pid,
            pidfd,
            status: None,
        });
        Ok(())
    }

    /// The child's pid, once started.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.pid.as_raw())
    }

    fn child(&mut self) -> Result<&mut Child> {
        self.child.as_mut().ok_or(Error::NotStarted)
    }

    /// Waits for the child to end and reaps it. Can be called again; it
    /// then returns the same status.
    pub fn join(&mut self) -> Result<ExitStatus> {
        let c = self.child()?;
        if let Some(s) = c.status {
            return Ok(s);
        }
        let s = match sys::reap(c.pid, true)? {
            Some(r) => status(r),
            None => unreachable!("a blocking waitpid returns only once the child ended"),
        };
        c.status = Some(s);
        self.body = None;
        Ok(s)
    }

    /// Waits at most `timeout` for the child to end; `None` if it still
    /// runs. A zero timeout never blocks.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let c = self.child()?;
        if let Some(s) = c.status {
            return Ok(Some(s));
        }
        if !timeout.is_zero() && !sys::pidfd_wait(&c.pidfd, timeout)? {
            return Ok(None);
        }
        self.poll()
    }

    fn poll(&mut self) -> Result<Option<ExitStatus>> {
        let c = self.child()?;
        if c.status.is_none() {
            c.status = sys::reap(c.pid, false)?.map(status);
        }
        let s = c.status;
        if s.is_some() {
            self.body = None;
        }
        Ok(s)
    }

    /// Whether the child was started and has not ended (it is reaped if it
    /// has).
    pub fn is_alive(&mut self) -> bool {
        self.child.is_some() && matches!(self.poll(), Ok(None))
    }

    /// The exit code as Python reports it: `None` while running (or not
    /// started), else the code or minus the signal.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.child.as_ref()?;
        self.poll().ok().flatten().map(ExitStatus::code)
    }

    /// Sends SIGTERM. Does nothing once the child has been reaped: the pid
    /// may belong to another process by then.
    pub fn terminate(&mut self) -> Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// Sends SIGKILL. Does nothing once the child has been reaped.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL)
    }

    /// Sends `sig` to the child (through its pidfd, never to a recycled pid).
    pub fn signal(&mut self, sig: Signal) -> Result<()> {
        let c = self.child()?;
        if c.status.is_some() {
            return Ok(());
        }
        sys::pidfd_signal(&c.pidfd, sig)
    }
}

fn status(r: Reaped) -> ExitStatus {
    match r {
        Reaped::Exited(c) => ExitStatus::Exited(c),
        Reaped::Signaled(s) => ExitStatus::Signaled(s),
    }
}

impl Drop for Process<'_> {
    /// Joins a child that still runs (as Python joins non-daemon children at
    /// exit, and as a scoped thread is joined): the closure may borrow from
    /// the parent, and those borrows must outlive the child. A daemon is
    /// killed first. Never leaves a zombie.
    fn drop(&mut self) {
        if let Some(c) = &mut self.child
            && c.status.is_none()
        {
            if self.daemon {
                let _ = sys::pidfd_signal(&c.pidfd, Signal::SIGKILL);
            }
            let _ = sys::reap(c.pid, true);
        }
    }
}

impl fmt::Debug for Process<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field(
                "status",
                &self
                    .child
                    .as_ref()
                    .and_then(|c| c.status.map(ExitStatus::code)),
            )
            .finish()
    }
}

/// Ends the calling process at once with `code` after flushing stdout and
/// stderr, without running destructors: how a forked child should end
/// early (Python's `os._exit`).
pub fn exit(code: i32) -> ! {
    sys::exit(code)
}
