//! CPython's own manager clients (`SyncManager.connect()`, standard
//! library only) against a multiproc manager server: every type, the
//! exceptions Python expects, objects a Rust program exposed by name,
//! hostile input, concurrent clients. Real python3 processes throughout
//! (3.11, and 3.12 when pyenv has it).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::serial;
use multiproc::StartMethod;
use multiproc::connection::listener::Address;
use multiproc::manager::{Manager, ManagerBuilder};

const KEY: &[u8] = b"python clients key";
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/manager_client.py"
);
const PY312: &str = "/root/.pyenv/versions/3.12.1/bin/python3";
const PY313: &str = "/root/.pyenv/versions/3.13.0/bin/python3";

/// The interpreters: `python3` (3.11 here: the MD5 handshake), and 3.12
/// and 3.13 (the `{sha256}` one) when pyenv has them.
fn pythons() -> Vec<&'static str> {
    let mut v = vec!["python3"];
    for p in [PY312, PY313] {
        if Path::new(p).exists() {
            v.push(p);
        }
    }
    v
}

fn builder() -> ManagerBuilder {
    // SAFETY: the server child uses its own threads, the allocator and the
    // standard library only; the harness's threads hold none of their locks
    // across the fork (forking tests are serialized).
    unsafe {
        Manager::builder()
            .authkey(KEY)
            .address(Address::parse("tcp:127.0.0.1:0").unwrap())
            .legacy_auth(true)
            .start_method(StartMethod::Fork)
            .allow_threads()
    }
}

