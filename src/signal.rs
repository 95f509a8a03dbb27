//! Signals for a process's own life: ignore SIGTERM, or learn that a stop
//! was asked for and shut down cleanly, without writing handler code (the
//! handlers are signal-hook's, which only set a flag; [`StopRequest`] needs
//! the `signals` feature).

#[cfg(feature = "signals")]
use std::sync::Arc;
#[cfg(feature = "signals")]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "signals")]
use std::time::{Duration, Instant};

use std::fmt;

#[cfg(feature = "manager")]
use crate::error::Result;
use crate::error::{Error, map_variants};

/// A signal, by its Linux number: one of the named constants
/// ([`Signal::SIGTERM`], [`Signal::SIGKILL`], ...) or any valid number
/// ([`Signal::from_raw`], real-time signals included).
///
/// What [`Process::signal`](crate::Process::signal) sends and
/// [`ExitStatus::Signaled`](crate::ExitStatus::Signaled) reports.
///
/// ```
/// use multiproc::signal::Signal;
///
/// assert_eq!(Signal::SIGKILL.as_raw(), 9);
/// assert_eq!(Signal::from_raw(15), Some(Signal::SIGTERM));
/// assert_eq!(Signal::SIGTERM.to_string(), "SIGTERM");
/// assert_eq!(Signal::from_raw(0), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

macro_rules! signals {
    ($($name:ident),* $(,)?) => {
        impl Signal {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                pub const $name: Signal = Signal(libc::$name);
            )*

            /// The signal's name (`"SIGTERM"`), if it is one of the named
            /// constants.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(libc::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

signals!(
    SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGKILL, SIGUSR1, SIGSEGV,
    SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT, SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN,
    SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS,
);

impl Signal {
    /// The signal numbered `n`, if it is one (1 to `SIGRTMAX`).
    pub fn from_raw(n: i32) -> Option<Signal> {
        (1..=libc::SIGRTMAX()).contains(&n).then_some(Signal(n))
    }

    /// The signal's number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }
}

impl From<Signal> for i32 {
    fn from(s: Signal) -> i32 {
        s.0
    }
}

impl fmt::Display for Signal {
    /// The name (`SIGTERM`), `SIGRTMIN+n` for a real-time signal, or
    /// `signal n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None if self.0 >= libc::SIGRTMIN() => {
                write!(f, "SIGRTMIN+{}", self.0 - libc::SIGRTMIN())
            }
            None => write!(f, "signal {}", self.0),
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a signal's handling was not changed ([`ignore_terminate`],
/// [`default_terminate`], `StopRequest::on`), or the reaper that runs on
/// SIGCHLD not started (`process::start_reaper`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// A signal that cannot be caught with a flag: SIGKILL and SIGSTOP
    /// (no process can catch them), SIGILL, SIGFPE and SIGSEGV (a program
    /// fault: returning from a handler runs the faulting instruction
    /// again). Nothing was installed.
    #[error(
        "{signal} cannot be caught with a flag (refused: SIGKILL, SIGSTOP, SIGILL, SIGFPE, SIGSEGV)"
    )]
    Refused {
        /// The signal asked for.
        signal: Signal,
    },
    /// A system call failed (`sigaction`, or starting the reaper's thread).
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: std::io::Error,
    },
}

impl HandlerError {
    /// The errno of a [`HandlerError::Os`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            HandlerError::Os { source, .. } => source.raw_os_error(),
            HandlerError::Refused { .. } => None,
        }
    }

    /// The handler error for what the system layer (which speaks
    /// [`Error`]) reported: a failed system call. Nothing else; were it
    /// to, the error is kept whole as the source of an `Os` error.
    pub(crate) fn from_internal(e: Error) -> HandlerError {
        map_variants!(e, Error => HandlerError { Os { call, source } },
            other => HandlerError::Os { call: "sigaction", source: std::io::Error::other(other) })
    }
}

impl From<HandlerError> for Error {
    /// [`Error::Os`], or [`Error::InvalidArgument`] for a refused signal.
    fn from(e: HandlerError) -> Error {
        map_variants!(e, HandlerError => Error { Os { call, source } },
        HandlerError::Refused { .. } => Error::InvalidArgument(
            "a signal that cannot be caught with a flag (SIGKILL, SIGSTOP, SIGILL, SIGFPE, SIGSEGV)"
        ))
    }
}

