//! `membarrier(2)`: a full memory barrier on every running thread of the
//! processes that registered for it, issued by one thread.
//!
//! This is the heavy half of an asymmetric fence: a thread on a hot path
//! orders its own store and later load with a compiler fence only, and the
//! rare thread that must be ordered against it calls [`barrier`], which
//! makes every registered thread that is running execute a full barrier
//! (an interrupt) before it returns; a thread not running passes through
//! the scheduler, a full barrier, before it runs again. In the memory
//! model's terms, the compiler fence and [`barrier`] together act as two
//! `SeqCst` fences.
//!
//! The command used is `MEMBARRIER_CMD_GLOBAL_EXPEDITED`: it reaches every
//! process that registered (`MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`),
//! whatever its address space, as threads of different processes sharing a
//! mapping need. A process registers once ([`register`], before its first
//! light-fenced hot path); a forked child registers again on its own first
//! call (the state is stamped with the process id), whatever the kernel
//! passes on through `fork`.
//!
//! Where the kernel lacks the command (before 4.16) or a seccomp filter
//! refuses it, [`available`] says no, once, and callers keep their fully
//! fenced path.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use crate::sys::thread;

const CMD_QUERY: libc::c_int = 0;
const CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

/// 0: not asked yet; 1: usable; 2: not.
static AVAILABLE: AtomicU8 = AtomicU8::new(0);
/// The process that registered (0: none yet).
static REGISTERED: AtomicI32 = AtomicI32::new(0);

fn membarrier(cmd: libc::c_int) -> libc::c_long {
    // SAFETY: `membarrier(cmd, flags = 0, cpu_id = 0)` takes no pointers
    // and touches no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        )
    }
}

/// Whether the kernel offers the global expedited barrier and its
/// registration (asked once per process tree, the answer kept).
pub(crate) fn available() -> bool {
    match AVAILABLE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let r = membarrier(CMD_QUERY);
            let want = (CMD_GLOBAL_EXPEDITED | CMD_REGISTER_GLOBAL_EXPEDITED) as libc::c_long;
            let ok = r >= 0 && r & want == want;
            AVAILABLE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
    }
}

/// Registers this process to receive [`barrier`]s (once per process;
/// again in a forked child). False if the kernel refused: the caller must
/// then not rely on a compiler fence alone.
pub(crate) fn register() -> bool {
    let me = thread::pid();
    if REGISTERED.load(Ordering::Acquire) == me {
        return true;
    }
    if !available() || membarrier(CMD_REGISTER_GLOBAL_EXPEDITED) != 0 {
        return false;
    }
    REGISTERED.store(me, Ordering::Release);
    true
}

/// A full memory barrier on every running thread of every registered
/// process (this one's included), done before this returns. False if the
/// kernel refused (unavailable, or out of memory): nothing was ordered.
pub(crate) fn barrier() -> bool {
    available() && membarrier(CMD_GLOBAL_EXPEDITED) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_process_can_issue_barriers() {
        if !available() {
            // (A kernel or sandbox without it: the callers' fallback.)
            return;
        }
        assert!(register());
        assert!(register(), "a second registration is a no-op");
        assert!(barrier());
    }
}
