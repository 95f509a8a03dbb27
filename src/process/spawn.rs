//! The spawn start method: the child is a fresh `exec` of this program
//! (`/proc/self/exe`), which calls [`init`] first thing in `main`, finds
//! that it was spawned, runs the requested function with its arguments, and
//! exits. Nothing of the parent's memory is copied, so it is safe from a
//! multithreaded parent (a tokio runtime, a test harness), unlike fork.
//!
//! What crosses over, in a memfd read once by the child: the function (as
//! its offset from [`init`] in the program's code, valid because the child
//! runs the very same executable image), the arguments (serde, postcard),
//! the name, authkey and options, and the descriptors of the shared memory
//! the arguments' shared objects live in, which the child maps again.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{REPORT_ERROR, Report};
use crate::error::{Error, Result};
use crate::shm::heap::Arena;
use crate::shm::transfer;
use crate::sys::mem::SharedMapping;
use crate::sys::process as sys;

/// The environment variable that marks a spawned child; its value is the
/// descriptor of the bootstrap memfd.
const ENV: &str = "MULTIPROC_SPAWN_BOOTSTRAP";

/// Everything a spawned child needs, computed by the parent.
pub(crate) struct Plan {
    trampoline: isize,
    entry: isize,
    args: Vec<u8>,
    arenas: Vec<Arc<Arena>>,
}

#[derive(Serialize, Deserialize)]
struct Bootstrap {
    trampoline: isize,
    entry: isize,
    args: Vec<u8>,
    arena_fds: Vec<RawFd>,
    arena_owners: Vec<i32>,
    /// The heap's generation write ends the child holds (`heap::for_spawn`).
    held_fds: Vec<RawFd>,
    name: String,
    authkey: Vec<u8>,
    parent_pid: i32,
    report_fd: RawFd,
    die_with_parent: bool,
    deadline_ns: Option<u64>,
}

type Trampoline = fn(usize, &[u8], Vec<Arc<Arena>>) -> Report;

/// Where code lies relative to [`init`]: the same in every process running
/// this executable, wherever it was loaded.
pub(crate) fn offset_of(addr: usize) -> isize {
    addr as isize - (init as fn() as usize) as isize
}

pub(crate) fn address_of(offset: isize) -> usize {
    ((init as fn() as usize) as isize + offset) as usize
}

/// The function pointer of type `F` at `offset` from [`init`] (an offset
/// [`offset_of`] gave for a function of this executable).
///
/// # Safety
///
/// `F` must be a function pointer type, and `offset` must come from
/// `offset_of(f as usize)` for an `f: F` of this very executable (in this
/// process, or in the parent that spawned it: the same image).
pub(crate) unsafe fn fn_at<F: Copy>(offset: isize) -> F {
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>()) };
    let addr = address_of(offset);
    // SAFETY: by the caller's promise `addr` is the address of a function
    // of type `F`, and a function pointer has the size and representation
    // of a `usize` address (checked above).
    unsafe { std::mem::transmute_copy::<usize, F>(&addr) }
}

impl Plan {
    pub(crate) fn new<A, R>(entry: fn(A) -> R, args: &A) -> Result<Plan>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let (bytes, arenas) = transfer::collecting(|| postcard::to_stdvec(args));
        let args = bytes.map_err(|e| Error::Codec(format!("the spawn arguments: {e}")))?;
        Ok(Plan {
            trampoline: offset_of(trampoline::<A, R> as Trampoline as usize),
            entry: offset_of(entry as usize),
            args,
            arenas,
        })
    }
}

