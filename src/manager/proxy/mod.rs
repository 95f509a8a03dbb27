//! Proxies: handles on objects that live in a manager's server.
//!
//! This module has the untyped [`Proxy`] (the reference, the session, the
//! call) and the machinery of typed ones; the typed proxies of the
//! built-in objects are in [`containers`], [`queues`] and [`sync`], each
//! method encoding the typed operation its object answers.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client::Session;
use super::error::ProxyError;
use super::protocol::{ADOPT, Bytes, ControlOp, HOLDS};
use crate::connection::listener::Address;
use crate::error::RemoteErrorKind;

/// The result of a proxy call.
type Result<T, E = ProxyError> = std::result::Result<T, E>;

/// Encodes a value with postcard ([`ProxyError::Codec`] if it cannot be).
pub(crate) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    super::protocol::enc(v).map_err(ProxyError::from_internal)
}

/// Decodes an answer ([`ProxyError::Codec`] if it does not decode as `T`).
pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    super::protocol::dec(b).map_err(ProxyError::from_internal)
}

/// What names a managed object: the server's address, the object's id
/// there, and its type id. Enough to rebuild a proxy in any process that
/// has the authkey ([`Proxy::from_token`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Token {
    /// The server's address.
    pub address: Address,
    /// The object's id in the server.
    pub id: u64,
    /// The object's type id (`"list"`, `"dict"`, or a registered type's).
    pub typeid: String,
}

#[derive(Serialize, Deserialize)]
struct WireToken {
    address: String,
    id: u64,
    typeid: String,
}

impl Serialize for Token {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        WireToken {
            address: self.address.to_string(),
            id: self.id,
            typeid: self.typeid.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = WireToken::deserialize(d)?;
        let address = Address::parse(&w.address).map_err(serde::de::Error::custom)?;
        Ok(Token {
            address,
            id: w.id,
            typeid: w.typeid,
        })
    }
}

struct Inner {
    token: Token,
    /// The key to connect with if this process has no session yet; `None`:
    /// this process's authkey.
    authkey: Option<Vec<u8>>,
    /// The session in which this proxy holds its reference, if it holds
    /// one in this process.
    attached: Mutex<Option<Arc<Session>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(s) = self.attached.get_mut().take()
            && s.is_current()
        {
            s.notify_control(&ControlOp::Decref(self.token.id));
        }
    }
}

/// An untyped proxy: a counted reference to an object in a manager's
/// server, and calls to its methods by name.
///
/// Clones share one reference. A proxy can go to another process: a forked
/// child uses its copy through a connection of its own (made on first
/// use); serialized (through a [`Connection`](crate::Connection), a
/// [`Queue`](crate::Queue), or as the [`Token`]) it is rebuilt in the
/// receiving process and takes a reference of its own there on first use
/// (through that process's connection to the server, or with its authkey).
/// The sender must keep its proxy until then. An object lives while any
/// process holds a reference; a process that exits or dies releases all of
/// its references.
///
/// A proxy stored in a managed container of the same server (a list, dict
/// value, namespace field, value, array or queue item) keeps its object
/// alive while the container holds it, as in Python: the temporary in
/// `outer.push(&manager.list()?)` may be dropped at once. The reference
/// goes when the item is overwritten or removed, or the container is
/// freed; an item taken out (`pop`, a queue's `get`, a dict's `remove` or
/// the old value `insert` returns, a value's `swap`) hands it to the proxy
/// decoded from it. Cycles (a list that holds itself) are never freed.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("token", &self.inner.token)
            .finish()
    }
}

