//! A pickle reader that executes nothing.
//!
//! Python's `pickle` is a small stack machine whose `GLOBAL` and `REDUCE` opcodes import and
//! call arbitrary functions: loading a pickle runs whatever it names. This machine implements
//! the data opcodes (numbers, strings, tuples, lists, dicts, the memo) and treats `GLOBAL` as a
//! request checked against a [`Policy`]: a name the policy does not allow stops the machine
//! before anything refers to it, and an allowed one is never imported, only recognised. `REDUCE`
//! and `BUILD` are likewise interpreted by the policy for the few names it knows.
//!
//! Every length is checked against the bytes left before anything is allocated, and the memo,
//! the stack and the number of objects are capped: no input can make it allocate more than a
//! small multiple of its own size, recurse, or loop.

use std::collections::{HashMap, HashSet};

/// Most objects one pickle may create.
pub const MAX_OBJECTS: usize = 1 << 22;
/// Most entries in the memo.
pub const MAX_MEMO: usize = 1 << 20;
/// Most items on the stack (marks included).
pub const MAX_STACK: usize = 1 << 20;
/// Most container slots (tuple, list and dict entries, counted each time a container is
/// made) per byte of pickle: copies made by calls (a `torch.Size` of a memoized tuple, again
/// and again) would otherwise grow with the square of the input.
pub const MAX_SLOTS_PER_BYTE: usize = 16;

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    /// The pickle names a global the policy does not allow: what it would have imported.
    #[error("refused global {0} (at byte {1}): loading this file would import and run it")]
    Refused(String, usize),
    /// The bytes are not a pickle this reader understands.
    #[error("{0} (at byte {1})")]
    Malformed(String, usize),
}

/// An object built by the machine. Containers hold indices into the machine's arena, so that
/// shared references (the memo) stay shared and a container built after it was memoized is
/// seen whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<usize>),
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    /// A global the policy allowed, by `module.name`; never imported.
    Global(String),
    /// What a policy made of a call or a persistent id (for torch: a storage or a tensor).
    Made(Made),
}

/// Objects a [`Policy`] makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Made {
    /// A torch storage: element type (by its class name), elements, where its bytes are.
    Storage {
        class: String,
        numel: u64,
        data: StorageData,
    },
    /// A torch tensor: a view of a storage.
    Tensor {
        storage: usize,
        offset: u64,
        shape: Vec<u64>,
        strides: Vec<u64>,
    },
}

/// Where a torch storage's bytes are.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageData {
    /// Outside the pickle (a checkpoint's record, a legacy file's section), by key.
    Key(String),
    /// Inside it (a storage pickled on its own): `range` of the bytes object at index `bytes`.
    Inline {
        bytes: usize,
        range: std::ops::Range<usize>,
    },
}

/// The storages that persistent ids name, by key. `torch.load` types a storage by the first
/// persistent id that names its key and hands that same storage to every later one (zip and
/// legacy formats alike); `torch.save` never names one key with two classes or element counts.
/// A reader that took each at its word would see other values than torch does, so a second use
/// that disagrees with the first is refused.
#[derive(Debug, Default)]
pub struct StorageKeys {
    /// Class (`torch.FloatStorage`, ...) and element count of each key's first use.
    first: HashMap<String, (String, u64)>,
}

impl StorageKeys {
    /// Records a use of storage `key` as `class` with `numel` elements; a use that disagrees
    /// with the key's first one is an error naming both.
    pub fn check(&mut self, key: &str, class: &str, numel: u64) -> Result<(), String> {
        let Some((first, count)) = self.first.get(key) else {
            self.first.insert(key.to_owned(), (class.to_owned(), numel));
            return Ok(());
        };
        fn short(class: &str) -> &str {
            class.strip_prefix("torch.").unwrap_or(class)
        }
        if first != class {
            Err(format!(
                "storage {key:?} is used as {} and as {}; torch.load would read it as one type, so its values are ambiguous",
                short(first),
                short(class)
            ))
        } else if *count != numel {
            Err(format!(
                "storage {key:?} is used with {count} elements and with {numel}; torch.load would read it at one size, so its values are ambiguous"
            ))
        } else {
            Ok(())
        }
    }
}

