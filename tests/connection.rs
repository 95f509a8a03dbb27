//! Pipe and Connection across real processes: boundaries, sizes, end of
//! stream, truncation, oversized messages, polling, waiting, and the wire
//! format against CPython's `multiprocessing.connection`.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{PATIENCE, join_ok, serial, spawn, spawn_in};
use multiproc::connection::pipe_os;
use multiproc::{Connection, RecvError, SendError, pipe};

#[test]
fn boundaries_and_sizes_across_processes() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    let sizes = [0usize, 1, 2, 4095, 16 * 1024 + 1, 64 * 1024, 64 << 20];
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            for &n in &sizes {
                let msg: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                b.send_bytes(&msg).unwrap();
                // Echo back what the parent sends, reversed.
                let back = b.recv_bytes().unwrap();
                assert_eq!(back.len(), n);
            }
        });
        for &n in &sizes {
            let m = a.recv_bytes().unwrap();
            assert_eq!(m.len(), n, "one message per send, whole");
            assert!(m.iter().enumerate().all(|(i, &x)| x == (i % 251) as u8));
            a.send_bytes(&m).unwrap();
        }
        join_ok(&mut p);
    })
}

#[test]
fn one_way_pipe() {
    let _s = serial();
    let (r, w) = pipe(false).unwrap();
    assert!(r.readable() && !r.writable());
    assert!(w.writable() && !w.readable());
    assert!(matches!(
        r.send_bytes(b"x"),
        Err(SendError::BadConnection(_))
    ));
    assert!(matches!(w.recv_bytes(), Err(RecvError::BadConnection(_))));
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            for i in 0..1000u32 {
                w.send_bytes(&i.to_le_bytes()).unwrap();
            }
        });
        for i in 0..1000u32 {
            assert_eq!(r.recv_bytes().unwrap(), i.to_le_bytes());
        }
        join_ok(&mut p);
    })
}

#[test]
fn end_of_stream_when_every_copy_of_the_peer_is_closed() {
    let _s = serial();
    let (r, w) = pipe(false).unwrap();
    let mut p = spawn(move || {
        w.send_bytes(b"last words").unwrap();
        // The child's copy of `w` closes at exit; so does the parent's
        // (moved into this closure, dropped with the Process).
    });
    join_ok(&mut p);
    drop(p);
    assert_eq!(r.recv_bytes().unwrap(), b"last words");
    assert!(matches!(r.recv_bytes(), Err(RecvError::Eof)));
    assert!(
        matches!(r.recv_bytes(), Err(RecvError::Eof)),
        "and it stays so"
    );
    // A peer process that dies holding the only copy: end of stream too.
    let (a, b) = pipe(true).unwrap();
    let mut q = spawn(move || {
        let _b = b;
        common::hang();
    });
    q.kill().unwrap();
    q.join().unwrap();
    drop(q);
    assert!(matches!(a.recv_bytes(), Err(RecvError::Eof)));
}

fn die() {
    multiproc::process::exit(0);
}

