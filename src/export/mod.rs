//! Writing verified weights out for other runtimes: safetensors files, and `.npy` arrays of
//! model outputs.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::format::TensorInfo;
use crate::output::Output;
use crate::tensor::Value;

pub mod onnx;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// The safetensors header (length prefix included) for `tensors`, stored back to back in
/// their order, with `metadata` as its `__metadata__`.
pub fn safetensors_header(
    tensors: &[TensorInfo],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, ExportError> {
    let mut infos = Vec::with_capacity(tensors.len());
    let mut offset = 0usize;
    for t in tensors {
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
    let meta = safetensors::tensor::Metadata::new(Some(metadata), infos)
        .map_err(|e| ExportError::Unsupported(format!("safetensors header: {e}")))?;
    let mut json = serde_json::to_vec(&meta)
        .map_err(|e| ExportError::Unsupported(format!("safetensors header: {e}")))?;
    // As the safetensors writer does: pad the header with spaces so the data starts 8-aligned.
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut header = (json.len() as u64).to_le_bytes().to_vec();
    header.extend_from_slice(&json);
    Ok(header)
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

/// Writes one array as `.npy` (format 1.0, little-endian, C order): `<f4`, `<i8` or `|b1`.
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
        // NumPy's `|b1`: one byte, 0 or 1.
        Value::Bool(t) => npy_of(&t.data, &shape, w),
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
