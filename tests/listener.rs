//! Listener and Client across real processes: Unix paths, abstract names
//! and TCP; authentication with right and wrong keys; silent clients; stale
//! socket files; and the handshake against CPython (3.11's HMAC-MD5 one and,
//! when installed, 3.12's `{sha256}` one), in both directions.
//!
//! Every test is serialized: a child forked by one test inherits the
//! sockets of the others, which would keep a "dead" listener alive.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{PATIENCE, join_ok, serial, spawn, spawn_in};
use multiproc::Error;
use multiproc::connection::listener::{
    AcceptError, Address, AddressError, BindError, Client, ConnectError, Listener,
};

const KEY: &[u8] = b"the right key";
const WRONG: &[u8] = b"the wrong key";

/// A fresh directory for socket files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "multiproc-listener-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn abstract_name() -> Address {
    static N: AtomicUsize = AtomicUsize::new(0);
    Address::Abstract(
        format!(
            "multiproc-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
        .into_bytes(),
    )
}

/// A forked child connects with `key`, sends a greeting, echoes one message
/// reversed; the parent accepts and checks.
fn round_trip(address: Address) {
    let mut listener = Listener::bind(&address, Some(KEY)).unwrap();
    let addr = listener.address().clone();
    let mut p = spawn(move || {
        let c = Client::connect(&addr, Some(KEY)).unwrap();
        c.send_bytes(b"hello").unwrap();
        let m = c.recv_bytes().unwrap();
        c.send_bytes(&m.iter().rev().copied().collect::<Vec<u8>>())
            .unwrap();
    });
    let c = listener.accept_timeout(PATIENCE).unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"hello");
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    c.send_bytes(&big).unwrap();
    let back = c.recv_bytes().unwrap();
    assert_eq!(back, big.iter().rev().copied().collect::<Vec<u8>>());
    assert!(matches!(c.recv_bytes(), Err(multiproc::RecvError::Eof)));
    join_ok(&mut p);
}

#[test]
fn unix_path_round_trip_and_cleanup() {
    let _s = serial();
    let dir = TempDir::new();
    round_trip(Address::Unix(dir.sock()));
    assert!(
        !dir.sock().exists(),
        "the socket file goes with the listener"
    );
}

#[test]
fn abstract_round_trip() {
    let _s = serial();
    round_trip(abstract_name());
}

#[test]
fn tcp_round_trip() {
    let _s = serial();
    let l = Listener::bind(&Address::parse("tcp:127.0.0.1:0").unwrap(), None).unwrap();
    match l.address() {
        Address::Tcp(a) => assert_ne!(a.port(), 0, "the chosen port is reported"),
        other => panic!("unexpected address {other:?}"),
    }
    drop(l);
    round_trip(Address::parse("tcp:127.0.0.1:0").unwrap());
}

#[test]
fn no_key_no_handshake() {
    let _s = serial();
    let dir = TempDir::new();
    let mut l = Listener::bind(&Address::Unix(dir.sock()), None).unwrap();
    assert!(!l.authenticates());
    // One thread can connect first: nothing waits on the other side.
    let c = Client::connect(l.address(), None).unwrap();
    let s = l.accept_timeout(PATIENCE).unwrap();
    c.send_bytes(b"x").unwrap();
    assert_eq!(s.recv_bytes().unwrap(), b"x");
}

#[test]
fn default_key_is_inherited() {
    let _s = serial();
    let mut l = Listener::bind_default_key(&abstract_name()).unwrap();
    let addr = l.address().clone();
    let mut p = spawn(move || {
        let c = Client::connect_default_key(&addr).unwrap();
        c.send_bytes(b"same key").unwrap();
    });
    let c = l.accept_timeout(PATIENCE).unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"same key");
    join_ok(&mut p);
}

