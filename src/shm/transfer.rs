//! Handing shared objects to a process started by the spawn start method.
//!
//! A forked child finds the parent's shared objects at the same addresses.
//! A spawned one (a fresh `exec` of the program) does not: it gets the
//! arenas' memfds as inherited descriptors and maps them again, wherever
//! the kernel puts them. So while the spawn arguments are serialized, each
//! shared object writes where it lies (arena number, offset) and its arena
//! is collected for handing over; in the child the arguments are read back
//! with the re-mapped arenas in place. Outside these two moments a shared
//! object refuses to be serialized: its bytes alone would mean nothing.
//!
//! The argument bytes are not trusted to name shared objects: a value of
//! the caller's own type can serialize any bytes it likes, including ones
//! that read as a handle to some slot as some type. So each handle our own
//! `Serialize` writes is also recorded ([`Sent`]: where, as which type, how
//! long) in a list that goes to the child beside the bytes, in the spawn
//! bootstrap that only the parent writes; the child adopts a handle only if
//! it matches such a record. A forged handle is refused; at most a real one
//! is adopted twice, which is what a clone would give.

use std::cell::RefCell;
use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::heap::{Allocation, Arena};

/// What a spawned child inherits besides its arguments' bytes: the arenas
/// shared objects live in, and other descriptors ([`Descriptor`]), each in
/// the order the parent met them while serializing.
#[derive(Default, Clone)]
pub(crate) struct Carried {
    pub(crate) arenas: Vec<Arc<Arena>>,
    pub(crate) fds: Vec<Arc<OwnedFd>>,
    /// Every shared object handle this program's own `Serialize` wrote.
    /// A set: a spawn may carry many objects, each looked up once.
    pub(crate) sent: HashSet<Sent>,
    /// Objects that travel together (a value or an array and the lock it is
    /// under, or an array alone): the places of their parts, as written.
    pub(crate) bundles: HashSet<Vec<(u32, u64)>>,
}

/// A shared object handle written by this crate's own `Serialize` (not by
/// whatever bytes a caller's type produced): its arena (index in
/// [`Carried::arenas`]), offset, type and length (1 for a single value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Sent {
    arena: u32,
    offset: u64,
    ty: TypeTag,
    len: u64,
}

/// Records that this crate's `Serialize` is writing a handle to `alloc` as
/// `ty`, `len` elements long (while spawn arguments are serialized).
pub(crate) fn note_sent(alloc: &Allocation, ty: TypeTag, len: u64) {
    let (arena, offset, _) = alloc.location();
    OUTGOING.with(|o| {
        let mut o = o.borrow_mut();
        let Some(c) = o.as_mut() else { return };
        // `Allocation`'s own `Serialize` has put its arena in the list (or
        // is about to: then it is added here, at the index it will find).
        let i = match c.arenas.iter().position(|a| Arc::ptr_eq(a, arena)) {
            Some(i) => i,
            None => {
                c.arenas.push(arena.clone());
                c.arenas.len() - 1
            }
        };
        let s = Sent {
            arena: i as u32,
            offset: offset as u64,
            ty,
            len,
        };
        c.sent.insert(s);
    });
}

/// The places (arena index, offset) of `parts` among the arenas of `list`,
/// or `None` if one of them is not there.
fn places(arenas: &[Arc<Arena>], parts: &[&Allocation]) -> Option<Vec<(u32, u64)>> {
    parts
        .iter()
        .map(|p| {
            let (arena, offset, _) = p.location();
            let i = arenas.iter().position(|a| Arc::ptr_eq(a, arena))?;
            Some((i as u32, offset as u64))
        })
        .collect()
}

/// Records that this crate's `Serialize` wrote `parts` as one object (a
/// value and its lock; an array alone): the child adopts them together
/// only, so bytes cannot pair one object's data with another's lock.
/// Called after the parts themselves were serialized.
pub(crate) fn note_bundle(parts: &[&Allocation]) {
    OUTGOING.with(|o| {
        let mut o = o.borrow_mut();
        let Some(c) = o.as_mut() else { return };
        if let Some(b) = places(&c.arenas, parts) {
            c.bundles.insert(b);
        }
    });
}

/// Checks that `parts`, read from spawn arguments, were written together by
/// this crate's `Serialize` ([`note_bundle`]).
pub(crate) fn check_bundle(parts: &[&Allocation]) -> crate::Result<()> {
    let known = INCOMING.with(|i| {
        let i = i.borrow();
        let Some(c) = i.as_ref() else { return false };
        places(&c.arenas, parts).is_some_and(|b| c.bundles.contains(&b))
    });
    if known {
        Ok(())
    } else {
        Err(crate::Error::InvalidArgument(
            "a shared object arrived with another lock than it was sent with (forged bytes)",
        ))
    }
}

/// Checks that a handle read from spawn arguments, to `alloc` as `ty` and
/// `len` elements long, is one this crate's `Serialize` wrote in the parent.
pub(crate) fn check_received(alloc: &Allocation, ty: TypeTag, len: u64) -> crate::Result<()> {
    let (arena, offset, _) = alloc.location();
    let known = INCOMING.with(|i| {
        let i = i.borrow();
        let Some(c) = i.as_ref() else { return false };
        let Some(idx) = c.arenas.iter().position(|a| Arc::ptr_eq(a, arena)) else {
            return false;
        };
        c.sent.contains(&Sent {
            arena: idx as u32,
            offset: offset as u64,
            ty,
            len,
        })
    });
    if known {
        Ok(())
    } else {
        Err(crate::Error::InvalidArgument(
            "a shared object handle arrived that the parent did not send as such (forged bytes)",
        ))
    }
}

