//! Locks, semaphores, conditions, events and barriers across real
//! processes.

mod common;

use std::time::{Duration, Instant};

use common::{PATIENCE, eventually, join_ok, serial, spawn_in};
use multiproc::{
    Array, Barrier, BarrierError, BoundedSemaphore, Condition, Event, Lock, RLock, RawValue,
    Semaphore, ShmSafe, TryLockError, Value,
};

#[test]
fn lock_excludes_other_processes() {
    let _s = serial();
    let lock = Lock::new().unwrap();
    let inside = RawValue::new(0u32).unwrap();
    let overlap = RawValue::new(0u8).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..3)
            .map(|_| {
                spawn_in(ps, || {
                    for _ in 0..2000 {
                        let _g = lock.lock().unwrap();
                        if inside.fetch_add(1) != 0 {
                            overlap.store(1);
                        }
                        std::hint::spin_loop();
                        inside.fetch_sub(1);
                    }
                })
            })
            .collect();
        for k in &mut kids {
            join_ok(k);
        }
        assert!(
            overlap.load() == 0,
            "two processes were inside the lock at once"
        );
    })
}

#[test]
fn lock_held_by_child_blocks_parent_until_released() {
    let _s = serial();
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let release = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            let _g = lock.lock().unwrap();
            held.set();
            release.wait();
        });
        assert!(held.wait_timeout(PATIENCE));
        assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
        let t = Instant::now();
        assert!(matches!(
            lock.lock_timeout(Duration::from_millis(30)),
            Err(TryLockError::TimedOut)
        ));
        assert!(t.elapsed() >= Duration::from_millis(30));
        release.set();
        let g = lock.lock_timeout(PATIENCE).unwrap();
        drop(g);
        join_ok(&mut p);
    })
}

#[test]
fn lock_acquire_release_across_processes() {
    let _s = serial();
    // As in Python, a Lock taken in one process may be released by another.
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || lock.release());
        join_ok(&mut p);
        assert!(!lock.is_locked());
        assert!(matches!(
            lock.release(),
            Err(multiproc::ReleasedTooManyTimes)
        ));
    })
}

#[test]
fn rlock_depth_and_ownership_across_processes() {
    let _s = serial();
    let r = RLock::new().unwrap();
    let g1 = r.lock().unwrap();
    let g2 = r.lock().unwrap();
    r.acquire().unwrap();
    assert_eq!(r.depth(), 3);
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            // Another process is not the owner: it can neither take nor release.
            assert!(!r.is_owned());
            assert!(r.is_locked());
            assert!(matches!(r.try_lock(), Err(TryLockError::WouldBlock)));
            assert!(matches!(
                r.lock_timeout(Duration::from_millis(10)),
                Err(TryLockError::TimedOut)
            ));
            assert!(matches!(r.release(), Err(multiproc::NotOwner)));
        });
        join_ok(&mut p);
        r.release().unwrap();
        drop(g2);
        assert_eq!(r.depth(), 1);
        assert!(r.is_locked());
        drop(g1);
        assert!(!r.is_locked());
        assert!(matches!(r.release(), Err(multiproc::NotOwner)));
        // Now the child may take it.
        let mut p = spawn_in(ps, || {
            let _a = r.lock().unwrap();
            let _b = r.lock().unwrap();
            assert_eq!(r.depth(), 2);
        });
        join_ok(&mut p);
        assert!(!r.is_locked());
    })
}

#[test]
fn semaphore_bounds_concurrency() {
    let _s = serial();
    let sem = Semaphore::new(2).unwrap();
    let inside = RawValue::new(0u32).unwrap();
    let most = RawValue::new(0u32).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..5)
            .map(|_| {
                spawn_in(ps, || {
                    for _ in 0..200 {
                        sem.acquire();
                        let now = inside.fetch_add(1) + 1;
                        let mut m = most.load();
                        while now > m {
                            match most.compare_exchange(m, now) {
                                Ok(_) => break,
                                Err(x) => m = x,
                            }
                        }
                        for _ in 0..200 {
                            std::hint::spin_loop();
                        }
                        inside.fetch_sub(1);
                        sem.release().unwrap();
                    }
                })
            })
            .collect();
        for k in &mut kids {
            join_ok(k);
        }
        assert!(most.load() <= 2, "{} inside at once", most.load());
        assert!(most.load() >= 1);
        assert_eq!(sem.value(), 2);
    })
}

