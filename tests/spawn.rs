//! The spawn start method: children that are fresh runs of this test
//! binary, started from a multithreaded parent, sharing Values, locks and
//! events through re-mapped shared memory.
//!
//! This binary has its own `main` (libtest-mimic) because `multiproc::init`
//! must run before anything else when the binary is started as a spawned
//! child.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use multiproc::{
    Array, Event, ExitStatus, Lock, Process, RawValue, StartError, Value, current_process,
};

fn check(cond: bool, what: &str) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what.into()) }
}

// ---- entry points run in spawned children ----

fn add_under_lock(args: (Arc<Value<u64>>, u64)) -> u64 {
    let (counter, k) = args;
    for _ in 0..k {
        *counter.lock().unwrap() += 1;
    }
    counter.get()
}

fn wait_then_fill(args: (Arc<Event>, Arc<Array<f64>>, Arc<Lock>, usize)) -> f64 {
    let (go, array, lock, slot) = args;
    go.wait();
    let _g = lock.lock().unwrap();
    array.set(slot, slot as f64 * 1.5).unwrap();
    array.to_vec().iter().sum()
}

fn who_am_i(_: ()) -> (String, Vec<u8>, i32) {
    let me = current_process();
    (me.name().to_owned(), me.authkey().to_vec(), me.parent_pid())
}

fn panics(msg: String) -> u32 {
    panic!("{msg}")
}

fn sleeps(_: ()) {
    std::thread::sleep(Duration::from_secs(60));
}

fn atomics(v: Arc<RawValue<u64>>) {
    for _ in 0..10_000 {
        v.fetch_add(1);
    }
}

