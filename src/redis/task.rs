//! What the distributed pool keeps in Redis: the keys, the task and result
//! formats, the build identity, the signatures, and the server-side
//! scripts.
//!
//! A task entry (one chunk of items) in the tasks stream has two fields:
//! `t`, the task bytes, and `m`, their HMAC-SHA256 under the pool's
//! authkey. The task bytes, integers little-endian:
//!
//! ```text
//! version: u8 | job: u64 | first: u64 | count: u32 | build: [u8; 32]
//!   | runner: u64 | function: u64 | count postcard-encoded arguments
//! ```
//!
//! `build` is the SHA-256 of the executable that made the task, `runner`
//! and `function` are [`CodePtr`] offsets into its code (the runner is
//! instantiated for the task's argument and result types). A worker calls
//! them only if the signature is right (so a holder of the authkey made
//! the entry, through [`TaskCode::new`], which pairs each function with
//! the runner of its own types) and the build is its own (so the offsets
//! mean the same functions). Anyone else who can write to the server can
//! make a worker fail a task, or run a task again, never jump elsewhere.
//!
//! A result (in the results hash, under the task entry's id):
//!
//! ```text
//! kind: u8 | job: u64 | first: u64 | count: u32 | rest
//! ```
//!
//! [`KIND_ITEMS`]: `rest` is `count` items, each a tag byte
//! ([`ITEM_OK`] then the postcard value, or [`ITEM_ERR`] then a postcard
//! string); [`KIND_FAILED`]: `rest` is a UTF-8 message failing the whole
//! chunk; [`KIND_DEAD`]: `rest` is the number of deliveries in ASCII (the
//! entry went to the dead-letter stream). Results are read by the caller
//! as untrusted bytes (decoded by postcard, never trusted otherwise).

use std::sync::OnceLock;

use hmac::Hmac;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::RedisError;
use crate::error::Result;
use crate::process::code::{Code, CodeFn, CodePtr};
use crate::task_items::{ItemTags, run_items};

pub(crate) const VERSION: u8 = 1;
/// Bytes before a task's arguments.
pub(crate) const TASK_HEAD: usize = 1 + 8 + 8 + 4 + 32 + 8 + 8;
/// Bytes before a result's `rest`.
pub(crate) const RESULT_HEAD: usize = 1 + 8 + 8 + 4;

pub(crate) const KIND_ITEMS: u8 = 0;
pub(crate) const KIND_FAILED: u8 = 1;
pub(crate) const KIND_DEAD: u8 = 2;
pub(crate) const ITEM_OK: u8 = 0;
pub(crate) const ITEM_ERR: u8 = 1;

/// The consumer group of the workers.
pub(crate) const GROUP: &str = "workers";

/// The keys of the pool `NAME`, all with the hash tag `{NAME}` (one slot
/// in a cluster).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub(crate) tasks: String,
    pub(crate) results: String,
    pub(crate) done: String,
    pub(crate) dead: String,
    pub(crate) workers: String,
    pub(crate) info: String,
    pub(crate) config: String,
    pub(crate) stop: String,
    pub(crate) jobseq: String,
}

impl Keys {
    pub(crate) fn new(name: &str) -> Result<Keys, RedisError> {
        if name.is_empty() {
            return Err(RedisError::InvalidName {
                name: name.to_owned(),
                reason: "a pool name must not be empty",
            });
        }
        let p = format!("multiproc:pool:{{{name}}}");
        Ok(Keys {
            tasks: format!("{p}:tasks"),
            results: format!("{p}:results"),
            done: format!("{p}:done"),
            dead: format!("{p}:dead"),
            workers: format!("{p}:workers"),
            info: format!("{p}:info"),
            config: format!("{p}:config"),
            stop: format!("{p}:stop"),
            jobseq: format!("{p}:jobseq"),
        })
    }

    /// The key that stops the local workers started with `token`.
    pub(crate) fn stop_token(&self, token: &str) -> String {
        format!("{}:{token}", self.stop)
    }
}

/// The SHA-256 of this process's executable (`/proc/self/exe`), read once.
pub(crate) fn build_id() -> Result<[u8; 32], RedisError> {
    // The failure is kept as its kind and text (an `io::Error` is not
    // `Clone`).
    static ID: OnceLock<std::result::Result<[u8; 32], (std::io::ErrorKind, String)>> =
        OnceLock::new();
    ID.get_or_init(|| {
        use sha2::Digest;
        use std::io::Read;
        let mut f = std::fs::File::open("/proc/self/exe").map_err(|e| {
            (
                e.kind(),
                format!("cannot read /proc/self/exe to identify the build: {e}"),
            )
        })?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err((e.kind(), format!("cannot read /proc/self/exe: {e}"))),
            };
            h.update(&buf[..n]);
        }
        Ok(h.finalize().into())
    })
    .clone()
    .map_err(|(kind, m)| RedisError::Os {
        call: "read",
        source: std::io::Error::new(kind, m),
    })
}

