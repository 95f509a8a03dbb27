//! Scoped processes: children whose closures borrow from the parent, like
//! `std::thread::scope`.
//!
//! The guarantee: [`scope`] returns (or unwinds) only after every child
//! started in it has ended. It does not rely on the handles' `Drop`
//! (which `mem::forget` skips): the scope keeps its own pidfd of each child
//! it started and waits on those. A scoped [`Process`] carries the scope's
//! lifetime, so it cannot leave the scope's closure, forgotten or not.

use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;

use nix::unistd::Pid;

use super::{ChildResult, Process, StartError};
use crate::error::{Error, Result};
use crate::sys::fd as sysfd;
use crate::sys::process as sys;
use crate::sys::thread;

/// The children a scope must wait for.
pub(crate) struct ScopeData {
    /// The process that opened the scope: only it starts, and waits for,
    /// the scope's children.
    owner: i32,
    /// The pid and a pidfd of each child started in the scope and not yet
    /// reaped by its handle (a copy of the handle's pidfd).
    children: Mutex<Vec<(Pid, OwnedFd)>>,
}

impl ScopeData {
    /// [`Error::InvalidArgument`] unless called in the process that opened
    /// the scope (a forked child that reached the scope's handle through a
    /// borrow could otherwise start processes nobody waits for).
    pub(crate) fn check_owner(&self) -> Result<()> {
        if thread::pid() == self.owner {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "a scoped process must be started by the process that opened the scope",
            ))
        }
    }

    /// Keeps a copy of the child's pidfd, to wait for it at the scope's end.
    pub(crate) fn register(&self, pid: Pid, pidfd: &OwnedFd) -> Result<()> {
        let copy = pidfd
            .try_clone()
            .map_err(|e| Error::os("fcntl(F_DUPFD_CLOEXEC)", e))?;
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((pid, copy));
        Ok(())
    }

    /// The handle has seen its child `pid` end: nothing left to wait for
    /// (a long scope does not keep a descriptor per child it ever started).
    /// The oldest entry for `pid` is the one that ended: a pid comes back
    /// only after its earlier process was reaped.
    pub(crate) fn ended(&self, pid: Pid) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = children.iter().position(|(p, _)| *p == pid) {
            children.remove(i);
        }
    }

    /// Waits until every child started in the scope has ended, and reaps
    /// those whose handle did not (a forgotten handle).
    fn wait_all(&self) {
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, pidfd) in children {
            // Blocks until the child ends and reaps it; ECHILD at once if
            // its handle (or someone else) reaped it already. EINTR is
            // retried inside; any other error means the kernel refuses to
            // wait on it, so fall back to polling the pidfd, which becomes
            // readable when the process ends.
            if sys::reap_pidfd(pidfd.as_fd(), true)
                .is_err_and(|e| e.raw_os_error() != Some(libc::ECHILD))
            {
                let _ = sysfd::poll_readable(&[pidfd.as_fd()], None);
            }
        }
    }
}

/// A scope for processes that borrow from the parent; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    data: ScopeData,
    /// Invariant in `'scope` (as in `std::thread::Scope`), so that a scoped
    /// handle cannot be made to outlive the scope.
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// Runs `f` with a [`Scope`] in which processes may borrow from the
/// caller's stack (like `std::thread::scope`), and returns what `f`
/// returns once **every** process started in the scope has ended.
///
/// Processes come from [`Scope::spawn`] (started at once) or
/// [`Scope::process`] (configured with the usual builder methods, then
/// started). The scope waits for each of them at its end even if `f`
/// panics or a handle was `mem::forget`-ed; a handle dropped earlier is
/// joined by its `Drop` as usual. Put scoped processes in a
/// [`ProcessGroup`](crate::ProcessGroup) made inside the scope to run them
/// as a group.
///
/// # Examples
///
/// ```
/// use multiproc::{Array, Value};
///
/// let total = Value::new(0u64)?;
/// let parts = Array::<u64>::zeroed(4)?;
/// multiproc::process::scope(|s| {
///     let mut kids = Vec::new();
///     for i in 0..4 {
///         let (total, parts) = (&total, &parts);
///         let p = s.process(move || {
///             parts.set(i, i as u64)?;
///             total.update(|t| *t += i as u64);
///             Ok::<(), multiproc::Error>(())
///         });
/// #       let p = unsafe { p.allow_threads() }; // doctests run on a thread
///         kids.push(p);
///     }
///     for p in &mut kids {
///         p.start()?;
///     }
///     for p in &mut kids {
///         p.join_ok()?;
///     }
///     Ok::<(), multiproc::Error>(())
/// })?;
/// assert_eq!(total.get(), 6);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn scope<'env, F, R>(f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let scope = Scope {
        data: ScopeData {
            owner: thread::pid(),
            children: Mutex::new(Vec::new()),
        },
        scope: PhantomData,
        env: PhantomData,
    };
    let r = catch_unwind(AssertUnwindSafe(|| f(&scope)));
    scope.data.wait_all();
    match r {
        Ok(v) => v,
        Err(payload) => resume_unwind(payload),
    }
}

impl<'scope> Scope<'scope, '_> {
    /// A process that will run `body`, which may borrow from outside the
    /// scope; configure it (`with_name`, `with_daemon`, `allow_threads`,
    /// ...) and `start` it. `body` returns what [`Process::new`]'s does.
    pub fn process<F, R>(&'scope self, body: F) -> Process<'scope, ()>
    where
        F: FnOnce() -> R + 'scope,
        R: ChildResult,
    {
        Process::from_body(Some(super::report::unit_body(body)), Some(&self.data))
    }

    /// Starts a process running `body` at once (see [`Scope::process`] to
    /// configure it first).
    pub fn spawn<F, R>(&'scope self, body: F) -> Result<Process<'scope, ()>, StartError>
    where
        F: FnOnce() -> R + 'scope,
        R: ChildResult,
    {
        let mut p = self.process(body);
        p.start()?;
        Ok(p)
    }

    /// [`Process::with_result`] for a closure that may borrow from outside
    /// the scope.
    #[cfg(feature = "spawn")]
    pub fn process_with_result<T, F>(&'scope self, body: F) -> Process<'scope, T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: FnOnce() -> T + 'scope,
    {
        let mut p = Process::from_body(Some(super::report::value_body(body)), Some(&self.data));
        p.report_pipe = true;
        p
    }
}

impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self
            .data
            .children
            .lock()
            .map(|c| c.len())
            .unwrap_or_default();
        f.debug_struct("Scope").field("started", &n).finish()
    }
}
