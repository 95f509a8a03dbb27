//! `RedisQueue` against a real `redis-server` started by each test on a
//! free loopback port (no persistence, a temporary directory), with real
//! processes: order, many producers and consumers, timeouts, close, item
//! sizes, forked children that must not share the parent's socket, and a
//! server killed mid-test.
//!
//! `redis-server` must be installed (`apt-get install redis-server`); the
//! tests fail, saying so, where it is not.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{PATIENCE, join_ok, serial, spawn_in};
use multiproc::Process;
use multiproc::redis::{
    JoinableRedisQueue, LocalServer, RedisError, RedisGetError as GetError, RedisPool,
    RedisPutError as PutError, RedisQueue, RedisStreamQueue,
};

const SHORT: Duration = Duration::from_millis(200);

/// A fresh server for one test; fails the test (never skips it) when
/// `redis-server` is missing. The server is a child process: every test
/// that starts one holds `serial()` (declared first, dropped last), so that
/// the forking tests' check for leftover children sees no other test's.
fn server() -> LocalServer {
    match LocalServer::start() {
        Ok(s) => s,
        Err(e) => panic!("these tests need a real redis-server: {e}"),
    }
}

#[test]
fn missing_server_program_says_how_to_install_it() {
    let e = LocalServer::start_with(Path::new("/nonexistent/redis-server")).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("apt-get install redis-server"), "{m}");
    assert!(matches!(e, RedisError::Start(_)), "{e:?}");
}

#[test]
fn server_program_that_exits_is_reported() {
    let _s = serial();
    // `false` takes the server's arguments and exits at once with 1.
    let e = LocalServer::start_with(Path::new("false")).unwrap_err();
    assert!(matches!(e, RedisError::Start(_)), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("exited") && m.contains("before accepting"),
        "{m}"
    );
}

#[test]
fn put_get_in_one_process() {
    let _s = serial();
    let s = server();
    let q = RedisQueue::<String>::open(&s.url(), "basic").unwrap();
    assert_eq!(q.key(), "multiproc:queue:{basic}");
    assert!(q.empty().unwrap());
    assert_eq!(q.try_get(), Err(GetError::Empty));
    q.put("a".into()).unwrap();
    q.try_put("b".into()).unwrap();
    assert_eq!(q.qsize().unwrap(), 2);
    assert!(!q.empty().unwrap());
    assert_eq!(q.get().unwrap(), "a");
    assert_eq!(q.try_get().unwrap(), "b");
    assert_eq!(q.get_timeout(Duration::ZERO), Err(GetError::Empty));
    // Another handle on the same name sees the same list; another name not.
    let q2 = RedisQueue::<String>::open(&s.url(), "basic").unwrap();
    let other = RedisQueue::<String>::open(&s.url(), "other").unwrap();
    q.put("c".into()).unwrap();
    assert_eq!(other.qsize().unwrap(), 0);
    assert_eq!(q2.get_timeout(PATIENCE).unwrap(), "c");
}

#[test]
fn bad_name_and_url_are_refused() {
    assert!(matches!(
        RedisQueue::<u8>::open("redis://127.0.0.1:1/", ""),
        Err(RedisError::InvalidName { .. })
    ));
    let e = RedisQueue::<u8>::open("http://example/", "q").unwrap_err();
    assert!(matches!(e, RedisError::InvalidUrl(_)), "{e:?}");
    // Turned into the crate's error, each keeps its kind.
    let e: multiproc::Error = RedisQueue::<u8>::open("redis://127.0.0.1:1/", "")
        .unwrap_err()
        .into();
    assert!(matches!(e, multiproc::Error::InvalidName { .. }), "{e:?}");
}

