//! Start methods as values: a [`Context`] is Python's
//! `multiprocessing.get_context("fork")` / `get_context("spawn")`, and
//! [`set_start_method`] picks the default context that [`Process::call`]
//! uses.

use std::sync::atomic::{AtomicU8, Ordering};

#[cfg(feature = "spawn")]
use super::Process;
#[cfg(feature = "spawn")]
use super::error::StartError;
use super::error::UnknownStartMethod;
use crate::error::Result;

/// How a child process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMethod {
    /// `fork`: the child is a copy of the parent (the default on Linux, as
    /// in Python before 3.14).
    Fork,
    /// A fresh run of the program (`/proc/self/exe`) that calls the entry
    /// function: safe from multithreaded parents. Needs the `spawn` feature
    /// and `init()` first in `main`.
    Spawn,
}

impl StartMethod {
    /// Python's name for it: `"fork"` or `"spawn"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
        }
    }
}

/// A start method as a value, like the context Python's
/// `multiprocessing.get_context(method)` returns: processes made through it
/// start with its method, whatever the default is.
///
/// ```
/// use multiproc::process::{StartMethod, get_context};
///
/// let ctx = get_context("spawn")?;
/// assert_eq!(ctx.start_method(), StartMethod::Spawn);
/// let e = get_context("forkserver").unwrap_err();
/// assert_eq!(e.name, "forkserver");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// The context for the start method named `method` (`"fork"` or
/// `"spawn"`; Python's `forkserver` is not available).
///
/// # Errors
///
/// [`UnknownStartMethod`] for any other name (Python raises `ValueError`).
pub fn get_context(method: &str) -> Result<Context, UnknownStartMethod> {
    match method {
        "fork" => Ok(Context::new(StartMethod::Fork)),
        "spawn" => Ok(Context::new(StartMethod::Spawn)),
        _ => Err(UnknownStartMethod {
            name: method.to_owned(),
        }),
    }
}

/// The default context's start method: fork unless [`set_start_method`]
/// chose another.
static DEFAULT: AtomicU8 = AtomicU8::new(0);

/// Sets the default context's start method, the one [`Process::call`] uses
/// from now on (Python's `set_start_method`). [`Process::new`] always forks
/// and [`Process::spawn`] always spawns.
pub fn set_start_method(method: StartMethod) {
    DEFAULT.store(
        match method {
            StartMethod::Fork => 0,
            StartMethod::Spawn => 1,
        },
        Ordering::Relaxed,
    );
}

/// The default context's start method, the one [`Process::call`] uses.
pub fn start_method() -> StartMethod {
    Context::default_context().method
}

impl Context {
    /// The context for `method`.
    pub fn new(method: StartMethod) -> Context {
        Context { method }
    }

    /// The default context (see [`set_start_method`]).
    pub fn default_context() -> Context {
        Context::new(match DEFAULT.load(Ordering::Relaxed) {
            1 => StartMethod::Spawn,
            _ => StartMethod::Fork,
        })
    }

    /// Its start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that runs `entry(args)` with this context's start method
    /// and returns its result (Python's `ctx.Process(target=entry,
    /// args=args)`): the same call runs in a forked child or in a spawned
    /// one. See [`Process::spawn`] for what spawning asks of the program
    /// (`init()` first in `main`).
    #[cfg(feature = "spawn")]
    pub fn process<A, T>(
        &self,
        entry: fn(A) -> T,
        args: A,
    ) -> Result<Process<'static, T>, StartError>
    where
        A: serde::Serialize + serde::de::DeserializeOwned + 'static,
        T: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        match self.method {
            StartMethod::Spawn => Process::spawn(entry, args),
            StartMethod::Fork => Ok(Process::with_result(move || entry(args))),
        }
    }
}

impl Default for Context {
    /// The default context.
    fn default() -> Context {
        Context::default_context()
    }
}
