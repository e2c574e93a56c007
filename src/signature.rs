//! COSE_Sign1 (RFC 9052) signatures over the manifest, with Ed25519.
//!
//! Each signature carries its manifest detached (the envelope holds the manifest once, however
//! many signatures there are). The protected header is the deterministic map
//!
//! ```text
//! { 1: -19 (alg: Ed25519, RFC 9864), 3: CONTENT_TYPE, 4: kid (8 bytes), -65537: public key (32 bytes) }
//! ```
//!
//! and the bytes signed are `Sig_structure = ["Signature1", protected, h'', manifest]`. Carrying
//! the public key lets every signature be checked, trusted or not, so no byte of an artifact
//! escapes verification; trust is then a matter of which keys the verifier lists.

use ciborium::value::{Integer, Value};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::Scalar;
use ed25519_dalek::{Signature, Signer};

use crate::cbor;
use crate::format::{FormatError, RawSignature};
use crate::keys::{PublicKey, SecretKey};

/// COSE header label: algorithm.
pub const LABEL_ALG: i64 = 1;
/// COSE header label: critical headers.
pub const LABEL_CRIT: i64 = 2;
/// COSE header label: content type.
pub const LABEL_CONTENT_TYPE: i64 = 3;
/// COSE header label: key id.
pub const LABEL_KID: i64 = 4;
/// Private-use COSE header label (RFC 9052 section 3.1: below -65536) for the signer's raw
/// public key.
pub const LABEL_PUBLIC_KEY: i64 = -65537;
/// COSE algorithm Ed25519 (RFC 9864), written by nnsign.
pub const ALG_ED25519: i64 = -19;
/// COSE algorithm EdDSA (RFC 9052, deprecated by RFC 9864), accepted when reading.
pub const ALG_EDDSA: i64 = -8;
/// Content type of the signed payload.
pub const CONTENT_TYPE: &str = "application/vnd.nnsign.manifest+cbor";
/// Context string of Sig_structure for COSE_Sign1.
const SIGNATURE1: &str = "Signature1";

/// A signature's protected header, decoded.
#[derive(Debug, Clone)]
pub struct Header {
    pub alg: i64,
    pub kid: Vec<u8>,
    pub public_key: Option<[u8; 32]>,
}

/// What checking one signature found.
#[derive(Debug, Clone)]
pub enum Checked {
    /// The signature is valid for this public key (trusted or not).
    Valid(PublicKey),
    /// The algorithm is not one this nnsign implements; the signature is neither valid nor
    /// invalid to it, and counts for nothing.
    Unsupported { alg: i64, kid: Vec<u8> },
}

/// Why a signature failed.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The header is malformed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The signature does not verify under the strict rules of FORMAT.md section 4, rule 4:
    /// `why` says which failed (in the end, that the manifest or the signature changed after
    /// signing).
    #[error("signature by key {kid} does not verify: {why}")]
    Invalid { kid: String, why: &'static str },
}

fn header_error(msg: impl Into<String>) -> FormatError {
    FormatError::SignatureHeader(msg.into())
}

fn int(i: i64) -> Value {
    Value::Integer(Integer::from(i))
}

/// The protected header nnsign writes for `key`.
pub fn protected_header(key: &PublicKey) -> Vec<u8> {
    let map = Value::Map(vec![
        (int(LABEL_ALG), int(ALG_ED25519)),
        (int(LABEL_CONTENT_TYPE), Value::Text(CONTENT_TYPE.into())),
        (int(LABEL_KID), Value::Bytes(key.id().0.to_vec())),
        (int(LABEL_PUBLIC_KEY), Value::Bytes(key.raw().to_vec())),
    ]);
    cbor::encode(&map).expect("integer keys are distinct")
}

