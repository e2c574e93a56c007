//! Writing artifacts.
//!
//! The envelope's size is known before any payload byte is hashed (digests and signatures have
//! fixed sizes), so the payload is written once, straight to its final offset, while it is
//! hashed on every core; the header is written last and the file renamed into place.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::crypto::{self, Argon2Costs, CryptoError, FileKey, PayloadCipher};
use crate::format::{
    self, EncryptionInfo, Envelope, FormatError, InnerManifest, Layout, Manifest, ModelInfo,
    Parent, PayloadInfo, RawSignature, TensorEntry, CHUNK_SIZE, ENCODING_RAW, ENCODING_STREAM,
    ENC_CHUNK_SIZE, MANIFEST_FORMAT, MAX_PAYLOAD_LEN,
};
use crate::import::SourceTensor;
use crate::keys::encryption::EncryptionPublicKey;
use crate::keys::{KeyId, Passphrase, SecretKey};
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
    /// Encryption failed (a low-order recipient key, Argon2 costs out of bounds, ...).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
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
    /// Bytes of the artifact's own file (the header alone when it is sharded).
    pub file_len: u64,
    /// The shard files written beside it and their lengths, in order (empty if not sharded).
    pub shards: Vec<(PathBuf, u64)>,
}

/// Everything that goes into an artifact.
pub struct PackInput<'a> {
    pub model: ModelInfo,
    pub arch: Option<Graph>,
    pub tensors: Vec<SourceTensor>,
    pub signer: Option<&'a SecretKey>,
    /// Encrypt the payload (tensors and architecture) to these recipients.
    pub encrypt: Option<EncryptTo<'a>>,
}

/// Who can decrypt: X25519 public keys, or (alone) a passphrase.
pub struct EncryptTo<'a> {
    pub recipients: Vec<EncryptionPublicKey>,
    pub passphrase: Option<(&'a Passphrase, Argon2Costs)>,
}

/// How the stored payload is made from the tensors.
enum Payload {
    Raw,
    Sealed {
        cipher: PayloadCipher,
        /// Plaintext bytes before the raw payload (the hidden tensor table and architecture).
        header: Vec<u8>,
        plaintext_len: u64,
    },
}

/// Writes an artifact to `out`. `progress` is called with the payload bytes written so far.
pub fn pack(
    input: PackInput<'_>,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Packed, PackError> {
    pack_sharded(input, out, None, progress)
}