/// What a pickle may name and what its calls make.
pub trait Policy {
    /// Whether `module.name` may be referred to. A refusal stops the machine.
    fn allow(&mut self, global: &str) -> bool;
    /// The result of calling the allowed global `func` with the tuple `args` (`REDUCE`).
    fn call(&mut self, m: &mut Machine<'_>, func: &str, args: usize) -> Result<Obj, String>;
    /// The object a persistent id stands for (`BINPERSID`).
    fn persistent(&mut self, m: &mut Machine<'_>, pid: usize) -> Result<Obj, String>;
}

/// The machine's state: input, arena of objects, stack, memo.
#[derive(Debug)]
pub struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    arena: Vec<Obj>,
    stack: Vec<Item>,
    memo: HashMap<u32, usize>,
    /// Container slots made so far (see [`MAX_SLOTS_PER_BYTE`]).
    slots: usize,
    /// Bytes of text and bytes objects made so far: those read from the pickle add up to less
    /// than its size, and calls that make more (`_codecs.encode`) may at most double it.
    text: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Item {
    Mark,
    Obj(usize),
}

impl<'a> Machine<'a> {
    /// Objects made so far.
    pub fn objects(&self) -> usize {
        self.arena.len()
    }

    /// Bytes read, up to and including the STOP opcode.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// The object at `i`.
    pub fn get(&self, i: usize) -> &Obj {
        &self.arena[i]
    }

    fn new_obj(&mut self, o: Obj) -> Result<usize, PickleError> {
        if self.arena.len() >= MAX_OBJECTS {
            return Err(self.bad("more than 4 million objects"));
        }
        self.slots += match &o {
            Obj::Tuple(v) | Obj::List(v) => v.len(),
            Obj::Dict(v) => 2 * v.len(),
            Obj::Made(Made::Tensor { shape, .. }) => 2 * shape.len(),
            _ => 0,
        };
        if self.slots > MAX_SLOTS_PER_BYTE * self.data.len() + 4096 {
            return Err(self.bad(
                "its containers hold far more items than its bytes can describe (copies of copies)",
            ));
        }
        self.text += match &o {
            Obj::Str(s) => s.len(),
            Obj::Bytes(b) => b.len(),
            _ => 0,
        };
        if self.text > 2 * self.data.len() {
            return Err(self
                .bad("its text and bytes add up to more than twice its size (copies of copies)"));
        }
        self.arena.push(o);
        Ok(self.arena.len() - 1)
    }

    fn bad(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed(what.into(), self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(self.bad(format!("{n} bytes needed, the pickle ends first")));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn len(&mut self, n: u64) -> Result<usize, PickleError> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(self.bad(format!("a length of {n} bytes, with {left} left")));
        }
        Ok(n as usize)
    }

    fn text(&mut self, n: usize) -> Result<String, PickleError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.bad("text that is not UTF-8"))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let n = (rest.iter().position(|&b| b == b'\n'))
            .filter(|&n| n <= 1024)
            .ok_or_else(|| self.bad("a GLOBAL name without its newline"))?;
        let s = self.text(n)?;
        self.pos += 1;
        Ok(s)
    }

    fn push(&mut self, o: Obj) -> Result<(), PickleError> {
        let i = self.new_obj(o)?;
        self.push_ref(i)
    }

