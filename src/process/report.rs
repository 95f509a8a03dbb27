//! What a child reports to its parent: its exit code, and a message (a
//! panic's text, an error's text) or a returned value, through a slot in
//! shared memory or, for large reports, a pipe.

use std::cell::UnsafeCell;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

/// What a child's closure may return: its exit code, and a message for the
/// parent. Implemented for `()`, `i32` (an exit code), `Result<(), E>` with
/// a displayable error, and for closures that never return (ending in
/// `std::process::exit`, [`exit`](super::exit), `panic!` or an endless loop).
#[diagnostic::on_unimplemented(
    message = "a child process's closure cannot return `{Self}`",
    label = "the closure returns `{Self}`",
    note = "return `()`, an exit code (`i32`) or a `Result<(), E>` whose error is `Display`; \
            to send a value back, use `Process::with_result` (the `spawn` feature)"
)]
pub trait ChildResult {
    /// The exit code, and a message the parent can read with
    /// [`Process::message`](super::Process::message) (an error's text).
    fn into_exit(self) -> (i32, Option<String>);
}

impl ChildResult for () {
    fn into_exit(self) -> (i32, Option<String>) {
        (0, None)
    }
}

impl ChildResult for i32 {
    fn into_exit(self) -> (i32, Option<String>) {
        (self, None)
    }
}

/// Naming the never type `!` needs an unstable feature, but the return type
/// of a `fn() -> !` pointer is `!` itself, reachable through a projection.
mod never {
    pub trait FnReturn {
        type Output;
    }

    impl<T> FnReturn for fn() -> T {
        type Output = T;
    }

    /// The never type `!`: what a closure that ends in
    /// `std::process::exit(..)` or `panic!` returns (edition 2024 infers
    /// `!` for such a closure, not `()`).
    pub type Never = <fn() -> ! as FnReturn>::Output;
}

impl ChildResult for never::Never {
    fn into_exit(self) -> (i32, Option<String>) {
        // There is no value of type `!`: this is never called.
        match self {}
    }
}

impl<E: fmt::Display> ChildResult for std::result::Result<(), E> {
    /// 0, or 1 after printing the error to stderr and reporting it.
    fn into_exit(self) -> (i32, Option<String>) {
        match self {
            Ok(()) => (0, None),
            Err(e) => {
                let msg = e.to_string();
                // Not eprintln!, which panics when stderr cannot be written
                // (a full disk): the report must still reach the parent.
                let _ = writeln!(std::io::stderr(), "Error: {msg}");
                (1, Some(msg))
            }
        }
    }
}

/// What the child sends back through its report pipe: a kind byte, then
/// the payload.
pub(crate) const REPORT_VALUE: u8 = 0;
pub(crate) const REPORT_PANIC: u8 = 1;
pub(crate) const REPORT_ERROR: u8 = 2;

pub(crate) struct Report {
    pub(crate) code: i32,
    pub(crate) kind: u8,
    pub(crate) bytes: Vec<u8>,
}

impl Report {
    /// A returned value, serialized; an error report if it cannot be.
    #[cfg(feature = "spawn")]
    pub(crate) fn value<T: serde::Serialize>(value: &T) -> Report {
        match postcard::to_stdvec(value) {
            Ok(bytes) => Report {
                code: 0,
                kind: REPORT_VALUE,
                bytes,
            },
            Err(e) => Report {
                code: 1,
                kind: REPORT_ERROR,
                bytes: format!("the result could not be serialized: {e}").into_bytes(),
            },
        }
    }

    /// A panic's message (exit code 1, as Python reports an exception).
    pub(crate) fn panic(payload: &(dyn std::any::Any + Send)) -> Report {
        Report {
            code: 1,
            kind: REPORT_PANIC,
            bytes: panic_text(payload).into_bytes(),
        }
    }
}

/// Room for a report in shared memory: most reports (none, a panic message,
/// a small value) go here, so the parent is woken once, when the child ends,
/// not also when the report arrives. Larger ones go through the pipe.
pub(crate) const SLOT_BYTES: usize = 4096 - 8;
pub(crate) const SLOT_EMPTY: u32 = 0;
const SLOT_HERE: u32 = 1;
const SLOT_IN_PIPE: u32 = 2;

#[repr(C)]
pub(crate) struct ReportSlot {
    state: AtomicU32,
    len: AtomicU32,
    data: UnsafeCell<[u8; SLOT_BYTES]>,
}

// SAFETY: atomics and bytes; all-zero is an empty slot. `data` is written
// by the child alone before it sets `state`, and read by the parent only
// after the child has ended.
unsafe impl crate::ShmSafe for ReportSlot {}
// SAFETY: see above: writes and reads of `data` never overlap in time.
unsafe impl Sync for ReportSlot {}

impl ReportSlot {
    /// An empty slot.
    pub(crate) fn empty() -> ReportSlot {
        ReportSlot {
            state: AtomicU32::new(SLOT_EMPTY),
            len: AtomicU32::new(0),
            data: UnsafeCell::new([0; SLOT_BYTES]),
        }
    }

