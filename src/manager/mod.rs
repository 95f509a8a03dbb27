//! Managers: a server process that holds objects (lists, dicts, queues,
//! locks, your own types) and typed proxies to use them from any process
//! that connects, over a Unix socket or TCP, like Python's
//! `multiprocessing.managers.SyncManager`.
//!
//! ```no_run
//! use multiproc::manager::Manager;
//!
//! let manager = Manager::start()?;
//! let list = manager.list::<u64>()?;
//! let squares = manager.dict::<u64, u64>()?;
//! let mut children = Vec::new();
//! for i in 0..4u64 {
//!     let (list, squares) = (list.clone(), squares.clone());
//!     let mut p = multiproc::Process::new(move || -> multiproc::Result<()> {
//!         list.push(&i)?;
//!         squares.insert(&i, &(i * i))?;
//!         Ok(())
//!     });
//!     p.start()?;
//!     children.push(p);
//! }
//! for p in &mut children {
//!     p.join_ok()?;
//! }
//! assert_eq!(list.len()?, 4);
//! assert_eq!(squares.get(&3)?, Some(9));
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # How it works
//!
//! * **Server.** One thread per client connection; the objects live in a
//!   registry, each behind its own lock (parking_lot), so a call locks only
//!   the object it touches, and a blocking call (a lock's `acquire`, a
//!   queue's `get`, a condition's or barrier's `wait`) blocks only the
//!   connection it came on.
//! * **Client.** Each process has one *session* per server: a pool of
//!   connections, one per thread calling at the same moment. A proxy used
//!   in a forked child notices the pid change and goes through the child's
//!   own session. Reference counts are kept per session in the server, so
//!   a process that exits or is killed releases every reference it held
//!   when its connections close; an object is freed when no session refers
//!   to it. Locks (`Lock`, `RLock`, `Condition`) it still holds then are
//!   released too, so a killed holder cannot block the others for ever
//!   (Python's manager leaves them locked). A semaphore has no owner and
//!   keeps its count.
//! * **References held by the server.** A proxy stored in a managed
//!   container travels as its token; the client notes the proxies of the
//!   same server it encodes into an item and the call carries their ids
//!   (the `HOLDS` flag): the server takes a reference for the item, and
//!   drops it when the item is overwritten, removed or its container freed.
//!   An item taken out (`pop`, a queue's `get`, ...) hands its references
//!   to the caller's session, and the reply names them (the `ADOPT` flag)
//!   so that the proxies decoded from it own them. A name given with
//!   [`Manager::expose`] holds a reference the same way.
//! * **Protocol.** Frames with [`Connection`](crate::Connection)'s header
//!   (4-byte big-endian length, or the long form) of postcard-encoded
//!   `{id, object, caller, flags, method, args}` requests and `{id,
//!   result}` replies; errors travel as a kind and a message and come back
//!   as [`ProxyError::Remote`] (or as [`ProxyError::Timeout`],
//!   `BrokenBarrier`, `NotOwner`, `ReleasedTooManyTimes`). Every proxy
//!   call returns a [`ProxyError`], connecting a [`ConnectError`]; both
//!   convert into [`Error`] with `?`. A built-in
//!   object is called with a typed operation of its kind (a list takes a
//!   list operation, decoded once by the server), a registered type by
//!   method name, and only the methods its type dispatches. Proxies and
//!   server must come from the same build: the operations' encoding is
//!   not a stable format. A frame that cannot be decoded, or a length over
//!   the limit (64 MiB), closes that client's connection; the server goes
//!   on.
//! * **Security.** Every connection passes an HMAC-SHA256 challenge in both
//!   directions before any request is read (the `Listener`/`Client`
//!   handshake restricted to SHA-256). A wrong key is refused and the
//!   server keeps serving. [`Manager::start`] puts its socket in a fresh
//!   private directory (mode 0700) with the socket file at mode 0600; a
//!   stale socket file left by a killed server at a given path is replaced.
//! * **Speed.** On a Unix socket (same host) each connection also gets a
//!   shared-memory *mailbox* (a memfd the client makes and passes over the
//!   socket): one request slot and one reply slot of 60 KiB, each with a
//!   sequence word that doubles as a futex. A call writes the request,
//!   bumps the sequence, and spins briefly for the reply before sleeping on
//!   the futex; the server thread does the same for requests. Back-to-back
//!   calls thus cost no system call at all; longer messages are announced
//!   in the mailbox and sent over the socket. The socket stays the sign of
//!   life: a side asleep on the mailbox checks it every few tens of
//!   milliseconds, so a dead peer is noticed within that. Over TCP, frames
//!   go on the socket, where both ends also spin a few tens of microseconds
//!   before sleeping in `poll`.
//!
//! # Python clients
//!
//! CPython's own manager clients (`SyncManager(address=..., authkey=...)`
//! then `connect()`) use a multiproc server's objects, and
//! [`Manager::connect_python`] gives Rust proxies on a python3
//! `SyncManager`'s: the README's "Python clients" section, and
//! [`PythonManager`]. Pickles are decoded as data only.
//!
//! # Beyond calls on one object
//!
//! * [`ListProxy::sort`] (and `sort_by`, `sort_by_key`): the server keeps
//!   items encoded and cannot compare them, so the client sorts a snapshot
//!   and the server applies the order only if the list has not changed
//!   since (a compare-and-swap on the list's version), retrying otherwise:
//!   other clients see the list unsorted or sorted, and nothing added
//!   meanwhile is lost.
//! * [`ListProxy::iter`] (`for x in &list`) fetches items in chunks by
//!   position, as Python's iteration over a managed list goes by index;
//!   [`DictProxy::iter_items`] and its kin walk a cursor the server keeps
//!   (an object counted like the others, gone with the iterator or its
//!   process).
//! * [`ManagerBuilder::initializer`] runs a function in the server process
//!   before it serves; with the `pool` feature, `Manager::pool` gives a
//!   pool held by the server that runs the functions registered with
//!   `ManagerBuilder::pool_task`.
//!
//! # Your own types
//!
//! [`manager_type!`](crate::manager_type) turns a serializable type and a
//! list of its methods into a [`Remote`] implementation (the server-side
//! dispatch) and a typed proxy; register the type with
//! [`ManagerBuilder::register`] and make objects with [`Manager::create`].

pub(crate) mod channel;
pub(crate) mod client;
mod error;
pub(crate) mod objects;
pub(crate) mod protocol;
mod proxy;
mod python;
pub(crate) mod server;
mod shared_memory_manager;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::connection::listener::Address;
use crate::error::{Error, Result};
use crate::process::code::{Code, CodePtr};
use crate::process::{Process, StartMethod};
use client::Session;
use objects::{Constructor, Object, Registered};
use protocol::{Bytes, ControlOp, dec, enc};

