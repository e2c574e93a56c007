//! safetensors files in, mapped: the `safetensors` crate checks the header (its length, and
//! that the tensors' byte ranges match their shapes and cover the data section) and nnsign
//! takes each tensor as a range of the mapped file. A Hugging Face index
//! (`model.safetensors.index.json`) brings in the shards it names ([`read_index`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::source::{
    beside, invalid, is_plain_name, open, Bytes, ImportError, MultiFile, SourceTensor,
};
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

/// Largest safetensors index read: Hugging Face's own loader stops at 10 MiB, and the index of a
/// model of [`format::MAX_TENSORS`] tensors with long names fits in this.
pub const MAX_INDEX_LEN: u64 = 64 << 20;

/// Whether a file starts like a JSON object (a safetensors index is one): `{` after any JSON
/// white space, and no NUL among the first bytes. A safetensors file can start with `{` (a
/// header length whose low byte is 0x7B), but then its length has NUL bytes after it.
pub fn looks_like_index(magic: &[u8]) -> bool {
    !magic.contains(&0)
        && (magic.iter()).find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b'{')
}

/// A safetensors index, as `transformers` and `huggingface_hub` write it: tensor name to shard
/// file, and free metadata.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    #[serde(default)]
    metadata: Option<Unique<Meta, { format::MAX_LABELS }>>,
    weight_map: Unique<String, { format::MAX_TENSORS }>,
}

/// A JSON object's members in file order, refused if a key appears twice (JSON readers differ
/// on which copy counts: Python's `json` takes the last) or if there are more than `MAX`.
struct Unique<V, const MAX: usize>(Vec<(String, V)>);

impl<'de, V: serde::Deserialize<'de>, const MAX: usize> serde::Deserialize<'de> for Unique<V, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V, const MAX: usize>(std::marker::PhantomData<V>);
        impl<'de, V: serde::Deserialize<'de>, const MAX: usize> serde::de::Visitor<'de> for Visit<V, MAX> {
            type Value = Unique<V, MAX>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "an object of at most {MAX} members")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if members.len() == MAX {
                        return Err(serde::de::Error::custom(format!("more than {MAX} members")));
                    }
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("{key:?} appears twice")));
                    }
                    members.push((key, map.next_value()?));
                }
                Ok(Unique(members))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// An index metadata value: kept if it is a string, anything else (`total_size` is a number)
/// skipped without being built.
struct Meta(Option<String>);

