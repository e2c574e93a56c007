//! nnsign: signed, verifiable model artifacts that load without running code.
//!
//! An artifact (`.nns`, specified in `docs/FORMAT.md`) holds a model's weights, its architecture
//! and metadata, SHA-256 digests over every payload byte, and Ed25519 signatures (COSE_Sign1)
//! over all of that. Loading goes through the same steps as the CLI, in an order the types
//! enforce: open the capped outer frame, check signatures against trusted keys, decode the
//! manifest, validate the architecture, check every payload byte against its digest, and only
//! then build the model.
//!
//! ```
//! use nnsign::{import, keys, load, pack, verify};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//!
//! // Build job: a signing key and a one-layer model.
//! let key = keys::SecretKey::generate()?;
//! let kernel: Vec<u8> = [1.0f32, 0.0, 0.0, 1.0, 2.0, -1.0]
//!     .iter().flat_map(|v| v.to_le_bytes()).collect();
//! let tensors = vec![import::SourceTensor {
//!     name: "dense/kernel".into(),
//!     dtype: nnsign::format::DType::F32,
//!     shape: vec![3, 2],
//!     bytes: import::Bytes::Owned(kernel.into()),
//!     origin: "memory".into(),
//! }];
//! let arch = nnsign::model::Graph::from_json(r#"{"opset": 1,
//!     "inputs": [{"name": "x", "dtype": "F32", "shape": ["batch", 3]}],
//!     "outputs": [{"name": "y", "dtype": "F32", "shape": ["batch", 2]}],
//!     "nodes": [{"op": "Dense", "name": "dense", "inputs": ["x", "dense/kernel"],
//!                "outputs": ["y"], "attrs": {"activation": "relu"}}]}"#)?;
//! let model = nnsign::format::ModelInfo {
//!     name: "tiny".into(), version: Some("1.0.0".into()), description: None,
//!     created: pack::created_now(), producer: "doc example".into(), labels: Default::default(),
//!     expires: None, parent: None,
//! };
//! let path = dir.path().join("tiny.nns");
//! pack::pack(pack::PackInput { model, arch: Some(arch), tensors, signer: Some(&key) , encrypt: None },
//!            &path, &|_| {})?;
//!
//! // Serving host: trust the build job's public key, verify, load, run.
//! let mut trust = keys::TrustStore::default();
//! trust.insert(key.public(), "ci.pub");
//! let artifact = verify::Artifact::open(&path)?.authenticate(&trust, false)?;
//! let loaded = load::load(&artifact, nnsign::model::DEFAULT_MEMORY_LIMIT, &|_| {})?;
//! let model = loaded.model.expect("the artifact has an architecture");
//! let x = nnsign::runtime::Tensor { shape: vec![1, 3], data: vec![1.0, 2.0, 3.0] };
//! let outputs = model.run(vec![("x".into(), x.into())])?;
//! assert_eq!(outputs[0].1.f32().data, vec![7.0, 0.0]); // relu([1+0+6, 0+2-3])
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]

pub mod cbor;
pub mod crypto;
pub mod diff;
pub mod export;
pub mod format;
pub mod import;
pub mod keys;
pub mod load;
pub mod model;
pub mod ops;
pub mod output;
pub mod pack;
pub mod policy;
pub mod runtime;
pub mod scan;
pub mod signature;
pub mod state;
mod sys;
pub mod unseal;
pub mod verify;
