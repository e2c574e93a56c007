//! Arrays for a model to run on (`verify-load --input`): NumPy `.npy` files, `.npz` archives and
//! safetensors files only, recognised by content, read with the importer's caps. Nothing else is
//! taken for data: a model file of another format given as input is refused, not imported.

use std::path::Path;

use super::npy;
use super::safetensors;
use super::source::{self, invalid, open_zip, ImportError, Opened};

pub use super::npy::Array;

/// Reads the arrays of a `.npy` file (one, named after the file), an `.npz` archive (one per
/// member, named by it) or a safetensors file (one per tensor, by name).
pub fn read_arrays(path: &Path) -> Result<Vec<Array>, ImportError> {
    let Opened { file, magic, .. } = source::open(path)?;
    if npy::looks_like(&magic) {
        Ok(vec![npy::read_npy(path)?])
    } else if source::is_zip(&magic) {
        npy::read_npz(path, open_zip(path, &file)?)
    } else if safetensors::looks_like(&magic) {
        let (mut tensors, _) = safetensors::read(path, &file)?;
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((tensors.into_iter())
            .map(|t| Array {
                bytes: t.bytes.to_vec(),
                name: t.name,
                dtype: t.dtype,
                shape: t.shape,
            })
            .collect())
    } else {
        Err(invalid(
            path,
            "not a .npy, .npz or safetensors file (recognised by content, not by name)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel)
    }

    #[test]
    fn arrays_come_from_npy_npz_and_safetensors_only() {
        let tiny = read_arrays(&fixture("tiny.npy")).unwrap();
        assert_eq!(
            (tiny.len(), tiny[0].name.as_str(), tiny[0].bytes.len()),
            (1, "tiny", 24)
        );
        let two: Vec<String> = (read_arrays(&fixture("two.npz")).unwrap().into_iter())
            .map(|a| a.name)
            .collect();
        assert_eq!(two, ["alpha", "beta"]);
        let st = read_arrays(&fixture("keras_seed_mlp/weights.safetensors")).unwrap();
        let st: Vec<(&str, &[u64])> = st.iter().map(|a| (a.name.as_str(), &a.shape[..])).collect();
        assert_eq!(
            st,
            [
                ("dense/bias", &[32][..]),
                ("dense/kernel", &[784, 32][..]),
                ("dense_1/bias", &[10][..]),
                ("dense_1/kernel", &[32, 10][..])
            ]
        );
        // Model files of other formats are not data, whatever the importer makes of them.
        for (model, why) in [
            (
                "torch_legacy/legacy.pt",
                "not a .npy, .npz or safetensors file (recognised by content, not by name)",
            ),
            ("torch_real/test.pt", "is not a .npy array"),
        ] {
            let err = read_arrays(&fixture(model)).err().unwrap().to_string();
            assert!(err.contains(why), "{model}: {err}");
        }
    }
}
