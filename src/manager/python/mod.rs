//! CPython's manager clients on a multiproc server.
//!
//! A plain Python script can use the objects of a multiproc manager with
//! nothing but the standard library:
//!
//! ```python
//! from multiprocessing.managers import SyncManager
//! m = SyncManager(address=("127.0.0.1", 50000), authkey=b"secret")
//! m.connect()
//! d = m.dict(); d["k"] = 1
//! ```
//!
//! # How
//!
//! * **Detection.** After the handshake, a connection whose first frame is
//!   a pickle (it starts with the `PROTO` opcode, `0x80`; a multiproc
//!   client's first frame is its `hello`, whose first byte is 0) is served
//!   by this module ([`serve`]), with the protocol of CPython's
//!   `multiprocessing.managers.Server`: pickled `(id, method, args, kwds)`
//!   requests, `('#RETURN', value)`, `('#ERROR', exception)` and
//!   `('#TRACEBACK', text)` replies; the server functions `create`,
//!   `incref`, `decref`, `accept_connection`, `dummy`, `number_of_objects`,
//!   `debug_info` and `shutdown`.
//! * **Objects.** Python's typeids map onto the server's own objects, and
//!   each Python method onto the typed operation a Rust proxy sends (a
//!   `DictOp`, `QueueOp`, ..., run through the server's one call path):
//!   the table is [`dispatch`](serve). A Python `dict` *is* the server's dict,
//!   so a Rust process that looks it up by name uses the same object. Names
//!   a Rust program gave with [`Manager::expose`](super::Manager::expose)
//!   are what `M.register('name'); m.name()` creates in Python.
//! * **Values.** Pickles are decoded into a data model ([`pickle`]: never
//!   running code) and stored in their canonical encoding, so equal keys
//!   match whoever sent them. A value a Rust client stored in its own
//!   encoding reaches a Python client as an error, not as garbage.
//! * **References.** CPython's clients count references on short-lived
//!   connections of their own (`incref` on one, `decref` on another), so
//!   they all belong to one session of the server that lasts as long as
//!   it does: as with Python's server, a Python client that dies without
//!   its `decref`s leaves its objects alive. Its locks, too, stay held.
//! * **Errors** reach Python as the exceptions Python's own server would
//!   send: `KeyError`, `IndexError`, `ValueError`, `queue.Empty`,
//!   `queue.Full`, `RuntimeError` (releasing a lock not held),
//!   `threading.BrokenBarrierError`, `AttributeError`, `TypeError`.
//!   The classes are named with `GLOBAL` in replies; the decoder never
//!   accepts one that is not plain data.
//! * **Authentication.** CPython 3.12 answers the server's `{sha256}`
//!   challenge; 3.11 and older only speak HMAC-MD5, which a server accepts
//!   when started with
//!   [`ManagerBuilder::legacy_auth`](super::ManagerBuilder::legacy_auth).
//!
//! * **Iterators.** A dict's `__iter__` answers `#PROXY` with an
//!   `Iterator` as Python's server does: the dict's own cursor (the one a
//!   Rust proxy's `iter` walks), which the client's `IteratorProxy` drains
//!   one key per `__next__` (`StopIteration` at the end, for good) and
//!   lets go with `decref`. Keys added or removed meanwhile make the next
//!   call raise `RuntimeError`, as Python's iterator does.
//!   A list iterates through `__getitem__` (Python's `ListProxy` has no
//!   `__iter__`); its `__reversed__` comes back as a local iterator over a
//!   copy, as with Python's server.
//! * **Lists** sort (`key=None` only: a key function would be code to run)
//!   and take slice assignment and deletion, each under the list's lock so
//!   that no other client's call lands in between. Items compare as in
//!   Python (numbers by value, `str`, `bytes`, tuples and lists element by
//!   element); others raise `TypeError` as Python does.
//!
//! Not served: `Pool` (a server cannot run the client's functions: a
//! `NotImplementedError`), proxies stored inside containers (a pickled
//! proxy names a class: refused), and arbitrary objects. Python's
//! `1 == 1.0 == True` as dict keys are three keys here (values compare by
//! encoding).

mod client;
pub(crate) mod pickle;
mod serve;
mod value;

pub use client::{
    PyDictProxy, PyEventProxy, PyListProxy, PyLockProxy, PyProxy, PyQueueProxy, PyValueProxy,
    PythonManager,
};
pub(crate) use serve::serve;

/// A Python client's state in one server: the session its references
/// belong to, and the connection counter that tells its threads apart.
#[derive(Default)]
pub(crate) struct State {
    session: std::sync::OnceLock<u64>,
    next_conn: std::sync::atomic::AtomicU64,
    /// The typecodes of the arrays Python clients made (`Array('d', ...)`),
    /// by object id: elements are checked against them, and a slice comes
    /// back as an `array.array`.
    typecodes: parking_lot::Mutex<std::collections::HashMap<u64, char>>,
}

/// Whether a connection's first frame comes from a CPython client.
pub(crate) fn is_python(first: &[u8]) -> bool {
    matches!(first, [0x80, 2..=5, ..])
}
