//! Queues between processes, like Python's `multiprocessing.Queue`,
//! `SimpleQueue` and `JoinableQueue`.
//!
//! Items are encoded with `postcard` and copied into a ring of bytes in
//! shared memory; there is no pipe and no feeder thread. A put returns once
//! the item is in the ring, so an item put is visible to every process as
//! soon as `put` returns, and items put by one thread arrive in the order
//! they were put. Waiters spin for a few microseconds, then sleep on a futex.
//!
//! Create a queue before forking (children borrow it), or hand it to a
//! child started with the spawn start method as one of its arguments.
//!
//! ```
//! use multiproc::queue::Queue;
//!
//! let q = Queue::<String>::new()?;
//! q.put("hello".to_owned()).unwrap();
//! assert_eq!(q.qsize(), 1);
//! assert_eq!(q.get().unwrap(), "hello");
//! assert!(q.try_get().is_err());
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! A failed put hands its item back ([`PutError::into_inner`]); in a
//! function returning [`multiproc::Result`](crate::Result), `?` turns the
//! queue's errors into [`Error`](crate::Error)s (dropping the item):
//!
//! ```
//! use multiproc::queue::Queue;
//!
//! fn relay(from: &Queue<u32>, to: &Queue<u32>) -> multiproc::Result<()> {
//!     to.put(from.get()? + 1)?;
//!     Ok(())
//! }
//! let (a, b) = (Queue::new()?, Queue::bounded(1)?);
//! a.put(1)?;
//! relay(&a, &b)?;
//! assert_eq!(b.try_get()?, 2);
//! assert!(matches!(b.try_get(), Err(multiproc::queue::TryGetError::Empty)));
//! b.try_put(7)?;
//! let e: multiproc::Error = b.try_put(8).unwrap_err().into();
//! assert!(matches!(e, multiproc::Error::Full));
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # Capacity
//!
//! A queue made with [`Queue::new`] or [`Queue::bounded`] has no limit but
//! `maxsize` (0: none, as in Python): a put never waits for room (beyond
//! a spin of some microseconds for the ring's), so a child may put any
//! amount and end before anyone gets. Items go to a
//! 1 MiB ring while it has room and overflow into a spill (8 GiB of
//! address space in each process that holds the queue, taking memory only
//! as far as items fill it, given back as they are taken), in one order.
//! An item larger than a quarter of the ring goes whole to the spill; one
//! above 2 GiB is sent in chunks through the ring while the receiver
//! gathers them.
//!
//! [`Queue::with_capacity`] makes a queue held in its ring alone, which
//! bounds its memory: a put waits for room there. Each item takes its
//! encoded size rounded up to 8 bytes, plus 8. An item whose encoding
//! exceeds a quarter of that ring is sent in chunks while the receiver
//! gathers them, so items of any size go through, at the cost of blocking
//! other writers until the whole item is in the ring. The receiver's
//! buffer grows as chunks arrive, and a get that times out in the middle
//! of an item keeps what it received for the next get (see
//! [`Queue::get_timeout`]).
//!
//! # When a process is killed
//!
//! Producers serialize on one robust process-shared lock and consumers on
//! another, and every change becomes visible with a single store at its
//! end, so a process killed at any point never leaves a half-written item
//! for others to read or a wrong count, and the others go on (a killed lock
//! holder is noticed within about 40 ms).
//! What is lost:
//! - a producer killed during `put` before the item was committed: that
//!   item (it never was in the queue); for a large (chunked) item, until
//!   its last chunk was committed, the part already sent is discarded by
//!   the consumers;
//! - a consumer killed during `get` after taking the item out of the ring:
//!   that item; for a large item, from when its first chunk was taken, the
//!   whole item (its remaining chunks are discarded by other consumers);
//! - with [`JoinableQueue`], a consumer killed before `task_done` leaves its
//!   task unfinished forever (as in Python; use
//!   [`join_timeout`](JoinableQueue::join_timeout)).
//!
//! Nothing else: no other item is lost, duplicated or reordered, in the
//! ring or in the spill (a process killed while moving its side between
//! them leaves a mark the next one of its side finishes from). A waiter
//! killed while asleep leaves its futex word armed, which costs the next
//! notifier one needless wake-up call. A consumer killed after taking
//! items from the spill but before giving their pages back leaves that
//! memory (under 1 MiB) to the next consumer to give back.

