//! Manager proxy calls as futures (features `tokio` and `manager`) against
//! a real manager server process: every proxy method through
//! `aio::proxy_call`, `Proxy::call_async`, many calls at once without a
//! thread each, a call dropped mid-way that leaves no stale reply for the
//! next, references counted once across the replays, and a killed server.
//! Every wait is bounded, so a lost wake-up fails instead of hanging.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

mod common;

use std::time::{Duration, Instant};

use common::aio::{bounded, rt};
use common::{join_ok, manager_builder, serial, spawn};
use multiproc::RemoteErrorKind;
use multiproc::aio::proxy_call;
use multiproc::manager::ProxyError;
use multiproc::manager::TypedProxy;
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

const KEY: &[u8] = b"aio manager tests";

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[derive(Serialize, Deserialize, Debug)]
struct Account {
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
}

multiproc::manager_type! {
    /// An account in a manager.
    pub proxy AccountProxy for Account as "Account" {
        fn deposit(&mut self, cents: i64) -> i64;
        fn balance(&self) -> i64;
    }
}

#[test]
fn proxy_methods_are_awaited_with_their_answers_and_errors() {
    let _s = serial();
    let m = manager_builder(KEY).register::<Account>().start().unwrap();
    let list = m.list_from(&[1u32, 2, 3]).unwrap();
    let dict = m.dict::<String, u32>().unwrap();
    let value = m.value(&5u64).unwrap();
    let acct: AccountProxy = m.create(&Account { cents: 100 }).unwrap();
    rt().block_on(async {
        bounded(proxy_call(|| list.push(&4))).await.unwrap();
        assert_eq!(bounded(proxy_call(|| list.get(3))).await.unwrap(), 4);
        assert_eq!(bounded(proxy_call(|| list.len())).await.unwrap(), 4);
        // A remote error comes back as itself.
        let e = bounded(proxy_call(|| list.get(99))).await.unwrap_err();
        assert!(
            matches!(
                e,
                ProxyError::Remote {
                    kind: RemoteErrorKind::Index,
                    ..
                }
            ),
            "{e}"
        );
        bounded(proxy_call(|| dict.insert(&"a".into(), &7)))
            .await
            .unwrap();
        assert_eq!(
            bounded(proxy_call(|| dict.get(&"a".into()))).await.unwrap(),
            Some(7)
        );
        bounded(proxy_call(|| value.set(&6))).await.unwrap();
        assert_eq!(bounded(proxy_call(|| value.get())).await.unwrap(), 6);
        // A registered type: its typed method, and `call_async`.
        assert_eq!(bounded(proxy_call(|| acct.deposit(5))).await.unwrap(), 105);
        let b: i64 = bounded(acct.proxy().call_async("balance", &()))
            .await
            .unwrap();
        assert_eq!(b, 105);
        // Several calls in one closure: each sent once.
        let (a, b) = bounded(proxy_call(|| -> multiproc::Result<_> {
            let a = acct.deposit(1)?;
            let b = acct.deposit(1)?;
            Ok((a, b))
        }))
        .await
        .unwrap();
        assert_eq!((a, b), (106, 107));
    });
    // The blocking calls see the same state.
    assert_eq!(list.len().unwrap(), 4);
    assert_eq!(acct.balance().unwrap(), 107);
}

#[test]
fn objects_made_in_an_async_call_are_counted_once() {
    let _s = serial();
    let m = manager_builder(KEY).start().unwrap();
    assert_eq!(m.object_count().unwrap(), 0);
    let l = rt().block_on(async {
        bounded(proxy_call(|| -> multiproc::Result<_> {
            // Made, then used: the runs before the last make the proxy
            // again and let it go; only the last run's counts.
            let l = m.list_from(&[1u8, 2])?;
            l.push(&3)?;
            Ok(l)
        }))
        .await
        .unwrap()
    });
    assert_eq!(l.len().unwrap(), 3);
    assert_eq!(m.object_count().unwrap(), 1);
    drop(l);
    assert_eq!(m.object_count().unwrap(), 0);
}

#[test]
fn a_closure_whose_calls_drift_between_runs_is_refused() {
    let _s = serial();
    let m = manager_builder(KEY).start().unwrap();
    let value = m.value(&0u32).unwrap();
    rt().block_on(async {
        // Each run sets another value: the second run's call is not the
        // first's, so the replay cannot stand for it.
        let mut n = 0u32;
        let r = bounded(proxy_call(|| {
            n += 1;
            value.set(&n)
        }))
        .await;
        assert!(matches!(r, Err(ProxyError::InvalidArgument(_))), "{r:?}");
    });
    // Only the first run's call was sent.
    assert_eq!(value.get().unwrap(), 1);
}

#[test]
fn many_calls_at_once_take_no_thread_each() {
    let _s = serial();
    let m = manager_builder(KEY).start().unwrap();
    let ev = m.event().unwrap();
    let before = threads();
    let rt = rt();
    let local = tokio::task::LocalSet::new();
    let n = local.block_on(&rt, async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let ev = ev.clone();
            tasks.spawn_local(async move { bounded(proxy_call(|| ev.wait())).await });
        }
        // Every call is out, waiting on the server: no thread was started
        // for any of them.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(threads(), before, "threads started for the calls");
        // Another process sets the event.
        let mut kid = {
            let ev = ev.clone();
            spawn(move || ev.set().unwrap())
        };
        let mut n = 0;
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
            n += 1;
        }
        join_ok(&mut kid);
        n
    });
    assert_eq!(n, 50);
}

#[test]
fn a_call_dropped_mid_way_leaves_no_stale_reply_for_the_next() {
    let _s = serial();
    let m = manager_builder(KEY).start().unwrap();
    let ev = m.event().unwrap();
    let value = m.value(&1u32).unwrap();
    rt().block_on(async {
        for round in 0..3u32 {
            // Out on the server, waiting: dropped by the timeout.
            ev.clear().unwrap();
            assert!(
                timeout(Duration::from_millis(50), proxy_call(|| ev.wait()))
                    .await
                    .is_err()
            );
            // The dropped call's reply comes now (the event is set); no
            // call after it may read it as its own.
            ev.set().unwrap();
            for i in 0..5 {
                let want = round * 10 + i;
                bounded(proxy_call(|| value.set(&want))).await.unwrap();
                assert_eq!(bounded(proxy_call(|| value.get())).await.unwrap(), want);
                assert_eq!(value.get().unwrap(), want);
            }
        }
        // The session kept its references: the objects are all there.
        assert!(bounded(proxy_call(|| ev.is_set())).await.unwrap());
    });
}

#[test]
fn an_async_call_to_a_killed_server_fails_promptly() {
    let _s = serial();
    let m = manager_builder(KEY).start().unwrap();
    let q = m.queue::<u32>().unwrap();
    let list = m.list::<u32>().unwrap();
    let pid = m.server_pid().unwrap();
    let rt = rt();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        // A call out when the server dies ends with ServerGone.
        let pending = tokio::task::spawn_local(async move {
            let t = Instant::now();
            (proxy_call(|| q.get()).await, t.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let (r, _) = bounded(pending).await.unwrap();
        assert!(matches!(r, Err(ProxyError::ServerGone(_))), "{r:?}");
        // A new call fails at once too.
        let t = Instant::now();
        let r = bounded(proxy_call(|| list.len())).await;
        assert!(matches!(r, Err(ProxyError::ServerGone(_))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    });
}
