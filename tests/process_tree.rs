//! Process features beyond Python's: panics and values carried back,
//! identity, reaping, process groups, death with the parent, deadlines,
//! fail-fast groups, reparent detection, signals, waiting on many.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::time::{Duration, Instant};

use common::{PATIENCE, allow, eventually, hang, join_ok, serial, spawn, spawn_in};
use multiproc::process::wait;
use multiproc::signal::Signal;
use multiproc::signal::{StopRequest, ignore_terminate};
use multiproc::{
    Error, Event, ExitStatus, Process, ProcessGroup, RawValue, active_children, current_process,
    parent_alive,
};

/// Whether `pid` is gone or a zombie (dead, perhaps not yet reaped by
/// whoever adopted it).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn boom() {
    panic!("the answer is {}", 42);
}

#[test]
fn panic_message_reaches_the_parent() {
    let _s = serial();
    let mut p = spawn(boom);
    assert_eq!(p.join().unwrap().code(), 1);
    assert!(p.panicked());
    assert_eq!(p.message().as_deref(), Some("the answer is 42"));
    match p.join_ok() {
        Err(multiproc::JoinOkError::ChildFailed {
            status, message, ..
        }) => {
            assert_eq!(status, ExitStatus::Exited(1));
            assert_eq!(message.as_deref(), Some("the answer is 42"));
        }
        other => panic!("expected ChildFailed, got {other:?}"),
    }
    let mut e = spawn(|| -> Result<(), String> { Err("disk full".into()) });
    assert_eq!(e.join().unwrap().code(), 1);
    assert!(!e.panicked());
    assert_eq!(e.message().as_deref(), Some("disk full"));
    let mut ok = spawn(|| ());
    join_ok(&mut ok);
    assert_eq!(ok.message(), None);
}

#[cfg(feature = "spawn")]
#[test]
fn children_return_values() {
    let _s = serial();
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Partial {
        chunk: u32,
        sum: f64,
    }
    let mut kids: Vec<Process<'_, Partial>> = (0..3)
        .map(|i| {
            let mut p = allow(Process::with_result(move || Partial {
                chunk: i,
                sum: (0..1000).map(|k| (k * (i + 1)) as f64).sum(),
            }));
            p.start().unwrap();
            p
        })
        .collect();
    for (i, p) in kids.iter_mut().enumerate() {
        let r = p.result().unwrap();
        assert_eq!(r.chunk, i as u32);
        assert_eq!(r.sum, 499_500.0 * (i + 1) as f64);
    }
    // A result far larger than a pipe's buffer: the parent reads while it
    // waits, so the child is not stuck in its write.
    let mut big = allow(Process::with_result(|| vec![7u8; 4 << 20]));
    big.start().unwrap();
    let v = big.result().unwrap();
    assert_eq!(v.len(), 4 << 20);
    assert!(v.iter().all(|&b| b == 7));
    // A child that panics instead of returning.
    let mut bad = allow(Process::with_result(|| -> u32 {
        boom();
        0
    }));
    bad.start().unwrap();
    assert!(
        matches!(bad.result(), Err(multiproc::ResultError::ChildFailed { message: Some(m), .. }) if m.contains("42"))
    );
}

#[test]
fn identity_and_authkey() {
    let _s = serial();
    let me = current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), std::process::id() as i32);
    assert_eq!(me.authkey().len(), 32);
    let seen_ok = RawValue::new(0u8).unwrap();
    let custom = RawValue::new(0u8).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = allow(
            ps.process(|| {
                let c = current_process();
                seen_ok.store(u8::from(
                    c.name() == "worker-7"
                        && c.pid() == std::process::id() as i32
                        && c.parent_pid() == me.pid()
                        && c.authkey() == me.authkey()
                        && parent_alive(),
                ));
            })
            .with_name("worker-7"),
        );
        p.start().unwrap();
        join_ok(&mut p);
        assert!(seen_ok.load() != 0, "the child saw the wrong identity");
        let mut q = allow(
            ps.process(|| custom.store(u8::from(current_process().authkey() == b"sesame")))
                .with_authkey(&b"sesame"[..]),
        );
        q.start().unwrap();
        join_ok(&mut q);
        assert!(custom.load() != 0);
        // The parent's own identity did not change.
        assert_eq!(current_process().name(), "MainProcess");
    })
}

