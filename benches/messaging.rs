#![allow(missing_docs)] // a bench binary, not API
//! Criterion benches of the messaging workloads of `shared/WORKLOADS.md`,
//! each beside its raw baseline measured in the same run (compare the
//! ratios, never absolute figures across runs: the machine is noisy):
//! - `pipe_rtt`: a 64-byte message back and forth between two processes
//!   over `pipe(true)`; baseline: a bare blocking socketpair ping-pong with
//!   read/write. Also the OS-only pipe (`pipe_os`), for scale.
//! - `pipe_bw`: 1 MiB messages from one process to another; baseline: bare
//!   write/read of 1 MiB over a socketpair.
//! - `queue_1p1c`, `queue_2p2c`: u64 items through a `Queue` between one
//!   producer and one consumer process, and two and two; baselines: a bare
//!   shared-memory single-producer/single-consumer ring of u64 slots, and a
//!   bare futex-locked ring for 2/2 (no encoding, no robustness).
//! - `joinable`: the parent puts tasks in a `JoinableQueue`, two worker
//!   processes get them and call `task_done`, the parent joins (Python's
//!   JoinableQueue does about 230 thousand tasks/s on this machine class).
//!
//! Run with `cargo bench --all-features --bench messaging`; a full run
//! takes a few minutes.

use multiproc_bench_support as support;

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use multiproc::connection::Connection;
use multiproc::process::Scope;
use multiproc::queue::Queue;
use multiproc::{JoinableQueue, Process, RawValue};
use support::{BareFutexLock, BareRing as Bare, SLOTS, SharedRing, run_forked};

fn bare_socketpair() -> (OwnedFd, OwnedFd) {
    support::socketpair().expect("socketpair")
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) {
    support::read_full(fd, buf).expect("read (the bench peer closed early?)");
}

fn write_full(fd: &OwnedFd, buf: &[u8]) {
    support::write_full(fd, buf).expect("write");
}

/// Starts `body` in a forked child.
fn fork<'s>(ps: &'s Scope<'s, '_>, body: impl FnOnce() + 's) -> Process<'s> {
    // SAFETY: the benches' children only use objects made before the fork
    // and never print; the harness's threads hold none of their locks.
    let mut p = unsafe { ps.process(body).allow_threads() };
    p.start().expect("fork");
    p
}

/// Times `parent` while a forked child runs `child`, then checks that the
/// child succeeded.
fn timed_beside(child: impl FnOnce(), parent: impl FnOnce()) -> Duration {
    multiproc::process::scope(|ps| {
        let mut child = fork(ps, child);
        let t = Instant::now();
        parent();
        let t = t.elapsed();
        assert!(child.join().unwrap().success());
        t
    })
}

/// Benches `run` (timing `iters` messages over a pair of connections) in
/// `g` over `pipe(true)`, then over the OS-only `pipe_os(true)`.
fn both_pipes(
    g: &mut BenchmarkGroup<'_, WallTime>,
    run: fn(&Connection, &Connection, u64) -> Duration,
) {
    let (a, b) = multiproc::pipe(true).unwrap();
    g.bench_function("multiproc_pipe", |bch| {
        bch.iter_custom(|iters| run(&a, &b, iters))
    });
    drop((a, b));
    let (a, b) = multiproc::connection::pipe_os(true).unwrap();
    g.bench_function("multiproc_pipe_os", |bch| {
        bch.iter_custom(|iters| run(&a, &b, iters))
    });
}

/// Times `iters` round trips of 64 bytes over a pair of connections.
fn rtt_connections(a: &Connection, b: &Connection, iters: u64) -> Duration {
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    let t = timed_beside(
        move || {
            let mut buf = [0u8; 64];
            for _ in 0..iters {
                let n = b.recv_bytes_into(&mut buf).unwrap();
                b.send_bytes(&buf[..n]).unwrap();
            }
        },
        || {
            for _ in 0..iters {
                a.send_bytes(&msg).unwrap();
                assert_eq!(a.recv_bytes_into(&mut buf).unwrap(), 64);
            }
        },
    );
    assert_eq!(buf, msg);
    t
}

fn pipe_rtt(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe_rtt");
    g.measurement_time(Duration::from_secs(4)).sample_size(10);
    both_pipes(&mut g, rtt_connections);
    let (x, y) = bare_socketpair();
    g.bench_function("bare_socketpair", |bch| {
        bch.iter_custom(|iters| {
            let y = &y;
            timed_beside(
                move || {
                    let mut buf = [0u8; 64];
                    for _ in 0..iters {
                        read_full(y, &mut buf);
                        write_full(y, &buf);
                    }
                },
                || {
                    let msg = [7u8; 64];
                    let mut buf = [0u8; 64];
                    for _ in 0..iters {
                        write_full(&x, &msg);
                        read_full(&x, &mut buf);
                    }
                },
            )
        })
    });
    g.finish();
}

const MSG: usize = 1 << 20;

fn bw_connections(a: &Connection, b: &Connection, iters: u64) -> Duration {
    let mut bytes = 0;
    let t = timed_beside(
        move || marked_messages(iters, |msg| b.send_bytes(msg).unwrap()),
        || {
            for i in 0..iters {
                let m = a.recv_bytes().unwrap();
                bytes += m.len();
                check_marks(&m, i);
            }
        },
    );
    assert_eq!(bytes as u64, iters * MSG as u64);
    t
}

/// Sends `iters` messages of `MSG` bytes of 5 through `send`, each marked
/// with its number at both ends, so that stale bytes would show.
fn marked_messages(iters: u64, mut send: impl FnMut(&[u8])) {
    let mut msg = vec![5u8; MSG];
    for i in 0..iters {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        msg[MSG - 1] = i as u8;
        send(&msg);
    }
}

