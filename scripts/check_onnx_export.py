#!/usr/bin/env python3
"""Independent check of `nnsign unpack --format onnx` and `--format npz`: the models nnsign
writes run in onnxruntime (and pass onnx.checker) with the frameworks' own outputs, and the
NumPy archives load in numpy bit-identical to the weights that went in.

    python3 scripts/check_onnx_export.py target/debug/nnsign     (needs onnx, onnxruntime)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/nnsign")
F = os.path.abspath("tests/fixtures")
failed = 0


def nnsign(*args):
    subprocess.run([BIN, *args, "--quiet"], check=True)


def check(ok, what):
    global failed
    print(("ok   " if ok else "FAIL ") + what)
    failed += not ok


with tempfile.TemporaryDirectory() as d:
    cases = [
        ("cnn", [f"{F}/onnx_cnn/model.onnx"], f"{F}/onnx_cnn/inputs.npy", f"{F}/onnx_cnn/expected.npy"),
        ("mlp", [f"{F}/keras_seed_mlp/weights.safetensors", "--arch", f"{F}/keras_seed_mlp/arch.json"],
         f"{F}/keras_seed_mlp/inputs.npy", f"{F}/keras_seed_mlp/expected.npy"),
    ]
    for name, inputs, x, y in cases:
        art, out = os.path.join(d, name + ".nns"), os.path.join(d, name + ".onnx")
        nnsign("pack", *inputs, "-o", art)
        nnsign("unpack", art, "--allow-unsigned", "--format", "onnx", "-o", out)
        onnx.checker.check_model(onnx.load(out))
        s = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
        got = s.run(None, {s.get_inputs()[0].name: np.load(x)})[0]
        diff = float(np.abs(got - np.load(y)).max())
        check(diff <= 1e-5, f"{name}: onnxruntime on nnsign's ONNX matches the reference (max diff {diff:.1e})")
    art, npz = os.path.join(d, "dtypes.nns"), os.path.join(d, "dtypes.npz")
    nnsign("pack", f"{F}/keras_seed_mlp/weights.safetensors", "-o", art)
    nnsign("unpack", art, "--allow-unsigned", "--format", "npz", "-o", npz)
    from safetensors.numpy import load_file
    want = load_file(f"{F}/keras_seed_mlp/weights.safetensors")
    z = np.load(npz)
    check(sorted(z.files) == sorted(want) and all(np.array_equal(z[k], want[k]) and z[k].dtype == want[k].dtype for k in want),
          "npz: numpy reads every tensor bit-identical")
sys.exit(1 if failed else 0)
