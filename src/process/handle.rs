//! The `Process` handle: a child process to configure, start, wait for and
//! signal, whatever start method made it.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::signal::Signal;
use nix::unistd::Pid;

use super::error::{JoinError, JoinOkError, SignalError, StartError};
use super::report::{Body, ChildResult, REPORT_ERROR, REPORT_PANIC, ReportSlot, unit_body};
#[cfg(feature = "spawn")]
use super::report::{REPORT_VALUE, value_body};
#[cfg(feature = "spawn")]
use super::{Context, StartMethod, current_process, spawn};
use super::{ExitStatus, identity, scope, status};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::sys::fd as sysfd;
use crate::sys::process as sys;

/// A child process that runs a closure, like Python's
/// `multiprocessing.Process(target=...)` with the fork start method.
///
/// The child gets a copy of the parent's memory, shares the parent's shared
/// objects ([`Value`](crate::Value), [`Lock`](crate::Lock), ...), runs the
/// closure under `catch_unwind` and ends with `_exit`: exit code 0, the
/// closure's code, or 1 if it panicked, with the panic message sent back to
/// the parent ([`message`](Process::message)). Stdout and stderr are flushed
/// before the fork and before the exit. With the `spawn` feature a child may
/// also return a value ([`Process::with_result`]).
///
/// # Borrowing, and what keeps it sound
///
/// [`Process::new`] takes a `'static` closure: it owns what it uses (move
/// shared objects in, or an `Arc` of them so the parent keeps a handle).
/// A closure that borrows from the parent runs in a [`scope`], which joins
/// every process started in it before it returns, even if its closure
/// panics or a handle was `mem::forget`-ed; a scoped `Process` cannot
/// outlive its scope. So no safe code can free what a running child
/// borrows, whether or not the `Process` is dropped.
///
/// # Dropping
///
/// Dropping a `Process` whose child still runs joins it (a
/// [daemon](Process::with_daemon) is killed instead), so no zombie is left.
///
/// # What the parent keeps
///
/// Nothing of the closure: the parent drops its copy right after the fork,
/// as Python's `Process` drops its target. A
/// [`Connection`](crate::Connection) end moved into the closure is closed
/// in the parent at `start`, so the parent sees end of stream once the
/// child closes its own (Python's "close the write ends, read until end of
/// stream" idiom works). Shared objects moved in and so freed by the parent
/// stay allocated while the child runs (the shared heap keeps slots freed
/// after a fork out of reuse until the children forked before are gone).
///
/// # Threads
///
/// `start` refuses to fork while the process has other threads: a forked
/// child inherits every lock those threads held, forever held. A program
/// that knows its child touches no such lock opts in with the `unsafe`
/// [`allow_threads`](Process::allow_threads).
///
/// The fork is glibc's `fork`, so the handlers that libraries register
/// with `pthread_atfork` run as usual (a random generator that reseeds in
/// the child, say).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// let counter = Arc::new(multiproc::Value::new(0u32)?);
/// let mut p = multiproc::Process::new({
///     let counter = Arc::clone(&counter);
///     move || counter.update(|c| *c += 1)
/// });
/// # let mut p = unsafe { p.allow_threads() }; // doctests run on a thread
/// p.start()?;
/// assert!(p.join()?.success());
/// assert_eq!(counter.get(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Borrowing instead, in a [`scope`]:
///
/// ```
/// let counter = multiproc::Value::new(0u32)?;
/// multiproc::process::scope(|s| {
///     let mut p = s.process(|| counter.update(|c| *c += 1));
/// #   let mut p = unsafe { p.allow_threads() }; // doctests run on a thread
///     p.start()?;
///     p.join_ok()?;
///     Ok::<(), multiproc::Error>(())
/// })?;
/// assert_eq!(counter.get(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Process<'a, T = ()> {
    /// The closure, until `start` (the parent drops its copy right after
    /// the fork).
    pub(super) body: Option<Body<'a>>,
    /// The scope that joins this process, for one made by [`Scope`]; `None`
    /// for a `'static` one.
    pub(super) scope: Option<&'a scope::ScopeData>,
    pub(super) name: String,
    /// Python's `_identity` for the child ("2", "1:2").
    pub(super) ident: String,
    pub(super) allow_threads: bool,
    pub(super) daemon: bool,
    pub(super) die_with_parent: bool,
    pub(super) new_group: bool,
    pub(super) deadline: Option<Duration>,
    pub(super) authkey: Option<Vec<u8>>,
    /// Whether the child's report may outgrow the shared slot (a returned
    /// value): then a pipe carries it. Messages alone fit the slot.
    pub(super) report_pipe: bool,
    pub(super) child: Option<Child>,
    /// The spawn start method's plan, for a process made by
    /// [`Process::spawn`].
    #[cfg(feature = "spawn")]
    pub(super) spawn: Option<spawn::Plan>,
    /// A spawned process's arguments, kept until it ends: the shared
    /// objects among them must stay allocated while the child uses them.
    #[cfg(feature = "spawn")]
    pub(super) retained: Option<Box<dyn std::any::Any>>,
    pub(super) _result: PhantomData<fn() -> T>,
}

