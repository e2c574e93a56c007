//! `nnsign pack`: weights (+ architecture) in, signed artifact out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nnsign::format::ModelInfo;
use nnsign::import;
use nnsign::keys::encryption::EncryptionPublicKey;
use nnsign::keys::{hex, SecretKey};
use nnsign::model::Graph;
use nnsign::pack::{self as packer, EncryptTo, PackInput};
use serde_json::json;

use nnsign::crypto::ARGON2_DEFAULT;
use nnsign::keys::KeyError;

use nnsign::failure::{import_failure, pack_failure};

use super::{
    exit, io_failure, key_failure, passphrase, passphrase_from, progress_bar, report, Common,
    Failure, Result,
};

/// Pack model weights and an optional architecture into a signed .nns artifact.
///
/// Example:
///   nnsign pack model.safetensors --arch model.json --sign ci.key \
///       --name digits --model-version 1.2.0 --label team=vision -o model.nns
///
/// Inputs are recognised by content: ONNX and Keras 3 .keras (the graph becomes the
/// architecture), PyTorch torch.save checkpoints and pickled state dicts, GGUF, safetensors
/// (several files are merged as shards; a tensor name may appear once), NumPy .npy (the tensor
/// is named after the file) and .npz. Nothing in them is ever executed:
///   nnsign pack model.onnx --sign ci.key -o model.nns
///   nnsign pack model.keras --sign ci.key --model-version 2.1.0 --expires 90d -o model.nns
///   nnsign pack tuned.pt --arch arch.json --parent base.nns --sign ci.key -o tuned.nns
/// A model in several files is read from the file that names the others: a Hugging Face
/// index (model.safetensors.index.json; its shards must be plain file names in its folder and
/// hold exactly the tensors it lists), or the first of llama.cpp's GGUF splits
/// (model-00001-of-00003.gguf brings in -00002- and -00003- from its folder). Its artifact is
/// sharded like it unless --shard-size says otherwise:
///   nnsign pack model.safetensors.index.json --sign ci.key -o model.nns
/// Without --sign the artifact is unsigned, and verifiers refuse it unless told
/// --allow-unsigned.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Model or weight files: ONNX, Keras, PyTorch, GGUF, safetensors (or their index), .npy or
    /// .npz.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// The artifact to write (replaced atomically if it exists).
    #[arg(short, long, value_name = "OUT.nns")]
    output: PathBuf,
    /// Sign with this private key (PKCS#8 PEM, from `nnsign keygen` or `openssl genpkey -algorithm ed25519`).
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// Environment variable holding the --sign key file's passphrase (else a prompt on a
    /// terminal).
    #[arg(long, value_name = "VAR", requires = "sign")]
    key_passphrase_env: Option<String>,
    /// Encrypt the weights and architecture to this X25519 public key (from `nnsign keygen
    /// --encryption`); repeatable, each recipient can decrypt alone. Verifying needs no key.
    #[arg(long, value_name = "RECIPIENT.pub")]
    encrypt_to: Vec<PathBuf>,
    /// Encrypt the weights and architecture with the passphrase in this environment variable
    /// (Argon2id, m=64 MiB, t=3, p=1). Verifying needs no passphrase.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["encrypt_to", "passphrase_prompt"])]
    passphrase_env: Option<String>,
    /// Like --passphrase-env, with the passphrase typed twice at a no-echo prompt.
    #[arg(long, conflicts_with = "encrypt_to")]
    passphrase_prompt: bool,
    /// Architecture in the nnsign schema's JSON form (docs/SCHEMA.md).
    #[arg(long, value_name = "FILE")]
    arch: Option<PathBuf>,
    /// Of a model file with a graph (ONNX), pack only the weights: for graphs with ops nnsign
    /// does not run.
    #[arg(long)]
    weights_only: bool,
    /// Model name [default: the first input's file name without extension].
    #[arg(long)]
    name: Option<String>,
    /// Model version, in semantic versioning (MAJOR.MINOR.PATCH[-PRE][+BUILD]); verifiers
    /// compare versions for rollback protection and minimum-version rules.
    #[arg(long, value_name = "V")]
    model_version: Option<String>,
    /// Verifiers refuse the artifact after this: a duration from now (90d, 12h, 2w) or a UTC
    /// date or time (2027-06-30, 2027-06-30T12:00:00Z).
    #[arg(long, value_name = "WHEN")]
    expires: Option<String>,
    /// The artifact this model was derived from (fine-tuned, retrained, converted): its
    /// digest, name and version go into the signed metadata, and `inspect` shows the chain.
    #[arg(long, value_name = "PARENT.nns")]
    parent: Option<PathBuf>,
    /// Free-text description.
    #[arg(long)]
    description: Option<String>,
    /// A label KEY=VALUE; repeatable. Overrides safetensors __metadata__ of the same key.
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Write the weights into shard files of at most this size beside OUT.nns
    /// (OUT-00001-of-00004.nnshard, ...), covered by OUT.nns's one signature: 2GiB, 500MB,
    /// or bytes; at least 4MiB. A tensor is split only if larger than a shard. [default for a
    /// model in several files (an index, GGUF splits): the largest file's size, rounded up to
    /// a multiple of 4MiB]
    #[arg(long, value_name = "SIZE", value_parser = super::parse_shard_size)]
    shard_size: Option<u64>,
    #[command(flatten)]
    pub common: Common,
}

