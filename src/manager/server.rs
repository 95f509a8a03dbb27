//! The server: accepts authenticated connections, one thread each, and
//! runs the calls they carry on the objects it holds.
//!
//! Objects live in a registry (`id -> object`), each behind its own lock
//! (held only while one of its methods runs), so calls on different objects
//! run in parallel and a slow one holds up nobody else. References are
//! counted per *session*: a client process's connections to one server
//! form a session, and when the last of them closes (the process dropped
//! its handles, exited or was killed) every reference it held is released.
//! An object is freed when no session refers to it any more.
//!
//! A connection's first request says hello (joins a session); requests are
//! then decoded once each: a [`ControlOp`] for the server itself, or a call
//! of an [`Object`] by id, which decodes the typed operation of its kind.
//! Another client protocol can reuse all of this: accept its connections
//! where [`run`] hands them to `serve_connection`, and run typed
//! operations on objects with [`Server::call_typed`] (the same call path:
//! sessions, held references, a panic as an error) with a [`Cx`] of its
//! own.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

use super::channel::{Channel, ReadEnd, SPIN};
use super::objects::{Constructor, Object};
use super::protocol::{
    ADOPT, Bytes, CONTROL, ControlOp, DEFAULT_MAX_FRAME, Fault, HOLDS, NO_REPLY, Reply, Request,
    dec_args, decode_request, enc, encode_body, encode_frame, remote,
};
use crate::connection::listener::{AcceptError, Address, Listener};
use crate::error::{Error, RemoteErrorKind, Result};
use crate::shm::mailbox::{Arrival, Mailbox, ON_SOCKET, SLOT, Slot};

/// How long a blocked call sleeps before it checks that its caller is
/// still there and the server still runs.
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// How often the accept loop looks at the stop flags.
const ACCEPT_SLICE: Duration = Duration::from_millis(50);

/// The context of one call: who calls, and whether it is still wanted.
pub(crate) struct Cx<'a> {
    /// The calling thread (pid << 32 | tid).
    pub caller: u64,
    /// The caller's session.
    pub session: u64,
    /// Whether the caller is gone (closed its connection) or talks out of
    /// turn (sent something while its call runs): either cancels a wait.
    peer_gone: &'a dyn Fn() -> bool,
    server: &'a Server,
    /// Per item of the call's arguments, the references the server took
    /// for the proxies inside it (a [`HOLDS`] call): the container that
    /// stores the item keeps them ([`Cx::held`]); those left are released
    /// after the call.
    holds: std::cell::RefCell<Vec<Held>>,
    /// References handed to the caller's session with items taken out of
    /// a container ([`Cx::hand_over`]).
    handed: std::cell::RefCell<Vec<u64>>,
}

/// References to objects that something in the server holds: an item of a
/// container that has proxies inside it, as Python's server counts the
/// references of the proxies a managed list or dict holds. Dropping it
/// releases them (the objects are freed if nothing else refers to them).
#[derive(Default)]
pub(crate) struct Held(Option<Box<HeldRefs>>);

struct HeldRefs {
    server: std::sync::Weak<Server>,
    ids: Vec<u64>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(h) = self.0.take()
            && let Some(server) = h.server.upgrade()
        {
            for id in h.ids {
                server.release(id, 1);
            }
        }
    }
}

