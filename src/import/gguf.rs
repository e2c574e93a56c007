//! GGUF files (llama.cpp) in, as weights-only artifacts.
//!
//! Every count and length is checked against the bytes left before anything is allocated for
//! it; every tensor must lie, aligned, inside the data section, and no two may overlap. Plain
//! tensors (F32, F16, BF16, F64, I8 to I64) keep their dtype, with the shape in NumPy order
//! (GGUF lists dimensions fastest first); quantized ones are kept as their bytes (a U8 tensor)
//! with their type and shape recorded in the `gguf.quantized` label. Metadata with a short
//! value becomes `gguf.<key>` labels (typed: `u32 42`, `str tiny-test`); the whole metadata
//! section is also kept, byte for byte, as the tensor `gguf.metadata`.
//!
//! A model cut by llama.cpp's gguf-split is read from its first split, which brings in the
//! others ([`read`]); `split.*` keys are not labels.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::source::{beside, invalid, open, Bytes, ImportError, MultiFile, SourceTensor};
use crate::format::{self, DType};
use crate::sys::Map;

/// Most metadata entries.
const MAX_KV: u64 = 1 << 20;
/// Most elements of one metadata array.
const MAX_ARRAY: u64 = 1 << 26;
/// Deepest nesting of metadata arrays.
const MAX_NESTING: usize = 4;
/// Longest metadata value kept as a label.
const MAX_LABEL_VALUE: usize = 1024;

/// Whether a file starts like GGUF.
pub fn looks_like(magic: &[u8]) -> bool {
    magic.starts_with(b"GGUF")
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(format!(
                "{n} bytes needed at byte {}, {left} left",
                self.pos
            ));
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u64()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("a string that is not UTF-8 near byte {}", self.pos))
    }
}

/// A metadata value rendered for a label, if it is short enough: `type value`.
fn value(c: &mut Cursor<'_>, kind: u32, depth: usize) -> Result<Option<String>, String> {
    let scalar =
        |c: &mut Cursor<'_>, kind: u32| -> Result<Option<(&'static str, String)>, String> {
            Ok(Some(match kind {
                0 => ("u8", c.take(1)?[0].to_string()),
                1 => ("i8", (c.take(1)?[0] as i8).to_string()),
                2 => (
                    "u16",
                    u16::from_le_bytes(c.take(2)?.try_into().expect("2")).to_string(),
                ),
                3 => (
                    "i16",
                    i16::from_le_bytes(c.take(2)?.try_into().expect("2")).to_string(),
                ),
                4 => ("u32", c.u32()?.to_string()),
                5 => ("i32", (c.u32()? as i32).to_string()),
                6 => (
                    "f32",
                    f32::from_le_bytes(c.take(4)?.try_into().expect("4")).to_string(),
                ),
                7 => ("bool", (c.take(1)?[0] != 0).to_string()),
                8 => ("str", c.string()?),
                10 => ("u64", c.u64()?.to_string()),
                11 => ("i64", (c.u64()? as i64).to_string()),
                12 => (
                    "f64",
                    f64::from_le_bytes(c.take(8)?.try_into().expect("8")).to_string(),
                ),
                9 => return Ok(None),
                other => return Err(format!("metadata type {other} is not a GGUF type")),
            }))
        };
    if kind != 9 {
        return Ok(scalar(c, kind)?.map(|(t, v)| format!("{t} {v}")));
    }
    if depth >= MAX_NESTING {
        return Err(format!("metadata arrays nested deeper than {MAX_NESTING}"));
    }
    let inner = c.u32()?;
    let count = c.u64()?;
    // Every element takes at least a byte: a count beyond the bytes left is a lie.
    if count > MAX_ARRAY || count > (c.data.len() - c.pos) as u64 {
        return Err(format!("a metadata array of {count} elements"));
    }
    let mut items = Vec::new();
    let mut len = 0;
    let mut kept = true;
    let mut type_name = "?";
    for _ in 0..count {
        let item = if inner == 9 {
            value(c, 9, depth + 1)?
        } else {
            scalar(c, inner)?.map(|(t, v)| {
                type_name = t;
                v
            })
        };
        match item {
            Some(v) if kept && len + v.len() < MAX_LABEL_VALUE => {
                len += v.len() + 2;
                items.push(if inner == 8 { format!("{v:?}") } else { v });
            }
            _ => kept = false,
        }
    }
    Ok(kept.then(|| format!("{type_name}[] [{}]", items.join(", "))))
}

/// How a GGML type is stored: a plain dtype, or blocks of (elements, bytes).
type Storage = Result<DType, (u64, u64)>;

