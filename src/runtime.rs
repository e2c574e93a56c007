//! CPU inference for validated plans, in float32.
//!
//! A [`Model`] is built only from a [`Plan`] that passed [`crate::model::Graph::validate`] and
//! from tensor bytes whose digests matched; this module never sees an unverified byte.

use std::collections::HashMap;

use crate::format::{DType, TensorInfo};
use crate::model::{Activation, Dim, Plan, Step, ValueInfo};

/// Most rows one call to [`Model::run`] accepts; the memory check of validation assumes it.
pub const MAX_BATCH: usize = 65536;

/// A dense float32 tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Why a model could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An input is missing, extra, or of the wrong shape.
    #[error("{0}")]
    Input(String),
    /// A weight could not be widened to f32.
    #[error("{0}")]
    Weight(String),
}

struct DenseLayer {
    x: usize,
    kernel: Vec<f32>,
    bias: Option<Vec<f32>>,
    inputs: usize,
    units: usize,
    activation: Activation,
    y: usize,
}

/// A model ready to run.
pub struct Model {
    plan_inputs: Vec<(usize, ValueInfo)>,
    plan_outputs: Vec<(usize, ValueInfo)>,
    value_count: usize,
    layers: Vec<DenseLayer>,
}

/// Widens a verified tensor to f32.
pub fn to_f32(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>, RunError> {
    let out = match info.dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")) as f32)
            .collect(),
        other => {
            return Err(RunError::Weight(format!(
                "tensor {:?} has dtype {other}, which cannot be used as a float weight",
                info.name
            )))
        }
    };
    Ok(out)
}

impl Model {
    /// Builds a model from a validated plan; `weight` returns the f32 data of a named tensor.
    pub fn new(
        plan: &Plan,
        mut weight: impl FnMut(&str) -> Result<Vec<f32>, RunError>,
    ) -> Result<Model, RunError> {
        let mut layers = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            match step {
                Step::Dense {
                    x,
                    kernel,
                    bias,
                    inputs,
                    units,
                    activation,
                    y,
                    ..
                } => layers.push(DenseLayer {
                    x: *x,
                    kernel: weight(kernel)?,
                    bias: bias.as_deref().map(&mut weight).transpose()?,
                    inputs: *inputs,
                    units: *units,
                    activation: *activation,
                    y: *y,
                }),
            }
        }
        Ok(Model {
            plan_inputs: plan.inputs.clone(),
            plan_outputs: plan.outputs.clone(),
            value_count: plan.values.len(),
            layers,
        })
    }

    /// The graph inputs, in declaration order.
    pub fn inputs(&self) -> impl Iterator<Item = &ValueInfo> {
        self.plan_inputs.iter().map(|(_, v)| v)
    }

    /// Runs the model on named inputs and returns the named outputs.
    pub fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, RunError> {
        let mut values: Vec<Option<Tensor>> = vec![None; self.value_count];
        let mut given: HashMap<String, Tensor> = inputs.into_iter().collect();
        let mut symbols: HashMap<&str, usize> = HashMap::new();
        for (slot, info) in &self.plan_inputs {
            let t = given.remove(&info.name).ok_or_else(|| {
                RunError::Input(format!("the model needs an input named {:?}", info.name))
            })?;
            check_input_shape(info, &t, &mut symbols)?;
            values[*slot] = Some(t);
        }
        if let Some(extra) = given.keys().next() {
            return Err(RunError::Input(format!(
                "the model has no input named {extra:?}"
            )));
        }
        for layer in &self.layers {
            let x = values[layer.x]
                .as_ref()
                .expect("validation orders every value before its use");
            let y = dense(layer, x);
            values[layer.y] = Some(y);
        }
        Ok(self
            .plan_outputs
            .iter()
            .map(|(slot, info)| {
                let t = values[*slot]
                    .clone()
                    .expect("validation proves every output is produced");
                (info.name.clone(), t)
            })
            .collect())
    }
}

fn check_input_shape<'a>(
    info: &'a ValueInfo,
    t: &Tensor,
    symbols: &mut HashMap<&'a str, usize>,
) -> Result<(), RunError> {
    let wrong = || {
        RunError::Input(format!(
            "input {:?} has shape {:?}, the model expects {}",
            info.name,
            t.shape,
            crate::model::fmt_shape(&info.shape)
        ))
    };
    if t.shape.len() != info.shape.len() {
        return Err(wrong());
    }
    let elems = t
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if elems != Some(t.data.len()) {
        return Err(RunError::Input(format!(
            "input {:?} holds {} values, but its shape {:?} needs {}",
            info.name,
            t.data.len(),
            t.shape,
            elems.map_or("more than memory holds".to_owned(), |n| n.to_string())
        )));
    }
    for (dim, &n) in info.shape.iter().zip(&t.shape) {
        match dim {
            Dim::Fixed(f) if *f != n as u64 => return Err(wrong()),
            Dim::Fixed(_) => {}
            Dim::Symbol(s) => {
                if *symbols.entry(s.as_str()).or_insert(n) != n {
                    return Err(wrong());
                }
            }
        }
    }
    if t.shape.first().copied().unwrap_or(0) > MAX_BATCH {
        return Err(RunError::Input(format!(
            "input {:?} has {} rows, more than the {MAX_BATCH} one run takes; split it",
            info.name, t.shape[0]
        )));
    }
    Ok(())
}

fn dense(layer: &DenseLayer, x: &Tensor) -> Tensor {
    let rows = x.shape[0];
    let mut y = vec![0f32; rows * layer.units];
    crate::sys::sgemm(
        rows,
        layer.inputs,
        layer.units,
        &x.data,
        &layer.kernel,
        &mut y,
    );
    for row in y.chunks_exact_mut(layer.units.max(1)) {
        if let Some(bias) = &layer.bias {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
        activate(layer.activation, row);
    }
    Tensor {
        shape: vec![rows, layer.units],
        data: y,
    }
}

fn activate(a: Activation, row: &mut [f32]) {
    match a {
        Activation::Linear => {}
        Activation::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Sigmoid => row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        Activation::Tanh => row.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Softmax => {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            row.iter_mut().for_each(|v| *v /= sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let mut row = [1000.0f32, 1001.0, 1002.0];
        activate(Activation::Softmax, &mut row);
        // numpy: scipy.special.softmax([0, 1, 2])
        let expected = [0.09003057f32, 0.24472847, 0.66524096];
        for (a, b) in row.iter().zip(expected) {
            assert!((a - b).abs() < 1e-7, "{row:?}");
        }
    }

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
        let model = Model::new(&plan, |_| Ok(vec![1.0, 2.0, 3.0])).unwrap();
        let short = Tensor {
            shape: vec![1, 3],
            data: vec![1.0],
        };
        let err = model.run(vec![("x".into(), short)]).unwrap_err();
        assert!(err.to_string().contains("holds 1 values"), "{err}");
        let ok = Tensor {
            shape: vec![2, 3],
            data: vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0],
        };
        let out = model.run(vec![("x".into(), ok)]).unwrap();
        assert_eq!(out[0].1.data, vec![1.0, 5.0]);
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
    }
}
