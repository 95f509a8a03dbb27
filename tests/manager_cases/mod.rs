//! The manager's behaviours, written once and run under each start method
//! of its server: `tests/manager.rs` runs them with a forked server,
//! `tests/manager_spawn.rs` with a spawned one (a fresh run of that test
//! binary). Every proxy type used from forked children, custom registered
//! types, connecting by address (Unix and TCP on loopback), the
//! authentication, object lifetime across processes, and the faults
//! (server killed, client killed mid-call, garbage frames).
//!
//! A case is `pub fn name(method: StartMethod)` listed in [`cases!`]; the
//! runners hold the forking tests' lock around each.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::common::{join_ok, manager_with_method, spawn};
use multiproc::connection::listener::{Address, Client};
use multiproc::manager::{
    ConnectError, GetTimeoutProxyError, ProxyError, PutTimeoutProxyError, TryGetProxyError,
    TryPutProxyError,
};
use multiproc::manager::{DictProxy, ListProxy, Manager, ManagerBuilder, Proxy, Token, TypedProxy};
use multiproc::{RemoteErrorKind, StartMethod};
use serde::{Deserialize, Serialize};

mod more;
pub use more::*;

pub const KEY: &[u8] = b"manager test key";

/// Hands every case's name to `$run!` (which makes one test of each).
#[macro_export]
macro_rules! cases {
    ($run:ident) => {
        $run! {
            list_and_dict_shared_by_children,
            list_methods,
            dict_methods,
            namespace_value_array_across_processes,
            queue_between_processes,
            joinable_queue_join_waits_for_task_done,
            lock_serializes_children_and_blocks_nobody_else,
            rlock_is_owned_by_one_process,
            semaphores,
            event_and_condition_wake_other_processes,
            barrier_across_processes,
            custom_registered_type,
            connect_by_address_and_rebuild_from_token,
            proxies_travel_through_a_connection,
            tcp_loopback,
            wrong_authkey_is_rejected_and_the_server_goes_on,
            socket_is_private,
            an_explicit_socket_path_is_private_whatever_the_umask,
            objects_are_freed_when_the_last_proxy_goes,
            killed_client_releases_its_references_and_others_go_on,
            killed_server_fails_calls_promptly,
            connecting_to_a_dead_server_fails_at_once_despite_a_cached_session,
            garbage_frames_close_only_that_client,
            sixteen_clients_hammer_shared_objects,
            threads_of_one_process_share_a_manager,
            a_stale_socket_file_is_replaced,
            messages_longer_than_the_mailbox_go_over_the_socket,
            the_server_stops_when_the_process_that_started_it_dies,
            timeouts_too_long_to_represent_wait_without_limit,
            built_in_objects_take_no_method_names,
            list_sort_forms,
            list_sort_is_atomic_for_other_processes,
            list_sort_moves_stored_proxies_with_their_references,
            list_iteration_is_lazy_and_follows_python,
            dict_iterators_walk_a_server_cursor,
            server_initializer_runs_in_the_server_before_it_serves,
        }
    };
}

/// A builder with the tests' key whose server starts with `method`.
pub fn builder(method: StartMethod) -> ManagerBuilder {
    manager_with_method(Manager::builder().authkey(KEY), method)
}

pub fn start(method: StartMethod) -> Manager {
    builder(method).start().expect("start a manager")
}

pub fn is_kind(e: &ProxyError, kind: RemoteErrorKind) -> bool {
    matches!(e, ProxyError::Remote { kind: k, .. } if *k == kind)
}

pub fn list_and_dict_shared_by_children(method: StartMethod) {
    let m = start(method);
    let list: ListProxy<u64> = m.list().unwrap();
    let dict: DictProxy<String, u64> = m.dict().unwrap();
    let mut kids: Vec<_> = (0..4u64)
        .map(|i| {
            let (list, dict) = (list.clone(), dict.clone());
            spawn(move || {
                for k in 0..50 {
                    list.push(&(i * 1000 + k)).unwrap();
                }
                dict.insert(&format!("child{i}"), &i).unwrap();
            })
        })
        .collect();
    for k in &mut kids {
        join_ok(k);
    }
    let mut all = list.to_vec().unwrap();
    assert_eq!(all.len(), 200);
    all.sort();
    let mut want: Vec<u64> = (0..4)
        .flat_map(|i| (0..50).map(move |k| i * 1000 + k))
        .collect();
    want.sort();
    assert_eq!(all, want);
    assert_eq!(dict.len().unwrap(), 4);
    for i in 0..4u64 {
        assert_eq!(dict.get(&format!("child{i}")).unwrap(), Some(i));
    }
    m.shutdown().unwrap();
}

