// A generic struct is ShmSafe only when its parameters are.
#[repr(C)]
#[derive(multiproc::ShmSafe)]
struct Pair<T> {
    a: T,
    b: T,
}

fn main() {
    let _ = multiproc::Value::new(Pair { a: 1u32, b: 2u32 });
    let _ = multiproc::Value::new(Pair {
        a: String::new(),
        b: String::new(),
    });
}
