//! Proxies of the queues.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Result;
use super::{Items, Proxy, TypedProxy};
use crate::error::RemoteErrorKind;
use crate::manager::objects::QueueOp;
use crate::manager::protocol::Bytes;
use crate::manager::{
    GetTimeoutProxyError, ProxyError, PutTimeoutProxyError, TryGetProxyError, TryPutProxyError,
};

typed_proxy!(
    /// A FIFO queue held by a manager (Python's `manager.Queue()`).
    QueueProxy<T>, "queue"
);

typed_proxy!(
    /// A joinable FIFO queue held by a manager (Python's
    /// `manager.JoinableQueue()`): [`task_done`](Self::task_done) and
    /// [`join`](Self::join) besides the queue's methods.
    JoinableQueueProxy<T>, "joinable_queue"
);

/// Whether `e` is the server's "empty"/"full" answer.
fn is_kind(e: &ProxyError, kind: RemoteErrorKind) -> bool {
    matches!(e, ProxyError::Remote { kind: k, .. } if *k == kind)
}

macro_rules! queue_methods {
    ($name:ident) => {
        impl<T: Serialize + DeserializeOwned> $name<T> {
            fn put_with(&self, block: bool, timeout: Option<Duration>, item: &T) -> Result<bool> {
                let mut items = Items::new(&self.proxy);
                let i = items.enc(item)?;
                let put = QueueOp::Put {
                    block,
                    timeout,
                    item: Bytes(&i),
                };
                match self.proxy.op_items::<_, ()>(&put, items, false) {
                    Ok(()) => Ok(true),
                    Err(e) if is_kind(&e, RemoteErrorKind::Full) => Ok(false),
                    Err(e) => Err(e),
                }
            }

            fn get_with(&self, block: bool, timeout: Option<Duration>) -> Result<Option<T>> {
                let items = Items::new(&self.proxy);
                match self
                    .proxy
                    .op_items(&QueueOp::Get { block, timeout }, items, true)
                {
                    Ok(v) => Ok(Some(v)),
                    Err(e) if is_kind(&e, RemoteErrorKind::Empty) => Ok(None),
                    Err(e) => Err(e),
                }
            }

            /// Puts `item`, waiting while the queue is full.
            pub fn put(&self, item: &T) -> Result<()> {
                self.put_with(true, None, item).map(drop)
            }

            /// Puts `item` if there is room now;
            /// [`TryPutProxyError::Full`] if not (the item stays with the
            /// caller: the proxy borrows it).
            #[doc(alias = "put_nowait")]
            pub fn try_put(&self, item: &T) -> std::result::Result<(), TryPutProxyError> {
                match self.put_with(false, None, item)? {
                    true => Ok(()),
                    false => Err(TryPutProxyError::Full),
                }
            }

            /// Puts `item`, waiting at most `timeout` for room;
            /// [`PutTimeoutProxyError::Timeout`] then.
            pub fn put_timeout(
                &self,
                item: &T,
                timeout: Duration,
            ) -> std::result::Result<(), PutTimeoutProxyError> {
                match self.put_with(true, Some(timeout), item)? {
                    true => Ok(()),
                    false => Err(PutTimeoutProxyError::Timeout),
                }
            }

            /// Takes the next item, waiting for one. The wait runs in the
            /// server and holds up no other caller.
            pub fn get(&self) -> Result<T> {
                self.get_with(true, None)?
                    .ok_or_else(|| ProxyError::Codec("a blocking get came back empty".into()))
            }

            /// Takes the next item if there is one now;
            /// [`TryGetProxyError::Empty`] if not.
            #[doc(alias = "get_nowait")]
            pub fn try_get(&self) -> std::result::Result<T, TryGetProxyError> {
                self.get_with(false, None)?.ok_or(TryGetProxyError::Empty)
            }

            /// Takes the next item, waiting at most `timeout`;
            /// [`GetTimeoutProxyError::Timeout`] if none came.
            pub fn get_timeout(
                &self,
                timeout: Duration,
            ) -> std::result::Result<T, GetTimeoutProxyError> {
                self.get_with(true, Some(timeout))?
                    .ok_or(GetTimeoutProxyError::Timeout)
            }

            /// The number of items.
            pub fn qsize(&self) -> Result<usize> {
                Ok(self.proxy.op::<_, u64>(&QueueOp::Qsize)? as usize)
            }

            /// Whether it has no items.
            pub fn is_empty(&self) -> Result<bool> {
                self.proxy.op(&QueueOp::Empty)
            }

            /// Whether it is at its maximum size.
            pub fn is_full(&self) -> Result<bool> {
                self.proxy.op(&QueueOp::Full)
            }
        }
    };
}

queue_methods!(QueueProxy);
queue_methods!(JoinableQueueProxy);

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    /// Marks one item taken earlier as done (a
    /// [`Value`](crate::RemoteErrorKind::Value) error if none is pending).
    pub fn task_done(&self) -> Result<()> {
        self.proxy.op_unit(&QueueOp::TaskDone)
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.proxy.op_unit(&QueueOp::Join(None))
    }

    /// Like [`join`](Self::join), for at most `timeout`
    /// ([`ProxyError::Timeout`] then).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.proxy.op_unit(&QueueOp::Join(Some(timeout)))
    }
}
