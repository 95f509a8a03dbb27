//! `Array` and `RawArray`: a fixed-length run of `T` in shared memory.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::{CreateError, Error, LockError, LockResult, Result, TryLockResult};
use crate::shm::heap::{self, Allocation};
use crate::shm::{Atomic, ShmSafe, assert_no_drop};
use crate::sync::{Blocking, MappedMutexGuard, Mutex, MutexGuard, forever, lock_mutex};

/// Room for `len` elements of `T` after a header of `header` bytes:
/// (total size, offset of the first element).
fn layout<T>(header: usize, len: usize) -> Result<(usize, usize), CreateError> {
    let off = header.next_multiple_of(std::mem::align_of::<T>());
    std::mem::size_of::<T>()
        .checked_mul(len)
        .and_then(|n| n.checked_add(off))
        .filter(|&n| n <= isize::MAX as usize)
        .map(|n| (n, off))
        .ok_or(CreateError::InvalidSize {
            size: len,
            reason: "array too large",
        })
}

/// Allocates room for `len` zeroed `T`s after `header` bytes.
fn alloc_zeroed<T: ShmSafe>(header: usize, len: usize) -> Result<(Allocation, usize), CreateError> {
    const { assert_no_drop::<T>() };
    let (size, off) = layout::<T>(header, len)?;
    let align = std::mem::align_of::<T>().max(std::mem::align_of::<Mutex<()>>());
    let (alloc, fresh) = heap::alloc(size, align).map_err(CreateError::from_internal)?;
    if !fresh {
        // The whole slot, not only `size` bytes: a handle forged with a
        // larger length that still fits the slot then finds zeros (valid
        // `T`s), not an earlier tenant's bytes.
        let slot = crate::shm::usable_len(&alloc);
        // SAFETY: the allocation holds `slot >= size` bytes that nobody else
        // uses yet; all-zero bytes are a valid T (ShmSafe's contract).
        unsafe { alloc.ptr().as_ptr().write_bytes(0, slot) };
    }
    Ok((alloc, off))
}

fn check_index(index: usize, len: usize) -> Result<(), IndexError> {
    if index < len {
        Ok(())
    } else {
        Err(IndexError { index, len })
    }
}

/// An index (or the end of a range) past the end of a [`RawArray`] or
/// [`Array`]. Converts into [`Error::IndexOutOfBounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("index {index} out of bounds for length {len}")]
pub struct IndexError {
    /// The index asked for.
    pub index: usize,
    /// The array's length.
    pub len: usize,
}

impl From<IndexError> for Error {
    fn from(e: IndexError) -> Error {
        Error::IndexOutOfBounds {
            index: e.index,
            len: e.len,
        }
    }
}

/// Why [`Array::get`] or [`Array::set`] failed. Converts into [`Error`]
/// variant for variant, so `?` works in a function returning
/// [`crate::Result`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArrayError {
    /// An index past the end of the array.
    #[error("index {index} out of bounds for length {len}")]
    IndexOutOfBounds {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// This thread holds the array's lock already (a guard from
    /// [`Array::lock`] is alive): taking it again would deadlock.
    #[error("this thread holds the array's lock already")]
    WouldDeadlock,
}

impl From<IndexError> for ArrayError {
    fn from(e: IndexError) -> ArrayError {
        ArrayError::IndexOutOfBounds {
            index: e.index,
            len: e.len,
        }
    }
}

