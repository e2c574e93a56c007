//! Building blocks of confidential artifacts (issue 3): a fresh file key per artifact, wrapped
//! for each X25519 recipient or for a passphrase, and the payload encrypted with
//! ChaCha20-Poly1305 in the STREAM construction.
//!
//! The artifact format places these (docs/FORMAT.md section 11); this module knows nothing of
//! it. [`backends`] says which code paths of the crypto crates run on this CPU.
//!
//! - File key: 32 random bytes, never stored in the clear.
//! - Payload key: HKDF-SHA256(ikm = file key, salt = a 16-byte random nonce stored with the
//!   payload, info = `PAYLOAD_INFO`), as age derives its payload key.
//! - Payload: [`STREAM_CHUNK`]-byte plaintext chunks, each sealed by ChaCha20-Poly1305 under the
//!   RustCrypto `StreamBE32` nonce (7 zero bytes, a 32-bit big-endian chunk counter, a last-chunk
//!   flag), with associated data chosen by the caller to bind the ciphertext to its envelope.
//!   The last chunk, and only it, carries the flag, and only an empty payload has an empty
//!   chunk, so every plaintext has exactly one ciphertext layout and truncation, reordering,
//!   duplication and transplanting chunks all fail authentication.
//! - X25519 recipient: an ephemeral key pair per recipient; wrap key = HKDF-SHA256(ikm = the
//!   shared secret, salt = ephemeral public key ‖ recipient public key, info = `X25519_INFO`);
//!   the file key sealed under it with ChaCha20-Poly1305 and a zero nonce (the wrap key is used
//!   once). Low-order recipient keys, which would make the shared secret predictable, are
//!   refused.
//! - Passphrase: Argon2id (version 0x13) over the passphrase and a 16-byte random salt gives the
//!   wrap key; its costs are stored, and bounded on reading by [`ARGON2_MIN`] and [`ARGON2_MAX`]
//!   before any work is done.

use aead_stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use rayon::prelude::*;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keys::encryption::{EncryptionPublicKey, EncryptionSecretKey};
use crate::keys::KeyId;

/// Plaintext bytes per STREAM chunk.
pub const STREAM_CHUNK: usize = 64 * 1024;
/// Bytes the AEAD adds to each chunk.
pub const TAG_LEN: usize = 16;
/// HKDF info for the payload key.
pub const PAYLOAD_INFO: &[u8] = b"nnsign/v1 payload";
/// HKDF info for an X25519 recipient's wrap key.
pub const X25519_INFO: &[u8] = b"nnsign/v1 X25519 file key";

/// Argon2id costs: memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Costs {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

/// What `pack` uses: 64 MiB, 3 passes, 1 lane (about 0.15 s here).
pub const ARGON2_DEFAULT: Argon2Costs = Argon2Costs {
    m_kib: 64 * 1024,
    t: 3,
    p: 1,
};
/// The least a reader accepts (OWASP's minimum for Argon2id: 19 MiB, 2 passes): weaker costs
/// in a file mean it was not made by nnsign and its passphrase is cheap to attack.
pub const ARGON2_MIN: Argon2Costs = Argon2Costs {
    m_kib: 19 * 1024,
    t: 2,
    p: 1,
};
/// The most a reader accepts, so that a file cannot make it spend gigabytes or minutes.
pub const ARGON2_MAX: Argon2Costs = Argon2Costs {
    m_kib: 1024 * 1024,
    t: 16,
    p: 8,
};