/// The name of a GGML type and how it is stored.
fn ggml_type(t: u32) -> Option<(&'static str, Storage)> {
    Some(match t {
        0 => ("F32", Ok(DType::F32)),
        1 => ("F16", Ok(DType::F16)),
        2 => ("Q4_0", Err((32, 18))),
        3 => ("Q4_1", Err((32, 20))),
        6 => ("Q5_0", Err((32, 22))),
        7 => ("Q5_1", Err((32, 24))),
        8 => ("Q8_0", Err((32, 34))),
        9 => ("Q8_1", Err((32, 36))),
        10 => ("Q2_K", Err((256, 84))),
        11 => ("Q3_K", Err((256, 110))),
        12 => ("Q4_K", Err((256, 144))),
        13 => ("Q5_K", Err((256, 176))),
        14 => ("Q6_K", Err((256, 210))),
        15 => ("Q8_K", Err((256, 292))),
        24 => ("I8", Ok(DType::I8)),
        25 => ("I16", Ok(DType::I16)),
        26 => ("I32", Ok(DType::I32)),
        27 => ("I64", Ok(DType::I64)),
        28 => ("F64", Ok(DType::F64)),
        30 => ("BF16", Ok(DType::BF16)),
        _ => return None,
    })
}

/// The `split.*` keys of one file of a model that llama.cpp's gguf-split (or the `gguf`
/// package's writer) cut into several.
#[derive(Clone, Copy)]
struct Split {
    /// `split.no`: this file's place, from 0.
    no: u16,
    /// `split.count`: how many files.
    count: u16,
    /// `split.tensors.count`: the tensors in all of them.
    tensors: i32,
}

/// One GGUF file, read.
struct Parsed {
    tensors: Vec<SourceTensor>,
    /// `gguf.<key>` labels of its metadata (not `split.*`), without `gguf.quantized` and
    /// `gguf.version`, which [`read`] adds for the whole model.
    labels: BTreeMap<String, String>,
    /// Type and shape of each quantized tensor.
    quantized: BTreeMap<String, String>,
    version: u32,
    split: Option<Split>,
    /// Its metadata section, as the tensor `gguf.metadata`.
    metadata: SourceTensor,
}

