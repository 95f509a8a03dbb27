//! Sorting a managed list, iterating lists and dicts lazily, and the
//! server's initializer: each run with a forked and a spawned server.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{builder, is_kind, start, wait_for};
use crate::common::{join_ok, spawn};
use multiproc::manager::ConnectError;
use multiproc::manager::{ListProxy, TypedProxy};
use multiproc::{RemoteErrorKind, StartMethod};
use serde::{Deserialize, Serialize};

pub fn list_sort_forms(method: StartMethod) {
    let m = start(method);
    let l = m.list_from(&[5u32, 3, 9, 1, 3, 7]).unwrap();
    l.sort().unwrap();
    assert_eq!(l.to_vec().unwrap(), [1, 3, 3, 5, 7, 9]);
    l.sort_by(|a, b| b.cmp(a)).unwrap();
    assert_eq!(l.to_vec().unwrap(), [9, 7, 5, 3, 3, 1]);
    // Stable: equal keys keep their order.
    let words = m
        .list_from(&["pear", "fig", "apple", "kiwi", "plum", "date"].map(String::from))
        .unwrap();
    words.sort_by_key(|w| w.len()).unwrap();
    assert_eq!(
        words.to_vec().unwrap(),
        ["fig", "pear", "kiwi", "plum", "date", "apple"]
    );
    // An empty list and a sorted one: nothing to do.
    let e = m.list::<u32>().unwrap();
    e.sort().unwrap();
    assert!(e.is_empty().unwrap());
    l.sort().unwrap();
    l.sort().unwrap();
    assert_eq!(l.to_vec().unwrap(), [1, 3, 3, 5, 7, 9]);
    // A comparator that is no order at all still gives a permutation.
    let mut flip = false;
    l.sort_by(|_, _| {
        flip = !flip;
        if flip {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Greater
        }
    })
    .unwrap();
    let mut all = l.to_vec().unwrap();
    all.sort();
    assert_eq!(all, [1, 3, 3, 5, 7, 9]);
    // A comparator that changes the list itself (Python's "list modified
    // during sort"; here it rewrites item 0 with its own value): every
    // attempt's order is refused, and the sort gives up with a Value error,
    // the list as it was.
    let l2 = l.clone();
    let before = l.to_vec().unwrap();
    let e = l
        .sort_by(|a, b| {
            l2.set(0, &before[0]).unwrap();
            b.cmp(a)
        })
        .unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::Value), "{e}");
    assert!(e.to_string().contains("list modified during sort"), "{e}");
    assert_eq!(l.to_vec().unwrap(), before);
    // Items that do not decode as the proxy's type: an error, nothing
    // moved.
    let wrong: ListProxy<String> = l.proxy().clone().downcast().unwrap();
    let before = l.to_vec().unwrap();
    assert!(wrong.sort().is_err());
    assert_eq!(l.to_vec().unwrap(), before);
}