#[test]
fn wrong_key_fails_on_both_ends_and_listener_goes_on() {
    let _s = serial();
    let dir = TempDir::new();
    let mut l = Listener::bind(&Address::Unix(dir.sock()), Some(KEY)).unwrap();
    let addr = l.address().clone();
    let mut p = spawn(move || {
        let e = Client::connect(&addr, Some(WRONG)).unwrap_err();
        assert!(
            matches!(e, ConnectError::AuthenticationFailed(_)),
            "client: {e}"
        );
        // A good client after the bad one is still served.
        let c = Client::connect(&addr, Some(KEY)).unwrap();
        c.send_bytes(b"good").unwrap();
    });
    let e = l.accept_timeout(PATIENCE).unwrap_err();
    assert!(
        matches!(e, AcceptError::AuthenticationFailed(_)),
        "listener: {e}"
    );
    let c = l.accept_timeout(PATIENCE).unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"good");
    join_ok(&mut p);
}

#[test]
fn key_against_no_key_is_not_a_message() {
    let _s = serial();
    // A keyed client meets a listener without key: the listener side sees
    // the client's first bytes only after the handshake would have passed,
    // so here the client just times out waiting for a challenge.
    let dir = TempDir::new();
    let mut l = Listener::bind(&Address::Unix(dir.sock()), None).unwrap();
    let addr = l.address().clone();
    let (r, _server_side) = std::thread::scope(|s| {
        let h =
            s.spawn(|| Client::connect_timeout(&addr, Some(KEY), Some(Duration::from_millis(200))));
        let server_side = l.accept_timeout(PATIENCE).unwrap();
        (h.join().unwrap(), server_side)
    });
    assert!(matches!(r, Err(ConnectError::Timeout)), "{r:?}");
}

#[test]
fn silent_client_does_not_block_a_good_one() {
    let _s = serial();
    let dir = TempDir::new();
    // A long handshake deadline: the good client must get through while the
    // silent one is still within its time.
    let mut l = Listener::bind(&Address::Unix(dir.sock()), Some(KEY))
        .unwrap()
        .with_handshake_timeout(Duration::from_secs(600));
    let silent = UnixStream::connect(dir.sock()).unwrap();
    let addr = l.address().clone();
    let mut p = spawn(move || {
        let c = Client::connect(&addr, Some(KEY)).unwrap();
        c.send_bytes(b"made it").unwrap();
    });
    let c = l.accept_timeout(PATIENCE).unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"made it");
    join_ok(&mut p);
    drop(silent);
}

#[test]
fn handshake_deadline_drops_silent_client() {
    let _s = serial();
    let dir = TempDir::new();
    let mut l = Listener::bind(&Address::Unix(dir.sock()), Some(KEY))
        .unwrap()
        .with_handshake_timeout(Duration::from_millis(50));
    let mut silent = UnixStream::connect(dir.sock()).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    let r = l.accept_timeout(Duration::from_millis(300));
    assert!(matches!(r, Err(AcceptError::Timeout)), "{r:?}");
    // The silent client got a challenge, then the connection was closed.
    let mut got = Vec::new();
    silent.read_to_end(&mut got).unwrap();
    assert!(got.len() > 4 + 11);
    assert_eq!(&got[4..15], b"#CHALLENGE#");
    assert_eq!(&got[15..23], b"{sha256}");
}

#[test]
fn garbage_client_is_dropped_quietly() {
    let _s = serial();
    let dir = TempDir::new();
    let mut l = Listener::bind(&Address::Unix(dir.sock()), Some(KEY)).unwrap();
    // Announces a huge message: never allocated, the peer is dropped.
    let mut bad = UnixStream::connect(dir.sock()).unwrap();
    bad.write_all(&0x7fff_ffffu32.to_be_bytes()).unwrap();
    let addr = l.address().clone();
    let mut p = spawn(move || {
        let c = Client::connect(&addr, Some(KEY)).unwrap();
        c.send_bytes(b"ok").unwrap();
    });
    let c = l.accept_timeout(PATIENCE).unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"ok");
    join_ok(&mut p);
}

