//! Distribution through OCI registries (docs/DISTRIBUTION.md): an artifact is one OCI image
//! manifest (image-spec 1.1) whose `artifactType` is [`ARTIFACT_TYPE`], whose config is the
//! empty descriptor, and whose layers are the artifact's files: its `.nns` file first, then its
//! shard files in order (FORMAT.md section 14), each a blob the registry addresses by SHA-256.
//!
//! This module moves bytes; it decides nothing about them. [`fetch`] writes the files a
//! manifest lists into a folder, resuming what an earlier fetch left there, and the caller then
//! verifies them exactly as local files ([`crate::trust`]) before moving them anywhere a
//! reader would find them. The registry's own digests are not what makes a pulled artifact
//! trusted: every byte is checked against the signed chunk digests, so a registry that serves
//! wrong, short or reordered blobs is caught by verification, not by trusting its answers.
//!
//! HTTP is oci-client's (the token dance of registries with bearer auth, chunked and
//! monolithic uploads, ranged downloads); one request it cannot make with a size cap, the
//! manifest GET, is made with the same reqwest stack. Retries with backoff are ours.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{stream, Stream, StreamExt, TryStreamExt};
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::format;

/// `artifactType` of an nnsign artifact's OCI manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.nnsign.model.v1";
/// Media type of the first layer: the artifact's `.nns` file.
pub const ARTIFACT_MEDIA_TYPE: &str = "application/vnd.nnsign.artifact.v1";
/// Media type of each further layer: one shard file, in order.
pub const SHARD_MEDIA_TYPE: &str = "application/vnd.nnsign.shard.v1";
/// The empty config of image-spec 1.1 artifacts.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_CONFIG: &[u8] = b"{}";
/// Largest OCI manifest read: the limit image-spec asks registries to accept.
pub const MAX_MANIFEST_LEN: usize = 4 << 20;
/// The annotation ORAS clients name a layer's file by.
pub const TITLE: &str = "org.opencontainers.image.title";
/// The manifest annotation carrying the artifact digest (unsigned: a hint for people).
pub const DIGEST_ANNOTATION: &str = "dev.nnsign.artifact.digest";

/// Attempts of one request before giving up: a dropped connection or a 5xx / 429 answer is
/// tried again after 0.5, 1, 2 and 4 s.
const ATTEMPTS: u32 = 5;
/// Bytes per item of an uploaded stream (oci-client sends each item as at least one request).
const PUSH_ITEM: usize = 4 << 20;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference or an option is malformed (a usage error).
    #[error("{0}")]
    Usage(String),
    /// The registry could not be reached or answered with an error: network, TLS, refused
    /// credentials, an unknown repository or tag.
    #[error("{0}")]
    Registry(String),
    /// What the registry served is not a well-formed nnsign artifact manifest, or does not match
    /// what was asked (a digest, a layer size).
    #[error("{0}")]
    Integrity(String),
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Plain HTTP, allowed only for a registry on a loopback address.
    pub insecure: bool,
    /// Blobs moved at once (at least 1).
    pub jobs: usize,
    /// Blobs larger than this are uploaded in chunks (one request per 4 MiB, which registries
    /// and the proxies before them accept whatever their body-size limits); smaller ones in one
    /// streamed request, which is faster.
    pub chunked_above: u64,
}

/// The default of [`Options::chunked_above`].
pub const CHUNKED_ABOVE: u64 = 256 << 20;

/// A reference as the user wrote it (`oci://` prefix optional): `HOST[:PORT]/REPO[:TAG]` or
/// `HOST[:PORT]/REPO@sha256:HEX`.
pub fn parse_reference(s: &str) -> Result<Reference, OciError> {
    let bare = s.strip_prefix("oci://").unwrap_or(s);
    let reference: Reference = bare.parse().map_err(|e| {
        OciError::Usage(format!(
            "{s:?} is not a registry reference ({e}); write HOST[:PORT]/REPOSITORY:TAG or HOST[:PORT]/REPOSITORY@sha256:DIGEST"
        ))
    })?;
    // Without a host, the parser would fill in Docker Hub: an nnsign user names the registry.
    if !bare
        .split('/')
        .next()
        .is_some_and(|h| h.contains(['.', ':']) || h == "localhost")
    {
        return Err(OciError::Usage(format!(
            "{s:?} names no registry host; write HOST[:PORT]/REPOSITORY:TAG (e.g. registry.example.com/models/llm:1.2.0)"
        )));
    }
    if let Some(d) = reference.digest() {
        check_digest(d).map_err(OciError::Usage)?;
    }
    Ok(reference)
}

/// Whether `registry` (`host[:port]`) is on a loopback address: the only place plain HTTP is
/// allowed.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `sha256:` and 64 lowercase hex digits: the only digests this module puts in a URL.
fn check_digest(d: &str) -> Result<(), String> {
    let ok = d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{d:?} is not a sha256 digest (sha256: and 64 lowercase hex digits)"
        ))
    }
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::keys::hex(&Sha256::digest(bytes)))
}

