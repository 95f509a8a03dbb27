//! Resource limits of the calling process.

/// The soft limit on open descriptors (`RLIMIT_NOFILE`); `None` if it
/// cannot be read or is unlimited.
#[cfg(feature = "listener")]
pub(crate) fn open_files() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass, which lives for the call.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (r == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// The number of CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`, what
/// Python's `os.cpu_count()` reads); `None` if it cannot be read.
pub(crate) fn online_cpus() -> Option<usize> {
    // SAFETY: sysconf reads a system value and touches no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// The number of CPUs this process may run on (its affinity mask, what
/// Python's `len(os.sched_getaffinity(0))` counts); `None` if it cannot be
/// read.
pub(crate) fn affinity_cpus() -> Option<usize> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let n = (0..nix::sched::CpuSet::count())
        .filter(|&i| set.is_set(i).unwrap_or(false))
        .count();
    (n > 0).then_some(n)
}