/// The bytes an Ed25519 signature covers.
pub fn sig_structure(protected: &[u8], manifest: &[u8]) -> Vec<u8> {
    let v = Value::Array(vec![
        Value::Text(SIGNATURE1.into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(vec![]),
        Value::Bytes(manifest.to_vec()),
    ]);
    cbor::encode(&v).expect("no maps, nothing to fail")
}

/// Signs `manifest` with `key`.
pub fn sign(key: &SecretKey, manifest: &[u8]) -> RawSignature {
    sign_with_header(key, protected_header(&key.public()), manifest)
}

/// Signs `manifest` under a given protected header (test vectors use it to make legacy and
/// malformed headers; `sign` is the way to make real signatures).
pub fn sign_with_header(key: &SecretKey, protected: Vec<u8>, manifest: &[u8]) -> RawSignature {
    let sig: Signature = key.signing_key().sign(&sig_structure(&protected, manifest));
    RawSignature {
        protected,
        signature: sig.to_bytes().to_vec(),
    }
}

/// Decodes a protected header strictly: deterministic CBOR, known labels well-typed, any
/// critical label understood.
pub fn parse_header(protected: &[u8]) -> Result<Header, FormatError> {
    let value = cbor::decode(protected).map_err(|e| header_error(e.to_string()))?;
    let Value::Map(entries) = value else {
        return Err(header_error("protected header is not a map"));
    };
    let (mut alg, mut kid, mut public_key, mut content_type) = (None, None, None, None);
    let mut crit = Vec::new();
    let labels: Vec<Value> = entries.iter().map(|(k, _)| k.clone()).collect();
    for (k, v) in entries {
        // Text labels are legal COSE but none are defined for us; they are ignored unless
        // marked critical, which is refused below. Labels of any other type are not COSE.
        if k.is_text() {
            continue;
        }
        let Some(label) = k.as_integer().and_then(|i| i64::try_from(i).ok()) else {
            return Err(header_error(
                "a header label is neither an integer nor text",
            ));
        };
        match label {
            LABEL_ALG => {
                alg = Some(
                    v.as_integer()
                        .and_then(|i| i64::try_from(i).ok())
                        .ok_or_else(|| header_error("alg is not an integer"))?,
                )
            }
            LABEL_CRIT => {
                let items = v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| header_error("crit is not a non-empty array"))?;
                crit = items.clone();
            }
            LABEL_CONTENT_TYPE => {
                content_type = Some(
                    v.as_text()
                        .ok_or_else(|| header_error("content type is not text"))?
                        .to_owned(),
                )
            }
            LABEL_KID => {
                kid = Some(
                    v.as_bytes()
                        .ok_or_else(|| header_error("kid is not a byte string"))?
                        .clone(),
                )
            }
            LABEL_PUBLIC_KEY => {
                let raw: [u8; 32] = v
                    .as_bytes()
                    .and_then(|b| b.as_slice().try_into().ok())
                    .ok_or_else(|| header_error("public key is not 32 bytes"))?;
                public_key = Some(raw);
            }
            _ => {}
        }
    }
    // RFC 9052 section 3.1: a critical label names a parameter of this same header, which the
    // reader must understand. Listing one twice, or one the header lacks, is refused: such a
    // list means different things to different readers.
    const UNDERSTOOD: [i64; 4] = [LABEL_ALG, LABEL_CONTENT_TYPE, LABEL_KID, LABEL_PUBLIC_KEY];
    for (i, c) in crit.iter().enumerate() {
        let label = match c {
            Value::Integer(n) => format!("{}", i128::from(*n)),
            Value::Text(t) => format!("{t:?}"),
            other => {
                return Err(header_error(format!(
                    "crit holds {other:?}, which is not a label (an integer or text)"
                )))
            }
        };
        if crit[..i].contains(c) {
            return Err(header_error(format!("crit lists label {label} twice")));
        }
        let known = c
            .as_integer()
            .and_then(|i| i64::try_from(i).ok())
            .is_some_and(|l| UNDERSTOOD.contains(&l));
        if !known {
            return Err(header_error(format!(
                "critical header {label} is not understood by this nnsign"
            )));
        }
        if !labels.contains(c) {
            return Err(header_error(format!(
                "crit lists label {label}, which the protected header does not hold"
            )));
        }
    }
    if content_type.as_deref() != Some(CONTENT_TYPE) {
        return Err(header_error(format!(
            "content type is not {CONTENT_TYPE:?}: this signature was not made for an nnsign manifest"
        )));
    }
    Ok(Header {
        alg: alg.ok_or_else(|| header_error("no alg"))?,
        kid: kid
            .filter(|k| k.len() == 8)
            .ok_or_else(|| header_error("kid is missing or not 8 bytes"))?,
        public_key,
    })
}

/// Decodes a point as RFC 8032 section 5.1.3 does, which refuses a y-coordinate of p or more
/// and an x of 0 with the sign bit set: the curve library accepts both, and they are exactly the
/// encodings that do not come back byte for byte when the point is encoded again.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    (point.compress().as_bytes() == bytes).then_some(point)
}