    fn push_ref(&mut self, i: usize) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.bad("the stack grows past 1 million items"));
        }
        self.stack.push(Item::Obj(i));
        Ok(())
    }

    fn pop(&mut self) -> Result<usize, PickleError> {
        match self.stack.pop() {
            Some(Item::Obj(i)) => Ok(i),
            Some(Item::Mark) => Err(self.bad("a mark where an object was expected")),
            None => Err(self.bad("the stack is empty")),
        }
    }

    fn top(&self) -> Result<usize, PickleError> {
        match self.stack.last() {
            Some(Item::Obj(i)) => Ok(*i),
            _ => Err(self.bad("no object on the stack")),
        }
    }

    /// Pops everything down to the last mark.
    fn pop_mark(&mut self) -> Result<Vec<usize>, PickleError> {
        let at = (self.stack.iter().rposition(|i| *i == Item::Mark))
            .ok_or_else(|| self.bad("no mark on the stack"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|i| match i {
                Item::Obj(o) => o,
                Item::Mark => unreachable!("the last mark was at `at`"),
            })
            .collect())
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let top = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(self.bad("the memo grows past 1 million entries"));
        }
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let i = *(self.memo.get(&key))
            .ok_or_else(|| self.bad(format!("memo entry {key} is not set")))?;
        self.push_ref(i)
    }

    /// `(key, value)` pairs into the dict at `d`.
    fn set_items(&mut self, d: usize, items: &[usize]) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.bad("an odd number of items for a dict"));
        }
        let Obj::Dict(entries) = &mut self.arena[d] else {
            return Err(self.bad("SETITEM(S) on something that is not a dict"));
        };
        entries.extend(items.chunks(2).map(|kv| (kv[0], kv[1])));
        Ok(())
    }

    /// Strings of an object: its text, if it is one.
    pub fn str(&self, i: usize) -> Option<&str> {
        match &self.arena[i] {
            Obj::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A bytes object's bytes.
    pub fn bytes(&self, i: usize) -> Option<&[u8]> {
        match &self.arena[i] {
            Obj::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The bytes `_codecs.encode(text, "latin1")` makes from `args`: how pickle protocols 0 to
    /// 2 write a bytes object.
    pub fn latin1(&self, args: &[usize]) -> Option<Vec<u8>> {
        match args {
            [text, enc] if self.str(*enc) == Some("latin1") => (self.str(*text)?.chars())
                .map(|c| u8::try_from(c).ok())
                .collect(),
            _ => None,
        }
    }

    /// An integer object's value.
    pub fn int(&self, i: usize) -> Option<i64> {
        match self.arena[i] {
            Obj::Int(v) => Some(v),
            Obj::Bool(b) => Some(b as i64),
            _ => None,
        }
    }

    /// A tuple's (or list's) items.
    pub fn items(&self, i: usize) -> Option<&[usize]> {
        match &self.arena[i] {
            Obj::Tuple(v) | Obj::List(v) => Some(v),
            _ => None,
        }
    }

    /// Adds an object, for policies.
    pub fn add(&mut self, o: Obj) -> Result<usize, String> {
        self.new_obj(o).map_err(|e| e.to_string())
    }
}

/// Runs the pickle in `data` under `policy`; returns the machine and the index of the object
/// it produced.
pub fn load<'a>(
    data: &'a [u8],
    policy: &mut impl Policy,
) -> Result<(Machine<'a>, usize), PickleError> {
    let mut m = Machine {
        data,
        pos: 0,
        arena: Vec::new(),
        stack: Vec::new(),
        memo: HashMap::new(),
        slots: 0,
        text: 0,
    };
    loop {
        let at = m.pos;
        let op = m.u8()?;
        match op {
            0x80 => {
                let proto = m.u8()?;
                if proto > 5 {
                    return Err(PickleError::Malformed(format!("pickle protocol {proto}"), at));
                }
            }
            // FRAME: a length prefix for what follows, which is read as usual.
            // FRAME: a length prefix for what follows, read as usual; the frame must be there
            // whole, or Python's own unpickler (and torch.load) would refuse the file.
            0x95 => {
                let n = u64::from_le_bytes(m.le()?);
                m.len(n)?;
            }
            b'.' => return m.pop().map(|root| (m, root)),
            b'(' => {
                if m.stack.len() >= MAX_STACK {
                    return Err(m.bad("the stack grows past 1 million items"));
                }
                m.stack.push(Item::Mark);
            }
            b')' => m.push(Obj::Tuple(Vec::new()))?,
            b']' => m.push(Obj::List(Vec::new()))?,
            b'}' => m.push(Obj::Dict(Vec::new()))?,
            b't' => {
                let items = m.pop_mark()?;
                m.push(Obj::Tuple(items))?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = (0..n).map(|_| m.pop()).collect::<Result<Vec<_>, _>>()?;
                items.reverse();
                m.push(Obj::Tuple(items))?;
            }
            b'N' => m.push(Obj::None)?,
            0x88 => m.push(Obj::Bool(true))?,
            0x89 => m.push(Obj::Bool(false))?,
            b'J' => {
                let v = i32::from_le_bytes(m.le()?);
                m.push(Obj::Int(v as i64))?;
            }
            b'K' => {
                let v = m.u8()?;
                m.push(Obj::Int(v as i64))?;
            }
            b'M' => {
                let v = u16::from_le_bytes(m.le()?);
                m.push(Obj::Int(v as i64))?;
            }
            0x8a => {
                let n = m.u8()? as usize;
                if n > 8 {
                    return Err(PickleError::Malformed(format!("an integer of {n} bytes (at most 8 are read)"), at));
                }
                let bytes = m.take(n)?;
                let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                buf[..n].copy_from_slice(bytes);
                m.push(Obj::Int(i64::from_le_bytes(buf)))?;
            }
            b'G' => {
                let v = f64::from_be_bytes(m.le()?);
                m.push(Obj::Float(v))?;
            }
            b'X' | 0x8c | 0x8d | b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'X' | b'B' => u32::from_le_bytes(m.le()?) as u64,
                    0x8c | b'C' => m.u8()? as u64,
                    _ => u64::from_le_bytes(m.le()?),
                };
                let n = m.len(n)?;
                let o = if matches!(op, b'X' | 0x8c | 0x8d) {
                    Obj::Str(m.text(n)?)
                } else {
                    Obj::Bytes(m.take(n)?.to_vec())
                };
                m.push(o)?;
            }
            b'q' => {
                let k = m.u8()? as u32;
                m.memo_put(k)?;
            }
            b'r' => {
                let k = u32::from_le_bytes(m.le()?);
                m.memo_put(k)?;
            }
            0x94 => {
                let k = m.memo.len() as u32;
                m.memo_put(k)?;
            }
            b'h' => {
                let k = m.u8()? as u32;
                m.memo_get(k)?;
            }
            b'j' => {
                let k = u32::from_le_bytes(m.le()?);
                m.memo_get(k)?;
            }
            b'c' | 0x93 => {
                let (module, name) = if op == b'c' {
                    (m.line()?, m.line()?)
                } else {
                    let name = m.pop()?;
                    let module = m.pop()?;
                    match (m.str(module), m.str(name)) {
                        (Some(a), Some(b)) => (a.to_owned(), b.to_owned()),
                        _ => return Err(PickleError::Malformed("STACK_GLOBAL of something other than two strings".into(), at)),
                    }
                };
                let global = format!("{module}.{name}");
                if !policy.allow(&global) {
                    return Err(PickleError::Refused(global, at));
                }
                m.push(Obj::Global(global))?;
            }
            b'R' => {
                let args = m.pop()?;
                let func = m.pop()?;
                let Obj::Global(g) = m.get(func).clone() else {
                    return Err(PickleError::Malformed("REDUCE of something that is not an allowed global".into(), at));
                };
                if !matches!(m.get(args), Obj::Tuple(_)) {
                    return Err(PickleError::Malformed("REDUCE with arguments that are not a tuple".into(), at));
                }
                let made = policy.call(&mut m, &g, args).map_err(|e| PickleError::Malformed(format!("{g}: {e}"), at))?;
                m.push(made)?;
            }
            b'Q' => {
                let pid = m.pop()?;
                let made = policy.persistent(&mut m, pid).map_err(|e| PickleError::Malformed(format!("persistent id: {e}"), at))?;
                m.push(made)?;
            }
            // BUILD sets an object's state: dicts and tensors keep none that matters here.
            b'b' => {
                m.pop()?;
                let top = m.top()?;
                if !matches!(m.get(top), Obj::Dict(_) | Obj::Made(_)) {
                    return Err(PickleError::Malformed("BUILD on an object that takes no state here".into(), at));
                }
            }
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                let d = m.top()?;
                m.set_items(d, &[k, v])?;
            }
            b'u' => {
                let items = m.pop_mark()?;
                let d = m.top()?;
                m.set_items(d, &items)?;
            }
            b'a' | b'e' => {
                let items = if op == b'a' { vec![m.pop()?] } else { m.pop_mark()? };
                let l = m.top()?;
                let Obj::List(list) = &mut m.arena[l] else {
                    return Err(PickleError::Malformed("APPEND(S) to something that is not a list".into(), at));
                };
                list.extend(items);
            }
            b'2' => {
                let top = m.top()?;
                m.push_ref(top)?;
            }
            b'0' => {
                m.stack.pop().ok_or_else(|| m.bad("POP on an empty stack"))?;
            }
            b'1' => {
                m.pop_mark()?;
            }
            other => {
                return Err(PickleError::Malformed(
                    format!("pickle opcode 0x{other:02x} is not one this reader executes (it reads protocols 2 to 5 of plain data)"),
                    at,
                ))
            }
        }
    }
}

