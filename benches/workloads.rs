#![allow(missing_docs)] // a bench binary, not API
//! The shared-state workloads of `shared/WORKLOADS.md` at their full sizes,
//! each printed as one JSON line, with the raw baseline measured in the
//! same run and the ratio to it on stderr:
//! - `counter`: P = 2 processes each add 1 to one shared u64 K = 1e6 times
//!   under its lock; baseline: a bare futex mutex in a memfd mapping, and an
//!   atomic fetch_add (lock-free, for scale).
//! - `array_fill`: P = 2 processes fill disjoint halves of an n = 1e8 f64
//!   array; baseline: the same fill of a plain populated memfd mapping.
//!
//! Run with `cargo bench --bench workloads`; `-- --quick` for small sizes.

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::{RawArray, RawValue, Value};
use support::{BareFutexLock, run_forked, shared_mapping};

const P: usize = 2;

fn line(
    imp: &str,
    workload: &str,
    variant: &str,
    params: &str,
    metric: &str,
    value: f64,
    check: &str,
) {
    println!(
        "{{\"impl\": \"{imp}\", \"workload\": \"{workload}\", \"variant\": \"{variant}\", \
         \"params\": {{{params}}}, \"metric\": \"{metric}\", \"value\": {value:.4}, \"check\": \"{check}\"}}"
    );
}

fn check_eq(got: u64, want: u64) -> String {
    if got == want {
        "ok".into()
    } else {
        format!("final {got} != expected {want}")
    }
}

/// Best of `reps` runs (the machine is noisy; the minimum is the most
/// repeatable figure).
fn best(reps: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..reps).map(|_| f()).min().unwrap()
}

fn counter(k: u64, reps: usize) {
    let params = format!("\"P\": {P}, \"K\": {k}");
    let v = Value::new(0u64).unwrap();
    let mut ok = String::from("ok");
    let t = best(reps, || {
        v.set(0);
        let t = run_forked(P, |_| {
            for _ in 0..k {
                *v.lock().unwrap() += 1;
            }
        });
        let c = check_eq(v.get(), k * P as u64);
        if c != "ok" {
            ok = c;
        }
        t
    });
    let ns_mp = t.as_nanos() as f64 / (k * P as u64) as f64;
    line(
        "multiproc",
        "counter",
        "Value_lock",
        &params,
        "ns_per_increment",
        ns_mp,
        &ok,
    );

    let map = shared_mapping(4096, true);
    // SAFETY: a page-aligned 4096-byte mapping: lock word at 0, counter at 8.
    let (word, count) = unsafe {
        (
            AtomicU32::from_ptr(map.as_mut_ptr().cast()),
            AtomicU64::from_ptr(map.as_mut_ptr().add(8).cast()),
        )
    };
    let lock = BareFutexLock(word);
    let mut ok = String::from("ok");
    let t = best(reps, || {
        count.store(0, Ordering::Relaxed);
        let t = run_forked(P, |_| {
            for _ in 0..k {
                lock.lock();
                count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                lock.unlock();
            }
        });
        let c = check_eq(count.load(Ordering::Relaxed), k * P as u64);
        if c != "ok" {
            ok = c;
        }
        t
    });
    let ns_bare = t.as_nanos() as f64 / (k * P as u64) as f64;
    line(
        "raw",
        "counter",
        "bare_futex_lock",
        &params,
        "ns_per_increment",
        ns_bare,
        &ok,
    );

    let raw = RawValue::new(0u64).unwrap();
    let mut ok = String::from("ok");
    let t = best(reps, || {
        raw.store(0);
        let t = run_forked(P, |_| {
            for _ in 0..k {
                raw.fetch_add(1);
            }
        });
        let c = check_eq(raw.load(), k * P as u64);
        if c != "ok" {
            ok = c;
        }
        t
    });
    let ns_atomic = t.as_nanos() as f64 / (k * P as u64) as f64;
    line(
        "multiproc",
        "counter",
        "RawValue_fetch_add",
        &params,
        "ns_per_increment",
        ns_atomic,
        &ok,
    );
    eprintln!(
        "counter: Value under its lock {ns_mp:.1} ns, bare futex lock {ns_bare:.1} ns \
         (ratio {:.2}, target <= 1.5); atomic fetch_add {ns_atomic:.1} ns",
        ns_mp / ns_bare
    );
}

