//! The trust decision as a library call: `Trust::admit` returns every reason a policy, the
//! clock and the rollback state have against an artifact, in the order the checks run, or an
//! admitted artifact whose version is recorded only once it has been used.

mod common;

use std::path::{Path, PathBuf};

use nnsign::format::{DType, ModelInfo};
use nnsign::keys::{self, SecretKey};
use nnsign::pack::{self, PackInput};
use nnsign::trust::{Clock, Policy, PolicyError, Reason, Recorded, Trust};
use nnsign::verify::{Artifact, VerifyError};

const DAY: u64 = 86400;
/// 2026-01-01T00:00:00Z: every time here is fixed, through `Clock::At`.
const T0: u64 = 1_767_225_600;

struct Env {
    dir: tempfile::TempDir,
    ci: SecretKey,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let ci = SecretKey::generate().unwrap();
        keys::write_pair(&dir.path().join("ci"), &ci, None).unwrap();
        Env { dir, ci }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An artifact of model "digits" at `version`, created at `created`, signed by ci.
    fn pack(&self, out: &str, version: &str, created: u64, expires: Option<u64>) -> PathBuf {
        self.pack_by(out, version, created, expires, Some(&self.ci))
    }

    fn pack_by(
        &self,
        out: &str,
        version: &str,
        created: u64,
        expires: Option<u64>,
        signer: Option<&SecretKey>,
    ) -> PathBuf {
        let model = ModelInfo {
            name: "digits".into(),
            version: Some(version.into()),
            description: None,
            created,
            expires,
            producer: "tests/trust.rs".into(),
            labels: Default::default(),
            parent: None,
        };
        let tensors = vec![common::tensor("w", DType::F32, &[2], vec![0u8; 8])];
        let input = PackInput {
            model,
            arch: None,
            tensors,
            signer,
            encrypt: None,
        };
        pack::pack(input, &self.path(out), &|_| {}).unwrap();
        self.path(out)
    }

    /// A policy trusting ci, with `rest` (top-level settings and rules) before the key.
    fn policy(&self, rest: &str) -> Policy {
        let text = format!("{rest}\n[[key]]\npath = \"ci.pub\"\nname = \"ci\"\n");
        std::fs::write(self.path("policy.toml"), text).unwrap();
        Policy::load(&self.path("policy.toml")).unwrap()
    }
}

fn open(path: &Path) -> Artifact {
    Artifact::open(path).unwrap()
}

fn messages(reasons: &[Reason]) -> Vec<String> {
    reasons.iter().map(ToString::to_string).collect()
}

#[test]
fn every_reason_is_reported_in_the_order_the_checks_run() {
    let env = Env::new();
    let old = env.pack("old.nns", "1.5.0", T0, None);
    let new = env.pack("new.nns", "1.2.0", T0 - 10 * DAY, Some(T0 - DAY));
    let trust = Trust::new(
        env.policy("[[rule]]\nmodels = \"digits\"\nmin_version = \"2.0.0\"\nmax_age = \"1d\"\n"),
    )
    .with_state(Some(env.path("state.json")));
    // A wider rule for the release that raises the recorded version to 1.5.0.
    let loose = Trust::keys(
        &keys::TrustStore::load(&[env.path("ci.pub")]).unwrap(),
        &env.path("ci.pub"),
    )
    .with_state(Some(env.path("state.json")));
    let admitted = loose.admit(open(&old), Clock::At(T0)).unwrap();
    let (file, done) = admitted.record(Clock::At(T0)).unwrap().unwrap();
    assert_eq!(file, env.path("state.json"));
    assert_eq!(done, Recorded::Raised { from: None });

    let refused = match trust.admit(open(&new), Clock::At(T0 + DAY)) {
        Err(r) => r,
        Ok(_) => panic!("an old, stale, expired rollback was admitted"),
    };
    assert_eq!(refused.path, new);
    let m = messages(&refused.reasons);
    assert_eq!(m.len(), 4, "{m:#?}");
    assert!(
        m[0].contains("version 1.2.0 is below the minimum 2.0.0"),
        "{m:#?}"
    );
    assert!(m[1].contains("was packed 11 days ago"), "{m:#?}");
    assert!(m[2].contains("expired 2 days ago"), "{m:#?}");
    assert!(
        m[3].contains(
            "rollback refused: model \"digits\" version 1.2.0 is older than version 1.5.0"
        ),
        "{m:#?}"
    );
    assert!(refused
        .reasons
        .iter()
        .all(|r| matches!(r, Reason::Policy(PolicyError::Freshness(_)))));
    // The one-line report (the CLI's) names the first.
    assert!(refused
        .to_string()
        .starts_with(&format!("{}: model", new.display())));
}

