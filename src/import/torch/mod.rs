//! PyTorch checkpoints (`torch.save` zip archives) in, without executing them.
//!
//! The archive is checked before it is trusted: one top-level folder, only the records
//! `torch.save` writes, no duplicates, every record stored (not compressed) with a matching
//! CRC. Its `data.pkl` runs on [`pickle`] with exactly the globals PyTorch's own
//! weights-only loader needs to rebuild tensors and plain containers; any other global stops
//! it by name, and a storage key named twice must have one class and element count
//! ([`pickle::StorageKeys`]). Each tensor is then cut out of its storage record with its
//! offset and strides (so non-contiguous and Fortran-order tensors come out right, in C order),
//! byte-swapped if the archive is big-endian.
//!
//! The same machine reads legacy (pre-1.6) `torch.save` files and raw pickles of state dicts
//! (`pickle.dump(model.state_dict(), f)`), where each storage is pickled on its own as a
//! legacy `torch.save` stream in bytes.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use super::source::{invalid, Bytes, ImportError, SourceTensor, Zip};
use crate::format::{self, DType};

pub mod pickle;
use pickle::{Machine, Made, Obj, Policy, StorageData, StorageKeys};

/// Largest `data.pkl`: a state dict's pickle is small; its weights are separate records.
pub const MAX_PICKLE_LEN: u64 = 256 << 20;
/// Deepest nesting of containers followed when naming tensors.
const MAX_DEPTH: usize = 64;
/// Most bytes of tensors per byte of the file they come from. Tensors that share a storage
/// (tied weights) each copy it out; without a cap, a small file of many views of one storage
/// would claim any amount of memory.
pub const MAX_TENSOR_BYTES_PER_BYTE: u64 = 8;