#[test]
fn stale_socket_file_is_replaced() {
    let _s = serial();
    let dir = TempDir::new();
    // A listener that died without cleaning up leaves its file.
    drop(StdUnixListener::bind(dir.sock()).unwrap());
    assert!(dir.sock().exists());
    let mut l = Listener::bind(&Address::Unix(dir.sock()), None).unwrap();
    let c = Client::connect(l.address(), None).unwrap();
    let s = l.accept_timeout(PATIENCE).unwrap();
    c.send_bytes(b"fresh").unwrap();
    assert_eq!(s.recv_bytes().unwrap(), b"fresh");
}

#[test]
fn live_socket_file_is_not_stolen() {
    let _s = serial();
    let dir = TempDir::new();
    let mut first = Listener::bind(&Address::Unix(dir.sock()), None).unwrap();
    let e = Listener::bind(&Address::Unix(dir.sock()), None).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(EADDRINUSE), "{e}");
    // The failed bind left nothing in the first listener's queue (it asks
    // the kernel's socket table instead of probing with a connection): the
    // next accepted connection is the real client.
    let c = Client::connect(first.address(), None).unwrap();
    let s = first.accept_timeout(PATIENCE).unwrap();
    c.send_bytes(b"still mine").unwrap();
    assert_eq!(s.recv_bytes().unwrap(), b"still mine");
    // A regular file is never removed.
    let other = dir.0.join("file");
    std::fs::write(&other, b"data").unwrap();
    assert!(Listener::bind(&Address::Unix(other.clone()), None).is_err());
    assert_eq!(std::fs::read(&other).unwrap(), b"data");
}

const EADDRINUSE: i32 = 98;

#[test]
fn address_parse_and_display() {
    let _s = serial();
    assert_eq!(
        Address::parse("unix:/tmp/x").unwrap(),
        Address::Unix("/tmp/x".into())
    );
    assert_eq!(
        Address::parse("/tmp/x").unwrap(),
        Address::Unix("/tmp/x".into())
    );
    assert_eq!(
        Address::parse("abstract:name").unwrap(),
        Address::Abstract(b"name".to_vec())
    );
    assert_eq!(
        Address::parse("\0name").unwrap(),
        Address::Abstract(b"name".to_vec())
    );
    let t = Address::parse("tcp:127.0.0.1:8080").unwrap();
    assert_eq!(t, Address::Tcp("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(t.to_string(), "tcp:127.0.0.1:8080");
    assert_eq!(Address::parse(&t.to_string()).unwrap(), t);
    assert!(Address::parse("nonsense").is_err());
    assert!(Address::parse("unix:").is_err());
}

#[test]
fn a_forked_listener_copy_does_not_remove_the_file() {
    let _s = serial();
    let dir = TempDir::new();
    // The child takes the listener out of the cell and drops it; the
    // parent's copy of the cell still holds it.
    let cell = std::cell::Cell::new(Some(
        Listener::bind(&Address::Unix(dir.sock()), None).unwrap(),
    ));
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || drop(cell.take()));
        join_ok(&mut p);
        assert!(dir.sock().exists());
    });
    drop(cell);
    assert!(!dir.sock().exists());
}

// ---- CPython interop ----------------------------------------------------

/// The interpreters to try: `python3` (3.11 here: the MD5 handshake), and
/// a 3.12 one (the `{sha256}` handshake) when pyenv has it.
fn pythons() -> Vec<String> {
    let mut v = vec!["python3".to_string()];
    let p312 = "/root/.pyenv/versions/3.12.1/bin/python3";
    if Path::new(p312).exists() {
        v.push(p312.to_string());
    }
    v
}

/// The Python expression of `a`.
fn py_address(a: &Address) -> String {
    match a {
        Address::Unix(p) => format!("{:?}", p.to_str().unwrap()),
        Address::Abstract(n) => format!("'\\0{}'", std::str::from_utf8(n).unwrap()),
        Address::Tcp(s) => format!("('{}', {})", s.ip(), s.port()),
    }
}

