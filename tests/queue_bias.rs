//! The queue's biased side locks (src/ring/bias.rs): a thread that keeps
//! taking a side's lock alone keeps it between calls; another producer
//! (thread or forked process) takes it over, also from a producer killed
//! with it, and a consumer asleep while the biased producer puts is woken.
#![cfg(feature = "queue")]
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::time::{Duration, Instant};

use common::{PATIENCE, hang, join_ok, serial, spawn_in};
use multiproc::Event;
use multiproc::queue::Queue;

/// Enough puts in a row for the lock to be kept biased.
const STREAK: u64 = 200;

/// Whether the kernel offers the barrier the bias needs (without it the
/// locks are never biased, and these tests check only that all works).
fn membarrier() -> bool {
    // MEMBARRIER_CMD_QUERY; GLOBAL_EXPEDITED (2) and its registration (4).
    // SAFETY: the query takes no pointers and touches no memory.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, 0, 0, 0) };
    r >= 0 && r & 6 == 6
}

/// Puts `0..STREAK` and checks that the producers' lock is now biased to
/// this thread (where the kernel allows).
fn bias_puts(q: &Queue<u64>) {
    for i in 0..STREAK {
        q.put(i).unwrap();
    }
    assert!(
        !membarrier() || q.__biased_to_me(false),
        "a lone producer's lock is kept biased"
    );
}

fn drain(q: &Queue<u64>, want: &[u64]) {
    for &w in want {
        assert_eq!(q.get_timeout(PATIENCE), Ok(w));
    }
    assert!(q.empty());
}

#[test]
fn a_second_producer_thread_takes_over_a_biased_lock() {
    let q = Queue::<u64>::new().unwrap();
    bias_puts(&q);
    std::thread::scope(|s| {
        s.spawn(|| {
            q.put_timeout(1000, PATIENCE).unwrap();
            assert!(!q.__biased_to_me(false));
        })
        .join()
        .unwrap();
    });
    // The first producer goes on, the ordinary way now.
    assert!(!q.__biased_to_me(false));
    q.put(1001).unwrap();
    let mut want: Vec<u64> = (0..STREAK).collect();
    want.extend([1000, 1001]);
    drain(&q, &want);
}

#[test]
fn a_forked_producer_takes_over_its_parents_biased_lock() {
    let _s = serial();
    let q = Queue::<u64>::new().unwrap();
    bias_puts(&q);
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            // Another thread id: the parent's bias is not the child's.
            assert!(!q.__biased_to_me(false));
            q.put_timeout(1000, PATIENCE).unwrap();
        });
        join_ok(&mut p);
    });
    q.put(1001).unwrap();
    let mut want: Vec<u64> = (0..STREAK).collect();
    want.extend([1000, 1001]);
    drain(&q, &want);
}

/// Runs `work` in a child, then SIGKILLs the child where `work` left it
/// (holding whatever it holds) and reaps it.
fn killed_after(work: impl FnOnce() + Send) {
    let ready = Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            work();
            ready.set();
            hang();
        });
        assert!(ready.wait_timeout(PATIENCE), "the child did not get ready");
        p.kill().unwrap();
        p.join().unwrap();
    });
}

/// A producer killed with the bias held, inside a put (its record written,
/// not published) or between puts: the next producer takes the lock over
/// within its timeout, and the killed one loses only the unpublished item.
#[test]
fn a_producer_killed_holding_the_bias_is_taken_over() {
    let _s = serial();
    for mid_put in [true, false] {
        let q = Queue::<u64>::new().unwrap();
        killed_after(|| {
            bias_puts(&q);
            if mid_put {
                assert!(q.__hold_lock_mid_put(&666));
            }
        });
        let t = Instant::now();
        q.put_timeout(1000, PATIENCE).unwrap();
        assert!(t.elapsed() < PATIENCE);
        let mut want: Vec<u64> = (0..STREAK).collect();
        want.push(1000);
        drain(&q, &want);
    }
}

/// The consumers' side: a consumer that took `STREAK` items alone (its
/// gets then go the fast way, on the bias) is killed holding the bias,
/// inside a get (the lock taken, nothing taken yet) or between gets. The
/// next consumer takes the lock over within its timeout and gets every
/// item the killed one had not taken, in order: nothing lost, nothing
/// twice.
#[test]
fn a_consumer_killed_holding_the_bias_is_taken_over() {
    let _s = serial();
    for mid_get in [true, false] {
        let q = Queue::<u64>::new().unwrap();
        for i in 0..2 * STREAK {
            q.put(i).unwrap();
        }
        killed_after(|| {
            for i in 0..STREAK {
                assert_eq!(q.get_timeout(PATIENCE), Ok(i));
            }
            assert!(
                !membarrier() || q.__biased_to_me(true),
                "a lone consumer's lock is kept biased"
            );
            if mid_get {
                q.__hold_lock_mid_get();
            }
        });
        let t = Instant::now();
        let want: Vec<u64> = (STREAK..2 * STREAK).collect();
        drain(&q, &want);
        assert!(t.elapsed() < PATIENCE);
    }
}

/// A consumer asleep on an empty queue while the producer puts on its
/// biased lock (plain stores only): the consumer's arm in the biased word
/// (then a barrier) makes the producer ring. A lost wake-up would cost the
/// consumer a whole sleep slice (50 ms) each time.
#[test]
fn a_consumer_asleep_while_a_biased_producer_puts_is_woken() {
    let _s = serial();
    const ROUNDS: usize = 5;
    const NAP: Duration = Duration::from_millis(100);
    let q = Queue::<u64>::new().unwrap();
    bias_puts(&q);
    let want: Vec<u64> = (0..STREAK).collect();
    drain(&q, &want);
    let asleep: Vec<Event> = (0..ROUNDS).map(|_| Event::new().unwrap()).collect();
    let late = multiproc::Value::new(0u32).unwrap();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            for (i, e) in asleep.iter().enumerate() {
                let t = Instant::now();
                e.set();
                assert_eq!(q.get_timeout(PATIENCE), Ok(i as u64));
                // Woken at once: the producer's nap and a little. A lost
                // wake-up is found at the end of a 50 ms slice.
                if t.elapsed() >= NAP + Duration::from_millis(40) {
                    *late.lock().unwrap() += 1;
                }
            }
        });
        for (i, e) in asleep.iter().enumerate() {
            assert!(e.wait_timeout(PATIENCE));
            std::thread::sleep(NAP);
            assert!(!membarrier() || q.__biased_to_me(false));
            q.put(i as u64).unwrap();
        }
        join_ok(&mut c);
    });
    let late = *late.lock().unwrap();
    assert!(late <= 2, "{late} of {ROUNDS} wake-ups came a slice late");
}
