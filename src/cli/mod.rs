//! Flag parsing, error reporting and exit codes shared by the verbs; one file per verb.

mod demo;
mod diff;
mod inspect;
mod keygen;
mod pack;
mod pull;
mod push;
mod scan;
mod sign;
mod unpack;
mod verify;
mod verify_load;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nnsign::keys::encryption::EncryptionSecretKey;
use nnsign::keys::{KeyError, Passphrase, TrustStore};
use nnsign::trust::{Admitted, Clock, Policy, Recorded, Trust};
use nnsign::unseal::Unlock;
use nnsign::verify::{Artifact, Authenticated};
use serde_json::json;

pub use nnsign::failure::{
    exit, io_failure, key_failure, oci_failure, policy_failure, refused_failure, unseal_failure,
    verify_failure, Failure,
};

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 bad input file, 2 usage, 3 I/O, 4 signature or trust,
            5 integrity (damaged or malformed artifact), 6 schema, 7 decryption,
            8 scan found code a file would run, 9 freshness (expired, too old,
            below the minimum version, or a rollback), 10 diff found differences,
            11 registry (unreachable, credentials refused, no such artifact).
Docs: README.md, docs/FORMAT.md, docs/POLICY.md, docs/SECURITY.md, keys/README.md";

#[derive(Parser)]
#[command(
    name = "nnsign",
    version,
    disable_version_flag = true,
    about = "Sign, verify and safely load ML model artifacts (no code runs from a model file)",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Print version (with --verbose: also the code each crypto primitive runs on this CPU)
    #[arg(short = 'V', long)]
    version: bool,
    /// With --version: which SHA-256, ChaCha20 and Poly1305 code paths this build runs here.
    #[arg(long, requires = "version")]
    verbose: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `nnsign --version [--verbose]`.
