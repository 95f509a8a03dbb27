//! The per-call errors convert into `multiproc::Error`, so `?` works in a
//! function returning `multiproc::Result` (before, `*v.lock()? += 1` and
//! `q.put(x)?` did not compile there), and the conversion says what went
//! wrong.

use std::time::Duration;

use multiproc::{Error, Lock, Value};

fn bump(v: &Value<u64>) -> multiproc::Result<u64> {
    *v.lock()? += 1;
    Ok(v.get())
}

fn bump_now(v: &Value<u64>) -> multiproc::Result<()> {
    *v.try_lock()? += 1;
    Ok(())
}

fn bump_within(v: &Value<u64>, t: Duration) -> multiproc::Result<()> {
    *v.lock_timeout(t)? += 1;
    Ok(())
}

#[test]
fn lock_errors_convert_with_question_mark() {
    let v = Value::new(1u64).unwrap();
    assert_eq!(bump(&v).unwrap(), 2);
    bump_now(&v).unwrap();
    bump_within(&v, Duration::from_millis(10)).unwrap();
    assert_eq!(v.get(), 4);

    let g = v.lock().unwrap();
    // Held by this thread: the non-waiting call reports it held, the
    // waiting ones that it would never end.
    assert!(matches!(bump_now(&v), Err(Error::WouldBlock)));
    assert!(matches!(bump(&v), Err(Error::WouldDeadlock)));
    assert!(matches!(
        bump_within(&v, Duration::from_millis(10)),
        Err(Error::WouldDeadlock)
    ));
    drop(g);

    // Held by another thread for the whole timeout.
    let l = Lock::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let l = &l;
    std::thread::scope(|s| {
        s.spawn(move || {
            let _g = l.lock().unwrap();
            tx.send(()).unwrap();
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let r: multiproc::Result<()> = (|| {
            let _g = l.lock_timeout(Duration::from_millis(20))?;
            Ok(())
        })();
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        done_tx.send(()).unwrap();
    });
}

#[test]
fn an_owner_death_becomes_an_error_and_releases_the_lock() {
    let v = Value::new(1u64).unwrap();
    // A thread that ends holding the lock is a dead owner.
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut g = v.lock().unwrap();
            *g = 100;
            std::mem::forget(g);
        });
    });
    let e = bump(&v).unwrap_err();
    assert!(matches!(e, Error::OwnerDied), "{e:?}");
    assert!(e.to_string().contains("died"), "{e}");
    // The conversion dropped the guard: the lock is free (and healthy).
    let g = v.try_lock().unwrap();
    assert_eq!(*g, 100);
}

#[cfg(feature = "queue")]
mod queue {
    use multiproc::queue::{JoinableQueue, Queue};
    use multiproc::{Error, GetError, TryPutError};

    fn relay(from: &Queue<u32>, to: &Queue<u32>) -> multiproc::Result<()> {
        to.put(from.get()? + 1)?;
        Ok(())
    }

    #[test]
    fn queue_errors_convert_with_question_mark() {
        let a = Queue::new().unwrap();
        let b = Queue::bounded(1).unwrap();
        a.put(1).unwrap();
        relay(&a, &b).unwrap();
        assert_eq!(b.try_get().unwrap(), 2);

        let full = |q: &Queue<u32>| -> multiproc::Result<()> { Ok(q.try_put(9)?) };
        let empty = |q: &Queue<u32>| -> multiproc::Result<u32> { Ok(q.try_get()?) };
        let late = |q: &Queue<u32>| -> multiproc::Result<u32> {
            Ok(q.get_timeout(std::time::Duration::from_millis(5))?)
        };
        assert!(matches!(empty(&b), Err(Error::Empty)));
        assert!(matches!(late(&b), Err(Error::Timeout)));
        full(&b).unwrap();
        assert!(matches!(full(&b), Err(Error::Full)));
        // The per-call error still hands the item back.
        assert!(matches!(b.try_put(5), Err(TryPutError::Full(5))));

        b.close();
        a.put(3).unwrap();
        let e = relay(&a, &b).unwrap_err();
        assert!(matches!(e, Error::Closed), "{e:?}");
        assert_eq!(e.to_string(), "the queue is closed");
        assert!(matches!(Error::from(GetError::Closed), Error::Closed));

        let j = JoinableQueue::<u8>::new().unwrap();
        let done = || -> multiproc::Result<()> { Ok(j.task_done()?) };
        assert!(matches!(done(), Err(Error::TaskDone)));
    }
}

