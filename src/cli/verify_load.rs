//! `nnsign verify-load`: everything `verify` does, then validate, instantiate and run.

use std::path::{Path, PathBuf};

use nnsign::format::DType;
use nnsign::import::{self, ImportError};
use nnsign::load;
use nnsign::memory::DEFAULT_MEMORY_LIMIT;
use nnsign::runtime::{self, Value};
use serde_json::json;

use super::DecryptArgs;

use super::{admit, exit, io_failure, progress_bar, report, Common, Failure, Result, TrustArgs};

/// Verify an artifact, validate its architecture, load the model and optionally run it.
///
/// Example:
///   nnsign verify-load model.nns --trust keys/ --input x.npy --output y.npy
///   nnsign verify-load secret.nns --trust keys/ --decrypt-with edge.key --input x.npy
///   nnsign verify-load secret.nns --trust keys/ --passphrase-env MODEL_PASS --input x.npy
///
/// Order: signature and trust, then the architecture against the signed tensor table, then
/// every payload byte against its digest, then instantiation. Nothing is built from bytes that
/// have not been checked; an encrypted payload is decrypted only after its ciphertext matched
/// its digests. A weights-only artifact is verified and reported as having no architecture
/// (exit 0, or 6 if --input was given).
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
    decrypt: DecryptArgs,
    /// Run the model on this input: .npy (a model with one input), or .npz or safetensors
    /// (inputs by name).
    #[arg(long, value_name = "X.npy|X.npz")]
    input: Option<PathBuf>,
    /// Write the model's outputs here: .npy (a model with one output) or .npz (outputs by
    /// name). Requires --input.
    #[arg(long, value_name = "Y.npy|Y.npz", requires = "input")]
    output: Option<PathBuf>,
    /// Refuse models needing more memory than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MEMORY_LIMIT)]
    max_memory: u64,
    #[command(flatten)]
    pub common: Common,
}

fn input_failure(path: &Path, msg: impl Into<String>) -> Failure {
    Failure::new(exit::INPUT, "input", Some(path), msg)
}

/// Reads `--input` as named values for the model's inputs: floats for F32 inputs, integers for
/// I64 ones, booleans for BOOL ones.
fn read_inputs(path: &Path, model_inputs: &[(String, String)]) -> Result<Vec<(String, Value)>> {
    let arrays = import::data::read_arrays(path).map_err(|e| match e {
        ImportError::Io { path, source } => io_failure(&path, &source),
        other => input_failure(path, other.to_string()),
    })?;
    let single = arrays.len() == 1 && model_inputs.len() == 1;
    let mut out = Vec::new();
    for t in arrays {
        // A lone .npy feeds the lone model input whatever the file is called.
        let name = if single {
            model_inputs[0].0.clone()
        } else {
            t.name.clone()
        };
        let want = (model_inputs.iter().find(|(n, _)| *n == name)).map(|(_, d)| d.as_str());
        let fits = match want {
            Some("I64") => t.dtype.is_integer(),
            Some("BOOL") => t.dtype == DType::Bool,
            Some(_) => matches!(t.dtype, DType::F32 | DType::F64 | DType::F16),
            None => true, // the model reports an input it does not have, by name
        };
        if !fits {
            return Err(input_failure(
                path,
                format!(
                    "array {:?} has dtype {}; the model's input {name:?} takes {}",
                    t.name,
                    t.dtype,
                    want.unwrap_or("?")
                ),
            ));
        }
        let value = nnsign::tensor::widen(&t.name, t.dtype, &t.shape, &t.bytes)
            .map_err(|e| input_failure(path, e))?;
        out.push((name, value));
    }
    Ok(out)
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
    if let Some(out) = &args.output {
        let reads = std::iter::once(&args.artifact)
            .chain(&args.input)
            .chain(&args.decrypt.decrypt_with)
            .chain(&args.trust.trust);
        super::refuse_overwrite(out, reads.map(PathBuf::as_path))?;
    }
    let key = args.decrypt.key()?;
    let admitted = admit(&args.artifact, &args.trust)?;
    let auth = &admitted.artifact;
    let bar = progress_bar(args.common, auth.layout.length, "verifying");
    let progress = |n| bar.set_position(n);
    let opener = args.decrypt.opener(auth, key)?;
    let loaded = match &opener {
        Some(o) => load::load_encrypted(auth, o.unlock(), args.max_memory, &progress),
        None => load::load(auth, args.max_memory, &progress),
    }
    .map_err(|e| nnsign::failure::load_failure(&args.artifact, e))?;
    bar.finish_and_clear();
    let (mut value, mut text) = super::verify::summary(&admitted);
    value["ok"] = json!(true);
    value["artifact"] = json!(shown);
    let Some(model) = loaded.model else {
        if args.input.is_some() {
            return Err(Failure::new(exit::SCHEMA, "schema", Some(&args.artifact),
                "verified, but the artifact holds weights only (no architecture), so there is nothing to run --input on")
                .hint("pack it with --arch FILE to make it runnable"));
        }
        value["loaded"] = json!(false);
        super::record(&admitted, &mut value, &mut text)?;
        super::warn_unsupported(args.common, &admitted);
        report(args.common, value, || {
            format!(
                "verified {}\n{text}  no architecture: weights only, nothing to run\n",
                shown.display()
            )
        });
        return Ok(());
    };
    value["loaded"] = json!(true);
    let mut lines = format!("verified and loaded {}\n{text}", shown.display());
    if let Some(input) = &args.input {
        let names: Vec<(String, String)> = (model.inputs())
            .map(|i| (i.name.clone(), i.dtype.clone()))
            .collect();
        let inputs = read_inputs(input, &names)?;
        let outputs = model.run(inputs).map_err(|e| match e {
            e @ runtime::RunError::TooLarge { .. } => Failure::new(exit::SCHEMA, "schema", Some(&args.artifact), format!("{e} for this input"))
                .hint("run a smaller batch, or raise the limit with --max-memory BYTES if this host can afford it"),
            e => input_failure(input, e.to_string()),
        })?;
        let shapes: Vec<serde_json::Value> = outputs
            .iter()
            .map(|(n, t)| json!({"name": n, "shape": t.shape()}))
            .collect();
        value["outputs"] = json!(shapes);
        for (n, t) in &outputs {
            lines += &format!("  output  {n} {:?}\n", t.shape());
        }
        if let Some(out) = &args.output {
            let npz = out
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
            let written = if npz {
                nnsign::export::write_npz(out, &outputs)
            } else {
                let [(_, value)] = outputs.as_slice() else {
                    return Err(Failure::usage(format!(
                        "the model has {} outputs and a .npy file holds one; give --output OUT.npz",
                        outputs.len()
                    )));
                };
                nnsign::export::write_npy(out, value)
            };
            written.map_err(|e| match e {
                nnsign::export::ExportError::Io { path, source } => io_failure(&path, &source),
                other => Failure::new(exit::IO, "io", Some(out), other.to_string()),
            })?;
            lines += &format!("  wrote   {}\n", out.display());
        }
    }
    super::record(&admitted, &mut value, &mut lines)?;
    super::warn_unsupported(args.common, &admitted);
    report(args.common, value, || lines);
    Ok(())
}
