//! Issue 11's process holes, with real processes: scoped processes are
//! joined whatever the caller does, the parent drops its copy of the closure
//! at `start`, a child reaped by someone else is reported at once, default
//! names are numbered as Python numbers them, and closures that never
//! return are accepted.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::time::Duration;

use common::{PATIENCE, allow, in_child, join_ok, reap_behind_its_back, serial, spawn};
use multiproc::process::{current_process, wait};
use multiproc::{Connection, Event, ExitStatus, Process, RawValue};

/// In a child made by `in_child`: what a `Process` reaped by someone else
/// reports. 0 if every call answers at once with `ReapedElsewhere`.
fn check_reaped_elsewhere(p: &mut Process<'static>) -> i32 {
    let t = std::time::Instant::now();
    if !matches!(p.join(), Err(multiproc::JoinError::ReapedElsewhere { .. })) {
        return 10;
    }
    // Asked again: the same answer.
    if !matches!(p.join(), Err(multiproc::JoinError::ReapedElsewhere { .. })) {
        return 11;
    }
    if !matches!(
        p.join_timeout(Duration::from_secs(5)),
        Err(multiproc::JoinError::ReapedElsewhere { .. })
    ) {
        return 12;
    }
    if p.is_alive() {
        return 13;
    }
    if p.exit_code().is_some() {
        return 14;
    }
    if t.elapsed() > Duration::from_secs(2) {
        return 15;
    }
    0
}

#[test]
fn join_after_a_waitpid_minus_one_elsewhere_returns_at_once() {
    let _s = serial();
    in_child(|| {
        let mut p = Process::new(|| ());
        if p.start().is_err() {
            return 2;
        }
        if let Err(code) = reap_behind_its_back(&p) {
            return code;
        }
        let code = check_reaped_elsewhere(&mut p);
        drop(p); // must not hang either
        code
    });
}

#[test]
fn join_with_sigchld_ignored_returns_once_the_child_ended() {
    let _s = serial();
    in_child(|| {
        // SAFETY: sets a signal disposition of this (single-threaded) child.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        let go = std::sync::Arc::new(Event::new().unwrap());
        let mut p = Process::new({
            let go = go.clone();
            move || {
                go.wait_timeout(Duration::from_secs(5));
            }
        });
        if p.start().is_err() {
            return 2;
        }
        // The kernel reaps it the moment it ends.
        go.set();
        let code = check_reaped_elsewhere(&mut p);
        drop(p);
        code
    });
}

#[test]
fn join_after_another_reaper_thread_returns_at_once() {
    let _s = serial();
    in_child(|| {
        let go = std::sync::Arc::new(Event::new().unwrap());
        let mut p = Process::new({
            let go = go.clone();
            move || {
                go.wait_timeout(Duration::from_secs(5));
            }
        });
        if p.start().is_err() {
            return 2;
        }
        // Another library's reaper: blocks in waitpid(-1) and reaps
        // whatever ends.
        let reaper = std::thread::spawn(|| {
            // SAFETY: a plain waitpid with a null status pointer.
            unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) }
        });
        go.set();
        if reaper.join().unwrap() <= 0 {
            return 4;
        }
        let code = check_reaped_elsewhere(&mut p);
        drop(p);
        code
    });
}

/// Starts in scope `s` a child that waits for `go`, then for long enough
/// that a scope that does not wait for it returns first, and sets `done`;
/// forgets its handle and sets `go`.
fn start_and_forget_a_slow_child<'s>(
    s: &'s multiproc::process::Scope<'s, '_>,
    go: &'s Event,
    done: &'s RawValue<u8>,
) {
    let mut p = allow(s.process(|| {
        assert!(go.wait_timeout(PATIENCE));
        std::thread::sleep(Duration::from_millis(100));
        done.store(1);
    }));
    p.start().unwrap();
    std::mem::forget(p);
    go.set();
}

#[test]
fn a_forgotten_scoped_process_is_joined_by_its_scope() {
    let _s = serial();
    let go = Event::new().unwrap();
    let done = RawValue::new(0u8).unwrap();
    multiproc::process::scope(|s| start_and_forget_a_slow_child(s, &go, &done));
    assert!(
        done.load() != 0,
        "the scope returned before its child ended"
    );
    // And it was reaped (the serial guard checks no child is left).
}

#[test]
fn a_scope_whose_closure_panics_still_joins_its_processes() {
    let _s = serial();
    let go = Event::new().unwrap();
    let done = RawValue::new(0u8).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        multiproc::process::scope(|s| {
            start_and_forget_a_slow_child(s, &go, &done);
            panic!("the scope's closure panics");
        })
    }));
    assert!(r.is_err());
    assert!(done.load() != 0, "the scope unwound before its child ended");
}

