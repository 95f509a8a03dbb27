//! The HMAC handshake of an authenticated connection (CPython's, see the
//! [listener's docs](super)): challenges, answers, and one handshake moved
//! along on a non-blocking socket.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use hmac::Hmac;
use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::mac;
use crate::sys::fd::{self, Interest};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// The digest a multiproc challenge asks for.
const PREFERRED_DIGEST: &str = "sha256";
/// Random bytes in a multiproc challenge (after the `{sha256}` prefix).
const NONCE_LEN: usize = 40;
/// The random bytes of an old-style (MD5 only) challenge.
const LEGACY_CHALLENGE_LEN: usize = 20;
/// The length of a bare HMAC-MD5 answer.
const MD5_LEN: usize = 16;
/// The longest handshake message read.
const HANDSHAKE_MAX: usize = 256;

/// The error of a failed authentication (a wrong key on one side or the
/// other, or a peer that does not speak the protocol).
fn auth_failed(msg: &'static str) -> Error {
    Error::AuthenticationFailed(msg)
}

/// Whether `e` is a failed authentication (reported to the caller)
/// rather than a connection dropped quietly.
pub(super) fn is_auth_error(e: &Error) -> bool {
    matches!(e, Error::AuthenticationFailed(_))
}

/// A digest the handshake knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn from_name(name: &[u8]) -> Option<Digest> {
        match name {
            b"md5" => Some(Digest::Md5),
            b"sha256" => Some(Digest::Sha256),
            b"sha384" => Some(Digest::Sha384),
            _ => None,
        }
    }

    fn mac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        match self {
            Digest::Md5 => mac::tag::<Hmac<md5::Md5>>(key, msg),
            Digest::Sha256 => mac::tag::<Hmac<sha2::Sha256>>(key, msg),
            Digest::Sha384 => mac::tag::<Hmac<sha2::Sha384>>(key, msg),
        }
    }

    /// Whether `tag` is the HMAC of `msg`, compared in constant time.
    fn verify(self, key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
        match self {
            Digest::Md5 => mac::verify::<Hmac<md5::Md5>>(key, msg, tag),
            Digest::Sha256 => mac::verify::<Hmac<sha2::Sha256>>(key, msg, tag),
            Digest::Sha384 => mac::verify::<Hmac<sha2::Sha384>>(key, msg, tag),
        }
    }
}

/// Reads the `{name}` prefix of `msg`: the digest and the prefix's length;
/// `None` if `msg` has no known prefix.
fn split_digest(msg: &[u8]) -> Option<(Digest, usize)> {
    let body = msg.strip_prefix(b"{")?;
    let close = body.iter().take(21).position(|&b| b == b'}')?;
    Some((Digest::from_name(&body[..close])?, close + 2))
}

/// Our answer to a challenge message (what follows `#CHALLENGE#`).
fn answer(key: &[u8], msg: &[u8], sha256_only: bool) -> Result<Vec<u8>> {
    if sha256_only {
        return match split_digest(msg) {
            Some((Digest::Sha256, prefix)) => {
                let mut out = msg[..prefix].to_vec();
                out.extend_from_slice(&Digest::Sha256.mac(key, msg));
                Ok(out)
            }
            _ => Err(auth_failed("challenge is not HMAC-SHA256")),
        };
    }
    if msg.len() == LEGACY_CHALLENGE_LEN {
        // The old protocol: HMAC-MD5 of the random bytes, no prefix.
        return Ok(Digest::Md5.mac(key, msg));
    }
    let Some((digest, prefix)) = split_digest(msg) else {
        return Err(auth_failed("challenge with an unknown digest or length"));
    };
    let mut out = msg[..prefix].to_vec();
    out.extend_from_slice(&digest.mac(key, msg));
    Ok(out)
}

/// Whether `response` answers our challenge message `msg` (which follows
/// `#CHALLENGE#`): a `{digest}` answer, or a bare HMAC-MD5 one.
fn verify(key: &[u8], msg: &[u8], response: &[u8], sha256_only: bool) -> bool {
    if sha256_only {
        return match split_digest(response) {
            Some((Digest::Sha256, prefix)) => Digest::Sha256.verify(key, msg, &response[prefix..]),
            _ => false,
        };
    }
    if response.len() == MD5_LEN {
        return Digest::Md5.verify(key, msg, response);
    }
    match split_digest(response) {
        Some((digest, prefix)) => digest.verify(key, msg, &response[prefix..]),
        None => false,
    }
}

/// Which side of the handshake: the server challenges first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Server,
    Client,
}

