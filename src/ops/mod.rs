//! The operations of the model schema (docs/SCHEMA.md). Each op's attributes are parsed and
//! checked once ([`Op::parse`]); its output type is inferred from its input types
//! ([`Op::infer`]), over symbolic shapes when a graph is validated and over the bound sizes
//! before it runs; and it runs ([`Op::run`]) only on values whose shapes that inference passed.

mod conv;
mod conv_transpose;
mod direct;
mod einsum;
mod elementwise;
mod known;
mod layout;
mod linalg;
mod logic;
#[cfg(test)]
mod math_fixture;
mod movement;
mod norm;
mod reduce;
mod resize;
mod rnn;
pub mod shape;

use crate::model::{Attr, Node};
use crate::tensor::{Elem, Tensor, Value};
pub use shape::{VType, D, K};

pub use conv::{Conv2d, Pool, Then};
pub use elementwise::{Binary, Unary};
pub use linalg::{Activation, Gemm};
pub use movement::Slice;

/// Most elements a `Constant` node may hold.
pub const MAX_CONSTANT: usize = 65536;

/// A parsed operation.
#[derive(Debug, Clone)]
pub enum Op {
    Binary(Binary),
    Unary(Unary),
    Softmax {
        axis: i64,
    },
    /// `Identity` and `Dropout` (inference).
    Identity,
    MatMul,
    Gemm(Gemm),
    Dense(Activation),
    Conv(Conv2d),
    Pool(Pool),
    GlobalAveragePool,
    BatchNorm {
        epsilon: f32,
    },
    LayerNorm {
        axis: i64,
        epsilon: f32,
    },
    Flatten {
        axis: i64,
    },
    /// `shape` is `None` when given as the second input (op-set 3).
    /// With `allowzero` (op-set 3), a 0 in the shape is a size of 0, not a copy.
    Reshape {
        shape: Option<Vec<i64>>,
        allowzero: bool,
    },
    Transpose {
        perm: Option<Vec<i64>>,
    },
    Concat {
        axis: i64,
    },
    Gather {
        axis: i64,
    },
    Slice(Slice),
    /// `axes` is `None` when given as the second input (op-set 3) or, if that is absent too,
    /// when every axis of size 1 goes.
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    /// `axes` is `None` when given as the second input (op-set 3).
    Unsqueeze {
        axes: Option<Vec<i64>>,
    },
    /// `Slice` with its parameters as inputs 1 to 4 (op-set 3).
    SliceInputs,
    /// The shape of its input, dimensions `start..end` (op-set 3).
    Shape {
        start: i64,
        end: Option<i64>,
    },
    /// `scales` from the attribute; `sizes` is the fourth input (op-set 3).
    Resize {
        resize: resize::Resize,
        scales: Option<Vec<f32>>,
    },
    ConvTranspose(conv_transpose::ConvTranspose),
    InstanceNorm {
        epsilon: f32,
    },
    Pad(layout::Pad),
    Tile,
    Expand,
    ConstantOfShape(layout::Scalar),
    Range,
    /// With the number of outputs the node lists.
    Split {
        split: layout::Split,
        outputs: usize,
    },
    Where,
    /// `LSTM` and `GRU`.
    Rnn(rnn::Rnn),
    Compare(logic::Compare),
    Logic(logic::Logic),
    Not,
    Cast(logic::Cast),
    /// `min` and `max` are the optional second and third inputs.
    Clip,
    PRelu,
    /// `axes` from the attribute (ONNX before op-set 18) or, when `None`, the second input.
    Reduce {
        reduce: reduce::Reduce,
        axes: Option<Vec<i64>>,
    },
    Arg(reduce::Arg),
    /// `k` is the second input; two outputs, values and indices.
    TopK(reduce::TopK),
    LogSoftmax {
        axis: i64,
    },
    Hardmax {
        axis: i64,
    },
    Einsum(einsum::Einsum),
    Constant(Value),
}

/// The ops of each op-set, for messages.
pub const OPSET_1: &[&str] = &["Dense"];
pub const OPSET_2: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Sqrt",
    "Erf",
    "Gelu",
    "Softmax",
    "Identity",
    "Dropout",
    "MatMul",
    "Gemm",
    "Dense",
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "LayerNormalization",
    "Flatten",
    "Reshape",
    "Transpose",
    "Concat",
    "Gather",
    "Slice",
    "Squeeze",
    "Unsqueeze",
    "Constant",
];

/// The ops op-set 3 adds to op-set 2.
pub const OPSET_3_ADDED: &[&str] = &[
    "Shape",
    "Resize",
    "ConvTranspose",
    "InstanceNormalization",
    "Pad",
    "Tile",
    "Expand",
    "ConstantOfShape",
    "Range",
    "Split",
    "Where",
    "LSTM",
    "GRU",
    "HardSigmoid",
    "HardSwish",
    "Log",
    "Neg",
    "Abs",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Sin",
    "Cos",
    "Mod",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
    "Cast",
    "Clip",
    "PRelu",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ArgMax",
    "ArgMin",
    "TopK",
    "LogSoftmax",
    "Hardmax",
    "Einsum",
];

/// The ops of op-set `opset` (1 to [`crate::model::OPSET`]), in the order the schema lists
/// them.
pub fn ops_of(opset: u64) -> Vec<&'static str> {
    match opset {
        0 => Vec::new(),
        1 => OPSET_1.to_vec(),
        2 => OPSET_2.to_vec(),
        _ => OPSET_2.iter().chain(OPSET_3_ADDED).copied().collect(),
    }
}

/// The lowest op-set from 2 in which every node of `g` parses and its inputs and outputs have
/// their dtypes: what importers declare, so that an artifact stays readable by every nnsign
/// that can run it.
pub fn lowest_opset(g: &crate::model::Graph) -> u64 {
    let io_bool = (g.inputs.iter().chain(&g.outputs)).any(|v| v.dtype == "BOOL");
    (2..=crate::model::OPSET)
        .find(|&o| (o >= 3 || !io_bool) && g.nodes.iter().all(|n| Op::parse(n, o).is_ok()))
        .unwrap_or(crate::model::OPSET)
}

/// Ops whose parameters op-set 2 takes as attributes and op-set 3 also as inputs.
const PARAMETERS_AS_INPUTS: &[&str] = &["Reshape", "Slice", "Squeeze", "Unsqueeze"];

/// Most outputs an op makes; a node lists from one to that many.
pub fn max_outputs(op: &str) -> usize {
    match op {
        "Split" => crate::model::MAX_GRAPH_IO,
        "LSTM" => 3,
        "GRU" => 2,
        "TopK" => 2,
        _ => 1,
    }
}

/// A node's attributes, read one by one; whatever is left unread at the end is an error.
pub(crate) struct Attrs<'a> {
    node: &'a Node,
    read: Vec<&'a str>,
}

impl<'a> Attrs<'a> {
    fn new(node: &'a Node) -> Self {
        Attrs {
            node,
            read: Vec::new(),
        }
    }

    fn get(&mut self, key: &'a str) -> Option<&'a Attr> {
        self.read.push(key);
        self.node.attrs.get(key)
    }

    fn wrong(&self, key: &str, want: &str) -> String {
        format!("attribute {key:?} must be {want}")
    }

    pub fn int(&mut self, key: &'a str, default: i64) -> Result<i64, String> {
        Ok(self.int_opt(key)?.unwrap_or(default))
    }

    pub fn int_opt(&mut self, key: &'a str) -> Result<Option<i64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(*v)),
            Some(_) => Err(self.wrong(key, "an integer")),
        }
    }

