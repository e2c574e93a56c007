//! The published test vectors in tests/vectors/: each artifact, the keys that made it, and what
//! a verifier must answer. This file both builds them (deterministically: fixed key seeds and
//! creation time) and checks them:
//!
//! - `committed_vectors_are_what_the_code_builds` pins the byte format: a change to the writer
//!   that changes any vector fails here.
//! - `every_vector_yields_its_expected_verdict` runs `nnsign verify` on each and checks the exit
//!   code and message against tests/vectors/vectors.json.
//!
//! To regenerate after a deliberate format change:
//! `cargo test --test vectors -- --ignored regenerate`.

mod common;

use std::collections::BTreeMap;

use ciborium::value::Value;
use common::*;
use nnsign::format::{self, DType, Layout, Manifest, TensorInfo};
use nnsign::import::SourceTensor;
use nnsign::keys::encryption::{EncryptionPublicKey, EncryptionSecretKey};
use nnsign::keys::{self, SecretKey};
use nnsign::pack::{self, assemble, PackInput};
use nnsign::signature;
use serde_json::json;
use sha2::{Digest, Sha256};

const SEED_A: [u8; 32] = [0xa1; 32];
const SEED_B: [u8; 32] = [0xb2; 32];
/// 2026-01-01T00:00:00Z.
const CREATED: u64 = 1_767_225_600;

fn tensors() -> Vec<SourceTensor> {
    let w: Vec<u8> = [0.5f32, -1.0, 2.0, 3.25, 0.0, 1e-3]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let idx: Vec<u8> = [1i64, 2, 3, 4]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    vec![
        tensor("w", DType::F32, &[2, 3], w),
        tensor("idx", DType::I64, &[4], idx),
        tensor("flag", DType::Bool, &[3], vec![1, 0, 1]),
    ]
}

fn model_info() -> format::ModelInfo {
    format::ModelInfo {
        name: "vector-model".into(),
        version: Some("1.0.0".into()),
        description: Some("nnsign test vector".into()),
        created: CREATED,
        producer: "nnsign test vectors".into(),
        labels: BTreeMap::from([("purpose".into(), "test-vector".into())]),
        expires: None,
        parent: None,
    }
}

const ARCH: &str = r#"{"opset": 1,
  "inputs": [{"name": "x", "dtype": "F32", "shape": ["batch", 2]}],
  "outputs": [{"name": "y", "dtype": "F32", "shape": ["batch", 3]}],
  "nodes": [{"op": "Dense", "name": "dense", "inputs": ["x", "w"], "outputs": ["y"],
             "attrs": {"activation": "relu"}}]}"#;

fn packed(signer: Option<&SecretKey>, arch: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.nns");
    pack::pack(
        PackInput {
            model: model_info(),
            arch: arch.then(|| nnsign::model::Graph::from_json(ARCH).unwrap()),
            tensors: tensors(),
            signer,
            encrypt: None,
        },
        &out,
        &|_| {},
    )
    .unwrap();
    std::fs::read(out).unwrap()
}

/// A manifest for `payload` under an edited tensor table, with digests recomputed.
fn manifest_for(edit: impl Fn(&mut Manifest), payload: &[u8], base: &[u8]) -> Vec<u8> {
    let mut m = Manifest::decode(base).unwrap();
    edit(&mut m);
    let infos: Vec<TensorInfo> = m
        .tensors
        .iter()
        .map(|t| TensorInfo {
            name: t.name.clone(),
            dtype: DType::from_name(&t.dtype).unwrap(),
            shape: t.shape.clone(),
            offset: t.offset,
            length: t.length,
        })
        .collect();
    m.payload.digests = pack::digest_chunks(&Layout::chunks_for(&infos, m.payload.length), payload);
    m.encode()
}

struct Vector {
    file: &'static str,
    bytes: Vec<u8>,
    /// `null` for ok, else the exit code and a fragment of the message.
    expect: serde_json::Value,
    note: &'static str,
    allow_unsigned: bool,
}

fn v(file: &'static str, bytes: Vec<u8>, code: Option<(i32, &str)>, note: &'static str) -> Vector {
    Vector {
        file,
        bytes,
        expect: match code {
            None => json!({"ok": true}),
            Some((c, m)) => json!({"ok": false, "exit_code": c, "message_contains": m}),
        },
        note,
        allow_unsigned: false,
    }
}