pub fn list_methods(method: StartMethod) {
    let m = start(method);
    let l = m
        .list_from(&["a".to_string(), "b".into(), "c".into()])
        .unwrap();
    assert_eq!(l.len().unwrap(), 3);
    l.append(&"d".into()).unwrap();
    l.extend(&["e".to_string(), "f".into()]).unwrap();
    assert_eq!(l.get(4).unwrap(), "e");
    l.set(0, &"A".into()).unwrap();
    l.insert(1, &"x".into()).unwrap();
    assert_eq!(l.slice(0..3).unwrap(), ["A", "x", "b"]);
    assert_eq!(l.slice(5..).unwrap(), ["e", "f"]);
    assert_eq!(l.index(&"b".into()).unwrap(), 2);
    assert!(l.contains(&"x".into()).unwrap());
    l.remove(&"x".into()).unwrap();
    assert!(!l.contains(&"x".into()).unwrap());
    assert_eq!(l.pop().unwrap(), "f");
    assert_eq!(l.pop_at(0).unwrap(), "A");
    assert_eq!(l.to_vec().unwrap(), ["b", "c", "d", "e"]);
    assert_eq!(l.count(&"c".into()).unwrap(), 1);
    // Python's IndexError and ValueError arrive with their kinds.
    let e = l.get(10).unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::Index), "{e}");
    let e = l.remove(&"zz".into()).unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::Value), "{e}");
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
    let e = l.pop().unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::Index), "{e}");
}

pub fn dict_methods(method: StartMethod) {
    let m = start(method);
    let d: DictProxy<u32, String> = m.dict().unwrap();
    assert_eq!(d.insert(&1, &"one".into()).unwrap(), None);
    assert_eq!(d.insert(&1, &"uno".into()).unwrap(), Some("one".into()));
    d.update([(&2, &"two".to_string()), (&3, &"three".to_string())])
        .unwrap();
    assert_eq!(d.keys().unwrap(), [1, 2, 3]);
    assert_eq!(d.values().unwrap(), ["uno", "two", "three"]);
    assert_eq!(d.setdefault(&2, &"deux".into()).unwrap(), "two");
    assert_eq!(d.setdefault(&4, &"four".into()).unwrap(), "four");
    assert!(d.contains_key(&4).unwrap());
    assert_eq!(d.remove(&2).unwrap(), Some("two".into()));
    assert_eq!(d.remove(&2).unwrap(), None);
    assert_eq!(
        d.items().unwrap(),
        [
            (1, "uno".into()),
            (3, "three".into()),
            (4, "four".to_string())
        ]
    );
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
    assert_eq!(d.get(&1).unwrap(), None);
}

pub fn namespace_value_array_across_processes(method: StartMethod) {
    let m = start(method);
    let ns = m.namespace().unwrap();
    let v = m.value(&1.5f64).unwrap();
    let a = m.array(&[0i64; 4]).unwrap();
    ns.set("name", "parent").unwrap();
    let mut kid = {
        let (ns, v, a) = (ns.clone(), v.clone(), a.clone());
        spawn(move || {
            assert_eq!(ns.get::<String>("name").unwrap(), "parent");
            ns.set("reply", &42u32).unwrap();
            v.set(&(v.get().unwrap() * 2.0)).unwrap();
            for i in 0..4 {
                a.set(i, &(i as i64 * 10)).unwrap();
            }
        })
    };
    join_ok(&mut kid);
    assert_eq!(ns.get::<u32>("reply").unwrap(), 42);
    assert_eq!(ns.names().unwrap(), ["name", "reply"]);
    let e = ns.get::<u32>("missing").unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::Key), "{e}");
    assert!(ns.remove("name").unwrap());
    assert!(!ns.contains("name").unwrap());
    assert_eq!(v.get().unwrap(), 3.0);
    assert_eq!(v.swap(&0.5).unwrap(), 3.0);
    assert_eq!(a.to_vec().unwrap(), [0, 10, 20, 30]);
    assert_eq!(a.len().unwrap(), 4);
    let e = a.set(4, &1).unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::Index), "{e}");
}

