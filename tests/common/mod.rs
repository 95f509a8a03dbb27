//! Helpers shared by the integration tests: forking children from the test
//! harness's thread, and checking that none is left behind.
#![allow(dead_code)]
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

pub mod aio;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use multiproc::Process;
use multiproc::process::Scope;

static SERIAL: Mutex<()> = Mutex::new(());

/// Serializes the forking tests of one test binary. Under `cargo nextest`
/// every test has a process of its own and this costs nothing; under
/// `cargo test` the tests of a binary share a process and run on threads,
/// and a child forked while another test's thread holds some lock (stderr's,
/// the shared heap's) would inherit that lock held forever.
pub fn serial() -> Serial {
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Serial { _guard: guard }
}

/// Held for the length of a forking test; on drop checks that the test left
/// no child process behind.
pub struct Serial {
    _guard: MutexGuard<'static, ()>,
}

impl Drop for Serial {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_no_children();
        }
    }
}

/// Starts a child running `f`. The test harness runs tests on threads, so
/// this opts in to forking from a multithreaded process.
pub fn spawn<F, R>(f: F) -> Process<'static>
where
    F: FnOnce() -> R + 'static,
    R: multiproc::process::ChildResult,
{
    // SAFETY: the tests' children touch only shared objects made before the
    // fork, and stdout/stderr (whose locks `start` holds across the fork).
    // The harness's other threads (its main thread printing results, other
    // tests under `cargo test`) hold no other lock a child takes.
    // A daemon: if the test fails while the child still runs, dropping the
    // Process kills the child instead of waiting for it forever.
    let mut p = unsafe { Process::new(f).with_daemon(true).allow_threads() };
    p.start().expect("fork");
    p
}

/// [`spawn`] in a scope: `f` may borrow (the scope joins the child).
pub fn spawn_in<'scope, F, R>(s: &'scope Scope<'scope, '_>, f: F) -> Process<'scope>
where
    F: FnOnce() -> R + 'scope,
    R: multiproc::process::ChildResult,
{
    // SAFETY: as in `spawn`.
    let mut p = unsafe { s.process(f).with_daemon(true).allow_threads() };
    p.start().expect("fork");
    p
}

/// Joins `p` and asserts that it exited with code 0.
#[track_caller]
pub fn join_ok(p: &mut Process<'_>) {
    let st = p.join().expect("join");
    assert!(st.success(), "child {:?} ended with {:?}", p.pid(), st);
}

/// The pids of this process's children that exist (running or zombie).
pub fn children() -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let path = t.path().join("children");
            if let Ok(s) = std::fs::read_to_string(path) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

/// Fails if any child process (running or zombie) is left.
#[track_caller]
pub fn assert_no_children() {
    let left = children();
    assert!(left.is_empty(), "child processes left behind: {left:?}");
}

/// Polls `cond` every millisecond for at most `limit`; true once it holds.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// A generous bound for waits that should end at once: long enough never to
/// fire on a loaded 2-core machine, short enough that a hang fails the test.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Sleeps until killed (typed `()` so closures ending in it have a
/// `ChildResult`).
pub fn hang() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Opts `p` in to forking from the test harness's threads, for tests that
/// build a `Process` with options of their own.
pub fn allow<'a, T>(p: Process<'a, T>) -> Process<'a, T> {
    // SAFETY: as in `spawn`: the tests' children touch only shared objects
    // made before the fork and stdio, whose locks `start` holds across it.
    unsafe { p.allow_threads() }
}

/// Raises this process's soft limit on descriptors to `n` (or to the hard
/// limit, if lower); children forked afterwards inherit it.
pub fn raise_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur < n {
        lim.rlim_cur = n.min(lim.rlim_max);
        // SAFETY: setrlimit reads the struct we pass.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
}

/// A field of /proc/PID/status, in KiB.
pub fn status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The counter [`spin_ms`] counts itself in, set in pool workers by
/// [`note_busy`] (their initializer).
/// `b` with its server started by `method`: forked from this multithreaded
/// test process (the tests opt in), or spawned.
#[cfg(feature = "manager")]
pub fn manager_with_method(
    b: multiproc::manager::ManagerBuilder,
    method: multiproc::StartMethod,
) -> multiproc::manager::ManagerBuilder {
    match method {
        // SAFETY: the server child uses its own threads, the allocator and
        // the standard library only; the harness's threads hold none of
        // their locks across the fork (forking tests are serialized).
        multiproc::StartMethod::Fork => unsafe { b.start_method(method).allow_threads() },
        _ => b.start_method(method),
    }
}

/// A manager builder with the key `key` whose server is forked from this
/// test process.
#[cfg(feature = "manager")]
pub fn manager_builder(key: &[u8]) -> multiproc::manager::ManagerBuilder {
    manager_with_method(
        multiproc::manager::Manager::builder().authkey(key),
        multiproc::StartMethod::Fork,
    )
}

#[cfg(feature = "pool")]
static BUSY: std::sync::OnceLock<std::sync::Arc<multiproc::Value<u64>>> =
    std::sync::OnceLock::new();

/// A pool initializer: keeps the counter [`spin_ms`] counts itself in.
#[cfg(feature = "pool")]
pub fn note_busy(count: std::sync::Arc<multiproc::Value<u64>>) {
    let _ = BUSY.set(count);
}

/// A pool task: counts itself in, then spins (busy, never asleep) for `ms`.
#[cfg(feature = "pool")]
pub fn spin_ms(ms: u64) -> u64 {
    if let Some(c) = BUSY.get() {
        c.update(|n| *n += 1);
    }
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_millis(ms) {
        std::hint::spin_loop();
    }
    ms
}

/// Waits (at most 5 s) until the started `p` has ended, then reaps it
/// behind its handle's back with a `waitpid(-1)`, as another library's
/// reaper would. `Err` carries a child exit code naming the step that
/// failed (3: it did not end, 4: nothing was reaped).
pub fn reap_behind_its_back<T>(p: &Process<'_, T>) -> Result<(), i32> {
    let ended = multiproc::process::wait(&[p], Some(Duration::from_secs(5)))
        .map(|r| r.len())
        .ok();
    if ended != Some(1) {
        return Err(3);
    }
    // SAFETY: a plain waitpid with a null status pointer.
    if unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } <= 0 {
        return Err(4);
    }
    Ok(())
}

/// Runs `check` in a child of the test process (so that changing its
/// SIGCHLD disposition or reaping its children behind their handles' backs
/// touches nothing of the test harness) under a 10 s deadline: a `check`
/// that hangs or spins is killed and the test fails instead of hanging.
/// `check` returns 0 when all is well, another code to say what went wrong.
pub fn in_child(check: impl FnOnce() -> i32 + 'static) {
    let mut p = allow(
        Process::new(check)
            .with_deadline(Duration::from_secs(10))
            .with_daemon(true),
    );
    p.start().unwrap();
    let st = p.join_timeout(PATIENCE).unwrap();
    assert_eq!(
        st,
        Some(multiproc::ExitStatus::Exited(0)),
        "the check failed (-9: it hung until its deadline); {:?}",
        p.message()
    );
}
