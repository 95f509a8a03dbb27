//! Busy processes that load every CPU while the workloads run (`--hogs`).

use multiproc::Process;

use crate::pi::Outcome;

/// Busy processes that load every CPU while the workloads run (`--hogs`):
/// started by [`Hogs::start`], killed and reaped on drop. Each spins on a
/// local counter, never touching shared memory or the kernel.
pub struct Hogs(Vec<Process<'static>>);

impl Hogs {
    pub fn start(n: usize) -> Outcome<Hogs> {
        let mut hogs = Hogs(Vec::with_capacity(n));
        for _ in 0..n {
            let mut p = Process::new(|| {
                let mut x = 0u64;
                while std::hint::black_box(true) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
            .with_daemon(true)
            .with_die_with_parent(true);
            p.start()?;
            hogs.0.push(p);
        }
        Ok(hogs)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.join();
        }
    }
}