impl<'a> Cx<'a> {
    /// The context of a call by `caller` (pid << 32 | tid) of `session`,
    /// cancelled once `peer_gone()` says so.
    pub(crate) fn new(
        caller: u64,
        session: u64,
        peer_gone: &'a dyn Fn() -> bool,
        server: &'a Server,
    ) -> Cx<'a> {
        Cx {
            caller,
            session,
            peer_gone,
            server,
            holds: Default::default(),
            handed: Default::default(),
        }
    }

    /// The references taken for the proxies inside item `i` of the call's
    /// arguments (none if it has none), for the container storing it.
    pub(crate) fn held(&self, i: usize) -> Held {
        self.holds
            .borrow_mut()
            .get_mut(i)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// An item leaves its container for the caller: the references it held
    /// pass to the caller's session, and (in an [`ADOPT`] call) the reply
    /// names them, so that the proxies the caller decodes from the item own
    /// them. Not an adopting call: they are released.
    pub(crate) fn hand_over(&self, mut held: Held) {
        let Some(h) = held.0.take() else {
            return;
        };
        {
            let mut sessions = self.server.sessions.lock();
            let refs = &mut sessions.entry(self.session).or_default().refs;
            for &id in &h.ids {
                *refs.entry(id).or_default() += 1;
            }
        }
        self.handed.borrow_mut().extend_from_slice(&h.ids);
    }

    /// Registers `object` (made by the call, such as a dict's cursor) as
    /// a new object of type `typeid`, with one reference for the caller's
    /// session (as a `Create` gives); its id.
    pub(crate) fn new_object(&self, object: Object, typeid: &str) -> u64 {
        self.server.insert(self.session, Arc::new(object), typeid)
    }

    /// Whether the call should stop: the server stops, or the caller closed
    /// its connection (it died or gave up).
    pub(crate) fn cancelled(&self) -> bool {
        self.server.stopping.load(Ordering::Relaxed) || (self.peer_gone)()
    }

    /// Waits on `cv` until woken, `deadline` passes (`Ok(false)`), or the
    /// call is cancelled (an error). Spurious wakeups return `Ok(true)`:
    /// callers loop on their condition.
    pub(crate) fn wait<T>(
        &self,
        cv: &Condvar,
        g: &mut MutexGuard<'_, T>,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(false);
        }
        let slice_end = now + WAIT_SLICE;
        let until = deadline.map_or(slice_end, |d| d.min(slice_end));
        cv.wait_until(g, until);
        if self.cancelled() {
            return Err(Error::ServerGone(
                "the call was cancelled: its caller left or the server stops".into(),
            ));
        }
        Ok(true)
    }
}

struct Entry {
    object: Arc<Object>,
    typeid: String,
    refs: u64,
}

#[derive(Default)]
struct SessionState {
    conns: usize,
    refs: HashMap<u64, u64>,
}

/// The server's state, shared by its threads.
pub(crate) struct Server {
    types: HashMap<String, Constructor>,
    objects: RwLock<HashMap<u64, Entry>>,
    next_object: AtomicU64,
    sessions: Mutex<HashMap<u64, SessionState>>,
    next_session: AtomicU64,
    stopping: AtomicBool,
    conns: Mutex<HashMap<u64, RawFd>>,
    next_conn: AtomicU64,
    max_frame: usize,
    /// The listener's address: a shutdown request connects to it once, so
    /// that the accept loop sees the request at once rather than at the end
    /// of its accept slice.
    wake: std::sync::OnceLock<Address>,
    /// This server, for the references items hold ([`Held`]).
    me: std::sync::Weak<Server>,
    /// Objects exposed by name (Python's `register(name, callable=...)`):
    /// the id, and the reference the name holds.
    names: Mutex<HashMap<String, (u64, Held)>>,
    /// CPython clients' state (see `manager::python`).
    pub(super) python: super::python::State,
}

impl Server {
    pub(crate) fn new(types: Vec<(String, Constructor)>, me: std::sync::Weak<Server>) -> Server {
        let mut map: HashMap<String, Constructor> = super::objects::builtin_types()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        map.extend(types);
        Server {
            types: map,
            objects: RwLock::new(HashMap::new()),
            next_object: AtomicU64::new(1),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            max_frame: DEFAULT_MAX_FRAME,
            wake: std::sync::OnceLock::new(),
            me,
            names: Mutex::new(HashMap::new()),
            python: Default::default(),
        }
    }

    /// The type id of object `id`, if it lives.
    pub(super) fn typeid(&self, id: u64) -> Option<String> {
        self.objects.read().get(&id).map(|e| e.typeid.clone())
    }

    /// Whether the server is stopping.
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Takes one reference to each object of `ids` for something the
    /// server holds (a [`HOLDS`] call's item): all, or none and the error.
    fn hold(&self, ids: Vec<u64>) -> Result<Held> {
        if ids.is_empty() {
            return Ok(Held(None));
        }
        let mut objects = self.objects.write();
        if let Some(&id) = ids.iter().find(|id| !objects.contains_key(id)) {
            return Err(unknown_object(id));
        }
        for id in &ids {
            if let Some(e) = objects.get_mut(id) {
                e.refs += 1;
            }
        }
        Ok(Held(Some(Box::new(HeldRefs {
            server: self.me.clone(),
            ids,
        }))))
    }

