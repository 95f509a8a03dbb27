//! The built-in objects a manager holds: containers of encoded values and
//! the synchronization primitives, each behind its own lock.
//!
//! Values are kept as the clients encoded them (postcard bytes); equality
//! (`remove`, `index`, `contains`, dict keys) is equality of encodings, as
//! for any type whose encoding is canonical (integers, strings, structs of
//! them; not floats' NaN or -0.0).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use parking_lot::{Condvar, Mutex};

use super::protocol::{Bytes, dec_args, enc, push_len, remote};
use super::server::{Constructor, Cx, GenSet, Held, Served};
use crate::error::{Error, RemoteErrorKind as K, Result};

/// The type ids of the built-in objects and their constructors.
pub(crate) fn builtin_types() -> Vec<(&'static str, Constructor)> {
    vec![
        ("list", List::make),
        ("dict", Dict::make),
        ("namespace", Namespace::make),
        ("value", ValueObj::make),
        ("array", ArrayObj::make),
        ("queue", QueueObj::make),
        ("joinable_queue", QueueObj::make_joinable),
        ("lock", LockObj::make),
        ("rlock", RLockObj::make),
        ("semaphore", SemaphoreObj::make),
        ("condition", ConditionObj::make),
        ("event", EventObj::make),
        ("barrier", BarrierObj::make),
    ]
}

fn unknown(type_name: &str, method: &str) -> Error {
    remote(
        K::UnknownMethod,
        format!("{type_name} has no method {method:?}"),
    )
}

fn unit() -> Result<Vec<u8>> {
    Ok(Vec::new())
}

/// A deadline from a blocking call's `(block, timeout in ns)`.
fn deadline(block: bool, timeout_ns: Option<u64>) -> Option<Instant> {
    if !block {
        return Some(Instant::now());
    }
    timeout_ns.map(|ns| Instant::now() + Duration::from_nanos(ns))
}

fn concat(items: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + items.iter().map(|i| i.len()).sum::<usize>());
    push_len(&mut out, items.len());
    for i in items {
        out.extend_from_slice(i);
    }
    out
}

fn some(item: Option<&[u8]>) -> Vec<u8> {
    match item {
        None => vec![0],
        Some(b) => {
            let mut out = Vec::with_capacity(1 + b.len());
            out.push(1);
            out.extend_from_slice(b);
            out
        }
    }
}

/// A stored value: its encoding, and the references to the objects whose
/// proxies it holds (released when the item is dropped: removed,
/// overwritten, or its container freed; handed to the caller when an item
/// is taken out).
struct Item {
    bytes: Vec<u8>,
    held: Held,
}

impl Item {
    fn new(bytes: &[u8], held: Held) -> Item {
        Item {
            bytes: bytes.to_vec(),
            held,
        }
    }

    fn plain(bytes: &[u8]) -> Item {
        Item::new(bytes, Held::default())
    }

    /// Takes the item out for the caller: its references go to the caller.
    fn take(self, cx: &Cx<'_>) -> Vec<u8> {
        cx.hand_over(self.held);
        self.bytes
    }
}

fn all_bytes<'a>(items: impl Iterator<Item = &'a Item>) -> Vec<&'a [u8]> {
    items.map(|i| i.bytes.as_slice()).collect()
}

// ---------------------------------------------------------------- list

struct List(Mutex<Vec<Item>>);

impl List {
    fn make(init: &[u8]) -> Result<Arc<dyn Served>> {
        let items: Vec<Bytes<'_>> = dec_args(init)?;
        Ok(Arc::new(List(Mutex::new(
            items.into_iter().map(|b| Item::plain(b.0)).collect(),
        ))))
    }
}

fn index_error(i: u64, len: usize) -> Error {
    remote(
        K::Index,
        format!("list index {i} out of range for length {len}"),
    )
}