/// [`pack`], with the payload in shard files of at most `shard_size` bytes beside `out` (FORMAT.md
/// section 14) when `shard_size` is given and there is a payload. A shard is larger only when
/// one digest chunk is (an encrypted chunk is 4 MiB and 1 KiB); a tensor is split between
/// shards only when it does not fit in one.
pub fn pack_sharded(
    mut input: PackInput<'_>,
    out: &Path,
    shard_size: Option<u64>,
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
        // What verify would refuse is refused here, naming the file it came from.
        if t.dtype == format::DType::Bool {
            if let Some(p) = t.bytes.iter().position(|&b| b > 1) {
                let e = format::BoolError {
                    tensor: t.name.clone(),
                    offset: p as u64,
                    byte: t.bytes[p],
                };
                return Err(FormatError::Invalid(format!("{}: {e}", t.origin.display())).into());
            }
        }
    }
    let (offsets, raw_len) = Layout::place(input.tensors.iter().map(|t| t.bytes.len() as u64))
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
    // The tensor table must pass the reader's own checks before anything is written, and the
    // architecture must fit it (with no memory cap: that is the serving host's decision).
    let raw = format::raw_layout(&entries, raw_len)?;
    if let Some(arch) = &input.arch {
        arch.validate(&raw.tensors)?;
    }
    // Signed as its CBOR encoding, which must decode as a reader will decode it (its text
    // checked as every manifest text is).
    let arch = (input.arch.as_ref())
        .map(|g| {
            let signed = g.encode();
            Graph::decode(&signed).map(|_| signed)
        })
        .transpose()?;

    let mut manifest = Manifest {
        format: MANIFEST_FORMAT,
        model: input.model,
        payload: PayloadInfo {
            encoding: ENCODING_RAW.into(),
            length: raw_len,
            chunk_size: CHUNK_SIZE,
            digests: Vec::new(),
            shards: None,
        },
        tensors: Vec::new(),
        arch: None,
        encryption: None,
        crit: vec![],
    };
    let payload = match &input.encrypt {
        None => {
            manifest.tensors = entries;
            manifest.arch = arch;
            Payload::Raw
        }
        Some(to) => {
            let file_key = FileKey::generate()?;
            let mut stanzas = Vec::new();
            for r in &to.recipients {
                stanzas.push(crypto::wrap_x25519(&file_key, r)?);
            }
            if let Some((pass, costs)) = to.passphrase {
                stanzas.push(crypto::wrap_passphrase(&file_key, pass.as_bytes(), costs)?);
            }
            let mut nonce = [0u8; 16];
            getrandom::fill(&mut nonce)
                .map_err(|e| PackError::Crypto(CryptoError::Internal(format!("random: {e}"))))?;
            let encryption = EncryptionInfo::new(nonce, &stanzas);
            let ad = format::encryption_ad(&manifest.model, &encryption);
            let header = InnerManifest {
                tensors: entries,
                length: raw_len,
                arch,
            }
            .header_block();
            let plaintext_len = header.len() as u64 + raw_len;
            manifest.payload = PayloadInfo {
                encoding: ENCODING_STREAM.into(),
                length: PayloadCipher::ciphertext_len(plaintext_len),
                chunk_size: ENC_CHUNK_SIZE,
                digests: Vec::new(),
                shards: None,
            };
            manifest.encryption = Some(encryption);
            manifest.crit = vec!["encryption".into()];
            Payload::Sealed {
                cipher: PayloadCipher::new(&file_key, &nonce, &ad),
                header,
                plaintext_len,
            }
        }
    };
    let mut layout = manifest.validate_tables()?;
    if let Some(max) = shard_size.filter(|_| layout.length > 0) {
        manifest.payload.shards = Some(shard_lengths(&layout, max)?);
        layout = manifest.validate_tables()?;
    }
    let chunks = layout.chunks.len();
    let payload_len = layout.length;
    // Placeholder digests of the final size, so that the envelope's size is known.
    manifest.payload.digests = vec![0; chunks * 32];

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
    // Where each payload byte goes: after the header, or into the shard file that holds it.
    let mut shards = Vec::with_capacity(layout.shards.len());
    for (k, range) in layout.shards.iter().enumerate() {
        let path = format::shard_path(out, k + 1, layout.shards.len());
        let shard_io = |source| PackError::Io {
            path: path.clone(),
            source,
        };
        let file = Output::create(&path).map_err(shard_io)?;
        file.file()
            .set_len(range.end - range.start)
            .map_err(shard_io)?;
        shards.push((path, file, range.clone()));
    }
    let inline = if shards.is_empty() { payload_len } else { 0 };
    output.file().set_len(payload_offset + inline).map_err(io)?;
    let place = |at: u64| -> (&Output, u64, &Path) {
        match layout.shard_holding(at) {
            Some(k) => (&shards[k].1, at - shards[k].2.start, &shards[k].0),
            None => (&output, payload_offset + at, out),
        }
    };

    // Each digest chunk is made (copied, or encrypted), hashed and written by whichever core
    // is free, with one buffer pair per worker.
    let done = std::sync::atomic::AtomicU64::new(0);
    let digests: Vec<[u8; 32]> = (0..chunks)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(plain, sealed), i| -> Result<[u8; 32], PackError> {
                let range = layout.chunk_range(i);
                let stored: &[u8] = match &payload {
                    Payload::Raw => {
                        plain.resize((range.end - range.start) as usize, 0);
                        fill_raw(&input.tensors, &raw, range.clone(), plain);
                        plain
                    }
                    Payload::Sealed {
                        cipher,
                        header,
                        plaintext_len,
                    } => {
                        let per = 64 * crypto::STREAM_CHUNK as u64;
                        let from = i as u64 * per;
                        let to = (from + per).min(*plaintext_len);
                        plain.resize((to - from) as usize, 0);
                        fill_plaintext(header, &input.tensors, &raw, from..to, plain);
                        sealed.resize((range.end - range.start) as usize, 0);
                        let total = PayloadCipher::chunk_count(*plaintext_len) as usize;
                        cipher.encrypt_chunks(i * 64, total, plain, sealed)?;
                        sealed
                    }
                };
                let digest: [u8; 32] = Sha256::digest(stored).into();
                let (file, at, path) = place(range.start);
                file.file()
                    .write_all_at(stored, at)
                    .map_err(|source| PackError::Io {
                        path: path.into(),
                        source,
                    })?;
                // The disk writes while the cores hash: the fsync at the end waits for little.
                crate::sys::start_writeback(file.file(), at, stored.len() as u64);
                let n = done.fetch_add(stored.len() as u64, std::sync::atomic::Ordering::Relaxed);
                progress(n + stored.len() as u64);
                Ok(digest)
            },
        )
        .collect::<Result<_, _>>()?;

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
    // Shards first, the artifact's own file last: a reader that finds it finds every shard.
    let mut written = Vec::with_capacity(shards.len());
    for (path, file, range) in shards {
        file.commit().map_err(|source| PackError::Io {
            path: path.clone(),
            source,
        })?;
        written.push((path, range.end - range.start));
    }
    output.commit().map_err(io)?;
    Ok(Packed {
        digest,
        signer: signer_id,
        tensors: raw.tensors.len(),
        payload_len,
        file_len: payload_offset + inline,
        shards: written,
    })
}

