#![allow(missing_docs)] // a bench binary, not API
//! The pool workloads of `shared/WORKLOADS.md`, with raw baselines measured
//! in the same run:
//! - `pool_map`: map a trivial function over T = 1e4 items with a pool of
//!   P = 2 processes, chunk size 1 and the default (T / (4 P)), in
//!   microseconds per task. Baselines: the same T items pipelined to one
//!   forked process and back through two bare lock-free shared-memory
//!   rings with spinning (the floor for the pool's way of moving tasks);
//!   and T round trips (hand over one item, wait for its answer) through a
//!   bare spinning shared-memory slot pair and through a bare blocking
//!   socketpair (what a pipe-based pool, like Python's, pays per message
//!   at least).
//! - `pi`, variant `pool`: pi from N = 1e8 terms split in C chunks
//!   (coarse: C = 10, fine: C = 10,000) handed out by `Pool::map`, against
//!   one process doing it all (seq) in the same run.
//!
//! Criterion measures `pool_map` first (per-map time); then the JSON lines
//! (best of a few runs) and the ratios go to stdout and stderr.
//!
//! Run with `cargo bench --all-features --bench pool`; `-- --quick` for a
//! short run.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

use multiproc_bench_support as support;

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use memmap2::MmapRaw;
use multiproc::pool::Pool;
use support::json_line as line;

const P: usize = 2;
const T: u64 = 10_000;

fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

fn pi_part(range: (u64, u64)) -> f64 {
    let mut s = 0.0;
    for k in range.0..range.1 {
        let d = (2 * k + 1) as f64;
        s += 1.0 / (d * d);
    }
    s
}

fn best(reps: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..reps).map(|_| f()).min().unwrap()
}

fn make_pool() -> Pool {
    // SAFETY: the workers run `inc` and `pi_part` only (no locks); the
    // bench harness's threads, if any, hold none of the locks they use.
    unsafe { Pool::builder().processes(P).allow_threads() }
        .build()
        .expect("pool")
}

/// One map of T items; the check is that every result is right.
fn pool_map(pool: &Pool, chunksize: Option<usize>) -> (Duration, bool) {
    let t = Instant::now();
    let r = match chunksize {
        Some(c) => pool.map_chunked(inc, 0..T, c),
        None => pool.map(inc, 0..T),
    }
    .expect("map");
    let el = t.elapsed();
    let ok = r.len() == T as usize && r.iter().enumerate().all(|(i, v)| *v == i as u64 + 1);
    (el, ok)
}

fn shared_mapping(len: usize) -> MmapRaw {
    support::shared_mapping(len, true)
}

/// T round trips through two spinning shared-memory slots (request on one
/// cache line, answer on another) with one forked process.
fn bare_shm_handoff(n: u64) -> Duration {
    let map = shared_mapping(4096);
    // SAFETY: a populated 4096-byte page-aligned mapping, outliving the
    // reference; offset 0 is aligned for u64.
    let req = unsafe { AtomicU64::from_ptr(map.as_mut_ptr().cast()) };
    // SAFETY: as above, at offset 64.
    let resp = unsafe { AtomicU64::from_ptr(map.as_mut_ptr().wrapping_add(64).cast()) };
    // SAFETY: the child only spins on the two atomics.
    let mut child = unsafe {
        multiproc::Process::new(move || {
            for k in 1..=n {
                while req.load(Ordering::Acquire) != k {
                    std::hint::spin_loop();
                }
                resp.store(inc(k), Ordering::Release);
            }
        })
        .allow_threads()
    };
    child.start().expect("fork");
    let t = Instant::now();
    for k in 1..=n {
        req.store(k, Ordering::Release);
        while resp.load(Ordering::Acquire) != k + 1 {
            std::hint::spin_loop();
        }
    }
    let el = t.elapsed();
    child.join().expect("join");
    el
}

const RING: usize = 1 << 14;