/// The element type of a storage class, as `torch.save` names them.
fn storage_dtype(class: &str) -> Option<DType> {
    Some(match class.strip_prefix("torch.")? {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

/// The globals a state dict needs, as PyTorch's `weights_only` unpickler allows them.
pub fn allowed(global: &str) -> bool {
    matches!(
        global,
        "collections.OrderedDict"
            | "torch._utils._rebuild_tensor_v2"
            | "torch._utils._rebuild_parameter"
            | "torch.Size"
    ) || storage_dtype(global).is_some()
}

/// The globals a raw pickle of tensors adds: each storage pickles itself as a legacy
/// `torch.save` stream in bytes, which `_load_from_bytes` loads (and `_codecs.encode` makes
/// bytes at pickle protocol 2).
pub const RAW_GLOBALS: [&str; 2] = ["torch.storage._load_from_bytes", "_codecs.encode"];

/// Rebuilds tensors and containers, nothing else.
#[derive(Default)]
struct StateDict {
    /// In a raw pickle of tensors, how many more bytes the `torch.save` streams of its storages
    /// may take: at first the pickle's size, so that a stream loaded again and again (through
    /// the memo) cannot multiply the work. `None` elsewhere (checkpoints, and those streams
    /// themselves: nesting ends there).
    stream_budget: Option<usize>,
    /// Whether a global of torch's was named: a raw pickle that names none is not of tensors.
    named_torch: bool,
    /// Each storage key's class and element count, as its first persistent id gave them.
    keys: StorageKeys,
}

impl StateDict {
    /// The policy for a raw pickle of tensors, `data`.
    fn raw(data: &[u8]) -> Self {
        StateDict {
            stream_budget: Some(data.len()),
            ..StateDict::default()
        }
    }
}

impl Policy for StateDict {
    fn allow(&mut self, global: &str) -> bool {
        let ok = allowed(global) || (self.stream_budget.is_some() && RAW_GLOBALS.contains(&global));
        self.named_torch |= ok && global.starts_with("torch.");
        ok
    }

    fn call(&mut self, m: &mut Machine<'_>, func: &str, args: usize) -> Result<Obj, String> {
        let args = m.items(args).expect("REDUCE checked a tuple").to_vec();
        match func {
            "_codecs.encode" => (m.latin1(&args).map(Obj::Bytes))
                .ok_or_else(|| "takes text and \"latin1\" (as pickle writes bytes)".into()),
            "torch.storage._load_from_bytes" => {
                let [stream] = args.as_slice() else {
                    return Err("takes one argument, a torch.save stream in bytes".into());
                };
                let bytes = m.bytes(*stream).ok_or("its argument is not bytes")?;
                let left = self.stream_budget.expect("allowed with a budget only");
                self.stream_budget = Some(left.checked_sub(bytes.len()).ok_or(
                    "its torch.save streams add up to more bytes than the file holds (one loaded again and again)",
                )?);
                inline_storage(bytes, *stream)
            }
            "collections.OrderedDict" if args.is_empty() => Ok(Obj::Dict(Vec::new())),
            "torch.Size" => match args.as_slice() {
                [t] if m.items(*t).is_some() => Ok(m.get(*t).clone()),
                _ => Err("takes one tuple".into()),
            },
            "torch._utils._rebuild_parameter" => match args.as_slice() {
                [t, ..] if matches!(m.get(*t), Obj::Made(Made::Tensor { .. })) => {
                    Ok(m.get(*t).clone())
                }
                _ => Err("takes a tensor".into()),
            },
            "torch._utils._rebuild_tensor_v2" => {
                let [storage, offset, size, stride, ..] = args.as_slice() else {
                    return Err("takes storage, offset, size and stride".into());
                };
                if !matches!(m.get(*storage), Obj::Made(Made::Storage { .. })) {
                    return Err("its first argument is not a storage".into());
                }
                let dims = |i: usize, what: &str| -> Result<Vec<u64>, String> {
                    let items = m.items(i).ok_or(format!("its {what} is not a tuple"))?;
                    if items.len() > format::MAX_RANK {
                        return Err(format!(
                            "its {what} has more than {} dimensions",
                            format::MAX_RANK
                        ));
                    }
                    (items.iter())
                        .map(|&d| {
                            m.int(d)
                                .and_then(|v| u64::try_from(v).ok())
                                .ok_or(format!("its {what} holds a negative or non-integer value"))
                        })
                        .collect()
                };
                let (shape, strides) = (dims(*size, "size")?, dims(*stride, "stride")?);
                if shape.len() != strides.len() {
                    return Err("size and stride differ in length".into());
                }
                let offset = m
                    .int(*offset)
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or("its offset is not a non-negative integer")?;
                Ok(Obj::Made(Made::Tensor {
                    storage: *storage,
                    offset,
                    shape,
                    strides,
                }))
            }
            other => Err(format!(
                "{other} is not called with these arguments when rebuilding tensors"
            )),
        }
    }

    fn persistent(&mut self, m: &mut Machine<'_>, pid: usize) -> Result<Obj, String> {
        if self.stream_budget.is_some() {
            return Err("a raw pickle has none (pickle.load would refuse it)".into());
        }
        // ('storage', <storage class>, key, location, numel)
        let items = m.items(pid).ok_or("not a tuple")?.to_vec();
        // The legacy format adds a sixth item, a view of another storage, which is refused.
        let (tag, class, key, numel) = match items.as_slice() {
            [tag, class, key, _location, numel] => (tag, class, key, numel),
            [tag, class, key, _location, numel, view] if *m.get(*view) == Obj::None => {
                (tag, class, key, numel)
            }
            [.., _] if items.len() == 6 => {
                return Err("a storage view (legacy format) is not read".into())
            }
            _ => return Err("not a ('storage', type, key, location, numel) tuple".into()),
        };
        let class = match m.get(*class) {
            Obj::Global(g) if storage_dtype(g).is_some() => g.clone(),
            _ => return Err("its storage type is not a storage class".into()),
        };
        match (
            m.str(*tag),
            m.str(*key),
            m.int(*numel).and_then(|v| u64::try_from(v).ok()),
        ) {
            (Some("storage"), Some(key), Some(numel)) => {
                self.keys.check(key, &class, numel)?;
                Ok(Obj::Made(Made::Storage {
                    class,
                    numel,
                    data: StorageData::Key(key.to_owned()),
                }))
            }
            _ => Err("not a ('storage', type, key, location, numel) tuple".into()),
        }
    }
}

/// Runs a pickle as the raw-pickle reader does (the checkpoint reader's globals, and storages
/// pickled on their own) and names the tensors it finds (for the fuzz target; [`read`] and
/// [`read_raw`] are the whole readers).
pub fn load_pickle(data: &[u8]) -> Result<Vec<String>, String> {
    let (m, root) = load_whole(data, &mut StateDict::raw(data))?;
    let mut found = Vec::new();
    collect(&m, root, String::new(), 0, &mut HashSet::new(), &mut found)?;
    Ok(found.into_iter().map(|(n, _)| n).collect())
}

/// Runs the pickle `data` under `policy`; it must end where the pickle ends: bytes after it
/// would be a second pickle, which a loop of `pickle.load` calls runs.
fn load_whole<'a>(data: &'a [u8], policy: &mut StateDict) -> Result<(Machine<'a>, usize), String> {
    let (m, root) = pickle::load(data, policy).map_err(|e| e.to_string())?;
    if m.consumed() != data.len() {
        return Err(format!(
            "{} bytes follow the pickle's end (at byte {}): something hides after the state dict",
            data.len() - m.consumed(),
            m.consumed()
        ));
    }
    Ok((m, root))
}

/// The first pickle of a legacy (pre-1.6, non-zip) `torch.save` file: protocol 2, the magic
/// number 0x1950a86a20f9469cfc6c as a 10-byte LONG1, STOP.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";

/// The pickles of a legacy `torch.save` stream after its magic number: protocol version,
/// system info, the object, the storage keys.
pub const LEGACY_PICKLES: usize = 4;

/// What follows the magic number of a legacy `torch.save` file, if `bytes` is one.
pub fn legacy_body(bytes: &[u8]) -> Option<&[u8]> {
    bytes.strip_prefix(LEGACY_MAGIC)
}

/// Whether a file starts like a legacy `torch.save` file.
pub fn is_legacy(magic: &[u8]) -> bool {
    magic.starts_with(&LEGACY_MAGIC[..LEGACY_MAGIC.len().min(magic.len())]) && magic.len() >= 4
}

/// Plain data only: no global at all.
struct Plain;

impl Policy for Plain {
    fn allow(&mut self, _: &str) -> bool {
        false
    }
    fn call(&mut self, _: &mut Machine<'_>, _: &str, _: usize) -> Result<Obj, String> {
        Err("no calls in plain data".into())
    }
    fn persistent(&mut self, _: &mut Machine<'_>, _: usize) -> Result<Obj, String> {
        Err("no persistent ids in plain data".into())
    }
}

/// A legacy `torch.save` stream, read: its object, and where each storage's bytes are.
struct Legacy<'a> {
    object: Machine<'a>,
    root: usize,
    storages: HashMap<String, std::ops::Range<usize>>,
}

/// Reads a legacy (pre-1.6) `torch.save` stream: five pickles (magic number, protocol version,
/// system info, the object, the storage keys), then each storage as an 8-byte element count
/// and its bytes, to the end of `bytes`, little-endian whatever the machine that wrote them
/// (torch's `THPStorage_writeFileRaw`: the system info's `little_endian` only records the
/// machine). Each pickle runs on the same machine as the zip format's; the object with no
/// storage pickled on its own.
fn legacy(bytes: &[u8]) -> Result<Legacy<'_>, String> {
    if !bytes.starts_with(LEGACY_MAGIC) {
        return Err("it does not start with torch's magic number".into());
    }
    let mut at = LEGACY_MAGIC.len();
    let (m, root) =
        pickle::load(&bytes[at..], &mut Plain).map_err(|e| format!("protocol version: {e}"))?;
    at += m.consumed();
    if m.int(root) != Some(1001) {
        return Err("protocol version is not 1001".into());
    }
    // System info: {"protocol_version": .., "little_endian": bool, "type_sizes": {..}}.
    let (m, _) = pickle::load(&bytes[at..], &mut Plain).map_err(|e| format!("system info: {e}"))?;
    at += m.consumed();
    let (object, root) = pickle::load(&bytes[at..], &mut StateDict::default())
        .map_err(|e| format!("the object: {e}"))?;
    at += object.consumed();
    let (m, list) =
        pickle::load(&bytes[at..], &mut Plain).map_err(|e| format!("storage keys: {e}"))?;
    at += m.consumed();
    let keys: Vec<String> = (m.items(list))
        .ok_or("the storage keys are not a list")?
        .iter()
        .map(|&k| (m.str(k).map(str::to_owned)).ok_or("a storage key is not text"))
        .collect::<Result<_, _>>()?;
    // The storages, in the keys' order: each an element count, then its elements.
    let sizes = storage_sizes(&object);
    let mut storages = HashMap::new();
    for key in keys {
        let elem = *(sizes.get(&key))
            .ok_or_else(|| format!("storage {key:?} is listed but no tensor uses it"))?;
        let count = bytes
            .get(at..at + 8)
            .ok_or_else(|| format!("storage {key:?}: the stream ends first"))?;
        let count = u64::from_le_bytes(count.try_into().expect("8"));
        let len = count
            .checked_mul(elem)
            .filter(|&l| l <= (bytes.len() - at - 8) as u64)
            .ok_or_else(|| {
                format!("storage {key:?}: {count} elements run past the end of the stream")
            })?;
        let data = at + 8..at + 8 + len as usize;
        if storages.insert(key.clone(), data).is_some() {
            return Err(format!("storage {key:?} is listed twice"));
        }
        at += 8 + len as usize;
    }
    if at != bytes.len() {
        return Err(format!(
            "{} bytes follow the last storage",
            bytes.len() - at
        ));
    }
    Ok(Legacy {
        object,
        root,
        storages,
    })
}

