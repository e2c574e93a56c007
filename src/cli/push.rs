//! `nnsign push`: an artifact (and its shard files) to an OCI registry.

use std::path::{Path, PathBuf};

use nnsign::keys::hex;
use nnsign::oci;
use nnsign::verify::Artifact;
use serde_json::json;

use super::{oci_failure, progress_bar, report, verify_failure, Common, RegistryArgs, Result};

/// Upload an artifact to an OCI registry, as one manifest whose layers are its files.
///
/// Example:
///   nnsign push model.nns registry.example.com/models/classifier:1.2.0
///   nnsign push llm.nns 127.0.0.1:5000/models/llm:7b --insecure     # a local test registry
///
/// The artifact is checked first (every signature valid, every byte against its digest; trust
/// is the puller's decision), so a damaged file is never published. Its .nns file and each
/// shard file become layers (docs/DISTRIBUTION.md), which any ORAS client can pull. Blobs the
/// registry has already are not sent again, so a push that failed resumes where it stopped.
/// Credentials: NNSIGN_REGISTRY_USERNAME and NNSIGN_REGISTRY_PASSWORD, else Docker's config
/// file (docker login); never on the command line.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The artifact to push.
    #[arg(value_name = "ART")]
    artifact: PathBuf,
    /// Where: HOST[:PORT]/REPOSITORY:TAG (an oci:// prefix is allowed).
    #[arg(value_name = "REF")]
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: Args) -> Result<()> {
    let name = Path::new(&args.reference);
    let reference = oci::parse_reference(&args.reference).map_err(|e| oci_failure(name, e))?;
    let path = &args.artifact;
    let auth = Artifact::open(path)
        .and_then(Artifact::integrity_only)
        .map_err(|e| verify_failure(path, e))?;
    let bar = progress_bar(args.common, auth.layout.length, "checking");
    auth.check_payload(&|n| bar.set_position(n))
        .map_err(|e| verify_failure(path, e))?;
    bar.finish_and_clear();
    let layers = oci::layers(path, auth.shards().len());
    let m = &auth.manifest.model;
    let digest = format!("sha256:{}", hex(&auth.digest));
    let mut annotations = serde_json::Map::new();
    annotations.insert(oci::DIGEST_ANNOTATION.into(), json!(digest));
    annotations.insert("org.opencontainers.image.title".into(), json!(m.name));
    if let Some(v) = &m.version {
        annotations.insert("org.opencontainers.image.version".into(), json!(v));
    }
    annotations.insert(
        "org.opencontainers.image.created".into(),
        json!(super::rfc3339(m.created)),
    );
    let total: u64 = (layers.iter())
        .map(|l| std::fs::metadata(&l.path).map_or(0, |m| m.len()))
        .sum();
    let bar = progress_bar(args.common, total, "pushing");
    let pushed = oci::push(
        &layers,
        &reference,
        &annotations,
        &args.registry.options(),
        &|n| bar.set_position(n),
    )
    .map_err(|e| oci_failure(name, e))?;
    bar.finish_and_clear();
    let sent: u64 = (pushed.layers.iter())
        .filter(|l| !l.already_there)
        .map(|l| l.bytes)
        .sum();
    let pinned = format!(
        "{}/{}@{}",
        reference.resolve_registry(),
        reference.repository(),
        pushed.manifest_digest
    );
    report(
        args.common,
        json!({
            "ok": true,
            "artifact": path,
            "reference": args.reference,
            "pinned": pinned,
            "manifest_digest": pushed.manifest_digest,
            "digest": digest,
            "layers": pushed.layers.iter().map(|l| json!({
                "file": l.file, "digest": l.digest, "bytes": l.bytes, "already_there": l.already_there,
            })).collect::<Vec<_>>(),
            "bytes_sent": sent,
        }),
        || {
            format!(
                "pushed {} to {}\n  pinned  {pinned}\n  digest  {digest} (the artifact's)\n  layers  {} ({} bytes sent, {} already there)\n",
                path.display(),
                args.reference,
                pushed.layers.len(),
                sent,
                pushed.layers.iter().filter(|l| l.already_there).count()
            )
        },
    );
    Ok(())
}
