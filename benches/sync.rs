#![allow(missing_docs)] // a bench binary, not API
//! Criterion benches of the shared-state primitives, each beside its raw
//! baseline in the same kind of memory:
//! - `lock_unlock`: one uncontended lock + unlock (multiproc Lock, a bare
//!   futex mutex, std's Mutex for scale);
//! - `counter`: two processes add 1 under a lock (Value<u64>, the bare futex
//!   mutex over a u64, an atomic fetch_add);
//! - `array_fill`: two processes fill disjoint halves of an f64 array
//!   (RawArray, a plain populated memfd mapping).

use multiproc_bench_support as support;

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use multiproc::{Lock, RawArray, RawValue, Value};
use support::{BareFutexLock, run_forked, shared_mapping};

fn lock_unlock(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock_unlock");
    let lock = Lock::new().unwrap();
    g.bench_function("multiproc_Lock", |b| {
        b.iter(|| drop(black_box(&lock).lock()))
    });
    let v = Value::new(0u64).unwrap();
    g.bench_function("multiproc_Value_add", |b| {
        b.iter(|| *black_box(&v).lock().unwrap() += 1)
    });
    let map = shared_mapping(4096, true);
    // SAFETY: the mapping is 4096 bytes, page aligned, and outlives `word`.
    let word = unsafe { AtomicU32::from_ptr(map.as_mut_ptr().cast()) };
    let bare = BareFutexLock(word);
    g.bench_function("bare_futex", |b| {
        b.iter(|| {
            black_box(&bare).lock();
            bare.unlock();
        })
    });
    let m = std::sync::Mutex::new(0u64);
    g.bench_function("std_Mutex_private", |b| {
        b.iter(|| drop(black_box(&m).lock()))
    });
    g.finish();
}

const P: usize = 2;

/// Times `iters` increments in all, made by `P` forked workers calling
/// `bump` their share of times; `total()` must then be the count made (the
/// time is scaled to exactly `iters`).
fn count_forked(iters: u64, bump: impl Fn() + Sync, total: impl Fn() -> u64) -> Duration {
    let per = iters.div_ceil(P as u64);
    let t = run_forked(P, |_| {
        for _ in 0..per {
            bump();
        }
    });
    assert_eq!(total(), per * P as u64);
    t.mul_f64(iters as f64 / (per * P as u64) as f64)
}

fn counter(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter");
    g.measurement_time(Duration::from_secs(4)).sample_size(10);
    g.throughput(Throughput::Elements(1));
    let v = Value::new(0u64).unwrap();
    g.bench_function("multiproc_Value", |b| {
        b.iter_custom(|iters| {
            v.set(0);
            count_forked(iters, || *v.lock().unwrap() += 1, || v.get())
        })
    });
    let map = shared_mapping(4096, true);
    // SAFETY: 4096 bytes, page aligned: a u32 lock word at 0, outlived by
    // the mapping.
    let word = unsafe { AtomicU32::from_ptr(map.as_mut_ptr().cast()) };
    // SAFETY: a u64 counter at 8, aligned, outlived by the mapping.
    let count = unsafe { AtomicU64::from_ptr(map.as_mut_ptr().wrapping_add(8).cast()) };
    g.bench_function("bare_futex", |b| {
        b.iter_custom(|iters| {
            count.store(0, Ordering::Relaxed);
            let lock = BareFutexLock(word);
            count_forked(
                iters,
                || {
                    lock.lock();
                    // A plain read-modify-write under the lock, as the Value
                    // does (relaxed atomics compile to plain moves).
                    count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    lock.unlock();
                },
                || count.load(Ordering::Relaxed),
            )
        })
    });
    let raw = RawValue::new(0u64).unwrap();
    g.bench_function("atomic_fetch_add", |b| {
        b.iter_custom(|iters| {
            raw.store(0);
            count_forked(
                iters,
                || {
                    raw.fetch_add(1);
                },
                || raw.load(),
            )
        })
    });
    g.finish();
}

/// The sum of `run`'s times over `iters` targets: each made afresh by
/// `make` (and dropped after its run), or `kept` each time.
fn over_targets<T>(
    iters: u64,
    fresh: bool,
    kept: &T,
    make: impl Fn() -> T,
    run: impl Fn(&T) -> Duration,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let made;
        let target = if fresh {
            made = make();
            &made
        } else {
            kept
        };
        total += run(target);
    }
    total
}

fn array_fill(c: &mut Criterion) {
    const N: usize = 1 << 24; // 128 MiB of f64
    let mut g = c.benchmark_group("array_fill");
    g.measurement_time(Duration::from_secs(6)).sample_size(10);
    g.throughput(Throughput::Bytes((N * 8) as u64));
    for fresh in [true, false] {
        let label = if fresh { "fresh" } else { "reused" };
        let kept = RawArray::<f64>::zeroed(N).unwrap();
        g.bench_with_input(
            BenchmarkId::new("multiproc_RawArray", label),
            &fresh,
            |b, &fresh| {
                b.iter_custom(|iters| {
                    over_targets(
                        iters,
                        fresh,
                        &kept,
                        || RawArray::<f64>::zeroed(N).unwrap(),
                        |a| {
                            let t = run_forked(P, |i| {
                                // SAFETY: each child fills its own half only.
                                let s = unsafe { a.slice_mut(i * N / P..(i + 1) * N / P) }.unwrap();
                                s.fill(1.5);
                            });
                            assert_eq!(a.get(N - 1).unwrap(), 1.5);
                            t
                        },
                    )
                })
            },
        );
        let kept_map = shared_mapping(N * 8, true);
        g.bench_with_input(
            BenchmarkId::new("plain_memfd_fill", label),
            &fresh,
            |b, &fresh| {
                b.iter_custom(|iters| {
                    over_targets(
                        iters,
                        fresh,
                        &kept_map,
                        || shared_mapping(N * 8, true),
                        |m| {
                            let base = m.as_mut_ptr() as usize;
                            run_forked(P, |i| {
                                // SAFETY: each child fills its own half of
                                // the mapping, which outlives the children.
                                let s = unsafe {
                                    std::slice::from_raw_parts_mut(
                                        (base as *mut f64).wrapping_add(i * N / P),
                                        N / P,
                                    )
                                };
                                s.fill(1.5);
                            })
                        },
                    )
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, lock_unlock, counter, array_fill);
criterion_main!(benches);
