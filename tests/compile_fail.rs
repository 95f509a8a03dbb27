//! Type-level guarantees of the process API, checked by compiling
//! programs that must be rejected (`tests/ui`, with the expected errors):
//! a `Process::new` closure cannot borrow from the parent, a scoped process
//! cannot leave its scope, a closure returning something a child cannot
//! report gets an error that says what to return, and a `bool` or `char`
//! (which have invalid byte patterns another process could write) cannot be
//! placed in shared memory.

#[test]
fn process_api_rejects_unsound_programs() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
