// Neither `bool` nor `char` is `ShmSafe`: another process mapping the
// memory could write a byte pattern that is not a valid `bool` or `char`,
// and reading it back would be undefined behaviour. Share a `u8` (or use an
// `Event` for a flag) instead.
fn main() {
    let _flag = multiproc::RawValue::new(true);
    let _letters = multiproc::Array::from_slice(&['x']);
}
