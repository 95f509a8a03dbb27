//! Running one chunk of serialized task items, for the two pools: the
//! local [`Pool`](crate::Pool)'s workers and the distributed pool's Redis
//! workers ([`RedisWorker`](crate::redis::RedisWorker)); and what the two
//! pools' result handles share ([`ResultHandle`]: callbacks on a job's
//! outcome).
//!
//! A chunk is `count` postcard-encoded arguments one after the other; its
//! result is one tagged item per argument, each a tag byte then the
//! postcard value (ok) or a postcard string (why not). The tags are each
//! wire format's own ([`ItemTags`]).
//!
//! A panic in a task is caught and its text reported: the message, where
//! it panicked (`file:line:column`, from the panic hook installed by
//! [`install_panic_hook`]), and the worker's backtrace when
//! `RUST_LIB_BACKTRACE` or `RUST_BACKTRACE` is set and not `0` (read at
//! each panic). Such a panic is not also printed to the worker's stderr:
//! the caller has all of it in its error. A panic on a thread that is not
//! running a task goes to the panic hook installed before.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The tag bytes of one wire format's items.
pub(crate) struct ItemTags {
    /// The call returned; the postcard value follows.
    pub(crate) ok: u8,
    /// The call panicked; its text follows.
    pub(crate) panic: u8,
    /// The result could not be serialized; why follows.
    pub(crate) encode: u8,
    /// The argument could not be decoded (nor the rest of the chunk); why
    /// follows.
    pub(crate) decode: u8,
}

/// Appends `s` as a postcard string.
pub(crate) fn push_text(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail, and a str always encodes.
    let _ = postcard::to_io(s, &mut *out);
}

thread_local! {
    /// This thread runs a task (or a pool's initializer): a panic is
    /// caught and reported.
    static REPORTED: Cell<bool> = const { Cell::new(false) };
    /// Where the last reported panic happened (and its backtrace).
    static PANIC_SITE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Whether the environment asks for backtraces, as std reads it:
/// `RUST_LIB_BACKTRACE` first, then `RUST_BACKTRACE`; `0` means no.
fn backtrace_wanted() -> bool {
    let v = std::env::var_os("RUST_LIB_BACKTRACE").or_else(|| std::env::var_os("RUST_BACKTRACE"));
    v.is_some_and(|v| v != "0")
}

/// Installs the workers' panic hook, once per process (a forked child
/// inherits it): a panic on a thread running a task (see [`caught`]) has
/// its location, and a backtrace if asked, noted for the report and is not
/// printed; any other goes to the previous hook.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !REPORTED.try_with(Cell::get).unwrap_or(false) {
                return previous(info);
            }
            let mut site = String::new();
            if let Some(l) = info.location() {
                let _ = write!(site, " (at {}:{}:{})", l.file(), l.line(), l.column());
            }
            if backtrace_wanted() {
                let bt = std::backtrace::Backtrace::force_capture();
                let _ = write!(site, "\nworker backtrace:\n{bt}");
            }
            let _ = PANIC_SITE.try_with(|s| *s.borrow_mut() = Some(site));
        }));
    });
}

/// Runs `f`, catching a panic: its text is the message, where it
/// happened, and the backtrace if asked (see [`install_panic_hook`]).
pub(crate) fn caught<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    PANIC_SITE.set(None);
    REPORTED.set(true);
    let r = catch_unwind(AssertUnwindSafe(f));
    REPORTED.set(false);
    r.map_err(|p| {
        let mut text = crate::process::panic_text(&*p);
        if let Some(site) = PANIC_SITE.take() {
            text.push_str(&site);
        }
        text
    })
}

/// Runs the `count` items of one chunk through `call`, appending one
/// tagged item per argument to `out`.
pub(crate) fn run_items<A: DeserializeOwned, R: Serialize>(
    tags: &ItemTags,
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
                    out.push(tags.decode);
                    push_text(out, &msg);
                }
                return;
            }
        };
        match caught(|| call(a)) {
            Ok(r) => {
                let mark = out.len();
                out.push(tags.ok);
                if let Err(e) = postcard::to_io(&r, &mut *out) {
                    out.truncate(mark);
                    out.push(tags.encode);
                    push_text(out, &format!("the result could not be serialized: {e}"));
                }
            }
            Err(text) => {
                out.push(tags.panic);
                push_text(out, &text);
            }
        }
    }
}

/// A function to call with a job's outcome `O` once the job completes.
pub(crate) type Callback<O> = Box<dyn FnOnce(&O) + Send>;

/// How a result handle turns its job's outcome `O` into its result.
pub(crate) type Decode<O, V, E> = fn(&O) -> Result<V, E>;

/// A result handle of either pool (the local pool's `AsyncResult`, the
/// Redis pool's `RedisAsyncResult`): a job whose outcome comes later, and
/// how the handle decodes it. Each pool keeps its jobs its own way; the
/// callbacks are built once, here.
pub(crate) trait ResultHandle: Sized {
    /// The job's outcome, as the pool keeps it.
    type Outcome: 'static;
    /// What the handle's `get` returns.
    type Value: 'static;
    /// What the handle's `get` fails with.
    type Error: 'static;

    /// How this handle decodes its job's outcome.
    fn decoder(&self) -> Decode<Self::Outcome, Self::Value, Self::Error>;

    /// Calls `cb` with the job's outcome: now, if the job completed, else
    /// when it does (kept in the job's books, as [`keep_or_run`] does).
    fn on_done(&self, cb: Callback<Self::Outcome>);

    /// Calls `f` with the decoded value once the job completes, if it
    /// decodes to one.
    fn add_callback(self, f: impl FnOnce(&Self::Value) + Send + 'static) -> Self {
        let decode = self.decoder();
        self.on_done(Box::new(move |o| {
            if let Ok(v) = decode(o) {
                f(&v)
            }
        }));
        self
    }

    /// Calls `f` with the error once the job completes, if it decodes to
    /// one.
    fn add_error_callback(self, f: impl FnOnce(&Self::Error) + Send + 'static) -> Self {
        let decode = self.decoder();
        self.on_done(Box::new(move |o| {
            if let Err(e) = decode(o) {
                f(&e)
            }
        }));
        self
    }
}

/// A callback for a job (its outcome if it completed, the list of
/// callbacks to run when it does): keeps `cb` in the list, or hands it
/// back with the outcome, to run once the pool's lock is released.
pub(crate) fn keep_or_run<O>(
    completed: &Option<Arc<O>>,
    callbacks: &mut Vec<Callback<O>>,
    cb: Callback<O>,
) -> Option<(Callback<O>, Arc<O>)> {
    match completed {
        Some(o) => Some((cb, o.clone())),
        None => {
            callbacks.push(cb);
            None
        }
    }
}