#[test]
fn get_timeout_on_empty_waits_then_times_out() {
    let _s = serial();
    let s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "empty").unwrap();
    let t = Instant::now();
    assert_eq!(q.get_timeout(SHORT), Err(GetError::Timeout));
    assert!(
        t.elapsed() >= SHORT - Duration::from_millis(5),
        "{:?}",
        t.elapsed()
    );
    // A timeout below the server's resolution still waits, never forever.
    assert_eq!(
        q.get_timeout(Duration::from_micros(10)),
        Err(GetError::Timeout)
    );
    // The connection is still in step after the timeouts.
    q.put(7).unwrap();
    assert_eq!(q.get_timeout(PATIENCE), Ok(7));
    // A timeout too long for the server waits without limit instead of
    // failing.
    q.put(8).unwrap();
    assert_eq!(q.get_timeout(Duration::MAX), Ok(8));
}

#[test]
fn one_producer_one_consumer_keeps_order() {
    let _s = serial();
    const N: u64 = 5_000;
    let s = server();
    let q = RedisQueue::<u64>::open(&s.url(), "order").unwrap();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            for i in 0..N {
                assert_eq!(q.get_timeout(PATIENCE).unwrap(), i);
            }
            assert_eq!(q.try_get(), Err(GetError::Empty));
        });
        let mut p = spawn_in(ps, || {
            for i in 0..N {
                q.put(i).unwrap();
            }
        });
        join_ok(&mut p);
        join_ok(&mut c);
        assert_eq!(q.qsize().unwrap(), 0);
    })
}

#[test]
fn two_producers_two_consumers_deliver_each_item_once_in_order() {
    let _s = serial();
    const N: u64 = 3_000;
    let s = server();
    let q = RedisQueue::<Option<(u8, u64)>>::open(&s.url(), "multiset").unwrap();
    let producer = |id: u8| {
        let q = &q;
        move || {
            for i in 0..N {
                q.put(Some((id, i))).unwrap();
            }
        }
    };
    let consumer = || {
        let mut got = Vec::new();
        // Each consumer stops at the first None.
        while let Some(item) = q.get_timeout(PATIENCE).unwrap() {
            got.push(item);
        }
        got
    };
    multiproc::process::scope(|ps| {
        let mut consumers: Vec<Process<'_, Vec<(u8, u64)>>> = (0..2)
            .map(|_| {
                let mut p = common::allow(ps.process_with_result(consumer).with_daemon(true));
                p.start().unwrap();
                p
            })
            .collect();
        let mut p1 = spawn_in(ps, producer(1));
        let mut p2 = spawn_in(ps, producer(2));
        join_ok(&mut p1);
        join_ok(&mut p2);
        q.put(None).unwrap();
        q.put(None).unwrap();
        let mut seen: HashMap<(u8, u64), u32> = HashMap::new();
        let mut per_consumer = Vec::new();
        for c in &mut consumers {
            let got = c.result().unwrap();
            // FIFO: within one consumer, each producer's items come in order.
            for id in [1, 2] {
                let mine: Vec<u64> = got.iter().filter(|x| x.0 == id).map(|x| x.1).collect();
                assert!(
                    mine.windows(2).all(|w| w[0] < w[1]),
                    "producer {id} out of order"
                );
            }
            per_consumer.push(got.len());
            for item in got {
                *seen.entry(item).or_default() += 1;
            }
        }
        assert_eq!(seen.len() as u64, 2 * N, "items lost: {per_consumer:?}");
        assert!(
            seen.values().all(|&n| n == 1),
            "an item was delivered twice"
        );
        assert_eq!(q.qsize().unwrap(), 0);
    })
}

#[test]
fn forked_child_gets_its_own_connection() {
    let _s = serial();
    const N: u32 = 1_000;
    let s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "fork").unwrap();
    // The parent has an idle connection in its pool now. Parent and child
    // then talk to the server at the same time: had the child used the
    // parent's socket, each would read replies meant for the other (an
    // array where a number is expected, or the wrong number).
    q.put(1_000_000).unwrap();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            for i in 0..N {
                q.put(i).unwrap();
                // FIFO: the parent's item first, then each one put before.
                let want = if i == 0 { 1_000_000 } else { i - 1 };
                assert_eq!(q.try_get().unwrap(), want);
            }
        });
        let mut sizes = 0;
        while c.is_alive() {
            let n = q.qsize().unwrap();
            assert!((1..=2).contains(&n), "{n}");
            sizes += 1;
        }
        join_ok(&mut c);
        assert!(sizes > 0);
        // The parent's pooled connection is still in step.
        assert_eq!(q.qsize().unwrap(), 1);
        q.put(5).unwrap();
        assert_eq!(q.try_get().unwrap(), N - 1);
        assert_eq!(q.get_timeout(PATIENCE).unwrap(), 5);
    })
}