#[test]
fn semaphore_release_wakes_a_sleeping_process() {
    let _s = serial();
    let sem = Semaphore::new(0).unwrap();
    let got = RawValue::new(0u32).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            sem.acquire();
            got.store(1);
        });
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(got.load(), 0);
        sem.release().unwrap();
        join_ok(&mut p);
        assert_eq!(got.load(), 1);
        assert!(!sem.acquire_timeout(Duration::ZERO));
    })
}

#[test]
fn bounded_semaphore_refuses_release_past_bound() {
    let _s = serial();
    let b = BoundedSemaphore::new(2).unwrap();
    assert!(matches!(b.release(), Err(multiproc::ReleasedTooManyTimes)));
    b.acquire();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            b.release().unwrap();
            assert!(matches!(b.release(), Err(multiproc::ReleasedTooManyTimes)));
        });
        join_ok(&mut p);
        assert_eq!(b.value(), 2);
        assert_eq!(b.bound(), 2);
    })
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Ring {
    items: [u64; 8],
    head: u64,
    tail: u64,
    done: bool,
}

// SAFETY: #[repr(C)] plain data; all-zero is an empty ring.
unsafe impl ShmSafe for Ring {}

#[test]
fn condition_producer_consumer() {
    let _s = serial();
    const N: u64 = 5000;
    let ring = Value::new(Ring {
        items: [0; 8],
        head: 0,
        tail: 0,
        done: false,
    })
    .unwrap();
    let not_empty = Condition::new().unwrap();
    let not_full = Condition::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut producer = spawn_in(ps, || {
            for i in 1..=N {
                let mut g = ring.lock().unwrap();
                not_full.wait_while(&mut g, |r| r.tail - r.head == 8);
                let t = g.tail;
                g.items[(t % 8) as usize] = i;
                g.tail += 1;
                drop(g);
                not_empty.notify_one();
            }
            ring.update(|r| r.done = true);
            not_empty.notify_all();
        });
        let mut next = 1;
        let mut sum = 0;
        loop {
            let mut g = ring.lock().unwrap();
            not_empty.wait_while(&mut g, |r| r.tail == r.head && !r.done);
            if g.tail == g.head && g.done {
                break;
            }
            let h = g.head;
            let item = g.items[(h % 8) as usize];
            g.head += 1;
            drop(g);
            not_full.notify_one();
            assert_eq!(item, next, "items arrive in order");
            next += 1;
            sum += item;
        }
        join_ok(&mut producer);
        assert_eq!(sum, N * (N + 1) / 2);
    })
}

#[test]
fn condition_notify_n_wakes_that_many() {
    let _s = serial();
    let woken = Value::new(0u32).unwrap();
    let go = Value::new(0u32).unwrap();
    let cond = Condition::new().unwrap();
    let waiting = RawValue::new(0u32).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..4)
            .map(|_| {
                spawn_in(ps, || {
                    let mut g = go.lock().unwrap();
                    waiting.fetch_add(1);
                    // Each wakeup consumes one ticket.
                    cond.wait_while(&mut g, |t| *t == 0);
                    *g -= 1;
                    drop(g);
                    woken.update(|w| *w += 1);
                })
            })
            .collect();
        assert!(eventually(PATIENCE, || waiting.load() == 4));
        // Let them fall asleep (holding `go` while notifying guarantees every
        // waiter that checked its predicate is asleep or about to be).
        {
            let mut g = go.lock().unwrap();
            *g = 2;
            cond.notify(2);
        }
        assert!(eventually(PATIENCE, || woken.get() == 2));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(woken.get(), 2, "only two tickets were handed out");
        {
            let mut g = go.lock().unwrap();
            *g = 2;
            cond.notify_all();
        }
        for k in &mut kids {
            join_ok(k);
        }
        assert_eq!(woken.get(), 4);
    })
}

