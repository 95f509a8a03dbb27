//! Queues between real processes: order, many producers and consumers,
//! item sizes, timeouts, `maxsize`, `close`, joinable queues, killed
//! producers and consumers, and idle waiters that sleep.
//!
//! The tests marked "CPython" port the behaviours of `_TestQueue`,
//! `_TestSimpleQueue` and `_TestJoinableQueue` in CPython's
//! `Lib/test/_test_multiprocessing.py` (3.11), rewritten for this API.
#![cfg(feature = "queue")]
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::time::{Duration, Instant};

use common::{PATIENCE, eventually, hang, join_ok, serial, spawn_in};
use multiproc::Event;
use multiproc::queue::{
    GetError, GetTimeoutError, JoinableQueue, PutError, PutTimeoutError, Queue, SimpleQueue,
    TaskDoneError, TryGetError, TryPutError,
};

const SHORT: Duration = Duration::from_millis(100);

#[test]
fn one_producer_one_consumer_keeps_order() {
    let _s = serial();
    const N: u64 = 100_000;
    let q = Queue::<u64>::new().unwrap();
    let sum = multiproc::RawValue::new(0u64).unwrap();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            let mut s = 0u64;
            for i in 0..N {
                let v = q.get_timeout(PATIENCE).unwrap();
                assert_eq!(v, i);
                s += v;
            }
            sum.store(s);
        });
        let mut p = spawn_in(ps, || {
            for i in 0..N {
                q.put(i).unwrap();
            }
        });
        join_ok(&mut p);
        join_ok(&mut c);
        assert_eq!(sum.load(), N * (N - 1) / 2);
        assert!(q.empty());
        assert_eq!(q.qsize(), 0);
    })
}

#[test]
fn two_producers_two_consumers_lose_nothing() {
    let _s = serial();
    const N: u64 = 50_000;
    // A small ring, so producers also wait for room.
    let q = Queue::<(u8, u64)>::with_capacity(0, 4096).unwrap();
    let out = Queue::<Vec<(u8, u64)>>::new().unwrap();
    let consumer = || {
        let mut got = Vec::new();
        let mut last = [None::<u64>; 2];
        loop {
            match q.get_timeout(PATIENCE) {
                Ok((who, i)) => {
                    // Items from one producer arrive in order at each consumer.
                    if let Some(l) = last[who as usize] {
                        assert!(i > l);
                    }
                    last[who as usize] = Some(i);
                    got.push((who, i));
                }
                Err(GetTimeoutError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        out.put(got).unwrap();
    };
    multiproc::process::scope(|ps| {
        let mut cs = [spawn_in(ps, consumer), spawn_in(ps, consumer)];
        let mut ps: Vec<_> = (0..2u8)
            .map(|who| {
                let q = &q;
                spawn_in(ps, move || {
                    for i in 0..N {
                        q.put((who, i)).unwrap();
                    }
                })
            })
            .collect();
        for p in &mut ps {
            join_ok(p);
        }
        q.close();
        let mut all = Vec::new();
        for _ in 0..2 {
            all.extend(out.get_timeout(PATIENCE).unwrap());
        }
        for c in &mut cs {
            join_ok(c);
        }
        all.sort();
        let want: Vec<(u8, u64)> = (0..2u8).flat_map(|w| (0..N).map(move |i| (w, i))).collect();
        assert_eq!(all, want);
    })
}

#[test]
fn items_of_every_size_go_through() {
    let _s = serial();
    let units = Queue::<()>::new().unwrap();
    let q = Queue::<Vec<u8>>::new().unwrap();
    let sizes = [0usize, 1, 7, 8, 9, 200, 64 << 10, 300 << 10, 64 << 20, 3];
    let pattern = |n: usize, k: usize| -> Vec<u8> { (0..n).map(|i| (i * 31 + k) as u8).collect() };
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            for _ in 0..3 {
                units.put(()).unwrap();
            }
            for (k, &n) in sizes.iter().enumerate() {
                q.put(pattern(n, k)).unwrap();
            }
        });
        for _ in 0..3 {
            units.get_timeout(PATIENCE).unwrap();
        }
        for (k, &n) in sizes.iter().enumerate() {
            let v = q.get_timeout(PATIENCE).unwrap();
            assert_eq!(v.len(), n);
            assert!(v == pattern(n, k), "item {k} of {n} bytes differs");
        }
        join_ok(&mut p);
        assert!(q.empty());
    })
}