fn port(m: &Manager) -> u16 {
    match m.address() {
        Address::Tcp(a) => a.port(),
        other => panic!("not TCP: {other}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `py -c script args...`, its output captured.
fn python_c(py: &str, script: &str, args: &[&str]) -> Child {
    Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the interop tests")
}

fn run_script(py: &str, port: u16, key: &[u8], scenario: &str) -> Child {
    Command::new(py)
        .arg(SCRIPT)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(hex(key))
        .arg(scenario)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the interop tests")
}

/// Waits for `child` at most `limit` (killed after): its exit status and
/// output. A hang fails the test instead of hanging it.
fn finish(mut child: Child, limit: Duration) -> (bool, String, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.success(), out, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_ok(child: Child) -> String {
    let (ok, out, err) = finish(child, Duration::from_secs(90));
    assert!(ok && out.contains("OK"), "python failed:\n{out}\n{err}");
    out
}

/// Runs `scenario` of the script in every interpreter against one server,
/// then checks that everything the scripts made (iterators included) was
/// released by their decrefs.
fn scenario_releases_everything(scenario: &str) {
    let _s = serial();
    let m = builder().start().expect("start");
    for py in pythons() {
        assert_ok(run_script(py, port(&m), KEY, scenario));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.object_count().unwrap() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(m.object_count().unwrap(), 0);
    m.shutdown().unwrap();
}

#[test]
fn python_clients_use_every_type() {
    scenario_releases_everything("types");
}

/// A started manager's default address, a Unix socket in a private
/// directory, serves Python clients of the same user too.
#[test]
fn python_clients_over_the_default_unix_socket() {
    let _s = serial();
    // SAFETY: as in `builder`.
    let m = unsafe {
        Manager::builder()
            .authkey(KEY)
            .legacy_auth(true)
            .start_method(StartMethod::Fork)
            .allow_threads()
    }
    .start()
    .unwrap();
    let Address::Unix(path) = m.address().clone() else {
        panic!("not a Unix socket: {}", m.address())
    };
    let child = Command::new("python3")
        .arg(SCRIPT)
        .arg("unix")
        .arg(&path)
        .arg(hex(KEY))
        .arg("types")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_ok(child);
    m.shutdown().unwrap();
}

/// Without `legacy_auth`, CPython 3.12 (SHA-256) still connects.
#[test]
fn python_312_connects_to_a_sha256_only_server() {
    if !Path::new(PY312).exists() {
        return;
    }
    let _s = serial();
    // SAFETY: as in `builder`.
    let m = unsafe {
        Manager::builder()
            .authkey(KEY)
            .address(Address::parse("tcp:127.0.0.1:0").unwrap())
            .start_method(StartMethod::Fork)
            .allow_threads()
    }
    .start()
    .unwrap();
    let script = format!(
        "from multiprocessing.managers import SyncManager\n\
         m = SyncManager(address=('127.0.0.1', {}), authkey=bytes.fromhex('{}'))\n\
         m.connect(); d = m.dict(); d['k'] = 1; assert d['k'] == 1; print('OK')",
        port(&m),
        hex(KEY)
    );
    let child = python_c(PY312, &script, &[]);
    assert_ok(child);
    m.shutdown().unwrap();
}

#[test]
fn names_exposed_by_rust_are_reachable_from_python() {
    let _s = serial();
    let m = builder().start().unwrap();
    let q = m.queue::<String>().unwrap();
    let d = m.dict::<String, u64>().unwrap();
    let lock = m.lock().unwrap();
    m.expose("get_queue", &q).unwrap();
    m.expose("get_dict", &d).unwrap();
    m.expose("get_lock", &lock).unwrap();
    let before = m.object_count().unwrap();
    for py in pythons() {
        assert_ok(run_script(py, port(&m), KEY, "named"));
    }
    // Python's item went into the same dict (its value in pickle form).
    assert_eq!(d.len().unwrap(), 1);
    assert_eq!(q.qsize().unwrap(), 0);
    assert!(!lock.is_locked().unwrap());
    // Python's references were given back.
    assert_eq!(m.object_count().unwrap(), before);
    m.shutdown().unwrap();
}

/// Methods that give new proxies or iterators (a dict's `__iter__`, a
/// list's `__reversed__`), `list.sort`, slice assignment and deletion,
/// `*=`, and `Pool` refused with `NotImplementedError`.
#[test]
fn python_clients_iterate_sort_and_assign_slices() {
    scenario_releases_everything("more");
}

/// The checks of `more` hold against Python's own server too (those of
/// multiproc's refusals aside): the script describes Python's behaviour.
#[test]
fn the_more_scenario_holds_against_pythons_own_server() {
    // Its python3 children would otherwise be seen as left behind by the
    // serialized tests that run beside it under `cargo test`.
    let _s = serial();
    for py in pythons() {
        let (mut server, p) = python_server(py);
        let child = Command::new(py)
            .arg(SCRIPT)
            .arg("127.0.0.1")
            .arg(p.to_string())
            .arg(hex(KEY))
            .arg("more")
            .env("PYTHON_SERVER", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (ok, out, err) = finish(child, Duration::from_secs(90));
        let _ = server.kill();
        let _ = server.wait();
        assert!(ok && out.contains("OK"), "{py} failed:\n{out}\n{err}");
    }
}

/// A Barrier and a Namespace exposed by name and fetched with a bare
/// `M.register('name')`: an `AutoProxy` of their public methods, as with
/// Python's own server (the server used to report `__getattribute__`,
/// which made every attribute of the proxy a remote call: Python recursed
/// until `RecursionError`). A `NamespaceProxy` still gets attributes.
#[test]
fn a_barrier_and_a_namespace_exposed_by_name_work_from_python() {
    let _s = serial();
    let m = builder().start().unwrap();
    let b = m.barrier(2).unwrap();
    let ns = m.namespace().unwrap();
    m.expose("get_barrier", &b).unwrap();
    m.expose("get_ns", &ns).unwrap();
    m.expose("get_ns_full", &ns).unwrap();
    for py in pythons() {
        assert_ok(run_script(py, port(&m), KEY, "named_proxies"));
    }
    assert!(!b.is_broken().unwrap());
    m.shutdown().unwrap();
}

/// The handshake a CPython 3.11 client does, then the raw socket.
fn raw_client(port: u16, key: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let read_msg = |s: &mut TcpStream| {
        let mut h = [0u8; 4];
        s.read_exact(&mut h).unwrap();
        let mut b = vec![0; i32::from_be_bytes(h) as usize];
        s.read_exact(&mut b).unwrap();
        b
    };
    let send_msg = |s: &mut TcpStream, b: &[u8]| {
        s.write_all(&(b.len() as i32).to_be_bytes()).unwrap();
        s.write_all(b).unwrap();
    };
    use hmac::{KeyInit, Mac};
    type HS = hmac::Hmac<sha2::Sha256>;
    let challenge = read_msg(&mut s);
    let msg = challenge.strip_prefix(b"#CHALLENGE#").unwrap();
    assert!(msg.starts_with(b"{sha256}"));
    let mut mac = <HS as KeyInit>::new_from_slice(key).unwrap();
    mac.update(msg);
    let mut answer = b"{sha256}".to_vec();
    answer.extend_from_slice(&mac.finalize().into_bytes());
    send_msg(&mut s, &answer);
    assert_eq!(read_msg(&mut s), b"#WELCOME#");
    // Our challenge to the server.
    let mine = b"{sha256}0123456789012345678901234567890123456789";
    let mut full = b"#CHALLENGE#".to_vec();
    full.extend_from_slice(mine);
    send_msg(&mut s, &full);
    let _answer = read_msg(&mut s);
    send_msg(&mut s, b"#WELCOME#");
    s
}

fn read_reply(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).ok()?;
    let mut b = vec![0; i32::from_be_bytes(h) as usize];
    s.read_exact(&mut b).ok()?;
    Some(b)
}

fn send_frame(s: &mut TcpStream, b: &[u8]) {
    s.write_all(&(b.len() as i32).to_be_bytes()).unwrap();
    s.write_all(b).unwrap();
}

#[test]
fn hostile_python_peers_are_refused_and_the_server_keeps_serving() {
    let _s = serial();
    let m = builder().start().unwrap();
    let p = port(&m);
    let marker = std::env::temp_dir().join(format!("multiproc-pickle-ran-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    // A wrong key: refused by the handshake.
    let (ok, _, err) = finish(
        run_script("python3", p, b"wrong key", "types"),
        Duration::from_secs(30),
    );
    assert!(!ok && err.contains("AuthenticationError"), "{err}");
    // A pickle that would run code in a Python server: refused, nothing
    // ran, and a traceback comes back.
    {
        let mut s = raw_client(p, KEY);
        let cmd = format!("touch {}", marker.display());
        let mut evil = b"\x80\x04(N\x8c\x06create(cos\nsystem\n(".to_vec();
        evil.push(0x8c);
        evil.push(cmd.len() as u8);
        evil.extend_from_slice(cmd.as_bytes());
        evil.extend_from_slice(b"tRt}t.");
        send_frame(&mut s, &evil);
        let r = read_reply(&mut s).expect("a reply");
        assert!(
            r.windows(10).any(|w| w == b"#TRACEBACK"),
            "{:?}",
            String::from_utf8_lossy(&r)
        );
        assert!(String::from_utf8_lossy(&r).contains("never code"));
        assert!(!marker.exists());
    }
    // Malformed pickles on a served connection: each answered with a
    // traceback (as Python's server does), and the connection goes on.
    {
        let mut s = raw_client(p, KEY);
        send_frame(
            &mut s,
            b"\x80\x04(N\x8c\x11accept_connection\x8c\x01x\x85}t.",
        );
        assert!(read_reply(&mut s).is_some());
        for bad in [
            &b"\x80\x04\x8b\xff\xff\xff\x7f"[..],
            b"\x80\x04",
            b"\x80\x04]\x94h\x00a.",
            b"\x80\x04\x8c\x011\x8c\x03len)}\x94t.",
            b"\x80\x04(\x8c\x02ff\x8c\x07__len__)}t.",
        ] {
            send_frame(&mut s, bad);
            let r = read_reply(&mut s).expect("a reply");
            assert!(r.windows(10).any(|w| w == b"#TRACEBACK"));
        }
    }
    // A huge length header: the connection is dropped, nothing allocated.
    {
        let mut s = raw_client(p, KEY);
        s.write_all(&0x7fff_ffffu32.to_be_bytes()).unwrap();
        s.write_all(b"\x80\x04").unwrap();
        assert!(read_reply(&mut s).is_none());
    }
    // A client that stops mid-frame and goes away.
    {
        let mut s = raw_client(p, KEY);
        s.write_all(&100u32.to_be_bytes()).unwrap();
        s.write_all(b"\x80\x04(N").unwrap();
        drop(s);
    }
    // A flood of garbage instead of a handshake answer.
    {
        let mut s = TcpStream::connect(("127.0.0.1", p)).unwrap();
        let _ = s.write_all(&[0xff; 4096]);
    }
    // Still serving, Python and Rust alike.
    assert_ok(run_script("python3", p, KEY, "types"));
    let l = m.list::<u8>().unwrap();
    l.push(&1).unwrap();
    assert_eq!(l.to_vec().unwrap(), [1]);
    m.shutdown().unwrap();
}

#[test]
fn eight_concurrent_python_clients_keep_exact_counts() {
    let _s = serial();
    let m = builder().start().unwrap();
    let p = port(&m);
    let per = 150;
    let script = format!(
        r#"
import sys
from multiprocessing.managers import BaseManager
class M(BaseManager): pass
for n in ("lock", "counter", "queue", "dict"):
    M.register(n)
m = M(address=("127.0.0.1", {p}), authkey=bytes.fromhex("{key}"))
m.connect()
lock, counter, q, d = m.lock(), m.counter(), m.queue(), m.dict()
me = int(sys.argv[1])
for i in range({per}):
    lock.acquire()
    counter.set(counter.get() + 1)
    lock.release()
    q.put((me, i))
    d[(me, i)] = i
print("OK")
"#,
        key = hex(KEY)
    );
    // Shared objects made by Rust, exposed by name; values stored in
    // them by Python are pickles.
    let lock = m.lock().unwrap();
    let q = m.joinable_queue::<u64>().unwrap();
    let d = m.dict::<u64, u64>().unwrap();
    m.expose("lock", &lock).unwrap();
    m.expose("queue", &q).unwrap();
    m.expose("dict", &d).unwrap();
    // The counter starts as a pickled 0, set by a Python client.
    let counter = m.value(&0u64).unwrap();
    m.expose("counter", &counter).unwrap();
    let init = format!(
        r#"
from multiprocessing.managers import BaseManager
class M(BaseManager): pass
M.register("counter")
m = M(address=("127.0.0.1", {p}), authkey=bytes.fromhex("{key}"))
m.connect()
m.counter().set(0)
print("OK")
"#,
        key = hex(KEY)
    );
    let c = python_c("python3", &init, &[]);
    assert_ok(c);
    let kids: Vec<Child> = (0..8)
        .map(|i| python_c("python3", &script, &[&i.to_string()]))
        .collect();
    for k in kids {
        assert_ok(k);
    }
    assert_eq!(q.qsize().unwrap(), 8 * per);
    assert_eq!(d.len().unwrap(), 8 * per);
    // The counter, read back by Python.
    let check = format!(
        r#"
from multiprocessing.managers import BaseManager
class M(BaseManager): pass
M.register("counter")
m = M(address=("127.0.0.1", {p}), authkey=bytes.fromhex("{key}"))
m.connect()
assert m.counter().get() == {total}, m.counter().get()
print("OK")
"#,
        key = hex(KEY),
        total = 8 * per
    );
    let c = python_c("python3", &check, &[]);
    assert_ok(c);
    m.shutdown().unwrap();
}

// ---- Rust proxies speaking Python's protocol -----------------------------

use multiproc::RemoteErrorKind;
use multiproc::manager::{
    ConnectError, GetTimeoutProxyError, ProxyError, PyDictProxy, PyQueueProxy, PythonManager,
    TryGetProxyError,
};

/// A python3 `SyncManager` server on a free port: the child and the port.
fn python_server(py: &str) -> (Child, u16) {
    let script = format!(
        r#"
import sys
from multiprocessing.managers import SyncManager
m = SyncManager(address=("127.0.0.1", 0), authkey=bytes.fromhex("{key}"))
m.start()
print(m.address[1], flush=True)
sys.stdin.read()
"#,
        key = hex(KEY)
    );
    let mut child = Command::new(py)
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = Vec::new();
    let mut out = child.stdout.take().unwrap();
    let mut b = [0u8; 1];
    // Ends at the newline, or at EOF if the server failed to start.
    while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let port = String::from_utf8(line)
        .unwrap()
        .trim()
        .parse()
        .expect("a port");
    (child, port)
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Job {
    id: u32,
    name: String,
    weights: Vec<f64>,
    done: Option<bool>,
}

#[test]
fn rust_proxies_on_a_python_syncmanager() {
    let _s = serial();
    for py in pythons() {
        let (mut server, p) = python_server(py);
        let addr = Address::parse(&format!("tcp:127.0.0.1:{p}")).unwrap();
        let pm = Manager::connect_python(&addr, KEY).unwrap();

        let d: PyDictProxy<String, Job> = pm.dict().unwrap();
        let job = Job {
            id: 7,
            name: "seven".into(),
            weights: vec![0.5, -1.0],
            done: None,
        };
        d.insert(&"a".into(), &job).unwrap();
        assert_eq!(d.get(&"a".into()).unwrap(), Some(job.clone()));
        assert_eq!(d.get(&"zz".into()).unwrap(), None);
        assert_eq!(d.len().unwrap(), 1);
        assert!(d.contains_key(&"a".into()).unwrap());
        assert_eq!(d.keys().unwrap(), ["a"]);
        assert_eq!(d.items().unwrap(), [("a".to_string(), job.clone())]);
        assert_eq!(d.remove(&"a".into()).unwrap(), Some(job));
        assert_eq!(d.remove(&"a".into()).unwrap(), None);

        let l = pm.list::<i64>().unwrap();
        l.push(&1).unwrap();
        l.extend(&[2, 3, i64::MIN]).unwrap();
        l.set(0, &10).unwrap();
        assert_eq!(l.get(0).unwrap(), 10);
        assert_eq!(l.to_vec().unwrap(), [10, 2, 3, i64::MIN]);
        assert_eq!(l.pop().unwrap(), Some(i64::MIN));
        assert_eq!(l.len().unwrap(), 3);
        assert!(matches!(
            l.get(99),
            Err(ProxyError::Remote {
                kind: RemoteErrorKind::Index,
                ..
            })
        ));

        let q: PyQueueProxy<(u8, String)> = pm.queue().unwrap();
        q.put(&(1, "x".into())).unwrap();
        assert_eq!(q.qsize().unwrap(), 1);
        assert_eq!(q.get().unwrap(), (1, "x".into()));
        assert!(matches!(q.try_get(), Err(TryGetProxyError::Empty)));
        assert!(matches!(
            q.get_timeout(Duration::from_millis(50)),
            Err(GetTimeoutProxyError::Timeout)
        ));

        let lock = pm.lock().unwrap();
        lock.acquire().unwrap();
        assert!(!lock.try_acquire().unwrap());
        assert!(!lock.acquire_timeout(Duration::from_millis(20)).unwrap());
        lock.release().unwrap();
        assert!(matches!(lock.release(), Err(ProxyError::NotOwner)));

        let ev = pm.event().unwrap();
        assert!(!ev.wait_timeout(Duration::from_millis(20)).unwrap());
        ev.set().unwrap();
        assert!(ev.is_set().unwrap());
        ev.wait().unwrap();

        let v = pm.value(&41u64).unwrap();
        v.set(&(v.get().unwrap() + 1)).unwrap();
        assert_eq!(v.get().unwrap(), 42);
        let big = pm.value(&u64::MAX).unwrap();
        assert_eq!(big.get().unwrap(), u64::MAX);

        drop((d, l, q, lock, ev, v, big));
        // End of input: the script ends, and its manager process with it
        // (killing the script would leave that one behind).
        drop(server.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the python server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A python3 manager that went away: every call of a Rust proxy fails at
/// once with `ServerGone` (before: an `Os` or `Eof` error of the
/// connection, in the crate's coarse `Error`), and connecting again with
/// `ConnectError::ServerGone`. `?` still turns them into `multiproc::Error`.
#[test]
fn a_dead_python_manager_is_server_gone() {
    let _s = serial();
    let Some(py) = pythons().into_iter().next() else {
        panic!("no python3 found");
    };
    let (mut server, p) = python_server(py);
    let addr = Address::parse(&format!("tcp:127.0.0.1:{p}")).unwrap();
    let pm = PythonManager::connect(&addr, KEY).unwrap();
    let q: PyQueueProxy<u32> = pm.queue().unwrap();
    q.put(&1).unwrap();
    // End of input: the script ends, and its manager with it.
    drop(server.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the python server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its manager process may outlive the script for a moment.
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", p)).is_ok() {
        assert!(Instant::now() < deadline, "the python manager did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    match q.qsize() {
        Err(e @ ProxyError::ServerGone(_)) => {
            let e: multiproc::Error = e.into();
            assert!(matches!(e, multiproc::Error::ServerGone(_)), "{e:?}");
        }
        other => panic!("expected ServerGone, got {other:?}"),
    }
    assert!(matches!(
        q.try_get(),
        Err(TryGetProxyError::Proxy(ProxyError::ServerGone(_)))
    ));
    assert!(matches!(pm.list::<u8>(), Err(ProxyError::ServerGone(_))));
    assert!(matches!(
        PythonManager::connect(&addr, KEY),
        Err(ConnectError::ServerGone(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn rust_pushes_and_python_pops_on_one_object() {
    let _s = serial();
    let m = builder().start().unwrap();
    let q = m.queue::<u8>().unwrap();
    m.expose("jobs", &q).unwrap();
    let results = m.dict::<u8, u8>().unwrap();
    m.expose("results", &results).unwrap();
    let pm = PythonManager::connect(m.address(), KEY).unwrap();
    let jobs: PyQueueProxy<Job> = pm.get("jobs").unwrap();
    let out: PyDictProxy<u32, String> = pm.get("results").unwrap();
    for id in 0..20 {
        jobs.put(&Job {
            id,
            name: format!("job {id}"),
            weights: vec![id as f64],
            done: Some(false),
        })
        .unwrap();
    }
    let script = format!(
        r#"
from multiprocessing.managers import BaseManager
class M(BaseManager): pass
M.register("jobs"); M.register("results")
m = M(address=("127.0.0.1", {p}), authkey=bytes.fromhex("{key}"))
m.connect()
jobs, results = m.jobs(), m.results()
for _ in range(20):
    j = jobs.get(timeout=10)
    assert j["name"] == "job %d" % j["id"] and j["weights"] == [float(j["id"])], j
    assert j["done"] is False
    results[j["id"]] = j["name"].upper()
print("OK")
"#,
        p = port(&m),
        key = hex(KEY)
    );
    for py in pythons().into_iter().take(1) {
        let c = python_c(py, &script, &[]);
        assert_ok(c);
    }
    assert_eq!(out.len().unwrap(), 20);
    assert_eq!(out.get(&7).unwrap().as_deref(), Some("JOB 7"));
    assert!(matches!(jobs.try_get(), Err(TryGetProxyError::Empty)));
    m.shutdown().unwrap();
}

/// A Python client that dies while the server runs a blocking call for it
/// (here a barrier's `wait`) has that call cancelled, as a Rust client's
/// would be: the serving thread sees the peer gone and gives up the wait,
/// which breaks the barrier as a timeout does. A wait that stayed would
/// count a dead process among the barrier's parties for ever.
#[test]
fn a_python_client_killed_in_a_blocking_call_has_it_cancelled() {
    const WAITER: &str = "
import sys
from multiprocessing.managers import BaseManager, BarrierProxy
class M(BaseManager):
    pass
M.register('get_barrier', proxytype=BarrierProxy)
m = M(address=('127.0.0.1', int(sys.argv[1])), authkey=bytes.fromhex(sys.argv[2]))
m.connect()
m.get_barrier().wait()
";
    let _s = serial();
    let m = builder().start().unwrap();
    let barrier = m.barrier(2).unwrap();
    m.expose("get_barrier", &barrier).unwrap();
    let port = port(&m).to_string();
    let key = hex(KEY);
    for py in pythons() {
        barrier.reset().unwrap();
        let mut child = python_c(py, WAITER, &[&port, &key]);
        // The Python client waits at the barrier (its call runs in the
        // server).
        let deadline = Instant::now() + Duration::from_secs(30);
        while barrier.n_waiting().unwrap() == 0 {
            if child.try_wait().unwrap().is_some() {
                let (_, out, err) = finish(child, Duration::from_secs(5));
                panic!("{py} left before waiting:\n{out}\n{err}");
            }
            assert!(Instant::now() < deadline, "{py} never waited");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !barrier.is_broken().unwrap() {
            assert!(
                Instant::now() < deadline,
                "{py}: the dead client's wait was not cancelled"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(barrier.n_waiting().unwrap(), 0);
    }
    m.shutdown().unwrap();
}