/// A short printable form of a build id.
pub(crate) fn build_hex(id: &[u8]) -> String {
    id.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 of `msg` under `key`.
pub(crate) fn sign(key: &[u8], msg: &[u8]) -> Vec<u8> {
    crate::mac::tag::<Hmac<sha2::Sha256>>(key, msg)
}

/// Whether `tag` is the HMAC-SHA256 of `msg` under `key` (constant time).
pub(crate) fn verify(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
    crate::mac::verify::<Hmac<sha2::Sha256>>(key, msg, tag)
}

/// A chunk runner: decodes `count` arguments from `input`, calls the
/// function `entry` on each, appends tagged results to `out`.
pub(crate) type Runner = fn(Code, &[u8], u32, &mut Vec<u8>);

// SAFETY: a function pointer type.
unsafe impl CodeFn for Runner {}

/// What a task runs: the runner for its types, and its function.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TaskCode {
    runner: CodePtr<Runner>,
    function: Code,
}

impl TaskCode {
    /// The code of `f: fn(A) -> R`; [`crate::Error::ForeignCode`] if it is not in
    /// the main executable.
    pub(crate) fn new<A: DeserializeOwned, R: Serialize>(f: fn(A) -> R) -> Result<TaskCode> {
        Ok(TaskCode {
            runner: CodePtr::new(run1::<A, R> as Runner)?,
            function: CodePtr::new(f)?.erase(),
        })
    }

    /// The code of `f: fn(A, B) -> R` (starmap).
    pub(crate) fn new2<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
        f: fn(A, B) -> R,
    ) -> Result<TaskCode> {
        Ok(TaskCode {
            runner: CodePtr::new(run2::<A, B, R> as Runner)?,
            function: CodePtr::new(f)?.erase(),
        })
    }
}

/// The task bytes of a chunk (without the arguments, appended after).
pub(crate) fn task_head(
    out: &mut Vec<u8>,
    job: u64,
    first: u64,
    count: u32,
    build: &[u8; 32],
    code: TaskCode,
) {
    out.push(VERSION);
    out.extend_from_slice(&job.to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(build);
    out.extend_from_slice(&code.runner.offset().to_le_bytes());
    out.extend_from_slice(&code.function.offset().to_le_bytes());
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

/// A task as a worker sees it once its signature and build were checked.
pub(crate) struct Checked<'a> {
    pub(crate) job: u64,
    pub(crate) first: u64,
    pub(crate) count: u32,
    runner: CodePtr<Runner>,
    function: Code,
    args: &'a [u8],
}

/// Why a worker refuses a task.
pub(crate) enum Refusal {
    /// Not signed with this worker's authkey (or not a task at all).
    Signature,
    /// Another build of the program made it (its id in hex).
    Build(String),
    /// Signed, same build, but its code offsets are not in our code.
    Code(String),
}

/// Checks a task's signature and build, and finds its code.
pub(crate) fn check<'a>(
    key: &[u8],
    build: &[u8; 32],
    t: &'a [u8],
    m: &[u8],
) -> std::result::Result<Checked<'a>, Refusal> {
    if !verify(key, t, m) || t.len() < TASK_HEAD || t[0] != VERSION {
        return Err(Refusal::Signature);
    }
    let their = &t[21..53];
    if their != build {
        return Err(Refusal::Build(build_hex(their)));
    }
    let runner = Code::from_offset(u64_at(t, 53)).map_err(|e| Refusal::Code(e.to_string()))?;
    let function = Code::from_offset(u64_at(t, 61)).map_err(|e| Refusal::Code(e.to_string()))?;
    Ok(Checked {
        job: u64_at(t, 1),
        first: u64_at(t, 9),
        count: u32_at(t, 17),
        // SAFETY: the task is signed with our authkey, so a holder of the
        // key wrote it, and only `task_head` writes tasks, from a
        // `TaskCode` whose runner is a `CodePtr<Runner>`; the build is
        // ours, so the offset means the same function here (and
        // `from_offset` checked it is in our code).
        runner: unsafe { runner.assume::<Runner>() },
        function,
        args: &t[TASK_HEAD..],
    })
}

impl Checked<'_> {
    /// Runs the chunk, appending its tagged items to `out`.
    pub(crate) fn run(&self, out: &mut Vec<u8>) {
        (self.runner.get())(self.function, self.args, self.count, out)
    }
}

