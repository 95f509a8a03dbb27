//! The `redis_pool` workload: trivial tasks through the distributed pool
//! ([`multiproc::redis::RedisPool`]) on a `redis-server` on loopback, beside
//! Python's RQ with the same number of workers on the same server (the
//! script `benches/python/rq_bench.sh` installs RQ in a virtualenv).
//!
//! - `tasks`: T = 2,000 single tasks (`apply_async`, one stream entry each),
//!   2 local workers; us per task from the first submit to the last result.
//!   RQ: T = 300 jobs enqueued, 2 `rq worker`s (RQ's default, a fork per job, and
//!   `SimpleWorker`, in-process), us per task from the first enqueue to the
//!   last job finished.
//! - `map_100k`: a `map` of 100,000 trivial items with 2 workers in chunks
//!   (the default size); seconds. The issue asks for under 2 s.

use std::time::{Duration, Instant};

use multiproc::redis::{LocalServer, RedisPool};

use crate::pi::{self, Outcome};
use crate::report::{Line, params};

fn inc(x: u64) -> u64 {
    x + 1
}

/// The server: `--redis URL` if given, else a private one.
fn server() -> Outcome<(Option<LocalServer>, String)> {
    if let Some(url) = pi::redis_url() {
        return Ok((None, url.to_owned()));
    }
    let s = LocalServer::start()?;
    let url = s.url();
    Ok((Some(s), url))
}

/// `pi` through the distributed pool: `procs` local workers on the server
/// of `--redis` (or a private one), the C chunks mapped one at a time (a
/// few) or in chunks of C / 4P (many).
pub fn pi_redis_pool(procs: u64, c: u64, n: u64) -> Outcome<f64> {
    let (_server, url) = server()?;
    // A fixed name, so that `multiproc worker URL` on other hosts joins in.
    let name = "multiproc-pi";
    let mut pool = RedisPool::builder(&url, name)
        .local_workers(procs as usize)
        .build()?;
    let ranges: Vec<(u64, u64)> = (0..c)
        .map(|i| {
            let r = pi::chunk(i, c, n);
            (r.start, r.end)
        })
        .collect();
    let chunksize = if c <= 16 * procs {
        1
    } else {
        c.div_ceil(4 * procs) as usize
    };
    let sums = pool.map_chunked(pi::partial_of, ranges, chunksize)?;
    pool.close();
    pool.join()?;
    Ok(sums.iter().sum())
}

/// `benches/python/rq_bench.sh`, from the current directory or the source
/// tree this program was built from.
fn rq_script() -> Option<std::path::PathBuf> {
    const RELATIVE: &str = "benches/python/rq_bench.sh";
    let here = std::path::PathBuf::from(RELATIVE);
    if here.exists() {
        return Some(here);
    }
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(RELATIVE);
    built.exists().then_some(built)
}

/// Runs the workload, and RQ's side (`benches/python/rq_bench.sh`).
pub fn redis_pool(quick: bool) -> Outcome<Vec<Line>> {
    let rq_script = rq_script();
    let rq_script = rq_script.as_deref();
    let (_server, url) = server()?;
    let p = 2usize;
    let t: u64 = if quick { 500 } else { 2_000 };
    let reps = if quick { 1 } else { 3 };
    let name = format!("bench-{}", std::process::id());
    let mut pool = RedisPool::builder(&url, &name).local_workers(p).build()?;
    pool.map(inc, 0..(4 * p as u64))?; // the workers are up
    let mut lines = Vec::new();

    let (mut best, mut ok) = (Duration::MAX, String::from("ok"));
    for _ in 0..reps {
        let start = Instant::now();
        let handles = (0..t)
            .map(|x| pool.apply_async(inc, x))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sum = 0;
        for h in &handles {
            sum += h.get_timeout(Duration::from_secs(120))?;
        }
        best = best.min(start.elapsed());
        if sum != t * (t + 1) / 2 {
            ok = format!("sum {sum} != {}", t * (t + 1) / 2);
        }
    }
    let task_params = params!["T" => t, "P" => p];
    lines.push(Line::new(
        "multiproc",
        "redis_pool",
        "tasks",
        &task_params,
        "us_per_task",
        best.as_secs_f64() * 1e6 / t as f64,
        &ok,
    ));

    let n: u64 = if quick { 20_000 } else { 100_000 };
    let want: Vec<u64> = (0..n).map(inc).collect();
    let (mut best, mut ok) = (Duration::MAX, String::from("ok"));
    for _ in 0..reps {
        let start = Instant::now();
        let got = pool.map(inc, 0..n)?;
        best = best.min(start.elapsed());
        if got != want {
            ok = "results differ from inc(x) in order".into();
        }
    }
    let map_params = params!["N" => n, "P" => p];
    lines.push(Line::new(
        "multiproc",
        "redis_pool",
        "map_100k",
        &map_params,
        "seconds",
        best.as_secs_f64(),
        &ok,
    ));
    pool.close();
    pool.join()?;

    match rq_script {
        // RQ takes milliseconds a job: fewer jobs.
        Some(script) => lines.extend(rq_lines(script, &url, if quick { 100 } else { 300 }, p)),
        None => lines.push(Line::new(
            "python",
            "redis_pool",
            "rq",
            &[],
            "-",
            f64::NAN,
            "benches/python/rq_bench.sh not found",
        )),
    }
    Ok(lines)
}

/// Runs RQ's side: its JSON lines, or one saying why there are none.
fn rq_lines(script: &std::path::Path, url: &str, t: u64, p: usize) -> Vec<Line> {
    let failed = |why: String| {
        vec![Line::new(
            "python",
            "redis_pool",
            "rq",
            &[],
            "-",
            f64::NAN,
            &why,
        )]
    };
    let out = std::process::Command::new("sh")
        .arg(script)
        .arg(url)
        .arg(t.to_string())
        .arg(p.to_string())
        .output();
    match out {
        Ok(out) => {
            let lines: Vec<Line> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(Line::parse)
                .collect();
            if lines.is_empty() {
                let err = String::from_utf8_lossy(&out.stderr);
                failed(format!(
                    "{} printed no lines ({}): {}",
                    script.display(),
                    out.status,
                    err.lines().last().unwrap_or("")
                ))
            } else {
                lines
            }
        }
        Err(e) => failed(format!("cannot run {}: {e}", script.display())),
    }
}
