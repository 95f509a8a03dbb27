//! Rust proxies speaking CPython's manager protocol: to a python3
//! `SyncManager` (`Manager::connect_python`), or to a multiproc server,
//! whose objects they then share with Python clients in the pickle
//! encoding Python uses.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::pickle::{self, Py};
use super::value::{from_py, to_py};
use crate::connection::Connection;
use crate::connection::listener::{Address, Client};
use crate::error::{Error, RemoteErrorKind as Kind};
use crate::manager::client::{connect_error, gone};
use crate::manager::{ConnectError, GetTimeoutProxyError, ProxyError, TryGetProxyError};

/// The result of a proxy call: [`ProxyError`] unless said otherwise (the
/// layer below speaks [`Error`], mapped at the proxies' edge).
type Result<T, E = ProxyError> = std::result::Result<T, E>;

/// The longest reply read from a Python server.
const MAX_REPLY: u64 = 64 << 20;

/// A connection to a manager server through CPython's manager protocol:
/// the objects of a python3 `SyncManager` (or of a multiproc server, in
/// the encoding Python clients use). Made by
/// [`Manager::connect_python`](crate::manager::Manager::connect_python).
///
/// Each thread calls on a connection of its own (as a Python client's
/// threads do: a Python server's `RLock` belongs to the connection that
/// took it); `create`, `incref` and `decref` each go on a short
/// connection, as Python's.
#[derive(Clone)]
pub struct PythonManager {
    inner: Arc<Inner>,
}

struct Inner {
    address: Address,
    authkey: Vec<u8>,
    /// The served connections, one per thread; dropped in a forked child
    /// (the pid they belong to).
    conns: Mutex<(u32, HashMap<ThreadId, Connection>)>,
}

impl std::fmt::Debug for PythonManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PythonManager({})", self.inner.address)
    }
}

/// A Python exception from a reply as the crate's error.
fn exception(v: Py) -> Error {
    let (class, args) = match v {
        Py::Dict(kv) => {
            let mut class = String::new();
            let mut args = Vec::new();
            for (k, v) in kv {
                match (k, v) {
                    (Py::Str(k), Py::Str(c)) if k == "__exception__" => class = c,
                    (Py::Str(k), Py::Tuple(a)) if k == "args" => args = a,
                    _ => {}
                }
            }
            (class, args)
        }
        other => (String::from("Exception"), vec![other]),
    };
    let message = match args.as_slice() {
        [] => String::new(),
        [Py::Str(s)] => s.clone(),
        [one] => one.repr(),
        many => Py::Tuple(many.to_vec()).repr(),
    };
    let remote = |kind| Error::Remote {
        kind,
        message: message.clone(),
    };
    match class.as_str() {
        "builtins.KeyError" => remote(Kind::Key),
        "builtins.IndexError" => remote(Kind::Index),
        "builtins.ValueError" if message.contains("released too many times") => {
            Error::ReleasedTooManyTimes
        }
        "builtins.ValueError" => remote(Kind::Value),
        "builtins.RuntimeError"
            if message.contains("un-acquired") || message.contains("unlocked") =>
        {
            Error::NotOwner
        }
        "queue.Empty" | "_queue.Empty" => remote(Kind::Empty),
        "queue.Full" => remote(Kind::Full),
        "threading.BrokenBarrierError" => Error::BrokenBarrier,
        "builtins.TypeError" => remote(Kind::BadArguments),
        other => remote(Kind::Custom(
            other.rsplit('.').next().unwrap_or(other).to_string(),
        )),
    }
}

fn codec(e: pickle::PickleError) -> Error {
    Error::Codec(e.to_string())
}

/// A value in Python's form, as a proxy call's argument.
fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Py> {
    to_py(v).map_err(ProxyError::from_internal)
}

/// A reply as `T`.
fn dec<T: DeserializeOwned>(v: Py) -> Result<T> {
    from_py(v).map_err(ProxyError::from_internal)
}

impl Inner {
    fn connect(&self) -> Result<Connection, Error> {
        Client::connect(&self.address, Some(&self.authkey))
            .map(|c| c.with_max_message(MAX_REPLY))
            .map_err(|e| connect_error(&self.address, e.into()))
    }

