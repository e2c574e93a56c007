//! The `.nns` container, format version 1: the fixed prelude, the envelope (manifest bytes plus
//! COSE_Sign1 signatures), the manifest and the payload layout. docs/FORMAT.md is the normative
//! text; every limit there is a constant here with the same name.
//!
//! ```text
//! offset      size  field
//! 0           8     MAGIC             89 4E 4E 53 0D 0A 1A 0A
//! 8           2     frame version     u16 big-endian, = FRAME_VERSION
//! 10          2     reserved          zero
//! 12          4     envelope length E u32 big-endian, 1 ..= MAX_ENVELOPE_LEN
//! 16          E     envelope          deterministic CBOR
//! 16+E        pad   zero bytes up to H = align(16 + E, PAYLOAD_ALIGN)
//! H           L     payload           L = manifest.payload.length; the file ends at H + L
//! ```

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::cbor::{self, CborError};
use crate::crypto::{Argon2Costs, Stanza};
pub use crate::tensor::DType;

/// First 8 bytes of every artifact: a non-ASCII byte, "NNS", then CR LF SUB LF (as in PNG) so that
/// text-mode transfers that rewrite line endings are caught at once.
pub const MAGIC: [u8; 8] = *b"\x89NNS\r\n\x1a\n";
/// Version of the prelude layout.
pub const FRAME_VERSION: u16 = 1;
/// Bytes before the envelope.
pub const PRELUDE_LEN: usize = 16;
/// Largest envelope accepted: the only part of a file read before its signature is checked.
pub const MAX_ENVELOPE_LEN: u32 = 64 << 20;
/// The payload starts at a multiple of this in the file, so tensors aligned in the payload are
/// aligned in a memory map of the file.
pub const PAYLOAD_ALIGN: u64 = 64;
/// Every tensor starts at a multiple of this in the payload.
pub const TENSOR_ALIGN: u64 = 64;
/// Payload bytes covered by one SHA-256 digest.
pub const CHUNK_SIZE: u64 = 4 << 20;
/// Ciphertext bytes covered by one digest in an encrypted payload: 64 whole STREAM chunks, so
/// that digest chunks and AEAD chunks line up.
pub const ENC_CHUNK_SIZE: u64 = 64 * (crate::crypto::STREAM_CHUNK + crate::crypto::TAG_LEN) as u64;
/// The payload encoding of encrypted artifacts.
pub const ENCODING_STREAM: &str = "chacha20poly1305-stream";
/// Most recipients (public keys, or one passphrase) one encrypted artifact may have.
pub const MAX_RECIPIENTS: usize = 64;
/// Largest payload accepted (1 TiB).
pub const MAX_PAYLOAD_LEN: u64 = 1 << 40;
/// Most shard files of one artifact (FORMAT.md section 14).
pub const MAX_SHARDS: usize = 65536;
/// Most signatures in one envelope.
pub const MAX_SIGNATURES: usize = 16;
/// Largest protected header of one signature.
pub const MAX_PROTECTED_LEN: usize = 1024;
/// Largest signature value.
pub const MAX_SIGNATURE_LEN: usize = 1024;
/// Most tensors in one artifact.
pub const MAX_TENSORS: usize = 1 << 17;
/// Most dimensions of one tensor.
pub const MAX_RANK: usize = 16;
/// Longest one-line text, in bytes: a tensor, model or parent name, a version, the producer, a
/// label key, any text in the architecture.
pub const MAX_NAME_LEN: usize = 1024;
/// Most labels on one model.
pub const MAX_LABELS: usize = 1024;
/// Longest multi-line text, in bytes: a description or a label value.
pub const MAX_TEXT_LEN: usize = 65536;
/// Latest creation time accepted: 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
pub const MAX_CREATED: u64 = 253_402_300_799;
/// Label keys nnsign keeps for itself (the provenance `unpack` writes into safetensors metadata).
pub const RESERVED_LABEL_PREFIX: &str = "nnsign.";
/// Value of `format` in a version 1 manifest.
pub const MANIFEST_FORMAT: u64 = 1;
/// The one payload encoding of version 1: tensor bytes stored as they are.
pub const ENCODING_RAW: &str = "raw";

/// Manifest fields a version 1 reader understands; `crit` may name only these.
const KNOWN_FIELDS: [&str; 7] = [
    "arch",
    "crit",
    "encryption",
    "format",
    "model",
    "payload",
    "tensors",
];

/// Why a file is not a well-formed version 1 artifact.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The first 8 bytes are not [`MAGIC`].
    #[error("not an nnsign artifact (bad magic bytes)")]
    BadMagic,
    /// A frame version this reader does not know.
    #[error("artifact frame version {0} is not supported by this nnsign (it reads version 1); upgrade nnsign")]
    FrameVersion(u16),
    /// The reserved prelude bytes are not zero.
    #[error("reserved prelude bytes are not zero")]
    Reserved,
    /// The envelope length is zero or above [`MAX_ENVELOPE_LEN`].
    #[error("envelope length {0} is outside 1..={max}", max = MAX_ENVELOPE_LEN)]
    EnvelopeLength(u32),
    /// The file ends before the header or payload it declares.
    #[error("file is truncated: {0}")]
    Truncated(String),
    /// The file goes on after the payload the manifest declares.
    #[error("{0} unexpected bytes after the payload")]
    Trailing(u64),
    /// The padding after the envelope is not all zero.
    #[error("padding after the envelope is not zero")]
    HeaderPadding,
    /// The envelope is not the CBOR structure FORMAT.md describes.
    #[error("malformed envelope: {0}")]
    Envelope(CborError),
    /// A signature's protected header is malformed.
    #[error("malformed signature header: {0}")]
    SignatureHeader(String),
    /// The manifest is not valid deterministic CBOR of the right shape.
    #[error("malformed manifest: {0}")]
    Manifest(CborError),
    /// The artifact uses a feature this reader does not implement (a newer format version, an
    /// unknown critical field, an unknown payload encoding).
    #[error("{0}, which this nnsign does not support")]
    Unsupported(String),
    /// The manifest decodes but breaks a rule of the format.
    #[error("invalid manifest: {0}")]
    Invalid(String),
}

fn unsupported_format(format: u64) -> FormatError {
    FormatError::Unsupported(format!(
        "manifest format {format} (this nnsign reads format {MANIFEST_FORMAT})"
    ))
}

impl FormatError {
    fn invalid(msg: impl Into<String>) -> Self {
        FormatError::Invalid(msg.into())
    }
}

/// The 16-byte prelude of an artifact.
pub fn write_prelude(envelope_len: u32) -> [u8; PRELUDE_LEN] {
    let mut p = [0u8; PRELUDE_LEN];
    p[..8].copy_from_slice(&MAGIC);
    p[8..10].copy_from_slice(&FRAME_VERSION.to_be_bytes());
    p[12..16].copy_from_slice(&envelope_len.to_be_bytes());
    p
}

