//! Trust policies, co-signatures, expiry, rollback protection and lineage (issue 6), end to
//! end through the binary: every rule passes when it should and fails when it should, with its
//! exit code and a message naming what failed.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use nnsign::format::ModelInfo;
use nnsign::keys::SecretKey;
use nnsign::pack::{self, PackInput};

const DAY: u64 = 86400;

/// A folder with three signing keys (ci, reviewer, alice), a policy file and artifacts.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        for k in ["ci", "reviewer", "alice"] {
            let run = nnsign(["keygen", "-o", &env.s(k)]);
            assert_eq!(run.code, 0, "{run:?}");
        }
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn key_id(&self, name: &str) -> String {
        nnsign::keys::PublicKey::read(&self.path(&format!("{name}.pub")))
            .unwrap()
            .id()
            .to_string()
    }

    /// Writes `policy.toml`: `rest` (top-level settings, then rules), then the three keys.
    fn policy(&self, rest: &str) -> String {
        let text = format!(
            "{rest}\n[[key]]\npath = \"ci.pub\"\nname = \"ci\"\n\n[[key]]\npath = \"reviewer.pub\"\nname = \"reviewer\"\n\n\
             [[key]]\npath = \"alice.pub\"\nname = \"alice\"\n"
        );
        std::fs::write(self.path("policy.toml"), text).unwrap();
        self.s("policy.toml")
    }

    /// `nnsign pack` of tests/fixtures/tiny.npy named `name`, version `version`, signed by
    /// `signer`, with `extra` flags.
    fn pack(&self, out: &str, name: &str, version: &str, signer: &str, extra: &[&str]) -> PathBuf {
        let tiny = fixture("tiny.npy");
        let key = self.s(&format!("{signer}.key"));
        let mut args = vec![
            "pack",
            tiny.to_str().unwrap(),
            "--sign",
            &key,
            "--name",
            name,
        ];
        args.extend(["--model-version", version]);
        args.extend(extra);
        let o = self.s(out);
        args.extend(["-o", &o]);
        let run = nnsign(&args);
        assert_eq!(run.code, 0, "{run:?}");
        self.path(out)
    }

    /// An artifact made through the library, with creation and expiry times of our choosing.
    fn pack_at(&self, out: &str, created: u64, expires: Option<u64>) -> PathBuf {
        let key = SecretKey::read(&self.path("ci.key"), || Ok(None)).unwrap();
        let imported = nnsign::import::import(&[fixture("tiny.npy")]).unwrap();
        let model = ModelInfo {
            name: "digits".into(),
            version: Some("1.2.0".into()),
            description: None,
            created,
            expires,
            producer: "test".into(),
            labels: Default::default(),
            parent: None,
        };
        let input = PackInput {
            model,
            arch: None,
            tensors: imported.tensors,
            signer: Some(&key),
            encrypt: None,
        };
        pack::pack(input, &self.path(out), &|_| {}).unwrap();
        self.path(out)
    }

    fn sign(&self, art: &Path, key: &str) -> Run {
        nnsign([
            "sign",
            art.to_str().unwrap(),
            "--key",
            &self.s(&format!("{key}.key")),
        ])
    }

    fn verify(&self, art: &Path, flags: &[&str]) -> Run {
        let mut args = vec!["verify", art.to_str().unwrap()];
        args.extend(flags);
        nnsign(args)
    }
}

fn now() -> u64 {
    nnsign::clock::now()
}

/// Fails with `code`, one `nnsign: error:` line naming the artifact, holding `fragment`.
fn refused(run: &Run, code: i32, art: &Path, fragment: &str) {
    assert_eq!(run.code, code, "{run:?}");
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("nnsign: error: "), "{run:?}");
    assert!(first.contains(&art.display().to_string()), "{run:?}");
    assert!(first.contains(fragment), "want {fragment:?} in {first:?}");
}

