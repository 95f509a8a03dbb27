//! A clean shutdown on SIGTERM: the child installs a `StopRequest` (the
//! signal only sets a flag), works in a loop, and when the flag is set it
//! finishes the unit in hand, tidies up and exits with a code of its
//! choosing. The parent lets it work a little, terminates it, and checks
//! the exit code and that the clean-up ran.
//!
//! ```text
//! cargo run --example processes_sigterm_handler
//! ```

use std::time::Duration;

use multiproc::signal::StopRequest;
use multiproc::{Event, RawValue};

/// The exit code the child chooses for "stopped on request, cleanly".
const STOPPED_CLEANLY: i32 = 3;

fn fail(what: &str) -> ! {
    eprintln!("FAILED: {what}");
    std::process::exit(1);
}

fn main() -> multiproc::Result<()> {
    // Shared with the child: made before the fork.
    let ready = Event::new()?;
    let units = RawValue::new(0u64)?;
    let cleaned_up = RawValue::new(0u8)?;

    multiproc::process::scope(|ps| {
        let mut child = ps
            .process(|| {
                // Installed before telling the parent we are ready, so that no
                // SIGTERM can arrive while its default action (ending the process)
                // still holds.
                let stop = match StopRequest::install() {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("  child: cannot install the handler: {e}");
                        return 1;
                    }
                };
                println!("  child: handler installed, starting work");
                ready.set();
                while !stop.requested() {
                    // One unit of work.
                    std::thread::sleep(Duration::from_millis(10));
                    units.fetch_add(1);
                }
                println!(
                    "  child: stop requested after {} units; cleaning up",
                    units.load()
                );
                cleaned_up.store(1);
                STOPPED_CLEANLY
            })
            .with_name("worker")
            // Should this program fail before the SIGTERM, dropping a daemon kills
            // it (a plain Process would be waited for, forever).
            .with_daemon(true);
        child.start()?;
        println!("parent: started {}", child.pid().unwrap_or(0));
        if !ready.wait_timeout(Duration::from_secs(5)) {
            fail("the child did not get ready");
        }
        // Let it do some work.
        while units.load() < 5 {
            if child.join_timeout(Duration::from_millis(5))?.is_some() {
                fail("the child ended on its own");
            }
        }
        println!(
            "parent: the child did {} units; sending SIGTERM",
            units.load()
        );
        child.terminate()?;
        let status = child.join()?;
        println!("parent: it ended: {status:?}, exit code {}", status.code());
        if status.code() != STOPPED_CLEANLY {
            fail("expected the child's clean-shutdown exit code");
        }
        if cleaned_up.load() == 0 {
            fail("the child did not clean up");
        }
        println!("parent: the child stopped cleanly");
        Ok(())
    })
}
