//! The process pool with the fork start method: results in order and out
//! of order, chunk sizes, async handles, callbacks, errors in tasks, killed
//! workers, worker replacement, initializers, and nothing left behind.
#![cfg(feature = "pool")]
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;
mod pool_cases;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{note_busy, running, spin_ms};
use multiproc::pool::{Pool, PoolBuilder, PoolError, TaskError};
use multiproc::{StartMethod, Value};

/// A builder whose workers may be forked from the test harness's threads.
fn builder(n: usize) -> PoolBuilder {
    // SAFETY: the tasks below touch only their arguments, shared objects
    // made before the fork and stdio (whose locks fork holds); the
    // harness's other threads hold no lock a worker takes.
    unsafe { Pool::builder().processes(n).allow_threads() }
}

/// The cases shared with `tests/pool_spawn.rs`, here with fork.
macro_rules! fork_cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let _s = common::serial();
                pool_cases::$name(StartMethod::Fork);
            }
        )*
    };
}
pool_cases::each_case!(fork_cases);

use pool_cases::square;

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn fails_on_3(x: u64) -> u64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// A value whose serialization always fails.
#[derive(Debug)]
struct Unserializable;

impl serde::Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to be serialized"))
    }
}

impl<'de> serde::Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

fn unserializable(_: ()) -> Unserializable {
    Unserializable
}

#[test]
fn starmap_calls_with_two_arguments() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    let got = pool.starmap(add, (0..50).map(|i| (i, 10 * i))).unwrap();
    assert_eq!(got, (0..50).map(|i| 11 * i).collect::<Vec<_>>());
    let r = pool
        .starmap_async(add, vec![(1, 2), (3, 4)], Some(1))
        .unwrap();
    assert_eq!(r.get().unwrap(), vec![3, 7]);
}

#[test]
fn imap_is_ordered_and_lazy() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let p2 = pulled.clone();
    let input = (0..100_000u64).inspect(move |_| {
        p2.fetch_add(1, Ordering::Relaxed);
    });
    let mut it = pool.imap(square, input);
    for i in 0..10u64 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    // Only a window ahead was taken from the input.
    let n = pulled.load(Ordering::Relaxed);
    assert!(n < 100_000, "imap consumed {n} items for 10 results");
    drop(it);
    let all: Vec<u64> = pool
        .imap_chunked(square, 0..500, 7)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all, (0..500).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn imap_unordered_yields_in_completion_order() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    // The slow task is submitted first; the fast ones finish before it.
    let got: Vec<u64> = pool
        .imap_unordered(sleep_ms, vec![400, 1, 2, 3])
        .collect::<Result<_, _>>()
        .unwrap();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, vec![1, 2, 3, 400]);
    assert_eq!(*got.last().unwrap(), 400, "{got:?}");
    let mut many: Vec<u64> = pool
        .imap_unordered_chunked(square, 0..300, 4)
        .map(Result::unwrap)
        .collect();
    many.sort();
    assert_eq!(many, (0..300).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn async_handles_wait_time_out_and_report_success() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    let slow = pool.apply_async(sleep_ms, 300).unwrap();
    assert!(!slow.ready());
    assert_eq!(slow.successful(), None);
    let t = Instant::now();
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(50)),
        Err(TaskError::Timeout)
    ));
    assert!(t.elapsed() < Duration::from_millis(250));
    assert!(!slow.wait_timeout(Duration::from_millis(10)));
    slow.wait();
    assert!(slow.ready());
    assert_eq!(slow.successful(), Some(true));
    assert_eq!(slow.get().unwrap(), 300);
    // get can be called again.
    assert_eq!(slow.get_timeout(Duration::ZERO).unwrap(), 300);
    let bad = pool.apply_async(fails_on_3, 3).unwrap();
    bad.wait();
    assert_eq!(bad.successful(), Some(false));
    let m = pool.map_async(square, 0..10).unwrap();
    assert_eq!(m.get().unwrap(), (0..10).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn callbacks_get_results_and_errors() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (s, e) = (seen.clone(), errors.clone());
    let ok = pool
        .apply_async(square, 9)
        .unwrap()
        .callback(move |v| s.lock().unwrap().push(*v))
        .error_callback(move |err| e.lock().unwrap().push(err.to_string()));
    let (s, e) = (seen.clone(), errors.clone());
    let bad = pool
        .apply_async(fails_on_3, 3)
        .unwrap()
        .callback(move |v| s.lock().unwrap().push(*v))
        .error_callback(move |err| e.lock().unwrap().push(err.to_string()));
    assert_eq!(ok.get().unwrap(), 81);
    assert!(bad.get().is_err());
    assert_eq!(*seen.lock().unwrap(), vec![81]);
    let errs = errors.lock().unwrap().clone();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("three is not allowed"), "{errs:?}");
    // A callback added once the result is there runs at once.
    let late = Arc::new(AtomicU64::new(0));
    let l = late.clone();
    let _ = ok.callback(move |v| l.store(*v, Ordering::Relaxed));
    assert_eq!(late.load(Ordering::Relaxed), 81);
    // Map callbacks get the whole list; a handle dropped before the result
    // still gets its callback run by a later call.
    let total = Arc::new(AtomicU64::new(0));
    let t = total.clone();
    drop(
        pool.map_async(square, 0..10u64)
            .unwrap()
            .callback(move |v: &Vec<u64>| t.store(v.iter().sum(), Ordering::Relaxed)),
    );
    pool.close();
    pool.join().unwrap();
    assert_eq!(total.load(Ordering::Relaxed), 285);
}

