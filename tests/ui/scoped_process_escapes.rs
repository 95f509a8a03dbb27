// A scoped process cannot leave its scope, not even to be forgotten
// outside it: the scope must be the last to see it, whatever it captures.
fn main() {
    let p = multiproc::process::scope(|s| s.process(|| ()));
    std::mem::forget(p);
}
