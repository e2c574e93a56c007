//! The ONNX importer: real models from onnx and Keras packed, verified and run against their
//! frameworks' outputs; ONNX's tensor-valued shape inputs folded; unsupported ops refused by
//! name (or packed weights-only); external data read only from inside the model's folder.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn pack(dir: &Path, model: &Path, extra: &[&str]) -> (Run, PathBuf) {
    let out = dir.join("m.nns");
    let mut args: Vec<String> = vec![
        "pack".into(),
        model.display().to_string(),
        "--sign".into(),
        test_key("test-a.key").display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    (nnsign(&args), out)
}

fn run_model(art: &Path, input: &Path, out: &Path) -> Run {
    nnsign([
        "verify-load".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ])
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn onnx_models_pack_straight_and_reproduce_their_frameworks() {
    let dir = tempfile::tempdir().unwrap();
    // The CNN: onnxruntime's outputs.
    let (packed, art) = pack(dir.path(), &fixture("onnx_cnn/model.onnx"), &[]);
    assert_eq!(packed.code, 0, "{packed:?}");
    let out = dir.path().join("y.npy");
    let r = run_model(&art, &fixture("onnx_cnn/inputs.npy"), &out);
    assert_eq!(r.code, 0, "{r:?}");
    let (_, got) = read_npy_f32(&out);
    let (_, want) = read_npy_f32(&fixture("onnx_cnn/expected.npy"));
    assert!(max_diff(&got, &want) <= 1e-5);
    // The Keras MLP exported to ONNX: Keras's outputs, and 30 of 32 digits right.
    let (packed, art) = pack(
        dir.path(),
        &fixture("keras_seed_mlp/model.onnx"),
        &["--json"],
    );
    assert_eq!(packed.code, 0, "{packed:?}");
    assert_eq!(packed.json()["tensors"], 4);
    let r = run_model(&art, &fixture("keras_seed_mlp/inputs.npy"), &out);
    assert_eq!(r.code, 0, "{r:?}");
    let (shape, got) = read_npy_f32(&out);
    let (_, want) = read_npy_f32(&fixture("keras_seed_mlp/expected.npy"));
    assert_eq!(shape, vec![32, 10]);
    assert!(max_diff(&got, &want) <= 1e-5);
    let labels = std::fs::read(fixture("keras_seed_mlp/labels.npy")).unwrap();
    let labels: Vec<i64> = npyz::NpyFile::new(&labels[..]).unwrap().into_vec().unwrap();
    let right = (got.chunks(10).zip(&labels))
        .filter(|(row, &l)| {
            let best = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            best as i64 == l
        })
        .count();
    assert_eq!(right, 30);
    // The producer is recorded, readable with inspect.
    let i = nnsign(["inspect".as_ref(), art.as_os_str()]);
    assert!(
        i.stdout.contains("label       onnx.producer="),
        "{}",
        i.stdout
    );
}

#[test]
fn tensor_shape_inputs_are_folded_and_unused_extra_outputs_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (packed, art) = pack(dir.path(), &fixture("onnx_misc/shape_inputs.onnx"), &[]);
    assert_eq!(packed.code, 0, "{packed:?}");
    let out = dir.path().join("y.npy");
    let r = run_model(&art, &fixture("onnx_misc/shape_inputs_x.npy"), &out);
    assert_eq!(r.code, 0, "{r:?}");
    let (shape, got) = read_npy_f32(&out);
    let (want_shape, want) = read_npy_f32(&fixture("onnx_misc/shape_inputs_expected.npy"));
    assert_eq!(shape, want_shape);
    assert_eq!(got, want);
}