mod error;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};

use crate::ring::records as ring;
use ring::{Core, GetFail, INLINE, Inline, PutFail};

use crate::deadline::Deadline;
use crate::error::{CreateError, Result};
use crate::sys::futex;

/// The default ring size: 1 MiB.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// A multi-producer, multi-consumer queue between processes, like Python's
/// `multiprocessing.Queue`.
///
/// Blocking operations wait without a timeout ([`put`](Queue::put),
/// [`get`](Queue::get)), with one ([`put_timeout`](Queue::put_timeout),
/// [`get_timeout`](Queue::get_timeout)) or not at all
/// ([`try_put`](Queue::try_put), [`try_get`](Queue::try_get)). A zero
/// timeout never waits for room or items; it may still wait briefly for
/// the queue's lock (at most about 100 ms, and only if a process died
/// holding it).
///
/// See the [module documentation](self) for the layout and for what is
/// lost when a process is killed.
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct Queue<T> {
    pub(crate) core: Arc<Core>,
    #[cfg_attr(feature = "spawn", serde(skip))]
    _items: PhantomData<fn(T) -> T>,
}

/// Another handle on the same queue, in this process: as cheap as an
/// `Arc`'s clone, so one queue can be handed to many children or threads
/// without wrapping it. (Every handle, cloned or inherited, is the same
/// queue; clones in one process also share a large item a timed-out get
/// kept, see [`get_timeout`](Queue::get_timeout).)
impl<T> Clone for Queue<T> {
    fn clone(&self) -> Queue<T> {
        Queue {
            core: self.core.clone(),
            _items: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue (`maxsize` 0): Python's `Queue()`. A put never
    /// waits (see [Capacity](self#capacity)).
    pub fn new() -> Result<Queue<T>, CreateError> {
        Self::bounded(0)
    }

    /// A queue of at most `maxsize` items (0: unbounded): Python's
    /// `Queue(maxsize)`. A put waits only for the count to fall below
    /// `maxsize`, whatever the items' sizes.
    pub fn bounded(maxsize: usize) -> Result<Queue<T>, CreateError> {
        Self::make(maxsize, DEFAULT_CAPACITY, false, true)
    }

    /// A queue of at most `maxsize` items (0: no count limit) held in a
    /// ring of `bytes` (rounded up to a power of two, from 4 KiB to 1 GiB)
    /// and nowhere else: a put waits for room in the ring, so the ring's
    /// size bounds the memory the queue uses.
    ///
    /// Fails with [`CreateError::InvalidSize`] for a ring over 1 GiB, and
    /// with [`CreateError::Os`] when the shared memory cannot be had (as
    /// every queue constructor may).
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<Queue<T>, CreateError> {
        Self::make(maxsize, bytes, false, false)
    }

    fn make(
        maxsize: usize,
        bytes: usize,
        joinable: bool,
        spill: bool,
    ) -> Result<Queue<T>, CreateError> {
        let core = if spill {
            Core::new_spilling(maxsize, bytes, joinable)
        } else {
            Core::new(maxsize, bytes, joinable)
        }
        .map_err(CreateError::from_internal)?;
        Ok(Queue {
            core: Arc::new(core),
            _items: PhantomData,
        })
    }

    /// Encodes `item` and puts it, waiting until `deadline` for room; the
    /// item comes back with why not. A put that waits for ever (`NEVER`)
    /// never reports `Full`: it tries again.
    fn put_until(&self, item: T, deadline: Deadline) -> Result<(), (T, PutFailure)> {
        let mut buf = [0u8; INLINE];
        let vec;
        let small = Small::encode(&item, &mut buf).ok();
        let (small, large): (_, &[u8]) = match small.and_then(|len| Inline::new(&buf, len)) {
            Some(s) => (Some(s), &[]),
            None => match postcard::to_stdvec(&item) {
                Ok(v) => {
                    vec = v;
                    (None, &vec)
                }
                Err(e) => return Err((item, PutFailure::Encode(e.to_string()))),
            },
        };
        loop {
            let put = match small {
                Some(s) => self.core.put_inline(s, deadline),
                None => self.core.put(large, deadline),
            };
            return match put {
                Ok(()) => Ok(()),
                Err(PutFail::Closed) if self.core.is_corrupt() => Err((item, PutFailure::Corrupt)),
                Err(PutFail::Closed) => Err((item, PutFailure::Closed)),
                Err(PutFail::Full) if deadline.remaining().is_none() => continue,
                Err(PutFail::Full) => Err((item, PutFailure::Full)),
            };
        }
    }

    /// Puts `item`, waiting as long as it takes for room (only `maxsize`,
    /// or the ring of a [`with_capacity`](Queue::with_capacity) queue, can
    /// lack room). Fails only when
    /// the queue is closed (or the item cannot be encoded).
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_until(item, Deadline::NEVER)
            .map_err(|(t, why)| match why {
                // Not reported by a put without deadline (see `put_until`).
                PutFailure::Closed | PutFailure::Full => PutError::Closed(t),
                PutFailure::Corrupt => PutError::Corrupt(t),
                PutFailure::Encode(m) => PutError::Encode(t, m),
            })
    }

    /// Puts `item` if there is room now; [`TryPutError::Full`] otherwise.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.put_until(item, Deadline::after(Duration::ZERO))
            .map_err(|(t, why)| match why {
                PutFailure::Full => TryPutError::Full(t),
                PutFailure::Closed => TryPutError::Closed(t),
                PutFailure::Corrupt => TryPutError::Corrupt(t),
                PutFailure::Encode(m) => TryPutError::Encode(t, m),
            })
    }

