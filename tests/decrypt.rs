//! Streamed decryption (what `unpack` uses, in bounded memory) against in-memory decryption
//! (what `verify-load` uses), on a payload spanning several digest windows and STREAM chunks,
//! with tensors that start and end across both boundaries; and what a sink sees of a payload
//! that fails part way.

mod common;

use common::*;
use nnsign::crypto::{CryptoError, STREAM_CHUNK, TAG_LEN};
use nnsign::format::{DType, Layout, Manifest, ModelInfo};
use nnsign::import::{Bytes, SourceTensor};
use nnsign::keys::encryption::EncryptionSecretKey;
use nnsign::keys::TrustStore;
use nnsign::model::Graph;
use nnsign::pack::{self, EncryptTo, PackInput};
use nnsign::unseal::{self, PlainSink, Unlock, UnsealError};
use nnsign::verify::{Artifact, Authenticated};

/// Tensor sizes: across window (4 MiB of plaintext) and STREAM chunk (64 KiB) boundaries, an
/// empty one, a one-byte one, and one of exactly a window.
const SIZES: [usize; 5] = [5_000_003, 0, 3_000_001, 1, 4 << 20];

fn tensors() -> Vec<SourceTensor> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    SIZES
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            SourceTensor {
                name: format!("t{i}"),
                dtype: DType::U8,
                shape: vec![n as u64],
                bytes: Bytes::Owned(bytes.into()),
                origin: "test".into(),
            }
        })
        .collect()
}

fn key() -> EncryptionSecretKey {
    EncryptionSecretKey::from_seed(&[0x42; 32])
}

/// An unsigned encrypted artifact of [`tensors`], as bytes (made once: packing in a debug build
/// is slow).
fn sealed() -> Vec<u8> {
    static SEALED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SEALED.get_or_init(seal).clone()
}

fn seal() -> Vec<u8> {
    seal_as("streamed", tensors())
}

/// An unsigned artifact of model `name` holding `tensors`, encrypted to [`key`], as bytes.
fn seal_as(name: &str, tensors: Vec<SourceTensor>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.nns");
    pack::pack(
        PackInput {
            model: ModelInfo {
                name: name.into(),
                version: None,
                description: None,
                created: 0,
                producer: "test".into(),
                labels: Default::default(),
                expires: None,
                parent: None,
            },
            arch: None,
            tensors,
            signer: None,
            encrypt: Some(EncryptTo {
                recipients: vec![key().public()],
                passphrase: None,
            }),
        },
        &out,
        &|_| {},
    )
    .unwrap();
    std::fs::read(out).unwrap()
}

/// `artifact` with its ciphertext edited and its digests recomputed: it still verifies.
fn forged(artifact: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let (manifest, _, mut payload) = parts(artifact);
    edit(&mut payload);
    let mut m = Manifest::decode(&manifest).unwrap();
    m.payload.length = payload.len() as u64;
    m.payload.digests = pack::digest_chunks(&Layout::cipher_chunks(m.payload.length), &payload);
    pack::assemble(&m.encode(), Vec::new(), &payload)
}

fn authenticated(dir: &tempfile::TempDir, bytes: &[u8]) -> Authenticated {
    let path = dir.path().join("a.nns");
    std::fs::write(&path, bytes).unwrap();
    let trust = TrustStore::load(&[]).unwrap();
    Artifact::open(&path)
        .and_then(|a| a.authenticate(&trust, true))
        .unwrap()
}

#[derive(Default)]
struct Collect {
    layout: Option<Layout>,
    arch: bool,
    data: Vec<u8>,
}

impl PlainSink for Collect {
    type Error = UnsealError;

    fn header(&mut self, arch: Option<&Graph>, layout: &Layout) -> Result<(), UnsealError> {
        assert!(self.layout.is_none() && self.data.is_empty());
        self.layout = Some(layout.clone());
        self.arch = arch.is_some();
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), UnsealError> {
        self.data.extend_from_slice(bytes);
        Ok(())
    }
}

fn stream(auth: &Authenticated) -> (Collect, Result<(), UnsealError>) {
    let mut sink = Collect::default();
    let key = key();
    let result = unseal::unseal_stream(auth, Unlock::Key(&key), &|_| {}, &mut sink);
    (sink, result)
}

