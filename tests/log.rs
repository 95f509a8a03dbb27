//! Feature `log`: process starts and ends reach the `log` facade, under the
//! target "multiproc", and `log_to_stderr` keeps a program's own logger.

mod common;

use std::sync::Mutex;

use common::{join_ok, serial, spawn};
use log::{Level, Log, Metadata, Record};

struct Capture(Mutex<Vec<(Level, String, String)>>);

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &Record<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((r.level(), r.target().to_string(), r.args().to_string()));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn process_start_and_end_are_logged() {
    let _s = serial();
    log::set_logger(&CAPTURE).expect("the only logger of this binary");
    // The program's logger is there: log_to_stderr keeps it and only
    // raises the level.
    log::set_max_level(log::LevelFilter::Error);
    assert!(!multiproc::log_to_stderr(Level::Info));
    assert_eq!(log::max_level(), log::LevelFilter::Info);

    // SAFETY: as tests/common's `spawn`: the child touches nothing but
    // exits (the harness's other threads hold no lock it takes).
    let mut p = unsafe {
        multiproc::Process::new(|| std::process::exit(3))
            .with_name("logged-child")
            .allow_threads()
    };
    p.start().unwrap();
    join_ok_or_code(&mut p, 3);
    let pid = p.pid().unwrap();
    let mut ok = spawn(|| ());
    join_ok(&mut ok);

    let records = CAPTURE.0.lock().unwrap().clone();
    let ours: Vec<_> = records
        .iter()
        .filter(|(_, target, _)| target == "multiproc")
        .collect();
    assert!(
        ours.iter().any(|(l, _, m)| *l == Level::Info
            && m == &format!("started logged-child (pid {pid})")),
        "{ours:?}"
    );
    assert!(
        ours.iter().any(|(l, _, m)| *l == Level::Info
            && m.starts_with(&format!("logged-child (pid {pid}) ended"))
            && m.contains('3')),
        "{ours:?}"
    );
}

fn join_ok_or_code(p: &mut multiproc::Process, code: i32) {
    let s = p.join().unwrap();
    assert_eq!(s.code(), code, "{s:?}");
}
