//! `manager_python_rtt`: a CPython client (standard library only) doing
//! `d['k'] = i; d['k']` on a managed dict, against a multiproc manager
//! server and against Python's own `SyncManager` server, in the same run
//! (ns per proxy call, the best of the rounds); and, as the floor no server
//! can go below, the same client against a server that does no work at all
//! (it answers every call with a reply made in advance). One client process
//! calls all the servers in turn, round after round.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use multiproc::connection::Connection;
use multiproc::connection::listener::{Address, Listener};
use multiproc::manager::Manager;

use crate::pi::Outcome;
use crate::report::{Line, params};
use crate::workloads::Size;

/// The client: one process calling every server in turn, round after
/// round (so that a change of load hits them all alike), printing each
/// one's best ns per call. Its arguments after the key and sizes name the
/// servers: `python` (a `SyncManager` it starts itself) or `name:port`.
const CLIENT: &str = r#"
import sys, time
from multiprocessing.managers import SyncManager
key, r, reps = bytes.fromhex(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
servers = []
for target in sys.argv[4:]:
    name, _, port = target.partition(":")
    if name == "python":
        m = SyncManager(address=("127.0.0.1", 0), authkey=key)
        m.start()
    else:
        m = SyncManager(address=("127.0.0.1", int(port)), authkey=key)
        m.connect()
    # The floor's servers answer every get with None: nothing to check.
    servers.append((name, m, m.dict(), not name.startswith("floor")))
best = {}
for _ in range(reps):
    for name, m, d, check in servers:
        t = time.perf_counter()
        for i in range(r):
            d["k"] = i
            if d["k"] != i and check:
                raise SystemExit("%s: get after set %d returned another value" % (name, i))
        e = time.perf_counter() - t
        best[name] = min(best.get(name, e), e)
for name, _, _, _ in servers:
    print(name, "%.1f" % (best[name] * 1e9 / (2 * r)))
"#;

const KEY: &[u8] = b"manager_python_rtt";

/// Runs [`CLIENT`] on `servers`: each one's ns per call, by name.
fn run_client(servers: &[String], r: u64, reps: usize) -> Outcome<Vec<(String, f64)>> {
    let key: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let out = Command::new("python3")
        .args(["-c", CLIENT, &key, &r.to_string(), &reps.to_string()])
        .args(servers)
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "python3 client failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    text.lines()
        .map(|l| {
            let (name, ns) = l
                .split_once(' ')
                .ok_or_else(|| format!("python3 client printed {l:?}"))?;
            let ns = ns
                .parse()
                .map_err(|_| format!("python3 client printed {l:?}"))?;
            Ok((name.to_string(), ns))
        })
        .collect()
}

fn tcp_port(a: &Address) -> Outcome<u16> {
    match a {
        Address::Tcp(a) => Ok(a.port()),
        other => Err(format!("not a TCP address: {other}").into()),
    }
}

/// `('#RETURN', None)`, pickled (protocol 2).
const NONE_REPLY: &[u8] = b"\x80\x02X\x07\x00\x00\x00#RETURNN\x86.";
/// `('#RETURN', ('1', ('__getitem__', '__setitem__')))`: what `create`
/// answers (the ident and the exposed methods).
const CREATE_REPLY: &[u8] = b"\x80\x02X\x07\x00\x00\x00#RETURNX\x01\x00\x00\x001\
X\x0b\x00\x00\x00__getitem__X\x0b\x00\x00\x00__setitem__\x86\x86\x86.";

/// How long the floor's polling server polls for the next request before
/// it sleeps (as long as the manager's Python connections at most).
const FLOOR_SPIN: Duration = Duration::from_micros(200);

/// The floor's server: every connection answers `create` with
/// [`CREATE_REPLY`] and anything else with [`NONE_REPLY`], looking at
/// nothing of the request but whether it names `create`: one read and one
/// write per call (after polling for the request for `spin`).
fn floor_server(mut listener: Listener, stop: Arc<AtomicBool>, spin: Duration) {
    fn serve(conn: Connection, spin: Duration) -> std::io::Result<()> {
        use std::io::{ErrorKind, Read, Write};
        let mut s = std::net::TcpStream::from(conn.into_fd().map_err(std::io::Error::other)?);
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; 1 << 16];
        let mut have = 0;
        let mut out = Vec::new();
        let mut blocking = true;
        loop {
            // A whole frame (CPython's requests here are short: 4-byte
            // headers) at the front of `buf`?
            if have >= 4 {
                let len = i32::from_be_bytes(buf[..4].try_into().expect("4")) as usize;
                if len > buf.len() - 4 {
                    return Err(std::io::Error::other("a request too long for the floor"));
                }
                if have >= 4 + len {
                    let req = &buf[4..4 + len];
                    let create = req.windows(7).any(|w| w == b"\x06create");
                    let reply = if create { CREATE_REPLY } else { NONE_REPLY };
                    out.clear();
                    out.extend_from_slice(&(reply.len() as i32).to_be_bytes());
                    out.extend_from_slice(reply);
                    s.write_all(&out)?;
                    buf.copy_within(4 + len..have, 0);
                    have -= 4 + len;
                    continue;
                }
            }
            // Poll (non-blocking reads) for a while, then sleep in a
            // blocking read.
            if blocking && !spin.is_zero() {
                s.set_nonblocking(true)?;
                blocking = false;
            }
            let spun = Instant::now();
            let n = loop {
                if spin.is_zero() {
                    break None;
                }
                match s.read(&mut buf[have..]) {
                    Ok(n) => break Some(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if spun.elapsed() > spin {
                            break None;
                        }
                        std::hint::spin_loop();
                    }
                    Err(e) => return Err(e),
                }
            };
            let n = match n {
                Some(n) => n,
                None => {
                    if !blocking {
                        s.set_nonblocking(false)?;
                        blocking = true;
                    }
                    s.read(&mut buf[have..])?
                }
            };
            if n == 0 {
                return Ok(());
            }
            have += n;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        if let Ok(conn) = listener.accept_timeout(Duration::from_millis(50)) {
            std::thread::spawn(move || serve(conn, spin));
        }
    }
}

/// A floor server polling for `spin` on a thread, its port, and what
/// stops it.
fn start_floor(spin: Duration) -> Outcome<(u16, Arc<AtomicBool>, std::thread::JoinHandle<()>)> {
    let listener = Listener::bind(&Address::parse("tcp:127.0.0.1:0")?, Some(KEY))?;
    let port = tcp_port(listener.address())?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || floor_server(listener, stop, spin))
    };
    Ok((port, stop, server))
}

