//! Proxies of the containers: list, dict, namespace, value, array.

use std::fmt;
use std::ops::{Bound, RangeBounds};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Result;
use super::enc;
use super::{Items, Proxy, TypedProxy};
use crate::manager::objects::{
    ArrayOp, CursorOp, DICT_CURSOR, DictOp, IterKind, ListOp, NamespaceOp, ValueOp, sort_order,
};
use crate::manager::protocol::Bytes;

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
    /// `contains` and `count` compare encodings. [`sort`](Self::sort)
    /// compares decoded items, and [`iter`](Self::iter) (or `for x in
    /// &list`) fetches the items lazily, in chunks.
    ListProxy<T>, "list"
);

/// How many times [`ListProxy::sort_by`] tries before it gives up on a
/// list that other clients keep changing.
const SORT_ATTEMPTS: usize = 64;

/// How many items an iterator fetches per call by default.
const CHUNK: usize = 128;

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `item` (Python's `append`).
    pub fn push(&self, item: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let i = items.enc(item)?;
        self.proxy
            .op_items(&ListOp::Append(Bytes(&i)), items, false)
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
        self.proxy.op_items(&ListOp::Extend(b), enc_items, false)
    }

    /// The item at `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        self.proxy.op(&ListOp::Get(index as u64))
    }

    /// Replaces the item at `index`.
    pub fn set(&self, index: usize, item: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let i = items.enc(item)?;
        self.proxy
            .op_items(&ListOp::Set(index as u64, Bytes(&i)), items, false)
    }

    /// The number of items.
    pub fn len(&self) -> Result<usize> {
        Ok(self.proxy.op::<_, u64>(&ListOp::Len)? as usize)
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes and returns the last item (an [`Index`](crate::RemoteErrorKind::Index)
    /// error if there is none).
    pub fn pop(&self) -> Result<T> {
        let items = Items::new(&self.proxy);
        self.proxy.op_items(&ListOp::Pop(None), items, true)
    }

    /// Removes and returns the item at `index`.
    pub fn pop_at(&self, index: usize) -> Result<T> {
        let items = Items::new(&self.proxy);
        self.proxy
            .op_items(&ListOp::Pop(Some(index as u64)), items, true)
    }

    /// Inserts `item` before `index` (at the end if `index` is past it).
    pub fn insert(&self, index: usize, item: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let i = items.enc(item)?;
        self.proxy
            .op_items(&ListOp::Insert(index as u64, Bytes(&i)), items, false)
    }

    /// Removes the first item equal to `item` (a
    /// [`Value`](crate::RemoteErrorKind::Value) error if there is none).
    pub fn remove(&self, item: &T) -> Result<()> {
        self.proxy.op_unit(&ListOp::Remove(Bytes(&enc(item)?)))
    }

    /// The index of the first item equal to `item`.
    pub fn index(&self, item: &T) -> Result<usize> {
        Ok(self
            .proxy
            .op::<_, u64>(&ListOp::Index(Bytes(&enc(item)?)))? as usize)
    }

    /// Whether an item equals `item`.
    pub fn contains(&self, item: &T) -> Result<bool> {
        self.proxy.op(&ListOp::Contains(Bytes(&enc(item)?)))
    }

    /// How many items equal `item`.
    pub fn count(&self, item: &T) -> Result<usize> {
        Ok(self
            .proxy
            .op::<_, u64>(&ListOp::Count(Bytes(&enc(item)?)))? as usize)
    }

    /// The items in `range` (clamped to the list, as Python slices are).
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Result<Vec<T>> {
        let (start, end) = self::range(range);
        self.proxy.op(&ListOp::Slice(start, end))
    }

    /// A copy of all the items.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.proxy.op(&ListOp::ToVec)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.proxy.op_unit(&ListOp::Clear)
    }

    /// Reverses the items in place.
    pub fn reverse(&self) -> Result<()> {
        self.proxy.op_unit(&ListOp::Reverse)
    }

    /// Sorts the items in place, stably, atomically as far as other
    /// clients can tell (Python's `list.sort()`); see
    /// [`sort_by`](Self::sort_by).
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.sort_by(T::cmp)
    }

    /// Sorts the items in place, stably, by the key `key` gives (Python's
    /// `list.sort(key=...)`); see [`sort_by`](Self::sort_by). The key is
    /// computed once per item and attempt.
    pub fn sort_by_key<K: Ord>(&self, mut key: impl FnMut(&T) -> K) -> Result<()> {
        self.sort_with(|items| {
            let keys: Vec<K> = items.iter().map(&mut key).collect();
            sort_order(keys.len(), |a, b| {
                Ok::<_, std::convert::Infallible>(keys[a].cmp(&keys[b]))
            })
            .unwrap_or_default()
        })
    }

    /// Sorts the items in place, stably, by `compare`.
    ///
    /// The server holds the items encoded and cannot compare them, so the
    /// sort is optimistic: this process fetches the items with the list's
    /// version, sorts them here, and sends back only the new order, which
    /// the server applies in one step *if the list is still at that
    /// version* (a compare-and-swap). Other clients thus see the list
    /// either unsorted or sorted, never half of it, and an item added or
    /// changed in between is never lost: the server refuses the order and
    /// this tries again with the new contents. Items move with the
    /// references they hold (proxies stored in the list stay alive).
    ///
    /// `compare` need not be a total order (any answers give some order;
    /// nothing panics for that).
    ///
    /// # Errors
    ///
    /// A [`Value`](crate::RemoteErrorKind::Value) error ("list modified
    /// during sort", as Python's) if other clients changed the list during
    /// each of 64 attempts; the list is then as they left it. The errors of
    /// the calls, and [`ProxyError::Codec`](crate::manager::ProxyError::Codec) if an item does
    /// not decode as `T`.
    pub fn sort_by(&self, mut compare: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Result<()> {
        self.sort_with(|items| {
            sort_order(items.len(), |a, b| {
                Ok::<_, std::convert::Infallible>(compare(&items[a], &items[b]))
            })
            .unwrap_or_default()
        })
    }

    /// The compare-and-swap loop of the sorts: `order` gives the new order
    /// of a snapshot's items.
    fn sort_with(&self, mut order: impl FnMut(&[T]) -> Vec<usize>) -> Result<()> {
        for _ in 0..SORT_ATTEMPTS {
            let (version, items): (u64, Vec<T>) = self.proxy.op(&ListOp::Snapshot)?;
            let order = order(&items);
            drop(items);
            if order.iter().enumerate().all(|(i, &j)| i == j) {
                // Sorted at that version already: nothing to send.
                return Ok(());
            }
            let order = order.into_iter().map(|i| i as u64).collect();
            if self.proxy.op(&ListOp::Permute(version, order))? {
                return Ok(());
            }
        }
        Err(super::ProxyError::Remote {
            kind: crate::RemoteErrorKind::Value,
            message: format!(
                "list modified during sort: other clients changed it during each of \
                 {SORT_ATTEMPTS} attempts"
            ),
        })
    }

    /// An iterator over the items that fetches them lazily, 128 at a time
    /// (see [`ListIter`]); `for x in &list` does the same.
    pub fn iter(&self) -> ListIter<T> {
        self.iter_chunked(CHUNK)
    }

    /// [`iter`](Self::iter) fetching `chunk` items per call (at least 1).
    pub fn iter_chunked(&self, chunk: usize) -> ListIter<T> {
        ListIter {
            list: self.clone(),
            next: 0,
            chunk: chunk.max(1),
            buffered: Vec::new().into_iter(),
            done: false,
        }
    }
}

