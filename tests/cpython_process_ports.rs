#![allow(clippy::disallowed_methods)]
// not library code: raw calls allowed
// Behaviours ported from CPython's Lib/test/_test_multiprocessing.py (3.11), classes _TestProcess
// and _TestSubclassingProcess — © Python Software Foundation, PSF License; rewritten in Rust, no
// code copied.
//! Each test is named after the CPython test method whose behaviour it
//! checks, with a comment naming it. The children are real forked
//! processes; they report through shared objects made before the fork and
//! never print. The CPython tests left out are listed, with the reason, at
//! the end of this file.
//!
//! Waits that CPython makes without a bound are given `PATIENCE` here, so
//! that a bug fails a test instead of hanging it. Timings are only ever
//! checked from below.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{PATIENCE, eventually, hang, join_ok, serial, spawn, spawn_in};
use multiproc::process::{Scope, Waitable, wait};
use multiproc::signal::Signal;
use multiproc::{
    Array, Event, ExitStatus, Process, RawValue, Semaphore, active_children, current_process,
    parent_alive,
};

/// A few bytes sent from a child to its parent through shared memory.
struct Slot {
    buf: Array<u8>,
    len: RawValue<usize>,
}

impl Slot {
    const CAPACITY: usize = 256;

    fn new() -> Slot {
        Slot {
            buf: Array::zeroed(Self::CAPACITY).unwrap(),
            len: RawValue::new(0).unwrap(),
        }
    }

    fn put(&self, bytes: &[u8]) {
        assert!(bytes.len() <= Self::CAPACITY);
        self.buf.update(|b| b[..bytes.len()].copy_from_slice(bytes));
        self.len.store(bytes.len());
    }

    fn get(&self) -> Vec<u8> {
        let mut v = self.buf.to_vec();
        v.truncate(self.len.load());
        v
    }

    fn get_string(&self) -> String {
        String::from_utf8(self.get()).unwrap()
    }
}

/// A file in the temporary directory, removed on drop.
struct TempFile {
    path: std::path::PathBuf,
    file: File,
}

impl TempFile {
    fn new(tag: &str) -> TempFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "multiproc-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        TempFile { path, file }
    }

    fn contents(&self) -> String {
        let mut s = String::new();
        File::open(&self.path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// In a child: makes descriptor `target` (1 or 2) refer to `file`.
fn redirect(file: &File, target: i32) {
    // SAFETY: dup2 between two open descriptors of this process; it only
    // replaces `target`, which std's stdio handles use by number and own
    // no Rust object for.
    let r = unsafe { libc::dup2(file.as_raw_fd(), target) };
    assert!(r >= 0, "dup2 failed");
}

/// How a child breaks one of its standard streams.
#[derive(Clone, Copy, Debug)]
enum Broken {
    /// The descriptor is closed (writes fail with EBADF).
    Closed,
    /// The descriptor refers to /dev/full (writes fail with ENOSPC).
    Full,
}

/// In a child: breaks descriptor `fd` (1 or 2) as `how` says.
fn break_stream(fd: i32, how: Broken) {
    match how {
        Broken::Closed => {
            // SAFETY: closes a standard descriptor of this (child) process;
            // std's stdio handles treat a closed descriptor as a sink, and
            // no Rust object owns it.
            unsafe { libc::close(fd) };
        }
        Broken::Full => {
            let full = File::options().write(true).open("/dev/full").unwrap();
            redirect(&full, fd);
        }
    }
}

/// Writes `bytes` to stdout (1) or stderr (2) through std's handle, not
/// the `print!` macros (which the test harness may capture). On stdout a
/// text without a newline stays in the buffer for the flush at exit.
fn write_to(fd: i32, bytes: &[u8]) {
    let _ = match fd {
        1 => std::io::stdout().write_all(bytes),
        _ => std::io::stderr().write_all(bytes),
    };
}

// Ports _TestProcess.test_current.
#[test]
fn test_current() {
    let me = current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), std::process::id() as i32);
    assert!(!me.authkey().is_empty());
    // Asked again, the same identity and key.
    let again = current_process();
    assert_eq!(again.pid(), me.pid());
    assert_eq!(again.authkey(), me.authkey());
}

