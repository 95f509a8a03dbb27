//! Memory shared between processes: a memfd mapped `MAP_SHARED`.
//!
//! A memfd has no name in any file system, so nothing is left behind in
//! `/dev/shm` when a process crashes: the memory goes away with the last
//! mapping and the last descriptor. A forked child inherits the mapping at
//! the same address; a spawned one can map the descriptor again.

use std::ffi::CStr;
use std::fs::File;
#[cfg(feature = "pool")]
use std::os::fd::AsRawFd;
use std::os::fd::{AsFd, BorrowedFd};

use memmap2::{MmapOptions, MmapRaw};
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::error::{Error, Result};

/// A `MAP_SHARED` mapping of a whole memfd.
pub(crate) struct SharedMapping {
    map: MmapRaw,
    file: File,
}

impl SharedMapping {
    /// A new zero-filled shared mapping of `len` bytes (rounded up by the
    /// kernel to whole pages). With `populate`, every page is faulted in now
    /// (`MAP_POPULATE`) rather than on first touch.
    pub(crate) fn new(name: &CStr, len: usize, populate: bool) -> Result<SharedMapping> {
        if len == 0 {
            return Err(Error::InvalidSize {
                size: len,
                reason: "a shared mapping needs at least one byte",
            });
        }
        let len_off = libc::off_t::try_from(len).map_err(|_| Error::InvalidSize {
            size: len,
            reason: "too large for a memfd",
        })?;
        let fd =
            memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(|e| Error::os("memfd_create", e))?;
        nix::unistd::ftruncate(&fd, len_off).map_err(|e| Error::os("ftruncate", e))?;
        Self::map_new(fd, len, populate)
    }

    /// A new zero-filled shared mapping of `len` bytes whose size is sealed
    /// (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`): a process it is
    /// handed to can map it without fear of it being truncated under its
    /// feet (which would make its accesses fault with SIGBUS).
    pub(crate) fn new_sealed(name: &CStr, len: usize) -> Result<SharedMapping> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        let fd = sealable_memfd(name, len)?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| Error::os("fcntl", e))?;
        Self::map_new(fd, len, false)
    }

    /// Maps the memfd `fd` if its size is sealed against shrinking and it
    /// has at least `min` bytes (see [`new_sealed`](Self::new_sealed)). A
    /// descriptor that is not a memfd (it has no seals) is refused too.
    pub(crate) fn from_sealed_fd(fd: std::os::fd::OwnedFd, min: usize) -> Result<SharedMapping> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).map_err(|e| Error::os("fcntl", e))?;
        if !SealFlag::from_bits_retain(seals).contains(SealFlag::F_SEAL_SHRINK) {
            return Err(Error::InvalidArgument(
                "a shared mapping handed over must be sealed against shrinking",
            ));
        }
        let map = Self::from_fd(fd)?;
        if map.len() < min {
            return Err(Error::InvalidSize {
                size: map.len(),
                reason: "the shared mapping handed over is too small",
            });
        }
        Ok(map)
    }

    fn map_new(fd: std::os::fd::OwnedFd, len: usize, populate: bool) -> Result<SharedMapping> {
        let file = File::from(fd);
        let mut opts = MmapOptions::new();
        opts.len(len);
        if populate {
            opts.populate();
        }
        let map = opts.map_raw(&file).map_err(|e| Error::os("mmap", e))?;
        Ok(SharedMapping { map, file })
    }

    /// Maps all of the memfd (or any shared-memory file) `fd`, as a child
    /// started by the spawn start method does with the descriptors its
    /// parent handed over.
    pub(crate) fn from_fd(fd: std::os::fd::OwnedFd) -> Result<SharedMapping> {
        let file = File::from(fd);
        let len = file.metadata().map_err(|e| Error::os("fstat", e))?.len() as usize;
        if len == 0 {
            return Err(Error::InvalidSize {
                size: 0,
                reason: "an empty shared memory file cannot be mapped",
            });
        }
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| Error::os("mmap", e))?;
        Ok(SharedMapping { map, file })
    }

    /// The first byte of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Gives the pages of bytes `[off, off + len)` back to the kernel (a
    /// hole punched in the memfd, for every process that maps it): they
    /// read as zeros afterwards and take no memory until written again.
    #[cfg(feature = "queue")]
    pub(crate) fn discard(&self, off: usize, len: usize) -> Result<()> {
        use nix::fcntl::{FallocateFlags, fallocate};
        let inside = off.checked_add(len).is_some_and(|end| end <= self.len());
        let (Some(o), Some(l), true) = (
            libc::off_t::try_from(off).ok(),
            libc::off_t::try_from(len).ok(),
            inside,
        ) else {
            return Err(Error::InvalidArgument(
                "a range to discard outside the mapping",
            ));
        };
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        fallocate(&self.file, flags, o, l).map_err(|e| Error::os("fallocate", e))
    }

    /// The memfd behind the mapping, for handing to another process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl std::fmt::Debug for SharedMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMapping")
            .field("ptr", &self.as_ptr())
            .field("len", &self.len())
            .finish()
    }
}