#[test]
fn a_scoped_group_runs_borrowing_processes_fail_fast() {
    let _s = serial();
    let seen = RawValue::new(0u32).unwrap();
    let limit = 2u32;
    multiproc::process::scope(|s| {
        let mut group = multiproc::ProcessGroup::new();
        group.push(allow(s.process(|| {
            seen.fetch_add(1);
        })));
        group.push(allow(s.process(|| if limit == 2 { 7 } else { 0 })));
        let err = group.run_fail_fast().unwrap_err();
        assert!(matches!(
            err,
            multiproc::GroupError::ChildFailed {
                status: ExitStatus::Exited(7),
                ..
            }
        ));
    });
}

#[test]
fn scoped_processes_keep_the_builder_options_and_return_values() {
    let _s = serial();
    let data: Vec<u64> = (1..=3).collect();
    multiproc::process::scope(|s| {
        let mut p = allow(
            s.process(|| {
                if current_process().name() == "summer" && data.len() == 3 {
                    0
                } else {
                    1
                }
            })
            .with_name("summer")
            .with_daemon(true)
            .with_deadline(PATIENCE),
        );
        p.start().unwrap();
        join_ok(&mut p);
        #[cfg(feature = "spawn")]
        {
            let mut q = allow(s.process_with_result(|| data.iter().sum::<u64>()));
            q.start().unwrap();
            assert_eq!(q.result().unwrap(), 6);
        }
    });
}

#[test]
fn a_child_cannot_start_processes_in_its_parents_scope() {
    let _s = serial();
    multiproc::process::scope(|s| {
        let mut p = allow(s.process(|| {
            let mut q = s.process(|| ());
            match q.start() {
                Err(multiproc::StartError::InvalidArgument(_)) => 0,
                _ => 1,
            }
        }));
        p.start().unwrap();
        join_ok(&mut p);
    });
}

/// Python's idiom: start the children, close the parent's write ends,
/// read from each reader until it reports end of stream. Each child owns
/// its write end (moved into its closure); the parent must not keep a copy.
fn readers_see_end_of_stream(
    pipe: fn(bool) -> Result<(Connection, Connection), multiproc::CreateError>,
) {
    let _s = serial();
    let mut readers = Vec::new();
    let mut kids = Vec::new();
    for i in 0..3u8 {
        let (r, w) = pipe(false).unwrap();
        kids.push(spawn(move || w.send_bytes(&[i]).unwrap()));
        readers.push(r);
    }
    let mut got = Vec::new();
    while !readers.is_empty() {
        let objs: Vec<&dyn multiproc::process::Waitable> = readers
            .iter()
            .map(|r| r as &dyn multiproc::process::Waitable)
            .collect();
        let ready = wait(&objs, Some(Duration::from_secs(10))).unwrap();
        assert!(
            !ready.is_empty(),
            "no end of stream: the parent still holds a write end"
        );
        for i in ready.into_iter().rev() {
            match readers[i].recv_bytes() {
                Ok(b) => got.extend(b),
                Err(multiproc::RecvError::Eof) => {
                    readers.remove(i);
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    got.sort();
    assert_eq!(got, [0, 1, 2]);
    for k in &mut kids {
        join_ok(k);
    }
}

#[test]
fn close_the_write_ends_and_wait_for_end_of_stream_shared_memory_pipe() {
    readers_see_end_of_stream(multiproc::pipe);
}

#[test]
fn close_the_write_ends_and_wait_for_end_of_stream_os_pipe() {
    readers_see_end_of_stream(multiproc::connection::pipe_os);
}

#[test]
fn default_names_are_numbered_as_in_python() {
    let _s = serial();
    let a = Process::new(|| ());
    let b = Process::new(|| ());
    let num = |p: &Process<'static>| -> u64 {
        p.name()
            .strip_prefix("Process-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected default name {:?}", p.name()))
    };
    assert_eq!(num(&b), num(&a) + 1);
    // In a child, its own children are numbered below its identity, and
    // each process sees its own name.
    let mut p = allow(Process::new(move || {
        let me = current_process().name().to_owned();
        let first = Process::new(|| ());
        let mut second = Process::new(|| {
            let me = current_process().name().to_owned();
            let mut g = Process::new(|| ());
            if g.name() != format!("{me}:1") {
                return 5;
            }
            let _ = g.start();
            let _ = g.join();
            if me.matches(':').count() == 1 { 0 } else { 6 }
        });
        if first.name() != format!("{me}:1") {
            return 2;
        }
        if second.name() != format!("{me}:2") {
            return 3;
        }
        if second.start().is_err() || second.join().ok() != Some(ExitStatus::Exited(0)) {
            return 4;
        }
        0
    }));
    assert_eq!(p.name(), format!("Process-{}", num(&b) + 1));
    p.start().unwrap();
    join_ok(&mut p);
}

#[test]
fn closures_that_never_return_are_accepted() {
    let _s = serial();
    let mut p = spawn(|| std::process::exit(3));
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(3));
    let mut p = spawn(|| multiproc::process::exit(4));
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(4));
    let mut p = spawn(|| panic!("boom"));
    assert_eq!(p.join().unwrap(), ExitStatus::Exited(1));
    assert!(p.panicked());
    assert_eq!(p.message().as_deref(), Some("boom"));
    multiproc::process::scope(|s| {
        let mut p = allow(s.process(|| std::process::exit(5)));
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(5));
    });
}