#[test]
fn items_larger_than_a_small_ring_interleave_with_small_ones() {
    let _s = serial();
    // 4 KiB ring: anything over 1 KiB is chunked.
    let q = Queue::<Vec<u8>>::with_capacity(0, 4096).unwrap();
    multiproc::process::scope(|scope| {
        let mut ps: Vec<_> = (0..2u8)
            .map(|w| {
                let q = &q;
                spawn_in(scope, move || {
                    for i in 0..200usize {
                        let n = if i % 7 == 0 { 10_000 + i } else { i % 50 };
                        q.put(vec![w.wrapping_mul(100).wrapping_add(i as u8); n])
                            .unwrap();
                    }
                })
            })
            .collect();
        let mut cs: Vec<_> = (0..2)
            .map(|_| {
                let q = &q;
                spawn_in(scope, move || {
                    while let Ok(v) = q.get_timeout(Duration::from_secs(1)) {
                        assert!(v.windows(2).all(|w| w[0] == w[1]), "torn item");
                    }
                })
            })
            .collect();
        for p in &mut ps {
            join_ok(p);
        }
        for c in &mut cs {
            join_ok(c);
        }
        assert!(q.empty());
    })
}

#[test]
fn timeouts() {
    let q = Queue::<u32>::bounded(1).unwrap();
    // Zero timeouts never block.
    let t = Instant::now();
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    assert_eq!(q.get_timeout(Duration::ZERO), Err(GetTimeoutError::Timeout));
    assert!(t.elapsed() < Duration::from_secs(1));
    // get_timeout on an empty queue waits at least its timeout.
    let t = Instant::now();
    assert_eq!(q.get_timeout(SHORT), Err(GetTimeoutError::Timeout));
    assert!(t.elapsed() >= SHORT);
    q.put(1).unwrap();
    assert!(q.full());
    let t = Instant::now();
    assert!(matches!(q.try_put(2), Err(TryPutError::Full(2))));
    assert!(matches!(
        q.put_timeout(3, Duration::ZERO),
        Err(PutTimeoutError::Timeout(3))
    ));
    assert!(t.elapsed() < Duration::from_secs(1));
    let t = Instant::now();
    let e = q.put_timeout(4, SHORT).unwrap_err();
    assert!(t.elapsed() >= SHORT);
    assert!(matches!(e, PutTimeoutError::Timeout(_)));
    assert_eq!(e.into_inner(), 4);
    assert_eq!(q.get_timeout(SHORT), Ok(1));
    assert!(!q.full());
}

#[test]
fn put_timeout_on_a_full_ring_and_a_huge_item() {
    // Ring space, not maxsize, is what is short here.
    let q = Queue::<Vec<u8>>::with_capacity(0, 4096).unwrap();
    q.put(vec![1; 900]).unwrap();
    q.put(vec![2; 900]).unwrap();
    q.put(vec![3; 900]).unwrap();
    q.put(vec![4; 900]).unwrap();
    assert!(matches!(q.try_put(vec![5; 900]), Err(TryPutError::Full(_))));
    let t = Instant::now();
    assert!(matches!(
        q.put_timeout(vec![6; 900], SHORT),
        Err(PutTimeoutError::Timeout(_))
    ));
    assert!(t.elapsed() >= SHORT);
    assert_eq!(q.try_get().unwrap(), vec![1; 900]);
    // A chunked item that cannot be sent whole in time comes back whole,
    // and the part that was sent is never delivered.
    let big = vec![7u8; 100_000];
    let t = Instant::now();
    match q.put_timeout(big.clone(), SHORT) {
        Err(PutTimeoutError::Timeout(v)) => assert_eq!(v, big),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(t.elapsed() >= SHORT);
    for i in 2..=4u8 {
        assert_eq!(q.try_get().unwrap(), vec![i; 900]);
    }
    assert_eq!(q.try_get(), Err(TryGetError::Empty));
    q.put(vec![8; 10]).unwrap();
    assert_eq!(q.try_get().unwrap(), vec![8; 10]);
    assert_eq!(q.qsize(), 0);
}

#[test]
fn maxsize_blocks_producers_until_consumers_take() {
    let _s = serial();
    let q = Queue::<u32>::bounded(3).unwrap();
    assert_eq!(q.maxsize(), 3);
    let filled = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            for i in 0..3 {
                q.try_put(i).unwrap();
            }
            filled.set();
            // Blocks until the parent takes one.
            q.put(3).unwrap();
        });
        assert!(filled.wait_timeout(PATIENCE));
        assert!(eventually(PATIENCE, || q.full()));
        std::thread::sleep(SHORT);
        assert_eq!(q.qsize(), 3);
        assert_eq!(q.get().unwrap(), 0);
        join_ok(&mut p);
        assert_eq!(q.qsize(), 3);
        assert!(q.full());
        for i in 1..4 {
            assert_eq!(q.get().unwrap(), i);
        }
        assert!(q.empty());
    })
}

