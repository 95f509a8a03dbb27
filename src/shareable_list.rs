//! `ShareableList`: a fixed-length list in a named [`SharedMemory`] block,
//! laid out byte for byte as Python's
//! `multiprocessing.shared_memory.ShareableList`, so either side can make
//! a list that the other opens by name.
//!
//! The block holds, in native byte order (little-endian on the machines
//! this crate runs on), 8-byte aligned:
//!
//! * the number of items `n` (`i64`);
//! * `n + 1` offsets (`i64`) of each item's slot from the start of the data
//!   area, the last being the data area's length;
//! * the data area: each item in its slot (`int` and `float`: 8 bytes;
//!   `bool`: 7 pad bytes and the flag; `None`: 6 pad bytes, a zero byte and
//!   a pad byte; `str` and `bytes`: NUL-padded, a multiple of 8 bytes);
//! * `n` `struct` formats of 8 bytes each (`q`, `d`, `xxxxxxx?`,
//!   `xxxxxx?x`, `<len>s`, NUL-padded);
//! * `n` one-byte codes telling how to rebuild each value (0: number or
//!   bool, 1: `str`, 2: `bytes`, 3: `None`).
//!
//! Another process may write anything there at any time: every count,
//! offset, format and code is checked before it is used, reads and writes
//! go through [`SharedMemory::read_at`]/[`write_at`](SharedMemory::write_at)
//! (bounds-checked, atomic per byte), and what does not make sense is
//! [`ShareableListError::Corrupt`].

use std::fmt;

use crate::error::{Error, Result};
use crate::shared_memory::{SharedMemory, SharedMemoryError};

/// One value of a [`ShareableList`]: the types Python's holds.
#[derive(Clone, Debug, PartialEq)]
pub enum ShareableItem {
    /// Python `int` (64-bit).
    Int(i64),
    /// Python `float`.
    Float(f64),
    /// Python `bool`.
    Bool(bool),
    /// Python `str`. Trailing NUL characters are lost, as in Python.
    Str(String),
    /// Python `bytes`. Trailing NUL bytes are lost, as in Python.
    Bytes(Vec<u8>),
    /// Python `None`.
    None,
}

impl From<i64> for ShareableItem {
    fn from(v: i64) -> Self {
        ShareableItem::Int(v)
    }
}

impl From<f64> for ShareableItem {
    fn from(v: f64) -> Self {
        ShareableItem::Float(v)
    }
}

impl From<bool> for ShareableItem {
    fn from(v: bool) -> Self {
        ShareableItem::Bool(v)
    }
}

impl From<&str> for ShareableItem {
    fn from(v: &str) -> Self {
        ShareableItem::Str(v.to_owned())
    }
}

impl From<String> for ShareableItem {
    fn from(v: String) -> Self {
        ShareableItem::Str(v)
    }
}

impl From<&[u8]> for ShareableItem {
    fn from(v: &[u8]) -> Self {
        ShareableItem::Bytes(v.to_vec())
    }
}

impl From<Vec<u8>> for ShareableItem {
    fn from(v: Vec<u8>) -> Self {
        ShareableItem::Bytes(v)
    }
}

impl<T: Into<ShareableItem>> From<Option<T>> for ShareableItem {
    fn from(v: Option<T>) -> Self {
        v.map_or(ShareableItem::None, Into::into)
    }
}

const ALIGN: usize = 8;
const INT: &[u8] = b"q";
const FLOAT: &[u8] = b"d";
const BOOL: &[u8] = b"xxxxxxx?";
const NONE: &[u8] = b"xxxxxx?x";

impl ShareableItem {
    /// The slot a new list gives this item (Python's rule, counted in
    /// encoded bytes so that nothing is ever cut).
    fn slot(&self) -> usize {
        match self {
            ShareableItem::Str(s) => ALIGN * (s.len() / ALIGN + 1),
            ShareableItem::Bytes(b) => ALIGN * (b.len() / ALIGN + 1),
            _ => ALIGN,
        }
    }

    /// The rebuild code Python stores.
    fn code(&self) -> u8 {
        match self {
            ShareableItem::Str(_) => 1,
            ShareableItem::Bytes(_) => 2,
            ShareableItem::None => 3,
            _ => 0,
        }
    }
}

