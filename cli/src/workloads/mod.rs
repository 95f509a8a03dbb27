//! The workloads of `benches/WORKLOADS.md`, each measured with multiproc
//! and with a raw baseline (bare system calls, in the same kind of memory)
//! in the same run, so their ratio means something on a noisy machine.
//! Every function returns verified JSON lines; `check` says what was wrong
//! otherwise.
//!
//! This file holds what they share (sizes, worker counts, forked runs,
//! checks) and the `pi` workload; each other file one family: `counter`,
//! `pipe` (`pipe_rtt`, `pipe_bw`), `queue` (`queue_1p1c`, `queue_2p2c`,
//! `joinable`), `manager` (`manager_rtt`, `manager_append`), `array`
//! (`array_fill`), `spawn`, `pool` (`pool_map`); `hogs` loads the CPUs for
//! `--hogs`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::RawValue;

use crate::pi::{self, Outcome};
use crate::report::Line;

mod array;
mod asynchronous;
mod counter;
mod hogs;
mod manager;
mod manager_python;
mod pipe;
mod pool;
mod queue;
pub(crate) mod redis_pool;
mod spawn;

pub use hogs::Hogs;
pub use spawn::EXIT_AT_ONCE;

/// Every workload, in the order `multiproc bench` runs them.
pub const WORKLOADS: &[&str] = &[
    "pi",
    "counter",
    "pipe_rtt",
    "pipe_bw",
    "queue_1p1c",
    "queue_2p2c",
    "joinable",
    "manager_rtt",
    "manager_append",
    "manager_python_rtt",
    "array_fill",
    "spawn",
    "pool_map",
    // asynchronous.rs (issue 17); async_get_idle last: it leaves the
    // futex reactor's thread running, and later forks would refuse.
    "async_pipe_rtt",
    "tokio_unix_rtt",
    "async_get_idle",
];

/// Worker processes: the machine class has 2 cores.
const P: usize = 2;

/// Worker processes of `counter` and the queue workloads (`--procs`; 0:
/// [`P`]).
static WORKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets the worker processes of `counter` and `queue_2p2c` (half of them
/// producers, half consumers), for measuring oversubscription: `None`
/// keeps their defaults (2 for counter, 2 + 2 for `queue_2p2c`).
pub fn set_workers(w: Option<u64>) {
    WORKERS.store(w.map_or(0, |w| w as usize), Ordering::Relaxed);
}

fn workers() -> usize {
    match WORKERS.load(Ordering::Relaxed) {
        0 => P,
        w => w,
    }
}

/// Sizes: WORKLOADS.md's, or small ones for a quick look.
#[derive(Clone, Copy)]
pub struct Size {
    pub quick: bool,
    /// Repetitions; the best is reported (the most repeatable figure on a
    /// noisy machine).
    reps: usize,
}

impl Size {
    pub fn new(quick: bool) -> Size {
        Size {
            quick,
            reps: if quick { 1 } else { 3 },
        }
    }

    fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// Runs one workload by name.
pub fn run(name: &str, size: Size, procs: u64) -> Outcome<Vec<Line>> {
    match name {
        "pi" => Ok(pi_workload(size, procs)),
        "counter" => counter::counter(size),
        "pipe_rtt" => pipe::pipe_rtt(size),
        "pipe_bw" => pipe::pipe_bw(size),
        "queue_1p1c" => queue::queue(size, 1),
        "queue_2p2c" => queue::queue(
            size,
            match WORKERS.load(Ordering::Relaxed) {
                0 => 2,
                w => (w / 2).max(1),
            },
        ),
        "joinable" => queue::joinable(size),
        "array_fill" => array::array_fill(size),
        "spawn" => spawn::spawn(size),
        "pool_map" => pool::pool_map(size),
        "manager_rtt" => manager::manager_rtt(size),
        "manager_append" => manager::manager_append(size),
        "manager_python_rtt" => manager_python::manager_python_rtt(size),
        "redis_pool" => redis_pool::redis_pool(size.quick),
        other => asynchronous::run(other, size)
            .unwrap_or_else(|| Err(format!("unknown workload {other:?}").into())),
    }
}

/// Runs `work(i)` in `p` forked children at once and returns the wall time
/// from their common start (all of them forked and waiting) to the last
/// one's end.
fn run_forked<F: Fn(usize) + Sync>(p: usize, work: F) -> Outcome<Duration> {
    run_forked_on(p, false, work)
}

/// [`run_forked`], with child `i` pinned to CPU `i` modulo the CPUs when
/// `pin` is set: a producer and a consumer then always run on different
/// CPUs, as the queue workloads mean them to (left to the scheduler, a bare
/// spinning ring sometimes runs as "fill, then drain" on one CPU and
/// reports a figure no cross-process queue can reach).
fn run_forked_on<F: Fn(usize) + Sync>(p: usize, pin: bool, work: F) -> Outcome<Duration> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ready = RawValue::new(0u32)?;
    let go = multiproc::Event::new()?;
    let work = &work;
    multiproc::process::scope(|ps| {
        let mut kids = Vec::with_capacity(p);
        for i in 0..p {
            let (ready, go) = (&ready, &go);
            let mut c = ps
                .process(move || {
                    if pin {
                        let mut set = nix::sched::CpuSet::new();
                        // Best effort: a CPU this process may not use is left alone.
                        if set.set(i % cpus).is_ok() {
                            let _ =
                                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
                        }
                    }
                    ready.fetch_add(1);
                    go.wait();
                    work(i)
                })
                .with_daemon(true);
            c.start()?;
            kids.push(c);
        }
        while ready.load() < p as u32 {
            std::hint::spin_loop();
        }
        let t = Instant::now();
        go.set();
        for k in &mut kids {
            k.join_ok()?;
        }
        Ok(t.elapsed())
    })
}

fn check_eq(got: u64, want: u64) -> String {
    if got == want {
        "ok".into()
    } else {
        format!("final {got} != expected {want}")
    }
}

/// Keeps the first failed check of several repetitions.
fn keep(ok: &mut String, check: String) {
    if ok == "ok" {
        *ok = check;
    }
}

fn pi_workload(size: Size, procs: u64) -> Vec<Line> {
    let n = size.pick(100_000_000, 10_000_000);
    let mut lines = Vec::new();
    // Best of the repetitions for each transport, measured in turn.
    let best = |f: &dyn Fn() -> pi::Run| {
        (0..size.reps)
            .map(|_| f())
            .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
            .expect("at least one repetition")
    };
    lines.extend(best(&|| pi::bare_loop(n)).lines("raw", n, 1, 1));
    // Redis only when a server was given.
    let transports = pi::TRANSPORTS
        .iter()
        .filter(|t| !t.starts_with("redis") || pi::redis_url().is_some());
    for t in transports {
        lines.extend(best(&|| pi::run(t, n, 10, procs)).lines("multiproc", n, 10, procs));
    }
    let fine = 10_000;
    lines.extend(best(&|| pi::run("joinable", n, fine, procs)).lines("multiproc", n, fine, procs));
    lines
}
