//! The worker side of a pool and the bytes that pass between the parent and
//! its workers.
//!
//! A task message (one chunk of tasks) in the task ring:
//! `chunk id: u64 | function: u32 | count: u32 | args...`, where the
//! arguments are `count` postcard encodings one after the other and
//! `function` is an index in the pool's [code table](CodeTable), never an
//! address: the ring is shared memory that other processes may write, so a
//! worker calls only what the table holds, and an index the table does not
//! hold is that chunk's error ([`ITEM_CODE`]).
//!
//! The code table is a memfd that only the pool's parent can write: its
//! writable mapping is not inherited by forks (`MADV_DONTFORK`) and the
//! memfd is sealed against new writable mappings (`F_SEAL_FUTURE_WRITE`),
//! so the workers, and any other process holding the descriptor, can map
//! it read-only only. Each entry is a pair of [`CodePtr`] offsets (a runner
//! instantiated for the task's types, and the task function), checked to
//! be in the main executable when the parent registered them; the worker
//! looks entries up without a system call.
//!
//! A message in the result ring starts with a kind byte:
//! - [`MSG_RESULT`] `| chunk id: u64 | items...`, each item a tag byte
//!   ([`ITEM_OK`] then the postcard value, or [`ITEM_PANIC`],
//!   [`ITEM_ENCODE`], [`ITEM_DECODE`] then a postcard string);
//! - [`MSG_RETIRED`] `| serial: u64`: the worker did its
//!   `max_tasks_per_child` and exits;
//! - [`MSG_INIT_FAILED`] `| serial: u64 | message`: its initializer
//!   panicked, and it exits.
//!
//! A panic in a task (or the initializer) is caught and its text sent to
//! the parent, with where it panicked and a backtrace if asked (the
//! runner shared with the Redis workers, `crate::task_items`).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::process::code::{Code, CodeFn, CodePtr};
use crate::ring::records::{Core, GetFail, OnWait};
use crate::shm::transfer::Descriptor;
use crate::sys::mem::WriterMapping;
use crate::task_items::{ItemTags, caught, install_panic_hook, push_text, run_items};

pub(super) const MSG_RESULT: u8 = 0;
pub(super) const MSG_RETIRED: u8 = 1;
pub(super) const MSG_INIT_FAILED: u8 = 2;

pub(super) const ITEM_OK: u8 = 0;
pub(super) const ITEM_PANIC: u8 = 1;
pub(super) const ITEM_ENCODE: u8 = 2;
pub(super) const ITEM_DECODE: u8 = 3;
pub(super) const ITEM_CODE: u8 = 4;

/// Bytes before a task message's arguments.
pub(super) const TASK_HEADER: usize = 8 + 4 + 4;

/// The code table's size (a whole number of pages), its header (the
/// number of entries) and how many entries it holds.
const TABLE_BYTES: usize = 64 * 1024;
const TABLE_HEAD: usize = 16;
const TABLE_ENTRY: usize = 16;
pub(super) const TABLE_CAP: usize = (TABLE_BYTES - TABLE_HEAD) / TABLE_ENTRY;

/// The worker is running its initializer (or has not begun).
pub(super) const STATE_STARTING: u32 = 0;
/// The worker takes tasks.
pub(super) const STATE_READY: u32 = 1;

/// How long a worker with nothing to do sleeps before it checks that its
/// parent is alive (it exits if not).
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// The largest result buffer a worker keeps for its next task.
const OUT_KEEP: usize = 1 << 20;

/// One worker's slot in shared memory, read by the parent when the worker
/// ended: which chunk it held, and whether it got past its initializer.
#[derive(Debug)]
#[repr(C)]
pub(super) struct WorkerSlot {
    /// The id of the chunk being run (0: none). Set while the chunk is
    /// still in the task ring (see `Core::get_noting`), cleared once its
    /// result is in the result ring.
    pub(super) in_flight: AtomicU64,
    pub(super) state: AtomicU32,
}

// SAFETY: atomics only: no pointers, no drop glue, all-zero valid.
unsafe impl crate::ShmSafe for WorkerSlot {}

/// What a worker process gets: the rings, its slot, its initializer.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "I: Serialize + DeserializeOwned")]
pub(super) struct WorkerArgs<I> {
    pub(super) tasks: Arc<Core>,
    pub(super) results: Arc<Core>,
    pub(super) slot: Arc<crate::shm::ShmBox<WorkerSlot>>,
    pub(super) serial: u64,
    pub(super) max_tasks: u64,
    /// The code table (mapped read-only by the worker).
    pub(super) table: Descriptor,
    /// The initializer (a `CodePtr<fn(I)>` offset), and its arguments.
    pub(super) init: Option<(u64, I)>,
    /// The pool's process, and whether the thread that started this worker
    /// was not its main thread (see [`worker_main`]).
    pub(super) parent: i32,
    pub(super) by_other_thread: bool,
}

