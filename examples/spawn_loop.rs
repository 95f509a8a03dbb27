//! Scratch: start+join in a loop (for profiling).
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n = 2000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        if mode == "raw" {
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => unsafe { libc::_exit(0) },
                nix::unistd::ForkResult::Parent { child } => {
                    nix::sys::wait::waitpid(child, None).unwrap();
                }
            }
        } else {
            let mut p = multiproc::Process::new(|| ());
            p.start().unwrap();
            p.join().unwrap();
        }
    }
    println!("{mode} {:.1} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