/// Both kinds of duplex pair: shared memory (`pipe`) and OS-only
/// (`pipe_os`).
fn duplex_kinds() -> [(&'static str, (Connection, Connection)); 2] {
    [
        ("shared-memory pipe", pipe(true).unwrap()),
        ("os pipe", pipe_os(true).unwrap()),
    ]
}

#[test]
fn a_writer_killed_mid_message_gives_a_truncated_error() {
    let _s = serial();
    for (kind, (a, b)) in duplex_kinds() {
        let mut p = spawn(move || {
            // Announce 1000 bytes, send 10, die.
            let mut raw = 1000i32.to_be_bytes().to_vec();
            raw.extend_from_slice(&[9u8; 10]);
            b.__send_raw(&raw).unwrap();
            // Die without closing cleanly (the descriptor closes with the
            // process, as after a SIGKILL).
            die();
        });
        join_ok(&mut p);
        drop(p);
        match a.recv_bytes() {
            Err(RecvError::Truncated { expected, got }) => {
                assert_eq!((expected, got), (1000, 10), "{kind}");
            }
            other => panic!("{kind}: expected Truncated, got {other:?}"),
        }
    }
}

#[test]
fn a_writer_killed_by_sigkill_mid_message_gives_a_truncated_error() {
    let _s = serial();
    // A message four times the ring: the writer is stopped by the full
    // ring, and killed there.
    const N: usize = 1 << 20;
    let (a, b) = pipe(true).unwrap();
    let mut p = spawn(move || {
        b.send_bytes(&vec![1u8; N]).unwrap();
        common::hang();
    });
    std::thread::sleep(Duration::from_millis(50));
    p.kill().unwrap();
    p.join().unwrap();
    drop(p);
    match a.recv_bytes() {
        Err(RecvError::Truncated { expected, got }) => {
            assert_eq!(expected, N as u64);
            assert!(got < N as u64 && got > 0, "got {got}");
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert!(matches!(a.recv_bytes(), Err(RecvError::Eof)));
}

#[test]
fn oversized_messages_are_refused_and_skipped() {
    // End of stream needs every copy of the peer closed: no test may fork
    // (and inherit it) meanwhile.
    let _s = serial();
    for (kind, (a, b)) in duplex_kinds() {
        oversized(kind, a, b);
    }
}

fn oversized(kind: &str, a: Connection, b: Connection) {
    let b = b.with_max_message(1000);
    a.send_bytes(&[1u8; 5000]).unwrap();
    a.send_bytes(b"next").unwrap();
    match b.recv_bytes() {
        Err(RecvError::MessageTooLarge { size, max }) => assert_eq!((size, max), (5000, 1000)),
        other => panic!("{kind}: expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(
        b.recv_bytes().unwrap(),
        b"next",
        "{kind}: the stream stays usable"
    );
    // A header that lies about a huge size is never allocated.
    let lie = (-1i32)
        .to_be_bytes()
        .into_iter()
        .chain((1u64 << 60).to_be_bytes());
    let raw: Vec<u8> = lie.collect();
    a.__send_raw(&raw).unwrap();
    drop(a);
    assert!(
        matches!(b.recv_bytes(), Err(RecvError::MessageTooLarge { .. })),
        "{kind}"
    );
    assert!(matches!(b.recv_bytes(), Err(RecvError::Eof)), "{kind}");
}

#[test]
fn recv_bytes_into_and_buffer_too_short() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(b"short").unwrap();
    a.send_bytes(b"much too long").unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"short");
    match b.recv_bytes_into(&mut buf) {
        Err(RecvError::BufferTooShort(m)) => assert_eq!(m, b"much too long"),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
}

#[test]
fn writing_to_a_closed_peer_is_an_error_not_a_death() {
    // End of stream needs every copy of the peer closed: no test may fork
    // (and inherit it) meanwhile.
    let _s = serial();
    for (kind, (a, b)) in duplex_kinds() {
        drop(b);
        let e = a.send_bytes(b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{kind}: {e}");
    }
    let (r, w) = pipe(false).unwrap();
    drop(r);
    assert!(matches!(w.send_bytes(b"x"), Err(SendError::Os { .. })));
}

/// A writer learns that a reader asleep in `recv` (its bell armed) died
/// through the bell it sends, without a poll of its own; the next message
/// (the bell taken back by then) through the poll.
#[test]
fn writing_to_a_reader_killed_asleep_is_an_error() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    let (ready_r, ready_w) = pipe(false).unwrap();
    let mut reader = spawn(move || {
        ready_w.send_bytes(b"up").unwrap();
        let _ = b.recv_bytes();
    });
    assert_eq!(ready_r.recv_bytes().unwrap(), b"up");
    // Not needed for the outcome (either way the send fails), only to
    // make it likely that the reader sleeps with its bell armed.
    std::thread::sleep(Duration::from_millis(50));
    reader.kill().unwrap();
    reader.join().unwrap();
    drop(reader);
    for _ in 0..2 {
        let e = a.send_bytes(b"anyone?").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e}");
    }
}

#[test]
fn poll_never_consumes_and_waits_its_timeout() {
    // End of stream needs every copy of the peer closed: no test may fork
    // (and inherit it) meanwhile.
    let _s = serial();
    for (_, (a, b)) in duplex_kinds() {
        poll_never_consumes(a, b);
    }
}

fn poll_never_consumes(a: Connection, b: Connection) {
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    let t = Instant::now();
    assert!(!b.poll(Some(Duration::from_millis(30))).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(30));
    a.send_bytes(b"m").unwrap();
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert!(b.poll(None).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"m");
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    drop(a);
    assert!(
        b.poll(Some(Duration::ZERO)).unwrap(),
        "end of stream is readable"
    );
}

#[test]
fn wait_over_connections_and_processes() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    let (c, d) = pipe(true).unwrap();
    let go = multiproc::Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            go.wait();
            d.send_bytes(b"from the child").unwrap();
        });
        let objs: [&dyn multiproc::process::Waitable; 3] = [&b, &c, &p];
        assert!(
            multiproc::process::wait(&objs, Some(Duration::from_millis(20)))
                .unwrap()
                .is_empty()
        );
        a.send_bytes(b"x").unwrap();
        assert_eq!(
            multiproc::process::wait(&objs, Some(PATIENCE)).unwrap(),
            vec![0]
        );
        go.set();
        join_ok(&mut p);
        let ready = multiproc::process::wait(&[&c, &p], Some(PATIENCE)).unwrap();
        assert_eq!(ready, vec![0, 1]);
        assert_eq!(c.recv_bytes().unwrap(), b"from the child");
    })
}

