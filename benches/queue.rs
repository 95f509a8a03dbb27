#![allow(missing_docs)] // a bench binary, not API
//! Queue throughput: u64 items per second between processes, 1 producer /
//! 1 consumer and 2 / 2, against bare shared-memory rings of u64 slots in
//! a memfd mapping (no encoding, no robustness, spinning waiters):
//! lock-free single-producer/single-consumer for 1/1, and one bare futex
//! mutex around the ring for 2/2.
//!
//! Run with `cargo bench --all-features --bench queue`; `-- --quick` for
//! fewer items.

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use multiproc::queue::Queue;
use support::{BareFutexLock, run_forked, shared_mapping};

const SLOTS: u64 = 1 << 16;

/// The shared part of a bare ring: counters, then `SLOTS` u64 slots.
#[repr(C)]
struct Bare {
    lock: AtomicU32,
    _pad: [u8; 60],
    head: AtomicU64,
    _pad2: [u8; 56],
    tail: AtomicU64,
    _pad3: [u8; 56],
    slots: [AtomicU64; SLOTS as usize],
}

fn rate(n: u64, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

fn queue_run(p: usize, n: u64) -> f64 {
    let q = Queue::<u64>::new().unwrap();
    let per = n / p as u64;
    let sum = multiproc::RawValue::new(0u64).unwrap();
    let t = run_forked(2 * p, |i| {
        if i < p {
            for k in 0..per {
                q.put(k).unwrap();
            }
        } else {
            let mut s = 0;
            for _ in 0..per {
                s += q.get().unwrap();
            }
            sum.fetch_add(s);
        }
    });
    assert_eq!(sum.load(), p as u64 * per * (per - 1) / 2);
    rate(per * p as u64, t)
}

fn bare_spsc(n: u64) -> f64 {
    let map = shared_mapping(std::mem::size_of::<Bare>(), true);
    // SAFETY: the mapping is zeroed, large enough, page-aligned, and Bare
    // is atomics only (all-zero valid).
    let r = unsafe { &*(map.as_ptr() as *const Bare) };
    let t = run_forked(2, |i| {
        if i == 0 {
            for k in 0..n {
                let tail = r.tail.load(Ordering::Relaxed);
                while tail - r.head.load(Ordering::Acquire) == SLOTS {
                    std::hint::spin_loop();
                }
                r.slots[(tail % SLOTS) as usize].store(k, Ordering::Relaxed);
                r.tail.store(tail + 1, Ordering::Release);
            }
        } else {
            for k in 0..n {
                let head = r.head.load(Ordering::Relaxed);
                while r.tail.load(Ordering::Acquire) == head {
                    std::hint::spin_loop();
                }
                assert_eq!(r.slots[(head % SLOTS) as usize].load(Ordering::Relaxed), k);
                r.head.store(head + 1, Ordering::Release);
            }
        }
    });
    rate(n, t)
}

fn bare_locked(p: usize, n: u64) -> f64 {
    let map = shared_mapping(std::mem::size_of::<Bare>(), true);
    // SAFETY: as in `bare_spsc`.
    let r = unsafe { &*(map.as_ptr() as *const Bare) };
    let per = n / p as u64;
    let t = run_forked(2 * p, |i| {
        let lock = BareFutexLock(&r.lock);
        let mut done = 0;
        while done < per {
            lock.lock();
            let (head, tail) = (
                r.head.load(Ordering::Relaxed),
                r.tail.load(Ordering::Relaxed),
            );
            if i < p && tail - head < SLOTS {
                r.slots[(tail % SLOTS) as usize].store(done, Ordering::Relaxed);
                r.tail.store(tail + 1, Ordering::Relaxed);
                done += 1;
            } else if i >= p && tail != head {
                r.slots[(head % SLOTS) as usize].load(Ordering::Relaxed);
                r.head.store(head + 1, Ordering::Relaxed);
                done += 1;
            }
            lock.unlock();
        }
    });
    rate(per * p as u64, t)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 200_000 } else { 4_000_000 };
    for (name, p) in [("1p1c", 1), ("2p2c", 2)] {
        let q = queue_run(p, n);
        let bare = if p == 1 {
            bare_spsc(n)
        } else {
            bare_locked(p, n)
        };
        println!(
            "queue {name}: {:.2} M items/s; bare ring: {:.2} M items/s ({:.0}%)",
            q / 1e6,
            bare / 1e6,
            100.0 * q / bare
        );
    }
}
