//! The fork start method: the child is a copy of the parent that runs the
//! `Process`'s closure under `catch_unwind`, reports through a shared slot
//! (or a pipe, for a returned value) and ends with `_exit`.
//!
//! Fork hygiene, all kept here: stdout, stderr and this process's identity
//! are locked across the fork, and with other threads (`allow_threads`)
//! its registry of children and the shared heap too (so the child never
//! inherits them held by another thread); a fork from a multithreaded
//! process is refused unless the caller opted in with `allow_threads`, and
//! the parent drops its copy of the closure right after the fork.
//!
//! What a fork costs beyond the kernel's: every private page either
//! process writes after the fork is a fault (a copy while both live). So
//! from a process with one thread nothing else is held across the fork
//! (unlocking would write in both), the child's copy of the heap is reset
//! lazily rather than in the fork hook, and the shared report slot of an
//! ended child is reused for the next one (see `report::new_slot`) instead
//! of being allocated, zeroed and quarantined per start. A plain success
//! writes nothing to the slot.

use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};

use nix::unistd::Pid;

use super::report::{self, REPORT_ERROR, REPORT_VALUE, Report};
use super::{Process, identity};
use crate::error::{Error, Result};
use crate::sys::fd as sysfd;
use crate::sys::process as sys;
use crate::sys::thread;

impl<T> Process<'_, T> {
    /// Forks the child, which runs the closure (see [`Process::start`]).
    pub(super) fn start_forked(&mut self) -> Result<()> {
        let threads = thread::thread_count();
        if !self.allow_threads
            && let Some(n) = threads
            && n > 1
        {
            return Err(Error::ThreadedFork { threads: n });
        }
        // One thread: no other can hold a lock at the fork, so nothing needs
        // holding across it (which would cost each process a copied page to
        // unlock). Unknown counts as several.
        let alone = threads == Some(1);
        let (report_rd, report_wr) = if self.report_pipe {
            let (r, w) = sysfd::pipe()?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let slot = report::new_slot()?;
        // Lock order across the fork: stdout and stderr first (the fork
        // takes them again, reentrantly), then this process's identity and
        // registry of children, then the shared heap. A thread that prints
        // while calling `current_process` takes them in this order too. In
        // the child these stdio guards are never dropped, which is fine:
        // the locks are reentrant and owned by the child's one thread.
        let stdout = std::io::stdout().lock();
        let stderr = std::io::stderr().lock();
        let ident =
            identity::ChildIdentity::prepare(&self.name, &self.ident, self.authkey.as_deref());
        let parent = ident.parent_pid();
        // With other threads, the registry of children is locked across the
        // fork: no other thread holds it in the child, and the child is
        // registered before anyone (the SIGCHLD reaper, a thread) can look
        // for it, even if it ends at once. Alone, it is taken after the
        // fork, in the parent only.
        let mut registry = (!alone).then(identity::registry);
        let registry_in_child = &mut registry;
        let (die_with_parent, new_group, deadline) =
            (self.die_with_parent, self.new_group, self.deadline);
        let rd_raw = report_rd.as_ref().map(|r| r.as_raw_fd());
        let setup = move || {
            ident.install();
            drop(registry_in_child.take());
            // The child never reads its own report.
            if let Some(fd) = rd_raw {
                // SAFETY: the child's copy of the report pipe's read end,
                // owned by `report_rd`, which the child never drops (it
                // ends with `_exit`) nor uses.
                unsafe { sysfd::close_raw(fd) };
            }
            if die_with_parent {
                sys::die_with_parent(parent, libc::SIGKILL);
            }
            if new_group {
                let _ = sys::new_group(Pid::from_raw(0));
            }
            if let Some(d) = deadline
                && let Err(e) = sys::kill_after(d)
            {
                eprintln!("multiproc: cannot arm the deadline: {e}");
                sys::exit(1);
            }
        };
        let body_slot = &mut self.body;
        let wr = report_wr.as_ref();
        let report_slot = &*slot;
        let mut run = Some(move || {
            let report = match body_slot.take() {
                Some(body) => match catch_unwind(AssertUnwindSafe(body)) {
                    Ok(r) => r,
                    Err(payload) => Report::panic(&*payload),
                },
                None => Report {
                    code: 1,
                    kind: REPORT_ERROR,
                    bytes: b"no closure to run".to_vec(),
                },
            };
            // A plain success needs no report (an empty slot says as much),
            // which spares the child its first touch of the slot's page.
            if wr.is_none() && report.kind == REPORT_VALUE && report.bytes.is_empty() {
                return report.code;
            }
            // No pipe: a message longer than the slot is cut short.
            if !report_slot.put(report.kind, &report.bytes, wr.is_none())
                && let Some(wr) = wr
            {
                sysfd::write_all(wr, &[report.kind]);
                sysfd::write_all(wr, &report.bytes);
            }
            report.code
        });
        // SAFETY: either this process has one thread, or the caller took
        // responsibility through `allow_threads`; `alone` only if the count
        // read above is one, and this thread starts none in between.
        let (pid, pidfd) = unsafe { sys::fork(alone, setup, &mut run)? };
        // Drop the parent's copy of the closure now, as Python drops its
        // copy of the target: a `Connection` moved into the child is closed
        // here, so the parent can see end of stream. Shared objects the
        // closure owned are freed here while the child still uses them;
        // that is sound because the shared heap quarantines slots freed
        // after a fork until every process forked before the free is gone
        // (`shm::heap`'s quarantine), so none is handed out again under the
        // child's feet.
        self.body = None;
        drop(report_wr);
        if self.new_group {
            // Also from the parent, so the group exists before `start`
            // returns whichever process runs first.
            let _ = sys::new_group(pid);
        }
        let registry = registry.take().unwrap_or_else(identity::registry);
        drop((stderr, stdout));
        self.adopt_child(pid, pidfd, report_rd, Some(slot), registry)
    }
}
