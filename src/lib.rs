//! nnsign: signed, verifiable model artifacts that load without running code.
//!
//! An artifact (`.nns`, specified in `docs/FORMAT.md`) holds a model's weights, its architecture
//! and metadata, SHA-256 digests over every payload byte, and Ed25519 signatures (COSE_Sign1)
//! over all of that. Loading goes through the same steps as the CLI, in an order the types
//! enforce: [`verify::Artifact::open`] reads only the capped outer frame;
//! [`trust::Trust::admit`] checks every signature once, needs one by a trusted key before the
//! manifest is decoded, then applies the policy (k-of-n signers, revoked keys, versions, ages,
//! expiry) and the rollback state, and returns one verdict; [`load::load`] validates the
//! architecture, checks every payload byte against its digest, and only then builds the model.
//!
//! A Rust service that serves signed models does what `nnsign verify-load` does:
//!
//! ```
//! use nnsign::trust::{Clock, Trust};
//! use nnsign::{import, keys, load, memory, model, pack, runtime, verify};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # // The build job: a signing key and a one-layer model (`nnsign pack` does this).
//! # let key = keys::SecretKey::generate()?;
//! # let kernel: Vec<u8> = [1.0f32, 0.0, 0.0, 1.0, 2.0, -1.0]
//! #     .iter().flat_map(|v| v.to_le_bytes()).collect();
//! # let tensors = vec![import::SourceTensor {
//! #     name: "dense/kernel".into(),
//! #     dtype: nnsign::format::DType::F32,
//! #     shape: vec![3, 2],
//! #     bytes: import::Bytes::Owned(kernel.into()),
//! #     origin: "memory".into(),
//! # }];
//! # let arch = model::Graph::from_json(r#"{"opset": 1,
//! #     "inputs": [{"name": "x", "dtype": "F32", "shape": ["batch", 3]}],
//! #     "outputs": [{"name": "y", "dtype": "F32", "shape": ["batch", 2]}],
//! #     "nodes": [{"op": "Dense", "name": "dense", "inputs": ["x", "dense/kernel"],
//! #                "outputs": ["y"], "attrs": {"activation": "relu"}}]}"#)?;
//! # let info = nnsign::format::ModelInfo {
//! #     name: "tiny".into(), version: Some("1.0.0".into()), description: None,
//! #     created: pack::created_now(), producer: "doc example".into(),
//! #     labels: Default::default(), expires: None, parent: None,
//! # };
//! # let path = dir.path().join("tiny.nns");
//! # let input = pack::PackInput { model: info, arch: Some(arch), tensors, signer: Some(&key),
//! #     encrypt: None };
//! # pack::pack(input, &path, &|_| {})?;
//! # let ci_pub = dir.path().join("ci.pub");
//! # std::fs::write(&ci_pub, key.public().to_pem())?;
//! // Once, at start-up: what this host trusts (or `Policy::load` a policy file, and
//! // `.with_state(...)` for rollback protection).
//! let keys = keys::TrustStore::load(&[ci_pub])?;
//! let trust = Trust::keys(&keys, "ci.pub".as_ref());
//!
//! // For each artifact: open the frame, admit it, load it (every digest checked), run it.
//! let artifact = verify::Artifact::open(&path)?;
//! let admitted = trust.admit(artifact, Clock::System)?;
//! let loaded = load::load(&admitted.artifact, memory::DEFAULT_MEMORY_LIMIT, &|_| {})?;
//! admitted.record(Clock::System)?; // in the rollback state, if there is one
//! let model = loaded.model.expect("the artifact has an architecture");
//! let x = runtime::Tensor { shape: vec![1, 3], data: vec![1.0, 2.0, 3.0] };
//! let outputs = model.run(vec![("x".into(), x.into())])?;
//! assert_eq!(outputs[0].1.f32().data, vec![7.0, 0.0]); // relu([1+0+6, 0+2-3])
//! # Ok(())
//! # }
//! ```
//!
//! Modules are layered one way (docs/ARCHITECTURE.md, checked by `tests/layers.rs`): the
//! operations (`trust`, `pack`, `unpack`, `load`, `diff`, `scan`, `inspect`) use the artifact
//! and model layers (`unseal`, `verify`, `signature`, `export`, `import`, `runtime`, `plan`,
//! `ops`, `model`, `format`, `memory`, `tensor`), which use the foundation (`crypto`, `keys`,
//! `cbor`, `clock`, `output`, `sys`); no module uses one above it.
#![deny(unsafe_code)]

pub mod cbor;
pub mod clock;
pub mod crypto;
pub mod diff;
pub mod export;
pub mod failure;
pub mod format;
pub mod import;
pub mod inspect;
pub mod keys;
pub mod load;
pub mod memory;
pub mod model;
pub mod oci;
pub mod ops;
pub mod output;
pub mod pack;
pub mod plan;
pub mod runtime;
pub mod scan;
pub mod signature;
mod sys;
pub mod tensor;
pub mod trust;
pub mod unpack;
pub mod unseal;
pub mod verify;
