//! The workloads of `shared/WORKLOADS.md`, each measured with multiproc and
//! with a raw baseline (bare system calls, in the same kind of memory) in
//! the same run, so their ratio means something on a noisy machine.
//! Every function returns verified JSON lines; `check` says what was wrong
//! otherwise.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::manager::Manager;
use multiproc::{JoinableQueue, Pool, Process, Queue, RawArray, RawValue, Value};

use crate::pi::{self, Outcome};
use crate::report::{Line, params};
use crate::support::{
    BareFutexLock, BareRing, SLOTS, SharedRing, read_full, shared_mapping, socketpair, write_full,
};

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

/// Busy processes that load every CPU while the workloads run (`--hogs`):
/// started by [`Hogs::start`], killed and reaped on drop. Each spins on a
/// local counter, never touching shared memory or the kernel.
pub struct Hogs(Vec<Process<'static>>);

impl Hogs {
    pub fn start(n: usize) -> Outcome<Hogs> {
        let mut hogs = Hogs(Vec::with_capacity(n));
        for _ in 0..n {
            let mut p = Process::new(|| {
                let mut x = 0u64;
                while std::hint::black_box(true) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
            .with_daemon(true)
            .with_die_with_parent(true);
            p.start()?;
            hogs.0.push(p);
        }
        Ok(hogs)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.join();
        }
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
        "counter" => counter(size),
        "pipe_rtt" => pipe_rtt(size),
        "pipe_bw" => pipe_bw(size),
        "queue_1p1c" => queue(size, 1),
        "queue_2p2c" => queue(
            size,
            match WORKERS.load(Ordering::Relaxed) {
                0 => 2,
                w => (w / 2).max(1),
            },
        ),
        "joinable" => joinable(size),
        "array_fill" => array_fill(size),
        "spawn" => spawn(size),
        "pool_map" => pool_map(size),
        "manager_rtt" => manager_rtt(size),
        "manager_append" => manager_append(size),
        "manager_python_rtt" => crate::python_clients::manager_python_rtt(size),
        other => Err(format!("unknown workload {other:?}").into()),
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
        .filter(|t| **t != "redis" || pi::redis_url().is_some());
    for t in transports {
        lines.extend(best(&|| pi::run(t, n, 10, procs)).lines("multiproc", n, 10, procs));
    }
    let fine = 10_000;
    lines.extend(best(&|| pi::run("joinable", n, fine, procs)).lines("multiproc", n, fine, procs));
    lines
}

fn counter(size: Size) -> Outcome<Vec<Line>> {
    let p = workers();
    // The same increments in all whatever the workers (P = 2: K each).
    let k: u64 = size.pick(1_000_000, 100_000) * P as u64 / p as u64;
    let want = k * p as u64;
    let params = params!["P" => p, "K" => k];
    let mut lines = Vec::new();

    let v = Value::new(0u64)?;
    let (mut best, mut ok) = (Duration::MAX, String::from("ok"));
    for _ in 0..size.reps {
        v.set(0);
        best = best.min(run_forked(p, |_| {
            for _ in 0..k {
                v.update(|c| *c += 1);
            }
        })?);
        keep(&mut ok, check_eq(v.get(), want));
    }
    let ns = best.as_nanos() as f64 / want as f64;
    lines.push(Line::new(
        "multiproc",
        "counter",
        "Value_lock",
        &params,
        "ns_per_increment",
        ns,
        &ok,
    ));

    let map = shared_mapping(4096, true);
    // SAFETY: a page-aligned, zeroed 4096-byte shared mapping that outlives
    // its users: the lock word at 0, aligned.
    let word = unsafe { AtomicU32::from_ptr(map.as_mut_ptr().cast()) };
    // SAFETY: as above: the counter at 8, aligned.
    let count = unsafe { AtomicU64::from_ptr(map.as_mut_ptr().wrapping_add(8).cast()) };
    let lock = BareFutexLock(word);
    let (mut best, mut ok) = (Duration::MAX, String::from("ok"));
    for _ in 0..size.reps {
        count.store(0, Ordering::Relaxed);
        best = best.min(run_forked(p, |_| {
            for _ in 0..k {
                lock.lock();
                count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                lock.unlock();
            }
        })?);
        keep(&mut ok, check_eq(count.load(Ordering::Relaxed), want));
    }
    let ns = best.as_nanos() as f64 / want as f64;
    lines.push(Line::new(
        "raw",
        "counter",
        "bare_futex_lock",
        &params,
        "ns_per_increment",
        ns,
        &ok,
    ));

    let raw = RawValue::new(0u64)?;
    let (mut best, mut ok) = (Duration::MAX, String::from("ok"));
    for _ in 0..size.reps {
        raw.store(0);
        best = best.min(run_forked(p, |_| {
            for _ in 0..k {
                raw.fetch_add(1);
            }
        })?);
        keep(&mut ok, check_eq(raw.load(), want));
    }
    let ns = best.as_nanos() as f64 / want as f64;
    lines.push(Line::new(
        "multiproc",
        "counter",
        "RawValue_fetch_add",
        &params,
        "ns_per_increment",
        ns,
        &ok,
    ));
    Ok(lines)
}

fn array_fill(size: Size) -> Outcome<Vec<Line>> {
    let n: usize = size.pick(100_000_000, 10_000_000);
    let params = params!["P" => P, "n" => n];
    let gb = (n * 8) as f64 / 1e9;
    // Each child writes element i = i as f64; the parent checks every
    // 997th element and the last.
    let verify = |get: &dyn Fn(usize) -> f64| -> String {
        let bad = (0..n)
            .step_by(997)
            .chain([n - 1])
            .find(|&i| get(i) != i as f64);
        match bad {
            None => "ok".into(),
            Some(i) => format!("element {i} is {}", get(i)),
        }
    };
    let fill = |base: usize, i: usize| {
        let r = i * n / P..(i + 1) * n / P;
        let start = (base as *mut f64).wrapping_add(r.start);
        // SAFETY: each child fills its own part of an n-element f64 array
        // at `base` that outlives it.
        let s = unsafe { std::slice::from_raw_parts_mut(start, r.len()) };
        for (j, x) in s.iter_mut().enumerate() {
            *x = (r.start + j) as f64;
        }
    };
    // The two variants alternate after one discarded warm-up round: on a
    // virtual machine the first touch of memory the guest has not used
    // before is much slower, and would be charged to whoever runs first.
    let (mut ok_mp, mut ok_raw) = (String::from("ok"), String::from("ok"));
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    for rep in 0..=size.reps {
        let a = RawArray::<f64>::zeroed(n)?;
        let base = a.as_ptr() as usize;
        let t = run_forked(P, |i| fill(base, i))?;
        keep(&mut ok_mp, verify(&|i| a.get(i).unwrap_or(f64::NAN)));
        drop(a);
        let m = shared_mapping(n * 8, true);
        let base = m.as_mut_ptr() as usize;
        let tr = run_forked(P, |i| fill(base, i))?;
        // SAFETY: the children have ended; the parent alone reads the
        // n-element mapping.
        keep(
            &mut ok_raw,
            verify(&|i| unsafe { (base as *const f64).wrapping_add(i).read() }),
        );
        drop(m);
        if rep > 0 {
            t_mp = t_mp.min(t);
            t_raw = t_raw.min(tr);
        }
    }
    Ok(vec![
        Line::new(
            "multiproc",
            "array_fill",
            "RawArray",
            &params,
            "GB_per_s",
            gb / t_mp.as_secs_f64(),
            &ok_mp,
        ),
        Line::new(
            "raw",
            "array_fill",
            "populated_memfd",
            &params,
            "GB_per_s",
            gb / t_raw.as_secs_f64(),
            &ok_raw,
        ),
    ])
}

/// The entry point of the spawned children of the `spawn` workload.
fn nothing(_: ()) {}

/// The variable that makes this binary exit at once: the posix_spawn
/// baseline of the spawn start method runs the same binary.
pub const EXIT_AT_ONCE: &str = "MULTIPROC_BENCH_EXIT_AT_ONCE";

fn spawn(size: Size) -> Outcome<Vec<Line>> {
    let mut lines = Vec::new();
    // Fork: Process start + join against fork + _exit + waitpid.
    let n: usize = size.pick(1000, 100);
    let params = params!["children" => n, "start_method" => "fork"];
    let mut ok = String::from("ok");
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    for _ in 0..size.reps {
        let t = Instant::now();
        for _ in 0..n {
            let mut p = Process::new(|| ());
            p.start()?;
            if !p.join()?.success() {
                keep(&mut ok, "a child failed".into());
            }
        }
        t_mp = t_mp.min(t.elapsed());
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: the child only calls _exit, which is async-signal-safe.
            match unsafe { nix::unistd::fork() }? {
                // SAFETY: _exit ends the child at once; it never returns.
                nix::unistd::ForkResult::Child => unsafe { libc::_exit(0) },
                nix::unistd::ForkResult::Parent { child } => {
                    nix::sys::wait::waitpid(child, None)?;
                }
            }
        }
        t_raw = t_raw.min(t.elapsed());
    }
    let per = |t: Duration| t.as_secs_f64() * 1e6 / n as f64;
    lines.push(Line::new(
        "multiproc",
        "spawn",
        "Process_fork",
        &params,
        "us_per_child",
        per(t_mp),
        &ok,
    ));
    lines.push(Line::new(
        "raw",
        "spawn",
        "fork_exit_waitpid",
        &params,
        "us_per_child",
        per(t_raw),
        "ok",
    ));

    // Spawn: a fresh run of this binary, against posix_spawn of the same
    // binary told to exit at once.
    let n: usize = size.pick(300, 30);
    let params = params!["children" => n, "start_method" => "spawn"];
    let mut ok = String::from("ok");
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    let exe = c"/proc/self/exe";
    let argv = [exe.to_owned()];
    let mut envp: Vec<std::ffi::CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            std::ffi::CString::new(kv).ok()
        })
        .collect();
    envp.push(std::ffi::CString::new(format!("{EXIT_AT_ONCE}=1"))?);
    for _ in 0..size.reps {
        let t = Instant::now();
        for _ in 0..n {
            let mut p = Process::spawn(nothing, ())?;
            p.start()?;
            if p.result().is_err() {
                keep(&mut ok, "a child failed".into());
            }
        }
        t_mp = t_mp.min(t.elapsed());
        let t = Instant::now();
        for _ in 0..n {
            let pid = nix::spawn::posix_spawn(
                exe,
                &nix::spawn::PosixSpawnFileActions::init()?,
                &nix::spawn::PosixSpawnAttr::init()?,
                &argv,
                &envp,
            )?;
            nix::sys::wait::waitpid(pid, None)?;
        }
        t_raw = t_raw.min(t.elapsed());
    }
    let per = |t: Duration| t.as_secs_f64() * 1e6 / n as f64;
    lines.push(Line::new(
        "multiproc",
        "spawn",
        "Process_spawn",
        &params,
        "us_per_child",
        per(t_mp),
        &ok,
    ));
    lines.push(Line::new(
        "raw",
        "spawn",
        "posix_spawn_same_binary",
        &params,
        "us_per_child",
        per(t_raw),
        "ok",
    ));
    Ok(lines)
}