/// Warns (as ssh would refuse) when a private key file is readable by other users: the key may
/// already have leaked, and the build should not carry on silently.
pub(super) fn warn_if_exposed(path: &std::path::Path, common: super::Common) {
    if let Some(mode) = nnsign::keys::exposed_mode(path).filter(|_| !common.quiet) {
        eprintln!(
            "nnsign: warning: {}: private key is accessible to other users (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
}

/// The model's name when not given: the first input's file name without its extension, or
/// without what names it as part of a model in several files (`model` for
/// `model.safetensors.index.json` and for `model-00001-of-00003.gguf`).
fn default_name(input: &std::path::Path) -> String {
    let file = input.file_name().unwrap_or_default().to_string_lossy();
    if let Some((prefix, ..)) = import::gguf::split_name(&file) {
        return prefix.to_owned();
    }
    match file.strip_suffix(".safetensors.index.json") {
        Some(stem) if !stem.is_empty() => stem.to_owned(),
        _ => (input.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
    }
}

pub fn run(args: Args) -> Result<()> {
    let reads = (args.inputs.iter())
        .chain(&args.sign)
        .chain(&args.arch)
        .chain(&args.parent)
        .chain(&args.encrypt_to);
    super::refuse_overwrite(&args.output, reads.map(PathBuf::as_path))?;
    let mut labels = BTreeMap::new();
    for l in &args.label {
        let Some((k, v)) = l.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Failure::usage(format!("--label {l:?}: expected KEY=VALUE")));
        };
        if k.starts_with(nnsign::format::RESERVED_LABEL_PREFIX) {
            return Err(Failure::usage(format!(
                "--label {k}: keys starting with {:?} are reserved for nnsign",
                nnsign::format::RESERVED_LABEL_PREFIX
            )));
        }
        labels.insert(k.to_owned(), v.to_owned());
    }
    if let Some(v) = &args.model_version {
        nnsign::format::parse_version("--model-version", v)
            .map_err(|e| Failure::usage(e.to_string()))?;
    }
    let created = packer::created_now();
    let expires = (args.expires.as_deref())
        .map(|w| {
            let t = nnsign::clock::parse_when(w, created)
                .map_err(|e| Failure::usage(format!("--expires: {e}")))?;
            match t > created {
                true => Ok(t),
                false => Err(Failure::usage(format!(
                    "--expires {w}: {} is not in the future",
                    nnsign::clock::utc(t)
                ))),
            }
        })
        .transpose()?;
    let parent = (args.parent.as_deref())
        .map(|p| packer::parent(p).map_err(|e| super::verify_failure(p, e)))
        .transpose()?;
    // Read the key first: a wrong passphrase should fail before minutes of hashing.
    if let Some(path) = &args.sign {
        warn_if_exposed(path, args.common);
    }
    let signer = match &args.sign {
        Some(path) => Some(
            SecretKey::read(path, || {
                if args.key_passphrase_env.is_none() && args.passphrase_env.is_some() {
                    // Before encryption came, --passphrase-env unlocked the signing key. Never
                    // guess which one a command means: a guess either way could ship an
                    // artifact that is not encrypted, or one nobody can open.
                    return Err(KeyError::Passphrase(
                        "the signing key is passphrase-protected: give its passphrase with --key-passphrase-env VAR \
                         (--passphrase-env encrypts the artifact with a passphrase)"
                            .into(),
                    ));
                }
                passphrase_from(
                    "--key-passphrase-env",
                    args.key_passphrase_env.as_deref(),
                    "passphrase for the signing key: ",
                )
            })
            .map_err(key_failure)?,
        ),
        None => None,
    };
    let artifact_passphrase = if args.passphrase_env.is_some() {
        passphrase(args.passphrase_env.as_deref(), "").map_err(key_failure)?
    } else if args.passphrase_prompt {
        Some(super::new_passphrase(
            &format!("{}", args.output.display()),
            "--passphrase-prompt",
        )?)
    } else {
        None
    };
    let recipients = args
        .encrypt_to
        .iter()
        .map(|p| EncryptionPublicKey::read(p))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(key_failure)?;
    let recipient_ids: Vec<String> = (recipients.iter())
        .map(|r| format!("key {}", r.id()))
        .collect();
    let arch = match &args.arch {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| io_failure(path, &e))?;
            Some(Graph::from_json(&text).map_err(|e| {
                Failure::new(exit::SCHEMA, "schema", Some(path), e.to_string())
                    .hint("the architecture file must follow the JSON form in docs/SCHEMA.md")
            })?)
        }
        None => None,
    };
    let options = import::Options {
        weights_only: args.weights_only,
    };
    let imported = import::import_with(&args.inputs, options).map_err(import_failure)?;
    let arch = match (arch, imported.arch) {
        (Some(_), Some(_)) => {
            return Err(Failure::usage(
                "--arch and a model file with its own graph (ONNX) both give an architecture; drop --arch, or give --weights-only",
            ))
        }
        (a, b) => a.or(b),
    };
    // A model in several files (a safetensors index, GGUF splits) is packed into about as many
    // shards unless told otherwise.
    let shard_size = args.shard_size.or(imported.suggested_shard_size);
    if shard_size.is_some() {
        super::sharded_name(&args.output)?;
    }
    let mut all_labels = imported.labels;
    all_labels.extend(labels);
    let name = (args.name.clone()).unwrap_or_else(|| default_name(&args.inputs[0]));
    let model = ModelInfo {
        name,
        version: args.model_version.clone(),
        description: args.description.clone(),
        created,
        expires,
        producer: format!("nnsign {}", env!("CARGO_PKG_VERSION")),
        labels: all_labels,
        parent,
    };
    let total: u64 = imported.tensors.iter().map(|t| t.bytes.len() as u64).sum();
    let bar = progress_bar(args.common, total, "packing");
    let packed = packer::pack_sharded(
        PackInput {
            model,
            arch,
            tensors: imported.tensors,
            signer: signer.as_ref(),
            encrypt: match &artifact_passphrase {
                Some(p) => Some(EncryptTo {
                    recipients: Vec::new(),
                    passphrase: Some((p, ARGON2_DEFAULT)),
                }),
                None => (!recipients.is_empty()).then_some(EncryptTo {
                    recipients,
                    passphrase: None,
                }),
            },
        },
        &args.output,
        shard_size,
        &|n| bar.set_position(n),
    )
    .map_err(|e| pack_failure(args.arch.as_deref(), &args.inputs[0], e))?;
    bar.finish_and_clear();
    let digest = format!("sha256:{}", hex(&packed.digest));
    let signer_id = packed.signer.map(|k| k.to_string());
    let artifact_passphrase_used = artifact_passphrase.is_some();
    let encrypted_to: Vec<String> = match artifact_passphrase {
        Some(_) => vec!["a passphrase".into()],
        None => recipient_ids,
    };
    report(
        args.common,
        json!({
            "ok": true,
            "artifact": args.output,
            "digest": digest,
            "signer": signer_id,
            "tensors": packed.tensors,
            "encrypted_to": encrypted_to,
            "payload_bytes": packed.payload_len,
            "file_bytes": packed.file_len,
            "shards": packed.shards.iter().map(|(path, bytes)| json!({"file": path, "bytes": bytes})).collect::<Vec<_>>(),
        }),
        || {
            format!(
                "packed {} ({} tensor{}, {} bytes{})\n  digest {digest}\n  {}\n{}",
                args.output.display(),
                packed.tensors,
                if packed.tensors == 1 { "" } else { "s" },
                packed.file_len,
                match packed.shards.len() {
                    0 => String::new(),
                    n => format!(
                        ", and {} payload bytes in {n} shard file{} beside it",
                        packed.payload_len,
                        if n == 1 { "" } else { "s" }
                    ),
                },
                match &signer_id {
                    Some(id) => format!("signed by key {id}"),
                    None =>
                        "UNSIGNED: verifiers will refuse it unless given --allow-unsigned".into(),
                },
                if encrypted_to.is_empty() {
                    String::new()
                } else {
                    format!(
                        "  encrypted to {}: tensors and architecture readable only with {}\n",
                        encrypted_to.join(", "),
                        if artifact_passphrase_used {
                            "the passphrase"
                        } else {
                            "a matching key"
                        }
                    )
                }
            )
        },
    );
    Ok(())
}