fn python(py: &str, script: &str) -> Child {
    Command::new(py)
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 is needed for the interop tests")
}

const PY_CLIENT: &str = r#"
import sys
from multiprocessing.connection import Client
from multiprocessing import AuthenticationError
try:
    c = Client(ADDRESS, authkey=AUTHKEY)
except AuthenticationError as e:
    print('auth-error', e, flush=True)
    sys.exit(3)
c.send_bytes(b'hello from python')
m = c.recv_bytes()
c.send_bytes(m[::-1])
print('done', flush=True)
"#;

fn python_client(py: &str, address: &Address, key: &[u8]) -> Child {
    let script = PY_CLIENT.replace("ADDRESS", &py_address(address)).replace(
        "AUTHKEY",
        &format!("b'{}'", std::str::from_utf8(key).unwrap()),
    );
    python(py, &script)
}

fn python_client_to_our_listener(address: Address) {
    for py in pythons() {
        let mut l = Listener::bind(&address, Some(KEY)).unwrap();
        let mut child = python_client(&py, l.address(), KEY);
        let c = l.accept_timeout(PATIENCE).unwrap();
        assert_eq!(c.recv_bytes().unwrap(), b"hello from python");
        c.send_bytes(b"abc").unwrap();
        assert_eq!(c.recv_bytes().unwrap(), b"cba");
        assert!(child.wait().unwrap().success(), "{py}");
    }
}

#[test]
fn python_client_our_listener_unix() {
    let _s = serial();
    let dir = TempDir::new();
    python_client_to_our_listener(Address::Unix(dir.sock()));
}

#[test]
fn python_client_our_listener_abstract_and_tcp() {
    let _s = serial();
    python_client_to_our_listener(abstract_name());
    python_client_to_our_listener(Address::parse("tcp:127.0.0.1:0").unwrap());
}

#[test]
fn python_client_wrong_key() {
    let _s = serial();
    for py in pythons() {
        let mut l = Listener::bind(&abstract_name(), Some(KEY)).unwrap();
        let mut child = python_client(&py, l.address(), WRONG);
        let e = l.accept_timeout(PATIENCE).unwrap_err();
        assert!(
            matches!(e, AcceptError::AuthenticationFailed(_)),
            "{py}: {e}"
        );
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(3), "{py}: {out}");
        assert!(out.starts_with("auth-error"), "{py}: {out}");
    }
}

const PY_LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener
from multiprocessing import AuthenticationError
with Listener(ADDRESS, authkey=AUTHKEY) as l:
    a = l.address
    print(a if isinstance(a, str) else '%s %d' % a, flush=True)
    try:
        c = l.accept()
    except AuthenticationError as e:
        print('auth-error', e, flush=True)
        sys.exit(3)
    m = c.recv_bytes()
    c.send_bytes(m[::-1])
    c.send_bytes(c.recv_bytes() + b'!')
    c.close()
"#;

/// Starts a Python listener and returns it with its address line.
fn python_listener(
    py: &str,
    address: &str,
    key: &[u8],
) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let script = PY_LISTENER.replace("ADDRESS", address).replace(
        "AUTHKEY",
        &format!("b'{}'", std::str::from_utf8(key).unwrap()),
    );
    let mut child = python(py, &script);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "{py}: the listener did not start");
    (child, out, line.trim_end().to_string())
}

