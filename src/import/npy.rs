//! NumPy arrays in: `.npy` files and `.npz` archives of them, plain numeric dtypes only.
//!
//! Every length in a header is checked against the file and a named cap before anything is
//! allocated for it (npyz allocates a header's declared length). Object arrays are refused by
//! name: loading one unpickles (runs) its data.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::source::{
    invalid, over_zip_ratio, read_record, Bytes, ImportError, SourceTensor, Zip, MAX_ZIP_RATIO,
};
use crate::format::{self, DType, MAX_TENSORS};

/// Largest `.npy` header accepted (numpy's own loader stops at 10,000 bytes by default).
pub const MAX_NPY_HEADER_LEN: usize = 65536;
/// Largest decompressed `.npz` member.
pub const MAX_NPZ_MEMBER_LEN: u64 = 16 << 30;

/// An array read from a `.npy` file or `.npz` member: little-endian, C order, `bytes.len()`
/// equal to its dtype times its shape.
pub struct Array {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub bytes: Vec<u8>,
}

impl Array {
    /// The array as a tensor to pack, read from `origin`.
    pub fn into_tensor(self, origin: &Path) -> SourceTensor {
        SourceTensor {
            name: self.name,
            dtype: self.dtype,
            shape: self.shape,
            bytes: Bytes::Owned(Arc::new(self.bytes)),
            origin: origin.into(),
        }
    }
}

/// Whether a file starts like a `.npy` file.
pub fn looks_like(magic: &[u8]) -> bool {
    magic.starts_with(b"\x93NUMPY")
}

/// Reads a whole `.npy` file, the array named after the file (without its extension).
pub fn read_npy(path: &Path) -> Result<Array, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.into(),
        source,
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_npy(path, &name, bytes)
}

/// Parses a whole `.npy` file. Big-endian data is swapped to little-endian and Fortran-order
/// data is transposed to C order, so what is stored is always little-endian C order.
pub fn parse_npy(path: &Path, name: &str, bytes: Vec<u8>) -> Result<Array, ImportError> {
    let bad = |why: String| invalid(path, format!("{name}: {why}"));
    let (major, header_start) = match bytes.get(6) {
        Some(1) => (1, 10),
        Some(2) | Some(3) => (2, 12),
        Some(v) => return Err(bad(format!(".npy version {v} is not supported"))),
        None => return Err(bad("truncated .npy header".into())),
    };
    let header_len = match major {
        1 => bytes
            .get(8..10)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize),
        _ => bytes
            .get(8..12)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
    }
    .ok_or_else(|| bad("truncated .npy header".into()))?;
    // npyz allocates the declared header length before reading it: check it first.
    if header_len > MAX_NPY_HEADER_LEN || header_start + header_len > bytes.len() {
        return Err(bad(format!(
            "header length {header_len} is larger than the file or the limit of {MAX_NPY_HEADER_LEN}"
        )));
    }
    let header_text = &bytes[header_start..header_start + header_len];
    let mut depth = 0i32;
    for &c in header_text {
        depth += match c {
            b'(' | b'[' | b'{' => 1,
            b')' | b']' | b'}' => -1,
            _ => 0,
        };
        if depth > 4 {
            return Err(bad("header nests too deeply for a plain array".into()));
        }
    }
    let npy =
        npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(format!("invalid .npy header: {e}")))?;
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(bad(
            "structured or sub-array dtypes are not supported; save plain arrays".into(),
        ));
    };
    use npyz::TypeChar as C;
    let dtype =
        match (ts.type_char(), ts.size_field()) {
            (C::Bool, 1) => DType::Bool,
            (C::Int, 1) => DType::I8,
            (C::Int, 2) => DType::I16,
            (C::Int, 4) => DType::I32,
            (C::Int, 8) => DType::I64,
            (C::Uint, 1) => DType::U8,
            (C::Uint, 2) => DType::U16,
            (C::Uint, 4) => DType::U32,
            (C::Uint, 8) => DType::U64,
            (C::Float, 2) => DType::F16,
            (C::Float, 4) => DType::F32,
            (C::Float, 8) => DType::F64,
            (C::Object, _) => return Err(bad(
                "object array refused: loading it would unpickle (run) code; save numeric arrays"
                    .into(),
            )),
            _ => return Err(bad(format!("dtype {ts} is not supported"))),
        };
    let shape = npy.shape().to_vec();
    if shape.len() > format::MAX_RANK {
        return Err(bad(format!("more than {} dimensions", format::MAX_RANK)));
    }
    let fortran = matches!(npy.order(), npyz::Order::Fortran);
    let big_endian = ts.endianness() == npyz::Endianness::Big && dtype.size() > 1;
    let data_start = header_start + header_len;
    let expected =
        format::tensor_len(dtype, &shape).ok_or_else(|| bad("shape overflows".into()))?;
    let actual = (bytes.len() - data_start) as u64;
    if actual != expected {
        return Err(bad(format!(
            "holds {actual} data bytes, but {dtype} {shape:?} needs {expected}"
        )));
    }
    let mut data = bytes;
    data.drain(..data_start);
    if big_endian {
        for elem in data.chunks_exact_mut(dtype.size() as usize) {
            elem.reverse();
        }
    }
    if fortran && shape.len() > 1 {
        data = fortran_to_c(&data, &shape, dtype.size() as usize);
    }
    format::check_tensor_name(name).map_err(|e| invalid(path, e.to_string()))?;
    Ok(Array {
        name: name.to_owned(),
        dtype,
        shape,
        bytes: data,
    })
}

