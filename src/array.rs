//! `Array` and `RawArray`: a fixed-length run of `T` in shared memory.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::{Error, LockError, LockResult, Result, TryLockResult};
use crate::shm::heap::{self, Allocation};
use crate::shm::{Atomic, ShmSafe, assert_no_drop};
use crate::sync::{Blocking, MappedMutexGuard, Mutex, MutexGuard, forever, lock_mutex};
use crate::sys::futex::Deadline;

/// Room for `len` elements of `T` after a header of `header` bytes:
/// (total size, offset of the first element).
fn layout<T>(header: usize, len: usize) -> Result<(usize, usize)> {
    let off = header.next_multiple_of(std::mem::align_of::<T>());
    std::mem::size_of::<T>()
        .checked_mul(len)
        .and_then(|n| n.checked_add(off))
        .filter(|&n| n <= isize::MAX as usize)
        .map(|n| (n, off))
        .ok_or(Error::InvalidSize {
            size: len,
            reason: "array too large",
        })
}

/// Allocates room for `len` zeroed `T`s after `header` bytes.
fn alloc_zeroed<T: ShmSafe>(header: usize, len: usize) -> Result<(Allocation, usize)> {
    const { assert_no_drop::<T>() };
    let (size, off) = layout::<T>(header, len)?;
    let align = std::mem::align_of::<T>().max(std::mem::align_of::<Mutex<()>>());
    let (alloc, fresh) = heap::alloc(size, align)?;
    if !fresh {
        // SAFETY: the allocation holds `size` bytes that nobody else uses yet;
        // all-zero bytes are a valid T (ShmSafe's contract).
        unsafe { alloc.ptr().as_ptr().write_bytes(0, size) };
    }
    Ok((alloc, off))
}

fn check_index(index: usize, len: usize) -> Result<()> {
    if index < len {
        Ok(())
    } else {
        Err(Error::IndexOutOfBounds { index, len })
    }
}

/// A fixed-length array in shared memory with a process-shared lock, like
/// Python's `multiprocessing.Array` (`Array('i', 10)` is
/// `Array::<i32>::zeroed(10)`, `Array('d', [1.0, 2.0])` is
/// `Array::from_slice(&[1.0, 2.0])`).
///
/// The lock's guard derefs to `[T]`.
///
/// # Examples
///
/// ```
/// let a = multiproc::Array::from_slice(&[1.0f64, 2.0])?;
/// a.lock().unwrap()[1] = 5.0;
/// assert_eq!(a.get(1)?, 5.0);
/// assert!(a.get(2).is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct Array<T: ShmSafe> {
    alloc: Allocation,
    len: usize,
    data: usize,
    _marker: PhantomData<T>,
}

// SAFETY: the elements are only reached under the process-shared lock (or
// through `&mut self`); T: Send suffices as for `std::sync::Mutex<T>`.
unsafe impl<T: ShmSafe> Sync for Array<T> {}
// SAFETY: the handle is an address in a shared mapping kept alive by the
// allocation; moving it between threads is fine for T: Send.
unsafe impl<T: ShmSafe> Send for Array<T> {}

impl<T: ShmSafe> Array<T> {
    /// `len` elements, all zero.
    pub fn zeroed(len: usize) -> Result<Array<T>> {
        let header = std::mem::size_of::<Mutex<()>>();
        let (alloc, data) = alloc_zeroed::<T>(header, len)?;
        // SAFETY: the header is in bounds, aligned for Mutex<()> (the
        // allocation is), and an all-zero Mutex<()> is an unlocked one; write
        // it properly anyway.
        unsafe {
            alloc
                .ptr()
                .cast::<Mutex<()>>()
                .as_ptr()
                .write(Mutex::new(()))
        };
        Ok(Array {
            alloc,
            len,
            data,
            _marker: PhantomData,
        })
    }

    /// The elements of `values`, copied into shared memory.
    pub fn from_slice(values: &[T]) -> Result<Array<T>>
    where
        T: Copy,
    {
        let a = Self::zeroed(values.len())?;
        // SAFETY: nobody else can reach the new array yet.
        unsafe {
            a.data_ptr()
                .copy_from_nonoverlapping(values.as_ptr(), values.len())
        };
        Ok(a)
    }

    /// `len` elements, element `i` being `f(i)`.
    pub fn from_fn(len: usize, mut f: impl FnMut(usize) -> T) -> Result<Array<T>> {
        let a = Self::zeroed(len)?;
        for i in 0..len {
            // SAFETY: `i < len`; nobody else can reach the new array yet.
            unsafe { a.data_ptr().add(i).write(f(i)) };
        }
        Ok(a)
    }

