//! Manager proxy calls as futures (features `tokio` and `manager`):
//! [`proxy_call`] gives every proxy method an awaitable form, and
//! [`Proxy::call_async`] is the async form of [`Proxy::call`].
//!
//! # How: record, call, replay
//!
//! A proxy method is ordinary blocking code around one or more calls to
//! the server (encode, call, decode, adopt the references handed back).
//! Rather than an async twin of each of them, [`proxy_call`] runs the
//! method itself, in a mode (thread-local, for the length of one run on
//! the polling thread) where a call to the server does not go out:
//!
//! 1. The first call the run makes that has no answer yet is *recorded*
//!    and fails (so the method returns early; what it returns is thrown
//!    away), as does any later call of that run.
//! 2. The future sends the recorded request on a socket connection of the
//!    session and awaits the reply through tokio (`AsyncFd`): no thread,
//!    no polling, nothing blocked.
//! 3. It runs the method again: each call that was answered is given its
//!    reply (matched by its request: the object, the method, the encoded
//!    arguments and flags), and the next new call is recorded, until a
//!    run makes no new call. That run's result is the future's.
//!
//! A method making one call thus runs twice and sends one request.
//! Notifications a run sends without waiting (the reference drops of the
//! proxies it made and let go) are sent only by the last run: the earlier
//! runs' effects are thrown away with them, so every reference the server
//! counted once is owned once.
//!
//! The closure given to [`proxy_call`] may run several times: it must do
//! nothing but proxy calls and what follows from their answers (no other
//! side effect, no state that changes from one run to the next but what
//! the calls change).
//!
//! # Cancellation
//!
//! A future dropped while its request is out closes that request's
//! connection, so its reply is never read by anyone: no later call sees a
//! stale reply (the connection is a socket-only one of the async calls,
//! apart from the blocking calls' connections, so the session keeps those
//! and its references). The request itself may or may not have run on the
//! server by then, as for a blocking call whose process is killed; the
//! references a dropped call's reply would have handed over stay with the
//! session until it ends.
//!
//! # What still blocks
//!
//! Connecting: the first call of a process on a server (and the first
//! async call of each concurrent one) connects and authenticates by
//! blocking, as the blocking calls do. A request is written by blocking
//! when the socket's buffer is full (a request larger than it, with a
//! server that is slow to read); a reply that came in part is read whole
//! by blocking (bounded by the channel's stall timeout).
//!
//! A call carries its caller's thread (for a reentrant lock's owner): a
//! task of a multi-threaded runtime that moves between threads is, to the
//! server, a different caller each time. Take manager locks from a
//! current-thread runtime (or blocking).

use std::cell::RefCell;
use std::future::poll_fn;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::manager::channel::ReadEnd;
use crate::manager::client::{Session, encode_call, finish, gone};
use crate::manager::protocol::{CONTROL, dec, enc};
use crate::manager::{Proxy, ProxyError};

/// A request, as matched between runs.
#[derive(Clone, PartialEq, Eq)]
struct Key {
    session: usize,
    object: u64,
    method: Option<String>,
    args: Vec<u8>,
    flags: u8,
}

/// What a sent request got.
enum Got {
    /// The reply to request `id` (its body, decoded by each replay).
    Reply(u64, Vec<u8>),
    /// The server could not be reached (or closed the connection).
    Gone(String),
    /// The reply was malformed.
    Codec(String),
}

impl Got {
    fn result(&self) -> Result<Vec<u8>> {
        match self {
            Got::Reply(id, body) => finish(*id, body),
            Got::Gone(s) => Err(Error::ServerGone(s.clone())),
            Got::Codec(s) => Err(Error::Codec(s.clone())),
        }
    }
}

/// One run of a closure: the answers it may use, the request it recorded.
struct Run {
    answers: Vec<(Key, Got)>,
    used: Vec<bool>,
    recorded: Option<(Key, Arc<Session>)>,
    notes: Vec<Note>,
}

/// A notification kept for the end of a run: the session, the object, the
/// method and the encoded arguments.
type Note = (Arc<Session>, u64, Option<String>, Vec<u8>);

