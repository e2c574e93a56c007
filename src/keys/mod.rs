//! Ed25519 signing keys: generation, PEM files that OpenSSL reads and writes, passphrase
//! protection, key ids and trust stores.
//!
//! Private keys are PKCS#8 v1 (PEM label `PRIVATE KEY`), or PKCS#8 encrypted with PBES2 (scrypt +
//! AES-256-CBC, label `ENCRYPTED PRIVATE KEY`) when a passphrase is set; public keys are
//! SubjectPublicKeyInfo (label `PUBLIC KEY`). v1 rather than the v2 that ed25519-dalek writes by
//! default, because OpenSSL 3.0 cannot read v2.

pub mod encryption;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use pkcs8::der::pem::PemLabel;
use pkcs8::spki::SubjectPublicKeyInfoRef;
use pkcs8::{EncryptedPrivateKeyInfoRef, PrivateKeyInfoRef};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Largest key file read.
pub const MAX_KEY_FILE_LEN: u64 = 64 * 1024;
/// Most `.pub` files one trust store may hold.
pub const MAX_TRUSTED_KEYS: usize = 10_000;

/// A secret string (a passphrase) that is wiped from memory when dropped and never printed.
pub type Passphrase = Zeroizing<String>;

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Refused to replace an existing key file.
    #[error("{0}: already exists; nnsign never overwrites a key (pick another prefix or move the old key away)")]
    Exists(PathBuf),
    /// The file is not a key nnsign understands.
    #[error("{path}: {why}")]
    Malformed { path: PathBuf, why: String },
    /// The key is passphrase-protected and no passphrase was available.
    #[error("{0}: the key is passphrase-protected; give its passphrase with --key-passphrase-env VAR, or run on a terminal to be asked")]
    NeedPassphrase(PathBuf),
    /// The passphrase does not decrypt the key.
    #[error("{0}: wrong passphrase, or the encrypted key is damaged")]
    BadPassphrase(PathBuf),
    /// Reading the passphrase failed.
    #[error("{0}")]
    Passphrase(String),
    /// A trust path holds no public keys.
    #[error("{0}: no .pub files found; a trust store is a .pub file or a directory of them (see keys/README.md)")]
    EmptyTrust(PathBuf),
    /// A key could not be encoded (or its encryption's salt not drawn).
    #[error("could not encode the key: {0}")]
    Encode(String),
    /// The system random generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// The key id: the first 8 bytes of SHA-256 over the raw 32-byte public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    pub fn of(raw_public_key: &[u8; 32]) -> KeyId {
        let digest = Sha256::digest(raw_public_key);
        KeyId(digest[..8].try_into().expect("SHA-256 is 32 bytes"))
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    pub fn from_raw(raw: &[u8; 32]) -> Option<PublicKey> {
        VerifyingKey::from_bytes(raw)
            .ok()
            .map(|key| PublicKey { key })
    }

    pub fn raw(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn id(&self) -> KeyId {
        KeyId::of(&self.raw())
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// SubjectPublicKeyInfo PEM with LF line endings, as `openssl pkey -pubout` prints it.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(pkcs8::LineEnding::LF)
            .expect("an Ed25519 SPKI always encodes")
    }

    pub fn from_pem(text: &str) -> Option<PublicKey> {
        VerifyingKey::from_public_key_pem(text.trim())
            .ok()
            .map(|key| PublicKey { key })
    }

    /// Reads a `.pub` file.
    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        let text = read_capped(path)?;
        PublicKey::from_pem(&text).ok_or_else(|| {
            let why = if encryption::EncryptionPublicKey::from_public_key_pem(text.trim()).is_ok() {
                "this is an X25519 encryption key (from `nnsign keygen --encryption`); signatures are checked against Ed25519 keys from `nnsign keygen`"
            } else {
                "not an Ed25519 public key in PEM (a PUBLIC KEY block, as `nnsign keygen` or `openssl pkey -pubout` write)"
            };
            KeyError::Malformed {
                path: path.into(),
                why: why.into(),
            }
        })
    }
}

/// An Ed25519 signing key. Wiped from memory on drop (ed25519-dalek's `zeroize` feature); no
/// `Debug`, so it cannot end up in a log.
pub struct SecretKey {
    key: SigningKey,
}