pub use error::{
    ConnectError, GetTimeoutProxyError, ProxyError, PutTimeoutProxyError, ServeError,
    TryGetProxyError, TryPutProxyError,
};
#[cfg(feature = "pool")]
pub use proxy::PoolProxy;
pub use proxy::{
    ArrayProxy, BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictIter, DictProxy,
    EventProxy, JoinableQueueProxy, ListIter, ListProxy, LockProxy, NamespaceProxy, Proxy,
    ProxyGuard, QueueProxy, RLockProxy, SemaphoreProxy, Token, TypedProxy, ValueProxy,
};
pub use python::{
    PyDictProxy, PyEventProxy, PyListProxy, PyLockProxy, PyProxy, PyQueueProxy, PyValueProxy,
    PythonManager,
};
pub use shared_memory_manager::{SegmentError, Segments, SegmentsProxy, SharedMemoryManager};

/// How long [`Manager::start`] waits for its server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long shutdown waits for the server to exit before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A type whose values a manager can hold and whose methods its proxies
/// call. Implement it with [`manager_type!`](crate::manager_type).
pub trait Remote: Serialize + DeserializeOwned + Send + 'static {
    /// The name the type is registered under (unique per manager).
    const TYPE_ID: &'static str;
    /// The typed proxy.
    type Proxy: TypedProxy;
    /// Runs `method` with postcard-encoded `args` (a tuple of the
    /// parameters); the encoded result. Unknown methods are an
    /// [`UnknownMethod`](crate::RemoteErrorKind::UnknownMethod) error.
    fn dispatch(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>>;
}

/// A registered type's object in the server: its value behind a lock.
struct Custom<T>(parking_lot::Mutex<T>);

impl<T: Remote> Registered for Custom<T> {
    fn call(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        self.0.lock().dispatch(method, args)
    }
}

/// What crosses to a server process for a registered type: a function of
/// the main executable that gives the server its constructor there.
type Registration = fn(()) -> Constructor;

fn constructor_of<T: Remote>((): ()) -> Constructor {
    construct::<T>
}

fn construct<T: Remote>(init: &[u8]) -> Result<Object> {
    let value: T = protocol::dec_args(init)?;
    Ok(Object::Registered(Box::new(Custom(
        parking_lot::Mutex::new(value),
    ))))
}

/// What [`manager_type!`](crate::manager_type) expands to needs these.
#[doc(hidden)]
pub mod __private {
    pub use serde;

    /// Decodes a method's argument tuple: a failure is
    /// [`ProxyError::Remote`](crate::manager::ProxyError::Remote) of kind
    /// `BadArguments` (what the caller's proxy gets back).
    pub fn decode_args<T: serde::de::DeserializeOwned>(
        args: &[u8],
    ) -> Result<T, crate::manager::ProxyError> {
        super::protocol::dec_args(args).map_err(crate::manager::ProxyError::from_internal)
    }

    /// Encodes a method's result: a failure is
    /// [`ProxyError::Codec`](crate::manager::ProxyError::Codec).
    pub fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, crate::manager::ProxyError> {
        super::protocol::enc(v).map_err(crate::manager::ProxyError::from_internal)
    }

    /// The error for a method the type does not have.
    pub fn unknown_method(typeid: &str, method: &str) -> crate::Error {
        crate::Error::Remote {
            kind: crate::RemoteErrorKind::UnknownMethod,
            message: format!("{typeid} has no method {method:?}"),
        }
    }
}

