//! `nnsign._native`: the Python package's bindings to the nnsign library. Every decision
//! (trust, verification, schema, memory) is the library's; this crate turns Python arguments
//! into library calls, releases the GIL while they run, hands verified tensors to NumPy without
//! copying them, and raises each library failure as the exception class of its exit code, with
//! the line the CLI prints. `nnsign/__init__.py` is the API people call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use nnsign::clock;
use nnsign::failure::{self, exit, Failure};
use nnsign::format::{DType, ModelInfo};
use nnsign::import::{self, Bytes, SourceTensor};
use nnsign::keys::encryption::{EncryptionPublicKey, EncryptionSecretKey};
use nnsign::keys::{self, KeyError, Passphrase, PublicKey, SecretKey, TrustStore};
use nnsign::load::{self as loader, Weights};
use nnsign::model::{Dim, Graph};
use nnsign::pack::{self as packer, EncryptTo, PackInput};
use nnsign::runtime::{self, Tensor, Value};
use nnsign::trust::{Admitted, Clock, Policy, Recorded, Trust};
use nnsign::unseal::Unlock;
use nnsign::verify::Artifact;
use numpy::ndarray::{ArrayD, ArrayView1, IxDyn};
use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

create_exception!(nnsign, Error, PyException, "Every nnsign failure.");
create_exception!(
    nnsign,
    InputError,
    Error,
    "A model, key or data file is malformed or does not fit (CLI exit code 1)."
);
create_exception!(
    nnsign,
    UsageError,
    Error,
    "Arguments that do not go together or cannot be used (exit code 2)."
);
create_exception!(
    nnsign,
    FileError,
    Error,
    "A file could not be read or written (exit code 3)."
);
create_exception!(
    nnsign,
    SignatureError,
    Error,
    "Unsigned, a bad signature, or no signature by a trusted key (exit code 4)."
);
create_exception!(
    nnsign,
    IntegrityError,
    Error,
    "The artifact is malformed, truncated, extended, or fails a digest (exit code 5)."
);
create_exception!(nnsign, SchemaError, Error, "The architecture is invalid, does not fit the weights, or needs more memory than allowed (exit code 6).");
create_exception!(
    nnsign,
    DecryptionError,
    Error,
    "No key, a wrong key, or ciphertext that does not authenticate (exit code 7)."
);
create_exception!(
    nnsign,
    UnsafeFileError,
    Error,
    "A file would execute or reference code when loaded by its framework (exit code 8)."
);
create_exception!(nnsign, FreshnessError, Error, "Expired, too old, below a minimum version, created in the future, or a rollback (exit code 9).");

/// The exception of a failure: its class by exit code, the CLI's line as the message, and
/// `exit_code`, `kind`, `file` and `hint` as attributes.
fn raise(py: Python<'_>, f: Failure) -> PyErr {
    let line = f.line();
    let err = match f.code {
        exit::INPUT => InputError::new_err(line),
        exit::USAGE => UsageError::new_err(line),
        exit::IO => FileError::new_err(line),
        exit::SIGNATURE => SignatureError::new_err(line),
        exit::INTEGRITY => IntegrityError::new_err(line),
        exit::SCHEMA => SchemaError::new_err(line),
        exit::DECRYPT => DecryptionError::new_err(line),
        exit::DANGER => UnsafeFileError::new_err(line),
        exit::FRESHNESS => FreshnessError::new_err(line),
        _ => Error::new_err(line),
    };
    let value = err.value(py);
    let file = f.file.as_ref().map(|p| p.display().to_string());
    let _ = value.setattr("exit_code", f.code);
    let _ = value.setattr("kind", f.kind);
    let _ = value.setattr("file", file);
    let _ = value.setattr("hint", f.hint.as_deref().map(for_python));
    err
}

/// The CLI's options that the library's hints name, and what a Python caller passes instead.
const PYTHON_SPELLING: &[(&str, &str)] = &[
    ("`nnsign pack --sign KEY`", "`nnsign.save(..., sign=KEY)`"),
    ("--allow-unsigned", "allow_unsigned=True"),
    ("--max-memory BYTES", "max_memory=BYTES"),
    ("--weights-only", "weights_only=True"),
    ("--model-version", "version="),
    ("--description", "description="),
    ("--name", "name="),
    ("--arch", "arch="),
];

