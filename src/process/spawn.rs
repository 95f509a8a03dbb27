//! The spawn start method: the child is a fresh `exec` of this program
//! (`/proc/self/exe`), which calls [`init`] first thing in `main`, finds
//! that it was spawned, runs the requested function with its arguments, and
//! exits. Nothing of the parent's memory is copied, so it is safe from a
//! multithreaded parent (a tokio runtime, a test harness), unlike fork.
//!
//! What crosses over, in a memfd read once by the child: the function (as
//! a [`CodePtr`](super::code::CodePtr) offset: only functions of the main
//! executable can be spawned, since the child runs the same executable
//! image loaded elsewhere), the arguments (serde, postcard), the name,
//! authkey and options, and the descriptors of the shared memory the
//! arguments' shared objects live in, which the child maps again.
//!
//! The child learns the memfd's number from an environment variable, which
//! [`init`] removes before anything else can read it (a program the child
//! starts in turn must not inherit it), and adopts the descriptor only
//! after checking that it is a memfd named as the parent names it and that
//! the parent recorded in it is this process's parent.

use std::io::{Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::code::{Code, CodeFn, CodePtr};
use super::{REPORT_ERROR, Report};
use crate::error::{Error, Result};
use crate::shm::heap::Arena;
use crate::shm::transfer::{self, Carried};
use crate::sys::fd as sysfd;
use crate::sys::mem::SharedMapping;
use crate::sys::process as sys;

/// The environment variable that marks a spawned child; its value is the
/// descriptor of the bootstrap memfd and, after a colon, the random value
/// recorded in it (hexadecimal).
const ENV: &str = "MULTIPROC_SPAWN_BOOTSTRAP";

/// The bootstrap memfd's name (`/proc/self/fd/N` reads
/// `/memfd:multiproc-spawn (deleted)`).
const MEMFD_NAME: &std::ffi::CStr = c"multiproc-spawn";

/// Everything a spawned child needs, computed by the parent.
pub(crate) struct Plan {
    trampoline: CodePtr<Trampoline>,
    entry: Code,
    args: Vec<u8>,
    carried: Carried,
}

/// What the child reads from the bootstrap memfd, which only the parent
/// and this child hold.
#[derive(Serialize, Deserialize)]
struct Bootstrap {
    /// `CodePtr` offsets: the trampoline for the entry's types, the entry.
    trampoline: u64,
    entry: u64,
    args: Vec<u8>,
    arena_fds: Vec<RawFd>,
    arena_owners: Vec<i32>,
    /// The shared object handles this crate wrote into `args`
    /// (`transfer::Sent`): the only ones the child adopts.
    sent: std::collections::HashSet<transfer::Sent>,
    /// Objects adopted only together (`transfer::note_bundle`).
    bundles: std::collections::HashSet<Vec<(u32, u64)>>,
    /// Other inherited descriptors (`transfer::Descriptor`).
    fds: Vec<RawFd>,
    /// The heap's generation write ends the child holds (`heap::for_spawn`).
    held_fds: Vec<RawFd>,
    /// The child's identity ("2", "1:2"): its own children are numbered under it.
    ident: String,
    name: String,
    authkey: Vec<u8>,
    parent_pid: i32,
    /// A random value also written into the variable that names this
    /// memfd: the child adopts the descriptor only if the two match, so a
    /// descriptor that merely happens to be a bootstrap memfd (of another
    /// spawn) is never taken for this process's.
    nonce: [u8; 16],
    report_fd: RawFd,
    die_with_parent: bool,
    deadline_ns: Option<u64>,
}

type Trampoline = fn(Code, &[u8], Carried) -> Report;

// SAFETY: a function pointer type.
unsafe impl CodeFn for Trampoline {}

impl Plan {
    /// Errors: [`Error::ForeignCode`] if `entry` is not a function of the
    /// main executable; the arguments' serialization error.
    pub(crate) fn new<A, R>(entry: fn(A) -> R, args: &A) -> Result<Plan>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let entry = CodePtr::new(entry)?.erase();
        let trampoline = CodePtr::new(trampoline::<A, R> as Trampoline)?;
        let (bytes, carried) = transfer::collecting(|| postcard::to_stdvec(args));
        let args = bytes.map_err(|e| Error::Codec(format!("the spawn arguments: {e}")))?;
        Ok(Plan {
            trampoline,
            entry,
            args,
            carried,
        })
    }
}