/// Another process watching a list being sorted sees it unsorted or
/// sorted, never in between; items other processes add meanwhile are
/// never lost (the order of a stale snapshot is refused and the sort
/// tries again).
pub fn list_sort_is_atomic_for_other_processes(method: StartMethod) {
    let m = start(method);
    let n = 400u32;
    let original: Vec<u32> = (0..n).rev().collect();
    let l = m.list_from(&original).unwrap();
    let sorted: Vec<u32> = (0..n).collect();
    let (tx, rx) = multiproc::pipe(true).unwrap();
    let mut watcher = {
        let l = l.clone();
        let (original, sorted) = (original.clone(), sorted.clone());
        spawn(move || {
            assert_eq!(l.to_vec().unwrap(), original);
            tx.send(&()).unwrap();
            let t = Instant::now();
            let mut looks = 1u32;
            loop {
                let v = l.to_vec().unwrap();
                assert!(v == original || v == sorted, "a half-sorted list: {v:?}");
                looks += 1;
                if v == sorted || t.elapsed() > Duration::from_secs(20) {
                    break;
                }
            }
            tx.send(&looks).unwrap();
        })
    };
    rx.recv::<()>().unwrap();
    l.sort().unwrap();
    let looks: u32 = rx.recv().unwrap();
    join_ok(&mut watcher);
    assert_eq!(l.to_vec().unwrap(), sorted);
    eprintln!("the watcher looked {looks} times");

    // Writers in other processes while this one sorts: nothing is lost.
    l.clear().unwrap();
    l.extend(&original).unwrap();
    let mut writers: Vec<_> = (0..2u32)
        .map(|w| {
            let l = l.clone();
            spawn(move || {
                for i in 0..100 {
                    l.push(&(10_000 + w * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..20 {
        l.sort_by(|a, b| b.cmp(a)).unwrap();
    }
    for w in &mut writers {
        join_ok(w);
    }
    let mut all = l.to_vec().unwrap();
    assert_eq!(all.len(), n as usize + 200);
    all.sort();
    let mut want: Vec<u32> = (0..n)
        .chain((0..2).flat_map(|w| (0..100).map(move |i| 10_000 + w * 1000 + i)))
        .collect();
    want.sort();
    assert_eq!(all, want);
}

/// Proxies stored in a list stay alive when the sort moves them.
pub fn list_sort_moves_stored_proxies_with_their_references(method: StartMethod) {
    let m = start(method);
    let outer = m.list::<(u32, ListProxy<u32>)>().unwrap();
    for k in [3u32, 1, 2] {
        outer.push(&(k, m.list_from(&[k, k]).unwrap())).unwrap();
    }
    // The temporaries are gone: the outer list holds the inner ones.
    assert_eq!(m.object_count().unwrap(), 4);
    outer.sort_by_key(|(k, _)| *k).unwrap();
    assert_eq!(m.object_count().unwrap(), 4);
    for (i, want) in [1u32, 2, 3].into_iter().enumerate() {
        let (k, inner) = outer.get(i).unwrap();
        assert_eq!(k, want);
        assert_eq!(inner.to_vec().unwrap(), [want, want]);
    }
    drop(outer);
    wait_for(|| m.object_count().unwrap() == 0);
}

pub fn list_iteration_is_lazy_and_follows_python(method: StartMethod) {
    let m = start(method);
    let items: Vec<u64> = (0..1000).collect();
    let l = m.list_from(&items).unwrap();
    // `for x in &list`, in chunks of 128, and in other chunk sizes.
    let mut got = Vec::new();
    for x in &l {
        got.push(x.unwrap());
    }
    assert_eq!(got, items);
    for chunk in [1, 7, 1000, 5000] {
        let v: Vec<u64> = l.iter_chunked(chunk).collect::<Result<_, _>>().unwrap();
        assert_eq!(v, items, "chunks of {chunk}");
    }
    assert_eq!(m.list::<u64>().unwrap().iter().count(), 0);
    // In a child too.
    let mut kid = {
        let l = l.clone();
        spawn(move || {
            let sum: u64 = l.iter().map(|x| x.unwrap()).sum();
            assert_eq!(sum, 999 * 1000 / 2);
        })
    };
    join_ok(&mut kid);

    // Changes during the iteration: by position, as Python's.
    let l = m.list_from(&[10u32, 20, 30]).unwrap();
    let mut it = l.iter_chunked(1);
    assert_eq!(it.next().unwrap().unwrap(), 10);
    // Inserted before the position: the current item is seen again.
    l.insert(0, &5).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 10);
    // Removed before the position: the next item is skipped.
    l.pop_at(0).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 30);
    // Appended: seen.
    l.push(&40).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 40);
    assert!(it.next().is_none());
    // Ended: stays ended, even if the list grows.
    l.push(&50).unwrap();
    assert!(it.next().is_none());

    // A failure is yielded once, then the iterator ends.
    let wrong: ListProxy<String> = l.proxy().clone().downcast().unwrap();
    let mut it = wrong.iter();
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
}

pub fn dict_iterators_walk_a_server_cursor(method: StartMethod) {
    let m = start(method);
    let d = m.dict::<u32, String>().unwrap();
    let entries: Vec<(u32, String)> = (0..300).map(|i| (1000 - i, format!("v{i}"))).collect();
    d.update(entries.iter().map(|(k, v)| (k, v))).unwrap();
    let keys: Vec<u32> = d.iter_keys().unwrap().map(Result::unwrap).collect();
    assert_eq!(keys, entries.iter().map(|e| e.0).collect::<Vec<_>>());
    let values: Vec<String> = d.iter_values().unwrap().map(Result::unwrap).collect();
    assert_eq!(
        values,
        entries.iter().map(|e| e.1.clone()).collect::<Vec<_>>()
    );
    let items: Vec<(u32, String)> = d.iter_items().unwrap().map(Result::unwrap).collect();
    assert_eq!(items, entries);
    assert_eq!(m.dict::<u8, u8>().unwrap().iter_keys().unwrap().count(), 0);

    // The cursor is an object of the server while the iterator lives.
    let base = m.object_count().unwrap();
    let mut it = d.iter_items().unwrap();
    assert_eq!(m.object_count().unwrap(), base + 1);
    assert_eq!(it.next().unwrap().unwrap(), entries[0]);
    // Changing a value is fine (seen when its chunk is fetched) ...
    d.insert(&entries[200].0, &"changed".into()).unwrap();
    let rest: Vec<(u32, String)> = it.by_ref().take(250).map(Result::unwrap).collect();
    assert_eq!(rest[199].1, "changed");
    // ... adding a key is not, as in Python.
    d.insert(&5000, &"new".into()).unwrap();
    let e = it
        .find_map(Result::err)
        .expect("an error after the dict changed size");
    assert!(
        is_kind(&e, RemoteErrorKind::Custom("RuntimeError".into())),
        "{e}"
    );
    assert!(it.next().is_none());
    drop(it);
    assert_eq!(m.object_count().unwrap(), base);
    // A removal too.
    let mut it = d.iter_keys().unwrap();
    it.next().unwrap().unwrap();
    d.remove(&5000).unwrap();
    assert!(it.any(|r| r.is_err()));
    drop(it);

    // A process killed while it iterates leaves no cursor behind.
    let (tx, rx) = multiproc::pipe(true).unwrap();
    let mut kid = {
        let d = d.clone();
        spawn(move || {
            let mut it = d.iter_keys().unwrap();
            it.next().unwrap().unwrap();
            tx.send(&()).unwrap();
            std::thread::sleep(Duration::from_secs(60));
            drop(it);
        })
    };
    rx.recv::<()>().unwrap();
    // The child's cursor.
    assert_eq!(m.object_count().unwrap(), base + 1);
    kid.kill().unwrap();
    kid.join().unwrap();
    wait_for(|| m.object_count().unwrap() == base);
    // A cursor is no type a client can make.
    let e = m.create(&FakeCursor).unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::UnknownType), "{e}");
    assert_eq!(d.len().unwrap(), 300);
}

#[derive(Serialize, Deserialize)]
pub struct FakeCursor;

multiproc::manager_type! {
    /// A registered type that claims the cursors' type id.
    pub proxy FakeCursorProxy for FakeCursor as "dict_cursor" {}
}

/// Set by the server's initializer in the server process.
static INITIALIZED: OnceLock<String> = OnceLock::new();

fn set_initialized(value: String) -> Result<(), String> {
    INITIALIZED.set(value).map_err(|_| "set twice".to_string())
}

fn refuse(why: String) -> Result<(), String> {
    Err(format!("refused: {why}"))
}

fn explode((): ()) -> Result<(), std::io::Error> {
    panic!("the initializer exploded")
}

#[derive(Serialize, Deserialize)]
pub struct Probe;

impl Probe {
    fn initialized(&self) -> Option<String> {
        INITIALIZED.get().cloned()
    }
}

multiproc::manager_type! {
    /// Reports what the server's initializer did.
    pub proxy ProbeProxy for Probe as "Probe" {
        fn initialized(&self) -> Option<String>;
    }
}

pub fn server_initializer_runs_in_the_server_before_it_serves(method: StartMethod) {
    let m = builder(method)
        .register::<Probe>()
        .initializer(set_initialized, "from the initializer".to_string())
        .start()
        .unwrap();
    let p: ProbeProxy = m.create(&Probe).unwrap();
    assert_eq!(
        p.initialized().unwrap().as_deref(),
        Some("from the initializer")
    );
    // It ran in the server, not here.
    assert!(INITIALIZED.get().is_none());
    m.shutdown().unwrap();

    // An error: start fails with it, and no server is left behind.
    let e = builder(method)
        .initializer(refuse, "no".to_string())
        .start()
        .unwrap_err();
    assert!(
        matches!(&e, ConnectError::InitializerFailed(m) if m.contains("refused: no")),
        "{e}"
    );
    // A panic: its message.
    let e = builder(method)
        .initializer(explode, ())
        .start()
        .unwrap_err();
    assert!(
        matches!(&e, ConnectError::InitializerFailed(m) if m.contains("the initializer exploded")),
        "{e}"
    );
}
