//! Thousands of mutated artifacts through the whole verifier (open, authenticate, check every
//! chunk): each must be refused with an error, never accepted, never a panic. A cheap relative
//! of the cargo-fuzz targets in fuzz/, run on every build.

mod common;

use common::*;
use nnsign::keys::{PublicKey, TrustStore};
use nnsign::verify::Artifact;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn verdict(path: &std::path::Path, trust: &TrustStore) -> Result<(), String> {
    let auth = Artifact::open(path)
        .and_then(|a| a.authenticate(trust, true))
        .map_err(|e| e.to_string())?;
    auth.check_payload(&|_| {}).map_err(|e| e.to_string())
}

#[test]
fn mutated_artifacts_are_refused_without_panicking() {
    let mut trust = TrustStore::default();
    trust.insert(
        PublicKey::read(&test_key("test-a.pub")).unwrap(),
        "test-a.pub",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.nns");
    let mut rng = Rng(0x5eed_f1e5);
    let mut refused = 0;
    // Not pass_unsigned: without a signature nothing protects the manifest, and an edit to its
    // description is, correctly, accepted with --allow-unsigned (docs/SECURITY.md).
    for seed in [
        "pass_signed.nns",
        "pass_signed_arch.nns",
        "pass_two_signers.nns",
        "pass_zero_length_and_scalar.nns",
    ] {
        let good = std::fs::read(root().join("tests/vectors").join(seed)).unwrap();
        std::fs::write(&path, &good).unwrap();
        assert_eq!(
            verdict(&path, &trust),
            Ok(()),
            "{seed} must verify unmutated"
        );
        for _ in 0..600 {
            let mut bad = good.clone();
            match rng.below(5) {
                // Flip a few random bits.
                0 => {
                    for _ in 0..1 + rng.below(4) {
                        let i = rng.below(bad.len());
                        bad[i] ^= 1 << rng.below(8);
                    }
                }
                // Overwrite a byte with a CBOR-significant value.
                1 => {
                    let i = rng.below(bad.len());
                    bad[i] =
                        [0x00, 0x17, 0x18, 0x1b, 0x5b, 0x7b, 0x9b, 0xbb, 0xff, 0xf7][rng.below(10)];
                }
                // Cut the file short.
                2 => bad.truncate(rng.below(bad.len())),
                // Insert random bytes.
                3 => {
                    let i = rng.below(bad.len());
                    let n = 1 + rng.below(16);
                    let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    bad.splice(i..i, junk);
                }
                // Remove a range.
                _ => {
                    let i = rng.below(bad.len());
                    let j = (i + 1 + rng.below(32)).min(bad.len());
                    bad.drain(i..j);
                }
            }
            if bad == good {
                continue;
            }
            std::fs::write(&path, &bad).unwrap();
            let outcome = std::panic::catch_unwind(|| verdict(&path, &trust));
            match outcome {
                Ok(Err(_)) => refused += 1,
                Ok(Ok(())) => panic!("a mutated {seed} was accepted: {bad:02x?}"),
                Err(_) => panic!("the verifier panicked on a mutated {seed}: {bad:02x?}"),
            }
        }
    }
    assert!(refused > 2000, "only {refused} mutations were tried");
}

#[test]
fn random_bytes_never_panic_the_decoders() {
    let mut rng = Rng(0xdec0_de00);
    let npy = std::fs::read(root().join("tests/fixtures/tiny.npy")).unwrap();
    // A version 1.0 header: 10 bytes, then as many as the little-endian u16 at 8 says.
    let data_start = 10 + u16::from_le_bytes([npy[8], npy[9]]) as usize;
    // Refusals of CBOR, manifest, protected header, envelope and damaged .npy, in that order.
    let mut refused = [0usize; 5];
    for _ in 0..20_000 {
        let len = rng.below(96);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let decoded = [
            nnsign::cbor::decode(&bytes).is_err(),
            nnsign::format::Manifest::decode(&bytes).is_err(),
            nnsign::signature::parse_header(&bytes).is_err(),
            nnsign::format::Envelope::parse(&bytes).is_err(),
        ];
        // A valid .npy with random damage.
        let mut n = npy.clone();
        let i = rng.below(n.len());
        n[i] = rng.next() as u8;
        let cut = rng.below(4) == 0;
        if cut {
            n.truncate(rng.below(n.len()));
        }
        let npy_refused =
            nnsign::import::npy::parse_npy(std::path::Path::new("x.npy"), "x", n).is_err();
        // Cut short, its data no longer fills its shape; a changed data byte is another float32.
        if cut {
            assert!(npy_refused, "a .npy cut short was accepted");
        } else if i >= data_start {
            assert!(
                !npy_refused,
                "a .npy with one data byte changed was refused"
            );
        }
        for (count, r) in refused
            .iter_mut()
            .zip(decoded.into_iter().chain([npy_refused]))
        {
            *count += usize::from(r);
        }
    }
    // Exact for this seed, so that a decoder that starts accepting what it refused (or the
    // reverse) fails here: random bytes are never a manifest, a protected header (it needs an
    // algorithm) or an envelope; 79 of them are one whole CBOR item (52 a one-byte one); of
    // the .npy copies, the 4,954 cut short and 12,549 whose header changed are refused, and 51
    // whose header changed are accepted (a space made a tab or form feed, the trailing comma a
    // space); the rest changed a data byte, or a byte to itself.
    assert_eq!(refused, [19_921, 20_000, 20_000, 20_000, 17_503]);
}

/// One random change to a graph: an attribute, a dimension, an op, or a wiring.
fn mutate_graph(g: &mut serde_json::Value, rng: &mut Rng) {
    let nodes = g["nodes"].as_array_mut().unwrap();
    if nodes.is_empty() {
        return;
    }
    let k = rng.below(nodes.len());
    let node = &mut nodes[k];
    let small = |rng: &mut Rng| [-3i64, -2, -1, 0, 1, 2, 3, 7, 1 << 20, i64::MAX][rng.below(10)];
    match rng.below(6) {
        // An integer attribute, or one element of a list of them.
        0 | 1 => {
            if let Some(attrs) = node["attrs"].as_object_mut() {
                if let Some(key) = attrs.keys().nth(rng.below(attrs.len().max(1))).cloned() {
                    let v = &mut attrs[&key];
                    if let Some(list) = v.as_array_mut().filter(|l| !l.is_empty()) {
                        let i = rng.below(list.len());
                        list[i] = small(rng).into();
                    } else {
                        *v = small(rng).into();
                    }
                }
            }
        }
        // Another op of the newest op-set with the same wiring, the graph declaring it.
        2 => {
            let ops = nnsign::ops::ops_of(nnsign::model::OPSET);
            node["op"] = ops[rng.below(ops.len())].into();
            g["opset"] = nnsign::model::OPSET.into();
        }
        // An input taken from elsewhere.
        3 => {
            let names: Vec<String> = (g["inputs"].as_array().unwrap().iter())
                .map(|v| v["name"].as_str().unwrap().to_owned())
                .collect();
            let node = &mut g["nodes"][k];
            if let Some(inputs) = node["inputs"].as_array_mut().filter(|l| !l.is_empty()) {
                let i = rng.below(inputs.len());
                inputs[i] = names[rng.below(names.len())].clone().into();
            }
        }
        // A graph input's dimension.
        4 => {
            let inputs = g["inputs"].as_array_mut().unwrap();
            let i = rng.below(inputs.len());
            if let Some(shape) = inputs[i]["shape"].as_array_mut().filter(|s| !s.is_empty()) {
                let d = rng.below(shape.len());
                shape[d] = small(rng).clamp(0, 9).into();
            }
        }
        // An extra input.
        _ => {
            if let Some(inputs) = node["inputs"].as_array_mut() {
                inputs.push("".into());
            }
        }
    }
}

/// Whether the graph `text` decodes, validates against `infos` (the table of `weights`) and
/// runs on `inputs`: `false` when it is refused at any of the three. A graph that validates
/// builds (every weight it names is there, so `Model::new` must not fail).
fn graph_runs(
    text: &str,
    infos: &[nnsign::format::TensorInfo],
    weights: &[(nnsign::format::TensorInfo, nnsign::runtime::Value)],
    inputs: &[(String, nnsign::runtime::Value)],
) -> bool {
    let Ok(graph) = nnsign::model::Graph::from_json(text) else {
        return false;
    };
    let Ok(plan) = graph.validate(infos) else {
        return false;
    };
    let find = |i: &nnsign::format::TensorInfo| {
        Ok(weights
            .iter()
            .find(|(w, _)| w.name == i.name)
            .unwrap()
            .1
            .clone())
    };
    let model = nnsign::runtime::Model::new(plan, find, 1 << 30).unwrap();
    model.run(inputs.to_vec()).is_ok()
}

/// Thousands of damaged graphs from the op fixtures through validation and, when they pass,
/// through a run on the fixture's inputs: each must be refused or run, never panic.
#[test]
fn mutated_graphs_are_refused_or_run_never_panic() {
    use nnsign::format::TensorInfo;
    use nnsign::runtime;
    let dir = root().join("tests/fixtures/ops");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let mut rng = Rng(0x6a4f_0b1d);
    let (mut ran, mut refused) = (0, 0);
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let all = arrays(&dir.join(format!("{name}.npz")));
        let weights: Vec<(TensorInfo, runtime::Value)> =
            with_prefix(&all, "weight.").into_values().collect();
        let inputs: Vec<(String, runtime::Value)> = (with_prefix(&all, "input."))
            .into_iter()
            .map(|(n, (_, v))| (n, v))
            .collect();
        let infos: Vec<TensorInfo> = weights.iter().map(|(i, _)| i.clone()).collect();
        let rounds: usize = std::env::var("NNSIGN_GRAPH_ROUNDS").map_or(20, |v| v.parse().unwrap());
        for _ in 0..rounds {
            let mut g = case["arch"].clone();
            for _ in 0..1 + rng.below(3) {
                mutate_graph(&mut g, &mut rng);
            }
            let text = g.to_string();
            let outcome = std::panic::catch_unwind(|| graph_runs(&text, &infos, &weights, &inputs));
            match outcome {
                Ok(true) => ran += 1,
                Ok(false) => refused += 1,
                Err(_) => panic!("{name}: a mutated graph panicked: {text}"),
            }
        }
    }
    eprintln!("mutated graphs: {ran} ran, {refused} refused");
    assert!(ran > 100 && refused > 1000, "ran {ran}, refused {refused}");
}