#[test]
fn condition_timed_out_waiter_does_not_swallow_notify() {
    let _s = serial();
    let cond = Condition::new().unwrap();
    let state = Value::new(0u32).unwrap();
    let asleep = RawValue::new(0u8).unwrap();
    // A waiter in another process times out first.
    multiproc::process::scope(|ps| {
        let mut early = spawn_in(ps, || {
            let mut g = state.lock().unwrap();
            let r = cond.wait_timeout(&mut g, Duration::from_millis(20));
            if r.timed_out() { 0 } else { 3 }
        });
        assert_eq!(early.join().unwrap().code(), 0);
        // A second waiter then sleeps; one notify must reach it.
        let mut late = spawn_in(ps, || {
            let mut g = state.lock().unwrap();
            asleep.store(1);
            cond.wait_while(&mut g, |s| *s == 0);
        });
        assert!(eventually(PATIENCE, || asleep.load() != 0));
        {
            let mut g = state.lock().unwrap();
            *g = 1;
            cond.notify_one();
        }
        assert!(late.join_timeout(PATIENCE).unwrap().is_some());
        join_ok(&mut late);
    })
}

#[test]
fn event_wakes_waiters_in_other_processes() {
    let _s = serial();
    let ev = Event::new().unwrap();
    let woke = RawValue::new(0u32).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..3)
            .map(|_| {
                spawn_in(ps, || {
                    ev.wait();
                    woke.fetch_add(1);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(woke.load(), 0);
        assert!(!ev.is_set());
        ev.set();
        for k in &mut kids {
            join_ok(k);
        }
        assert_eq!(woke.load(), 3);
        ev.clear();
        assert!(!ev.wait_timeout(Duration::from_millis(10)));
    })
}

#[test]
fn three_process_barrier() {
    let _s = serial();
    // The action must be 'static: leak the counter (it lives in shared
    // memory, so every process's copy of the closure adds to the same one).
    let actions: &'static RawValue<u32> = Box::leak(Box::new(RawValue::new(0u32).unwrap()));
    let counted = Barrier::with_action(3, || {
        actions.fetch_add(1);
    })
    .unwrap();
    let barrier = Barrier::new(3).unwrap();
    let rounds = 50;
    let seen = Array::<u32>::zeroed(3 * rounds).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..3)
            .map(|_| {
                spawn_in(ps, || {
                    for round in 0..rounds {
                        let i = counted.wait().unwrap() as usize;
                        seen.update(|s| s[round * 3 + i] += 1);
                        barrier.wait().unwrap();
                    }
                })
            })
            .collect();
        for k in &mut kids {
            join_ok(k);
        }
        // Each round handed out indices 0, 1, 2 exactly once.
        assert_eq!(seen.to_vec(), vec![1; 3 * rounds]);
        assert_eq!(
            actions.load(),
            rounds as u32,
            "the action runs once a round"
        );
        assert_eq!(counted.n_waiting(), 0);
        assert!(!counted.is_broken());
    })
}

#[test]
fn barrier_abort_breaks_all_parties() {
    let _s = serial();
    let b = Barrier::new(3).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..2)
            .map(|_| {
                spawn_in(ps, || match b.wait() {
                    Err(BarrierError::BrokenBarrier) => 0,
                    _ => 1,
                })
            })
            .collect();
        assert!(eventually(PATIENCE, || b.n_waiting() == 2));
        b.abort();
        for k in &mut kids {
            join_ok(k);
        }
        assert!(matches!(b.wait(), Err(BarrierError::BrokenBarrier)));
        // Into the coarse error with `?`, variant for variant.
        let coarse = || -> multiproc::Result<u32> { Ok(b.wait()?) };
        assert!(matches!(coarse(), Err(multiproc::Error::BrokenBarrier)));
        b.reset();
        assert!(!b.is_broken());
        let mut kids: Vec<_> = (0..2)
            .map(|_| spawn_in(ps, || b.wait().map(|_| ())))
            .collect();
        b.wait_timeout(PATIENCE).unwrap();
        for k in &mut kids {
            join_ok(k);
        }
    })
}