fn build() -> Vec<Vector> {
    let a = SecretKey::from_seed(&SEED_A);
    let b = SecretKey::from_seed(&SEED_B);
    let signed = packed(Some(&a), false);
    let (manifest, sigs, payload) = parts(&signed);
    let mut out = vec![
        v(
            "pass_signed.nns",
            signed.clone(),
            None,
            "three tensors (F32 [2,3], I64 [4], BOOL [3]), weights only, signed by test-a",
        ),
        v(
            "pass_signed_arch.nns",
            packed(Some(&a), true),
            None,
            "as pass_signed, with a one-node Dense architecture",
        ),
    ];
    let mut unsigned = v(
        "pass_unsigned.nns",
        packed(None, false),
        None,
        "no signature: valid only with --allow-unsigned (verify without it: exit 4, \"unsigned\")",
    );
    unsigned.allow_unsigned = true;
    out.push(unsigned);

    // Legacy algorithm id -8 (EdDSA) must still be accepted when reading.
    let legacy_header = {
        let pk = a.public();
        let map = Value::Map(vec![
            (Value::Integer(1.into()), Value::Integer((-8).into())),
            (
                Value::Integer(3.into()),
                Value::Text(signature::CONTENT_TYPE.into()),
            ),
            (Value::Integer(4.into()), Value::Bytes(pk.id().0.to_vec())),
            (
                Value::Integer((-65537).into()),
                Value::Bytes(pk.raw().to_vec()),
            ),
        ]);
        nnsign::cbor::encode(&map).unwrap()
    };
    out.push(v(
        "pass_legacy_eddsa_alg.nns",
        assemble(
            &manifest,
            vec![signature::sign_with_header(&a, legacy_header, &manifest)],
            &payload,
        ),
        None,
        "signed with COSE alg -8 (EdDSA, deprecated by RFC 9864) instead of -19",
    ));

    out.push(v(
        "fail_untrusted_signer.nns",
        packed(Some(&b), false),
        Some((4, "is not in the trust store")),
        "valid signature by test-b, which the verifier does not trust",
    ));
    let mut bad_sig = signed.clone();
    let sig_pos =
        format::payload_offset(u32::from_be_bytes(signed[12..16].try_into().unwrap())) as usize;
    // The last 64 bytes of the envelope are the signature; flip one of them.
    let env_end = 16 + u32::from_be_bytes(signed[12..16].try_into().unwrap()) as usize;
    bad_sig[env_end - 10] ^= 0x40;
    out.push(v(
        "fail_bad_signature.nns",
        bad_sig,
        Some((4, "does not verify")),
        "one bit of the signature flipped",
    ));
    let mut flipped = signed.clone();
    flipped[sig_pos + 130] ^= 0x01;
    out.push(v(
        "fail_payload_bit_flip.nns",
        flipped,
        Some((5, "bytes 0..24 of tensor \"w\"")),
        "one bit flipped in tensor w (payload order is by name: flag at 0, idx at 64, w at 128)",
    ));
    out.push(v(
        "fail_truncated.nns",
        signed[..signed.len() - 1].to_vec(),
        Some((5, "truncated")),
        "last byte removed",
    ));
    let mut appended = signed.clone();
    appended.push(0);
    out.push(v(
        "fail_appended.nns",
        appended,
        Some((5, "unexpected bytes after the payload")),
        "one zero byte appended",
    ));
    let mut reordered_payload = payload.clone();
    reordered_payload.swap(0, 65);
    out.push(v(
        "fail_reordered_payload.nns",
        assemble(&manifest, sigs.clone(), &reordered_payload),
        Some((5, "does not match its signed digest")),
        "payload byte 0 (in flag) swapped with byte 65 (in idx)",
    ));
    // The same header with the payload of another model of the same size.
    let other: Vec<u8> = payload.iter().map(|b| b.wrapping_add(1)).collect();
    out.push(v(
        "fail_swapped_payload.nns",
        assemble(&manifest, sigs.clone(), &other),
        Some((5, "does not match its signed digest")),
        "header of pass_signed, payload of another artifact of the same layout",
    ));
    let mut padded = payload.clone();
    padded[3] = 0xff; // flag is 3 bytes: byte 3 is padding
    out.push(v(
        "fail_nonzero_padding.nns",
        resigned(&manifest_for(|_| {}, &padded, &manifest), &padded, &a),
        Some((5, "padding byte at payload offset 3")),
        "signed, digests match, but a padding byte is 0xff",
    ));
    // Signed manifests that break the format: the signature is valid, the content is not.
    // Where `"format": 1` is encoded in the manifest (a text key of 6 bytes, then the 1).
    let format_entry = b"\x66format\x01";
    let format_at = manifest
        .windows(format_entry.len())
        .position(|w| w == format_entry)
        .unwrap();
    let noncanonical = {
        let mut m = manifest.clone();
        m.splice(format_at + 7..format_at + 8, [0x18, 0x01]);
        m
    };
    out.push(v(
        "fail_noncanonical_manifest.nns",
        resigned(&noncanonical, &payload, &a),
        Some((5, "non-canonical CBOR")),
        "signed manifest encodes format 1 as 0x18 0x01 (not shortest)",
    ));
    let duplicate = {
        let mut m = manifest.clone();
        m[0] += 1; // one more map entry
        m.splice(format_at..format_at, format_entry.iter().copied());
        m
    };
    out.push(v(
        "fail_duplicate_map_key.nns",
        resigned(&duplicate, &payload, &a),
        Some((5, "duplicate map key")),
        "signed manifest holds the key \"format\" twice",
    ));
    out.push(v(
        "fail_unknown_critical_field.nns",
        resigned(
            &manifest_for(
                |m| m.crit = vec!["x-future-feature".into()],
                &payload,
                &manifest,
            ),
            &payload,
            &a,
        ),
        Some((5, "requires support for \"x-future-feature\"")),
        "signed manifest marks an unknown field critical",
    ));
    out.push(v(
        "fail_misplaced_tensor.nns",
        resigned(
            &manifest_for(|m| m.tensors[1].offset = 8, &payload, &manifest),
            &payload,
            &a,
        ),
        Some((5, "but the layout puts it at 64")),
        "signed tensor table places idx at offset 8 instead of 64",
    ));
    let unprotected = {
        let mut m = parts(&signed);
        let mut bytes = assemble(&m.0, std::mem::take(&mut m.1), &m.2);
        // The empty unprotected map (a0) sits right after the protected header bstr.
        let ph = signature::protected_header(&a.public());
        let pos = bytes
            .windows(ph.len())
            .position(|w| w == ph.as_slice())
            .unwrap()
            + ph.len();
        assert_eq!(bytes[pos], 0xa0);
        bytes[pos] = 0xa1;
        bytes.splice(pos + 1..pos + 1, [0x04, 0x40]); // {4: h''}
                                                      // Keep the prelude's length right so only the unprotected header is wrong.
        let len = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) + 2;
        bytes[12..16].copy_from_slice(&len.to_be_bytes());
        let payload_at = format::payload_offset(len) as usize;
        let mut fixed = bytes[..16 + len as usize].to_vec();
        fixed.resize(payload_at, 0);
        fixed.extend_from_slice(&payload);
        fixed
    };
    out.push(v(
        "fail_unprotected_header.nns",
        unprotected,
        Some((5, "unprotected header is not empty")),
        "a kid in the unprotected (unsigned) header",
    ));
    let mut magic = signed.clone();
    magic[1] = b'X';
    out.push(v(
        "fail_bad_magic.nns",
        magic,
        Some((5, "not an nnsign artifact")),
        "magic bytes changed",
    ));
    let kid_mismatch = {
        let pk = a.public();
        let map = Value::Map(vec![
            (Value::Integer(1.into()), Value::Integer((-19).into())),
            (
                Value::Integer(3.into()),
                Value::Text(signature::CONTENT_TYPE.into()),
            ),
            (Value::Integer(4.into()), Value::Bytes(vec![0; 8])),
            (
                Value::Integer((-65537).into()),
                Value::Bytes(pk.raw().to_vec()),
            ),
        ]);
        let h = nnsign::cbor::encode(&map).unwrap();
        assemble(
            &manifest,
            vec![signature::sign_with_header(&a, h, &manifest)],
            &payload,
        )
    };
    out.push(v(
        "fail_kid_mismatch.nns",
        kid_mismatch,
        Some((4, "is not the id of the public key")),
        "kid is not the id of the key in the header",
    ));

    // More signers, and signatures a verifier must not count.
    out.push(v(
        "pass_two_signers.nns",
        assemble(
            &manifest,
            vec![
                signature::sign(&a, &manifest),
                signature::sign(&b, &manifest),
            ],
            &payload,
        ),
        None,
        "signed by test-a and test-b; trusting test-a alone is enough",
    ));
    let header = |alg: i64, content_type: &str, crit: Option<i64>| {
        let pk = a.public();
        let mut map = vec![
            (Value::Integer(1.into()), Value::Integer(alg.into())),
            (Value::Integer(3.into()), Value::Text(content_type.into())),
            (Value::Integer(4.into()), Value::Bytes(pk.id().0.to_vec())),
            (
                Value::Integer((-65537).into()),
                Value::Bytes(pk.raw().to_vec()),
            ),
        ];
        if let Some(label) = crit {
            map.push((
                Value::Integer(2.into()),
                Value::Array(vec![Value::Integer(label.into())]),
            ));
            map.push((Value::Integer(label.into()), Value::Integer(0.into())));
        }
        nnsign::cbor::encode(&Value::Map(map)).unwrap()
    };
    let with_header = |h: Vec<u8>| {
        assemble(
            &manifest,
            vec![signature::sign_with_header(&a, h, &manifest)],
            &payload,
        )
    };
    out.push(v(
        "fail_wrong_content_type.nns",
        with_header(header(-19, "application/cose", None)),
        Some((4, "content type")),
        "protected header content type is not the nnsign manifest type",
    ));
    out.push(v(
        "fail_unknown_critical_header.nns",
        with_header(header(-19, signature::CONTENT_TYPE, Some(99))),
        Some((4, "critical header")),
        "protected header marks an unknown label (99) critical",
    ));
    out.push(v(
        "fail_unsupported_algorithm_only.nns",
        assemble(&manifest, vec![format::RawSignature { protected: header(-7, signature::CONTENT_TYPE, None), signature: vec![0; 64] }], &payload),
        Some((4, "COSE algorithm -7")),
        "its only signature claims ES256 (-7), which v1 does not implement: signed, yet nothing counts",
    ));
    out.push(v(
        "fail_duplicate_signer.nns",
        assemble(
            &manifest,
            vec![
                signature::sign(&a, &manifest),
                signature::sign(&a, &manifest),
            ],
            &payload,
        ),
        Some((4, "signed twice")),
        "two signatures by test-a",
    ));
    type Entries = Vec<(Value, Value)>;
    let edited = |f: &dyn Fn(&mut Entries)| {
        let Value::Map(mut entries) = nnsign::cbor::decode(&manifest).unwrap() else {
            unreachable!()
        };
        f(&mut entries);
        resigned(
            &nnsign::cbor::encode(&Value::Map(entries)).unwrap(),
            &payload,
            &a,
        )
    };
    let field = |entries: &mut Vec<(Value, Value)>, key: &str| -> usize {
        entries
            .iter()
            .position(|(k, _)| k.as_text() == Some(key))
            .unwrap()
    };
    out.push(v(
        "fail_format_2.nns",
        edited(&|e| {
            let i = field(e, "format");
            e[i].1 = Value::Integer(2.into());
        }),
        Some((5, "manifest format 2")),
        "signed manifest says format 2",
    ));
    // Sets manifest[map][key] = value, adding the key if it is absent.
    let set = |e: &mut Entries, map: &str, key: &str, value: Value| {
        let i = field(e, map);
        let Value::Map(m) = &mut e[i].1 else {
            unreachable!("{map} is a map")
        };
        match m.iter().position(|(k, _)| k.as_text() == Some(key)) {
            Some(j) => m[j].1 = value,
            None => m.push((Value::Text(key.into()), value)),
        }
    };
    out.push(v(
        "fail_encoding_not_raw.nns",
        edited(&|e| {
            set(
                e,
                "payload",
                "encoding",
                Value::Text("chacha20poly1305".into()),
            )
        }),
        Some((5, "payload encoding is \"chacha20poly1305\"")),
        "signed manifest declares a payload encoding v1 does not know",
    ));
    out.push(v(
        "fail_unknown_model_field.nns",
        edited(&|e| set(e, "model", "licence", Value::Text("MIT".into()))),
        Some((5, "unknown field `licence`")),
        "ModelInfo is a closed map: an extra key is refused",
    ));
    out.push(v(
        "fail_null_version.nns",
        edited(&|e| set(e, "model", "version", Value::Null)),
        Some((5, "malformed manifest")),
        "model.version is null: optional fields are omitted, never null",
    ));
    out.push(v(
        "fail_control_character.nns",
        edited(&|e| {
            set(
                e,
                "model",
                "name",
                Value::Text("vector\u{1b}[2Jmodel".into()),
            )
        }),
        Some((5, "contains control or invisible formatting characters")),
        "model name holds an ANSI escape (a terminal-injection attempt)",
    ));
    let zero_len = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.nns");
        let mut t = tensors();
        t.push(tensor("empty", DType::F32, &[0, 4], vec![]));
        t.push(tensor(
            "scalar",
            DType::F64,
            &[],
            2.5f64.to_le_bytes().to_vec(),
        ));
        pack::pack(
            PackInput {
                model: model_info(),
                arch: None,
                tensors: t,
                signer: Some(&a),
                encrypt: None,
            },
            &path,
            &|_| {},
        )
        .unwrap();
        std::fs::read(path).unwrap()
    };
    // Regressions found in review: every one of these was accepted, or crashed a verb, once.
    let reframed = |envelope: Vec<u8>| {
        let len = envelope.len() as u32;
        let mut bytes = format::write_prelude(len).to_vec();
        bytes.extend_from_slice(&envelope);
        bytes.resize(format::payload_offset(len) as usize, 0);
        bytes.extend_from_slice(&payload);
        bytes
    };
    let long_null = {
        let len = u32::from_be_bytes(signed[12..16].try_into().unwrap()) as usize;
        let mut env = signed[16..16 + len].to_vec();
        let at = env
            .windows(4)
            .position(|w| w == [0xa0, 0xf6, 0x58, 0x40])
            .unwrap()
            + 1;
        env.splice(at..at + 1, [0xf9, 0x00, 0x16]);
        reframed(env)
    };
    out.push(v("fail_noncanonical_null.nns", long_null, Some((5, "expected null (f6)")), "the detached payload's null written as f9 0016 (a two-byte simple value 22), outside the signed bytes"));
    let with_model = |edit: &dyn Fn(&mut format::ModelInfo)| {
        resigned(
            &manifest_for(|m| edit(&mut m.model), &payload, &manifest),
            &payload,
            &a,
        )
    };
    let parent_digest: Vec<u8> = Sha256::digest(&manifest).to_vec();
    out.push(v(
        "pass_lineage_expires.nns",
        with_model(&|m| {
            m.expires = Some(format::MAX_CREATED);
            m.parent = Some(format::Parent {
                digest: parent_digest.clone(),
                name: "vector-model".into(),
                version: Some("1.0.0-rc.1+build.5".into()),
            });
        }),
        None,
        "expires at 9999-12-31T23:59:59Z; parent = pass_signed.nns (its artifact digest), version with pre-release and build parts",
    ));
    out.push(v(
        "fail_expired.nns",
        with_model(&|m| m.expires = Some(m.created + 1)),
        Some((9, "expired")),
        "expires one second after its creation (2026-01-01): well formed, refused by every verifier after that time",
    ));
    out.push(v(
        "fail_expires_not_after_created.nns",
        with_model(&|m| m.expires = Some(m.created)),
        Some((5, "must be after the creation time")),
        "expires = created",
    ));
    out.push(v(
        "fail_version_not_semver.nns",
        with_model(&|m| m.version = Some("1.0".into())),
        Some((5, "is not a semantic version")),
        "version \"1.0\": versions are SemVer, so that they compare",
    ));
    out.push(v(
        "fail_parent_digest_short.nns",
        with_model(&|m| {
            m.parent = Some(format::Parent {
                digest: vec![7; 31],
                name: "p".into(),
                version: None,
            })
        }),
        Some((5, "parent digest has 31 bytes")),
        "a parent digest of 31 bytes",
    ));
    out.push(v(
        "fail_created_out_of_range.nns",
        resigned(
            &manifest_for(|m| m.model.created = 1 << 63, &payload, &manifest),
            &payload,
            &a,
        ),
        Some((5, "creation time 9223372036854775808 is after 9999-12-31")),
        "created = 2^63: past what RFC 3339 can print (it once crashed inspect)",
    ));
    out.push(v(
        "fail_reserved_label.nns",
        resigned(
            &manifest_for(
                |m| {
                    m.model
                        .labels
                        .insert("nnsign.signers".into(), "730a5edc28c2f8da".into());
                },
                &payload,
                &manifest,
            ),
            &payload,
            &a,
        ),
        Some((5, "keys starting with \"nnsign.\" are reserved")),
        "a label posing as the provenance unpack records",
    ));
    out.push(v(
        "fail_empty_crit.nns",
        edited(&|e| e.push((Value::Text("crit".into()), Value::Array(vec![])))),
        Some((5, "crit is not a non-empty array")),
        "crit present but empty",
    ));
    let short_kid = {
        let map = Value::Map(vec![
            (Value::Integer(1.into()), Value::Integer((-7).into())),
            (
                Value::Integer(3.into()),
                Value::Text(signature::CONTENT_TYPE.into()),
            ),
            (Value::Integer(4.into()), Value::Bytes(vec![])),
        ]);
        let unsupported = format::RawSignature {
            protected: nnsign::cbor::encode(&map).unwrap(),
            signature: vec![],
        };
        assemble(
            &manifest,
            vec![signature::sign(&a, &manifest), unsupported],
            &payload,
        )
    };
    out.push(v("fail_unsupported_alg_bad_kid.nns", short_kid, Some((4, "kid is missing or not 8 bytes")), "a valid test-a signature plus an ES256 one whose kid is empty: unsupported signatures still obey the header rules"));
    let escape_arch = {
        let arch_signed = packed(Some(&a), true);
        let (m, _, p) = parts(&arch_signed);
        let mut mm = Manifest::decode(&m).unwrap();
        let signed = nnsign::cbor::decode(mm.arch.as_ref().unwrap().encoded()).unwrap();
        let mut graph: nnsign::model::Graph = signed.deserialized().unwrap();
        graph.nodes[0].op = "\u{1b}[2JDense".into();
        mm.arch = Some(graph.encode());
        resigned(&mm.encode(), &p, &a)
    };
    out.push(v(
        "fail_escape_in_architecture.nns",
        escape_arch,
        Some((5, "node op")),
        "a terminal escape sequence in an op name",
    ));
    out.push(v(
        "pass_zero_length_and_scalar.nns",
        zero_len,
        None,
        "adds an empty F32 [0,4] tensor (no chunk) and an F64 scalar (shape [])",
    ));
    out
}

