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
    /// The file's bytes; for a `directory` vector, those of the README.md inside it.
    bytes: Vec<u8>,
    /// `null` for ok, else the exit code and a fragment of the message.
    expect: serde_json::Value,
    note: &'static str,
    allow_unsigned: bool,
    /// The verdict of `verify-load`, for vectors that verify but must not load.
    load: Option<serde_json::Value>,
    /// The vector is a directory, not a file.
    directory: bool,
    /// The shard files shipped beside it (FORMAT.md section 14): name and bytes.
    shards: Vec<(String, Vec<u8>)>,
}

fn v(file: &'static str, bytes: Vec<u8>, code: Option<(i32, &str)>, note: &'static str) -> Vector {
    Vector {
        file,
        bytes,
        expect: verdict(code),
        note,
        allow_unsigned: false,
        load: None,
        directory: false,
        shards: Vec::new(),
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
    out.extend(edge_cases(&a, &b, &manifest, &payload));
    out.extend(strict_ed25519(&a, &b, &manifest, &payload));
    out.extend(sharded(&a));
    out
}

/// Re-signs (by `key`) the manifest `manifest` after `edit` changed its CBOR value.
fn edited_value(
    key: &SecretKey,
    manifest: &[u8],
    payload: &[u8],
    edit: &dyn Fn(&mut Value),
) -> Vec<u8> {
    let mut value = nnsign::cbor::decode(manifest).unwrap();
    edit(&mut value);
    resigned(&nnsign::cbor::encode(&value).unwrap(), payload, key)
}

/// The first node of a graph's CBOR value.
fn first_node(graph: &mut Value) -> &mut Value {
    let Value::Array(nodes) = entry(graph, "nodes") else {
        panic!("nodes is not an array")
    };
    &mut nodes[0]
}

/// The entry `key` of a CBOR map (added as null if absent).
fn entry<'a>(map: &'a mut Value, key: &str) -> &'a mut Value {
    let Value::Map(entries) = map else {
        panic!("not a map: {map:?}")
    };
    if let Some(i) = entries.iter().position(|(k, _)| k.as_text() == Some(key)) {
        return &mut entries[i].1;
    }
    entries.push((Value::Text(key.into()), Value::Null));
    &mut entries.last_mut().unwrap().1
}

