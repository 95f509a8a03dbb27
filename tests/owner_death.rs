//! A process SIGKILLed while holding a lock, or while waiting, must not
//! hang the others. (CPython hangs in each of the waiting cases.)
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::time::{Duration, Instant};

use common::{PATIENCE, eventually, hang, join_ok, serial, spawn_in};
use multiproc::signal::Signal;
use multiproc::{
    Array, Barrier, BarrierError, Condition, Event, Lock, Process, RLock, RawValue, Semaphore,
    TryLockError, Value,
};

/// Kills `p` with SIGKILL and checks that is how it ended. With `reap`
/// false the child is left a zombie until the caller joins it: the
/// acquirer must see a zombie owner as dead too.
fn kill(p: &mut Process<'_>, reap: bool) {
    p.kill().unwrap();
    if reap {
        assert_eq!(p.join().unwrap().code(), -Signal::SIGKILL.as_raw());
    } else {
        let pid = p.pid().unwrap();
        assert!(eventually(PATIENCE, || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(false)
        }));
    }
}

fn holder_killed(reap: bool) {
    let _s = serial();
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            let _g = lock.lock().unwrap();
            held.set();
            hang();
        });
        assert!(held.wait_timeout(PATIENCE));
        kill(&mut p, reap);
        let t = Instant::now();
        match lock.lock_timeout(PATIENCE) {
            Err(TryLockError::OwnerDied(e)) => drop(e.into_guard()),
            other => panic!("expected OwnerDied, got {other:?}"),
        }
        eprintln!("owner death noticed after {:?}", t.elapsed());
        // The lock works normally afterwards.
        drop(lock.try_lock().expect("clean lock after recovery"));
        drop(lock.lock().expect("clean lock after recovery"));
        p.join().unwrap();
    })
}

#[test]
fn lock_holder_killed_and_reaped() {
    holder_killed(true);
}

#[test]
fn lock_holder_killed_still_a_zombie() {
    holder_killed(false);
}

#[test]
fn value_holder_killed_mid_update_data_can_be_repaired() {
    let _s = serial();
    // Invariant: the two halves are equal.
    let pair = Value::new([0u64; 2]).unwrap();
    let held = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            let mut g = pair.lock().unwrap();
            g[0] = 99; // half-done: g[1] not yet written
            held.set();
            hang();
        });
        assert!(held.wait_timeout(PATIENCE));
        kill(&mut p, true);
        let mut g = match pair.lock() {
            Err(died) => died.into_guard(),
            Ok(_) => panic!("the owner's death went unnoticed"),
        };
        assert_eq!(*g, [99, 0], "the half-done update is visible");
        g[1] = g[0]; // repair
        drop(g);
        assert_eq!(*pair.lock().expect("healthy again"), [99, 99]);
    })
}

#[test]
fn several_waiters_one_takes_over() {
    let _s = serial();
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let died_seen = RawValue::new(0u32).unwrap();
    let got = RawValue::new(0u32).unwrap();
    multiproc::process::scope(|ps| {
        let mut holder = spawn_in(ps, || {
            let _g = lock.lock().unwrap();
            held.set();
            hang();
        });
        assert!(held.wait_timeout(PATIENCE));
        let mut waiters: Vec<_> = (0..3)
            .map(|_| {
                spawn_in(ps, || {
                    let g = match lock.lock() {
                        Ok(g) => g,
                        Err(e) => {
                            died_seen.fetch_add(1);
                            e.into_guard()
                        }
                    };
                    got.fetch_add(1);
                    drop(g);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        kill(&mut holder, true);
        for w in &mut waiters {
            join_ok(w);
        }
        assert_eq!(got.load(), 3);
        assert_eq!(
            died_seen.load(),
            1,
            "exactly one waiter learns of the death"
        );
    })
}

#[test]
fn rlock_holder_killed() {
    let _s = serial();
    let r = RLock::new().unwrap();
    let held = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            let _a = r.lock().unwrap();
            let _b = r.lock().unwrap();
            held.set();
            hang();
        });
        assert!(held.wait_timeout(PATIENCE));
        kill(&mut p, true);
        let g = match r.lock_timeout(PATIENCE) {
            Err(TryLockError::OwnerDied(e)) => e.into_guard(),
            other => panic!("expected OwnerDied, got {other:?}"),
        };
        assert_eq!(r.depth(), 1, "the dead owner's depth is not inherited");
        drop(g);
        assert!(!r.is_locked());
    })
}

#[test]
fn array_holder_killed() {
    let _s = serial();
    let a = Array::<u8>::zeroed(4).unwrap();
    let held = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            let mut g = a.lock().unwrap();
            g[0] = 1;
            held.set();
            hang();
        });
        assert!(held.wait_timeout(PATIENCE));
        kill(&mut p, true);
        let g = a.lock().expect_err("owner death reported").into_guard();
        assert_eq!(&*g, &[1, 0, 0, 0]);
    })
}

