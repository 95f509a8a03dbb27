//! Python's `JoinableQueue` pattern: daemon workers call `task_done` after
//! each item, and the producer's `join` returns once every item put has been
//! processed; the workers are then stopped (they are daemons, as in the
//! Python docs' example).
//!
//! ```text
//! cargo run --example joinable_queue --features queue
//! ```

use std::time::Duration;

use multiproc::{JoinableQueue, Process, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jobs = JoinableQueue::<u64>::new()?;
    let processed = std::sync::Arc::new(Value::new(0u64)?);
    let sum = std::sync::Arc::new(Value::new(0u64)?);

    let mut workers: Vec<Process> = (0..2)
        .map(|_| {
            let (jobs, processed, sum) = (jobs.clone(), processed.clone(), sum.clone());
            Process::new(move || {
                while let Ok(n) = jobs.get() {
                    sum.update(|s| *s += n);
                    processed.update(|p| *p += 1);
                    if jobs.task_done().is_err() {
                        break;
                    }
                }
            })
            .with_daemon(true)
        })
        .collect();
    for w in &mut workers {
        w.start()?;
    }
    for n in 1..=1000 {
        jobs.put(n)?;
    }
    // Every item put has been taken and marked done.
    if !jobs.join_timeout(Duration::from_secs(30)) {
        return Err("the workers did not finish in 30 s".into());
    }
    println!("{} items processed, sum {}", processed.get(), sum.get());
    assert_eq!(processed.get(), 1000);
    assert_eq!(sum.get(), 1000 * 1001 / 2);
    // Daemon workers are killed when their handles drop.
    Ok(())
}
