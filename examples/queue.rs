//! Python's "exchanging objects between processes: queues" tutorial: workers
//! take numbers from one queue and put results on another; a sentinel per
//! worker tells it to stop, and a `SimpleQueue` carries log lines.
//!
//! ```text
//! cargo run --example queue --features queue
//! ```

use std::time::Duration;

use multiproc::{Process, Queue, SimpleQueue};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Each child gets a clone of the handles (as cheap as an `Arc`'s).
    let tasks: Queue<Option<u64>> = Queue::new()?;
    let results: Queue<(u64, u64)> = Queue::new()?;
    let log: SimpleQueue<String> = SimpleQueue::new()?;

    let workers = 3;
    let mut procs: Vec<Process> = (0..workers)
        .map(|w| {
            let (tasks, results, log) = (tasks.clone(), results.clone(), log.clone());
            Process::new(move || {
                let mut done = 0;
                // `None` is the sentinel: one per worker.
                while let Ok(Some(n)) = tasks.get() {
                    if results.put((n, n * n)).is_err() {
                        break;
                    }
                    done += 1;
                }
                let _ = log.put(format!("worker {w} did {done} tasks"));
            })
        })
        .collect();
    for p in &mut procs {
        p.start()?;
    }
    let n = 100;
    for i in 0..n {
        tasks.put(Some(i))?;
    }
    for _ in 0..workers {
        tasks.put(None)?;
    }
    // A put never waits for room, so joining first would do too; reading
    // first lets the parent work while the children do.
    let mut sum = 0;
    for _ in 0..n {
        let (_, square) = results.get_timeout(Duration::from_secs(10))?;
        sum += square;
    }
    for p in &mut procs {
        p.join_ok()?;
    }
    for _ in 0..workers {
        println!("{}", log.get()?);
    }
    assert_eq!(sum, (0..n).map(|i| i * i).sum::<u64>());
    println!("sum of squares below {n}: {sum}");
    Ok(())
}