/// Appends the head of a result.
pub(crate) fn result_head(out: &mut Vec<u8>, kind: u8, job: u64, first: u64, count: u32) {
    out.push(kind);
    out.extend_from_slice(&job.to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
}

/// The tags of a Redis result's items: every failure is an error item.
const TAGS: ItemTags = ItemTags {
    ok: ITEM_OK,
    panic: ITEM_ERR,
    encode: ITEM_ERR,
    decode: ITEM_ERR,
};

/// The runner for `fn(A) -> R`.
fn run1<A: DeserializeOwned, R: Serialize>(
    entry: Code,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
) {
    // SAFETY: `entry` and this runner come from one signed task of this
    // build (see `check`), which `TaskCode::new` made from a
    // `CodePtr<fn(A) -> R>` and this runner instantiated for the same A
    // and R.
    let f = unsafe { entry.assume::<fn(A) -> R>() }.get();
    run_items(&TAGS, count, input, out, f)
}

/// The runner for `fn(A, B) -> R`.
fn run2<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    entry: Code,
    input: &[u8],
    count: u32,
    out: &mut Vec<u8>,
) {
    // SAFETY: as in `run1`, from `TaskCode::new2`, for an `fn(A, B) -> R`.
    let f = unsafe { entry.assume::<fn(A, B) -> R>() }.get();
    run_items(&TAGS, count, input, out, |(a, b): (A, B)| f(a, b))
}

/// Stores a chunk's result under its entry id, once: nothing if the entry
/// is gone (its result was collected already) or a result is there (it
/// ran twice). Acknowledges the entry. Returns 1 if stored.
/// KEYS: tasks results done; ARGV: group id payload.
pub(crate) const STORE: &str = r"
if #redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2]) == 0 then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 1 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'i', ARGV[2])
  return 1
end
return 0
";

/// The dead-letter step shared by the janitors (Lua): moves entry `id`
/// with fields `f` delivered `n` times to the dead stream and fails it.
const DEAD_FN: &str = r"
local function dead(id, f, n)
  local t = ''
  for i = 1, #f, 2 do if f[i] == 't' then t = f[i + 1] end end
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XADD', KEYS[4], '*', 'id', id, 'attempts', n, 't', t)
  local head = string.char(2) .. string.sub(t, 2, 21)
  if #head == 21 and redis.call('HSETNX', KEYS[2], id, head .. tostring(n)) == 1 then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'i', id)
  end
end
";

/// A worker's janitor: claims entries idle past the deadline; those
/// delivered more than the limit go to the dead-letter stream, the others
/// are returned (now this worker's) to run.
/// KEYS: tasks results done dead; ARGV: group consumer min_idle_ms count max.
pub(crate) fn claim_script() -> String {
    format!(
        "{DEAD_FN}{}",
        r"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
local run = {}
for _, e in ipairs(r[2]) do
  if e and e[1] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    local n = 0
    if p[1] then n = p[1][4] end
    if n > tonumber(ARGV[5]) then dead(e[1], e[2], n - 1) else table.insert(run, e) end
  end
end
return run
"
    )
}

/// The caller's janitor: entries idle past the deadline and delivered the
/// limit already (the next claim would pass it) go to the dead-letter
/// stream. KEYS: tasks results done dead; ARGV: group min_idle_ms max.
pub(crate) fn reap_script() -> String {
    format!(
        "{DEAD_FN}{}",
        r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[2], '-', '+', 100)
local n = 0
for _, x in ipairs(p) do
  if x[4] >= tonumber(ARGV[3]) then
    local e = redis.call('XRANGE', KEYS[1], x[1], x[1])
    if e[1] then dead(x[1], e[1][2], x[4]) else redis.call('XACK', KEYS[1], ARGV[1], x[1]) end
    n = n + 1
  end
end
return n
"
    )
}

/// A heartbeat: the worker's score is the server's time in ms.
/// KEYS: workers info; ARGV: consumer info.
pub(crate) const BEAT: &str = r"
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return ms
";

/// The server's time in ms.
pub(crate) const NOW: &str = r"
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// An entry id and its fields.
pub(crate) type Entry = (String, Vec<(Vec<u8>, Vec<u8>)>);

fn bytes(v: &::redis::Value) -> Vec<u8> {
    use ::redis::Value;
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn list(v: ::redis::Value) -> Vec<::redis::Value> {
    use ::redis::Value;
    match v {
        Value::Array(a) | Value::Set(a) => a,
        Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

fn one(v: ::redis::Value) -> Option<Entry> {
    let mut e = list(v).into_iter();
    let id = String::from_utf8(bytes(&e.next()?)).ok()?;
    let flat = list(e.next()?);
    let fields = flat
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (bytes(&c[0]), bytes(&c[1])))
        .collect();
    Some((id, fields))
}

/// The entries of a list of entries (`XRANGE`, the claim script).
pub(crate) fn entries(v: ::redis::Value) -> Vec<Entry> {
    list(v).into_iter().filter_map(one).collect()
}

/// The entries of an `XREAD`/`XREADGROUP` reply on one stream (none on a
/// timeout).
pub(crate) fn xread_entries(v: ::redis::Value) -> Vec<Entry> {
    list(v)
        .into_iter()
        .flat_map(|s| match s {
            // RESP2: [name, entries]; RESP3 maps flatten to the same.
            ::redis::Value::Array(a) if a.len() == 2 => a.into_iter().nth(1).map(entries),
            other => list(other).into_iter().nth(1).map(entries),
        })
        .flatten()
        .collect()
}

/// The field `name` of an entry.
pub(crate) fn field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &[u8]) -> &'a [u8] {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}