/// A fixed-length list of numbers, booleans, strings, byte strings and
/// `None` in shared memory, compatible with Python's
/// `multiprocessing.shared_memory.ShareableList`: a list either side makes
/// opens by name on the other.
///
/// As in Python, the length is fixed, an item may be replaced by any other
/// value, but a string or byte string must fit the slot it gets (the slot
/// of the item first stored there: 8 bytes for a number, the next multiple
/// of 8 above a string's length), and nothing synchronizes readers and
/// writers: guard the list with a [`Lock`](crate::Lock) if several
/// processes write it. A read never sees torn bytes within a byte, but may
/// see an item half-replaced; an item another process left inconsistent is
/// [`ShareableListError::Corrupt`], never undefined behaviour.
///
/// # Examples
///
/// ```
/// use multiproc::{ShareableItem, ShareableList};
///
/// let list = ShareableList::create(None, &[1i64.into(), "two".into(), ShareableItem::None])?;
/// let other = ShareableList::open(list.name())?;
/// other.set(0, 10i64)?;
/// assert_eq!(list.get(0)?, ShareableItem::Int(10));
/// assert_eq!(list.get(1)?, ShareableItem::Str("two".into()));
/// list.shm().unlink()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ShareableList {
    shm: SharedMemory,
    /// The item count and slot offsets, read once when opened (as Python
    /// does) and checked against the block's size.
    len: usize,
    offsets: Vec<usize>,
}

fn corrupt(what: &'static str) -> Error {
    Error::Corrupt(what)
}

impl ShareableList {
    /// Makes a new block (named `name`, or a generated `psm_` name) holding
    /// `items` (Python's `ShareableList(items, name=name)`).
    ///
    /// # Errors
    ///
    /// Those of [`SharedMemory::create`].
    fn create_any(name: Option<&str>, items: &[ShareableItem]) -> Result<ShareableList> {
        let n = items.len();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut at = 0usize;
        offsets.push(0);
        for item in items {
            at = at.checked_add(item.slot()).ok_or(Error::InvalidSize {
                size: usize::MAX,
                reason: "a shareable list too large",
            })?;
            offsets.push(at);
        }
        let size = layout(n, at).ok_or(Error::InvalidSize {
            size: usize::MAX,
            reason: "a shareable list too large",
        })?;
        let shm = SharedMemory::create(name, size.total)?;
        let list = ShareableList {
            shm,
            len: n,
            offsets,
        };
        let mut header = Vec::with_capacity(8 * (n + 2));
        header.extend_from_slice(&(n as i64).to_ne_bytes());
        for &o in &list.offsets {
            header.extend_from_slice(&(o as i64).to_ne_bytes());
        }
        list.shm.write_at(0, &header)?;
        for (i, item) in items.iter().enumerate() {
            list.store(i, item, list.offsets[i + 1] - list.offsets[i])?;
        }
        Ok(list)
    }

    /// Opens the list in the block `name` (Python's
    /// `ShareableList(name=name)`), made by this crate or by Python.
    ///
    /// # Errors
    ///
    /// Those of [`SharedMemory::open`]; [`Error::Corrupt`] if the block
    /// does not hold a list of the size it claims.
    fn open_any(name: &str) -> Result<ShareableList> {
        let shm = SharedMemory::open(name)?;
        let n = read_i64(&shm, 0)?;
        let n = usize::try_from(n).map_err(|_| corrupt("a negative item count"))?;
        // The offsets, the formats and the codes alone must fit.
        if n > shm.size() / 17 {
            return Err(corrupt("an item count larger than the block"));
        }
        let mut raw = vec![0u8; 8 * (n + 1)];
        shm.read_at(8, &mut raw)?;
        let mut offsets = Vec::with_capacity(n + 1);
        for chunk in raw.chunks_exact(8) {
            let o = i64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
            let o = usize::try_from(o).map_err(|_| corrupt("a negative item offset"))?;
            if offsets.last().is_some_and(|&p| o < p) {
                return Err(corrupt("item offsets out of order"));
            }
            offsets.push(o);
        }
        let data_len = *offsets.last().expect("n + 1 >= 1 offsets");
        match layout(n, data_len) {
            Some(l) if l.total <= shm.size() => {}
            _ => return Err(corrupt("a list larger than its block")),
        }
        Ok(ShareableList {
            shm,
            len: n,
            offsets,
        })
    }

