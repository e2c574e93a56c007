//! A real OCI registry for the push and pull tests: Debian's `docker-registry` (Docker
//! Distribution 2.8), one private instance per test on a free loopback port, storing into a
//! temporary folder, killed when the `Registry` is dropped.
//!
//! A registry needs no credentials, or HTTP Basic ones (htpasswd), or bearer tokens from a
//! token server of its own (scripts/token_server.py, as Docker Hub, GHCR and Harbor
//! authenticate).
//!
//! A machine without the registry (or without Python's `oras` package, for the interop
//! script, or without Python's `cryptography` package, for the token server) skips those tests
//! with a `SKIPPED:` line, so `cargo test` passes on a bare dev machine; CI sets
//! `NNSIGN_TEST_REGISTRY=required`, which turns every skip into a failure.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `required` here makes a missing registry or `oras` package fail the tests instead of
/// skipping them.
pub const REQUIRED_ENV: &str = "NNSIGN_TEST_REGISTRY";

const BINARY: &str = "docker-registry";
const MISSING_BINARY: &str = "docker-registry not installed: apt-get install docker-registry";
/// The version CI installs (.ci/run), and that the script was written against.
const ORAS_PIN: &str = "oras==0.2.43";
/// The registry answers in well under a second; a loaded CI machine gets slack.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Another process can take the port between our probe and the registry's bind.
const PORT_ATTEMPTS: usize = 5;
/// The token server's `service` (the tokens' audience) and `issuer`, as the registry is told.
pub const TOKEN_SERVICE: &str = "nnsign-test";
pub const TOKEN_ISSUER: &str = "nnsign-test-issuer";
const MISSING_CRYPTOGRAPHY: &str =
    "python3 with the cryptography package is needed for the token server: python3 -m pip install cryptography";

/// How the registry wants clients to authenticate.
enum Auth<'a> {
    Anonymous,
    /// HTTP Basic, checked against an htpasswd file.
    Basic {
        user: &'a str,
        password: &'a str,
    },
    /// Bearer tokens from scripts/token_server.py run by `python`, which issues them for these
    /// HTTP Basic credentials.
    Token {
        python: PathBuf,
        user: &'a str,
        password: &'a str,
    },
}

/// A running registry; stopped, and its storage deleted, on drop.
pub struct Registry {
    child: Child,
    addr: String,
    token_server: Option<TokenServer>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry that needs no credentials; panics if `docker-registry` is missing.
    pub fn start() -> Registry {
        Registry::launch(Auth::Anonymous, false).unwrap_or_else(|| panic!("{MISSING_BINARY}"))
    }

    /// Like `start_or_skip`, serving HTTPS only, with a certificate for 127.0.0.1 issued by a
    /// test CA of its own ([`Registry::ca`]; made with the openssl command).
    pub fn start_tls_or_skip() -> Option<Registry> {
        Registry::launch(Auth::Anonymous, true).or_else(|| skip(MISSING_BINARY))
    }

