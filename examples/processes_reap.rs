//! Reaping children without blocking, while the parent keeps working:
//! Python's `os.waitpid(pid, os.WNOHANG)` / `p.exitcode is None` polling
//! pattern, and `active_children()`, which reaps whichever children have
//! ended and lists those still running.
//!
//! Part 1 polls each child with `join_timeout(Duration::ZERO)` (never
//! blocks) between units of work; part 2 polls with `exit_code()`; part 3
//! lets `active_children()` reap, and shows that a later `join` still gets
//! each child's status.
//!
//! For programs that would rather not poll, `multiproc::process::start_reaper()`
//! starts a thread that reaps children on SIGCHLD (keeping their statuses for
//! `join`); it makes the process multithreaded, so this single-threaded
//! example polls instead.
//!
//! ```text
//! cargo run --example processes_reap
//! ```

use std::time::Duration;

use multiproc::{Process, active_children};

/// A child that sleeps `ms` milliseconds, then exits with `code`.
fn sleeper<'a>(ms: u64, code: i32) -> Process<'a> {
    Process::new(move || {
        std::thread::sleep(Duration::from_millis(ms));
        code
    })
    .with_name(format!("sleeper-{ms}ms"))
}

/// One unit of the parent's own work.
fn work_unit() {
    std::thread::sleep(Duration::from_millis(5));
}

/// Whether `pid` still has an entry in the process table (running or
/// zombie).
fn in_process_table(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn fail(what: &str) -> ! {
    eprintln!("FAILED: {what}");
    std::process::exit(1);
}

fn main() -> multiproc::Result<()> {
    // Part 1: join_timeout(ZERO) between units of work.
    println!("part 1: polling with join_timeout(Duration::ZERO)");
    let plan = [(300, 3), (100, 1), (200, 2)];
    let mut kids: Vec<Process> = plan.iter().map(|&(ms, c)| sleeper(ms, c)).collect();
    for k in &mut kids {
        k.start()?;
    }
    let mut done = vec![false; kids.len()];
    let mut units = 0u32;
    while done.contains(&false) {
        for (i, k) in kids.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            if let Some(status) = k.join_timeout(Duration::ZERO)? {
                done[i] = true;
                println!(
                    "  after {units} units of work: reaped {} (pid {}): exit code {}",
                    k.name(),
                    k.pid().unwrap_or(0),
                    status.code()
                );
                if status.code() != plan[i].1 {
                    fail("wrong exit code");
                }
            }
        }
        work_unit();
        units += 1;
    }
    println!("  all reaped; the parent did {units} units of work meanwhile");

    // Part 2: exit_code() is None while the child runs (Python's
    // `while p.exitcode is None: ...`).
    println!("part 2: polling with exit_code()");
    let mut k = sleeper(150, 7);
    k.start()?;
    let mut units = 0u32;
    let code = loop {
        if let Some(c) = k.exit_code() {
            break c;
        }
        work_unit();
        units += 1;
    };
    println!("  exit code {code} after {units} units of work");
    if code != 7 {
        fail("expected exit code 7");
    }

    // Part 3: active_children() reaps those that ended.
    println!("part 3: active_children()");
    let plan = [(100, 10), (250, 20), (400, 30)];
    let mut kids: Vec<Process> = plan.iter().map(|&(ms, c)| sleeper(ms, c)).collect();
    for k in &mut kids {
        k.start()?;
    }
    let pids: Vec<i32> = kids.iter().filter_map(Process::pid).collect();
    println!("  started {pids:?}");
    let mut last = Vec::new();
    loop {
        let running = active_children();
        if running != last {
            println!("  running: {running:?}");
            // Those that ended are reaped already: no zombie left behind.
            for pid in pids.iter().filter(|p| !running.contains(p)) {
                if in_process_table(*pid) {
                    fail("an ended child is still in the process table");
                }
            }
            last = running;
        }
        if last.is_empty() {
            break;
        }
        work_unit();
    }
    // Each status was kept for its Process.
    for (k, &(_, expected)) in kids.iter_mut().zip(&plan) {
        let status = k.join()?;
        println!(
            "  join {} (pid {}) after active_children reaped it: exit code {}",
            k.name(),
            k.pid().unwrap_or(0),
            status.code()
        );
        if status.code() != expected {
            fail("wrong exit code");
        }
    }
    println!("done: every child reaped without blocking the parent");
    Ok(())
}
