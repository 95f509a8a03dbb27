//! `multiproc faults`: the fault-injection suite. Each scenario kills,
//! floods or feeds garbage to one part of the library at bounded sizes and
//! reports what it did and what was lost, so every release can show the
//! same figures.
//!
//! Every scenario runs in a child process of its own (in a new process
//! group), so a scenario that hangs past its bound is killed with its whole
//! tree and reported, a thread one scenario starts never meets another
//! scenario's fork, and the descriptors, memory and zombies counted are that
//! scenario's alone.
//!
//! Invariants fail the run (exit code 1): more lost than the library
//! documents, anything duplicated, a zombie, a descriptor leak, a wrong
//! error, a scenario past its bound. Latency figures are printed, never
//! judged: this runs on small, noisy machines.

use std::collections::HashSet;
use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::manager::Manager;
use multiproc::pool::TaskError;
use multiproc::{
    Address, Client, Connection, Listener, LockError, Pool, Process, Queue, RawArray, RawValue,
    RecvError, Value,
};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// Every scenario, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "lock_kill",
    "queue_kill",
    "pipe_kill",
    "pool_kill",
    "manager_kill",
    "churn",
    "listener_flood",
    "garbage",
];

/// The key of the listeners and managers the scenarios start.
const KEY: &[u8] = b"multiproc faults";

/// How long any single wait inside a scenario may take before it counts as
/// a hang (a lock recovery takes about 40 ms).
const STUCK: Duration = Duration::from_secs(5);

type Outcome<T> = Result<T, Box<dyn StdError>>;

/// One latency figure: its name and milliseconds, `None` when it timed out.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Latency {
    pub name: String,
    pub ms: Option<f64>,
}

/// What one scenario did and found.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Report {
    pub scenario: String,
    /// What was done, in words.
    pub actions: String,
    /// Processes killed (SIGKILL), or hostile peers sent.
    pub faults: u64,
    /// Items, increments, tasks or messages lost.
    pub lost: u64,
    /// What the library's documentation allows to be lost for those faults.
    pub allowed_lost: u64,
    pub duplicated: u64,
    pub latency: Vec<Latency>,
    /// Zombie children of the scenario's process at its end.
    pub zombies: u64,
    pub fds_before: u64,
    pub fds_after: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub seconds: f64,
    /// Broken invariants; empty when the scenario passed.
    pub problems: Vec<String>,
    /// Other observations (printed, never judged).
    pub notes: Vec<String>,
}

impl Report {
    fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            ..Report::default()
        }
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn verdict(&self) -> String {
        if self.ok() {
            "ok".to_owned()
        } else {
            format!("FAIL: {}", self.problems.join("; "))
        }
    }

    fn latency_ms(&mut self, name: &str, ms: Option<f64>) {
        self.latency.push(Latency {
            name: name.to_owned(),
            ms,
        });
    }

    /// p50 and p99 of `samples` (milliseconds) as two figures.
    fn percentiles(&mut self, name: &str, samples: &mut [f64]) {
        if samples.is_empty() {
            return;
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        self.latency_ms(&format!("{name} p50"), Some(at(0.5)));
        self.latency_ms(&format!("{name} p99"), Some(at(0.99)));
    }

    fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    /// One JSON line.
    pub fn json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("verdict".into(), self.verdict().into());
            o.insert(
                "fd_delta".into(),
                (self.fds_after as i64 - self.fds_before as i64).into(),
            );
            o.insert(
                "rss_delta_kib".into(),
                (self.rss_after_kib as i64 - self.rss_before_kib as i64).into(),
            );
        }
        v.to_string()
    }
}

/// Sizes of every scenario: the full ones, or `--quick` ones for CI.
#[derive(Clone, Copy)]
struct Size {
    quick: bool,
}

impl Size {
    fn pick<T>(self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }

    /// How long a whole scenario may run before it counts as hung.
    fn bound(self, scenario: &str) -> Duration {
        let full = match scenario {
            "lock_kill" | "queue_kill" | "listener_flood" => 120,
            _ => 60,
        };
        Duration::from_secs(self.pick(full, 40))
    }
}

/// Runs the named scenarios, each in a child process of its own; their
/// reports in order.
pub fn run(names: &[String], quick: bool, mut each: impl FnMut(&Report)) -> Vec<Report> {
    let size = Size { quick };
    let mut out = Vec::new();
    for name in names {
        let report = run_isolated(name, size);
        each(&report);
        out.push(report);
    }
    out
}

fn run_isolated(name: &str, size: Size) -> Report {
    let bound = size.bound(name);
    let owned = name.to_owned();
    let started = Instant::now();
    let mut child = Process::with_result(move || scenario_in_child(&owned, size))
        .with_new_group(true)
        .with_name(format!("faults-{name}"));
    let failed = |why: String| {
        let mut r = Report::new(name);
        r.seconds = started.elapsed().as_secs_f64();
        r.problem(why);
        r
    };
    if let Err(e) = child.start() {
        return failed(format!("cannot start the scenario's process: {e}"));
    }
    match child.join_timeout(bound) {
        Ok(Some(_)) => match child.result() {
            Ok(r) => r,
            Err(e) => failed(format!("the scenario's process failed: {e}")),
        },
        Ok(None) => {
            // Past its bound: the whole tree goes.
            let _ = child.signal_group(multiproc::signal::Signal::SIGKILL);
            let _ = child.join_timeout(STUCK);
            failed(format!(
                "hung: still running after its bound of {} s (killed)",
                bound.as_secs()
            ))
        }
        Err(e) => failed(format!("cannot join the scenario's process: {e}")),
    }
}

