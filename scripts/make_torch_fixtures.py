#!/usr/bin/env python3
"""Damaged PyTorch checkpoints the zip writer of tests/torch.rs cannot make, from the real
tests/fixtures/torch_real/test.pt (standard library only):

    python3 scripts/make_torch_fixtures.py

  tests/fixtures/torch_bad/duplicate.pt   test.pt with its test/data/0 record written twice
                                          (the second holding other values)
  tests/fixtures/torch_bad/duplicate.npz  an .npz whose member a.npy appears twice
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
