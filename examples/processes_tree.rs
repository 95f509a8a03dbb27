//! A process tree that cleans up after any member dies, three ways:
//!
//! 1. A `ProcessGroup` run with `run_fail_fast()`: when one worker fails,
//!    the others are stopped (SIGTERM) and joined, and the first failure is
//!    returned with the worker's name and message. (The failing worker
//!    also prints its error on its own stderr: the `Error: ...` line.)
//! 2. `with_new_group(true)`: a leader and the children it starts share a
//!    process group, and `signal_group` stops the whole subtree at once.
//! 3. `with_die_with_parent(true)`: grandchildren are killed by the kernel
//!    as soon as the process that started them dies, even by SIGKILL.
//!
//! After each part the program checks that nothing is left running.
//!
//! ```text
//! cargo run --example processes_tree
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::signal::Signal;
use multiproc::{Array, Event, ExitStatus, GroupError, Process, ProcessGroup};

/// Sleeps until a signal ends the process. (Typed `()`: a closure that only
/// loops has type `!`, which is not an accepted child result.)
fn work_forever() {
    loop {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` has ended: gone from the process table, or a zombie
/// waiting for whoever adopted it to reap it.
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Waits up to 5 s for every pid in `pids` to end.
fn all_dead(pids: &[i32]) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if pids.iter().all(|&p| dead(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// The pids of this process's children, running or zombie.
fn my_children() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn fail(what: &str) -> ! {
    eprintln!("FAILED: {what}");
    std::process::exit(1);
}

/// A leader that starts two grandchildren (`die_with_parent` set as asked),
/// records their pids, signals `ready` and works until stopped.
fn leader(
    pids: Arc<Array<i32>>,
    ready: Arc<Event>,
    die_with_parent: bool,
) -> impl FnOnce() -> multiproc::Result<()> + 'static {
    move || {
        let mut kids = Vec::new();
        for i in 0..2 {
            let mut k = Process::new(work_forever)
                .with_name(format!("grandchild-{i}"))
                .with_die_with_parent(die_with_parent);
            k.start()?;
            pids.set(i, k.pid().unwrap_or(0))?;
            kids.push(k);
        }
        ready.set();
        work_forever();
        drop(kids);
        Ok(())
    }
}

/// Starts a [`leader`] (a daemon, set up further by `setup`) whose
/// grandchildren die with it if `die_with_parent`; returns it once it has
/// started them, with their pids.
fn start_leader(
    setup: impl FnOnce(Process<'static>) -> Process<'static>,
    die_with_parent: bool,
) -> multiproc::Result<(Process<'static>, Vec<i32>)> {
    let pids = Arc::new(Array::<i32>::zeroed(2)?);
    let ready = Arc::new(Event::new()?);
    let lead = Process::new(leader(pids.clone(), ready.clone(), die_with_parent))
        .with_name("leader")
        .with_daemon(true);
    let mut lead = setup(lead);
    lead.start()?;
    if !ready.wait_timeout(Duration::from_secs(5)) {
        fail("the leader did not start its children");
    }
    Ok((lead, pids.to_vec()))
}

/// Prints this process's children and fails if there are any.
fn no_children_left() {
    println!("  children left: {:?}", my_children());
    if !my_children().is_empty() {
        fail("children left behind");
    }
}

fn main() -> multiproc::Result<()> {
    // Part 1: fail fast.
    println!("part 1: ProcessGroup::run_fail_fast with one failing worker");
    let mut group = ProcessGroup::new();
    for i in 0..3 {
        // Daemons, here and below: if this program fails half-way,
        // dropping them kills them instead of waiting for them forever.
        group.push(
            Process::new(work_forever)
                .with_name(format!("worker-{i}"))
                .with_daemon(true),
        );
    }
    group.push(
        Process::new(|| -> Result<(), String> {
            std::thread::sleep(Duration::from_millis(100));
            Err(String::from("input file is corrupt"))
        })
        .with_name("parser")
        .with_daemon(true),
    );
    match group.run_fail_fast() {
        Err(GroupError::ChildFailed {
            name,
            status,
            message,
            ..
        }) => {
            println!("  run_fail_fast: {name:?} failed with {status:?}, message {message:?}");
            if name != "parser" || status != ExitStatus::Exited(1) {
                fail("the wrong failure was reported");
            }
        }
        Ok(_) => fail("run_fail_fast succeeded"),
        Err(e) => return Err(e.into()),
    }
    let statuses = group.join_all()?;
    for (p, s) in group.iter_mut().zip(&statuses) {
        println!("  {} (pid {}): {s:?}", p.name(), p.pid().unwrap_or(0));
    }
    for s in &statuses[..3] {
        if *s != Some(ExitStatus::Signaled(Signal::SIGTERM)) {
            fail("a worker was not stopped by SIGTERM");
        }
    }
    no_children_left();

    // Part 2: a process group signalled as a whole.
    println!("part 2: with_new_group + signal_group");
    let (mut lead, grandchildren) = start_leader(|p| p.with_new_group(true), false)?;
    println!(
        "  leader {} (its own group) started grandchildren {grandchildren:?}",
        lead.pid().unwrap_or(0)
    );
    lead.signal_group(Signal::SIGTERM)?;
    let status = lead.join()?;
    println!("  SIGTERM to the group: the leader ended with {status:?}");
    if status != ExitStatus::Signaled(Signal::SIGTERM) {
        fail("the leader was not stopped by SIGTERM");
    }
    if !all_dead(&grandchildren) {
        fail("a grandchild survived the group's SIGTERM");
    }
    println!("  grandchildren {grandchildren:?} ended too");
    no_children_left();

    // Part 3: grandchildren that die with their parent.
    println!("part 3: with_die_with_parent");
    let (mut lead, grandchildren) = start_leader(|p| p, true)?;
    println!(
        "  leader {} started grandchildren {grandchildren:?}",
        lead.pid().unwrap_or(0)
    );
    lead.kill()?;
    let status = lead.join()?;
    println!("  SIGKILL to the leader alone: it ended with {status:?}");
    if !all_dead(&grandchildren) {
        fail("a grandchild outlived its parent");
    }
    println!("  grandchildren {grandchildren:?} died with it");
    no_children_left();
    Ok(())
}