#[test]
fn a_panicking_callback_surfaces_without_losing_the_others() {
    let _s = common::serial();
    let pool = builder(1).build().unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    let r1 = pool
        .apply_async(square, 2)
        .unwrap()
        .callback(|_| panic!("callback panicked"));
    let r2 = {
        let ran = ran.clone();
        pool.apply_async(square, 3)
            .unwrap()
            .callback(move |v| ran.store(*v, Ordering::Relaxed))
    };
    // Both results are collected together once the second is there.
    std::thread::sleep(Duration::from_millis(100));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r2.wait();
        r1.wait();
    }));
    assert!(caught.is_err(), "the callback's panic surfaced");
    // (Normally collected in the same call; on a very slow machine the
    // second result may come in a later one.)
    r2.wait();
    assert_eq!(ran.load(Ordering::Relaxed), 9);
    assert_eq!(r1.get().unwrap(), 4);
    // Dropping the pool runs error callbacks of terminated tasks; one that
    // panics does not make the drop panic.
    let _r = pool
        .apply_async(sleep_ms, 60_000)
        .unwrap()
        .error_callback(|_| panic!("error callback panicked"));
    drop(pool);
}

#[test]
fn a_panicking_task_fails_alone() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    let pids = pool.pids();
    let results: Vec<_> = pool.imap(fails_on_3, 0..6).collect();
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v, i as u64),
            Err(TaskError::TaskFailed(m)) => {
                assert_eq!(i, 3);
                assert!(m.contains("three is not allowed"), "{m}");
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(results[3].is_err());
    // map gives the first error.
    let err = pool.map_chunked(fails_on_3, 0..6, 2).unwrap_err();
    assert!(
        matches!(err, TaskError::TaskFailed(ref m) if m.contains("three")),
        "{err}"
    );
    // The workers survived.
    assert_eq!(pool.pids(), pids);
    assert_eq!(pool.map(square, 0..4).unwrap(), vec![0, 1, 4, 9]);
}

#[test]
fn an_unserializable_result_fails_its_task_only() {
    let _s = common::serial();
    let pool = builder(1).build().unwrap();
    let pids = pool.pids();
    let err = pool.apply(unserializable, ()).unwrap_err();
    assert!(
        matches!(err, TaskError::TaskFailed(ref m) if m.contains("could not be serialized")),
        "{err}"
    );
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    assert_eq!(pool.pids(), pids, "the worker survived");
}

