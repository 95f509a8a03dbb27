#![allow(missing_docs)] // a bench binary, not API
//! The manager workloads of `shared/WORKLOADS.md`, each with a raw baseline
//! measured in the same run:
//! - `manager_rtt`: one client process does R = 1e4 set + get of one key
//!   on a manager-held dict; ns per proxy call. Baseline: the same number
//!   of request/response round trips of the same sizes over a bare Unix
//!   stream socket to a process that answers with plain blocking
//!   read/write (no spinning, no encoding, no dispatch).
//! - `manager_append`: P = 2 client processes each append K = 1e4 items to
//!   a manager-held list; appends per second, final length checked.
//!   Baseline: 2 client processes each doing K bare round trips with a
//!   server process that answers each on its own thread.
//!
//! First the WORKLOADS.md JSON lines (stdout) and ratios (stderr) at the
//! full sizes, then criterion's statistics for the same operations. Run
//! with `cargo bench --all-features --bench manager`; `-- --quick` for
//! smaller sizes and no criterion part, `-- --workloads-only` for the full
//! sizes without it.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

use multiproc_bench_support as support;

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use multiproc::manager::{Manager, ManagerBuilder};
use multiproc::{Process, StartMethod};
use support::{json_line as line, run_forked};

/// The sizes of a manager dict set's request and reply frames (header
/// included), for the baseline's messages.
const REQUEST: usize = 36;
const REPLY: usize = 8;

fn builder() -> ManagerBuilder {
    // SAFETY: the bench harness's threads (if any) hold no lock the server
    // process needs.
    unsafe {
        Manager::builder()
            .start_method(StartMethod::Fork)
            .allow_threads()
    }
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    support::socketpair().expect("socketpair")
}

fn read_exact(fd: &OwnedFd, buf: &mut [u8]) -> bool {
    support::read_full(fd, buf).is_ok()
}