#[test]
fn a_threshold_of_two_of_three_counts_distinct_listed_signers() {
    let env = Env::new();
    let policy = env.policy(
        "[[rule]]\nmodels = \"digits*\"\nsigners = [\"ci\", \"reviewer\", \"alice\"]\nthreshold = 2\n",
    );
    let art = env.pack("a.nns", "digits", "1.0.0", "ci", &[]);
    let one = env.verify(&art, &["--policy", &policy]);
    refused(&one, 4, &art, "needs 2 signature(s)");
    assert!(one.stderr.contains("it has 1: ci ("), "{one:?}");

    let digest =
        |art: &Path| nnsign(["inspect", art.to_str().unwrap(), "--json"]).json()["digest"].clone();
    let before = digest(&art);
    let run = env.sign(&art, "reviewer");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(digest(&art), before, "co-signing changes no signed byte");
    let two = env.verify(&art, &["--policy", &policy, "--json"]);
    assert_eq!(two.code, 0, "{two:?}");
    let signers = two.json()["signers"].clone();
    let names: Vec<&str> = (signers.as_array().unwrap().iter())
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci", "reviewer"]);
    assert!(signers
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["counted"] == true));

    assert_eq!(env.sign(&art, "alice").code, 0);
    assert_eq!(env.verify(&art, &["--policy", &policy]).code, 0);

    // The same key again: refused by `sign`, and a copied signature spliced into the envelope
    // makes the artifact invalid rather than count twice.
    let again = env.sign(&art, "alice");
    refused(&again, 2, &art, "already signed by key");
    let single = env.pack("s.nns", "digits", "1.0.0", "ci", &[]);
    let a = nnsign::verify::Artifact::open(&single).unwrap();
    let sig = a.signatures()[0].clone();
    let payload = std::fs::read(&single).unwrap()[a.sizes().1 as usize..].to_vec();
    let doubled = pack::assemble(a.manifest_bytes(), vec![sig.clone(), sig], &payload);
    std::fs::write(env.path("doubled.nns"), doubled).unwrap();
    let run = env.verify(&env.path("doubled.nns"), &["--policy", &policy]);
    refused(&run, 4, &env.path("doubled.nns"), "signed twice");
}

#[test]
fn removing_a_signature_never_makes_a_policy_pass() {
    let env = Env::new();
    let policy = env.policy("[[rule]]\nmodels = \"*\"\nthreshold = 2\n");
    let art = env.pack("a.nns", "m", "1.0.0", "ci", &[]);
    assert_eq!(env.sign(&art, "reviewer").code, 0);
    assert_eq!(env.verify(&art, &["--policy", &policy]).code, 0);
    let a = nnsign::verify::Artifact::open(&art).unwrap();
    let payload = std::fs::read(&art).unwrap()[a.sizes().1 as usize..].to_vec();
    for keep in 0..2 {
        let sigs = vec![a.signatures()[keep].clone()];
        let out = env.path(&format!("cut{keep}.nns"));
        std::fs::write(&out, pack::assemble(a.manifest_bytes(), sigs, &payload)).unwrap();
        refused(
            &env.verify(&out, &["--policy", &policy]),
            4,
            &out,
            "needs 2 signature(s)",
        );
    }
    let out = env.path("none.nns");
    std::fs::write(&out, pack::assemble(a.manifest_bytes(), vec![], &payload)).unwrap();
    refused(
        &env.verify(&out, &["--policy", &policy]),
        4,
        &out,
        "unsigned",
    );
}

