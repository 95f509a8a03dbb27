//! [`RedisStreamQueue`]: a queue on a Redis stream with a consumer group,
//! whose `get` is at least once: an item taken is not lost when its
//! consumer dies before acknowledging it.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::task;
use super::{Link, RedisError, RedisGetError, RedisPutError};

/// A FIFO queue on a Redis stream (`multiproc:stream:{NAME}`) read through
/// a consumer group: [`get_timeout`](Self::get_timeout) hands out a
/// [`Delivery`], and the item stays in the server until it is
/// [`ack`](Self::ack)ed. An item taken by a consumer that died (or did not
/// acknowledge it within the claim deadline) is handed out again by a
/// later `get` (`XAUTOCLAIM`): at least once, where [`RedisQueue`](super::RedisQueue)'s
/// `get` is at most once. Each handle is its own consumer.
pub struct RedisStreamQueue<T> {
    link: Link,
    stream: String,
    consumer: String,
    claim_after: Duration,
    _items: PhantomData<fn(T) -> T>,
}

/// An item handed out by [`RedisStreamQueue::get_timeout`], to
/// acknowledge once processed.
#[derive(Debug)]
pub struct Delivery<T> {
    /// The stream entry's id.
    pub id: String,
    /// The item.
    pub item: T,
}

const GROUP: &str = "consumers";

impl<T> RedisStreamQueue<T> {
    /// Opens the stream queue `name` on the server at `url` (creating its
    /// stream and group). Items not acknowledged within `claim_after` are
    /// handed out again.
    pub fn open(
        url: &str,
        name: &str,
        claim_after: Duration,
    ) -> Result<RedisStreamQueue<T>, RedisError> {
        if name.is_empty() {
            return Err(RedisError::InvalidName {
                name: name.to_owned(),
                reason: "a queue name must not be empty",
            });
        }
        let link = Link::new(url)?;
        let stream = format!("multiproc:stream:{{{name}}}");
        let r = link.with_con(|c| {
            ::redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query::<()>(c)
        });
        if let Err(e) = r
            && !e.names("BUSYGROUP")
        {
            return Err(e);
        }
        let consumer = format!(
            "{}:{}:{}",
            super::worker::hostname(),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        Ok(RedisStreamQueue {
            link,
            stream,
            consumer,
            claim_after: claim_after.max(Duration::from_millis(1)),
            _items: PhantomData,
        })
    }

    /// Acknowledges (and removes) a delivered item.
    pub fn ack(&self, d: &Delivery<T>) -> Result<(), RedisError> {
        self.link.with_con(|c| {
            ::redis::pipe()
                .cmd("XACK")
                .arg(&self.stream)
                .arg(GROUP)
                .arg(&d.id)
                .ignore()
                .cmd("XDEL")
                .arg(&self.stream)
                .arg(&d.id)
                .ignore()
                .query::<()>(c)
        })
    }
}

impl<T: Serialize + DeserializeOwned> RedisStreamQueue<T> {
    /// Appends `item`.
    pub fn put(&self, item: T) -> Result<(), RedisPutError<T>> {
        let bytes = match postcard::to_stdvec(&item) {
            Ok(b) => b,
            Err(e) => return Err(RedisPutError::Encode(item, e.to_string())),
        };
        let r = self.link.with_con(|c| {
            ::redis::cmd("XADD")
                .arg(&self.stream)
                .arg("*")
                .arg("v")
                .arg(bytes.as_slice())
                .query::<String>(c)
        });
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(RedisPutError::of_command(item, e)),
        }
    }

    fn deliver(&self, entries: Vec<task::Entry>) -> Option<Result<Delivery<T>, RedisGetError>> {
        let (id, fields) = entries.into_iter().next()?;
        Some(match postcard::from_bytes(task::field(&fields, b"v")) {
            Ok(item) => Ok(Delivery { id, item }),
            Err(e) => {
                // An item no one can decode is dropped, not redelivered.
                let _ = self.link.with_con(|c| {
                    ::redis::cmd("XACK")
                        .arg(&self.stream)
                        .arg(GROUP)
                        .arg(&id)
                        .query::<()>(c)
                });
                Err(RedisGetError::Decode(e.to_string()))
            }
        })
    }

    /// The oldest item abandoned by a consumer (unacknowledged past the
    /// claim deadline), else the next new one, waiting at most `timeout`;
    /// [`RedisGetError::Timeout`] then.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Delivery<T>, RedisGetError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(d) = self.claim()? {
                return d;
            }
            // Waits for a new item in slices of the claim deadline, so
            // that an item abandoned meanwhile is seen too.
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let slice = left.min(self.claim_after);
            let ms = (slice.as_millis() as u64).max(1);
            let v = self
                .link
                .with_blocking_con(slice, |c| {
                    ::redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(GROUP)
                        .arg(&self.consumer)
                        .arg("COUNT")
                        .arg(1)
                        .arg("BLOCK")
                        .arg(ms)
                        .arg("STREAMS")
                        .arg(&self.stream)
                        .arg(">")
                        .query::<::redis::Value>(c)
                })
                .map_err(RedisGetError::from)?;
            if let Some(d) = self.deliver(task::xread_entries(v)) {
                return d;
            }
            if std::time::Instant::now() >= deadline {
                return self.claim()?.unwrap_or(Err(RedisGetError::Timeout));
            }
        }
    }

    /// The oldest abandoned item, claimed for this consumer.
    #[allow(clippy::type_complexity)]
    fn claim(&self) -> Result<Option<Result<Delivery<T>, RedisGetError>>, RedisGetError> {
        let claimed = self
            .link
            .with_con(|c| {
                ::redis::cmd("XAUTOCLAIM")
                    .arg(&self.stream)
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg(self.claim_after.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(1)
                    .query::<::redis::Value>(c)
            })
            .map_err(RedisGetError::from)?;
        let claimed = match claimed {
            ::redis::Value::Array(mut a) if a.len() >= 2 => task::entries(a.swap_remove(1)),
            _ => Vec::new(),
        };
        Ok(self.deliver(claimed))
    }
}

impl<T> std::fmt::Debug for RedisStreamQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamQueue")
            .field("server", &self.link.addr())
            .field("key", &self.stream)
            .finish_non_exhaustive()
    }
}