/// A connection to one registry, for one repository.
struct Session {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// The same registry and credentials, uploading in chunks (oci-client decides by client).
    chunked: Client,
    chunked_above: u64,
    http: reqwest::Client,
    auth: RegistryAuth,
    login: Login,
    reference: Reference,
    scheme: &'static str,
    jobs: usize,
}

/// Whose credentials a session uses and where they came from (never the password), so that a
/// refusal can say which user was refused and what to change.
#[derive(Debug, Clone)]
struct Login {
    /// `None`: no credentials were found, and requests go anonymously.
    user: Option<String>,
    /// Where the credentials came from, or where none were found.
    source: String,
    /// What the session asks for, e.g. `pull and push of models/m`.
    access: String,
}

/// Credentials for `registry`: `NNSIGN_REGISTRY_USERNAME` and `NNSIGN_REGISTRY_PASSWORD`, else
/// Docker's config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`: `auths`,
/// `credHelpers`, `credsStore`), else none. Never from the command line. `access` is what they
/// are for ([`Login::access`]).
fn credentials(registry: &str, access: String) -> Result<(RegistryAuth, Login), OciError> {
    let login = |user: Option<&str>, source: String| Login {
        user: user.map(str::to_owned),
        source,
        access: access.clone(),
    };
    if let Ok(user) = std::env::var("NNSIGN_REGISTRY_USERNAME") {
        let password = std::env::var("NNSIGN_REGISTRY_PASSWORD").map_err(|_| {
            OciError::Usage(
                "NNSIGN_REGISTRY_USERNAME is set but NNSIGN_REGISTRY_PASSWORD is not".into(),
            )
        })?;
        let source = "NNSIGN_REGISTRY_USERNAME and NNSIGN_REGISTRY_PASSWORD".to_owned();
        let login = login(Some(&user), source);
        return Ok((RegistryAuth::Basic(user, password), login));
    }
    match docker_credential::get_credential(registry) {
        Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
            let source = format!("the Docker config's entry for {registry} (docker login)");
            let login = login(Some(&u), source);
            Ok((RegistryAuth::Basic(u, p), login))
        }
        Ok(docker_credential::DockerCredential::IdentityToken(_)) => Err(OciError::Usage(format!(
            "the Docker config holds an identity token for {registry}, which nnsign cannot use; set NNSIGN_REGISTRY_USERNAME and NNSIGN_REGISTRY_PASSWORD"
        ))),
        Err(_) => Ok((
            RegistryAuth::Anonymous,
            login(
                None,
                format!("NNSIGN_REGISTRY_USERNAME is not set and the Docker config has no entry for {registry}"),
            ),
        )),
    }
}