/// The bare pipelined floor: T items through a lock-free single-producer
/// ring to one forked process and T answers back through another (the
/// pool pipelines its tasks the same way, but with P workers, locks,
/// encoding, chunk ids and robustness).
fn bare_shm_rings(n: u64) -> Duration {
    // Two rings, each: head, tail (own cache lines), then RING slots.
    let ring_bytes = 128 + RING * 8;
    let map = shared_mapping(2 * ring_bytes);
    let base = map.as_mut_ptr();
    // SAFETY: a populated mapping of two ring areas, page aligned, outliving
    // these references; every offset is 8-aligned and in bounds.
    let at = |off: usize| unsafe { AtomicU64::from_ptr(base.wrapping_add(off).cast()) };
    let ring = |r: usize| {
        (
            at(r * ring_bytes),
            at(r * ring_bytes + 64),
            r * ring_bytes + 128,
        )
    };
    let slot = |start: usize, i: u64| at(start + (i as usize % RING) * 8);
    let push = |(head, tail, start): (&AtomicU64, &AtomicU64, usize), v: u64| {
        let t = tail.load(Ordering::Relaxed);
        while t - head.load(Ordering::Acquire) == RING as u64 {
            std::hint::spin_loop();
        }
        slot(start, t).store(v, Ordering::Relaxed);
        tail.store(t + 1, Ordering::Release);
    };
    let pop = |(head, tail, start): (&AtomicU64, &AtomicU64, usize)| {
        let h = head.load(Ordering::Relaxed);
        while tail.load(Ordering::Acquire) == h {
            std::hint::spin_loop();
        }
        let v = slot(start, h).load(Ordering::Relaxed);
        head.store(h + 1, Ordering::Release);
        v
    };
    multiproc::process::scope(|ps| {
        // SAFETY: the child only moves u64s through the two rings.
        let mut child = unsafe {
            ps.process(move || {
                for _ in 0..n {
                    let v = pop(ring(0));
                    push(ring(1), inc(v));
                }
            })
            .allow_threads()
        };
        child.start().expect("fork");
        let t = Instant::now();
        let mut next = 0;
        let mut got = 0;
        while got < n {
            // Keep at most a ring's worth in flight.
            while next < n && next - got < RING as u64 {
                push(ring(0), next);
                next += 1;
            }
            let v = pop(ring(1));
            assert_eq!(v, got + 1);
            got += 1;
        }
        let el = t.elapsed();
        child.join().expect("join");
        el
    })
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    support::socketpair().expect("socketpair")
}

/// T round trips of an 8-byte message over a bare blocking socketpair.
fn bare_socketpair(n: u64) -> Duration {
    let (a, b) = socketpair();
    let b_ref = &b;
    multiproc::process::scope(|ps| {
        // SAFETY: the child only reads and writes its socket.
        let mut child = unsafe {
            ps.process(move || {
                let mut buf = [0u8; 8];
                for _ in 0..n {
                    let mut got = 0;
                    while got < 8 {
                        got += nix::unistd::read(b_ref, &mut buf[got..]).expect("read");
                    }
                    let v = inc(u64::from_le_bytes(buf));
                    nix::unistd::write(b_ref, &v.to_le_bytes()).expect("write");
                }
            })
            .allow_threads()
        };
        child.start().expect("fork");
        let t = Instant::now();
        let mut buf = [0u8; 8];
        for k in 0..n {
            nix::unistd::write(&a, &k.to_le_bytes()).expect("write");
            let mut got = 0;
            while got < 8 {
                got += nix::unistd::read(&a, &mut buf[got..]).expect("read");
            }
        }
        let el = t.elapsed();
        child.join().expect("join");
        el
    })
}

fn criterion_part(pool: &Pool, quick: bool) {
    let mut c = Criterion::default().configure_from_args();
    if quick {
        c = c.measurement_time(Duration::from_secs(1)).sample_size(10);
    }
    let mut g = c.benchmark_group("pool_map_T1e4_P2");
    g.throughput(Throughput::Elements(T));
    g.sample_size(10);
    g.bench_function("chunksize_1", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| pool_map(pool, Some(1)).0).sum())
    });
    g.bench_function("chunksize_default", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| pool_map(pool, None).0).sum())
    });
    g.bench_function("bare_shm_rings_pipelined", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| bare_shm_rings(T)).sum())
    });
    g.finish();
    c.final_summary();
}

