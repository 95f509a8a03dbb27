//! `array_fill`: a shared `RawArray` filled in place, beside a populated
//! memfd mapping.

use std::time::Duration;

use multiproc::RawArray;

use super::{P, Size, keep, run_forked};
use crate::pi::Outcome;
use crate::report::{Line, params};
use crate::support::shared_mapping;

pub(super) fn array_fill(size: Size) -> Outcome<Vec<Line>> {
    let n: usize = size.pick(100_000_000, 10_000_000);
    let params = params!["P" => P, "n" => n];
    let gb = (n * 8) as f64 / 1e9;
    // Each child writes element i = i as f64; the parent checks every
    // 997th element and the last.
    let verify = |get: &dyn Fn(usize) -> f64| -> String {
        let bad = (0..n)
            .step_by(997)
            .chain([n - 1])
            .find(|&i| get(i) != i as f64);
        match bad {
            None => "ok".into(),
            Some(i) => format!("element {i} is {}", get(i)),
        }
    };
    let fill = |base: usize, i: usize| {
        let r = i * n / P..(i + 1) * n / P;
        let start = (base as *mut f64).wrapping_add(r.start);
        // SAFETY: each child fills its own part of an n-element f64 array
        // at `base` that outlives it.
        let s = unsafe { std::slice::from_raw_parts_mut(start, r.len()) };
        for (j, x) in s.iter_mut().enumerate() {
            *x = (r.start + j) as f64;
        }
    };
    // The two variants alternate after one discarded warm-up round: on a
    // virtual machine the first touch of memory the guest has not used
    // before is much slower, and would be charged to whoever runs first.
    let (mut ok_mp, mut ok_raw) = (String::from("ok"), String::from("ok"));
    let (mut t_mp, mut t_raw) = (Duration::MAX, Duration::MAX);
    for rep in 0..=size.reps {
        let a = RawArray::<f64>::zeroed(n)?;
        let base = a.as_ptr() as usize;
        let t = run_forked(P, |i| fill(base, i))?;
        keep(&mut ok_mp, verify(&|i| a.get(i).unwrap_or(f64::NAN)));
        drop(a);
        let m = shared_mapping(n * 8, true);
        let base = m.as_mut_ptr() as usize;
        let tr = run_forked(P, |i| fill(base, i))?;
        // SAFETY: the children have ended; the parent alone reads the
        // n-element mapping.
        keep(
            &mut ok_raw,
            verify(&|i| unsafe { (base as *const f64).wrapping_add(i).read() }),
        );
        drop(m);
        if rep > 0 {
            t_mp = t_mp.min(t);
            t_raw = t_raw.min(tr);
        }
    }
    Ok(vec![
        Line::new(
            "multiproc",
            "array_fill",
            "RawArray",
            &params,
            "GB_per_s",
            gb / t_mp.as_secs_f64(),
            &ok_mp,
        ),
        Line::new(
            "raw",
            "array_fill",
            "populated_memfd",
            &params,
            "GB_per_s",
            gb / t_raw.as_secs_f64(),
            &ok_raw,
        ),
    ])
}
