//! The manager's wire protocol: frames, requests and replies.
//!
//! A frame is a length header and that many bytes: the framing of
//! [`Connection`](crate::Connection), decoded by the same code
//! (`connection::frame`), long header included (a frame over the server's
//! maximum is refused and the connection closed). Inside a frame, a request or a reply encoded with postcard:
//!
//! * request: `{ id, object, caller, flags, method, args }`. For the
//!   server itself ([`CONTROL`]) and the built-in objects, `method` is
//!   `None` and `args` is a typed operation (a [`ControlOp`], or the
//!   operation enum of the object's kind: `ListOp`, `QueueOp`, ...) that
//!   the server decodes once against the object's kind; only a type
//!   registered by name (`manager_type!`) is called with a method name and
//!   that method's argument tuple;
//! * reply: `{ id, result }`; `result` is the method's encoded answer or a
//!   [`Fault`] (the kind and message of the server-side error).
//!
//! Values the server keeps for its clients (list items, dict keys and
//! values) are stored as the client encoded them, and a reply is built by
//! concatenating such encodings: postcard is not self-describing, so the
//! concatenation of `varint(n)` and `n` encoded items *is* the encoding of
//! a `Vec<T>` and the client decodes it as such. The server never needs to
//! know `T`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::connection::frame;
use crate::error::{Error, RemoteErrorKind};

/// The object id of the server itself (hello, create, incref, ...).
pub(crate) const CONTROL: u64 = 0;
/// A request flag: the caller does not wait for a reply (decref on drop).
pub(crate) const NO_REPLY: u8 = 1;
/// A request flag: `args` are `(Vec<Vec<u64>>, Bytes)`, the ids of the
/// proxies (of this server) inside each item the call stores, then the
/// method's arguments. The server holds those objects for the item.
pub(crate) const HOLDS: u8 = 2;
/// A request flag: the caller adopts the references held by items the call
/// takes out of a container; the reply is `(Vec<u64>, Bytes)`, their ids
/// (now the caller session's) and the method's result.
pub(crate) const ADOPT: u8 = 4;
/// The longest frame accepted by default: 64 MiB.
pub(crate) const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// A byte string encoded as one (a length and the bytes), borrowed when
/// decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bytes<'a>(pub &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// One call.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    /// Chosen by the client; the reply carries it back.
    pub id: u64,
    /// The object called ([`CONTROL`] for the server).
    pub object: u64,
    /// The method's name, for a type registered by name; `None`: `args`
    /// is a typed operation of the object's kind (or a [`ControlOp`]).
    #[serde(borrow)]
    pub method: Option<&'a str>,
    /// Which thread of which process calls (pid << 32 | tid): the owner of
    /// a lock it acquires.
    pub caller: u64,
    /// [`NO_REPLY`], [`HOLDS`], [`ADOPT`] or 0.
    pub flags: u8,
    /// The encoded operation (or a registered method's argument tuple).
    #[serde(borrow)]
    pub args: Bytes<'a>,
}

/// What a client asks of the server itself (requests to [`CONTROL`]).
/// Each answer is postcard-encoded as noted.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) enum ControlOp<'a> {
    /// The first request of a connection: join the session given (a
    /// process's further connections) or a new one. Answer: the session id.
    Hello(Option<u64>),
    /// A shared-memory mailbox comes with this request (its descriptor);
    /// the connection's calls go through it from the reply on. Answer: unit.
    Mailbox,
    /// Makes an object of type `typeid` from its encoded initial value;
    /// the caller's session holds the first reference. Answer: the id.
    Create {
        /// The type id (`"list"`, ..., or a registered type's).
        #[serde(borrow)]
        typeid: &'a str,
        /// The encoded initial value.
        #[serde(borrow)]
        init: Bytes<'a>,
    },
    /// One more reference for the caller's session. Answer: the type id.
    Incref(u64),
    /// One reference less (sent without waiting for the answer).
    Decref(u64),
    /// How many objects the server holds. Answer: `u64`.
    Count,
    /// Makes an object reachable by name (the name holds a reference).
    Expose {
        /// The name.
        #[serde(borrow)]
        name: &'a str,
        /// The object's id.
        id: u64,
    },
    /// Removes a name. Answer: whether it was there.
    Unexpose(#[serde(borrow)] &'a str),
    /// The object exposed under a name, with a reference for the caller's
    /// session. Answer: `(id, typeid)`.
    Lookup(#[serde(borrow)] &'a str),
    /// The exposed names, sorted. Answer: `Vec<String>`.
    Names,
    /// Answer: unit.
    Ping,
    /// The server's process id. Answer: `u32`.
    Pid,
    /// Stops the server (after this reply).
    Shutdown,
}

/// The server-side error of a call, as it travels.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// An error with a kind and message.
    Remote(RemoteErrorKind, String),
    /// A blocking call's timeout passed.
    Timeout,
    /// A barrier is broken.
    BrokenBarrier,
    /// A lock released by a caller that does not hold it.
    NotOwner,
    /// A bounded semaphore released too often.
    ReleasedTooManyTimes,
}

