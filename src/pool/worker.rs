//! The worker side of a pool and the bytes that pass between the parent and
//! its workers.
//!
//! A task message (one chunk of tasks) in the task ring:
//! `chunk id: u64 | runner: i64 | function: i64 | count: u32 | args...`,
//! where `runner` and `function` are code offsets from [`crate::init`]
//! (valid in every process running this executable, forked or spawned) and
//! the arguments are `count` postcard encodings one after the other.
//!
//! A message in the result ring starts with a kind byte:
//! - [`MSG_RESULT`] `| chunk id: u64 | items...`, each item a tag byte
//!   ([`ITEM_OK`] then the postcard value, or [`ITEM_PANIC`],
//!   [`ITEM_ENCODE`], [`ITEM_DECODE`] then a postcard string);
//! - [`MSG_RETIRED`] `| serial: u64`: the worker did its
//!   `max_tasks_per_child` and exits;
//! - [`MSG_INIT_FAILED`] `| serial: u64 | message`: its initializer
//!   panicked, and it exits.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::queue::ring::{Core, GetFail, PutFail};
use crate::sys::futex::Deadline;

pub(super) const MSG_RESULT: u8 = 0;
pub(super) const MSG_RETIRED: u8 = 1;
pub(super) const MSG_INIT_FAILED: u8 = 2;

pub(super) const ITEM_OK: u8 = 0;
pub(super) const ITEM_PANIC: u8 = 1;
pub(super) const ITEM_ENCODE: u8 = 2;
pub(super) const ITEM_DECODE: u8 = 3;

/// Bytes before a task message's arguments.
pub(super) const TASK_HEADER: usize = 8 + 8 + 8 + 4;

/// The worker is running its initializer (or has not begun).
pub(super) const STATE_STARTING: u32 = 0;
/// The worker takes tasks.
pub(super) const STATE_READY: u32 = 1;

/// How long a worker with nothing to do sleeps before it checks that its
/// parent is alive (it exits if not).
const IDLE_CHECK: Duration = Duration::from_millis(500);

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
    /// The initializer's code offset, and its arguments.
    pub(super) init: Option<(isize, I)>,
}

/// A chunk runner: decodes `count` arguments from `input`, calls the
/// function at `entry` on each, appends tagged results to `out`.
pub(super) type Runner = fn(usize, u32, &[u8], &mut Vec<u8>);

/// Where code lies relative to [`crate::init`]: the same in every process
/// running this executable, wherever it was loaded.
pub(super) fn offset_of(addr: usize) -> isize {
    addr as isize - (crate::process::init as fn() as usize) as isize
}

fn address_of(offset: isize) -> usize {
    ((crate::process::init as fn() as usize) as isize + offset) as usize
}

/// Appends `s` as a postcard string.
fn push_text(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail, and a str always encodes.
    let _ = postcard::to_io(s, &mut *out);
}

/// Runs the items of one chunk through `call`.
fn run_items<A: DeserializeOwned, R: Serialize>(
    count: u32,
    mut input: &[u8],
    out: &mut Vec<u8>,
    call: impl Fn(A) -> R,
) {
    for i in 0..count {
        let a: A = match postcard::take_from_bytes(input) {
            Ok((a, rest)) => {
                input = rest;
                a
            }
            Err(e) => {
                // The rest of the chunk cannot be found either.
                let msg = format!("the task's argument could not be decoded: {e}");
                for _ in i..count {
                    out.push(ITEM_DECODE);
                    push_text(out, &msg);
                }
                return;
            }
        };
        match catch_unwind(AssertUnwindSafe(|| call(a))) {
            Ok(r) => {
                let mark = out.len();
                out.push(ITEM_OK);
                if let Err(e) = postcard::to_io(&r, &mut *out) {
                    out.truncate(mark);
                    out.push(ITEM_ENCODE);
                    push_text(out, &format!("the result could not be serialized: {e}"));
                }
            }
            Err(p) => {
                out.push(ITEM_PANIC);
                push_text(out, &crate::process::panic_text(&*p));
            }
        }
    }
}

/// The runner for `fn(A) -> R`.
pub(super) fn run_chunk1<A: DeserializeOwned, R: Serialize>(
    entry: usize,
    count: u32,
    input: &[u8],
    out: &mut Vec<u8>,
) {
    // SAFETY: `entry` is the address of an `fn(A) -> R` of this executable:
    // the parent took it from such a function, together with this runner
    // instantiated for the same A and R, and sent its offset from `init`;
    // every worker runs the parent's executable image (forked, or an exec
    // of /proc/self/exe).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(entry) };
    run_items(count, input, out, f)
}

/// The runner for `fn(A, B) -> R` (starmap).
pub(super) fn run_chunk2<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    entry: usize,
    count: u32,
    input: &[u8],
    out: &mut Vec<u8>,
) {
    // SAFETY: as in `run_chunk1`, for an `fn(A, B) -> R`.
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(entry) };
    run_items(count, input, out, |(a, b): (A, B)| f(a, b))
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

/// The first bytes of a task message: `(chunk id, runner, function, count)`.
pub(super) fn parse_header(b: &[u8]) -> Option<(u64, isize, isize, u32)> {
    if b.len() < TASK_HEADER {
        return None;
    }
    let mut c = [0u8; 4];
    c.copy_from_slice(&b[24..28]);
    Some((
        read_u64(b, 0),
        read_u64(b, 8) as i64 as isize,
        read_u64(b, 16) as i64 as isize,
        u32::from_le_bytes(c),
    ))
}

/// Puts `msg` in the result ring, waiting for room as long as the parent
/// lives; false if the ring was closed or the parent is gone.
fn send(results: &Core, msg: &[u8]) -> bool {
    loop {
        match results.put(msg, Deadline::after(IDLE_CHECK)) {
            Ok(()) => return true,
            Err(PutFail::Closed) => return false,
            Err(PutFail::Full) if !crate::process::parent_alive() => return false,
            Err(PutFail::Full) => {}
        }
    }
}

/// The body of every worker process.
pub(super) fn worker_main<I: Serialize + DeserializeOwned>(args: WorkerArgs<I>) {
    let WorkerArgs {
        tasks,
        results,
        slot,
        serial,
        max_tasks,
        init,
    } = args;
    if let Some((offset, init_args)) = init {
        // SAFETY: the offset of an `fn(I)` of this executable, taken by the
        // parent's builder for this very `I` (see `run_chunk1`).
        let f = unsafe { std::mem::transmute::<usize, fn(I)>(address_of(offset)) };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(init_args))) {
            let msg = crate::process::panic_text(&*p);
            let mut out = vec![MSG_INIT_FAILED];
            out.extend_from_slice(&serial.to_le_bytes());
            out.extend_from_slice(msg.as_bytes());
            send(&results, &out);
            let _ = writeln!(std::io::stderr(), "pool initializer failed: {msg}");
            crate::process::exit(1);
        }
    }
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
            Some((id, runner, entry, count)) => {
                out.extend_from_slice(&id.to_le_bytes());
                // SAFETY: the parent wrote the offset of a `Runner` (a
                // `run_chunk*` instance) of this executable image.
                let run = unsafe { std::mem::transmute::<usize, Runner>(address_of(runner)) };
                run(address_of(entry), count, &bytes[TASK_HEADER..], &mut out);
            }
            None => continue,
        }
        if !send(&results, &out) {
            return;
        }
        slot.in_flight.store(0, Ordering::Release);
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
