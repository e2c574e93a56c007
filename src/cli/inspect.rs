//! `nnsign inspect`: what an artifact says about itself, trusting nothing.

use std::path::PathBuf;

use nnsign::keys::hex;
use nnsign::signature::Checked;
use nnsign::verify::Artifact;
use serde_json::json;

use super::{report, rfc3339, verify_failure, Common, Result};

/// Show an artifact's metadata, signers and tensor table, without trusting any of it.
///
/// Example:
///   nnsign inspect model.nns
///   nnsign inspect model.nns --json | jq .tensors
///
/// Signatures are checked cryptographically (each carries its public key) but no trust store
/// is consulted, and payload digests are not checked: use `nnsign verify` for that.
///
/// Lineage: an artifact packed with --parent names its parent by digest; inspect follows the
/// chain through the .nns files of the artifact's folder and of every --search folder.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The artifact.
    #[arg(value_name = "ART")]
    artifact: PathBuf,
    /// Another folder whose .nns files may hold ancestors (not recursive); repeatable.
    #[arg(long, value_name = "DIR")]
    search: Vec<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: Args) -> Result<()> {
    let fail = |e| verify_failure(&args.artifact, e);
    let artifact = Artifact::open(&args.artifact).map_err(fail)?;
    let checked = artifact.check_signatures().map_err(fail)?;
    let (manifest, layout) = artifact.manifest_unverified().map_err(fail)?;
    let (file_len, payload_offset) = artifact.sizes();
    let signers: Vec<serde_json::Value> = checked
        .iter()
        .map(|c| match c {
            Checked::Valid(k) => json!({"key_id": k.id().to_string(), "algorithm": "Ed25519", "signature": "valid (trust not checked)"}),
            Checked::Unsupported { alg, kid } => json!({"key_id": hex(kid), "algorithm": alg, "signature": "unsupported algorithm"}),
        })
        .collect();
    let m = &manifest.model;
    let lineage = lineage(&args, &manifest.model);
    let tensors: Vec<serde_json::Value> = layout
        .tensors
        .iter()
        .map(|t| json!({"name": t.name, "dtype": t.dtype.name(), "shape": t.shape, "offset": t.offset, "bytes": t.length}))
        .collect();
    let value = json!({
        "ok": true,
        "verified": false,
        "artifact": args.artifact,
        "format": manifest.format,
        "digest": format!("sha256:{}", hex(&artifact.digest())),
        "signers": signers,
        "model": {
            "name": m.name, "version": m.version, "description": m.description,
            "created": rfc3339(m.created), "expires": m.expires.map(rfc3339),
            "producer": m.producer, "labels": m.labels,
        },
        "lineage": lineage.iter().map(Ancestor::json).collect::<Vec<_>>(),
        "architecture": manifest.arch,
        "encrypted_to": super::verify::recipient_ids(&manifest),
        "tensors": tensors,
        "payload_bytes": layout.length,
        "file_bytes": file_len,
        "header_bytes": payload_offset,
    });
    report(args.common, value, || {
        let mut s = format!(
            "{}: NOT VERIFIED (inspect trusts nothing and checks no digest; run `nnsign verify`)\n",
            args.artifact.display()
        );
        s += &format!("  format      {}\n", manifest.format);
        s += &format!("  digest      sha256:{}\n", hex(&artifact.digest()));
        if checked.is_empty() {
            s += "  signatures  none (unsigned)\n";
        }
        for c in &checked {
            s += &match c {
                Checked::Valid(k) => format!(
                    "  signature   key {} Ed25519, cryptographically valid, trust not checked\n",
                    k.id()
                ),
                Checked::Unsupported { alg, kid } => format!(
                    "  signature   key {} algorithm {alg}, not supported by this nnsign\n",
                    hex(kid)
                ),
            };
        }
        s += &format!("  name        {}\n", m.name);
        s += &format!(
            "  version     {}\n",
            m.version.as_deref().unwrap_or("(none)")
        );
        if let Some(d) = &m.description {
            s += &format!("  description {d}\n");
        }
        s += &format!(
            "  created     {}\n  producer    {}\n",
            rfc3339(m.created),
            m.producer
        );
        if let Some(e) = m.expires {
            s += &format!("  expires     {}\n", rfc3339(e));
        }
        for (k, v) in &m.labels {
            s += &format!("  label       {k}={v}\n");
        }
        for a in &lineage {
            s += &format!(
                "  {:<11} {}\n",
                if a.depth == 1 { "parent" } else { "ancestor" },
                a.text()
            );
        }
        let recipients = super::verify::recipient_ids(&manifest);
        if !recipients.is_empty() {
            s += &format!(
                "  encrypted   to {}\n  hidden      tensor names, shapes, architecture and weights (only {} reads them)\n",
                recipients.join(", "),
                if manifest.encryption.as_ref().is_some_and(|e| e.has_passphrase()) {
                    "the passphrase"
                } else {
                    "a recipient's key"
                }
            );
            s += &format!(
                "  payload     {} ciphertext bytes ({} in the file)\n",
                layout.length, file_len
            );
            return s;
        }
        match &manifest.arch {
            Some(a) => {
                s += &format!(
                    "  arch        op-set {}, {} nodes: {}\n",
                    a.opset,
                    a.nodes.len(),
                    a.nodes
                        .iter()
                        .map(|n| n.op.as_str())
                        .collect::<Vec<_>>()
                        .join(" -> ")
                )
            }
            None => s += "  arch        none (weights only)\n",
        }
        s += &format!(
            "  tensors     {} ({} payload bytes, {} in the file)\n",
            layout.tensors.len(),
            layout.length,
            file_len
        );
        for t in &layout.tensors {
            s += &format!(
                "    {:<32} {:<8} {:?} {} bytes\n",
                t.name,
                t.dtype.name(),
                t.shape,
                t.length
            );
        }
        s
    });
    Ok(())
}