#[cfg(feature = "spawn")]
#[test]
fn send_and_recv_values() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Msg {
        id: u32,
        text: String,
        parts: Vec<f64>,
    }
    let (a, b) = pipe(true).unwrap();
    let m = Msg {
        id: 7,
        text: "seven".into(),
        parts: vec![0.5, 1.5],
    };
    a.send(&m).unwrap();
    assert_eq!(b.recv::<Msg>().unwrap(), m);
    b.send_bytes(b"\xff\xff").unwrap();
    assert!(matches!(a.recv::<Msg>(), Err(RecvError::Decode(_))));
}

/// A python3 peer on an inherited descriptor: the framing is CPython's.
fn python_peer(conn: &Connection, script: &str) -> std::process::Child {
    let fd = conn.as_raw_fd();
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c").arg(script).arg(fd.to_string());
    let inherit = move || {
        // SAFETY: F_SETFD on a descriptor number touches no memory.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: only fcntl, async-signal-safe, between fork and exec.
    unsafe { cmd.pre_exec(inherit) };
    cmd.spawn()
        .expect("python3 is needed for the interop tests")
}

#[test]
fn wire_compatible_with_python() {
    // Serialized: the python child must not be taken for another test's
    // left-behind child, nor inherit another test's descriptors.
    let _s = serial();
    // An inherited descriptor read by another program: the OS-only kind.
    let (a, b) = pipe_os(true).unwrap();
    let script = r#"
import sys
from multiprocessing.connection import Connection
c = Connection(int(sys.argv[1]))
while True:
    try:
        m = c.recv_bytes()
    except EOFError:
        break
    c.send_bytes(m[::-1])
"#;
    let mut py = python_peer(&b, script);
    drop(b);
    for n in [0usize, 1, 100, 70_000, 3 << 20] {
        let msg: Vec<u8> = (0..n).map(|i| (i * 7 % 256) as u8).collect();
        a.send_bytes(&msg).unwrap();
        let back = a.recv_bytes().unwrap();
        let mut want = msg.clone();
        want.reverse();
        assert_eq!(back, want, "python reversed a {n}-byte message");
    }
    drop(a);
    assert!(py.wait().unwrap().success());
}

#[test]
fn messages_over_two_gib_use_the_long_header() {
    let _s = serial();
    const N: usize = (1 << 31) + 17;
    let (a, b) = pipe(true).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            let mut big = vec![3u8; N];
            big[N - 1] = 4;
            b.send_bytes(&big).unwrap();
        });
        let m = a.recv_bytes().unwrap();
        assert_eq!(m.len(), N);
        assert_eq!((m[0], m[N - 1]), (3, 4));
        join_ok(&mut p);
    })
}

#[test]
fn shared_memory_pipe_messages_left_by_a_dead_peer_are_read_before_eof() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    let mut p = spawn(move || {
        for i in 0..3u8 {
            b.send_bytes(&vec![i; 1000 * (i as usize + 1)]).unwrap();
        }
        die();
    });
    join_ok(&mut p);
    drop(p);
    for i in 0..3u8 {
        assert_eq!(a.recv_bytes().unwrap(), vec![i; 1000 * (i as usize + 1)]);
    }
    assert!(matches!(a.recv_bytes(), Err(RecvError::Eof)));
    assert!(
        a.poll(Some(Duration::ZERO)).unwrap(),
        "end of stream polls ready"
    );
}