impl Proxy {
    /// A proxy holding the reference a `create` call gave `session`.
    pub(crate) fn created(session: Arc<Session>, id: u64, typeid: &str) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                token: Token {
                    address: session.address.clone(),
                    id,
                    typeid: typeid.to_string(),
                },
                authkey: Some(session.authkey.clone()),
                attached: Mutex::new(Some(session)),
            }),
        }
    }

    /// A proxy for the object `token` names, connecting with `authkey`
    /// (`None`: the key of this process's connection to that server if it
    /// has one, else this process's authkey). It takes its reference on first
    /// use; an object that is gone by then is an
    /// [`UnknownObject`](RemoteErrorKind::UnknownObject) error.
    pub fn from_token(token: Token, authkey: Option<&[u8]>) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                token,
                authkey: authkey.map(<[u8]>::to_vec),
                attached: Mutex::new(None),
            }),
        }
    }

    /// What names the object.
    pub fn token(&self) -> &Token {
        &self.inner.token
    }

    /// Connects in this process (if not yet) and takes a reference there.
    pub(crate) fn session(&self) -> Result<Arc<Session>> {
        self.attach().map_err(ProxyError::from_internal)
    }

    fn attach(&self) -> crate::Result<Arc<Session>> {
        use super::protocol::dec;
        let mut a = self.inner.attached.lock();
        if let Some(s) = &*a
            && s.is_current()
        {
            return Ok(s.clone());
        }
        let s = match &self.inner.authkey {
            Some(k) => Session::get(&self.inner.token.address, k)?,
            None => match Session::existing(&self.inner.token.address) {
                Some(s) => s,
                None => Session::get(
                    &self.inner.token.address,
                    crate::process::current_process().authkey(),
                )?,
            },
        };
        let id = self.inner.token.id;
        let typeid: String = dec(&s.control(&ControlOp::Incref(id))?)?;
        if typeid != self.inner.token.typeid {
            s.notify_control(&ControlOp::Decref(id));
            return Err(crate::Error::Remote {
                kind: RemoteErrorKind::BadArguments,
                message: format!(
                    "object {id} is a {typeid:?}, not a {:?}",
                    self.inner.token.typeid
                ),
            });
        }
        // The parent's session (after a fork) is let go without a word:
        // its references belong to the parent.
        *a = Some(s.clone());
        Ok(s)
    }

    /// Calls the method `method` of a registered type's object with
    /// already encoded arguments (a tuple of its parameters); the encoded
    /// result. The built-in objects take typed operations, not method
    /// names: on them this is an
    /// [`UnknownMethod`](RemoteErrorKind::UnknownMethod) error.
    pub fn call_raw(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        self.session()?
            .call(self.inner.token.id, Some(method), args)
            .map_err(ProxyError::from_internal)
    }

    /// Calls the method `method` of a registered type's object with `args`
    /// (encoded with postcard) and decodes the result as `R` (see
    /// [`call_raw`](Self::call_raw)).
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R> {
        dec(&self.call_raw(method, &enc(args)?)?)
    }

    /// Runs a typed operation on a built-in object; its answer decoded
    /// as `R`.
    pub(crate) fn op<O: Serialize, R: DeserializeOwned>(&self, op: &O) -> Result<R> {
        let args = enc(op)?;
        dec(&self.raw_op(&args)?)
    }

    /// Runs an encoded typed operation; its encoded answer.
    pub(crate) fn raw_op(&self, args: &[u8]) -> Result<Vec<u8>> {
        self.session()?
            .call(self.inner.token.id, None, args)
            .map_err(ProxyError::from_internal)
    }

    /// [`op`](Self::op) for an operation answering nothing.
    pub(crate) fn op_unit<O: Serialize>(&self, op: &O) -> Result<()> {
        self.raw_op(&enc(op)?).map(drop)
    }
}

impl Serialize for Proxy {
    /// A proxy travels as its [`Token`].
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        NOTED.with(|n| {
            if let Some(v) = n.borrow_mut().as_mut() {
                v.push((self.inner.token.address.clone(), self.inner.token.id));
            }
        });
        self.inner.token.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Proxy {
    /// Rebuilt without a key: on first use it goes through this process's
    /// connection to that server if there is one, else it connects with
    /// this process's authkey. One taken out of a managed container comes
    /// with the reference the container held.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let token = Token::deserialize(d)?;
        let adopted = ADOPTING.with(|a| {
            let mut a = a.borrow_mut();
            let (session, ids) = a.as_mut()?;
            if session.address != token.address {
                return None;
            }
            let at = ids.iter().position(|&id| id == token.id)?;
            ids.swap_remove(at);
            Some(session.clone())
        });
        Ok(match adopted {
            Some(session) => Proxy::created(session, token.id, &token.typeid),
            None => Proxy::from_token(token, None),
        })
    }
}

thread_local! {
    /// While an item a container call stores is encoded: the proxies
    /// serialized into it (server address and object id).
    static NOTED: std::cell::RefCell<Option<Vec<(Address, u64)>>> =
        const { std::cell::RefCell::new(None) };
    /// While an item taken out of a container is decoded: the session that
    /// took it and the ids of the references handed to it, for the proxies
    /// decoded from the item to own.
    static ADOPTING: std::cell::RefCell<Option<(Arc<Session>, Vec<u64>)>> =
        const { std::cell::RefCell::new(None) };
}

/// The encoded items one container call stores, with the ids of the
/// proxies of the container's server inside each, which the server then
/// holds for as long as it keeps the item (Python's server counts those
/// references too).
pub(crate) struct Items<'a> {
    address: &'a Address,
    holds: Vec<Vec<u64>>,
    any: bool,
}

