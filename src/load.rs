//! From an authenticated artifact to a runnable model: validate the architecture against the
//! signed tensor table, read and check every payload byte, then instantiate. Encrypted
//! artifacts are verified and decrypted first ([`crate::unseal`]), then go the same way.

use std::collections::HashMap;

use crate::format::Layout;
use crate::memory::{self, OverLimit};
use crate::model::{Graph, SchemaError};
use crate::plan::Plan;
use crate::runtime::{self, Model, RunError};
use crate::runtime::{Tensor, Value};
use crate::unseal::{self, Unlock, UnsealError};
use crate::verify::{Authenticated, TensorBuf, VerifiedPayload, VerifyError};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The payload failed its digests.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The payload is encrypted and no key was given.
    #[error(
        "the artifact is encrypted; give the recipient key that opens it (--decrypt-with KEY)"
    )]
    Encrypted,
    /// The encrypted payload could not be opened.
    #[error(transparent)]
    Unseal(#[from] UnsealError),
    /// The architecture is invalid.
    #[error("architecture: {0}")]
    Schema(#[from] SchemaError),
    /// Loading would take more memory than allowed.
    #[error(transparent)]
    TooLarge(OverLimit),
    /// A weight could not be instantiated.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// What loading made: the model, when the artifact has an architecture (its payload is then
/// dropped once the weights are widened), or else the verified weights.
pub struct Loaded {
    pub model: Option<Model>,
    pub payload: Option<VerifiedPayload>,
}

/// Validates the architecture against `layout` and checks the memory loading will take: the
/// payload held while the model is built from it, and the model.
fn plan(
    arch: Option<&Graph>,
    layout: &Layout,
    memory_limit: u64,
) -> Result<Option<Plan>, LoadError> {
    let plan = arch.map(|a| a.validate(&layout.tensors)).transpose()?;
    check_memory(layout.length, plan.as_ref(), memory_limit)?;
    Ok(plan)
}

fn check_memory(payload: u64, plan: Option<&Plan>, limit: u64) -> Result<(), LoadError> {
    memory::check_load(payload, plan.map(Plan::need), limit).map_err(LoadError::TooLarge)
}

fn build(
    plan: Option<Plan>,
    payload: VerifiedPayload,
    memory_limit: u64,
) -> Result<Loaded, LoadError> {
    let Some(plan) = plan else {
        return Ok(Loaded {
            model: None,
            payload: Some(payload),
        });
    };
    let model = Model::new(
        plan,
        |info| {
            let (info, bytes) = payload
                .tensor(&info.name)
                .expect("validation checked every weight exists");
            runtime::to_value(info, bytes)
        },
        memory_limit,
    )?;
    Ok(Loaded {
        model: Some(model),
        payload: None,
    })
}

/// Validates, verifies and instantiates. The architecture is checked first, since it needs only
/// the signed manifest: a bad one fails before gigabytes of weights are read. With an
/// architecture, every tensor is read straight into its own buffer and F32 weights are used
/// as read ([`Authenticated::read_tensors`]): loading takes the tensors, the weights widened
/// from other dtypes and the values of a run, never the payload a second time.
pub fn load(
    auth: &Authenticated,
    memory_limit: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Loaded, LoadError> {
    if auth.manifest.is_encrypted() {
        return Err(LoadError::Encrypted);
    }
    let Some(arch) = &auth.arch else {
        check_memory(auth.layout.length, None, memory_limit)?;
        let payload = auth.read_payload(progress)?;
        return build(None, payload, memory_limit);
    };
    let plan = arch.validate(&auth.layout.tensors)?;
    memory::check_load(
        auth.layout.length,
        Some(plan.need_beyond_tensors()),
        memory_limit,
    )
    .map_err(LoadError::TooLarge)?;
    let mut tensors: HashMap<&str, TensorBuf> = (auth.layout.tensors.iter())
        .map(|t| t.name.as_str())
        .zip(auth.read_tensors(progress)?)
        .collect();
    let model = Model::new(
        plan,
        |info| match tensors.remove(info.name.as_str()) {
            Some(TensorBuf::F32(data)) => Ok(Value::F32(Tensor {
                shape: info.shape.iter().map(|&d| d as usize).collect(),
                data,
            })),
            Some(TensorBuf::Bytes(bytes)) => runtime::to_value(info, &bytes),
            None => Err(RunError::Weight(format!(
                "tensor {:?} is not in the payload, or is used twice",
                info.name
            ))),
        },
        memory_limit,
    )?;
    Ok(Loaded {
        model: Some(model),
        payload: None,
    })
}

/// [`load`] for an encrypted artifact: verify, decrypt with `unlock`, then validate and build
/// from what the ciphertext held.
pub fn load_encrypted(
    auth: &Authenticated,
    unlock: Unlock<'_>,
    memory_limit: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Loaded, LoadError> {
    // The ciphertext is decrypted in place: its size bounds the payload held in memory.
    check_memory(auth.layout.length, None, memory_limit)?;
    let unsealed = unseal::unseal(auth, unlock, progress)?;
    let plan = plan(
        unsealed.arch.as_ref(),
        unsealed.payload.layout(),
        memory_limit,
    )?;
    build(plan, unsealed.payload, memory_limit)
}