/// Runs in the child: decodes the arguments (with the shared memory in
/// place), calls the function, encodes its result.
fn trampoline<A: DeserializeOwned, R: Serialize>(
    entry: Code,
    args: &[u8],
    carried: Carried,
) -> Report {
    // SAFETY: `entry` came from a `CodePtr<fn(A) -> R>` in `Plan::new`,
    // which chose this trampoline for the same A and R; both crossed in the
    // bootstrap memfd, which only the parent and this child hold, and this
    // process runs the parent's executable image (/proc/self/exe).
    let f = unsafe { entry.assume::<fn(A) -> R>() }.get();
    let a: A = match transfer::receiving(carried, || postcard::from_bytes(args)) {
        Ok(a) => a,
        Err(e) => {
            return Report {
                code: 1,
                kind: REPORT_ERROR,
                bytes: format!("the spawn arguments could not be decoded: {e}").into_bytes(),
            };
        }
    };
    match catch_unwind(AssertUnwindSafe(|| f(a))) {
        Ok(r) => Report::value(&r),
        Err(p) => Report::panic(&*p),
    }
}

/// The options of the `Process` that matter to a spawned child.
pub(crate) struct Options<'p> {
    pub(crate) name: &'p str,
    /// Python's `_identity` for the child ("2", "1:2").
    pub(crate) ident: &'p str,
    pub(crate) authkey: Vec<u8>,
    pub(crate) die_with_parent: bool,
    pub(crate) new_group: bool,
    pub(crate) deadline: Option<std::time::Duration>,
}

/// Starts the child; returns its pid and the read end of its report pipe.
pub(crate) fn start(plan: Plan, opts: Options<'_>) -> Result<(nix::unistd::Pid, OwnedFd)> {
    if std::env::var_os(ENV).is_some() {
        return Err(Error::InvalidArgument(
            "this process was spawned but never called multiproc::init(): call it first in main",
        ));
    }
    let (report_rd, report_wr) = sysfd::pipe()?;
    let inherit = crate::shm::heap::for_spawn();
    let arena_fds: Vec<RawFd> = plan
        .carried
        .arenas
        .iter()
        .map(|a| a.mapping().fd().as_raw_fd())
        .collect();
    let fds: Vec<RawFd> = plan.carried.fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut nonce = [0u8; 16];
    crate::sys::random::fill(&mut nonce)?;
    let boot = Bootstrap {
        nonce,
        trampoline: plan.trampoline.offset(),
        entry: plan.entry.offset(),
        args: plan.args,
        arena_fds: arena_fds.clone(),
        arena_owners: plan.carried.arenas.iter().map(|a| a.owner()).collect(),
        sent: plan.carried.sent.clone(),
        bundles: plan.carried.bundles.clone(),
        fds: fds.clone(),
        held_fds: inherit.fds(),
        name: opts.name.to_owned(),
        ident: opts.ident.to_owned(),
        authkey: opts.authkey,
        parent_pid: crate::sys::thread::pid(),
        report_fd: report_wr.as_raw_fd(),
        die_with_parent: opts.die_with_parent,
        deadline_ns: opts
            .deadline
            .map(|d| d.as_nanos().min(u64::MAX as u128) as u64),
    };
    let bytes = postcard::to_stdvec(&boot).map_err(|e| Error::Codec(e.to_string()))?;
    let memfd = crate::sys::mem::memfd(MEMFD_NAME)?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(&bytes)
        .and_then(|()| file.rewind())
        .map_err(|e| Error::os("write", e))?;
    // Descriptors the child must inherit: made inheritable between fork and
    // exec only, so no other child of this process gets them.
    let mut keep: Vec<RawFd> = arena_fds;
    keep.extend_from_slice(&fds);
    keep.push(report_wr.as_raw_fd());
    keep.push(file.as_raw_fd());
    keep.extend(inherit.fds());
    let new_group = opts.new_group;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.env(ENV, format!("{}:{}", file.as_raw_fd(), hex(&nonce)))
        .stdin(std::process::Stdio::null());
    let hook = move || {
        for &fd in &keep {
            sysfd::clear_cloexec_raw(fd)?;
        }
        if new_group {
            sys::new_group_raw()?;
        }
        Ok(())
    };
    // SAFETY: the hook runs between fork and exec in the child and only
    // makes async-signal-safe calls (fcntl, setpgid) on a vector allocated
    // before the fork; it allocates nothing.
    unsafe { cmd.pre_exec(hook) };
    let child = cmd.spawn().map_err(|e| Error::os("spawn", e))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // The std handle would neither wait nor kill on drop; the Process owns
    // the child from here (pidfd, waitpid).
    drop(child);
    drop(inherit);
    drop(report_wr);
    drop(file);
    Ok((pid, report_rd))
}

