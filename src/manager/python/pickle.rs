//! A pickle codec for the data subset CPython's manager clients send:
//! `None`, `bool`, `int`, `float`, `str`, `bytes`, `bytearray`, `list`,
//! `tuple`, `dict`, `set`, `frozenset` (and `slice`, which indexing sends).
//!
//! **A pickle from a peer is data, never code.** The decoder runs no
//! callable: `GLOBAL`/`STACK_GLOBAL` are accepted only for a fixed list of
//! builtin data types (`slice`, `set`, `frozenset`, `bytearray`, and
//! `_codecs.encode`, which protocols 0-2 use for `bytes`), and `REDUCE`
//! only applies one of those to plain arguments, building the value here.
//! Every other reference to a class or function (`GLOBAL` of anything
//! else, `INST`, `OBJ`, `NEWOBJ`, `BUILD`, persistent ids, extension
//! codes, out-of-band buffers) is refused with an error.
//!
//! Memory is bounded: nothing is allocated from a length field before the
//! bytes it announces are there, integers are limited to
//! [`MAX_INT_BYTES`], and the shared references a memo allows (one list
//! put in another many times) are counted as they are copied out, up to
//! [`MAX_NODES`] values and [`MAX_DEPTH`] levels. A cycle (a list that
//! contains itself) is refused.
//!
//! The encoder writes the *canonical* form of a value: protocol 4 opcodes,
//! no memo, the smallest integer opcode, set elements in the order of their
//! encodings. Two equal values (of the same types) thus encode to the same
//! bytes, which is what the manager's containers compare. A value is kept
//! as a *fragment* (the opcodes that push it, without the protocol header
//! and `STOP`), so a reply is built by concatenating stored fragments.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// The longest integer accepted, in bytes of two's complement (8192 bits).
pub(crate) const MAX_INT_BYTES: usize = 1024;
/// The most values one pickle may produce (shared references counted each
/// time they are copied).
pub(crate) const MAX_NODES: usize = 1 << 20;
/// The deepest nesting of containers accepted.
pub(crate) const MAX_DEPTH: usize = 200;
/// The most work one decode may do: values made plus references copied
/// (so that a short pickle that copies a long list many times, through the
/// memo and `list(...)`, is refused rather than filling the memory).
const MAX_WORK: usize = 2 * MAX_NODES;

/// A Python value of the data subset.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Py {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64`: little-endian two's complement, minimal.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    List(Vec<Py>),
    Tuple(Vec<Py>),
    /// In insertion order.
    Dict(Vec<(Py, Py)>),
    Set(Vec<Py>),
    FrozenSet(Vec<Py>),
    /// `slice(start, stop, step)`.
    Slice(Box<(Py, Py, Py)>),
}

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PickleError(pub String);

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pickle refused: {}", self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, PickleError> {
    Err(PickleError(msg.into()))
}

// ------------------------------------------------------------------ decode

/// A builtin the decoder knows as data.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Builtin {
    Slice,
    Set,
    FrozenSet,
    ByteArray,
    CodecsEncode,
    /// `range(...)`: decoded as the list of its integers (bounded).
    Range,
    /// `list(items)`: how Python's manager sends `dict.keys()` and the
    /// other dict views.
    List,
    /// An exception class of [`EXCEPTIONS`] (replies only): its instance
    /// is decoded as `{'__exception__': 'module.name', 'args': (...)}`.
    Exception(usize),
}

/// The exception classes a reply from a Python server may name.
pub(crate) const EXCEPTIONS: &[(&str, &str)] = &[
    ("builtins", "KeyError"),
    ("builtins", "IndexError"),
    ("builtins", "ValueError"),
    ("builtins", "TypeError"),
    ("builtins", "RuntimeError"),
    ("builtins", "AttributeError"),
    ("builtins", "OverflowError"),
    ("builtins", "NotImplementedError"),
    ("builtins", "TimeoutError"),
    ("builtins", "MemoryError"),
    ("builtins", "AssertionError"),
    ("builtins", "Exception"),
    ("queue", "Empty"),
    ("_queue", "Empty"),
    ("queue", "Full"),
    ("threading", "BrokenBarrierError"),
];

fn builtin(module: &str, name: &str) -> Result<Builtin, PickleError> {
    match (module, name) {
        ("builtins" | "__builtin__", "slice") => Ok(Builtin::Slice),
        ("builtins" | "__builtin__", "set") => Ok(Builtin::Set),
        ("builtins" | "__builtin__", "frozenset") => Ok(Builtin::FrozenSet),
        ("builtins" | "__builtin__", "bytearray") => Ok(Builtin::ByteArray),
        ("_codecs", "encode") => Ok(Builtin::CodecsEncode),
        ("builtins" | "__builtin__", "range" | "xrange") => Ok(Builtin::Range),
        ("builtins" | "__builtin__", "list") => Ok(Builtin::List),
        _ => err(format!(
            "{module}.{name} is not a data type this server accepts (pickles are data, never code)"
        )),
    }
}

/// [`builtin`], or (decoding a reply) one of the [`EXCEPTIONS`].
fn global_of(module: &str, name: &str, exceptions: bool) -> Result<Builtin, PickleError> {
    if exceptions && let Some(i) = EXCEPTIONS.iter().position(|e| *e == (module, name)) {
        return Ok(Builtin::Exception(i));
    }
    builtin(module, name)
}

/// A value under construction: containers live in an arena, so that the
/// memo can share them (a list put in the memo before its items are
/// appended, as CPython's pickler does).
#[derive(Clone, Debug)]
enum Obj {
    Leaf(Py),
    List(Vec<usize>),
    Tuple(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Set(Vec<usize>),
    FrozenSet(Vec<usize>),
    Global(Builtin),
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    Mark,
    Obj(usize),
}

/// The memo: an object (its index in the arena) by key. CPython's picklers
/// number the memo from 0, so small keys live in a vector, others in a map.
#[derive(Default)]
struct Memo {
    /// By key below [`Memo::DENSE`]; `usize::MAX`: not set.
    dense: Vec<usize>,
    sparse: HashMap<u64, usize>,
    /// The number of keys set (`MEMOIZE` uses it as the next key).
    len: usize,
}

impl Memo {
    /// Keys below this go in the vector (at most 32 KiB of it).
    const DENSE: u64 = 4096;