/// A chunk runner: decodes `count` arguments from `input`, calls the
/// function `entry` on each, appends tagged results to `out`.
pub(super) type Runner = fn(Code, u32, &[u8], &mut Vec<u8>);

// SAFETY: a function pointer type.
unsafe impl CodeFn for Runner {}

/// How the code table knows a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum TaskKey {
    /// A task given as a zero-sized function type (an fn item, or a
    /// closure that captures nothing): the `TypeId` of that type with the
    /// task's signature. Not its code address: in an optimised build a
    /// small function can have a copy per codegen unit, so a process forked
    /// from the pool's owner could see another address for a function the
    /// owner registered. A `TypeId` is the same wherever the process looks.
    Type(std::any::TypeId),
    /// A task given as an `fn` pointer: the offsets of its runner and of
    /// the function.
    Code(u64, u64),
}

/// What a task runs: its key, the runner for its types, and its function
/// (for a [`TaskKey::Type`], the runner again: the runner makes the
/// function itself).
#[derive(Clone, Copy, Debug)]
pub(super) struct TaskCode {
    key: TaskKey,
    runner: CodePtr<Runner>,
    entry: Code,
}

impl TaskCode {
    /// The task `f` of type `F`, whose calls `run` makes on the items of a
    /// chunk: keyed by `F` (with the signature `S`) when `F` is zero-sized,
    /// else by address when `F` is the function pointer type `P`; refused
    /// otherwise (a closure that captures something).
    fn new<F: Copy + 'static, S: 'static, P: CodeFn + 'static>(
        f: F,
        typed: Runner,
        by_address: Runner,
    ) -> Result<TaskCode> {
        if std::mem::size_of::<F>() == 0 {
            let runner = CodePtr::new(typed)?;
            return Ok(TaskCode {
                key: TaskKey::Type(std::any::TypeId::of::<(F, S)>()),
                runner,
                entry: runner.erase(),
            });
        }
        match (&f as &dyn std::any::Any).downcast_ref::<P>() {
            Some(&p) => {
                let runner = CodePtr::new(by_address)?;
                let entry = CodePtr::new(p)?.erase();
                Ok(TaskCode {
                    key: TaskKey::Code(runner.offset(), entry.offset()),
                    runner,
                    entry,
                })
            }
            None => Err(Error::InvalidArgument(
                "a pool task is a function, or a closure that captures nothing",
            )),
        }
    }
}

/// The code of a task `f: F` where `F: Fn(A) -> R` (see [`TaskCode::new`]);
/// [`Error::ForeignCode`] if it is not in the main executable.
pub(super) fn code1<F, A, R>(f: F) -> Result<TaskCode>
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    TaskCode::new::<F, fn(A) -> R, fn(A) -> R>(f, run_typed1::<F, A, R>, run_chunk1::<A, R>)
}

/// The code of a task `f: F` where `F: Fn(A, B) -> R` (starmap).
pub(super) fn code2<F, A, B, R>(f: F) -> Result<TaskCode>
where
    F: Fn(A, B) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    B: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    TaskCode::new::<F, fn(A, B) -> R, fn(A, B) -> R>(
        f,
        run_typed2::<F, A, B, R>,
        run_chunk2::<A, B, R>,
    )
}

/// The parent's side of the code table: the only writer.
pub(super) struct CodeTable {
    map: WriterMapping,
    fd: Descriptor,
    /// The process that made it: the only one that has the writable
    /// mapping (forks do not inherit it).
    owner: i32,
    len: u32,
    known: std::collections::HashMap<TaskKey, u32>,
}

/// The word at byte `at` of a table mapping.
///
/// # Safety
///
/// `base` must be the start of a table mapping of [`TABLE_BYTES`] bytes or
/// more, page-aligned, that lives as long as `'a`.
unsafe fn table_word<'a>(base: *mut u8, at: usize) -> &'a AtomicU64 {
    assert!(at.is_multiple_of(8) && at + 8 <= TABLE_BYTES);
    let p = base.wrapping_add(at).cast::<AtomicU64>();
    // SAFETY: in bounds and aligned (checked above, with the caller's
    // promise); the memory is shared and only ever accessed atomically.
    unsafe { &*p }
}