    /// A broken connection (a send or receive that failed, the server's
    /// end closed) as the server being gone.
    fn lost(&self, e: Error) -> Error {
        match e {
            Error::Os { .. } | Error::Eof | Error::Truncated { .. } => {
                gone(format!("lost the connection to {}: {e}", self.address))
            }
            other => other,
        }
    }

    /// One request and its reply on `conn`: the `#RETURN` value or the
    /// error.
    fn exchange(conn: &Connection, ident: Py, method: &str, args: Vec<Py>) -> Result<Py, Error> {
        let req = Py::Tuple(vec![
            ident,
            Py::Str(method.into()),
            Py::Tuple(args),
            Py::Dict(Vec::new()),
        ]);
        conn.send_bytes(&pickle::encode(&req))?;
        let reply = conn.recv_bytes()?;
        let Py::Tuple(mut t) = pickle::decode_reply(&reply).map_err(codec)? else {
            return Err(Error::Codec(
                "a reply that is not a (kind, value) pair".into(),
            ));
        };
        if t.len() != 2 {
            return Err(Error::Codec(
                "a reply that is not a (kind, value) pair".into(),
            ));
        }
        let value = t.pop().expect("2");
        match t.pop().expect("2") {
            Py::Str(k) if k == "#RETURN" => Ok(value),
            Py::Str(k) if k == "#ERROR" => Err(exception(value)),
            Py::Str(k) => Err(Error::Remote {
                kind: Kind::Custom(format!("RemoteError {k}")),
                message: match value {
                    Py::Str(s) => s,
                    other => other.repr(),
                },
            }),
            _ => Err(Error::Codec("a reply kind that is not a str".into())),
        }
    }

    /// A server function (`create`, `incref`, `decref`, ...) on a
    /// connection of its own.
    fn function(&self, name: &str, args: Vec<Py>) -> Result<Py, Error> {
        let conn = self.connect()?;
        Inner::exchange(&conn, Py::None, name, args).map_err(|e| self.lost(e))
    }

    /// A method call on object `ident`, on this thread's connection.
    fn call(&self, ident: &Py, method: &str, args: Vec<Py>) -> Result<Py, Error> {
        let me = std::thread::current().id();
        let pid = std::process::id();
        let taken = {
            let mut c = self.conns.lock();
            if c.0 != pid {
                // A forked child: the parent's connections are not ours.
                *c = (pid, HashMap::new());
            }
            c.1.remove(&me)
        };
        let conn = match taken {
            Some(c) => c,
            None => {
                let c = self.connect()?;
                let name = format!("multiproc-{pid}|{me:?}");
                Inner::exchange(&c, Py::None, "accept_connection", vec![Py::Str(name)])
                    .map_err(|e| self.lost(e))?;
                c
            }
        };
        let r = Inner::exchange(&conn, ident.clone(), method, args).map_err(|e| self.lost(e));
        // A connection out of step (a transport error) is not kept.
        if !matches!(r, Err(Error::ServerGone(_) | Error::Codec(_))) {
            self.conns.lock().1.insert(me, conn);
        }
        r
    }
}

/// One reference to a remote object: dropping the last clone of a proxy
/// gives it back (`decref`), in the process that made it only.
struct Handle {
    manager: Arc<Inner>,
    ident: Py,
    pid: u32,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.pid == std::process::id() {
            let _ = self.manager.function("decref", vec![self.ident.clone()]);
        }
    }
}

/// The untyped proxy every typed one wraps.
#[derive(Clone)]
struct Remote(Arc<Handle>);

impl Remote {
    fn call(&self, method: &str, args: Vec<Py>) -> Result<Py> {
        self.0
            .manager
            .call(&self.0.ident, method, args)
            .map_err(ProxyError::from_internal)
    }

    fn call_as<T: DeserializeOwned>(&self, method: &str, args: Vec<Py>) -> Result<T> {
        dec(self.call(method, args)?)
    }

    fn unit(&self, method: &str, args: Vec<Py>) -> Result<()> {
        self.call(method, args).map(drop)
    }
}