    /// A 0/1 flag.
    pub fn flag(&mut self, key: &'a str) -> Result<bool, String> {
        match self.int(key, 0)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("attribute {key:?} must be 0 or 1, not {v}")),
        }
    }

    pub fn float(&mut self, key: &'a str, default: f32) -> Result<f32, String> {
        let v = match self.get(key) {
            None => return Ok(default),
            Some(Attr::Float(v)) => *v,
            Some(Attr::Int(v)) => *v as f64,
            Some(_) => return Err(self.wrong(key, "a number")),
        };
        let f = v as f32;
        if !f.is_finite() {
            return Err(format!(
                "attribute {key:?} must be finite in float32, not {v}"
            ));
        }
        Ok(f)
    }

    pub fn ints(&mut self, key: &'a str) -> Result<Option<Vec<i64>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.wrong(key, "a list of integers")),
        }
    }

    pub fn floats(&mut self, key: &'a str) -> Result<Option<Vec<f32>>, String> {
        let v: Vec<f64> = match self.get(key) {
            None => return Ok(None),
            Some(Attr::Floats(v)) => v.clone(),
            Some(Attr::Ints(v)) => v.iter().map(|&i| i as f64).collect(),
            Some(_) => return Err(self.wrong(key, "a list of numbers")),
        };
        let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        if f.iter().any(|x| !x.is_finite()) {
            return Err(format!(
                "attribute {key:?} holds a value that is not finite in float32"
            ));
        }
        Ok(Some(f))
    }

    /// [`Attrs::floats`] that also takes infinities (a `Constant`'s `-inf` for masked
    /// scores): a value is refused only when it is NaN or a finite number too large for
    /// float32.
    pub fn floats_or_infinite(&mut self, key: &'a str) -> Result<Option<Vec<f32>>, String> {
        let v: Vec<f64> = match self.get(key) {
            None => return Ok(None),
            Some(Attr::Floats(v)) => v.clone(),
            Some(Attr::Float(v)) => vec![*v],
            Some(Attr::Ints(v)) => v.iter().map(|&i| i as f64).collect(),
            Some(_) => return Err(self.wrong(key, "a list of numbers")),
        };
        let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        if (v.iter().zip(&f)).any(|(x, y)| x.is_nan() || (x.is_finite() && !y.is_finite())) {
            return Err(format!(
                "attribute {key:?} holds NaN or a value too large for float32"
            ));
        }
        Ok(Some(f))
    }

    pub fn text(&mut self, key: &'a str) -> Result<Option<&'a str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Attr::Text(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }

    /// A text attribute that, if present, must have one value.
    pub fn only(&mut self, key: &'a str, allowed: &str) -> Result<(), String> {
        match self.text(key)? {
            None => Ok(()),
            Some(v) if v == allowed => Ok(()),
            Some(v) => Err(format!(
                "attribute {key:?} = {v:?} is not supported (only {allowed:?})"
            )),
        }
    }

    /// An integer attribute that, if present, must have one value.
    pub fn only_int(&mut self, key: &'a str, allowed: i64) -> Result<(), String> {
        match self.int_opt(key)? {
            None => Ok(()),
            Some(v) if v == allowed => Ok(()),
            Some(v) => Err(format!(
                "attribute {key:?} = {v} is not supported (only {allowed})"
            )),
        }
    }

    /// An attribute accepted and not used (ONNX training-time settings).
    pub fn ignore(&mut self, key: &'a str) {
        self.read.push(key);
    }

    fn finish(self) -> Result<(), String> {
        match (self.node.attrs.keys()).find(|k| !self.read.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown attribute {k:?} for {}", self.node.op)),
            None => Ok(()),
        }
    }
}

/// How many inputs an op takes: at least `min` (all given), at most `max`.
fn arity(op: &str) -> Option<(usize, usize)> {
    Some(match op {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "MatMul" => (2, 2),
        "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Exp" | "Sqrt" | "Erf" | "Gelu" | "Softmax"
        | "Identity" | "MaxPool" | "AveragePool" | "GlobalAveragePool" | "Flatten"
        | "Transpose" | "Shape" => (1, 1),
        "Reshape" | "Squeeze" | "Unsqueeze" => (1, 2),
        "Slice" => (1, 5),
        "Resize" => (1, 4),
        "ConvTranspose" => (2, 3),
        "InstanceNormalization" | "Range" | "Where" => (3, 3),
        "Pad" => (2, 4),
        "Tile" | "Expand" => (2, 2),
        "ConstantOfShape" => (1, 1),
        "Split" => (1, 2),
        "LSTM" => (3, 8),
        "GRU" => (3, 6),
        "HardSigmoid" | "HardSwish" | "Log" | "Neg" | "Abs" | "Reciprocal" | "Floor" | "Ceil"
        | "Sin" | "Cos" | "Not" | "Cast" | "ArgMax" | "ArgMin" | "LogSoftmax" | "Hardmax" => (1, 1),
        "Mod" | "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or"
        | "Xor" | "PRelu" | "TopK" => (2, 2),
        "Clip" => (1, 3),
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSum" | "ReduceLogSumExp" => (1, 2),
        "Einsum" => (1, 2),
        "Dropout" => (1, 3),
        "Gemm" | "Conv" | "Dense" => (2, 3),
        "LayerNormalization" => (2, 3),
        "BatchNormalization" => (5, 5),
        "Concat" => (1, usize::MAX),
        "Gather" => (2, 2),
        "Constant" => (0, 0),
        _ => return None,
    })
}