/// Checks a prelude and returns the envelope length it declares.
pub fn read_prelude(p: &[u8; PRELUDE_LEN]) -> Result<u32, FormatError> {
    if p[..8] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = u16::from_be_bytes([p[8], p[9]]);
    if version != FRAME_VERSION {
        return Err(FormatError::FrameVersion(version));
    }
    if p[10..12] != [0, 0] {
        return Err(FormatError::Reserved);
    }
    let len = u32::from_be_bytes([p[12], p[13], p[14], p[15]]);
    if len == 0 || len > MAX_ENVELOPE_LEN {
        return Err(FormatError::EnvelopeLength(len));
    }
    Ok(len)
}

/// Offset of the payload for an envelope of `envelope_len` bytes.
pub fn payload_offset(envelope_len: u32) -> u64 {
    align_up(PRELUDE_LEN as u64 + u64::from(envelope_len), PAYLOAD_ALIGN)
}

/// The file that holds shard `k` (1-based) of `n` of the artifact at `head` (FORMAT.md section
/// 14): `STEM-KKKKK-of-NNNNN.nnshard` in the same folder, where STEM is the artifact's file name
/// without a final `.nns`, and K and N are zero-padded to five digits.
pub fn shard_path(head: &std::path::Path, k: usize, n: usize) -> std::path::PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let name = head.file_name().map_or(&[][..], |n| n.as_bytes());
    let stem = name
        .strip_suffix(b".nns")
        .filter(|s| !s.is_empty())
        .unwrap_or(name);
    let mut shard = stem.to_vec();
    shard.extend_from_slice(format!("-{k:05}-of-{n:05}.nnshard").as_bytes());
    head.with_file_name(std::ffi::OsString::from_vec(shard))
}

/// `n` rounded up to a multiple of `to` (a power of two). Callers keep `n` far below `u64::MAX`.
pub fn align_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// The COSE tag of COSE_Sign1_Tagged (RFC 9052).
pub const COSE_SIGN1_TAG: u64 = 18;

/// One COSE_Sign1 with a detached payload (the manifest), as found in the envelope.
#[derive(Debug, Clone)]
pub struct RawSignature {
    /// The serialized protected header, exactly as signed.
    pub protected: Vec<u8>,
    /// The signature value.
    pub signature: Vec<u8>,
}

/// The envelope: the manifest bytes (the payload of every signature) and the signatures.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub manifest: Vec<u8>,
    pub signatures: Vec<RawSignature>,
}

impl Envelope {
    /// Parses the fixed shape `[bstr, [* 18([bstr, {}, null, bstr])]]`, each part capped,
    /// without decoding the manifest.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let mut r = cbor::Reader::new(bytes);
        let shape = |e| FormatError::Envelope(e);
        if r.array().map_err(shape)? != 2 {
            return Err(FormatError::Envelope(CborError::Shape(
                "envelope is not a 2-element array".into(),
            )));
        }
        let manifest = r
            .bytes(MAX_ENVELOPE_LEN as usize, "manifest")
            .map_err(shape)?
            .to_vec();
        let count = r.array().map_err(shape)?;
        if count > MAX_SIGNATURES {
            return Err(FormatError::Envelope(CborError::Shape(format!(
                "{count} signatures, more than the limit of {MAX_SIGNATURES}"
            ))));
        }
        let mut signatures = Vec::with_capacity(count);
        for _ in 0..count {
            if r.tag().map_err(shape)? != COSE_SIGN1_TAG {
                return Err(FormatError::Envelope(CborError::Shape(
                    "signature is not a tagged COSE_Sign1".into(),
                )));
            }
            if r.array().map_err(shape)? != 4 {
                return Err(FormatError::Envelope(CborError::Shape(
                    "COSE_Sign1 is not a 4-element array".into(),
                )));
            }
            let protected = r
                .bytes(MAX_PROTECTED_LEN, "protected header")
                .map_err(shape)?
                .to_vec();
            // The CDDL's `.size (1..MAX_PROTECTED_LEN)`: an empty protected header breaks the
            // envelope's shape (exit 5) before any signature is looked at.
            if protected.is_empty() {
                return Err(FormatError::Envelope(CborError::Shape(
                    "a signature's protected header is empty (it must hold 1 to MAX_PROTECTED_LEN bytes)".into(),
                )));
            }
            // The unprotected header is not covered by the signature, so it must be empty: a
            // byte there could change without any check noticing.
            if r.map().map_err(shape)? != 0 {
                return Err(FormatError::Envelope(CborError::Shape(
                    "unprotected header is not empty".into(),
                )));
            }
            r.null().map_err(shape)?;
            let signature = r
                .bytes(MAX_SIGNATURE_LEN, "signature")
                .map_err(shape)?
                .to_vec();
            signatures.push(RawSignature {
                protected,
                signature,
            });
        }
        r.finish().map_err(shape)?;
        Ok(Envelope {
            manifest,
            signatures,
        })
    }

    /// The deterministic encoding of this envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        use ciborium::value::Value;
        let sigs = self
            .signatures
            .iter()
            .map(|s| {
                Value::Tag(
                    COSE_SIGN1_TAG,
                    Box::new(Value::Array(vec![
                        Value::Bytes(s.protected.clone()),
                        Value::Map(vec![]),
                        Value::Null,
                        Value::Bytes(s.signature.clone()),
                    ])),
                )
            })
            .collect();
        let v = Value::Array(vec![
            Value::Bytes(self.manifest.clone()),
            Value::Array(sigs),
        ]);
        // Only byte strings, arrays, an empty map, null and a tag: nothing that can fail.
        cbor::encode(&v).expect("envelope values are always encodable")
    }
}

/// The architecture as it is signed: the deterministic CBOR encoding of the `arch` field, kept
/// as bytes. The format layer does not read it; it is decoded into a graph
/// ([`crate::model::Graph::decode`]) only once the manifest is authenticated, which also
/// checks its structure and text (FORMAT.md section 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arch(Vec<u8>);

impl Arch {
    /// Wraps the encoding of an architecture.
    pub fn from_encoded(bytes: Vec<u8>) -> Arch {
        Arch(bytes)
    }

    /// The deterministic CBOR encoding, as signed.
    pub fn encoded(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let value = cbor::decode(&self.0).map_err(serde::ser::Error::custom)?;
        value.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
        // The manifest's decoder already refused any non-canonical encoding, so this is the
        // item's signed encoding again, byte for byte.
        let value = ciborium::value::Value::deserialize(d)?;
        if !value.is_map() {
            // Refused as the graph's own decoding refuses it, with the same words.
            let err = value
                .deserialized::<BTreeMap<String, ciborium::value::Value>>()
                .err()
                .map_or_else(
                    || "expected map".to_owned(),
                    |ciborium::value::Error::Custom(m)| m,
                );
            return Err(serde::de::Error::custom(err));
        }
        cbor::encode(&value)
            .map(Arch)
            .map_err(serde::de::Error::custom)
    }
}

/// Byte length of a tensor of `shape` and `dtype`, or `None` on overflow.
pub fn tensor_len(dtype: DType, shape: &[u64]) -> Option<u64> {
    shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
}

/// The signed manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u64,
    pub model: ModelInfo,
    pub payload: PayloadInfo,
    pub tensors: Vec<TensorEntry>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub arch: Option<Arch>,
    /// Present exactly when the payload is encrypted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub encryption: Option<EncryptionInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crit: Vec<String>,
}

