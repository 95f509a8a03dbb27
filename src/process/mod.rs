//! `Process`: a child process running a closure (the fork start method) or
//! a function (the spawn start method), with Python's `Process` API and
//! more: exit codes, panics and returned values carried back, signals
//! through a pidfd, process groups, a deadline, and death with the parent.
//!
//! # Soundness
//!
//! [`Process::new`] takes a `'static` closure: a child owns what it uses,
//! so nothing the parent frees can be in use by it through a borrow. To
//! borrow, start the child in a [`scope`], which returns only once every
//! child started in it has ended (it waits through its own pidfds, so a
//! `mem::forget`-ed handle or a panicking closure changes nothing), and
//! whose handles cannot leave it. The parent drops its copy of a closure
//! right after the fork; shared objects it owned stay allocated for the
//! child because the shared heap keeps slots freed after a fork out of
//! reuse until the processes forked before the free are gone. Across a
//! spawn only plain functions (`fn(A) -> T`) and serialized arguments
//! travel.
//!
//! # Layout
//!
//! One small file per concern, as CPython has one per start method:
//! `handle` (the [`Process`] handle), `context` (start methods as values),
//! `fork` (the fork start method), `spawn` (the spawn start method),
//! `report` (what a child sends back), `scope` (scoped processes),
//! `group` (waiting on many, fail-fast groups), `identity`
//! (`current_process`, the registry of children).

#[allow(unsafe_code)] // function pointers across exec
#[cfg(feature = "spawn")]
pub(crate) mod code;
mod context;
mod error;
#[allow(unsafe_code)] // fork, the child's raw descriptors
mod fork;
mod group;
#[allow(unsafe_code)] // `Process::allow_threads`
mod handle;
mod identity;
#[allow(unsafe_code)] // the report slot in shared memory
mod report;
mod scope;
#[allow(unsafe_code)] // inherited descriptors, pre_exec
#[cfg(feature = "spawn")]
pub(crate) mod spawn;

use crate::signal::Signal;
use crate::sys::process::Reaped;

pub use crate::connection::{WaitError, Waitable, wait};
pub use crate::current_process::{CurrentProcess, current_process};
pub use crate::exit_status::ExitStatus;
pub use context::{Context, StartMethod, get_context, set_start_method, start_method};
pub use error::{
    GroupError, JoinError, JoinOkError, ResultError, SignalError, StartError, UnknownStartMethod,
};
pub use group::ProcessGroup;
pub use handle::Process;
#[cfg(feature = "signals")]
pub use identity::start_reaper;
pub use identity::{active_children, parent_alive};
pub use report::ChildResult;
#[cfg(any(feature = "pool", feature = "redis", feature = "manager"))]
pub(crate) use report::panic_text;
#[cfg(feature = "spawn")]
pub(crate) use report::{REPORT_ERROR, Report};
pub use scope::{Scope, scope};
#[cfg(feature = "spawn")]
pub use spawn::init;

/// Call this first thing in `main` of a program that uses the spawn start
/// method (it needs the `spawn` feature; without it there is no spawn start
/// method and this does nothing).
#[cfg(not(feature = "spawn"))]
pub fn init() {}

pub(crate) fn status(r: Reaped) -> ExitStatus {
    match r {
        Reaped::Exited(c) => ExitStatus::Exited(c),
        // The kernel reports only valid numbers; were one not, it reads as
        // the shell shows it, 128 + n.
        Reaped::Signaled(n) => match Signal::from_raw(n) {
            Some(s) => ExitStatus::Signaled(s),
            None => ExitStatus::Exited(128 + n),
        },
    }
}

/// Ends the calling process at once with `code` after flushing stdout and
/// stderr, without running destructors: how a forked child should end
/// early (Python's `os._exit`).
pub fn exit(code: i32) -> ! {
    crate::sys::process::exit(code)
}