#[test]
fn shared_memory_pipe_several_senders_and_receivers_on_one_end() {
    let _s = serial();
    // Messages larger than the ring, so a sender must wait for room in the
    // middle of one, while the other sender and the other receiver run.
    const BIG: usize = 600 << 10;
    let (a, b) = pipe(true).unwrap();
    let results = multiproc::Array::<u64>::zeroed(2).unwrap();
    multiproc::process::scope(|ps| {
        let senders: Vec<_> = (0..2u8)
            .map(|k| {
                let b = &b;
                spawn_in(ps, move || {
                    for i in 0..20usize {
                        let n = if i % 5 == 0 { BIG } else { 100 + i };
                        b.send_bytes(&vec![k * 100 + i as u8; n]).unwrap();
                    }
                })
            })
            .collect();
        let receivers: Vec<_> = (0..2usize)
            .map(|r| {
                let (a, results) = (&a, &results);
                spawn_in(ps, move || {
                    let mut seen = 0u64;
                    for _ in 0..20 {
                        let m = a.recv_bytes().unwrap();
                        // Whole and unmixed: one byte value, a size it was sent with.
                        assert!(m.iter().all(|&x| x == m[0]), "a mixed message");
                        let i = (m[0] % 100) as usize;
                        let want = if i.is_multiple_of(5) { BIG } else { 100 + i };
                        assert_eq!(m.len(), want);
                        seen += 1;
                    }
                    results.set(r, seen).unwrap();
                })
            })
            .collect();
        for mut p in senders.into_iter().chain(receivers) {
            join_ok(&mut p);
        }
        assert_eq!(results.get(0).unwrap() + results.get(1).unwrap(), 40);
        assert!(!a.poll(Some(Duration::ZERO)).unwrap());
    })
}

#[test]
fn shared_memory_pipe_sender_waiting_for_room_sees_the_reader_die() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    // The child inherits both ends and never reads; the parent closes its
    // copy of `b`. Fill the ring, then kill the reader (the last holder of
    // `b`) while this sender waits for room.
    let mut reader = spawn(common::hang);
    drop(b);
    let killer = std::thread::spawn({
        let pid = reader.pid().unwrap();
        move || {
            std::thread::sleep(Duration::from_millis(100));
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
                .unwrap();
        }
    });
    let t = Instant::now();
    let e = a.send_bytes(&vec![0u8; 4 << 20]);
    killer.join().unwrap();
    reader.join().unwrap();
    drop(reader);
    let e = e.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e}");
    assert!(t.elapsed() < PATIENCE);
}

#[test]
fn shared_memory_pipe_poll_wakes_on_data_from_another_process() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            // Long enough for the parent to be asleep in poll.
            std::thread::sleep(Duration::from_millis(100));
            b.send_bytes(b"wake up").unwrap();
        });
        let t = Instant::now();
        assert!(a.poll(Some(PATIENCE)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(90));
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(
            a.poll(Some(Duration::ZERO)).unwrap(),
            "poll consumed nothing"
        );
        assert_eq!(a.recv_bytes().unwrap(), b"wake up");
        join_ok(&mut p);
    })
}

/// The event-loop pattern the `Connection` docs give for a shared-memory
/// pipe: a `poll` with a zero timeout that finds nothing arms the
/// descriptor, so the caller's own `poll(2)` on it (as an epoll or mio loop
/// would do) wakes when the next message comes; a wake-up without a message
/// (an old bell) only sends the loop round again.
#[test]
fn shared_memory_pipe_descriptor_wakes_an_outside_poll_once_armed() {
    use std::os::fd::AsFd;
    let _s = serial();
    const N: u8 = 20;
    let (a, b) = pipe(true).unwrap();
    let (go_a, go_b) = pipe(true).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, move || {
            for i in 0..N {
                // One message per round, sent once the parent is about to
                // sleep in its own poll.
                assert_eq!(go_b.recv_bytes().unwrap(), [i]);
                std::thread::sleep(Duration::from_millis(2));
                b.send_bytes(&[i]).unwrap();
            }
        });
        let t = Instant::now();
        for i in 0..N {
            go_a.send_bytes(&[i]).unwrap();
            loop {
                // `poll(0)`: true if a message is there; false arms the bell.
                if a.poll(Some(Duration::ZERO)).unwrap() {
                    break;
                }
                assert!(t.elapsed() < PATIENCE, "round {i}: no message");
                let mut fds = [nix::poll::PollFd::new(
                    a.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                // Bounded, so a missing bell fails the test, not hangs it.
                let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap();
                assert!(
                    n > 0,
                    "round {i}: the armed descriptor never polled readable"
                );
            }
            assert_eq!(a.recv_bytes().unwrap(), [i]);
        }
        assert!(t.elapsed() < PATIENCE);
        join_ok(&mut p);
    })
}