pub fn queue_between_processes(method: StartMethod) {
    let m = start(method);
    let q = m.queue_bounded::<u32>(3).unwrap();
    let mut producer = {
        let q = q.clone();
        spawn(move || {
            for i in 0..100 {
                q.put(&i).unwrap();
            }
        })
    };
    let got: Vec<u32> = (0..100).map(|_| q.get().unwrap()).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    join_ok(&mut producer);
    assert!(matches!(q.try_get(), Err(TryGetProxyError::Empty)));
    let t = Instant::now();
    assert_eq!(or_timeout(q.get_timeout(Duration::from_millis(100))), None);
    assert!(t.elapsed() >= Duration::from_millis(90));
    for i in 0..3 {
        q.try_put(&i).unwrap();
    }
    assert!(q.is_full().unwrap());
    assert!(matches!(q.try_put(&9), Err(TryPutProxyError::Full)));
    assert!(matches!(
        q.put_timeout(&9, Duration::from_millis(50)),
        Err(PutTimeoutProxyError::Timeout)
    ));
    assert_eq!(q.qsize().unwrap(), 3);
}

/// A timed get's item, or `None` when it timed out (any other error fails
/// the test).
fn or_timeout<T>(r: Result<T, GetTimeoutProxyError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(GetTimeoutProxyError::Timeout) => None,
        Err(e) => panic!("get_timeout: {e}"),
    }
}

pub fn joinable_queue_join_waits_for_task_done(method: StartMethod) {
    let m = start(method);
    let q = m.joinable_queue::<u32>().unwrap();
    let results = m.list::<u32>().unwrap();
    for i in 0..20 {
        q.put(&i).unwrap();
    }
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            let (q, results) = (q.clone(), results.clone());
            spawn(move || {
                while let Some(i) = or_timeout(q.get_timeout(Duration::from_millis(300))) {
                    results.push(&(i * i)).unwrap();
                    q.task_done().unwrap();
                }
            })
        })
        .collect();
    q.join().unwrap();
    assert_eq!(results.len().unwrap(), 20);
    for w in &mut workers {
        join_ok(w);
    }
    let e = q.task_done().unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::Value), "{e}");
    q.join_timeout(Duration::from_millis(10)).unwrap();
}

pub fn lock_serializes_children_and_blocks_nobody_else(method: StartMethod) {
    let m = start(method);
    let lock = m.lock().unwrap();
    let counter = m.value(&0u64).unwrap();
    let mut kids: Vec<_> = (0..3)
        .map(|_| {
            let (lock, counter) = (lock.clone(), counter.clone());
            spawn(move || {
                for _ in 0..100 {
                    let g = lock.lock().unwrap();
                    let n = counter.get().unwrap();
                    counter.set(&(n + 1)).unwrap();
                    g.release().unwrap();
                }
            })
        })
        .collect();
    for k in &mut kids {
        join_ok(k);
    }
    assert_eq!(counter.get().unwrap(), 300);
    // A child holds the lock; a blocked acquire in one thread of this
    // process does not stall a call on another object from another thread.
    lock.acquire().unwrap();
    assert!(!lock.try_acquire().unwrap());
    assert!(!lock.acquire_timeout(Duration::from_millis(50)).unwrap());
    std::thread::scope(|s| {
        let l2 = lock.clone();
        let waiter = s.spawn(move || l2.acquire_timeout(Duration::from_secs(10)).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(counter.get().unwrap(), 300);
        lock.release().unwrap();
        assert!(waiter.join().unwrap());
    });
    assert!(lock.is_locked().unwrap());
    lock.release().unwrap();
    assert!(matches!(lock.release(), Err(ProxyError::NotOwner)));
}

pub fn rlock_is_owned_by_one_process(method: StartMethod) {
    let m = start(method);
    let r = m.rlock().unwrap();
    r.acquire().unwrap();
    r.acquire().unwrap();
    let mut kid = {
        let r = r.clone();
        spawn(move || {
            assert!(!r.try_acquire().unwrap());
            assert!(matches!(r.release(), Err(ProxyError::NotOwner)));
        })
    };
    join_ok(&mut kid);
    r.release().unwrap();
    r.release().unwrap();
    assert!(!r.is_locked().unwrap());
    let mut kid = {
        let r = r.clone();
        spawn(move || {
            assert!(r.try_acquire().unwrap());
            r.release().unwrap();
        })
    };
    join_ok(&mut kid);
}

pub fn semaphores(method: StartMethod) {
    let m = start(method);
    let s = m.semaphore(2).unwrap();
    assert!(s.try_acquire().unwrap());
    assert!(s.try_acquire().unwrap());
    assert!(!s.try_acquire().unwrap());
    let mut kid = {
        let s = s.clone();
        spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s.release().unwrap();
        })
    };
    assert!(s.acquire_timeout(Duration::from_secs(10)).unwrap());
    join_ok(&mut kid);
    s.release_n(5).unwrap();
    assert_eq!(s.value().unwrap(), 5);
    let b = m.bounded_semaphore(1).unwrap();
    b.acquire().unwrap();
    b.release().unwrap();
    assert!(matches!(b.release(), Err(ProxyError::ReleasedTooManyTimes)));
}

