//! safetensors files in, mapped: the `safetensors` crate checks the header (its length, and
//! that the tensors' byte ranges match their shapes and cover the data section) and nnsign
//! takes each tensor as a range of the mapped file.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use super::source::{invalid, Bytes, ImportError, SourceTensor};
use crate::format::{self, DType};
use crate::sys::Map;

/// Whether a file starts like safetensors: an 8-byte header length, then the header's `{`.
pub fn looks_like(magic: &[u8]) -> bool {
    magic.len() == 9 && magic[8] == b'{'
}

/// Reads a safetensors file: its tensors, mapped, and its `__metadata__`.
pub fn read(
    path: &Path,
    file: &File,
) -> Result<(Vec<SourceTensor>, BTreeMap<String, String>), ImportError> {
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
