//! The server side of CPython's manager protocol: one connection of a
//! Python client, its requests mapped onto the server's objects.
//!
//! Every Python method becomes the typed operation a Rust proxy would send
//! (a `DictOp`, `QueueOp`, ...), run by the object's own handler through
//! the server's call path ([`Server::call_typed`]: the connection's
//! session, references handed over, cancellation when the Python peer
//! goes), with no encoding in between: this file is the table from
//! Python's names and arguments to those operations, and from their
//! [`Answer`]s and errors back to pickles and Python exceptions.

use std::collections::HashMap;
use std::time::Duration;

use super::pickle::{self, Py};
use crate::connection::frame;
use crate::deadline::Deadline;
use crate::error::{Error, RemoteErrorKind as K};
use crate::manager::channel::{Channel, ReadEnd};
use crate::manager::objects::containers::{apply_order, sort_order};
use crate::manager::objects::{
    Answer, ArrayOp, BarrierOp, BlockingOp, ConditionOp, CursorOp, DICT_CURSOR, DictOp, EventOp,
    Item, IterKind, ListOp, NamespaceOp, Object, QueueOp, ValueOp,
};
use crate::manager::protocol::{Bytes, ControlOp, dec, enc, remote};
use crate::manager::server::{Cx, Server};
use crate::sync::wait::Site;

/// How often a waiting connection checks that the server still runs.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// How long a connection polls for a CPython client's next request before
/// it sleeps. A Python client takes longer than a Rust one between a reply
/// and its next request (its own wake-up, then unpickling, the proxy's
/// Python code and pickling: tens of microseconds), so the channel's own
/// spin ([`SPIN`](crate::manager::channel::SPIN), sized for Rust clients)
/// can end just before the request comes, lose, and shrink: every call
/// then pays for waking the server too, as with Python's own server.
/// Spinning is skipped when no CPU is to spare, and its budget shrinks
/// while the client is idle (see [`Site`]).
const PY_SPIN: Duration = Duration::from_micros(200);
static PY_SPIN_SITE: Site = Site::new(PY_SPIN);

/// What goes wrong in a call, as Python sees it.
#[derive(Debug)]
enum PyErr {
    /// `('#ERROR', module.name(*args))`: raised as that exception.
    Exc(&'static str, &'static str, Vec<Py>),
    /// `('#TRACEBACK', text)`: raised as `RemoteError`.
    Traceback(String),
}

type R<T> = std::result::Result<T, PyErr>;

fn exc(module: &'static str, name: &'static str, msg: impl Into<String>) -> PyErr {
    PyErr::Exc(module, name, vec![Py::Str(msg.into())])
}

fn type_error(msg: impl Into<String>) -> PyErr {
    exc("builtins", "TypeError", msg)
}

fn value_error(msg: impl Into<String>) -> PyErr {
    exc("builtins", "ValueError", msg)
}

fn index_error(msg: impl Into<String>) -> PyErr {
    exc("builtins", "IndexError", msg)
}

fn runtime_error(msg: impl Into<String>) -> PyErr {
    exc("builtins", "RuntimeError", msg)
}

fn key_error(key: Py) -> PyErr {
    PyErr::Exc("builtins", "KeyError", vec![key])
}

/// A server-side error as the exception Python's own server would send.
fn from_error(e: Error) -> PyErr {
    match e {
        Error::Remote { kind, message } => match kind {
            K::Index => index_error(message),
            K::Key => exc("builtins", "KeyError", message),
            K::Value => value_error(message),
            K::Empty => PyErr::Exc("queue", "Empty", vec![]),
            K::Full => PyErr::Exc("queue", "Full", vec![]),
            K::BadArguments => type_error(message),
            K::UnknownMethod => exc("builtins", "AttributeError", message),
            K::Custom(name) if name == "RuntimeError" => runtime_error(message),
            _ => PyErr::Traceback(format!("{kind}: {message}")),
        },
        Error::BrokenBarrier => PyErr::Exc("threading", "BrokenBarrierError", vec![]),
        Error::NotOwner => runtime_error("cannot release un-acquired lock"),
        Error::ReleasedTooManyTimes => value_error("Semaphore released too many times"),
        Error::Timeout => exc("builtins", "TimeoutError", "timed out"),
        other => PyErr::Traceback(other.to_string()),
    }
}

/// The server's object types, by the typeid the server holds them under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dict,
    List,
    Namespace,
    Queue,
    Lock,
    RLock,
    Semaphore,
    Condition,
    Event,
    Barrier,
    Value,
    Array,
    /// A dict's keys iterator (a cursor over the dict).
    Iterator,
    /// A registered Rust type: not callable from Python.
    Other,
}

impl Kind {
    fn of(typeid: &str) -> Kind {
        match typeid {
            "dict" => Kind::Dict,
            "list" => Kind::List,
            "namespace" => Kind::Namespace,
            "queue" | "joinable_queue" => Kind::Queue,
            "lock" => Kind::Lock,
            "rlock" => Kind::RLock,
            "semaphore" => Kind::Semaphore,
            "condition" => Kind::Condition,
            "event" => Kind::Event,
            "barrier" => Kind::Barrier,
            "value" => Kind::Value,
            "array" => Kind::Array,
            DICT_CURSOR => Kind::Iterator,
            _ => Kind::Other,
        }
    }

    /// The method names Python's proxy for the type exposes (what
    /// `create` returns, and what an `AutoProxy` is made of).
    fn exposed(self) -> &'static [&'static str] {
        match self {
            Kind::Dict => &[
                "__contains__",
                "__delitem__",
                "__getitem__",
                "__iter__",
                "__len__",
                "__setitem__",
                "clear",
                "copy",
                "get",
                "items",
                "keys",
                "pop",
                "popitem",
                "setdefault",
                "update",
                "values",
            ],
            Kind::List => &[
                "__add__",
                "__contains__",
                "__delitem__",
                "__getitem__",
                "__imul__",
                "__len__",
                "__mul__",
                "__reversed__",
                "__rmul__",
                "__setitem__",
                "append",
                "count",
                "extend",
                "index",
                "insert",
                "pop",
                "remove",
                "reverse",
                "sort",
            ],
            Kind::Namespace => &["__getattribute__", "__setattr__", "__delattr__"],
            Kind::Queue => &[
                "empty",
                "full",
                "get",
                "get_nowait",
                "join",
                "put",
                "put_nowait",
                "qsize",
                "task_done",
            ],
            Kind::Lock | Kind::RLock | Kind::Semaphore => &["acquire", "release"],
            Kind::Condition => &["acquire", "release", "wait", "notify", "notify_all"],
            Kind::Event => &["is_set", "set", "clear", "wait"],
            Kind::Barrier => &["__getattribute__", "wait", "abort", "reset"],
            Kind::Value => &["get", "set"],
            Kind::Array => &["__len__", "__getitem__", "__setitem__"],
            Kind::Iterator => &["__next__", "send", "throw", "close"],
            Kind::Other => &[],
        }
    }

    /// What `create` answers for an object a Rust program exposed by name,
    /// which a bare `M.register('name')` makes an `AutoProxy` of: the
    /// methods that work as plain methods of a class. The attribute hooks
    /// (`__getattribute__`, `__setattr__`, `__delattr__`) would turn every
    /// attribute of the proxy itself into a remote call (recursing in
    /// Python). A dict keeps `__iter__`, as an object Python's server
    /// registered with `proxytype=DictProxy` does: it iterates when the
    /// client's manager class knows the `Iterator` typeid (a
    /// `SyncManager`'s), and raises `KeyError: 'Iterator'` otherwise, as
    /// with Python's server. A `BarrierProxy` or `NamespaceProxy` given as
    /// `proxytype` still reaches the hooks (the server serves what
    /// [`exposed`](Self::exposed) lists).
    fn exposed_by_name(self) -> impl Iterator<Item = &'static str> {
        self.exposed()
            .iter()
            .copied()
            .filter(|m| !matches!(*m, "__getattribute__" | "__setattr__" | "__delattr__"))
    }
}

/// A Python typeid: the server's typeid and how to make the initial value.
fn python_type(typeid: &str) -> Option<&'static str> {
    Some(match typeid {
        "dict" => "dict",
        "list" => "list",
        "Namespace" => "namespace",
        // Python's `Queue` is a `queue.Queue`, which has `task_done` and
        // `join` too.
        "Queue" | "JoinableQueue" => "joinable_queue",
        "Lock" => "lock",
        "RLock" => "rlock",
        "Semaphore" | "BoundedSemaphore" => "semaphore",
        "Condition" => "condition",
        "Event" => "event",
        "Barrier" => "barrier",
        "Value" => "value",
        "Array" => "array",
        _ => return None,
    })
}

/// The server-side object id of a Python ident (`'%x'` of the id).
fn ident(v: &Py) -> R<u64> {
    match v {
        Py::Str(s) if !s.is_empty() && s.len() <= 16 => u64::from_str_radix(s, 16)
            .map_err(|_| PyErr::Traceback(format!("no object with ident {s:?}"))),
        _ => Err(PyErr::Traceback(format!(
            "bad object ident {}",
            truncate(v.repr())
        ))),
    }
}

fn ident_of(id: u64) -> Py {
    Py::Str(format!("{id:x}"))
}