    fn insert(&mut self, key: u64, at: usize) {
        if key < Self::DENSE {
            let k = key as usize;
            if self.dense.len() <= k {
                self.dense.resize(k + 1, usize::MAX);
            }
            if self.dense[k] == usize::MAX {
                self.len += 1;
            }
            self.dense[k] = at;
        } else if self.sparse.insert(key, at).is_none() {
            self.len += 1;
        }
    }

    fn get(&self, key: u64) -> Option<usize> {
        if key < Self::DENSE {
            self.dense
                .get(key as usize)
                .copied()
                .filter(|&at| at != usize::MAX)
        } else {
            self.sparse.get(&key).copied()
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    arena: Vec<Obj>,
    stack: Vec<Slot>,
    memo: Memo,
    /// Whether exception classes are accepted (a reply's `#ERROR`).
    exceptions: bool,
    /// References copied so far (see [`MAX_WORK`]).
    work: usize,
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        if self.input.len() - self.pos < n {
            return err("truncated pickle");
        }
        let s = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    /// A length field, checked against the bytes left before anything is
    /// allocated for it.
    fn len_bytes(&mut self, n: u64) -> Result<&'a [u8], PickleError> {
        if n > (self.input.len() - self.pos) as u64 {
            return err("a length field runs past the end of the pickle");
        }
        self.take(n as usize)
    }

    /// A text line (protocol 0 arguments), without its newline.
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.input[self.pos..];
        let Some(end) = rest.iter().take(4096).position(|&b| b == b'\n') else {
            return err("unterminated or overlong text line");
        };
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| PickleError("text line is not UTF-8".into()))
    }

    /// Counts `n` more units of work; an error past [`MAX_WORK`].
    /// The items of the argument at `at` of `set(x)`, `frozenset(x)` or
    /// `list(x)` (`what`): a list, tuple or set, its length paid for in the
    /// work budget before it is copied.
    fn items_arg(&mut self, at: usize, what: &str) -> Result<Vec<usize>, PickleError> {
        let len = match &self.arena[at] {
            Obj::List(v) | Obj::Tuple(v) | Obj::Set(v) | Obj::FrozenSet(v) => v.len(),
            _ => 0,
        };
        self.spend(len)?;
        match &self.arena[at] {
            Obj::List(v) | Obj::Tuple(v) | Obj::Set(v) | Obj::FrozenSet(v) => Ok(v.clone()),
            _ => err(format!("{what}() of something that is not a list or tuple")),
        }
    }

    fn spend(&mut self, n: usize) -> Result<(), PickleError> {
        self.work = self.work.saturating_add(n);
        if self.work.saturating_add(self.arena.len()) > MAX_WORK {
            return err(format!("a pickle that makes more than {MAX_WORK} values"));
        }
        Ok(())
    }

    fn push(&mut self, o: Obj) {
        self.arena.push(o);
        self.stack.push(Slot::Obj(self.arena.len() - 1));
    }

    fn push_leaf(&mut self, p: Py) {
        self.push(Obj::Leaf(p));
    }

    fn pop(&mut self) -> Result<usize, PickleError> {
        match self.stack.pop() {
            Some(Slot::Obj(i)) => Ok(i),
            Some(Slot::Mark) => err("a mark where a value was expected"),
            None => err("stack underflow"),
        }
    }

    fn top(&self) -> Result<usize, PickleError> {
        match self.stack.last() {
            Some(Slot::Obj(i)) => Ok(*i),
            Some(Slot::Mark) => err("a mark where a value was expected"),
            None => err("stack underflow"),
        }
    }

