//! The `multiproc` command: `multiproc pi` computes pi from the series
//! sum_{k<N} 1/(2k+1)^2 = pi^2/8, split into chunks over worker processes,
//! and returns the partial sums through each transport, timing each.
//!
//! ```text
//! multiproc pi [--n 100000000] [--procs P] [--chunks C] [--transport T,...] [--json]
//! ```

use std::io::IsTerminal;
use std::time::Instant;

use clap::{Parser, Subcommand};
use multiproc::{JoinableQueue, Process, Queue, RawArray, Value};

#[derive(Parser)]
#[command(
    name = "multiproc",
    version,
    about = "Python's multiprocessing for Rust: benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute pi over N terms, split over processes, through each transport.
    Pi(PiArgs),
}

const TRANSPORTS: &[&str] = &["seq", "file", "pipe", "value", "array", "queue", "joinable"];

#[derive(clap::Args)]
struct PiArgs {
    /// Number of terms of the series.
    #[arg(long, default_value_t = 100_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    n: u64,
    /// Worker processes (default: available cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    procs: Option<u64>,
    /// Chunks the work is split into (10: the classic tutorial; 10000: fine-grained).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    chunks: u64,
    /// Transports to measure, comma-separated: seq, file, pipe, value, array, queue, joinable.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "seq,file,pipe,value,array,queue,joinable"
    )]
    transport: Vec<String>,
    /// Print the JSON lines of shared/WORKLOADS.md instead of a table.
    #[arg(long)]
    json: bool,
}

/// The sum of 1/(2k+1)^2 for k in `range`, added from the smallest term up
/// (the most accurate order for this series).
fn partial(range: std::ops::Range<u64>) -> f64 {
    let mut s = 0.0;
    for k in range.rev() {
        let d = (2 * k + 1) as f64;
        s += 1.0 / (d * d);
    }
    s
}

/// Chunk `i` of `c` over `n` terms.
fn chunk(i: u64, c: u64, n: u64) -> std::ops::Range<u64> {
    (i * n / c)..((i + 1) * n / c)
}

/// The chunks process `p` of `procs` owns (static assignment).
fn owned(p: u64, procs: u64, c: u64) -> impl Iterator<Item = u64> {
    (p..c).step_by(procs as usize)
}

/// The binary's errors: the library's and the queues' alike.
type Outcome<T = f64> = Result<T, Box<dyn std::error::Error>>;

/// Runs `body(p)` in `procs` forked workers and waits for all; a worker's
/// error comes back as its message.
fn run_children(procs: u64, body: impl Fn(u64) -> Outcome<()> + Sync) -> Outcome<()> {
    let body = &body;
    let mut kids: Vec<Process> = (0..procs)
        .map(|p| {
            Process::new(move || body(p).map_err(|e| e.to_string()))
                .with_name(format!("pi-worker-{p}"))
        })
        .collect();
    for k in &mut kids {
        k.start()?;
    }
    for k in &mut kids {
        k.join_ok()?;
    }
    Ok(())
}

/// Reads back a partial sum written as 8 little-endian bytes.
fn decode(bytes: Vec<u8>) -> Outcome {
    let a: [u8; 8] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("a partial sum of {} bytes", b.len()))?;
    Ok(f64::from_le_bytes(a))
}

