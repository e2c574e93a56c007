#!/usr/bin/env python3
"""Independent verifier for nnsign `.nns` artifacts, written from docs/FORMAT.md alone.

Nothing here was taken from the Rust sources: it follows the text of docs/FORMAT.md (sections
1-9, section 11 for encrypted payloads, which it verifies without any key, and section 14 for
sharded payloads, whose shard files it finds by name beside the artifact) and is checked against
tests/vectors/. Standard library plus `cryptography` (PEM key files); Ed25519 is checked
here, by the strict rules of section 4, rule 4, in plain integer arithmetic.
Exit codes are those of FORMAT.md section 9 (1 input, 2 usage, 3 I/O, 4 signature, 5 integrity).

  verify_reference.py ARTIFACT --trust PUB [--trust PUB ...] [--allow-unsigned]
  verify_reference.py --vectors tests/vectors/vectors.json
"""
import argparse, bisect, collections, hashlib, json, os, re, stat, struct, sys, time, unicodedata
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# Section 2: limits
MAGIC = b"\x89NNS\r\n\x1a\n"
FRAME_VERSION, PRELUDE_LEN, MAX_ENVELOPE_LEN = 1, 16, 64 * 2**20
PAYLOAD_ALIGN = TENSOR_ALIGN = 64
CHUNK_SIZE, MAX_PAYLOAD_LEN = 4 * 2**20, 2**40
MAX_SHARDS = 65536
MAX_SIGNATURES, MAX_PROTECTED_LEN, MAX_SIGNATURE_LEN = 16, 1024, 1024
MAX_TENSORS, MAX_RANK, MAX_NAME_LEN, MAX_LABELS, MAX_TEXT_LEN = 131072, 16, 1024, 1024, 65536
MAX_CBOR_DEPTH, MAX_CBOR_ITEMS, MANIFEST_FORMAT = 32, 4194304, 1
MAX_CREATED = 253402300799
# Section 2 / 11: encrypted payloads
ENC_ENCODING = "chacha20poly1305-stream"
STREAM_CHUNK, AEAD_TAG = 65536, 16
ENC_CHUNK_SIZE = 64 * (STREAM_CHUNK + AEAD_TAG)  # 4195328
MAX_RECIPIENTS = 64
ARGON2_MIN, ARGON2_MAX = (19456, 2, 1), (1048576, 16, 8)  # (m KiB, t, p), section 11.1
CONTENT_TYPE = "application/vnd.nnsign.manifest+cbor"
KNOWN_HEADER_LABELS = {1, 3, 4, -65537}
KNOWN_MANIFEST_FIELDS = {"format", "model", "payload", "tensors", "arch", "crit", "encryption"}
DTYPE_SIZE = {**dict.fromkeys(["BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2"], 1),
              **dict.fromkeys(["U16", "I16", "F16", "BF16"], 2),
              **dict.fromkeys(["U32", "I32", "F32"], 4), **dict.fromkeys(["U64", "I64", "F64"], 8)}
EXIT = {"input": 1, "usage": 2, "io": 3, "signature": 4, "integrity": 5, "decryption": 7, "freshness": 9}
CLOCK_SKEW = 300  # seconds allowed between a packer's clock and ours (section 8, freshness)


class Fail(Exception):
    def __init__(self, category, reason):
        super().__init__(reason)
        self.category, self.reason, self.code = category, reason, EXIT[category]


def need(ok, reason, category="integrity"):
    """Raise Fail(category, reason) unless ok."""
    if not ok:
        raise Fail(category, reason)


