//! Proxies: handles on objects that live in a manager's server.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client::Session;
use super::protocol::{ADOPT, Bytes, CONTROL, HOLDS, dec, enc};
use crate::connection::listener::Address;
use crate::error::{Error, RemoteErrorKind, Result};

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
            && let Ok(args) = enc(&self.token.id)
        {
            s.notify(CONTROL, "decref", &args);
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
    fn session(&self) -> Result<Arc<Session>> {
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
        let typeid: String = dec(&s.call(CONTROL, "incref", &enc(&id)?)?)?;
        if typeid != self.inner.token.typeid {
            s.notify(CONTROL, "decref", &enc(&id)?);
            return Err(Error::Remote {
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

    /// Calls `method` with already encoded arguments; the encoded result.
    pub fn call_raw(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        self.session()?.call(self.inner.token.id, method, args)
    }

    /// Calls `method` with `args` (encoded with postcard) and decodes the
    /// result as `R`.
    pub fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R> {
        dec(&self.call_raw(method, &enc(args)?)?)
    }

    fn call_bytes<R: DeserializeOwned>(&self, method: &str, args: &[u8]) -> Result<R> {
        dec(&self.call_raw(method, args)?)
    }

    fn call_unit(&self, method: &str, args: &[u8]) -> Result<()> {
        self.call_raw(method, args).map(drop)
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
struct Items<'a> {
    address: &'a Address,
    holds: Vec<Vec<u64>>,
    any: bool,
}

impl<'a> Items<'a> {
    fn new(container: &'a Proxy) -> Items<'a> {
        Items {
            address: &container.inner.token.address,
            holds: Vec::new(),
            any: false,
        }
    }

    /// Encodes the next item.
    fn enc<T: Serialize + ?Sized>(&mut self, item: &T) -> Result<Vec<u8>> {
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
    /// Calls a container method that stores `items` (encoded through
    /// them) and, with `adopt`, may take items out: the proxies decoded
    /// from the result then own the references the items held.
    fn call_items<R: DeserializeOwned>(
        &self,
        method: &str,
        args: &[u8],
        items: Items<'_>,
        adopt: bool,
    ) -> Result<R> {
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
        let reply = session.call_flags(self.inner.token.id, method, args, flags)?;
        if !adopt {
            return dec(&reply);
        }
        let (handed, body): (Vec<u64>, Bytes<'_>) =
            postcard::from_bytes(&reply).map_err(|e| Error::Codec(format!("decode: {e}")))?;
        if handed.is_empty() {
            return dec(body.0);
        }
        let outer = ADOPTING.with(|a| a.replace(Some((session.clone(), handed))));
        let r = dec(body.0);
        let left = ADOPTING.with(|a| a.replace(outer)).map(|(_, ids)| ids);
        // References no decoded proxy took (a type that drops tokens, or a
        // failed decode) are given back.
        for id in left.unwrap_or_default() {
            if let Ok(args) = enc(&id) {
                session.notify(CONTROL, "decref", &args);
            }
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
            return Err(Error::InvalidArgument(
                "the proxy's type id is not the typed proxy's",
            ));
        }
        Ok(P::from_proxy_unchecked(self))
    }
}

/// The nanoseconds of an optional timeout, as blocking methods take them.
fn ns(t: Option<Duration>) -> Option<u64> {
    t.map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
}

macro_rules! typed_proxy {
    ($(#[$m:meta])* $name:ident $(<$($t:ident),+>)?, $typeid:literal) => {
        $(#[$m])*
        pub struct $name $(<$($t),+>)? {
            proxy: Proxy,
            $(_t: PhantomData<fn() -> ($($t,)+)>,)?
        }

        impl $(<$($t),+>)? TypedProxy for $name $(<$($t),+>)? {
            const TYPE_ID: &'static str = $typeid;
            fn from_proxy_unchecked(proxy: Proxy) -> Self {
                $name { proxy, $(_t: PhantomData::<fn() -> ($($t,)+)>,)? }
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

fn range(r: impl RangeBounds<usize>) -> (u64, u64) {
    let start = match r.start_bound() {
        Bound::Included(&s) => s as u64,
        Bound::Excluded(&s) => s as u64 + 1,
        Bound::Unbounded => 0,
    };
    let end = match r.end_bound() {
        Bound::Included(&e) => e as u64 + 1,
        Bound::Excluded(&e) => e as u64,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

typed_proxy!(
    /// A list held by a manager (Python's `manager.list()`).
    ///
    /// Items are stored as encoded (postcard); `remove`, `index`,
    /// `contains` and `count` compare encodings.
    ListProxy<T>, "list"
);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `item` (Python's `append`).
    pub fn push(&self, item: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let i = items.enc(item)?;
        self.proxy.call_items("append", &i, items, false)
    }

    /// Same as [`push`](Self::push).
    pub fn append(&self, item: &T) -> Result<()> {
        self.push(item)
    }

    /// Appends all of `items` in one call.
    pub fn extend<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        let mut enc_items = Items::new(&self.proxy);
        let v: Vec<Vec<u8>> = items
            .into_iter()
            .map(|i| enc_items.enc(i))
            .collect::<Result<_>>()?;
        let b: Vec<Bytes<'_>> = v.iter().map(|x| Bytes(x)).collect();
        self.proxy.call_items("extend", &enc(&b)?, enc_items, false)
    }

    /// The item at `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        self.proxy.call_bytes("get", &enc(&(index as u64))?)
    }

    /// Replaces the item at `index`.
    pub fn set(&self, index: usize, item: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let i = items.enc(item)?;
        self.proxy
            .call_items("set", &enc(&(index as u64, Bytes(&i)))?, items, false)
    }

    /// The number of items.
    pub fn len(&self) -> Result<usize> {
        Ok(self.proxy.call_bytes::<u64>("len", &[])? as usize)
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes and returns the last item (an [`Index`](RemoteErrorKind::Index)
    /// error if there is none).
    pub fn pop(&self) -> Result<T> {
        let items = Items::new(&self.proxy);
        self.proxy
            .call_items("pop", &enc(&None::<u64>)?, items, true)
    }

    /// Removes and returns the item at `index`.
    pub fn pop_at(&self, index: usize) -> Result<T> {
        let items = Items::new(&self.proxy);
        self.proxy
            .call_items("pop", &enc(&Some(index as u64))?, items, true)
    }

    /// Inserts `item` before `index` (at the end if `index` is past it).
    pub fn insert(&self, index: usize, item: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let i = items.enc(item)?;
        self.proxy
            .call_items("insert", &enc(&(index as u64, Bytes(&i)))?, items, false)
    }

    /// Removes the first item equal to `item` (a
    /// [`Value`](RemoteErrorKind::Value) error if there is none).
    pub fn remove(&self, item: &T) -> Result<()> {
        self.proxy.call_unit("remove", &enc(item)?)
    }

    /// The index of the first item equal to `item`.
    pub fn index(&self, item: &T) -> Result<usize> {
        Ok(self.proxy.call_bytes::<u64>("index", &enc(item)?)? as usize)
    }

    /// Whether an item equals `item`.
    pub fn contains(&self, item: &T) -> Result<bool> {
        self.proxy.call_bytes("contains", &enc(item)?)
    }

    /// How many items equal `item`.
    pub fn count(&self, item: &T) -> Result<usize> {
        Ok(self.proxy.call_bytes::<u64>("count", &enc(item)?)? as usize)
    }

    /// The items in `range` (clamped to the list, as Python slices are).
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>> {
        self.proxy.call_bytes("slice", &enc(&self::range(range))?)
    }

    /// A copy of all the items.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.proxy.call_bytes("to_vec", &[])
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call_unit("clear", &[])
    }

    /// Reverses the items in place.
    pub fn reverse(&self) -> Result<()> {
        self.proxy.call_unit("reverse", &[])
    }
}

typed_proxy!(
    /// A dict held by a manager (Python's `manager.dict()`): insertion
    /// ordered; keys compare by their encoding.
    DictProxy<K, V>, "dict"
);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// Sets `key` to `value`; the value it had.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        let mut items = Items::new(&self.proxy);
        let (k, v) = (enc(key)?, items.enc(value)?);
        self.proxy
            .call_items("insert", &enc(&(Bytes(&k), Bytes(&v)))?, items, true)
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.proxy.call_bytes("get", &enc(key)?)
    }

    /// Removes `key`; the value it had.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let items = Items::new(&self.proxy);
        self.proxy.call_items("remove", &enc(key)?, items, true)
    }

    /// Whether `key` is there.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.proxy.call_bytes("contains", &enc(key)?)
    }

    /// The number of entries.
    pub fn len(&self) -> Result<usize> {
        Ok(self.proxy.call_bytes::<u64>("len", &[])? as usize)
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.proxy.call_bytes("keys", &[])
    }

    /// The values, in insertion order.
    pub fn values(&self) -> Result<Vec<V>> {
        self.proxy.call_bytes("values", &[])
    }

    /// The entries, in insertion order.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.proxy.call_bytes("items", &[])
    }

    /// Sets every entry of `entries`, in one call.
    pub fn update<'a>(&self, entries: impl IntoIterator<Item = (&'a K, &'a V)>) -> Result<()>
    where
        K: 'a,
        V: 'a,
    {
        let mut items = Items::new(&self.proxy);
        let enc_entries: Vec<(Vec<u8>, Vec<u8>)> = entries
            .into_iter()
            .map(|(k, v)| Ok((enc(k)?, items.enc(v)?)))
            .collect::<Result<_>>()?;
        let b: Vec<(Bytes<'_>, Bytes<'_>)> = enc_entries
            .iter()
            .map(|(k, v)| (Bytes(k), Bytes(v)))
            .collect();
        self.proxy.call_items("update", &enc(&b)?, items, false)
    }

    /// The value of `key`, set to `default` first if `key` is not there.
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        let mut items = Items::new(&self.proxy);
        let (k, v) = (enc(key)?, items.enc(default)?);
        self.proxy
            .call_items("setdefault", &enc(&(Bytes(&k), Bytes(&v)))?, items, false)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call_unit("clear", &[])
    }
}

typed_proxy!(
    /// A namespace held by a manager (Python's `manager.Namespace()`):
    /// named fields of any serializable type.
    NamespaceProxy, "namespace"
);

impl NamespaceProxy {
    /// The field `name` (a [`Key`](RemoteErrorKind::Key) error if unset).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.proxy.call_bytes("get", &enc(name)?)
    }

    /// Sets the field `name`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let v = items.enc(value)?;
        self.proxy
            .call_items("set", &enc(&(name, Bytes(&v)))?, items, false)
    }

    /// Removes the field `name`; whether it was set.
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.proxy.call_bytes("remove", &enc(name)?)
    }

    /// Whether the field `name` is set.
    pub fn contains(&self, name: &str) -> Result<bool> {
        self.proxy.call_bytes("contains", &enc(name)?)
    }

    /// The names of the fields set, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        self.proxy.call_bytes("names", &[])
    }
}

typed_proxy!(
    /// A value held by a manager (Python's `manager.Value(typecode, v)`).
    ValueProxy<T>, "value"
);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value.
    pub fn get(&self) -> Result<T> {
        self.proxy.call_bytes("get", &[])
    }

    /// Sets the value.
    pub fn set(&self, value: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let v = items.enc(value)?;
        self.proxy.call_items("set", &v, items, false)
    }

    /// Sets the value and returns the old one, in one call.
    pub fn swap(&self, value: &T) -> Result<T> {
        let mut items = Items::new(&self.proxy);
        let v = items.enc(value)?;
        self.proxy.call_items("swap", &v, items, true)
    }
}

typed_proxy!(
    /// A fixed-length array held by a manager (Python's
    /// `manager.Array(typecode, seq)`).
    ArrayProxy<T>, "array"
);

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// The number of items (fixed at creation).
    pub fn len(&self) -> Result<usize> {
        Ok(self.proxy.call_bytes::<u64>("len", &[])? as usize)
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The item at `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        self.proxy.call_bytes("get", &enc(&(index as u64))?)
    }

    /// Replaces the item at `index`.
    pub fn set(&self, index: usize, item: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let i = items.enc(item)?;
        self.proxy
            .call_items("set", &enc(&(index as u64, Bytes(&i)))?, items, false)
    }

    /// A copy of all the items.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.proxy.call_bytes("to_vec", &[])
    }
}

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
fn is_kind(e: &Error, kind: RemoteErrorKind) -> bool {
    matches!(e, Error::Remote { kind: k, .. } if *k == kind)
}

macro_rules! queue_methods {
    ($name:ident) => {
        impl<T: Serialize + DeserializeOwned> $name<T> {
            fn put_with(&self, block: bool, timeout: Option<Duration>, item: &T) -> Result<bool> {
                let mut items = Items::new(&self.proxy);
                let i = items.enc(item)?;
                match self.proxy.call_items::<()>(
                    "put",
                    &enc(&(block, ns(timeout), Bytes(&i)))?,
                    items,
                    false,
                ) {
                    Ok(()) => Ok(true),
                    Err(e) if is_kind(&e, RemoteErrorKind::Full) => Ok(false),
                    Err(e) => Err(e),
                }
            }

            fn get_with(&self, block: bool, timeout: Option<Duration>) -> Result<Option<T>> {
                let items = Items::new(&self.proxy);
                match self
                    .proxy
                    .call_items("get", &enc(&(block, ns(timeout)))?, items, true)
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

            /// Puts `item` if there is room now; whether it did.
            pub fn try_put(&self, item: &T) -> Result<bool> {
                self.put_with(false, None, item)
            }

            /// Puts `item`, waiting at most `timeout` for room; whether it did.
            pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<bool> {
                self.put_with(true, Some(timeout), item)
            }

            /// Takes the next item, waiting for one. The wait runs in the
            /// server and holds up no other caller.
            pub fn get(&self) -> Result<T> {
                self.get_with(true, None)?
                    .ok_or_else(|| Error::Codec("a blocking get came back empty".into()))
            }

            /// Takes the next item if there is one now.
            pub fn try_get(&self) -> Result<Option<T>> {
                self.get_with(false, None)
            }

            /// Takes the next item, waiting at most `timeout`.
            pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>> {
                self.get_with(true, Some(timeout))
            }

            /// The number of items.
            pub fn qsize(&self) -> Result<usize> {
                Ok(self.proxy.call_bytes::<u64>("qsize", &[])? as usize)
            }

            /// Whether it has no items.
            pub fn is_empty(&self) -> Result<bool> {
                self.proxy.call_bytes("empty", &[])
            }

            /// Whether it is at its maximum size.
            pub fn is_full(&self) -> Result<bool> {
                self.proxy.call_bytes("full", &[])
            }
        }
    };
}

queue_methods!(QueueProxy);
queue_methods!(JoinableQueueProxy);

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    /// Marks one item taken earlier as done (a
    /// [`Value`](RemoteErrorKind::Value) error if none is pending).
    pub fn task_done(&self) -> Result<()> {
        self.proxy.call_unit("task_done", &[])
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.proxy.call_unit("join", &enc(&None::<u64>)?)
    }

    /// Like [`join`](Self::join), for at most `timeout`
    /// ([`Error::Timeout`] then).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.proxy.call_unit("join", &enc(&ns(Some(timeout)))?)
    }
}

/// Releases a manager lock when dropped (errors on that release are
/// ignored: call [`release`](ProxyGuard::release) to see them).
#[must_use = "the lock is released when the guard is dropped"]
pub struct ProxyGuard<'a> {
    proxy: &'a Proxy,
    released: bool,
}

impl ProxyGuard<'_> {
    /// Releases the lock now, reporting a failure.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.proxy.call_unit("release", &[])
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.proxy.call_unit("release", &[]);
        }
    }
}

impl fmt::Debug for ProxyGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyGuard { .. }")
    }
}

macro_rules! lock_methods {
    ($name:ident) => {
        impl $name {
            fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
                self.proxy
                    .call_bytes("acquire", &enc(&(block, ns(timeout)))?)
            }

            /// Acquires, waiting as long as it takes (the wait runs in the
            /// server and holds up no other caller).
            pub fn acquire(&self) -> Result<()> {
                self.acquire_with(true, None).map(drop)
            }

            /// Acquires if free now; whether it did.
            pub fn try_acquire(&self) -> Result<bool> {
                self.acquire_with(false, None)
            }

            /// Acquires, waiting at most `timeout`; whether it did.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                self.acquire_with(true, Some(timeout))
            }

            /// Releases ([`Error::NotOwner`] if not held, or, for a
            /// reentrant lock, held by another thread or process).
            pub fn release(&self) -> Result<()> {
                self.proxy.call_unit("release", &[])
            }

            /// Acquires and returns a guard that releases on drop.
            pub fn lock(&self) -> Result<ProxyGuard<'_>> {
                self.acquire()?;
                Ok(ProxyGuard {
                    proxy: &self.proxy,
                    released: false,
                })
            }
        }
    };
}

typed_proxy!(
    /// A lock held by a manager (Python's `manager.Lock()`): any process
    /// may release it; the server releases it if the process that acquired
    /// it ends (exits, dies or drops its connection) while holding it.
    LockProxy, "lock"
);
lock_methods!(LockProxy);

impl LockProxy {
    /// Whether someone holds it.
    pub fn is_locked(&self) -> Result<bool> {
        self.proxy.call_bytes("locked", &[])
    }
}

typed_proxy!(
    /// A reentrant lock held by a manager (Python's `manager.RLock()`):
    /// owned by the calling thread of the calling process.
    RLockProxy, "rlock"
);
lock_methods!(RLockProxy);

impl RLockProxy {
    /// Whether someone holds it.
    pub fn is_locked(&self) -> Result<bool> {
        self.proxy.call_bytes("locked", &[])
    }
}

typed_proxy!(
    /// A condition variable held by a manager, with its own reentrant lock
    /// (Python's `manager.Condition()`).
    ConditionProxy, "condition"
);
lock_methods!(ConditionProxy);

impl ConditionProxy {
    /// Releases the lock (which the caller must hold), waits for a
    /// notification, and takes the lock back.
    pub fn wait(&self) -> Result<()> {
        self.proxy
            .call_bytes::<bool>("wait", &enc(&None::<u64>)?)
            .map(drop)
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; whether it was
    /// notified (the lock is held again either way).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.proxy.call_bytes("wait", &enc(&ns(Some(timeout)))?)
    }

    /// Waits until `pred()` holds, for at most `timeout` (`None`: no
    /// limit); the last value of `pred()` (Python's `wait_for`).
    pub fn wait_for(
        &self,
        mut pred: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if pred() {
                return Ok(true);
            }
            match deadline {
                None => self.wait()?,
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.wait_timeout(left)?;
                }
            }
        }
    }

    /// Wakes up to `n` waiters (the caller must hold the lock).
    pub fn notify(&self, n: usize) -> Result<()> {
        self.proxy.call_unit("notify", &enc(&(n as u64))?)
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) -> Result<()> {
        self.notify(1)
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.proxy.call_unit("notify_all", &[])
    }
}

typed_proxy!(
    /// A semaphore held by a manager (Python's `manager.Semaphore(n)`, and
    /// `manager.BoundedSemaphore(n)`, which refuses to go over `n`).
    SemaphoreProxy, "semaphore"
);

impl SemaphoreProxy {
    fn acquire_with(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.proxy
            .call_bytes("acquire", &enc(&(block, ns(timeout)))?)
    }

    /// Takes one unit, waiting for one.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_with(true, None).map(drop)
    }

    /// Takes one unit if there is one now; whether it did.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_with(false, None)
    }

    /// Takes one unit, waiting at most `timeout`; whether it did.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_with(true, Some(timeout))
    }

    /// Gives one unit back ([`Error::ReleasedTooManyTimes`] past a bounded
    /// semaphore's bound).
    pub fn release(&self) -> Result<()> {
        self.release_n(1)
    }

    /// Gives `n` units back.
    pub fn release_n(&self, n: u32) -> Result<()> {
        self.proxy.call_unit("release", &enc(&(n as u64))?)
    }

    /// The units available now.
    pub fn value(&self) -> Result<u64> {
        self.proxy.call_bytes("value", &[])
    }
}

/// A bounded semaphore's proxy is a semaphore proxy whose server object
/// refuses releases past the bound.
pub type BoundedSemaphoreProxy = SemaphoreProxy;

typed_proxy!(
    /// An event held by a manager (Python's `manager.Event()`).
    EventProxy, "event"
);

impl EventProxy {
    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<()> {
        self.proxy.call_unit("set", &[])
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.proxy.call_unit("clear", &[])
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.proxy.call_bytes("is_set", &[])
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.proxy
            .call_bytes::<bool>("wait", &enc(&None::<u64>)?)
            .map(drop)
    }

    /// Waits at most `timeout`; whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.proxy.call_bytes("wait", &enc(&ns(Some(timeout)))?)
    }
}

typed_proxy!(
    /// A barrier held by a manager (Python's `manager.Barrier(n)`).
    BarrierProxy, "barrier"
);

impl BarrierProxy {
    /// Waits until all parties wait; this caller's arrival index
    /// (`0..parties`). [`Error::BrokenBarrier`] if the barrier is or
    /// becomes broken.
    pub fn wait(&self) -> Result<u32> {
        Ok(self.proxy.call_bytes::<u64>("wait", &enc(&None::<u64>)?)? as u32)
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; a timeout breaks
    /// the barrier for everyone (as in Python).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        Ok(self
            .proxy
            .call_bytes::<u64>("wait", &enc(&ns(Some(timeout)))?)? as u32)
    }

    /// Breaks the barrier: current and later waiters fail.
    pub fn abort(&self) -> Result<()> {
        self.proxy.call_unit("abort", &[])
    }

    /// Back to the initial state; current waiters fail.
    pub fn reset(&self) -> Result<()> {
        self.proxy.call_unit("reset", &[])
    }

    /// How many parties it waits for.
    pub fn parties(&self) -> Result<u32> {
        Ok(self.proxy.call_bytes::<u64>("parties", &[])? as u32)
    }

    /// How many wait now.
    pub fn n_waiting(&self) -> Result<u32> {
        Ok(self.proxy.call_bytes::<u64>("n_waiting", &[])? as u32)
    }

    /// Whether it is broken.
    pub fn is_broken(&self) -> Result<bool> {
        self.proxy.call_bytes("broken", &[])
    }
}