    fn create(&self, session: u64, typeid: &str, init: &[u8]) -> Result<u64> {
        let ctor = self.types.get(typeid).ok_or_else(|| {
            remote(
                RemoteErrorKind::UnknownType,
                format!("no type {typeid:?} is registered with this manager"),
            )
        })?;
        Ok(self.insert(session, Arc::new(ctor(init)?), typeid))
    }

    /// Adds `object` to the registry with one reference, `session`'s; its
    /// id.
    fn insert(&self, session: u64, object: Arc<Object>, typeid: &str) -> u64 {
        let id = self.next_object.fetch_add(1, Ordering::Relaxed);
        let mut objects = self.objects.write();
        objects.insert(
            id,
            Entry {
                object,
                typeid: typeid.to_string(),
                refs: 1,
            },
        );
        *self
            .sessions
            .lock()
            .entry(session)
            .or_default()
            .refs
            .entry(id)
            .or_default() += 1;
        id
    }

    fn incref(&self, session: u64, id: u64) -> Result<String> {
        let mut objects = self.objects.write();
        let e = objects.get_mut(&id).ok_or_else(|| unknown_object(id))?;
        e.refs += 1;
        *self
            .sessions
            .lock()
            .entry(session)
            .or_default()
            .refs
            .entry(id)
            .or_default() += 1;
        Ok(e.typeid.clone())
    }