impl Served for List {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut v = self.0.lock();
        match method {
            "append" => {
                v.push(Item::new(args, cx.held(0)));
                unit()
            }
            "extend" => {
                let items: Vec<Bytes<'_>> = dec_args(args)?;
                v.extend(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, b)| Item::new(b.0, cx.held(i))),
                );
                unit()
            }
            "len" => enc(&(v.len() as u64)),
            "get" => {
                let i: u64 = dec_args(args)?;
                v.get(i as usize)
                    .map(|x| x.bytes.clone())
                    .ok_or_else(|| index_error(i, v.len()))
            }
            "set" => {
                let (i, item): (u64, Bytes<'_>) = dec_args(args)?;
                let len = v.len();
                let slot = v.get_mut(i as usize).ok_or_else(|| index_error(i, len))?;
                *slot = Item::new(item.0, cx.held(0));
                unit()
            }
            "pop" => {
                let i: Option<u64> = dec_args(args)?;
                let len = v.len();
                match i {
                    None => v
                        .pop()
                        .map(|x| x.take(cx))
                        .ok_or_else(|| remote(K::Index, "pop from an empty list")),
                    Some(i) if (i as usize) < len => Ok(v.remove(i as usize).take(cx)),
                    Some(i) => Err(index_error(i, len)),
                }
            }
            "insert" => {
                let (i, item): (u64, Bytes<'_>) = dec_args(args)?;
                let at = (i as usize).min(v.len());
                v.insert(at, Item::new(item.0, cx.held(0)));
                unit()
            }
            "remove" => {
                let at = v
                    .iter()
                    .position(|x| x.bytes == args)
                    .ok_or_else(|| remote(K::Value, "list.remove(x): x not in list"))?;
                v.remove(at);
                unit()
            }
            "index" => {
                let at = v
                    .iter()
                    .position(|x| x.bytes == args)
                    .ok_or_else(|| remote(K::Value, "list.index(x): x not in list"))?;
                enc(&(at as u64))
            }
            "contains" => enc(&v.iter().any(|x| x.bytes == args)),
            "count" => enc(&(v.iter().filter(|x| x.bytes == args).count() as u64)),
            "slice" => {
                let (start, end): (u64, u64) = dec_args(args)?;
                let end = (end as usize).min(v.len());
                let start = (start as usize).min(end);
                Ok(concat(&all_bytes(v[start..end].iter())))
            }
            "to_vec" => Ok(concat(&all_bytes(v.iter()))),
            "clear" => {
                v.clear();
                unit()
            }
            "reverse" => {
                v.reverse();
                unit()
            }
            m => Err(unknown("list", m)),
        }
    }
}

// ---------------------------------------------------------------- dict

/// Values only hold references: keys compare by their encoding, and a
/// proxy as a key is not kept alive by the dict.
struct Dict(Mutex<IndexMap<Vec<u8>, Item>>);

impl Dict {
    fn make(init: &[u8]) -> Result<Arc<dyn Served>> {
        let items: Vec<(Bytes<'_>, Bytes<'_>)> = dec_args(init)?;
        Ok(Arc::new(Dict(Mutex::new(
            items
                .into_iter()
                .map(|(k, v)| (k.0.to_vec(), Item::plain(v.0)))
                .collect(),
        ))))
    }
}

