//! The small fork-based `Process`: exit codes, panics, joins, signals, and
//! forking safely while other threads print and allocate.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{PATIENCE, hang, join_ok, serial, spawn};
use multiproc::signal::Signal;
use multiproc::{ExitStatus, Process, Value};

fn boom() {
    panic!("on purpose");
}

fn exit_seven() {
    multiproc::process::exit(7);
}

#[test]
fn exit_codes_as_python_reports_them() {
    let _s = serial();
    let mut ok = spawn(|| ());
    let mut three = spawn(|| 3);
    let mut failed = spawn(|| -> Result<(), String> { Err("no".into()) });
    let mut panicked = spawn(boom);
    let mut exited = spawn(exit_seven);
    assert_eq!(ok.join().unwrap(), ExitStatus::Exited(0));
    assert_eq!(three.join().unwrap().code(), 3);
    assert_eq!(failed.join().unwrap().code(), 1);
    assert_eq!(panicked.join().unwrap().code(), 1);
    assert_eq!(exited.join().unwrap().code(), 7);
    // Joining again gives the same status.
    assert_eq!(three.join().unwrap().code(), 3);
    assert_eq!(three.exit_code(), Some(3));
}

#[test]
fn terminate_and_kill_give_minus_the_signal() {
    let _s = serial();
    let mut t = spawn(hang);
    let mut k = spawn(hang);
    assert!(t.is_alive());
    assert_eq!(t.exit_code(), None);
    assert!(t.join_timeout(Duration::from_millis(20)).unwrap().is_none());
    assert!(t.join_timeout(Duration::ZERO).unwrap().is_none());
    t.terminate().unwrap();
    k.kill().unwrap();
    assert_eq!(t.join().unwrap().code(), -Signal::SIGTERM.as_raw());
    assert_eq!(k.join().unwrap(), ExitStatus::Signaled(Signal::SIGKILL));
    assert!(!t.is_alive());
    // Once reaped, signalling is a no-op (the pid may be someone else's).
    t.kill().unwrap();
}

#[test]
fn start_twice_and_join_before_start_are_errors() {
    let _s = serial();
    // SAFETY: the child does nothing; no lock of another thread is touched.
    let mut p = unsafe { Process::new(|| ()).allow_threads() };
    assert!(matches!(p.join(), Err(multiproc::JoinError::NotStarted)));
    assert_eq!(p.exit_code(), None);
    assert!(!p.is_alive());
    p.start().unwrap();
    assert!(matches!(
        p.start(),
        Err(multiproc::StartError::AlreadyStarted)
    ));
    join_ok(&mut p);
}

#[test]
fn forking_from_a_threaded_process_is_refused_without_opt_in() {
    // The test harness runs this on a thread of its own, so there are at
    // least two threads.
    let mut p = Process::new(|| ());
    match p.start() {
        Err(multiproc::StartError::ThreadedFork { threads }) => assert!(threads >= 2),
        other => panic!("expected ThreadedFork, got {other:?}"),
    }
    assert!(p.pid().is_none());
}

// The parent drops its copy of the closure at `start` (as Python does), so
// a shared object moved into the child is freed in the parent while the
// child still uses it: the shared heap's quarantine keeps its slot from
// being handed out again until the child is gone.
#[test]
fn moved_objects_stay_allocated_while_the_child_runs() {
    let _s = serial();
    let moved = Value::new(5u64).unwrap();
    let addr = moved.as_mutex() as *const _ as usize;
    let go = std::sync::Arc::new(multiproc::Event::new().unwrap());
    let mut p = spawn({
        let go = go.clone();
        move || {
            let moved = moved; // moved into the child
            go.wait();
            if moved.get() == 5 { 1 } else { 2 }
        }
    });
    // The parent's copy of `moved` was freed at `start`; a new object must
    // not take its slot while the child runs.
    let fresh: Vec<_> = (0..100).map(|_| Value::new(9u64).unwrap()).collect();
    assert!(
        fresh
            .iter()
            .all(|v| v.as_mutex() as *const _ as usize != addr)
    );
    go.set();
    assert_eq!(
        p.join().unwrap().code(),
        1,
        "the child saw its value intact"
    );
}

