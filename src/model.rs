//! The nnsign model schema (a graph of typed operations over named values) and its validation.
//!
//! The same structure is read from the JSON given to `pack --arch` and stored as CBOR in the
//! manifest; docs/SCHEMA.md describes both. Validation runs before anything is instantiated: it
//! checks that every value is defined once before use, infers every shape and dtype, checks them
//! against the weights and the declared outputs, and computes what the model will need in memory.
//! Its output, a [`Plan`], is what [`crate::runtime`] builds a runnable model from.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::format::{DType, TensorInfo, MAX_NAME_LEN, MAX_RANK};

/// Op-set version this nnsign implements. A graph with a higher op-set is refused by name.
pub const OPSET: u64 = 1;
/// Most nodes in one graph.
pub const MAX_NODES: usize = 65536;
/// Most graph inputs or outputs.
pub const MAX_GRAPH_IO: usize = 256;
/// Default cap on the memory loading may take (the verified payload, plus [`Plan::memory_need`]);
/// `verify-load --max-memory` raises it.
pub const DEFAULT_MEMORY_LIMIT: u64 = 8 << 30;

/// A model architecture: a graph over named values. Weights are values whose names are tensors
/// of the artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub opset: u64,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub nodes: Vec<Node>,
}

/// A graph input or output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValueInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<Dim>,
}

/// One dimension: a fixed size, or a symbol (such as `"batch"`) bound when the model runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(untagged)]
pub enum Dim {
    Fixed(u64),
    Symbol(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
        }
    }
}

/// A node: one operation from named inputs to named outputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub op: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, Attr>,
}

/// A typed attribute value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Attr {
    Int(i64),
    Float(f64),
    Text(String),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
}

/// Why an architecture was refused. Every message names the node or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The JSON given to `--arch` does not parse as a graph.
    #[error("{0}")]
    Parse(String),
    /// A rule of the schema is broken.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> SchemaError {
    SchemaError::Invalid(msg.into())
}

/// Activation functions of the `Dense` op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
}

impl Activation {
    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "linear" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softmax" => Activation::Softmax,
            _ => return None,
        })
    }
}

/// A validated step, referring to values by index into the plan's value table.
#[derive(Debug, Clone)]
pub enum Step {
    /// `y = activation(x · kernel + bias)`, kernel `[inputs, units]` as Keras stores it.
    Dense {
        x: usize,
        kernel: String,
        bias: Option<String>,
        inputs: usize,
        units: usize,
        activation: Activation,
        y: usize,
    },
}

/// A graph that passed validation: value slots, steps in execution order, and the shapes the
/// runtime must check inputs against.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Names of the values; steps refer to them by index.
    pub values: Vec<String>,
    pub inputs: Vec<(usize, ValueInfo)>,
    pub outputs: Vec<(usize, ValueInfo)>,
    pub steps: Vec<Step>,
    /// Bytes the weights take once widened to f32.
    pub weight_bytes: u64,
    /// f32 elements of activations per batch row, summed over all values.
    pub activation_elems_per_row: u64,
}

impl Plan {
    /// Bytes the built model may need: its weights as f32 plus every activation for
    /// [`crate::runtime::MAX_BATCH`] rows.
    pub fn memory_need(&self) -> u64 {
        self.weight_bytes.saturating_add(
            self.activation_elems_per_row
                .saturating_mul(4)
                .saturating_mul(crate::runtime::MAX_BATCH as u64),
        )
    }
}

impl Graph {
    /// Calls `check` on every string of the graph with a description of where it is, stopping
    /// at the first error: names printed in messages must pass the same checks as metadata.
    pub fn for_each_text<E>(
        &self,
        check: &mut impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        for v in self.inputs.iter().chain(&self.outputs) {
            check("graph value name", &v.name)?;
            check("graph value dtype", &v.dtype)?;
            for d in &v.shape {
                if let Dim::Symbol(s) = d {
                    check("dimension symbol", s)?;
                }
            }
        }
        for n in &self.nodes {
            check("node op", &n.op)?;
            check("node name", &n.name)?;
            for s in n.inputs.iter().chain(&n.outputs) {
                check("node value name", s)?;
            }
            for (k, a) in &n.attrs {
                check("attribute name", k)?;
                if let Attr::Text(t) = a {
                    check("attribute value", t)?;
                }
            }
        }
        Ok(())
    }

