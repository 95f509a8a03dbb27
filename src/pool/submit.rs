//! Giving the pool work: `apply`, `map`, `starmap`, `imap` and their
//! asynchronous and chunked forms, all cut into chunks of tasks put on the
//! task ring.

use std::collections::VecDeque;
use std::sync::MutexGuard;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;

use super::scheduler::{Outcome, State, decode_all, decode_one, default_chunksize};
use super::worker::{self, TaskCode};
use super::{AsyncResult, IMAP_AHEAD_PER_WORKER, IMap, Pool, TaskError};

/// A chunk size, which must be at least 1.
fn nonzero(chunksize: usize) -> Result<usize, TaskError> {
    match chunksize {
        0 => Err(TaskError::InvalidArgument("chunksize must be at least 1")),
        c => Ok(c),
    }
}

impl Pool {
    /// Locks the pool's state for a new job, refused if the pool is closed,
    /// terminated or broken; then `code`'s index in the code table, with
    /// the state still locked.
    fn admit(&self, code: Result<TaskCode>) -> Result<(MutexGuard<'_, State>, u32), TaskError> {
        let inner = &self.inner;
        let mut st = inner.lock();
        if let Some(e) = inner.refusal(&st) {
            return Err(e);
        }
        let function = st
            .table
            .index(code.map_err(TaskError::from_internal)?)
            .map_err(TaskError::from_internal)?;
        Ok((st, function))
    }

