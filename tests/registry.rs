//! `nnsign push`, `nnsign pull` and `verify oci://` against a real registry (Debian's
//! docker-registry, Docker Distribution 2.8, started on loopback by tests/common/registry.rs),
//! and an independent ORAS client (the `oras` Python SDK, scripts/oras_interop.py) on the
//! other side. Without the registry these tests say SKIPPED, unless NNSIGN_TEST_REGISTRY=required
//! (set by .ci/run), where they fail.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;

use common::registry::{OrasScript, Registry};
use common::{arrays, listing, nnsign_env, test_key, write_npy_f32, Run};

const USER: &str = "ci-bot";
const PASSWORD: &str = "correct horse battery staple";

/// Runs nnsign with a Docker config folder of its own (empty unless `docker` is given), so that
/// no credentials of the machine running the tests are used.
fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let docker = tempfile::tempdir().unwrap();
    let mut all = vec![("DOCKER_CONFIG", docker.path().to_str().unwrap())];
    all.extend_from_slice(env);
    nnsign_env(args, &all)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Four float32 tensors, about 9 MB, packed into `dir/NAME.nns` signed by test-a, with the
/// extra pack flags given (e.g. `--shard-size 4MiB`).
fn packed(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["pack".to_owned()];
    for (k, (t, n)) in [
        ("a", 750_000usize),
        ("b", 250_000),
        ("c", 10),
        ("d", 1_250_000),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.join(format!("{t}.npy"));
        let values: Vec<f32> = (0..n).map(|i| (i % 997) as f32 * 0.5 - k as f32).collect();
        write_npy_f32(&path, &[n as u64], &values);
        args.push(s(&path).to_owned());
    }
    let out = dir.join(format!("{name}.nns"));
    args.extend(["--sign", s(&test_key("test-a.key")), "-o", s(&out)].map(String::from));
    args.extend(extra.iter().map(|e| e.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run(&args, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    out
}

/// The files of an artifact: its .nns and its shard files.
fn files(art: &Path) -> Vec<PathBuf> {
    let stem = art.file_stem().unwrap().to_str().unwrap().to_owned();
    let mut out = vec![art.to_owned()];
    let mut shards: Vec<PathBuf> = std::fs::read_dir(art.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(&format!("{stem}-")) && n.ends_with(".nnshard")
        })
        .collect();
    shards.sort();
    out.extend(shards);
    out
}

fn push(art: &Path, reference: &str, env: &[(&str, &str)]) -> Run {
    run(&["push", s(art), reference, "--insecure", "--json"], env)
}

fn pull(reference: &str, out: &Path, env: &[(&str, &str)]) -> Run {
    run(
        &[
            "pull",
            reference,
            "-o",
            s(out),
            "--trust",
            s(&test_key("test-a.pub")),
            "--insecure",
            "--json",
        ],
        env,
    )
}

fn assert_failed(r: &Run, code: i32, says: &str) {
    assert_eq!(r.code, code, "stdout {} stderr {}", r.stdout, r.stderr);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(says), "{message:?} does not say {says:?}");
}

/// The same bytes, file for file, under the pulled artifact's names.
fn assert_same_files(original: &Path, pulled: &Path) {
    let (a, b) = (files(original), files(pulled));
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{x:?} vs {y:?}"
        );
    }
}