impl SecretKey {
    /// A new key from the operating system's random generator.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(SecretKey {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Builds a key from a 32-byte seed (for deterministic tests and test vectors).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey {
            key: SigningKey::from_bytes(seed),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// PKCS#8 v1 PEM, encrypted when a passphrase is given.
    pub fn to_pem(&self, passphrase: Option<&Passphrase>) -> Result<Zeroizing<String>, KeyError> {
        let v1 = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        private_pem(&v1, passphrase)
    }

    /// Reads a private key file. `passphrase` is called only when the key is encrypted.
    pub fn read(
        path: &Path,
        passphrase: impl FnOnce() -> Result<Option<Passphrase>, KeyError>,
    ) -> Result<SecretKey, KeyError> {
        read_private::<SigningKey>(path, passphrase, KeyKind::Signing).map(|key| SecretKey { key })
    }

    /// Decodes a private key from its PEM text (as a key file holds it), named `name` in
    /// errors. `passphrase` is called only when the key is encrypted.
    pub fn from_pem(
        text: &str,
        name: &Path,
        passphrase: impl FnOnce() -> Result<Option<Passphrase>, KeyError>,
    ) -> Result<SecretKey, KeyError> {
        parse_private::<SigningKey>(text, name, passphrase, KeyKind::Signing)
            .map(|key| SecretKey { key })
    }
}

/// PKCS#8 PEM of a private key, PBES2-encrypted when a passphrase is given.
pub(crate) fn private_pem(
    key: &impl EncodePrivateKey,
    passphrase: Option<&Passphrase>,
) -> Result<Zeroizing<String>, KeyError> {
    let encode_err = |e: pkcs8::Error| KeyError::Encode(e.to_string());
    match passphrase {
        None => key.to_pkcs8_pem(pkcs8::LineEnding::LF).map_err(encode_err),
        Some(p) => key
            .to_pkcs8_encrypted_pem(p.as_bytes(), pkcs8::LineEnding::LF)
            .map_err(encode_err),
    }
}

/// What a key is for, so that a key of the other kind gets a message that says so.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// Ed25519, from `nnsign keygen`.
    Signing,
    /// X25519, from `nnsign keygen --encryption`.
    Encryption,
}

impl KeyKind {
    fn oid(self) -> pkcs8::ObjectIdentifier {
        match self {
            KeyKind::Signing => ed25519_dalek::pkcs8::ALGORITHM_OID,
            KeyKind::Encryption => encryption::X25519_OID,
        }
    }

    fn other(self) -> KeyKind {
        match self {
            KeyKind::Signing => KeyKind::Encryption,
            KeyKind::Encryption => KeyKind::Signing,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            KeyKind::Signing => "an Ed25519 signing key (from `nnsign keygen`)",
            KeyKind::Encryption => "an X25519 encryption key (from `nnsign keygen --encryption`)",
        }
    }
}

/// Reads a PKCS#8 private key of `kind`, plain or encrypted; `passphrase` is called only when
/// the key is encrypted.
pub(crate) fn read_private<T: DecodePrivateKey>(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Option<Passphrase>, KeyError>,
    kind: KeyKind,
) -> Result<T, KeyError> {
    let text = read_capped(path)?;
    parse_private(&text, path, passphrase, kind)
}