impl CodeTable {
    pub(super) fn new() -> Result<CodeTable> {
        let map = WriterMapping::new(c"multiproc-pool-code", TABLE_BYTES)?;
        let fd = map
            .fd()
            .try_clone_to_owned()
            .map_err(|e| Error::os("fcntl", e))?;
        Ok(CodeTable {
            map,
            fd: Descriptor(Arc::new(fd)),
            owner: crate::sys::thread::pid(),
            len: 0,
            known: std::collections::HashMap::new(),
        })
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        // SAFETY: the table's own mapping, TABLE_BYTES long, page-aligned,
        // alive as long as `self`.
        unsafe { table_word(self.map.as_ptr(), at) }
    }

    /// The descriptor the workers map.
    pub(super) fn descriptor(&self) -> Descriptor {
        self.fd.clone()
    }

    /// The index of `code` in the table, adding it if new.
    pub(super) fn index(&mut self, code: TaskCode) -> Result<u32> {
        let key = code.key;
        if let Some(&i) = self.known.get(&key) {
            return Ok(i);
        }
        if self.owner != crate::sys::thread::pid() {
            return Err(Error::InvalidArgument(
                "only the process that made a pool can give it new functions",
            ));
        }
        let i = self.len as usize;
        if i >= TABLE_CAP {
            return Err(Error::InvalidArgument(
                "a pool runs at most 4095 different task functions",
            ));
        }
        let at = TABLE_HEAD + i * TABLE_ENTRY;
        // Writable in this process: its owner (checked above).
        self.word(at).store(code.runner.offset(), Ordering::Relaxed);
        self.word(at + 8)
            .store(code.entry.offset(), Ordering::Relaxed);
        // Publishes the entry to workers that load the count (Acquire).
        self.word(0).store(i as u64 + 1, Ordering::Release);
        self.len += 1;
        self.known.insert(key, i as u32);
        Ok(i as u32)
    }
}

/// A worker's read-only view of the code table.
struct CodeView {
    map: memmap2::MmapRaw,
}

impl CodeView {
    fn open(fd: &Descriptor) -> Result<CodeView> {
        use std::os::fd::AsFd;
        Ok(CodeView {
            map: crate::sys::mem::map_read_only(fd.0.as_fd(), TABLE_BYTES)?,
        })
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        // SAFETY: a mapping of at least TABLE_BYTES (checked when it was
        // mapped), page-aligned, alive as long as `self`. Atomic loads from
        // read-only memory are fine; nothing here stores.
        unsafe { table_word(self.map.as_mut_ptr(), at) }
    }

    /// Entry `index`, if the parent has registered it.
    fn get(&self, index: u32) -> Option<(CodePtr<Runner>, Code)> {
        let len = self.word(0).load(Ordering::Acquire);
        let i = index as usize;
        if i as u64 >= len || i >= TABLE_CAP {
            return None;
        }
        let at = TABLE_HEAD + i * TABLE_ENTRY;
        let r = self.word(at).load(Ordering::Relaxed);
        let e = self.word(at + 8).load(Ordering::Relaxed);
        let runner = Code::from_offset(r).ok()?;
        let entry = Code::from_offset(e).ok()?;
        // SAFETY: only the pool's parent writes the table (see the module
        // documentation), and it wrote entry `i` (below the count it
        // published) from a `CodePtr<Runner>` and the function that runner
        // expects (or, for a runner of a typed task, which ignores it, the
        // runner again: see `TaskCode`); this process runs the parent's
        // executable image.
        Some((unsafe { runner.assume::<Runner>() }, entry))
    }
}

/// The tags of this pool's result items.
const TAGS: ItemTags = ItemTags {
    ok: ITEM_OK,
    panic: ITEM_PANIC,
    encode: ITEM_ENCODE,
    decode: ITEM_DECODE,
};

/// The runner for `fn(A) -> R`.
fn run_chunk1<A: DeserializeOwned, R: Serialize>(
    entry: Code,
    count: u32,
    input: &[u8],
    out: &mut Vec<u8>,
) {
    // SAFETY: the runner and `entry` come from one entry of the code table,
    // which `code1` made from a `CodePtr<fn(A) -> R>` and this runner
    // instantiated for the same A and R (see `CodeView::get`).
    let f = unsafe { entry.assume::<fn(A) -> R>() }.get();
    run_items(&TAGS, count, input, out, f)
}