thread_local! {
    /// The run in progress on this thread (set only while `run_once` runs
    /// its closure).
    static RUN: RefCell<Option<Run>> = const { RefCell::new(None) };
}

fn with_run<T>(f: impl FnOnce(&mut Run) -> T) -> Option<T> {
    // `f` calls nothing that comes back here (no proxy call, no notify).
    RUN.with(|r| r.borrow_mut().as_mut().map(f))
}

/// The hook of `Session::call_flags`: inside a run, the reply recorded for
/// this request, or the request recorded (and a failure returned).
pub(crate) fn intercept(
    session: &Session,
    object: u64,
    method: Option<&str>,
    args: &[u8],
    flags: u8,
) -> Option<Result<Vec<u8>>> {
    with_run(|run| {
        if run.recorded.is_some() {
            return Err(deferred());
        }
        let key = Key {
            session: session as *const Session as usize,
            object,
            method: method.map(str::to_owned),
            args: args.to_vec(),
            flags,
        };
        let used = &run.used;
        let found = run
            .answers
            .iter()
            .enumerate()
            .position(|(i, (k, _))| !used[i] && *k == key);
        if let Some(i) = found {
            run.used[i] = true;
            return run.answers[i].1.result();
        }
        match session.arc() {
            Some(s) => {
                run.recorded = Some((key, s));
                Err(deferred())
            }
            None => Err(gone("the session ended")),
        }
    })
}

/// The hook of `Session::notify`: inside a run, keeps the notification for
/// the end of the run (sent only if the run is the last); whether it did.
pub(crate) fn defer_notify(
    session: &Session,
    object: u64,
    method: Option<&str>,
    args: &[u8],
) -> bool {
    with_run(|run| {
        if let Some(s) = session.arc() {
            run.notes
                .push((s, object, method.map(str::to_owned), args.to_vec()));
        }
    })
    .is_some()
}

/// The failure of a call that a run does not make now.
fn deferred() -> Error {
    Error::ServerGone("deferred to an async call".into())
}

/// Runs `f` once with `answers` (handed back); its result and the
/// request it recorded.
/// The answers the run used are marked in `used`.
fn run_once<R>(
    f: &mut impl FnMut() -> R,
    answers: &mut Vec<(Key, Got)>,
    used: &mut Vec<bool>,
) -> (R, Option<(Key, Arc<Session>)>) {
    let run = Run {
        used: vec![false; answers.len()],
        answers: std::mem::take(answers),
        recorded: None,
        notes: Vec::new(),
    };
    /// Puts back the outer run (a run within a run: a closure that blocks
    /// on another `proxy_call`) however `f` ends, and hands this one out.
    struct Restore(Option<Option<Run>>);
    impl Restore {
        fn take(&mut self) -> Option<Run> {
            let outer = self.0.take().flatten();
            RUN.with(|r| r.replace(outer))
        }
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            if self.0.is_some() {
                self.take();
            }
        }
    }
    let mut restore = Restore(Some(RUN.with(|r| r.replace(Some(run)))));
    let r = f();
    let Some(mut run) = restore.take() else {
        // Not ours (the closure took the run out): nothing recorded.
        return (r, None);
    };
    *answers = std::mem::take(&mut run.answers);
    *used = std::mem::take(&mut run.used);
    if run.recorded.is_none() {
        // The last run: its notifications are real.
        for (s, object, method, args) in run.notes.drain(..) {
            s.notify(object, method.as_deref(), &args);
        }
    }
    (r, run.recorded)
}