/// How an encrypted payload's file key reaches its readers: the payload nonce and one sealed
/// copy of the file key per recipient. Signed, so recipients cannot be swapped or stripped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncryptionInfo {
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    pub recipients: Vec<RecipientEntry>,
}

/// One recipient of the file key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RecipientEntry {
    X25519(X25519Entry),
    Argon2id(Argon2idEntry),
}

/// Type tag of an X25519 recipient.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum X25519Tag {
    X25519,
}

/// Type tag of a passphrase recipient.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Argon2idTag {
    Argon2id,
}

/// The file key sealed for an X25519 public key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct X25519Entry {
    #[serde(rename = "type")]
    pub tag: X25519Tag,
    #[serde(with = "serde_bytes")]
    pub kid: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub epk: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// The file key sealed under a passphrase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Argon2idEntry {
    #[serde(rename = "type")]
    pub tag: Argon2idTag,
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
    pub m: u32,
    pub t: u32,
    pub p: u32,
    #[serde(with = "serde_bytes")]
    pub sealed: Vec<u8>,
}

/// The start of an encrypted payload's plaintext: what a raw manifest would show, hidden.
/// The plaintext is `u32` big-endian length of this map's encoding, the encoding, zero padding
/// to a multiple of [`TENSOR_ALIGN`], then a raw payload of `length` bytes laid out as section 6
/// prescribes for `tensors`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InnerManifest {
    pub tensors: Vec<TensorEntry>,
    pub length: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub arch: Option<Arch>,
}

impl InnerManifest {
    /// The plaintext bytes that come before the raw payload.
    pub fn header_block(&self) -> Vec<u8> {
        let cbor = cbor::to_vec(self).expect("tensor tables and graphs always encode");
        let mut block = (cbor.len() as u32).to_be_bytes().to_vec();
        block.extend_from_slice(&cbor);
        block.resize(align_up(block.len() as u64, TENSOR_ALIGN) as usize, 0);
        block
    }

    /// Parses decrypted plaintext: the inner manifest, checked as strictly as an outer one,
    /// and the offset where the raw payload starts, which must run exactly to the end.
    pub fn parse(plaintext: &[u8]) -> Result<(InnerManifest, Layout, usize), FormatError> {
        let start = InnerManifest::header_len(plaintext)?;
        let head = plaintext
            .get(..start)
            .ok_or_else(|| inner_invalid("shorter than its header"))?;
        let (inner, layout) = InnerManifest::parse_header(head, plaintext.len() as u64)?;
        Ok((inner, layout, start))
    }

    /// The length of the header block (length prefix, inner manifest, zero padding) from the
    /// first 4 bytes of the plaintext: the raw payload starts there.
    pub fn header_len(plaintext: &[u8]) -> Result<usize, FormatError> {
        let len = plaintext
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| inner_invalid("shorter than its header"))?;
        if len > MAX_ENVELOPE_LEN {
            return Err(inner_invalid(&format!(
                "inner header of {len} bytes is over the limit"
            )));
        }
        Ok(align_up(4 + len as u64, TENSOR_ALIGN) as usize)
    }

    /// Parses the header block `head` (exactly [`InnerManifest::header_len`] bytes) of a
    /// plaintext of `plain_len` bytes in all.
    pub fn parse_header(
        head: &[u8],
        plain_len: u64,
    ) -> Result<(InnerManifest, Layout), FormatError> {
        let start = InnerManifest::header_len(head)?;
        let end = 4 + u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if head.len() != start {
            return Err(inner_invalid("shorter than its header"));
        }
        let value = cbor::decode(&head[4..end]).map_err(FormatError::Manifest)?;
        let inner: InnerManifest = value
            .deserialized()
            .map_err(|e| FormatError::Manifest(cbor::shape_error(e)))?;
        if head[end..].iter().any(|&b| b != 0) {
            return Err(inner_invalid("header padding is not zero"));
        }
        let after = plain_len.saturating_sub(start as u64);
        if plain_len < start as u64 || after != inner.length {
            return Err(inner_invalid(&format!(
                "{after} payload bytes follow the header, which declares {}",
                inner.length
            )));
        }
        let layout = raw_layout(&inner.tensors, inner.length)?;
        Ok((inner, layout))
    }
}

fn inner_invalid(what: &str) -> FormatError {
    FormatError::invalid(format!("encrypted payload: {what}"))
}

/// Associated data of every chunk of an encrypted payload: SHA-256 over the deterministic CBOR
/// of `["nnsign/v1 encrypted payload", model, encryption]`. It binds the ciphertext to the
/// signed metadata and recipients, so it cannot be moved under another envelope.
pub fn encryption_ad(model: &ModelInfo, encryption: &EncryptionInfo) -> [u8; 32] {
    use sha2::Digest;
    let bytes = cbor::to_vec(&("nnsign/v1 encrypted payload", model, encryption))
        .expect("metadata always encodes");
    sha2::Sha256::digest(bytes).into()
}

/// Bytes of a sealed file key: 32 and the AEAD tag.
pub const SEALED_KEY_LEN: usize = 48;

impl EncryptionInfo {
    /// Whether the file key is sealed under a passphrase (which is then its only recipient).
    pub fn has_passphrase(&self) -> bool {
        (self.recipients.iter()).any(|r| matches!(r, RecipientEntry::Argon2id(_)))
    }

    /// The manifest form of a nonce and the stanzas `crypto` made.
    pub fn new(nonce: [u8; 16], stanzas: &[Stanza]) -> EncryptionInfo {
        let recipients = stanzas
            .iter()
            .map(|s| match s {
                Stanza::X25519 { kid, epk, sealed } => RecipientEntry::X25519(X25519Entry {
                    tag: X25519Tag::X25519,
                    kid: kid.0.to_vec(),
                    epk: epk.to_vec(),
                    sealed: sealed.clone(),
                }),
                Stanza::Argon2id {
                    salt,
                    costs,
                    sealed,
                } => RecipientEntry::Argon2id(Argon2idEntry {
                    tag: Argon2idTag::Argon2id,
                    salt: salt.to_vec(),
                    m: costs.m_kib,
                    t: costs.t,
                    p: costs.p,
                    sealed: sealed.clone(),
                }),
            })
            .collect();
        EncryptionInfo {
            nonce: nonce.to_vec(),
            recipients,
        }
    }

