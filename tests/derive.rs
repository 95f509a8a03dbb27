//! `#[derive(ShmSafe)]`: derived types live in a `Value` and an `Array`
//! shared with a real child process, in a crate that denies `unsafe`; and
//! every type the derive must refuse is refused at compile time
//! (`tests/ui_derive`, with the expected errors).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::{join_ok, serial, spawn_in};
use multiproc::{Array, ShmSafe, Value};

/// The derived types, in a module that denies `unsafe`: the derive needs
/// none from its user.
#[deny(unsafe_code)]
mod types {
    use std::sync::atomic::AtomicU32;

    use multiproc::ShmSafe;

    #[repr(C)]
    #[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
    pub struct Point {
        pub x: f64,
        pub y: f64,
        pub hits: u32,
    }

    #[repr(C, align(64))]
    #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
    pub struct Particle<T, const N: usize> {
        pub position: [T; N],
        pub at: Point,
    }

    #[repr(transparent)]
    #[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
    pub struct Meters(pub f32);

    #[repr(C)]
    #[derive(ShmSafe)]
    pub struct Counters {
        pub seen: AtomicU32,
        pub unit: (),
    }

    #[repr(C)]
    #[derive(ShmSafe, Clone, Copy, Default)]
    pub struct Empty;
}

use types::{Counters, Empty, Meters, Particle, Point};

fn assert_shm_safe<T: ShmSafe>() {}

#[test]
fn derived_types_are_shm_safe() {
    assert_shm_safe::<Point>();
    assert_shm_safe::<Particle<f64, 3>>();
    assert_shm_safe::<Particle<Meters, 2>>();
    assert_shm_safe::<Meters>();
    assert_shm_safe::<Counters>();
    assert_shm_safe::<Empty>();
    assert_eq!(std::mem::align_of::<Particle<u8, 1>>(), 64);
}

#[test]
fn derived_structs_are_shared_with_a_child() {
    let _s = serial();
    let point = Value::new(Point::default()).unwrap();
    let particles = Array::<Particle<f64, 3>>::zeroed(4).unwrap();
    let counters = Value::new(Counters {
        seen: AtomicU32::new(0),
        unit: (),
    })
    .unwrap();
    multiproc::process::scope(|s| {
        let mut child = spawn_in(s, || {
            point.update(|p| {
                p.x = 1.5;
                p.y = -2.0;
                p.hits += 1;
            });
            particles.update(|ps| {
                ps[2].position = [1.0, 2.0, 3.0];
                ps[2].at.hits = 7;
            });
            counters
                .lock()
                .unwrap()
                .seen
                .fetch_add(5, Ordering::Relaxed);
        });
        join_ok(&mut child);
    });
    assert_eq!(
        point.get(),
        Point {
            x: 1.5,
            y: -2.0,
            hits: 1
        }
    );
    let ps = particles.to_vec();
    assert_eq!(ps[2].position, [1.0, 2.0, 3.0]);
    assert_eq!(ps[2].at.hits, 7);
    assert_eq!(ps[0].position, [0.0; 3]);
    assert_eq!(ps[0].at, Point::default());
    assert_eq!(counters.lock().unwrap().seen.load(Ordering::Relaxed), 5);
}

#[test]
fn derive_refuses_what_it_cannot_prove() {
    // trybuild's cargo is a child of this process: under plain `cargo
    // test` (tests of one binary are threads of one process) the forking
    // test above would count it as a child left behind.
    let _s = serial();
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui_derive/*.rs");
}
