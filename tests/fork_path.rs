//! The fork start method from a process with one thread (the common case,
//! and the one `isolated_test!` gives): nothing is held across the fork,
//! the child's copy of the shared heap is reset at its first use, and the
//! report slots of ended children are reused. These check that the savings
//! changed no answer.

use std::sync::Arc;
use std::time::Duration;

use multiproc::{Event, Process, Value};

const LONG: Duration = Duration::from_secs(20);

multiproc::isolated_test! {
    /// A reused report slot starts empty: a silent child after a panicking
    /// one reports nothing, and each message is its own child's.
    fn reused_report_slots_carry_only_their_own_child_s_report() {
        for i in 0..12 {
            let mut p = if i % 3 == 0 {
                Process::new(move || -> i32 { panic!("child {i} panicked") })
            } else if i % 3 == 1 {
                Process::new(|| ())
            } else {
                Process::new(move || Err::<(), String>(format!("child {i} failed")))
            };
            p.start().unwrap();
            let status = p.join().unwrap();
            match i % 3 {
                0 => {
                    assert_eq!(status.code(), 1);
                    assert!(p.panicked());
                    assert_eq!(p.message().as_deref(), Some(&*format!("child {i} panicked")));
                }
                1 => {
                    assert!(status.success());
                    assert!(!p.panicked());
                    assert_eq!(p.message(), None, "child {i} got another child's report");
                }
                _ => {
                    assert_eq!(status.code(), 1);
                    assert_eq!(p.message().as_deref(), Some(&*format!("child {i} failed")));
                }
            }
        }
    }
}

multiproc::isolated_test! {
    /// A child inherits its parent's spare report slots, which the parent
    /// goes on handing to its own children: the child must not hand them to
    /// its children too. Here the parent's child `d` and the grandchild `g`
    /// would get the same slot, and `g`'s report would replace `d`'s before
    /// the parent reads it.
    fn a_child_never_reuses_its_parent_s_report_slots() {
        // Three slots come back to the parent's spares.
        let mut warm: Vec<Process> = (0..3).map(|_| Process::new(|| ())).collect();
        for p in &mut warm {
            p.start().unwrap();
        }
        for p in &mut warm {
            assert!(p.join().unwrap().success());
        }
        let go = Arc::new(Event::new().unwrap());
        let done = Arc::new(Event::new().unwrap());
        // `c` takes the first spare; its copy of the spares holds the other
        // two, the first of which `d` takes below.
        let mut c = Process::new({
            let (go, done) = (go.clone(), done.clone());
            move || {
                assert!(go.wait_timeout(LONG), "the parent never said go");
                let mut g = Process::new(|| -> i32 { panic!("grandchild") });
                g.start().unwrap();
                assert_eq!(g.join().unwrap().code(), 1);
                assert_eq!(g.message().as_deref(), Some("grandchild"));
                done.set();
            }
        });
        c.start().unwrap();
        let mut d = Process::new(|| -> i32 { panic!("d") });
        d.start().unwrap();
        // `d` has ended and written its report, not yet read (not reaped).
        let ready = multiproc::process::wait(&[&d], Some(LONG)).unwrap();
        assert_eq!(ready, vec![0], "d did not end");
        go.set();
        assert!(done.wait_timeout(LONG), "the grandchild did not end");
        assert_eq!(d.join().unwrap().code(), 1);
        assert_eq!(d.message().as_deref(), Some("d"));
        assert!(c.join().unwrap().success(), "{:?}", c.message());
    }
}

multiproc::isolated_test! {
    /// A child forked without holding the heap still starts a heap of its
    /// own: what it allocates never lands where its parent allocates next.
    fn a_child_s_allocations_never_overlap_its_parent_s() {
        // The parent's heap has an arena, which the child inherits.
        let before = Value::new(1u64).unwrap();
        let ready = Arc::new(Event::new().unwrap());
        let go = Arc::new(Event::new().unwrap());
        let mut c = Process::new({
            let (ready, go) = (ready.clone(), go.clone());
            move || {
                let mine: Vec<Value<u64>> = (0..8).map(|_| Value::new(0).unwrap()).collect();
                ready.set();
                assert!(go.wait_timeout(LONG), "the parent never said go");
                for v in &mine {
                    v.set(0xdead);
                }
            }
        });
        c.start().unwrap();
        assert!(ready.wait_timeout(LONG), "the child never allocated");
        let after: Vec<Value<u64>> = (0..8).map(|i| Value::new(i).unwrap()).collect();
        go.set();
        assert!(c.join().unwrap().success(), "{:?}", c.message());
        for (i, v) in after.iter().enumerate() {
            assert_eq!(v.get(), i as u64, "the child wrote into the parent's object");
        }
        assert_eq!(before.get(), 1);
    }
}
