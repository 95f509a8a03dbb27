//! The async forms (feature `tokio`) on a real tokio runtime, with real
//! child processes: every async method woken from another process,
//! cancellation (a dropped future loses nothing and holds nothing), and a
//! killed peer per primitive. Every wait is bounded by a timeout, so a lost
//! wake-up fails the test instead of hanging it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aio::{BOUND, bounded, reactor_threads, rt};
use common::{serial, spawn};
use multiproc::process::ExitStatus;
use multiproc::signal::Signal;
use multiproc::{BoundedSemaphore, Event, JoinableQueue, Lock, LockError, Queue, Semaphore, pipe};
use tokio::time::timeout;

fn rt_multi() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Lets the runtime run the other tasks until they are parked in their
/// waits (a registration is what the tests want to exercise; correctness
/// does not depend on it).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(30)).await;
}

// ---- Process::join_async ----

#[test]
fn join_async_reaps_a_child_without_a_thread() {
    let _s = serial();
    let go = Arc::new(Event::new().unwrap());
    let theirs = go.clone();
    let mut p = spawn(move || {
        theirs.wait_timeout(BOUND);
        7
    });
    let threads_before = reactor_threads();
    rt().block_on(async {
        let join = p.join_async();
        tokio::pin!(join);
        // Not ended yet: the join waits.
        assert!(timeout(Duration::from_millis(30), &mut join).await.is_err());
        // The pidfd wait started no thread (the only thread the async
        // forms ever start is the futex reactor).
        let threads = reactor_threads();
        assert!(threads <= threads_before, "{threads} > {threads_before}");
        go.set();
        assert_eq!(bounded(join).await.unwrap(), ExitStatus::Exited(7));
    });
}

#[test]
fn join_async_sees_a_killed_child_and_a_dropped_join_loses_nothing() {
    let _s = serial();
    let mut p = spawn(move || {
        std::thread::sleep(BOUND);
        0
    });
    rt().block_on(async {
        // Cancelled while the child runs: nothing reaped, nothing lost.
        assert!(
            timeout(Duration::from_millis(20), p.join_async())
                .await
                .is_err()
        );
        assert!(p.is_alive());
        p.kill().unwrap();
        assert_eq!(
            bounded(p.join_async()).await.unwrap(),
            ExitStatus::Signaled(Signal::SIGKILL)
        );
    });
    // The status stays for a later join.
    assert_eq!(p.join().unwrap(), ExitStatus::Signaled(Signal::SIGKILL));
}

#[test]
fn join_async_reads_a_large_result_as_it_comes() {
    let _s = serial();
    // A report larger than the pipe buffer: the child blocks in its write
    // until the parent reads, so a join that only watched the pidfd would
    // never end.
    // SAFETY: as in `common::spawn`.
    let mut p = unsafe {
        multiproc::Process::with_result(|| vec![7u8; 1 << 20])
            .with_daemon(true)
            .allow_threads()
    };
    p.start().unwrap();
    rt().block_on(async {
        assert!(bounded(p.join_async()).await.unwrap().success());
    });
    assert_eq!(p.result().unwrap().len(), 1 << 20);
}

// ---- Event::wait_async ----

#[test]
fn event_wait_async_is_woken_by_another_process() {
    let _s = serial();
    let ev = Arc::new(Event::new().unwrap());
    let go = Arc::new(Event::new().unwrap());
    let (e2, g2) = (ev.clone(), go.clone());
    let mut p = spawn(move || {
        g2.wait_timeout(BOUND);
        e2.set();
        0
    });
    rt().block_on(async {
        // Many waiters on one event: one reactor entry, all woken.
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let ev = ev.clone();
                tokio::spawn(async move { ev.wait_async().await })
            })
            .collect();
        // A cancelled waiter changes nothing.
        assert!(
            timeout(Duration::from_millis(10), ev.wait_async())
                .await
                .is_err()
        );
        settle().await;
        go.set();
        for w in waiters {
            bounded(w).await.unwrap();
        }
    });
    common::join_ok(&mut p);
}

// ---- Semaphore::acquire_async ----

