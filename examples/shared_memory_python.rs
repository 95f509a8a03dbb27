//! A named `SharedMemory` block shared with python3, as in Python's
//! `multiprocessing.shared_memory` tutorial: Rust creates the block and
//! writes eight little-endian f64s, python3 attaches by name (with nothing
//! but the standard library), doubles them in place and writes a
//! status byte; Rust reads the result.
//!
//! ```text
//! cargo run --example shared_memory_python
//! ```

use std::process::Command;

use multiproc::SharedMemory;

fn main() -> multiproc::Result<()> {
    let n = 8;
    let shm = SharedMemory::create(None, 8 * n + 1)?;
    for i in 0..n {
        shm.write_at(8 * i, &(i as f64 + 0.5).to_le_bytes())?;
    }
    // Python's resource tracker would unlink a block it only attached to when
    // python3 exits (before 3.13): unregister it there.
    let script = "import sys, struct\n\
        from multiprocessing import shared_memory as s, resource_tracker as r\n\
        shm = s.SharedMemory(name=sys.argv[1])\n\
        r.unregister(shm._name, 'shared_memory')\n\
        n = int(sys.argv[2])\n\
        xs = struct.unpack_from(f'<{n}d', shm.buf, 0)\n\
        print('python sees', xs)\n\
        struct.pack_into(f'<{n}d', shm.buf, 0, *(2 * x for x in xs))\n\
        shm.buf[8 * n] = 1\n\
        shm.close()\n";
    let status = Command::new("python3")
        .args(["-c", script, shm.name(), &n.to_string()])
        .status()
        .expect("this example needs python3 on PATH");
    assert!(status.success(), "python3 failed");
    let mut done = [0u8];
    shm.read_at(8 * n, &mut done)?;
    assert_eq!(done[0], 1, "python did not write its status byte");
    let mut doubled = Vec::with_capacity(n);
    for i in 0..n {
        let mut b = [0u8; 8];
        shm.read_at(8 * i, &mut b)?;
        doubled.push(f64::from_le_bytes(b));
    }
    println!("rust sees {doubled:?}");
    assert!(
        doubled
            .iter()
            .enumerate()
            .all(|(i, x)| *x == 2.0 * (i as f64 + 0.5))
    );
    shm.unlink()?;
    Ok(())
}
