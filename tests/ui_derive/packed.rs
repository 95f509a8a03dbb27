// A packed struct's fields could not be used in place: refused.
#[repr(C, packed)]
#[derive(multiproc::ShmSafe)]
struct Header {
    tag: u8,
    len: u64,
}

fn main() {}