#[test]
fn semaphore_acquire_async_takes_units_released_by_another_process() {
    let _s = serial();
    let sem = Arc::new(Semaphore::new(0).unwrap());
    let bsem = Arc::new(BoundedSemaphore::new(1).unwrap());
    let go = Arc::new(Event::new().unwrap());
    let (s2, b2, g2) = (sem.clone(), bsem.clone(), go.clone());
    assert!(bsem.try_acquire());
    let mut p = spawn(move || {
        g2.wait_timeout(BOUND);
        for _ in 0..3 {
            s2.release().unwrap();
        }
        b2.release().unwrap();
        0
    });
    rt().block_on(async {
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let sem = sem.clone();
                tokio::spawn(async move { sem.acquire_async().await })
            })
            .collect();
        settle().await;
        go.set();
        for t in tasks {
            bounded(t).await.unwrap();
        }
        bounded(bsem.acquire_async()).await;
    });
    assert_eq!(sem.value(), 0);
    common::join_ok(&mut p);
}

#[test]
fn a_dropped_acquire_takes_no_unit_and_passes_its_wake_up_on() {
    let _s = serial();
    let sem = Arc::new(Semaphore::new(0).unwrap());
    rt().block_on(async {
        for _ in 0..20 {
            assert!(
                timeout(Duration::from_millis(1), sem.acquire_async())
                    .await
                    .is_err()
            );
        }
    });
    // No unit was taken and no waiter is left counted.
    sem.release().unwrap();
    assert_eq!(sem.value(), 1);
    // A release that wakes one async waiter that is then dropped still
    // reaches a blocking sleeper in another process (passed on, or seen by
    // its own next look): the child gets its unit.
    let theirs = sem.clone();
    assert!(sem.try_acquire());
    let mut p = spawn(move || if theirs.acquire_timeout(BOUND) { 0 } else { 1 });
    rt().block_on(async {
        let waiter = sem.acquire_async();
        tokio::pin!(waiter);
        let _ = timeout(Duration::from_millis(30), &mut waiter).await;
        sem.release().unwrap();
        // Give the reactor the wake-up, then drop the waiter unpolled.
        tokio::time::sleep(Duration::from_millis(5)).await;
    });
    common::join_ok(&mut p);
}

// ---- Lock::lock_async ----

#[test]
fn lock_async_waits_for_another_process_and_holds_across_await() {
    let _s = serial();
    let lock = Arc::new(Lock::new().unwrap());
    let held = Arc::new(Event::new().unwrap());
    let go = Arc::new(Event::new().unwrap());
    let (l2, h2, g2) = (lock.clone(), held.clone(), go.clone());
    let mut p = spawn(move || {
        let g = l2.lock().unwrap();
        h2.set();
        g2.wait_timeout(BOUND);
        drop(g);
        // Then contend with the parent's async holder.
        let g = l2.lock_timeout(BOUND).unwrap();
        drop(g);
        0
    });
    assert!(held.wait_timeout(BOUND));
    rt_multi().block_on(async {
        let l = lock.clone();
        let task = tokio::spawn(async move {
            let g = bounded(l.lock_async()).await.unwrap();
            // Held across an await, on whatever worker thread resumes it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            tokio::task::yield_now().await;
            drop(g);
        });
        settle().await;
        assert!(!task.is_finished());
        go.set();
        bounded(task).await.unwrap();
    });
    common::join_ok(&mut p);
    assert!(!lock.is_locked());
}

#[test]
fn a_dropped_lock_async_holds_nothing() {
    let _s = serial();
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    rt().block_on(async {
        for _ in 0..10 {
            assert!(
                timeout(Duration::from_millis(2), lock.lock_async())
                    .await
                    .is_err()
            );
        }
    });
    lock.release().unwrap();
    assert!(!lock.is_locked());
    rt().block_on(async {
        let g = bounded(lock.lock_async()).await.unwrap();
        assert!(lock.is_locked());
        drop(g);
    });
    assert!(!lock.is_locked());
}

