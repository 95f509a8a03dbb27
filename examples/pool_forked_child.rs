//! A process forked from a pool's owner hands the pool work too: a task
//! function (or a closure that captures nothing) the owner registered is
//! known by its type, so the child finds it even where an optimised build
//! gave the function another copy, at another address, in the child's
//! code. A new function, only the owner can register.
//!
//! ```text
//! cargo run --release --example pool_forked_child --features pool
//! ```

use multiproc::pool::{Pool, TaskError};
use multiproc::process::scope;

mod tasks {
    /// Small and inlinable: a candidate for a copy per codegen unit.
    #[inline]
    pub fn cube(x: i64) -> i64 {
        x * x * x
    }
}

mod child {
    use multiproc::pool::{Pool, TaskError};

    /// What the forked child does with its parent's pool: `minus` is the
    /// owner's closure (each closure expression is a type of its own, so
    /// writing the same one again here would be a new function).
    pub fn use_pool<F>(pool: &Pool, minus: F) -> Result<i64, TaskError>
    where
        F: Fn(i64, i64) -> i64 + Copy + 'static,
    {
        let cubes = pool.map(super::tasks::cube, 1..=10)?;
        let offsets = pool.starmap(minus, [(10, 3)])?;
        Ok(cubes.iter().sum::<i64>() + offsets[0])
    }
}

fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    // The owner registers the task and the closure by using them.
    assert_eq!(pool.apply(tasks::cube, 3)?, 27);
    let minus = |a: i64, b: i64| a - b;
    assert_eq!(pool.starmap(minus, [(1, 1)])?, [0]);
    let p = &pool;
    scope(|s| -> multiproc::Result<()> {
        let mut c = s.process(move || match child::use_pool(p, minus) {
            Ok(total) => {
                println!("the child's total: {total}");
                assert_eq!(total, 3025 + 7);
            }
            Err(TaskError::InvalidArgument(m)) => panic!("refused in the child: {m}"),
            Err(e) => panic!("{e}"),
        });
        c.start()?;
        let status = c.join()?;
        assert!(status.success(), "the child ended with {status}");
        Ok(())
    })?;
    pool.close();
    pool.join()?;
    Ok(())
}
