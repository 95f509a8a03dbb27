//! Python's `Pool` tutorial: `map`, `imap_unordered`, and `apply_async` with
//! a callback and an error callback (a task that panics reaches the caller
//! as an error naming where it panicked in the worker).
//!
//! ```text
//! cargo run --example pool_callbacks --features pool
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc::Pool;
use multiproc::pool::TaskError;

fn square(x: u64) -> u64 {
    x * x
}

fn checked_root(x: i64) -> f64 {
    assert!(x >= 0, "no real root of {x}");
    (x as f64).sqrt()
}

fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    println!("map: {:?}", pool.map(square, 0..10)?);

    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..10)
        .collect::<Result<_, TaskError>>()?;
    unordered.sort();
    println!("imap_unordered, sorted: {unordered:?}");

    // Callbacks run in the caller's process, in the thread whose call on
    // the pool collects the result.
    let roots = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut pending = Vec::new();
    for x in [4i64, 9, -1, 16] {
        let (roots, failures) = (roots.clone(), failures.clone());
        pending.push(
            pool.apply_async(checked_root, x)?
                .callback(move |r| roots.lock().unwrap().push(*r))
                .error_callback(move |e| {
                    // A panic in the task: its message and where it was.
                    if let TaskError::TaskFailed(text) = e {
                        let first_line = text.lines().next().unwrap_or("").to_string();
                        failures.lock().unwrap().push(first_line)
                    }
                }),
        );
    }
    for p in pending {
        // The result (or error) is also there for the one who waits.
        let _ = p.get_timeout(Duration::from_secs(30));
    }
    pool.close();
    pool.join()?;
    let mut roots = roots.lock().unwrap().clone();
    roots.sort_by(f64::total_cmp);
    println!("roots: {roots:?}");
    println!("failures: {:?}", failures.lock().unwrap());
    assert_eq!(roots, [2.0, 3.0, 4.0]);
    assert_eq!(failures.lock().unwrap().len(), 1);
    Ok(())
}
