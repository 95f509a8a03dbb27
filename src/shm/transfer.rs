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

use std::cell::RefCell;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::heap::{Allocation, Arena};

thread_local! {
    static OUTGOING: RefCell<Option<Vec<Arc<Arena>>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Arc<Arena>>>> = const { RefCell::new(None) };
}

/// Runs `f` (which serializes spawn arguments) and returns the arenas the
/// shared objects in them live in.
pub(crate) fn collecting<R>(f: impl FnOnce() -> R) -> (R, Vec<Arc<Arena>>) {
    OUTGOING.with(|o| *o.borrow_mut() = Some(Vec::new()));
    let r = f();
    let arenas = OUTGOING.with(|o| o.borrow_mut().take()).unwrap_or_default();
    (r, arenas)
}

/// Runs `f` (which deserializes spawn arguments) with `arenas`, in the
/// order the parent collected them.
pub(crate) fn receiving<R>(arenas: Vec<Arc<Arena>>, f: impl FnOnce() -> R) -> R {
    INCOMING.with(|i| *i.borrow_mut() = Some(arenas));
    let r = f();
    INCOMING.with(|i| *i.borrow_mut() = None);
    r
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
            let list = o.as_mut()?;
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
                    .and_then(|v| v.get(h.arena as usize).cloned())
            })
            .ok_or_else(|| {
                D::Error::custom("a shared object arrived without the memory it lives in")
            })?;
        Allocation::adopt(arena, h.offset as usize, h.size as usize).map_err(D::Error::custom)
    }
}
