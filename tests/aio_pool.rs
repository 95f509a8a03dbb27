//! The pool's async forms (features `tokio` and `pool`) on a real tokio
//! runtime with real worker processes: `AsyncResult` awaited (borrowed and
//! owned), `IMap::next_async`, cancellation (a dropped future loses no
//! result), a killed worker, and many idle waiters costing no CPU. Every
//! wait is bounded, so a lost wake-up fails instead of hanging.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::time::{Duration, Instant};

use common::aio::{bounded, reactor_threads, rt};
use common::serial;
use multiproc::pool::{Pool, PoolBuilder, TaskError};
use tokio::time::timeout;

fn builder(n: usize) -> PoolBuilder {
    // SAFETY: the tasks touch only their arguments; the harness's other
    // threads hold no lock a worker takes.
    unsafe { Pool::builder().processes(n).allow_threads() }
}

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn fails_on_3(x: u64) -> u64 {
    assert!(x != 3, "three is not allowed");
    x
}

/// This process's CPU time (user + system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command's closing parenthesis: utime is the 12th,
    // stime the 13th of them (in clock ticks).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[test]
fn async_results_are_awaited_borrowed_and_owned() {
    let _s = serial();
    let pool = builder(2).build().unwrap();
    rt().block_on(async {
        let r = pool.apply_async(square, 7).unwrap();
        assert_eq!(bounded(r.get_async()).await.unwrap(), 49);
        // Awaiting again gives it again; so does `get`.
        assert_eq!(bounded(&r).await.unwrap(), 49);
        assert_eq!(r.get().unwrap(), 49);
        let m = pool.map_async(square, 0..100u64).unwrap();
        let want: Vec<u64> = (0..100).map(|x| x * x).collect();
        assert_eq!(bounded(m).await.unwrap(), want);
        // A task's error is the await's error.
        let bad = pool.apply_async(fails_on_3, 3).unwrap();
        let err = bounded(bad).await.unwrap_err();
        assert!(
            matches!(err, TaskError::TaskFailed(ref m) if m.contains("three")),
            "{err}"
        );
    });
    // An owned future can be spawned as a task (it is Send + 'static).
    let rt = rt();
    let r = pool.apply_async(square, 9).unwrap();
    let task = rt.spawn(r.into_future());
    assert_eq!(rt.block_on(bounded(task)).unwrap().unwrap(), 81);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn a_dropped_result_future_loses_nothing() {
    let _s = serial();
    let pool = builder(1).build().unwrap();
    rt().block_on(async {
        let r = pool.apply_async(sleep_ms, 300).unwrap();
        // Not there yet: the wait is cancelled by the timeout.
        assert!(
            timeout(Duration::from_millis(30), r.get_async())
                .await
                .is_err()
        );
        assert!(timeout(Duration::from_millis(30), &r).await.is_err());
        // The result can still be awaited, and fetched afterwards.
        assert_eq!(bounded(&r).await.unwrap(), 300);
        assert_eq!(r.get().unwrap(), 300);
    });
}

#[test]
fn many_awaited_results_take_no_thread_each_and_no_cpu_while_idle() {
    let _s = serial();
    let pool = builder(2).build().unwrap();
    let rt = rt();
    // Both workers busy for a while: every other result waits behind them.
    let blockers: Vec<_> = (0..2)
        .map(|_| pool.apply_async(sleep_ms, 1500).unwrap())
        .collect();
    let results: Vec<_> = (0..1000u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    let before = cpu_time();
    let t = Instant::now();
    let got = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, r) in results.into_iter().enumerate() {
            tasks.spawn(async move { (i as u64, bounded(r).await) });
        }
        let mut got = Vec::new();
        while let Some(j) = tasks.join_next().await {
            got.push(j.unwrap());
        }
        got
    });
    let spent = cpu_time() - before;
    let took = t.elapsed();
    assert_eq!(got.len(), 1000);
    for (i, r) in got {
        assert_eq!(r.unwrap(), i * i);
    }
    for b in blockers {
        assert_eq!(b.get().unwrap(), 1500);
    }
    // The waiters slept most of the 1.5 s: far less CPU than wall time
    // (a busy poll would spend all of it). Collecting 1000 results and
    // forking no one costs some milliseconds.
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert!(
        spent < took / 4,
        "the waiters spent {spent:?} of CPU in {took:?}"
    );
    // One reactor thread at most (127 waiters per thread on distinct
    // words; these all wait on the results ring's one word).
    assert!(
        reactor_threads() <= 1,
        "{} reactor threads",
        reactor_threads()
    );
}

#[test]
fn an_awaited_result_of_a_killed_worker_is_its_error() {
    let _s = serial();
    let pool = builder(1).build().unwrap();
    rt().block_on(async {
        let r = pool.apply_async(sleep_ms, 60_000).unwrap();
        // Let the worker take it (the future waits meanwhile), then kill it.
        assert!(timeout(Duration::from_millis(200), &r).await.is_err());
        for pid in pool.pids() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
        let t = Instant::now();
        let err = bounded(&r).await.unwrap_err();
        assert!(matches!(err, TaskError::WorkerDied { .. }), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // The pool replaced the worker.
        assert_eq!(
            bounded(pool.apply_async(square, 6).unwrap()).await.unwrap(),
            36
        );
    });
}

#[test]
fn imap_next_async_yields_every_result_and_a_dropped_next_loses_none() {
    let _s = serial();
    let pool = builder(2).build().unwrap();
    rt().block_on(async {
        let mut it = pool.imap(square, 0..500u64);
        let mut got = Vec::new();
        while let Some(r) = bounded(it.next_async()).await {
            got.push(r.unwrap());
        }
        assert_eq!(got, (0..500).map(|x| x * x).collect::<Vec<_>>());

        let mut it = pool.imap_unordered(square, 0..300u64);
        let mut got = Vec::new();
        while let Some(r) = bounded(it.next_async()).await {
            got.push(r.unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, (0..300).map(|x| x * x).collect::<Vec<_>>());

        // A next cancelled while it waits: the result comes from the next
        // call.
        let mut it = pool.imap(sleep_ms, [300u64, 1]);
        assert!(
            timeout(Duration::from_millis(30), it.next_async())
                .await
                .is_err()
        );
        assert_eq!(bounded(it.next_async()).await.unwrap().unwrap(), 300);
        assert_eq!(bounded(it.next_async()).await.unwrap().unwrap(), 1);
        assert!(bounded(it.next_async()).await.is_none());
    });
}
