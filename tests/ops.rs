//! Every op against references computed independently with NumPy (tests/fixtures/ops, made by
//! scripts/make_op_fixtures.py and cross-checked against onnxruntime by
//! scripts/check_op_fixtures.py), and the real-framework CNN end to end.

mod common;

use common::*;
use nnsign::format::TensorInfo;
use nnsign::model::Graph;
use nnsign::runtime::{Model, Value};

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
        let (weights, inputs, outputs) = (
            with_prefix(&all, "weight."),
            with_prefix(&all, "input."),
            with_prefix(&all, "output."),
        );
        let infos: Vec<TensorInfo> = weights.values().map(|(i, _)| i.clone()).collect();
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
    // The same through .npz: inputs by name, outputs by name.
    let x = arrays(&fixture("onnx_cnn/inputs.npy"))
        .remove("inputs")
        .unwrap()
        .1;
    let npz_in = dir.path().join("x.npz");
    nnsign::export::write_npz(&npz_in, &[("x".into(), x)]).unwrap();
    let npz_out = dir.path().join("y.npz");
    let run = nnsign([
        "verify-load".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "--input".as_ref(),
        npz_in.as_os_str(),
        "--output".as_ref(),
        npz_out.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let y = arrays(&npz_out).remove("y").expect("the output named y").1;
    let want = arrays(&fixture("onnx_cnn/expected.npy"))
        .remove("expected")
        .unwrap()
        .1;
    assert!(max_diff("y.npz", &y, &want) <= 1e-5);
    // A misnamed input is refused by name.
    let x = arrays(&fixture("onnx_cnn/inputs.npy"))
        .remove("inputs")
        .unwrap()
        .1;
    nnsign::export::write_npz(&npz_in, &[("pixels".into(), x.clone()), ("x".into(), x)]).unwrap();
    let run = nnsign([
        "verify-load".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "--input".as_ref(),
        npz_in.as_os_str(),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("the model has no input named \"pixels\""),
        "{}",
        run.stderr
    );
}

/// The onnx_cnn artifact with its architecture replaced by `edit` of it and re-signed by
/// test-a: what a build job with a bug (or a signer who skipped `pack`'s own checks) makes.
fn cnn_with_arch(
    dir: &std::path::Path,
    name: &str,
    edit: impl Fn(&mut serde_json::Value),
) -> std::path::PathBuf {
    let art = dir.join("good.nns");
    if !art.exists() {
        let run = nnsign([
            "pack".as_ref(),
            fixture("onnx_cnn/weights.safetensors").as_os_str(),
            "--arch".as_ref(),
            fixture("onnx_cnn/arch.json").as_os_str(),
            "--sign".as_ref(),
            test_key("test-a.key").as_os_str(),
            "-o".as_ref(),
            art.as_os_str(),
        ]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let (manifest, _, payload) = parts(&std::fs::read(&art).unwrap());
    let mut m = nnsign::format::Manifest::decode(&manifest).unwrap();
    let mut arch: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("onnx_cnn/arch.json")).unwrap())
            .unwrap();
    edit(&mut arch);
    m.arch = Some(Graph::from_json(&arch.to_string()).unwrap().encode());
    let key = nnsign::keys::SecretKey::read(&test_key("test-a.key"), || Ok(None)).unwrap();
    let out = dir.join(format!("{name}.nns"));
    std::fs::write(&out, resigned(&m.encode(), &payload, &key)).unwrap();
    out
}

fn node<'a>(arch: &'a mut serde_json::Value, name: &str) -> &'a mut serde_json::Value {
    let nodes = arch["nodes"].as_array_mut().unwrap();
    nodes.iter_mut().find(|n| n["name"] == name).unwrap()
}

