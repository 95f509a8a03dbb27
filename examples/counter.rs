//! The classic tutorial: ten forked children add to one shared counter
//! under its lock, and the parent prints the exact total.
//!
//! ```text
//! cargo run --release --example counter [-- CHILDREN INCREMENTS]
//! ```

use std::time::Instant;

use multiproc::{Process, Value};

fn main() -> multiproc::Result<()> {
    let mut args = std::env::args().skip(1);
    let children: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let increments: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);

    // Made before the fork: every child shares it.
    let counter = Value::new(0u64)?;

    let start = Instant::now();
    multiproc::process::scope(|ps| {
        let mut procs: Vec<Process> = (0..children)
            .map(|i| {
                ps.process(|| {
                    for _ in 0..increments {
                        // The guard derefs to the u64; the lock is released when
                        // it drops at the end of the statement.
                        *counter.lock().unwrap_or_else(|died| died.into_guard()) += 1;
                    }
                })
                .with_name(format!("adder-{i}"))
            })
            .collect();
        for p in &mut procs {
            p.start()?;
        }
        for p in &mut procs {
            let status = p.join()?;
            if !status.success() {
                eprintln!("{} ended with {status:?}", p.name());
                std::process::exit(1);
            }
        }
        let elapsed = start.elapsed();

        let total = counter.get();
        let expected = children * increments;
        println!(
            "{children} processes x {increments} increments: counter = {total} (expected {expected}) in {:.3} s, {:.1} ns per increment",
            elapsed.as_secs_f64(),
            elapsed.as_nanos() as f64 / expected as f64
        );
        if total != expected {
            eprintln!("lost updates: {}", expected - total);
            std::process::exit(1);
        }
        Ok(())
    })
}
