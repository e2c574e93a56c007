//! Every error of the library as the person at the terminal is told it: the exit code (one
//! per kind of failure, the contract of pipeline scripts), a kind, one line naming the file
//! and the problem, and what to do about it. The CLI prints these; the Python package raises
//! them as exceptions of one class per exit code, with the same line. Deciding what failed is
//! the layers below's; this module only says it.

use std::path::{Path, PathBuf};

use crate::import::ImportError;
use crate::keys::KeyError;
use crate::load::LoadError;
use crate::pack::PackError;
use crate::trust::{PolicyError, Reason, Refused};
use crate::verify::VerifyError;

/// Exit codes of the CLI, documented in README.md and docs/FORMAT.md; the Python package raises
/// one exception class per code.
pub mod exit {
    pub const OK: u8 = 0;
    /// A model, key or data file given to nnsign is malformed or does not fit.
    pub const INPUT: u8 = 1;
    /// Bad command line.
    pub const USAGE: u8 = 2;
    /// A file could not be read or written.
    pub const IO: u8 = 3;
    /// Unsigned, bad signature, or no signature by a trusted key.
    pub const SIGNATURE: u8 = 4;
    /// The artifact is malformed, truncated, extended, or fails a digest.
    pub const INTEGRITY: u8 = 5;
    /// The architecture is invalid or does not fit the weights.
    pub const SCHEMA: u8 = 6;
    /// Decryption failed: no key, a wrong key, or ciphertext that does not authenticate.
    pub const DECRYPT: u8 = 7;
    /// `scan` found a file that would execute or reference code when loaded.
    pub const DANGER: u8 = 8;
    /// Expired, too old, below a minimum version, created in the future, or a rollback.
    pub const FRESHNESS: u8 = 9;
    /// `diff`: the artifacts differ, or encrypted content keeps them from being shown the same.
    pub const DIFFERENT: u8 = 10;
    /// A registry could not be reached, refused the credentials, or has no such artifact.
    pub const REGISTRY: u8 = 11;
}

/// A failure as the user sees it: one line naming the file and the problem, an optional hint,
/// and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub kind: &'static str,
    pub file: Option<PathBuf>,
    pub message: String,
    pub hint: Option<String>,
    /// The verb already reported the outcome on stdout: in JSON mode nothing more is printed.
    pub reported: bool,
}

impl Failure {
    pub fn new(
        code: u8,
        kind: &'static str,
        file: Option<&Path>,
        message: impl Into<String>,
    ) -> Self {
        Failure {
            code,
            kind,
            file: file.map(Path::to_path_buf),
            message: message.into(),
            hint: None,
            reported: false,
        }
    }

    pub fn reported(mut self) -> Self {
        self.reported = true;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(exit::USAGE, "usage", None, message)
    }

    /// The one line a person reads: the file, then the problem (lower layers' messages that
    /// already start with the path do not say it twice), on one line whatever the message.
    pub fn line(&self) -> String {
        let line = match &self.file {
            Some(f) if !self.message.starts_with(&f.display().to_string()) => {
                format!("{}: {}", f.display(), self.message)
            }
            _ => self.message.clone(),
        };
        line.replace('\n', " ")
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line())
    }
}

/// Maps a verification error to what the user is told.
pub fn verify_failure(path: &Path, e: VerifyError) -> Failure {
    use crate::format::FormatError as F;
    let f = |code, kind, msg: String| Failure::new(code, kind, Some(path), msg);
    match e {
        VerifyError::Io(err) => io_failure(path, &err),
        VerifyError::Format(F::BadMagic) => f(exit::INTEGRITY, "integrity", F::BadMagic.to_string())
            .hint("nnsign artifacts are made by `nnsign pack`; check that this is the right file"),
        VerifyError::Format(err @ F::Truncated(_)) => f(exit::INTEGRITY, "integrity", err.to_string())
            .hint("the file was cut short (an interrupted copy or download?); fetch it again"),
        VerifyError::Format(err @ F::Trailing(_)) => f(exit::INTEGRITY, "integrity", err.to_string())
            .hint("bytes were appended to the artifact after it was made; fetch a clean copy"),
        VerifyError::Format(err @ (F::Unsupported(_) | F::FrameVersion(_))) => {
            f(exit::INTEGRITY, "integrity", err.to_string())
                .hint("the artifact was made by a newer nnsign: upgrade nnsign on this host to verify it")
        }
        VerifyError::Format(err) => f(exit::INTEGRITY, "integrity", err.to_string())
            .hint("the artifact is damaged or was not written by nnsign; do not deploy it"),
        VerifyError::Signature(err) => f(exit::SIGNATURE, "signature", err.to_string())
            .hint("the artifact was modified after signing; do not deploy it, fetch it again from its source"),
        err @ VerifyError::DuplicateSigner(_) => f(exit::SIGNATURE, "signature", err.to_string())
            .hint("the envelope was edited after signing; fetch the artifact again from its source"),
        VerifyError::Unsigned => f(exit::SIGNATURE, "signature", "the artifact is unsigned".into())
            .hint("sign it with `nnsign pack --sign KEY`, or pass --allow-unsigned to accept unsigned artifacts"),
        VerifyError::Untrusted { why, .. } => f(exit::SIGNATURE, "trust", format!("not signed by a trusted key: {why}"))
            .hint("if you trust that signer, add its .pub file to the trust store (see keys/README.md)"),
        err @ VerifyError::Bool(_) => f(exit::INTEGRITY, "integrity", err.to_string())
            .hint("the signer wrote a malformed BOOL tensor (a byte other than 0 and 1); do not deploy it"),
        err @ VerifyError::ShardMissing { .. } => f(exit::INTEGRITY, "integrity", err.to_string())
            .hint("a sharded artifact is its .nns file and every shard file beside it, as named; copy or pull all of them"),
        err @ VerifyError::ShardLength { .. } => f(exit::INTEGRITY, "integrity", err.to_string())
            .hint("that shard was cut short, extended or replaced by another; fetch it again from the artifact's source"),
        err @ (VerifyError::Digest { .. } | VerifyError::Padding(_)) => {
            f(exit::INTEGRITY, "integrity", err.to_string())
                .hint("this copy was modified or corrupted after signing; do not deploy it, fetch it again")
        }
    }
}