    /// Checks every field's size and the recipient rules, and returns the nonce and stanzas.
    pub fn stanzas(&self) -> Result<([u8; 16], Vec<Stanza>), FormatError> {
        let bad = |what: &str| FormatError::invalid(format!("encryption: {what}"));
        let nonce: [u8; 16] = self
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| bad("nonce is not 16 bytes"))?;
        if self.recipients.is_empty() || self.recipients.len() > MAX_RECIPIENTS {
            return Err(bad(&format!(
                "{} recipients; 1 to {MAX_RECIPIENTS} are allowed",
                self.recipients.len()
            )));
        }
        let mut stanzas = Vec::with_capacity(self.recipients.len());
        for r in &self.recipients {
            let sealed_ok = |s: &[u8]| s.len() == SEALED_KEY_LEN;
            stanzas.push(match r {
                RecipientEntry::X25519(x) => {
                    let kid: [u8; 8] = x
                        .kid
                        .as_slice()
                        .try_into()
                        .map_err(|_| bad("kid is not 8 bytes"))?;
                    let epk: [u8; 32] = x
                        .epk
                        .as_slice()
                        .try_into()
                        .map_err(|_| bad("epk is not 32 bytes"))?;
                    if !sealed_ok(&x.sealed) {
                        return Err(bad("a sealed key is not 48 bytes"));
                    }
                    if stanzas
                        .iter()
                        .any(|s| matches!(s, Stanza::X25519 { kid: k, .. } if k.0 == kid))
                    {
                        return Err(bad("a recipient appears twice"));
                    }
                    Stanza::X25519 {
                        kid: crate::keys::KeyId(kid),
                        epk,
                        sealed: x.sealed.clone(),
                    }
                }
                RecipientEntry::Argon2id(a) => {
                    // As in age: a passphrase is the only recipient. Beside public keys it would
                    // make the artifact only as safe as the passphrase while it looks
                    // key-protected.
                    if self.recipients.len() != 1 {
                        return Err(bad("a passphrase must be the only recipient"));
                    }
                    let salt: [u8; 16] = a
                        .salt
                        .as_slice()
                        .try_into()
                        .map_err(|_| bad("salt is not 16 bytes"))?;
                    if !sealed_ok(&a.sealed) {
                        return Err(bad("a sealed key is not 48 bytes"));
                    }
                    let costs = Argon2Costs {
                        m_kib: a.m,
                        t: a.t,
                        p: a.p,
                    };
                    costs.check().map_err(|e| bad(&e.to_string()))?;
                    Stanza::Argon2id {
                        salt,
                        costs,
                        sealed: a.sealed.clone(),
                    }
                }
            });
        }
        Ok((nonce, stanzas))
    }
}

/// What the model is, as its producer stated it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub version: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub description: Option<String>,
    /// Seconds since the Unix epoch, UTC.
    pub created: u64,
    /// After this time (seconds since the Unix epoch) verifiers refuse the artifact.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub expires: Option<u64>,
    pub producer: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The artifact this model was derived from (fine-tuned, retrained, converted).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub parent: Option<Parent>,
}

/// Lineage: the artifact a model was made from, named by its artifact digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Parent {
    /// SHA-256 of the parent's manifest bytes (its artifact digest).
    #[serde(with = "serde_bytes")]
    pub digest: Vec<u8>,
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub version: Option<String>,
}

/// A model version as SemVer 2.0.0 (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`), the only form a
/// manifest holds, so that versions compare by SemVer precedence.
pub fn parse_version(what: &str, v: &str) -> Result<semver::Version, FormatError> {
    semver::Version::parse(v).map_err(|e| {
        FormatError::invalid(format!(
            "{what} {v:?} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.4.0): {e}"
        ))
    })
}

/// How the payload is stored and the digests that cover it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PayloadInfo {
    pub encoding: String,
    pub length: u64,
    pub chunk_size: u64,
    /// SHA-256 of each chunk, concatenated: 32 bytes per chunk, in payload order.
    #[serde(with = "serde_bytes")]
    pub digests: Vec<u8>,
    /// Byte lengths of the shard files that hold the payload, in payload order (FORMAT.md
    /// section 14); absent when the payload follows the header in the artifact's own file.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub shards: Option<Vec<u64>>,
}

/// One entry of the tensor table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub offset: u64,
    pub length: u64,
}

/// An optional field that, when present, must hold a value: `null` would be a second encoding of
/// "absent", and deterministic encoding allows one.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A tensor of a validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub offset: u64,
    pub length: u64,
}

/// One digest chunk. In a raw payload it lies inside one tensor's segment (the tensor's bytes
/// and the padding after them): a chunk never spans two tensors, so a failing digest names
/// exactly one tensor, and equal tensors have equal digests in any artifact. An encrypted
/// payload shows no tensors; its chunks cut the ciphertext at fixed intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub start: u64,
    pub end: u64,
    /// Index of the tensor whose segment holds the chunk (`None` in an encrypted payload).
    pub tensor: Option<usize>,
}

/// The payload layout a validated manifest describes: tensors in payload order, with the
/// padding between them implied, and the digest chunks.
#[derive(Debug, Clone)]
pub struct Layout {
    pub tensors: Vec<TensorInfo>,
    pub length: u64,
    pub chunks: Vec<Chunk>,
    pub digests: Vec<[u8; 32]>,
    /// The payload ranges of the shard files, in order (empty when the payload is not
    /// sharded). Each starts where a chunk starts.
    pub shards: Vec<std::ops::Range<u64>>,
}

impl Layout {
    /// Computes the offsets for tensors of the given byte lengths, in order: the first at 0,
    /// each next one at the end of the previous rounded up to [`TENSOR_ALIGN`]. Returns the
    /// offsets and the payload length.
    pub fn place(lengths: impl IntoIterator<Item = u64>) -> Option<(Vec<u64>, u64)> {
        let mut offsets = Vec::new();
        let mut end = 0u64;
        for len in lengths {
            offsets.push(end);
            end = end
                .checked_add(len)?
                .checked_add(TENSOR_ALIGN - 1)
                .map(|n| n / TENSOR_ALIGN * TENSOR_ALIGN)?;
        }
        Some((offsets, end))
    }

