//! Data movement and selection that builds new values, for any element type: Pad, Tile, Expand,
//! ConstantOfShape, Range, Split and Where; and the size checks the op-set 3 vision ops share.

use super::shape::{fmt_shape, D};
use crate::memory::MAX_ELEMENTS;

/// `shape`, if a value of that shape can be held: the product of its known dimensions,
/// computed without overflow, is at most [`MAX_ELEMENTS`] (symbols count as at least 1, so a
/// shape refused here is too large for every binding but an empty one).
pub(super) fn capped(shape: Vec<D>) -> Result<Vec<D>, String> {
    let known = (shape.iter().filter_map(D::fixed)).try_fold(1u64, u64::checked_mul);
    let empty = shape.contains(&D::Fixed(0));
    match known {
        Some(n) if n <= MAX_ELEMENTS => Ok(shape),
        _ if empty => Ok(shape),
        _ => Err(format!(
            "the output {} would have more than {MAX_ELEMENTS} elements",
            fmt_shape(&shape)
        )),
    }
}

/// A parameter of `what` (a count or size) as a dimension: at least 0 and at most
/// [`MAX_ELEMENTS`].
pub(super) fn size(v: i64, what: &str) -> Result<u64, String> {
    u64::try_from(v)
        .ok()
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("{what} {v} must be in 0..={MAX_ELEMENTS}"))
}

#[cfg(test)]
pub(super) mod fixture {
    //! The reference cases of `tests/fixtures/ops3/vision.json`, written by
    //! `scripts/make_vision_reference.py`.

    use std::collections::BTreeMap;

    use serde_json::Value as Json;

    use crate::model::{Attr, Node};
    use crate::tensor::Tensor;

    /// One case: a node with its attributes, its inputs (`None`: omitted) and the outputs
    /// expected.
    pub struct Case {
        pub name: String,
        pub node: Node,
        pub inputs: Vec<Option<Json>>,
        pub outputs: Vec<Json>,
    }

    /// Every case of op `op`.
    pub fn cases(op: &str) -> Vec<Case> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ops3/vision.json"
        );
        let text = std::fs::read_to_string(path).expect("the fixture is in the repository");
        let all: Json = serde_json::from_str(&text).expect("the fixture is JSON");
        let cases: Vec<Case> = (all["cases"].as_array().expect("a list of cases").iter())
            .filter(|c| c["op"] == op)
            .map(|c| {
                let attrs: BTreeMap<String, Attr> =
                    serde_json::from_value(c["attrs"].clone()).expect("attributes");
                let inputs: Vec<Option<Json>> = (c["inputs"].as_array().expect("inputs").iter())
                    .map(|t| (!t.is_null()).then(|| t.clone()))
                    .collect();
                let outputs = c["outputs"].as_array().expect("outputs").clone();
                let name = c["name"].as_str().expect("a name").to_owned();
                let node = Node {
                    op: op.into(),
                    name: name.clone(),
                    inputs: (0..inputs.len()).map(|i| format!("in{i}")).collect(),
                    outputs: (0..outputs.len()).map(|i| format!("out{i}")).collect(),
                    attrs,
                };
                Case {
                    name,
                    node,
                    inputs,
                    outputs,
                }
            })
            .collect();
        assert!(!cases.is_empty(), "no cases of {op}");
        cases
    }

    fn shape(t: &Json) -> Vec<usize> {
        (t["shape"].as_array().expect("a shape").iter())
            .map(|d| d.as_u64().expect("a size") as usize)
            .collect()
    }

    fn data<T>(t: &Json, f: impl Fn(&Json) -> Option<T>) -> Vec<T> {
        (t["data"].as_array().expect("data").iter())
            .map(|v| f(v).expect("an element of the right type"))
            .collect()
    }

    pub fn dtype(t: &Json) -> &str {
        t["dtype"].as_str().expect("a dtype")
    }

    pub fn f32s(t: &Json) -> Tensor<f32> {
        assert_eq!(dtype(t), "f32");
        Tensor {
            shape: shape(t),
            data: data(t, |v| v.as_f64().map(|x| x as f32)),
        }
    }

    pub fn i64s(t: &Json) -> Tensor<i64> {
        assert_eq!(dtype(t), "i64");
        Tensor {
            shape: shape(t),
            data: data(t, Json::as_i64),
        }
    }

    pub fn bools(t: &Json) -> Tensor<bool> {
        assert_eq!(dtype(t), "bool");
        Tensor {
            shape: shape(t),
            data: data(t, Json::as_bool),
        }
    }

    /// Checks `got` against `want` within 1e-5 (absolute, or relative for large values).
    pub fn close(name: &str, got: &Tensor<f32>, want: &Tensor<f32>) {
        assert_eq!(got.shape, want.shape, "{name}: shape");
        assert_eq!(got.data.len(), want.data.len(), "{name}: element count");
        for (i, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
            let tol = 1e-5 * w.abs().max(1.0);
            assert!(
                (g - w).abs() <= tol,
                "{name}: element {i} is {g}, expected {w}"
            );
        }
    }
}
