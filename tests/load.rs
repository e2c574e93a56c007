//! Loading reads every tensor straight into its own buffer (F32 weights used as read, other
//! dtypes widened), checking each chunk on the core that read it: the model is the same as
//! from the whole payload, and any changed byte, in a weight or in the padding between
//! tensors, fails with the tensor named and no model built.

mod common;

use std::path::{Path, PathBuf};

use nnsign::format::{DType, Layout, Manifest, ModelInfo};
use nnsign::keys::encryption::EncryptionSecretKey;
use nnsign::keys::{SecretKey, TrustStore};
use nnsign::load::{self, LoadError};
use nnsign::memory::DEFAULT_MEMORY_LIMIT;
use nnsign::model::Graph;
use nnsign::pack::{self, PackInput};
use nnsign::runtime::Tensor;
use nnsign::unseal::{Unlock, UnsealError};
use nnsign::verify::{Artifact, VerifyError};

/// y = x · w + b: w an F32 [k, 2] matrix used as read, b stored as F16 and widened to F32.
const ARCH: &str = r#"{"opset": 2,
  "inputs": [{"name": "x", "dtype": "F32", "shape": ["batch", "k"]}],
  "outputs": [{"name": "y", "dtype": "F32", "shape": ["batch", 2]}],
  "nodes": [
    {"op": "MatMul", "name": "mm", "inputs": ["x", "w"], "outputs": ["xw"]},
    {"op": "Add", "name": "add", "inputs": ["xw", "b"], "outputs": ["y"]}
  ]}"#;

/// An artifact of the graph above with `rows` rows of w (w[r] = [r, -r] / 1000) and b as F16
/// [0.5, -1.5]; signed by `key`.
fn artifact(dir: &Path, key: &SecretKey, rows: u64) -> PathBuf {
    artifact_to(dir, key, rows, None)
}

fn artifact_to(
    dir: &Path,
    key: &SecretKey,
    rows: u64,
    encrypt_to: Option<&EncryptionSecretKey>,
) -> PathBuf {
    let w: Vec<u8> = (0..rows)
        .flat_map(|r| [r as f32 / 1000.0, -(r as f32) / 1000.0])
        .flat_map(f32::to_le_bytes)
        .collect();
    let b: Vec<u8> = [0.5f32, -1.5]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let arch = ARCH.replace("\"k\"", &rows.to_string());
    let model = ModelInfo {
        name: "mm".into(),
        version: Some("1.0.0".into()),
        description: None,
        created: pack::created_now(),
        expires: None,
        producer: "tests/load.rs".into(),
        labels: Default::default(),
        parent: None,
    };
    let out = dir.join("mm.nns");
    let input = PackInput {
        model,
        arch: Some(Graph::from_json(&arch).unwrap()),
        tensors: vec![
            common::tensor("w", DType::F32, &[rows, 2], w),
            common::tensor("b", DType::F16, &[2], b),
        ],
        signer: Some(key),
        encrypt: encrypt_to.map(|r| pack::EncryptTo {
            recipients: vec![r.public()],
            passphrase: None,
        }),
    };
    pack::pack(input, &out, &|_| {}).unwrap();
    out
}

fn load(path: &Path, key: &SecretKey) -> Result<load::Loaded, LoadError> {
    let mut trust = TrustStore::default();
    trust.insert(key.public(), "key.pub");
    let auth = Artifact::open(path)?.authenticate(&trust, false)?;
    load::load(&auth, DEFAULT_MEMORY_LIMIT, &|_| {})
}

fn load_sealed(
    path: &Path,
    key: &SecretKey,
    with: &EncryptionSecretKey,
) -> Result<load::Loaded, LoadError> {
    let mut trust = TrustStore::default();
    trust.insert(key.public(), "key.pub");
    let auth = Artifact::open(path)?.authenticate(&trust, false)?;
    load::load_encrypted(&auth, Unlock::Key(with), DEFAULT_MEMORY_LIMIT, &|_| {})
}

#[test]
fn tensors_read_in_place_run_as_numpy_computes() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    // 600,000 rows: w is 4.6 MiB, over one digest chunk (and over one encrypted window).
    let rows = 600_000u64;
    let edge = EncryptionSecretKey::generate().unwrap();
    let plain = artifact(dir.path(), &key, rows);
    let sealed_dir = tempfile::tempdir().unwrap();
    let sealed = artifact_to(sealed_dir.path(), &key, rows, Some(&edge));
    let from_sealed = load_sealed(&sealed, &key, &edge).unwrap().model.unwrap();
    check_sums(from_sealed, rows);
    let model = load(&plain, &key).unwrap().model.unwrap();
    check_sums(model, rows);
}