#[test]
fn blocked_get_in_a_child_takes_an_item_put_later() {
    let _s = serial();
    let s = server();
    let q = RedisQueue::<String>::open(&s.url(), "blocked").unwrap();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            assert_eq!(q.get().unwrap(), "late");
        });
        std::thread::sleep(SHORT);
        assert!(c.is_alive(), "get returned before any put");
        q.put("late".into()).unwrap();
        join_ok(&mut c);
    })
}

#[test]
fn items_of_zero_bytes_and_one_mib() {
    let _s = serial();
    let s = server();
    let units = RedisQueue::<()>::open(&s.url(), "unit").unwrap();
    let empty = RedisQueue::<Vec<u8>>::open(&s.url(), "bytes").unwrap();
    let big: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i * 7 + i / 1000) as u8)
        .collect();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            units.put(()).unwrap();
            empty.put(Vec::new()).unwrap();
            empty.put(big.clone()).unwrap();
            empty.put(vec![42]).unwrap();
        });
        join_ok(&mut c);
        assert_eq!(units.qsize().unwrap(), 1);
        assert_eq!(units.get_timeout(PATIENCE), Ok(()));
        assert_eq!(empty.get_timeout(PATIENCE).unwrap(), Vec::<u8>::new());
        assert!(empty.get_timeout(PATIENCE).unwrap() == big);
        assert_eq!(empty.get_timeout(PATIENCE).unwrap(), vec![42]);
    })
}

#[test]
fn close_refuses_puts_drains_then_wakes_every_getter() {
    let _s = serial();
    let s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "close").unwrap();
    let waiter = || {
        assert_eq!(q.get(), Err(GetError::Closed));
    };
    multiproc::process::scope(|ps| {
        let mut w1 = spawn_in(ps, waiter);
        let mut w2 = spawn_in(ps, waiter);
        std::thread::sleep(SHORT);
        assert!(w1.is_alive() && w2.is_alive());
        q.close().unwrap();
        join_ok(&mut w1);
        join_ok(&mut w2);
        assert!(q.is_closed().unwrap());
        assert_eq!(q.put(3), Err(PutError::Closed(3)));
        assert_eq!(q.try_get(), Err(GetError::Closed));
        assert_eq!(q.get_timeout(SHORT), Err(GetError::Closed));

        // Items put before the close are still taken, then Closed.
        q.delete().unwrap();
        assert!(!q.is_closed().unwrap());
        q.put(1).unwrap();
        q.put(2).unwrap();
        q.close().unwrap();
        let mut c = spawn_in(ps, || {
            assert_eq!(q.get(), Ok(1));
            assert_eq!(q.get_timeout(PATIENCE), Ok(2));
            assert_eq!(q.get(), Err(GetError::Closed));
        });
        join_ok(&mut c);
        q.delete().unwrap();
        assert_eq!(q.qsize().unwrap(), 0);
    })
}

#[test]
fn close_whose_wake_up_was_lost_is_still_seen() {
    let _s = serial();
    let s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "lost-wake").unwrap();
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            let t = Instant::now();
            assert_eq!(q.get(), Err(GetError::Closed));
            // Seen at the end of a 5 s slice.
            assert!(t.elapsed() < PATIENCE, "{:?}", t.elapsed());
        });
        std::thread::sleep(SHORT);
        // What a getter killed after taking the close marker leaves: the
        // closed flag (documented key `…:closed`) without the marker.
        let mut raw = redis::Client::open(s.url())
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("SET")
            .arg(format!("{}:closed", q.key()))
            .arg(1)
            .query::<()>(&mut raw)
            .unwrap();
        assert!(q.is_closed().unwrap());
        assert_eq!(q.get_timeout(SHORT), Err(GetError::Closed));
        assert_eq!(q.try_get(), Err(GetError::Closed));
        assert_eq!(q.put(1), Err(PutError::Closed(1)));
        let st = c.join_timeout(PATIENCE).unwrap();
        assert!(st.is_some_and(|st| st.success()), "child: {st:?}");
    })
}

