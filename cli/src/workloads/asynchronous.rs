//! The async workloads (issue 17), each beside its baselines in the same
//! run:
//!
//! - `async_pipe_rtt`: 64-byte round trips over a duplex `pipe` with both
//!   ends awaiting (each process on its own current-thread tokio runtime),
//!   beside the blocking `pipe_rtt` and a tokio `UnixStream` ping-pong.
//! - `tokio_unix_rtt`: the tokio `UnixStream` ping-pong alone.
//! - `async_get_idle`: 1,000 `get_async` waiters on one runtime thread
//!   across 4 queues, fed by 2 producer processes: every item arrives once,
//!   and the CPU the runtime thread (and the futex reactor) use while all
//!   the waiters sit idle for a second.

use std::time::{Duration, Instant};

use multiproc::{Event, Queue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pi::Outcome;
use crate::report::{Line, params};
use crate::workloads::pipe::blocking_rtt;
use crate::workloads::{Size, keep};

/// Runs one of the async workloads (listed in `workloads::WORKLOADS`);
/// `None` for another name.
pub fn run(name: &str, size: Size) -> Option<Outcome<Vec<Line>>> {
    Some(match name {
        "async_pipe_rtt" => async_pipe_rtt(size),
        "tokio_unix_rtt" => tokio_unix_rtt(size),
        "async_get_idle" => async_get_idle(size),
        _ => return None,
    })
}

fn rt() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn rounds(size: Size) -> usize {
    if size.quick { 5_000 } else { 100_000 }
}

fn reps(size: Size) -> usize {
    if size.quick { 1 } else { 3 }
}

const MSG: [u8; 64] = [7u8; 64];

/// Best of the repetitions: async pipe (both ends awaiting), the blocking
/// pipe and the tokio `UnixStream` ping-pong, in the same run.
fn async_pipe_rtt(size: Size) -> Outcome<Vec<Line>> {
    let r = rounds(size);
    let params = params!["R" => r, "bytes" => 64];
    let (mut t_async, mut t_block, mut t_unix) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let mut ok = String::from("ok");
    let mut ok_unix = String::from("ok");
    // The three back to back in each repetition, so that a noisy moment
    // hits them alike.
    for _ in 0..reps(size) {
        // Both ends await: the child runs its own runtime (made after the
        // fork: a runtime does not survive one).
        let (a, b) = multiproc::pipe(true)?;
        let mut p = multiproc::Process::new(move || -> multiproc::Result<()> {
            let rt = rt().map_err(|e| multiproc::Error::Codec(e.to_string()))?;
            rt.block_on(async {
                let b = b.into_async()?;
                for _ in 0..r {
                    let m = b.recv_bytes().await?;
                    b.send_bytes(&m).await?;
                }
                Ok(())
            })
        });
        p.start()?;
        let runtime = rt()?;
        let t = runtime.block_on(async {
            let a = a.into_async()?;
            let t = Instant::now();
            for _ in 0..r {
                a.send_bytes(&MSG).await?;
                if a.recv_bytes().await? != MSG {
                    keep(&mut ok, "a reply differs from the message".into());
                }
            }
            Ok::<_, multiproc::Error>(t.elapsed())
        })?;
        drop(runtime);
        t_async = t_async.min(t);
        p.join_ok()?;

        t_block = t_block.min(blocking_rtt(r, &MSG, &mut ok)?);

        t_unix = t_unix.min(tokio_rtt_once(r, &mut ok_unix)?);
    }
    let per = |t: Duration| t.as_nanos() as f64 / r as f64;
    Ok(vec![
        Line::new(
            "multiproc",
            "async_pipe_rtt",
            "Pipe_duplex_async",
            &params,
            "ns_per_round_trip",
            per(t_async),
            &ok,
        ),
        Line::new(
            "multiproc",
            "async_pipe_rtt",
            "Pipe_duplex_blocking",
            &params,
            "ns_per_round_trip",
            per(t_block),
            &ok,
        ),
        Line::new(
            "raw",
            "async_pipe_rtt",
            "tokio_UnixStream",
            &params,
            "ns_per_round_trip",
            per(t_unix),
            &ok_unix,
        ),
    ])
}

/// One tokio `UnixStream` ping-pong of `r` 64-byte round trips, both ends
/// awaiting; the time of the round trips.
fn tokio_rtt_once(r: usize, ok: &mut String) -> Outcome<Duration> {
    let (x, y) = std::os::unix::net::UnixStream::pair()?;
    let mut p = multiproc::Process::new(move || -> std::io::Result<()> {
        let rt = rt()?;
        rt.block_on(async {
            y.set_nonblocking(true)?;
            let mut y = tokio::net::UnixStream::from_std(y)?;
            let mut buf = [0u8; 64];
            for _ in 0..r {
                y.read_exact(&mut buf).await?;
                y.write_all(&buf).await?;
            }
            Ok(())
        })
    });
    p.start()?;
    let runtime = rt()?;
    let t = runtime.block_on(async {
        x.set_nonblocking(true)?;
        let mut x = tokio::net::UnixStream::from_std(x)?;
        let mut buf = [0u8; 64];
        let t = Instant::now();
        for _ in 0..r {
            x.write_all(&MSG).await?;
            x.read_exact(&mut buf).await?;
            if buf != MSG {
                keep(ok, "a reply differs from the message".into());
            }
        }
        Ok::<_, std::io::Error>(t.elapsed())
    })?;
    p.join_ok()?;
    Ok(t)
}

/// `tokio_unix_rtt`: the tokio `UnixStream` ping-pong alone.
fn tokio_unix_rtt(size: Size) -> Outcome<Vec<Line>> {
    let r = rounds(size);
    let params = params!["R" => r, "bytes" => 64];
    let mut best = Duration::MAX;
    let mut ok = String::from("ok");
    for _ in 0..reps(size) {
        best = best.min(tokio_rtt_once(r, &mut ok)?);
    }
    Ok(vec![Line::new(
        "raw",
        "tokio_unix_rtt",
        "tokio_UnixStream",
        &params,
        "ns_per_round_trip",
        best.as_nanos() as f64 / r as f64,
        &ok,
    )])
}

/// CPU time (user + system) of thread `tid` of this process, from
/// `/proc/self/task/<tid>/stat` (clock ticks, 100 per second).
fn thread_cpu(tid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of the line; the state (field 3) is rest[0].
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The ids of this process's threads named `name`.
fn threads_named(name: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim() == name).then(|| t.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

fn async_get_idle(size: Size) -> Outcome<Vec<Line>> {
    const WAITERS: usize = 1000;
    const QUEUES: usize = 4;
    let per_producer: u32 = if size.quick { 5_000 } else { 50_000 };
    let idle = Duration::from_secs(if size.quick { 1 } else { 2 });
    let params = params!["waiters" => WAITERS, "queues" => QUEUES, "producers" => 2, "items" => 2 * per_producer];
    let queues: std::sync::Arc<Vec<Queue<u32>>> = std::sync::Arc::new(
        (0..QUEUES)
            .map(|_| Queue::new())
            .collect::<Result<_, multiproc::CreateError>>()?,
    );
    let go = std::sync::Arc::new(Event::new()?);
    // The producers are forked before the runtime and the reactor exist.
    let mut producers = Vec::new();
    for k in 0..2u32 {
        let (q, g) = (queues.clone(), go.clone());
        let mut p = multiproc::Process::new(move || -> multiproc::Result<()> {
            if !g.wait_timeout(Duration::from_secs(60)) {
                return Err(multiproc::Error::Timeout);
            }
            for i in 0..per_producer {
                let v = k * per_producer + i;
                q[v as usize % QUEUES]
                    .put(v)
                    .map_err(|e| multiproc::Error::Codec(e.to_string()))?;
            }
            Ok(())
        });
        p.start()?;
        producers.push(p);
    }
    let mut ok = String::from("ok");
    let runtime = rt()?;
    let me = std::fs::read_link("/proc/thread-self")?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (t_feed, cpu_rt, cpu_reactor, got) = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let tasks: Vec<_> = (0..WAITERS)
            .map(|i| {
                let (q, tx) = (queues.clone(), tx.clone());
                tokio::spawn(async move {
                    while let Ok(v) = q[i % QUEUES].get_async().await {
                        let _ = tx.send(v);
                    }
                })
            })
            .collect();
        drop(tx);
        // Let every waiter park, then measure the idle runtime.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reactors = threads_named("multiproc-aio");
        let sum = |ids: &[String]| ids.iter().filter_map(|t| thread_cpu(t)).sum::<Duration>();
        let (rt0, re0) = (thread_cpu(&me), sum(&reactors));
        tokio::time::sleep(idle).await;
        let (rt1, re1) = (thread_cpu(&me), sum(&reactors));
        let cpu_rt = match (rt0, rt1) {
            (Some(a), Some(b)) => (b - a).as_secs_f64() / idle.as_secs_f64(),
            _ => f64::NAN,
        };
        let cpu_reactor = (re1 - re0).as_secs_f64() / idle.as_secs_f64();
        // Then feed them.
        let t = Instant::now();
        go.set();
        let mut got = Vec::with_capacity(2 * per_producer as usize);
        while got.len() < 2 * per_producer as usize {
            match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
                Ok(Some(v)) => got.push(v),
                _ => break,
            }
        }
        let t_feed = t.elapsed();
        for q in queues.iter() {
            q.close();
        }
        for t in tasks {
            let _ = t.await;
        }
        (t_feed, cpu_rt, cpu_reactor, got)
    });
    let mut got = got;
    got.sort_unstable();
    if got != (0..2 * per_producer).collect::<Vec<_>>() {
        keep(
            &mut ok,
            format!(
                "{} items arrived, not each of 0..{} once",
                got.len(),
                2 * per_producer
            ),
        );
    }
    for p in &mut producers {
        p.join_ok()?;
    }
    Ok(vec![
        Line::new(
            "multiproc",
            "async_get_idle",
            "runtime_thread_idle",
            &params,
            "cpu_share",
            cpu_rt,
            &ok,
        ),
        Line::new(
            "multiproc",
            "async_get_idle",
            "reactor_threads_idle",
            &params,
            "cpu_share",
            cpu_reactor,
            &ok,
        ),
        Line::new(
            "multiproc",
            "async_get_idle",
            "delivery",
            &params,
            "items_per_s",
            got.len() as f64 / t_feed.as_secs_f64(),
            &ok,
        ),
    ])
}
