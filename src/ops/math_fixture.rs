//! The reference cases of `tests/fixtures/ops3/math.json` (written by
//! `scripts/make_math_reference.py` with onnx's reference evaluator, cross-checked against
//! onnxruntime), read by the unit tests of the op-set 3 math ops.

use super::shape::{VType, D};
use crate::model::{Attr, Node};
use crate::tensor::{Elem, Tensor, Value};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A reference tensor.
#[derive(Debug, Clone)]
pub enum Arr {
    F32(Tensor<f32>),
    I64(Tensor<i64>),
    Bool(Tensor<bool>),
}

impl Arr {
    pub fn shape(&self) -> &[usize] {
        match self {
            Arr::F32(t) => &t.shape,
            Arr::I64(t) => &t.shape,
            Arr::Bool(t) => &t.shape,
        }
    }
}

/// One case: an ONNX node, its inputs (`None`: omitted) and expected outputs.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub op: String,
    pub attrs: BTreeMap<String, Attr>,
    pub inputs: Vec<Option<Arr>>,
    pub outputs: Vec<Arr>,
}

fn float(v: &Json) -> f32 {
    match v {
        Json::String(s) if s == "NaN" => f32::NAN,
        Json::String(s) if s == "Infinity" => f32::INFINITY,
        Json::String(s) if s == "-Infinity" => f32::NEG_INFINITY,
        v => v.as_f64().expect("a number") as f32,
    }
}

fn arr(v: &Json) -> Option<Arr> {
    if v.is_null() {
        return None;
    }
    let shape: Vec<usize> = (v["shape"].as_array().expect("shape").iter())
        .map(|d| d.as_u64().expect("a size") as usize)
        .collect();
    let data = v["data"].as_array().expect("data");
    Some(match v["dtype"].as_str().expect("dtype") {
        "f32" => Arr::F32(Tensor {
            shape,
            data: data.iter().map(float).collect(),
        }),
        "i64" => Arr::I64(Tensor {
            shape,
            data: data.iter().map(|x| x.as_i64().expect("an i64")).collect(),
        }),
        "bool" => Arr::Bool(Tensor {
            shape,
            data: data.iter().map(|x| x.as_bool().expect("a bool")).collect(),
        }),
        other => panic!("unknown dtype {other}"),
    })
}

fn all() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ops3/math.json");
        let text = std::fs::read_to_string(path).expect("tests/fixtures/ops3/math.json");
        let json: Json = serde_json::from_str(&text).expect("valid JSON");
        (json["cases"].as_array().expect("cases").iter())
            .map(|c| Case {
                name: c["name"].as_str().expect("name").into(),
                op: c["op"].as_str().expect("op").into(),
                attrs: serde_json::from_value(c["attrs"].clone()).expect("attributes"),
                inputs: c["inputs"]
                    .as_array()
                    .expect("inputs")
                    .iter()
                    .map(arr)
                    .collect(),
                outputs: (c["outputs"].as_array().expect("outputs").iter())
                    .map(|o| arr(o).expect("an output"))
                    .collect(),
            })
            .collect()
    })
}

/// The cases of the ops `ops`, at least `min` of them (so that a test cannot pass by
/// finding none).
pub fn cases(ops: &[&str], min: usize) -> Vec<&'static Case> {
    let found: Vec<&Case> = all()
        .iter()
        .filter(|c| ops.contains(&c.op.as_str()))
        .collect();
    assert!(
        found.len() >= min,
        "{} cases of {ops:?}, expected at least {min}",
        found.len()
    );
    found
}

/// Whether `got` is within the tests' tolerance of `want`: 1e-5, relative above 1; NaN
/// matches only NaN and an infinity only itself.
pub fn close(got: f32, want: f32) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return want == got;
    }
    (got - want).abs() <= 1e-5 * want.abs().max(1.0)
}

impl Case {
    /// The case as a node, for `parse`.
    pub fn node(&self) -> Node {
        Node {
            op: self.op.clone(),
            name: self.name.clone(),
            inputs: (self.inputs.iter().enumerate())
                .map(|(i, x)| x.as_ref().map_or(String::new(), |_| format!("in{i}")))
                .collect(),
            outputs: (0..self.outputs.len()).map(|i| format!("out{i}")).collect(),
            attrs: self.attrs.clone(),
        }
    }

    pub fn input(&self, i: usize) -> &Arr {
        self.inputs[i].as_ref().expect("the input is given")
    }

    pub fn f32(&self, i: usize) -> &Tensor<f32> {
        match self.input(i) {
            Arr::F32(t) => t,
            other => panic!("{}: input {i} is not F32: {other:?}", self.name),
        }
    }

    pub fn i64(&self, i: usize) -> &Tensor<i64> {
        match self.input(i) {
            Arr::I64(t) => t,
            other => panic!("{}: input {i} is not I64: {other:?}", self.name),
        }
    }

    /// An I64 parameter input's values (`None`: omitted).
    pub fn ints(&self, i: usize) -> Option<Vec<i64>> {
        match self.inputs.get(i)? {
            None => None,
            Some(Arr::I64(t)) => Some(t.data.clone()),
            Some(other) => panic!("{}: input {i} is not I64: {other:?}", self.name),
        }
    }

    /// Input `i`'s type: its element type and fixed shape.
    pub fn vtype(&self, i: usize) -> VType {
        let x = self.input(i);
        let elem = match x {
            Arr::F32(_) => Elem::F32,
            Arr::I64(_) => Elem::I64,
            Arr::Bool(_) => Elem::Bool,
        };
        VType::new(
            elem,
            x.shape().iter().map(|&d| D::Fixed(d as u64)).collect(),
        )
    }

    /// Input `i` as a value.
    pub fn value(&self, i: usize) -> Value {
        match self.input(i).clone() {
            Arr::F32(t) => Value::F32(t),
            Arr::I64(t) => Value::I64(t),
            Arr::Bool(t) => Value::Bool(t),
        }
    }

    /// The fixed shape of output `k`, as inference should give it.
    pub fn out_shape(&self, k: usize) -> Vec<D> {
        (self.outputs[k].shape().iter())
            .map(|&d| D::Fixed(d as u64))
            .collect()
    }

    pub fn check_f32(&self, got: &Tensor<f32>, k: usize) {
        let Arr::F32(want) = &self.outputs[k] else {
            panic!("{}: output {k} is not F32", self.name)
        };
        assert_eq!(got.shape, want.shape, "{}: shape", self.name);
        assert_eq!(got.data.len(), want.data.len(), "{}: length", self.name);
        for (i, (&g, &w)) in got.data.iter().zip(&want.data).enumerate() {
            assert!(close(g, w), "{}: element {i} is {g}, not {w}", self.name);
        }
    }

    pub fn check_i64(&self, got: &Tensor<i64>, k: usize) {
        let Arr::I64(want) = &self.outputs[k] else {
            panic!("{}: output {k} is not I64", self.name)
        };
        assert_eq!(got, want, "{}", self.name);
    }

    pub fn check_bool(&self, got: &Tensor<bool>, k: usize) {
        let Arr::Bool(want) = &self.outputs[k] else {
            panic!("{}: output {k} is not BOOL", self.name)
        };
        assert_eq!(got, want, "{}", self.name);
    }

    /// Checks a value against output `k`, whatever its element type.
    pub fn check(&self, got: &Value, k: usize) {
        match got {
            Value::F32(t) => self.check_f32(t, k),
            Value::I64(t) => self.check_i64(t, k),
            Value::Bool(t) => self.check_bool(t, k),
        }
    }
}
