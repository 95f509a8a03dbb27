// A closure whose return type is not a `ChildResult` gets an error that
// says what a child may return.
fn main() {
    let _p = multiproc::Process::new(|| String::from("a result"));
}