pub fn event_and_condition_wake_other_processes(method: StartMethod) {
    let m = start(method);
    let ev = m.event().unwrap();
    let cond = m.condition().unwrap();
    let state = m.value(&0u32).unwrap();
    let mut kid = {
        let (ev, cond, state) = (ev.clone(), cond.clone(), state.clone());
        spawn(move || {
            ev.wait().unwrap();
            let g = cond.lock().unwrap();
            state.set(&1).unwrap();
            cond.notify_all().unwrap();
            drop(g);
        })
    };
    assert!(!ev.wait_timeout(Duration::from_millis(20)).unwrap());
    cond.acquire().unwrap();
    ev.set().unwrap();
    assert!(ev.is_set().unwrap());
    let ok = cond
        .wait_for(|| state.get().unwrap() == 1, Some(Duration::from_secs(10)))
        .unwrap();
    assert!(ok);
    cond.release().unwrap();
    join_ok(&mut kid);
    cond.acquire().unwrap();
    assert!(!cond.wait_timeout(Duration::from_millis(30)).unwrap());
    cond.release().unwrap();
    assert!(matches!(cond.notify(1), Err(ProxyError::NotOwner)));
    ev.clear().unwrap();
    assert!(!ev.is_set().unwrap());
}

pub fn barrier_across_processes(method: StartMethod) {
    let m = start(method);
    let b = m.barrier(3).unwrap();
    let indices = m.list::<u32>().unwrap();
    let mut kids: Vec<_> = (0..2)
        .map(|_| {
            let (b, indices) = (b.clone(), indices.clone());
            spawn(move || {
                indices.push(&b.wait().unwrap()).unwrap();
            })
        })
        .collect();
    indices.push(&b.wait().unwrap()).unwrap();
    for k in &mut kids {
        join_ok(k);
    }
    let mut got = indices.to_vec().unwrap();
    got.sort();
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(b.parties().unwrap(), 3);
    // A timeout breaks it; reset mends it.
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(30)),
        Err(ProxyError::BrokenBarrier)
    ));
    assert!(b.is_broken().unwrap());
    b.reset().unwrap();
    assert!(!b.is_broken().unwrap());
    b.abort().unwrap();
    assert!(matches!(b.wait(), Err(ProxyError::BrokenBarrier)));
}

#[derive(Serialize, Deserialize, Debug)]
struct Account {
    owner: String,
    cents: i64,
}

impl Account {
    fn deposit(&mut self, cents: i64) -> i64 {
        self.cents += cents;
        self.cents
    }
    fn balance(&self) -> i64 {
        self.cents
    }
    fn rename(&mut self, owner: String, suffix: Option<String>) {
        self.owner = owner + suffix.as_deref().unwrap_or("");
    }
    fn owner(&self) -> String {
        self.owner.clone()
    }
    // Not listed below: not callable remotely.
    #[allow(dead_code)]
    fn secret(&self) -> i64 {
        -1
    }
}

multiproc::manager_type! {
    /// An account in a manager.
    pub proxy AccountProxy for Account as "Account" {
        fn deposit(&mut self, cents: i64) -> i64;
        fn balance(&self) -> i64;
        fn rename(&mut self, owner: String, suffix: Option<String>);
        fn owner(&self) -> String;
    }
}