    /// The PEM file of the CA that issued a TLS registry's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Starts a registry that wants HTTP Basic credentials (htpasswd) for every request.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::launch(Auth::Basic { user, password }, false)
            .unwrap_or_else(|| panic!("{MISSING_BINARY}"))
    }

    /// Like `start`, but `None` after a `SKIPPED:` line when the registry is not installed
    /// and not required.
    pub fn start_or_skip() -> Option<Registry> {
        Registry::launch(Auth::Anonymous, false).or_else(|| skip(MISSING_BINARY))
    }

    /// Like `start_with_auth`, but `None` after a `SKIPPED:` line when the registry is not
    /// installed and not required.
    pub fn start_with_auth_or_skip(user: &str, password: &str) -> Option<Registry> {
        Registry::launch(Auth::Basic { user, password }, false).or_else(|| skip(MISSING_BINARY))
    }

    /// Starts a registry that takes only bearer tokens (`auth: token:`), and the token server
    /// that issues them (scripts/token_server.py on another free loopback port, stopped with
    /// the registry) for HTTP Basic `user` and `password`: the flow of Docker Hub, GHCR and
    /// Harbor. `None` after a `SKIPPED:` line when the registry or Python's `cryptography` is
    /// missing and not required.
    pub fn start_with_token_auth_or_skip(user: &str, password: &str) -> Option<Registry> {
        let python = match python_with("cryptography") {
            Some(python) => python,
            None => return skip(MISSING_CRYPTOGRAPHY),
        };
        let auth = Auth::Token {
            python,
            user,
            password,
        };
        Registry::launch(auth, false).or_else(|| skip(MISSING_BINARY))
    }

    /// The token server's `127.0.0.1:PORT`, for a registry started with token auth.
    pub fn token_server(&self) -> Option<&str> {
        self.token_server.as_ref().map(|t| t.addr.as_str())
    }

    /// Every request the token server answered, in order, one JSON object each
    /// (scripts/token_server.py: `path`, `service`, `scopes`, `user`, `outcome`, `granted`);
    /// empty for a registry without token auth.
    pub fn token_requests(&self) -> Vec<serde_json::Value> {
        let Some(server) = &self.token_server else {
            return Vec::new();
        };
        let log = std::fs::read_to_string(&server.log).unwrap_or_default();
        log.lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("token server log line ({e}): {line:?}"))
            })
            .collect()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `127.0.0.1:PORT/repo:tag`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }

    /// The registry's filesystem storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file holding the blob `sha256:<hex>` (manifests are blobs too), so that tests can
    /// read or tamper with what the registry serves: it serves the stored bytes unchecked.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(|| panic!("not a sha256:<64 hex> digest: {digest:?}"));
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The digest of the manifest that `repo:tag` points to, read from storage.
    pub fn tag_digest(&self, repo: &str, tag: &str) -> String {
        let link = self
            .storage()
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags")
            .join(tag)
            .join("current/link");
        std::fs::read_to_string(&link)
            .unwrap_or_else(|e| panic!("no tag {repo}:{tag} in the registry ({e}): {link:?}"))
    }

    /// `None` only when the binary is missing; any other failure to start panics.
    fn launch(auth: Auth, tls: bool) -> Option<Registry> {
        let binary = find_in_path(BINARY)?;
        let dir = tempfile::tempdir().expect("temporary folder for the registry");
        let tls = tls.then(|| make_certificates(dir.path()));
        let mut token_server = None;
        let auth_yaml = match auth {
            Auth::Anonymous => String::new(),
            Auth::Basic { user, password } => {
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, htpasswd_line(user, password)).expect("htpasswd written");
                format!(
                    "auth:\n  htpasswd:\n    realm: nnsign-test\n    path: {}\n",
                    quoted(&path)
                )
            }
            Auth::Token {
                python,
                user,
                password,
            } => {
                let server = TokenServer::start(&python, dir.path(), user, password);
                let yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    serde_json::to_string(&server.realm()).unwrap(),
                    quoted(&server.ca)
                );
                token_server = Some(server);
                yaml
            }
        };
        // What GET /v2/ without credentials answers once the registry is up: a TLS server
        // answers a plain HTTP request with 400; token auth names its token server.
        let (expected, challenge) = match (&token_server, &tls) {
            (_, Some(_)) => (400, None),
            (Some(server), None) => (
                401,
                Some(format!(
                    "Bearer realm=\"{}\",service=\"{TOKEN_SERVICE}\"",
                    server.realm()
                )),
            ),
            (None, None) if auth_yaml.is_empty() => (200, None),
            (None, None) => (401, None),
        };
        for _ in 0..PORT_ATTEMPTS {
            let addr = free_loopback_addr();
            let config = dir.path().join("config.yml");
            let mut yaml = config_yaml(&addr, &dir.path().join("storage"));
            yaml.push_str(&auth_yaml);
            if let Some((cert, key)) = &tls {
                yaml = yaml.replace(
                    &format!("  addr: {addr}\n"),
                    &format!(
                        "  addr: {addr}\n  tls:\n    certificate: {}\n    key: {}\n",
                        quoted(cert),
                        quoted(key)
                    ),
                );
            }
            std::fs::write(&config, yaml).expect("registry config written");
            let log_path = dir.path().join("registry.log");
            let log = File::create(&log_path).expect("registry log created");
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle cloned"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("{} does not run: {e}", binary.display()));
            match wait_until_ready(&mut child, &addr, expected, challenge.as_deref()) {
                Ok(()) => {
                    return Some(Registry {
                        child,
                        addr,
                        token_server,
                        dir,
                    })
                }
                Err(why) => {
                    stop(&mut child);
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if log.contains("address already in use") {
                        continue;
                    }
                    panic!("{BINARY} did not come up on {addr}: {why}\n--- its output:\n{log}");
                }
            }
        }
        panic!("{BINARY}: no free loopback port in {PORT_ATTEMPTS} attempts");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Polls `GET /v2/` until it answers `expected` (with `WWW-Authenticate: <challenge>`, if
/// given); an error if the registry exits first, answers anything else, or does not answer
/// within `START_TIMEOUT`.
fn wait_until_ready(
    child: &mut Child,
    addr: &str,
    expected: u16,
    challenge: Option<&str>,
) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => return Err(format!("it exited ({status})")),
            Err(e) => return Err(format!("its status is unknown: {e}")),
        }
        match http_get(addr, "/v2/", None) {
            Ok(r) if r.status == expected && challenge.is_none() => return Ok(()),
            Ok(r) if r.status == expected => {
                let got = r.header("www-authenticate").unwrap_or_default();
                if Some(got) == challenge {
                    return Ok(());
                }
                return Err(format!(
                    "GET /v2/ answered WWW-Authenticate {got:?}, not {challenge:?}"
                ));
            }
            Ok(r) => return Err(format!("GET /v2/ answered {}, not {expected}", r.status)),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("GET /v2/ failed for {START_TIMEOUT:?}: {e}")),
        }
    }
}

