//! `counter`: a shared `Value` incremented under its lock by P processes,
//! beside a bare futex mutex in the same kind of memory.
//!
//! The three variants run in interleaved rounds (each round runs each
//! once, in a rotating order), and each reports the *median* of its rounds.
//! A contended lock with a few-nanosecond critical section is very
//! sensitive to where the scheduler puts its workers: two workers on two
//! CPUs bounce the lock's cache line on every increment (about 50 ns each),
//! while two workers time-sharing one CPU (beside busy processes, say)
//! each run a whole time slice uncontended (a few ns each). One run can
//! thus be 5x faster than the next with the same code, and measuring one
//! variant's repetitions before the other's compared the luck of two
//! stretches of time. Interleaving gives both the same stretches; the
//! median keeps one lucky round from deciding.
//!
//! Each locked variant also reports the CPU time its workers used per
//! increment (`ns_cpu_per_inc`, from the kernel's account of the
//! reaped workers). Beside busy processes the wall time mostly says how
//! much of the CPUs the scheduler gave the two workers in that round; the
//! CPU time says what the lock itself cost, whatever the share. (Measured
//! beside 2 hogs, 2026-12-06: about 12.5 ns for either lock, the same as
//! one worker alone, so the two workers seldom ran at the same time there.)

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use multiproc::{RawValue, Value};

use super::{P, Size, check_eq, keep, run_forked, workers};
use crate::pi::Outcome;
use crate::report::{Line, params};
use crate::support::{BareFutexLock, shared_mapping};

/// Rounds of the full size (each runs every variant once).
const ROUNDS: usize = 9;

/// The median of `times` (sorted in place).
fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

pub(super) fn counter(size: Size) -> Outcome<Vec<Line>> {
    let p = workers();
    // The same increments in all whatever the workers (P = 2: K each).
    let k: u64 = size.pick(1_000_000, 100_000) * P as u64 / p as u64;
    let want = k * p as u64;
    let rounds = size.pick(ROUNDS, 3);
    let params = params!["P" => p, "K" => k, "rounds" => rounds];

    let v = Value::new(0u64)?;
    let map = shared_mapping(4096, true);
    // SAFETY: a page-aligned, zeroed 4096-byte shared mapping that outlives
    // its users: the lock word at 0, aligned.
    let word = unsafe { AtomicU32::from_ptr(map.as_mut_ptr().cast()) };
    // SAFETY: as above: the counter at 8, aligned.
    let count = unsafe { AtomicU64::from_ptr(map.as_mut_ptr().wrapping_add(8).cast()) };
    let lock = BareFutexLock(word);
    let raw = RawValue::new(0u64)?;

    // One run of variant `i`: its wall time, its workers' CPU time and its
    // check.
    let run = |i: usize| -> Outcome<(Duration, Duration, String)> {
        let cpu = children_cpu();
        let (t, ok) = match i {
            0 => {
                v.set(0);
                let t = run_forked(p, |_| {
                    for _ in 0..k {
                        v.update(|c| *c += 1);
                    }
                })?;
                (t, check_eq(v.get(), want))
            }
            1 => {
                count.store(0, Ordering::Relaxed);
                let t = run_forked(p, |_| {
                    for _ in 0..k {
                        lock.lock();
                        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                        lock.unlock();
                    }
                })?;
                (t, check_eq(count.load(Ordering::Relaxed), want))
            }
            _ => {
                raw.store(0);
                let t = run_forked(p, |_| {
                    for _ in 0..k {
                        raw.fetch_add(1);
                    }
                })?;
                (t, check_eq(raw.load(), want))
            }
        };
        Ok((t, children_cpu().saturating_sub(cpu), ok))
    };
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut cpus: [Vec<Duration>; 3] = Default::default();
    let mut oks: [String; 3] = std::array::from_fn(|_| String::from("ok"));
    for r in 0..rounds {
        for j in 0..3 {
            let i = (r + j) % 3;
            let (t, cpu, ok) = run(i)?;
            times[i].push(t);
            cpus[i].push(cpu);
            keep(&mut oks[i], ok);
        }
    }
    let ns = |i: usize, times: &mut [Vec<Duration>; 3]| {
        median(&mut times[i]).as_nanos() as f64 / want as f64
    };
    // Wall time per increment for the three, CPU time for the two locks.
    let variants = [
        ("multiproc", "Value_lock"),
        ("raw", "bare_futex_lock"),
        ("multiproc", "RawValue_fetch_add"),
    ];
    let mut lines = Vec::with_capacity(5);
    for (metric, samples, n) in [
        ("ns_per_increment", &mut times, 3),
        ("ns_cpu_per_inc", &mut cpus, 2),
    ] {
        for (i, (who, variant)) in variants.iter().enumerate().take(n) {
            lines.push(Line::new(
                who,
                "counter",
                variant,
                &params,
                metric,
                ns(i, samples),
                &oks[i],
            ));
        }
    }
    Ok(lines)
}

/// The CPU time (user and system) of this process's reaped children so
/// far (zero if the kernel will not say).
fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(Duration::ZERO, |u| {
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::new(t.tv_sec().max(0) as u64, t.tv_usec().max(0) as u32 * 1000)
        };
        tv(u.user_time()) + tv(u.system_time())
    })
}