/// A timeout in seconds for Python.
fn secs(d: Duration) -> Py {
    Py::Float(d.as_secs_f64())
}

fn is_kind(e: &ProxyError, kind: Kind) -> bool {
    e.kind() == Some(&kind)
}

impl PythonManager {
    /// Connects to the manager server at `address` (checked with the
    /// `dummy` call Python's `connect()` makes):
    /// [`ConnectError::ServerGone`] if none answers there.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<PythonManager, ConnectError> {
        let inner = Arc::new(Inner {
            address: address.clone(),
            authkey: authkey.to_vec(),
            conns: Mutex::new((std::process::id(), HashMap::new())),
        });
        inner
            .function("dummy", Vec::new())
            .map_err(ConnectError::from_internal)?;
        Ok(PythonManager { inner })
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.inner.address
    }

    /// Makes an object of `typeid` (Python's `create`): our reference.
    fn create(&self, typeid: &str, mut args: Vec<Py>) -> Result<Remote> {
        args.insert(0, Py::Str(typeid.into()));
        let r = self
            .inner
            .function("create", args)
            .map_err(ProxyError::from_internal)?;
        let ident = match r {
            Py::Tuple(t) if t.len() == 2 => t.into_iter().next().expect("2"),
            _ => {
                return Err(ProxyError::Codec(
                    "create returned no (ident, exposed)".into(),
                ));
            }
        };
        Ok(Remote(Arc::new(Handle {
            manager: self.inner.clone(),
            ident,
            pid: std::process::id(),
        })))
    }

    /// A new managed `dict`.
    pub fn dict<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
    ) -> Result<PyDictProxy<K, V>> {
        Ok(PyDictProxy(self.create("dict", Vec::new())?, PhantomData))
    }

    /// A new managed `list`.
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<PyListProxy<T>> {
        Ok(PyListProxy(self.create("list", Vec::new())?, PhantomData))
    }

    /// A new managed `Queue` (unbounded).
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<PyQueueProxy<T>> {
        Ok(PyQueueProxy(self.create("Queue", Vec::new())?, PhantomData))
    }

    /// A new managed `Lock`.
    pub fn lock(&self) -> Result<PyLockProxy> {
        Ok(PyLockProxy(self.create("Lock", Vec::new())?))
    }

    /// A new managed `Event`.
    pub fn event(&self) -> Result<PyEventProxy> {
        Ok(PyEventProxy(self.create("Event", Vec::new())?))
    }

    /// A new managed `Value` holding `value` (typecode `'i'` for an
    /// integer, `'d'` for a float, `'O'` otherwise: Python's manager
    /// `Value` keeps the typecode only for show).
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: &T) -> Result<PyValueProxy<T>> {
        let v = enc(value)?;
        let tc = match v {
            Py::Int(_) | Py::BigInt(_) | Py::Bool(_) => "i",
            Py::Float(_) => "d",
            _ => "O",
        };
        Ok(PyValueProxy(
            self.create("Value", vec![Py::Str(tc.into()), v])?,
            PhantomData,
        ))
    }

    /// The object a name gives (Python's `register('get_queue', ...)` on
    /// the server, `M.register('get_queue'); m.get_queue()` in a client; a
    /// multiproc server's [`expose`](crate::manager::Manager::expose)d
    /// names). The proxy type must match the object's.
    pub fn get<P: PyProxy>(&self, name: &str) -> Result<P> {
        Ok(P::wrap(RemoteRef(self.create(name, Vec::new())?)))
    }
}

/// A typed proxy of [`PythonManager`]'s objects (for
/// [`PythonManager::get`]).
pub trait PyProxy: Sized {
    #[doc(hidden)]
    fn wrap(r: RemoteRef) -> Self;
}

#[doc(hidden)]
/// The untyped reference a proxy wraps.
pub struct RemoteRef(Remote);

macro_rules! py_proxy {
    ($name:ident $(<$($t:ident),+>)?) => {
        impl$(<$($t: Serialize + DeserializeOwned),+>)? PyProxy for $name$(<$($t),+>)? {
            fn wrap(r: RemoteRef) -> Self {
                py_proxy!(@make $name r.0 $(, $($t),+)?)
            }
        }
    };
    (@make $name:ident $r:expr) => { $name($r) };
    (@make $name:ident $r:expr, $($t:ident),+) => { $name($r, PhantomData) };
}

