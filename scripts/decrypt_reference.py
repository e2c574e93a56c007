#!/usr/bin/env python3
"""Independent decryptor for encrypted nnsign `.nns` artifacts, written from docs/FORMAT.md alone.

It verifies with verify_reference.py (sections 1-8, 11.1 and 14, no key needed), which also
hands it the ciphertext it checked, read from the shard files of a sharded payload as from one
file. Then it follows section 11: opens the file key (11.2), derives the payload key and
associated data, decrypts the STREAM payload (11.3), and decodes and checks the inner manifest
and raw payload (11.4). It prints one line per tensor: name, dtype, shape and SHA-256 of its
bytes. Exit codes are those of FORMAT.md section 9 (7 for decryption failures: no key, a wrong
key, a chunk that does not open).

  decrypt_reference.py ARTIFACT --trust PUB [--trust PUB ...] --key X25519.key
  decrypt_reference.py ARTIFACT --trust PUB --passphrase TEXT
  decrypt_reference.py --vectors tests/vectors/vectors.json
"""
import argparse, hashlib, json, os, sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verify_reference as vr  # noqa: E402
from verify_reference import Fail, need, align  # noqa: E402

X25519_INFO = b"nnsign/v1 X25519 file key"
PAYLOAD_INFO = b"nnsign/v1 payload"
AD_LABEL = "nnsign/v1 encrypted payload"
ZERO_NONCE = bytes(12)


