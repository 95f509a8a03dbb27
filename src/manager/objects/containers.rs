//! Containers of encoded values: list, dict, namespace, value, array.
//!
//! An operation that stores an item takes the references the server holds
//! for the proxies inside it from the call ([`Cx::held`], by the item's
//! index among the call's items); one that takes an item out hands them to
//! the caller ([`Item::take`]).

use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// Answer: the list's version and all its items
    /// ([`Answer::Versioned`]): what a client sorts before a
    /// [`Permute`](Self::Permute).
    Snapshot,
    /// Reorders the items if the list is still at the given version (no
    /// change since that [`Snapshot`](Self::Snapshot)): item `order[i]` of
    /// the snapshot goes to position `i`. A list changed since is left as
    /// it is. An order that is not a permutation of `0..len` is a
    /// `BadArguments` error (nothing moves). Answer: whether it applied.
    Permute(u64, Vec<u64>),
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

/// A list of encoded items, and its version: a count of the calls that
/// may have changed it, so that a client can sort a snapshot and apply the
/// order only if nothing changed in between ([`ListOp::Permute`]).
pub(crate) struct List(Mutex<ListState>);

struct ListState {
    items: Vec<Item>,
    version: u64,
}

impl List {
    /// From an encoded `Vec` of byte strings.
    pub(crate) fn make(init: &[u8]) -> Result<List> {
        Ok(List(Mutex::new(ListState {
            items: items_from(init)?,
            version: 0,
        })))
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: ListOp<'_>, cx: &Cx<'_>) -> Result<Answer> {
        let mut s = self.0.lock();
        let reads = matches!(
            op,
            ListOp::Len
                | ListOp::Get(_)
                | ListOp::Index(_)
                | ListOp::Contains(_)
                | ListOp::Count(_)
                | ListOp::Slice(..)
                | ListOp::ToVec
                | ListOp::Snapshot
                | ListOp::Permute(..)
        );
        if !reads {
            s.version = s.version.wrapping_add(1);
        }
        let version = s.version;
        let v = &mut s.items;
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
            ListOp::Get(i) => item_at(v, i)?,
            ListOp::Set(i, item) => set_at(v, i, item, cx)?,
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
                let at = position(v, x.0)
                    .ok_or_else(|| remote(K::Value, "list.remove(x): x not in list"))?;
                v.remove(at);
                Answer::Unit
            }
            ListOp::Index(x) => Answer::Count(
                position(v, x.0).ok_or_else(|| remote(K::Value, "list.index(x): x not in list"))?
                    as u64,
            ),
            ListOp::Contains(x) => Answer::Bool(position(v, x.0).is_some()),
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
            ListOp::Snapshot => Answer::Versioned(version, copies(v.iter())),
            ListOp::Permute(at, order) => {
                if at != version {
                    return Ok(Answer::Bool(false));
                }
                let order = checked_order(&order, v.len())?;
                apply_order(v, &order);
                s.version = s.version.wrapping_add(1);
                Answer::Bool(true)
            }
        })
    }
}

/// `order` as indices, if it is a permutation of `0..len` (untrusted: it
/// came from a client); else a `BadArguments` error.
fn checked_order(order: &[u64], len: usize) -> Result<Vec<usize>> {
    let bad = || {
        remote(
            K::BadArguments,
            format!("the order is not a permutation of the list's {len} positions"),
        )
    };
    if order.len() != len {
        return Err(bad());
    }
    let mut seen = vec![false; len];
    order
        .iter()
        .map(|&i| {
            let i = usize::try_from(i)
                .ok()
                .filter(|&i| i < len)
                .ok_or_else(bad)?;
            if std::mem::replace(&mut seen[i], true) {
                return Err(bad());
            }
            Ok(i)
        })
        .collect()
}

/// Moves item `order[i]` to position `i` (`order` a permutation of the
/// positions). The items move, with the references they hold.
pub(crate) fn apply_order(v: &mut Vec<Item>, order: &[usize]) {
    let mut old: Vec<Option<Item>> = std::mem::take(v).into_iter().map(Some).collect();
    v.extend(
        order
            .iter()
            .filter_map(|&i| old.get_mut(i).and_then(Option::take)),
    );
}

/// The stable sort order of `len` positions by `cmp` (a merge sort): the
/// positions, smallest first. The first error of `cmp` ends it. Any answers
/// give a permutation: `cmp` need not be a total order, and nothing panics.
/// Used by `ListProxy::sort_by` on decoded items and by the Python adapter's
/// `list.sort`.
pub(crate) fn sort_order<E>(
    len: usize,
    mut cmp: impl FnMut(usize, usize) -> std::result::Result<std::cmp::Ordering, E>,
) -> std::result::Result<Vec<usize>, E> {
    let mut a: Vec<usize> = (0..len).collect();
    let mut b = vec![0usize; len];
    let mut width = 1;
    while width < len {
        let mut start = 0;
        while start < len {
            let mid = (start + width).min(len);
            let end = (start + 2 * width).min(len);
            let (mut i, mut j, mut k) = (start, mid, start);
            while i < mid && j < end {
                // Stable: the right run's item goes first only if smaller.
                if cmp(a[j], a[i])? == std::cmp::Ordering::Less {
                    b[k] = a[j];
                    j += 1;
                } else {
                    b[k] = a[i];
                    i += 1;
                }
                k += 1;
            }
            b[k..k + (mid - i)].copy_from_slice(&a[i..mid]);
            k += mid - i;
            b[k..k + (end - j)].copy_from_slice(&a[j..end]);
            start = end;
        }
        std::mem::swap(&mut a, &mut b);
        width *= 2;
    }
    Ok(a)
}