    /// Parses the JSON form given to `pack --arch`.
    pub fn from_json(text: &str) -> Result<Graph, SchemaError> {
        serde_json::from_str(text).map_err(|e| SchemaError::Parse(e.to_string()))
    }

    /// Checks the graph against the artifact's tensors and builds the execution plan.
    pub fn validate(&self, tensors: &[TensorInfo]) -> Result<Plan, SchemaError> {
        if self.opset > OPSET {
            return Err(invalid(format!(
                "architecture needs op-set {}, this nnsign implements op-set {OPSET}; upgrade nnsign",
                self.opset
            )));
        }
        if self.opset == 0 {
            return Err(invalid("architecture op-set 0 does not exist; use 1"));
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err(invalid("graph needs at least one input and one output"));
        }
        if self.inputs.len() > MAX_GRAPH_IO || self.outputs.len() > MAX_GRAPH_IO {
            return Err(invalid(format!(
                "graph has more than {MAX_GRAPH_IO} inputs or outputs"
            )));
        }
        if self.nodes.len() > MAX_NODES {
            return Err(invalid(format!(
                "graph has {} nodes, more than the limit of {MAX_NODES}",
                self.nodes.len()
            )));
        }
        let weights: HashMap<&str, &TensorInfo> =
            tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut b = Builder::default();
        for input in &self.inputs {
            check_value_info("graph input", input)?;
            if weights.contains_key(input.name.as_str()) {
                return Err(invalid(format!(
                    "graph input {:?} has the name of a weight tensor",
                    input.name
                )));
            }
            let slot = b.define(&input.name, "graph input", input.shape.clone())?;
            b.inputs.push((slot, input.clone()));
        }
        let mut node_names = HashSet::new();
        let mut used_weights = HashSet::new();
        for node in &self.nodes {
            if node.name.is_empty() || node.name.len() > MAX_NAME_LEN {
                return Err(invalid("a node has an empty or over-long name"));
            }
            if !node_names.insert(node.name.as_str()) {
                return Err(invalid(format!("node {:?}: name used twice", node.name)));
            }
            let at = |msg: String| invalid(format!("node {:?} ({}): {msg}", node.name, node.op));
            match node.op.as_str() {
                "Dense" => {
                    let step = b.dense(node, &weights, at)?;
                    let Step::Dense { kernel, bias, .. } = &step;
                    used_weights.insert(kernel.clone());
                    used_weights.extend(bias.clone());
                    b.steps.push(step);
                }
                other => {
                    return Err(at(format!(
                        "unknown op {other:?} (op-set {OPSET} has: Dense)"
                    )))
                }
            }
        }
        for output in &self.outputs {
            check_value_info("graph output", output)?;
            let slot = *b.slots.get(output.name.as_str()).ok_or_else(|| {
                invalid(format!(
                    "graph output {:?} is not produced by any node",
                    output.name
                ))
            })?;
            let inferred = &b.shapes[slot];
            if !shapes_agree(inferred, &output.shape) {
                return Err(invalid(format!(
                    "graph output {:?} is declared {} but the graph computes {}",
                    output.name,
                    fmt_shape(&output.shape),
                    fmt_shape(inferred)
                )));
            }
            b.outputs.push((slot, output.clone()));
        }
        let weight_bytes = used_weights
            .iter()
            .filter_map(|w| weights.get(w.as_str()))
            .map(|t| t.length / t.dtype.size() * 4)
            .sum::<u64>();
        let activation_elems_per_row = b
            .shapes
            .iter()
            .map(|s| {
                s.iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => *n,
                        Dim::Symbol(_) => 1,
                    })
                    .try_fold(1u64, |acc, n| acc.checked_mul(n))
                    .unwrap_or(u64::MAX)
            })
            .fold(0u64, |acc, n| acc.saturating_add(n));
        Ok(Plan {
            values: b.names,
            inputs: b.inputs,
            outputs: b.outputs,
            steps: b.steps,
            weight_bytes,
            activation_elems_per_row,
        })
    }
}

fn check_value_info(what: &str, v: &ValueInfo) -> Result<(), SchemaError> {
    if v.name.is_empty() || v.name.len() > MAX_NAME_LEN {
        return Err(invalid(format!("a {what} has an empty or over-long name")));
    }
    if v.dtype != DType::F32.name() {
        return Err(invalid(format!(
            "{what} {:?} has dtype {:?}; op-set {OPSET} runs F32 values only",
            v.name, v.dtype
        )));
    }
    if v.shape.len() > MAX_RANK {
        return Err(invalid(format!(
            "{what} {:?} has more than {MAX_RANK} dimensions",
            v.name
        )));
    }
    Ok(())
}

