//! A time limit on a child: `with_deadline(d)` arms a timer inside the
//! child that kills it with SIGKILL once `d` has passed, whatever it is
//! doing (no help from the parent is needed). A child that runs too long
//! ends with exit code -9; one that finishes in time is not disturbed.
//!
//! ```text
//! cargo run --example processes_deadline
//! ```

use std::time::{Duration, Instant};

use multiproc::RawValue;

fn fail(what: &str) -> ! {
    eprintln!("FAILED: {what}");
    std::process::exit(1);
}

fn main() -> multiproc::Result<()> {
    let rounds = RawValue::new(0u32)?;

    // Too slow: wants 100 rounds of 10 ms, has 300 ms.
    let limit = Duration::from_millis(300);
    multiproc::process::scope(|ps| {
        let mut slow = ps
            .process(|| {
                for _ in 0..100 {
                    std::thread::sleep(Duration::from_millis(10));
                    rounds.fetch_add(1);
                }
            })
            .with_name("slow")
            .with_deadline(limit);
        let t = Instant::now();
        slow.start()?;
        println!("started {:?} with a deadline of {limit:?}", slow.name());
        let status = slow.join()?;
        let took = t.elapsed();
        println!(
            "  it ended after {took:?} and {} of 100 rounds: {status:?}, exit code {}",
            rounds.load(),
            status.code()
        );
        if status.code() != -9 {
            fail("the slow child was not killed (expected exit code -9)");
        }
        if took < limit {
            fail("the slow child was killed before its deadline");
        }
        if rounds.load() >= 100 {
            fail("the slow child finished all its rounds");
        }

        // In time: 5 rounds of 10 ms with 5 s to spare.
        rounds.store(0);
        let limit = Duration::from_secs(5);
        let mut quick = ps
            .process(|| {
                for _ in 0..5 {
                    std::thread::sleep(Duration::from_millis(10));
                    rounds.fetch_add(1);
                }
            })
            .with_name("quick")
            .with_deadline(limit);
        let t = Instant::now();
        quick.start()?;
        println!("started {:?} with a deadline of {limit:?}", quick.name());
        let status = quick.join()?;
        println!(
            "  it ended after {:?} and {} of 5 rounds: {status:?}, exit code {}",
            t.elapsed(),
            rounds.load(),
            status.code()
        );
        if !status.success() || rounds.load() != 5 {
            fail("the quick child did not finish normally");
        }
        Ok(())
    })
}