#[derive(Debug)]
enum State {
    /// We sent a challenge (the message after `#CHALLENGE#`).
    AwaitResponse(Vec<u8>),
    /// The peer's challenge is due (the server's first, or the client's
    /// after it welcomed our answer).
    AwaitChallenge,
    /// We answered the peer's challenge.
    AwaitVerdict,
    /// Everything is sent once the output drains.
    Finish,
    /// `#FAILURE#` is on its way; then this error.
    Failing(&'static str),
}

pub(super) enum Progress {
    Waiting,
    Done,
}

/// One handshake on a non-blocking socket, moved along as it becomes
/// readable or writable.
#[derive(Debug)]
pub(super) struct Handshake {
    pub(super) fd: OwnedFd,
    role: Role,
    /// When the handshake is given up.
    pub(super) deadline: Instant,
    /// Whether the last poll found its socket ready.
    pub(super) ready: bool,
    out: Vec<u8>,
    sent: usize,
    input: Vec<u8>,
    state: State,
    sha256_only: bool,
}

impl Handshake {
    pub(super) fn new(
        fd: OwnedFd,
        role: Role,
        deadline: Instant,
        sha256_only: bool,
    ) -> Result<Handshake> {
        fd::set_nonblocking(fd.as_fd(), true)?;
        let mut h = Handshake {
            fd,
            role,
            deadline,
            ready: false,
            out: Vec::new(),
            sent: 0,
            input: Vec::new(),
            state: State::AwaitChallenge,
            sha256_only,
        };
        if role == Role::Server {
            h.challenge()?;
        }
        Ok(h)
    }

    /// Queues a fresh `{sha256}` challenge.
    fn challenge(&mut self) -> Result<()> {
        let mut msg = format!("{{{PREFERRED_DIGEST}}}").into_bytes();
        let start = msg.len();
        msg.resize(start + NONCE_LEN, 0);
        crate::sys::random::fill(&mut msg[start..])?;
        let mut full = CHALLENGE.to_vec();
        full.extend_from_slice(&msg);
        self.queue(&full);
        self.state = State::AwaitResponse(msg);
        Ok(())
    }

    fn queue(&mut self, msg: &[u8]) {
        self.out
            .extend_from_slice(&(msg.len() as i32).to_be_bytes());
        self.out.extend_from_slice(msg);
    }

    /// What to poll its socket for: room to write while output is queued,
    /// else input.
    pub(super) fn interest(&self) -> Interest {
        if self.sent < self.out.len() {
            Interest::Write
        } else {
            Interest::Read
        }
    }

    /// The socket, blocking again, once the handshake is done.
    pub(super) fn into_fd(self) -> Result<OwnedFd> {
        fd::set_nonblocking(self.fd.as_fd(), false)?;
        Ok(self.fd)
    }

    /// Moves as far as possible without blocking.
    pub(super) fn step(&mut self, key: &[u8]) -> Result<Progress> {
        loop {
            // Drain the output first.
            while self.sent < self.out.len() {
                match crate::sys::socket::send(self.fd.as_fd(), &self.out[self.sent..]) {
                    Ok(n) => self.sent += n,
                    Err(Errno::EAGAIN) => return Ok(Progress::Waiting),
                    Err(Errno::EINTR) => {}
                    Err(e) => {
                        if let State::Failing(msg) = self.state {
                            return Err(auth_failed(msg));
                        }
                        return Err(Error::os("send", e));
                    }
                }
            }
            self.out.clear();
            self.sent = 0;
            match self.state {
                State::Finish => return Ok(Progress::Done),
                State::Failing(msg) => return Err(auth_failed(msg)),
                _ => {}
            }
            let Some(msg) = self.read_message()? else {
                return Ok(Progress::Waiting);
            };
            match std::mem::replace(&mut self.state, State::Finish) {
                State::AwaitResponse(challenge) => {
                    if verify(key, &challenge, &msg, self.sha256_only) {
                        self.queue(WELCOME);
                        self.state = match self.role {
                            Role::Server => State::AwaitChallenge,
                            Role::Client => State::Finish,
                        };
                    } else {
                        self.queue(FAILURE);
                        self.state = State::Failing("digest received was wrong");
                    }
                }
                State::AwaitChallenge => {
                    let Some(body) = msg.strip_prefix(CHALLENGE) else {
                        return Err(auth_failed("expected a challenge"));
                    };
                    let reply = answer(key, body, self.sha256_only)?;
                    self.queue(&reply);
                    self.state = State::AwaitVerdict;
                }
                State::AwaitVerdict => {
                    if msg != WELCOME {
                        return Err(auth_failed("digest sent was rejected"));
                    }
                    match self.role {
                        Role::Server => return Ok(Progress::Done),
                        Role::Client => self.challenge()?,
                    }
                }
                State::Finish | State::Failing(_) => unreachable!("handled above"),
            }
        }
    }

