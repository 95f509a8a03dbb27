//! Who this process is (`current_process`), and the children it started
//! (`active_children`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::ExitStatus;
use crate::current_process::{CurrentProcess, current_process, identity};
use crate::sys::process as sys;
use crate::sys::thread;

/// How many `Process`es this process has made (Python's
/// `_process_counter`); starts again from 0 in each child.
static CHILD_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The identity of the next `Process` this process makes ("3", or "1:3"
/// in a child whose own identity is "1"), counted as Python counts them:
/// when the `Process` is made, started or not.
pub(crate) fn next_child_identity() -> String {
    let n = CHILD_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    let me = current_process();
    if me.identity.is_empty() {
        n.to_string()
    } else {
        format!("{}:{n}", me.identity)
    }
}

/// What a child needs to know of itself, computed in the parent before the
/// fork and installed in the child by [`ChildIdentity::install`].
pub(crate) struct ChildIdentity {
    guard: MutexGuard<'static, Option<CurrentProcess>>,
    name: Arc<str>,
    identity: Arc<str>,
    parent_pid: i32,
    authkey: Arc<[u8]>,
}

impl ChildIdentity {
    /// Takes the identity lock (held across the fork, so no other thread
    /// holds it in the child).
    pub(crate) fn prepare(name: &str, ident: &str, authkey: Option<&[u8]>) -> ChildIdentity {
        let inherited = current_process().authkey;
        ChildIdentity {
            guard: identity(),
            name: Arc::from(name),
            identity: Arc::from(ident),
            parent_pid: thread::pid(),
            authkey: authkey.map(Arc::from).unwrap_or(inherited),
        }
    }

    /// In the child: becomes the new process's identity; the registry of
    /// children starts empty (see `registry`).
    pub(crate) fn install(mut self) {
        CHILD_COUNTER.store(0, Ordering::Relaxed);
        let parent_identity = self.guard.replace(CurrentProcess {
            name: self.name,
            identity: self.identity,
            pid: thread::pid(),
            parent_pid: self.parent_pid,
            authkey: self.authkey,
        });
        // Not dropped: that would write reference counts into pages the
        // child shares copy-on-write with its parent, for nothing (the
        // child ends with `_exit`). The registry of children is cleared
        // lazily, on its first use in this process (its pid differs).
        std::mem::forget(parent_identity);
    }

    /// The parent's pid (for the child's parent-death check).
    pub(crate) fn parent_pid(&self) -> i32 {
        self.parent_pid
    }
}

/// In a spawned child: its identity, as its parent chose it.
#[cfg_attr(not(feature = "spawn"), allow(dead_code))]
pub(crate) fn install_spawned(name: &str, ident: &str, parent_pid: i32, authkey: &[u8]) {
    *identity() = Some(CurrentProcess {
        name: Arc::from(name),
        // Its own children are numbered under it ("1:2:1"), as after a fork.
        identity: Arc::from(ident),
        pid: thread::pid(),
        parent_pid,
        authkey: Arc::from(authkey),
    });
}

/// Whether the process this one started under is still its parent. False
/// once the parent has died and this process was reparented (to init or a
/// subreaper).
pub fn parent_alive() -> bool {
    sys::parent_pid() == current_process().parent_pid
}

/// The children started through [`Process`](crate::Process) and not yet
/// joined: pid, and the status once someone reaped it without the
/// `Process` (see [`active_children`]).
pub(crate) struct Registry {
    pid: i32,
    children: Vec<(i32, Option<ExitStatus>)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pid: 0,
    children: Vec::new(),
});

pub(crate) fn registry() -> MutexGuard<'static, Registry> {
    let mut g = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let pid = thread::pid();
    if g.pid != pid {
        g.pid = pid;
        g.children.clear();
    }
    g
}

impl Registry {
    pub(crate) fn add(&mut self, pid: i32) {
        self.children.push((pid, None));
    }

    /// Forgets `pid`; returns the status if someone else reaped it.
    pub(crate) fn remove(&mut self, pid: i32) -> Option<ExitStatus> {
        let i = self.children.iter().position(|(p, _)| *p == pid)?;
        self.children.swap_remove(i).1
    }

    pub(crate) fn reaped_status(&self, pid: i32) -> Option<ExitStatus> {
        self.children
            .iter()
            .find(|(p, _)| *p == pid)
            .and_then(|(_, s)| *s)
    }
}

/// The pids of the children this process started with
/// [`Process`](crate::Process) that are still running, after reaping those
/// that ended (Python's `active_children()`). A reaped child's status is
/// kept for its `Process`, whose `join` returns it.
pub fn active_children() -> Vec<i32> {
    let mut reg = registry();
    let mut alive = Vec::new();
    for (pid, status) in &mut reg.children {
        if status.is_some() {
            continue;
        }
        match sys::reap(nix::unistd::Pid::from_raw(*pid), false) {
            Ok(Some(r)) => *status = Some(super::status(r)),
            Ok(None) => alive.push(*pid),
            Err(_) => {}
        }
    }
    alive.sort_unstable();
    alive
}

#[cfg(feature = "signals")]
/// Starts a background thread that reaps, on every SIGCHLD, the children
/// this process started through [`Process`](crate::Process) that have
/// ended, for programs that never join them: no zombie lingers, and a later
/// `join` still returns the status. Children started by other means (such
/// as `std::process::Command`) are left to their owners. Calling it again
/// does nothing.
///
/// The thread makes this process multithreaded: later fork-started
/// children need [`Process::allow_threads`](crate::Process::allow_threads)
/// (spawn-started ones do not).
///
/// # Errors
///
/// [`HandlerError::Os`](crate::signal::HandlerError::Os): `sigaction` for
/// SIGCHLD failed, or the thread could not be started (`"thread spawn"`,
/// `EAGAIN`). A failure is kept: later calls return it again.
pub fn start_reaper() -> Result<(), crate::signal::HandlerError> {
    /// A failed start, kept for later calls: the call, its errno (if it
    /// had one) and its text.
    type Failed = (&'static str, Option<i32>, String);
    static STARTED: std::sync::OnceLock<std::result::Result<(), Failed>> =
        std::sync::OnceLock::new();
    let failed =
        |call: &'static str| move |e: std::io::Error| (call, e.raw_os_error(), e.to_string());
    let r = STARTED.get_or_init(|| {
        let mut signals =
            signal_hook::iterator::Signals::new([libc::SIGCHLD]).map_err(failed("sigaction"))?;
        std::thread::Builder::new()
            .name("multiproc-reaper".into())
            .spawn(move || {
                for _ in signals.forever() {
                    active_children();
                }
            })
            .map(drop)
            .map_err(failed("thread spawn"))
    });
    r.clone()
        .map_err(|(call, errno, text)| crate::signal::HandlerError::Os {
            call,
            source: match errno {
                Some(n) => std::io::Error::from_raw_os_error(n),
                None => std::io::Error::other(text),
            },
        })
}
