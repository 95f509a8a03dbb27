//! Waiting until a word in shared memory changes: the crate's one wait
//! strategy, used by every blocking path (the raw mutex and the queues' side
//! locks, the semaphore, the condition and event words, the queue ring, the
//! pipe ring, the manager's mailbox and channel).
//!
//! A wait has two phases:
//!
//! 1. **Spin** ([`Site::spin_until`]): look at the shared state again and
//!    again, with a CPU pause between looks, for a bounded time. A change
//!    made by a process running on another CPU is seen within a few
//!    hundred nanoseconds, where waking a sleeping process costs tens of
//!    microseconds. Spinning pays only while the process that will make the
//!    change is *running*, and burns a CPU that another process may need:
//!    so it is skipped altogether unless the machine has an idle CPU
//!    ([`cpu_to_spare`]: no more runnable threads than CPUs, from the
//!    kernel's count, refreshed every few milliseconds), or when the caller
//!    knows the other side shares its CPU. Under oversubscription a waiter
//!    therefore goes straight to sleep, and the kernel's wake-up (which
//!    favours a thread that slept) hands it the CPU as quickly as it would
//!    to a blocking socket read; a spinner there would only delay the very
//!    process it waits for. The spin never yields its CPU either: with
//!    busy processes around, a yield gives a whole time slice to one of
//!    them.
//!
//!    Each kind of wait has a [`Site`] (process-local) whose spin budget
//!    adapts to recent success: a spin that saw its change makes the next
//!    one longer (up to the site's maximum), a spin that ended without it
//!    halves the budget (down to a sixteenth), so an idle server or a
//!    consumer waiting for a slow producer stops burning its CPU.
//!
//!    Locks also spin a short fixed number of pauses whatever the load
//!    ([`Site::locks`]): the owner of a lock is usually running its short
//!    critical section, as in a plain futex mutex. The raw mutex's spin
//!    ([`Site::locks_backing_off`]) backs off:
//!    the pauses between two looks at the word double (1, 2, 4, ... up to
//!    64), so a waiter pulls the lock's cache line away from a running
//!    owner a handful of times rather than on every pause, and an owner
//!    that releases and takes the lock again in a loop keeps it (and its
//!    cache line) for longer streaks. Beside busy processes, a contended
//!    `Value` counter measured a median 1.01x of a bare futex lock (which
//!    looks on every pause) over 13 runs, against 0.92x over 12 runs
//!    without the backoff (`multiproc bench --hogs 2 --workload counter`,
//!    2026-12-06, load average 8-15 from other builds); single runs
//!    ranged 0.71-1.24x either way, so the gain is within this machine's
//!    noise. It does not slow an uncontended lock (no look fails there).
//!
//! 2. **Sleep** ([`sleep`]): a futex wait on the shared word (or, for the
//!    pipe and the manager channel, a `poll` on a socket), bounded by the
//!    caller's [`Deadline`] and by a *slice* after which the caller checks
//!    the liveness of whoever it waits for (an owner's death, a peer gone).
//!    Each primitive keeps its own handshake for not losing a wake-up (the
//!    waker checks a flag or a bit the sleeper sets before sleeping): those
//!    are described in each module, and the sleep here only ever sleeps
//!    while the word still holds the value the caller read.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::sys::futex;

/// Looks at the state between two clock readings while spinning.
const LOOKS_PER_CLOCK: u32 = 16;
/// The most pauses between two looks of a lock's floor spin.
const MAX_STEP: u32 = 64;
/// How long a verdict of [`cpu_to_spare`] is reused.
const LOAD_FRESH: Duration = Duration::from_millis(4);

/// One kind of wait: its spin budget, adapted to recent success. Lives in
/// a `static` of the module that waits (process-local, never shared).
#[derive(Debug)]
pub(crate) struct Site {
    /// The longest spin, in nanoseconds.
    max_ns: u32,
    /// Pauses spun whatever the load (locks: see [`Site::locks`]).
    floor: u32,
    /// Whether the floor spin backs off (see [`Site::locks_backing_off`]).
    backoff: bool,
    /// The current budget, in nanoseconds (0: not set yet, use the max).
    budget_ns: AtomicU32,
}

impl Site {
    /// A site spinning at most `max` while a CPU is to spare.
    pub(crate) const fn new(max: Duration) -> Site {
        Site::with_floor(max, 0, false)
    }