// Ports _TestProcess.test_daemon_argument.
#[test]
fn test_daemon_argument() {
    let _s = serial();
    // Not a daemon unless asked (Python inherits the creating process's
    // flag, which is false in a main process).
    assert!(!Process::new(|| ()).is_daemon());
    assert!(Process::new(|| ()).with_daemon(true).is_daemon());
    assert!(!Process::new(|| ()).with_daemon(false).is_daemon());
    // What the flag means: a daemon still running when its Process is
    // dropped is killed rather than waited for (the serial guard then
    // checks that it was reaped too).
    let p = spawn(hang);
    drop(p);
}

// Ports _TestProcess.test_args_argument (arguments are captured by the
// closure; the child sends back what it got).
#[cfg(feature = "spawn")]
#[test]
fn test_args_argument() {
    fn echo<T>(arg: T) -> T
    where
        T: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        // SAFETY: the child only serializes its captured value and writes
        // it to the report pipe.
        let mut p = unsafe {
            Process::with_result(move || arg)
                .with_daemon(true)
                .allow_threads()
        };
        p.start().unwrap();
        p.result().unwrap()
    }
    let _s = serial();
    assert_eq!(echo(1i32), 1);
    assert_eq!(echo(String::from("str")), "str");
    assert_eq!(echo(vec![1i32]), vec![1]);
    assert_eq!(echo((1i32,)), (1,));
    // Borrowed arguments work too: the child has a copy of the parent's
    // memory.
    let borrowed = vec![String::from("a"), String::from("b")];
    let r = &borrowed;
    multiproc::process::scope(|ps| {
        // SAFETY: as above.
        let mut p = unsafe {
            ps.process_with_result(move || r.join("+"))
                .with_daemon(true)
                .allow_threads()
        };
        p.start().unwrap();
        assert_eq!(p.result().unwrap(), "a+b");
    });
}

// Ports _TestProcess.test_process (positional and keyword arguments become
// captured values).
#[test]
fn test_process() {
    let _s = serial();
    let go = Event::new().unwrap();
    let (args, kwargs, name, authkey) = (Slot::new(), Slot::new(), Slot::new(), Slot::new());
    let pid = RawValue::new(0i32).unwrap();
    let (a, b) = (1, 2);
    let (hello, bye) = (23, 2.54);
    let current = current_process();

    multiproc::process::scope(|ps| {
        // SAFETY: the child touches only the shared objects above.
        let mut p = unsafe {
            ps.process(|| {
                let me = current_process();
                args.put(format!("{:?}", (a, b)).as_bytes());
                kwargs.put(format!("hello={hello} bye={bye}").as_bytes());
                name.put(me.name().as_bytes());
                authkey.put(me.authkey());
                pid.store(me.pid());
                // Stay alive until the parent has looked.
                go.wait_timeout(PATIENCE);
            })
            .with_name("SomeProcess")
            .with_daemon(true)
            .allow_threads()
        };

        assert!(!p.is_alive());
        assert!(p.is_daemon());
        assert_eq!(p.pid(), None);
        assert_eq!(p.exit_code(), None);
        assert!(active_children().is_empty());

        p.start().unwrap();
        let child = p.pid().unwrap();
        assert_eq!(p.exit_code(), None);
        assert!(p.is_alive());
        assert!(active_children().contains(&child));

        assert!(eventually(PATIENCE, || pid.load() != 0));
        assert_eq!(args.get_string(), "(1, 2)");
        assert_eq!(kwargs.get_string(), "hello=23 bye=2.54");
        assert_eq!(name.get_string(), p.name());
        assert_eq!(authkey.get(), current.authkey());
        assert_eq!(pid.load(), child);

        go.set();
        join_ok(&mut p);
        assert_eq!(p.exit_code(), Some(0));
        assert!(!p.is_alive());
        assert!(!active_children().contains(&child));
    })
}

// Ports _TestProcess.test_process_mainthread_native_id.
#[test]
fn test_process_mainthread_native_id() {
    let _s = serial();
    let tid = RawValue::new(0i32).unwrap();
    let pid = RawValue::new(0i32).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            // SAFETY: gettid takes no arguments and cannot fail.
            tid.store(unsafe { libc::gettid() });
            pid.store(std::process::id() as i32);
        });
        join_ok(&mut p);
        // The forking thread became the child's main thread: its id is the
        // child's pid, and differs from the parent's main thread's.
        assert_eq!(tid.load(), pid.load());
        assert_eq!(tid.load(), p.pid().unwrap());
        assert_ne!(tid.load(), std::process::id() as i32);
    })
}