/// A new empty memfd named `name`, close-on-exec (to be written and
/// handed over, not mapped: see [`SharedMapping`] for that).
#[cfg(feature = "spawn")]
pub(crate) fn memfd(name: &CStr) -> Result<std::os::fd::OwnedFd> {
    memfd_create(name, MFdFlags::MFD_CLOEXEC).map_err(|e| Error::os("memfd_create", e))
}

/// Opens the POSIX shared memory object `path` (`/name`) read-write
/// (`shm_open`); with `create`, exclusively and new, mode 0600.
pub(crate) fn shm_open(path: &CStr, create: bool) -> nix::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let (flags, mode) = if create {
        (
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
    } else {
        (OFlag::O_RDWR, Mode::empty())
    };
    nix::sys::mman::shm_open(path, flags, mode)
}

/// Removes the POSIX shared memory object `path` (`shm_unlink`).
pub(crate) fn shm_unlink(path: &CStr) -> nix::Result<()> {
    nix::sys::mman::shm_unlink(path)
}

/// A new memfd of `len` zero bytes that can be sealed.
fn sealable_memfd(name: &CStr, len: usize) -> Result<std::os::fd::OwnedFd> {
    let len_off = libc::off_t::try_from(len).map_err(|_| Error::InvalidSize {
        size: len,
        reason: "too large for a memfd",
    })?;
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| Error::os("memfd_create", e))?;
    nix::unistd::ftruncate(&fd, len_off).map_err(|e| Error::os("ftruncate", e))?;
    Ok(fd)
}

/// A memfd that only the process that made it can write: mapped writable
/// here with `MADV_DONTFORK` (a forked child does not inherit that
/// mapping), then sealed with `F_SEAL_FUTURE_WRITE` (nobody can map it
/// writable or `write` to it again) and against resizing. Whoever gets the
/// descriptor, forked or spawned, can map it read-only only
/// ([`map_read_only`]).
#[cfg(feature = "pool")]
pub(crate) struct WriterMapping(SharedMapping);

#[cfg(feature = "pool")]
impl WriterMapping {
    /// A new zero-filled mapping of `len` bytes (a multiple of the page
    /// size, so that no other data shares its pages).
    pub(crate) fn new(name: &CStr, len: usize) -> Result<WriterMapping> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        let map = SharedMapping::map_new(sealable_memfd(name, len)?, len, false)?;
        // SAFETY: madvise on exactly the range `map` owns; MADV_DONTFORK
        // changes no memory contents, only what a fork copies.
        let r = unsafe { libc::madvise(map.as_ptr().cast(), len, libc::MADV_DONTFORK) };
        if r != 0 {
            return Err(Error::os("madvise", std::io::Error::last_os_error()));
        }
        let seals = SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::from_bits_retain(libc::F_SEAL_FUTURE_WRITE)
            | SealFlag::F_SEAL_SEAL;
        fcntl(map.fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(|e| Error::os("fcntl", e))?;
        Ok(WriterMapping(map))
    }

    /// The first byte (writable in this process only).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// The memfd, for handing to another process.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.0.fd()
    }
}

