//! Who this process is ([`current_process`]): its name, pid and authkey.
//! Below the process module (which installs a child's identity at a fork
//! or spawn) and the connections (which authenticate with the key by
//! default), so that neither calls up into the other.

use std::sync::{Arc, Mutex, MutexGuard};

/// The name, pid and authkey of the calling process, like Python's
/// `multiprocessing.current_process()`.
#[derive(Clone)]
pub struct CurrentProcess {
    pub(crate) name: Arc<str>,
    /// Python's `_identity`: "" in a main process, "1" in its first child,
    /// "1:2" in that child's second child. Default names are made from it.
    pub(crate) identity: Arc<str>,
    pub(crate) pid: i32,
    pub(crate) parent_pid: i32,
    pub(crate) authkey: Arc<[u8]>,
}

impl CurrentProcess {
    /// `"MainProcess"` in a program's first process, else the name its
    /// parent gave the [`Process`](crate::Process).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pid of the parent this process started under.
    pub fn parent_pid(&self) -> i32 {
        self.parent_pid
    }

    /// The key that authenticates this process's connections by default
    /// (Python's `current_process().authkey`). A program's first process
    /// makes 32 random bytes; a child inherits its parent's, unless the
    /// parent gave it another with [`Process::with_authkey`].
    ///
    /// [`Process::with_authkey`]: crate::Process::with_authkey
    pub fn authkey(&self) -> &[u8] {
        &self.authkey
    }
}

impl std::fmt::Debug for CurrentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The authkey is a secret: not printed.
        f.debug_struct("CurrentProcess")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("parent_pid", &self.parent_pid)
            .finish_non_exhaustive()
    }
}

static IDENTITY: Mutex<Option<CurrentProcess>> = Mutex::new(None);

/// The identity lock: `None` until the first [`current_process`], and
/// after a fork until the child installs its own.
pub(crate) fn identity() -> MutexGuard<'static, Option<CurrentProcess>> {
    IDENTITY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The calling process's name, pid and authkey.
pub fn current_process() -> CurrentProcess {
    let mut g = identity();
    let pid = crate::sys::thread::pid();
    match &*g {
        Some(me) if me.pid == pid => me.clone(),
        _ => {
            // The first call in a program's first process (or in a process
            // forked without `Process`, which then counts as a main process
            // that inherited its parent's key).
            let authkey = match &*g {
                Some(parent) => parent.authkey.clone(),
                None => new_authkey(),
            };
            let me = CurrentProcess {
                name: Arc::from("MainProcess"),
                identity: Arc::from(""),
                pid,
                parent_pid: crate::sys::process::parent_pid(),
                authkey,
            };
            *g = Some(me.clone());
            me
        }
    }
}

/// A new random authkey: 32 bytes from `getrandom`, or else from
/// `/dev/urandom`. Never from anything guessable (a time, a pid): a key an
/// attacker can guess opens every listener and manager that trusts it. If
/// the kernel gives no randomness at all, the process is aborted with a
/// message saying so (`current_process` has no error to return, and going
/// on with a weak key would be worse).
fn new_authkey() -> Arc<[u8]> {
    let mut key = [0u8; 32];
    let got = crate::sys::random::fill(&mut key).or_else(|e| {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(|u| format!("{e}; reading /dev/urandom failed: {u}"))
    });
    if let Err(why) = got {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "multiproc: no randomness for this process's authkey ({why}); aborting rather \
             than using a guessable key"
        );
        std::process::abort();
    }
    Arc::from(&key[..])
}