// Ports _TestProcess.test_parent_process_attributes (the parent's pid; there
// is no parent name to compare).
#[test]
fn test_parent_process_attributes() {
    let _s = serial();
    // In a main process, the parent is whoever launched the program.
    assert_eq!(
        current_process().parent_pid(),
        std::os::unix::process::parent_id() as i32
    );
    let seen = RawValue::new(0i32).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || seen.store(current_process().parent_pid()));
        join_ok(&mut p);
        assert_eq!(seen.load(), current_process().pid());
        assert_eq!(seen.load(), std::process::id() as i32);
    })
}

// Ports _TestProcess.test_parent_process.
#[test]
fn test_parent_process() {
    let _s = serial();
    // 1: the parent is alive; 2: it is not.
    let first = RawValue::new(0u8).unwrap();
    let second = RawValue::new(0u8).unwrap();
    let reported = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut child = spawn_in(ps, || {
            multiproc::process::scope(|inner| {
                let mut grandchild = inner.process(|| {
                    first.store(if parent_alive() { 1 } else { 2 });
                    reported.set();
                    // Wait (boundedly) for the parent to go.
                    let t = Instant::now();
                    while parent_alive() && t.elapsed() < PATIENCE {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    second.store(if parent_alive() { 1 } else { 2 });
                });
                grandchild.start().unwrap();
                hang();
                drop(grandchild);
            })
        });
        assert!(reported.wait_timeout(PATIENCE));
        assert_eq!(first.load(), 1, "the grandchild saw its parent dead");
        child.terminate().unwrap();
        assert_eq!(child.join().unwrap().code(), -Signal::SIGTERM.as_raw());
        assert!(eventually(PATIENCE, || second.load() != 0));
        assert_eq!(
            second.load(),
            2,
            "the grandchild did not notice its parent died"
        );
    })
}

/// CPython's `_kill_process`: a sleeping child is stopped by `stop`; returns
/// its exit code.
fn kill_process(stop: fn(&mut Process<'static>) -> Result<(), multiproc::SignalError>) -> i32 {
    let mut p = spawn(hang);
    let pid = p.pid().unwrap();
    assert!(p.is_alive());
    assert!(active_children().contains(&pid));
    assert_eq!(p.exit_code(), None);

    // A zero timeout does not wait, and the child runs on.
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), None);
    assert!(p.is_alive());
    // A short timeout waits at least that long.
    let t = Instant::now();
    assert_eq!(p.join_timeout(Duration::from_millis(50)).unwrap(), None);
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(p.is_alive());

    stop(&mut p).unwrap();
    let status = p
        .join_timeout(PATIENCE)
        .unwrap()
        .expect("the child ended after the signal");
    assert!(!p.is_alive());
    assert!(!active_children().contains(&pid));
    // Joining again gives the same status.
    assert_eq!(p.join().unwrap(), status);
    assert_eq!(p.exit_code(), Some(status.code()));
    status.code()
}

// Ports _TestProcess.test_terminate.
#[test]
fn test_terminate() {
    let _s = serial();
    assert_eq!(kill_process(Process::terminate), -Signal::SIGTERM.as_raw());
}

// Ports _TestProcess.test_kill.
#[test]
fn test_kill() {
    let _s = serial();
    assert_eq!(kill_process(Process::kill), -Signal::SIGKILL.as_raw());
}

// Ports _TestProcess.test_active_children.
#[test]
fn test_active_children() {
    let _s = serial();
    let go = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        // SAFETY: the child only waits on the shared event.
        let mut p = unsafe {
            ps.process(|| {
                go.wait_timeout(PATIENCE);
            })
            .with_daemon(true)
            .allow_threads()
        };
        assert!(active_children().is_empty());
        p.start().unwrap();
        let pid = p.pid().unwrap();
        assert_eq!(active_children(), vec![pid]);
        go.set();
        join_ok(&mut p);
        assert!(!active_children().contains(&pid));
        assert!(active_children().is_empty());
    })
}

