// An enum's discriminant is not proven valid: refused.
#[repr(u8)]
#[derive(multiproc::ShmSafe)]
enum State {
    Idle = 1,
    Busy = 2,
}

fn main() {}
