//! The `multiproc` command: `multiproc pi` computes pi through every
//! transport, checks it, prints a table or WORKLOADS.md JSON lines, and
//! refuses bad arguments with a message and a non-zero exit.

use std::process::Command;

/// The repository's root: the workspace that holds this crate (`cli/`).
fn repository() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is inside the repository")
}

fn multiproc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .expect("run multiproc")
}

/// Runs `multiproc` with `args`, which must succeed (else the test fails
/// with its stderr), and returns what it printed.
fn stdout_of(args: &[&str]) -> String {
    let out = multiproc(args);
    assert!(
        out.status.success(),
        "multiproc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("multiproc prints UTF-8")
}

#[test]
fn pi_json_lines_for_every_transport_are_verified() {
    let text = stdout_of(&["pi", "--n", "2000000", "--chunks", "40", "--json"]);
    let lines: Vec<&str> = text.lines().collect();
    let transports = [
        "seq",
        "fork_file",
        "fork_pipe",
        "value",
        "array",
        "queue",
        "joinable",
        "manager",
        "pool",
    ];
    assert_eq!(lines.len(), 2 * transports.len(), "{text}");
    for t in transports {
        for metric in ["seconds", "pi"] {
            let l = lines
                .iter()
                .find(|l| {
                    l.contains(&format!("\"variant\": \"{t}\""))
                        && l.contains(&format!("\"metric\": \"{metric}\""))
                })
                .unwrap_or_else(|| panic!("no {metric} line for {t}: {text}"));
            assert!(l.contains("\"impl\": \"multiproc\"") && l.contains("\"workload\": \"pi\""));
            assert!(l.contains("\"check\": \"ok\""), "{l}");
        }
    }
    let pi_line = lines
        .iter()
        .find(|l| l.contains("\"metric\": \"pi\""))
        .unwrap();
    let value: f64 = pi_line
        .split("\"value\": ")
        .nth(1)
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!((value - std::f64::consts::PI).abs() < 1.0 / 2_000_000.0);
}

#[test]
fn pi_table_names_each_transport() {
    let out = multiproc(&[
        "pi",
        "--n",
        "100000",
        "--procs",
        "3",
        "--transport",
        "seq,pipe,joinable",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("3 processes"), "{text}");
    // The table names transports as the JSON lines do (fork_pipe).
    for t in ["seq ", "fork_pipe ", "joinable "] {
        assert!(
            text.lines().any(|l| l.starts_with(t) && l.ends_with("ok")),
            "{text}"
        );
    }
}

#[test]
fn bad_arguments_are_refused_clearly() {
    for args in [
        &["pi", "--transport", "bogus"][..],
        &["pi", "--n", "0"],
        &["pi", "--n", "10", "--chunks", "100"],
        &["pi", "--procs", "many"],
        &["nonsense"],
    ] {
        let out = multiproc(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}

#[test]
fn bench_json_prints_verified_lines_with_their_baselines() {
    let text = stdout_of(&[
        "bench",
        "--workload",
        "counter,queue_1p1c",
        "--quick",
        "--json",
    ]);
    for (imp, workload, variant, metric) in [
        ("multiproc", "counter", "Value_lock", "ns_per_increment"),
        ("raw", "counter", "bare_futex_lock", "ns_per_increment"),
        ("multiproc", "queue_1p1c", "Queue", "messages_per_s"),
        ("raw", "queue_1p1c", "bare_spsc_ring", "messages_per_s"),
    ] {
        let l = text
            .lines()
            .find(|l| {
                l.contains(&format!("\"impl\": \"{imp}\""))
                    && l.contains(&format!("\"workload\": \"{workload}\""))
                    && l.contains(&format!("\"variant\": \"{variant}\""))
                    && l.contains(&format!("\"metric\": \"{metric}\""))
            })
            .unwrap_or_else(|| panic!("no {imp} {workload} {variant} line in {text}"));
        assert!(l.ends_with("\"check\": \"ok\"}"), "{l}");
        let value: f64 = l
            .split("\"value\": ")
            .nth(1)
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number in {l}"));
        assert!(value > 0.0 && value.is_finite(), "{l}");
    }
    // Only JSON lines on stdout.
    assert!(
        text.lines().all(|l| l.starts_with('{') && l.ends_with('}')),
        "{text}"
    );
}

#[test]
fn bench_table_and_bad_workload() {
    let text = stdout_of(&["bench", "--workload", "pipe_rtt", "--quick"]);
    let row = text
        .lines()
        .find(|l| l.starts_with("pipe_rtt"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("blocking_socketpair") && row.ends_with("ok"),
        "{row}"
    );
    let out = multiproc(&["bench", "--workload", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload"));
}

#[test]
fn bench_hogs_and_procs_reach_the_workloads() {
    let text = stdout_of(&[
        "bench",
        "--hogs",
        "1",
        "--procs",
        "6",
        "--workload",
        "counter,queue_2p2c",
        "--quick",
    ]);
    assert!(text.contains("beside 1 busy processes"), "{text}");
    let text = stdout_of(&[
        "bench",
        "--hogs",
        "--procs",
        "6",
        "--workload",
        "counter,queue_2p2c",
        "--quick",
        "--json",
    ]);
    // Six workers for the counter, three producers and three consumers.
    let counter = text
        .lines()
        .filter(|l| l.contains(r#""workload": "counter""#));
    assert!(counter.clone().count() == 5, "{text}");
    assert!(counter.clone().all(|l| l.contains(r#""P": 6"#)), "{text}");
    let queue = text
        .lines()
        .filter(|l| l.contains(r#""workload": "queue_2p2c""#));
    assert!(queue.clone().count() == 2, "{text}");
    assert!(queue.clone().all(|l| l.contains(r#""P": 6"#)), "{text}");
}

#[test]
fn pi_plot_draws_one_bar_per_transport() {
    let dir = std::env::temp_dir().join(format!("multiproc-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("pi.svg");
    stdout_of(&[
        "pi",
        "--n",
        "100000",
        "--transport",
        "seq,array,queue",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for t in ["seq", "array", "queue"] {
        assert!(
            text.contains(&format!(">{t}</text>")),
            "{t} missing: {text}"
        );
    }
    assert_eq!(text.matches("<rect x=").count(), 3, "{text}");
    let png = dir.join("pi.png");
    stdout_of(&[
        "pi",
        "--n",
        "100000",
        "--transport",
        "seq,pipe",
        "--plot",
        png.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000);
    let bad = multiproc(&[
        "pi",
        "--n",
        "1000",
        "--plot",
        dir.join("pi.gif").to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pi_redis_transport_through_a_real_server() {
    // Needs redis-server (CI installs it; `apt-get install redis-server`).
    let server = multiproc::redis::LocalServer::start().expect("start redis-server");
    let url = server.url();
    let text = stdout_of(&[
        "pi", "--n", "1000000", "--chunks", "20", "--redis", &url, "--json",
    ]);
    let l = text
        .lines()
        .find(|l| l.contains("\"variant\": \"fork_redis\"") && l.contains("\"metric\": \"pi\""))
        .unwrap_or_else(|| panic!("no redis line: {text}"));
    assert!(l.contains("\"check\": \"ok\""), "{l}");
    // Without a server, naming the transport is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args(["pi", "--transport", "redis"])
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis URL"));
}

/// A `multiproc manager serve` run and a manager connected to it.
struct Served {
    /// A fresh directory holding the key file and the socket `m.sock`.
    dir: std::path::PathBuf,
    /// The `--listen` address.
    listen: String,
    address: multiproc::Address,
    server: std::process::Child,
    m: multiproc::manager::Manager,
}

/// Starts `multiproc manager serve` on a socket in a fresh directory named
/// `tag` (plus this process's id), with `extra` arguments and the key
/// `s3cret` in a key file, and connects to it within 20 seconds.
fn serve(tag: &str, extra: &[&str]) -> Served {
    use multiproc::manager::Manager;
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key");
    std::fs::write(&key_file, "s3cret\n").unwrap();
    let listen = format!("unix:{}", dir.join("m.sock").display());
    let server = Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args(["manager", "serve"])
        .args(extra)
        .args(["--listen", &listen, "--authkey-file"])
        .arg(&key_file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let address = multiproc::Address::parse(&listen).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let m = loop {
        // The trailing newline of the key file is not part of the key.
        match Manager::connect(&address, b"s3cret") {
            Ok(m) => break m,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("cannot connect to the served manager: {e}"),
        }
    };
    Served {
        dir,
        listen,
        address,
        server,
        m,
    }
}

#[test]
fn manager_serve_for_other_processes_until_shutdown() {
    use multiproc::manager::Manager;
    let Served {
        dir,
        listen,
        address,
        mut server,
        m,
    } = serve("multiproc-serve", &[]);
    let list = m.list::<u64>().unwrap();
    list.push(&7).unwrap();
    list.push(&8).unwrap();
    assert_eq!(list.to_vec().unwrap(), vec![7, 8]);
    assert!(Manager::connect(&address, b"wrong").is_err());
    drop(list);
    m.shutdown().unwrap();
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // A missing key file is refused with a message.
    let out = multiproc(&[
        "manager",
        "serve",
        "--listen",
        &listen,
        "--authkey-file",
        dir.join("nope").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("authkey file"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `manager serve --legacy-auth` serves python3.11's own manager clients
/// (their HMAC-MD5 handshake), standard library only.
#[test]
fn manager_serve_serves_python_clients() {
    let Served {
        dir, mut server, m, ..
    } = serve("multiproc-serve-py", &["--legacy-auth"]);
    let sock = dir.join("m.sock");
    let script = format!(
        "from multiprocessing.managers import SyncManager\n\
         m = SyncManager(address={:?}, authkey=b's3cret')\n\
         m.connect()\n\
         d = m.dict(); d['k'] = [1, 'two']; assert d['k'] == [1, 'two']\n\
         q = m.Queue(); q.put(3); assert q.get(timeout=5) == 3\n\
         print('OK')",
        sock.to_str().unwrap()
    );
    let py = Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed for the interop tests");
    let out = output_within(py, std::time::Duration::from_secs(60), "the python client");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.shutdown().unwrap();
    assert!(server.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn faults_scenarios_print_what_was_lost_and_pass() {
    let out = multiproc(&[
        "faults",
        "--quick",
        "--json",
        "--scenario",
        "lock_kill,pipe_kill,churn",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, name) in lines.iter().zip(["lock_kill", "pipe_kill", "churn"]) {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        for want in [
            format!("\"scenario\":\"{name}\""),
            "\"verdict\":\"ok\"".to_owned(),
            "\"zombies\":0".to_owned(),
            "\"duplicated\":0".to_owned(),
        ] {
            assert!(line.contains(&want), "{want} not in {line}");
        }
        assert!(!line.contains("\"faults\":0,"), "nothing was done: {line}");
        // Descriptors: the verdict counts any growth but the shared heap's
        // generation pipes (at most 9 ends, released lazily) as a leak.
        let delta: i64 = line
            .split("\"fd_delta\":")
            .nth(1)
            .and_then(|r| r.split([',', '}']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no fd_delta in {line}"));
        assert!(delta <= 9, "{delta} descriptors more after {name}: {line}");
    }
    // Holders killed while holding the lock: every one recovered, with
    // its latency figures.
    assert!(lines[0].contains("owner-died p99"), "{}", lines[0]);
    let out = multiproc(&["faults", "--scenario", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario"));
}

/// Runs `multiproc` with a bound: a run that should have been refused at
/// once but goes on computing is killed and fails the test.
fn multiproc_bounded(args: &[&str], bound: std::time::Duration) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args(args)
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run multiproc");
    output_within(child, bound, &format!("multiproc {args:?}"))
}

/// The output of `child` (`what`), which must end within `bound`: else it
/// is killed and the test fails.
fn output_within(
    mut child: std::process::Child,
    bound: std::time::Duration,
    what: &str,
) -> std::process::Output {
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {bound:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn counts_accept_exponents_and_underscores() {
    for (n, c) in [
        ("1e5", "1_0"),
        ("100_000", "1e1"),
        ("100000", "10"),
        ("1.0e5", "10"),
    ] {
        let out = multiproc(&[
            "pi",
            "--n",
            n,
            "--chunks",
            c,
            "--transport",
            "seq",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "--n {n} --chunks {c}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(r#""N": 100000, "C": 10"#), "{n} {c}: {text}");
    }
    for n in ["1.5", "1e", "e5", "1e5e2", "-3", "0", "0e9", "1e30", "ten"] {
        let out = multiproc(&["pi", "--n", n, "--transport", "seq"]);
        assert_eq!(out.status.code(), Some(2), "--n {n} was accepted");
        assert!(!out.stderr.is_empty(), "--n {n}: no message");
    }
}

#[test]
fn table_chart_and_json_use_the_same_transport_names() {
    let args = ["pi", "--n", "2000", "--transport", "seq,file,pipe,value"];
    let json = String::from_utf8(multiproc(&[&args[..], &["--json"]].concat()).stdout).unwrap();
    let table = String::from_utf8(multiproc(&args).stdout).unwrap();
    for name in ["seq", "fork_file", "fork_pipe", "value"] {
        assert!(
            json.contains(&format!(r#""variant": "{name}""#)),
            "{name}: {json}"
        );
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}: {table}"));
        // Small times keep significant digits (never 0.0000).
        let seconds: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(seconds > 0.0, "{row}");
    }
    // The long names are accepted on the command line too.
    stdout_of(&["pi", "--n", "2000", "--transport", "fork_pipe,fork_file"]);
}

#[test]
fn skipping_redis_is_announced_with_how_to_enable_it() {
    let out = multiproc(&["pi", "--n", "1e4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("fork_redis skipped"), "{err}");
    assert!(
        err.contains("--redis") && err.contains("REDIS_URL"),
        "{err}"
    );
    // Naming the transports leaves no note.
    let out = multiproc(&["pi", "--n", "1e4", "--transport", "seq"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("skipped"));
}

#[test]
fn plot_path_is_checked_before_the_run() {
    // N = 1e12 would compute for many minutes: the refusal must come first.
    let bound = std::time::Duration::from_secs(30);
    for (path, says) in [
        ("/nonexistent-multiproc-dir/pi.svg", "does not exist"),
        ("/proc/pi.svg", "cannot write"),
        ("pi.gif", ".svg or .png"),
    ] {
        let out = multiproc_bounded(
            &[
                "pi",
                "--n",
                "1000000000000",
                "--transport",
                "seq",
                "--plot",
                path,
            ],
            bound,
        );
        assert_eq!(out.status.code(), Some(2), "--plot {path}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "--plot {path}: {err}");
        assert!(out.stdout.is_empty(), "ran before refusing {path}");
    }
}

#[test]
fn python_script_is_not_a_build_machine_path() {
    // No absolute path of the build tree is baked into the binary.
    let exe = std::fs::read(env!("CARGO_BIN_EXE_multiproc")).unwrap();
    let baked = repository().join("benches/python/workloads.py");
    let baked = baked.to_str().unwrap();
    assert!(
        !exe.windows(baked.len()).any(|w| w == baked.as_bytes()),
        "the binary holds {baked}"
    );
    // A copy of the binary away from any checkout, run from elsewhere,
    // asks for the script clearly instead of using a stale path.
    let dir = std::env::temp_dir().join(format!("multiproc-alone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let alone = dir.join("multiproc");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_multiproc"), &alone).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_multiproc"), &alone).unwrap();
    }
    let run = |args: &[&str]| {
        Command::new(&alone)
            .args(args)
            .current_dir(&dir)
            .env_remove("REDIS_URL")
            .output()
            .unwrap()
    };
    let out = run(&[
        "bench",
        "--compare-python",
        "--workload",
        "counter",
        "--quick",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--python-script"), "{err}");
    let out = run(&[
        "bench",
        "--compare-python",
        "--python-script",
        "missing.py",
        "--workload",
        "counter",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.py"));
    std::fs::remove_dir_all(&dir).unwrap();
    // From the checkout the script is found relative to the executable.
    let out = Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args([
            "bench",
            "--compare-python",
            "--workload",
            "spawn",
            "--quick",
            "--json",
        ])
        .current_dir(std::env::temp_dir())
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#""impl": "python""#),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn readme_links_only_to_files_in_the_repository() {
    let root = repository();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut links = 0;
    for part in readme.split("](").skip(1) {
        let target = part.split(')').next().unwrap();
        if target.contains("://") || target.starts_with('#') {
            continue;
        }
        links += 1;
        let path = target.split('#').next().unwrap();
        assert!(
            !path.starts_with('/') && !path.split('/').any(|c| c == ".."),
            "README links outside the repository: {target}"
        );
        assert!(
            root.join(path).exists(),
            "README links to a missing file: {target}"
        );
    }
    assert!(links > 0);
}
