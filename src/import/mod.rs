//! Reading models for `pack`: the dispatcher. Each input's format is recognised by content,
//! never by extension, and read by its module: [`safetensors`] (one file or shards), NumPy `.npy`
//! and `.npz` ([`npy`]), ONNX (graph and initializers, [`onnx`]), Keras 3 ([`keras`]), PyTorch
//! checkpoints and pickles of tensors ([`torch`]) and GGUF ([`gguf`]); the inputs are then
//! merged, each tensor name once. [`data`] reads the arrays a model runs on.
//!
//! What the format modules share is in [`source`]; they use nothing else of this module, nor
//! each other. Every length in a header is checked against the file before anything is
//! allocated for it, and nothing here can run code (pickled object arrays are refused by name).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::{self, MAX_TENSORS};
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
pub use source::{Bytes, ImportError, Imported, SourceTensor};

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
    let Opened { file, len, magic } = source::open(path)?;
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
        let (tensors, labels) = gguf::read(path, map)?;
        Ok(Found::Weights(tensors, labels))
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