fn truncate(mut s: String) -> String {
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

impl Py {
    fn truthy(&self) -> bool {
        match self {
            Py::None => false,
            Py::Bool(b) => *b,
            Py::Int(i) => *i != 0,
            Py::BigInt(_) => true,
            Py::Float(f) => *f != 0.0,
            Py::Str(s) => !s.is_empty(),
            Py::Bytes(b) | Py::ByteArray(b) => !b.is_empty(),
            Py::List(v) | Py::Tuple(v) | Py::Set(v) | Py::FrozenSet(v) => !v.is_empty(),
            Py::Dict(d) => !d.is_empty(),
            Py::Slice(_) => true,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Py::None => "NoneType",
            Py::Bool(_) => "bool",
            Py::Int(_) | Py::BigInt(_) => "int",
            Py::Float(_) => "float",
            Py::Str(_) => "str",
            Py::Bytes(_) => "bytes",
            Py::ByteArray(_) => "bytearray",
            Py::List(_) => "list",
            Py::Tuple(_) => "tuple",
            Py::Dict(_) => "dict",
            Py::Set(_) => "set",
            Py::FrozenSet(_) => "frozenset",
            Py::Slice(_) => "slice",
        }
    }
}

/// An integer argument (a bool counts, as in Python).
fn int(v: &Py, what: &str) -> R<i64> {
    match v {
        Py::Int(i) => Ok(*i),
        Py::Bool(b) => Ok(i64::from(*b)),
        Py::BigInt(_) => Err(index_error(format!("{what} out of range"))),
        other => Err(type_error(format!(
            "{what} must be an integer, not {}",
            other.type_name()
        ))),
    }
}

/// Python's timeout (seconds, `None` for none), at most `u64::MAX`
/// nanoseconds.
fn timeout_of(v: Option<&Py>) -> R<Option<Duration>> {
    let secs = match v {
        None | Some(Py::None) => return Ok(None),
        Some(Py::Float(f)) => *f,
        Some(v) => int(v, "timeout")? as f64,
    };
    if secs.is_nan() {
        return Err(value_error("timeout must be a number"));
    }
    Ok(Some(Duration::from_nanos(
        (secs.max(0.0) * 1e9).min(u64::MAX as f64) as u64,
    )))
}

/// The items of an iterable argument (`list(x)` for the data types).
fn items_of(v: Py) -> R<Vec<Py>> {
    Ok(match v {
        Py::List(v) | Py::Tuple(v) | Py::Set(v) | Py::FrozenSet(v) => v,
        Py::Dict(d) => d.into_iter().map(|(k, _)| k).collect(),
        Py::Str(s) => s.chars().map(|c| Py::Str(c.to_string())).collect(),
        Py::Bytes(b) | Py::ByteArray(b) => b.into_iter().map(|x| Py::Int(x.into())).collect(),
        other => {
            return Err(type_error(format!(
                "'{}' object is not iterable",
                other.type_name()
            )));
        }
    })
}

/// The pairs of a `dict(...)`/`update(...)` argument.
fn pairs_of(v: Py) -> R<Vec<(Py, Py)>> {
    match v {
        Py::Dict(d) => Ok(d),
        other => items_of(other)?
            .into_iter()
            .map(|p| match p {
                Py::Tuple(mut kv) | Py::List(mut kv) if kv.len() == 2 => {
                    let v = kv.pop().expect("2");
                    let k = kv.pop().expect("2");
                    Ok((k, v))
                }
                _ => Err(type_error(
                    "cannot convert dictionary update sequence element to a pair",
                )),
            })
            .collect(),
    }
}

/// The pickled `(key, value)` pairs that `dict(...)` or `d.update(...)`
/// (`method`) takes, as Python's: at most one mapping or sequence of pairs,
/// then the keywords.
fn dict_args(method: &str, args: Vec<Py>, kwds: Vec<(Py, Py)>) -> R<Vec<(Vec<u8>, Vec<u8>)>> {
    if args.len() > 1 {
        return Err(type_error(format!("{method} expected at most 1 argument")));
    }
    let mut pairs = match args.into_iter().next() {
        Some(v) => pairs_of(v)?,
        None => Vec::new(),
    };
    pairs.extend(kwds);
    Ok(pairs.iter().map(|(k, v)| (frag(k), frag(v))).collect())
}

/// The one optional `timeout` argument of a `wait(timeout=None)`.
fn timeout_arg(method: &str, args: Vec<Py>, kwds: Vec<(Py, Py)>) -> R<Option<Duration>> {
    let [t] = bind(method, args, kwds, ["timeout"], 0)?;
    timeout_of(t.as_ref())
}

/// Binds positional and keyword arguments to the parameters `names`.
fn bind<const N: usize>(
    method: &str,
    args: Vec<Py>,
    kwds: Vec<(Py, Py)>,
    names: [&str; N],
    required: usize,
) -> R<[Option<Py>; N]> {
    if args.len() > N {
        return Err(type_error(format!(
            "{method}() takes at most {N} arguments ({} given)",
            args.len()
        )));
    }
    let mut out: [Option<Py>; N] = std::array::from_fn(|_| None);
    for (slot, a) in out.iter_mut().zip(args) {
        *slot = Some(a);
    }
    for (k, v) in kwds {
        let Py::Str(k) = k else {
            return Err(type_error("keywords must be strings"));
        };
        let Some(i) = names.iter().position(|n| *n == k) else {
            return Err(type_error(format!(
                "{method}() got an unexpected keyword argument {k:?}"
            )));
        };
        if out[i].is_some() {
            return Err(type_error(format!(
                "{method}() got multiple values for argument {k:?}"
            )));
        }
        out[i] = Some(v);
    }
    if out[..required].iter().any(Option::is_none) {
        return Err(type_error(format!(
            "{method}() missing a required argument"
        )));
    }
    Ok(out)
}

/// The first `n` arguments, which must all be there (and nothing else).
fn take<const N: usize>(method: &str, args: Vec<Py>, kwds: Vec<(Py, Py)>) -> R<[Py; N]> {
    if !kwds.is_empty() {
        return Err(type_error(format!("{method}() takes no keyword arguments")));
    }
    let n = args.len();
    args.try_into()
        .map_err(|_| type_error(format!("{method}() takes {N} arguments ({n} given)")))
}

fn frag(v: &Py) -> Vec<u8> {
    pickle::fragment(v)
}

fn none() -> Vec<u8> {
    vec![b'N']
}

fn bool_frag(b: bool) -> Vec<u8> {
    frag(&Py::Bool(b))
}

fn int_frag(i: u64) -> Vec<u8> {
    match i64::try_from(i) {
        Ok(i) => frag(&Py::Int(i)),
        Err(_) => frag(&Py::BigInt(
            i.to_le_bytes().iter().copied().chain([0]).collect(),
        )),
    }
}

fn decoded<T: serde::de::DeserializeOwned>(b: &[u8]) -> R<T> {
    dec(b).map_err(|e| PyErr::Traceback(e.to_string()))
}

const FOREIGN: &str = "a value stored by a client that does not use the pickle encoding \
                       (a Rust proxy not in python_compatible mode) cannot be sent to Python";

/// One stored item, checked to be a data fragment before it goes out.
fn item(b: Vec<u8>) -> R<Vec<u8>> {
    if !pickle::is_plain_leaf(&b) {
        pickle::decode_fragments(&b, 1).map_err(|_| PyErr::Traceback(FOREIGN.into()))?;
    }
    Ok(b)
}

/// The value of one stored item.
fn value_of(b: &[u8]) -> R<Py> {
    pickle::decode_fragments(b, 1)
        .ok()
        .and_then(|mut v| v.pop())
        .ok_or_else(|| PyErr::Traceback(FOREIGN.into()))
}

/// A list fragment of stored items, each checked to be a data fragment.
fn list_frag(items: Vec<Vec<u8>>) -> R<Vec<u8>> {
    let mut out = Vec::with_capacity(items.iter().map(Vec::len).sum::<usize>() + 3);
    out.push(b']');
    if !items.is_empty() {
        out.push(b'(');
        for i in items {
            out.extend_from_slice(&item(i)?);
        }
        out.push(b'e');
    }
    Ok(out)
}

/// The values of stored items.
fn list_values(items: Vec<Vec<u8>>) -> R<Vec<Py>> {
    items.iter().map(|b| value_of(b)).collect()
}

/// The keys and values of stored pairs.
fn pair_values(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> R<Vec<(Py, Py)>> {
    pairs
        .iter()
        .map(|(k, v)| Ok((value_of(k)?, value_of(v)?)))
        .collect()
}

/// A normalised index into a sequence of `len` (Python's negative
/// indices), or `IndexError`.
fn index(i: i64, len: u64, what: &str) -> R<u64> {
    let j = if i < 0 { i + len as i64 } else { i };
    if j < 0 || j as u64 >= len {
        return Err(index_error(format!("{what} index out of range")));
    }
    Ok(j as u64)
}

/// The positions `slice(start, stop, step)` selects in a sequence of `len`
/// (Python's rules; computed in `i128`, so no index overflows).
fn slice_positions(s: &(Py, Py, Py), len: usize) -> R<Vec<usize>> {
    let (start, stop, step) = slice_bounds(s, len)?;
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(i as usize);
        i += step;
    }
    Ok(out)
}

/// `slice(start, stop, step)` over a sequence of `len`, its bounds adjusted
/// as Python's `slice.indices` does (a start within `0..=len`, or `-1`
/// going down).
fn slice_bounds(s: &(Py, Py, Py), len: usize) -> R<(i128, i128, i128)> {
    let opt = |v: &Py| -> R<Option<i128>> {
        match v {
            Py::None => Ok(None),
            // Beyond i64 is beyond any length: clamped like a big int.
            Py::BigInt(b) => Ok(Some(if b.last().is_some_and(|x| x & 0x80 != 0) {
                i128::from(i64::MIN)
            } else {
                i128::from(i64::MAX)
            })),
            v => int(v, "slice indices").map(|i| Some(i.into())),
        }
    };
    let step = opt(&s.2)?.unwrap_or(1);
    if step == 0 {
        return Err(value_error("slice step cannot be zero"));
    }
    let len = len as i128;
    let clamp = |v: Option<i128>, default: i128, lo: i128, hi: i128| match v {
        None => default,
        Some(v) if v < 0 => (v + len).max(lo),
        Some(v) => v.min(hi),
    };
    Ok(if step > 0 {
        let (start, stop) = (clamp(opt(&s.0)?, 0, 0, len), clamp(opt(&s.1)?, len, 0, len));
        (start, stop, step)
    } else {
        let start = clamp(opt(&s.0)?, len - 1, -1, len - 1);
        let stop = clamp(opt(&s.1)?, -1, -1, len - 1);
        (start, stop, step)
    })
}

/// Checks and converts an `array.array(typecode)` element.
fn array_item(typecode: Option<char>, v: Py) -> R<Py> {
    let Some(tc) = typecode else {
        return Ok(v);
    };
    let range: (i128, i128) = match tc {
        'b' => (-128, 127),
        'B' => (0, 255),
        'h' => (-(1 << 15), (1 << 15) - 1),
        'H' => (0, (1 << 16) - 1),
        'i' | 'l' if tc == 'i' => (-(1 << 31), (1 << 31) - 1),
        'I' => (0, (1 << 32) - 1),
        'l' | 'q' => (i64::MIN.into(), i64::MAX.into()),
        'L' | 'Q' => (0, u64::MAX.into()),
        'f' | 'd' => {
            return match v {
                Py::Float(f) => Ok(Py::Float(f)),
                Py::Int(i) => Ok(Py::Float(i as f64)),
                Py::Bool(b) => Ok(Py::Float(f64::from(u8::from(b)))),
                other => Err(type_error(format!(
                    "must be real number, not {}",
                    other.type_name()
                ))),
            };
        }
        'u' | 'w' => {
            return match v {
                Py::Str(s) if s.chars().count() == 1 => Ok(Py::Str(s)),
                _ => Err(type_error("array item must be a unicode character")),
            };
        }
        _ => return Err(value_error(format!("bad typecode {tc:?}"))),
    };
    match v {
        Py::Int(i) if (range.0..=range.1).contains(&i128::from(i)) => Ok(Py::Int(i)),
        Py::Bool(b) => Ok(Py::Int(b.into())),
        Py::Int(_) | Py::BigInt(_) => Err(exc(
            "builtins",
            "OverflowError",
            "array item out of range for its typecode",
        )),
        other => Err(type_error(format!(
            "'{}' object cannot be interpreted as an integer",
            other.type_name()
        ))),
    }
}

/// A typed operation a Python method becomes, run by the handler of the
/// object's kind (a Python typeid maps onto one kind, so another kind is
/// an error, not a panic).
trait Op: Sized {
    fn run(self, object: &Object, cx: &Cx<'_>) -> Result<Answer, Error>;
}

fn wrong_kind(o: &Object) -> Error {
    remote(
        K::UnknownMethod,
        format!("a {} does not take this operation", o.kind()),
    )
}

macro_rules! op_of {
    ($($op:ty => $($variant:ident)|+;)*) => {$(
        impl Op for $op {
            fn run(self, object: &Object, cx: &Cx<'_>) -> Result<Answer, Error> {
                match object {
                    $(Object::$variant(o) => o.call(self, cx),)+
                    o => Err(wrong_kind(o)),
                }
            }
        }
    )*};
}

op_of! {
    DictOp<'_> => Dict;
    ListOp<'_> => List;
    NamespaceOp<'_> => Namespace;
    ValueOp<'_> => Value;
    ArrayOp<'_> => Array;
    QueueOp<'_> => Queue;
    EventOp => Event;
    BarrierOp => Barrier;
    ConditionOp => Condition;
    CursorOp => DictCursor;
}

/// A lock operation: on a lock, reentrant lock or semaphore, or on a
/// condition's own lock.
impl Op for BlockingOp {
    fn run(self, object: &Object, cx: &Cx<'_>) -> Result<Answer, Error> {
        match object {
            Object::Lock(o) => o.call(self, cx),
            Object::RLock(o) => o.call(self, cx),
            Object::Semaphore(o) => o.call(self, cx),
            Object::Condition(o) => o.call(ConditionOp::Lock(self), cx),
            o => Err(wrong_kind(o)),
        }
    }
}

/// An edit of a list's items that needs their values (Python's `sort`,
/// slice assignment, `*=`), run under the list's lock.
struct ListEdit<F>(F);

impl<F: FnOnce(&mut Vec<Item>)> Op for ListEdit<F> {
    fn run(self, object: &Object, _: &Cx<'_>) -> Result<Answer, Error> {
        match object {
            Object::List(l) => {
                l.edit(self.0);
                Ok(Answer::Unit)
            }
            o => Err(wrong_kind(o)),
        }
    }
}

fn unexpected(a: &Answer) -> PyErr {
    PyErr::Traceback(truncate(format!(
        "the server gave an unexpected answer: {a:?}"
    )))
}

/// The flag an operation answers.
fn flag(a: Answer) -> R<bool> {
    match a {
        Answer::Bool(b) => Ok(b),
        a => Err(unexpected(&a)),
    }
}

/// The count an operation answers.
fn count(a: Answer) -> R<u64> {
    match a {
        Answer::Count(n) => Ok(n),
        a => Err(unexpected(&a)),
    }
}

/// The stored item an operation answers, checked to be a data fragment.
fn one(a: Answer) -> R<Vec<u8>> {
    match a {
        Answer::Item(b) => item(b),
        a => Err(unexpected(&a)),
    }
}

/// The stored item, or none, an operation answers.
fn maybe(a: Answer) -> R<Option<Vec<u8>>> {
    match a {
        Answer::MaybeItem(b) => b.map(item).transpose(),
        a => Err(unexpected(&a)),
    }
}

/// The stored items an operation answers.
fn many(a: Answer) -> R<Vec<Vec<u8>>> {
    match a {
        Answer::Items(v) => Ok(v),
        a => Err(unexpected(&a)),
    }
}

/// The key and value pairs an operation answers.
fn pairs(a: Answer) -> R<Vec<(Vec<u8>, Vec<u8>)>> {
    match a {
        Answer::Pairs(v) => Ok(v),
        a => Err(unexpected(&a)),
    }
}

/// One Python connection.
struct Conn<'s> {
    server: &'s Server,
    session: u64,
    /// Tells this connection's calls apart (the owner of an `RLock` it
    /// takes: in Python's server, the thread serving the connection).
    caller: u64,
    kinds: HashMap<u64, Kind>,
    /// How the current call's result goes back: `#RETURN`, or `#PROXY`
    /// for a new object's `(exposed, token)`.
    tag: &'static str,
}

/// A method call on one object: its name and the arguments the Python
/// client sent, as each kind's dispatcher (`Conn::dict`, ...) takes them.
struct MethodCall<'a> {
    name: &'a str,
    args: Vec<Py>,
    kwds: Vec<(Py, Py)>,
}