/// Where a second implementation of FORMAT.md could once read the text otherwise (issue 16):
/// each decision, pinned by a vector.
fn edge_cases(a: &SecretKey, b: &SecretKey, manifest: &[u8], payload: &[u8]) -> Vec<Vector> {
    let mut out = Vec::new();
    let model = |edit: &dyn Fn(&mut format::ModelInfo)| {
        resigned(
            &manifest_for(|m| edit(&mut m.model), payload, manifest),
            payload,
            a,
        )
    };
    // Versions: MAJOR.MINOR.PATCH are unsigned 64-bit; pre-release numbers are unbounded.
    out.push(v(
        "fail_version_component_too_large.nns",
        model(&|m| m.version = Some("18446744073709551616.0.0".into())),
        Some((5, "is not a semantic version")),
        "version 18446744073709551616.0.0: MAJOR, MINOR and PATCH are at most 2^64 - 1",
    ));
    out.push(v(
        "pass_version_largest_components.nns",
        model(&|m| {
            m.version = Some(
                "18446744073709551615.18446744073709551615.18446744073709551615-18446744073709551616"
                    .into(),
            )
        }),
        None,
        "MAJOR, MINOR and PATCH of 2^64 - 1, and a numeric pre-release identifier of 2^64 (not bounded)",
    ));
    // Text: limits and the refused characters.
    out.push(v(
        "fail_label_key_too_long.nns",
        model(&|m| {
            m.labels
                .insert("k".repeat(format::MAX_NAME_LEN + 1), "v".into());
        }),
        Some((5, "label key is 1025 bytes")),
        "a label key of 1025 bytes: label keys are one-line text of at most MAX_NAME_LEN bytes",
    ));
    out.push(v(
        "pass_label_key_longest.nns",
        model(&|m| {
            m.labels
                .insert("k".repeat(format::MAX_NAME_LEN), "v".into());
        }),
        None,
        "a label key of MAX_NAME_LEN (1024) bytes",
    ));
    out.push(v(
        "fail_parent_name_newline.nns",
        model(&|m| {
            m.parent = Some(format::Parent {
                digest: vec![7; 32],
                name: "vector-model\nverified: ok".into(),
                version: None,
            })
        }),
        Some((5, "parent model name")),
        "a newline in parent.name, which is one-line text",
    ));
    out.push(v(
        "fail_line_separator_in_name.nns",
        model(&|m| m.name = "vector\u{2028}model".into()),
        Some((5, "U+2028 is refused")),
        "U+2028 LINE SEPARATOR in the model name",
    ));
    out.push(v(
        "fail_paragraph_separator_in_description.nns",
        model(&|m| m.description = Some("nnsign\u{2029}test vector".into())),
        Some((5, "U+2029 is refused")),
        "U+2029 PARAGRAPH SEPARATOR in the description: multi-line text breaks lines with U+000A alone",
    ));
    out.push(v(
        "fail_arabic_letter_mark_in_label.nns",
        model(&|m| {
            m.labels
                .insert("purpose".into(), "test\u{061C}-vector".into());
        }),
        Some((5, "U+061C is refused")),
        "U+061C ARABIC LETTER MARK (a bidirectional control) in a label value",
    ));
    // crit, in the manifest and in a protected header.
    out.push(v(
        "fail_crit_manifest_duplicate.nns",
        edited_value(a, manifest, payload, &|m| {
            *entry(m, "crit") = Value::Array(vec![
                Value::Text("format".into()),
                Value::Text("format".into()),
            ])
        }),
        Some((5, "crit lists \"format\" twice")),
        "the manifest's crit lists \"format\" twice",
    ));
    out.push(v(
        "fail_crit_manifest_absent_field.nns",
        edited_value(a, manifest, payload, &|m| {
            *entry(m, "crit") = Value::Array(vec![Value::Text("arch".into())])
        }),
        Some((5, "crit lists \"arch\", which the manifest does not have")),
        "the manifest's crit lists \"arch\", which a weights-only manifest does not have",
    ));
    let int = |i: i64| Value::Integer(i.into());
    let header = |alg: i64, pk: Option<&[u8; 32]>, kid: &[u8], crit: Vec<Value>| {
        let mut map = vec![
            (int(1), int(alg)),
            (int(3), Value::Text(signature::CONTENT_TYPE.into())),
            (int(4), Value::Bytes(kid.to_vec())),
        ];
        if let Some(pk) = pk {
            map.push((int(-65537), Value::Bytes(pk.to_vec())));
        }
        if !crit.is_empty() {
            map.push((int(2), Value::Array(crit)));
        }
        nnsign::cbor::encode(&Value::Map(map)).unwrap()
    };
    let pa = a.public();
    out.push(v(
        "fail_crit_header_duplicate.nns",
        assemble(
            manifest,
            vec![signature::sign_with_header(
                a,
                header(-19, Some(&pa.raw()), &pa.id().0, vec![int(4), int(4)]),
                manifest,
            )],
            payload,
        ),
        Some((4, "crit lists label 4 twice")),
        "test-a's protected header with crit [4, 4]",
    ));
    out.push(v(
        "fail_crit_header_absent_label.nns",
        assemble(
            manifest,
            vec![
                signature::sign(a, manifest),
                format::RawSignature {
                    protected: header(-7, None, &[0x5a; 8], vec![int(-65537)]),
                    signature: vec![0; 64],
                },
            ],
            payload,
        ),
        Some((4, "which the protected header does not hold")),
        "a valid test-a signature plus an ES256 one whose crit lists -65537, which its header lacks",
    ));
    out.push(v(
        "fail_empty_protected_header.nns",
        assemble(
            manifest,
            vec![
                signature::sign(a, manifest),
                format::RawSignature {
                    protected: Vec::new(),
                    signature: Vec::new(),
                },
            ],
            payload,
        ),
        Some((5, "protected header is empty")),
        "a valid test-a signature plus one whose protected header is h'': the CDDL's .size (1..MAX_PROTECTED_LEN) makes it a malformed envelope",
    ));
    // A co-signature whose alg was changed from -19 to -20 (one bit): unsupported, not counted.
    let altered = {
        let mut sig = signature::sign(b, manifest);
        assert_eq!(&sig.protected[..3], &[0xa4, 0x01, 0x32]);
        sig.protected[2] = 0x33;
        sig
    };
    let mut warned = v(
        "pass_cosignature_unsupported_alg.nns",
        assemble(
            manifest,
            vec![signature::sign(a, manifest), altered],
            payload,
        ),
        None,
        "signed by test-a, and by test-b with its alg then changed from -19 to -20 (one bit): the second is unsupported, counts for nothing, and must be reported",
    );
    warned.expect["warning_contains"] = json!("uses COSE algorithm -20");
    out.push(warned);
    // BOOL elements.
    let mut bools = payload.to_vec();
    bools[1] = 2; // flag is at payload offset 0
    out.push(v(
        "fail_bool_not_0_or_1.nns",
        resigned(&manifest_for(|_| {}, &bools, manifest), &bools, a),
        Some((5, "is BOOL but holds the byte 0x02")),
        "tensor flag (BOOL) holds 01 02 01, digests recomputed and signed",
    ));
    // The architecture: its CDDL is checked by verify, the schema's meaning by load.
    let arch_signed = packed(Some(a), true);
    let (arch_manifest, _, arch_payload) = parts(&arch_signed);
    let arch = |edit: &dyn Fn(&mut Value)| {
        edited_value(a, &arch_manifest, &arch_payload, &|m| {
            edit(entry(m, "arch"))
        })
    };
    out.push(v(
        "fail_arch_not_a_map.nns",
        arch(&|g| *g = int(5)),
        Some((5, "expected map")),
        "arch is the integer 5",
    ));
    out.push(v(
        "fail_arch_unknown_key.nns",
        arch(&|g| *entry(g, "license") = Value::Text("MIT".into())),
        Some((5, "has the unknown key \"license\"")),
        "the graph map has a key the CDDL does not list",
    ));
    out.push(v(
        "fail_arch_byte_string.nns",
        arch(&|g| *entry(first_node(g), "op") = Value::Bytes(b"Dense".to_vec())),
        Some((5, "nodes[0].op is not a text string")),
        "a node's op is the byte string h'44656e7365' (\"Dense\" as bytes), not text",
    ));
    out.push(v(
        "fail_arch_attribute_out_of_range.nns",
        arch(&|g| {
            let big = Value::Integer((1u64 << 63).into());
            *entry(entry(first_node(g), "attrs"), "units") = big;
        }),
        Some((5, "outside the signed 64-bit range")),
        "an attribute integer of 2^63: attribute integers are signed 64-bit",
    ));
    let mut schema = v(
        "pass_arch_schema_invalid.nns",
        arch(&|g| *entry(g, "opset") = int(99)),
        None,
        "the architecture declares op-set 99: it matches FORMAT.md's CDDL, so it verifies; the schema (docs/SCHEMA.md) refuses it when loaded (verify-load: exit 6)",
    );
    schema.load = Some(verdict(Some((6, "op-set 99"))));
    out.push(schema);
    let mut directory = v(
        "fail_not_a_regular_file",
        b"This directory is a test vector: an artifact path that names no regular file (a\n\
          directory, here; a pipe or a device such as /dev/null likewise) is an I/O failure,\n\
          exit 3 (docs/FORMAT.md section 8, step 1).\n"
            .to_vec(),
        Some((3, "not a regular file")),
        "a directory (a device such as /dev/null likewise): not a regular file, exit 3",
    );
    directory.directory = true;
    out.push(directory);
    out
}

