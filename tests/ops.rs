//! Every op against references computed independently with NumPy (tests/fixtures/ops, made by
//! scripts/make_op_fixtures.py and cross-checked against onnxruntime by
//! scripts/check_op_fixtures.py), and the real-framework CNN end to end.

mod common;

use std::collections::BTreeMap;

use common::*;
use nnsign::format::TensorInfo;
use nnsign::model::Graph;
use nnsign::runtime::{self, Model, Value};

/// The arrays of an `.npz`, by name, as values.
fn arrays(path: &std::path::Path) -> BTreeMap<String, (TensorInfo, Value)> {
    let imported = nnsign::import::import(&[path.to_owned()]).unwrap();
    imported
        .tensors
        .into_iter()
        .map(|t| {
            let info = TensorInfo {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                offset: 0,
                length: t.bytes.len() as u64,
            };
            let v = runtime::to_value(&info, &t.bytes).unwrap();
            (t.name, (info, v))
        })
        .collect()
}

/// The largest absolute difference between two values of the same dtype and shape.
fn max_diff(name: &str, got: &Value, want: &Value) -> f64 {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    match (got, want) {
        (Value::F32(g), Value::F32(w)) => (g.data.iter().zip(&w.data))
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .fold(0.0, f64::max),
        (Value::I64(g), Value::I64(w)) => {
            assert_eq!(g.data, w.data, "{name}");
            0.0
        }
        _ => panic!("{name}: dtype {:?} != {:?}", got.elem(), want.elem()),
    }
}

#[test]
fn every_op_case_matches_numpy() {
    let dir = fixture("ops");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 150, "{}", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let tol = case["tolerance"].as_f64().unwrap();
        let graph = Graph::from_json(&case["arch"].to_string()).unwrap();
        let all = arrays(&dir.join(format!("{name}.npz")));
        let pick = |prefix: &str| -> BTreeMap<String, (TensorInfo, Value)> {
            (all.iter())
                .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
                .collect()
        };
        let (weights, inputs, outputs) = (pick("weight."), pick("input."), pick("output."));
        let infos: Vec<TensorInfo> = (weights.iter())
            .map(|(n, (i, _))| TensorInfo {
                name: n.clone(),
                ..i.clone()
            })
            .collect();
        let plan = match graph.validate(&infos) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{name}: validation: {e}"));
                continue;
            }
        };
        let model = Model::new(plan, |i| Ok(weights[&i.name].1.clone()), u64::MAX).unwrap();
        let given = (inputs.into_iter()).map(|(n, (_, v))| (n, v)).collect();
        let got = match model.run(given) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{name}: run: {e}"));
                continue;
            }
        };
        assert_eq!(got.len(), outputs.len(), "{name}");
        for (out_name, v) in &got {
            let d = max_diff(name, v, &outputs[out_name].1);
            if d > tol {
                failures.push(format!(
                    "{name}: output {out_name:?} differs by {d:e} (tolerance {tol:e})"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The CNN of tests/fixtures/onnx_cnn (opset 17, random weights; expected.npy from
/// onnxruntime) packed with its hand-converted architecture, verified, loaded and run.
#[test]
fn onnx_cnn_reproduces_onnxruntime_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let key = test_key("test-a.key");
    let art = dir.path().join("cnn.nns");
    let run = nnsign([
        "pack".as_ref(),
        fixture("onnx_cnn/weights.safetensors").as_os_str(),
        "--arch".as_ref(),
        fixture("onnx_cnn/arch.json").as_os_str(),
        "--sign".as_ref(),
        key.as_os_str(),
        "-o".as_ref(),
        art.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let out = dir.path().join("y.npy");
    let run = nnsign([
        "verify-load".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "--input".as_ref(),
        fixture("onnx_cnn/inputs.npy").as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let (shape, got) = read_npy_f32(&out);
    let (want_shape, want) = read_npy_f32(&fixture("onnx_cnn/expected.npy"));
    assert_eq!(shape, want_shape);
    let max = (got.iter().zip(&want)).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(max <= 1e-5, "max abs difference {max}");
}