#[test]
fn delete_drops_the_items() {
    let _s = serial();
    let s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "delete").unwrap();
    for i in 0..10 {
        q.put(i).unwrap();
    }
    q.delete().unwrap();
    assert_eq!(q.qsize().unwrap(), 0);
    assert_eq!(q.try_get(), Err(GetError::Empty));
}

#[test]
fn undecodable_item_is_a_decode_error() {
    let _s = serial();
    let s = server();
    let raw = RedisQueue::<Vec<u8>>::open(&s.url(), "decode").unwrap();
    let q = RedisQueue::<String>::open(&s.url(), "decode").unwrap();
    // Encoded as a String: a length, then bytes that are not UTF-8.
    raw.put(vec![0xff, 0xfe]).unwrap();
    assert!(matches!(q.try_get(), Err(GetError::Decode(_))));
    q.put("ok".into()).unwrap();
    assert_eq!(q.try_get().unwrap(), "ok");
}

#[test]
fn a_key_of_another_type_is_a_wrong_type_error() {
    let _s = serial();
    let s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "wrongtype").unwrap();
    let mut raw = redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("SET")
        .arg(q.key())
        .arg("a string")
        .query::<()>(&mut raw)
        .unwrap();
    match q.put(1) {
        Err(PutError::WrongType(1, m)) => assert!(m.contains("WRONGTYPE"), "{m}"),
        other => panic!("expected a wrong-type error, got {other:?}"),
    }
    for get in [q.try_get(), q.get_timeout(SHORT)] {
        assert!(matches!(get, Err(GetError::WrongType(_))), "{get:?}");
    }
    assert!(matches!(q.qsize(), Err(GetError::WrongType(_))));
    // `?` in a `multiproc::Result` function: a `Redis` error that names
    // Redis once.
    let e: multiproc::Error = q.put(1).unwrap_err().into();
    let text = e.to_string();
    assert!(matches!(e, multiproc::Error::Redis(_)), "{e:?}");
    assert!(text.starts_with("redis: key of the wrong type: "), "{text}");
    // The error replies left the connection usable.
    q.delete().unwrap();
    q.put(2).unwrap();
    assert_eq!(q.try_get(), Ok(2));

    // A stream queue whose stream was replaced by other data.
    let sq = RedisStreamQueue::<u32>::open(&s.url(), "wrongtype", SHORT).unwrap();
    let stream = "multiproc:stream:{wrongtype}";
    redis::cmd("DEL").arg(stream).query::<()>(&mut raw).unwrap();
    redis::cmd("SET")
        .arg(stream)
        .arg("a string")
        .query::<()>(&mut raw)
        .unwrap();
    match sq.put(3) {
        Err(PutError::WrongType(3, m)) => assert!(m.contains("WRONGTYPE"), "{m}"),
        other => panic!("expected a wrong-type error, got {other:?}"),
    }
    let get = sq.get_timeout(SHORT);
    assert!(matches!(get, Err(GetError::WrongType(_))), "{get:?}");
}

/// A `RedisError` turned into `multiproc::Error` says "redis" once (it
/// said `redis: redis server unreachable: ...`).
#[test]
fn a_redis_error_made_coarse_names_redis_once() {
    // Nothing listens on port 1.
    let e = RedisQueue::<u32>::open("redis://127.0.0.1:1/", "nobody").unwrap_err();
    assert!(e.is_unreachable(), "{e:?}");
    let coarse: multiproc::Error = e.into();
    let text = coarse.to_string();
    assert!(matches!(coarse, multiproc::Error::Redis(_)), "{coarse:?}");
    assert!(text.starts_with("redis: server unreachable: "), "{text}");
    assert!(!text.contains("redis: redis"), "{text}");
    let e: multiproc::Error = RedisError::Server("redis server at x: ERR no".into()).into();
    assert_eq!(e.to_string(), "redis: redis server at x: ERR no");
    let e: multiproc::Error = RedisError::Protocol("a reply of no shape".into()).into();
    assert_eq!(e.to_string(), "redis: protocol: a reply of no shape");
}

