//! Comparing two artifacts: what changed in their metadata, architecture, recipients and
//! tensors, from what their signatures cover.
//!
//! Content equality comes from the signed per-chunk digests alone. A tensor's chunks start at
//! its segment's start and never span two tensors (FORMAT.md section 6), so two tensors of the
//! same dtype and shape have segments of the same length cut at the same places, and equal
//! digest lists mean equal bytes. (The converse holds for valid artifacts only: a segment's
//! padding must be zero, which [`compare_values`] checks as it reads, and a signer could sign
//! digests over non-zero padding. Such an artifact fails every reader, so "changed" is never
//! said of equal bytes in an artifact that verifies.)
//!
//! An encrypted payload's digests cover ciphertext (FORMAT.md section 11), and its tensor table
//! and architecture are inside it: for such an artifact they are [`Content::Unknown`], never
//! guessed. Two encrypted artifacts are known to hold the same content only when their
//! ciphertext, recipients and associated data are identical.
//!
//! Trust is the caller's choice ([`open`]): without a trust store, an artifact is checked as
//! `inspect` checks it (every signature cryptographically valid) and as `verify` checks its
//! frame and manifest, and no trust is decided; with one, it must carry a signature by one of
//! its keys. Either way the payload is read only through the digest-checking reader
//! ([`compare_values`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ciborium::value::Value as Cbor;
use serde::Serialize;
use serde_json::Value as Json;

use crate::format::{DType, Manifest, RecipientEntry, TensorInfo};
use crate::keys::{hex, TrustStore};
use crate::model::Graph;
use crate::verify::{Artifact, Authenticated, VerifyError};

/// A failure to read one of the two artifacts, naming it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct ReadError {
    /// The artifact that failed.
    pub path: PathBuf,
    #[source]
    pub source: VerifyError,
}

/// Opens `path` and reads it as far as `verify` would before the payload, deciding no trust:
/// every signature must be cryptographically valid (each carries its public key), the manifest
/// must decode and validate, and the file must be exactly as long as the manifest says. An
/// unsigned artifact is accepted, as `inspect` accepts it. Every signature, valid or of an
/// algorithm this nnsign does not implement, ends up in [`Authenticated::others`].
fn open_untrusted(path: &Path) -> Result<Authenticated, VerifyError> {
    Artifact::open(path)?.integrity_only()
}

/// Opens `path` for comparison: with `trust`, it must carry a valid signature by one of its
/// keys (an unsigned artifact is refused); without, every signature must be valid but none is
/// trusted. No policy applies: a diff compares old and new releases whoever signed them and
/// whenever they expire.
pub fn open(path: &Path, trust: Option<&TrustStore>) -> Result<Authenticated, VerifyError> {
    match trust {
        Some(trust) => Artifact::open(path)?.authenticate(trust, false),
        None => open_untrusted(path),
    }
}

/// What is known about the two payloads' content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    Same,
    Different,
    /// An encrypted payload hides its tensors and its digests cover ciphertext: equality cannot
    /// be told without decrypting.
    Unknown,
}

/// Everything that differs between artifact `a` (old) and `b` (new).
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// Nothing differs and nothing is unknown: same metadata, architecture, recipients and
    /// tensor bytes. Signatures do not count: the same content signed by another key is the
    /// same model.
    pub identical: bool,
    /// Fields of the signed `model` map that differ, in key order, nested maps (labels, parent)
    /// entry by entry.
    pub metadata: Vec<FieldChange>,
    pub architecture: ArchDiff,
    pub encryption: EncryptionDiff,
    pub tensors: TensorDiff,
    pub content: Content,
    /// Why `content` is what it is, when that is not plain from the tensors.
    pub content_note: Option<String>,
}

/// One metadata field that was added, removed or changed.
#[derive(Debug, Clone, Serialize)]
pub struct FieldChange {
    /// Keys from the `model` map down, e.g. `["version"]` or `["labels", "team"]`.
    pub path: Vec<String>,
    /// The old value, absent when the field was added. Byte strings are shown as hex.
    pub old: Option<Json>,
    /// The new value, absent when the field was removed.
    pub new: Option<Json>,
}