    fn mutex(&self) -> &Mutex<()> {
        // SAFETY: written in `zeroed`, lives as long as the allocation.
        unsafe { &*self.alloc.ptr().cast::<Mutex<()>>().as_ptr() }
    }

    fn data_ptr(&self) -> *mut T {
        // SAFETY: `data` is within the allocation (computed by `layout`).
        unsafe { self.alloc.ptr().as_ptr().add(self.data).cast::<T>() }
    }

    fn map<'a>(&'a self, g: MutexGuard<'a, ()>) -> MappedMutexGuard<'a, [T]> {
        let (ptr, len) = (self.data_ptr(), self.len);
        MutexGuard::map(g, |_| {
            // SAFETY: the lock is held, so this is the only access to the
            // elements; they are valid and in bounds.
            unsafe { std::slice::from_raw_parts_mut(ptr, len) }
        })
    }

    /// Waits for the lock; the guard derefs to the elements.
    #[doc(alias = "get_lock")]
    pub fn lock(&self) -> LockResult<MappedMutexGuard<'_, [T]>> {
        forever(lock_mutex(self.mutex(), Blocking::Until(Deadline::NEVER)))
            .map(|g| self.map(g))
            .map_err(|e| e.map(|g| self.map(g)))
    }

    /// Takes the lock if it is free, without waiting.
    pub fn try_lock(&self) -> TryLockResult<MappedMutexGuard<'_, [T]>> {
        lock_mutex(self.mutex(), Blocking::No)
            .map(|g| self.map(g))
            .map_err(|e| e.map(|g| self.map(g)))
    }

    /// Waits at most `timeout` for the lock. A zero timeout never blocks.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<MappedMutexGuard<'_, [T]>> {
        lock_mutex(self.mutex(), Blocking::Until(Deadline::after(timeout)))
            .map(|g| self.map(g))
            .map_err(|e| e.map(|g| self.map(g)))
    }

    /// Runs `f` on the elements under the lock (recovering a lock whose
    /// owner died; use [`lock`](Array::lock) to learn of it).
    ///
    /// # Panics
    ///
    /// If this thread holds the lock already (a guard from
    /// [`lock`](Array::lock) is alive): waiting would never end. The same
    /// holds for [`to_vec`](Array::to_vec); [`get`](Array::get) and
    /// [`set`](Array::set) return [`Error::WouldDeadlock`] instead.
    #[track_caller]
    pub fn update<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        // A `match`, not a closure, so that a panic names the caller.
        let mut g = match self.lock() {
            Ok(g) => g,
            Err(e) => e.into_guard(),
        };
        f(&mut g)
    }

    /// Runs `f` under the lock, recovering a dead owner's lock;
    /// [`Error::WouldDeadlock`] if this thread holds it already.
    fn try_update<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        let mut g = match self.lock() {
            Ok(g) => g,
            Err(LockError::OwnerDied(e)) => e.into_guard(),
            Err(LockError::WouldDeadlock) => return Err(Error::WouldDeadlock),
        };
        Ok(f(&mut g))
    }

    /// Stores `value` at `index` under the lock.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfBounds`] past the end, [`Error::WouldDeadlock`]
    /// if this thread holds the lock already.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        check_index(index, self.len)?;
        self.try_update(|s| s[index] = value)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: ShmSafe + Copy> Array<T> {
    /// A copy of element `index`, read under the lock.
    ///
    /// # Errors
    ///
    /// As for [`set`](Array::set).
    pub fn get(&self, index: usize) -> Result<T> {
        check_index(index, self.len)?;
        self.try_update(|s| s[index])
    }

    /// A copy of all elements, read under the lock.
    ///
    /// # Panics
    ///
    /// If this thread holds the lock already; see [`update`](Array::update).
    #[track_caller]
    pub fn to_vec(&self) -> Vec<T> {
        self.update(|s| s.to_vec())
    }
}

impl<T: ShmSafe + Copy + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_lock() {
            Ok(g) => f.debug_tuple("Array").field(&&*g).finish(),
            Err(_) => write!(f, "Array(<locked>, len {})", self.len),
        }
    }
}

