//! Reading models for `pack`: safetensors (one file or shards), NumPy `.npy` and `.npz`, ONNX
//! (graph and initializers, [`onnx`]) and PyTorch checkpoints and pickles of tensors
//! ([`torch`]).
//!
//! The format is recognised by content, never by extension. Every length in a header is checked
//! against the file before anything is allocated for it; nothing here can run code (pickled
//! object arrays are refused by name).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::{self, DType, MAX_TENSORS};
use crate::model::Graph;
use crate::sys::Map;

pub mod gguf;
pub mod keras;
pub mod onnx;
pub mod torch;

/// Largest `.npy` header accepted (numpy's own loader stops at 10,000 bytes by default).
pub const MAX_NPY_HEADER_LEN: usize = 65536;
/// Largest decompressed `.npz` member.
pub const MAX_NPZ_MEMBER_LEN: u64 = 16 << 30;
/// Largest ratio of decompressed to compressed size for a zip record over 1 MiB (`.npz`
/// members, Keras records). Weights compress far less than 10:1; deflate reaches about 1030:1
/// on constant bytes, which is what a zip bomb is made of. A real array of one repeated value
/// is refused too: store it uncompressed (`np.savez`, not `savez_compressed`).
pub const MAX_ZIP_RATIO: u64 = 200;

/// Most bytes reserved up front for a zip record (an `.npz` member, a Keras record) before any
/// of it has been read.
const PREALLOCATE_MAX: u64 = 64 << 20;

/// Why an input could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is none of the formats `pack` reads.
    #[error(
        "{0}: not a safetensors, .npy, .npz, ONNX, PyTorch, Keras or GGUF file (recognised by content, not by name)"
    )]
    UnknownFormat(PathBuf),
    /// The file is of a known format but malformed or unsupported.
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
    /// Two inputs hold a tensor of the same name.
    #[error("tensor {name:?} appears in both {first} and {second}; tensor names must be unique across inputs")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
}

/// Where a tensor's bytes are: a range of a mapped file, or an owned buffer.
#[derive(Clone)]
pub enum Bytes {
    Mapped(Arc<Map>, std::ops::Range<usize>),
    Owned(Arc<Vec<u8>>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map, range) => &map[range.clone()],
            Bytes::Owned(v) => v,
        }
    }
}

impl Bytes {
    /// Lets the pages of `range` (relative to these bytes) go once they have been copied.
    pub fn release(&self, range: std::ops::Range<usize>) {
        if let Bytes::Mapped(map, base) = self {
            map.release(base.start + range.start..base.start + range.end);
        }
    }
}

/// A tensor to pack: little-endian, C order, `bytes.len()` equal to its dtype times its shape.
#[derive(Clone)]
pub struct SourceTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub bytes: Bytes,
    /// The file it came from, for messages.
    pub origin: PathBuf,
}

impl SourceTensor {
    /// The tensor's entry in a table, as validation sees it (offset 0: not yet placed).
    pub fn info(&self) -> format::TensorInfo {
        format::TensorInfo {
            name: self.name.clone(),
            dtype: self.dtype,
            shape: self.shape.clone(),
            offset: 0,
            length: self.bytes.len() as u64,
        }
    }
}

/// What the inputs hold.
#[derive(Default)]
pub struct Imported {
    pub tensors: Vec<SourceTensor>,
    /// String metadata carried by the inputs (safetensors `__metadata__`, ONNX producer).
    pub labels: BTreeMap<String, String>,
    /// The architecture an input carried (an ONNX graph).
    pub arch: Option<Graph>,
}

/// How to import.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Take only the weights of a model file that also holds a graph (ONNX), leaving the graph.
    pub weights_only: bool,
}

fn invalid(path: &Path, why: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        path: path.into(),
        why: why.into(),
    }
}

/// Reads every input and merges them; a tensor name may appear only once over all of them.
pub fn import(paths: &[PathBuf]) -> Result<Imported, ImportError> {
    import_with(paths, Options::default())
}