#[test]
fn lock_async_takes_over_from_a_killed_owner() {
    let _s = serial();
    let lock = Arc::new(Lock::new().unwrap());
    let held = Arc::new(Event::new().unwrap());
    let (l2, h2) = (lock.clone(), held.clone());
    let mut p = spawn(move || {
        let g = l2.lock().unwrap();
        h2.set();
        std::thread::sleep(BOUND);
        drop(g);
        0
    });
    assert!(held.wait_timeout(BOUND));
    rt().block_on(async {
        let waiting = lock.lock_async();
        tokio::pin!(waiting);
        assert!(
            timeout(Duration::from_millis(20), &mut waiting)
                .await
                .is_err()
        );
        p.kill().unwrap();
        match bounded(waiting).await {
            Err(LockError::OwnerDied(e)) => drop(e.into_guard()),
            other => panic!("expected OwnerDied, got {other:?}"),
        }
    });
    p.join().unwrap();
    assert!(!lock.is_locked());
}

// ---- Queue::get_async / put_async ----

#[test]
fn get_async_serves_many_waiters_fed_by_two_producer_processes() {
    let _s = serial();
    const PER: u32 = 2000;
    let queues: Arc<Vec<Queue<u32>>> = Arc::new((0..4).map(|_| Queue::new().unwrap()).collect());
    let go = Arc::new(Event::new().unwrap());
    let mut producers: Vec<_> = (0..2u32)
        .map(|k| {
            let (q, g) = (queues.clone(), go.clone());
            spawn(move || {
                g.wait_timeout(BOUND);
                for i in 0..PER {
                    let v = k * PER + i;
                    q[v as usize % 4].put(v).unwrap();
                }
                0
            })
        })
        .collect();
    let got = rt().block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // 200 waiters per queue, all on one runtime thread.
        let tasks: Vec<_> = (0..800)
            .map(|i| {
                let (q, tx) = (queues.clone(), tx.clone());
                tokio::spawn(async move {
                    loop {
                        match q[i % 4].get_async().await {
                            Ok(v) => tx.send(v).unwrap(),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        settle().await;
        go.set();
        let mut got = Vec::new();
        while got.len() < 2 * PER as usize {
            got.push(bounded(rx.recv()).await.unwrap());
        }
        for q in queues.iter() {
            q.close();
        }
        for t in tasks {
            bounded(t).await.unwrap();
        }
        got
    });
    let mut got = got;
    got.sort_unstable();
    assert_eq!(got, (0..2 * PER).collect::<Vec<_>>());
    for p in &mut producers {
        common::join_ok(p);
    }
}

#[test]
fn cancelled_gets_and_puts_lose_no_item() {
    let _s = serial();
    const N: u32 = 3000;
    let q: Arc<Queue<u32>> = Arc::new(Queue::bounded(8).unwrap());
    let back: Arc<Queue<u32>> = Arc::new(Queue::bounded(8).unwrap());
    let (q2, b2) = (q.clone(), back.clone());
    // The child echoes everything back, through a small bounded queue, so
    // the parent's puts wait for room too.
    let mut p = spawn(move || {
        for _ in 0..N {
            let Ok(v) = q2.get_timeout(BOUND) else {
                return 1;
            };
            if b2.put_timeout(v, BOUND).is_err() {
                return 2;
            }
        }
        0
    });
    let got = rt().block_on(async {
        let mut got = Vec::new();
        let mut next = 0u32;
        while got.len() < N as usize {
            if next < N {
                // A put raced against a very short timer: either it put the
                // item (Ok) or it was dropped having put nothing.
                if let Ok(r) = timeout(Duration::from_micros(50), q.put_async(next)).await {
                    r.unwrap();
                    next += 1;
                }
            }
            if let Ok(v) = timeout(Duration::from_micros(50), back.get_async()).await {
                got.push(v.unwrap());
            }
        }
        got
    });
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert!(q.empty() && back.empty());
    common::join_ok(&mut p);
}

#[test]
fn put_async_waits_for_room_made_by_another_process() {
    let _s = serial();
    let q: Arc<Queue<String>> = Arc::new(Queue::bounded(1).unwrap());
    q.put("first".into()).unwrap();
    let go = Arc::new(Event::new().unwrap());
    let (q2, g2) = (q.clone(), go.clone());
    let mut p = spawn(move || {
        g2.wait_timeout(BOUND);
        let a = q2.get_timeout(BOUND).unwrap();
        let b = q2.get_timeout(BOUND).unwrap();
        if a == "first" && b == "second" { 0 } else { 1 }
    });
    rt().block_on(async {
        // Dropped while full: nothing put.
        assert!(
            timeout(Duration::from_millis(10), q.put_async("dropped".into()))
                .await
                .is_err()
        );
        assert_eq!(q.qsize(), 1);
        let put = q.put_async("second".into());
        tokio::pin!(put);
        assert!(timeout(Duration::from_millis(20), &mut put).await.is_err());
        go.set();
        bounded(put).await.unwrap();
    });
    common::join_ok(&mut p);
}

#[test]
fn large_items_go_both_ways_through_the_async_forms() {
    let _s = serial();
    // A 64 KiB ring: 40 KiB items are chunked (over a quarter of it).
    let to: Arc<Queue<Vec<u8>>> = Arc::new(Queue::with_capacity(0, 64 << 10).unwrap());
    let from: Arc<Queue<Vec<u8>>> = Arc::new(Queue::with_capacity(0, 64 << 10).unwrap());
    let (t2, f2) = (to.clone(), from.clone());
    let mut p = spawn(move || {
        for _ in 0..10 {
            let Ok(v) = t2.get_timeout(BOUND) else {
                return 1;
            };
            if f2.put_timeout(v, BOUND).is_err() {
                return 2;
            }
        }
        0
    });
    rt().block_on(async {
        for i in 0..10u8 {
            let item = vec![i; 40 << 10];
            bounded(to.put_async(item.clone())).await.unwrap();
            assert_eq!(bounded(from.get_async()).await.unwrap(), item);
        }
        // Larger than the whole ring: refused, not hung.
        assert!(matches!(
            to.put_async(vec![0; 100 << 10]).await,
            Err(multiproc::TryPutError::Full(_))
        ));
    });
    common::join_ok(&mut p);
}

#[test]
fn get_async_goes_on_after_a_producer_killed_holding_the_lock() {
    let _s = serial();
    let q: Arc<Queue<u32>> = Arc::new(Queue::new().unwrap());
    let held = Arc::new(Event::new().unwrap());
    let (q2, h2) = (q.clone(), held.clone());
    let mut killed = spawn(move || {
        q2.__hold_lock_mid_put(&99);
        h2.set();
        std::thread::sleep(BOUND);
        0
    });
    assert!(held.wait_timeout(BOUND));
    let q3 = q.clone();
    rt().block_on(async {
        let get = q.get_async();
        tokio::pin!(get);
        assert!(timeout(Duration::from_millis(20), &mut get).await.is_err());
        killed.kill().unwrap();
        killed.join().unwrap();
        // Another producer puts after the robust takeover of the side lock.
        let mut p = spawn(move || {
            q3.put(5).unwrap();
            0
        });
        assert_eq!(bounded(get).await.unwrap(), 5);
        common::join_ok(&mut p);
    });
}

#[test]
fn get_async_of_a_closed_queue_fails_at_once() {
    let _s = serial();
    let q: Queue<u8> = Queue::new().unwrap();
    q.put(1).unwrap();
    q.close();
    rt().block_on(async {
        assert_eq!(bounded(q.get_async()).await.unwrap(), 1);
        assert!(matches!(
            bounded(q.get_async()).await,
            Err(multiproc::GetError::Closed)
        ));
    });
}

// ---- JoinableQueue::join_async ----

#[test]
fn joinable_join_async_waits_for_task_done_in_another_process() {
    let _s = serial();
    let q: Arc<JoinableQueue<u32>> = Arc::new(JoinableQueue::new().unwrap());
    for i in 0..5 {
        q.put(i).unwrap();
    }
    let q2 = q.clone();
    let mut p = spawn(move || {
        for _ in 0..5 {
            q2.get_timeout(BOUND).unwrap();
            q2.task_done().unwrap();
        }
        0
    });
    rt().block_on(async {
        bounded(q.join_async()).await;
    });
    assert_eq!(q.unfinished_tasks(), 0);
    common::join_ok(&mut p);
}

#[test]
fn joinable_join_async_ends_when_a_killed_worker_is_replaced() {
    let _s = serial();
    let q: Arc<JoinableQueue<u32>> = Arc::new(JoinableQueue::new().unwrap());
    q.put(1).unwrap();
    let took = Arc::new(Event::new().unwrap());
    let (q2, t2) = (q.clone(), took.clone());
    // A worker that takes the task and is killed before task_done.
    let mut killed = spawn(move || {
        q2.get_timeout(BOUND).unwrap();
        t2.set();
        std::thread::sleep(BOUND);
        0
    });
    assert!(took.wait_timeout(BOUND));
    rt().block_on(async {
        let join = q.join_async();
        tokio::pin!(join);
        assert!(timeout(Duration::from_millis(20), &mut join).await.is_err());
        killed.kill().unwrap();
        killed.join().unwrap();
        // Python's semantics: the count stays until someone marks it done.
        assert_eq!(q.unfinished_tasks(), 1);
        q.task_done().unwrap();
        bounded(join).await;
    });
}

// ---- Connection ----

#[test]
fn connection_recv_and_send_async_talk_to_a_child() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    let mut p = spawn(move || {
        for _ in 0..200 {
            let Ok(m) = b.recv_bytes() else {
                return 1;
            };
            if b.send_bytes(&m).is_err() {
                return 2;
            }
        }
        0
    });
    rt().block_on(async {
        let a = a.into_async().unwrap();
        for i in 0..200u32 {
            let msg = i.to_le_bytes().repeat(i as usize % 50 + 1);
            bounded(a.send_bytes(&msg)).await.unwrap();
            assert_eq!(bounded(a.recv_bytes()).await.unwrap(), msg);
        }
        // The end of stream, once the child is gone.
        assert!(matches!(
            bounded(a.recv_bytes()).await,
            Err(multiproc::RecvError::Eof)
        ));
    });
    common::join_ok(&mut p);
}

#[test]
fn connection_typed_async_calls_and_poll_async() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    let go = Arc::new(Event::new().unwrap());
    let g2 = go.clone();
    let mut p = spawn(move || {
        g2.wait_timeout(BOUND);
        b.send(&("hello".to_string(), 42u64)).unwrap();
        let back: Vec<u16> = b.recv().unwrap();
        if back == [1, 2, 3] { 0 } else { 1 }
    });
    rt().block_on(async {
        // A dropped receive reads nothing.
        assert!(
            timeout(Duration::from_millis(10), a.recv_bytes_async())
                .await
                .is_err()
        );
        let poll = a.poll_async();
        tokio::pin!(poll);
        assert!(timeout(Duration::from_millis(10), &mut poll).await.is_err());
        go.set();
        bounded(poll).await.unwrap();
        let got: (String, u64) = bounded(a.recv_async()).await.unwrap();
        assert_eq!(got, ("hello".to_string(), 42));
        bounded(a.send_async(&vec![1u16, 2, 3])).await.unwrap();
    });
    common::join_ok(&mut p);
}

#[test]
fn send_async_waits_for_room_and_fails_once_the_reader_is_killed() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    let started = Arc::new(Event::new().unwrap());
    let s2 = started.clone();
    // A reader that reads one message, then stops reading and is killed.
    let mut reader = spawn(move || {
        let _ = b.recv_bytes();
        s2.set();
        std::thread::sleep(BOUND);
        0
    });
    // (A pipe's ring holds 256 KiB per direction.)
    let big = vec![1u8; 80 << 10];
    rt().block_on(async {
        bounded(a.send_bytes_async(b"one")).await.unwrap();
        assert!(started.wait_timeout(BOUND));
        // Fill the ring: the fourth 80 KiB message finds no room.
        for _ in 0..3 {
            bounded(a.send_bytes_async(&big)).await.unwrap();
        }
        let send = a.send_bytes_async(&big);
        tokio::pin!(send);
        assert!(timeout(Duration::from_millis(20), &mut send).await.is_err());
        reader.kill().unwrap();
        reader.join().unwrap();
        let t = Instant::now();
        let r = bounded(send).await;
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPIPE));
        assert!(t.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn recv_async_sees_a_killed_writer_as_end_of_stream() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    let mut p = spawn(move || {
        b.send_bytes(b"last words").unwrap();
        std::thread::sleep(BOUND);
        0
    });
    // Only the child has the other end now.
    rt().block_on(async {
        assert_eq!(bounded(a.recv_bytes_async()).await.unwrap(), b"last words");
        let recv = a.recv_bytes_async();
        tokio::pin!(recv);
        assert!(timeout(Duration::from_millis(20), &mut recv).await.is_err());
        p.kill().unwrap();
        assert!(matches!(
            bounded(recv).await,
            Err(multiproc::RecvError::Eof)
        ));
    });
    p.join().unwrap();
}

#[test]
fn an_async_call_outside_a_runtime_is_an_error_not_a_panic() {
    let _s = serial();
    let (a, _b) = pipe(true).unwrap();
    // A call that waits on the descriptor: the receive's own `Os` error.
    let r = poll_once(a.recv_bytes_async());
    assert!(
        matches!(
            r,
            Err(multiproc::RecvError::Os {
                call: "register",
                ..
            })
        ),
        "{r:?}"
    );
    // `into_async` names the missing runtime, and `?` still makes it an
    // `Error` (the `Os` it was).
    let e = a.into_async().unwrap_err();
    assert!(
        matches!(e, multiproc::aio::IntoAsyncError::NoRuntime),
        "{e:?}"
    );
    let coarse: multiproc::Error = e.into();
    assert!(
        matches!(
            coarse,
            multiproc::Error::Os {
                call: "register",
                ..
            }
        ),
        "{coarse:?}"
    );
    assert!(
        coarse.to_string().contains("needs a tokio runtime"),
        "{coarse}"
    );
}

/// Polls `f` on this thread, outside any tokio runtime (the call under
/// test fails before it waits, so one poll decides).
fn poll_once<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the call waited outside a runtime"),
    }
}

