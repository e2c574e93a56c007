//! `nnsign verify`: provenance and integrity, without loading anything.

use std::path::PathBuf;

use nnsign::keys::hex;
use nnsign::trust::Admitted;
use serde_json::json;

use super::{admit, progress_bar, record, report, verify_failure, Common, Result, TrustArgs};

/// Check an artifact's signature, that its signer is trusted, and every payload byte.
///
/// Example:
///   nnsign verify model.nns --trust keys/
///   NNSIGN_TRUST=/etc/nnsign/keys nnsign verify model.nns --json
///
/// Needs no decryption key and loads nothing. Memory stays bounded whatever the model's size.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The artifact: a file, or oci://HOST[:PORT]/REPOSITORY:TAG (or @sha256:DIGEST), fetched
    /// into a temporary folder, checked there and deleted.
    #[arg(value_name = "ART")]
    artifact: PathBuf,
    /// What ART names, for messages, when it was fetched.
    #[arg(skip)]
    shown: Option<PathBuf>,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    registry: super::RegistryArgs,
    #[command(flatten)]
    pub common: Common,
}

/// The facts `verify`, `verify-load` and `unpack` report about a verified artifact.
pub fn summary(admitted: &Admitted) -> (serde_json::Value, String) {
    let auth = &admitted.artifact;
    let value = admitted.describe();
    let m = &auth.manifest.model;
    let digest = format!("sha256:{}", hex(&auth.digest));
    let recipients = recipient_ids(&auth.manifest);
    let others: Vec<String> = auth
        .others
        .iter()
        .map(nnsign::verify::describe_untrusted)
        .collect();
    let who = if auth.signers.is_empty() {
        "UNSIGNED (accepted because of --allow-unsigned)".to_owned()
    } else {
        auth.signers
            .iter()
            .map(|s| {
                let name = admitted.counted.iter().find(|k| k.key == s.key);
                let label = name.map_or_else(|| s.key.id().to_string(), |k| k.label());
                format!("key {label} (trusted: {})", s.trusted_by.display())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let who = if others.is_empty() {
        who
    } else {
        format!("{who}\n  ignored {}", others.join("; "))
    };
    let payload = if auth.manifest.is_encrypted() {
        format!(
            "encrypted to {} ({} ciphertext bytes), every digest matches",
            recipients.join(", "),
            auth.layout.length
        )
    } else {
        format!(
            "{} tensors, {} bytes, every digest matches",
            auth.layout.tensors.len(),
            auth.layout.length
        )
    };
    let mut text = format!(
        "  signer  {who}\n  model   {} {}\n  digest  {digest}\n  payload {payload}\n",
        m.name,
        m.version.as_deref().unwrap_or("(no version)"),
    );
    if let Some(e) = m.expires {
        text.push_str(&format!("  expires {}\n", nnsign::clock::utc(e)));
    }
    if let Some(p) = &m.parent {
        text.push_str(&format!(
            "  parent  {} {} sha256:{}\n",
            p.name,
            p.version.as_deref().unwrap_or("(no version)"),
            hex(&p.digest)
        ));
    }
    (value, text)
}

/// Who an encrypted artifact is for: X25519 key ids, or "a passphrase"; empty when it is not
/// encrypted.
pub fn recipient_ids(manifest: &nnsign::format::Manifest) -> Vec<String> {
    nnsign::diff::recipients(manifest).unwrap_or_default()
}

pub fn run(mut args: Args) -> Result<()> {
    let given = args.artifact.clone();
    let Some(remote) = super::fetch_remote(&given, &args.registry, args.common)? else {
        return run_local(args);
    };
    args.artifact = remote.head.clone();
    args.shown = Some(given.clone());
    run_local(args).map_err(|f| super::as_given(f, remote.dir(), &given))
}

fn run_local(args: Args) -> Result<()> {
    let shown = args.shown.clone().unwrap_or_else(|| args.artifact.clone());
    let admitted = admit(&args.artifact, &args.trust)?;
    let auth = &admitted.artifact;
    let bar = progress_bar(args.common, auth.layout.length, "verifying");
    auth.check_payload(&|n| bar.set_position(n))
        .map_err(|e| verify_failure(&args.artifact, e))?;
    bar.finish_and_clear();
    let (mut value, mut text) = summary(&admitted);
    record(&admitted, &mut value, &mut text)?;
    value["ok"] = json!(true);
    value["artifact"] = json!(shown);
    super::warn_unsupported(args.common, &admitted);
    report(args.common, value, || {
        format!("verified {}\n{text}", shown.display())
    });
    Ok(())
}
