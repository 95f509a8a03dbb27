//! `manager_python_rtt`: a CPython client (standard library only) doing
//! `d['k'] = i; d['k']` on a managed dict, against a multiproc manager
//! server and against Python's own `SyncManager` server, in the same run
//! (ns per proxy call, the best of the repetitions).

use std::process::Command;

use multiproc::connection::listener::Address;
use multiproc::manager::Manager;

use crate::pi::Outcome;
use crate::report::{Line, params};
use crate::workloads::Size;

/// The client: with a port, connects to that server; with `python`, starts
/// its own `SyncManager` first. Prints the best ns per call.
const CLIENT: &str = r#"
import sys, time
from multiprocessing.managers import SyncManager
port, key, r, reps = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if port == "python":
    m = SyncManager(address=("127.0.0.1", 0), authkey=key)
    m.start()
else:
    m = SyncManager(address=("127.0.0.1", int(port)), authkey=key)
    m.connect()
d = m.dict()
best = None
for _ in range(reps):
    t = time.perf_counter()
    for i in range(r):
        d["k"] = i
        if d["k"] != i:
            raise SystemExit("get after set %d returned another value" % i)
    e = time.perf_counter() - t
    best = e if best is None else min(best, e)
print("%.1f" % (best * 1e9 / (2 * r)))
"#;

const KEY: &[u8] = b"manager_python_rtt";

fn run_client(port: &str, r: u64, reps: usize) -> Outcome<f64> {
    let key: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let out = Command::new("python3")
        .args(["-c", CLIENT, port, &key, &r.to_string(), &reps.to_string()])
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
    Ok(text
        .trim()
        .parse()
        .map_err(|_| format!("python3 client printed {text:?}"))?)
}

pub fn manager_python_rtt(size: Size) -> Outcome<Vec<Line>> {
    let r: u64 = if size.quick { 1_000 } else { 5_000 };
    let reps = if size.quick { 1 } else { 3 };
    let params = params!["R" => r];
    let m = Manager::builder()
        .address(Address::parse("tcp:127.0.0.1:0")?)
        .authkey(KEY.to_vec())
        // python3 may be 3.11: its HMAC-MD5 handshake.
        .legacy_auth(true)
        .start()?;
    let port = match m.address() {
        Address::Tcp(a) => a.port().to_string(),
        other => return Err(format!("not a TCP address: {other}").into()),
    };
    let ours = run_client(&port, r, reps);
    let _ = m.shutdown();
    let ours = ours?;
    let theirs = run_client("python", r, reps)?;
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
    ])
}