    /// In the child: stores the report (its `kind` byte, then `bytes`)
    /// here if it fits; false if it does not. With `cut`, a report that
    /// does not fit is cut short to fit instead (true).
    pub(crate) fn put(&self, kind: u8, bytes: &[u8], cut: bool) -> bool {
        let bytes = if bytes.len() + 1 > SLOT_BYTES {
            if !cut {
                self.state.store(SLOT_IN_PIPE, Ordering::Release);
                return false;
            }
            &bytes[..SLOT_BYTES - 1]
        } else {
            bytes
        };
        // SAFETY: only this (child) process writes the slot, once, before
        // publishing it with the Release store below; the parent reads it
        // only after that store and after the child ended.
        let data = unsafe { &mut *self.data.get() };
        data[0] = kind;
        data[1..=bytes.len()].copy_from_slice(bytes);
        self.len.store(bytes.len() as u32 + 1, Ordering::Relaxed);
        self.state.store(SLOT_HERE, Ordering::Release);
        true
    }

    /// Empties a slot again, for another child.
    fn reset(&self) {
        self.len.store(0, Ordering::Relaxed);
        self.state.store(SLOT_EMPTY, Ordering::Relaxed);
    }

    /// In the parent, once the child ended: the report, if it is here.
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        if self.state.load(Ordering::Acquire) != SLOT_HERE {
            return None;
        }
        let len = (self.len.load(Ordering::Relaxed) as usize).min(SLOT_BYTES);
        // SAFETY: the child wrote `len` bytes before its Release store,
        // which the Acquire load above observed; it has ended.
        Some(unsafe { (&*self.data.get())[..len].to_vec() })
    }
}

/// How many slots of ended children a process keeps for its next ones.
const SPARE_SLOTS: usize = 4;

/// Slots of children that ended, kept for the next ones: making a slot
/// (an allocation, and 4 KiB written) for every start, then freeing it
/// into the heap's quarantine (it was made before the fork, so it waits
/// until the child's generation ends), was a good part of a fork's cost.
/// Stamped with the process it belongs to ([`thread::incarnation`]): a fork
/// child's copy holds its parent's slots, which the parent hands to its
/// own children, so a child never takes them (nor frees them: it forgets
/// them, writing nothing).
struct Spare {
    me: u64,
    slots: [Option<crate::shm::ShmBox<ReportSlot>>; SPARE_SLOTS],
}

static SPARE: std::sync::Mutex<Spare> = std::sync::Mutex::new(Spare {
    me: 0,
    slots: [const { None }; SPARE_SLOTS],
});

/// The spare slots, if they belong to this process and are free to take
/// now. Never waits: in a child forked while another thread held the
/// lock, the lock stays held for good, and slots are then simply made
/// afresh.
fn spare() -> Option<std::sync::MutexGuard<'static, Spare>> {
    let me = crate::sys::thread::incarnation()?;
    let mut g = match SPARE.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return None,
    };
    if g.me != me {
        // Inherited: the parent's slots, not ours to use or free.
        for s in &mut g.slots {
            std::mem::forget(s.take());
        }
        g.me = me;
    }
    Some(g)
}

/// An empty report slot for a child about to be forked: a spare one, or a
/// new one.
pub(crate) fn new_slot() -> crate::Result<crate::shm::ShmBox<ReportSlot>> {
    if let Some(slot) = spare().and_then(|mut g| g.slots.iter_mut().find_map(Option::take)) {
        slot.reset();
        return Ok(slot);
    }
    crate::shm::ShmBox::new(ReportSlot::empty())
}

/// Keeps `slot` for a later child. Only for the slot of a child this
/// process reaped itself (so it has ended) and whose report was read: no
/// process writes the slot any more. The child's own descendants never do:
/// each ends in `_exit` within its own fork (or runs another program), and
/// never returns into the code that writes its parent's report.
pub(crate) fn recycle(slot: crate::shm::ShmBox<ReportSlot>) {
    if let Some(mut g) = spare()
        && let Some(free) = g.slots.iter_mut().find(|s| s.is_none())
    {
        *free = Some(slot);
    }
}

/// What a `Process` runs in the child: the closure, turned into a report.
pub(crate) type Body<'a> = Box<dyn FnOnce() -> Report + 'a>;

/// The body of a process whose closure returns a [`ChildResult`].
pub(crate) fn unit_body<'a, F, R>(body: F) -> Body<'a>
where
    F: FnOnce() -> R + 'a,
    R: ChildResult,
{
    Box::new(move || {
        let (code, msg) = body().into_exit();
        match msg {
            Some(m) => Report {
                code,
                kind: REPORT_ERROR,
                bytes: m.into_bytes(),
            },
            None => Report {
                code,
                kind: REPORT_VALUE,
                bytes: Vec::new(),
            },
        }
    })
}

/// The body of a process whose closure returns a value for the parent.
#[cfg(feature = "spawn")]
pub(crate) fn value_body<'a, T, F>(body: F) -> Body<'a>
where
    T: serde::Serialize,
    F: FnOnce() -> T + 'a,
{
    Box::new(move || Report::value(&body()))
}

pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("panicked with a non-string payload")
    }
}
