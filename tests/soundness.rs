//! Soundness of the shared-memory types (issue 11): self-deadlock reported
//! instead of a hang, racing copies, forged handles and corrupt lengths
//! refused with clear errors.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{PATIENCE, join_ok, serial, spawn};
use multiproc::{Array, ArrayError, Lock, LockError, TryLockError, Value};

/// Runs `f` on a thread of its own and fails if it does not end within
/// [`PATIENCE`]: a regression to the old endless wait fails, not hangs.
fn bounded<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("the call did not return: it waits for a lock this thread holds"),
    }
}

/// The message of a caught panic.
fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn value_locked_twice_by_one_thread_is_would_deadlock() {
    let r = bounded(|| {
        let v = Value::new(5u64).unwrap();
        let g = v.lock().unwrap();
        let again = matches!(v.lock(), Err(LockError::WouldDeadlock));
        let t = Instant::now();
        let timed = matches!(
            v.lock_timeout(Duration::from_secs(30)),
            Err(TryLockError::WouldDeadlock)
        );
        let prompt = t.elapsed() < Duration::from_secs(5);
        let tried = matches!(v.try_lock(), Err(TryLockError::WouldBlock));
        drop(g);
        // Once released, the lock works as before.
        *v.lock().unwrap() += 1;
        (again, timed, prompt, tried, v.get())
    });
    assert_eq!(r, (true, true, true, true, 6));
}

#[test]
fn value_get_under_own_guard_panics_with_a_clear_message() {
    let text = bounded(|| {
        let v = Value::new(1u32).unwrap();
        let _g = v.lock().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.get()));
        panic_text(r.expect_err("get under the own guard must not return"))
    });
    assert!(text.contains("already holds"), "{text}");
}

#[test]
fn array_get_and_set_under_own_guard_are_would_deadlock() {
    let r = bounded(|| {
        let a = Array::from_slice(&[1i32, 2, 3]).unwrap();
        let g = a.lock().unwrap();
        let get = matches!(a.get(0), Err(ArrayError::WouldDeadlock));
        let set = matches!(a.set(0, 9), Err(ArrayError::WouldDeadlock));
        let lock = matches!(a.lock(), Err(LockError::WouldDeadlock));
        drop(g);
        (get, set, lock, a.get(2).unwrap())
    });
    assert_eq!(r, (true, true, true, 3));
}

#[test]
fn lock_acquired_twice_is_would_deadlock() {
    let r = bounded(|| {
        let l = Lock::new().unwrap();
        l.acquire().unwrap();
        let again = matches!(l.acquire(), Err(LockError::WouldDeadlock));
        let guard = matches!(l.lock(), Err(LockError::WouldDeadlock));
        let timed = matches!(
            l.acquire_timeout(Duration::from_secs(30)),
            Err(TryLockError::WouldDeadlock)
        );
        l.release().unwrap();
        (again, guard, timed, l.is_locked())
    });
    assert_eq!(r, (true, true, true, false));
}

#[test]
fn lock_api_lock_of_own_lock_panics() {
    let text = bounded(|| {
        let l = Lock::new().unwrap();
        let _g = l.lock().unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(l.as_mutex().lock());
        }));
        let timed = l.as_mutex().try_lock_for(Duration::from_secs(30)).is_none();
        (panic_text(r.expect_err("must not return")), timed)
    });
    assert!(text.0.contains("already holds"), "{}", text.0);
    assert!(text.1, "a timed lock_api lock of an own lock returns None");
}

#[test]
fn a_fork_child_waits_for_a_lock_its_parent_holds() {
    // The child's thread id differs from the parent's: a lock held by the
    // parent at the fork is someone else's lock in the child, not a
    // self-deadlock; the child waits until the parent releases it.
    let _s = serial();
    let v = Arc::new(Value::new(0u64).unwrap());
    let started = Arc::new(multiproc::Event::new().unwrap());
    let g = v.lock().unwrap();
    let mut p = {
        let (v, started) = (v.clone(), started.clone());
        spawn(move || {
            match v.lock_timeout(Duration::from_millis(1)) {
                Err(TryLockError::TimedOut) => {}
                other => panic!("expected TimedOut in the child, got {other:?}"),
            }
            started.set();
            *v.lock_timeout(PATIENCE).expect("the parent releases it") += 1;
        })
    };
    assert!(started.wait_timeout(PATIENCE));
    drop(g);
    join_ok(&mut p);
    assert_eq!(v.get(), 1);
}

#[test]
fn threads_sharing_a_block_copy_whole_words() {
    // `read_at`/`write_at` through one `Sync` handle from several threads,
    // beside atomics over the same bytes: each aligned word is copied with
    // one atomic access, so a reader sees a word wholly old or wholly new.
    // (The old `memcpy` copies were a data race here; this test documents
    // the behaviour, and the race itself is the kind Miri would flag.)
    let shm = Arc::new(multiproc::SharedMemory::create(None, 4096).unwrap());
    shm.unlink().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (shm, stop) = (shm.clone(), stop.clone());
        std::thread::spawn(move || {
            let (zeros, ones) = (vec![0u8; 2048], vec![0xFFu8; 2048]);
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                shm.write_at(0, if n.is_multiple_of(2) { &ones } else { &zeros })
                    .unwrap();
                shm.as_atomics::<u64>().unwrap()[400]
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                n += 1;
            }
        })
    };
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        shm.read_at(0, &mut buf).unwrap();
        for w in buf.chunks(8) {
            assert!(w.iter().all(|&b| b == w[0]), "a torn word: {w:?}");
        }
        let mut tail = [0u8; 8];
        shm.read_at(3200, &mut tail).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}

#[cfg(feature = "queue")]
#[test]
fn a_queue_record_length_scribbled_by_another_process_is_refused() {
    use multiproc::queue::{GetError, PutError, TryGetError};
    let _s = serial();
    let q = Arc::new(multiproc::Queue::<u64>::new().unwrap());
    q.put(7).unwrap();
    let mut p = {
        let q = q.clone();
        spawn(move || assert!(q.__scribble_head_len(u32::MAX - 7)))
    };
    join_ok(&mut p);
    // Before the check, the consumer made a 4 GiB buffer and copied that
    // much out of a 1 MiB ring.
    assert!(matches!(q.try_get(), Err(TryGetError::Corrupt)));
    assert!(matches!(q.put(8), Err(PutError::Corrupt(8))));
    assert!(q.is_closed());
    assert!(
        GetError::Corrupt.to_string().contains("corrupted"),
        "a clear message"
    );
}

#[test]
fn a_zero_timeout_on_an_own_lock_times_out_as_in_python() {
    // Python's `lock.acquire(False)` on a held lock returns False: a call
    // that never waits is not a deadlock.
    let l = Lock::new().unwrap();
    l.acquire().unwrap();
    assert!(matches!(
        l.acquire_timeout(Duration::ZERO),
        Err(TryLockError::TimedOut)
    ));
    assert!(matches!(
        l.lock_timeout(Duration::ZERO),
        Err(TryLockError::TimedOut)
    ));
    l.release().unwrap();
}
