//! `SharedMemory`: named blocks in one process, across forked processes, and
//! with CPython's `multiprocessing.shared_memory` (tests/python/shm_peer.py).
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;

use multiproc::{Error, Process, SharedMemory, SharedMemoryError};

/// A name no other test (or test run) uses.
fn unique(tag: &str) -> String {
    format!("mpt_{}_{tag}", std::process::id())
}

/// Unlinks the block when dropped, so a failing test leaves nothing in
/// `/dev/shm`. Errors (it is usually gone already) are ignored.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = SharedMemory::unlink_name(&self.0);
    }
}

fn dev_shm(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name)
}

/// The test pattern; shm_peer.py's `pattern` makes the same bytes.
fn pattern(seed: usize, size: usize) -> Vec<u8> {
    (0..size).map(|i| ((i * 31 + seed) % 251) as u8).collect()
}

/// A size that is not a multiple of the page size.
const ODD_SIZE: usize = 3 * 4096 + 5;

/// Runs a forked child that returns an exit code; asserts it exited 0.
fn run_child(body: impl FnOnce() -> i32) {
    multiproc::process::scope(|ps| {
        // SAFETY: the test harness runs tests on threads, so other threads
        // exist. Each child body here only opens the block, reads and writes
        // bytes or atomics in it and returns an exit code: it takes no lock
        // another thread may hold (no printing, no shared Mutex, no new crate
        // shared objects; glibc resets its malloc locks in the child).
        let mut p = unsafe { ps.process(body).allow_threads() };
        p.start().expect("fork the child");
        let status = p.join().expect("join the child");
        assert!(status.success(), "child failed: {status:?}");
    })
}

/// Runs tests/python/shm_peer.py with `args`; asserts it succeeded without
/// writing to stderr (where resource tracker warnings would show).
fn python(args: &[&str]) -> Output {
    let out = python_raw(args);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "python3 shm_peer.py {args:?} failed: {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn python_raw(args: &[&str]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/shm_peer.py");
    // `output()` reads stderr to its end. Python's resource tracker process
    // inherits that stderr, so this also waits for the tracker to exit,
    // which is when it unlinks blocks it thinks were leaked.
    Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("the interop tests need `python3` (CPython >= 3.8) on PATH: {e}")
        })
}

#[test]
fn create_then_open_shares_bytes_and_exact_size() {
    let name = unique("roundtrip");
    let _c = Cleanup(name.clone());
    let a = SharedMemory::create(Some(&name), ODD_SIZE).unwrap();
    assert_eq!(a.name(), name);
    assert_eq!(a.size(), ODD_SIZE);
    assert_eq!(a.to_vec(), vec![0; ODD_SIZE], "a new block is zeroed");

    let b = SharedMemory::open(&name).unwrap();
    assert_eq!(b.size(), ODD_SIZE, "open takes the size from fstat");
    assert_eq!(
        std::fs::metadata(dev_shm(&name)).unwrap().len(),
        ODD_SIZE as u64,
        "the file is exactly the requested size, not rounded to pages"
    );
    assert_ne!(a.as_ptr(), b.as_ptr(), "two handles are two mappings");

    let data = pattern(7, ODD_SIZE);
    a.write_at(0, &data).unwrap();
    assert_eq!(b.to_vec(), data);

    // And back, at an offset.
    b.write_at(100, b"reply").unwrap();
    let mut buf = [0u8; 5];
    a.read_at(100, &mut buf).unwrap();
    assert_eq!(&buf, b"reply");

    a.unlink().unwrap();
}

#[test]
fn python_signature_new() {
    let name = unique("new");
    let _c = Cleanup(name.clone());
    let a = SharedMemory::new(Some(&name), true, 10).unwrap();
    // As in Python, `size` is ignored when opening.
    let b = SharedMemory::new(Some(&name), false, 999).unwrap();
    assert_eq!(b.size(), 10);
    assert!(matches!(
        SharedMemory::new(None, false, 10),
        Err(SharedMemoryError::InvalidArgument(_))
    ));
    let auto = SharedMemory::new(None, true, 3).unwrap();
    let _c2 = Cleanup(auto.name().to_owned());
    assert!(auto.name().starts_with("psm_"));
    auto.unlink().unwrap();
    a.unlink().unwrap();
}

