//! Raw baselines for multiproc's benches and for the `multiproc bench`
//! command: what the kernel and the hardware give without multiproc, in the
//! same kind of memory (a memfd mapped MAP_SHARED), so each measurement can
//! print its ratio to the limit.
#![allow(clippy::disallowed_methods)] // not library code: raw calls allowed

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use multiproc::Process;

/// A memfd of `len` bytes mapped MAP_SHARED (populated when asked).
pub fn shared_mapping(len: usize, populate: bool) -> MmapRaw {
    let fd = nix::sys::memfd::memfd_create(c"bench", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .expect("memfd_create");
    nix::unistd::ftruncate(&fd, len as i64).expect("ftruncate");
    let file = std::fs::File::from(fd);
    let mut o = MmapOptions::new();
    o.len(len);
    if populate {
        o.populate();
    }
    o.map_raw(&file).expect("mmap")
}

fn futex(word: &AtomicU32, op: i32, val: u32) {
    // SAFETY: `word` is a valid aligned u32; shared (non-private) futex op
    // with no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// The bare three-state futex mutex (0 free, 1 locked, 2 contended) with a
/// short spin, as in Rust std: the floor a process-shared lock can reach.
pub struct BareFutexLock<'a>(pub &'a AtomicU32);

impl BareFutexLock<'_> {
    /// Takes the lock, spinning briefly and then sleeping on the futex.
    #[inline]
    pub fn lock(&self) {
        if self
            .0
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spin = 100;
        while spin > 0 && self.0.load(Ordering::Relaxed) == 1 {
            std::hint::spin_loop();
            spin -= 1;
        }
        if self
            .0
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        while self.0.swap(2, Ordering::Acquire) != 0 {
            futex(self.0, libc::FUTEX_WAIT, 2);
        }
    }

    /// Releases the lock, waking one sleeper if any.
    #[inline]
    pub fn unlock(&self) {
        if self.0.swap(0, Ordering::Release) == 2 {
            futex(self.0, libc::FUTEX_WAKE, 1);
        }
    }
}

/// Runs `work(i)` in `p` forked children at once and returns the wall time
/// from their common start to the last one's end.
pub fn run_forked<F: Fn(usize) + Sync>(p: usize, work: F) -> Duration {
    let ready = multiproc::RawValue::new(0u32).unwrap();
    let go = multiproc::Event::new().unwrap();
    let work = &work;
    multiproc::process::scope(|ps| {
        let mut kids: Vec<Process> = (0..p)
            .map(|i| {
                let (ready, go) = (&ready, &go);
                // SAFETY: the benches' children touch only shared objects made
                // before the fork and never print; whatever threads the bench
                // harness has hold none of the locks they use.
                let mut c = unsafe {
                    ps.process(move || {
                        ready.fetch_add(1);
                        go.wait();
                        work(i)
                    })
                    .allow_threads()
                };
                c.start().expect("fork");
                c
            })
            .collect();
        while ready.load() < p as u32 {
            std::hint::spin_loop();
        }
        let t = Instant::now();
        go.set();
        for k in &mut kids {
            assert!(k.join().expect("join").success(), "bench child failed");
        }
        t.elapsed()
    })
}

/// A bare stream socketpair (close-on-exec): the kernel path the messaging
/// workloads compare against.
pub fn socketpair() -> nix::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Reads exactly `buf.len()` bytes (`EPIPE` if the peer closes first).
pub fn read_full(fd: &std::os::fd::OwnedFd, buf: &mut [u8]) -> nix::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(fd, &mut buf[got..])? {
            0 => return Err(nix::errno::Errno::EPIPE),
            n => got += n,
        }
    }
    Ok(())
}

/// Writes all of `buf`.
pub fn write_full(fd: &std::os::fd::OwnedFd, buf: &[u8]) -> nix::Result<()> {
    let mut sent = 0;
    while sent < buf.len() {
        sent += nix::unistd::write(fd, &buf[sent..])?;
    }
    Ok(())
}

/// Prints one JSON line of `shared/WORKLOADS.md`; `params` is the inside of
/// the params object (`"N": 1, "C": 10`).
pub fn json_line(
    imp: &str,
    workload: &str,
    variant: &str,
    params: &str,
    metric: &str,
    value: f64,
    check: &str,
) {
    println!(
        "{{\"impl\": \"{imp}\", \"workload\": \"{workload}\", \"variant\": \"{variant}\", \
         \"params\": {{{params}}}, \"metric\": \"{metric}\", \"value\": {value:.4}, \"check\": \"{check}\"}}"
    );
}

/// Slots of a [`BareRing`].
pub const SLOTS: u64 = 1 << 16;

/// A bare ring of u64 slots in shared memory: a lock word and the two
/// counters on cache lines of their own, then the slots. No encoding, no
/// robustness: the floor a queue is compared with.
#[repr(C)]
pub struct BareRing {
    /// The futex lock word of the locked (multi-producer) variant.
    pub lock: AtomicU32,
    _pad: [u8; 60],
    /// Items taken so far.
    pub head: std::sync::atomic::AtomicU64,
    _pad2: [u8; 56],
    /// Items put so far.
    pub tail: std::sync::atomic::AtomicU64,
    _pad3: [u8; 56],
    /// The items, at `index % SLOTS`.
    pub slots: [std::sync::atomic::AtomicU64; SLOTS as usize],
}

/// A [`BareRing`] in a populated memfd mapping of its own, shared with
/// children forked while it lives.
pub struct SharedRing(MmapRaw);

impl SharedRing {
    /// Maps a zeroed (empty) ring.
    #[allow(clippy::new_without_default)]
    pub fn new() -> SharedRing {
        SharedRing(shared_mapping(std::mem::size_of::<BareRing>(), true))
    }

    /// The ring in the mapping.
    pub fn ring(&self) -> &BareRing {
        // SAFETY: the mapping is zeroed, page-aligned and large enough for
        // a BareRing, which is atomics only (all-zero is valid); the
        // reference lives no longer than the mapping.
        unsafe { &*(self.0.as_ptr() as *const BareRing) }
    }
}