#[test]
fn active_children_reaps_and_join_still_reports() {
    let _s = serial();
    let mut quick = spawn(|| 4);
    let mut slow = spawn(hang);
    let qpid = quick.pid().unwrap();
    // Eventually the quick one is reaped by active_children.
    assert!(eventually(PATIENCE, || {
        let a = active_children();
        !a.contains(&qpid) && a.contains(&slow.pid().unwrap())
    }));
    assert!(dead(qpid));
    assert_eq!(quick.join().unwrap().code(), 4, "status kept for join");
    slow.kill().unwrap();
    assert_eq!(slow.join().unwrap().code(), -9);
    assert!(active_children().is_empty());
}

#[test]
fn ten_thousand_start_join_cycles_leave_no_defunct_child() {
    let _s = serial();
    for _ in 0..10_000 {
        let mut p = spawn(|| ());
        join_ok(&mut p);
    }
    common::assert_no_children();
    assert!(active_children().is_empty());
}

#[test]
fn children_die_when_their_parent_is_sigkilled() {
    let _s = serial();
    let grandchild = RawValue::new(0i32).unwrap();
    multiproc::process::scope(|ps| {
        let mut middle = spawn_in(ps, || {
            // Single-threaded here: no opt-in needed.
            let mut c = Process::new(hang).with_die_with_parent(true);
            c.start().unwrap();
            grandchild.store(c.pid().unwrap());
            hang();
            drop(c);
        });
        assert!(eventually(PATIENCE, || grandchild.load() != 0));
        let g = grandchild.load();
        assert!(!dead(g));
        middle.kill().unwrap();
        middle.join().unwrap();
        let t = Instant::now();
        assert!(
            eventually(Duration::from_secs(1), || dead(g)),
            "the grandchild outlived its SIGKILLed parent by 1 s"
        );
        eprintln!("grandchild died {:?} after its parent", t.elapsed());
    })
}

#[test]
fn a_group_is_signalled_as_a_whole() {
    let _s = serial();
    let pids = multiproc::Array::<i32>::zeroed(2).unwrap();
    multiproc::process::scope(|ps| {
        let mut leader = allow(
            ps.process(|| {
                let mut kids: Vec<_> = (0..2).map(|_| Process::new(hang)).collect();
                for (i, k) in kids.iter_mut().enumerate() {
                    k.start().unwrap();
                    pids.set(i, k.pid().unwrap()).unwrap();
                }
                hang();
                drop(kids);
            })
            .with_new_group(true)
            .with_daemon(true),
        );
        leader.start().unwrap();
        assert!(eventually(PATIENCE, || pids
            .to_vec()
            .iter()
            .all(|&p| p != 0)));
        let kids = pids.to_vec();
        assert!(kids.iter().all(|&p| !dead(p)));
        leader.signal_group(Signal::SIGKILL).unwrap();
        assert_eq!(leader.join().unwrap().code(), -9);
        assert!(eventually(PATIENCE, || kids.iter().all(|&p| dead(p))));
        let mut plain = spawn_in(ps, || ());
        assert!(matches!(
            plain.signal_group(Signal::SIGTERM),
            Err(multiproc::SignalError::NoGroup)
        ));
        join_ok(&mut plain);
    })
}

#[test]
fn a_deadline_kills_a_process_that_runs_too_long() {
    let _s = serial();
    let mut late = allow(Process::new(hang).with_deadline(Duration::from_millis(100)));
    let t = Instant::now();
    late.start().unwrap();
    let st = late
        .join_timeout(PATIENCE)
        .unwrap()
        .expect("deadline enforced");
    assert_eq!(st, ExitStatus::Signaled(Signal::SIGKILL));
    assert!(t.elapsed() >= Duration::from_millis(100));
    // One that ends in time is not disturbed.
    let mut quick = allow(Process::new(|| 0).with_deadline(Duration::from_secs(30)));
    quick.start().unwrap();
    join_ok(&mut quick);
}

