//! Keras 3 `.keras` files: the seed MLP imports from its config and HDF5 weights and reproduces
//! Keras; Lambda layers, classes from outside Keras, layers the importer does not map and
//! unexpected records are refused by name.

mod common;

use std::path::Path;

use common::*;

/// Runs the artifact on `input` (a fixture); returns the output's shape and values.
fn run_model(dir: &Path, art: &Path, input: &str) -> (Vec<u64>, Vec<f32>) {
    let out = dir.join("y.npy");
    let run = nnsign([
        "verify-load".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "--input".as_ref(),
        fixture(input).as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    read_npy_f32(&out)
}

#[test]
fn the_seed_model_imports_and_reproduces_keras() {
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("k.nns");
    let run = pack_signed(&fixture("keras_seed_mlp/model.keras"), &art);
    assert_eq!(run.code, 0, "{run:?}");
    let (_, got) = run_model(dir.path(), &art, "keras_seed_mlp/inputs.npy");
    let (_, want) = read_npy_f32(&fixture("keras_seed_mlp/expected.npy"));
    let max = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(max <= 1e-5, "{max}");
    let labels = std::fs::read(fixture("keras_seed_mlp/labels.npy")).unwrap();
    let labels: Vec<i64> = npyz::NpyFile::new(&labels[..]).unwrap().into_vec().unwrap();
    let right = (got.chunks(10).zip(&labels))
        .filter(|(row, &l)| (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as i64 == l)
        .count();
    assert_eq!(right, 30);
    // The weights read from the HDF5 file are the bytes Keras exported to safetensors.
    let k = nnsign::import::import(&[fixture("keras_seed_mlp/model.keras")]).unwrap();
    let s = nnsign::import::import(&[fixture("keras_seed_mlp/weights.safetensors")]).unwrap();
    for t in &s.tensors {
        let u = k
            .tensors
            .iter()
            .find(|x| x.name == t.name)
            .unwrap_or_else(|| panic!("{}", t.name));
        assert_eq!(
            (&u.shape, &u.bytes[..]),
            (&t.shape, &t.bytes[..]),
            "{}",
            t.name
        );
    }
    assert_eq!(k.labels["keras.version"], "3.15.1");
}

/// A channels-last CNN (scripts/make_keras_cnn_fixture.py, made with Keras 3 itself): Conv2D
/// with "same" padding at strides 1 and 2 and with "valid" padding, max pooling, batch
/// normalization, global average pooling, weights found under Keras's own HDF5 names (conv2d,
/// conv2d_1, ...).
#[test]
fn a_channels_last_cnn_reproduces_keras() {
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("cnn.nns");
    let run = pack_signed(&fixture("keras_cnn/model.keras"), &art);
    assert_eq!(run.code, 0, "{run:?}");
    let (shape, got) = run_model(dir.path(), &art, "keras_cnn/inputs.npy");
    let (_, want) = read_npy_f32(&fixture("keras_cnn/expected.npy"));
    assert_eq!(shape, vec![5, 3]);
    let max = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(max <= 1e-5, "{max}");
}

#[test]
fn code_and_unmapped_layers_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let with_layer = |name: &str, layer: serde_json::Value| {
        let path = dir.path().join(name);
        rezip(&fixture("keras_seed_mlp/model.keras"), &path, |n, b| {
            if n != "config.json" {
                return b;
            }
            let mut c: serde_json::Value = serde_json::from_slice(&b).unwrap();
            c["config"]["layers"]
                .as_array_mut()
                .unwrap()
                .push(layer.clone());
            serde_json::to_vec(&c).unwrap()
        });
        path
    };
    let cases = [
        (
            serde_json::json!({"module": "keras.layers", "class_name": "Lambda",
                "config": {"name": "sneaky", "function": {"class_name": "__lambda__"}}}),
            "layer \"sneaky\" (Lambda): a Lambda layer runs arbitrary Python when Keras loads it",
        ),
        (
            serde_json::json!({"module": "my_company.layers", "class_name": "Swish", "config": {"name": "swish"}}),
            "Swish \"swish\" comes from module \"my_company.layers\"",
        ),
        (
            serde_json::json!({"module": "keras.layers", "class_name": "SimpleRNN", "config": {"name": "rnn"}}),
            "layer \"rnn\" (SimpleRNN): the Keras importer does not map SimpleRNN layers yet",
        ),
    ];
    for (k, (layer, message)) in cases.into_iter().enumerate() {
        let model = with_layer(&format!("m{k}.keras"), layer);
        let run = pack_signed(&model, &dir.path().join("x.nns"));
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains(message), "{}", run.stderr);
        assert!(!dir.path().join("x.nns").exists());
    }
    // A record Keras does not write.
    let path = dir.path().join("extra.keras");
    let src = fixture("keras_seed_mlp/model.keras");
    std::fs::copy(&src, &path).unwrap();
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new_append(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
        )
        .unwrap();
        z.start_file("run_me.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"import os").unwrap();
        z.finish().unwrap();
    }
    let run = pack_signed(&path, &dir.path().join("x.nns"));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("unexpected record \"run_me.py\""),
        "{}",
        run.stderr
    );
}