/// L, the order of the Ed25519 base point, little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The neutral element (0, 1) written with y = p + 1 = 2^255 - 18, a y-coordinate of p or
/// more: the same point as `01 00 .. 00` to a lenient decoder.
const IDENTITY_Y_PLUS_P: [u8; 32] = {
    let mut b = [0xff; 32];
    b[0] = 0xee;
    b[31] = 0x7f;
    b
};

/// The neutral element with the sign bit set although x = 0.
const IDENTITY_NEGATIVE_ZERO: [u8; 32] = {
    let mut b = [0; 32];
    b[0] = 1;
    b[31] = 0x80;
    b
};

/// An Ed25519 signature made by hand, so that it breaks exactly one strict rule of FORMAT.md
/// section 4, rule 4 while the equation a lenient verifier checks holds.
mod ed25519_by_hand {
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::Scalar;
    use sha2::{Digest, Sha512};

    /// The secret scalar of an RFC 8032 seed (section 5.1.5: the first half of SHA-512 of the
    /// seed, clamped).
    pub fn secret_scalar(seed: &[u8; 32]) -> Scalar {
        let h = Sha512::digest(seed);
        let mut a: [u8; 32] = h[..32].try_into().unwrap();
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        Scalar::from_bytes_mod_order(a)
    }

    /// k = SHA-512(R || A || M) mod L.
    pub fn challenge(r: &[u8; 32], a: &[u8; 32], m: &[u8]) -> Scalar {
        let h = Sha512::new()
            .chain_update(r)
            .chain_update(a)
            .chain_update(m);
        Scalar::from_bytes_mod_order_wide(&h.finalize().into())
    }

    /// The i-th deterministic nonce r and its commitment [r]B.
    pub fn nonce(i: u32) -> (Scalar, [u8; 32]) {
        let h = Sha512::new()
            .chain_update(b"nnsign test vector nonce")
            .chain_update(i.to_le_bytes());
        let r = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        (r, EdwardsPoint::mul_base(&r).compress().to_bytes())
    }

    pub fn point(bytes: &[u8; 32]) -> EdwardsPoint {
        CompressedEdwardsY(*bytes).decompress().unwrap()
    }

    /// R || S.
    pub fn join(r: &[u8; 32], s: &[u8; 32]) -> Vec<u8> {
        [&r[..], &s[..]].concat()
    }
}