#[test]
fn a_worker_killed_from_outside_fails_its_task_instead_of_hanging() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    let r = pool.apply_async(sleep_ms, 60_000).unwrap();
    // Let a worker take it, then kill both workers.
    std::thread::sleep(Duration::from_millis(100));
    for pid in pool.pids() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let t = Instant::now();
    let err = r.get_timeout(common::PATIENCE).unwrap_err();
    assert!(matches!(err, TaskError::WorkerDied { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(pool.apply(square, 6).unwrap(), 36);
    assert_eq!(pool.pids().len(), 2);
}

#[test]
fn close_then_join_finishes_the_work_and_leaves_nothing() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    assert!(matches!(pool.join(), Err(PoolError::InvalidArgument(_))));
    let r = pool.map_async_chunked(sleep_ms, vec![10; 20], 1).unwrap();
    pool.close();
    assert!(matches!(pool.apply(square, 1), Err(TaskError::PoolClosed)));
    pool.join().unwrap();
    assert!(r.ready());
    assert_eq!(r.get().unwrap(), vec![10; 20]);
    assert!(pool.pids().is_empty());
    assert!(common::children().is_empty());
}

#[test]
fn an_imap_made_before_close_still_runs_until_join() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    let it = pool.imap(square, 0..2000u64);
    let left_over = pool.imap(square, 0..2000u64);
    pool.close();
    let got: Vec<u64> = it.map(Result::unwrap).collect();
    assert_eq!(got, (0..2000).map(|x| x * x).collect::<Vec<_>>());
    // Joined before it was consumed: what it had not submitted fails.
    pool.join().unwrap();
    let rest: Vec<_> = left_over.collect();
    assert_eq!(rest.len(), 2000);
    assert!(rest.iter().any(|r| matches!(r, Err(TaskError::PoolClosed))));
    assert!(pool.pids().is_empty());
}

#[test]
fn dropping_the_pool_terminates_it() {
    let _s = common::serial();
    let r = {
        let pool = builder(2).build().unwrap();
        assert_eq!(pool.pids().len(), 2);
        pool.apply_async(sleep_ms, 60_000).unwrap()
    };
    assert!(common::children().is_empty());
    assert!(matches!(r.get(), Err(TaskError::PoolTerminated)));
}

fn byte_sum(v: Vec<u8>) -> u64 {
    v.iter().map(|&b| b as u64).sum()
}

fn make_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

#[test]
fn large_arguments_and_results_go_through() {
    let _s = common::serial();
    // Items larger than the whole ring travel in pieces.
    let pool = builder(2).ring_bytes(1 << 16).build().unwrap();
    let big = make_bytes(3 << 20);
    let want: u64 = big.iter().map(|&b| b as u64).sum();
    assert_eq!(pool.apply(byte_sum, big.clone()).unwrap(), want);
    let back = pool.map(make_bytes, vec![1 << 20, 10, 200_000]).unwrap();
    assert_eq!(back[0], make_bytes(1 << 20));
    assert_eq!(back[1], make_bytes(10));
    assert_eq!(back[2], make_bytes(200_000));
    pool.close();
    pool.join().unwrap();
}

