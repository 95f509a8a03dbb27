//! `SharedMemory`: named shared memory blocks, like Python's
//! `multiprocessing.shared_memory.SharedMemory` (POSIX `shm_open` objects
//! under `/dev/shm`, mapped `MAP_SHARED`).

use std::ffi::CString;
use std::fmt;
use std::mem::{align_of, size_of};
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;

use crate::error::{Error, Result, map_variants};

/// Why a named block of shared memory could not be created, opened or
/// unlinked, or a range of it read, written or viewed. Converts into
/// [`Error`] variant for variant ([`OutOfRange`](Self::OutOfRange) as
/// [`Error::IndexOutOfBounds`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedMemoryError {
    /// A block was to be created, but one with that name exists.
    #[error("{name:?} already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// A block was to be opened or unlinked, but none has that name.
    #[error("{name:?} not found")]
    NotFound {
        /// The name.
        name: String,
    },
    /// A name that cannot be used (empty, too long, or with a `/` or NUL).
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A size that cannot be used: zero for a new block, one that does not
    /// fit the address space, or an existing block that is still empty.
    #[error("invalid size {size}: {reason}")]
    InvalidSize {
        /// The size asked for or found.
        size: usize,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Arguments that do not go together (`new(None, false, _)`), or a
    /// typed view the block cannot give (a zero-sized or misaligned type).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A read, write or slice of bytes `start..end` of a block of `size`
    /// bytes: past its end (or `end` before `start`). Nothing was read or
    /// written. (`end` saturates at `usize::MAX`.)
    #[error("range {start}..{end} out of bounds for a block of {size} bytes")]
    OutOfRange {
        /// The range's first byte.
        start: usize,
        /// One past its last byte.
        end: usize,
        /// The block's size.
        size: usize,
    },
    /// A system call failed (`shm_open`, `ftruncate`, `mmap`, ...; `EACCES`
    /// for a block of another user); `call` names it.
    #[error("{call} failed: {source}")]
    Os {
        /// The call that failed.
        call: &'static str,
        /// The operating system's error, with its errno.
        #[source]
        source: std::io::Error,
    },
}

impl SharedMemoryError {
    /// The errno of a [`SharedMemoryError::Os`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            SharedMemoryError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The error for what this module's helpers (which speak [`Error`])
    /// reported. They report nothing else; were they to, the error is kept
    /// whole as the source of an `Os` error.
    fn from_internal(e: Error) -> SharedMemoryError {
        map_variants!(e, Error => SharedMemoryError {
            AlreadyExists { name }, NotFound { name }, InvalidName { name, reason },
            InvalidSize { size, reason }, InvalidArgument(m), Os { call, source },
        }, other => SharedMemoryError::Os {
            call: "shared memory",
            source: std::io::Error::other(other),
        })
    }
}

impl From<SharedMemoryError> for Error {
    fn from(e: SharedMemoryError) -> Error {
        map_variants!(e, SharedMemoryError => Error {
            AlreadyExists { name }, NotFound { name }, InvalidName { name, reason },
            InvalidSize { size, reason }, InvalidArgument(m), Os { call, source },
        },
            // The index is the first byte past the end that the range
            // would touch (its start, for one that ends before it starts).
            SharedMemoryError::OutOfRange { start, end, size } => Error::IndexOutOfBounds {
                index: if start > end { start } else { start.max(size) },
                len: size,
            },
        )
    }
}
use crate::shm::{AtomicNumber, ShmSafe, copy};

/// The prefix of generated names, as in Python (`_SHM_NAME_PREFIX` without
/// its leading slash).
const NAME_PREFIX: &str = "psm_";

/// How many random names `create(None, ..)` tries before giving up.
const NAME_ATTEMPTS: usize = 100;

/// The longest name accepted, in bytes: `NAME_MAX`, the longest file name in
/// `/dev/shm`.
const MAX_NAME_LEN: usize = 255;