/// Cuts a payload into shards of at most `max` bytes, at chunk starts (FORMAT.md section 14):
/// a tensor's segment (its chunks) starts a new shard when it would not fit in the current one
/// but fits in a shard of its own, and is cut at chunk starts only when it is larger than
/// `max`. Encrypted payloads have no tensors to keep together: each chunk is a segment.
fn shard_lengths(layout: &Layout, max: u64) -> Result<Vec<u64>, PackError> {
    let mut lengths = Vec::new();
    let mut current = 0u64;
    let mut i = 0;
    while i < layout.chunks.len() {
        let tensor = layout.chunks[i].tensor;
        let mut end = i + 1;
        while tensor.is_some() && end < layout.chunks.len() && layout.chunks[end].tensor == tensor {
            end += 1;
        }
        let segment = layout.chunks[end - 1].end - layout.chunks[i].start;
        if current > 0 && current + segment > max && segment <= max {
            lengths.push(std::mem::take(&mut current));
        }
        for c in &layout.chunks[i..end] {
            if current > 0 && current + (c.end - c.start) > max {
                lengths.push(std::mem::take(&mut current));
            }
            current += c.end - c.start;
        }
        i = end;
    }
    if current > 0 {
        lengths.push(current);
    }
    if lengths.len() > format::MAX_SHARDS {
        return Err(FormatError::Invalid(format!(
            "{} shards of at most {max} bytes, more than the limit of {}; give a larger shard size",
            lengths.len(),
            format::MAX_SHARDS
        ))
        .into());
    }
    Ok(lengths)
}

/// Copies raw payload range `range` (tensor bytes, zero padding) into `buf`, and lets the
/// copied pages of mapped inputs go.
fn fill_raw(sources: &[SourceTensor], raw: &Layout, range: std::ops::Range<u64>, buf: &mut [u8]) {
    buf.fill(0);
    let first = raw
        .tensors
        .partition_point(|t| t.offset + t.length <= range.start);
    for (t, src) in raw.tensors[first..].iter().zip(&sources[first..]) {
        if t.offset >= range.end {
            break;
        }
        let (a, b) = (
            t.offset.max(range.start),
            (t.offset + t.length).min(range.end),
        );
        if a < b {
            let (from, to) = ((a - t.offset) as usize, (b - t.offset) as usize);
            buf[(a - range.start) as usize..(b - range.start) as usize]
                .copy_from_slice(&src.bytes[from..to]);
            src.bytes.release(from..to);
        }
    }
}