fn check_sums(model: nnsign::runtime::Model, rows: u64) {
    let x = Tensor {
        shape: vec![1, rows as usize],
        data: vec![1.0f32; rows as usize],
    };
    let y = model.run(vec![("x".into(), x.into())]).unwrap();
    // sum over r of r/1000 = rows (rows - 1) / 2000, accumulated in f32.
    let sum = (rows * (rows - 1) / 2) as f64 / 1000.0;
    let got = &y[0].1.f32().data;
    assert!((got[0] as f64 - (sum + 0.5)).abs() / sum < 1e-5, "{got:?}");
    assert!((got[1] as f64 + sum + 1.5).abs() / sum < 1e-5, "{got:?}");
}

#[test]
fn an_encrypted_model_is_refused_by_window_and_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let edge = EncryptionSecretKey::generate().unwrap();
    let path = artifact_to(dir.path(), &key, 600_000, Some(&edge));
    let good = std::fs::read(&path).unwrap();
    let (_, payload_offset) = Artifact::open(&path).unwrap().sizes();
    // A byte of the first window (the hidden header's) and of the second.
    for (at, what) in [(100, "chunk 0 "), ((4 << 20) + 100_000, "chunk 1 ")] {
        let mut bad = good.clone();
        bad[payload_offset as usize + at] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        match load_sealed(&path, &key, &edge) {
            Err(LoadError::Unseal(UnsealError::Verify(e @ VerifyError::Digest { .. }))) => {
                assert!(e.to_string().contains(what), "{at}: {e}")
            }
            Err(e) => panic!("{at}: {e}"),
            Ok(_) => panic!("{at}: a changed ciphertext byte was loaded"),
        }
    }
    std::fs::write(&path, &good).unwrap();
    let stranger = EncryptionSecretKey::generate().unwrap();
    assert!(matches!(
        load_sealed(&path, &key, &stranger),
        Err(LoadError::Unseal(UnsealError::Crypto(_)))
    ));
}

#[test]
fn a_changed_byte_anywhere_is_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let path = artifact(dir.path(), &key, 600_000);
    let good = std::fs::read(&path).unwrap();
    let (_, payload_offset) = Artifact::open(&path).unwrap().sizes();
    let payload_offset = payload_offset as usize;
    // In b (stored first: tensors are laid out by name), in the padding after it (the same
    // chunk), at the start of w, and in w's second chunk.
    let w_start = 64;
    for (at, what) in [
        (0, "bytes 0..4 of tensor \"b\""),
        (10, "bytes 0..4 of tensor \"b\""),
        (w_start, "bytes 0..4194304 of tensor \"w\""),
        (
            w_start + (4 << 20) + 7,
            "bytes 4194304..4800000 of tensor \"w\"",
        ),
    ] {
        let mut bad = good.clone();
        bad[payload_offset + at] ^= 0x20;
        std::fs::write(&path, &bad).unwrap();
        match load(&path, &key) {
            Err(LoadError::Verify(e @ VerifyError::Digest { .. })) => {
                assert!(e.to_string().contains(what), "{at}: {e}")
            }
            Err(e) => panic!("{at}: {e}"),
            Ok(_) => panic!("{at}: a changed byte was loaded"),
        }
    }
}

#[test]
fn signed_padding_that_is_not_zero_is_refused() {
    // A signer that hides bytes between tensors: the digests match (it signed them), the
    // padding rule does not.
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let path = artifact(dir.path(), &key, 3);
    let artifact = Artifact::open(&path).unwrap();
    let (_, payload_offset) = artifact.sizes();
    let mut manifest = Manifest::decode(artifact.manifest_bytes()).unwrap();
    let mut payload = std::fs::read(&path).unwrap()[payload_offset as usize..].to_vec();
    payload[10] = 0xff; // b is 4 bytes long; 4..64 is padding
    let (_, _, layout) = artifact.manifest_unverified().unwrap();
    let chunks = Layout::chunks_for(&layout.tensors, layout.length);
    manifest.payload.digests = pack::digest_chunks(&chunks, &payload);
    std::fs::write(&path, common::resigned(&manifest.encode(), &payload, &key)).unwrap();
    match load(&path, &key) {
        Err(LoadError::Verify(e @ VerifyError::Padding(10))) => {
            assert!(
                e.to_string().contains("padding byte at payload offset 10"),
                "{e}"
            )
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("hidden bytes between tensors were loaded"),
    }
}
