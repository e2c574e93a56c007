//! `nnsign keygen`: a new Ed25519 signing key pair, or an X25519 encryption key pair.

use std::path::PathBuf;

use nnsign::keys::encryption::EncryptionSecretKey;
use nnsign::keys::{self, SecretKey};
use serde_json::json;

use super::{key_failure, passphrase, report, Common, Result};

/// Make a key pair: PREFIX.key (private, mode 0600) and PREFIX.pub.
///
/// Example:
///   nnsign keygen -o ci                 # Ed25519 signing key: ci.key, ci.pub; prints the key id
///   NNSIGN_PASS=... nnsign keygen -o ci --passphrase-env NNSIGN_PASS
///   nnsign keygen --encryption -o edge  # X25519 key for receiving encrypted models
///
/// Keys are PKCS#8 / SubjectPublicKeyInfo PEM, readable by OpenSSL
/// (`openssl pkey -in ci.key -pubout` prints ci.pub). Existing files are never overwritten.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Path prefix of the key files.
    #[arg(short, long, value_name = "PREFIX")]
    output: PathBuf,
    /// Encrypt the private key with the passphrase held in environment variable VAR.
    #[arg(long, value_name = "VAR", conflicts_with = "protect")]
    passphrase_env: Option<String>,
    /// Encrypt the private key with a passphrase typed at a no-echo prompt.
    #[arg(long)]
    protect: bool,
    /// Make an X25519 key pair for receiving encrypted models instead of a signing key.
    #[arg(long)]
    encryption: bool,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: Args) -> Result<()> {
    let pass = if args.passphrase_env.is_some() {
        passphrase(args.passphrase_env.as_deref(), "").map_err(key_failure)?
    } else if args.protect {
        Some(super::new_passphrase("the new key", "--protect")?)
    } else {
        None
    };
    let (kind, id, (key_path, pub_path)) = if args.encryption {
        let key = EncryptionSecretKey::generate().map_err(key_failure)?;
        let paths = key
            .write_pair(&args.output, pass.as_ref())
            .map_err(key_failure)?;
        ("encryption", key.public().id(), paths)
    } else {
        let key = SecretKey::generate().map_err(key_failure)?;
        let paths = keys::write_pair(&args.output, &key, pass.as_ref()).map_err(key_failure)?;
        ("signing", key.public().id(), paths)
    };
    let (algorithm, audience) = match kind {
        "encryption" => ("X25519", "give this to whoever encrypts models for you"),
        _ => ("Ed25519", "give this to verifiers"),
    };
    report(
        args.common,
        json!({
            "ok": true,
            "kind": kind,
            "algorithm": algorithm,
            "key_id": id.to_string(),
            "private_key": key_path,
            "public_key": pub_path,
            "encrypted": pass.is_some(),
        }),
        || {
            format!(
                "{algorithm} {kind} key, key id {id}\nprivate key {} (mode 0600{}; keep it secret)\npublic key  {} ({audience})\n",
                key_path.display(),
                if pass.is_some() { ", passphrase-protected" } else { "" },
                pub_path.display()
            )
        },
    );
    Ok(())
}