/// Decodes the PEM text of a PKCS#8 private key of `kind`, plain or encrypted, named `path` in
/// errors (a file, or what stands for one, such as `<bytes>`); `passphrase` is called only
/// when the key is encrypted.
pub(crate) fn parse_private<T: DecodePrivateKey>(
    text: &str,
    path: &Path,
    passphrase: impl FnOnce() -> Result<Option<Passphrase>, KeyError>,
    kind: KeyKind,
) -> Result<T, KeyError> {
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(KeyError::Malformed {
            path: path.into(),
            why: format!("larger than {MAX_KEY_FILE_LEN} bytes; not a key"),
        });
    }
    let malformed = |why: String| KeyError::Malformed {
        path: path.into(),
        why,
    };
    let pem = text.trim();
    // The PEM label says which of the three kinds of key file this is.
    let label = pkcs8::der::pem::decode_label(pem.as_bytes()).unwrap_or("");
    let wrong_kind = || {
        malformed(format!(
            "this is {}; this command needs {}",
            kind.other().describe(),
            kind.describe()
        ))
    };
    if label == EncryptedPrivateKeyInfoRef::PEM_LABEL {
        let p = passphrase()?.ok_or_else(|| KeyError::NeedPassphrase(path.into()))?;
        let der = pkcs8::EncryptedPrivateKeyInfoRef::try_from(
            pkcs8::Document::from_pem(pem)
                .map_err(|_| malformed("damaged PEM".into()))?
                .1
                .as_bytes(),
        )
        .map_err(|_| malformed("damaged encrypted key".into()))?
        .decrypt(p.as_bytes())
        .map_err(|_| KeyError::BadPassphrase(path.into()))?;
        decode_pkcs8(der.as_bytes(), kind).map_err(|wrong| {
            if wrong {
                wrong_kind()
            } else {
                malformed(format!("not {} (damaged?)", kind.describe()))
            }
        })
    } else if label == PrivateKeyInfoRef::PEM_LABEL {
        let der = pkcs8::SecretDocument::from_pem(pem)
            .map_err(|_| malformed("damaged PEM".into()))?
            .1;
        decode_pkcs8(der.as_bytes(), kind).map_err(|wrong| {
            if wrong {
                wrong_kind()
            } else {
                malformed(format!(
                    "not {} (PKCS#8 for another algorithm, or damaged)",
                    kind.describe()
                ))
            }
        })
    } else if label == SubjectPublicKeyInfoRef::PEM_LABEL {
        Err(malformed(
            "this is a public key; this needs the private key (the .key file)".into(),
        ))
    } else {
        Err(malformed(
            "not a PEM private key (expected a PKCS#8 PRIVATE KEY or ENCRYPTED PRIVATE KEY)".into(),
        ))
    }
}

/// Decodes PKCS#8 DER as `T`; on failure says whether it was a key of the other kind (`true`).
fn decode_pkcs8<T: DecodePrivateKey>(der: &[u8], kind: KeyKind) -> Result<T, bool> {
    T::from_pkcs8_der(der).map_err(|_| {
        PrivateKeyInfoRef::try_from(der).is_ok_and(|info| info.algorithm.oid == kind.other().oid())
    })
}

/// Reads a key file of at most [`MAX_KEY_FILE_LEN`] bytes into a buffer sized up front (so that
/// no reallocation leaves a copy of a private key behind) and wiped when dropped.
fn read_capped(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE_LEN as usize + 64));
    Read::by_ref(&mut file)
        .take(MAX_KEY_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => KeyError::Malformed {
                path: path.into(),
                why: "not a text file".into(),
            },
            _ => io(e),
        })?;
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(KeyError::Malformed {
            path: path.into(),
            why: format!("larger than {MAX_KEY_FILE_LEN} bytes; not a key file"),
        });
    }
    Ok(text)
}

/// Paths of the key pair for `prefix`: `PREFIX.key` and `PREFIX.pub`.
pub fn pair_paths(prefix: &Path) -> (PathBuf, PathBuf) {
    let mut key = prefix.as_os_str().to_owned();
    key.push(".key");
    let mut public = prefix.as_os_str().to_owned();
    public.push(".pub");
    (PathBuf::from(key), PathBuf::from(public))
}

/// The permission bits of a private key file that other users can read or write (as ssh would
/// refuse it), or `None` when only its owner can, or it cannot be read (reading it reports why).
pub fn exposed_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Writes `PREFIX.key` (mode 0600) and `PREFIX.pub`, never replacing an existing file, each
/// atomically (complete or absent).
pub fn write_pair(
    prefix: &Path,
    key: &SecretKey,
    passphrase: Option<&Passphrase>,
) -> Result<(PathBuf, PathBuf), KeyError> {
    write_pair_pem(prefix, &key.to_pem(passphrase)?, &key.public().to_pem())
}