impl From<ArrayError> for Error {
    fn from(e: ArrayError) -> Error {
        match e {
            ArrayError::IndexOutOfBounds { index, len } => Error::IndexOutOfBounds { index, len },
            ArrayError::WouldDeadlock => Error::WouldDeadlock,
        }
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
pub struct Array<T: ShmSafe> {
    /// Invariant: holds a `Mutex<()>` at offset 0 and `len` valid `T`s at
    /// `data`, where `(_, data) == layout::<T>(MUTEX, len)` and the whole
    /// layout lies in the allocation (checked on adoption from the wire).
    alloc: Allocation,
    len: usize,
    data: usize,
    /// The lock given to [`zeroed_with_lock`](Array::zeroed_with_lock), used instead of
    /// the array's own.
    lock: Option<crate::Lock>,
    _marker: PhantomData<T>,
}

/// The bytes before an [`Array`]'s elements: its lock.
const MUTEX: usize = std::mem::size_of::<Mutex<()>>();

/// The serialized form of an array handle: where it lies, its length, and
/// the element type it was sent as.
#[cfg(feature = "spawn")]
#[derive(serde::Serialize, serde::Deserialize)]
struct ArrayWire<A> {
    alloc: A,
    len: usize,
    ty: crate::shm::transfer::TypeTag,
}

/// Serializes the array handle `H` of `len` `T`s in `alloc`.
#[cfg(feature = "spawn")]
fn send<T: ShmSafe, H: 'static, S: serde::Serializer>(
    alloc: &Allocation,
    len: usize,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::Serialize;
    let ty = crate::shm::transfer::TypeTag::of_elements::<T, H>();
    crate::shm::transfer::note_sent(alloc, ty, len as u64);
    ArrayWire { alloc, len, ty }.serialize(s)
}

/// Reads an array handle `H` of `T`s with `header` bytes before its
/// elements, checked ([`adopt`]): its allocation, length and data offset.
#[cfg(feature = "spawn")]
fn receive<'de, T: ShmSafe, H: 'static, D: serde::Deserializer<'de>>(
    d: D,
    header: usize,
) -> std::result::Result<(Allocation, usize, usize), D::Error> {
    use serde::Deserialize;
    let w = ArrayWire::<Allocation>::deserialize(d)?;
    let data = adopt::<T, H>(&w, header).map_err(serde::de::Error::custom)?;
    Ok((w.alloc, w.len, data))
}

/// Checks a handle from the wire against `T` and returns its data offset:
/// the type it was sent as, then `len` elements after `header` bytes
/// (overflow-checked) within the allocation, aligned for `T` and the lock.
#[cfg(feature = "spawn")]
fn adopt<T: ShmSafe, A: 'static>(w: &ArrayWire<Allocation>, header: usize) -> Result<usize> {
    w.ty.check::<T, A>()?;
    crate::shm::transfer::check_received(&w.alloc, w.ty, w.len as u64)?;
    let (size, off) = layout::<T>(header, w.len)?;
    let align = std::mem::align_of::<T>().max(std::mem::align_of::<Mutex<()>>());
    if size > crate::shm::usable_len(&w.alloc) {
        return Err(Error::InvalidArgument(
            "an array arrived longer than the memory it lives in",
        ));
    }
    if !(w.alloc.ptr().as_ptr() as usize).is_multiple_of(align) {
        return Err(Error::InvalidArgument(
            "an array's memory is misaligned for its element type",
        ));
    }
    Ok(off)
}

/// An [`Array`] as it travels: the handle, then the shared lock if any.
#[cfg(feature = "spawn")]
struct WithLock<A>(A);

#[cfg(feature = "spawn")]
impl<T: ShmSafe> serde::Serialize for WithLock<&Array<T>> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        send::<T, Array<T>, S>(&self.0.alloc, self.0.len, s)
    }
}

#[cfg(feature = "spawn")]
impl<T: ShmSafe> serde::Serialize for Array<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let r = serde::Serialize::serialize(&(WithLock(self), &self.lock), s)?;
        match &self.lock {
            Some(l) => crate::shm::transfer::note_bundle(&[&self.alloc, l.alloc()]),
            None => crate::shm::transfer::note_bundle(&[&self.alloc]),
        }
        Ok(r)
    }
}

/// An [`Array`]'s handle as received: allocation, length, data offset.
#[cfg(feature = "spawn")]
type Received<T> = WithLock<(Allocation, usize, usize, PhantomData<T>)>;

#[cfg(feature = "spawn")]
impl<'de, T: ShmSafe> serde::Deserialize<'de> for Received<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (alloc, len, data) = receive::<T, Array<T>, D>(d, MUTEX)?;
        Ok(WithLock((alloc, len, data, PhantomData)))
    }
}

