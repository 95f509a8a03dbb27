//! Async forms of the pool's handles (feature `tokio`): [`AsyncResult`]
//! as a `Future`, [`IMap::next_async`].
//!
//! An async waiter runs the pool's bookkeeping as a blocking one does (it
//! collects the results that came, replaces dead workers, runs callbacks),
//! but where the blocking one sleeps in the results ring it parks its task
//! on the ring's bell through the futex reactor ([`crate::aio`]): the same
//! handshake as a blocking consumer, so a worker's put wakes it with the
//! very `FUTEX_WAKE` it already makes, with no thread per waiter and no
//! polling. The reactor also times the wait: after a slice without news
//! the waiter looks at the workers (a worker killed in the middle of a
//! task fails that task). The slices start at the pool's scan interval
//! (20 ms) and double while nothing happens, up to a second
//! ([`Backoff`]), so a thousand idle waiters cost next to nothing and a
//! dead worker is noticed within about a second.
//!
//! The pool's state is locked by blocking, as every call on the pool does:
//! another thread in a blocking call on the same pool holds it for one
//! wait of at most 20 ms at a time, which holds up the runtime's thread as
//! long. Give an async program's pool async waiters only.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::imap::Step;
use super::scheduler::{Inner, Outcome, State};
use super::{AsyncResult, IMap, SCAN, TaskError};
use crate::aio::Backoff;
use crate::aio::reactor::{Slept, wait_word};
use crate::deadline::Deadline;
use crate::ring::records::{Park, Snap};

/// What collecting without waiting found.
enum Collected {
    /// Results came (or the workers were looked at): look again.
    Some,
    /// Nothing: the ring's state to wait for a change of.
    Wait((Snap, bool)),
    /// The results ring is closed (the pool is stopping).
    Closed,
}

impl Inner {
    /// The async form of [`pump`](Inner::pump)'s look: looks at the workers
    /// when a scan is due (or `suspect`: a whole slice passed without
    /// news), takes every result there is, and says what to wait for when
    /// there was none. Never waits.
    fn collect_parked(&self, st: &mut State, suspect: bool) -> Collected {
        if suspect || std::time::Instant::now() >= st.next_scan {
            self.scan(st);
        }
        let mut park = Park {
            suspect,
            ..Park::default()
        };
        match self.results.get_parked(&mut park) {
            Ok(p) => {
                self.handle(st, p);
                self.drain(st);
                Collected::Some
            }
            Err(_) => match park.wait {
                Some(at) => Collected::Wait(at),
                None => Collected::Closed,
            },
        }
    }

    /// Waits, without blocking the thread, for the change `found` calls
    /// for (a result in the ring) or for the end of a slice; returns
    /// whether a whole slice passed without news.
    async fn park(&self, found: Collected, backoff: &mut Backoff) -> bool {
        let slept = match found {
            Collected::Some => return false,
            Collected::Wait(at) => match self.results.arm_parked(true, at) {
                Some((word, v)) => wait_word(word, v, backoff.slice()).await,
                // Changed meanwhile: look again at once.
                None => return false,
            },
            Collected::Closed => {
                // Nothing will ring: let the slice pass (the reactor times
                // it on a word of this future that nobody wakes).
                let idle = AtomicU32::new(0);
                wait_word(&idle, 0, backoff.slice()).await
            }
        };
        backoff.after(slept) == Slept::Slice
    }

    /// One look of [`wait_job_async`](Inner::wait_job_async): the job's
    /// outcome (`None`: the job is gone), or what to wait for.
    fn look_job(
        &self,
        job: u32,
        suspect: bool,
    ) -> std::result::Result<Option<Arc<Outcome>>, Collected> {
        let mut st = self.lock();
        let r = match st.jobs.get(&job).map(|j| j.completed.clone()) {
            None => Ok(None),
            Some(Some(o)) => Ok(Some(o)),
            Some(None) => Err(self.collect_parked(&mut st, suspect)),
        };
        self.finish(st);
        r
    }

    /// The async form of [`wait_job`](Inner::wait_job) without a deadline:
    /// the job's outcome, `None` if the job is gone.
    async fn wait_job_async(&self, job: u32) -> Option<Arc<Outcome>> {
        let mut backoff = Backoff::new(SCAN);
        let mut suspect = false;
        loop {
            let found = match self.look_job(job, suspect) {
                Ok(done) => return done,
                Err(found) => found,
            };
            suspect = self.park(found, &mut backoff).await;
        }
    }
}

