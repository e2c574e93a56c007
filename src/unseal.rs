//! Encrypted payloads after verification: from ciphertext whose digests matched to the hidden
//! tensor table, architecture and weights.
//!
//! Order: the signature and trust were checked by [`Authenticated`]; the file key is opened
//! (a wrong key fails here, before the payload is read); every ciphertext window is read and
//! checked against its signed digest before it is decrypted, on every core; no plaintext is
//! handed out unless every STREAM chunk authenticates; the inner manifest is decoded as
//! strictly as an outer one. [`unseal_tensors`] opens the header's windows first, so that a
//! caller can refuse the architecture or its memory need before the rest is decrypted.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{self, CryptoError, PayloadCipher, STREAM_CHUNK, TAG_LEN};
use crate::format::{self, check_bools, BoolError, FormatError, InnerManifest, Layout};
use crate::keys::encryption::EncryptionSecretKey;
use crate::keys::Passphrase;
use crate::model::Graph;
use crate::verify::{Authenticated, TensorBuf, VerifiedPayload, VerifyError};

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

/// An encrypted payload's cipher, its file key unwrapped ([`open`]): the key or passphrase
/// work is done once, whichever way the payload is then read.
pub struct Opened {
    cipher: PayloadCipher,
    plain_len: u64,
}

/// Unwraps the file key of `auth` with `unlock` (for a passphrase, the Argon2id work).
pub fn open(auth: &Authenticated, unlock: Unlock<'_>) -> Result<Opened, UnsealError> {
    let (cipher, plain_len) = open_cipher(auth, unlock)?;
    Ok(Opened { cipher, plain_len })
}

/// The payload cipher of `auth`, opened with `unlock`, and the plaintext length.
fn open_cipher(
    auth: &Authenticated,
    unlock: Unlock<'_>,
) -> Result<(PayloadCipher, u64), UnsealError> {
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
    Ok((cipher, plain_len))
}

/// STREAM chunks per digest window: each window is checked against its signed digest, then
/// decrypted, by one core while it is in cache.
const CHUNKS_PER_WINDOW: usize = (format::ENC_CHUNK_SIZE as usize) / (STREAM_CHUNK + TAG_LEN);

