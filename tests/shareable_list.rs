//! `ShareableList` against CPython's (`python3`, 3.11 here): a list made by
//! either side opens on the other, and writes show both ways; a forked
//! child shares one too; garbage in the block is an error.

mod common;

use std::process::Command;

use common::{join_ok, serial, spawn};
use multiproc::{Error, ShareableItem as I, ShareableList, ShareableListError, SharedMemory};

fn unique(tag: &str) -> String {
    format!("mpt_sl_{}_{tag}", std::process::id())
}

/// Unlinks the block when dropped (errors ignored).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = SharedMemory::unlink_name(&self.0);
    }
}

/// Runs `code` in python3 with `args`; its stdout, asserting success.
fn python(code: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("the interop tests need python3: {e}"));
    assert!(
        out.status.success(),
        "python3 failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Python's side: opening a block registers it with the resource tracker,
/// which would unlink it when python3 exits; unregister it.
const PY_PRELUDE: &str = "import sys\n\
from multiprocessing import shared_memory as s, resource_tracker as r\n\
def keep(sl):\n    r.unregister(sl.shm._name, 'shared_memory')\n";

#[test]
fn a_list_made_by_python_opens_in_rust_and_back() {
    // A python3 child would show up in the forking tests' leftover check.
    let _s = serial();
    let name = unique("from_py");
    let _c = Cleanup(name.clone());
    python(
        &format!(
            "{PY_PRELUDE}sl = s.ShareableList([7, -2.5, True, 'h\u{e9}llo', b'by\\x00tes', None, \
             False, 'x' * 20, 2**62], name=sys.argv[1])\nkeep(sl)\nsl.shm.close()\n"
        ),
        &[&name],
    );
    let sl = ShareableList::open(&name).unwrap();
    assert_eq!(
        sl.to_vec().unwrap(),
        [
            I::Int(7),
            I::Float(-2.5),
            I::Bool(true),
            I::Str("h\u{e9}llo".into()),
            I::Bytes(b"by\0tes".to_vec()),
            I::None,
            I::Bool(false),
            I::Str("x".repeat(20)),
            I::Int(1 << 62),
        ]
    );
    // Writes from Rust, read back by Python: a new type in a number slot,
    // a string that fits its slot, None over a string.
    sl.set(0, "abc").unwrap();
    sl.set(1, I::None).unwrap();
    sl.set(3, "bye").unwrap();
    sl.set(5, 1.25).unwrap();
    sl.set(7, I::Bytes(b"raw".to_vec())).unwrap();
    assert!(matches!(
        sl.set(3, "far too long for the slot"),
        Err(ShareableListError::InvalidSize { .. })
    ));
    let out = python(
        &format!(
            "{PY_PRELUDE}sl = s.ShareableList(name=sys.argv[1])\nkeep(sl)\nprint(list(sl))\nsl.shm.close()\n"
        ),
        &[&name],
    );
    assert_eq!(
        out.trim(),
        "['abc', None, True, 'bye', b'by\\x00tes', 1.25, False, b'raw', 4611686018427387904]"
    );
    sl.shm().unlink().unwrap();
}

#[test]
fn a_list_made_by_rust_opens_in_python_and_back() {
    // A python3 child would show up in the forking tests' leftover check.
    let _s = serial();
    let name = unique("from_rust");
    let _c = Cleanup(name.clone());
    let sl = ShareableList::create(
        Some(&name),
        &[
            I::Int(-1),
            I::Float(0.5),
            I::Bool(true),
            I::Str("gr\u{fc}\u{df}e".into()),
            I::Bytes(vec![1, 2, 3]),
            I::None,
            I::Str(String::new()),
        ],
    )
    .unwrap();
    let out = python(
        &format!(
            "{PY_PRELUDE}sl = s.ShareableList(name=sys.argv[1])\nkeep(sl)\nprint(list(sl))\n\
             print(sl.format)\nsl[0] = 'seven'\nsl[2] = None\nsl[6] = 'fits8'\nsl[5] = 3.0\n\
             sl.shm.close()\n"
        ),
        &[&name],
    );
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        "[-1, 0.5, True, 'gr\u{fc}\u{df}e', b'\\x01\\x02\\x03', None, '']"
    );
    assert_eq!(lines.next().unwrap(), "qdxxxxxxx?8s8sxxxxxx?x8s");
    assert_eq!(
        sl.to_vec().unwrap(),
        [
            I::Str("seven".into()),
            I::Float(0.5),
            I::None,
            I::Str("gr\u{fc}\u{df}e".into()),
            I::Bytes(vec![1, 2, 3]),
            I::Float(3.0),
            I::Str("fits8".into()),
        ]
    );
    // The empty list too.
    let empty = ShareableList::create(None, &[]).unwrap();
    let _e = Cleanup(empty.name().to_owned());
    let out = python(
        &format!(
            "{PY_PRELUDE}sl = s.ShareableList(name=sys.argv[1])\nkeep(sl)\nprint(len(sl))\nsl.shm.close()\n"
        ),
        &[empty.name()],
    );
    assert_eq!(out.trim(), "0");
    empty.shm().unlink().unwrap();
    sl.shm().unlink().unwrap();
}

