//! What an artifact says about itself, trusting nothing: its signatures checked
//! cryptographically but against no trust store, its manifest decoded, and its lineage followed
//! by digest through folders of artifacts. Nothing here may be used to trust anything: that is
//! [`crate::trust`]'s decision, and payload digests are [`crate::verify`]'s.

use std::path::{Path, PathBuf};

use crate::format::{Layout, Manifest, ModelInfo};
use crate::model::Graph;
use crate::signature::Checked;
use crate::verify::{Artifact, VerifyError};

/// Longest lineage chain followed.
pub const MAX_LINEAGE: usize = 64;
/// Most files looked at while following a lineage chain.
pub const MAX_SEARCHED: usize = 10_000;

/// An artifact as it describes itself.
pub struct Inspection {
    /// Every signature, checked cryptographically (each carries its public key).
    pub signatures: Vec<Checked>,
    pub manifest: Manifest,
    pub layout: Layout,
    /// The architecture, decoded (none for weights only or when it is encrypted).
    pub arch: Option<Graph>,
    /// SHA-256 of the manifest bytes.
    pub digest: [u8; 32],
    pub file_len: u64,
    pub payload_offset: u64,
    /// The parent chain, nearest first.
    pub lineage: Vec<Ancestor>,
}

/// One step up the lineage chain: what the child recorded, and the file found for it.
pub struct Ancestor {
    pub depth: usize,
    pub digest: Vec<u8>,
    pub name: String,
    pub version: Option<String>,
    /// The artifact with that digest, and its valid signers' key ids, if one was found.
    pub found: Option<(PathBuf, Vec<String>)>,
}

/// Reads `path` as [`Inspection`] says; its ancestors are looked for among the `.nns` files of
/// its own folder and of `search`. Fails as verification would on a malformed artifact or a
/// signature that does not verify.
pub fn inspect(path: &Path, search: &[PathBuf]) -> Result<Inspection, VerifyError> {
    let artifact = Artifact::open(path)?;
    let signatures = artifact.check_signatures()?;
    let (manifest, arch, layout) = artifact.manifest_unverified()?;
    let (file_len, payload_offset) = artifact.sizes();
    let mut dirs = vec![crate::output::parent_dir(path).to_owned()];
    dirs.extend(search.iter().cloned());
    let lineage = lineage(&manifest.model, &dirs);
    Ok(Inspection {
        signatures,
        digest: artifact.digest(),
        manifest,
        layout,
        arch,
        file_len,
        payload_offset,
        lineage,
    })
}

/// The chain of parents of `model`, found by digest among the .nns files of `dirs`. Files that
/// are not artifacts are skipped; only the capped frame of each is read.
fn lineage(model: &ModelInfo, dirs: &[PathBuf]) -> Vec<Ancestor> {
    let Some(mut next) = model.parent.clone() else {
        return Vec::new();
    };
    let files = (dirs.iter())
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "nns"))
        .take(MAX_SEARCHED);
    let mut known: Vec<([u8; 32], PathBuf, ModelInfo, Vec<String>)> = Vec::new();
    for path in files {
        let Ok(a) = Artifact::open(&path) else {
            continue;
        };
        let (Ok(checked), Ok((manifest, _, _))) = (a.check_signatures(), a.manifest_unverified())
        else {
            continue;
        };
        let signers = (checked.iter())
            .filter_map(|c| match c {
                Checked::Valid(k) => Some(k.id().to_string()),
                Checked::Unsupported { .. } => None,
            })
            .collect();
        known.push((a.digest(), path, manifest.model, signers));
    }
    let mut chain = Vec::new();
    for depth in 1..=MAX_LINEAGE {
        let found = known.iter().find(|k| k.0[..] == next.digest[..]);
        chain.push(Ancestor {
            depth,
            digest: next.digest.clone(),
            name: next.name.clone(),
            version: next.version.clone(),
            found: found.map(|k| (k.1.clone(), k.3.clone())),
        });
        match found.and_then(|k| k.2.parent.clone()) {
            Some(p) => next = p,
            None => break,
        }
    }
    chain
}

impl Inspection {
    /// What `nnsign inspect --json` reports of the artifact at `path` (unverified: trusting
    /// nothing, no digest checked): signatures, the model's metadata, lineage, architecture,
    /// recipients and the tensor table.
    pub fn describe(&self, path: &Path) -> serde_json::Value {
        use crate::keys::hex;
        use serde_json::json;
        let Inspection {
            signatures: checked,
            manifest,
            layout,
            arch,
            digest,
            file_len,
            payload_offset,
            lineage,
        } = self;
        let signers: Vec<serde_json::Value> = checked
            .iter()
            .map(|c| match c {
                Checked::Valid(k) => json!({"key_id": k.id().to_string(), "algorithm": "Ed25519", "signature": "valid (trust not checked)"}),
                Checked::Unsupported { alg, kid } => json!({"key_id": hex(kid), "algorithm": alg, "signature": "unsupported algorithm"}),
            })
            .collect();
        let m = &manifest.model;
        let tensors: Vec<serde_json::Value> = layout
            .tensors
            .iter()
            .map(|t| json!({"name": t.name, "dtype": t.dtype.name(), "shape": t.shape, "offset": t.offset, "bytes": t.length}))
            .collect();
        json!({
            "verified": false,
            "artifact": path,
            "format": manifest.format,
            "digest": format!("sha256:{}", hex(digest)),
            "signers": signers,
            "model": {
                "name": m.name, "version": m.version, "description": m.description,
                "created": crate::clock::rfc3339(m.created), "expires": m.expires.map(crate::clock::rfc3339),
                "producer": m.producer, "labels": m.labels,
            },
            "lineage": lineage.iter().map(ancestor_json).collect::<Vec<_>>(),
            "architecture": arch,
            "encrypted_to": crate::diff::recipients(manifest).unwrap_or_default(),
            "tensors": tensors,
            "payload_bytes": layout.length,
            "file_bytes": file_len,
            "header_bytes": payload_offset,
            "shards": layout.shards.iter().enumerate().map(|(k, r)| json!({
                "file": crate::format::shard_path(path, k + 1, layout.shards.len()),
                "payload_offset": r.start,
                "bytes": r.end - r.start,
            })).collect::<Vec<_>>(),
        })
    }
}

fn ancestor_json(a: &Ancestor) -> serde_json::Value {
    serde_json::json!({
        "depth": a.depth,
        "digest": format!("sha256:{}", crate::keys::hex(&a.digest)),
        "name": a.name,
        "version": a.version,
        "file": a.found.as_ref().map(|f| &f.0),
        "signers": a.found.as_ref().map(|f| &f.1),
    })
}