/// Verifies and decrypts the whole payload of `auth` into memory.
pub fn unseal(
    auth: &Authenticated,
    unlock: Unlock<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Unsealed, UnsealError> {
    unseal_opened(auth, &open(auth, unlock)?, progress)
}

/// [`unseal`] with the file key already unwrapped.
pub fn unseal_opened(
    auth: &Authenticated,
    opened: &Opened,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Unsealed, UnsealError> {
    let plain_len = opened.plain_len;
    // Each window is read into a buffer of its core's own, hashed and checked there, opened
    // while it is in cache and its plaintext copied to its place: the ciphertext is never held
    // whole. No window is decrypted before its digest matched, and nothing is handed out
    // before every window opened.
    let mut bytes = Zeroizing::new(vec![0u8; plain_len as usize]);
    crate::sys::prefer_huge_pages(&mut bytes);
    let windows = auth.layout.chunks.len();
    let mut places: Vec<&mut [u8]> = bytes.chunks_mut(WINDOW_PLAIN).collect();
    if places.is_empty() {
        // An empty payload still has one window: its last chunk authenticates the end.
        places.push(Default::default());
    }
    if places.len() != windows {
        return Err(CryptoError::Length(auth.layout.length).into());
    }
    let opener = Windows::new(auth, opened, progress);
    places.into_par_iter().enumerate().try_for_each_init(
        || Zeroizing::new(Vec::new()),
        |buf, (w, place)| {
            opener.open(w, buf)?;
            place.copy_from_slice(&buf[..place.len()]);
            Ok::<(), UnsealError>(())
        },
    )?;
    let (inner, layout, start) = InnerManifest::parse(&bytes)?;
    let arch = inner.arch.as_ref().map(Graph::decode).transpose()?;
    for i in 0..layout.chunks.len() {
        let range = layout.chunk_range(i);
        let chunk = &bytes[start + range.start as usize..start + range.end as usize];
        layout.check_padding(i, chunk).map_err(|at| {
            FormatError::Invalid(format!(
                "encrypted payload: padding byte at offset {at} is not zero"
            ))
        })?;
        layout.check_elements(i, chunk).map_err(bool_error)?;
    }
    Ok(Unsealed {
        arch,
        payload: VerifiedPayload::new(bytes, start, layout),
    })
}

/// A decrypted payload read straight into a buffer per tensor, and the architecture hidden
/// with it ([`unseal_tensors`]).
pub struct UnsealedTensors {
    pub arch: Option<Graph>,
    pub layout: Layout,
    pub tensors: Vec<TensorBuf>,
}

/// Verifies and decrypts the payload of `auth` straight into a buffer per tensor (an F32 tensor
/// as the f32 values a graph uses), window by window on every core: each window is read into a
/// buffer of the core's own and hashed there, checked against its signed digest, opened while
/// it is in cache, and its plaintext copied to the tensors it belongs to; the padding between
/// tensors must be zero. Memory: the tensors and a window per core, never the payload whole.
///
/// The windows that hold the hidden header are opened first, one after another; `admit` then
/// sees the architecture and the tensor table before any tensor buffer is allocated (to
/// validate the graph and check the memory it will take). Nothing is returned unless every
/// window matched its digest and every STREAM chunk authenticated; on failure, the plaintext
/// already placed is wiped.
pub fn unseal_tensors<E: From<UnsealError> + Send>(
    auth: &Authenticated,
    opened: &Opened,
    progress: &(dyn Fn(u64) + Sync),
    admit: impl FnOnce(Option<&Graph>, &Layout) -> Result<(), E>,
) -> Result<UnsealedTensors, E> {
    let plain_len = opened.plain_len;
    let windows = auth.layout.chunks.len();
    let opener = Windows::new(auth, opened, progress);
    // The header, from the first windows.
    let mut head = Zeroizing::new(Vec::new());
    let mut buf = Zeroizing::new(Vec::new());
    let mut next = 0;
    let start = loop {
        let want = match head.len() {
            0..4 => None,
            _ => Some(InnerManifest::header_len(&head).map_err(UnsealError::from)?),
        };
        if want.is_some_and(|w| head.len() >= w) {
            break want.expect("checked just above");
        }
        if next == windows {
            return Err(UnsealError::from(FormatError::Invalid(
                "encrypted payload: shorter than its header".into(),
            ))
            .into());
        }
        let n = opener.open(next, &mut buf)?;
        if head.is_empty() && n >= 4 {
            // Room for the whole header's windows at once: a growing buffer would leave copies
            // of decrypted bytes behind, unwiped.
            let len = InnerManifest::header_len(&buf[..n]).map_err(UnsealError::from)?;
            head.reserve_exact(len.next_multiple_of(WINDOW_PLAIN));
        }
        head.extend_from_slice(&buf[..n]);
        next += 1;
    };
    let (inner, layout) =
        InnerManifest::parse_header(&head[..start], plain_len).map_err(UnsealError::from)?;
    let arch = (inner.arch.as_ref().map(Graph::decode).transpose()).map_err(UnsealError::from)?;
    admit(arch.as_ref(), &layout)?;
    let mut tensors: Vec<TensorBuf> = layout.tensors.iter().map(TensorBuf::for_tensor).collect();
    let placed = (|| {
        // Every window's share of every tensor, split off in payload order, so that the cores
        // write to disjoint places.
        let mut views: Vec<&mut [u8]> = tensors.iter_mut().map(TensorBuf::bytes_mut).collect();
        let raw = |w: usize| (w * WINDOW_PLAIN) as u64;
        let mut shares = |from: u64, to: u64| take_shares(&layout, &mut views, from, to);
        let first_raw = (head.len() - start) as u64;
        let head_share = shares(0, first_raw);
        let head_placed = scatter(&layout, 0, std::iter::once(&head[start..]), head_share);
        let mut work = Vec::with_capacity(windows - next);
        for w in next..windows {
            let from = raw(w) - start as u64;
            let to = from + window_plain_len(w, plain_len) as u64;
            work.push((w, from, shares(from, to)));
        }
        // Every window is opened even after another's plaintext broke a rule, so that a
        // ciphertext that fails its digest or does not authenticate is reported as such first,
        // as when the payload is opened whole; then the first rule broken, in payload order.
        let opened: Vec<(Result<(), UnsealError>, Result<(), UnsealError>)> = (work
            .into_par_iter())
        .map_init(
            || Zeroizing::new(Vec::new()),
            |buf, (w, from, share)| match opener.decrypt(w, buf) {
                Err(e) => (Err(e), Ok(())),
                Ok(n) => {
                    // Straight from each chunk's slot, with no pass to squeeze the tags out.
                    let slots = (buf.chunks(STREAM_CHUNK + TAG_LEN))
                        .zip((0..n).step_by(STREAM_CHUNK))
                        .map(|(slot, at)| &slot[..STREAM_CHUNK.min(n - at)]);
                    (Ok(()), scatter(&layout, from, slots, share))
                }
            },
        )
        .collect();
        let (crypto, rules): (Vec<_>, Vec<_>) = opened.into_iter().unzip();
        crypto.into_iter().collect::<Result<(), _>>()?;
        head_placed?;
        rules.into_iter().collect::<Result<(), _>>()
    })();
    let placed = placed.and_then(|()| {
        for (t, buf) in layout.tensors.iter().zip(&tensors) {
            check_bools(t, 0, buf.bytes()).map_err(bool_error)?;
        }
        Ok(())
    });
    if let Err(e) = placed {
        for t in &mut tensors {
            t.bytes_mut().zeroize();
        }
        return Err(e.into());
    }
    Ok(UnsealedTensors {
        arch,
        layout,
        tensors,
    })
}

/// A malformed BOOL tensor in a decrypted payload: the signer encrypted a broken payload.
fn bool_error(e: BoolError) -> UnsealError {
    FormatError::Invalid(format!("encrypted payload: {e}")).into()
}

/// Opens the windows of one payload, on whichever core asks, reporting progress.
struct Windows<'a> {
    auth: &'a Authenticated,
    opened: &'a Opened,
    total: usize,
    progress: &'a (dyn Fn(u64) + Sync),
    done: AtomicU64,
}

impl<'a> Windows<'a> {
    fn new(
        auth: &'a Authenticated,
        opened: &'a Opened,
        progress: &'a (dyn Fn(u64) + Sync),
    ) -> Windows<'a> {
        let total = PayloadCipher::chunk_count(opened.plain_len) as usize;
        Windows {
            auth,
            opened,
            total,
            progress,
            done: AtomicU64::new(0),
        }
    }

    /// Reads window `w` into `buf`, checks it against its digest, then opens it in place: each
    /// chunk's plaintext is left at the start of its sealed slot. Returns the window's
    /// plaintext length.
    fn decrypt(&self, w: usize, buf: &mut Vec<u8>) -> Result<usize, UnsealError> {
        self.auth.read_chunk(w, buf)?;
        (self.opened.cipher).decrypt_window(w * CHUNKS_PER_WINDOW, self.total, buf)?;
        let n = buf.len() as u64;
        (self.progress)(n + self.done.fetch_add(n, Ordering::Relaxed));
        Ok(window_plain_len(w, self.opened.plain_len))
    }

    /// [`Windows::decrypt`], with the tags squeezed out: the plaintext at the start of `buf`.
    fn open(&self, w: usize, buf: &mut Vec<u8>) -> Result<usize, UnsealError> {
        let plain = self.decrypt(w, buf)?;
        PayloadCipher::close_up(buf, plain as u64);
        Ok(plain)
    }
}