/// A named block of shared memory, like Python's
/// `multiprocessing.shared_memory.SharedMemory`.
///
/// [`create`](SharedMemory::create) makes a new block of a given size
/// (`SharedMemory(name, create=True, size=n)`), [`open`](SharedMemory::open)
/// maps an existing one by name (`SharedMemory(name)`). Any process that
/// knows the name can map the block, including a Python one: blocks are
/// wire-compatible with CPython, with the same `shm_open` name (`/` + name),
/// mode `0o600` and size (exactly the bytes asked for). A block shows up as
/// `/dev/shm/<name>`.
///
/// # Examples
///
/// ```
/// use multiproc::SharedMemory;
///
/// let shm = SharedMemory::create(None, 16)?;
/// assert!(shm.name().starts_with("psm_"));
/// shm.write_at(0, b"hello")?;
///
/// // Another process (Rust or Python) opens it by name.
/// let other = SharedMemory::open(shm.name())?;
/// assert_eq!(other.size(), 16);
/// let mut buf = [0u8; 5];
/// other.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
///
/// // The creator unlinks it once everybody is done; handles stay mapped.
/// shm.unlink()?;
/// assert!(SharedMemory::open(shm.name()).is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Who cleans up
///
/// A block is not tied to any process. It exists from `create` until some
/// process [`unlink`](SharedMemory::unlink)s it, even after every process
/// that used it has exited or crashed, and uses memory until then.
///
/// - Dropping a handle, or [`close`](SharedMemory::close), unmaps this
///   handle's view only. It never unlinks.
/// - Exactly one process should unlink the block, once, when nobody needs
///   to open it again: as a rule the creator, after the others are done.
///   Existing mappings keep working after the unlink; only new opens fail.
/// - A block left behind by a crash can be removed with
///   [`SharedMemory::unlink_name`] or `rm /dev/shm/<name>`.
///
/// The crate's other shared objects ([`Value`](crate::Value),
/// [`Array`](crate::Array), the locks) live in anonymous memfds and vanish
/// with their last user. A `SharedMemory` is for sharing by name: with
/// processes that are not forked children, or with Python.
///
/// # Python's resource tracker
///
/// CPython 3.8 to 3.12 registers every `SharedMemory` it constructs with its
/// resource tracker, also one it only opened (`create=False`). When the
/// Python program exits, the tracker unlinks every registered block that was
/// not unlinked and warns "There appear to be N leaked shared_memory
/// objects". So a Python peer that merely opens a block created here
/// removes it when it exits. To prevent that, the Python side calls
/// `multiprocessing.resource_tracker.unregister(shm._name, "shared_memory")`
/// after opening (in Python 3.13 and later: `SharedMemory(name,
/// track=False)`). Likewise a block that Python creates for a Rust process
/// outlives the Python program only if it is unregistered.
///
/// # Concurrency
///
/// Other processes may write a block at any time, without any
/// synchronisation this process can see. The safe accessors are made for
/// that: [`read_at`](SharedMemory::read_at) and
/// [`write_at`](SharedMemory::write_at) copy bytes with relaxed atomic
/// word and byte operations (long copies on x86-64: the processor's string
/// copy, which moves each byte whole), never through references (as Python's
/// `memoryview` slicing copies), so threads sharing a handle never race; a
/// copy that overlaps a concurrent write may get part old, part new bytes
/// (each byte whole).
/// For synchronisation use [`as_atomics`](SharedMemory::as_atomics) (or the
/// crate's locks placed elsewhere). The `unsafe` views
/// ([`as_slice`](SharedMemory::as_slice),
/// [`as_typed`](SharedMemory::as_typed), ...) hand out Rust references,
/// which require the caller to rule out concurrent writers.
///
/// The handle is `Send` and `Sync`: threads may share it as processes do.
///
/// If another process shrinks the block (`ftruncate`) while it is mapped
/// here, touching the lost pages raises `SIGBUS`, as in Python.
///
/// # Differences from Python
///
/// - [`close`](SharedMemory::close) takes the handle by value, so there is
///   no closed-but-alive state; to unlink after closing, use
///   [`unlink_name`](SharedMemory::unlink_name) (or unlink first: an
///   unlinked block stays mapped until closed).
/// - There is no resource tracker: a block this crate creates stays until
///   someone unlinks it, even if the creator crashes.
/// - Names are checked up front ([`SharedMemoryError::InvalidName`]): empty, `.`, `..`,
///   a `/` or NUL anywhere, or over 255 bytes. Python hands them to
///   `shm_open`, which fails.
/// - The file descriptor is closed right after mapping (Python keeps it
///   until `close()`); the mapping does not need it.
/// - Python's `buf` memoryview is [`read_at`](SharedMemory::read_at) /
///   [`write_at`](SharedMemory::write_at) / [`to_vec`](SharedMemory::to_vec),
///   [`as_atomics`](SharedMemory::as_atomics), or the `unsafe` views.
/// - `create(None, ..)` gives up with [`SharedMemoryError::AlreadyExists`] after 100
///   random names that were all taken; Python keeps trying.
pub struct SharedMemory {
    /// The whole block, `MAP_SHARED`, readable and writable; unmapped when
    /// dropped. Never empty.
    map: MmapRaw,
    /// The name without the leading slash, as Python's `name` property.
    name: String,
}