// ---- For CPython's clients (manager/python/serve.rs) ----

impl List {
    /// Runs `f` on the items under the list's lock. CPython's `sort`,
    /// slice assignment and `*=` need the items' values decoded (pickle, a
    /// format this module does not know) and must not interleave with
    /// another client's calls. The version moves on (a Rust client's
    /// sort in flight starts again).
    pub(crate) fn edit<T>(&self, f: impl FnOnce(&mut Vec<Item>) -> T) -> T {
        let mut s = self.0.lock();
        s.version = s.version.wrapping_add(1);
        f(&mut s.items)
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
    /// Makes a cursor over the keys, values or entries (a new object of
    /// the server, [`DictCursor`], with a reference for the caller's
    /// session). Answer: its id.
    Iter(IterKind),
}

/// What a dict cursor walks over.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IterKind {
    /// The keys.
    Keys,
    /// The values.
    Values,
    /// The entries.
    Items,
}

/// The type id of a dict cursor: made only by [`DictOp::Iter`], never by
/// a client's `Create` (it is not among the constructible types).
pub(crate) const DICT_CURSOR: &str = "dict_cursor";

/// An insertion-ordered dict. Values only hold references: keys compare by
/// their encoding, and a proxy as a key is not kept alive by the dict.
pub(crate) struct Dict(Arc<Mutex<DictState>>);

struct DictState {
    map: IndexMap<Vec<u8>, Item>,
    /// Counts the calls that changed the set of keys (inserted a new key,
    /// removed one, cleared): a cursor made at another count fails, as
    /// Python's "dictionary changed size during iteration".
    keys_version: u64,
}

impl Dict {
    /// From an encoded `Vec` of byte-string pairs.
    pub(crate) fn make(init: &[u8]) -> Result<Dict> {
        let items: Vec<(Bytes<'_>, Bytes<'_>)> = dec_args(init)?;
        Ok(Dict(Arc::new(Mutex::new(DictState {
            map: items
                .into_iter()
                .map(|(k, v)| (k.0.to_vec(), Item::plain(v.0)))
                .collect(),
            keys_version: 0,
        }))))
    }

    /// Runs `op`.
    pub(crate) fn call(&self, op: DictOp<'_>, cx: &Cx<'_>) -> Result<Answer> {
        if let DictOp::Iter(kind) = op {
            let keys_version = self.0.lock().keys_version;
            let cursor = DictCursor {
                dict: self.0.clone(),
                kind,
                state: Mutex::new((0, keys_version)),
            };
            // Registered with the dict's lock released.
            let id = cx.new_object(super::Object::DictCursor(cursor), DICT_CURSOR);
            return Ok(Answer::Count(id));
        }
        let mut s = self.0.lock();
        let before = s.map.len();
        let d = &mut s.map;
        let answer = match op {
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
            // Answered above, before the lock.
            DictOp::Iter(_) => Answer::Unit,
        };
        // No operation both adds and drops keys: the key set changed
        // exactly when the length did.
        if s.map.len() != before {
            s.keys_version = s.keys_version.wrapping_add(1);
        }
        Ok(answer)
    }
}

/// A cursor over a dict's keys, values or entries: a server object of its
/// own, so a client fetches a long dict in chunks ([`CursorOp::Next`]) and
/// the cursor goes when its last reference does (the proxy dropped, its
/// process gone). It keeps the dict's contents alive, not its id.
pub(crate) struct DictCursor {
    dict: Arc<Mutex<DictState>>,
    kind: IterKind,
    /// The next position (`usize::MAX` once it answered its end), and the
    /// dict's key-set version when the cursor was made.
    state: Mutex<(usize, u64)>,
}

/// An operation on a dict cursor.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum CursorOp {
    /// The next items, at most this many (none: the end). Answer: keys or
    /// values (`Vec<K>`, `Vec<V>`), or entries (`Vec<(K, V)>`); a
    /// `Custom("RuntimeError")` error if keys were added or removed since
    /// the cursor was made (Python's "dictionary changed size during
    /// iteration"; changing the value of a key is fine, as in Python).
    /// Once it has answered its end it answers nothing ever after.
    Next(u64),
}