#[test]
fn fail_fast_group_stops_the_rest_when_one_fails() {
    let _s = serial();
    let mut g = ProcessGroup::new();
    for _ in 0..2 {
        g.push(allow(Process::new(hang)));
    }
    let failing = g.push(allow(
        Process::new(|| {
            std::thread::sleep(Duration::from_millis(30));
            3
        })
        .with_name("failing"),
    ));
    match g.run_fail_fast() {
        Err(multiproc::GroupError::ChildFailed {
            index,
            name,
            status,
            ..
        }) => {
            assert_eq!(index, failing);
            assert_eq!(name, "failing");
            assert_eq!(status, ExitStatus::Exited(3));
        }
        other => panic!("expected ChildFailed, got {other:?}"),
    }
    let st = g.join_all().unwrap();
    assert_eq!(st[failing], Some(ExitStatus::Exited(3)));
    assert_eq!(st[0], Some(ExitStatus::Signaled(Signal::SIGTERM)));
    assert_eq!(st[1], Some(ExitStatus::Signaled(Signal::SIGTERM)));
    // All succeed: all statuses come back.
    let mut ok = ProcessGroup::new();
    for _ in 0..3 {
        ok.push(allow(Process::new(|| 0)));
    }
    assert_eq!(ok.run_fail_fast().unwrap(), vec![ExitStatus::Exited(0); 3]);
}

#[test]
fn a_child_learns_that_its_parent_is_gone() {
    let _s = serial();
    let noticed = RawValue::new(0u8).unwrap();
    let started = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut middle = spawn_in(ps, || {
            multiproc::process::scope(|inner| {
                let mut c = inner.process(|| {
                    assert!(parent_alive());
                    started.set();
                    while parent_alive() {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    noticed.store(1);
                });
                c.start().unwrap();
                hang();
                drop(c);
            })
        });
        assert!(started.wait_timeout(PATIENCE));
        middle.kill().unwrap();
        middle.join().unwrap();
        assert!(eventually(PATIENCE, || noticed.load() != 0));
    })
}

#[test]
fn wait_on_several_processes() {
    let _s = serial();
    let go = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut a = spawn_in(ps, hang);
        let mut b = spawn_in(ps, || go.wait());
        let mut c = spawn_in(ps, hang);
        assert!(
            wait(&[&a, &b, &c], Some(Duration::from_millis(30)))
                .unwrap()
                .is_empty()
        );
        go.set();
        assert_eq!(wait(&[&a, &b, &c], Some(PATIENCE)).unwrap(), vec![1]);
        let unstarted = ps.process(|| ());
        assert!(matches!(
            wait(&[&a, &unstarted], Some(Duration::ZERO)),
            Err(multiproc::process::WaitError::NotStarted { index: 1 })
        ));
        join_ok(&mut b);
        a.kill().unwrap();
        c.kill().unwrap();
        a.join().unwrap();
        c.join().unwrap();
    })
}

#[test]
fn ignoring_sigterm_leaves_only_sigkill() {
    let _s = serial();
    let ready = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            ignore_terminate().unwrap();
            ready.set();
            hang();
        });
        assert!(ready.wait_timeout(PATIENCE));
        p.terminate().unwrap();
        assert!(
            p.join_timeout(Duration::from_millis(100))
                .unwrap()
                .is_none()
        );
        p.kill().unwrap();
        assert_eq!(p.join().unwrap(), ExitStatus::Signaled(Signal::SIGKILL));
    })
}

#[test]
fn a_stop_request_ends_the_work_cleanly() {
    let _s = serial();
    let ready = Event::new().unwrap();
    let work = RawValue::new(0u64).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            let stop = StopRequest::install().unwrap();
            ready.set();
            while !stop.requested() {
                work.fetch_add(1);
                std::thread::sleep(Duration::from_millis(1));
            }
            // Clean shutdown: a chosen exit code.
            5
        });
        assert!(ready.wait_timeout(PATIENCE));
        assert!(eventually(PATIENCE, || work.load() > 0));
        p.terminate().unwrap();
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(5));
    })
}