pub fn io_failure(path: &Path, e: &std::io::Error) -> Failure {
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound => Some("check the path"),
        std::io::ErrorKind::PermissionDenied => Some("check the file's permissions"),
        _ => None,
    };
    let f = Failure::new(exit::IO, "io", Some(path), e.to_string());
    match hint {
        Some(h) => f.hint(h),
        None => f,
    }
}

pub fn key_failure(e: KeyError) -> Failure {
    match e {
        KeyError::Io { path, source } => io_failure(&path, &source),
        KeyError::Exists(ref p) => Failure::new(exit::IO, "io", Some(&p.clone()), e.to_string()),
        KeyError::EmptyTrust(ref p) => {
            Failure::new(exit::USAGE, "usage", Some(&p.clone()), e.to_string())
        }
        KeyError::NeedPassphrase(ref p) | KeyError::BadPassphrase(ref p) => {
            Failure::new(exit::INPUT, "key", Some(&p.clone()), e.to_string())
        }
        KeyError::Malformed { ref path, .. } => {
            Failure::new(exit::INPUT, "key", Some(&path.clone()), e.to_string())
        }
        other => Failure::new(exit::INPUT, "key", None, other.to_string()),
    }
}

/// Maps a failure to open an encrypted payload to what the user is told.
pub fn unseal_failure(path: &Path, e: crate::unseal::UnsealError) -> Failure {
    use crate::crypto::CryptoError as C;
    use crate::unseal::UnsealError as U;
    let f = |msg: String| Failure::new(exit::DECRYPT, "decryption", Some(path), msg);
    match e {
        U::NotEncrypted => Failure::new(exit::USAGE, "usage", Some(path), e.to_string()),
        U::Verify(v) => verify_failure(path, v),
        U::Format(err) => Failure::new(exit::INTEGRITY, "integrity", Some(path), err.to_string())
            .hint("the encrypted content is malformed: whoever signed it made a broken artifact"),
        U::Crypto(err @ C::NotARecipient(_)) => f(err.to_string())
            .hint("`nnsign inspect` lists the key ids it was encrypted to; use the matching key"),
        U::Crypto(err @ C::WrongKey(_)) => f(err.to_string())
            .hint("the recipient entry is covered by the verified signature, so the key or passphrase given is not the one it was encrypted with"),
        U::Crypto(err) => f(err.to_string())
            .hint("the ciphertext matches its signed digests but does not decrypt: the signer encrypted something broken, or a key holder forged it"),
    }
}

/// Maps a policy or rollback-state refusal to what the user is told.
pub fn policy_failure(path: &Path, e: PolicyError) -> Failure {
    match e {
        PolicyError::Config(m) => Failure::new(exit::USAGE, "policy", None, m)
            .hint("fix the policy or state file (docs/POLICY.md)"),
        PolicyError::Signers(m) => Failure::new(exit::SIGNATURE, "trust", Some(path), m)
            .hint("get the missing signatures with `nnsign sign ART --key KEY`, or check the policy's rules"),
        PolicyError::NoRule(m) => Failure::new(exit::SIGNATURE, "trust", Some(path), m)
            .hint("the policy accepts no model of this name: add a [[rule]] whose models pattern matches, or check the name"),
        PolicyError::Freshness(m) => Failure::new(exit::FRESHNESS, "freshness", Some(path), m),
        PolicyError::Io(m) => Failure::new(exit::IO, "io", None, m),
    }
}

