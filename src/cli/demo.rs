//! `nnsign demo`: the whole pipeline on a small trained model, offline, in seconds.

use std::path::Path;

use nnsign::format::ModelInfo;
use nnsign::import::{self, SourceTensor};
use nnsign::keys::{self, hex, SecretKey, TrustStore};
use nnsign::memory::DEFAULT_MEMORY_LIMIT;
use nnsign::model::Graph;
use nnsign::pack::{self as packer, PackInput};
use nnsign::runtime::Tensor;
use nnsign::trust::{Clock, Policy, Reason, Trust};
use nnsign::verify::{Artifact, VerifyError};
use serde_json::json;

use super::{exit, report, Common, Failure, Result};

// The model of tests/fixtures/keras_seed_mlp: Keras Dense(32, relu) -> Dense(10, softmax) on
// 784 pixels, trained on scikit-learn's digits; 32 held-out digits with their labels.
const WEIGHTS: &[u8] = include_bytes!("../../tests/fixtures/keras_seed_mlp/weights.safetensors");
const ARCH: &str = include_str!("../../tests/fixtures/keras_seed_mlp/arch.json");
const DIGITS: &[u8] = include_bytes!("../../tests/fixtures/keras_seed_mlp/inputs.npy");
const LABELS: &[u8] = include_bytes!("../../tests/fixtures/keras_seed_mlp/labels.npy");

/// Run the whole pipeline on a bundled digit classifier, offline, in seconds.
///
/// Example:
///   nnsign demo
///
/// Makes a throwaway key pair, packs a trained Keras MLP, verifies, loads and runs it on 32
/// digits, then shows a tampered copy and an untrusted host refusing it, and a release rule
/// needing two signers passing once a reviewer co-signs. Everything happens in a temporary
/// directory that is removed afterwards.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
}

fn internal(msg: impl std::fmt::Display) -> Failure {
    Failure::new(exit::IO, "demo", None, format!("demo failed: {msg}"))
}

fn npy(name: &str, bytes: &[u8]) -> Result<SourceTensor> {
    let array = import::npy::parse_npy(Path::new(name), name, bytes.to_vec()).map_err(internal)?;
    Ok(array.into_tensor(Path::new(name)))
}