/// Longest lineage chain followed, and most files looked at while following it.
const MAX_LINEAGE: usize = 64;
const MAX_SEARCHED: usize = 10_000;

/// One step up the lineage chain: what the child recorded, and the file found for it.
struct Ancestor {
    depth: usize,
    digest: Vec<u8>,
    name: String,
    version: Option<String>,
    /// The artifact with that digest, and its valid signers' key ids, if one was found.
    found: Option<(PathBuf, Vec<String>)>,
}

impl Ancestor {
    fn json(&self) -> serde_json::Value {
        json!({
            "depth": self.depth,
            "digest": format!("sha256:{}", hex(&self.digest)),
            "name": self.name,
            "version": self.version,
            "file": self.found.as_ref().map(|f| &f.0),
            "signers": self.found.as_ref().map(|f| &f.1),
        })
    }

    fn text(&self) -> String {
        let what = format!(
            "{} {} sha256:{}",
            self.name,
            self.version.as_deref().unwrap_or("(no version)"),
            hex(&self.digest)
        );
        match &self.found {
            Some((path, signers)) => format!(
                "{what}\n              in {}, signed by {}",
                path.display(),
                if signers.is_empty() {
                    "nobody".into()
                } else {
                    signers.join(", ")
                }
            ),
            None => format!("{what} (no such artifact in the folders searched)"),
        }
    }
}

/// The chain of parents of `model`, found by digest among the .nns files of the artifact's
/// folder and the --search folders. Files that are not artifacts are skipped; only the
/// capped frame of each is read.
fn lineage(args: &Args, model: &nnsign::format::ModelInfo) -> Vec<Ancestor> {
    let Some(mut next) = model.parent.clone() else {
        return Vec::new();
    };
    let mut dirs = vec![nnsign::output::parent_dir(&args.artifact).to_owned()];
    dirs.extend(args.search.iter().cloned());
    let files = (dirs.iter())
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "nns"))
        .take(MAX_SEARCHED);
    let mut known: Vec<([u8; 32], PathBuf, nnsign::format::ModelInfo, Vec<String>)> = Vec::new();
    for path in files {
        let Ok(a) = Artifact::open(&path) else {
            continue;
        };
        let (Ok(checked), Ok((manifest, _))) = (a.check_signatures(), a.manifest_unverified())
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
