//! Children fill their own slices of one shared array; the parent reads
//! the result. Also shows a lock-free `RawArray` of atomics, and an `Array`
//! updated under its lock.
//!
//! ```text
//! cargo run --release --example shared_array
//! ```

use multiproc::{Array, Process, RawArray};

fn main() -> multiproc::Result<()> {
    const CHILDREN: usize = 4;
    const PER_CHILD: usize = 5;

    // Like Python's Array('d', 20): zeroed, with a lock.
    let squares = Array::<f64>::zeroed(CHILDREN * PER_CHILD)?;
    // Like RawArray('i', 4), but each element read and written atomically.
    let visits = RawArray::<i32>::zeroed(CHILDREN)?;

    multiproc::process::scope(|ps| {
        let mut procs: Vec<Process> = (0..CHILDREN)
            .map(|c| {
                let (squares, visits) = (&squares, &visits);
                ps.process(move || -> multiproc::Result<()> {
                    for i in c * PER_CHILD..(c + 1) * PER_CHILD {
                        squares.set(i, (i * i) as f64)?;
                    }
                    visits.set(c, c as i32 + 100)?;
                    Ok(())
                })
            })
            .collect();
        for p in &mut procs {
            p.start()?;
        }
        for p in &mut procs {
            assert!(p.join()?.success(), "a child failed");
        }

        // Under the lock, the guard derefs to the whole slice.
        let all = squares.lock().unwrap_or_else(|died| died.into_guard());
        println!("squares: {:?}", &*all);
        println!("visits:  {:?}", visits.to_vec());
        let ok = all.iter().enumerate().all(|(i, &x)| x == (i * i) as f64)
            && visits.to_vec() == [100, 101, 102, 103];
        drop(all);
        if !ok {
            eprintln!("wrong contents");
            std::process::exit(1);
        }
        Ok(())
    })
}