/// CPython's `_test_recursion`: records `id`, then (above depth 2) starts
/// two children one after the other, each recursing with its index
/// appended. Each child checks its name and parent.
fn recursion(log: &Array<u32>, next: &RawValue<usize>, id: &[u32]) -> Result<(), String> {
    // Each id as one number: its digits, plus one, in base 3.
    let code = id.iter().fold(0, |acc, d| acc * 3 + d + 1);
    log.set(next.fetch_add(1), code)
        .map_err(|e| e.to_string())?;
    multiproc::process::scope(|ps| {
        if id.len() < 2 {
            for i in 0..2 {
                let mut sub = id.to_vec();
                sub.push(i);
                let name = format!("recursion{sub:?}");
                let expected = name.clone();
                let parent = std::process::id() as i32;
                // SAFETY: the children touch only the shared log; at depth 0
                // this runs on a test thread, deeper in single-threaded children.
                let mut p = unsafe {
                    ps.process(move || {
                        let me = current_process();
                        if me.name() != expected || me.parent_pid() != parent {
                            return Err(format!("wrong identity {me:?} for {expected}"));
                        }
                        recursion(log, next, &sub)
                    })
                    .with_name(name)
                    .with_daemon(true)
                    .allow_threads()
                };
                p.start().map_err(|e| e.to_string())?;
                p.join_ok().map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })
}

// Ports _TestProcess.test_recursion.
#[test]
fn test_recursion() {
    let _s = serial();
    let log = Array::<u32>::zeroed(16).unwrap();
    let next = RawValue::new(0usize).unwrap();
    recursion(&log, &next, &[]).unwrap();
    let ids: Vec<u32> = log.to_vec()[..next.load()].to_vec();
    // [], [0], [0, 0], [0, 1], [1], [1, 0], [1, 1] in that encoding.
    assert_eq!(ids, vec![0, 1, 4, 5, 2, 7, 8]);
}

// Ports _TestProcess.test_sentinel (a process is waitable: ready once it
// ended).
#[test]
fn test_sentinel() {
    let _s = serial();
    let event = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        // SAFETY: the child only waits on the shared event.
        let mut p = unsafe {
            ps.process(|| {
                event.wait_timeout(Duration::from_secs(10));
            })
            .with_daemon(true)
            .allow_threads()
        };
        // Nothing to wait for before the start (Python raises ValueError).
        assert!(p.ready_fd().is_none());
        p.start().unwrap();
        assert!(p.ready_fd().is_some());
        assert!(wait(&[&p], Some(Duration::ZERO)).unwrap().is_empty());
        event.set();
        join_ok(&mut p);
        // Still ready after the join.
        assert_eq!(wait(&[&p], Some(PATIENCE)).unwrap(), vec![0]);
    })
}

// Ports _TestProcess.test_many_processes (and its kill variant).
#[test]
fn test_many_processes() {
    const N: usize = 100;
    let _s = serial();
    let mut procs: Vec<Process> = (0..N)
        .map(|_| spawn(|| std::thread::sleep(Duration::from_millis(10))))
        .collect();
    for p in &mut procs {
        let st = p.join_timeout(PATIENCE).unwrap().expect("the child ended");
        assert_eq!(st, ExitStatus::Exited(0));
        assert_eq!(p.exit_code(), Some(0));
    }

    for (sig, stop) in [
        (
            Signal::SIGTERM,
            Process::terminate as fn(&mut Process<'static>) -> Result<(), multiproc::SignalError>,
        ),
        (Signal::SIGKILL, Process::kill),
    ] {
        let mut procs: Vec<Process> = (0..N).map(|_| spawn(hang)).collect();
        // Let the children start.
        std::thread::sleep(Duration::from_millis(1));
        for p in &mut procs {
            stop(p).unwrap();
        }
        for p in &mut procs {
            let st = p.join_timeout(PATIENCE).unwrap().expect("the child ended");
            assert_eq!(st, ExitStatus::Signaled(sig));
            assert_eq!(p.exit_code(), Some(-sig.as_raw()));
        }
    }
}

/// The target of test_lose_target_ref: stores 5 when called.
struct DummyCallable;

impl DummyCallable {
    fn call(&self, out: &RawValue<i32>) {
        out.store(5);
    }
}

// Ports _TestProcess.test_lose_target_ref.
#[test]
fn test_lose_target_ref() {
    let _s = serial();
    let out = RawValue::new(0i32).unwrap();
    let go = Event::new().unwrap();
    let c = Arc::new(DummyCallable);
    let weak = Arc::downgrade(&c);
    let (out_ref, go_ref) = (&out, &go);
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, move || {
            go_ref.wait_timeout(PATIENCE);
            c.call(out_ref);
        });
        // As in Python, the parent lets go of the target once the child is
        // started, while the child still runs (and the Process is still
        // there).
        assert!(weak.upgrade().is_none(), "the parent kept the target");
        go.set();
        join_ok(&mut p);
        assert_eq!(out.load(), 5);
        drop(p);
    })
}