#[test]
fn a_small_ring_fills_and_drains_without_deadlock() {
    let _s = common::serial();
    // 4 KiB rings hold about a hundred tasks or results: the parent must
    // collect results while it submits.
    let pool = builder(2).ring_bytes(4096).build().unwrap();
    let got = pool.map_chunked(square, 0..20_000, 1).unwrap();
    assert_eq!(got, (0..20_000).map(|x| x * x).collect::<Vec<_>>());
    let got: Vec<u64> = pool.imap(square, 0..5000).map(Result::unwrap).collect();
    assert_eq!(got, (0..5000).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn workers_exit_when_the_parent_dies() {
    let _s = common::serial();
    let worker = multiproc::RawValue::new(0i32).unwrap();
    let w = &worker;
    // A child makes a pool, gives it work, and is killed without cleaning
    // up: its worker finishes the task, notices, and exits.
    multiproc::process::scope(|ps| {
        let mut parent = common::spawn_in(ps, move || {
            // The child has one thread: forking needs no opt-in here.
            let pool = Pool::builder().processes(1).build().unwrap();
            let _r = pool.apply_async(sleep_ms, 200).unwrap();
            w.store(pool.pids()[0]);
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            common::hang();
        });
        assert_eq!(parent.join().unwrap().code(), -9);
        let pid = worker.load();
        assert!(pid > 0);
        assert!(
            common::eventually(Duration::from_secs(10), || !running(pid)),
            "worker {pid} outlived its parent"
        );
    })
}

#[test]
fn zero_processes_is_refused() {
    assert!(matches!(
        builder(0).build(),
        Err(PoolError::InvalidArgument(_))
    ));
}

#[test]
fn threads_share_a_pool() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let pool = &pool;
            s.spawn(move || {
                for k in 0..20 {
                    let x = t * 100 + k;
                    assert_eq!(pool.apply(square, x).unwrap(), x * x);
                }
                let v = pool.map_chunked(square, 0..200, 5).unwrap();
                assert_eq!(v.len(), 200);
            });
        }
    });
}

/// Busy processes (`yes > /dev/null`), one per core, killed and reaped on
/// drop: the load under which a large result used to be started over for
/// ever.
struct Hogs(Vec<std::process::Child>);

