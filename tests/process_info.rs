//! `cpu_count`, `process_cpu_count` (against python3's answers, and in a
//! child whose affinity mask is narrowed) and `parent_process` (in a child
//! and a grandchild that outlives it).
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::process::Command;
use std::time::Duration;

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

#[test]
fn parent_process_names_the_parent_and_waits_for_its_end() {
    let _s = serial();
    assert!(
        multiproc::parent_process().is_none(),
        "the main process has no parent_process"
    );
    let ready = std::sync::Arc::new(multiproc::Event::new().unwrap());
    let saw_end = std::sync::Arc::new(multiproc::Event::new().unwrap());
    let (r, e) = (ready.clone(), saw_end.clone());
    let mut child = spawn(move || {
        let r2 = r.clone();
        let child_pid = std::process::id() as i32;
        let p = multiproc::parent_process().expect("a child has a parent_process");
        assert_eq!(p.pid(), nix::unistd::getppid().as_raw());
        assert!(p.is_alive());
        // A grandchild waits for this child's end.
        let mut g = multiproc::Process::new(move || {
            let p = multiproc::parent_process().unwrap();
            assert_eq!(p.pid(), child_pid);
            assert!(!p.join_timeout(Some(Duration::ZERO)).unwrap());
            r.set();
            if p.join_timeout(Some(Duration::from_secs(10))).unwrap() && !p.is_alive() {
                e.set();
            }
        });
        g.start().unwrap();
        assert!(r2.wait_timeout(Duration::from_secs(10)));
        // Exit without joining it: the grandchild sees its parent end.
        std::mem::forget(g);
    });
    join_ok(&mut child);
    assert!(
        saw_end.wait_timeout(Duration::from_secs(10)),
        "the grandchild did not see its parent end"
    );
}