// Ports _TestProcess.test_error_on_stdio_flush_1: a process whose standard
// streams are broken can still start children, and they exit with 0.
#[test]
fn test_error_on_stdio_flush_1() {
    let _s = serial();
    for fd in [1, 2] {
        for how in [Broken::Closed, Broken::Full] {
            let evt = Event::new().unwrap();
            let grandchild_code = RawValue::new(-1i32).unwrap();
            multiproc::process::scope(|ps| {
                // The "parent" with broken streams is a child of the test, so
                // that the test's own streams stay intact.
                let mut parent = spawn_in(ps, || {
                    break_stream(fd, how);
                    // Unflushed output that the flush before the fork cannot
                    // write.
                    write_to(fd, b"lost");
                    multiproc::process::scope(|inner| {
                        let mut p = inner.process(|| evt.set());
                        if p.start().is_err() {
                            return 2;
                        }
                        match p.join() {
                            Ok(st) => grandchild_code.store(st.code()),
                            Err(_) => return 3,
                        }
                        0
                    })
                });
                join_ok(&mut parent);
            });
            assert!(evt.is_set(), "fd {fd} {how:?}");
            assert_eq!(grandchild_code.load(), 0, "fd {fd} {how:?}");
        }
    }
}

// Ports _TestProcess.test_error_on_stdio_flush_2: a child that breaks its
// own standard streams still exits with 0 (the flush at exit fails
// quietly).
#[test]
fn test_error_on_stdio_flush_2() {
    let _s = serial();
    for fd in [1, 2] {
        for how in [Broken::Closed, Broken::Full] {
            let evt = Event::new().unwrap();
            multiproc::process::scope(|ps| {
                let mut p = spawn_in(ps, || {
                    break_stream(fd, how);
                    write_to(fd, b"lost");
                    evt.set();
                });
                let st = p.join().unwrap();
                assert_eq!(st, ExitStatus::Exited(0), "fd {fd} {how:?}");
            });
            assert!(evt.is_set(), "fd {fd} {how:?}");
        }
    }
}

/// The child of test_subclassing's upper-caser: a server process with its
/// own methods, built around a `Process` (there are no subclasses in Rust).
struct UpperCaser<'a> {
    process: Process<'a>,
    chan: &'a Channel,
}

/// Where the upper-caser and its client exchange text: one request or
/// reply at a time.
struct Channel {
    text: Slot,
    request: Semaphore,
    reply: Semaphore,
    stop: RawValue<u8>,
}

impl<'a> UpperCaser<'a> {
    fn new(ps: &'a Scope<'a, '_>, chan: &'a Channel) -> UpperCaser<'a> {
        // SAFETY: the child touches only the shared channel.
        let process = unsafe {
            ps.process(move || {
                loop {
                    if !chan.request.acquire_timeout(PATIENCE) || chan.stop.load() != 0 {
                        break;
                    }
                    let s = chan.text.get_string();
                    chan.text.put(s.to_uppercase().as_bytes());
                    chan.reply.release().unwrap();
                }
            })
            .with_daemon(true)
            .allow_threads()
        };
        UpperCaser { process, chan }
    }

    fn submit(&self, s: &str) -> String {
        self.chan.text.put(s.as_bytes());
        self.chan.request.release().unwrap();
        assert!(self.chan.reply.acquire_timeout(PATIENCE), "no reply");
        self.chan.text.get_string()
    }

    fn stop(&self) {
        self.chan.stop.store(1);
        self.chan.request.release().unwrap();
    }
}