/// Runs this test binary again with `--list` (it lists the tests and
/// exits), waiting at most 30 s; whether it succeeded, and its output.
fn list_tests_again(env: Option<&str>) -> (bool, String) {
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("--list")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(v) = env {
        cmd.env("MULTIPROC_SPAWN_BOOTSTRAP", v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (false, e.to_string()),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    match child.wait_with_output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{:?}: {}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// Starts the program again from a spawned child, as a program that runs
/// itself with `Command` does.
fn starts_the_program_again(_: ()) -> (bool, String) {
    list_tests_again(None)
}

/// A function of the C library (a shared object) as a Rust function
/// pointer; never called.
fn foreign() -> fn(i32) -> i32 {
    // SAFETY: dlsym with a NUL-terminated name; checked for null below.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"abs".as_ptr()) };
    assert!(!p.is_null());
    // SAFETY: a non-null code address of a C function taking and returning
    // an int; the pointer is handed to `Process::spawn`, which must refuse
    // it without calling it.
    unsafe { std::mem::transmute::<*mut libc::c_void, fn(i32) -> i32>(p) }
}

// ---- tests ----

fn a_spawned_child_can_start_the_program_again() -> Result<(), Failed> {
    let mut p = Process::spawn(starts_the_program_again, ()).map_err(|e| e.to_string())?;
    p.start().map_err(|e| e.to_string())?;
    check(
        p.join_timeout(Duration::from_secs(60))
            .map_err(|e| e.to_string())?
            .is_some(),
        "the spawned child did not end",
    )?;
    let (ok, out) = p.result().map_err(|e| e.to_string())?;
    check(ok, &format!("the program started again failed: {out}"))?;
    check(
        out.contains("a_spawned_child_can_start_the_program_again"),
        &format!("it did not list the tests: {out}"),
    )
}

fn a_stray_bootstrap_variable_is_ignored() -> Result<(), Failed> {
    // Descriptors that are not a bootstrap memfd: stdin (/dev/null),
    // stdout and stderr (pipes), one that is not open, garbage.
    for v in [
        "0",
        "1",
        "2",
        "987",
        "-1",
        "x",
        "0:00112233445566778899aabbccddeeff",
        "2:",
        ":",
    ] {
        let (ok, out) = list_tests_again(Some(v));
        check(ok, &format!("with the variable at {v}: {out}"))?;
        check(
            out.contains("a_stray_bootstrap_variable_is_ignored"),
            &format!("with the variable at {v}, no test list: {out}"),
        )?;
    }
    Ok(())
}

fn a_shared_library_function_is_refused() -> Result<(), Failed> {
    match Process::spawn(foreign(), 1) {
        Err(StartError::ForeignCode { object, .. }) => {
            check(object.contains("libc"), &format!("the object: {object}"))
        }
        Err(e) => Err(e.to_string().into()),
        Ok(_) => Err("a function of libc was accepted for spawning".into()),
    }
}

fn from_a_multithreaded_parent_with_a_shared_value() -> Result<(), Failed> {
    // Keep other threads busy the whole time: fork would refuse here.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _v: Vec<u8> = vec![0; 1024];
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    let counter = Arc::new(Value::new(0u64).map_err(|e| e.to_string())?);
    let mut kids: Vec<Process<'static, u64>> = (0..3)
        .map(|_| Process::spawn(add_under_lock, (counter.clone(), 2000)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for k in &mut kids {
        k.start().map_err(|e| e.to_string())?;
    }
    for k in &mut kids {
        let seen = k.result().map_err(|e| e.to_string())?;
        check(
            (2000..=6000).contains(&seen),
            "a child saw an impossible count",
        )?;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    check(
        counter.get() == 6000,
        &format!("counter is {}", counter.get()),
    )
}

fn events_arrays_and_locks_cross_over() -> Result<(), Failed> {
    let go = Arc::new(Event::new().map_err(|e| e.to_string())?);
    let array = Arc::new(Array::<f64>::zeroed(3).map_err(|e| e.to_string())?);
    let lock = Arc::new(Lock::new().map_err(|e| e.to_string())?);
    let mut kids: Vec<Process<'static, f64>> = (0..3)
        .map(|i| Process::spawn(wait_then_fill, (go.clone(), array.clone(), lock.clone(), i)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for k in &mut kids {
        k.start().map_err(|e| e.to_string())?;
    }
    std::thread::sleep(Duration::from_millis(50));
    check(
        array.to_vec() == vec![0.0; 3],
        "children ran before the event",
    )?;
    go.set();
    for k in &mut kids {
        k.result().map_err(|e| e.to_string())?;
    }
    check(array.to_vec() == vec![0.0, 1.5, 3.0], "wrong array")
}

fn raw_values_are_atomic_across_spawned_children() -> Result<(), Failed> {
    let v = Arc::new(RawValue::new(0u64).map_err(|e| e.to_string())?);
    let mut kids: Vec<Process<'static, ()>> = (0..4)
        .map(|_| Process::spawn(atomics, v.clone()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for k in &mut kids {
        k.start().map_err(|e| e.to_string())?;
    }
    for k in &mut kids {
        k.join_ok().map_err(|e| e.to_string())?;
    }
    check(v.load() == 40_000, &format!("total {}", v.load()))
}

fn identity_and_authkey() -> Result<(), Failed> {
    let mut p = Process::spawn(who_am_i, ())
        .map_err(|e| e.to_string())?
        .with_name("spawned-one");
    p.start().map_err(|e| e.to_string())?;
    let (name, key, ppid) = p.result().map_err(|e| e.to_string())?;
    check(name == "spawned-one", &format!("name {name}"))?;
    check(key == current_process().authkey(), "authkey not inherited")?;
    check(ppid == std::process::id() as i32, "parent pid")?;
    let mut q = Process::spawn(who_am_i, ())
        .map_err(|e| e.to_string())?
        .with_authkey(&b"other"[..]);
    q.start().map_err(|e| e.to_string())?;
    let (_, key, _) = q.result().map_err(|e| e.to_string())?;
    check(key == b"other", "custom authkey")
}

/// A spawned child's own name, and the default name it gives a child of
/// its own.
fn names_below(_: ()) -> (String, String) {
    let child = Process::new(|| ());
    (current_process().name().to_owned(), child.name().to_owned())
}

fn spawned_children_number_their_children_under_them() -> Result<(), Failed> {
    // Python's names: a child of `Process-3` is `Process-3:1`, whether
    // `Process-3` was forked or spawned.
    let mut p = Process::spawn(names_below, ()).map_err(|e| e.to_string())?;
    let mine = p.name().to_owned();
    p.start().map_err(|e| e.to_string())?;
    let (theirs, below) = p.result().map_err(|e| e.to_string())?;
    check(
        theirs == mine,
        &format!("the child calls itself {theirs}, not {mine}"),
    )?;
    check(
        below == format!("{mine}:1"),
        &format!("its first child is {below}, not {mine}:1"),
    )
}

fn panics_and_signals() -> Result<(), Failed> {
    let mut p = Process::spawn(panics, "spawned boom".to_owned()).map_err(|e| e.to_string())?;
    p.start().map_err(|e| e.to_string())?;
    match p.result() {
        Err(multiproc::ResultError::ChildFailed {
            status, message, ..
        }) => {
            check(status == ExitStatus::Exited(1), "exit code 1")?;
            check(message.as_deref() == Some("spawned boom"), "panic message")?;
        }
        other => return Err(format!("expected ChildFailed, got {other:?}").into()),
    }
    let mut s = Process::spawn(sleeps, ()).map_err(|e| e.to_string())?;
    s.start().map_err(|e| e.to_string())?;
    check(
        s.join_timeout(Duration::from_millis(50))
            .map_err(|e| e.to_string())?
            .is_none(),
        "still sleeping",
    )?;
    s.terminate().map_err(|e| e.to_string())?;
    check(
        s.join().map_err(|e| e.to_string())?.code() == -15,
        "terminated: -15",
    )?;
    let mut d = Process::spawn(sleeps, ())
        .map_err(|e| e.to_string())?
        .with_deadline(Duration::from_millis(100));
    d.start().map_err(|e| e.to_string())?;
    check(
        d.join().map_err(|e| e.to_string())?.code() == -9,
        "deadline: -9",
    )
}

fn double(x: (Arc<Value<u64>>, u64)) -> u64 {
    x.0.update(|v| *v += x.1);
    x.1 * 2
}

fn the_start_method_is_a_setting() -> Result<(), Failed> {
    use multiproc::{StartMethod, set_start_method, start_method};
    check(start_method() == StartMethod::Fork, "fork is the default")?;
    let v = Arc::new(Value::new(0u64).map_err(|e| e.to_string())?);
    // The same call under both start methods. Forking from this harness
    // (threads) needs the opt-in; spawning does not.
    // SAFETY: the child only updates a shared Value and returns.
    let mut f = unsafe {
        Process::call(double, (v.clone(), 5))
            .map_err(|e| e.to_string())?
            .allow_threads()
    };
    f.start().map_err(|e| e.to_string())?;
    check(f.result().map_err(|e| e.to_string())? == 10, "fork result")?;
    set_start_method(StartMethod::Spawn);
    let mut s = Process::call(double, (v.clone(), 7)).map_err(|e| e.to_string())?;
    set_start_method(StartMethod::Fork);
    s.start().map_err(|e| e.to_string())?;
    check(s.result().map_err(|e| e.to_string())? == 14, "spawn result")?;
    check(v.get() == 12, &format!("value {}", v.get()))
}

fn produce(args: (Arc<multiproc::Queue<u64>>, u64, u64)) {
    let (q, from, n) = args;
    for i in from..from + n {
        q.put(i).unwrap();
    }
}

fn consume(args: (Arc<multiproc::Queue<u64>>, u64)) -> u64 {
    let (q, n) = args;
    (0..n).map(|_| q.get().unwrap()).sum()
}

fn queues_cross_over() -> Result<(), Failed> {
    let q = Arc::new(multiproc::Queue::<u64>::new().map_err(|e| e.to_string())?);
    let mut producers: Vec<Process<'static, ()>> = (0..2)
        .map(|i| Process::spawn(produce, (q.clone(), i * 10_000, 10_000)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut consumer = Process::spawn(consume, (q.clone(), 15_000)).map_err(|e| e.to_string())?;
    for p in &mut producers {
        p.start().map_err(|e| e.to_string())?;
    }
    consumer.start().map_err(|e| e.to_string())?;
    let in_child = consumer.result().map_err(|e| e.to_string())?;
    for p in &mut producers {
        p.join_ok().map_err(|e| e.to_string())?;
    }
    let mut rest = 0;
    for _ in 0..5_000 {
        rest += q
            .get_timeout(Duration::from_secs(20))
            .map_err(|e| e.to_string())?;
    }
    let total: u64 = (0..20_000).sum();
    check(
        in_child + rest == total,
        &format!("{in_child} + {rest} != {total}"),
    )?;
    check(q.empty(), "queue drained")
}

fn shared_objects_refuse_plain_serialization() -> Result<(), Failed> {
    let v = Value::new(1u8).map_err(|e| e.to_string())?;
    check(
        postcard::to_stdvec(&v).is_err(),
        "a Value serialized outside a spawn",
    )
}

fn main() {
    multiproc::init();
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test(
            "from_a_multithreaded_parent_with_a_shared_value",
            from_a_multithreaded_parent_with_a_shared_value,
        ),
        Trial::test(
            "events_arrays_and_locks_cross_over",
            events_arrays_and_locks_cross_over,
        ),
        Trial::test(
            "raw_values_are_atomic_across_spawned_children",
            raw_values_are_atomic_across_spawned_children,
        ),
        Trial::test("identity_and_authkey", identity_and_authkey),
        Trial::test(
            "spawned_children_number_their_children_under_them",
            spawned_children_number_their_children_under_them,
        ),
        Trial::test("panics_and_signals", panics_and_signals),
        Trial::test("queues_cross_over", queues_cross_over),
        Trial::test(
            "the_start_method_is_a_setting",
            the_start_method_is_a_setting,
        ),
        Trial::test(
            "shared_objects_refuse_plain_serialization",
            shared_objects_refuse_plain_serialization,
        ),
        Trial::test(
            "a_spawned_child_can_start_the_program_again",
            a_spawned_child_can_start_the_program_again,
        ),
        Trial::test(
            "a_stray_bootstrap_variable_is_ignored",
            a_stray_bootstrap_variable_is_ignored,
        ),
        Trial::test(
            "a_shared_library_function_is_refused",
            a_shared_library_function_is_refused,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