/// A hint in the words of the Python API: the library's hints name the CLI's options.
fn for_python(hint: &str) -> String {
    PYTHON_SPELLING
        .iter()
        .fold(hint.to_owned(), |h, (cli, py)| h.replace(cli, py))
}

type Result<T> = std::result::Result<T, Failure>;

fn usage(message: impl Into<String>) -> Failure {
    Failure::usage(message)
}

/// What stands for a key given as PEM bytes in messages.
const IN_MEMORY: &str = "<key bytes>";

/// A key argument: a path to a key file, or its PEM text as bytes.
enum KeyArg {
    Path(PathBuf),
    Pem(String),
}

impl KeyArg {
    fn from_py(what: &str, v: &Bound<'_, PyAny>) -> PyResult<KeyArg> {
        if let Ok(b) = v.cast::<PyBytes>() {
            return match String::from_utf8(b.as_bytes().to_vec()) {
                Ok(s) => Ok(KeyArg::Pem(s)),
                Err(_) => Err(raise(
                    v.py(),
                    usage(format!("{what}: key bytes must be PEM text")),
                )),
            };
        }
        let p: PathBuf = v.extract().map_err(|_| {
            raise(
                v.py(),
                usage(format!("{what}: give a key file's path or its PEM bytes")),
            )
        })?;
        Ok(KeyArg::Path(p))
    }
}

fn passphrase_of(p: Option<String>) -> Option<Passphrase> {
    p.map(Passphrase::new)
}

/// Reads a signing key; `passphrase` unlocks an encrypted one.
fn signing_key(key: &KeyArg, passphrase: Option<Passphrase>) -> Result<SecretKey> {
    let ask = || Ok::<_, KeyError>(passphrase);
    match key {
        KeyArg::Path(p) => SecretKey::read(p, ask),
        KeyArg::Pem(text) => SecretKey::from_pem(text, Path::new(IN_MEMORY), ask),
    }
    .map_err(failure::key_failure)
}

fn decryption_key(key: &KeyArg, passphrase: Option<Passphrase>) -> Result<EncryptionSecretKey> {
    let ask = || Ok::<_, KeyError>(passphrase);
    match key {
        KeyArg::Path(p) => EncryptionSecretKey::read(p, ask),
        KeyArg::Pem(text) => EncryptionSecretKey::from_pem(text, Path::new(IN_MEMORY), ask),
    }
    .map_err(failure::key_failure)
}

fn recipient(key: &KeyArg) -> Result<EncryptionPublicKey> {
    match key {
        KeyArg::Path(p) => EncryptionPublicKey::read(p),
        KeyArg::Pem(text) => EncryptionPublicKey::from_pem(text, Path::new(IN_MEMORY)),
    }
    .map_err(failure::key_failure)
}

/// Who to trust, as `nnsign.load(trust=, policy=, state=, allow_unsigned=)` says.
struct TrustArgs {
    keys: Vec<KeyArg>,
    policy: Option<PathBuf>,
    state: Option<PathBuf>,
    allow_unsigned: bool,
}

impl TrustArgs {
    fn from_py(
        trust: Option<&Bound<'_, PyAny>>,
        policy: Option<PathBuf>,
        state: Option<PathBuf>,
        allow_unsigned: bool,
    ) -> PyResult<TrustArgs> {
        let mut keys = Vec::new();
        if let Some(t) = trust {
            if let Ok(list) = t.cast::<PyList>() {
                for item in list.iter() {
                    keys.push(KeyArg::from_py("trust", &item)?);
                }
            } else {
                keys.push(KeyArg::from_py("trust", t)?);
            }
        }
        Ok(TrustArgs {
            keys,
            policy,
            state,
            allow_unsigned,
        })
    }