/// How the architecture changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchStatus {
    /// Neither artifact has one (weights only).
    None,
    /// The same graph in both; or, with no summaries, the same ciphertext holds it.
    Unchanged,
    Added,
    Removed,
    Changed,
    /// At least one artifact is encrypted, and its architecture is inside the ciphertext.
    Unknown,
}

/// The architecture's change, with the nodes that explain it when the graphs name their nodes
/// uniquely.
#[derive(Debug, Clone, Serialize)]
pub struct ArchDiff {
    pub status: ArchStatus,
    pub old: Option<ArchSummary>,
    pub new: Option<ArchSummary>,
    pub nodes_added: Vec<String>,
    pub nodes_removed: Vec<String>,
    pub nodes_changed: Vec<String>,
    pub inputs_changed: bool,
    pub outputs_changed: bool,
}

/// A one-glance description of a graph.
#[derive(Debug, Clone, Serialize)]
pub struct ArchSummary {
    pub opset: u64,
    pub nodes: usize,
}

/// Who can decrypt each artifact; empty lists for an artifact that is not encrypted.
#[derive(Debug, Clone, Serialize)]
pub struct EncryptionDiff {
    pub old: Option<Vec<String>>,
    pub new: Option<Vec<String>>,
    pub recipients_added: Vec<String>,
    pub recipients_removed: Vec<String>,
}

impl EncryptionDiff {
    /// Whether encryption was added or removed, or the recipients changed.
    pub fn changed(&self) -> bool {
        self.old.is_some() != self.new.is_some()
            || !self.recipients_added.is_empty()
            || !self.recipients_removed.is_empty()
    }
}

/// A tensor's name, dtype and shape.
#[derive(Debug, Clone, Serialize)]
pub struct TensorRef {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
}

impl TensorRef {
    fn of(t: &TensorInfo) -> TensorRef {
        TensorRef {
            name: t.name.clone(),
            dtype: t.dtype.name().to_owned(),
            shape: t.shape.clone(),
        }
    }
}

/// A tensor present in both whose dtype or shape (or both) changed.
#[derive(Debug, Clone, Serialize)]
pub struct Retyped {
    pub name: String,
    pub old: TensorRef,
    pub new: TensorRef,
}

/// A tensor present in both with the same dtype and shape and different bytes.
#[derive(Debug, Clone, Serialize)]
pub struct ContentChange {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Filled by [`compare_values`].
    pub values: Option<Values>,
}

/// How the values of a changed tensor differ.
#[derive(Debug, Clone, Serialize)]
pub struct Values {
    pub elements: u64,
    /// Elements whose bytes differ (`-0.0` and `0.0` differ here, not in `max_abs_diff`).
    pub elements_differ: u64,
    /// Largest `|new - old|`: floats widened to f64, integers exactly. Absent for BOOL and F8
    /// (see `note`).
    pub max_abs_diff: Option<MaxAbsDiff>,
    /// Elements NaN in one artifact and not in the other (left out of `max_abs_diff`).
    pub nan_mismatches: u64,
    pub note: Option<&'static str>,
}

/// A largest absolute difference, exact for integer tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxAbsDiff {
    Float(f64),
    Int(u64),
}

impl MaxAbsDiff {
    /// As a float, for comparisons (exact below 2^53).
    pub fn as_f64(self) -> f64 {
        match self {
            MaxAbsDiff::Float(f) => f,
            MaxAbsDiff::Int(i) => i as f64,
        }
    }
}

impl std::fmt::Display for MaxAbsDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxAbsDiff::Float(v) => write!(f, "{v:e}"),
            MaxAbsDiff::Int(v) => write!(f, "{v}"),
        }
    }
}

impl Serialize for MaxAbsDiff {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            // JSON has no infinity; a finite number and "inf" are told apart by type.
            MaxAbsDiff::Float(v) if v.is_infinite() => s.serialize_str("inf"),
            MaxAbsDiff::Float(v) => s.serialize_f64(v),
            MaxAbsDiff::Int(v) => s.serialize_u64(v),
        }
    }
}

