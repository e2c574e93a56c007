//! From an authenticated artifact to a runnable model: validate the architecture against the
//! signed tensor table and check the memory it will take, read every tensor straight into its
//! own buffer while checking every payload byte against its digest, then instantiate. Encrypted
//! artifacts are decrypted window by window into the same buffers ([`crate::unseal`]).

use std::collections::HashMap;

use zeroize::Zeroize;

use crate::format::Layout;
use crate::memory::{self, OverLimit};
use crate::model::{Graph, SchemaError};
use crate::plan::Plan;
use crate::runtime::{self, Model, RunError, Tensor, Value};
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

/// What loading made: the model, when the artifact has an architecture (built from its tensors,
/// which are not kept apart), or else the verified weights.
pub struct Loaded {
    pub model: Option<Model>,
    pub payload: Option<VerifiedPayload>,
}

/// Checks that the payload, held whole for a weights-only artifact, fits the limit.
fn check_payload(payload: u64, limit: u64) -> Result<(), LoadError> {
    memory::check_load(payload, None, limit).map_err(LoadError::TooLarge)
}

/// Validates `arch` against the tensors of `layout` and checks what loading them in place will
/// take: the tensors as read, the weights widened from other dtypes and a run's values.
fn plan_in_place(arch: &Graph, layout: &Layout, limit: u64) -> Result<Plan, LoadError> {
    let plan = arch.validate(&layout.tensors)?;
    memory::check_load(layout.length, Some(plan.need_beyond_tensors()), limit)
        .map_err(LoadError::TooLarge)?;
    Ok(plan)
}

