//! Functions that run in another process: a spawn entry, a pool task or
//! initializer, a manager type's constructor.
//!
//! Another process can call a function of ours only where its own copy of
//! the code lies. A forked child has everything at the same addresses; a
//! spawned one runs the same executable loaded elsewhere, so what crosses
//! is the function's offset from the start of the main executable's image.
//! That offset means something in the other process only for a function of
//! the main executable itself: a function in a shared library (a plugin, a
//! `cdylib`, any `-C prefer-dynamic` build) lies wherever that library was
//! loaded, if it was loaded at all.
//!
//! [`CodePtr`] owns the conversion both ways. [`CodePtr::new`] takes a
//! function pointer and refuses ([`Error::ForeignCode`]) one whose address
//! is not in the main executable's code segments; the other side gets the
//! pointer back only through [`Code::from_offset`] (which checks the range
//! again) and the `unsafe` [`Code::assume`], whose caller vouches that the
//! offset came from a `CodePtr` of that very type, handed over on a
//! channel nobody else can write (fork memory, the spawn bootstrap, the
//! pool's sealed table).

use std::marker::PhantomData;

use crate::error::{Error, Result};
use crate::sys::mem::main_image;

/// Function pointer types, and nothing else.
///
/// # Safety
///
/// Only function pointer types (`fn(..) -> ..`, higher-ranked or not) may
/// implement it: a value is a code address of the size of a `usize`.
pub(crate) unsafe trait CodeFn: Copy {}

// SAFETY: function pointer types.
unsafe impl<A, R> CodeFn for fn(A) -> R {}
// SAFETY: function pointer types.
unsafe impl<A, B, R> CodeFn for fn(A, B) -> R {}

/// A function of the main executable, checked, whose type is not tracked:
/// its offset from the executable's load address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Code {
    offset: usize,
}

impl Code {
    /// The code at `addr`, if it lies in the main executable's code.
    fn at(addr: usize) -> Result<Code> {
        let image = main_image();
        if !image.holds(addr) {
            return Err(Error::ForeignCode {
                address: addr,
                object: crate::sys::mem::object_name(addr),
            });
        }
        Ok(Code {
            offset: addr.wrapping_sub(image.base),
        })
    }

    /// The offset to hand to another process running this executable.
    pub(crate) fn offset(self) -> u64 {
        self.offset as u64
    }

    /// The code at `offset` in this process, refused unless it lies in the
    /// main executable's code (whoever wrote the offset).
    pub(crate) fn from_offset(offset: u64) -> Result<Code> {
        let addr = main_image().base.wrapping_add(offset as usize);
        Code::at(addr)
    }

    /// This code as a function of type `F`.
    ///
    /// # Safety
    ///
    /// The offset must come from [`CodePtr::<F>::erase`] (or `offset`) for
    /// this very `F`, in this process or in one running the same executable
    /// image (the parent that forked or spawned it), handed over on a
    /// channel no other process can write.
    pub(crate) unsafe fn assume<F: CodeFn>(self) -> CodePtr<F> {
        CodePtr {
            code: self,
            _f: PhantomData,
        }
    }
}

/// A function pointer of type `F` that lies in the main executable, so that
/// its offset means the same function in every process running this
/// program, forked or spawned (see the [module documentation](self)).
pub(crate) struct CodePtr<F> {
    code: Code,
    _f: PhantomData<F>,
}

impl<F> Clone for CodePtr<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for CodePtr<F> {}

impl<F> std::fmt::Debug for CodePtr<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CodePtr").field(&self.code.offset).finish()
    }
}

impl<F: CodeFn> CodePtr<F> {
    /// `f`, if it lies in the main executable; [`Error::ForeignCode`] if it
    /// lies in a shared library.
    pub(crate) fn new(f: F) -> Result<CodePtr<F>> {
        const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>()) };
        // SAFETY: `F` is a function pointer type (`CodeFn`), which has the
        // size (checked above) and representation of a `usize` address.
        let addr = unsafe { std::mem::transmute_copy::<F, usize>(&f) };
        Ok(CodePtr {
            code: Code::at(addr)?,
            _f: PhantomData,
        })
    }

    /// The function, callable in this process.
    pub(crate) fn get(self) -> F {
        let addr = main_image().base.wrapping_add(self.code.offset);
        // SAFETY: a `CodePtr<F>` holds the offset of a function of type
        // `F` in the main executable (made by `new` from such a function,
        // in this process or in one running the same image, or vouched for
        // by the caller of `Code::assume`); the main executable lies at
        // `base` in this process, so `addr` is that function here. `F` is a
        // function pointer type of the size of a `usize`.
        unsafe { std::mem::transmute_copy::<usize, F>(&addr) }
    }

    /// The function without its type.
    pub(crate) fn erase(self) -> Code {
        self.code
    }

    /// The offset to hand to another process running this executable.
    pub(crate) fn offset(self) -> u64 {
        self.code.offset()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A function of the C library (a shared object), as a Rust function
    /// pointer that must never be called.
    #[allow(clippy::disallowed_methods)] // test code may call libc
    pub(crate) fn foreign<A, R>() -> fn(A) -> R {
        // SAFETY: dlsym with a NUL-terminated name; the result is checked
        // for null. The pointer is only compared, never called.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"abs".as_ptr()) };
        assert!(!p.is_null(), "dlsym(abs)");
        // SAFETY: a non-null code address of the size of a function
        // pointer; it is never called.
        unsafe { std::mem::transmute::<*mut libc::c_void, fn(A) -> R>(p) }
    }

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn own_functions_round_trip() {
        let p = CodePtr::new(double as fn(u32) -> u32).unwrap();
        let back = Code::from_offset(p.offset()).unwrap();
        // SAFETY: the offset of a `CodePtr<fn(u32) -> u32>`.
        let f = unsafe { back.assume::<fn(u32) -> u32>() }.get();
        assert_eq!(f(21), 42);
    }

    #[test]
    fn shared_library_functions_are_refused() {
        let e = CodePtr::new(foreign::<i32, i32>()).unwrap_err();
        match &e {
            Error::ForeignCode { object, .. } => assert!(object.contains("libc"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offsets_outside_the_code_are_refused() {
        assert!(matches!(
            Code::from_offset(u64::MAX - 7),
            Err(Error::ForeignCode { .. })
        ));
        // Data, not code.
        static DATA: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(7);
        let off = (&raw const DATA as usize).wrapping_sub(main_image().base);
        assert!(Code::from_offset(off as u64).is_err());
    }
}
