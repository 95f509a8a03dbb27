//! The proxy of a pool held by the server.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Result;
use super::enc;
use super::{Proxy, TypedProxy};
use crate::manager::ProxyError;
use crate::manager::objects::pool::PoolOp;
use crate::manager::protocol::Bytes;

typed_proxy!(
    /// A pool of worker processes held by a manager's server (Python's
    /// `manager.Pool()`), made by [`Manager::pool`](crate::manager::Manager::pool).
    ///
    /// A task is a function registered with the server before it started
    /// ([`ManagerBuilder::pool_task`](crate::manager::ManagerBuilder::pool_task)).
    /// The call names it by a key of its type (the same in every process
    /// running this executable; not its code address, which an optimised
    /// build may give one function several of); the server runs only the
    /// functions in its own table, so a client cannot make it jump
    /// anywhere else. Any other function is a
    /// [`BadArguments`](crate::RemoteErrorKind::BadArguments) error. A
    /// task's failure (a panic, a worker killed) comes back as an
    /// [`ProxyError::Remote`] whose message is the pool's error.
    PoolProxy, "pool"
);

impl PoolProxy {
    /// Runs `f(arg)` on a worker and returns its result (Python's
    /// `apply`).
    pub fn apply<F, A, R>(&self, f: F, arg: &A) -> Result<R>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map(f, [arg])?
            .pop()
            .ok_or(ProxyError::Codec("the pool answered no result".into()))
    }

    /// Runs `f` on each of `items` across the workers; the results in
    /// order (Python's `map`).
    pub fn map<'a, F, A, R>(&self, f: F, items: impl IntoIterator<Item = &'a A>) -> Result<Vec<R>>
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let _ = f;
        let function = crate::manager::objects::pool::task_key::<F>();
        let args: Vec<Vec<u8>> = items.into_iter().map(enc).collect::<Result<_>>()?;
        let b: Vec<Bytes<'_>> = args.iter().map(|x| Bytes(x)).collect();
        self.proxy.op(&PoolOp::Map(function, b))
    }

    /// Accepts no more tasks (Python's `close`).
    pub fn close(&self) -> Result<()> {
        self.proxy.op_unit(&PoolOp::Close)
    }

    /// Stops the workers now (Python's `terminate`).
    pub fn terminate(&self) -> Result<()> {
        self.proxy.op_unit(&PoolOp::Terminate)
    }

    /// Waits for the workers to exit, after [`close`](Self::close) (Python's
    /// `join`).
    pub fn join(&self) -> Result<()> {
        self.proxy.op_unit(&PoolOp::Join)
    }
}
