//! Sending a `Connection` itself to another process
//! (`send_connection`/`recv_connection`, Python's pickled connections):
//! a grandchild gets, through its parent, an end made after both forks and
//! talks over it with its grandparent, for every kind of end; and what a
//! hostile peer sends instead of a connection is refused with a clear
//! error, its descriptors closed.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use common::{PATIENCE, join_ok, serial, spawn_in};
use multiproc::connection::pipe_os;
use multiproc::{Connection, RecvError, SendError, pipe};

/// Waits (bounded) for the carrier's socket to be readable (the record
/// rides on it, beside a shared-memory pipe's ring, which `poll` watches),
/// then takes the connection sent over it.
fn recv_conn(c: &Connection) -> Connection {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(c.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(PATIENCE).unwrap();
    assert_eq!(poll(&mut fds, ms).unwrap(), 1, "no connection came");
    c.recv_connection().expect("recv_connection")
}

/// Waits (bounded) for a message on `c`.
fn recv(c: &Connection) -> Vec<u8> {
    assert!(c.poll(Some(PATIENCE)).unwrap(), "no message came");
    c.recv_bytes().expect("recv_bytes")
}

/// The three kinds of ends the crate makes: `(grandparent's end, the end
/// passed down)`; the passed end of a one-way pair is its writer.
fn make(kind: &str) -> (Connection, Connection) {
    match kind {
        "shm duplex" => pipe(true).unwrap(),
        "shm one-way" => pipe(false).unwrap(),
        "socket" => pipe_os(true).unwrap(),
        "kernel pipe" => pipe_os(false).unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn a_grandchild_talks_to_its_grandparent_over_a_passed_end() {
    let _s = serial();
    for kind in ["shm duplex", "shm one-way", "socket", "kernel pipe"] {
        let duplex = kind == "shm duplex" || kind == "socket";
        // Grandparent <-> parent: made before the first fork.
        let (to_parent, from_grandparent) = pipe(true).unwrap();
        multiproc::process::scope(|s| {
            let mut parent = spawn_in(s, || {
                // Parent <-> grandchild: made in the parent.
                let (to_child, from_parent) = pipe(true).unwrap();
                multiproc::process::scope(|s2| {
                    let mut child = spawn_in(s2, || {
                        let end = recv_conn(&from_parent);
                        assert!(end.writable());
                        assert_eq!(end.readable(), duplex);
                        assert_eq!(end.max_message(), 1 << 20);
                        end.send_bytes(b"hello from the grandchild").unwrap();
                        if duplex {
                            assert_eq!(recv(&end), b"hello from the grandparent");
                            end.send_bytes(&vec![7u8; 1 << 20]).unwrap();
                        }
                    });
                    // Passed on as received: the parent never uses it.
                    let end = recv_conn(&from_grandparent);
                    to_child.send_connection(&end).unwrap();
                    drop(end);
                    join_ok(&mut child);
                });
            });
            // Made after the fork: the parent cannot have inherited it.
            let (mine, theirs) = make(kind);
            let theirs = theirs.with_max_message(1 << 20);
            to_parent.send_connection(&theirs).unwrap();
            drop(theirs);
            assert_eq!(recv(&mine), b"hello from the grandchild", "{kind}");
            if duplex {
                mine.send_bytes(b"hello from the grandparent").unwrap();
                let big = recv(&mine);
                assert_eq!(big.len(), 1 << 20, "{kind}");
                assert!(big.iter().all(|&b| b == 7));
            }
            join_ok(&mut parent);
            // Every holder of the passed end has ended: end of stream.
            assert!(mine.poll(Some(PATIENCE)).unwrap(), "{kind}");
            assert!(
                matches!(mine.recv_bytes(), Err(RecvError::Eof)),
                "{kind}: the passed end was the last copy"
            );
        });
    }
}

#[test]
fn only_a_unix_socket_carries_connections() {
    let _s = serial();
    let (r, w) = pipe_os(false).unwrap();
    let (a, _b) = pipe(true).unwrap();
    assert!(matches!(
        w.send_connection(&a),
        Err(SendError::BadConnection(_))
    ));
    assert!(matches!(
        r.recv_connection(),
        Err(RecvError::BadConnection(_))
    ));
}

/// A 16-byte record as `send_connection` writes it.
fn record(kind: u8, flags: u8, tx: u8) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..5].copy_from_slice(&[b'C', 1, kind, flags, tx]);
    r[8..].copy_from_slice(&(1u64 << 20).to_le_bytes());
    r
}

/// Sends `bytes` with `fds` attached, as a hostile peer would.
fn send_raw(on: &Connection, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(
        on.as_raw_fd(),
        &[IoSlice::new(bytes)],
        cmsgs,
        MsgFlags::empty(),
        None,
    )
    .unwrap();
}

/// A memfd of `len` bytes, its size sealed when `sealed`.
fn memfd(len: i64, sealed: bool) -> OwnedFd {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(c"hostile", MFdFlags::MFD_ALLOW_SEALING).unwrap();
    nix::unistd::ftruncate(&fd, len).unwrap();
    if sealed {
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW),
        )
        .unwrap();
    }
    fd
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn a_hostile_peer_gets_a_clear_error_and_its_descriptors_closed() {
    let _s = serial(); // counts this process's descriptors
    let (sock_a, sock_b) = pipe_os(true).unwrap();
    let (pipe_r, _pipe_w) = pipe_os(false).unwrap();
    let big = 3 << 20;
    let cases: Vec<(&str, Vec<u8>, Vec<OwnedFd>)> = vec![
        (
            "a shared-memory end whose memfd is not sealed",
            record(1, 3, 0).to_vec(),
            vec![
                sock_a.as_fd().try_clone_to_owned().unwrap(),
                memfd(big, false),
            ],
        ),
        (
            "a shared-memory end whose memfd is too small",
            record(1, 3, 0).to_vec(),
            vec![
                sock_a.as_fd().try_clone_to_owned().unwrap(),
                memfd(4096, true),
            ],
        ),
        (
            "a shared-memory end whose doorbell is a kernel pipe",
            record(1, 3, 0).to_vec(),
            vec![
                pipe_r.as_fd().try_clone_to_owned().unwrap(),
                memfd(big, true),
            ],
        ),
        (
            "an end whose descriptor is a file",
            record(0, 3, 0).to_vec(),
            vec![memfd(4096, false)],
        ),
        (
            "an end with a descriptor too many",
            record(0, 3, 0).to_vec(),
            vec![
                sock_a.as_fd().try_clone_to_owned().unwrap(),
                memfd(4096, false),
            ],
        ),
        (
            "a shared-memory end without its memfd",
            record(1, 3, 1).to_vec(),
            vec![sock_a.as_fd().try_clone_to_owned().unwrap()],
        ),
        (
            "an end with a dozen descriptors",
            record(0, 3, 0).to_vec(),
            (0..12).map(|_| memfd(4096, false)).collect(),
        ),
        (
            "an unknown kind",
            record(9, 3, 0).to_vec(),
            vec![sock_a.as_fd().try_clone_to_owned().unwrap()],
        ),
        (
            "a third direction",
            record(1, 3, 2).to_vec(),
            vec![
                sock_a.as_fd().try_clone_to_owned().unwrap(),
                memfd(big, true),
            ],
        ),
        (
            "a handle (Python's byte 1) where a connection was expected",
            {
                let mut r = record(0, 3, 0);
                r[0] = 1;
                r.to_vec()
            },
            vec![sock_a.as_fd().try_clone_to_owned().unwrap()],
        ),
    ];
    for (what, bytes, fds) in cases {
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        send_raw(&sock_a, &bytes, &borrowed);
        drop(fds);
        // Descriptors in flight are not in this process's table.
        let before = open_fds();
        match sock_b.recv_connection() {
            Err(RecvError::Decode(m)) => {
                assert!(m.contains("refused"), "{what}: {m}")
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
        let after = open_fds();
        assert_eq!(
            after, before,
            "{what}: received descriptors left open ({before} before, {after} after)"
        );
    }
    // The carrier still works after all that.
    sock_a.send_bytes(b"still fine").unwrap();
    assert_eq!(recv(&sock_b), b"still fine");
}

#[test]
fn a_passed_end_keeps_working_beside_its_original() {
    // Serialised: the hostile-peer test counts this process's descriptors.
    let _s = serial();
    // In one process: the original and the received copy of one end both
    // send; the peer sees both, in order.
    let (carrier_a, carrier_b) = pipe(true).unwrap();
    let (mine, theirs) = pipe(true).unwrap();
    carrier_a.send_connection(&theirs).unwrap();
    carrier_a.send_bytes(b"a message beside it").unwrap();
    let copy = recv_conn(&carrier_b);
    assert_eq!(recv(&carrier_b), b"a message beside it");
    theirs.send_bytes(b"original").unwrap();
    copy.send_bytes(b"copy").unwrap();
    assert_eq!(recv(&mine), b"original");
    assert_eq!(recv(&mine), b"copy");
    drop(theirs);
    mine.send_bytes(b"to whoever holds it").unwrap();
    assert_eq!(recv(&copy), b"to whoever holds it");
    drop(copy);
    assert!(mine.poll(Some(Duration::from_secs(5))).unwrap());
    assert!(matches!(mine.recv_bytes(), Err(RecvError::Eof)));
}