    /// Puts `item`, waiting at most `timeout` for room;
    /// [`PutTimeoutError::Timeout`] after that. A zero timeout fails with
    /// `Timeout` where [`try_put`](Queue::try_put) fails with `Full`.
    ///
    /// A large (chunked) item that cannot be sent whole in time is taken
    /// back from the consumers and returned.
    #[doc(alias = "put")]
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.put_until(item, Deadline::after(timeout))
            .map_err(|(t, why)| match why {
                PutFailure::Full => PutTimeoutError::Timeout(t),
                PutFailure::Closed => PutTimeoutError::Closed(t),
                PutFailure::Corrupt => PutTimeoutError::Corrupt(t),
                PutFailure::Encode(m) => PutTimeoutError::Encode(t, m),
            })
    }

    /// Takes the oldest item, waiting until `deadline`. `Ok(None)`: none
    /// came in time (never for `NEVER`: it waits again).
    fn get_until(&self, deadline: Deadline) -> Result<Option<T>, GetError> {
        // A small item is left here by the ring's copy and decoded in place.
        let mut buf = [0u8; INLINE];
        loop {
            return match &self.core.get_into(deadline, &mut buf) {
                Ok(got) => decode(got.bytes(&buf))
                    .map(Some)
                    .map_err(|e| GetError::Decode(e.to_string())),
                Err(GetFail::Closed) if self.core.is_corrupt() => Err(GetError::Corrupt),
                Err(GetFail::Closed) => Err(GetError::Closed),
                Err(GetFail::Empty) if deadline.remaining().is_none() => continue,
                Err(GetFail::Empty) => Ok(None),
            };
        }
    }

    /// Takes the oldest item, waiting as long as it takes. Fails with
    /// [`GetError::Closed`] once the queue is closed and drained.
    pub fn get(&self) -> Result<T, GetError> {
        loop {
            if let Some(item) = self.get_until(Deadline::NEVER)? {
                return Ok(item);
            }
        }
    }

    /// Takes the oldest item if there is one; [`TryGetError::Empty`]
    /// otherwise.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.get_until(Deadline::after(Duration::ZERO))?
            .ok_or(TryGetError::Empty)
    }

    /// Takes the oldest item, waiting at most `timeout`;
    /// [`GetTimeoutError::Timeout`] after that.
    ///
    /// It returns by its deadline even in the middle of a large (chunked)
    /// item: what arrived of it is kept in this handle, and the next get
    /// on it in this process (from any thread) goes on with the rest, so a
    /// slow item is never received twice nor lost. Until then, the rest of
    /// that item waits in the ring and other consumers wait behind it.
    #[doc(alias = "get")]
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.get_until(Deadline::after(timeout))?
            .ok_or(GetTimeoutError::Timeout)
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// The error of a put without deadline that failed with `fail` (a full
    /// ring is not a failure there). Shared with the async put.
    #[cfg(feature = "tokio")]
    pub(crate) fn put_error(&self, item: T, fail: PutFail) -> PutError<T> {
        match fail {
            PutFail::Closed if self.core.is_corrupt() => PutError::Corrupt(item),
            PutFail::Closed | PutFail::Full => PutError::Closed(item),
        }
    }

    /// The item or error of a get without deadline that ended with `r`
    /// (an empty ring is not an outcome there). Shared with the async get.
    #[cfg(feature = "tokio")]
    pub(crate) fn get_outcome(
        &self,
        r: &std::result::Result<ring::Payload, GetFail>,
    ) -> Result<T, GetError> {
        match r {
            Ok(p) => {
                postcard::from_bytes(p.as_slice()).map_err(|e| GetError::Decode(e.to_string()))
            }
            Err(GetFail::Closed) if self.core.is_corrupt() => Err(GetError::Corrupt),
            Err(GetFail::Closed) | Err(GetFail::Empty) => Err(GetError::Closed),
        }
    }
}

