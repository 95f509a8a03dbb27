//! The `multiproc` command.
//!
//! ```text
//! multiproc pi [--n 100000000] [--procs P] [--chunks C] [--transport T,...] [--redis URL] [--json] [--plot FILE.svg|FILE.png]
//! multiproc bench [--workload W,...] [--quick] [--json] [--compare-python]
//! multiproc manager serve --listen unix:PATH|tcp:HOST:PORT --authkey-file FILE
//! multiproc faults [--quick] [--json] [--scenario S,...]
//! ```
//!
//! `pi` computes pi from the series sum_{k<N} 1/(2k+1)^2 = pi^2/8, split
//! into chunks over worker processes, and returns the partial sums through
//! each transport, timing each. `bench` runs the workloads of
//! `shared/WORKLOADS.md`, each beside its raw baseline (and Python's, when
//! asked), and prints a summary table or the verified JSON lines.
//! `faults` runs the fault-injection suite (kills, floods, garbage) and
//! prints what each scenario did and lost.

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod faults;
mod pi;
mod plot;
mod report;
#[path = "../../../benches/support/mod.rs"]
mod support;
mod workloads;

use report::Line;

#[derive(Parser)]
#[command(
    name = "multiproc",
    version,
    about = "Python's multiprocessing for Rust: the pi benchmark and the workloads"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute pi over N terms, split over processes, through each transport.
    Pi(PiArgs),
    /// Run the workloads of shared/WORKLOADS.md beside their raw baselines.
    Bench(BenchArgs),
    /// Kill, flood and garble at bounded sizes; print what was lost.
    Faults(FaultsArgs),
    /// A manager server for other processes and hosts.
    Manager {
        #[command(subcommand)]
        command: ManagerCommand,
    },
}

#[derive(Subcommand)]
enum ManagerCommand {
    /// Serve lists, dicts, queues, locks ... until SIGTERM, SIGINT or a
    /// client's shutdown request.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Where to listen: unix:PATH, a bare path, or tcp:HOST:PORT.
    #[arg(long, value_name = "ADDRESS")]
    listen: String,
    /// A file holding the authentication key (one trailing newline is
    /// dropped). Clients must present the same key.
    #[arg(long, value_name = "FILE")]
    authkey_file: PathBuf,
}

fn manager_serve(args: ServeArgs) -> i32 {
    let address = match multiproc::Address::parse(&args.listen) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("multiproc manager serve: --listen {}: {e}", args.listen);
            return 2;
        }
    };
    let mut key = match std::fs::read(&args.authkey_file) {
        Ok(k) => k,
        Err(e) => {
            eprintln!(
                "multiproc manager serve: cannot read the authkey file {}: {e}",
                args.authkey_file.display()
            );
            return 2;
        }
    };
    if key.last() == Some(&b'\n') {
        key.pop();
    }
    if key.is_empty() {
        eprintln!(
            "multiproc manager serve: the authkey file {} is empty",
            args.authkey_file.display()
        );
        return 2;
    }
    eprintln!("multiproc manager: serving on {}", args.listen);
    match multiproc::manager::serve(&address, &key) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("multiproc manager serve: {e}");
            1
        }
    }
}

#[derive(clap::Args)]
struct FaultsArgs {
    /// Small sizes (CI): under a minute in all.
    #[arg(long)]
    quick: bool,
    /// One JSON line per scenario instead of the table.
    #[arg(long)]
    json: bool,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
}