/// Reads a legacy (pre-1.6) `torch.save` file (the layout is described in the `legacy` module).
pub fn read_legacy(path: &Path, bytes: &[u8]) -> Result<Vec<SourceTensor>, ImportError> {
    let l = legacy(bytes).map_err(|e| invalid(path, format!("legacy torch.save file: {e}")))?;
    tensors_of(path, bytes.len(), &l.object, l.root, false, |key| {
        (l.storages.get(key)).and_then(|r| bytes.get(r.clone()))
    })
}

/// A storage pickled on its own (`torch.storage._load_from_bytes`): `stream`, the bytes object
/// at `at`, is a whole legacy `torch.save` stream whose object is the storage. Its bytes stay
/// where they are, in that object.
fn inline_storage(stream: &[u8], at: usize) -> Result<Obj, String> {
    let l = legacy(stream).map_err(|e| format!("its torch.save stream: {e}"))?;
    let Obj::Made(Made::Storage {
        class,
        numel,
        data: StorageData::Key(key),
    }) = l.object.get(l.root)
    else {
        return Err("its torch.save stream holds something other than a storage".into());
    };
    let range = (l.storages.get(key).cloned())
        .ok_or_else(|| format!("its torch.save stream does not list storage {key:?}"))?;
    Ok(Obj::Made(Made::Storage {
        class: class.clone(),
        numel: *numel,
        data: StorageData::Inline { bytes: at, range },
    }))
}

