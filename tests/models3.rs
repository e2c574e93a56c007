//! Real models exported by PyTorch and Keras (tests/fixtures/models3, made by
//! scripts/make_runtime_models.py): each through `pack` and `verify-load`, at two batch sizes,
//! against what onnxruntime and the framework itself computed, to 1e-5.

mod common;

use common::*;
use nnsign::runtime::Value;

/// Each model file and the data it is checked with (`<data>.npz` at batch 2, `<data>_b3.npz`
/// at batch 3).
const MODELS: &[(&str, &str)] = &[
    // torch.onnx.export, the classic exporter (op-set 17) and the dynamo one (op-set 20).
    ("unet.onnx", "unet"),
    ("unet.dynamo.onnx", "unet"),
    ("bilstm.onnx", "bilstm"),
    ("bilstm.dynamo.onnx", "bilstm"),
    ("transformer.onnx", "transformer"),
    ("transformer.dynamo.onnx", "transformer"),
    // Keras 3: its own file through nnsign's Keras importer, and its ONNX export.
    ("keras_unet.keras", "keras_unet"),
    ("keras_unet.onnx", "keras_unet"),
    ("keras_bilstm.keras", "keras_bilstm"),
    ("keras_bilstm.onnx", "keras_bilstm"),
    ("keras_transformer.keras", "keras_transformer"),
    ("keras_transformer.onnx", "keras_transformer"),
];

/// The one array of `all` named `prefix` + something.
fn only(
    all: &std::collections::BTreeMap<String, (nnsign::format::TensorInfo, Value)>,
    prefix: &str,
) -> Value {
    let mut found = with_prefix(all, prefix).into_values();
    let (_, v) = found.next().unwrap_or_else(|| panic!("no {prefix} array"));
    assert!(found.next().is_none(), "more than one {prefix} array");
    v
}

#[test]
fn real_models_match_onnxruntime_and_their_framework() {
    let dir = tempfile::tempdir().unwrap();
    for (file, data) in MODELS {
        let art = dir.path().join(format!("{file}.nns"));
        let packed = pack_signed(&fixture(&format!("models3/{file}")), &art);
        assert_eq!(packed.code, 0, "{file}: {packed:?}");
        for batch in ["", "_b3"] {
            let all = arrays(&fixture(&format!("models3/{data}{batch}.npz")));
            let (run, got) = verify_load_npz(dir.path(), &art, &all);
            assert_eq!(run.code, 0, "{file} on {data}{batch}: {run:?}");
            assert_eq!(got.len(), 1, "{file}: one output");
            let got = &got.values().next().unwrap().1;
            let ort = max_diff(got, &only(&all, "output."));
            let framework = max_diff(got, &only(&all, "framework."));
            eprintln!("{file} {data}{batch}: onnxruntime {ort:.2e}, framework {framework:.2e}");
            assert!(
                ort <= 1e-5 && framework <= 1e-5,
                "{file} on {data}{batch}: {ort} {framework}"
            );
        }
    }
}