#[test]
fn unsupported_ops_are_named_and_weights_only_packs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("onnx_misc/unsupported.onnx");
    let (packed, art) = pack(dir.path(), &model, &[]);
    assert_eq!(packed.code, 1, "{packed:?}");
    assert!(
        packed
            .stderr
            .contains("the graph uses ops nnsign does not run: Round, Tan; give --weights-only"),
        "{}",
        packed.stderr
    );
    assert!(!art.exists());
    let (packed, art) = pack(dir.path(), &model, &["--weights-only", "--json"]);
    assert_eq!(packed.code, 0, "{packed:?}");
    assert_eq!(packed.json()["tensors"], 1);
    let unpacked = dir.path().join("w.safetensors");
    let u = nnsign([
        "unpack".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "-o".as_ref(),
        unpacked.as_os_str(),
    ]);
    assert_eq!(u.code, 0, "{u:?}");
    let bytes = std::fs::read(&unpacked).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let w: Vec<f32> = (st.tensor("w").unwrap().data().chunks(4))
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(w, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    // An --arch beside a model with its own graph is ambiguous.
    let (both, _) = pack(
        dir.path(),
        &fixture("onnx_cnn/model.onnx"),
        &[
            "--arch",
            &fixture("onnx_cnn/arch.json").display().to_string(),
        ],
    );
    assert_eq!(both.code, 2, "{both:?}");
}

#[test]
fn external_data_is_read_only_from_inside_the_model_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (packed, art) = pack(dir.path(), &fixture("onnx_misc/external.onnx"), &[]);
    assert_eq!(packed.code, 0, "{packed:?}");
    // y = x @ w + b with x = I: the rows of w, plus b.
    let x = dir.path().join("x.npy");
    let eye: Vec<f32> = (0..16)
        .map(|i| if i % 5 == 0 { 1.0 } else { 0.0 })
        .collect();
    write_npy_f32(&x, &[4, 4], &eye);
    let out = dir.path().join("y.npy");
    assert_eq!(run_model(&art, &x, &out).code, 0);
    let (_, got) = read_npy_f32(&out);
    let want: Vec<f32> = (0..12)
        .map(|i| i as f32 + [1.0, -1.0, 0.5][i % 3])
        .collect();
    assert_eq!(got, want);
    // A location outside the folder is refused before anything is read.
    std::fs::write(dir.path().join("escape.bin"), vec![0u8; 64]).unwrap();
    let (packed, _) = pack(dir.path(), &fixture("onnx_misc/escape.onnx"), &[]);
    assert_eq!(packed.code, 1, "{packed:?}");
    assert!(
        packed
            .stderr
            .contains("location \"../escape.bin\" leaves the model's folder"),
        "{}",
        packed.stderr
    );
    // So is a symbolic link inside it.
    let model_dir = dir.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    std::fs::copy(fixture("onnx_misc/external.onnx"), model_dir.join("m.onnx")).unwrap();
    std::os::unix::fs::symlink(
        fixture("onnx_misc/external.bin"),
        model_dir.join("external.bin"),
    )
    .unwrap();
    let (packed, _) = pack(dir.path(), &model_dir.join("m.onnx"), &[]);
    assert_eq!(packed.code, 1, "{packed:?}");
    assert!(
        packed
            .stderr
            .contains("is a symbolic link, which is not followed"),
        "{}",
        packed.stderr
    );
    // And bytes past the end of the file.
    std::fs::remove_file(model_dir.join("external.bin")).unwrap();
    std::fs::write(model_dir.join("external.bin"), vec![0u8; 40]).unwrap();
    let (packed, _) = pack(dir.path(), &model_dir.join("m.onnx"), &[]);
    assert_eq!(packed.code, 1, "{packed:?}");
    assert!(
        packed.stderr.contains("run past the end of"),
        "{}",
        packed.stderr
    );
}