#[test]
fn a_stop_request_on_a_signal_that_cannot_be_caught_is_refused_not_a_panic() {
    let _s = serial();
    // In a child: were a handler installed, this process keeps it.
    common::in_child(|| {
        for sig in [
            Signal::SIGKILL,
            Signal::SIGSTOP,
            Signal::SIGILL,
            Signal::SIGFPE,
            Signal::SIGSEGV,
        ] {
            // Listed after a catchable signal: checked before any install.
            match std::panic::catch_unwind(|| StopRequest::on(&[Signal::SIGUSR1, sig])) {
                Ok(Err(multiproc::signal::HandlerError::Refused { signal })) if signal == sig => {}
                Ok(other) => {
                    eprintln!("{sig}: {other:?}");
                    return 1;
                }
                Err(_) => {
                    eprintln!("{sig}: panicked");
                    return 2;
                }
            }
        }
        // Nothing was installed for SIGUSR1: its default action ends us.
        let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
        // SAFETY: a query (no new action); `old` is valid for the write.
        if unsafe { libc::sigaction(libc::SIGUSR1, std::ptr::null(), old.as_mut_ptr()) } != 0 {
            return 3;
        }
        // SAFETY: written by the successful call above.
        if unsafe { old.assume_init() }.sa_sigaction != libc::SIG_DFL {
            return 4;
        }
        // `?` in a `multiproc::Result` function: an invalid argument.
        let coarse: Error = StopRequest::on(&[Signal::SIGKILL]).unwrap_err().into();
        if !matches!(coarse, Error::InvalidArgument(_)) {
            return 5;
        }
        0
    });
}

#[test]
fn an_unknown_start_method_is_named_in_its_error() {
    let e = multiproc::process::get_context("forkserver").unwrap_err();
    assert_eq!(e.name, "forkserver");
    assert!(e.to_string().contains("\"forkserver\""), "{e}");
    let coarse: Error = e.into();
    assert!(matches!(coarse, Error::InvalidArgument(_)), "{coarse:?}");
}

#[test]
fn the_sigchld_reaper_leaves_no_zombie() {
    let _s = serial();
    multiproc::process::start_reaper().unwrap();
    multiproc::process::start_reaper().unwrap(); // a second call does nothing
    let mut kids: Vec<_> = (0..5).map(|i| spawn(move || i)).collect();
    let pids: Vec<i32> = kids.iter().map(|k| k.pid().unwrap()).collect();
    // Nobody joins: the reaper must reap them (gone from /proc entirely,
    // not zombies).
    assert!(eventually(PATIENCE, || pids
        .iter()
        .all(|p| { std::fs::metadata(format!("/proc/{p}")).is_err() })));
    for (i, k) in kids.iter_mut().enumerate() {
        assert_eq!(k.join().unwrap().code(), i as i32, "status kept for join");
    }
}

#[test]
fn group_and_result_errors_name_the_call_and_convert_into_error() {
    let _s = serial();
    // A process that may not fork here (the harness has threads, and it
    // did not opt in) is named by its index.
    let mut g = ProcessGroup::new();
    g.push(allow(Process::new(hang).with_daemon(true)));
    let refused = g.push(Process::new(|| ()));
    match g.start() {
        Err(multiproc::GroupError::Start {
            index,
            source: multiproc::StartError::ThreadedFork { .. },
        }) => assert_eq!(index, refused),
        other => panic!("expected a start error, got {other:?}"),
    }
    g.kill_all().unwrap();
    let st = g.join_all().unwrap();
    assert_eq!(
        st,
        vec![
            Some(ExitStatus::Signaled(multiproc::signal::Signal::SIGKILL)),
            None
        ]
    );
    // `?` still reaches the coarse error.
    fn coarse(g: &mut ProcessGroup<'_>) -> multiproc::Result<()> {
        g.start()?;
        Ok(())
    }
    assert!(matches!(coarse(&mut g), Err(Error::ThreadedFork { .. })));
    // `result` of a process never started.
    let mut p = Process::with_result(|| 1u32);
    assert!(matches!(
        p.result(),
        Err(multiproc::ResultError::NotStarted)
    ));
    fn coarse_result(p: &mut Process<'_, u32>) -> multiproc::Result<u32> {
        Ok(p.result()?)
    }
    assert!(matches!(coarse_result(&mut p), Err(Error::NotStarted)));
}
