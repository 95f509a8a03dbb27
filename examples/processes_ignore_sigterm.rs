//! A child that ignores SIGTERM: `terminate()` then changes nothing (the
//! child is still running a while later), and only `kill()` (SIGKILL,
//! which cannot be ignored) stops it, with exit code -9.
//!
//! ```text
//! cargo run --example processes_ignore_sigterm
//! ```

use std::time::Duration;

use multiproc::Event;
use multiproc::signal::ignore_terminate;

fn fail(what: &str) -> ! {
    eprintln!("FAILED: {what}");
    std::process::exit(1);
}

fn main() -> multiproc::Result<()> {
    // Made before the fork, so both processes share it.
    let ready = Event::new()?;
    multiproc::process::scope(|ps| {
        let mut child = ps
            .process(|| -> multiproc::Result<()> {
                ignore_terminate()?;
                println!("  child: SIGTERM is ignored from now on");
                ready.set();
                loop {
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .with_name("stubborn")
            // Should this program fail before the kill, dropping a daemon kills it
            // (a plain Process would be waited for, forever).
            .with_daemon(true);
        child.start()?;
        let pid = child.pid().unwrap_or(0);
        println!("parent: started {pid}");
        if !ready.wait_timeout(Duration::from_secs(5)) {
            fail("the child did not get ready");
        }

        child.terminate()?;
        println!("parent: sent SIGTERM");
        // Waiting 300 ms for it to end: it does not.
        match child.join_timeout(Duration::from_millis(300))? {
            None => println!(
                "parent: 300 ms later it still runs (is_alive: {})",
                child.is_alive()
            ),
            Some(status) => fail(&format!("the child ended on SIGTERM: {status}")),
        }

        child.kill()?;
        println!("parent: sent SIGKILL");
        let status = child.join()?;
        println!("parent: it ended: {status:?}, exit code {}", status.code());
        if status.code() != -9 {
            fail("expected exit code -9");
        }
        Ok(())
    })
}
