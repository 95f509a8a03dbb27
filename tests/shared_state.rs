//! Value, RawValue, Array and RawArray across real processes.

mod common;

use common::{join_ok, serial, spawn_in};
use multiproc::{Array, ArrayError, Error, RawArray, RawValue, ShmSafe, Value};

#[test]
fn counter_under_lock_is_exact() {
    let _s = serial();
    const P: usize = 4;
    const K: u64 = 20_000;
    let counter = Value::new(0u64).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..P)
            .map(|_| {
                spawn_in(ps, || {
                    for _ in 0..K {
                        *counter.lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        for k in &mut kids {
            join_ok(k);
        }
        assert_eq!(counter.get(), P as u64 * K);
    })
}

#[test]
fn raw_value_atomic_adds_are_exact() {
    let _s = serial();
    const P: usize = 4;
    const K: u64 = 100_000;
    let n = RawValue::new(0u64).unwrap();
    let f = RawValue::new(0.0f64).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..P)
            .map(|_| {
                spawn_in(ps, || {
                    for _ in 0..K {
                        n.fetch_add(1);
                    }
                    for _ in 0..1000 {
                        f.fetch_add(0.5);
                    }
                })
            })
            .collect();
        for k in &mut kids {
            join_ok(k);
        }
        assert_eq!(n.load(), P as u64 * K);
        assert_eq!(f.load(), P as f64 * 500.0);
    })
}

#[test]
fn value_set_in_child_is_seen_by_parent() {
    let _s = serial();
    let v = Value::new(1.5f64).unwrap();
    let flag = Value::new(0u8).unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            assert_eq!(v.get(), 1.5);
            v.set(-2.25);
            flag.set(1);
        });
        join_ok(&mut p);
        assert_eq!(v.get(), -2.25);
        assert!(flag.get() != 0);
    })
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Default)]
struct Point {
    x: f64,
    y: f64,
    hits: u32,
}

// SAFETY: #[repr(C)] plain data of f64 and u32 fields; all-zero is valid.
unsafe impl ShmSafe for Point {}

#[test]
fn user_struct_value_is_shared() {
    let _s = serial();
    let p = Value::new(Point::default()).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..3)
            .map(|i| {
                let p = &p;
                spawn_in(ps, move || {
                    for _ in 0..1000 {
                        p.update(|pt| {
                            pt.x += 1.0;
                            pt.y += i as f64;
                            pt.hits += 1;
                        });
                    }
                })
            })
            .collect();
        for k in &mut kids {
            join_ok(k);
        }
        assert_eq!(
            p.get(),
            Point {
                x: 3000.0,
                y: 3000.0,
                hits: 3000
            }
        );
    })
}

#[test]
fn array_constructors_and_bounds() {
    let a = Array::<i32>::zeroed(10).unwrap();
    assert_eq!(a.len(), 10);
    assert_eq!(a.to_vec(), vec![0; 10]);
    let b = Array::from_slice(&[1.0f64, 2.0]).unwrap();
    assert_eq!(b.to_vec(), vec![1.0, 2.0]);
    assert!(matches!(
        b.get(2),
        Err(ArrayError::IndexOutOfBounds { index: 2, len: 2 })
    ));
    assert!(matches!(
        b.set(5, 0.0),
        Err(ArrayError::IndexOutOfBounds { .. })
    ));
    // Into the coarse error with `?`, variant for variant.
    let coarse = || -> multiproc::Result<f64> { Ok(b.get(7)?) };
    assert!(matches!(
        coarse(),
        Err(Error::IndexOutOfBounds { index: 7, len: 2 })
    ));
    let c = Array::from_fn(5, |i| i as u8 * 2).unwrap();
    assert_eq!(c.to_vec(), vec![0, 2, 4, 6, 8]);
    let e = Array::<u64>::zeroed(0).unwrap();
    assert!(e.is_empty());
    assert!(e.lock().unwrap().is_empty());
}

#[test]
fn reused_slots_come_back_zeroed() {
    // Dirty a slot, free it, and ask for a zeroed array of the same class.
    for _ in 0..20 {
        let a = Array::from_slice(&[0xFFu8; 40]).unwrap();
        drop(a);
        let b = Array::<u8>::zeroed(40).unwrap();
        assert_eq!(b.to_vec(), vec![0u8; 40]);
    }
}

#[test]
fn array_children_write_their_slots() {
    let _s = serial();
    const P: usize = 4;
    let a = Array::<u64>::zeroed(P).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..P)
            .map(|i| {
                let a = &a;
                spawn_in(ps, move || a.set(i, (i as u64 + 1) * 11))
            })
            .collect();
        for k in &mut kids {
            join_ok(k);
        }
        assert_eq!(a.to_vec(), vec![11, 22, 33, 44]);
    })
}

#[test]
fn array_lock_guards_whole_slice() {
    let _s = serial();
    let a = Array::<u32>::zeroed(64).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..3)
            .map(|_| {
                spawn_in(ps, || {
                    for _ in 0..2000 {
                        let mut g = a.lock().unwrap();
                        for x in g.iter_mut() {
                            *x += 1;
                        }
                    }
                })
            })
            .collect();
        for k in &mut kids {
            join_ok(k);
        }
        assert_eq!(a.to_vec(), vec![6000; 64]);
    })
}

