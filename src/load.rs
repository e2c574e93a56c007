//! From an authenticated artifact to a runnable model: validate the architecture against the
//! signed tensor table, read and check every payload byte, then instantiate.

use crate::model::SchemaError;
use crate::runtime::{self, Model, RunError};
use crate::verify::{Authenticated, VerifiedPayload, VerifyError};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The payload failed its digests.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The architecture is invalid.
    #[error("architecture: {0}")]
    Schema(#[from] SchemaError),
    /// Loading would take more memory than allowed.
    #[error(
        "loading needs up to {need} bytes (payload {payload}), more than the limit of {limit}"
    )]
    TooLarge { need: u64, payload: u64, limit: u64 },
    /// A weight could not be instantiated.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// A verified payload and, when the artifact has an architecture, the model built from it.
pub struct Loaded {
    pub payload: VerifiedPayload,
    pub model: Option<Model>,
}

/// Validates, verifies and instantiates. The architecture is checked first, since it needs only
/// the signed manifest: a bad one fails before gigabytes of weights are read.
pub fn load(
    auth: &Authenticated,
    memory_limit: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Loaded, LoadError> {
    let plan = match &auth.manifest.arch {
        Some(arch) => Some(arch.validate(&auth.layout.tensors)?),
        None => None,
    };
    // The verified payload stays in memory while the model is built from it.
    let need = auth
        .layout
        .length
        .saturating_add(plan.as_ref().map_or(0, |p| p.memory_need()));
    if need > memory_limit {
        return Err(LoadError::TooLarge {
            need,
            payload: auth.layout.length,
            limit: memory_limit,
        });
    }
    let payload = auth.read_payload(progress)?;
    let model = match plan {
        Some(plan) => Some(Model::new(&plan, |name| {
            let (info, bytes) = payload
                .tensor(name)
                .expect("validation checked every weight exists");
            runtime::to_f32(info, bytes)
        })?),
        None => None,
    };
    Ok(Loaded { payload, model })
}