/// Maps a refusal of [`crate::trust::Trust::admit`] to what the user is told: its first reason.
pub fn refused_failure(path: &Path, refused: Refused) -> Failure {
    match refused.first() {
        Reason::Verify(e) => verify_failure(path, e),
        e @ Reason::RevokedOnly { .. } => Failure::new(exit::SIGNATURE, "trust", Some(path), e.to_string())
            .hint("a revoked key may be in an attacker's hands: do not deploy this artifact; ask for one signed by a current key"),
        Reason::Policy(e) => policy_failure(path, e),
    }
}

/// Maps a failure to load the verified artifact at `path` to what the user is told.
pub fn load_failure(path: &Path, e: LoadError) -> Failure {
    match e {
        LoadError::Verify(v) => verify_failure(path, v),
        LoadError::Unseal(u) => unseal_failure(path, u),
        e @ LoadError::Encrypted => Failure::new(exit::DECRYPT, "decryption", Some(path), e.to_string())
            .hint("`nnsign verify` checks an encrypted artifact without a key; loading it needs one"),
        LoadError::Schema(s) => Failure::new(exit::SCHEMA, "schema", Some(path), format!("invalid architecture: {s}"))
            .hint("the signed architecture does not fit its weights; rebuild the artifact with a corrected --arch"),
        e @ LoadError::TooLarge { .. } => Failure::new(exit::SCHEMA, "schema", Some(path), e.to_string())
            .hint("if this host can afford it, raise the limit with --max-memory BYTES"),
        LoadError::Run(r) => Failure::new(exit::SCHEMA, "schema", Some(path), r.to_string()),
    }
}

/// Maps a failure to read a model file to what the user is told.
pub fn import_failure(e: ImportError) -> Failure {
    match e {
        ImportError::Io { path, source } => io_failure(&path, &source),
        ImportError::UnknownFormat(ref p) => {
            Failure::new(exit::INPUT, "input", Some(&p.clone()), e.to_string())
                .hint("pack reads ONNX, Keras .keras, PyTorch (torch.save, pickled state dicts), GGUF, safetensors, .npy and .npz; convert other formats first")
        }
        ImportError::Invalid { ref path, .. } => {
            Failure::new(exit::INPUT, "input", Some(&path.clone()), e.to_string())
        }
        ImportError::Duplicate { .. } => Failure::new(exit::INPUT, "input", None, e.to_string()),
    }
}

/// Maps a failure to pack to what the user is told: `arch` is the architecture file given
/// apart from the weights, if any, and `model` the first model file.
pub fn pack_failure(arch: Option<&Path>, model: &Path, e: PackError) -> Failure {
    match e {
        PackError::Io { path, source } => io_failure(&path, &source),
        PackError::Schema(err) => match arch {
            Some(arch) => Failure::new(exit::SCHEMA, "schema", Some(arch), format!("architecture does not fit the weights: {err}"))
                .hint("fix the --arch file so that it matches the weights (docs/SCHEMA.md)"),
            None => Failure::new(exit::SCHEMA, "schema", Some(model), format!("the model's graph is not one nnsign can run: {err}"))
                .hint("give --weights-only to pack the weights alone"),
        },
        PackError::TensorSize { .. } => Failure::new(exit::INPUT, "input", None, e.to_string()),
        PackError::Crypto(err) => Failure::new(exit::INPUT, "input", None, format!("cannot encrypt: {err}")),
        // Metadata from the flags or the inputs, or names from the inputs or the architecture,
        // that the format cannot hold.
        PackError::Format(err) => Failure::new(exit::INPUT, "input", None, format!("cannot pack: {err}"))
            .hint("check --name, --model-version, --description, the labels and the names in the inputs against the limits of docs/FORMAT.md"),
    }
}

/// Maps a registry error to what the user is told; `what` names the reference or file.
pub fn oci_failure(what: &Path, e: crate::oci::OciError) -> Failure {
    use crate::oci::OciError as E;
    match e {
        E::Usage(m) => Failure::new(exit::USAGE, "usage", Some(what), m),
        E::Registry(m) => Failure::new(exit::REGISTRY, "registry", Some(what), m)
            .hint("check the reference, the network and the credentials (NNSIGN_REGISTRY_USERNAME and NNSIGN_REGISTRY_PASSWORD, or docker login); a pull that stopped resumes when run again"),
        E::Integrity(m) => Failure::new(exit::INTEGRITY, "integrity", Some(what), m)
            .hint("the registry served something other than the artifact asked for; do not deploy it"),
        E::Io { path, source } => io_failure(&path, &source),
    }
}