/// Why a decryption (or, rarely, an encryption) failed. Every variant maps to the decryption
/// exit code.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// No recipient stanza is for the key given.
    #[error("the artifact is not encrypted to key {0}")]
    NotARecipient(String),
    /// A stanza did not open: the key or passphrase is wrong, or the stanza was altered.
    #[error("{0} does not open the artifact's file key (wrong key or passphrase, or an altered recipient entry)")]
    WrongKey(String),
    /// A payload chunk failed authentication.
    #[error("encrypted chunk {0} failed authentication: the ciphertext was altered, truncated, reordered or moved from another artifact")]
    Chunk(usize),
    /// The ciphertext length is not one a STREAM encryption can produce.
    #[error("encrypted payload of {0} bytes is truncated or padded: no whole number of chunks")]
    Length(u64),
    /// Argon2id costs outside the accepted bounds.
    #[error("passphrase costs m={m_kib} KiB, t={t}, p={p} are outside the accepted bounds")]
    Costs { m_kib: u32, t: u32, p: u32 },
    /// A recipient key of small order, which makes key agreement meaningless.
    #[error("recipient key {0} is not a valid X25519 public key (low order)")]
    LowOrder(String),
    /// The system random generator or a primitive failed.
    #[error("{0}")]
    Internal(String),
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, CryptoError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    getrandom::fill(&mut *bytes).map_err(|e| CryptoError::Internal(format!("random: {e}")))?;
    Ok(bytes)
}