/// Defines a typed proxy for a serializable type and the server-side
/// dispatch of the listed methods (the equivalent of Python's
/// `BaseManager.register(typeid, callable)` with its exposed methods).
///
/// Each listed method must exist on the type with the same signature;
/// arguments and results must be serializable. The proxy gets one method
/// per entry, taking the arguments by value and returning
/// `Result<R, multiproc::manager::ProxyError>`. Only the listed methods can
/// be called remotely.
///
/// ```no_run
/// use multiproc::manager::Manager;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Counter { n: u64 }
///
/// impl Counter {
///     fn add(&mut self, k: u64) -> u64 { self.n += k; self.n }
///     fn get(&self) -> u64 { self.n }
/// }
///
/// multiproc::manager_type! {
///     /// A counter in a manager.
///     pub proxy CounterProxy for Counter as "Counter" {
///         fn add(&mut self, k: u64) -> u64;
///         fn get(&self) -> u64;
///     }
/// }
///
/// let manager = Manager::builder().register::<Counter>().start()?;
/// let c: CounterProxy = manager.create(&Counter { n: 1 })?;
/// assert_eq!(c.add(2)?, 3);
/// assert_eq!(c.get()?, 3);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[macro_export]
macro_rules! manager_type {
    (
        $(#[$pm:meta])*
        $vis:vis proxy $proxy:ident for $ty:ty as $typeid:literal {
            $(
                $(#[$mm:meta])*
                fn $method:ident(& $(mut)? self $(, $arg:ident : $argty:ty)* $(,)?) $(-> $ret:ty)?;
            )*
        }
    ) => {
        $(#[$pm])*
        #[derive(Clone, Debug)]
        $vis struct $proxy($crate::manager::Proxy);

        impl $crate::manager::TypedProxy for $proxy {
            const TYPE_ID: &'static str = $typeid;
            fn from_proxy_unchecked(p: $crate::manager::Proxy) -> Self {
                $proxy(p)
            }
            fn proxy(&self) -> &$crate::manager::Proxy {
                &self.0
            }
        }

        impl $crate::manager::__private::serde::Serialize for $proxy {
            fn serialize<S: $crate::manager::__private::serde::Serializer>(
                &self,
                s: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }

        impl<'de> $crate::manager::__private::serde::Deserialize<'de> for $proxy {
            fn deserialize<D: $crate::manager::__private::serde::Deserializer<'de>>(
                d: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let p = <$crate::manager::Proxy as $crate::manager::__private::serde::Deserialize>::deserialize(d)?;
                p.downcast().map_err(<D::Error as $crate::manager::__private::serde::de::Error>::custom)
            }
        }

        impl $proxy {
            $(
                #[doc = concat!("Calls `", stringify!($method), "` on the object in the server.")]
                $(#[$mm])*
                #[allow(clippy::unused_unit)]
                pub fn $method(&self $(, $arg: $argty)*) -> ::std::result::Result<$crate::__manager_ret!($($ret)?), $crate::manager::ProxyError> {
                    self.0.call(stringify!($method), &($($arg,)*))
                }
            )*
        }

        impl $crate::manager::Remote for $ty {
            const TYPE_ID: &'static str = $typeid;
            type Proxy = $proxy;
            fn dispatch(&mut self, method: &str, args: &[u8]) -> $crate::Result<::std::vec::Vec<u8>> {
                match method {
                    $(
                        stringify!($method) => {
                            #[allow(unused_parens, clippy::let_unit_value)]
                            let ($($arg,)*): ($($argty,)*) =
                                $crate::manager::__private::decode_args(args)?;
                            #[allow(clippy::let_unit_value)]
                            let r = self.$method($($arg),*);
                            ::std::result::Result::Ok($crate::manager::__private::encode(&r)?)
                        }
                    )*
                    m => Err($crate::manager::__private::unknown_method($typeid, m)),
                }
            }
        }
    };
}

/// The result type of a [`manager_type!`] method: `()` when none is given.
#[doc(hidden)]
#[macro_export]
macro_rules! __manager_ret {
    () => {
        ()
    };
    ($t:ty) => {
        $t
    };
}

/// A server's initializer with its types erased: the trampoline made for
/// its argument and error types, which runs it given the offset of the
/// initializer's `CodePtr` and its encoded arguments, and says how it
/// failed.
type InitTrampoline = fn((u64, Vec<u8>)) -> Option<String>;

/// What [`ManagerBuilder::initializer`] was given, checked at `start`.
#[derive(Debug)]
struct Init {
    trampoline: InitTrampoline,
    /// The initializer's offset ([`Error::ForeignCode`] for a function
    /// of a shared library).
    function: Result<u64>,
    /// The encoded arguments.
    args: Result<Vec<u8>>,
}

impl Init {
    /// Runs the initializer in this process: `None`, or how it failed.
    fn run_here(&self) -> Result<Option<String>> {
        let function = match &self.function {
            Ok(f) => *f,
            Err(e) => return Err(clone_setup_error(e)),
        };
        let args = match &self.args {
            Ok(a) => a.clone(),
            Err(e) => return Err(clone_setup_error(e)),
        };
        Ok((self.trampoline)((function, args)))
    }
}

/// The errors an [`Init`] keeps for `start`, again.
fn clone_setup_error(e: &Error) -> Error {
    match e {
        Error::ForeignCode { address, object } => Error::ForeignCode {
            address: *address,
            object: object.clone(),
        },
        other => Error::Codec(other.to_string()),
    }
}

/// Runs a server's initializer of type `fn(J) -> Result<(), E>` at
/// `function` (an offset) with the encoded `args`: `None`, or what went
/// wrong (its error, a panic's message and place, or arguments that do not
/// decode).
fn run_initializer<J: DeserializeOwned, E: std::fmt::Display>(
    (function, args): (u64, Vec<u8>),
) -> Option<String> {
    let run = || -> std::result::Result<(), String> {
        // SAFETY: `function` is the offset of a
        // `CodePtr<fn(J) -> Result<(), E>>` made by
        // `ManagerBuilder::initializer::<J, E>`, the same instantiation
        // that chose this trampoline, handed to this process with it in the
        // server's arguments (fork memory or the spawn bootstrap, which no
        // other process can write), or kept in this process's builder;
        // this process runs the same executable image.
        let f = unsafe {
            Code::from_offset(function)
                .map_err(|e| e.to_string())?
                .assume::<fn(J) -> std::result::Result<(), E>>()
        };
        let args: J = protocol::dec_args(&args).map_err(|e| e.to_string())?;
        f.get()(args).map_err(|e| e.to_string())
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(p) => Some(format!("it panicked: {}", crate::process::panic_text(&*p))),
    }
}

/// How a server is started and what it knows.
#[derive(Debug, Default)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    types: Vec<(String, Registration)>,
    method: Option<StartMethod>,
    allow_threads: bool,
    legacy_auth: bool,
    init: Option<Init>,
    /// [`pool_task`](Self::pool_task)s: the registration's offset and the
    /// task's key, or why one cannot cross.
    pool_tasks: Vec<Result<(u64, u64)>>,
}

impl ManagerBuilder {
    /// Listens on `address` (default: a socket in a fresh private
    /// directory). A TCP address serves other hosts too; with port 0 the
    /// server binds a free port, and [`Manager::address`] reports the real
    /// one (as Python's `manager.address`).
    pub fn address(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// The authentication key (default: this process's
    /// [`authkey`](crate::CurrentProcess::authkey), which children inherit).
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
    }

    /// Registers a type made with [`manager_type!`](crate::manager_type).
    /// A type id registered twice: the last registration wins. Its code
    /// must be in the main executable, not a shared library (a plugin):
    /// [`start`](Self::start) refuses it otherwise with
    /// [`ConnectError::ForeignCode`].
    pub fn register<T: Remote>(mut self) -> Self {
        self.types
            .push((T::TYPE_ID.to_string(), constructor_of::<T> as Registration));
        self
    }

    /// Runs `f(args)` in the server process before it serves (Python's
    /// `SyncManager(initializer=f, initargs=args)`): to set up what the
    /// server's registered types use (a logger, a global table, a working
    /// directory). `f` is a plain function of the main executable, so that
    /// it can cross to a spawned server; `args` travel encoded.
    ///
    /// If `f` returns an error or panics, the server exits without
    /// serving and [`start`](Self::start) fails with
    /// [`ConnectError::InitializerFailed`] (or [`serve`](Self::serve) with
    /// [`Error::InitializerFailed`]) and its text (a panic's message
    /// and place).
    ///
    /// ```no_run
    /// use multiproc::manager::Manager;
    ///
    /// fn init(dir: String) -> std::io::Result<()> {
    ///     std::env::set_current_dir(dir)
    /// }
    ///
    /// let m = Manager::builder().initializer(init, "/tmp".to_string()).start()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// A function of a shared library makes `start` fail with
    /// [`ConnectError::ForeignCode`]. A second call replaces the first.
    pub fn initializer<J, E>(mut self, f: fn(J) -> std::result::Result<(), E>, args: J) -> Self
    where
        J: Serialize + DeserializeOwned + 'static,
        E: std::fmt::Display + 'static,
    {
        self.init = Some(Init {
            trampoline: run_initializer::<J, E>,
            function: CodePtr::new(f).map(CodePtr::offset),
            args: enc(&args),
        });
        self
    }

    /// Lets clients run `f` on the server's pools ([`Manager::pool`]):
    /// only the functions registered here can run there. `f` is a function
    /// item or a closure that captures nothing (a function pointer or a
    /// capturing closure does not compile); a client names it by a key of
    /// its type, which the server looks up among these, so it never calls
    /// anything a client names (see the `PoolProxy` docs).
    #[cfg(feature = "pool")]
    pub fn pool_task<F, A, R>(mut self, f: F) -> Self
    where
        F: Fn(A) -> R + Copy + Send + Sync + 'static,
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        const {
            assert!(
                std::mem::size_of::<F>() == 0,
                "a pool task captures nothing"
            )
        };
        let _ = f;
        let registration: objects::pool::TaskRegistration = objects::pool::runner_of::<F, A, R>;
        self.pool_tasks
            .push(CodePtr::new(registration).map(|r| (r.offset(), objects::pool::task_key::<F>())));
        self
    }

    /// The pool tasks, checked: `start` fails on the first that cannot
    /// cross.
    fn checked_pool_tasks(&self) -> Result<Vec<(u64, u64)>> {
        self.pool_tasks
            .iter()
            .map(|t| t.as_ref().map(|t| *t).map_err(clone_setup_error))
            .collect()
    }

    /// Also accepts the HMAC-MD5 handshake of CPython 3.11 and older
    /// clients (default: SHA-256 only, which CPython 3.12 and multiproc's
    /// own clients speak). The server still sends a `{sha256}` challenge;
    /// it accepts a bare HMAC-MD5 answer to it, and answers the client's
    /// old-style challenge, which it only sees after the client proved it
    /// has the key. See [the Python clients section](crate::manager#python-clients).
    pub fn legacy_auth(mut self, on: bool) -> Self {
        self.legacy_auth = on;
        self
    }

    /// Starts the server with this start method (default: fork if this
    /// process has one thread, spawn otherwise; spawn needs
    /// [`init`](crate::init) first in `main`).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Lets [`start`](Self::start) fork a multithreaded process (see
    /// [`Process::allow_threads`]).
    ///
    /// # Safety
    ///
    /// As for [`Process::allow_threads`]: no other thread may hold a lock
    /// the server process would need (the server uses its own threads,
    /// the allocator and the standard library).
    pub unsafe fn allow_threads(mut self) -> Self {
        self.allow_threads = true;
        self
    }

    /// Starts a server process and connects to it.
    ///
    /// The server ignores SIGINT, as Python's does: a Ctrl-C in the
    /// terminal signals the whole foreground process group, and a program
    /// that handles it keeps working proxies. It stops when the [`Manager`]
    /// that started it is dropped or [shut down](Manager::shutdown), on
    /// SIGTERM, or when the process that started it ends.
    ///
    /// Errors: [`ConnectError::ForeignCode`] if a registered type's code
    /// lives in a shared library rather than the main executable (the
    /// server process could not find it); [`ConnectError::Start`] (or
    /// [`ConnectError::Os`] naming the failed call) if the server process
    /// could not be started,
    /// [`ConnectError::InitializerFailed`] if its initializer failed,
    /// [`ConnectError::ServerGone`] if it ended or did not answer in time.
    pub fn start(self) -> Result<Manager, ConnectError> {
        self.start_any().map_err(ConnectError::from_internal)
    }

    fn start_any(self) -> Result<Manager> {
        let pool_tasks = self.checked_pool_tasks()?;
        // Registered types cross to the server as code offsets: functions of
        // the main executable only.
        let types = self
            .types
            .iter()
            .map(|(id, f)| Ok((id.clone(), CodePtr::new(*f)?.offset())))
            .collect::<Result<_>>()?;
        let authkey = self
            .authkey
            .unwrap_or_else(|| crate::process::current_process().authkey().to_vec());
        let (address, dir) = match self.address {
            Some(a) => (a, None),
            None => {
                let dir = private_dir()?;
                (Address::Unix(dir.join("manager.sock")), Some(dir))
            }
        };
        let method = self
            .method
            .unwrap_or_else(|| match crate::sys::thread::thread_count() {
                Some(1) => StartMethod::Fork,
                _ => StartMethod::Spawn,
            });
        // A TCP port 0 is chosen by the server's bind: it reports the real
        // address through shared memory, where `start` reads it.
        let report = match &address {
            Address::Tcp(a) if a.port() == 0 => {
                Some(Arc::new(crate::RawArray::<u8>::zeroed(REPORT_LEN)?))
            }
            _ => None,
        };
        let init = match &self.init {
            None => None,
            Some(i) => {
                let trampoline = CodePtr::new(i.trampoline)?.offset();
                let function = i.function.as_ref().map_err(clone_setup_error)?;
                let args = i.args.as_ref().map_err(clone_setup_error)?;
                Some((trampoline, *function, args.clone()))
            }
        };
        let args = ServerArgs {
            pool_tasks,
            parent: Some(crate::sys::thread::pid()),
            address: address.to_string(),
            authkey: authkey.clone(),
            types,
            report: report.clone(),
            legacy_auth: self.legacy_auth,
            init,
        };
        let process = Process::call_with(method, server_main, args)?
            .with_name("multiproc-manager")
            .with_daemon(true);
        let mut process = if self.allow_threads {
            // SAFETY: the caller of `allow_threads` promised it.
            unsafe { process.allow_threads() }
        } else {
            process
        };
        let cleanup = |dir: &Option<PathBuf>| {
            if let Some(d) = dir {
                let _ = std::fs::remove_dir_all(d);
            }
        };
        if let Err(e) = process.start() {
            cleanup(&dir);
            return Err(e.into());
        }
        let mut address = address;
        let mut reported = report.is_none();
        let deadline = Instant::now() + START_TIMEOUT;
        let session = loop {
            let ours = if !reported {
                match report.as_deref().and_then(read_report) {
                    Some(a) => {
                        address = a;
                        reported = true;
                        continue;
                    }
                    None => Err(Error::ServerGone("it is not listening yet".into())),
                }
            } else {
                // Connected to *our* server (not another one that holds the
                // address: ours then fails to bind and exits)?
                Session::get(&address, &authkey).and_then(|s| {
                    let pid: u32 = dec(&s.control(&ControlOp::Pid)?)?;
                    if Some(pid as i32) == process.pid() {
                        Ok(s)
                    } else {
                        Err(Error::ServerGone(format!(
                            "another server answers at {address}"
                        )))
                    }
                })
            };
            match ours {
                Ok(s) => break s,
                Err(Error::ServerGone(why)) => {
                    if !process.is_alive() {
                        let msg = match process.result() {
                            Ok(Some(ServerEnd::Initializer(m))) => {
                                cleanup(&dir);
                                return Err(Error::InitializerFailed(format!(
                                    "the manager server's initializer: {m}"
                                )));
                            }
                            Ok(Some(ServerEnd::Failed(m))) => m,
                            Ok(None) => "it exited".into(),
                            Err(e) => e.to_string(),
                        };
                        cleanup(&dir);
                        return Err(Error::ServerGone(format!(
                            "the manager server did not start: {msg}"
                        )));
                    }
                    if Instant::now() >= deadline {
                        let _ = process.kill();
                        let _ = process.join();
                        cleanup(&dir);
                        return Err(Error::ServerGone(format!(
                            "the manager server did not answer in time: {why}"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    let _ = process.kill();
                    let _ = process.join();
                    cleanup(&dir);
                    return Err(e);
                }
            }
        };
        Ok(Manager {
            session: parking_lot::Mutex::new(session),
            address,
            authkey,
            server: Some(ServerHandle {
                process,
                dir,
                owner: crate::sys::thread::pid(),
            }),
        })
    }

    /// Runs a server in this process until a shutdown request, SIGTERM or
    /// SIGINT (a blocking call; what `multiproc manager serve` runs). The
    /// address must be given.
    ///
    /// To stop a standalone server: Ctrl-C in its terminal (SIGINT, as
    /// Python's `serve_forever` stops on `KeyboardInterrupt`), `kill PID`
    /// (SIGTERM), or from any client that has the key:
    /// `Manager::connect(&address, key)?.shutdown()`.
    pub fn serve(self) -> Result<(), ServeError> {
        let legacy = self.legacy_auth;
        self.initialize_here().map_err(ServeError::from_internal)?;
        let (address, authkey, types) = self.in_process().map_err(ServeError::from_internal)?;
        serve_with(&address, &authkey, types, None, legacy, &|_| Ok(()))
            .map_err(ServeError::from_internal)
    }

    /// Runs the initializer (if any) in this process, for a server run
    /// here.
    fn initialize_here(&self) -> Result<()> {
        let tasks = self.checked_pool_tasks()?;
        // SAFETY: pairs made by this builder's `pool_task`, in this
        // process.
        unsafe { register_pool_tasks(&tasks)? };
        match self
            .init
            .as_ref()
            .map(Init::run_here)
            .transpose()?
            .flatten()
        {
            Some(m) => Err(Error::InitializerFailed(format!(
                "the manager server's initializer: {m}"
            ))),
            None => Ok(()),
        }
    }

    /// What a server run in this process needs: the address (which must
    /// be given), the key, and the registered types' constructors (no code
    /// crosses to another process).
    #[allow(clippy::type_complexity)]
    fn in_process(self) -> Result<(Address, Vec<u8>, Vec<(String, Constructor)>)> {
        let address = self.address.ok_or(Error::InvalidArgument(
            "serve needs an address to listen on",
        ))?;
        let authkey = self
            .authkey
            .unwrap_or_else(|| crate::process::current_process().authkey().to_vec());
        let types = self.types.into_iter().map(|(id, f)| (id, f(()))).collect();
        Ok((address, authkey, types))
    }

    /// [`serve`](Self::serve), running `setup` once the server listens: on
    /// a thread of its own, with a [`Manager`] connected to this server, to
    /// make the objects clients will find by name
    /// ([`Manager::expose`]); Python's `register('get_queue', callable=
    /// lambda: q)` before `serve_forever()`. If `setup` fails, the server
    /// stops and this returns its error ([`ServeError::Setup`]).
    ///
    /// ```no_run
    /// use multiproc::manager::Manager;
    /// use multiproc::connection::listener::Address;
    ///
    /// Manager::builder()
    ///     .address(Address::parse("tcp:0.0.0.0:50000")?)
    ///     .authkey(b"abracadabra".to_vec())
    ///     .serve_with_setup(|m| m.expose("jobs", &m.queue::<String>()?))?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn serve_with_setup<F>(self, setup: F) -> Result<(), ServeError>
    where
        F: FnOnce(&Manager) -> Result<(), ProxyError> + Send + 'static,
    {
        let legacy = self.legacy_auth;
        self.initialize_here().map_err(ServeError::from_internal)?;
        let (address, authkey, types) = self.in_process().map_err(ServeError::from_internal)?;
        let failed: Arc<parking_lot::Mutex<Option<ServeError>>> = Arc::default();
        let setup = parking_lot::Mutex::new(Some(setup));
        let bound = |at: &Address| {
            let Some(f) = setup.lock().take() else {
                return Ok(());
            };
            let (at, key, failed) = (at.clone(), authkey.clone(), failed.clone());
            std::thread::Builder::new()
                .name("mp-manager-setup".into())
                .spawn(move || {
                    // The failure is recorded before the server is asked
                    // to stop: the serving thread looks at it once the
                    // server stopped, and must not find it missing.
                    match Manager::connect(&at, &key) {
                        Err(e) => *failed.lock() = Some(ServeError::from_internal(e.into())),
                        Ok(m) => match f(&m) {
                            Ok(()) => return,
                            Err(e) => {
                                *failed.lock() = Some(ServeError::Setup(e));
                                let _ = m.control_raw(&ControlOp::Shutdown);
                            }
                        },
                    }
                    // The server may be waiting for a connection: one more
                    // stop request that cannot be missed.
                    if let Ok(m) = Manager::connect(&at, &key) {
                        let _ = m.shutdown();
                    }
                })
                .map(drop)
                .map_err(|e| Error::os("spawn a thread", e))
        };
        let r = serve_with(&address, &authkey, types, None, legacy, &bound);
        if let Some(e) = failed.lock().take() {
            return Err(e);
        }
        r.map_err(ServeError::from_internal)
    }
}

/// Runs a manager server on `address` with `authkey` in this process until
/// a shutdown request ([`Manager::shutdown`] from a client), SIGTERM or
/// SIGINT; the built-in types only (see [`ManagerBuilder::serve`] for
/// registered ones). A Unix socket file left at `address` by a server that
/// died is replaced; one that a live server uses is an error.
pub fn serve(address: &Address, authkey: &[u8]) -> Result<(), ServeError> {
    serve_with(address, authkey, Vec::new(), None, false, &|_| Ok(()))
        .map_err(ServeError::from_internal)
}

/// Serves until a shutdown request, SIGTERM or SIGINT (unless ignored), or
/// (with `parent`) until the process `parent` is no longer this one's
/// parent (it died). `bound` learns the address listened on.
fn serve_with(
    address: &Address,
    authkey: &[u8],
    types: Vec<(String, Constructor)>,
    parent: Option<i32>,
    legacy_auth: bool,
    bound: &dyn Fn(&Address) -> Result<()>,
) -> Result<()> {
    let listener = server::bind(address, authkey, legacy_auth)?;
    bound(listener.address())?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut ids = Vec::new();
    // A started server (with a parent) ignores SIGINT, as Python's does; a
    // standalone one stops on Ctrl-C.
    let signals: &[i32] = if parent.is_some() {
        &[signal_hook::consts::SIGTERM]
    } else {
        &[signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT]
    };
    for &sig in signals {
        ids.push(
            signal_hook::flag::register(sig, stop.clone())
                .map_err(|e| Error::os("sigaction", e))?,
        );
    }
    let orphaned = move || parent.is_some_and(|p| crate::sys::process::parent_pid() != p);
    let r = server::run(listener, types, &stop, &orphaned);
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    r
}

/// What the server process gets.
#[derive(Serialize, Deserialize)]
struct ServerArgs {
    /// The process that started the server: when it dies, the server stops.
    parent: Option<i32>,
    address: String,
    authkey: Vec<u8>,
    /// Registered types: type id and the constructor's `CodePtr` offset.
    types: Vec<(String, u64)>,
    /// Where to report the address bound (a TCP port 0 becomes a real one):
    /// see [`write_report`].
    report: Option<Arc<crate::RawArray<u8>>>,
    /// [`ManagerBuilder::legacy_auth`].
    legacy_auth: bool,
    /// [`ManagerBuilder::initializer`]: the trampoline's `CodePtr` offset,
    /// the initializer's, and its encoded arguments.
    init: Option<(u64, u64, Vec<u8>)>,
    /// [`ManagerBuilder::pool_task`]s: each registration's `CodePtr`
    /// offset and the task's key.
    pool_tasks: Vec<(u64, u64)>,
}

/// Registers pool tasks (registration offset and task key) for this
/// process's servers.
///
/// # Safety
///
/// Each pair must come from [`ManagerBuilder::pool_task`] (the offset of
/// `runner_of::<F, A, R>` and the key of `F`, made together), in this
/// process or in the one that started this server (same executable),
/// handed over on a channel no other process can write.
#[cfg(feature = "pool")]
unsafe fn register_pool_tasks(tasks: &[(u64, u64)]) -> Result<()> {
    for &(registration, key) in tasks {
        let code = Code::from_offset(registration)?;
        // SAFETY: the caller vouches that `registration` is the offset of
        // a `CodePtr<TaskRegistration>`.
        let r = unsafe { code.assume::<objects::pool::TaskRegistration>() };
        objects::pool::register(key, r.get()(()));
    }
    Ok(())
}

#[cfg(not(feature = "pool"))]
/// Without the `pool` feature there are none.
///
/// # Safety
///
/// None needed: it does nothing.
unsafe fn register_pool_tasks(_: &[(u64, u64)]) -> Result<()> {
    Ok(())
}

/// Why a server process ended before serving, or stopped with an error.
#[derive(Serialize, Deserialize, Debug)]
enum ServerEnd {
    /// Its initializer failed (the text says how).
    Initializer(String),
    /// Anything else.
    Failed(String),
}

/// The room for a reported address: a length byte, then the address.
const REPORT_LEN: usize = 256;

/// Writes `address` into `report` for [`read_report`]: the text first,
/// then its length in byte 0 (each byte an atomic store; the length's
/// store publishes the text).
fn write_report(report: &crate::RawArray<u8>, address: &Address) {
    let text = address.to_string();
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() >= REPORT_LEN.min(256) {
        return;
    }
    for (i, b) in bytes.iter().enumerate() {
        let _ = report.set(i + 1, *b);
    }
    let _ = report.set(0, bytes.len() as u8);
}

/// The address the server reported, once it has: untrusted bytes (any
/// process mapping them could write), so parsed and checked.
fn read_report(report: &crate::RawArray<u8>) -> Option<Address> {
    let n = report.get(0).ok()? as usize;
    if n == 0 {
        return None;
    }
    let bytes: Vec<u8> = (1..=n).map(|i| report.get(i).unwrap_or(0)).collect();
    Address::parse(std::str::from_utf8(&bytes).ok()?).ok()
}

/// The server process's entry: `None` after a clean stop, or the error.
fn server_main(args: ServerArgs) -> Option<ServerEnd> {
    // As Python's manager server: Ctrl-C in a terminal signals the whole
    // foreground group, and the program that started the server may
    // handle it and go on using its proxies. The server stops on a
    // shutdown request, SIGTERM, or when that program ends. Ignored from
    // the start, before the initializer, as Python does.
    if let Err(e) = crate::signal::set_disposition(
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::SigHandler::SigIgn,
    ) {
        return Some(ServerEnd::Failed(e.to_string()));
    }
    if let Some((trampoline, function, init_args)) = args.init.clone() {
        let code = match Code::from_offset(trampoline) {
            Ok(c) => c,
            Err(e) => return Some(ServerEnd::Initializer(e.to_string())),
        };
        // SAFETY: the offset of a `CodePtr<InitTrampoline>` made by
        // `ManagerBuilder::start` and handed to this process in its
        // arguments (fork memory or the spawn bootstrap, which no other
        // process can write); this process runs the same executable.
        let t = unsafe { code.assume::<InitTrampoline>() };
        if let Some(why) = t.get()((function, init_args)) {
            return Some(ServerEnd::Initializer(why));
        }
    }
    let run = || -> Result<()> {
        // SAFETY: the pairs `ManagerBuilder::start` made with `pool_task`
        // and handed to this process in its arguments (fork memory or the
        // spawn bootstrap, which no other process can write).
        unsafe { register_pool_tasks(&args.pool_tasks)? };
        let address = Address::parse(&args.address)?;
        let types = args
            .types
            .iter()
            .map(|(id, off)| {
                // SAFETY: the offset of a `CodePtr<Registration>`, made by
                // `ManagerBuilder::start` and handed to this process in its
                // arguments (fork memory or the spawn bootstrap, which no
                // other process can write); this process is a fork of that
                // one or a spawn of the same executable.
                let f = unsafe { Code::from_offset(*off)?.assume::<Registration>() };
                Ok((id.clone(), f.get()(())))
            })
            .collect::<Result<_>>()?;
        let report = |a: &Address| {
            if let Some(r) = &args.report {
                write_report(r, a);
            }
            Ok(())
        };
        let r = serve_with(
            &address,
            &args.authkey,
            types,
            args.parent,
            args.legacy_auth,
            &report,
        );
        // The private directory `start` made, now empty (the socket file
        // went with the listener), if the parent died without removing it.
        if let Address::Unix(path) = &address
            && let Some(dir) = path.parent()
            && dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("multiproc-manager-"))
        {
            let _ = std::fs::remove_dir(dir);
        }
        r
    };
    run().err().map(|e| ServerEnd::Failed(e.to_string()))
}

/// A fresh directory only this user can enter, for a server's socket.
fn private_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    for attempt in 0u32..100 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!(
            "multiproc-manager-{}-{nanos:x}{attempt}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::os("mkdir", e)),
        }
    }
    Err(Error::InvalidArgument("could not make a private directory"))
}

struct ServerHandle {
    process: Process<'static, Option<ServerEnd>>,
    dir: Option<PathBuf>,
    owner: i32,
}

/// A connection to a manager's server, and the server itself if this
/// process started it (Python's `SyncManager`).
///
/// Dropping a manager that started its server shuts the server down (in
/// the process that started it; a forked child's copy leaves it alone).
pub struct Manager {
    session: parking_lot::Mutex<Arc<Session>>,
    address: Address,
    authkey: Vec<u8>,
    server: Option<ServerHandle>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.address)
            .field("owns_server", &self.server.is_some())
            .finish()
    }
}

impl Manager {
    /// Starts a server process with the built-in types and connects to it
    /// (see [`ManagerBuilder`] for the options).
    pub fn start() -> Result<Manager, ConnectError> {
        Manager::builder().start()
    }

    /// Options for starting a server.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connects to a running server (Python's `BaseManager.connect`).
    ///
    /// [`ConnectError::ServerGone`] if no server answers there,
    /// [`ConnectError::AuthenticationFailed`] if it refuses the key.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Manager, ConnectError> {
        let session = Session::get(address, authkey).map_err(ConnectError::from_internal)?;
        Ok(Manager {
            session: parking_lot::Mutex::new(session),
            address: address.clone(),
            authkey: authkey.to_vec(),
            server: None,
        })
    }

    /// Connects to a manager server through CPython's manager protocol: a
    /// python3 `SyncManager` (`SyncManager(address=..., authkey=...)`
    /// started or `serve_forever()`ing), or a multiproc server, whose
    /// objects Python clients then share with these proxies (values in
    /// Python's pickle encoding). See [`PythonManager`].
    pub fn connect_python(
        address: &Address,
        authkey: &[u8],
    ) -> Result<PythonManager, ConnectError> {
        PythonManager::connect(address, authkey)
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The server's process id, if this process started it.
    pub fn server_pid(&self) -> Option<i32> {
        self.server.as_ref().and_then(|s| s.process.pid())
    }

    /// This process's session (a new one after a fork).
    fn session(&self) -> Result<Arc<Session>, ProxyError> {
        let mut s = self.session.lock();
        if !s.is_current() {
            *s = Session::get(&self.address, &self.authkey).map_err(ProxyError::from_internal)?;
        }
        Ok(s.clone())
    }

    /// Runs an operation on the server itself; its encoded answer.
    fn control_raw(&self, op: &ControlOp<'_>) -> Result<Vec<u8>, ProxyError> {
        self.session()?
            .control(op)
            .map_err(ProxyError::from_internal)
    }

    /// Runs an operation on the server itself; its answer.
    fn control<R: DeserializeOwned>(&self, op: &ControlOp<'_>) -> Result<R, ProxyError> {
        proxy::dec(&self.control_raw(op)?)
    }

    fn make<P: TypedProxy>(&self, init: &[u8]) -> Result<P, ProxyError> {
        let session = self.session()?;
        let id: u64 = proxy::dec(
            &session
                .control(&ControlOp::Create {
                    typeid: P::TYPE_ID,
                    init: Bytes(init),
                })
                .map_err(ProxyError::from_internal)?,
        )?;
        Ok(P::from_proxy_unchecked(Proxy::created(
            session,
            id,
            P::TYPE_ID,
        )))
    }

    /// Makes an object of a registered type, starting as `value`.
    pub fn create<T: Remote>(&self, value: &T) -> Result<T::Proxy, ProxyError> {
        self.make(&proxy::enc(value)?)
    }

    /// An empty list.
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>, ProxyError> {
        self.make(&proxy::enc(&Vec::<Bytes<'_>>::new())?)
    }

    /// A list holding `items`. Proxies among them keep their objects
    /// alive while the list holds them (see [`ListProxy`]).
    pub fn list_from<T: Serialize + DeserializeOwned>(
        &self,
        items: &[T],
    ) -> Result<ListProxy<T>, ProxyError> {
        let list = self.list()?;
        if !items.is_empty() {
            list.extend(items)?;
        }
        Ok(list)
    }

    /// An empty dict.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>, ProxyError>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.make(&proxy::enc(&Vec::<(Bytes<'_>, Bytes<'_>)>::new())?)
    }

    /// An empty namespace.
    pub fn namespace(&self) -> Result<NamespaceProxy, ProxyError> {
        self.make(&proxy::enc(&Vec::<(String, Bytes<'_>)>::new())?)
    }

    /// A value. A proxy in it keeps its object alive while it is there.
    pub fn value<T: Serialize + DeserializeOwned>(
        &self,
        value: &T,
    ) -> Result<ValueProxy<T>, ProxyError> {
        let (bytes, proxies) = proxy::enc_noting(value, &self.address)?;
        let v: ValueProxy<T> = self.make(&bytes)?;
        if proxies {
            // Stored again through a call that makes the server hold them.
            v.set(value)?;
        }
        Ok(v)
    }

    /// A fixed-length array holding `items`. Proxies among them keep their
    /// objects alive while the array holds them.
    pub fn array<T: Serialize + DeserializeOwned>(
        &self,
        items: &[T],
    ) -> Result<ArrayProxy<T>, ProxyError> {
        let mut v = Vec::with_capacity(items.len());
        let mut with_proxies = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let (bytes, proxies) = proxy::enc_noting(item, &self.address)?;
            if proxies {
                with_proxies.push(i);
            }
            v.push(bytes);
        }
        let b: Vec<Bytes<'_>> = v.iter().map(|x| Bytes(x)).collect();
        let a: ArrayProxy<T> = self.make(&proxy::enc(&b)?)?;
        for i in with_proxies {
            a.set(i, &items[i])?;
        }
        Ok(a)
    }

    /// An unbounded queue.
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>, ProxyError> {
        self.make(&proxy::enc(&0u64)?)
    }

    /// A queue of at most `maxsize` items (`0`: unbounded).
    pub fn queue_bounded<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<QueueProxy<T>, ProxyError> {
        self.make(&proxy::enc(&(maxsize as u64))?)
    }

    /// An unbounded joinable queue.
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
    ) -> Result<JoinableQueueProxy<T>, ProxyError> {
        self.make(&proxy::enc(&0u64)?)
    }

    /// A joinable queue of at most `maxsize` items (`0`: unbounded).
    pub fn joinable_queue_bounded<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueueProxy<T>, ProxyError> {
        self.make(&proxy::enc(&(maxsize as u64))?)
    }

    /// A lock.
    pub fn lock(&self) -> Result<LockProxy, ProxyError> {
        self.make(&[])
    }

    /// A reentrant lock.
    pub fn rlock(&self) -> Result<RLockProxy, ProxyError> {
        self.make(&[])
    }

    /// A semaphore with `value` units.
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy, ProxyError> {
        self.make(&proxy::enc(&(value as u64, false))?)
    }

    /// A semaphore that refuses to be released past `value` units.
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphoreProxy, ProxyError> {
        self.make(&proxy::enc(&(value as u64, true))?)
    }

    /// A condition variable with its own reentrant lock.
    pub fn condition(&self) -> Result<ConditionProxy, ProxyError> {
        self.make(&[])
    }

    /// An event.
    pub fn event(&self) -> Result<EventProxy, ProxyError> {
        self.make(&[])
    }

    /// A barrier for `parties` parties.
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy, ProxyError> {
        self.make(&proxy::enc(&(parties as u64))?)
    }

    /// A pool of `processes` worker processes (0: one per core) held by
    /// the server (Python's `manager.Pool()`): any client can run the
    /// server's registered tasks ([`ManagerBuilder::pool_task`]) on it.
    /// The workers are spawned by the server, so the program must call
    /// [`crate::init`] first in `main`. The pool is terminated when its
    /// last proxy goes (or the server stops). More than 1024 processes is
    /// a [`Value`](crate::RemoteErrorKind::Value) error.
    #[cfg(feature = "pool")]
    pub fn pool(&self, processes: usize) -> Result<PoolProxy, ProxyError> {
        self.make(&proxy::enc(&(processes as u64))?)
    }

    /// Makes `proxy`'s object reachable by `name` on this server, for any
    /// client that connects by address (Python's `BaseManager.register(
    /// name, callable=lambda: obj)` on the server side). The name holds a
    /// reference: the object lives while it is exposed, even after every
    /// proxy is dropped. Exposing another object under the name replaces
    /// (and releases) the first.
    ///
    /// # Errors
    ///
    /// [`ProxyError::InvalidArgument`] if the proxy belongs to another server;
    /// an [`UnknownObject`](crate::RemoteErrorKind::UnknownObject) error if
    /// its object is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use multiproc::manager::{Manager, QueueProxy};
    /// use multiproc::connection::listener::Address;
    ///
    /// // The server side.
    /// let m = Manager::builder()
    ///     .address(Address::parse("tcp:127.0.0.1:0")?)
    ///     .authkey(b"secret".to_vec())
    ///     .start()?;
    /// m.expose("jobs", &m.queue::<String>()?)?;
    ///
    /// // Any other program, knowing the address and key.
    /// let client = Manager::connect(m.address(), b"secret")?;
    /// let jobs: QueueProxy<String> = client.get("jobs")?;
    /// jobs.put(&"work".to_string())?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn expose<P: TypedProxy>(&self, name: &str, proxy: &P) -> Result<(), ProxyError> {
        let token = proxy.proxy().token();
        if token.address != self.address {
            return Err(ProxyError::InvalidArgument(
                "the proxy's object lives in another manager's server",
            ));
        }
        self.control_raw(&ControlOp::Expose { name, id: token.id })
            .map(drop)
    }

    /// Removes the name `name`; whether it was there. Its object is freed
    /// if nothing else refers to it.
    pub fn unexpose(&self, name: &str) -> Result<bool, ProxyError> {
        self.control(&ControlOp::Unexpose(name))
    }

    /// The object exposed as `name` (see [`expose`](Self::expose)), as a
    /// proxy of type `P` (Python's `manager.get_queue()` on a client).
    ///
    /// Only the kind of object is checked (`"queue"`, `"dict"`, a
    /// registered type id), not the element types of a container: a
    /// `QueueProxy<u64>` fetched for a queue of strings fails when an item
    /// does not decode.
    ///
    /// # Errors
    ///
    /// A [`Key`](crate::RemoteErrorKind::Key) error if nothing is exposed
    /// as `name`; a [`BadArguments`](crate::RemoteErrorKind::BadArguments)
    /// error naming both kinds if the object is not a `P`.
    pub fn get<P: TypedProxy>(&self, name: &str) -> Result<P, ProxyError> {
        let session = self.session()?;
        let (id, typeid): (u64, String) = proxy::dec(
            &session
                .control(&ControlOp::Lookup(name))
                .map_err(ProxyError::from_internal)?,
        )?;
        // The reference is this session's now: a proxy owns it, typed or not.
        let proxy = Proxy::created(session, id, &typeid);
        if typeid != P::TYPE_ID {
            return Err(ProxyError::Remote {
                kind: crate::RemoteErrorKind::BadArguments,
                message: format!(
                    "the object exposed as {name:?} is a {typeid:?}, not a {:?}",
                    P::TYPE_ID
                ),
            });
        }
        Ok(P::from_proxy_unchecked(proxy))
    }

    /// The names objects are exposed under, sorted.
    pub fn exposed(&self) -> Result<Vec<String>, ProxyError> {
        self.control(&ControlOp::Names)
    }

    /// How many objects the server holds (Python's
    /// `_number_of_objects`): for checking that objects are freed.
    pub fn object_count(&self) -> Result<usize, ProxyError> {
        Ok(self.control::<u64>(&ControlOp::Count)? as usize)
    }

    /// Asks the server to stop (any connected client may), and, if this
    /// process started it, waits for it to exit (killing it after a few
    /// seconds) and removes its private directory.
    pub fn shutdown(mut self) -> Result<(), ProxyError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ProxyError> {
        let asked = self.control_raw(&ControlOp::Shutdown).map(drop);
        let Some(mut h) = self.server.take() else {
            return asked;
        };
        let ended = h.process.join_timeout(STOP_TIMEOUT);
        if !matches!(ended, Ok(Some(_))) {
            let _ = h.process.kill();
            let _ = h.process.join();
        }
        if let Some(d) = &h.dir {
            let _ = std::fs::remove_dir_all(d);
        }
        match asked {
            Err(ProxyError::ServerGone(_)) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let owner = self.server.as_ref().map(|h| h.owner);
        if owner == Some(crate::sys::thread::pid()) {
            let _ = self.stop();
        } else if let Some(h) = self.server.take() {
            // A forked child's copy: the parent's server and process
            // handle are not this process's to stop.
            std::mem::forget(h.process);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_registered_from_a_shared_library_is_refused() {
        let mut b = Manager::builder();
        let f = crate::process::code::tests::foreign::<(), Constructor>();
        b.types.push(("plugin".to_owned(), f));
        match b.start() {
            Err(ConnectError::ForeignCode { object, .. }) => {
                assert!(object.contains("libc"), "{object}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a server was started"),
        }
    }

    #[test]
    fn an_initializer_from_a_shared_library_is_refused() {
        let f = crate::process::code::tests::foreign::<(), std::result::Result<(), String>>();
        match Manager::builder().initializer(f, ()).start() {
            Err(ConnectError::ForeignCode { object, .. }) => {
                assert!(object.contains("libc"), "{object}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a server was started"),
        }
        // A pool task from a shared library cannot even be named:
        // `pool_task` takes zero-sized function types only, never a
        // pointer, and the server calls it through its type.
    }
}