#[test]
fn fork_while_other_threads_print_and_allocate() {
    let _s = serial();
    // Other threads hold stdout's lock and the shared heap's lock often; a
    // child forked at such a moment must still print and exit.
    let stop = AtomicBool::new(false);
    // Stops the helper threads however the test ends, so that a failure is
    // reported instead of the scope waiting for them forever.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "printer line {n}");
                n += 1;
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let v: Vec<_> = (0..64).map(|i| Value::new(i as u32).unwrap()).collect();
                drop(v);
            }
        });
        let _stop = StopOnDrop(&stop);
        for round in 0..200 {
            let mut p = spawn(move || {
                println!("child {round} says hello");
                let v = Value::new(round as u64).unwrap();
                assert_eq!(v.get(), round as u64);
            });
            let st = p.join_timeout(PATIENCE).unwrap();
            assert!(
                st.is_some(),
                "child {round} hung (a lock copied held into it?)"
            );
            assert!(st.unwrap().success());
        }
    });
}

#[test]
fn many_start_join_cycles_leave_no_zombies() {
    let _s = serial();
    for _ in 0..500 {
        let mut p = spawn(|| ());
        join_ok(&mut p);
    }
    // Dropped without join: joined by the drop.
    for _ in 0..100 {
        let _ = spawn(|| ());
    }
    common::assert_no_children();
}

/// The `n`th real-time signal.
fn rt(n: i32) -> Signal {
    Signal::from_raw(libc::SIGRTMIN() + n).expect("a real-time signal")
}

#[test]
fn real_time_signals_reach_the_child_and_its_status() {
    let _s = serial();
    // Default action of a real-time signal: the process ends. Sent through
    // the pidfd, reported as that signal (not an exit code 128 + n).
    let mut p = spawn(hang);
    p.signal(rt(3)).unwrap();
    assert_eq!(p.join().unwrap(), ExitStatus::Signaled(rt(3)));
    assert_eq!(p.exit_code(), Some(-(libc::SIGRTMIN() + 3)));
    // Reaped by `active_children` (waitpid by pid), then joined.
    let mut q = spawn(hang);
    q.signal(rt(4)).unwrap();
    let ended = multiproc::process::wait(&[&q], Some(PATIENCE)).unwrap();
    assert_eq!(ended, vec![0], "the child did not end");
    assert!(!multiproc::process::active_children().contains(&q.pid().unwrap()));
    assert_eq!(q.join().unwrap(), ExitStatus::Signaled(rt(4)));
    // Its process group too.
    // SAFETY: as in `common::spawn`: the child only sleeps.
    let mut g = unsafe {
        Process::new(hang)
            .with_new_group(true)
            .with_daemon(true)
            .allow_threads()
    };
    g.start().unwrap();
    g.signal_group(rt(5)).unwrap();
    assert_eq!(g.join().unwrap(), ExitStatus::Signaled(rt(5)));
}

#[cfg(feature = "signals")]
#[test]
fn a_child_that_handles_a_real_time_signal_sees_it() {
    let _s = serial();
    let ready = std::sync::Arc::new(multiproc::Event::new().unwrap());
    let mut p = spawn({
        let ready = ready.clone();
        move || {
            let stop = multiproc::signal::StopRequest::on(&[rt(2)]).unwrap();
            ready.set();
            if stop.wait_timeout(PATIENCE) { 42 } else { 1 }
        }
    });
    assert!(ready.wait_timeout(PATIENCE), "the child never got ready");
    p.signal(rt(2)).unwrap();
    assert_eq!(p.join().unwrap().code(), 42);
}
