//! The `testing` feature: bodies of `isolated_test!` run in a fresh,
//! single-threaded process, where forking is allowed without `unsafe`.

use std::sync::Arc;

use multiproc::{Error, Process, Value};

/// What the isolated body saw of its process.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Seen {
    pid: u32,
    threads: usize,
    forked_total: u64,
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fork_two(counter: Arc<Value<u64>>) -> Seen {
    let threads = threads();
    let mut kids: Vec<Process> = (0..2)
        .map(|_| {
            let c = counter.clone();
            Process::new(move || c.update(|x| *x += 10))
        })
        .collect();
    for k in &mut kids {
        k.start().expect("a single-threaded process may fork");
    }
    for k in &mut kids {
        assert!(k.join().unwrap().success());
    }
    Seen {
        pid: std::process::id(),
        threads,
        forked_total: counter.get(),
    }
}

#[test]
fn the_harness_thread_cannot_fork() {
    // The problem the feature solves: here, on the harness's test thread.
    assert!(threads() >= 2);
    let mut p = Process::new(|| ());
    assert!(matches!(
        p.start(),
        Err(multiproc::StartError::ThreadedFork { .. })
    ));
}

#[test]
fn isolated_body_runs_single_threaded_in_another_process_and_may_fork() {
    let counter = Arc::new(Value::new(1u64).unwrap());
    let seen = multiproc::testing::isolated(fork_two, counter.clone()).unwrap();
    assert_ne!(seen.pid, std::process::id());
    assert_eq!(
        seen.threads, 1,
        "the body must run before the harness starts threads"
    );
    assert_eq!(seen.forked_total, 21);
    // The counter is shared memory: the grandchildren's additions are here.
    assert_eq!(counter.get(), 21);
}

fn fails(n: u32) {
    assert_eq!(n, 0, "the body saw {n}");
}

#[test]
fn a_failing_body_is_an_error_with_its_message() {
    let e = multiproc::testing::isolated(fails, 7).unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            multiproc::testing::IsolatedError::Child(
                multiproc::process::ResultError::ChildFailed { .. }
            )
        ),
        "{e:?}"
    );
    assert!(text.contains("the body saw 7"), "{text}");
    // `?` in a `multiproc::Result` function: the coarse error it was, with
    // the same text.
    let coarse: Error = e.into();
    assert!(matches!(coarse, Error::ChildFailed { .. }), "{coarse:?}");
    assert_eq!(coarse.to_string(), text);
}

multiproc::isolated_test! {
    /// The macro form: the body forks through a scope.
    fn macro_body_forks_through_a_scope() {
        let counter = Value::new(0u64).unwrap();
        multiproc::process::scope(|s| {
            let mut kids: Vec<Process> = (0..3)
                .map(|_| s.process(|| counter.update(|c| *c += 1)))
                .collect();
            for k in &mut kids {
                k.start()?;
            }
            for k in &mut kids {
                assert!(k.join()?.success());
            }
            Ok::<(), Error>(())
        })
        .unwrap();
        assert_eq!(counter.get(), 3);
    }

    fn macro_body_is_single_threaded() {
        assert_eq!(threads(), 1);
    }
}
