//! `pool_map`: `Pool::map` of a trivial task, beside tasks pipelined to one
//! forked process through bare shared-memory rings.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::Pool;

use super::{P, Size, check_eq, keep};
use crate::pi::Outcome;
use crate::report::{Line, params};
use crate::support::{SLOTS, SharedRing};

/// The pool workloads' trivial task.
fn inc(x: u64) -> u64 {
    x + 1
}

/// `pool_map`: a pool of P processes maps `inc` over T items, with chunks
/// of one item and with Python's default chunk size (T / 4P); the pool is
/// started before the clock. Baseline: the same T items pipelined to one
/// forked process and T answers back through two bare lock-free
/// shared-memory rings with spinning waiters (the floor of the pool's way
/// of moving tasks, without its locks, encoding and robustness).
pub(super) fn pool_map(size: Size) -> Outcome<Vec<Line>> {
    let t: u64 = size.pick(10_000, 2_000);
    let items: Vec<u64> = (0..t).collect();
    let want: Vec<u64> = items.iter().map(|&x| inc(x)).collect();
    let pool = Pool::new(P)?;
    pool.map(inc, 0..(P as u64 * 4))?; // every worker up and running
    let mut lines = Vec::new();
    for (variant, chunksize) in [
        ("chunksize_1", 1),
        ("default", t.div_ceil(4 * P as u64) as usize),
    ] {
        let params = params!["T" => t, "P" => P, "chunksize" => chunksize];
        let (mut best, mut ok) = (Duration::MAX, String::from("ok"));
        for _ in 0..size.reps {
            let start = Instant::now();
            let got = pool.map_chunked(inc, items.iter().copied(), chunksize)?;
            best = best.min(start.elapsed());
            if got != want {
                keep(&mut ok, "results differ from inc(x) in order".into());
            }
        }
        let us = best.as_secs_f64() * 1e6 / t as f64;
        lines.push(Line::new(
            "multiproc",
            "pool_map",
            variant,
            &params,
            "us_per_task",
            us,
            &ok,
        ));
    }
    pool.close();
    pool.join()?;

    let (mut best, mut ok) = (Duration::MAX, String::from("ok"));
    for _ in 0..size.reps {
        let (to, back) = (SharedRing::new(), SharedRing::new());
        let (to, back) = (to.ring(), back.ring());
        multiproc::process::scope(|ps| -> Outcome<()> {
            let mut child = ps
                .process(|| {
                    for _ in 0..t {
                        let head = to.head.load(Ordering::Relaxed);
                        while to.tail.load(Ordering::Acquire) == head {
                            std::hint::spin_loop();
                        }
                        let x = to.slots[(head % SLOTS) as usize].load(Ordering::Relaxed);
                        to.head.store(head + 1, Ordering::Release);
                        let tail = back.tail.load(Ordering::Relaxed);
                        while tail - back.head.load(Ordering::Acquire) == SLOTS {
                            std::hint::spin_loop();
                        }
                        back.slots[(tail % SLOTS) as usize].store(inc(x), Ordering::Relaxed);
                        back.tail.store(tail + 1, Ordering::Release);
                    }
                })
                .with_daemon(true);
            child.start()?;
            let start = Instant::now();
            let (mut sent, mut got, mut s) = (0, 0, 0);
            while got < t {
                let tail = to.tail.load(Ordering::Relaxed);
                if sent < t && tail - to.head.load(Ordering::Acquire) < SLOTS {
                    to.slots[(tail % SLOTS) as usize].store(sent, Ordering::Relaxed);
                    to.tail.store(tail + 1, Ordering::Release);
                    sent += 1;
                }
                let head = back.head.load(Ordering::Relaxed);
                if back.tail.load(Ordering::Acquire) != head {
                    s += back.slots[(head % SLOTS) as usize].load(Ordering::Relaxed);
                    back.head.store(head + 1, Ordering::Release);
                    got += 1;
                }
            }
            best = best.min(start.elapsed());
            child.join_ok()?;
            keep(&mut ok, check_eq(s, t * (t + 1) / 2));
            Ok(())
        })?;
    }
    let us = best.as_secs_f64() * 1e6 / t as f64;
    let params = params!["T" => t, "P" => 1];
    lines.push(Line::new(
        "raw",
        "pool_map",
        "bare_pipelined_shm_rings",
        &params,
        "us_per_task",
        us,
        &ok,
    ));
    Ok(lines)
}
