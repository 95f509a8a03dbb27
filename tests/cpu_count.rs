//! `cpu_count` and `process_cpu_count` against python3's answers, and in a
//! child whose affinity mask is narrowed.

mod common;

use std::process::Command;

use common::{join_ok, serial, spawn};

#[test]
fn cpu_counts_agree_with_python() {
    // A python3 child would show up in the forking tests' leftover check.
    let _s = serial();
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, multiprocessing as m; print(m.cpu_count(), len(os.sched_getaffinity(0)))",
        ])
        .output()
        .expect("the interop tests need python3");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|n| n.parse::<usize>().unwrap());
    assert_eq!(multiproc::cpu_count(), it.next().unwrap());
    assert_eq!(multiproc::process_cpu_count(), it.next().unwrap());
}

#[test]
fn a_child_pinned_to_one_cpu_counts_one() {
    let _s = serial();
    let all = multiproc::cpu_count();
    let mut kid = spawn(move || {
        let mut one = nix::sched::CpuSet::new();
        let first = (0..nix::sched::CpuSet::count())
            .find(|&i| {
                nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
                    .unwrap()
                    .is_set(i)
                    .unwrap()
            })
            .unwrap();
        one.set(first).unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
        assert_eq!(multiproc::process_cpu_count(), 1);
        assert_eq!(multiproc::cpu_count(), all);
    });
    join_ok(&mut kid);
}
