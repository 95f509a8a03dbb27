//! [`IMap`]: the iterator of `imap`, keeping a bounded number of chunks
//! submitted ahead of what it yielded.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::TaskError;
use super::scheduler::{ChunkOutcome, Inner, State, decode_chunk};
use crate::deadline::Deadline;

/// The iterator of [`Pool::imap`](super::Pool::imap) and [`Pool::imap_unordered`](super::Pool::imap_unordered): one
/// `Result` per item. An error found before any task was submitted is its
/// only item.
pub struct IMap<'a, A, R> {
    pub(super) inner: Arc<Inner>,
    /// None: the iterator failed to start (its error is in `buffered`).
    pub(super) job: Option<u32>,
    pub(super) function: u32,
    pub(super) input: Box<dyn Iterator<Item = A> + 'a>,
    pub(super) chunksize: usize,
    pub(super) ordered: bool,
    pub(super) ahead: usize,
    pub(super) submitted: usize,
    pub(super) taken: usize,
    pub(super) exhausted: bool,
    pub(super) buffered: VecDeque<Result<R, TaskError>>,
    pub(super) buf: Vec<u8>,
}

impl<A: Serialize, R: DeserializeOwned> IMap<'_, A, R> {
    /// Submits chunks until `ahead` are out or the input ends.
    fn top_up(&mut self, st: &mut State) {
        let Some(job) = self.job else {
            return;
        };
        while !self.exhausted && self.submitted - self.taken < self.ahead {
            let mut first = self.input.next();
            if first.is_none() {
                self.exhausted = true;
                self.inner.seal(st, job);
                break;
            }
            let cs = self.chunksize;
            let input = &mut self.input;
            let items = std::iter::from_fn(|| first.take()).chain(input.by_ref().take(cs - 1));
            self.inner
                .add_chunk(st, job, self.function, items, &mut self.buf);
            self.submitted += 1;
        }
    }

    /// The next result, waiting at most `timeout` for it (Python's
    /// `it.next(timeout)`): `Some(Err(TaskError::Timeout))` if none came in
    /// time. The iterator is still usable after a timeout: the result that
    /// was late comes from a later call. `None` when every result was
    /// yielded.
    ///
    /// The timeout bounds the wait for results; handing the next input
    /// items to the workers (a bounded number of chunks ahead) may also
    /// wait for room in the task ring, as [`next`](Iterator::next) does.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R, TaskError>> {
        self.next_until(Deadline::after(timeout))
    }

    fn next_until(&mut self, deadline: Deadline) -> Option<Result<R, TaskError>> {
        let mut pump = |inner: &Inner, st: &mut State| {
            inner.pump(st, deadline);
            true
        };
        loop {
            if let Step::Ready(r) = self.step(deadline, &mut pump) {
                return r;
            }
        }
    }

    /// Takes the next result if there is one; while there is none, asks
    /// `on_empty` (with the state locked) to collect or wait, and looks
    /// again if it says so, else returns [`Step::Wait`] (the async form
    /// waits outside the lock).
    pub(super) fn step(
        &mut self,
        deadline: Deadline,
        on_empty: &mut dyn FnMut(&Inner, &mut State) -> bool,
    ) -> Step<R> {
        loop {
            if let Some(r) = self.buffered.pop_front() {
                return Step::Ready(Some(r));
            }
            let Some(job) = self.job else {
                return Step::Ready(None);
            };
            let inner = self.inner.clone();
            let mut st = inner.lock();
            self.top_up(&mut st);
            if self.exhausted && self.taken == self.submitted {
                inner.finish(st);
                return Step::Ready(None);
            }
            let Some(j) = st.jobs.get_mut(&job) else {
                inner.finish(st);
                return Step::Ready(None);
            };
            let next = if self.ordered {
                let i = self.taken;
                j.chunks
                    .get(i)
                    .is_some_and(|c| c.outcome.is_some())
                    .then_some(i)
            } else {
                j.arrivals.pop_front().map(|i| i as usize)
            };
            match next.and_then(|i| j.chunks.get_mut(i)) {
                Some(c) => {
                    decode_chunk(c, &mut self.buffered);
                    // Consumed: free its bytes.
                    c.outcome = Some(ChunkOutcome::Done(Vec::new()));
                    c.count = 0;
                    self.taken += 1;
                    inner.finish(st);
                }
                None if deadline.expired() => {
                    inner.finish(st);
                    return Step::Ready(Some(Err(TaskError::Timeout)));
                }
                None => {
                    let again = on_empty(&inner, &mut st);
                    inner.finish(st);
                    if !again {
                        return Step::Wait;
                    }
                }
            }
        }
    }
}

/// What one [`IMap::step`] found.
pub(super) enum Step<R> {
    /// The iterator's next item.
    Ready(Option<Result<R, TaskError>>),
    /// No result yet: wait, then step again.
    Wait,
}

impl<A: Serialize, R: DeserializeOwned> Iterator for IMap<'_, A, R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Result<R, TaskError>> {
        self.next_until(Deadline::NEVER)
    }
}

impl<A, R> Drop for IMap<'_, A, R> {
    fn drop(&mut self) {
        let Some(job) = self.job else {
            return;
        };
        let mut st = self.inner.lock();
        st.jobs.remove(&job);
        self.inner.close_ring_if_done(&st);
    }
}

impl<A, R> fmt::Debug for IMap<'_, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("job", &self.job)
            .field("ordered", &self.ordered)
            .finish()
    }
}