/// The strict Ed25519 rules (FORMAT.md section 4, rule 4), one vector each. Every one carries a
/// valid test-a signature first, and then a signature by another key that a lenient verifier
/// would accept (as valid, and untrusted, so that the artifact would pass): a strict one finds
/// it invalid, which makes the whole artifact invalid (exit 4).
fn strict_ed25519(a: &SecretKey, b: &SecretKey, manifest: &[u8], payload: &[u8]) -> Vec<Vector> {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::{EdwardsPoint, Scalar};
    use ed25519_by_hand::*;
    let int = |i: i64| Value::Integer(i.into());
    let header = |pk: &[u8; 32]| {
        let map = Value::Map(vec![
            (int(1), int(-19)),
            (int(3), Value::Text(signature::CONTENT_TYPE.into())),
            (int(4), Value::Bytes(keys::KeyId::of(pk).0.to_vec())),
            (int(-65537), Value::Bytes(pk.to_vec())),
        ]);
        nnsign::cbor::encode(&map).unwrap()
    };
    // The artifact with test-a's signature and one made by `make` from (protected, message).
    let cosigned = |pk: &[u8; 32], make: &dyn Fn(&[u8]) -> Vec<u8>| {
        let protected = header(pk);
        let message = signature::sig_structure(&protected, manifest);
        let signature = make(&message);
        assemble(
            manifest,
            vec![
                signature::sign(a, manifest),
                format::RawSignature {
                    protected,
                    signature,
                },
            ],
            payload,
        )
    };
    let pb = b.public().raw();
    let sb = secret_scalar(&SEED_B);
    // A signature with R = [r]B and S = r + k * secret, from the first nonce whose k
    // satisfies `want`.
    let sign_with =
        |pk: &[u8; 32], secret: Scalar, message: &[u8], want: &dyn Fn(&Scalar) -> bool| {
            (0..)
                .find_map(|i| {
                    let (r, big_r) = nonce(i);
                    let k = challenge(&big_r, pk, message);
                    want(&k).then(|| join(&big_r, &(r + k * secret).to_bytes()))
                })
                .unwrap()
        };
    // Whether [k]T = O for T of order 8.
    let kills_torsion = |k: &Scalar| k.to_bytes()[0] & 7 == 0;
    let mut out = Vec::new();
    let with_s_plus_l = {
        let mut sig = signature::sign(b, manifest);
        // S + L: the same scalar mod L, so [S]B does not change; fits in 253 bits.
        let mut carry = 0u16;
        for (s, l) in sig.signature[32..].iter_mut().zip(ED25519_L) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        assemble(manifest, vec![signature::sign(a, manifest), sig], payload)
    };
    out.push(v(
        "fail_ed25519_s_not_canonical.nns",
        with_s_plus_l,
        Some((4, "its S is not below the group order L")),
        "test-a's signature, and test-b's with S replaced by S + L (the same point [S]B; refused since S >= L)",
    ));
    let t8 = EIGHT_TORSION[1];
    // Of order 8 exactly: [4]T is not the neutral element.
    assert!(t8.is_small_order() && t8 + t8 + t8 + t8 != EdwardsPoint::default());
    let small = t8.compress().to_bytes();
    out.push(v(
        "fail_ed25519_small_order_key.nns",
        cosigned(&small, &|m| sign_with(&small, Scalar::ZERO, m, &kills_torsion)),
        Some((4, "public key is a point of small order")),
        "test-a's signature, and one by a key of order 8 with R = [r]B, S = r, where 8 divides k: [S]B = R + [k]A holds",
    ));
    out.push(v(
        "fail_ed25519_key_not_canonical.nns",
        cosigned(&IDENTITY_Y_PLUS_P, &|m| sign_with(&IDENTITY_Y_PLUS_P, Scalar::ZERO, m, &|_| true)),
        Some((4, "public key is not a canonical encoding")),
        "test-a's signature, and one by the neutral element written with y = p + 1 (ee ff .. ff 7f), R = [r]B, S = r",
    ));
    out.push(v(
        "fail_ed25519_key_negative_zero.nns",
        cosigned(&IDENTITY_NEGATIVE_ZERO, &|m| {
            sign_with(&IDENTITY_NEGATIVE_ZERO, Scalar::ZERO, m, &|_| true)
        }),
        Some((4, "public key is not a canonical encoding")),
        "test-a's signature, and one by the neutral element written with x = 0 and the sign bit set (01 00 .. 00 80), R = [r]B, S = r",
    ));
    // R of small order, or written non-canonically: R = O, S = k * b, by test-b's real key.
    let r_is = |big_r: [u8; 32]| {
        move |m: &[u8]| {
            let k = challenge(&big_r, &pb, m);
            join(&big_r, &(k * sb).to_bytes())
        }
    };
    let identity = EdwardsPoint::default().compress().to_bytes();
    out.push(v(
        "fail_ed25519_small_order_r.nns",
        cosigned(&pb, &r_is(identity)),
        Some((4, "its R is a point of small order")),
        "test-a's signature, and test-b's key with R = the neutral element (01 00 .. 00) and S = k * b: [S]B = R + [k]A holds",
    ));
    out.push(v(
        "fail_ed25519_r_not_canonical.nns",
        cosigned(&pb, &r_is(IDENTITY_Y_PLUS_P)),
        Some((4, "its R is not a canonical encoding")),
        "as fail_ed25519_small_order_r, with R written with y = p + 1 (ee ff .. ff 7f)",
    ));
    out.push(v(
        "fail_ed25519_r_negative_zero.nns",
        cosigned(&pb, &r_is(IDENTITY_NEGATIVE_ZERO)),
        Some((4, "its R is not a canonical encoding")),
        "as fail_ed25519_small_order_r, with R written with x = 0 and the sign bit set (01 00 .. 00 80)",
    ));
    // A key with a torsion component: A = [b]B + T, T of order 8. Not of small order, so the
    // equation decides, checked without the cofactor.
    let mixed = (point(&pb) + t8).compress().to_bytes();
    out.push(v(
        "fail_ed25519_cofactored_only.nns",
        cosigned(&mixed, &|m| sign_with(&mixed, sb, m, &|k| !kills_torsion(k))),
        Some((4, "the manifest or the signature was changed after signing")),
        "test-a's signature, and one under A = [b]B + T (T of order 8) with S = r + k * b, where 8 does not divide k: [8][S]B = [8]R + [8][k]A holds, [S]B = R + [k]A does not",
    ));
    out.push(v(
        "pass_ed25519_torsion_key.nns",
        cosigned(&mixed, &|m| sign_with(&mixed, sb, m, &kills_torsion)),
        None,
        "test-a's signature, and one under A = [b]B + T (T of order 8, so A is not of small order) where 8 divides k: [S]B = R + [k]A holds, so it is valid",
    ));
    out
}