/// Reads a raw pickle of tensors, as `pickle.dump(model.state_dict(), f)` writes it: each
/// tensor's storage is pickled on its own, as a legacy `torch.save` stream in bytes (PyTorch's
/// `TypedStorage.__reduce__`), read as [`read_legacy`] reads a file. A pickle that names none of
/// torch's globals is refused as what it is.
pub fn read_raw(path: &Path, bytes: &[u8]) -> Result<Vec<SourceTensor>, ImportError> {
    let mut policy = StateDict::raw(bytes);
    let loaded = load_whole(bytes, &mut policy);
    if !policy.named_torch {
        return Err(invalid(path, "a raw pickle: unpickling runs whatever it names, and nnsign reads only pickles of PyTorch tensors; `nnsign scan` lists what it would import"));
    }
    let (m, root) = loaded.map_err(|e| invalid(path, format!("raw pickle of tensors: {e}")))?;
    tensors_of(path, bytes.len(), &m, root, false, |_| None)
}

/// The element size of every storage the object refers to, by key.
fn storage_sizes(m: &Machine<'_>) -> HashMap<String, u64> {
    (0..m.objects())
        .filter_map(|i| match m.get(i) {
            Obj::Made(Made::Storage {
                class,
                data: StorageData::Key(key),
                ..
            }) => Some((key.clone(), storage_dtype(class)?.size())),
            _ => None,
        })
        .collect()
}

