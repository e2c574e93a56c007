//! Where the memory a model may take is bounded: the limits, how the peak of a plan is counted,
//! and the two checks made with them, at load and before every run (docs/SCHEMA.md, "Memory
//! bounds", names each constant here).
//!
//! Every bound on what a *file* may make us allocate before it is verified lives with the
//! format it caps (`format::MAX_ENVELOPE_LEN`, `cbor::MAX_CBOR_ITEMS`, the importers' caps);
//! this module bounds what a *verified* model needs once it is instantiated and run, which the
//! signer chose and the serving host may refuse.

/// Default cap on the memory loading may take: the tensors as read (F32 weights are used as
/// read), the weights widened from other dtypes and the values alive at once at batch 1; for a
/// weights-only artifact, its payload. `verify-load --max-memory` raises it.
pub const DEFAULT_MEMORY_LIMIT: u64 = 8 << 30;

/// Most elements one value may have: what a `usize` index and an `f32` buffer can address.
/// Shape inference refuses a value with more, at validation and again at run time.
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// A model that needs more memory than the host allows.
#[derive(Debug, thiserror::Error)]
pub enum OverLimit {
    /// Loading: the tensors as read, and what the model built from them adds.
    #[error("loading needs up to {need} bytes (the payload, {payload} bytes, as read{model}), more than the limit of {limit}")]
    Load {
        need: u64,
        payload: u64,
        limit: u64,
        /// What the model needs, described: empty for weights only.
        model: String,
    },
    /// One run, with the batch it was given.
    #[error("this run needs {need} bytes (weights and the values alive at once), more than the limit of {limit}")]
    Run { need: u64, limit: u64 },
}

/// What a model needs beyond its tensors as read: the weights widened from other dtypes and
/// the values alive at once at batch 1, with where that peak is reached (for messages).
pub struct ModelNeed {
    pub bytes: u64,
    pub described: String,
}

/// The check at load: the `payload` bytes read, and what the model adds (`None`: weights only,
/// nothing is built).
pub fn check_load(payload: u64, model: Option<ModelNeed>, limit: u64) -> Result<(), OverLimit> {
    let need = payload.saturating_add(model.as_ref().map_or(0, |m| m.bytes));
    if need > limit {
        return Err(OverLimit::Load {
            need,
            payload,
            limit,
            model: model.map_or(String::new(), |m| {
                format!("; then the model: {}", m.described)
            }),
        });
    }
    Ok(())
}

/// The check before a run: the weights and the peak of live values for the bound shapes.
pub fn check_run(weights: u64, peak: u64, limit: u64) -> Result<(), OverLimit> {
    let need = weights.saturating_add(peak);
    if need > limit {
        return Err(OverLimit::Run { need, limit });
    }
    Ok(())
}

/// How one step of a run uses memory: the bytes its output takes (`None` when the op works in
/// its input's memory) and the bytes freed after it (values at their last use).
pub struct StepUse {
    pub allocates: Option<u64>,
    pub frees: u64,
}

/// The most bytes alive at once over a run, and the step after which it is reached (`None`:
/// before any step, with only the inputs alive). `scratch` is held throughout (each thread's
/// working buffers), `inputs` from the start; every sum saturates, so a hostile shape gives a
/// huge need, never an overflow.
pub fn peak(
    scratch: u64,
    inputs: impl IntoIterator<Item = u64>,
    steps: impl IntoIterator<Item = StepUse>,
) -> (u64, Option<usize>) {
    let mut live = inputs.into_iter().fold(scratch, u64::saturating_add);
    let mut peak = (live, None);
    for (k, step) in steps.into_iter().enumerate() {
        if let Some(bytes) = step.allocates {
            live = live.saturating_add(bytes);
            if live > peak.0 {
                peak = (live, Some(k));
            }
        }
        live = live.saturating_sub(step.frees);
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_counts_what_is_alive_together() {
        let step = |allocates, frees| StepUse { allocates, frees };
        // Inputs 16; a step makes 20 (36 alive) and frees the input; an in-place step; a
        // step makes 12 (32 alive).
        let steps = [step(Some(20), 16), step(None, 0), step(Some(12), 20)];
        assert_eq!(peak(0, [16], steps), (36, Some(0)));
        assert_eq!(peak(100, [16], []), (116, None));
        assert_eq!(peak(u64::MAX, [1], [step(Some(1), 0)]), (u64::MAX, None));
    }

    #[test]
    fn the_limits_are_checked_inclusively() {
        assert!(check_load(10, None, 10).is_ok());
        let need = ModelNeed {
            bytes: 1,
            described: "weights 1 bytes".into(),
        };
        let e = check_load(10, Some(need), 10).unwrap_err().to_string();
        assert_eq!(e, "loading needs up to 11 bytes (the payload, 10 bytes, as read; then the model: weights 1 bytes), more than the limit of 10");
        assert!(check_run(4, 6, 10).is_ok());
        assert!(matches!(
            check_run(5, 6, 10),
            Err(OverLimit::Run {
                need: 11,
                limit: 10
            })
        ));
    }
}