impl Served for Dict {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut d = self.0.lock();
        match method {
            "insert" => {
                let (k, v): (Bytes<'_>, Bytes<'_>) = dec_args(args)?;
                let old = d.insert(k.0.to_vec(), Item::new(v.0, cx.held(0)));
                Ok(some(old.map(|o| o.take(cx)).as_deref()))
            }
            "get" => Ok(some(d.get(args).map(|x| x.bytes.as_slice()))),
            "remove" => {
                let old = d.shift_remove(args);
                Ok(some(old.map(|o| o.take(cx)).as_deref()))
            }
            "contains" => enc(&d.contains_key(args)),
            "len" => enc(&(d.len() as u64)),
            "keys" => {
                let items: Vec<&[u8]> = d.keys().map(Vec::as_slice).collect();
                Ok(concat(&items))
            }
            "values" => Ok(concat(&all_bytes(d.values()))),
            "items" => {
                let mut out = Vec::new();
                push_len(&mut out, d.len());
                for (k, v) in d.iter() {
                    out.extend_from_slice(k);
                    out.extend_from_slice(&v.bytes);
                }
                Ok(out)
            }
            "update" => {
                let items: Vec<(Bytes<'_>, Bytes<'_>)> = dec_args(args)?;
                for (i, (k, v)) in items.into_iter().enumerate() {
                    d.insert(k.0.to_vec(), Item::new(v.0, cx.held(i)));
                }
                unit()
            }
            "setdefault" => {
                let (k, v): (Bytes<'_>, Bytes<'_>) = dec_args(args)?;
                Ok(d.entry(k.0.to_vec())
                    .or_insert_with(|| Item::new(v.0, cx.held(0)))
                    .bytes
                    .clone())
            }
            "clear" => {
                d.clear();
                unit()
            }
            m => Err(unknown("dict", m)),
        }
    }
}

// ---------------------------------------------------------------- namespace

struct Namespace(Mutex<BTreeMap<String, Item>>);

impl Namespace {
    fn make(init: &[u8]) -> Result<Arc<dyn Served>> {
        let items: Vec<(String, Bytes<'_>)> = dec_args(init)?;
        Ok(Arc::new(Namespace(Mutex::new(
            items
                .into_iter()
                .map(|(k, v)| (k, Item::plain(v.0)))
                .collect(),
        ))))
    }
}

impl Served for Namespace {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut m = self.0.lock();
        match method {
            "get" => {
                let name: &str = dec_args(args)?;
                m.get(name).map(|x| x.bytes.clone()).ok_or_else(|| {
                    remote(
                        K::Key,
                        format!("'Namespace' object has no attribute {name:?}"),
                    )
                })
            }
            "set" => {
                let (name, v): (&str, Bytes<'_>) = dec_args(args)?;
                m.insert(name.to_string(), Item::new(v.0, cx.held(0)));
                unit()
            }
            "remove" => {
                let name: &str = dec_args(args)?;
                enc(&m.remove(name).is_some())
            }
            "contains" => {
                let name: &str = dec_args(args)?;
                enc(&m.contains_key(name))
            }
            "names" => enc(&m.keys().collect::<Vec<_>>()),
            m => Err(unknown("Namespace", m)),
        }
    }
}

// ---------------------------------------------------------------- value, array

struct ValueObj(Mutex<Item>);

impl ValueObj {
    fn make(init: &[u8]) -> Result<Arc<dyn Served>> {
        Ok(Arc::new(ValueObj(Mutex::new(Item::plain(init)))))
    }
}

impl Served for ValueObj {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut v = self.0.lock();
        match method {
            "get" => Ok(v.bytes.clone()),
            "set" => {
                *v = Item::new(args, cx.held(0));
                unit()
            }
            "swap" => Ok(std::mem::replace(&mut *v, Item::new(args, cx.held(0))).take(cx)),
            m => Err(unknown("Value", m)),
        }
    }
}

/// A fixed-length sequence (Python's manager `Array`).
struct ArrayObj(Mutex<Vec<Item>>);

impl ArrayObj {
    fn make(init: &[u8]) -> Result<Arc<dyn Served>> {
        let items: Vec<Bytes<'_>> = dec_args(init)?;
        Ok(Arc::new(ArrayObj(Mutex::new(
            items.into_iter().map(|b| Item::plain(b.0)).collect(),
        ))))
    }
}