    /// Reads one whole handshake message, if it has arrived; never reads
    /// past its end (what follows belongs to the connection).
    fn read_message(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            let need = if self.input.len() < 4 {
                4
            } else {
                let len = i32::from_be_bytes(self.input[..4].try_into().expect("4 bytes"));
                if len < 0 || len as usize > HANDSHAKE_MAX {
                    return Err(Error::MessageTooLarge {
                        size: if len < 0 { u64::MAX } else { len as u64 },
                        max: HANDSHAKE_MAX as u64,
                    });
                }
                let need = 4 + len as usize;
                if self.input.len() == need {
                    let msg = self.input[4..].to_vec();
                    self.input.clear();
                    return Ok(Some(msg));
                }
                need
            };
            let have = self.input.len();
            self.input.resize(need, 0);
            match fd::read(self.fd.as_fd(), &mut self.input[have..need]) {
                Ok(0) => {
                    self.input.truncate(have);
                    return Err(if have == 0 {
                        Error::Eof
                    } else {
                        Error::Truncated {
                            expected: need as u64,
                            got: have as u64,
                        }
                    });
                }
                Ok(n) => self.input.truncate(have + n),
                Err(Errno::EAGAIN) => {
                    self.input.truncate(have);
                    return Ok(None);
                }
                Err(Errno::EINTR) => self.input.truncate(have),
                Err(e) => {
                    self.input.truncate(have);
                    return Err(Error::os("recv", e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    // Expected values computed with Python's `hmac` module.
    #[test]
    fn answers_match_python() {
        let mut modern = b"{sha256}".to_vec();
        modern.extend_from_slice(&[b'x'; 40]);
        let a = answer(b"k", &modern, false).unwrap();
        assert_eq!(&a[..8], b"{sha256}");
        assert_eq!(
            hex(&a[8..]),
            "c88f5842497f089695cef742fe0f3f0363b08f255b0da59a5907f785657c9504"
        );
        assert!(verify(b"k", &modern, &a, false));
        assert!(!verify(b"K", &modern, &a, false));
        // A 3.11 peer answers our challenge with bare HMAC-MD5 of all of it.
        let md5 = Digest::Md5.mac(b"k", &modern);
        assert_eq!(hex(&md5), "b6d8a95c2aec62a2d758f6fc96cc92cf");
        assert!(verify(b"k", &modern, &md5, false));
        let mut bad = md5.clone();
        bad[0] ^= 1;
        assert!(!verify(b"k", &modern, &bad, false));
        // The old challenge: 20 bytes, answered with bare HMAC-MD5.
        let old = answer(b"k", &[b'y'; 20], false).unwrap();
        assert_eq!(hex(&old), "80977f5d629fcb3509faf2e12c90e153");
        // Unknown digests are refused.
        assert!(answer(b"k", b"{sha3_512}aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false).is_err());
        assert!(!verify(b"k", &modern, b"{nope}abc", false));
        // SHA-256 only: the MD5 answers and challenges are refused.
        assert!(verify(b"k", &modern, &a, true));
        assert!(!verify(b"k", &modern, &md5, true));
        assert!(answer(b"k", &[b'y'; 20], true).is_err());
        assert_eq!(answer(b"k", &modern, true).unwrap(), a);
        let mut md5_challenge = b"{md5}".to_vec();
        md5_challenge.extend_from_slice(&[b'x'; 40]);
        assert!(answer(b"k", &md5_challenge, true).is_err());
        assert!(answer(b"k", &md5_challenge, false).is_ok());
    }
}

/// A bounded fuzz run of the handshake (a few hundred exchanges): whatever
/// a peer sends before it stops writing, either side's handshake ends
/// (never waits once the input ended), never panics, and never lets the
/// peer in without the key.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::connection::listener::client::far_future;
    use proptest::prelude::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn garbage_never_authenticates(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            server in any::<bool>(),
            framed in any::<bool>(),
            sha256_only in any::<bool>(),
        ) {
            let (ours, mut peer) = UnixStream::pair().unwrap();
            // Half the cases frame the garbage like handshake messages, so
            // that it reaches the digest checks.
            let mut input = Vec::new();
            if framed {
                input.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            }
            input.extend_from_slice(&bytes);
            peer.write_all(&input).unwrap();
            peer.shutdown(std::net::Shutdown::Write).unwrap();
            let role = if server { Role::Server } else { Role::Client };
            let mut h = Handshake::new(ours.into(), role, far_future(), sha256_only).unwrap();
            let mut ended = false;
            for _ in 0..16 {
                match h.step(b"key") {
                    Ok(Progress::Done) => prop_assert!(false, "garbage authenticated"),
                    Ok(Progress::Waiting) => {}
                    Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
            prop_assert!(ended, "the handshake kept waiting on ended input");
        }
    }
}