    /// The library's trust decision for these arguments, as the CLI's trust flags make it.
    fn trust(&self) -> Result<Trust> {
        if self.policy.is_some() && !self.keys.is_empty() {
            return Err(usage("give trust= or policy=, not both"));
        }
        if self.allow_unsigned && (self.policy.is_some() || self.state.is_some()) {
            return Err(usage(
                "allow_unsigned=True does not go with policy= or state=: anyone can make an unsigned artifact",
            ));
        }
        let trust = match &self.policy {
            Some(p) => Trust::new(Policy::load(p).map_err(|e| failure::policy_failure(p, e))?),
            None => {
                let paths: Vec<PathBuf> = (self.keys.iter())
                    .filter_map(|k| match k {
                        KeyArg::Path(p) => Some(p.clone()),
                        KeyArg::Pem(_) => None,
                    })
                    .collect();
                let mut store = TrustStore::load(&paths).map_err(failure::key_failure)?;
                for k in &self.keys {
                    if let KeyArg::Pem(text) = k {
                        let key = PublicKey::from_pem(text.trim()).ok_or_else(|| {
                            Failure::new(
                                exit::INPUT,
                                "key",
                                None,
                                "trust: the key bytes are not an Ed25519 public key in PEM (a .pub file from nnsign keygen)",
                            )
                        })?;
                        store.insert(key, IN_MEMORY);
                    }
                }
                let source = paths.first().cloned().unwrap_or_else(|| IN_MEMORY.into());
                Trust::keys(&store, &source)
            }
        };
        let trust = trust
            .with_state(self.state.clone())
            .allowing_unsigned(self.allow_unsigned);
        if trust.trusts_no_key() && !self.allow_unsigned {
            return Err(usage(
                "no trusted keys: give trust= (a .pub file, a folder of them, or PEM bytes) or policy=",
            ));
        }
        Ok(trust)
    }

    fn admit(&self, path: &Path) -> Result<Admitted> {
        let trust = self.trust()?;
        let artifact = Artifact::open(path).map_err(|e| failure::verify_failure(path, e))?;
        trust
            .admit(artifact, Clock::System)
            .map_err(|refused| failure::refused_failure(path, refused))
    }
}

/// Records the version used in the rollback state, if there is one, into `value["state"]`.
fn record(admitted: &Admitted, value: &mut serde_json::Value) -> Result<()> {
    let path = admitted.artifact.path();
    let recorded = admitted
        .record(Clock::System)
        .map_err(|e| failure::policy_failure(path, e))?;
    if let Some((file, done)) = recorded {
        let update = match done {
            Recorded::Same => "same",
            Recorded::Raised { from: None } => "first",
            Recorded::Raised { from: Some(_) } => "raised",
        };
        value["state"] = serde_json::json!({"file": file, "update": update});
    }
    Ok(())
}

fn no_progress(_: u64) {}

/// Verifies every byte of the artifact at `path` against trusted signers: what `nnsign verify
/// --json` reports, as JSON text.
#[pyfunction]
#[pyo3(signature = (path, trust=None, policy=None, state=None, allow_unsigned=false))]
fn verify(
    py: Python<'_>,
    path: PathBuf,
    trust: Option<&Bound<'_, PyAny>>,
    policy: Option<PathBuf>,
    state: Option<PathBuf>,
    allow_unsigned: bool,
) -> PyResult<String> {
    let args = TrustArgs::from_py(trust, policy, state, allow_unsigned)?;
    py.detach(|| {
        let admitted = args.admit(&path)?;
        (admitted.artifact)
            .check_payload(&no_progress)
            .map_err(|e| failure::verify_failure(&path, e))?;
        let mut value = admitted.describe();
        record(&admitted, &mut value)?;
        Ok(value.to_string())
    })
    .map_err(|f| raise(py, f))
}

/// What the artifact at `path` says about itself, trusting nothing and checking no digest
/// (`nnsign inspect --json`), as JSON text.
#[pyfunction]
fn inspect(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    py.detach(|| {
        let found =
            nnsign::inspect::inspect(&path, &[]).map_err(|e| failure::verify_failure(&path, e))?;
        Ok(found.describe(&path).to_string())
    })
    .map_err(|f| raise(py, f))
}

/// What a model file would execute or reference if its framework loaded it (`nnsign scan
/// --json` of one file), as JSON text. Never runs anything from the file.
#[pyfunction]
fn scan(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    py.detach(|| {
        let report = nnsign::scan::scan(&path).map_err(failure::import_failure)?;
        Ok(serde_json::json!({
            "file": path,
            "format": report.format,
            "dangerous": report.dangerous(),
            "findings": report.findings,
        })
        .to_string())
    })
    .map_err(|f| raise(py, f))
}