impl Op {
    /// Parses and checks `node`'s op, arity and attributes for a graph of op-set `opset`.
    pub fn parse(node: &Node, opset: u64) -> Result<Op, String> {
        let name = node.op.as_str();
        let Some((min, mut max)) = arity(name) else {
            return Err(format!(
                "unknown op {name:?} (op-set {opset} has: {})",
                ops_of(opset).join(", ")
            ));
        };
        if let Some(needs) = (1..=crate::model::OPSET).find(|&o| ops_of(o).contains(&name)) {
            if opset < needs {
                return Err(format!(
                    "op {name:?} needs op-set {needs}, and the graph declares op-set {opset}"
                ));
            }
        }
        if opset < 3 && PARAMETERS_AS_INPUTS.contains(&name) {
            if node.inputs.len() > 1 {
                return Err(format!(
                    "takes 1 input in op-set {opset}, {} given (its parameters are attributes \
                     there; op-set 3 also takes them as inputs)",
                    node.inputs.len()
                ));
            }
            max = 1;
        }
        let given = node.inputs.len();
        if given < min || given > max {
            return Err(match (min, max) {
                (a, b) if a == b => format!("takes {a} input(s), {given} given"),
                (a, usize::MAX) => format!("takes at least {a} input(s), {given} given"),
                (a, b) => format!("takes {a} to {b} inputs, {given} given"),
            });
        }
        // Only trailing optional inputs may be omitted; Concat has none.
        let required = if name == "Concat" { given } else { min };
        if let Some(i) = node.inputs[..required].iter().position(String::is_empty) {
            return Err(format!("input {i} is required"));
        }
        let outputs = max_outputs(name);
        if node.outputs.is_empty() || node.outputs.len() > outputs {
            return Err(match outputs {
                1 => format!(
                    "has {} outputs; {name} makes one, so list exactly one",
                    node.outputs.len()
                ),
                n => format!("has {} outputs; {name} makes 1 to {n}", node.outputs.len()),
            });
        }
        // A parameter is an attribute or an input, never both.
        let as_input = node.inputs.get(1).is_some_and(|i| !i.is_empty())
            && PARAMETERS_AS_INPUTS.contains(&name);
        let mut a = Attrs::new(node);
        let op = match name {
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" => {
                Op::Binary(Binary::parse(name, &mut a)?)
            }
            "HardSigmoid" | "HardSwish" | "Log" | "Neg" | "Abs" | "Reciprocal" | "Floor"
            | "Ceil" | "Sin" | "Cos" => Op::Unary(Unary::parse(name, &mut a)?),
            "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => {
                Op::Compare(logic::Compare::from_name(name)?)
            }
            "And" | "Or" | "Xor" => Op::Logic(logic::Logic::from_name(name)?),
            "Not" => Op::Not,
            "Cast" => Op::Cast(logic::Cast::parse(&mut a)?),
            "Clip" => Op::Clip,
            "PRelu" => Op::PRelu,
            "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
            | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSum" | "ReduceLogSumExp" => {
                let axes = a.ints("axes")?;
                if axes.is_some() && node.inputs.get(1).is_some_and(|i| !i.is_empty()) {
                    return Err(both("axes"));
                }
                Op::Reduce {
                    reduce: reduce::Reduce::parse(name, &mut a)?,
                    axes,
                }
            }
            "ArgMax" | "ArgMin" => Op::Arg(reduce::Arg::parse(name, &mut a)?),
            "TopK" => Op::TopK(reduce::TopK::parse(&mut a)?),
            "LogSoftmax" => Op::LogSoftmax {
                axis: a.int("axis", -1)?,
            },
            "Hardmax" => Op::Hardmax {
                axis: a.int("axis", -1)?,
            },
            "Einsum" => Op::Einsum(einsum::Einsum::parse(&mut a)?),
            "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Sqrt" | "Erf" | "LeakyRelu" | "Gelu" => {
                Op::Unary(Unary::parse(name, &mut a)?)
            }
            "Softmax" => Op::Softmax {
                axis: a.int("axis", -1)?,
            },
            "Identity" => Op::Identity,
            "Dropout" => {
                if node.inputs.get(2).is_some_and(|i| !i.is_empty()) {
                    return Err("its third input (training_mode) is given; nnsign runs inference only, so leave it off".into());
                }
                a.ignore("ratio");
                a.ignore("seed");
                Op::Identity
            }
            "MatMul" => Op::MatMul,
            "Gemm" => Op::Gemm(Gemm::parse(&mut a)?),
            "Dense" => Op::Dense(Activation::parse(&mut a)?),
            "Conv" => Op::Conv(Conv2d::parse(&mut a)?),
            "MaxPool" | "AveragePool" => {
                let pool = Pool::parse(name, &mut a)?;
                if pool.ceil && opset < 3 {
                    return Err("attribute \"ceil_mode\" = 1 needs op-set 3".into());
                }
                Op::Pool(pool)
            }
            "GlobalAveragePool" => Op::GlobalAveragePool,
            "BatchNormalization" => {
                a.ignore("momentum");
                a.only_int("training_mode", 0)?;
                Op::BatchNorm {
                    epsilon: positive(a.float("epsilon", 1e-5)?, "epsilon")?,
                }
            }
            "LayerNormalization" => {
                a.only_int("stash_type", 1)?;
                Op::LayerNorm {
                    axis: a.int("axis", -1)?,
                    epsilon: positive(a.float("epsilon", 1e-5)?, "epsilon")?,
                }
            }
            "Flatten" => Op::Flatten {
                axis: a.int("axis", 1)?,
            },
            "Reshape" => {
                let allowzero = a.flag("allowzero")?;
                if allowzero && opset < 3 {
                    return Err("attribute \"allowzero\" = 1 needs op-set 3".into());
                }
                let shape = a.ints("shape")?;
                match (&shape, as_input) {
                    (Some(_), true) => return Err(both("shape")),
                    (None, false) => {
                        return Err("attribute \"shape\" or a second input is required".into())
                    }
                    (Some(s), false) => movement::check_reshape(s)?,
                    (None, true) => {}
                }
                Op::Reshape { shape, allowzero }
            }
            "Transpose" => Op::Transpose {
                perm: a.ints("perm")?,
            },
            "Concat" => Op::Concat {
                axis: a.int_opt("axis")?.ok_or("attribute \"axis\" is required")?,
            },
            "Gather" => Op::Gather {
                axis: a.int("axis", 0)?,
            },
            "Slice" if as_input => {
                if node.inputs.len() < 3 || node.inputs[1].is_empty() || node.inputs[2].is_empty() {
                    return Err("inputs \"starts\" and \"ends\" are required".into());
                }
                for key in ["starts", "ends", "axes", "steps"] {
                    if a.ints(key)?.is_some() {
                        return Err(both(key));
                    }
                }
                Op::SliceInputs
            }
            "Slice" => Op::Slice(Slice::parse(&mut a)?),
            "Squeeze" => {
                let axes = a.ints("axes")?;
                if axes.is_some() && as_input {
                    return Err(both("axes"));
                }
                Op::Squeeze { axes }
            }
            "Unsqueeze" => {
                let axes = a.ints("axes")?;
                match (&axes, as_input) {
                    (Some(_), true) => return Err(both("axes")),
                    (None, false) => {
                        return Err("attribute \"axes\" or a second input is required".into())
                    }
                    _ => {}
                }
                Op::Unsqueeze { axes }
            }
            "Shape" => Op::Shape {
                start: a.int("start", 0)?,
                end: a.int_opt("end")?,
            },
            "Resize" => {
                for (k, what) in [(1, "roi"), (2, "scales")] {
                    if node.inputs.get(k).is_some_and(|i| !i.is_empty()) {
                        return Err(format!(
                            "input {k} ({what}) is given; nnsign takes scales as the attribute \"scales\" and no roi (which only tf_crop_and_resize reads)"
                        ));
                    }
                }
                let scales = a.floats("scales")?;
                let sizes = node.inputs.get(3).is_some_and(|i| !i.is_empty());
                if scales.is_some() == sizes {
                    return Err(
                        "give the attribute \"scales\" or the input sizes, one of them".into(),
                    );
                }
                Op::Resize {
                    resize: resize::Resize::parse(&mut a)?,
                    scales,
                }
            }
            "ConvTranspose" => Op::ConvTranspose(conv_transpose::ConvTranspose::parse(&mut a)?),
            "InstanceNormalization" => Op::InstanceNorm {
                epsilon: norm::parse_instance_norm(&mut a)?,
            },
            "Pad" => Op::Pad(layout::Pad::parse(&mut a)?),
            "Tile" => Op::Tile,
            "Expand" => Op::Expand,
            "ConstantOfShape" => Op::ConstantOfShape(layout::parse_constant_of_shape(&mut a)?),
            "Range" => {
                layout::parse_range(&mut a)?;
                Op::Range
            }
            "Split" => Op::Split {
                split: layout::Split::parse(&mut a)?,
                outputs: node.outputs.len(),
            },
            "Where" => Op::Where,
            "LSTM" | "GRU" => Op::Rnn(rnn::Rnn::parse(name, &mut a)?),
            "Constant" => Op::Constant(constant(&mut a)?),
            _ => unreachable!("arity() knows exactly these ops"),
        };
        a.finish()?;
        Ok(op)
    }

    /// The output type for inputs of types `ins` (`None`: an omitted optional input).
    pub fn infer(&self, ins: &[Option<&VType>]) -> Result<VType, String> {
        let x = || ins[0].expect("parse checked the required inputs");
        match self {
            Op::Binary(b) => {
                let t = b.infer(x(), req(ins, 1))?;
                let name = match b {
                    Binary::Mod { fmod: true } => "FMod",
                    _ => b.name(),
                };
                let known = (t.elem == Elem::I64)
                    .then(|| known::arithmetic(name, x(), req(ins, 1)))
                    .flatten();
                Ok(t.with_known(known))
            }
            Op::Unary(u) => u.infer(x()),
            Op::Softmax { .. } => {
                let t = float(x(), "input")?;
                if let Op::Softmax { axis } = self {
                    shape::axis(*axis, t.rank(), "axis")?;
                }
                Ok(t.clone())
            }
            Op::Identity => Ok(x().clone()),
            Op::MatMul => linalg::infer_matmul(x(), req(ins, 1)),
            Op::Gemm(g) => g.infer(x(), req(ins, 1), opt(ins, 2)),
            Op::Dense(_) => linalg::infer_dense(x(), req(ins, 1), opt(ins, 2)),
            Op::Conv(c) => c.infer(x(), req(ins, 1), opt(ins, 2)),
            Op::Pool(p) => p.infer(x()),
            Op::GlobalAveragePool => conv::infer_global_pool(x()),
            Op::BatchNorm { .. } => norm::infer_batch_norm(ins),
            Op::LayerNorm { axis, .. } => {
                norm::infer_layer_norm(*axis, x(), req(ins, 1), opt(ins, 2))
            }
            Op::Flatten { axis } => movement::infer_flatten(*axis, x()),
            Op::Reshape {
                shape: Some(s),
                allowzero,
            } => {
                let spec: Vec<K> = s.iter().map(|&d| K::Int(d)).collect();
                movement::infer_reshape_to(&spec, x(), *allowzero)
            }
            Op::Reshape {
                shape: None,
                allowzero,
            } => {
                let spec = known::param(opt(ins, 1), "input \"shape\"")?;
                movement::infer_reshape_to(&spec.expect("parse checked the input"), x(), *allowzero)
            }
            Op::Transpose { perm } => movement::infer_transpose(perm.as_deref(), x()),
            Op::Concat { axis } => {
                let all: Vec<&VType> = ins
                    .iter()
                    .map(|t| t.expect("Concat inputs are required"))
                    .collect();
                let t = movement::infer_concat(*axis, &all)?;
                Ok(t.with_known(known::concat(&all)))
            }
            Op::Gather { axis } => {
                let t = movement::infer_gather(*axis, x(), req(ins, 1))?;
                let known = (*axis == 0).then(|| known::gather(x(), req(ins, 1)));
                Ok(t.with_known(known.flatten()))
            }
            Op::Slice(s) => s.infer(x()),
            Op::SliceInputs => Slice::infer_inputs(x(), [1, 2, 3, 4].map(|i| opt(ins, i))),
            Op::Squeeze { axes } => {
                let given = known::param_ints(opt(ins, 1), "input \"axes\"")?;
                movement::infer_squeeze(axes.as_deref().or(given.as_deref()), x())
            }
            Op::Unsqueeze { axes } => {
                let given = known::param_ints(opt(ins, 1), "input \"axes\"")?;
                let axes = axes.as_deref().or(given.as_deref());
                movement::infer_unsqueeze(axes.expect("parse checked the axes are given"), x())
            }
            Op::Shape { start, end } => {
                let dims = &x().shape[shape_range(*start, *end, x().rank())];
                Ok(VType::new(Elem::I64, vec![D::Fixed(dims.len() as u64)])
                    .with_known(Some(known::dims(dims))))
            }
            Op::Resize { resize, scales } => {
                let sizes = known::param(opt(ins, 3), "input \"sizes\"")?
                    .map(|k| layout::shape_param(&k, "sizes"))
                    .transpose()?;
                let target = resize::Target::new(scales.as_deref(), sizes.as_deref())?;
                resize.infer(float(x(), "input")?, target)
            }
            Op::ConvTranspose(c) => c.infer(x(), req(ins, 1), opt(ins, 2)),
            Op::InstanceNorm { .. } => norm::infer_instance_norm(x(), req(ins, 1), req(ins, 2)),
            Op::Pad(p) => {
                let pads = known::param_ints(opt(ins, 1), "input \"pads\"")?;
                let axes = known::param_ints(opt(ins, 3), "input \"axes\"")?;
                p.infer(
                    x(),
                    &pads.expect("parse checked the input"),
                    axes.as_deref(),
                    opt(ins, 2),
                )
            }
            Op::Tile => {
                let repeats = known::param_ints(opt(ins, 1), "input \"repeats\"")?;
                layout::infer_tile(x(), &repeats.expect("parse checked the input"))
            }
            Op::Expand => {
                let k = known::param(opt(ins, 1), "input \"shape\"")?;
                let shape = layout::shape_param(&k.expect("parse checked the input"), "shape")?;
                layout::infer_expand(x(), &shape)
            }
            Op::ConstantOfShape(value) => {
                let k = known::param(Some(x()), "input \"shape\"")?;
                let shape = layout::shape_param(&k.expect("given"), "shape")?;
                layout::infer_constant_of_shape(*value, &shape)
            }
            Op::Range => layout::infer_range(&range_args(x(), req(ins, 1), req(ins, 2))?),
            Op::Split { split, outputs } => {
                let sizes = known::param_ints(opt(ins, 1), "input \"split\"")?;
                let mut all = split.infer(x(), sizes.as_deref(), *outputs)?;
                Ok(all.remove(0))
            }
            Op::Where => layout::infer_where(x(), req(ins, 1), req(ins, 2)),
            Op::Rnn(r) => Ok(r.infer(ins)?.remove(0)),
            Op::Compare(c) => {
                let t = c.infer(x(), req(ins, 1))?;
                let known = (*c == logic::Compare::Equal)
                    .then(|| known::equal(x(), req(ins, 1)))
                    .flatten();
                Ok(t.with_known(known))
            }
            Op::Logic(l) => l.infer(x(), req(ins, 1)),
            Op::Not => logic::infer_not(x()),
            Op::Cast(c) => c.infer(x()),
            Op::Clip => {
                let t = elementwise::infer_clip(x())?;
                for (i, what) in [(1, "min"), (2, "max")] {
                    if let Some(b) = opt(ins, i) {
                        if b.elem != t.elem
                            || b.rank() > 1
                            || shape::count(&b.shape)
                                .is_none_or(|c| c.coef != 1 || !c.syms.is_empty())
                        {
                            return Err(format!(
                                "{what} must be one {} value, not {} {}",
                                t.elem.name(),
                                b.elem.name(),
                                shape::fmt_shape(&b.shape)
                            ));
                        }
                    }
                }
                Ok(t)
            }
            Op::PRelu => elementwise::infer_prelu(x(), req(ins, 1)),
            Op::Reduce { reduce, axes } => {
                let given = known::param_ints(opt(ins, 1), "input \"axes\"")?;
                reduce.infer(x(), axes.as_deref().or(given.as_deref()))
            }
            Op::Arg(arg) => arg.infer(x()),
            Op::TopK(t) => Ok(t.infer(x(), topk_k(req(ins, 1))?)?.remove(0)),
            Op::LogSoftmax { axis } | Op::Hardmax { axis } => reduce::infer_along(*axis, x()),
            Op::Einsum(e) => {
                let all: Vec<&VType> = ins
                    .iter()
                    .map(|t| t.expect("Einsum inputs are required"))
                    .collect();
                e.infer(&all)
            }
            Op::Constant(v) => {
                let t = VType::new(
                    v.elem(),
                    v.shape().iter().map(|&d| D::Fixed(d as u64)).collect(),
                );
                Ok(match v {
                    Value::I64(c) => t.with_known(known::of_ints(&c.data)),
                    _ => t,
                })
            }
        }
    }

    /// The output types of every output the op makes, in order ([`Op::infer`] for most ops,
    /// which make one).
    pub fn infer_all(&self, ins: &[Option<&VType>]) -> Result<Vec<VType>, String> {
        match self {
            Op::Split { split, outputs } => {
                let sizes = known::param_ints(opt(ins, 1), "input \"split\"")?;
                split.infer(ins[0].expect("required"), sizes.as_deref(), *outputs)
            }
            Op::Rnn(r) => r.infer(ins),
            Op::TopK(t) => t.infer(ins[0].expect("required"), topk_k(req(ins, 1))?),
            _ => Ok(vec![self.infer(ins)?]),
        }
    }

    /// Whether some input of the op is a parameter that decides its output's shape (op-set
    /// 3), which [`Op::run_all`] checks against the shapes planned before the run.
    fn takes_shape_parameters(&self, given: usize) -> bool {
        match self {
            Op::Reshape { shape: None, .. } | Op::Unsqueeze { axes: None } | Op::SliceInputs => {
                true
            }
            Op::Squeeze { axes: None } => given > 1,
            Op::Resize { scales: None, .. } | Op::Pad(_) | Op::Tile | Op::Expand => true,
            Op::ConstantOfShape(_) | Op::Range | Op::Split { .. } | Op::TopK(_) => true,
            Op::Reduce { axes: None, .. } => given > 1,
            _ => false,
        }
    }

    /// Runs the op, making every output of shapes `outs` (what [`Op::infer_all`] inferred).
    pub fn run_all(&self, ins: &[Option<&Value>], outs: &[&[usize]]) -> Result<Vec<Value>, String> {
        if self.takes_shape_parameters(ins.len()) {
            // The parameters the graph computed must give the shapes planned from what
            // inference knew of them: the kernels rely on both.
            let types: Vec<Option<VType>> = ins.iter().map(|v| v.map(concrete)).collect();
            let refs: Vec<Option<&VType>> = types.iter().map(Option::as_ref).collect();
            let planned = self.infer_all(&refs)?;
            for (t, out) in planned.iter().zip(outs) {
                if t.shape
                    .iter()
                    .map(D::fixed)
                    .ne(out.iter().map(|&d| Some(d as u64)))
                {
                    return Err(format!(
                        "its parameters at run time make shape {}, not the {out:?} planned before the run",
                        shape::fmt_shape(&t.shape)
                    ));
                }
            }
        }
        match self {
            Op::Split { split, .. } => {
                let x = ins[0].expect("required");
                Ok(match x {
                    Value::F32(t) => split.run(t, outs).into_iter().map(Value::F32).collect(),
                    Value::I64(t) => split.run(t, outs).into_iter().map(Value::I64).collect(),
                    Value::Bool(t) => split.run(t, outs).into_iter().map(Value::Bool).collect(),
                })
            }
            Op::TopK(t) => {
                let k = ins[1].expect("required").i64().data[0];
                let out = outs[0];
                Ok(match ins[0].expect("required") {
                    Value::F32(x) => {
                        let (v, i) = t.run(x, k, out);
                        vec![Value::F32(v), Value::I64(i)]
                    }
                    Value::I64(x) => {
                        let (v, i) = t.run(x, k, out);
                        vec![Value::I64(v), Value::I64(i)]
                    }
                    Value::Bool(_) => unreachable!("inference refuses BOOL"),
                }
                .into_iter()
                .take(outs.len())
                .collect())
            }
            Op::Rnn(r) => {
                let f = |i: usize| ins.get(i).copied().flatten().map(Value::f32);
                let given = rnn::Inputs {
                    x: f(0).expect("required"),
                    w: f(1).expect("required"),
                    r: f(2).expect("required"),
                    b: f(3),
                    sequence_lens: ins.get(4).copied().flatten().map(Value::i64),
                    initial_h: f(5),
                    initial_c: f(6),
                    p: f(7),
                };
                let made = r.run(&given)?;
                Ok(made.into_iter().take(outs.len()).map(Value::F32).collect())
            }
            _ => Ok(vec![self.run(ins, outs[0])?]),
        }
    }

    /// Whether the op can work in the memory of its first input ([`Op::run_owned`]).
    /// Bytes of working memory one thread holds while running this op on inputs of shapes
    /// `ins` (and keeps, for the next op of its kind): convolution's unfolded or staged input
    /// and its pre-pool output. Counted in the memory plan, since the largest of them can
    /// exceed every value the graph holds.
    pub fn scratch_bytes(&self, ins: &[&[usize]], out: &[usize]) -> u64 {
        let elements = |s: &[usize]| s.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64));
        match (self, ins) {
            (Op::Conv(c), [x, w, ..]) => c.scratch_floats(x, w).saturating_mul(4),
            (Op::ConvTranspose(c), [x, w, ..]) => c.scratch_floats(x, w).saturating_mul(4),
            (Op::Rnn(r), [x, ..]) => r.scratch_floats(x).saturating_mul(4),
            // Diagonals, partial sums and permuted copies of the operands, and the product
            // before its last permutation: at most the operands and the output once more.
            (Op::Einsum(_), _) => (ins.iter().map(|s| elements(s)))
                .fold(elements(out), u64::saturating_add)
                .saturating_mul(4),
            _ => 0,
        }
    }

    pub fn in_place(&self) -> bool {
        matches!(
            self,
            Op::Unary(_)
                | Op::Softmax { .. }
                | Op::Identity
                | Op::BatchNorm { .. }
                | Op::LayerNorm { .. }
                | Op::InstanceNorm { .. }
                | Op::Clip
                | Op::Not
                | Op::LogSoftmax { .. }
                | Op::Hardmax { .. }
                | Op::Flatten { .. }
                | Op::Reshape { .. }
                | Op::Squeeze { .. }
                | Op::Unsqueeze { .. }
        )
    }

    /// Runs the op on inputs whose shapes [`Op::infer`] accepted, making a value of shape
    /// `out` (what it inferred).
    pub fn run(&self, ins: &[Option<&Value>], out: &[usize]) -> Result<Value, String> {
        if self.in_place() {
            let x = ins[0].expect("parse checked the required inputs").clone();
            return Ok(self.run_owned(x, ins, out));
        }
        let x = || ins[0].expect("parse checked the required inputs");
        let f = |i: usize| {
            ins[i]
                .map(|v| v.f32())
                .expect("inference checked the dtypes")
        };
        let fo = |i: usize| ins.get(i).copied().flatten().map(Value::f32);
        Ok(match self {
            Op::Binary(b) => match (x(), ins[1].expect("required")) {
                (Value::I64(p), Value::I64(q)) => Value::I64(b.run_i64(p, q, out)?),
                _ => Value::F32(b.run(f(0), f(1), out)),
            },
            Op::Compare(c) => match (x(), ins[1].expect("required")) {
                (Value::F32(p), Value::F32(q)) => Value::Bool(c.run(p, q, out)),
                (Value::I64(p), Value::I64(q)) => Value::Bool(c.run(p, q, out)),
                (Value::Bool(p), Value::Bool(q)) => Value::Bool(c.run(p, q, out)),
                _ => unreachable!("inference checked the dtypes"),
            },
            Op::Logic(l) => Value::Bool(l.run(x().bool(), ins[1].expect("required").bool(), out)),
            Op::Cast(c) => c.run(x().clone()),
            Op::PRelu => Value::F32(elementwise::prelu(f(0), f(1), out)),
            Op::Reduce { reduce, axes } => {
                let given = ins.get(1).copied().flatten().map(|v| &v.i64().data[..]);
                let axes = axes.as_deref().or(given);
                match x() {
                    Value::F32(t) => Value::F32(reduce.run(t, axes, out)),
                    Value::I64(t) => Value::I64(reduce.run_i64(t, axes, out)),
                    Value::Bool(_) => unreachable!("inference refuses BOOL"),
                }
            }
            Op::Arg(arg) => match x() {
                Value::F32(t) => Value::I64(arg.run(t, out)),
                Value::I64(t) => Value::I64(arg.run(t, out)),
                Value::Bool(_) => unreachable!("inference refuses BOOL"),
            },
            Op::Einsum(e) => {
                let all: Vec<&Tensor> = ins.iter().map(|t| t.expect("required").f32()).collect();
                Value::F32(e.run(&all, out))
            }
            Op::MatMul => Value::F32(linalg::matmul(f(0), f(1), out)),
            Op::Gemm(g) => Value::F32(g.run(f(0), f(1), fo(2), out)),
            Op::Dense(act) => Value::F32(linalg::dense(*act, f(0), f(1), fo(2), out)),
            Op::Conv(c) => Value::F32(c.run(f(0), f(1), fo(2), [fo(3), fo(4), fo(5), fo(6)], out)),
            Op::Pool(p) => Value::F32(p.run(f(0), out)),
            Op::GlobalAveragePool => Value::F32(conv::global_pool(f(0), out)),
            Op::Transpose { perm } => movement::transpose(x(), perm.as_deref(), out),
            Op::Concat { axis } => {
                let all: Vec<&Value> = ins
                    .iter()
                    .map(|t| t.expect("Concat inputs are required"))
                    .collect();
                movement::concat(&all, *axis, out)
            }
            Op::Gather { axis } => {
                movement::gather(x(), ins[1].expect("required").i64(), *axis, out)?
            }
            Op::Slice(s) => s.run(x(), out),
            Op::SliceInputs => {
                let param = |i: usize| ins.get(i).copied().flatten().map(Value::i64);
                let s = Slice::of_inputs([1, 2, 3, 4].map(param))?;
                let planned = s.infer(&VType::new(
                    x().elem(),
                    x().shape().iter().map(|&d| D::Fixed(d as u64)).collect(),
                ))?;
                if planned
                    .shape
                    .iter()
                    .map(D::fixed)
                    .ne(out.iter().map(|&d| Some(d as u64)))
                {
                    return Err(format!(
                        "its parameters at run time make shape {}, not the {out:?} inferred before the run",
                        shape::fmt_shape(&planned.shape)
                    ));
                }
                s.run(x(), out)
            }
            Op::Shape { start, end } => {
                let dims = &x().shape()[shape_range(*start, *end, x().shape().len())];
                Value::I64(Tensor {
                    shape: out.to_vec(),
                    data: dims.iter().map(|&d| d as i64).collect(),
                })
            }
            Op::Resize { resize, scales } => {
                let sizes: Option<Vec<D>> = (ins.get(3).copied().flatten())
                    .map(|v| v.i64().data.iter().map(|&d| D::Fixed(d as u64)).collect());
                let target = resize::Target::new(scales.as_deref(), sizes.as_deref())?;
                Value::F32(resize.run(f(0), target, out))
            }
            Op::ConvTranspose(c) => Value::F32(c.run(f(0), f(1), fo(2), out)),
            Op::Pad(p) => {
                let pads = &ins[1].expect("required").i64().data;
                let axes = ins.get(3).copied().flatten().map(|v| &v.i64().data[..]);
                let value = ins.get(2).copied().flatten();
                match x() {
                    Value::F32(t) => Value::F32(p.run(t, pads, axes, value.map(Value::f32), out)),
                    Value::I64(t) => Value::I64(p.run(t, pads, axes, value.map(Value::i64), out)),
                    Value::Bool(t) => {
                        Value::Bool(p.run(t, pads, axes, value.map(Value::bool), out))
                    }
                }
            }
            Op::Tile => crate::tensor::each_value!(x(), t => layout::tile(t, out)),
            Op::Expand => crate::tensor::each_value!(x(), t => layout::expand(t, out)),
            Op::ConstantOfShape(value) => match *value {
                layout::Scalar::F32(v) => Value::F32(layout::constant_of_shape(v, out)),
                layout::Scalar::I64(v) => Value::I64(layout::constant_of_shape(v, out)),
                layout::Scalar::Bool(v) => Value::Bool(layout::constant_of_shape(v, out)),
            },
            Op::Range => match (x(), ins[2].expect("required")) {
                (Value::F32(start), Value::F32(delta)) => {
                    Value::F32(layout::range_f32(start.data[0], delta.data[0], out))
                }
                (Value::I64(start), Value::I64(delta)) => {
                    Value::I64(layout::range_i64(start.data[0], delta.data[0], out))
                }
                _ => unreachable!("inference checked the dtypes"),
            },
            Op::Where => {
                let (c, a, b) = (
                    x().bool(),
                    ins[1].expect("required"),
                    ins[2].expect("required"),
                );
                match a {
                    Value::F32(t) => Value::F32(layout::select(c, t, b.f32(), out)),
                    Value::I64(t) => Value::I64(layout::select(c, t, b.i64(), out)),
                    Value::Bool(t) => Value::Bool(layout::select(c, t, b.bool(), out)),
                }
            }
            Op::Constant(v) => v.clone(),
            Op::Split { .. } | Op::Rnn(_) | Op::TopK(_) => {
                unreachable!("run_all runs ops of several outputs")
            }
            _ => unreachable!("in-place ops return above"),
        })
    }

    /// Runs an [`Op::in_place`] op on its first input `x`, given by value (`ins[0]` is not
    /// read), reusing its memory.
    pub fn run_owned(&self, x: Value, ins: &[Option<&Value>], out: &[usize]) -> Value {
        let f = |i: usize| {
            ins[i]
                .map(|v| v.f32())
                .expect("inference checked the dtypes")
        };
        let fo = |i: usize| ins.get(i).copied().flatten().map(Value::f32);
        let float = |x: Value| x.into_f32().expect("inference checked the dtypes");
        match self {
            Op::Unary(u) => match x {
                Value::I64(t) => Value::I64(u.run_i64(t)),
                x => Value::F32(u.run(float(x))),
            },
            Op::Clip => {
                let one = |i: usize| ins.get(i).copied().flatten();
                match x {
                    Value::F32(t) => Value::F32(elementwise::clip(
                        t,
                        one(1).map(|v| v.f32().data[0]),
                        one(2).map(|v| v.f32().data[0]),
                    )),
                    Value::I64(t) => Value::I64(elementwise::clip(
                        t,
                        one(1).map(|v| v.i64().data[0]),
                        one(2).map(|v| v.i64().data[0]),
                    )),
                    Value::Bool(_) => unreachable!("inference refuses BOOL"),
                }
            }
            Op::Not => match x {
                Value::Bool(t) => Value::Bool(logic::not(t)),
                _ => unreachable!("inference checked the dtype"),
            },
            Op::LogSoftmax { axis } => Value::F32(reduce::log_softmax(float(x), *axis)),
            Op::Hardmax { axis } => Value::F32(reduce::hardmax(float(x), *axis)),
            Op::Softmax { axis } => Value::F32(elementwise::softmax(float(x), *axis)),
            Op::Identity => x,
            Op::BatchNorm { epsilon } => Value::F32(norm::batch_norm(
                float(x),
                [f(1), f(2), f(3), f(4)],
                *epsilon,
            )),
            Op::LayerNorm { axis, epsilon } => {
                Value::F32(norm::layer_norm(float(x), f(1), fo(2), *axis, *epsilon))
            }
            Op::InstanceNorm { epsilon } => {
                Value::F32(norm::instance_norm(float(x), f(1), f(2), *epsilon))
            }
            Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
                x.with_shape(out.to_vec())
            }
            _ => unreachable!("only in-place ops are run owned"),
        }
    }
}