impl Session {
    fn open(
        reference: &Reference,
        options: &Options,
        op: RegistryOperation,
    ) -> Result<Session, OciError> {
        let registry = reference.resolve_registry().to_owned();
        if options.insecure && !is_loopback(&registry) {
            return Err(OciError::Usage(format!(
                "--insecure (plain HTTP) is allowed only for a registry on this machine (127.0.0.1, ::1, localhost), not {registry}"
            )));
        }
        // reqwest without a built-in provider needs a process-wide one; an error means one is
        // installed already. ring is deprecated by rustls for lacking post-quantum key exchange;
        // the alternative (aws-lc) is a C library that doubles the clean build.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = |monolithic| {
            Client::try_from(ClientConfig {
                protocol: if options.insecure {
                    ClientProtocol::HttpsExcept(vec![registry.clone()])
                } else {
                    ClientProtocol::Https
                },
                use_monolithic_push: monolithic,
                connect_timeout: Some(Duration::from_secs(30)),
                read_timeout: Some(Duration::from_secs(300)),
                ..Default::default()
            })
            .map_err(|e| OciError::Registry(format!("cannot set up the HTTP client: {e}")))
        };
        let (chunked, client) = (client(false)?, client(true)?);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| OciError::Registry(format!("cannot set up the HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| OciError::Registry(format!("cannot start the I/O runtime: {e}")))?;
        let access = match op {
            RegistryOperation::Pull => "pull",
            RegistryOperation::Push => "pull and push",
        };
        let (auth, login) =
            credentials(&registry, format!("{access} of {}", reference.repository()))?;
        let session = Session {
            rt,
            client,
            chunked,
            chunked_above: options.chunked_above,
            http,
            auth,
            login,
            reference: reference.clone(),
            scheme: if options.insecure { "http" } else { "https" },
            jobs: options.jobs.max(1),
        };
        if matches!(session.auth, RegistryAuth::Basic(..)) {
            session.rt.block_on(check_realm(&session))?;
        }
        // Authenticates once up front: inside other calls, oci-client drops a failed token
        // request and goes on anonymously, which surfaces later as an unexplained 401.
        let (rt, login) = (&session.rt, &session.login);
        for client in [&session.client, &session.chunked] {
            rt.block_on(retry(login, "authenticate", || {
                client.auth(&session.reference, &session.auth, op)
            }))?;
        }
        Ok(session)
    }

    fn registry(&self) -> &str {
        self.reference.resolve_registry()
    }
}

/// Refuses a registry whose bearer-token service (the `realm` of its `WWW-Authenticate`
/// challenge, where the client sends the password) is not reached over TLS: a registry that
/// names an `http://` realm would have the password sent in clear text, to a host of its
/// choosing. A plain-HTTP realm is accepted only on a loopback address, as `--insecure` is.
async fn check_realm(s: &Session) -> Result<(), OciError> {
    let url = format!("{}://{}/v2/", s.scheme, s.registry());
    let Ok(res) = s.http.get(&url).send().await else {
        // Unreachable: the authentication that follows says so, with its retries.
        return Ok(());
    };
    // Every challenge of every WWW-Authenticate header that offers Bearer at all, and every
    // `realm=` in it wherever it stands (a second realm, one after a quoted comma, one in a
    // Basic challenge beside the Bearer one): any realm a client could pick must be safe,
    // whichever parser it uses. A header of Basic challenges alone names no token service (its
    // realm is a label), so it is left alone.
    for header in res.headers().get_all(reqwest::header::WWW_AUTHENTICATE) {
        let text = String::from_utf8_lossy(header.as_bytes());
        if !text.to_ascii_lowercase().contains("bearer") {
            continue;
        }
        for realm in realms(&text) {
            if !safe_realm(&realm) {
                return Err(OciError::Registry(format!(
                    "the registry sends clients' credentials to the token service {:?}, which is not HTTPS (or not a URL): nnsign does not send a password there",
                    // Debug-quoted: escapes whatever control characters the registry put there.
                    realm.chars().take(200).collect::<String>()
                )));
            }
        }
    }
    Ok(())
}

/// Every value given to a `realm` parameter in a `WWW-Authenticate` header value, quoted or
/// not, found by scanning for `realm=` anywhere (case-insensitive), so that no arrangement of
/// challenges and quotes hides one.
fn realms(header: &str) -> Vec<String> {
    let lower = header.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("realm=") {
        let start = from + at + "realm=".len();
        let rest = &header[start..];
        let value = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or(""),
            None => rest.split([',', ' ']).next().unwrap_or(""),
        };
        out.push(value.to_owned());
        from = start;
    }
    out
}

/// Whether credentials may go to `realm`: an HTTPS URL, or an HTTP one whose host (as a URL
/// parser reads it, past any `user@`) is a loopback address.
fn safe_realm(realm: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(realm) else {
        return false;
    };
    match url.scheme() {
        "https" => url.host_str().is_some(),
        // host_str is the parsed host alone: no user, no port; an IPv6 address in brackets.
        "http" => url.host_str().is_some_and(is_loopback),
        _ => false,
    }
}