    /// The values above the topmost mark, and the mark removed.
    fn pop_mark(&mut self) -> Result<Vec<usize>, PickleError> {
        let Some(m) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return err("no mark on the stack");
        };
        let items = self.stack[m + 1..]
            .iter()
            .map(|s| match s {
                Slot::Obj(i) => *i,
                Slot::Mark => unreachable!("topmost mark"),
            })
            .collect();
        self.stack.truncate(m);
        Ok(items)
    }

    /// The memo index after a PUT or GET (`what`) opcode `op`: a decimal
    /// line (`p`, `g`), one byte (`q`, `h`) or a 4-byte count (`r`, `j`).
    fn memo_index(&mut self, op: u8, what: &str) -> Result<u64, PickleError> {
        match op {
            b'p' | b'g' => self
                .line()?
                .parse()
                .map_err(|_| PickleError(format!("malformed {what}"))),
            b'q' | b'h' => Ok(self.byte()?.into()),
            _ => Ok(self.u32()?.into()),
        }
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let Some(i) = self.memo.get(key) else {
            return err(format!("memo key {key} was never set"));
        };
        self.stack.push(Slot::Obj(i));
        Ok(())
    }

    fn int_text(&mut self, s: &str) -> Result<(), PickleError> {
        let s = s.strip_suffix('L').unwrap_or(s);
        match s {
            "00" => self.push_leaf(Py::Bool(false)),
            "01" => self.push_leaf(Py::Bool(true)),
            _ => match s.parse::<i64>() {
                Ok(v) => self.push_leaf(Py::Int(v)),
                Err(_) => return err("a text integer outside 64 bits or malformed"),
            },
        }
        Ok(())
    }

    fn long(&mut self, n: u64) -> Result<(), PickleError> {
        if n as usize > MAX_INT_BYTES || n > MAX_INT_BYTES as u64 {
            return err(format!("an integer over {MAX_INT_BYTES} bytes"));
        }
        let b = self.len_bytes(n)?;
        self.push_leaf(int_from_le(b));
        Ok(())
    }

    fn append_to(&mut self, list: usize, items: Vec<usize>) -> Result<(), PickleError> {
        match &mut self.arena[list] {
            Obj::List(v) | Obj::Set(v) => {
                v.extend(items);
                Ok(())
            }
            _ => err("APPEND/ADDITEMS to something that is not a list or set"),
        }
    }

    fn set_items(&mut self, dict: usize, items: Vec<usize>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return err("SETITEMS with an odd number of values");
        }
        match &mut self.arena[dict] {
            Obj::Dict(d) => {
                d.extend(items.chunks(2).map(|c| (c[0], c[1])));
                Ok(())
            }
            _ => err("SETITEM to something that is not a dict"),
        }
    }

    fn str_of(&self, i: usize) -> Result<&str, PickleError> {
        match &self.arena[i] {
            Obj::Leaf(Py::Str(s)) => Ok(s),
            _ => err("STACK_GLOBAL needs two strings"),
        }
    }

    fn reduce(&mut self) -> Result<(), PickleError> {
        let args_at = self.pop()?;
        let f = self.pop()?;
        let Obj::Global(b) = self.arena[f] else {
            return err("REDUCE of something that is not an accepted data type");
        };
        let n = match &self.arena[args_at] {
            Obj::Tuple(a) => a.len(),
            _ => return err("REDUCE arguments are not a tuple"),
        };
        self.spend(n)?;
        let Obj::Tuple(args) = self.arena[args_at].clone() else {
            unreachable!("a tuple, checked above")
        };
        let leaf = |d: &Self, i: usize| match &d.arena[i] {
            Obj::Leaf(p) => Ok(p.clone()),
            _ => err("a container where a scalar was expected"),
        };
        match (b, args.as_slice()) {
            (Builtin::Exception(i), _) => {
                let (module, name) = EXCEPTIONS[i];
                let tag = self.arena.len();
                self.arena.push(Obj::Leaf(Py::Str("__exception__".into())));
                self.arena
                    .push(Obj::Leaf(Py::Str(format!("{module}.{name}"))));
                self.arena.push(Obj::Leaf(Py::Str("args".into())));
                self.arena.push(Obj::Tuple(args.clone()));
                self.push(Obj::Dict(vec![(tag, tag + 1), (tag + 2, tag + 3)]));
            }
            (Builtin::Slice, [stop]) => {
                let stop = leaf(self, *stop)?;
                self.push_leaf(Py::Slice(Box::new((Py::None, stop, Py::None))));
            }
            (Builtin::Slice, [a, b]) => {
                let v = (leaf(self, *a)?, leaf(self, *b)?, Py::None);
                self.push_leaf(Py::Slice(Box::new(v)));
            }
            (Builtin::Slice, [a, b, c]) => {
                let v = (leaf(self, *a)?, leaf(self, *b)?, leaf(self, *c)?);
                self.push_leaf(Py::Slice(Box::new(v)));
            }
            (Builtin::Set, []) => self.push(Obj::Set(Vec::new())),
            (Builtin::FrozenSet, []) => self.push(Obj::FrozenSet(Vec::new())),
            (Builtin::Set | Builtin::FrozenSet, [items]) => {
                let items = self.items_arg(*items, "set")?;
                self.push(if b == Builtin::Set {
                    Obj::Set(items)
                } else {
                    Obj::FrozenSet(items)
                });
            }
            (Builtin::Range, a) if !a.is_empty() && a.len() <= 3 => {
                let mut n = [0i64, 0, 1];
                let ints: Vec<i64> = a
                    .iter()
                    .map(|&i| match self.arena[i] {
                        Obj::Leaf(Py::Int(v)) => Ok(v),
                        _ => err("range() of something that is not a small integer"),
                    })
                    .collect::<Result<_, _>>()?;
                match ints.as_slice() {
                    [stop] => n[1] = *stop,
                    [a, b] => (n[0], n[1]) = (*a, *b),
                    [a, b, c] => n = [*a, *b, *c],
                    _ => unreachable!("1 to 3"),
                }
                let [start, stop, step] = n.map(i128::from);
                if step == 0 {
                    return err("range() step is zero");
                }
                let len = if step > 0 {
                    (stop - start + step - 1).max(0) / step
                } else {
                    (start - stop - step - 1).max(0) / -step
                };
                if len > MAX_NODES as i128 {
                    return err(format!("a range of more than {MAX_NODES} values"));
                }
                self.spend(len as usize)?;
                let mut items = Vec::with_capacity(len as usize);
                for k in 0..len {
                    self.arena
                        .push(Obj::Leaf(Py::Int((start + k * step) as i64)));
                    items.push(self.arena.len() - 1);
                }
                self.push(Obj::List(items));
            }
            (Builtin::List, []) => self.push(Obj::List(Vec::new())),
            (Builtin::List, [items]) => {
                let items = self.items_arg(*items, "list")?;
                self.push(Obj::List(items));
            }
            (Builtin::ByteArray, []) => self.push_leaf(Py::ByteArray(Vec::new())),
            (Builtin::ByteArray, [x]) => match leaf(self, *x)? {
                Py::Bytes(b) => self.push_leaf(Py::ByteArray(b)),
                _ => return err("bytearray() of something that is not bytes"),
            },
            (Builtin::CodecsEncode, [s, enc]) => match (leaf(self, *s)?, leaf(self, *enc)?) {
                (Py::Str(s), Py::Str(e)) if e == "latin1" || e == "latin-1" => {
                    let mut out = Vec::with_capacity(s.len());
                    for c in s.chars() {
                        let c = u32::from(c);
                        if c > 0xff {
                            return err("_codecs.encode: not latin-1");
                        }
                        out.push(c as u8);
                    }
                    self.push_leaf(Py::Bytes(out));
                }
                _ => return err("_codecs.encode with unexpected arguments"),
            },
            _ => return err("an accepted data type called with unexpected arguments"),
        }
        Ok(())
    }

    fn run(mut self) -> Result<Py, PickleError> {
        loop {
            // Each opcode adds at most a few values: the arena stays
            // within the work bound.
            self.spend(0)?;
            let op = self.byte()?;
            match op {
                0x80 => {
                    let p = self.byte()?;
                    if p > 5 {
                        return err(format!("unsupported pickle protocol {p}"));
                    }
                }
                0x95 => {
                    // FRAME: a hint of the next frame's length; the bytes
                    // are read as they come.
                    self.u64()?;
                }
                b'.' => {
                    let top = self.pop()?;
                    if !self.stack.is_empty() {
                        return err("values left on the stack at STOP");
                    }
                    return Materializer::new().build(&self.arena, top, 0);
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack
                        .pop()
                        .ok_or(PickleError("stack underflow".into()))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(Slot::Obj(t));
                }
                b'N' => self.push_leaf(Py::None),
                0x88 => self.push_leaf(Py::Bool(true)),
                0x89 => self.push_leaf(Py::Bool(false)),
                b'I' => {
                    let s = self.line()?;
                    self.int_text(s)?;
                }
                b'L' => {
                    let s = self.line()?;
                    self.int_text(s)?;
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push_leaf(Py::Int(v.into()));
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push_leaf(Py::Int(v.into()));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push_leaf(Py::Int(v.into()));
                }
                0x8a => {
                    let n = self.byte()?;
                    self.long(n.into())?;
                }
                0x8b => {
                    let n = self.u32()? as i32;
                    if n < 0 {
                        return err("LONG4 with a negative length");
                    }
                    self.long(n as u64)?;
                }
                b'F' => {
                    let s = self.line()?;
                    let v: f64 = s
                        .parse()
                        .map_err(|_| PickleError("malformed text float".into()))?;
                    self.push_leaf(Py::Float(v));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8"));
                    self.push_leaf(Py::Float(v));
                }
                b'V' => {
                    let s = self.line()?;
                    let s = unescape_raw_unicode(s)?;
                    self.push_leaf(Py::Str(s));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => u64::from(self.u32()?),
                        0x8c => u64::from(self.byte()?),
                        _ => self.u64()?,
                    };
                    let b = self.len_bytes(n)?;
                    let s = std::str::from_utf8(b).map_err(|_| {
                        PickleError("a str that is not valid UTF-8 (a lone surrogate?)".into())
                    })?;
                    self.push_leaf(Py::Str(s.to_string()));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => u64::from(self.u32()?),
                        b'C' => u64::from(self.byte()?),
                        _ => self.u64()?,
                    };
                    let b = self.len_bytes(n)?.to_vec();
                    self.push_leaf(if op == 0x96 {
                        Py::ByteArray(b)
                    } else {
                        Py::Bytes(b)
                    });
                }
                b']' => self.push(Obj::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.append_to(l, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.append_to(l, items)?;
                }
                b')' => self.push(Obj::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return err("stack underflow");
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Obj::Tuple(items));
                }
                b'}' => self.push(Obj::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Dict(Vec::new()));
                    let d = self.top()?;
                    self.set_items(d, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.set_items(d, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?;
                    self.set_items(d, items)?;
                }
                0x8f => self.push(Obj::Set(Vec::new())),
                0x90 => {
                    let items = self.pop_mark()?;
                    let s = self.top()?;
                    self.append_to(s, items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Obj::FrozenSet(items));
                }
                b'p' | b'q' | b'r' => {
                    let k = self.memo_index(op, "PUT")?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'g' | b'h' | b'j' => {
                    let k = self.memo_index(op, "GET")?;
                    self.memo_get(k)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let b = global_of(module, name, self.exceptions)?;
                    self.push(Obj::Global(b));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let b = global_of(self.str_of(module)?, self.str_of(name)?, self.exceptions)?;
                    self.push(Obj::Global(b));
                }
                b'R' => self.reduce()?,
                b'S' | b'T' | b'U' => {
                    return err("Python 2 byte strings (STRING opcodes) are not accepted");
                }
                b'b' | b'i' | b'o' | 0x81 | 0x92 => {
                    return err(format!(
                        "opcode {op:#04x} builds an object of a class: pickles are data, never code"
                    ));
                }
                b'P' | b'Q' => return err("persistent ids are not accepted"),
                0x82..=0x84 => return err("extension registry codes are not accepted"),
                0x97 | 0x98 => return err("out-of-band buffers are not accepted"),
                other => return err(format!("unknown opcode {other:#04x}")),
            }
        }
    }
}

