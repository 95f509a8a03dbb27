//! Managers whose server is a spawned process (a fresh run of this test
//! binary): every behaviour of `manager_cases` (shared with `manager.rs`,
//! which runs them with a forked server), and what only spawning has:
//! a server started from a multithreaded parent, with a registered type
//! whose constructor crosses over by code offset; the standalone
//! `manager::serve` run in a spawned child and reached by address; proxies
//! handed to spawned clients as arguments.
//!
//! This binary has its own `main` (libtest-mimic) because `multiproc::init`
//! must run first when the binary is started as a spawned child.

use std::time::Duration;

mod common;
mod manager_cases;

use libtest_mimic::{Arguments, Failed, Trial};
use multiproc::connection::listener::Address;
use multiproc::manager::{ConnectError, ProxyError};
use multiproc::manager::{ListProxy, Manager};
use multiproc::{Process, StartMethod};
use serde::{Deserialize, Serialize};

fn check(cond: bool, what: &str) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what.into()) }
}

#[derive(Serialize, Deserialize)]
struct Tally {
    names: Vec<String>,
}

impl Tally {
    fn add(&mut self, name: String) -> usize {
        self.names.push(name);
        self.names.len()
    }
    fn all(&self) -> Vec<String> {
        self.names.clone()
    }
}

multiproc::manager_type! {
    /// A tally of names.
    pub proxy TallyProxy for Tally as "Tally" {
        fn add(&mut self, name: String) -> usize;
        fn all(&self) -> Vec<String>;
    }
}

// ---- entry points run in spawned children ----

fn serve_entry(args: (String, Vec<u8>)) -> String {
    let address = Address::parse(&args.0).expect("address");
    match multiproc::manager::serve(&address, &args.1) {
        Ok(()) => "stopped".into(),
        Err(e) => format!("error: {e}"),
    }
}

fn append_from_spawned(args: (ListProxy<String>, TallyProxy)) -> usize {
    let (list, tally) = args;
    list.push(&"spawned".to_string()).unwrap();
    tally.add("spawned".into()).unwrap()
}

// ---- pool tasks (the server's pool spawns its workers: this binary
// calls `multiproc::init` first) ----

#[cfg(feature = "pool")]
fn square(x: u64) -> u64 {
    x * x
}

#[cfg(feature = "pool")]
fn cube(x: u64) -> u64 {
    x * x * x
}

#[cfg(feature = "pool")]
fn refuse_three(x: u64) -> u64 {
    assert_ne!(x, 3, "three is not allowed");
    x
}

/// `manager.pool()`: a pool held by the server, used by this process and
/// a child through proxies; only registered tasks run; a task's panic
/// comes back as an error; the pool goes with its last proxy.
#[cfg(feature = "pool")]
fn manager_pool_runs_registered_tasks() -> Result<(), Failed> {
    use multiproc::RemoteErrorKind;
    let _s = common::serial();
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let m = manager_cases::builder(method)
            .pool_task(square)
            .pool_task(refuse_three)
            .start()?;
        let pool = m.pool(2)?;
        check(pool.apply(square, &7)? == 49, "apply")?;
        let xs: Vec<u64> = (0..20).collect();
        check(
            pool.map(square, &xs)? == xs.iter().map(|x| x * x).collect::<Vec<_>>(),
            "map",
        )?;
        // From a forked child, through its own connection.
        let mut kid = {
            let pool = pool.clone();
            common::spawn(move || {
                assert_eq!(pool.map(square, &[2u64, 3]).unwrap(), [4, 9]);
            })
        };
        common::join_ok(&mut kid);
        // A function the server was not given: refused, nothing runs.
        let e = pool.apply(cube, &2).unwrap_err();
        check(
            matches!(
                &e,
                ProxyError::Remote {
                    kind: RemoteErrorKind::BadArguments,
                    ..
                }
            ),
            &format!("an unregistered task is refused: {e}"),
        )?;
        // A task's panic: an error with its message; the pool goes on.
        let e = pool.apply(refuse_three, &3).unwrap_err();
        check(
            e.to_string().contains("three is not allowed"),
            &format!("the task's panic comes back: {e}"),
        )?;
        check(pool.apply(refuse_three, &4)? == 4, "the pool goes on")?;
        drop(pool);
        // The decref travels as a notification: wait (bounded) for it.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut left = m.object_count()?;
        while left != 0 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
            left = m.object_count()?;
        }
        check(
            left == 0,
            &format!("the pool went with its proxy ({left} left)"),
        )?;
        // close and join.
        let pool = m.pool(1)?;
        pool.close()?;
        pool.join()?;
        check(
            pool.apply(square, &2).is_err(),
            "a closed pool takes no task",
        )?;
        drop(pool);
        let e = m.pool(1 << 20).unwrap_err();
        check(
            matches!(
                &e,
                ProxyError::Remote {
                    kind: RemoteErrorKind::Value,
                    ..
                }
            ),
            &format!("a million workers are refused: {e}"),
        )?;
        m.shutdown()?;
    }
    Ok(())
}