    fn decref(&self, session: u64, id: u64) {
        {
            let mut sessions = self.sessions.lock();
            let Some(s) = sessions.get_mut(&session) else {
                return;
            };
            match s.refs.get_mut(&id) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    s.refs.remove(&id);
                }
                // Not a reference of this session: ignored.
                None => return,
            }
        }
        self.release(id, 1);
    }

    /// Drops `n` references to `id`, freeing it at zero.
    fn release(&self, id: u64, n: u64) {
        let freed = {
            let mut objects = self.objects.write();
            match objects.get_mut(&id) {
                Some(e) if e.refs > n => {
                    e.refs -= n;
                    None
                }
                Some(_) => objects.remove(&id),
                None => None,
            }
        };
        // Dropped outside the registry's lock.
        drop(freed);
    }

    /// Adds a connection to session `want` if it exists, else to a new
    /// one; the session's id. Each join is matched by a
    /// [`leave_session`](Self::leave_session) when the connection ends.
    pub(crate) fn join_session(&self, want: Option<u64>) -> u64 {
        let mut sessions = self.sessions.lock();
        let id = match want {
            Some(id) if sessions.contains_key(&id) => id,
            _ => self.next_session.fetch_add(1, Ordering::Relaxed),
        };
        sessions.entry(id).or_default().conns += 1;
        id
    }

    /// A connection of session `id` ended; with its last, every reference
    /// the session held is released and the locks it holds are freed.
    pub(crate) fn leave_session(&self, id: u64) {
        let released = {
            let mut sessions = self.sessions.lock();
            let Some(s) = sessions.get_mut(&id) else {
                return;
            };
            s.conns -= 1;
            if s.conns > 0 {
                return;
            }
            sessions.remove(&id).map(|s| s.refs).unwrap_or_default()
        };
        // Locks it held are freed (a dead holder would block the others
        // for ever).
        let all: Vec<Arc<Object>> = self
            .objects
            .read()
            .values()
            .map(|e| e.object.clone())
            .collect();
        for o in all {
            o.session_ended(id);
        }
        for (obj, n) in released {
            self.release(obj, n);
        }
    }

    /// The object `id`, if the server holds it.
    pub(crate) fn object(&self, id: u64) -> Option<Arc<Object>> {
        self.objects.read().get(&id).map(|e| e.object.clone())
    }

    /// Runs an operation on the server itself for `session`; its encoded
    /// answer. `Hello` and `Mailbox` belong to a connection's start and
    /// are refused here.
    pub(crate) fn control(&self, session: u64, op: ControlOp<'_>) -> Result<Vec<u8>> {
        match op {
            ControlOp::Create { typeid, init } => enc(&self.create(session, typeid, init.0)?),
            ControlOp::Incref(id) => enc(&self.incref(session, id)?),
            ControlOp::Decref(id) => {
                self.decref(session, id);
                Ok(Vec::new())
            }
            ControlOp::Count => enc(&(self.objects.read().len() as u64)),
            ControlOp::Expose { name, id } => {
                let held = self.hold(vec![id])?;
                let old = self.names.lock().insert(name.to_string(), (id, held));
                // Released outside the lock.
                drop(old);
                Ok(Vec::new())
            }
            ControlOp::Unexpose(name) => {
                let old = self.names.lock().remove(name);
                enc(&old.is_some())
            }
            ControlOp::Lookup(name) => {
                // The caller's reference is taken under the names' lock, so
                // that the name cannot be reassigned (and its object freed)
                // in between.
                let names = self.names.lock();
                let id = names.get(name).map(|(id, _)| *id).ok_or_else(|| {
                    remote(
                        RemoteErrorKind::Key,
                        format!("no object is exposed as {name:?}"),
                    )
                })?;
                let typeid = self.incref(session, id)?;
                drop(names);
                enc(&(id, typeid))
            }
            ControlOp::Names => {
                let mut names: Vec<String> = self.names.lock().keys().cloned().collect();
                names.sort();
                enc(&names)
            }
            ControlOp::Ping => Ok(Vec::new()),
            ControlOp::Pid => enc(&std::process::id()),
            ControlOp::Shutdown => {
                self.stopping.store(true, Ordering::SeqCst);
                Ok(Vec::new())
            }
            ControlOp::Hello(_) | ControlOp::Mailbox => Err(remote(
                RemoteErrorKind::Protocol,
                "hello and mailbox only start a connection",
            )),
        }
    }

    pub(super) fn call(&self, session: u64, req: &Request<'_>, cx: &Cx<'_>) -> Result<Vec<u8>> {
        if req.object == CONTROL {
            if req.method.is_some() {
                return Err(remote(
                    RemoteErrorKind::UnknownMethod,
                    "the manager takes typed operations",
                ));
            }
            return self.control(session, dec_args(req.args.0)?);
        }
        let object = self
            .object(req.object)
            .ok_or_else(|| unknown_object(req.object))?;
        let mut args = req.args.0;
        if req.flags & HOLDS != 0 {
            // The proxies inside each item, then the method's arguments.
            let (ids, inner): (Vec<Vec<u64>>, Bytes<'_>) = dec_args(args)?;
            let mut holds = Vec::with_capacity(ids.len());
            for item in ids {
                holds.push(self.hold(item)?);
            }
            *cx.holds.borrow_mut() = holds;
            args = inner.0;
        }
        let what = req.method.unwrap_or("(an operation)");
        let result = guarded(what, || object.call_wire(req.method, args, cx));
        let (result, handed) = self.settle(session, cx, result)?;
        if req.flags & ADOPT != 0 {
            enc(&(handed, Bytes(&result)))
        } else {
            // A caller that cannot adopt them: its session lets them go.
            for id in handed {
                self.decref(session, id);
            }
            Ok(result)
        }
    }

    /// Runs a typed operation on object `id` for a protocol adapter
    /// (`manager::python`), with the semantics of every call: `run` gets
    /// the object and the call's context, a panic in it is an error, and
    /// references handed over by items taken out of a container go back
    /// (the adapter's clients cannot adopt them).
    pub(crate) fn call_typed<T>(
        &self,
        session: u64,
        id: u64,
        cx: &Cx<'_>,
        what: &str,
        run: impl FnOnce(&Object, &Cx<'_>) -> Result<T>,
    ) -> Result<T> {
        let object = self.object(id).ok_or_else(|| unknown_object(id))?;
        let result = guarded(what, || run(&object, cx));
        let (result, handed) = self.settle(session, cx, result)?;
        for id in handed {
            self.decref(session, id);
        }
        Ok(result)
    }

    /// The end of a call: references no item kept are let go, and those
    /// handed to the caller's session are returned with the result (a
    /// failed call's are released: nobody will adopt them).
    fn settle<T>(&self, session: u64, cx: &Cx<'_>, result: Result<T>) -> Result<(T, Vec<u64>)> {
        cx.holds.borrow_mut().clear();
        let handed = std::mem::take(&mut *cx.handed.borrow_mut());
        match result {
            Ok(r) => Ok((r, handed)),
            Err(e) => {
                for id in handed {
                    self.decref(session, id);
                }
                Err(e)
            }
        }
    }

    /// Serves one authenticated connection until it closes.
    fn serve_connection(&self, channel: Channel) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().insert(conn, channel.as_fd().as_raw_fd());
        let mut channel = channel;
        let stop = || self.stopping.load(Ordering::Relaxed);
        // The first frame says which protocol the client speaks: this
        // crate's proxies open with a hello, CPython's manager clients with
        // a pickle.
        if let Ok(first) = channel.recv(Duration::ZERO, Some(WAIT_SLICE), &stop) {
            let bytes = channel.bytes(first);
            if super::python::is_python(bytes) {
                let first = bytes.to_vec();
                super::python::serve(self, &mut channel, first);
            } else if let Some((id, want)) = hello(bytes)
                && let Some(session) = self.welcome(&mut channel, id, want)
            {
                self.serve_requests(&mut channel, session);
                self.leave_session(session);
            }
        }
        // Out of the list before the descriptor closes (with `channel`).
        self.conns.lock().remove(&conn);
    }

    /// Joins the session a hello (request `id`) asked for, or a new one,
    /// and tells the client which.
    fn welcome(&self, channel: &mut Channel, id: u64, want: Option<u64>) -> Option<u64> {
        let session = self.join_session(want);
        let mut out = Vec::new();
        let body = enc(&session).ok()?;
        let reply = Reply {
            id,
            result: Ok(Bytes(&body)),
        };
        if encode_frame(&reply, &mut out).is_err() || channel.send(&out).is_err() {
            self.leave_session(session);
            return None;
        }
        Some(session)
    }

    fn serve_requests(&self, channel: &mut Channel, session: u64) {
        let stop = || self.stopping.load(Ordering::Relaxed);
        let mut out = Vec::with_capacity(256);
        loop {
            let range = match channel.recv(SPIN, Some(WAIT_SLICE), &stop) {
                Ok(r) => r,
                // Closed, garbage framing, or stopping: this client only.
                Err(ReadEnd::Closed | ReadEnd::Bad(_) | ReadEnd::Os(_) | ReadEnd::Stopped) => {
                    return;
                }
            };
            let frame = channel.bytes(range);
            let req = match decode_request(frame) {
                Ok(r) => r,
                Err(e) => {
                    // Tell the client why, then hang up: a connection that
                    // sent garbage cannot be trusted to be in step.
                    out.clear();
                    let reply = Reply {
                        id: 0,
                        result: Err(Fault::from(remote(
                            RemoteErrorKind::Protocol,
                            e.to_string(),
                        ))),
                    };
                    if encode_frame(&reply, &mut out).is_ok() {
                        let _ = channel.send(&out);
                    }
                    return;
                }
            };
            if is_control(&req, |op| matches!(op, ControlOp::Mailbox)) {
                let id = req.id;
                let mailbox = channel
                    .take_fd()
                    .ok_or_else(|| remote(RemoteErrorKind::Protocol, "no mailbox descriptor came"))
                    .and_then(Mailbox::from_fd);
                out.clear();
                let result = match &mailbox {
                    Ok(_) => Ok(Vec::new()),
                    Err(e) => Err(clone_error(e)),
                };
                if encode_frame(&reply_for(id, &result), &mut out).is_err()
                    || channel.send(&out).is_err()
                {
                    return;
                }
                if let Ok(m) = mailbox {
                    return self.serve_mailbox(channel, m, session);
                }
                continue;
            }
            let gone = || channel.peer_gone_or_talking();
            let cx = Cx::new(req.caller, session, &gone, self);
            let result = self.call(session, &req, &cx);
            if self.failed_stopping(&result) {
                return;
            }
            if req.flags & NO_REPLY != 0 {
                continue;
            }
            out.clear();
            let encoded = match &result {
                Ok(v) => encode_frame(
                    &Reply {
                        id: req.id,
                        result: Ok(Bytes(v)),
                    },
                    &mut out,
                ),
                Err(e) => encode_frame(
                    &Reply {
                        id: req.id,
                        result: Err(Fault::from(clone_error(e))),
                    },
                    &mut out,
                ),
            };
            if encoded.is_err() {
                out.clear();
                let reply = Reply {
                    id: req.id,
                    result: Err(Fault::Remote(
                        RemoteErrorKind::Protocol,
                        "the reply could not be encoded (too large?)".into(),
                    )),
                };
                if encode_frame(&reply, &mut out).is_err() {
                    return;
                }
            }
            if channel.send(&out).is_err() {
                return;
            }
            self.after_reply(&req);
            if out.capacity() > 1 << 20 {
                out = Vec::with_capacity(256);
            }
        }
    }

    /// After the reply to a shutdown request went out: wakes the accept
    /// loop, which would otherwise see the request only at the end of its
    /// accept slice. It returns when a handshake ends, well or badly (a
    /// peer that just closes is dropped silently), so one with a made-up
    /// key makes it return at once and see `stopping`. Waking it only now
    /// lets the requester read its reply before the server exits.
    fn after_reply(&self, req: &Request<'_>) {
        if is_control(req, |op| matches!(op, ControlOp::Shutdown))
            && let Some(address) = self.wake.get()
        {
            let _ = crate::Client::connect_timeout(
                address,
                Some(b"multiproc-manager-wake"),
                Some(Duration::from_millis(200)),
            );
        }
    }

    /// Serves a connection whose calls come through a shared-memory
    /// mailbox (messages too long for it still go over the socket).
    fn serve_mailbox(&self, channel: &mut Channel, mailbox: Mailbox, session: u64) {
        let mut expect: u32 = 1;
        let mut buf = Vec::with_capacity(256);
        let mut out = Vec::with_capacity(256);
        loop {
            let arrival = {
                let ch = &*channel;
                mailbox.wait(Slot::Request, expect, SPIN, WAIT_SLICE, &mut || {
                    self.stopping.load(Ordering::Relaxed) || ch.peer_gone_or_talking()
                })
            };
            let len = match arrival {
                Arrival::Stopped => return,
                Arrival::Message(n) => n,
            };
            if len == ON_SOCKET {
                let stop = || self.stopping.load(Ordering::Relaxed);
                match channel.recv(SPIN, Some(WAIT_SLICE), &stop) {
                    Ok(r) => {
                        buf.clear();
                        buf.extend_from_slice(channel.bytes(r));
                    }
                    Err(_) => return,
                }
            } else if mailbox.take(Slot::Request, len, &mut buf).is_err() {
                return;
            }
            let Ok(req) = decode_request(&buf) else {
                return;
            };
            let ch = &*channel;
            let gone = || ch.peer_gone_or_talking();
            let cx = Cx::new(req.caller, session, &gone, self);
            // Every call is answered here, even a NO_REPLY one: the client
            // may not write the request slot again before that.
            let result = self.call(session, &req, &cx);
            if self.failed_stopping(&result) {
                return;
            }
            let reply = reply_for(req.id, &result);
            if encode_body(&reply, &mut out).is_err() {
                return;
            }
            if out.len() <= SLOT {
                mailbox.post(Slot::Reply, expect, Some(&out));
            } else {
                mailbox.post(Slot::Reply, expect, None);
                out.clear();
                if encode_frame(&reply, &mut out).is_err() || channel.send(&out).is_err() {
                    return;
                }
            }
            self.after_reply(&req);
            if out.capacity() > 1 << 20 {
                out = Vec::with_capacity(256);
            }
            if buf.capacity() > 1 << 20 {
                buf = Vec::with_capacity(256);
            }
            expect = expect.wrapping_add(1);
        }
    }

    /// Whether a call failed while the server stops: it may have found its
    /// object already dropped ([`run`] drops them all once stopping), and
    /// its client must learn that the server went away (its socket is shut
    /// down), not that the object is unknown. The connection then ends
    /// without a reply. (`stopping` is set before the objects are taken,
    /// under the lock a call's lookup also takes, so a lookup that missed
    /// them sees it set.)
    fn failed_stopping(&self, result: &Result<Vec<u8>>) -> bool {
        result.is_err() && self.stopping.load(Ordering::SeqCst)
    }

    /// Asks every connection thread to end (their sockets are shut down,
    /// which also tells the clients at once).
    fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let conns = self.conns.lock();
        for &fd in conns.values() {
            // `fd` is open: a connection's descriptor leaves this list
            // (under this lock) before its thread closes it.
            // SAFETY: `fd` is open while it is in `conns` (see above, under
            // this lock); the borrow ends with this statement.
            crate::sys::socket::shutdown(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) });
        }
    }
}

