//! End-to-end tests of the `nnsign` binary: every verb, every documented error with its exit
//! code, and the guarantees of docs/SECURITY.md (tampering, atomic outputs, key files).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// A fresh key pair `name.key` / `name.pub`.
    fn keygen(&self, name: &str) {
        let run = nnsign(["keygen", "-o", &self.s(name)]);
        assert_eq!(run.code, 0, "{run:?}");
    }

    /// tests/fixtures/tiny.npy packed as `out`, signed by `key` when given.
    fn pack_tiny(&self, key: Option<&str>, out: &str) -> PathBuf {
        let mut args = vec![
            "pack".to_owned(),
            arg(&root().join("tests/fixtures/tiny.npy")),
        ];
        if let Some(k) = key {
            args.extend(["--sign".into(), self.s(&format!("{k}.key"))]);
        }
        args.extend(["-o".into(), self.s(out)]);
        let run = nnsign(args);
        assert_eq!(run.code, 0, "{run:?}");
        self.path(out)
    }

    /// `nnsign unpack ART --trust KEY.pub -o OUT`.
    fn unpack(&self, art: &Path, key: &str, out: &Path) -> Run {
        nnsign([
            "unpack".as_ref(),
            art.as_os_str(),
            "--trust".as_ref(),
            self.path(&format!("{key}.pub")).as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ])
    }

    /// The seed MLP packed and signed by `key`.
    fn seed_artifact(&self, key: &str, out: &str) -> PathBuf {
        let run = nnsign([
            "pack",
            &fixture("keras_seed_mlp/weights.safetensors")
                .display()
                .to_string(),
            "--arch",
            &fixture("keras_seed_mlp/arch.json").display().to_string(),
            "--sign",
            &self.s(&format!("{key}.key")),
            "--name",
            "digits",
            "--model-version",
            "1.2.0",
            "-o",
            &self.s(out),
        ]);
        assert_eq!(run.code, 0, "{run:?}");
        self.path(out)
    }
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn safetensors_round_trip_is_bit_identical_for_every_dtype() {
    let env = Env::new();
    env.keygen("ci");
    let input = fixture("safetensors_dtypes/weights.safetensors");
    let run = nnsign([
        "pack",
        &arg(&input),
        "--sign",
        &env.s("ci.key"),
        "-o",
        &env.s("m.nns"),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let packed = run.json();
    let run = nnsign([
        "verify",
        &env.s("m.nns"),
        "--trust",
        &env.s("ci.pub"),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["digest"], packed["digest"]);
    let run = env.unpack(&env.path("m.nns"), "ci", &env.path("out.safetensors"));
    assert_eq!(run.code, 0, "{run:?}");

    let original = std::fs::read(&input).unwrap();
    let unpacked = std::fs::read(env.path("out.safetensors")).unwrap();
    let a = safetensors::SafeTensors::deserialize(&original).unwrap();
    let b = safetensors::SafeTensors::deserialize(&unpacked).unwrap();
    let mut names = a.names();
    names.sort();
    let mut names_b = b.names();
    names_b.sort();
    assert_eq!(names, names_b);
    // The fixture's README lists these eleven: f32 f64 f16 bf16 i8 u8 i32 i64 bool, 0-d, empty.
    assert_eq!(names.len(), 11, "{names:?}");
    for name in names {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!(x.dtype(), y.dtype(), "{name}");
        assert_eq!(x.shape(), y.shape(), "{name}");
        assert_eq!(x.data(), y.data(), "{name}");
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&unpacked).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["source"], "fixtures");
    assert_eq!(meta["nnsign.name"], "weights");
    assert_eq!(
        meta["nnsign.artifact_digest"],
        packed["digest"].as_str().unwrap()
    );
}

#[test]
fn seed_model_reproduces_keras_to_1e5() {
    let env = Env::new();
    env.keygen("ci");
    let art = env.seed_artifact("ci", "digits.nns");
    let run = nnsign([
        "verify-load",
        &arg(&art),
        "--trust",
        &env.s("ci.pub"),
        "--input",
        &arg(&fixture("keras_seed_mlp/inputs.npy")),
        "--output",
        &env.s("y.npy"),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["loaded"], true);
    assert_eq!(report["model"]["version"], "1.2.0");
    let (shape, got) = read_npy_f32(&env.path("y.npy"));
    let (eshape, expected) = read_npy_f32(&fixture("keras_seed_mlp/expected.npy"));
    assert_eq!(shape, eshape);
    assert_eq!(shape, vec![32, 10]);
    let max = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-5, "max abs difference {max}");
}

fn tiny_artifact(env: &Env) -> PathBuf {
    env.keygen("ci");
    env.pack_tiny(Some("ci"), "tiny.nns")
}

#[test]
fn every_flipped_byte_is_refused_with_a_signature_or_integrity_code() {
    let env = Env::new();
    let art = tiny_artifact(&env);
    let good = std::fs::read(&art).unwrap();
    assert!(
        good.len() < 1024,
        "keep this artifact small: {} bytes",
        good.len()
    );
    let target = env.path("flipped.nns");
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(&target, &bad).unwrap();
        let run = nnsign(["verify", &arg(&target), "--trust", &env.s("ci.pub")]);
        assert!(
            run.code == 4 || run.code == 5,
            "byte {i}: exit {} {}",
            run.code,
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "byte {i}: {}", run.stderr);
        assert_eq!(
            run.stderr.lines().next().unwrap().matches("error:").count(),
            1
        );
        *codes.entry(run.code).or_insert(0) += 1;
    }
    // Both kinds occur: header bytes fail the signature, payload bytes their digest.
    assert_eq!(codes.len(), 2, "{codes:?}");
}

#[test]
fn truncated_appended_empty_garbage_and_swapped_are_refused() {
    let env = Env::new();
    let art = tiny_artifact(&env);
    let good = std::fs::read(&art).unwrap();
    let trust = env.s("ci.pub");
    let check = |bytes: &[u8], code: i32, needle: &str| {
        let p = env.path("case.nns");
        std::fs::write(&p, bytes).unwrap();
        let run = nnsign(["verify", &arg(&p), "--trust", &trust]);
        assert_eq!(run.code, code, "{needle}: {run:?}");
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
        assert!(
            run.stderr.contains(&arg(&p)),
            "names the file: {}",
            run.stderr
        );
    };
    check(&good[..good.len() - 1], 5, "truncated");
    check(&good[..40], 5, "truncated");
    check(&good[..5], 5, "truncated");
    let mut appended = good.clone();
    appended.extend_from_slice(b"evil");
    check(&appended, 5, "4 unexpected bytes after the payload");
    check(b"", 5, "not an nnsign artifact");
    check(
        b"PK\x03\x04 this is a zip, not an artifact",
        5,
        "not an nnsign artifact",
    );
    check(&[0xffu8; 4096], 5, "not an nnsign artifact");

    // Two artifacts of the same layout with their payloads swapped.
    let other = env.path("other.npy");
    let mut npy = std::fs::read(root().join("tests/fixtures/tiny.npy")).unwrap();
    let last = npy.len() - 1;
    npy[last] ^= 0x40;
    std::fs::write(&other, npy).unwrap();
    let run = nnsign([
        "pack",
        &arg(&other),
        "--name",
        "tiny",
        "--sign",
        &env.s("ci.key"),
        "-o",
        &env.s("o.nns"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let b = std::fs::read(env.path("o.nns")).unwrap();
    assert_eq!(b.len(), good.len());
    let payload_at = good.len() - 64;
    let mut swapped = good[..payload_at].to_vec();
    swapped.extend_from_slice(&b[payload_at..]);
    check(&swapped, 5, "does not match its signed digest");
}

#[test]
fn trust_decisions() {
    let env = Env::new();
    let art = tiny_artifact(&env);
    env.keygen("stranger");
    let run = nnsign(["verify", &arg(&art), "--trust", &env.s("stranger.pub")]);
    assert_eq!(run.code, 4);
    let id = std::fs::read_to_string(env.path("ci.pub")).unwrap();
    assert!(!id.is_empty());
    assert!(
        run.stderr.contains("is not in the trust store"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);

    // A directory of .pub files, and NNSIGN_TRUST.
    let keys = env.path("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::copy(env.path("ci.pub"), keys.join("ci.pub")).unwrap();
    std::fs::copy(env.path("stranger.pub"), keys.join("other.pub")).unwrap();
    let run = nnsign(["verify", &arg(&art), "--trust", &arg(&keys), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert_eq!(j["signers"][0]["trusted_by"], arg(&keys.join("ci.pub")));
    let run = nnsign_env(["verify", &arg(&art)], &[("NNSIGN_TRUST", &arg(&keys))]);
    assert_eq!(run.code, 0, "{run:?}");

    // No trust at all is a usage error, not a silent pass.
    let run = nnsign(["verify", &arg(&art)]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no trusted keys"), "{}", run.stderr);
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = nnsign(["verify", &arg(&art), "--trust", &arg(&empty)]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no .pub files found"), "{}", run.stderr);

    // Unsigned: refused, unless allowed; a signed one is never accepted by --allow-unsigned alone.
    let run = nnsign([
        "pack",
        &arg(&root().join("tests/fixtures/tiny.npy")),
        "-o",
        &env.s("u.nns"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("UNSIGNED"), "{}", run.stdout);
    let run = nnsign(["verify", &env.s("u.nns"), "--trust", &env.s("ci.pub")]);
    assert_eq!(run.code, 4);
    assert!(run.stderr.contains("unsigned"), "{}", run.stderr);
    let run = nnsign(["verify", &env.s("u.nns"), "--allow-unsigned"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = nnsign(["verify", &arg(&art), "--allow-unsigned"]);
    assert_eq!(run.code, 4, "{run:?}");
}

#[test]
fn keygen_writes_0600_keys_and_never_overwrites() {
    let env = Env::new();
    let run = nnsign(["keygen", "-o", &env.s("k"), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let id = run.json()["key_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    let mode = std::fs::metadata(env.path("k.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(env.path("k.key")).unwrap();
    let run = nnsign(["keygen", "-o", &env.s("k")]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(std::fs::read(env.path("k.key")).unwrap(), before);
    let tiny = arg(&root().join("tests/fixtures/tiny.npy"));
    let run = nnsign([
        "pack",
        &tiny,
        "--sign",
        &env.s("k.key"),
        "-o",
        &env.s("quiet.nns"),
    ]);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    // A key others can read still signs, with a warning.
    std::fs::set_permissions(env.path("k.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = nnsign([
        "pack",
        &tiny,
        "--sign",
        &env.s("k.key"),
        "-o",
        &env.s("loud.nns"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("private key is accessible to other users (mode 0644)"),
        "{}",
        run.stderr
    );
    // The id is shown by inspect and verify too.
    let art = env.pack_tiny(Some("k"), "a.nns");
    let run = nnsign(["inspect", &arg(&art)]);
    assert!(
        run.stdout.contains(&id) && run.stdout.contains("NOT VERIFIED"),
        "{}",
        run.stdout
    );
    let run = nnsign(["verify", &arg(&art), "--trust", &env.s("k.pub")]);
    assert!(run.stdout.contains(&id), "{}", run.stdout);
}

#[test]
fn passphrase_protected_keys() {
    let env = Env::new();
    let pass = [("NNSIGN_TEST_PASS", "hunter2 but longer")];
    let run = nnsign_env(
        [
            "keygen",
            "-o",
            &env.s("p"),
            "--passphrase-env",
            "NNSIGN_TEST_PASS",
        ],
        &pass,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(std::fs::read_to_string(env.path("p.key"))
        .unwrap()
        .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let tiny = arg(&root().join("tests/fixtures/tiny.npy"));
    let pack = |env_vars: &[(&str, &str)], flag: bool| {
        let mut args = vec![
            "pack".to_owned(),
            tiny.clone(),
            "--sign".into(),
            env.s("p.key"),
        ];
        if flag {
            args.extend(["--key-passphrase-env".into(), "NNSIGN_TEST_PASS".into()]);
        }
        args.extend(["-o".into(), env.s("p.nns")]);
        nnsign_env(args, env_vars)
    };
    let run = pack(&pass, true);
    assert_eq!(run.code, 0, "{run:?}");
    let run = pack(&[("NNSIGN_TEST_PASS", "wrong")], true);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("wrong passphrase"), "{}", run.stderr);
    let run = pack(&[], false);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("passphrase-protected"),
        "{}",
        run.stderr
    );
    let run = pack(&[], true);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("NNSIGN_TEST_PASS: the variable is not set"),
        "{}",
        run.stderr
    );
    // The passphrase never appears in any output.
    assert!(!run.stderr.contains("hunter2"));
    // --passphrase-env on pack encrypts the artifact; it no longer unlocks the signing key, and
    // a command written for that meaning fails instead of guessing.
    let run = nnsign_env(
        [
            "pack",
            &tiny,
            "--sign",
            &env.s("p.key"),
            "--passphrase-env",
            "NNSIGN_TEST_PASS",
            "-o",
            &env.s("old.nns"),
        ],
        &pass,
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("give its passphrase with --key-passphrase-env VAR (--passphrase-env encrypts the artifact"),
        "{}",
        run.stderr
    );
    assert!(!env.path("old.nns").exists());
}

fn openssl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (.ci/run installs it)")
}

#[test]
fn openssl_interop_both_ways() {
    let env = Env::new();
    env.keygen("ours");
    // Our private key, read by OpenSSL, yields exactly our .pub.
    let out = openssl(&["pkey", "-in", &env.s("ours.key"), "-pubout"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, std::fs::read(env.path("ours.pub")).unwrap());

    // A key OpenSSL made signs artifacts, and its OpenSSL-derived .pub verifies them.
    let out = openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        &env.s("theirs.key"),
    ]);
    assert!(out.status.success());
    let out = openssl(&[
        "pkey",
        "-in",
        &env.s("theirs.key"),
        "-pubout",
        "-out",
        &env.s("theirs.pub"),
    ]);
    assert!(out.status.success());
    let tiny = arg(&root().join("tests/fixtures/tiny.npy"));
    let run = nnsign([
        "pack",
        &tiny,
        "--sign",
        &env.s("theirs.key"),
        "-o",
        &env.s("t.nns"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = nnsign(["verify", &env.s("t.nns"), "--trust", &env.s("theirs.pub")]);
    assert_eq!(run.code, 0, "{run:?}");

    // Encrypted keys both ways: OpenSSL PBES2 (PBKDF2 + AES) read by us, ours read by OpenSSL.
    let out = openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        &env.s("theirs.key"),
        "-out",
        &env.s("theirs-enc.key"),
        "-passout",
        "pass:sesame",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = nnsign_env(
        [
            "pack",
            &tiny,
            "--sign",
            &env.s("theirs-enc.key"),
            "--key-passphrase-env",
            "P",
            "-o",
            &env.s("t2.nns"),
        ],
        &[("P", "sesame")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = nnsign_env(
        ["keygen", "-o", &env.s("enc"), "--passphrase-env", "P"],
        &[("P", "sesame")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let out = openssl(&[
        "pkey",
        "-in",
        &env.s("enc.key"),
        "-passin",
        "pass:sesame",
        "-pubout",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, std::fs::read(env.path("enc.pub")).unwrap());
}

#[test]
fn failed_outputs_leave_nothing_behind_and_inputs_untouched() {
    let env = Env::new();
    let art = tiny_artifact(&env);
    let mut bad = std::fs::read(&art).unwrap();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let out_dir = env.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let tampered = out_dir.join("bad.nns");
    std::fs::write(&tampered, &bad).unwrap();
    let run = env.unpack(&tampered, "ci", &out_dir.join("w.safetensors"));
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(listing(&out_dir), vec!["bad.nns"]);
    assert_eq!(std::fs::read(&tampered).unwrap(), bad);

    // An existing output is kept as it was when the new one fails.
    std::fs::write(out_dir.join("w.safetensors"), b"old").unwrap();
    let run = env.unpack(&tampered, "ci", &out_dir.join("w.safetensors"));
    assert_eq!(run.code, 5);
    assert_eq!(
        std::fs::read(out_dir.join("w.safetensors")).unwrap(),
        b"old"
    );
    assert_eq!(listing(&out_dir), vec!["bad.nns", "w.safetensors"]);

    // pack refuses to write over its own input.
    let input = env.path("in.npy");
    std::fs::copy(root().join("tests/fixtures/tiny.npy"), &input).unwrap();
    let run = nnsign(["pack", &arg(&input), "-o", &arg(&input)]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        std::fs::read(&input).unwrap(),
        std::fs::read(root().join("tests/fixtures/tiny.npy")).unwrap()
    );
}

#[test]
fn documented_errors_have_their_exit_codes() {
    let env = Env::new();
    let art = tiny_artifact(&env);
    let trust = env.s("ci.pub");
    let tiny = arg(&root().join("tests/fixtures/tiny.npy"));
    // 2: usage.
    let run = nnsign(["verify"]);
    assert_eq!(run.code, 2);
    let run = nnsign(["frobnicate"]);
    assert_eq!(run.code, 2);
    let run = nnsign(["pack", &tiny, "-o", &env.s("x.nns"), "--label", "novalue"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("expected KEY=VALUE"), "{}", run.stderr);
    // 3: I/O.
    let run = nnsign(["verify", &env.s("missing.nns"), "--trust", &trust]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("missing.nns") && run.stderr.contains("No such file"),
        "{}",
        run.stderr
    );
    let run = nnsign(["pack", &tiny, "-o", &env.s("no/such/dir/x.nns")]);
    assert_eq!(run.code, 3, "{run:?}");
    // 1: bad input files.
    let junk = env.path("junk.bin");
    std::fs::write(&junk, b"hello world, not a model").unwrap();
    let run = nnsign(["pack", &arg(&junk), "-o", &env.s("x.nns")]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("junk.bin: not a safetensors, .npy, .npz, ONNX, PyTorch, Keras or GGUF file"),
        "{}",
        run.stderr
    );
    let run = nnsign(["pack", &tiny, "--sign", &trust, "-o", &env.s("x.nns")]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("this is a public key"),
        "{}",
        run.stderr
    );
    let dup = env.path("dup.npy");
    std::fs::copy(root().join("tests/fixtures/tiny.npy"), &dup).unwrap();
    let dup2_dir = env.path("d2");
    std::fs::create_dir(&dup2_dir).unwrap();
    std::fs::copy(
        root().join("tests/fixtures/tiny.npy"),
        dup2_dir.join("dup.npy"),
    )
    .unwrap();
    let run = nnsign([
        "pack",
        &arg(&dup),
        &arg(&dup2_dir.join("dup.npy")),
        "-o",
        &env.s("x.nns"),
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("tensor \"dup\" appears in both"),
        "{}",
        run.stderr
    );
    let obj = env.path("obj.npy");
    let mut o = b"\x93NUMPY\x01\x00".to_vec();
    let header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }          \n";
    o.extend_from_slice(&(header.len() as u16).to_le_bytes());
    o.extend_from_slice(header);
    o.extend_from_slice(b"\x80\x02cposix\nsystem\nq\x00.");
    std::fs::write(&obj, o).unwrap();
    let run = nnsign(["pack", &arg(&obj), "-o", &env.s("x.nns")]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("object array refused"),
        "{}",
        run.stderr
    );
    // 6: schema, at pack time and at load time.
    let bad_arch = env.path("bad.json");
    std::fs::write(
        &bad_arch,
        std::fs::read_to_string(fixture("keras_seed_mlp/arch.json"))
            .unwrap()
            .replace("784]", "783]"),
    )
    .unwrap();
    let run = nnsign([
        "pack",
        &arg(&fixture("keras_seed_mlp/weights.safetensors")),
        "--arch",
        &arg(&bad_arch),
        "-o",
        &env.s("x.nns"),
    ]);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.contains(
            "node \"dense\" (Dense): input [batch, 783] does not fit kernel [784, 32] (kernel is [inputs, units]): 783 != 784 (its inputs: \"pixels\" [batch, 783], \"dense/kernel\" [784, 32], \"dense/bias\" [32])"
        ),
        "{}",
        run.stderr
    );
    env.keygen("k2");
    let seed = env.seed_artifact("k2", "seed.nns");
    let run = nnsign([
        "verify-load",
        &arg(&seed),
        "--trust",
        &env.s("k2.pub"),
        "--max-memory",
        "1000",
    ]);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.contains("more than the limit of 1000"),
        "{}",
        run.stderr
    );
    let run = nnsign(["verify-load", &arg(&art), "--trust", &trust]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("no architecture"), "{}", run.stdout);
    let run = nnsign([
        "verify-load",
        &arg(&art),
        "--trust",
        &trust,
        "--input",
        &tiny,
    ]);
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("weights only"), "{}", run.stderr);
    // 1: an input that does not fit the model.
    let run = nnsign([
        "verify-load",
        &arg(&seed),
        "--trust",
        &env.s("k2.pub"),
        "--input",
        &tiny,
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "input \"pixels\": dimension 1 is 3, the model takes 784 (shape [batch, 784])"
        ),
        "{}",
        run.stderr
    );
    // JSON errors.
    let run = nnsign(["verify", &env.s("missing.nns"), "--trust", &trust, "--json"]);
    let j = run.json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["exit_code"], 3);
    assert_eq!(j["error"]["kind"], "io");
}

#[test]
fn every_verb_has_help_with_an_example() {
    for verb in [
        "keygen",
        "pack",
        "verify",
        "verify-load",
        "inspect",
        "unpack",
        "demo",
        "scan",
    ] {
        let run = nnsign([verb, "--help"]);
        assert_eq!(run.code, 0, "{verb}");
        assert!(run.stdout.contains("Example"), "{verb}: {}", run.stdout);
        assert!(run.stdout.contains("--json"), "{verb}");
    }
}

#[test]
fn inspect_reads_without_trust_and_says_so() {
    let env = Env::new();
    env.keygen("ci");
    let seed = env.seed_artifact("ci", "seed.nns");
    let run = nnsign(["inspect", &arg(&seed), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert_eq!(j["verified"], false);
    assert_eq!(j["model"]["name"], "digits");
    assert_eq!(j["tensors"][1]["name"], "dense/kernel");
    assert_eq!(j["tensors"][1]["shape"], serde_json::json!([784, 32]));
    assert_eq!(
        j["architecture"]["nodes"][1]["attrs"]["activation"],
        "softmax"
    );
    assert_eq!(j["signers"][0]["signature"], "valid (trust not checked)");
}

#[test]
fn demo_runs_offline_and_refuses_tampering() {
    let run = nnsign(["demo", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let j = run.json();
    assert_eq!(j["correct"], 30);
    assert!(j["tampered_refused"]
        .as_str()
        .unwrap()
        .contains("dense/kernel"));
    let alone = j["cosign"]["refused_alone"].as_str().unwrap();
    assert!(
        alone.contains("needs 2 signature(s)") && alone.contains("it has 1"),
        "{alone}"
    );
    assert_eq!(j["cosign"]["signers_after"], 2);
}

#[test]
fn numpy_inputs_are_stored_c_order_little_endian() {
    let env = Env::new();
    env.keygen("ci");
    let run = nnsign([
        "pack",
        &arg(&root().join("tests/fixtures/fortran_f64.npy")),
        &arg(&root().join("tests/fixtures/bigendian_i32.npy")),
        &arg(&root().join("tests/fixtures/two.npz")),
        "--sign",
        &env.s("ci.key"),
        "-o",
        &env.s("np.nns"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = env.unpack(&env.path("np.nns"), "ci", &env.path("np.safetensors"));
    assert_eq!(run.code, 0, "{run:?}");
    let bytes = std::fs::read(env.path("np.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f = st.tensor("fortran_f64").unwrap();
    assert_eq!(f.shape(), [2, 3, 4]);
    let values: Vec<f64> = f
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(values, (0..24).map(f64::from).collect::<Vec<_>>());
    let b = st.tensor("bigendian_i32").unwrap();
    let values: Vec<i32> = b
        .data()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(values, vec![0, 1, 2, 3, 4, 5]);
    let alpha = st.tensor("alpha").unwrap();
    assert_eq!(alpha.dtype(), safetensors::Dtype::I16);
    assert_eq!(alpha.data(), [0, 0, 1, 0, 2, 0, 3, 0, 4, 0]);
    let beta = st.tensor("beta").unwrap();
    assert_eq!(beta.shape(), [3, 3]);
    assert_eq!(&beta.data()[..4], &1f32.to_le_bytes());
}

/// Regressions from review: each of these once overwrote a key, hung, or panicked.
#[test]
fn review_regressions() {
    let env = Env::new();
    let tiny = arg(&root().join("tests/fixtures/tiny.npy"));
    env.keygen("ci");
    let key_before = std::fs::read(env.path("ci.key")).unwrap();
    // pack -o naming its own signing key or architecture.
    let run = nnsign([
        "pack",
        &tiny,
        "--sign",
        &env.s("ci.key"),
        "-o",
        &env.s("ci.key"),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("never overwrites what it reads"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(env.path("ci.key")).unwrap(), key_before);
    // A device or pipe is not an artifact (it has no length; /dev/zero never ends).
    for device in ["/dev/zero", "/dev/null"] {
        let run = nnsign(["verify", device, "--trust", &env.s("ci.pub")]);
        assert_eq!(run.code, 3, "{run:?}");
        assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    }
    // A creation time past year 9999 is refused, not a panic in date formatting.
    let far = root().join("tests/vectors/fail_created_out_of_range.nns");
    let run = nnsign(["inspect", &arg(&far)]);
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("is after 9999-12-31"), "{}", run.stderr);
    let run = nnsign_env(
        ["pack", &tiny, "-o", &env.s("far.nns")],
        &[("SOURCE_DATE_EPOCH", "253402300800")],
    );
    assert_eq!(run.code, 1, "{run:?}");
    // Reserved labels cannot be set, and unpack always says who signed (nobody, here).
    let run = nnsign([
        "pack",
        &tiny,
        "--label",
        "nnsign.signers=730a5edc28c2f8da",
        "-o",
        &env.s("l.nns"),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = nnsign(["pack", &tiny, "-o", &env.s("u.nns")]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = nnsign([
        "unpack",
        &env.s("u.nns"),
        "--allow-unsigned",
        "-o",
        &env.s("u.safetensors"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let bytes = std::fs::read(env.path("u.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["nnsign.signers"], "");
}

#[test]
fn encryption_keys_interoperate_with_openssl_and_are_refused_for_signing() {
    use nnsign::keys::encryption::{EncryptionPublicKey, EncryptionSecretKey};
    let env = Env::new();
    let run = nnsign(["keygen", "--encryption", "-o", &env.s("edge"), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["algorithm"], "X25519");
    let mode = std::fs::metadata(env.path("edge.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Ours read by OpenSSL.
    let out = openssl(&["pkey", "-in", &env.s("edge.key"), "-pubout"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, std::fs::read(env.path("edge.pub")).unwrap());
    // OpenSSL's read by us.
    let out = openssl(&["genpkey", "-algorithm", "x25519", "-out", &env.s("x.key")]);
    assert!(out.status.success());
    let out = openssl(&[
        "pkey",
        "-in",
        &env.s("x.key"),
        "-pubout",
        "-out",
        &env.s("x.pub"),
    ]);
    assert!(out.status.success());
    let theirs = EncryptionSecretKey::read(&env.path("x.key"), || Ok(None)).unwrap();
    assert_eq!(
        theirs.public(),
        EncryptionPublicKey::read(&env.path("x.pub")).unwrap()
    );
    // Each kind is refused, by name, where the other is needed.
    let tiny = arg(&root().join("tests/fixtures/tiny.npy"));
    let run = nnsign([
        "pack",
        &tiny,
        "--sign",
        &env.s("edge.key"),
        "-o",
        &env.s("e.nns"),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("this is an X25519 encryption key"),
        "{}",
        run.stderr
    );
    env.keygen("ci");
    let art = env.pack_tiny(Some("ci"), "t.nns");
    let run = nnsign(["verify", &arg(&art), "--trust", &env.s("edge.pub")]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("edge.pub: this is an X25519 encryption key"),
        "{}",
        run.stderr
    );
}

/// Issue 3: encrypted artifacts end to end.
#[test]
fn encrypted_round_trips_for_one_and_three_recipients_and_verifies_without_a_key() {
    let env = Env::new();
    env.keygen("ci");
    for r in ["r1", "r2", "r3", "stranger"] {
        let run = nnsign(["keygen", "--encryption", "-o", &env.s(r)]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let weights = arg(&fixture("keras_seed_mlp/weights.safetensors"));
    let arch = arg(&fixture("keras_seed_mlp/arch.json"));
    let pack = |out: &str, to: &[&str]| {
        let mut args = vec![
            "pack".to_owned(),
            weights.clone(),
            "--arch".into(),
            arch.clone(),
            "--sign".into(),
            env.s("ci.key"),
            "-o".into(),
            env.s(out),
            "--json".into(),
        ];
        for r in to {
            args.extend(["--encrypt-to".into(), env.s(&format!("{r}.pub"))]);
        }
        let run = nnsign(args);
        assert_eq!(run.code, 0, "{run:?}");
        run.json()
    };
    let one = pack("one.nns", &["r1"]);
    assert_eq!(one["encrypted_to"].as_array().unwrap().len(), 1);
    pack("three.nns", &["r1", "r2", "r3"]);
    // Nothing of the model is readable without a key: no tensor name, no layer name.
    let bytes = std::fs::read(env.path("one.nns")).unwrap();
    for secret in [&b"dense/kernel"[..], b"dense_1", b"probabilities"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "{}",
            String::from_utf8_lossy(secret)
        );
    }
    // verify needs no key; inspect says what is hidden.
    let run = nnsign([
        "verify",
        &env.s("three.nns"),
        "--trust",
        &env.s("ci.pub"),
        "--json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["encrypted_to"].as_array().unwrap().len(), 3);
    let run = nnsign(["inspect", &env.s("one.nns")]);
    assert!(
        run.stdout
            .contains("tensor names, shapes, architecture and weights"),
        "{}",
        run.stdout
    );
    // Each recipient alone decrypts, and the model reproduces Keras.
    let inputs = arg(&fixture("keras_seed_mlp/inputs.npy"));
    let (_, expected) = read_npy_f32(&fixture("keras_seed_mlp/expected.npy"));
    for (art, key) in [
        ("one.nns", "r1"),
        ("three.nns", "r1"),
        ("three.nns", "r2"),
        ("three.nns", "r3"),
    ] {
        let out = env.path(&format!("{art}-{key}.npy"));
        let run = nnsign([
            "verify-load",
            &env.s(art),
            "--trust",
            &env.s("ci.pub"),
            "--decrypt-with",
            &env.s(&format!("{key}.key")),
            "--input",
            &inputs,
            "--output",
            &arg(&out),
        ]);
        assert_eq!(run.code, 0, "{art} {key}: {run:?}");
        let (_, got) = read_npy_f32(&out);
        let max = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max <= 1e-5, "{art} {key}: {max}");
    }
    // unpack decrypts to the original weights, bit for bit.
    let run = nnsign([
        "unpack",
        &env.s("three.nns"),
        "--trust",
        &env.s("ci.pub"),
        "--decrypt-with",
        &env.s("r2.key"),
        "-o",
        &env.s("w.safetensors"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let original = std::fs::read(fixture("keras_seed_mlp/weights.safetensors")).unwrap();
    let unpacked = std::fs::read(env.path("w.safetensors")).unwrap();
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&original).unwrap(),
        safetensors::SafeTensors::deserialize(&unpacked).unwrap(),
    );
    for name in a.names() {
        assert_eq!(
            a.tensor(name).unwrap().data(),
            b.tensor(name).unwrap().data(),
            "{name}"
        );
    }
    // A missing key, a stranger's key, and a raw artifact given a key.
    let run = nnsign([
        "verify-load",
        &env.s("one.nns"),
        "--trust",
        &env.s("ci.pub"),
    ]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(
        run.stderr.contains("the artifact is encrypted"),
        "{}",
        run.stderr
    );
    let run = nnsign([
        "unpack",
        &env.s("one.nns"),
        "--trust",
        &env.s("ci.pub"),
        "-o",
        &env.s("x.safetensors"),
    ]);
    assert_eq!(run.code, 7, "{run:?}");
    let run = nnsign([
        "verify-load",
        &env.s("one.nns"),
        "--trust",
        &env.s("ci.pub"),
        "--decrypt-with",
        &env.s("stranger.key"),
    ]);
    assert_eq!(run.code, 7, "{run:?}");
    assert!(
        run.stderr.contains("not encrypted to key"),
        "{}",
        run.stderr
    );
    assert!(!env.path("x.safetensors").exists());
    let plain = env.seed_artifact("ci", "plain.nns");
    let run = nnsign([
        "verify-load",
        &arg(&plain),
        "--trust",
        &env.s("ci.pub"),
        "--decrypt-with",
        &env.s("r1.key"),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    // A signing key is not an encryption key, either way round.
    let run = nnsign([
        "pack",
        &weights,
        "--encrypt-to",
        &env.s("ci.pub"),
        "-o",
        &env.s("y.nns"),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
}

#[test]
fn every_flipped_byte_of_an_encrypted_artifact_is_refused() {
    let env = Env::new();
    env.keygen("ci");
    let run = nnsign(["keygen", "--encryption", "-o", &env.s("r")]);
    assert_eq!(run.code, 0);
    let run = nnsign([
        "pack",
        &arg(&root().join("tests/fixtures/tiny.npy")),
        "--sign",
        &env.s("ci.key"),
        "--encrypt-to",
        &env.s("r.pub"),
        "-o",
        &env.s("e.nns"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let good = std::fs::read(env.path("e.nns")).unwrap();
    assert!(good.len() < 1200, "{}", good.len());
    let target = env.path("bad.nns");
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x80;
        std::fs::write(&target, &bad).unwrap();
        let run = nnsign([
            "verify-load",
            &arg(&target),
            "--trust",
            &env.s("ci.pub"),
            "--decrypt-with",
            &env.s("r.key"),
        ]);
        assert!(
            run.code == 4 || run.code == 5,
            "byte {i}: exit {} {}",
            run.code,
            run.stderr
        );
    }
}

/// Issue 3: an artifact encrypted with a passphrase (Argon2id), end to end.
#[test]
fn passphrase_encryption_round_trips_and_each_mistake_has_its_own_error() {
    let env = Env::new();
    env.keygen("ci");
    let run = nnsign(["keygen", "--encryption", "-o", &env.s("r")]);
    assert_eq!(run.code, 0, "{run:?}");
    let pass = [("MODEL_PASS", "a long and secret phrase")];
    let weights = arg(&fixture("keras_seed_mlp/weights.safetensors"));
    let arch = arg(&fixture("keras_seed_mlp/arch.json"));
    let run = nnsign_env(
        [
            "pack",
            &weights,
            "--arch",
            &arch,
            "--sign",
            &env.s("ci.key"),
            "--passphrase-env",
            "MODEL_PASS",
            "-o",
            &env.s("p.nns"),
            "--json",
        ],
        &pass,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.json()["encrypted_to"],
        serde_json::json!(["a passphrase"])
    );
    let bytes = std::fs::read(env.path("p.nns")).unwrap();
    assert!(!bytes.windows(7).any(|w| w == b"dense_1"));
    // Verifying needs no passphrase; inspect says a passphrase protects it.
    let trust = env.s("ci.pub");
    let run = nnsign(["verify", &env.s("p.nns"), "--trust", &trust]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("encrypted to a passphrase"),
        "{}",
        run.stdout
    );
    let run = nnsign(["inspect", &env.s("p.nns")]);
    assert!(
        run.stdout.contains("encrypted   to a passphrase"),
        "{}",
        run.stdout
    );
    // The passphrase opens it: the model reproduces Keras and unpacks bit for bit.
    let out = env.path("y.npy");
    let run = nnsign_env(
        [
            "verify-load",
            &env.s("p.nns"),
            "--trust",
            &trust,
            "--passphrase-env",
            "MODEL_PASS",
            "--input",
            &arg(&fixture("keras_seed_mlp/inputs.npy")),
            "--output",
            &arg(&out),
        ],
        &pass,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let (_, got) = read_npy_f32(&out);
    let (_, expected) = read_npy_f32(&fixture("keras_seed_mlp/expected.npy"));
    let max = (got.iter().zip(&expected)).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(max <= 1e-5, "{max}");
    let unpack = |art: &str, extra: &[&str], vars: &[(&str, &str)], out: &str| {
        let mut args = vec!["unpack", art, "--trust", &trust, "-o", out];
        args.extend(extra);
        nnsign_env(args, vars)
    };
    let w = env.s("w.safetensors");
    let run = unpack(
        &env.s("p.nns"),
        &["--passphrase-env", "MODEL_PASS"],
        &pass,
        &w,
    );
    assert_eq!(run.code, 0, "{run:?}");
    let plain = env.seed_artifact("ci", "plain.nns");
    let run = unpack(&arg(&plain), &[], &[], &env.s("plain.safetensors"));
    assert_eq!(run.code, 0, "{run:?}");
    // Same metadata apart from the artifact digest, same tensors: compare the tensors.
    let (a, b) = (
        std::fs::read(&w).unwrap(),
        std::fs::read(env.path("plain.safetensors")).unwrap(),
    );
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    assert_eq!(a.names().len(), b.names().len());
    for name in b.names() {
        assert_eq!(
            a.tensor(name).unwrap().data(),
            b.tensor(name).unwrap().data(),
            "{name}"
        );
    }
    // Each mistake: its own message, exit 7 (2 for a passphrase given to a plain artifact),
    // and no output file.
    let wrong = [("MODEL_PASS", "a long and secret phrasE")];
    // (artifact, flags, environment, exit code, message)
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        i32,
        &'a str,
    );
    let cases: [Case; 5] = [
        (
            "p.nns",
            &["--passphrase-env", "MODEL_PASS"],
            &wrong,
            7,
            "the passphrase does not open",
        ),
        (
            "p.nns",
            &[],
            &[],
            7,
            "encrypted with a passphrase; give it with --passphrase-env",
        ),
        (
            "p.nns",
            &["--decrypt-with", &env.s("r.key")],
            &[],
            7,
            "not encrypted to key",
        ),
        (
            "plain.nns",
            &["--passphrase-env", "MODEL_PASS"],
            &pass,
            2,
            "not encrypted; drop --passphrase-env",
        ),
        (
            "p.nns",
            &["--passphrase-env", "UNSET_VAR"],
            &[],
            1,
            "--passphrase-env UNSET_VAR: the variable is not set",
        ),
    ];
    for (art, extra, vars, code, message) in cases {
        let run = unpack(&env.s(art), extra, vars, &env.s("x.safetensors"));
        assert_eq!(run.code, code, "{art} {extra:?}: {run:?}");
        assert!(
            run.stderr.contains(message),
            "{art} {extra:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("secret phrase"), "{}", run.stderr);
        assert!(!env.path("x.safetensors").exists());
    }
    // A key-encrypted artifact given a passphrase says what it needs instead.
    let run = nnsign([
        "pack",
        &weights,
        "--sign",
        &env.s("ci.key"),
        "--encrypt-to",
        &env.s("r.pub"),
        "-o",
        &env.s("k.nns"),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = unpack(
        &env.s("k.nns"),
        &["--passphrase-env", "MODEL_PASS"],
        &pass,
        &env.s("x.safetensors"),
    );
    assert_eq!(run.code, 7, "{run:?}");
    assert!(
        run.stderr
            .contains("not to a passphrase; give the matching key with --decrypt-with KEY"),
        "{}",
        run.stderr
    );
    // A passphrase and recipients cannot be mixed, and a key and a passphrase are not both given.
    let run = nnsign_env(
        [
            "pack",
            &weights,
            "--passphrase-env",
            "MODEL_PASS",
            "--encrypt-to",
            &env.s("r.pub"),
            "-o",
            &env.s("m.nns"),
        ],
        &pass,
    );
    assert_eq!(run.code, 2, "{run:?}");
    let run = unpack(
        &env.s("k.nns"),
        &[
            "--passphrase-env",
            "MODEL_PASS",
            "--decrypt-with",
            &env.s("r.key"),
        ],
        &pass,
        &env.s("x.safetensors"),
    );
    assert_eq!(run.code, 2, "{run:?}");
    // Without a terminal, the prompt flag says what to use instead.
    let run = nnsign([
        "pack",
        &weights,
        "--passphrase-prompt",
        "-o",
        &env.s("m.nns"),
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("needs a terminal"), "{}", run.stderr);
    assert!(!env.path("m.nns").exists());
}

#[test]
fn version_verbose_names_the_crypto_backends() {
    let run = nnsign(["--version", "--verbose"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], format!("nnsign {}", env!("CARGO_PKG_VERSION")));
    let backend = |name: &str| {
        let line = lines.iter().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..].trim().to_owned()
    };
    let sha = backend("SHA-256");
    assert!(
        ["x86 SHA extensions (SHA-NI)", "portable"].contains(&sha.as_str()),
        "{sha}"
    );
    let chacha = backend("ChaCha20");
    assert!(
        ["AVX-512", "AVX2", "SSE2", "portable"].contains(&chacha.as_str()),
        "{chacha}"
    );
    let poly = backend("Poly1305");
    assert!(["AVX2", "portable"].contains(&poly.as_str()), "{poly}");
    // Plain --version is one line, as before; --verbose alone is a usage error.
    assert_eq!(
        nnsign(["--version"]).stdout,
        run.stdout.lines().next().unwrap().to_owned() + "\n"
    );
    assert_eq!(nnsign(["--verbose"]).code, 2);
    // No command at all: the help on stderr, exit 2, as before.
    let bare = nnsign(Vec::<&str>::new());
    assert_eq!(bare.code, 2);
    assert!(
        bare.stderr.contains("Commands:") && bare.stdout.is_empty(),
        "{bare:?}"
    );
}

/// Issue 16: a co-signature that counts for nothing (its alg is one nnsign does not implement,
/// as after a one-bit change of -19 to -20) is said loudly by every verb that accepts the
/// artifact: a warning line on stderr naming the key id and the alg, and a JSON field.
#[test]
fn an_unsupported_cosignature_is_a_warning_on_every_accepting_verb() {
    let art = arg(&root().join("tests/vectors/pass_cosignature_unsupported_alg.nns"));
    let trust = arg(&root().join("tests/keys/test-a.pub"));
    let warning = format!(
        "nnsign: warning: {art}: signature by key b28baab33e1f95a7 uses COSE algorithm -20"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.safetensors");
    for verb in [
        vec!["verify"],
        vec!["verify-load"],
        vec!["unpack", "-o", out.to_str().unwrap()],
    ] {
        let mut args = verb.clone();
        args.extend([art.as_str(), "--trust", &trust]);
        let run = nnsign(&args);
        assert_eq!(run.code, 0, "{verb:?}: {run:?}");
        assert!(run.stderr.starts_with(&warning), "{verb:?}: {run:?}");
        assert!(
            run.stdout.contains("COSE algorithm -20"),
            "{verb:?}: {run:?}"
        );
        let _ = std::fs::remove_file(&out);
    }
    let run = nnsign(["verify", &art, "--trust", &trust, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.json()["unsupported_signatures"],
        serde_json::json!([{"key_id": "b28baab33e1f95a7", "algorithm": -20}])
    );
    // --quiet prints nothing but errors.
    let run = nnsign(["verify", &art, "--trust", &trust, "-q"]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:?}");
}