#[test]
fn block_outlives_its_handles_until_unlinked() {
    let name = unique("persist");
    let _c = Cleanup(name.clone());
    let a = SharedMemory::create(Some(&name), 64).unwrap();
    a.write_at(10, b"kept").unwrap();
    a.close();
    assert!(dev_shm(&name).exists(), "close (and drop) must not unlink");

    let b = SharedMemory::open(&name).unwrap();
    let mut buf = [0u8; 4];
    b.read_at(10, &mut buf).unwrap();
    assert_eq!(&buf, b"kept");
    drop(b);
    assert!(dev_shm(&name).exists());
    SharedMemory::unlink_name(&name).unwrap();
    assert!(!dev_shm(&name).exists());
}

#[test]
fn unlinked_block_stays_mapped_but_cannot_be_opened() {
    let name = unique("unlinked");
    let _c = Cleanup(name.clone());
    let a = SharedMemory::create(Some(&name), 32).unwrap();
    let b = SharedMemory::open(&name).unwrap();
    a.unlink().unwrap();
    assert!(!dev_shm(&name).exists());

    // Existing mappings still share the memory.
    a.write_at(0, b"still here").unwrap();
    let mut buf = [0u8; 10];
    b.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"still here");

    match SharedMemory::open(&name) {
        Err(SharedMemoryError::NotFound { name: n }) => assert_eq!(n, name),
        other => panic!("open after unlink: {other:?}"),
    }
    // A second unlink is an error, as in Python (FileNotFoundError).
    assert!(matches!(
        a.unlink(),
        Err(SharedMemoryError::NotFound { .. })
    ));
    assert!(matches!(
        b.unlink(),
        Err(SharedMemoryError::NotFound { .. })
    ));
    assert!(matches!(
        SharedMemory::unlink_name(&name),
        Err(SharedMemoryError::NotFound { .. })
    ));
}

#[test]
fn generated_name_shows_in_dev_shm_until_unlinked() {
    let shm = SharedMemory::create(None, 4099).unwrap();
    let name = shm.name().to_owned();
    let _c = Cleanup(name.clone());
    let suffix = name.strip_prefix("psm_").expect("Python's prefix");
    assert_eq!(suffix.len(), 8, "{name}");
    assert!(
        suffix.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
        "8 lowercase hex digits: {name}"
    );

    let meta = std::fs::metadata(dev_shm(&name)).expect("the block is in /dev/shm");
    assert_eq!(meta.len(), 4099);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "Python's mode");

    let other = SharedMemory::create(None, 1).unwrap();
    let _c2 = Cleanup(other.name().to_owned());
    assert_ne!(other.name(), name, "names are random");
    other.unlink().unwrap();

    shm.unlink().unwrap();
    assert!(!dev_shm(&name).exists());
}

#[test]
fn create_existing_name_is_already_exists() {
    let name = unique("exists");
    let _c = Cleanup(name.clone());
    let a = SharedMemory::create(Some(&name), 8).unwrap();
    a.write_at(0, b"original").unwrap();
    match SharedMemory::create(Some(&name), 16) {
        Err(SharedMemoryError::AlreadyExists { name: n }) => assert_eq!(n, name),
        other => panic!("second create: {other:?}"),
    }
    // The failed create neither resized nor unlinked the block.
    let b = SharedMemory::open(&name).unwrap();
    assert_eq!(b.size(), 8);
    assert_eq!(b.to_vec(), b"original");
    a.unlink().unwrap();
}

#[test]
fn open_missing_is_not_found() {
    let name = unique("missing");
    match SharedMemory::open(&name) {
        Err(SharedMemoryError::NotFound { name: n }) => assert_eq!(n, name),
        other => panic!("open missing: {other:?}"),
    }
    assert!(matches!(
        SharedMemory::unlink_name(&name),
        Err(SharedMemoryError::NotFound { .. })
    ));
}