/// Whether a zip archive is a `torch.save` checkpoint: it has a `<folder>/data.pkl`.
pub fn is_checkpoint(names: &[String]) -> bool {
    names.iter().any(|n| {
        n.split_once('/')
            .is_some_and(|(_, rest)| rest == "data.pkl")
    })
}

/// The records of a checkpoint, checked: name (without the folder) to bytes.
fn records(path: &Path, zip: Zip<'_>) -> Result<HashMap<String, Vec<u8>>, ImportError> {
    let bad = |why: String| invalid(path, why);
    let Zip {
        archive: mut zip,
        file_len: size,
    } = zip;
    let mut prefix: Option<String> = None;
    let mut out = HashMap::new();
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("zip record {i}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| bad(format!("zip record {i}: {e}")))?
            .into_owned();
        let (folder, rest) = name.split_once('/').ok_or_else(|| {
            bad(format!(
                "record {name:?} is not inside the archive's folder"
            ))
        })?;
        if matches!(folder, "" | "." | "..") {
            return Err(bad(format!("record {name:?} is not inside a plain folder")));
        }
        if prefix.get_or_insert_with(|| folder.to_owned()) != folder {
            return Err(bad(format!(
                "records in two folders, {:?} and {folder:?}: not one checkpoint",
                prefix.unwrap_or_default()
            )));
        }
        let expected = matches!(
            rest,
            "data.pkl"
                | "byteorder"
                | "version"
                | ".data/version"
                | ".data/serialization_id"
                | ".format_version"
                | ".storage_alignment"
        ) || rest
            .strip_prefix("data/")
            .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()));
        if !expected {
            return Err(bad(format!("unexpected record {name:?} (a checkpoint holds data.pkl, data/<n>, byteorder and version records)")));
        }
        if entry.compression() != zip::CompressionMethod::Stored {
            return Err(bad(format!(
                "record {name:?} is compressed; torch.save stores records"
            )));
        }
        total = total.saturating_add(entry.size());
        if total > size || (rest == "data.pkl" && entry.size() > MAX_PICKLE_LEN) {
            return Err(bad(format!(
                "record {name:?} is larger than the archive allows"
            )));
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        // Reading to the end checks the record's CRC.
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("record {name:?}: {e}")))?;
        if out.insert(rest.to_owned(), bytes).is_some() {
            return Err(bad(format!("record {name:?} appears twice")));
        }
    }
    Ok(out)
}

/// The tensors of a `torch.save` checkpoint (opened and checked by [`open_zip`]), named by their
/// keys (nested dicts joined by `.`).
///
/// [`open_zip`]: super::source::open_zip
pub fn read(path: &Path, zip: Zip<'_>) -> Result<Vec<SourceTensor>, ImportError> {
    let bad = |why: String| invalid(path, why);
    let records = records(path, zip)?;
    let big_endian = match records.get("byteorder").map(|b| b.as_slice()) {
        None | Some(b"little") => false,
        Some(b"big") => true,
        Some(other) => {
            return Err(bad(format!(
                "byteorder record {:?}",
                String::from_utf8_lossy(other)
            )))
        }
    };
    let pkl = records
        .get("data.pkl")
        .ok_or_else(|| bad("no data.pkl record".into()))?;
    let (m, root) =
        load_whole(pkl, &mut StateDict::default()).map_err(|e| bad(format!("data.pkl: {e}")))?;
    let len = records.values().map(Vec::len).sum();
    tensors_of(path, len, &m, root, big_endian, |key| {
        records.get(&format!("data/{key}")).map(Vec::as_slice)
    })
}

