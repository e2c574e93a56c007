//! Writing verified weights out for other runtimes: safetensors files, and `.npy` arrays of
//! model outputs.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::format::Layout;
use crate::keys::hex;
use crate::model::Graph;
use crate::output::Output;
use crate::runtime::Value;
use crate::unseal::{self, PlainSink, Unlock, UnsealError};
use crate::verify::{Authenticated, VerifyError};

pub mod onnx;

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
    /// An encrypted payload did not open; the output was discarded.
    #[error(transparent)]
    Unseal(#[from] UnsealError),
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

/// Verifies and decrypts an encrypted payload into a safetensors file at `out`, streaming:
/// memory stays at a few digest windows per core whatever the model's size. Nothing is left at
/// `out` unless every window matched its digest and every STREAM chunk authenticated.
pub fn write_safetensors_encrypted(
    auth: &Authenticated,
    unlock: Unlock<'_>,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: out.into(),
        source,
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
    type Error = ExportError;

    fn header(&mut self, _arch: Option<&Graph>, layout: &Layout) -> Result<(), ExportError> {
        let header = safetensors_header(self.auth, layout)?;
        self.data(&header)
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        self.writer
            .write_all(bytes)
            .map_err(|source| ExportError::Io {
                path: self.out.into(),
                source,
            })
    }
}

/// The NumPy `descr` of a dtype NumPy has.
fn npy_descr(d: crate::format::DType) -> Option<&'static str> {
    use crate::format::DType as D;
    Some(match d {
        D::F16 => "<f2",
        D::F32 => "<f4",
        D::F64 => "<f8",
        D::I8 => "|i1",
        D::I16 => "<i2",
        D::I32 => "<i4",
        D::I64 => "<i8",
        D::U8 => "|u1",
        D::U16 => "<u2",
        D::U32 => "<u4",
        D::U64 => "<u8",
        D::Bool => "|b1",
        _ => return None,
    })
}

/// The `.npy` (format 1.0) header of a C-order little-endian array.
fn npy_header(descr: &str, shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    let total = (10 + dict.len() + 1).next_multiple_of(64);
    h.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(total - 1, b' ');
    h.push(b'\n');
    h
}

/// Writes verified tensors as an uncompressed `.npz` (NumPy's `savez`), each bit-identical.
pub fn write_npz_tensors(
    out: &Path,
    tensors: &[(&crate::format::TensorInfo, &[u8])],
) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: out.into(),
        source,
    };
    for (t, _) in tensors {
        if npy_descr(t.dtype).is_none() {
            return Err(ExportError::Unsupported(format!(
                "tensor {:?} is {}, which NumPy has no dtype for; unpack as safetensors",
                t.name, t.dtype
            )));
        }
    }
    let mut output = Output::create(out).map_err(io)?;
    {
        let mut zip = zip::ZipWriter::new(BufWriter::new(output.file_mut()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        for (t, bytes) in tensors {
            zip.start_file(format!("{}.npy", t.name), options)
                .map_err(|e| io(std::io::Error::other(e)))?;
            let descr = npy_descr(t.dtype).expect("checked above");
            zip.write_all(&npy_header(descr, &t.shape)).map_err(io)?;
            zip.write_all(bytes).map_err(io)?;
        }
        let mut w = zip.finish().map_err(|e| io(std::io::Error::other(e)))?;
        w.flush().map_err(io)?;
    }
    output.commit().map_err(io)?;
    Ok(())
}

/// Writes bytes to `out` atomically.
pub fn write_bytes(out: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: out.into(),
        source,
    };
    let mut output = Output::create(out).map_err(io)?;
    output.file_mut().write_all(bytes).map_err(io)?;
    output.commit().map_err(io)?;
    Ok(())
}

/// Writes one array as `.npy` (format 1.0, little-endian, C order): `<f4` or `<i8`.
pub fn write_npy(out: &Path, v: &Value) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: out.into(),
        source,
    };
    let mut output = Output::create(out).map_err(io)?;
    {
        let mut w = BufWriter::new(output.file_mut());
        npy_bytes(v, &mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
    output.commit().map_err(io)?;
    Ok(())
}

/// Writes named arrays as an uncompressed `.npz` (NumPy's `savez`: a zip of `NAME.npy`).
pub fn write_npz(out: &Path, values: &[(String, Value)]) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: out.into(),
        source,
    };
    let mut output = Output::create(out).map_err(io)?;
    {
        let mut zip = zip::ZipWriter::new(BufWriter::new(output.file_mut()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        for (name, v) in values {
            zip.start_file(format!("{name}.npy"), options)
                .map_err(|e| io(std::io::Error::other(e)))?;
            npy_bytes(v, &mut zip).map_err(io)?;
        }
        let mut w = zip.finish().map_err(|e| io(std::io::Error::other(e)))?;
        w.flush().map_err(io)?;
    }
    output.commit().map_err(io)?;
    Ok(())
}

/// The `.npy` encoding of `v` into `w`.
fn npy_bytes(v: &Value, w: impl Write) -> std::io::Result<()> {
    let shape: Vec<u64> = v.shape().iter().map(|&d| d as u64).collect();
    match v {
        Value::F32(t) => npy_of(&t.data, &shape, w),
        Value::I64(t) => npy_of(&t.data, &shape, w),
    }
}

fn npy_of<T: npyz::AutoSerialize + Copy>(
    data: &[T],
    shape: &[u64],
    w: impl Write,
) -> std::io::Result<()> {
    use npyz::WriterBuilder;
    let mut n = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(w)
        .begin_nd()?;
    n.extend(data.iter().copied())?;
    n.finish()
}
