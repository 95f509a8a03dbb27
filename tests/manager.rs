//! The manager with a forked server: the behaviours of `manager_cases`
//! (shared with `manager_spawn.rs`), and what does not depend on how the
//! server started (a frame header's cost, a flood of idle connections).
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;
mod manager_cases;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{join_ok, serial, spawn};
use manager_cases::{KEY, start};
use multiproc::StartMethod;
use multiproc::connection::listener::{Address, Client};
use multiproc::manager::Manager;

macro_rules! fork_tests {
    ($($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let _s = serial();
                manager_cases::$name(StartMethod::Fork);
            }
        )*
    };
}

cases!(fork_tests);

#[test]
fn frame_headers_alone_cost_the_server_nothing_and_time_out() {
    let _s = serial();
    let m = start(StartMethod::Fork);
    let list = m.list::<u32>().unwrap();
    list.push(&1).unwrap();
    let pid = m.server_pid().unwrap();
    let peak_before = common::status_kib(pid, "VmHWM:");
    // Ten authenticated clients announce 63 MiB frames, send one byte of
    // each and stop there, keeping their connections open.
    let t = Instant::now();
    let mut socks: Vec<UnixStream> = (0..10)
        .map(|_| {
            let c = Client::connect_sha256_only(m.address(), KEY, None).unwrap();
            let mut s = UnixStream::from(c.into_fd().unwrap());
            s.write_all(&[0x03, 0xf0, 0, 0, b'x']).unwrap();
            s
        })
        .collect();
    // The server drops each one once its frame stalled for FRAME_IDLE
    // (5 s): every read ends (EOF or reset), none times out.
    for s in &mut socks {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("the server kept a stalled frame: {other:?}"),
        }
    }
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(4), "dropped too soon: {took:?}");
    // The server's peak memory did not follow the announced lengths
    // (10 x 63 MiB): each connection held at most its 64 KiB buffer.
    let grew = common::status_kib(pid, "VmHWM:").saturating_sub(peak_before);
    eprintln!(
        "server peak RSS {peak_before} KiB, grew by {grew} KiB under 10 stalled 63 MiB frames"
    );
    assert!(grew < 20 * 1024, "the server's peak RSS grew by {grew} KiB");
    // The others are served as before.
    list.push(&2).unwrap();
    assert_eq!(list.to_vec().unwrap(), [1, 2]);
}

#[test]
fn a_flood_of_idle_connections_does_not_keep_a_client_out() {
    let _s = serial();
    // The server keeps the usual soft limit of descriptors: the flood
    // below is more than it can hold, and it makes room by dropping the
    // oldest handshakes.
    let m = start(StartMethod::Fork);
    common::raise_nofile(4096);
    let Address::Unix(path) = m.address().clone() else {
        unreachable!()
    };
    let flood: Vec<UnixStream> = (0..1200)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let (rx, tx) = multiproc::pipe(false).unwrap();
    let address = m.address().clone();
    let mut p = spawn(move || {
        // A process of its own: a new session, connected and authenticated.
        let t = Instant::now();
        let m = Manager::connect(&address, KEY).unwrap();
        let list = m.list::<u32>().unwrap();
        list.push(&7).unwrap();
        tx.send(&(t.elapsed().as_micros() as u64)).unwrap();
    });
    let us: u64 = rx.recv().unwrap();
    join_ok(&mut p);
    drop(flood);
    eprintln!("manager connect + 2 calls under 1200 idle connections: {us} us");
    assert!(us < 1_000_000, "{us} us");
}