/// Checks that `m` is message `i` of [`marked_messages`].
fn check_marks(m: &[u8], i: u64) {
    assert_eq!(
        (&m[..8], m[MSG / 2], m[MSG - 1]),
        (&i.to_le_bytes()[..], 5, i as u8)
    );
}

fn pipe_bw(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe_bw");
    g.measurement_time(Duration::from_secs(5)).sample_size(10);
    g.throughput(Throughput::Bytes(MSG as u64));
    both_pipes(&mut g, bw_connections);
    let (x, y) = bare_socketpair();
    g.bench_function("bare_socketpair", |bch| {
        bch.iter_custom(|iters| {
            let y = &y;
            let mut buf = vec![0u8; MSG];
            timed_beside(
                move || marked_messages(iters, |msg| write_full(y, msg)),
                || {
                    for i in 0..iters {
                        read_full(&x, &mut buf);
                        check_marks(&buf, i);
                    }
                },
            )
        })
    });
    g.finish();
}

/// Items per producer for `iters` items in all over `p` producers.
fn share(iters: u64, p: usize) -> u64 {
    iters.div_ceil(p as u64).max(1)
}

fn queue_run(q: &Queue<u64>, p: usize, iters: u64) -> Duration {
    let per = share(iters, p);
    let sum = RawValue::new(0u64).unwrap();
    let t = run_forked(2 * p, |i| {
        if i < p {
            for k in 0..per {
                q.put(k).unwrap();
            }
        } else if p == 1 {
            // One producer: the consumer checks the order.
            for k in 0..per {
                assert_eq!(q.get().unwrap(), k);
            }
            sum.fetch_add(per * (per - 1) / 2);
        } else {
            let mut s = 0;
            for _ in 0..per {
                s += q.get().unwrap();
            }
            sum.fetch_add(s);
        }
    });
    assert_eq!(sum.load(), p as u64 * per * (per - 1) / 2);
    assert!(q.empty());
    t.mul_f64(iters as f64 / (per * p as u64) as f64)
}

fn bare_spsc(r: &Bare, iters: u64) -> Duration {
    r.head.store(0, Ordering::Relaxed);
    r.tail.store(0, Ordering::Relaxed);
    run_forked(2, |i| {
        if i == 0 {
            for k in 0..iters {
                let tail = r.tail.load(Ordering::Relaxed);
                while tail - r.head.load(Ordering::Acquire) == SLOTS {
                    std::hint::spin_loop();
                }
                r.slots[(tail % SLOTS) as usize].store(k, Ordering::Relaxed);
                r.tail.store(tail + 1, Ordering::Release);
            }
        } else {
            for k in 0..iters {
                let head = r.head.load(Ordering::Relaxed);
                while r.tail.load(Ordering::Acquire) == head {
                    std::hint::spin_loop();
                }
                assert_eq!(r.slots[(head % SLOTS) as usize].load(Ordering::Relaxed), k);
                r.head.store(head + 1, Ordering::Release);
            }
        }
    })
}

fn bare_locked(r: &Bare, p: usize, iters: u64) -> Duration {
    r.head.store(0, Ordering::Relaxed);
    r.tail.store(0, Ordering::Relaxed);
    let per = share(iters, p);
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
    t.mul_f64(iters as f64 / (per * p as u64) as f64)
}

fn queues(c: &mut Criterion) {
    let shared = SharedRing::new();
    let bare = shared.ring();
    for (name, p) in [("queue_1p1c", 1), ("queue_2p2c", 2)] {
        let mut g = c.benchmark_group(name);
        g.measurement_time(Duration::from_secs(4)).sample_size(10);
        g.throughput(Throughput::Elements(1));
        let q = Queue::<u64>::new().unwrap();
        g.bench_function("multiproc_Queue", |b| {
            b.iter_custom(|iters| queue_run(&q, p, iters))
        });
        let label = if p == 1 {
            "bare_spsc_ring"
        } else {
            "bare_locked_ring"
        };
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                if p == 1 {
                    bare_spsc(bare, iters)
                } else {
                    bare_locked(bare, p, iters)
                }
            })
        });
        g.finish();
    }
}

fn joinable(c: &mut Criterion) {
    const P: usize = 2;
    let mut g = c.benchmark_group("joinable");
    g.measurement_time(Duration::from_secs(4)).sample_size(10);
    g.throughput(Throughput::Elements(1));
    g.bench_function("multiproc_JoinableQueue", |b| {
        b.iter_custom(|iters| {
            let q = JoinableQueue::<u64>::new().unwrap();
            let (sum, count) = (RawValue::new(0u64).unwrap(), RawValue::new(0u64).unwrap());
            let (q, sum_ref, count_ref) = (&q, &sum, &count);
            multiproc::process::scope(|ps| {
                let mut workers: Vec<Process> = (0..P)
                    .map(|_| {
                        fork(ps, move || {
                            while let Ok(t) = q.get() {
                                if t == u64::MAX {
                                    q.task_done().unwrap();
                                    break;
                                }
                                sum_ref.fetch_add(t);
                                count_ref.fetch_add(1);
                                q.task_done().unwrap();
                            }
                        })
                    })
                    .collect();
                let t = Instant::now();
                for i in 0..iters {
                    q.put(i).unwrap();
                }
                q.join();
                let t = t.elapsed();
                for _ in 0..P {
                    q.put(u64::MAX).unwrap();
                }
                for w in &mut workers {
                    assert!(w.join().unwrap().success());
                }
                assert_eq!(count.load(), iters);
                assert_eq!(sum.load(), iters * (iters - 1) / 2);
                t
            })
        })
    });
    g.finish();
}

criterion_group!(benches, pipe_rtt, pipe_bw, queues, joinable);
criterion_main!(benches);
