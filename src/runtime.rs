//! CPU inference for validated plans: float32 and int64 values, ops on every core.
//!
//! A [`Model`] is built only from a [`Plan`] that passed [`crate::model::Graph::validate`] ([`crate::plan`]) and
//! from tensor bytes whose digests matched; this module never sees an unverified byte. Before
//! each run, the symbols of the graph are bound from the inputs, every value's shape is inferred
//! again with those sizes, and the memory the run needs is checked: an input that does not fit
//! is refused before any op runs.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::format::TensorInfo;
use crate::memory::{self, OverLimit};
use crate::model::{Dim, ValueInfo};
use crate::ops::{VType, D};
use crate::plan::Plan;
pub use crate::tensor::{Tensor, Value};

/// Why a model could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An input is missing, extra, or of the wrong dtype or shape.
    #[error("{0}")]
    Input(String),
    /// A weight could not be widened.
    #[error("{0}")]
    Weight(String),
    /// An op failed on the values it was given (for example a `Gather` index out of range).
    #[error("{0}")]
    Node(String),
    /// The run would need more memory than allowed.
    #[error(transparent)]
    TooLarge(OverLimit),
}

/// Widens a verified tensor to the value a graph computes with: floats to F32, integers to
/// I64.
pub fn to_value(info: &TensorInfo, bytes: &[u8]) -> Result<Value, RunError> {
    crate::tensor::widen(&info.name, info.dtype, &info.shape, bytes).map_err(RunError::Weight)
}

