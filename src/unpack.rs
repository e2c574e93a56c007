//! Verified weights out for other runtimes (`nnsign unpack`): a safetensors file streamed in
//! bounded memory (decrypted window by window for an encrypted artifact), a NumPy `.npz`, or the
//! graph and its weights as ONNX. Every byte written has matched its signed digest first, and a
//! failure leaves no output file.

use std::path::Path;

use crate::export::{self, ExportError};
use crate::unseal::{self, Unlock};
use crate::verify::Authenticated;

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Every tensor bit-identical, with labels and the signed metadata in `__metadata__`.
    Safetensors,
    /// NumPy arrays by tensor name (dtypes NumPy has).
    Npz,
    /// The architecture and its weights as an ONNX model (needs an architecture).
    Onnx,
}

/// Why unpacking failed; nothing was left at the output path.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Writing, verifying or decrypting failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// `Format::Onnx` of a weights-only artifact.
    #[error("the artifact holds weights only: there is no graph to write as ONNX")]
    NoGraph,
    /// The graph has no ONNX form.
    #[error("no ONNX form: {0}")]
    NoOnnx(String),
}

/// Writes the payload of `auth` to `out` as `format`, decrypting with `unlock` when the artifact
/// is encrypted. Safetensors are streamed: memory stays at a few digest windows per core.
/// NumPy and ONNX files are written in one piece, from the whole payload in memory.
pub fn unpack(
    auth: &Authenticated,
    unlock: Option<Unlock<'_>>,
    format: Format,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), UnpackError> {
    if format == Format::Safetensors {
        match unlock {
            Some(unlock) => export::write_safetensors_encrypted(auth, unlock, out, progress)?,
            None => export::write_safetensors(auth, out, progress)?,
        }
        return Ok(());
    }
    let (arch, payload) = match unlock {
        Some(unlock) => {
            let u = unseal::unseal(auth, unlock, progress).map_err(ExportError::from)?;
            (u.arch, u.payload)
        }
        None => {
            let payload = auth.read_payload(progress).map_err(ExportError::from)?;
            (auth.arch.clone(), payload)
        }
    };
    let tensors: Vec<_> = (payload.tensors().iter())
        .map(|t| {
            payload
                .tensor(&t.name)
                .expect("every tensor is in the payload")
        })
        .collect();
    if format == Format::Npz {
        export::write_npz_tensors(out, &tensors)?;
        return Ok(());
    }
    let arch = arch.ok_or(UnpackError::NoGraph)?;
    let producer = format!("nnsign {}", env!("CARGO_PKG_VERSION"));
    let bytes = crate::export::onnx::model(&arch, &tensors, &producer)
        .map_err(|e| UnpackError::NoOnnx(e.to_string()))?;
    export::write_bytes(out, &bytes)?;
    Ok(())
}