#[test]
fn async_connection_calls_fail_with_the_errors_of_their_blocking_twins() {
    let _s = serial();
    let (r, w) = pipe(false).unwrap();
    // Sent as a u8, received as a String: a decode failure either way.
    w.send(&7u8).unwrap();
    w.send(&7u8).unwrap();
    let sync_decode = r.recv::<String>().unwrap_err();
    let sync_recv_on_writer = w.recv_bytes().unwrap_err();
    let sync_send_on_reader = r.send_bytes(b"x").unwrap_err();
    rt().block_on(async {
        let async_decode = bounded(r.recv_async::<String>()).await.unwrap_err();
        assert!(
            matches!(
                (&sync_decode, &async_decode),
                (multiproc::RecvError::Decode(a), multiproc::RecvError::Decode(b)) if a == b
            ),
            "{sync_decode:?} / {async_decode:?}"
        );
        let e = bounded(w.recv_bytes_async()).await.unwrap_err();
        assert!(
            matches!(
                (&sync_recv_on_writer, &e),
                (multiproc::RecvError::BadConnection(a), multiproc::RecvError::BadConnection(b)) if a == b
            ),
            "{sync_recv_on_writer:?} / {e:?}"
        );
        let e = bounded(w.poll_async()).await.unwrap_err();
        assert!(matches!(e, multiproc::RecvError::BadConnection(_)), "{e:?}");
        let e = bounded(r.send_bytes_async(b"x")).await.unwrap_err();
        assert!(
            matches!(
                (&sync_send_on_reader, &e),
                (multiproc::SendError::BadConnection(a), multiproc::SendError::BadConnection(b)) if a == b
            ),
            "{sync_send_on_reader:?} / {e:?}"
        );
        // The registered form: the same.
        let w = w.into_async().unwrap();
        let e = bounded(w.recv_bytes()).await.unwrap_err();
        assert!(matches!(e, multiproc::RecvError::BadConnection(_)), "{e:?}");
        let r = r.into_async().unwrap();
        let e = bounded(r.send(&1u8)).await.unwrap_err();
        assert!(matches!(e, multiproc::SendError::BadConnection(_)), "{e:?}");
    });
}