impl Conn<'_> {
    /// Runs `op` on object `id` through the server's call path, cancelled
    /// when the Python peer goes (or talks out of turn), as the server's
    /// own connections are; its errors as Python's.
    fn obj<O: Op>(&self, ch: &Channel, id: u64, op: O) -> R<Answer> {
        let gone = || ch.peer_gone_or_talking();
        let cx = Cx::new(self.caller, self.session, &gone, self.server);
        let what = std::any::type_name::<O>();
        self.server
            .call_typed(self.session, id, &cx, what, |o, cx| op.run(o, cx))
            .map_err(from_error)
    }

    /// Runs `op` on the server itself for this connection's session.
    fn control(&self, op: ControlOp<'_>) -> R<Vec<u8>> {
        self.server
            .control(self.session, op)
            .map_err(|e| PyErr::Traceback(e.to_string()))
    }

    fn kind(&mut self, id: u64) -> R<Kind> {
        if let Some(k) = self.kinds.get(&id) {
            return Ok(*k);
        }
        let typeid = self
            .server
            .typeid(id)
            .ok_or_else(|| PyErr::Traceback(format!("KeyError: no object with ident '{id:x}'")))?;
        let k = Kind::of(&typeid);
        self.kinds.insert(id, k);
        Ok(k)
    }

    fn typecode(&self, id: u64) -> Option<char> {
        self.server.python.typecodes.lock().get(&id).copied()
    }

    /// Runs `f` on the items of list `id`, under its lock.
    fn edit<T>(&self, ch: &Channel, id: u64, f: impl FnOnce(&mut Vec<Item>) -> R<T>) -> R<T> {
        let mut out = None;
        self.obj(ch, id, ListEdit(|v: &mut Vec<Item>| out = Some(f(v))))?;
        out.unwrap_or_else(|| Err(PyErr::Traceback("the list edit did not run".into())))
    }

    /// A call whose result is a `bool`, as Python's.
    fn bool_call<O: Op>(&self, ch: &Channel, id: u64, op: O) -> R<Vec<u8>> {
        Ok(bool_frag(flag(self.obj(ch, id, op)?)?))
    }

    /// A call whose result is `None`, as Python's.
    fn none_call<O: Op>(&self, ch: &Channel, id: u64, op: O) -> R<Vec<u8>> {
        self.obj(ch, id, op)?;
        Ok(none())
    }

    /// A call whose result is an integer, as Python's.
    fn int_call<O: Op>(&self, ch: &Channel, id: u64, op: O) -> R<Vec<u8>> {
        Ok(int_frag(count(self.obj(ch, id, op)?)?))
    }

    /// The length of a dict, list or array.
    fn len(&mut self, ch: &Channel, id: u64) -> R<u64> {
        count(match self.kind(id)? {
            Kind::Dict => self.obj(ch, id, DictOp::Len)?,
            Kind::List => self.obj(ch, id, ListOp::Len)?,
            Kind::Array => self.obj(ch, id, ArrayOp::Len)?,
            k => return Err(PyErr::Traceback(format!("a {k:?} has no length"))),
        })
    }

    /// All the items of a list or an array.
    fn all_items(&mut self, ch: &Channel, id: u64) -> R<Vec<Vec<u8>>> {
        many(match self.kind(id)? {
            Kind::List => self.obj(ch, id, ListOp::ToVec)?,
            Kind::Array => self.obj(ch, id, ArrayOp::ToVec)?,
            k => return Err(PyErr::Traceback(format!("a {k:?} is no sequence"))),
        })
    }

    /// The item at `at` of a list or an array.
    fn get_at(&mut self, ch: &Channel, id: u64, at: u64) -> R<Vec<u8>> {
        one(match self.kind(id)? {
            Kind::List => self.obj(ch, id, ListOp::Get(at))?,
            Kind::Array => self.obj(ch, id, ArrayOp::Get(at))?,
            k => return Err(PyErr::Traceback(format!("a {k:?} is no sequence"))),
        })
    }

    /// Replaces the item at `at` of a list or an array.
    fn set_at(&mut self, ch: &Channel, id: u64, at: u64, v: &[u8]) -> R<()> {
        match self.kind(id)? {
            Kind::List => self.obj(ch, id, ListOp::Set(at, Bytes(v)))?,
            Kind::Array => self.obj(ch, id, ArrayOp::Set(at, Bytes(v)))?,
            k => return Err(PyErr::Traceback(format!("a {k:?} is no sequence"))),
        };
        Ok(())
    }

    // ------------------------------------------------------------ server functions

    fn function(&mut self, name: &str, args: Vec<Py>, kwds: Vec<(Py, Py)>) -> R<Py> {
        match name {
            "dummy" => Ok(Py::None),
            "create" => self.create(args, kwds),
            "incref" => {
                let [id] = take("incref", args, kwds)?;
                let id = ident(&id)?;
                self.control(ControlOp::Incref(id))?;
                Ok(Py::None)
            }
            "decref" => {
                let [id] = take("decref", args, kwds)?;
                let id = ident(&id)?;
                self.control(ControlOp::Decref(id))?;
                if self.server.typeid(id).is_none() {
                    self.server.python.typecodes.lock().remove(&id);
                }
                Ok(Py::None)
            }
            "number_of_objects" => {
                let n: u64 = decoded(&self.control(ControlOp::Count)?)?;
                Ok(Py::Int(n as i64))
            }
            "debug_info" => {
                let n: u64 = decoded(&self.control(ControlOp::Count)?)?;
                Ok(Py::Str(format!("multiproc manager server: {n} objects")))
            }
            "shutdown" => {
                self.control(ControlOp::Shutdown)?;
                Ok(Py::None)
            }
            other => Err(PyErr::Traceback(format!(
                "AssertionError: {other:?} unrecognized (a multiproc server serves create, \
                 incref, decref, accept_connection, dummy, number_of_objects, debug_info, shutdown)"
            ))),
        }
    }

    fn create(&mut self, mut args: Vec<Py>, kwds: Vec<(Py, Py)>) -> R<Py> {
        if args.is_empty() {
            return Err(PyErr::Traceback("create() needs a typeid".into()));
        }
        let Py::Str(typeid) = args.remove(0) else {
            return Err(PyErr::Traceback("create(): the typeid is not a str".into()));
        };
        // A name a Rust program exposed (it wins over Python's typeids):
        // the caller takes a reference.
        if args.is_empty()
            && kwds.is_empty()
            && let Ok(found) = self.control(ControlOp::Lookup(&typeid))
        {
            let (id, ours): (u64, String) = decoded(&found)?;
            return Ok(created(id, Kind::of(&ours).exposed_by_name()));
        }
        if typeid == "Pool" {
            return Err(PyErr::Exc(
                "builtins",
                "NotImplementedError",
                vec![Py::Str(
                    "a multiproc manager does not serve Pool: it cannot run the client's \
                     Python functions (use multiprocessing.Pool in the client)"
                        .into(),
                )],
            ));
        }
        let Some(ours) = python_type(&typeid) else {
            return Err(PyErr::Traceback(format!(
                "KeyError: {typeid:?} is neither a type this server makes nor a name \
                 exposed with Manager::expose"
            )));
        };
        let mut typecode = None;
        let init = self.init(&typeid, args, kwds, &mut typecode)?;
        let id: u64 = decoded(&self.control(ControlOp::Create {
            typeid: ours,
            init: Bytes(&init),
        })?)?;
        if let Some(tc) = typecode {
            self.server.python.typecodes.lock().insert(id, tc);
        }
        Ok(created(id, Kind::of(ours).exposed().iter().copied()))
    }

    /// The server's initial value for a Python `create(typeid, *args, **kwds)`.
    fn init(
        &self,
        typeid: &str,
        args: Vec<Py>,
        kwds: Vec<(Py, Py)>,
        typecode: &mut Option<char>,
    ) -> R<Vec<u8>> {
        let bad = |e: PyErr| match e {
            PyErr::Exc(_, name, args) => PyErr::Traceback(format!(
                "{name}: {}",
                args.first().map(|a| a.repr()).unwrap_or_default()
            )),
            t => t,
        };
        let init = (|| -> R<Vec<u8>> {
            match typeid {
                "dict" => {
                    let f = dict_args("dict", args, kwds)?;
                    let b: Vec<(Bytes<'_>, Bytes<'_>)> =
                        f.iter().map(|(k, v)| (Bytes(k), Bytes(v))).collect();
                    enc(&b).map_err(tb)
                }
                "list" => {
                    let [v] = bind("list", args, kwds, ["iterable"], 0)?;
                    let items = v.map(items_of).transpose()?.unwrap_or_default();
                    items_init(&items)
                }
                "Namespace" => {
                    if !args.is_empty() {
                        return Err(type_error("Namespace() takes keyword arguments only"));
                    }
                    let f: Vec<(String, Vec<u8>)> = kwds
                        .into_iter()
                        .map(|(k, v)| match k {
                            Py::Str(k) => Ok((k, frag(&v))),
                            _ => Err(type_error("keywords must be strings")),
                        })
                        .collect::<R<_>>()?;
                    let b: Vec<(&str, Bytes<'_>)> =
                        f.iter().map(|(k, v)| (k.as_str(), Bytes(v))).collect();
                    enc(&b).map_err(tb)
                }
                "Queue" | "JoinableQueue" => {
                    let [m] = bind("Queue", args, kwds, ["maxsize"], 0)?;
                    let m = m.map(|m| int(&m, "maxsize")).transpose()?.unwrap_or(0);
                    enc(&(m.max(0) as u64)).map_err(tb)
                }
                "Lock" | "RLock" | "Event" => {
                    take::<0>(typeid, args, kwds)?;
                    Ok(Vec::new())
                }
                "Condition" => {
                    let [lock] = bind("Condition", args, kwds, ["lock"], 0)?;
                    if lock.is_some_and(|l| l != Py::None) {
                        return Err(type_error(
                            "Condition(lock): a manager Condition with a given lock is not served",
                        ));
                    }
                    Ok(Vec::new())
                }
                "Semaphore" | "BoundedSemaphore" => {
                    let [v] = bind(typeid, args, kwds, ["value"], 0)?;
                    let v = v.map(|v| int(&v, "value")).transpose()?.unwrap_or(1);
                    if v < 0 {
                        return Err(value_error("semaphore initial value must be >= 0"));
                    }
                    enc(&(v as u64, typeid == "BoundedSemaphore")).map_err(tb)
                }
                "Barrier" => {
                    let [p, action, timeout] =
                        bind("Barrier", args, kwds, ["parties", "action", "timeout"], 1)?;
                    if action.is_some_and(|a| a != Py::None)
                        || timeout.is_some_and(|t| t != Py::None)
                    {
                        return Err(type_error(
                            "Barrier(action=..., timeout=...) is not served: only parties",
                        ));
                    }
                    let p = int(p.as_ref().expect("required"), "parties")?;
                    if p <= 0 {
                        return Err(value_error("parties must be > 0"));
                    }
                    enc(&(p as u64)).map_err(tb)
                }
                "Value" => {
                    let [_tc, v, _lock] =
                        bind("Value", args, kwds, ["typecode", "value", "lock"], 2)?;
                    Ok(frag(v.as_ref().expect("required")))
                }
                "Array" => {
                    let [tc, seq, _lock] =
                        bind("Array", args, kwds, ["typecode", "sequence", "lock"], 2)?;
                    let tc = match tc.expect("required") {
                        Py::Str(s) if s.chars().count() == 1 => s.chars().next().expect("1"),
                        _ => {
                            return Err(type_error(
                                "array() argument 1 must be a unicode character",
                            ));
                        }
                    };
                    array_item(Some(tc), Py::Int(0)).or_else(|e| {
                        if matches!(tc, 'u' | 'w') {
                            Ok(Py::None)
                        } else {
                            Err(e)
                        }
                    })?;
                    *typecode = Some(tc);
                    let items = items_of(seq.expect("required"))?;
                    let items = items
                        .into_iter()
                        .map(|v| array_item(Some(tc), v))
                        .collect::<R<Vec<_>>>()?;
                    items_init(&items)
                }
                _ => Err(PyErr::Traceback(format!("no type {typeid:?}"))),
            }
        })();
        init.map_err(bad)
    }

    // ------------------------------------------------------------ methods

    fn method(
        &mut self,
        ch: &Channel,
        id: u64,
        name: &str,
        args: Vec<Py>,
        kwds: Vec<(Py, Py)>,
    ) -> R<Vec<u8>> {
        let kind = self.kind(id)?;
        if matches!(name, "__str__" | "__repr__") {
            return Ok(frag(&Py::Str(self.repr(ch, id, kind)?)));
        }
        if name == "#GETVALUE" {
            return match kind {
                Kind::Dict => {
                    let call = MethodCall {
                        name: "copy",
                        args,
                        kwds,
                    };
                    self.dict(ch, id, call)
                }
                Kind::List => self.all_items(ch, id).and_then(list_frag),
                _ => Err(PyErr::Traceback(
                    "#GETVALUE of this type is not served".into(),
                )),
            };
        }
        if !kind.exposed().contains(&name) && !matches!((kind, name), (Kind::Lock, "locked")) {
            // As Python's server: a traceback (`RemoteError`), not the
            // exception itself.
            return Err(PyErr::Traceback(format!(
                "AttributeError: method {name:?} of {kind:?} object is not in exposed"
            )));
        }
        let call = MethodCall { name, args, kwds };
        match kind {
            Kind::Dict => self.dict(ch, id, call),
            Kind::List => self.list(ch, id, call),
            Kind::Namespace => self.namespace(ch, id, call),
            Kind::Queue => self.queue(ch, id, call),
            Kind::Lock | Kind::RLock | Kind::Semaphore | Kind::Condition => {
                self.lock(ch, id, kind, call)
            }
            Kind::Event => self.event(ch, id, call),
            Kind::Barrier => self.barrier(ch, id, call),
            Kind::Value => {
                let MethodCall { name, args, kwds } = call;
                match name {
                    "get" => {
                        take::<0>(name, args, kwds)?;
                        one(self.obj(ch, id, ValueOp::Get)?)
                    }
                    _ => {
                        let [v] = take(name, args, kwds)?;
                        self.none_call(ch, id, ValueOp::Set(Bytes(&frag(&v))))
                    }
                }
            }
            Kind::Array => self.array(ch, id, call),
            Kind::Iterator => self.iterator(ch, id, call),
            Kind::Other => unreachable!("exposes nothing"),
        }
    }

    fn repr(&mut self, ch: &Channel, id: u64, kind: Kind) -> R<String> {
        Ok(match kind {
            Kind::Dict => Py::Dict(pair_values(pairs(self.obj(ch, id, DictOp::Items)?)?)?).repr(),
            Kind::List => Py::List(list_values(self.all_items(ch, id)?)?).repr(),
            Kind::Namespace => {
                let names = match self.obj(ch, id, NamespaceOp::Names)? {
                    Answer::Names(n) => n,
                    a => return Err(unexpected(&a)),
                };
                let mut parts = Vec::new();
                for n in names.iter().filter(|n| !n.starts_with('_')) {
                    if let Ok(b) = self.obj(ch, id, NamespaceOp::Get(n)).and_then(one) {
                        parts.push(format!("{n}={}", value_of(&b)?.repr()));
                    }
                }
                format!("Namespace({})", parts.join(", "))
            }
            Kind::Array => {
                let v = list_values(self.all_items(ch, id)?)?;
                match self.typecode(id) {
                    Some(tc) => format!("array('{tc}', {})", Py::List(v).repr()),
                    None => Py::List(v).repr(),
                }
            }
            other => format!("<{other:?} object served by multiproc>"),
        })
    }

    fn dict(&mut self, ch: &Channel, id: u64, call: MethodCall<'_>) -> R<Vec<u8>> {
        let MethodCall { name, args, kwds } = call;
        match name {
            "__getitem__" => {
                let [k] = take(name, args, kwds)?;
                match maybe(self.obj(ch, id, DictOp::Get(Bytes(&frag(&k))))?)? {
                    Some(v) => Ok(v),
                    None => Err(key_error(k)),
                }
            }
            "get" => {
                let [k, d] = bind(name, args, kwds, ["key", "default"], 1)?;
                let k = k.expect("required");
                match maybe(self.obj(ch, id, DictOp::Get(Bytes(&frag(&k))))?)? {
                    Some(v) => Ok(v),
                    None => Ok(frag(&d.unwrap_or(Py::None))),
                }
            }
            "__setitem__" => {
                let [k, v] = take(name, args, kwds)?;
                let (k, v) = (frag(&k), frag(&v));
                self.none_call(ch, id, DictOp::Insert(Bytes(&k), Bytes(&v)))
            }
            "__delitem__" | "pop" => {
                let [k, d] = bind(name, args, kwds, ["key", "default"], 1)?;
                let k = k.expect("required");
                let r = self.obj(ch, id, DictOp::Remove(Bytes(&frag(&k))))?;
                match (maybe(r)?, d) {
                    (Some(_), _) if name == "__delitem__" => Ok(none()),
                    (Some(v), _) => Ok(v),
                    (None, Some(d)) if name == "pop" => Ok(frag(&d)),
                    _ => Err(key_error(k)),
                }
            }
            "popitem" => {
                take::<0>(name, args, kwds)?;
                // The last key, then take it out; another client may take
                // it first: try again.
                for _ in 0..1000 {
                    let keys = many(self.obj(ch, id, DictOp::Keys)?)?;
                    let Some(k) = keys.last() else {
                        return Err(exc(
                            "builtins",
                            "KeyError",
                            "popitem(): dictionary is empty",
                        ));
                    };
                    let kf = item(k.clone())?;
                    if let Some(v) = maybe(self.obj(ch, id, DictOp::Remove(Bytes(&kf)))?)? {
                        let mut out = kf;
                        out.extend_from_slice(&v);
                        out.push(0x86);
                        return Ok(out);
                    }
                }
                Err(PyErr::Traceback("popitem(): the dict kept changing".into()))
            }
            "__contains__" => {
                let [k] = take(name, args, kwds)?;
                self.bool_call(ch, id, DictOp::Contains(Bytes(&frag(&k))))
            }
            "__len__" => {
                take::<0>(name, args, kwds)?;
                Ok(int_frag(self.len(ch, id)?))
            }
            "keys" | "values" => {
                take::<0>(name, args, kwds)?;
                let op = if name == "keys" {
                    DictOp::Keys
                } else {
                    DictOp::Values
                };
                list_frag(many(self.obj(ch, id, op)?)?)
            }
            "items" => {
                take::<0>(name, args, kwds)?;
                let v = pair_values(pairs(self.obj(ch, id, DictOp::Items)?)?)?;
                let out = v.into_iter().map(|(k, v)| Py::Tuple(vec![k, v])).collect();
                Ok(frag(&Py::List(out)))
            }
            "copy" => {
                take::<0>(name, args, kwds)?;
                let p = pairs(self.obj(ch, id, DictOp::Items)?)?;
                let mut out = vec![b'}'];
                if !p.is_empty() {
                    out.push(b'(');
                    for (k, v) in p {
                        out.extend_from_slice(&item(k)?);
                        out.extend_from_slice(&item(v)?);
                    }
                    out.push(b'u');
                }
                Ok(out)
            }
            "setdefault" => {
                let [k, d] = bind(name, args, kwds, ["key", "default"], 1)?;
                let (k, d) = (frag(&k.expect("required")), frag(&d.unwrap_or(Py::None)));
                one(self.obj(ch, id, DictOp::SetDefault(Bytes(&k), Bytes(&d)))?)
            }
            "update" => {
                let f = dict_args("update", args, kwds)?;
                let b: Vec<(Bytes<'_>, Bytes<'_>)> =
                    f.iter().map(|(k, v)| (Bytes(k), Bytes(v))).collect();
                self.none_call(ch, id, DictOp::Update(b))
            }
            "clear" => {
                take::<0>(name, args, kwds)?;
                self.none_call(ch, id, DictOp::Clear)
            }
            "__iter__" => {
                // As Python's server (`DictProxy._method_to_typeid_`): a
                // new `Iterator` object, here the dict's own cursor, which
                // fails as Python's iterator does when keys come or go.
                take::<0>(name, args, kwds)?;
                let it = count(self.obj(ch, id, DictOp::Iter(IterKind::Keys))?)?;
                self.tag = "#PROXY";
                Ok(proxy_frag(it, "Iterator", Kind::Iterator))
            }
            _ => Err(not_served(name)),
        }
    }

    fn list(&mut self, ch: &Channel, id: u64, call: MethodCall<'_>) -> R<Vec<u8>> {
        let MethodCall { name, args, kwds } = call;
        match name {
            "__len__" => {
                take::<0>(name, args, kwds)?;
                Ok(int_frag(self.len(ch, id)?))
            }
            "__getitem__" => {
                let [i] = take(name, args, kwds)?;
                self.get_index(ch, id, i, "list", None)
            }
            "__setitem__" => match take(name, args, kwds)? {
                [Py::Slice(s), v] => self.set_slice(ch, id, *s, v),
                [i, v] => self.set_index(ch, id, i, v, "list"),
            },
            "__delitem__" => {
                let [i] = take(name, args, kwds)?;
                if let Py::Slice(s) = i {
                    return self.del_slice(ch, id, *s);
                }
                let i = int(&i, "list indices")?;
                let at = index(i, self.len(ch, id)?, "list assignment")?;
                self.none_call(ch, id, ListOp::Pop(Some(at)))
            }
            "append" => {
                let [v] = take(name, args, kwds)?;
                self.none_call(ch, id, ListOp::Append(Bytes(&frag(&v))))
            }
            "extend" => {
                let [v] = take(name, args, kwds)?;
                let f: Vec<Vec<u8>> = items_of(v)?.iter().map(frag).collect();
                self.none_call(ch, id, ListOp::Extend(f.iter().map(|x| Bytes(x)).collect()))
            }
            "insert" => {
                let [i, v] = take(name, args, kwds)?;
                let mut i = int(&i, "index")?;
                if i < 0 {
                    i = (i + self.len(ch, id)? as i64).max(0);
                }
                let v = frag(&v);
                self.none_call(ch, id, ListOp::Insert(i as u64, Bytes(&v)))
            }
            "pop" => {
                let [i] = bind(name, args, kwds, ["index"], 0)?;
                let at = match i.map(|i| int(&i, "index")).transpose()? {
                    None | Some(-1) => None,
                    Some(i) => {
                        let len = self.len(ch, id)?;
                        if len == 0 {
                            return Err(index_error("pop from empty list"));
                        }
                        Some(index(i, len, "pop")?)
                    }
                };
                match self.obj(ch, id, ListOp::Pop(at)) {
                    Err(PyErr::Exc(_, "IndexError", _)) if at.is_none() => {
                        Err(index_error("pop from empty list"))
                    }
                    r => one(r?),
                }
            }
            "remove" | "index" | "count" | "__contains__" => {
                let [v] = take(name, args, kwds)?;
                let f = frag(&v);
                let x = Bytes(&f);
                let op = match name {
                    "remove" => ListOp::Remove(x),
                    "index" => ListOp::Index(x),
                    "count" => ListOp::Count(x),
                    _ => ListOp::Contains(x),
                };
                match self.obj(ch, id, op) {
                    Ok(_) if name == "remove" => Ok(none()),
                    Ok(a) if name == "__contains__" => Ok(bool_frag(flag(a)?)),
                    Ok(a) => Ok(int_frag(count(a)?)),
                    Err(PyErr::Exc(_, "ValueError", _)) if name == "index" => Err(value_error(
                        format!("{} is not in list", truncate(v.repr())),
                    )),
                    Err(e) => Err(e),
                }
            }
            "reverse" => {
                take::<0>(name, args, kwds)?;
                self.none_call(ch, id, ListOp::Reverse)
            }
            "sort" => {
                if !args.is_empty() {
                    return Err(type_error("sort() takes no positional arguments"));
                }
                let [key, reverse] = bind(name, args, kwds, ["key", "reverse"], 0)?;
                if key.is_some_and(|k| k != Py::None) {
                    return Err(type_error(
                        "sort(key=...): a multiproc manager cannot call a key function \
                         (sort with key=None, or sort a copy in the client)",
                    ));
                }
                let reverse = reverse.is_some_and(|r| r.truthy());
                self.edit(ch, id, |v| sort_items(v, reverse))?;
                Ok(none())
            }
            "__reversed__" => {
                // Python's server pickles a `list_reverseiterator`, which
                // the client unpickles as an iterator of its own: here an
                // iterator over a reversed copy.
                take::<0>(name, args, kwds)?;
                let mut items = self.all_items(ch, id)?;
                items.reverse();
                let mut out = Vec::new();
                pickle::global(&mut out, "builtins", "iter");
                out.extend_from_slice(&list_frag(items)?);
                out.extend_from_slice(&[0x85, b'R']);
                Ok(out)
            }
            "__imul__" => {
                let [n] = take(name, args, kwds)?;
                let n = int(&n, "can't multiply sequence by non-int")?.max(0) as usize;
                self.edit(ch, id, |v| {
                    if v.len().saturating_mul(n) > pickle::MAX_NODES {
                        return Err(exc("builtins", "MemoryError", "the product is too long"));
                    }
                    if n == 0 || v.is_empty() {
                        v.clear();
                        return Ok(());
                    }
                    let once = v.len();
                    for _ in 1..n {
                        for k in 0..once {
                            let copy = Item::plain(v[k].bytes());
                            v.push(copy);
                        }
                    }
                    Ok(())
                })?;
                // Python's server answers the list itself, which the
                // client's `ListProxy.__imul__` drops.
                Ok(none())
            }
            "__add__" => {
                let [other] = take(name, args, kwds)?;
                let Py::List(other) = other else {
                    return Err(type_error(format!(
                        "can only concatenate list (not \"{}\") to list",
                        other.type_name()
                    )));
                };
                let mut v = list_values(self.all_items(ch, id)?)?;
                v.extend(other);
                Ok(frag(&Py::List(v)))
            }
            "__mul__" | "__rmul__" => {
                let [n] = take(name, args, kwds)?;
                let n = int(&n, "can't multiply sequence by non-int")?.max(0) as usize;
                let v = list_values(self.all_items(ch, id)?)?;
                if v.len().saturating_mul(n) > pickle::MAX_NODES {
                    return Err(exc("builtins", "MemoryError", "the product is too long"));
                }
                // Nothing to repeat: no loop of `n` rounds (up to 2**63).
                let n = if v.is_empty() { 0 } else { n };
                let mut out = Vec::with_capacity(v.len() * n);
                for _ in 0..n {
                    out.extend(v.iter().cloned());
                }
                Ok(frag(&Py::List(out)))
            }
            _ => Err(not_served(name)),
        }
    }

    /// `seq[i]` or `seq[a:b:c]` of a list or an array.
    fn get_index(
        &mut self,
        ch: &Channel,
        id: u64,
        i: Py,
        what: &str,
        typecode: Option<char>,
    ) -> R<Vec<u8>> {
        match i {
            Py::Slice(s) => {
                let v = list_values(self.all_items(ch, id)?)?;
                let picked: Vec<Py> = slice_positions(&s, v.len())?
                    .into_iter()
                    .map(|p| v[p].clone())
                    .collect();
                let list = frag(&Py::List(picked));
                Ok(match typecode {
                    None => list,
                    Some(tc) => {
                        let mut out = Vec::new();
                        pickle::global(&mut out, "array", "array");
                        out.extend_from_slice(&frag(&Py::Str(tc.to_string())));
                        out.extend_from_slice(&list);
                        out.extend_from_slice(&[0x86, b'R']);
                        out
                    }
                })
            }
            i @ (Py::Int(_) | Py::Bool(_)) => {
                let i = int(&i, "indices")?;
                let at = if i < 0 {
                    index(i, self.len(ch, id)?, what)?
                } else {
                    i as u64
                };
                match self.get_at(ch, id, at) {
                    Err(PyErr::Exc(_, "IndexError", _)) => {
                        Err(index_error(format!("{what} index out of range")))
                    }
                    r => r,
                }
            }
            other => Err(type_error(format!(
                "{what} indices must be integers or slices, not {}",
                other.type_name()
            ))),
        }
    }

    fn set_index(&mut self, ch: &Channel, id: u64, i: Py, v: Py, what: &str) -> R<Vec<u8>> {
        let i = match i {
            i @ (Py::Int(_) | Py::Bool(_)) => int(&i, "indices")?,
            // An array's slice takes an `array.array`, which a client
            // cannot send here (a pickled class): as Python's error.
            Py::Slice(_) => {
                return Err(type_error(format!(
                    "can only assign array (not \"{}\") to array slice",
                    v.type_name()
                )));
            }
            other => {
                return Err(type_error(format!(
                    "{what} indices must be integers or slices, not {}",
                    other.type_name()
                )));
            }
        };
        let at = if i < 0 {
            index(i, self.len(ch, id)?, what)?
        } else {
            i as u64
        };
        let v = frag(&v);
        match self.set_at(ch, id, at, &v) {
            Err(PyErr::Exc(_, "IndexError", _)) => {
                Err(index_error(format!("{what} assignment index out of range")))
            }
            r => r.map(|()| none()),
        }
    }

    /// `list[a:b:c] = iterable`, under the list's lock.
    fn set_slice(&mut self, ch: &Channel, id: u64, s: (Py, Py, Py), v: Py) -> R<Vec<u8>> {
        let items = match v {
            v @ (Py::List(_)
            | Py::Tuple(_)
            | Py::Set(_)
            | Py::FrozenSet(_)
            | Py::Dict(_)
            | Py::Str(_)
            | Py::Bytes(_)
            | Py::ByteArray(_)) => items_of(v)?,
            _ => return Err(type_error("can only assign an iterable")),
        };
        let f: Vec<Vec<u8>> = items.iter().map(frag).collect();
        self.edit(ch, id, |list| {
            let (start, stop, step) = slice_bounds(&s, list.len())?;
            if step == 1 {
                let (start, stop) = (start as usize, stop.max(start) as usize);
                list.splice(start..stop, f.iter().map(|b| Item::plain(b)));
                return Ok(());
            }
            let at = slice_positions(&s, list.len())?;
            if at.len() != f.len() {
                return Err(value_error(format!(
                    "attempt to assign sequence of size {} to extended slice of size {}",
                    f.len(),
                    at.len()
                )));
            }
            for (p, b) in at.into_iter().zip(&f) {
                list[p] = Item::plain(b);
            }
            Ok(())
        })?;
        Ok(none())
    }

    /// `del list[a:b:c]`, under the list's lock.
    fn del_slice(&mut self, ch: &Channel, id: u64, s: (Py, Py, Py)) -> R<Vec<u8>> {
        self.edit(ch, id, |list| {
            let mut gone = vec![false; list.len()];
            for p in slice_positions(&s, list.len())? {
                gone[p] = true;
            }
            let mut k = 0;
            list.retain(|_| {
                k += 1;
                !gone[k - 1]
            });
            Ok(())
        })?;
        Ok(none())
    }

    fn iterator(&mut self, ch: &Channel, id: u64, call: MethodCall<'_>) -> R<Vec<u8>> {
        let MethodCall { name, args, kwds } = call;
        match name {
            "__next__" => {
                take::<0>(name, args, kwds)?;
                // One key at a time: a change of the dict's size between
                // two calls is seen at the second, as in Python.
                match many(self.obj(ch, id, CursorOp::Next(1))?)?.pop() {
                    Some(k) => item(k),
                    None => Err(PyErr::Exc("builtins", "StopIteration", vec![])),
                }
            }
            // What Python's server says of a `dict_keyiterator`.
            _ => Err(PyErr::Traceback(format!(
                "AttributeError: 'dict_keyiterator' object has no attribute '{name}'"
            ))),
        }
    }

    fn array(&mut self, ch: &Channel, id: u64, call: MethodCall<'_>) -> R<Vec<u8>> {
        let MethodCall { name, args, kwds } = call;
        let tc = self.typecode(id);
        match name {
            "__len__" => {
                take::<0>(name, args, kwds)?;
                Ok(int_frag(self.len(ch, id)?))
            }
            "__getitem__" => {
                let [i] = take(name, args, kwds)?;
                self.get_index(ch, id, i, "array", tc)
            }
            _ => {
                let [i, v] = take(name, args, kwds)?;
                let v = array_item(tc, v)?;
                self.set_index(ch, id, i, v, "array")
            }
        }
    }

    fn namespace(&mut self, ch: &Channel, id: u64, call: MethodCall<'_>) -> R<Vec<u8>> {
        let MethodCall { name, args, kwds } = call;
        let no_attr = |n: &str| {
            exc(
                "builtins",
                "AttributeError",
                format!("'Namespace' object has no attribute '{n}'"),
            )
        };
        match name {
            "__getattribute__" => {
                let [Py::Str(n)] = take(name, args, kwds)? else {
                    return Err(type_error("attribute name must be string"));
                };
                match self.obj(ch, id, NamespaceOp::Get(&n)) {
                    Err(PyErr::Exc(_, "KeyError", _)) => Err(no_attr(&n)),
                    r => one(r?),
                }
            }
            "__setattr__" => {
                let [Py::Str(n), v] = take(name, args, kwds)? else {
                    return Err(type_error("attribute name must be string"));
                };
                let v = frag(&v);
                self.none_call(ch, id, NamespaceOp::Set(&n, Bytes(&v)))
            }
            _ => {
                let [Py::Str(n)] = take(name, args, kwds)? else {
                    return Err(type_error("attribute name must be string"));
                };
                let removed = flag(self.obj(ch, id, NamespaceOp::Remove(&n))?)?;
                if removed {
                    Ok(none())
                } else {
                    Err(no_attr(&n))
                }
            }
        }
    }

    fn queue(&mut self, ch: &Channel, id: u64, call: MethodCall<'_>) -> R<Vec<u8>> {
        let MethodCall { name, args, kwds } = call;
        let checked = |block: bool, t: Option<Py>| -> R<Option<Duration>> {
            if block
                && let Some(Py::Int(i)) = t
                && i < 0
            {
                return Err(value_error("'timeout' must be a non-negative number"));
            }
            if block
                && let Some(Py::Float(f)) = t
                && f < 0.0
            {
                return Err(value_error("'timeout' must be a non-negative number"));
            }
            timeout_of(t.as_ref())
        };
        match name {
            "put" | "put_nowait" => {
                let (v, block, t) = if name == "put" {
                    let [v, b, t] = bind(name, args, kwds, ["item", "block", "timeout"], 1)?;
                    (v.expect("required"), b.is_none_or(|b| b.truthy()), t)
                } else {
                    let [v] = take(name, args, kwds)?;
                    (v, false, None)
                };
                let timeout = checked(block, t)?;
                let v = frag(&v);
                self.none_call(
                    ch,
                    id,
                    QueueOp::Put {
                        block,
                        timeout,
                        item: Bytes(&v),
                    },
                )
            }
            "get" | "get_nowait" => {
                let (block, t) = if name == "get" {
                    let [b, t] = bind(name, args, kwds, ["block", "timeout"], 0)?;
                    (b.is_none_or(|b| b.truthy()), t)
                } else {
                    take::<0>(name, args, kwds)?;
                    (false, None)
                };
                let timeout = checked(block, t)?;
                one(self.obj(ch, id, QueueOp::Get { block, timeout })?)
            }
            "qsize" => {
                take::<0>(name, args, kwds)?;
                self.int_call(ch, id, QueueOp::Qsize)
            }
            "empty" | "full" => {
                take::<0>(name, args, kwds)?;
                let op = if name == "empty" {
                    QueueOp::Empty
                } else {
                    QueueOp::Full
                };
                self.bool_call(ch, id, op)
            }
            "task_done" => {
                take::<0>(name, args, kwds)?;
                self.none_call(ch, id, QueueOp::TaskDone)
            }
            "join" => {
                take::<0>(name, args, kwds)?;
                self.none_call(ch, id, QueueOp::Join(None))
            }
            _ => Err(not_served(name)),
        }
    }

    fn lock(&mut self, ch: &Channel, id: u64, kind: Kind, call: MethodCall<'_>) -> R<Vec<u8>> {
        let MethodCall { name, args, kwds } = call;
        let unheld = |what: &'static str| {
            move |e: PyErr| match e {
                PyErr::Exc(_, "RuntimeError", _) => runtime_error(what.to_string()),
                e => e,
            }
        };
        match name {
            "acquire" => {
                let [b, t] = bind(name, args, kwds, ["blocking", "timeout"], 0)?;
                let block = b.is_none_or(|b| b.truthy());
                // threading.Lock: -1 is "no timeout"; a timeout with a
                // non-blocking call is an error.
                let t = match t {
                    Some(Py::Int(-1)) if kind != Kind::Semaphore => None,
                    Some(Py::Float(f)) if f == -1.0 && kind != Kind::Semaphore => None,
                    t => t,
                };
                if t.as_ref().is_some_and(|t| *t != Py::None) {
                    if !block {
                        return Err(value_error(
                            "can't specify a timeout for a non-blocking call",
                        ));
                    }
                    let negative = match &t {
                        Some(Py::Int(i)) => *i < 0,
                        Some(Py::Float(f)) => *f < 0.0,
                        _ => false,
                    };
                    if negative && kind != Kind::Semaphore {
                        return Err(value_error("timeout value must be a non-negative number"));
                    }
                }
                let timeout = timeout_of(t.as_ref())?;
                self.bool_call(ch, id, BlockingOp::Acquire { block, timeout })
            }
            "release" if kind == Kind::Semaphore => {
                let [n] = bind(name, args, kwds, ["n"], 0)?;
                let n = n.map(|n| int(&n, "n")).transpose()?.unwrap_or(1);
                if n < 1 {
                    return Err(value_error("n must be one or more"));
                }
                self.none_call(ch, id, BlockingOp::Release(n as u64))
            }
            "release" => {
                take::<0>(name, args, kwds)?;
                let msg = if kind == Kind::Lock {
                    "release unlocked lock"
                } else {
                    "cannot release un-acquired lock"
                };
                self.obj(ch, id, BlockingOp::Release(1))
                    .map_err(unheld(msg))?;
                Ok(none())
            }
            "locked" => {
                take::<0>(name, args, kwds)?;
                let free = count(self.obj(ch, id, BlockingOp::Available)?)?;
                Ok(bool_frag(free == 0))
            }
            "wait" => {
                let timeout = timeout_arg(name, args, kwds)?;
                let a = self
                    .obj(ch, id, ConditionOp::Wait(timeout))
                    .map_err(unheld("cannot wait on un-acquired lock"))?;
                Ok(bool_frag(flag(a)?))
            }
            "notify" => {
                let [n] = bind(name, args, kwds, ["n"], 0)?;
                let n = n.map(|n| int(&n, "n")).transpose()?.unwrap_or(1).max(0);
                self.obj(ch, id, ConditionOp::Notify(n as u64))
                    .map_err(unheld("cannot notify on un-acquired lock"))?;
                Ok(none())
            }
            "notify_all" => {
                take::<0>(name, args, kwds)?;
                self.obj(ch, id, ConditionOp::NotifyAll)
                    .map_err(unheld("cannot notify on un-acquired lock"))?;
                Ok(none())
            }
            _ => Err(not_served(name)),
        }
    }

    fn event(&mut self, ch: &Channel, id: u64, call: MethodCall<'_>) -> R<Vec<u8>> {
        let MethodCall { name, args, kwds } = call;
        match name {
            "wait" => {
                let timeout = timeout_arg(name, args, kwds)?;
                self.bool_call(ch, id, EventOp::Wait(timeout))
            }
            "is_set" => {
                take::<0>(name, args, kwds)?;
                self.bool_call(ch, id, EventOp::IsSet)
            }
            _ => {
                take::<0>(name, args, kwds)?;
                let op = if name == "set" {
                    EventOp::Set
                } else {
                    EventOp::Clear
                };
                self.none_call(ch, id, op)
            }
        }
    }

    fn barrier(&mut self, ch: &Channel, id: u64, call: MethodCall<'_>) -> R<Vec<u8>> {
        let MethodCall { name, args, kwds } = call;
        match name {
            "wait" => {
                let timeout = timeout_arg(name, args, kwds)?;
                self.int_call(ch, id, BarrierOp::Wait(timeout))
            }
            "__getattribute__" => {
                let [Py::Str(n)] = take(name, args, kwds)? else {
                    return Err(type_error("attribute name must be string"));
                };
                match n.as_str() {
                    "parties" => self.int_call(ch, id, BarrierOp::Parties),
                    "n_waiting" => self.int_call(ch, id, BarrierOp::NWaiting),
                    "broken" => self.bool_call(ch, id, BarrierOp::Broken),
                    _ => Err(exc(
                        "builtins",
                        "AttributeError",
                        format!("'Barrier' object has no attribute '{n}'"),
                    )),
                }
            }
            _ => {
                take::<0>(name, args, kwds)?;
                let op = if name == "abort" {
                    BarrierOp::Abort
                } else {
                    BarrierOp::Reset
                };
                self.none_call(ch, id, op)
            }
        }
    }
}