/// The request id and the session asked for, if `frame` is a hello.
fn hello(frame: &[u8]) -> Option<(u64, Option<u64>)> {
    let req = decode_request(frame).ok()?;
    if req.object != CONTROL || req.method.is_some() {
        return None;
    }
    match dec_args(req.args.0) {
        Ok(ControlOp::Hello(want)) => Some((req.id, want)),
        _ => None,
    }
}

/// Whether `req` is a control operation that `test` accepts.
fn is_control(req: &Request<'_>, test: impl Fn(&ControlOp<'_>) -> bool) -> bool {
    req.object == CONTROL
        && req.method.is_none()
        && dec_args::<ControlOp<'_>>(req.args.0).is_ok_and(|op| test(&op))
}

fn reply_for(id: u64, result: &Result<Vec<u8>>) -> Reply<'_> {
    Reply {
        id,
        result: match result {
            Ok(v) => Ok(Bytes(v)),
            Err(e) => Err(Fault::from(clone_error(e))),
        },
    }
}

/// Runs a call's handler; a panic in it (`what` panicked) is the caller's
/// error, and the connection and the server go on.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = crate::process::panic_text(&*p);
            Err(remote(
                RemoteErrorKind::Custom("panic".into()),
                format!("method {what} panicked in the server: {msg}"),
            ))
        }
    }
}