/// [`import`] with options.
pub fn import_with(paths: &[PathBuf], options: Options) -> Result<Imported, ImportError> {
    let mut out = Imported::default();
    let mut origin: HashMap<String, PathBuf> = HashMap::new();
    for path in paths {
        let (tensors, labels, arch) = match import_weights(path, options)? {
            Found::Weights(t, l) => (t, l, None),
            Found::Model(m) => (m.tensors, m.labels, m.arch),
        };
        if let Some(arch) = arch {
            if out.arch.is_some() {
                return Err(invalid(
                    path,
                    "a second input with a graph; give one model and any weight files",
                ));
            }
            out.arch = Some(arch);
        }
        for t in tensors {
            if let Some(first) = origin.get(&t.name) {
                return Err(ImportError::Duplicate {
                    name: t.name,
                    first: first.clone(),
                    second: path.clone(),
                });
            }
            origin.insert(t.name.clone(), path.clone());
            out.tensors.push(t);
            if out.tensors.len() > MAX_TENSORS {
                return Err(invalid(
                    path,
                    format!("more than {MAX_TENSORS} tensors in all inputs"),
                ));
            }
        }
        for (k, v) in labels {
            // `nnsign.` keys in safetensors metadata are the provenance `unpack` recorded for an
            // earlier artifact; the new artifact records its own.
            if k.starts_with(format::RESERVED_LABEL_PREFIX) {
                continue;
            }
            match out.labels.get(&k) {
                Some(old) if *old != v => {
                    return Err(invalid(
                        path,
                        format!(
                            "__metadata__ key {k:?} is {v:?} here but {old:?} in an earlier input"
                        ),
                    ))
                }
                _ => {
                    out.labels.insert(k, v);
                }
            }
        }
    }
    Ok(out)
}

type One = (Vec<SourceTensor>, BTreeMap<String, String>);

/// What a file held.
enum Found {
    Weights(Vec<SourceTensor>, BTreeMap<String, String>),
    Model(onnx::OnnxModel),
}

