//! The built-in objects a manager holds, and the typed operations they
//! answer.
//!
//! Each kind of object has an operation enum (`ListOp`, `DictOp`,
//! `QueueOp`, `BlockingOp`, ...): a request for a built-in object carries
//! one, postcard-encoded, and the server decodes it once, against the
//! kind of the object called ([`Object::call_wire`]). A handler
//! (`List::call(op, cx)`, ...) runs it and gives an [`Answer`], whose wire
//! form the proxies decode. Only types registered by name
//! ([`manager_type!`](crate::manager_type)) are still called by method
//! name. A protocol adapter (another client protocol mapped onto these
//! objects) builds the same operations and calls the same handlers: find
//! an object with `Server::object(id)` and match on [`Object`].
//!
//! * [`containers`]: list, dict, namespace, value, array, and the cursor
//!   a dict makes for a client's lazy iteration (an object of its own,
//!   which goes with its last reference like any other);
//! * [`queues`]: the queue and the joinable queue;
//! * [`sync`]: one generic blocking object ([`sync::Blocking`]) for the
//!   lock, reentrant lock, semaphore and the lock of a condition, and the
//!   condition, event and barrier.
//!
//! Values are kept as the clients encoded them (postcard bytes); equality
//! (`remove`, `index`, `contains`, dict keys) is equality of encodings, as
//! for any type whose encoding is canonical (integers, strings, structs of
//! them; not floats' NaN or -0.0).

pub(crate) mod containers;
#[cfg(feature = "pool")]
pub(crate) mod pool;
pub(crate) mod queues;
pub(crate) mod sync;

use std::time::{Duration, Instant};

use super::protocol::{enc, push_len, remote};
use super::server::{Cx, Held};
use crate::error::{Error, RemoteErrorKind as K, Result};

pub(crate) use containers::{
    ArrayCells, ArrayOp, CursorOp, DICT_CURSOR, Dict, DictCursor, DictOp, IterKind, List, ListOp,
    Namespace, NamespaceOp, ValueCell, ValueOp, sort_order,
};
pub(crate) use queues::{Queue, QueueOp};
pub(crate) use sync::{
    BarrierObj, BarrierOp, BlockingOp, ConditionObj, ConditionOp, EventObj, EventOp, LockObj,
    RLockObj, SemaphoreObj,
};

/// Makes an object of one kind from its encoded initial value.
pub(crate) type Constructor = fn(&[u8]) -> Result<Object>;

/// An object of a type registered by name: called by method name with
/// the method's encoded argument tuple.
pub(crate) trait Registered: Send + Sync {
    /// Runs `method` with the encoded `args`; the encoded result.
    fn call(&self, method: &str, args: &[u8]) -> Result<Vec<u8>>;
}

/// An object the server holds: one of the built-in kinds, or a registered
/// type.
pub(crate) enum Object {
    /// `"list"`.
    List(List),
    /// `"dict"`.
    Dict(Dict),
    /// `"namespace"`.
    Namespace(Namespace),
    /// `"value"`.
    Value(ValueCell),
    /// `"array"`.
    Array(ArrayCells),
    /// `"queue"` and `"joinable_queue"`.
    Queue(Queue),
    /// `"lock"`.
    Lock(LockObj),
    /// `"rlock"`.
    RLock(RLockObj),
    /// `"semaphore"` (bounded or not).
    Semaphore(SemaphoreObj),
    /// `"condition"`.
    Condition(ConditionObj),
    /// `"event"`.
    Event(EventObj),
    /// `"barrier"`.
    Barrier(BarrierObj),
    /// A cursor over a dict ([`DICT_CURSOR`]), made by `DictOp::Iter`.
    DictCursor(DictCursor),
    /// `"pool"`.
    #[cfg(feature = "pool")]
    Pool(pool::PoolObj),
    /// A type registered by name.
    Registered(Box<dyn Registered>),
}

/// The type ids of the built-in objects and their constructors.
pub(crate) fn builtin_types() -> Vec<(&'static str, Constructor)> {
    vec![
        ("list", |i| Ok(Object::List(List::make(i)?))),
        ("dict", |i| Ok(Object::Dict(Dict::make(i)?))),
        ("namespace", |i| Ok(Object::Namespace(Namespace::make(i)?))),
        ("value", |i| Ok(Object::Value(ValueCell::make(i)))),
        ("array", |i| Ok(Object::Array(ArrayCells::make(i)?))),
        ("queue", |i| Ok(Object::Queue(Queue::make(i, false)?))),
        ("joinable_queue", |i| {
            Ok(Object::Queue(Queue::make(i, true)?))
        }),
        ("lock", |_| Ok(Object::Lock(LockObj::make()))),
        ("rlock", |_| Ok(Object::RLock(RLockObj::make()))),
        ("semaphore", |i| {
            Ok(Object::Semaphore(SemaphoreObj::make(i)?))
        }),
        ("condition", |_| Ok(Object::Condition(ConditionObj::make()))),
        ("event", |_| Ok(Object::Event(EventObj::make()))),
        ("barrier", |i| Ok(Object::Barrier(BarrierObj::make(i)?))),
        #[cfg(feature = "pool")]
        ("pool", |i| Ok(Object::Pool(pool::PoolObj::make(i)?))),
    ]
}

