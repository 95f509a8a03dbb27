// A field that is not ShmSafe (it points into one process's heap, or to
// one process's memory) is refused, each at its own field.
#[repr(C)]
#[derive(multiproc::ShmSafe)]
struct Record {
    id: u64,
    name: String,
    next: Box<u64>,
}

fn main() {}
