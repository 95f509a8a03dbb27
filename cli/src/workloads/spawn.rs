//! `spawn`: starting and joining children with the fork and the spawn start
//! methods, beside bare fork + `_exit` + waitpid and posix_spawn.

use std::time::{Duration, Instant};

use multiproc::Process;

use super::{Size, keep};
use crate::pi::Outcome;
use crate::report::{Line, params};

/// The entry point of the spawned children of the `spawn` workload.
fn nothing(_: ()) {}

/// The variable that makes this binary exit at once: the posix_spawn
/// baseline of the spawn start method runs the same binary.
pub const EXIT_AT_ONCE: &str = "MULTIPROC_BENCH_EXIT_AT_ONCE";

pub(super) fn spawn(size: Size) -> Outcome<Vec<Line>> {
    let mut lines = Vec::new();
    // Fork: Process start + join against fork + _exit + waitpid.
    let n: usize = size.pick(1000, 100);
    let params = params!["children" => n, "start_method" => "fork"];
    let mut ok = String::from("ok");
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    for _ in 0..size.reps {
        let t = Instant::now();
        for _ in 0..n {
            let mut p = Process::new(|| ());
            p.start()?;
            if !p.join()?.success() {
                keep(&mut ok, "a child failed".into());
            }
        }
        t_mp = t_mp.min(t.elapsed());
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: the child only calls _exit, which is async-signal-safe.
            match unsafe { nix::unistd::fork() }? {
                // SAFETY: _exit ends the child at once; it never returns.
                nix::unistd::ForkResult::Child => unsafe { libc::_exit(0) },
                nix::unistd::ForkResult::Parent { child } => {
                    nix::sys::wait::waitpid(child, None)?;
                }
            }
        }
        t_raw = t_raw.min(t.elapsed());
    }
    let per = |t: Duration| t.as_secs_f64() * 1e6 / n as f64;
    lines.push(Line::new(
        "multiproc",
        "spawn",
        "Process_fork",
        &params,
        "us_per_child",
        per(t_mp),
        &ok,
    ));
    lines.push(Line::new(
        "raw",
        "spawn",
        "fork_exit_waitpid",
        &params,
        "us_per_child",
        per(t_raw),
        "ok",
    ));

    // Spawn: a fresh run of this binary, against posix_spawn of the same
    // binary told to exit at once.
    let n: usize = size.pick(300, 30);
    let params = params!["children" => n, "start_method" => "spawn"];
    let mut ok = String::from("ok");
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    let exe = c"/proc/self/exe";
    let argv = [exe.to_owned()];
    let mut envp: Vec<std::ffi::CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .collect();
    envp.push(std::ffi::CString::new(format!("{EXIT_AT_ONCE}=1"))?);
    for _ in 0..size.reps {
        let t = Instant::now();
        for _ in 0..n {
            let mut p = Process::spawn(nothing, ())?;
            p.start()?;
            if p.result().is_err() {
                keep(&mut ok, "a child failed".into());
            }
        }
        t_mp = t_mp.min(t.elapsed());
        let t = Instant::now();
        for _ in 0..n {
            let pid = nix::spawn::posix_spawn(
                exe,
                &nix::spawn::PosixSpawnFileActions::init()?,
                &nix::spawn::PosixSpawnAttr::init()?,
                &argv,
                &envp,
            )?;
            nix::sys::wait::waitpid(pid, None)?;
        }
        t_raw = t_raw.min(t.elapsed());
    }
    let per = |t: Duration| t.as_secs_f64() * 1e6 / n as f64;
    lines.push(Line::new(
        "multiproc",
        "spawn",
        "Process_spawn",
        &params,
        "us_per_child",
        per(t_mp),
        &ok,
    ));
    lines.push(Line::new(
        "raw",
        "spawn",
        "posix_spawn_same_binary",
        &params,
        "us_per_child",
        per(t_raw),
        "ok",
    ));
    Ok(lines)
}