/// A weights-only artifact loaded: its verified payload.
fn weights_only(payload: VerifiedPayload) -> Result<Loaded, LoadError> {
    Ok(Loaded {
        model: None,
        payload: Some(payload),
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
        check_payload(auth.layout.length, memory_limit)?;
        return weights_only(auth.read_payload(progress)?);
    };
    let plan = plan_in_place(arch, &auth.layout, memory_limit)?;
    let tensors = auth.read_tensors(progress)?;
    build_in_place(plan, &auth.layout, tensors, memory_limit)
}

/// The model of `plan` from tensors read into buffers of their own: F32 weights are moved in
/// as they are, others widened; the tensors the graph does not use are wiped and dropped, and
/// so is everything when a weight cannot be widened (decrypted weights never linger).
fn build_in_place(
    plan: Plan,
    layout: &Layout,
    tensors: Vec<TensorBuf>,
    memory_limit: u64,
) -> Result<Loaded, LoadError> {
    let mut tensors: HashMap<&str, TensorBuf> = (layout.tensors.iter())
        .map(|t| t.name.as_str())
        .zip(tensors)
        .collect();
    let mut weights: HashMap<String, Value> = HashMap::with_capacity(plan.weights.len());
    let mut failed = None;
    for (_, info) in &plan.weights {
        let value = match tensors.remove(info.name.as_str()) {
            Some(TensorBuf::F32(data)) => Ok(Value::F32(Tensor {
                shape: info.shape.iter().map(|&d| d as usize).collect(),
                data,
            })),
            Some(mut t @ TensorBuf::Bytes(_)) => {
                let value = runtime::to_value(info, t.bytes());
                t.bytes_mut().zeroize();
                value
            }
            None => Err(RunError::Weight(format!(
                "tensor {:?} is not in the payload, or is used twice",
                info.name
            ))),
        };
        match value {
            Ok(v) => {
                weights.insert(info.name.clone(), v);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    // The tensors the graph does not take are not left in freed memory.
    for t in tensors.values_mut() {
        t.bytes_mut().zeroize();
    }
    if let Some(e) = failed {
        weights.values_mut().for_each(wipe);
        return Err(e.into());
    }
    let model = Model::new(
        plan,
        |info| {
            (weights.remove(&info.name))
                .ok_or_else(|| RunError::Weight(format!("tensor {:?} is used twice", info.name)))
        },
        memory_limit,
    )?;
    Ok(Loaded {
        model: Some(model),
        payload: None,
    })
}

/// Overwrites a value's elements with zeros.
fn wipe(v: &mut Value) {
    match v {
        Value::F32(t) => t.data.zeroize(),
        Value::I64(t) => t.data.zeroize(),
        Value::Bool(t) => t.data.zeroize(),
    }
}

/// [`load`] for an encrypted artifact: verify and decrypt with `unlock`, window by window on
/// every core. With an architecture, the hidden header is opened first (the graph is validated
/// and the memory checked before any tensor is allocated) and every tensor is decrypted
/// straight into its own buffer ([`unseal::unseal_tensors`]): no second copy of the payload.
/// Weights only, the payload is opened whole, as it is what is wanted.
pub fn load_encrypted(
    auth: &Authenticated,
    unlock: Unlock<'_>,
    memory_limit: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Loaded, LoadError> {
    /// Why the tensors were not decrypted in place.
    enum Stop {
        Failed(LoadError),
        WeightsOnly,
    }
    impl From<UnsealError> for Stop {
        fn from(e: UnsealError) -> Stop {
            Stop::Failed(e.into())
        }
    }
    let mut planned = None;
    let admit = |arch: Option<&Graph>, layout: &Layout| {
        let arch = arch.ok_or(Stop::WeightsOnly)?;
        planned = Some(plan_in_place(arch, layout, memory_limit).map_err(Stop::Failed)?);
        Ok(())
    };
    let opened = unseal::open(auth, unlock)?;
    match unseal::unseal_tensors(auth, &opened, progress, admit) {
        Ok(unsealed) => {
            let plan = planned.expect("admit planned the graph it passed");
            build_in_place(plan, &unsealed.layout, unsealed.tensors, memory_limit)
        }
        Err(Stop::Failed(e)) => Err(e),
        Err(Stop::WeightsOnly) => {
            // The ciphertext is decrypted in place: its size bounds the payload held.
            check_payload(auth.layout.length, memory_limit)?;
            weights_only(unseal::unseal_opened(auth, &opened, progress)?.payload)
        }
    }
}

/// Every tensor of a verified (and decrypted) artifact in a buffer of its own, as stored (F32
/// as the f32 values a graph uses, on a little-endian host), with the architecture, if any,
/// validated against them: what a caller that hands out the weights themselves loads (the
/// Python package's `Model.tensors`). [`Weights::model`] builds a runnable model from them.
pub struct Weights {
    pub layout: Layout,
    pub tensors: Vec<TensorBuf>,
    plan: Option<Plan>,
}

/// Verifies and reads every tensor of `auth` (decrypting with `unlock` when it is encrypted)
/// into its own buffer, after validating the architecture and checking the memory against
/// `memory_limit`: as [`load`], without building the model.
pub fn weights(
    auth: &Authenticated,
    unlock: Option<Unlock<'_>>,
    memory_limit: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Weights, LoadError> {
    let admit = |arch: Option<&Graph>, layout: &Layout| match arch {
        Some(arch) => plan_in_place(arch, layout, memory_limit).map(Some),
        None => check_payload(layout.length, memory_limit).map(|()| None),
    };
    let Some(unlock) = unlock else {
        if auth.manifest.is_encrypted() {
            return Err(LoadError::Encrypted);
        }
        let plan = admit(auth.arch.as_ref(), &auth.layout)?;
        let tensors = auth.read_tensors(progress)?;
        return Ok(Weights {
            layout: auth.layout.clone(),
            tensors,
            plan,
        });
    };
    let mut plan = None;
    let opened = unseal::open(auth, unlock)?;
    let unsealed = unseal::unseal_tensors(auth, &opened, progress, |arch, layout| {
        plan = admit(arch, layout)?;
        Ok::<(), LoadError>(())
    })?;
    Ok(Weights {
        layout: unsealed.layout,
        tensors: unsealed.tensors,
        plan,
    })
}

impl Weights {
    /// Whether the artifact has an architecture to run.
    pub fn runnable(&self) -> bool {
        self.plan.is_some()
    }

    /// The runnable model of an artifact with an architecture (`None` for weights only), with
    /// its own copy of the weights the graph uses: these tensors stay as they are for whoever
    /// holds them. The copy is counted against `memory_limit` with everything else.
    pub fn model(&self, memory_limit: u64) -> Result<Option<Model>, LoadError> {
        let Some(plan) = &self.plan else {
            return Ok(None);
        };
        let used: std::collections::HashSet<&str> = (plan.weights.iter())
            .map(|(_, t)| t.name.as_str())
            .collect();
        let mut need = plan.need_beyond_tensors();
        let copied = (self.layout.tensors.iter().zip(&self.tensors))
            .filter(|(t, b)| used.contains(t.name.as_str()) && matches!(b, TensorBuf::F32(_)))
            .map(|(t, _)| t.length)
            .fold(0, u64::saturating_add);
        need.bytes = need.bytes.saturating_add(copied);
        need.described = format!(
            "a copy of the float32 weights {copied} bytes; {}",
            need.described
        );
        memory::check_load(self.layout.length, Some(need), memory_limit)
            .map_err(LoadError::TooLarge)?;
        let tensors = (self.layout.tensors.iter().zip(&self.tensors))
            .map(|(t, b)| match used.contains(t.name.as_str()) {
                true => b.clone(),
                false => TensorBuf::Bytes(Vec::new()),
            })
            .collect();
        build_in_place(plan.clone(), &self.layout, tensors, memory_limit).map(|l| l.model)
    }
}

impl Drop for Weights {
    /// Decrypted weights do not linger in freed memory.
    fn drop(&mut self) {
        for t in &mut self.tensors {
            t.bytes_mut().zeroize();
        }
    }
}