pub(super) struct Child {
    pid: Pid,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
    /// Someone else reaped the child: its status is unknown.
    lost: bool,
    /// The read end of the report pipe, until its end of file.
    report_fd: Option<OwnedFd>,
    report: Vec<u8>,
    /// The shared report slot (fork only; a spawned child reports through
    /// the pipe).
    slot: Option<crate::shm::ShmBox<ReportSlot>>,
}

impl Process<'static, ()> {
    /// A process that will run `body` once started. `body` returns `()`, an
    /// exit code (`i32`), or a `Result<(), E>` (an error exits with code 1
    /// and its text reaches the parent), or never returns.
    ///
    /// `body` is `'static`: it owns what it uses. To borrow from the parent,
    /// start the process in a [`scope`].
    pub fn new<F, R>(body: F) -> Process<'static, ()>
    where
        F: FnOnce() -> R + 'static,
        R: ChildResult,
    {
        Process::from_body(Some(unit_body(body)), None)
    }
}

#[cfg(feature = "spawn")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Process<'static, T> {
    /// A process whose closure returns a value to the parent (sent back
    /// serialized, read with [`result`](Process::result)), which Python's
    /// `Process` cannot do. A value that cannot be serialized makes the
    /// child exit with code 1 and an error message. `body` is `'static`, as
    /// for [`Process::new`]; [`Scope::process_with_result`](super::Scope::process_with_result) borrows.
    pub fn with_result<F>(body: F) -> Process<'static, T>
    where
        F: FnOnce() -> T + 'static,
    {
        let mut p = Process::from_body(Some(value_body(body)), None);
        p.report_pipe = true;
        p
    }

    /// A process started with the **spawn** start method: a fresh run of
    /// this program (`/proc/self/exe`) that calls `entry(args)` and returns
    /// its result ([`result`](Process::result)). Safe from a multithreaded
    /// parent, unlike fork, and no `allow_threads` is needed.
    ///
    /// The program must call [`init`](super::init) first thing in `main`. `entry` is a
    /// plain function (no captured state: everything goes in `args`).
    /// Shared objects travel in `args`, usually as `Arc<Value<T>>` and the
    /// like so the parent keeps its own handle: the child maps the same
    /// shared memory. The `Process` keeps `args` until the child ends.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use multiproc::{Process, Value};
    ///
    /// fn add(counter: Arc<Value<u64>>) -> u64 {
    ///     counter.update(|c| { *c += 1; *c })
    /// }
    ///
    /// fn main() -> multiproc::Result<()> {
    ///     multiproc::init();
    ///     let counter = Arc::new(Value::new(0u64)?);
    ///     let mut p = Process::spawn(add, counter.clone())?;
    ///     p.start()?;
    ///     assert_eq!(p.result()?, 1);
    ///     assert_eq!(counter.get(), 1);
    ///     Ok(())
    /// }
    /// ```
    pub fn spawn<A>(entry: fn(A) -> T, args: A) -> Result<Process<'static, T>, StartError>
    where
        A: serde::Serialize + serde::de::DeserializeOwned + 'static,
        T: 'static,
    {
        let plan = spawn::Plan::new(entry, &args).map_err(StartError::from_internal)?;
        let mut p = Process::from_body(None, None);
        p.spawn = Some(plan);
        p.retained = Some(Box::new(args));
        Ok(p)
    }

    /// A process that runs `entry(args)` with the default context's start
    /// method ([`set_start_method`](super::set_start_method); fork unless changed), and returns its result
    /// ([`result`](Process::result)): the same call runs in a forked child
    /// or in a spawned one, as Python's `Process(target=f, args=a)` does
    /// under either start method. See [`Process::spawn`] for what spawning
    /// asks of the program (`init()` first in `main`).
    pub fn call<A>(entry: fn(A) -> T, args: A) -> Result<Process<'static, T>, StartError>
    where
        A: serde::Serialize + serde::de::DeserializeOwned + 'static,
        T: 'static,
    {
        Context::default_context().process(entry, args)
    }

    /// [`Process::call`] with the start method given here (the same as
    /// `Context::new(method).process(entry, args)`).
    pub fn call_with<A>(
        method: StartMethod,
        entry: fn(A) -> T,
        args: A,
    ) -> Result<Process<'static, T>, StartError>
    where
        A: serde::Serialize + serde::de::DeserializeOwned + 'static,
        T: 'static,
    {
        Context::new(method).process(entry, args)
    }
}

