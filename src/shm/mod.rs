//! What may live in shared memory, and the shared heap that places it.

pub(crate) mod copy;
pub(crate) mod heap;
#[cfg(feature = "manager")]
pub(crate) mod mailbox;
#[cfg(feature = "spawn")]
pub(crate) mod transfer;

use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize,
};

/// Types that may be placed in memory shared between processes.
///
/// A value in shared memory is seen by every process that maps it, at
/// whatever address each maps it, and outlives any one of them. That is sound
/// only for plain data.
///
/// # Safety
///
/// Implement this only for types that are:
/// - **self-contained plain data**: no pointers or references (they would
///   point into one process's private memory), no file descriptors, no
///   handles of any kind;
/// - **without drop glue**: no `Drop` impl anywhere inside (nobody would run
///   it, or everybody would);
/// - **valid for every bit pattern**: any process that maps the memory can
///   write any bytes into it (a bug, a hostile process, a crash mid-write),
///   and a value read back must still be a valid `Self`. So `bool`, `char`,
///   enums, references and `NonZero*` do not qualify (a stray `2` in a
///   `bool` is undefined behaviour); store a `u8` or `u32` and convert.
///   All-zero bytes are one such pattern (shared memory starts zeroed, and
///   `Array::zeroed` relies on it);
/// - of a layout that is the same in every process using it, which holds for
///   one binary; for data exchanged with other programs use `#[repr(C)]`.
///
/// Integers, floats, the integer atomics and arrays of them qualify and are
/// implemented here. `bool`, `char` and `AtomicBool` are not: each has byte
/// patterns that are not a valid value.
///
/// # Examples
///
/// A user struct of such fields qualifies once it is `#[repr(C)]`:
///
/// ```
/// use multiproc::ShmSafe;
///
/// #[repr(C)]
/// #[derive(Clone, Copy, Default)]
/// struct Point {
///     x: f64,
///     y: f64,
///     hits: u32,
/// }
///
/// // SAFETY: `Point` is `#[repr(C)]` plain data of `f64` and `u32` fields:
/// // no pointers, no drop glue, all-zero is a valid `Point`.
/// unsafe impl ShmSafe for Point {}
/// ```
///
/// With the `derive` feature, `#[derive(ShmSafe)]` writes that impl without
/// `unsafe` in the user's code, after checking at compile time what the
/// type's definition decides: a struct (not an enum or union),
/// `#[repr(C)]` or `#[repr(transparent)]` and not packed, every field
/// `ShmSafe`, no `Drop` impl, no lifetime parameters (type parameters get
/// the bound `ShmSafe`):
///
#[cfg_attr(feature = "derive", doc = "```")]
#[cfg_attr(not(feature = "derive"), doc = "```ignore")]
/// use multiproc::{Array, ShmSafe};
///
/// #[repr(C)]
/// #[derive(ShmSafe, Clone, Copy, Default)]
/// struct Particle<T> {
///     position: [T; 3],
///     hits: u32,
/// }
///
/// let particles = Array::<Particle<f64>>::zeroed(16)?;
/// particles.lock()?[0].hits += 1;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub unsafe trait ShmSafe: Sized + Send + 'static {}

/// `#[derive(ShmSafe)]` (feature `derive`).
#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use multiproc_derive::ShmSafe;

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: an integer, float or integer atomic (or `()`): plain
            // bytes, no drop glue, and every bit pattern is a valid value.
            unsafe impl ShmSafe for $t {}
        )*
    };
}

shm_safe!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    (),
    AtomicU8,
    AtomicU16,
    AtomicU32,
    AtomicU64,
    AtomicUsize,
    AtomicI8,
    AtomicI16,
    AtomicI32,
    AtomicI64,
    AtomicIsize,
);

// SAFETY: an array of plain data is plain data; elements valid for every
// bit pattern make an array valid for every bit pattern.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

