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

use std::ffi::CStr;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::sys::mem::SharedMapping;
use crate::sys::thread;

/// The largest request served from the shared arenas.
pub(crate) const SMALL_MAX: usize = 256 * 1024;
const MIN_SLOT: usize = 16;
const CLASSES: usize = (SMALL_MAX / MIN_SLOT).trailing_zeros() as usize + 1;
const ARENA_SIZE: usize = 64 * 1024 * 1024;
/// Alignment guaranteed for every allocation (a page).
pub(crate) const MAX_ALIGN: usize = 4096;

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
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn mapping(&self) -> &SharedMapping {
        &self.map
    }

    /// The process whose heap owns the arena.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn owner(&self) -> i32 {
        self.owner
    }

    /// An arena of another process's heap, mapped again in this one (spawn
    /// start method). This process never frees into it.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
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
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn location(&self) -> (&Arc<Arena>, usize, usize) {
        let off = self.ptr.as_ptr() as usize - self.arena.map.as_ptr() as usize;
        (&self.arena, off, self.size)
    }

    /// The allocation at `offset` in `arena` (an adopted one), `size` bytes.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
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
        })
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        if self.size > SMALL_MAX {
            // A mapping of its own: dropping the last `Arc` unmaps it (in this
            // process; other processes keep their own mappings).
            return;
        }
        // Never panic in drop: a poisoned heap lock is still usable.
        let mut heap = HEAP.lock().unwrap_or_else(|p| p.into_inner());
        heap.free(self.ptr, self.size, &self.arena);
    }
}

struct Heap {
    /// The process this bookkeeping belongs to (0: none yet).
    pid: i32,
    arenas: Vec<Arc<Arena>>,
    /// Bump offset into the last arena.
    bump: usize,
    free: [Vec<usize>; CLASSES],
}

static HEAP: Mutex<Heap> = Mutex::new(Heap::new());

fn class_of(size: usize) -> (usize, usize) {
    let slot = size.max(MIN_SLOT).next_power_of_two();
    let class = (slot / MIN_SLOT).trailing_zeros() as usize;
    (class, slot)
}

impl Heap {
    const fn new() -> Heap {
        Heap {
            pid: 0,
            arenas: Vec::new(),
            bump: 0,
            free: [const { Vec::new() }; CLASSES],
        }
    }

    fn reset_if_forked(&mut self) {
        let pid = thread::pid();
        if self.pid != pid {
            // A fresh process (or a fork child): the inherited bookkeeping
            // describes the parent's arenas. Forget it; the parent's objects
            // stay mapped through their own handles.
            self.pid = pid;
            self.arenas = Vec::new();
            self.bump = 0;
            for f in &mut self.free {
                *f = Vec::new();
            }
        }
    }

    fn alloc(&mut self, size: usize, align: usize) -> Result<(Allocation, bool)> {
        self.reset_if_forked();
        // Power-of-two slots are aligned to their size (up to a page) because
        // the bump pointer is kept so aligned; so an alignment above the size
        // is served by a bigger slot.
        let (class, slot) = class_of(size.max(align));
        if let Some(addr) = self.free[class].pop() {
            let arena = self.arena_of(addr);
            let ptr = NonNull::new(addr as *mut u8).expect("free list holds non-null addresses");
            return Ok((
                Allocation {
                    ptr,
                    size: slot,
                    arena,
                },
                false,
            ));
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
        Ok((
            Allocation {
                ptr,
                size: slot,
                arena,
            },
            true,
        ))
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

    fn free(&mut self, ptr: NonNull<u8>, size: usize, arena: &Arc<Arena>) {
        let pid = thread::pid();
        if arena.owner != pid || self.pid != pid {
            // The parent's object, dropped in a child: the parent still uses
            // the slot. Leave it alone.
            return;
        }
        let (class, _) = class_of(size);
        self.free[class].push(ptr.as_ptr() as usize);
    }
}

/// Holds the heap's lock across a fork, so that no other thread holds it in
/// the child's copy of memory.
pub(crate) fn lock_for_fork() -> std::sync::MutexGuard<'static, impl Sized> {
    HEAP.lock().unwrap_or_else(|p| p.into_inner())
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
    let mut heap = HEAP.lock().unwrap_or_else(|p| p.into_inner());
    heap.alloc(size, align)
}

/// A zeroed mapping of its own, of at least `size` bytes, whose pages are
/// faulted in on first touch rather than now: for large buffers that may
/// never be used whole (a pipe's rings), where populating would make
/// creating them cost milliseconds.
pub(crate) fn alloc_lazy(size: usize) -> Result<Allocation> {
    block(size.max(SMALL_MAX + 1), false)
}

/// A mapping of its own for a large block.
fn block(size: usize, populate: bool) -> Result<Allocation> {
    let map = SharedMapping::new(BLOCK_NAME, size, populate)?;
    let ptr = NonNull::new(map.as_ptr()).expect("mmap never returns null");
    let len = map.len();
    Ok(Allocation {
        ptr,
        size: len.max(SMALL_MAX + 1),
        arena: Arc::new(Arena {
            map,
            owner: thread::pid(),
        }),
    })
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
        heap.free(a.ptr(), a.size, &a.arena);
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

    #[test]
    fn large_blocks_get_their_own_mapping() {
        let (a, fresh) = alloc(SMALL_MAX + 1, 8).unwrap();
        assert!(fresh);
        // SAFETY: the block is at least SMALL_MAX + 1 bytes, freshly mapped.
        unsafe { a.ptr().as_ptr().add(SMALL_MAX).write(7) };
    }
}