fn pipe_rtt(size: Size) -> Outcome<Vec<Line>> {
    let r: usize = size.pick(100_000, 5_000);
    let params = params!["R" => r, "bytes" => 64];
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    let mut ok = String::from("ok");
    let msg = [7u8; 64];
    multiproc::process::scope(|ps| {
        for _ in 0..size.reps {
            let (a, b) = multiproc::pipe(true)?;
            let mut p = ps.process(move || -> multiproc::Result<()> {
                for _ in 0..r {
                    b.send_bytes(&b.recv_bytes()?)?;
                }
                Ok(())
            });
            p.start()?;
            let t = Instant::now();
            for _ in 0..r {
                a.send_bytes(&msg)?;
                if a.recv_bytes()? != msg {
                    keep(&mut ok, "a reply differs from the message".into());
                }
            }
            t_mp = t_mp.min(t.elapsed());
            p.join_ok()?;

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

fn pipe_bw(size: Size) -> Outcome<Vec<Line>> {
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

/// `queue_1p1c` (`p` = 1) and `queue_2p2c` (`p` = 2): `p` producers put M
/// u64s in all, `p` consumers get them, each process pinned to a CPU
/// (producer `i` and consumer `i` on different ones). One consumer checks the order; two
/// check the multiset through its sum and count. Baseline: a bare ring of
/// u64 slots with spinning waiters, lock-free for one producer and one
/// consumer, under one bare futex lock for two and two.
fn queue(size: Size, p: usize) -> Outcome<Vec<Line>> {
    let m: u64 = size.pick(1_000_000, 100_000);
    let per = m / p as u64;
    let workload = if p == 1 { "queue_1p1c" } else { "queue_2p2c" };
    let params = if p <= 2 {
        params!["M" => per * p as u64]
    } else {
        params!["M" => per * p as u64, "P" => 2 * p]
    };
    let want_sum = p as u64 * (per * (per - 1) / 2);
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    let (mut ok, mut ok_raw) = (String::from("ok"), String::from("ok"));
    let rate = |t: Duration| (per * p as u64) as f64 / t.as_secs_f64();
    for _ in 0..size.reps {
        let q = Queue::<u64>::new()?;
        let (sum, count, order) = (
            RawValue::new(0u64)?,
            RawValue::new(0u64)?,
            RawValue::new(0u64)?,
        );
        t_mp = t_mp.min(run_forked_on(2 * p, true, |i| {
            if i < p {
                for k in 0..per {
                    q.put(k).expect("put");
                }
            } else {
                let (mut s, mut c) = (0, 0);
                for j in 0..per {
                    let k = q.get().expect("get");
                    if p == 1 && k != j {
                        order.fetch_add(1);
                    }
                    s += k;
                    c += 1;
                }
                sum.fetch_add(s);
                count.fetch_add(c);
            }
        })?);
        if order.load() != 0 {
            keep(&mut ok, format!("{} items out of order", order.load()));
        }
        keep(&mut ok, check_eq(sum.load(), want_sum));
        keep(&mut ok, check_eq(count.load(), per * p as u64));

        let shared = SharedRing::new();
        let ring = shared.ring();
        let sum = RawValue::new(0u64)?;
        t_raw = t_raw.min(run_forked_on(2 * p, true, |i| {
            if p == 1 {
                bare_spsc(ring, i == 0, per, &sum)
            } else {
                bare_locked(ring, i < p, per, &sum)
            }
        })?);
        keep(&mut ok_raw, check_eq(sum.load(), want_sum));
    }
    let (mp_variant, raw_variant) = if p == 1 {
        ("Queue", "bare_spsc_ring")
    } else {
        ("Queue", "bare_locked_ring")
    };
    Ok(vec![
        Line::new(
            "multiproc",
            workload,
            mp_variant,
            &params,
            "messages_per_s",
            rate(t_mp),
            &ok,
        ),
        Line::new(
            "raw",
            workload,
            raw_variant,
            &params,
            "messages_per_s",
            rate(t_raw),
            &ok_raw,
        ),
    ])
}

/// One side of a lock-free single-producer single-consumer ring.
fn bare_spsc(r: &BareRing, producer: bool, n: u64, sum: &RawValue<u64>) {
    if producer {
        for k in 0..n {
            let tail = r.tail.load(Ordering::Relaxed);
            while tail - r.head.load(Ordering::Acquire) == SLOTS {
                std::hint::spin_loop();
            }
            r.slots[(tail % SLOTS) as usize].store(k, Ordering::Relaxed);
            r.tail.store(tail + 1, Ordering::Release);
        }
    } else {
        let mut s = 0;
        for _ in 0..n {
            let head = r.head.load(Ordering::Relaxed);
            while r.tail.load(Ordering::Acquire) == head {
                std::hint::spin_loop();
            }
            s += r.slots[(head % SLOTS) as usize].load(Ordering::Relaxed);
            r.head.store(head + 1, Ordering::Release);
        }
        sum.fetch_add(s);
    }
}

/// One side of a ring under one bare futex lock.
fn bare_locked(r: &BareRing, producer: bool, n: u64, sum: &RawValue<u64>) {
    let lock = BareFutexLock(&r.lock);
    let (mut done, mut s) = (0, 0);
    while done < n {
        lock.lock();
        let (head, tail) = (
            r.head.load(Ordering::Relaxed),
            r.tail.load(Ordering::Relaxed),
        );
        if producer && tail - head < SLOTS {
            r.slots[(tail % SLOTS) as usize].store(done, Ordering::Relaxed);
            r.tail.store(tail + 1, Ordering::Relaxed);
            done += 1;
        } else if !producer && tail != head {
            s += r.slots[(head % SLOTS) as usize].load(Ordering::Relaxed);
            r.head.store(head + 1, Ordering::Relaxed);
            done += 1;
        }
        lock.unlock();
    }
    if !producer {
        sum.fetch_add(s);
    }
}

/// `joinable`: the parent puts M tasks in a JoinableQueue, P workers get
/// them and call task_done, the parent join()s; every task is counted once.
fn joinable(size: Size) -> Outcome<Vec<Line>> {
    let m: u64 = size.pick(100_000, 20_000);
    let params = params!["M" => m, "P" => P];
    let mut best = Duration::MAX;
    let mut ok = String::from("ok");
    for _ in 0..size.reps {
        let q = JoinableQueue::<u64>::new()?;
        let (sum, count) = (RawValue::new(0u64)?, RawValue::new(0u64)?);
        let (q_ref, sum_ref, count_ref) = (&q, &sum, &count);
        multiproc::process::scope(|ps| -> Outcome<()> {
            let mut workers = Vec::new();
            for _ in 0..P {
                let mut w = ps
                    .process(move || -> Result<(), String> {
                        while let Ok(t) = q_ref.get() {
                            if t != u64::MAX {
                                sum_ref.fetch_add(t);
                                count_ref.fetch_add(1);
                            }
                            q_ref.task_done().map_err(|e| e.to_string())?;
                            if t == u64::MAX {
                                break;
                            }
                        }
                        Ok(())
                    })
                    .with_daemon(true);
                w.start()?;
                workers.push(w);
            }
            let t = Instant::now();
            for i in 0..m {
                q.put(i)?;
            }
            q.join();
            best = best.min(t.elapsed());
            for _ in 0..P {
                q.put(u64::MAX)?;
            }
            for w in &mut workers {
                w.join_ok()?;
            }
            Ok(())
        })?;
        if count.load() != m || sum.load() != m * (m - 1) / 2 {
            keep(
                &mut ok,
                format!("{} tasks done, sum {}", count.load(), sum.load()),
            );
        }
    }
    let rate = m as f64 / best.as_secs_f64();
    Ok(vec![Line::new(
        "multiproc",
        "joinable",
        "JoinableQueue",
        &params,
        "tasks_per_s",
        rate,
        &ok,
    )])
}

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
fn pool_map(size: Size) -> Outcome<Vec<Line>> {
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
fn manager_rtt(size: Size) -> Outcome<Vec<Line>> {
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
fn manager_append(size: Size) -> Outcome<Vec<Line>> {
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
