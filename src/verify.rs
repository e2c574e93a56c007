//! Opening and verifying artifacts: where the signatures are checked against a trust store
//! before anything in the manifest is decoded, and where every payload byte is checked against
//! its signed digest.
//!
//! The types enforce the order. [`Artifact::open`] reads only the capped outer frame.
//! [`Artifact::authenticate`] checks every signature once, needs one by a key of the trust
//! store it is given, and only then decodes the manifest, giving an [`Authenticated`] artifact.
//! Whether that artifact may be used here (policy rules, thresholds, revocation, expiry,
//! rollback) is [`crate::trust`]'s decision, made on top of this one.
//!
//! Payload bytes come out of an `Authenticated` only through
//! [`Authenticated::check_payload`], [`Authenticated::read_payload`] and
//! [`Authenticated::stream_payload`], each of which hashes the bytes it hands out and compares
//! them with the signed digests before handing them out.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::format::{self, Envelope, FormatError, Layout, Manifest, TensorInfo, PRELUDE_LEN};
use crate::keys::{PublicKey, TrustStore};
use crate::model::Graph;
use crate::signature::{self, Checked, SignatureError};

/// Why an artifact failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Reading the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a well-formed artifact.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A signature is malformed or does not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Two signatures by one key.
    #[error("key {0} signed twice; an artifact carries at most one signature per key")]
    DuplicateSigner(String),
    /// The artifact carries no signature and unsigned artifacts were not allowed.
    #[error("the artifact is unsigned")]
    Unsigned,
    /// No signature is by a trusted key. `valid` holds the keys whose signatures verified but
    /// are not trusted (a policy tells revoked ones apart by them).
    #[error("not signed by a trusted key: {why}")]
    Untrusted { why: String, valid: Vec<PublicKey> },
    /// A payload chunk does not match its digest.
    #[error("payload chunk {chunk} ({part}) does not match its signed digest: the file was changed or damaged after signing")]
    Digest { chunk: usize, part: String },
    /// A BOOL tensor holds a byte other than 00 and 01 (the signer wrote a malformed tensor).
    #[error(transparent)]
    Bool(#[from] format::BoolError),
    /// A padding byte between tensors is not zero (the signer wrote hidden data, or the writer
    /// is broken).
    #[error("padding byte at payload offset {0} is not zero; a valid artifact holds nothing between its tensors")]
    Padding(u64),
    /// A shard file of a sharded artifact is not where its name says (FORMAT.md section 14).
    #[error("shard {shard} of {of} is missing: no file {}", path.display())]
    ShardMissing {
        shard: usize,
        of: usize,
        path: PathBuf,
    },
    /// A shard file is not the length the signed manifest gives it.
    #[error("shard {shard} of {of} ({}) has {len} bytes, the signed manifest says {expected}", path.display())]
    ShardLength {
        shard: usize,
        of: usize,
        path: PathBuf,
        len: u64,
        expected: u64,
    },
}

/// A signer whose signature verified and whose key is trusted.
#[derive(Debug, Clone)]
pub struct Signer {
    pub key: PublicKey,
    /// The trust-store file that holds the key.
    pub trusted_by: PathBuf,
}

/// An artifact whose outer frame has been read; nothing in it is trusted yet.
pub struct Artifact {
    path: PathBuf,
    file: File,
    file_len: u64,
    envelope: Envelope,
    payload_offset: u64,
}