#[test]
fn a_bad_architecture_fails_verify_load_with_the_schema_code_naming_the_node() {
    let dir = tempfile::tempdir().unwrap();
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 6] = [
        ("cycle", |a| node(a, "Relu_2")["inputs"][0] = "a4".into(),
         "the graph has a cycle: \"Relu_2\" -> \"MaxPool_3\" -> \"Relu_2\""),
        ("dangling", |a| node(a, "Relu_5")["inputs"][0] = "a55".into(),
         "node \"Relu_5\" (Relu): input \"a55\" is not defined"),
        ("gemm", |a| node(a, "Gemm_8")["attrs"]["transB"] = 0.into(),
         "node \"Gemm_8\" (Gemm): A [batch, 16] and B [10, 16] do not multiply: 16 != 10"),
        ("conv_channels", |a| node(a, "Conv_4")["inputs"][0] = "x".into(),
         "node \"Conv_4\" (Conv): input X [batch, 1, 28, 28] has 1 channels, 1 per group, but W [16, 8, 3, 3] expects 8"),
        ("reshape", |a| {
            let n = node(a, "Flatten_7");
            n["op"] = "Reshape".into();
            n["attrs"] = serde_json::json!({"shape": [0, 15]});
        }, "node \"Flatten_7\" (Reshape): cannot reshape [batch, 16, 1, 1] to [batch, 15]: the element count changes"),
        ("unknown_op", |a| node(a, "Relu_5")["op"] = "Swish".into(),
         "node \"Relu_5\" (Swish): unknown op \"Swish\" (op-set 2 has: Add, Sub"),
    ];
    for (name, edit, message) in cases {
        let art = cnn_with_arch(dir.path(), name, edit);
        // The signature and digests are fine: verify accepts it; loading does not.
        let run = nnsign([
            "verify".as_ref(),
            art.as_os_str(),
            "--trust".as_ref(),
            test_key("test-a.pub").as_os_str(),
        ]);
        assert_eq!(run.code, 0, "{name}: {run:?}");
        let run = nnsign([
            "verify-load".as_ref(),
            art.as_os_str(),
            "--trust".as_ref(),
            test_key("test-a.pub").as_os_str(),
            "--input".as_ref(),
            fixture("onnx_cnn/inputs.npy").as_os_str(),
        ]);
        assert_eq!(run.code, 6, "{name}: {run:?}");
        assert!(run.stderr.contains(message), "{name}: {}", run.stderr);
    }
    // Over the memory limit: refused at load, before any weight is widened, naming the node
    // where the most memory is needed; and at run time for a batch too large.
    let art = cnn_with_arch(dir.path(), "same", |_| {});
    // Two threads, whatever the machine: each keeps its own convolution buffers, which count.
    let trust = test_key("test-a.pub");
    let load = |limit: &str, input: &std::path::Path| {
        let args = [
            "verify-load".as_ref(),
            art.as_os_str(),
            "--trust".as_ref(),
            trust.as_os_str(),
            "--max-memory".as_ref(),
            limit.as_ref(),
            "--input".as_ref(),
            input.as_os_str(),
        ];
        nnsign_env(args, &[("RAYON_NUM_THREADS", "2")])
    };
    let run = load("20000", &fixture("onnx_cnn/inputs.npy"));
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.contains("more than the limit of 20000")
            && run.stderr.contains(
                "after node \"Conv_0+BatchNormalization_1+Relu_2+MaxPool_3\" (Conv+BatchNormalization+Relu+MaxPool)"
            )
            && run.stderr.contains("--max-memory"),
        "{}",
        run.stderr
    );
    // Working memory counts too: a stride that leaves a 3x3 output of a padded 200,014-pixel
    // square would need terabytes to stage its input. Refused at load, not an abort.
    let wide = cnn_with_arch(dir.path(), "wide", |a| {
        let attrs = &mut node(a, "Conv_4")["attrs"];
        attrs["pads"] = serde_json::json!([100000, 100000, 100000, 100000]);
        attrs["strides"] = serde_json::json!([100000, 100000]);
    });
    let run = nnsign([
        "verify-load".as_ref(),
        wide.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "--input".as_ref(),
        fixture("onnx_cnn/inputs.npy").as_os_str(),
    ]);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("loading needs up to"), "{}", run.stderr);
    // Batch 1 fits in 120 kB (79,560 bytes: 58,336 of them the two threads' buffers); the 8
    // images of the fixture do not (139,400).
    let one = dir.path().join("one.npy");
    let bytes = std::fs::read(fixture("onnx_cnn/inputs.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let data: Vec<f32> = npy.into_vec().unwrap();
    let mut out = std::fs::File::create(&one).unwrap();
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[1, 1, 28, 28])
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    w.extend(data[..784].iter().copied()).unwrap();
    w.finish().unwrap();
    assert_eq!(load("120000", &one).code, 0);
    let run = load("120000", &fixture("onnx_cnn/inputs.npy"));
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.contains("for this input") && run.stderr.contains("smaller batch"),
        "{}",
        run.stderr
    );
}

/// Slicing the batch over the cores changes nothing: the CNN on 8 images gives the same
/// result on one core (no slices) as on several (slices of the batch, each on its own core).
#[test]
fn batch_slices_give_the_same_result_as_one_pass() {
    let weights = arrays(&fixture("onnx_cnn/weights.safetensors"));
    let infos: Vec<TensorInfo> = weights.values().map(|(i, _)| i.clone()).collect();
    let graph =
        Graph::from_json(&std::fs::read_to_string(fixture("onnx_cnn/arch.json")).unwrap()).unwrap();
    let plan = graph.validate(&infos).unwrap();
    assert!(plan.batching.is_some());
    let model = Model::new(plan, |i| Ok(weights[&i.name].1.clone()), u64::MAX).unwrap();
    let x = arrays(&fixture("onnx_cnn/inputs.npy"))
        .remove("inputs")
        .unwrap()
        .1;
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| model.run(vec![("x".into(), x.clone())]).unwrap())
    };
    let (one, four) = (run(1), run(4));
    assert_eq!(one, four);
    let want = arrays(&fixture("onnx_cnn/expected.npy"))
        .remove("expected")
        .unwrap()
        .1;
    assert!(max_diff("y", &one[0].1, &want) <= 1e-5);
}
