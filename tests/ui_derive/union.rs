// A union is refused.
#[repr(C)]
#[derive(multiproc::ShmSafe)]
union Bits {
    f: f32,
    u: u32,
}

fn main() {}