    /// A site for a lock: at most `max` while a CPU is to spare, and at
    /// least `floor` pauses (a few dozen nanoseconds each) whatever the
    /// load, as a plain futex mutex does before it sleeps, looking at the
    /// word after each pause.
    #[cfg_attr(not(feature = "queue"), allow(dead_code))] // the queues' side locks
    pub(crate) const fn locks(max: Duration, floor: u32) -> Site {
        Site::with_floor(max, floor, false)
    }

    /// [`Site::locks`], looking at the word after 1, 2, 4, ... pauses
    /// (backing off, see the module docs) rather than after each.
    pub(crate) const fn locks_backing_off(max: Duration, floor: u32) -> Site {
        Site::with_floor(max, floor, true)
    }

    const fn with_floor(max: Duration, floor: u32, backoff: bool) -> Site {
        let ns = max.as_nanos();
        Site {
            max_ns: if ns > u32::MAX as u128 {
                u32::MAX
            } else {
                ns as u32
            },
            floor,
            backoff,
            budget_ns: AtomicU32::new(0),
        }
    }

    fn budget(&self) -> u32 {
        match self.budget_ns.load(Ordering::Relaxed) {
            0 => self.max_ns,
            b => b,
        }
    }

    /// A spin saw its change: a longer budget next time.
    fn won(&self) {
        let b = self.budget();
        let next = b.saturating_add(b / 2).min(self.max_ns).max(1);
        if next != b {
            self.budget_ns.store(next, Ordering::Relaxed);
        }
    }

    /// A spin ended without its change: half the budget next time.
    fn lost(&self) {
        let b = self.budget();
        let next = (b / 2).max(self.max_ns / 16).max(1);
        if next != b {
            self.budget_ns.store(next, Ordering::Relaxed);
        }
    }

    /// Whether a spin of at most `cap` would spin past its floor now (a
    /// CPU is to spare): a caller that can arrange its system calls better
    /// for a wait without spin asks first.
    pub(crate) fn would_spin(&self, cap: Duration) -> bool {
        self.max_ns != 0 && !cap.is_zero() && cpu_to_spare()
    }

    /// Spins until `look` returns `Some` (returned) or the spin is over
    /// (`None`: the caller sleeps). The spin is skipped when no CPU is to
    /// spare (but for a lock's floor), and ends at `deadline`.
    #[inline]
    pub(crate) fn spin_until<T>(
        &self,
        deadline: Deadline,
        look: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        self.spin_until_if(true, deadline, look)
    }

    /// [`Site::spin_until`], given whether spinning can pay at all in the
    /// caller's view (`false`: the other side last ran on this very CPU,
    /// so it cannot make the change while this thread spins).
    pub(crate) fn spin_until_if<T>(
        &self,
        worth: bool,
        deadline: Deadline,
        look: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        self.spin_within(Duration::MAX, worth, deadline, look)
    }

    /// [`Site::spin_until_if`], spinning at most `cap` (the caller's own
    /// bound; zero: no spin but the floor).
    pub(crate) fn spin_within<T>(
        &self,
        cap: Duration,
        worth: bool,
        deadline: Deadline,
        mut look: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        // The floor; backing off, the pauses between two looks double (up
        // to MAX_STEP), so waiters take the contended line away from the
        // owner rarely, and a thread that releases and takes the lock
        // again keeps running (see the module docs).
        let (mut spent, mut step) = (0u32, 1u32);
        while spent < self.floor {
            if let Some(t) = look() {
                return Some(t);
            }
            for _ in 0..step {
                std::hint::spin_loop();
            }
            spent += step;
            if self.backoff {
                step = (step * 2).min(MAX_STEP);
            }
        }
        if self.floor != 0
            && let Some(t) = look()
        {
            return Some(t);
        }
        if !worth || !self.would_spin(cap) {
            return None;
        }
        let budget = Duration::from_nanos(self.budget() as u64).min(cap);
        let start = Instant::now();
        let mut n = 0u32;
        loop {
            if let Some(t) = look() {
                self.won();
                return Some(t);
            }
            n = n.wrapping_add(1);
            if n.is_multiple_of(LOOKS_PER_CLOCK)
                && (start.elapsed() >= budget || deadline.expired())
            {
                self.lost();
                return None;
            }
            std::hint::spin_loop();
        }
    }
}

