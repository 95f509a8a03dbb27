//! The process pool with the spawn start method: workers that are fresh
//! runs of this test binary, started from the multithreaded test harness
//! without `allow_threads`, with shared objects handed over through the
//! initializer. The behaviours common to both start methods are written
//! once in `pool_cases` and run here with spawn (and in `pool.rs` with
//! fork).
//!
//! This binary has its own `main` (libtest-mimic) because
//! `multiproc::init` must run first when it is started as a worker.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;
mod pool_cases;

use common::{note_busy, running, spin_ms};
use libtest_mimic::{Arguments, Failed, Trial};
use multiproc::pool::Pool;
use multiproc::{Event, StartMethod, Value};

fn check(cond: bool, what: &str) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what.into()) }
}

/// Set by `main` in the parent only: a forked worker would see it, a
/// spawned one (a fresh run that stops in `init`) does not.
static MARK: AtomicU64 = AtomicU64::new(0);

fn mark(_: ()) -> u64 {
    MARK.load(Ordering::Relaxed)
}

// ---- tests ----

fn spawned_workers_are_fresh_runs_of_the_program() -> Result<(), Failed> {
    let pool = pool_cases::builder(StartMethod::Spawn, 2).build()?;
    check(
        pool.map_chunked(mark, vec![(); 4], 1)? == vec![0; 4],
        "a spawned worker saw the parent's memory",
    )
}

fn the_global_start_method_applies() -> Result<(), Failed> {
    multiproc::set_start_method(StartMethod::Spawn);
    // No allow_threads needed: spawning is safe from any thread.
    let pool = Pool::new(1);
    multiproc::set_start_method(StartMethod::Fork);
    let pool = pool?;
    check(pool.apply(mark, ())? == 0, "spawned")
}

/// What a pool owner is told: the workers' start method (0 fork, 1 spawn),
/// whether to make the pool from a thread that then ends, where to write
/// the workers' pids, and the event to set then.
type OwnerArgs = (u8, bool, Arc<Value<[i32; 2]>>, Arc<Event>);

/// A spawned process that makes a pool, gives both workers a 30 s busy
/// task, reports their pids and SIGKILLs itself.
fn pool_owner((method, from_other_thread, pids, ready): OwnerArgs) {
    let busy = Arc::new(Value::new(0u64).unwrap());
    let method = if method == 0 {
        StartMethod::Fork
    } else {
        StartMethod::Spawn
    };
    let make = || {
        // SAFETY: when this process has two threads while the pool forks,
        // the other one only waits in `join`, holding no lock.
        unsafe {
            Pool::builder()
                .processes(2)
                .start_method(method)
                .allow_threads()
        }
        .initializer(note_busy, busy.clone())
        .build()
        .unwrap()
    };
    let pool = if from_other_thread {
        // The thread that starts the workers ends here: the workers must
        // not take that for their parent's death (they run the tasks).
        std::thread::scope(|s| s.spawn(make).join().unwrap())
    } else {
        make()
    };
    let _r: Vec<_> = (0..2)
        .map(|_| pool.apply_async(spin_ms, 30_000).unwrap())
        .collect();
    let t = Instant::now();
    while busy.get() < 2 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let w = pool.pids();
    pids.set([w[0], w[1]]);
    ready.set();
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Busy workers must be gone within a second of their pool's process
/// being SIGKILLed. Before, they ran their task to its end.
fn busy_workers_die_with_a_killed_owner(method: u8, from_other_thread: bool) -> Result<(), Failed> {
    use nix::sys::signal::{Signal, kill};
    let pids = Arc::new(Value::new([0i32; 2])?);
    let ready = Arc::new(Event::new()?);
    let mut owner = multiproc::Process::spawn(
        pool_owner,
        (method, from_other_thread, pids.clone(), ready.clone()),
    )?
    .with_daemon(true);
    owner.start()?;
    check(
        ready.wait_timeout(Duration::from_secs(20)),
        "the owner did not report",
    )?;
    let w = pids.get();
    check(owner.join()?.code() == -9, "the owner was killed")?;
    let t = Instant::now();
    while w.iter().any(|&p| running(p)) && t.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let left: Vec<i32> = w.iter().copied().filter(|&p| running(p)).collect();
    for &p in &left {
        // Do not leave them spinning if the test failed.
        let _ = kill(nix::unistd::Pid::from_raw(p), Signal::SIGKILL);
    }
    check(
        w.iter().all(|&p| p > 0) && left.is_empty(),
        &format!("workers {left:?} of {w:?} outlived their killed parent by 1 s"),
    )
}

fn main() {
    multiproc::init();
    MARK.store(7, Ordering::Relaxed);
    let mut args = Arguments::from_args();
    // Every trial makes children, and the shared cases check that none is
    // left: one trial at a time unless told otherwise (`cargo test` would
    // run them on threads of this one process).
    args.test_threads.get_or_insert(1);
    // The cases shared with `tests/pool.rs`, here with spawn.
    macro_rules! spawn_cases {
        ($($name:ident),* $(,)?) => {
            vec![$(
                Trial::test(stringify!($name), || {
                    let _s = common::serial();
                    pool_cases::$name(StartMethod::Spawn);
                    Ok(())
                }),
            )*]
        };
    }
    let mut tests = pool_cases::each_case!(spawn_cases);
    tests.extend([
        Trial::test(
            "spawned_workers_are_fresh_runs_of_the_program",
            spawned_workers_are_fresh_runs_of_the_program,
        ),
        Trial::test(
            "the_global_start_method_applies",
            the_global_start_method_applies,
        ),
        Trial::test("busy_spawned_workers_die_with_their_killed_parent", || {
            busy_workers_die_with_a_killed_owner(1, false)
        }),
        Trial::test(
            "busy_spawned_workers_started_by_an_ended_thread_die_with_their_killed_parent",
            || busy_workers_die_with_a_killed_owner(1, true),
        ),
        Trial::test(
            "busy_forked_workers_started_by_an_ended_thread_die_with_their_killed_parent",
            || busy_workers_die_with_a_killed_owner(0, true),
        ),
    ]);
    libtest_mimic::run(&args, tests).exit();
}