/// A managed `dict` (of a [`PythonManager`]).
pub struct PyDictProxy<K, V>(Remote, PhantomData<fn() -> (K, V)>);

impl<K, V> Clone for PyDictProxy<K, V> {
    fn clone(&self) -> Self {
        PyDictProxy(self.0.clone(), PhantomData)
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> PyDictProxy<K, V> {
    /// `d[key] = value`.
    pub fn insert(&self, key: &K, value: &V) -> Result<()> {
        self.0.unit("__setitem__", vec![enc(key)?, enc(value)?])
    }

    /// `d[key]`, or `None` if the key is not there.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.0.call("__getitem__", vec![enc(key)?]) {
            Ok(v) => Ok(Some(dec(v)?)),
            Err(e) if is_kind(&e, Kind::Key) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `d.pop(key)`, or `None` if the key is not there.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        match self.0.call("pop", vec![enc(key)?]) {
            Ok(v) => Ok(Some(dec(v)?)),
            Err(e) if is_kind(&e, Kind::Key) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `key in d`.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.0.call_as("__contains__", vec![enc(key)?])
    }

    /// `len(d)`.
    pub fn len(&self) -> Result<usize> {
        self.0.call_as("__len__", Vec::new())
    }

    /// `len(d) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `d.keys()`.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.0.call_as("keys", Vec::new())
    }

    /// `d.items()`.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.0.call_as("items", Vec::new())
    }

    /// `d.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.0.unit("clear", Vec::new())
    }
}
py_proxy!(PyDictProxy<K, V>);

/// A managed `list` (of a [`PythonManager`]).
pub struct PyListProxy<T>(Remote, PhantomData<fn() -> T>);

impl<T> Clone for PyListProxy<T> {
    fn clone(&self) -> Self {
        PyListProxy(self.0.clone(), PhantomData)
    }
}

impl<T: Serialize + DeserializeOwned> PyListProxy<T> {
    /// `l.append(item)`.
    pub fn push(&self, item: &T) -> Result<()> {
        self.0.unit("append", vec![enc(item)?])
    }

    /// `l.pop()`, or `None` if it is empty.
    pub fn pop(&self) -> Result<Option<T>> {
        match self.0.call("pop", Vec::new()) {
            Ok(v) => Ok(Some(dec(v)?)),
            Err(e) if is_kind(&e, Kind::Index) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `l[index]` (an error past the end).
    pub fn get(&self, index: usize) -> Result<T> {
        self.0.call_as("__getitem__", vec![Py::Int(index as i64)])
    }

    /// `l[index] = item`.
    pub fn set(&self, index: usize, item: &T) -> Result<()> {
        self.0
            .unit("__setitem__", vec![Py::Int(index as i64), enc(item)?])
    }

    /// `len(l)`.
    pub fn len(&self) -> Result<usize> {
        self.0.call_as("__len__", Vec::new())
    }

    /// `len(l) == 0`.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `l.extend(items)`.
    pub fn extend(&self, items: &[T]) -> Result<()> {
        self.0.unit("extend", vec![enc(items)?])
    }

    /// A copy of the items (`l[:]`).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.0.call_as(
            "__getitem__",
            vec![Py::Slice(Box::new((Py::None, Py::None, Py::None)))],
        )
    }
}
py_proxy!(PyListProxy<T>);

/// A managed `Queue` (of a [`PythonManager`]).
pub struct PyQueueProxy<T>(Remote, PhantomData<fn() -> T>);

impl<T> Clone for PyQueueProxy<T> {
    fn clone(&self) -> Self {
        PyQueueProxy(self.0.clone(), PhantomData)
    }
}

impl<T: Serialize + DeserializeOwned> PyQueueProxy<T> {
    /// `q.put(item)`.
    pub fn put(&self, item: &T) -> Result<()> {
        self.0.unit("put", vec![enc(item)?])
    }