#[test]
fn server_killed_mid_test_gives_clear_errors_without_hanging() {
    let _s = serial();
    let mut s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "gone").unwrap();
    q.put(1).unwrap();
    // A child blocked in get() when the server dies.
    multiproc::process::scope(|ps| {
        let mut c = spawn_in(ps, || {
            assert_eq!(q.get().unwrap(), 1);
            match q.get() {
                Err(GetError::Server(m)) => assert!(m.contains("127.0.0.1"), "{m}"),
                other => panic!("expected a server error, got {other:?}"),
            }
        });
        std::thread::sleep(SHORT);
        assert!(c.is_alive());
        s.kill().unwrap();
        let st = c.join_timeout(PATIENCE).unwrap();
        assert!(st.is_some_and(|st| st.success()), "child: {st:?}");

        // Every call now fails at once with a server error; puts hand the item
        // back. The first call may find the parent's pooled connection closed,
        // the next ones cannot connect.
        let t = Instant::now();
        match q.put(4) {
            Err(PutError::Server(4, m)) => assert!(m.contains("127.0.0.1"), "{m}"),
            other => panic!("expected a server error, got {other:?}"),
        }
        match q.put(5) {
            Err(PutError::Server(5, m)) => assert!(m.contains("cannot connect"), "{m}"),
            other => panic!("expected a server error, got {other:?}"),
        }
        assert!(matches!(q.get(), Err(GetError::Server(_))));
        assert!(matches!(q.get_timeout(SHORT), Err(GetError::Server(_))));
        assert!(matches!(q.try_get(), Err(GetError::Server(_))));
        assert!(matches!(q.qsize(), Err(GetError::Server(_))));
        assert!(matches!(q.close(), Err(RedisError::Unreachable(_))));
        assert!(matches!(q.is_closed(), Err(RedisError::Unreachable(_))));
        assert!(matches!(q.delete(), Err(RedisError::Unreachable(_))));
        let e = RedisQueue::<u32>::open(&s.url(), "gone").unwrap_err();
        assert!(e.to_string().contains("redis-server running"), "{e}");
        assert!(e.is_unreachable(), "{e:?}");
        let e = RedisStreamQueue::<u32>::open(&s.url(), "gone", SHORT).unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        let e = RedisPool::new(&s.url(), "gone").unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        assert!(t.elapsed() < PATIENCE);
    })
}

#[test]
fn a_restarted_server_is_reconnected_to() {
    let _s = serial();
    let mut s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "restart").unwrap();
    q.put(1).unwrap();
    s.kill().unwrap();
    // The pooled connection is dead: the first call fails, and drops it.
    assert!(matches!(q.try_get(), Err(GetError::Server(_))));
    drop(s);
    let s2 = server();
    let q2 = RedisQueue::<u32>::open(&s2.url(), "restart").unwrap();
    q2.put(2).unwrap();
    assert_eq!(q2.get_timeout(PATIENCE), Ok(2));
}

#[test]
fn serializes_as_url_and_name() {
    let _s = serial();
    let s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "wire").unwrap();
    q.put(11).unwrap();
    let bytes = postcard::to_stdvec(&q).unwrap();
    let back: RedisQueue<u32> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back.name(), "wire");
    assert_eq!(back.url(), s.url());
    assert_eq!(back.get_timeout(PATIENCE), Ok(11));
}

#[test]
fn threads_share_a_queue_while_one_blocks() {
    let _s = serial();
    let s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "threads").unwrap();
    std::thread::scope(|sc| {
        let h = sc.spawn(|| q.get_timeout(PATIENCE));
        std::thread::sleep(SHORT);
        // The put goes through while the other thread's get blocks.
        q.put(3).unwrap();
        assert_eq!(h.join().unwrap(), Ok(3));
    });
}