/// Checks one signature over `manifest`: Ed25519 under the strict rules of FORMAT.md section 4,
/// rule 4 (canonical encodings of the key, R and S; neither the key nor R of small order; the
/// equation `[S]B = R + [k]A` without the cofactor).
pub fn check(sig: &RawSignature, manifest: &[u8]) -> Result<Checked, SignatureError> {
    let header = parse_header(&sig.protected)?;
    if header.alg != ALG_ED25519 && header.alg != ALG_EDDSA {
        return Ok(Checked::Unsupported {
            alg: header.alg,
            kid: header.kid,
        });
    }
    let raw = header
        .public_key
        .ok_or_else(|| header_error("Ed25519 signature without its public key (label -65537)"))?;
    let point = decode_point(&raw).ok_or_else(|| {
        header_error(
            "public key is not a canonical encoding of an Ed25519 point (RFC 8032 section 5.1.3)",
        )
    })?;
    if point.is_small_order() {
        return Err(header_error(
            "public key is a point of small order: such a key validates signatures on many manifests",
        )
        .into());
    }
    let key = PublicKey::from_raw(&raw)
        .ok_or_else(|| header_error("public key is not a valid Ed25519 point"))?;
    if header.kid != key.id().0 {
        return Err(header_error(format!(
            "kid {} is not the id of the public key it carries ({})",
            crate::keys::hex(&header.kid),
            key.id()
        ))
        .into());
    }
    let invalid = |why| SignatureError::Invalid {
        kid: key.id().to_string(),
        why,
    };
    let bytes: [u8; 64] = (sig.signature.as_slice().try_into())
        .map_err(|_| invalid("an Ed25519 signature is 64 bytes"))?;
    let r: [u8; 32] = bytes[..32].try_into().expect("32 of 64 bytes");
    let s: [u8; 32] = bytes[32..].try_into().expect("32 of 64 bytes");
    if Option::<Scalar>::from(Scalar::from_canonical_bytes(s)).is_none() {
        return Err(invalid(
            "its S is not below the group order L (a non-canonical, malleable signature)",
        ));
    }
    let r = decode_point(&r)
        .ok_or_else(|| invalid("its R is not a canonical encoding of an Ed25519 point"))?;
    if r.is_small_order() {
        return Err(invalid("its R is a point of small order"));
    }
    // The cofactorless equation, with R compared as encoded.
    key.verifying_key()
        .verify_strict(
            &sig_structure(&sig.protected, manifest),
            &Signature::from_bytes(&bytes),
        )
        .map_err(|_| invalid("the manifest or the signature was changed after signing"))?;
    Ok(Checked::Valid(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_check_and_tamper() {
        let key = SecretKey::from_seed(&[1; 32]);
        let sig = sign(&key, b"manifest");
        match check(&sig, b"manifest").unwrap() {
            Checked::Valid(k) => assert_eq!(k, key.public()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check(&sig, b"manifesT"),
            Err(SignatureError::Invalid { .. })
        ));
        let mut bad = sig.clone();
        bad.signature[0] ^= 1;
        assert!(matches!(
            check(&bad, b"manifest"),
            Err(SignatureError::Invalid { .. })
        ));
    }

    #[test]
    fn protected_header_bytes_are_pinned() {
        let key = SecretKey::from_seed(&[1; 32]);
        let h = protected_header(&key.public());
        // a4 | 01 32 | 03 78 24 "application/..." | 04 48 <kid> | 3a 00010000 58 20 <key>
        assert_eq!(&h[..3], &[0xa4, 0x01, 0x32]);
        assert_eq!(&h[3..5], &[0x03, 0x78]);
        assert_eq!(h.len(), 3 + 2 + 1 + CONTENT_TYPE.len() + 2 + 8 + 5 + 2 + 32);
        let parsed = parse_header(&h).unwrap();
        assert_eq!(parsed.alg, ALG_ED25519);
        assert_eq!(parsed.kid, key.public().id().0);
    }

    #[test]
    fn crit_may_list_a_label_once_and_only_one_the_header_holds() {
        let header = |crit: Vec<Value>, with_key: bool| {
            let mut map = vec![
                (int(LABEL_ALG), int(-7)),
                (int(LABEL_CRIT), Value::Array(crit)),
                (int(LABEL_CONTENT_TYPE), Value::Text(CONTENT_TYPE.into())),
                (int(LABEL_KID), Value::Bytes(vec![0; 8])),
            ];
            if with_key {
                map.push((int(LABEL_PUBLIC_KEY), Value::Bytes(vec![0; 32])));
            }
            parse_header(&cbor::encode(&Value::Map(map)).unwrap())
        };
        assert!(header(vec![int(LABEL_PUBLIC_KEY)], true).is_ok());
        let err = header(vec![int(LABEL_PUBLIC_KEY)], false).unwrap_err();
        assert!(err.to_string().contains("does not hold"), "{err}");
        let err = header(vec![int(LABEL_KID), int(LABEL_KID)], true).unwrap_err();
        assert!(err.to_string().contains("label 4 twice"), "{err}");
        let err = header(vec![Value::Bool(true)], true).unwrap_err();
        assert!(err.to_string().contains("not a label"), "{err}");
    }

    #[test]
    fn non_canonical_encodings_are_not_points() {
        let key = SecretKey::from_seed(&[1; 32]).public().raw();
        assert!(decode_point(&key).is_some());
        // The neutral element as 01 00 .. 00, with the sign bit set, and with y = p + 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(decode_point(&identity).is_some());
        let mut negative_zero = identity;
        negative_zero[31] = 0x80;
        assert!(decode_point(&negative_zero).is_none());
        let mut y_plus_p = [0xff; 32];
        y_plus_p[0] = 0xee;
        y_plus_p[31] = 0x7f;
        assert!(decode_point(&y_plus_p).is_none());
    }

    #[test]
    fn unknown_critical_label_is_refused() {
        let map = Value::Map(vec![
            (int(LABEL_ALG), int(ALG_ED25519)),
            (int(LABEL_CRIT), Value::Array(vec![int(99)])),
            (int(LABEL_CONTENT_TYPE), Value::Text(CONTENT_TYPE.into())),
            (int(LABEL_KID), Value::Bytes(vec![0; 8])),
            (int(99), int(1)),
        ]);
        let err = parse_header(&cbor::encode(&map).unwrap()).unwrap_err();
        assert!(err.to_string().contains("critical header"), "{err}");
    }
}
