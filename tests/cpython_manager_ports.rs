// Behaviours ported from CPython's Lib/test/_test_multiprocessing.py (3.11), classes
// _TestManagerRestart, _TestMyManager, _TestRemoteManager, _TestContainers (with its namespace
// test) and the manager variants of _TestQueue, _TestLock and _TestEvent —
// © Python Software Foundation, PSF License; rewritten in Rust, no code copied verbatim.
//! Each test is named after the CPython test method whose behaviour it
//! checks, prefixed with its class (`restart_`, `mymanager_`, ...). Where
//! the CPython test involves other processes, these tests fork real child
//! processes through `common::spawn`. What is left out, and why, is listed
//! at the end of this file.

mod common;

use std::time::{Duration, Instant};

use common::{join_ok, manager_builder, serial, spawn};
use multiproc::RemoteErrorKind;
use multiproc::connection::listener::Address;
use multiproc::manager::{
    ConnectError, GetTimeoutProxyError, ProxyError, PutTimeoutProxyError, TryGetProxyError,
    TryPutProxyError,
};
use multiproc::manager::{DictProxy, ListProxy, Manager, Proxy, TypedProxy};
use serde::{Deserialize, Serialize};

const KEY: &[u8] = b"cpython ports";
/// CPython's short timeouts (TIMEOUT1..3).
const TIMEOUT: Duration = Duration::from_millis(100);

fn start() -> Manager {
    manager_builder(KEY).start().expect("start a manager")
}

