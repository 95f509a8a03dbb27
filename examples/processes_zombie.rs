//! A zombie, seen from the outside: a killed child stays in the process
//! table in state `Z` (its exit status waiting to be collected) until the
//! parent reaps it with `join`; after that its `/proc/<pid>` entry is gone.
//!
//! Nothing reaps behind the parent's back here: this program never calls
//! `is_alive`, `exit_code` or `active_children` (each of which reaps an
//! ended child), so the zombie stays until `join`.
//!
//! ```text
//! cargo run --example processes_zombie
//! ```

use std::time::{Duration, Instant};

use multiproc::Process;
use multiproc::process::wait;

/// The state letter of `/proc/<pid>/stat` (`R` running, `S` sleeping, `Z`
/// zombie, ...), or `None` once the process is gone from the table.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the state is the
    // first field after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

fn describe(pid: i32) -> String {
    match state(pid) {
        None => String::from("gone"),
        Some('R') => String::from("state R (running)"),
        Some('S') => String::from("state S (sleeping)"),
        Some('Z') => String::from("state Z (zombie)"),
        Some(c) => format!("state {c}"),
    }
}

/// Sleeps until killed. (Typed `()`: a closure that only loops has type
/// `!`, which is not an accepted child result.)
fn sleep_forever() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn fail(what: &str) -> ! {
    eprintln!("FAILED: {what}");
    std::process::exit(1);
}

fn main() -> multiproc::Result<()> {
    // A daemon: should this program fail before `join`, dropping the
    // Process kills the child instead of waiting for it forever.
    let mut child = Process::new(sleep_forever)
        .with_name("sleeper")
        .with_daemon(true);
    child.start()?;
    let pid = child.pid().expect("started");
    // Let it reach its sleep (state `S`); it starts out running (`R`).
    let t = Instant::now();
    while state(pid) != Some('S') && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("started child {pid}: {}", describe(pid));

    child.kill()?;
    println!("sent SIGKILL to {pid}");

    // The process ends soon after the signal; its pidfd then becomes
    // readable, which `wait` reports without reaping anything.
    let ready = wait(&[&child], Some(Duration::from_secs(5)))?;
    if ready != [0] {
        fail("the killed child did not end within 5 s");
    }
    // The state may lag the pidfd by a moment: give it a little time.
    let t = Instant::now();
    while state(pid) != Some('Z') && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    if state(pid) != Some('Z') {
        fail("the killed child is not a zombie");
    }
    // Still a zombie a while later: nobody has collected its status.
    std::thread::sleep(Duration::from_millis(200));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    println!(
        "200 ms after its end, {pid} is still in the process table: {}",
        describe(pid)
    );
    println!(
        "  /proc/{pid}/stat: {}",
        stat.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if state(pid) != Some('Z') {
        fail("the zombie disappeared before join");
    }

    let status = child.join()?;
    println!("join reaped it: {status:?}, exit code {}", status.code());
    if status.code() != -9 {
        fail("expected exit code -9");
    }
    match state(pid) {
        None => println!("after join, /proc/{pid} is gone: no zombie left"),
        Some(s) => fail(&format!("after join, {pid} is still there in state {s}")),
    }
    Ok(())
}