/// Where the batch travels: for each input, the axis along which it holds one slice per
/// batch item (`None`: the input does not depend on the batch, as weights), with its type.
pub(crate) type BatchIn<'a> = (Option<usize>, &'a VType);

impl Op {
    /// The axis of the output that carries the batch, if the op treats every batch item on its
    /// own (so that running it on slices of the batch and joining the results gives the same
    /// value), given where its inputs carry it; `Err` when it mixes items, or `Ok(None)` when
    /// its output does not depend on the batch.
    pub(crate) fn batch_axis(&self, ins: &[Option<BatchIn<'_>>]) -> Result<Option<usize>, ()> {
        let given: Vec<(usize, usize, &VType)> = (ins.iter().enumerate())
            .filter_map(|(i, t)| t.and_then(|(a, t)| Some((i, a?, t))))
            .collect();
        let Some(&(first, axis, t)) = given.first() else {
            return Ok(None);
        };
        let only_first = given.len() == 1 && first == 0;
        let rank = t.rank();
        let ok = |cond: bool, out: usize| if cond { Ok(Some(out)) } else { Err(()) };
        match self {
            Op::Unary(_) | Op::Identity => ok(only_first, axis),
            Op::Softmax { axis: a } => ok(
                only_first && shape::axis(*a, rank, "").ok() != Some(axis),
                axis,
            ),
            Op::BatchNorm { .. } => ok(only_first && axis == 0, 0),
            Op::LayerNorm { axis: a, .. } => ok(
                only_first && shape::axis(*a, rank, "").is_ok_and(|a| axis < a),
                axis,
            ),
            Op::Binary(_) => {
                // Aligned at the last axis, every input holding the batch holds it at the
                // same output axis, and the others are 1 or absent there.
                let out_rank = ins
                    .iter()
                    .flatten()
                    .map(|(_, t)| t.rank())
                    .max()
                    .unwrap_or(0);
                let at = out_rank - (rank - axis);
                let fits = ins.iter().flatten().all(|(a, t)| match a {
                    Some(a) => out_rank - (t.rank() - a) == at,
                    None => {
                        let j = (at + t.rank()).checked_sub(out_rank);
                        j.is_none_or(|j| t.shape[j] == D::Fixed(1))
                    }
                });
                ok(fits, at)
            }
            Op::MatMul => ok(
                only_first && rank >= 2 && axis < rank - 1,
                axis + ins[1].map_or(0, |(_, b)| b.rank().saturating_sub(rank)),
            ),
            Op::Gemm(g) => ok(only_first && axis == 0 && !g.trans_a, 0),
            Op::Dense(_) | Op::Conv(_) | Op::Pool(_) | Op::GlobalAveragePool => {
                ok(only_first && axis == 0, 0)
            }
            Op::ConvTranspose(_) | Op::InstanceNorm { .. } => ok(only_first && axis == 0, 0),
            // Scales of 1 leave an axis as it is, whatever the mode.
            Op::Resize {
                resize,
                scales: Some(s),
            } => {
                let axes: Vec<Option<usize>> = match &resize.axes {
                    Some(a) => a.iter().map(|&x| shape::axis(x, rank, "").ok()).collect(),
                    None => (0..s.len()).map(Some).collect(),
                };
                let touched = (axes.iter().zip(s)).any(|(a, &f)| *a == Some(axis) && f != 1.0);
                ok(only_first && !touched, axis)
            }
            Op::Resize { .. } | Op::Pad(_) | Op::Tile | Op::Expand | Op::Where => Err(()),
            Op::ConstantOfShape(_) | Op::Range | Op::Split { .. } | Op::Rnn(_) => Err(()),
            Op::Clip | Op::Not | Op::Cast(_) => ok(only_first, axis),
            Op::LogSoftmax { axis: a } | Op::Hardmax { axis: a } => ok(
                only_first && shape::axis(*a, rank, "").ok() != Some(axis),
                axis,
            ),
            Op::Compare(_) | Op::Logic(_) | Op::PRelu => Err(()),
            Op::Reduce { .. } | Op::Arg(_) | Op::TopK(_) | Op::Einsum(_) => Err(()),
            Op::Flatten { axis: a } => {
                let a = if *a < 0 { *a + rank as i64 } else { *a };
                ok(only_first && axis == 0 && a >= 1, 0)
            }
            Op::Reshape { shape, allowzero } => ok(
                only_first
                    && axis == 0
                    && !allowzero
                    && shape.as_ref().and_then(|s| s.first()) == Some(&0),
                0,
            ),
            Op::Transpose { perm } => {
                let perm: Vec<usize> = match perm {
                    Some(p) => p.iter().map(|&a| a as usize).collect(),
                    None => (0..rank).rev().collect(),
                };
                ok(only_first, perm.iter().position(|&a| a == axis).ok_or(())?)
            }
            Op::Concat { axis: a } => {
                let all = ins.iter().flatten().all(|(b, _)| *b == Some(axis));
                ok(all && shape::axis(*a, rank, "").ok() != Some(axis), axis)
            }
            Op::Gather { axis: a } => {
                let a = shape::axis(*a, rank.max(1), "").map_err(|_| ())?;
                match (
                    ins[0].and_then(|(b, _)| b),
                    ins[1].and_then(|(b, t)| Some((b?, t))),
                ) {
                    (Some(b), None) if b != a => {
                        let k = ins[1].map_or(0, |(_, t)| t.rank());
                        ok(true, if b < a { b } else { b + k - 1 })
                    }
                    (None, Some((b, _))) => ok(true, a + b),
                    _ => Err(()),
                }
            }
            Op::Slice(sl) => {
                let touched = sl
                    .axes
                    .clone()
                    .unwrap_or_else(|| (0..sl.starts.len() as i64).collect());
                let hits = touched
                    .iter()
                    .any(|&x| shape::axis(x, rank, "").ok() == Some(axis));
                ok(only_first && !hits, axis)
            }
            Op::Squeeze { axes } => {
                let Some(axes) = axes else { return Err(()) };
                let axes: Vec<usize> = axes
                    .iter()
                    .filter_map(|&x| shape::axis(x, rank, "").ok())
                    .collect();
                ok(
                    only_first && !axes.contains(&axis),
                    axis - axes.iter().filter(|&&x| x < axis).count(),
                )
            }
            Op::Unsqueeze { axes: None } | Op::SliceInputs => Err(()),
            // The batch's size itself: a graph that computes with it is not run in slices.
            Op::Shape { start, end } => match shape_range(*start, *end, rank).contains(&axis) {
                true => Err(()),
                false => Ok(None),
            },
            Op::Unsqueeze { axes: Some(axes) } => {
                let out_rank = rank + axes.len();
                let axes: Vec<usize> = axes
                    .iter()
                    .filter_map(|&x| shape::axis(x, out_rank, "").ok())
                    .collect();
                // The input's axes fill the output's positions not inserted, in order.
                let pos = (0..out_rank)
                    .filter(|p| !axes.contains(p))
                    .nth(axis)
                    .ok_or(())?;
                ok(only_first, pos)
            }
            Op::Constant(_) => Ok(None),
        }
    }
}

/// Joins values along `axis` (the pieces of a batch run in slices).
pub fn join(parts: &[&Value], axis: usize) -> Value {
    let mut out = parts[0].shape().to_vec();
    out[axis] = parts.iter().map(|p| p.shape()[axis]).sum();
    movement::concat(parts, axis as i64, &out)
}

/// Rows `start..start + len` of `v` along its first axis.
pub fn rows(v: &Value, start: usize, len: usize) -> Value {
    let shape = v.shape();
    let inner: usize = shape[1..].iter().product();
    let mut out = shape.to_vec();
    out[0] = len;
    crate::tensor::each_value!(v, t => Tensor {
        shape: out,
        data: t.data[start * inner..(start + len) * inner].to_vec(),
    })
}

thread_local! {
    /// Set while this thread runs a batch slice, which has a core to itself.
    static ALONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the ops it runs confined to this thread: batch slices already keep every core
/// busy, and splitting each op again would only add overhead.
pub fn alone<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ALONE.set(self.0);
        }
    }
    let _reset = Reset(ALONE.replace(true));
    f()
}