def align(n, a):
    return -(-n // a) * a


def is_uint(v):
    return type(v) is int and v >= 0  # bool is not a CBOR integer


# Section 3: strict deterministic CBOR decoder
Tag = collections.namedtuple("Tag", "number value")


class Decoder:
    def __init__(self, data, what):
        self.data, self.pos, self.items, self.what = data, 0, 0, what

    def check(self, ok, msg):
        need(ok, f"{self.what}: {msg} at byte {self.pos}")

    def take(self, n):
        self.check(n <= len(self.data) - self.pos, "truncated CBOR")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def head(self):
        ib = self.take(1)[0]
        major, ai = ib >> 5, ib & 31
        if ai < 24:
            return major, ai, ai
        self.check(ai <= 27, "indefinite length or reserved additional info (non-canonical CBOR)")
        arg = int.from_bytes(self.take(1 << (ai - 24)), "big")
        if major != 7:  # major 7 arguments are simple values / floats, checked in simple()
            self.check(arg >= (24 if ai == 24 else 1 << (8 << (ai - 25))),
                       "non-canonical CBOR: argument not in shortest form")
        return major, ai, arg

    def item(self, depth):
        self.items += 1
        self.check(self.items <= MAX_CBOR_ITEMS, "more than MAX_CBOR_ITEMS data items")
        start = self.pos
        major, ai, arg = self.head()
        if major in (0, 1):
            return arg if major == 0 else -1 - arg
        if major == 2:
            return self.take(arg)
        if major == 3:
            try:
                return self.take(arg).decode("utf-8")
            except UnicodeDecodeError:
                self.check(False, "text string is not valid UTF-8")
        if major == 7:
            return self.simple(ai, arg, start)
        self.check(depth < MAX_CBOR_DEPTH, "nesting deeper than MAX_CBOR_DEPTH")
        if major == 6:
            return Tag(arg, self.item(depth + 1))
        room = len(self.data) - self.pos  # every item takes at least one byte
        if major == 4:
            self.check(arg <= room, "array count exceeds the bytes available")
            return [self.item(depth + 1) for _ in range(arg)]
        self.check(2 * arg <= room, "map count exceeds the bytes available")
        out, prev = {}, None
        for _ in range(arg):
            kstart = self.pos
            key = self.item(depth + 1)
            kenc = self.data[kstart:self.pos]
            self.check(prev is None or kenc != prev, "duplicate map key")
            self.check(prev is None or kenc > prev, "non-canonical CBOR: map keys not in encoded order")
            prev = kenc
            # only int and text keys are used as-is; others (true vs 1, 1.0 vs 1) would collide
            out[key if type(key) in (int, str) else ("raw", kenc)] = self.item(depth + 1)
        return out

    def simple(self, ai, arg, start):
        if ai < 24 and arg in (20, 21, 22):
            return [False, True, None][arg - 20]
        self.check(ai > 24, f"simple value {arg} not allowed")
        raw = self.data[start + 1:self.pos]
        value = struct.unpack({25: ">e", 26: ">f", 27: ">d"}[ai], raw)[0]
        if value != value:
            self.check(raw == b"\x7e\x00", "non-canonical CBOR: NaN not encoded as f9 7e00")
        elif ai > 25:
            smaller = ">e" if ai == 26 else ">f"
            try:
                fits = struct.unpack(smaller, struct.pack(smaller, value))[0] == value
            except OverflowError:
                fits = False
            self.check(not fits, "non-canonical CBOR: float not in shortest form")
        return value


def decode_cbor(data, what):
    dec = Decoder(bytes(data), what)
    value = dec.item(0)
    dec.check(dec.pos == len(dec.data), "trailing bytes after the CBOR item")
    return value


def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    size = next(s for s in (1, 2, 4, 8) if n < 1 << (8 * s))
    return bytes([major << 5 | {1: 24, 2: 25, 4: 26, 8: 27}[size]]) + n.to_bytes(size, "big")


# Section 1 and section 8 steps 1 and 3: prelude, envelope bytes, header padding
def read_header(f, size):
    prelude = f.read(PRELUDE_LEN)
    need(prelude[:8] == MAGIC, "not an nnsign artifact (bad magic)")
    need(len(prelude) == PRELUDE_LEN, "truncated prelude")
    version, reserved, env_len = struct.unpack(">HHI", prelude[8:])
    need(version == FRAME_VERSION, f"unsupported frame version {version}")
    need(reserved == 0, "reserved prelude bytes are not zero")
    need(1 <= env_len <= MAX_ENVELOPE_LEN, f"envelope length {env_len} out of range")
    need(size >= PRELUDE_LEN + env_len, "truncated envelope")
    envelope = f.read(env_len)
    header_len = align(PRELUDE_LEN + env_len, PAYLOAD_ALIGN)
    need(size >= header_len, "truncated header padding")
    need(not f.read(header_len - PRELUDE_LEN - env_len).strip(b"\0"), "non-zero header padding")
    return envelope, header_len


# Section 4, step 2: envelope shape (the CDDL), with protected headers decoded
def parse_envelope(envelope):
    env = decode_cbor(envelope, "envelope")
    need(isinstance(env, list) and len(env) == 2 and isinstance(env[0], bytes)
         and isinstance(env[1], list), "envelope is not [manifest: bstr, signatures: array]")
    need(len(env[1]) <= MAX_SIGNATURES, "more than MAX_SIGNATURES signatures")
    return env[0], [parse_sign1(i, s) for i, s in enumerate(env[1])]


def parse_sign1(i, s):
    need(isinstance(s, Tag) and s.number == 18 and isinstance(s.value, list) and len(s.value) == 4,
         f"signature {i} is not a COSE_Sign1_Tagged array of 4")
    protected, unprotected, payload, signature = s.value
    need(isinstance(protected, bytes) and 1 <= len(protected) <= MAX_PROTECTED_LEN,
         f"signature {i}: protected header is not a bstr of 1..MAX_PROTECTED_LEN bytes")
    need(unprotected == {}, f"signature {i}: unprotected header is not empty")
    need(payload is None, f"signature {i}: payload is not nil (it must be detached)")
    need(isinstance(signature, bytes) and len(signature) <= MAX_SIGNATURE_LEN,
         f"signature {i}: signature is not a bstr of at most MAX_SIGNATURE_LEN bytes")
    # Everything about the protected header is a signature failure (section 9, exit 4).
    try:
        hdr = decode_cbor(protected, f"signature {i} protected header")
    except Fail as e:
        raise Fail("signature", e.reason) from None
    sig = "signature"
    need(isinstance(hdr, dict) and all(type(k) in (int, str) for k in hdr),
         f"signature {i}: protected header is not a map of labels", sig)
    need(type(hdr.get(1)) is int, f"signature {i}: alg (1) missing or not an int", sig)
    crit = hdr.get(2, [0])
    need(isinstance(crit, list) and crit and all(type(x) in (int, str) for x in crit),
         f"signature {i}: crit (2) is not a non-empty array of labels", sig)
    need(type(hdr.get(3)) is str and hdr[3] == CONTENT_TYPE,
         f"signature {i}: content type is not {CONTENT_TYPE}", sig)
    need(isinstance(hdr.get(4), bytes) and len(hdr[4]) == 8,
         f"signature {i}: kid (4) missing or not 8 bytes", sig)
    pk = hdr.get(-65537, b"\0" * 32)
    need(isinstance(pk, bytes) and len(pk) == 32,
         f"signature {i}: public key (-65537) is not 32 bytes", sig)
    return protected, hdr, signature


# Ed25519 (RFC 8032) with the strict rules of section 4, rule 4
P = 2**255 - 19
ED_L = 2**252 + 27742317777372353535851937790883648493
ED_D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
NEUTRAL = (0, 1, 1, 0)  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z


def ed_decode(enc):
    """RFC 8032 section 5.1.3, with its refusals of y >= p and of x = 0 with the sign bit set."""
    y, sign = int.from_bytes(enc, "little") & ((1 << 255) - 1), enc[31] >> 7
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(ED_D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P or (x == 0 and sign):
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def ed_add(p, q):
    """The complete addition law of RFC 8032 section 5.1.4 (a = -1)."""
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * ED_D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def ed_mul(s, p):
    q = NEUTRAL
    while s:
        if s & 1:
            q = ed_add(q, p)
        p, s = ed_add(p, p), s >> 1
    return q


def ed_encode(p):
    """RFC 8032 section 5.1.2."""
    zinv = pow(p[2], P - 2, P)
    x, y = p[0] * zinv % P, p[1] * zinv % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def ed_small_order(p):
    """[8]P is the neutral element."""
    return ed_encode(ed_mul(8, p)) == ed_encode(NEUTRAL)


ED_B = ed_decode((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))  # y = 4/5, x even


def ed25519_check(pk, signature, message):
    """Section 4, rule 4, after the key's own checks: returns None if valid, else why not."""
    if len(signature) != 64:
        return "the value is not 64 bytes"
    r_enc, s = signature[:32], int.from_bytes(signature[32:], "little")
    if s >= ED_L:
        return "S is not less than L"
    r = ed_decode(r_enc)
    if r is None:
        return "R does not decode"
    if ed_small_order(r):
        return "R is of small order"
    k = int.from_bytes(hashlib.sha512(r_enc + pk + message).digest(), "little") % ED_L
    x, y, z, t = ed_mul(k, ed_decode(pk))
    if ed_encode(ed_add(ed_mul(s, ED_B), (P - x, y, z, P - t))) != r_enc:
        return "[S]B = R + [k]A does not hold (checked without the cofactor)"
    return None


def key_id(pk):
    return hashlib.sha256(pk).digest()[:8]


# Section 4 rules 3-7, step 4: check every signature, then the trust decision
def check_signatures(manifest, sigs, trust, allow_unsigned):
    """Returns the warnings rule 5 asks for: one per unsupported signature."""
    valid, warnings = [], []
    for i, (protected, hdr, signature) in enumerate(sigs):
        crit = hdr.get(2, [])
        for j, label in enumerate(crit):
            need(label not in crit[:j], f"signature {i}: crit lists label {label!r} twice", "signature")
            need(label in KNOWN_HEADER_LABELS, f"signature {i}: crit lists unsupported label {label!r}", "signature")
            need(label in hdr, f"signature {i}: crit lists label {label!r}, absent from the header", "signature")
        if hdr[1] not in (-19, -8):
            # rule 5: unsupported algorithm, neither valid nor invalid, but reported
            warnings.append(f"signature {i} (kid {hdr[4].hex()}) uses unsupported alg {hdr[1]}: not counted")
            continue
        pk = hdr.get(-65537)
        need(pk is not None, f"signature {i}: Ed25519 signature without a public key (-65537)", "signature")
        point = ed_decode(pk)
        need(point is not None, f"signature {i}: public key does not decode (RFC 8032 5.1.3)", "signature")
        need(not ed_small_order(point), f"signature {i}: public key is of small order", "signature")
        need(hdr[4] == key_id(pk),
             f"signature {i}: kid {hdr[4].hex()} is not the id of the public key ({key_id(pk).hex()})", "signature")
        tbs = (b"\x84\x6aSignature1" + cbor_head(2, len(protected)) + protected + b"\x40"
               + cbor_head(2, len(manifest)) + manifest)
        why = ed25519_check(pk, signature, tbs)
        need(why is None, f"signature {i} by key {key_id(pk).hex()} does not verify: {why}", "signature")
        need(pk not in valid, f"two valid signatures by key {key_id(pk).hex()}", "signature")
        valid.append(pk)
    if not sigs:
        need(allow_unsigned, "artifact is unsigned", "signature")
    else:
        need(any(pk in trust for pk in valid), "no trusted valid signature (valid signers: "
             + (", ".join(key_id(pk).hex() for pk in valid) or "none") + "; none is in the trust store)", "signature")
    return warnings


# Section 5 and section 6: manifest validation and the layout it must describe
# Section 5: refused in all text, by code point
DECEPTIVE = {"\u061C", *map(chr, range(0x200B, 0x2010)), *map(chr, range(0x2028, 0x202F)),
             *map(chr, range(0x2060, 0x2070)), "\uFEFF"}


def check_text(v, what, lo, hi, multiline=False):
    need(type(v) is str and lo <= len(v.encode()) <= hi, f"manifest: {what} is not text of {lo}..{hi} bytes")
    allowed = "\t\n" if multiline else ""
    need(not any(unicodedata.category(c) == "Cc" and c not in allowed for c in v),
         f"manifest: {what} contains a control character")
    need(not any(c in DECEPTIVE for c in v), f"manifest: {what} contains an invisible formatting character")


def check_arch(g, where="arch"):
    """Section 5: the CDDL of arch (closed maps, types, int64 attributes), then its text."""
    def text(v, what):
        need(type(v) is str, f"manifest: {where}.{what} is not a text string")

    def items(v, what):
        need(isinstance(v, list), f"manifest: {where}.{what} is not an array")
        return v

    def int64(v):
        return type(v) is int and -2**63 <= v < 2**63

    check_keys(g, where, ("opset", "inputs", "outputs", "nodes"))
    need(is_uint(g["opset"]), f"manifest: {where}.opset is not a uint")
    for io in ("inputs", "outputs"):
        for i, vi in enumerate(items(g[io], io)):
            check_keys(vi, f"{where}.{io}[{i}]", ("name", "dtype", "shape"))
            text(vi["name"], f"{io}[{i}].name")
            text(vi["dtype"], f"{io}[{i}].dtype")
            for d in items(vi["shape"], f"{io}[{i}].shape"):
                need(is_uint(d) or type(d) is str, f"manifest: {where}.{io}[{i}].shape holds {d!r}")
    for i, n in enumerate(items(g["nodes"], "nodes")):
        check_keys(n, f"{where}.nodes[{i}]", ("op", "name", "inputs", "outputs"), ("attrs",))
        text(n["op"], f"nodes[{i}].op")
        text(n["name"], f"nodes[{i}].name")
        for io in ("inputs", "outputs"):
            for x in items(n[io], f"nodes[{i}].{io}"):
                text(x, f"nodes[{i}].{io}[]")
        attrs = n.get("attrs", {})
        need(isinstance(attrs, dict), f"manifest: {where}.nodes[{i}].attrs is not a map")
        for k, a in attrs.items():
            text(k, f"nodes[{i}].attrs key")
            ok = (int64(a) or type(a) in (float, str)
                  or (isinstance(a, list) and all(int64(x) or type(x) is float for x in a)))
            need(ok, f"manifest: {where}.nodes[{i}].attrs[{k!r}] = {a!r} is not an Attr")
    check_arch_text(g)


def check_arch_text(v):
    """Section 5: every text string in arch, keys included, is a one-line name."""
    if isinstance(v, str):
        check_text(v, "text in arch", 0, MAX_NAME_LEN)
    elif isinstance(v, list):
        for x in v:
            check_arch_text(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            check_arch_text(k)
            check_arch_text(x)


def check_keys(m, what, required, optional=()):
    need(isinstance(m, dict), f"manifest: {what} is not a map")
    missing, extra = set(required) - set(m), set(m) - set(required) - set(optional)
    need(not missing, f"manifest: {what} lacks {sorted(missing)}")
    need(not extra, f"manifest: {what} has unknown keys {sorted(map(str, extra))}")


# SemVer 2.0.0 (https://semver.org), the regular expression the SemVer specification gives.
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")


def check_version(v, what):
    check_text(v, what, 0, MAX_NAME_LEN)
    m = SEMVER.match(v)
    need(m is not None, f"manifest: {what} {v!r} is not a semantic version")
    need(all(int(n) < 2**64 for n in m.group(1, 2, 3)),
         f"manifest: {what} {v!r} has a MAJOR, MINOR or PATCH above 2^64 - 1")


def validate_model(model):
    check_keys(model, "model", ("name", "created", "producer"),
               ("version", "description", "labels", "expires", "parent"))
    check_text(model["name"], "model.name", 1, MAX_NAME_LEN)
    check_text(model["producer"], "model.producer", 0, MAX_NAME_LEN)
    if "version" in model:
        check_version(model["version"], "model.version")
    check_text(model.get("description", ""), "model.description", 0, MAX_TEXT_LEN, multiline=True)
    need(is_uint(model["created"]) and model["created"] <= MAX_CREATED,
         "manifest: model.created is not a uint of at most MAX_CREATED")
    if "expires" in model:
        e = model["expires"]
        need(is_uint(e) and model["created"] < e <= MAX_CREATED,
             "manifest: model.expires is not a uint after model.created and at most MAX_CREATED")
    if "parent" in model:
        p = model["parent"]
        check_keys(p, "model.parent", ("digest", "name"), ("version",))
        need(type(p["digest"]) is bytes and len(p["digest"]) == 32, "manifest: model.parent.digest is not 32 bytes")
        check_text(p["name"], "model.parent.name", 1, MAX_NAME_LEN)
        if "version" in p:
            check_version(p["version"], "model.parent.version")
    labels = model.get("labels", {})
    need(isinstance(labels, dict) and len(labels) <= MAX_LABELS, "manifest: model.labels is not a map of <= MAX_LABELS")
    for k, v in labels.items():
        check_text(k, "label key", 1, MAX_NAME_LEN)
        need(not k.startswith("nnsign."), f"manifest: label key {k!r} uses the reserved prefix nnsign.")
        check_text(v, "label value", 0, MAX_TEXT_LEN, multiline=True)


def validate_payload(payload):
    """Returns True for an encrypted payload (section 11.1), False for a raw one."""
    if isinstance(payload, dict) and "encoding" in payload:
        need(payload["encoding"] in ("raw", ENC_ENCODING),
             f"payload encoding {payload['encoding']!r} is not supported by this version 1 reader"
             f" (only \"raw\" and \"{ENC_ENCODING}\")")
    check_keys(payload, "payload", ("encoding", "length", "chunk_size", "digests"), ("shards",))
    encrypted = payload["encoding"] == ENC_ENCODING
    want = ENC_CHUNK_SIZE if encrypted else CHUNK_SIZE
    need(type(payload["chunk_size"]) is int and payload["chunk_size"] == want,
         f"manifest: payload.chunk_size is not {'ENC_CHUNK_SIZE' if encrypted else 'CHUNK_SIZE'} ({want})")
    need(is_uint(payload["length"]) and payload["length"] <= MAX_PAYLOAD_LEN,
         "manifest: payload.length is not a uint <= MAX_PAYLOAD_LEN")
    need(isinstance(payload["digests"], bytes), "manifest: payload.digests is not a bstr")
    return encrypted


def stream_chunks(length):
    """Section 11.3: number of STREAM chunks a ciphertext of `length` bytes holds, or None when
    no plaintext seals to that length (each chunk is 16 bytes longer than its plaintext, no chunk
    is empty except the single chunk of an empty plaintext)."""
    full, rest = divmod(length, STREAM_CHUNK + AEAD_TAG)
    if rest == 0:
        return full if full else None
    if rest > AEAD_TAG:
        return full + 1
    return 1 if full == 0 and rest == AEAD_TAG else None


def validate_recipient(i, r):
    what = f"encryption.recipients[{i}]"
    need(isinstance(r, dict), f"manifest: {what} is not a map")
    kind = r.get("type")
    if kind == "X25519":
        check_keys(r, what, ("type", "kid", "epk", "sealed"))
        for field, size in (("kid", 8), ("epk", 32), ("sealed", 48)):
            need(isinstance(r[field], bytes) and len(r[field]) == size,
                 f"manifest: {what}.{field} is not a bstr of {size} bytes")
    elif kind == "Argon2id":
        check_keys(r, what, ("type", "salt", "m", "t", "p", "sealed"))
        for field, size in (("salt", 16), ("sealed", 48)):
            need(isinstance(r[field], bytes) and len(r[field]) == size,
                 f"manifest: {what}.{field} is not a bstr of {size} bytes")
        for field, lo, hi in zip("mtp", ARGON2_MIN, ARGON2_MAX):
            need(is_uint(r[field]) and lo <= r[field] <= hi,
                 f"manifest: {what} Argon2id cost {field} = {r[field]!r} is outside {lo}..{hi}")
    else:
        need(False, f"manifest: {what} has unknown recipient type {kind!r}")


def validate_encryption(enc):
    """Section 11.1: the Encryption map, read without any key."""
    check_keys(enc, "encryption", ("nonce", "recipients"))
    need(isinstance(enc["nonce"], bytes) and len(enc["nonce"]) == 16, "manifest: encryption.nonce is not a bstr of 16 bytes")
    recipients = enc["recipients"]
    need(isinstance(recipients, list) and 1 <= len(recipients) <= MAX_RECIPIENTS,
         f"manifest: encryption.recipients is not an array of 1..{MAX_RECIPIENTS} recipients")
    for i, r in enumerate(recipients):
        validate_recipient(i, r)
    kinds = [r["type"] for r in recipients]
    need("Argon2id" not in kinds or len(recipients) == 1,
         "manifest: a passphrase (Argon2id) recipient must be the only recipient")
    kids = [r["kid"] for r in recipients if r["type"] == "X25519"]
    need(len(set(kids)) == len(kids), "manifest: two X25519 recipients share a kid")


def validate_tensors(tensors):
    """Returns [(name, offset, length)] after checking section 5's table rules and section 6's offsets."""
    need(isinstance(tensors, list) and len(tensors) <= MAX_TENSORS, "manifest: tensors is not an array of <= MAX_TENSORS")
    names, expect, layout = set(), 0, []
    for t in tensors:
        check_keys(t, "tensor", ("name", "dtype", "shape", "offset", "length"))
        name, shape = t["name"], t["shape"]
        check_text(name, "tensor name", 1, MAX_NAME_LEN)
        need(name not in names, f"manifest: two tensors are named {name!r}")
        names.add(name)
        need(type(t["dtype"]) is str and t["dtype"] in DTYPE_SIZE, f"manifest: tensor {name!r} has unknown dtype")
        need(isinstance(shape, list) and len(shape) <= MAX_RANK and all(map(is_uint, shape)),
             f"manifest: tensor {name!r} shape is not an array of at most MAX_RANK uints")
        count = 1
        for dim in shape:
            count *= dim  # exact: Python integers do not overflow
        need(is_uint(t["length"]) and t["length"] == DTYPE_SIZE[t["dtype"]] * count,
             f"manifest: tensor {name!r} length is not element size x product(shape)")
        need(is_uint(t["offset"]) and t["offset"] == expect,
             f"manifest: tensor {name!r} is at offset {t['offset']} but the layout puts it at {expect}")
        layout.append((name, expect, t["length"], t["dtype"]))
        expect = align(expect + t["length"], TENSOR_ALIGN)
    return layout, expect


def validate_manifest(m):
    """Returns (L, chunks, digests, shards); a chunk is (tensor, tensor offset, start, end, tensor data
    end, is BOOL); shards is payload.shards (section 14), or None when the payload follows the header."""
    need(isinstance(m, dict) and all(type(k) is str for k in m), "manifest is not a map with text keys")
    need(type(m.get("format")) is int and m["format"] == MANIFEST_FORMAT,
         f"manifest format {m.get('format')!r} is not {MANIFEST_FORMAT}")
    crit = m.get("crit", ["format"])
    need(isinstance(crit, list) and crit and all(type(c) is str for c in crit),
         "manifest: crit is not a non-empty array of text")
    for j, name in enumerate(crit):
        need(name not in crit[:j], f"manifest: crit lists {name!r} twice")
        need(name in KNOWN_MANIFEST_FIELDS, f"manifest requires support for \"{name}\", which this reader lacks")
        need(name in m, f"manifest: crit lists {name!r}, which the manifest does not have")
    check_keys(m, "manifest", ("format", "model", "payload", "tensors"), set(m) - {"model", "payload", "tensors"})
    validate_model(m["model"])
    if "arch" in m:
        check_arch(m["arch"])
    if validate_payload(m["payload"]):
        return validate_encrypted_manifest(m, crit)
    need("encryption" not in m, "manifest: a raw payload comes with an encryption field")
    layout, total = validate_tensors(m["tensors"])
    need(m["payload"]["length"] == total, f"manifest: payload.length is {m['payload']['length']}, the layout's is {total}")
    chunks = []
    for k, (name, off, length, dtype) in enumerate(layout):
        seg_end = layout[k + 1][1] if k + 1 < len(layout) else total
        chunks += [(name, off, s, min(s + CHUNK_SIZE, seg_end), off + length, dtype == "BOOL")
                   for s in range(off, seg_end, CHUNK_SIZE)]
    digests = m["payload"]["digests"]
    need(len(digests) == 32 * len(chunks), f"manifest: payload.digests has {len(digests)} bytes, not 32 x {len(chunks)}")
    return total, chunks, digests, validate_shards(m["payload"], total, chunks)


def validate_shards(payload, total, chunks):
    """Section 14: payload.shards, when present, is 1..MAX_SHARDS non-zero uints adding up to L,
    each shard but the first starting where a digest chunk starts (the first starts at 0, which
    is a chunk start unless L = 0, and then no list can add up)."""
    if "shards" not in payload:
        return None
    shards = payload["shards"]
    need(isinstance(shards, list) and 1 <= len(shards) <= MAX_SHARDS and all(map(is_uint, shards)),
         f"manifest: payload.shards is not an array of 1..{MAX_SHARDS} uints")
    zero = next((k for k, length in enumerate(shards, 1) if length == 0), None)
    need(zero is None, f"manifest: payload.shards gives shard {zero} the length 0")
    need(sum(shards) == total, f"manifest: payload.shards adds up to {sum(shards)}, payload.length is {total}")
    starts, b = {c[2] for c in chunks}, 0
    for k, s in enumerate(shards, 1):
        need(b in starts, f"manifest: shard {k} starts at payload offset {b}, which is no chunk's start")
        b += s
    return shards


def validate_encrypted_manifest(m, crit):
    """Section 11.1: the outer manifest of an encrypted payload; digest chunks of ENC_CHUNK_SIZE."""
    need(m["tensors"] == [], "manifest: an encrypted payload's tensors must be empty (the table is encrypted)")
    need("arch" not in m, "manifest: an encrypted payload must not have arch (it is encrypted)")
    need("encryption" in m, "manifest: an encrypted payload lacks the encryption field")
    need("encryption" in m.get("crit", []), "manifest: an encrypted payload's crit does not list \"encryption\"")
    validate_encryption(m["encryption"])
    total = m["payload"]["length"]
    need(stream_chunks(total) is not None,
         f"manifest: payload.length {total} is not a length the STREAM construction produces")
    chunks = [(None, 0, s, min(s + ENC_CHUNK_SIZE, total), min(s + ENC_CHUNK_SIZE, total), False)
              for s in range(0, total, ENC_CHUNK_SIZE)]
    digests = m["payload"]["digests"]
    need(len(digests) == 32 * len(chunks), f"manifest: payload.digests has {len(digests)} bytes, not 32 x {len(chunks)}")
    return total, chunks, digests, validate_shards(m["payload"], total, chunks)


def check_bools(name, data, at):
    """Section 5: every byte of a BOOL tensor is 00 or 01; `data` starts at its byte `at`."""
    bad = next((j for j, b in enumerate(data) if b > 1), None)
    if bad is not None:
        need(False, f"tensor {name!r} is BOOL but holds {data[bad]:#04x} at its byte {at + bad}")


# Section 14: shard files
def shard_path(path, k, n):
    """Shard k of n of the artifact at `path`: STEM-KKKKK-of-NNNNN.nnshard in the same folder, STEM
    the file name without a final ".nns" (kept if that leaves nothing), K and N zero-padded to at
    least five digits."""
    folder, name = os.path.split(path)
    stem = name[:-len(".nns")] if name.endswith(".nns") and name != ".nns" else name
    return os.path.join(folder, f"{stem}-{k:05d}-of-{n:05d}.nnshard")


def open_regular(path):
    """Opens `path` for reading without blocking on a pipe; returns the file and its length, or
    raises Fail (exit 3) if it is not a regular file. OSError (missing, unreadable) passes through."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Fail("io", f"{path} is not a regular file")
    return os.fdopen(fd, "rb"), st.st_size


def check_shards(path, shards):
    """Section 14 / section 8, step 6: before any chunk is read, every shard file exists (else
    exit 5), is a regular file and can be opened (else exit 3) and has exactly its signed length
    (else exit 5). Returns [(shard path, payload offset of its first byte)]."""
    out, b, n = [], 0, len(shards)
    for k, length in enumerate(shards, 1):
        p = shard_path(path, k, n)
        try:
            f, size = open_regular(p)
        except FileNotFoundError:
            raise Fail("integrity", f"shard {k} of {n} is missing: no file {p}") from None
        except OSError as e:
            raise Fail("io", f"cannot read shard {k} of {n} ({p}): {e.strerror}") from None
        f.close()
        need(size == length, f"shard {k} of {n} ({p}) has {size} bytes, the signed manifest says {length}")
        out.append((p, b))
        b += length
    return out


class PayloadReader:
    """Payload bytes [start, end) from the artifact after its header, or from the shard that holds
    them (section 14: no chunk spans two shards). Chunks come in payload order: one shard is open
    at a time."""

    def __init__(self, f, header_len, shards):
        self.f, self.header_len, self.shards = f, header_len, shards
        self.starts = [b for _, b in shards or []]
        self.open_k, self.open_f = None, None

    def read(self, start, end):
        if not self.shards:
            self.f.seek(self.header_len + start)
            return self.f.read(end - start)
        k = bisect.bisect_right(self.starts, start) - 1
        if k != self.open_k:
            self.close()
            try:
                self.open_f, _ = open_regular(self.shards[k][0])
            except OSError as e:
                raise Fail("io", f"cannot read shard {k + 1} ({self.shards[k][0]}): {e.strerror}") from None
            self.open_k = k
        self.open_f.seek(start - self.starts[k])
        return self.open_f.read(end - start)

    def close(self):
        if self.open_f is not None:
            self.open_f.close()
        self.open_k, self.open_f = None, None


# Section 6, step 7: every chunk's digest, padding and BOOL bytes
def check_chunks(reader, chunks, digests, keep=None):
    """keep: a list to which each checked chunk's bytes are appended (for decrypt_reference.py)."""
    for i, (name, off, start, end, data_end, is_bool) in enumerate(chunks):
        data = reader.read(start, end)
        need(len(data) == end - start, "truncated payload")
        where = (f"bytes {start}..{end} of the encrypted payload" if name is None
                 else f"bytes {start - off}..{min(end, data_end) - off} of tensor {name!r}")
        need(hashlib.sha256(data).digest() == digests[32 * i:32 * i + 32], f"{where} do not match the signed digest")
        if keep is not None:
            keep.append(data)
        pad = data[max(start, data_end) - start:]
        nonzero = end - len(pad.lstrip(b"\0"))
        need(not pad.strip(b"\0"), f"non-zero padding byte at payload offset {nonzero}")
        if is_bool:
            check_bools(name, data[:max(start, data_end) - start], start - off)


# Section 8: the whole procedure
Verified = collections.namedtuple("Verified", "digest manifest_bytes manifest payload warnings")


def verify_artifact(path, trust, allow_unsigned, keep_payload=False):
    """Section 8 steps 1-7; with keep_payload, also returns the payload bytes it checked."""
    try:
        f, size = open_regular(path)  # a directory, pipe or device: I/O (step 1)
    except OSError as e:
        raise Fail("io", f"cannot read {path}: {e.strerror}") from None
    with f:
        envelope, header_len = read_header(f, size)                     # steps 1 and 3
        manifest, sigs = parse_envelope(envelope)                        # step 2
        warnings = check_signatures(manifest, sigs, trust, allow_unsigned)  # step 4
        m = decode_cbor(manifest, "manifest")
        total, chunks, digests, shards = validate_manifest(m)            # step 5
        expires = m["model"].get("expires")                              # freshness
        need(expires is None or time.time() <= expires + CLOCK_SKEW,
             f"model {m['model']['name']!r} expired", "freshness")
        inline = 0 if shards else total  # a sharded artifact's file ends at H (section 14)
        need(size >= header_len + inline, f"truncated: the file has {size} bytes, the layout needs {header_len + inline}")
        need(size <= header_len + inline, f"{size - header_len - inline} unexpected bytes after the "
             + ("header of a sharded artifact" if shards else "payload"))  # step 6
        placed = check_shards(path, shards) if shards else None          # step 6, section 14
        keep = [] if keep_payload else None
        reader = PayloadReader(f, header_len, placed)
        try:
            check_chunks(reader, chunks, digests, keep)                  # step 7
        finally:
            reader.close()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()          # section 7: artifact digest
    return Verified(digest, manifest, m, b"".join(keep) if keep_payload else None, warnings)


def verify(path, trust, allow_unsigned):
    """Returns the artifact digest and the warnings (section 4, rule 5)."""
    v = verify_artifact(path, trust, allow_unsigned)
    return v.digest, v.warnings


def load_trust(paths):
    """A trust store is .pub files or directories of them (section 7); keys are compared in full."""
    files = []
    for p in paths:
        files += sorted(os.path.join(p, n) for n in os.listdir(p) if n.endswith(".pub")) if os.path.isdir(p) else [p]
    keys = set()
    for p in files:
        try:
            key = serialization.load_pem_public_key(open(p, "rb").read())
        except OSError as e:
            raise Fail("io", f"cannot read {p}: {e.strerror}") from None
        except ValueError:
            key = None
        need(isinstance(key, Ed25519PublicKey), f"{p} is not a PEM Ed25519 public key", "input")
        keys.add(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    return keys


def run(path, trust_paths, allow_unsigned):
    """Returns (exit code, one line, warnings)."""
    try:
        digest, warnings = verify(path, load_trust(trust_paths), allow_unsigned)
        return 0, "ok " + digest + "".join(f"; warning: {w}" for w in warnings), warnings
    except Fail as e:
        return e.code, f"FAIL {e.category}: {e.reason}", []
    except OSError as e:
        return EXIT["io"], f"FAIL io: {e}", []


def run_vectors(json_path):
    """Runs the "vectors" list and the "encrypted" list's "expect" (verify without a key)."""
    base, total_bad = os.path.dirname(os.path.abspath(json_path)), 0
    data = json.load(open(json_path))
    for label, key in (("vectors", "vectors"), ("encrypted vectors (verify, no key)", "encrypted")):
        vectors, bad = data.get(key, []), 0
        for v in vectors:
            want = 0 if v["expect"]["ok"] else v["expect"]["exit_code"]
            code, msg, warnings = run(os.path.join(base, v["file"]), [os.path.join(base, t) for t in v["trust"]],
                                      v.get("allow_unsigned", False))
            # An accepted artifact is reported with a warning exactly when the vector expects one.
            ok = code == want and (code != 0 or bool(warnings) == ("warning_contains" in v["expect"]))
            bad += not ok
            print(f"{'agree' if ok else 'DISAGREE'} {v['file']}: want {want}, got {code}: {msg}")
        print(f"{len(vectors) - bad}/{len(vectors)} {label} agree")
        total_bad += bad
    return 0 if total_bad == 0 else 1


def main():
    ap = argparse.ArgumentParser(description="Verify an nnsign artifact (written from docs/FORMAT.md).")
    ap.add_argument("artifact", nargs="?")
    ap.add_argument("--trust", action="append", default=[], help=".pub file or directory of them")
    ap.add_argument("--allow-unsigned", action="store_true")
    ap.add_argument("--vectors", help="run every vector of a vectors.json")
    a = ap.parse_args()
    if a.vectors:
        sys.exit(run_vectors(a.vectors))
    if not a.artifact or not a.trust:
        ap.error("an ARTIFACT and at least one --trust are required")  # exit 2 (section 9: usage)
    code, msg, _ = run(a.artifact, a.trust, a.allow_unsigned)
    print(msg)
    sys.exit(code)


if __name__ == "__main__":
    main()
