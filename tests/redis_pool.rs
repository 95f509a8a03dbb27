//! The distributed pool against a real `redis-server` started by each test,
//! with real processes as workers, "hosts" (process groups) and callers:
//! the API, and every fault of issue 16 with exact accounting (each task's
//! result exactly once, none lost).
//!
//! Tasks that must be caught mid-run are gated: they leave a marker file
//! `started-ITEM-PID` in a directory of the test and wait (at most 60 s)
//! for a file `release`; the test waits (bounded) for the marker, kills
//! what it wants, then releases.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PATIENCE, eventually, serial, spawn};
use multiproc::redis::{LocalServer, RedisError, RedisPool, RedisTaskError, RedisWorker};

const KEY: &[u8] = b"test secret";
const LONG: Duration = Duration::from_secs(60);

fn server() -> LocalServer {
    LocalServer::start().expect("these tests need a real redis-server")
}

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// The line of `fail_on_three`'s panic, which its error names.
const FAIL_LINE: u32 = line!() + 3;

fn fail_on_three(x: u64) -> u64 {
    assert!(x != 3, "three is not allowed");
    x
}

/// A task that marks its start and waits for the test's release.
fn gated((dir, i): (String, u64)) -> u64 {
    let dir = Path::new(&dir);
    let _ = std::fs::write(dir.join(format!("started-{i}-{}", std::process::id())), b"");
    let t0 = Instant::now();
    while !dir.join("release").exists() && t0.elapsed() < LONG {
        std::thread::sleep(Duration::from_millis(5));
    }
    i * 10
}

