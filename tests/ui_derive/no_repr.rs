// Without #[repr(C)] or #[repr(transparent)] the layout is not fixed: refused.
#[derive(multiproc::ShmSafe)]
struct Point {
    x: f64,
    y: f64,
}

fn main() {}