// `MmapRaw` is `Send` and `Sync` (an address and a length), and so is
// `String`; so `SharedMemory` is both without an `unsafe impl`. That is
// sound for this API: the safe methods copy bytes or hand out atomics, both
// fine from many threads (as from many processes), and the views that
// hand out plain references are `unsafe`.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<SharedMemory>();
};

impl SharedMemory {
    /// Creates a new block of `size` bytes, zero-filled, like Python's
    /// `SharedMemory(name, create=True, size=size)`.
    ///
    /// With `None`, the name is `psm_` followed by 8 random hex digits, as
    /// Python makes them, tried again if taken. The new block has mode
    /// `0o600` (less the umask): only this user can open it.
    ///
    /// The caller is the block's owner: [`unlink`](SharedMemory::unlink) it
    /// when it is no longer needed, or it stays in `/dev/shm`.
    ///
    /// Memory is taken from `/dev/shm` page by page as the block is first
    /// written. If `/dev/shm` is full by then, the writing process gets
    /// `SIGBUS`, as with Python.
    ///
    /// # Errors
    ///
    /// - [`SharedMemoryError::InvalidSize`] if `size` is 0 (Python's `ValueError: 'size'
    ///   must be a positive number different from zero`) or too large for a
    ///   file offset.
    /// - [`SharedMemoryError::InvalidName`] for a name that cannot be used (see
    ///   [`open`](SharedMemory::open)).
    /// - [`SharedMemoryError::AlreadyExists`] if a block of that name exists
    ///   (Python's `FileExistsError`).
    /// - [`SharedMemoryError::Os`] for any other failure (permissions, out of memory).
    ///   Nothing is left behind then.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{SharedMemory, SharedMemoryError};
    ///
    /// let name = format!("doc_create_{}", std::process::id());
    /// let shm = SharedMemory::create(Some(&name), 4096)?;
    /// assert_eq!(shm.name(), name);
    /// assert!(matches!(
    ///     SharedMemory::create(Some(&name), 4096),
    ///     Err(SharedMemoryError::AlreadyExists { .. })
    /// ));
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory, SharedMemoryError> {
        Self::create_any(name, size).map_err(SharedMemoryError::from_internal)
    }