fn transport(name: &str, n: u64, c: u64, procs: u64) -> Outcome {
    // The partial sum of the chunks process `p` owns.
    let share = |p: u64| -> f64 { owned(p, procs, c).map(|i| partial(chunk(i, c, n))).sum() };
    match name {
        "seq" => Ok((0..c).map(|i| partial(chunk(i, c, n))).sum()),
        "file" => {
            let dir = std::env::temp_dir().join(format!("multiproc-pi-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let path = |p: u64| dir.join(format!("part-{p}"));
            let r = run_children(procs, |p| {
                Ok(std::fs::write(path(p), share(p).to_le_bytes())?)
            })
            .and_then(|()| (0..procs).map(|p| decode(std::fs::read(path(p))?)).sum());
            let _ = std::fs::remove_dir_all(&dir);
            r
        }
        "pipe" => {
            let pipes = (0..procs)
                .map(|_| multiproc::pipe(false))
                .collect::<multiproc::Result<Vec<_>>>()?;
            let pipes = &pipes;
            run_children(procs, |p| {
                Ok(pipes[p as usize].1.send_bytes(&share(p).to_le_bytes())?)
            })?;
            pipes.iter().map(|(r, _)| decode(r.recv_bytes()?)).sum()
        }
        "value" => {
            let total = Value::new(0.0f64)?;
            run_children(procs, |p| {
                let s = share(p);
                total.update(|t| *t += s);
                Ok(())
            })?;
            Ok(total.get())
        }
        "array" => {
            let slots = RawArray::<f64>::zeroed(procs as usize)?;
            run_children(procs, |p| Ok(slots.set(p as usize, share(p))?))?;
            Ok(slots.to_vec().iter().sum())
        }
        "queue" => {
            let q = Queue::<f64>::new()?;
            run_children(procs, |p| {
                for i in owned(p, procs, c) {
                    q.put(partial(chunk(i, c, n)))?;
                }
                Ok(())
            })?;
            (0..c).map(|_| Ok(q.get()?)).sum()
        }
        "joinable" => {
            // Chunks handed out dynamically; results come back on a queue.
            let tasks = JoinableQueue::<u64>::new()?;
            let results = Queue::<f64>::new()?;
            let (tasks_r, results_r) = (&tasks, &results);
            let mut kids: Vec<Process> = (0..procs)
                .map(|p| {
                    Process::new(move || -> Result<(), String> {
                        let work = || -> Outcome<()> {
                            while let Ok(i) = tasks_r.get() {
                                if i == u64::MAX {
                                    let _ = tasks_r.task_done();
                                    break;
                                }
                                results_r.put(partial(chunk(i, c, n)))?;
                                tasks_r.task_done()?;
                            }
                            Ok(())
                        };
                        work().map_err(|e| e.to_string())
                    })
                    .with_name(format!("pi-worker-{p}"))
                })
                .collect();
            for k in &mut kids {
                k.start()?;
            }
            for i in 0..c {
                tasks.put(i)?;
            }
            tasks.join();
            for _ in 0..procs {
                tasks.put(u64::MAX)?;
            }
            for k in &mut kids {
                k.join_ok()?;
            }
            (0..c).map(|_| Ok(results.get()?)).sum()
        }
        other => Err(format!("unknown transport {other:?}").into()),
    }
}

struct Row {
    name: String,
    seconds: f64,
    pi: f64,
    check: String,
}

fn pi(args: PiArgs) -> i32 {
    for t in &args.transport {
        if !TRANSPORTS.contains(&t.as_str()) {
            eprintln!(
                "multiproc pi: unknown transport {t:?}; choose from {} (manager, pool and redis are not built yet)",
                TRANSPORTS.join(", ")
            );
            return 2;
        }
    }
    let procs = args
        .procs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64));
    let (n, c) = (args.n, args.chunks);
    if c > n {
        eprintln!("multiproc pi: --chunks ({c}) cannot exceed --n ({n})");
        return 2;
    }
    let progress = std::io::stderr().is_terminal() && !args.json;
    let mut rows = Vec::new();
    for t in &args.transport {
        if progress {
            eprint!("\r{t:<10} running ...");
        }
        let start = Instant::now();
        let r = transport(t, n, c, procs);
        let seconds = start.elapsed().as_secs_f64();
        let (pi, check) = match r {
            Ok(s) => {
                let pi = (8.0 * s).sqrt();
                let err = (pi - std::f64::consts::PI).abs();
                let check = if err < 1.0 / n as f64 {
                    "ok".to_string()
                } else {
                    format!("pi off by {err:.3e} (more than 1/N)")
                };
                (pi, check)
            }
            Err(e) => (f64::NAN, format!("failed: {e}")),
        };
        rows.push(Row {
            name: t.clone(),
            seconds,
            pi,
            check,
        });
    }
    if progress {
        eprint!("\r{:30}\r", "");
    }
    let seq = rows.iter().find(|r| r.name == "seq").map(|r| r.seconds);
    let params = format!("{{\"N\": {n}, \"C\": {c}, \"P\": {procs}}}");
    if args.json {
        for r in &rows {
            for (metric, value) in [("seconds", r.seconds), ("pi", r.pi)] {
                println!(
                    "{{\"impl\": \"multiproc\", \"workload\": \"pi\", \"variant\": \"{}\", \"params\": {params}, \"metric\": \"{metric}\", \"value\": {value}, \"check\": \"{}\"}}",
                    r.name,
                    r.check.replace('"', "'")
                );
            }
        }
    } else {
        println!("pi over N = {n} terms, {c} chunks, {procs} processes");
        println!(
            "{:<10} {:>10} {:>20} {:>11} {:>8} {:>10}  check",
            "transport", "seconds", "pi", "error", "speedup", "efficiency"
        );
        for r in &rows {
            let speedup = seq.map(|s| s / r.seconds);
            let workers = if r.name == "seq" { 1.0 } else { procs as f64 };
            println!(
                "{:<10} {:>10.4} {:>20.15} {:>11.2e} {:>8} {:>10}  {}",
                r.name,
                r.seconds,
                r.pi,
                (r.pi - std::f64::consts::PI).abs(),
                speedup.map_or("-".into(), |s| format!("{s:.2}x")),
                speedup.map_or("-".into(), |s| format!("{:.0}%", 100.0 * s / workers)),
                r.check
            );
        }
    }
    if rows.iter().all(|r| r.check == "ok") {
        0
    } else {
        1
    }
}

fn main() {
    multiproc::init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Pi(args) => pi(args),
    };
    std::process::exit(code);
}
