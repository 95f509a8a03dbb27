//! The manager where it used to differ from Python's: a TCP port 0, a
//! SIGINT to the server, proxies kept inside managed containers, named
//! objects fetched by a client that connects by address. Real processes
//! throughout.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::time::{Duration, Instant};

use common::{join_ok, manager_builder, serial, spawn, spawn_in};
use multiproc::connection::listener::Address;
use multiproc::manager::ProxyError;
use multiproc::manager::{DictProxy, ListProxy, Manager, QueueProxy};
use multiproc::{RemoteErrorKind, StartMethod};

const KEY: &[u8] = b"manager parity key";

/// A builder that forks its server from the (multithreaded) test harness.
fn start() -> Manager {
    manager_builder(KEY).start().expect("start a manager")
}

#[test]
fn tcp_port_zero_binds_a_free_port_and_reports_it() {
    let _s = serial();
    let t0 = Instant::now();
    let m = manager_builder(KEY)
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
            Err(ProxyError::ServerGone(_)) => break,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(m);
}

#[test]
fn a_proxy_stored_in_a_list_keeps_its_object_alive() {
    let _s = serial();
    let m = start();
    let base = m.object_count().unwrap();
    let outer: ListProxy<ListProxy<u64>> = m.list().unwrap();
    // The temporary proxy is dropped at once: the list holds the object.
    outer.push(&m.list_from(&[0, 1, 2]).unwrap()).unwrap();
    outer.get(0).unwrap().set(0, &9).unwrap();
    assert_eq!(outer.get(0).unwrap().to_vec().unwrap(), [9, 1, 2]);
    assert_eq!(m.object_count().unwrap(), base + 2);
    // Overwritten: the old inner list is freed.
    outer.set(0, &m.list_from(&[5]).unwrap()).unwrap();
    assert_eq!(m.object_count().unwrap(), base + 2);
    assert_eq!(outer.get(0).unwrap().to_vec().unwrap(), [5]);
    // Popped: the caller's proxy owns the reference the list held.
    outer.extend([&m.list_from(&[6]).unwrap()]).unwrap();
    let popped = outer.pop().unwrap();
    assert_eq!(m.object_count().unwrap(), base + 3);
    assert_eq!(popped.to_vec().unwrap(), [6]);
    drop(popped);
    assert_eq!(m.object_count().unwrap(), base + 2);
    // Removed by value: freed.
    let inner = outer.get(0).unwrap();
    outer.remove(&inner).unwrap();
    drop(inner);
    assert_eq!(m.object_count().unwrap(), base + 1);
    // The container freed: what it held goes with it.
    outer.push(&m.list_from(&[7]).unwrap()).unwrap();
    assert_eq!(m.object_count().unwrap(), base + 2);
    drop(outer);
    assert_eq!(m.object_count().unwrap(), base);
    m.shutdown().unwrap();
}