#[test]
fn damaged_onnx_files_are_refused_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("onnx_cnn/model.onnx")).unwrap();
    let path = dir.path().join("bad.onnx");
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Found by cargo-fuzz (fuzz/fuzz_targets/import_onnx.rs): a node with no output.
    let crash = fixture("onnx_misc/fuzz_node_without_output.onnx");
    let err = nnsign::import::import(std::slice::from_ref(&crash))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("node \"MaxPool_3\" (MaxPool): has no output"),
        "{err}"
    );
    for _ in 0..300 {
        let mut bad = good.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % bad.len() as u64) as usize;
            bad[i] = next() as u8;
        }
        if next() % 4 == 0 {
            bad.truncate((next() % bad.len() as u64) as usize);
        }
        bad[0] = 0x08;
        std::fs::write(&path, &bad).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            nnsign::import::import(std::slice::from_ref(&path)).map(|m| {
                if let Some(arch) = &m.arch {
                    let infos: Vec<nnsign::format::TensorInfo> =
                        m.tensors.iter().map(|t| t.info()).collect();
                    let _ = arch.validate(&infos);
                }
            })
        });
        assert!(
            outcome.is_ok(),
            "a damaged ONNX file panicked the importer: {bad:02x?}"
        );
    }
}

/// `unpack --format onnx` writes a graph our own importer (and onnxruntime: see
/// scripts/check_onnx_export.py, run by .ci/run) takes back; `--format npz` the tensors.
#[test]
fn unpack_writes_onnx_and_npz_that_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let trust = test_key("test-a.pub").display().to_string();
    let unpack = |art: &Path, format: &str, out: &Path| {
        nnsign([
            "unpack",
            &art.display().to_string(),
            "--trust",
            &trust,
            "--format",
            format,
            "-o",
            &out.display().to_string(),
        ])
    };
    // The Keras MLP from its hand-written Dense architecture: out as ONNX (MatMul, Add,
    // activations), back in, and it still reproduces Keras.
    let art = dir.path().join("mlp.nns");
    let run = nnsign([
        "pack".as_ref(),
        fixture("keras_seed_mlp/weights.safetensors").as_os_str(),
        "--arch".as_ref(),
        fixture("keras_seed_mlp/arch.json").as_os_str(),
        "--sign".as_ref(),
        test_key("test-a.key").as_os_str(),
        "-o".as_ref(),
        art.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let onnx = dir.path().join("mlp.onnx");
    assert_eq!(unpack(&art, "onnx", &onnx).code, 0);
    let again = dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let (packed, art2) = pack(&again, &onnx, &[]);
    assert_eq!(packed.code, 0, "{packed:?}");
    let out = dir.path().join("y.npy");
    assert_eq!(
        run_model(&art2, &fixture("keras_seed_mlp/inputs.npy"), &out).code,
        0
    );
    let (_, got) = read_npy_f32(&out);
    let (_, want) = read_npy_f32(&fixture("keras_seed_mlp/expected.npy"));
    assert!(max_diff(&got, &want) <= 1e-5);
    // npz: every tensor bit-identical to the safetensors it came from.
    let npz = dir.path().join("w.npz");
    assert_eq!(unpack(&art, "npz", &npz).code, 0);
    let a = nnsign::import::import(&[npz]).unwrap();
    let b = nnsign::import::import(&[fixture("keras_seed_mlp/weights.safetensors")]).unwrap();
    assert_eq!(a.tensors.len(), b.tensors.len());
    for t in &b.tensors {
        let u = a.tensors.iter().find(|x| x.name == t.name).unwrap();
        assert_eq!(
            (u.dtype, &u.shape, &u.bytes[..]),
            (t.dtype, &t.shape, &t.bytes[..]),
            "{}",
            t.name
        );
    }
    // A weights-only artifact has no graph to write.
    let (packed, w_only) = pack(
        dir.path(),
        &fixture("onnx_misc/unsupported.onnx"),
        &["--weights-only"],
    );
    assert_eq!(packed.code, 0);
    let run = unpack(&w_only, "onnx", &dir.path().join("x.onnx"));
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.contains("no graph to write as ONNX"),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("x.onnx").exists());
}