#[cfg(feature = "spawn")]
impl<T: serde::de::DeserializeOwned> Process<'_, T> {
    /// Joins the child and returns the value its closure returned, or
    /// [`ResultError::ChildFailed`](super::ResultError::ChildFailed) if it
    /// did not end well (a panic, an exit code, a signal), with its message.
    pub fn result(&mut self) -> Result<T, super::ResultError> {
        let status = self.join()?;
        let c = self.child.as_ref().ok_or(super::ResultError::NotStarted)?;
        match c.report.split_first() {
            Some((&REPORT_VALUE, bytes)) if status.success() => postcard::from_bytes(bytes)
                .map_err(|e| super::ResultError::Codec(format!("the child's result: {e}"))),
            _ => Err(super::ResultError::from_internal(self.failure(status))),
        }
    }
}

impl<'a, T> Process<'a, T> {
    /// A process with `body` to fork, or none (the spawn start method),
    /// joined by `scope` if it borrows.
    pub(super) fn from_body(body: Option<Body<'a>>, scope: Option<&'a scope::ScopeData>) -> Self {
        let ident = identity::next_child_identity();
        Process {
            body,
            scope,
            name: format!("Process-{ident}"),
            ident,
            allow_threads: false,
            daemon: false,
            die_with_parent: false,
            new_group: false,
            deadline: None,
            authkey: None,
            report_pipe: false,
            child: None,
            #[cfg(feature = "spawn")]
            spawn: None,
            #[cfg(feature = "spawn")]
            retained: None,
            _result: PhantomData,
        }
    }

    /// Names the process (Python's `name`); the child sees it as
    /// [`current_process().name()`](super::CurrentProcess::name). The default is
    /// Python's: `Process-1`, `Process-2`, ... in the order the `Process`es
    /// are made, and `Process-1:1`, ... for those made in the child
    /// `Process-1`.
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

    /// Kills the child (SIGKILL) when this process dies, however it dies,
    /// SIGKILL included (`PR_SET_PDEATHSIG`). If the parent died between the
    /// fork and that setting, the child exits at once.
    ///
    /// The kernel ties this to the *thread* that forked: if that thread ends
    /// before the child, the child is killed too. Start such children from
    /// a thread that outlives them (typically the main thread).
    pub fn with_die_with_parent(mut self, on: bool) -> Self {
        self.die_with_parent = on;
        self
    }

    /// Starts the child in a process group of its own, so that it and every
    /// process it starts can be signalled at once with
    /// [`signal_group`](Process::signal_group).
    pub fn with_new_group(mut self, on: bool) -> Self {
        self.new_group = on;
        self
    }

    /// Kills the child with SIGKILL once `limit` has passed since it
    /// started, whatever it is doing (a timer in the child; it needs no
    /// help from the parent). Its exit code then shows `-9`.
    pub fn with_deadline(mut self, limit: Duration) -> Self {
        self.deadline = Some(limit);
        self
    }

    /// The authkey the child will see as `current_process().authkey()`
    /// (default: this process's).
    pub fn with_authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
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
    /// [`StartError::AlreadyStarted`] on a second call;
    /// [`StartError::ThreadedFork`] if other threads run and
    /// [`allow_threads`](Process::allow_threads) was not given.
    pub fn start(&mut self) -> Result<(), StartError> {
        self.start_any().map_err(StartError::from_internal)
    }