    /// The digest chunks of a payload: tensor k's segment runs from its offset to the next
    /// tensor's offset (or the payload end), and is cut into [`CHUNK_SIZE`] pieces from its
    /// start, the last one shorter. Empty segments have no chunk.
    pub fn chunks_for(tensors: &[TensorInfo], length: u64) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        for (k, t) in tensors.iter().enumerate() {
            let seg_end = tensors.get(k + 1).map_or(length, |n| n.offset);
            let mut start = t.offset;
            while start < seg_end {
                let end = (start + CHUNK_SIZE).min(seg_end);
                chunks.push(Chunk {
                    start,
                    end,
                    tensor: Some(k),
                });
                start = end;
            }
        }
        chunks
    }

    /// Payload byte range of chunk `i`.
    pub fn chunk_range(&self, i: usize) -> std::ops::Range<u64> {
        self.chunks[i].start..self.chunks[i].end
    }

    /// The chunks of an encrypted payload of `length` bytes: every [`ENC_CHUNK_SIZE`] bytes.
    pub fn cipher_chunks(length: u64) -> Vec<Chunk> {
        (0..length.div_ceil(ENC_CHUNK_SIZE))
            .map(|i| Chunk {
                start: i * ENC_CHUNK_SIZE,
                end: ((i + 1) * ENC_CHUNK_SIZE).min(length),
                tensor: None,
            })
            .collect()
    }

    /// The tensor whose segment holds chunk `i` (none in an encrypted payload).
    pub fn chunk_tensor(&self, i: usize) -> Option<&TensorInfo> {
        self.chunks[i].tensor.map(|k| &self.tensors[k])
    }

    /// How many bytes at the start of chunk `i` are tensor bytes (or ciphertext); the rest is
    /// padding.
    pub fn chunk_data_len(&self, i: usize) -> usize {
        let c = self.chunks[i];
        match self.chunk_tensor(i) {
            Some(t) => ((t.offset + t.length).clamp(c.start, c.end) - c.start) as usize,
            None => (c.end - c.start) as usize,
        }
    }

    /// Checks that the tensor bytes of chunk `i` are valid elements of their dtype (FORMAT.md
    /// section 5): every byte of a BOOL tensor is 00 or 01, since readers disagree on what any
    /// other byte means (NumPy and PyTorch booleans are one byte that must be 0 or 1). Returns
    /// the tensor, the offset in it and the value of the first byte that is not.
    pub fn check_elements(&self, i: usize, chunk: &[u8]) -> Result<(), BoolError> {
        let Some(t) = self.chunk_tensor(i) else {
            return Ok(());
        };
        let data = self.chunk_data_len(i);
        let at = self.chunks[i].start - t.offset;
        check_bools(t, at, &chunk[..data])
    }

    /// Checks `payload.shards` (FORMAT.md section 14) against this layout and returns each
    /// shard's payload range: 1 to [`MAX_SHARDS`] shards, none empty, their lengths adding up
    /// to the payload's, each starting where a chunk starts (so no chunk spans two files).
    pub fn shard_ranges(&self, lengths: &[u64]) -> Result<Vec<std::ops::Range<u64>>, FormatError> {
        if self.length == 0 {
            return Err(FormatError::invalid(
                "an empty payload has no shards; payload.shards must be absent",
            ));
        }
        if lengths.is_empty() || lengths.len() > MAX_SHARDS {
            return Err(FormatError::invalid(format!(
                "{} shards; a sharded payload has 1 to {MAX_SHARDS}",
                lengths.len()
            )));
        }
        let mut ranges = Vec::with_capacity(lengths.len());
        let mut start = 0u64;
        // Chunks are in payload order: a cursor over their starts meets every boundary.
        let mut chunk = 0usize;
        for (k, &len) in lengths.iter().enumerate() {
            if len == 0 {
                return Err(FormatError::invalid(format!("shard {} is empty", k + 1)));
            }
            while chunk < self.chunks.len() && self.chunks[chunk].start < start {
                chunk += 1;
            }
            if self.chunks.get(chunk).map(|c| c.start) != Some(start) {
                return Err(FormatError::invalid(format!(
                    "shard {} starts at payload offset {start}, which is not the start of a digest chunk",
                    k + 1
                )));
            }
            let end = start
                .checked_add(len)
                .filter(|&end| end <= self.length)
                .ok_or_else(|| {
                    FormatError::invalid(format!(
                        "shard {} ends past the payload's {} bytes",
                        k + 1,
                        self.length
                    ))
                })?;
            ranges.push(start..end);
            start = end;
        }
        if start != self.length {
            return Err(FormatError::invalid(format!(
                "the shards hold {start} bytes, the payload {}",
                self.length
            )));
        }
        Ok(ranges)
    }

    /// The shard whose range holds payload offset `at`: none when the payload is not sharded,
    /// or `at` is past its end.
    pub fn shard_holding(&self, at: u64) -> Option<usize> {
        let k = self.shards.partition_point(|r| r.end <= at);
        (k < self.shards.len()).then_some(k)
    }

    /// Checks that every padding byte of chunk `i` is zero; returns the payload offset of the
    /// first that is not.
    pub fn check_padding(&self, i: usize, chunk: &[u8]) -> Result<(), u64> {
        let data = self.chunk_data_len(i);
        match chunk[data..].iter().position(|&b| b != 0) {
            Some(p) => Err(self.chunks[i].start + (data + p) as u64),
            None => Ok(()),
        }
    }
}

/// A byte of a BOOL tensor that is neither 00 nor 01.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tensor {tensor:?} is BOOL but holds the byte {byte:#04x} at its byte {offset}; BOOL elements are 0x00 or 0x01")]
pub struct BoolError {
    pub tensor: String,
    /// Offset of the byte in the tensor.
    pub offset: u64,
    pub byte: u8,
}

/// Checks `bytes`, which start at byte `at` of tensor `t`, if `t` is BOOL.
pub fn check_bools(t: &TensorInfo, at: u64, bytes: &[u8]) -> Result<(), BoolError> {
    if t.dtype != DType::Bool {
        return Ok(());
    }
    match bytes.iter().position(|&b| b > 1) {
        Some(p) => Err(BoolError {
            tensor: t.name.clone(),
            offset: at + p as u64,
            byte: bytes[p],
        }),
        None => Ok(()),
    }
}

/// Whether text may span lines: descriptions and label values may hold tab and newline; names
/// are printed on one line, where a newline could forge another line of output.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    One,
    Many,
}

/// Characters refused in every text (FORMAT.md section 5), a fixed list rather than a Unicode
/// category so that readers built on different Unicode versions agree: the line and paragraph
/// separators U+2028 and U+2029 (which some terminals, editors and JSON-in-JavaScript consumers
/// break lines at: a forged line), the bidirectional controls U+061C, U+200E, U+200F,
/// U+202A-U+202E and U+2066-U+2069 (which reorder text on screen), and the invisible U+200B-U+200D,
/// U+2060-U+2065, U+206A-U+206F and U+FEFF (which hide differences): each lets one name display
/// as another, or as more than one line.
fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

/// Checks one text field: its length, and no control characters (Unicode Cc: U+0000-U+001F and
/// U+007F-U+009F, which include the escape that starts terminal sequences) except tab and
/// newline where `lines` allows them, and none of the characters [`is_deceptive`] lists.
pub fn check_text(what: &str, s: &str, max: usize, lines: Lines) -> Result<(), FormatError> {
    if s.len() > max {
        return Err(FormatError::invalid(format!(
            "{what} is {} bytes, more than the limit of {max}",
            s.len()
        )));
    }
    let allowed = |c: char| lines == Lines::Many && (c == '\n' || c == '\t');
    if let Some(c) = s
        .chars()
        .find(|&c| (c.is_control() && !allowed(c)) || is_deceptive(c))
    {
        return Err(FormatError::invalid(format!(
            "{what} \"{}\" contains control or invisible formatting characters (U+{:04X} is refused)",
            s.escape_default(),
            u32::from(c)
        )));
    }
    Ok(())
}

/// Checks one label: its key is one-line text of 1 to [`MAX_NAME_LEN`] bytes outside
/// [`RESERVED_LABEL_PREFIX`], its value multi-line text of at most [`MAX_TEXT_LEN`] bytes.
pub fn check_label(k: &str, v: &str) -> Result<(), FormatError> {
    if k.is_empty() {
        return Err(FormatError::invalid("a label has an empty key"));
    }
    check_text("label key", k, MAX_NAME_LEN, Lines::One)?;
    if k.starts_with(RESERVED_LABEL_PREFIX) {
        return Err(FormatError::invalid(format!(
            "label {k:?}: keys starting with {RESERVED_LABEL_PREFIX:?} are reserved for what nnsign itself records"
        )));
    }
    check_text(&format!("label {k:?}"), v, MAX_TEXT_LEN, Lines::Many)
}