#[test]
fn close_hands_items_back_and_wakes_getters() {
    let _s = serial();
    let q = Queue::<String>::new().unwrap();
    q.put("a".into()).unwrap();
    let waiting = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            assert_eq!(q.get().unwrap(), "a");
            waiting.set();
            // Blocks until the close.
            assert_eq!(q.get(), Err(GetError::Closed));
        });
        assert!(waiting.wait_timeout(PATIENCE));
        std::thread::sleep(SHORT);
        q.close();
        join_ok(&mut c);
        assert!(q.is_closed());
        match q.put("b".into()) {
            Err(PutError::Closed(s)) => assert_eq!(s, "b"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(q.try_put("c".into()), Err(TryPutError::Closed(_))));
        assert_eq!(q.try_get(), Err(TryGetError::Closed));
        assert_eq!(q.get_timeout(SHORT), Err(GetTimeoutError::Closed));
    })
}

#[test]
fn close_lets_the_queue_drain_first() {
    let q = Queue::<u8>::new().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.close();
    assert_eq!(q.get(), Ok(1));
    assert_eq!(q.get(), Ok(2));
    assert_eq!(q.get(), Err(GetError::Closed));
}

#[test]
fn joinable_queue_across_processes() {
    let _s = serial();
    let q = JoinableQueue::<u32>::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut workers: Vec<_> = (0..2)
            .map(|_| {
                let q = &q;
                spawn_in(ps, move || {
                    while let Ok(_item) = q.get() {
                        std::thread::sleep(Duration::from_millis(1));
                        q.task_done().unwrap();
                    }
                })
            })
            .collect();
        for i in 0..50 {
            q.put(i).unwrap();
        }
        assert!(q.join_timeout(PATIENCE));
        assert_eq!(q.unfinished_tasks(), 0);
        assert!(q.empty());
        q.close();
        for w in &mut workers {
            join_ok(w);
        }
    })
}

#[test]
fn task_done_called_too_often_is_an_error() {
    let q = JoinableQueue::<u8>::new().unwrap();
    assert_eq!(q.task_done(), Err(TaskDoneError));
    q.put(1).unwrap();
    assert_eq!(q.unfinished_tasks(), 1);
    assert!(!q.join_timeout(Duration::from_millis(20)));
    q.get().unwrap();
    q.task_done().unwrap();
    assert_eq!(q.task_done(), Err(TaskDoneError));
    assert!(q.join_timeout(Duration::ZERO));
    q.join();
}

#[test]
fn simple_queue() {
    let _s = serial();
    // CPython `_TestSimpleQueue.test_empty` and `test_close`.
    let q = SimpleQueue::<i32>::new().unwrap();
    assert!(q.empty());
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            q.put(5).unwrap();
            q.put(6).unwrap();
        });
        join_ok(&mut p);
        assert!(!q.empty());
        assert_eq!(q.get(), Ok(5));
        assert_eq!(q.get(), Ok(6));
        assert!(q.empty());
        q.close();
        assert_eq!(q.get(), Err(GetError::Closed));
    })
}