/// Whether a failed request is worth trying again: a connection that failed or dropped, a
/// server error, or "too many requests".
fn transient(e: &OciDistributionError) -> bool {
    match e {
        // A certificate no root vouches for will not change by waiting.
        OciDistributionError::RequestError(e) => match e.status() {
            Some(s) => s.is_server_error() || s.as_u16() == 429,
            None => !chain(e).contains("certificate"),
        },
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// Runs `op` up to [`ATTEMPTS`] times while it fails transiently, waiting 0.5 s, 1 s, 2 s, ...
async fn retry<T, F, Fut>(login: &Login, what: &str, mut op: F) -> Result<T, OciError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
{
    backoff(|| {
        let attempt = op();
        async move { attempt.await.map_err(|e| Attempt::of(login, what, e)) }
    })
    .await
}

/// How one attempt failed: worth another after a wait, or not.
enum Attempt {
    Again(OciError),
    Final(OciError),
}

impl Attempt {
    /// A client error, told as [`registry_error`] tells it, again if it is [`transient`].
    fn of(login: &Login, what: &str, e: OciDistributionError) -> Attempt {
        let again = transient(&e);
        let e = registry_error(login, what, e);
        if again {
            Attempt::Again(e)
        } else {
            Attempt::Final(e)
        }
    }
}

/// Runs `op` up to [`ATTEMPTS`] times while it fails with [`Attempt::Again`], waiting 0.5 s,
/// 1 s, 2 s, ... in between; the last failure is the answer.
async fn backoff<T, F, Fut>(mut op: F) -> Result<T, OciError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Attempt>>,
{
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match op().await {
            Ok(v) => return Ok(v),
            Err(Attempt::Again(_)) if attempt < ATTEMPTS => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(Attempt::Again(e) | Attempt::Final(e)) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

/// An error and its causes, as one line: reqwest's own message says only that a request
/// failed, its sources say why (refused, reset, the certificate).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        source = s.source();
    }
    line
}

/// What a person is told of a registry error.
fn registry_error(login: &Login, what: &str, e: OciDistributionError) -> OciError {
    use OciDistributionError as E;
    match e {
        // The token service (the realm of a `WWW-Authenticate: Bearer` challenge) answered
        // something other than a token; oci-client keeps its body, not its status.
        E::AuthenticationFailure(body) => match &login.user {
            None => unauthorized(login, what, "its token service refused an anonymous token"),
            Some(user) => {
                let said = token_service_says(&body)
                    .map(|m| format!("; its token service said: {m}"))
                    .unwrap_or_default();
                OciError::Registry(format!(
                    "{what}: the registry refused the credentials of user {user:?} (from {}){said}",
                    login.source
                ))
            }
        },
        E::UnauthorizedError { url } => unauthorized(login, what, &url),
        E::ImageManifestNotFoundError(m) => OciError::Registry(format!(
            "{what}: no such tag or manifest in the registry ({m})"
        )),
        E::DigestError(d) => OciError::Integrity(format!("{what}: {d}")),
        E::RequestError(e) if e.status().is_none() => {
            let why = chain(&e);
            let hint = if why.contains("certificate") {
                "; the registry's certificate is not trusted here (install its CA in the system's roots, or point SSL_CERT_FILE at it)"
            } else {
                ""
            };
            OciError::Registry(format!("{what}: {why}{hint}"))
        }
        E::RequestError(e)
            if e.status()
                .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) =>
        {
            let status = format!("HTTP {}", e.status().map_or(0, |s| s.as_u16()));
            unauthorized(login, what, &status)
        }
        other => OciError::Registry(format!("{what}: {other}")),
    }
}

/// A 401 or 403 from the registry (`detail`: the status or URL): without credentials, that
/// some are needed and where none were found; with them, that this user may not do what was
/// asked, whether for a wrong password (a registry with basic auth says no more) or for a
/// missing permission (a token that grants less than asked).
fn unauthorized(login: &Login, what: &str, detail: &str) -> OciError {
    OciError::Registry(match &login.user {
        None => format!(
            "{what}: not authorized ({detail}): the registry wants credentials and none were found ({})",
            login.source
        ),
        Some(user) => format!(
            "{what}: not authorized ({detail}): the registry did not accept user {user:?} (from {}) for {}: a wrong password, or a user without that permission",
            login.source, login.access
        ),
    })
}

/// Longest text of a token service's refusal that is shown.
const MAX_REFUSAL_SHOWN: usize = 200;

/// The reason in a token service's refusal, as one printable line: the `message` of Docker's
/// `{"errors": [...]}`, `details` (Docker Hub), `error_description` or `message` of other
/// services, else the body if it is short plain text. `None` for an empty or HTML body. The
/// body comes from a server nnsign does not trust: control characters are dropped and the
/// length is capped.
fn token_service_says(body: &str) -> Option<String> {
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => {
            let field = |v: &serde_json::Value, k: &str| v.get(k)?.as_str().map(str::to_owned);
            let errors = (v
                .get("errors")
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten())
            .filter_map(|e| field(e, "message"))
            .collect::<Vec<_>>();
            if errors.is_empty() {
                ["details", "error_description", "message", "error"]
                    .iter()
                    .find_map(|k| field(&v, k))?
            } else {
                errors.join("; ")
            }
        }
        Err(_) if body.trim_start().starts_with('<') => return None,
        Err(_) => body.to_owned(),
    };
    let line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if line.is_empty() {
        return None;
    }
    Some(match line.char_indices().nth(MAX_REFUSAL_SHOWN) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    })
}

/// What was pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `sha256:` of the OCI manifest: `REPO@DIGEST` names exactly this upload.
    pub manifest_digest: String,
    /// The layers, in order.
    pub layers: Vec<PushedLayer>,
}

/// One layer of a push.
#[derive(Debug, Clone)]
pub struct PushedLayer {
    /// The file's name (the layer's title).
    pub file: String,
    /// `sha256:` of the file: the blob's address.
    pub digest: String,
    pub bytes: u64,
    /// The registry had the blob already, so it was not sent.
    pub already_there: bool,
}

/// One file to upload as a layer.
pub struct Layer {
    pub path: PathBuf,
    pub media_type: &'static str,
}

/// The layers of the artifact at `head` with `shards` shard files: its `.nns` file, then each
/// shard file by its FORMAT.md section 14 name.
pub fn layers(head: &Path, shards: usize) -> Vec<Layer> {
    std::iter::once(Layer {
        path: head.to_owned(),
        media_type: ARTIFACT_MEDIA_TYPE,
    })
    .chain((1..=shards).map(|k| Layer {
        path: format::shard_path(head, k, shards),
        media_type: SHARD_MEDIA_TYPE,
    }))
    .collect()
}

