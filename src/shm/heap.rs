//! The shared heap: many small objects share the pages of a few large
//! memfd arenas, so a million `Value<u64>` cost a million 16-byte slots in
//! one mapping, not a million mappings (`vm.max_map_count` is 65530).
//!
//! Design (like CPython's `multiprocessing.heap`, in spirit):
//! - Small requests (up to [`SMALL_MAX`] bytes) are rounded up to a power of
//!   two and carved from 64 MiB arenas with a bump pointer; freed slots go
//!   to a free list per size and are reused first.
//! - Larger requests get a memfd mapping of their own, returned to the
//!   kernel when the last handle drops; those are populated at creation.
//! - The allocator's bookkeeping is private to each process. A fork child
//!   inherits the parent's arenas and objects but must never allocate from
//!   the parent's free lists or bump region (the parent does so
//!   independently), so the first allocation in a new process starts fresh
//!   arenas, and frees of the parent's objects in the child are no-ops.
//!
//! # Slots still used by other processes: the quarantine
//!
//! A child forked after an object was made has its own handle to the
//! object's slot, in the same `MAP_SHARED` arena. If the parent freed its
//! handle and handed the slot to its next allocation, the child's writes
//! would land in the new object (an invalid `char` from safe code). So a
//! slot freed while a process forked after the slot's allocation (or any
//! descendant of one: they inherit its handles) may still run is
//! *quarantined*, not reused, until all of those have ended:
//! - Every allocation carries its *epoch*: how many forks its process had
//!   made when it was allocated. A slot freed in the epoch it was born in
//!   was never seen by a child and goes straight back to the free list:
//!   temporaries made and dropped between forks never wait, whatever
//!   long-lived children (a pool's workers) run.
//! - Forks are grouped in *generations*, each a close-on-exec pipe. Every
//!   child forked in a generation keeps the pipe's write end open for its
//!   whole life (it never closes it, and its own children inherit it), the
//!   parent keeps the read end. Once every holder has ended, whoever reaped
//!   them or not, the read end reports `POLLHUP`. No process can stop
//!   holding it early without closing a descriptor it does not own (an
//!   I/O-safety violation, like a `close_range` over descriptors of others).
//!   Waiting for the children to be reaped instead would miss grandchildren
//!   that outlive them, and children reaped by someone else.
//! - The parent holds the write end of the current generation too, so that
//!   the next forks can hand it on, until it wants quarantined slots back
//!   (the release check below, after a slot was quarantined while that
//!   generation was open): then it closes its copy, and the next fork opens
//!   a new generation. Forks in between join the open one at no cost, so a
//!   loop of fork, free, join makes one pipe per check (one `pipe2` and,
//!   later, two `close`s), not one per fork. Grouping is conservative: a
//!   slot may also wait for children forked after it was freed, or for a
//!   longer-lived one of the same generation.
//! - A quarantined slot remembers its epochs of birth and death; it is
//!   released to its free list once no live generation holds a fork made
//!   between the two. Release is checked lazily: when the quarantine is not
//!   empty and an allocation misses its free list (at most once per
//!   [`CHECK_EVERY`]), and when a fork opens a generation while many are
//!   live (which also bounds the read ends kept). A free never makes a
//!   system call, nor does an allocation while nothing is quarantined.
//! - Failing to make a pipe (no descriptors left) records a generation that
//!   never ends: its slots leak, they are never reused. So do the slots a
//!   child that never ends could use. A leak, never unsound. (A child that
//!   ended but is never reaped holds nothing up: a zombie has no
//!   descriptors.)
//!
//! Only forks made through this crate (`sys::fork`, which calls
//! [`lock_for_fork`]) and spawns (see [`for_spawn`]) are covered: a child
//! of a raw `libc::fork` (unsafe) must not use objects made before it.
//!
//! Large blocks need none of this: each is a mapping of its own, and
//! dropping the parent's handle unmaps it in the parent only; the child's
//! copy of the mapping keeps the memfd's pages, and no other object can be
//! placed there (a new mapping in the parent is another address space's
//! affair). A spawned child maps whole arenas but gets handles only to the
//! objects passed as arguments, which its parent's `Process` keeps until
//! the child ends (or leaks, if forgotten). That covers the parent's own
//! objects but not those the parent inherited from further up: a forked
//! child may pass one on and end without joining. So a spawned child
//! holds the generation write ends its parent holds, passed across `exec`
//! (see [`for_spawn`]), and a spawn counts as a fork.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys::mem::SharedMapping;
use crate::sys::thread;
use crate::sys::{atfork, fd as sysfd};

