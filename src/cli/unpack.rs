//! `nnsign unpack`: verified weights out as safetensors.

use std::path::PathBuf;

use nnsign::export::ExportError;
use nnsign::unpack::{self, UnpackError};
use serde_json::json;

use super::{
    admit, exit, io_failure, progress_bar, report, verify_failure, Common, DecryptArgs, Failure,
    Result, TrustArgs,
};

/// Verify an artifact, then write its weights as safetensors (or NumPy .npz, or its graph and
/// weights as ONNX).
///
/// Example:
///   nnsign unpack model.nns --trust keys/ -o model.safetensors
///   nnsign unpack secret.nns --trust keys/ --decrypt-with edge.key -o model.safetensors
///   nnsign unpack secret.nns --trust keys/ --passphrase-env MODEL_PASS -o model.safetensors
///   nnsign unpack model.nns --trust keys/ --format onnx -o model.onnx
///
/// Every tensor is bit-identical to what was packed; labels and the signed metadata go into
/// __metadata__ (keys nnsign.name, nnsign.version, nnsign.artifact_digest, ...). Each chunk is
/// checked before its bytes are written (an encrypted payload window by window: digest, then
/// decryption, in bounded memory), and a failure leaves no output file.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The artifact.
    #[arg(value_name = "ART")]
    artifact: PathBuf,
    /// The safetensors file to write.
    #[arg(short, long, value_name = "OUT.safetensors")]
    output: PathBuf,
    /// What to write: safetensors (the default), npz (NumPy), or onnx (the graph and its
    /// weights, for onnxruntime; needs an artifact with an architecture).
    #[arg(long, value_enum, default_value_t = Format::Safetensors)]
    format: Format,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    decrypt: DecryptArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Safetensors,
    Npz,
    Onnx,
}

pub fn run(args: Args) -> Result<()> {
    let reads = (std::iter::once(&args.artifact))
        .chain(&args.decrypt.decrypt_with)
        .chain(&args.trust.trust);
    super::refuse_overwrite(&args.output, reads.map(PathBuf::as_path))?;
    let key = args.decrypt.key()?;
    let admitted = admit(&args.artifact, &args.trust)?;
    let auth = &admitted.artifact;
    let bar = progress_bar(args.common, auth.layout.length, "unpacking");
    let export_failure = |e| match e {
        ExportError::Io { path, source } => io_failure(&path, &source),
        ExportError::Unsupported(m) => Failure::new(exit::INPUT, "input", Some(&args.artifact), m),
    };
    let opener = args.decrypt.opener(auth, key)?;
    let format = match args.format {
        Format::Safetensors => unpack::Format::Safetensors,
        Format::Npz => unpack::Format::Npz,
        Format::Onnx => unpack::Format::Onnx,
    };
    let unlock = opener.as_ref().map(|o| o.unlock());
    unpack::unpack(auth, unlock, format, &args.output, &|n| bar.set_position(n)).map_err(|e| {
        match e {
            UnpackError::Export(e) => export_failure(e),
            UnpackError::Verify(v) => verify_failure(&args.artifact, v),
            UnpackError::Unseal(u) => super::unseal_failure(&args.artifact, u),
            e @ UnpackError::NoGraph => {
                Failure::new(exit::SCHEMA, "schema", Some(&args.artifact), e.to_string())
                    .hint("unpack it as --format safetensors or npz")
            }
            e @ UnpackError::NoOnnx(_) => {
                Failure::new(exit::SCHEMA, "schema", Some(&args.artifact), e.to_string())
            }
        }
    })?;
    bar.finish_and_clear();
    let (mut value, mut text) = super::verify::summary(&admitted);
    super::record(&admitted, &mut value, &mut text)?;
    value["ok"] = json!(true);
    value["output"] = json!(args.output);
    super::warn_unsupported(args.common, &admitted);
    report(args.common, value, || {
        format!(
            "verified {}\n{text}wrote {}\n",
            args.artifact.display(),
            args.output.display()
        )
    });
    Ok(())
}
