//! Python's "remote manager" tutorial: a server exposes a queue by name,
//! and workers that know only its address and key fetch it and take jobs
//! (Python's `register('get_queue', callable=lambda: q)` on the server,
//! `m.get_queue()` on a client). Here the workers are forked children; in
//! practice they are other programs, even on other hosts (TCP).
//!
//! ```text
//! cargo run --example manager_by_name --features manager
//! ```

use multiproc::Process;
use multiproc::connection::listener::Address;
use multiproc::manager::{DictProxy, GetTimeoutProxyError, Manager, QueueProxy};

fn main() -> multiproc::Result<()> {
    let key = b"abracadabra".to_vec();
    // Port 0: the server binds a free port and reports it.
    let server = Manager::builder()
        .address(Address::parse("tcp:127.0.0.1:0")?)
        .authkey(key.clone())
        .start()?;
    server.expose("jobs", &server.queue::<u64>()?)?;
    server.expose("results", &server.dict::<u64, u64>()?)?;
    let address = server.address().clone();
    println!("manager listening on {address}");

    let mut workers: Vec<Process> = (0..3)
        .map(|_| {
            let (address, key) = (address.clone(), key.clone());
            Process::new(move || -> multiproc::Result<()> {
                // Only the address and the key: no proxy was handed over.
                let m = Manager::connect(&address, &key)?;
                let jobs: QueueProxy<u64> = m.get("jobs")?;
                let results: DictProxy<u64, u64> = m.get("results")?;
                loop {
                    let n = match jobs.get_timeout(std::time::Duration::from_millis(200)) {
                        Ok(n) => n,
                        Err(GetTimeoutProxyError::Timeout) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    };
                    results.insert(&n, &(n * n))?;
                }
            })
        })
        .collect();
    let jobs: QueueProxy<u64> = server.get("jobs")?;
    for n in 0..20 {
        jobs.put(&n)?;
    }
    for w in &mut workers {
        w.start()?;
    }
    for w in &mut workers {
        w.join_ok()?;
    }
    let results: DictProxy<u64, u64> = server.get("results")?;
    let mut squares = results.items()?;
    squares.sort();
    println!("{squares:?}");
    assert_eq!(squares.len(), 20);
    Ok(())
}