/// The largest request served from the shared arenas.
pub(crate) const SMALL_MAX: usize = 256 * 1024;
const MIN_SLOT: usize = 16;
const CLASSES: usize = (SMALL_MAX / MIN_SLOT).trailing_zeros() as usize + 1;
const ARENA_SIZE: usize = 64 * 1024 * 1024;
/// Alignment guaranteed for every allocation (a page).
pub(crate) const MAX_ALIGN: usize = 4096;
/// How often, at most, an allocation that misses its free list looks for
/// quarantined slots to release.
const CHECK_EVERY: Duration = Duration::from_millis(1);
/// A fork that opens a generation while this many are live first drops the
/// ended ones.
const PRUNE_AT: usize = 8;

const ARENA_NAME: &CStr = c"multiproc-heap";
const BLOCK_NAME: &CStr = c"multiproc-block";

/// A memfd mapping owned by one process lineage's heap.
#[derive(Debug)]
pub(crate) struct Arena {
    map: SharedMapping,
    /// The process whose heap carves this arena; only it frees into it.
    owner: i32,
}

impl Arena {
    pub(crate) fn mapping(&self) -> &SharedMapping {
        &self.map
    }

    /// The process whose heap owns the arena.
    #[cfg_attr(not(feature = "spawn"), allow(dead_code))]
    pub(crate) fn owner(&self) -> i32 {
        self.owner
    }

    /// An arena of another process's heap, mapped again in this one (spawn
    /// start method). This process never frees into it.
    pub(crate) fn adopted(map: SharedMapping, owner: i32) -> Arena {
        Arena { map, owner }
    }
}

/// One allocation in shared memory. Frees itself on drop, in the process
/// that made it.
#[derive(Debug)]
pub(crate) struct Allocation {
    ptr: NonNull<u8>,
    /// The slot size (small) or the mapping length (large).
    size: usize,
    arena: Arc<Arena>,
    /// The heap's epoch (forks made so far) when the slot was allocated.
    born: u64,
    /// Whether dropping it frees the slot: true for what this process's
    /// heap handed out, false for a handle adopted from the wire (another
    /// handle to a slot someone else frees, even in this very process).
    owned: bool,
}

// SAFETY: an `Allocation` is an address in a shared mapping kept alive by the
// `Arc<Arena>`; which thread holds it does not matter. Access to the bytes is
// synchronized by the types built on top.
unsafe impl Send for Allocation {}
// SAFETY: as above; `&Allocation` only hands out the raw pointer.
unsafe impl Sync for Allocation {}

impl Allocation {
    /// The first byte, aligned as requested.
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The arena, offset and slot size, for re-mapping in another process.
    pub(crate) fn location(&self) -> (&Arc<Arena>, usize, usize) {
        let off = self.ptr.as_ptr() as usize - self.arena.map.as_ptr() as usize;
        (&self.arena, off, self.size)
    }

    /// The allocation at `offset` in `arena` (an adopted one), `size` bytes.
    pub(crate) fn adopt(arena: Arc<Arena>, offset: usize, size: usize) -> Result<Allocation> {
        let len = arena.map.len();
        // A large block's `size` is at least SMALL_MAX + 1 but its mapping
        // may be shorter than that; only the bytes actually used matter.
        let used = if size > SMALL_MAX {
            len - offset.min(len)
        } else {
            size
        };
        if offset >= len || used > len - offset {
            return Err(Error::InvalidArgument(
                "a shared object's location lies outside its memory",
            ));
        }
        // SAFETY: `offset < len`, inside the mapping.
        let ptr = unsafe { arena.map.as_ptr().add(offset) };
        Ok(Allocation {
            ptr: NonNull::new(ptr).expect("mmap never returns null"),
            size,
            arena,
            // Never freed into this process's heap: the handle it was sent
            // from (in another process, or in this one) frees the slot.
            born: 0,
            owned: false,
        })
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        if !self.owned || self.size > SMALL_MAX {
            // A mapping of its own: dropping the last `Arc` unmaps it (in this
            // process; other processes keep their own mappings).
            return;
        }
        let mut heap = lock_heap();
        heap.free(self.ptr, self.size, &self.arena, self.born);
    }
}

/// A group of forks whose children hold one pipe's write end.
#[derive(Debug)]
struct Generation {
    /// The pipe's read end: hung up once every holder of the write end has
    /// ended. `None`: no pipe could be made, and the generation never ends.
    read: Option<OwnedFd>,
    /// The epochs of its first and last fork.
    first: u64,
    last: u64,
}