/// A fixed-length array in shared memory without a lock, like Python's
/// `multiprocessing.RawArray`.
///
/// For primitives ([`Atomic`] types) `get`, `set` and `fill` are atomic per
/// element and safe from any number of processes. For bulk work, such as
/// processes filling disjoint parts, the `unsafe` slice views give plain
/// memory speed; their safety rules are the caller's to keep.
///
/// # Examples
///
/// ```
/// let a = multiproc::RawArray::<u32>::zeroed(4)?;
/// a.set(3, 7)?;
/// assert_eq!(a.get(3)?, 7);
/// a.fill(1..3, 9)?;
/// assert_eq!(a.to_vec(), vec![0, 9, 9, 7]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(bound = "")
)]
pub struct RawArray<T: ShmSafe> {
    alloc: Allocation,
    len: usize,
    _marker: PhantomData<T>,
}

// SAFETY: safe access is atomic per element (T: Atomic) and unsafe access
// puts the data-race rules on the caller, so sharing a handle between
// threads adds nothing beyond what processes already do.
unsafe impl<T: ShmSafe> Sync for RawArray<T> {}
// SAFETY: as for `Array`.
unsafe impl<T: ShmSafe> Send for RawArray<T> {}

impl<T: ShmSafe> RawArray<T> {
    /// `len` elements, all zero. Arrays above 256 KiB get a mapping of their
    /// own whose pages are faulted in at creation, so filling them later
    /// runs at memory speed.
    pub fn zeroed(len: usize) -> Result<RawArray<T>> {
        let (alloc, _) = alloc_zeroed::<T>(0, len)?;
        Ok(RawArray {
            alloc,
            len,
            _marker: PhantomData,
        })
    }

    /// The elements of `values`, copied into shared memory.
    pub fn from_slice(values: &[T]) -> Result<RawArray<T>>
    where
        T: Copy,
    {
        let a = Self::zeroed(values.len())?;
        // SAFETY: nobody else can reach the new array yet.
        unsafe {
            a.as_ptr()
                .copy_from_nonoverlapping(values.as_ptr(), values.len())
        };
        Ok(a)
    }

    /// The first element's address. It is the same in a fork child.
    pub fn as_ptr(&self) -> *mut T {
        self.alloc.ptr().cast::<T>().as_ptr()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All elements as a shared slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, no thread of any process may write these
    /// elements (except through atomics, which this slice must then not
    /// read).
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: valid, aligned, in bounds; the absence of writers is the
        // caller's promise.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The elements in `range` as a mutable slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, no other thread of any process may read or
    /// write these elements, and no other slice of them may exist in this
    /// process: ranges handed to different processes or threads must be
    /// disjoint.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfBounds`] if `range` does not fit.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, range: Range<usize>) -> Result<&mut [T]> {
        if range.start > range.end || range.end > self.len {
            return Err(Error::IndexOutOfBounds {
                index: range.end,
                len: self.len,
            });
        }
        // SAFETY: in bounds (checked); exclusivity is the caller's promise.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.as_ptr().add(range.start), range.len()) })
    }
}

impl<T: Atomic> RawArray<T> {
    /// The elements as their atomic twins.
    pub fn as_atomics(&self) -> &[T::Repr] {
        // SAFETY: `T::Repr` has `T`'s size and alignment (asserted where the
        // `Atomic` impls are made); the elements are valid for the life of
        // `self`, and safe code reaches them only atomically.
        unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<T::Repr>(), self.len) }
    }

    /// Reads element `index` (atomically).
    pub fn get(&self, index: usize) -> Result<T> {
        check_index(index, self.len)?;
        Ok(T::load(&self.as_atomics()[index], Ordering::SeqCst))
    }

    /// Writes element `index` (atomically).
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        check_index(index, self.len)?;
        T::store(&self.as_atomics()[index], value, Ordering::SeqCst);
        Ok(())
    }

    /// Writes `value` to every element in `range` (each store atomic and
    /// relaxed: at memory speed, visible to others once they synchronize).
    pub fn fill(&self, range: Range<usize>, value: T) -> Result<()> {
        if range.start > range.end || range.end > self.len {
            return Err(Error::IndexOutOfBounds {
                index: range.end,
                len: self.len,
            });
        }
        for a in &self.as_atomics()[range] {
            T::store(a, value, Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Release);
        Ok(())
    }

    /// A copy of all elements (each read atomically).
    pub fn to_vec(&self) -> Vec<T> {
        self.as_atomics()
            .iter()
            .map(|a| T::load(a, Ordering::SeqCst))
            .collect()
    }
}

impl<T: Atomic + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&self.to_vec()).finish()
    }
}