#[test]
fn consumer_killed_in_get_does_not_hang_producers() {
    let _s = serial();
    let q = Queue::<u64>::bounded(4).unwrap();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            let _ = q.get();
            hang();
        });
        // Let it go to sleep in `get`, then kill it there.
        std::thread::sleep(Duration::from_millis(50));
        c.kill().unwrap();
        c.join().unwrap();
        let mut p = spawn_in(ps, || {
            for i in 0..4 {
                q.put_timeout(i, PATIENCE).unwrap();
            }
        });
        join_ok(&mut p);
        for i in 0..4 {
            assert_eq!(q.get_timeout(PATIENCE), Ok(i));
        }
    });
    // A consumer killed while receiving a chunked item loses that item
    // only; its remaining chunks are discarded.
    let q = Queue::<Vec<u8>>::with_capacity(0, 4096).unwrap();
    let took = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            q.put(vec![9u8; 50_000]).unwrap();
            q.put(vec![1u8; 3]).unwrap();
        });
        let mut c = spawn_in(ps, || {
            // Killed at some point of receiving the big item (or before, or
            // after it): every case is allowed below.
            took.set();
            let _ = q.get();
            hang();
        });
        assert!(took.wait_timeout(PATIENCE));
        std::thread::sleep(Duration::from_millis(1));
        c.kill().unwrap();
        c.join().unwrap();
        // Whatever the killed consumer took is lost; the rest arrives intact.
        let mut got = Vec::new();
        while let Ok(v) = q.get_timeout(Duration::from_secs(1)) {
            got.push(v);
        }
        join_ok(&mut p);
        assert!(got.last() == Some(&vec![1u8; 3]), "small item lost");
        assert!(got.len() <= 2);
        if got.len() == 2 {
            assert_eq!(got[0], vec![9u8; 50_000]);
        }
        assert!(q.empty());
    })
}

#[test]
fn producer_killed_holding_the_lock_mid_put() {
    let _s = serial();
    let q = Queue::<u64>::new().unwrap();
    q.put(1).unwrap();
    let held = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            assert!(q.__hold_lock_mid_put(&666));
            held.set();
            hang();
        });
        assert!(held.wait_timeout(PATIENCE));
        // The half-put item is not counted.
        assert_eq!(q.qsize(), 1);
        p.kill().unwrap();
        p.join().unwrap();
        let mut c = spawn_in(ps, || {
            assert_eq!(q.get_timeout(PATIENCE), Ok(1));
            q.put(2).unwrap();
        });
        join_ok(&mut c);
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.try_get(), Ok(2));
        assert_eq!(q.try_get(), Err(TryGetError::Empty));
    })
}

/// Waiters arm their bells in the side locks' words; a party killed while
/// holding a side lock leaves those bits in a word whose owner is dead. The
/// next locker takes the lock over with the bits kept, and its release still
/// wakes the waiter, on both sides.
#[test]
fn waiters_are_woken_through_a_lock_taken_over_from_the_dead() {
    let _s = serial();
    // A consumer asleep on an empty queue; a producer dies holding the
    // producers' lock mid-put; another producer's put reaches the consumer.
    let q = Queue::<u64>::new().unwrap();
    let held = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            assert_eq!(q.get_timeout(PATIENCE), Ok(5));
        });
        std::thread::sleep(SHORT);
        let mut p = spawn_in(ps, || {
            assert!(q.__hold_lock_mid_put(&666));
            held.set();
            hang();
        });
        assert!(held.wait_timeout(PATIENCE));
        p.kill().unwrap();
        p.join().unwrap();
        let mut p2 = spawn_in(ps, || q.put_timeout(5, PATIENCE).unwrap());
        join_ok(&mut p2);
        join_ok(&mut c);
        assert!(q.empty());
    });
    // A producer asleep on a full queue; a consumer dies holding the
    // consumers' lock; another consumer takes the items and the producer's
    // last item goes in.
    let q = Queue::<u64>::bounded(2).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let held = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || q.put_timeout(3, PATIENCE).unwrap());
        std::thread::sleep(SHORT);
        let mut c = spawn_in(ps, || {
            q.__hold_lock_mid_get();
            held.set();
            hang();
        });
        assert!(held.wait_timeout(PATIENCE));
        c.kill().unwrap();
        c.join().unwrap();
        let mut c2 = spawn_in(ps, || {
            for i in 1..=3 {
                assert_eq!(q.get_timeout(PATIENCE), Ok(i));
            }
        });
        join_ok(&mut c2);
        join_ok(&mut p);
        assert!(q.empty());
    })
}

