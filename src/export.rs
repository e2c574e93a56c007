//! Writing verified weights out for other runtimes: safetensors files, and `.npy` arrays of
//! model outputs.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::format::Layout;
use crate::keys::hex;
use crate::output::Output;
use crate::runtime::Tensor;
use crate::verify::{Authenticated, VerifiedPayload, VerifyError};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The payload failed verification while it was being written; the output was discarded.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{0}")]
    Unsupported(String),
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

/// The safetensors header (length prefix included) for the tensors of `layout`, stored
/// back to back in payload order.
fn safetensors_header(auth: &Authenticated, layout: &Layout) -> Result<Vec<u8>, ExportError> {
    let mut infos = Vec::with_capacity(layout.tensors.len());
    let mut offset = 0usize;
    for t in &layout.tensors {
        let dtype: safetensors::Dtype =
            serde_json::from_value(serde_json::Value::String(t.dtype.name().into())).map_err(
                |_| ExportError::Unsupported(format!("dtype {} has no safetensors name", t.dtype)),
            )?;
        let end = offset + t.length as usize;
        infos.push((
            t.name.clone(),
            safetensors::tensor::TensorInfo {
                dtype,
                shape: t.shape.iter().map(|&d| d as usize).collect(),
                data_offsets: (offset, end),
            },
        ));
        offset = end;
    }
    let meta = safetensors::tensor::Metadata::new(Some(safetensors_metadata(auth)), infos)
        .map_err(|e| ExportError::Unsupported(format!("safetensors header: {e}")))?;
    let mut json = serde_json::to_vec(&meta)
        .map_err(|e| ExportError::Unsupported(format!("safetensors header: {e}")))?;
    // As the safetensors writer does: pad the header with spaces so the data starts 8-aligned.
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut header = (json.len() as u64).to_le_bytes().to_vec();
    header.extend_from_slice(&json);
    Ok(header)
}

/// Streams the verified payload into a safetensors file at `out`, every tensor bit-identical.
/// Each chunk is checked before its bytes are written; on any failure the output is discarded.
pub fn write_safetensors(
    auth: &Authenticated,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), ExportError> {
    if auth.manifest.is_encrypted() {
        return Err(ExportError::Unsupported(
            "the artifact is encrypted; give the recipient key that opens it (--decrypt-with KEY)"
                .into(),
        ));
    }
    let io = |source| ExportError::Io {
        path: out.into(),
        source,
    };
    let header = safetensors_header(auth, &auth.layout)?;
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

/// Writes an already verified (decrypted) payload as a safetensors file at `out`.
pub fn write_safetensors_from(
    auth: &Authenticated,
    payload: &VerifiedPayload,
    out: &Path,
) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: out.into(),
        source,
    };
    let header = safetensors_header(auth, payload.layout())?;
    let mut output = Output::create(out).map_err(io)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, output.file_mut());
        w.write_all(&header).map_err(io)?;
        for t in payload.tensors() {
            let (_, bytes) = payload
                .tensor(&t.name)
                .expect("every tensor of the layout is in the payload");
            w.write_all(bytes).map_err(io)?;
        }
        w.flush().map_err(io)?;
    }
    output.commit().map_err(io)?;
    Ok(())
}

/// Writes one float32 array as `.npy` (format 1.0, little-endian, C order).
pub fn write_npy(out: &Path, t: &Tensor) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: out.into(),
        source,
    };
    let mut output = Output::create(out).map_err(io)?;
    {
        let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape)
            .writer(BufWriter::new(output.file_mut()))
            .begin_nd()
            .map_err(io)?;
        w.extend(t.data.iter().copied()).map_err(io)?;
        w.finish().map_err(io)?;
    }
    output.commit().map_err(io)?;
    Ok(())
}