    /// `q.get()`: waits for an item.
    pub fn get(&self) -> Result<T> {
        self.0.call_as("get", Vec::new())
    }

    /// `q.get(True, timeout)`: [`GetTimeoutProxyError::Timeout`] if none
    /// came in time (Python raises `queue.Empty`).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutProxyError> {
        match self.0.call("get", vec![Py::Bool(true), secs(timeout)]) {
            Ok(v) => Ok(dec(v)?),
            Err(e) if is_kind(&e, Kind::Empty) => Err(GetTimeoutProxyError::Timeout),
            Err(e) => Err(e.into()),
        }
    }

    /// `q.get_nowait()`: [`TryGetProxyError::Empty`] if it is empty.
    pub fn try_get(&self) -> Result<T, TryGetProxyError> {
        match self.0.call("get_nowait", Vec::new()) {
            Ok(v) => Ok(dec(v)?),
            Err(e) if is_kind(&e, Kind::Empty) => Err(TryGetProxyError::Empty),
            Err(e) => Err(e.into()),
        }
    }

    /// `q.qsize()`.
    pub fn qsize(&self) -> Result<usize> {
        self.0.call_as("qsize", Vec::new())
    }

    /// `q.empty()`.
    pub fn is_empty(&self) -> Result<bool> {
        self.0.call_as("empty", Vec::new())
    }

    /// `q.task_done()`.
    pub fn task_done(&self) -> Result<()> {
        self.0.unit("task_done", Vec::new())
    }

    /// `q.join()`.
    pub fn join(&self) -> Result<()> {
        self.0.unit("join", Vec::new())
    }
}
py_proxy!(PyQueueProxy<T>);

/// A managed `Lock` (of a [`PythonManager`]).
#[derive(Clone)]
pub struct PyLockProxy(Remote);

impl PyLockProxy {
    /// `lock.acquire()`: waits for it.
    pub fn acquire(&self) -> Result<()> {
        self.0.unit("acquire", Vec::new())
    }

    /// `lock.acquire(False)`: whether it got it.
    pub fn try_acquire(&self) -> Result<bool> {
        self.0.call_as("acquire", vec![Py::Bool(false)])
    }

    /// `lock.acquire(True, timeout)`: whether it got it in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.0
            .call_as("acquire", vec![Py::Bool(true), secs(timeout)])
    }

    /// `lock.release()` ([`ProxyError::NotOwner`] if it is not held).
    pub fn release(&self) -> Result<()> {
        self.0.unit("release", Vec::new())
    }
}
py_proxy!(PyLockProxy);

/// A managed `Event` (of a [`PythonManager`]).
#[derive(Clone)]
pub struct PyEventProxy(Remote);

impl PyEventProxy {
    /// `ev.set()`.
    pub fn set(&self) -> Result<()> {
        self.0.unit("set", Vec::new())
    }

    /// `ev.clear()`.
    pub fn clear(&self) -> Result<()> {
        self.0.unit("clear", Vec::new())
    }

    /// `ev.is_set()`.
    pub fn is_set(&self) -> Result<bool> {
        self.0.call_as("is_set", Vec::new())
    }

    /// `ev.wait()`.
    pub fn wait(&self) -> Result<()> {
        self.0.unit("wait", Vec::new())
    }

    /// `ev.wait(timeout)`: whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.0.call_as("wait", vec![secs(timeout)])
    }
}
py_proxy!(PyEventProxy);

/// A managed `Value` (of a [`PythonManager`]).
pub struct PyValueProxy<T>(Remote, PhantomData<fn() -> T>);

impl<T> Clone for PyValueProxy<T> {
    fn clone(&self) -> Self {
        PyValueProxy(self.0.clone(), PhantomData)
    }
}

impl<T: Serialize + DeserializeOwned> PyValueProxy<T> {
    /// `v.value`.
    pub fn get(&self) -> Result<T> {
        self.0.call_as("get", Vec::new())
    }

    /// `v.value = value`.
    pub fn set(&self, value: &T) -> Result<()> {
        self.0.unit("set", vec![enc(value)?])
    }
}
py_proxy!(PyValueProxy<T>);