fn stop(child: &mut Child) {
    // An error here means it has already exited, which is all we want; wait reaps it.
    let _ = child.kill();
    let _ = child.wait();
}

/// scripts/token_server.py, running: stopped on drop, and, since it exits when its standard
/// input closes, also when the test process dies without dropping it.
struct TokenServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// The CA certificate whose key signs the tokens' certificates: the registry's
    /// `rootcertbundle`.
    ca: PathBuf,
    /// One JSON line per request answered.
    log: PathBuf,
}

impl TokenServer {
    /// Starts the server in `dir` for `user` and `password`; panics if it does not come up.
    fn start(python: &Path, dir: &Path, user: &str, password: &str) -> TokenServer {
        let (ca, log) = (dir.join("token-ca.pem"), dir.join("token-requests.jsonl"));
        let stderr_path = dir.join("token-server.log");
        let stderr = File::create(&stderr_path).expect("token server log created");
        let script = super::root().join("scripts/token_server.py");
        let mut child = Command::new(python)
            .arg(&script)
            .args([
                "--user",
                user,
                "--service",
                TOKEN_SERVICE,
                "--issuer",
                TOKEN_ISSUER,
            ])
            .arg("--ca-out")
            .arg(&ca)
            .arg("--log")
            .arg(&log)
            .arg("--until-stdin-closes")
            // Not an argument: ps would show it.
            .env("TOKEN_SERVER_PASSWORD", password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not run: {e}", python.display()));
        // It binds its port before it prints it, so the port cannot be taken in between; if it
        // fails, its stdout closes and the line is empty.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        let _ = BufReader::new(stdout).read_line(&mut line);
        match line.trim().strip_prefix("listening ") {
            Some(addr) => TokenServer {
                child,
                addr: addr.to_owned(),
                ca,
                log,
            },
            None => {
                stop(&mut child);
                let why = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!(
                    "{} did not start (printed {line:?}):\n{why}",
                    script.display()
                );
            }
        }
    }

    /// The URL the registry sends clients to for a token.
    fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// `scripts/oras_interop.py`, run by a `python3` that has the `oras` package: an ORAS client
/// that shares no code with nnsign.
pub struct OrasScript {
    python: PathBuf,
}

impl OrasScript {
    /// Panics if `python3` or its `oras` package is missing.
    pub fn find() -> OrasScript {
        OrasScript::locate().unwrap_or_else(|why| panic!("{why}"))
    }

    /// `None` after a `SKIPPED:` line when `python3` or `oras` is missing and not required.
    pub fn find_or_skip() -> Option<OrasScript> {
        match OrasScript::locate() {
            Ok(script) => Some(script),
            Err(why) => skip(&why),
        }
    }

    fn locate() -> Result<OrasScript, String> {
        let python = python_with("oras").ok_or_else(|| {
            format!("python3 with the oras package is needed: python3 -m pip install {ORAS_PIN}")
        })?;
        Ok(OrasScript { python })
    }

    /// Runs the script with `args`, whatever the outcome.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Command::new(&self.python)
            .arg(super::root().join("scripts/oras_interop.py"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("python3 runs")
    }

    /// Runs the script with `args` and returns its standard output; panics if it fails.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "oras_interop.py failed ({}):\n{stderr}",
            out.status
        );
        String::from_utf8(out.stdout).expect("oras_interop.py prints UTF-8")
    }
}

/// The `python3` on PATH, if it can import `module`.
fn python_with(module: &str) -> Option<PathBuf> {
    let python = find_in_path("python3")?;
    Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then_some(python)
}

/// What an HTTP server answered.
pub struct Response {
    pub status: u16,
    /// Header names in lowercase, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        (self.headers.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The status code of `GET path` on `addr`, over a plain TCP connection (no HTTP client
/// crate), with `Authorization: <authorization>` if given.
pub fn http_status(addr: &str, path: &str, authorization: Option<&str>) -> std::io::Result<u16> {
    http_get(addr, path, authorization).map(|r| r.status)
}

/// `GET path` on `addr` as [`http_status`] makes it, with the headers and body of the answer
/// (read to the end of the connection: no chunked encoding is decoded).
pub fn http_get(addr: &str, path: &str, authorization: Option<&str>) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = (response.windows(4))
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    // Go answers a plain request to its TLS port in HTTP/1.0.
    let status = (status_line.strip_prefix("HTTP/1.1 "))
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            let shown = String::from_utf8_lossy(&response[..response.len().min(200)]);
            std::io::Error::other(format!("not an HTTP/1.x response: {shown:?}"))
        })?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Prints why a test is skipped, or panics with it when `NNSIGN_TEST_REGISTRY=required`.