impl Object {
    /// The kind's name, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Object::List(_) => "list",
            Object::Dict(_) => "dict",
            Object::Namespace(_) => "Namespace",
            Object::Value(_) => "Value",
            Object::Array(_) => "Array",
            Object::Queue(_) => "Queue",
            Object::Lock(_) => "Lock",
            Object::RLock(_) => "RLock",
            Object::Semaphore(_) => "Semaphore",
            Object::Condition(_) => "Condition",
            Object::Event(_) => "Event",
            Object::Barrier(_) => "Barrier",
            Object::DictCursor(_) => "dict iterator",
            #[cfg(feature = "pool")]
            Object::Pool(_) => "Pool",
            Object::Registered(_) => "registered type",
        }
    }

    /// Runs a request's call: `args` decoded once as the operation of this
    /// object's kind (`method` `None`), or, for a registered type, the
    /// method `method` with its encoded argument tuple. The answer in its
    /// wire form.
    pub(crate) fn call_wire(
        &self,
        method: Option<&str>,
        args: &[u8],
        cx: &Cx<'_>,
    ) -> Result<Vec<u8>> {
        use super::protocol::dec_args as d;
        let answer = match (self, method) {
            (Object::Registered(r), Some(m)) => return r.call(m, args),
            (Object::Registered(_), None) => {
                return Err(remote(
                    K::Protocol,
                    "a registered type is called by method name",
                ));
            }
            (o, Some(m)) => {
                return Err(remote(
                    K::UnknownMethod,
                    format!(
                        "{} has no method {m:?}: it takes typed operations",
                        o.kind()
                    ),
                ));
            }
            (Object::List(o), None) => o.call(d(args)?, cx),
            (Object::Dict(o), None) => o.call(d(args)?, cx),
            (Object::Namespace(o), None) => o.call(d(args)?, cx),
            (Object::Value(o), None) => o.call(d(args)?, cx),
            (Object::Array(o), None) => o.call(d(args)?, cx),
            (Object::Queue(o), None) => o.call(d(args)?, cx),
            (Object::Lock(o), None) => o.call(d(args)?, cx),
            (Object::RLock(o), None) => o.call(d(args)?, cx),
            (Object::Semaphore(o), None) => o.call(d(args)?, cx),
            (Object::Condition(o), None) => o.call(d(args)?, cx),
            (Object::Event(o), None) => o.call(d(args)?, cx),
            (Object::Barrier(o), None) => o.call(d(args)?, cx),
            (Object::DictCursor(o), None) => o.call(d(args)?, cx),
            #[cfg(feature = "pool")]
            (Object::Pool(o), None) => o.call(d(args)?, cx),
        };
        answer.and_then(Answer::into_wire)
    }

    /// The client session `session` ended (its process exited, died or
    /// dropped its handles): locks it holds are released.
    pub(crate) fn session_ended(&self, session: u64) {
        match self {
            Object::Lock(o) => o.session_ended(session),
            Object::RLock(o) => o.session_ended(session),
            Object::Semaphore(o) => o.session_ended(session),
            Object::Condition(o) => o.session_ended(session),
            _ => {}
        }
    }
}

/// What an operation on a built-in object gives back. Its wire form
/// ([`into_wire`](Self::into_wire)) is the postcard encoding of the Rust
/// value the proxy decodes: items are kept encoded, so an item is its own
/// bytes and a sequence of them is a length and their concatenation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Nothing (`()`).
    Unit,
    /// A flag.
    Bool(bool),
    /// A count, length, index or value (`u64`).
    Count(u64),
    /// One stored item (`T`).
    Item(Vec<u8>),
    /// An item, or none (`Option<T>`).
    MaybeItem(Option<Vec<u8>>),
    /// Items (`Vec<T>`).
    Items(Vec<Vec<u8>>),
    /// Key and value pairs (`Vec<(K, V)>`).
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// Names (`Vec<String>`).
    Names(Vec<String>),
    /// A version and items (`(u64, Vec<T>)`).
    Versioned(u64, Vec<Vec<u8>>),
}