/// Whether work over `len` items (worth it from `min`) should be spread over the cores.
pub(crate) fn spread(len: usize, min: usize) -> bool {
    len >= min && !ALONE.get() && rayon::current_num_threads() > 1
}

/// Calls `f(i, chunk)` on each `n`-item chunk of `data`, on every core if `par`.
pub(crate) fn chunks<T: Send>(
    data: &mut [T],
    n: usize,
    par: bool,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    use rayon::prelude::*;
    if n == 0 {
        return;
    }
    if par {
        data.par_chunks_mut(n)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(n).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// [`chunks`] with `src` cut into `m`-item chunks alongside.
pub(crate) fn chunks_with<T: Send, U: Sync>(
    data: &mut [T],
    n: usize,
    src: &[U],
    m: usize,
    par: bool,
    f: impl Fn(usize, &mut [T], &[U]) + Sync + Send,
) {
    use rayon::prelude::*;
    if n == 0 || m == 0 {
        return;
    }
    if par {
        (data.par_chunks_mut(n).zip(src.par_chunks(m)).enumerate())
            .for_each(|(i, (d, s))| f(i, d, s));
    } else {
        (data.chunks_mut(n).zip(src.chunks(m)).enumerate()).for_each(|(i, (d, s))| f(i, d, s));
    }
}

fn req<'a>(ins: &[Option<&'a VType>], i: usize) -> &'a VType {
    ins[i].expect("parse checked the required inputs")
}

