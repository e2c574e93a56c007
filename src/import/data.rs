//! Arrays for a model to run on (`verify-load --input`): NumPy `.npy` files and `.npz` archives
//! only, recognised by content, read with the importer's caps. Nothing else is taken for data:
//! a model file given as input is refused, not imported.

use std::path::Path;

use super::npy;
use super::source::{self, invalid, open_zip, ImportError, Opened};

pub use super::npy::Array;

/// Reads the arrays of a `.npy` file (one, named after the file) or an `.npz` archive (one per
/// member, named by it).
pub fn read_arrays(path: &Path) -> Result<Vec<Array>, ImportError> {
    let Opened { file, magic, .. } = source::open(path)?;
    if npy::looks_like(&magic) {
        Ok(vec![npy::read_npy(path)?])
    } else if source::is_zip(&magic) {
        npy::read_npz(path, open_zip(path, &file)?)
    } else {
        Err(invalid(
            path,
            "not a .npy or .npz file (recognised by content, not by name)",
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
    fn arrays_come_from_npy_and_npz_only() {
        let tiny = read_arrays(&fixture("tiny.npy")).unwrap();
        assert_eq!(
            (tiny.len(), tiny[0].name.as_str(), tiny[0].bytes.len()),
            (1, "tiny", 24)
        );
        let two: Vec<String> = (read_arrays(&fixture("two.npz")).unwrap().into_iter())
            .map(|a| a.name)
            .collect();
        assert_eq!(two, ["alpha", "beta"]);
        // Model files are not data, whatever the importer makes of them.
        for (model, why) in [
            (
                "safetensors_dtypes/weights.safetensors",
                "not a .npy or .npz file (recognised by content, not by name)",
            ),
            ("torch_legacy/legacy.pt", "not a .npy or .npz file"),
            ("torch_real/test.pt", "is not a .npy array"),
        ] {
            let err = read_arrays(&fixture(model)).err().unwrap().to_string();
            assert!(err.contains(why), "{model}: {err}");
        }
    }
}