/// A slot freed while processes forked after its allocation may still run.
#[derive(Debug)]
struct Quarantined {
    addr: usize,
    class: usize,
    /// The epochs of its allocation and of its free: the forks in between
    /// made the children that may use it.
    born: u64,
    freed: u64,
}

impl Quarantined {
    fn needs(&self, g: &Generation) -> bool {
        g.first < self.freed && g.last >= self.born
    }
}

struct Heap {
    /// The process this bookkeeping belongs to (0: none yet).
    pid: i32,
    /// That process as [`incarnation`] tells it (0: none yet): what a
    /// process compares to learn whether the bookkeeping is its own or was
    /// inherited by fork. The pid alone could not tell a descendant that
    /// reused a dead ancestor's pid.
    me: u64,
    arenas: Vec<Arc<Arena>>,
    /// Bump offset into the last arena.
    bump: usize,
    free: [Vec<usize>; CLASSES],
    /// Forks (and spawns) made so far by this process.
    epoch: u64,
    /// Generations not yet seen to end, oldest first.
    gens: Vec<Generation>,
    /// Whether the last generation is open: the next fork joins it.
    open: bool,
    /// This process's copy of the open generation's write end.
    write: Option<OwnedFd>,
    /// Whether a quarantined slot waits for the open generation, which must
    /// then be closed at the next check.
    rotate_due: bool,
    quarantine: Vec<Quarantined>,
    /// How much of the quarantine was checked against the live generations
    /// since one last ended.
    scanned: usize,
    last_check: Option<Instant>,
    /// Write ends of ancestors' generations, inherited (by fork, or passed
    /// across exec): held open for the whole life of this process.
    held: Vec<RawFd>,
}

static HEAP: Mutex<Heap> = Mutex::new(Heap::new());

/// This process, as the heap's bookkeeping is stamped with: its
/// [`thread::incarnation`], or its pid alone where that is unknown (then
/// every fork holds the heap and resets the child's stamp, see
/// [`lock_for_fork`]).
fn incarnation() -> u64 {
    thread::incarnation().unwrap_or(thread::pid() as u32 as u64)
}

/// The heap, locked. Its fork hook is registered first (once), so that no
/// fork can run between this lock's first use and the hook's being in
/// place (see [`atfork`]).
fn lock_heap() -> MutexGuard<'static, Heap> {
    static HOOKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    atfork::register_once(&HOOKED, lock_for_fork);
    // Never panic (also in drop): a poisoned heap lock is still usable.
    HEAP.lock().unwrap_or_else(|p| p.into_inner())
}

fn class_of(size: usize) -> (usize, usize) {
    let slot = size.max(MIN_SLOT).next_power_of_two();
    let class = (slot / MIN_SLOT).trailing_zeros() as usize;
    (class, slot)
}

impl Heap {
    const fn new() -> Heap {
        Heap {
            pid: 0,
            me: 0,
            arenas: Vec::new(),
            bump: 0,
            free: [const { Vec::new() }; CLASSES],
            epoch: 0,
            gens: Vec::new(),
            open: false,
            write: None,
            rotate_due: false,
            quarantine: Vec::new(),
            scanned: 0,
            last_check: None,
            held: Vec::new(),
        }
    }

    fn reset_if_forked(&mut self) {
        let me = incarnation();
        if self.me != me {
            // A fresh process (or a fork child): the inherited bookkeeping
            // describes the parent's arenas. Forget it; the parent's objects
            // stay mapped through their own handles.
            self.me = me;
            self.pid = thread::pid();
            self.arenas = Vec::new();
            self.bump = 0;
            for f in &mut self.free {
                *f = Vec::new();
            }
            self.forget_parent_generations();
        }
    }

    /// In a child: the parent's generations are not ours to watch, but the
    /// write end of its open one is held for good (this process and its
    /// children may use the parent's objects). Idempotent.
    fn forget_parent_generations(&mut self) {
        if let Some(w) = self.write.take() {
            self.held.push(w.into_raw_fd());
        }
        // Closes the parent's read ends in this process.
        self.gens = Vec::new();
        self.open = false;
        self.rotate_due = false;
        self.epoch = 0;
        self.quarantine = Vec::new();
        self.scanned = 0;
        self.last_check = None;
    }