fn skip<T>(why: &str) -> Option<T> {
    if std::env::var(REQUIRED_ENV).as_deref() == Ok("required") {
        panic!("{why} ({REQUIRED_ENV}=required)");
    }
    eprintln!(
        "SKIPPED: registry test not run: {why} (set {REQUIRED_ENV}=required to fail instead)"
    );
    None
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A port that was free a moment ago; `launch` retries if it is taken before the registry
/// binds it.
fn free_loopback_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port to probe");
    let port = listener.local_addr().expect("probe port").port();
    format!("127.0.0.1:{port}")
}

/// One htpasswd entry. Distribution accepts bcrypt only; cost 4 (the least bcrypt allows)
/// since these credentials guard nothing and every request is checked against the hash.
fn htpasswd_line(user: &str, password: &str) -> String {
    assert!(
        !user.contains([':', '\n']),
        "an htpasswd user name has no ':' or newline"
    );
    let hash = bcrypt::hash(password, 4).expect("bcrypt hashes any password");
    format!("{user}:{hash}\n")
}

/// `path` as a YAML string: a JSON string is one, and quotes any path safely.
fn quoted(path: &Path) -> String {
    let path = path.to_str().expect("temporary folders have UTF-8 names");
    serde_json::to_string(path).expect("a str always serialises")
}

/// The registry's configuration without `auth` (appended by the caller, if any).
fn config_yaml(addr: &str, storage: &Path) -> String {
    format!(
        "version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {addr}
",
        storage = quoted(storage),
    )
}

/// A test CA and a certificate for 127.0.0.1 it issued (P-256, two days), in `dir`: `ca.pem`,
/// and the returned leaf certificate and key. Uses the openssl command (CI installs it).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command runs (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=nnsign test CA",
    ]);
    ca.extend([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (dir.join("leaf.pem"), dir.join("leaf.key"))
}