/// Call this first thing in `main` of any program that uses the spawn
/// start method: in a spawned child it runs the requested function and
/// exits (never returning); anywhere else it returns at once.
///
/// A program that forgets it makes every spawn fail with a clear error in
/// the child (the child's own spawns refuse to run), rather than running
/// `main` over again forever.
///
/// It removes the variable that marks a spawned child from the environment
/// (when this process has a single thread, as it does first thing in
/// `main`), so that programs the child starts do not take it for theirs,
/// and adopts the descriptor it names only if that is the bootstrap memfd
/// of this process's parent; a variable naming anything else is ignored.
pub fn init() {
    let Some(v) = std::env::var_os(ENV) else {
        return;
    };
    if crate::sys::thread::thread_count() == Some(1) {
        // SAFETY: this process has one thread, this one: nothing reads or
        // writes the environment concurrently.
        unsafe { std::env::remove_var(ENV) };
    }
    let Some((fd, nonce)) = v.to_str().and_then(|s| {
        let (fd, nonce) = s.split_once(':')?;
        Some((fd.parse::<RawFd>().ok()?, nonce.to_owned()))
    }) else {
        return;
    };
    // Not a bootstrap memfd: a variable inherited from an ancestor that
    // started this program some other way. Not ours to adopt.
    let Some(bytes) = sysfd::inherited_memfd(fd, MEMFD_NAME) else {
        return;
    };
    let code = match run_spawned(fd, &bytes, &nonce) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("multiproc: the spawned process could not start: {e}");
            1
        }
    };
    sys::exit(code)
}

/// Lower-case hexadecimal digits of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the spawned child whose bootstrap memfd `fd` holds `bytes`.
fn run_spawned(fd: RawFd, bytes: &[u8], nonce: &str) -> Result<i32> {
    let mut boot: Bootstrap = postcard::from_bytes(bytes)
        .map_err(|e| Error::Codec(format!("the spawn bootstrap: {e}")))?;
    if hex(&boot.nonce) != nonce {
        return Err(Error::InvalidArgument(
            "the spawn bootstrap does not match the variable that names it: not adopted",
        ));
    }
    // SAFETY: `fd` is a memfd named as the parent names the bootstrap, and
    // it carries the random value of the variable that named it: the
    // parent that set the variable made this memfd inheritable for this
    // process alone (the variable is now removed); nothing else in this
    // fresh process owns it. (The parent itself may have ended since: its
    // spawned child still runs, as with Python's spawn.)
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: the report pipe's write end, inherited for this process alone.
    let report_fd = unsafe { OwnedFd::from_raw_fd(boot.report_fd) };
    if boot.die_with_parent {
        sys::die_with_parent(boot.parent_pid, libc::SIGKILL);
    }
    if let Some(ns) = boot.deadline_ns {
        sys::kill_after(std::time::Duration::from_nanos(ns))?;
    }
    super::identity::install_spawned(&boot.name, &boot.ident, boot.parent_pid, &boot.authkey);
    // SAFETY: inherited for this process alone, named in the bootstrap, and
    // owned by nothing else here.
    unsafe { crate::shm::heap::hold_inherited(&boot.held_fds) };
    let mut carried = Carried {
        sent: std::mem::take(&mut boot.sent),
        bundles: std::mem::take(&mut boot.bundles),
        ..Carried::default()
    };
    for (&fd, &owner) in boot.arena_fds.iter().zip(&boot.arena_owners) {
        // SAFETY: inherited for this process alone, named in the bootstrap.
        let map = SharedMapping::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })?;
        carried.arenas.push(Arc::new(Arena::adopted(map, owner)));
    }
    for &fd in &boot.fds {
        // SAFETY: inherited for this process alone, named in the bootstrap.
        carried
            .fds
            .push(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    // SAFETY: the parent sent the offset of a `CodePtr<Trampoline>`, in the
    // bootstrap only it and this process hold; this process runs the same
    // executable image.
    let t = unsafe { Code::from_offset(boot.trampoline)?.assume::<Trampoline>() }.get();
    let report = t(Code::from_offset(boot.entry)?, &boot.args, carried);
    let mut msg = Vec::with_capacity(report.bytes.len() + 1);
    msg.push(report.kind);
    msg.extend_from_slice(&report.bytes);
    sysfd::write_all(&report_fd, &msg);
    Ok(report.code)
}