fn array_fill(n: usize, reps: usize) {
    let params = format!("\"P\": {P}, \"n\": {n}");
    let gb = (n * 8) as f64 / 1e9;
    // Each child writes element i = i as f64; the parent checks a sampled
    // checksum (every 997th element) and both ends.
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
    let fill = |base: *mut f64, i: usize| {
        let r = i * n / P..(i + 1) * n / P;
        // SAFETY: each child fills its own half of an n-element array that
        // outlives it.
        let s = unsafe { std::slice::from_raw_parts_mut(base.add(r.start), r.len()) };
        for (j, x) in s.iter_mut().enumerate() {
            *x = (r.start + j) as f64;
        }
    };

    // The variants alternate within each repetition, after one discarded
    // warm-up round: on this virtual machine the first touch of memory the
    // guest has not used before is much slower than later ones, and would
    // otherwise be charged to whichever variant runs first.
    let (mut ok_mp, mut ok_raw) = (String::from("ok"), String::from("ok"));
    let (mut t_mp, mut t_raw, mut t_create) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for rep in 0..=reps {
        let t0 = Instant::now();
        let a = RawArray::<f64>::zeroed(n).unwrap();
        let created = t0.elapsed();
        let base = a.as_ptr() as usize;
        let t = run_forked(P, |i| fill(base as *mut f64, i));
        let c = verify(&|i| a.get(i).unwrap());
        drop(a);
        let m = shared_mapping(n * 8, true);
        let base = m.as_mut_ptr() as usize;
        let tr = run_forked(P, |i| fill(base as *mut f64, i));
        // SAFETY: the children have ended; the parent alone reads the mapping.
        let cr = verify(&|i| unsafe { *(base as *const f64).add(i) });
        drop(m);
        if c != "ok" {
            ok_mp = c;
        }
        if cr != "ok" {
            ok_raw = cr;
        }
        if rep > 0 {
            t_mp = t_mp.min(t);
            t_raw = t_raw.min(tr);
            t_create = t_create.min(created);
        }
    }
    let gbs_mp = gb / t_mp.as_secs_f64();
    line(
        "multiproc",
        "array_fill",
        "RawArray",
        &params,
        "GB_per_s",
        gbs_mp,
        &ok_mp,
    );
    let gbs_raw = gb / t_raw.as_secs_f64();
    line(
        "raw",
        "array_fill",
        "populated_memfd",
        &params,
        "GB_per_s",
        gbs_raw,
        &ok_raw,
    );

    let mut t_lazy = Duration::MAX;
    for _ in 0..reps {
        let m = shared_mapping(n * 8, false);
        let base = m.as_mut_ptr() as usize;
        t_lazy = t_lazy.min(run_forked(P, |i| fill(base as *mut f64, i)));
    }
    let gbs_lazy = gb / t_lazy.as_secs_f64();
    line(
        "raw",
        "array_fill",
        "fresh_memfd_faulting",
        &params,
        "GB_per_s",
        gbs_lazy,
        "ok",
    );
    eprintln!(
        "array_fill: RawArray {gbs_mp:.2} GB/s, plain populated memfd {gbs_raw:.2} GB/s \
         (ratio {:.2}, target >= 0.9); unpopulated memfd {gbs_lazy:.2} GB/s; \
         creating the populated array took {t_create:?}",
        gbs_mp / gbs_raw
    );
}