/// The files FORMAT.md section 14 names after the vector `file` for these shards, in order.
fn shard_files(file: &str, shards: Vec<Vec<u8>>) -> Vec<(String, Vec<u8>)> {
    let n = shards.len();
    (shards.into_iter().enumerate())
        .map(|(k, bytes)| {
            let path = format::shard_path(std::path::Path::new(file), k + 1, n);
            let name = path.to_str().expect("vector names are ASCII").to_owned();
            (name, bytes)
        })
        .collect()
}

/// `pack --shard-size`: the bytes of the header file and of each shard, in order.
fn packed_sharded(input: PackInput<'_>, shard_size: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.nns");
    let packed = pack::pack_sharded(input, &out, Some(shard_size), &|_| {}).unwrap();
    let shards = (packed.shards.iter())
        .map(|(path, _)| std::fs::read(path).unwrap())
        .collect();
    (std::fs::read(out).unwrap(), shards)
}

/// A vector whose payload is in shard files beside it.
fn sharded_v(
    file: &'static str,
    header: Vec<u8>,
    shards: Vec<Vec<u8>>,
    code: Option<(i32, &str)>,
    note: &'static str,
) -> Vector {
    Vector {
        shards: shard_files(file, shards),
        ..v(file, header, code, note)
    }
}

/// `payload` cut into pieces of these lengths, the last one filled up with zero bytes if the
/// lengths add up to more.
fn cut(payload: &[u8], lengths: &[usize]) -> Vec<Vec<u8>> {
    let mut padded = payload.to_vec();
    padded.resize(lengths.iter().sum::<usize>().max(payload.len()), 0);
    let mut rest = &padded[..];
    (lengths.iter())
        .map(|&n| {
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            piece.to_vec()
        })
        .collect()
}