fn version(verbose: bool) {
    let mut out = format!("nnsign {}\n", env!("CARGO_PKG_VERSION"));
    if verbose {
        for (primitive, backend) in nnsign::crypto::backends() {
            out += &format!("{primitive:<9} {backend}\n");
        }
        out += &format!(
            "threads   {} (RAYON_NUM_THREADS overrides)\n",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

#[derive(Subcommand)]
enum Command {
    Keygen(keygen::Args),
    Pack(pack::Args),
    Verify(verify::Args),
    VerifyLoad(verify_load::Args),
    Inspect(inspect::Args),
    Diff(diff::Args),
    Unpack(unpack::Args),
    Demo(demo::Args),
    Scan(scan::Args),
    Sign(sign::Args),
    Push(push::Args),
    Pull(pull::Args),
}

/// Flags every verb has.
#[derive(clap::Args, Clone, Copy)]
pub struct Common {
    /// Print one JSON object on stdout instead of text (errors too).
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors; no progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Flags of the verbs that check trust.
#[derive(clap::Args, Clone)]
pub struct TrustArgs {
    /// A trusted public key (.pub) or a directory of them; repeatable. Also read from
    /// NNSIGN_TRUST (paths separated by ':') when no --policy is given.
    #[arg(long, value_name = "PATH", conflicts_with = "policy")]
    pub trust: Vec<PathBuf>,
    /// A trust policy (docs/POLICY.md): which keys may sign which models and how many must,
    /// minimum versions, maximum ages, revoked keys.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Rollback protection: refuse a lower version of a model name than this state file has
    /// accepted (or the same version with other content); record newer ones. Overrides the
    /// policy's `state`.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Accept an artifact with no signature at all (digests are still checked). A signed
    /// artifact still needs a trusted signer. Not with --policy or --state: anyone can make an
    /// unsigned artifact, so none may satisfy a rule or raise a recorded version.
    #[arg(long, conflicts_with_all = ["policy", "state"])]
    pub allow_unsigned: bool,
}

/// A sharded artifact's file must be named `NAME.nns`: its shards are `NAME-KKKKK-of-NNNNN`
/// whether it is `NAME.nns` or `NAME`, so without the extension two artifacts could take each
/// other's shard files.
pub fn sharded_name(out: &Path) -> Result<()> {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned());
    match name.as_deref().and_then(|n| n.strip_suffix(".nns")) {
        Some(stem) if !stem.is_empty() => Ok(()),
        _ => Err(Failure::usage(format!(
            "{}: a sharded artifact's name must end in .nns (its shard files are named after it)",
            out.display()
        ))),
    }
}

/// Flags of the verbs that talk to a registry.
#[derive(clap::Args, Clone)]
pub struct RegistryArgs {
    /// Plain HTTP instead of TLS: only for a registry on this machine (127.0.0.1, ::1,
    /// localhost), as in tests; refused for any other host.
    #[arg(long)]
    pub insecure: bool,
    /// Files moved at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// push: files larger than this are uploaded in 4 MiB chunks, one request each (what
    /// registries behind body-size limits accept), smaller ones in one request.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub chunked_above: u64,
}

impl RegistryArgs {
    pub fn options(&self) -> nnsign::oci::Options {
        nnsign::oci::Options {
            insecure: self.insecure,
            jobs: self.jobs,
            chunked_above: self.chunked_above,
        }
    }
}

/// An `oci://REF` argument of `verify` or `verify-load`, fetched into a temporary folder that
/// is deleted when this is dropped.
pub struct Remote {
    dir: tempfile::TempDir,
    pub head: PathBuf,
}

/// Fetches `arg` into a temporary folder if it is `oci://REF`; `None` for a local path.
pub fn fetch_remote(arg: &Path, registry: &RegistryArgs, common: Common) -> Result<Option<Remote>> {
    let Some(text) = arg.to_str().filter(|s| s.starts_with("oci://")) else {
        return Ok(None);
    };
    let reference = nnsign::oci::parse_reference(text).map_err(|e| oci_failure(arg, e))?;
    let dir = tempfile::Builder::new()
        .prefix("nnsign-oci-")
        .tempdir()
        .map_err(|e| io_failure(&std::env::temp_dir(), &e))?;
    let name = format!(
        "{}.nns",
        reference
            .repository()
            .rsplit('/')
            .next()
            .unwrap_or("artifact")
    );
    let bar = progress_bar(common, 0, "pulling");
    let fetched = nnsign::oci::fetch(
        &reference,
        dir.path(),
        name.as_ref(),
        &registry.options(),
        &|n, total| {
            bar.set_length(total);
            bar.set_position(n);
        },
    )
    .map_err(|e| oci_failure(arg, e))?;
    bar.finish_and_clear();
    Ok(Some(Remote {
        dir,
        head: fetched.head,
    }))
}

impl Remote {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A failure about files fetched into `dir`, told of `given` (the reference the user wrote):
/// the temporary folder is named nowhere, shard files by their names alone.
pub fn as_given(mut f: Failure, dir: &Path, given: &Path) -> Failure {
    if f.file.as_deref().is_some_and(|p| p.starts_with(dir)) {
        f.file = Some(given.to_owned());
    }
    f.message = f.message.replace(&format!("{}/", dir.display()), "");
    f
}

/// Prints a failure: one JSON object on stdout in `--json` mode (unless the verb already
/// reported), else `nnsign: error: LINE` and its hint on stderr.
fn print(f: &Failure, json_mode: bool) {
    if json_mode && f.reported {
        return;
    }
    if json_mode {
        let v = json!({
            "ok": false,
            "exit_code": f.code,
            "error": {
                "kind": f.kind,
                "file": f.file,
                "message": f.message,
                "hint": f.hint,
            }
        });
        println!("{v}");
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "nnsign: error: {}", f.line());
    if let Some(h) = &f.hint {
        let _ = writeln!(err, "  hint: {h}");
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// Refuses an output path that names a file the verb reads: writing it would destroy an input
/// (a weight file, a key, the artifact).
pub fn refuse_overwrite<'a>(
    output: &Path,
    reads: impl IntoIterator<Item = &'a Path>,
) -> Result<()> {
    for input in reads {
        if nnsign::output::same_file(input, output) {
            return Err(Failure::usage(format!(
                "output {} is also an input ({}); nnsign never overwrites what it reads",
                output.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// The trust store from `--trust` and `NNSIGN_TRUST`. Empty when neither is given.
pub fn trust_store(args: &TrustArgs) -> Result<TrustStore> {
    let mut paths = args.trust.clone();
    if let Ok(env) = std::env::var("NNSIGN_TRUST") {
        paths.extend(env.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    TrustStore::load(&paths).map_err(key_failure)
}

/// Flags of the verbs that can decrypt.
#[derive(clap::Args, Clone)]
pub struct DecryptArgs {
    /// Decrypt with this X25519 private key (from `nnsign keygen --encryption`).
    #[arg(long, value_name = "KEY", conflicts_with = "passphrase_env")]
    pub decrypt_with: Option<PathBuf>,
    /// Environment variable holding the --decrypt-with key file's passphrase (else a prompt on
    /// a terminal).
    #[arg(long, value_name = "VAR", requires = "decrypt_with")]
    pub key_passphrase_env: Option<String>,
    /// Decrypt an artifact packed with a passphrase, read from this environment variable
    /// (without it, a no-echo prompt on a terminal asks for it).
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
}

/// What opens an encrypted artifact, as given on the command line.
pub enum Opener {
    Key(EncryptionSecretKey),
    Passphrase(Passphrase),
}

impl Opener {
    pub fn unlock(&self) -> Unlock<'_> {
        match self {
            Opener::Key(k) => Unlock::Key(k),
            Opener::Passphrase(p) => Unlock::Passphrase(p),
        }
    }
}

impl DecryptArgs {
    /// Reads the decryption key, if one was given. Done before the artifact is opened, so that
    /// a wrong key passphrase fails before minutes of verification.
    pub fn key(&self) -> Result<Option<EncryptionSecretKey>> {
        let Some(path) = &self.decrypt_with else {
            return Ok(None);
        };
        EncryptionSecretKey::read(path, || {
            passphrase_from(
                "--key-passphrase-env",
                self.key_passphrase_env.as_deref(),
                "passphrase for the decryption key: ",
            )
        })
        .map(Some)
        .map_err(key_failure)
    }

    /// What opens `auth`: `key` (from [`DecryptArgs::key`]), or for an artifact packed with a
    /// passphrase, the passphrase from `--passphrase-env` or a prompt. Fails when the artifact
    /// is encrypted and nothing that could open it was given, or when a passphrase was given
    /// for an artifact that has none.
    pub fn opener(
        &self,
        auth: &Authenticated,
        key: Option<EncryptionSecretKey>,
    ) -> Result<Option<Opener>> {
        let path = auth.path();
        if let Some(key) = key {
            return Ok(Some(Opener::Key(key)));
        }
        let Some(enc) = &auth.manifest.encryption else {
            return match &self.passphrase_env {
                Some(_) => Err(Failure::new(
                    exit::USAGE,
                    "usage",
                    Some(path),
                    "the artifact is not encrypted; drop --passphrase-env",
                )),
                None => Ok(None),
            };
        };
        let decrypt = |msg: &str| Failure::new(exit::DECRYPT, "decryption", Some(path), msg);
        if !enc.has_passphrase() {
            let ids = verify::recipient_ids(&auth.manifest).join(", ");
            return Err(match self.passphrase_env {
                Some(_) => decrypt(&format!(
                    "the artifact is encrypted to {ids}, not to a passphrase; give the matching key with --decrypt-with KEY"
                )),
                None => decrypt(&format!(
                    "the artifact is encrypted to {ids}; give the matching key with --decrypt-with KEY"
                )),
            }
            .hint("`nnsign verify` checks an encrypted artifact without a key; reading its content needs one"));
        }
        let prompt = format!("passphrase for {}: ", path.display());
        match passphrase_from("--passphrase-env", self.passphrase_env.as_deref(), &prompt)
            .map_err(key_failure)?
        {
            Some(p) => Ok(Some(Opener::Passphrase(p))),
            None => Err(decrypt(
                "the artifact is encrypted with a passphrase; give it with --passphrase-env VAR",
            )
            .hint("on a terminal, nnsign asks for it instead")),
        }
    }
}

/// What the trust flags say to trust: `--policy`, or the keys of `--trust` and
/// `NNSIGN_TRUST`; `--state` over the policy's own; `--allow-unsigned`.
pub fn trust(args: &TrustArgs) -> Result<Trust> {
    let trust = match &args.policy {
        Some(p) => Trust::new(Policy::load(p).map_err(|e| policy_failure(p, e))?),
        None => {
            let store = trust_store(args)?;
            let source = (args.trust.first().cloned()).unwrap_or_else(|| "NNSIGN_TRUST".into());
            Trust::keys(&store, &source)
        }
    };
    let trust = (trust.with_state(args.state.clone())).allowing_unsigned(args.allow_unsigned);
    if trust.trusts_no_key() && !args.allow_unsigned {
        return Err(Failure::usage(
            "no trusted keys: give --trust PATH (a .pub file or a directory of them), set NNSIGN_TRUST, or give --policy FILE",
        ));
    }
    Ok(trust)
}

/// Opens the artifact at `path` and asks the library whether it may be used here
/// ([`Trust::admit`]); a refusal is reported by its first reason.
pub fn admit(path: &Path, args: &TrustArgs) -> Result<Admitted> {
    let trust = trust(args)?;
    let artifact = Artifact::open(path).map_err(|e| verify_failure(path, e))?;
    trust
        .admit(artifact, Clock::System)
        .map_err(|refused| refused_failure(path, refused))
}

/// Records the version of an artifact a verb has used in the rollback state (if there is
/// one), and adds what happened to the report.
pub fn record(admitted: &Admitted, value: &mut serde_json::Value, text: &mut String) -> Result<()> {
    let path = admitted.artifact.path();
    let Some((file, done)) = admitted
        .record(Clock::System)
        .map_err(|e| policy_failure(path, e))?
    else {
        return Ok(());
    };
    let version = (admitted.artifact.manifest.model.version.as_deref()).unwrap_or_default();
    let (what, line) = match done {
        Recorded::Same => ("same", format!("version {version} accepted before")),
        Recorded::Raised { from: None } => ("first", format!("first version {version} recorded")),
        Recorded::Raised { from: Some(old) } => {
            ("raised", format!("version raised from {old} to {version}"))
        }
    };
    value["state"] = serde_json::json!({"file": file, "update": what});
    text.push_str(&format!("  state   {line} in {}\n", file.display()));
    Ok(())
}

/// The passphrase from the variable named by `--passphrase-env`, or from a no-echo prompt when
/// a terminal is attached, or none.
pub fn passphrase(
    env: Option<&str>,
    prompt: &str,
) -> std::result::Result<Option<Passphrase>, KeyError> {
    passphrase_from("--passphrase-env", env, prompt)
}

/// A new passphrase for `what`, typed twice at a no-echo prompt (asked for by `flag`).
pub fn new_passphrase(what: &str, flag: &str) -> Result<Passphrase> {
    let first = passphrase(None, &format!("passphrase for {what}: ")).map_err(key_failure)?;
    let Some(first) = first else {
        return Err(Failure::usage(format!(
            "{flag} needs a terminal to ask for the passphrase; use --passphrase-env VAR in pipelines"
        )));
    };
    let again = passphrase(None, "the same passphrase again: ").map_err(key_failure)?;
    if again.as_ref().map(|a| a.as_str()) != Some(first.as_str()) {
        return Err(Failure::usage(
            "the two passphrases differ; nothing was written",
        ));
    }
    Ok(first)
}

/// [`passphrase`] from the variable given with `flag`.
pub fn passphrase_from(
    flag: &str,
    env: Option<&str>,
    prompt: &str,
) -> std::result::Result<Option<Passphrase>, KeyError> {
    if let Some(var) = env {
        let value = std::env::var(var)
            .map_err(|_| KeyError::Passphrase(format!("{flag} {var}: the variable is not set")))?;
        if value.is_empty() {
            return Err(KeyError::Passphrase(format!(
                "{flag} {var}: the variable is empty"
            )));
        }
        return Ok(Some(Passphrase::new(value)));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    rpassword::prompt_password(prompt)
        .map(|p| Some(Passphrase::new(p)))
        .map_err(|e| KeyError::Passphrase(format!("reading the passphrase: {e}")))
}

/// A progress bar on stderr for `total` bytes, shown only on a terminal and never in JSON or
/// quiet mode.
/// A size in bytes as people write it: `2GiB`, `512MiB`, `500MB`, `4096` (binary suffixes K, M,
/// G, T with or without `iB`; decimal ones KB, MB, GB, TB).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: write bytes, or a number with KiB, MiB, GiB, TiB, KB, MB, GB or TB"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size: write bytes, or a number and a unit (2GiB)"))?;
    n.checked_mul(unit_bytes)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `--shard-size`: a size of at least one digest chunk.
pub fn parse_shard_size(s: &str) -> std::result::Result<u64, String> {
    let n = parse_size(s)?;
    if n < nnsign::format::CHUNK_SIZE {
        return Err(format!(
            "{s} is below the smallest shard size, 4MiB (one digest chunk)"
        ));
    }
    Ok(n)
}

pub fn progress_bar(common: Common, total: u64, what: &str) -> indicatif::ProgressBar {
    if common.json || common.quiet || !std::io::stderr().is_terminal() || total < (64 << 20) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Warns on stderr, as `nnsign: warning: FILE: ...`, of every signature of `admitted` that
/// counted for nothing because this nnsign does not implement its algorithm (FORMAT.md section
/// 4, rule 5), unless quiet; in `--json` mode too, where the report also lists them.
pub fn warn_unsupported(common: Common, admitted: &Admitted) {
    if common.quiet {
        return;
    }
    let mut err = std::io::stderr().lock();
    for (kid, alg) in admitted.artifact.unsupported() {
        let _ = writeln!(
            err,
            "nnsign: warning: {}: {}",
            admitted.artifact.path().display(),
            nnsign::verify::unsupported_warning(kid, alg)
        );
    }
}

/// Prints a result: the JSON value in `--json` mode, else the text lines (unless quiet).
pub fn report(common: Common, value: serde_json::Value, text: impl FnOnce() -> String) {
    let out = if common.json {
        value.to_string() + "\n"
    } else if common.quiet {
        return;
    } else {
        text()
    };
    // A closed pipe (`nnsign verify ... | head -1`) is not an error worth reporting.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

pub use nnsign::clock::rfc3339;

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    if cli.version {
        version(cli.verbose);
        return ExitCode::from(exit::OK);
    }
    let Some(command) = cli.command else {
        // As clap does for a missing subcommand: the help, on stderr.
        let help = <Cli as clap::CommandFactory>::command().render_help();
        let _ = write!(std::io::stderr().lock(), "{help}");
        return ExitCode::from(exit::USAGE);
    };
    let (json_mode, result) = match command {
        Command::Keygen(a) => (a.common.json, keygen::run(a)),
        Command::Pack(a) => (a.common.json, pack::run(a)),
        Command::Verify(a) => (a.common.json, verify::run(a)),
        Command::VerifyLoad(a) => (a.common.json, verify_load::run(a)),
        Command::Inspect(a) => (a.common.json, inspect::run(a)),
        Command::Diff(a) => (a.common.json, diff::run(a)),
        Command::Unpack(a) => (a.common.json, unpack::run(a)),
        Command::Demo(a) => (a.common.json, demo::run(a)),
        Command::Scan(a) => (a.common.json, scan::run(a)),
        Command::Sign(a) => (a.common.json, sign::run(a)),
        Command::Push(a) => (a.common.json, push::run(a)),
        Command::Pull(a) => (a.common.json, pull::run(a)),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            print(&f, json_mode);
            ExitCode::from(f.code)
        }
    }
}