/// A read-only mapping of all of a memfd that was sealed against writing
/// and resizing ([`WriterMapping`]); refuses any other file, or one of
/// fewer than `min` bytes.
#[cfg(feature = "pool")]
pub(crate) fn map_read_only(fd: BorrowedFd<'_>, min: usize) -> Result<MmapRaw> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    let seals = fcntl(fd, FcntlArg::F_GET_SEALS).map_err(|e| Error::os("fcntl", e))?;
    let want = SealFlag::F_SEAL_SHRINK | SealFlag::from_bits_retain(libc::F_SEAL_FUTURE_WRITE);
    if !SealFlag::from_bits_retain(seals).contains(want) {
        return Err(Error::InvalidArgument(
            "a read-only mapping handed over must be sealed against writing and shrinking",
        ));
    }
    let len = nix::sys::stat::fstat(fd)
        .map_err(|e| Error::os("fstat", e))?
        .st_size as usize;
    if len < min {
        return Err(Error::InvalidSize {
            size: len,
            reason: "the read-only mapping handed over is too small",
        });
    }
    MmapOptions::new()
        .len(len)
        .map_raw_read_only(fd.as_raw_fd())
        .map_err(|e| Error::os("mmap", e))
}

#[cfg(feature = "spawn")]
/// Where the main executable (not a shared library) was loaded: its base
/// address and its executable segments.
pub(crate) struct MainImage {
    pub(crate) base: usize,
    code: Vec<(usize, usize)>,
}

#[cfg(feature = "spawn")]
impl MainImage {
    /// Whether `addr` lies in one of the executable's code segments.
    pub(crate) fn holds(&self, addr: usize) -> bool {
        self.code.iter().any(|&(lo, hi)| lo <= addr && addr < hi)
    }
}

#[cfg(feature = "spawn")]
/// The main executable's image, found once with `dl_iterate_phdr` (whose
/// first object is always the main program).
pub(crate) fn main_image() -> &'static MainImage {
    static IMAGE: std::sync::OnceLock<MainImage> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let mut image = MainImage {
            base: 0,
            code: Vec::new(),
        };
        // SAFETY: `first_object` matches the callback type and only reads
        // the `dl_phdr_info` the loader passes for the length of the call;
        // `data` is `image`, alive and not otherwise used meanwhile.
        unsafe {
            libc::dl_iterate_phdr(Some(first_object), (&raw mut image).cast::<libc::c_void>());
        }
        image
    })
}

#[cfg(feature = "spawn")]
/// `dl_iterate_phdr` callback: records the first object's executable
/// `PT_LOAD` segments, then stops the iteration.
///
/// # Safety
///
/// `info` must point to a valid `dl_phdr_info` whose `dlpi_phdr` has
/// `dlpi_phnum` entries, and `data` to a `MainImage` (as the loader and
/// [`main_image`] guarantee).
unsafe extern "C" fn first_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    const PF_X: u32 = 1;
    // SAFETY: by this function's contract.
    let info = unsafe { &*info };
    // SAFETY: by this function's contract.
    let image = unsafe { &mut *data.cast::<MainImage>() };
    image.base = info.dlpi_addr as usize;
    let phdrs = if info.dlpi_phdr.is_null() {
        &[][..]
    } else {
        // SAFETY: the loader's program header table of this object,
        // `dlpi_phnum` entries long.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
    };
    for ph in phdrs {
        if ph.p_type == libc::PT_LOAD && ph.p_flags & PF_X != 0 {
            let lo = image.base.wrapping_add(ph.p_vaddr as usize);
            image.code.push((lo, lo.wrapping_add(ph.p_memsz as usize)));
        }
    }
    1
}

#[cfg(feature = "spawn")]
/// The file name of the loaded object holding `addr` (`dladdr`), for error
/// messages.
pub(crate) fn object_name(addr: usize) -> String {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, info.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled by dladdr when `found` != 0.
    let info = unsafe { info.assume_init() };
    if found == 0 || info.dli_fname.is_null() {
        return "no loaded object".to_owned();
    }
    // SAFETY: a NUL-terminated name kept by the loader while the object
    // stays loaded (copied at once).
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    match name.to_string_lossy() {
        n if n.is_empty() => "the main executable".to_owned(),
        n => n.into_owned(),
    }
}