fn clone_error(e: &Error) -> Error {
    match e {
        Error::Remote { kind, message } => Error::Remote {
            kind: kind.clone(),
            message: message.clone(),
        },
        Error::Timeout => Error::Timeout,
        Error::BrokenBarrier => Error::BrokenBarrier,
        Error::NotOwner => Error::NotOwner,
        Error::ReleasedTooManyTimes => Error::ReleasedTooManyTimes,
        Error::Codec(m) => Error::Codec(m.clone()),
        other => remote(RemoteErrorKind::Custom("Error".into()), other.to_string()),
    }
}

fn unknown_object(id: u64) -> Error {
    remote(
        RemoteErrorKind::UnknownObject,
        format!("no object with id {id} (freed, or never made)"),
    )
}

/// Binds `address` for a server: SHA-256-only authentication, and a Unix
/// socket file readable and writable by its owner only (as every
/// [`Listener`] makes it, from the start: no window with a wider mode).
/// With `legacy_auth`, CPython 3.11's HMAC-MD5 handshake is accepted too.
pub(crate) fn bind(address: &Address, authkey: &[u8], legacy_auth: bool) -> Result<Listener> {
    let listener = Listener::bind(address, Some(authkey))?;
    let listener = if legacy_auth {
        listener
    } else {
        listener.with_sha256_only()
    };
    Ok(listener.with_max_message(DEFAULT_MAX_FRAME as u64))
}