    fn create_any(name: Option<&str>, size: usize) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::InvalidSize {
                size,
                reason: "a new block needs a positive size",
            });
        }
        let len = libc::off_t::try_from(size).map_err(|_| Error::InvalidSize {
            size,
            reason: "too large for a shared memory object",
        })?;
        match name.map(without_slash) {
            Some(name) => {
                let path = shm_path(name)?;
                let fd = open_fd(name, &path, true)?;
                map_new(name, &path, fd, size, len)
            }
            None => {
                let mut last = None;
                for _ in 0..NAME_ATTEMPTS {
                    let name = random_name()?;
                    let path = shm_path(&name)?;
                    match open_fd(&name, &path, true) {
                        Ok(fd) => return map_new(&name, &path, fd, size, len),
                        Err(e @ Error::AlreadyExists { .. }) => last = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                Err(last.unwrap_or(Error::InvalidArgument(
                    "no free shared memory name was found",
                )))
            }
        }
    }

    /// Maps the existing block `name`, like Python's `SharedMemory(name)`.
    /// Its size is the block's, read with `fstat`.
    ///
    /// The name is the one [`name`](SharedMemory::name) reports
    /// (`psm_1a2b3c4d`); as in Python, one leading slash is accepted and
    /// dropped (`/psm_1a2b3c4d` names the same block).
    ///
    /// Opening does not make this process an owner: dropping the handle
    /// unmaps it and leaves the block for others.
    ///
    /// # Errors
    ///
    /// - [`SharedMemoryError::NotFound`] if no block has that name (Python's
    ///   `FileNotFoundError`).
    /// - [`SharedMemoryError::InvalidName`] if `name` is empty, `.` or `..`, contains
    ///   `/` or NUL, or is longer than 255 bytes.
    /// - [`SharedMemoryError::InvalidSize`] if the block is empty (size 0; Python's
    ///   `ValueError: cannot mmap an empty file`).
    /// - [`SharedMemoryError::Os`] for any other failure, such as `EACCES` for another
    ///   user's block.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{SharedMemory, SharedMemoryError};
    ///
    /// let name = format!("doc_open_{}", std::process::id());
    /// let created = SharedMemory::create(Some(&name), 100)?;
    /// let opened = SharedMemory::open(&name)?;
    /// assert_eq!(opened.size(), 100);
    /// created.unlink()?;
    /// assert!(matches!(SharedMemory::open(&name), Err(SharedMemoryError::NotFound { .. })));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<SharedMemory, SharedMemoryError> {
        Self::open_any(name).map_err(SharedMemoryError::from_internal)
    }

    fn open_any(name: &str) -> Result<SharedMemory> {
        let name = without_slash(name);
        let path = shm_path(name)?;
        let fd = open_fd(name, &path, false)?;
        let size = usize::try_from(crate::sys::fd::file_size(fd.as_fd())?).map_err(|_| {
            Error::InvalidSize {
                size: 0,
                reason: "the block reports a negative or huge size",
            }
        })?;
        if size == 0 {
            return Err(Error::InvalidSize {
                size,
                reason: "the block is empty and cannot be mapped",
            });
        }
        Ok(SharedMemory {
            map: map_fd(&fd, size)?,
            name: name.to_owned(),
        })
    }

    /// Python's signature, `SharedMemory(name=None, create=False, size=0)`:
    /// [`create`](SharedMemory::create) if `create`, else
    /// [`open`](SharedMemory::open) (which ignores `size`, as Python does).
    ///
    /// # Errors
    ///
    /// Those of `create` and `open`, and [`SharedMemoryError::InvalidArgument`] for
    /// `name == None` without `create` (Python's `ValueError: 'name' can
    /// only be None if create=True`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    ///
    /// let a = SharedMemory::new(None, true, 10)?;
    /// let b = SharedMemory::new(Some(a.name()), false, 0)?;
    /// assert_eq!(b.size(), 10);
    /// assert!(SharedMemory::new(None, false, 10).is_err());
    /// a.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn new(
        name: Option<&str>,
        create: bool,
        size: usize,
    ) -> Result<SharedMemory, SharedMemoryError> {
        match (name, create) {
            (name, true) => SharedMemory::create(name, size),
            (Some(name), false) => SharedMemory::open(name),
            (None, false) => Err(SharedMemoryError::InvalidArgument(
                "'name' can only be None if create=True",
            )),
        }
    }

    /// Opens the block `name`, or creates it with `size` zeroed bytes if
    /// there is none; `true` with the handle if this call created it (the
    /// creator is then the one to initialize and, later, unlink it). Safe
    /// against a race with another `open_or_create`, or an unlink, of the
    /// same name: exactly one caller creates it. An existing block keeps
    /// its own size (read it with [`size`](SharedMemory::size)).
    ///
    /// # Errors
    ///
    /// Those of [`create`](SharedMemory::create) and
    /// [`open`](SharedMemory::open); [`SharedMemoryError::InvalidSize`] if the block
    /// another process is creating stays empty for a second (it died
    /// between creating and sizing it).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    ///
    /// let name = format!("doc_ooc_{}", std::process::id());
    /// let (a, created) = SharedMemory::open_or_create(&name, 64)?;
    /// assert!(created);
    /// let (b, created) = SharedMemory::open_or_create(&name, 64)?;
    /// assert!(!created);
    /// assert_eq!(b.size(), 64);
    /// a.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn open_or_create(
        name: &str,
        size: usize,
    ) -> Result<(SharedMemory, bool), SharedMemoryError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match SharedMemory::create(Some(name), size) {
                Ok(shm) => return Ok((shm, true)),
                Err(SharedMemoryError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            let e = match SharedMemory::open(name) {
                Ok(shm) => return Ok((shm, false)),
                // Unlinked in between: try creating again.
                Err(e @ SharedMemoryError::NotFound { .. }) => e,
                // Created but not sized yet by its creator: give it a moment.
                Err(e @ SharedMemoryError::InvalidSize { size: 0, .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    e
                }
                Err(e) => return Err(e),
            };
            // Others creating and unlinking the name for a whole second.
            if std::time::Instant::now() >= deadline {
                return Err(e);
            }
        }
    }

    /// The block's name, without the leading slash (Python's `name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The block's size in bytes (Python's `size`): the size it was created
    /// with, exactly, not rounded to pages.
    pub fn size(&self) -> usize {
        self.map.len()
    }

    /// The first byte of the block, page-aligned. Valid for
    /// [`size`](SharedMemory::size) bytes while `self` lives; other
    /// processes may write through it at any time.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The block as a byte slice.
    ///
    /// # Safety
    ///
    /// A `&[u8]` promises that its bytes do not change while it lives, but
    /// other processes (and other handles or threads of this one) can write
    /// the block at any time. The caller must make sure nobody writes the
    /// block while the slice lives, for example by a protocol in which the
    /// writers have finished (joined, or signalled through
    /// [`as_atomics`](SharedMemory::as_atomics) or a crate lock). Otherwise use
    /// [`read_at`](SharedMemory::read_at), which copies.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(None, 4)?;
    /// shm.write_at(0, &[1, 2, 3, 4])?;
    /// // SAFETY: the block is new and its name was never given to anyone.
    /// assert_eq!(unsafe { shm.as_slice() }, &[1, 2, 3, 4]);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `size` readable bytes, valid while `self`
        // lives (it is unmapped only on drop); that nobody writes them
        // meanwhile is the caller's promise.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.size()) }
    }

    /// The block as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// The slice must be the only access to the block while it lives: no
    /// other process, thread, handle or earlier slice from this method may
    /// read or write the block meanwhile (a `&mut` promises exclusive
    /// access). Use [`write_at`](SharedMemory::write_at) otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(None, 4)?;
    /// // SAFETY: the block is new and its name was never given to anyone;
    /// // the slice is the only view of it.
    /// unsafe { shm.as_mut_slice() }.copy_from_slice(b"abcd");
    /// let mut buf = [0; 4];
    /// shm.read_at(0, &mut buf)?;
    /// assert_eq!(&buf, b"abcd");
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::mut_from_ref)] // the memory is shared, not owned by `self`
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping is `size` writable bytes, valid while `self`
        // lives; exclusive access for the slice's life is the caller's
        // promise.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.size()) }
    }

    /// The bytes in `range` as a shared slice.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::OutOfRange`] if `range` does not fit in the block.
    ///
    /// # Safety
    ///
    /// As for [`as_slice`](SharedMemory::as_slice), for these bytes only:
    /// nobody may write them while the slice lives.
    pub unsafe fn slice(&self, range: Range<usize>) -> Result<&[u8], SharedMemoryError> {
        let len = self.check_slice_range(&range)?;
        // SAFETY: `range` lies in the mapping (checked), which lives as long
        // as `self`; the absence of writers is the caller's promise.
        Ok(unsafe { std::slice::from_raw_parts(self.at(range.start), len) })
    }

    /// The bytes in `range` as a mutable slice: for processes or threads
    /// that each fill their own part of a block.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::OutOfRange`] if `range` does not fit in the block.
    ///
    /// # Safety
    ///
    /// As for [`as_mut_slice`](SharedMemory::as_mut_slice), for these bytes
    /// only: while the slice lives, nothing else in any process may read or
    /// write them, so ranges handed to different workers must be disjoint.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(None, 8)?;
    /// // SAFETY: the block is private to this example, and the two slices
    /// // are disjoint.
    /// let (a, b) = unsafe { (shm.slice_mut(0..4)?, shm.slice_mut(4..8)?) };
    /// a.fill(1);
    /// b.fill(2);
    /// assert_eq!(shm.to_vec(), [1, 1, 1, 1, 2, 2, 2, 2]);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::mut_from_ref)] // the memory is shared, not owned by `self`
    pub unsafe fn slice_mut(&self, range: Range<usize>) -> Result<&mut [u8], SharedMemoryError> {
        let len = self.check_slice_range(&range)?;
        // SAFETY: `range` lies in the mapping (checked), which lives as long
        // as `self`; exclusive access to it is the caller's promise.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.at(range.start), len) })
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the block.
    ///
    /// A copy made while another process writes the same bytes may see a
    /// mix of old and new bytes; synchronise through
    /// [`as_atomics`](SharedMemory::as_atomics) or a crate lock where that
    /// matters.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::OutOfRange`] if the range does not fit in the block;
    /// `index` is the first byte that would be read past the end.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(None, 8)?;
    /// shm.write_at(6, &[7, 8])?;
    /// let mut buf = [0; 3];
    /// shm.read_at(5, &mut buf)?;
    /// assert_eq!(buf, [0, 7, 8]);
    /// assert!(shm.read_at(6, &mut buf).is_err());
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), SharedMemoryError> {
        self.check_range(offset, buf.len())?;
        // SAFETY: `offset..offset + buf.len()` lies in the mapping (checked
        // above), which stays mapped while `self` lives. Every safe access
        // to the block in this process is atomic (these copies and
        // `as_atomics`); the `unsafe` views put the absence of concurrent
        // access on their callers. `buf` is a distinct `&mut`.
        unsafe { copy::load(self.at(offset), buf) };
        Ok(())
    }

    /// Copies `data` into the block starting at `offset`.
    ///
    /// Nothing orders this write with other processes' reads; see
    /// [`read_at`](SharedMemory::read_at).
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::OutOfRange`] if the range does not fit in the block;
    /// nothing is written then.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(None, 4)?;
    /// shm.write_at(1, b"xyz")?;
    /// assert!(shm.write_at(2, b"xyz").is_err());
    /// assert_eq!(shm.to_vec(), b"\0xyz");
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), SharedMemoryError> {
        self.check_range(offset, data.len())?;
        // SAFETY: as in `read_at`: the range is in the live, writable
        // mapping, and every safe access to it in this process is atomic.
        unsafe { copy::store(data, self.at(offset)) };
        Ok(())
    }

    /// A copy of the whole block (Python's `bytes(shm.buf)`).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.size()];
        // The range is the whole block, so this cannot fail.
        let _ = self.read_at(0, &mut v);
        v
    }

    /// The block as a slice of `T`, like `shm.buf.cast(fmt)` in Python.
    ///
    /// # Errors
    ///
    /// - [`SharedMemoryError::InvalidArgument`] if `T` is zero-sized or the block is
    ///   not aligned for `T` (it is page-aligned, so this takes an alignment
    ///   over 4096).
    /// - [`SharedMemoryError::InvalidSize`] if the size is not a multiple of
    ///   `size_of::<T>()` (Python: "length is not a multiple of itemsize").
    ///
    /// # Safety
    ///
    /// - As for [`as_slice`](SharedMemory::as_slice): nobody may write the
    ///   block while the slice lives, unless `T` allows shared mutation
    ///   itself (atomics) and every writer uses it.
    /// - Every element's bytes must be a valid `T`. A new block is all
    ///   zeros, which is valid for any [`ShmSafe`] type; but another
    ///   process may have written anything, and not every byte pattern is a
    ///   `bool` or a `char` (integers and floats take any).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(None, 8)?;
    /// shm.write_at(0, &7u32.to_ne_bytes())?;
    /// // SAFETY: the block is new and private to this example; any bytes
    /// // are valid u32s.
    /// let words = unsafe { shm.as_typed::<u32>()? };
    /// assert_eq!(words, &[7, 0]);
    /// // SAFETY: as above.
    /// assert!(unsafe { shm.as_typed::<[u8; 3]>() }.is_err()); // 8 % 3 != 0
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub unsafe fn as_typed<T: ShmSafe>(&self) -> Result<&[T], SharedMemoryError> {
        let len = self.typed_len::<T>()?;
        // SAFETY: the mapping holds `len * size_of::<T>()` bytes, aligned for
        // T (checked by `typed_len`), valid while `self` lives; that they are
        // valid T's and nobody writes them meanwhile is the caller's promise.
        Ok(unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<T>(), len) })
    }

    /// The block as a mutable slice of `T`.
    ///
    /// # Errors
    ///
    /// As for [`as_typed`](SharedMemory::as_typed).
    ///
    /// # Safety
    ///
    /// As for [`as_mut_slice`](SharedMemory::as_mut_slice): the slice must
    /// be the only access to the block while it lives. And every element's
    /// bytes must be a valid `T`, as for [`as_typed`](SharedMemory::as_typed).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::create(None, 16)?;
    /// // SAFETY: the block is new and private to this example; zero bytes
    /// // are valid f64s; this slice is the only view.
    /// let xs = unsafe { shm.as_typed_mut::<f64>()? };
    /// xs[1] = 2.5;
    /// assert_eq!(shm.to_vec()[8..], 2.5f64.to_ne_bytes());
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::mut_from_ref)] // the memory is shared, not owned by `self`
    pub unsafe fn as_typed_mut<T: ShmSafe>(&self) -> Result<&mut [T], SharedMemoryError> {
        let len = self.typed_len::<T>()?;
        // SAFETY: as in `as_typed`, with exclusive access for the slice's
        // life promised by the caller.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.as_ptr().cast::<T>(), len) })
    }

    /// The block as a slice of atomic integers: `u64` gives
    /// `&[AtomicU64]`, `f64` gives `&[AtomicU64]` holding the bits. Safe:
    /// atomics may be used from many threads and processes at once, and
    /// every byte pattern is a valid integer.
    ///
    /// The block is page-aligned, so the atomics are aligned; other
    /// processes must also access these words atomically for the
    /// operations to be atomic (a Python `memoryview` write is a plain
    /// copy, which may tear).
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::InvalidSize`] if the size is not a multiple of
    /// `size_of::<T>()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    ///
    /// let shm = multiproc::SharedMemory::create(None, 64)?;
    /// let counters = shm.as_atomics::<u64>()?;
    /// assert_eq!(counters.len(), 8);
    /// counters[3].fetch_add(5, Ordering::SeqCst);
    /// assert_eq!(shm.to_vec()[24], 5);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn as_atomics<T: AtomicNumber>(&self) -> Result<&[T::Repr], SharedMemoryError> {
        const {
            assert!(
                size_of::<T>() == size_of::<T::Repr>() && align_of::<T>() == align_of::<T::Repr>()
            )
        };
        let len = self.typed_len::<T>()?;
        // SAFETY: the mapping holds `len` elements of T's size, aligned for
        // T (checked by `typed_len`), and T::Repr has T's size and alignment
        // (asserted above). The Repr of an `AtomicNumber` is an atomic
        // integer (floats use their bits' atomic), for which every byte
        // pattern is valid, and atomics permit shared, concurrent access
        // through `&`. The mapping lives as long as `self`.
        Ok(unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<T::Repr>(), len) })
    }

    /// Unmaps this handle's view of the block (Python's `close()`), as
    /// dropping it does. The block stays for other handles and processes.
    ///
    /// Unmapping cannot fail for a mapping this handle made, so nothing is
    /// returned.
    pub fn close(self) {
        drop(self);
    }

    /// Removes the block's name (Python's `unlink()`): nobody can open it
    /// any more, and its memory is freed once the last mapping is gone.
    /// This handle and other existing mappings keep working.
    ///
    /// Call it once, from one process, when the block is no longer needed.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::NotFound`] if the name is already gone, for example after a
    /// second `unlink` (Python's `FileNotFoundError`). If another block was
    /// created under the same name in between, that one is removed.
    pub fn unlink(&self) -> Result<(), SharedMemoryError> {
        SharedMemory::unlink_name(&self.name)
    }

    /// Removes the block `name` without mapping it (`shm_unlink`): to clean
    /// up a block whose handle was closed, or one left by a crashed process.
    ///
    /// # Errors
    ///
    /// [`SharedMemoryError::NotFound`] if no block has that name,
    /// [`SharedMemoryError::InvalidName`] as for [`open`](SharedMemory::open), and
    /// [`SharedMemoryError::Os`] otherwise (such as `EACCES`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    ///
    /// let shm = SharedMemory::create(None, 1)?;
    /// let name = shm.name().to_owned();
    /// shm.close();
    /// SharedMemory::unlink_name(&name)?;
    /// assert!(SharedMemory::unlink_name(&name).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn unlink_name(name: &str) -> Result<(), SharedMemoryError> {
        let name = without_slash(name);
        let path = shm_path(name).map_err(SharedMemoryError::from_internal)?;
        crate::sys::mem::shm_unlink(path.as_c_str())
            .map_err(|e| SharedMemoryError::from_internal(shm_error("shm_unlink", name, e)))
    }

    /// The address of byte `offset` (computed without `unsafe`; in the
    /// block if `offset` was checked to be).
    fn at(&self, offset: usize) -> *mut u8 {
        self.as_ptr().wrapping_add(offset)
    }

    /// Checks that `len` bytes from `offset` lie in the block.
    fn check_range(&self, offset: usize, len: usize) -> Result<(), SharedMemoryError> {
        let size = self.size();
        if offset <= size && len <= size - offset {
            Ok(())
        } else {
            Err(SharedMemoryError::OutOfRange {
                start: offset,
                end: offset.saturating_add(len),
                size,
            })
        }
    }

    /// Checks that `range` lies in the block; returns its length.
    fn check_slice_range(&self, range: &Range<usize>) -> Result<usize, SharedMemoryError> {
        if range.start > range.end {
            return Err(SharedMemoryError::OutOfRange {
                start: range.start,
                end: range.end,
                size: self.size(),
            });
        }
        let len = range.end - range.start;
        self.check_range(range.start, len)?;
        Ok(len)
    }

    /// How many `T`s the block holds, after checking size and alignment.
    fn typed_len<T>(&self) -> Result<usize, SharedMemoryError> {
        let elem = size_of::<T>();
        if elem == 0 {
            return Err(SharedMemoryError::InvalidArgument(
                "a zero-sized type cannot view shared memory",
            ));
        }
        if !self.as_ptr().cast::<T>().is_aligned() {
            return Err(SharedMemoryError::InvalidArgument(
                "the block is not aligned for the element type",
            ));
        }
        let size = self.size();
        if !size.is_multiple_of(elem) {
            return Err(SharedMemoryError::InvalidSize {
                size,
                reason: "not a multiple of the element size",
            });
        }
        Ok(size / elem)
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .finish()
    }
}