def hkdf(ikm, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def load_x25519_key(path):
    """An X25519 private key, PEM PKCS#8 (section 7's format, by analogy: the spec does not say)."""
    try:
        pem = open(path, "rb").read()
    except OSError as e:
        raise Fail("io", f"cannot read {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        key = None
    need(isinstance(key, X25519PrivateKey), f"{path} is not an unencrypted PEM X25519 private key", "input")
    return key


# Section 11.2: the file key
def open_sealed(w, sealed, what):
    try:
        return ChaCha20Poly1305(w).decrypt(ZERO_NONCE, sealed, b"")
    except InvalidTag:
        raise Fail("decryption", f"{what} does not open: wrong key or passphrase, or an altered stanza") from None


def open_file_key(encryption, key=None, passphrase=None):
    recipients = encryption["recipients"]
    if recipients[0]["type"] == "Argon2id":  # 11.1: then it is the only recipient
        r = recipients[0]
        need(passphrase is not None, "the artifact is protected by a passphrase, and none was given", "decryption")
        for field, lo, hi in zip("mtp", vr.ARGON2_MIN, vr.ARGON2_MAX):  # again, before deriving anything
            need(vr.is_uint(r[field]) and lo <= r[field] <= hi, f"Argon2id cost {field} out of range")
        w = Argon2id(salt=r["salt"], length=32, iterations=r["t"], lanes=r["p"],
                     memory_cost=r["m"]).derive(passphrase.encode("utf-8"))
        return open_sealed(w, r["sealed"], "the passphrase stanza")
    need(key is not None, "the artifact is encrypted, and no key was given", "decryption")
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = vr.key_id(pub)  # section 7's key id, applied to the raw X25519 public key
    stanza = next((r for r in recipients if r["type"] == "X25519" and r["kid"] == kid), None)
    need(stanza is not None, f"the artifact is not encrypted to key {kid.hex()} (recipients: "
         + ", ".join(r["kid"].hex() for r in recipients if r["type"] == "X25519") + ")", "decryption")
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(stanza["epk"]))
    except ValueError:  # OpenSSL refuses an all-zero shared secret itself
        shared = bytes(32)
    need(shared != bytes(32), f"the stanza for key {kid.hex()} has a low-order epk (all-zero X25519 secret)",
         "decryption")
    w = hkdf(shared, stanza["epk"] + pub, X25519_INFO)
    return open_sealed(w, stanza["sealed"], f"the stanza for key {kid.hex()}")


# Section 11.3: payload key, associated data, STREAM
def top_level_values(manifest_bytes):
    """The encoded bytes of each value of the (already validated) top-level manifest map."""
    dec = vr.Decoder(manifest_bytes, "manifest")
    major, _, count = dec.head()
    need(major == 5, "manifest is not a map")
    spans = {}
    for _ in range(count):
        key = dec.item(1)
        start = dec.pos
        dec.item(1)
        spans[key] = manifest_bytes[start:dec.pos]
    return spans


def associated_data(manifest_bytes):
    spans = top_level_values(manifest_bytes)
    label = AD_LABEL.encode()
    ad_cbor = b"\x83" + vr.cbor_head(3, len(label)) + label + spans["model"] + spans["encryption"]
    return hashlib.sha256(ad_cbor).digest()


def stream_open(k, ad, ciphertext):
    n = vr.stream_chunks(len(ciphertext))
    need(n is not None and n < 2**32, "the ciphertext length is not one STREAM produces")
    aead, step, out = ChaCha20Poly1305(k), vr.STREAM_CHUNK + vr.AEAD_TAG, []
    for i in range(n):
        nonce = bytes(7) + i.to_bytes(4, "big") + bytes([1 if i == n - 1 else 0])
        try:
            out.append(aead.decrypt(nonce, ciphertext[i * step:(i + 1) * step], ad))
        except InvalidTag:
            raise Fail("decryption", f"encrypted chunk {i} failed authentication") from None
    return b"".join(out)  # only now, with every chunk opened, is any plaintext used


# Section 11.3 "Plaintext" and 11.4: the inner manifest and the raw payload
def parse_plaintext(plain):
    need(len(plain) >= 4, "decrypted payload: shorter than the 4-byte inner manifest length")
    m_len = int.from_bytes(plain[:4], "big")
    need(m_len <= vr.MAX_ENVELOPE_LEN, f"decrypted payload: inner manifest length {m_len} exceeds MAX_ENVELOPE_LEN")
    need(4 + m_len <= len(plain), f"decrypted payload: inner manifest length {m_len} runs past the plaintext")
    inner = vr.decode_cbor(plain[4:4 + m_len], "inner manifest")
    start = align(4 + m_len, vr.TENSOR_ALIGN)  # the padding is there even if nothing follows it
    need(start <= len(plain), "decrypted payload: truncated inner manifest padding")
    need(not plain[4 + m_len:start].strip(b"\0"), "decrypted payload: non-zero inner manifest padding")
    raw = plain[start:]
    vr.check_keys(inner, "inner manifest", ("tensors", "length"), ("arch",))
    if "arch" in inner:
        vr.check_arch(inner["arch"], "inner manifest arch")
    layout, total = vr.validate_tensors(inner["tensors"])
    length = inner["length"]
    need(vr.is_uint(length) and length <= vr.MAX_PAYLOAD_LEN, "inner manifest: length is not a uint <= MAX_PAYLOAD_LEN")
    need(length == total, f"inner manifest: length is {length}, the layout's is {total}")
    need(len(raw) == length, f"decrypted payload: the raw payload has {len(raw)} bytes, the inner manifest says {length}")
    return inner, layout, raw


def tensors_of(tensor_table, layout, raw):
    """[(name, dtype, shape, bytes)] after checking every padding byte (section 6) and every BOOL
    byte (section 5)."""
    out = []
    for k, ((name, off, length, dtype), t) in enumerate(zip(layout, tensor_table)):
        seg_end = layout[k + 1][1] if k + 1 < len(layout) else len(raw)
        pad = raw[off + length:seg_end]
        first = seg_end - len(pad.lstrip(b"\0"))  # payload offset of the first non-zero padding byte
        need(not pad.strip(b"\0"), f"non-zero padding byte at payload offset {first} of the raw payload")
        if dtype == "BOOL":
            vr.check_bools(name, raw[off:off + length], 0)
        out.append((name, t["dtype"], t["shape"], raw[off:off + length]))
    return out


def load(path, trust_paths, key_path=None, passphrase=None, allow_unsigned=False):
    """Returns (manifest, arch, [(name, dtype, shape, bytes)]) of a verified, decrypted artifact."""
    trust = vr.load_trust(trust_paths)
    key = load_x25519_key(key_path) if key_path else None
    ver = vr.verify_artifact(path, trust, allow_unsigned, keep_payload=True)   # section 8 steps 1-7
    m = ver.manifest
    if m["payload"]["encoding"] != vr.ENC_ENCODING:  # a plain artifact: its payload is the raw payload
        layout, _ = vr.validate_tensors(m["tensors"])
        return m, m.get("arch"), tensors_of(m["tensors"], layout, ver.payload)
    file_key = open_file_key(m["encryption"], key, passphrase)                   # 11.2
    k = hkdf(file_key, m["encryption"]["nonce"], PAYLOAD_INFO)                  # 11.3 payload key
    plain = stream_open(k, associated_data(ver.manifest_bytes), ver.payload)    # 11.3 STREAM
    inner, layout, raw = parse_plaintext(plain)                                 # 11.4
    return m, inner.get("arch"), tensors_of(inner["tensors"], layout, raw)


def describe(tensors):
    return [f"{name}\t{dtype}\t[{','.join(map(str, shape))}]\tsha256:{hashlib.sha256(data).hexdigest()}"
            for name, dtype, shape, data in tensors]


def run(path, trust_paths, key_path=None, passphrase=None, allow_unsigned=False):
    try:
        return 0, load(path, trust_paths, key_path, passphrase, allow_unsigned), "ok"
    except Fail as e:
        return e.code, None, f"FAIL {e.category}: {e.reason}"
    except OSError as e:
        return vr.EXIT["io"], None, f"FAIL io: {e}"


def run_vectors(json_path):
    base = os.path.dirname(os.path.abspath(json_path))
    entries = [v for v in json.load(open(json_path)).get("encrypted", [])
               if "decrypt_with" in v or "passphrase" in v]
    # A vector's "model_of" names the plain vector that holds the same model: compare with it.
    refs = {}
    for name in {v["model_of"] for v in entries if "model_of" in v}:
        ref_code, refs[name], ref_msg = run(os.path.join(base, name), [os.path.join(base, "../keys/test-a.pub")])
        if ref_code:
            print(f"cannot read the reference model {name}: {ref_msg}")
            return 1
    bad = 0
    for v in entries:
        want = 0 if v["expect_load"]["ok"] else v["expect_load"]["exit_code"]
        key = os.path.join(base, v["decrypt_with"]) if "decrypt_with" in v else None
        code, got, msg = run(os.path.join(base, v["file"]), [os.path.join(base, t) for t in v["trust"]],
                             key, v.get("passphrase"))
        ok = code == want
        if code == 0 and "model_of" in v:
            ref = refs[v["model_of"]]
            same = [t[:4] for t in got[2]] == [t[:4] for t in ref[2]]
            same_arch = got[1] == ref[1]
            msg += (f"; {len(got[2])} tensors {'identical to' if same else 'DIFFERENT from'} {v['model_of']}"
                    f", arch {'identical' if same_arch else 'DIFFERENT'}")
            ok = ok and same and same_arch
        frag = v["expect_load"].get("message_contains")
        note = "" if not frag or frag in msg else f" [nnsign says: ...{frag}...]"
        bad += not ok
        print(f"{'agree' if ok else 'DISAGREE'} {v['file']}: want {want}, got {code}: {msg}{note}")
    print(f"{len(entries) - bad}/{len(entries)} encrypted vectors (decrypt) agree")
    return 0 if bad == 0 else 1


def main():
    ap = argparse.ArgumentParser(description="Verify and decrypt an nnsign artifact (written from docs/FORMAT.md).")
    ap.add_argument("artifact", nargs="?")
    ap.add_argument("--trust", action="append", default=[], help=".pub file or directory of them")
    ap.add_argument("--key", help="X25519 private key (PEM PKCS#8)")
    ap.add_argument("--passphrase", help="passphrase, for an Argon2id recipient (used as UTF-8 bytes)")
    ap.add_argument("--allow-unsigned", action="store_true")
    ap.add_argument("--vectors", help="run every encrypted vector of a vectors.json that names a key")
    a = ap.parse_args()
    if a.vectors:
        sys.exit(run_vectors(a.vectors))
    if not a.artifact or not a.trust:
        ap.error("an ARTIFACT and at least one --trust are required")  # exit 2 (section 9: usage)
    code, got, msg = run(a.artifact, a.trust, a.key, a.passphrase, a.allow_unsigned)
    if code:
        print(msg)
    else:
        print("\n".join(describe(got[2])))
    sys.exit(code)


if __name__ == "__main__":
    main()