/// Runs a server on `listener` until a shutdown request, `stop` turns
/// true, or `orphaned()` does (checked every accept slice).
pub(crate) fn run(
    mut listener: Listener,
    types: Vec<(String, Constructor)>,
    stop: &AtomicBool,
    orphaned: &dyn Fn() -> bool,
) -> Result<()> {
    let server = Arc::new_cyclic(|me| Server::new(types, me.clone()));
    let _ = server.wake.set(listener.address().clone());
    let result = loop {
        if stop.load(Ordering::Relaxed) || server.stopping.load(Ordering::Relaxed) || orphaned() {
            break Ok(());
        }
        match listener.accept_timeout(ACCEPT_SLICE) {
            Ok(conn) => {
                let s = server.clone();
                let max = s.max_frame;
                let Ok(channel) = conn
                    .into_fd()
                    .map_err(Error::from)
                    .and_then(|fd| Channel::new(fd, max))
                else {
                    continue;
                };
                let spawned = std::thread::Builder::new()
                    .name("mp-manager-conn".into())
                    .spawn(move || s.serve_connection(channel));
                if spawned.is_err() {
                    // Out of threads: that client is refused (its socket
                    // closed with the closure), the others go on.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Err(AcceptError::Timeout | AcceptError::AuthenticationFailed(_)) => {}
            Err(AcceptError::Os { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EINTR)
                ) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(AcceptError::Os { .. }) => {}
        }
    };
    server.stop_all();
    // The objects go with the server (a type's `Drop` runs now, not at a
    // process exit that skips it): taken out under the lock, dropped
    // outside it. A call still running keeps its object until it returns.
    let names = std::mem::take(&mut *server.names.lock());
    let objects = std::mem::take(&mut *server.objects.write());
    // A registered type's `Drop` that panics must not take the server's
    // exit path with it.
    let _ = catch_unwind(AssertUnwindSafe(move || drop((names, objects))));
    result
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::connection::frame;
    use crate::manager::protocol::decode_reply;

    /// A server's connection thread on one end of a socket pair.
    fn serve() -> (UnixStream, std::thread::JoinHandle<()>) {
        let server = Arc::new_cyclic(|me| Server::new(Vec::new(), me.clone()));
        let (a, b) = UnixStream::pair().unwrap();
        let ch = Channel::new(a.into(), server.max_frame).unwrap();
        let t = std::thread::spawn(move || server.serve_connection(ch));
        (b, t)
    }

    /// `body` behind the long header (`-1`, then a 64-bit length).
    fn long_frame(announced: u64, body: &[u8]) -> Vec<u8> {
        let mut f = (-1i32).to_be_bytes().to_vec();
        f.extend_from_slice(&announced.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn request(id: u64, op: &ControlOp<'_>) -> Vec<u8> {
        let args = enc(op).unwrap();
        let req = Request {
            id,
            object: CONTROL,
            method: None,
            caller: 0,
            flags: 0,
            args: Bytes(&args),
        };
        postcard::to_stdvec(&req).unwrap()
    }

    /// The body of the next reply frame (short header: the server writes
    /// the shortest).
    fn reply_body(s: &mut UnixStream) -> Vec<u8> {
        let mut h = [0u8; frame::SHORT];
        s.read_exact(&mut h).unwrap();
        let (_, len) = frame::decode_header(&h).unwrap().unwrap();
        let mut body = vec![0; len as usize];
        s.read_exact(&mut body).unwrap();
        body
    }

    #[test]
    fn requests_under_the_long_header_are_served_up_to_the_limit() {
        let (mut s, t) = serve();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Connection's long header, as CPython writes it for long bodies,
        // around short requests: the same framing.
        let hello = request(7, &ControlOp::Hello(None));
        s.write_all(&long_frame(hello.len() as u64, &hello))
            .unwrap();
        let body = reply_body(&mut s);
        let reply = decode_reply(&body).unwrap();
        assert_eq!(reply.id, 7);
        assert!(reply.result.is_ok());
        let pid = request(8, &ControlOp::Pid);
        s.write_all(&long_frame(pid.len() as u64, &pid)).unwrap();
        let body = reply_body(&mut s);
        let reply = decode_reply(&body).unwrap();
        assert_eq!(reply.id, 8);
        let got: u32 = crate::manager::protocol::dec(reply.result.unwrap().0).unwrap();
        assert_eq!(got, std::process::id());
        // A long header past the manager's limit ends the connection at
        // once, with nothing allocated for it.
        s.write_all(&long_frame(DEFAULT_MAX_FRAME as u64 + 1, b"x"))
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
        t.join().unwrap();
    }

    #[test]
    fn a_first_frame_that_is_no_hello_ends_the_connection() {
        let (mut s, t) = serve();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let pid = request(1, &ControlOp::Pid);
        let mut f = (pid.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&pid);
        s.write_all(&f).unwrap();
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
        t.join().unwrap();
    }
}