    fn alloc(&mut self, size: usize, align: usize) -> Result<(Allocation, bool)> {
        self.reset_if_forked();
        // Power-of-two slots are aligned to their size (up to a page) because
        // the bump pointer is kept so aligned; so an alignment above the size
        // is served by a bigger slot.
        let (class, slot) = class_of(size.max(align));
        let mut reused = self.free[class].pop();
        if reused.is_none()
            && !self.quarantine.is_empty()
            && self.last_check.is_none_or(|t| t.elapsed() >= CHECK_EVERY)
        {
            self.release();
            reused = self.free[class].pop();
        }
        let born = self.epoch;
        let slot_at = |ptr, arena| Allocation {
            ptr,
            size: slot,
            arena,
            born,
            owned: true,
        };
        if let Some(addr) = reused {
            let arena = self.arena_of(addr);
            let ptr = NonNull::new(addr as *mut u8).expect("free list holds non-null addresses");
            return Ok((slot_at(ptr, arena), false));
        }
        let slot_align = slot.min(MAX_ALIGN);
        let mut start = self.bump.next_multiple_of(slot_align);
        if self.arenas.is_empty() || start + slot > ARENA_SIZE {
            let map = SharedMapping::new(ARENA_NAME, ARENA_SIZE, false)?;
            self.arenas.push(Arc::new(Arena {
                map,
                owner: self.pid,
            }));
            start = 0;
        }
        let arena = self
            .arenas
            .last()
            .expect("an arena was just ensured")
            .clone();
        self.bump = start + slot;
        // SAFETY: `start + slot <= ARENA_SIZE`, the mapping's length.
        let ptr = unsafe { arena.map.as_ptr().add(start) };
        let ptr = NonNull::new(ptr).expect("mmap never returns null");
        Ok((slot_at(ptr, arena), true))
    }

    fn arena_of(&self, addr: usize) -> Arc<Arena> {
        self.arenas
            .iter()
            .find(|a| {
                let base = a.map.as_ptr() as usize;
                (base..base + a.map.len()).contains(&addr)
            })
            .expect("a free slot lies in one of this heap's arenas")
            .clone()
    }

    fn free(&mut self, ptr: NonNull<u8>, size: usize, arena: &Arc<Arena>, born: u64) {
        if self.me != incarnation() || !self.arenas.iter().any(|a| Arc::ptr_eq(a, arena)) {
            // The parent's object, dropped in a child: the parent still uses
            // the slot. Leave it alone. (Arenas are told apart by identity,
            // not by owner pid: a descendant may get a dead ancestor's pid.)
            return;
        }
        let (class, _) = class_of(size);
        let addr = ptr.as_ptr() as usize;
        if born == self.epoch {
            // No fork since it was allocated: no other process has it.
            self.free[class].push(addr);
            return;
        }
        self.quarantine.push(Quarantined {
            addr,
            class,
            born,
            freed: self.epoch,
        });
        // The open generation must end before this slot comes back: let
        // go of it at the next check (not now: forks until then join it at
        // no cost, and the slot merely waits for them too).
        self.rotate_due = self.open;
    }

    /// Before a fork (or a spawn) from this process: makes sure there is an
    /// open generation for the child to join, and counts the fork.
    fn before_fork(&mut self) {
        self.reset_if_forked();
        if self.arenas.is_empty() {
            // Nothing allocated yet: the child can hold no slot of ours.
            return;
        }
        if self.open {
            if let Some(g) = self.gens.last_mut() {
                g.last = self.epoch;
            }
        } else {
            if self.gens.len() >= PRUNE_AT {
                self.release();
            }
            let (read, write) = match sysfd::pipe() {
                Ok((r, w)) => (Some(r), Some(w)),
                // Leak rather than fail the fork: this generation never ends.
                Err(_) => (None, None),
            };
            self.gens.push(Generation {
                read,
                first: self.epoch,
                last: self.epoch,
            });
            self.write = write;
            self.open = true;
        }
        self.epoch += 1;
    }

