//! `nnsign sign`: add a signature to an existing artifact (co-signing).

use std::path::PathBuf;

use nnsign::keys::{hex, SecretKey};
use nnsign::pack::{self as packer, CosignError};
use serde_json::json;

use super::{
    exit, io_failure, key_failure, passphrase_from, progress_bar, report, verify_failure, Common,
    Failure, Result,
};

/// Add your signature to an artifact someone else signed, without repacking it.
///
/// Example:
///   nnsign pack model.onnx --sign ci.key -o model.nns     # the build job signs
///   nnsign sign model.nns --key reviewer.key              # a reviewer approves
///   nnsign verify model.nns --policy release.toml         # a rule needing both passes
///
/// The manifest and payload bytes stay as they are (so the artifact digest does not change);
/// only the envelope gains a signature. Every existing signature and every payload byte is
/// checked first: nothing is signed that does not verify. The file is replaced atomically.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The artifact.
    #[arg(value_name = "ART")]
    artifact: PathBuf,
    /// Sign with this private key (PKCS#8 PEM, from `nnsign keygen`).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Environment variable holding the key file's passphrase (else a prompt on a terminal).
    #[arg(long, value_name = "VAR")]
    key_passphrase_env: Option<String>,
    /// Write the co-signed artifact here instead of replacing ART.
    #[arg(short, long, value_name = "OUT.nns")]
    output: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: Args) -> Result<()> {
    let output = args.output.clone().unwrap_or_else(|| args.artifact.clone());
    if args.output.is_some() {
        super::refuse_overwrite(&output, [args.artifact.as_path(), args.key.as_path()])?;
    }
    super::pack::warn_if_exposed(&args.key, args.common);
    let key = SecretKey::read(&args.key, || {
        passphrase_from(
            "--key-passphrase-env",
            args.key_passphrase_env.as_deref(),
            "passphrase for the signing key: ",
        )
    })
    .map_err(key_failure)?;
    let size = std::fs::metadata(&args.artifact).map_or(0, |m| m.len());
    let bar = progress_bar(args.common, size, "checking and signing");
    let done = packer::cosign(&args.artifact, &key, &output, &|n| bar.set_position(n)).map_err(
        |e| match e {
            CosignError::Verify(v) => verify_failure(&args.artifact, v),
            CosignError::Io { path, source } => io_failure(&path, &source),
            e @ CosignError::AlreadySigned(_) => {
                Failure::new(exit::USAGE, "usage", Some(&args.artifact), e.to_string())
            }
            e @ CosignError::Full(_) => {
                Failure::new(exit::INPUT, "input", Some(&args.artifact), e.to_string())
            }
        },
    )?;
    bar.finish_and_clear();
    let signers: Vec<String> = done.signers.iter().map(|k| k.to_string()).collect();
    let digest = format!("sha256:{}", hex(&done.digest));
    let value = json!({
        "ok": true,
        "artifact": output,
        "digest": digest,
        "signed_by": signers.last(),
        "signers": signers,
        "bytes": done.file_len,
    });
    report(args.common, value, || {
        format!(
            "signed {} with key {}\n  digest  {digest} (unchanged)\n  signers {}\n",
            output.display(),
            signers.last().map_or("", String::as_str),
            signers.join(", ")
        )
    });
    Ok(())
}