/// Sorts stored items by their values with Python's `<` (stable; `reverse`
/// keeps equal items in their order, as Python's does). A failed comparison
/// leaves the list as it was.
fn sort_items(v: &mut Vec<Item>, reverse: bool) -> R<()> {
    let values = v
        .iter()
        .map(|i| value_of(i.bytes()))
        .collect::<R<Vec<Py>>>()?;
    // One stable merge sort for the crate (shared with `ListProxy::sort`).
    let lt = |a: &Py, b: &Py| -> R<std::cmp::Ordering> {
        Ok(if less(a, b)? {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        })
    };
    let order = sort_order(values.len(), |a, b| {
        if reverse {
            lt(&values[b], &values[a])
        } else {
            lt(&values[a], &values[b])
        }
    })?;
    apply_order(v, &order);
    Ok(())
}

/// A number, as Python compares them.
enum Num<'a> {
    Int(i64),
    /// Outside `i64`: little-endian two's complement.
    Big(&'a [u8]),
    Float(f64),
}

fn num(v: &Py) -> Option<Num<'_>> {
    Some(match v {
        Py::Bool(b) => Num::Int((*b).into()),
        Py::Int(i) => Num::Int(*i),
        Py::BigInt(b) => Num::Big(b),
        Py::Float(f) => Num::Float(*f),
        _ => return None,
    })
}

