//! The registry harness (tests/common/registry.rs) and the independent ORAS client
//! (scripts/oras_interop.py) work, checked without nnsign's own registry client.

mod common;

use common::registry::{http_get, http_status, OrasScript, Registry, TOKEN_SERVICE};

const USER: &str = "nnsign";
const PASSWORD: &str = "hunter2";
/// `Basic ` + base64("nnsign:hunter2"), and of "nnsign:wrong".
const GOOD_BASIC: &str = "Basic bm5zaWduOmh1bnRlcjI=";
const BAD_BASIC: &str = "Basic bm5zaWduOndyb25n";

#[test]
fn registry_answers_v2() {
    let Some(registry) = Registry::start_or_skip() else {
        return;
    };
    assert_eq!(http_status(registry.addr(), "/v2/", None).unwrap(), 200);
}

#[test]
fn registry_with_auth_wants_the_right_password() {
    let Some(registry) = Registry::start_with_auth_or_skip(USER, PASSWORD) else {
        return;
    };
    let status = |authorization| http_status(registry.addr(), "/v2/", authorization).unwrap();
    assert_eq!(status(None), 401);
    assert_eq!(status(Some(BAD_BASIC)), 401);
    assert_eq!(status(Some(GOOD_BASIC)), 200);
}

/// The token registry takes nothing but tokens its token server signed, for its service, with
/// the scope asked; the token server issues them for the right password only. Checked with
/// plain HTTP requests, so that nnsign's tests of bearer auth rest on a registry that really
/// checks.
#[test]
fn token_registry_takes_only_tokens_its_server_signed_for_the_scope() {
    let Some(registry) = Registry::start_with_token_auth_or_skip(USER, PASSWORD) else {
        return;
    };
    let server = registry.token_server().unwrap().to_owned();
    let v2 = |path: &str, authorization: Option<&str>| {
        http_get(registry.addr(), path, authorization).unwrap()
    };
    let token = |query: &str, authorization: &str| {
        http_get(&server, &format!("/token?{query}"), Some(authorization)).unwrap()
    };

    let challenge = v2("/v2/", None);
    assert_eq!(challenge.status, 401);
    assert_eq!(
        challenge.header("www-authenticate"),
        Some(
            format!("Bearer realm=\"http://{server}/token\",service=\"{TOKEN_SERVICE}\"").as_str()
        )
    );
    // The registry itself takes no password.
    assert_eq!(v2("/v2/", Some(GOOD_BASIC)).status, 401);

    let query = format!("service={TOKEN_SERVICE}&scope=repository:nnsign/model:pull");
    let refused = token(&query, BAD_BASIC);
    assert_eq!(refused.status, 401);
    assert!(String::from_utf8_lossy(&refused.body).contains("incorrect username or password"));
    assert_eq!(
        token(
            "service=other&scope=repository:nnsign/model:pull",
            GOOD_BASIC
        )
        .status,
        400
    );
    let issued = token(&query, GOOD_BASIC);
    assert_eq!(issued.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&issued.body).unwrap();
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["token"], body["access_token"]);
    let jwt = body["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {jwt}");

    assert_eq!(v2("/v2/", Some(&bearer)).status, 200);
    // Let in to a repository the token names (which does not exist yet), not to another one.
    assert_eq!(v2("/v2/nnsign/model/tags/list", Some(&bearer)).status, 404);
    let other = v2("/v2/nnsign/other/tags/list", Some(&bearer));
    assert_eq!(other.status, 401);
    assert!(other
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"insufficient_scope\""));
    // A token with one bit of its signature changed is refused.
    let mut forged = jwt.into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = format!("Bearer {}", String::from_utf8(forged).unwrap());
    let answer = v2("/v2/nnsign/model/tags/list", Some(&forged));
    assert_eq!(answer.status, 401);
    assert!(answer
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));

    let outcomes: Vec<_> = (registry.token_requests().iter())
        .map(|r| r["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["refused", "bad-request", "issued"]);
}

#[test]
fn oras_script_round_trip() {
    let Some(oras) = OrasScript::find_or_skip() else {
        return;
    };
    let Some(registry) = Registry::start_or_skip() else {
        return;
    };
    round_trip(&oras, &registry, &[]);
}

#[test]
fn oras_script_round_trip_with_auth() {
    let Some(oras) = OrasScript::find_or_skip() else {
        return;
    };
    let Some(registry) = Registry::start_with_auth_or_skip(USER, PASSWORD) else {
        return;
    };
    round_trip(&oras, &registry, &["--user", USER, "--password", PASSWORD]);

    let out = tempfile::tempdir().unwrap();
    let mut args = vec!["pull", "--insecure", "--registry", registry.addr()];
    args.extend([
        "--ref",
        "nnsign/model:v1",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let anonymous = oras.run(&args);
    let stderr = String::from_utf8_lossy(&anonymous.stderr);
    assert!(
        stderr.contains("the registry wants credentials"),
        "{stderr}"
    );
}

/// Pushes a model and a shard with the script, checks the manifest the registry stored, pulls
/// them back, then flips a stored byte and checks that the pull fails.
fn round_trip(oras: &OrasScript, registry: &Registry, credentials: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.nns");
    let shard = dir.path().join("model.shard-0");
    std::fs::write(&model, b"NNSIGN artifact bytes").unwrap();
    let shard_bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&shard, &shard_bytes).unwrap();
    let pull_into = |out: &str| {
        let out = dir.path().join(out);
        let mut args = vec!["pull", "--insecure", "--registry", registry.addr()];
        args.extend(["--ref", "nnsign/model:v1", "--out", out.to_str().unwrap()]);
        args.extend(credentials);
        (oras.run(&args), out)
    };

    let mut args = vec!["push", "--insecure", "--registry", registry.addr()];
    args.extend(["--ref", "nnsign/model:v1"]);
    args.extend(["--file", model.to_str().unwrap()]);
    args.extend(["--file", shard.to_str().unwrap()]);
    args.extend(credentials);
    let digest = oras.ok(&args).trim().to_owned();
    assert_eq!(registry.tag_digest("nnsign/model", "v1"), digest);

    let stored = std::fs::read(registry.blob_path(&digest)).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(manifest["artifactType"], "application/vnd.nnsign.model.v1");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let layers: Vec<_> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        layers,
        [
            ("application/vnd.nnsign.artifact.v1", 21),
            ("application/vnd.nnsign.shard.v1", 5000)
        ]
    );

    let (pulled, out) = pull_into("pulled");
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let listing: serde_json::Value = serde_json::from_slice(&pulled.stdout).unwrap();
    let titles: Vec<_> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["title"].clone())
        .collect();
    assert_eq!(titles, ["model.nns", "model.shard-0"]);
    assert_eq!(
        std::fs::read(out.join("model.nns")).unwrap(),
        b"NNSIGN artifact bytes"
    );
    assert_eq!(
        std::fs::read(out.join("model.shard-0")).unwrap(),
        shard_bytes
    );

    let shard_digest = manifest["layers"][1]["digest"].as_str().unwrap();
    let mut tampered = shard_bytes.clone();
    tampered[100] ^= 1;
    std::fs::write(registry.blob_path(shard_digest), tampered).unwrap();
    let (pulled, _) = pull_into("tampered");
    let stderr = String::from_utf8_lossy(&pulled.stderr);
    assert!(!pulled.status.success(), "a tampered shard was pulled");
    assert!(
        stderr.contains(&format!("manifest says 5000 bytes {shard_digest}")),
        "{stderr}"
    );
}
