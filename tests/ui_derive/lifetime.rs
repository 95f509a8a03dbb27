// Lifetimes are refused: shared memory outlives every borrow.
#[repr(C)]
#[derive(multiproc::ShmSafe)]
struct View<'a> {
    data: &'a [u8; 4],
}

fn main() {}