/// A task that kills its own worker (a poison task).
fn poison(x: u64) -> u64 {
    if x == 7 {
        let me = nix::unistd::getpid();
        let _ = nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGKILL);
    }
    x
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("multiproc-rpool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn s(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }

    /// (item, pid) of every start so far.
    fn starts(&self) -> Vec<(u64, i32)> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(&self.0).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let mut parts = n.split('-');
            if parts.next() == Some("started") {
                let i = parts.next().and_then(|x| x.parse().ok());
                let p = parts.next().and_then(|x| x.parse().ok());
                if let (Some(i), Some(p)) = (i, p) {
                    v.push((i, p));
                }
            }
        }
        v
    }

    /// Waits (bounded) until `n` starts are marked.
    fn wait_starts(&self, n: usize) -> Vec<(u64, i32)> {
        let t0 = Instant::now();
        loop {
            let s = self.starts();
            if s.len() >= n {
                return s;
            }
            assert!(
                t0.elapsed() < PATIENCE,
                "only {} of {n} tasks started: {s:?}",
                s.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn release(&self) {
        std::fs::write(self.0.join("release"), b"").unwrap();
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn builder(url: &str, name: &str) -> multiproc::redis::RedisPoolBuilder {
    let b = RedisPool::builder(url, name)
        .authkey(KEY)
        .claim_after(Duration::from_millis(600));
    // SAFETY: the workers take only their own locks (see tests/common).
    unsafe { b.allow_threads() }
}

/// A worker process (the same test binary, forked), as on another host.
fn remote_worker(url: &str, name: &str, key: &'static [u8]) -> multiproc::Process<'static> {
    let (url, name) = (url.to_owned(), name.to_owned());
    spawn(move || -> multiproc::Result<()> {
        Ok(RedisWorker::new(&url, &name)?.authkey(key).run()?)
    })
}

fn wait_workers(pool: &RedisPool, n: usize) {
    let t0 = Instant::now();
    while pool.workers().unwrap().len() < n {
        assert!(t0.elapsed() < PATIENCE, "workers did not come up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_local_pool_api_through_redis() {
    let _s = serial();
    let s = server();
    let mut pool = builder(&s.url(), "api").local_workers(2).build().unwrap();
    wait_workers(&pool, 2);
    let ws = pool.workers().unwrap();
    let mut pids: Vec<i32> = ws.iter().map(|w| w.pid as i32).collect();
    pids.sort();
    let mut local = pool.local_pids();
    local.sort();
    assert_eq!(pids, local);
    assert!(ws.iter().all(|w| !w.host.is_empty() && w.started_ms > 0));

    assert_eq!(
        pool.map(square, 0..100).unwrap(),
        (0..100).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(pool.map_chunked(square, 0..10, 3).unwrap()[9], 81);
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
    let got: Vec<u64> = pool.imap(square, 0..20).map(Result::unwrap).collect();
    assert_eq!(got, (0..20).map(|x| x * x).collect::<Vec<_>>());
    let mut un: Vec<u64> = pool
        .imap_unordered_chunked(square, 0..20, 3)
        .map(Result::unwrap)
        .collect();
    un.sort();
    assert_eq!(un, got);

    // Errors per task; callbacks.
    let e = pool.map(fail_on_three, 0..5).unwrap_err();
    assert!(e.to_string().contains("three is not allowed"), "{e}");
    // Where the worker panicked, as the local pool reports it.
    let at = format!("(at {}:{FAIL_LINE}:", file!());
    assert!(e.to_string().contains(&at), "{e}");
    let errs: Vec<bool> = pool.imap(fail_on_three, 0..5).map(|r| r.is_err()).collect();
    assert_eq!(errs, vec![false, false, false, true, false]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a, b) = (seen.clone(), seen.clone());
    let r = pool
        .apply_async(square, 5)
        .unwrap()
        .callback(move |v| a.lock().unwrap().push(format!("ok {v}")));
    let r2 = pool
        .apply_async(fail_on_three, 3)
        .unwrap()
        .error_callback(move |e| b.lock().unwrap().push(format!("err {e}")));
    assert_eq!(r.get_timeout(PATIENCE).unwrap(), 25);
    match r2.get_timeout(PATIENCE) {
        Err(RedisTaskError::TaskFailed(m)) => assert!(m.contains("three"), "{m}"),
        other => panic!("{other:?}"),
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&"ok 25".to_owned()), "{seen:?}");
    assert!(seen.iter().any(|m| m.contains("three")), "{seen:?}");

    pool.close();
    assert!(matches!(
        pool.apply_async(square, 1),
        Err(RedisTaskError::PoolClosed)
    ));
    pool.join_timeout(Some(PATIENCE)).unwrap();
    assert!(pool.local_pids().is_empty());
}

#[test]
fn a_worker_killed_mid_task_has_its_task_run_again_reported_once() {
    let _s = serial();
    let s = server();
    let d = Dir::new("killed");
    let mut pool = builder(&s.url(), "killed")
        .local_workers(2)
        .build()
        .unwrap();
    wait_workers(&pool, 2);
    let items: Vec<(String, u64)> = (0..4).map(|i| (d.s(), i)).collect();
    let r = pool.map_async_chunked(gated, items, 1).unwrap();
    let started = d.wait_starts(2);
    let (victim_item, victim) = started[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.release();
    assert_eq!(r.get_timeout(LONG).unwrap(), vec![0, 10, 20, 30]);
    // The victim's item ran twice (once killed), its result came once.
    let runs = d.starts().iter().filter(|(i, _)| *i == victim_item).count();
    assert_eq!(runs, 2, "{:?}", d.starts());
    pool.close();
    pool.join_timeout(Some(PATIENCE)).unwrap();
}

#[test]
fn a_whole_host_killed_loses_no_task() {
    let _s = serial();
    let s = server();
    let d = Dir::new("host");
    let url = s.url();
    // The "host": a process group of its own with two workers.
    let mut host = spawn(move || -> multiproc::Result<()> {
        nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0)).unwrap();
        let mut ws: Vec<_> = (0..2).map(|_| remote_worker(&url, "host", KEY)).collect();
        for w in &mut ws {
            let _ = w.join();
        }
        Ok(())
    });
    let host_pgid = host.pid().unwrap();
    let pool = builder(&s.url(), "host").build().unwrap();
    wait_workers(&pool, 2);
    let items: Vec<(String, u64)> = (0..6).map(|i| (d.s(), i)).collect();
    let r = pool.map_async_chunked(gated, items, 1).unwrap();
    d.wait_starts(2);
    // The host dies: every process of its group at once.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(host_pgid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = host.join();
    // Another host comes up later.
    let mut other = remote_worker(&s.url(), "host", KEY);
    d.release();
    let got = r.get_timeout(LONG).unwrap();
    assert_eq!(got, (0..6).map(|i| i * 10).collect::<Vec<_>>());
    pool.stop_workers().unwrap();
    assert!(other.join_timeout(PATIENCE).unwrap().is_some());
    // The killed host's workers are no longer listed once their beats age.
    let t0 = Instant::now();
    while !pool.workers().unwrap().is_empty() {
        assert!(t0.elapsed() < PATIENCE);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_caller_reattaches_and_recovers_every_result() {
    let _s = serial();
    let s = server();
    let d = Dir::new("caller");
    let mut w1 = remote_worker(&s.url(), "caller", KEY);
    let mut w2 = remote_worker(&s.url(), "caller", KEY);
    let (url, dir) = (s.url(), d.s());
    let mut caller = spawn(move || -> multiproc::Result<()> {
        let pool = RedisPool::builder(&url, "caller")
            .authkey(KEY)
            .claim_after(Duration::from_millis(600))
            .build()?;
        let items: Vec<(String, u64)> = (0..10).map(|i| (dir.clone(), i)).collect();
        let r = pool.map_async_chunked(gated, items, 2)?;
        std::fs::write(Path::new(&dir).join("submitted"), b"").unwrap();
        r.get()?;
        Ok(())
    });
    d.wait_starts(2);
    // (Workers may start the first tasks before the caller, back from the
    // submit, writes its mark: wait for it, within the bound.)
    assert!(eventually(PATIENCE, || d.0.join("submitted").exists()));
    caller.kill().unwrap();
    let _ = caller.join();
    d.release();
    let pool = RedisPool::attach(&s.url(), "caller").unwrap();
    let got = pool.recover::<u64>(LONG).unwrap();
    let mut by_index = BTreeMap::new();
    for r in got {
        assert!(
            by_index.insert(r.index, r.result.unwrap()).is_none(),
            "a result twice"
        );
    }
    assert_eq!(by_index, (0..10).map(|i| (i, i * 10)).collect());
    // Nothing more is left.
    assert!(pool.recover::<u64>(Duration::ZERO).unwrap().is_empty());
    pool.stop_workers().unwrap();
    assert!(w1.join_timeout(PATIENCE).unwrap().is_some());
    assert!(w2.join_timeout(PATIENCE).unwrap().is_some());
}

#[test]
fn redis_restarted_with_aof_loses_no_task() {
    let _s = serial();
    let mut s = LocalServer::start_persistent().unwrap();
    let d = Dir::new("aof");
    let mut w1 = remote_worker(&s.url(), "aof", KEY);
    let mut w2 = remote_worker(&s.url(), "aof", KEY);
    let pool = builder(&s.url(), "aof").build().unwrap();
    wait_workers(&pool, 2);
    let items: Vec<(String, u64)> = (0..6).map(|i| (d.s(), i)).collect();
    let r = pool.map_async_chunked(gated, items, 1).unwrap();
    d.wait_starts(2);
    s.restart().unwrap();
    d.release();
    assert_eq!(
        r.get_timeout(LONG).unwrap(),
        (0..6).map(|i| i * 10).collect::<Vec<_>>()
    );
    assert_eq!(pool.map(square, 0..10).unwrap()[3], 9);
    pool.stop_workers().unwrap();
    assert!(w1.join_timeout(PATIENCE).unwrap().is_some());
    assert!(w2.join_timeout(PATIENCE).unwrap().is_some());
}

#[test]
fn a_task_that_kills_every_worker_goes_to_the_dead_letter_stream() {
    let _s = serial();
    let s = server();
    let pool = builder(&s.url(), "poison")
        .max_deliveries(2)
        .build()
        .unwrap();
    let mut ws: Vec<_> = (0..3)
        .map(|_| remote_worker(&s.url(), "poison", KEY))
        .collect();
    let r = pool.map_async_chunked(poison, 0..10, 1).unwrap();
    // The whole map fails with the dead task's error, naming the attempts.
    let m = r.get_timeout(LONG).unwrap_err().to_string();
    assert!(
        m.contains("delivered 2 times") && m.contains("dead-letter"),
        "{m}"
    );
    pool.stop_workers().unwrap();
    for w in &mut ws {
        let _ = w.kill();
        let _ = w.join();
    }
}

#[test]
fn a_worker_with_another_authkey_refuses_tasks_without_running_them() {
    let _s = serial();
    let s = server();
    let pool = builder(&s.url(), "key").build().unwrap();
    let url = s.url();
    // The worker ends with `TaskRefused`, naming the signature.
    let mut w = spawn(move || {
        match RedisWorker::new(&url, "key")
            .unwrap()
            .authkey(b"another secret")
            .run()
        {
            Err(RedisError::TaskRefused(m)) => assert!(m.contains("signature"), "{m}"),
            other => panic!("expected TaskRefused, got {other:?}"),
        }
    });
    let e = pool
        .apply_async(square, 3)
        .unwrap()
        .get_timeout(LONG)
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("signature") && m.contains("MULTIPROC_AUTHKEY"),
        "{m}"
    );
    // The worker stopped rather than fail every task.
    let st = w.join_timeout(PATIENCE).unwrap().expect("the worker exits");
    assert!(st.success(), "{st:?}");
}

/// A task signed with the right key but made by another build (its
/// executable hash differs): the worker fails it with an error naming both
/// builds and stops, without calling the offsets it names (here: junk that
/// would crash it).
#[test]
fn a_task_from_another_build_is_refused_with_a_clear_error() {
    use hmac::{Hmac, KeyInit, Mac};
    let _s = serial();
    let s = server();
    let pool = builder(&s.url(), "build").build().unwrap();
    let mut t = vec![1u8];
    t.extend_from_slice(&42u64.to_le_bytes()); // job
    t.extend_from_slice(&0u64.to_le_bytes()); // first
    t.extend_from_slice(&1u32.to_le_bytes()); // count
    t.extend_from_slice(&[0xab; 32]); // another build
    t.extend_from_slice(&16u64.to_le_bytes()); // runner: junk
    t.extend_from_slice(&16u64.to_le_bytes()); // function: junk
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(KEY).unwrap();
    mac.update(&t);
    let m = mac.finalize().into_bytes().to_vec();
    let mut raw = redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let id: String = redis::cmd("XADD")
        .arg("multiproc:pool:{build}:tasks")
        .arg("*")
        .arg("t")
        .arg(t.as_slice())
        .arg("m")
        .arg(m.as_slice())
        .query(&mut raw)
        .unwrap();
    let mut w = remote_worker(&s.url(), "build", KEY);
    let st = w.join_timeout(PATIENCE).unwrap().expect("the worker stops");
    assert!(!st.success(), "{st:?}");
    let result: Vec<u8> = redis::cmd("HGET")
        .arg("multiproc:pool:{build}:results")
        .arg(&id)
        .query(&mut raw)
        .unwrap();
    let text = String::from_utf8_lossy(&result);
    assert!(
        text.contains("another build") && text.contains("abababab"),
        "{text}"
    );
    // A reattached caller sees it as that task's error.
    let got = pool.recover::<u64>(Duration::ZERO).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].job, got[0].index), (42, 0));
    let e = got[0].result.as_ref().unwrap_err().to_string();
    assert!(e.contains("another build"), "{e}");
}