fn import_weights(path: &Path, options: Options) -> Result<Found, ImportError> {
    let io = |source| ImportError::Io {
        path: path.into(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(invalid(path, "not a regular file"));
    }
    let mut magic = [0u8; 9];
    let n = read_up_to(&mut file, &mut magic).map_err(io)?;
    let magic = &magic[..n];
    if magic.starts_with(b"\x93NUMPY") {
        let bytes = std::fs::read(path).map_err(io)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let t = parse_npy(path, &name, bytes)?;
        Ok(Found::Weights(vec![t], BTreeMap::new()))
    } else if magic.starts_with(b"PK\x03\x04") || magic.starts_with(b"PK\x05\x06") {
        let names: Vec<String> = zip::ZipArchive::new(&file)
            .map(|z| {
                z.file_names()
                    .filter_map(|n| Some(n.ok()?.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if keras::is_keras(&names) {
            let file = File::open(path).map_err(io)?;
            let m = keras::read(path, file)?;
            return Ok(Found::Model(onnx::OnnxModel {
                tensors: m.tensors,
                arch: Some(m.arch),
                labels: m.labels,
            }));
        }
        if torch::is_checkpoint(&names) {
            let file = File::open(path).map_err(io)?;
            return Ok(Found::Weights(torch::read(path, file)?, BTreeMap::new()));
        }
        Ok(Found::Weights(read_npz(path, file)?, BTreeMap::new()))
    } else if n == 9 && magic[8] == b'{' {
        let (t, l) = read_safetensors(path, &file)?;
        Ok(Found::Weights(t, l))
    } else if magic.first() == Some(&0x80) {
        // A pickle: a legacy torch.save file, or a raw pickle of tensors if it names torch's
        // globals (any other is refused as what it is).
        let map = Map::new(&file).map_err(io)?;
        let tensors = if torch::is_legacy(magic) {
            torch::read_legacy(path, &map)?
        } else {
            torch::read_raw(path, &map)?
        };
        Ok(Found::Weights(tensors, BTreeMap::new()))
    } else if gguf::looks_like(magic) {
        let map = Arc::new(Map::new(&file).map_err(io)?);
        let (tensors, labels) = gguf::read(path, map)?;
        Ok(Found::Weights(tensors, labels))
    } else if onnx::looks_like(magic) {
        if meta.len() > onnx::MAX_ONNX_LEN {
            return Err(invalid(
                path,
                "over 2 GiB, protobuf's limit for an ONNX model",
            ));
        }
        let map = Map::new(&file).map_err(io)?;
        Ok(Found::Model(onnx::read(path, &map, options.weights_only)?))
    } else {
        Err(ImportError::UnknownFormat(path.into()))
    }
}

/// Reads a zip record to its end, but never more than `cap` + 1 bytes (so that a record longer
/// than its cap shows as such). `size`, what its header claims, only sizes the first
/// reservation, and at most [`PREALLOCATE_MAX`] of it: a header that lies gets no more memory
/// than the bytes that are really there. The caller compares the length with `size`.
pub(crate) fn read_record(record: impl Read, size: u64, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(size.min(PREALLOCATE_MAX) as usize);
    record.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_safetensors(path: &Path, file: &File) -> Result<One, ImportError> {
    let map = Arc::new(Map::new(file).map_err(|source| ImportError::Io {
        path: path.into(),
        source,
    })?);
    let (header_len, meta) = safetensors::SafeTensors::read_metadata(&map)
        .map_err(|e| invalid(path, format!("invalid safetensors file: {e}")))?;
    let data_start = 8 + header_len;
    let mut tensors = Vec::new();
    for (name, info) in meta.tensors() {
        let dtype_name = serde_json::to_value(info.dtype)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let dtype = DType::from_name(&dtype_name).ok_or_else(|| {
            invalid(
                path,
                format!("tensor {name:?} has dtype {dtype_name}, which nnsign does not store yet"),
            )
        })?;
        format::check_tensor_name(&name).map_err(|e| invalid(path, e.to_string()))?;
        let (start, end) = info.data_offsets;
        tensors.push(SourceTensor {
            name,
            dtype,
            shape: info.shape.iter().map(|&d| d as u64).collect(),
            bytes: Bytes::Mapped(map.clone(), data_start + start..data_start + end),
            origin: path.into(),
        });
    }
    let labels = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok((tensors, labels))
}

/// Parses a whole `.npy` file. Big-endian data is swapped to little-endian and Fortran-order
/// data is transposed to C order, so what is stored is always little-endian C order.
pub fn parse_npy(path: &Path, name: &str, bytes: Vec<u8>) -> Result<SourceTensor, ImportError> {
    let bad = |why: String| invalid(path, format!("{name}: {why}"));
    let (major, header_start) = match bytes.get(6) {
        Some(1) => (1, 10),
        Some(2) | Some(3) => (2, 12),
        Some(v) => return Err(bad(format!(".npy version {v} is not supported"))),
        None => return Err(bad("truncated .npy header".into())),
    };
    let header_len = match major {
        1 => bytes
            .get(8..10)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize),
        _ => bytes
            .get(8..12)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
    }
    .ok_or_else(|| bad("truncated .npy header".into()))?;
    // npyz allocates the declared header length before reading it: check it first.
    if header_len > MAX_NPY_HEADER_LEN || header_start + header_len > bytes.len() {
        return Err(bad(format!(
            "header length {header_len} is larger than the file or the limit of {MAX_NPY_HEADER_LEN}"
        )));
    }
    let header_text = &bytes[header_start..header_start + header_len];
    let mut depth = 0i32;
    for &c in header_text {
        depth += match c {
            b'(' | b'[' | b'{' => 1,
            b')' | b']' | b'}' => -1,
            _ => 0,
        };
        if depth > 4 {
            return Err(bad("header nests too deeply for a plain array".into()));
        }
    }
    let npy =
        npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(format!("invalid .npy header: {e}")))?;
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(bad(
            "structured or sub-array dtypes are not supported; save plain arrays".into(),
        ));
    };
    use npyz::TypeChar as C;
    let dtype =
        match (ts.type_char(), ts.size_field()) {
            (C::Bool, 1) => DType::Bool,
            (C::Int, 1) => DType::I8,
            (C::Int, 2) => DType::I16,
            (C::Int, 4) => DType::I32,
            (C::Int, 8) => DType::I64,
            (C::Uint, 1) => DType::U8,
            (C::Uint, 2) => DType::U16,
            (C::Uint, 4) => DType::U32,
            (C::Uint, 8) => DType::U64,
            (C::Float, 2) => DType::F16,
            (C::Float, 4) => DType::F32,
            (C::Float, 8) => DType::F64,
            (C::Object, _) => return Err(bad(
                "object array refused: loading it would unpickle (run) code; save numeric arrays"
                    .into(),
            )),
            _ => return Err(bad(format!("dtype {ts} is not supported"))),
        };
    let shape = npy.shape().to_vec();
    if shape.len() > format::MAX_RANK {
        return Err(bad(format!("more than {} dimensions", format::MAX_RANK)));
    }
    let fortran = matches!(npy.order(), npyz::Order::Fortran);
    let big_endian = ts.endianness() == npyz::Endianness::Big && dtype.size() > 1;
    let data_start = header_start + header_len;
    let expected =
        format::tensor_len(dtype, &shape).ok_or_else(|| bad("shape overflows".into()))?;
    let actual = (bytes.len() - data_start) as u64;
    if actual != expected {
        return Err(bad(format!(
            "holds {actual} data bytes, but {dtype} {shape:?} needs {expected}"
        )));
    }
    let mut data = bytes;
    data.drain(..data_start);
    if big_endian {
        for elem in data.chunks_exact_mut(dtype.size() as usize) {
            elem.reverse();
        }
    }
    if fortran && shape.len() > 1 {
        data = fortran_to_c(&data, &shape, dtype.size() as usize);
    }
    format::check_tensor_name(name).map_err(|e| invalid(path, e.to_string()))?;
    Ok(SourceTensor {
        name: name.to_owned(),
        dtype,
        shape,
        bytes: Bytes::Owned(Arc::new(data)),
        origin: path.into(),
    })
}

/// Reorders column-major elements into row-major order.
fn fortran_to_c(data: &[u8], shape: &[u64], elem: usize) -> Vec<u8> {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let count: usize = dims.iter().product();
    // Column-major strides, in elements.
    let mut strides = vec![1usize; dims.len()];
    for i in 1..dims.len() {
        strides[i] = strides[i - 1] * dims[i - 1];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut index = vec![0usize; dims.len()];
    for _ in 0..count {
        let src: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&data[src * elem..(src + 1) * elem]);
        // Advance the row-major multi-index, last axis fastest.
        for axis in (0..dims.len()).rev() {
            index[axis] += 1;
            if index[axis] < dims[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// Opens `file` as a zip archive and checks it with [`check_zip`] before any record is used.
pub(crate) fn open_zip<'a>(
    path: &Path,
    file: &'a File,
) -> Result<zip::ZipArchive<&'a File>, ImportError> {
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| invalid(path, format!("not a valid zip archive ({e})")))?;
    check_zip(path, file, &mut zip)?;
    Ok(zip)
}

/// Checks a zip archive before any record is used: the central directory lists as many records
/// as the reader kept (a name listed twice, where which copy counts is each reader's guess, is
/// refused), no record is encrypted, and each record's local header names it as the central
/// directory does (a mismatch shows different names to different tools).
pub(crate) fn check_zip(
    path: &Path,
    file: &File,
    zip: &mut zip::ZipArchive<&File>,
) -> Result<(), ImportError> {
    use std::os::unix::fs::FileExt;
    check_zip_records(path, file, zip.len())?;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| invalid(path, format!("zip record {i}: {e}")))?;
        let name = entry.name_raw().to_vec();
        if entry.encrypted() {
            return Err(invalid(
                path,
                format!(
                    "zip record {:?} is encrypted",
                    String::from_utf8_lossy(&name)
                ),
            ));
        }
        let mut header = [0u8; 30];
        file.read_exact_at(&mut header, entry.header_start())
            .map_err(|e| invalid(path, format!("zip record {i}: local header: {e}")))?;
        let len = u16::from_le_bytes([header[26], header[27]]) as usize;
        let mut local = vec![0u8; len];
        file.read_exact_at(&mut local, entry.header_start() + 30)
            .map_err(|e| invalid(path, format!("zip record {i}: local header: {e}")))?;
        if &header[..4] != b"PK\x03\x04" || local != name {
            return Err(invalid(
                path,
                format!(
                    "zip record {:?} is named {:?} in its local header: readers would disagree on what it is",
                    String::from_utf8_lossy(&name),
                    String::from_utf8_lossy(&local)
                ),
            ));
        }
    }
    Ok(())
}

fn check_zip_records(path: &Path, file: &File, kept: usize) -> Result<(), ImportError> {
    use std::os::unix::fs::FileExt;
    let io = |source| ImportError::Io {
        path: path.into(),
        source,
    };
    let len = file.metadata().map_err(io)?.len();
    // The end record (22 bytes) is followed by at most a 65535-byte comment.
    let tail_len = len.min(22 + 65535) as usize;
    let mut tail = vec![0u8; tail_len];
    file.read_exact_at(&mut tail, len - tail_len as u64)
        .map_err(io)?;
    let end = (tail.windows(4).rposition(|w| w == b"PK\x05\x06"))
        .filter(|&at| at + 22 <= tail.len())
        .ok_or_else(|| invalid(path, "no zip end record"))?;
    let mut listed = u16::from_le_bytes([tail[end + 10], tail[end + 11]]) as u64;
    if listed == 0xffff {
        // Zip64: the locator just before the end record gives the zip64 end record.
        let locator = end
            .checked_sub(20)
            .filter(|&l| &tail[l..l + 4] == b"PK\x06\x07");
        let locator =
            locator.ok_or_else(|| invalid(path, "a zip64 archive without its locator"))?;
        let at = u64::from_le_bytes(tail[locator + 8..locator + 16].try_into().expect("8 bytes"));
        let mut record = [0u8; 40];
        file.read_exact_at(&mut record, at).map_err(io)?;
        if &record[..4] != b"PK\x06\x06" {
            return Err(invalid(path, "a zip64 locator that points nowhere"));
        }
        listed = u64::from_le_bytes(record[32..40].try_into().expect("8 bytes"));
    }
    if listed != kept as u64 {
        return Err(invalid(
            path,
            format!("the zip directory lists {listed} records but {kept} distinct names: a record appears twice"),
        ));
    }
    Ok(())
}

fn read_npz(path: &Path, file: File) -> Result<Vec<SourceTensor>, ImportError> {
    let file_len = file
        .metadata()
        .map_err(|source| ImportError::Io {
            path: path.into(),
            source,
        })?
        .len();
    let mut zip = open_zip(path, &file)?;
    if zip.len() > MAX_TENSORS {
        return Err(invalid(path, format!("more than {MAX_TENSORS} members")));
    }
    let mut tensors: Vec<SourceTensor> = Vec::with_capacity(zip.len());
    let mut names = HashSet::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| invalid(path, format!("member {i}: {e}")))?;
        let member_name = member
            .name()
            .map_err(|e| invalid(path, format!("member {i}: {e}")))?
            .into_owned();
        if member.is_dir() {
            continue;
        }
        let Some(name) = member_name.strip_suffix(".npy") else {
            return Err(invalid(
                path,
                format!("member {member_name:?} is not a .npy array"),
            ));
        };
        // Both sizes come from the archive's headers: check them against the file and the caps
        // before trusting either, and never allocate more than what has actually been read.
        let size = member.size();
        let compressed = member.compressed_size().max(1);
        if compressed > file_len {
            return Err(invalid(
                path,
                format!("member {member_name:?} claims {compressed} compressed bytes, more than the whole file"),
            ));
        }
        if size > MAX_NPZ_MEMBER_LEN || (size > 1 << 20 && size / compressed > MAX_ZIP_RATIO) {
            return Err(invalid(
                path,
                format!("member {member_name:?} expands to {size} bytes from {compressed}, more than {MAX_ZIP_RATIO} times: refused as a zip bomb (store constant arrays uncompressed)"),
            ));
        }
        let bytes = read_record(member.by_ref(), size, size)
            .map_err(|e| invalid(path, format!("member {member_name:?}: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(invalid(
                path,
                format!("member {member_name:?} is not the size its header states"),
            ));
        }
        if !names.insert(name.to_owned()) {
            return Err(invalid(
                path,
                format!("member {member_name:?} appears twice"),
            ));
        }
        tensors.push(parse_npy(path, name, bytes)?);
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_becomes_c_order() {
        // np.asfortranarray(np.arange(6).reshape(2, 3)) stores 0 3 1 4 2 5.
        let data: Vec<u8> = [0u8, 3, 1, 4, 2, 5].to_vec();
        assert_eq!(fortran_to_c(&data, &[2, 3], 1), vec![0, 1, 2, 3, 4, 5]);
        // arange(24).reshape(2, 3, 4) in Fortran order: element (i, j, k) at i + 2j + 6k.
        let mut f = vec![0u8; 24];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    f[i + 2 * j + 6 * k] = (i * 12 + j * 4 + k) as u8;
                }
            }
        }
        assert_eq!(
            fortran_to_c(&f, &[2, 3, 4], 1),
            (0..24).collect::<Vec<u8>>()
        );
    }

    #[test]
    fn npy_header_bombs_are_refused_before_allocation() {
        let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = parse_npy(Path::new("x.npy"), "x", bytes).err().unwrap();
        assert!(
            err.to_string().contains("header length 4294967295"),
            "{err}"
        );
    }
}