/// The future of an [`AsyncResult`]'s result: see
/// [`AsyncResult::get_async`].
#[must_use = "futures do nothing unless polled"]
pub struct ResultFuture<'a, T> {
    wait: Pin<Box<dyn Future<Output = Option<Arc<Outcome>>> + Send + 'a>>,
    decode: fn(&Outcome) -> Result<T, TaskError>,
}

impl<T> Future for ResultFuture<'_, T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, TaskError>> {
        let decode = self.decode;
        match self.wait.as_mut().poll(cx) {
            Poll::Ready(Some(o)) => Poll::Ready(decode(&o)),
            Poll::Ready(None) => Poll::Ready(Err(TaskError::PoolTerminated)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> std::fmt::Debug for ResultFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultFuture").finish_non_exhaustive()
    }
}

impl<T> AsyncResult<T> {
    /// Waits for the result without blocking the thread: the async form of
    /// [`get`](AsyncResult::get), with its errors. `(&result).await` is the
    /// same.
    ///
    /// Cancellation: the future only borrows the handle, and results are
    /// collected into the pool's bookkeeping before anything waits, so a
    /// dropped future loses nothing: the result can be awaited again, or
    /// fetched with `get`.
    ///
    /// While it waits, the future does what any waiting call on the pool
    /// does (see the [module documentation](super)): it collects results,
    /// replaces workers that died (noticed within about a second while
    /// nothing else happens) and runs callbacks, on the polling thread.
    pub fn get_async(&self) -> ResultFuture<'_, T> {
        ResultFuture {
            wait: Box::pin(self.inner.wait_job_async(self.job)),
            decode: self.decode,
        }
    }

    /// Waits until the result is there without blocking the thread: the
    /// async form of [`wait`](AsyncResult::wait). Cancellation changes
    /// nothing.
    pub async fn wait_async(&self) {
        self.inner.wait_job_async(self.job).await;
    }
}

impl<'a, T> IntoFuture for &'a AsyncResult<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = ResultFuture<'a, T>;

    /// `(&result).await`: see [`AsyncResult::get_async`].
    fn into_future(self) -> ResultFuture<'a, T> {
        self.get_async()
    }
}

/// The future of an [`AsyncResult`] awaited by value (`result.await`): it
/// owns the handle, so it can be spawned as a task. Dropping it drops the
/// handle (the result is then lost to this process, as when the handle is
/// dropped; its callbacks still run).
#[must_use = "futures do nothing unless polled"]
pub struct OwnedResultFuture<T> {
    wait: ResultFuture<'static, T>,
    // Kept for its `Drop` (the pool forgets the job once it is dropped).
    handle: AsyncResult<T>,
}

impl<T> Future for OwnedResultFuture<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, TaskError>> {
        Pin::new(&mut self.wait).poll(cx)
    }
}

impl<T> std::fmt::Debug for OwnedResultFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedResultFuture")
            .field("job", &self.handle.job)
            .finish_non_exhaustive()
    }
}

impl<T> IntoFuture for AsyncResult<T> {
    type Output = Result<T, TaskError>;
    type IntoFuture = OwnedResultFuture<T>;

    /// `result.await`: see [`OwnedResultFuture`].
    fn into_future(self) -> OwnedResultFuture<T> {
        let (inner, job) = (self.inner.clone(), self.job);
        OwnedResultFuture {
            wait: ResultFuture {
                wait: Box::pin(async move { inner.wait_job_async(job).await }),
                decode: self.decode,
            },
            handle: self,
        }
    }
}

impl<A: Serialize, R: DeserializeOwned> IMap<'_, A, R> {
    /// The next result, waiting without blocking the thread: the async
    /// form of [`next`](Iterator::next) (`None` when every result was
    /// yielded).
    ///
    /// Cancellation: a result is taken only in the step that returns it;
    /// a dropped future loses none (the next call yields it).
    ///
    /// Handing the next input items to the workers (a bounded number of
    /// chunks ahead of what was yielded) may wait for room in the task
    /// ring on the calling thread, as `next` does. The future borrows the
    /// iterator, whose input need not be `Send`: await it on the thread
    /// that made it (a current-thread runtime, a `LocalSet`) unless the
    /// input is.
    pub async fn next_async(&mut self) -> Option<Result<R, TaskError>> {
        let mut backoff = Backoff::new(SCAN);
        let mut suspect = false;
        loop {
            let mut found = Collected::Some;
            let inner = self.inner.clone();
            let step = self.step(Deadline::NEVER, &mut |inner, st| {
                found = inner.collect_parked(st, suspect);
                matches!(found, Collected::Some)
            });
            match step {
                Step::Ready(r) => return r,
                Step::Wait => suspect = inner.park(found, &mut backoff).await,
            }
        }
    }
}
