//! The unbounded queue between real processes (issue 14): a put never
//! waits for room, so a child can put more than the ring holds and end
//! before anyone gets; order is kept; a killed consumer loses at most the
//! item it was taking; a hostile process scribbling on the overflow's
//! counters makes the queue fail cleanly.
#![cfg(feature = "queue")]
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::time::Duration;

use common::{PATIENCE, hang, serial, spawn, spawn_in};
use multiproc::process::Process;
use multiproc::queue::{GetError, PutError, Queue};

/// Joins `p` within [`PATIENCE`] (a put that waits for room would hang
/// the child for ever) and asserts it exited with code 0.
#[track_caller]
fn join_in_time(p: &mut Process<'_>) {
    let st = p.join_timeout(PATIENCE).expect("join");
    let Some(st) = st else {
        let _ = p.kill();
        let _ = p.join();
        panic!("the child did not end: a put waited for room");
    };
    assert!(st.success(), "child ended with {st:?}");
}

#[test]
fn a_child_puts_200k_items_and_ends_before_anyone_gets() {
    // Before the spill, put 65,536 found the 1 MiB ring full and waited
    // for ever: the join below timed out.
    let _s = serial();
    const N: u64 = 200_000;
    let q = Queue::<u64>::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            for i in 0..N {
                q.put(i).unwrap();
            }
            assert!(q.__spilling(), "the ring alone cannot hold them");
        });
        join_in_time(&mut p);
    });
    assert_eq!(q.qsize(), N as usize);
    for i in 0..N {
        assert_eq!(q.try_get(), Ok(i));
    }
    assert!(q.empty());
    // The queue goes on as usual.
    q.put(7).unwrap();
    assert_eq!(q.try_get(), Ok(7));
}

#[test]
fn a_child_puts_megabyte_items_and_ends_before_anyone_gets() {
    // Before, an item larger than a quarter of the ring went in chunks
    // while a consumer took them: the child's put waited for the parent.
    let _s = serial();
    let item = |i: u8| -> Vec<u8> { (0..1 << 20).map(|j: u32| (j as u8) ^ i).collect() };
    let q = Queue::<Vec<u8>>::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            for i in 0..6 {
                q.put(item(i)).unwrap();
                q.put(vec![i]).unwrap();
            }
        });
        join_in_time(&mut p);
    });
    for i in 0..6 {
        assert!(q.try_get().unwrap() == item(i), "large item {i}");
        assert_eq!(q.try_get().unwrap(), vec![i]);
    }
    assert!(q.empty());
}

#[test]
fn items_of_each_producer_arrive_in_order() {
    let _s = serial();
    const N: u32 = 60_000;
    let q = Queue::<(u8, u32)>::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut ps_ = Vec::new();
        for who in 0..3u8 {
            let q = &q;
            ps_.push(spawn_in(ps, move || {
                for i in 0..N {
                    q.put((who, i)).unwrap();
                }
            }));
        }
        // A consumer takes part of them meanwhile, so the producers go to
        // the spill and back.
        let mut next = [0u32; 3];
        let mut check = |(who, i): (u8, u32)| {
            assert_eq!(next[who as usize], i, "producer {who}");
            next[who as usize] += 1;
        };
        for _ in 0..N {
            check(q.get_timeout(PATIENCE).unwrap());
        }
        for p in &mut ps_ {
            join_in_time(p);
        }
        while let Ok(x) = q.try_get() {
            check(x);
        }
        assert_eq!(next, [N; 3]);
    });
}

#[test]
fn a_consumer_killed_in_the_spill_loses_at_most_its_item() {
    let _s = serial();
    const N: u64 = 150_000;
    let q = Queue::<u64>::new().unwrap();
    let last = multiproc::RawValue::new(u64::MAX).unwrap();
    let took = multiproc::Event::new().unwrap();
    for i in 0..N {
        q.put(i).unwrap();
    }
    assert!(q.__spilling());
    multiproc::process::scope(|ps| {
        // Killed holding the consumers' lock: nothing is lost.
        let mut c = spawn_in(ps, || {
            q.__hold_lock_mid_get();
            took.set();
            hang();
        });
        assert!(took.wait_timeout(PATIENCE));
        c.kill().unwrap();
        c.join().unwrap();
        took.clear();
        // Killed at any point while taking items in the spill.
        let mut c = spawn_in(ps, || {
            loop {
                let v = q.get().unwrap();
                last.store(v);
                if v > 100_000 {
                    took.set();
                }
            }
        });
        assert!(took.wait_timeout(PATIENCE));
        c.kill().unwrap();
        c.join().unwrap();
    });
    let seen = last.load();
    let first = q.get_timeout(PATIENCE).unwrap();
    assert!(
        first == seen + 1 || first == seen + 2,
        "after {seen}, {first}: more than the one item in flight lost"
    );
    for i in first + 1..N {
        assert_eq!(q.try_get(), Ok(i));
    }
    assert!(q.empty());
}

#[test]
fn a_scribbled_spill_makes_the_queue_fail_cleanly() {
    let _s = serial();
    for (which, v) in [
        (0u8, u64::MAX),
        // A head 1 GiB past the tail.
        (1, 1 << 28),
        (2, 0xffff_fff0),
        (2, 1 << 20),
    ] {
        let q = Queue::<u64>::new().unwrap();
        multiproc::process::scope(|ps| {
            let mut p = spawn_in(ps, || {
                for i in 0..100_000 {
                    q.put(i).unwrap();
                }
                // Another process writes into the spill's header.
                assert!(q.__scribble_spill(which, v));
            });
            join_in_time(&mut p);
        });
        let mut r = q.get_timeout(Duration::ZERO);
        let mut n = 0;
        while r.is_ok() {
            n += 1;
            r = q.get_timeout(Duration::ZERO);
        }
        assert!(n <= 100_000);
        assert!(q.is_closed(), "{which} {v:#x}");
        assert!(matches!(q.get(), Err(GetError::Corrupt)), "{which} {v:#x}");
        assert!(matches!(q.put(1), Err(PutError::Corrupt(1))));
    }
}

#[test]
fn clones_are_handles_on_one_queue() {
    use multiproc::queue::{JoinableQueue, SimpleQueue};
    let _s = serial();
    let q = Queue::<u32>::new().unwrap();
    let sq = SimpleQueue::<u32>::new().unwrap();
    let jq = JoinableQueue::<u32>::new().unwrap();
    let mut kids: Vec<Process<'static>> = (0..3)
        .map(|w| {
            let (q, sq, jq) = (q.clone(), sq.clone(), jq.clone());
            spawn(move || {
                q.put(w).unwrap();
                sq.put(w + 10).unwrap();
                jq.put(w + 20).unwrap();
            })
        })
        .collect();
    for p in &mut kids {
        join_in_time(p);
    }
    let other = q.clone();
    let mut got: Vec<u32> = (0..3).map(|_| other.try_get().unwrap()).collect();
    got.sort();
    assert_eq!(got, [0, 1, 2]);
    assert!(q.empty());
    let mut got: Vec<u32> = (0..3).map(|_| sq.get().unwrap()).collect();
    got.sort();
    assert_eq!(got, [10, 11, 12]);
    let jq2 = jq.clone();
    for _ in 0..3 {
        jq2.try_get().unwrap();
        jq.task_done().unwrap();
    }
    assert!(jq2.join_timeout(PATIENCE));
    // The last handle gone, the queue goes with it (nothing to observe
    // here but that dropping clones in any order is fine).
    drop(q);
    assert!(other.empty());
}
