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
//! `benches/WORKLOADS.md`, each beside its raw baseline (and Python's, when
//! asked), and prints a summary table or the verified JSON lines.
//! `faults` runs the fault-injection suite (kills, floods, garbage) and
//! prints what each scenario did and lost.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod faults;
mod pi;
mod plot;
mod report;
mod workloads;

use multiproc_bench_support as support;

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
    /// Run the workloads of benches/WORKLOADS.md beside their raw baselines.
    Bench(BenchArgs),
    /// Kill, flood and garble at bounded sizes; print what was lost.
    Faults(FaultsArgs),
    /// A worker of a distributed pool (`pi --transport redis_pool` uses the
    /// pool name multiproc-pi): runs its tasks until the pool stops its
    /// workers. Needs this very build of multiproc, and the pool's
    /// MULTIPROC_AUTHKEY.
    Worker {
        /// The Redis server, e.g. redis://10.0.0.1:6379/.
        url: String,
        /// The pool's name.
        #[arg(default_value = "multiproc-pi")]
        name: String,
    },
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
    /// Also accept the HMAC-MD5 handshake of CPython 3.11 and older
    /// manager clients (3.12 speaks SHA-256).
    #[arg(long)]
    legacy_auth: bool,
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
    let served = multiproc::manager::Manager::builder()
        .address(address)
        .authkey(key)
        .legacy_auth(args.legacy_auth)
        .serve();
    match served {
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
    /// Number of terms of the series: 100000000, 100_000_000 or 1e8.
    #[arg(long, default_value = "1e8", value_parser = positive_count)]
    n: u64,
    /// Worker processes (default: available cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    procs: Option<u64>,
    /// Chunks the work is split into (10: the classic tutorial; 1e4: fine-grained).
    #[arg(long, default_value_t = 10, value_parser = positive_count)]
    chunks: u64,
    /// Transports to measure, comma-separated: seq, fork_file, fork_pipe, value, array, queue,
    /// joinable, manager, pool, fork_redis (file, pipe and redis name the fork_ ones too)
    /// [default: all; fork_redis only with a Redis server given].
    #[arg(long, value_delimiter = ',')]
    transport: Vec<String>,
    /// The Redis server of the redis transport, e.g. redis://127.0.0.1:6379.
    #[arg(long, value_name = "URL", env = "REDIS_URL")]
    redis: Option<String>,
    /// Print the JSON lines of benches/WORKLOADS.md instead of a table.
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
    /// The Python side's script [default: benches/python/workloads.py of
    /// the repository, looked for from the current directory and from the
    /// executable's location].
    #[arg(long, value_name = "FILE")]
    python_script: Option<PathBuf>,
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

/// A count as a person writes it: `100000000`, `100_000_000`, `1e8` or
/// `2.5e6` (the value must be a whole number that fits in a u64).
fn parse_count(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a whole number (write 100000000, 100_000_000 or 1e8)");
    let t: String = text.trim().chars().filter(|c| *c != '_').collect();
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<u32>().map_err(|_| bad())?),
        None => (t.as_str(), 0),
    };
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole
            .chars()
            .chain(frac.chars())
            .all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    // The fraction's digits past the exponent must be zeros.
    let shift = exponent as usize;
    let kept = frac.len().min(shift);
    if frac[kept..].chars().any(|c| c != '0') {
        return Err(bad());
    }
    let digits = format!("{whole}{}", &frac[..kept]);
    let zeros = shift - kept;
    let too_big = || format!("{text:?} is too large (at most {})", u64::MAX);
    let mut value: u64 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| too_big())?
    };
    for _ in 0..zeros {
        if value == 0 {
            break;
        }
        value = value.checked_mul(10).ok_or_else(too_big)?;
    }
    Ok(value)
}