impl Artifact {
    /// Opens `path` and reads the prelude and envelope (at most
    /// [`format::MAX_ENVELOPE_LEN`] bytes). The manifest is not decoded.
    pub fn open(path: &Path) -> Result<Artifact, VerifyError> {
        let mut file = open_nonblocking(path)?;
        let meta = file.metadata()?;
        // Pipes and devices have no length to check the manifest against, and /dev/zero never
        // ends: an artifact must be a regular file.
        if !meta.is_file() {
            return Err(std::io::Error::other(
                "not a regular file (a directory, pipe or device); save the artifact to a file first",
            )
            .into());
        }
        let file_len = meta.len();
        let mut prelude = [0u8; PRELUDE_LEN];
        if file_len < PRELUDE_LEN as u64 {
            // Tell "not ours" from "ours, cut short" where the bytes allow it.
            let mut head = Vec::new();
            file.read_to_end(&mut head)?;
            if head.is_empty() || !format::MAGIC.starts_with(&head[..head.len().min(8)]) {
                return Err(FormatError::BadMagic.into());
            }
            return Err(FormatError::Truncated(format!("only {file_len} bytes")).into());
        }
        file.read_exact(&mut prelude)?;
        let envelope_len = format::read_prelude(&prelude)?;
        let payload_offset = format::payload_offset(envelope_len);
        if file_len < PRELUDE_LEN as u64 + u64::from(envelope_len) {
            return Err(FormatError::Truncated(format!(
                "the header declares a {envelope_len}-byte envelope but the file has {file_len} bytes"
            ))
            .into());
        }
        let mut envelope = vec![0u8; envelope_len as usize];
        file.read_exact(&mut envelope)?;
        let envelope = Envelope::parse(&envelope)?;
        if file_len < payload_offset {
            return Err(
                FormatError::Truncated("the file ends inside the header padding".into()).into(),
            );
        }
        let mut pad =
            vec![0u8; (payload_offset - PRELUDE_LEN as u64 - u64::from(envelope_len)) as usize];
        file.read_exact(&mut pad)?;
        if pad.iter().any(|&b| b != 0) {
            return Err(FormatError::HeaderPadding.into());
        }
        Ok(Artifact {
            path: path.to_owned(),
            file,
            file_len,
            envelope,
            payload_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks every signature cryptographically, without consulting any trust store. Any
    /// signature of a supported algorithm that does not verify is an error.
    pub fn check_signatures(&self) -> Result<Vec<Checked>, VerifyError> {
        let mut seen: Vec<PublicKey> = Vec::new();
        let mut out = Vec::with_capacity(self.envelope.signatures.len());
        for sig in &self.envelope.signatures {
            let checked = signature::check(sig, &self.envelope.manifest)?;
            if let Checked::Valid(key) = &checked {
                // Two signatures by one key are refused: counting them twice would let a copy
                // stand in for a second signer once thresholds exist.
                if seen.contains(key) {
                    return Err(VerifyError::DuplicateSigner(key.id().to_string()));
                }
                seen.push(key.clone());
            }
            out.push(checked);
        }
        Ok(out)
    }

    /// Checks the signatures and trust, then decodes and validates the manifest. With
    /// `allow_unsigned`, an artifact with no signature at all passes this step (its payload is
    /// still checked against its digests later); a signed artifact always needs a trusted key.
    pub fn authenticate(
        self,
        trust: &TrustStore,
        allow_unsigned: bool,
    ) -> Result<Authenticated, VerifyError> {
        let checked = self.check_signatures()?;
        if checked.is_empty() && !allow_unsigned {
            return Err(VerifyError::Unsigned);
        }
        let mut signers = Vec::new();
        let mut others = Vec::new();
        for c in checked {
            match &c {
                Checked::Valid(key) => match trust.lookup(key) {
                    Some(path) => signers.push(Signer {
                        key: key.clone(),
                        trusted_by: path.to_owned(),
                    }),
                    None => others.push(c),
                },
                Checked::Unsupported { .. } => others.push(c),
            }
        }
        if signers.is_empty() && !others.is_empty() {
            let why: Vec<String> = others.iter().map(describe_untrusted).collect();
            let valid = (others.iter())
                .filter_map(|c| match c {
                    Checked::Valid(key) => Some(key.clone()),
                    Checked::Unsupported { .. } => None,
                })
                .collect();
            return Err(VerifyError::Untrusted {
                why: why.join("; "),
                valid,
            });
        }
        self.into_authenticated(signers, others)
    }

    /// Checks every signature cryptographically and decodes the manifest, trusting nobody:
    /// for co-signing, which needs the payload checked against its digests but decides no
    /// trust (every valid signature lands in `others`, `signers` stays empty).
    pub fn integrity_only(self) -> Result<Authenticated, VerifyError> {
        let others = self.check_signatures()?;
        self.into_authenticated(Vec::new(), others)
    }

    /// The signatures as found in the envelope.
    pub fn signatures(&self) -> &[format::RawSignature] {
        &self.envelope.signatures
    }

    /// The manifest bytes (the payload of every signature).
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.envelope.manifest
    }

    /// Decodes and validates the manifest and its architecture without checking who signed
    /// it: for `inspect` and lineage records, and for [`Artifact::authenticate`] once it has.
    /// The result must not be used to trust anything.
    pub fn manifest_unverified(&self) -> Result<(Manifest, Option<Graph>, Layout), VerifyError> {
        let manifest = Manifest::decode(&self.envelope.manifest)?;
        // Before the manifest's own rules, as when the graph was part of its decoding: a
        // malformed architecture is reported first.
        let arch = manifest.arch.as_ref().map(Graph::decode).transpose()?;
        let layout = manifest.validate()?;
        Ok((manifest, arch, layout))
    }

    /// SHA-256 of the manifest bytes: the artifact digest, which names the content (metadata,
    /// tensor table, payload digests) independent of who signed it.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.envelope.manifest).into()
    }

    /// The file's length and the payload offset.
    pub fn sizes(&self) -> (u64, u64) {
        (self.file_len, self.payload_offset)
    }

    fn into_authenticated(
        self,
        signers: Vec<Signer>,
        others: Vec<Checked>,
    ) -> Result<Authenticated, VerifyError> {
        let (manifest, arch, layout) = self.manifest_unverified()?;
        let shards = self.open_shards(&layout)?;
        // A sharded artifact's own file is the header alone.
        let inline = if shards.is_empty() { layout.length } else { 0 };
        let expected = self.payload_offset + inline;
        if self.file_len < expected {
            return Err(FormatError::Truncated(format!(
                "the manifest declares {} payload bytes, the file has {}",
                inline,
                self.file_len - self.payload_offset
            ))
            .into());
        }
        if self.file_len > expected && !shards.is_empty() {
            return Err(FormatError::Invalid(format!(
                "{} unexpected bytes after the header: the payload of a sharded artifact is in its shard files alone",
                self.file_len - expected
            ))
            .into());
        }
        if self.file_len > expected {
            return Err(FormatError::Trailing(self.file_len - expected).into());
        }
        let digest = self.digest();
        Ok(Authenticated {
            artifact: self,
            manifest,
            arch,
            layout,
            signers,
            others,
            digest,
            shards,
        })
    }

    /// Opens the shard files of a sharded payload (none otherwise), each named after this
    /// file (FORMAT.md section 14), and checks their lengths against the signed manifest.
    fn open_shards(&self, layout: &Layout) -> Result<Vec<Shard>, VerifyError> {
        let of = layout.shards.len();
        let mut shards = Vec::with_capacity(of);
        for (k, range) in layout.shards.iter().enumerate() {
            let path = format::shard_path(&self.path, k + 1, of);
            let file = match open_nonblocking(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(VerifyError::ShardMissing {
                        shard: k + 1,
                        of,
                        path,
                    })
                }
                Err(e) => return Err(shard_io(&path, e)),
            };
            let meta = file.metadata().map_err(|e| shard_io(&path, e))?;
            if !meta.is_file() {
                return Err(shard_io(
                    &path,
                    std::io::Error::other("not a regular file (a directory, pipe or device)"),
                ));
            }
            let expected = range.end - range.start;
            if meta.len() != expected {
                return Err(VerifyError::ShardLength {
                    shard: k + 1,
                    of,
                    path,
                    len: meta.len(),
                    expected,
                });
            }
            shards.push(Shard {
                path,
                file,
                range: range.clone(),
            });
        }
        Ok(shards)
    }
}