#[test]
fn producer_killed_mid_large_item() {
    let _s = serial();
    // A 64 KiB ring; the 4 MiB item goes in 16 KiB chunks and stalls once
    // the ring is full, with nobody reading. The producer is killed there.
    let q = Queue::<Vec<u8>>::with_capacity(0, 64 << 10).unwrap();
    q.put(vec![1]).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            q.put(vec![7u8; 4 << 20]).unwrap();
        });
        std::thread::sleep(Duration::from_millis(100));
        p.kill().unwrap();
        p.join().unwrap();
        // A consumer takes the first item, then the dead producer's partial
        // item, which it drops once it learns the writer is gone.
        let mut c = spawn_in(ps, || {
            assert_eq!(q.get_timeout(PATIENCE), Ok(vec![1]));
            assert_eq!(q.get_timeout(PATIENCE), Ok(vec![2, 2]));
        });
        // Another producer is not blocked for ever by the dead one.
        let mut p2 = spawn_in(ps, || {
            q.put_timeout(vec![2, 2], PATIENCE).unwrap();
        });
        join_ok(&mut p2);
        join_ok(&mut c);
        assert!(q.empty());
        q.put(vec![3]).unwrap();
        assert_eq!(q.try_get(), Ok(vec![3]));
    })
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat; `rest` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_getter_sleeps() {
    let _s = serial();
    let q = Queue::<u8>::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            let _ = q.get_timeout(PATIENCE);
        });
        let pid = c.pid().unwrap();
        std::thread::sleep(SHORT);
        let t0 = cpu_ticks(pid);
        let w0 = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_ticks(pid) - t0;
        let wall = w0.elapsed();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let frac = used as f64 / hz / wall.as_secs_f64();
        eprintln!("idle getter used {:.1}% of a CPU", frac * 100.0);
        assert!(frac < 0.2, "idle getter used {:.1}% of a CPU", frac * 100.0);
        q.put(1).unwrap();
        join_ok(&mut c);
    })
}

// ---- ports of CPython's `_TestQueue`, `_TestJoinableQueue` ----

/// CPython `_TestQueue.test_put`: fill a bounded queue from this process,
/// drain it from a child, with every put/get form.
#[test]
fn cpython_test_put() {
    let _s = serial();
    const MAXSIZE: usize = 6;
    let q = Queue::<usize>::bounded(MAXSIZE).unwrap();
    let parent_can_continue = Event::new().unwrap();
    let child_can_start = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            assert!(child_can_start.wait_timeout(PATIENCE));
            for _ in 0..6 {
                q.get_timeout(PATIENCE).unwrap();
            }
            parent_can_continue.set();
        });
        assert!(q.empty());
        assert!(!q.full());
        q.put(1).unwrap();
        q.put_timeout(2, PATIENCE).unwrap();
        q.put_timeout(3, Duration::ZERO).unwrap();
        q.put_timeout(4, Duration::from_millis(10)).unwrap();
        q.try_put(5).unwrap();
        q.put(6).unwrap();
        assert_eq!(q.qsize(), MAXSIZE);
        assert!(!q.empty());
        assert!(q.full());
        assert!(matches!(q.try_put(7), Err(TryPutError::Full(7))));
        assert!(matches!(
            q.put_timeout(7, Duration::ZERO),
            Err(PutTimeoutError::Timeout(7))
        ));
        let t = Instant::now();
        assert!(matches!(
            q.put_timeout(7, Duration::from_millis(100)),
            Err(PutTimeoutError::Timeout(7))
        ));
        assert!(t.elapsed() >= Duration::from_millis(100));
        child_can_start.set();
        assert!(parent_can_continue.wait_timeout(PATIENCE));
        assert!(q.empty());
        assert!(!q.full());
        join_ok(&mut p);
    })
}

