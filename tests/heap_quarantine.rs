//! The shared heap's quarantine across the spawn start method: a slot the
//! parent frees while a spawned grandchild still uses it is not reused,
//! even after the child that spawned it has ended (without joining it).
//!
//! This binary has its own `main` (libtest-mimic) because `multiproc::init`
//! must run first when the binary is started as a spawned child. The
//! fork-only cases are unit tests in `src/shm/heap.rs`.

use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use multiproc::{Event, Process, RawValue};

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(10);

fn check(cond: bool, what: &str) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what.into()) }
}

/// Run in the spawned grandchild: when told, writes through its handle.
fn write_when_told(args: (Arc<RawValue<u64>>, Arc<Event>, Arc<Event>)) -> u32 {
    let (v, go, done) = args;
    if !go.wait_timeout(WAIT) {
        return 2;
    }
    v.store(u64::MAX);
    done.set();
    0
}

fn a_spawned_grandchild_outliving_its_parent_keeps_the_slot() -> Result<(), Failed> {
    let v = Arc::new(RawValue::new(1u64).map_err(|e| e.to_string())?);
    let go = Arc::new(Event::new().map_err(|e| e.to_string())?);
    let done = Arc::new(Event::new().map_err(|e| e.to_string())?);
    let args = (v.clone(), go.clone(), done.clone());
    // SAFETY: the child only spawns (a fresh exec) and ends; it takes no
    // lock that another thread of the test harness may hold (stdio's and
    // the heap's are held across the fork).
    let mut child = unsafe {
        Process::new(move || -> Result<(), multiproc::Error> {
            let mut g = Process::spawn(write_when_told, args)?;
            g.start()?;
            // Neither joined nor killed: the grandchild outlives this
            // process, with its handle to the parent's slot.
            std::mem::forget(g);
            Ok(())
        })
        .allow_threads()
    };
    child.start().map_err(|e| e.to_string())?;
    let st = child.join().map_err(|e| e.to_string())?;
    check(st.success(), "the child failed")?;
    // The parent's last handle (the closure's copy went with the Process).
    drop(child);
    drop(v);
    let fresh: Vec<RawValue<u64>> = (0..8)
        .map(|_| RawValue::new(7u64))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    go.set();
    check(
        done.wait_timeout(WAIT),
        "the grandchild did not write in time",
    )?;
    check(
        fresh.iter().all(|f| f.load() == 7),
        "the grandchild wrote into a new object",
    )
}

fn main() {
    multiproc::init();
    let args = Arguments::from_args();
    let tests = vec![Trial::test(
        "a_spawned_grandchild_outliving_its_parent_keeps_the_slot",
        a_spawned_grandchild_outliving_its_parent_keeps_the_slot,
    )];
    libtest_mimic::run(&args, tests).exit();
}
