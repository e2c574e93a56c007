//! What every importer shares: the tensors they make ([`SourceTensor`]), their error, and the
//! readers that bound what a file can make them allocate (the first bytes of a file, a checked
//! zip archive, a zip record read whole).
//!
//! The format modules beside this one use only this module and the crate's lower layers; the
//! dispatcher (`import/mod.rs`) is the one place that knows them all.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::{self, DType};
use crate::model::Graph;
use crate::sys::Map;

/// Largest ratio of decompressed to compressed size for a zip record over 1 MiB (`.npz`
/// members, Keras records). Weights compress far less than 10:1; deflate reaches about 1030:1
/// on constant bytes, which is what a zip bomb is made of. A real array of one repeated value
/// is refused too: store it uncompressed (`np.savez`, not `savez_compressed`).
pub const MAX_ZIP_RATIO: u64 = 200;

/// Most bytes reserved up front for a zip record (an `.npz` member, a Keras record) before any
/// of it has been read.
pub const PREALLOCATE_MAX: u64 = 64 << 20;

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

/// [`ImportError::Invalid`]: the file at `path` is malformed or unsupported, and why.
pub(crate) fn invalid(path: &Path, why: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        path: path.into(),
        why: why.into(),
    }
}

/// Where a tensor's bytes are: a range of a mapped file, an owned buffer, or a buffer that
/// another owner keeps alive and in place for as long as this value lives (the Python
/// package's NumPy arrays, packed without a copy: `pack` copies each chunk out once, then
/// hashes and writes that copy).
#[derive(Clone)]
pub enum Bytes {
    Mapped(Arc<Map>, std::ops::Range<usize>),
    Owned(Arc<Vec<u8>>),
    Shared(Arc<dyn AsRef<[u8]> + Send + Sync>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map, range) => &map[range.clone()],
            Bytes::Owned(v) => v,
            Bytes::Shared(b) => (**b).as_ref(),
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
    /// The shard size that keeps the artifact cut about as the inputs were, when an input is a
    /// model in several files (a safetensors index naming two or more shards, GGUF splits): the
    /// largest file read, rounded up to a whole number of digest chunks
    /// ([`format::CHUNK_SIZE`]). `None` when every input is one file.
    pub suggested_shard_size: Option<u64>,
}

/// A model read from several files (the shards a safetensors index names, GGUF splits).
pub struct MultiFile {
    pub tensors: Vec<SourceTensor>,
    pub labels: BTreeMap<String, String>,
    /// The files that hold its tensors (the shards, the splits: not an index), in order, and
    /// their sizes.
    pub files: Vec<(PathBuf, u64)>,
}

/// The file `name` in the folder of `path` (the current folder for a bare file name). `name`
/// must be a plain file name ([`is_plain_name`]): opening the result then opens an entry of
/// that folder, as a path with no separator would.
pub fn beside(path: &Path, name: &str) -> PathBuf {
    debug_assert!(is_plain_name(name));
    path.parent().unwrap_or(Path::new("")).join(name)
}

/// Whether `name`, taken from a file's content, names an entry of one folder and nothing
/// else: not empty, not `.` or `..`, and with no `/`, `\` (a separator on Windows, where an
/// index may be read too) or NUL. An absolute path has a `/`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// A file opened for import, and its first bytes, by which its format is recognised.
pub struct Opened {
    pub file: File,
    /// Its size.
    pub len: u64,
    /// Its first 9 bytes (fewer if it is shorter).
    pub magic: Vec<u8>,
}

/// Opens `path` for import: a regular file (not a folder, a pipe or a device), its first bytes
/// read.
pub fn open(path: &Path) -> Result<Opened, ImportError> {
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
    Ok(Opened {
        file,
        len: meta.len(),
        magic: magic[..n].to_vec(),
    })
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

/// Whether a file starts like a zip archive (a local record, or the end record of an empty
/// archive).
pub fn is_zip(magic: &[u8]) -> bool {
    magic.starts_with(b"PK\x03\x04") || magic.starts_with(b"PK\x05\x06")
}

/// A zip archive whose records were checked by [`check_zip`], and the size of its file: what
/// a reader needs to bound each record before reading it.
pub struct Zip<'a> {
    pub archive: zip::ZipArchive<&'a File>,
    /// Bytes in the file: no record's compressed bytes can be more.
    pub file_len: u64,
}

impl Zip<'_> {
    /// The names of its records (those that are text).
    pub fn names(&self) -> Vec<String> {
        (self.archive.file_names())
            .filter_map(|n| Some(n.ok()?.into_owned()))
            .collect()
    }
}

/// Opens `file` as a zip archive and checks it with [`check_zip`] before any record is used.
pub fn open_zip<'a>(path: &Path, file: &'a File) -> Result<Zip<'a>, ImportError> {
    let file_len = file
        .metadata()
        .map_err(|source| ImportError::Io {
            path: path.into(),
            source,
        })?
        .len();
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| invalid(path, format!("not a valid zip archive ({e})")))?;
    check_zip(path, file, &mut archive)?;
    Ok(Zip { archive, file_len })
}

/// Whether a zip record of `size` bytes from `compressed` expands more than [`MAX_ZIP_RATIO`]
/// times (records up to 1 MiB are never counted as bombs).
pub fn over_zip_ratio(size: u64, compressed: u64) -> bool {
    size > 1 << 20 && size / compressed.max(1) > MAX_ZIP_RATIO
}

/// Reads a zip record to its end, but never more than `cap` + 1 bytes (so that a record longer
/// than its cap shows as such). `size`, what its header claims, only sizes the first
/// reservation, and at most [`PREALLOCATE_MAX`] of it: a header that lies gets no more memory
/// than the bytes that are really there. The caller compares the length with `size`.
pub fn read_record(record: impl Read, size: u64, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(size.min(PREALLOCATE_MAX) as usize);
    record.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Checks a zip archive before any record is used: the central directory lists as many records
/// as the reader kept (a name listed twice, where which copy counts is each reader's guess, is
/// refused), no record is encrypted, and each record's local header names it as the central
/// directory does (a mismatch shows different names to different tools).
pub fn check_zip(
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