#[test]
fn send_handle_passes_a_descriptor_the_peer_did_not_have() {
    let _s = serial();
    multiproc::process::scope(|_| {
        for (kind, (a, b)) in duplex_kinds() {
            let mut p = spawn(move || {
                // Let the parent fall asleep in recv_bytes, so that a bell byte
                // (shared-memory kind) precedes the handle on its socket.
                std::thread::sleep(Duration::from_millis(100));
                b.send_bytes(b"first").unwrap();
                // A pipe made after the fork: the parent cannot have it.
                let (r, w) = nix::unistd::pipe().unwrap();
                b.send_handle(std::os::fd::AsFd::as_fd(&w)).unwrap();
                drop(w);
                b.send_bytes(b"after").unwrap();
                let mut got = Vec::new();
                let mut f = std::fs::File::from(r);
                std::io::Read::read_to_end(&mut f, &mut got).unwrap();
                assert_eq!(got, b"written through the passed handle");
            });
            assert_eq!(a.recv_bytes().unwrap(), b"first", "{kind}");
            let fd = a.recv_handle().unwrap();
            assert_eq!(a.recv_bytes().unwrap(), b"after", "{kind}");
            let mut f = std::fs::File::from(fd);
            std::io::Write::write_all(&mut f, b"written through the passed handle").unwrap();
            drop(f);
            join_ok(&mut p);
        }
        // A kernel pipe is not a socket.
        let (r, w) = pipe_os(false).unwrap();
        assert!(matches!(
            w.send_handle(std::os::fd::AsFd::as_fd(&r)),
            Err(SendError::BadConnection(_))
        ));
        assert!(matches!(r.recv_handle(), Err(RecvError::BadConnection(_))));
        // The peer closed without sending one: end of stream.
        let (a, b) = pipe(true).unwrap();
        drop(b);
        assert!(matches!(a.recv_handle(), Err(RecvError::Eof)));
    })
}

#[test]
fn handles_pass_to_and_from_python() {
    // Serialized: the python child must not be taken for another test's
    // left-behind child, nor inherit another test's descriptors.
    let _s = serial();
    let (a, b) = pipe_os(true).unwrap();
    let script = r#"
import os, sys
from multiprocessing.connection import Connection
from multiprocessing import reduction
c = Connection(int(sys.argv[1]))
fd = reduction.recv_handle(c)
os.write(fd, b"python wrote this")
os.close(fd)
r, w = os.pipe()
reduction.send_handle(c, w, 0)
os.close(w)
c.send_bytes(b"sent")
print(os.read(r, 100).decode(), end="")
"#;
    let fd = b.as_raw_fd();
    let mut cmd = std::process::Command::new("python3");
    cmd.arg("-c").arg(script).arg(fd.to_string());
    cmd.stdout(std::process::Stdio::piped());
    let inherit = move || {
        // SAFETY: F_SETFD on a descriptor number touches no memory.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: only fcntl, async-signal-safe, between fork and exec.
    unsafe { cmd.pre_exec(inherit) };
    let py = cmd
        .spawn()
        .expect("python3 is needed for the interop tests");
    drop(b);
    let (r, w) = nix::unistd::pipe().unwrap();
    a.send_handle(std::os::fd::AsFd::as_fd(&w)).unwrap();
    drop(w);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(r), &mut got).unwrap();
    assert_eq!(got, b"python wrote this");
    let theirs = a.recv_handle().unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"sent");
    std::io::Write::write_all(&mut std::fs::File::from(theirs), b"rust wrote this").unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"rust wrote this");
}

/// The 12 bytes of a long header announcing `n` bytes.
fn long_header(n: u64) -> Vec<u8> {
    let mut raw = (-1i32).to_be_bytes().to_vec();
    raw.extend_from_slice(&n.to_be_bytes());
    raw
}