impl From<Error> for Fault {
    fn from(e: Error) -> Fault {
        match e {
            Error::Remote { kind, message } => Fault::Remote(kind, message),
            Error::Timeout => Fault::Timeout,
            Error::BrokenBarrier => Fault::BrokenBarrier,
            Error::NotOwner => Fault::NotOwner,
            Error::ReleasedTooManyTimes => Fault::ReleasedTooManyTimes,
            Error::IndexOutOfBounds { .. } => Fault::Remote(RemoteErrorKind::Index, e.to_string()),
            Error::Codec(m) => Fault::Remote(RemoteErrorKind::BadArguments, m),
            other => Fault::Remote(RemoteErrorKind::Custom("Error".into()), other.to_string()),
        }
    }
}

impl From<Fault> for Error {
    fn from(f: Fault) -> Error {
        match f {
            Fault::Remote(kind, message) => Error::Remote { kind, message },
            Fault::Timeout => Error::Timeout,
            Fault::BrokenBarrier => Error::BrokenBarrier,
            Fault::NotOwner => Error::NotOwner,
            Fault::ReleasedTooManyTimes => Error::ReleasedTooManyTimes,
        }
    }
}

/// A server-side error of `kind`.
pub(crate) fn remote(kind: RemoteErrorKind, message: impl Into<String>) -> Error {
    Error::Remote {
        kind,
        message: message.into(),
    }
}

/// The reply to one request.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) struct Reply<'a> {
    /// The request's id.
    pub id: u64,
    /// The encoded result, or what went wrong.
    #[serde(borrow)]
    pub result: Result<Bytes<'a>, Fault>,
}

/// Appends a whole frame (header and postcard body) for `msg` to `out`.
pub(crate) fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    let start = out.len();
    out.extend_from_slice(&[0; frame::SHORT]);
    let v = std::mem::take(out);
    let mut v = postcard::to_extend(msg, v).map_err(|e| Error::Codec(format!("encode: {e}")))?;
    let len = (v.len() - start - frame::SHORT) as u64;
    let mut header = [0u8; frame::LONG];
    let n = frame::encode_header(len, &mut header);
    if n == frame::SHORT {
        v[start..start + n].copy_from_slice(&header[..n]);
    } else {
        // The long header (a body over 2 GiB) needs 8 more bytes in front.
        v.splice(start..start + frame::SHORT, header[..n].iter().copied());
    }
    *out = v;
    Ok(())
}

/// Replaces `out` with the postcard body of `msg` (no frame header: what
/// goes into a mailbox slot).
pub(crate) fn encode_body<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    out.clear();
    let v = std::mem::take(out);
    *out = postcard::to_extend(msg, v).map_err(|e| Error::Codec(format!("encode: {e}")))?;
    Ok(())
}

/// Decodes a request frame's body.
pub(crate) fn decode_request(body: &[u8]) -> Result<Request<'_>, Error> {
    postcard::from_bytes(body).map_err(|e| Error::Codec(format!("bad request: {e}")))
}

/// Decodes a reply frame's body.
pub(crate) fn decode_reply(body: &[u8]) -> Result<Reply<'_>, Error> {
    postcard::from_bytes(body).map_err(|e| Error::Codec(format!("bad reply: {e}")))
}

/// Encodes a value with postcard.
pub(crate) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, Error> {
    postcard::to_stdvec(v).map_err(|e| Error::Codec(format!("encode: {e}")))
}

/// Decodes arguments; a failure is the caller's [`RemoteErrorKind::BadArguments`].
/// Bytes left over after the arguments are an error too: postcard is not
/// self-describing, and a leftover is the usual sign of a wrong type.
pub(crate) fn dec_args<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, Error> {
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(remote(
            RemoteErrorKind::BadArguments,
            format!("{} bytes left over after the arguments", rest.len()),
        )),
        Err(e) => Err(remote(RemoteErrorKind::BadArguments, e.to_string())),
    }
}

/// Decodes a reply's value.
pub(crate) fn dec<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Error> {
    postcard::from_bytes(b).map_err(|e| Error::Codec(format!("decode: {e}")))
}

/// Appends the varint postcard writes for a length.
pub(crate) fn push_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let r = Request {
            id: 7,
            object: 3,
            method: Some("append"),
            caller: 1 << 40 | 5,
            flags: 0,
            args: Bytes(b"\x01\x02"),
        };
        let mut f = Vec::new();
        encode_frame(&r, &mut f).unwrap();
        let (h, len) = frame::locate(&f, 1 << 20).unwrap().unwrap();
        assert_eq!(len, f.len() - h);
        assert_eq!(decode_request(&f[h..]).unwrap(), r);
        assert!(frame::locate(&f[..f.len() - 1], 1 << 20).unwrap().is_none());
        assert!(frame::locate(&f, 2).is_err());
    }

    #[test]
    fn concatenated_items_decode_as_a_vec() {
        let items: Vec<Vec<u8>> = ["a", "bc", ""].iter().map(|s| enc(*s).unwrap()).collect();
        let mut out = Vec::new();
        push_len(&mut out, items.len());
        for i in &items {
            out.extend_from_slice(i);
        }
        let v: Vec<String> = dec(&out).unwrap();
        assert_eq!(v, ["a", "bc", ""]);
        let mut big = Vec::new();
        push_len(&mut big, 300);
        assert_eq!(big, enc(&300usize).unwrap());
    }
}