/// Encrypted vectors: their file key, nonce and ephemeral keys are random, so their bytes are
/// not pinned; their verdicts are. Each is checked with `verify` (no key) and, when
/// `decrypt_with` is set, with `verify-load --decrypt-with`.
struct EncVector {
    file: &'static str,
    bytes: Vec<u8>,
    verify: serde_json::Value,
    /// What verify-load opens it with.
    open: Open,
    load: serde_json::Value,
    note: &'static str,
}

fn verdict(code: Option<(i32, &str)>) -> serde_json::Value {
    match code {
        None => json!({"ok": true}),
        Some((c, m)) => json!({"ok": false, "exit_code": c, "message_contains": m}),
    }
}

/// How a vector is opened: a recipient key (path relative to vectors.json), or a passphrase.
enum Open {
    Key(&'static str),
    Passphrase(&'static str),
}

const PASSPHRASE: &str = "correct horse battery staple";

const SEED_ENC1: [u8; 32] = [0xc3; 32];
const SEED_ENC2: [u8; 32] = [0xd4; 32];

fn packed_encrypted(to: &[EncryptionPublicKey], extra: Option<SourceTensor>) -> Vec<u8> {
    packed_sealed(
        pack::EncryptTo {
            recipients: to.to_vec(),
            passphrase: None,
        },
        extra,
    )
}

fn packed_sealed(to: pack::EncryptTo<'_>, extra: Option<SourceTensor>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e.nns");
    let a = SecretKey::from_seed(&SEED_A);
    let mut t = tensors();
    t.extend(extra);
    pack::pack(
        PackInput {
            model: model_info(),
            arch: Some(nnsign::model::Graph::from_json(ARCH).unwrap()),
            tensors: t,
            signer: Some(&a),
            encrypt: Some(to),
        },
        &out,
        &|_| {},
    )
    .unwrap();
    std::fs::read(out).unwrap()
}

/// Re-signs an encrypted artifact (by test-a) after `edit` changed its ciphertext: what a key
/// holder who can also sign could do.
fn resealed_by_signer(artifact: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let (manifest, _, mut payload) = parts(artifact);
    edit(&mut payload);
    let mut m = Manifest::decode(&manifest).unwrap();
    m.payload.length = payload.len() as u64;
    m.payload.digests = pack::digest_chunks(&Layout::cipher_chunks(m.payload.length), &payload);
    resigned(&m.encode(), &payload, &SecretKey::from_seed(&SEED_A))
}

fn build_encrypted() -> Vec<EncVector> {
    let enc1 = EncryptionSecretKey::from_seed(&SEED_ENC1).public();
    let enc2 = EncryptionSecretKey::from_seed(&SEED_ENC2).public();
    let enc3 = EncryptionSecretKey::from_seed(&[0xe5; 32]).public();
    let one = packed_encrypted(&[enc1], None);
    let mut out = vec![
        EncVector {
            file: "pass_encrypted_one_recipient.nns",
            bytes: one.clone(),
            verify: verdict(None),
            open: Open::Key("../keys/test-enc1.key"),
            load: verdict(None),
            note: "pass_signed_arch's model encrypted to test-enc1; signed by test-a",
        },
        EncVector {
            file: "pass_encrypted_three_recipients.nns",
            bytes: packed_encrypted(&[enc1, enc2, enc3], None),
            verify: verdict(None),
            open: Open::Key("../keys/test-enc2.key"),
            load: verdict(None),
            note: "encrypted to test-enc1, test-enc2 and a third key; opened with test-enc2 alone",
        },
        EncVector {
            file: "fail_encrypted_not_a_recipient.nns",
            bytes: packed_encrypted(&[enc2], None),
            verify: verdict(None),
            open: Open::Key("../keys/test-enc1.key"),
            load: verdict(Some((7, "not encrypted to key"))),
            note: "encrypted to test-enc2 only: verifies without a key, test-enc1 cannot open it",
        },
    ];
    let mut flipped = one.clone();
    let n = flipped.len();
    flipped[n - 20] ^= 1;
    out.push(EncVector {
        file: "fail_encrypted_ciphertext_flip.nns",
        bytes: flipped,
        verify: verdict(Some((5, "of the encrypted payload"))),
        open: Open::Key("../keys/test-enc1.key"),
        load: verdict(Some((5, "of the encrypted payload"))),
        note: "one ciphertext bit flipped: the signed digest catches it before any decryption",
    });
    let altered_recipient = {
        let (manifest, sigs, payload) = parts(&one);
        let m = Manifest::decode(&manifest).unwrap();
        let nnsign::format::RecipientEntry::X25519(x) =
            &m.encryption.as_ref().unwrap().recipients[0]
        else {
            unreachable!()
        };
        let at = manifest
            .windows(48)
            .position(|w| w == x.sealed.as_slice())
            .unwrap();
        let mut edited = manifest.clone();
        edited[at] ^= 1;
        assemble(&edited, sigs, &payload)
    };
    out.push(EncVector {
        file: "fail_encrypted_recipient_altered.nns",
        bytes: altered_recipient,
        verify: verdict(Some((4, "does not verify"))),
        open: Open::Key("../keys/test-enc1.key"),
        load: verdict(Some((4, "does not verify"))),
        note: "one bit of the recipient's sealed file key changed: the signature covers the recipients",
    });
    out.push(EncVector {
        file: "fail_encrypted_forged_ciphertext.nns",
        bytes: resealed_by_signer(&one, |c| c[10] ^= 1),
        verify: verdict(None),
        open: Open::Key("../keys/test-enc1.key"),
        load: verdict(Some((7, "encrypted chunk 0 failed authentication"))),
        note: "ciphertext altered, digests recomputed and re-signed by test-a: verifies, but does not decrypt",
    });
    let big = tensor("big", DType::U8, &[70_000], vec![7; 70_000]);
    let long = packed_encrypted(&[enc1], Some(big));
    out.push(EncVector {
        file: "fail_encrypted_truncated_stream.nns",
        bytes: resealed_by_signer(&long, |c| {
            let full = nnsign::crypto::STREAM_CHUNK + nnsign::crypto::TAG_LEN;
            c.truncate(c.len() / full * full);
        }),
        verify: verdict(None),
        open: Open::Key("../keys/test-enc1.key"),
        load: verdict(Some((7, "encrypted chunk 0 failed authentication"))),
        note: "a 2-chunk ciphertext cut to its first chunk and re-signed: the new last chunk lacks the last-chunk flag",
    });
    let pass = keys::Passphrase::new(PASSPHRASE.into());
    let by_passphrase = packed_sealed(
        pack::EncryptTo {
            recipients: Vec::new(),
            passphrase: Some((&pass, nnsign::crypto::ARGON2_MIN)),
        },
        None,
    );
    out.push(EncVector {
        file: "pass_encrypted_passphrase.nns",
        bytes: by_passphrase.clone(),
        verify: verdict(None),
        open: Open::Passphrase(PASSPHRASE),
        load: verdict(None),
        note: "pass_signed_arch's model encrypted with the passphrase (Argon2id m=19456, t=2, p=1); signed by test-a",
    });
    out.push(EncVector {
        file: "fail_encrypted_wrong_passphrase.nns",
        bytes: by_passphrase.clone(),
        verify: verdict(None),
        open: Open::Passphrase("correct horse battery stapler"),
        load: verdict(Some((7, "the passphrase does not open"))),
        note: "pass_encrypted_passphrase opened with a wrong passphrase",
    });
    let cheap = {
        let (manifest, _, payload) = parts(&by_passphrase);
        let mut m = Manifest::decode(&manifest).unwrap();
        let enc = m.encryption.as_mut().unwrap();
        let nnsign::format::RecipientEntry::Argon2id(r) = &mut enc.recipients[0] else {
            unreachable!()
        };
        r.m = 8;
        resigned(&m.encode(), &payload, &SecretKey::from_seed(&SEED_A))
    };
    out.push(EncVector {
        file: "fail_encrypted_passphrase_too_cheap.nns",
        bytes: cheap,
        verify: verdict(Some((5, "outside the accepted bounds"))),
        open: Open::Passphrase(PASSPHRASE),
        load: verdict(Some((5, "outside the accepted bounds"))),
        note: "pass_encrypted_passphrase with its Argon2id memory cut to 8 KiB and re-signed by test-a: a reader refuses to derive with costs below the floor",
    });
    out
}

fn vectors_dir() -> std::path::PathBuf {
    root().join("tests/vectors")
}

fn manifest_json(vectors: &[Vector], encrypted: &[EncVector]) -> String {
    let enc: Vec<serde_json::Value> = encrypted
        .iter()
        .map(|v| {
            let mut entry = json!({
                "file": v.file,
                "trust": ["../keys/test-a.pub"],
                "expect": v.verify,
                "expect_load": v.load,
                "note": v.note,
            });
            match v.open {
                Open::Key(k) => entry["decrypt_with"] = json!(k),
                Open::Passphrase(p) => entry["passphrase"] = json!(p),
            }
            entry
        })
        .collect();
    let list: Vec<serde_json::Value> = vectors
        .iter()
        .map(|v| {
            json!({
                "file": v.file,
                "trust": ["../keys/test-a.pub"],
                "allow_unsigned": v.allow_unsigned,
                "expect": v.expect,
                "note": v.note,
            })
        })
        .collect();
    serde_json::to_string_pretty(&json!({
        "about": "nnsign format v1 test vectors; see README.md. Paths are relative to this file.",
        "vectors": list,
        "encrypted": enc,
    }))
    .unwrap()
        + "\n"
}

#[test]
#[ignore = "writes tests/vectors and tests/keys; run after a deliberate format change"]
fn regenerate() {
    let dir = vectors_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let vectors = build();
    for v in &vectors {
        std::fs::write(dir.join(v.file), &v.bytes).unwrap();
    }
    let encrypted = build_encrypted();
    for v in &encrypted {
        std::fs::write(dir.join(v.file), &v.bytes).unwrap();
    }
    std::fs::write(
        dir.join("vectors.json"),
        manifest_json(&vectors, &encrypted),
    )
    .unwrap();
    let keys_dir = root().join("tests/keys");
    std::fs::create_dir_all(&keys_dir).unwrap();
    for (name, seed) in [("test-a", SEED_A), ("test-b", SEED_B)] {
        let key = SecretKey::from_seed(&seed);
        for ext in ["key", "pub"] {
            let _ = std::fs::remove_file(keys_dir.join(format!("{name}.{ext}")));
        }
        keys::write_pair(&keys_dir.join(name), &key, None).unwrap();
    }
    for (name, seed) in [("test-enc1", SEED_ENC1), ("test-enc2", SEED_ENC2)] {
        for ext in ["key", "pub"] {
            let _ = std::fs::remove_file(keys_dir.join(format!("{name}.{ext}")));
        }
        EncryptionSecretKey::from_seed(&seed)
            .write_pair(&keys_dir.join(name), None)
            .unwrap();
    }
}

#[test]
fn committed_vectors_are_what_the_code_builds() {
    let dir = vectors_dir();
    let vectors = build();
    for v in &vectors {
        let committed = std::fs::read(dir.join(v.file))
            .unwrap_or_else(|e| panic!("{}: {e} (regenerate, see the top of this file)", v.file));
        assert!(
            committed == v.bytes,
            "{} differs from what the code builds",
            v.file
        );
    }
    // The verdicts of the encrypted vectors are pinned too (their bytes are random).
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("vectors.json")).unwrap()).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&manifest_json(&vectors, &build_encrypted())).unwrap();
    assert_eq!(listed, expected);
    for (name, seed) in [("test-a", SEED_A), ("test-b", SEED_B)] {
        let key = keys::SecretKey::read(&test_key(&format!("{name}.key")), || Ok(None)).unwrap();
        assert_eq!(key.public(), SecretKey::from_seed(&seed).public());
    }
}