/// A lazy iterator over a [`ListProxy`]'s items: each call to the server
/// fetches the next chunk by position, so a long list never travels whole.
///
/// When the list changes during the iteration, it behaves as Python's
/// iteration over a managed list (which fetches `list[0]`, `list[1]`, ...
/// until an `IndexError`): it goes on by position, so an item inserted or
/// removed before the current position makes the next item be seen twice
/// or skipped, items appended are seen, and it ends at the first position
/// past the end. A chunk is a copy of those positions as they were when it
/// was fetched (with [`iter_chunked(1)`](ListProxy::iter_chunked) each
/// item is fetched when it is reached, exactly as Python does).
///
/// Items are `Result`s: a failed call (or an item that does not decode)
/// is yielded once, and the iterator then ends.
pub struct ListIter<T> {
    list: ListProxy<T>,
    next: u64,
    chunk: usize,
    buffered: std::vec::IntoIter<T>,
    done: bool,
}

impl<T> fmt::Debug for ListIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListIter")
            .field("list", &self.list)
            .field("next", &self.next)
            .field("chunk", &self.chunk)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> Iterator for ListIter<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if let Some(x) = self.buffered.next() {
            return Some(Ok(x));
        }
        if self.done {
            return None;
        }
        let end = self.next.saturating_add(self.chunk as u64);
        match self
            .list
            .proxy
            .op::<_, Vec<T>>(&ListOp::Slice(self.next, end))
        {
            Ok(v) if v.is_empty() => {
                self.done = true;
                None
            }
            Ok(v) => {
                self.next += v.len() as u64;
                self.buffered = v.into_iter();
                self.buffered.next().map(Ok)
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> std::iter::FusedIterator for ListIter<T> {}

impl<T: Serialize + DeserializeOwned> IntoIterator for &ListProxy<T> {
    type Item = Result<T>;
    type IntoIter = ListIter<T>;

    fn into_iter(self) -> ListIter<T> {
        self.iter()
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
            .op_items(&DictOp::Insert(Bytes(&k), Bytes(&v)), items, true)
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.proxy.op(&DictOp::Get(Bytes(&enc(key)?)))
    }

    /// Removes `key`; the value it had.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let items = Items::new(&self.proxy);
        self.proxy
            .op_items(&DictOp::Remove(Bytes(&enc(key)?)), items, true)
    }

    /// Whether `key` is there.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.proxy.op(&DictOp::Contains(Bytes(&enc(key)?)))
    }

    /// The number of entries.
    pub fn len(&self) -> Result<usize> {
        Ok(self.proxy.op::<_, u64>(&DictOp::Len)? as usize)
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.proxy.op(&DictOp::Keys)
    }

    /// The values, in insertion order.
    pub fn values(&self) -> Result<Vec<V>> {
        self.proxy.op(&DictOp::Values)
    }

    /// The entries, in insertion order.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.proxy.op(&DictOp::Items)
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
        self.proxy.op_items(&DictOp::Update(b), items, false)
    }

    /// The value of `key`, set to `default` first if `key` is not there.
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        let mut items = Items::new(&self.proxy);
        let (k, v) = (enc(key)?, items.enc(default)?);
        self.proxy
            .op_items(&DictOp::SetDefault(Bytes(&k), Bytes(&v)), items, false)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.proxy.op_unit(&DictOp::Clear)
    }

    /// An iterator over the keys, in insertion order, fetched lazily
    /// through a cursor in the server (see [`DictIter`]).
    pub fn iter_keys(&self) -> Result<DictIter<K>> {
        self.cursor(IterKind::Keys)
    }

    /// An iterator over the values, in insertion order (see
    /// [`DictIter`]).
    pub fn iter_values(&self) -> Result<DictIter<V>> {
        self.cursor(IterKind::Values)
    }

    /// An iterator over the entries, in insertion order (see
    /// [`DictIter`]).
    pub fn iter_items(&self) -> Result<DictIter<(K, V)>> {
        self.cursor(IterKind::Items)
    }

    fn cursor<X>(&self, kind: IterKind) -> Result<DictIter<X>> {
        let session = self.proxy.session()?;
        let reply = session
            .call(self.proxy.token().id, None, &enc(&DictOp::Iter(kind))?)
            .map_err(super::ProxyError::from_internal)?;
        let id: u64 = super::dec(&reply)?;
        Ok(DictIter {
            cursor: Proxy::created(session, id, DICT_CURSOR),
            chunk: CHUNK as u64,
            buffered: Vec::new().into_iter(),
            done: false,
        })
    }
}