fn faults_command(args: FaultsArgs) -> i32 {
    let chosen: Vec<String> = if args.scenario.is_empty() {
        faults::SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        args.scenario.clone()
    };
    for s in &chosen {
        if !faults::SCENARIOS.contains(&s.as_str()) {
            eprintln!(
                "multiproc faults: unknown scenario {s:?}; choose from {}",
                faults::SCENARIOS.join(", ")
            );
            return 2;
        }
    }
    let progress = Progress::new(!args.json);
    let reports = faults::run(&chosen, args.quick, |r| {
        if args.json {
            println!("{}", r.json());
        } else {
            progress.show(&format!("{} done", r.scenario));
        }
    });
    progress.clear();
    if !args.json {
        let sizes = if args.quick {
            "quick sizes"
        } else {
            "full sizes"
        };
        println!("multiproc faults ({sizes}; latencies are printed, never judged)");
        print!("{}", faults::table(&reports));
    }
    if reports.iter().all(faults::Report::ok) {
        0
    } else {
        1
    }
}

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
    /// Transports to measure, comma-separated: seq, file, pipe, value, array, queue, joinable,
    /// manager, pool, redis [default: all; redis only with a Redis server given].
    #[arg(long, value_delimiter = ',')]
    transport: Vec<String>,
    /// The Redis server of the redis transport, e.g. redis://127.0.0.1:6379.
    #[arg(long, value_name = "URL", env = "REDIS_URL")]
    redis: Option<String>,
    /// Print the JSON lines of shared/WORKLOADS.md instead of a table.
    #[arg(long)]
    json: bool,
    /// Draw a bar chart of the times into this file (.svg or .png).
    #[arg(long, value_name = "FILE.svg|FILE.png")]
    plot: Option<PathBuf>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Workloads to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    workload: Vec<String>,
    /// Small sizes: a quick look, not figures to quote.
    #[arg(long)]
    quick: bool,
    /// Print only the verified JSON lines on stdout.
    #[arg(long)]
    json: bool,
    /// Also run python3's multiprocessing on the same workloads (the script
    /// benches/python/workloads.py) and show the ratios.
    #[arg(long)]
    compare_python: bool,
    /// The Python side's script.
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python/workloads.py"))]
    python_script: PathBuf,
    /// Worker processes for pi (default: available cores); when given, also
    /// for counter (default 2) and queue_2p2c (half producers, half
    /// consumers; default 2 + 2).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    procs: Option<u64>,
    /// Run everything (baselines too) beside N busy processes, started and
    /// stopped by the bench: an oversubscribed machine (N defaults to the
    /// available cores).
    #[arg(long, value_name = "N", num_args = 0..=1, value_parser = clap::value_parser!(u64).range(0..=1024))]
    hogs: Option<Option<u64>>,
    /// A Redis server for pi's redis transport, e.g. redis://127.0.0.1:6379.
    #[arg(long, value_name = "URL", env = "REDIS_URL")]
    redis: Option<String>,
}