impl<'de> serde::Deserialize<'de> for Meta {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Meta;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Meta, E> {
                Ok(Meta(Some(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Meta, E> {
                Ok(Meta(Some(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Meta, E> {
                Ok(Meta(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Meta, E> {
                Ok(Meta(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Meta, E> {
                Ok(Meta(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Meta, E> {
                Ok(Meta(None))
            }
            fn visit_unit<E>(self) -> Result<Meta, E> {
                Ok(Meta(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Meta, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Meta(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Meta, A::Error> {
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Meta(None))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Reads a Hugging Face sharded model from its index (`model.safetensors.index.json`): every
/// shard file it names, each once, which must be a plain file name in the index's own folder.
/// The shards must hold exactly the tensors of `weight_map`, each in the file it names.
///
/// Labels are the shards' `__metadata__` (Hugging Face writes `format: pt` into each) and the
/// index's `metadata` members whose values are strings; other values are skipped, not recorded:
/// `total_size`, a number, describes the shard files, which the artifact does not keep, and its
/// signed manifest records every tensor's size. A key with two different string values (in two
/// shards, or in a shard and the index) is refused.
pub fn read_index(path: &Path, file: &File, len: u64) -> Result<MultiFile, ImportError> {
    use std::io::{Read, Seek};
    let io = |source| ImportError::Io {
        path: path.into(),
        source,
    };
    if len > MAX_INDEX_LEN {
        return Err(invalid(
            path,
            format!("a JSON file of {len} bytes, over the {MAX_INDEX_LEN}-byte limit for a safetensors index"),
        ));
    }
    let mut file = file;
    file.rewind().map_err(io)?;
    let mut text = Vec::with_capacity(len as usize);
    (file.take(MAX_INDEX_LEN + 1))
        .read_to_end(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_INDEX_LEN {
        return Err(invalid(
            path,
            "the file grew past the index size limit while being read",
        ));
    }
    let index: Index = serde_json::from_slice(&text).map_err(|e| {
        invalid(
            path,
            format!(
                "a JSON file, but not a safetensors index (an object with \"weight_map\" and optionally \"metadata\"): {e}"
            ),
        )
    })?;
    drop(text);
    let weight_map = index.weight_map.0;
    if weight_map.is_empty() {
        return Err(invalid(path, "the safetensors index's weight_map is empty"));
    }
    // Every name first: nothing is opened while any entry could escape the folder.
    for (tensor, name) in &weight_map {
        if !is_plain_name(name) {
            return Err(invalid(
                path,
                format!(
                    "weight_map puts tensor {tensor:?} in {name:?}, which is not a plain file name in the index's folder"
                ),
            ));
        }
    }
    let mapped: HashMap<&str, &str> = (weight_map.iter())
        .map(|(t, f)| (t.as_str(), f.as_str()))
        .collect();
    let names: BTreeSet<&str> = mapped.values().copied().collect();
    let mut labels: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    let mut add_label = |k: String, v: String, from: &Path| -> Result<(), ImportError> {
        match labels.get(&k) {
            Some((old, first)) if *old != v => Err(invalid(
                from,
                format!(
                    "metadata key {k:?} is {v:?} here but {old:?} in {}",
                    first.display()
                ),
            )),
            Some(_) => Ok(()),
            None => {
                labels.insert(k, (v, from.into()));
                Ok(())
            }
        }
    };
    let mut files = Vec::with_capacity(names.len());
    // Each shard's tensors, by name: a shard's table has no order of its own.
    let mut shards: Vec<(&str, BTreeMap<String, SourceTensor>)> = Vec::with_capacity(names.len());
    for name in names {
        let shard = beside(path, name);
        let opened = match open(&shard) {
            Ok(o) => o,
            Err(ImportError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Err(invalid(
                    path,
                    format!(
                        "weight_map names {name:?}, but there is no such file beside the index"
                    ),
                ))
            }
            Err(e) => return Err(e),
        };
        if !looks_like(&opened.magic) {
            return Err(invalid(
                &shard,
                format!(
                    "named by the safetensors index {}, but not a safetensors file",
                    path.display()
                ),
            ));
        }
        let (tensors, shard_labels) = read(&shard, &opened.file)?;
        for (k, v) in shard_labels {
            add_label(k, v, &shard)?;
        }
        shards.push((
            name,
            tensors.into_iter().map(|t| (t.name.clone(), t)).collect(),
        ));
        files.push((shard, opened.len));
    }
    for (k, v) in index.metadata.map(|m| m.0).unwrap_or_default() {
        if let Meta(Some(v)) = v {
            add_label(k, v, path)?;
        }
    }
    let by_name: HashMap<&str, &BTreeMap<String, SourceTensor>> = shards
        .iter()
        .map(|(name, tensors)| (*name, tensors))
        .collect();
    let holds =
        |file: &str, tensor: &str| by_name.get(file).is_some_and(|t| t.contains_key(tensor));
    for (name, tensors) in &shards {
        for (tensor, t) in tensors {
            match mapped.get(tensor.as_str()) {
                Some(m) if m == name => {}
                Some(m) if holds(m, tensor) => {
                    return Err(invalid(
                        &t.origin,
                        format!(
                            "tensor {tensor:?} is also in {m:?}, where the safetensors index {} puts it: a tensor must be in one shard",
                            path.display()
                        ),
                    ))
                }
                Some(m) => {
                    return Err(invalid(
                        &t.origin,
                        format!(
                            "holds tensor {tensor:?}, which the safetensors index {} puts in {m:?}",
                            path.display()
                        ),
                    ))
                }
                None => {
                    return Err(invalid(
                        &t.origin,
                        format!(
                            "holds tensor {tensor:?}, which the safetensors index {} does not list",
                            path.display()
                        ),
                    ))
                }
            }
        }
    }
    for (tensor, name) in &weight_map {
        if !holds(name, tensor) {
            return Err(invalid(
                &beside(path, name),
                format!(
                    "the safetensors index {} puts tensor {tensor:?} in this file, which does not hold it",
                    path.display()
                ),
            ));
        }
    }
    let tensors = (shards.into_iter())
        .flat_map(|(_, tensors)| tensors.into_values())
        .collect();
    Ok(MultiFile {
        tensors,
        labels: labels.into_iter().map(|(k, (v, _))| (k, v)).collect(),
        files,
    })
}