pub fn custom_registered_type(method: StartMethod) {
    let m = builder(method).register::<Account>().start().unwrap();
    let acct: AccountProxy = m
        .create(&Account {
            owner: "ann".into(),
            cents: 100,
        })
        .unwrap();
    let mut kids: Vec<_> = (0..3)
        .map(|_| {
            let acct = acct.clone();
            spawn(move || {
                for _ in 0..10 {
                    acct.deposit(5).unwrap();
                }
            })
        })
        .collect();
    for k in &mut kids {
        join_ok(k);
    }
    assert_eq!(acct.balance().unwrap(), 250);
    acct.rename("bob".into(), Some("!".into())).unwrap();
    assert_eq!(acct.owner().unwrap(), "bob!");
    // Only listed methods can be called.
    let e = acct.proxy().call::<_, i64>("secret", &()).unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::UnknownMethod), "{e}");
    // Wrong argument types are an error reply, not a crash.
    let e = acct
        .proxy()
        .call::<_, i64>("deposit", &"not a number")
        .unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::BadArguments), "{e}");
    assert_eq!(acct.balance().unwrap(), 250);
    // An unregistered type cannot be made.
    let plain = start(method);
    let e = plain
        .create(&Account {
            owner: "x".into(),
            cents: 0,
        })
        .unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::UnknownType), "{e}");
}

pub fn connect_by_address_and_rebuild_from_token(method: StartMethod) {
    let m = start(method);
    let list = m.list::<u32>().unwrap();
    list.push(&7).unwrap();
    let token = list.proxy().token().clone();
    let address = m.address().clone();
    let mut kid = spawn(move || {
        let other = Manager::connect(&address, KEY).unwrap();
        let l: ListProxy<u32> = Proxy::from_token(token, Some(KEY)).downcast().unwrap();
        l.push(&8).unwrap();
        let d = other.dict::<u8, u8>().unwrap();
        d.insert(&1, &2).unwrap();
    });
    join_ok(&mut kid);
    assert_eq!(list.to_vec().unwrap(), [7, 8]);
    // A proxy of the wrong type is refused.
    let wrong: Token = Token {
        typeid: "dict".into(),
        ..list.proxy().token().clone()
    };
    let e = Proxy::from_token(wrong, Some(KEY))
        .call::<_, u64>("len", &())
        .unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::BadArguments), "{e}");
}

pub fn proxies_travel_through_a_connection(method: StartMethod) {
    // The receiving process connects with its own authkey, so the
    // manager uses this process's key (which children inherit).
    // SAFETY: as in `builder`.
    let m2 = manager_with_method(Manager::builder(), method)
        .start()
        .unwrap();
    let list2 = m2.list::<String>().unwrap();
    let (a, b) = multiproc::pipe(true).unwrap();
    let mut kid = spawn(move || {
        let l: ListProxy<String> = b.recv().unwrap();
        l.push(&"from the child".into()).unwrap();
        b.send(&true).unwrap();
    });
    a.send(&list2).unwrap();
    assert!(a.recv::<bool>().unwrap());
    join_ok(&mut kid);
    assert_eq!(list2.to_vec().unwrap(), ["from the child"]);
}

pub fn tcp_loopback(method: StartMethod) {
    let m = builder(method)
        .address(Address::parse("tcp:127.0.0.1:0").map(pick_port).unwrap())
        .start()
        .unwrap();
    let address = m.address().clone();
    assert!(matches!(address, Address::Tcp(_)));
    let d = m.dict::<String, String>().unwrap();
    let token = d.proxy().token().clone();
    let mut kid = spawn(move || {
        let d: DictProxy<String, String> = Proxy::from_token(token, Some(KEY)).downcast().unwrap();
        d.insert(&"k".into(), &"over tcp".into()).unwrap();
    });
    join_ok(&mut kid);
    assert_eq!(d.get(&"k".into()).unwrap().as_deref(), Some("over tcp"));
}

/// A free TCP port on loopback (port 0 cannot be used: the server binds in
/// its own process and the parent must know where to connect).
fn pick_port(a: Address) -> Address {
    let Address::Tcp(sa) = a else { unreachable!() };
    let l = std::net::TcpListener::bind(sa).unwrap();
    Address::Tcp(l.local_addr().unwrap())
}

pub fn wrong_authkey_is_rejected_and_the_server_goes_on(method: StartMethod) {
    let m = start(method);
    let list = m.list::<u8>().unwrap();
    let e = Manager::connect(m.address(), b"not the key").unwrap_err();
    assert!(matches!(e, ConnectError::AuthenticationFailed(_)), "{e}");
    // A plain Client with the right key but an MD5-only view is refused
    // too: the manager wants HMAC-SHA256 both ways. Our Client prefers
    // SHA-256, so it gets in and can talk the framing.
    let c = Client::connect(m.address(), Some(KEY)).unwrap();
    drop(c);
    list.push(&1).unwrap();
    assert_eq!(list.len().unwrap(), 1);
}