/// Issue 16: a one-bit change of a co-signature's alg (-19 to -20) makes it an unsupported
/// signature, which the other signature's validity does not reveal. It must never count toward
/// a threshold, and it is named, both when the policy refuses and when the artifact passes.
#[test]
fn a_cosignature_whose_alg_was_altered_counts_for_nothing_and_is_named() {
    let env = Env::new();
    let both =
        env.policy("[[rule]]\nmodels = \"*\"\nsigners = [\"ci\", \"reviewer\"]\nthreshold = 2\n");
    let art = env.pack("a.nns", "m", "1.0.0", "ci", &[]);
    assert_eq!(env.sign(&art, "reviewer").code, 0);
    assert_eq!(env.verify(&art, &["--policy", &both]).code, 0);
    let a = nnsign::verify::Artifact::open(&art).unwrap();
    let payload = std::fs::read(&art).unwrap()[a.sizes().1 as usize..].to_vec();
    let mut sigs = a.signatures().to_vec();
    let reviewer = env.key_id("reviewer");
    let kid = |s: &nnsign::format::RawSignature| {
        nnsign::keys::hex(&nnsign::signature::parse_header(&s.protected).unwrap().kid)
    };
    let at = sigs.iter().position(|s| kid(s) == reviewer).unwrap();
    // a4 | 01 32 (alg: -19): the alg's value is the third byte of the header.
    assert_eq!(sigs[at].protected[..3], [0xa4, 0x01, 0x32]);
    sigs[at].protected[2] = 0x33;
    let altered = env.path("altered.nns");
    std::fs::write(&altered, pack::assemble(a.manifest_bytes(), sigs, &payload)).unwrap();
    let run = env.verify(&altered, &["--policy", &both]);
    refused(&run, 4, &altered, "needs 2 signature(s)");
    assert!(run.stderr.contains("it has 1: ci"), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "not counted: signature by key {reviewer} uses COSE algorithm -20"
        )),
        "{run:?}"
    );
    // A rule that one signature satisfies passes, and says loudly what did not count.
    let one = env.policy("[[rule]]\nmodels = \"*\"\nsigners = [\"ci\", \"reviewer\"]\n");
    let run = env.verify(&altered, &["--policy", &one]);
    assert_eq!(run.code, 0, "{run:?}");
    let warning = format!(
        "nnsign: warning: {}: signature by key {reviewer} uses COSE algorithm -20",
        altered.display()
    );
    assert!(run.stderr.starts_with(&warning), "{run:?}");
    let run = env.verify(&altered, &["--policy", &one, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    assert_eq!(
        json["unsupported_signatures"],
        serde_json::json!([{"key_id": reviewer, "algorithm": -20}])
    );
    assert_eq!(json["signers"].as_array().unwrap().len(), 1);
    assert!(
        json["warnings"][0].as_str().unwrap().contains("-20"),
        "{json}"
    );
}

#[test]
fn only_the_listed_signers_of_the_first_matching_rule_count() {
    let env = Env::new();
    let policy = env.policy(
        "[[rule]]\nmodels = \"prod-*\"\nsigners = [\"reviewer\"]\n\n\
         [[rule]]\nmodels = \"*\"\nsigners = [\"ci\"]\n",
    );
    let prod_by_ci = env.pack("p.nns", "prod-digits", "1.0.0", "ci", &[]);
    let run = env.verify(&prod_by_ci, &["--policy", &policy]);
    refused(&run, 4, &prod_by_ci, "rule models = \"prod-*\"");
    let prod_by_reviewer = env.pack("q.nns", "prod-digits", "1.0.0", "reviewer", &[]);
    assert_eq!(
        env.verify(&prod_by_reviewer, &["--policy", &policy]).code,
        0
    );
    let dev_by_ci = env.pack("d.nns", "dev-digits", "1.0.0", "ci", &[]);
    assert_eq!(env.verify(&dev_by_ci, &["--policy", &policy]).code, 0);
    // alice is in the policy but no rule lists her for this model.
    let dev_by_alice = env.pack("e.nns", "dev-digits", "1.0.0", "alice", &[]);
    refused(
        &env.verify(&dev_by_alice, &["--policy", &policy]),
        4,
        &dev_by_alice,
        "it has 0",
    );
    // A model no rule covers.
    let strict = env.policy("[[rule]]\nmodels = \"prod-*\"\n");
    refused(
        &env.verify(&dev_by_ci, &["--policy", &strict]),
        4,
        &dev_by_ci,
        "no rule of",
    );
}

#[test]
fn a_revoked_key_counts_nowhere() {
    let env = Env::new();
    let alice = env.key_id("alice");
    let policy = env.policy(&format!(
        "revoked = [\"{alice}\"]\n\n[[rule]]\nmodels = \"*\"\nthreshold = 2\n"
    ));
    let by_alice = env.pack("a.nns", "m", "1.0.0", "alice", &[]);
    let run = env.verify(&by_alice, &["--policy", &policy]);
    refused(
        &run,
        4,
        &by_alice,
        &format!("signed only by revoked key(s) {alice}"),
    );
    assert_eq!(env.sign(&by_alice, "ci").code, 0);
    let run = env.verify(&by_alice, &["--policy", &policy]);
    refused(
        &run,
        4,
        &by_alice,
        &format!("revoked signer(s) ignored: {alice}"),
    );
    assert_eq!(env.sign(&by_alice, "reviewer").code, 0);
    assert_eq!(env.verify(&by_alice, &["--policy", &policy]).code, 0);
}

#[test]
fn minimum_version_maximum_age_and_expiry() {
    let env = Env::new();
    let policy =
        env.policy("[[rule]]\nmodels = \"*\"\nmin_version = \"1.2.0\"\nmax_age = \"30d\"\n");
    let old = env.pack("old.nns", "m", "1.1.9", "ci", &[]);
    refused(
        &env.verify(&old, &["--policy", &policy]),
        9,
        &old,
        "below the minimum 1.2.0",
    );
    // SemVer precedence: a pre-release of 1.2.0 is below 1.2.0; 1.10.0 is above 1.9.0.
    let pre = env.pack("pre.nns", "m", "1.2.0-rc.1", "ci", &[]);
    refused(
        &env.verify(&pre, &["--policy", &policy]),
        9,
        &pre,
        "below the minimum",
    );
    let ten = env.pack("ten.nns", "m", "1.10.0", "ci", &[]);
    assert_eq!(env.verify(&ten, &["--policy", &policy]).code, 0);

    let stale = env.pack_at("stale.nns", now() - 40 * DAY, None);
    refused(
        &env.verify(&stale, &["--policy", &policy]),
        9,
        &stale,
        "allows at most 30 days",
    );
    let recent = env.pack_at("recent.nns", now() - 20 * DAY, None);
    assert_eq!(env.verify(&recent, &["--policy", &policy]).code, 0);

    // Expiry holds with a plain trust store too.
    let trust = env.s("ci.pub");
    let expired = env.pack_at("expired.nns", now() - 10 * DAY, Some(now() - DAY));
    refused(
        &env.verify(&expired, &["--trust", &trust]),
        9,
        &expired,
        "expired 24 hours ago",
    );
    let skewed = env.pack_at("skewed.nns", now() - 10 * DAY, Some(now() - 60));
    assert_eq!(
        env.verify(&skewed, &["--trust", &trust]).code,
        0,
        "within the clock skew"
    );
    let future = env.pack_at("future.nns", now() + DAY, None);
    refused(
        &env.verify(&future, &["--trust", &trust]),
        9,
        &future,
        "in the future",
    );
    let fresh = env.pack(
        "fresh.nns",
        "m",
        "1.2.0",
        "ci",
        &["--expires", "90d", "--json"],
    );
    let run = env.verify(&fresh, &["--trust", &trust, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let expires = run.json()["model"]["expires"].as_u64().unwrap();
    assert!((now() + 90 * DAY - 60..=now() + 90 * DAY).contains(&expires));

    let run = nnsign([
        "pack",
        fixture("tiny.npy").to_str().unwrap(),
        "--expires",
        "2020-01-01",
        "-o",
        &env.s("x.nns"),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is not in the future"), "{run:?}");
    let run = nnsign([
        "pack",
        fixture("tiny.npy").to_str().unwrap(),
        "--model-version",
        "1.2",
        "-o",
        &env.s("x.nns"),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is not a semantic version"), "{run:?}");
}

#[test]
fn policy_files_that_cannot_be_meant_are_refused() {
    let env = Env::new();
    let art = env.pack("a.nns", "m", "1.0.0", "ci", &[]);
    let cases = [
        (
            "[[rule]]\nmodels = \"*\"\nthreshhold = 2\n",
            "unknown field",
        ),
        (
            "[[rule]]\nmodels = \"*\"\nthreshold = 4\n",
            "threshold 4 must be between 1 and the 3",
        ),
        (
            "[[rule]]\nmodels = \"*\"\nsigners = [\"bob\"]\n",
            "neither a key name nor a key id",
        ),
        (
            "[[rule]]\nmodels = \"*\"\nsigners = [\"ci\", \"ci\"]\nthreshold = 2\n",
            "listed twice in signers",
        ),
        (
            "[[rule]]\nmodels = \"*\"\nmin_version = \"2\"\n",
            "not a semantic version",
        ),
        (
            "[[rule]]\nmodels = \"*\"\nmax_age = \"a while\"\n",
            "not a duration",
        ),
        (
            "revoked = [\"XYZ\"]\n[[rule]]\nmodels = \"*\"\n",
            "not a key id",
        ),
        ("", "no [[rule]]"),
    ];
    for (rest, fragment) in cases {
        let policy = env.policy(rest);
        let run = env.verify(&art, &["--policy", &policy]);
        assert_eq!(run.code, 2, "{rest}: {run:?}");
        assert!(
            run.stderr.contains(fragment),
            "{rest}: want {fragment:?} in {:?}",
            run.stderr
        );
        assert!(run.stderr.contains("policy.toml"), "{run:?}");
    }
    // A pinned key id that does not match the file.
    let text =
        "[[key]]\npath = \"ci.pub\"\nid = \"0000000000000000\"\n\n[[rule]]\nmodels = \"*\"\n";
    std::fs::write(env.path("pinned.toml"), text).unwrap();
    let run = env.verify(&art, &["--policy", &env.s("pinned.toml")]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("pinned to id 0000000000000000"),
        "{run:?}"
    );
    let run = env.verify(
        &art,
        &[
            "--policy",
            &env.s("pinned.toml"),
            "--trust",
            &env.s("ci.pub"),
        ],
    );
    assert_eq!(run.code, 2, "--trust and --policy together: {run:?}");
    let state = env.s("state.json");
    let run = env.verify(
        &art,
        &[
            "--trust",
            &env.s("ci.pub"),
            "--allow-unsigned",
            "--state",
            &state,
        ],
    );
    assert_eq!(
        run.code, 2,
        "an unsigned artifact could raise the recorded version: {run:?}"
    );
    assert!(!env.path("state.json").exists());
}

#[test]
fn rollback_is_refused_and_a_newer_version_recorded() {
    let env = Env::new();
    let trust = env.s("ci.pub");
    let state = env.s("state.json");
    let v12 = env.pack("v12.nns", "digits", "1.2.0", "ci", &[]);
    let v11 = env.pack("v11.nns", "digits", "1.1.0", "ci", &[]);
    let v13 = env.pack("v13.nns", "digits", "1.3.0", "ci", &[]);
    let with_state = ["--trust", trust.as_str(), "--state", state.as_str()];
    let json = |art: &Path| {
        let mut flags = with_state.to_vec();
        flags.push("--json");
        env.verify(art, &flags).json()
    };
    let run = env.verify(&v12, &[&with_state[..], &["--json"]].concat());
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["state"]["update"], "first");
    let recorded = |v: &str| {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        assert_eq!(s["models"]["digits"]["version"], v, "{s}");
    };
    recorded("1.2.0");
    refused(&env.verify(&v11, &with_state), 9, &v11, "rollback refused");
    assert_eq!(json(&v12)["state"]["update"], "same");
    // Another build under the same version number: refused.
    let twin = env.pack(
        "twin.nns",
        "digits",
        "1.2.0",
        "ci",
        &["--description", "rebuilt"],
    );
    refused(
        &env.verify(&twin, &with_state),
        9,
        &twin,
        "two releases under one version",
    );
    assert_eq!(json(&v13)["state"]["update"], "raised");
    recorded("1.3.0");
    refused(
        &env.verify(&v12, &with_state),
        9,
        &v12,
        "older than version 1.3.0",
    );

    // verify-load records too; a policy's `state` applies without --state.
    let policy = env.policy("state = \"state.json\"\n\n[[rule]]\nmodels = \"*\"\n");
    refused(
        &nnsign(["verify-load", v12.to_str().unwrap(), "--policy", &policy]),
        9,
        &v12,
        "rollback refused",
    );
    let v14 = env.pack("v14.nns", "digits", "1.4.0", "ci", &[]);
    assert_eq!(
        nnsign(["verify-load", v14.to_str().unwrap(), "--policy", &policy]).code,
        0
    );
    recorded("1.4.0");
}

#[test]
fn a_crash_while_recording_leaves_the_old_state_or_the_new() {
    let env = Env::new();
    let trust = env.s("ci.pub");
    let state = env.s("state.json");
    let v1 = env.pack("v1.nns", "digits", "1.0.0", "ci", &[]);
    let v2 = env.pack("v2.nns", "digits", "2.0.0", "ci", &[]);
    assert_eq!(
        env.verify(&v1, &["--trust", &trust, "--state", &state])
            .code,
        0
    );
    let old = std::fs::read(&state).unwrap();
    for point in ["state-write", "state-rename"] {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_nnsign"))
            .args([
                "verify",
                v2.to_str().unwrap(),
                "--trust",
                &trust,
                "--state",
                &state,
                "-q",
            ])
            .env("NNSIGN_TEST_CRASH", point)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.code().is_none(),
            "{point}: the process was killed, {status:?}"
        );
        assert_eq!(
            std::fs::read(&state).unwrap(),
            old,
            "{point}: the old state, whole"
        );
        assert!(
            listing(env.dir.path()).iter().any(|f| f.ends_with(".tmp")),
            "{point}"
        );
    }
    let run = env.verify(&v2, &["--trust", &trust, "--state", &state, "--json"]);
    assert_eq!(run.json()["state"]["update"], "raised", "{run:?}");
    assert!(
        !listing(env.dir.path()).iter().any(|f| f.ends_with(".tmp")),
        "stale temps removed"
    );
    refused(
        &env.verify(&v1, &["--trust", &trust, "--state", &state]),
        9,
        &v1,
        "rollback refused",
    );
    std::fs::write(&state, "{\"nnsign_state\": 1, \"models\": ").unwrap();
    let run = env.verify(&v2, &["--trust", &trust, "--state", &state]);
    assert_eq!(run.code, 2, "a damaged state file fails closed: {run:?}");
    assert!(run.stderr.contains("not an nnsign state file"), "{run:?}");
}

#[test]
fn lineage_is_recorded_and_inspect_follows_it() {
    let env = Env::new();
    let base = env.pack("base.nns", "digits", "1.0.0", "ci", &[]);
    let tuned = env.pack(
        "tuned.nns",
        "digits-tuned",
        "1.1.0",
        "ci",
        &["--parent", base.to_str().unwrap()],
    );
    let sub = env.path("later");
    std::fs::create_dir(&sub).unwrap();
    let child = {
        let tuned = tuned.to_str().unwrap().to_owned();
        let out = sub.join("child.nns");
        let run = nnsign([
            "pack",
            fixture("tiny.npy").to_str().unwrap(),
            "--sign",
            &env.s("reviewer.key"),
            "--name",
            "digits-child",
            "--model-version",
            "2.0.0",
            "--parent",
            &tuned,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 0, "{run:?}");
        out
    };
    let digest =
        |p: &Path| nnsign(["inspect", p.to_str().unwrap(), "--json"]).json()["digest"].clone();
    let run = nnsign([
        "inspect",
        child.to_str().unwrap(),
        "--json",
        "--search",
        &env.s(""),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let chain = run.json()["lineage"].clone();
    assert_eq!(chain.as_array().unwrap().len(), 2, "{chain}");
    assert_eq!(chain[0]["name"], "digits-tuned");
    assert_eq!(chain[0]["version"], "1.1.0");
    assert_eq!(chain[0]["digest"], digest(&tuned));
    assert_eq!(chain[0]["signers"][0], env.key_id("ci"));
    assert_eq!(chain[1]["name"], "digits");
    assert_eq!(chain[1]["digest"], digest(&base));
    // Without the folder that holds the ancestors, the recorded parent is still shown.
    let run = nnsign(["inspect", child.to_str().unwrap()]);
    assert!(
        run.stdout
            .contains("parent      digits-tuned 1.1.0 sha256:"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("no such artifact in the folders searched"),
        "{run:?}"
    );
    let run = env.verify(&child, &["--trust", &env.s("reviewer.pub"), "--json"]);
    assert_eq!(run.json()["parent"]["digest"], digest(&tuned), "{run:?}");
}

#[test]
fn sign_checks_everything_first_and_replaces_atomically() {
    let env = Env::new();
    let art = env.pack("a.nns", "m", "1.0.0", "ci", &[]);
    let mut bytes = std::fs::read(&art).unwrap();
    let first = nnsign::verify::Artifact::open(&art).unwrap().sizes().1 as usize;
    bytes[first] ^= 1;
    let bad = env.path("bad.nns");
    std::fs::write(&bad, &bytes).unwrap();
    let before = listing(env.dir.path());
    refused(
        &env.sign(&bad, "reviewer"),
        5,
        &bad,
        "does not match its signed digest",
    );
    assert_eq!(
        std::fs::read(&bad).unwrap(),
        bytes,
        "the input is untouched"
    );
    assert_eq!(listing(env.dir.path()), before, "no file left behind");
    // To another file: the original keeps its one signature.
    let out = env.s("b.nns");
    let run = nnsign([
        "sign",
        art.to_str().unwrap(),
        "--key",
        &env.s("reviewer.key"),
        "-o",
        &out,
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["signers"].as_array().unwrap().len(), 2);
    let count = |p: &str| {
        nnsign(["inspect", p, "--json"]).json()["signers"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(art.to_str().unwrap()), 1);
    assert_eq!(count(&out), 2);
    let both =
        env.policy("[[rule]]\nmodels = \"*\"\nsigners = [\"ci\", \"reviewer\"]\nthreshold = 2\n");
    assert_eq!(nnsign(["verify", &out, "--policy", &both]).code, 0);
}

#[test]
fn the_example_policy_accepts_the_published_vector() {
    let art = root().join("tests/vectors/pass_signed.nns");
    let policy = root().join("keys/policy.example.toml");
    let run = nnsign([
        "verify",
        art.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("key demo (730a5edc28c2f8da)"),
        "{run:?}"
    );
}