/// A lazy iterator over a [`DictProxy`]'s keys, values or entries
/// (`X` = `K`, `V` or `(K, V)`), through a cursor the server keeps for it:
/// each call fetches the next 128. The cursor is an object of the server,
/// counted like any other: it goes when the iterator is dropped or its
/// process ends (or dies).
///
/// As in Python, adding or removing keys during the iteration makes the
/// next fetch fail with a `Custom("RuntimeError")` error ("dictionary
/// changed size during iteration"); changing the value of a key that is
/// there is fine (a value is seen as it was when its chunk was fetched).
/// Items are `Result`s: a failure is yielded once, and the iterator then
/// ends. The iterator itself cannot go to another process.
pub struct DictIter<X> {
    cursor: Proxy,
    chunk: u64,
    buffered: std::vec::IntoIter<X>,
    done: bool,
}

impl<X> fmt::Debug for DictIter<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DictIter")
            .field("cursor", self.cursor.token())
            .finish_non_exhaustive()
    }
}

impl<X: DeserializeOwned> Iterator for DictIter<X> {
    type Item = Result<X>;

    fn next(&mut self) -> Option<Result<X>> {
        if let Some(x) = self.buffered.next() {
            return Some(Ok(x));
        }
        if self.done {
            return None;
        }
        match self.cursor.op::<_, Vec<X>>(&CursorOp::Next(self.chunk)) {
            Ok(v) if v.is_empty() => {
                self.done = true;
                None
            }
            Ok(v) => {
                self.buffered = v.into_iter();
                self.buffered.next().map(Ok)
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<X: DeserializeOwned> std::iter::FusedIterator for DictIter<X> {}

typed_proxy!(
    /// A namespace held by a manager (Python's `manager.Namespace()`):
    /// named fields of any serializable type.
    NamespaceProxy, "namespace"
);

impl NamespaceProxy {
    /// The field `name` (a [`Key`](crate::RemoteErrorKind::Key) error if unset).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.proxy.op(&NamespaceOp::Get(name))
    }

    /// Sets the field `name`.
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let v = items.enc(value)?;
        self.proxy
            .op_items(&NamespaceOp::Set(name, Bytes(&v)), items, false)
    }

    /// Removes the field `name`; whether it was set.
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.proxy.op(&NamespaceOp::Remove(name))
    }

    /// Whether the field `name` is set.
    pub fn contains(&self, name: &str) -> Result<bool> {
        self.proxy.op(&NamespaceOp::Contains(name))
    }

    /// The names of the fields set, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        self.proxy.op(&NamespaceOp::Names)
    }
}