/// How a [`sleep`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slept {
    /// Woken, or the word no longer held the value (or a signal): look.
    Woken,
    /// A whole slice passed without a wake-up: time for the caller's
    /// liveness checks.
    Slice,
    /// The deadline had passed: no sleep at all.
    Expired,
}

/// Sleeps while `word` holds `expected`, at most `slice` and not past
/// `deadline`. The caller has made sure its waker will wake this word after
/// changing what it waits for (see each primitive's handshake).
pub(crate) fn sleep(word: &AtomicU32, expected: u32, deadline: Deadline, slice: Duration) -> Slept {
    if deadline.expired() {
        return Slept::Expired;
    }
    match futex::wait(word, expected, Some(deadline.slice(slice))) {
        futex::Wait::Woken => Slept::Woken,
        futex::Wait::TimedOut => Slept::Slice,
    }
}

/// Whether a CPU is to spare: the kernel counts no more runnable threads
/// (this one included) than this process may use CPUs. Read from
/// `/proc/loadavg`, at most every few milliseconds per process; `true` if
/// it cannot be read.
///
/// The count is the whole machine's: in a container limited to fewer CPUs
/// than the host has, it understates how busy those CPUs are (spinning then
/// stays on, as without this check).
pub(crate) fn cpu_to_spare() -> bool {
    // bit 0: the verdict; the rest: when it was made, in microseconds since
    // `epoch()`, plus one (0: never).
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = epoch().elapsed().as_micros() as u64 + 1;
    let last = LAST.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last >> 1) < LOAD_FRESH.as_micros() as u64 {
        return last & 1 != 0;
    }
    let spare = match runnable() {
        Some(r) => r <= cpus(),
        None => true,
    };
    LAST.store(now << 1 | spare as u64, Ordering::Relaxed);
    spare
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The CPUs this process may use (cached).
fn cpus() -> u32 {
    static CPUS: AtomicU32 = AtomicU32::new(0);
    match CPUS.load(Ordering::Relaxed) {
        0 => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            CPUS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Runnable threads on the machine right now: the numerator of the fourth
/// field of `/proc/loadavg` ("1.00 0.50 0.25 3/512 4242").
fn runnable() -> Option<u32> {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let mut f = std::fs::File::open("/proc/loadavg").ok()?;
    let n = f.read(&mut buf).ok()?;
    parse_runnable(&buf[..n])
}

fn parse_runnable(text: &[u8]) -> Option<u32> {
    let field = text.split(|&b| b == b' ').nth(3)?;
    let num = field.split(|&b| b == b'/').next()?;
    std::str::from_utf8(num).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runnable_count_is_read_from_loadavg() {
        assert_eq!(parse_runnable(b"0.52 0.58 0.59 3/467 12345\n"), Some(3));
        assert_eq!(parse_runnable(b"garbage"), None);
        assert!(runnable().is_some_and(|r| r >= 1));
    }

    #[test]
    fn a_spin_is_bounded_and_adapts() {
        static SITE: Site = Site::new(Duration::from_micros(200));
        let t = Instant::now();
        assert_eq!(SITE.spin_until(Deadline::NEVER, || None::<()>), None);
        assert!(t.elapsed() < Duration::from_secs(1));
        // A passed deadline ends the spin at the first look at the clock.
        static LONG: Site = Site::new(Duration::from_secs(30));
        let t = Instant::now();
        let passed = Deadline::after(Duration::ZERO);
        assert_eq!(LONG.spin_until(passed, || None::<()>), None);
        assert!(t.elapsed() < Duration::from_secs(1));
        // A lost spin halves the budget (if it spun at all); never below a
        // sixteenth.
        for _ in 0..20 {
            SITE.spin_until(Deadline::NEVER, || None::<()>);
        }
        assert!(SITE.budget() >= SITE.max_ns / 16);
        // A spin that runs sees its change; one skipped (no CPU to spare)
        // looks nothing up.
        let mut k = 0;
        let got = SITE.spin_until(Deadline::NEVER, || {
            k += 1;
            (k > 3).then_some(k)
        });
        assert!(
            got == Some(4) || (got.is_none() && k == 0),
            "{got:?} after {k} looks"
        );
    }

    #[test]
    fn a_lock_site_spins_its_floor_under_any_load() {
        static SITE: Site = Site::locks(Duration::ZERO, 50);
        let mut k = 0;
        assert_eq!(
            SITE.spin_until(Deadline::NEVER, || {
                k += 1;
                (k == 10).then_some(7)
            }),
            Some(7)
        );
    }

    /// The floor spin backs off: over 200 pauses it looks at the word a
    /// handful of times, not 200 (each look of a contended lock's word
    /// takes its cache line away from the running owner).
    #[test]
    fn a_lock_floor_backs_off() {
        static SITE: Site = Site::locks_backing_off(Duration::ZERO, 200);
        let mut looks = 0;
        assert_eq!(
            SITE.spin_until(Deadline::NEVER, || {
                looks += 1;
                None::<()>
            }),
            None
        );
        // 1 + 2 + 4 + ... + 64 + 64 + 64 >= 200: 9 looks, and one more at
        // the end.
        assert!((2..=12).contains(&looks), "{looks} looks");
    }

    #[test]
    fn a_sleep_respects_the_deadline_and_the_slice() {
        let w = AtomicU32::new(0);
        assert_eq!(
            sleep(
                &w,
                0,
                Deadline::after(Duration::ZERO),
                Duration::from_secs(9)
            ),
            Slept::Expired
        );
        let t = Instant::now();
        assert_eq!(
            sleep(
                &w,
                0,
                Deadline::after(Duration::from_millis(20)),
                Duration::from_secs(9)
            ),
            Slept::Slice
        );
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(20) && e < Duration::from_secs(5),
            "{e:?}"
        );
        // A changed word is not slept on.
        assert_eq!(
            sleep(&w, 1, Deadline::NEVER, Duration::from_secs(9)),
            Slept::Woken
        );
    }

    /// One direction of a ping-pong: a sequence word the reader sleeps on,
    /// and the reader's "asleep" flag, as in the manager's mailbox.
    fn post(words: &[AtomicU32; 4], at: usize, v: u32) {
        words[at].store(v, Ordering::SeqCst);
        if words[at + 1].load(Ordering::SeqCst) != 0 {
            futex::wake(&words[at], 1);
        }
    }

    /// Waits for `v` at `at`: the module's spin, then sleeps of `slice`
    /// (long: a lost wake-up costs a whole slice, which the caller sees).
    fn await_value(words: &[AtomicU32; 4], at: usize, v: u32, deadline: Deadline) -> bool {
        static SITE: Site = Site::new(Duration::from_micros(50));
        let (word, asleep) = (&words[at], &words[at + 1]);
        if SITE
            .spin_until(deadline, || {
                (word.load(Ordering::Acquire) == v).then_some(())
            })
            .is_some()
        {
            return true;
        }
        loop {
            let cur = word.load(Ordering::SeqCst);
            if cur == v {
                return true;
            }
            asleep.store(1, Ordering::SeqCst);
            let slept = if word.load(Ordering::SeqCst) == cur {
                sleep(word, cur, deadline, Duration::from_secs(30))
            } else {
                Slept::Woken
            };
            asleep.store(0, Ordering::SeqCst);
            if slept == Slept::Expired {
                return word.load(Ordering::SeqCst) == v;
            }
        }
    }

    /// Wake-ups are not lost across processes: thousands of round trips,
    /// each side spinning then sleeping, end well within one sleep slice
    /// (a lost wake-up would cost a whole slice, 30 s), and the bounded
    /// wait fails rather than hangs if one is lost.
    #[test]
    fn wake_ups_are_not_lost_across_processes() {
        static FORKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _serial = FORKING.lock().unwrap_or_else(|p| p.into_inner());
        const ROUNDS: u32 = 3000;
        let words =
            std::sync::Arc::new(crate::shm::ShmBox::new([const { AtomicU32::new(0) }; 4]).unwrap());
        let theirs = words.clone();
        let w = &**words;
        let deadline = Deadline::after(Duration::from_secs(20));
        // SAFETY: the child touches only the shared words made before the
        // fork (no lock of this process's other threads).
        let mut child = unsafe {
            crate::Process::new(move || {
                let w = &**theirs;
                for i in 1..=ROUNDS {
                    if !await_value(w, 0, i, deadline) {
                        return 1;
                    }
                    post(w, 2, i);
                }
                0
            })
            .with_daemon(true)
            .allow_threads()
        };
        child.start().unwrap();
        let t = Instant::now();
        for i in 1..=ROUNDS {
            post(w, 0, i);
            assert!(await_value(w, 2, i, deadline), "round {i} not answered");
        }
        assert!(t.elapsed() < Duration::from_secs(20));
        assert_eq!(child.join().unwrap().code(), 0);
    }
}