#[test]
fn our_client_python_listener() {
    let _s = serial();
    for py in pythons() {
        let dir = TempDir::new();
        let path = dir.sock();
        let cases = [
            (format!("{:?}", path.to_str().unwrap()), None),
            ("('127.0.0.1', 0)".to_string(), Some(())),
        ];
        for (addr, tcp) in cases {
            let (mut child, _out, line) = python_listener(&py, &addr, KEY);
            let address = if tcp.is_some() {
                let (h, p) = line.split_once(' ').unwrap();
                Address::parse(&format!("tcp:{h}:{p}")).unwrap()
            } else {
                Address::Unix(line.into())
            };
            let c = Client::connect(&address, Some(KEY)).unwrap();
            c.send_bytes(b"xyz").unwrap();
            assert_eq!(c.recv_bytes().unwrap(), b"zyx");
            c.send_bytes(b"again").unwrap();
            assert_eq!(c.recv_bytes().unwrap(), b"again!");
            assert!(child.wait().unwrap().success(), "{py}");
        }
        assert!(!path.exists(), "python removed its socket file");
    }
}

#[test]
fn our_client_python_listener_wrong_key() {
    let _s = serial();
    for py in pythons() {
        let dir = TempDir::new();
        let (mut child, mut out, line) =
            python_listener(&py, &format!("{:?}", dir.sock().to_str().unwrap()), KEY);
        let e = Client::connect(&Address::Unix(line.into()), Some(WRONG)).unwrap_err();
        assert!(
            matches!(e, ConnectError::AuthenticationFailed(_)),
            "{py}: {e}"
        );
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(3), "{py}: {rest}");
        assert!(rest.starts_with("auth-error"), "{py}: {rest}");
    }
}

#[test]
fn connect_timeout_against_a_listener_that_never_accepts() {
    let _s = serial();
    let dir = TempDir::new();
    // A keyed listener that never calls accept: the connection completes
    // in the kernel's backlog, and no challenge ever comes.
    let l = Listener::bind(&Address::Unix(dir.sock()), Some(KEY)).unwrap();
    let t = std::time::Instant::now();
    let r = Client::connect_timeout(l.address(), Some(KEY), Some(Duration::from_millis(200)));
    assert!(matches!(r, Err(ConnectError::Timeout)), "{r:?}");
    assert!(t.elapsed() >= Duration::from_millis(200) && t.elapsed() < PATIENCE);
    drop(l);

    // A listening socket whose backlog is full (backlog 0, one pending
    // connection): a blocking connect would wait for ever; the timeout
    // bounds it, with or without a key.
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
    };
    let path = dir.0.join("full.sock");
    let s = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&s),
        &UnixAddr::new(&path).unwrap(),
    )
    .unwrap();
    listen(&s, Backlog::new(0).unwrap()).unwrap();
    let mut pending = Vec::new();
    // Fill the backlog (the kernel lets one more in than the number given).
    while pending.len() < 8 {
        let c = nix::sys::socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        match nix::sys::socket::connect(
            std::os::fd::AsRawFd::as_raw_fd(&c),
            &UnixAddr::new(&path).unwrap(),
        ) {
            Ok(()) => pending.push(c),
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => panic!("connect: {e}"),
        }
    }
    assert!(
        !pending.is_empty() && pending.len() < 8,
        "{}",
        pending.len()
    );
    for key in [None, Some(KEY)] {
        let t = std::time::Instant::now();
        let r = Client::connect_timeout(
            &Address::Unix(path.clone()),
            key,
            Some(Duration::from_millis(150)),
        );
        assert!(matches!(r, Err(ConnectError::Timeout)), "{r:?}");
        assert!(t.elapsed() >= Duration::from_millis(150) && t.elapsed() < PATIENCE);
    }
    // Room again: the same call connects (no key, so no handshake).
    for _ in 0..pending.len() {
        nix::sys::socket::accept(std::os::fd::AsRawFd::as_raw_fd(&s)).unwrap();
    }
    let c = Client::connect_timeout(
        &Address::Unix(path.clone()),
        None,
        Some(Duration::from_secs(5)),
    );
    assert!(c.is_ok(), "{c:?}");
}

/// Serves `listener` on a thread (each connection echoes one message)
/// until the returned flag is set.
fn serve_echo(
    mut listener: Listener,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let t = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            if let Ok(c) = listener.accept_timeout(Duration::from_millis(50)) {
                std::thread::spawn(move || {
                    if let Ok(m) = c.recv_bytes() {
                        let _ = c.send_bytes(&m);
                    }
                });
            }
        }
    });
    (stop, t)
}