#[test]
fn bad_sizes_are_invalid_size() {
    let name = unique("size0");
    let _c = Cleanup(name.clone());
    for r in [
        SharedMemory::create(Some(&name), 0),
        SharedMemory::create(None, 0),
        SharedMemory::new(Some(&name), true, 0),
    ] {
        assert!(
            matches!(r, Err(SharedMemoryError::InvalidSize { size: 0, .. })),
            "{r:?}"
        );
    }
    assert!(!dev_shm(&name).exists(), "nothing was created");
    assert!(matches!(
        SharedMemory::create(Some(&name), usize::MAX),
        Err(SharedMemoryError::InvalidSize { .. })
    ));
    assert!(!dev_shm(&name).exists());
}

#[test]
fn opening_an_empty_block_is_invalid_size() {
    let name = unique("empty");
    let _c = Cleanup(name.clone());
    // glibc's shm_open is open(2) under /dev/shm, so this makes an empty
    // block (Python's mmap refuses it: "cannot mmap an empty file").
    std::fs::File::create(dev_shm(&name)).unwrap();
    assert!(matches!(
        SharedMemory::open(&name),
        Err(SharedMemoryError::InvalidSize { size: 0, .. })
    ));
}

#[test]
fn bad_names_are_invalid_name() {
    let long = "x".repeat(256);
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "//two_leading",
        "/",
        "trailing/",
        "nul\0byte",
        &long,
    ] {
        for r in [
            SharedMemory::create(Some(bad), 8).map(drop),
            SharedMemory::open(bad).map(drop),
            SharedMemory::unlink_name(bad),
        ] {
            match r {
                Err(SharedMemoryError::InvalidName { name, .. }) => {
                    assert_eq!(name, bad.strip_prefix('/').unwrap_or(bad))
                }
                other => panic!("name {bad:?}: {other:?}"),
            }
        }
    }

    // The longest accepted name, NAME_MAX = 255 bytes, works for real.
    let mut max = unique("max_");
    max.push_str(&"y".repeat(255 - max.len()));
    let _c = Cleanup(max.clone());
    let shm = SharedMemory::create(Some(&max), 8).unwrap();
    assert!(dev_shm(&max).exists());
    assert_eq!(SharedMemory::open(&max).unwrap().size(), 8);
    shm.unlink().unwrap();
}

