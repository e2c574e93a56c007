//! X25519 key pairs for receiving encrypted models (`nnsign keygen --encryption`).
//!
//! Same file conventions as signing keys: PKCS#8 v1 private keys (plain, or PBES2-encrypted with
//! a passphrase), SubjectPublicKeyInfo public keys, both PEM with the X25519 algorithm
//! identifier of RFC 8410 (1.3.101.110), so OpenSSL reads and writes them too; key ids are the
//! first 8 bytes of SHA-256 over the raw 32-byte public key.

use std::path::{Path, PathBuf};

use pkcs8::der::asn1::{BitStringRef, OctetStringRef};
use pkcs8::{EncodePrivateKey, PrivateKeyInfoRef};
use spki::{DecodePublicKey, EncodePublicKey, SubjectPublicKeyInfoRef};
use zeroize::Zeroizing;

use super::{read_capped, read_private, KeyError, KeyId, KeyKind, Passphrase};

/// RFC 8410 object identifier of X25519.
pub const X25519_OID: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.110");

const ALGORITHM: pkcs8::AlgorithmIdentifierRef<'static> = pkcs8::AlgorithmIdentifierRef {
    oid: X25519_OID,
    parameters: None,
};

/// An X25519 public key: a recipient models can be encrypted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionPublicKey([u8; 32]);

impl EncryptionPublicKey {
    pub fn from_raw(raw: [u8; 32]) -> Self {
        EncryptionPublicKey(raw)
    }

    pub fn raw(&self) -> [u8; 32] {
        self.0
    }

    pub fn id(&self) -> KeyId {
        KeyId::of(&self.0)
    }

    /// SubjectPublicKeyInfo PEM, as `openssl pkey -pubout` prints it.
    pub fn to_pem(&self) -> String {
        self.to_public_key_pem(pkcs8::LineEnding::LF)
            .expect("an X25519 SPKI always encodes")
    }

    /// Reads a `.pub` file holding an X25519 public key.
    pub fn read(path: &Path) -> Result<EncryptionPublicKey, KeyError> {
        EncryptionPublicKey::from_pem(&read_capped(path)?, path)
    }

    /// Decodes a public key from its PEM text, named `path` in errors.
    pub fn from_pem(text: &str, path: &Path) -> Result<EncryptionPublicKey, KeyError> {
        EncryptionPublicKey::from_public_key_pem(text.trim()).map_err(|_| KeyError::Malformed {
            path: path.into(),
            why: "not an X25519 public key in PEM (as `nnsign keygen --encryption` writes; a signing key's .pub will not do)".into(),
        })
    }
}

impl EncodePublicKey for EncryptionPublicKey {
    fn to_public_key_der(&self) -> spki::Result<spki::Document> {
        SubjectPublicKeyInfoRef {
            algorithm: ALGORITHM,
            subject_public_key: BitStringRef::new(0, &self.0)?,
        }
        .try_into()
    }
}

impl TryFrom<SubjectPublicKeyInfoRef<'_>> for EncryptionPublicKey {
    type Error = spki::Error;

    fn try_from(info: SubjectPublicKeyInfoRef<'_>) -> spki::Result<Self> {
        info.algorithm.assert_algorithm_oid(X25519_OID)?;
        if info.algorithm.parameters.is_some() {
            return Err(spki::Error::KeyMalformed);
        }
        let raw = info
            .subject_public_key
            .as_bytes()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(spki::Error::KeyMalformed)?;
        Ok(EncryptionPublicKey(raw))
    }
}

/// An X25519 private key. Wiped from memory on drop (x25519-dalek's `zeroize` feature); no
/// `Debug`.
pub struct EncryptionSecretKey(x25519_dalek::StaticSecret);

