//! `RedisQueue` handed to children started with the spawn start method:
//! each child is a fresh run of this binary that receives the queue (its
//! URL and name) as an argument and connects on its own.
//!
//! This binary has its own `main` (libtest-mimic) because `multiproc::init`
//! must run first when the binary is started as a spawned child. It needs
//! `redis-server` (`apt-get install redis-server`) and fails without it.

use libtest_mimic::{Arguments, Failed, Trial};
use multiproc::Process;
use multiproc::redis::{LocalServer, RedisQueue};

// ---- entry points run in spawned children ----

/// Puts `(id, 0)` .. `(id, n - 1)`; returns how many it put.
fn produce(args: (RedisQueue<(u32, u64)>, u32, u64)) -> u64 {
    let (q, id, n) = args;
    for i in 0..n {
        q.put((id, i)).expect("put");
    }
    n
}

/// Takes `n` items; returns them.
fn consume(args: (RedisQueue<(u32, u64)>, u64)) -> Vec<(u32, u64)> {
    let (q, n) = args;
    (0..n)
        .map(|_| {
            q.get_timeout(std::time::Duration::from_secs(20))
                .expect("get")
        })
        .collect()
}

// ---- tests ----

fn spawned_producers_and_consumer_share_the_queue() -> Result<(), Failed> {
    const N: u64 = 500;
    let server = LocalServer::start().map_err(|e| {
        format!("this test needs a real redis-server: {e} (apt-get install redis-server)")
    })?;
    let q = RedisQueue::<(u32, u64)>::open(&server.url(), "spawned")?;
    let mut consumer = Process::spawn(consume, (q.clone(), 2 * N))?;
    let mut producers = Vec::new();
    for id in 0..2 {
        producers.push(Process::spawn(produce, (q.clone(), id, N))?);
    }
    consumer.start()?;
    for p in &mut producers {
        p.start()?;
    }
    for p in &mut producers {
        if p.result()? != N {
            return Err("a producer put the wrong number of items".into());
        }
    }
    let got = consumer.result()?;
    for id in 0..2 {
        let mine: Vec<u64> = got.iter().filter(|x| x.0 == id).map(|x| x.1).collect();
        if mine != (0..N).collect::<Vec<_>>() {
            return Err(format!("producer {id}'s items lost or out of order").into());
        }
    }
    if q.qsize().map_err(|e| e.to_string())? != 0 {
        return Err("items left in the queue".into());
    }
    Ok(())
}

fn main() {
    multiproc::init();
    let args = Arguments::from_args();
    let tests = vec![Trial::test(
        "spawned_producers_and_consumer_share_the_queue",
        spawned_producers_and_consumer_share_the_queue,
    )];
    libtest_mimic::run(&args, tests).exit();
}