#[test]
fn streamed_decryption_gives_exactly_the_tensors_in_memory_decryption_gives() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authenticated(&dir, &sealed());
    assert_eq!(auth.layout.chunks.len(), 3, "digest windows");
    let (sink, result) = stream(&auth);
    result.unwrap();
    let expected: Vec<u8> = tensors().iter().flat_map(|t| t.bytes.to_vec()).collect();
    assert_eq!(sink.data.len(), SIZES.iter().sum::<usize>());
    assert!(
        sink.data == expected,
        "streamed bytes differ from the packed tensors"
    );
    assert!(!sink.arch, "weights only");
    let key = key();
    let whole = unseal::unseal(&auth, Unlock::Key(&key), &|_| {}).unwrap();
    assert_eq!(sink.layout.unwrap().tensors, whole.payload.layout().tensors);
    let in_memory: Vec<u8> = (whole.payload.tensors().iter())
        .flat_map(|t| whole.payload.tensor(&t.name).unwrap().1.to_vec())
        .collect();
    assert!(in_memory == expected);
}

#[test]
fn a_forged_chunk_stops_the_stream_before_any_of_its_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let good = sealed();
    // STREAM chunk 130 sits in the third digest window (64 chunks each).
    let full = STREAM_CHUNK + TAG_LEN;
    let bad = forged(&good, |c| c[130 * full + 5] ^= 1);
    let auth = authenticated(&dir, &bad);
    let (sink, result) = stream(&auth);
    assert!(
        matches!(result, Err(UnsealError::Crypto(CryptoError::Chunk(130)))),
        "{result:?}"
    );
    // Only whole windows before the failing one reached the sink: at most 128 chunks of
    // plaintext, less the header.
    assert!(sink.data.len() <= 128 * STREAM_CHUNK, "{}", sink.data.len());
    let expected: Vec<u8> = tensors().iter().flat_map(|t| t.bytes.to_vec()).collect();
    assert!(sink.data[..] == expected[..sink.data.len()]);
}

#[test]
fn a_stream_cut_short_or_reordered_fails_on_its_last_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let good = sealed();
    let full = STREAM_CHUNK + TAG_LEN;
    // Cut after whole chunks: the new last chunk was not sealed as the last.
    let cut = forged(&good, |c| c.truncate((c.len() / full - 1) * full));
    let (_, result) = stream(&authenticated(&dir, &cut));
    assert!(
        matches!(result, Err(UnsealError::Crypto(CryptoError::Chunk(_)))),
        "{result:?}"
    );
    // Two chunks swapped.
    let swapped = forged(&good, |c| {
        let (a, b) = c.split_at_mut(2 * full);
        a[full..].swap_with_slice(&mut b[..full]);
    });
    let (_, result) = stream(&authenticated(&dir, &swapped));
    assert!(
        matches!(result, Err(UnsealError::Crypto(CryptoError::Chunk(1)))),
        "{result:?}"
    );
}

#[test]
fn a_wrong_key_fails_before_the_sink_sees_anything() {
    let dir = tempfile::tempdir().unwrap();
    let auth = authenticated(&dir, &sealed());
    let mut sink = Collect::default();
    let other = EncryptionSecretKey::from_seed(&[0x43; 32]);
    let result = unseal::unseal_stream(&auth, Unlock::Key(&other), &|_| {}, &mut sink);
    assert!(
        matches!(
            result,
            Err(UnsealError::Crypto(CryptoError::NotARecipient(_)))
        ),
        "{result:?}"
    );
    assert!(sink.layout.is_none() && sink.data.is_empty());
}

#[test]
fn tensors_decrypted_into_their_own_buffers_are_the_packed_ones() {
    // Five tensors: over two windows, empty, one byte, exactly a window; the hidden header
    // comes first, so the first window is opened before the others and split between them.
    let dir = tempfile::tempdir().unwrap();
    let auth = authenticated(&dir, &sealed());
    let key = key();
    let opened = unseal::open(&auth, Unlock::Key(&key)).unwrap();
    let mut seen = None;
    let got = unseal::unseal_tensors(&auth, &opened, &|_| {}, |arch, layout| {
        seen = Some((arch.is_some(), layout.tensors.len()));
        Ok::<(), UnsealError>(())
    })
    .unwrap();
    assert_eq!(seen, Some((false, SIZES.len())));
    for (t, buf) in tensors().iter().zip(&got.tensors) {
        assert!(buf.bytes() == &t.bytes[..], "tensor {}", t.name);
    }
    // A forged chunk in the last window fails, and nothing comes out.
    let full = STREAM_CHUNK + TAG_LEN;
    let bad = forged(&sealed(), |c| c[130 * full + 5] ^= 1);
    let auth = authenticated(&dir, &bad);
    let opened = unseal::open(&auth, Unlock::Key(&key)).unwrap();
    let result = unseal::unseal_tensors(&auth, &opened, &|_| {}, |_, _| Ok::<(), UnsealError>(()));
    assert!(
        matches!(result, Err(UnsealError::Crypto(CryptoError::Chunk(130)))),
        "{:?}",
        result.err()
    );
    // The caller refuses the header: no window after it is opened.
    let opened = unseal::open(&auth, Unlock::Key(&key)).unwrap();
    let refused = unseal::unseal_tensors(&auth, &opened, &|_| {}, |_, _| {
        Err(UnsealError::NotEncrypted)
    });
    assert!(matches!(refused, Err(UnsealError::NotEncrypted)));
}