/// Limits this process's address space to what it maps now plus `extra`
/// bytes (in a child: an allocation past it fails, and a failed `Vec`
/// allocation aborts the process).
fn limit_address_space(extra: u64) {
    let kib = common::status_kib(std::process::id() as i32, "VmSize:");
    let lim = libc::rlimit {
        rlim_cur: kib * 1024 + extra,
        rlim_max: kib * 1024 + extra,
    };
    // SAFETY: setrlimit reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
}

#[test]
fn a_forged_huge_header_is_not_allocated_on_its_word() {
    let _s = serial();
    // Both receive calls, on every kind of connection: a peer announces
    // 0xF0000000 bytes, sends 10 and closes. The receiver, allowed 32 MiB
    // more address space, must see a truncated message, not die.
    for into in [false, true] {
        let kinds = [
            ("shared-memory pipe", pipe(true).unwrap()),
            ("os socketpair", pipe_os(true).unwrap()),
            ("os pipe", {
                let (r, w) = pipe_os(false).unwrap();
                (w, r)
            }),
        ];
        for (kind, (a, b)) in kinds {
            let mut raw = long_header(0xF000_0000);
            raw.extend_from_slice(&[7u8; 10]);
            a.__send_raw(&raw).unwrap();
            // Closed before the fork: the child has no copy of it.
            drop(a);
            let mut p = spawn(move || -> Result<(), String> {
                limit_address_space(32 << 20);
                let r = if into {
                    b.recv_bytes_into(&mut [0u8; 16]).map(drop)
                } else {
                    b.recv_bytes().map(drop)
                };
                match r {
                    Err(RecvError::Truncated { expected, got })
                        if (expected, got) == (0xF000_0000, 10) => {}
                    other => return Err(format!("expected Truncated, got {other:?}")),
                }
                match b.recv_bytes() {
                    Err(RecvError::Eof) => Ok(()),
                    other => Err(format!("expected Eof, got {other:?}")),
                }
            });
            let st = p.join().unwrap();
            assert!(
                st.success(),
                "{kind} (into: {into}): the receiver ended with {st:?}"
            );
        }
    }
}

#[test]
fn an_oversized_message_cut_short_is_too_large_then_end_of_stream() {
    let _s = serial();
    for (kind, (a, b)) in duplex_kinds() {
        let b = b.with_max_message(1000);
        // Announced over the maximum; what follows is its body (here a
        // frame-looking "ok", which is not a message of its own), then the
        // sender closes.
        let mut raw = long_header(5000);
        raw.extend_from_slice(b"\0\0\0\x02ok");
        a.__send_raw(&raw).unwrap();
        drop(a);
        match b.recv_bytes() {
            Err(RecvError::MessageTooLarge { size, max }) => assert_eq!((size, max), (5000, 1000)),
            other => panic!("{kind}: expected MessageTooLarge, got {other:?}"),
        }
        assert!(matches!(b.recv_bytes(), Err(RecvError::Eof)), "{kind}");
    }
}

#[test]
fn an_oversized_message_whose_body_never_comes_does_not_hang() {
    for (kind, (a, b)) in duplex_kinds() {
        let b = b.with_max_message(1000);
        let mut raw = long_header(5000);
        raw.extend_from_slice(b"\0\0\0\x02ok");
        a.__send_raw(&raw).unwrap();
        // The sender keeps its end open and sends nothing more.
        let (tx, rx) = std::sync::mpsc::channel();
        let start = Instant::now();
        std::thread::spawn(move || {
            let first = b.recv_bytes();
            let second = b.recv_bytes();
            let _ = tx.send((first, second));
        });
        let (first, second) = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("{kind}: the receive never returned"));
        let took = start.elapsed();
        assert!(
            matches!(
                first,
                Err(RecvError::MessageTooLarge {
                    size: 5000,
                    max: 1000
                })
            ),
            "{kind}: {first:?}"
        );
        // Out of step: refused at once, never read as a header.
        assert!(
            matches!(second, Err(RecvError::BadConnection(_))),
            "{kind}: {second:?}"
        );
        assert!(
            took >= multiproc::connection::SKIP_IDLE && took < multiproc::connection::SKIP_IDLE * 3,
            "{kind}: took {took:?}"
        );
        drop(a);
    }
}