/// The runner for `fn(A, B) -> R` (starmap).
fn run_chunk2<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    entry: Code,
    count: u32,
    input: &[u8],
    out: &mut Vec<u8>,
) {
    // SAFETY: as in `run_chunk1`, from `code2`, for an `fn(A, B) -> R`.
    let f = unsafe { entry.assume::<fn(A, B) -> R>() }.get();
    run_items(&TAGS, count, input, out, |(a, b): (A, B)| f(a, b))
}

/// A value of the task type `F`, which is zero-sized (else `None`).
///
/// # Safety
///
/// A value of `F` must exist or have existed in this program (in this
/// process, or in the one that made this process by fork or spawn). As
/// `F: Copy`, the value made here is then a copy of that one, which anyone
/// holding it could make.
unsafe fn conjure<F: Copy>() -> Option<F> {
    if std::mem::size_of::<F>() != 0 {
        return None;
    }
    // SAFETY: `F` is zero-sized, so a value has no bytes that could be
    // invalid; the caller vouches that values of `F` are made (so it is
    // inhabited) and may be copied (`F: Copy`).
    Some(unsafe { std::mem::zeroed() })
}

/// Fails the `count` items of a chunk that cannot run with `msg`.
fn fail_items(count: u32, out: &mut Vec<u8>, msg: &str) {
    for _ in 0..count.min(1 << 16) {
        out.push(ITEM_CODE);
        push_text(out, msg);
    }
}

/// The runner of a typed task `F: Fn(A) -> R` (see [`TaskKey::Type`]).
fn run_typed1<F, A, R>(_entry: Code, count: u32, input: &[u8], out: &mut Vec<u8>)
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: this runner is named only by a code table entry, which the
    // pool's parent wrote in `CodeTable::index` from `code1(f)` with a
    // value `f: F` in hand (and the entry's key is `F`'s own type).
    match unsafe { conjure::<F>() } {
        Some(f) => run_items(&TAGS, count, input, out, f),
        None => fail_items(count, out, "the task's function type is not zero-sized"),
    }
}

