//! `pool_map`: `Pool::map` of a trivial task, beside tasks pipelined to one
//! forked process through bare shared-memory rings, and dealt to P forked
//! workers over blocking socketpairs.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::{Pool, Process};

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
/// of moving tasks, without its locks, encoding and robustness; under load
/// it measures the scheduler's luck more than messaging, since its waiters
/// never sleep). Blocking-kernel baseline of chunks of one: the T items
/// dealt to P forked workers over one blocking socketpair each, one message
/// per task each way ([`socketpair_pool`]).
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

    let (mut best, mut ok) = (Duration::MAX, String::from("ok"));
    for _ in 0..size.reps {
        let (took, sum) = socketpair_pool(t, P)?;
        best = best.min(took);
        keep(&mut ok, check_eq(sum, t * (t + 1) / 2));
    }
    let us = best.as_secs_f64() * 1e6 / t as f64;
    // The parameters of the chunks-of-one variant, so the table sets them
    // side by side.
    let params = params!["T" => t, "P" => P, "chunksize" => 1];
    lines.push(Line::new(
        "raw",
        "pool_map",
        "blocking_socketpairs",
        &params,
        "us_per_task",
        us,
        &ok,
    ));
    Ok(lines)
}

/// The blocking-kernel baseline of `pool_map` with chunks of one: tasks
/// `0..t` dealt round-robin to `p` forked workers, each over a stream
/// socketpair of its own, one 8-byte message per task each way (a worker
/// reads one task per `read` and writes its result, blocking); the parent
/// writes tasks while the sockets take them and reads whatever results are
/// there, sleeping in `poll` when neither moves. Returns the time from the
/// first task to the last result, and the results' sum.
fn socketpair_pool(t: u64, p: usize) -> Outcome<(Duration, u64)> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;

    let share = |w: usize| (t + (p - 1 - w) as u64) / p as u64;
    let mut ends = Vec::with_capacity(p);
    let mut kids = Vec::with_capacity(p);
    for w in 0..p {
        let (mine, theirs) = crate::support::socketpair()?;
        let n = share(w);
        let mut kid = Process::new(move || -> nix::Result<()> {
            let mut buf = [0u8; 8];
            for _ in 0..n {
                crate::support::read_full(&theirs, &mut buf)?;
                let r = inc(u64::from_le_bytes(buf));
                crate::support::write_full(&theirs, &r.to_le_bytes())?;
            }
            Ok(())
        })
        .with_daemon(true);
        kid.start()?;
        fcntl(&mine, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        ends.push(mine);
        kids.push(kid);
    }
    let start = Instant::now();
    // Per worker: the next task to send, and a result cut by a read.
    let mut next: Vec<u64> = (0..p as u64).collect();
    let mut partial: Vec<Vec<u8>> = vec![Vec::new(); p];
    let mut back = vec![0u64; p];
    let (mut got, mut sum) = (0u64, 0u64);
    let mut buf = vec![0u8; 64 << 10];
    while got < t {
        let mut moved = false;
        for (w, end) in ends.iter().enumerate() {
            while next[w] < t {
                match nix::unistd::write(end, &next[w].to_le_bytes()) {
                    Ok(8) => {
                        next[w] += p as u64;
                        moved = true;
                    }
                    Ok(_) => return Err("a socketpair took part of a task".into()),
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            if back[w] == share(w) {
                continue;
            }
            match nix::unistd::read(end, &mut buf) {
                Ok(0) => return Err("a socketpair worker ended early".into()),
                Ok(n) => {
                    moved = true;
                    let part = &mut partial[w];
                    part.extend_from_slice(&buf[..n]);
                    let whole = part.len() / 8 * 8;
                    for r in part[..whole].chunks_exact(8) {
                        sum += u64::from_le_bytes(r.try_into().unwrap_or_default());
                        got += 1;
                        back[w] += 1;
                    }
                    part.drain(..whole);
                }
                Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !moved {
            let mut fds: Vec<PollFd<'_>> = ends
                .iter()
                .enumerate()
                .filter(|&(w, _)| back[w] < share(w))
                .map(|(w, e)| {
                    let mut f = PollFlags::POLLIN;
                    if next[w] < t {
                        f |= PollFlags::POLLOUT;
                    }
                    PollFd::new(e.as_fd(), f)
                })
                .collect();
            poll(&mut fds, PollTimeout::NONE)?;
        }
    }
    let took = start.elapsed();
    for k in &mut kids {
        k.join_ok()?;
    }
    Ok((took, sum))
}