impl Hogs {
    fn start() -> Hogs {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hogs(
            (0..n)
                .map(|_| {
                    std::process::Command::new("yes")
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .expect("start yes")
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn text(n: usize) -> String {
    "x".repeat(n)
}

#[test]
fn a_result_of_a_hundred_rings_streams_through_under_load() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    let hogs = Hogs::start();
    // 128 times the (1 MiB) result ring. Before: whenever the parent was
    // descheduled for a moment the worker's put gave the result up after
    // 500 ms and sent it again from the start, and the parent dropped what
    // it had gathered: under load it never arrived (not within 20 s).
    let n = 128 << 20;
    let r = pool.apply_async(text, n).unwrap();
    let small = pool.apply_async(square, 3).unwrap();
    // A short wait returns by its deadline while the result streams in.
    let t = Instant::now();
    let early = r.get_timeout(Duration::from_millis(50));
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(600),
        "get_timeout(50 ms) took {took:?}"
    );
    let t = Instant::now();
    let got = match early {
        Ok(s) => s,
        Err(TaskError::Timeout) => r
            .get_timeout(Duration::from_secs(8))
            .unwrap_or_else(|e| panic!("{e} after {:?}", t.elapsed())),
        Err(e) => panic!("{e}"),
    };
    let took = t.elapsed();
    drop(hogs);
    assert!(
        got.len() == n && got == text(n),
        "the result arrived damaged"
    );
    assert_eq!(small.get_timeout(common::PATIENCE).unwrap(), 9);
    eprintln!("128 MiB result under load: {took:?}");
}

#[test]
fn busy_workers_die_with_their_killed_parent_at_once() {
    use nix::sys::signal::{Signal, kill, raise};
    let _s = common::serial();
    // A child of the test makes a pool, gives both workers a 30 s busy
    // task, sends their pids and is SIGKILLed: the workers must be gone
    // within a second. Before, they ran their task to its end (idle ones
    // left within half a second). (Workers started by another thread than
    // the main one, and spawned workers: tests/pool_spawn.rs.)
    let (rd, wr) = multiproc::pipe(false).unwrap();
    let mut parent = common::spawn(move || {
        let busy = Arc::new(Value::new(0u64).unwrap());
        // The child has one thread: forking needs no opt-in here.
        let pool = Pool::builder()
            .processes(2)
            .initializer(note_busy, busy.clone())
            .build()
            .unwrap();
        let _r: Vec<_> = (0..2)
            .map(|_| pool.apply_async(spin_ms, 30_000).unwrap())
            .collect();
        assert!(common::eventually(common::PATIENCE, || busy.get() == 2));
        let pids: Vec<u8> = pool.pids().iter().flat_map(|p| p.to_le_bytes()).collect();
        wr.send_bytes(&pids).unwrap();
        let _ = raise(Signal::SIGKILL);
        common::hang();
    });
    assert!(rd.poll(Some(common::PATIENCE)).unwrap(), "no pids came");
    let pids: Vec<i32> = rd
        .recv_bytes()
        .unwrap()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(pids.len(), 2);
    assert_eq!(parent.join().unwrap().code(), -9);
    let gone = common::eventually(Duration::from_secs(1), || pids.iter().all(|&p| !running(p)));
    let left: Vec<i32> = pids.iter().copied().filter(|&p| running(p)).collect();
    for &p in &left {
        // Do not leave them spinning if the test failed.
        let _ = kill(nix::unistd::Pid::from_raw(p), Signal::SIGKILL);
    }
    assert!(gone, "workers {left:?} outlived their killed parent by 1 s");
}

/// Counts itself in (see `common::spin_ms`), then returns `n` bytes.
fn counted_text(n: usize) -> String {
    spin_ms(0);
    text(n)
}

#[test]
fn get_timeout_returns_by_its_deadline_while_a_stalled_worker_sends_a_large_result() {
    use nix::sys::signal::{Signal, kill};
    let _s = common::serial();
    let busy = Arc::new(Value::new(0u64).unwrap());
    let pool = builder(1)
        .initializer(note_busy, busy.clone())
        .build()
        .unwrap();
    let worker = nix::unistd::Pid::from_raw(pool.pids()[0]);
    // 8 times the result ring: the worker fills the ring and sleeps for
    // room (nobody takes results until the parent calls in). Stop it there.
    let n = 8 << 20;
    let r = pool.apply_async(counted_text, n).unwrap();
    assert!(common::eventually(common::PATIENCE, || busy.get() == 1));
    assert!(common::eventually(common::PATIENCE, || {
        std::fs::read_to_string(format!("/proc/{worker}/stat"))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('S')))
    }));
    kill(worker, Signal::SIGSTOP).unwrap();
    // Before: once the parent had taken the first piece it waited for the
    // rest past its deadline, for as long as the worker lived (here until
    // the watchdog resumed it).
    let (done, watch) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watch.recv_timeout(Duration::from_secs(5)).is_err() {
            let _ = kill(worker, Signal::SIGCONT);
        }
    });
    let t = Instant::now();
    let early = r.get_timeout(Duration::from_millis(200));
    let took = t.elapsed();
    let _ = done.send(());
    watchdog.join().unwrap();
    kill(worker, Signal::SIGCONT).unwrap();
    assert!(
        matches!(early, Err(TaskError::Timeout)),
        "gave {:?} after {took:?}",
        early.as_ref().map(String::len)
    );
    assert!(
        took < Duration::from_secs(1),
        "get_timeout(200 ms) took {took:?}"
    );
    // What came is kept: the rest follows, and the result arrives whole.
    let got = r.get_timeout(common::PATIENCE).unwrap();
    assert!(got == text(n), "the result arrived damaged");
}

#[test]
fn imap_errors_before_any_task_are_its_only_item() {
    let _s = common::serial();
    let pool = builder(1).build().unwrap();
    // A chunk size of 0: the loop body sees the error once.
    let mut seen = Vec::new();
    for r in pool.imap_unordered_chunked(square, 0..3, 0) {
        seen.push(r);
    }
    assert_eq!(seen.len(), 1);
    assert!(
        matches!(seen[0], Err(TaskError::InvalidArgument(_))),
        "{seen:?}"
    );
    pool.close();
    // A closed pool: the same for every form.
    let errs: Vec<Vec<Result<u64, TaskError>>> = vec![
        pool.imap(square, 0..3).collect(),
        pool.imap_chunked(square, 0..3, 2).collect(),
        pool.imap_unordered(square, 0..3).collect(),
        pool.imap_unordered_chunked(square, 0..3, 2).collect(),
    ];
    for e in &errs {
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(matches!(e[0], Err(TaskError::PoolClosed)), "{e:?}");
    }
    pool.join().unwrap();
}

