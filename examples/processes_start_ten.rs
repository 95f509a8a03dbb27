//! Ten children, each telling who it is: every child prints the name, pid
//! and parent pid it gets from `current_process()`, then the parent joins
//! them all and prints their exit codes (Python's
//! `for p in procs: p.start()` / `for p in procs: p.join(); print(p.exitcode)`).
//!
//! ```text
//! cargo run --example processes_start_ten
//! ```

use multiproc::{Process, current_process};

fn main() -> multiproc::Result<()> {
    let me = current_process();
    let my_pid = me.pid();
    println!(
        "parent: name {:?}, pid {}, parent pid {}",
        me.name(),
        my_pid,
        me.parent_pid()
    );

    let mut procs: Vec<Process> = (0..10)
        .map(|i| {
            let expected_name = format!("child-{i}");
            Process::new(move || {
                let c = current_process();
                println!(
                    "  child {i}: name {:?}, pid {}, parent pid {}",
                    c.name(),
                    c.pid(),
                    c.parent_pid()
                );
                // The exit code tells the parent whether the child saw the
                // identity it should have.
                let right = c.name() == expected_name
                    && c.pid() == std::process::id() as i32
                    && c.parent_pid() == my_pid;
                if right { 0 } else { 1 }
            })
            .with_name(format!("child-{i}"))
        })
        .collect();

    for p in &mut procs {
        p.start()?;
    }
    println!("parent: started 10 children");

    let mut failures = 0;
    for p in &mut procs {
        let status = p.join()?;
        println!(
            "parent: joined {} (pid {}): exit code {}",
            p.name(),
            p.pid().unwrap_or(0),
            status.code()
        );
        if !status.success() {
            failures += 1;
        }
    }
    if failures > 0 {
        eprintln!("{failures} children saw a wrong identity or failed");
        std::process::exit(1);
    }
    println!("all 10 children exited with code 0");
    Ok(())
}