#[test]
fn a_forked_child_writes_what_the_parent_reads() {
    let _s = serial();
    let sl = ShareableList::create(None, &[I::Int(0), I::Str("........".into())]).unwrap();
    let _c = Cleanup(sl.name().to_owned());
    let name = sl.name().to_owned();
    let mut kid = spawn(move || {
        let mine = ShareableList::open(&name).unwrap();
        mine.set(0, 42i64).unwrap();
        mine.set(1, "child").unwrap();
    });
    join_ok(&mut kid);
    assert_eq!(sl.get(0).unwrap(), I::Int(42));
    assert_eq!(sl.get(1).unwrap(), I::Str("child".into()));
    assert_eq!(sl.count(&I::Int(42)).unwrap(), 1);
    assert_eq!(sl.index(&I::Str("child".into())).unwrap(), Some(1));
    assert!(matches!(
        sl.get(2),
        Err(ShareableListError::IndexOutOfBounds { .. })
    ));
    // Into the coarse error with `?`, variant for variant.
    let coarse = || -> multiproc::Result<I> { Ok(sl.get(2)?) };
    assert!(matches!(
        coarse(),
        Err(Error::IndexOutOfBounds { index: 2, .. })
    ));
    sl.shm().unlink().unwrap();
}

#[test]
fn garbage_in_the_block_is_an_error_not_a_crash() {
    let sl = ShareableList::create(None, &[I::Int(1), I::Str("abc".into())]).unwrap();
    let _c = Cleanup(sl.name().to_owned());
    let raw = SharedMemory::open(sl.name()).unwrap();
    // A format that claims a huge string, a code that does not match, a
    // string that is not UTF-8: each is Corrupt.
    let formats = 8 * 4 + 8 + 8;
    raw.write_at(formats + 8, b"99999s\0\0").unwrap();
    assert!(matches!(
        sl.get(1),
        Err(ShareableListError::Corrupt(_)) | Err(ShareableListError::IndexOutOfBounds { .. })
    ));
    raw.write_at(formats, b"q\0\0\0\0\0\0\0").unwrap();
    raw.write_at(formats + 16, &[1]).unwrap();
    assert!(matches!(sl.get(0), Err(ShareableListError::Corrupt(_))));
    raw.write_at(formats + 8, b"8s\0\0\0\0\0\0").unwrap();
    raw.write_at(8 * 4 + 8, &[0xff; 8]).unwrap();
    assert!(matches!(sl.get(1), Err(ShareableListError::Corrupt(_))));
    // A count or offsets past the block: refused at open.
    raw.write_at(0, &i64::MAX.to_ne_bytes()).unwrap();
    assert!(matches!(
        ShareableList::open(sl.name()),
        Err(ShareableListError::Corrupt(_))
    ));
    raw.write_at(0, &2i64.to_ne_bytes()).unwrap();
    raw.write_at(8 * 3, &(1i64 << 40).to_ne_bytes()).unwrap();
    assert!(matches!(
        ShareableList::open(sl.name()),
        Err(ShareableListError::Corrupt(_))
    ));
    raw.write_at(8, &(-8i64).to_ne_bytes()).unwrap();
    assert!(matches!(
        ShareableList::open(sl.name()),
        Err(ShareableListError::Corrupt(_))
    ));
    sl.shm().unlink().unwrap();
}