pub fn socket_is_private(method: StartMethod) {
    use std::os::unix::fs::PermissionsExt;
    let m = start(method);
    let Address::Unix(path) = m.address().clone() else {
        panic!("default address is a Unix path")
    };
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir = path.parent().unwrap().to_path_buf();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    m.shutdown().unwrap();
    assert!(
        !dir.exists(),
        "the private directory is removed on shutdown"
    );
}

pub fn an_explicit_socket_path_is_private_whatever_the_umask(method: StartMethod) {
    let dir = std::env::temp_dir().join(format!("mp-mgr-umask-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let mut p = spawn({
        let path = path.clone();
        move || -> Result<(), String> {
            use std::os::unix::fs::PermissionsExt;
            // SAFETY: umask only sets the process's file mode mask (in
            // this child and the server it forks).
            unsafe { libc::umask(0) };
            let m = builder(method)
                .address(Address::Unix(path.clone()))
                .start()
                .map_err(|e| e.to_string())?;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            m.shutdown().map_err(|e| e.to_string())?;
            match mode {
                0o600 => Ok(()),
                m => Err(format!("socket file mode {m:o} under umask 000")),
            }
        }
    });
    join_ok(&mut p);
    let _ = std::fs::remove_dir_all(&dir);
}

pub fn objects_are_freed_when_the_last_proxy_goes(method: StartMethod) {
    let m = start(method);
    assert_eq!(m.object_count().unwrap(), 0);
    let l = m.list::<u8>().unwrap();
    let l2 = l.clone();
    let d = m.dict::<u8, u8>().unwrap();
    assert_eq!(m.object_count().unwrap(), 2);
    drop(l);
    assert_eq!(m.object_count().unwrap(), 2);
    drop(l2);
    drop(d);
    assert_eq!(m.object_count().unwrap(), 0);
    // A child's reference keeps an object alive after the parent's goes.
    let l = m.list::<u8>().unwrap();
    let (tx, rx) = multiproc::pipe(true).unwrap();
    let mut kid = {
        let l = l.clone();
        spawn(move || {
            l.push(&1).unwrap(); // takes the child's own reference
            tx.send(&()).unwrap();
            tx.recv::<()>().unwrap();
            l.push(&2).unwrap();
            tx.send(&l.len().unwrap()).unwrap();
        })
    };
    rx.recv::<()>().unwrap();
    assert_eq!(m.object_count().unwrap(), 1);
    rx.send(&()).unwrap();
    assert_eq!(rx.recv::<usize>().unwrap(), 2);
    join_ok(&mut kid);
    drop(l);
    // The child's references went with it (once the server noticed that
    // its connection closed).
    wait_for(|| m.object_count().unwrap() == 0);
}

