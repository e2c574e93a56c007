//! Verified weights out for other runtimes (`nnsign unpack`): a safetensors file streamed in
//! bounded memory (decrypted window by window for an encrypted artifact), a NumPy `.npz`, or the
//! graph and its weights as ONNX. Every byte written has matched its signed digest first, and a
//! failure leaves no output file.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::export::{self, ExportError};
use crate::format::Layout;
use crate::keys::hex;
use crate::model::Graph;
use crate::output::Output;
use crate::unseal::{self, PlainSink, Unlock, UnsealError};
use crate::verify::{Authenticated, VerifyError};

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
    /// The output could not be written, or a dtype has no form there.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The payload failed verification while it was being written.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// An encrypted payload did not open.
    #[error(transparent)]
    Unseal(#[from] UnsealError),
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
            Some(unlock) => write_safetensors_encrypted(auth, unlock, out, progress)?,
            None => write_safetensors(auth, out, progress)?,
        }
        return Ok(());
    }
    let (arch, payload) = match unlock {
        Some(unlock) => {
            let u = unseal::unseal(auth, unlock, progress)?;
            (u.arch, u.payload)
        }
        None => {
            let payload = auth.read_payload(progress)?;
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

/// The `__metadata__` written with the weights: the model's labels as they are, plus its signed
/// metadata and provenance under `nnsign.` keys.
pub fn safetensors_metadata(auth: &Authenticated) -> HashMap<String, String> {
    let m = &auth.manifest.model;
    let mut out: HashMap<String, String> = m.labels.clone().into_iter().collect();
    out.insert("nnsign.name".into(), m.name.clone());
    if let Some(v) = &m.version {
        out.insert("nnsign.version".into(), v.clone());
    }
    if let Some(d) = &m.description {
        out.insert("nnsign.description".into(), d.clone());
    }
    out.insert(
        "nnsign.artifact_digest".into(),
        format!("sha256:{}", hex(&auth.digest)),
    );
    // Always written, empty when unsigned, so that nothing else can stand in for it.
    let ids: Vec<String> = auth
        .signers
        .iter()
        .map(|s| s.key.id().to_string())
        .collect();
    out.insert("nnsign.signers".into(), ids.join(","));
    out
}

/// Streams the verified payload into a safetensors file at `out`, every tensor bit-identical.
/// Each chunk is checked before its bytes are written; on any failure the output is discarded.
fn write_safetensors(
    auth: &Authenticated,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), UnpackError> {
    if auth.manifest.is_encrypted() {
        return Err(ExportError::Unsupported(
            "the artifact is encrypted; give the recipient key that opens it (--decrypt-with KEY)"
                .into(),
        )
        .into());
    }
    let io = |source| {
        UnpackError::from(ExportError::Io {
            path: out.into(),
            source,
        })
    };
    let header = export::safetensors_header(&auth.layout.tensors, safetensors_metadata(auth))?;
    let mut output = Output::create(out).map_err(io)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, output.file_mut());
        w.write_all(&header).map_err(io)?;
        let layout = &auth.layout;
        // A failed write is the output's fault and is reported against it, not the artifact.
        auth.stream_payload(progress, |i, chunk| {
            w.write_all(&chunk[..layout.chunk_data_len(i)]).map_err(io)
        })?;
        w.flush().map_err(io)?;
    }
    output.commit().map_err(io)?;
    Ok(())
}

/// Verifies and decrypts an encrypted payload into a safetensors file at `out`, streaming:
/// memory stays at a few digest windows per core whatever the model's size. Nothing is left at
/// `out` unless every window matched its digest and every STREAM chunk authenticated.
fn write_safetensors_encrypted(
    auth: &Authenticated,
    unlock: Unlock<'_>,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), UnpackError> {
    let io = |source| {
        UnpackError::from(ExportError::Io {
            path: out.into(),
            source,
        })
    };
    let mut output = Output::create(out).map_err(io)?;
    {
        let mut sink = SafetensorsSink {
            auth,
            out,
            writer: BufWriter::with_capacity(1 << 20, output.file_mut()),
        };
        unseal::unseal_stream(auth, unlock, progress, &mut sink)?;
        sink.writer.flush().map_err(io)?;
    }
    output.commit().map_err(io)?;
    Ok(())
}

/// Writes decrypted tensors as they arrive.
struct SafetensorsSink<'a, W: Write> {
    auth: &'a Authenticated,
    out: &'a Path,
    writer: W,
}

impl<W: Write> PlainSink for SafetensorsSink<'_, W> {
    type Error = UnpackError;

    fn header(&mut self, _arch: Option<&Graph>, layout: &Layout) -> Result<(), UnpackError> {
        let header = export::safetensors_header(&layout.tensors, safetensors_metadata(self.auth))?;
        self.data(&header)
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), UnpackError> {
        self.writer.write_all(bytes).map_err(|source| {
            ExportError::Io {
                path: self.out.into(),
                source,
            }
            .into()
        })
    }
}
