//! `queue_1p1c`, `queue_2p2c` and `joinable`: the queues between producer
//! and consumer processes, beside bare shared-memory rings.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::{JoinableQueue, Queue, RawValue};

use super::{P, Size, check_eq, keep, run_forked_on};
use crate::pi::Outcome;
use crate::report::{Line, params};
use crate::support::{BareFutexLock, BareRing, SLOTS, SharedRing};

/// `queue_1p1c` (`p` = 1) and `queue_2p2c` (`p` = 2): `p` producers put M
/// u64s in all, `p` consumers get them, each process pinned to a CPU
/// (producer `i` and consumer `i` on different ones). One consumer checks the order; two
/// check the multiset through its sum and count. Baseline: a bare ring of
/// u64 slots with spinning waiters, lock-free for one producer and one
/// consumer, under one bare futex lock for two and two.
pub(super) fn queue(size: Size, p: usize) -> Outcome<Vec<Line>> {
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
pub(super) fn joinable(size: Size) -> Outcome<Vec<Line>> {
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