/// Reorders column-major elements into row-major order.
fn fortran_to_c(data: &[u8], shape: &[u64], elem: usize) -> Vec<u8> {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let count: usize = dims.iter().product();
    // Column-major strides, in elements.
    let mut strides = vec![1usize; dims.len()];
    for i in 1..dims.len() {
        strides[i] = strides[i - 1] * dims[i - 1];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut index = vec![0usize; dims.len()];
    for _ in 0..count {
        let src: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&data[src * elem..(src + 1) * elem]);
        // Advance the row-major multi-index, last axis fastest.
        for axis in (0..dims.len()).rev() {
            index[axis] += 1;
            if index[axis] < dims[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// Reads the arrays of an `.npz` archive (opened and checked by [`open_zip`]), named by their
/// members without `.npy`. Each member's sizes are checked against the file and the caps before
/// it is read.
///
/// [`open_zip`]: super::source::open_zip
pub fn read_npz(path: &Path, zip: Zip<'_>) -> Result<Vec<Array>, ImportError> {
    let Zip {
        archive: mut zip,
        file_len,
    } = zip;
    if zip.len() > MAX_TENSORS {
        return Err(invalid(path, format!("more than {MAX_TENSORS} members")));
    }
    let mut arrays: Vec<Array> = Vec::with_capacity(zip.len());
    let mut names = HashSet::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| invalid(path, format!("member {i}: {e}")))?;
        let member_name = member
            .name()
            .map_err(|e| invalid(path, format!("member {i}: {e}")))?
            .into_owned();
        if member.is_dir() {
            continue;
        }
        let Some(name) = member_name.strip_suffix(".npy") else {
            return Err(invalid(
                path,
                format!("member {member_name:?} is not a .npy array"),
            ));
        };
        // Both sizes come from the archive's headers: check them against the file and the caps
        // before trusting either, and never allocate more than what has actually been read.
        let size = member.size();
        let compressed = member.compressed_size().max(1);
        if compressed > file_len {
            return Err(invalid(
                path,
                format!("member {member_name:?} claims {compressed} compressed bytes, more than the whole file"),
            ));
        }
        if size > MAX_NPZ_MEMBER_LEN || over_zip_ratio(size, compressed) {
            return Err(invalid(
                path,
                format!("member {member_name:?} expands to {size} bytes from {compressed}, more than {MAX_ZIP_RATIO} times: refused as a zip bomb (store constant arrays uncompressed)"),
            ));
        }
        let bytes = read_record(&mut member, size, size)
            .map_err(|e| invalid(path, format!("member {member_name:?}: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(invalid(
                path,
                format!("member {member_name:?} is not the size its header states"),
            ));
        }
        if !names.insert(name.to_owned()) {
            return Err(invalid(
                path,
                format!("member {member_name:?} appears twice"),
            ));
        }
        arrays.push(parse_npy(path, name, bytes)?);
    }
    Ok(arrays)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_becomes_c_order() {
        // np.asfortranarray(np.arange(6).reshape(2, 3)) stores 0 3 1 4 2 5.
        let data: Vec<u8> = [0u8, 3, 1, 4, 2, 5].to_vec();
        assert_eq!(fortran_to_c(&data, &[2, 3], 1), vec![0, 1, 2, 3, 4, 5]);
        // arange(24).reshape(2, 3, 4) in Fortran order: element (i, j, k) at i + 2j + 6k.
        let mut f = vec![0u8; 24];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    f[i + 2 * j + 6 * k] = (i * 12 + j * 4 + k) as u8;
                }
            }
        }
        assert_eq!(
            fortran_to_c(&f, &[2, 3, 4], 1),
            (0..24).collect::<Vec<u8>>()
        );
    }

    #[test]
    fn npy_header_bombs_are_refused_before_allocation() {
        let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = parse_npy(Path::new("x.npy"), "x", bytes).err().unwrap();
        assert!(
            err.to_string().contains("header length 4294967295"),
            "{err}"
        );
    }
}