    /// The number of items (fixed).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block's name (Python's `sl.shm.name`).
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The block itself (to [`unlink`](SharedMemory::unlink) it, as
    /// Python's `sl.shm.unlink()`).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    fn layout(&self) -> Layout {
        layout(self.len, self.offsets[self.len]).expect("checked when made or opened")
    }

    fn check(&self, index: usize) -> Result<()> {
        if index < self.len {
            Ok(())
        } else {
            Err(Error::IndexOutOfBounds {
                index,
                len: self.len,
            })
        }
    }

    /// The stored format of item `index`, without its NUL padding.
    fn format(&self, index: usize) -> Result<Vec<u8>> {
        let mut f = [0u8; 8];
        self.shm
            .read_at(self.layout().formats + 8 * index, &mut f)?;
        let end = f.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        Ok(f[..end].to_vec())
    }

    /// Item `index` (Python's `sl[index]`).
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfBounds`]; [`Error::Corrupt`] if its format and
    /// code do not describe a value (another process wrote garbage), or a
    /// string is not UTF-8.
    fn get_any(&self, index: usize) -> Result<ShareableItem> {
        self.check(index)?;
        let l = self.layout();
        let at = l.data + self.offsets[index];
        let format = self.format(index)?;
        let mut code = [0u8; 1];
        self.shm.read_at(l.codes + index, &mut code)?;
        let mut word = [0u8; 8];
        match (format.as_slice(), code[0]) {
            (INT, 0) => {
                self.shm.read_at(at, &mut word)?;
                Ok(ShareableItem::Int(i64::from_ne_bytes(word)))
            }
            (FLOAT, 0) => {
                self.shm.read_at(at, &mut word)?;
                Ok(ShareableItem::Float(f64::from_ne_bytes(word)))
            }
            (BOOL, 0) => {
                self.shm.read_at(at, &mut word)?;
                Ok(ShareableItem::Bool(word[7] != 0))
            }
            (NONE, 3) => Ok(ShareableItem::None),
            (f, code @ (1 | 2)) if f.last() == Some(&b's') => {
                let n: usize = std::str::from_utf8(&f[..f.len() - 1])
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or(corrupt("a string format without a length"))?;
                if n > self.shm.size() {
                    return Err(corrupt("a string longer than the block"));
                }
                let mut bytes = vec![0u8; n];
                self.shm.read_at(at, &mut bytes)?;
                let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                bytes.truncate(end);
                if code == 1 {
                    String::from_utf8(bytes)
                        .map(ShareableItem::Str)
                        .map_err(|_| corrupt("a string that is not UTF-8"))
                } else {
                    Ok(ShareableItem::Bytes(bytes))
                }
            }
            _ => Err(corrupt("an item whose format and code do not match")),
        }
    }

    /// Replaces item `index` (Python's `sl[index] = value`). A string or
    /// byte string must fit the item's slot.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfBounds`]; [`Error::InvalidSize`] for a string
    /// longer than the slot (Python's `ValueError: bytes/str item exceeds
    /// available storage`).
    fn set_any(&self, index: usize, value: ShareableItem) -> Result<()> {
        self.check(index)?;
        let slot = self.offsets[index + 1] - self.offsets[index];
        self.store(index, &value, slot)
    }

    /// Writes `item` into slot `index` of `slot` bytes: value, format, code.
    fn store(&self, index: usize, item: &ShareableItem, slot: usize) -> Result<()> {
        let l = self.layout();
        let at = l.data + self.offsets[index];
        let (format, bytes): (Vec<u8>, Vec<u8>) = match item {
            ShareableItem::Int(v) => (INT.to_vec(), v.to_ne_bytes().to_vec()),
            ShareableItem::Float(v) => (FLOAT.to_vec(), v.to_ne_bytes().to_vec()),
            ShareableItem::Bool(v) => (BOOL.to_vec(), vec![0, 0, 0, 0, 0, 0, 0, *v as u8]),
            ShareableItem::None => (NONE.to_vec(), vec![0; 8]),
            ShareableItem::Str(s) => Self::string(s.as_bytes(), slot)?,
            ShareableItem::Bytes(b) => Self::string(b, slot)?,
        };
        if bytes.len() > slot {
            // A number in a slot smaller than 8 bytes: only a corrupt
            // offset table can make one.
            return Err(corrupt("an item slot shorter than 8 bytes"));
        }
        let mut f = [0u8; 8];
        f[..format.len()].copy_from_slice(&format);
        self.shm.write_at(l.formats + 8 * index, &f)?;
        self.shm.write_at(l.codes + index, &[item.code()])?;
        Ok(self.shm.write_at(at, &bytes)?)
    }

    /// The format and NUL-padded bytes of a string in a slot of `slot`
    /// bytes.
    fn string(b: &[u8], slot: usize) -> Result<(Vec<u8>, Vec<u8>)> {
        if b.len() > slot {
            return Err(Error::InvalidSize {
                size: b.len(),
                reason: "the string exceeds its item's storage",
            });
        }
        let format = format!("{slot}s").into_bytes();
        if format.len() > 8 {
            return Err(Error::InvalidSize {
                size: slot,
                reason: "a string slot too large for an 8-byte format",
            });
        }
        let mut bytes = b.to_vec();
        bytes.resize(slot, 0);
        Ok((format, bytes))
    }

    fn to_vec_any(&self) -> Result<Vec<ShareableItem>> {
        (0..self.len).map(|i| self.get_any(i)).collect()
    }
}

