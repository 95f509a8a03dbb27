//! `manager_rtt` and `manager_append`: calls on manager-held objects,
//! beside bare round trips over blocking Unix sockets.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use multiproc::Process;
use multiproc::manager::Manager;

use super::{P, Size, keep, run_forked};
use crate::pi::Outcome;
use crate::report::{Line, params};
use crate::support::{read_full, socketpair, write_full};

/// The sizes of a manager dict set's request and reply frames, for the
/// manager baselines' messages.
const REQUEST: usize = 36;
const REPLY: usize = 8;

/// A bare server process: answers `n` `REQUEST`-byte messages on each
/// socket with a `REPLY`-byte one, a thread per socket, with plain blocking
/// reads and writes (no spinning, no encoding, no dispatch).
fn bare_server(socks: Vec<OwnedFd>, n: u64) -> Outcome<Process<'static>> {
    let mut p = Process::new(move || -> nix::Result<()> {
        std::thread::scope(|s| {
            let threads: Vec<_> = socks
                .iter()
                .map(|fd| {
                    s.spawn(move || -> nix::Result<()> {
                        let mut req = [0u8; REQUEST];
                        for _ in 0..n {
                            read_full(fd, &mut req)?;
                            write_full(fd, &[1u8; REPLY])?;
                        }
                        Ok(())
                    })
                })
                .collect();
            threads
                .into_iter()
                .try_for_each(|t| t.join().unwrap_or(Err(nix::errno::Errno::EINTR)))
        })
    })
    .with_daemon(true);
    p.start()?;
    Ok(p)
}

/// `n` bare request/response round trips on `fd`.
fn bare_calls(fd: &OwnedFd, n: u64) -> nix::Result<()> {
    let mut rep = [0u8; REPLY];
    for _ in 0..n {
        write_full(fd, &[2u8; REQUEST])?;
        read_full(fd, &mut rep)?;
    }
    Ok(())
}

/// `manager_rtt`: one client does R set + get pairs of one key on a
/// manager-held dict (ns per proxy call). Baseline: as many round trips of
/// the same sizes over a bare blocking Unix socket.
pub(super) fn manager_rtt(size: Size) -> Outcome<Vec<Line>> {
    let r: u64 = size.pick(10_000, 2_000);
    let calls = 2 * r;
    let params = params!["R" => r];
    let m = Manager::start()?;
    let d = m.dict::<String, u64>()?;
    let key = "key".to_string();
    let (mut t_mp, mut t_raw, mut ok) = (Duration::MAX, Duration::MAX, String::from("ok"));
    for _ in 0..size.reps {
        let t = Instant::now();
        for i in 0..r {
            d.insert(&key, &i)?;
            if d.get(&key)? != Some(i) {
                keep(&mut ok, format!("get after set {i} returned another value"));
            }
        }
        t_mp = t_mp.min(t.elapsed());

        let (a, b) = socketpair()?;
        let mut server = bare_server(vec![b], calls)?;
        let t = Instant::now();
        bare_calls(&a, calls)?;
        t_raw = t_raw.min(t.elapsed());
        server.join_ok()?;
    }
    m.shutdown()?;
    let per = |t: Duration| t.as_nanos() as f64 / calls as f64;
    Ok(vec![
        Line::new(
            "multiproc",
            "manager_rtt",
            "dict",
            &params,
            "ns_per_op",
            per(t_mp),
            &ok,
        ),
        Line::new(
            "raw",
            "manager_rtt",
            "bare_unix_socket",
            &params,
            "ns_per_op",
            per(t_raw),
            "ok",
        ),
    ])
}

/// `manager_append`: P client processes each append K items to a
/// manager-held list; the final length is checked. Baseline: P clients each
/// doing K bare round trips with a server that answers each on its own
/// thread.
pub(super) fn manager_append(size: Size) -> Outcome<Vec<Line>> {
    let k: u64 = size.pick(10_000, 2_000);
    let params = params!["P" => P, "K" => k];
    let m = Manager::start()?;
    let (mut t_mp, mut t_raw, mut ok) = (Duration::MAX, Duration::MAX, String::from("ok"));
    for _ in 0..size.reps {
        let list = m.list::<u64>()?;
        t_mp = t_mp.min(run_forked(P, |i| {
            for j in 0..k {
                list.push(&(i as u64 * k + j)).expect("append");
            }
        })?);
        let mut items = list.to_vec()?;
        items.sort_unstable();
        if items != (0..P as u64 * k).collect::<Vec<_>>() {
            keep(
                &mut ok,
                format!(
                    "the list holds {} items, not each of 0..{} once",
                    items.len(),
                    P as u64 * k
                ),
            );
        }

        let (clients, servers): (Vec<_>, Vec<_>) = (0..P)
            .map(|_| socketpair())
            .collect::<nix::Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let mut server = bare_server(servers, k)?;
        t_raw = t_raw.min(run_forked(P, |i| {
            bare_calls(&clients[i], k).expect("round trip")
        })?);
        server.join_ok()?;
    }
    m.shutdown()?;
    let rate = |t: Duration| (P as u64 * k) as f64 / t.as_secs_f64();
    Ok(vec![
        Line::new(
            "multiproc",
            "manager_append",
            "list",
            &params,
            "appends_per_s",
            rate(t_mp),
            &ok,
        ),
        Line::new(
            "raw",
            "manager_append",
            "bare_unix_socket",
            &params,
            "appends_per_s",
            rate(t_raw),
            "ok",
        ),
    ])
}