/// What [`scan_all`] found.
#[derive(Debug, Default, PartialEq)]
pub struct Scan {
    /// Every global named, once each.
    pub globals: Vec<String>,
    /// Why reading stopped before the end of the data, if it did.
    pub error: Option<PickleError>,
    /// The bytes given to `torch.storage._load_from_bytes` (each object once): `torch.save`
    /// streams that loading the pickle would unpickle in turn.
    pub nested: Vec<Vec<u8>>,
    /// Storage keys named again with another class or element count (see [`StorageKeys`]),
    /// one message per key.
    pub ambiguous: Vec<String>,
}

/// Every global the pickles at the start of `data` name, without running them (what `nnsign
/// scan` reports), and the `torch.save` streams they hold. Pickles that follow one another (a
/// payload hidden after a state dict, which a loop of `pickle.load` calls would run) are read,
/// at most `most` of them.
pub fn scan_all(data: &[u8], most: usize) -> Scan {
    let mut r = Record::default();
    let (mut at, mut error) = (0, None);
    for _ in 0..most {
        match load(&data[at..], &mut r) {
            Ok((m, _)) => at += m.consumed(),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        r.seen.clear(); // indices of the pickle just read
        if at >= data.len() || data[at] != 0x80 {
            break;
        }
    }
    Scan {
        globals: r.globals,
        error,
        nested: r.nested,
        ambiguous: r.ambiguous,
    }
}

/// Records what a pickle names and the streams it would load; calls nothing.
#[derive(Default)]
struct Record {
    globals: Vec<String>,
    nested: Vec<Vec<u8>>,
    /// Bytes objects kept, by index: one loaded again and again is kept once.
    seen: HashSet<usize>,
    keys: StorageKeys,
    ambiguous: Vec<String>,
    /// Keys already in `ambiguous`.
    reported: HashSet<String>,
}

impl Policy for Record {
    fn allow(&mut self, g: &str) -> bool {
        if !self.globals.iter().any(|x| x == g) {
            self.globals.push(g.to_owned());
        }
        true
    }
    // Nothing is called; a call stands for an empty dict, which is what the containers of a
    // state dict are, so that the scan reads on to the end. Bytes are made as protocol 2 makes
    // them, so that the streams torch would load from them can be scanned in turn.
    fn call(&mut self, m: &mut Machine<'_>, func: &str, args: usize) -> Result<Obj, String> {
        let args = m.items(args).expect("REDUCE checked a tuple");
        let empty = Obj::Dict(Vec::new());
        match func {
            "_codecs.encode" => Ok(m.latin1(args).map_or(empty, Obj::Bytes)),
            "torch.storage._load_from_bytes" => {
                let stream = match args {
                    &[b] => m.bytes(b).map(|s| (b, s)),
                    _ => None,
                };
                let (b, stream) = stream
                    .ok_or("its argument is not bytes: what torch would load cannot be seen")?;
                if self.seen.insert(b) {
                    self.nested.push(stream.to_vec());
                }
                Ok(empty)
            }
            _ => Ok(empty),
        }
    }
    // A storage's persistent id, `('storage', class, key, location, numel, ...)`, is checked
    // against the key's earlier uses; anything else is passed over.
    fn persistent(&mut self, m: &mut Machine<'_>, pid: usize) -> Result<Obj, String> {
        if let Some(&[tag, class, key, _, numel, ..]) = m.items(pid) {
            let numel = m.int(numel).and_then(|v| u64::try_from(v).ok());
            if let (Some("storage"), Obj::Global(class), Some(key), Some(numel)) =
                (m.str(tag), m.get(class), m.str(key), numel)
            {
                if let Err(e) = self.keys.check(key, class, numel) {
                    if self.reported.insert(key.to_owned()) {
                        self.ambiguous.push(e);
                    }
                }
            }
        }
        Ok(Obj::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl Policy for Nothing {
        fn allow(&mut self, _: &str) -> bool {
            false
        }
        fn call(&mut self, _: &mut Machine<'_>, _: &str, _: usize) -> Result<Obj, String> {
            Err("no calls".into())
        }
        fn persistent(&mut self, _: &mut Machine<'_>, _: usize) -> Result<Obj, String> {
            Err("no persistent ids".into())
        }
    }

    #[test]
    fn plain_data_loads() {
        // pickle.dumps({"a": [1, 2.5, "x"], "b": (True, None)}, protocol=2)
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x03eX\x01\x00\x00\x00bq\x04\x88N\x86q\x05u.";
        let (m, root) = load(p, &mut Nothing).unwrap();
        let Obj::Dict(entries) = m.get(root) else {
            panic!("{:?}", m.get(root))
        };
        assert_eq!(entries.len(), 2);
        let (k, v) = entries[0];
        assert_eq!(m.str(k), Some("a"));
        let items = m.items(v).unwrap();
        assert_eq!(m.get(items[1]), &Obj::Float(2.5));
        assert_eq!(m.str(items[2]), Some("x"));
    }

    #[test]
    fn a_global_is_refused_before_anything_uses_it() {
        // pickle.dumps of an object whose __reduce__ is (os.system, ("echo owned",)), protocol 2.
        let p = b"\x80\x02cposix\nsystem\nq\x00X\n\x00\x00\x00echo ownedq\x01\x85q\x02Rq\x03.";
        assert_eq!(
            load(p, &mut Nothing).unwrap_err(),
            PickleError::Refused("posix.system".into(), 2)
        );
        let found = scan_all(p, 1);
        assert_eq!(
            (found.globals, found.error),
            (vec!["posix.system".to_owned()], None)
        );
    }

    #[test]
    fn bytes_made_by_calls_are_capped() {
        // Protocol 2 writes bytes as _codecs.encode(text, "latin1"); a 256-character text
        // memoized and encoded again and again (9 bytes a time) would copy it without end.
        let mut p = b"\x80\x02c_codecs\nencode\nq\x00X\x00\x01\x00\x00".to_vec();
        p.extend("\u{ff}".repeat(128).as_bytes()); // 2 bytes each in UTF-8
        p.extend(b"q\x01X\x06\x00\x00\x00latin1q\x020");
        let once = [&p[..], b"h\x00h\x01h\x02\x86R."].concat();
        let (m, root) = load(&once, &mut Record::default()).unwrap();
        assert_eq!(m.bytes(root), Some(&[0xff; 128][..]));
        let again = [&p[..], &b"h\x00h\x01h\x02\x86R0".repeat(20), b"N."].concat();
        let err = scan_all(&again, 1).error.unwrap().to_string();
        assert!(err.contains("more than twice its size"), "{err}");
    }

    #[test]
    fn lengths_and_limits_are_checked_before_allocation() {
        // A 4 GiB string claimed by a 10-byte pickle.
        let p = b"\x80\x02X\xff\xff\xff\xff";
        assert!(matches!(
            load(p, &mut Nothing),
            Err(PickleError::Malformed(..))
        ));
        // A memo lookup of an unset entry, an empty stack, a stray mark.
        for p in [&b"\x80\x02h\x07."[..], b"\x80\x02.", b"\x80\x02(."] {
            assert!(
                matches!(load(p, &mut Nothing), Err(PickleError::Malformed(..))),
                "{p:?}"
            );
        }
        // Protocol-0 text opcodes and object constructors are not executed.
        assert!(matches!(
            load(b"(S'x'\ntR.", &mut Nothing),
            Err(PickleError::Malformed(..))
        ));
    }
}
