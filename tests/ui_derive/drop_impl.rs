// A type that implements Drop is refused (nobody, or everybody, would run it).
#[repr(C)]
#[derive(multiproc::ShmSafe)]
struct Guarded {
    n: u32,
}

impl Drop for Guarded {
    fn drop(&mut self) {}
}

fn main() {}