/// How long a legitimate client takes to connect, authenticate and get an
/// echo while `idle` connections that never speak are open (a slowloris
/// flood before authentication): the median of five.
fn legit_latency_under_flood(address: &Address, listener: Listener, idle: usize) -> Duration {
    let (stop, server) = serve_echo(listener);
    let flood: Vec<std::os::fd::OwnedFd> = (0..idle)
        .map(|_| match address {
            Address::Tcp(a) => std::net::TcpStream::connect(a).unwrap().into(),
            Address::Unix(p) => UnixStream::connect(p).unwrap().into(),
            _ => unreachable!(),
        })
        .collect();
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            let c = Client::connect_timeout(address, Some(KEY), Some(PATIENCE)).unwrap();
            c.send_bytes(b"hello").unwrap();
            assert_eq!(c.recv_bytes().unwrap(), b"hello");
            t.elapsed()
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    drop(flood);
    times.sort();
    eprintln!("{idle} idle connections on {address}: legitimate client times {times:?}");
    times[2]
}

#[test]
fn a_thousand_idle_connections_do_not_delay_a_legitimate_client() {
    let _s = serial();
    // Room for the flood's both ends (before binding: the listener's
    // default cap on handshakes follows the limit).
    common::raise_nofile(4 * 1000 + 256);
    let dir = TempDir::new();
    let unix = Address::Unix(dir.sock());
    let l = Listener::bind(&unix, Some(KEY)).unwrap();
    let t = legit_latency_under_flood(&unix, l, 1000);
    assert!(t < Duration::from_millis(100), "unix: {t:?}");
    // Over TCP a flood needs no key nor local access.
    let l = Listener::bind(&Address::Tcp("127.0.0.1:0".parse().unwrap()), Some(KEY)).unwrap();
    let tcp = l.address().clone();
    let t = legit_latency_under_flood(&tcp, l, 1000);
    assert!(t < Duration::from_millis(100), "tcp: {t:?}");
}

#[test]
fn past_the_pending_cap_the_oldest_handshake_is_dropped() {
    let _s = serial();
    let dir = TempDir::new();
    let address = Address::Unix(dir.sock());
    let l = Listener::bind(&address, Some(KEY))
        .unwrap()
        .with_max_pending(16);
    let (stop, server) = serve_echo(l);
    let mut flood: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(dir.sock()).unwrap())
        .collect();
    let t = std::time::Instant::now();
    let c = Client::connect_timeout(&address, Some(KEY), Some(PATIENCE)).unwrap();
    c.send_bytes(b"hi").unwrap();
    assert_eq!(c.recv_bytes().unwrap(), b"hi");
    let took = t.elapsed();
    // The first idle connection was dropped (with or without its challenge:
    // the whole backlog may be taken before any challenge goes out); the
    // newest got its challenge and is still waiting for its answer.
    let read_all = |s: &mut UnixStream| {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 256];
        loop {
            match s.read(&mut b) {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(_) => return (got, false),
            }
        }
    };
    let (_, closed) = read_all(&mut flood[0]);
    assert!(closed, "the oldest idle connection is still open");
    let (last, closed) = read_all(flood.last_mut().unwrap());
    assert!(!closed && last.windows(11).any(|w| w == b"#CHALLENGE#"));
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_socket_file_is_private_whatever_the_umask() {
    let _s = serial();
    let dir = TempDir::new();
    let path = dir.sock();
    // In a child: the umask is process-wide.
    let mut p = spawn(move || -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: umask only sets the process's file mode mask.
        unsafe { libc::umask(0) };
        let l = Listener::bind(&Address::Unix(path.clone()), None).map_err(|e| e.to_string())?;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        drop(l);
        match mode {
            0o600 => Ok(()),
            m => Err(format!("socket file mode {m:o} under umask 000")),
        }
    });
    join_ok(&mut p);
}

