//! [`AsyncResult`]: a job's result to come.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::TaskError;
use super::scheduler::{Callback, Inner, Outcome};
use crate::deadline::Deadline;
use crate::task_items::{ResultHandle, keep_or_run};

/// The result of [`Pool::apply_async`](super::Pool::apply_async) or [`Pool::map_async`](super::Pool::map_async) to come
/// (Python's `AsyncResult`). Waiting on it also runs the pool (see the
/// [module documentation](super)).
pub struct AsyncResult<T> {
    pub(super) inner: Arc<Inner>,
    pub(super) job: u32,
    pub(super) decode: fn(&Outcome) -> Result<T, TaskError>,
}

impl<T> AsyncResult<T> {
    /// Waits for the result. A failed task gives its error:
    /// [`TaskError::TaskFailed`] (a panic, a result that could not be
    /// encoded), [`TaskError::WorkerDied`], [`TaskError::PoolTerminated`],
    /// [`TaskError::InitializerFailed`], [`TaskError::PoolClosed`] (work
    /// left over when the pool was closed), [`TaskError::Codec`].
    pub fn get(&self) -> Result<T, TaskError> {
        match self.inner.wait_job(self.job, Deadline::NEVER) {
            Some(o) => (self.decode)(&o),
            None => Err(TaskError::PoolTerminated),
        }
    }

    /// [`get`](AsyncResult::get), waiting at most `timeout`; then
    /// [`TaskError::Timeout`] (the result may still come: call again).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, TaskError> {
        match self.inner.wait_job(self.job, Deadline::after(timeout)) {
            Some(o) => (self.decode)(&o),
            None => Err(TaskError::Timeout),
        }
    }

    /// Waits until the result is there (Python's `wait()`).
    pub fn wait(&self) {
        self.inner.wait_job(self.job, Deadline::NEVER);
    }

    /// Waits at most `timeout`; returns whether the result is there.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.inner
            .wait_job(self.job, Deadline::after(timeout))
            .is_some()
    }

    /// Whether the result is there (collecting results that came, without
    /// waiting).
    pub fn ready(&self) -> bool {
        self.inner
            .wait_job(self.job, Deadline::after(Duration::ZERO))
            .is_some()
    }

    /// Whether the call completed without error; `None` while not
    /// [`ready`](AsyncResult::ready) (Python raises `ValueError` there).
    pub fn successful(&self) -> Option<bool> {
        self.inner
            .wait_job(self.job, Deadline::after(Duration::ZERO))
            .map(|o| (self.decode)(&o).is_ok())
    }
}

impl<T: 'static> ResultHandle for AsyncResult<T> {
    type Outcome = Outcome;
    type Value = T;
    type Error = TaskError;

    fn decoder(&self) -> fn(&Outcome) -> Result<T, TaskError> {
        self.decode
    }

    fn on_done(&self, cb: Callback) {
        let mut st = self.inner.lock();
        let now = match st.jobs.get_mut(&self.job) {
            Some(j) => keep_or_run(&j.completed, &mut j.callbacks, cb),
            // The job is gone: nothing will complete it.
            None => None,
        };
        drop(st);
        if let Some((cb, o)) = now {
            cb(&o);
        }
    }
}

impl<T: 'static> AsyncResult<T> {
    /// Calls `f` with the result once it is there, if it is not an error
    /// (Python's `callback`), in the thread whose pool call collects it, or
    /// at once if it is already there. It runs even if this handle was
    /// dropped, once some call on the pool collects the result. If `f`
    /// panics, the panic surfaces in that call, after the other callbacks
    /// ran.
    pub fn callback(self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.add_callback(f)
    }

    /// Calls `f` with the error once the result is there, if it is one
    /// (Python's `error_callback`): see [`callback`](AsyncResult::callback).
    pub fn error_callback(self, f: impl FnOnce(&TaskError) + Send + 'static) -> Self {
        self.add_error_callback(f)
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        self.inner.drop_handle(self.job);
    }
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job)
            .finish()
    }
}
