//! The futex reactor: one thread per process (one more per 127 distinct
//! words) that sleeps in `futex_waitv` on every shared word an async waiter
//! of this process waits on, and wakes those waiters' tasks when a word is
//! woken or changes, or when a waiter's slice ends. See [the module
//! documentation](super) for the design.
//!
//! The reactor never reads a registered word itself: it hands addresses to
//! the kernel only ([`futex_waitv`]), so a registration that outlives its
//! memory (a future leaked with `mem::forget`) costs at most a fault that
//! the reactor recovers from, never an access to unmapped memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sys::futex;
use crate::sys::futex_waitv::{self, WaitV, Woke};
use crate::sys::thread;

/// Words one shard waits on besides its control word.
const PER_SHARD: usize = futex_waitv::MAX - 1;
/// The longest sleep of an idle reactor (it has nothing to time out).
const IDLE: Duration = Duration::from_secs(60);
/// Without `futex_waitv`, how often the reactor wakes every waiter to look.
const POLL_FALLBACK: Duration = Duration::from_millis(2);

/// How a [`WordWait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slept {
    /// The word was woken or no longer held the value: look again.
    Woken,
    /// A whole slice passed: time for the caller's liveness checks.
    Slice,
}

const WAITING: u8 = 0;
const WOKEN: u8 = 1;
const TIMED_OUT: u8 = 2;

/// One waiting future's cell, shared with the reactor.
#[derive(Debug)]
struct Cell {
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
    until: Instant,
}

impl Cell {
    fn fire(&self, how: u8) {
        if self
            .state
            .compare_exchange(WAITING, how, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let w = lock(&self.waker).take();
            if let Some(w) = w {
                w.wake();
            }
        }
    }
}

/// The waiters of one (word, value) pair.
#[derive(Debug)]
struct Entry {
    addr: usize,
    expected: u32,
    cells: Vec<Arc<Cell>>,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Entry>,
    /// When the reactor's current sleep ends at the latest (None: not asleep).
    asleep_until: Option<Instant>,
    /// `futex_waitv` is missing: the reactor polls.
    fallback: bool,
}

/// One reactor thread and the words it waits on.
#[derive(Debug)]
struct Shard {
    /// Bumped (and woken) when the reactor must rebuild its list.
    ctl: AtomicU32,
    state: Mutex<State>,
}

/// The reactor of one process.
#[derive(Debug)]
struct Reactor {
    pid: i32,
    shards: Mutex<Vec<Arc<Shard>>>,
}

/// A poisoned lock here only means a waker panicked while the list was
/// held: the list itself is always consistent, so go on with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// This process's reactor. A fork child gets a new one (the parent's
/// threads did not survive the fork, and its locks may be held by them);
/// the old one is leaked, never touched again.
fn reactor() -> &'static Reactor {
    static CURRENT: AtomicPtr<Reactor> = AtomicPtr::new(std::ptr::null_mut());
    let pid = thread::pid();
    let cur = CURRENT.load(Ordering::Acquire);
    // SAFETY: a non-null pointer here came from `Box::leak` below and is
    // never freed.
    if let Some(r) = unsafe { cur.as_ref() }
        && r.pid == pid
    {
        return r;
    }
    let fresh: &'static mut Reactor = Box::leak(Box::new(Reactor {
        pid,
        shards: Mutex::new(Vec::new()),
    }));
    match CURRENT.compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => fresh,
        Err(now) => {
            // Another thread of this process installed one first: use it
            // (the leaked spare holds no thread and no memory to speak of).
            // SAFETY: as above.
            unsafe { &*now }
        }
    }
}

/// Registers `cell` for (`addr`, `expected`) with a shard that has the pair
/// or room for it, starting a shard if none has. Returns the shard, or
/// `None` if no reactor thread could be started.
fn register(addr: usize, expected: u32, cell: &Arc<Cell>) -> Option<Arc<Shard>> {
    let r = reactor();
    let mut shards = lock(&r.shards);
    for shard in shards.iter() {
        let mut st = lock(&shard.state);
        if let Some(e) = st
            .entries
            .iter_mut()
            .find(|e| e.addr == addr && e.expected == expected)
        {
            e.cells.push(cell.clone());
            let early = st.asleep_until.is_none_or(|t| cell.until < t);
            drop(st);
            if early {
                shard.nudge();
            }
            return Some(shard.clone());
        }
    }
    for shard in shards.iter() {
        let mut st = lock(&shard.state);
        if st.entries.len() < PER_SHARD {
            st.entries.push(Entry {
                addr,
                expected,
                cells: vec![cell.clone()],
            });
            drop(st);
            shard.nudge();
            return Some(shard.clone());
        }
    }
    let shard = Arc::new(Shard {
        ctl: AtomicU32::new(0),
        state: Mutex::new(State {
            entries: vec![Entry {
                addr,
                expected,
                cells: vec![cell.clone()],
            }],
            ..State::default()
        }),
    });
    let theirs = shard.clone();
    std::thread::Builder::new()
        .name("multiproc-aio".into())
        .spawn(move || theirs.run())
        .ok()?;
    shards.push(shard.clone());
    Some(shard)
}

