//! Memory shared between processes: a memfd mapped `MAP_SHARED`.
//!
//! A memfd has no name in any file system, so nothing is left behind in
//! `/dev/shm` when a process crashes: the memory goes away with the last
//! mapping and the last descriptor. A forked child inherits the mapping at
//! the same address; a spawned one can map the descriptor again.

use std::ffi::CStr;
use std::fs::File;
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
    #[cfg(feature = "serde")]
    pub(crate) fn new_sealed(name: &CStr, len: usize) -> Result<SharedMapping> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        let len_off = libc::off_t::try_from(len).map_err(|_| Error::InvalidSize {
            size: len,
            reason: "too large for a memfd",
        })?;
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
            .map_err(|e| Error::os("memfd_create", e))?;
        nix::unistd::ftruncate(&fd, len_off).map_err(|e| Error::os("ftruncate", e))?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| Error::os("fcntl", e))?;
        Self::map_new(fd, len, false)
    }

    /// Maps the memfd `fd` if its size is sealed against shrinking and it
    /// has at least `min` bytes (see [`new_sealed`](Self::new_sealed)).
    #[cfg(feature = "serde")]
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
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
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

    /// The memfd behind the mapping, for handing to another process.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
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