/// How many bytes from `alloc.ptr()` belong to the allocation and are
/// mapped: its slot size, or what its mapping holds past it (an adopted
/// large block's recorded size is not trusted beyond its mapping).
pub(crate) fn usable_len(alloc: &heap::Allocation) -> usize {
    let (arena, offset, size) = alloc.location();
    size.min(arena.mapping().len().saturating_sub(offset))
}

/// Checked at compile time wherever a `ShmSafe` type is placed: the trait's
/// contract excludes drop glue, and this catches a wrong manual impl.
pub(crate) const fn assert_no_drop<T>() {
    assert!(
        !std::mem::needs_drop::<T>(),
        "a ShmSafe type must not need drop"
    );
}

/// One `T` placed in the shared heap: the building block of every shared
/// type. Dereferences to `&T` only; shared mutation goes through atomics or
/// `UnsafeCell`s inside `T`.
///
/// Invariant: `alloc` holds at least `size_of::<T>()` bytes, aligned for
/// `T`, holding a valid `T`. A handle from the wire (spawn arguments) is
/// adopted only after checking the first two and that it was sent as a
/// `ShmBox<T>` of the same `T` (see [`transfer::TypeTag`]).
pub(crate) struct ShmBox<T> {
    alloc: heap::Allocation,
    _marker: std::marker::PhantomData<T>,
}

impl<T: ShmSafe> ShmBox<T> {
    /// Moves `value` into shared memory.
    pub(crate) fn new(value: T) -> crate::Result<ShmBox<T>> {
        const { assert_no_drop::<T>() };
        let (alloc, _) = heap::alloc(std::mem::size_of::<T>(), std::mem::align_of::<T>())?;
        // SAFETY: the allocation is at least size_of::<T>() bytes, aligned for
        // T, and used by nobody else yet.
        unsafe { alloc.ptr().cast::<T>().as_ptr().write(value) };
        Ok(ShmBox {
            alloc,
            _marker: std::marker::PhantomData,
        })
    }
}

impl<T> ShmBox<T> {
    /// The allocation it lives in.
    #[cfg(feature = "spawn")]
    pub(crate) fn alloc(&self) -> &heap::Allocation {
        &self.alloc
    }

    pub(crate) fn as_ptr(&self) -> *mut T {
        self.alloc.ptr().cast::<T>().as_ptr()
    }
}

#[cfg(feature = "spawn")]
impl<T: 'static> serde::Serialize for ShmBox<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ShmBox", 2)?;
        st.serialize_field("alloc", &self.alloc)?;
        transfer::note_sent(&self.alloc, transfer::TypeTag::of::<T>(), 1);
        st.serialize_field("ty", &transfer::TypeTag::of::<T>())?;
        st.end()
    }
}

#[cfg(feature = "spawn")]
impl<'de, T: 'static> serde::Deserialize<'de> for ShmBox<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename = "ShmBox")]
        struct Wire {
            alloc: heap::Allocation,
            ty: transfer::TypeTag,
        }
        let w = Wire::deserialize(d)?;
        let adopt = || -> crate::Result<ShmBox<T>> {
            w.ty.check::<T, T>()?;
            transfer::check_received(&w.alloc, w.ty, 1)?;
            if usable_len(&w.alloc) < std::mem::size_of::<T>()
                || !w.alloc.ptr().cast::<T>().is_aligned()
            {
                return Err(crate::Error::InvalidArgument(
                    "a shared object's memory is too small or misaligned for its type",
                ));
            }
            Ok(ShmBox {
                alloc: w.alloc,
                _marker: std::marker::PhantomData,
            })
        };
        adopt().map_err(serde::de::Error::custom)
    }
}

impl<T> std::ops::Deref for ShmBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the pointer was written with a valid T in `new` and stays
        // mapped while `alloc` lives; only shared references are handed out.
        unsafe { &*self.as_ptr() }
    }
}

impl<T> std::fmt::Debug for ShmBox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmBox")
            .field("at", &self.as_ptr())
            .finish()
    }
}