/// Polls `f` for up to a few seconds.
fn wait_for(mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "condition never held"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn killed_client_releases_its_references_and_others_go_on(method: StartMethod) {
    let m = start(method);
    let lock = m.lock().unwrap();
    let rlock = m.rlock().unwrap();
    let list = m.list::<u32>().unwrap();
    let (tx, rx) = multiproc::pipe(true).unwrap();
    let address = m.address().clone();
    let mut kid = {
        let (lock, rlock) = (lock.clone(), rlock.clone());
        spawn(move || {
            let other = Manager::connect(&address, KEY).unwrap();
            let mine = other.list::<u32>().unwrap();
            mine.push(&1).unwrap();
            let q = other.queue::<u32>().unwrap();
            // Locks held when it dies are freed for the others.
            lock.acquire().unwrap();
            rlock.acquire().unwrap();
            rlock.acquire().unwrap();
            tx.send(&()).unwrap();
            // Killed while blocked in a call.
            let _ = q.get();
        })
    };
    rx.recv::<()>().unwrap();
    assert_eq!(m.object_count().unwrap(), 5);
    assert!(!lock.try_acquire().unwrap());
    assert!(!rlock.try_acquire().unwrap());
    std::thread::sleep(Duration::from_millis(20));
    kid.kill().unwrap();
    kid.join().unwrap();
    wait_for(|| m.object_count().unwrap() == 3);
    list.push(&5).unwrap();
    assert!(lock.acquire_timeout(Duration::from_secs(10)).unwrap());
    assert!(rlock.acquire_timeout(Duration::from_secs(10)).unwrap());
    assert_eq!(list.to_vec().unwrap(), [5]);
}

pub fn killed_server_fails_calls_promptly(method: StartMethod) {
    let mut m = start(method);
    let list = m.list::<u32>().unwrap();
    let q = m.queue::<u32>().unwrap();
    let pid = m.server_pid().unwrap();
    std::thread::scope(|s| {
        // A call pending when the server dies...
        let pending = s.spawn(|| {
            let t = Instant::now();
            let r = q.get();
            (r, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let (r, _) = pending.join().unwrap();
        assert!(matches!(r, Err(ProxyError::ServerGone(_))), "{r:?}");
    });
    // ... and every later one.
    let t = Instant::now();
    for _ in 0..3 {
        let e = list.push(&1).unwrap_err();
        assert!(matches!(e, ProxyError::ServerGone(_)), "{e}");
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    let _ = &mut m;
    drop(m);
}

pub fn connecting_to_a_dead_server_fails_at_once_despite_a_cached_session(method: StartMethod) {
    let mut m = start(method);
    let list = m.list::<u32>().unwrap();
    list.push(&1).unwrap();
    let address = m.address().clone();
    // This process has a live session with the server; the server dies.
    let pid = m.server_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Until it has exited whole (a zombie leader may still have threads
    // whose descriptors are open), without reaping it: the manager does.
    nix::sys::wait::waitid(
        nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(pid)),
        nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
    )
    .unwrap();
    let t = Instant::now();
    match Manager::connect(&address, KEY) {
        Err(ConnectError::ServerGone(_)) => {}
        Err(e) => panic!("expected ServerGone, got {e}"),
        Ok(_) => panic!("connected to a dead server"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(list);
    let _ = &mut m;
    drop(m);
}

pub fn garbage_frames_close_only_that_client(method: StartMethod) {
    let m = start(method);
    let list = m.list::<u32>().unwrap();
    list.push(&1).unwrap();
    let Address::Unix(path) = m.address().clone() else {
        unreachable!()
    };
    // Authenticated connections that then send junk.
    let junk: &[&[u8]] = &[
        b"\x00\x00\x00\x05hello",        // a frame that is no request
        b"\x7f\xff\xff\xff",             // an oversized length
        b"\xff\xff\xff\xfe",             // a negative length
        b"\x00\x00\x00\x10abc",          // truncated, then closed
        b"\x00\x00\x00\x03\x00\x00\x00", // no hello first
    ];
    for bytes in junk {
        let c = Client::connect_sha256_only(m.address(), KEY, None).unwrap();
        let fd = c.into_fd().unwrap();
        let mut s = UnixStream::from(fd);
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server closes the connection (possibly after an error reply).
        let _ = s.read_to_end(&mut rest);
    }
    // Unauthenticated junk is dropped by the handshake.
    let mut raw = UnixStream::connect(&path).unwrap();
    let _ = raw.write_all(b"GET / HTTP/1.0\r\n\r\n");
    drop(raw);
    // Unknown objects and methods are error replies.
    let bogus = Proxy::from_token(
        Token {
            id: 999_999,
            ..list.proxy().token().clone()
        },
        Some(KEY),
    );
    let e = bogus.call::<_, u64>("len", &()).unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::UnknownObject), "{e}");
    let e = list
        .proxy()
        .call::<_, u64>("no_such_method", &())
        .unwrap_err();
    assert!(is_kind(&e, RemoteErrorKind::UnknownMethod), "{e}");
    list.push(&2).unwrap();
    assert_eq!(list.to_vec().unwrap(), [1, 2]);
}

pub fn sixteen_clients_hammer_shared_objects(method: StartMethod) {
    let m = start(method);
    let list = m.list::<u32>().unwrap();
    let counter = m.dict::<String, u64>().unwrap();
    let lock = m.lock().unwrap();
    counter.insert(&"n".into(), &0).unwrap();
    let mut kids: Vec<_> = (0..16u32)
        .map(|i| {
            let (list, counter, lock) = (list.clone(), counter.clone(), lock.clone());
            spawn(move || {
                for k in 0..50 {
                    list.push(&(i * 100 + k)).unwrap();
                    let g = lock.lock().unwrap();
                    let n = counter.get(&"n".into()).unwrap().unwrap();
                    counter.insert(&"n".into(), &(n + 1)).unwrap();
                    drop(g);
                }
            })
        })
        .collect();
    for k in &mut kids {
        join_ok(k);
    }
    assert_eq!(list.len().unwrap(), 800);
    assert_eq!(counter.get(&"n".into()).unwrap(), Some(800));
}

pub fn threads_of_one_process_share_a_manager(method: StartMethod) {
    let m = start(method);
    let q = m.queue::<u32>().unwrap();
    let out = m.list::<u32>().unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while let Some(v) = or_timeout(q.get_timeout(Duration::from_millis(200))) {
                    out.push(&v).unwrap();
                }
            });
        }
        for i in 0..200 {
            q.put(&i).unwrap();
        }
    });
    let mut got = out.to_vec().unwrap();
    got.sort();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
}