/// Sharded payloads (FORMAT.md section 14). Only `pass_sharded` splits a tensor between
/// shards, which takes a segment of more than one 4 MiB chunk; the others are cut between
/// pass_signed's small tensors, whose 64-byte segments are one chunk each, so that they stay a
/// few hundred bytes.
fn sharded(a: &SecretKey) -> Vec<Vector> {
    let input = |tensors| PackInput {
        model: model_info(),
        arch: None,
        tensors,
        signer: Some(a),
        encrypt: None,
    };
    let mut out = Vec::new();
    // "head" sorts between "flag" and "idx"; one byte over a chunk, its segment is two chunks.
    let n = format::CHUNK_SIZE as usize + 1;
    let head = (0..n).map(|i| (i % 251) as u8).collect();
    let mut t = tensors();
    t.push(tensor("head", DType::U8, &[n as u64], head));
    let (header, shards) = packed_sharded(input(t), format::CHUNK_SIZE);
    let lengths: Vec<usize> = shards.iter().map(Vec::len).collect();
    assert_eq!(lengths, [64, format::CHUNK_SIZE as usize, 192]);
    out.push(sharded_v(
        "pass_sharded.nns",
        header,
        shards,
        None,
        "pass_signed's tensors and head (U8 [4194305], bytes i mod 251), packed with 4 MiB shards: shard 1 holds flag (64 bytes), shard 2 the first chunk of head (4194304), shard 3 head's last byte and padding, idx and w (192); signed by test-a",
    ));

    let (header, shards) = packed_sharded(input(tensors()), 64);
    assert_eq!(shards.iter().map(Vec::len).collect::<Vec<_>>(), [64; 3]);
    out.push(sharded_v(
        "pass_sharded_tensor_per_shard.nns",
        header.clone(),
        shards.clone(),
        None,
        "pass_signed's tensors in three 64-byte shards, one segment each (flag, idx, w); the header file ends at H; signed by test-a",
    ));
    let with = |edit: &dyn Fn(&mut Vec<Vec<u8>>)| {
        let mut s = shards.clone();
        edit(&mut s);
        s
    };
    let mut missing = sharded_v(
        "fail_shard_missing.nns",
        header.clone(),
        shards.clone(),
        Some((5, "shard 2 of 3 is missing")),
        "pass_sharded_tensor_per_shard without its shard 2 (only shards 1 and 3 are shipped)",
    );
    missing.shards.remove(1);
    out.push(missing);
    out.push(sharded_v(
        "fail_shard_truncated.nns",
        header.clone(),
        with(&|s| {
            s[2].pop();
        }),
        Some((5, "has 63 bytes, the signed manifest says 64")),
        "pass_sharded_tensor_per_shard with the last byte of shard 3 removed",
    ));
    out.push(sharded_v(
        "fail_shard_extended.nns",
        header.clone(),
        with(&|s| s[2].push(0)),
        Some((5, "has 65 bytes, the signed manifest says 64")),
        "pass_sharded_tensor_per_shard with one zero byte appended to shard 3",
    ));
    out.push(sharded_v(
        "fail_shards_swapped.nns",
        header.clone(),
        with(&|s| s.swap(0, 1)),
        Some((5, "in shard 1 of 3")),
        "pass_sharded_tensor_per_shard with shards 1 (flag) and 2 (idx) exchanged: both are 64 bytes, so every length is right",
    ));
    out.push(sharded_v(
        "fail_shard_duplicated.nns",
        header.clone(),
        with(&|s| s[2] = s[1].clone()),
        Some((5, "in shard 3 of 3")),
        "pass_sharded_tensor_per_shard with shard 3 (w) replaced by a copy of shard 2 (idx)",
    ));
    out.push(sharded_v(
        "fail_shard_byte_changed.nns",
        header.clone(),
        with(&|s| s[2][2] ^= 1),
        Some((5, "in shard 3 of 3")),
        "pass_sharded_tensor_per_shard with one bit flipped in shard 3 (tensor w)",
    ));

    // Manifests that break a rule of section 14, re-signed by test-a, with shard files of the
    // lengths they declare holding the payload's bytes: a reader that skips the rule and reads
    // each chunk from wherever the lengths put it would accept them.
    let (manifest, _, _) = parts(&header);
    let payload = shards.concat();
    let recut = |edit: &dyn Fn(&mut Manifest)| {
        let mut m = Manifest::decode(&manifest).unwrap();
        edit(&mut m);
        resigned(&m.encode(), &[], a)
    };
    let lengths = |l: &'static [u64]| move |m: &mut Manifest| m.payload.shards = Some(l.to_vec());
    let pieces = |l: &[u64]| cut(&payload, &l.iter().map(|&n| n as usize).collect::<Vec<_>>());
    for (file, l, says, note) in [
        (
            "fail_shard_not_at_chunk_start.nns",
            &[64, 66, 62][..],
            "shard 3 starts at payload offset 130, which is not the start of a digest chunk",
            "payload.shards [64, 66, 62]: shard 3 starts at payload offset 130, inside w's chunk [128, 192), so that chunk spans two files",
        ),
        (
            "fail_shard_lengths_exceed_payload.nns",
            &[64, 64, 128],
            "shard 3 ends past the payload's 192 bytes",
            "payload.shards [64, 64, 128] adds up to 256, payload.length is 192; shard 3 holds w's segment and 64 zero bytes",
        ),
        (
            "fail_shard_zero_length.nns",
            &[64, 0, 64, 64],
            "shard 2 is empty",
            "payload.shards [64, 0, 64, 64]: four shards, the second an empty file",
        ),
    ] {
        out.push(sharded_v(file, recut(&lengths(l)), pieces(l), Some((5, says)), note));
    }
    out.push(v(
        "fail_shards_empty_array.nns",
        {
            let mut m = Manifest::decode(&manifest).unwrap();
            m.payload.shards = Some(Vec::new());
            resigned(&m.encode(), &payload, a)
        },
        Some((5, "0 shards; a sharded payload has 1 to 65536")),
        "payload.shards is [], and the payload follows the header as if the field were absent",
    ));
    out.push(sharded_v(
        "fail_shards_zero_length_payload.nns",
        recut(&|m| {
            m.tensors.clear();
            m.payload.length = 0;
            m.payload.digests.clear();
            m.payload.shards = Some(vec![64]);
        }),
        vec![vec![0; 64]],
        Some((5, "an empty payload has no shards")),
        "no tensor, payload.length 0 (no chunk), and payload.shards [64] with one shard of 64 zero bytes: a payload of length 0 has no shards",
    ));
    out.push(sharded_v(
        "fail_sharded_header_with_payload.nns",
        [&header[..], &payload].concat(),
        shards.clone(),
        Some((5, "192 unexpected bytes after the header")),
        "pass_sharded_tensor_per_shard, its header file followed by the whole payload too: a sharded artifact's file ends at H",
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
    /// The plain vector that holds the same model, if any.
    model_of: Option<&'static str>,
    /// The shard files shipped beside it: name and bytes (random too).
    shards: Vec<(String, Vec<u8>)>,
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
    pack::pack(
        sealed_input(to, extra, &SecretKey::from_seed(&SEED_A)),
        &out,
        &|_| {},
    )
    .unwrap();
    std::fs::read(out).unwrap()
}

/// pass_signed_arch's model (and `extra`), encrypted to `to` and signed by `signer`.
fn sealed_input<'a>(
    to: pack::EncryptTo<'a>,
    extra: Option<SourceTensor>,
    signer: &'a SecretKey,
) -> PackInput<'a> {
    let mut t = tensors();
    t.extend(extra);
    PackInput {
        model: model_info(),
        arch: Some(nnsign::model::Graph::from_json(ARCH).unwrap()),
        tensors: t,
        signer: Some(signer),
        encrypt: Some(to),
    }
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
            model_of: Some("pass_signed_arch.nns"),
            shards: Vec::new(),
        },
        EncVector {
            file: "pass_encrypted_three_recipients.nns",
            bytes: packed_encrypted(&[enc1, enc2, enc3], None),
            verify: verdict(None),
            open: Open::Key("../keys/test-enc2.key"),
            load: verdict(None),
            note: "encrypted to test-enc1, test-enc2 and a third key; opened with test-enc2 alone",
            model_of: Some("pass_signed_arch.nns"),
            shards: Vec::new(),
        },
        EncVector {
            file: "fail_encrypted_not_a_recipient.nns",
            bytes: packed_encrypted(&[enc2], None),
            verify: verdict(None),
            open: Open::Key("../keys/test-enc1.key"),
            load: verdict(Some((7, "not encrypted to key"))),
            note: "encrypted to test-enc2 only: verifies without a key, test-enc1 cannot open it",
            model_of: None,
            shards: Vec::new(),
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
        model_of: None,
        shards: Vec::new(),
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
        model_of: None,
        shards: Vec::new(),
    });
    out.push(EncVector {
        file: "fail_encrypted_forged_ciphertext.nns",
        bytes: resealed_by_signer(&one, |c| c[10] ^= 1),
        verify: verdict(None),
        open: Open::Key("../keys/test-enc1.key"),
        load: verdict(Some((7, "encrypted chunk 0 failed authentication"))),
        note: "ciphertext altered, digests recomputed and re-signed by test-a: verifies, but does not decrypt",
        model_of: None,
        shards: Vec::new(),
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
        model_of: None,
        shards: Vec::new(),
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
        model_of: Some("pass_signed_arch.nns"),
        shards: Vec::new(),
    });
    out.push(EncVector {
        file: "fail_encrypted_wrong_passphrase.nns",
        bytes: by_passphrase.clone(),
        verify: verdict(None),
        open: Open::Passphrase("correct horse battery stapler"),
        load: verdict(Some((7, "the passphrase does not open"))),
        note: "pass_encrypted_passphrase opened with a wrong passphrase",
        model_of: None,
        shards: Vec::new(),
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
        model_of: None,
        shards: Vec::new(),
    });
    // The zero padding after the inner manifest is there even when no raw payload follows.
    let header = format::InnerManifest {
        tensors: Vec::new(),
        length: 0,
        arch: None,
    }
    .header_block();
    out.push(EncVector {
        file: "pass_encrypted_no_tensors.nns",
        bytes: sealed_plaintext(&header),
        verify: verdict(None),
        open: Open::Key("../keys/test-enc1.key"),
        load: verdict(None),
        note: "no tensor, no architecture: the plaintext is u32be(M), the inner manifest and zero padding to 64 bytes, and nothing after it",
        model_of: None,
        shards: Vec::new(),
    });
    let m = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    out.push(EncVector {
        file: "fail_encrypted_unpadded_empty_payload.nns",
        bytes: sealed_plaintext(&header[..4 + m]),
        verify: verdict(None),
        open: Open::Key("../keys/test-enc1.key"),
        load: verdict(Some((5, "shorter than its header"))),
        note: "as pass_encrypted_no_tensors, with the plaintext ending right after the inner manifest: the padding to align(4 + M, 64) is missing",
        model_of: None,
        shards: Vec::new(),
    });
    let (manifest, _, payload) = parts(&packed(Some(&SecretKey::from_seed(&SEED_A)), false));
    let mut bools = format::InnerManifest {
        tensors: Manifest::decode(&manifest).unwrap().tensors,
        length: payload.len() as u64,
        arch: None,
    }
    .header_block();
    let flag_at = bools.len(); // flag is first in the raw payload
    bools.extend_from_slice(&payload);
    bools[flag_at + 1] = 2;
    out.push(EncVector {
        file: "fail_encrypted_bool_not_0_or_1.nns",
        bytes: sealed_plaintext(&bools),
        verify: verdict(None),
        open: Open::Key("../keys/test-enc1.key"),
        load: verdict(Some((5, "is BOOL but holds the byte 0x02"))),
        note: "pass_signed's tensors encrypted with flag (BOOL) holding 01 02 01: verifies without a key, refused once decrypted",
        model_of: None,
        shards: Vec::new(),
    });
    // Shard boundaries fall on ENC_CHUNK_SIZE chunk starts: a second shard would take a
    // ciphertext of more than 4 MiB, so this one has a single shard.
    let signer = SecretKey::from_seed(&SEED_A);
    let to = pack::EncryptTo {
        recipients: vec![enc1],
        passphrase: None,
    };
    let (header, shards) = packed_sharded(sealed_input(to, None, &signer), format::CHUNK_SIZE);
    assert_eq!(shards.len(), 1);
    out.push(EncVector {
        file: "pass_encrypted_sharded.nns",
        bytes: header,
        verify: verdict(None),
        open: Open::Key("../keys/test-enc1.key"),
        load: verdict(None),
        note: "pass_signed_arch's model encrypted to test-enc1, its ciphertext (one digest chunk) in one shard file beside a header file that ends at H; signed by test-a",
        model_of: Some("pass_signed_arch.nns"),
        shards: shard_files("pass_encrypted_sharded.nns", shards),
    });
    out
}