/// Checks a model's metadata against the caps, for both writers and readers.
pub fn check_model_info(m: &ModelInfo) -> Result<(), FormatError> {
    if m.name.is_empty() {
        return Err(FormatError::invalid("model name is empty"));
    }
    check_text("model name", &m.name, MAX_NAME_LEN, Lines::One)?;
    if let Some(v) = &m.version {
        check_text("model version", v, MAX_NAME_LEN, Lines::One)?;
        parse_version("model version", v)?;
    }
    if let Some(d) = &m.description {
        check_text("description", d, MAX_TEXT_LEN, Lines::Many)?;
    }
    check_text("producer", &m.producer, MAX_NAME_LEN, Lines::One)?;
    if m.created > MAX_CREATED {
        return Err(FormatError::invalid(format!(
            "creation time {} is after 9999-12-31 (the limit is {MAX_CREATED} seconds)",
            m.created
        )));
    }
    if let Some(e) = m.expires {
        if e <= m.created || e > MAX_CREATED {
            return Err(FormatError::invalid(format!(
                "expiry time {e} must be after the creation time {} and at most {MAX_CREATED}",
                m.created
            )));
        }
    }
    if let Some(p) = &m.parent {
        if p.digest.len() != 32 {
            return Err(FormatError::invalid(format!(
                "parent digest has {} bytes, not 32 (SHA-256)",
                p.digest.len()
            )));
        }
        if p.name.is_empty() {
            return Err(FormatError::invalid("parent model name is empty"));
        }
        check_text("parent model name", &p.name, MAX_NAME_LEN, Lines::One)?;
        if let Some(v) = &p.version {
            check_text("parent version", v, MAX_NAME_LEN, Lines::One)?;
            parse_version("parent version", v)?;
        }
    }
    if m.labels.len() > MAX_LABELS {
        return Err(FormatError::invalid(format!(
            "{} labels, more than the limit of {MAX_LABELS}",
            m.labels.len()
        )));
    }
    for (k, v) in &m.labels {
        check_label(k, v)?;
    }
    Ok(())
}

/// Checks a tensor name against the caps.
pub fn check_tensor_name(name: &str) -> Result<(), FormatError> {
    if name.is_empty() {
        return Err(FormatError::invalid("a tensor has an empty name"));
    }
    check_text("tensor name", name, MAX_NAME_LEN, Lines::One)
}

/// The manifest's `crit` (FORMAT.md section 5), if present: a non-empty array of text, no
/// name twice, each the name of a field present in the manifest (as RFC 9052 asks of COSE's
/// `crit`: a critical field that is absent is a contradiction) that this reader implements.
fn check_crit(
    entries: &[(ciborium::value::Value, ciborium::value::Value)],
) -> Result<(), FormatError> {
    let Some((_, crit)) = entries.iter().find(|(k, _)| k.as_text() == Some("crit")) else {
        return Ok(());
    };
    let names = match crit {
        ciborium::value::Value::Array(names) if !names.is_empty() => names,
        _ => {
            return Err(FormatError::invalid(
                "crit is not a non-empty array of names",
            ))
        }
    };
    let mut seen = HashSet::new();
    for n in names {
        let Some(name) = n.as_text() else {
            return Err(FormatError::invalid("crit holds a non-text entry"));
        };
        if !seen.insert(name) {
            return Err(FormatError::invalid(format!("crit lists {name:?} twice")));
        }
        if !KNOWN_FIELDS.contains(&name) {
            return Err(FormatError::Unsupported(format!(
                "the manifest requires support for {name:?}"
            )));
        }
        if !entries.iter().any(|(k, _)| k.as_text() == Some(name)) {
            return Err(FormatError::invalid(format!(
                "crit lists {name:?}, which the manifest does not have"
            )));
        }
    }
    Ok(())
}

impl Manifest {
    /// Decodes manifest bytes strictly. Call only on bytes whose signature has been checked (or
    /// that the user chose to read unverified).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, FormatError> {
        let value = cbor::decode(bytes).map_err(FormatError::Manifest)?;
        // A newer format may not even have this one's shape: say so before mapping onto the
        // struct, which would fail with a less useful message.
        let format = match &value {
            ciborium::value::Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_text() == Some("format"))
                .and_then(|(_, v)| v.as_integer())
                .and_then(|i| u64::try_from(i).ok()),
            _ => None,
        };
        if let Some(f) = format.filter(|&f| f != MANIFEST_FORMAT) {
            return Err(unsupported_format(f));
        }
        // Reject unknown critical fields before mapping onto the struct, which would ignore them.
        if let ciborium::value::Value::Map(entries) = &value {
            check_crit(entries)?;
        }
        value
            .deserialized()
            .map_err(|e| FormatError::Manifest(cbor::shape_error(e)))
    }

    /// The deterministic encoding of this manifest.
    pub fn encode(&self) -> Vec<u8> {
        // Strings, integers, maps with distinct text keys and byte strings: cannot fail.
        cbor::to_vec(self).expect("manifest values are always encodable")
    }

    /// Checks every rule of FORMAT.md sections 5 and 6 and returns the payload layout.
    pub fn validate(&self) -> Result<Layout, FormatError> {
        let mut layout = self.validate_tables()?;
        let p = &self.payload;
        if p.digests.len() != layout.chunks.len() * 32 {
            return Err(FormatError::invalid(format!(
                "{} digest bytes for {} chunks (expected {})",
                p.digests.len(),
                layout.chunks.len(),
                layout.chunks.len() * 32
            )));
        }
        layout.digests = p
            .digests
            .chunks_exact(32)
            .map(|c| c.try_into().expect("chunks_exact(32) yields 32 bytes"))
            .collect();
        Ok(layout)
    }

    /// Every check of [`Manifest::validate`] but the digests' count, which a writer learns from
    /// the layout this returns (its `digests` are left empty).
    pub fn validate_tables(&self) -> Result<Layout, FormatError> {
        let mut layout = self.validate_payload()?;
        if let Some(lengths) = &self.payload.shards {
            layout.shards = layout.shard_ranges(lengths)?;
        }
        Ok(layout)
    }

    /// The rules of sections 5, 6 and 11 for the payload and tensor table.
    fn validate_payload(&self) -> Result<Layout, FormatError> {
        if self.format != MANIFEST_FORMAT {
            return Err(unsupported_format(self.format));
        }
        check_model_info(&self.model)?;
        let p = &self.payload;
        if p.length > MAX_PAYLOAD_LEN {
            return Err(FormatError::invalid(format!(
                "payload length {} exceeds the limit of {MAX_PAYLOAD_LEN}",
                p.length
            )));
        }
        match p.encoding.as_str() {
            ENCODING_RAW if self.encryption.is_none() => {}
            ENCODING_RAW => {
                return Err(FormatError::invalid(
                    "a raw payload has no encryption field",
                ))
            }
            ENCODING_STREAM => return self.validate_encrypted(),
            other => {
                return Err(FormatError::Unsupported(format!(
                    "the payload encoding is {other:?}"
                )))
            }
        }
        if p.chunk_size != CHUNK_SIZE {
            return Err(FormatError::invalid(format!(
                "chunk size {} is not the version 1 chunk size {CHUNK_SIZE}",
                p.chunk_size
            )));
        }
        raw_layout(&self.tensors, p.length)
    }

    /// The rules of an encrypted payload (FORMAT.md section 11): the tensor table and the
    /// architecture are inside the ciphertext, whose digest chunks are fixed-size.
    fn validate_encrypted(&self) -> Result<Layout, FormatError> {
        let p = &self.payload;
        let enc = self.encryption.as_ref().ok_or_else(|| {
            FormatError::invalid("an encrypted payload needs the encryption field")
        })?;
        if !self.crit.iter().any(|c| c == "encryption") {
            return Err(FormatError::invalid(
                "an encrypted manifest must list \"encryption\" in crit, so that readers without encryption refuse it",
            ));
        }
        if !self.tensors.is_empty() || self.arch.is_some() {
            return Err(FormatError::invalid(
                "an encrypted artifact keeps its tensor table and architecture inside the ciphertext",
            ));
        }
        if p.chunk_size != ENC_CHUNK_SIZE {
            return Err(FormatError::invalid(format!(
                "chunk size {} is not the encrypted-payload chunk size {ENC_CHUNK_SIZE}",
                p.chunk_size
            )));
        }
        if crate::crypto::PayloadCipher::plaintext_len(p.length).is_none() {
            return Err(FormatError::invalid(format!(
                "payload length {} is not a length STREAM encryption produces",
                p.length
            )));
        }
        enc.stanzas()?;
        Ok(Layout {
            tensors: Vec::new(),
            length: p.length,
            chunks: Layout::cipher_chunks(p.length),
            digests: Vec::new(),
            shards: Vec::new(),
        })
    }

    /// Whether the payload is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.payload.encoding == ENCODING_STREAM
    }
}