/// Tensors added, removed, retyped or changed in content.
#[derive(Debug, Clone, Serialize)]
pub struct TensorDiff {
    /// False when either artifact is encrypted: its tensor table is inside the ciphertext, and
    /// the lists below are empty.
    pub known: bool,
    pub added: Vec<TensorRef>,
    pub removed: Vec<TensorRef>,
    pub shape_or_dtype_changed: Vec<Retyped>,
    pub content_changed: Vec<ContentChange>,
    /// Tensors with the same name, dtype, shape and bytes in both.
    pub unchanged: usize,
}

/// Compares two artifacts from their manifests and signed digests; reads no payload byte.
pub fn compare(a: &Authenticated, b: &Authenticated) -> Diff {
    let metadata = metadata_changes(&a.manifest, &b.manifest);
    let mut architecture = arch_diff(a, b);
    let encryption = encryption_diff(&a.manifest, &b.manifest);
    let (tensors, content, content_note) = match (
        a.manifest.is_encrypted(),
        b.manifest.is_encrypted(),
    ) {
        (false, false) => {
            let t = tensor_diff(a, b);
            let same = t.added.is_empty()
                && t.removed.is_empty()
                && t.shape_or_dtype_changed.is_empty()
                && t.content_changed.is_empty();
            let content = if same {
                Content::Same
            } else {
                Content::Different
            };
            (t, content, None)
        }
        (enc_a, enc_b) => {
            let (content, note) = if enc_a && enc_b && same_ciphertext(&a.manifest, &b.manifest) {
                // The architecture is in the same plaintext.
                architecture.status = ArchStatus::Unchanged;
                (
                    Content::Same,
                    "identical ciphertext, recipients and metadata: the same plaintext",
                )
            } else if enc_a && enc_b {
                (
                    Content::Unknown,
                    "both payloads are encrypted: their digests cover ciphertext, which differs with every encryption, so equal weights cannot be told from different ones without decrypting",
                )
            } else {
                (
                    Content::Unknown,
                    "one payload is encrypted: its tensors are inside the ciphertext",
                )
            };
            let hidden = TensorDiff {
                known: false,
                added: Vec::new(),
                removed: Vec::new(),
                shape_or_dtype_changed: Vec::new(),
                content_changed: Vec::new(),
                unchanged: 0,
            };
            (hidden, content, Some(note.to_owned()))
        }
    };
    let identical = metadata.is_empty()
        && matches!(
            architecture.status,
            ArchStatus::None | ArchStatus::Unchanged
        )
        && !encryption.changed()
        && content == Content::Same;
    Diff {
        identical,
        metadata,
        architecture,
        encryption,
        tensors,
        content,
        content_note,
    }
}

/// Whether two encrypted artifacts hold the same ciphertext under the same recipients and
/// associated data, so that whatever decrypts one decrypts the other to the same plaintext.
fn same_ciphertext(a: &Manifest, b: &Manifest) -> bool {
    let (Some(ea), Some(eb)) = (&a.encryption, &b.encryption) else {
        return false;
    };
    a.payload == b.payload
        && ea == eb
        && crate::format::encryption_ad(&a.model, ea) == crate::format::encryption_ad(&b.model, eb)
}

/// The `model` maps compared field by field through their serde form, so that fields added to
/// [`crate::format::ModelInfo`] later are compared without a change here.
fn metadata_changes(a: &Manifest, b: &Manifest) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let (ja, jb) = (to_json(&a.model), to_json(&b.model));
    diff_json(&mut Vec::new(), Some(&ja), Some(&jb), &mut out);
    out
}

/// A signed value as JSON, with byte strings as lower-case hex (JSON has no byte strings, and
/// an array of numbers would read as a list).
fn to_json(value: &impl Serialize) -> Json {
    // Manifest types are plain data: strings, integers, maps with text keys, byte strings.
    let cbor = Cbor::serialized(value).expect("manifest values always serialize");
    cbor_to_json(&cbor)
}