/// Sends one request on a socket-only connection of `session` and awaits
/// its reply without blocking the thread.
async fn send_and_wait(session: &Session, key: &Key) -> Got {
    let mut chan = match session.take_plain() {
        Ok(c) => c,
        Err(Error::Codec(s)) => return Got::Codec(s),
        Err(Error::ServerGone(s)) => return Got::Gone(s),
        Err(e) => return Got::Gone(e.to_string()),
    };
    let id = session.next_id();
    let mut out = Vec::new();
    if let Err(e) = encode_call(
        id,
        key.object,
        key.method.as_deref(),
        &key.args,
        key.flags,
        &mut out,
    ) {
        return Got::Codec(e.to_string());
    }
    if let Err(e) = chan.send(&out) {
        return Got::Gone(e.to_string());
    }
    let afd = match chan
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::os("dup", e))
        .and_then(|fd| super::register_readable(fd).map_err(Error::from))
    {
        Ok(a) => a,
        Err(e) => return Got::Gone(e.to_string()),
    };
    loop {
        // A whole frame there: taken; else (`Stopped` before any sleep)
        // wait for the socket.
        match chan.recv(Duration::ZERO, None, &|| true) {
            Ok(range) => {
                let body = chan.bytes(range).to_vec();
                drop(afd);
                session.put_plain(chan);
                return Got::Reply(id, body);
            }
            Err(ReadEnd::Stopped) => {}
            Err(ReadEnd::Closed) => return Got::Gone("the server closed the connection".into()),
            Err(ReadEnd::Bad(e) | ReadEnd::Os(e)) => return Got::Gone(e.to_string()),
        }
        let ready = poll_fn(|cx| match afd.poll_read_ready(cx) {
            Poll::Ready(Ok(mut g)) => {
                g.clear_ready();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        })
        .await;
        if let Err(e) = ready {
            return Got::Gone(e.to_string());
        }
    }
}

/// The most requests one [`proxy_call`] sends.
const MAX_CALLS: usize = 4096;

/// Runs `f`, a closure making manager proxy calls, with each call awaited
/// without blocking the thread: the awaitable form of every proxy method.
///
/// ```no_run
/// # async fn demo(list: multiproc::manager::ListProxy<u32>) -> multiproc::Result<()> {
/// let third = multiproc::aio::proxy_call(|| list.get(2)).await?;
/// multiproc::aio::proxy_call(|| list.push(&(third + 1))).await?;
/// # Ok(()) }
/// ```
///
/// `f` may run several times (once more than the calls it makes): it must
/// do nothing but proxy calls and what follows from their answers, and
/// make the same calls with the same arguments each time, as far as the
/// answers are the same. A run that makes a call to an object with other
/// arguments than a call of an earlier run that it no longer makes (an
/// argument computed from the clock, as
/// [`ConditionProxy::wait_for`](crate::manager::ConditionProxy::wait_for)
/// with a timeout computes its waits) fails the future with
/// [`ProxyError::InvalidArgument`] (turned into the closure's error type),
/// and so does a closure that would send more
/// than 4096 requests. See [the module documentation](self) for how, and
/// what blocks still.
///
/// Cancellation: dropping the future closes the connection of the call it
/// awaits, whose reply is then never read (no later call can see it); the
/// call may or may not have run on the server.
pub async fn proxy_call<T, E: From<ProxyError>>(
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut answers: Vec<(Key, Got)> = Vec::new();
    let mut used = Vec::new();
    loop {
        let (r, recorded) = run_once(&mut f, &mut answers, &mut used);
        let Some((key, session)) = recorded else {
            return r;
        };
        drop(r);
        // A call like one of an earlier run that this run did not make,
        // with other arguments: the closure's calls drift from run to run.
        // (Not the server's own operations: a proxy attached by an earlier
        // run's reference no longer makes that run's call.)
        let drifted = answers.iter().zip(&used).any(|((k, _), &u)| {
            !u && key.object != CONTROL
                && k.session == key.session
                && k.object == key.object
                && k.method == key.method
                && k.flags == key.flags
        });
        if drifted {
            return Err(ProxyError::InvalidArgument(
                "proxy_call: the closure made other calls when run again",
            )
            .into());
        }
        if answers.len() >= MAX_CALLS {
            return Err(ProxyError::InvalidArgument(
                "proxy_call: the closure makes too many calls",
            )
            .into());
        }
        let got = send_and_wait(&session, &key).await;
        answers.push((key, got));
    }
}

impl Proxy {
    /// The async form of [`call`](Proxy::call): see [`proxy_call`].
    pub async fn call_async<A: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R, ProxyError> {
        let args = enc(args).map_err(ProxyError::from_internal)?;
        let raw = proxy_call(|| self.call_raw(method, &args)).await?;
        dec(&raw).map_err(ProxyError::from_internal)
    }
}
