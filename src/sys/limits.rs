//! Resource limits of the calling process.

/// The soft limit on open descriptors (`RLIMIT_NOFILE`); `None` if it
/// cannot be read or is unlimited.
pub(crate) fn open_files() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass, which lives for the call.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (r == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}