/// Writes a new Ed25519 signing key pair (or, with `encryption`, an X25519 pair for receiving
/// encrypted models) as `PREFIX.key` (mode 0600, protected by `passphrase` if given) and
/// `PREFIX.pub`, never over existing files. Returns both paths.
#[pyfunction]
#[pyo3(signature = (prefix, encryption=false, passphrase=None))]
fn keygen(
    py: Python<'_>,
    prefix: PathBuf,
    encryption: bool,
    passphrase: Option<String>,
) -> PyResult<(PathBuf, PathBuf)> {
    let passphrase = passphrase_of(passphrase);
    py.detach(|| {
        if encryption {
            let key = EncryptionSecretKey::generate().map_err(failure::key_failure)?;
            key.write_pair(&prefix, passphrase.as_ref())
        } else {
            let key = SecretKey::generate().map_err(failure::key_failure)?;
            keys::write_pair(&prefix, &key, passphrase.as_ref())
        }
        .map_err(failure::key_failure)
    })
    .map_err(|f| raise(py, f))
}

/// The model metadata and signing options of `nnsign.save`, as `pack` takes them.
struct PackOptions {
    sign: Option<KeyArg>,
    key_passphrase: Option<Passphrase>,
    name: String,
    version: Option<String>,
    description: Option<String>,
    labels: BTreeMap<String, String>,
    encrypt_to: Vec<KeyArg>,
    passphrase: Option<Passphrase>,
    parent: Option<PathBuf>,
    expires: Option<String>,
    arch: Option<String>,
}

impl PackOptions {
    fn from_py(o: &Bound<'_, PyDict>) -> PyResult<PackOptions> {
        let get = |k: &str| o.get_item(k).ok().flatten().filter(|v| !v.is_none());
        let text =
            |k: &str| -> PyResult<Option<String>> { get(k).map(|v| v.extract()).transpose() };
        let mut encrypt_to = Vec::new();
        if let Some(list) = get("encrypt_to") {
            for item in list.try_iter()? {
                encrypt_to.push(KeyArg::from_py("encrypt_to", &item?)?);
            }
        }
        Ok(PackOptions {
            sign: get("sign")
                .map(|k| KeyArg::from_py("sign", &k))
                .transpose()?,
            key_passphrase: passphrase_of(text("key_passphrase")?),
            name: text("name")?.unwrap_or_else(|| "model".into()),
            version: text("version")?,
            description: text("description")?,
            labels: get("labels")
                .map(|v| v.extract())
                .transpose()?
                .unwrap_or_default(),
            encrypt_to,
            passphrase: passphrase_of(text("passphrase")?),
            parent: get("parent").map(|v| v.extract()).transpose()?,
            expires: text("expires")?,
            arch: text("arch")?,
        })
    }