/// `name` without one leading slash: Python accepts `"/name"` for the
/// block `name` (its `shm_open` strips leading slashes).
fn without_slash(name: &str) -> &str {
    name.strip_prefix('/').unwrap_or(name)
}

/// Checks `name` and makes the `shm_open` name: `/` + name.
fn shm_path(name: &str) -> Result<CString> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name == "." || name == ".." {
        return invalid("`.` and `..` are not names");
    }
    if name.contains('/') {
        return invalid("contains '/' (give the name without a leading slash)");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("longer than 255 bytes");
    }
    CString::new(format!("/{name}")).or_else(|_| invalid("contains a NUL byte"))
}

/// The `shm_open` error `e` for `name`: the named errors for `EEXIST` and
/// `ENOENT`, else [`Error::Os`].
fn shm_error(call: &'static str, name: &str, e: Errno) -> Error {
    match e {
        Errno::EEXIST => Error::AlreadyExists {
            name: name.to_owned(),
        },
        Errno::ENOENT => Error::NotFound {
            name: name.to_owned(),
        },
        e => Error::os(call, e),
    }
}

/// `shm_open`s `path` read-write; with `create`, exclusively and new, with
/// mode `0o600` as Python does.
fn open_fd(name: &str, path: &CString, create: bool) -> Result<OwnedFd> {
    crate::sys::mem::shm_open(path.as_c_str(), create).map_err(|e| shm_error("shm_open", name, e))
}