#[test]
fn server_is_stopped_and_reaped_on_drop() {
    let _s = serial();
    let s = server();
    let pid = s.pid().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(s);
    // Reaped: not even a zombie is left (Serial checks for children too).
    assert!(common::children().is_empty());
}

/// A server stopped with SIGSTOP (alive, its socket open, never answering)
/// used to hang every call for ever; now each fails after the read timeout.
#[test]
fn stalled_server_fails_calls_after_the_read_timeout() {
    let _s = serial();
    let s = server();
    let mut q = RedisQueue::<u32>::open(&s.url(), "stalled").unwrap();
    assert_eq!(q.read_timeout(), Some(Duration::from_secs(30)));
    q.set_read_timeout(Some(Duration::from_millis(300)));
    q.put(1).unwrap();
    let pid = nix::unistd::Pid::from_raw(s.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    let put = q.put(2);
    let get = q.get_timeout(Duration::from_millis(200));
    let took = t0.elapsed();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    match put {
        Err(PutError::Server(2, m)) => assert!(m.contains("in time"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(get, Err(GetError::Server(_))), "{get:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Once it runs again, new calls work (the timed-out connections were
    // dropped, not reused out of step).
    assert_eq!(q.get_timeout(PATIENCE), Ok(1));
}

#[test]
fn bounded_queue_refuses_or_waits_for_room() {
    let _s = serial();
    let s = server();
    let q = RedisQueue::<u32>::open(&s.url(), "bounded")
        .unwrap()
        .with_maxsize(2);
    assert_eq!(q.maxsize(), 2);
    q.put(1).unwrap();
    q.try_put(2).unwrap();
    assert_eq!(q.try_put(3), Err(PutError::Full(3)));
    let t0 = Instant::now();
    assert_eq!(q.put_timeout(3, SHORT), Err(PutError::Timeout(3)));
    assert!(t0.elapsed() >= SHORT);
    // A getter in another process makes room; the waiting put goes in.
    let url = s.url();
    let mut p = common::spawn(move || {
        let q = RedisQueue::<u32>::open(&url, "bounded").unwrap();
        assert_eq!(q.get_timeout(PATIENCE), Ok(1));
    });
    q.put_timeout(3, PATIENCE).unwrap();
    join_ok(&mut p);
    assert_eq!(q.qsize().unwrap(), 2);
    // The bound travels with a handle sent to another process.
    let copy: RedisQueue<u32> = postcard::from_bytes(&postcard::to_stdvec(&q).unwrap()).unwrap();
    assert_eq!(copy.maxsize(), 2);
}

#[test]
fn joinable_queue_join_waits_for_every_task_done() {
    use multiproc::redis::JoinableRedisQueue;
    let _s = serial();
    let s = server();
    let q = JoinableRedisQueue::<u32>::open(&s.url(), "joinable").unwrap();
    assert!(
        matches!(q.task_done(), Err(RedisError::TaskDone)),
        "task_done before any put"
    );
    for i in 0..5 {
        q.put(i).unwrap();
    }
    assert_eq!(q.unfinished().unwrap(), 5);
    assert!(!q.join_timeout(SHORT).unwrap());
    let url = s.url();
    let mut p = common::spawn(move || {
        let q = JoinableRedisQueue::<u32>::open(&url, "joinable").unwrap();
        for _ in 0..5 {
            q.get_timeout(PATIENCE).unwrap();
            q.task_done().unwrap();
        }
    });
    assert!(q.join_timeout(PATIENCE).unwrap());
    join_ok(&mut p);
    assert_eq!(q.unfinished().unwrap(), 0);
    assert!(matches!(q.task_done(), Err(RedisError::TaskDone)));
}

/// Keys of a name hold other data (here: strings and a list where a
/// stream, a counter and the pool's stream belong): each call that meets
/// one says so with `WrongType`, and changes nothing.
#[test]
fn a_name_taken_by_other_data_is_a_wrong_type_error() {
    let _s = serial();
    let s = server();
    let mut raw = redis::Client::open(s.url())
        .unwrap()
        .get_connection()
        .unwrap();
    for (cmd, key) in [
        ("SET", "multiproc:stream:{taken}"),
        ("RPUSH", "multiproc:queue:{taken}:unfinished"),
        ("SET", "multiproc:pool:{taken}:tasks"),
    ] {
        redis::cmd(cmd)
            .arg(key)
            .arg("other data")
            .query::<()>(&mut raw)
            .unwrap();
    }
    let e = RedisStreamQueue::<u32>::open(&s.url(), "taken", SHORT).unwrap_err();
    assert!(matches!(e, RedisError::WrongType(_)), "{e:?}");
    let q = JoinableRedisQueue::<u32>::open(&s.url(), "taken").unwrap();
    assert!(
        matches!(q.unfinished(), Err(RedisError::WrongType(_))),
        "{:?}",
        q.unfinished()
    );
    assert!(matches!(q.task_done(), Err(RedisError::WrongType(_))));
    assert!(matches!(q.join(), Err(RedisError::WrongType(_))));
    let e = RedisPool::new(&s.url(), "taken").unwrap_err();
    assert!(matches!(e, RedisError::WrongType(_)), "{e:?}");
    // Nothing was changed.
    let v: String = redis::cmd("GET")
        .arg("multiproc:stream:{taken}")
        .query(&mut raw)
        .unwrap();
    assert_eq!(v, "other data");
}

/// Every Redis call's error converts into `multiproc::Error`, so `?` works
/// in a function returning `multiproc::Result` (a put's and a get's did
/// not: that did not compile), keeping the kind.
#[test]
fn question_mark_works_in_a_multiproc_result_fn() {
    fn round_trip(url: &str) -> multiproc::Result<u32> {
        let q = JoinableRedisQueue::<u32>::open(url, "qm")?;
        q.put(7)?;
        let v = q.get_timeout(PATIENCE)?;
        q.task_done()?;
        q.join()?;
        q.queue().close()?;
        q.try_get()?;
        Ok(v)
    }
    let _s = serial();
    let s = server();
    match round_trip(&s.url()) {
        Err(multiproc::Error::Closed) => {}
        other => panic!("expected Closed from the last get, got {other:?}"),
    }
    let q = RedisQueue::<u32>::open(&s.url(), "qm2").unwrap();
    let e: multiproc::Error = q.try_get().unwrap_err().into();
    assert!(matches!(e, multiproc::Error::Empty), "{e:?}");
    let q = q.with_maxsize(1);
    q.put(1).unwrap();
    let e: multiproc::Error = q.try_put(2).unwrap_err().into();
    assert!(matches!(e, multiproc::Error::Full), "{e:?}");
}

/// A stream queue's item taken by a consumer that died before
/// acknowledging it is handed out again (at least once); with the list
/// queue it would be lost.
#[test]
fn stream_queue_redelivers_an_item_whose_consumer_died() {
    use multiproc::redis::RedisStreamQueue;
    let _s = serial();
    let s = server();
    let claim = Duration::from_millis(200);
    let q = RedisStreamQueue::<u32>::open(&s.url(), "jobs", claim).unwrap();
    for i in 0..3 {
        q.put(i).unwrap();
    }
    let url = s.url();
    let mut p = common::spawn(move || {
        let q = RedisStreamQueue::<u32>::open(&url, "jobs", claim).unwrap();
        let d = q.get_timeout(PATIENCE).unwrap();
        assert_eq!(d.item, 0);
        // Dies without acknowledging it.
        std::process::exit(0);
    });
    join_ok(&mut p);
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = q.get_timeout(PATIENCE).unwrap();
        got.push(d.item);
        q.ack(&d).unwrap();
    }
    got.sort();
    assert_eq!(got, vec![0, 1, 2]);
    assert!(matches!(q.get_timeout(SHORT), Err(GetError::Timeout)));
}