/// An artifact whose encrypted payload is exactly `plaintext` (to test-enc1, signed by test-a),
/// for plaintexts that `pack` never writes.
fn sealed_plaintext(plaintext: &[u8]) -> Vec<u8> {
    use nnsign::crypto::{self, FileKey, PayloadCipher};
    let enc1 = EncryptionSecretKey::from_seed(&SEED_ENC1).public();
    let file_key = FileKey::generate().unwrap();
    let nonce = [0x5e; 16];
    let encryption =
        format::EncryptionInfo::new(nonce, &[crypto::wrap_x25519(&file_key, &enc1).unwrap()]);
    let model = model_info();
    let ad = format::encryption_ad(&model, &encryption);
    let ciphertext = PayloadCipher::new(&file_key, &nonce, &ad)
        .encrypt(plaintext)
        .unwrap();
    let length = ciphertext.len() as u64;
    let manifest = Manifest {
        format: format::MANIFEST_FORMAT,
        model,
        payload: format::PayloadInfo {
            encoding: format::ENCODING_STREAM.into(),
            length,
            chunk_size: format::ENC_CHUNK_SIZE,
            digests: pack::digest_chunks(&Layout::cipher_chunks(length), &ciphertext),
            shards: None,
        },
        tensors: Vec::new(),
        arch: None,
        encryption: Some(encryption),
        crit: vec!["encryption".into()],
    };
    resigned(
        &manifest.encode(),
        &ciphertext,
        &SecretKey::from_seed(&SEED_A),
    )
}