    fn start_any(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Err(Error::AlreadyStarted);
        }
        if let Some(scope) = self.scope {
            scope.check_owner()?;
        }
        #[cfg(feature = "spawn")]
        if let Some(plan) = self.spawn.take() {
            return self.start_spawned(plan);
        }
        self.start_forked()
    }

    #[cfg(feature = "spawn")]
    fn start_spawned(&mut self, plan: spawn::Plan) -> Result<()> {
        let authkey = match &self.authkey {
            Some(k) => k.clone(),
            None => current_process().authkey().to_vec(),
        };
        // Locked until the child is registered (see `start`).
        let registry = identity::registry();
        let (pid, report_rd) = spawn::start(
            plan,
            spawn::Options {
                name: &self.name,
                ident: &self.ident,
                authkey,
                die_with_parent: self.die_with_parent,
                new_group: self.new_group,
                deadline: self.deadline,
            },
        )?;
        self.adopt_child(pid, None, Some(report_rd), None, registry)
    }

    pub(super) fn adopt_child(
        &mut self,
        pid: Pid,
        pidfd: Option<OwnedFd>,
        report_rd: Option<OwnedFd>,
        slot: Option<crate::shm::ShmBox<ReportSlot>>,
        mut registry: std::sync::MutexGuard<'static, identity::Registry>,
    ) -> Result<()> {
        let pidfd = match pidfd.map_or_else(|| sys::pidfd_open(pid), Ok) {
            Ok(fd) => fd,
            Err(e) => {
                // Without a pidfd the child cannot be managed safely: stop
                // it rather than leak it.
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::reap(pid, true);
                return Err(e);
            }
        };
        if let Some(scope) = self.scope
            && let Err(e) = scope.register(pid, &pidfd)
        {
            // The scope could not keep track of it: stop it before the
            // handle could be forgotten.
            let _ = sys::pidfd_signal(&pidfd, libc::SIGKILL);
            let _ = sys::reap_pidfd(pidfd.as_fd(), true);
            return Err(e);
        }
        registry.add(pid.as_raw());
        drop(registry);
        crate::mp_log!(info, "started {} (pid {})", self.name, pid.as_raw());
        self.child = Some(Child {
            pid,
            pidfd,
            status: None,
            lost: false,
            report_fd: report_rd,
            report: Vec::new(),
            slot,
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
    ///
    /// If someone else reaped the child (a `waitpid(-1)`, `SIGCHLD` set to
    /// `SIG_IGN`, another library's reaper), returns
    /// [`JoinError::ReapedElsewhere`] as soon as the child has ended: its status
    /// is lost (Python's `exitcode` is `None` then). Children reaped by
    /// [`active_children`](super::active_children) or [`start_reaper`](super::start_reaper) keep their status.
    pub fn join(&mut self) -> Result<ExitStatus, JoinError> {
        loop {
            // A wait without deadline returns once the child ended.
            if let Some(s) = self.join_timeout_any(Deadline::NEVER)? {
                return Ok(s);
            }
        }
    }

    /// Waits at most `timeout` for the child to end; `None` if it still
    /// runs. A zero timeout never blocks.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, JoinError> {
        self.join_timeout_any(Deadline::after(timeout))
    }

    fn join_timeout_any(&mut self, deadline: Deadline) -> Result<Option<ExitStatus>, JoinError> {
        self.wait_until(deadline).map_err(JoinError::from_internal)
    }

    fn wait_until(&mut self, deadline: Deadline) -> Result<Option<ExitStatus>> {
        loop {
            let c = self.child()?;
            if let Some(s) = c.status {
                return Ok(Some(s));
            }
            if c.report_fd.is_none() && deadline.remaining().is_none() {
                // Nothing to read meanwhile and no deadline: one blocking
                // waitid, as a bare waitpid would.
                return self.reap(true);
            }
            // Sleep until the child ends, reading the report meanwhile: a
            // child with a large report blocks in its write until the parent
            // reads. (One poll, then one waitpid, for a plain join.)
            let mut fds: Vec<BorrowedFd<'_>> = vec![c.pidfd.as_fd()];
            if let Some(r) = &c.report_fd {
                fds.push(r.as_fd());
            }
            let ready = sysfd::poll_readable(&fds, deadline.remaining())?;
            if !ready.is_empty() || deadline.expired() {
                if let Some(s) = self.poll()? {
                    return Ok(Some(s));
                }
                if deadline.expired() {
                    return Ok(None);
                }
            }
        }
    }

    /// Reads what the report pipe has and reaps the child if it ended.
    /// [`Error::ReapedElsewhere`] once someone else reaped it.
    fn poll(&mut self) -> Result<Option<ExitStatus>> {
        self.reap(false)
    }

    /// [`poll`](Process::poll), waiting for the child to end if `block`.
    fn reap(&mut self, block: bool) -> Result<Option<ExitStatus>> {
        let c = self.child()?;
        if c.status.is_some() {
            return Ok(c.status);
        }
        if c.lost {
            return Err(Error::ReapedElsewhere {
                pid: c.pid.as_raw(),
            });
        }
        if let Some(fd) = &c.report_fd
            && sysfd::read_available(fd, &mut c.report)?
        {
            c.report_fd = None;
        }
        // Through the pidfd: a pid reused after someone else reaped the
        // child is never reaped in its place.
        let status = match sys::reap_pidfd(c.pidfd.as_fd(), block) {
            Ok(r) => r.map(status),
            // No longer our child to reap: `active_children` (perhaps on
            // another thread) kept its status, or someone else reaped it
            // and the status is lost.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                let kept = identity::registry().reaped_status(c.pid.as_raw());
                match kept {
                    Some(s) => Some(s),
                    None => {
                        c.lost = true;
                        let pid = c.pid.as_raw();
                        crate::mp_log!(
                            warn,
                            "{} (pid {pid}) was reaped elsewhere: its status is lost",
                            self.name
                        );
                        self.ended();
                        return self.poll();
                    }
                }
            }
            Err(e) => return Err(e),
        };
        if let Some(s) = status {
            c.status = Some(s);
            let pid = c.pid.as_raw();
            crate::mp_log!(info, "{} (pid {pid}) ended: {s}", self.name);
            self.ended();
        }
        Ok(status)
    }

    /// Once the child has ended (reaped here or elsewhere): completes its
    /// report and forgets what was kept for it.
    fn ended(&mut self) {
        if let Some(c) = &mut self.child {
            // The report is complete (whatever a grandchild holding the
            // pipe's write end may do): read what is there, without waiting.
            if let Some(fd) = c.report_fd.take() {
                let _ = sysfd::read_available(&fd, &mut c.report);
            }
            if let Some(slot) = c.slot.take() {
                if let Some(r) = slot.take() {
                    c.report = r;
                }
                // Reaped here: nobody writes the slot any more.
                if !c.lost {
                    super::report::recycle(slot);
                }
            }
            identity::registry().remove(c.pid.as_raw());
            if let Some(scope) = self.scope {
                scope.ended(c.pid);
            }
        }
        self.body = None;
        #[cfg(feature = "spawn")]
        {
            self.retained = None;
        }
    }

    /// Whether the child was started and has not ended (it is reaped if it
    /// has). False once someone else reaped it.
    pub fn is_alive(&mut self) -> bool {
        self.child.is_some() && matches!(self.poll(), Ok(None))
    }

    /// The exit code as Python reports it: `None` while running (or not
    /// started, or reaped by someone else, as in Python), else the code or
    /// minus the signal.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.child.as_ref()?;
        self.poll().ok().flatten().map(ExitStatus::code)
    }

    /// The panic message, or the error text, the child reported before it
    /// ended (`None` if it reported none, or has not ended). For a process
    /// made with [`Process::new`] the text is cut at about 4 KiB (it travels
    /// in shared memory, sparing a pipe per child); returned values and the
    /// messages of spawned processes have no such limit.
    pub fn message(&self) -> Option<String> {
        let c = self.child.as_ref()?;
        c.status?;
        match c.report.split_first() {
            Some((&(REPORT_PANIC | REPORT_ERROR), text)) => {
                Some(String::from_utf8_lossy(text).into_owned())
            }
            _ => None,
        }
    }

    /// Whether the child ended by panicking.
    pub fn panicked(&self) -> bool {
        self.child
            .as_ref()
            .is_some_and(|c| c.status.is_some() && c.report.first() == Some(&REPORT_PANIC))
    }

    #[cfg(feature = "spawn")]
    pub(super) fn failure(&self, status: ExitStatus) -> Error {
        Error::ChildFailed {
            name: self.name.clone(),
            status,
            message: self.message(),
        }
    }

    /// Joins the child and turns anything but exit code 0 into
    /// [`JoinOkError::ChildFailed`] with the child's message.
    pub fn join_ok(&mut self) -> Result<(), JoinOkError> {
        let s = self.join()?;
        if s.success() {
            Ok(())
        } else {
            Err(JoinOkError::ChildFailed {
                name: self.name.clone(),
                status: s,
                message: self.message(),
            })
        }
    }

    /// Sends SIGTERM (see [`signal`](Process::signal)).
    pub fn terminate(&mut self) -> Result<(), SignalError> {
        self.signal(Signal::SIGTERM)
    }

    /// Sends SIGKILL (see [`signal`](Process::signal)).
    pub fn kill(&mut self) -> Result<(), SignalError> {
        self.signal(Signal::SIGKILL)
    }

    /// Sends `sig` to the child (through its pidfd, never to a recycled
    /// pid): any signal, real-time ones included
    /// (`Signal::from_raw(libc::SIGRTMIN() + n)`).
    ///
    /// Does nothing once this handle has reaped the child (the pid may
    /// belong to another process by then). [`SignalError::NotStarted`]
    /// before `start`; [`SignalError::ReapedElsewhere`] once someone else
    /// reaped it, so there is no child left to signal.
    pub fn signal(&mut self, sig: Signal) -> Result<(), SignalError> {
        let c = self.child.as_mut().ok_or(SignalError::NotStarted)?;
        if c.status.is_some() {
            return Ok(());
        }
        if c.lost {
            return Err(SignalError::ReapedElsewhere {
                pid: c.pid.as_raw(),
            });
        }
        match sys::pidfd_signal(&c.pidfd, sig.as_raw()) {
            // The process is gone for good (a zombie still takes signals):
            // reaped here meanwhile (another thread's `active_children`
            // keeps its status), or elsewhere.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => match self.poll() {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(SignalError::from_internal(e)),
                Err(e) => Err(SignalError::from_internal(e)),
            },
            r => r.map_err(SignalError::from_internal),
        }
    }

    /// Sends `sig` to the child's process group: the child and every
    /// process it started that stayed in the group. Needs
    /// [`with_new_group`](Process::with_new_group) (else
    /// [`SignalError::NoGroup`]); the group may outlive the child, so this
    /// works after the child ended too, and does nothing once the group is
    /// empty.
    ///
    /// Any signal, as for [`signal`](Process::signal).
    pub fn signal_group(&mut self, sig: Signal) -> Result<(), SignalError> {
        if !self.new_group {
            return Err(SignalError::NoGroup);
        }
        let c = self.child.as_ref().ok_or(SignalError::NotStarted)?;
        sys::signal_group(c.pid, sig.as_raw()).map_err(SignalError::from_internal)
    }

    pub(crate) fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.child.as_ref().map(|c| c.pidfd.as_fd())
    }

    /// aio hook (issue 17): the report pipe still being read, if any (the
    /// async join reads it as it fills, as `join` does).
    #[cfg(feature = "tokio")]
    pub(crate) fn report_fd(&self) -> Option<BorrowedFd<'_>> {
        self.child.as_ref()?.report_fd.as_ref().map(|f| f.as_fd())
    }
}

impl<T> Drop for Process<'_, T> {
    /// Joins a child that still runs (as Python joins non-daemon children at
    /// exit, and as a scoped thread is joined); a daemon is killed first.
    /// Never leaves a zombie, and returns once the child has ended even if
    /// someone else reaps it.
    fn drop(&mut self) {
        if let Some(c) = &mut self.child
            && c.status.is_none()
            && !c.lost
        {
            if self.daemon {
                let _ = sys::pidfd_signal(&c.pidfd, libc::SIGKILL);
            }
            // Drop the report pipe first: a child blocked writing a large
            // report must not wait for a reader that will never come.
            c.report_fd = None;
            // Waits until the child ends; ECHILD at once if it is no longer
            // ours to reap.
            let reaped = matches!(sys::reap_pidfd(c.pidfd.as_fd(), true), Ok(Some(_)));
            if reaped && let Some(slot) = c.slot.take() {
                // Reaped here: nobody writes the slot any more.
                super::report::recycle(slot);
            }
            identity::registry().remove(c.pid.as_raw());
            if let Some(scope) = self.scope {
                scope.ended(c.pid);
            }
        }
    }
}

impl<T> fmt::Debug for Process<'_, T> {
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
            .field("daemon", &self.daemon)
            .finish()
    }
}
