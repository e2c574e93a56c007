//! `nnsign pull`: an artifact from an OCI registry, verified before it lands.

use std::path::{Path, PathBuf};

use nnsign::oci;
use nnsign::output::{parent_dir, sync_dir};
use serde_json::json;

use super::{
    admit, io_failure, oci_failure, progress_bar, record, report, verify_failure, Common, Failure,
    RegistryArgs, Result, TrustArgs,
};

/// Download an artifact from an OCI registry and verify it before writing it in place.
///
/// Example:
///   nnsign pull registry.example.com/models/classifier:1.2.0 -o model.nns --trust keys/
///   nnsign pull 127.0.0.1:5000/models/llm@sha256:... -o llm.nns --policy release.toml
///
/// The files are fetched (in parallel) into a hidden folder beside OUT, verified there exactly
/// as `nnsign verify` does (signature, trust or policy, every byte of every shard), and only
/// then renamed to OUT and its shard files: a wrong, cut or swapped blob is refused (exit 5)
/// and nothing is written in place. An interrupted pull resumes when run again. Credentials:
/// NNSIGN_REGISTRY_USERNAME and NNSIGN_REGISTRY_PASSWORD, else Docker's config file.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// What: HOST[:PORT]/REPOSITORY:TAG or HOST[:PORT]/REPOSITORY@sha256:DIGEST.
    #[arg(value_name = "REF")]
    reference: String,
    /// The artifact to write; shard files go beside it.
    #[arg(short, long, value_name = "OUT.nns")]
    output: PathBuf,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    pub common: Common,
}

/// The folder a pull of `out` fetches into: beside it (so the final renames stay on one file
/// system), hidden, and the same for every pull of `out`, so that the next one resumes.
pub fn staging(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned());
    parent_dir(out).join(format!(".{}.nnsign-pull", name.unwrap_or_default()))
}

pub fn run(args: Args) -> Result<()> {
    let given = Path::new(&args.reference);
    let reference = oci::parse_reference(&args.reference).map_err(|e| oci_failure(given, e))?;
    // Before any download: the trust flags must name someone to trust.
    super::trust(&args.trust)?;
    let out = &args.output;
    let name = out
        .file_name()
        .ok_or_else(|| Failure::usage(format!("{}: not a file name", out.display())))?;
    let dir = staging(out);
    // Private: another user who could write in OUT's folder must not be able to plant the
    // staging folder, or swap a file in it between verification and the renames.
    nnsign::output::private_dir(&dir).map_err(|e| io_failure(&dir, &e))?;
    let bar = progress_bar(args.common, 0, "pulling");
    let fetched = oci::fetch(
        &reference,
        &dir,
        name,
        &args.registry.options(),
        &|n, total| {
            bar.set_length(total);
            bar.set_position(n);
        },
    )
    .map_err(|e| {
        // Kept for the next pull to resume, unless the registry served something wrong.
        if matches!(e, oci::OciError::Integrity(_)) {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            // Removed if nothing arrived (only an empty folder can be).
            let _ = std::fs::remove_dir(&dir);
        }
        oci_failure(given, e)
    })?;
    bar.finish_and_clear();

    if !fetched.shards.is_empty() {
        super::sharded_name(out).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
    }
    // Exactly as a local file; what fails verification is deleted, so that the next pull
    // fetches it again instead of resuming it.
    let checked = (|| {
        let admitted = admit(&fetched.head, &args.trust)?;
        let auth = &admitted.artifact;
        let bar = progress_bar(args.common, auth.layout.length, "verifying");
        auth.check_payload(&|n| bar.set_position(n))
            .map_err(|e| verify_failure(&fetched.head, e))?;
        bar.finish_and_clear();
        if auth.shards().len() != fetched.shards.len() {
            return Err(Failure::new(
                super::exit::INTEGRITY,
                "integrity",
                Some(&fetched.head),
                format!(
                    "the registry's manifest lists {} shard layers, the signed manifest {} shards",
                    fetched.shards.len(),
                    auth.shards().len()
                ),
            ));
        }
        Ok(admitted)
    })();
    let admitted = match checked {
        Ok(a) => a,
        Err(f) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(super::as_given(f, &dir, given));
        }
    };
    // Shards first, the .nns last: a reader that finds the new .nns finds its shards.
    let target = parent_dir(out);
    for (k, shard) in fetched.shards.iter().enumerate() {
        let to = nnsign::format::shard_path(out, k + 1, fetched.shards.len());
        std::fs::rename(shard, &to).map_err(|e| io_failure(&to, &e))?;
    }
    std::fs::rename(&fetched.head, out).map_err(|e| io_failure(out, &e))?;
    sync_dir(target).map_err(|e| io_failure(target, &e))?;
    let _ = std::fs::remove_dir_all(&dir);

    let (mut value, mut text) = super::verify::summary(&admitted);
    record(&admitted, &mut value, &mut text)?;
    value["ok"] = json!(true);
    value["artifact"] = json!(out);
    value["reference"] = json!(args.reference);
    value["manifest_digest"] = json!(fetched.manifest_digest);
    value["bytes"] = json!(fetched.bytes);
    value["resumed_bytes"] = json!(fetched.resumed);
    value["shards"] = json!(fetched.shards.len());
    super::warn_unsupported(args.common, &admitted);
    report(args.common, value, || {
        format!(
            "pulled {} to {} ({} bytes{}, {} shard file{}) and verified it\n{text}  oci     {}\n",
            args.reference,
            out.display(),
            fetched.bytes,
            if fetched.resumed > 0 {
                format!(", {} of them from an earlier pull", fetched.resumed)
            } else {
                String::new()
            },
            fetched.shards.len(),
            if fetched.shards.len() == 1 { "" } else { "s" },
            fetched.manifest_digest
        )
    });
    Ok(())
}