/// Sizes and maps the freshly created block `fd`; unlinks it again if that
/// fails, so a failed `create` leaves nothing behind (as Python does).
fn map_new(
    name: &str,
    path: &CString,
    fd: OwnedFd,
    size: usize,
    len: libc::off_t,
) -> Result<SharedMemory> {
    let mapped = crate::sys::fd::set_len(fd.as_fd(), len).and_then(|()| map_fd(&fd, size));
    match mapped {
        Ok(map) => Ok(SharedMemory {
            map,
            name: name.to_owned(),
        }),
        Err(e) => {
            let _ = crate::sys::mem::shm_unlink(path.as_c_str());
            Err(e)
        }
    }
}

/// Maps `size` bytes of `fd`, shared and read-write. The descriptor may be
/// closed afterwards.
fn map_fd(fd: &OwnedFd, size: usize) -> Result<MmapRaw> {
    MmapOptions::new()
        .len(size)
        .map_raw(fd)
        .map_err(|e| Error::os("mmap", e))
}

/// A name as Python's `_make_filename` makes them: `psm_` and 8 random
/// lowercase hex digits.
fn random_name() -> Result<String> {
    let mut bytes = [0u8; 4];
    crate::sys::random::fill(&mut bytes)?;
    let mut name = String::from(NAME_PREFIX);
    for b in bytes {
        name.push_str(&format!("{b:02x}"));
    }
    Ok(name)
}