/// `spawn`: start a child that exits at once, then join it, 1,000 times.
/// Baseline: a bare `fork` + `_exit(0)` + `waitpid`.
fn spawn_workload(n: usize, reps: usize) {
    use multiproc::Process;
    let params = format!("\"children\": {n}, \"start_method\": \"fork\"");
    let mut ok = String::from("ok");
    let mut t_mp = Duration::MAX;
    let mut t_raw = Duration::MAX;
    for _ in 0..=reps {
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: the child does nothing; whatever threads the bench has
            // hold nothing it needs.
            let mut p = unsafe { Process::new(|| ()).allow_threads() };
            p.start().unwrap();
            if !p.join().unwrap().success() {
                ok = "a child failed".into();
            }
        }
        t_mp = t_mp.min(t.elapsed());
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: the child only calls _exit, which is async-signal-safe.
            match unsafe { nix::unistd::fork() }.unwrap() {
                // SAFETY: _exit is always safe to call; it does not return.
                nix::unistd::ForkResult::Child => unsafe { libc::_exit(0) },
                nix::unistd::ForkResult::Parent { child } => {
                    nix::sys::wait::waitpid(child, None).unwrap();
                }
            }
        }
        t_raw = t_raw.min(t.elapsed());
    }
    let us_mp = t_mp.as_secs_f64() * 1e6 / n as f64;
    let us_raw = t_raw.as_secs_f64() * 1e6 / n as f64;
    line(
        "multiproc",
        "spawn",
        "Process_fork",
        &params,
        "us_per_child",
        us_mp,
        &ok,
    );
    line(
        "raw",
        "spawn",
        "fork_exit_waitpid",
        &params,
        "us_per_child",
        us_raw,
        "ok",
    );
    eprintln!(
        "spawn: Process start+join {us_mp:.0} us, bare fork+_exit+waitpid {us_raw:.0} us \
         (ratio {:.2}, target <= 1.3)",
        us_mp / us_raw
    );
}

/// A bare stream socketpair, the raw baseline of the pipe workloads.
fn bare_socketpair() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .unwrap()
}

/// `pipe_rtt`: a 64-byte message goes back and forth R times between two
/// processes over a duplex Pipe. Baseline: the same over a bare blocking
/// socketpair with read/write.
fn pipe_rtt(r: usize, reps: usize) {
    let params = format!("\"R\": {r}, \"bytes\": 64");
    let (mut best_mp, mut best_raw) = (Duration::MAX, Duration::MAX);
    let mut ok = String::from("ok");
    for _ in 0..=reps {
        let (a, b) = multiproc::pipe(true).unwrap();
        let msg = [7u8; 64];
        let child_b = &b;
        // SAFETY: the child only echoes on its connection.
        let mut p = unsafe {
            multiproc::Process::new(move || {
                for _ in 0..r {
                    let m = child_b.recv_bytes().unwrap();
                    child_b.send_bytes(&m).unwrap();
                }
            })
            .allow_threads()
        };
        p.start().unwrap();
        let t = Instant::now();
        for _ in 0..r {
            a.send_bytes(&msg).unwrap();
            if a.recv_bytes().unwrap().len() != 64 {
                ok = "a reply of the wrong size".into();
            }
        }
        best_mp = best_mp.min(t.elapsed());
        p.join().unwrap();
        let (x, y) = bare_socketpair();
        let y_ref = &y;
        // SAFETY: the child only reads and writes its socket.
        let mut q = unsafe {
            multiproc::Process::new(move || {
                let mut buf = [0u8; 64];
                for _ in 0..r {
                    let mut got = 0;
                    while got < 64 {
                        got += nix::unistd::read(y_ref, &mut buf[got..]).unwrap();
                    }
                    nix::unistd::write(y_ref, &buf).unwrap();
                }
            })
            .allow_threads()
        };
        q.start().unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 64];
        for _ in 0..r {
            nix::unistd::write(&x, &msg).unwrap();
            let mut got = 0;
            while got < 64 {
                got += nix::unistd::read(&x, &mut buf[got..]).unwrap();
            }
        }
        best_raw = best_raw.min(t.elapsed());
        q.join().unwrap();
    }
    let ns_mp = best_mp.as_nanos() as f64 / r as f64;
    let ns_raw = best_raw.as_nanos() as f64 / r as f64;
    line(
        "multiproc",
        "pipe_rtt",
        "Pipe_duplex",
        &params,
        "ns_per_round_trip",
        ns_mp,
        &ok,
    );
    line(
        "raw",
        "pipe_rtt",
        "blocking_socketpair",
        &params,
        "ns_per_round_trip",
        ns_raw,
        "ok",
    );
    eprintln!(
        "pipe_rtt: Pipe {:.1} us, bare blocking socketpair {:.1} us (ratio {:.3}, target <= 0.1)",
        ns_mp / 1e3,
        ns_raw / 1e3,
        ns_mp / ns_raw
    );
}