impl Served for ArrayObj {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut v = self.0.lock();
        match method {
            "len" => enc(&(v.len() as u64)),
            "get" => {
                let i: u64 = dec_args(args)?;
                v.get(i as usize)
                    .map(|x| x.bytes.clone())
                    .ok_or_else(|| index_error(i, v.len()))
            }
            "set" => {
                let (i, item): (u64, Bytes<'_>) = dec_args(args)?;
                let len = v.len();
                let slot = v.get_mut(i as usize).ok_or_else(|| index_error(i, len))?;
                *slot = Item::new(item.0, cx.held(0));
                unit()
            }
            "to_vec" => Ok(concat(&all_bytes(v.iter()))),
            m => Err(unknown("Array", m)),
        }
    }
}

// ---------------------------------------------------------------- queue

struct QueueState {
    items: VecDeque<Item>,
    unfinished: u64,
}

/// A FIFO queue; joinable ones count unfinished tasks.
struct QueueObj {
    state: Mutex<QueueState>,
    maxsize: usize,
    joinable: bool,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
}

impl QueueObj {
    fn make(init: &[u8]) -> Result<Arc<dyn Served>> {
        Self::with(init, false)
    }

    fn make_joinable(init: &[u8]) -> Result<Arc<dyn Served>> {
        Self::with(init, true)
    }

    fn with(init: &[u8], joinable: bool) -> Result<Arc<dyn Served>> {
        let maxsize: u64 = dec_args(init)?;
        Ok(Arc::new(QueueObj {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                unfinished: 0,
            }),
            maxsize: maxsize as usize,
            joinable,
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
        }))
    }

    fn full(&self, s: &QueueState) -> bool {
        self.maxsize > 0 && s.items.len() >= self.maxsize
    }
}

impl Served for QueueObj {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut s = self.state.lock();
        match method {
            "put" => {
                let (block, timeout, item): (bool, Option<u64>, Bytes<'_>) = dec_args(args)?;
                let d = deadline(block, timeout);
                while self.full(&s) {
                    if !cx.wait(&self.not_full, &mut s, d)? {
                        return Err(remote(K::Full, "the queue is full"));
                    }
                }
                s.items.push_back(Item::new(item.0, cx.held(0)));
                s.unfinished += 1;
                self.not_empty.notify_one();
                unit()
            }
            "get" => {
                let (block, timeout): (bool, Option<u64>) = dec_args(args)?;
                let d = deadline(block, timeout);
                loop {
                    if let Some(item) = s.items.pop_front() {
                        self.not_full.notify_one();
                        return Ok(item.take(cx));
                    }
                    if !cx.wait(&self.not_empty, &mut s, d)? {
                        return Err(remote(K::Empty, "the queue is empty"));
                    }
                }
            }
            "qsize" => enc(&(s.items.len() as u64)),
            "empty" => enc(&s.items.is_empty()),
            "full" => enc(&self.full(&s)),
            "task_done" if self.joinable => {
                if s.unfinished == 0 {
                    return Err(remote(K::Value, "task_done() called too many times"));
                }
                s.unfinished -= 1;
                if s.unfinished == 0 {
                    self.all_done.notify_all();
                }
                unit()
            }
            "join" if self.joinable => {
                let timeout: Option<u64> = dec_args(args)?;
                let d = deadline(true, timeout);
                while s.unfinished > 0 {
                    if !cx.wait(&self.all_done, &mut s, d)? {
                        return Err(Error::Timeout);
                    }
                }
                unit()
            }
            m => Err(unknown("Queue", m)),
        }
    }
}

// ---------------------------------------------------------------- locks

/// A plain lock: any caller may release it (as Python's `threading.Lock`).
struct LockObj {
    /// The session that acquired it, while held.
    held: Mutex<Option<u64>>,
    cv: Condvar,
}

impl LockObj {
    fn make(_init: &[u8]) -> Result<Arc<dyn Served>> {
        Ok(Arc::new(LockObj {
            held: Mutex::new(None),
            cv: Condvar::new(),
        }))
    }
}

