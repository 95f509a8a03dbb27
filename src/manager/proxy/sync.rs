//! Proxies of the synchronization objects. The lock, reentrant lock,
//! semaphore and a condition's lock are one generic blocking object in the
//! server; their proxies share its operations ([`Blocker`]): only thin
//! per-type wrappers are generated.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Result;
use super::{Proxy, TypedProxy};
use crate::manager::objects::{BarrierOp, BlockingOp, ConditionOp, EventOp};

/// How an object takes the blocking operations.
#[derive(Clone, Copy)]
enum Via {
    /// As its own operations (a lock, reentrant lock or semaphore).
    Direct,
    /// Inside its condition's operations ([`ConditionOp::Lock`]).
    Condition,
}

/// The generic blocking object's operations, seen from a proxy.
#[derive(Clone, Copy)]
struct Blocker<'a> {
    proxy: &'a Proxy,
    via: Via,
}

impl Blocker<'_> {
    fn run<R: DeserializeOwned>(self, op: BlockingOp) -> Result<R> {
        match self.via {
            Via::Direct => self.proxy.op(&op),
            Via::Condition => self.proxy.op(&ConditionOp::Lock(op)),
        }
    }

    fn acquire(self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.run(BlockingOp::Acquire { block, timeout })
    }

    fn release(self, n: u64) -> Result<()> {
        self.run(BlockingOp::Release(n))
    }

    fn available(self) -> Result<u64> {
        self.run(BlockingOp::Available)
    }
}

/// Releases a manager lock when dropped (errors on that release are
/// ignored: call [`release`](ProxyGuard::release) to see them).
#[must_use = "the lock is released when the guard is dropped"]
pub struct ProxyGuard<'a> {
    lock: Blocker<'a>,
    released: bool,
}

impl ProxyGuard<'_> {
    /// Releases the lock now, reporting a failure.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.lock.release(1)
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.lock.release(1);
        }
    }
}

impl fmt::Debug for ProxyGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProxyGuard { .. }")
    }
}

/// The acquiring methods of a blocking object's proxy.
macro_rules! acquire_methods {
    ($name:ident, $via:expr) => {
        impl $name {
            fn blocker(&self) -> Blocker<'_> {
                Blocker {
                    proxy: &self.proxy,
                    via: $via,
                }
            }

            /// Acquires, waiting as long as it takes (the wait runs in the
            /// server and holds up no other caller).
            pub fn acquire(&self) -> Result<()> {
                self.blocker().acquire(true, None).map(drop)
            }

            /// Acquires if free now; whether it did.
            pub fn try_acquire(&self) -> Result<bool> {
                self.blocker().acquire(false, None)
            }

            /// Acquires, waiting at most `timeout`; whether it did.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                self.blocker().acquire(true, Some(timeout))
            }
        }
    };
}

/// The releasing methods of a lock's proxy.
macro_rules! lock_methods {
    ($name:ident, $via:expr) => {
        acquire_methods!($name, $via);

        impl $name {
            /// Releases ([`ProxyError::NotOwner`](crate::manager::ProxyError::NotOwner) if not
            /// held, or, for a reentrant lock, held by another thread or
            /// process).
            pub fn release(&self) -> Result<()> {
                self.blocker().release(1)
            }

            /// Acquires and returns a guard that releases on drop.
            pub fn lock(&self) -> Result<ProxyGuard<'_>> {
                self.acquire()?;
                Ok(ProxyGuard {
                    lock: self.blocker(),
                    released: false,
                })
            }
        }
    };
}

typed_proxy!(
    /// A lock held by a manager (Python's `manager.Lock()`): any process
    /// may release it; the server releases it if the process that acquired
    /// it ends (exits, dies or drops its connection) while holding it.
    LockProxy, "lock"
);
lock_methods!(LockProxy, Via::Direct);

impl LockProxy {
    /// Whether someone holds it.
    pub fn is_locked(&self) -> Result<bool> {
        Ok(self.blocker().available()? == 0)
    }
}

typed_proxy!(
    /// A reentrant lock held by a manager (Python's `manager.RLock()`):
    /// owned by the calling thread of the calling process.
    RLockProxy, "rlock"
);
lock_methods!(RLockProxy, Via::Direct);

impl RLockProxy {
    /// Whether someone holds it.
    pub fn is_locked(&self) -> Result<bool> {
        Ok(self.blocker().available()? == 0)
    }
}

typed_proxy!(
    /// A condition variable held by a manager, with its own reentrant lock
    /// (Python's `manager.Condition()`).
    ConditionProxy, "condition"
);
lock_methods!(ConditionProxy, Via::Condition);

