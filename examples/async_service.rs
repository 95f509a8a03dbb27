//! An async service that fans work out to a pool of worker processes and
//! streams the results back as they come, on one tokio runtime thread:
//! `cargo run --example async_service --features tokio,serde`.
//!
//! The service submits jobs with `put_async` into a bounded queue (so a
//! burst of requests waits for room without blocking the runtime), the
//! workers (plain blocking code in their own processes) answer on a results
//! queue, and the service awaits each result with `get_async` while it
//! keeps submitting. At the end it awaits the workers' exit through their
//! pidfds (`join_async`). No thread waits for anything: the queues' futex
//! words are watched by multiproc's reactor, the pidfds by tokio.
//!
//! Then the same work goes through a [`Pool`]: `imap_unordered` streams
//! the results back with `next_async` as the workers finish them, and a
//! single `apply_async` result is awaited like any future (the pool's
//! results ring is watched by the same reactor).

use std::time::{Duration, Instant};

use multiproc::pool::Pool;
use multiproc::{Process, Queue};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    id: u64,
    n: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    id: u64,
    steps: u32,
    worker: u32,
}

/// The work: the length of `n`'s Collatz sequence.
fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

const WORKERS: u32 = 4;
const JOBS: u64 = 2_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `None` tells a worker to stop.
    let jobs: Queue<Option<Job>> = Queue::bounded(16)?;
    let answers: Queue<Answer> = Queue::new()?;

    // Fork the workers before the runtime exists (a process with threads
    // must opt in to forking).
    let mut workers: Vec<Process<'static>> = (0..WORKERS)
        .map(|w| {
            let (jobs, answers) = (jobs.clone(), answers.clone());
            let mut p = Process::new(move || -> multiproc::Result<()> {
                while let Ok(Some(job)) = jobs.get() {
                    let steps = collatz_steps(job.n);
                    let answer = Answer {
                        id: job.id,
                        steps,
                        worker: w,
                    };
                    answers
                        .put(answer)
                        .map_err(|e| multiproc::Error::Codec(e.to_string()))?;
                }
                Ok(())
            })
            .with_name(format!("worker-{w}"));
            p.start()?;
            Ok(p)
        })
        .collect::<multiproc::Result<_>>()?;

    // The pool's workers are forked now too, before any thread exists.
    let pool = Pool::new(WORKERS as usize)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let started = Instant::now();
        // Requests arrive: submit them, waiting for room when the workers
        // fall behind.
        let submitter = {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                for id in 0..JOBS {
                    let n = 1_000_000 + id * 7919;
                    if jobs.put_async(Some(Job { id, n })).await.is_err() {
                        return;
                    }
                }
                for _ in 0..WORKERS {
                    let _ = jobs.put_async(None).await;
                }
            })
        };
        // Meanwhile, stream the answers back as they come.
        let mut per_worker = [0u32; WORKERS as usize];
        let mut longest = (0, 0);
        for k in 0..JOBS {
            let a = tokio::time::timeout(Duration::from_secs(30), answers.get_async())
                .await
                .map_err(|_| "no answer within 30 s")??;
            per_worker[a.worker as usize] += 1;
            if a.steps > longest.1 {
                longest = (a.id, a.steps);
            }
            if k % 500 == 0 {
                println!(
                    "answer {k}: job {} took {} steps (worker {})",
                    a.id, a.steps, a.worker
                );
            }
        }
        submitter.await?;
        for w in &mut workers {
            let status = w.join_async().await?;
            println!("{} ended: {status}", w.name());
        }
        println!(
            "{JOBS} jobs in {:.1?}; per worker {per_worker:?}; longest: job {} ({} steps)",
            started.elapsed(),
            longest.0,
            longest.1
        );

        // The same through the pool, streamed back in the order they finish.
        let started = Instant::now();
        let mut results = pool.imap_unordered(collatz_steps, (0..JOBS).map(|id| 1_000_000 + id * 7919));
        let (mut count, mut most) = (0, 0);
        while let Some(steps) = results.next_async().await {
            count += 1;
            most = most.max(steps?);
        }
        drop(results);
        let one = pool.apply_async(collatz_steps, 27)?;
        println!(
            "pool: {count} results streamed back in {:.1?}, longest {most} steps; 27 takes {} steps",
            started.elapsed(),
            one.await?
        );
        pool.close();
        pool.join()?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
