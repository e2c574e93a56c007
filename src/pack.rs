//! Writing artifacts.
//!
//! The envelope's size is known before any payload byte is hashed (digests and signatures have
//! fixed sizes), so the payload is written once, straight to its final offset, while it is
//! hashed on every core; the header is written last and the file renamed into place.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::format::{
    self, Envelope, FormatError, Layout, Manifest, ModelInfo, PayloadInfo, RawSignature,
    TensorEntry, CHUNK_SIZE, ENCODING_RAW, MANIFEST_FORMAT, MAX_PAYLOAD_LEN,
};
use crate::import::SourceTensor;
use crate::keys::{KeyId, SecretKey};
use crate::model::{Graph, SchemaError};
use crate::output::Output;
use crate::signature;

/// Why an artifact could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Metadata or tensors break a limit of the format.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The architecture does not fit the tensors.
    #[error("architecture: {0}")]
    Schema(#[from] SchemaError),
    /// A tensor's bytes do not match its dtype and shape.
    #[error(
        "{origin}: tensor {name:?} holds {actual} bytes, but {dtype} {shape:?} needs {expected}"
    )]
    TensorSize {
        origin: PathBuf,
        name: String,
        dtype: format::DType,
        shape: Vec<u64>,
        expected: u64,
        actual: u64,
    },
}

/// What `pack` wrote.
#[derive(Debug, Clone)]
pub struct Packed {
    pub digest: [u8; 32],
    pub signer: Option<KeyId>,
    pub tensors: usize,
    pub payload_len: u64,
    pub file_len: u64,
}

/// Everything that goes into an artifact.
pub struct PackInput<'a> {
    pub model: ModelInfo,
    pub arch: Option<Graph>,
    pub tensors: Vec<SourceTensor>,
    pub signer: Option<&'a SecretKey>,
}