impl Shard {
    /// Makes the reactor rebuild its list (a new word, an earlier slice).
    fn nudge(&self) {
        self.ctl.fetch_add(1, Ordering::AcqRel);
        futex::wake_all(&self.ctl);
    }

    fn deregister(&self, cell: &Arc<Cell>) {
        let mut st = lock(&self.state);
        if let Some(i) = st
            .entries
            .iter()
            .position(|e| e.cells.iter().any(|c| Arc::ptr_eq(c, cell)))
        {
            let e = &mut st.entries[i];
            e.cells.retain(|c| !Arc::ptr_eq(c, cell));
            if e.cells.is_empty() {
                // The reactor may still wait on the address until its next
                // rebuild: harmless (a wake-up there finds no entry).
                st.entries.swap_remove(i);
            }
        }
    }

    /// Wakes every waiter of the pair, and forgets the pair.
    fn fire_pair(st: &mut State, addr: usize, expected: u32) {
        if let Some(i) = st
            .entries
            .iter()
            .position(|e| e.addr == addr && e.expected == expected)
        {
            for c in st.entries.swap_remove(i).cells {
                c.fire(WOKEN);
            }
        }
    }

    /// The reactor thread's loop; never returns.
    fn run(self: Arc<Self>) {
        let mut list: Vec<WaitV> = Vec::with_capacity(futex_waitv::MAX);
        let mut keys: Vec<(usize, u32)> = Vec::with_capacity(PER_SHARD);
        loop {
            let ctl = self.ctl.load(Ordering::Acquire);
            list.clear();
            keys.clear();
            list.push(WaitV::new(self.ctl.as_ptr() as usize, ctl));
            let now = Instant::now();
            let mut until = now + IDLE;
            let fallback = {
                let mut st = lock(&self.state);
                for e in &mut st.entries {
                    // Slices that ended: those waiters look (and check
                    // liveness) now.
                    e.cells.retain(|c| {
                        if c.until <= now {
                            c.fire(TIMED_OUT);
                            false
                        } else {
                            until = until.min(c.until);
                            true
                        }
                    });
                }
                st.entries.retain(|e| !e.cells.is_empty());
                for e in &st.entries {
                    list.push(WaitV::new(e.addr, e.expected));
                    keys.push((e.addr, e.expected));
                }
                if st.fallback {
                    until = until.min(now + POLL_FALLBACK);
                }
                st.asleep_until = Some(until);
                st.fallback
            };
            let woke = if fallback {
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
                Woke::Unsupported
            } else {
                futex_waitv::wait(&list, until.saturating_duration_since(Instant::now()))
            };
            let mut st = lock(&self.state);
            st.asleep_until = None;
            match woke {
                Woke::Word(0) | Woke::TimedOut => {}
                Woke::Word(i) => {
                    if let Some(&(addr, expected)) = keys.get(i - 1) {
                        Self::fire_pair(&mut st, addr, expected);
                    }
                }
                Woke::Changed if self.ctl.load(Ordering::Acquire) != ctl => {
                    // The control word moved (a registration): rebuild and
                    // wait again; a registered word that changed too makes
                    // that wait return at once, and is found then.
                }
                Woke::Changed | Woke::Fault => {
                    // Find the words that changed (or cannot be read): a
                    // zero-timeout wait on each alone.
                    for &(addr, expected) in &keys {
                        if futex_waitv::wait(&[WaitV::new(addr, expected)], Duration::ZERO)
                            != Woke::TimedOut
                        {
                            Self::fire_pair(&mut st, addr, expected);
                        }
                    }
                }
                Woke::Unsupported => {
                    // No futex_waitv: every waiter looks every few ms.
                    st.fallback = true;
                    for e in st.entries.drain(..) {
                        for c in e.cells {
                            c.fire(WOKEN);
                        }
                    }
                }
            }
        }
    }
}

/// Waits, without blocking the thread, until `word` is woken or no longer
/// holds `expected`, or `slice` passes. The caller made sure, by its
/// primitive's handshake, that its waker will wake the word after changing
/// what it waits for (exactly as for a blocking
/// [`sleep`](crate::sync::wait::sleep)).
///
/// Dropped after the reactor woke it but before it was polled, it passes
/// the wake-up on (one `FUTEX_WAKE` on the word), so that a waker that woke
/// only one sleeper loses no wake-up to a cancelled future.
pub(crate) fn wait_word(word: &AtomicU32, expected: u32, slice: Duration) -> WordWait<'_> {
    WordWait {
        word,
        expected,
        slice,
        reg: None,
        done: false,
    }
}

/// The future of [`wait_word`].
#[derive(Debug)]
pub(crate) struct WordWait<'a> {
    word: &'a AtomicU32,
    expected: u32,
    slice: Duration,
    reg: Option<(Arc<Cell>, Option<Arc<Shard>>)>,
    done: bool,
}

