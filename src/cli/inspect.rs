//! `nnsign inspect`: what an artifact says about itself, trusting nothing.

use std::path::PathBuf;

use nnsign::inspect::{inspect, Ancestor, Inspection};
use nnsign::keys::hex;
use nnsign::signature::Checked;
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
    let found =
        inspect(&args.artifact, &args.search).map_err(|e| verify_failure(&args.artifact, e))?;
    let mut value = found.describe(&args.artifact);
    value["ok"] = json!(true);
    let Inspection {
        signatures: checked,
        manifest,
        layout,
        arch,
        digest,
        file_len,
        payload_offset: _,
        lineage,
    } = found;
    let m = &manifest.model;
    report(args.common, value, || {
        let mut s = format!(
            "{}: NOT VERIFIED (inspect trusts nothing and checks no digest; run `nnsign verify`)\n",
            args.artifact.display()
        );
        s += &format!("  format      {}\n", manifest.format);
        s += &format!("  digest      sha256:{}\n", hex(&digest));
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
                ancestor_text(a)
            );
        }
        let of = layout.shards.len();
        for (k, r) in layout.shards.iter().enumerate() {
            s += &format!(
                "  shard       {} of {of}: {} ({} payload bytes from offset {})\n",
                k + 1,
                nnsign::format::shard_path(&args.artifact, k + 1, of).display(),
                r.end - r.start,
                r.start
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
        match &arch {
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

fn ancestor_text(a: &Ancestor) -> String {
    let what = format!(
        "{} {} sha256:{}",
        a.name,
        a.version.as_deref().unwrap_or("(no version)"),
        hex(&a.digest)
    );
    match &a.found {
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