/// Writes an artifact to `out`. `progress` is called with the payload bytes written so far.
pub fn pack(
    mut input: PackInput<'_>,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Packed, PackError> {
    format::check_model_info(&input.model)?;
    // Sorted by name: the same inputs give the same artifact, whatever order they came in.
    input.tensors.sort_by(|a, b| a.name.cmp(&b.name));
    for t in &input.tensors {
        format::check_tensor_name(&t.name)?;
        let expected = format::tensor_len(t.dtype, &t.shape).unwrap_or(u64::MAX);
        if expected != t.bytes.len() as u64 || t.shape.len() > format::MAX_RANK {
            return Err(PackError::TensorSize {
                origin: t.origin.clone(),
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                expected,
                actual: t.bytes.len() as u64,
            });
        }
    }
    let (offsets, payload_len) = Layout::place(input.tensors.iter().map(|t| t.bytes.len() as u64))
        .filter(|(_, len)| *len <= MAX_PAYLOAD_LEN)
        .ok_or_else(|| {
            FormatError::Invalid(format!(
                "payload exceeds the limit of {MAX_PAYLOAD_LEN} bytes"
            ))
        })?;
    let entries: Vec<TensorEntry> = input
        .tensors
        .iter()
        .zip(&offsets)
        .map(|(t, &offset)| TensorEntry {
            name: t.name.clone(),
            dtype: t.dtype.name().into(),
            shape: t.shape.clone(),
            offset,
            length: t.bytes.len() as u64,
        })
        .collect();
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT,
        model: input.model,
        payload: PayloadInfo {
            encoding: ENCODING_RAW.into(),
            length: payload_len,
            chunk_size: CHUNK_SIZE,
            digests: Vec::new(),
        },
        tensors: entries,
        arch: input.arch,
        crit: vec![],
    };
    // The manifest must pass the reader's own checks before anything is written.
    let layout = manifest.validate_tables()?;
    let chunks = layout.chunks.len();
    // Placeholder digests of the final size, so that the envelope's size is known.
    manifest.payload.digests = vec![0; chunks * 32];
    if let Some(arch) = &manifest.arch {
        // No memory cap here: that is the serving host's decision, made at load time.
        arch.validate(&layout.tensors)?;
    }

    // Sizes are fixed now: a placeholder signature has the size of the real one.
    let placeholder = input.signer.map(|key| RawSignature {
        protected: signature::protected_header(&key.public()),
        signature: vec![0; 64],
    });
    let envelope_len = Envelope {
        manifest: manifest.encode(),
        signatures: placeholder.into_iter().collect(),
    }
    .to_bytes()
    .len();
    let envelope_len = u32::try_from(envelope_len)
        .ok()
        .filter(|&n| n <= format::MAX_ENVELOPE_LEN)
        .ok_or_else(|| {
            FormatError::Invalid(format!(
                "header of {envelope_len} bytes exceeds the limit of {}",
                format::MAX_ENVELOPE_LEN
            ))
        })?;
    let payload_offset = format::payload_offset(envelope_len);

    let io = |source| PackError::Io {
        path: out.into(),
        source,
    };
    let output = Output::create(out).map_err(io)?;
    output
        .file()
        .set_len(payload_offset + payload_len)
        .map_err(io)?;

    let done = std::sync::atomic::AtomicU64::new(0);
    let digests: Vec<[u8; 32]> = (0..chunks)
        .into_par_iter()
        .map_init(
            || vec![0u8; CHUNK_SIZE as usize],
            |buf, i| {
                let range = layout.chunk_range(i);
                let chunk = &mut buf[..(range.end - range.start) as usize];
                let data = layout.chunk_data_len(i);
                let t = &layout.tensors[layout.chunks[i].tensor];
                let from = (range.start - t.offset) as usize;
                let source = &input.tensors[layout.chunks[i].tensor].bytes;
                chunk[..data].copy_from_slice(&source[from..from + data]);
                source.release(from..from + data);
                chunk[data..].fill(0);
                let digest: [u8; 32] = Sha256::digest(&chunk[..]).into();
                output
                    .file()
                    .write_all_at(chunk, payload_offset + range.start)?;
                let n = done.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                progress(n + chunk.len() as u64);
                Ok(digest)
            },
        )
        .collect::<std::io::Result<_>>()
        .map_err(io)?;

    manifest.payload.digests = digests.concat();
    let manifest_bytes = manifest.encode();
    let digest: [u8; 32] = Sha256::digest(&manifest_bytes).into();
    let signer_id = input.signer.map(|k| k.public().id());
    let envelope = Envelope {
        signatures: input
            .signer
            .map(|key| signature::sign(key, &manifest_bytes))
            .into_iter()
            .collect(),
        manifest: manifest_bytes,
    }
    .to_bytes();
    // Digests and signatures have fixed sizes, so the real envelope fills the space exactly.
    assert_eq!(
        envelope.len(),
        envelope_len as usize,
        "envelope size changed"
    );
    let mut header = Vec::with_capacity(payload_offset as usize);
    header.extend_from_slice(&format::write_prelude(envelope_len));
    header.extend_from_slice(&envelope);
    header.resize(payload_offset as usize, 0);
    output.file().write_all_at(&header, 0).map_err(io)?;
    output.commit().map_err(io)?;
    Ok(Packed {
        digest,
        signer: signer_id,
        tensors: layout.tensors.len(),
        payload_len,
        file_len: payload_offset + payload_len,
    })
}

/// Lays out a complete artifact in memory from its parts, without checking them: for test
/// vectors and tests that need malformed artifacts. `pack` is the way to make real ones.
pub fn assemble(manifest: &[u8], signatures: Vec<RawSignature>, payload: &[u8]) -> Vec<u8> {
    let envelope = Envelope {
        manifest: manifest.to_vec(),
        signatures,
    }
    .to_bytes();
    let envelope_len = envelope.len() as u32;
    let mut out = format::write_prelude(envelope_len).to_vec();
    out.extend_from_slice(&envelope);
    out.resize(format::payload_offset(envelope_len) as usize, 0);
    out.extend_from_slice(payload);
    out
}

/// SHA-256 of each chunk of `payload`, concatenated, for the chunks of `layout`.
pub fn digest_chunks(chunks: &[format::Chunk], payload: &[u8]) -> Vec<u8> {
    chunks
        .iter()
        .flat_map(|c| Sha256::digest(&payload[c.start as usize..c.end as usize]))
        .collect()
}

/// Seconds since the Unix epoch now, or `SOURCE_DATE_EPOCH` when set, for reproducible builds.
pub fn created_now() -> u64 {
    if let Some(t) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