/// Copies plaintext range `range` of an encrypted payload (the header block, then the raw
/// payload) into `buf`.
fn fill_plaintext(
    header: &[u8],
    sources: &[SourceTensor],
    raw: &Layout,
    range: std::ops::Range<u64>,
    buf: &mut [u8],
) {
    let h = header.len() as u64;
    let head_end = range.end.min(h);
    if range.start < head_end {
        buf[..(head_end - range.start) as usize]
            .copy_from_slice(&header[range.start as usize..head_end as usize]);
    }
    let raw_start = range.start.max(h);
    if raw_start < range.end {
        let at = (raw_start - range.start) as usize;
        fill_raw(sources, raw, raw_start - h..range.end - h, &mut buf[at..]);
    }
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

/// The lineage record of a parent artifact (`pack --parent`): its digest, name and version.
/// It must be well-formed with every signature valid; who signed it is for the verifier of the
/// child to judge, through `inspect`.
pub fn parent(path: &Path) -> Result<Parent, crate::verify::VerifyError> {
    let artifact = crate::verify::Artifact::open(path)?;
    artifact.check_signatures()?;
    let (manifest, _, _) = artifact.manifest_unverified()?;
    Ok(Parent {
        digest: artifact.digest().to_vec(),
        name: manifest.model.name,
        version: manifest.model.version,
    })
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

/// What `sign` wrote.
#[derive(Debug, Clone)]
pub struct Cosigned {
    /// The artifact digest (unchanged: the manifest is not touched).
    pub digest: [u8; 32],
    /// Every signer's key id after signing, the new one last.
    pub signers: Vec<KeyId>,
    pub file_len: u64,
}

/// Why co-signing failed.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key's signature is already there.
    #[error("already signed by key {0}; an artifact carries one signature per key")]
    AlreadySigned(KeyId),
    #[error("the artifact already carries {0} signatures, the most the format allows")]
    Full(usize),
}

/// Adds `key`'s signature over the unchanged manifest of the artifact at `input` and writes
/// the result to `output` (which may be `input`: it is replaced atomically). Every existing
/// signature must verify, and every payload byte is checked against its digest while it is
/// copied, so a signature is never added to a damaged artifact. The payload bytes are copied
/// as they are (an encrypted payload stays encrypted); only the envelope grows, which moves
/// the payload to the next aligned offset.
pub fn cosign(
    input: &Path,
    key: &SecretKey,
    output: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Cosigned, CosignError> {
    use crate::signature::Checked;
    let auth = crate::verify::Artifact::open(input)?.integrity_only()?;
    let mut signers: Vec<KeyId> = (auth.others.iter())
        .filter_map(|c| match c {
            Checked::Valid(k) => Some(k.id()),
            Checked::Unsupported { .. } => None,
        })
        .collect();
    let id = key.public().id();
    if (auth.others.iter()).any(|c| matches!(c, Checked::Valid(k) if *k == key.public())) {
        return Err(CosignError::AlreadySigned(id));
    }
    let frame = auth.artifact();
    let mut signatures = frame.signatures().to_vec();
    if signatures.len() >= format::MAX_SIGNATURES {
        return Err(CosignError::Full(signatures.len()));
    }
    signatures.push(signature::sign(key, frame.manifest_bytes()));
    let envelope = Envelope {
        manifest: frame.manifest_bytes().to_vec(),
        signatures,
    }
    .to_bytes();
    let io = |source| CosignError::Io {
        path: output.to_owned(),
        source,
    };
    let envelope_len = u32::try_from(envelope.len())
        .ok()
        .filter(|&n| n <= format::MAX_ENVELOPE_LEN)
        .ok_or_else(|| {
            io(std::io::Error::other(
                "the envelope would exceed its size limit",
            ))
        })?;
    let payload_offset = format::payload_offset(envelope_len);
    let out = Output::create(output).map_err(io)?;
    let mut header = Vec::with_capacity(payload_offset as usize);
    header.extend_from_slice(&format::write_prelude(envelope_len));
    header.extend_from_slice(&envelope);
    header.resize(payload_offset as usize, 0);
    out.file().write_all_at(&header, 0).map_err(io)?;
    let of = auth.shards().len();
    if of == 0 {
        let mut at = payload_offset;
        auth.stream_payload(progress, |_, chunk| {
            out.file().write_all_at(chunk, at).map_err(io)?;
            at += chunk.len() as u64;
            Ok::<(), CosignError>(())
        })?;
        out.commit().map_err(io)?;
    } else if crate::output::same_file(input, output) {
        // Signed in place: the shard files stay as they are, once every byte is checked.
        auth.check_payload(progress)?;
        out.commit().map_err(io)?;
    } else {
        // A copy under another name: the checked bytes go into shard files named after it.
        let mut files = Vec::with_capacity(of);
        for (k, shard) in auth.shards().iter().enumerate() {
            let path = format::shard_path(output, k + 1, of);
            let file = Output::create(&path).map_err(|source| CosignError::Io {
                path: path.clone(),
                source,
            })?;
            files.push((path, file, shard.range.clone()));
        }
        auth.stream_payload(progress, |i, chunk| {
            let start = auth.layout.chunks[i].start;
            // A chunk starts inside the payload, so some shard holds it.
            let k = auth.layout.shard_holding(start).unwrap_or(of - 1);
            let (path, file, range) = &files[k];
            (file.file().write_all_at(chunk, start - range.start)).map_err(|source| {
                CosignError::Io {
                    path: path.clone(),
                    source,
                }
            })
        })?;
        for (path, file, _) in files {
            file.commit()
                .map_err(|source| CosignError::Io { path, source })?;
        }
        out.commit().map_err(io)?;
    }
    signers.push(id);
    Ok(Cosigned {
        digest: auth.digest,
        signers,
        file_len: payload_offset + if of == 0 { auth.layout.length } else { 0 },
    })
}
