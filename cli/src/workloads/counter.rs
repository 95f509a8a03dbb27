//! `counter`: a shared `Value` incremented under its lock by P processes,
//! beside a bare futex mutex in the same kind of memory.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use multiproc::{RawValue, Value};

use super::{P, Size, check_eq, keep, run_forked, workers};
use crate::pi::Outcome;
use crate::report::{Line, params};
use crate::support::{BareFutexLock, shared_mapping};

pub(super) fn counter(size: Size) -> Outcome<Vec<Line>> {
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