#[test]
fn every_vector_yields_its_expected_verdict() {
    let dir = vectors_dir();
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("vectors.json")).unwrap()).unwrap();
    let plain = listed["vectors"].as_array().unwrap();
    let encrypted = listed["encrypted"].as_array().unwrap();
    assert!(plain.len() >= 15 && encrypted.len() >= 7);
    for v in plain.iter().chain(encrypted) {
        let name = v["file"].as_str().unwrap();
        let file = dir.join(name).display().to_string();
        let trust = dir
            .join(v["trust"][0].as_str().unwrap())
            .display()
            .to_string();
        let mut args = vec![
            "verify".to_owned(),
            file.clone(),
            "--trust".into(),
            trust.clone(),
            "--json".into(),
        ];
        if v["allow_unsigned"].as_bool() == Some(true) {
            args.push("--allow-unsigned".into());
        }
        check_verdict(name, &nnsign(&args), &v["expect"]);
        let mut args = vec!["verify-load", &file, "--trust", &trust, "--json"];
        let key = v["decrypt_with"]
            .as_str()
            .map(|k| dir.join(k).display().to_string());
        let pass = v["passphrase"].as_str();
        match (&key, pass) {
            (Some(key), None) => args.extend(["--decrypt-with", key]),
            (None, Some(_)) => args.extend(["--passphrase-env", "NNSIGN_VECTOR_PASS"]),
            (None, None) => continue,
            (Some(_), Some(_)) => panic!("{name}: a key and a passphrase"),
        }
        check_verdict(
            &format!("{name} (verify-load)"),
            &nnsign_env(args, &[("NNSIGN_VECTOR_PASS", pass.unwrap_or(""))]),
            &v["expect_load"],
        );
    }
}

