//! Encrypted payloads after verification: from ciphertext whose digests matched to the hidden
//! tensor table, architecture and weights.
//!
//! Order: the signature and trust were checked by [`Authenticated`]; the file key is opened
//! (a wrong key fails here, before the payload is read); every ciphertext chunk is read and
//! checked against its signed digest; the whole payload is decrypted on every core, and no
//! plaintext is handed out unless every STREAM chunk authenticates; only then is the inner
//! manifest decoded, as strictly as an outer one.

use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, PayloadCipher};
use crate::format::{self, FormatError, InnerManifest};
use crate::keys::encryption::EncryptionSecretKey;
use crate::keys::Passphrase;
use crate::model::Graph;
use crate::verify::{Authenticated, VerifiedPayload, VerifyError};

/// What opens an encrypted artifact.
pub enum Unlock<'a> {
    Key(&'a EncryptionSecretKey),
    Passphrase(&'a Passphrase),
}

/// Why an encrypted payload could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// The artifact is not encrypted: there is nothing to decrypt.
    #[error("the artifact is not encrypted; drop the decryption key")]
    NotEncrypted,
    /// The ciphertext failed verification.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The key does not open it, or the ciphertext does not authenticate.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The decrypted content breaks a rule of the format.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// A decrypted payload and the architecture that was hidden with it.
pub struct Unsealed {
    pub arch: Option<Graph>,
    pub payload: VerifiedPayload,
}

/// Verifies and decrypts the payload of `auth`.
pub fn unseal(
    auth: &Authenticated,
    unlock: Unlock<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Unsealed, UnsealError> {
    let encryption = auth
        .manifest
        .encryption
        .as_ref()
        .ok_or(UnsealError::NotEncrypted)?;
    let (nonce, stanzas) = encryption.stanzas()?;
    let file_key = match unlock {
        Unlock::Key(key) => crypto::unwrap_x25519(&stanzas, key)?,
        Unlock::Passphrase(p) => crypto::unwrap_passphrase(&stanzas, p.as_bytes())?,
    };
    let ad = format::encryption_ad(&auth.manifest.model, encryption);
    let cipher = PayloadCipher::new(&file_key, &nonce, &ad);
    let plain_len = PayloadCipher::plaintext_len(auth.layout.length)
        .ok_or(CryptoError::Length(auth.layout.length))?;
    let total = PayloadCipher::chunk_count(plain_len) as usize;
    // Each digest window (64 STREAM chunks) is read, checked against its signed digest and
    // decrypted in place by one core while it is in cache; no window is decrypted before its
    // digest matched, and nothing is handed out before every window opened.
    let chunks_per_window =
        (format::ENC_CHUNK_SIZE as usize) / (crypto::STREAM_CHUNK + crypto::TAG_LEN);
    let verified = auth.read_payload_then(progress, |i, window| {
        cipher
            .decrypt_window(i * chunks_per_window, total, window)
            .map_err(UnsealError::from)
    })?;
    let mut bytes: Zeroizing<Vec<u8>> = verified.into_bytes();
    let len = PayloadCipher::close_up(&mut bytes, plain_len);
    bytes.truncate(len);
    let (inner, layout, start) = InnerManifest::parse(&bytes)?;
    for i in 0..layout.chunks.len() {
        let range = layout.chunk_range(i);
        let chunk = &bytes[start + range.start as usize..start + range.end as usize];
        layout.check_padding(i, chunk).map_err(|at| {
            FormatError::Invalid(format!(
                "encrypted payload: padding byte at offset {at} is not zero"
            ))
        })?;
    }
    Ok(Unsealed {
        arch: inner.arch,
        payload: VerifiedPayload::new(bytes, start, layout),
    })
}
