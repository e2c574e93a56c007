//! `nnsign diff`: two real revisions of the seed MLP (the second fine-tuned by Keras, see
//! scripts/make_revision_fixture.py), tensors added, removed and retyped, encrypted artifacts
//! whose content cannot be compared, and damaged artifacts refused by name.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// `diff` exit code when the artifacts differ or cannot be shown identical.
const DIFFERENT: i32 = 10;

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Packs `inputs` as `out`, signed by test key A, created at `epoch`, with `extra` flags.
fn pack(inputs: &[PathBuf], out: &Path, epoch: &str, extra: &[&str]) {
    let mut args: Vec<String> = vec!["pack".into()];
    args.extend(inputs.iter().map(|p| s(p)));
    args.extend([
        "--sign".into(),
        s(&test_key("test-a.key")),
        "-o".into(),
        s(out),
    ]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let run = nnsign_env(args, &[("SOURCE_DATE_EPOCH", epoch)]);
    assert_eq!(run.code, 0, "{run:?}");
}

fn diff(a: &Path, b: &Path, flags: &[&str]) -> Run {
    let mut args = vec!["diff".to_owned(), s(a), s(b)];
    args.extend(flags.iter().map(|f| f.to_string()));
    nnsign(args)
}

fn names(list: &Value) -> BTreeSet<String> {
    (list.as_array().unwrap().iter())
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The metadata changes of a diff's JSON as `path -> (old, new)`.
fn metadata(v: &Value) -> BTreeMap<String, (Value, Value)> {
    (v["metadata"].as_array().unwrap().iter())
        .map(|c| {
            let path: Vec<&str> = (c["path"].as_array().unwrap().iter())
                .map(|p| p.as_str().unwrap())
                .collect();
            (path.join("."), (c["old"].clone(), c["new"].clone()))
        })
        .collect()
}

/// Release 1.2.0 of the seed MLP and release 1.3.0, its output layer fine-tuned for one epoch.
fn revisions(dir: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (dir.join("v1.nns"), dir.join("v2.nns"));
    let model = |f: &str| vec![fixture(&format!("keras_seed_mlp/{f}"))];
    pack(
        &model("model.keras"),
        &a,
        "1700000000",
        &["--name", "digits", "--model-version", "1.2.0"],
    );
    pack(
        &model("model_v2.keras"),
        &b,
        "1700086400",
        &[
            "--name",
            "digits",
            "--model-version",
            "1.3.0",
            "--label",
            "stage=fine-tuned",
            "--parent",
            &s(&a),
            "--expires",
            "2030-01-01",
        ],
    );
    (a, b)
}

#[test]
fn two_revisions_of_a_keras_model_differ_as_numpy_says() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = revisions(dir.path());
    let facts: Value = serde_json::from_slice(
        &std::fs::read(fixture("keras_seed_mlp/revision_diff.json")).unwrap(),
    )
    .unwrap();
    let facts = facts["tensors"].as_object().unwrap();
    let changed: BTreeSet<String> = (facts.iter())
        .filter(|(_, f)| f["changed"].as_bool().unwrap())
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(
        changed.len(),
        2,
        "the fixture fine-tunes the output layer only"
    );

    // From the signed digests alone.
    let run = diff(&a, &b, &["--json"]);
    assert_eq!(run.code, DIFFERENT, "{run:?}");
    let v = run.json();
    assert_eq!(v["identical"], false);
    assert_eq!(v["ok"], false);
    assert_eq!(v["content"], "different");
    assert_eq!(v["payload_checked"], false);
    assert_eq!(v["architecture"]["status"], "unchanged");
    assert_eq!(names(&v["tensors"]["content_changed"]), changed);
    assert_eq!(v["tensors"]["unchanged"], facts.len() - changed.len());
    for list in ["added", "removed", "shape_or_dtype_changed"] {
        assert_eq!(v["tensors"][list], serde_json::json!([]), "{list}");
    }
    assert!(v["tensors"]["content_changed"][0]["values"].is_null());
    let meta = metadata(&v);
    assert_eq!(
        meta.keys().collect::<Vec<_>>(),
        ["created", "expires", "labels.stage", "parent", "version"]
    );
    // Fields ModelInfo gained after diff was written are compared all the same.
    let v1_digest = nnsign::verify::Artifact::open(&a).unwrap().digest();
    assert_eq!(
        meta["parent"],
        (
            Value::Null,
            serde_json::json!({"digest": nnsign::keys::hex(&v1_digest), "name": "digits", "version": "1.2.0"})
        )
    );
    assert_eq!(meta["expires"], (Value::Null, 1893456000.into()));
    assert_eq!(meta["version"], ("1.2.0".into(), "1.3.0".into()));
    assert_eq!(meta["created"], (1700000000.into(), 1700086400.into()));
    assert_eq!(meta["labels.stage"], (Value::Null, "fine-tuned".into()));
    assert_eq!(v["encryption"]["old"], Value::Null);

    // With the values, read through the digest-checking reader.
    let run = diff(&a, &b, &["--values", "--json"]);
    assert_eq!(run.code, DIFFERENT, "{run:?}");
    let v = run.json();
    assert_eq!(v["payload_checked"], true);
    let changed_list = v["tensors"]["content_changed"].as_array().unwrap();
    assert_eq!(changed_list.len(), changed.len());
    for c in changed_list {
        let name = c["name"].as_str().unwrap();
        let want = facts[name]["max_abs_diff"].as_f64().unwrap();
        let got = c["values"]["max_abs_diff"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-6,
            "{name}: {got} vs numpy's {want}"
        );
        assert!(want > 0.0);
        assert_eq!(c["shape"], facts[name]["shape"]);
        assert_eq!(c["values"]["nan_mismatches"], 0);
        let elements: u64 = (facts[name]["shape"].as_array().unwrap().iter())
            .map(|d| d.as_u64().unwrap())
            .product();
        assert_eq!(c["values"]["elements"], elements);
    }

    // The text form: one line per change, unchanged tensors counted.
    let run = diff(&a, &b, &["--values"]);
    assert_eq!(run.code, DIFFERENT, "{run:?}");
    let out = &run.stdout;
    assert!(
        out.contains("  ~ version: \"1.2.0\" -> \"1.3.0\"\n"),
        "{out}"
    );
    assert!(
        out.contains("  ~ created: 2023-11-14T22:13:20Z -> 2023-11-15T22:13:20Z\n"),
        "{out}"
    );
    assert!(out.contains("  + labels.stage: \"fine-tuned\"\n"), "{out}");
    assert!(out.contains("  + expires: 2030-01-01T00:00:00Z\n"), "{out}");
    assert!(out.contains("  + parent: {\"digest\":\""), "{out}");
    assert!(out.contains("architecture: unchanged (op-set 2,"), "{out}");
    assert!(
        out.contains("tensors: 2 changed in content, 2 unchanged\n"),
        "{out}"
    );
    assert!(
        out.contains("  ~ dense_1/kernel  F32 [32, 10]  max |b - a| "),
        "{out}"
    );
    assert!(
        !out.contains("dense/kernel"),
        "unchanged tensors are not listed: {out}"
    );
    assert!(out.ends_with("not identical\n"), "{out}");
    assert!(run.stderr.contains("differ"), "{run:?}");
}

#[test]
fn an_artifact_is_identical_to_itself_and_to_a_repack() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = revisions(dir.path());
    for flags in [&[][..], &["--values"][..]] {
        let run = diff(&a, &a, flags);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.ends_with("\nidentical\n"), "{run:?}");
        assert!(run.stderr.is_empty(), "{run:?}");
    }
    // Packed again at the same time, signed by another key: a different artifact file with
    // the same content and metadata. Signers do not count.
    let again = dir.path().join("again.nns");
    let run = nnsign_env(
        [
            "pack",
            &s(&fixture("keras_seed_mlp/model.keras")),
            "--sign",
            &s(&test_key("test-b.key")),
            "--name",
            "digits",
            "--model-version",
            "1.2.0",
            "-o",
            &s(&again),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = diff(&a, &again, &["--json", "--values"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    assert_eq!(v["identical"], true);
    assert_eq!(v["content"], "same");
    assert_eq!(v["tensors"]["unchanged"], 4);
    assert_ne!(v["old"]["signers"], v["new"]["signers"]);
}

/// A safetensors file of `(name, dtype, shape, bytes)`.
fn safetensors_file(path: &Path, tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = (tensors.iter())
        .map(|(n, d, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(*d, shape.clone(), bytes).unwrap();
            (n.to_string(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64s(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn tensors_added_removed_retyped_and_changed() {
    use safetensors::Dtype::{F32, F64, I64};
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("old.safetensors"),
        dir.path().join("new.safetensors"),
    );
    let w = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    safetensors_file(
        &old,
        &[
            ("w", F32, vec![2, 3], w.clone()),
            ("b", F32, vec![3], f32s(&[0.5, 0.5, 0.5])),
            ("scale", F32, vec![2], f32s(&[1.0, 1.0])),
            ("steps", I64, vec![2], i64s(&[5, -7])),
            ("dropped", F32, vec![1], f32s(&[9.0])),
            ("same", F32, vec![2], f32s(&[7.0, 8.0])),
        ],
    );
    safetensors_file(
        &new,
        &[
            ("w", F32, vec![3, 2], w),
            ("b", F32, vec![3], f32s(&[0.5, 0.25, 0.5])),
            ("scale", F64, vec![2], vec![0; 16]),
            ("steps", I64, vec![2], i64s(&[5, 1 << 40])),
            ("extra", F32, vec![4], f32s(&[0.0; 4])),
            ("same", F32, vec![2], f32s(&[7.0, 8.0])),
        ],
    );
    let (a, b) = (dir.path().join("a.nns"), dir.path().join("b.nns"));
    pack(&[old], &a, "1700000000", &["--name", "m"]);
    pack(&[new], &b, "1700000000", &["--name", "m"]);
    let run = diff(&a, &b, &["--json", "--values"]);
    assert_eq!(run.code, DIFFERENT, "{run:?}");
    let v = run.json();
    let t = &v["tensors"];
    assert_eq!(names(&t["added"]), BTreeSet::from(["extra".to_owned()]));
    assert_eq!(names(&t["removed"]), BTreeSet::from(["dropped".to_owned()]));
    assert_eq!(
        names(&t["shape_or_dtype_changed"]),
        BTreeSet::from(["scale".to_owned(), "w".to_owned()])
    );
    let retyped = t["shape_or_dtype_changed"].as_array().unwrap();
    let w = retyped.iter().find(|r| r["name"] == "w").unwrap();
    assert_eq!(
        (&w["old"]["shape"], &w["new"]["shape"]),
        (&serde_json::json!([2, 3]), &serde_json::json!([3, 2]))
    );
    let scale = retyped.iter().find(|r| r["name"] == "scale").unwrap();
    assert_eq!(
        (&scale["old"]["dtype"], &scale["new"]["dtype"]),
        (&"F32".into(), &"F64".into())
    );
    assert_eq!(
        names(&t["content_changed"]),
        BTreeSet::from(["b".to_owned(), "steps".to_owned()])
    );
    let changed = t["content_changed"].as_array().unwrap();
    let b_values = &changed.iter().find(|c| c["name"] == "b").unwrap()["values"];
    assert_eq!(b_values["max_abs_diff"], 0.25);
    assert_eq!(
        (&b_values["elements"], &b_values["elements_differ"]),
        (&3.into(), &1.into())
    );
    // Integers exactly: 2^40 - (-7).
    let steps = &changed.iter().find(|c| c["name"] == "steps").unwrap()["values"];
    assert_eq!(steps["max_abs_diff"], (1u64 << 40) + 7);
    assert_eq!(t["unchanged"], 1);
    assert!(metadata(&v).is_empty(), "{v}");
    assert_eq!(v["architecture"]["status"], "none");

    let run = diff(&a, &b, &[]);
    assert_eq!(run.code, DIFFERENT, "{run:?}");
    for line in [
        "tensors: 2 changed in content, 2 changed in shape or dtype, 1 added, 1 removed, 1 unchanged\n",
        "  ! w  F32 [2, 3] -> F32 [3, 2]\n",
        "  ! scale  F32 [2] -> F64 [2]\n",
        "  + extra  F32 [4]\n",
        "  - dropped  F32 [1]\n",
        "  ~ b  F32 [3]  content changed\n",
        "metadata: unchanged\n",
        "architecture: none (weights only)\n",
    ] {
        assert!(run.stdout.contains(line), "{line:?} not in\n{}", run.stdout);
    }
}

#[test]
fn encrypted_artifacts_have_unknown_content() {
    let dir = tempfile::tempdir().unwrap();
    let enc = |out: &str| {
        let path = dir.path().join(out);
        pack(
            &[fixture("keras_seed_mlp/model.keras")],
            &path,
            "1700000000",
            &[
                "--name",
                "digits",
                "--encrypt-to",
                &s(&test_key("test-enc1.pub")),
            ],
        );
        path
    };
    let (a, b) = (enc("a.nns"), enc("b.nns"));
    // The same model encrypted twice: fresh keys and nonces, so the ciphertext differs and
    // nothing but a decryption could tell whether the weights do.
    for flags in [&["--json"][..], &["--json", "--values"][..]] {
        let run = diff(&a, &b, flags);
        assert_eq!(run.code, DIFFERENT, "{run:?}");
        let v = run.json();
        assert_eq!(v["identical"], false);
        assert_eq!(v["content"], "unknown");
        assert!(v["content_note"]
            .as_str()
            .unwrap()
            .contains("without decrypting"));
        assert_eq!(v["tensors"]["known"], false);
        assert_eq!(v["architecture"]["status"], "unknown");
        assert!(metadata(&v).is_empty(), "{v}");
        assert_eq!(v["encryption"]["recipients_added"], serde_json::json!([]));
        assert_eq!(v["payload_checked"], flags.contains(&"--values"));
    }
    let run = diff(&a, &b, &[]);
    assert!(run.stdout.contains("content: unknown\n"), "{run:?}");
    assert!(
        run.stdout
            .contains("tensors: unknown (inside the encrypted payload)\n"),
        "{run:?}"
    );
    assert!(run.stderr.contains("cannot be shown identical"), "{run:?}");
    // The same ciphertext under the same recipients is the same content.
    let run = diff(&a, &a, &["--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["content"], "same");
    // Encrypted against plain: the recipients changed, the tensors are unknown.
    let plain = dir.path().join("plain.nns");
    pack(
        &[fixture("keras_seed_mlp/model.keras")],
        &plain,
        "1700000000",
        &["--name", "digits"],
    );
    let run = diff(&plain, &a, &["--json"]);
    assert_eq!(run.code, DIFFERENT, "{run:?}");
    let v = run.json();
    assert_eq!(v["content"], "unknown");
    assert_eq!(v["encryption"]["old"], Value::Null);
    assert_eq!(
        v["encryption"]["recipients_added"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn damaged_artifacts_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = revisions(dir.path());
    let bytes = std::fs::read(&b).unwrap();

    // A payload byte flipped: the digest-checking reader names the file and the tensor.
    let flipped = dir.path().join("flipped.nns");
    let mut f = bytes.clone();
    let last = f.len() - 100;
    f[last] ^= 1;
    std::fs::write(&flipped, &f).unwrap();
    let run = diff(&a, &flipped, &["--values"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains(&s(&flipped)), "{run:?}");
    assert!(
        run.stderr.contains("does not match its signed digest"),
        "{run:?}"
    );
    assert!(
        run.stdout.is_empty(),
        "nothing is reported on unchecked bytes: {run:?}"
    );
    let run = diff(&flipped, &a, &["--values", "--json"]);
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(run.json()["error"]["file"], s(&flipped));

    // A byte appended: refused before any comparison, with or without --values.
    let longer = dir.path().join("longer.nns");
    let mut l = bytes.clone();
    l.push(0);
    std::fs::write(&longer, &l).unwrap();
    for flags in [&[][..], &["--values"][..]] {
        let run = diff(&a, &longer, flags);
        assert_eq!(run.code, 5, "{run:?}");
        assert!(run.stderr.contains(&s(&longer)), "{run:?}");
    }

    // A manifest byte changed: the signature no longer verifies, trust store or not.
    let (manifest, sigs, payload) = parts(&bytes);
    let mut m = manifest.clone();
    let at = m.windows(5).position(|w| w == b"1.3.0").unwrap();
    m[at + 4] = b'1';
    let forged = dir.path().join("forged.nns");
    std::fs::write(&forged, nnsign::pack::assemble(&m, sigs, &payload)).unwrap();
    let run = diff(&a, &forged, &[]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains(&s(&forged)), "{run:?}");
}

#[test]
fn trust_is_checked_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = revisions(dir.path());
    let trust = |key: &str| vec!["--trust".to_owned(), s(&test_key(key))];
    let with = |flags: Vec<String>| {
        let f: Vec<&str> = flags.iter().map(String::as_str).collect();
        diff(&a, &b, &f)
    };
    let run = with([trust("test-a.pub"), vec!["--json".into()]].concat());
    assert_eq!(run.code, DIFFERENT, "{run:?}");
    let v = run.json();
    assert_eq!(v["trust_checked"], true);
    assert_eq!(
        v["new"]["signers"][0]["trusted_by"],
        s(&test_key("test-a.pub"))
    );
    let run = with(trust("test-b.pub"));
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("not signed by a trusted key"),
        "{run:?}"
    );

    // An unsigned artifact: shown as such without --trust, refused with it.
    let unsigned = dir.path().join("unsigned.nns");
    let run = nnsign_env(
        [
            "pack",
            &s(&fixture("keras_seed_mlp/model.keras")),
            "-o",
            &s(&unsigned),
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = diff(&unsigned, &b, &[]);
    assert_eq!(run.code, DIFFERENT, "{run:?}");
    assert!(run.stdout.contains("  unsigned\n"), "{run:?}");
    let run = diff(&unsigned, &b, &["--trust", &s(&test_key("test-a.pub"))]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains(&s(&unsigned)), "{run:?}");
}