/// Runs in the child: decodes the arguments (with the shared memory in
/// place), calls the function, encodes its result.
fn trampoline<A: DeserializeOwned, R: Serialize>(
    entry: usize,
    args: &[u8],
    arenas: Vec<Arc<Arena>>,
) -> Report {
    // SAFETY: `entry` is the address of an `fn(A) -> R` of this executable:
    // the parent took it from such a function and sent its offset from
    // `init`, and this process runs the same executable image (an exec of
    // the parent's /proc/self/exe). This trampoline was chosen by the
    // parent for exactly these A and R.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(entry) };
    let a: A = match transfer::receiving(arenas, || postcard::from_bytes(args)) {
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
    let (report_rd, report_wr) = sys::pipe()?;
    let inherit = crate::shm::heap::for_spawn();
    let arena_fds: Vec<RawFd> = plan
        .arenas
        .iter()
        .map(|a| a.mapping().fd().as_raw_fd())
        .collect();
    let boot = Bootstrap {
        trampoline: plan.trampoline,
        entry: plan.entry,
        args: plan.args,
        arena_fds: arena_fds.clone(),
        arena_owners: plan.arenas.iter().map(|a| a.owner()).collect(),
        held_fds: inherit.fds(),
        name: opts.name.to_owned(),
        authkey: opts.authkey,
        parent_pid: crate::sys::thread::pid(),
        report_fd: report_wr.as_raw_fd(),
        die_with_parent: opts.die_with_parent,
        deadline_ns: opts
            .deadline
            .map(|d| d.as_nanos().min(u64::MAX as u128) as u64),
    };
    let bytes = postcard::to_stdvec(&boot).map_err(|e| Error::Codec(e.to_string()))?;
    let memfd =
        nix::sys::memfd::memfd_create(c"multiproc-spawn", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::os("memfd_create", e))?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(&bytes)
        .and_then(|()| file.rewind())
        .map_err(|e| Error::os("write", e))?;
    // Descriptors the child must inherit: made inheritable between fork and
    // exec only, so no other child of this process gets them.
    let mut keep: Vec<RawFd> = arena_fds;
    keep.push(report_wr.as_raw_fd());
    keep.push(file.as_raw_fd());
    keep.extend(inherit.fds());
    let new_group = opts.new_group;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.env(ENV, file.as_raw_fd().to_string())
        .stdin(std::process::Stdio::null());
    // SAFETY: the closure runs between fork and exec in the child and only
    // makes async-signal-safe calls (fcntl, setpgid) on a vector allocated
    // before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if new_group && libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
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
pub fn init() {
    let Some(v) = std::env::var_os(ENV) else {
        return;
    };
    let code = match run_spawned(&v) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("multiproc: the spawned process could not start: {e}");
            1
        }
    };
    sys::exit(code)
}

fn run_spawned(v: &std::ffi::OsStr) -> Result<i32> {
    let fd: RawFd = v
        .to_str()
        .and_then(|s| s.parse().ok())
        .ok_or(Error::InvalidArgument(
            "a malformed spawn bootstrap variable",
        ))?;
    // SAFETY: the parent made `fd` inheritable for this process alone and
    // named it in the variable; nothing else in this fresh process owns it.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::os("read", e))?;
    drop(file);
    let boot: Bootstrap = postcard::from_bytes(&bytes)
        .map_err(|e| Error::Codec(format!("the spawn bootstrap: {e}")))?;
    // SAFETY: the report pipe's write end, inherited for this process alone.
    let report_fd = unsafe { OwnedFd::from_raw_fd(boot.report_fd) };
    if boot.die_with_parent {
        sys::die_with_parent(boot.parent_pid, nix::sys::signal::Signal::SIGKILL);
    }
    if let Some(ns) = boot.deadline_ns {
        sys::kill_after(std::time::Duration::from_nanos(ns))?;
    }
    super::identity::install_spawned(&boot.name, boot.parent_pid, &boot.authkey);
    // SAFETY: inherited for this process alone, named in the bootstrap, and
    // owned by nothing else here.
    unsafe { crate::shm::heap::hold_inherited(&boot.held_fds) };
    let mut arenas = Vec::with_capacity(boot.arena_fds.len());
    for (&fd, &owner) in boot.arena_fds.iter().zip(&boot.arena_owners) {
        // SAFETY: inherited for this process alone, named in the bootstrap.
        let map = SharedMapping::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })?;
        arenas.push(Arc::new(Arena::adopted(map, owner)));
    }
    // SAFETY: the parent sent the offset of `trampoline::<A, R>` for the
    // entry's own A and R; the same executable image runs here (see
    // `trampoline`).
    let t = unsafe { std::mem::transmute::<usize, Trampoline>(address_of(boot.trampoline)) };
    let report = t(address_of(boot.entry), &boot.args, arenas);
    let mut msg = Vec::with_capacity(report.bytes.len() + 1);
    msg.push(report.kind);
    msg.extend_from_slice(&report.bytes);
    sys::write_all(&report_fd, &msg);
    Ok(report.code)
}