/// The tensors under `root`, cut from their storages: those inside the pickle, and those
/// `storages` gives by key (in the byte order `big_endian` says; those inside the pickle are
/// little-endian), out of `len` bytes in all.
fn tensors_of<'s>(
    path: &Path,
    len: usize,
    m: &Machine<'_>,
    root: usize,
    big_endian: bool,
    storages: impl Fn(&str) -> Option<&'s [u8]>,
) -> Result<Vec<SourceTensor>, ImportError> {
    let bad = |why: String| invalid(path, why);
    let mut found = Vec::new();
    collect(m, root, String::new(), 0, &mut HashSet::new(), &mut found).map_err(&bad)?;
    if found.is_empty() {
        return Err(bad("no tensors in the checkpoint".into()));
    }
    let mut tensors = Vec::with_capacity(found.len());
    let mut left = MAX_TENSOR_BYTES_PER_BYTE.saturating_mul(len as u64);
    for (name, t) in found {
        let at = |why: String| bad(format!("tensor {name:?}: {why}"));
        format::check_tensor_name(&name).map_err(|e| at(e.to_string()))?;
        let Obj::Made(Made::Tensor {
            storage,
            offset,
            shape,
            strides,
        }) = m.get(t)
        else {
            unreachable!("collected tensors")
        };
        let Obj::Made(Made::Storage { class, numel, data }) = m.get(*storage) else {
            unreachable!("checked when rebuilt")
        };
        let dtype = storage_dtype(class).expect("checked when loaded");
        let size = dtype.size() as usize;
        let (data, big_endian, what) = match data {
            StorageData::Key(key) => (
                storages(key)
                    .ok_or_else(|| at(format!("its storage record data/{key} is missing")))?,
                big_endian,
                format!("data/{key}"),
            ),
            StorageData::Inline { bytes, range } => (
                (m.bytes(*bytes).and_then(|b| b.get(range.clone())))
                    .expect("a range of a bytes object, checked when the storage was read"),
                false,
                "pickled with it".to_owned(),
            ),
        };
        if (data.len() as u64) != numel.saturating_mul(size as u64) {
            return Err(at(format!(
                "storage {what} holds {} bytes, {numel} {dtype} elements need {}",
                data.len(),
                numel.saturating_mul(size as u64)
            )));
        }
        let mut bytes = gather(data, size, *offset, shape, strides, *numel).map_err(&at)?;
        left = left.checked_sub(bytes.len() as u64).ok_or_else(|| {
            at(format!("the tensors so far add up to more than {MAX_TENSOR_BYTES_PER_BYTE} times the file's {len} bytes (views of one storage, copied again and again)"))
        })?;
        if big_endian && size > 1 {
            bytes.chunks_mut(size).for_each(<[u8]>::reverse);
        }
        tensors.push(SourceTensor {
            name,
            dtype,
            shape: shape.clone(),
            bytes: Bytes::Owned(bytes.into()),
            origin: path.into(),
        });
    }
    Ok(tensors)
}

/// The elements of a strided view of a storage of `numel` elements of `size` bytes, in C order;
/// every element the view reaches must lie inside the storage.
fn gather(
    data: &[u8],
    size: usize,
    offset: u64,
    shape: &[u64],
    strides: &[u64],
    numel: u64,
) -> Result<Vec<u8>, String> {
    let count = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or("its size overflows")?;
    if count == 0 {
        return Ok(Vec::new());
    }
    // A view with more elements than its storage repeats elements (a stride-0 expansion):
    // materialized, a few bytes of pickle would claim any amount of memory.
    if count > numel {
        return Err(format!(
            "its view has {count} elements, more than its storage's {numel} (an expanded view): re-save it with .contiguous()"
        ));
    }
    let last = (shape.iter().zip(strides))
        .try_fold(offset, |a, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| a.checked_add(x))
        })
        .ok_or("its strides overflow")?;
    if last >= numel {
        return Err(format!("its view (offset {offset}, size {shape:?}, stride {strides:?}) reaches element {last} of a storage of {numel}"));
    }
    let mut out = Vec::with_capacity(count as usize * size);
    let mut index = vec![0u64; shape.len()];
    for _ in 0..count {
        let at = offset + index.iter().zip(strides).map(|(i, s)| i * s).sum::<u64>();
        let at = at as usize * size;
        out.extend_from_slice(&data[at..at + size]);
        for ax in (0..shape.len()).rev() {
            index[ax] += 1;
            if index[ax] < shape[ax] {
                break;
            }
            index[ax] = 0;
        }
    }
    Ok(out)
}