/// Runs one scenario in this (scenario) process, with the counts of
/// descriptors, memory and zombies around it.
fn scenario_in_child(name: &str, size: Size) -> Report {
    // What a process sets up once and keeps (a forked child's own
    // shared-heap arena on its first allocation; whatever the library
    // makes on a first fork) is made here, before the count, so that it is
    // not taken for a leak.
    drop(RawValue::new(0u32));
    let mut first = Process::new(|| ());
    if first.start().is_ok() {
        let _ = first.join_timeout(STUCK);
    }
    drop(first);
    let open_before = open_fds();
    let fds_before = open_before.total();
    let rss_before = rss_kib();
    let t = Instant::now();
    let result = match name {
        "lock_kill" => lock_kill(size),
        "queue_kill" => queue_kill(size),
        "pipe_kill" => pipe_kill(size),
        "pool_kill" => pool_kill(size),
        "manager_kill" => manager_kill(size),
        "churn" => churn(size),
        "listener_flood" => listener_flood(size),
        "garbage" => garbage(size),
        other => Err(format!("unknown scenario {other:?}").into()),
    };
    let mut r = result.unwrap_or_else(|e| {
        let mut r = Report::new(name);
        r.problem(format!("error: {e}"));
        r
    });
    r.scenario = name.to_owned();
    r.seconds = t.elapsed().as_secs_f64();
    // Whatever the library reaps on its own gets a moment to do so.
    let settle = Instant::now() + Duration::from_secs(1);
    let mut open_after;
    loop {
        r.zombies = zombies();
        open_after = open_fds();
        r.fds_after = open_after.total();
        if (r.zombies == 0 && !open_after.leaked_since(&open_before)) || Instant::now() > settle {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    r.fds_before = fds_before;
    r.rss_before_kib = rss_before;
    r.rss_after_kib = rss_kib();
    if r.zombies > 0 {
        r.problem(format!("{} zombie children left", r.zombies));
    }
    if open_after.leaked_since(&open_before) {
        r.problem(format!(
            "descriptor leak: {} open before ({} pipe ends), {} after ({} pipe ends)",
            fds_before, open_before.pipes, r.fds_after, open_after.pipes
        ));
    }
    if r.lost > r.allowed_lost {
        r.problem(format!(
            "lost {} where at most {} may be lost",
            r.lost, r.allowed_lost
        ));
    }
    if r.duplicated > 0 {
        r.problem(format!("{} duplicated", r.duplicated));
    }
    r
}

// ---------------------------------------------------------------- measures

/// The shared heap keeps a pipe per generation of forks it waits for,
/// read ends included, until it prunes them: at most 8 generations and its
/// own write end (see the heap's module docs). Pipe ends beyond these are a
/// leak.
const HEAP_PIPE_ENDS: u64 = 9;

/// This process's open descriptors: pipe ends and all others.
struct OpenFds {
    pipes: u64,
    others: u64,
}

impl OpenFds {
    fn total(&self) -> u64 {
        self.pipes + self.others
    }

    /// Whether more are open now than `before` allows: any other kind, or
    /// pipe ends beyond what the heap may keep.
    fn leaked_since(&self, before: &OpenFds) -> bool {
        self.others > before.others || self.pipes > before.pipes + HEAP_PIPE_ENDS
    }
}

fn open_fds() -> OpenFds {
    let mut fds = OpenFds {
        pipes: 0,
        others: 0,
    };
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for e in dir.flatten() {
            let pipe = std::fs::read_link(e.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("pipe:"));
            if pipe {
                fds.pipes += 1;
            } else {
                fds.others += 1;
            }
        }
    }
    fds
}

fn rss_kib() -> u64 {
    rss_in("/proc/self/status")
}

/// The resident memory of process `pid` (KiB).
fn rss_of(pid: i32) -> u64 {
    rss_in(&format!("/proc/{pid}/status"))
}

fn rss_in(path: &str) -> u64 {
    let status = std::fs::read_to_string(path).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Children of this process in state Z, from /proc.
fn zombies() -> u64 {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for e in dir.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        if let (Some(state), Some(ppid)) = (f.next(), f.next())
            && state == "Z"
            && ppid == me
        {
            n += 1;
        }
    }
    n
}

/// A small random generator (xorshift), seeded from the clock; the seed is
/// printed with the scenario.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng(t | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Polls `cond` every 100 us until it holds or `limit` passes; whether it
/// held.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Kills `p` with SIGKILL and reaps it within [`STUCK`]; whether it did.
fn kill_and_reap(p: &mut Process<'static>) -> bool {
    let _ = p.kill();
    matches!(p.join_timeout(STUCK), Ok(Some(_)))
}

/// Sleeps until killed (a victim holding something).
fn park() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

// ------------------------------------------------------------ lock holders

/// Holders of a `Value` lock SIGKILLed at four points of an increment;
/// survivors recover each through `OwnerDied`.
fn lock_kill(size: Size) -> Outcome<Report> {
    let kills = size.pick(300, 20);
    const SURVIVORS: usize = 2;
    let mut r = Report::new("lock_kill");
    // [counter, in-flight flag]
    let v = Arc::new(Value::new([0u64; 2])?);
    // Increments each worker (survivors, then victims) completed.
    let done = Arc::new(RawArray::<u64>::zeroed(SURVIVORS + kills)?);
    let kill_ns = Arc::new(RawValue::new(0u64)?);
    let pending = Arc::new(RawValue::new(0u32)?);
    let holding = Arc::new(RawValue::new(0u32)?);
    let stop = Arc::new(RawValue::new(0u32)?);
    let latency_ns = Arc::new(RawArray::<u64>::zeroed(kills)?);
    let recoveries = Arc::new(RawValue::new(0u64)?);
    let flagged = Arc::new(RawValue::new(0u64)?);
    let base = Instant::now();

    // What a worker does on OwnerDied: note the latency and whether the
    // dead holder was mid-increment, then clear its flag.
    let recover = {
        let (kill_ns, pending, latency_ns, recoveries, flagged) = (
            kill_ns.clone(),
            pending.clone(),
            latency_ns.clone(),
            recoveries.clone(),
            flagged.clone(),
        );
        move |g: &mut [u64; 2]| {
            let now = base.elapsed().as_nanos() as u64;
            let i = recoveries.fetch_add(1) as usize;
            if let Some(slot) = latency_ns.as_atomics().get(i) {
                slot.store(now.saturating_sub(kill_ns.load()), Ordering::Relaxed);
            }
            if g[1] != 0 {
                flagged.fetch_add(1);
                g[1] = 0;
            }
            pending.store(0);
        }
    };

    let mut survivors = Vec::new();
    for s in 0..SURVIVORS {
        let (v, done, stop, recover) = (v.clone(), done.clone(), stop.clone(), recover.clone());
        let mut p = Process::new(move || -> Result<(), String> {
            while stop.load() == 0 {
                let mut g = match v.lock() {
                    Ok(g) => g,
                    Err(LockError::OwnerDied(e)) => {
                        let mut g = e.into_guard();
                        recover(&mut g);
                        g
                    }
                    Err(LockError::WouldDeadlock) => return Err("WouldDeadlock".into()),
                };
                g[1] = 1;
                g[0] += 1;
                done.as_atomics()[s].fetch_add(1, Ordering::Relaxed);
                g[1] = 0;
                drop(g);
                // Leaves room for the victims to take the lock.
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(())
        })
        .with_die_with_parent(true);
        p.start()?;
        survivors.push(p);
    }

    let mut stage_count = [0u64; 4];
    let mut latencies = Vec::new();
    for i in 0..kills {
        let stage = i % 4;
        let slot = SURVIVORS + i;
        holding.store(0);
        let (v2, done2, holding2, recover2) =
            (v.clone(), done.clone(), holding.clone(), recover.clone());
        let mut victim = Process::new(move || -> i32 {
            let mut g = match v2.lock() {
                Ok(g) => g,
                Err(LockError::OwnerDied(e)) => {
                    let mut g = e.into_guard();
                    recover2(&mut g);
                    g
                }
                Err(LockError::WouldDeadlock) => return 1,
            };
            // The four points of an increment: before it, flag set,
            // counter bumped, completion recorded.
            if stage >= 1 {
                g[1] = 1;
            }
            if stage >= 2 {
                g[0] += 1;
            }
            if stage >= 3 {
                done2.as_atomics()[slot].fetch_add(1, Ordering::Relaxed);
            }
            holding2.store(1);
            park()
        })
        .with_die_with_parent(true);
        victim.start()?;
        if !wait_until(STUCK, || holding.load() == 1) {
            r.problem(format!("victim {i} never got the lock within 5 s"));
            kill_and_reap(&mut victim);
            break;
        }
        pending.store(1);
        kill_ns.store(base.elapsed().as_nanos() as u64);
        if !kill_and_reap(&mut victim) {
            r.problem(format!("victim {i} not reaped within 5 s of SIGKILL"));
        }
        stage_count[stage] += 1;
        r.faults += 1;
        if !wait_until(STUCK, || pending.load() == 0) {
            r.problem(format!("kill {i}: no waiter took the lock over within 5 s"));
            break;
        }
    }
    stop.store(1);
    for mut s in survivors {
        match s.join_timeout(STUCK) {
            Ok(Some(st)) if st.success() => {}
            Ok(Some(st)) => r.problem(format!("a survivor ended with {st}: {:?}", s.message())),
            _ => {
                r.problem("a survivor did not stop within 5 s");
                kill_and_reap(&mut s);
            }
        }
    }
    let n = recoveries.load() as usize;
    for i in 0..n.min(kills) {
        latencies.push(latency_ns.get(i)? as f64 / 1e6);
    }
    r.percentiles("owner-died", &mut latencies);
    let counter = match v.lock() {
        Ok(g) => g[0],
        Err(e) => e.into_guard()[0],
    };
    let completed: u64 = done.to_vec().iter().sum();
    // A holder killed after bumping the counter and before recording its
    // completion leaves exactly one increment nobody completed.
    let in_flight = stage_count[2];
    let expected = completed + in_flight;
    r.lost = expected.saturating_sub(counter);
    r.duplicated = counter.saturating_sub(expected);
    r.allowed_lost = 0;
    let want_flagged = stage_count[1] + stage_count[2] + stage_count[3];
    if n as u64 != r.faults {
        r.problem(format!(
            "{} kills of holders, {} OwnerDied recoveries",
            r.faults, n
        ));
    }
    if flagged.load() != want_flagged {
        r.problem(format!(
            "{} holders died mid-increment, {} recoveries saw it",
            want_flagged,
            flagged.load()
        ));
    }
    r.actions = format!(
        "{} holders SIGKILLed holding a Value lock ({} before the increment, {} flag set, {} counter bumped, {} completed); {} survivors, {} increments",
        r.faults,
        stage_count[0],
        stage_count[1],
        stage_count[2],
        stage_count[3],
        SURVIVORS,
        counter
    );
    r.notes.push(format!(
        "counter {counter} = {completed} completed + {in_flight} in flight at death (exact)"
    ));
    Ok(r)
}

// ------------------------------------------------------------------ queue

/// Producers and consumers of one `Queue` SIGKILLed at random points every
/// few milliseconds while `items` distinct ids go through.
fn queue_kill(size: Size) -> Outcome<Report> {
    let items: u64 = size.pick(10_000_000, 1_000_000);
    const P: usize = 2;
    const C: usize = 2;
    let mut r = Report::new("queue_kill");
    let q = Arc::new(Queue::<u64>::new()?);
    let seen = Arc::new(RawArray::<u32>::zeroed(items as usize)?);
    // Producer p puts ids [start(p), end(p)). Its state word is 2 * id
    // for the next id to put, plus one while that put is under way (then
    // the id is in flight: a producer killed there may or may not have
    // committed it).
    let state = Arc::new(RawArray::<u64>::zeroed(P)?);
    let end = |p: usize| items * (p as u64 + 1) / P as u64;
    for p in 0..P {
        state.set(p, 2 * (items * p as u64 / P as u64))?;
    }
    let produced = Arc::new(RawValue::new(0u32)?);
    // The longest single put or get (ns) a survivor saw.
    let stall = Arc::new(RawValue::new(0u64)?);
    let note_stall = |stall: &RawValue<u64>, t: Instant| {
        let d = t.elapsed().as_nanos() as u64;
        let mut cur = stall.load();
        while d > cur {
            match stall.compare_exchange(cur, d) {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
    };

    let start_producer = |p: usize| -> Outcome<Process<'static>> {
        let (q, state, stall) = (q.clone(), state.clone(), stall.clone());
        let e = end(p);
        let mut proc_ = Process::new(move || -> Result<(), String> {
            let word = &state.as_atomics()[p];
            loop {
                let id = word.load(Ordering::SeqCst) / 2;
                if id >= e {
                    return Ok(());
                }
                word.store(2 * id + 1, Ordering::SeqCst);
                let t = Instant::now();
                q.put(id).map_err(|e| e.to_string())?;
                note_stall(&stall, t);
                word.store(2 * (id + 1), Ordering::SeqCst);
            }
        })
        .with_die_with_parent(true);
        proc_.start()?;
        Ok(proc_)
    };
    let start_consumer = || -> Outcome<Process<'static>> {
        let (q, seen, produced, stall) = (q.clone(), seen.clone(), produced.clone(), stall.clone());
        let mut proc_ = Process::new(move || -> Result<(), String> {
            loop {
                let t = Instant::now();
                match q.get_timeout(Duration::from_millis(20)) {
                    Ok(id) => {
                        note_stall(&stall, t);
                        match seen.as_atomics().get(id as usize) {
                            Some(s) => {
                                s.fetch_add(1, Ordering::Relaxed);
                            }
                            None => return Err(format!("an id out of range came: {id}")),
                        }
                    }
                    Err(_) if produced.load() == 1 && q.empty() => return Ok(()),
                    Err(_) => {}
                }
            }
        })
        .with_die_with_parent(true);
        proc_.start()?;
        Ok(proc_)
    };

    let mut producers = (0..P).map(start_producer).collect::<Outcome<Vec<_>>>()?;
    let mut consumers = (0..C)
        .map(|_| start_consumer())
        .collect::<Outcome<Vec<_>>>()?;
    let mut rng = Rng::new();
    let seed = rng.0;
    let (mut pk, mut ck) = (0u64, 0u64);
    let mut producer_in_flight = HashSet::new();
    let all_produced =
        |state: &RawArray<u64>| (0..P).all(|p| state.get(p).unwrap_or(0) / 2 >= end(p));
    let t0 = Instant::now();
    let limit = size.bound("queue_kill") / 2;
    while !all_produced(&state) {
        if t0.elapsed() > limit {
            r.problem(format!("producers not done after {} s", limit.as_secs()));
            break;
        }
        std::thread::sleep(Duration::from_micros(1000 + rng.below(3000)));
        let who = rng.below((P + C) as u64) as usize;
        if who < P {
            if !kill_and_reap(&mut producers[who]) {
                r.problem("a producer was not reaped within 5 s");
            }
            // Killed during a put: that id is its in-flight item, in the
            // queue or not, never both; its replacement goes on after it.
            // Killed between puts: nothing was in flight.
            let w = state.get(who)?;
            if w % 2 == 1 {
                producer_in_flight.insert(w / 2);
                state.set(who, w + 1)?;
            }
            pk += 1;
            producers[who] = start_producer(who)?;
        } else {
            let c = who - P;
            if !kill_and_reap(&mut consumers[c]) {
                r.problem("a consumer was not reaped within 5 s");
            }
            ck += 1;
            consumers[c] = start_consumer()?;
        }
    }
    for mut p in producers {
        if !matches!(p.join_timeout(STUCK), Ok(Some(s)) if s.success()) {
            r.problem("a producer did not finish cleanly within 5 s");
            kill_and_reap(&mut p);
        }
    }
    produced.store(1);
    for mut c in consumers {
        if !matches!(c.join_timeout(Duration::from_secs(30)), Ok(Some(s)) if s.success()) {
            r.problem(format!(
                "a consumer did not drain and finish within 30 s: {:?}",
                c.message()
            ));
            kill_and_reap(&mut c);
        }
    }
    let counts = seen.to_vec();
    let mut lost_producer = 0;
    let mut lost_other = 0;
    for (id, &n) in counts.iter().enumerate() {
        if n == 0 {
            if producer_in_flight.contains(&(id as u64)) {
                lost_producer += 1;
            } else {
                lost_other += 1;
            }
        } else if n > 1 {
            r.duplicated += u64::from(n - 1);
        }
    }
    r.faults = pk + ck;
    r.lost = lost_producer + lost_other;
    // Each killed process loses at most its own in-flight item: a producer
    // the id it was putting, a consumer the one it had taken.
    r.allowed_lost = lost_producer + ck.min(lost_other);
    if lost_other > ck {
        r.problem(format!(
            "{lost_other} items lost that no killed producer was putting, for {ck} killed consumers"
        ));
    }
    r.actions = format!(
        "{items} ids through a Queue, {P} producers, {C} consumers; SIGKILLed every 1-4 ms: {pk} producers, {ck} consumers (seed {seed})"
    );
    r.notes.push(format!(
        "{} producers killed mid-put ({} of those items arrived, {lost_producer} lost); {lost_other} lost in killed consumers' hands; {} items lost per kill",
        producer_in_flight.len(),
        producer_in_flight.len() as u64 - lost_producer,
        if r.faults > 0 {
            format!("{:.2}", r.lost as f64 / r.faults as f64)
        } else {
            "-".into()
        }
    ));
    r.latency_ms("longest put/get", Some(stall.load() as f64 / 1e6));
    Ok(r)
}

// ------------------------------------------------------------------ pipes

/// The connection kinds a writer or a hostile peer is tried on: the
/// shared-memory ring of `pipe`, and `pipe_os`'s kernel socketpair and
/// one-way kernel pipe.
const TRANSPORTS: [&str; 3] = ["ring", "socketpair", "os_pipe"];

/// A (receiving, sending) pair of the named kind.
fn transport_pair(kind: &str) -> multiproc::Result<(Connection, Connection)> {
    match kind {
        "ring" => Ok(multiproc::pipe(false)?),
        "socketpair" => Ok(multiproc::connection::pipe_os(true)?),
        _ => Ok(multiproc::connection::pipe_os(false)?),
    }
}

/// A writer SIGKILLed in the middle of a message, on each transport: the
/// reader must get `Truncated` (or `Eof` at a message boundary), never a
/// hang or a message.
fn pipe_kill(size: Size) -> Outcome<Report> {
    let trials = size.pick(100, 10);
    let mut r = Report::new("pipe_kill");
    let mut rng = Rng::new();
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    let mut latencies = Vec::new();
    for transport in TRANSPORTS {
        for t in 0..trials {
            let (rx, tx) = transport_pair(transport)?;
            // Half the trials: the writer dies by its own SIGKILL after
            // `cut` raw bytes of a framed message (a cut header included);
            // the other half: it is blocked writing a message larger than
            // the ring and is SIGKILLed from here.
            let from_outside = t % 2 == 1;
            let body = 4096u64;
            let cut = 1 + rng.below(body + 3) as usize;
            let big = 64usize << 20;
            let mut writer = Process::new(move || -> i32 {
                if from_outside {
                    let _ = tx.send_bytes(&vec![7u8; big]);
                    park();
                }
                let mut frame = (body as u32).to_be_bytes().to_vec();
                frame.extend(std::iter::repeat_n(7u8, body as usize));
                let _ = tx.__send_raw(&frame[..cut]);
                let _ = nix::sys::signal::raise(Signal::SIGKILL);
                park()
            })
            .with_die_with_parent(true);
            writer.start()?;
            let t0;
            if from_outside {
                // The first bytes are there: it is mid-message.
                if !rx.poll(Some(STUCK))? {
                    r.problem(format!("{transport}: nothing arrived within 5 s"));
                    kill_and_reap(&mut writer);
                    continue;
                }
                std::thread::sleep(Duration::from_millis(1));
                t0 = Instant::now();
                kill_and_reap(&mut writer);
            } else {
                let _ = writer.join_timeout(STUCK);
                t0 = Instant::now();
            }
            // The handle (and the closure with its copy of the writing end,
            // if the parent keeps it) goes: only the dead writer held it.
            drop(writer);
            r.faults += 1;
            // A hang here is caught by the scenario's bound.
            let got = rx.recv_bytes();
            latencies.push(ms(t0.elapsed()));
            let kind = match &got {
                Ok(m) => {
                    r.problem(format!(
                        "{transport}: a {}-byte message arrived from a writer killed mid-message",
                        m.len()
                    ));
                    "message".to_owned()
                }
                Err(RecvError::Truncated { .. }) => "Truncated".to_owned(),
                Err(RecvError::Eof) => "Eof".to_owned(),
                Err(e) => {
                    r.problem(format!("{transport}: unexpected error {e}"));
                    format!("{e}")
                }
            };
            *kinds.entry(format!("{transport}: {kind}")).or_default() += 1;
            if !matches!(rx.recv_bytes(), Err(RecvError::Eof)) {
                r.problem(format!("{transport}: no Eof after the cut message"));
            }
        }
    }
    r.percentiles("kill to error", &mut latencies);
    r.actions = format!(
        "{} writers SIGKILLed mid-message ({} per transport: pipe's ring, socketpair, kernel pipe; cut header or body, or blocked in a 64 MiB send)",
        r.faults, trials
    );
    r.notes.push(format!("receiver got: {kinds:?}"));
    Ok(r)
}

// ------------------------------------------------------------------- pool

fn double(x: u64) -> u64 {
    x * 2
}

/// A task that writes its worker's pid to `path`, then waits to be killed.
fn victim_task(path: String) -> u64 {
    let _ = std::fs::write(&path, std::process::id().to_string());
    std::thread::sleep(Duration::from_secs(60));
    0
}

/// A pool worker SIGKILLed in the middle of a task, among other tasks.
fn pool_kill(size: Size) -> Outcome<Report> {
    let rounds = size.pick(20, 3);
    let others = size.pick(200u64, 50);
    let mut r = Report::new("pool_kill");
    let dir = private_dir("pool")?;
    let pool = Pool::new(2)?;
    let mut detect = Vec::new();
    let mut replaced = 0;
    for round in 0..rounds {
        let path = dir.path.join(format!("victim-{round}"));
        let victim = pool.apply_async(victim_task, path.to_string_lossy().into_owned())?;
        let tasks = (0..others)
            .map(|x| pool.apply_async(double, x))
            .collect::<Result<Vec<_>, _>>()?;
        let mut pid = None;
        wait_until(STUCK, || {
            pid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            pid.is_some()
        });
        let Some(pid) = pid else {
            r.problem("the victim task never started within 5 s");
            break;
        };
        let t0 = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)?;
        r.faults += 1;
        match victim.get_timeout(STUCK) {
            Err(TaskError::WorkerDied { .. }) => detect.push(ms(t0.elapsed())),
            Err(TaskError::Timeout) => r.problem("the killed task's result never came (5 s)"),
            other => r.problem(format!("the killed task gave {other:?}, not WorkerDied")),
        }
        for (x, t) in tasks.into_iter().enumerate() {
            match t.get_timeout(STUCK) {
                Ok(v) if v == 2 * x as u64 => {}
                Ok(v) => {
                    r.lost += 1;
                    r.problem(format!("task {x} gave {v}"));
                }
                Err(e) => {
                    r.lost += 1;
                    if r.lost < 4 {
                        r.problem(format!("task {x} failed: {e}"));
                    }
                }
            }
        }
        let pids = pool.pids();
        if pids.len() == 2 && !pids.contains(&pid) {
            replaced += 1;
        } else {
            r.problem(format!(
                "after the kill of worker {pid} the pool's workers are {pids:?}"
            ));
        }
    }
    drop(pool);
    r.percentiles("kill to WorkerDied", &mut detect);
    r.actions = format!(
        "{} workers of a 2-worker Pool SIGKILLed mid-task among {} other tasks each; {} replaced",
        r.faults, others, replaced
    );
    Ok(r)
}

// ---------------------------------------------------------------- manager

/// Clients SIGKILLed while holding a manager's `Lock`: the server must
/// release it for the others.
fn manager_kill(size: Size) -> Outcome<Report> {
    let kills = size.pick(50, 5);
    let mut r = Report::new("manager_kill");
    let m = Manager::start()?;
    let lock = m.lock()?;
    let list = m.list::<u64>()?;
    let mut latencies = Vec::new();
    for i in 0..kills {
        let held = Arc::new(RawValue::new(0u32)?);
        let (l2, held2, list2) = (lock.clone(), held.clone(), list.clone());
        let mut holder = Process::new(move || -> multiproc::Result<()> {
            l2.acquire()?;
            list2.push(&(i as u64))?;
            held2.store(1);
            park();
        })
        .with_die_with_parent(true);
        holder.start()?;
        if !wait_until(STUCK, || held.load() == 1) {
            r.problem(format!("holder {i} never got the lock within 5 s"));
            kill_and_reap(&mut holder);
            break;
        }
        let t0 = Instant::now();
        kill_and_reap(&mut holder);
        r.faults += 1;
        match lock.acquire_timeout(STUCK) {
            Ok(true) => {
                latencies.push(ms(t0.elapsed()));
                lock.release()?;
            }
            Ok(false) => {
                r.problem(format!("kill {i}: the lock was not released within 5 s"));
                break;
            }
            Err(e) => {
                r.problem(format!("kill {i}: {e}"));
                break;
            }
        }
    }
    let n = list.len()?;
    if n as u64 != r.faults {
        r.problem(format!(
            "{} holders, {} appends reached the list",
            r.faults, n
        ));
    }
    drop((lock, list));
    m.shutdown()?;
    r.percentiles("kill to re-acquire", &mut latencies);
    r.actions = format!(
        "{} manager clients SIGKILLed holding a managed Lock",
        r.faults
    );
    Ok(r)
}

// ------------------------------------------------------------------ churn

/// Many start/join cycles (exits, codes, kills): nothing may pile up.
fn churn(size: Size) -> Outcome<Report> {
    let cycles = size.pick(10_000usize, 1_000);
    let mut r = Report::new("churn");
    let cycle = |i: usize, r: &mut Report| -> Outcome<()> {
        let code = (i % 3) as i32;
        let killed = i % 20 == 19;
        let mut p = Process::new(move || {
            if killed {
                park();
            }
            code
        });
        p.start()?;
        if killed {
            if !kill_and_reap(&mut p) {
                r.problem(format!("child {i} not reaped after SIGKILL"));
            }
            r.faults += 1;
        } else {
            match p.join_timeout(STUCK)? {
                Some(st) if st.code() == code => {}
                st => r.problem(format!("child {i}: {st:?}, expected exit code {code}")),
            }
        }
        Ok(())
    };
    // A warm-up first: the first children set up what every later one
    // reuses (the shared heap's arena, stdio buffers).
    let warm = cycles / 10;
    for i in 0..warm {
        cycle(i, &mut r)?;
    }
    let (fds0, rss0) = (open_fds(), rss_kib());
    let t0 = Instant::now();
    for i in warm..cycles {
        cycle(i, &mut r)?;
        if r.problems.len() > 3 {
            break;
        }
    }
    let per = t0.elapsed() / (cycles - warm) as u32;
    let (fds1, rss1) = (open_fds(), rss_kib());
    if fds1.leaked_since(&fds0) {
        r.problem(format!(
            "descriptors grew from {} to {} over the cycles",
            fds0.total(),
            fds1.total()
        ));
    }
    // A leak of even a page per child shows over thousands of cycles.
    let grew = rss1.saturating_sub(rss0);
    let limit = 8 * 1024;
    if grew > limit {
        r.problem(format!(
            "resident memory grew {grew} KiB over {} cycles",
            cycles - warm
        ));
    }
    r.latency_ms("start+join", Some(ms(per)));
    r.actions = format!(
        "{cycles} fork start/join cycles (exit codes 0-2, every 20th SIGKILLed: {})",
        r.faults
    );
    r.notes.push(format!(
        "after warm-up: fds {} -> {}, RSS {rss0} -> {rss1} KiB",
        fds0.total(),
        fds1.total()
    ));
    Ok(r)
}

// --------------------------------------------------------------- listener

/// A private directory for sockets and files, removed on drop.
struct PrivateDir {
    path: std::path::PathBuf,
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn private_dir(what: &str) -> Outcome<PrivateDir> {
    let path = std::env::temp_dir().join(format!(
        "multiproc-faults-{what}-{}-{}",
        std::process::id(),
        Rng::new().next()
    ));
    std::fs::create_dir(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(PrivateDir { path })
}

/// Serves `listener` on threads until `stop`: each accepted connection is
/// echoed; when it ends, what its reader saw (messages as `msg:LEN`, then
/// the error) goes to `events`.
fn serve_echo(
    mut listener: Listener,
    stop: Arc<AtomicBool>,
    events: mpsc::Sender<Vec<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok(conn) = listener.accept_timeout(Duration::from_millis(50)) else {
                continue;
            };
            let events = events.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                loop {
                    match conn.recv_bytes() {
                        Ok(m) => {
                            seen.push(format!("msg:{}", m.len()));
                            // A peer gone by now shows as Eof next.
                            let _ = conn.send_bytes(&m);
                        }
                        Err(e @ RecvError::MessageTooLarge { .. }) => {
                            seen.push(error_kind(&e));
                        }
                        Err(e) => {
                            seen.push(error_kind(&e));
                            break;
                        }
                    }
                }
                let _ = events.send(seen);
            });
        }
    })
}