fn opt<'a>(ins: &[Option<&'a VType>], i: usize) -> Option<&'a VType> {
    ins.get(i).copied().flatten()
}

/// `t` if it is a float value.
pub(crate) fn float<'a>(t: &'a VType, what: &str) -> Result<&'a VType, String> {
    match t.elem {
        Elem::F32 => Ok(t),
        e => Err(format!("{what} must be F32, not {}", e.name())),
    }
}

/// Checks that a value has rank `rank`.
pub(crate) fn rank<'a>(t: &'a VType, rank: usize, what: &str) -> Result<&'a VType, String> {
    if t.rank() != rank {
        return Err(format!(
            "{what} must have rank {rank}, not {} (shape {})",
            t.rank(),
            shape::fmt_shape(&t.shape)
        ));
    }
    Ok(t)
}

/// The concrete type of a value at run time, with its content when small enough to follow.
fn concrete(v: &Value) -> VType {
    let t = VType::new(
        v.elem(),
        v.shape().iter().map(|&d| D::Fixed(d as u64)).collect(),
    );
    let known: Option<Vec<K>> = match v {
        Value::I64(t) => Some(t.data.iter().map(|&d| K::Int(d)).collect()),
        Value::Bool(t) => Some(t.data.iter().map(|&b| K::Int(b as i64)).collect()),
        Value::F32(_) => None,
    };
    t.with_known(known.filter(|k| k.len() <= shape::MAX_KNOWN))
}