pub fn manager_python_rtt(size: Size) -> Outcome<Vec<Line>> {
    let r: u64 = if size.quick { 1_000 } else { 2_000 };
    let reps = if size.quick { 2 } else { 10 };
    let params = params!["R" => r];
    let m = Manager::builder()
        .address(Address::parse("tcp:127.0.0.1:0")?)
        .authkey(KEY.to_vec())
        // python3 may be 3.11: its HMAC-MD5 handshake.
        .legacy_auth(true)
        .start()?;
    let port = tcp_port(m.address())?;
    // The floor: the better of a server that sleeps in its reads at once
    // (best on a loaded machine, where a poller takes the CPU the client
    // needs) and one that polls first (best on an idle one, where waking
    // costs most).
    let (sleeping, stop_sleeping, t1) = start_floor(Duration::ZERO)?;
    let (polling, stop_polling, t2) = start_floor(FLOOR_SPIN)?;
    let result = run_client(
        &[
            format!("ours:{port}"),
            "python".into(),
            format!("floor_sleeping:{sleeping}"),
            format!("floor_polling:{polling}"),
        ],
        r,
        reps,
    );
    let _ = m.shutdown();
    stop_sleeping.store(true, Ordering::Relaxed);
    stop_polling.store(true, Ordering::Relaxed);
    let _ = (t1.join(), t2.join());
    let result = result?;
    let of = |name: &str| {
        result
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ns)| *ns)
            .ok_or_else(|| format!("python3 client did not time {name}"))
    };
    let (ours, theirs) = (of("ours")?, of("python")?);
    let floor = of("floor_sleeping")?.min(of("floor_polling")?);
    Ok(vec![
        Line::new(
            "multiproc",
            "manager_python_rtt",
            "python3_client_rust_server",
            &params,
            "ns_per_op",
            ours,
            "ok",
        ),
        Line::new(
            "python",
            "manager_python_rtt",
            "python3_client_python_server",
            &params,
            "ns_per_op",
            theirs,
            "ok",
        ),
        // The floor is this workload's raw baseline.
        Line::new(
            "raw",
            "manager_python_rtt",
            "python3_client_server_doing_nothing",
            &params,
            "ns_per_op",
            floor,
            "ok",
        ),
    ])
}