fn error_kind(e: &RecvError) -> String {
    match e {
        RecvError::Eof => "Eof".into(),
        RecvError::Truncated { .. } => "Truncated".into(),
        RecvError::MessageTooLarge { .. } => "MessageTooLarge".into(),
        RecvError::Decode(_) => "Codec".into(),
        other => format!("other({other})"),
    }
}

/// A legitimate client's connect plus one echoed message, in a thread,
/// bounded by `limit`; its time, or `None` if it did not finish in time.
fn legit_round_trip(address: &Address, limit: Duration) -> Option<Duration> {
    let (tx, rx) = mpsc::channel();
    let address = address.clone();
    std::thread::spawn(move || {
        let t = Instant::now();
        let ok = (|| -> multiproc::Result<bool> {
            let c = Client::connect_timeout(&address, Some(KEY), Some(limit))?;
            c.send_bytes(b"ping")?;
            if !c.poll(Some(limit))? {
                return Ok(false);
            }
            Ok(c.recv_bytes()? == b"ping")
        })();
        let _ = tx.send((ok, t.elapsed()));
    });
    match rx.recv_timeout(limit + Duration::from_secs(1)) {
        Ok((Ok(true), d)) => Some(d),
        _ => None,
    }
}

/// Raises this process's descriptor limit to its hard limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we own; failure is harmless.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// Limits this process's address space to `extra` bytes more than it
/// maps now (best effort).
fn limit_address_space(extra: u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(kib) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let lim = libc::rlimit {
        rlim_cur: kib * 1024 + extra,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we own; failure is harmless.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
}

/// Opens a Unix stream connection to `path` without blocking (a full
/// backlog refuses it rather than waiting); the socket, if it connected.
fn idle_connect(path: &std::path::Path) -> Option<std::os::fd::OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    let addr = UnixAddr::new(path).ok()?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).ok()?;
    Some(fd)
}