    /// Checks the options as `nnsign pack` checks its flags, reads the keys, and packs.
    /// Packs `tensors` into `out`, its payload in shard files of `shard_size` beside it if
    /// given (as `nnsign pack` does for a model read from several files).
    fn pack(
        self,
        out: &Path,
        tensors: Vec<SourceTensor>,
        arch: Option<Graph>,
        first: &Path,
        shard_size: Option<u64>,
    ) -> Result<String> {
        if self.passphrase.is_some() && !self.encrypt_to.is_empty() {
            return Err(usage("give encrypt_to= or passphrase=, not both"));
        }
        for k in self.labels.keys() {
            if k.is_empty() {
                return Err(usage("labels: a key is empty"));
            }
            if k.starts_with(nnsign::format::RESERVED_LABEL_PREFIX) {
                return Err(usage(format!(
                    "labels: {k}: keys starting with {:?} are reserved for nnsign",
                    nnsign::format::RESERVED_LABEL_PREFIX
                )));
            }
        }
        if let Some(v) = &self.version {
            nnsign::format::parse_version("version", v).map_err(|e| usage(e.to_string()))?;
        }
        let created = packer::created_now();
        let expires = match &self.expires {
            None => None,
            Some(w) => {
                let t =
                    clock::parse_when(w, created).map_err(|e| usage(format!("expires: {e}")))?;
                if t <= created {
                    return Err(usage(format!(
                        "expires {w}: {} is not in the future",
                        clock::utc(t)
                    )));
                }
                Some(t)
            }
        };
        let parent = (self.parent.as_deref())
            .map(|p| packer::parent(p).map_err(|e| failure::verify_failure(p, e)))
            .transpose()?;
        let signer = (self.sign.as_ref())
            .map(|k| signing_key(k, self.key_passphrase.clone()))
            .transpose()?;
        let recipients = (self.encrypt_to.iter())
            .map(recipient)
            .collect::<Result<Vec<_>>>()?;
        let given_arch = self.arch.is_some();
        let arch = match (&self.arch, arch) {
            (Some(_), Some(_)) => {
                return Err(usage(
                    "arch= and a model file with its own graph both give an architecture; drop arch=, or give weights_only=True",
                ))
            }
            (Some(json), None) => Some(Graph::from_json(json).map_err(|e| {
                Failure::new(exit::SCHEMA, "schema", None, format!("arch: {e}"))
                    .hint("the architecture must follow the JSON form in docs/SCHEMA.md")
            })?),
            (None, a) => a,
        };
        let model = ModelInfo {
            name: self.name,
            version: self.version,
            description: self.description,
            created,
            expires,
            producer: format!("nnsign {} (Python)", env!("CARGO_PKG_VERSION")),
            labels: self.labels,
            parent,
        };
        let encrypt = match &self.passphrase {
            Some(p) => Some(EncryptTo {
                recipients: Vec::new(),
                passphrase: Some((p, nnsign::crypto::ARGON2_DEFAULT)),
            }),
            None => (!recipients.is_empty()).then_some(EncryptTo {
                recipients,
                passphrase: None,
            }),
        };
        let packed = packer::pack_sharded(
            PackInput {
                model,
                arch,
                tensors,
                signer: signer.as_ref(),
                encrypt,
            },
            out,
            shard_size,
            &no_progress,
        )
        .map_err(|e| match e {
            // The graph came from arch=, not from the model file: say so, and how to fix it.
            packer::PackError::Schema(err) if given_arch => Failure::new(
                exit::SCHEMA,
                "schema",
                None,
                format!("arch: the architecture does not fit the weights: {err}"),
            )
            .hint("fix arch= so that its weight names, dtypes and shapes match the tensors (docs/SCHEMA.md)"),
            e => failure::pack_failure(None, first, e),
        })?;
        Ok(serde_json::json!({
            "artifact": out,
            "digest": format!("sha256:{}", keys::hex(&packed.digest)),
            "signer": packed.signer.map(|k| k.to_string()),
            "tensors": packed.tensors,
            "payload_bytes": packed.payload_len,
            "file_bytes": packed.file_len,
            "shards": (packed.shards.iter())
                .map(|(path, bytes)| serde_json::json!({"file": path, "bytes": bytes}))
                .collect::<Vec<_>>(),
        })
        .to_string())
    }
}

/// The bytes of a NumPy array that `pack_arrays` holds a reference to until packing returns.
struct ArrayBytes {
    ptr: *const u8,
    len: usize,
}

// SAFETY: `ArrayBytes` only reads `len` bytes at `ptr`, which stay allocated at that address
// while `pack_arrays` holds the array (see there); reading them from any thread is sound.
unsafe impl Send for ArrayBytes {}
unsafe impl Sync for ArrayBytes {}