/// Widens a verified float tensor to f32.
pub fn to_f32(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>, RunError> {
    crate::tensor::widen_f32(&info.name, info.dtype, bytes).map_err(RunError::Weight)
}

/// A model ready to run.
pub struct Model {
    plan: Plan,
    /// Weights by value slot.
    weights: Vec<Option<Value>>,
    memory_limit: u64,
}

impl Model {
    /// Builds a model from a validated plan; `weight` returns the value of a named tensor.
    /// Runs are refused when they would need more than `memory_limit` bytes.
    pub fn new(
        plan: Plan,
        mut weight: impl FnMut(&TensorInfo) -> Result<Value, RunError>,
        memory_limit: u64,
    ) -> Result<Model, RunError> {
        let mut weights = vec![None; plan.values.len()];
        for (slot, info) in &plan.weights {
            weights[*slot] = Some(weight(info)?);
        }
        Ok(Model {
            plan,
            weights,
            memory_limit,
        })
    }

    /// The graph inputs, in declaration order.
    pub fn inputs(&self) -> impl Iterator<Item = &ValueInfo> {
        self.plan.inputs.iter().map(|(_, v)| v)
    }

    /// The graph outputs, in declaration order.
    pub fn outputs(&self) -> impl Iterator<Item = &ValueInfo> {
        self.plan.outputs.iter().map(|(_, v)| v)
    }

    /// Runs the model on named inputs and returns the named outputs, in declaration order.
    pub fn run(&self, inputs: Vec<(String, Value)>) -> Result<Vec<(String, Value)>, RunError> {
        let plan = &self.plan;
        let mut given: HashMap<String, Value> = HashMap::new();
        for (name, v) in inputs {
            if given.insert(name.clone(), v).is_some() {
                return Err(RunError::Input(format!("input {name:?} is given twice")));
            }
        }
        let mut values: Vec<Option<Value>> = vec![None; plan.values.len()];
        let mut symbols: HashMap<&str, usize> = HashMap::new();
        let mut bound = Vec::with_capacity(plan.inputs.len());
        for (slot, info) in &plan.inputs {
            let v = given.remove(&info.name).ok_or_else(|| {
                RunError::Input(format!("the model needs an input named {:?}", info.name))
            })?;
            check_input(info, &v, &mut symbols)?;
            bound.push((
                *slot,
                VType::new(
                    v.elem(),
                    v.shape().iter().map(|&d| D::Fixed(d as u64)).collect(),
                ),
            ));
            values[*slot] = Some(v);
        }
        if let Some(extra) = given.keys().next() {
            return Err(RunError::Input(format!(
                "the model has no input named {extra:?}"
            )));
        }
        let shapes = plan.bind(&bound).map_err(RunError::Input)?;
        let peak = plan.peak_bytes(&shapes);
        memory::check_run(plan.weight_bytes, peak, self.memory_limit)
            .map_err(RunError::TooLarge)?;
        // Each step allocates its output: what this run frees is kept for the next step and
        // the next run rather than faulted in again from the kernel.
        crate::sys::retain_freed_memory(peak);
        let names = plan.outputs.iter().map(|(_, info)| info.name.clone());
        // The batch in slices, each slice through the whole graph on one core while its values
        // are in cache; then the outputs joined. Memory stays within what the whole batch
        // needs, which was checked above.
        let tiling = self.tiling(&symbols);
        let tiles = tiling.map_or(1, |(batch, _)| batch.div_ceil(self.tile_rows(batch)));
        let (Some((batch, axes)), 2..) = (tiling, tiles) else {
            return Ok(names.zip(self.execute(values, &shapes)?).collect());
        };
        let per = batch.div_ceil(tiles);
        let results: Vec<Result<Vec<Value>, RunError>> = (0..tiles)
            .into_par_iter()
            .map(|t| {
                let (start, len) = (t * per, per.min(batch - t * per));
                let mut tv: Vec<Option<Value>> = vec![None; plan.values.len()];
                let mut tb = Vec::with_capacity(plan.inputs.len());
                for (slot, _) in &plan.inputs {
                    let v = crate::ops::rows(values[*slot].as_ref().expect("bound"), start, len);
                    let shape = v.shape().iter().map(|&d| D::Fixed(d as u64)).collect();
                    tb.push((*slot, VType::new(v.elem(), shape)));
                    tv[*slot] = Some(v);
                }
                let shapes = plan.bind(&tb).map_err(RunError::Input)?;
                crate::ops::alone(|| self.execute(tv, &shapes))
            })
            .collect();
        drop(values);
        let parts = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(names
            .zip(axes.iter().enumerate())
            .map(|(name, (k, &axis))| {
                let pieces: Vec<&Value> = parts.iter().map(|p| &p[k]).collect();
                (name, crate::ops::join(&pieces, axis))
            })
            .collect())
    }

    /// When the graph runs batch items independently and this batch is worth slicing: its
    /// size and the axis of each output that carries it.
    fn tiling(&self, symbols: &HashMap<&str, usize>) -> Option<(usize, &[usize])> {
        let b = self.plan.batching.as_ref()?;
        let batch = *symbols.get(b.symbol.as_str())?;
        (batch >= 2).then_some((batch, &b.outputs[..]))
    }

    /// Items per slice: small enough that a slice's live values fit in a core's cache (about
    /// [`TILE_BYTES`]), with the slices a multiple of the cores so that none waits idle. When
    /// the weights outweigh the values, each slice streams them all anyway: one per core.
    fn tile_rows(&self, batch: usize) -> usize {
        let threads = rayon::current_num_threads();
        let bytes = (batch as u64).saturating_mul(self.plan.peak_bytes_at_one.max(1));
        let bytes = if self.plan.weight_bytes > bytes {
            0
        } else {
            bytes
        };
        let tiles = (bytes.div_ceil(TILE_BYTES) as usize)
            .next_multiple_of(threads)
            .clamp(threads, batch.max(1));
        batch.div_ceil(tiles)
    }

    /// Runs every step on `values` (the graph inputs set) of shapes `shapes`; returns the
    /// outputs in declaration order.
    fn execute(
        &self,
        mut values: Vec<Option<Value>>,
        shapes: &[Vec<usize>],
    ) -> Result<Vec<Value>, RunError> {
        let plan = &self.plan;
        for step in &plan.steps {
            // An op that can work in place takes its first input when this is its last use.
            let owned = step.reused_input().and_then(|s| values[s].take());
            let ins: Vec<Option<&Value>> = (step.inputs.iter())
                .map(|s| s.and_then(|s| values[s].as_ref().or(self.weights[s].as_ref())))
                .collect();
            let outs: Vec<&[usize]> = step.outputs.iter().map(|&s| &shapes[s][..]).collect();
            let made = match owned {
                Some(x) => Ok(vec![step.op.run_owned(x, &ins, outs[0])]),
                None => step.op.run_all(&ins, &outs),
            }
            .map_err(|e| RunError::Node(format!("node {:?} ({}): {e}", step.node, step.op_name)))?;
            for (&slot, v) in step.outputs.iter().zip(made) {
                debug_assert_eq!(v.shape(), &shapes[slot][..], "node {}", step.node);
                values[slot] = Some(v);
            }
            for &s in &step.free {
                values[s] = None;
            }
        }
        // Outputs are handed over, not copied, except a value listed again later.
        let outputs = &plan.outputs;
        Ok((outputs.iter().enumerate())
            .map(|(k, (slot, _))| {
                let again = outputs[k + 1..].iter().any(|(s, _)| s == slot);
                let v = match again {
                    false => values[*slot].take(),
                    true => values[*slot].clone(),
                };
                (v.or_else(|| self.weights[*slot].clone()))
                    .expect("validation proves every output is defined")
            })
            .collect())
    }
}

/// Bytes of live values a batch slice aims at: about a core's share of cache.
const TILE_BYTES: u64 = 1 << 20;

/// Checks a graph input against its declaration and binds its symbols.
fn check_input<'a>(
    info: &'a ValueInfo,
    v: &Value,
    symbols: &mut HashMap<&'a str, usize>,
) -> Result<(), RunError> {
    let bad = |msg: String| RunError::Input(format!("input {:?}: {msg}", info.name));
    if v.elem().name() != info.dtype {
        return Err(bad(format!(
            "the model takes {}, the data is {}",
            info.dtype,
            v.elem().name()
        )));
    }
    let shape = v.shape();
    let expected: usize = shape.iter().product();
    if v.elements() != expected {
        return Err(bad(format!(
            "holds {} values for shape {shape:?}",
            v.elements()
        )));
    }
    if shape.len() != info.shape.len() {
        return Err(bad(format!(
            "the model takes shape {}, the data has shape {shape:?}",
            crate::model::fmt_shape(&info.shape)
        )));
    }
    for (i, (d, want)) in shape.iter().zip(&info.shape).enumerate() {
        match want {
            Dim::Fixed(n) if *n as usize != *d => {
                return Err(bad(format!(
                    "dimension {i} is {d}, the model takes {n} (shape {})",
                    crate::model::fmt_shape(&info.shape)
                )))
            }
            Dim::Symbol(s) => match symbols.get(s.as_str()) {
                Some(&b) if b != *d => {
                    return Err(bad(format!(
                        "dimension {i} ({s}) is {d}, but another input bound {s} to {b}"
                    )))
                }
                _ => {
                    symbols.insert(s, *d);
                }
            },
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    #[test]
    fn inputs_whose_data_does_not_fill_their_shape_are_refused() {
        let plan = crate::model::Graph::from_json(
            r#"{"opset": 1,
            "inputs": [{"name": "x", "dtype": "F32", "shape": ["batch", 3]}],
            "outputs": [{"name": "y", "dtype": "F32", "shape": ["batch", 1]}],
            "nodes": [{"op": "Dense", "name": "d", "inputs": ["x", "k"], "outputs": ["y"]}]}"#,
        )
        .unwrap()
        .validate(&[TensorInfo {
            name: "k".into(),
            dtype: DType::F32,
            shape: vec![3, 1],
            offset: 0,
            length: 12,
        }])
        .unwrap();
        let k = Value::F32(Tensor {
            shape: vec![3, 1],
            data: vec![1.0, 2.0, 3.0],
        });
        let model = Model::new(plan, |_| Ok(k.clone()), u64::MAX).unwrap();
        let short = Tensor {
            shape: vec![1, 3],
            data: vec![1.0],
        };
        let err = model.run(vec![("x".into(), short.into())]).unwrap_err();
        assert!(err.to_string().contains("holds 1 values"), "{err}");
        let ok = Tensor {
            shape: vec![2, 3],
            data: vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0],
        };
        let out = model.run(vec![("x".into(), ok.into())]).unwrap();
        assert_eq!(out[0].1.f32().data, vec![1.0, 5.0]);
    }

    /// What `torch.onnx.export` writes for `x.view(x.size(0), -1)` with a dynamic batch.
    const FLATTEN_BY_SHAPE: &str = r#"{"opset": 3,
        "inputs": [{"name": "x", "dtype": "F32", "shape": ["batch", 3, 2, 2]}],
        "outputs": [{"name": "y", "dtype": "F32", "shape": ["batch", 12]}],
        "nodes": [
          {"op": "Shape", "name": "shape", "inputs": ["x"], "outputs": ["s"]},
          {"op": "Constant", "name": "zero", "inputs": [], "outputs": ["z"], "attrs": {"value_int": 0}},
          {"op": "Gather", "name": "batch", "inputs": ["s", "z"], "outputs": ["b"]},
          {"op": "Unsqueeze", "name": "list", "inputs": ["b"], "outputs": ["b1"], "attrs": {"axes": [0]}},
          {"op": "Constant", "name": "rest", "inputs": [], "outputs": ["m"], "attrs": {"value_ints": [-1]}},
          {"op": "Concat", "name": "target", "inputs": ["b1", "m"], "outputs": ["t"], "attrs": {"axis": 0}},
          {"op": "Reshape", "name": "flatten", "inputs": ["x", "t"], "outputs": ["y"]}
        ]}"#;

    #[test]
    fn shapes_computed_in_the_graph_are_known_before_it_runs() {
        let plan = crate::model::Graph::from_json(FLATTEN_BY_SHAPE)
            .unwrap()
            .validate(&[])
            .unwrap();
        let y = plan.values.iter().position(|v| v == "y").unwrap();
        assert_eq!(
            plan.types[y].shape,
            vec![D::Sym("batch".into()), D::Fixed(12)]
        );
        // Every value's size is in the plan at batch 1: the worst is after the Gather, with x
        // (48 bytes), the shape (32), the index and the batch size (8 each) alive; the Reshape
        // makes y in x's memory.
        assert_eq!(plan.peak_bytes_at_one, 48 + 32 + 8 + 8);
        let model = Model::new(plan, |_| unreachable!("no weights"), u64::MAX).unwrap();
        for batch in [1, 3] {
            let x = Tensor {
                shape: vec![batch, 3, 2, 2],
                data: (0..batch * 12).map(|i| i as f32).collect(),
            };
            let out = model.run(vec![("x".into(), x.clone().into())]).unwrap();
            assert_eq!(out[0].1.shape(), &[batch, 12]);
            assert_eq!(out[0].1.f32().data, x.data);
        }
    }

    #[test]
    fn a_shape_computed_from_data_is_refused_naming_the_node() {
        let graph = FLATTEN_BY_SHAPE
            .replace(
                r#"{"name": "x", "dtype": "F32", "shape": ["batch", 3, 2, 2]}"#,
                r#"{"name": "x", "dtype": "F32", "shape": ["batch", 3, 2, 2]},
                   {"name": "n", "dtype": "I64", "shape": [2]}"#,
            )
            .replace(r#""inputs": ["x", "t"]"#, r#""inputs": ["x", "n"]"#);
        let err = crate::model::Graph::from_json(&graph)
            .unwrap()
            .validate(&[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "node \"flatten\" (Reshape): input \"shape\" is computed from data at run time; \
             nnsign needs it to follow from constants and shapes, so that every shape is known \
             before the model runs (its inputs: \"x\" [batch, 3, 2, 2], \"n\" [2])"
        );
        let old = FLATTEN_BY_SHAPE.replace(r#""opset": 3"#, r#""opset": 2"#);
        let err = crate::model::Graph::from_json(&old)
            .unwrap()
            .validate(&[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "node \"shape\" (Shape): op \"Shape\" needs op-set 3, and the graph declares op-set 2"
        );
    }

    #[test]
    fn widening_keeps_values() {
        let info = |dtype| TensorInfo {
            name: "w".into(),
            dtype,
            shape: vec![2],
            offset: 0,
            length: 2 * dtype.size(),
        };
        let f16: Vec<u8> = [half::f16::from_f32(1.5), half::f16::from_f32(-2.0)]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        assert_eq!(to_f32(&info(DType::F16), &f16).unwrap(), vec![1.5, -2.0]);
        let bf16: Vec<u8> = [0x3fc0u16, 0xc000]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        assert_eq!(to_f32(&info(DType::BF16), &bf16).unwrap(), vec![1.5, -2.0]);
        assert!(to_f32(&info(DType::I32), &[0; 8]).is_err());
        let i32s: Vec<u8> = [-3i32, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        let v = to_value(&info(DType::I32), &i32s).unwrap();
        assert_eq!(v.i64().data, vec![-3, 7]);
        let big = u64::MAX.to_le_bytes().repeat(2);
        assert!(to_value(&info(DType::U64), &big).is_err());
        let v = to_value(&info(DType::Bool), &[0, 1]).unwrap();
        assert_eq!(v.bool().data, vec![false, true]);
        assert_eq!(
            to_value(&info(DType::Bool), &[0, 2])
                .unwrap_err()
                .to_string(),
            "tensor \"w\" is BOOL but holds the byte 0x02; BOOL bytes are 0x00 or 0x01"
        );
    }
}
