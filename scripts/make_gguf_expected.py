#!/usr/bin/env python3
"""Reference values for tests/fixtures/gguf_tiny/model.gguf, read with llama.cpp's own Python
reader (the `gguf` package), not with nnsign:

    pip install gguf numpy
    python3 scripts/make_gguf_expected.py

Writes tests/fixtures/gguf_tiny/expected.npz: every tensor as numpy gives it (shape in numpy
order; the quantized one as its raw bytes, uint8), and metadata.json: each key's value.
"""
import json
import os

import numpy as np
from gguf import GGUFReader

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.path.join(HERE, "..", "tests", "fixtures", "gguf_tiny")
r = GGUFReader(os.path.join(DIR, "model.gguf"))
arrays = {}
for t in r.tensors:
    data = np.asarray(t.data)
    if t.tensor_type.name not in ("F32", "F16"):
        data = np.frombuffer(data.tobytes(), dtype=np.uint8)
    arrays[t.name] = data
np.savez(os.path.join(DIR, "expected.npz"), **arrays)
meta = {}
for k, f in r.fields.items():
    if k.startswith("GGUF."):
        continue
    v = f.contents()
    meta[k] = v
with open(os.path.join(DIR, "metadata.json"), "w") as fh:
    json.dump(meta, fh, indent=1, sort_keys=True, default=str)
print({k: (v.shape, str(v.dtype)) for k, v in arrays.items()})