#[test]
fn imap_next_timeout_times_out_and_the_iterator_goes_on() {
    let _s = common::serial();
    let pool = builder(1).build().unwrap();
    for ordered in [true, false] {
        // The first result cannot come before 800 ms.
        let mut it = if ordered {
            pool.imap(sleep_ms, vec![800, 1])
        } else {
            pool.imap_unordered(sleep_ms, vec![800, 1])
        };
        let t = Instant::now();
        assert!(
            matches!(
                it.next_timeout(Duration::from_millis(50)),
                Some(Err(TaskError::Timeout))
            ),
            "ordered {ordered}"
        );
        assert!(
            t.elapsed() < Duration::from_millis(750),
            "{:?}",
            t.elapsed()
        );
        assert!(matches!(
            it.next_timeout(Duration::ZERO),
            Some(Err(TaskError::Timeout))
        ));
        // Still usable: the late result, then the next, then the end.
        assert_eq!(
            it.next_timeout(Duration::from_secs(30)).unwrap().unwrap(),
            800
        );
        assert_eq!(
            it.next_timeout(Duration::from_secs(30)).unwrap().unwrap(),
            1
        );
        assert!(it.next_timeout(Duration::from_secs(30)).is_none());
        assert!(it.next().is_none());
    }
    // An iterator that failed to start yields its error, then ends.
    pool.close();
    let mut it = pool.imap(square, 0..3);
    assert!(matches!(
        it.next_timeout(Duration::ZERO),
        Some(Err(TaskError::PoolClosed))
    ));
    assert!(it.next_timeout(Duration::ZERO).is_none());
    pool.join().unwrap();
}

/// The line of the `panic!` in [`panics_on_1`].
const PANIC_LINE: u32 = line!() + 3;
fn panics_on_1(x: u64) -> u64 {
    if x == 1 {
        panic!("task {x} gave up");
    }
    x
}

/// A worker initializer: sets `RUST_BACKTRACE` to `bt` and sends the
/// worker's stderr to the file `path`.
fn worker_env((bt, path): (String, String)) {
    // SAFETY: a pool worker's initializer runs in the worker process before
    // any task, on its only thread: nothing reads the environment at once.
    unsafe { std::env::set_var("RUST_BACKTRACE", bt) };
    let f = std::fs::File::create(path).unwrap();
    nix::unistd::dup2_stderr(&f).unwrap();
}

#[test]
fn a_task_panic_names_its_file_and_line_and_is_not_printed_by_the_worker() {
    let _s = common::serial();
    for bt in ["0", "1"] {
        let path =
            std::env::temp_dir().join(format!("multiproc-pool-stderr-{}-{bt}", std::process::id()));
        let pool = builder(1)
            .initializer(worker_env, (bt.to_string(), path.display().to_string()))
            .build()
            .unwrap();
        let at = format!("(at {}:{PANIC_LINE}:", file!());
        let check = |m: &str| {
            assert!(m.contains("task 1 gave up"), "{m}");
            assert!(m.contains(&at), "wanted {at} in {m}");
            // The backtrace only when asked for.
            assert_eq!(m.contains("worker backtrace:"), bt == "1", "{m}");
            if bt == "1" {
                assert!(m.contains("panics_on_1"), "{m}");
            }
        };
        let items: Vec<_> = pool.imap(panics_on_1, 0..3).collect();
        match &items[1] {
            Err(TaskError::TaskFailed(m)) => check(m),
            other => panic!("{other:?}"),
        }
        assert_eq!(items[2].as_ref().unwrap(), &2);
        match pool.apply(panics_on_1, 1) {
            Err(e @ TaskError::TaskFailed(_)) => check(&e.to_string()),
            other => panic!("{other:?}"),
        }
        pool.close();
        pool.join().unwrap();
        // The worker printed nothing of it: the caller has it all.
        let printed = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(!printed.contains("gave up"), "{printed}");
    }
}