/// Plaintext bytes in one window of whole STREAM chunks.
const WINDOW_PLAIN: usize = CHUNKS_PER_WINDOW * STREAM_CHUNK;

/// Plaintext bytes in window `w` of a payload of `plain_len` bytes.
fn window_plain_len(w: usize, plain_len: u64) -> usize {
    (plain_len as usize)
        .saturating_sub(w * WINDOW_PLAIN)
        .min(WINDOW_PLAIN)
}

/// The parts of the tensors that raw payload bytes `from..to` fill, cut from the front of each
/// tensor's remaining `views` (raw payload offset, place); windows must be taken in order.
fn take_shares<'a>(
    layout: &Layout,
    views: &mut [&'a mut [u8]],
    from: u64,
    to: u64,
) -> Vec<(u64, &'a mut [u8])> {
    let mut out = Vec::new();
    for (k, t) in layout.tensors.iter().enumerate() {
        let (a, b) = (from.max(t.offset), to.min(t.offset + t.length));
        if a < b {
            let view = std::mem::take(&mut views[k]);
            let (share, rest) = view.split_at_mut((b - a) as usize);
            views[k] = rest;
            out.push((a, share));
        }
    }
    out
}

/// What [`scatter`] does with each run of bytes: copy it to its place, or check it is padding.
type Place<'a> = dyn FnMut(&[u8], u64) -> Result<(), UnsealError> + 'a;