// ---- Barrier::wait_async ----

#[test]
fn barrier_wait_async_meets_parties_in_other_processes() {
    let _s = serial();
    let b = Arc::new(multiproc::Barrier::new(3).unwrap());
    let mut kids: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            spawn(move || match b.wait_timeout(BOUND) {
                Ok(_) => 0,
                Err(_) => 1,
            })
        })
        .collect();
    let mine = rt().block_on(async { bounded(b.wait_async()).await.unwrap() });
    for k in &mut kids {
        common::join_ok(k);
    }
    assert!(mine < 3);
    assert!(!b.is_broken());
}

#[test]
fn a_dropped_barrier_wait_breaks_the_round_it_joined() {
    let _s = serial();
    let b = multiproc::Barrier::new(2).unwrap();
    rt().block_on(async {
        assert!(
            timeout(Duration::from_millis(10), b.wait_async())
                .await
                .is_err()
        );
    });
    // The party left: the round is broken, not waiting for a ghost.
    assert!(b.is_broken());
    b.reset();
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn barrier_wait_async_breaks_when_the_party_running_the_action_is_killed() {
    let _s = serial();
    let in_action = Arc::new(Event::new().unwrap());
    let go = Arc::new(Event::new().unwrap());
    let ia = in_action.clone();
    let b = Arc::new(
        multiproc::Barrier::with_action(2, move || {
            ia.set();
            std::thread::sleep(BOUND);
        })
        .unwrap(),
    );
    let (b2, g2) = (b.clone(), go.clone());
    let mut kid = spawn(move || {
        g2.wait_timeout(BOUND);
        let _ = b2.wait_timeout(BOUND);
        0
    });
    rt().block_on(async {
        let wait = b.wait_async();
        tokio::pin!(wait);
        // Arrived first (the first poll arrives), so the child trips.
        assert!(timeout(Duration::from_millis(10), &mut wait).await.is_err());
        go.set();
        bounded(in_action.wait_async()).await;
        kid.kill().unwrap();
        assert!(matches!(
            bounded(wait).await,
            Err(multiproc::BarrierError::BrokenBarrier)
        ));
    });
    kid.join().unwrap();
}

// ---- Fork ----

#[test]
fn a_fork_child_awaits_with_a_reactor_of_its_own() {
    let _s = serial();
    let q: Arc<Queue<u32>> = Arc::new(Queue::new().unwrap());
    let back: Arc<Queue<u32>> = Arc::new(Queue::new().unwrap());
    // The parent's reactor runs (and may hold its list's lock) when the
    // child is forked: the child must not use it.
    rt().block_on(async {
        assert!(
            timeout(Duration::from_millis(5), q.get_async())
                .await
                .is_err()
        );
    });
    let (q2, b2) = (q.clone(), back.clone());
    let mut p = spawn(move || {
        let rt = rt();
        rt.block_on(async {
            for _ in 0..3 {
                let v = bounded(q2.get_async()).await.unwrap();
                bounded(b2.put_async(v + 1)).await.unwrap();
            }
        });
        0
    });
    rt().block_on(async {
        for i in 0..3 {
            bounded(q.put_async(i)).await.unwrap();
            assert_eq!(bounded(back.get_async()).await.unwrap(), i + 1);
        }
    });
    common::join_ok(&mut p);
}

// ---- Leaks ----

#[test]
fn a_leaked_waiter_on_freed_memory_harms_no_other_wait() {
    let _s = serial();
    rt().block_on(async {
        for _ in 0..20 {
            let q: Queue<u32> = Queue::new().unwrap();
            let mut f = Box::pin(q.get_async());
            assert!(timeout(Duration::from_millis(1), &mut f).await.is_err());
            // Registered with the reactor, and never dropped: its word's
            // memory is freed (and reused) below while still registered.
            std::mem::forget(f);
            drop(q);
        }
        // Events made now may reuse those words' memory: they still work.
        let ev = Arc::new(Event::new().unwrap());
        let e2 = ev.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            e2.set();
        });
        bounded(ev.wait_async()).await;
        t.join().unwrap();
        let q: Queue<u32> = Queue::new().unwrap();
        q.put(3).unwrap();
        assert_eq!(bounded(q.get_async()).await.unwrap(), 3);
    });
}