/// A big integer's value as a float (rounded; infinite past `f64`).
fn big_f64(b: &[u8]) -> f64 {
    let negative = b.last().is_some_and(|x| x & 0x80 != 0);
    let mut f = 0.0;
    for x in b.iter().rev() {
        let x = if negative { !x } else { *x };
        f = f * 256.0 + f64::from(x);
    }
    if negative { -(f + 1.0) } else { f }
}

/// Two numbers' order (`None`: unordered, a NaN).
fn num_cmp(a: &Num<'_>, b: &Num<'_>) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    let negative = |b: &[u8]| b.last().is_some_and(|x| x & 0x80 != 0);
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(y),
        // Beyond `i64` either way: the big one's sign decides.
        (Num::Big(x), Num::Int(_)) => Some(if negative(x) {
            Ordering::Less
        } else {
            Ordering::Greater
        }),
        (Num::Int(_), Num::Big(_)) => num_cmp(b, a).map(Ordering::reverse),
        (Num::Big(x), Num::Big(y)) => Some(match (negative(x), negative(y)) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            // Same sign, minimal encodings: the longer is further from
            // zero; of the same length, the bytes from the top decide.
            (n, _) => {
                let by_len = x.len().cmp(&y.len());
                let by_len = if n { by_len.reverse() } else { by_len };
                by_len.then_with(|| x.iter().rev().cmp(y.iter().rev()))
            }
        }),
        (Num::Int(x), Num::Float(y)) => {
            // Rounding is monotonic, so a strict order of the rounded
            // integer is the exact one; equal means `y` is integral.
            let o = (*x as f64).partial_cmp(y)?;
            Some(if o == Ordering::Equal {
                i128::from(*x).cmp(&(*y as i128))
            } else {
                o
            })
        }
        (Num::Big(x), Num::Float(y)) => big_f64(x).partial_cmp(y),
        (Num::Float(_), _) => num_cmp(b, a).map(Ordering::reverse),
    }
}