pub fn a_stale_socket_file_is_replaced(method: StartMethod) {
    let dir = std::env::temp_dir().join(format!("mp-mgr-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s");
    // A socket file nobody listens on, as a killed server leaves.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let m = builder(method)
        .address(Address::Unix(path.clone()))
        .start()
        .unwrap();
    let l = m.list::<u8>().unwrap();
    l.push(&1).unwrap();
    // A second server on a live socket is refused.
    let e = builder(method)
        .address(Address::Unix(path.clone()))
        .start()
        .unwrap_err();
    assert!(matches!(e, ConnectError::ServerGone(_)), "{e}");
    m.shutdown().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

pub fn messages_longer_than_the_mailbox_go_over_the_socket(method: StartMethod) {
    let m = start(method);
    let list = m.list::<Vec<u8>>().unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut kid = {
        let (list, big) = (list.clone(), big.clone());
        spawn(move || {
            list.push(&big).unwrap();
            list.push(&vec![1, 2, 3]).unwrap();
            assert_eq!(list.get(0).unwrap(), big);
        })
    };
    join_ok(&mut kid);
    // Long request, long reply, then short ones again on the same
    // connection: the two paths stay in step.
    list.push(&big).unwrap();
    assert_eq!(list.len().unwrap(), 3);
    let all = list.to_vec().unwrap();
    assert_eq!(all, [big.clone(), vec![1, 2, 3], big]);
    assert_eq!(list.get(1).unwrap(), [1, 2, 3]);
}

pub fn the_server_stops_when_the_process_that_started_it_dies(method: StartMethod) {
    let (tx, rx) = multiproc::pipe(true).unwrap();
    let mut kid = spawn(move || {
        // A single-threaded child: the server is forked from it.
        let m = Manager::builder()
            .authkey(KEY)
            .start_method(method)
            .start()
            .unwrap();
        let Address::Unix(path) = m.address().clone() else {
            unreachable!()
        };
        tx.send(&(m.server_pid().unwrap(), path)).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        drop(m);
    });
    let (pid, path): (i32, std::path::PathBuf) = rx.recv().unwrap();
    assert!(path.exists());
    kid.kill().unwrap();
    kid.join().unwrap();
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true)
    };
    wait_for(gone);
    // It cleaned up its socket and the private directory.
    wait_for(|| !path.exists() && !path.parent().unwrap().exists());
}

pub fn timeouts_too_long_to_represent_wait_without_limit(method: StartMethod) {
    let m = start(method);
    let lock = m.lock().unwrap();
    assert!(lock.acquire_timeout(Duration::MAX).unwrap());
    let q = m.queue::<u8>().unwrap();
    q.put(&1).unwrap();
    assert_eq!(q.get_timeout(Duration::MAX).unwrap(), 1);
    let sem = m.semaphore(1).unwrap();
    assert!(sem.acquire_timeout(Duration::MAX).unwrap());
    let e = m.event().unwrap();
    e.set().unwrap();
    assert!(e.wait_timeout(Duration::MAX).unwrap());
    // The server is still there.
    lock.release().unwrap();
    assert!(!lock.is_locked().unwrap());
}

pub fn built_in_objects_take_no_method_names(method: StartMethod) {
    let m = start(method);
    let list = m.list::<u32>().unwrap();
    list.push(&1).unwrap();
    // A built-in object answers typed operations only: a method name (what
    // the server dispatched on before) is refused, and the object and the
    // connection go on.
    for name in ["len", "append", "to_vec"] {
        let e = list.proxy().call::<_, u64>(name, &()).unwrap_err();
        assert!(is_kind(&e, RemoteErrorKind::UnknownMethod), "{name}: {e}");
    }
    let lock = m.lock().unwrap();
    let e = lock
        .proxy()
        .call::<_, bool>("acquire", &(true, None::<u64>));
    assert!(is_kind(&e.unwrap_err(), RemoteErrorKind::UnknownMethod));
    assert!(!lock.is_locked().unwrap());
    assert_eq!(list.to_vec().unwrap(), [1]);
}
