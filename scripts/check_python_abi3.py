#!/usr/bin/env python3
"""The one abi3 wheel works on this interpreter: a signed round trip of arrays of every common
dtype, a refused untrusted key, a refused damaged copy. Run by .ci/run under the oldest and
newest CPython the machine has (the wheel claims 3.9 and later).

    python scripts/check_python_abi3.py
"""
import os
import sys
import tempfile

import numpy as np

import nnsign

with tempfile.TemporaryDirectory() as d:
    key, pub = nnsign.keygen(os.path.join(d, "ci"))
    _, other = nnsign.keygen(os.path.join(d, "other"))
    arrays = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "i64": np.array([-1, 2**40], dtype=np.int64),
        "b": np.array([True, False]),
        "f16": np.array([0.5, -2.0], dtype=np.float16),
    }
    art = os.path.join(d, "m.nns")
    nnsign.save(arrays, art, sign=key, version="1.0.0")
    m = nnsign.load(art, trust=pub)
    for name, a in arrays.items():
        got = m.tensors[name]
        assert got.dtype == a.dtype and np.array_equal(got, a), name
        assert not got.flags.writeable, name
    try:
        nnsign.load(art, trust=other)
        raise SystemExit("an untrusted key was accepted")
    except nnsign.SignatureError as e:
        assert e.exit_code == 4, e.exit_code
    data = bytearray(open(art, "rb").read())
    data[-1] ^= 1
    bad = os.path.join(d, "bad.nns")
    open(bad, "wb").write(data)
    try:
        nnsign.load(bad, trust=pub)
        raise SystemExit("a damaged copy was accepted")
    except nnsign.IntegrityError as e:
        assert e.exit_code == 5, e.exit_code
print(f"ok: nnsign {nnsign.__version__} on CPython {sys.version.split()[0]}, numpy {np.__version__}")