// Ports _TestSubclassingProcess.test_subclassing.
#[test]
fn test_subclassing() {
    let _s = serial();
    let chan = Channel {
        text: Slot::new(),
        request: Semaphore::new(0).unwrap(),
        reply: Semaphore::new(0).unwrap(),
        stop: RawValue::new(0u8).unwrap(),
    };
    multiproc::process::scope(|ps| {
        let mut uppercaser = UpperCaser::new(ps, &chan);
        uppercaser.process.start().unwrap();
        assert_eq!(uppercaser.submit("hello"), "HELLO");
        assert_eq!(uppercaser.submit("world"), "WORLD");
        uppercaser.stop();
        join_ok(&mut uppercaser.process);
    });
}

// Ports _TestSubclassingProcess.test_stderr_flush (what a child wrote
// before it failed is flushed when it ends, and its panic message reaches
// the parent).
#[test]
fn test_stderr_flush() {
    let _s = serial();
    let out = TempFile::new("stderr-flush");
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            redirect(&out.file, 1);
            redirect(&out.file, 2);
            // Buffered: no newline.
            write_to(1, b"before the failure");
            let zero = std::hint::black_box(0);
            let _ = 1 / zero; // MARKER
        });
        let st = p.join().unwrap();
        assert_eq!(st, ExitStatus::Exited(1));
        assert!(p.panicked());
        let msg = p.message().unwrap();
        assert!(msg.contains("divide by zero"), "message: {msg:?}");
        assert!(out.contents().contains("before the failure"));
    })
}

// Ports _TestSubclassingProcess.test_sys_exit (exit codes given to
// `process::exit` or returned; an error's text reaches the parent; what
// was written before `exit` is flushed).
#[test]
fn test_sys_exit() {
    let _s = serial();
    multiproc::process::scope(|ps| {
        for code in [0, 1, 8] {
            let mut p = spawn_in(ps, move || -> () { multiproc::process::exit(code) });
            assert_eq!(p.join().unwrap(), ExitStatus::Exited(code));
            let mut p = spawn_in(ps, move || code);
            assert_eq!(p.join().unwrap(), ExitStatus::Exited(code));
        }

        // A reason instead of a code: exit code 1, and the reason reaches the
        // parent.
        let mut p = spawn_in(ps, || -> Result<(), String> {
            // The error is also printed on stderr: keep it quiet.
            redirect(&File::options().write(true).open("/dev/null").unwrap(), 2);
            Err(String::from("ignore this"))
        });
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(1));
        assert_eq!(p.message().as_deref(), Some("ignore this"));
    });
    let out = TempFile::new("sys-exit");
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || -> () {
            redirect(&out.file, 1);
            write_to(1, b"[1, 2, 3]");
            multiproc::process::exit(1)
        });
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(1));
        assert_eq!(out.contents(), "[1, 2, 3]");
    })
}

// Ports the error-exit case of test_sys_exit under the broken stderr of
// test_error_on_stdio_flush_2: the child's error still reaches the parent
// when printing it to stderr fails (ENOSPC here). Regression test: the
// error used to be printed with `eprintln!`, which panicked instead.
#[test]
fn test_error_on_stdio_flush_2_error_exit() {
    let _s = serial();
    let mut p = spawn(|| -> Result<(), String> {
        break_stream(2, Broken::Full);
        Err(String::from("ignore this"))
    });
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(1));
    assert!(!p.panicked());
    assert_eq!(p.message().as_deref(), Some("ignore this"));
}

// Not ported:
// - test_set_executable: chooses the interpreter for the spawn start method;
//   multiproc only forks.
// - test_cpu_count: multiproc has no cpu_count (Rust's standard library has
//   std::thread::available_parallelism).
// - test_close: there is no close(); dropping the Process releases its
//   resources, and ownership rules out using it afterwards.
// - test_child_fd_inflation: CPython skips it for the fork start method
//   (a forked child inherits the parent's descriptors by design).
// - test_wait_for_threads: Rust has no non-daemon threads to wait for; a
//   child ends (with `_exit`) when its closure returns, and a closure that
//   starts threads joins them itself (std::thread::scope).
// - test_forkserver_sigint, test_forkserver_sigkill: no forkserver start
//   method.
// - The "threads" and "manager" variants of these tests, and anything about
//   pickling the target: children here are forks running closures.
