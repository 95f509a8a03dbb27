//! Pool behaviours written once and run under each start method:
//! `tests/pool.rs` runs every case with fork (the standard harness, one
//! `#[test]` per case), `tests/pool_spawn.rs` with spawn (its own `main`,
//! which must call `multiproc::init` first, one trial per case). Both get
//! the list from [`each_case`], so a case added here runs under both.
//!
//! A case panics on failure (libtest-mimic turns a panic into a failed
//! trial, as the standard harness does).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use multiproc::pool::{Pool, PoolBuilder, TaskError};
use multiproc::{Lock, StartMethod, Value};

/// Calls `$m!` with the name of every case: the one list both binaries
/// run.
macro_rules! each_case {
    ($m:ident) => {
        $m! {
            map_returns_results_in_order_for_every_chunk_size,
            a_worker_killed_mid_task_fails_that_task_and_is_replaced,
            max_tasks_per_child_replaces_workers,
            the_initializer_runs_in_every_worker,
            the_initializer_hands_over_shared_objects,
            a_failing_initializer_is_reported_not_retried,
            terminate_with_queued_work_returns_promptly,
        }
    };
}
pub(crate) use each_case;

/// A pool of `n` workers started with `m`. Forked workers come from the
/// test harness's threads, so fork opts in; spawn needs no opt-in from
/// any thread (and is tested without one).
pub fn builder(m: StartMethod, n: usize) -> PoolBuilder {
    match m {
        // SAFETY: the tasks below touch only their arguments, shared
        // objects made before the fork and stdio (whose locks fork holds);
        // the harness's other threads hold no lock a worker takes.
        StartMethod::Fork => unsafe { Pool::builder().processes(n).allow_threads() },
        _ => Pool::builder().processes(n).start_method(m),
    }
}

/// Whether none of `pids` exists any more (not even as a zombie).
pub fn gone(pids: &[i32]) -> bool {
    pids.iter()
        .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
}

// ---- functions run in the workers ----

pub fn square(x: u64) -> u64 {
    x * x
}