/// Opens `path` for reading without waiting: opening a named pipe blocks until a writer comes,
/// and the file's type is checked only once it is open. Reads of regular files are unaffected.
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// An I/O error on a shard file, naming it (the artifact's path is named by the caller).
fn shard_io(path: &Path, e: std::io::Error) -> VerifyError {
    VerifyError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// One open shard file and the payload range it holds.
pub struct Shard {
    pub path: PathBuf,
    file: File,
    pub range: std::ops::Range<u64>,
}

/// The warning every signature of an algorithm this nnsign does not implement earns
/// (FORMAT.md section 4, rule 5): it was not checked and counts for nothing, and a valid
/// co-signature whose `alg` was altered in transit (a one-bit change turns -19 into -20) looks
/// exactly like this, so it must be seen even when the artifact is accepted.
pub fn unsupported_warning(kid: &[u8], alg: i64) -> String {
    format!(
        "signature by key {} uses COSE algorithm {alg}, which this nnsign does not implement: it was not checked and does not count (if that key signed this artifact with Ed25519, its signature was altered)",
        crate::keys::hex(kid)
    )
}

/// Why a signature did not count, for messages.
pub fn describe_untrusted(c: &Checked) -> String {
    match c {
        Checked::Valid(key) => format!("key {} is not in the trust store", key.id()),
        Checked::Unsupported { alg, kid } => format!(
            "key {} uses COSE algorithm {alg}, which this nnsign does not implement",
            crate::keys::hex(kid)
        ),
    }
}

/// An artifact whose signatures and trust have been checked and whose manifest is decoded and
/// valid. Its payload has not been read yet.
pub struct Authenticated {
    artifact: Artifact,
    pub manifest: Manifest,
    /// The manifest's architecture, decoded (none for weights only, or when it is encrypted:
    /// then [`crate::unseal`] decodes it from the plaintext).
    pub arch: Option<Graph>,
    pub layout: Layout,
    /// Trusted signers (empty only for an unsigned artifact that was allowed).
    pub signers: Vec<Signer>,
    /// The other signatures: valid but not trusted, or of an algorithm this nnsign does not
    /// implement. They count for nothing, and are reported so that none goes unseen.
    pub others: Vec<Checked>,
    /// SHA-256 of the manifest.
    pub digest: [u8; 32],
    /// The shard files that hold the payload, in order (empty: it follows the header).
    shards: Vec<Shard>,
}

/// Payload bytes whose digests all matched.
pub struct VerifiedPayload {
    /// Wiped on drop: for an encrypted artifact these are the decrypted weights.
    bytes: Zeroizing<Vec<u8>>,
    /// Where the raw payload starts in `bytes` (after the hidden header of an encrypted one).
    base: usize,
    layout: Layout,
    index: HashMap<String, usize>,
}

impl VerifiedPayload {
    /// Wraps bytes that have been checked: `bytes[base..]` is a raw payload laid out as
    /// `layout` says.
    pub(crate) fn new(bytes: Zeroizing<Vec<u8>>, base: usize, layout: Layout) -> VerifiedPayload {
        let index = (layout.tensors.iter().enumerate())
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        VerifiedPayload {
            bytes,
            base,
            layout,
            index,
        }
    }

    /// Bytes of tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<(&TensorInfo, &[u8])> {
        let t = &self.layout.tensors[*self.index.get(name)?];
        let start = self.base + t.offset as usize;
        let bytes = self.bytes.get(start..start + t.length as usize)?;
        Some((t, bytes))
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.layout.tensors
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

/// Bytes read into a tensor's buffer and hashed before the next are read: small enough to be
/// hashed from the core's cache, large enough that the reads cost little.
const HASH_PIECE: usize = 256 << 10;

/// Chunks read and hashed at once per thread: enough to keep every core busy between the
/// in-order hand-overs, few enough to bound memory.
const CHUNKS_PER_THREAD: usize = 2;

impl Authenticated {
    /// The signatures of an algorithm this nnsign does not implement, as (key id, alg): they
    /// count for nothing, and every verb that accepts the artifact warns of each.
    pub fn unsupported(&self) -> Vec<(&[u8], i64)> {
        (self.others.iter())
            .filter_map(|c| match c {
                Checked::Unsupported { alg, kid } => Some((kid.as_slice(), *alg)),
                Checked::Valid(_) => None,
            })
            .collect()
    }

    /// The artifact's frame, as read.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    pub fn path(&self) -> &Path {
        &self.artifact.path
    }

    /// The shard files of a sharded artifact, in payload order (empty if it is one file).
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Reads payload bytes `[at, at + buf.len())`, which lie in one file: the artifact's own,
    /// or the shard that holds them (chunks never span two shards, and every read is inside
    /// one chunk).
    fn read_payload_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        if self.shards.is_empty() {
            return (self.artifact.file).read_exact_at(buf, self.artifact.payload_offset + at);
        }
        match self.layout.shard_holding(at) {
            Some(k) => (self.shards[k].file).read_exact_at(buf, at - self.shards[k].range.start),
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }

    /// Which shard file holds payload offset `at`, for messages (none if not sharded).
    fn shard_of(&self, at: u64) -> Option<(usize, &Shard)> {
        (self.layout.shard_holding(at)).map(|k| (k + 1, &self.shards[k]))
    }

    /// Reads the whole payload, checking every chunk; returns nothing but the verdict. Memory
    /// stays at `threads * CHUNKS_PER_THREAD * CHUNK_SIZE` whatever the artifact's size.
    pub fn check_payload(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<(), VerifyError> {
        // Nothing needs the chunks in order here, so every worker takes the next chunk as soon
        // as it is free: no batch boundaries where one core waits for the other.
        let done = std::sync::atomic::AtomicU64::new(0);
        let failures: Vec<(usize, VerifyError)> = (0..self.layout.chunks.len())
            .into_par_iter()
            .map_init(Vec::new, |buf, i| {
                let result = self.read_chunk(i, buf);
                let n = done.fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
                progress(n + buf.len() as u64);
                result.err().map(|e| (i, e))
            })
            .flatten()
            .collect();
        // Report the first damaged chunk in payload order, whichever worker found it first.
        match failures.into_iter().min_by_key(|(i, _)| *i) {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Reads the whole payload into memory, checking every chunk.
    pub fn read_payload(
        &self,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<VerifiedPayload, VerifyError> {
        self.read_payload_then(progress, |_, _| Ok::<(), VerifyError>(()))
    }

    /// Reads the whole payload into memory, each chunk straight into its place by whichever
    /// core is free, checks it, and then, on the same core while it is still in cache, hands
    /// it to `then` (which may change it in place: decryption does).
    pub fn read_payload_then<E: From<VerifyError> + Send>(
        &self,
        progress: &(dyn Fn(u64) + Sync),
        then: impl Fn(usize, &mut [u8]) -> Result<(), E> + Sync,
    ) -> Result<VerifiedPayload, E> {
        // Every chunk is read straight into its place, by whichever core is free.
        let mut bytes = Zeroizing::new(vec![0u8; self.layout.length as usize]);
        crate::sys::prefer_huge_pages(&mut bytes);
        let mut slots = Vec::with_capacity(self.layout.chunks.len());
        let mut rest = &mut bytes[..];
        for c in &self.layout.chunks {
            let (slot, tail) = rest.split_at_mut((c.end - c.start) as usize);
            slots.push(slot);
            rest = tail;
        }
        let done = std::sync::atomic::AtomicU64::new(0);
        slots
            .into_par_iter()
            .enumerate()
            .try_for_each(|(i, slot)| {
                self.read_chunk_into(i, slot)?;
                then(i, slot)?;
                let n = done.fetch_add(slot.len() as u64, std::sync::atomic::Ordering::Relaxed);
                progress(n + slot.len() as u64);
                Ok::<(), E>(())
            })?;
        Ok(VerifiedPayload::new(bytes, 0, self.layout.clone()))
    }

    /// Reads every tensor straight into a buffer of its own, each chunk by whichever core is
    /// free, checking its digest, padding and BOOL bytes there. An F32 tensor lands as the f32
    /// values a graph uses as they are (on a little-endian host), other dtypes as bytes to be
    /// widened: memory is the tensors and nothing else, and no byte is read twice. Nothing is returned
    /// unless every chunk matched; the bytes are copied out of the file as they are hashed, so
    /// a file changed afterwards cannot change what was checked.
    pub fn read_tensors(
        &self,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<TensorBuf>, VerifyError> {
        let layout = &self.layout;
        let mut bufs: Vec<TensorBuf> = (layout.tensors.iter()).map(TensorBuf::for_tensor).collect();
        {
            let mut views: Vec<&mut [u8]> = bufs.iter_mut().map(TensorBuf::bytes_mut).collect();
            let mut slots = Vec::with_capacity(layout.chunks.len());
            for i in 0..layout.chunks.len() {
                let Some(t) = layout.chunks[i].tensor else {
                    return Err(
                        FormatError::Invalid("an encrypted payload has no tensors".into()).into(),
                    );
                };
                let view = std::mem::take(&mut views[t]);
                let (slot, rest) = view.split_at_mut(layout.chunk_data_len(i));
                views[t] = rest;
                slots.push((i, slot));
            }
            let done = std::sync::atomic::AtomicU64::new(0);
            slots.into_par_iter().try_for_each(|(i, slot)| {
                let range = layout.chunk_range(i);
                let at = range.start;
                let mut padding = vec![0u8; (range.end - range.start) as usize - slot.len()];
                let mut hasher = Sha256::new();
                self.read_hashed(slot, at, &mut hasher)?;
                self.read_hashed(&mut padding, at + slot.len() as u64, &mut hasher)?;
                let digest: [u8; 32] = hasher.finalize().into();
                if digest != layout.digests[i] {
                    return Err(self.digest_error(i));
                }
                if let Some(p) = padding.iter().position(|&b| b != 0) {
                    let offset = range.start + (slot.len() + p) as u64;
                    return Err(VerifyError::Padding(offset));
                }
                layout.check_elements(i, slot)?;
                let len = range.end - range.start;
                progress(len + done.fetch_add(len, std::sync::atomic::Ordering::Relaxed));
                Ok(())
            })?;
        }
        Ok(bufs)
    }

    /// Calls `sink` with each payload chunk, in order, once its digest and padding have been
    /// checked. A failing chunk stops the stream before `sink` sees it.
    pub fn stream_payload<E: From<VerifyError> + Send>(
        &self,
        progress: &(dyn Fn(u64) + Sync),
        sink: impl FnMut(usize, &[u8]) -> Result<(), E> + Send,
    ) -> Result<(), E> {
        self.stream_payload_then(progress, |_, _| Ok(()), sink)
    }

    /// [`Authenticated::stream_payload`], with each chunk first handed, once checked, to `then`
    /// on the core that read it (which may change it in place: decryption does).
    ///
    /// Two batches of `threads * CHUNKS_PER_THREAD` chunks take turns: while one is sunk in
    /// order, the next is read, checked and transformed in parallel, so memory stays at two
    /// batches whatever the artifact's size, and writing overlaps reading.
    pub fn stream_payload_then<E: From<VerifyError> + Send>(
        &self,
        progress: &(dyn Fn(u64) + Sync),
        then: impl Fn(usize, &mut [u8]) -> Result<(), E> + Sync,
        mut sink: impl FnMut(usize, &[u8]) -> Result<(), E> + Send,
    ) -> Result<(), E> {
        let count = self.layout.chunks.len();
        let batch = rayon::current_num_threads().max(1) * CHUNKS_PER_THREAD;
        let fill = |first: usize, buffers: &mut Vec<Zeroizing<Vec<u8>>>| {
            let last = (first + batch).min(count);
            buffers.resize_with(last - first, Default::default);
            (buffers.par_iter_mut().enumerate()).try_for_each(|(j, buf)| {
                self.read_chunk(first + j, buf)?;
                then(first + j, buf)
            })
        };
        let mut done = 0u64;
        let mut drain = |first: usize, buffers: &[Zeroizing<Vec<u8>>]| {
            for (j, buf) in buffers.iter().enumerate() {
                sink(first + j, buf)?;
                done += buf.len() as u64;
            }
            progress(done);
            Ok::<(), E>(())
        };
        let (mut ready, mut spare) = (Vec::new(), Vec::new());
        fill(0, &mut ready)?;
        // Only chunks that `fill` checked are ever drained.
        for first in (0..count).step_by(batch) {
            let next = first + batch;
            if next < count {
                let (filled, drained) =
                    rayon::join(|| fill(next, &mut spare), || drain(first, &ready));
                drained?;
                filled?;
                std::mem::swap(&mut ready, &mut spare);
            } else {
                drain(first, &ready)?;
            }
        }
        Ok(())
    }

    /// Reads chunk `i` into `buf`, resized to fit, and checks it.
    pub(crate) fn read_chunk(&self, i: usize, buf: &mut Vec<u8>) -> Result<(), VerifyError> {
        let range = self.layout.chunk_range(i);
        buf.resize((range.end - range.start) as usize, 0);
        self.read_chunk_into(i, buf)
    }

    /// Reads the payload's bytes at `at` into `buf`, feeding them to `hasher` in pieces that stay
    /// in the core's cache between the read and the hash.
    fn read_hashed(&self, buf: &mut [u8], at: u64, hasher: &mut Sha256) -> Result<(), VerifyError> {
        let mut at = at;
        for piece in buf.chunks_mut(HASH_PIECE) {
            self.read_payload_at(piece, at).map_err(read_error)?;
            hasher.update(&piece[..]);
            at += piece.len() as u64;
        }
        Ok(())
    }

    /// Reads chunk `i` into `buf`, which has exactly its length, and checks its digest, its
    /// padding and its BOOL bytes.
    fn read_chunk_into(&self, i: usize, buf: &mut [u8]) -> Result<(), VerifyError> {
        let range = self.layout.chunk_range(i);
        let mut hasher = Sha256::new();
        self.read_hashed(buf, range.start, &mut hasher)?;
        let digest: [u8; 32] = hasher.finalize().into();
        if digest != self.layout.digests[i] {
            return Err(self.digest_error(i));
        }
        self.layout
            .check_padding(i, buf)
            .map_err(VerifyError::Padding)?;
        Ok(self.layout.check_elements(i, buf)?)
    }

    /// The error for chunk `i` not matching its digest, naming what it holds.
    fn digest_error(&self, i: usize) -> VerifyError {
        let range = self.layout.chunk_range(i);
        let part = match self.layout.chunk_tensor(i) {
            None => format!(
                "bytes {}..{} of the encrypted payload",
                range.start, range.end
            ),
            Some(t) if self.layout.chunk_data_len(i) == 0 => {
                format!("padding after tensor {:?}", t.name)
            }
            Some(t) => format!(
                "bytes {}..{} of tensor {:?}",
                range.start - t.offset,
                (range.end - t.offset).min(t.length),
                t.name
            ),
        };
        let part = match self.shard_of(range.start) {
            Some((k, shard)) => format!(
                "{part}, in shard {k} of {} ({})",
                self.shards.len(),
                shard.path.display()
            ),
            None => part,
        };
        VerifyError::Digest { chunk: i, part }
    }
}

/// A read of the payload that failed: a file that shrank under us is a truncated artifact.
fn read_error(e: std::io::Error) -> VerifyError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => VerifyError::Format(FormatError::Truncated(
            "the file shrank while it was being read".into(),
        )),
        _ => VerifyError::Io(e),
    }
}

/// A verified tensor in a buffer of its own ([`Authenticated::read_tensors`]).
#[derive(Clone)]
pub enum TensorBuf {
    /// An F32 tensor, as the values a graph computes with.
    F32(Vec<f32>),
    /// Any other dtype (or F32 on a big-endian host), as stored.
    Bytes(Vec<u8>),
}

impl TensorBuf {
    pub(crate) fn for_tensor(t: &TensorInfo) -> TensorBuf {
        let mut buf = if t.dtype == crate::format::DType::F32 && cfg!(target_endian = "little") {
            TensorBuf::F32(vec![0.0; (t.length / 4) as usize])
        } else {
            TensorBuf::Bytes(vec![0; t.length as usize])
        };
        crate::sys::prefer_huge_pages(buf.bytes_mut());
        buf
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            TensorBuf::F32(v) => bytemuck::cast_slice_mut(v),
            TensorBuf::Bytes(v) => v,
        }
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            TensorBuf::F32(v) => bytemuck::cast_slice(v),
            TensorBuf::Bytes(v) => v,
        }
    }
}