fn hkdf(ikm: &[u8], salt: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut *out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// The per-artifact key the payload is encrypted under. Wiped on drop; no `Debug`.
pub struct FileKey(Zeroizing<[u8; 32]>);

impl FileKey {
    pub fn generate() -> Result<FileKey, CryptoError> {
        Ok(FileKey(random()?))
    }
}

/// Encrypts and decrypts one payload: STREAM over ChaCha20-Poly1305 under a key derived from
/// the file key and the payload nonce, with fixed associated data.
pub struct PayloadCipher {
    stream: StreamBE32<ChaCha20Poly1305>,
    aad: Vec<u8>,
}

impl PayloadCipher {
    pub fn new(file_key: &FileKey, nonce: &[u8; 16], aad: &[u8]) -> PayloadCipher {
        let key = hkdf(&file_key.0[..], nonce, PAYLOAD_INFO);
        let aead = ChaCha20Poly1305::new((&*key).into());
        PayloadCipher {
            stream: StreamBE32::from_aead(aead, &Default::default()),
            aad: aad.to_vec(),
        }
    }

    /// Number of chunks for `plaintext_len` bytes: at least one, so that even an empty
    /// payload carries an authenticated last chunk.
    pub fn chunk_count(plaintext_len: u64) -> u64 {
        plaintext_len.div_ceil(STREAM_CHUNK as u64).max(1)
    }

    /// Ciphertext length for `plaintext_len` bytes.
    pub fn ciphertext_len(plaintext_len: u64) -> u64 {
        plaintext_len + Self::chunk_count(plaintext_len) * TAG_LEN as u64
    }

    /// Plaintext length for a ciphertext of `len` bytes, if some plaintext encrypts to it.
    pub fn plaintext_len(len: u64) -> Option<u64> {
        let full = (STREAM_CHUNK + TAG_LEN) as u64;
        let (whole, rest) = (len / full, len % full);
        let plain = match rest {
            // Only an empty payload ends in a bare tag; otherwise the last chunk holds data.
            0 if whole > 0 => whole * STREAM_CHUNK as u64,
            r if r == TAG_LEN as u64 && whole == 0 => 0,
            r if r > TAG_LEN as u64 => whole * STREAM_CHUNK as u64 + r - TAG_LEN as u64,
            _ => return None,
        };
        (Self::ciphertext_len(plain) == len).then_some(plain)
    }

    fn position(index: usize) -> Result<u32, CryptoError> {
        u32::try_from(index).map_err(|_| {
            CryptoError::Internal("payload too large for a 32-bit STREAM counter".into())
        })
    }

    /// Encrypts a whole payload on every core into a new buffer.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = vec![0u8; Self::ciphertext_len(plaintext.len() as u64) as usize];
        self.encrypt_into(plaintext, &mut out)?;
        Ok(out)
    }

    /// Encrypts a whole payload on every core into `out`, which must be exactly
    /// [`PayloadCipher::ciphertext_len`] bytes; each chunk is sealed in place there.
    pub fn encrypt_into(&self, plaintext: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
        let count = Self::chunk_count(plaintext.len() as u64) as usize;
        if out.len() as u64 != Self::ciphertext_len(plaintext.len() as u64) {
            return Err(CryptoError::Internal(
                "output buffer of the wrong size".into(),
            ));
        }
        if plaintext.is_empty() {
            return self.encrypt_chunks(0, count, plaintext, out);
        }
        out.par_chunks_mut(64 * (STREAM_CHUNK + TAG_LEN))
            .zip(plaintext.par_chunks(64 * STREAM_CHUNK))
            .enumerate()
            .try_for_each(|(w, (out, plain))| self.encrypt_chunks(w * 64, count, plain, out))
    }

    /// Seals consecutive chunks `first..` of a payload of `total` chunks: `plaintext` is their
    /// plaintext (whole chunks, the payload's last one possibly shorter) and `out` receives the
    /// ciphertext, `plaintext.len()` plus a tag per chunk.
    pub fn encrypt_chunks(
        &self,
        first: usize,
        total: usize,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        let chunks = plaintext.chunks(STREAM_CHUNK);
        // An empty payload still has its one (empty) last chunk.
        let chunks: Vec<&[u8]> = if plaintext.is_empty() {
            vec![&[][..]]
        } else {
            chunks.collect()
        };
        let mut at = 0;
        for (k, chunk) in chunks.into_iter().enumerate() {
            let i = first + k;
            let slot = out
                .get_mut(at..at + chunk.len() + TAG_LEN)
                .ok_or_else(|| CryptoError::Internal("output buffer of the wrong size".into()))?;
            slot[..chunk.len()].copy_from_slice(chunk);
            let mut buf = SliceBuffer {
                buf: slot,
                len: chunk.len(),
            };
            self.stream
                .encrypt_in_place(Self::position(i)?, i + 1 == total, &self.aad, &mut buf)
                .map_err(|_| CryptoError::Internal("ChaCha20-Poly1305 failed".into()))?;
            at += chunk.len() + TAG_LEN;
        }
        Ok(())
    }

    /// Decrypts a whole payload on every core into a new buffer; no plaintext is returned
    /// unless every chunk authenticates.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut work = Zeroizing::new(ciphertext.to_vec());
        let len = self.decrypt_in_place(&mut work)?;
        work.truncate(len);
        Ok(work)
    }

    /// Decrypts `buf` (a whole ciphertext) in place on every core and returns the plaintext
    /// length: the plaintext is then `buf[..len]`. On failure `buf` may hold partly opened
    /// chunks; callers must discard it (and it must not be shown or written anywhere).
    pub fn decrypt_in_place(&self, buf: &mut [u8]) -> Result<usize, CryptoError> {
        let plain_len =
            Self::plaintext_len(buf.len() as u64).ok_or(CryptoError::Length(buf.len() as u64))?;
        let count = Self::chunk_count(plain_len) as usize;
        buf.par_chunks_mut(64 * (STREAM_CHUNK + TAG_LEN))
            .enumerate()
            .try_for_each(|(w, window)| self.decrypt_window(w * 64, count, window))?;
        Ok(Self::close_up(buf, plain_len))
    }

    /// Opens, in place, the consecutive sealed chunks `first..` held in `window` (whole sealed
    /// chunks, the payload's last one possibly shorter) of a payload of `total` chunks. Each
    /// chunk's plaintext is left at the start of its sealed slot; [`PayloadCipher::close_up`]
    /// removes the gaps the tags leave once every window is open.
    pub fn decrypt_window(
        &self,
        first: usize,
        total: usize,
        window: &mut [u8],
    ) -> Result<(), CryptoError> {
        for (k, slot) in window.chunks_mut(STREAM_CHUNK + TAG_LEN).enumerate() {
            let i = first + k;
            let len = slot.len();
            let mut buf = SliceBuffer { buf: slot, len };
            self.stream
                .decrypt_in_place(Self::position(i)?, i + 1 == total, &self.aad, &mut buf)
                .map_err(|_| CryptoError::Chunk(i))?;
        }
        Ok(())
    }

    /// Moves the opened chunks of a decrypted-in-place payload together; returns the plaintext
    /// length, the plaintext being `buf[..len]`.
    pub fn close_up(buf: &mut [u8], plain_len: u64) -> usize {
        let count = Self::chunk_count(plain_len) as usize;
        let mut write = 0;
        for i in 0..count {
            let start = i * (STREAM_CHUNK + TAG_LEN);
            let len = STREAM_CHUNK.min(plain_len as usize - i * STREAM_CHUNK);
            buf.copy_within(start..start + len, write);
            write += len;
        }
        plain_len as usize
    }
}

