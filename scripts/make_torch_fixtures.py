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

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils


def _rebuild_tensor_v2(*args):
    raise AssertionError("never called")


utils._rebuild_tensor_v2 = _rebuild_tensor_v2
_rebuild_tensor_v2.__module__ = "torch._utils"
for name in ("FloatStorage", "LongStorage"):
    cls = type(name, (), {"__module__": "torch"})
    setattr(torch, name, cls)


class Storage:
    def __init__(self, cls, key, data, numel):
        self.cls, self.key, self.data, self.numel = cls, key, data, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (_rebuild_tensor_v2, self.args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel, None)
        return None


w_storage = Storage(torch.FloatStorage, "140001", struct.pack("<6f", 0, 3, 1, 4, 2, 5), 6)
b_storage = Storage(torch.LongStorage, "140002", struct.pack("<2q", 7, -8), 2)
obj = collections.OrderedDict(
    w=Tensor(w_storage, 0, (2, 3), (1, 2)),
    n={"b": Tensor(b_storage, 0, (2,), (1,))},
)
out = io.BytesIO()
pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
pickle.dump(1001, out, protocol=2)
pickle.dump({"protocol_version": 1001, "little_endian": True,
             "type_sizes": {"short": 2, "int": 4, "long": 4}}, out, protocol=2)
Pickler(out, protocol=2).dump(obj)
storages = sorted([w_storage, b_storage], key=lambda s: s.key)
pickle.dump([s.key for s in storages], out, protocol=2)
for s in storages:
    out.write(struct.pack("<q", s.numel))
    out.write(s.data)
legacy = os.path.join(HERE, "..", "tests", "fixtures", "torch_legacy")
os.makedirs(legacy, exist_ok=True)
with open(os.path.join(legacy, "legacy.pt"), "wb") as f:
    f.write(out.getvalue())
print("wrote", os.path.join(legacy, "legacy.pt"), len(out.getvalue()), "bytes")
