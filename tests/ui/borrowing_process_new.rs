// A `Process::new` closure that borrows from the parent does not compile:
// dropping (or forgetting) the `Process` would let the parent free what the
// child still uses. Borrowing closures go in `multiproc::process::scope`.
fn main() {
    let counter = multiproc::Value::new(0u64).unwrap();
    let mut p = multiproc::Process::new(|| counter.update(|c| *c += 1));
    p.start().unwrap();
    std::mem::forget(p);
    drop(counter);
}