/// A bounded fuzz run of the frame decoder (a few thousand cases, well
/// under a second): arbitrary bytes never panic it, never make it allocate
/// for a length it was not given, and well-formed frames come back intact.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Splits a byte stream into frames the way the server does; stops at
    /// the first error or incomplete frame.
    fn drain(mut buf: &[u8], max: usize) -> usize {
        let mut frames = 0;
        while let Ok(Some((h, len))) = frame::locate(buf, max) {
            assert!(h + len <= buf.len());
            let _ = decode_request(&buf[h..h + len]);
            let _ = decode_reply(&buf[h..h + len]);
            buf = &buf[h + len..];
            frames += 1;
        }
        frames
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            drain(&bytes, 1 << 16);
            let _ = decode_request(&bytes);
            let _ = decode_reply(&bytes);
            let _ = dec_args::<(u64, Bytes<'_>)>(&bytes);
            let _ = dec_args::<Vec<(Bytes<'_>, Bytes<'_>)>>(&bytes);
            let _ = dec_args::<ControlOp<'_>>(&bytes);
            let _ = dec_args::<crate::manager::objects::ListOp<'_>>(&bytes);
            let _ = dec_args::<crate::manager::objects::DictOp<'_>>(&bytes);
            let _ = dec_args::<crate::manager::objects::CursorOp>(&bytes);
            let _ = dec_args::<crate::manager::objects::QueueOp<'_>>(&bytes);
            let _ = dec_args::<crate::manager::objects::ConditionOp>(&bytes);
            let _ = dec_args::<crate::manager::objects::BarrierOp>(&bytes);
        }

        #[test]
        fn oversized_and_negative_lengths_are_refused(len in any::<i32>(), max in 0usize..1 << 20) {
            let r = frame::locate(&len.to_be_bytes(), max);
            if len == -1 {
                // The long header: its 64-bit length is still to come.
                prop_assert_eq!(r.unwrap(), None);
            } else if len < 0 || len as usize > max {
                prop_assert!(r.is_err());
            } else if len == 0 {
                prop_assert_eq!(r.unwrap(), Some((4, 0)));
            } else {
                prop_assert_eq!(r.unwrap(), None);
            }
        }

        #[test]
        fn long_headers_are_read_and_bounded(len in any::<u64>(), max in 0usize..1 << 20) {
            let mut buf = vec![0xff; 4];
            buf.extend_from_slice(&len.to_be_bytes());
            let r = frame::locate(&buf, max);
            if len > max as u64 {
                prop_assert!(r.is_err());
            } else if len == 0 {
                prop_assert_eq!(r.unwrap(), Some((12, 0)));
            } else {
                prop_assert_eq!(r.unwrap(), None);
                // Never read past the header into the body's absence.
                prop_assert_eq!(frame::locate(&buf[..11], max).unwrap(), None);
            }
        }

        #[test]
        fn requests_round_trip(
            id in any::<u64>(),
            object in any::<u64>(),
            method in proptest::option::of("[a-z_]{0,20}"),
            caller in any::<u64>(),
            flags in any::<u8>(),
            args in proptest::collection::vec(any::<u8>(), 0..200),
            cut in any::<prop::sample::Index>(),
        ) {
            let r = Request { id, object, method: method.as_deref(), caller, flags, args: Bytes(&args) };
            let mut f = Vec::new();
            encode_frame(&r, &mut f).unwrap();
            // Twice in a row: both come out, in order.
            let one = f.len();
            encode_frame(&r, &mut f).unwrap();
            prop_assert_eq!(drain(&f, 1 << 16), 2);
            let (h, len) = frame::locate(&f, 1 << 16).unwrap().unwrap();
            prop_assert_eq!(decode_request(&f[h..h + len]).unwrap(), r);
            // Any cut inside the first frame is "more bytes needed".
            let at = cut.index(one);
            prop_assert_eq!(frame::locate(&f[..at], 1 << 16).unwrap(), None);
        }

        #[test]
        fn flipped_bytes_never_panic(
            args in proptest::collection::vec(any::<u8>(), 0..64),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let r = Request { id: 1, object: 2, method: None, caller: 3, flags: 0, args: Bytes(&args) };
            let mut f = Vec::new();
            encode_frame(&r, &mut f).unwrap();
            for (i, b) in flips {
                let i = i.index(f.len());
                f[i] ^= b;
            }
            drain(&f, 1 << 16);
        }
    }
}