fn us_per_task(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6 / T as f64
}

fn main() {
    multiproc::init();
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 10 };
    let pool = make_pool();
    criterion_part(&pool, quick);

    let params = format!("\"T\": {T}, \"P\": {P}");
    let mut checks = true;
    let mut run = |cs| {
        best(reps, || {
            let (d, ok) = pool_map(&pool, cs);
            checks &= ok;
            d
        })
    };
    let one = us_per_task(run(Some(1)));
    let dflt = us_per_task(run(None));
    let check = if checks { "ok" } else { "a result was wrong" };
    line(
        "multiproc",
        "pool_map",
        "chunksize_1",
        &params,
        "us_per_task",
        one,
        check,
    );
    line(
        "multiproc",
        "pool_map",
        "chunksize_default",
        &params,
        "us_per_task",
        dflt,
        check,
    );
    let rings = us_per_task(best(reps, || bare_shm_rings(T)));
    let shm = us_per_task(best(reps, || bare_shm_handoff(T)));
    let sock = us_per_task(best(reps.min(3), || bare_socketpair(T)));
    line(
        "raw",
        "pool_map",
        "shm_rings_pipelined_1_worker",
        &params,
        "us_per_task",
        rings,
        "ok",
    );
    line(
        "raw",
        "pool_map",
        "shm_spin_handoff_1_worker",
        &params,
        "us_per_task",
        shm,
        "ok",
    );
    line(
        "raw",
        "pool_map",
        "socketpair_round_trip_1_worker",
        &params,
        "us_per_task",
        sock,
        "ok",
    );
    eprintln!(
        "pool_map: chunksize 1 {one:.3} us/task (target <= 2), default chunksize {dflt:.4} \
         us/task (target <= 0.05); bare pipelined shm rings {rings:.3} us/task (chunksize 1 \
         is {:.1}x it, default {:.2}x); bare spinning shm round trip {shm:.3} us, bare \
         socketpair round trip {sock:.2} us",
        one / rings,
        dflt / rings
    );

    // pi, variant pool: N = 1e8 over C chunks by Pool::map.
    let n: u64 = if quick { 10_000_000 } else { 100_000_000 };
    let seq = best(reps.min(3), || {
        let t = Instant::now();
        let s = pi_part((0, n));
        std::hint::black_box(s);
        t.elapsed()
    });
    line(
        "multiproc",
        "pi",
        "seq",
        &format!("\"N\": {n}"),
        "seconds",
        seq.as_secs_f64(),
        "ok",
    );
    for (name, c) in [("pool_coarse", 10u64), ("pool_fine", 10_000)] {
        let mut pi = 0.0;
        let d = best(reps.min(3), || {
            let t = Instant::now();
            let step = n / c;
            let parts: Vec<(u64, u64)> = (0..c)
                .map(|i| (i * step, if i == c - 1 { n } else { (i + 1) * step }))
                .collect();
            let s: f64 = pool.map(pi_part, parts).expect("map").iter().sum();
            pi = (8.0 * s).sqrt();
            t.elapsed()
        });
        let err = (pi - std::f64::consts::PI).abs();
        let check = if err < 1.0 / n as f64 {
            "ok".to_string()
        } else {
            format!("pi {pi} off by {err}")
        };
        let params = format!("\"N\": {n}, \"C\": {c}, \"P\": {P}");
        line(
            "multiproc",
            "pi",
            name,
            &params,
            "seconds",
            d.as_secs_f64(),
            &check,
        );
        line("multiproc", "pi", name, &params, "pi", pi, &check);
        eprintln!(
            "pi {name}: {:.4} s with the pool, {:.4} s in one process (speed-up {:.2})",
            d.as_secs_f64(),
            seq.as_secs_f64(),
            seq.as_secs_f64() / d.as_secs_f64()
        );
    }
    pool.close();
    pool.join().expect("join");
}
