//! A `ShareableList` shared with python3: Rust makes it, Python reads and
//! changes it by name, Rust sees the change (both sides use the same
//! layout, Python's `multiprocessing.shared_memory.ShareableList`).
//!
//! ```text
//! cargo run --example shareable_list_python
//! ```

use std::process::Command;

use multiproc::{ShareableItem, ShareableList};

fn main() -> multiproc::Result<()> {
    let list = ShareableList::create(
        None,
        &[1i64.into(), 2.5.into(), "hello".into(), ShareableItem::None],
    )?;
    // Python's resource tracker would unlink a block it only opened when
    // python3 exits (before 3.13): unregister it there.
    let script = "import sys\n\
        from multiprocessing import shared_memory as s, resource_tracker as r\n\
        sl = s.ShareableList(name=sys.argv[1])\n\
        r.unregister(sl.shm._name, 'shared_memory')\n\
        print('python sees', list(sl))\n\
        sl[0] = sl[0] + 41\n\
        sl[2] = 'from py'\n\
        sl.shm.close()\n";
    let status = Command::new("python3")
        .args(["-c", script, list.name()])
        .status()
        .expect("this example needs python3 on PATH");
    assert!(status.success(), "python3 failed");
    println!("rust sees {:?}", list.to_vec()?);
    assert_eq!(list.get(0)?, ShareableItem::Int(42));
    Ok(list.shm().unlink()?)
}