/// CPython `_TestQueue.test_get`: a child fills, this process drains with
/// every get form.
#[test]
fn cpython_test_get() {
    let _s = serial();
    let q = Queue::<i32>::new().unwrap();
    let child_can_start = Event::new().unwrap();
    let parent_can_continue = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            assert!(child_can_start.wait_timeout(PATIENCE));
            for i in 1..=5 {
                q.put(i).unwrap();
            }
            parent_can_continue.set();
        });
        assert!(q.empty());
        child_can_start.set();
        assert!(parent_can_continue.wait_timeout(PATIENCE));
        assert!(!q.empty());
        assert_eq!(q.get(), Ok(1));
        assert_eq!(q.get_timeout(PATIENCE), Ok(2));
        assert_eq!(q.get_timeout(Duration::ZERO), Ok(3));
        assert_eq!(q.get_timeout(Duration::from_millis(10)), Ok(4));
        assert_eq!(q.try_get(), Ok(5));
        assert!(q.empty());
        assert_eq!(q.try_get(), Err(TryGetError::Empty));
        let t = Instant::now();
        assert_eq!(
            q.get_timeout(Duration::from_millis(100)),
            Err(GetTimeoutError::Timeout)
        );
        assert!(t.elapsed() >= Duration::from_millis(100));
        join_ok(&mut p);
    })
}

/// CPython `_TestQueue.test_fork`: items put before a child starts and by
/// the child all arrive.
#[test]
fn cpython_test_fork() {
    let _s = serial();
    let q = Queue::<i32>::new().unwrap();
    for i in 0..10 {
        q.put(i).unwrap();
    }
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            for i in 10..20 {
                q.put(i).unwrap();
            }
        });
        join_ok(&mut p);
        let got: Vec<i32> = (0..20).map(|_| q.get_timeout(PATIENCE).unwrap()).collect();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        assert_eq!(q.try_get(), Err(TryGetError::Empty));
    })
}

/// CPython `_TestQueue.test_qsize`.
#[test]
fn cpython_test_qsize() {
    let q = Queue::<i32>::new().unwrap();
    assert_eq!(q.qsize(), 0);
    q.put(1).unwrap();
    assert_eq!(q.qsize(), 1);
    q.put(5).unwrap();
    assert_eq!(q.qsize(), 2);
    q.get().unwrap();
    assert_eq!(q.qsize(), 1);
    q.get().unwrap();
    assert_eq!(q.qsize(), 0);
}

/// CPython `_TestQueue.test_task_done` (JoinableQueue): workers mark every
/// item done; `join` returns once all are.
#[test]
fn cpython_test_task_done() {
    let _s = serial();
    let q = JoinableQueue::<Option<i32>>::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut workers: Vec<_> = (0..4)
            .map(|_| {
                let q = &q;
                spawn_in(ps, move || {
                    while let Ok(Some(_)) = q.get() {
                        q.task_done().unwrap();
                    }
                    q.task_done().unwrap();
                })
            })
            .collect();
        for i in 0..10 {
            q.put(Some(i)).unwrap();
        }
        assert!(q.join_timeout(PATIENCE));
        for _ in &workers {
            q.put(None).unwrap();
        }
        for w in &mut workers {
            join_ok(w);
        }
        assert!(q.join_timeout(PATIENCE));
    })
}

/// CPython `_TestQueue.test_timeout`: `get` with a timeout waits about
/// that long.
#[test]
fn cpython_test_timeout() {
    let q = Queue::<i32>::new().unwrap();
    let t = Instant::now();
    assert_eq!(
        q.get_timeout(Duration::from_millis(200)),
        Err(GetTimeoutError::Timeout)
    );
    assert!(t.elapsed() >= Duration::from_millis(200));
}

/// CPython `_TestQueue.test_no_import_lock_contention` /
/// `test_queue_feeder_donot_stop_onexc`: an item that cannot be encoded
/// comes back as an error and the queue keeps working.
#[test]
fn cpython_unencodable_item_is_handed_back() {
    struct Bad;
    impl serde::Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refuses to be encoded"))
        }
    }
    impl<'de> serde::Deserialize<'de> for Bad {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Bad, D::Error> {
            Ok(Bad)
        }
    }
    #[derive(serde::Serialize, serde::Deserialize)]
    enum Item {
        Good(u8),
        Bad(Bad),
    }
    let q = Queue::<Item>::new().unwrap();
    assert!(matches!(
        q.put(Item::Bad(Bad)),
        Err(PutError::Encode(Item::Bad(_), _))
    ));
    q.put(Item::Good(3)).unwrap();
    assert!(matches!(q.get(), Ok(Item::Good(3))));
}