    /// Drops the generations that have ended and moves the quarantined
    /// slots that no longer wait for any to their free lists.
    fn release(&mut self) {
        self.last_check = Some(Instant::now());
        if self.rotate_due {
            // Later forks go to a new generation, and the open one can end
            // now that this process lets go of its write end.
            self.rotate_due = false;
            self.open = false;
            self.write = None;
        }
        let watched: Vec<usize> = (0..self.gens.len())
            .filter(|&i| self.gens[i].read.is_some())
            .collect();
        let ended = {
            let fds: Vec<_> = watched
                .iter()
                .filter_map(|&i| self.gens[i].read.as_ref().map(|r| r.as_fd()))
                .collect();
            sysfd::hung_up(&fds)
        };
        let mut any_ended = false;
        for (&i, &hup) in watched.iter().zip(&ended).rev() {
            if hup {
                // Closes the read end.
                self.gens.remove(i);
                any_ended = true;
            }
        }
        if any_ended {
            self.scanned = 0;
        }
        let mut i = self.scanned;
        while i < self.quarantine.len() {
            let q = &self.quarantine[i];
            if self.gens.iter().any(|g| q.needs(g)) {
                i += 1;
            } else {
                let q = self.quarantine.swap_remove(i);
                self.free[q.class].push(q.addr);
            }
        }
        self.scanned = self.quarantine.len();
    }
}

