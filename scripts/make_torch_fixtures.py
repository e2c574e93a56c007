#!/usr/bin/env python3
"""Damaged PyTorch checkpoints the zip writer of tests/torch.rs cannot make, from the real
tests/fixtures/torch_real/test.pt (standard library only):

    python3 scripts/make_torch_fixtures.py

  tests/fixtures/torch_bad/duplicate.pt   test.pt with its test/data/0 record written twice
                                          (the second holding other values)
  tests/fixtures/torch_bad/duplicate.npz  an .npz whose member a.npy appears twice
  tests/fixtures/torch_legacy/legacy.pt   the legacy (pre-1.6, non-zip) torch.save layout of
                                          {"w": arange(6).reshape(2, 3) as float32 with strides
                                          (1, 2) (Fortran order), "n": {"b": int64 [7, -8]}},
                                          written by hand after torch/serialization.py's
                                          _legacy_save (torch is not installed here): magic,
                                          protocol 1001, system info, the object with storages
                                          as persistent ids, the sorted storage keys, then each
                                          storage as an int64 count and its bytes
  tests/fixtures/torch_pickle/state_dict.pkl  pickle.dump(model.state_dict(), f, protocol=2)
                                          of a small model as PyTorch 2.x pickles tensors
                                          (stand-ins with the same global names): each
                                          storage a legacy torch.save stream in bytes; float32
                                          weight and bias, a 0-d int64, a Fortran-order view
                                          and two views of one storage at offsets 0 and 4;
                                          the OrderedDict's _metadata kept by a BUILD
  tests/fixtures/torch_pickle/state_dict_protocol4.pkl  the same at Python's default protocol
  tests/fixtures/torch_pickle/memo_shared.pkl  the same, with the two views' storage pickled
                                          once and shared through the memo
  tests/fixtures/torch_pickle/big_endian_host.pkl  the same as a big-endian machine writes it:
                                          only the streams' system info differs
  tests/fixtures/torch_pickle/expected.npz  every tensor of those, in C order, from numpy
"""
import os
import warnings
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "tests", "fixtures", "torch_real", "test.pt")
OUT = os.path.join(HERE, "..", "tests", "fixtures", "torch_bad")
os.makedirs(OUT, exist_ok=True)

with zipfile.ZipFile(SRC) as z:
    records = [(i.filename, z.read(i)) for i in z.infolist()]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Duplicate name": that is the point
    with zipfile.ZipFile(os.path.join(OUT, "duplicate.pt"), "w", zipfile.ZIP_STORED) as z:
        for name, data in records:
            z.writestr(name, data)
        z.writestr("test/data/0", bytes(64))