/// A legitimate client's latency while many connections sit idle before
/// authenticating (a pre-authentication flood).
fn listener_flood(size: Size) -> Outcome<Report> {
    let idle = size.pick(1000usize, 100);
    let limit = Duration::from_secs(size.pick(30, 10));
    let mut r = Report::new("listener_flood");
    raise_fd_limit();
    let dir = private_dir("flood")?;
    let path = dir.path.join("listener.sock");
    let address = Address::parse(&format!("unix:{}", path.display()))?;
    let listener = Listener::bind(&address, Some(KEY))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (etx, _erx) = mpsc::channel();
    let server = serve_echo(listener, stop.clone(), etx);
    let quiet = legit_round_trip(&address, limit);
    let mut conns = Vec::new();
    let mut refused = 0;
    for _ in 0..idle {
        match idle_connect(&path) {
            Some(fd) => conns.push(fd),
            None => refused += 1,
        }
    }
    r.faults = conns.len() as u64;
    let flooded = legit_round_trip(&address, limit);
    drop(conns);
    stop.store(true, Ordering::Relaxed);
    let (jtx, jrx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = server.join();
        let _ = jtx.send(());
    });
    if jrx.recv_timeout(limit).is_err() {
        r.problem("the accept loop did not stop");
    }
    r.latency_ms("legit client, quiet", quiet.map(ms));
    r.latency_ms(
        &format!("legit client, {} idle conns", r.faults),
        flooded.map(ms),
    );
    if quiet.is_none() {
        r.problem("a legitimate client failed with no flood at all");
    }
    r.actions = format!(
        "{} unauthenticated connections held open on a Unix Listener ({refused} refused by the backlog); a legitimate connect + 1 echo, bounded by {} s",
        r.faults,
        limit.as_secs()
    );
    if flooded.is_none() {
        r.notes.push(format!(
            "legit client under flood: timed out ({} s)",
            limit.as_secs()
        ));
    }
    Ok(r)
}