/// Python's `a == b` for data values.
fn equal(a: &Py, b: &Py) -> bool {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return num_cmp(&x, &y) == Some(std::cmp::Ordering::Equal);
    }
    match (a, b) {
        (Py::List(x), Py::List(y)) | (Py::Tuple(x), Py::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y))
        }
        (Py::Bytes(x) | Py::ByteArray(x), Py::Bytes(y) | Py::ByteArray(y)) => x == y,
        _ => a == b,
    }
}

/// Python's `a < b` for data values; `TypeError` where Python raises it.
fn less(a: &Py, b: &Py) -> R<bool> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return Ok(num_cmp(&x, &y) == Some(std::cmp::Ordering::Less));
    }
    match (a, b) {
        (Py::Str(x), Py::Str(y)) => Ok(x < y),
        (Py::Bytes(x) | Py::ByteArray(x), Py::Bytes(y) | Py::ByteArray(y)) => Ok(x < y),
        (Py::List(x), Py::List(y)) | (Py::Tuple(x), Py::Tuple(y)) => {
            // The first items that differ decide, else the shorter.
            match x.iter().zip(y).find(|(x, y)| !equal(x, y)) {
                Some((x, y)) => less(x, y),
                None => Ok(x.len() < y.len()),
            }
        }
        // Proper subset.
        (Py::Set(x) | Py::FrozenSet(x), Py::Set(y) | Py::FrozenSet(y)) => {
            Ok(x.len() < y.len() && x.iter().all(|v| y.iter().any(|w| equal(v, w))))
        }
        _ => Err(type_error(format!(
            "'<' not supported between instances of '{}' and '{}'",
            a.type_name(),
            b.type_name()
        ))),
    }
}