#[test]
fn a_python_peer_announcing_too_much_and_stalling_does_not_hang_us() {
    // Serialized: the python child must not inherit other tests' ends.
    let _s = serial();
    let (a, b) = pipe_os(true).unwrap();
    // A long header announcing 0xF0000000 bytes, a frame-looking "ok"
    // (part of that body), then nothing until we close.
    let script = r#"
import os, struct, sys
fd = int(sys.argv[1])
os.write(fd, b"\xff\xff\xff\xff" + struct.pack("!Q", 0xF0000000) + b"\x00\x00\x00\x02ok")
os.read(fd, 1)
"#;
    let mut py = python_peer(&b, script);
    drop(b);
    let a = a.with_max_message(1 << 20);
    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = a.recv_bytes();
        let second = a.recv_bytes();
        let _ = tx.send((first, second, t.elapsed()));
        // `a` closes here: the python peer's read ends.
    });
    let Ok((first, second, took)) = rx.recv_timeout(PATIENCE) else {
        let _ = py.kill();
        let _ = py.wait();
        panic!("the receive never returned");
    };
    match first {
        Err(RecvError::MessageTooLarge { size, max }) => {
            assert_eq!((size, max), (0xF000_0000, 1 << 20))
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert!(took < multiproc::connection::SKIP_IDLE * 3, "{took:?}");
    assert!(
        matches!(second, Err(RecvError::BadConnection(_))),
        "{second:?}"
    );
    assert!(py.wait().unwrap().success());
}

/// Takes the bell bytes waiting on `conn`'s own descriptor (for a
/// shared-memory pipe the socket carries only bells, no data here) and
/// returns how many there were. Taking them, rather than only looking,
/// counts each bell once: a bell that woke a receiver asleep on its socket
/// stays there until the receiver's next socket sleep drains it, and a mere
/// look would count it again after every later message.
fn take_bells(conn: &Connection) -> u64 {
    use nix::sys::socket::{MsgFlags, recv};
    use std::os::fd::AsRawFd;
    let mut buf = [0xFFu8; 64];
    let mut n = 0;
    loop {
        match recv(conn.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) | Err(nix::errno::Errno::EAGAIN) => return n,
            Ok(k) => {
                assert!(buf[..k].iter().all(|&b| b == 0), "{:?}", &buf[..k]);
                n += k as u64;
            }
            Err(e) => panic!("reading bells: {e}"),
        }
    }
}

/// A receiver asleep in `recv` is woken through shared memory (a futex
/// word), not through its socket: the old doorbell wrote a byte to the
/// socket for each message that found the receiver asleep (and the receiver
/// drained it with one or two `recvfrom` before its next sleep). Every
/// message here finds the receiver asleep (its spin is far shorter than the
/// gap); a bell still rings for a sleep longer than the futex nap, which
/// only an overloaded machine makes of these gaps (or of the first, which
/// includes the child's start).
#[test]
fn shared_memory_pipe_receiver_asleep_is_woken_without_socket_bells() {
    let _s = serial();
    const N: u64 = 100;
    let (a, b) = pipe(true).unwrap();
    let mut p = spawn(move || {
        for i in 0..N {
            std::thread::sleep(Duration::from_micros(300));
            b.send_bytes(&i.to_le_bytes()).unwrap();
        }
        // Wait for the receiver's word before closing (a close would
        // make the socket readable).
        let _ = b.recv_bytes();
    });
    let t = Instant::now();
    let mut bells = 0;
    for i in 0..N {
        assert_eq!(a.recv_bytes().unwrap(), i.to_le_bytes());
        bells += take_bells(&a);
    }
    a.send_bytes(b"done").unwrap();
    join_ok(&mut p);
    assert!(t.elapsed() < PATIENCE);
    assert!(bells < N / 3, "{bells} of {N} messages rang the socket");
}

#[test]
fn into_fd_of_a_shared_memory_pipe_end_gives_the_connection_back() {
    let _s = serial();
    let (a, b) = pipe(true).unwrap();
    let e = a.into_fd().unwrap_err();
    assert!(e.to_string().contains("shared memory"), "{e}");
    // Refused, not lost: the end still talks to its peer.
    let a = e.into_connection();
    a.send_bytes(b"still here").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"still here");
    // `?` in a `multiproc::Result` function: the coarse error it was.
    let coarse: multiproc::Error = b.into_fd().unwrap_err().into();
    assert!(
        matches!(coarse, multiproc::Error::BadConnection(m) if m.contains("shared memory")),
        "{coarse:?}"
    );
    // A socket-backed end gives its descriptor.
    let (c, _d) = pipe_os(true).unwrap();
    assert!(c.into_fd().is_ok());
}