#[test]
fn a_long_scope_keeps_no_descriptor_per_joined_child() {
    let _s = serial();
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    multiproc::process::scope(|s| {
        let before = fds();
        for _ in 0..50 {
            let mut p = allow(s.process(|| ()));
            p.start().unwrap();
            join_ok(&mut p);
        }
        // Not one per child (50): a few are the shared heap's, which
        // watches fork generations through pipes.
        assert!(
            fds() <= before + 16,
            "{} descriptors, {before} before",
            fds()
        );
    });
}

#[test]
fn children_that_end_at_once_with_sigchld_ignored_still_start() {
    let _s = serial();
    // With SIGCHLD ignored the kernel reaps a child the moment it ends: a
    // pidfd opened after the fork could come too late (start failed with
    // ESRCH now and then). The fork now holds off that reaping until the
    // pidfd is open: a child that ended within that window is reaped by
    // `join` with its status; one that ended later was reaped by the
    // kernel, and `join` says so.
    in_child(|| {
        // SAFETY: sets a signal disposition of this (single-threaded) child.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        for _ in 0..200 {
            let mut p = Process::new(|| ());
            if p.start().is_err() {
                return 2;
            }
            match p.join() {
                Err(multiproc::JoinError::ReapedElsewhere { .. }) => {}
                Ok(st) if st.success() => {}
                _ => return 3,
            }
        }
        0
    });
}

#[test]
fn a_forked_child_knows_its_own_ids() {
    let _s = serial();
    // The child's cached ids (and glibc's) must be its own.
    in_child(|| {
        let mut p = Process::new(|| {
            let me = current_process();
            // SAFETY: a plain syscall.
            let pid = unsafe { libc::getpid() };
            // SAFETY: a plain syscall.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
            if me.pid() != pid || pid != tid {
                return 2;
            }
            // glibc's thread descriptor holds the child's id (the word the
            // kernel clears at the thread's end is that field).
            let mut addr: *mut libc::pid_t = std::ptr::null_mut();
            // SAFETY: PR_GET_TID_ADDRESS (40) writes one pointer.
            if unsafe { libc::prctl(40, &mut addr as *mut *mut libc::pid_t) } == 0
                && !addr.is_null()
                // SAFETY: the kernel's address of this thread's id word.
                && unsafe { addr.read_volatile() } != tid
            {
                return 3;
            }
            0
        });
        if p.start().is_err() {
            return 4;
        }
        match p.join() {
            Ok(ExitStatus::Exited(c)) => c,
            _ => 5,
        }
    });
}

static ATFORK_CHILD_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn atfork_child() {
    ATFORK_CHILD_RAN.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[test]
fn other_libraries_fork_handlers_run_in_the_child() {
    let _s = serial();
    // A library's `pthread_atfork` child handler (a random generator that
    // reseeds, an allocator that resets its locks) runs in a child forked
    // by `Process`, as after glibc's `fork`.
    in_child(|| {
        // SAFETY: registers a handler that only stores to an atomic.
        if unsafe { libc::pthread_atfork(None, None, Some(atfork_child)) } != 0 {
            return 6;
        }
        ATFORK_CHILD_RAN.store(false, std::sync::atomic::Ordering::Relaxed);
        let mut p = Process::new(|| {
            if ATFORK_CHILD_RAN.load(std::sync::atomic::Ordering::Relaxed) {
                0
            } else {
                2
            }
        });
        if p.start().is_err() {
            return 4;
        }
        match p.join() {
            Ok(ExitStatus::Exited(c)) => c,
            _ => 5,
        }
    });
}
