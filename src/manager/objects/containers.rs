//! Containers of encoded values: list, dict, namespace, value, array.
//!
//! An operation that stores an item takes the references the server holds
//! for the proxies inside it from the call ([`Cx::held`], by the item's
//! index among the call's items); one that takes an item out hands them to
//! the caller ([`Item::take`]).

use std::collections::BTreeMap;

use indexmap::IndexMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{Answer, Item, copies, index_error};
use crate::error::{RemoteErrorKind as K, Result};
use crate::manager::protocol::{Bytes, dec_args, remote};
use crate::manager::server::Cx;

/// An operation on a list (Python's `ListProxy` methods). Items are
/// encoded values.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum ListOp<'a> {
    /// Appends an item (item 0 of the call). Answer: unit.
    Append(#[serde(borrow)] Bytes<'a>),
    /// Appends items (items 0..n of the call). Answer: unit.
    Extend(#[serde(borrow)] Vec<Bytes<'a>>),
    /// Answer: the length.
    Len,
    /// The item at an index (an `Index` error past the end). Answer: it.
    Get(u64),
    /// Replaces the item at an index. Answer: unit.
    Set(u64, #[serde(borrow)] Bytes<'a>),
    /// Removes and gives the item at an index, or the last. Answer: it.
    Pop(Option<u64>),
    /// Inserts an item before an index (at the end past it). Answer: unit.
    Insert(u64, #[serde(borrow)] Bytes<'a>),
    /// Removes the first item equal to this (a `Value` error if none).
    /// Answer: unit.
    Remove(#[serde(borrow)] Bytes<'a>),
    /// The index of the first item equal to this. Answer: a count.
    Index(#[serde(borrow)] Bytes<'a>),
    /// Answer: whether an item equals this.
    Contains(#[serde(borrow)] Bytes<'a>),
    /// Answer: how many items equal this.
    Count(#[serde(borrow)] Bytes<'a>),
    /// The items in `start..end`, clamped to the list. Answer: items.
    Slice(u64, u64),
    /// Answer: all the items.
    ToVec,
    /// Answer: unit.
    Clear,
    /// Answer: unit.
    Reverse,
}

/// Items from an encoded `Vec` of byte strings (a list's or an array's
/// initial value).
fn items_from(init: &[u8]) -> Result<Vec<Item>> {
    let items: Vec<Bytes<'_>> = dec_args(init)?;
    Ok(items.into_iter().map(|b| Item::plain(b.0)).collect())
}

/// A copy of the item at `i` (a list's or an array's).
fn item_at(v: &[Item], i: u64) -> Result<Answer> {
    v.get(i as usize)
        .map(|x| Answer::Item(x.bytes().to_vec()))
        .ok_or_else(|| index_error(i, v.len()))
}

/// Replaces the item at `i` with the call's item 0.
fn set_at(v: &mut [Item], i: u64, item: Bytes<'_>, cx: &Cx<'_>) -> Result<Answer> {
    let len = v.len();
    let slot = v.get_mut(i as usize).ok_or_else(|| index_error(i, len))?;
    *slot = Item::new(item.0, cx.held(0));
    Ok(Answer::Unit)
}

/// A list of encoded items.
pub(crate) struct List(Mutex<Vec<Item>>);

impl List {
    /// From an encoded `Vec` of byte strings.
    pub(crate) fn make(init: &[u8]) -> Result<List> {
        Ok(List(Mutex::new(items_from(init)?)))
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: ListOp<'_>, cx: &Cx<'_>) -> Result<Answer> {
        let mut v = self.0.lock();
        let position = |v: &[Item], x: &[u8]| v.iter().position(|i| i.bytes() == x);
        Ok(match op {
            ListOp::Append(item) => {
                v.push(Item::new(item.0, cx.held(0)));
                Answer::Unit
            }
            ListOp::Extend(items) => {
                v.extend(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, b)| Item::new(b.0, cx.held(i))),
                );
                Answer::Unit
            }
            ListOp::Len => Answer::Count(v.len() as u64),
            ListOp::Get(i) => item_at(&v, i)?,
            ListOp::Set(i, item) => set_at(&mut v, i, item, cx)?,
            ListOp::Pop(i) => {
                let len = v.len();
                Answer::Item(match i {
                    None => v
                        .pop()
                        .map(|x| x.take(cx))
                        .ok_or_else(|| remote(K::Index, "pop from an empty list"))?,
                    Some(i) if (i as usize) < len => v.remove(i as usize).take(cx),
                    Some(i) => return Err(index_error(i, len)),
                })
            }
            ListOp::Insert(i, item) => {
                let at = (i as usize).min(v.len());
                v.insert(at, Item::new(item.0, cx.held(0)));
                Answer::Unit
            }
            ListOp::Remove(x) => {
                let at = position(&v, x.0)
                    .ok_or_else(|| remote(K::Value, "list.remove(x): x not in list"))?;
                v.remove(at);
                Answer::Unit
            }
            ListOp::Index(x) => Answer::Count(
                position(&v, x.0).ok_or_else(|| remote(K::Value, "list.index(x): x not in list"))?
                    as u64,
            ),
            ListOp::Contains(x) => Answer::Bool(position(&v, x.0).is_some()),
            ListOp::Count(x) => Answer::Count(v.iter().filter(|i| i.bytes() == x.0).count() as u64),
            ListOp::Slice(start, end) => {
                let end = (end as usize).min(v.len());
                let start = (start as usize).min(end);
                Answer::Items(copies(v[start..end].iter()))
            }
            ListOp::ToVec => Answer::Items(copies(v.iter())),
            ListOp::Clear => {
                v.clear();
                Answer::Unit
            }
            ListOp::Reverse => {
                v.reverse();
                Answer::Unit
            }
        })
    }
}

// ---- For CPython's clients (manager/python/serve.rs) ----

impl List {
    /// Runs `f` on the items under the list's lock. CPython's `sort`,
    /// slice assignment and `*=` need the items' values decoded (pickle, a
    /// format this module does not know) and must not interleave with
    /// another client's calls.
    pub(crate) fn edit<T>(&self, f: impl FnOnce(&mut Vec<Item>) -> T) -> T {
        f(&mut self.0.lock())
    }
}

/// An operation on a dict (Python's `DictProxy` methods). Keys and values
/// are encoded values.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum DictOp<'a> {
    /// Sets a key to a value (item 0 of the call). Answer: the old value,
    /// if any (taken out).
    Insert(#[serde(borrow)] Bytes<'a>, #[serde(borrow)] Bytes<'a>),
    /// Answer: the value of a key, if any.
    Get(#[serde(borrow)] Bytes<'a>),
    /// Removes a key. Answer: its value, if any (taken out).
    Remove(#[serde(borrow)] Bytes<'a>),
    /// Answer: whether a key is there.
    Contains(#[serde(borrow)] Bytes<'a>),
    /// Answer: the number of entries.
    Len,
    /// Answer: the keys, in insertion order.
    Keys,
    /// Answer: the values, in insertion order.
    Values,
    /// Answer: the entries, in insertion order.
    Items,
    /// Sets every entry (values: items 0..n of the call). Answer: unit.
    Update(#[serde(borrow)] Vec<(Bytes<'a>, Bytes<'a>)>),
    /// The value of a key, set to the given one (item 0) first if absent.
    /// Answer: that value.
    SetDefault(#[serde(borrow)] Bytes<'a>, #[serde(borrow)] Bytes<'a>),
    /// Answer: unit.
    Clear,
}

/// An insertion-ordered dict. Values only hold references: keys compare by
/// their encoding, and a proxy as a key is not kept alive by the dict.
pub(crate) struct Dict(Mutex<IndexMap<Vec<u8>, Item>>);

impl Dict {
    /// From an encoded `Vec` of byte-string pairs.
    pub(crate) fn make(init: &[u8]) -> Result<Dict> {
        let items: Vec<(Bytes<'_>, Bytes<'_>)> = dec_args(init)?;
        Ok(Dict(Mutex::new(
            items
                .into_iter()
                .map(|(k, v)| (k.0.to_vec(), Item::plain(v.0)))
                .collect(),
        )))
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: DictOp<'_>, cx: &Cx<'_>) -> Result<Answer> {
        let mut d = self.0.lock();
        Ok(match op {
            DictOp::Insert(k, v) => {
                let old = d.insert(k.0.to_vec(), Item::new(v.0, cx.held(0)));
                Answer::MaybeItem(old.map(|o| o.take(cx)))
            }
            DictOp::Get(k) => Answer::MaybeItem(d.get(k.0).map(|x| x.bytes().to_vec())),
            DictOp::Remove(k) => Answer::MaybeItem(d.shift_remove(k.0).map(|o| o.take(cx))),
            DictOp::Contains(k) => Answer::Bool(d.contains_key(k.0)),
            DictOp::Len => Answer::Count(d.len() as u64),
            DictOp::Keys => Answer::Items(d.keys().cloned().collect()),
            DictOp::Values => Answer::Items(copies(d.values())),
            DictOp::Items => Answer::Pairs(
                d.iter()
                    .map(|(k, v)| (k.clone(), v.bytes().to_vec()))
                    .collect(),
            ),
            DictOp::Update(items) => {
                for (i, (k, v)) in items.into_iter().enumerate() {
                    d.insert(k.0.to_vec(), Item::new(v.0, cx.held(i)));
                }
                Answer::Unit
            }
            DictOp::SetDefault(k, v) => Answer::Item(
                d.entry(k.0.to_vec())
                    .or_insert_with(|| Item::new(v.0, cx.held(0)))
                    .bytes()
                    .to_vec(),
            ),
            DictOp::Clear => {
                d.clear();
                Answer::Unit
            }
        })
    }
}

/// An operation on a namespace (Python's `Namespace` attributes).
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum NamespaceOp<'a> {
    /// Answer: the field's value (a `Key` error if unset).
    Get(#[serde(borrow)] &'a str),
    /// Sets a field (item 0 of the call). Answer: unit.
    Set(#[serde(borrow)] &'a str, #[serde(borrow)] Bytes<'a>),
    /// Answer: whether the field was set.
    Remove(#[serde(borrow)] &'a str),
    /// Answer: whether the field is set.
    Contains(#[serde(borrow)] &'a str),
    /// Answer: the names of the fields set, sorted.
    Names,
}

/// Named fields of encoded values.
pub(crate) struct Namespace(Mutex<BTreeMap<String, Item>>);

impl Namespace {
    /// From an encoded `Vec` of names and byte strings.
    pub(crate) fn make(init: &[u8]) -> Result<Namespace> {
        let items: Vec<(String, Bytes<'_>)> = dec_args(init)?;
        Ok(Namespace(Mutex::new(
            items
                .into_iter()
                .map(|(k, v)| (k, Item::plain(v.0)))
                .collect(),
        )))
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: NamespaceOp<'_>, cx: &Cx<'_>) -> Result<Answer> {
        let mut m = self.0.lock();
        Ok(match op {
            NamespaceOp::Get(name) => {
                Answer::Item(m.get(name).map(|x| x.bytes().to_vec()).ok_or_else(|| {
                    remote(
                        K::Key,
                        format!("'Namespace' object has no attribute {name:?}"),
                    )
                })?)
            }
            NamespaceOp::Set(name, v) => {
                m.insert(name.to_string(), Item::new(v.0, cx.held(0)));
                Answer::Unit
            }
            NamespaceOp::Remove(name) => Answer::Bool(m.remove(name).is_some()),
            NamespaceOp::Contains(name) => Answer::Bool(m.contains_key(name)),
            NamespaceOp::Names => Answer::Names(m.keys().cloned().collect()),
        })
    }
}

/// An operation on a value (Python's `manager.Value`).
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum ValueOp<'a> {
    /// Answer: the value.
    Get,
    /// Sets the value (item 0 of the call). Answer: unit.
    Set(#[serde(borrow)] Bytes<'a>),
    /// Sets the value (item 0). Answer: the old one (taken out).
    Swap(#[serde(borrow)] Bytes<'a>),
}

/// One encoded value.
pub(crate) struct ValueCell(Mutex<Item>);

impl ValueCell {
    /// Holding `init`, an encoded value.
    pub(crate) fn make(init: &[u8]) -> ValueCell {
        ValueCell(Mutex::new(Item::plain(init)))
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: ValueOp<'_>, cx: &Cx<'_>) -> Result<Answer> {
        let mut v = self.0.lock();
        Ok(match op {
            ValueOp::Get => Answer::Item(v.bytes().to_vec()),
            ValueOp::Set(x) => {
                *v = Item::new(x.0, cx.held(0));
                Answer::Unit
            }
            ValueOp::Swap(x) => {
                Answer::Item(std::mem::replace(&mut *v, Item::new(x.0, cx.held(0))).take(cx))
            }
        })
    }
}

/// An operation on a fixed-length array (Python's `manager.Array`).
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum ArrayOp<'a> {
    /// Answer: the length.
    Len,
    /// Answer: the item at an index (an `Index` error past the end).
    Get(u64),
    /// Replaces the item at an index (item 0 of the call). Answer: unit.
    Set(u64, #[serde(borrow)] Bytes<'a>),
    /// Answer: all the items.
    ToVec,
}

/// A fixed-length sequence of encoded values.
pub(crate) struct ArrayCells(Mutex<Vec<Item>>);

impl ArrayCells {
    /// From an encoded `Vec` of byte strings.
    pub(crate) fn make(init: &[u8]) -> Result<ArrayCells> {
        Ok(ArrayCells(Mutex::new(items_from(init)?)))
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: ArrayOp<'_>, cx: &Cx<'_>) -> Result<Answer> {
        let mut v = self.0.lock();
        Ok(match op {
            ArrayOp::Len => Answer::Count(v.len() as u64),
            ArrayOp::Get(i) => item_at(&v, i)?,
            ArrayOp::Set(i, item) => set_at(&mut v, i, item, cx)?,
            ArrayOp::ToVec => Answer::Items(copies(v.iter())),
        })
    }
}