    fn start_map<X: Serialize, T>(
        &self,
        code: Result<TaskCode>,
        items: Vec<X>,
        chunksize: Option<usize>,
        decode: fn(&Outcome) -> Result<T, TaskError>,
    ) -> Result<AsyncResult<T>, TaskError> {
        let inner = &self.inner;
        let cs = match chunksize {
            Some(c) => nonzero(c)?,
            None => default_chunksize(items.len(), inner.processes),
        };
        let (mut st, function) = self.admit(code)?;
        let job = inner.new_job(&mut st, false);
        let mut buf = Vec::with_capacity(64);
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            inner.add_chunk(&mut st, job, function, items.by_ref().take(cs), &mut buf);
        }
        inner.seal(&mut st, job);
        inner.finish(st);
        Ok(AsyncResult {
            inner: self.inner.clone(),
            job,
            decode,
        })
    }

    /// Runs `f(arg)` in a worker and waits for its result (Python's
    /// `apply`). `f` is a function, a closure that captures nothing, or an
    /// `fn` pointer (see [Tasks](super#tasks)); the other submit methods
    /// take the same. A panic in `f` is [`TaskError::TaskFailed`] with its message
    /// and location (and the worker's backtrace when `RUST_BACKTRACE` is
    /// set); the worker does not also print it.
    pub fn apply<F, A, R>(&self, f: F, arg: A) -> Result<R, TaskError>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Queues `f(arg)` and returns a handle to its result (Python's
    /// `apply_async`); add callbacks with [`AsyncResult::callback`] and
    /// [`AsyncResult::error_callback`].
    pub fn apply_async<F, A, R>(&self, f: F, arg: A) -> Result<AsyncResult<R>, TaskError>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let code = worker::code1(f);
        self.start_map(code, vec![arg], Some(1), decode_one::<R>)
    }

    /// `f` over every item, results in order (Python's `map`), in chunks of
    /// the default size (`len / (4 * processes)` rounded up). The first
    /// failed task's error is returned.
    pub fn map<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, TaskError>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async(f, items)?.get()
    }

    /// [`map`](Pool::map) with chunks of `chunksize` items.
    pub fn map_chunked<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, TaskError>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async_chunked(f, items, chunksize)?.get()
    }

    /// [`map`](Pool::map) without waiting: a handle to the list of results.
    pub fn map_async<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>, TaskError>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let code = worker::code1(f);
        self.start_map(code, items.into_iter().collect(), None, decode_all::<R>)
    }

    /// [`map_async`](Pool::map_async) with chunks of `chunksize` items.
    pub fn map_async_chunked<F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, TaskError>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let code = worker::code1(f);
        self.start_map(
            code,
            items.into_iter().collect(),
            Some(chunksize),
            decode_all::<R>,
        )
    }

    /// `f(a, b)` for every pair, results in order (Python's `starmap`).
    /// For more arguments, use [`map`](Pool::map) with a tuple.
    pub fn starmap<F, A, B, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = (A, B)>,
    ) -> Result<Vec<R>, TaskError>
    where
        F: Fn(A, B) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.starmap_async(f, items, None)?.get()
    }

    /// [`starmap`](Pool::starmap) without waiting, with chunks of
    /// `chunksize` items (`None`: the default size).
    pub fn starmap_async<F, A, B, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = (A, B)>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>, TaskError>
    where
        F: Fn(A, B) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let code = worker::code2(f);
        self.start_map(
            code,
            items.into_iter().collect(),
            chunksize,
            decode_all::<R>,
        )
    }

    fn start_imap<'a, F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
        ordered: bool,
    ) -> IMap<'a, A, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let inner = &self.inner;
        let mut it = IMap {
            inner: self.inner.clone(),
            job: None,
            function: 0,
            input: Box::new(std::iter::empty()),
            chunksize,
            ordered,
            ahead: IMAP_AHEAD_PER_WORKER * inner.processes,
            submitted: 0,
            taken: 0,
            exhausted: true,
            buffered: VecDeque::new(),
            buf: Vec::new(),
        };
        let started = (|| {
            nonzero(chunksize)?;
            // A function the pool cannot run is refused before the pool's
            // state is looked at.
            let code = worker::code1(f).map_err(TaskError::from_internal)?;
            let (mut st, function) = self.admit(Ok(code))?;
            Ok((inner.new_job(&mut st, true), function))
        })();
        match started {
            Ok((job, function)) => {
                it.job = Some(job);
                it.function = function;
                it.input = Box::new(items.into_iter());
                it.exhausted = false;
            }
            // Nothing was submitted: the error is the only item.
            Err(e) => it.buffered.push_back(Err(e)),
        }
        it
    }

    /// A lazy iterator of `f` over `items`, results in order (Python's
    /// `imap`, chunk size 1). Items are taken from `items` as results are
    /// consumed, a bounded number of chunks ahead.
    ///
    /// Errors come per item: a task's panic is that item's
    /// [`TaskError::TaskFailed`]. An error found before any task is submitted
    /// (the pool is closed, `f` is not in the main executable, a chunk size
    /// of 0) is the first and only item, so `for r in pool.imap(..)` always
    /// sees it. [`IMap::next_timeout`] waits a bounded time for the next
    /// result (Python's `it.next(timeout)`).
    pub fn imap<'a, F, A, R>(&self, f: F, items: impl IntoIterator<Item = A> + 'a) -> IMap<'a, A, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, 1, true)
    }

    /// [`imap`](Pool::imap) with chunks of `chunksize` items.
    pub fn imap_chunked<'a, F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> IMap<'a, A, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, chunksize, true)
    }

    /// Like [`imap`](Pool::imap), but results come in the order they are
    /// finished (Python's `imap_unordered`).
    pub fn imap_unordered<'a, F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
    ) -> IMap<'a, A, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, 1, false)
    }

    /// [`imap_unordered`](Pool::imap_unordered) with chunks of `chunksize`
    /// items (each chunk's results stay together, in order).
    pub fn imap_unordered_chunked<'a, F, A, R>(
        &self,
        f: F,
        items: impl IntoIterator<Item = A> + 'a,
        chunksize: usize,
    ) -> IMap<'a, A, R>
    where
        F: Fn(A) -> R + Copy + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.start_imap(f, items, chunksize, false)
    }
}