/// Copies raw payload bytes, given as consecutive `parts` starting at raw offset `from`, to
/// their places `shares`; every byte between them is padding and must be zero.
fn scatter<'a>(
    layout: &Layout,
    from: u64,
    parts: impl Iterator<Item = &'a [u8]>,
    shares: Vec<(u64, &mut [u8])>,
) -> Result<(), UnsealError> {
    let mut parts = parts.peekable();
    let mut at = from;
    // Hands the next `n` bytes to `each`, part by part.
    let mut take = |n: u64, at: &mut u64, each: &mut Place<'_>| {
        let mut left = n;
        while left > 0 {
            let Some(part) = parts.peek_mut() else {
                return Err(UnsealError::from(FormatError::Invalid(
                    "encrypted payload: shorter than its tensor table".into(),
                )));
            };
            let k = (part.len() as u64).min(left) as usize;
            let (now, rest) = part.split_at(k);
            each(now, *at)?;
            *part = rest;
            if part.is_empty() {
                parts.next();
            }
            left -= k as u64;
            *at += k as u64;
        }
        Ok(())
    };
    let mut zero = |bytes: &[u8], at: u64| match bytes.iter().position(|&x| x != 0) {
        Some(p) => Err(UnsealError::from(FormatError::Invalid(format!(
            "encrypted payload: padding byte at offset {} is not zero",
            at + p as u64
        )))),
        None => Ok(()),
    };
    for (offset, place) in shares {
        take(offset - at, &mut at, &mut zero)?;
        let mut filled = 0;
        take(place.len() as u64, &mut at, &mut |bytes, _| {
            place[filled..filled + bytes.len()].copy_from_slice(bytes);
            filled += bytes.len();
            Ok(())
        })?;
    }
    // What is left of the window is padding up to the next tensor, or the payload's end.
    for part in parts {
        zero(part, at)?;
        at += part.len() as u64;
    }
    debug_assert!(at <= layout.length);
    Ok(())
}