impl Answer {
    /// The bytes a proxy decodes.
    pub(crate) fn into_wire(self) -> Result<Vec<u8>> {
        Ok(match self {
            Answer::Unit => Vec::new(),
            Answer::Bool(b) => vec![b as u8],
            Answer::Count(n) => enc(&n)?,
            Answer::Item(b) => b,
            Answer::MaybeItem(None) => vec![0],
            Answer::MaybeItem(Some(b)) => {
                let mut out = Vec::with_capacity(1 + b.len());
                out.push(1);
                out.extend_from_slice(&b);
                out
            }
            Answer::Items(items) => items_wire(Vec::new(), &items),
            Answer::Versioned(version, items) => items_wire(enc(&version)?, &items),
            Answer::Pairs(pairs) => {
                let mut out = Vec::new();
                push_len(&mut out, pairs.len());
                for (k, v) in &pairs {
                    out.extend_from_slice(k);
                    out.extend_from_slice(v);
                }
                out
            }
            Answer::Names(n) => enc(&n)?,
        })
    }
}

/// `out` followed by the wire form of `items` (a length, then each).
fn items_wire(mut out: Vec<u8>, items: &[Vec<u8>]) -> Vec<u8> {
    out.reserve(5 + items.iter().map(Vec::len).sum::<usize>());
    push_len(&mut out, items.len());
    for i in items {
        out.extend_from_slice(i);
    }
    out
}

/// A deadline from a blocking call's `(block, timeout)`: now if it may not
/// block; `None` (no limit) for no timeout or one too far to represent.
pub(crate) fn deadline(block: bool, timeout: Option<Duration>) -> Option<Instant> {
    if !block {
        return Some(Instant::now());
    }
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// A stored value: its encoding, and the references to the objects whose
/// proxies it holds (released when the item is dropped: removed,
/// overwritten, or its container freed; handed to the caller when an item
/// is taken out).
pub(crate) struct Item {
    bytes: Vec<u8>,
    held: Held,
}

impl Item {
    pub(crate) fn new(bytes: &[u8], held: Held) -> Item {
        Item {
            bytes: bytes.to_vec(),
            held,
        }
    }

    pub(crate) fn plain(bytes: &[u8]) -> Item {
        Item::new(bytes, Held::default())
    }

    /// The encoding.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the item out for the caller: its references go to the caller.
    pub(crate) fn take(self, cx: &Cx<'_>) -> Vec<u8> {
        cx.hand_over(self.held);
        self.bytes
    }
}

/// Copies of the encodings of `items`.
pub(crate) fn copies<'a>(items: impl Iterator<Item = &'a Item>) -> Vec<Vec<u8>> {
    items.map(|i| i.bytes.clone()).collect()
}

pub(crate) fn index_error(i: u64, len: usize) -> Error {
    remote(
        K::Index,
        format!("list index {i} out of range for length {len}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decode_as_the_rust_values() {
        use super::super::protocol::dec;
        let item = |s: &str| enc(s).unwrap();
        assert_eq!(Answer::Unit.into_wire().unwrap(), enc(&()).unwrap());
        assert!(dec::<bool>(&Answer::Bool(true).into_wire().unwrap()).unwrap());
        assert_eq!(
            dec::<u64>(&Answer::Count(300).into_wire().unwrap()).unwrap(),
            300
        );
        let w = Answer::MaybeItem(Some(item("x"))).into_wire().unwrap();
        assert_eq!(dec::<Option<String>>(&w).unwrap().as_deref(), Some("x"));
        let w = Answer::MaybeItem(None).into_wire().unwrap();
        assert_eq!(dec::<Option<String>>(&w).unwrap(), None);
        let w = Answer::Items(vec![item("a"), item("bc")])
            .into_wire()
            .unwrap();
        assert_eq!(dec::<Vec<String>>(&w).unwrap(), ["a", "bc"]);
        let w = Answer::Pairs(vec![(item("k"), enc(&7u8).unwrap())])
            .into_wire()
            .unwrap();
        assert_eq!(dec::<Vec<(String, u8)>>(&w).unwrap(), [("k".into(), 7)]);
        let w = Answer::Names(vec!["n".into()]).into_wire().unwrap();
        assert_eq!(dec::<Vec<String>>(&w).unwrap(), ["n"]);
        let w = Answer::Versioned(300, vec![item("a")]).into_wire().unwrap();
        assert_eq!(
            dec::<(u64, Vec<String>)>(&w).unwrap(),
            (300, vec!["a".to_string()])
        );
    }

    #[test]
    fn deadlines_too_far_away_are_none() {
        assert!(deadline(true, Some(Duration::MAX)).is_none());
        assert!(deadline(true, None).is_none());
        assert!(deadline(false, Some(Duration::MAX)).is_some());
    }
}
