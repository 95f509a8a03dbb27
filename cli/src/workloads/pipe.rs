//! `pipe_rtt` and `pipe_bw`: a duplex pipe's round trips and bandwidth,
//! beside a blocking socketpair.

use std::time::{Duration, Instant};

use super::{Size, keep};
use crate::pi::Outcome;
use crate::report::{Line, params};
use crate::support::{read_full, socketpair, write_full};

/// The time of `r` round trips of `msg` over a new duplex pipe, blocking,
/// to a child that sends each message back; a reply that differs is noted
/// in `ok`.
pub(super) fn blocking_rtt(r: usize, msg: &[u8], ok: &mut String) -> multiproc::Result<Duration> {
    let (a, b) = multiproc::pipe(true)?;
    multiproc::process::scope(|ps| {
        let mut p = ps.process(move || -> multiproc::Result<()> {
            for _ in 0..r {
                b.send_bytes(&b.recv_bytes()?)?;
            }
            Ok(())
        });
        p.start()?;
        let t = Instant::now();
        for _ in 0..r {
            a.send_bytes(msg)?;
            if a.recv_bytes()? != msg {
                keep(ok, "a reply differs from the message".into());
            }
        }
        let t = t.elapsed();
        p.join_ok()?;
        Ok(t)
    })
}

pub(super) fn pipe_rtt(size: Size) -> Outcome<Vec<Line>> {
    let r: usize = size.pick(100_000, 5_000);
    let params = params!["R" => r, "bytes" => 64];
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    let mut ok = String::from("ok");
    let msg = [7u8; 64];
    multiproc::process::scope(|ps| {
        for _ in 0..size.reps {
            t_mp = t_mp.min(blocking_rtt(r, &msg, &mut ok)?);

            let (x, y) = socketpair()?;
            let mut q = ps.process(move || -> nix::Result<()> {
                let mut buf = [0u8; 64];
                for _ in 0..r {
                    read_full(&y, &mut buf)?;
                    write_full(&y, &buf)?;
                }
                Ok(())
            });
            q.start()?;
            let t = Instant::now();
            let mut buf = [0u8; 64];
            for _ in 0..r {
                write_full(&x, &msg)?;
                read_full(&x, &mut buf)?;
            }
            t_raw = t_raw.min(t.elapsed());
            q.join_ok()?;
        }
        let per = |t: Duration| t.as_nanos() as f64 / r as f64;
        Ok(vec![
            Line::new(
                "multiproc",
                "pipe_rtt",
                "Pipe_duplex",
                &params,
                "ns_per_round_trip",
                per(t_mp),
                &ok,
            ),
            Line::new(
                "raw",
                "pipe_rtt",
                "blocking_socketpair",
                &params,
                "ns_per_round_trip",
                per(t_raw),
                "ok",
            ),
        ])
    })
}

pub(super) fn pipe_bw(size: Size) -> Outcome<Vec<Line>> {
    const MSG: usize = 1 << 20;
    let total: usize = size.pick(1 << 30, 64 << 20);
    let n = total / MSG;
    let params = params!["total_bytes" => total, "message_bytes" => MSG];
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    let mut ok = String::from("ok");
    multiproc::process::scope(|ps| {
        for _ in 0..size.reps {
            let (a, b) = multiproc::pipe(true)?;
            let mut p = ps.process(move || -> multiproc::Result<()> {
                let mut msg = vec![5u8; MSG];
                for i in 0..n {
                    msg[0] = i as u8;
                    b.send_bytes(&msg)?;
                }
                Ok(())
            });
            let t = Instant::now();
            p.start()?;
            for i in 0..n {
                let m = a.recv_bytes()?;
                if m.len() != MSG || m[0] != i as u8 {
                    keep(
                        &mut ok,
                        format!("message {i} has {} bytes or is out of order", m.len()),
                    );
                }
            }
            t_mp = t_mp.min(t.elapsed());
            p.join_ok()?;

            let (x, y) = socketpair()?;
            let mut q = ps.process(move || -> nix::Result<()> {
                let msg = vec![5u8; MSG];
                for _ in 0..n {
                    write_full(&y, &msg)?;
                }
                Ok(())
            });
            let t = Instant::now();
            q.start()?;
            let mut buf = vec![0u8; MSG];
            for _ in 0..n {
                read_full(&x, &mut buf)?;
            }
            t_raw = t_raw.min(t.elapsed());
            q.join_ok()?;
        }
        let rate = |t: Duration| total as f64 / 1e9 / t.as_secs_f64();
        Ok(vec![
            Line::new(
                "multiproc",
                "pipe_bw",
                "Pipe_duplex",
                &params,
                "GB_per_s",
                rate(t_mp),
                &ok,
            ),
            Line::new(
                "raw",
                "pipe_bw",
                "socketpair_read_write",
                &params,
                "GB_per_s",
                rate(t_raw),
                "ok",
            ),
        ])
    })
}