impl Served for LockObj {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut held = self.held.lock();
        match method {
            "acquire" => {
                let (block, timeout): (bool, Option<u64>) = dec_args(args)?;
                let d = deadline(block, timeout);
                while held.is_some() {
                    if !cx.wait(&self.cv, &mut held, d)? {
                        return enc(&false);
                    }
                }
                *held = Some(cx.session);
                enc(&true)
            }
            "release" => {
                if held.is_none() {
                    return Err(Error::NotOwner);
                }
                *held = None;
                self.cv.notify_one();
                unit()
            }
            "locked" => enc(&held.is_some()),
            m => Err(unknown("Lock", m)),
        }
    }

    fn session_ended(&self, session: u64) {
        let mut held = self.held.lock();
        if *held == Some(session) {
            *held = None;
            self.cv.notify_one();
        }
    }
}

/// A reentrant lock's state: the owning caller and its depth.
#[derive(Default)]
struct Owned {
    owner: Option<u64>,
    /// The owner's session.
    session: u64,
    count: u64,
}

impl Owned {
    /// Takes the lock for `caller` (once more if it holds it); whether it
    /// got it before `d`.
    fn acquire(
        this: &mut parking_lot::MutexGuard<'_, impl AsMut<Owned>>,
        cv: &Condvar,
        caller: u64,
        d: Option<Instant>,
        cx: &Cx<'_>,
    ) -> Result<bool> {
        loop {
            let o = this.as_mut();
            match o.owner {
                None => {
                    o.owner = Some(caller);
                    o.session = cx.session;
                    o.count = 1;
                    return Ok(true);
                }
                Some(c) if c == caller => {
                    o.count += 1;
                    return Ok(true);
                }
                Some(_) => {
                    if !cx.wait(cv, this, d)? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    fn release(&mut self, caller: u64, cv: &Condvar) -> Result<()> {
        if self.owner != Some(caller) {
            return Err(Error::NotOwner);
        }
        self.count -= 1;
        if self.count == 0 {
            self.owner = None;
            cv.notify_all();
        }
        Ok(())
    }
}

impl Owned {
    /// Frees the lock if `session` holds it; whether it did.
    fn drop_session(&mut self, session: u64) -> bool {
        if self.owner.is_some() && self.session == session {
            self.owner = None;
            self.count = 0;
            return true;
        }
        false
    }
}

impl AsMut<Owned> for Owned {
    fn as_mut(&mut self) -> &mut Owned {
        self
    }
}

struct RLockObj {
    state: Mutex<Owned>,
    cv: Condvar,
}

impl RLockObj {
    fn make(_init: &[u8]) -> Result<Arc<dyn Served>> {
        Ok(Arc::new(RLockObj {
            state: Mutex::new(Owned::default()),
            cv: Condvar::new(),
        }))
    }
}

impl Served for RLockObj {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut s = self.state.lock();
        match method {
            "acquire" => {
                let (block, timeout): (bool, Option<u64>) = dec_args(args)?;
                let d = deadline(block, timeout);
                enc(&Owned::acquire(&mut s, &self.cv, cx.caller, d, cx)?)
            }
            "release" => {
                s.release(cx.caller, &self.cv)?;
                unit()
            }
            "locked" => enc(&s.owner.is_some()),
            m => Err(unknown("RLock", m)),
        }
    }

    fn session_ended(&self, session: u64) {
        if self.state.lock().drop_session(session) {
            self.cv.notify_all();
        }
    }
}

struct SemaphoreObj {
    value: Mutex<u64>,
    bound: Option<u64>,
    cv: Condvar,
}

impl SemaphoreObj {
    fn make(init: &[u8]) -> Result<Arc<dyn Served>> {
        let (value, bounded): (u64, bool) = dec_args(init)?;
        Ok(Arc::new(SemaphoreObj {
            value: Mutex::new(value),
            bound: bounded.then_some(value),
            cv: Condvar::new(),
        }))
    }
}

impl Served for SemaphoreObj {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut v = self.value.lock();
        match method {
            "acquire" => {
                let (block, timeout): (bool, Option<u64>) = dec_args(args)?;
                let d = deadline(block, timeout);
                while *v == 0 {
                    if !cx.wait(&self.cv, &mut v, d)? {
                        return enc(&false);
                    }
                }
                *v -= 1;
                enc(&true)
            }
            "release" => {
                let n: u64 = dec_args(args)?;
                let new = v.saturating_add(n);
                if self.bound.is_some_and(|b| new > b) {
                    return Err(Error::ReleasedTooManyTimes);
                }
                *v = new;
                for _ in 0..n.min(1 << 16) {
                    self.cv.notify_one();
                }
                unit()
            }
            "value" => enc(&*v),
            m => Err(unknown("Semaphore", m)),
        }
    }
}

// ---------------------------------------------------------------- condition

#[derive(Default)]
struct CondState {
    lock: Owned,
    next_ticket: u64,
    waiting: VecDeque<u64>,
    woken: Vec<u64>,
}

impl AsMut<Owned> for CondState {
    fn as_mut(&mut self) -> &mut Owned {
        &mut self.lock
    }
}

/// A condition variable with its own reentrant lock (Python's manager
/// `Condition()`, whose default lock is an `RLock`).
struct ConditionObj {
    state: Mutex<CondState>,
    lock_cv: Condvar,
    cond_cv: Condvar,
}

impl ConditionObj {
    fn make(_init: &[u8]) -> Result<Arc<dyn Served>> {
        Ok(Arc::new(ConditionObj {
            state: Mutex::new(CondState::default()),
            lock_cv: Condvar::new(),
            cond_cv: Condvar::new(),
        }))
    }
}

impl Served for ConditionObj {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut s = self.state.lock();
        match method {
            "acquire" => {
                let (block, timeout): (bool, Option<u64>) = dec_args(args)?;
                let d = deadline(block, timeout);
                enc(&Owned::acquire(&mut s, &self.lock_cv, cx.caller, d, cx)?)
            }
            "release" => {
                s.lock.release(cx.caller, &self.lock_cv)?;
                unit()
            }
            "wait" => {
                let timeout: Option<u64> = dec_args(args)?;
                if s.lock.owner != Some(cx.caller) {
                    return Err(Error::NotOwner);
                }
                // Release the lock entirely, wait for a notification, then
                // take the lock back at the same depth.
                let depth = s.lock.count;
                s.lock.owner = None;
                s.lock.count = 0;
                self.lock_cv.notify_all();
                let ticket = s.next_ticket;
                s.next_ticket += 1;
                s.waiting.push_back(ticket);
                let d = deadline(true, timeout);
                let mut notified = false;
                let mut failure = None;
                loop {
                    if let Some(i) = s.woken.iter().position(|&t| t == ticket) {
                        s.woken.swap_remove(i);
                        notified = true;
                        break;
                    }
                    match cx.wait(&self.cond_cv, &mut s, d) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                if !notified {
                    s.waiting.retain(|&t| t != ticket);
                }
                if let Some(e) = failure {
                    return Err(e);
                }
                while s.lock.owner.is_some() {
                    cx.wait(&self.lock_cv, &mut s, None)?;
                }
                s.lock.owner = Some(cx.caller);
                s.lock.session = cx.session;
                s.lock.count = depth;
                enc(&notified)
            }
            "notify" => {
                let n: u64 = dec_args(args)?;
                if s.lock.owner != Some(cx.caller) {
                    return Err(Error::NotOwner);
                }
                for _ in 0..n {
                    let Some(t) = s.waiting.pop_front() else {
                        break;
                    };
                    s.woken.push(t);
                }
                self.cond_cv.notify_all();
                unit()
            }
            "notify_all" => {
                if s.lock.owner != Some(cx.caller) {
                    return Err(Error::NotOwner);
                }
                let all: Vec<u64> = s.waiting.drain(..).collect();
                s.woken.extend(all);
                self.cond_cv.notify_all();
                unit()
            }
            m => Err(unknown("Condition", m)),
        }
    }

    fn session_ended(&self, session: u64) {
        if self.state.lock().lock.drop_session(session) {
            self.lock_cv.notify_all();
        }
    }
}

// ---------------------------------------------------------------- event, barrier

struct EventObj {
    set: Mutex<bool>,
    cv: Condvar,
}

impl EventObj {
    fn make(_init: &[u8]) -> Result<Arc<dyn Served>> {
        Ok(Arc::new(EventObj {
            set: Mutex::new(false),
            cv: Condvar::new(),
        }))
    }
}

impl Served for EventObj {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut s = self.set.lock();
        match method {
            "set" => {
                *s = true;
                self.cv.notify_all();
                unit()
            }
            "clear" => {
                *s = false;
                unit()
            }
            "is_set" => enc(&*s),
            "wait" => {
                let timeout: Option<u64> = dec_args(args)?;
                let d = deadline(true, timeout);
                while !*s {
                    if !cx.wait(&self.cv, &mut s, d)? {
                        return enc(&false);
                    }
                }
                enc(&true)
            }
            m => Err(unknown("Event", m)),
        }
    }
}

struct BarrierState {
    count: u64,
    generation: u64,
    broken: bool,
    /// Generations that a reset ended while parties waited.
    reset_generations: GenSet,
}

struct BarrierObj {
    parties: u64,
    state: Mutex<BarrierState>,
    cv: Condvar,
}

impl BarrierObj {
    fn make(init: &[u8]) -> Result<Arc<dyn Served>> {
        let parties: u64 = dec_args(init)?;
        if parties == 0 {
            return Err(remote(K::Value, "a barrier needs at least one party"));
        }
        Ok(Arc::new(BarrierObj {
            parties,
            state: Mutex::new(BarrierState {
                count: 0,
                generation: 0,
                broken: false,
                reset_generations: GenSet::new(),
            }),
            cv: Condvar::new(),
        }))
    }
}

impl Served for BarrierObj {
    fn call(&self, method: &str, args: &[u8], cx: &Cx<'_>) -> Result<Vec<u8>> {
        let mut s = self.state.lock();
        match method {
            "wait" => {
                let timeout: Option<u64> = dec_args(args)?;
                if s.broken {
                    return Err(Error::BrokenBarrier);
                }
                let index = s.count;
                s.count += 1;
                if s.count == self.parties {
                    s.count = 0;
                    s.generation += 1;
                    self.cv.notify_all();
                    return enc(&index);
                }
                let generation = s.generation;
                let d = deadline(true, timeout);
                loop {
                    if s.generation != generation {
                        if s.reset_generations.remove(&generation) {
                            return Err(Error::BrokenBarrier);
                        }
                        return enc(&index);
                    }
                    if s.broken {
                        s.count = s.count.saturating_sub(1);
                        return Err(Error::BrokenBarrier);
                    }
                    let woke = cx.wait(&self.cv, &mut s, d);
                    if !matches!(woke, Ok(true)) && s.generation == generation {
                        // A timeout (or a waiter that left) breaks the
                        // barrier for everyone, as in Python.
                        s.broken = true;
                        s.count = s.count.saturating_sub(1);
                        self.cv.notify_all();
                        woke?;
                        return Err(Error::BrokenBarrier);
                    }
                }
            }
            "abort" => {
                s.broken = true;
                self.cv.notify_all();
                unit()
            }
            "reset" => {
                if s.count > 0 {
                    let g = s.generation;
                    s.reset_generations.insert(g);
                    s.generation += 1;
                    s.count = 0;
                }
                s.broken = false;
                self.cv.notify_all();
                unit()
            }
            "parties" => enc(&self.parties),
            "n_waiting" => enc(&s.count),
            "broken" => enc(&s.broken),
            m => Err(unknown("Barrier", m)),
        }
    }
}