fn cbor_to_json(v: &Cbor) -> Json {
    match v {
        Cbor::Integer(i) => match (u64::try_from(*i), i64::try_from(*i)) {
            (Ok(u), _) => Json::from(u),
            (_, Ok(s)) => Json::from(s),
            _ => Json::String(i128::from(*i).to_string()),
        },
        Cbor::Bytes(b) => Json::String(hex(b)),
        Cbor::Float(f) => Json::from(*f),
        Cbor::Text(s) => Json::String(s.clone()),
        Cbor::Bool(b) => Json::Bool(*b),
        Cbor::Null => Json::Null,
        Cbor::Tag(_, inner) => cbor_to_json(inner),
        Cbor::Array(items) => Json::Array(items.iter().map(cbor_to_json).collect()),
        Cbor::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Cbor::Text(s) => s.clone(),
                        other => cbor_to_json(other).to_string(),
                    };
                    (key, cbor_to_json(v))
                })
                .collect(),
        ),
        // ciborium's Value is non-exhaustive; manifests hold none of its other variants.
        _ => Json::Null,
    }
}

/// Records every difference between `a` and `b` under `path`, descending into maps present on
/// both sides so that one changed label is one change.
fn diff_json(
    path: &mut Vec<String>,
    a: Option<&Json>,
    b: Option<&Json>,
    out: &mut Vec<FieldChange>,
) {
    match (a, b) {
        (Some(Json::Object(ma)), Some(Json::Object(mb))) => {
            let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for k in keys {
                path.push(k.clone());
                diff_json(path, ma.get(k), mb.get(k), out);
                path.pop();
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(FieldChange {
            path: path.clone(),
            old: a.cloned(),
            new: b.cloned(),
        }),
    }
}

fn arch_diff(a: &Authenticated, b: &Authenticated) -> ArchDiff {
    let summary = |g: &Graph| ArchSummary {
        opset: g.opset,
        nodes: g.nodes.len(),
    };
    let mut d = ArchDiff {
        status: ArchStatus::None,
        old: a.arch.as_ref().map(summary),
        new: b.arch.as_ref().map(summary),
        nodes_added: Vec::new(),
        nodes_removed: Vec::new(),
        nodes_changed: Vec::new(),
        inputs_changed: false,
        outputs_changed: false,
    };
    if a.manifest.is_encrypted() || b.manifest.is_encrypted() {
        d.status = ArchStatus::Unknown;
        return d;
    }
    d.status = match (&a.arch, &b.arch) {
        (None, None) => ArchStatus::None,
        (Some(_), None) => ArchStatus::Removed,
        (None, Some(_)) => ArchStatus::Added,
        (Some(ga), Some(gb)) if cbor(ga) == cbor(gb) => ArchStatus::Unchanged,
        (Some(ga), Some(gb)) => {
            d.inputs_changed = cbor(&ga.inputs) != cbor(&gb.inputs);
            d.outputs_changed = cbor(&ga.outputs) != cbor(&gb.outputs);
            // Node by node only when names identify nodes; a graph that repeats a name fails
            // validation when loaded, and pairing its nodes would be a guess.
            if let (Some(na), Some(nb)) = (nodes_by_name(ga), nodes_by_name(gb)) {
                for (name, node) in &na {
                    match nb.get(name) {
                        None => d.nodes_removed.push(name.to_string()),
                        Some(other) if other != node => d.nodes_changed.push(name.to_string()),
                        Some(_) => {}
                    }
                }
                d.nodes_added = (nb.keys())
                    .filter(|n| !na.contains_key(*n))
                    .map(|n| n.to_string())
                    .collect();
            }
            ArchStatus::Changed
        }
    };
    d
}

/// The deterministic CBOR of a signed value, for equality.
fn cbor(value: &impl Serialize) -> Vec<u8> {
    crate::cbor::to_vec(value).expect("graphs always encode")
}

/// Each node's encoding by name, or `None` when two nodes share a name.
fn nodes_by_name(g: &Graph) -> Option<BTreeMap<&str, Vec<u8>>> {
    let mut map = BTreeMap::new();
    for n in &g.nodes {
        if map.insert(n.name.as_str(), cbor(n)).is_some() {
            return None;
        }
    }
    Some(map)
}

/// Who can open an encrypted artifact, as the CLI names them: `key <id>` or `a passphrase`.
pub fn recipients(m: &Manifest) -> Option<Vec<String>> {
    let enc = m.encryption.as_ref()?;
    Some(
        (enc.recipients.iter())
            .map(|r| match r {
                RecipientEntry::X25519(x) => format!("key {}", hex(&x.kid)),
                RecipientEntry::Argon2id(_) => "a passphrase".to_owned(),
            })
            .collect(),
    )
}

fn encryption_diff(a: &Manifest, b: &Manifest) -> EncryptionDiff {
    let (old, new) = (recipients(a), recipients(b));
    let set =
        |r: &Option<Vec<String>>| -> BTreeSet<String> { r.iter().flatten().cloned().collect() };
    let (sa, sb) = (set(&old), set(&new));
    EncryptionDiff {
        recipients_added: sb.difference(&sa).cloned().collect(),
        recipients_removed: sa.difference(&sb).cloned().collect(),
        old,
        new,
    }
}

/// Each tensor's signed digests, in chunk order, by tensor index.
fn digests_by_tensor(auth: &Authenticated) -> Vec<Vec<&[u8; 32]>> {
    let layout = &auth.layout;
    let mut out = vec![Vec::new(); layout.tensors.len()];
    for (chunk, digest) in layout.chunks.iter().zip(&layout.digests) {
        if let Some(k) = chunk.tensor {
            out[k].push(digest);
        }
    }
    out
}

fn tensor_diff(a: &Authenticated, b: &Authenticated) -> TensorDiff {
    let (da, db) = (digests_by_tensor(a), digests_by_tensor(b));
    let index_b: HashMap<&str, usize> = (b.layout.tensors.iter().enumerate())
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let names_a: BTreeSet<&str> = a.layout.tensors.iter().map(|t| t.name.as_str()).collect();
    let mut d = TensorDiff {
        known: true,
        added: Vec::new(),
        removed: Vec::new(),
        shape_or_dtype_changed: Vec::new(),
        content_changed: Vec::new(),
        unchanged: 0,
    };
    let mut by_name: Vec<(usize, &TensorInfo)> = a.layout.tensors.iter().enumerate().collect();
    by_name.sort_by(|x, y| x.1.name.cmp(&y.1.name));
    for (ia, ta) in by_name {
        let Some(&ib) = index_b.get(ta.name.as_str()) else {
            d.removed.push(TensorRef::of(ta));
            continue;
        };
        let tb = &b.layout.tensors[ib];
        if ta.dtype != tb.dtype || ta.shape != tb.shape {
            d.shape_or_dtype_changed.push(Retyped {
                name: ta.name.clone(),
                old: TensorRef::of(ta),
                new: TensorRef::of(tb),
            });
        } else if da[ia] != db[ib] {
            d.content_changed.push(ContentChange {
                name: ta.name.clone(),
                dtype: ta.dtype.name().to_owned(),
                shape: ta.shape.clone(),
                values: None,
            });
        } else {
            d.unchanged += 1;
        }
    }
    let mut added: Vec<&TensorInfo> = (b.layout.tensors.iter())
        .filter(|t| !names_a.contains(t.name.as_str()))
        .collect();
    added.sort_by(|x, y| x.name.cmp(&y.name));
    d.added = added.into_iter().map(TensorRef::of).collect();
    d
}

/// Reads both payloads through the digest-checking reader and fills in [`Values`] for every
/// tensor of `diff.tensors.content_changed`. Nothing is filled in unless both payloads check
/// out in full.
///
/// Memory: the changed tensors of `a`, held while `b` streams past them, plus the readers'
/// bounded buffers. An encrypted payload is checked against its digests but not decrypted, so
/// no values are compared for it (its tensors are unknown anyway).
pub fn compare_values(
    a: &Authenticated,
    b: &Authenticated,
    diff: &mut Diff,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), ReadError> {
    let err = |auth: &Authenticated| {
        let path = auth.path().to_owned();
        move |source| ReadError { path, source }
    };
    let index = |auth: &Authenticated| -> HashMap<String, usize> {
        (auth.layout.tensors.iter().enumerate())
            .map(|(i, t)| (t.name.clone(), i))
            .collect()
    };
    let (index_a, index_b) = (index(a), index(b));
    // Changed tensor k of the diff is tensor wanted[k] = (index in a, index in b).
    let wanted: Vec<(usize, usize)> = (diff.tensors.content_changed.iter())
        .filter_map(|c| Some((*index_a.get(&c.name)?, *index_b.get(&c.name)?)))
        .collect();
    let by_a: HashMap<usize, usize> = wanted
        .iter()
        .enumerate()
        .map(|(k, &(ia, _))| (ia, k))
        .collect();
    let by_b: HashMap<usize, usize> = wanted
        .iter()
        .enumerate()
        .map(|(k, &(_, ib))| (ib, k))
        .collect();

    let a_len = a.layout.length;
    let mut held: Vec<Vec<u8>> = wanted
        .iter()
        .map(|&(ia, _)| Vec::with_capacity(a.layout.tensors[ia].length as usize))
        .collect();
    if wanted.is_empty() {
        a.check_payload(progress).map_err(err(a))?;
    } else {
        a.stream_payload(progress, |i, chunk| {
            if let Some(&k) = a.layout.chunks[i].tensor.and_then(|t| by_a.get(&t)) {
                held[k].extend_from_slice(&chunk[..a.layout.chunk_data_len(i)]);
            }
            Ok::<(), VerifyError>(())
        })
        .map_err(err(a))?;
    }

    let mut acc: Vec<Acc> = wanted
        .iter()
        .map(|&(ia, _)| Acc::new(a.layout.tensors[ia].dtype))
        .collect();
    let mut pos = vec![0usize; wanted.len()];
    let progress_b = |n: u64| progress(a_len + n);
    if wanted.is_empty() {
        b.check_payload(&progress_b).map_err(err(b))?;
    } else {
        b.stream_payload(&progress_b, |i, chunk| {
            if let Some(&k) = b.layout.chunks[i].tensor.and_then(|t| by_b.get(&t)) {
                let data = &chunk[..b.layout.chunk_data_len(i)];
                // Same dtype and shape: the same length, cut into chunks at the same places,
                // each a whole number of elements (CHUNK_SIZE is a multiple of every size).
                let old = &held[k][pos[k]..pos[k] + data.len()];
                acc[k].add(old, data);
                pos[k] += data.len();
            }
            Ok::<(), VerifyError>(())
        })
        .map_err(err(b))?;
    }

    for (change, acc) in diff.tensors.content_changed.iter_mut().zip(acc) {
        change.values = Some(acc.finish());
    }
    Ok(())
}

/// The running comparison of one tensor's elements.
struct Acc {
    dtype: DType,
    elements: u64,
    differ: u64,
    max_float: f64,
    max_int: u64,
    nan_mismatches: u64,
}

impl Acc {
    fn new(dtype: DType) -> Acc {
        Acc {
            dtype,
            elements: 0,
            differ: 0,
            max_float: 0.0,
            max_int: 0,
            nan_mismatches: 0,
        }
    }

    /// Compares elements of `old` and `new`, equal-length runs of whole elements.
    fn add(&mut self, old: &[u8], new: &[u8]) {
        let size = self.dtype.size() as usize;
        for (x, y) in old.chunks_exact(size).zip(new.chunks_exact(size)) {
            self.elements += 1;
            if x == y {
                continue;
            }
            self.differ += 1;
            if self.dtype.is_float() {
                let (x, y) = (widen_float(self.dtype, x), widen_float(self.dtype, y));
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => {}
                    (true, false) | (false, true) => self.nan_mismatches += 1,
                    // `inf - inf` is NaN: equal infinities differ by nothing.
                    _ if x == y => {}
                    _ => self.max_float = self.max_float.max((y - x).abs()),
                }
            } else if self.dtype.is_integer() {
                let d = widen_int(self.dtype, y) - widen_int(self.dtype, x);
                // Two 64-bit integers differ by at most 2^64 - 1.
                self.max_int = self.max_int.max(d.unsigned_abs() as u64);
            }
        }
    }

    fn finish(self) -> Values {
        let (max_abs_diff, note) = if self.dtype.is_float() {
            (Some(MaxAbsDiff::Float(self.max_float)), None)
        } else if self.dtype.is_integer() {
            (Some(MaxAbsDiff::Int(self.max_int)), None)
        } else if self.dtype == DType::Bool {
            (None, Some("BOOL: only the count of differing elements"))
        } else {
            (
                None,
                Some("8-bit floats are not widened: only the count of differing elements"),
            )
        };
        Values {
            elements: self.elements,
            elements_differ: self.differ,
            max_abs_diff,
            nan_mismatches: self.nan_mismatches,
            note,
        }
    }
}

/// A little-endian F16, BF16, F32 or F64 element as f64 (exactly: each widens without loss).
fn widen_float(dtype: DType, b: &[u8]) -> f64 {
    match dtype {
        DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f64(),
        DType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f64(),
        DType::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        _ => f64::from_le_bytes(b.try_into().expect("an F64 element is 8 bytes")),
    }
}

/// A little-endian integer element as i128, which holds every 64-bit value and their
/// differences.
fn widen_int(dtype: DType, b: &[u8]) -> i128 {
    let mut le = [0u8; 8];
    le[..b.len()].copy_from_slice(b);
    let unsigned = u64::from_le_bytes(le);
    let bits = 8 * b.len() as u32;
    let signed = matches!(dtype, DType::I8 | DType::I16 | DType::I32 | DType::I64);
    if signed && bits < 64 && unsigned >> (bits - 1) & 1 == 1 {
        i128::from(unsigned) - (1i128 << bits)
    } else if signed {
        i128::from(unsigned as i64)
    } else {
        i128::from(unsigned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_widen_with_their_sign() {
        assert_eq!(widen_int(DType::I8, &[0xff]), -1);
        assert_eq!(widen_int(DType::U8, &[0xff]), 255);
        assert_eq!(widen_int(DType::I16, &(-300i16).to_le_bytes()), -300);
        assert_eq!(
            widen_int(DType::I32, &i32::MIN.to_le_bytes()),
            i32::MIN.into()
        );
        assert_eq!(
            widen_int(DType::I64, &i64::MIN.to_le_bytes()),
            i64::MIN.into()
        );
        assert_eq!(
            widen_int(DType::U64, &u64::MAX.to_le_bytes()),
            u64::MAX.into()
        );
    }

    #[test]
    fn extreme_integers_differ_exactly() {
        let mut acc = Acc::new(DType::I64);
        acc.add(&i64::MIN.to_le_bytes(), &i64::MAX.to_le_bytes());
        assert_eq!(acc.finish().max_abs_diff, Some(MaxAbsDiff::Int(u64::MAX)));
    }

    #[test]
    fn floats_compare_by_value_and_count_nan_apart() {
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut acc = Acc::new(DType::F32);
        acc.add(
            &f32s(&[0.0, 1.0, f32::NAN, f32::NAN, f32::INFINITY, 2.0]),
            &f32s(&[-0.0, 1.5, f32::NAN, 3.0, f32::INFINITY, 2.0]),
        );
        let v = acc.finish();
        assert_eq!(v.elements, 6);
        // 0.0 -> -0.0 (bytes), 1.0 -> 1.5, NaN -> 3.0; the two NaNs have the same bytes.
        assert_eq!(v.elements_differ, 3);
        assert_eq!(v.nan_mismatches, 1);
        assert_eq!(v.max_abs_diff, Some(MaxAbsDiff::Float(0.5)));
        let mut acc = Acc::new(DType::BF16);
        acc.add(
            &half::bf16::from_f32(1.0).to_le_bytes(),
            &half::bf16::from_f32(-2.0).to_le_bytes(),
        );
        assert_eq!(acc.finish().max_abs_diff, Some(MaxAbsDiff::Float(3.0)));
    }

    #[test]
    fn nested_maps_differ_entry_by_entry() {
        let a = serde_json::json!({"name": "m", "labels": {"a": "1", "b": "2"}});
        let b = serde_json::json!({"name": "m", "labels": {"a": "1", "b": "3", "c": "4"}, "version": "1.0.0"});
        let mut out = Vec::new();
        diff_json(&mut Vec::new(), Some(&a), Some(&b), &mut out);
        let paths: Vec<String> = out.iter().map(|c| c.path.join(".")).collect();
        assert_eq!(paths, ["labels.b", "labels.c", "version"]);
        assert_eq!(out[1].old, None);
    }
}