#[test]
fn the_clock_decides_expiry_and_creation_in_the_future() {
    let env = Env::new();
    let art = env.pack("a.nns", "1.0.0", T0, Some(T0 + 30 * DAY));
    let trust = Trust::new(env.policy("[[rule]]\nmodels = \"*\"\n"));
    let at = |t| {
        trust
            .admit(open(&art), Clock::At(t))
            .map(|a| a.counted.len())
    };
    assert_eq!(at(T0).unwrap(), 1);
    // Five minutes of skew either way, no more.
    assert_eq!(at(T0 + 30 * DAY + 300).unwrap(), 1);
    assert_eq!(at(T0 - 300).unwrap(), 1);
    let late = at(T0 + 30 * DAY + 301).unwrap_err();
    assert!(messages(&late.reasons)[0].contains("expired"), "{late}");
    let early = at(T0 - 301).unwrap_err();
    assert!(
        messages(&early.reasons)[0].contains("in the future; check this host's clock"),
        "{early}"
    );
}

#[test]
fn a_revoked_signer_is_named_first_then_the_missing_trust() {
    let env = Env::new();
    let art = env.pack("a.nns", "1.0.0", T0, None);
    let id = env.ci.public().id();
    let trust =
        Trust::new(env.policy(&format!("revoked = [\"{id}\"]\n[[rule]]\nmodels = \"*\"\n")));
    assert!(trust.trusts_no_key());
    let refused = match trust.admit(open(&art), Clock::At(T0)) {
        Err(r) => r,
        Ok(_) => panic!("an artifact signed only by a revoked key was admitted"),
    };
    assert_eq!(refused.reasons.len(), 2, "{refused}");
    match &refused.reasons[0] {
        Reason::RevokedOnly { keys, policy } => {
            assert_eq!(keys, &vec![id]);
            assert_eq!(policy, &env.path("policy.toml"));
        }
        other => panic!("first reason: {other}"),
    }
    match &refused.reasons[1] {
        Reason::Verify(VerifyError::Untrusted { valid, .. }) => {
            assert_eq!(valid, &vec![env.ci.public()])
        }
        other => panic!("second reason: {other}"),
    }
}

#[test]
fn admitting_records_nothing_until_the_artifact_is_used() {
    let env = Env::new();
    let art = env.pack("a.nns", "1.0.0", T0, None);
    let state = env.path("state.json");
    let trust =
        Trust::new(env.policy("[[rule]]\nmodels = \"*\"\n")).with_state(Some(state.clone()));
    let admitted = trust.admit(open(&art), Clock::At(T0)).unwrap();
    assert_eq!(admitted.counted.len(), 1);
    assert!(
        !state.exists(),
        "admit wrote the state before the artifact was used"
    );
    let (_, done) = admitted.record(Clock::At(T0)).unwrap().unwrap();
    assert_eq!(done, Recorded::Raised { from: None });
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains("\"version\": \"1.0.0\""), "{text}");
    let again = trust.admit(open(&art), Clock::At(T0)).unwrap();
    assert_eq!(
        again.record(Clock::At(T0)).unwrap().unwrap().1,
        Recorded::Same
    );
    // Without a state file nothing is recorded.
    let plain = Trust::new(env.policy("[[rule]]\nmodels = \"*\"\n"));
    assert!(plain
        .admit(open(&art), Clock::At(T0))
        .unwrap()
        .record(Clock::At(T0))
        .unwrap()
        .is_none());
}

#[test]
fn an_allowed_unsigned_artifact_satisfies_no_rule_and_raises_no_state() {
    let env = Env::new();
    let art = env.pack_by("u.nns", "9.0.0", T0, None, None);
    let store = keys::TrustStore::load(&[env.path("ci.pub")]).unwrap();
    let keys_only = Trust::keys(&store, &env.path("ci.pub")).allowing_unsigned(true);
    let admitted = keys_only.admit(open(&art), Clock::At(T0)).unwrap();
    assert!(admitted.counted.is_empty() && admitted.artifact.signers.is_empty());
    // Not allowed, it is refused as unsigned.
    let strict = Trust::keys(&store, &env.path("ci.pub"));
    let refused = strict.admit(open(&art), Clock::At(T0)).err().unwrap();
    assert!(matches!(
        refused.reasons[..],
        [Reason::Verify(VerifyError::Unsigned)]
    ));
    // A state it could raise, or a rule asking for more than a signature, refuses it.
    let state = env.path("state.json");
    let with_state = Trust::keys(&store, &env.path("ci.pub"))
        .with_state(Some(state.clone()))
        .allowing_unsigned(true);
    let refused = with_state.admit(open(&art), Clock::At(T0)).err().unwrap();
    let m = messages(&refused.reasons);
    assert_eq!(m.len(), 1, "{m:#?}");
    assert!(m[0].starts_with("the artifact is unsigned: unsigned artifacts are allowed, but"));
    assert!(!state.exists());
    let two = Trust::new(env.policy("[[rule]]\nmodels = \"*\"\nmin_version = \"1.0.0\"\n"))
        .allowing_unsigned(true);
    let refused = two.admit(open(&art), Clock::At(T0)).err().unwrap();
    assert!(matches!(
        refused.reasons[..],
        [Reason::Policy(PolicyError::Signers(_))]
    ));
}