#[test]
fn barrier_timeout_breaks_it_for_the_others() {
    let _s = serial();
    let b = Barrier::new(3).unwrap();
    multiproc::process::scope(|ps| {
        let mut other = spawn_in(ps, || match b.wait() {
            Err(BarrierError::BrokenBarrier) => 0,
            _ => 1,
        });
        assert!(eventually(PATIENCE, || b.n_waiting() == 1));
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(20)),
            Err(BarrierError::Timeout)
        ));
        join_ok(&mut other);
        assert!(b.is_broken());
    })
}

#[test]
fn barrier_reset_fails_current_waiters() {
    let _s = serial();
    let b = Barrier::new(2).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || match b.wait() {
            Err(BarrierError::BrokenBarrier) => 0,
            _ => 1,
        });
        assert!(eventually(PATIENCE, || b.n_waiting() == 1));
        b.reset();
        join_ok(&mut p);
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
    })
}

#[test]
fn zero_timeouts_never_block() {
    let _s = serial();
    let lock = Lock::new().unwrap();
    let r = RLock::new().unwrap();
    let v = Value::new(0u8).unwrap();
    let sem = Semaphore::new(0).unwrap();
    let ev = Event::new().unwrap();
    let cond = Condition::new().unwrap();
    let held = Event::new().unwrap();
    let done = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            let _a = lock.lock().unwrap();
            let _b = r.lock().unwrap();
            let _c = v.lock().unwrap();
            held.set();
            done.wait();
        });
        assert!(held.wait_timeout(PATIENCE));
        let t = Instant::now();
        assert!(matches!(
            lock.lock_timeout(Duration::ZERO),
            Err(TryLockError::TimedOut)
        ));
        assert!(matches!(
            r.lock_timeout(Duration::ZERO),
            Err(TryLockError::TimedOut)
        ));
        assert!(matches!(
            v.lock_timeout(Duration::ZERO),
            Err(TryLockError::TimedOut)
        ));
        assert!(!sem.acquire_timeout(Duration::ZERO));
        assert!(!ev.wait_timeout(Duration::ZERO));
        let mut g = cond.lock().unwrap();
        assert!(cond.wait_timeout(&mut g, Duration::ZERO).timed_out());
        assert!(
            cond.wait_while_timeout(&mut g, Duration::ZERO, |_| true)
                .timed_out()
        );
        drop(g);
        let b = Barrier::new(2).unwrap();
        assert!(matches!(
            b.wait_timeout(Duration::ZERO),
            Err(BarrierError::Timeout)
        ));
        // Not a timing assertion on speed: a generous bound that only a blocking
        // call (which would wait for `done`, i.e. forever) could exceed.
        assert!(t.elapsed() < Duration::from_secs(5));
        done.set();
        join_ok(&mut p);
    })
}

/// Python's `Barrier(parties, timeout=t)`: `wait` without a timeout of its
/// own uses the barrier's; a missing party breaks the barrier for the
/// process that waited (Timeout) and for a child that waited (Broken).
#[test]
fn barrier_default_timeout_breaks_for_every_process() {
    let _s = serial();
    let b = Barrier::new(3)
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    assert_eq!(b.timeout(), Some(Duration::from_millis(200)));
    let verdict = RawValue::new(0u32).unwrap();
    multiproc::process::scope(|s| {
        let mut child = spawn_in(s, || {
            // The child's handle is a copy: the default timeout came along.
            let r = match b.wait() {
                Err(BarrierError::BrokenBarrier) => 1,
                Err(BarrierError::Timeout) => 2,
                _ => 3,
            };
            verdict.set(r);
        });
        // Two parties of three: both time out or see the barrier broken.
        let t = Instant::now();
        let mine = b.wait();
        assert!(
            matches!(
                mine,
                Err(BarrierError::Timeout) | Err(BarrierError::BrokenBarrier)
            ),
            "{mine:?}"
        );
        assert!(t.elapsed() < PATIENCE);
        join_ok(&mut child);
    });
    assert!(b.is_broken());
    assert!(
        matches!(verdict.get(), 1 | 2),
        "child saw {}",
        verdict.get()
    );
    // Without a default, wait does not time out: a full round works.
    let plain = Barrier::new(1).unwrap();
    assert_eq!(plain.timeout(), None);
    assert_eq!(plain.wait().unwrap(), 0);
}
