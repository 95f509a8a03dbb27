//! What the library does, on the `log` facade (feature `log`), and Python's
//! `log_to_stderr()`.
//!
//! The library logs under the target `"multiproc"`: process starts and ends
//! (info), and the failures it recovers from (warn). Any `log` logger
//! receives them (`env_logger`, `tracing`'s log bridge, ...);
//! [`log_to_stderr`] installs a small one that prints them the way Python's
//! `multiprocessing.log_to_stderr()` does, with the level and the current
//! process's name:
//!
//! ```text
//! [INFO/MainProcess] started Process-1 (pid 4242)
//! [INFO/MainProcess] Process-1 (pid 4242) ended: exit code 0
//! ```
//!
//! Without the feature, the log statements compile to nothing.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The target of every record the library logs.
pub const TARGET: &str = "multiproc";

/// Prints records to standard error as `[LEVEL/process name] message`.
struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let me = crate::process::current_process();
        // One write per record, so lines of several processes sharing the
        // terminal do not interleave within a line (up to PIPE_BUF bytes).
        let line = line(record.level(), me.name(), record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// A record as Python's `log_to_stderr` prints it.
fn line(level: Level, process: &str, message: &std::fmt::Arguments<'_>) -> String {
    format!("[{level}/{process}] {message}\n")
}

static STDERR: Stderr = Stderr;

/// Logs the library's records at `level` and above to standard error, like
/// Python's `multiprocessing.log_to_stderr(level)`, and returns whether this
/// call installed the logger. If another logger is already installed (the
/// program's own), it is kept and only the maximum level is raised to
/// `level`: the library's records then go to that logger.
///
/// The setting is per process and inherited by fork children (the logger
/// is a static); a spawned child calls it again if it wants it.
pub fn log_to_stderr(level: Level) -> bool {
    let installed = log::set_logger(&STDERR).is_ok();
    if installed || log::max_level() < level.to_level_filter() {
        log::set_max_level(level.to_level_filter());
    }
    installed
}

/// The current maximum level of the `log` facade (Python's
/// `get_logger().level`, roughly).
pub fn level() -> LevelFilter {
    log::max_level()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_pythons() {
        assert_eq!(
            line(
                Level::Info,
                "MainProcess",
                &format_args!("started Process-1 (pid {})", 7)
            ),
            "[INFO/MainProcess] started Process-1 (pid 7)\n"
        );
    }
}
