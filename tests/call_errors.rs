//! Issue 12, process and manager part: each call fails with an error that
//! lists only what can happen to it, a user can `match` on it, and `?`
//! still turns it into `multiproc::Error`. Real processes, bounded waits.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::time::{Duration, Instant};

use common::{
    PATIENCE, eventually, in_child, manager_builder, reap_behind_its_back, serial, spawn,
};
use multiproc::connection::listener::Address;
use multiproc::manager::{ConnectError, Manager, ProxyError};
use multiproc::process::wait;
use multiproc::signal::Signal;
use multiproc::{Error, ExitStatus, JoinOkError, Process, RemoteErrorKind, SignalError};

const KEY: &[u8] = b"call errors";

#[test]
fn signalling_a_child_reaped_elsewhere_says_so() {
    let _s = serial();
    in_child(|| {
        let mut p = Process::new(|| ());
        if p.start().is_err() {
            return 2;
        }
        if let Err(code) = reap_behind_its_back(&p) {
            return code;
        }
        // Before: `Ok(())` (the ESRCH of pidfd_send_signal was taken for
        // "already ended, nothing to do"), which said nothing of what
        // happened.
        let pid = p.pid().unwrap();
        match p.kill() {
            Err(SignalError::ReapedElsewhere { pid: q }) if q == pid => {}
            r => {
                eprintln!("kill after reaped elsewhere: {r:?}");
                return 5;
            }
        }
        // Asked again (the handle knows by now): the same answer.
        if !matches!(p.terminate(), Err(SignalError::ReapedElsewhere { .. })) {
            return 6;
        }
        // Into the coarse error, the same kind.
        let e: Error = p.signal(Signal::SIGUSR1).unwrap_err().into();
        if !matches!(e, Error::ReapedElsewhere { .. }) {
            return 7;
        }
        0
    });
}

#[test]
fn a_group_names_the_process_it_could_not_signal() {
    let _s = serial();
    in_child(|| {
        let mut g = multiproc::ProcessGroup::new();
        g.push(Process::new(|| ()));
        if g.start().is_err() {
            return 2;
        }
        let ended = g
            .get_mut(0)
            .map(|p| wait(&[&*p], Some(Duration::from_secs(5))));
        if !matches!(ended, Some(Ok(r)) if r.len() == 1) {
            return 3;
        }
        // SAFETY: a plain waitpid with a null status pointer.
        if unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } <= 0 {
            return 4;
        }
        // Before: Ok, as if the signal had gone.
        match g.terminate_all() {
            Err(multiproc::GroupError::Signal {
                index: 0,
                source: SignalError::ReapedElsewhere { .. },
            }) => 0,
            r => {
                eprintln!("terminate_all after a reap elsewhere: {r:?}");
                5
            }
        }
    });
}

/// What a user writes: `?` on every process call in a function returning
/// `multiproc::Result`.
fn run_and_stop(p: &mut Process<'static>) -> multiproc::Result<()> {
    p.kill()?;
    p.join_ok()?;
    Ok(())
}

#[test]
fn process_calls_fail_only_as_they_can() {
    let _s = serial();
    // Before start.
    let mut idle = Process::new(|| ());
    assert!(matches!(
        idle.signal(Signal::SIGTERM),
        Err(SignalError::NotStarted)
    ));
    assert!(matches!(idle.join_ok(), Err(JoinOkError::NotStarted)));

    // A child that exits with code 3: join_ok says how, with its name.
    let mut p = spawn(|| 3);
    match p.join_ok() {
        Err(JoinOkError::ChildFailed { name, status, .. }) => {
            assert_eq!(status, ExitStatus::Exited(3));
            assert_eq!(name, p.name());
        }
        other => panic!("expected ChildFailed, got {other:?}"),
    }
    // Reaped by this handle: signalling it does nothing.
    p.kill().unwrap();
    p.terminate().unwrap();
    // Not in a group of its own.
    assert!(matches!(
        p.signal_group(Signal::SIGTERM),
        Err(SignalError::NoGroup)
    ));

    // Through `?`: a killed child is a failed one.
    let mut h = spawn(common::hang);
    match run_and_stop(&mut h) {
        Err(Error::ChildFailed { status, .. }) => {
            assert_eq!(status, ExitStatus::Signaled(Signal::SIGKILL))
        }
        other => panic!("expected ChildFailed, got {other:?}"),
    }
}