/// Many tensors with long names, so that the hidden header spans two windows; empty, tiny and
/// unaligned tensors, and one of 5 MB across windows.
fn many_tensors() -> Vec<SourceTensor> {
    let mut state = 0x1234_5678_9abc_def1u64;
    (0..5200usize)
        .map(|i| {
            let n = match (i, i % 7) {
                (4000, _) => 5_000_001,
                (_, 0) => 0,
                (_, 1) => 1,
                (_, 2) => 63,
                (_, 3) => 64,
                (_, 4) => 65,
                (_, 5) => 1000,
                _ => 3,
            };
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8 | 1
                })
                .collect();
            SourceTensor {
                name: format!("{i:05}{}", "x".repeat(1000)),
                dtype: DType::U8,
                shape: vec![n as u64],
                bytes: Bytes::Owned(bytes.into()),
                origin: "test".into(),
            }
        })
        .collect()
}

/// `artifact` with its plaintext edited, encrypted again under the same key, and its digests
/// recomputed: a key holder's forgery that still verifies and decrypts.
fn replain(artifact: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let (manifest, _, payload) = parts(artifact);
    let mut m = Manifest::decode(&manifest).unwrap();
    let enc = m.encryption.clone().unwrap();
    let (nonce, stanzas) = enc.stanzas().unwrap();
    let file_key = nnsign::crypto::unwrap_x25519(&stanzas, &key()).unwrap();
    let ad = nnsign::format::encryption_ad(&m.model, &enc);
    let cipher = nnsign::crypto::PayloadCipher::new(&file_key, &nonce, &ad);
    let mut plain = cipher.decrypt(&payload).unwrap().to_vec();
    edit(&mut plain);
    let sealed = cipher.encrypt(&plain).unwrap();
    m.payload.length = sealed.len() as u64;
    m.payload.digests = pack::digest_chunks(&Layout::cipher_chunks(m.payload.length), &sealed);
    pack::assemble(&m.encode(), Vec::new(), &sealed)
}

#[test]
fn a_header_over_two_windows_and_a_forged_chunk_outranking_bad_padding() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = many_tensors();
    let good = seal_as("many", many_tensors());
    let key = key();
    let open = |bytes: &[u8]| {
        let auth = authenticated(&dir, bytes);
        let opened = unseal::open(&auth, Unlock::Key(&key)).unwrap();
        let got = unseal::unseal_tensors(&auth, &opened, &|_| {}, |_, _| Ok::<(), UnsealError>(()));
        let whole = unseal::unseal(&auth, Unlock::Key(&key), &|_| {}).err();
        (got, whole)
    };
    let (got, _) = open(&good);
    let got = got.unwrap();
    assert_eq!(got.tensors.len(), tensors.len());
    for (t, buf) in tensors.iter().zip(&got.tensors) {
        assert!(buf.bytes() == &t.bytes[..], "tensor {}", &t.name[..5]);
    }
    // A non-zero padding byte just after the header's windows' first tensors, and a forged
    // last window: the forgery is reported, whichever core finishes first, as when the
    // payload is opened whole.
    let header = std::cell::Cell::new(0);
    replain(&good, |p| {
        header.set(nnsign::format::InnerManifest::header_len(p).unwrap())
    });
    assert!(header.get() > 4 << 20, "the header spans two windows");
    let padded = replain(&good, |p| p[header.get() + 2] = 7); // tensor 00000 is empty
    let (manifest, _, mut sealed) = parts(&padded);
    let n = sealed.len();
    sealed[n - 100] ^= 1;
    let mut m = Manifest::decode(&manifest).unwrap();
    m.payload.digests = pack::digest_chunks(&Layout::cipher_chunks(m.payload.length), &sealed);
    let bad = pack::assemble(&m.encode(), Vec::new(), &sealed);
    for _ in 0..3 {
        let (got, whole) = open(&bad);
        let (got, whole) = (got.err().unwrap(), whole.unwrap());
        assert!(
            matches!(got, UnsealError::Crypto(CryptoError::Chunk(_))),
            "{got}"
        );
        assert_eq!(got.to_string(), whole.to_string());
    }
    // The padding alone is refused by its offset.
    let (got, whole) = open(&padded);
    let (got, whole) = (got.err().unwrap(), whole.unwrap());
    assert!(
        got.to_string()
            .contains("padding byte at offset 2 is not zero"),
        "{got}"
    );
    assert_eq!(got.to_string(), whole.to_string());
}
