//! Python's `SyncManager` extras: a server initializer, a pool held by the
//! server (`manager.Pool()`) that several processes share, and a managed
//! list that is sorted atomically and iterated lazily.
//!
//! ```text
//! cargo run --example manager_pool --features manager,pool
//! ```

use multiproc::Process;
use multiproc::manager::Manager;

/// Runs in the server process before it serves (an error here would make
/// `start` fail with it).
fn init(greeting: String) -> Result<(), String> {
    if greeting.is_empty() {
        return Err("no greeting".into());
    }
    println!("[server {}] {greeting}", std::process::id());
    Ok(())
}

/// A pool task: runs in a worker of the server's pool.
fn collatz_steps(mut n: u64) -> u64 {
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

fn main() -> multiproc::Result<()> {
    // The server's pool spawns its workers: this must come first.
    multiproc::init();
    let manager = Manager::builder()
        .initializer(init, "ready".to_string())
        .pool_task(collatz_steps)
        .start()?;
    let pool = manager.pool(2)?;
    let results = manager.list::<(u64, u64)>()?;

    // Two children share the server's pool and the list.
    let mut children = Vec::new();
    for half in 0..2u64 {
        let (pool, results) = (pool.clone(), results.clone());
        let mut p = Process::new(move || -> multiproc::Result<()> {
            let ns: Vec<u64> = (1..=20).filter(|n| n % 2 == half).collect();
            let steps = pool.map(collatz_steps, &ns)?;
            let pairs: Vec<(u64, u64)> = ns.into_iter().zip(steps).collect();
            results.extend(&pairs)?;
            Ok(())
        });
        p.start()?;
        children.push(p);
    }
    for p in &mut children {
        p.join_ok()?;
    }

    // Sorted in the server in one step, as `list.sort(key=...)`.
    results.sort_by_key(|&(n, steps)| (std::cmp::Reverse(steps), n))?;
    println!("the longest Collatz runs up to 20:");
    for item in results.iter().take(3) {
        let (n, steps) = item?;
        println!("  {n:>2}: {steps} steps");
    }
    assert_eq!(results.get(0)?, (18, 20));
    assert_ne!(manager.server_pid(), Some(std::process::id() as i32));
    manager.shutdown()?;
    Ok(())
}