/// The heap, locked across a fork (see [`lock_for_fork`]).
struct ForkGuard(Option<MutexGuard<'static, Heap>>);

impl atfork::Held for ForkGuard {
    /// Right after the fork, in the parent (`in_child` false: also when the
    /// fork failed) or in the child: unlocks the heap. In the child, closes
    /// the parent's read ends; the write end of the generation it was
    /// forked in stays open for good (it moves to `held` at the child's
    /// first use of the heap, with the rest of the reset). Only for a fork
    /// from a process with other threads (see [`lock_for_fork`]).
    ///
    /// The child touches as little memory as it can here: every page it
    /// writes is copied (a fault of a microsecond or more), so it neither
    /// frees nor allocates.
    fn forked(&mut self, in_child: bool) {
        let Some(mut heap) = self.0.take() else {
            return;
        };
        if in_child {
            // The rest of the parent's bookkeeping is forgotten at the
            // child's first use of the heap.
            heap.pid = 0;
            heap.me = 0;
            let gens = std::mem::take(&mut heap.gens);
            for g in &gens {
                if let Some(r) = &g.read {
                    // SAFETY: this process's copy of the read end, owned by
                    // `gens`, which is forgotten below (never dropped).
                    unsafe { sysfd::close_raw(r.as_raw_fd()) };
                }
            }
            // Closed above: the descriptors must not be closed again, and
            // freeing the buffer would write to it.
            std::mem::forget(gens);
        }
    }
}

/// The heap's fork hook (registered in [`atfork`] by [`lock_heap`]):
/// readies the generation the child joins (see the module docs) and, if
/// other threads may run (`hold`), holds the heap's lock across the fork,
/// so that no other thread holds it in the child's copy of memory.
///
/// From a process with one thread nothing is held and the child's copy of
/// the heap is left as it is: every page a child writes is copied, a fault
/// of a microsecond or more. The child recognises the bookkeeping as its
/// parent's at its first use of the heap (the stamp differs: see
/// [`incarnation`]) and resets it then, closing the parent's read ends. A
/// child that never uses the heap keeps those read ends open until it
/// ends, which delays nothing: a generation ends when its write ends close.
/// Where the stamp cannot tell a child from its parent (no fork handler),
/// every fork holds and resets it.
fn lock_for_fork(hold: bool) -> Option<Box<dyn atfork::Held>> {
    let mut heap = HEAP.lock().unwrap_or_else(|p| p.into_inner());
    heap.before_fork();
    if hold || thread::incarnation().is_none() {
        Some(Box::new(ForkGuard(Some(heap))))
    } else {
        None
    }
}

/// What a spawned child must inherit to be covered by the quarantine like a
/// forked one: the generation write ends this process holds. Counts as a
/// fork (objects made before it wait for the child once freed). Keep it
/// until the child has started (`exec` done); the descriptors are
/// close-on-exec, so they must be made inheritable in the child only.
#[cfg_attr(not(feature = "spawn"), allow(dead_code))]
pub(crate) struct SpawnInheritance {
    held: Vec<RawFd>,
    /// A copy of the open generation's write end, which the heap may close
    /// meanwhile.
    own: Option<OwnedFd>,
}

#[cfg_attr(not(feature = "spawn"), allow(dead_code))]
impl SpawnInheritance {
    /// The descriptors to pass, valid while `self` lives.
    pub(crate) fn fds(&self) -> Vec<RawFd> {
        let mut v = self.held.clone();
        v.extend(self.own.as_ref().map(|w| w.as_raw_fd()));
        v
    }
}

/// Readies the descriptors a spawned child inherits (see
/// [`SpawnInheritance`]).
#[cfg_attr(not(feature = "spawn"), allow(dead_code))]
pub(crate) fn for_spawn() -> SpawnInheritance {
    let mut heap = lock_heap();
    heap.before_fork();
    let own = match heap.write.as_ref().map(|w| w.try_clone()) {
        Some(Ok(w)) => Some(w),
        // Cannot pass it: this generation must never end.
        Some(Err(_)) => {
            if let Some(g) = heap.gens.last_mut() {
                g.read = None;
            }
            None
        }
        None => None,
    };
    SpawnInheritance {
        held: heap.held.clone(),
        own,
    }
}

/// In a spawned child: `fds` are the generation write ends the parent
/// passed (see [`for_spawn`]); they are held for the whole life of this
/// process and handed on to its own children.
///
/// # Safety
///
/// `fds` must be descriptors inherited for this purpose that nothing else
/// in this process owns or closes.
#[cfg_attr(not(feature = "spawn"), allow(dead_code))]
pub(crate) unsafe fn hold_inherited(fds: &[RawFd]) {
    let mut heap = lock_heap();
    for &fd in fds {
        // Close-on-exec again, so programs this one execs do not hold them
        // unknowingly (its own spawns pass them on explicitly).
        // SAFETY: by the caller's promise `fd` is an open descriptor of
        // ours, and it stays open for good (nothing closes it).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        // One that cannot be flagged cannot be passed on either (a later
        // spawn would fail to make it inheritable): leave it out.
        if sysfd::set_cloexec(borrowed) {
            heap.held.push(fd);
        }
    }
}

/// Allocates `size` bytes aligned to `align` (a power of two, at most a
/// page) in shared memory. The second value tells whether the bytes are
/// fresh (known to be zero) or a reused slot (any content).
pub(crate) fn alloc(size: usize, align: usize) -> Result<(Allocation, bool)> {
    if !align.is_power_of_two() || align > MAX_ALIGN {
        return Err(Error::InvalidArgument(
            "alignment must be a power of two of at most 4096",
        ));
    }
    let size = size.max(1);
    if size.max(align) > SMALL_MAX {
        return Ok((block(size, true)?, true));
    }
    let mut heap = lock_heap();
    heap.alloc(size, align)
}

/// A zeroed mapping of its own, of at least `size` bytes, whose pages are
/// faulted in on first touch rather than now: for large buffers that may
/// never be used whole (a pipe's rings), where populating would make
/// creating them cost milliseconds.
///
/// Its size is sealed (neither shrinking nor growing), so that the memfd
/// can be handed to a process that did not make it (a pipe end passed with
/// [`Connection::send_connection`](crate::Connection::send_connection)),
/// which checks the seal before mapping it: nobody can then truncate it
/// under that process's feet.
pub(crate) fn alloc_lazy(size: usize) -> Result<Allocation> {
    let map = SharedMapping::new_sealed(BLOCK_NAME, size.max(SMALL_MAX + 1))?;
    Ok(own_block(map))
}

/// Another process's lazy block ([`alloc_lazy`]), received as a memfd
/// whose size is sealed and at least `min` bytes: mapped here as a block of
/// its own, unmapped when the last handle goes.
pub(crate) fn adopt_block(fd: OwnedFd, min: usize) -> Result<Allocation> {
    let map = SharedMapping::from_sealed_fd(fd, min)?;
    let size = map.len().max(SMALL_MAX + 1);
    let arena = Arc::new(Arena::adopted(map, 0));
    Allocation::adopt(arena, 0, size)
}

/// A mapping of its own for a large block.
fn block(size: usize, populate: bool) -> Result<Allocation> {
    Ok(own_block(SharedMapping::new(BLOCK_NAME, size, populate)?))
}

/// The allocation of a whole mapping made by this process.
fn own_block(map: SharedMapping) -> Allocation {
    let ptr = NonNull::new(map.as_ptr()).expect("mmap never returns null");
    let len = map.len();
    Allocation {
        ptr,
        size: len.max(SMALL_MAX + 1),
        arena: Arc::new(Arena {
            map,
            owner: thread::pid(),
        }),
        born: 0,
        owned: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up() {
        assert_eq!(class_of(1), (0, 16));
        assert_eq!(class_of(16), (0, 16));
        assert_eq!(class_of(17), (1, 32));
        assert_eq!(class_of(SMALL_MAX), (CLASSES - 1, SMALL_MAX));
    }

    #[test]
    fn freed_slots_are_reused_and_aligned() {
        // A private heap, so tests running beside this one cannot take the
        // freed slot first.
        let mut heap = Heap::new();
        let (a, fresh) = heap.alloc(24, 8).unwrap();
        assert!(fresh);
        let addr = a.ptr().as_ptr() as usize;
        assert_eq!(addr % 32, 0);
        heap.free(a.ptr(), a.size, &a.arena, a.born);
        std::mem::forget(a); // freed by hand above, not into the global heap
        let (b, fresh) = heap.alloc(30, 8).unwrap();
        assert_eq!(b.ptr().as_ptr() as usize, addr);
        assert!(!fresh);
        let (c, _) = heap.alloc(8, 4096).unwrap();
        assert_eq!(c.ptr().as_ptr() as usize % 4096, 0);
        let (d, _) = heap.alloc(100, 8).unwrap();
        assert_ne!(d.ptr(), c.ptr());
        // These belong to `heap`, not the global one.
        std::mem::forget((b, c, d));
    }

    /// This module's forking tests run one at a time (under `cargo test`
    /// they share one process).
    static FORKING: Mutex<()> = Mutex::new(());

    /// The bound on every wait.
    const WAIT: Duration = Duration::from_secs(10);

    /// Forks a child running `f` (its exit code); the parent's copy of `f`
    /// stays in the returned option, for the test to drop (free) when it
    /// wants.
    use crate::sys::process as sysproc;

    fn fork<F: FnOnce() -> i32>(f: F) -> (nix::unistd::Pid, Option<F>) {
        let mut run = Some(f);
        // SAFETY: the children touch only shared memory, pipes and the heap
        // (whose lock `fork` holds across the fork); no other lock that a
        // thread of the test harness may hold.
        let pid = unsafe { sysproc::fork(false, || {}, &mut run) }
            .expect("fork")
            .0;
        (pid, run)
    }

    /// Whether `fd` becomes readable (or hung up) within `WAIT`.
    fn ready(fd: &OwnedFd) -> bool {
        matches!(sysfd::poll_readable(&[fd.as_fd()], Some(WAIT)), Ok(r) if !r.is_empty())
    }

    /// Waits (at most `WAIT`) for the child `pid` to end; its exit code.
    fn wait_exit(pid: nix::unistd::Pid) -> i32 {
        let pidfd = sysproc::pidfd_open(pid).expect("pidfd");
        if !ready(&pidfd) {
            let _ = sysproc::pidfd_signal(&pidfd, libc::SIGKILL);
            let _ = sysproc::reap(pid, true);
            panic!("child {pid} did not end in time");
        }
        match sysproc::reap(pid, true) {
            Ok(Some(sysproc::Reaped::Exited(code))) => code,
            _ => panic!("child {pid} did not exit normally"),
        }
    }

    fn signal(fd: &OwnedFd) {
        sysfd::write_all(fd, b"x");
    }

    fn addr(a: &Allocation) -> usize {
        a.ptr().as_ptr() as usize
    }

    fn fill(a: &Allocation, len: usize, byte: u8) {
        // SAFETY: `a` holds at least `len` bytes, used by this test only.
        unsafe { a.ptr().as_ptr().write_bytes(byte, len) };
    }

    fn all(a: &Allocation, len: usize, byte: u8) -> bool {
        // SAFETY: `a` holds at least `len` bytes, initialised by `fill`.
        let bytes = unsafe { std::slice::from_raw_parts(a.ptr().as_ptr(), len) };
        bytes.iter().all(|&b| b == byte)
    }

    /// Eight new allocations of `len` bytes, each filled with `byte`.
    fn filled(len: usize, byte: u8) -> Vec<Allocation> {
        let fresh: Vec<Allocation> = (0..8).map(|_| alloc(len, 8).unwrap().0).collect();
        for f in &fresh {
            fill(f, len, byte);
        }
        fresh
    }

    /// None of `fresh` (from [`filled`]) is the slot at `old` that `who`
    /// still used, and `who` wrote into none of them.
    #[track_caller]
    fn untouched(fresh: &[Allocation], old: usize, len: usize, byte: u8, who: &str) {
        for f in fresh {
            assert_ne!(addr(f), old, "the {who}'s slot was reused");
            assert!(all(f, len, byte), "the {who} wrote into a new object");
        }
    }

    /// The parent frees its handle of a slot that a running child still
    /// uses: the next allocations of that size must not get the slot, or
    /// the child's writes would land in them.
    #[test]
    fn a_slot_freed_while_a_child_uses_it_is_not_reused() {
        let _serial = FORKING.lock().unwrap_or_else(|p| p.into_inner());
        const LEN: usize = 1000;
        let (a, _) = alloc(LEN, 8).unwrap();
        let old = addr(&a);
        let (go_r, go_w) = sysfd::pipe().unwrap();
        let (pid, closure) = fork(move || {
            if !ready(&go_r) {
                return 2;
            }
            // The child's own handle, still valid in the child.
            fill(&a, LEN, 0xAB);
            0
        });
        // Free the parent's handle (it lives in the parent's copy of the
        // closure).
        drop(closure);
        let fresh = filled(LEN, 0x11);
        signal(&go_w);
        assert_eq!(wait_exit(pid), 0);
        untouched(&fresh, old, LEN, 0x11, "child");
    }

    /// As above, but the one still using the slot is a grandchild whose
    /// parent (the child) has ended.
    #[test]
    fn a_grandchild_outliving_its_parent_keeps_the_slot() {
        let _serial = FORKING.lock().unwrap_or_else(|p| p.into_inner());
        const LEN: usize = 3000;
        let (a, _) = alloc(LEN, 8).unwrap();
        let old = addr(&a);
        let (go_r, go_w) = sysfd::pipe().unwrap();
        let (done_r, done_w) = sysfd::pipe().unwrap();
        let (pid, closure) = fork(move || {
            let (_grandchild, _) = fork(move || {
                if !ready(&go_r) {
                    return 2;
                }
                fill(&a, LEN, 0xCD);
                signal(&done_w);
                0
            });
            // The child ends at once; the grandchild lives on.
            0
        });
        drop(closure);
        assert_eq!(wait_exit(pid), 0);
        let fresh = filled(LEN, 0x22);
        signal(&go_w);
        assert!(ready(&done_r), "the grandchild did not write in time");
        untouched(&fresh, old, LEN, 0x22, "grandchild");
    }

    /// Once the children that could use a slot have ended (reaped or not),
    /// the slot is reused: the quarantine does not leak in the normal case.
    #[test]
    fn quarantined_slots_are_reused_once_the_children_end() {
        let _serial = FORKING.lock().unwrap_or_else(|p| p.into_inner());
        const LEN: usize = 200;
        let (a, _) = alloc(LEN, 8).unwrap();
        let old = addr(&a);
        let (go_r, go_w) = sysfd::pipe().unwrap();
        let (pid, closure) = fork(move || {
            let _a = a;
            if ready(&go_r) { 0 } else { 2 }
        });
        drop(closure);
        let mut kept = vec![alloc(LEN, 8).unwrap().0];
        assert_ne!(addr(&kept[0]), old, "reused while the child runs");
        signal(&go_w);
        // Ended, not reaped yet: a zombie holds no descriptor, so it holds
        // nothing up.
        let pidfd = sysproc::pidfd_open(pid).unwrap();
        assert!(ready(&pidfd), "the child did not end in time");
        // Allocations that miss the free list look at the quarantine (at
        // most once a millisecond).
        let deadline = Instant::now() + WAIT;
        loop {
            let (b, fresh) = alloc(LEN, 8).unwrap();
            if addr(&b) == old {
                assert!(!fresh);
                break;
            }
            kept.push(b);
            assert!(Instant::now() < deadline, "the slot was never reused");
        }
        assert_eq!(wait_exit(pid), 0);
    }

    fn pipes_open() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("pipe:"))
            })
            .count()
    }

    /// Many rounds of allocate, fork, free, join keep a bounded number of
    /// generation pipes open.
    #[test]
    fn fork_free_join_cycles_leak_no_descriptors() {
        let _serial = FORKING.lock().unwrap_or_else(|p| p.into_inner());
        let before = pipes_open();
        for _ in 0..100 {
            let (a, _) = alloc(100, 8).unwrap();
            let (pid, closure) = fork(move || {
                let _a = a;
                0
            });
            drop(closure);
            assert_eq!(wait_exit(pid), 0);
        }
        let after = pipes_open();
        assert!(
            after <= before + PRUNE_AT + 1,
            "{before} pipes open before, {after} after"
        );
    }

    #[test]
    fn large_blocks_get_their_own_mapping() {
        let (a, fresh) = alloc(SMALL_MAX + 1, 8).unwrap();
        assert!(fresh);
        let last = a.ptr().as_ptr().wrapping_add(SMALL_MAX);
        // SAFETY: the block is at least SMALL_MAX + 1 bytes, freshly mapped:
        // `last` is its byte at offset SMALL_MAX.
        unsafe { last.write(7) };
    }
}
