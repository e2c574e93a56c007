//! `nnsign scan`: files that would run code when their framework loads them are reported, by
//! what they would run, with exit code 8; clean ones exit 0.

mod common;

use std::path::Path;

use common::*;

const EVIL_PICKLE: &[u8] =
    b"\x80\x02cposix\nsystem\nq\x00X\n\x00\x00\x00echo ownedq\x01\x85q\x02Rq\x03.";

fn scan(files: &[&Path]) -> Run {
    let mut args: Vec<String> = vec!["scan".into(), "--json".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    nnsign(&args)
}

#[test]
fn clean_files_pass() {
    let clean = [
        fixture("torch_real/test.pt"),
        fixture("torch_real/fortran_tensor_3d.pth"),
        fixture("keras_seed_mlp/model.keras"),
        fixture("keras_seed_mlp/model.onnx"),
        fixture("onnx_misc/external.onnx"),
        fixture("safetensors_dtypes/weights.safetensors"),
        fixture("two.npz"),
        fixture("torch_pickle/state_dict.pkl"),
        fixture("torch_legacy/legacy.pt"),
    ];
    let refs: Vec<&Path> = clean.iter().map(|p| p.as_path()).collect();
    let run = scan(&refs);
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert_eq!(j["ok"], true);
    let formats: Vec<&str> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["format"].as_str().unwrap())
        .collect();
    assert_eq!(
        formats,
        vec![
            "pytorch",
            "pytorch",
            "keras",
            "onnx",
            "onnx",
            "safetensors",
            "npz",
            "pickle",
            "pickle"
        ]
    );
    // A raw pickle of tensors: the globals that load its storages' torch.save streams are
    // notes, and the streams were read.
    let raw = j["files"][7]["findings"].to_string();
    for what in [
        "names torch.storage._load_from_bytes (a raw pickle of tensors needs it",
        "names _codecs.encode (a raw pickle of tensors needs it",
        "holds 6 storages pickled on their own, as torch.save streams, each read too",
    ] {
        assert!(raw.contains(what), "{what}: {raw}");
    }
}

#[test]
fn code_inside_a_storage_stream_is_named() {
    // scripts/make_hostile_fixtures.py: a raw pickle of tensors whose storage's torch.save
    // stream calls os.system, one whose stream loads a second stream (which nnsign does not
    // read, so it is a danger in itself), and one whose stream is bytes made by a codec other
    // than the one pickle writes.
    let files = [
        fixture("hostile/storage_stream_payload.pkl"),
        fixture("hostile/storage_stream_nested_twice.pkl"),
        fixture("hostile/storage_bytes_iso8859.pkl"),
    ];
    let run = scan(&files.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    assert_eq!(run.code, 8, "{run:?}");
    let j = run.json();
    for (i, what) in [
        "the torch.save stream of storage 0 in the pickle names posix.system: loading it with pickle would import and call it",
        "the torch.save stream of storage 0 in the pickle names torch.storage._load_from_bytes: loading it with pickle would import and call it",
        "the pickle cannot be read to its end (torch.storage._load_from_bytes: its argument is not bytes",
    ]
    .into_iter()
    .enumerate()
    {
        let file = &j["files"][i];
        let found = (file["findings"].as_array().unwrap().iter())
            .any(|f| f["danger"] == true && f["what"].as_str().unwrap().contains(what));
        assert!(found && file["dangerous"] == true, "{what}: {file}");
    }
}

#[test]
fn a_storage_key_used_with_two_dtypes_or_sizes_fails_the_scan_with_exit_1() {
    // Values that depend on the reader, not code: `pack` refuses these files (exit 1), and so
    // does `scan`, after reporting every file, in a checkpoint, a legacy torch.save file and a
    // raw pickle's storage stream alike. A danger in any file outranks it (exit 8).
    let files = [
        fixture("hostile/tensor_storage_two_dtypes.pt"),
        fixture("hostile/tensor_storage_two_sizes.pt"),
        fixture("hostile/legacy_storage_two_dtypes.pt"),
        fixture("hostile/storage_stream_two_dtypes.pkl"),
    ];
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let run = scan(&paths);
    assert_eq!(run.code, 1, "{run:?}");
    let j = run.json();
    assert_eq!(j["ok"], false, "{j}");
    for (i, what) in [
        "test/data.pkl: storage \"0\" is used as FloatStorage and as DoubleStorage; torch.load would read it as one type, so its values are ambiguous (nnsign pack refuses it)",
        "test/data.pkl: storage \"0\" is used with 8 elements and with 4; torch.load would read it at one size, so its values are ambiguous (nnsign pack refuses it)",
        "the pickle: storage \"140001\" is used as FloatStorage and as IntStorage",
        "the torch.save stream of storage 0 in the pickle: storage \"0\" is used as FloatStorage and as LongStorage",
    ]
    .into_iter()
    .enumerate()
    {
        let file = &j["files"][i];
        let found = (file["findings"].as_array().unwrap().iter())
            .filter(|f| {
                f["danger"] == false
                    && f["refused"] == true
                    && f["what"].as_str().unwrap().contains(what)
            })
            .count();
        assert!(found == 1 && file["dangerous"] == false, "{what}: {file}");
    }
    // Without --json: every file reported on stdout, then one error line naming the first.
    let mut args = vec!["scan".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let text = nnsign(&args);
    assert_eq!(text.code, 1, "{text:?}");
    assert_eq!(text.stdout.matches("  refuse ").count(), 4, "{text:?}");
    let first = text.stderr.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("nnsign: error: {}: ", files[0].display()))
            && first.contains("storage \"0\" is used as FloatStorage and as DoubleStorage"),
        "{text:?}"
    );
    // A payload in another file is what matters most.
    let payload = fixture("hostile/legacy_payload_in_object.pt");
    let both = scan(&[paths[0], payload.as_path()]);
    assert_eq!(both.code, 8, "{both:?}");
}