impl EncryptionSecretKey {
    /// A new key from the operating system's random generator.
    pub fn generate() -> Result<EncryptionSecretKey, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(EncryptionSecretKey::from_seed(&seed))
    }

    /// Builds a key from 32 secret bytes (for deterministic tests and test vectors).
    pub fn from_seed(seed: &[u8; 32]) -> EncryptionSecretKey {
        EncryptionSecretKey(x25519_dalek::StaticSecret::from(*seed))
    }

    pub fn public(&self) -> EncryptionPublicKey {
        EncryptionPublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// The X25519 secret, for key agreement.
    pub fn secret(&self) -> &x25519_dalek::StaticSecret {
        &self.0
    }

    /// PKCS#8 v1 PEM, encrypted when a passphrase is given.
    pub fn to_pem(&self, passphrase: Option<&Passphrase>) -> Result<Zeroizing<String>, KeyError> {
        super::private_pem(self, passphrase)
    }

    /// Reads a private key file; `passphrase` is called only when the key is encrypted.
    pub fn read(
        path: &Path,
        passphrase: impl FnOnce() -> Result<Option<Passphrase>, KeyError>,
    ) -> Result<EncryptionSecretKey, KeyError> {
        read_private(path, passphrase, KeyKind::Encryption)
    }

    /// Decodes a private key from its PEM text, named `name` in errors; `passphrase` is called
    /// only when the key is encrypted.
    pub fn from_pem(
        text: &str,
        name: &Path,
        passphrase: impl FnOnce() -> Result<Option<Passphrase>, KeyError>,
    ) -> Result<EncryptionSecretKey, KeyError> {
        super::parse_private(text, name, passphrase, KeyKind::Encryption)
    }

    /// Writes `PREFIX.key` (0600) and `PREFIX.pub`, never over existing files.
    pub fn write_pair(
        &self,
        prefix: &Path,
        passphrase: Option<&Passphrase>,
    ) -> Result<(PathBuf, PathBuf), KeyError> {
        super::write_pair_pem(prefix, &self.to_pem(passphrase)?, &self.public().to_pem())
    }
}

impl EncodePrivateKey for EncryptionSecretKey {
    fn to_pkcs8_der(&self) -> pkcs8::Result<pkcs8::SecretDocument> {
        // RFC 8410: the private key is an OCTET STRING holding the 32-byte secret, itself
        // wrapped in the PrivateKeyInfo's OCTET STRING.
        let mut inner = Zeroizing::new([0u8; 34]);
        inner[0] = 0x04;
        inner[1] = 0x20;
        inner[2..].copy_from_slice(self.0.as_bytes());
        let info = PrivateKeyInfoRef {
            algorithm: ALGORITHM,
            private_key: OctetStringRef::new(&inner[..])?,
            public_key: None,
        };
        Ok(pkcs8::SecretDocument::encode_msg(&info)?)
    }
}

impl TryFrom<PrivateKeyInfoRef<'_>> for EncryptionSecretKey {
    type Error = pkcs8::Error;

    fn try_from(info: PrivateKeyInfoRef<'_>) -> pkcs8::Result<Self> {
        info.algorithm.assert_algorithm_oid(X25519_OID)?;
        if info.algorithm.parameters.is_some() {
            return Err(pkcs8::Error::ParametersMalformed);
        }
        let secret: [u8; 32] = match info.private_key.as_bytes() {
            [0x04, 0x20, rest @ ..] => rest
                .try_into()
                .map_err(|_| pkcs8::Error::KeyMalformed(pkcs8::KeyError::Invalid))?,
            _ => return Err(pkcs8::Error::KeyMalformed(pkcs8::KeyError::Invalid)),
        };
        Ok(EncryptionSecretKey::from_seed(&secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7748_public_key_and_pem_round_trip() {
        // RFC 7748 section 6.1: Alice's private key and public key.
        let secret: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let key = EncryptionSecretKey::from_seed(&secret);
        assert_eq!(
            super::super::hex(&key.public().raw()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let dir = tempfile::tempdir().unwrap();
        let pass = Zeroizing::new("x25519 pass".to_string());
        let (k, p) = key.write_pair(&dir.path().join("r"), Some(&pass)).unwrap();
        let back = EncryptionSecretKey::read(&k, || Ok(Some(pass.clone()))).unwrap();
        assert_eq!(back.public(), key.public());
        assert_eq!(EncryptionPublicKey::read(&p).unwrap(), key.public());
        // A signing key is refused by name where an encryption key is needed, and vice versa.
        let (sk, spub) = super::super::write_pair(
            &dir.path().join("s"),
            &super::super::SecretKey::from_seed(&[3; 32]),
            None,
        )
        .unwrap();
        let err = EncryptionSecretKey::read(&sk, || Ok(None)).err().unwrap();
        assert!(
            err.to_string().contains("this is an Ed25519 signing key"),
            "{err}"
        );
        assert!(EncryptionPublicKey::read(&spub).is_err());
        let err = super::super::SecretKey::read(&k, || Ok(Some(pass.clone())))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("this is an X25519 encryption key"),
            "{err}"
        );
    }
}