/// Waits (at most 10 s) for the server to hold `n` objects: a child that
/// exited has its session closed by the server asynchronously.
fn wait_count(m: &Manager, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = m.object_count().unwrap();
        if c == n {
            return;
        }
        assert!(Instant::now() < deadline, "{c} objects, want {n}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn proxies_stored_by_a_child_that_exited_stay_usable() {
    let _s = serial();
    let m = start();
    let base = m.object_count().unwrap();
    let dicts: DictProxy<String, DictProxy<String, u64>> = m.dict().unwrap();
    let queues: ListProxy<QueueProxy<String>> = m.list().unwrap();
    let q: QueueProxy<ListProxy<u8>> = m.queue().unwrap();
    multiproc::process::scope(|scope| {
        let mgr = &m;
        let (d2, l2, q2) = (dicts.clone(), queues.clone(), q.clone());
        let mut kid = spawn_in(scope, move || {
            // The child's session ends when it exits: only the containers keep
            // these objects alive then.
            let inner = mgr.dict::<String, u64>().unwrap();
            inner.insert(&"answer".into(), &42).unwrap();
            d2.insert(&"inner".into(), &inner).unwrap();
            let iq = mgr.queue::<String>().unwrap();
            iq.put(&"hello".into()).unwrap();
            l2.push(&iq).unwrap();
            q2.put(&mgr.list_from(&[1u8, 2]).unwrap()).unwrap();
        });
        join_ok(&mut kid);
    });
    let inner = dicts.get(&"inner".into()).unwrap().unwrap();
    assert_eq!(inner.get(&"answer".into()).unwrap(), Some(42));
    let iq = queues.get(0).unwrap();
    assert_eq!(iq.get_timeout(Duration::from_secs(5)).unwrap(), "hello");
    let taken = q.get_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(taken.to_vec().unwrap(), [1, 2]);
    // 3 containers + 3 held objects.
    wait_count(&m, base + 6);
    drop(taken);
    wait_count(&m, base + 5);
    // A dict value taken out by `remove` comes with its reference.
    drop(inner);
    let removed = dicts.remove(&"inner".into()).unwrap().unwrap();
    assert_eq!(removed.get(&"answer".into()).unwrap(), Some(42));
    drop(removed);
    wait_count(&m, base + 4);
    drop((iq, queues));
    wait_count(&m, base + 2);
    m.shutdown().unwrap();
}

#[test]
fn a_client_connecting_by_address_fetches_named_objects() {
    let _s = serial();
    let m = manager_builder(KEY)
        .address(Address::parse("tcp:127.0.0.1:0").unwrap())
        .start()
        .unwrap();
    let base = m.object_count().unwrap();
    // Exposed, then the proxy dropped: the name keeps the queue alive.
    m.expose("jobs", &m.queue::<String>().unwrap()).unwrap();
    m.expose("results", &m.dict::<String, u64>().unwrap())
        .unwrap();
    assert_eq!(m.object_count().unwrap(), base + 2);
    assert_eq!(m.exposed().unwrap(), ["jobs", "results"]);
    let address = m.address().clone();
    // A child that knows only the address and key, as another program.
    let mut kid = spawn(move || {
        let c = Manager::connect(&address, KEY).unwrap();
        let jobs: QueueProxy<String> = c.get("jobs").unwrap();
        let results: DictProxy<String, u64> = c.get("results").unwrap();
        let job = jobs.get_timeout(Duration::from_secs(10)).unwrap();
        results.insert(&job, &(job.len() as u64)).unwrap();
        // A wrong kind is a clear error, and a missing name too.
        match c.get::<ListProxy<String>>("jobs") {
            Err(ProxyError::Remote {
                kind: RemoteErrorKind::BadArguments,
                message,
            }) => assert!(message.contains("\"queue\", not a \"list\""), "{message}"),
            other => panic!("{other:?}"),
        }
        match c.get::<QueueProxy<String>>("nothing") {
            Err(ProxyError::Remote {
                kind: RemoteErrorKind::Key,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    });
    let jobs: QueueProxy<String> = m.get("jobs").unwrap();
    jobs.put(&"twelve chars".to_string()).unwrap();
    join_ok(&mut kid);
    let results: DictProxy<String, u64> = m.get("results").unwrap();
    assert_eq!(results.get(&"twelve chars".into()).unwrap(), Some(12));
    // Unexposed, the last proxy gone: freed.
    assert!(m.unexpose("jobs").unwrap());
    assert!(!m.unexpose("jobs").unwrap());
    assert_eq!(m.object_count().unwrap(), base + 2);
    drop(jobs);
    // The child's reference went with its connection, which the server may
    // notice a moment after the child was joined (a busy machine).
    wait_count(&m, base + 1);
    // Another proxy of another server is refused.
    let other = start();
    let foreign = other.list::<u8>().unwrap();
    assert!(matches!(
        m.expose("foreign", &foreign),
        Err(ProxyError::InvalidArgument(_))
    ));
    drop(foreign);
    other.shutdown().unwrap();
    m.shutdown().unwrap();
}

#[test]
fn a_standalone_server_exposes_what_its_setup_made() {
    let _s = serial();
    let dir = std::env::temp_dir().join(format!("mp-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let address = Address::Unix(dir.join("serve.sock"));
    let at = address.clone();
    let mut server = spawn(move || {
        Manager::builder()
            .address(at)
            .authkey(KEY)
            .serve_with_setup(|m| {
                let q = m.queue::<u64>()?;
                q.put(&41)?;
                m.expose("numbers", &q)
            })
            .unwrap();
    });
    // Bounded: connect, then wait for the name to appear.
    let deadline = Instant::now() + Duration::from_secs(10);
    let numbers: QueueProxy<u64> = loop {
        if let Ok(c) = Manager::connect(&address, KEY)
            && let Ok(q) = c.get("numbers")
        {
            break q;
        }
        assert!(
            Instant::now() < deadline,
            "the standalone server never exposed its queue"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(numbers.get_timeout(Duration::from_secs(5)).unwrap(), 41);
    drop(numbers);
    Manager::connect(&address, KEY).unwrap().shutdown().unwrap();
    join_ok(&mut server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn in_dev_shm(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

#[test]
fn a_shared_memory_manager_unlinks_the_blocks_of_every_process_at_shutdown() {
    let _s = serial();
    // SAFETY: as for `builder`.
    let smm = multiproc::manager::SharedMemoryManager::start_with(unsafe {
        Manager::builder()
            .authkey(KEY)
            .start_method(StartMethod::Fork)
            .allow_threads()
    })
    .unwrap();
    let mine = smm.shared_memory(100).unwrap();
    let list = smm.shareable_list(&[5i64.into()]).unwrap();
    multiproc::process::scope(|scope| {
        let smm_ref = &smm;
        let mut kid = spawn_in(scope, move || {
            let theirs = smm_ref.shared_memory(64).unwrap();
            theirs.write_at(0, b"child").unwrap();
        });
        join_ok(&mut kid);
    });
    let names = smm.names().unwrap();
    assert_eq!(names.len(), 3);
    assert!(names.iter().all(|n| in_dev_shm(n)), "{names:?}");
    assert_eq!(
        multiproc::SharedMemory::open(&names[2]).unwrap().to_vec()[..5],
        *b"child"
    );
    drop((mine, list));
    smm.shutdown().unwrap();
    for n in &names {
        assert!(!in_dev_shm(n), "{n} left in /dev/shm");
    }
}

#[test]
fn a_shared_memory_managers_blocks_go_when_its_owner_is_killed() {
    let _s = serial();
    let (rx, tx) = multiproc::pipe(false).unwrap();
    let mut owner = spawn(move || {
        // This child is single-threaded: its manager's server is forked.
        let smm =
            multiproc::manager::SharedMemoryManager::start_with(Manager::builder().authkey(KEY))
                .unwrap();
        let shm = smm.shared_memory(10).unwrap();
        tx.send_bytes(shm.name().as_bytes()).unwrap();
        // Killed here.
        std::thread::sleep(Duration::from_secs(30));
    });
    assert!(
        rx.poll(Some(Duration::from_secs(10))).unwrap(),
        "no name came"
    );
    let name = String::from_utf8(rx.recv_bytes().unwrap()).unwrap();
    assert!(in_dev_shm(&name));
    owner.kill().unwrap();
    owner.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_dev_shm(&name) {
        assert!(
            Instant::now() < deadline,
            "{name} outlived its manager's owner"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_standalone_server_stops_on_ctrl_c() {
    let _s = serial();
    let dir = std::env::temp_dir().join(format!("mp-parity-int-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let address = Address::Unix(dir.join("serve.sock"));
    let at = address.clone();
    let mut server = spawn(move || {
        Manager::builder().address(at).authkey(KEY).serve().unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while Manager::connect(&address, KEY).is_err() {
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::sleep(Duration::from_millis(5));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid().unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    // A clean exit (code 0), not a death by the signal.
    let status = server
        .join_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("SIGINT did not stop the standalone server");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