/// A timeout too long to add to the clock is no limit, not a panic: before,
/// `connect_timeout` and `accept_timeout` computed `Instant::now() + t` and
/// panicked on the overflow.
#[test]
fn timeouts_too_long_to_represent_are_no_limit() {
    let _s = serial();
    for address in [abstract_name(), Address::parse("tcp:127.0.0.1:0").unwrap()] {
        let mut l = Listener::bind(&address, None).unwrap();
        let c = Client::connect_timeout(l.address(), None, Some(Duration::MAX)).unwrap();
        let s = l.accept_timeout(Duration::MAX).unwrap();
        c.send_bytes(b"far").unwrap();
        assert_eq!(s.recv_bytes().unwrap(), b"far");
    }
}

/// A string that is no address is an `AddressError` a caller can match
/// (and `?` makes it the crate's `InvalidArgument`).
#[test]
fn bad_address_strings_are_address_errors() {
    assert!(matches!(
        Address::parse("unix:"),
        Err(AddressError::EmptyPath)
    ));
    match Address::parse("no address at all") {
        Err(AddressError::Invalid { address, .. }) => assert_eq!(address, "no address at all"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(matches!(
        "tcp:127.0.0.1:notaport".parse::<Address>(),
        Err(AddressError::Invalid { .. })
    ));
    fn coarse() -> multiproc::Result<Address> {
        Ok(Address::parse("unix:")?)
    }
    assert!(matches!(coarse(), Err(Error::InvalidArgument(_))));
}

/// Binding where a live listener listens is `BindError::InUse`, for a
/// Unix path, an abstract name and a TCP port; `?` keeps the errno.
#[test]
fn binding_an_address_in_use_is_in_use() {
    let dir = TempDir::new();
    for address in [
        Address::Unix(dir.sock()),
        abstract_name(),
        Address::parse("tcp:127.0.0.1:0").unwrap(),
    ] {
        let l = Listener::bind(&address, None).unwrap();
        match Listener::bind(l.address(), None) {
            Err(BindError::InUse { address, source }) => {
                assert_eq!(&address, l.address());
                assert_eq!(source.raw_os_error(), Some(libc::EADDRINUSE));
            }
            other => panic!("{address}: expected InUse, got {other:?}"),
        }
        let e: Error = Listener::bind(l.address(), None).unwrap_err().into();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
    }
    // An address this host does not have is Invalid, not in use.
    let foreign = Address::parse("tcp:192.0.2.1:0").unwrap();
    assert!(
        matches!(
            Listener::bind(&foreign, None),
            Err(BindError::Invalid { .. })
        ),
        "binding 192.0.2.1 should fail with EADDRNOTAVAIL"
    );
}

/// Nobody listening is `ConnectError::Os` with the errno a caller checks.
#[test]
fn connecting_to_nobody_is_os_with_the_errno() {
    let dir = TempDir::new();
    let e = Client::connect(&Address::Unix(dir.sock()), Some(KEY)).unwrap_err();
    assert!(matches!(e, ConnectError::Os { .. }), "{e:?}");
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
}

/// A listener that hangs up in the middle of the handshake is
/// `ConnectError::PeerGone` (and `Error::Eof` once converted).
#[test]
fn a_listener_that_hangs_up_mid_handshake_is_peer_gone() {
    let _s = serial();
    let dir = TempDir::new();
    let raw = StdUnixListener::bind(dir.sock()).unwrap();
    let closer = std::thread::spawn(move || drop(raw.accept()));
    let e =
        Client::connect_timeout(&Address::Unix(dir.sock()), Some(KEY), Some(PATIENCE)).unwrap_err();
    closer.join().unwrap();
    assert!(matches!(e, ConnectError::PeerGone), "{e:?}");
    assert!(matches!(Error::from(e), Error::Eof));
}
