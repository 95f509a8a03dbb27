//! [`JoinableRedisQueue`]: a [`RedisQueue`] that counts unfinished items,
//! as Python's `JoinableQueue`.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RedisError, RedisGetError, RedisPutError, RedisQueue};

/// Takes one from the unfinished count unless it is 0 already (-1 then).
const DONE_SCRIPT: &str = "local n = tonumber(redis.call('GET', KEYS[1]) or '0') \
     if n <= 0 then return -1 end \
     return redis.call('DECR', KEYS[1])";

/// The longest pause of `join` between looks at the count.
const JOIN_POLL: Duration = Duration::from_millis(20);

/// A [`RedisQueue`] whose puts count unfinished items, which
/// [`task_done`](Self::task_done) takes back, so that [`join`](Self::join)
/// waits until every item put was processed (Python's `JoinableQueue`).
/// The count is kept in the server (`multiproc:queue:{NAME}:unfinished`,
/// incremented in the same script as the push), shared by every handle of
/// the name on any host. A consumer killed between `get` and `task_done`
/// leaves its item counted: `join` then waits for ever (use
/// [`join_timeout`](Self::join_timeout)).
#[derive(Clone, Debug)]
pub struct JoinableRedisQueue<T> {
    q: RedisQueue<T>,
}

impl<T> JoinableRedisQueue<T> {
    /// Opens the joinable queue `name` on the server at `url`; see
    /// [`RedisQueue::open`].
    pub fn open(url: &str, name: &str) -> Result<JoinableRedisQueue<T>, RedisError> {
        Ok(JoinableRedisQueue {
            q: RedisQueue::open(url, name)?,
        })
    }

    /// Bounds the queue; see [`RedisQueue::with_maxsize`].
    pub fn with_maxsize(self, maxsize: usize) -> Self {
        JoinableRedisQueue {
            q: self.q.with_maxsize(maxsize),
        }
    }

    /// The queue itself (`qsize`, `close`, `delete`, ...).
    pub fn queue(&self) -> &RedisQueue<T> {
        &self.q
    }

    /// The number of items put and not yet marked done.
    pub fn unfinished(&self) -> Result<u64, RedisError> {
        self.q
            .with_con(|c| {
                ::redis::cmd("GET")
                    .arg(&self.q.unfinished)
                    .query::<Option<i64>>(c)
            })
            .map(|n| n.unwrap_or(0).max(0) as u64)
    }

    /// Marks one item taken with `get` as processed;
    /// [`RedisError::TaskDone`] if called more times than items were put
    /// (Python raises `ValueError`).
    pub fn task_done(&self) -> Result<(), RedisError> {
        let n = self.q.with_con(|c| {
            ::redis::cmd("EVAL")
                .arg(DONE_SCRIPT)
                .arg(1)
                .arg(&self.q.unfinished)
                .query::<i64>(c)
        })?;
        if n < 0 {
            return Err(RedisError::TaskDone);
        }
        Ok(())
    }

    /// Waits until every item put was marked done.
    pub fn join(&self) -> Result<(), RedisError> {
        self.join_until(None).map(|_| ())
    }

    /// [`join`](Self::join), waiting at most `timeout`; whether the count
    /// reached 0.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, RedisError> {
        self.join_until(Some(Instant::now() + timeout))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<bool, RedisError> {
        let mut pause = Duration::from_millis(1);
        loop {
            if self.unfinished()? == 0 {
                return Ok(true);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(false);
            }
            let left = deadline.map_or(pause, |d| d - now);
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(JOIN_POLL);
        }
    }
}

impl<T: Serialize + DeserializeOwned> JoinableRedisQueue<T> {
    /// Puts `item`, counted unfinished; see [`RedisQueue::put`].
    pub fn put(&self, item: T) -> Result<(), RedisPutError<T>> {
        self.q.put_until(item, None, true)
    }

    /// Puts `item` if there is room now; see [`RedisQueue::try_put`].
    pub fn try_put(&self, item: T) -> Result<(), RedisPutError<T>> {
        self.q.put_once(item, true)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), RedisPutError<T>> {
        self.q.put_until(item, Some(Instant::now() + timeout), true)
    }

    /// Takes the oldest item; see [`RedisQueue::get`].
    pub fn get(&self) -> Result<T, RedisGetError> {
        self.q.get()
    }

    /// Takes the oldest item, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, RedisGetError> {
        self.q.get_timeout(timeout)
    }

    /// Takes the oldest item if there is one.
    pub fn try_get(&self) -> Result<T, RedisGetError> {
        self.q.try_get()
    }
}