/// The public calls: each returns a [`ShareableListError`] (see the
/// private `*_any` forms above for what each can meet).
impl ShareableList {
    /// Makes a new block (named `name`, or a generated `psm_` name) holding
    /// `items` (Python's `ShareableList(items, name=name)`).
    ///
    /// # Errors
    ///
    /// [`ShareableListError::SharedMemory`] with those of
    /// [`SharedMemory::create`]; [`ShareableListError::InvalidSize`] for a
    /// list too large, or a string too long for an 8-byte format.
    pub fn create(
        name: Option<&str>,
        items: &[ShareableItem],
    ) -> Result<ShareableList, ShareableListError> {
        Self::create_any(name, items).map_err(ShareableListError::from_internal)
    }

    /// Opens the list in the block `name` (Python's
    /// `ShareableList(name=name)`), made by this crate or by Python.
    ///
    /// # Errors
    ///
    /// [`ShareableListError::SharedMemory`] with those of
    /// [`SharedMemory::open`]; [`ShareableListError::Corrupt`] if the block
    /// does not hold a list of the size it claims.
    pub fn open(name: &str) -> Result<ShareableList, ShareableListError> {
        Self::open_any(name).map_err(ShareableListError::from_internal)
    }

    /// Item `index` (Python's `sl[index]`).
    ///
    /// # Errors
    ///
    /// [`ShareableListError::IndexOutOfBounds`];
    /// [`ShareableListError::Corrupt`] if its format and code do not
    /// describe a value (another process wrote garbage), or a string is not
    /// UTF-8.
    pub fn get(&self, index: usize) -> Result<ShareableItem, ShareableListError> {
        self.get_any(index)
            .map_err(ShareableListError::from_internal)
    }

    /// Replaces item `index` (Python's `sl[index] = value`). A string or
    /// byte string must fit the item's slot.
    ///
    /// # Errors
    ///
    /// [`ShareableListError::IndexOutOfBounds`];
    /// [`ShareableListError::InvalidSize`] for a string longer than the
    /// slot (Python's `ValueError: bytes/str item exceeds available
    /// storage`); [`ShareableListError::Corrupt`] for a slot table another
    /// process garbled.
    pub fn set(
        &self,
        index: usize,
        value: impl Into<ShareableItem>,
    ) -> Result<(), ShareableListError> {
        self.set_any(index, value.into())
            .map_err(ShareableListError::from_internal)
    }