fn check_verdict(name: &str, run: &Run, expect: &serde_json::Value) {
    if expect["ok"].as_bool().unwrap() {
        assert_eq!(run.code, 0, "{name}: {run:?}");
        assert_eq!(run.json()["model"]["name"], "vector-model", "{name}");
    } else {
        assert_eq!(
            i64::from(run.code),
            expect["exit_code"].as_i64().unwrap(),
            "{name}: {run:?}"
        );
        let msg = run.json()["error"]["message"].as_str().unwrap().to_owned();
        let want = expect["message_contains"].as_str().unwrap();
        assert!(msg.contains(want), "{name}: {msg:?} lacks {want:?}");
    }
}

#[test]
fn unsigned_vector_is_refused_without_the_flag() {
    let run = nnsign([
        "verify".as_ref(),
        vectors_dir().join("pass_unsigned.nns").as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
    ]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("the artifact is unsigned"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--allow-unsigned"), "{}", run.stderr);
}

/// coset (google/coset), an independent COSE implementation, parses every signature of the
/// signed pass vectors and checks it over the detached manifest with its own Sig_structure.
#[test]
fn coset_verifies_our_cose_sign1() {
    use coset::{iana, TaggedCborSerializable};
    use ed25519_dalek::Verifier;
    let key = nnsign::keys::PublicKey::read(&test_key("test-a.pub")).unwrap();
    let mut checked = 0;
    for name in [
        "pass_signed.nns",
        "pass_signed_arch.nns",
        "pass_two_signers.nns",
    ] {
        let bytes = std::fs::read(vectors_dir().join(name)).unwrap();
        let len = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
        // Split the envelope with ciborium alone, not with nnsign's reader.
        let envelope: ciborium::value::Value = ciborium::from_reader(&bytes[16..16 + len]).unwrap();
        let items = envelope.as_array().unwrap();
        let manifest = items[0].as_bytes().unwrap();
        for sig in items[1].as_array().unwrap() {
            let mut raw = Vec::new();
            ciborium::into_writer(sig, &mut raw).unwrap();
            let sign1 = coset::CoseSign1::from_tagged_slice(&raw).unwrap();
            if sign1.protected.header.key_id != key.id().0 {
                continue; // test-b's signature in pass_two_signers
            }
            assert_eq!(
                sign1.protected.header.alg,
                Some(coset::RegisteredLabelWithPrivate::Assigned(
                    iana::Algorithm::Ed25519
                ))
            );
            assert!(sign1.payload.is_none(), "{name}: the payload is detached");
            sign1
                .verify_detached_signature(manifest, b"", |sig, data| {
                    let sig = ed25519_dalek::Signature::from_slice(sig)?;
                    key.verifying_key().verify(data, &sig)
                })
                .unwrap_or_else(|e| panic!("{name}: coset says {e}"));
            // And it round-trips byte for byte through coset's own encoder.
            assert_eq!(sign1.to_tagged_vec().unwrap(), raw);
            checked += 1;
        }
    }
    assert_eq!(checked, 3);
}