/// Reads a GGUF file, and if it is the first split of a split model, the others: those named
/// as llama.cpp names them (`PREFIX-00002-of-00003.gguf`, ...) beside it. Each must say it is
/// the split its name says, of as many, and their tensors must add up to `split.tensors.count`.
/// `split.*` keys are not made labels; the metadata of the first split (where gguf-split puts
/// all of it) is `gguf.metadata`, and other keys in later splits become labels like the
/// first's (one key with two values is refused). A later split given alone is refused: the
/// first is the one that names them all.
pub fn read(path: &Path, map: Arc<Map>) -> Result<MultiFile, ImportError> {
    let len = map.len() as u64;
    let first = parse(path, map)?;
    // gguf-split's merged output says split.count 0; a model in one file may say 1.
    let split = match first.split {
        Some(s) if s.no >= s.count.max(1) => {
            return Err(split_error(
                path,
                format!("split.no is {} but split.count {}", s.no, s.count),
            ))
        }
        Some(s) if s.count > 1 => s,
        _ => return finish(path, vec![(first, path.to_path_buf(), len)]),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let (k, n) = (split.no + 1, split.count);
    if k > 1 {
        let first_name = split_name(&name)
            .filter(|&(_, at, of)| (at, of) == (k, n))
            .map(|(prefix, ..)| format!(", {}", split_file(prefix, 1, n)))
            .unwrap_or_default();
        return Err(split_error(
            path,
            format!(
                "split {k} of {n} of a split model: pass the first split{first_name}, which brings in the others"
            ),
        ));
    }
    let Some((prefix, 1, of)) = split_name(&name).filter(|&(_, _, of)| of == n) else {
        return Err(split_error(
            path,
            format!(
                "the first of {n} splits, but its name does not end in -00001-of-{n:05}.gguf, from which the others' names are made"
            ),
        ));
    };
    let mut parts = vec![(first, path.to_path_buf(), len)];
    for at in 2..=of {
        let sibling = beside(path, &split_file(prefix, at, of));
        let here = |why: String| split_error(&sibling, why);
        let opened = match open(&sibling) {
            Ok(o) => o,
            Err(ImportError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Err(here(format!(
                    "split {at} of {of} is missing ({name} is the first of {of})"
                )))
            }
            Err(e) => return Err(e),
        };
        if !looks_like(&opened.magic) {
            return Err(here(format!(
                "named as split {at} of {of} of {name}, but not a GGUF file"
            )));
        }
        let map = Map::new(&opened.file).map_err(|source| ImportError::Io {
            path: sibling.clone(),
            source,
        })?;
        let part = parse(&sibling, Arc::new(map))?;
        match part.split {
            None => {
                return Err(here(format!(
                    "no split.count: not split {at} of {of} of {name}"
                )))
            }
            Some(s) if s.count != of => {
                return Err(here(format!(
                    "split.count is {} here but {of} in {name}",
                    s.count
                )))
            }
            Some(s) if s.no + 1 != at => {
                return Err(here(format!(
                    "split.no is {} here, but as split {at} of {of} it must be {}",
                    s.no,
                    at - 1
                )))
            }
            Some(s) if s.tensors != split.tensors => {
                return Err(here(format!(
                    "split.tensors.count is {} here but {} in {name}",
                    s.tensors, split.tensors
                )))
            }
            Some(_) => {}
        }
        parts.push((part, sibling, opened.len));
    }
    let held: usize = parts.iter().map(|(p, ..)| p.tensors.len()).sum();
    if i64::try_from(held).ok() != Some(split.tensors as i64) {
        return Err(split_error(
            path,
            format!(
                "its {of} splits hold {held} tensors, but split.tensors.count says {}",
                split.tensors
            ),
        ));
    }
    finish(path, parts)
}

fn split_error(path: &Path, why: String) -> ImportError {
    invalid(path, format!("GGUF: {why}"))
}

/// The name llama.cpp gives split `at` (from 1) of `of`: `PREFIX-00002-of-00003.gguf`.
pub fn split_file(prefix: &str, at: u16, of: u16) -> String {
    format!("{prefix}-{at:05}-of-{of:05}.gguf")
}

/// A file name of the form [`split_file`] makes: its prefix, its place (from 1) and the count.
pub fn split_name(name: &str) -> Option<(&str, u16, u16)> {
    let stem = name.strip_suffix(".gguf")?;
    let (rest, of) = stem.rsplit_once("-of-")?;
    let (prefix, at) = rest.rsplit_once('-')?;
    let number = |s: &str| {
        (s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
    };
    let (at, of) = (number(at)?, number(of)?);
    (at >= 1 && at <= of && !prefix.is_empty()).then_some((prefix, at, of))
}

/// The model of one or more parsed files: their tensors, the first's metadata section, and
/// their labels with `gguf.quantized` (over all of them) and `gguf.version` (the first's).
fn finish(path: &Path, parts: Vec<(Parsed, PathBuf, u64)>) -> Result<MultiFile, ImportError> {
    let mut tensors = Vec::new();
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut quantized = BTreeMap::new();
    let mut files = Vec::with_capacity(parts.len());
    let mut version = None;
    let mut metadata = None;
    for (part, file, len) in parts {
        for (k, v) in part.labels {
            match labels.get(&k) {
                Some(old) if *old != v => {
                    return Err(split_error(
                        &file,
                        format!("metadata {k:?} is {v:?} here but {old:?} in an earlier split"),
                    ))
                }
                _ => {
                    labels.insert(k, v);
                }
            }
        }
        quantized.extend(part.quantized);
        tensors.extend(part.tensors);
        version.get_or_insert(part.version);
        metadata.get_or_insert(part.metadata);
        files.push((file, len));
    }
    if !quantized.is_empty() {
        let text = serde_json::to_string(&quantized).expect("strings serialize");
        if text.len() > format::MAX_TEXT_LEN {
            return Err(split_error(
                path,
                "too many quantized tensors to record their types in a label".into(),
            ));
        }
        labels.insert("gguf.quantized".into(), text);
    }
    labels.insert(
        "gguf.version".into(),
        format!("u32 {}", version.expect("at least one file")),
    );
    tensors.extend(metadata);
    Ok(MultiFile {
        tensors,
        labels,
        files,
    })
}

/// Reads one GGUF file.
fn parse(path: &Path, map: Arc<Map>) -> Result<Parsed, ImportError> {
    let bad = |why: String| invalid(path, format!("GGUF: {why}"));
    let mut c = Cursor { data: &map, pos: 4 };
    let version = c.u32().map_err(&bad)?;
    if !(2..=3).contains(&version) {
        return Err(bad(format!(
            "version {version}; nnsign reads versions 2 and 3"
        )));
    }
    let tensor_count = c.u64().map_err(&bad)?;
    let kv_count = c.u64().map_err(&bad)?;
    if tensor_count > format::MAX_TENSORS as u64 || kv_count > MAX_KV {
        return Err(bad(format!(
            "{tensor_count} tensors and {kv_count} metadata entries: over the limits"
        )));
    }
    let kv_start = c.pos;
    let mut labels = BTreeMap::new();
    let mut split = None;
    let mut alignment = 32u64;
    for _ in 0..kv_count {
        let key = c.string().map_err(&bad)?;
        let kind = c.u32().map_err(&bad)?;
        let at = c.pos;
        let v = value(&mut c, kind, 0).map_err(|e| bad(format!("metadata {key:?}: {e}")))?;
        // The split keys describe how the files were cut, which the artifact does not keep.
        if let Some(field) = key.strip_prefix("split.") {
            let (want, width) = match field {
                "no" | "count" => (2, 2),
                "tensors.count" => (5, 4),
                _ => continue,
            };
            if kind != want {
                return Err(bad(format!(
                    "{key} is of type {kind}, not {}",
                    if want == 2 { "u16" } else { "i32" }
                )));
            }
            let bytes = &map[at..at + width];
            let split = split.get_or_insert(Split {
                no: 0,
                count: 0,
                tensors: 0,
            });
            match field {
                "no" => split.no = u16::from_le_bytes([bytes[0], bytes[1]]),
                "count" => split.count = u16::from_le_bytes([bytes[0], bytes[1]]),
                _ => split.tensors = i32::from_le_bytes(bytes.try_into().expect("4")),
            }
            continue;
        }
        if key == "general.alignment" {
            if kind != 4 {
                return Err(bad("general.alignment is not a u32".into()));
            }
            alignment = u32::from_le_bytes(map[at..at + 4].try_into().expect("4")) as u64;
            if alignment == 0 || !alignment.is_power_of_two() || alignment > 1 << 20 {
                return Err(bad(format!(
                    "alignment {alignment} is not a power of two up to 1 MiB"
                )));
            }
        }
        // What a label cannot hold (control or invisible characters, a key over MAX_NAME_LEN)
        // stays in gguf.metadata only.
        if let Some(v) = v {
            let label = format!("gguf.{key}");
            if labels.len() < format::MAX_LABELS - 2 && format::check_label(&label, &v).is_ok() {
                labels.insert(label, v);
            }
        }
    }
    let kv_end = c.pos;
    let mut infos = Vec::with_capacity(tensor_count as usize);
    for _ in 0..tensor_count {
        let name = c.string().map_err(&bad)?;
        let n_dims = c.u32().map_err(&bad)?;
        if n_dims as usize > format::MAX_RANK {
            return Err(bad(format!("tensor {name:?} has {n_dims} dimensions")));
        }
        let dims = (0..n_dims)
            .map(|_| c.u64())
            .collect::<Result<Vec<u64>, _>>()
            .map_err(&bad)?;
        let kind = c.u32().map_err(&bad)?;
        let offset = c.u64().map_err(&bad)?;
        infos.push((name, dims, kind, offset));
    }
    let data_start = (c.pos as u64).next_multiple_of(alignment);
    let file_len = map.len() as u64;
    let mut tensors = Vec::with_capacity(infos.len() + 1);
    let mut quantized = BTreeMap::new();
    let mut spans = Vec::with_capacity(infos.len());
    for (name, dims, kind, offset) in infos {
        let at = |why: String| bad(format!("tensor {name:?}: {why}"));
        format::check_tensor_name(&name).map_err(|e| at(e.to_string()))?;
        let (type_name, t) = ggml_type(kind)
            .ok_or_else(|| at(format!("GGML type {kind} is not one nnsign knows")))?;
        let shape: Vec<u64> = dims.iter().rev().copied().collect();
        let numel = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| at("its size overflows".into()))?;
        let (dtype, stored_shape, len) = match t {
            Ok(dtype) => (
                dtype,
                shape.clone(),
                numel
                    .checked_mul(dtype.size())
                    .ok_or_else(|| at("its size overflows".into()))?,
            ),
            Err((block, bytes)) => {
                if dims.first().is_none_or(|d| d % block != 0) {
                    return Err(at(format!(
                        "its first dimension is not a multiple of {type_name}'s block of {block}"
                    )));
                }
                let len = numel / block * bytes;
                quantized.insert(name.clone(), format!("{type_name} {shape:?}"));
                (DType::U8, vec![len], len)
            }
        };
        if offset % alignment != 0 {
            return Err(at(format!(
                "offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        let start = data_start
            .checked_add(offset)
            .filter(|s| s.checked_add(len).is_some_and(|e| e <= file_len));
        let start = start.ok_or_else(|| {
            at(format!(
                "its {len} bytes at offset {offset} run past the end of the file"
            ))
        })?;
        spans.push((start, start + len, name.clone()));
        tensors.push(SourceTensor {
            name,
            dtype,
            shape: stored_shape,
            bytes: Bytes::Mapped(map.clone(), start as usize..(start + len) as usize),
            origin: path.into(),
        });
    }
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(bad(format!(
                "tensors {:?} and {:?} overlap",
                w[0].2, w[1].2
            )));
        }
    }
    let metadata = SourceTensor {
        name: "gguf.metadata".into(),
        dtype: DType::U8,
        shape: vec![(kv_end - kv_start) as u64],
        bytes: Bytes::Mapped(map.clone(), kv_start..kv_end),
        origin: path.into(),
    };
    Ok(Parsed {
        tensors,
        labels,
        quantized,
        version,
        split,
        metadata,
    })
}
