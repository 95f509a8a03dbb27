//! The `multiproc` command: `multiproc pi` computes pi through every
//! transport, checks it, prints a table or WORKLOADS.md JSON lines, and
//! refuses bad arguments with a message and a non-zero exit.

use std::process::Command;

fn multiproc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args(args)
        .output()
        .expect("run multiproc")
}

#[test]
fn pi_json_lines_for_every_transport_are_verified() {
    let out = multiproc(&["pi", "--n", "2000000", "--chunks", "40", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let transports = ["seq", "file", "pipe", "value", "array", "queue", "joinable"];
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
    for t in ["seq", "pipe", "joinable"] {
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