pub fn run(args: Args) -> Result<()> {
    let dir = tempfile::tempdir().map_err(internal)?;
    let mut log = String::new();
    let mut say = |s: String| {
        log.push_str(&s);
        log.push('\n');
    };

    // 1. The build job's key pair.
    let key = SecretKey::generate().map_err(internal)?;
    let (_, pub_path) = keys::write_pair(&dir.path().join("ci"), &key, None).map_err(internal)?;
    say(format!(
        "1. keygen     key id {} (ci.key, mode 0600; ci.pub)",
        key.public().id()
    ));

    // 2. Pack the trained weights and architecture, signed.
    let weights_path = dir.path().join("weights.safetensors");
    std::fs::write(&weights_path, WEIGHTS).map_err(internal)?;
    let imported = import::import(&[weights_path]).map_err(internal)?;
    let artifact = dir.path().join("digits.nns");
    let packed = packer::pack(
        PackInput {
            model: ModelInfo {
                name: "digits-mlp".into(),
                version: Some("1.0.0".into()),
                description: Some(
                    "Keras Dense(32, relu) -> Dense(10, softmax) on 28x28 digits".into(),
                ),
                created: packer::created_now(),
                expires: None,
                producer: format!("nnsign {} demo", env!("CARGO_PKG_VERSION")),
                labels: imported.labels,
                parent: None,
            },
            arch: Some(Graph::from_json(ARCH).map_err(internal)?),
            tensors: imported.tensors,
            signer: Some(&key),
            encrypt: None,
        },
        &artifact,
        &|_| {},
    )
    .map_err(internal)?;
    say(format!(
        "2. pack       digits.nns: {} tensors, {} bytes, digest sha256:{}…",
        packed.tensors,
        packed.file_len,
        &hex(&packed.digest)[..16]
    ));

    // 3. The serving host trusts ci.pub only: verify, load, run.
    let mut store = TrustStore::load(std::slice::from_ref(&pub_path)).map_err(internal)?;
    let trust = Trust::keys(&store, &pub_path);
    let admit = |trust: &Trust, path: &Path| {
        let artifact = Artifact::open(path).map_err(internal)?;
        Ok(trust.admit(artifact, Clock::System))
    };
    let admitted = admit(&trust, &artifact)?.map_err(internal)?;
    let auth = &admitted.artifact;
    let loaded = nnsign::load::load(auth, DEFAULT_MEMORY_LIMIT, &|_| {}).map_err(internal)?;
    let model = loaded.model.ok_or_else(|| internal("no architecture"))?;
    say(format!(
        "3. verify     signature by trusted key {}, every digest matches; model loaded",
        auth.signers[0].key.id()
    ));

    let digits = npy("inputs.npy", DIGITS)?;
    let labels = npy("labels.npy", LABELS)?;
    let data: Vec<f32> = digits
        .bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let shape: Vec<usize> = digits.shape.iter().map(|&d| d as usize).collect();
    let outputs = model
        .run(vec![("pixels".into(), Tensor { shape, data }.into())])
        .map_err(internal)?;
    let probs = outputs[0].1.f32();
    let truth: Vec<i64> = labels
        .bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let predicted: Vec<usize> = probs
        .data
        .chunks_exact(10)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (i, &p)| if p > best.1 { (i, p) } else { best },
                )
                .0
        })
        .collect();
    let correct = predicted
        .iter()
        .zip(&truth)
        .filter(|(p, t)| **p as i64 == **t)
        .count();
    say(format!("4. run        {} digits:", predicted.len()));
    say(format!(
        "     predicted {}",
        predicted
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    say(format!(
        "     true      {}",
        truth
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    say(format!("     {correct} of {} correct", predicted.len()));

    // 5. One flipped byte in a copy of the weights, and a stranger's key.
    let tampered = dir.path().join("tampered.nns");
    let mut bytes = std::fs::read(&artifact).map_err(internal)?;
    let (_, payload_offset) = Artifact::open(&artifact).map_err(internal)?.sizes();
    let target = payload_offset as usize + 1000;
    bytes[target] ^= 0x01;
    std::fs::write(&tampered, &bytes).map_err(internal)?;
    let refusal = match admit(&trust, &tampered)?
        .map_err(internal)?
        .artifact
        .check_payload(&|_| {})
    {
        Err(e @ VerifyError::Digest { .. }) => e.to_string(),
        other => {
            return Err(internal(format!(
                "the tampered copy was not refused as expected: {:?}",
                other.err()
            )))
        }
    };
    say(format!(
        "5. tamper     flipped one bit at byte {target}: refused: {refusal}"
    ));
    let stranger = Trust::keys(&TrustStore::default(), Path::new("a stranger's keys"));
    let untrusted = match admit(&stranger, &artifact)?.map_err(|r| r.first()) {
        Err(e @ Reason::Verify(VerifyError::Untrusted { .. })) => e.to_string(),
        _ => return Err(internal("an untrusted signer was not refused")),
    };
    say(format!(
        "6. trust      a host that does not trust ci.pub: refused: {untrusted}"
    ));

    // 7. A release rule needing two signers: the build job's signature alone is refused; a
    // reviewer co-signs the same artifact (nothing repacked) and it passes.
    let reviewer = SecretKey::generate().map_err(internal)?;
    store.insert(reviewer.public(), dir.path().join("reviewer.pub"));
    let mut policy = Policy::from_trust(&store, Path::new("the release policy"));
    policy.rules[0].threshold = 2;
    let release = Trust::new(policy);
    let admitted = |path: &Path| -> Result<std::result::Result<usize, String>> {
        let verdict = admit(&release, path)?;
        Ok(verdict
            .map(|a| a.counted.len())
            .map_err(|r| r.first().to_string()))
    };
    let Err(alone) = admitted(&artifact)? else {
        return Err(internal("one signature passed a rule needing two"));
    };
    let cosigned = dir.path().join("digits-cosigned.nns");
    packer::cosign(&artifact, &reviewer, &cosigned, &|_| {}).map_err(internal)?;
    let counted = admitted(&cosigned)?.map_err(internal)?;
    say(format!(
        "7. co-sign    a rule needing 2 signers refuses the build job's alone ({alone}); \
         after `nnsign sign` by a reviewer it passes with {counted}"
    ));

    report(
        args.common,
        json!({
            "ok": true,
            "key_id": key.public().id().to_string(),
            "digest": format!("sha256:{}", hex(&packed.digest)),
            "predicted": predicted,
            "labels": truth,
            "correct": correct,
            "tampered_refused": refusal,
            "untrusted_refused": untrusted,
            "cosign": {"refused_alone": alone, "signers_after": counted},
        }),
        || log,
    );
    Ok(())
}