/// Where [`unseal_stream`] delivers a decrypted payload, in order.
pub trait PlainSink {
    type Error: From<UnsealError> + From<VerifyError> + Send;
    /// The hidden architecture and tensor table, before any tensor bytes.
    fn header(&mut self, arch: Option<&Graph>, layout: &Layout) -> Result<(), Self::Error>;
    /// The next bytes of tensor data, in payload order, with the padding (checked to be
    /// zero) taken out: the tensors of the layout, back to back.
    fn data(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// Verifies and decrypts the payload of `auth` into `sink` with memory bounded by a few digest
/// windows per core, whatever the artifact's size.
///
/// Every window is checked against its signed digest before it is decrypted, and every STREAM
/// chunk authenticates before any of its bytes reach the sink; a truncated or reordered stream
/// fails at the latest on its last chunk, so a sink that writes must keep its output
/// provisional until this returns `Ok`.
pub fn unseal_stream<S: PlainSink + Send>(
    auth: &Authenticated,
    unlock: Unlock<'_>,
    progress: &(dyn Fn(u64) + Sync),
    sink: &mut S,
) -> Result<(), S::Error> {
    let (cipher, plain_len) = open_cipher(auth, unlock)?;
    let total = PayloadCipher::chunk_count(plain_len) as usize;
    let mut state = Stream::Head(Zeroizing::new(Vec::new()));
    auth.stream_payload_then(
        progress,
        |i, window| {
            cipher
                .decrypt_window(i * CHUNKS_PER_WINDOW, total, window)
                .map_err(|e| S::Error::from(UnsealError::from(e)))
        },
        |_, window| {
            for slot in window.chunks(STREAM_CHUNK + TAG_LEN) {
                state.feed(&slot[..slot.len() - TAG_LEN], plain_len, sink)?;
            }
            Ok(())
        },
    )?;
    match state {
        Stream::Head(_) => Err(UnsealError::from(FormatError::Invalid(
            "encrypted payload: shorter than its header".into(),
        ))
        .into()),
        Stream::Body { .. } => Ok(()),
    }
}

/// Where [`unseal_stream`] is in the plaintext.
enum Stream {
    /// Collecting the header block.
    Head(Zeroizing<Vec<u8>>),
    /// In the raw payload: at offset `pos`, before or in tensor `next` of `layout`.
    Body {
        layout: Layout,
        next: usize,
        pos: u64,
    },
}

impl Stream {
    fn feed<S: PlainSink>(
        &mut self,
        mut bytes: &[u8],
        plain_len: u64,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        if let Stream::Head(head) = self {
            let want = if head.len() < 4 {
                4
            } else {
                InnerManifest::header_len(head).map_err(UnsealError::from)?
            };
            let take = (want - head.len()).min(bytes.len());
            head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if head.len() < want {
                return Ok(());
            }
            if want == 4 {
                // The length is known now: collect the rest of the header.
                return self.feed(bytes, plain_len, sink);
            }
            let (inner, layout) =
                InnerManifest::parse_header(head, plain_len).map_err(UnsealError::from)?;
            let arch =
                (inner.arch.as_ref().map(Graph::decode).transpose()).map_err(UnsealError::from)?;
            sink.header(arch.as_ref(), &layout)?;
            *self = Stream::Body {
                layout,
                next: 0,
                pos: 0,
            };
        }
        let Stream::Body { layout, next, pos } = self else {
            unreachable!("the header was parsed above")
        };
        while !bytes.is_empty() {
            // Up to where the bytes from `pos` are all tensor data, or all padding.
            let (end, data) = match layout.tensors.get(*next) {
                Some(t) if *pos < t.offset => (t.offset, false),
                Some(t) if *pos < t.offset + t.length => (t.offset + t.length, true),
                Some(_) => {
                    *next += 1;
                    continue;
                }
                None => (u64::MAX, false),
            };
            let n = (end - *pos).min(bytes.len() as u64) as usize;
            let (now, rest) = bytes.split_at(n);
            if data {
                let t = &layout.tensors[*next];
                check_bools(t, *pos - t.offset, now).map_err(bool_error)?;
                sink.data(now)?;
            } else if let Some(p) = now.iter().position(|&b| b != 0) {
                return Err(UnsealError::from(FormatError::Invalid(format!(
                    "encrypted payload: padding byte at offset {} is not zero",
                    *pos + p as u64
                )))
                .into());
            }
            *pos += n as u64;
            bytes = rest;
        }
        Ok(())
    }
}
