//! Proxies of the containers: list, dict, namespace, value, array.

use std::fmt;
use std::ops::{Bound, RangeBounds};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Items, Proxy, TypedProxy};
use crate::error::Result;
use crate::manager::objects::{ArrayOp, DictOp, ListOp, NamespaceOp, ValueOp};
use crate::manager::protocol::{Bytes, enc};

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
}

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