impl Future for WordWait<'_> {
    type Output = Slept;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Slept> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Slept::Woken);
        }
        match &this.reg {
            None => {
                if this.word.load(Ordering::Acquire) != this.expected {
                    this.done = true;
                    return Poll::Ready(Slept::Woken);
                }
                let cell = Arc::new(Cell {
                    state: AtomicU8::new(WAITING),
                    waker: Mutex::new(Some(cx.waker().clone())),
                    until: Instant::now() + this.slice,
                });
                let shard = register(this.word.as_ptr() as usize, this.expected, &cell);
                if shard.is_none() {
                    // No reactor thread could be started: look again on the
                    // next turn of the runtime (a degraded busy poll, only
                    // when the system refuses threads).
                    cx.waker().wake_by_ref();
                }
                this.reg = Some((cell, shard));
                Poll::Pending
            }
            Some((cell, shard)) => {
                let state = cell.state.load(Ordering::Acquire);
                match state {
                    WOKEN => {
                        this.done = true;
                        Poll::Ready(Slept::Woken)
                    }
                    TIMED_OUT => {
                        this.done = true;
                        Poll::Ready(Slept::Slice)
                    }
                    _ if shard.is_none() => {
                        this.done = true;
                        Poll::Ready(if Instant::now() >= cell.until {
                            Slept::Slice
                        } else {
                            Slept::Woken
                        })
                    }
                    _ => {
                        {
                            let mut w = lock(&cell.waker);
                            match &*w {
                                Some(old) if old.will_wake(cx.waker()) => {}
                                _ => *w = Some(cx.waker().clone()),
                            }
                        }
                        // Fired meanwhile (before the new waker was stored).
                        if cell.state.load(Ordering::Acquire) != WAITING {
                            cx.waker().wake_by_ref();
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}

impl Drop for WordWait<'_> {
    fn drop(&mut self) {
        if let Some((cell, shard)) = self.reg.take() {
            // A fired cell is no longer listed (the reactor unlists it, under
            // the list's lock, before it fires it).
            if let Some(shard) = shard
                && cell.state.load(Ordering::Acquire) == WAITING
            {
                shard.deregister(&cell);
            }
            if !self.done && cell.state.load(Ordering::Acquire) == WOKEN {
                // Woken but never looked: hand the wake-up to another sleeper.
                futex::wake(self.word, 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_waiter_is_woken_by_a_plain_futex_wake_and_times_out_by_its_slice() {
        let word = Arc::new(AtomicU32::new(0));
        let w2 = word.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            w2.store(1, Ordering::SeqCst);
            futex::wake_all(&w2);
        });
        let start = Instant::now();
        let got = block_on(async {
            loop {
                if word.load(Ordering::SeqCst) == 1 {
                    return Slept::Woken;
                }
                wait_word(&word, 0, Duration::from_secs(20)).await;
            }
        });
        assert_eq!(got, Slept::Woken);
        assert!(start.elapsed() < Duration::from_secs(10));
        t.join().unwrap();
        // A slice ends the wait.
        let start = Instant::now();
        let got = block_on(wait_word(&word, 1, Duration::from_millis(30)));
        assert_eq!(got, Slept::Slice);
        assert!(start.elapsed() >= Duration::from_millis(30));
        // A changed word is not waited on.
        assert_eq!(
            block_on(wait_word(&word, 5, Duration::from_secs(20))),
            Slept::Woken
        );
    }

    #[test]
    fn many_words_spread_over_shards() {
        let words: Arc<Vec<AtomicU32>> = Arc::new((0..300).map(|_| AtomicU32::new(0)).collect());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tasks: Vec<_> = (0..words.len())
            .map(|i| {
                let words = words.clone();
                rt.spawn(async move {
                    while words[i].load(Ordering::SeqCst) == 0 {
                        wait_word(&words[i], 0, Duration::from_secs(20)).await;
                    }
                })
            })
            .collect();
        let w2 = words.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            for w in w2.iter() {
                w.store(1, Ordering::SeqCst);
                futex::wake_all(w);
            }
        });
        let start = Instant::now();
        rt.block_on(async {
            for task in tasks {
                task.await.unwrap();
            }
        });
        assert!(start.elapsed() < Duration::from_secs(10));
        t.join().unwrap();
        // Three shards: 127 words each at most.
        assert!(lock(&reactor().shards).len() >= 3);
    }

    #[test]
    fn a_dropped_waiter_deregisters() {
        let word = AtomicU32::new(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = tokio::time::timeout(
                Duration::from_millis(20),
                wait_word(&word, 0, Duration::from_secs(20)),
            );
            assert!(r.await.is_err());
        });
        let addr = word.as_ptr() as usize;
        for shard in lock(&reactor().shards).iter() {
            assert!(!lock(&shard.state).entries.iter().any(|e| e.addr == addr));
        }
    }
}