thread_local! {
    static OUTGOING: RefCell<Option<Carried>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Carried>> = const { RefCell::new(None) };
}

/// Runs `f` (which serializes spawn arguments) and returns the arenas and
/// descriptors met on the way.
pub(crate) fn collecting<R>(f: impl FnOnce() -> R) -> (R, Carried) {
    OUTGOING.with(|o| *o.borrow_mut() = Some(Carried::default()));
    let r = f();
    let carried = OUTGOING.with(|o| o.borrow_mut().take()).unwrap_or_default();
    (r, carried)
}

/// Runs `f` (which deserializes spawn arguments) with what the parent
/// collected, in its order.
pub(crate) fn receiving<R>(carried: Carried, f: impl FnOnce() -> R) -> R {
    INCOMING.with(|i| *i.borrow_mut() = Some(carried));
    let r = f();
    INCOMING.with(|i| *i.borrow_mut() = None);
    r
}

/// A descriptor that a spawned child inherits when this is among its
/// arguments (a forked child has it anyway): serialized as its place in
/// the list handed over, and only while spawn arguments are serialized.
#[cfg(feature = "pool")]
#[derive(Clone, Debug)]
pub(crate) struct Descriptor(pub(crate) Arc<OwnedFd>);

#[cfg(feature = "pool")]
impl Serialize for Descriptor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = OUTGOING.with(|o| {
            let mut o = o.borrow_mut();
            let list = &mut o.as_mut()?.fds;
            let i = match list.iter().position(|f| Arc::ptr_eq(f, &self.0)) {
                Some(i) => i,
                None => {
                    list.push(self.0.clone());
                    list.len() - 1
                }
            };
            Some(i as u32)
        });
        match index {
            Some(i) => i.serialize(s),
            None => Err(S::Error::custom(
                "a descriptor can be serialized only as an argument of a spawned process",
            )),
        }
    }
}

/// What a shared object's handle says about the type it holds: its size,
/// alignment and identity (a hash of its `TypeId`, the same in every
/// process running one binary, as spawned children do). A handle is
/// adopted only as the type it was sent as, so a forged or mistyped handle
/// (an `Array<u8>` read back as an `Array<u64>`, a `Value<u8>` as a
/// `Value<i8>`) is refused instead of reaching bytes it does not own or
/// making invalid values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct TypeTag {
    size: u64,
    align: u64,
    id: u64,
}

impl TypeTag {
    /// The tag of a handle to one `T`.
    pub(crate) fn of<T: 'static>() -> TypeTag {
        TypeTag::of_elements::<T, T>()
    }

    /// The tag of a handle of type `H` to elements of type `T` (an array:
    /// `Array<T>` and `RawArray<T>` lay their elements out differently).
    pub(crate) fn of_elements<T: 'static, H: 'static>() -> TypeTag {
        use std::hash::{Hash, Hasher};
        // `DefaultHasher::new()` hashes with fixed keys: the same value in
        // every run of one binary.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::any::TypeId::of::<H>().hash(&mut h);
        TypeTag {
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
            id: h.finish(),
        }
    }

    /// Checks that this tag is that of a handle of type `H` to `T`s.
    pub(crate) fn check<T: 'static, H: 'static>(self) -> crate::Result<()> {
        let want = TypeTag::of_elements::<T, H>();
        if self.size != want.size || self.align != want.align {
            Err(crate::Error::InvalidArgument(
                "a shared object arrived with another element size or alignment than its type's",
            ))
        } else if self.id != want.id {
            Err(crate::Error::InvalidArgument(
                "a shared object arrived as another type than it was sent as",
            ))
        } else {
            Ok(())
        }
    }
}

#[cfg(feature = "pool")]
impl<'de> Deserialize<'de> for Descriptor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let i = u32::deserialize(d)?;
        INCOMING
            .with(|c| {
                c.borrow()
                    .as_ref()
                    .and_then(|c| c.fds.get(i as usize).cloned())
            })
            .map(Descriptor)
            .ok_or_else(|| D::Error::custom("a descriptor arrived without being inherited"))
    }
}

#[derive(Serialize, Deserialize)]
struct Handle {
    arena: u32,
    offset: u64,
    size: u64,
}

impl Serialize for Allocation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (arena, offset, size) = self.location();
        let index = OUTGOING.with(|o| {
            let mut o = o.borrow_mut();
            let list = &mut o.as_mut()?.arenas;
            let i = match list.iter().position(|a| Arc::ptr_eq(a, arena)) {
                Some(i) => i,
                None => {
                    list.push(arena.clone());
                    list.len() - 1
                }
            };
            Some(i as u32)
        });
        match index {
            Some(arena) => Handle {
                arena,
                offset: offset as u64,
                size: size as u64,
            }
            .serialize(s),
            None => Err(S::Error::custom(
                "a shared object can be serialized only as an argument of a spawned process",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Allocation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let h = Handle::deserialize(d)?;
        let arena = INCOMING
            .with(|i| {
                i.borrow()
                    .as_ref()
                    .and_then(|c| c.arenas.get(h.arena as usize).cloned())
            })
            .ok_or_else(|| {
                D::Error::custom("a shared object arrived without the memory it lives in")
            })?;
        Allocation::adopt(arena, h.offset as usize, h.size as usize).map_err(D::Error::custom)
    }
}