#[test]
fn event_waiter_killed_does_not_block_set() {
    let _s = serial();
    let ev = Event::new().unwrap();
    let waiting = RawValue::new(0u32).unwrap();
    multiproc::process::scope(|ps| {
        let mut victim = spawn_in(ps, || {
            waiting.fetch_add(1);
            ev.wait();
        });
        let mut survivor = spawn_in(ps, || {
            waiting.fetch_add(1);
            ev.wait();
        });
        assert!(eventually(PATIENCE, || waiting.load() == 2));
        std::thread::sleep(Duration::from_millis(10));
        kill(&mut victim, true);
        ev.set();
        assert!(survivor.join_timeout(PATIENCE).unwrap().is_some());
        join_ok(&mut survivor);
    })
}

#[test]
fn condition_waiter_killed_does_not_block_notify() {
    let _s = serial();
    let cond = Condition::new().unwrap();
    let flag = Value::new(0u8).unwrap();
    let waiting = RawValue::new(0u32).unwrap();
    let waiter = || {
        let mut g = flag.lock().unwrap();
        waiting.fetch_add(1);
        cond.wait_while(&mut g, |f| *f == 0);
    };
    multiproc::process::scope(|ps| {
        let mut victim = spawn_in(ps, waiter);
        let mut survivor = spawn_in(ps, waiter);
        assert!(eventually(PATIENCE, || waiting.load() == 2));
        // Both are asleep once they have released the lock.
        drop(flag.lock().unwrap());
        kill(&mut victim, true);
        flag.set(1);
        cond.notify_all();
        assert!(survivor.join_timeout(PATIENCE).unwrap().is_some());
        join_ok(&mut survivor);
        // One notify after a death still reaches a live waiter.
        flag.set(0);
        let mut late = spawn_in(ps, waiter);
        assert!(eventually(PATIENCE, || waiting.load() == 3));
        drop(flag.lock().unwrap());
        flag.set(1);
        cond.notify_one();
        assert!(late.join_timeout(PATIENCE).unwrap().is_some());
    })
}

#[test]
fn barrier_party_killed_while_waiting_does_not_hang_others() {
    let _s = serial();
    let b = Barrier::new(3).unwrap();
    multiproc::process::scope(|ps| {
        let mut victim = spawn_in(ps, || b.wait().map(|_| ()));
        assert!(eventually(PATIENCE, || b.n_waiting() == 1));
        kill(&mut victim, true);
        // The dead party counted as arrived: two more complete the round.
        let mut other = spawn_in(ps, || b.wait().map(|_| ()));
        b.wait_timeout(PATIENCE).unwrap();
        join_ok(&mut other);
        assert!(!b.is_broken());
    })
}

#[test]
fn barrier_action_runner_killed_breaks_it() {
    let _s = serial();
    let started: &'static Event = Box::leak(Box::new(Event::new().unwrap()));
    // The action blocks forever in whichever process runs it; we make sure
    // that is the child by letting it arrive last.
    let b = Barrier::with_action(2, || {
        started.set();
        hang();
    })
    .unwrap();
    let parent_waits = RawValue::new(0u8).unwrap();
    multiproc::process::scope(|ps| {
        let mut runner = spawn_in(ps, || {
            while parent_waits.load() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = b.wait();
        });
        let waiter = std::thread::scope(|s| {
            let h = s.spawn(|| b.wait_timeout(PATIENCE));
            assert!(eventually(PATIENCE, || b.n_waiting() == 1));
            parent_waits.store(1);
            assert!(started.wait_timeout(PATIENCE));
            kill(&mut runner, true);
            h.join().unwrap()
        });
        assert!(matches!(waiter, Err(BarrierError::BrokenBarrier)));
    })
}

#[test]
fn semaphore_waiter_killed_does_not_steal_a_release() {
    let _s = serial();
    let sem = Semaphore::new(0).unwrap();
    let waiting = RawValue::new(0u32).unwrap();
    let waiter = || {
        waiting.fetch_add(1);
        sem.acquire();
    };
    multiproc::process::scope(|ps| {
        let mut victim = spawn_in(ps, waiter);
        let mut survivor = spawn_in(ps, waiter);
        assert!(eventually(PATIENCE, || waiting.load() == 2));
        std::thread::sleep(Duration::from_millis(20));
        kill(&mut victim, true);
        sem.release().unwrap();
        assert!(survivor.join_timeout(PATIENCE).unwrap().is_some());
        join_ok(&mut survivor);
        assert_eq!(sem.value(), 0);
    })
}