/// An AEAD buffer over a fixed slice: the chunk's bytes, then room for its tag. Lets the STREAM
/// helper seal and open chunks in place in one preallocated payload buffer.
struct SliceBuffer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl AsRef<[u8]> for SliceBuffer<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl AsMut<[u8]> for SliceBuffer<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl chacha20poly1305::aead::Buffer for SliceBuffer<'_> {
    fn extend_from_slice(&mut self, other: &[u8]) -> chacha20poly1305::aead::Result<()> {
        let end = self.len + other.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(chacha20poly1305::aead::Error)?
            .copy_from_slice(other);
        self.len = end;
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// A file key sealed for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stanza {
    X25519 {
        /// Key id of the recipient's public key.
        kid: KeyId,
        /// The ephemeral public key.
        epk: [u8; 32],
        /// The sealed file key: 32 bytes and a 16-byte tag.
        sealed: Vec<u8>,
    },
    Argon2id {
        salt: [u8; 16],
        costs: Argon2Costs,
        sealed: Vec<u8>,
    },
}

fn seal_key(wrap_key: &[u8; 32], file_key: &FileKey) -> Vec<u8> {
    ChaCha20Poly1305::new(wrap_key.into())
        .encrypt(&Default::default(), &file_key.0[..])
        .expect("sealing 32 bytes cannot fail")
}

fn open_key(wrap_key: &[u8; 32], sealed: &[u8]) -> Option<FileKey> {
    let plain = Zeroizing::new(
        ChaCha20Poly1305::new(wrap_key.into())
            .decrypt(&Default::default(), sealed)
            .ok()?,
    );
    let key: [u8; 32] = plain.as_slice().try_into().ok()?;
    Some(FileKey(Zeroizing::new(key)))
}

/// Seals `file_key` for `recipient`.
pub fn wrap_x25519(
    file_key: &FileKey,
    recipient: &EncryptionPublicKey,
) -> Result<Stanza, CryptoError> {
    let ephemeral = x25519_dalek::StaticSecret::from(*random::<32>()?);
    let epk = x25519_dalek::PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&x25519_dalek::PublicKey::from(recipient.raw()));
    if !shared.was_contributory() {
        return Err(CryptoError::LowOrder(recipient.id().to_string()));
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(&epk);
    salt[32..].copy_from_slice(&recipient.raw());
    let wrap_key = hkdf(shared.as_bytes(), &salt, X25519_INFO);
    Ok(Stanza::X25519 {
        kid: recipient.id(),
        epk,
        sealed: seal_key(&wrap_key, file_key),
    })
}