/// Handles may be shared by threads of one process too.
#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Queue<String>>();
    check::<SimpleQueue<Vec<u8>>>();
    check::<JoinableQueue<u64>>();
}

/// The state letter of `pid` in `/proc/<pid>/stat` (`R`, `S`, `T`, ...).
fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.chars().next()
}

#[test]
fn get_timeout_returns_mid_item_and_the_next_get_goes_on() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let _s = serial();
    // A 64 KiB ring carries 16 KiB chunks: the 1 MiB item fills it four
    // chunks in, and its writer sleeps for room mid-item.
    let q = Queue::<String>::with_capacity(0, 64 << 10).unwrap();
    let putting = Event::new().unwrap();
    let item: String = (0..1 << 20)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    multiproc::process::scope(|scope| {
        let mut p = spawn_in(scope, || {
            putting.set();
            q.put(item.clone()).unwrap();
        });
        let pid = Pid::from_raw(p.pid().unwrap());
        assert!(putting.wait_timeout(PATIENCE));
        // Asleep in the put (only a full ring puts it to sleep there): the
        // first chunks are in. Stop it there: a writer that stalls mid-item.
        assert!(eventually(PATIENCE, || proc_state(pid.as_raw()) == Some('S')));
        kill(pid, Signal::SIGSTOP).unwrap();
        assert!(eventually(PATIENCE, || proc_state(pid.as_raw()) == Some('T')));
        // Before: the getter waited past its deadline for the rest of the item
        // for as long as the writer lived (here until the watchdog below
        // resumed the writer).
        let (done, watch) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if watch.recv_timeout(Duration::from_secs(5)).is_err() {
                let _ = kill(pid, Signal::SIGCONT);
            }
        });
        let t = Instant::now();
        let r = q.get_timeout(Duration::from_millis(200));
        let took = t.elapsed();
        let _ = done.send(());
        watchdog.join().unwrap();
        kill(pid, Signal::SIGCONT).unwrap();
        assert!(
            matches!(r, Err(GetTimeoutError::Timeout)),
            "a get mid-item gave {:?} after {took:?}",
            r.as_ref().map(String::len)
        );
        assert!(
            took < Duration::from_secs(1),
            "get_timeout(200 ms) took {took:?}"
        );
        // The part received is kept: the next get goes on with the rest, and
        // the item arrives whole, once.
        let got = q.get_timeout(PATIENCE).unwrap();
        assert!(
            got == item,
            "the item arrived damaged ({} bytes)",
            got.len()
        );
        join_ok(&mut p);
        assert!(q.empty());
    });
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
}

/// A ring over 1 GiB is refused with a creation error a caller can match
/// (the size it asked for), for every constructor that takes a size; `?`
/// still turns it into the crate's `Error`.
#[test]
fn a_ring_too_large_is_an_invalid_size() {
    let too_big = (1 << 30) + 1;
    match Queue::<u8>::with_capacity(0, too_big) {
        Err(multiproc::CreateError::InvalidSize { size, .. }) => assert_eq!(size, too_big),
        other => panic!("expected InvalidSize, got {other:?}"),
    }
    match JoinableQueue::<u8>::with_capacity(3, too_big) {
        Err(multiproc::CreateError::InvalidSize { size, .. }) => assert_eq!(size, too_big),
        other => panic!("expected InvalidSize, got {other:?}"),
    }
    fn coarse() -> multiproc::Result<Queue<u8>> {
        Ok(Queue::with_capacity(0, (1 << 30) + 1)?)
    }
    assert!(matches!(
        coarse(),
        Err(multiproc::Error::InvalidSize { .. })
    ));
    // The ordinary constructors succeed.
    let _ = (
        Queue::<u8>::new().unwrap(),
        SimpleQueue::<u8>::new().unwrap(),
    );
}
