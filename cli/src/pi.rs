//! The pi workload: pi = sqrt(8 * sum_{k<N} 1/(2k+1)^2), split into C
//! chunks over P worker processes, the partial sums returned through each
//! transport.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiproc::manager::Manager;
use multiproc::{JoinableQueue, Pool, Process, Queue, RawArray, RedisQueue, Value};

use crate::report::{Line, params};

/// Every transport, in the order they are measured.
pub const TRANSPORTS: &[&str] = &[
    "seq",
    "file",
    "pipe",
    "value",
    "array",
    "queue",
    "joinable",
    "manager",
    "pool",
    "redis",
    "redis_pool",
];

/// The Redis server of the `redis` transport (`--redis URL` or
/// `REDIS_URL`), set once by `main`.
static REDIS_URL: OnceLock<String> = OnceLock::new();

/// Sets the Redis server the `redis` transport uses.
pub fn set_redis_url(url: String) {
    let _ = REDIS_URL.set(url);
}

/// The Redis server, when one was given.
pub fn redis_url() -> Option<&'static str> {
    REDIS_URL.get().map(String::as_str)
}

/// What `pi` and `bench` say when no Redis server was given.
pub const REDIS_SKIPPED: &str = "note: fork_redis skipped: no Redis server given; \
     include it with --redis redis://HOST:PORT or REDIS_URL (e.g. start `redis-server` \
     and use redis://127.0.0.1:6379)";

/// The transport a name on the command line means: its WORKLOADS.md
/// variant name (`fork_pipe`) or its short name (`pipe`).
pub fn transport_name(name: &str) -> Option<&'static str> {
    TRANSPORTS
        .iter()
        .copied()
        .find(|t| *t == name || variant(t) == name)
}

/// The variant name WORKLOADS.md gives a transport (the name the table,
/// the chart and the JSON lines all use).
pub fn variant(transport: &str) -> String {
    match transport {
        "file" | "pipe" | "redis" => format!("fork_{transport}"),
        t => t.to_string(),
    }
}

/// The sum of 1/(2k+1)^2 for k in `range`, added from the smallest term up
/// (the most accurate order for this series).
pub fn partial(range: std::ops::Range<u64>) -> f64 {
    let mut s = 0.0;
    for k in range.rev() {
        let d = (2 * k + 1) as f64;
        s += 1.0 / (d * d);
    }
    s
}

/// [`partial`] over `start..end`: a plain function for the pool's workers.
pub fn partial_of((start, end): (u64, u64)) -> f64 {
    partial(start..end)
}

/// Chunk `i` of `c` over `n` terms.
pub fn chunk(i: u64, c: u64, n: u64) -> std::ops::Range<u64> {
    (i * n / c)..((i + 1) * n / c)
}

/// The chunks process `p` of `procs` owns (static assignment).
fn owned(p: u64, procs: u64, c: u64) -> impl Iterator<Item = u64> {
    (p..c).step_by(procs as usize)
}

/// The binary's errors: the library's and the queues' alike.
pub type Outcome<T = f64> = Result<T, Box<dyn std::error::Error>>;

/// Runs `body(p)` in `procs` forked workers and waits for all; a worker's
/// error comes back as its message.
fn run_children(procs: u64, body: impl Fn(u64) -> Outcome<()> + Sync) -> Outcome<()> {
    let body = &body;
    multiproc::process::scope(|ps| {
        let mut kids: Vec<Process> = (0..procs)
            .map(|p| {
                ps.process(move || body(p).map_err(|e| e.to_string()))
                    .with_name(format!("pi-worker-{p}"))
            })
            .collect();
        for k in &mut kids {
            k.start()?;
        }
        for k in &mut kids {
            k.join_ok()?;
        }
        Ok(())
    })
}

/// Reads back a partial sum written as 8 little-endian bytes.
fn decode(bytes: Vec<u8>) -> Outcome {
    let a: [u8; 8] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("a partial sum of {} bytes", b.len()))?;
    Ok(f64::from_le_bytes(a))
}