impl ConditionProxy {
    /// Releases the lock (which the caller must hold), waits for a
    /// notification, and takes the lock back.
    pub fn wait(&self) -> Result<()> {
        self.proxy.op::<_, bool>(&ConditionOp::Wait(None)).map(drop)
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; whether it was
    /// notified (the lock is held again either way).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.proxy.op(&ConditionOp::Wait(Some(timeout)))
    }

    /// Waits until `pred()` holds, for at most `timeout` (`None`: no
    /// limit); the last value of `pred()` (Python's `wait_for`).
    pub fn wait_for(
        &self,
        mut pred: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        // A timeout too long to represent is no limit.
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        loop {
            if pred() {
                return Ok(true);
            }
            match deadline {
                None => self.wait()?,
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.wait_timeout(left)?;
                }
            }
        }
    }

    /// Wakes up to `n` waiters (the caller must hold the lock).
    pub fn notify(&self, n: usize) -> Result<()> {
        self.proxy.op_unit(&ConditionOp::Notify(n as u64))
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) -> Result<()> {
        self.notify(1)
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.proxy.op_unit(&ConditionOp::NotifyAll)
    }
}

typed_proxy!(
    /// A semaphore held by a manager (Python's `manager.Semaphore(n)`, and
    /// `manager.BoundedSemaphore(n)`, which refuses to go over `n`).
    SemaphoreProxy, "semaphore"
);
acquire_methods!(SemaphoreProxy, Via::Direct);

impl SemaphoreProxy {
    /// Gives one unit back
    /// ([`ProxyError::ReleasedTooManyTimes`](crate::manager::ProxyError::ReleasedTooManyTimes)
    /// past a bounded semaphore's bound).
    pub fn release(&self) -> Result<()> {
        self.release_n(1)
    }

    /// Gives `n` units back.
    pub fn release_n(&self, n: u32) -> Result<()> {
        self.blocker().release(n as u64)
    }

    /// The units available now.
    pub fn value(&self) -> Result<u64> {
        self.blocker().available()
    }
}

/// A bounded semaphore's proxy is a semaphore proxy whose server object
/// refuses releases past the bound.
pub type BoundedSemaphoreProxy = SemaphoreProxy;

typed_proxy!(
    /// An event held by a manager (Python's `manager.Event()`).
    EventProxy, "event"
);

impl EventProxy {
    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<()> {
        self.proxy.op_unit(&EventOp::Set)
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.proxy.op_unit(&EventOp::Clear)
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.proxy.op(&EventOp::IsSet)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.proxy.op::<_, bool>(&EventOp::Wait(None)).map(drop)
    }

    /// Waits at most `timeout`; whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.proxy.op(&EventOp::Wait(Some(timeout)))
    }
}

typed_proxy!(
    /// A barrier held by a manager (Python's `manager.Barrier(n)`).
    BarrierProxy, "barrier"
);

impl BarrierProxy {
    /// Waits until all parties wait; this caller's arrival index
    /// (`0..parties`). [`ProxyError::BrokenBarrier`](crate::manager::ProxyError::BrokenBarrier) if the barrier is or
    /// becomes broken.
    pub fn wait(&self) -> Result<u32> {
        Ok(self.proxy.op::<_, u64>(&BarrierOp::Wait(None))? as u32)
    }

    /// Like [`wait`](Self::wait), for at most `timeout`; a timeout breaks
    /// the barrier for everyone (as in Python).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        Ok(self.proxy.op::<_, u64>(&BarrierOp::Wait(Some(timeout)))? as u32)
    }

    /// Breaks the barrier: current and later waiters fail.
    pub fn abort(&self) -> Result<()> {
        self.proxy.op_unit(&BarrierOp::Abort)
    }

    /// Back to the initial state; current waiters fail.
    pub fn reset(&self) -> Result<()> {
        self.proxy.op_unit(&BarrierOp::Reset)
    }

    /// How many parties it waits for.
    pub fn parties(&self) -> Result<u32> {
        Ok(self.proxy.op::<_, u64>(&BarrierOp::Parties)? as u32)
    }

    /// How many wait now.
    pub fn n_waiting(&self) -> Result<u32> {
        Ok(self.proxy.op::<_, u64>(&BarrierOp::NWaiting)? as u32)
    }

    /// Whether it is broken.
    pub fn is_broken(&self) -> Result<bool> {
        self.proxy.op(&BarrierOp::Broken)
    }
}