/// Copies a value out of the arena, counting every value made (shared
/// ones each time) and refusing cycles and deep nesting.
struct Materializer {
    nodes: usize,
    on_path: Vec<usize>,
}

impl Materializer {
    fn new() -> Materializer {
        Materializer {
            nodes: 0,
            on_path: Vec::new(),
        }
    }

    fn build(&mut self, arena: &[Obj], i: usize, depth: usize) -> Result<Py, PickleError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return err(format!("more than {MAX_NODES} values"));
        }
        if depth > MAX_DEPTH {
            return err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let many = |m: &mut Self, v: &[usize]| -> Result<Vec<Py>, PickleError> {
            if m.on_path.contains(&i) {
                return err("a container that contains itself");
            }
            m.on_path.push(i);
            let out = v
                .iter()
                .map(|&j| m.build(arena, j, depth + 1))
                .collect::<Result<Vec<_>, _>>();
            m.on_path.pop();
            out
        };
        Ok(match &arena[i] {
            Obj::Leaf(p) => {
                // Bytes and strings count by size too, so that sharing one
                // long string many times is bounded like sharing a list.
                let extra = match p {
                    Py::Str(s) => s.len() / 64,
                    Py::Bytes(b) | Py::ByteArray(b) => b.len() / 64,
                    _ => 0,
                };
                self.nodes += extra;
                if self.nodes > MAX_NODES {
                    return err(format!("more than {MAX_NODES} values"));
                }
                p.clone()
            }
            Obj::List(v) => Py::List(many(self, v)?),
            Obj::Tuple(v) => Py::Tuple(many(self, v)?),
            Obj::Set(v) => Py::Set(many(self, v)?),
            Obj::FrozenSet(v) => Py::FrozenSet(many(self, v)?),
            Obj::Dict(kv) => {
                let flat: Vec<usize> = kv.iter().flat_map(|&(k, v)| [k, v]).collect();
                let vals = many(self, &flat)?;
                let mut it = vals.into_iter();
                let mut out = Vec::with_capacity(kv.len());
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    out.push((k, v));
                }
                Py::Dict(out)
            }
            Obj::Global(_) => return err("a bare class or function reference is not data"),
        })
    }
}