/// What a user writes: a missing field is an answer, anything else an error.
fn field_or_default(ns: &multiproc::manager::NamespaceProxy, name: &str) -> multiproc::Result<u32> {
    match ns.get::<u32>(name) {
        Ok(v) => Ok(v),
        Err(ProxyError::Remote {
            kind: RemoteErrorKind::Key,
            ..
        }) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[test]
fn proxy_calls_report_the_servers_kind_and_a_gone_server() {
    let _s = serial();
    let m = manager_builder(KEY).start().unwrap();
    let ns = m.namespace().unwrap();
    ns.set("here", &7u32).unwrap();
    assert_eq!(field_or_default(&ns, "here").unwrap(), 7);
    assert_eq!(field_or_default(&ns, "missing").unwrap(), 0);
    let e = ns.get::<u32>("missing").unwrap_err();
    assert_eq!(e.kind(), Some(&RemoteErrorKind::Key), "{e}");

    let list = m.list_from(&[1u32, 2]).unwrap();
    let e = list.get(5).unwrap_err();
    assert!(
        matches!(
            e,
            ProxyError::Remote {
                kind: RemoteErrorKind::Index,
                ..
            }
        ),
        "{e}"
    );
    let e = list.remove(&9).unwrap_err();
    assert_eq!(e.kind(), Some(&RemoteErrorKind::Value), "{e}");

    let lock = m.lock().unwrap();
    assert!(matches!(lock.release(), Err(ProxyError::NotOwner)));
    let b = m.barrier(2).unwrap();
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(10)),
        Err(ProxyError::BrokenBarrier)
    ));

    // The server killed: every call fails at once with ServerGone.
    let pid = m.server_pid().unwrap();
    // SAFETY: kill takes integers; the pid is our unreaped child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(eventually(PATIENCE, || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    }));
    let t = Instant::now();
    let e = list.len().unwrap_err();
    assert!(e.is_server_gone(), "{e}");
    assert!(matches!(
        field_or_default(&ns, "here"),
        Err(Error::ServerGone(_))
    ));
    assert!(matches!(m.list::<u8>(), Err(ProxyError::ServerGone(_))));
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(m);
}

#[test]
fn connecting_fails_with_its_own_errors() {
    let _s = serial();
    let m = manager_builder(KEY).start().unwrap();
    match Manager::connect(m.address(), b"not the key") {
        Err(ConnectError::AuthenticationFailed(_)) => {}
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
    // Nobody at this address.
    let dir = std::env::temp_dir().join(format!("mp-call-errors-{}", std::process::id()));
    let nobody = Address::Unix(dir.join("none.sock"));
    match Manager::connect(&nobody, KEY) {
        Err(ConnectError::ServerGone(_)) => {}
        other => panic!("expected ServerGone, got {other:?}"),
    }
    // `?` into the coarse error keeps the kind.
    let coarse = || -> multiproc::Result<Manager> { Ok(Manager::connect(&nobody, KEY)?) };
    assert!(matches!(coarse(), Err(Error::ServerGone(_))));
    m.shutdown().unwrap();
}

/// A `SharedMemoryManager` whose server was killed: making a block fails
/// with `SegmentError::Manager` (the server gone; the block it made is
/// unlinked again). A size of 0 fails before the server is asked, as the
/// block's own error.
#[test]
fn a_shared_memory_managers_blocks_fail_with_their_own_errors() {
    use multiproc::manager::{SegmentError, SharedMemoryManager};
    let _s = serial();
    let smm = SharedMemoryManager::start_with(manager_builder(KEY)).unwrap();
    assert!(matches!(
        smm.shared_memory(0),
        Err(SegmentError::SharedMemory(
            multiproc::SharedMemoryError::InvalidSize { .. }
        ))
    ));
    let pid = smm.manager().server_pid().unwrap();
    // SAFETY: kill takes integers; the pid is our unreaped child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(eventually(PATIENCE, || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    }));
    match smm.shared_memory(64) {
        Err(SegmentError::Manager(e)) => assert!(e.is_server_gone(), "{e}"),
        other => panic!("expected the manager's error, got {other:?}"),
    }
    match smm.shareable_list(&[1i64.into()]) {
        Err(e @ SegmentError::Manager(_)) => {
            let e: Error = e.into();
            assert!(matches!(e, Error::ServerGone(_)), "{e:?}");
        }
        other => panic!("expected the manager's error, got {other:?}"),
    }
    assert!(matches!(smm.shutdown(), Err(ProxyError::ServerGone(_))));
}

/// A server run here: its setup's failure comes back as
/// `ServeError::Setup` with the proxy error (the server stopped), an
/// address a live listener holds as `ServeError::Os` with `EADDRINUSE`,
/// and a missing address as `InvalidArgument`. Each turns into
/// `multiproc::Error` with its kind.
#[test]
fn serving_here_fails_with_its_own_errors() {
    use multiproc::manager::{QueueProxy, ServeError};
    let _s = serial();
    in_child(|| {
        let dir = std::env::temp_dir().join(format!("mp-serve-err-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let address = Address::Unix(dir.join("s.sock"));
        let r = Manager::builder()
            .address(address)
            .authkey(KEY)
            .serve_with_setup(|m| {
                let q: QueueProxy<u8> = m.get("never exposed")?;
                q.put(&1)
            });
        let _ = std::fs::remove_dir_all(&dir);
        match r {
            Err(ServeError::Setup(ProxyError::Remote { .. })) => {}
            other => {
                eprintln!("setup that fails: {other:?}");
                return 2;
            }
        }
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = Address::parse(&format!("tcp:{}", taken.local_addr().unwrap())).unwrap();
        match multiproc::manager::serve(&at, KEY) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
                let e: Error = e.into();
                if e.raw_os_error() != Some(libc::EADDRINUSE) {
                    return 3;
                }
            }
            other => {
                eprintln!("serve on a taken address: {other:?}");
                return 4;
            }
        }
        match Manager::builder().serve() {
            Err(ServeError::InvalidArgument(_)) => 0,
            other => {
                eprintln!("serve without an address: {other:?}");
                5
            }
        }
    });
}