#[test]
fn read_and_write_are_bounds_checked() {
    let name = unique("bounds");
    let _c = Cleanup(name.clone());
    let shm = SharedMemory::create(Some(&name), 10).unwrap();
    shm.write_at(0, &[1; 10]).unwrap();

    match shm.write_at(8, &[9, 9, 9]) {
        Err(SharedMemoryError::OutOfRange { start, end, size }) => {
            assert_eq!((start, end, size), (8, 11, 10))
        }
        other => panic!("write past the end: {other:?}"),
    }
    // `?` makes it the coarse index error, naming the first byte past the end.
    let coarse: Error = shm.write_at(8, &[9, 9, 9]).unwrap_err().into();
    assert!(
        matches!(coarse, Error::IndexOutOfBounds { index: 10, len: 10 }),
        "{coarse:?}"
    );
    assert_eq!(shm.to_vec(), [1; 10], "a refused write writes nothing");

    let mut buf = [0u8; 3];
    assert!(matches!(
        shm.read_at(8, &mut buf),
        Err(SharedMemoryError::OutOfRange {
            start: 8,
            end: 11,
            size: 10
        })
    ));
    assert!(matches!(
        shm.read_at(usize::MAX, &mut buf),
        Err(SharedMemoryError::OutOfRange {
            start: usize::MAX,
            end: usize::MAX,
            size: 10
        })
    ));
    assert!(matches!(
        shm.write_at(usize::MAX - 1, &[0; 5]),
        Err(SharedMemoryError::OutOfRange { .. })
    ));
    // Empty ranges: fine up to the end, like slicing.
    shm.read_at(10, &mut []).unwrap();
    assert!(matches!(
        shm.read_at(11, &mut []),
        Err(SharedMemoryError::OutOfRange {
            start: 11,
            end: 11,
            size: 10
        })
    ));
    shm.read_at(7, &mut buf).unwrap();
    assert_eq!(buf, [1, 1, 1]);

    // SAFETY: the block is private to this test and no other view of it
    // is used while these slices live.
    assert!(unsafe { shm.slice(5..11) }.is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 6..5;
    assert!(matches!(
        // SAFETY: as above.
        unsafe { shm.slice(reversed) },
        Err(SharedMemoryError::OutOfRange {
            start: 6,
            end: 5,
            size: 10
        })
    ));
    // SAFETY: as above.
    assert_eq!(unsafe { shm.slice(8..10) }.unwrap(), &[1, 1]);
    // SAFETY: as above.
    unsafe { shm.slice_mut(0..2) }
        .unwrap()
        .copy_from_slice(&[5, 6]);
    assert_eq!(shm.to_vec()[..3], [5, 6, 1]);
    shm.unlink().unwrap();
}

#[test]
fn typed_views_check_size_and_alignment() {
    let name = unique("typed");
    let _c = Cleanup(name.clone());
    let shm = SharedMemory::create(Some(&name), 16).unwrap();
    assert_eq!(shm.as_ptr() as usize % 4096, 0, "page-aligned");

    // SAFETY: the block is private to this test; all bytes are valid
    // integers and floats; each view is dropped before the next is made.
    let words = unsafe { shm.as_typed_mut::<u32>() }.unwrap();
    assert_eq!(words.len(), 4);
    words[1] = 0xdead_beef;
    // SAFETY: as above.
    assert_eq!(unsafe { shm.as_typed::<u64>() }.unwrap().len(), 2);
    // SAFETY: as above.
    assert_eq!(unsafe { shm.as_typed::<[u8; 16]>() }.unwrap().len(), 1);
    assert!(matches!(
        // SAFETY: as above.
        unsafe { shm.as_typed::<[u8; 3]>() },
        Err(SharedMemoryError::InvalidSize { size: 16, .. })
    ));
    assert!(matches!(
        // SAFETY: as above.
        unsafe { shm.as_typed::<()>() },
        Err(SharedMemoryError::InvalidArgument(_))
    ));
    let mut buf = [0u8; 4];
    shm.read_at(4, &mut buf).unwrap();
    assert_eq!(u32::from_ne_bytes(buf), 0xdead_beef);

    let floats = shm.as_atomics::<f64>().unwrap();
    assert_eq!(floats.len(), 2);
    floats[1].store(1.5f64.to_bits(), Ordering::SeqCst);
    assert_eq!(shm.to_vec()[8..], 1.5f64.to_ne_bytes());

    let odd = SharedMemory::create(None, 10).unwrap();
    let _c2 = Cleanup(odd.name().to_owned());
    assert!(matches!(
        odd.as_atomics::<u32>(),
        Err(SharedMemoryError::InvalidSize { size: 10, .. })
    ));
    assert_eq!(odd.as_atomics::<u16>().unwrap().len(), 5);
    odd.unlink().unwrap();
    shm.unlink().unwrap();
}

#[test]
fn forked_child_opens_by_name_and_writes() {
    let name = unique("fork");
    let _c = Cleanup(name.clone());
    let shm = SharedMemory::create(Some(&name), ODD_SIZE).unwrap();
    shm.write_at(0, &pattern(1, ODD_SIZE)).unwrap();

    run_child(|| {
        let Ok(child) = SharedMemory::open(&name) else {
            return 2;
        };
        if child.size() != ODD_SIZE || child.to_vec() != pattern(1, ODD_SIZE) {
            return 3;
        }
        if child.write_at(0, &pattern(2, ODD_SIZE)).is_err() {
            return 4;
        }
        0
    });
    assert_eq!(shm.to_vec(), pattern(2, ODD_SIZE));

    // A child also shares the mapping it inherits through fork.
    run_child(|| match shm.write_at(5, b"inherited") {
        Ok(()) => 0,
        Err(_) => 2,
    });
    let mut buf = [0u8; 9];
    shm.read_at(5, &mut buf).unwrap();
    assert_eq!(&buf, b"inherited");
    shm.unlink().unwrap();
}

#[test]
fn atomics_count_exactly_across_processes_and_threads() {
    const K: u64 = 20_000;
    let name = unique("atomics");
    let _c = Cleanup(name.clone());
    let shm = SharedMemory::create(Some(&name), 64).unwrap();

    multiproc::process::scope(|ps| {
        let mut kids: Vec<Process> = (0..3)
            .map(|_| {
                let name = &name;
                // SAFETY: as in `run_child`: the child opens the block and does
                // atomic adds, taking no lock another thread may hold.
                unsafe {
                    ps.process(move || {
                        let Ok(shm) = SharedMemory::open(name) else {
                            return 2;
                        };
                        let Ok(counters) = shm.as_atomics::<u64>() else {
                            return 3;
                        };
                        for _ in 0..K {
                            counters[0].fetch_add(1, Ordering::SeqCst);
                        }
                        0
                    })
                    .allow_threads()
                }
            })
            .collect();
        for k in &mut kids {
            k.start().unwrap();
        }
        // Meanwhile two threads of this process add through one shared handle.
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let counters = shm.as_atomics::<u64>().unwrap();
                    for _ in 0..K {
                        counters[0].fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        for k in &mut kids {
            assert!(k.join().unwrap().success());
        }
        assert_eq!(
            shm.as_atomics::<u64>().unwrap()[0].load(Ordering::SeqCst),
            5 * K
        );
        shm.unlink().unwrap();
    })
}

/// Rust creates (under `name`, or a generated name), Python opens, checks,
/// replies; the block survives Python's exit.
fn rust_creates_python_replies(name: Option<&str>) {
    let shm = SharedMemory::create(name, ODD_SIZE).unwrap();
    let _c = Cleanup(shm.name().to_owned());
    shm.write_at(0, &pattern(3, ODD_SIZE)).unwrap();

    python(&[
        "check-and-reply",
        shm.name(),
        &ODD_SIZE.to_string(),
        "3",
        "4",
    ]);

    assert_eq!(shm.to_vec(), pattern(4, ODD_SIZE), "Python's reply");
    assert!(
        dev_shm(shm.name()).exists(),
        "Python's resource tracker must not have unlinked the block"
    );
    let again = SharedMemory::open(shm.name()).unwrap();
    assert_eq!(again.size(), ODD_SIZE);
    shm.unlink().unwrap();
}

#[test]
fn python_opens_rust_block_by_name() {
    rust_creates_python_replies(Some(&unique("to_python")));
}

#[test]
fn python_opens_rust_block_with_generated_name() {
    rust_creates_python_replies(None);
}

#[test]
fn rust_opens_python_block_and_unlinks_it() {
    let name = unique("from_python");
    let _c = Cleanup(name.clone());
    python(&["create", &name, &ODD_SIZE.to_string(), "5"]);

    let shm = SharedMemory::open(&name).expect("Python's block survived its exit");
    assert_eq!(shm.size(), ODD_SIZE);
    assert_eq!(shm.to_vec(), pattern(5, ODD_SIZE));
    shm.unlink().unwrap();
    assert!(!dev_shm(&name).exists());
}

#[test]
fn rust_opens_python_generated_name() {
    let out = python(&["create-auto", "777", "6"]);
    let name = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let _c = Cleanup(name.clone());
    assert!(name.starts_with("psm_") && name.len() == 12, "{name:?}");
    let shm = SharedMemory::open(&name).unwrap();
    assert_eq!(shm.size(), 777);
    assert_eq!(shm.to_vec(), pattern(6, 777));
    shm.unlink().unwrap();
}

#[test]
fn python_unlink_removes_rust_block() {
    let name = unique("py_unlink");
    let _c = Cleanup(name.clone());
    let shm = SharedMemory::create(Some(&name), 100).unwrap();
    python(&["unlink", &name]);
    assert!(matches!(
        SharedMemory::open(&name),
        Err(SharedMemoryError::NotFound { .. })
    ));
    assert!(matches!(
        shm.unlink(),
        Err(SharedMemoryError::NotFound { .. })
    ));
}

/// Why the Python side must unregister: CPython 3.11's resource tracker
/// unlinks a block that Python merely opened once the program exits, and
/// warns about a "leak". This pins that behaviour down, so that the
/// workaround in shm_peer.py stays needed and understood.
#[test]
fn python_resource_tracker_unlinks_blocks_it_only_opened() {
    let name = unique("tracked");
    let _c = Cleanup(name.clone());
    let shm = SharedMemory::create(Some(&name), 100).unwrap();
    shm.write_at(0, b"data").unwrap();

    let out = python_raw(&["open-tracked", &name]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("leaked shared_memory objects"),
        "expected the tracker's warning, got: {stderr:?}"
    );
    assert!(
        !dev_shm(&name).exists(),
        "the tracker unlinked the block at Python's exit"
    );
    // This handle still maps the memory; only the name is gone.
    let mut buf = [0u8; 4];
    shm.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"data");
    assert!(matches!(
        shm.unlink(),
        Err(SharedMemoryError::NotFound { .. })
    ));
}

#[test]
fn a_leading_slash_names_the_same_block_as_in_python() {
    let name = unique("slash");
    let _c = Cleanup(name.clone());
    let shm = SharedMemory::create(Some(&format!("/{name}")), 16).unwrap();
    assert_eq!(shm.name(), name);
    assert!(dev_shm(&name).exists());
    shm.write_at(0, b"slash").unwrap();
    let again = SharedMemory::open(&format!("/{name}")).unwrap();
    let mut buf = [0u8; 5];
    again.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"slash");
    // python3 opens it by the slashed name too.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom multiprocessing import shared_memory as s, resource_tracker as r\n\
             m = s.SharedMemory(sys.argv[1])\nr.unregister(m._name, 'shared_memory')\n\
             print(bytes(m.buf[:5]).decode()); m.close()",
            &format!("/{name}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "slash");
    SharedMemory::unlink_name(&format!("/{name}")).unwrap();
    assert!(!dev_shm(&name).exists());
}

#[test]
fn open_or_create_creates_once_across_processes() {
    let name = unique("ooc");
    let _c = Cleanup(name.clone());
    // Four children race to open-or-create the block; exactly one creates
    // it, and each adds one to its counter.
    let created = std::sync::Arc::new(multiproc::RawValue::new(0u32).unwrap());
    let mut kids: Vec<Process> = (0..4)
        .map(|_| {
            let (name, created) = (name.clone(), created.clone());
            // SAFETY: as in `run_child`: the child opens the block and
            // touches atomics only.
            unsafe {
                Process::new(move || -> i32 {
                    let Ok((shm, new)) = SharedMemory::open_or_create(&name, 64) else {
                        return 2;
                    };
                    if new {
                        created.fetch_add(1);
                    }
                    let Ok(n) = shm.as_atomics::<u64>() else {
                        return 3;
                    };
                    n[0].fetch_add(1, Ordering::SeqCst);
                    0
                })
                .with_daemon(true)
                .allow_threads()
            }
        })
        .collect();
    for k in &mut kids {
        k.start().unwrap();
    }
    for k in &mut kids {
        assert!(k.join().unwrap().success());
    }
    assert_eq!(created.get(), 1);
    let (shm, new) = SharedMemory::open_or_create(&name, 8).unwrap();
    assert!(!new);
    assert_eq!(shm.size(), 64, "an existing block keeps its size");
    assert_eq!(
        shm.as_atomics::<u64>().unwrap()[0].load(Ordering::SeqCst),
        4
    );
    shm.unlink().unwrap();
}