#[cfg(feature = "spawn")]
impl<'de, T: ShmSafe> serde::Deserialize<'de> for Array<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::Deserialize;
        let (WithLock((alloc, len, data, _)), lock): (Received<T>, Option<crate::Lock>) =
            Deserialize::deserialize(d)?;
        // Under the lock it was sent with (or its own), never another.
        match &lock {
            Some(l) => crate::shm::transfer::check_bundle(&[&alloc, l.alloc()]),
            None => crate::shm::transfer::check_bundle(&[&alloc]),
        }
        .map_err(serde::de::Error::custom)?;
        Ok(Array {
            alloc,
            len,
            data,
            lock,
            _marker: PhantomData,
        })
    }
}

// SAFETY: the elements are only reached under the process-shared lock (or
// through `&mut self`); T: Send suffices as for `std::sync::Mutex<T>`.
unsafe impl<T: ShmSafe> Sync for Array<T> {}
// SAFETY: the handle is an address in a shared mapping kept alive by the
// allocation; moving it between threads is fine for T: Send.
unsafe impl<T: ShmSafe> Send for Array<T> {}

impl<T: ShmSafe> Array<T> {
    /// `len` elements, all zero.
    pub fn zeroed(len: usize) -> Result<Array<T>, CreateError> {
        let (alloc, data) = alloc_zeroed::<T>(MUTEX, len)?;
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
            lock: None,
            _marker: PhantomData,
        })
    }

    /// `len` zeroed elements under an existing `lock` instead of a lock of
    /// their own (Python's `Array(typecode, n, lock=L)`): the guards,
    /// [`get`](Array::get), [`set`](Array::set) and the rest take `lock`,
    /// which several arrays, [values](crate::Value::with_lock) and
    /// [conditions](crate::Condition::with_lock) can share. The array keeps
    /// a handle on the lock, and every handle of it, forked or sent to a
    /// spawned child, uses that lock.
    ///
    /// ```
    /// let lock = multiproc::Lock::new()?;
    /// let a = multiproc::Array::<u32>::zeroed_with_lock(3, &lock)?;
    /// let b = multiproc::Array::from_slice_with_lock(&[1.5f64], &lock)?;
    /// let g = a.lock().unwrap();
    /// assert!(lock.is_locked());
    /// assert!(b.try_lock().is_err());
    /// assert_eq!(g[2], 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn zeroed_with_lock(len: usize, lock: &crate::Lock) -> Result<Array<T>, CreateError> {
        let mut a = Self::zeroed(len)?;
        // A new array: no other handle exists yet that could use its own
        // lock instead.
        a.lock = Some(lock.clone());
        Ok(a)
    }

    /// The elements of `values` under an existing `lock`; see
    /// [`zeroed_with_lock`](Array::zeroed_with_lock).
    pub fn from_slice_with_lock(values: &[T], lock: &crate::Lock) -> Result<Array<T>, CreateError>
    where
        T: Copy,
    {
        let mut a = Self::from_slice(values)?;
        // As in `zeroed_with_lock`: nobody else has the array yet.
        a.lock = Some(lock.clone());
        Ok(a)
    }

    /// The shared lock the array is under, if it was made with one
    /// ([`zeroed_with_lock`](Array::zeroed_with_lock)).
    pub fn get_lock(&self) -> Option<&crate::Lock> {
        self.lock.as_ref()
    }

    /// The elements of `values`, copied into shared memory.
    pub fn from_slice(values: &[T]) -> Result<Array<T>, CreateError>
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
    pub fn from_fn(len: usize, mut f: impl FnMut(usize) -> T) -> Result<Array<T>, CreateError> {
        let a = Self::zeroed(len)?;
        for i in 0..len {
            // SAFETY: `i < len`, so the element lies in the array, aligned;
            // nobody else can reach the new array yet.
            unsafe { a.data_ptr().wrapping_add(i).write(f(i)) };
        }
        Ok(a)
    }

    fn mutex(&self) -> &Mutex<()> {
        if let Some(l) = &self.lock {
            return l.as_mutex();
        }
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
    /// [`ArrayError::WouldDeadlock`] if this thread holds it already.
    fn try_update<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R, ArrayError> {
        let mut g = match self.lock() {
            Ok(g) => g,
            Err(LockError::OwnerDied(e)) => e.into_guard(),
            Err(LockError::WouldDeadlock) => return Err(ArrayError::WouldDeadlock),
        };
        Ok(f(&mut g))
    }

    /// Stores `value` at `index` under the lock.
    ///
    /// # Errors
    ///
    /// [`ArrayError::IndexOutOfBounds`] past the end,
    /// [`ArrayError::WouldDeadlock`] if this thread holds the lock already.
    pub fn set(&self, index: usize, value: T) -> Result<(), ArrayError> {
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
    pub fn get(&self, index: usize) -> Result<T, ArrayError> {
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
pub struct RawArray<T: ShmSafe> {
    /// Invariant: holds `len` valid `T`s from its first byte (checked on
    /// adoption from the wire, as for [`Array`]).
    alloc: Allocation,
    len: usize,
    _marker: PhantomData<T>,
}

#[cfg(feature = "spawn")]
impl<T: ShmSafe> serde::Serialize for RawArray<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        send::<T, Self, S>(&self.alloc, self.len, s)
    }
}

#[cfg(feature = "spawn")]
impl<'de, T: ShmSafe> serde::Deserialize<'de> for RawArray<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (alloc, len, _) = receive::<T, Self, D>(d, 0)?;
        Ok(RawArray {
            alloc,
            len,
            _marker: PhantomData,
        })
    }
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
    pub fn zeroed(len: usize) -> Result<RawArray<T>, CreateError> {
        let (alloc, _) = alloc_zeroed::<T>(0, len)?;
        Ok(RawArray {
            alloc,
            len,
            _marker: PhantomData,
        })
    }

    /// The elements of `values`, copied into shared memory.
    pub fn from_slice(values: &[T]) -> Result<RawArray<T>, CreateError>
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
    /// [`IndexError`] (naming the range's end) if `range` does not fit.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, range: Range<usize>) -> Result<&mut [T], IndexError> {
        if range.start > range.end || range.end > self.len {
            return Err(IndexError {
                index: range.end,
                len: self.len,
            });
        }
        // SAFETY: in bounds (checked); exclusivity is the caller's promise.
        Ok(unsafe {
            std::slice::from_raw_parts_mut(self.as_ptr().wrapping_add(range.start), range.len())
        })
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
    ///
    /// # Errors
    ///
    /// [`IndexError`] past the end.
    pub fn get(&self, index: usize) -> Result<T, IndexError> {
        check_index(index, self.len)?;
        Ok(T::load(&self.as_atomics()[index], Ordering::SeqCst))
    }

    /// Writes element `index` (atomically).
    ///
    /// # Errors
    ///
    /// [`IndexError`] past the end.
    pub fn set(&self, index: usize, value: T) -> Result<(), IndexError> {
        check_index(index, self.len)?;
        T::store(&self.as_atomics()[index], value, Ordering::SeqCst);
        Ok(())
    }

    /// Writes `value` to every element in `range` (each store atomic and
    /// relaxed: at memory speed, visible to others once they synchronize).
    ///
    /// # Errors
    ///
    /// [`IndexError`] (naming the range's end) for a range that does not
    /// fit.
    pub fn fill(&self, range: Range<usize>, value: T) -> Result<(), IndexError> {
        if range.start > range.end || range.end > self.len {
            return Err(IndexError {
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

#[cfg(all(test, feature = "spawn"))]
mod tests {
    use super::*;
    use crate::shm::transfer::{self, TypeTag};
    use crate::{RawValue, Value};

    /// Serializes `v` as a spawn argument and reads it back as `U`, with
    /// the arenas handed over as a spawned child gets them.
    fn resend<T: serde::Serialize, U: serde::de::DeserializeOwned>(
        v: &T,
    ) -> std::result::Result<U, postcard::Error> {
        let (bytes, arenas) = transfer::collecting(|| postcard::to_stdvec(v));
        transfer::receiving(arenas, || postcard::from_bytes::<U>(&bytes.unwrap()))
    }

    fn refused<U: serde::de::DeserializeOwned>(r: std::result::Result<U, postcard::Error>) {
        assert!(r.is_err(), "a forged handle was adopted");
    }

    #[test]
    fn handles_travel_as_what_they_are() {
        let a = Array::from_slice(&[1u64, 2, 3]).unwrap();
        let b: Array<u64> = resend(&a).unwrap();
        assert_eq!(b.to_vec(), [1, 2, 3]);
        let r = RawArray::from_slice(&[-1i8, 0]).unwrap();
        let s: RawArray<i8> = resend(&r).unwrap();
        assert_eq!(s.to_vec(), [-1, 0]);
        let v = Value::new(7u8).unwrap();
        let w: Value<u8> = resend(&v).unwrap();
        assert_eq!(w.get(), 7);
    }

    #[test]
    fn a_handle_read_back_as_another_type_is_refused() {
        // Before the type tag these were adopted: 100 `u8`s read as 100
        // `u64`s reach 800 bytes of a 128-byte slot; a `u8` of 200 read as
        // an `i8` is another number.
        let a = Array::from_slice(&[2u8; 100]).unwrap();
        refused(resend::<_, Array<u64>>(&a));
        refused(resend::<_, Array<i8>>(&a));
        // Same element type, other container: a `RawArray` would read the
        // `Array`'s lock word as elements.
        refused(resend::<_, RawArray<u8>>(&a));
        let r = RawArray::from_slice(&[2u8; 100]).unwrap();
        refused(resend::<_, RawArray<i8>>(&r));
        refused(resend::<_, RawArray<u32>>(&r));
        let v = Value::new(2u8).unwrap();
        refused(resend::<_, Value<i8>>(&v));
        refused(resend::<_, Value<[u64; 64]>>(&v));
        let rv = RawValue::new(2u8).unwrap();
        refused(resend::<_, RawValue<i8>>(&rv));
    }

    #[test]
    fn a_handle_with_a_tampered_length_is_refused() {
        let a = Array::from_slice(&[1u64; 4]).unwrap();
        for len in [1_000_000, usize::MAX / 8, usize::MAX] {
            for ty in [
                TypeTag::of_elements::<u64, Array<u64>>(),
                TypeTag::of_elements::<u64, RawArray<u64>>(),
            ] {
                let forged = ArrayWire {
                    alloc: &a.alloc,
                    len,
                    ty,
                };
                // An `Array` travels with its shared lock, if any.
                refused(resend::<_, Array<u64>>(&(&forged, None::<crate::Lock>)));
                refused(resend::<_, RawArray<u64>>(&forged));
            }
        }
        // Even a length that still fits the allocation is refused: only
        // handles written by the array's own `Serialize` are adopted.
        let fits = ArrayWire {
            alloc: &a.alloc,
            len: 5,
            ty: TypeTag::of_elements::<u64, Array<u64>>(),
        };
        refused(resend::<_, Array<u64>>(&(&fits, None::<crate::Lock>)));
        // The array itself travels.
        let b: Array<u64> = resend(&a).unwrap();
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn an_array_travels_only_with_the_lock_it_was_sent_with() {
        let l1 = crate::Lock::new().unwrap();
        let l2 = crate::Lock::new().unwrap();
        let a = Array::<u64>::zeroed_with_lock(4, &l1).unwrap();
        let b: Array<u64> = resend(&a).unwrap();
        assert!(b.get_lock().is_some());
        // Its handle with no lock (it would fall back to its own mutex) or
        // with another lock: two processes would guard it differently.
        refused(resend::<_, Array<u64>>(&(
            WithLock(&a),
            None::<crate::Lock>,
        )));
        refused(resend::<_, Array<u64>>(&(WithLock(&a), Some(&l2))));
        // Sent whole beside a forged pairing in the same arguments: the
        // forged one is still refused.
        refused(resend::<_, (Array<u64>, Array<u64>)>(&(
            &a,
            (WithLock(&a), Some(&l2)),
        )));
    }
}
