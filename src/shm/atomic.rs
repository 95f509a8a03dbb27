//! Primitive types that can be read and written atomically in place, for
//! [`RawValue`](crate::RawValue) and [`RawArray`](crate::RawArray).

use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize, Ordering,
};

mod private {
    pub trait Sealed {}
}

/// A primitive with an atomic twin of the same size and alignment: integers,
/// `f32` and `f64` (the floats through their bits). Not `bool`: a byte
/// another process wrote could be an invalid one (use a `u8`, or an
/// [`Event`](crate::Event) for a flag).
///
/// Implemented by the crate only (sealed).
pub trait Atomic: super::ShmSafe + Copy + private::Sealed {
    /// The atomic type that shares this type's representation.
    type Repr: Sync;

    /// Views `*ptr` as its atomic twin.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid and aligned for `Self` for `'a`, and every
    /// concurrent access to it during `'a` must be atomic.
    #[doc(hidden)]
    unsafe fn as_atomic<'a>(ptr: *mut Self) -> &'a Self::Repr;
    #[doc(hidden)]
    fn load(a: &Self::Repr, o: Ordering) -> Self;
    #[doc(hidden)]
    fn store(a: &Self::Repr, v: Self, o: Ordering);
    #[doc(hidden)]
    fn swap(a: &Self::Repr, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn compare_exchange(a: &Self::Repr, current: Self, new: Self) -> Result<Self, Self>;
}

/// An [`Atomic`] with arithmetic: integers add and subtract in hardware,
/// floats through a compare-and-swap loop.
pub trait AtomicNumber: Atomic {
    #[doc(hidden)]
    fn fetch_add(a: &Self::Repr, v: Self, o: Ordering) -> Self;
    #[doc(hidden)]
    fn fetch_sub(a: &Self::Repr, v: Self, o: Ordering) -> Self;
}

macro_rules! atomic_int {
    ($($t:ty => $a:ty),* $(,)?) => {$(
        impl private::Sealed for $t {}
        impl Atomic for $t {
            type Repr = $a;
            #[inline]
            unsafe fn as_atomic<'a>(ptr: *mut Self) -> &'a $a {
                // SAFETY: same size and alignment (checked below at compile
                // time); validity and atomic-only access are the caller's.
                unsafe { <$a>::from_ptr(ptr) }
            }
            #[inline]
            fn load(a: &$a, o: Ordering) -> Self { a.load(o) }
            #[inline]
            fn store(a: &$a, v: Self, o: Ordering) { a.store(v, o) }
            #[inline]
            fn swap(a: &$a, v: Self, o: Ordering) -> Self { a.swap(v, o) }
            #[inline]
            fn compare_exchange(a: &$a, c: Self, n: Self) -> Result<Self, Self> {
                a.compare_exchange(c, n, Ordering::SeqCst, Ordering::SeqCst)
            }
        }
        impl AtomicNumber for $t {
            #[inline]
            fn fetch_add(a: &$a, v: Self, o: Ordering) -> Self { a.fetch_add(v, o) }
            #[inline]
            fn fetch_sub(a: &$a, v: Self, o: Ordering) -> Self { a.fetch_sub(v, o) }
        }
        const _: () = assert!(
            std::mem::size_of::<$t>() == std::mem::size_of::<$a>()
                && std::mem::align_of::<$t>() == std::mem::align_of::<$a>()
        );
    )*};
}

atomic_int!(
    u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize,
);

macro_rules! atomic_float {
    ($($t:ty => $a:ty, $bits:ty),* $(,)?) => {$(
        impl private::Sealed for $t {}
        impl Atomic for $t {
            type Repr = $a;
            #[inline]
            unsafe fn as_atomic<'a>(ptr: *mut Self) -> &'a $a {
                // SAFETY: the float and its bits' atomic share size and
                // alignment (checked below); validity and atomic-only access
                // are the caller's.
                unsafe { <$a>::from_ptr(ptr.cast::<$bits>()) }
            }
            #[inline]
            fn load(a: &$a, o: Ordering) -> Self { <$t>::from_bits(a.load(o)) }
            #[inline]
            fn store(a: &$a, v: Self, o: Ordering) { a.store(v.to_bits(), o) }
            #[inline]
            fn swap(a: &$a, v: Self, o: Ordering) -> Self { <$t>::from_bits(a.swap(v.to_bits(), o)) }
            /// Compares bit patterns (so `-0.0 != 0.0` and a NaN matches itself).
            #[inline]
            fn compare_exchange(a: &$a, c: Self, n: Self) -> Result<Self, Self> {
                a.compare_exchange(c.to_bits(), n.to_bits(), Ordering::SeqCst, Ordering::SeqCst)
                    .map(<$t>::from_bits)
                    .map_err(<$t>::from_bits)
            }
        }
        impl AtomicNumber for $t {
            #[inline]
            fn fetch_add(a: &$a, v: Self, o: Ordering) -> Self {
                let mut cur = a.load(Ordering::Relaxed);
                loop {
                    let new = (<$t>::from_bits(cur) + v).to_bits();
                    match a.compare_exchange_weak(cur, new, o, Ordering::Relaxed) {
                        Ok(old) => return <$t>::from_bits(old),
                        Err(now) => cur = now,
                    }
                }
            }
            #[inline]
            fn fetch_sub(a: &$a, v: Self, o: Ordering) -> Self {
                Self::fetch_add(a, -v, o)
            }
        }
        const _: () = assert!(
            std::mem::size_of::<$t>() == std::mem::size_of::<$a>()
                && std::mem::align_of::<$t>() == std::mem::align_of::<$a>()
        );
    )*};
}

atomic_float!(f32 => AtomicU32, u32, f64 => AtomicU64, u64);