/// `Range`'s start, limit and delta: scalars of one element type; integers must be known
/// before the model runs (its length depends on them).
fn range_args(start: &VType, limit: &VType, delta: &VType) -> Result<layout::RangeArgs, String> {
    for (t, what) in [(start, "start"), (limit, "limit"), (delta, "delta")] {
        if shape::count(&t.shape).is_none_or(|c| c.coef != 1 || !c.syms.is_empty()) || t.rank() > 1
        {
            return Err(format!(
                "{what} must be a scalar, not shape {}",
                shape::fmt_shape(&t.shape)
            ));
        }
        if t.elem != start.elem {
            return Err(format!(
                "start, limit and delta must have one element type, not {} and {}",
                start.elem.name(),
                t.elem.name()
            ));
        }
    }
    match start.elem {
        Elem::I64 => {
            let one = |t: &VType, what: &str| -> Result<K, String> {
                Ok(known::param(Some(t), &format!("input \"{what}\""))?.expect("given").remove(0))
            };
            Ok(layout::RangeArgs::I64 {
                start: one(start, "start")?,
                limit: one(limit, "limit")?,
                delta: one(delta, "delta")?,
            })
        }
        e => Err(format!(
            "a Range of {} needs start, limit and delta known before the model runs, which nnsign follows for integers only",
            e.name()
        )),
    }
}