// SAFETY: a ShmBox gives out `&T` only, so it may cross threads when `&T`
// may: T: Sync.
unsafe impl<T: Sync> Send for ShmBox<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for ShmBox<T> {}

mod atomic;
pub use atomic::{Atomic, AtomicNumber};

#[cfg(all(test, feature = "spawn"))]
mod tests {
    use super::*;

    #[test]
    fn a_box_too_small_or_mistyped_is_refused() {
        let b = ShmBox::new(7u8).unwrap();
        // A right-looking tag on a 16-byte slot, too small for 512 bytes,
        // and a `u8` read back as an `i8`: before the check both were
        // adopted.
        #[derive(serde::Serialize)]
        struct Wire<'a> {
            alloc: &'a heap::Allocation,
            ty: transfer::TypeTag,
        }
        let too_small = Wire {
            alloc: &b.alloc,
            ty: transfer::TypeTag::of::<[u64; 64]>(),
        };
        let (bytes, arenas) = transfer::collecting(|| postcard::to_stdvec(&too_small).unwrap());
        let r = transfer::receiving(arenas, || postcard::from_bytes::<ShmBox<[u64; 64]>>(&bytes));
        assert!(r.is_err());
        let (bytes, arenas) = transfer::collecting(|| postcard::to_stdvec(&b).unwrap());
        let r = transfer::receiving(arenas.clone(), || {
            postcard::from_bytes::<ShmBox<i8>>(&bytes)
        });
        assert!(r.is_err());
        let back = transfer::receiving(arenas, || postcard::from_bytes::<ShmBox<u8>>(&bytes));
        assert_eq!(*back.unwrap(), 7);
    }

    #[test]
    fn a_handle_the_parent_did_not_send_is_refused_even_with_a_true_tag() {
        // Bytes a caller's own `Serialize` could write: the handle of a
        // real slot, with the right type tag, but not written by
        // `ShmBox`'s `Serialize`. Before the record of sent handles, it was
        // adopted (a second handle to any slot, as any type whose tag is
        // known).
        #[derive(serde::Serialize)]
        struct Wire<'a> {
            alloc: &'a heap::Allocation,
            ty: transfer::TypeTag,
        }
        let sent = ShmBox::new(1u8).unwrap();
        let other = ShmBox::new(2u8).unwrap();
        let forged = Wire {
            alloc: &other.alloc,
            ty: transfer::TypeTag::of::<u8>(),
        };
        let (bytes, carried) =
            transfer::collecting(|| postcard::to_stdvec(&(&sent, &forged)).unwrap());
        let r = transfer::receiving(carried.clone(), || {
            postcard::from_bytes::<(ShmBox<u8>, ShmBox<u8>)>(&bytes)
        });
        assert!(r.is_err(), "the forged handle was adopted");
        // The one sent by `ShmBox` itself is adopted.
        let (bytes, carried) = transfer::collecting(|| postcard::to_stdvec(&sent).unwrap());
        let back = transfer::receiving(carried, || postcard::from_bytes::<ShmBox<u8>>(&bytes));
        assert_eq!(*back.unwrap(), 1);
    }

    #[test]
    fn a_handle_adopted_from_the_wire_never_frees_the_slot() {
        // Received in the very process that sent it (as these unit tests
        // do): dropping the adopted handle must not put the slot back on
        // the free list while the original lives, or two objects would
        // share it. (That happened, and `cargo test` running the tests
        // side by side in one process got two live boxes in one slot.)
        let b = ShmBox::new(7u64).unwrap();
        let (bytes, carried) = transfer::collecting(|| postcard::to_stdvec(&b).unwrap());
        let back = transfer::receiving(carried, || postcard::from_bytes::<ShmBox<u64>>(&bytes));
        drop(back.unwrap());
        let fresh: Vec<ShmBox<u64>> = (0..64).map(|_| ShmBox::new(0u64).unwrap()).collect();
        assert!(
            fresh.iter().all(|f| f.as_ptr() != b.as_ptr()),
            "a new box got the slot of a live one"
        );
        assert_eq!(*b, 7);
    }
}
