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

#[cfg(any(feature = "signals", feature = "manager"))]
use crate::error::Error;
use crate::error::Result;

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

/// Ignores SIGTERM in the calling process: `terminate()` then does nothing
/// and only SIGKILL stops it (the classic "child that ignores SIGTERM").
pub fn ignore_terminate() -> Result<()> {
    crate::sys::process::set_disposition(libc::SIGTERM, true)
}

/// Restores SIGTERM's default action (the process ends).
pub fn default_terminate() -> Result<()> {
    crate::sys::process::set_disposition(libc::SIGTERM, false)
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
    pub fn install() -> Result<StopRequest> {
        Self::on(&[Signal::SIGTERM, Signal::SIGINT])
    }

    /// Sets the flag on each of `signals` (not SIGKILL or SIGSTOP).
    pub fn on(signals: &[Signal]) -> Result<StopRequest> {
        let flag = Arc::new(AtomicBool::new(false));
        for &s in signals {
            signal_hook::flag::register(s.as_raw(), flag.clone())
                .map_err(|e| Error::os("sigaction", e))?;
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