/// Writes a key pair's PEM texts as `PREFIX.key` (0600) and `PREFIX.pub`, each atomically and
/// never over an existing file.
pub(crate) fn write_pair_pem(
    prefix: &Path,
    private_pem: &str,
    public_pem: &str,
) -> Result<(PathBuf, PathBuf), KeyError> {
    let (key_path, pub_path) = pair_paths(prefix);
    for p in [&key_path, &pub_path] {
        if p.symlink_metadata().is_ok() {
            return Err(KeyError::Exists(p.clone()));
        }
    }
    write_new(&key_path, private_pem.as_bytes())?;
    if let Err(e) = write_new(&pub_path, public_pem.as_bytes()) {
        // We created the private key a moment ago; without its public half it is useless.
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    Ok((key_path, pub_path))
}

/// Creates `path` with `bytes`, mode 0600, failing if it exists. The content goes to a temporary
/// file first (tempfile creates it 0600) and is linked into place without replacing anything.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    let dir = crate::output::parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".nnsign-key-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists(path.into())
        } else {
            io(e.error)
        }
    })?;
    crate::output::sync_dir(dir).map_err(io)
}

/// Public keys a verifier trusts, each with the file it came from.
#[derive(Debug, Default, Clone)]
pub struct TrustStore {
    keys: Vec<(PublicKey, PathBuf)>,
}

impl TrustStore {
    /// Loads `.pub` files and directories of them (not recursive). A path that yields no key is
    /// an error: a trust store that trusts nothing is a misconfiguration, not a policy.
    pub fn load(paths: &[PathBuf]) -> Result<TrustStore, KeyError> {
        let mut store = TrustStore::default();
        for path in paths {
            let io = |source| KeyError::Io {
                path: path.clone(),
                source,
            };
            let meta = fs::metadata(path).map_err(io)?;
            let before = store.keys.len();
            if meta.is_dir() {
                let mut files: Vec<PathBuf> = fs::read_dir(path)
                    .map_err(io)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "pub") && p.is_file())
                    .collect();
                files.sort();
                for f in files {
                    store.add(PublicKey::read(&f)?, f)?;
                }
            } else {
                store.add(PublicKey::read(path)?, path.clone())?;
            }
            if store.keys.len() == before {
                return Err(KeyError::EmptyTrust(path.clone()));
            }
        }
        Ok(store)
    }

    fn add(&mut self, key: PublicKey, path: PathBuf) -> Result<(), KeyError> {
        if self.keys.len() >= MAX_TRUSTED_KEYS {
            return Err(KeyError::Malformed {
                path,
                why: format!("more than {MAX_TRUSTED_KEYS} trusted keys"),
            });
        }
        self.insert(key, path);
        Ok(())
    }

    /// Adds one key (for library users who hold keys in memory); `source` names it in reports.
    pub fn insert(&mut self, key: PublicKey, source: impl Into<PathBuf>) {
        if !self.keys.iter().any(|(k, _)| *k == key) {
            self.keys.push((key, source.into()));
        }
    }

    /// The file a trusted key came from, if `key` is trusted. Keys compare in full, never by id.
    pub fn lookup(&self, key: &PublicKey) -> Option<&Path> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, p)| p.as_path())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key with the file it came from.
    pub fn entries(&self) -> impl Iterator<Item = (&PublicKey, &Path)> {
        self.keys.iter().map(|(k, p)| (k, p.as_path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_sha256_prefix_of_raw_key() {
        // RFC 8032 test 1 public key; id computed with `sha256sum` over its 32 raw bytes.
        let raw: [u8; 32] = [
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ];
        assert_eq!(KeyId::of(&raw).to_string(), "21fe31dfa154a261");
    }

    #[test]
    fn pem_round_trip_plain_and_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(&[7; 32]);
        let pass = Zeroizing::new("correct horse".to_string());
        let (k, p) = write_pair(&dir.path().join("a"), &key, Some(&pass)).unwrap();
        let text = fs::read_to_string(&k).unwrap();
        assert_eq!(
            pkcs8::der::pem::decode_label(text.as_bytes()).unwrap(),
            EncryptedPrivateKeyInfoRef::PEM_LABEL
        );
        let back = SecretKey::read(&k, || Ok(Some(pass.clone()))).unwrap();
        assert_eq!(back.public(), key.public());
        assert!(matches!(
            SecretKey::read(&k, || Ok(Some(Zeroizing::new("wrong".into())))),
            Err(KeyError::BadPassphrase(_))
        ));
        assert!(matches!(
            SecretKey::read(&k, || Ok(None)),
            Err(KeyError::NeedPassphrase(_))
        ));
        assert_eq!(PublicKey::read(&p).unwrap(), key.public());
        assert!(matches!(
            write_pair(&dir.path().join("a"), &key, None),
            Err(KeyError::Exists(_))
        ));
    }
}