/// [`parse_count`] for counts that must be at least 1.
fn positive_count(text: &str) -> Result<u64, String> {
    match parse_count(text)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// Where `--plot` will write: refused before the run (not after it) when
/// the extension is not .svg or .png, or its directory is missing or not
/// writable.
fn check_plot_path(path: &std::path::Path) -> Result<(), String> {
    if !plot::supported(path) {
        return Err("give a .svg or .png file name".into());
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        plot::check_png_fonts().map_err(|e| e.to_string())?;
    }
    if path.is_dir() {
        return Err("is a directory; give a .svg or .png file name".into());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("the directory {} does not exist", dir.display()));
    }
    // Writable: create and remove a probe file (permission bits alone do
    // not tell, e.g. for root or a read-only mount).
    let probe = dir.join(format!(".multiproc-plot-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("cannot write in {}: {e}", dir.display())),
    }
}

/// The script `bench --compare-python` runs: the one given, else
/// `benches/python/workloads.py` found from the current directory or from
/// the executable's location (`target/release/multiproc` in a checkout).
fn python_script(given: Option<&std::path::Path>) -> Result<PathBuf, String> {
    const RELATIVE: &str = "benches/python/workloads.py";
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--python-script {}: no such file", p.display()))
        };
    }
    let mut bases: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        bases.extend(cwd.ancestors().map(PathBuf::from));
    }
    if let Ok(exe) = std::env::current_exe() {
        bases.extend(exe.ancestors().skip(1).map(PathBuf::from));
    }
    bases
        .iter()
        .map(|b| b.join(RELATIVE))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "--compare-python needs the script {RELATIVE} of the multiproc repository; \
                 run from a checkout or give its path with --python-script FILE"
            )
        })
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
            .filter(|t| !t.starts_with("redis") || args.redis.is_some())
            .map(|t| t.to_string())
            .collect();
        if args.redis.is_none() {
            eprintln!("{}", pi::REDIS_SKIPPED);
        }
    }
    for t in &mut args.transport {
        match pi::transport_name(t) {
            Some(name) => *t = name.to_string(),
            None => {
                eprintln!(
                    "multiproc pi: unknown transport {t:?}; choose from {}",
                    pi::TRANSPORTS
                        .iter()
                        .map(|t| pi::variant(t))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return 2;
            }
        }
    }
    if args.transport.iter().any(|t| t == "redis") && args.redis.is_none() {
        eprintln!(
            "multiproc pi: the fork_redis transport needs a server: --redis URL or REDIS_URL"
        );
        return 2;
    }
    if let Some(path) = &args.plot
        && let Err(e) = check_plot_path(path)
    {
        eprintln!("multiproc pi: --plot {}: {e}", path.display());
        return 2;
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
                "{:<10} {:>10} {:>20.15} {:>11.2e} {:>8} {:>10}  {}",
                pi::variant(&r.transport),
                report::significant(r.seconds, 4),
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
        // redis_pool runs only when asked for (it installs RQ to compare).
        if !workloads::WORKLOADS.contains(&w.as_str()) && w != "redis_pool" {
            eprintln!(
                "multiproc bench: unknown workload {w:?}; choose from {}, redis_pool",
                workloads::WORKLOADS.join(", ")
            );
            return 2;
        }
    }
    let script = if args.compare_python {
        match python_script(args.python_script.as_deref()) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("multiproc bench: {e}");
                return 2;
            }
        }
    } else {
        None
    };
    if args.redis.is_none() && chosen.iter().any(|w| w == "pi") {
        eprintln!("{}", pi::REDIS_SKIPPED);
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
        if let Some(script) = script.as_ref().filter(|_| w != "redis_pool") {
            progress.show(&format!("{w} (python3)"));
            lines.extend(python_lines(script, w, args.quick));
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
            "multiproc bench ({sizes}, {procs} processes for pi{busy}; best of the repetitions; counter: median of interleaved rounds)"
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
        Command::Worker { url, name } => match multiproc::redis::worker(&url, &name) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("multiproc worker: {e}");
                1
            }
        },
        Command::Manager {
            command: ManagerCommand::Serve(args),
        } => manager_serve(args),
    };
    std::process::exit(code);
}