#[test]
fn signals_are_the_crates_own_type() {
    use multiproc::signal::Signal;
    use multiproc::{ExitStatus, Process};
    let st = ExitStatus::Signaled(Signal::SIGKILL);
    assert_eq!(st.code(), -9);
    assert_eq!(st.to_string(), "killed by SIGKILL");
    // A real-time signal has a number but no name nix knows: it is a
    // signal like any other (here only a process never started refuses it;
    // tests/process.rs sends real-time signals to children).
    let rt = Signal::from_raw(40).unwrap();
    let mut p = Process::new(|| ());
    let e = p.signal(rt).unwrap_err();
    assert!(matches!(e, multiproc::SignalError::NotStarted), "{e:?}");
}

#[test]
fn creating_a_shared_object_fails_only_as_creation_can() {
    use multiproc::{Array, Barrier, BoundedSemaphore, CreateError, RawArray};
    // The type says it: a value's creation cannot fail with a pool's or a
    // connection's error.
    let r: Result<Value<u8>, CreateError> = Value::new(1);
    r.unwrap();
    let e = Array::<u64>::zeroed(usize::MAX / 4).unwrap_err();
    assert!(matches!(e, CreateError::InvalidSize { .. }), "{e:?}");
    assert!(matches!(
        RawArray::<u64>::zeroed(usize::MAX / 2),
        Err(CreateError::InvalidSize { .. })
    ));
    assert!(matches!(
        Barrier::new(0),
        Err(CreateError::InvalidArgument(_))
    ));
    // And `?` takes it into the crate's error.
    let make = || -> multiproc::Result<BoundedSemaphore> { Ok(BoundedSemaphore::new(1)?) };
    make().unwrap();
    let too_big = || -> multiproc::Result<Array<u64>> { Ok(Array::zeroed(usize::MAX / 4)?) };
    let e = too_big().unwrap_err();
    assert!(matches!(e, Error::InvalidSize { .. }), "{e:?}");
    assert!(e.to_string().contains("array too large"), "{e}");
}

#[test]
fn connection_calls_fail_with_their_own_errors() {
    use multiproc::{RecvError, SendError};
    let (r, w) = multiproc::pipe(false).unwrap();
    // The types say which side can fail how.
    let sent: Result<(), SendError> = w.send_bytes(b"hi");
    sent.unwrap();
    assert!(matches!(
        r.send_bytes(b"x"),
        Err(SendError::BadConnection(_))
    ));
    drop(w);
    let echo = |c: &multiproc::Connection| -> multiproc::Result<Vec<u8>> { Ok(c.recv_bytes()?) };
    assert_eq!(echo(&r).unwrap(), b"hi");
    // End of stream keeps its name through `?`.
    assert!(matches!(r.recv_bytes(), Err(RecvError::Eof)));
    assert!(matches!(echo(&r), Err(Error::Eof)));
}

#[test]
fn releases_fail_only_as_they_can() {
    use multiproc::{NotOwner, RLock, ReleasedTooManyTimes, Semaphore};
    let l = Lock::new().unwrap();
    assert_eq!(l.release(), Err(ReleasedTooManyTimes));
    let r = RLock::new().unwrap();
    assert_eq!(r.release(), Err(NotOwner));
    let s = Semaphore::new(0).unwrap();
    s.release_n(u32::MAX - 1).unwrap();
    assert_eq!(s.release(), Err(ReleasedTooManyTimes));
    let up = || -> multiproc::Result<()> { Ok(r.release()?) };
    assert!(matches!(up(), Err(Error::NotOwner)));
}

#[test]
fn start_and_join_fail_only_as_they_can() {
    use multiproc::{JoinError, Process};
    let mut p = Process::new(|| ());
    let joined: Result<_, JoinError> = p.join();
    assert!(matches!(joined, Err(JoinError::NotStarted)));
    assert!(matches!(
        p.join_timeout(Duration::ZERO),
        Err(JoinError::NotStarted)
    ));
    let run = |p: &mut Process| -> multiproc::Result<()> {
        p.join()?;
        Ok(())
    };
    assert!(matches!(run(&mut p), Err(Error::NotStarted)));
}

#[test]
fn shared_memory_calls_fail_with_their_own_errors() {
    use multiproc::{SharedMemory, SharedMemoryError};
    let name = format!("errors_test_{}", std::process::id());
    let shm = SharedMemory::create(Some(&name), 8).unwrap();
    assert!(matches!(
        SharedMemory::create(Some(&name), 8),
        Err(SharedMemoryError::AlreadyExists { .. })
    ));
    shm.unlink().unwrap();
    let e = shm.unlink().unwrap_err();
    assert!(matches!(e, SharedMemoryError::NotFound { .. }), "{e:?}");
    let reopen = || -> multiproc::Result<SharedMemory> { Ok(SharedMemory::open(&name)?) };
    assert!(matches!(reopen(), Err(Error::NotFound { .. })));
}
