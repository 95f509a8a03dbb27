//! `SharedMemoryManager`: named shared memory blocks whose names a manager
//! server keeps, unlinked when the manager shuts down or the processes that
//! use it are gone (Python's `multiprocessing.managers.SharedMemoryManager`).

use serde::{Deserialize, Serialize};

use super::{ConnectError, Manager, ManagerBuilder, ProxyError};
use crate::shared_memory::SharedMemoryError;
use crate::{ShareableItem, ShareableList, ShareableListError, SharedMemory};

/// Why [`SharedMemoryManager::shared_memory`] or
/// [`shareable_list`](SharedMemoryManager::shareable_list) gave no block:
/// it could not be made, or the manager could not record it (then it was
/// unlinked again, so nothing is left behind). Converts into
/// [`crate::Error`] with the inner error's kind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The block could not be made (`shared_memory`).
    #[error(transparent)]
    SharedMemory(#[from] SharedMemoryError),
    /// The list could not be made (`shareable_list`).
    #[error(transparent)]
    ShareableList(#[from] ShareableListError),
    /// The block was made but the manager did not record it (its server
    /// is gone, say); the block was unlinked.
    #[error("the manager did not record the block: {0}")]
    Manager(#[source] ProxyError),
}

impl From<SegmentError> for crate::Error {
    fn from(e: SegmentError) -> crate::Error {
        match e {
            SegmentError::SharedMemory(e) => e.into(),
            SegmentError::ShareableList(e) => e.into(),
            SegmentError::Manager(e) => e.into(),
        }
    }
}

/// The connect error for the first call to a server just started (making
/// the list of blocks): the server gone, or a refusal of the protocol.
fn first_call_failed(e: ProxyError) -> ConnectError {
    match e {
        ProxyError::ServerGone(m) => ConnectError::ServerGone(m),
        ProxyError::AuthenticationFailed(m) => ConnectError::AuthenticationFailed(m),
        ProxyError::Os { call, source } => ConnectError::Os { call, source },
        other => ConnectError::Protocol(other.to_string()),
    }
}

/// The block names a [`SharedMemoryManager`]'s server keeps; dropping it
/// (in the server) unlinks them.
#[derive(Serialize, Deserialize, Default)]
pub struct Segments {
    names: Vec<String>,
}

impl Segments {
    fn add(&mut self, name: String) {
        self.names.push(name);
    }

    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Unlinks every block; how many were still there.
    fn unlink_all(&mut self) -> u64 {
        let mut n = 0;
        for name in self.names.drain(..) {
            if SharedMemory::unlink_name(&name).is_ok() {
                n += 1;
            }
        }
        n
    }
}

impl Drop for Segments {
    fn drop(&mut self) {
        self.unlink_all();
    }
}

crate::manager_type! {
    /// The proxy of a [`SharedMemoryManager`]'s list of blocks.
    pub proxy SegmentsProxy for Segments as "multiproc.SharedMemorySegments" {
        fn add(&mut self, name: String);
        fn names(&self) -> Vec<String>;
        fn unlink_all(&mut self) -> u64;
    }
}

/// Shared memory blocks that are unlinked together (Python's
/// `SharedMemoryManager`): [`shared_memory`](Self::shared_memory) and
/// [`shareable_list`](Self::shareable_list) make blocks whose names a
/// manager server records, from this process or any child; they are
/// unlinked at [`shutdown`](Self::shutdown) or when the manager is dropped
/// in the process that started it, and, if that process is killed, when
/// its server notices and stops.
///
/// ```
/// use multiproc::manager::SharedMemoryManager;
///
/// let smm = SharedMemoryManager::start()?;
/// let block = smm.shared_memory(128)?;
/// let list = smm.shareable_list(&[1i64.into(), "a".into()])?;
/// let names = [block.name().to_owned(), list.name().to_owned()];
/// smm.shutdown()?;
/// for n in names {
///     assert!(multiproc::SharedMemory::open(&n).is_err());
/// }
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SharedMemoryManager {
    segments: Option<SegmentsProxy>,
    manager: Option<Manager>,
    owner: i32,
}

impl SharedMemoryManager {
    /// Starts its server ([`Manager::start`]'s defaults).
    pub fn start() -> Result<SharedMemoryManager, ConnectError> {
        SharedMemoryManager::start_with(Manager::builder())
    }

    /// Starts its server from `builder` (an address, a key, a start
    /// method...).
    pub fn start_with(builder: ManagerBuilder) -> Result<SharedMemoryManager, ConnectError> {
        let manager = builder.register::<Segments>().start()?;
        let segments = manager
            .create(&Segments::default())
            .map_err(first_call_failed)?;
        Ok(SharedMemoryManager {
            segments: Some(segments),
            manager: Some(manager),
            owner: crate::sys::thread::pid(),
        })
    }

    fn segments(&self) -> &SegmentsProxy {
        self.segments.as_ref().expect("present until dropped")
    }

    /// A new block of `size` bytes with a generated name, recorded for
    /// unlinking (Python's `smm.SharedMemory(size)`).
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory, SegmentError> {
        let shm = SharedMemory::create(None, size)?;
        if let Err(e) = self.segments().add(shm.name().to_owned()) {
            let _ = shm.unlink();
            return Err(SegmentError::Manager(e));
        }
        Ok(shm)
    }

    /// A new [`ShareableList`] holding `items`, recorded for unlinking
    /// (Python's `smm.ShareableList(items)`).
    pub fn shareable_list(&self, items: &[ShareableItem]) -> Result<ShareableList, SegmentError> {
        let list = ShareableList::create(None, items)?;
        if let Err(e) = self.segments().add(list.name().to_owned()) {
            let _ = list.shm().unlink();
            return Err(SegmentError::Manager(e));
        }
        Ok(list)
    }

    /// The names of the blocks recorded so far.
    pub fn names(&self) -> Result<Vec<String>, ProxyError> {
        self.segments().names()
    }

    /// The manager underneath (its address, to connect other programs).
    pub fn manager(&self) -> &Manager {
        self.manager.as_ref().expect("present until dropped")
    }

    /// Unlinks every recorded block and stops the server.
    pub fn shutdown(mut self) -> Result<(), ProxyError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ProxyError> {
        let unlinked = match self.segments.take() {
            Some(s) => s.unlink_all().map(drop),
            None => Ok(()),
        };
        let stopped = match self.manager.take() {
            Some(m) => m.shutdown(),
            None => Ok(()),
        };
        unlinked.and(stopped)
    }
}

impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        if self.owner == crate::sys::thread::pid() {
            let _ = self.stop();
        }
    }
}

impl std::fmt::Debug for SharedMemoryManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemoryManager")
            .field("manager", &self.manager)
            .finish()
    }
}