/// Where postcard encodes an item of at most [`INLINE`] bytes (a larger
/// one fails here and is encoded into a vector). Its short pieces (a
/// varint, a tag) go in as one 8-byte store each: postcard's own slice
/// output made a `memcpy` call for each, a tenth of a small put's time.
struct Small<'a> {
    buf: &'a mut [u8; INLINE],
    len: usize,
}

impl Small<'_> {
    /// What `postcard::serialize_with_flavor` does with a `Small`, written
    /// out so that it inlines into the put (the call was a tenth of a small
    /// put's time): `item`'s encoding in `buf`, and its length.
    #[inline(always)]
    fn encode<T: Serialize + ?Sized>(item: &T, buf: &mut [u8; INLINE]) -> postcard::Result<usize> {
        let mut ser = postcard::Serializer {
            output: Small { buf, len: 0 },
        };
        item.serialize(&mut ser)?;
        Ok(ser.output.len)
    }
}

/// `postcard::from_bytes`, written out so that it inlines into the get.
#[inline(always)]
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> postcard::Result<T> {
    T::deserialize(&mut postcard::Deserializer::from_bytes(bytes))
}

impl postcard::ser_flavors::Flavor for Small<'_> {
    /// The encoded length.
    type Output = usize;

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let full = || postcard::Error::SerializeBufferFull;
        let end = self.len.checked_add(data.len()).ok_or_else(full)?;
        if data.len() <= 8
            && let Some(at) = self.buf.get_mut(self.len..self.len + 8)
        {
            // The 8 bytes from `len`, the piece then zeros: bytes past
            // `end` are written over by the next piece, or not encoded.
            at.copy_from_slice(&ring::word_of(data).to_ne_bytes());
        } else {
            self.buf
                .get_mut(self.len..end)
                .ok_or_else(full)?
                .copy_from_slice(data);
        }
        self.len = end;
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        let at = self
            .buf
            .get_mut(self.len)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *at = b;
        self.len += 1;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.len)
    }
}

/// Why [`Queue::put_until`] did not put its item.
enum PutFailure {
    Full,
    Closed,
    Corrupt,
    Encode(String),
}

impl<T> Queue<T> {
    /// The number of items in the queue (a snapshot).
    #[doc(alias = "__len__")]
    pub fn qsize(&self) -> usize {
        self.core.len()
    }