// ---------------------------------------------------------------- garbage

/// One hostile peer: what it sends (then it closes), and what the
/// receiver must report, in order ("error": any error; empty: any error
/// at the end, no hang).
struct Garbage {
    name: &'static str,
    bytes: Vec<u8>,
    expect: &'static [&'static str],
}

fn garbage_cases(rng: &mut Rng) -> Vec<Garbage> {
    let mut over = (2u32 << 20).to_be_bytes().to_vec();
    over.extend(std::iter::repeat_n(0u8, 2 << 20));
    over.extend(2u32.to_be_bytes());
    over.extend(b"ok");
    let mut forged = vec![0xff; 4];
    forged.extend(0xF000_0000u64.to_be_bytes());
    let mut cut_body = 100u32.to_be_bytes().to_vec();
    cut_body.extend([1u8; 10]);
    let random: Vec<u8> = (0..64).map(|_| rng.next() as u8).collect();
    vec![
        Garbage {
            name: "cut header",
            bytes: vec![0, 0],
            expect: &["Truncated"],
        },
        Garbage {
            name: "cut body",
            bytes: cut_body,
            expect: &["Truncated"],
        },
        Garbage {
            name: "over the maximum, then \"ok\"",
            bytes: over,
            expect: &["MessageTooLarge", "msg:2", "Eof"],
        },
        Garbage {
            name: "forged 3.75 GiB long header",
            bytes: forged,
            expect: &["MessageTooLarge", "error"],
        },
        Garbage {
            name: "64 random bytes",
            bytes: random,
            expect: &[],
        },
    ]
}

