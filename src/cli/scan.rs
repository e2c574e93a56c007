//! `nnsign scan`: report what model files would execute or reference, without loading them.

use std::path::PathBuf;

use nnsign::import::ImportError;
use serde_json::json;

use super::{exit, io_failure, report, Common, Failure, Result};

/// Report what model files would execute or reference if their framework loaded them, without
/// loading them: the globals a pickle (or a PyTorch checkpoint, or an object .npy) names,
/// Keras Lambda layers and custom classes, ONNX external data and custom ops.
///
/// Example:
///   nnsign scan downloaded/*.pt model.keras model.onnx --json
///
/// Exit code 8 when any file holds something dangerous; else 1 when pack would refuse a file
/// whose values depend on the reader (a PyTorch storage used with two dtypes or sizes); else 0.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Files to scan: PyTorch (.pt/.pth zip), raw pickles, Keras (.keras), ONNX, .npy/.npz,
    /// safetensors.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: Args) -> Result<()> {
    let mut entries = Vec::new();
    let mut text = String::new();
    let mut dangerous = 0;
    let mut refused = None;
    for path in &args.files {
        let r = nnsign::scan::scan(path).map_err(|e| match e {
            ImportError::Io { path, source } => io_failure(&path, &source),
            other => Failure::new(exit::INPUT, "input", Some(path), other.to_string()),
        })?;
        let bad = r.findings.iter().filter(|f| f.danger).count();
        dangerous += usize::from(bad > 0);
        if let (None, Some(f)) = (&refused, r.refusal()) {
            refused = Some((path.clone(), f.what.clone()));
        }
        text += &format!(
            "{}: {} ({})\n",
            path.display(),
            if bad > 0 {
                "DANGEROUS"
            } else {
                "nothing that runs code"
            },
            r.format
        );
        for f in &r.findings {
            text += &format!(
                "  {} {}\n",
                match (f.danger, f.refused) {
                    (true, _) => "danger",
                    (false, true) => "refuse",
                    (false, false) => "note  ",
                },
                f.what
            );
        }
        entries.push(
            json!({"file": path, "format": r.format, "dangerous": bad > 0, "findings": r.findings}),
        );
    }
    report(
        args.common,
        json!({"ok": dangerous == 0 && refused.is_none(), "files": entries}),
        || text,
    );
    if dangerous > 0 {
        return Err(Failure::new(
            exit::DANGER,
            "danger",
            None,
            format!("{dangerous} of {} files would execute or reference code when loaded", args.files.len()),
        )
        .hint("do not load them with their framework; `nnsign pack` imports PyTorch and ONNX files without running them")
        .reported());
    }
    if let Some((path, what)) = refused {
        // Checked after every file, so that a refusal never hides a danger in a later one.
        return Err(Failure::new(exit::INPUT, "input", Some(&path), what)
            .hint("torch.load would read those bytes as the storage's first use; save the model again with torch.save from a loaded copy")
            .reported());
    }
    Ok(())
}