NPY = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }" 
NPY = NPY + b" " * (127 - len(NPY)) + b"\n"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with zipfile.ZipFile(os.path.join(OUT, "duplicate.npz"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.npy", NPY + b"\x00\x00\x80\x3f")
        z.writestr("a.npy", NPY + b"\x00\x00\x00\x40")
print("wrote", sorted(os.listdir(OUT)))

# The legacy layout, with stand-ins for torch's classes: pickle records a global by module and
# name, so a fake `torch` module with the right names yields the bytes torch writes.
import collections
import io
import pickle
import struct
import sys
import types

import numpy as np

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
storage_module = types.ModuleType("torch.storage")
sys.modules.update({"torch": torch, "torch._utils": utils, "torch.storage": storage_module})


def never_called(module, name):
    def f(*args):
        raise AssertionError("never called")
    f.__module__, f.__name__, f.__qualname__ = module, name, name
    setattr(sys.modules[module], name, f)
    return f


_rebuild_tensor_v2 = never_called("torch._utils", "_rebuild_tensor_v2")
_load_from_bytes = never_called("torch.storage", "_load_from_bytes")
STORAGE_CLASS = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}
for name in STORAGE_CLASS.values():
    setattr(torch, name, type(name, (), {"__module__": "torch"}))


class Storage:
    """A torch storage of the elements of `array` (its bytes, in memory order), under `key`
    (torch uses the storage's address). Pickled on its own, it is what torch/storage.py's
    TypedStorage.__reduce__ returns: _load_from_bytes of a legacy torch.save stream of itself."""

    def __init__(self, key, array):
        self.cls = getattr(torch, STORAGE_CLASS[array.dtype])
        self.key, self.data, self.numel = key, array.tobytes(order="A"), array.size

    def __reduce__(self):
        return (_load_from_bytes, (legacy_save(self),))


class Tensor:
    """A view of a storage. Pickled, it is what torch/_tensor.py's _reduce_ex_internal returns:
    _rebuild_tensor_v2 of a storage, offset, size, stride, requires_grad and empty backward
    hooks. Torch wraps the storage in a new TypedStorage each time, so the pickle memo does not
    share it between tensors and each carries its own copy; `fresh = False` passes the same
    object each time, which the memo then shares."""
    fresh = True

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        s = self.storage
        if Tensor.fresh:
            s = Storage.__new__(Storage)
            s.__dict__.update(vars(self.storage))
        return (_rebuild_tensor_v2,
                (s, self.offset, self.size, self.stride, False, collections.OrderedDict()))


def legacy_save(obj):
    """torch/serialization.py's _legacy_save of `obj` at pickle protocol 2: magic, protocol
    1001, system info, the object with storages as persistent ids, the sorted storage keys,
    then each storage as an int64 element count and its bytes, little-endian on any machine
    (THPStorage_writeFileRaw); legacy_save.little_endian is what the system info says of the
    machine."""
    storages = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                storages[o.key] = o
                return ("storage", o.cls, o.key, "cpu", o.numel, None)
            return None

    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": legacy_save.little_endian,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, out, protocol=2)
    Pickler(out, protocol=2).dump(obj)
    pickle.dump(sorted(storages), out, protocol=2)
    for key in sorted(storages):
        out.write(struct.pack("<q", storages[key].numel))
        out.write(storages[key].data)
    return out.getvalue()


legacy_save.little_endian = True
w_storage = Storage("140001", np.array([0, 3, 1, 4, 2, 5], np.float32))
b_storage = Storage("140002", np.array([7, -8], np.int64))
obj = collections.OrderedDict(
    w=Tensor(w_storage, 0, (2, 3), (1, 2)),
    n={"b": Tensor(b_storage, 0, (2,), (1,))},
)
legacy = os.path.join(HERE, "..", "tests", "fixtures", "torch_legacy")
os.makedirs(legacy, exist_ok=True)
with open(os.path.join(legacy, "legacy.pt"), "wb") as f:
    f.write(legacy_save(obj))
print("wrote", os.path.join(legacy, "legacy.pt"))

# A raw pickle of a state dict, as pickle.dump(model.state_dict(), f) writes it.
rng = np.random.default_rng(20261128)
# 128 elements: the element count before the weight's bytes starts with 0x80, like a pickle.
fc_weight = rng.standard_normal((4, 32), dtype=np.float32)
fc_bias = np.array([0.5, -0.0, 1e-45, -2.25], np.float32)  # a negative zero and a subnormal
proj_t = rng.standard_normal((3, 2), dtype=np.float32)  # stored as [3, 2], viewed as its .t()
qkv = rng.standard_normal(12, dtype=np.float32)
tracked = np.array(1234567890123, np.int64)
qkv_storage = Storage("94210000001792", qkv)
state = collections.OrderedDict([
    ("fc.weight", Tensor(Storage("94210000000000", fc_weight), 0, (4, 32), (32, 1))),
    ("fc.bias", Tensor(Storage("94210000000512", fc_bias), 0, (4,), (1,))),
    ("bn.num_batches_tracked", Tensor(Storage("94210000001024", tracked.reshape(1)), 0, (), ())),
    ("proj.weight", Tensor(Storage("94210000001536", proj_t), 0, (2, 3), (1, 2))),
    ("attn.q", Tensor(qkv_storage, 0, (4,), (1,))),
    ("attn.kv", Tensor(qkv_storage, 4, (2, 4), (4, 1))),
])
# Module.state_dict() sets this attribute; pickle keeps it with a BUILD.
state._metadata = collections.OrderedDict([
    ("", {"version": 1}), ("fc", {"version": 1}), ("bn", {"version": 2}), ("proj", {"version": 1}),
])
expected = {
    "fc.weight": fc_weight, "fc.bias": fc_bias, "bn.num_batches_tracked": tracked,
    "proj.weight": proj_t.T, "attn.q": qkv[:4], "attn.kv": qkv[4:].reshape(2, 4),
}
pickled = os.path.join(HERE, "..", "tests", "fixtures", "torch_pickle")
os.makedirs(pickled, exist_ok=True)
for name, protocol, fresh, little in [("state_dict.pkl", 2, True, True),
                                      ("state_dict_protocol4.pkl", 4, True, True),
                                      ("memo_shared.pkl", 2, False, True),
                                      ("big_endian_host.pkl", 2, True, False)]:
    Tensor.fresh, legacy_save.little_endian = fresh, little
    with open(os.path.join(pickled, name), "wb") as f:
        pickle.dump(state, f, protocol=protocol)
np.savez(os.path.join(pickled, "expected.npz"),
         **{k: v.copy(order="C") for k, v in expected.items()})
print("wrote", sorted(os.listdir(pickled)))