    /// Every item, in order.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get), for the first item that fails.
    pub fn to_vec(&self) -> Result<Vec<ShareableItem>, ShareableListError> {
        self.to_vec_any().map_err(ShareableListError::from_internal)
    }

    /// How many items equal `value` (Python's `count`).
    ///
    /// # Errors
    ///
    /// As for [`to_vec`](Self::to_vec).
    pub fn count(&self, value: &ShareableItem) -> Result<usize, ShareableListError> {
        Ok(self.to_vec()?.iter().filter(|v| *v == value).count())
    }

    /// The index of the first item equal to `value` (Python's `index`;
    /// `None` where Python raises `ValueError`).
    ///
    /// # Errors
    ///
    /// As for [`to_vec`](Self::to_vec).
    pub fn index(&self, value: &ShareableItem) -> Result<Option<usize>, ShareableListError> {
        Ok(self.to_vec()?.iter().position(|v| v == value))
    }
}

/// Why a [`ShareableList`] call failed. Converts into [`Error`] variant for
/// variant, so `?` works in a function returning [`crate::Result`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareableListError {
    /// The block could not be made or opened (`create`, `open`).
    #[error(transparent)]
    SharedMemory(#[from] SharedMemoryError),
    /// An index past the end of the list.
    #[error("index {index} out of bounds for length {len}")]
    IndexOutOfBounds {
        /// The index asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// A string or byte string longer than its item's slot, or a list too
    /// large to lay out.
    #[error("invalid size {size}: {reason}")]
    InvalidSize {
        /// The size asked for.
        size: usize,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Another process wrote into the block what no list holds; nothing
    /// was read or written out of bounds.
    #[error("corrupt shared memory: {0}")]
    Corrupt(&'static str),
}

impl ShareableListError {
    /// The list error for what the block and layout code (which speak
    /// [`Error`]) reported: the block's own errors become
    /// [`SharedMemory`](Self::SharedMemory) again. Nothing else reaches a
    /// list call; were it to, it reads as a corrupt block rather than a
    /// panic.
    fn from_internal(e: Error) -> ShareableListError {
        use ShareableListError as L;
        use SharedMemoryError as S;
        match e {
            Error::IndexOutOfBounds { index, len } => L::IndexOutOfBounds { index, len },
            Error::InvalidSize { size, reason } => L::InvalidSize { size, reason },
            Error::Corrupt(m) => L::Corrupt(m),
            Error::AlreadyExists { name } => L::SharedMemory(S::AlreadyExists { name }),
            Error::NotFound { name } => L::SharedMemory(S::NotFound { name }),
            Error::InvalidName { name, reason } => L::SharedMemory(S::InvalidName { name, reason }),
            Error::InvalidArgument(m) => L::SharedMemory(S::InvalidArgument(m)),
            Error::Os { call, source } => L::SharedMemory(S::Os { call, source }),
            _ => L::Corrupt("an unexpected error in a shareable list's block"),
        }
    }
}

impl From<ShareableListError> for Error {
    fn from(e: ShareableListError) -> Error {
        match e {
            ShareableListError::SharedMemory(e) => e.into(),
            ShareableListError::IndexOutOfBounds { index, len } => {
                Error::IndexOutOfBounds { index, len }
            }
            ShareableListError::InvalidSize { size, reason } => Error::InvalidSize { size, reason },
            ShareableListError::Corrupt(m) => Error::Corrupt(m),
        }
    }
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.name())
            .field("len", &self.len)
            .finish()
    }
}

/// Where the parts of a list of `n` items with `data` bytes of slots lie.
struct Layout {
    data: usize,
    formats: usize,
    codes: usize,
    total: usize,
}

fn layout(n: usize, data: usize) -> Option<Layout> {
    let start = n.checked_add(2)?.checked_mul(8)?;
    let formats = start.checked_add(data)?;
    let codes = formats.checked_add(n.checked_mul(8)?)?;
    let total = codes.checked_add(n)?;
    Some(Layout {
        data: start,
        formats,
        codes,
        total,
    })
}

fn read_i64(shm: &SharedMemory, at: usize) -> Result<i64> {
    let mut b = [0u8; 8];
    shm.read_at(at, &mut b)?;
    Ok(i64::from_ne_bytes(b))
}