fn tb(e: Error) -> PyErr {
    PyErr::Traceback(e.to_string())
}

fn not_served(name: &str) -> PyErr {
    exc(
        "builtins",
        "NotImplementedError",
        format!("{name} is not served by a multiproc manager"),
    )
}

/// A list's initial items (or `extend`'s argument), encoded for the server.
fn items_init(items: &[Py]) -> R<Vec<u8>> {
    let f: Vec<Vec<u8>> = items.iter().map(frag).collect();
    let b: Vec<Bytes<'_>> = f.iter().map(|x| Bytes(x)).collect();
    enc(&b).map_err(tb)
}

/// `create`'s answer: `(ident, exposed)`.
fn created<'a>(id: u64, exposed: impl Iterator<Item = &'a str>) -> Py {
    Py::Tuple(vec![ident_of(id), names(exposed)])
}

/// A tuple of method names.
fn names<'a>(exposed: impl Iterator<Item = &'a str>) -> Py {
    Py::Tuple(exposed.map(|s| Py::Str(s.to_string())).collect())
}

/// `#PROXY`'s value for a new object: `(exposed, Token(typeid, None,
/// ident))` (the client puts in the address it called).
fn proxy_frag(id: u64, typeid: &str, kind: Kind) -> Vec<u8> {
    let mut out = frag(&names(kind.exposed().iter().copied()));
    // `Token.__new__(Token)`, then `__setstate__((typeid, address, id))`.
    pickle::global(&mut out, "multiprocessing.managers", "Token");
    out.extend_from_slice(&[b')', 0x81]);
    pickle::encode_into(
        &Py::Tuple(vec![Py::Str(typeid.into()), Py::None, ident_of(id)]),
        &mut out,
    );
    out.extend_from_slice(&[b'b', 0x86]);
    out
}