/// Whether what the receiver saw matches `expect` (empty: any error, no
/// hang).
fn matches_expect(seen: &[String], expect: &[&str]) -> bool {
    if expect.is_empty() {
        return seen
            .last()
            .is_some_and(|l| !l.starts_with("msg:") && !l.starts_with("other"));
    }
    // "error": any error at that place.
    seen.len() == expect.len()
        && seen
            .iter()
            .zip(expect)
            .all(|(a, b)| a == b || (*b == "error" && !a.starts_with("msg:")))
}

/// Garbage sent to a manager server and to `Connection`s (pipe's ring,
/// socketpair, authenticated Listener connection): each receiver reports
/// an error and goes on serving the others.
fn garbage(size: Size) -> Outcome<Report> {
    let rounds = size.pick(10, 1);
    let mut r = Report::new("garbage");
    let mut rng = Rng::new();

    // The manager first: it forks, and this process has no threads yet.
    let m = Manager::builder().authkey(KEY.to_vec()).start()?;
    let list = m.list::<u64>()?;
    let manager_garbage: Vec<(&str, Vec<u8>)> = vec![
        ("undecodable frame", {
            let mut v = 8u32.to_be_bytes().to_vec();
            v.extend([0xff; 8]);
            v
        }),
        (
            "length over the 64 MiB limit",
            0x7fff_ffffu32.to_be_bytes().to_vec(),
        ),
        ("cut frame", {
            let mut v = 100u32.to_be_bytes().to_vec();
            v.extend([0u8; 10]);
            v
        }),
    ];
    let mut closed = 0;
    let mut lat = Vec::new();
    for round in 0..rounds {
        for (name, bytes) in &manager_garbage {
            let c = Client::connect_sha256_only(m.address(), KEY, Some(STUCK))?;
            c.__send_raw(bytes)?;
            r.faults += 1;
            // The server must close a connection it cannot decode; a cut
            // frame is closed from this side.
            if *name != "cut frame" {
                let t = Instant::now();
                if c.poll(Some(STUCK))? && c.recv_bytes().is_err() {
                    closed += 1;
                    lat.push(ms(t.elapsed()));
                } else {
                    r.problem(format!("manager: {name}: the server kept the connection"));
                }
            }
            drop(c);
            let t = Instant::now();
            list.push(&(round as u64))?;
            lat.push(ms(t.elapsed()));
        }
    }
    // Frames that announce 60 MiB and stall (sent after authentication):
    // how much the server grows for them (a figure, not judged here).
    if let Some(pid) = m.server_pid() {
        let before = rss_of(pid);
        let stalled = (0..2)
            .map(|_| {
                let c = Client::connect_sha256_only(m.address(), KEY, Some(STUCK))?;
                let mut v = (60u32 << 20).to_be_bytes().to_vec();
                v.extend([0u8; 16]);
                c.__send_raw(&v)?;
                Ok(c)
            })
            .collect::<multiproc::Result<Vec<_>>>()?;
        std::thread::sleep(Duration::from_millis(300));
        let during = rss_of(pid);
        drop(stalled);
        r.faults += 2;
        r.notes.push(format!(
            "manager server RSS {before} -> {during} KiB while 2 connections each announce a 60 MiB frame and stall"
        ));
        if during.saturating_sub(before) > 32 << 10 {
            r.problem(format!(
                "manager: 2 stalled 60 MiB frame headers grew the server by {} MiB",
                during.saturating_sub(before) >> 10
            ));
        }
        // Served after them too.
        list.push(&0)?;
    }
    // Another client process still gets served.
    let list2 = list.clone();
    let mut other = Process::new(move || -> multiproc::Result<()> { Ok(list2.push(&7)?) })
        .with_die_with_parent(true);
    other.start()?;
    if !matches!(other.join_timeout(STUCK), Ok(Some(s)) if s.success()) {
        r.problem(format!(
            "manager: a new client process was not served: {:?}",
            other.message()
        ));
        kill_and_reap(&mut other);
    }
    let want = rounds * manager_garbage.len() + 1 + usize::from(m.server_pid().is_some());
    if list.len()? != want {
        r.problem("manager: appends between the garbage were lost");
    }
    drop(list);
    m.shutdown()?;

    let manager_faults = r.faults;

    // Connections: an in-process pipe pair per case and transport.
    let mut outcomes = Vec::new();
    for transport in TRANSPORTS {
        for case in garbage_cases(&mut rng) {
            let (rx, tx) = transport_pair(transport)?;
            let rx = rx.with_max_message(1 << 20);
            // Written from a thread (the ring holds less than the largest
            // case), which then closes its end.
            let bytes = case.bytes.clone();
            let w = std::thread::spawn(move || {
                let _ = tx.__send_raw(&bytes);
            });
            r.faults += 1;
            let seen = recv_all(&rx);
            let _ = w.join();
            check_case(&mut r, transport, &case, &seen);
            outcomes.push(format!("{transport} {}: {}", case.name, seen.join(",")));
        }
    }

    // A forged 3.75 GiB long header at the default maximum (4 GiB), to a
    // receiver under a 1 GiB address-space limit: an error, not an abort
    // for memory the peer only claimed, through `recv_bytes` and through
    // `recv_bytes_into` with a 64-byte buffer. Each try runs whole in a
    // child.
    for (transport, into) in TRANSPORTS.iter().flat_map(|&t| [(t, false), (t, true)]) {
        let call = if into {
            "recv_bytes_into"
        } else {
            "recv_bytes"
        };
        let mut child = Process::new(move || -> i32 {
            let Ok((rx, tx)) = transport_pair(transport) else {
                return 4;
            };
            let mut forged = vec![0xff; 4];
            forged.extend(0xF000_0000u64.to_be_bytes());
            forged.extend([0u8; 16]);
            if tx.__send_raw(&forged).is_err() {
                return 4;
            }
            drop(tx);
            // An abort's message would only repeat what the exit status
            // says: the child's stderr goes to /dev/null.
            if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                // SAFETY: dup2 onto descriptor 2 of this child, which no
                // Rust object owns; `null` stays open across the call.
                unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 2) };
            }
            limit_address_space(1 << 30);
            let got = if into {
                rx.recv_bytes_into(&mut [0u8; 64]).map(drop)
            } else {
                rx.recv_bytes().map(drop)
            };
            match got {
                Ok(()) => 3,
                Err(_) => 0,
            }
        })
        .with_die_with_parent(true);
        child.start()?;
        r.faults += 1;
        match child.join_timeout(STUCK)? {
            Some(st) if st.success() => outcomes.push(format!(
                "{transport} {call}, forged 3.75 GiB header under 1 GiB of address space: an error"
            )),
            Some(st) => r.problem(format!(
                "{transport} {call}: a forged 3.75 GiB header under a 1 GiB address-space limit: the receiver ended with {st}"
            )),
            None => {
                kill_and_reap(&mut child);
                r.problem(format!(
                    "{transport} {call}: a forged 3.75 GiB header: the receiver hung"
                ));
            }
        }
    }

    // An authenticated Listener connection per case; a legitimate client
    // after each must still be served.
    let dir = private_dir("garbage")?;
    let address = Address::parse(&format!("unix:{}", dir.path.join("l.sock").display()))?;
    let listener = Listener::bind(&address, Some(KEY))?.with_max_message(1 << 20);
    let stop = Arc::new(AtomicBool::new(false));
    let (etx, erx) = mpsc::channel();
    let server = serve_echo(listener, stop.clone(), etx);
    for case in garbage_cases(&mut rng) {
        let c = Client::connect_timeout(&address, Some(KEY), Some(STUCK))?;
        c.__send_raw(&case.bytes)?;
        drop(c);
        r.faults += 1;
        match erx.recv_timeout(STUCK) {
            Ok(seen) => {
                check_case(&mut r, "listener", &case, &seen);
                outcomes.push(format!("listener {}: {}", case.name, seen.join(",")));
            }
            Err(_) => r.problem(format!(
                "listener {}: the receiver did not finish within 5 s",
                case.name
            )),
        }
        match legit_round_trip(&address, STUCK) {
            Some(d) => lat.push(ms(d)),
            None => r.problem(format!(
                "listener: a legitimate client was not served after {}",
                case.name
            )),
        }
        // The legitimate client's connection ends too.
        let _ = erx.recv_timeout(STUCK);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    r.percentiles("legit call after garbage", &mut lat);
    r.actions = format!(
        "{} hostile peers: {} to a manager ({} garbage frames, {closed} connections closed by it; 2 stalled 60 MiB frames), {} to Connections (pipe's ring, socketpair, kernel pipe, Listener; max_message 1 MiB, and the default maximum under a 1 GiB address-space limit)",
        r.faults,
        manager_faults,
        rounds * manager_garbage.len(),
        r.faults - manager_faults
    );
    r.notes.extend(outcomes);
    Ok(r)
}