/// JSON has no infinities: serde writes them as null. The real models' `-inf` mask constants
/// become -1e30, which masks as well, so that the graphs survive the round trip.
fn finite(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Null => *v = (-1e30).into(),
        serde_json::Value::Array(a) => a.iter_mut().for_each(finite),
        serde_json::Value::Object(o) => o.values_mut().for_each(finite),
        _ => {}
    }
}

/// The op-set 3 graphs that real exporters write (tests/fixtures/models3: a U-Net with
/// ConvTranspose and Resize, a BiLSTM, a transformer with its shape subgraphs and masks),
/// damaged at random: each must be refused or run, never panic.
#[test]
fn mutated_real_graphs_are_refused_or_run_never_panic() {
    use nnsign::format::TensorInfo;
    use nnsign::runtime;
    let mut rng = Rng(0x0b5e_55ed);
    let rounds: usize = std::env::var("NNSIGN_GRAPH_ROUNDS").map_or(20, |v| v.parse().unwrap());
    let (mut ran, mut refused) = (0, 0);
    for (file, data) in [
        ("unet.onnx", "unet"),
        ("bilstm.dynamo.onnx", "bilstm"),
        ("transformer.onnx", "transformer"),
    ] {
        let imported = nnsign::import::import(&[fixture(&format!("models3/{file}"))]).unwrap();
        let weights: Vec<(TensorInfo, runtime::Value)> = (imported.tensors.iter())
            .map(|t| (t.info(), runtime::to_value(&t.info(), &t.bytes).unwrap()))
            .collect();
        let infos: Vec<TensorInfo> = weights.iter().map(|(i, _)| i.clone()).collect();
        let mut arch = serde_json::to_value(imported.arch.expect("a graph")).unwrap();
        finite(&mut arch);
        let all = arrays(&fixture(&format!("models3/{data}.npz")));
        let inputs: Vec<(String, runtime::Value)> = (with_prefix(&all, "input."))
            .into_iter()
            .map(|(n, (_, v))| (n, v))
            .collect();
        // Undamaged, the graph runs: refusals below are the damage's.
        assert!(
            graph_runs(&arch.to_string(), &infos, &weights, &inputs),
            "{file} undamaged"
        );
        for _ in 0..rounds {
            let mut g = arch.clone();
            for _ in 0..1 + rng.below(3) {
                mutate_graph(&mut g, &mut rng);
            }
            let text = g.to_string();
            let outcome = std::panic::catch_unwind(|| graph_runs(&text, &infos, &weights, &inputs));
            match outcome {
                Ok(true) => ran += 1,
                Ok(false) => refused += 1,
                Err(_) => panic!("{file}: a mutated graph panicked: {text}"),
            }
        }
    }
    eprintln!("mutated real graphs: {ran} ran, {refused} refused");
    assert!(
        ran + refused == 3 * rounds && refused > 0,
        "ran {ran}, refused {refused}"
    );
}