#[test]
fn raw_array_disjoint_fill_and_atomics() {
    let _s = serial();
    const N: usize = 1 << 20; // large: its own populated mapping
    let a = RawArray::<f64>::zeroed(N).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..2)
            .map(|half| {
                let a = &a;
                spawn_in(ps, move || {
                    let r = half * N / 2..(half + 1) * N / 2;
                    // SAFETY: each child writes only its own half; the parent
                    // reads after joining both.
                    let s = unsafe { a.slice_mut(r.clone()) }.unwrap();
                    for (i, x) in s.iter_mut().enumerate() {
                        *x = (r.start + i) as f64;
                    }
                })
            })
            .collect();
        for k in &mut kids {
            join_ok(k);
        }
        let sum: f64 = a.to_vec().iter().sum();
        assert_eq!(sum, (N as f64 - 1.0) * N as f64 / 2.0);
    });
    let small = RawArray::<u32>::zeroed(8).unwrap();
    multiproc::process::scope(|ps| {
        let mut kids: Vec<_> = (0..2)
            .map(|_| {
                spawn_in(ps, || {
                    for _ in 0..10_000 {
                        small.as_atomics()[3].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for k in &mut kids {
            join_ok(k);
        }
        assert_eq!(small.get(3).unwrap(), 20_000);
        assert!(small.get(8).is_err());
        // SAFETY: no other process or thread writes the array now.
        assert!(unsafe { small.slice_mut(7..9) }.is_err());
    })
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn a_million_values_share_a_few_mappings() {
    let _s = serial();
    let (rss0, maps0) = (rss_kib(), mappings());
    let values: Vec<Value<u64>> = (0..1_000_000u64).map(|i| Value::new(i).unwrap()).collect();
    let (rss1, maps1, shm1) = (rss_kib(), mappings(), status_kib("RssShmem:"));
    assert!(
        maps1 - maps0 < 16,
        "{} new mappings for a million values",
        maps1 - maps0
    );
    let grew_mib = (rss1.saturating_sub(rss0)) / 1024;
    assert!(grew_mib < 64, "a million Value<u64> cost {grew_mib} MiB");
    assert_eq!(values[123_456].get(), 123_456);
    // A child sees them too.
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            values[999_999].set(7);
        });
        join_ok(&mut p);
    });
    assert_eq!(values[999_999].get(), 7);
    // Freed slots are reused: a second million costs no new memory.
    let first = values[0].as_mutex() as *const _ as usize;
    drop(values);
    let again: Vec<Value<u64>> = (0..1_000_000u64).map(|i| Value::new(i).unwrap()).collect();
    let shm2 = status_kib("RssShmem:");
    assert!(
        shm2 <= shm1 + 1024,
        "reuse failed: {shm1} KiB of shared memory, then {shm2} KiB"
    );
    assert!(
        again
            .iter()
            .any(|v| v.as_mutex() as *const _ as usize == first)
    );
}

#[test]
fn a_child_allocates_from_its_own_heap() {
    let _s = serial();
    // After the fork both processes hold a copy of the heap's bookkeeping.
    // If the child carved its new objects from that copy, its next slot
    // would be the very slot the parent hands out next, and its writes
    // would land in the parent's object.
    let go = multiproc::Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            go.wait();
            let mine: Vec<_> = (0..1000).map(|_| Value::new(999u64).unwrap()).collect();
            drop(mine);
            let again = Value::new(999u64).unwrap();
            again.set(1234);
        });
        let parents: Vec<_> = (0..1000).map(|i| Value::new(i as u64).unwrap()).collect();
        go.set();
        join_ok(&mut p);
        for (i, v) in parents.iter().enumerate() {
            assert_eq!(v.get(), i as u64);
        }
    })
}

fn dev_shm() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_crashed_process_leaves_nothing_in_dev_shm() {
    let _s = serial();
    let before = dev_shm();
    let made = multiproc::Event::new().unwrap();
    multiproc::process::scope(|ps| {
        let mut p = spawn_in(ps, || {
            // Small objects (a fresh heap arena of the child's own) and a large
            // array (a mapping of its own), then a crash.
            let v: Vec<_> = (0..1000).map(|i| Value::new(i as u64).unwrap()).collect();
            let a = RawArray::<u8>::zeroed(1 << 20).unwrap();
            a.set(5, 1).unwrap();
            made.set();
            common::hang();
            drop((v, a));
        });
        assert!(made.wait_timeout(common::PATIENCE));
        p.kill().unwrap();
        p.join().unwrap();
        // Memfds have no name in any file system: nothing appears, nothing is
        // left. (Other programs may add their own entries meanwhile, so only
        // ours are looked for.)
        let ours: Vec<_> = dev_shm()
            .difference(&before)
            .filter(|n| n.contains("multiproc"))
            .cloned()
            .collect();
        assert!(ours.is_empty(), "left in /dev/shm: {ours:?}");
        // And the memory is really a memfd mapping, named for /proc/PID/maps.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(maps.contains("/memfd:multiproc-heap"));
    })
}