/// Uploads `layers` (from [`layers`], of an artifact the caller has verified) and an OCI
/// manifest listing them to `reference`, whose tag it sets. Blobs the repository already has
/// are not sent again, so a push that was interrupted resumes at the first missing blob.
/// `annotations` go into the OCI manifest (unsigned hints for registry interfaces).
pub fn push(
    layers: &[Layer],
    reference: &Reference,
    annotations: &serde_json::Map<String, serde_json::Value>,
    options: &Options,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Pushed, OciError> {
    let session = Session::open(reference, options, RegistryOperation::Push)?;
    // Blob digests first (every core), since a blob is addressed by its digest before upload.
    use rayon::prelude::*;
    let digests: Vec<(String, u64)> = layers
        .par_iter()
        .map(|l| file_digest(&l.path))
        .collect::<Result<_, _>>()?;
    let done = AtomicU64::new(0);
    let s = &session;
    let uploaded: Vec<bool> = s.rt.block_on(async {
        stream::iter(layers.iter().zip(&digests))
            .map(|(layer, (digest, size))| {
                let done = &done;
                async move {
                    let had = retry(&s.login, "check a blob", || {
                        s.client.blob_exists(&s.reference, digest)
                    })
                    .await?;
                    if !had {
                        upload(s, &layer.path, digest, *size, done, progress).await?;
                    } else {
                        progress(done.fetch_add(*size, Ordering::Relaxed) + size);
                    }
                    Ok::<bool, OciError>(had)
                }
            })
            .buffered(s.jobs)
            .try_collect()
            .await
    })?;
    let empty = sha256_digest(EMPTY_CONFIG);
    s.rt.block_on(async {
        if !retry(&s.login, "check a blob", || {
            s.client.blob_exists(&s.reference, &empty)
        })
        .await?
        {
            retry(&s.login, "upload the empty config", || {
                s.client.push_blob(&s.reference, EMPTY_CONFIG, &empty)
            })
            .await?;
        }
        Ok::<(), OciError>(())
    })?;
    let titles: Vec<String> = (layers.iter())
        .map(|l| {
            l.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let body = manifest_json(layers, &digests, &titles, annotations);
    let manifest_digest = sha256_digest(&body);
    if let Some(want) = reference.digest() {
        if want != manifest_digest {
            return Err(OciError::Usage(format!(
                "the reference names manifest {want}, but this artifact's manifest is {manifest_digest}; push to a tag"
            )));
        }
    }
    s.rt.block_on(retry(&s.login, "upload the manifest", || {
        s.client.push_manifest_raw(
            &s.reference,
            body.clone(),
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
    }))?;
    Ok(Pushed {
        manifest_digest,
        layers: (titles.into_iter().zip(digests).zip(uploaded))
            .map(|((file, (digest, bytes)), already_there)| PushedLayer {
                file,
                digest,
                bytes,
                already_there,
            })
            .collect(),
    })
}

/// The OCI manifest of an artifact's layers: image-spec 1.1, `artifactType`, the empty config,
/// one layer per file with its title.
fn manifest_json(
    layers: &[Layer],
    digests: &[(String, u64)],
    titles: &[String],
    annotations: &serde_json::Map<String, serde_json::Value>,
) -> Vec<u8> {
    use serde_json::json;
    let layers: Vec<serde_json::Value> = (layers.iter().zip(digests).zip(titles))
        .map(|((l, (digest, size)), title)| {
            json!({"mediaType": l.media_type, "digest": digest, "size": size, "annotations": {TITLE: title}})
        })
        .collect();
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": sha256_digest(EMPTY_CONFIG),
            "size": EMPTY_CONFIG.len(),
            "data": "e30=",
        },
        "layers": layers,
    });
    if !annotations.is_empty() {
        m["annotations"] = serde_json::Value::Object(annotations.clone());
    }
    serde_json::to_vec(&m).expect("a JSON value always serializes")
}

fn file_digest(path: &Path) -> Result<(String, u64), OciError> {
    use std::io::Read;
    let io = |source| OciError::Io {
        path: path.into(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((
        format!("sha256:{}", crate::keys::hex(&hasher.finalize())),
        len,
    ))
}

/// Uploads one file as the blob `digest`: in one streamed request, or in 4 MiB requests when
/// it is larger than [`Options::chunked_above`]; tried again from its start if it fails
/// transiently. The registry checks the bytes against `digest` before it keeps them.
async fn upload(
    s: &Session,
    path: &Path,
    digest: &str,
    size: u64,
    done: &AtomicU64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), OciError> {
    let client = if size > s.chunked_above {
        &s.chunked
    } else {
        &s.client
    };
    let what = format!("upload {}", path.display());
    backoff(|| async {
        // Each attempt sends the file from its start.
        let file = tokio::fs::File::open(path).await.map_err(|source| {
            Attempt::Final(OciError::Io {
                path: path.into(),
                source,
            })
        })?;
        (client.push_blob_stream(&s.reference, file_stream(file), digest, Some(size)))
            .await
            .map_err(|e| Attempt::of(&s.login, &what, e))
    })
    .await?;
    progress(done.fetch_add(size, Ordering::Relaxed) + size);
    Ok(())
}

/// A file as a stream of [`PUSH_ITEM`]-byte pieces, never all in memory.
fn file_stream(
    file: tokio::fs::File,
) -> impl Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    stream::try_unfold(file, |mut file| async move {
        let mut buf = Vec::with_capacity(PUSH_ITEM);
        while buf.len() < PUSH_ITEM {
            let n = (&mut file)
                .take((PUSH_ITEM - buf.len()) as u64)
                .read_buf(&mut buf)
                .await?;
            if n == 0 {
                break;
            }
        }
        Ok((!buf.is_empty()).then(|| (bytes::Bytes::from(buf), file)))
    })
}

/// An OCI manifest as this module reads it: only what it needs, the rest ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciManifest {
    schema_version: u32,
    media_type: Option<String>,
    artifact_type: Option<String>,
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

/// What [`fetch`] wrote.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The `.nns` file, and the shard files beside it named as FORMAT.md section 14 says.
    pub head: PathBuf,
    pub shards: Vec<PathBuf>,
    /// `sha256:` of the OCI manifest that listed them.
    pub manifest_digest: String,
    /// Bytes of all layers, and how many of them were already there from an earlier fetch.
    pub bytes: u64,
    pub resumed: u64,
}

/// Reads the OCI manifest `reference` names and checks that it lists an nnsign artifact.
/// Returns its digest and layers.
fn read_manifest(s: &Session) -> Result<(String, Vec<Descriptor>), OciError> {
    let body = s.rt.block_on(backoff(|| manifest_get(s)))?;
    let digest = sha256_digest(&body);
    let name = s.reference.whole();
    if let Some(want) = s.reference.digest() {
        if want != digest {
            return Err(OciError::Integrity(format!(
                "the registry answered {name} with a manifest whose digest is {digest}: not the one asked for"
            )));
        }
    }
    let m: OciManifest = serde_json::from_slice(&body).map_err(|e| {
        OciError::Integrity(format!(
            "{name}: the registry's manifest is not a valid OCI manifest: {e}"
        ))
    })?;
    let not_ours = |why: String| {
        OciError::Integrity(format!(
            "{name} is not an nnsign artifact: {why} (docs/DISTRIBUTION.md says what nnsign pushes)"
        ))
    };
    if m.schema_version != 2 || m.media_type.as_deref() != Some(OCI_IMAGE_MEDIA_TYPE) {
        return Err(not_ours("not an OCI image manifest".into()));
    }
    if m.artifact_type.as_deref() != Some(ARTIFACT_TYPE) {
        return Err(not_ours(format!(
            "its artifactType is {:?}, not {ARTIFACT_TYPE:?}",
            m.artifact_type.unwrap_or_default()
        )));
    }
    if m.layers.is_empty() || m.layers.len() > format::MAX_SHARDS + 1 {
        return Err(not_ours(format!(
            "{} layers; an artifact has its .nns file and up to {} shards",
            m.layers.len(),
            format::MAX_SHARDS
        )));
    }
    let header_cap = (format::PRELUDE_LEN as u64 + u64::from(format::MAX_ENVELOPE_LEN))
        .next_multiple_of(format::PAYLOAD_ALIGN);
    for (k, layer) in m.layers.iter().enumerate() {
        let want = if k == 0 {
            ARTIFACT_MEDIA_TYPE
        } else {
            SHARD_MEDIA_TYPE
        };
        if layer.media_type != want {
            return Err(not_ours(format!(
                "layer {} has media type {:?}, not {want:?}",
                k + 1,
                layer.media_type
            )));
        }
        check_digest(&layer.digest).map_err(|e| not_ours(format!("layer {}: {e}", k + 1)))?;
    }
    let payload: u64 = m
        .layers
        .iter()
        .skip(1)
        .map(|l| l.size)
        .fold(0, u64::saturating_add);
    let head = m.layers[0].size;
    // Sizes are checked before anything is fetched: the signed manifest checks them again.
    if (m.layers.len() > 1 && head > header_cap)
        || payload > format::MAX_PAYLOAD_LEN
        || head > header_cap + format::MAX_PAYLOAD_LEN
    {
        return Err(not_ours(
            "its layers are larger than any artifact can be".into(),
        ));
    }
    Ok((digest, m.layers))
}

/// GET of the manifest with a size cap (oci-client reads any body whole).
async fn manifest_get(s: &Session) -> Result<Vec<u8>, Attempt> {
    let r = &s.reference;
    let token = s
        .client
        .auth(r, &s.auth, RegistryOperation::Pull)
        .await
        .map_err(|e| Attempt::Final(registry_error(&s.login, "authenticate", e)))?;
    let url = format!(
        "{}://{}/v2/{}/manifests/{}",
        s.scheme,
        s.registry(),
        r.repository(),
        r.digest().or(r.tag()).unwrap_or("latest")
    );
    let mut req = s
        .http
        .get(&url)
        .header(reqwest::header::ACCEPT, OCI_IMAGE_MEDIA_TYPE);
    req = match (token, &s.auth) {
        (Some(t), _) => req.bearer_auth(t),
        (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
        _ => req,
    };
    let again = |e: reqwest::Error| Attempt::Again(OciError::Registry(format!("{url}: {e}")));
    let registry = |m: String| Attempt::Final(OciError::Registry(m));
    let too_large = || {
        Attempt::Final(OciError::Integrity(format!(
            "{}: the manifest is over {MAX_MANIFEST_LEN} bytes",
            r.whole()
        )))
    };
    let mut res = req.send().await.map_err(again)?;
    let status = res.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(Attempt::Again(OciError::Registry(format!(
            "{url}: HTTP {status}"
        ))));
    }
    if status.as_u16() == 401 || status.as_u16() == 403 {
        return Err(Attempt::Final(unauthorized(
            &s.login,
            &format!("read the manifest {url}"),
            &format!("HTTP {}", status.as_u16()),
        )));
    }
    if status.as_u16() == 404 {
        return Err(registry(format!(
            "{}: no such repository, tag or manifest in the registry",
            r.whole()
        )));
    }
    if !status.is_success() {
        return Err(registry(format!("{url}: HTTP {status}")));
    }
    if res
        .content_length()
        .is_some_and(|n| n > MAX_MANIFEST_LEN as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(again)? {
        if body.len() + chunk.len() > MAX_MANIFEST_LEN {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Downloads the artifact `reference` names into `dir`, as `dir/name` and its shard files.
/// Each file is written as `FILE.part` and renamed when it has all its bytes; a `.part` left by
/// an interrupted fetch is continued from where it stopped (a ranged request), and a file
/// already complete is kept. Nothing here checks the bytes: the caller verifies the files as
/// any local artifact, and must not use them otherwise.
pub fn fetch(
    reference: &Reference,
    dir: &Path,
    name: &std::ffi::OsStr,
    options: &Options,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Fetched, OciError> {
    let session = Session::open(reference, options, RegistryOperation::Pull)?;
    let s = &session;
    let (manifest_digest, listed) = read_manifest(s)?;
    let head = dir.join(name);
    let shards = listed.len() - 1;
    // The files as the artifact's own names them: the layers' titles are not signed.
    let paths: Vec<PathBuf> = (layers(&head, shards).into_iter())
        .map(|l| l.path)
        .collect();
    let total: u64 = listed.iter().map(|l| l.size).fold(0, u64::saturating_add);
    let done = AtomicU64::new(0);
    let resumed = AtomicU64::new(0);
    s.rt.block_on(async {
        stream::iter(listed.iter().zip(&paths))
            .map(|(layer, path)| {
                let (done, resumed) = (&done, &resumed);
                let tick = move |n: u64| progress(done.fetch_add(n, Ordering::Relaxed) + n, total);
                async move { download(s, layer, path, resumed, &tick).await }
            })
            .buffer_unordered(s.jobs)
            .try_collect::<Vec<()>>()
            .await
    })?;
    Ok(Fetched {
        head,
        shards: paths[1..].to_vec(),
        manifest_digest,
        bytes: total,
        resumed: resumed.into_inner(),
    })
}

/// Downloads one blob to `path` (through `path.part`), continuing a partial download.
async fn download(
    s: &Session,
    layer: &Descriptor,
    path: &Path,
    resumed: &AtomicU64,
    tick: &(dyn Fn(u64) + Sync),
) -> Result<(), OciError> {
    let io = |source| OciError::Io {
        path: path.into(),
        source,
    };
    if (tokio::fs::symlink_metadata(path).await)
        .is_ok_and(|m| m.file_type().is_file() && m.len() == layer.size)
    {
        resumed.fetch_add(layer.size, Ordering::Relaxed);
        tick(layer.size);
        return Ok(());
    }
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&part)
        .await
        .map_err(io)?;
    let mut have = file.metadata().await.map_err(io)?.len();
    if have > layer.size {
        file.set_len(0).await.map_err(io)?;
        have = 0;
    }
    resumed.fetch_add(have, Ordering::Relaxed);
    tick(have);
    let what = format!("download {}", layer.digest);
    let mut wait = Duration::from_millis(500);
    let mut attempt = 1;
    // Requests in a row that brought no byte, after one that ended early: a blob that keeps
    // ending at the same place is shorter than its layer says, not a network failing there.
    let mut stalled = 0;
    let mut ended_early = false;
    let short = |have: u64| {
        OciError::Integrity(format!(
            "the registry's blob {} ends after {have} of the {} bytes its layer lists",
            layer.digest, layer.size
        ))
    };
    while have < layer.size {
        let before = have;
        // A ranged request, also from 0: the registry's digest check of a whole blob would hash
        // every byte a second time, and verification checks them all against signed digests.
        let response = s
            .client
            .pull_blob_stream_partial(&s.reference, layer.digest.as_str(), have, None)
            .await;
        let failed = match response {
            Ok(BlobResponse::Full(mut stream)) => {
                // The registry ignored the range: start the file over.
                if have > 0 {
                    file.set_len(0).await.map_err(io)?;
                    have = 0;
                }
                copy(&mut stream, (&mut file, &part), &mut have, layer, tick).await?
            }
            Ok(BlobResponse::Partial(mut stream)) => {
                copy(&mut stream, (&mut file, &part), &mut have, layer, tick).await?
            }
            Err(e) if transient(&e) => Some(registry_error(&s.login, &what, e)),
            // After a blob that ended early, a registry refuses the range past its end.
            Err(_) if ended_early => return Err(short(have)),
            Err(e) => return Err(registry_error(&s.login, &what, e)),
        };
        let Some(e) = failed else { continue };
        ended_early = true;
        stalled = if have == before { stalled + 1 } else { 0 };
        if attempt >= ATTEMPTS {
            return Err(if stalled >= 2 { short(have) } else { e });
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
        attempt += 1;
    }
    file.sync_all().await.map_err(io)?;
    drop(file);
    tokio::fs::rename(&part, path).await.map_err(io)?;
    Ok(())
}

/// Appends what `stream` brings to `file`; returns the transient error that cut it short, if
/// one did. More bytes than the layer's size is an integrity failure.
async fn copy(
    stream: &mut oci_client::client::SizedStream,
    (file, path): (&mut tokio::fs::File, &Path),
    have: &mut u64,
    layer: &Descriptor,
    tick: &(dyn Fn(u64) + Sync),
) -> Result<Option<OciError>, OciError> {
    while let Some(piece) = stream.next().await {
        let piece = match piece {
            Ok(p) => p,
            Err(e) => {
                return Ok(Some(OciError::Registry(format!(
                    "download {}: the connection failed after {} bytes: {e}",
                    layer.digest, *have
                ))))
            }
        };
        if *have + piece.len() as u64 > layer.size {
            return Err(OciError::Integrity(format!(
                "the registry sent more than the {} bytes of blob {}",
                layer.size, layer.digest
            )));
        }
        file.write_all(&piece)
            .await
            .map_err(|source| OciError::Io {
                path: path.into(),
                source,
            })?;
        *have += piece.len() as u64;
        tick(piece.len() as u64);
    }
    if *have < layer.size {
        return Ok(Some(OciError::Integrity(format!(
            "the registry sent {} of the {} bytes of blob {}",
            *have, layer.size, layer.digest
        ))));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_registry_and_a_real_digest() {
        let r = parse_reference("oci://127.0.0.1:5000/models/llm:1.2.0").unwrap();
        assert_eq!(
            (r.resolve_registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "models/llm", Some("1.2.0"))
        );
        assert!(parse_reference("registry.example.com/m@sha256:00").is_err());
        let e = parse_reference("models/llm:1").unwrap_err().to_string();
        assert!(e.contains("names no registry host"), "{e}");
        assert!(parse_reference("localhost/m:1").is_ok());
    }

    #[test]
    fn a_token_services_refusal_is_shown_as_one_short_line() {
        for (body, shown) in [
            (
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}"#,
                Some("incorrect username or password"),
            ),
            (
                r#"{"details":"incorrect username or password"}"#,
                Some("incorrect username or password"),
            ),
            (
                r#"{"error":"invalid_client","error_description":"bad secret"}"#,
                Some("bad secret"),
            ),
            ("access denied\r\n\x1b[31m", Some("access denied [31m")),
            ("<html><body>401</body></html>", None),
            ("", None),
            ("{}", None),
        ] {
            assert_eq!(token_service_says(body).as_deref(), shown, "{body:?}");
        }
        let long = token_service_says(&"x".repeat(1000)).unwrap();
        assert_eq!(long, format!("{}...", "x".repeat(MAX_REFUSAL_SHOWN)));
    }

    #[test]
    fn every_realm_a_client_could_pick_must_be_safe() {
        let all_safe = |h: &str| realms(h).iter().all(|r| safe_realm(r)) && !realms(h).is_empty();
        assert!(all_safe(
            r#"Bearer realm="https://auth.example.com/token",service="r""#
        ));
        assert!(all_safe(
            r#"Bearer realm="http://127.0.0.1:5001/token",service="t""#
        ));
        for hostile in [
            r#"Bearer realm="http://evil.example/token""#,
            r#"Bearer realm="https://ok/",realm="http://evil/""#,
            r#"Bearer service="a,realm=https://ok/",realm="http://evil/""#,
            r#"Basic realm="x", Bearer realm="http://evil/""#,
            r#"Bearer realm="http://127.0.0.1:80@evil.example/""#,
            r#"Bearer REALM=http://evil/,service=x"#,
            r#"Bearer realm="ftp://evil/""#,
        ] {
            assert!(!all_safe(hostile), "{hostile}");
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for r in [
            "127.0.0.1:5000",
            "localhost:80",
            "[::1]:5000",
            "127.8.0.1",
            "localhost",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "10.0.0.1:5000",
            "registry.example.com",
            "[fe80::1]:5000",
            "localhost.evil.com",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }
}