/// `pipe_bw`: one process sends 1 MiB messages to another, `total` bytes
/// in all, over a duplex Pipe. Baseline: the same bytes over a bare
/// socketpair with write/read.
fn pipe_bw(total: usize, reps: usize) {
    const MSG: usize = 1 << 20;
    let n = total / MSG;
    let params = format!("\"total_bytes\": {total}, \"message_bytes\": {MSG}");
    let (mut best_mp, mut best_raw) = (Duration::MAX, Duration::MAX);
    let mut ok = String::from("ok");
    for _ in 0..=reps {
        let (a, b) = multiproc::pipe(true).unwrap();
        let b_ref = &b;
        // SAFETY: the child only sends on its connection.
        let mut p = unsafe {
            multiproc::Process::new(move || {
                let msg = vec![5u8; MSG];
                for _ in 0..n {
                    b_ref.send_bytes(&msg).unwrap();
                }
            })
            .allow_threads()
        };
        let t = Instant::now();
        p.start().unwrap();
        let mut bytes = 0;
        for _ in 0..n {
            bytes += a.recv_bytes().unwrap().len();
        }
        best_mp = best_mp.min(t.elapsed());
        p.join().unwrap();
        if bytes != n * MSG {
            ok = format!("received {bytes} bytes");
        }
        let (x, y) = bare_socketpair();
        let y_ref = &y;
        // SAFETY: the child only writes its socket.
        let mut q = unsafe {
            multiproc::Process::new(move || {
                let msg = vec![5u8; MSG];
                for _ in 0..n {
                    let mut sent = 0;
                    while sent < MSG {
                        sent += nix::unistd::write(y_ref, &msg[sent..]).unwrap();
                    }
                }
            })
            .allow_threads()
        };
        let t = Instant::now();
        q.start().unwrap();
        let mut buf = vec![0u8; MSG];
        for _ in 0..n {
            let mut got = 0;
            while got < MSG {
                got += nix::unistd::read(&x, &mut buf[got..]).unwrap();
            }
        }
        best_raw = best_raw.min(t.elapsed());
        q.join().unwrap();
    }
    let gbs_mp = total as f64 / 1e9 / best_mp.as_secs_f64();
    let gbs_raw = total as f64 / 1e9 / best_raw.as_secs_f64();
    line(
        "multiproc",
        "pipe_bw",
        "Pipe_duplex",
        &params,
        "GB_per_s",
        gbs_mp,
        &ok,
    );
    line(
        "raw",
        "pipe_bw",
        "socketpair_read_write",
        &params,
        "GB_per_s",
        gbs_raw,
        "ok",
    );
    eprintln!(
        "pipe_bw: Pipe {gbs_mp:.2} GB/s, bare socketpair {gbs_raw:.2} GB/s (ratio {:.2}, target >= 2)",
        gbs_mp / gbs_raw
    );
}

/// `joinable`: the parent puts M tasks in a JoinableQueue, P = 2 worker
/// processes get them and call task_done, the parent join()s; the workers
/// check every task arrived once. (Python's JoinableQueue: about 230
/// thousand tasks/s on this machine class.)
#[cfg(feature = "serde")]
fn joinable(m: u64, reps: usize) {
    use multiproc::{JoinableQueue, Process, RawValue};
    let params = format!("\"M\": {m}, \"P\": {P}");
    let mut best = Duration::MAX;
    let mut ok = String::from("ok");
    for _ in 0..=reps {
        let q = JoinableQueue::<u64>::new().unwrap();
        let sum = RawValue::new(0u64).unwrap();
        let count = RawValue::new(0u64).unwrap();
        let (q_ref, sum_ref, count_ref) = (&q, &sum, &count);
        let mut workers: Vec<Process> = (0..P)
            .map(|_| {
                // SAFETY: the workers only use the shared queue and counters.
                let mut w = unsafe {
                    Process::new(move || {
                        while let Ok(t) = q_ref.get() {
                            if t == u64::MAX {
                                q_ref.task_done().unwrap();
                                break;
                            }
                            sum_ref.fetch_add(t);
                            count_ref.fetch_add(1);
                            q_ref.task_done().unwrap();
                        }
                    })
                    .allow_threads()
                };
                w.start().unwrap();
                w
            })
            .collect();
        let t = Instant::now();
        for i in 0..m {
            q.put(i).unwrap();
        }
        q.join();
        let elapsed = t.elapsed();
        for _ in 0..P {
            q.put(u64::MAX).unwrap();
        }
        for w in &mut workers {
            w.join().unwrap();
        }
        best = best.min(elapsed);
        if count.load() != m || sum.load() != m * (m - 1) / 2 {
            ok = format!("{} tasks done, sum {}", count.load(), sum.load());
        }
    }
    let rate = m as f64 / best.as_secs_f64();
    line(
        "multiproc",
        "joinable",
        "JoinableQueue",
        &params,
        "tasks_per_s",
        rate,
        &ok,
    );
    eprintln!(
        "joinable: {:.0} thousand tasks/s (Python's JoinableQueue: about 230 thousand; target >= 20x)",
        rate / 1e3
    );
}