/// Finds the tensors under object `i`, named by the path of keys to them.
fn collect(
    m: &Machine<'_>,
    i: usize,
    name: String,
    depth: usize,
    seen: &mut HashSet<usize>,
    out: &mut Vec<(String, usize)>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("containers nested more than {MAX_DEPTH} deep"));
    }
    let join = |k: &str| {
        if name.is_empty() {
            k.to_owned()
        } else {
            format!("{name}.{k}")
        }
    };
    match m.get(i) {
        Obj::Made(Made::Tensor { .. }) => {
            if name.is_empty() {
                return Err("a bare tensor; nnsign reads tensors by name, from a dict".into());
            }
            out.push((name, i));
        }
        Obj::Dict(entries) => {
            if !seen.insert(i) {
                return Ok(()); // a dict reached twice (or through itself) is read once
            }
            for &(k, v) in entries {
                let key = match m.get(k) {
                    Obj::Str(s) => s.clone(),
                    Obj::Int(n) => n.to_string(),
                    _ => continue,
                };
                collect(m, v, join(&key), depth + 1, seen, out)?;
            }
        }
        Obj::List(items) | Obj::Tuple(items) => {
            if !seen.insert(i) {
                return Ok(());
            }
            for (k, &v) in items.iter().enumerate() {
                collect(m, v, join(&k.to_string()), depth + 1, seen, out)?;
            }
        }
        _ => {} // numbers, strings, None: metadata a state dict may hold
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The persistent id `('storage', torch.<class>, "0", "cpu", numel)`.
    fn storage_pid(class: &str, numel: u8) -> Vec<u8> {
        let tuple: [&[u8]; 5] = [
            b"(X\x07\x00\x00\x00storagectorch\n",
            class.as_bytes(),
            b"\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK",
            &[numel],
            b"tQ",
        ];
        tuple.concat()
    }

    #[test]
    fn a_storage_key_used_with_two_types_or_sizes_is_refused() {
        let float = storage_pid("FloatStorage", 16);
        for (second, message) in [
            (
                storage_pid("DoubleStorage", 8),
                "storage \"0\" is used as FloatStorage and as DoubleStorage; torch.load would read it as one type, so its values are ambiguous",
            ),
            (
                storage_pid("FloatStorage", 8),
                "storage \"0\" is used with 16 elements and with 8; torch.load would read it at one size, so its values are ambiguous",
            ),
            (float.clone(), ""),
        ] {
            // A list of the two storages, as a checkpoint's data.pkl would name them.
            let p = [&b"\x80\x02]("[..], &float, &second, b"e."].concat();
            let loaded = load_whole(&p, &mut StateDict::default());
            match loaded {
                Err(e) => assert!(!message.is_empty() && e.contains(message), "{e}"),
                Ok(_) => assert!(message.is_empty(), "{message}"),
            }
            // The scanner names the same, once.
            let found = pickle::scan_all(&p, 1).ambiguous;
            assert_eq!(found.len(), usize::from(!message.is_empty()), "{found:?}");
            assert!(found.iter().all(|f| f == message), "{found:?}");
        }
    }

    #[test]
    fn strided_views_come_out_in_c_order() {
        // arange(1, 25) stored Fortran-order as [2, 3, 4] with strides (1, 2, 6).
        let data: Vec<u8> = (0..24).map(|i| i as u8).collect();
        let fortran_storage: Vec<u8> = {
            // element (i, j, k) of the C-order array lives at i + 2j + 6k
            let mut s = vec![0u8; 24];
            for i in 0..2 {
                for j in 0..3 {
                    for k in 0..4 {
                        s[i + 2 * j + 6 * k] = data[i * 12 + j * 4 + k];
                    }
                }
            }
            s
        };
        let got = gather(&fortran_storage, 1, 0, &[2, 3, 4], &[1, 2, 6], 24).unwrap();
        assert_eq!(got, data);
        // An offset and a stride that skip: every other element from the third.
        assert_eq!(gather(&data, 1, 2, &[3], &[2], 24).unwrap(), vec![2, 4, 6]);
        // A view reaching past the storage is refused.
        assert!(gather(&data, 1, 20, &[3], &[2], 24).is_err());
        assert!(gather(&data, 1, 0, &[2, u64::MAX], &[1, u64::MAX], 24).is_err());
    }
}
