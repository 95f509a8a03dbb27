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

use nix::sys::signal::{SigHandler, Signal};

use crate::error::{Error, Result};

pub use nix::sys::signal::Signal as SignalKind;

/// Ignores SIGTERM in the calling process: `terminate()` then does nothing
/// and only SIGKILL stops it (the classic "child that ignores SIGTERM").
pub fn ignore_terminate() -> Result<()> {
    set_disposition(Signal::SIGTERM, SigHandler::SigIgn)
}

/// Restores SIGTERM's default action (the process ends).
pub fn default_terminate() -> Result<()> {
    set_disposition(Signal::SIGTERM, SigHandler::SigDfl)
}

pub(crate) fn set_disposition(sig: Signal, how: SigHandler) -> Result<()> {
    // SAFETY: SIG_IGN and SIG_DFL install no handler code, so nothing runs
    // in signal context; replacing a handler signal-hook installed is the
    // caller's choice and leaves no dangling state (signal-hook's handler
    // simply stops being called).
    unsafe { nix::sys::signal::signal(sig, how) }
        .map(drop)
        .map_err(|e| Error::os("sigaction", e))
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
            signal_hook::flag::register(s as i32, flag.clone())
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