// ---- tests ----

fn spawned_server_from_a_multithreaded_parent() -> Result<(), Failed> {
    // Held by every test here: under `cargo test` they share a process,
    // and another test's children would look like this one's leftovers.
    let _s = common::serial();
    // libtest-mimic runs this on a thread of its own or the main thread;
    // make sure the process has another thread either way.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv());
    let m = Manager::builder().register::<Tally>().start()?;
    let list = m.list::<String>()?;
    let tally: TallyProxy = m.create(&Tally { names: vec![] })?;
    list.push(&"parent".to_string())?;
    tally.add("parent".into())?;
    // Proxies go to a spawned client as its arguments (serialized as
    // tokens; it connects with the inherited authkey).
    let mut p = Process::spawn(append_from_spawned, (list.clone(), tally.clone()))?;
    p.start()?;
    check(
        p.result()? == 2,
        "the spawned client saw the parent's entry",
    )?;
    check(
        list.to_vec()? == ["parent", "spawned"],
        "both appends are in the list",
    )?;
    check(
        tally.all()? == ["parent", "spawned"],
        "the registered type crossed over",
    )?;
    m.shutdown()?;
    drop(tx);
    let _ = t.join();
    Ok(())
}

fn standalone_serve_reached_by_address() -> Result<(), Failed> {
    let _s = common::serial();
    let dir = std::env::temp_dir().join(format!("mp-mgr-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let address = Address::Unix(dir.join("sock"));
    let key = b"standalone key".to_vec();
    let mut server = Process::spawn(serve_entry, (address.to_string(), key.clone()))?;
    server.start()?;
    let m = loop {
        match Manager::connect(&address, &key) {
            Ok(m) => break m,
            Err(ConnectError::ServerGone(_)) if server.is_alive() => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(e.to_string().into()),
        }
    };
    let wrong = Manager::connect(&address, b"wrong");
    check(
        matches!(wrong, Err(ConnectError::AuthenticationFailed(_))),
        "a wrong key is refused",
    )?;
    let d = m.dict::<u32, u32>()?;
    d.insert(&1, &10)?;
    check(d.get(&1)? == Some(10), "the dict works")?;
    // SIGTERM stops it cleanly.
    server.terminate()?;
    check(
        server.result()? == "stopped",
        "serve returned Ok on SIGTERM",
    )?;
    check(
        matches!(d.get(&1), Err(ProxyError::ServerGone(_))),
        "calls fail once the server is gone",
    )?;
    drop(d);
    drop(m);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn explicit_spawn_start_method() -> Result<(), Failed> {
    let _s = common::serial();
    let m = Manager::builder()
        .start_method(StartMethod::Spawn)
        .start()?;
    let q = m.queue::<u64>()?;
    q.put(&5)?;
    check(q.get()? == 5, "a queue through a spawned server")?;
    let pid = m.server_pid().ok_or("the server's pid")?;
    drop(m);
    // Dropping the manager stopped and reaped its server.
    check(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the server is gone after drop",
    )?;
    Ok(())
}

fn main() {
    multiproc::init();
    let args = Arguments::from_args();
    macro_rules! spawn_trials {
        ($($name:ident,)*) => {
            vec![$(
                Trial::test(stringify!($name), || {
                    let _s = common::serial();
                    manager_cases::$name(StartMethod::Spawn);
                    Ok(())
                }),
            )*]
        };
    }
    let mut tests = cases!(spawn_trials);
    tests.extend([
        Trial::test(
            "spawned_server_from_a_multithreaded_parent",
            spawned_server_from_a_multithreaded_parent,
        ),
        Trial::test(
            "standalone_serve_reached_by_address",
            standalone_serve_reached_by_address,
        ),
        Trial::test("explicit_spawn_start_method", explicit_spawn_start_method),
    ]);
    #[cfg(feature = "pool")]
    tests.push(Trial::test(
        "manager_pool_runs_registered_tasks",
        manager_pool_runs_registered_tasks,
    ));
    libtest_mimic::run(&args, tests).exit();
}