fn temp_sock(tag: &str) -> (std::path::PathBuf, Address) {
    let dir = std::env::temp_dir().join(format!("mp-mgr-port-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = Address::Unix(dir.join("s"));
    (dir, a)
}

// ---------------------------------------------------------------- _TestManagerRestart

// Ports _TestManagerRestart.test_rapid_restart: a manager on a fixed
// address is shut down and a new one starts on the same address at once.
#[test]
fn restart_test_rapid_restart() {
    let _s = serial();
    let (dir, address) = temp_sock("restart");
    for round in 0..3u32 {
        let m = manager_builder(KEY)
            .address(address.clone())
            .start()
            .unwrap();
        let q = m.queue::<u32>().unwrap();
        let mut kid = {
            let q = q.clone();
            spawn(move || q.put(&round).unwrap())
        };
        assert_eq!(q.get().unwrap(), round);
        join_ok(&mut kid);
        drop(q);
        m.shutdown().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- _TestMyManager

#[derive(Serialize, Deserialize)]
struct Foo;

impl Foo {
    fn f(&self) -> String {
        "f()".into()
    }
    fn g(&self) {
        panic!("g() raises on purpose");
    }
    #[allow(dead_code)]
    fn h(&self) -> String {
        "h() is not exposed".into()
    }
}

multiproc::manager_type! {
    /// CPython's `FooBar` test type, with `f` and `g` exposed and `_h` not.
    pub proxy FooProxy for Foo as "Foo" {
        fn f(&self) -> String;
        fn g(&self);
    }
}

// Ports _TestMyManager.test_mymanager / test_mymanager_context: a manager
// with a registered type starts, serves, and its server process exits when
// the manager is shut down (or dropped, the context-manager exit).
#[test]
fn mymanager_test_mymanager_and_context() {
    let _s = serial();
    let m = manager_builder(KEY).register::<Foo>().start().unwrap();
    let pid = m.server_pid().unwrap();
    let foo: FooProxy = m.create(&Foo).unwrap();
    assert_eq!(foo.f().unwrap(), "f()");
    m.shutdown().unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    {
        let m = manager_builder(KEY).register::<Foo>().start().unwrap();
        let pid = m.server_pid().unwrap();
        let foo: FooProxy = m.create(&Foo).unwrap();
        assert_eq!(foo.f().unwrap(), "f()");
        drop(m);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        // The proxy outlived its server: a clear error, no hang.
        assert!(matches!(foo.f(), Err(ProxyError::ServerGone(_))));
    }
}

// Ports the exposed/unexposed method checks of _TestMyManager.common: an
// exposed method works, one that raises reports the error to the caller
// (and the server goes on), one that is not exposed cannot be called.
#[test]
fn mymanager_test_exposed_methods() {
    let _s = serial();
    let m = manager_builder(KEY).register::<Foo>().start().unwrap();
    let foo: FooProxy = m.create(&Foo).unwrap();
    let e = foo.g().unwrap_err();
    assert!(
        matches!(e.kind(), Some(RemoteErrorKind::Custom(k)) if k == "panic"),
        "{e}"
    );
    assert!(e.to_string().contains("g() raises on purpose"), "{e}");
    let e = foo.proxy().call::<_, String>("h", &()).unwrap_err();
    assert_eq!(e.kind(), Some(&RemoteErrorKind::UnknownMethod));
    assert_eq!(foo.f().unwrap(), "f()");
}

// ---------------------------------------------------------------- _TestRemoteManager

// Ports _TestRemoteManager.test_remote: a server on TCP with an authkey;
// one client process puts values into a queue it reaches by address, a
// second client (another connection) gets them, with the right key only.
#[test]
fn remote_test_remote() {
    let _s = serial();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let m = manager_builder(KEY)
        .address(Address::Tcp(port))
        .start()
        .unwrap();
    let q = m.queue::<(String, Vec<u32>, f64)>().unwrap();
    let token = q.proxy().token().clone();
    let address = m.address().clone();
    let mut putter = spawn(move || {
        let _m = Manager::connect(&address, KEY).unwrap();
        let q: multiproc::manager::QueueProxy<(String, Vec<u32>, f64)> =
            Proxy::from_token(token, Some(KEY)).downcast().unwrap();
        q.put(&("hello world".into(), vec![1, 2, 3], 0.75)).unwrap();
    });
    join_ok(&mut putter);
    let other = Manager::connect(m.address(), KEY).unwrap();
    let q2: multiproc::manager::QueueProxy<(String, Vec<u32>, f64)> =
        Proxy::from_token(q.proxy().token().clone(), Some(KEY))
            .downcast()
            .unwrap();
    assert_eq!(
        q2.get().unwrap(),
        ("hello world".to_string(), vec![1, 2, 3], 0.75)
    );
    drop(other);
    assert!(matches!(
        Manager::connect(m.address(), b"wrong"),
        Err(ConnectError::AuthenticationFailed(_))
    ));
}

// ---------------------------------------------------------------- _TestContainers

// Ports _TestContainers.test_list: extend, index, slices, append, remove,
// and a list made from another's contents.
#[test]
fn containers_test_list() {
    let _s = serial();
    let m = start();
    let a = m.list_from(&(0..10).collect::<Vec<i32>>()).unwrap();
    assert_eq!(a.to_vec().unwrap(), (0..10).collect::<Vec<_>>());
    let b = m.list::<i32>().unwrap();
    assert!(b.to_vec().unwrap().is_empty());
    b.extend(&(0..5).collect::<Vec<_>>()).unwrap();
    assert_eq!(b.to_vec().unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(b.get(2).unwrap(), 2);
    assert_eq!(b.slice(2..5).unwrap(), [2, 3, 4]);
    b.extend(&b.to_vec().unwrap()).unwrap(); // b *= 2
    assert_eq!(b.to_vec().unwrap(), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    let c = m.list_from(&b.slice(..2).unwrap()).unwrap();
    assert_eq!(c.to_vec().unwrap(), [0, 1]);
    let e = a.index(&100).unwrap_err();
    assert_eq!(e.kind(), Some(&RemoteErrorKind::Value));
    a.remove(&0).unwrap();
    assert_eq!(a.get(0).unwrap(), 1);
    let mut kid = {
        let b = b.clone();
        spawn(move || b.append(&99).unwrap())
    };
    join_ok(&mut kid);
    assert_eq!(b.pop().unwrap(), 99);
}

// Ports _TestContainers.test_list_iter: iterating a snapshot gives the
// items in order.
#[test]
fn containers_test_list_iter() {
    let _s = serial();
    let m = start();
    let a = m.list_from(&(0..10).collect::<Vec<i32>>()).unwrap();
    let it: Vec<i32> = a.to_vec().unwrap().into_iter().collect();
    assert_eq!(it, (0..10).collect::<Vec<_>>());
}

// Ports _TestContainers.test_list_proxy_in_list: proxies stored in a
// managed list come back as working proxies.
#[test]
fn containers_test_list_proxy_in_list() {
    let _s = serial();
    let m = start();
    let inner: Vec<ListProxy<i32>> = (0..3).map(|_| m.list_from(&[1, 2, 3]).unwrap()).collect();
    let outer = m.list_from(&inner).unwrap();
    assert_eq!(outer.len().unwrap(), 3);
    let mut kid = {
        let outer = outer.clone();
        spawn(move || {
            let first = outer.get(0).unwrap();
            first.set(0, &55).unwrap();
        })
    };
    join_ok(&mut kid);
    assert_eq!(inner[0].to_vec().unwrap(), [55, 2, 3]);
    for p in outer.to_vec().unwrap().iter().skip(1) {
        assert_eq!(p.to_vec().unwrap(), [1, 2, 3]);
    }
    // The server holds each object once per live proxy, not per token in
    // a list: the stored ones hold no reference.
    drop(outer);
    drop(inner);
    // (The child's references go once the server sees it gone.)
    let t = Instant::now();
    while m.object_count().unwrap() != 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "objects never freed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// Ports _TestContainers.test_dict: a dict of ints to chars; its items,
// keys and values; a copy.
#[test]
fn containers_test_dict() {
    let _s = serial();
    let m = start();
    let d: DictProxy<u32, char> = m.dict().unwrap();
    let indices: Vec<u32> = (65..70).collect();
    let mut kid = {
        let d = d.clone();
        let indices = indices.clone();
        spawn(move || {
            for i in indices {
                d.insert(&i, &char::from_u32(i).unwrap()).unwrap();
            }
        })
    };
    join_ok(&mut kid);
    let copy: Vec<(u32, char)> = d.items().unwrap();
    assert_eq!(
        copy,
        indices
            .iter()
            .map(|&i| (i, char::from_u32(i).unwrap()))
            .collect::<Vec<_>>()
    );
    assert_eq!(d.keys().unwrap(), indices);
    assert_eq!(d.values().unwrap(), ['A', 'B', 'C', 'D', 'E']);
}

// Ports _TestContainers.test_dict_proxy_nested: dict proxies stored in a
// dict; changes through the nested proxy are seen by every holder, and
// clearing the outer one leaves the inner objects alone.
#[test]
fn containers_test_dict_proxy_nested() {
    let _s = serial();
    let m = start();
    let pets: DictProxy<String, u32> = m.dict().unwrap();
    pets.update([(&"ferrets".to_string(), &2), (&"hamsters".to_string(), &4)])
        .unwrap();
    let supplies: DictProxy<String, u32> = m.dict().unwrap();
    supplies.insert(&"water".into(), &10).unwrap();
    let pet_store: DictProxy<String, DictProxy<String, u32>> = m.dict().unwrap();
    pet_store.insert(&"pets".into(), &pets).unwrap();
    pet_store.insert(&"supplies".into(), &supplies).unwrap();
    let mut kid = {
        let pet_store = pet_store.clone();
        spawn(move || {
            let p = pet_store.get(&"pets".into()).unwrap().unwrap();
            p.insert(&"marmots".into(), &5).unwrap();
        })
    };
    join_ok(&mut kid);
    assert_eq!(pets.get(&"marmots".into()).unwrap(), Some(5));
    let via_store = pet_store.get(&"pets".into()).unwrap().unwrap();
    assert_eq!(via_store.len().unwrap(), 3);
    pet_store.clear().unwrap();
    assert_eq!(pets.len().unwrap(), 3);
    assert_eq!(supplies.get(&"water".into()).unwrap(), Some(10));
}

// Ports _TestContainers.test_namespace: fields set and read in two
// processes, a field removed, a missing field is an error (AttributeError
// in Python).
#[test]
fn containers_test_namespace() {
    let _s = serial();
    let m = start();
    let n = m.namespace().unwrap();
    n.set("name", "Bob").unwrap();
    n.set("job", "Builder").unwrap();
    n.set("_hidden", "hidden").unwrap();
    let mut kid = {
        let n = n.clone();
        spawn(move || {
            assert_eq!(n.get::<String>("name").unwrap(), "Bob");
            n.set("age", &7u8).unwrap();
        })
    };
    join_ok(&mut kid);
    assert_eq!(n.names().unwrap(), ["_hidden", "age", "job", "name"]);
    assert!(n.remove("job").unwrap());
    let e = n.get::<String>("job").unwrap_err();
    assert_eq!(e.kind(), Some(&RemoteErrorKind::Key));
    assert_eq!(n.get::<u8>("age").unwrap(), 7);
}

// ---------------------------------------------------------------- manager _TestQueue

// Ports _TestQueue.test_put (manager variant): a bounded queue fills up;
// non-blocking and timed puts on a full queue fail (queue.Full); a child
// drains it.
#[test]
fn queue_test_put() {
    let _s = serial();
    let m = start();
    let q = m.queue_bounded::<u32>(6).unwrap();
    assert!(q.is_empty().unwrap());
    for i in 0..6 {
        q.try_put(&i).unwrap();
    }
    assert!(q.is_full().unwrap());
    assert_eq!(q.qsize().unwrap(), 6);
    // Full and a put's timeout are errors of their own; the item stays
    // with the caller (the proxy borrows it).
    let seven = 7;
    assert!(matches!(q.try_put(&seven), Err(TryPutProxyError::Full)));
    let t = Instant::now();
    assert!(matches!(
        q.put_timeout(&seven, TIMEOUT),
        Err(PutTimeoutProxyError::Timeout)
    ));
    let e: multiproc::Error = q.try_put(&seven).unwrap_err().into();
    assert!(matches!(e, multiproc::Error::Full), "{e:?}");
    assert!(t.elapsed() >= TIMEOUT - Duration::from_millis(5));
    let mut kid = {
        let q = q.clone();
        spawn(move || {
            for i in 0..6 {
                assert_eq!(q.get().unwrap(), i);
            }
        })
    };
    join_ok(&mut kid);
    assert!(q.is_empty().unwrap());
}

// Ports _TestQueue.test_get (manager variant): gets from an empty queue
// fail without blocking (queue.Empty), and a timed get waits its timeout.
#[test]
fn queue_test_get_and_timeout() {
    let _s = serial();
    let m = start();
    let q = m.queue::<u32>().unwrap();
    assert!(matches!(q.try_get(), Err(TryGetProxyError::Empty)));
    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(TIMEOUT),
        Err(GetTimeoutProxyError::Timeout)
    ));
    let e: multiproc::Error = q.try_get().unwrap_err().into();
    assert!(matches!(e, multiproc::Error::Empty), "{e:?}");
    assert!(t.elapsed() >= TIMEOUT - Duration::from_millis(5));
    let mut kid = {
        let q = q.clone();
        spawn(move || {
            std::thread::sleep(TIMEOUT);
            for i in 1..=5 {
                q.put(&i).unwrap();
            }
        })
    };
    let got: Vec<u32> = (0..5).map(|_| q.get().unwrap()).collect();
    assert_eq!(got, [1, 2, 3, 4, 5]);
    join_ok(&mut kid);
}

// Ports _TestQueue.test_task_done (manager variant): workers get and mark
// tasks done; join returns once all are done.
#[test]
fn queue_test_task_done() {
    let _s = serial();
    let m = start();
    let q = m.joinable_queue::<Option<u32>>().unwrap();
    let mut workers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            spawn(move || {
                while let Some(_i) = q.get().unwrap() {
                    q.task_done().unwrap();
                }
                q.task_done().unwrap();
            })
        })
        .collect();
    for i in 0..10 {
        q.put(&Some(i)).unwrap();
    }
    q.join().unwrap();
    for _ in 0..4 {
        q.put(&None).unwrap();
    }
    q.join().unwrap();
    for w in &mut workers {
        join_ok(w);
    }
}

// ---------------------------------------------------------------- manager _TestLock, _TestEvent

// Ports _TestLock.test_lock (manager variant).
#[test]
fn lock_test_lock() {
    let _s = serial();
    let m = start();
    let lock = m.lock().unwrap();
    assert!(lock.try_acquire().unwrap());
    assert!(!lock.try_acquire().unwrap());
    lock.release().unwrap();
    assert!(matches!(lock.release(), Err(ProxyError::NotOwner)));
}

// Ports _TestLock.test_rlock (manager variant).
#[test]
fn lock_test_rlock() {
    let _s = serial();
    let m = start();
    let lock = m.rlock().unwrap();
    for _ in 0..3 {
        lock.acquire().unwrap();
    }
    for _ in 0..3 {
        lock.release().unwrap();
    }
    assert!(matches!(lock.release(), Err(ProxyError::NotOwner)));
}

// Ports _TestLock.test_lock_context (manager variant): the guard releases.
#[test]
fn lock_test_lock_context() {
    let _s = serial();
    let m = start();
    let lock = m.lock().unwrap();
    {
        let _g = lock.lock().unwrap();
        assert!(lock.is_locked().unwrap());
    }
    assert!(!lock.is_locked().unwrap());
}

// Ports _TestEvent.test_event (manager variant): a timed wait on a clear
// event returns false after its timeout; a child sets it and a waiter
// wakes.
#[test]
fn event_test_event() {
    let _s = serial();
    let m = start();
    let ev = m.event().unwrap();
    assert!(!ev.is_set().unwrap());
    let t = Instant::now();
    assert!(!ev.wait_timeout(TIMEOUT).unwrap());
    assert!(t.elapsed() >= TIMEOUT - Duration::from_millis(5));
    ev.set().unwrap();
    assert!(ev.wait_timeout(TIMEOUT).unwrap());
    ev.clear().unwrap();
    let mut kid = {
        let ev = ev.clone();
        spawn(move || {
            std::thread::sleep(TIMEOUT);
            ev.set().unwrap();
        })
    };
    ev.wait().unwrap();
    assert!(ev.is_set().unwrap());
    join_ok(&mut kid);
}

// Left out:
// - _TestMyManager.test_mymanager_context_prestarted and the `baz`
//   generator proxy: there is no separate prestart step (start connects),
//   and proxies of iterators are not provided.
// - _TestRemoteManager.test_remote's pickled `get_queue` callable: objects
//   are reached by token (address + id) rather than by a registered
//   function returning a shared object.
// - _TestContainers.test_list_isinstance, test_dict_isinstance and the
//   str()/repr() checks: Python typing and formatting details.
// - _TestContainers' in-place operators (`+=`, `*=`): expressed with
//   extend above.
// - The exit-code checks of _TestMyManager: the server's exit status is
//   not exposed; the tests check that the process is gone instead.