#[test]
fn code_a_file_would_run_is_named_with_exit_8() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint whose data.pkl calls os.system.
    let pt = dir.path().join("evil.pt");
    rezip(&fixture("torch_real/test.pt"), &pt, |n, b| {
        if n.ends_with("data.pkl") {
            EVIL_PICKLE.to_vec()
        } else {
            b
        }
    });
    // The same as a bare pickle, and inside an object .npy.
    let pkl = dir.path().join("evil.pkl");
    std::fs::write(&pkl, EVIL_PICKLE).unwrap();
    let npy = dir.path().join("obj.npy");
    let mut header =
        b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }".to_vec();
    header.resize(127, b' ');
    header.push(b'\n');
    header.extend_from_slice(EVIL_PICKLE);
    std::fs::write(&npy, header).unwrap();
    // A Keras model with a Lambda layer, and one with a class from outside Keras.
    let lambda = dir.path().join("lambda.keras");
    rezip(&fixture("keras_seed_mlp/model.keras"), &lambda, |n, b| {
        if n != "config.json" {
            return b;
        }
        let mut c: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let layers = c["config"]["layers"].as_array_mut().unwrap();
        layers.push(serde_json::json!({"module": "keras.layers", "class_name": "Lambda",
            "config": {"name": "sneaky", "function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA"}}}}));
        layers.push(
            serde_json::json!({"module": "my_company.layers", "class_name": "Swish",
            "registered_name": "Custom>Swish", "config": {"name": "swish"}}),
        );
        serde_json::to_vec(&c).unwrap()
    });
    let escape = fixture("onnx_misc/escape.onnx");
    let run = scan(&[
        &pt,
        &pkl,
        &npy,
        &lambda,
        &escape,
        &fixture("torch_real/test.pt"),
    ]);
    assert_eq!(run.code, 8, "{run:?}");
    let j = run.json();
    assert_eq!(j["ok"], false);
    let files = j["files"].as_array().unwrap();
    let says = |i: usize, what: &str| {
        let found = files[i]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["danger"] == true && f["what"].as_str().unwrap().contains(what));
        assert!(found, "{what}: {}", files[i]);
        assert_eq!(files[i]["dangerous"], true);
    };
    says(
        0,
        "test/data.pkl names posix.system: loading it with pickle would import and call it",
    );
    says(1, "the pickle names posix.system");
    says(2, "has dtype object");
    says(2, "names posix.system");
    says(3, "layer \"sneaky\" is a Lambda");
    says(3, "Swish \"swish\" comes from module \"my_company.layers\"");
    says(4, "reads \"../escape.bin\", outside the model's folder");
    assert_eq!(files[5]["dangerous"], false);
    // Text mode: a line per file, a summary on stderr.
    let run = nnsign(["scan".as_ref(), pkl.as_os_str()]);
    assert_eq!(run.code, 8);
    assert!(
        run.stdout.contains("evil.pkl: DANGEROUS (pickle)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("1 of 1 files would execute or reference code"),
        "{}",
        run.stderr
    );
    // Not a model at all: a bad input, exit 1.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"hello").unwrap();
    assert_eq!(nnsign(["scan".as_ref(), junk.as_os_str()]).code, 1);
}