fn pid_of(_: u64) -> i32 {
    std::process::id() as i32
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn concat(a: String, b: u32) -> String {
    format!("{a}{b}")
}

fn kill_self_on_5(x: u64) -> u64 {
    if x == 5 {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    x
}

const PANIC_LINE: u32 = line!() + 2;
fn panics(x: u64) -> u64 {
    panic!("task {x} panicked");
}

static SHARED: OnceLock<(Arc<Value<u64>>, Arc<Lock>)> = OnceLock::new();

fn init_shared(args: (Arc<Value<u64>>, Arc<Lock>)) {
    args.0.update(|n| *n += 1000);
    let _ = SHARED.set(args);
}

fn add_under_lock(k: u64) -> u64 {
    let (v, lock) = SHARED.get().expect("the initializer ran");
    let _g = lock.lock().unwrap();
    // A read-modify-write spread over two lock-free steps: only the Lock
    // keeps concurrent workers from losing updates.
    let now = v.get();
    std::hint::black_box(&now);
    v.set(now + k);
    now
}

fn sleep_then_pid(ms: u64) -> i32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id() as i32
}

static STATE: AtomicU64 = AtomicU64::new(0);

fn init_worker(args: (u64, Arc<Value<u64>>)) {
    let (v, started) = args;
    STATE.store(v, Ordering::Relaxed);
    started.update(|n| *n += 1);
}

fn read_state(_: ()) -> u64 {
    STATE.load(Ordering::Relaxed)
}

fn bad_init(runs: Arc<Value<u64>>) {
    runs.update(|n| *n += 1);
    panic!("the initializer broke");
}

// ---- the cases ----

pub fn map_returns_results_in_order_for_every_chunk_size(m: StartMethod) {
    let pool = builder(m, 2).build().unwrap();
    let want: Vec<u64> = (0..1000).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..1000).unwrap(), want);
    for cs in [1, 3, 7, 100, 1000, 5000] {
        assert_eq!(
            pool.map_chunked(square, 0..1000, cs).unwrap(),
            want,
            "chunksize {cs}"
        );
    }
    assert_eq!(
        pool.map(square, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
    assert!(matches!(
        pool.map_chunked(square, 0..3, 0),
        Err(TaskError::InvalidArgument(_))
    ));
    // Both workers took part.
    let pids: HashSet<i32> = pool
        .map_chunked(sleep_then_pid, vec![20u64; 8], 1)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let it: Vec<u64> = pool
        .imap_chunked(square, 0..500, 9)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(it, want[..500]);
    let mut un: Vec<u64> = pool
        .imap_unordered(square, 0..100)
        .collect::<Result<_, _>>()
        .unwrap();
    un.sort();
    assert_eq!(un, want[..100]);
    assert_eq!(pool.apply(square, 11).unwrap(), 121);
    assert_eq!(
        pool.starmap(concat, vec![("a".to_string(), 1), ("b".to_string(), 2)])
            .unwrap(),
        ["a1", "b2"]
    );
    let me = std::process::id() as i32;
    let pids = pool.pids();
    assert!(
        pids.len() == 2 && !pids.contains(&me),
        "worker pids {pids:?}"
    );
    pool.close();
    pool.join().unwrap();
    assert!(pool.pids().is_empty(), "workers left after join");
    assert!(gone(&pids), "worker processes left after join");
}

pub fn a_worker_killed_mid_task_fails_that_task_and_is_replaced(m: StartMethod) {
    let pool = builder(m, 2).build().unwrap();
    let before = pool.pids();
    let err = pool.map_chunked(kill_self_on_5, 0..10, 1).unwrap_err();
    assert!(matches!(err, TaskError::WorkerDied { .. }), "{err}");
    // Item by item: only item 5 failed.
    let items: Vec<_> = pool.imap(kill_self_on_5, 0..10).collect();
    for (i, r) in items.iter().enumerate() {
        if i == 5 {
            match r {
                Err(TaskError::WorkerDied { status, .. }) => {
                    assert_eq!(status.code(), -9);
                }
                other => panic!("item 5: {other:?}"),
            }
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as u64);
        }
    }
    let after = pool.pids();
    assert_eq!(after.len(), 2);
    assert_ne!(after, before, "killed workers were replaced");
    assert_eq!(pool.map(square, 0..5).unwrap(), vec![0, 1, 4, 9, 16]);
    // A panic is an error of its task only, and says where it happened.
    match pool.apply(panics, 4) {
        Err(TaskError::TaskFailed(msg)) => {
            assert!(msg.contains("task 4 panicked"), "{msg}");
            let at = format!("(at {}:{PANIC_LINE}:", file!());
            assert!(msg.contains(&at), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.pids(), after, "a panic does not cost the worker");
}

pub fn max_tasks_per_child_replaces_workers(m: StartMethod) {
    let pool = builder(m, 2).max_tasks_per_child(2).build().unwrap();
    let pids: Vec<i32> = pool.map_chunked(pid_of, 0..20, 1).unwrap();
    let distinct: HashSet<i32> = pids.iter().copied().collect();
    // 20 chunks, at most 2 per worker: at least 10 workers.
    assert!(distinct.len() >= 10, "{} workers: {pids:?}", distinct.len());
    for pid in &distinct {
        assert!(pids.iter().filter(|p| *p == pid).count() <= 2);
    }
    assert_eq!(pool.map(square, 0..10).unwrap().len(), 10);
    pool.close();
    pool.join().unwrap();
}

pub fn the_initializer_runs_in_every_worker(m: StartMethod) {
    let started = Arc::new(Value::new(0u64).unwrap());
    let pool = builder(m, 3)
        .initializer(init_worker, (42, started.clone()))
        .build()
        .unwrap();
    let got = pool.map_chunked(read_state, vec![(); 12], 1).unwrap();
    assert_eq!(got, vec![42; 12]);
    // The parent's own copy was never set.
    assert_eq!(STATE.load(Ordering::Relaxed), 0);
    pool.close();
    pool.join().unwrap();
    assert_eq!(started.get(), 3);
}

pub fn a_failing_initializer_is_reported_not_retried(m: StartMethod) {
    let runs = Arc::new(Value::new(0u64).unwrap());
    let pool = builder(m, 2)
        .initializer(bad_init, runs.clone())
        .build()
        .unwrap();
    let t = Instant::now();
    let err = pool
        .apply_async(square, 2)
        .unwrap_or_else(|e| panic!("{e}"))
        .get_timeout(crate::common::PATIENCE);
    let err = match err {
        Err(e) => e,
        Ok(v) => panic!("got {v}"),
    };
    assert!(
        matches!(err, TaskError::InitializerFailed(ref m) if m.contains("the initializer broke")),
        "{err}"
    );
    // Where, in the worker.
    let at = format!("(at {}:", file!());
    assert!(
        matches!(err, TaskError::InitializerFailed(ref m) if m.contains(&at)),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // Later work is refused at once, and no worker is left.
    assert!(matches!(
        pool.apply(square, 3),
        Err(TaskError::InitializerFailed(_))
    ));
    assert!(pool.pids().is_empty());
    // No new worker was started after the failure: each of the two ran the
    // initializer at most once.
    std::thread::sleep(Duration::from_millis(200));
    let n = runs.get();
    assert!((1..=2).contains(&n), "the initializer ran {n} times");
}

pub fn terminate_with_queued_work_returns_promptly(m: StartMethod) {
    let pool = builder(m, 2).build().unwrap();
    let r = pool.map_async_chunked(sleep_ms, vec![200; 100], 1).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    pool.terminate();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(matches!(r.get(), Err(TaskError::PoolTerminated)));
    assert!(pool.pids().is_empty());
    assert!(matches!(pool.apply(square, 1), Err(TaskError::PoolClosed)));
    pool.join().unwrap();
    assert!(crate::common::children().is_empty());
}

pub fn the_initializer_hands_over_shared_objects(m: StartMethod) {
    let v = Arc::new(Value::new(0u64).unwrap());
    let lock = Arc::new(Lock::new().unwrap());
    let pool = builder(m, 3)
        .initializer(init_shared, (v.clone(), lock.clone()))
        .build()
        .unwrap();
    let _ = pool
        .map_chunked(add_under_lock, vec![1u64; 300], 1)
        .unwrap();
    pool.close();
    pool.join().unwrap();
    assert_eq!(v.get(), 3000 + 300, "3 initializers and 300 adds");
}