fn vectors_dir() -> std::path::PathBuf {
    root().join("tests/vectors")
}

fn shard_names(shards: &[(String, Vec<u8>)]) -> serde_json::Value {
    json!(shards.iter().map(|(name, _)| name).collect::<Vec<_>>())
}

/// The shard files in tests/vectors, by name.
fn committed_shards() -> std::collections::BTreeSet<String> {
    (std::fs::read_dir(vectors_dir()).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".nnshard"))
        .collect()
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
            if let Some(model) = v.model_of {
                entry["model_of"] = json!(model);
            }
            if !v.shards.is_empty() {
                entry["shards"] = shard_names(&v.shards);
            }
            entry
        })
        .collect();
    let list: Vec<serde_json::Value> = vectors
        .iter()
        .map(|v| {
            let mut entry = json!({
                "file": v.file,
                "trust": ["../keys/test-a.pub"],
                "allow_unsigned": v.allow_unsigned,
                "expect": v.expect,
                "note": v.note,
            });
            if let Some(load) = &v.load {
                entry["expect_load"] = load.clone();
            }
            if v.directory {
                entry["directory"] = json!(true);
            }
            if !v.shards.is_empty() {
                entry["shards"] = shard_names(&v.shards);
            }
            entry
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
    // A stale shard would be found by name: fail_shard_missing must stay without its shard 2.
    for name in committed_shards() {
        std::fs::remove_file(dir.join(name)).unwrap();
    }
    let vectors = build();
    for v in &vectors {
        if v.directory {
            std::fs::create_dir_all(dir.join(v.file)).unwrap();
            std::fs::write(dir.join(v.file).join("README.md"), &v.bytes).unwrap();
        } else {
            std::fs::write(dir.join(v.file), &v.bytes).unwrap();
        }
    }
    let encrypted = build_encrypted();
    for v in &encrypted {
        std::fs::write(dir.join(v.file), &v.bytes).unwrap();
    }
    let shards =
        (vectors.iter().flat_map(|v| &v.shards)).chain(encrypted.iter().flat_map(|v| &v.shards));
    for (name, bytes) in shards {
        std::fs::write(dir.join(name), bytes).unwrap();
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
        let path = match v.directory {
            true => dir.join(v.file).join("README.md"),
            false => dir.join(v.file),
        };
        let committed = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{}: {e} (regenerate, see the top of this file)", v.file));
        assert!(
            committed == v.bytes,
            "{} differs from what the code builds",
            v.file
        );
        for (name, bytes) in &v.shards {
            let committed = std::fs::read(dir.join(name))
                .unwrap_or_else(|e| panic!("{name}: {e} (regenerate, see the top of this file)"));
            assert!(
                committed == *bytes,
                "{name} differs from what the code builds"
            );
        }
    }
    // The verdicts of the encrypted vectors are pinned too (their bytes are random).
    let encrypted = build_encrypted();
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("vectors.json")).unwrap()).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&manifest_json(&vectors, &encrypted)).unwrap();
    assert_eq!(listed, expected);
    // Exactly the listed shard files are there: a verifier finds shards by name, so a stray
    // one (fail_shard_missing's shard 2) would change a verdict.
    let shipped: std::collections::BTreeSet<String> = (vectors.iter().flat_map(|v| &v.shards))
        .chain(encrypted.iter().flat_map(|v| &v.shards))
        .map(|(name, _)| name.clone())
        .collect();
    let committed = committed_shards();
    let stray: Vec<_> = committed.difference(&shipped).collect();
    let absent: Vec<_> = shipped.difference(&committed).collect();
    assert!(
        stray.is_empty() && absent.is_empty(),
        "shard files no vector lists: {stray:?}; listed but absent: {absent:?} (regenerate)"
    );
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
            (None, None) if v["expect_load"].is_object() => {}
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
        let warnings = run.json()["warnings"].clone();
        match expect["warning_contains"].as_str() {
            Some(want) => {
                let said = |w: &serde_json::Value| w.as_str().unwrap().contains(want);
                assert!(
                    warnings.as_array().unwrap().iter().any(said),
                    "{name}: {run:?}"
                );
                assert!(run.stderr.contains("nnsign: warning: "), "{name}: {run:?}");
            }
            None => assert_eq!(warnings, json!([]), "{name}"),
        }
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

/// tests/vectors/README.md names every vector, under what it pins.
#[test]
fn the_readme_lists_every_vector() {
    let readme = std::fs::read_to_string(vectors_dir().join("README.md")).unwrap();
    let names = build()
        .iter()
        .map(|v| v.file)
        .chain(build_encrypted().iter().map(|v| v.file))
        .map(|f| f.trim_end_matches(".nns").to_owned())
        .collect::<Vec<_>>();
    for name in names {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md lacks {name}"
        );
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
