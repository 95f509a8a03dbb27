//! Helpers of the async tests (`tests/aio*.rs`): a runtime, a bound on
//! every wait, the futex reactor's threads.

use std::time::Duration;

/// Far above any healthy wait: reaching it means a lost wake-up.
pub const BOUND: Duration = Duration::from_secs(20);

/// A current-thread tokio runtime with its I/O and timers.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `f`, failing the test if it takes [`BOUND`].
pub async fn bounded<F: std::future::IntoFuture>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("an async wait was never woken")
}

/// This process's threads named as the futex reactor's. (Tests that count
/// them hold `serial()`, so under `cargo test` no other test starts one
/// meanwhile.)
pub fn reactor_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "multiproc-aio")
        })
        .count()
}