impl AsRef<[u8]> for ArrayBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` and `len` are those of a C-contiguous array's data that lives as long
        // as this value (see `pack_arrays`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Packs NumPy arrays: `arrays` is a list of `(name, dtype, shape, bytes)`, the bytes a 1-D
/// uint8 view of a C-contiguous array, little-endian. Returns what `pack --json` reports.
///
/// The arrays are not copied first: `pack` copies each chunk out of them once and hashes and
/// writes that copy, so the digests always match the bytes written. An array that another
/// thread changes meanwhile is saved partly changed, as by any writer; a copy made up front
/// under the GIL did not prevent that either, as NumPy releases the GIL while it writes.
#[pyfunction]
fn pack_arrays(
    py: Python<'_>,
    out: PathBuf,
    arrays: &Bound<'_, PyList>,
    options: &Bound<'_, PyDict>,
) -> PyResult<String> {
    let options = PackOptions::from_py(options)?;
    let origin = PathBuf::from("<arrays>");
    let mut held = Vec::with_capacity(arrays.len());
    let mut tensors = Vec::with_capacity(arrays.len());
    for item in arrays.iter() {
        let (name, dtype, shape, array): (String, String, Vec<u64>, PyReadonlyArray1<'_, u8>) =
            item.extract()?;
        let dtype = DType::from_name(&dtype).ok_or_else(|| {
            raise(
                py,
                Failure::new(
                    exit::INPUT,
                    "input",
                    None,
                    format!("array {name:?}: dtype {dtype} cannot be stored"),
                ),
            )
        })?;
        let bytes = array
            .as_slice()
            .map_err(|_| raise(py, usage(format!("array {name:?}: not contiguous"))))?;
        let bytes = ArrayBytes {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        };
        tensors.push(SourceTensor {
            name,
            dtype,
            shape,
            bytes: Bytes::Shared(Arc::new(bytes)),
            origin: origin.clone(),
        });
        held.push(array);
    }
    // `held` keeps a reference to every array until `pack` has returned and dropped `tensors`:
    // while referenced, an array's data is neither freed nor moved (NumPy refuses to resize an
    // array that is referenced elsewhere).
    let packed = py.detach(|| options.pack(&out, tensors, None, &origin, None));
    drop(held);
    packed.map_err(|f| raise(py, f))
}

/// Packs model files as `nnsign pack` reads them (ONNX, Keras, PyTorch, GGUF, safetensors,
/// NumPy): nothing in them is run. Returns what `pack --json` reports.
#[pyfunction]
#[pyo3(signature = (out, paths, options, weights_only=false))]
fn pack_files(
    py: Python<'_>,
    out: PathBuf,
    paths: Vec<PathBuf>,
    options: &Bound<'_, PyDict>,
    weights_only: bool,
) -> PyResult<String> {
    let options = PackOptions::from_py(options)?;
    let Some(first) = paths.first().cloned() else {
        return Err(raise(py, usage("no model files given")));
    };
    py.detach(|| {
        for p in &paths {
            if nnsign::output::same_file(p, &out) {
                return Err(usage(format!(
                    "output {} is also an input; nnsign never overwrites what it reads",
                    out.display()
                )));
            }
        }
        let imported = import::import_with(&paths, import::Options { weights_only })
            .map_err(failure::import_failure)?;
        let mut options = options;
        let mut labels = imported.labels;
        labels.append(&mut options.labels);
        options.labels = labels;
        // A model in several files is sharded as `nnsign pack` shards it.
        let shard_size = imported.suggested_shard_size;
        options.pack(&out, imported.tensors, imported.arch, &first, shard_size)
    })
    .map_err(|f| raise(py, f))
}

/// A verified artifact: its tensors, and the model built from them on first use.
#[pyclass(frozen, module = "nnsign._native")]
struct Loaded {
    path: PathBuf,
    weights: Weights,
    info: String,
    memory_limit: u64,
    model: OnceLock<std::result::Result<Option<runtime::Model>, String>>,
}

/// Opens the artifact at `path`, admits it as `trust`/`policy` say, verifies every byte while
/// reading each tensor into its own buffer (decrypting with `decrypt_with` or `passphrase`),
/// and validates the architecture: nothing is handed out before all of it passed.
#[pyfunction]
#[pyo3(signature = (path, trust=None, policy=None, state=None, allow_unsigned=false, decrypt_with=None, key_passphrase=None, passphrase=None, max_memory=None))]
#[allow(clippy::too_many_arguments)]
fn load(
    py: Python<'_>,
    path: PathBuf,
    trust: Option<&Bound<'_, PyAny>>,
    policy: Option<PathBuf>,
    state: Option<PathBuf>,
    allow_unsigned: bool,
    decrypt_with: Option<&Bound<'_, PyAny>>,
    key_passphrase: Option<String>,
    passphrase: Option<String>,
    max_memory: Option<u64>,
) -> PyResult<Loaded> {
    let args = TrustArgs::from_py(trust, policy, state, allow_unsigned)?;
    let key = decrypt_with
        .map(|k| KeyArg::from_py("decrypt_with", k))
        .transpose()?;
    let (key_passphrase, passphrase) = (passphrase_of(key_passphrase), passphrase_of(passphrase));
    let limit = max_memory.unwrap_or(nnsign::memory::DEFAULT_MEMORY_LIMIT);
    py.detach(|| {
        // The key first: a wrong key passphrase fails before the artifact is read.
        let key = key.as_ref().map(|k| decryption_key(k, key_passphrase)).transpose()?;
        let admitted = args.admit(&path)?;
        let auth = &admitted.artifact;
        let encrypted = auth.manifest.encryption.as_ref();
        let unlock = match (encrypted, &key, &passphrase) {
            (None, None, None) => None,
            (None, _, _) => {
                return Err(usage(format!(
                    "{}: the artifact is not encrypted; drop decrypt_with= and passphrase=",
                    path.display()
                )))
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(usage("give decrypt_with= or passphrase=, not both"))
            }
            (Some(_), Some(k), None) => Some(Unlock::Key(k)),
            (Some(e), None, Some(p)) if e.has_passphrase() => Some(Unlock::Passphrase(p)),
            (Some(_), None, Some(_)) => {
                return Err(Failure::new(exit::DECRYPT, "decryption", Some(&path),
                    "the artifact is encrypted to keys, not to a passphrase; give the matching key with decrypt_with="))
            }
            (Some(e), None, None) => {
                let what = match e.has_passphrase() {
                    true => "the artifact is encrypted with a passphrase; give it with passphrase=".to_owned(),
                    false => format!(
                        "the artifact is encrypted to {}; give the matching key with decrypt_with=",
                        nnsign::diff::recipients(&auth.manifest).unwrap_or_default().join(", ")
                    ),
                };
                return Err(Failure::new(exit::DECRYPT, "decryption", Some(&path), what)
                    .hint("nnsign.verify checks an encrypted artifact without a key; reading its content needs one"));
            }
        };
        let weights = loader::weights(auth, unlock, limit, &no_progress)
            .map_err(|e| failure::load_failure(&path, e))?;
        let mut info = admitted.describe();
        record(&admitted, &mut info)?;
        Ok(Loaded {
            path: path.clone(),
            weights,
            info: info.to_string(),
            memory_limit: limit,
            model: OnceLock::new(),
        })
    })
    .map_err(|f| raise(py, f))
}

/// A graph value's description for Python: `(name, dtype, shape)`, symbols as strings.
fn io_of(v: &nnsign::model::ValueInfo) -> PyIo {
    let shape = (v.shape.iter())
        .map(|d| match d {
            Dim::Fixed(n) => PyDim::Size(*n),
            Dim::Symbol(s) => PyDim::Symbol(s.clone()),
        })
        .collect();
    (v.name.clone(), v.dtype.clone(), shape)
}

#[derive(IntoPyObject)]
enum PyDim {
    Size(u64),
    Symbol(String),
}

/// A graph input or output for Python: `(name, dtype, shape)`.
type PyIo = (String, String, Vec<PyDim>);

impl Loaded {
    fn model(&self) -> Result<&runtime::Model> {
        let built = self.model.get_or_init(|| {
            (self.weights.model(self.memory_limit))
                .map_err(|e| failure::load_failure(&self.path, e).line())
        });
        match built {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Failure::new(
                exit::SCHEMA,
                "schema",
                Some(&self.path),
                "verified, but the artifact holds weights only (no architecture), so there is nothing to run",
            )
            .hint("pack it with an architecture (an ONNX or Keras model, or arch=) to make it runnable")),
            Err(line) => Err(Failure::new(exit::SCHEMA, "schema", None, line.clone())),
        }
    }
}

#[pymethods]
impl Loaded {
    /// What `nnsign verify --json` reports of the artifact, as JSON text.
    #[getter]
    fn info(&self) -> &str {
        &self.info
    }

    /// The tensor table, in payload order: `(name, dtype, shape)`.
    #[getter]
    fn table(&self) -> Vec<(String, &'static str, Vec<u64>)> {
        (self.weights.layout.tensors.iter())
            .map(|t| (t.name.clone(), t.dtype.name(), t.shape.clone()))
            .collect()
    }

    /// Tensor `index`'s verified bytes as a 1-D uint8 array that borrows them (no copy); the
    /// array keeps this object alive.
    fn raw<'py>(slf: &Bound<'py, Self>, index: usize) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let me = slf.get();
        let t =
            me.weights.tensors.get(index).ok_or_else(|| {
                pyo3::exceptions::PyIndexError::new_err(format!("no tensor {index}"))
            })?;
        let view = ArrayView1::from(t.bytes());
        // SAFETY: the array borrows the buffer of tensor `index`, which `Loaded` owns and never
        // changes or frees while it lives; `container` (this object) is the array's base, so it
        // lives as long as the array does. Nothing writes through it: it is made read-only
        // below, before any Python code sees it, and NumPy refuses to make it writeable again
        // (its base is not an array).
        let array = unsafe { PyArray1::borrow_from_array(&view, slf.clone().into_any()) };
        array.getattr("flags")?.setattr("writeable", false)?;
        Ok(array)
    }

    /// Whether the artifact has an architecture to run.
    #[getter]
    fn runnable(&self) -> bool {
        self.weights.runnable()
    }

    /// The graph's inputs and outputs: `(name, dtype, shape)` each, symbols as strings.
    fn signature(&self, py: Python<'_>) -> PyResult<(Vec<PyIo>, Vec<PyIo>)> {
        let model = self.model().map_err(|f| raise(py, f))?;
        Ok((
            model.inputs().map(io_of).collect(),
            model.outputs().map(io_of).collect(),
        ))
    }

    /// Runs the model: `inputs` is a list of `(name, array)` with float32, int64 or bool
    /// C-contiguous arrays; returns `[(name, array)]` in the graph's output order.
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyList>,
    ) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
        let model = self.model().map_err(|f| raise(py, f))?;
        let mut given = Vec::with_capacity(inputs.len());
        for item in inputs.iter() {
            let (name, array): (String, Bound<'py, PyAny>) = item.extract()?;
            given.push((name, value_of(&array)?));
        }
        let outputs = py.detach(|| model.run(given)).map_err(|e| {
            let f = match e {
                e @ runtime::RunError::TooLarge { .. } => Failure::new(
                    exit::SCHEMA,
                    "schema",
                    Some(&self.path),
                    format!("{e} for this input"),
                )
                .hint("run a smaller batch, or raise max_memory= if this host can afford it"),
                e => Failure::new(exit::INPUT, "input", None, format!("run: {e}")),
            };
            raise(py, f)
        })?;
        outputs
            .into_iter()
            .map(|(name, v)| Ok((name, array_of(py, v)?)))
            .collect()
    }
}

/// An input array as the runtime's value (copied: the run must not see it change).
fn value_of(array: &Bound<'_, PyAny>) -> PyResult<Value> {
    fn tensor<T: numpy::Element + Copy>(a: PyReadonlyArrayDyn<'_, T>) -> PyResult<Tensor<T>> {
        let shape = a.shape().to_vec();
        let data = match a.as_slice() {
            Ok(s) => s.to_vec(),
            Err(_) => a.as_array().iter().copied().collect(),
        };
        Ok(Tensor { shape, data })
    }
    if let Ok(a) = array.extract::<PyReadonlyArrayDyn<'_, f32>>() {
        return Ok(Value::F32(tensor(a)?));
    }
    if let Ok(a) = array.extract::<PyReadonlyArrayDyn<'_, i64>>() {
        return Ok(Value::I64(tensor(a)?));
    }
    if let Ok(a) = array.extract::<PyReadonlyArrayDyn<'_, bool>>() {
        return Ok(Value::Bool(tensor(a)?));
    }
    Err(raise(
        array.py(),
        Failure::new(
            exit::INPUT,
            "input",
            None,
            "run: inputs must be float32, int64 or bool NumPy arrays",
        ),
    ))
}

/// An output value as a NumPy array that takes over its buffer (no copy).
fn array_of(py: Python<'_>, v: Value) -> PyResult<Bound<'_, PyAny>> {
    fn owned<'py, T: numpy::Element>(py: Python<'py>, t: Tensor<T>) -> PyResult<Bound<'py, PyAny>> {
        let a = ArrayD::from_shape_vec(IxDyn(&t.shape), t.data)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        Ok(numpy::PyArray::from_owned_array(py, a).into_any())
    }
    match v {
        Value::F32(t) => owned(py, t),
        Value::I64(t) => owned(py, t),
        Value::Bool(t) => owned(py, t),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(verify, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(scan, m)?)?;
    m.add_function(wrap_pyfunction!(keygen, m)?)?;
    m.add_function(wrap_pyfunction!(pack_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(pack_files, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_class::<Loaded>()?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("UsageError", py.get_type::<UsageError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    m.add("SignatureError", py.get_type::<SignatureError>())?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add("SchemaError", py.get_type::<SchemaError>())?;
    m.add("DecryptionError", py.get_type::<DecryptionError>())?;
    m.add("UnsafeFileError", py.get_type::<UnsafeFileError>())?;
    m.add("FreshnessError", py.get_type::<FreshnessError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