/// A bare server: answers `n` `REQUEST`-byte messages on each socket with
/// a `REPLY`-byte one each, a thread per socket. (It counts rather than
/// waiting for end of file: the child inherits the client ends too.)
fn bare_server(socks: Vec<OwnedFd>, n: u64) -> Process<'static> {
    // SAFETY: the child starts its own threads and uses only its sockets.
    let mut p = unsafe {
        Process::new(move || {
            std::thread::scope(|s| {
                for fd in &socks {
                    s.spawn(move || {
                        let mut req = [0u8; REQUEST];
                        let rep = [1u8; REPLY];
                        for _ in 0..n {
                            if !read_exact(fd, &mut req) || nix::unistd::write(fd, &rep).is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        })
        .allow_threads()
    };
    p.start().unwrap();
    p
}

/// `n` bare round trips on `fd`.
fn bare_calls(fd: &OwnedFd, n: u64) {
    let req = [2u8; REQUEST];
    let mut rep = [0u8; REPLY];
    for _ in 0..n {
        nix::unistd::write(fd, &req).unwrap();
        assert!(read_exact(fd, &mut rep));
    }
}

/// Time of `calls` bare round trips from this process.
fn bare_rtt(calls: u64) -> Duration {
    let (a, b) = socketpair();
    let mut server = bare_server(vec![b], calls);
    let t = Instant::now();
    bare_calls(&a, calls);
    let dt = t.elapsed();
    drop(a);
    server.join().unwrap();
    dt
}

/// Time of `calls` manager calls (set, get alternately) from this process.
fn manager_rtt_run(m: &Manager, calls: u64) -> (Duration, bool) {
    let d = m.dict::<String, u64>().unwrap();
    let key = "key".to_string();
    let mut ok = true;
    let t = Instant::now();
    for i in 0..calls / 2 {
        d.insert(&key, &i).unwrap();
        ok &= d.get(&key).unwrap() == Some(i);
    }
    (t.elapsed(), ok)
}

/// Time for `p` client processes to append `k` items each; whether the
/// final length is right.
fn manager_append_run(m: &Manager, p: usize, k: u64) -> (Duration, bool) {
    let list = m.list::<u64>().unwrap();
    // Connect the children before the clock starts (as the baseline's
    // sockets are made before it).
    let t = run_forked(p, |i| {
        for j in 0..k {
            list.push(&(i as u64 * k + j)).unwrap();
        }
    });
    (t, list.len().unwrap() == p * k as usize)
}

fn bare_append(p: usize, k: u64) -> Duration {
    let (clients, servers): (Vec<_>, Vec<_>) = (0..p).map(|_| socketpair()).unzip();
    let mut server = bare_server(servers, k);
    let t = run_forked(p, |i| bare_calls(&clients[i], k));
    drop(clients);
    server.join().unwrap();
    t
}

fn best<T>(reps: usize, mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut out = f();
    for _ in 1..reps {
        let r = f();
        if r.0 < out.0 {
            out = r;
        }
    }
    out
}

/// Python's SyncManager on the same workloads, run now by
/// `benches/python/manager.py` (if python3 is there): (ns per call,
/// appends per second).
fn python_figures() -> Option<(f64, f64)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python/manager.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |workload: &str| -> Option<f64> {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("\"workload\": \"{workload}\"")))?;
        println!("{line}");
        let v = line.split("\"value\": ").nth(1)?;
        v.split([',', '}']).next()?.trim().parse().ok()
    };
    Some((value("manager_rtt")?, value("manager_append")?))
}

fn workloads(r: u64, k: u64, reps: usize) {
    let m = builder().start().unwrap();
    // manager_rtt: R set+get pairs = 2R proxy calls.
    let calls = 2 * r;
    let (t_mp, ok) = best(reps, || manager_rtt_run(&m, calls));
    let (t_raw, _) = best(reps, || (bare_rtt(calls), ()));
    let ns_mp = t_mp.as_nanos() as f64 / calls as f64;
    let ns_raw = t_raw.as_nanos() as f64 / calls as f64;
    let params = format!("\"R\": {r}");
    let check = if ok {
        "ok"
    } else {
        "a get returned the wrong value"
    };
    line(
        "multiproc",
        "manager_rtt",
        "dict_set_get",
        &params,
        "ns_per_op",
        ns_mp,
        check,
    );
    line(
        "raw",
        "manager_rtt",
        "blocking_unix_socket",
        &params,
        "ns_per_op",
        ns_raw,
        "ok",
    );
    eprintln!(
        "manager_rtt: {:.2} us per proxy call, bare blocking socket round trip {:.2} us \
         (ratio {:.3})",
        ns_mp / 1e3,
        ns_raw / 1e3,
        ns_mp / ns_raw
    );
    // manager_append: P = 2 clients, K appends each.
    let p = 2;
    let (t_mp, ok) = best(reps, || manager_append_run(&m, p, k));
    let (t_raw, _) = best(reps, || (bare_append(p, k), ()));
    let rate_mp = (p as u64 * k) as f64 / t_mp.as_secs_f64();
    let rate_raw = (p as u64 * k) as f64 / t_raw.as_secs_f64();
    let params = format!("\"P\": {p}, \"K\": {k}");
    let check = if ok { "ok" } else { "wrong final length" };
    line(
        "multiproc",
        "manager_append",
        "list_append",
        &params,
        "appends_per_s",
        rate_mp,
        check,
    );
    line(
        "raw",
        "manager_append",
        "blocking_unix_socket",
        &params,
        "appends_per_s",
        rate_raw,
        "ok",
    );
    eprintln!(
        "manager_append: {:.0} appends/s, bare blocking socket round trips {:.0}/s \
         (ratio {:.2})",
        rate_mp,
        rate_raw,
        rate_mp / rate_raw
    );
    m.shutdown().unwrap();
    match python_figures() {
        Some((py_ns, py_rate)) => eprintln!(
            "same run, Python's SyncManager: {:.1} us per call ({:.1}x multiproc's time), \
             {:.0} appends/s (multiproc {:.1}x its rate); targets 10x",
            py_ns / 1e3,
            py_ns / ns_mp,
            py_rate,
            rate_mp / py_rate
        ),
        None => eprintln!("(python3 not run: no Python comparison in this run)"),
    }
}

fn criterion_part() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let m = builder().start().unwrap();
    let mut g = c.benchmark_group("manager_rtt");
    g.throughput(Throughput::Elements(1));
    g.bench_function("dict_set_or_get", |b| {
        b.iter_custom(|iters| manager_rtt_run(&m, iters.max(2)).0)
    });
    g.bench_function("bare_socket_round_trip", |b| b.iter_custom(bare_rtt));
    g.finish();
    let mut g = c.benchmark_group("manager_append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("list_append_2_clients", |b| {
        b.iter_custom(|iters| manager_append_run(&m, 2, iters.div_ceil(2)).0)
    });
    g.bench_function("bare_round_trip_2_clients", |b| {
        b.iter_custom(|iters| bare_append(2, iters.div_ceil(2)))
    });
    g.finish();
    m.shutdown().unwrap();
    c.final_summary();
}

fn main() {
    if std::env::var_os("BENCH_EXIT_AT_ONCE").is_some() {
        return;
    }
    multiproc::init();
    let quick = std::env::args().any(|a| a == "--quick");
    if quick {
        workloads(2_000, 2_000, 2);
    } else {
        workloads(10_000, 10_000, 3);
        if !std::env::args().any(|a| a == "--workloads-only") {
            criterion_part();
        }
    }
}