fn default_procs() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// A one-line progress note on stderr, only when it is a terminal.
struct Progress(bool);

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress(enabled && std::io::stderr().is_terminal())
    }

    fn show(&self, what: &str) {
        if self.0 {
            eprint!("\r\x1b[2K{what} ...");
            let _ = std::io::stderr().flush();
        }
    }

    fn clear(&self) {
        if self.0 {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

fn pi_command(mut args: PiArgs) -> i32 {
    if let Some(url) = args.redis.clone() {
        pi::set_redis_url(url);
    }
    if args.transport.is_empty() {
        args.transport = pi::TRANSPORTS
            .iter()
            .filter(|t| **t != "redis" || args.redis.is_some())
            .map(|t| t.to_string())
            .collect();
    }
    if args.transport.iter().any(|t| t == "redis") && args.redis.is_none() {
        eprintln!("multiproc pi: the redis transport needs a server: --redis URL or REDIS_URL");
        return 2;
    }
    for t in &args.transport {
        if !pi::TRANSPORTS.contains(&t.as_str()) {
            eprintln!(
                "multiproc pi: unknown transport {t:?}; choose from {}",
                pi::TRANSPORTS.join(", ")
            );
            return 2;
        }
    }
    if let Some(path) = &args.plot {
        if !plot::supported(path) {
            eprintln!(
                "multiproc pi: --plot {}: give a .svg or .png file name",
                path.display()
            );
            return 2;
        }
    }
    let procs = args.procs.unwrap_or_else(default_procs);
    let (n, c) = (args.n, args.chunks);
    if c > n {
        eprintln!("multiproc pi: --chunks ({c}) cannot exceed --n ({n})");
        return 2;
    }
    let progress = Progress::new(!args.json);
    let mut runs = Vec::new();
    for t in &args.transport {
        progress.show(&format!("pi through {t}"));
        runs.push(pi::run(t, n, c, procs));
    }
    progress.clear();
    let seq = runs
        .iter()
        .find(|r| r.transport == "seq")
        .map(|r| r.seconds);
    if args.json {
        for r in &runs {
            for l in r.lines("multiproc", n, c, procs) {
                println!("{}", l.json());
            }
        }
    } else {
        println!("pi over N = {n} terms, {c} chunks, {procs} processes");
        println!(
            "{:<10} {:>10} {:>20} {:>11} {:>8} {:>10}  check",
            "transport", "seconds", "pi", "error", "speedup", "efficiency"
        );
        for r in &runs {
            let speedup = seq.map(|s| s / r.seconds);
            let workers = if r.transport == "seq" {
                1.0
            } else {
                procs as f64
            };
            println!(
                "{:<10} {:>10.4} {:>20.15} {:>11.2e} {:>8} {:>10}  {}",
                r.transport,
                r.seconds,
                r.pi,
                (r.pi - std::f64::consts::PI).abs(),
                speedup.map_or("-".into(), |s| format!("{s:.2}x")),
                speedup.map_or("-".into(), |s| format!("{:.0}%", 100.0 * s / workers)),
                r.check
            );
        }
    }
    if let Some(path) = &args.plot {
        let title = format!("pi, N = {n}, {c} chunks, {procs} processes");
        if let Err(e) = plot::write(path, &title, &runs) {
            eprintln!("multiproc pi: {e}");
            return 1;
        }
    }
    if runs.iter().all(|r| r.check == "ok") {
        0
    } else {
        1
    }
}

/// Runs the Python side of one workload; its lines, or a line saying why
/// there are none.
fn python_lines(script: &std::path::Path, workload: &str, quick: bool) -> Vec<Line> {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script).args(["--workload", workload]);
    if quick {
        cmd.arg("--quick");
    }
    let failed = |why: String| vec![Line::new("python", workload, "-", &[], "-", f64::NAN, &why)];
    // Python's progress notes are dropped; they are shown when it fails.
    match cmd.output() {
        Ok(out) => {
            let lines: Vec<Line> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(Line::parse)
                .collect();
            if lines.is_empty() {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err.lines().last().unwrap_or("");
                failed(format!(
                    "python3 {} printed no lines ({}): {last}",
                    script.display(),
                    out.status
                ))
            } else {
                lines
            }
        }
        Err(e) => failed(format!("cannot run python3: {e}")),
    }
}

fn bench_command(args: BenchArgs) -> i32 {
    let chosen: Vec<String> = if args.workload.is_empty() {
        workloads::WORKLOADS.iter().map(|w| w.to_string()).collect()
    } else {
        args.workload.clone()
    };
    for w in &chosen {
        if !workloads::WORKLOADS.contains(&w.as_str()) {
            eprintln!(
                "multiproc bench: unknown workload {w:?}; choose from {}",
                workloads::WORKLOADS.join(", ")
            );
            return 2;
        }
    }
    if args.compare_python && !args.python_script.is_file() {
        eprintln!(
            "multiproc bench: --compare-python needs the script {} (from the multiproc repository); give its path with --python-script",
            args.python_script.display()
        );
        return 2;
    }
    if let Some(url) = args.redis.clone() {
        pi::set_redis_url(url);
    }
    let size = workloads::Size::new(args.quick);
    let procs = args.procs.unwrap_or_else(default_procs);
    workloads::set_workers(args.procs);
    let hogs = args.hogs.map(|n| n.unwrap_or_else(default_procs));
    let _hogs = match hogs.map(|n| workloads::Hogs::start(n as usize)) {
        Some(Err(e)) => {
            eprintln!("multiproc bench: cannot start the busy processes: {e}");
            return 1;
        }
        h => h,
    };
    let progress = Progress::new(true);
    let mut lines: Vec<Line> = Vec::new();
    let mut failed = false;
    for w in &chosen {
        progress.show(w);
        match workloads::run(w, size, procs) {
            Ok(ls) => lines.extend(ls),
            Err(e) => {
                failed = true;
                lines.push(Line::new(
                    "multiproc",
                    w,
                    "-",
                    &[],
                    "-",
                    f64::NAN,
                    &format!("failed: {e}"),
                ));
            }
        }
        if args.compare_python {
            progress.show(&format!("{w} (python3)"));
            lines.extend(python_lines(&args.python_script, w, args.quick));
        }
        if args.json {
            // Lines go out as each workload ends, so a long run shows progress.
            progress.clear();
            for l in lines.iter().filter(|l| l.workload == *w) {
                if l.ok() {
                    println!("{}", l.json());
                } else {
                    eprintln!("multiproc bench: not verified: {}", l.json());
                }
            }
        }
    }
    progress.clear();
    if !args.json {
        let sizes = if args.quick {
            "quick sizes"
        } else {
            "WORKLOADS.md sizes"
        };
        let busy = hogs.map_or(String::new(), |n| format!(", beside {n} busy processes"));
        println!(
            "multiproc bench ({sizes}, {procs} processes for pi{busy}; best of the repetitions)"
        );
        print!("{}", report::table(&lines));
    }
    if failed || lines.iter().any(|l| l.imp != "python" && !l.ok()) {
        1
    } else {
        0
    }
}

fn main() {
    if std::env::var_os(workloads::EXIT_AT_ONCE).is_some() {
        return;
    }
    multiproc::init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Pi(args) => pi_command(args),
        Command::Bench(args) => bench_command(args),
        Command::Faults(args) => faults_command(args),
        Command::Manager {
            command: ManagerCommand::Serve(args),
        } => manager_serve(args),
    };
    std::process::exit(code);
}
