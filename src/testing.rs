//! Forking inside `#[test]` without `unsafe` (feature `testing`, meant for
//! `[dev-dependencies]`).
//!
//! The test harness runs every test on a thread of its own, so a test
//! process always has at least two threads, and [`Process::start`] refuses
//! to fork from it ([`Error::ThreadedFork`]): the other threads' locks would
//! be copied into the child in whatever state they were. The sound way out
//! is a fresh process with one thread, and this module makes that a line:
//!
//! ```
//! use multiproc::{Process, Value};
//!
//! multiproc::isolated_test! {
//!     /// Runs in a fresh, single-threaded run of the test binary: it may fork.
//!     fn four_children_count() {
//!         let counter = Value::new(0u64).unwrap();
//!         multiproc::process::scope(|s| {
//!             let mut kids: Vec<Process> = (0..4)
//!                 .map(|_| s.process(|| counter.update(|c| *c += 1)))
//!                 .collect();
//!             for k in &mut kids { k.start()?; }
//!             for k in &mut kids { assert!(k.join()?.success()); }
//!             Ok::<(), multiproc::Error>(())
//!         })
//!         .unwrap();
//!         assert_eq!(counter.get(), 4);
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! The body runs through the spawn start method ([`Process::spawn`]): the
//! test binary is run again, and the child runs the body and exits
//! *before* the harness's `main` starts, with a single thread. That early
//! start is what this feature adds: a function placed in the executable's
//! `.init_array` does what [`init`](crate::init) does, so spawned children
//! work in programs whose `main` is not yours (the test harness), and
//! programs that call `init` themselves are unaffected. A failed assertion
//! or panic in the body fails the test with the child's message (and the
//! location of the panic); the child's output reaches the test's output.
//!
//! [`isolated`] is the function behind the macro, for bodies that take
//! arguments or return a value.
//!
//! Scope: the early start reacts only to a spawn bootstrap this crate made
//! (a memfd of the parent, checked with its nonce, as `init` checks it), so
//! it does nothing in any other run of the program. Enable the feature in
//! `[dev-dependencies]` only: it adds that check (one environment lookup)
//! to the start of every program built with it.
//!
//! [`Process::start`]: crate::Process::start
//! [`Process::spawn`]: crate::Process::spawn
//! [`Error::ThreadedFork`]: crate::Error::ThreadedFork

use crate::error::Error;
use crate::process::{Process, ResultError, StartError};

/// Runs the spawn bootstrap before `main`, as [`init`](crate::init) would
/// first thing in it (see the [module docs](self)).
extern "C" fn spawned_before_main() {
    // Unwinding out of an `extern "C"` function aborts; `init` does not
    // panic, but a panic here must not unwind into the C runtime either.
    let _ = std::panic::catch_unwind(crate::init);
}

/// The entry of the executable's initialisation array that starts a spawned
/// child before `main`.
// The attribute is `unsafe` because a function in `.init_array` runs before
// `main`, from the C runtime. That is sound here: the array's entries are
// called with (argc, argv, envp), which a function taking no arguments may
// ignore under the C calling convention; the function unwinds nothing (see
// above); and `init` needs nothing that `main` sets up: it reads the
// environment (complete before any constructor runs) and, in a spawned
// child only, runs the child's entry on this one thread and exits with
// `_exit`, never returning into the start-up code.
#[used]
#[unsafe(link_section = ".init_array")]
static SPAWNED_BEFORE_MAIN: extern "C" fn() = spawned_before_main;

/// Runs `entry(args)` in a fresh, single-threaded run of this program and
/// returns its result: the function behind [`isolated_test!`](crate::isolated_test).
///
/// Inside the child, `Process::start` forks freely (one thread). `entry`
/// must be a function of the program itself, not of a shared library
/// ([`Error::ForeignCode`]); arguments and result
/// are serde values, as for [`Process::spawn`].
///
/// # Errors
///
/// [`IsolatedError::Start`] with the error of [`Process::spawn`] and
/// [`Process::start`] (a function of a shared library:
/// [`StartError::ForeignCode`]); [`IsolatedError::Child`] with that of
/// [`Process::result`]: a child that panicked or failed gives
/// [`ResultError::ChildFailed`] with its status and message.
pub fn isolated<A, R>(entry: fn(A) -> R, args: A) -> Result<R, IsolatedError>
where
    A: serde::Serialize + serde::de::DeserializeOwned + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut p = Process::spawn(entry, args).map_err(IsolatedError::Start)?;
    p.start().map_err(IsolatedError::Start)?;
    p.result().map_err(IsolatedError::Child)
}

/// Why [`isolated`] did not return the entry's result: the child was not
/// started, or it did not end well (or its result could not be had). Both
/// display as the error inside.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IsolatedError {
    /// The child could not be started.
    #[error(transparent)]
    Start(StartError),
    /// The child's result could not be had: it panicked or failed
    /// ([`ResultError::ChildFailed`]), or its value did not decode.
    #[error(transparent)]
    Child(ResultError),
}

impl From<IsolatedError> for Error {
    /// The error inside, as an [`Error`] (`ChildFailed` for a failed
    /// child, as before).
    fn from(e: IsolatedError) -> Error {
        match e {
            IsolatedError::Start(e) => e.into(),
            IsolatedError::Child(e) => e.into(),
        }
    }
}

/// Declares `#[test]` functions whose bodies run in a fresh,
/// single-threaded process, where forking is allowed (see the
/// [`testing`](crate::testing) module).
///
/// ```
/// multiproc::isolated_test! {
///     fn in_a_child_of_its_own() {
///         assert_eq!(std::thread::available_parallelism().is_ok(), true);
///     }
/// }
/// # fn main() {}
/// ```
///
/// A failure (panic, failed assertion) in the body fails the test with the
/// child's message.
#[macro_export]
macro_rules! isolated_test {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {
        $(
            $(#[$meta])*
            #[test]
            fn $name() {
                fn body(_: ()) $body
                if let Err(e) = $crate::testing::isolated(body, ()) {
                    panic!("{}: {}", stringify!($name), e);
                }
            }
        )*
    };
}