typed_proxy!(
    /// A value held by a manager (Python's `manager.Value(typecode, v)`).
    ValueProxy<T>, "value"
);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value.
    pub fn get(&self) -> Result<T> {
        self.proxy.op(&ValueOp::Get)
    }

    /// Sets the value.
    pub fn set(&self, value: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let v = items.enc(value)?;
        self.proxy.op_items(&ValueOp::Set(Bytes(&v)), items, false)
    }

    /// Sets the value and returns the old one, in one call.
    pub fn swap(&self, value: &T) -> Result<T> {
        let mut items = Items::new(&self.proxy);
        let v = items.enc(value)?;
        self.proxy.op_items(&ValueOp::Swap(Bytes(&v)), items, true)
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
        Ok(self.proxy.op::<_, u64>(&ArrayOp::Len)? as usize)
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The item at `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        self.proxy.op(&ArrayOp::Get(index as u64))
    }

    /// Replaces the item at `index`.
    pub fn set(&self, index: usize, item: &T) -> Result<()> {
        let mut items = Items::new(&self.proxy);
        let i = items.enc(item)?;
        self.proxy
            .op_items(&ArrayOp::Set(index as u64, Bytes(&i)), items, false)
    }

    /// A copy of all the items.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.proxy.op(&ArrayOp::ToVec)
    }
}