/// Opens the file key with `secret` from the first X25519 stanza addressed to it.
pub fn unwrap_x25519(
    stanzas: &[Stanza],
    secret: &EncryptionSecretKey,
) -> Result<FileKey, CryptoError> {
    let public = secret.public();
    let mut addressed = false;
    for s in stanzas {
        let Stanza::X25519 { kid, epk, sealed } = s else {
            continue;
        };
        if *kid != public.id() {
            continue;
        }
        addressed = true;
        let shared = secret
            .secret()
            .diffie_hellman(&x25519_dalek::PublicKey::from(*epk));
        if !shared.was_contributory() {
            continue;
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(epk);
        salt[32..].copy_from_slice(&public.raw());
        if let Some(key) = open_key(&hkdf(shared.as_bytes(), &salt, X25519_INFO), sealed) {
            return Ok(key);
        }
    }
    Err(if addressed {
        CryptoError::WrongKey(format!("key {}", public.id()))
    } else {
        CryptoError::NotARecipient(public.id().to_string())
    })
}

impl Argon2Costs {
    /// Refuses costs outside [`ARGON2_MIN`] ..= [`ARGON2_MAX`].
    pub fn check(&self) -> Result<(), CryptoError> {
        let within = |v: u32, lo: u32, hi: u32| (lo..=hi).contains(&v);
        if within(self.m_kib, ARGON2_MIN.m_kib, ARGON2_MAX.m_kib)
            && within(self.t, ARGON2_MIN.t, ARGON2_MAX.t)
            && within(self.p, ARGON2_MIN.p, ARGON2_MAX.p)
        {
            Ok(())
        } else {
            Err(CryptoError::Costs {
                m_kib: self.m_kib,
                t: self.t,
                p: self.p,
            })
        }
    }
}

fn argon2_key(
    passphrase: &[u8],
    salt: &[u8; 16],
    costs: Argon2Costs,
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    costs.check()?;
    let params = argon2::Params::new(costs.m_kib, costs.t, costs.p, Some(32))
        .map_err(|e| CryptoError::Internal(format!("argon2 parameters: {e}")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut *out)
        .map_err(|e| CryptoError::Internal(format!("argon2: {e}")))?;
    Ok(out)
}

/// Seals `file_key` under a passphrase.
pub fn wrap_passphrase(
    file_key: &FileKey,
    passphrase: &[u8],
    costs: Argon2Costs,
) -> Result<Stanza, CryptoError> {
    let salt = *random::<16>()?;
    let wrap_key = argon2_key(passphrase, &salt, costs)?;
    Ok(Stanza::Argon2id {
        salt,
        costs,
        sealed: seal_key(&wrap_key, file_key),
    })
}

/// Opens the file key with a passphrase; the stored costs are checked before any work.
pub fn unwrap_passphrase(stanzas: &[Stanza], passphrase: &[u8]) -> Result<FileKey, CryptoError> {
    let Some(Stanza::Argon2id {
        salt,
        costs,
        sealed,
    }) = stanzas
        .iter()
        .find(|s| matches!(s, Stanza::Argon2id { .. }))
    else {
        return Err(CryptoError::NotARecipient("a passphrase".into()));
    };
    let wrap_key = argon2_key(passphrase, salt, *costs)?;
    open_key(&wrap_key, sealed).ok_or_else(|| CryptoError::WrongKey("the passphrase".into()))
}

/// Which code each crypto crate runs on this CPU: `(primitive, backend)` for SHA-256,
/// ChaCha20 and Poly1305. The crates choose at run time, with the same CPU checks made here
/// (their `cpufeatures` tests): SHA-256 uses the x86 SHA extensions when the CPU has SHA and
/// SSE4.1; ChaCha20 uses AVX-512 when this build has the crate's `chacha20_avx512` cfg
/// (.cargo/config.toml) and the CPU has AVX-512F and AVX-512VL, else AVX2, else SSE2; Poly1305
/// uses AVX2 when the CPU has it.
pub fn backends() -> [(&'static str, &'static str); 3] {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        use std::arch::is_x86_feature_detected as has;
        let sha = if has!("sha") && has!("sse4.1") {
            "x86 SHA extensions (SHA-NI)"
        } else {
            "portable"
        };
        let chacha = if cfg!(chacha20_avx512) && has!("avx512f") && has!("avx512vl") {
            "AVX-512"
        } else if has!("avx2") {
            "AVX2"
        } else if has!("sse2") {
            "SSE2"
        } else {
            "portable"
        };
        let poly = if has!("avx2") { "AVX2" } else { "portable" };
        [("SHA-256", sha), ("ChaCha20", chacha), ("Poly1305", poly)]
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        [
            ("SHA-256", "portable or the CPU's own, as sha2 picks"),
            ("ChaCha20", "as chacha20 picks"),
            ("Poly1305", "portable"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(key: &FileKey) -> PayloadCipher {
        PayloadCipher::new(key, &[7; 16], b"envelope")
    }

    #[test]
    fn stream_round_trips_at_chunk_boundaries() {
        let key = FileKey::generate().unwrap();
        for len in [
            0,
            1,
            STREAM_CHUNK - 1,
            STREAM_CHUNK,
            STREAM_CHUNK + 1,
            3 * STREAM_CHUNK,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let sealed = cipher(&key).encrypt(&plain).unwrap();
            assert_eq!(
                sealed.len() as u64,
                PayloadCipher::ciphertext_len(len as u64),
                "{len}"
            );
            assert_eq!(
                PayloadCipher::plaintext_len(sealed.len() as u64),
                Some(len as u64)
            );
            assert_eq!(*cipher(&key).decrypt(&sealed).unwrap(), plain, "{len}");
        }
        // Lengths no encryption produces.
        // (A full chunk then a bare tag would be an empty last chunk after data.)
        for bad in [0u64, 1, 15, (STREAM_CHUNK + TAG_LEN) as u64 + 16] {
            assert_eq!(PayloadCipher::plaintext_len(bad), None, "{bad}");
        }
    }

    /// Pins the construction the format will specify, by rebuilding two chunks with plain
    /// ChaCha20-Poly1305 and HKDF: nonce = 7 zero bytes, big-endian counter, last-chunk flag.
    #[test]
    fn stream_nonces_are_counter_and_last_flag() {
        let key = FileKey(Zeroizing::new([9; 32]));
        let plain = vec![1u8; STREAM_CHUNK + 5];
        let sealed = cipher(&key).encrypt(&plain).unwrap();
        let payload_key = hkdf(&[9; 32], &[7; 16], PAYLOAD_INFO);
        let aead = ChaCha20Poly1305::new((&*payload_key).into());
        let seal = |counter: u32, last: u8, msg: &[u8]| {
            let mut nonce = [0u8; 12];
            nonce[7..11].copy_from_slice(&counter.to_be_bytes());
            nonce[11] = last;
            aead.encrypt(
                (&nonce).into(),
                chacha20poly1305::aead::Payload {
                    msg,
                    aad: b"envelope",
                },
            )
            .unwrap()
        };
        let mut expected = seal(0, 0, &plain[..STREAM_CHUNK]);
        expected.extend(seal(1, 1, &plain[STREAM_CHUNK..]));
        assert_eq!(sealed, expected);
    }

    #[test]
    fn stream_detects_truncation_reordering_and_transplants() {
        let key = FileKey::generate().unwrap();
        let plain = vec![0x5a; 3 * STREAM_CHUNK + 100];
        let sealed = cipher(&key).encrypt(&plain).unwrap();
        let full = STREAM_CHUNK + TAG_LEN;
        // Dropping the last chunk leaves an unflagged chunk last.
        assert!(matches!(
            cipher(&key).decrypt(&sealed[..3 * full]),
            Err(CryptoError::Chunk(2))
        ));
        // Swapping two chunks.
        let mut swapped = sealed.clone();
        swapped[..full].copy_from_slice(&sealed[full..2 * full]);
        swapped[full..2 * full].copy_from_slice(&sealed[..full]);
        assert!(matches!(
            cipher(&key).decrypt(&swapped),
            Err(CryptoError::Chunk(0))
        ));
        // Duplicating a chunk.
        let mut dup = sealed.clone();
        dup[full..2 * full].copy_from_slice(&sealed[..full]);
        assert!(matches!(
            cipher(&key).decrypt(&dup),
            Err(CryptoError::Chunk(1))
        ));
        // Other associated data (another envelope), another nonce, another key.
        assert!(PayloadCipher::new(&key, &[7; 16], b"other")
            .decrypt(&sealed)
            .is_err());
        assert!(PayloadCipher::new(&key, &[8; 16], b"envelope")
            .decrypt(&sealed)
            .is_err());
        assert!(cipher(&FileKey::generate().unwrap())
            .decrypt(&sealed)
            .is_err());
        // Every flipped byte.
        let small = cipher(&key).encrypt(b"a small payload").unwrap();
        for i in 0..small.len() {
            let mut bad = small.clone();
            bad[i] ^= 1;
            assert!(cipher(&key).decrypt(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn x25519_recipients_each_open_the_file_key_alone() {
        let recipients: Vec<EncryptionSecretKey> = (0..3)
            .map(|_| EncryptionSecretKey::generate().unwrap())
            .collect();
        let key = FileKey::generate().unwrap();
        let stanzas: Vec<Stanza> = recipients
            .iter()
            .map(|r| wrap_x25519(&key, &r.public()).unwrap())
            .collect();
        let sealed = cipher(&key).encrypt(b"weights").unwrap();
        for r in &recipients {
            let opened = unwrap_x25519(&stanzas, r).unwrap();
            assert_eq!(*cipher(&opened).decrypt(&sealed).unwrap(), b"weights");
        }
        let stranger = EncryptionSecretKey::generate().unwrap();
        assert!(matches!(
            unwrap_x25519(&stanzas, &stranger),
            Err(CryptoError::NotARecipient(_))
        ));
        // A stanza altered in any byte no longer opens.
        let Stanza::X25519 {
            kid,
            epk,
            sealed: s,
        } = stanzas[0].clone()
        else {
            unreachable!()
        };
        let mut bad = s.clone();
        bad[5] ^= 1;
        let altered = [Stanza::X25519 {
            kid,
            epk,
            sealed: bad,
        }];
        assert!(matches!(
            unwrap_x25519(&altered, &recipients[0]),
            Err(CryptoError::WrongKey(_))
        ));
        let mut other_epk = epk;
        other_epk[0] ^= 1;
        let moved = [Stanza::X25519 {
            kid,
            epk: other_epk,
            sealed: s,
        }];
        assert!(unwrap_x25519(&moved, &recipients[0]).is_err());
        // A low-order recipient key (here the all-zero point) is refused.
        let zero = EncryptionPublicKey::from_raw([0; 32]);
        assert!(matches!(
            wrap_x25519(&key, &zero),
            Err(CryptoError::LowOrder(_))
        ));
    }

    #[test]
    fn passphrase_wrapping_and_cost_bounds() {
        let key = FileKey::generate().unwrap();
        let stanza = wrap_passphrase(&key, b"open sesame", ARGON2_MIN).unwrap();
        let sealed = cipher(&key).encrypt(b"weights").unwrap();
        let opened = unwrap_passphrase(std::slice::from_ref(&stanza), b"open sesame").unwrap();
        assert_eq!(*cipher(&opened).decrypt(&sealed).unwrap(), b"weights");
        assert!(matches!(
            unwrap_passphrase(std::slice::from_ref(&stanza), b"open sesamE"),
            Err(CryptoError::WrongKey(_))
        ));
        // Costs out of bounds are refused before any derivation.
        let Stanza::Argon2id { salt, sealed, .. } = stanza else {
            unreachable!()
        };
        for costs in [
            Argon2Costs {
                m_kib: 8,
                t: 1,
                p: 1,
            },
            Argon2Costs {
                m_kib: 4 << 20,
                t: 3,
                p: 1,
            },
            Argon2Costs {
                m_kib: 65536,
                t: 1000,
                p: 1,
            },
        ] {
            let s = [Stanza::Argon2id {
                salt,
                costs,
                sealed: sealed.clone(),
            }];
            assert!(matches!(
                unwrap_passphrase(&s, b"open sesame"),
                Err(CryptoError::Costs { .. })
            ));
        }
    }
}