fn shapes_agree(a: &[Dim], b: &[Dim]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Dim::Fixed(p), Dim::Fixed(q)) => p == q,
            (Dim::Symbol(p), Dim::Symbol(q)) => p == q,
            _ => false,
        })
}

/// `[batch, 784]`.
pub fn fmt_shape(s: &[Dim]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

#[derive(Default)]
struct Builder {
    names: Vec<String>,
    shapes: Vec<Vec<Dim>>,
    slots: HashMap<String, usize>,
    inputs: Vec<(usize, ValueInfo)>,
    outputs: Vec<(usize, ValueInfo)>,
    steps: Vec<Step>,
}

impl Builder {
    fn define(&mut self, name: &str, by: &str, shape: Vec<Dim>) -> Result<usize, SchemaError> {
        if self.slots.contains_key(name) {
            return Err(invalid(format!(
                "value {name:?} is defined twice (again by {by})"
            )));
        }
        let slot = self.names.len();
        self.names.push(name.to_owned());
        self.shapes.push(shape);
        self.slots.insert(name.to_owned(), slot);
        Ok(slot)
    }

    fn dense(
        &mut self,
        node: &Node,
        weights: &HashMap<&str, &TensorInfo>,
        at: impl Fn(String) -> SchemaError,
    ) -> Result<Step, SchemaError> {
        let (x_name, kernel_name, bias_name) = match node.inputs.as_slice() {
            [x, k] => (x, k, None),
            [x, k, b] => (x, k, Some(b)),
            _ => {
                return Err(at(format!(
                    "takes inputs [x, kernel] or [x, kernel, bias], got {} inputs",
                    node.inputs.len()
                )))
            }
        };
        let [y_name] = node.outputs.as_slice() else {
            return Err(at(format!("has one output, got {}", node.outputs.len())));
        };
        let mut activation = Activation::Linear;
        for (key, value) in &node.attrs {
            match (key.as_str(), value) {
                ("activation", Attr::Text(a)) => {
                    activation = Activation::from_name(a).ok_or_else(|| {
                        at(format!(
                            "unknown activation {a:?} (linear, relu, sigmoid, tanh, softmax)"
                        ))
                    })?
                }
                _ => return Err(at(format!("unknown or mistyped attribute {key:?}"))),
            }
        }
        let x = *self.slots.get(x_name.as_str()).ok_or_else(|| {
            at(format!(
                "input {x_name:?} is not a graph input or the output of an earlier node"
            ))
        })?;
        let weight = |name: &str, role: &str| -> Result<&TensorInfo, SchemaError> {
            let t = weights
                .get(name)
                .ok_or_else(|| at(format!("{role} {name:?} is not a tensor of this artifact")))?;
            if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
                return Err(at(format!(
                    "{role} {name:?} has dtype {}, not a float type",
                    t.dtype
                )));
            }
            Ok(t)
        };
        let kernel = weight(kernel_name, "kernel")?;
        let [inputs, units] = kernel.shape[..] else {
            return Err(at(format!(
                "kernel {kernel_name:?} has shape {:?}, expected [inputs, units]",
                kernel.shape
            )));
        };
        if let Some(b) = bias_name {
            let bias = weight(b, "bias")?;
            if bias.shape != [units] {
                return Err(at(format!(
                    "bias {b:?} has shape {:?}, expected [{units}] to match kernel {kernel_name:?}",
                    bias.shape
                )));
            }
        }
        let x_shape = &self.shapes[x];
        let [batch, Dim::Fixed(features)] = x_shape.as_slice() else {
            return Err(at(format!(
                "input {x_name:?} has shape {}, expected [batch, features] with fixed features",
                fmt_shape(x_shape)
            )));
        };
        if *features != inputs {
            return Err(at(format!(
                "input {x_name:?} has {features} features but kernel {kernel_name:?} expects {inputs}"
            )));
        }
        let shape = vec![batch.clone(), Dim::Fixed(units)];
        let too_big = |n: u64| usize::try_from(n).map_err(|_| at("dimension too large".into()));
        let (inputs, units) = (too_big(inputs)?, too_big(units)?);
        let y = self.define(y_name, &format!("node {:?}", node.name), shape)?;
        Ok(Step::Dense {
            x,
            kernel: kernel_name.clone(),
            bias: bias_name.cloned(),
            inputs,
            units,
            activation,
            y,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, shape: &[u64]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
            offset: 0,
            length: shape.iter().product::<u64>() * 4,
        }
    }

    fn mlp_json() -> String {
        r#"{"opset": 1,
            "inputs": [{"name": "x", "dtype": "F32", "shape": ["batch", 4]}],
            "outputs": [{"name": "probs", "dtype": "F32", "shape": ["batch", 3]}],
            "nodes": [
              {"op": "Dense", "name": "d1", "inputs": ["x", "k1", "b1"], "outputs": ["h"], "attrs": {"activation": "relu"}},
              {"op": "Dense", "name": "d2", "inputs": ["h", "k2"], "outputs": ["probs"], "attrs": {"activation": "softmax"}}
            ]}"#
        .to_string()
    }

    fn weights() -> Vec<TensorInfo> {
        vec![
            tensor("k1", &[4, 5]),
            tensor("b1", &[5]),
            tensor("k2", &[5, 3]),
        ]
    }

    #[test]
    fn a_valid_mlp_plans_two_dense_steps() {
        let g = Graph::from_json(&mlp_json()).unwrap();
        let plan = g.validate(&weights()).unwrap();
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.weight_bytes, (20 + 5 + 15) * 4);
        assert_eq!(plan.values, vec!["x", "h", "probs"]);
    }

    fn rejection(edit: impl Fn(&mut Graph), tensors: Vec<TensorInfo>) -> String {
        let mut g = Graph::from_json(&mlp_json()).unwrap();
        edit(&mut g);
        g.validate(&tensors).unwrap_err().to_string()
    }

    #[test]
    fn each_rule_names_the_node_at_fault() {
        let msg = rejection(|g| g.nodes[0].op = "Conv".into(), weights());
        assert!(
            msg.contains("node \"d1\" (Conv): unknown op \"Conv\""),
            "{msg}"
        );
        let msg = rejection(|g| g.nodes.swap(0, 1), weights());
        assert!(
            msg.contains("node \"d2\"") && msg.contains("\"h\" is not a graph input"),
            "{msg}"
        );
        let msg = rejection(
            |_| {},
            vec![
                tensor("k1", &[4, 5]),
                tensor("b1", &[5]),
                tensor("k2", &[6, 3]),
            ],
        );
        assert!(
            msg.contains("node \"d2\"")
                && msg.contains("has 5 features but kernel \"k2\" expects 6"),
            "{msg}"
        );
        let msg = rejection(
            |_| {},
            vec![
                tensor("k1", &[4, 5]),
                tensor("b1", &[4]),
                tensor("k2", &[5, 3]),
            ],
        );
        assert!(
            msg.contains("bias \"b1\" has shape [4], expected [5]"),
            "{msg}"
        );
        let msg = rejection(|g| g.nodes[1].inputs[1] = "nope".into(), weights());
        assert!(msg.contains("kernel \"nope\" is not a tensor"), "{msg}");
        let msg = rejection(|g| g.outputs[0].shape[1] = Dim::Fixed(4), weights());
        assert!(
            msg.contains("declared [batch, 4] but the graph computes [batch, 3]"),
            "{msg}"
        );
        let msg = rejection(|g| g.nodes[1].outputs[0] = "h".into(), weights());
        assert!(msg.contains("value \"h\" is defined twice"), "{msg}");
        let msg = rejection(
            |g| {
                g.nodes[0]
                    .attrs
                    .insert("activation".into(), Attr::Text("swish".into()));
            },
            weights(),
        );
        assert!(msg.contains("unknown activation \"swish\""), "{msg}");
        let msg = rejection(|g| g.opset = 2, weights());
        assert!(msg.contains("op-set 2"), "{msg}");
    }

    #[test]
    fn memory_need_counts_weights_and_activations() {
        let plan = Graph::from_json(&mlp_json())
            .unwrap()
            .validate(&weights())
            .unwrap();
        // x [batch, 4] + h [batch, 5] + probs [batch, 3] = 12 floats a row.
        assert_eq!(plan.activation_elems_per_row, 12);
        assert_eq!(
            plan.memory_need(),
            160 + 12 * 4 * crate::runtime::MAX_BATCH as u64
        );
    }

    #[test]
    fn unknown_json_fields_are_refused() {
        let err = Graph::from_json(r#"{"opset":1,"inputs":[],"outputs":[],"nodes":[],"extra":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }
}