/// Appends a whole frame: the length header and `(tag, value)` (`tag`:
/// `#RETURN` or `#PROXY`), or the error's.
fn reply(out: &mut Vec<u8>, tag: &str, result: R<Vec<u8>>) {
    out.clear();
    out.extend_from_slice(&[0; frame::SHORT]);
    out.extend_from_slice(&pickle::HEADER);
    match result {
        Ok(v) => {
            pickle::str_into(tag, out);
            out.extend_from_slice(&v);
        }
        Err(PyErr::Exc(module, name, args)) => {
            pickle::str_into("#ERROR", out);
            pickle::global(out, module, name);
            pickle::encode_into(&Py::Tuple(args), out);
            out.push(b'R');
        }
        Err(PyErr::Traceback(text)) => {
            pickle::str_into("#TRACEBACK", out);
            pickle::encode_into(&Py::Str(text), out);
        }
    }
    out.extend_from_slice(&[0x86, b'.']);
    let len = out.len() - frame::SHORT;
    if len > i32::MAX as usize {
        reply(
            out,
            tag,
            Err(PyErr::Traceback("the reply is too large".into())),
        );
        return;
    }
    out[..frame::SHORT].copy_from_slice(&(len as i32).to_be_bytes());
}

/// A request's `(ident, method, args, kwds)`.
type Call = (Py, String, Vec<Py>, Vec<(Py, Py)>);

/// A request: `(ident, method, args, kwds)`.
fn request(frame: &[u8]) -> R<Call> {
    let v = pickle::decode(frame).map_err(|e| PyErr::Traceback(e.to_string()))?;
    match v {
        Py::Tuple(t) if t.len() == 4 => {
            let mut t = t.into_iter();
            let (id, m, a, k) = (
                t.next().expect("4"),
                t.next().expect("4"),
                t.next().expect("4"),
                t.next().expect("4"),
            );
            let (Py::Str(m), Py::Tuple(a) | Py::List(a), Py::Dict(k)) = (m, a, k) else {
                return Err(PyErr::Traceback(
                    "a request must be (ident, str, tuple, dict)".into(),
                ));
            };
            Ok((id, m, a, k))
        }
        _ => Err(PyErr::Traceback(
            "a request must be a 4-tuple (ident, method, args, kwds)".into(),
        )),
    }
}

/// Runs a call; a panic in it (a bug) is the caller's traceback, and the
/// connection and the server go on.
fn guarded(f: impl FnOnce() -> R<Vec<u8>>) -> R<Vec<u8>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(PyErr::Traceback("the call panicked in the server".into())))
}

/// Serves a CPython client's connection whose first frame was `first`: one
/// server function, or (`accept_connection`) method calls until it closes.
pub(crate) fn serve(server: &Server, channel: &mut Channel, first: Vec<u8>) {
    let python = &server.python;
    let session = *python.session.get_or_init(|| server.join_session(None));
    let n = python
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut conn = Conn {
        server,
        session,
        caller: (1 << 63) | n,
        kinds: HashMap::new(),
        tag: "#RETURN",
    };
    let mut out = Vec::with_capacity(256);
    let (result, serve_more) = match request(&first) {
        Err(e) => (Err(e), false),
        Ok((_, name, args, kwds)) if name == "accept_connection" => {
            let _ = (args, kwds);
            (Ok(none()), true)
        }
        Ok((_, name, args, kwds)) => (
            guarded(|| conn.function(&name, args, kwds).map(|v| frag(&v))),
            false,
        ),
    };
    reply(&mut out, "#RETURN", result);
    if channel.send(&out).is_err() || !serve_more {
        return;
    }
    let stop = || server.stopping();
    loop {
        // CPython's clients never send a request before the last reply:
        // the next one is on its way. Try to read it for a while (each try
        // is one read, and the one that finds it takes the frame: no poll
        // in between), else sleep in the channel's read until it comes (a
        // poll, then a read), waking every slice to check `stop`.
        let spun = PY_SPIN_SITE.spin_within(PY_SPIN, true, Deadline::NEVER, || {
            match channel.recv(Duration::ZERO, None, &|| true) {
                Err(ReadEnd::Stopped) => None,
                r => Some(r),
            }
        });
        let range = match spun
            .unwrap_or_else(|| channel.recv(Duration::ZERO, Some(WAIT_SLICE), &stop))
        {
            Ok(r) => r,
            Err(ReadEnd::Closed | ReadEnd::Bad(_) | ReadEnd::Os(_) | ReadEnd::Stopped) => return,
        };
        let req = request(channel.bytes(range));
        // A pickle refused is answered with a traceback, as Python's
        // server does: the framing is intact, so the connection goes on.
        conn.tag = "#RETURN";
        let result = req.and_then(|(id, name, args, kwds)| {
            guarded(|| ident(&id).and_then(|id| conn.method(channel, id, &name, args, kwds)))
        });
        reply(&mut out, conn.tag, result);
        if channel.send(&out).is_err() {
            return;
        }
        if out.capacity() > 1 << 20 {
            out = Vec::with_capacity(256);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: Py, b: Py, c: Py) -> (Py, Py, Py) {
        (a, b, c)
    }

    #[test]
    fn numbers_compare_as_in_python() {
        use Py::{BigInt, Bool, Float, Int};
        let big = |v: i128| {
            let b = v.to_le_bytes();
            // Minimal two's complement, as the decoder makes it.
            let mut n = 16;
            while n > 1
                && ((b[n - 1] == 0 && b[n - 2] & 0x80 == 0)
                    || (b[n - 1] == 0xff && b[n - 2] & 0x80 != 0))
            {
                n -= 1;
            }
            BigInt(b[..n].to_vec())
        };
        let lt = |a: &Py, b: &Py| less(a, b).unwrap();
        assert!(lt(&Int(1), &Float(1.5)) && lt(&Float(0.5), &Bool(true)));
        assert!(!lt(&Int(1), &Float(1.0)) && !lt(&Float(1.0), &Int(1)));
        assert!(equal(&Int(1), &Float(1.0)) && equal(&Bool(true), &Int(1)));
        // 2**63 - 1 rounds up to 2**63 as a float: still below it.
        assert!(lt(&Int(i64::MAX), &Float(2f64.powi(63))));
        assert!(!lt(&Float(f64::NAN), &Int(0)) && !lt(&Int(0), &Float(f64::NAN)));
        let (a, b) = (big(1 << 70), big((1 << 70) + 1));
        assert!(lt(&a, &b) && !lt(&b, &a) && lt(&Int(i64::MAX), &a));
        let (c, d) = (big(-(1 << 70)), big(-(1 << 80)));
        assert!(lt(&d, &c) && lt(&c, &Int(i64::MIN)) && lt(&c, &a));
        assert!(lt(&big(-(1 << 70) - 5), &big(-(1 << 70) - 4)));
        assert!(lt(&Float(-1e300), &d) && lt(&a, &Float(1e300)));
        assert!(less(&Int(1), &Py::Str("a".into())).is_err());
        assert!(less(&Py::None, &Py::None).is_err());
    }

    #[test]
    fn slices_follow_python() {
        use Py::{Int, None as N};
        let at = |x: (Py, Py, Py)| slice_positions(&x, 5).unwrap();
        assert_eq!(at(s(Int(1), Int(3), N)), [1, 2]);
        assert_eq!(at(s(N, N, Int(-1))), [4, 3, 2, 1, 0]);
        assert_eq!(at(s(Int(-2), N, N)), [3, 4]);
        assert_eq!(at(s(N, N, Int(2))), [0, 2, 4]);
        assert_eq!(at(s(Int(5), Int(1), Int(-2))), [4, 2]);
        // Extreme steps and bounds: no overflow (it used to wrap or panic).
        assert_eq!(at(s(N, N, Int(i64::MAX))), [0]);
        assert_eq!(at(s(N, N, Int(i64::MIN))), [4]);
        assert_eq!(at(s(Int(i64::MIN), Int(i64::MAX), N)), [0, 1, 2, 3, 4]);
        assert_eq!(
            at(s(Int(i64::MAX), Int(i64::MIN), Int(-1))),
            [4, 3, 2, 1, 0]
        );
        assert!(slice_positions(&s(N, N, Int(0)), 5).is_err());
        assert!(slice_positions(&s(N, N, N), 0).unwrap().is_empty());
    }
}