/// The entry point of the spawned children of the `spawn` workload.
#[cfg(feature = "serde")]
fn nothing(_: ()) {}

/// `spawn` with the spawn start method: a fresh run of this binary that
/// returns at once. Baseline: `posix_spawn` of the same binary, which exits
/// at once (`BENCH_EXIT_AT_ONCE`), and `waitpid`.
#[cfg(feature = "serde")]
fn spawn_start_method(n: usize, reps: usize) {
    use multiproc::Process;
    let params = format!("\"children\": {n}, \"start_method\": \"spawn\"");
    let mut ok = String::from("ok");
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    let exe = std::ffi::CString::new("/proc/self/exe").unwrap();
    let argv = [exe.clone()];
    let mut envp: Vec<std::ffi::CString> = std::env::vars()
        .map(|(k, v)| std::ffi::CString::new(format!("{k}={v}")).unwrap())
        .collect();
    envp.push(std::ffi::CString::new("BENCH_EXIT_AT_ONCE=1").unwrap());
    for _ in 0..=reps {
        let t = Instant::now();
        for _ in 0..n {
            let mut p = Process::spawn(nothing, ()).unwrap();
            p.start().unwrap();
            if p.result().is_err() {
                ok = "a child failed".into();
            }
        }
        t_mp = t_mp.min(t.elapsed());
        let t = Instant::now();
        for _ in 0..n {
            let pid = nix::spawn::posix_spawn(
                exe.as_c_str(),
                &nix::spawn::PosixSpawnFileActions::init().unwrap(),
                &nix::spawn::PosixSpawnAttr::init().unwrap(),
                &argv,
                &envp,
            )
            .unwrap();
            nix::sys::wait::waitpid(pid, None).unwrap();
        }
        t_raw = t_raw.min(t.elapsed());
    }
    let us_mp = t_mp.as_secs_f64() * 1e6 / n as f64;
    let us_raw = t_raw.as_secs_f64() * 1e6 / n as f64;
    line(
        "multiproc",
        "spawn",
        "Process_spawn",
        &params,
        "us_per_child",
        us_mp,
        &ok,
    );
    line(
        "raw",
        "spawn",
        "posix_spawn_same_binary",
        &params,
        "us_per_child",
        us_raw,
        "ok",
    );
    eprintln!(
        "spawn (start method): Process::spawn start+join {us_mp:.0} us, bare posix_spawn of the \
         same binary {us_raw:.0} us (ratio {:.2}, target <= 1.3)",
        us_mp / us_raw
    );
}

fn main() {
    if std::env::var_os("BENCH_EXIT_AT_ONCE").is_some() {
        return;
    }
    multiproc::init();
    // `cargo bench` passes `--bench`; `-- --quick` picks small sizes.
    let quick = std::env::args().any(|a| a == "--quick");
    let (k, n, reps) = if quick {
        (100_000, 10_000_000, 2)
    } else {
        (1_000_000, 100_000_000, 3)
    };
    counter(k, reps);
    array_fill(n, reps);
    spawn_workload(if quick { 200 } else { 1000 }, reps);
    pipe_rtt(if quick { 5_000 } else { 100_000 }, reps.min(2));
    pipe_bw(if quick { 64 << 20 } else { 1 << 30 }, reps.min(2));
    #[cfg(feature = "serde")]
    joinable(if quick { 20_000 } else { 100_000 }, reps.min(2));
    #[cfg(feature = "serde")]
    spawn_start_method(if quick { 50 } else { 300 }, reps);
}