/// Checks a tensor table against a payload of `length` bytes (FORMAT.md sections 5 and 6) and
/// returns the layout, digests left empty.
pub fn raw_layout(table: &[TensorEntry], length: u64) -> Result<Layout, FormatError> {
    if table.len() > MAX_TENSORS {
        return Err(FormatError::invalid(format!(
            "{} tensors, more than the limit of {MAX_TENSORS}",
            table.len()
        )));
    }
    let mut names = HashSet::with_capacity(table.len());
    let mut tensors = Vec::with_capacity(table.len());
    for t in table {
        check_tensor_name(&t.name)?;
        if !names.insert(t.name.as_str()) {
            return Err(FormatError::invalid(format!(
                "tensor {:?} appears twice",
                t.name
            )));
        }
        let dtype = DType::from_name(&t.dtype).ok_or_else(|| {
            FormatError::invalid(format!(
                "tensor {:?} has unknown dtype {:?}",
                t.name, t.dtype
            ))
        })?;
        if t.shape.len() > MAX_RANK {
            return Err(FormatError::invalid(format!(
                "tensor {:?} has {} dimensions, more than the limit of {MAX_RANK}",
                t.name,
                t.shape.len()
            )));
        }
        let len = tensor_len(dtype, &t.shape).filter(|&n| n <= MAX_PAYLOAD_LEN);
        if len != Some(t.length) {
            return Err(FormatError::invalid(format!(
                "tensor {:?}: length {} does not match {dtype} {:?}",
                t.name, t.length, t.shape
            )));
        }
        tensors.push(TensorInfo {
            name: t.name.clone(),
            dtype,
            shape: t.shape.clone(),
            offset: t.offset,
            length: t.length,
        });
    }
    let (offsets, end) = Layout::place(tensors.iter().map(|t| t.length))
        .ok_or_else(|| FormatError::invalid("tensor lengths overflow"))?;
    for (t, expected) in tensors.iter().zip(&offsets) {
        if t.offset != *expected {
            return Err(FormatError::invalid(format!(
                "tensor {:?} is at offset {}, but the layout puts it at {expected}",
                t.name, t.offset
            )));
        }
    }
    if end != length {
        return Err(FormatError::invalid(format!(
            "payload length {} does not match the tensor table, which ends at {end}",
            length
        )));
    }
    let chunks = Layout::chunks_for(&tensors, length);
    Ok(Layout {
        tensors,
        length,
        chunks,
        digests: Vec::new(),
        shards: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(lengths: &[u64]) -> Layout {
        let (offsets, length) = Layout::place(lengths.iter().copied()).unwrap();
        let tensors: Vec<TensorInfo> = offsets
            .iter()
            .zip(lengths)
            .enumerate()
            .map(|(i, (&offset, &length))| TensorInfo {
                name: format!("t{i}"),
                dtype: DType::U8,
                shape: vec![length],
                offset,
                length,
            })
            .collect();
        let chunks = Layout::chunks_for(&tensors, length);
        Layout {
            digests: vec![[0; 32]; chunks.len()],
            tensors,
            length,
            chunks,
            shards: Vec::new(),
        }
    }

    #[test]
    fn placement_aligns_every_tensor_to_64_bytes() {
        let (offsets, end) = Layout::place([10, 0, 64, 1]).unwrap();
        assert_eq!(offsets, vec![0, 64, 64, 128]);
        assert_eq!(end, 192);
        assert_eq!(Layout::place([]).unwrap(), (vec![], 0));
        assert_eq!(Layout::place([u64::MAX]), None);
    }

    #[test]
    fn shards_start_at_chunk_starts_and_cover_the_payload_exactly() {
        // Tensors of 100 bytes and CHUNK_SIZE + 10: chunks start at 0, 128, 128 + CHUNK_SIZE.
        let l = layout(&[100, CHUNK_SIZE + 10]);
        let end = l.length;
        assert_eq!(l.shard_ranges(&[end]).unwrap(), vec![0..end]);
        assert_eq!(
            l.shard_ranges(&[128, CHUNK_SIZE, end - 128 - CHUNK_SIZE])
                .unwrap(),
            vec![0..128, 128..128 + CHUNK_SIZE, 128 + CHUNK_SIZE..end]
        );
        let refused = |lengths: &[u64]| l.shard_ranges(lengths).unwrap_err().to_string();
        assert!(refused(&[]).contains("0 shards"));
        assert!(refused(&[64, end - 64]).contains("shard 2 starts at payload offset 64"));
        assert!(refused(&[128, 0, end - 128]).contains("shard 2 is empty"));
        assert!(refused(&[128, end]).contains("shard 2 ends past the payload"));
        assert!(refused(&[128]).contains("the shards hold 128 bytes"));
        assert!(refused(&[u64::MAX]).contains("ends past"));
        assert!(refused(&vec![1; MAX_SHARDS + 1]).contains("1 to 65536"));
        // No payload, no chunk: nothing can start a shard.
        assert!(layout(&[]).shard_ranges(&[1]).is_err());
    }

    #[test]
    fn shard_files_are_named_after_the_artifact() {
        let p = |head: &str, k, n| shard_path(std::path::Path::new(head), k, n);
        assert_eq!(
            p("/m/llm.nns", 2, 40),
            std::path::Path::new("/m/llm-00002-of-00040.nnshard")
        );
        assert_eq!(
            p("llm", 1, 1),
            std::path::Path::new("llm-00001-of-00001.nnshard")
        );
        assert_eq!(
            p("a/.nns", 1, 2),
            std::path::Path::new("a/.nns-00001-of-00002.nnshard")
        );
        assert_eq!(
            p("x.nns.nns", 3, 3),
            std::path::Path::new("x.nns-00003-of-00003.nnshard")
        );
    }

    #[test]
    fn chunks_never_span_two_tensors() {
        let l = layout(&[10, 0, 64, 1]);
        let ranges: Vec<(u64, u64, usize)> = l
            .chunks
            .iter()
            .map(|c| (c.start, c.end, c.tensor.unwrap()))
            .collect();
        // The empty tensor t1 has an empty segment and no chunk.
        assert_eq!(ranges, vec![(0, 64, 0), (64, 128, 2), (128, 192, 3)]);
        assert_eq!(l.chunk_data_len(0), 10);
        assert_eq!(l.chunk_data_len(2), 1);
        let big = layout(&[CHUNK_SIZE * 2 + 1]);
        let ranges: Vec<(u64, u64)> = big.chunks.iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(
            ranges,
            vec![
                (0, CHUNK_SIZE),
                (CHUNK_SIZE, 2 * CHUNK_SIZE),
                (2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 64)
            ]
        );
        assert_eq!(big.chunk_data_len(2), 1);
    }

    #[test]
    fn padding_must_be_zero() {
        let l = layout(&[10, 1]);
        let mut chunk = vec![0u8; 64];
        chunk[..10].fill(7);
        assert_eq!(l.check_padding(0, &chunk), Ok(()));
        chunk[11] = 1;
        assert_eq!(l.check_padding(0, &chunk), Err(11));
        chunk[11] = 0;
        chunk[63] = 1;
        assert_eq!(l.check_padding(0, &chunk), Err(63));
        let mut second = vec![0u8; 64];
        second[0] = 5;
        second[1] = 1;
        assert_eq!(l.check_padding(1, &second), Err(65));
    }

    #[test]
    fn prelude_round_trip_and_rejections() {
        let p = write_prelude(300);
        assert_eq!(read_prelude(&p).unwrap(), 300);
        let mut bad = p;
        bad[0] = 0;
        assert!(matches!(read_prelude(&bad), Err(FormatError::BadMagic)));
        let mut bad = p;
        bad[9] = 2;
        assert!(matches!(
            read_prelude(&bad),
            Err(FormatError::FrameVersion(2))
        ));
        let mut bad = p;
        bad[11] = 1;
        assert!(matches!(read_prelude(&bad), Err(FormatError::Reserved)));
        assert!(matches!(
            read_prelude(&write_prelude(0)),
            Err(FormatError::EnvelopeLength(0))
        ));
        assert!(matches!(
            read_prelude(&write_prelude(MAX_ENVELOPE_LEN + 1)),
            Err(FormatError::EnvelopeLength(_))
        ));
        assert_eq!(payload_offset(48), 64);
        assert_eq!(payload_offset(49), 128);
    }
}

#[cfg(test)]
mod manifest_tests {
    use super::*;
    use ciborium::value::Value;

    fn sample() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            model: ModelInfo {
                name: "m".into(),
                version: None,
                description: None,
                created: 0,
                producer: "p".into(),
                expires: None,
                parent: None,
                labels: BTreeMap::new(),
            },
            payload: PayloadInfo {
                encoding: ENCODING_RAW.into(),
                length: 0,
                chunk_size: CHUNK_SIZE,
                digests: vec![],
                shards: None,
            },
            tensors: vec![],
            arch: None,
            encryption: None,
            crit: vec![],
        }
    }

    fn with_extra(key: Value) -> Vec<u8> {
        let Value::Map(mut entries) = cbor::decode(&sample().encode()).unwrap() else {
            unreachable!("a manifest is a map")
        };
        entries.push((key, Value::Null));
        cbor::encode(&Value::Map(entries)).unwrap()
    }

    fn with_arch(arch: Value) -> Vec<u8> {
        let Value::Map(mut entries) = cbor::decode(&sample().encode()).unwrap() else {
            unreachable!("a manifest is a map")
        };
        entries.push((Value::Text("arch".into()), arch));
        cbor::encode(&Value::Map(entries)).unwrap()
    }

    #[test]
    fn the_architecture_stays_its_signed_bytes_and_must_be_a_map() {
        // As when the graph was decoded with the manifest: absent is absent, null and other
        // types are refused with the graph's own words.
        for (arch, got) in [
            (Value::Null, "invalid type: null, expected map"),
            (
                Value::Integer(5.into()),
                "invalid type: integer `5`, expected map",
            ),
            (Value::Array(vec![]), "invalid type: sequence, expected map"),
        ] {
            let err = Manifest::decode(&with_arch(arch)).unwrap_err().to_string();
            assert_eq!(err, format!("malformed manifest: {got}"));
        }
        // A map is kept as it was signed, byte for byte, whatever it holds (the graph decodes
        // it, after authentication).
        let map = Value::Map(vec![
            (Value::Text("opset".into()), Value::Integer(2.into())),
            (Value::Text("z".into()), Value::Float(0.5)),
        ]);
        let m = Manifest::decode(&with_arch(map.clone())).unwrap();
        assert_eq!(m.arch.unwrap().encoded(), cbor::encode(&map).unwrap());
    }

    #[test]
    fn crit_names_each_present_field_once() {
        let with_crit = |names: &[&str]| {
            let Value::Map(mut entries) = cbor::decode(&sample().encode()).unwrap() else {
                unreachable!("a manifest is a map")
            };
            let names = names.iter().map(|n| Value::Text((*n).into())).collect();
            entries.push((Value::Text("crit".into()), Value::Array(names)));
            Manifest::decode(&cbor::encode(&Value::Map(entries)).unwrap())
        };
        assert!(with_crit(&["format", "tensors"]).is_ok());
        let err = with_crit(&["format", "format"]).unwrap_err().to_string();
        assert!(err.contains("crit lists \"format\" twice"), "{err}");
        let err = with_crit(&["arch"]).unwrap_err().to_string();
        assert!(err.contains("which the manifest does not have"), "{err}");
        let err = with_crit(&["x-new"]).unwrap_err().to_string();
        assert!(err.contains("requires support for \"x-new\""), "{err}");
    }

    #[test]
    fn text_refuses_separators_and_bidirectional_controls_by_code_point() {
        for c in [
            '\u{2028}', '\u{2029}', '\u{061C}', '\u{202E}', '\u{2066}', '\u{206F}', '\u{FEFF}',
        ] {
            let s = format!("a{c}b");
            for lines in [Lines::One, Lines::Many] {
                let err = check_text("t", &s, 64, lines).unwrap_err().to_string();
                assert!(err.contains(&format!("U+{:04X}", u32::from(c))), "{err}");
            }
        }
        // Newline and tab in multi-line text only; other scripts' letters everywhere.
        assert!(check_text("t", "a\nb\tc", 64, Lines::Many).is_ok());
        assert!(check_text("t", "a\nb", 64, Lines::One).is_err());
        assert!(check_text(
            "t",
            "\u{0645}\u{0648}\u{062F}\u{0644} \u{6A21}\u{578B}",
            64,
            Lines::One
        )
        .is_ok());
    }

    #[test]
    fn label_keys_are_one_line_names() {
        assert!(check_label(&"k".repeat(MAX_NAME_LEN), "").is_ok());
        assert!(check_label(&"k".repeat(MAX_NAME_LEN + 1), "").is_err());
        assert!(check_label("k", &"v\n".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn extensions_need_text_keys() {
        let m = Manifest::decode(&with_extra(Value::Text("x-extension".into()))).unwrap();
        assert_eq!(m, sample());
        assert!(Manifest::decode(&with_extra(Value::Integer(1.into()))).is_err());
    }
}