#[test]
fn push_and_pull_round_trip_one_file_and_sharded() {
    let Some(registry) = Registry::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The sharded one is uploaded in 4 MiB chunks (every blob over 1 MiB), the other in one
    // request per blob.
    for (name, extra, layers, chunked_above) in [
        ("plain", &[][..], 1, "256MiB"),
        ("sharded", &["--shard-size", "4MiB"][..], 4, "1MiB"),
    ] {
        let art = packed(dir.path(), name, extra);
        let reference = registry.reference("models/m", name);
        let pushed = run(
            &[
                "push",
                s(&art),
                &reference,
                "--insecure",
                "--json",
                "--chunked-above",
                chunked_above,
            ],
            &[],
        );
        assert_eq!(pushed.code, 0, "{}", pushed.stderr);
        let report = pushed.json();
        let sent = report["layers"].as_array().unwrap();
        assert_eq!(sent.len(), layers);
        assert!(sent.iter().all(|l| l["already_there"] == false));
        let manifest_digest = report["manifest_digest"].as_str().unwrap().to_owned();
        assert_eq!(registry.tag_digest("models/m", name), manifest_digest);

        // The manifest the registry stored is the documented one (docs/DISTRIBUTION.md).
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(registry.blob_path(&manifest_digest)).unwrap())
                .unwrap();
        assert_eq!(stored["artifactType"], "application/vnd.nnsign.model.v1");
        assert_eq!(
            stored["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        let types: Vec<&str> = (stored["layers"].as_array().unwrap().iter())
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        let mut want = vec!["application/vnd.nnsign.artifact.v1"];
        want.resize(layers, "application/vnd.nnsign.shard.v1");
        assert_eq!(types, want);
        for (layer, file) in stored["layers"].as_array().unwrap().iter().zip(files(&art)) {
            let bytes = std::fs::read(&file).unwrap();
            assert_eq!(layer["size"], bytes.len());
            assert_eq!(
                layer["annotations"]["org.opencontainers.image.title"],
                file.file_name().unwrap().to_str().unwrap()
            );
            // The registry's address of each blob is the SHA-256 of the file.
            assert_eq!(
                std::fs::read(registry.blob_path(layer["digest"].as_str().unwrap())).unwrap(),
                bytes
            );
        }

        // A second push sends nothing.
        let again = push(&art, &reference, &[]);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert_eq!(again.json()["bytes_sent"], 0);
        assert_eq!(again.json()["manifest_digest"], manifest_digest.as_str());

        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("got.nns");
        let pulled = pull(&reference, &out, &[]);
        assert_eq!(pulled.code, 0, "{}", pulled.stderr);
        assert_eq!(pulled.json()["manifest_digest"], manifest_digest.as_str());
        assert_same_files(&art, &out);
        // Only the artifact's files: no staging folder, no partial file.
        assert_eq!(listing(out_dir.path()).len(), layers);

        // By digest, and straight from the registry with verify oci://.
        let pinned = format!("{}/models/m@{manifest_digest}", registry.addr());
        let out2 = out_dir.path().join("pinned.nns");
        assert_eq!(pull(&pinned, &out2, &[]).code, 0);
        let verified = run(
            &[
                "verify",
                &format!("oci://{reference}"),
                "--trust",
                s(&test_key("test-a.pub")),
                "--insecure",
                "--json",
            ],
            &[],
        );
        assert_eq!(verified.code, 0, "{}", verified.stderr);
        assert_eq!(
            verified.json()["artifact"],
            format!("oci://{reference}").as_str()
        );
    }
}

#[test]
fn encrypted_and_cosigned_sharded_artifacts_travel_and_decrypt() {
    let Some(registry) = Registry::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let enc = test_key("test-enc1.pub");
    let art = packed(
        dir.path(),
        "secret",
        &["--shard-size", "5MiB", "--encrypt-to", s(&enc)],
    );
    let cosigned = run(&["sign", s(&art), "--key", s(&test_key("test-b.key"))], &[]);
    assert_eq!(cosigned.code, 0, "{}", cosigned.stderr);
    let reference = registry.reference("models/secret", "2.0.0");
    assert_eq!(push(&art, &reference, &[]).code, 0);

    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("secret.nns");
    // Trusting the co-signer alone: both signatures travelled.
    let pulled = run(
        &[
            "pull",
            &reference,
            "-o",
            s(&out),
            "--trust",
            s(&test_key("test-b.pub")),
            "--insecure",
            "--json",
        ],
        &[],
    );
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    assert_eq!(pulled.json()["shards"], 2);
    let npz = out_dir.path().join("w.npz");
    let unpacked = run(
        &[
            "unpack",
            s(&out),
            "--trust",
            s(&test_key("test-a.pub")),
            "--decrypt-with",
            s(&test_key("test-enc1.key")),
            "--format",
            "npz",
            "-o",
            s(&npz),
        ],
        &[],
    );
    assert_eq!(unpacked.code, 0, "{}", unpacked.stderr);
    let got = arrays(&npz);
    for t in ["a", "b", "c", "d"] {
        let want = arrays(&dir.path().join(format!("{t}.npy")));
        assert_eq!(got[t].1, want[t].1, "tensor {t}");
    }
    // verify-load straight from the registry decrypts too.
    let loaded = run(
        &[
            "verify-load",
            &format!("oci://{reference}"),
            "--trust",
            s(&test_key("test-b.pub")),
            "--decrypt-with",
            s(&test_key("test-enc1.key")),
            "--insecure",
            "--json",
        ],
        &[],
    );
    assert_eq!(loaded.code, 0, "{}", loaded.stderr);
}

#[test]
fn a_tampered_blob_is_refused_and_nothing_is_left() {
    let Some(registry) = Registry::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let art = packed(dir.path(), "m", &["--shard-size", "4MiB"]);
    let reference = registry.reference("models/m", "1");
    let pushed = push(&art, &reference, &[]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    // Shard 2's stored bytes change; the registry serves them as they are.
    let layer = pushed.json()["layers"][2]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = registry.blob_path(&layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&blob, &bytes).unwrap();

    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("m.nns");
    assert_failed(
        &pull(&reference, &out, &[]),
        5,
        "of tensor \"d\", in shard 2 of 3 (m-00002-of-00003.nnshard)) does not match its signed digest",
    );
    assert_eq!(listing(out_dir.path()), Vec::<String>::new());
    let verified = run(
        &[
            "verify",
            &format!("oci://{reference}"),
            "--trust",
            s(&test_key("test-a.pub")),
            "--insecure",
            "--json",
        ],
        &[],
    );
    assert_failed(&verified, 5, "in shard 2 of 3");
    assert_eq!(
        verified.json()["error"]["file"],
        format!("oci://{reference}").as_str()
    );

    // Shard 1's stored blob cut short: the layer promises more than the registry has.
    let layer = pushed.json()["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = registry.blob_path(&layer);
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &bytes[..bytes.len() - 100]).unwrap();
    let r = pull(&reference, &out, &[]);
    let says = format!(
        "ends after {} of the {} bytes",
        bytes.len() - 100,
        bytes.len()
    );
    assert_failed(&r, 5, &says);
    assert_eq!(listing(out_dir.path()), Vec::<String>::new());
}

#[test]
fn a_manifest_other_than_the_one_asked_for_is_refused() {
    let Some(registry) = Registry::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let art = packed(dir.path(), "m", &[]);
    let reference = registry.reference("models/m", "1");
    let pushed = push(&art, &reference, &[]);
    let digest = pushed.json()["manifest_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // The stored manifest is changed (one more space): served for its digest, it is not it.
    let blob = registry.blob_path(&digest);
    let mut m = std::fs::read(&blob).unwrap();
    m.insert(1, b' ');
    std::fs::write(&blob, &m).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let pinned = format!("{}/models/m@{digest}", registry.addr());
    let r = pull(&pinned, &out_dir.path().join("m.nns"), &[]);
    assert_failed(&r, 5, "not the one asked for");
    assert_eq!(listing(out_dir.path()), Vec::<String>::new());
}

#[test]
fn an_interrupted_pull_resumes_and_a_bad_partial_file_is_fetched_again() {
    let Some(registry) = Registry::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let art = packed(dir.path(), "m", &["--shard-size", "4MiB"]);
    let reference = registry.reference("models/m", "1");
    assert_eq!(push(&art, &reference, &[]).code, 0);
    let shards = files(&art);

    // What an interrupted pull of out/m.nns leaves: shard 1 whole, 1 MB of shard 2 in its
    // .part file (the staging folder's name is the pull's contract with itself).
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("m.nns");
    let staging = out_dir.path().join(".m.nns.nnsign-pull");
    std::fs::create_dir(&staging).unwrap();
    std::fs::copy(&shards[1], staging.join("m-00001-of-00003.nnshard")).unwrap();
    let second = std::fs::read(&shards[2]).unwrap();
    std::fs::write(
        staging.join("m-00002-of-00003.nnshard.part"),
        &second[..1_000_000],
    )
    .unwrap();
    let r = pull(&reference, &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = std::fs::metadata(&shards[1]).unwrap().len();
    assert_eq!(r.json()["resumed_bytes"], first + 1_000_000);
    assert_same_files(&art, &out);
    assert_eq!(listing(out_dir.path()).len(), 4);

    // A partial file with wrong bytes: the pull fails verification, removes what it fetched,
    // and the next pull starts over and succeeds.
    let out2 = out_dir.path().join("n.nns");
    let staging = out_dir.path().join(".n.nns.nnsign-pull");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(
        staging.join("n-00003-of-00003.nnshard.part"),
        vec![7u8; 1000],
    )
    .unwrap();
    assert_failed(&pull(&reference, &out2, &[]), 5, "in shard 3 of 3");
    assert!(!staging.exists());
    let r = pull(&reference, &out2, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["resumed_bytes"], 0);
}

#[test]
fn credentials_come_from_the_environment_or_the_docker_config() {
    let Some(registry) = Registry::start_with_auth_or_skip(USER, PASSWORD) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let art = packed(dir.path(), "m", &[]);
    let reference = registry.reference("private/m", "1");
    let good = [
        ("NNSIGN_REGISTRY_USERNAME", USER),
        ("NNSIGN_REGISTRY_PASSWORD", PASSWORD),
    ];
    let wrong = [
        ("NNSIGN_REGISTRY_USERNAME", USER),
        ("NNSIGN_REGISTRY_PASSWORD", "guess"),
    ];

    assert_failed(
        &push(&art, &reference, &[]),
        11,
        "not authorized (HTTP 401): the registry wants credentials and none were found",
    );
    // A registry with basic auth cannot tell a wrong password from a missing permission.
    assert_failed(
        &push(&art, &reference, &wrong),
        11,
        &format!("not authorized (HTTP 401): the registry did not accept user \"{USER}\" (from NNSIGN_REGISTRY_USERNAME and NNSIGN_REGISTRY_PASSWORD) for pull and push of private/m: a wrong password, or a user without that permission"),
    );
    let r = push(&art, &reference, &good);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("m.nns");
    assert_failed(&pull(&reference, &out, &wrong), 11, "not authorized");
    // Nothing arrived, so nothing is kept for a resume.
    assert_eq!(listing(out_dir.path()), Vec::<String>::new());

    // `docker login`'s config file: auths by host:port, base64 of user:password.
    let docker = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = serde_json::json!({"auths": {registry.addr(): {"auth": auth}}});
    std::fs::write(docker.path().join("config.json"), config.to_string()).unwrap();
    let r = nnsign_env(
        [
            "pull",
            &reference,
            "-o",
            s(&out),
            "--trust",
            s(&test_key("test-a.pub")),
            "--insecure",
            "--json",
        ],
        &[("DOCKER_CONFIG", docker.path().to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same_files(&art, &out);
}

#[test]
fn oras_pulls_what_nnsign_pushed_and_nnsign_pulls_what_oras_pushed() {
    let Some(oras) = OrasScript::find_or_skip() else {
        return;
    };
    let Some(registry) = Registry::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let art = packed(dir.path(), "m", &["--shard-size", "4MiB"]);
    let reference = registry.reference("models/m", "nnsign");
    assert_eq!(push(&art, &reference, &[]).code, 0);
    let got = tempfile::tempdir().unwrap();
    let listed = oras.ok([
        "pull",
        "--insecure",
        "--registry",
        registry.addr(),
        "--ref",
        "models/m:nnsign",
        "--out",
        s(got.path()),
    ]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 4);
    assert_same_files(&art, &got.path().join("m.nns"));

    // ORAS pushes the files with nnsign's media types; nnsign pulls and verifies them.
    let mut args = vec![
        "push",
        "--insecure",
        "--registry",
        registry.addr(),
        "--ref",
        "models/m:oras",
    ];
    let all = files(&art);
    let specs: Vec<String> = all.iter().map(|p| s(p).to_owned()).collect();
    for spec in &specs {
        args.extend(["--file", spec.as_str()]);
    }
    oras.ok(&args);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("from-oras.nns");
    let r = pull(&registry.reference("models/m", "oras"), &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same_files(&art, &out);

    // Something else under a tag is refused as not an nnsign artifact.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, b"not a model").unwrap();
    oras.ok([
        "push",
        "--insecure",
        "--registry",
        registry.addr(),
        "--ref",
        "models/m:other",
        "--artifact-type",
        "application/vnd.example.notes",
        "--file",
        s(&other),
    ]);
    let r = pull(
        &registry.reference("models/m", "other"),
        &out_dir.path().join("x.nns"),
        &[],
    );
    assert_failed(
        &r,
        5,
        "is not an nnsign artifact: its artifactType is \"application/vnd.example.notes\"",
    );
}

#[test]
fn bad_references_and_insecure_remote_hosts_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nns");
    let trust = test_key("test-a.pub");
    for (reference, insecure, says) in [
        ("models/m:1", false, "names no registry host"),
        (
            "registry.example.com/m:1",
            true,
            "--insecure (plain HTTP) is allowed only for a registry on this machine",
        ),
        (
            "127.0.0.1:5/m@sha256:abc",
            false,
            "is not a registry reference",
        ),
    ] {
        let mut args = vec![
            "pull",
            reference,
            "-o",
            s(&out),
            "--trust",
            s(&trust),
            "--json",
        ];
        if insecure {
            args.push("--insecure");
        }
        assert_failed(&run(&args, &[]), 2, says);
    }
    assert!(!out.exists());
}

#[test]
fn a_missing_tag_or_an_unreachable_registry_is_a_registry_error() {
    let Some(registry) = Registry::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let r = pull(
        &registry.reference("models/none", "1"),
        &dir.path().join("m.nns"),
        &[],
    );
    assert_failed(&r, 11, "no such repository, tag or manifest");
    // A port nothing listens on (the registry's, once it is stopped).
    let reference = registry.reference("models/none", "1");
    drop(registry);
    let r = pull(&reference, &dir.path().join("m.nns"), &[]);
    assert_eq!(r.code, 11, "{}", r.stderr);
}

/// Without --insecure nnsign speaks TLS, checking the registry's certificate against the
/// system's roots (here a test CA, given as SSL_CERT_FILE as for any rustls program); a
/// certificate no root vouches for is refused (exit 11).
#[test]
fn tls_registries_are_checked_against_the_trusted_roots() {
    let Some(registry) = Registry::start_tls_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let art = packed(dir.path(), "m", &["--shard-size", "4MiB"]);
    let reference = registry.reference("models/m", "tls");
    let ca = registry.ca();
    let roots = [("SSL_CERT_FILE", ca.to_str().unwrap())];
    let r = run(&["push", s(&art), &reference, "--json"], &roots);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("m.nns");
    let trust = test_key("test-a.pub");
    let r = run(
        &[
            "pull",
            &reference,
            "-o",
            s(&out),
            "--trust",
            s(&trust),
            "--json",
        ],
        &roots,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same_files(&art, &out);

    // The system's own roots do not know the test CA.
    let other = tempfile::tempdir().unwrap();
    let r = run(
        &[
            "pull",
            &reference,
            "-o",
            s(&other.path().join("m.nns")),
            "--trust",
            s(&trust),
            "--json",
        ],
        &[],
    );
    assert_failed(&r, 11, "certificate");
}

/// A TCP proxy in front of a registry that cuts each connection once `cut_after` bytes have
/// come back through it, while `cuts` lasts: a network that drops large downloads.
struct CuttingProxy {
    addr: String,
    cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    made: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttingProxy {
    fn start(upstream: &str, cut_after: u64, cuts: usize) -> CuttingProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let left = Arc::new(AtomicUsize::new(cuts));
        let made = Arc::new(AtomicUsize::new(0));
        let (upstream, l, m) = (upstream.to_owned(), left.clone(), made.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    return;
                };
                let (l, m) = (l.clone(), m.clone());
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let (mut server, mut client) = (server, client);
                    let mut buf = vec![0u8; 64 << 10];
                    let mut sent = 0u64;
                    loop {
                        let n = match server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let cut = sent + n as u64 > cut_after
                            && l.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                                c.checked_sub(1)
                            })
                            .is_ok();
                        if cut {
                            let keep = (cut_after - sent) as usize;
                            let _ = client.write_all(&buf[..keep]);
                            m.fetch_add(1, Ordering::SeqCst);
                            let _ = client.shutdown(std::net::Shutdown::Both);
                            let _ = server.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                    }
                    let _ = client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CuttingProxy {
            addr,
            cuts: left,
            made,
        }
    }
}

/// Downloads cut by the network: within one pull, each file continues from where its
/// connection dropped (ranged requests); a pull that gives up leaves its .part files, and the
/// next one continues them.
#[test]
fn pulls_cut_by_the_network_continue_where_they_stopped() {
    use std::sync::atomic::Ordering;
    let Some(registry) = Registry::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let art = packed(dir.path(), "m", &["--shard-size", "4MiB"]);
    assert_eq!(
        push(&art, &registry.reference("models/m", "1"), &[]).code,
        0
    );

    // Every connection dropped after 1.5 MB: each 4 MiB shard needs three requests.
    let proxy = CuttingProxy::start(registry.addr(), 1_500_000, usize::MAX);
    let reference = format!("{}/models/m:1", proxy.addr);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("m.nns");
    let r = pull(&reference, &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same_files(&art, &out);
    assert!(
        proxy.made.load(Ordering::SeqCst) >= 4,
        "{}",
        proxy.made.load(Ordering::SeqCst)
    );

    // Dropped after 200 kB: five requests bring 1 MB of a 4 MiB shard; the pull gives up
    // (exit 11) and keeps what arrived. Once the network is fine, the next pull continues.
    let proxy = CuttingProxy::start(registry.addr(), 200_000, usize::MAX);
    let reference = format!("{}/models/m:1", proxy.addr);
    let out = out_dir.path().join("n.nns");
    let r = pull(&reference, &out, &[]);
    assert_failed(&r, 11, "download sha256:");
    assert!(!out.exists());
    let kept: u64 = std::fs::read_dir(out_dir.path().join(".n.nns.nnsign-pull"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(kept >= 1_000_000, "{kept}");
    proxy.cuts.store(0, Ordering::SeqCst);
    let r = pull(&reference, &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["resumed_bytes"], kept);
    assert_same_files(&art, &out);
}

/// A registry that takes only bearer tokens, as Docker Hub, GHCR and Harbor do: it answers
/// `401 WWW-Authenticate: Bearer realm=...,service=...,scope=...`, nnsign asks the realm (a
/// token server, scripts/token_server.py) for a token with its credentials, and the registry
/// checks the token (signed by a key its CA vouches for, for its service, granting the scope).
#[test]
fn bearer_token_registries_issue_tokens_for_the_credentials() {
    let Some(registry) = Registry::start_with_token_auth_or_skip(USER, PASSWORD) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let art = packed(dir.path(), "m", &["--shard-size", "4MiB"]);
    let reference = registry.reference("private/m", "1");
    let good = [
        ("NNSIGN_REGISTRY_USERNAME", USER),
        ("NNSIGN_REGISTRY_PASSWORD", PASSWORD),
    ];
    let wrong = [
        ("NNSIGN_REGISTRY_USERNAME", USER),
        ("NNSIGN_REGISTRY_PASSWORD", "guess"),
    ];
    let refused = format!(
        "authenticate: the registry refused the credentials of user \"{USER}\" (from NNSIGN_REGISTRY_USERNAME and NNSIGN_REGISTRY_PASSWORD); its token service said: incorrect username or password"
    );
    let none_found = format!(
        "not authorized (HTTP 401): the registry wants credentials and none were found (NNSIGN_REGISTRY_USERNAME is not set and the Docker config has no entry for {})",
        registry.addr()
    );
    // What the token server answered since the last call, as (user, outcome, scopes, granted).
    let mut seen = 0;
    let mut token_requests = || {
        // A request nnsign sent just before it exited can still be in the server's hands: wait
        // until the log stops growing, so that it is counted in its own phase.
        let mut all = registry.token_requests();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let again = registry.token_requests();
            if again.len() == all.len() {
                break;
            }
            all = again;
        }
        let new: Vec<_> = all[seen..]
            .iter()
            .map(|r| {
                (
                    r["user"].as_str().unwrap_or("").to_owned(),
                    r["outcome"].as_str().unwrap().to_owned(),
                    r["scopes"].clone(),
                    r["granted"].clone(),
                )
            })
            .collect();
        seen = all.len();
        new
    };
    // A push asks for `pull,push` (and for `pull` alone to check which blobs are there).
    let scope = |actions: &str| serde_json::json!([format!("repository:private/m:{actions}")]);
    let grant = |actions: &[&str]| serde_json::json!([{"type": "repository", "name": "private/m", "actions": actions}]);

    // Without credentials the token server hands out a token that grants nothing (as Docker
    // Hub does for a private repository), and the registry refuses it.
    let r = push(&art, &reference, &[]);
    assert_failed(&r, 11, &format!("check a blob: {none_found}"));
    let asked = token_requests();
    assert!(!asked.is_empty());
    for (user, outcome, scopes, granted) in &asked {
        assert_eq!((user.as_str(), outcome.as_str()), ("", "anonymous"));
        assert!(
            *scopes == scope("pull,push") || *scopes == scope("pull"),
            "{scopes}"
        );
        assert_eq!(granted, &serde_json::json!([]));
    }
    // A wrong password: the token server refuses it, before the registry sees a request.
    assert_failed(&push(&art, &reference, &wrong), 11, &refused);
    let asked = token_requests();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|(u, o, ..)| u == USER && o == "refused"),
        "{asked:?}"
    );

    let r = push(&art, &reference, &good);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let digest = r.json()["manifest_digest"].as_str().unwrap().to_owned();
    assert_eq!(registry.tag_digest("private/m", "1"), digest);
    // The registry takes no password itself: what it accepted were tokens, issued for this user
    // and granting exactly what a push asks.
    let asked = token_requests();
    assert!(!asked.is_empty());
    assert!(asked
        .iter()
        .any(|(.., scopes, _)| *scopes == scope("pull,push")));
    for (user, outcome, scopes, granted) in &asked {
        assert_eq!((user.as_str(), outcome.as_str()), (USER, "issued"));
        if *scopes == scope("pull,push") {
            assert_eq!(granted, &grant(&["pull", "push"]));
        } else {
            assert_eq!((scopes, granted), (&scope("pull"), &grant(&["pull"])));
        }
    }

    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("m.nns");
    assert_failed(&pull(&reference, &out, &wrong), 11, &refused);
    let manifest_url = format!("http://{}/v2/private/m/manifests/1", registry.addr());
    assert_failed(
        &pull(&reference, &out, &[]),
        11,
        &format!("read the manifest {manifest_url}: {none_found}"),
    );
    // Nothing arrived, so nothing is kept for a resume.
    assert_eq!(listing(out_dir.path()), Vec::<String>::new());
    token_requests();

    let r = pull(&reference, &out, &good);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["manifest_digest"], digest.as_str());
    assert_same_files(&art, &out);
    let asked = token_requests();
    assert!(!asked.is_empty());
    for (user, outcome, scopes, granted) in &asked {
        assert_eq!((user.as_str(), outcome.as_str()), (USER, "issued"));
        assert_eq!((scopes, granted), (&scope("pull"), &grant(&["pull"])));
    }
}

/// A registry whose bearer challenge names a plain-HTTP token service on another host would
/// have the password sent there in clear text: refused before any credential leaves.
#[test]
fn credentials_are_never_sent_to_a_plain_http_token_service() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = vec![0u8; 8192];
            let n = conn.read(&mut buf).unwrap_or(0);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = conn.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://tokens.example.com/token\",service=\"evil\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let creds = [
        ("NNSIGN_REGISTRY_USERNAME", USER),
        ("NNSIGN_REGISTRY_PASSWORD", PASSWORD),
    ];
    let r = pull(
        &format!("{addr}/models/m:1"),
        &dir.path().join("m.nns"),
        &creds,
    );
    assert_failed(
        &r,
        11,
        "the registry sends clients' credentials to the token service \"http://tokens.example.com/token\", which is not HTTPS",
    );
    // The registry saw requests, none of them carrying the password.
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|r| !r.to_ascii_lowercase().contains("authorization")),
        "{seen:?}"
    );
}

/// The staging folder of a pull must be this user's own: one planted by someone else who can
/// write in the output's folder (a link, writable by others, or another user's) is refused
/// before anything is fetched into it.
#[test]
fn a_planted_staging_folder_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nns");
    let staging = dir.path().join(".m.nns.nnsign-pull");
    let says = "exists but is not this user's private folder";

    std::fs::create_dir(&staging).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_failed(&pull("127.0.0.1:1/models/m:1", &out, &[]), 3, says);

    std::fs::remove_dir(&staging).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), &staging).unwrap();
    assert_failed(&pull("127.0.0.1:1/models/m:1", &out, &[]), 3, says);
    assert!(std::fs::read_dir(elsewhere.path())
        .unwrap()
        .next()
        .is_none());

    // Another user's folder (only root can make one for the test).
    std::fs::remove_file(&staging).unwrap();
    std::fs::create_dir(&staging).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = std::ffi::CString::new(staging.to_str().unwrap()).unwrap();
    if unsafe { libc::chown(path.as_ptr(), 65534, 65534) } == 0 {
        assert_failed(&pull("127.0.0.1:1/models/m:1", &out, &[]), 3, says);
    }
}