/// Tasks used from this module and from the child below: in an optimised
/// build each codegen unit may have its own copy of a small function.
mod elsewhere {
    pub fn triple(x: u64) -> u64 {
        x * 3
    }

    pub fn never_registered(x: u64) -> u64 {
        x + 1
    }
}

#[test]
fn a_forked_child_gives_the_pool_functions_its_owner_registered() {
    let _s = common::serial();
    let pool = builder(2).build().unwrap();
    assert_eq!(pool.map(elsewhere::triple, 0..4).unwrap(), vec![0, 3, 6, 9]);
    let starred = |a: u64, b: u64| a * b;
    assert_eq!(pool.starmap(starred, [(2, 3)]).unwrap(), vec![6]);
    let p = &pool;
    multiproc::process::scope(|ps| {
        let mut child = common::spawn_in(ps, move || {
            // The same function (and closure), known by their types: run.
            let got = p.map_chunked(elsewhere::triple, 0..4, 1);
            assert_eq!(got.unwrap(), vec![0, 3, 6, 9]);
            assert_eq!(p.starmap(starred, [(4, 5)]).unwrap(), vec![20]);
            // A new one: only the pool's owner writes its code table.
            match p.apply(elsewhere::never_registered, 1) {
                Err(TaskError::InvalidArgument(m)) => {
                    assert!(m.contains("only the process that made a pool"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        });
        let st = child.join_timeout(common::PATIENCE).unwrap();
        assert!(st.is_some_and(|s| s.success()), "{st:?}");
    });
    // The owner's pool goes on, and may register new functions.
    assert_eq!(pool.apply(elsewhere::never_registered, 1).unwrap(), 2);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn tasks_are_functions_fn_pointers_or_closures_that_capture_nothing() {
    let _s = common::serial();
    let pool = builder(1).build().unwrap();
    assert_eq!(pool.map(|x: u64| x + 1, 0..3).unwrap(), vec![1, 2, 3]);
    let f: fn(u64) -> u64 = square;
    assert_eq!(pool.map(f, 0..3).unwrap(), vec![0, 1, 4]);
    let g: fn(u64, u64) -> u64 = add;
    assert_eq!(pool.starmap(g, [(1, 2)]).unwrap(), vec![3]);
    let r = pool.apply_async(|s: String| s.len(), "four".to_owned());
    assert_eq!(r.unwrap().get().unwrap(), 4);
    // A closure that captures something cannot cross: refused, whatever
    // the form.
    let k = 5u64;
    let adds_k = move |x: u64| x + k;
    assert!(matches!(
        pool.map(adds_k, 0..3),
        Err(TaskError::InvalidArgument(_))
    ));
    assert!(matches!(
        pool.apply_async(adds_k, 1).map(|_| ()),
        Err(TaskError::InvalidArgument(_))
    ));
    let mut it = pool.imap(adds_k, 0..3);
    assert!(matches!(
        it.next(),
        Some(Err(TaskError::InvalidArgument(_)))
    ));
    assert!(it.next().is_none());
    assert_eq!(pool.map(square, [3]).unwrap(), vec![9]);
}

#[test]
fn pool_errors_convert_into_the_crate_error_with_question_mark() {
    let _s = common::serial();
    fn run(x: u64) -> multiproc::Result<u64> {
        let pool = builder(1).build()?;
        let r = pool.apply(fails_on_3, x)?;
        pool.close();
        pool.join()?;
        Ok(r)
    }
    assert_eq!(run(2).unwrap(), 2);
    match run(3) {
        Err(multiproc::Error::TaskFailed(m)) => assert!(m.contains("three"), "{m}"),
        other => panic!("{other:?}"),
    }
    fn refused() -> multiproc::Result<()> {
        builder(0).build()?;
        Ok(())
    }
    assert!(matches!(
        refused(),
        Err(multiproc::Error::InvalidArgument(_))
    ));
}