/// `Shape`'s dimensions `start..end` of a rank-`rank` value, counted from the end when
/// negative and clamped, as ONNX does.
fn shape_range(start: i64, end: Option<i64>, rank: usize) -> std::ops::Range<usize> {
    let r = rank as i64;
    let fix = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (a, b) = (fix(start), fix(end.unwrap_or(r)));
    a..b.max(a)
}

/// `TopK`'s `k`: one integer known before the model runs.
fn topk_k(t: &VType) -> Result<i64, String> {
    match known::param_ints(Some(t), "input \"K\"")?
        .expect("given")
        .as_slice()
    {
        [k] => Ok(*k),
        other => Err(format!(
            "input \"K\" must hold one value, not {}",
            other.len()
        )),
    }
}

/// The error for a parameter given both ways.
fn both(key: &str) -> String {
    format!("{key:?} is given both as an attribute and as an input; give one")
}

fn positive(v: f32, what: &str) -> Result<f32, String> {
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("attribute {what:?} must be positive, not {v}"))
    }
}

/// The value of a `Constant` node.
fn constant(a: &mut Attrs<'_>) -> Result<Value, String> {
    if matches!(
        a.node.attrs.get("value_float"),
        Some(Attr::Floats(_) | Attr::Ints(_) | Attr::Text(_))
    ) {
        return Err("attribute \"value_float\" must be a number".into());
    }
    let forms = [
        a.floats_or_infinite("value_float")?.map(|v| (v, false)),
        a.floats_or_infinite("value_floats")?.map(|v| (v, true)),
    ];
    let ints = [
        a.int_opt("value_int")?.map(|v| (vec![v], false)),
        a.ints("value_ints")?.map(|v| (v, true)),
    ];
    let shape_attr = a.ints("shape")?;
    let given = forms.iter().flatten().count() + ints.iter().flatten().count();
    if given != 1 {
        return Err("give exactly one of value_float, value_floats, value_int, value_ints".into());
    }
    let (len, listed) = forms
        .iter()
        .flatten()
        .map(|(v, l)| (v.len(), *l))
        .chain(ints.iter().flatten().map(|(v, l)| (v.len(), *l)))
        .next()
        .expect("one form is given");
    if len > MAX_CONSTANT {
        return Err(format!(
            "holds {len} values, more than the limit of {MAX_CONSTANT}"
        ));
    }
    let shape: Vec<usize> = match (&shape_attr, listed) {
        (None, false) => Vec::new(),
        (None, true) => vec![len],
        (Some(_), false) => {
            return Err("attribute \"shape\" goes with value_floats or value_ints".into())
        }
        (Some(s), true) => {
            if s.len() > crate::format::MAX_RANK || s.iter().any(|&d| d < 0) {
                return Err(format!("attribute \"shape\" {s:?} is not a shape"));
            }
            let dims: Vec<usize> = s.iter().map(|&d| d as usize).collect();
            if dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) != Some(len) {
                return Err(format!(
                    "attribute \"shape\" {s:?} does not hold {len} values"
                ));
            }
            dims
        }
    };
    Ok(
        match (
            forms.into_iter().flatten().next(),
            ints.into_iter().flatten().next(),
        ) {
            (Some((data, _)), _) => Value::F32(Tensor { shape, data }),
            (_, Some((data, _))) => Value::I64(Tensor { shape, data }),
            _ => unreachable!("one form is given"),
        },
    )
}