/// Ignores SIGTERM in the calling process: `terminate()` then does nothing
/// and only SIGKILL stops it (the classic "child that ignores SIGTERM").
pub fn ignore_terminate() -> Result<(), HandlerError> {
    crate::sys::process::set_disposition(libc::SIGTERM, true).map_err(HandlerError::from_internal)
}

/// Restores SIGTERM's default action (the process ends).
pub fn default_terminate() -> Result<(), HandlerError> {
    crate::sys::process::set_disposition(libc::SIGTERM, false).map_err(HandlerError::from_internal)
}

/// Sets `sig` to be ignored or to its default action (the manager server's
/// SIGINT).
#[cfg(feature = "manager")]
pub(crate) fn set_disposition(
    sig: nix::sys::signal::Signal,
    how: nix::sys::signal::SigHandler,
) -> Result<()> {
    use nix::sys::signal::SigHandler;
    match how {
        SigHandler::SigIgn => crate::sys::process::set_disposition(sig as i32, true),
        SigHandler::SigDfl => crate::sys::process::set_disposition(sig as i32, false),
        _ => Err(Error::InvalidArgument(
            "only SIG_IGN and SIG_DFL are set here",
        )),
    }
}

/// A flag set when the process is asked to stop (SIGTERM, and SIGINT unless
/// left out), for a clean shutdown: check it in the work loop.
///
/// # Examples
///
/// ```
/// let stop = multiproc::signal::StopRequest::install()?;
/// while !stop.requested() {
///     // one unit of work ...
///     # break;
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(feature = "signals")]
#[derive(Clone, Debug)]
pub struct StopRequest {
    flag: Arc<AtomicBool>,
}

#[cfg(feature = "signals")]
impl StopRequest {
    /// Sets the flag on SIGTERM and SIGINT (those signals then no longer
    /// end the process by themselves).
    pub fn install() -> Result<StopRequest, HandlerError> {
        Self::on(&[Signal::SIGTERM, Signal::SIGINT])
    }

    /// Sets the flag on each of `signals`.
    ///
    /// # Errors
    ///
    /// [`HandlerError::Refused`] for SIGKILL, SIGSTOP, SIGILL, SIGFPE or
    /// SIGSEGV (checked before any handler is installed);
    /// [`HandlerError::Os`] if `sigaction` fails (the signals before it
    /// keep their new handler).
    pub fn on(signals: &[Signal]) -> Result<StopRequest, HandlerError> {
        // signal-hook panics on these; refuse them first, all of them.
        if let Some(&signal) = signals
            .iter()
            .find(|s| signal_hook::consts::FORBIDDEN.contains(&s.as_raw()))
        {
            return Err(HandlerError::Refused { signal });
        }
        let flag = Arc::new(AtomicBool::new(false));
        for &s in signals {
            signal_hook::flag::register(s.as_raw(), flag.clone()).map_err(|source| {
                HandlerError::Os {
                    call: "sigaction",
                    source,
                }
            })?;
        }
        Ok(StopRequest { flag })
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps until a stop is asked for or `timeout` passes (checking every
    /// few milliseconds); true if asked.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while !self.requested() {
            let now = Instant::now();
            if now >= end {
                return false;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(5)));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_names_and_nix_agree() {
        for n in 1..=libc::SIGRTMAX() {
            let s = Signal::from_raw(n).unwrap();
            assert_eq!(s.as_raw(), n);
            match (s.name(), nix::sys::signal::Signal::try_from(n).ok()) {
                (Some(name), Some(x)) => {
                    assert_eq!(name, x.as_str());
                    assert_eq!(s.to_string(), name);
                }
                (None, None) => assert!(n >= libc::SIGRTMIN() || n == 32 || n == 33, "{n}"),
                other => panic!("signal {n}: {other:?}"),
            }
        }
        assert_eq!(Signal::from_raw(0), None);
        assert_eq!(Signal::from_raw(-9), None);
        assert_eq!(Signal::from_raw(libc::SIGRTMAX() + 1), None);
        let rt = Signal::from_raw(libc::SIGRTMIN() + 2).unwrap();
        assert_eq!(rt.to_string(), "SIGRTMIN+2");
        assert_eq!(format!("{:?}", Signal::SIGKILL), "SIGKILL");
        assert_eq!(i32::from(Signal::SIGTERM), 15);
    }
}
