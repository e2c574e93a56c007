//! Reading models for `pack`: the dispatcher. Each input's format is recognised by content,
//! never by extension, and read by its module: [`safetensors`] (files, or a Hugging Face
//! index and the shards it names), NumPy `.npy`
//! and `.npz` ([`npy`]), ONNX (graph and initializers, [`onnx`]), Keras 3 ([`keras`]), PyTorch
//! checkpoints and pickles of tensors ([`torch`]) and GGUF ([`gguf`], one file or splits); the inputs are then
//! merged, each tensor name once. [`data`] reads the arrays a model runs on.
//!
//! What the format modules share is in [`source`]; they use nothing else of this module, nor
//! each other. Every length in a header is checked against the file before anything is
//! allocated for it, and nothing here can run code (pickled object arrays are refused by name).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::{self, CHUNK_SIZE, MAX_TENSORS};
use crate::sys::Map;

pub mod data;
pub mod gguf;
pub mod keras;
pub mod npy;
pub mod onnx;
pub mod safetensors;
pub mod source;
pub mod torch;

use source::{invalid, open_zip, Opened};
pub use source::{Bytes, ImportError, Imported, MultiFile, SourceTensor};

/// How to import.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Take only the weights of a model file that also holds a graph (ONNX), leaving the graph.
    pub weights_only: bool,
}

/// Reads every input and merges them; a tensor name may appear only once over all of them.
pub fn import(paths: &[PathBuf]) -> Result<Imported, ImportError> {
    import_with(paths, Options::default())
}

/// [`import`] with options.
///
/// An input may bring in other files: a safetensors index its shards, the first GGUF split the
/// others. A file brought in so is not read again if it is also given (`pack model-*.gguf`;
/// later GGUF splits given before their first wait for it); one given, and read alone, before
/// the input that brings it in is refused, naming both.
pub fn import_with(paths: &[PathBuf], options: Options) -> Result<Imported, ImportError> {
    let mut out = Imported::default();
    let mut origin: HashMap<String, PathBuf> = HashMap::new();
    let ids: Vec<Option<FileId>> = paths.iter().map(|p| file_id(p)).collect();
    // The files read as part of a model in several files, and the input that brought them in;
    // the files read as inputs of their own.
    let mut brought: HashMap<FileId, &Path> = HashMap::new();
    let mut alone: HashMap<FileId, &Path> = HashMap::new();
    let (mut largest, mut several) = (0u64, false);
    let (now, later): (Vec<usize>, Vec<usize>) =
        (0..paths.len()).partition(|&i| !waits_for_first_split(&paths[i], &ids));
    for i in now.into_iter().chain(later) {
        let path = &paths[i];
        if ids[i].is_some_and(|id| brought.contains_key(&id)) {
            continue;
        }
        let (tensors, labels, arch) = match import_weights(path, options)? {
            (Found::Weights(t, l), len) => {
                largest = largest.max(len);
                ids[i].map(|id| alone.insert(id, path));
                (t, l, None)
            }
            (Found::Model(m), len) => {
                largest = largest.max(len);
                ids[i].map(|id| alone.insert(id, path));
                (m.tensors, m.labels, m.arch)
            }
            (Found::Files(m), _) => {
                several |= m.files.len() > 1;
                for (file, len) in &m.files {
                    largest = largest.max(*len);
                    let Some(id) = file_id(file) else { continue };
                    if let Some(given) = alone.get(&id) {
                        return Err(invalid(
                            given,
                            format!(
                                "given before {}, which brings it in too; give {} alone, or first",
                                path.display(),
                                path.display()
                            ),
                        ));
                    }
                    brought.insert(id, path);
                }
                (m.tensors, m.labels, None)
            }
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
                    second: t.origin,
                });
            }
            origin.insert(t.name.clone(), t.origin.clone());
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
    // As many shards of about the size of the input files: each holds what one file held,
    // give or take the tensors that sort across a boundary.
    out.suggested_shard_size = several.then(|| largest.div_ceil(CHUNK_SIZE).max(1) * CHUNK_SIZE);
    Ok(out)
}

/// A file, whatever the path it was reached by: its device and inode.
type FileId = (u64, u64);

fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether `path` is named as a later GGUF split (`PREFIX-00002-of-00003.gguf`) and the file
/// named as its first split is among the inputs (`ids`): the first, when read, brings it in.
fn waits_for_first_split(path: &Path, ids: &[Option<FileId>]) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let Some((prefix, at, of)) = gguf::split_name(&name) else {
        return false;
    };
    let first = source::beside(path, &gguf::split_file(prefix, 1, of));
    at > 1 && file_id(&first).is_some_and(|id| ids.contains(&Some(id)))
}

/// What a file held.
enum Found {
    Weights(Vec<SourceTensor>, BTreeMap<String, String>),
    /// A model that the file and others beside it hold.
    Files(MultiFile),
    Model(onnx::OnnxModel),
}

/// Reads one input: what it held, and its size.
fn import_weights(path: &Path, options: Options) -> Result<(Found, u64), ImportError> {
    let opened = source::open(path)?;
    let len = opened.len;
    Ok((read_opened(path, opened, options)?, len))
}

fn read_opened(path: &Path, opened: Opened, options: Options) -> Result<Found, ImportError> {
    let io = |source| ImportError::Io {
        path: path.into(),
        source,
    };
    let Opened { file, len, magic } = opened;
    let magic = magic.as_slice();
    if npy::looks_like(magic) {
        let t = npy::read_npy(path)?.into_tensor(path);
        Ok(Found::Weights(vec![t], BTreeMap::new()))
    } else if source::is_zip(magic) {
        let zip = open_zip(path, &file)?;
        let names = zip.names();
        if keras::is_keras(&names) {
            let m = keras::read(path, zip)?;
            return Ok(Found::Model(onnx::OnnxModel {
                tensors: m.tensors,
                arch: Some(m.arch),
                labels: m.labels,
            }));
        }
        if torch::is_checkpoint(&names) {
            return Ok(Found::Weights(torch::read(path, zip)?, BTreeMap::new()));
        }
        let arrays = npy::read_npz(path, zip)?;
        let tensors = arrays.into_iter().map(|a| a.into_tensor(path)).collect();
        Ok(Found::Weights(tensors, BTreeMap::new()))
    } else if safetensors::looks_like_index(magic) {
        Ok(Found::Files(safetensors::read_index(path, &file, len)?))
    } else if safetensors::looks_like(magic) {
        let (t, l) = safetensors::read(path, &file)?;
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
        Ok(Found::Files(gguf::read(path, map)?))
    } else if onnx::looks_like(magic) {
        if len > onnx::MAX_ONNX_LEN {
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