/// Everything a receiver reads until its first error other than
/// `MessageTooLarge`.
fn recv_all(rx: &Connection) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < 8 {
        match rx.recv_bytes() {
            Ok(m) => seen.push(format!("msg:{}", m.len())),
            Err(e @ RecvError::MessageTooLarge { .. }) => seen.push(error_kind(&e)),
            Err(e) => {
                seen.push(error_kind(&e));
                break;
            }
        }
    }
    seen
}

fn check_case(r: &mut Report, transport: &str, case: &Garbage, seen: &[String]) {
    if matches_expect(seen, case.expect) {
        return;
    }
    // A message promised readable after an oversized one, and lost.
    if case.expect.contains(&"msg:2") && !seen.iter().any(|s| s == "msg:2") {
        r.lost += 1;
    }
    r.problem(format!(
        "{transport}: {}: receiver saw [{}], expected [{}]",
        case.name,
        seen.join(","),
        if case.expect.is_empty() {
            "an error".to_owned()
        } else {
            case.expect.join(",")
        }
    ));
}

// ------------------------------------------------------------------ table

/// The table of reports.
pub fn table(reports: &[Report]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<15} {:>6} {:>11} {:>4} {:>8} {:>11}  {:<44} verdict",
        "scenario", "faults", "lost/allow", "dup", "zombies", "fd/RSS KiB", "latency (ms)"
    );
    for r in reports {
        let lat = r
            .latency
            .iter()
            .map(|l| match l.ms {
                Some(v) => format!("{} {}", l.name, fmt_ms(v)),
                None => format!("{} timed out", l.name),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "{:<15} {:>6} {:>11} {:>4} {:>8} {:>11}  {:<44} {}",
            r.scenario,
            r.faults,
            format!("{}/{}", r.lost, r.allowed_lost),
            r.duplicated,
            r.zombies,
            format!(
                "{:+}/{:+}",
                r.fds_after as i64 - r.fds_before as i64,
                r.rss_after_kib as i64 - r.rss_before_kib as i64
            ),
            lat,
            r.verdict()
        );
    }
    for r in reports {
        let _ = writeln!(out, "\n{} ({:.1} s): {}", r.scenario, r.seconds, r.actions);
        for n in &r.notes {
            let _ = writeln!(out, "  {n}");
        }
    }
    out
}

fn fmt_ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}
