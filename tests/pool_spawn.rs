//! The process pool with the spawn start method: workers that are fresh
//! runs of this test binary, started from the multithreaded test harness
//! without `allow_threads`, with shared objects handed over through the
//! initializer.
//!
//! This binary has its own `main` (libtest-mimic) because
//! `multiproc::init` must run first when it is started as a worker.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{note_busy, running, spin_ms};
use libtest_mimic::{Arguments, Failed, Trial};
use multiproc::pool::{Pool, PoolBuilder};
use multiproc::{Error, Event, Lock, StartMethod, Value};

fn check(cond: bool, what: &str) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what.into()) }
}

fn spawn_pool(n: usize) -> PoolBuilder {
    Pool::builder()
        .processes(n)
        .start_method(StartMethod::Spawn)
}

/// Set by `main` in the parent only: a forked worker would see it, a
/// spawned one (a fresh run that stops in `init`) does not.
static MARK: AtomicU64 = AtomicU64::new(0);

// ---- functions run in the workers ----

fn square(x: u64) -> u64 {
    x * x
}

fn mark(_: ()) -> u64 {
    MARK.load(Ordering::Relaxed)
}

fn pid_of(_: u64) -> i32 {
    std::process::id() as i32
}

fn concat(a: String, b: u32) -> String {
    format!("{a}{b}")
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn kill_self_on_2(x: u64) -> u64 {
    if x == 2 {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    x
}

/// The line of the `panic!` in [`panics`].
const PANIC_LINE: u32 = line!() + 2;
fn panics(x: u64) -> u64 {
    panic!("task {x} panicked")
}

static SHARED: std::sync::OnceLock<(Arc<Value<u64>>, Arc<Lock>)> = std::sync::OnceLock::new();

fn init_shared(args: (Arc<Value<u64>>, Arc<Lock>)) {
    args.0.update(|n| *n += 1000);
    let _ = SHARED.set(args);
}

fn add_under_lock(k: u64) -> u64 {
    let (v, lock) = SHARED.get().expect("initialized");
    let _g = lock.lock().unwrap();
    // A read-modify-write spread over two lock-free steps: only the Lock
    // keeps concurrent workers from losing updates.
    let now = v.get();
    std::hint::black_box(&now);
    v.set(now + k);
    now
}

fn bad_init(_: ()) {
    panic!("no init for you");
}

// ---- tests ----

fn results_and_the_spawn_start_method() -> Result<(), Failed> {
    let pool = spawn_pool(2).build()?;
    let want: Vec<u64> = (0..500).map(|x| x * x).collect();
    check(pool.map(square, 0..500)? == want, "map")?;
    check(
        pool.map_chunked(square, 0..500, 1)? == want,
        "map chunksize 1",
    )?;
    let it: Vec<u64> = pool
        .imap_chunked(square, 0..500, 9)
        .collect::<Result<_, _>>()?;
    check(it == want, "imap")?;
    let mut un: Vec<u64> = pool
        .imap_unordered(square, 0..100)
        .collect::<Result<_, _>>()?;
    un.sort();
    check(un == want[..100], "imap_unordered")?;
    check(pool.apply(square, 11)? == 121, "apply")?;
    check(
        pool.starmap(concat, vec![("a".to_string(), 1), ("b".to_string(), 2)])? == ["a1", "b2"],
        "starmap",
    )?;
    // The workers are fresh runs of the program, not copies of this one.
    check(
        pool.map_chunked(mark, vec![(); 4], 1)? == vec![0; 4],
        "a spawned worker saw the parent's memory",
    )?;
    let me = std::process::id() as i32;
    let pids = pool.pids();
    check(pids.len() == 2 && !pids.contains(&me), "worker pids")?;
    pool.close();
    pool.join()?;
    check(pool.pids().is_empty(), "workers left after join")?;
    check(gone(&pids), "worker processes left after join")
}

/// Whether none of `pids` exists any more (not even as a zombie).
fn gone(pids: &[i32]) -> bool {
    pids.iter()
        .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
}

fn the_initializer_hands_over_shared_objects() -> Result<(), Failed> {
    let v = Arc::new(Value::new(0u64)?);
    let lock = Arc::new(Lock::new()?);
    let pool = spawn_pool(3)
        .initializer(init_shared, (v.clone(), lock.clone()))
        .build()?;
    let _ = pool.map_chunked(add_under_lock, vec![1u64; 300], 1)?;
    pool.close();
    pool.join()?;
    check(
        v.get() == 3000 + 300,
        &format!("value {} != 3 initializers + 300 adds", v.get()),
    )
}

fn a_killed_worker_fails_its_task_and_is_replaced() -> Result<(), Failed> {
    let pool = spawn_pool(2).build()?;
    let before = pool.pids();
    let items: Vec<_> = pool.imap(kill_self_on_2, 0..5).collect();
    for (i, r) in items.iter().enumerate() {
        match (i, r) {
            (2, Err(Error::WorkerDied { status, .. })) => {
                check(status.code() == -9, "killed by SIGKILL")?
            }
            (2, other) => return Err(format!("item 2: {other:?}").into()),
            (_, Ok(v)) => check(*v == i as u64, "a result")?,
            (_, Err(e)) => return Err(format!("item {i}: {e}").into()),
        }
    }
    let after = pool.pids();
    check(after.len() == 2 && after != before, "a new worker")?;
    check(pool.apply(square, 3)? == 9, "the pool goes on")?;
    // A panic is an error of its task only.
    match pool.apply(panics, 4) {
        Err(Error::TaskFailed(m)) => {
            check(m.contains("task 4 panicked"), &m)?;
            // Where, in the spawned worker.
            let at = format!("(at {}:{PANIC_LINE}:", file!());
            check(m.contains(&at), &m)?
        }
        other => return Err(format!("{other:?}").into()),
    }
    check(pool.pids() == after, "a panic does not cost the worker")
}

fn max_tasks_per_child_changes_pids() -> Result<(), Failed> {
    let pool = spawn_pool(2).max_tasks_per_child(3).build()?;
    let pids = pool.map_chunked(pid_of, 0..18, 1)?;
    let distinct: HashSet<i32> = pids.iter().copied().collect();
    check(
        distinct.len() >= 6,
        &format!("{} workers for 18 chunks at 3 each", distinct.len()),
    )
}

fn a_failing_initializer_is_reported() -> Result<(), Failed> {
    let pool = spawn_pool(2).initializer(bad_init, ()).build()?;
    let t = Instant::now();
    match pool
        .apply_async(square, 1)?
        .get_timeout(Duration::from_secs(20))
    {
        Err(Error::InitializerFailed(m)) => {
            check(m.contains("no init for you"), &m)?;
            check(m.contains(&format!("(at {}:", file!())), &m)?
        }
        other => return Err(format!("{other:?}").into()),
    }
    check(t.elapsed() < Duration::from_secs(10), "reported promptly")?;
    check(pool.pids().is_empty(), "no worker left")
}

fn terminate_is_prompt_and_leaves_nothing() -> Result<(), Failed> {
    let pool = spawn_pool(2).build()?;
    let pids = pool.pids();
    let r = pool.map_async_chunked(sleep_ms, vec![300; 50], 1)?;
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    drop(pool);
    check(
        t.elapsed() < Duration::from_secs(2),
        "terminate took too long",
    )?;
    check(
        matches!(r.get(), Err(Error::PoolTerminated)),
        "unfinished work fails",
    )?;
    check(gone(&pids), "worker processes left after drop")
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
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test(
            "results_and_the_spawn_start_method",
            results_and_the_spawn_start_method,
        ),
        Trial::test(
            "the_initializer_hands_over_shared_objects",
            the_initializer_hands_over_shared_objects,
        ),
        Trial::test(
            "a_killed_worker_fails_its_task_and_is_replaced",
            a_killed_worker_fails_its_task_and_is_replaced,
        ),
        Trial::test(
            "max_tasks_per_child_changes_pids",
            max_tasks_per_child_changes_pids,
        ),
        Trial::test(
            "a_failing_initializer_is_reported",
            a_failing_initializer_is_reported,
        ),
        Trial::test(
            "terminate_is_prompt_and_leaves_nothing",
            terminate_is_prompt_and_leaves_nothing,
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
    ];
    libtest_mimic::run(&args, tests).exit();
}
