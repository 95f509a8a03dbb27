//! A quick, criterion-free measurement of `RedisQueue` throughput against
//! the shared-memory `Queue` and against bare `RPUSH`/`BLPOP` calls through
//! the `redis` crate, all in one run (compare the ratios, not the figures
//! across runs). One producer process puts M u64s, one consumer process
//! gets them and checks their order; the parent times the whole. The three
//! are run in turn, ROUNDS times, and the best time of each is reported.
//!
//! ```text
//! cargo run --release --features redis --example redis_queue_speed [M]
//! ```
//!
//! Needs `redis-server` (`apt-get install redis-server`): it starts a
//! private one on a free loopback port.

use std::time::Instant;

use multiproc::queue::Queue;
use multiproc::redis::{LocalServer, RedisQueue};
use multiproc::{Process, Result};

/// Runs `producer` and `consumer` in two child processes; the seconds from
/// before the first start to after the last join.
fn time_pair(producer: impl FnOnce(), consumer: impl FnOnce()) -> Result<f64> {
    let t = Instant::now();
    let mut c = Process::new(consumer);
    let mut p = Process::new(producer);
    c.start()?;
    p.start()?;
    p.join_ok()?;
    c.join_ok()?;
    Ok(t.elapsed().as_secs_f64())
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
    let (mut bare, mut redis_q, mut shm) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..rounds {
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
    println!(
        "shm Queue is {:.0}x the items/s of RedisQueue in this run",
        redis_q / shm
    );
    Ok(())
}