/// The runner of a typed task `F: Fn(A, B) -> R` (starmap).
fn run_typed2<F, A, B, R>(_entry: Code, count: u32, input: &[u8], out: &mut Vec<u8>)
where
    F: Fn(A, B) -> R + Copy + 'static,
    A: DeserializeOwned,
    B: DeserializeOwned,
    R: Serialize,
{
    // SAFETY: as in `run_typed1`, from `code2(f)` with `f: F` in hand.
    match unsafe { conjure::<F>() } {
        Some(f) => run_items(&TAGS, count, input, out, |(a, b): (A, B)| f(a, b)),
        None => fail_items(count, out, "the task's function type is not zero-sized"),
    }
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

/// Writes a task message's header into the empty `buf`; the count is
/// filled in later ([`set_count`]).
pub(super) fn push_header(buf: &mut Vec<u8>, chunk: u64, function: u32) {
    buf.extend_from_slice(&chunk.to_le_bytes());
    buf.extend_from_slice(&function.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
}

/// Sets the count of the task message in `buf`.
pub(super) fn set_count(buf: &mut [u8], count: u32) {
    buf[12..16].copy_from_slice(&count.to_le_bytes());
}

/// The first bytes of a task message: `(chunk id, function, count)`.
pub(super) fn parse_header(b: &[u8]) -> Option<(u64, u32, u32)> {
    if b.len() < TASK_HEADER {
        return None;
    }
    Some((read_u64(b, 0), read_u32(b, 8), read_u32(b, 12)))
}

/// Puts `msg` in the result ring, waiting for room as long as the parent
/// lives; false if the ring was closed or the parent is gone. A large
/// result goes in chunk by chunk as the parent takes them, however long
/// that takes: it is never started over.
fn send(results: &Core, msg: &[u8]) -> bool {
    let mut next_check = Instant::now() + IDLE_CHECK;
    let r = results.put_with(msg, Deadline::NEVER, &mut || {
        let now = Instant::now();
        if now >= next_check {
            next_check = now + IDLE_CHECK;
            if !crate::process::parent_alive() {
                return OnWait::Stop;
            }
        }
        OnWait::Sleep
    });
    r.is_ok()
}

/// The body of every worker process.
pub(super) fn worker_main<I: Serialize + DeserializeOwned>(args: WorkerArgs<I>) {
    let WorkerArgs {
        tasks,
        results,
        slot,
        serial,
        max_tasks,
        table,
        init,
        parent,
        by_other_thread,
    } = args;
    if by_other_thread {
        // Started by a thread other than the pool's main thread: the
        // kernel's parent-death signal follows that thread, which may end
        // while the pool goes on. A catchable signal whose handler checks
        // whether the pool's process is gone stands in for SIGKILL here.
        // (Workers started by the main thread have SIGKILL, set by
        // `with_die_with_parent` before this runs.)
        crate::sys::process::die_with_parent_process(parent);
    }
    install_panic_hook();
    let table = CodeView::open(&table);
    if let Some((offset, init_args)) = init {
        // SAFETY: the offset of a `CodePtr<fn(I)>` made by the parent's
        // `build` for this very `I`, handed over in this worker's arguments
        // (fork memory or the spawn bootstrap, which no other process can
        // write).
        let f = Code::from_offset(offset).map(|c| unsafe { c.assume::<fn(I)>() }.get());
        let r = match f {
            Ok(f) => caught(|| f(init_args)),
            Err(e) => Err(e.to_string()),
        };
        if let Err(msg) = r {
            let mut out = vec![MSG_INIT_FAILED];
            out.extend_from_slice(&serial.to_le_bytes());
            out.extend_from_slice(msg.as_bytes());
            send(&results, &out);
            let _ = writeln!(std::io::stderr(), "pool initializer failed: {msg}");
            crate::process::exit(1);
        }
    }
    let table = match table {
        Ok(t) => t,
        Err(e) => {
            let mut out = vec![MSG_INIT_FAILED];
            out.extend_from_slice(&serial.to_le_bytes());
            out.extend_from_slice(format!("the pool's code table: {e}").as_bytes());
            send(&results, &out);
            crate::process::exit(1);
        }
    };
    slot.state.store(STATE_READY, Ordering::Release);
    let mut done = 0u64;
    let mut out = Vec::with_capacity(256);
    loop {
        let task = tasks.get_noting(Deadline::after(IDLE_CHECK), &mut |b| {
            slot.in_flight.store(read_u64(b, 0), Ordering::Release)
        });
        let task = match task {
            Ok(t) => t,
            Err(GetFail::Empty) => {
                if crate::process::parent_alive() {
                    continue;
                }
                return;
            }
            Err(GetFail::Closed) => return,
        };
        let bytes = task.as_slice();
        out.clear();
        out.push(MSG_RESULT);
        match parse_header(bytes) {
            Some((id, function, count)) => {
                out.extend_from_slice(&id.to_le_bytes());
                match table.get(function) {
                    Some((run, entry)) => {
                        run.get()(entry, count, &bytes[TASK_HEADER..], &mut out);
                    }
                    None => {
                        let msg = format!(
                            "the task names function #{function}, which the pool never registered"
                        );
                        fail_items(count, &mut out, &msg);
                    }
                }
            }
            None => continue,
        }
        if !send(&results, &out) {
            return;
        }
        slot.in_flight.store(0, Ordering::Release);
        if out.capacity() > OUT_KEEP {
            // Do not hold a large result's buffer for the worker's life.
            out = Vec::with_capacity(256);
        }
        done += 1;
        if max_tasks != 0 && done >= max_tasks {
            let mut msg = vec![MSG_RETIRED];
            msg.extend_from_slice(&serial.to_le_bytes());
            send(&results, &msg);
            return;
        }
    }
}

/// Reads a message's serial (`MSG_RETIRED`, `MSG_INIT_FAILED`).
pub(super) fn message_serial(b: &[u8]) -> u64 {
    read_u64(b, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn only_the_parent_writes_the_code_table() {
        let mut t = CodeTable::new().unwrap();
        let fd = t.descriptor();
        // Nobody else can map it writable, nor write to it.
        let w = memmap2::MmapOptions::new()
            .len(TABLE_BYTES)
            .map_raw(fd.0.as_raw_fd());
        assert!(w.is_err());
        let file = std::fs::File::from(fd.0.try_clone().unwrap());
        assert!(std::os::unix::fs::FileExt::write_at(&file, &[1; 16], 16).is_err());
        // A read-only view sees what the parent registers, and only that.
        let view = CodeView::open(&fd).unwrap();
        assert!(view.get(0).is_none());
        let i = t.index(code1(double).unwrap()).unwrap();
        assert_eq!(t.index(code1(double).unwrap()).unwrap(), i);
        let (run, entry) = view.get(i).unwrap();
        let mut out = Vec::new();
        run.get()(entry, 1, &postcard::to_stdvec(&21u32).unwrap(), &mut out);
        assert_eq!(out, [ITEM_OK, 42]);
        assert!(view.get(i + 1).is_none());
        assert!(view.get(u32::MAX).is_none());
    }
}