impl DictCursor {
    /// Runs `op`.
    pub(crate) fn call(&self, op: CursorOp, _cx: &Cx<'_>) -> Result<Answer> {
        let CursorOp::Next(max) = op;
        let mut state = self.state.lock();
        if state.0 == usize::MAX {
            // It answered its end: it stays there, whatever happens to the
            // dict since (as Python's iterator, once exhausted).
            return Ok(match self.kind {
                IterKind::Keys | IterKind::Values => Answer::Items(Vec::new()),
                IterKind::Items => Answer::Pairs(Vec::new()),
            });
        }
        let d = self.dict.lock();
        if d.keys_version != state.1 {
            return Err(remote(
                K::Custom("RuntimeError".into()),
                "dictionary changed size during iteration",
            ));
        }
        let start = state.0.min(d.map.len());
        let end = start
            .saturating_add(usize::try_from(max).unwrap_or(usize::MAX).max(1))
            .min(d.map.len());
        // An empty answer is the end (`usize::MAX`: no dict is that long).
        state.0 = if start == end { usize::MAX } else { end };
        let range = d
            .map
            .get_range(start..end)
            .into_iter()
            .flat_map(|r| r.iter());
        Ok(match self.kind {
            IterKind::Keys => Answer::Items(range.map(|(k, _)| k.clone()).collect()),
            IterKind::Values => Answer::Items(range.map(|(_, v)| v.bytes().to_vec()).collect()),
            IterKind::Items => Answer::Pairs(
                range
                    .map(|(k, v)| (k.clone(), v.bytes().to_vec()))
                    .collect(),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::protocol::{dec, enc};
    use crate::manager::server::Server;

    fn list_of(items: &[u32]) -> List {
        let enc_items: Vec<Vec<u8>> = items.iter().map(|i| enc(i).unwrap()).collect();
        let b: Vec<Bytes<'_>> = enc_items.iter().map(|x| Bytes(x)).collect();
        List::make(&enc(&b).unwrap()).unwrap()
    }

    fn with_cx<R>(f: impl FnOnce(&Cx<'_>) -> R) -> R {
        let server = Server::new(Vec::new(), std::sync::Weak::new());
        let gone = || false;
        f(&Cx::new(0, 1, &gone, &server))
    }

    fn contents(l: &List, cx: &Cx<'_>) -> Vec<u32> {
        dec(&l.call(ListOp::ToVec, cx).unwrap().into_wire().unwrap()).unwrap()
    }

    #[test]
    fn permute_applies_only_at_the_snapshot_version_and_only_permutations() {
        with_cx(|cx| {
            let l = list_of(&[30, 10, 20]);
            let w = l.call(ListOp::Snapshot, cx).unwrap().into_wire().unwrap();
            let (version, items): (u64, Vec<u32>) = dec(&w).unwrap();
            assert_eq!(items, [30, 10, 20]);
            // Not permutations: refused, nothing moves.
            for bad in [
                vec![1, 2],
                vec![1, 2, 2],
                vec![1, 2, 3],
                vec![0, 1, 2, 0],
                vec![u64::MAX, 0, 1],
            ] {
                let e = l.call(ListOp::Permute(version, bad), cx).unwrap_err();
                assert!(
                    matches!(
                        &e,
                        crate::Error::Remote {
                            kind: K::BadArguments,
                            ..
                        }
                    ),
                    "{e}"
                );
                assert_eq!(contents(&l, cx), [30, 10, 20]);
            }
            // A stale version: refused without a word.
            assert_eq!(
                l.call(ListOp::Permute(version + 1, vec![1, 2, 0]), cx)
                    .unwrap(),
                Answer::Bool(false)
            );
            assert_eq!(
                l.call(ListOp::Permute(version, vec![1, 2, 0]), cx).unwrap(),
                Answer::Bool(true)
            );
            assert_eq!(contents(&l, cx), [10, 20, 30]);
            // Applied: the version moved on, the same order is refused.
            assert_eq!(
                l.call(ListOp::Permute(version, vec![1, 2, 0]), cx).unwrap(),
                Answer::Bool(false)
            );
            // Any change moves the version.
            let w = l.call(ListOp::Snapshot, cx).unwrap().into_wire().unwrap();
            let (v2, _): (u64, Vec<u32>) = dec(&w).unwrap();
            l.call(ListOp::Reverse, cx).unwrap();
            assert_eq!(
                l.call(ListOp::Permute(v2, vec![2, 1, 0]), cx).unwrap(),
                Answer::Bool(false)
            );
        });
    }

    #[test]
    fn sort_order_is_a_stable_merge_sort_for_any_comparator() {
        let keys = [3, 1, 2, 1, 3, 0, 2];
        let order = sort_order(keys.len(), |a, b| Ok::<_, ()>(keys[a].cmp(&keys[b]))).unwrap();
        assert_eq!(order, [5, 1, 3, 2, 6, 0, 4]);
        assert_eq!(
            sort_order(0, |_, _| Err::<std::cmp::Ordering, _>(())),
            Ok(vec![])
        );
        // Random answers: still a permutation.
        let mut x = 12345u64;
        let order = sort_order(100, |_, _| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            Ok::<_, ()>((x >> 62).cmp(&1))
        })
        .unwrap();
        let mut seen = order.clone();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        // An error ends it.
        assert_eq!(
            sort_order(5, |_, _| Err::<std::cmp::Ordering, _>("no")),
            Err("no")
        );
    }
}