    /// Whether the queue holds no item (a snapshot).
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue holds `maxsize` items (a snapshot; always false
    /// for an unbounded queue).
    pub fn full(&self) -> bool {
        let max = self.core.maxsize();
        max != 0 && self.qsize() >= max
    }

    /// The item limit given at creation (0: unbounded).
    pub fn maxsize(&self) -> usize {
        self.core.maxsize()
    }

    /// The ring's size in bytes (items beyond it overflow into the spill
    /// of a queue made by [`new`](Queue::new) or [`bounded`](Queue::bounded)).
    pub fn capacity_bytes(&self) -> usize {
        self.core.cap()
    }

    /// Closes the queue for every process: later puts fail with
    /// [`PutError::Closed`], and gets fail with [`GetError::Closed`] once
    /// the items already in the queue are taken. Wakes every waiter.
    ///
    /// Unlike Python's `close`, which only says "this process puts no
    /// more", this is a property of the queue, seen by all.
    pub fn close(&self) {
        self.core.close()
    }

    /// Whether [`close`](Queue::close) was called.
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Test hook, not part of the API: writes `item`'s record at the tail
    /// without publishing it, and keeps the producers' lock, as a producer
    /// killed in the middle of a put would.
    /// The caller is expected to be killed next.
    #[doc(hidden)]
    pub fn __hold_lock_mid_put(&self, item: &T) -> bool
    where
        T: Serialize,
    {
        match postcard::to_stdvec(item) {
            Ok(b) => self.core.hold_lock_mid_put(&b),
            Err(_) => false,
        }
    }

    /// Test hook, not part of the API: whether the producers' lock
    /// (`getters` false) or the consumers' is kept biased to the calling
    /// thread now (a thread that keeps taking a side's lock alone keeps it
    /// between calls).
    #[doc(hidden)]
    pub fn __biased_to_me(&self, getters: bool) -> bool {
        self.core.biased_to_me(getters)
    }

    /// Test hook, not part of the API: takes the consumers' lock and keeps
    /// it without taking anything, as a consumer killed in the middle of a
    /// get would. The caller is expected to be killed next.
    #[doc(hidden)]
    pub fn __hold_lock_mid_get(&self) {
        self.core.hold_lock_mid_get();
    }

    /// Test hook, not part of the API: whether puts go to the overflow
    /// spill now.
    #[doc(hidden)]
    pub fn __spilling(&self) -> bool {
        self.core.spilling()
    }

    /// Test hook, not part of the API: overwrites the spill's tail
    /// (`which` 0), head (1) or the length of its head record (2) with
    /// `v`, as a hostile process mapping the queue could.
    #[doc(hidden)]
    pub fn __scribble_spill(&self, which: u8, v: u64) -> bool {
        self.core.scribble_spill(which, v)
    }

    /// Test hook, not part of the API: overwrites the length word of the
    /// record at the head with `len`, as a hostile or buggy process
    /// mapping the queue could. False if the queue is empty.
    #[doc(hidden)]
    pub fn __scribble_head_len(&self, len: u32) -> bool {
        self.core.scribble_head_len(len)
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.qsize())
            .field("maxsize", &self.maxsize())
            .field("capacity_bytes", &self.capacity_bytes())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A queue without size limit or timeouts, like Python's
/// `multiprocessing.SimpleQueue`: `put`, `get`, `empty`, `close`.
///
/// Its `put` never waits: what the 1 MiB ring cannot hold overflows into
/// the spill (see [Capacity](self#capacity)).
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

/// Another handle on the same queue (see [`Queue`'s `Clone`](Queue#impl-Clone-for-Queue<T>)).
impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> SimpleQueue<T> {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// An empty queue with a 1 MiB ring.
    pub fn new() -> Result<SimpleQueue<T>, CreateError> {
        Ok(SimpleQueue {
            queue: Queue::new()?,
        })
    }

    /// Puts `item`; fails only when the queue is closed.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.queue.put(item)
    }

    /// Takes the oldest item, waiting as long as it takes;
    /// [`GetError::Closed`] once closed and drained.
    pub fn get(&self) -> Result<T, GetError> {
        self.queue.get()
    }
}

impl<T> SimpleQueue<T> {
    /// Whether the queue holds no item (a snapshot).
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Closes the queue (see [`Queue::close`]).
    pub fn close(&self) {
        self.queue.close()
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("empty", &self.empty())
            .finish()
    }
}

/// A [`Queue`] that counts unfinished tasks, like Python's
/// `multiprocessing.JoinableQueue`: every put adds one, every
/// [`task_done`](JoinableQueue::task_done) takes one away, and
/// [`join`](JoinableQueue::join) waits until none is left.
///
/// It dereferences to [`Queue`] for `put`, `get` and the rest; the count is
/// kept in shared memory by the queue itself, so every put counts, whatever
/// the handle.
///
/// A consumer killed between `get` and `task_done` leaves its task
/// unfinished for ever; so does a producer killed in the instant between
/// counting its item and committing it. `join_timeout` bounds the wait.
#[cfg_attr(
    feature = "spawn",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct JoinableQueue<T> {
    pub(crate) queue: Queue<T>,
}

/// Another handle on the same queue (see [`Queue`'s `Clone`](Queue#impl-Clone-for-Queue<T>)).
impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> JoinableQueue<T> {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue (see [Capacity](self#capacity)).
    pub fn new() -> Result<JoinableQueue<T>, CreateError> {
        Self::bounded(0)
    }

    /// A joinable queue of at most `maxsize` items (0: unbounded).
    pub fn bounded(maxsize: usize) -> Result<JoinableQueue<T>, CreateError> {
        Ok(JoinableQueue {
            queue: Queue::make(maxsize, DEFAULT_CAPACITY, true, true)?,
        })
    }

    /// A joinable queue of at most `maxsize` items held in a ring of
    /// `bytes` alone (see [`Queue::with_capacity`]).
    pub fn with_capacity(maxsize: usize, bytes: usize) -> Result<JoinableQueue<T>, CreateError> {
        Ok(JoinableQueue {
            queue: Queue::make(maxsize, bytes, true, false)?,
        })
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken from the queue as processed. An error, changing
    /// nothing, when called more times than items were put.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        let w = &self.queue.core.shared().unfinished;
        let mut v = w.load(Ordering::Relaxed);
        loop {
            if v == 0 {
                return Err(TaskDoneError);
            }
            match w.compare_exchange_weak(v, v - 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if v == 1 {
            futex::wake_all(w);
        }
        Ok(())
    }

    /// The number of items put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        self.queue.core.shared().unfinished.load(Ordering::Acquire) as usize
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) {
        self.join_until(Deadline::NEVER);
    }

    /// Waits at most `timeout` until every item put has been marked done;
    /// returns whether that happened.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(Deadline::after(timeout))
    }

    fn join_until(&self, deadline: Deadline) -> bool {
        let w = &self.queue.core.shared().unfinished;
        loop {
            let v = w.load(Ordering::Acquire);
            if v == 0 {
                return true;
            }
            if deadline.expired() {
                return false;
            }
            futex::wait(w, v, Some(deadline.slice(ring::SLICE)));
        }
    }
}

impl<T> std::ops::Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("qsize", &self.qsize())
            .field("unfinished", &self.unfinished_tasks())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Small` made of `v`, or `None` where it refused (too long).
    fn small<T: Serialize>(v: &T) -> Option<Vec<u8>> {
        let mut buf = [0xEEu8; INLINE];
        let n = Small::encode(v, &mut buf).ok()?;
        Some(buf[..n].to_vec())
    }

    #[test]
    fn small_encodes_as_postcard_does_up_to_the_inline_limit() {
        // Pieces of every length around the 8-byte stores and the buffer's
        // end: strings of 0 to 140 bytes behind a varying prefix, varints
        // of every width.
        for pre in [0u64, 1, 300, u64::MAX] {
            for len in 0..=140 {
                let v = (pre, "x".repeat(len), len as u8);
                let want = postcard::to_stdvec(&v).unwrap();
                match small(&v) {
                    Some(got) => assert_eq!(got, want, "prefix {pre}, {len} bytes"),
                    None => assert!(want.len() > INLINE, "refused {} bytes", want.len()),
                }
            }
        }
        for v in [0u64, 127, 128, 1 << 35, u64::MAX] {
            assert_eq!(small(&v).unwrap(), postcard::to_stdvec(&v).unwrap());
        }
        let exact = vec![7u8; INLINE - 1];
        assert_eq!(small(&exact).unwrap(), postcard::to_stdvec(&exact).unwrap());
    }
}
