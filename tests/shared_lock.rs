//! One lock for several shared objects (Python's `Value(..., lock=L)`,
//! `Array(..., lock=L)`, `Condition(L)`), across forked processes.

mod common;

use std::time::{Duration, Instant};

use common::{join_ok, serial, spawn_in};
use multiproc::{Array, Condition, Event, Lock, TryLockError, Value};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn values_and_an_array_under_one_lock_stay_consistent_across_processes() {
    let _s = serial();
    let lock = Lock::new().unwrap();
    let a = Value::with_lock(0i64, &lock).unwrap();
    let b = Value::with_lock(0i64, &lock).unwrap();
    let c = Array::<i64>::zeroed_with_lock(2, &lock).unwrap();
    assert!(c.get_lock().is_some());
    multiproc::process::scope(|scope| {
        let mut kids: Vec<_> = (0..3)
            .map(|_| {
                let (lock, a, b, c) = (&lock, &a, &b, &c);
                spawn_in(scope, move || {
                    for _ in 0..300 {
                        // Three objects, one acquisition.
                        let mut g = lock.lock().unwrap();
                        let x = a.get_with(&mut g).unwrap();
                        a.set_with(&mut g, x + 1).unwrap();
                        let y = b.get_with(&mut g).unwrap();
                        b.set_with(&mut g, y - 1).unwrap();
                        drop(g);
                        // The array's own guard is the same lock.
                        let mut arr = c.lock().unwrap();
                        arr[0] += 1;
                        arr[1] -= 1;
                    }
                })
            })
            .collect();
        // Meanwhile: one guard sees both values, and they always balance.
        let deadline = Instant::now() + WAIT;
        while kids.iter_mut().any(|k| k.is_alive()) {
            let mut g = lock.lock().unwrap();
            let (x, y) = (a.get_with(&mut g).unwrap(), b.get_with(&mut g).unwrap());
            assert_eq!(x + y, 0, "a and b seen half-updated");
            drop(g);
            assert!(Instant::now() < deadline, "the children did not finish");
            std::thread::yield_now();
        }
        for k in &mut kids {
            join_ok(k);
        }
    });
    assert_eq!((a.get(), b.get()), (900, -900));
    assert_eq!(c.to_vec(), [900, -900]);
    // A guard of another lock is refused.
    let other = Lock::new().unwrap();
    let mut og = other.lock().unwrap();
    assert_eq!(a.get_with(&mut og), Err(multiproc::WrongGuard));
    assert_eq!(a.set_with(&mut og, 5), Err(multiproc::WrongGuard));
    drop(og);
    assert_eq!(a.get(), 900);
    // `?` in a `multiproc::Result` function: the coarse error it was.
    let coarse: multiproc::Error = multiproc::WrongGuard.into();
    assert!(
        matches!(coarse, multiproc::Error::InvalidArgument(m) if m.contains("not of the lock")),
        "{coarse:?}"
    );
}

#[test]
fn a_holder_in_another_process_excludes_every_object_of_the_lock() {
    let _s = serial();
    let lock = Lock::new().unwrap();
    let v = Value::with_lock(1u32, &lock).unwrap();
    let w = Value::with_lock(2u32, &lock).unwrap();
    let arr = Array::from_slice_with_lock(&[3u8, 4], &lock).unwrap();
    let cond = Condition::with_lock(&lock).unwrap();
    let (held, go) = (Event::new().unwrap(), Event::new().unwrap());
    multiproc::process::scope(|scope| {
        let mut kid = {
            let (v, held, go) = (&v, &held, &go);
            spawn_in(scope, move || {
                let mut g = v.lock().unwrap();
                *g = 10;
                held.set();
                assert!(go.wait_timeout(WAIT), "the parent never said go");
            })
        };
        assert!(held.wait_timeout(WAIT), "the child never took the lock");
        assert!(matches!(w.try_lock(), Err(TryLockError::WouldBlock)));
        assert!(matches!(arr.try_lock(), Err(TryLockError::WouldBlock)));
        assert!(cond.lock_timeout(Duration::from_millis(20)).is_err());
        assert!(lock.is_locked());
        go.set();
        join_ok(&mut kid);
    });
    assert_eq!(v.get(), 10);
    assert_eq!(w.get(), 2);
    assert_eq!(arr.to_vec(), [3, 4]);
    assert!(!lock.is_locked());
}

#[test]
fn a_condition_over_a_shared_lock_wakes_a_waiter_in_another_process() {
    let _s = serial();
    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(&lock).unwrap();
    let ready = Value::with_lock(0u32, &lock).unwrap();
    multiproc::process::scope(|scope| {
        // Held before the child starts: its notify cannot come before the wait.
        let mut g = cond.lock().unwrap();
        let mut kid = {
            let (cond, ready) = (&cond, &ready);
            spawn_in(scope, move || {
                let mut g = cond.lock().unwrap();
                ready.set_with(&mut g, 7).unwrap();
                cond.notify_all();
            })
        };
        let deadline = Instant::now() + WAIT;
        while ready.get_with(&mut g).unwrap() == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "never notified");
            cond.wait_timeout(&mut g, left);
        }
        assert_eq!(ready.get_with(&mut g).unwrap(), 7);
        drop(g);
        join_ok(&mut kid);
    });
}