pub fn transport(name: &str, n: u64, c: u64, procs: u64) -> Outcome {
    // The partial sum of the chunks process `p` owns.
    let share = |p: u64| -> f64 { owned(p, procs, c).map(|i| partial(chunk(i, c, n))).sum() };
    match name {
        "seq" => Ok((0..c).map(|i| partial(chunk(i, c, n))).sum()),
        "file" => {
            let dir = std::env::temp_dir().join(format!("multiproc-pi-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let path = |p: u64| dir.join(format!("part-{p}"));
            let r = run_children(procs, |p| {
                Ok(std::fs::write(path(p), share(p).to_le_bytes())?)
            })
            .and_then(|()| (0..procs).map(|p| decode(std::fs::read(path(p))?)).sum());
            let _ = std::fs::remove_dir_all(&dir);
            r
        }
        "pipe" => {
            let pipes = (0..procs)
                .map(|_| multiproc::pipe(false))
                .collect::<Result<Vec<_>, _>>()?;
            let pipes = &pipes;
            run_children(procs, |p| {
                Ok(pipes[p as usize].1.send_bytes(&share(p).to_le_bytes())?)
            })?;
            pipes.iter().map(|(r, _)| decode(r.recv_bytes()?)).sum()
        }
        "value" => {
            let total = Value::new(0.0f64)?;
            run_children(procs, |p| {
                let s = share(p);
                total.update(|t| *t += s);
                Ok(())
            })?;
            Ok(total.get())
        }
        "array" => {
            let slots = RawArray::<f64>::zeroed(procs as usize)?;
            run_children(procs, |p| Ok(slots.set(p as usize, share(p))?))?;
            Ok(slots.to_vec().iter().sum())
        }
        "queue" => {
            let q = Queue::<f64>::new()?;
            run_children(procs, |p| {
                for i in owned(p, procs, c) {
                    q.put(partial(chunk(i, c, n)))?;
                }
                Ok(())
            })?;
            (0..c).map(|_| Ok(q.get()?)).sum()
        }
        "joinable" => {
            // Chunks handed out dynamically; results come back on a queue.
            let tasks = JoinableQueue::<u64>::new()?;
            let results = Queue::<f64>::new()?;
            let (tasks_r, results_r) = (&tasks, &results);
            multiproc::process::scope(|ps| -> Outcome<()> {
                let mut kids: Vec<Process> = (0..procs)
                    .map(|p| {
                        ps.process(move || -> Result<(), String> {
                            let work = || -> Outcome<()> {
                                while let Ok(i) = tasks_r.get() {
                                    if i == u64::MAX {
                                        let _ = tasks_r.task_done();
                                        break;
                                    }
                                    results_r.put(partial(chunk(i, c, n)))?;
                                    tasks_r.task_done()?;
                                }
                                Ok(())
                            };
                            work().map_err(|e| e.to_string())
                        })
                        .with_name(format!("pi-worker-{p}"))
                    })
                    .collect();
                for k in &mut kids {
                    k.start()?;
                }
                for i in 0..c {
                    tasks.put(i)?;
                }
                tasks.join();
                for _ in 0..procs {
                    tasks.put(u64::MAX)?;
                }
                for k in &mut kids {
                    k.join_ok()?;
                }
                Ok(())
            })?;
            (0..c).map(|_| Ok(results.get()?)).sum()
        }
        "manager" => {
            // Each child appends its partial sums to a list held by a
            // manager server process (started within the timing, as
            // Python's `Manager()` is).
            let m = Manager::start()?;
            let sums = m.list::<f64>()?;
            run_children(procs, |p| {
                for i in owned(p, procs, c) {
                    sums.push(&partial(chunk(i, c, n)))?;
                }
                Ok(())
            })?;
            let total = sums.to_vec()?.iter().sum();
            drop(sums);
            m.shutdown()?;
            Ok(total)
        }
        "pool" => {
            // Pool.map over the chunks, as in the classic tutorial. A few
            // chunks go one at a time (Python's default chunk size would
            // split ten chunks into uneven pairs); many go in Python's
            // default chunk size.
            let pool = Pool::new(procs as usize)?;
            let ranges: Vec<(u64, u64)> = (0..c)
                .map(|i| {
                    let r = chunk(i, c, n);
                    (r.start, r.end)
                })
                .collect();
            let chunksize = if c <= 16 * procs {
                1
            } else {
                c.div_ceil(4 * procs) as usize
            };
            let sums = pool.map_chunked(partial_of, ranges, chunksize)?;
            pool.close();
            pool.join()?;
            Ok(sums.iter().sum())
        }
        "redis" => {
            // As in the classic tutorial: each child pushes its partial
            // sums onto a Redis list, the parent pops C of them.
            let url = redis_url().ok_or("the redis transport needs --redis URL (or REDIS_URL)")?;
            let q = RedisQueue::<f64>::open(url, &format!("multiproc-pi-{}", std::process::id()))?;
            q.delete()?;
            let sums = run_children(procs, |p| {
                for i in owned(p, procs, c) {
                    q.put(partial(chunk(i, c, n)))?;
                }
                Ok(())
            })
            .and_then(|()| {
                (0..c)
                    .map(|_| Ok(q.get_timeout(Duration::from_secs(60))?))
                    .sum()
            });
            let _ = q.delete();
            sums
        }
        "redis_pool" => crate::workloads::redis_pool::pi_redis_pool(procs, c, n),
        other => Err(format!("unknown transport {other:?}").into()),
    }
}

/// One transport's run: its time, the pi it computed, and whether pi is
/// within 1/N of the true value.
pub struct Run {
    pub transport: String,
    pub seconds: f64,
    pub pi: f64,
    pub check: String,
}

/// Checks a sum of the series against pi.
fn verify(sum: Outcome, n: u64) -> (f64, String) {
    match sum {
        Ok(s) => {
            let pi = (8.0 * s).sqrt();
            let err = (pi - std::f64::consts::PI).abs();
            if err < 1.0 / n as f64 {
                (pi, "ok".to_string())
            } else {
                (pi, format!("pi off by {err:.3e} (more than 1/N)"))
            }
        }
        Err(e) => (f64::NAN, format!("failed: {e}")),
    }
}

/// Runs one transport and times it.
pub fn run(name: &str, n: u64, c: u64, procs: u64) -> Run {
    let start = Instant::now();
    let r = transport(name, n, c, procs);
    let seconds = start.elapsed().as_secs_f64();
    let (pi, check) = verify(r, n);
    Run {
        transport: name.to_string(),
        seconds,
        pi,
        check,
    }
}

/// The simplest loop over the series in one process, with no chunks: the
/// floor `seq` is compared with.
pub fn bare_loop(n: u64) -> Run {
    let start = Instant::now();
    let mut s = 0.0;
    for k in (0..n).rev() {
        let d = (2 * k + 1) as f64;
        s += 1.0 / (d * d);
    }
    let s = std::hint::black_box(s);
    let seconds = start.elapsed().as_secs_f64();
    let (pi, check) = verify(Ok(s), n);
    Run {
        transport: "bare_loop".into(),
        seconds,
        pi,
        check,
    }
}

impl Run {
    /// The run's two JSON lines (seconds and pi).
    pub fn lines(&self, imp: &str, n: u64, c: u64, procs: u64) -> [Line; 2] {
        let workers = if self.transport == "seq" || self.transport == "bare_loop" {
            1
        } else {
            procs
        };
        let p = params!["N" => n, "C" => c, "P" => workers];
        let v = variant(&self.transport);
        [
            Line::new(imp, "pi", &v, &p, "seconds", self.seconds, &self.check),
            Line::new(imp, "pi", &v, &p, "pi", self.pi, &self.check),
        ]
    }
}
