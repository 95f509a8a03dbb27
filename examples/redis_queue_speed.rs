//! A quick, criterion-free measurement of `RedisQueue` throughput against
//! the shared-memory `Queue` and against bare `RPUSH`/`BLPOP` calls through
//! the `redis` crate, all in one run (compare the ratios, not the figures
//! across runs). One producer process puts M u64s, one consumer process
//! gets them and checks their order; the parent times the whole. Then two
//! producers and two consumers (M items in all; each consumer takes M/2
//! and checks that each producer's items come in order). Every case is run
//! in turn, ROUNDS times, and the best time of each is reported.
//!
//! ```text
//! cargo run --release --features redis --example redis_queue_speed [M [ROUNDS]]
//! ```
//!
//! Needs `redis-server` (`apt-get install redis-server`): it starts a
//! private one on a free loopback port.

use std::time::Instant;

use multiproc::Result;
use multiproc::queue::Queue;
use multiproc::redis::{LocalServer, RedisQueue};

/// Runs `producer` and `consumer` in two child processes; the seconds from
/// before the first start to after the last join.
fn time_pair(producer: impl FnOnce(), consumer: impl FnOnce()) -> Result<f64> {
    let t = Instant::now();
    multiproc::process::scope(|ps| {
        let mut c = ps.process(consumer);
        let mut p = ps.process(producer);
        c.start()?;
        p.start()?;
        p.join_ok()?;
        c.join_ok()?;
        Ok(t.elapsed().as_secs_f64())
    })
}

/// Two producer and two consumer processes over `put`/`get`; the seconds
/// from before the first start to after the last join.
fn time_two_by_two(m: u64, put: &dyn Fn((u8, u64)), get: &dyn Fn() -> (u8, u64)) -> Result<f64> {
    let t = Instant::now();
    let consume = || {
        let mut last = [None::<u64>; 2];
        for _ in 0..m / 2 {
            let (id, i) = get();
            let slot = &mut last[id as usize];
            assert!(
                slot.is_none_or(|l| l < i),
                "producer {id}'s items out of order"
            );
            *slot = Some(i);
        }
    };
    let produce = |id: u8| {
        move || {
            for i in 0..m / 2 {
                put((id, i));
            }
        }
    };
    multiproc::process::scope(|ps| {
        let mut all = vec![
            ps.process(Box::new(consume) as Box<dyn FnOnce()>),
            ps.process(Box::new(consume)),
            ps.process(Box::new(produce(0))),
            ps.process(Box::new(produce(1))),
        ];
        for p in &mut all {
            p.start()?;
        }
        for p in &mut all {
            p.join_ok()?;
        }
        Ok(t.elapsed().as_secs_f64())
    })
}

fn report(what: &str, m: u64, secs: f64, base: f64) {
    let rate = m as f64 / secs;
    println!(
        "{what:<34} {rate:>12.0} items/s {:>9.2} us/item  x{:.3} of bare redis",
        1e6 / rate,
        base / secs
    );
}

/// Bare redis crate: RPUSH of the postcard bytes, BLPOP, order checked;
/// the floor for anything built on one round trip per item.
fn bare_round(client: &redis::Client, m: u64) -> Result<f64> {
    time_pair(
        || {
            let mut c = client.get_connection().expect("connect");
            for i in 0..m {
                let b = postcard::to_stdvec(&i).expect("encode");
                redis::cmd("RPUSH")
                    .arg("bare")
                    .arg(b)
                    .query::<i64>(&mut c)
                    .expect("rpush");
            }
        },
        || {
            let mut c = client.get_connection().expect("connect");
            for i in 0..m {
                let (_, v): (Vec<u8>, Vec<u8>) = redis::cmd("BLPOP")
                    .arg("bare")
                    .arg(0)
                    .query(&mut c)
                    .expect("blpop");
                assert_eq!(postcard::from_bytes::<u64>(&v).expect("decode"), i);
            }
        },
    )
}

fn main() -> Result<()> {
    let m: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("M must be a number"))
        .unwrap_or(20_000);
    let rounds: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().expect("ROUNDS must be a number"))
        .unwrap_or(3);
    let server = LocalServer::start()?;
    let url = server.url();
    println!(
        "M = {m} u64 items, one producer process, one consumer process, best of {rounds} rounds"
    );
    let client =
        redis::Client::open(url.as_str()).map_err(|e| multiproc::Error::Redis(e.to_string()))?;
    let rq = RedisQueue::<u64>::open(&url, "speed")?;
    let q = Queue::<u64>::new()?;
    let rq2 = RedisQueue::<(u8, u64)>::open(&url, "speed2")?;
    let q2 = Queue::<(u8, u64)>::new()?;
    let (mut bare, mut redis_q, mut shm) = (f64::MAX, f64::MAX, f64::MAX);
    let (mut redis_22, mut shm_22) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        redis_22 = redis_22.min(time_two_by_two(m, &|x| rq2.put(x).expect("put"), &|| {
            rq2.get().expect("get")
        })?);
        shm_22 = shm_22.min(time_two_by_two(m, &|x| q2.put(x).expect("put"), &|| {
            q2.get().expect("get")
        })?);
        bare = bare.min(bare_round(&client, m)?);
        redis_q = redis_q.min(time_pair(
            || {
                for i in 0..m {
                    rq.put(i).expect("put");
                }
            },
            || {
                for i in 0..m {
                    assert_eq!(rq.get().expect("get"), i);
                }
            },
        )?);
        shm = shm.min(time_pair(
            || {
                for i in 0..m {
                    q.put(i).expect("put");
                }
            },
            || {
                for i in 0..m {
                    assert_eq!(q.get().expect("get"), i);
                }
            },
        )?);
    }

    report("bare redis RPUSH/BLPOP", m, bare, bare);
    report("RedisQueue put/get", m, redis_q, bare);
    report("shm Queue put/get", m, shm, bare);
    report("RedisQueue 2 producers 2 consumers", m, redis_22, bare);
    report("shm Queue 2 producers 2 consumers", m, shm_22, bare);
    println!(
        "shm Queue / RedisQueue items per second in this run: {:.0}x (1p1c), {:.0}x (2p2c)",
        redis_q / shm,
        redis_22 / shm_22
    );
    Ok(())
}