impl<'a> Items<'a> {
    pub(crate) fn new(container: &'a Proxy) -> Items<'a> {
        Items {
            address: &container.inner.token.address,
            holds: Vec::new(),
            any: false,
        }
    }

    /// Encodes the next item.
    pub(crate) fn enc<T: Serialize + ?Sized>(&mut self, item: &T) -> Result<Vec<u8>> {
        let outer = NOTED.with(|n| n.replace(Some(Vec::new())));
        let r = enc(item);
        let noted = NOTED.with(|n| n.replace(outer)).unwrap_or_default();
        let ids: Vec<u64> = noted
            .into_iter()
            .filter(|(a, _)| a == self.address)
            .map(|(_, id)| id)
            .collect();
        self.any |= !ids.is_empty();
        self.holds.push(ids);
        r
    }
}

/// Encodes `item`; whether proxies of the server at `address` are inside.
pub(crate) fn enc_noting<T: Serialize + ?Sized>(
    item: &T,
    address: &Address,
) -> Result<(Vec<u8>, bool)> {
    let mut items = Items {
        address,
        holds: Vec::new(),
        any: false,
    };
    let bytes = items.enc(item)?;
    Ok((bytes, items.any))
}

impl Proxy {
    /// Runs a container operation that stores `items` (encoded through
    /// them) and, with `adopt`, may take items out: the proxies decoded
    /// from the result then own the references the items held.
    pub(crate) fn op_items<O: Serialize, R: DeserializeOwned>(
        &self,
        op: &O,
        items: Items<'_>,
        adopt: bool,
    ) -> Result<R> {
        let args = &enc(op)?[..];
        let session = self.session()?;
        let mut flags = if adopt { ADOPT } else { 0 };
        let wrapped;
        let args = if items.any {
            flags |= HOLDS;
            wrapped = enc(&(&items.holds, Bytes(args)))?;
            &wrapped[..]
        } else {
            args
        };
        let reply = session
            .call_flags(self.inner.token.id, None, args, flags)
            .map_err(ProxyError::from_internal)?;
        if !adopt {
            return dec(&reply);
        }
        let (handed, body): (Vec<u64>, Bytes<'_>) =
            postcard::from_bytes(&reply).map_err(|e| ProxyError::Codec(format!("decode: {e}")))?;
        if handed.is_empty() {
            return dec(body.0);
        }
        let outer = ADOPTING.with(|a| a.replace(Some((session.clone(), handed))));
        let r = dec(body.0);
        let left = ADOPTING.with(|a| a.replace(outer)).map(|(_, ids)| ids);
        // References no decoded proxy took (a type that drops tokens, or a
        // failed decode) are given back.
        for id in left.unwrap_or_default() {
            session.notify_control(&ControlOp::Decref(id));
        }
        r
    }
}

/// A proxy with a type: implemented by the built-in proxies and by the
/// ones [`manager_type!`](crate::manager_type) generates.
pub trait TypedProxy: Sized {
    /// The type id of the objects it stands for.
    const TYPE_ID: &'static str;
    /// Wraps an untyped proxy (unchecked: see [`Proxy::downcast`]).
    fn from_proxy_unchecked(p: Proxy) -> Self;
    /// The untyped proxy inside.
    fn proxy(&self) -> &Proxy;
}

impl Proxy {
    /// This proxy as a typed one, if its type id is `P`'s.
    pub fn downcast<P: TypedProxy>(self) -> Result<P> {
        if self.inner.token.typeid != P::TYPE_ID {
            return Err(ProxyError::InvalidArgument(
                "the proxy's type id is not the typed proxy's",
            ));
        }
        Ok(P::from_proxy_unchecked(self))
    }
}

/// Defines a typed proxy of a built-in object: the struct around a
/// [`Proxy`], [`TypedProxy`], `Clone`, `Debug`, and serde as its token.
macro_rules! typed_proxy {
    ($(#[$m:meta])* $name:ident $(<$($t:ident),+>)?, $typeid:literal) => {
        $(#[$m])*
        pub struct $name $(<$($t),+>)? {
            proxy: Proxy,
            $(_t: std::marker::PhantomData<fn() -> ($($t,)+)>,)?
        }

        impl $(<$($t),+>)? TypedProxy for $name $(<$($t),+>)? {
            const TYPE_ID: &'static str = $typeid;
            fn from_proxy_unchecked(proxy: Proxy) -> Self {
                $name { proxy, $(_t: std::marker::PhantomData::<fn() -> ($($t,)+)>,)? }
            }
            fn proxy(&self) -> &Proxy {
                &self.proxy
            }
        }

        impl $(<$($t),+>)? Clone for $name $(<$($t),+>)? {
            /// Another handle on the same reference.
            fn clone(&self) -> Self {
                Self::from_proxy_unchecked(self.proxy.clone())
            }
        }

        impl $(<$($t),+>)? fmt::Debug for $name $(<$($t),+>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(self.proxy.token()).finish()
            }
        }

        impl $(<$($t),+>)? Serialize for $name $(<$($t),+>)? {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.proxy.serialize(s)
            }
        }

        impl<'de, $($($t),+)?> Deserialize<'de> for $name $(<$($t),+>)? {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Proxy::deserialize(d)?.downcast().map_err(serde::de::Error::custom)
            }
        }
    };
}

mod containers;
#[cfg(feature = "pool")]
mod pool;
mod queues;
mod sync;

pub use containers::{
    ArrayProxy, DictIter, DictProxy, ListIter, ListProxy, NamespaceProxy, ValueProxy,
};
#[cfg(feature = "pool")]
pub use pool::PoolProxy;
pub use queues::{JoinableQueueProxy, QueueProxy};
pub use sync::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, EventProxy, LockProxy, ProxyGuard,
    RLockProxy, SemaphoreProxy,
};