fn unescape_raw_unicode(s: &str) -> Result<String, PickleError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let width = match chars.clone().next() {
            Some('u') => 4,
            Some('U') => 8,
            _ => {
                out.push('\\');
                continue;
            }
        };
        chars.next();
        let hex: String = chars.by_ref().take(width).collect();
        let v = u32::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| hex.len() == width)
            .and_then(char::from_u32)
            .ok_or(PickleError("bad escape in a text str".into()))?;
        out.push(v);
    }
    Ok(out)
}

/// An integer from little-endian two's complement bytes.
fn int_from_le(b: &[u8]) -> Py {
    if b.is_empty() {
        return Py::Int(0);
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    let mut v = b.to_vec();
    // Minimal: drop sign-extension bytes that repeat the sign.
    while v.len() > 1 {
        let last = v[v.len() - 1];
        let prev_sign = v[v.len() - 2] & 0x80 != 0;
        if (neg && last == 0xff && prev_sign) || (!neg && last == 0 && !prev_sign) {
            v.pop();
        } else {
            break;
        }
    }
    if v.len() <= 8 {
        let mut buf = if neg { [0xff; 8] } else { [0; 8] };
        buf[..v.len()].copy_from_slice(&v);
        return Py::Int(i64::from_le_bytes(buf));
    }
    Py::BigInt(v)
}

/// Decodes a whole pickle (protocols 0 to 5) of the data subset.
pub(crate) fn decode(input: &[u8]) -> Result<Py, PickleError> {
    decode_with(input, false)
}

/// Decodes a reply from a Python server: the data subset, and instances of
/// the [`EXCEPTIONS`] classes (as data too: nothing is constructed).
pub(crate) fn decode_reply(input: &[u8]) -> Result<Py, PickleError> {
    decode_with(input, true)
}

fn decode_with(input: &[u8], exceptions: bool) -> Result<Py, PickleError> {
    Decoder {
        input,
        pos: 0,
        arena: Vec::new(),
        stack: Vec::new(),
        memo: Memo::default(),
        exceptions,
        work: 0,
    }
    .run()
}

/// Decodes `count` concatenated canonical fragments (stored items).
pub(crate) fn decode_fragments(input: &[u8], count: usize) -> Result<Vec<Py>, PickleError> {
    let mut whole = Vec::with_capacity(input.len() + 4);
    whole.push(b'(');
    whole.extend_from_slice(input);
    whole.extend_from_slice(b"l.");
    match decode(&whole)? {
        Py::List(v) if v.len() == count => Ok(v),
        _ => err("stored values are not the expected pickle fragments"),
    }
}

/// Whether `b` is the canonical fragment of one `None`, bool, small int,
/// float or short str: a single opcode that [`decode_fragments`] accepts
/// as one value. A quick check that spares the whole decoder for the
/// commonest stored values; `false` says nothing (decode to know).
pub(crate) fn is_plain_leaf(b: &[u8]) -> bool {
    match b {
        [b'N' | 0x88 | 0x89] | [b'K', _] | [b'M', _, _] | [b'J', _, _, _, _] => true,
        [b'G', rest @ ..] => rest.len() == 8,
        [0x8c, n, s @ ..] => s.len() == usize::from(*n) && std::str::from_utf8(s).is_ok(),
        _ => false,
    }
}

// ------------------------------------------------------------------ encode

/// Appends the canonical fragment of `v` (no header, no `STOP`).
pub(crate) fn encode_into(v: &Py, out: &mut Vec<u8>) {
    match v {
        Py::None => out.push(b'N'),
        Py::Bool(true) => out.push(0x88),
        Py::Bool(false) => out.push(0x89),
        Py::Int(i) => encode_int(*i, out),
        Py::BigInt(b) => {
            if b.len() < 256 {
                out.push(0x8a);
                out.push(b.len() as u8);
            } else {
                out.push(0x8b);
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            }
            out.extend_from_slice(b);
        }
        Py::Float(f) => {
            out.push(b'G');
            out.extend_from_slice(&f.to_be_bytes());
        }
        Py::Str(s) => str_into(s, out),
        // SHORT_BINBYTES, BINBYTES, BINBYTES8.
        Py::Bytes(b) => sized_into(b, [b'C', b'B', 0x8e], out),
        Py::ByteArray(b) => {
            out.push(0x96);
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
        Py::List(items) => {
            out.push(b']');
            if !items.is_empty() {
                out.push(b'(');
                items.iter().for_each(|i| encode_into(i, out));
                out.push(b'e');
            }
        }
        Py::Tuple(items) => match items.len() {
            0 => out.push(b')'),
            n @ 1..=3 => {
                items.iter().for_each(|i| encode_into(i, out));
                out.push(0x84 + n as u8);
            }
            _ => {
                out.push(b'(');
                items.iter().for_each(|i| encode_into(i, out));
                out.push(b't');
            }
        },
        Py::Dict(kv) => {
            out.push(b'}');
            if !kv.is_empty() {
                out.push(b'(');
                for (k, v) in kv {
                    encode_into(k, out);
                    encode_into(v, out);
                }
                out.push(b'u');
            }
        }
        Py::Set(items) => {
            out.push(0x8f);
            if !items.is_empty() {
                out.push(b'(');
                out.extend_from_slice(&sorted_fragments(items));
                out.push(0x90);
            }
        }
        Py::FrozenSet(items) => {
            out.push(b'(');
            out.extend_from_slice(&sorted_fragments(items));
            out.push(0x91);
        }
        Py::Slice(s) => {
            global(out, "builtins", "slice");
            encode_into(&s.0, out);
            encode_into(&s.1, out);
            encode_into(&s.2, out);
            out.push(0x87);
            out.push(b'R');
        }
    }
}

/// The elements' fragments, sorted and concatenated: a set's canonical
/// order.
fn sorted_fragments(items: &[Py]) -> Vec<u8> {
    let mut frags: Vec<Vec<u8>> = items.iter().map(fragment).collect();
    frags.sort();
    frags.dedup();
    frags.concat()
}

/// CPython's own integer opcodes: the shortest that holds the value.
/// Appends the canonical fragment of a str.
pub(crate) fn str_into(s: &str, out: &mut Vec<u8>) {
    // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8.
    sized_into(s.as_bytes(), [0x8c, b'X', 0x8d], out);
}

/// Appends `b` behind the shortest of `ops` (a one-byte, four-byte and
/// eight-byte length) that holds its length.
fn sized_into(b: &[u8], ops: [u8; 3], out: &mut Vec<u8>) {
    let n = b.len();
    if n < 256 {
        out.push(ops[0]);
        out.push(n as u8);
    } else if n <= u32::MAX as usize {
        out.push(ops[1]);
        out.extend_from_slice(&(n as u32).to_le_bytes());
    } else {
        out.push(ops[2]);
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    out.extend_from_slice(b);
}

pub(crate) fn encode_int(i: i64, out: &mut Vec<u8>) {
    if (0..=0xff).contains(&i) {
        out.push(b'K');
        out.push(i as u8);
    } else if (0..=0xffff).contains(&i) {
        out.push(b'M');
        out.extend_from_slice(&(i as u16).to_le_bytes());
    } else if let Ok(v) = i32::try_from(i) {
        out.push(b'J');
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        let bytes = i.to_le_bytes();
        // The shortest two's complement that keeps the sign.
        let mut n = 8;
        while n > 1 {
            let last = bytes[n - 1];
            let prev_sign = bytes[n - 2] & 0x80 != 0;
            if (i < 0 && last == 0xff && prev_sign) || (i >= 0 && last == 0 && !prev_sign) {
                n -= 1;
            } else {
                break;
            }
        }
        out.push(0x8a);
        out.push(n as u8);
        out.extend_from_slice(&bytes[..n]);
    }
}

/// `GLOBAL module name` (only in what this server writes: the exception
/// classes of `#ERROR` replies, `slice`, `array.array`, `builtins.iter`
/// and the `Token` of a `#PROXY` reply).
pub(crate) fn global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(b'c');
    out.extend_from_slice(module.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
}

/// The canonical fragment of `v`.
pub(crate) fn fragment(v: &Py) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}

/// The protocol header of everything this server writes.
pub(crate) const HEADER: [u8; 2] = [0x80, 4];

/// A whole pickle of `v`.
pub(crate) fn encode(v: &Py) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    encode_into(v, &mut out);
    out.push(b'.');
    out
}

// ------------------------------------------------------------------ repr

impl Py {
    /// Python's `repr` of the value (for `str(proxy)`/`repr(proxy)`).
    pub(crate) fn repr(&self) -> String {
        let mut s = String::new();
        self.write_repr(&mut s);
        s
    }

    fn write_repr(&self, s: &mut String) {
        let seq = |s: &mut String, items: &[Py], open: &str, close: &str| {
            s.push_str(open);
            for (n, i) in items.iter().enumerate() {
                if n > 0 {
                    s.push_str(", ");
                }
                i.write_repr(s);
            }
            s.push_str(close);
        };
        match self {
            Py::None => s.push_str("None"),
            Py::Bool(true) => s.push_str("True"),
            Py::Bool(false) => s.push_str("False"),
            Py::Int(i) => {
                let _ = write!(s, "{i}");
            }
            Py::BigInt(b) => {
                let _ = write!(s, "<int of {} bytes>", b.len());
            }
            Py::Float(f) => {
                if f.is_nan() {
                    s.push_str("nan");
                } else if f.is_infinite() {
                    s.push_str(if *f > 0.0 { "inf" } else { "-inf" });
                } else if f.fract() == 0.0 && f.abs() < 1e16 {
                    let _ = write!(s, "{f:.1}");
                } else {
                    let _ = write!(s, "{f}");
                }
            }
            Py::Str(t) => {
                let q = if t.contains('\'') && !t.contains('"') {
                    '"'
                } else {
                    '\''
                };
                s.push(q);
                for c in t.chars() {
                    match c {
                        '\\' => s.push_str("\\\\"),
                        '\n' => s.push_str("\\n"),
                        '\r' => s.push_str("\\r"),
                        '\t' => s.push_str("\\t"),
                        c if c == q => {
                            s.push('\\');
                            s.push(c);
                        }
                        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                            let _ = write!(s, "\\x{:02x}", c as u32);
                        }
                        c => s.push(c),
                    }
                }
                s.push(q);
            }
            Py::Bytes(b) | Py::ByteArray(b) => {
                let ba = matches!(self, Py::ByteArray(_));
                if ba {
                    s.push_str("bytearray(");
                }
                s.push_str("b'");
                for &c in b {
                    match c {
                        b'\\' => s.push_str("\\\\"),
                        b'\'' => s.push_str("\\'"),
                        b'\n' => s.push_str("\\n"),
                        b'\r' => s.push_str("\\r"),
                        b'\t' => s.push_str("\\t"),
                        0x20..=0x7e => s.push(c as char),
                        _ => {
                            let _ = write!(s, "\\x{c:02x}");
                        }
                    }
                }
                s.push('\'');
                if ba {
                    s.push(')');
                }
            }
            Py::List(v) => seq(s, v, "[", "]"),
            Py::Tuple(v) if v.len() == 1 => seq(s, v, "(", ",)"),
            Py::Tuple(v) => seq(s, v, "(", ")"),
            Py::Set(v) if v.is_empty() => s.push_str("set()"),
            Py::Set(v) => seq(s, v, "{", "}"),
            Py::FrozenSet(v) if v.is_empty() => s.push_str("frozenset()"),
            Py::FrozenSet(v) => seq(s, v, "frozenset({", "})"),
            Py::Dict(kv) => {
                s.push('{');
                for (n, (k, v)) in kv.iter().enumerate() {
                    if n > 0 {
                        s.push_str(", ");
                    }
                    k.write_repr(s);
                    s.push_str(": ");
                    v.write_repr(s);
                }
                s.push('}');
            }
            Py::Slice(b) => {
                s.push_str("slice(");
                b.0.write_repr(s);
                s.push_str(", ");
                b.1.write_repr(s);
                s.push_str(", ");
                b.2.write_repr(s);
                s.push(')');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf() -> impl Strategy<Value = Py> {
        prop_oneof![
            Just(Py::None),
            any::<bool>().prop_map(Py::Bool),
            any::<i64>().prop_map(Py::Int),
            proptest::collection::vec(any::<u8>(), 9..20)
                .prop_map(|b| int_from_le(&b))
                .prop_filter("big", |p| matches!(p, Py::BigInt(_))),
            any::<f64>()
                .prop_filter("not NaN", |f| !f.is_nan())
                .prop_map(Py::Float),
            ".{0,300}".prop_map(Py::Str),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Py::Bytes),
            proptest::collection::vec(any::<u8>(), 0..10).prop_map(Py::ByteArray),
        ]
    }

    fn value() -> impl Strategy<Value = Py> {
        leaf().prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Py::List),
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Py::Tuple),
                proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Py::Dict),
            ]
        })
    }

    /// Opcodes with their arguments, for [`opcode_soup_never_panics`].
    const SNIPPETS: &[&[u8]] = &[
        b"N",
        b"\x88",
        b"K\x01",
        b"M\x00\x01",
        b"J\xff\xff\xff\xff",
        b"\x8a\x01\x80",
        b"G\x3f\xf0\x00\x00\x00\x00\x00\x00",
        b"\x8c\x01a",
        b"C\x01b",
        b"]",
        b")",
        b"}",
        b"(",
        b"e",
        b"a",
        b"l",
        b"t",
        b"\x85",
        b"\x86",
        b"\x87",
        b"d",
        b"s",
        b"u",
        b"\x8f",
        b"\x90",
        b"\x91",
        b"\x94",
        b"q\x00",
        b"h\x00",
        b"h\x01",
        b"h\x02",
        b"0",
        b"1",
        b"2",
        b"cbuiltins\nlist\n",
        b"cbuiltins\nset\n",
        b"cbuiltins\nslice\n",
        b"cbuiltins\nrange\n",
        b"\x8c\x08builtins\x8c\x04list\x93",
        b"R",
        b"I5\n",
        b"F1.5\n",
        b"Vx\n",
    ];

    #[test]
    fn known_cpython_pickles() {
        // pickle.dumps(('x', 'get', (1,), {}), 4)
        let p = b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00(\x8c\x01x\x94\x8c\x03get\x94K\x01\x85\x94}\x94t\x94.";
        assert_eq!(
            decode(p).unwrap(),
            Py::Tuple(vec![
                Py::Str("x".into()),
                Py::Str("get".into()),
                Py::Tuple(vec![Py::Int(1)]),
                Py::Dict(vec![]),
            ])
        );
        // l = [1, 2]; pickle.dumps([l, l], 4): the memo shares a list
        // filled after it was memoized.
        let p = b"\x80\x04\x95\x11\x00\x00\x00\x00\x00\x00\x00]\x94(]\x94(K\x01K\x02eh\x01e.";
        let inner = Py::List(vec![Py::Int(1), Py::Int(2)]);
        assert_eq!(decode(p).unwrap(), Py::List(vec![inner.clone(), inner]));
        // pickle.dumps(2**70, 2), and -1 in protocol 0.
        assert!(matches!(
            decode(b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x40.").unwrap(),
            Py::BigInt(_)
        ));
        assert_eq!(decode(b"I-1\n.").unwrap(), Py::Int(-1));
        assert_eq!(decode(b"\x80\x02\x8a\x01\xff.").unwrap(), Py::Int(-1));
    }

    #[test]
    fn memo_in_every_form() {
        let one = || Py::List(vec![Py::Int(1)]);
        // a = [1]; pickle.dumps([a, a], 0): PUT and GET as text lines.
        let p = b"(lp0\n(lp1\nI1\naag1\na.";
        assert_eq!(decode(p).unwrap(), Py::List(vec![one(), one()]));
        // The same in protocol 1: BINPUT and BINGET (one byte).
        let p = b"]q\x00(]q\x01K\x01ah\x01e.";
        assert_eq!(decode(p).unwrap(), Py::List(vec![one(), one()]));
        // LONG_BINPUT and LONG_BINGET (4 bytes): [7, 7] through slot 261.
        let p = b"(K\x07r\x05\x01\x00\x00j\x05\x01\x00\x00l.";
        assert_eq!(decode(p).unwrap(), Py::List(vec![Py::Int(7), Py::Int(7)]));
        for (p, what) in [
            (&b"I1\np1x\n."[..], "malformed PUT"),
            (b"I1\np1\ng1x\n.", "malformed GET"),
        ] {
            assert!(decode(p).unwrap_err().0.contains(what), "{p:?}");
        }
    }

    #[test]
    fn code_is_refused() {
        // pickle.dumps(os.system) style payloads.
        for p in [
            &b"cos\nsystem\n(S'echo hi'\ntR."[..],
            b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02hi\x85R.",
            b"(cos\nsystem\nS'x'\no.",
            b"(S'x'\nios\nsystem\n.",
            b"\x80\x02cbuiltins\nobject\n)\x81.",
            b"\x80\x02]N\x62.",
            b"\x80\x02P1\n.",
            b"\x80\x02\x82\x01.",
        ] {
            let e = decode(p).unwrap_err();
            assert!(!e.0.is_empty());
        }
        // Exceptions only in replies, and as data.
        let key_error = b"\x80\x04\x8c\x08builtins\x8c\x08KeyError\x93\x8c\x02zz\x85R.";
        assert!(decode(key_error).is_err());
        assert_eq!(
            decode_reply(key_error).unwrap(),
            Py::Dict(vec![
                (
                    Py::Str("__exception__".into()),
                    Py::Str("builtins.KeyError".into())
                ),
                (
                    Py::Str("args".into()),
                    Py::Tuple(vec![Py::Str("zz".into())])
                ),
            ])
        );
        assert!(decode_reply(b"cos\nsystem\n(S'x'\ntR.").is_err());
        // A bare accepted global is not a value either.
        assert!(decode(b"cbuiltins\nslice\n.").is_err());
    }

    #[test]
    fn shared_references_are_bounded_and_cycles_refused() {
        // x = []; then 40 times: x = [x, x] through the memo: 2**40 values.
        let mut p = vec![0x80, 4, b']', 0x94];
        for i in 0..40u32 {
            p.push(b'j');
            p.extend_from_slice(&i.to_le_bytes());
            p.push(b'j');
            p.extend_from_slice(&i.to_le_bytes());
            p.extend_from_slice(&[0x86, 0x94]);
        }
        p.push(b'.');
        assert!(decode(&p).unwrap_err().0.contains("values"));
        // l = []; l.append(l)
        assert!(
            decode(b"\x80\x04]\x94h\x00a.")
                .unwrap_err()
                .0
                .contains("itself")
        );
        // list(x) of one long list, again and again through the memo: the
        // copies are counted.
        let mut p = vec![0x80, 4, b']', 0x94, b'('];
        p.extend(std::iter::repeat_n(b'N', 100_000));
        p.push(b'e');
        p.extend_from_slice(b"\x8c\x08builtins\x8c\x04list\x93\x94(");
        for _ in 0..100 {
            p.extend_from_slice(b"h\x01h\x00\x85R0");
        }
        p.extend_from_slice(b"1N.");
        assert!(decode(&p).unwrap_err().0.contains("more than"));
        // A huge LONG4 length with nothing behind it allocates nothing.
        assert!(decode(b"\x80\x04\x8b\xff\xff\xff\x7f.").is_err());
        assert!(decode(b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f.").is_err());
    }

    #[test]
    fn repr_matches_python() {
        let v = Py::Dict(vec![
            (
                Py::Str("a".into()),
                Py::List(vec![Py::Int(1), Py::Float(2.0)]),
            ),
            (Py::Int(3), Py::Tuple(vec![Py::None])),
        ]);
        assert_eq!(v.repr(), "{'a': [1, 2.0], 3: (None,)}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]

        #[test]
        fn round_trip(v in value()) {
            let p = encode(&v);
            prop_assert_eq!(decode(&p).unwrap(), v.clone());
            // Canonical: decoding and encoding again gives the same bytes.
            prop_assert_eq!(encode(&decode(&p).unwrap()), p);
        }

        #[test]
        fn fragments_concatenate(items in proptest::collection::vec(value(), 0..6)) {
            let cat: Vec<u8> = items.iter().flat_map(fragment).collect();
            prop_assert_eq!(decode_fragments(&cat, items.len()).unwrap(), items);
        }

        /// The quick check never accepts what the decoder refuses.
        #[test]
        fn a_plain_leaf_decodes_as_one_value(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            if is_plain_leaf(&bytes) {
                prop_assert!(decode_fragments(&bytes, 1).is_ok(), "{:?}", bytes);
            }
        }

        #[test]
        fn leaves_are_plain(v in value()) {
            let f = fragment(&v);
            let leaf = matches!(v, Py::None | Py::Bool(_) | Py::Float(_))
                || matches!(&v, Py::Int(i) if i32::try_from(*i).is_ok())
                || matches!(&v, Py::Str(s) if s.len() < 256);
            prop_assert_eq!(is_plain_leaf(&f), leaf, "{:?}", f);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
            let mut with_header = vec![0x80, 4];
            with_header.extend_from_slice(&bytes);
            let _ = decode(&with_header);
        }

        /// Pickles made of opcodes (rather than of random bytes) reach the
        /// stack, memo and mark handling; whatever decodes re-encodes to a
        /// pickle that decodes to the same value (compared by canonical
        /// encoding: a set's elements come back in canonical order, not in
        /// the order the soup listed them).
        #[test]
        fn opcode_soup_never_panics(ops in proptest::collection::vec(0usize..SNIPPETS.len(), 0..60)) {
            let mut p = vec![0x80, 4];
            for i in ops {
                p.extend_from_slice(SNIPPETS[i]);
            }
            p.push(b'.');
            if let Ok(v) = decode(&p) {
                let canonical = encode(&v);
                prop_assert_eq!(encode(&decode(&canonical).unwrap()), canonical);
            }
        }

        #[test]
        fn mutated_pickles_never_panic(
            v in value(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut p = encode(&v);
            for (i, b) in flips {
                let i = i.index(p.len());
                p[i] ^= b;
            }
            let _ = decode(&p);
        }
    }
}
