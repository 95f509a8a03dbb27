//! Hooks around this crate's forks, as glibc's `pthread_atfork` (which its
//! malloc uses for its own locks): a module above `sys` that must hold a
//! lock across a fork registers a [`Prepare`] function here, and
//! [`sys::process::fork`](super::process::fork) runs every registered one
//! before it forks and finishes each right after, in the parent and in the
//! child. `sys` so never names the modules above it.
//!
//! The registry's own lock is held from the first prepare to the last
//! finish: a module that registers while a fork is under way waits until
//! the fork is done, so it can never take its lock (after registering)
//! while a fork that did not prepare it is in flight. A module registers
//! before the first use of what its hook protects (see the shared heap).
//!
//! A fork from a process with one thread holds nothing across the fork
//! (`prepare(false)`): no other thread can hold a lock at that moment, and
//! every page written after a fork is copied (a fault in each process), so
//! the hooks do their work before the fork and leave the child's memory
//! alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// What a prepare function returns: the held state, finished by
/// [`forked`](Held::forked) right after the fork.
pub(crate) trait Held {
    /// Right after the fork, in the parent (`in_child` false: also when the
    /// fork failed) or in the child. In the child the value is not dropped
    /// afterwards (forgotten: no write to memory shared copy-on-write with
    /// the parent, no free).
    fn forked(&mut self, in_child: bool);
}

/// Called before each fork, in the forking thread: readies the module for
/// the fork and, if `hold` (other threads may run), takes what the child
/// needs held (a lock no other thread may hold at the fork) and returns it.
/// Without `hold` it holds nothing across the fork (and returns `None`).
pub(crate) type Prepare = fn(hold: bool) -> Option<Box<dyn Held>>;

static HOOKS: Mutex<Vec<Prepare>> = Mutex::new(Vec::new());

fn hooks() -> MutexGuard<'static, Vec<Prepare>> {
    // A panic elsewhere leaves the list as it was: still usable.
    HOOKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `prepare` to the functions run around every fork, last (it is
/// prepared after, and finished before, those registered earlier), unless
/// `done` says it was added already; sets `done`. Waits while a fork is
/// under way. (A flag rather than a `Once`: a child forked while another
/// thread ran a `Once` would find it running forever.)
pub(crate) fn register_once(done: &'static AtomicBool, prepare: Prepare) {
    if done.load(Ordering::Acquire) {
        return;
    }
    let mut list = hooks();
    if !done.load(Ordering::Relaxed) {
        list.push(prepare);
        done.store(true, Ordering::Release);
    }
}

/// The hooks prepared for one fork; [`Prepared::forked`] finishes them.
pub(crate) struct Prepared {
    _list: Option<MutexGuard<'static, Vec<Prepare>>>,
    held: Vec<Box<dyn Held>>,
}

/// Runs every registered prepare function, in registration order. With
/// `hold` (other threads may run), the registry and what the hooks return
/// are held until [`Prepared::forked`]; without it (the caller's process
/// has one thread), nothing is: the hooks ready themselves and let go
/// before the fork, and nothing is allocated.
pub(crate) fn prepare(hold: bool) -> Prepared {
    let list = hooks();
    let held = list.iter().filter_map(|p| p(hold)).collect();
    Prepared {
        _list: hold.then_some(list),
        held,
    }
}

impl Prepared {
    /// Right after the fork (see [`Held::forked`]): finishes every hook in
    /// the reverse order of preparing, then lets registrations go on.
    pub(crate) fn forked(mut self, in_child: bool) {
        for h in self.held.iter_mut().rev() {
            h.forked(in_child);
        }
        if in_child {
            // Not freed in the child (see `Held::forked`); the registry's
            // lock is released (its guard belongs to this thread, which
            // the child is a copy of).
            std::mem::forget(std::mem::take(&mut self.held));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static PREPARED: AtomicUsize = AtomicUsize::new(0);
    static FINISHED: AtomicUsize = AtomicUsize::new(0);

    struct Count;

    impl Held for Count {
        fn forked(&mut self, in_child: bool) {
            // Other tests of this binary fork too: count the parents only.
            if !in_child {
                FINISHED.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn hooks_are_prepared_and_finished_in_turn() {
        fn count(hold: bool) -> Option<Box<dyn Held>> {
            PREPARED.fetch_add(1, Ordering::SeqCst);
            hold.then(|| Box::new(Count) as Box<dyn Held>)
        }
        static DONE: AtomicBool = AtomicBool::new(false);
        register_once(&DONE, count);
        register_once(&DONE, count);
        assert!(DONE.load(Ordering::SeqCst));
        let before = PREPARED.load(Ordering::SeqCst);
        let p = prepare(true);
        assert!(PREPARED.load(Ordering::SeqCst) > before);
        // Registering waits while a fork is prepared: the list is held.
        assert!(HOOKS.try_lock().is_err());
        let before = FINISHED.load(Ordering::SeqCst);
        p.forked(false);
        assert!(FINISHED.load(Ordering::SeqCst) > before);
    }

    #[test]
    fn a_fork_from_one_thread_holds_nothing() {
        // Whatever hooks this binary registered are asked not to hold, and
        // the list itself is let go before the fork.
        let p = prepare(false);
        assert!(p._list.is_none());
        assert!(p.held.is_empty());
        p.forked(false);
    }
}
