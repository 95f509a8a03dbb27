//! Async forms of [`Queue`] and [`JoinableQueue`] (features `tokio` and
//! `serde`), on the futex reactor (see [`crate::aio`]).
//!
//! A get or put here is the blocking one with nothing to wait for: the
//! ring's own code runs it ([`Core::get_parked`], [`Core::put_parked`]),
//! and where it would sleep it reports the state it found instead. The
//! future then arms the same bell a blocking sleeper arms and waits on its
//! sequence word through the reactor, then tries again. After a slice
//! without news the next try checks who is alive, as a blocking waiter
//! does after a slice (a large item's writer or receiver that died). The
//! slices grow from the blocking one (50 ms) to a second while nothing
//! happens ([`Backoff`]).

#![cfg(feature = "queue")]

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Backoff;
use super::reactor::{Slept, wait_word};
use crate::ring::records::{Core, Park, PutFail, SLICE};
use crate::{GetError, JoinableQueue, Queue, TryPutError};

/// Waits, after a parked try, for the change the try reported; returns
/// whether a whole slice passed without news.
async fn wait_parked(core: &Core, getter: bool, park: &Park, backoff: &mut Backoff) -> bool {
    let Some(at) = park.wait else {
        return false;
    };
    match core.arm_parked(getter, at) {
        Some((word, v)) => {
            let slept = wait_word(word, v, backoff.slice()).await;
            backoff.after(slept) == Slept::Slice
        }
        None => false,
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Takes the oldest item, waiting without blocking the thread: the
    /// async form of [`get`](Queue::get). Fails with
    /// [`GetError::Closed`] once the queue is closed and drained.
    ///
    /// Cancellation: an item is taken out of the ring only in the step that
    /// returns it, so a dropped future loses none. A large (chunked) item
    /// received in part when the future is dropped is kept in this handle,
    /// as at a `get_timeout` deadline, and the next get of this process
    /// goes on with it.
    ///
    /// The consumers' side lock is taken by blocking, as `get` does: it is
    /// held by another consumer for one copy only (a consumer that died
    /// holding it is noticed within about 40 ms).
    pub async fn get_async(&self) -> Result<T, GetError> {
        let mut park = Park::default();
        let mut backoff = Backoff::new(SLICE);
        loop {
            let r = self.core.get_parked(&mut park);
            if r.is_ok() || park.wait.is_none() {
                return self.get_outcome(&r);
            }
            park.suspect = wait_parked(&self.core, true, &park, &mut backoff).await;
        }
    }

    /// Puts `item`, waiting for room without blocking the thread: the async
    /// form of [`put`](Queue::put). Fails only when the queue is closed (or
    /// the item cannot be encoded).
    ///
    /// Cancellation: the item goes into the ring only in the step that
    /// returns `Ok`; a dropped future drops the item without putting it,
    /// and leaves nothing half-written.
    ///
    /// A queue with a spill (made by `new` or `bounded`) takes any item up
    /// to 2 GiB whole. Otherwise (a queue made by `with_capacity`, or a
    /// larger item) an item whose encoding is larger than a quarter of the
    /// ring (a chunked item) goes in only when the ring can take it whole: the
    /// future waits until it can, then puts it without waiting. So such an
    /// item larger than the whole ring is refused with
    /// [`TryPutError::Full`] (use `put`, which streams it, on a blocking
    /// thread); the other errors are [`put`](Queue::put)'s.
    pub async fn put_async(&self, item: T) -> Result<(), TryPutError<T>> {
        let bytes = match postcard::to_stdvec(&item) {
            Ok(v) => v,
            Err(e) => return Err(TryPutError::Encode(item, e.to_string())),
        };
        let core = &self.core;
        let mut park = Park::default();
        let mut backoff = Backoff::new(SLICE);
        if bytes.len() > core.whole_max() {
            if bytes.len() + bytes.len() / 8 + 64 > core.cap() {
                return Err(TryPutError::Full(item));
            }
            loop {
                // A zero deadline: whole in one go, or given up cleanly.
                let r = core.put_with(
                    &bytes,
                    crate::deadline::Deadline::after(Duration::ZERO),
                    &mut || crate::ring::records::OnWait::Stop,
                );
                match r {
                    Ok(()) => return Ok(()),
                    Err(PutFail::Closed) => {
                        return Err(self.put_error(item, PutFail::Closed).into());
                    }
                    Err(PutFail::Full) => {}
                }
                // Wait for the consumers to free room (or for any change).
                park.wait = Some((core.snapshot(), true));
                wait_parked(core, false, &park, &mut backoff).await;
            }
        }
        loop {
            match core.put_parked(&bytes, &mut park) {
                Ok(()) => return Ok(()),
                Err(fail) if park.wait.is_none() => {
                    return Err(self.put_error(item, fail).into());
                }
                Err(_) => {}
            }
            park.suspect = wait_parked(core, false, &park, &mut backoff).await;
        }
    }
}

impl<T> JoinableQueue<T> {
    /// Waits, without blocking the thread, until every item put has been
    /// marked done: the async form of [`join`](JoinableQueue::join).
    ///
    /// Cancellation: dropping the future changes nothing.
    pub async fn join_async(&self) {
        let w = &self.queue.core.shared().unfinished;
        loop {
            let v = w.load(Ordering::Acquire);
            if v == 0 {
                return;
            }
            // `task_done` wakes every sleeper when the count reaches 0; no
            // liveness to check (a killed worker's task stays unfinished,
            // as in Python).
            wait_word(w, v, Backoff::MAX).await;
        }
    }
}
