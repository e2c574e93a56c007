#!/usr/bin/env python3
"""ONNX LSTM and GRU layers in nnsign against onnxruntime, same threads, same inputs.

    python3 scripts/bench_rnn.py [--threads 2] [--rounds 5] [--iters 20] [--only NAME,...]
                                 [--keep DIR] [--baseline EXE]

Builds single-node ONNX models (op-set 22, random weights and biases, seed 0, with Y as the
only graph output) into a temporary folder (or DIR, kept for profiling), with an input for each
and onnxruntime's Y (NAME.onnx, NAME_input.npz, NAME_expected.npy):

  lstm_s100_n1_h256     LSTM forward, seq 100, batch 1, input 128, hidden 256
  bilstm_s100_n16_h256  LSTM bidirectional, seq 100, batch 16, input 128, hidden 256
  gru_lbr_s200_n1_h512  GRU linear_before_reset=1 (as PyTorch exports), seq 200, batch 1,
                        input 128, hidden 512
  lstm_s50_n4_h64       LSTM forward, seq 50, batch 4, input 64, hidden 64
  bilstm_s16_n256_h32   LSTM bidirectional, seq 16, batch 256, input 32, hidden 32: the layer
                        of tests/fixtures/models3/bilstm.onnx at the batch bench_runtime.py uses
  gru_s100_n8_h128      GRU linear_before_reset=0 (ONNX's default), seq 100, batch 8, input 64,
                        hidden 128

(The input sizes the issue leaves open are 128, or 64 for the small layers.) Every layer is
time-major (layout 0), as onnxruntime requires.

Rounds alternate the two runtimes, so that a shared machine's slow spells hit both: in each
round, each model is timed in onnxruntime (intra-op threads THREADS, inter-op 1, sequential; 3
warm-up runs, then ITERS runs) and then in nnsign by examples/bench_runtime.rs (built here with
`cargo build --release --example bench_runtime`, run with RAYON_NUM_THREADS=THREADS; it imports
the ONNX file itself, warms up 3 runs and times ITERS). Each prints its median; the result is
each side's best median over the rounds and their ratio (nnsign / onnxruntime; goal <= 1.5).
nnsign's Y must be within 1e-4 of onnxruntime's, or the script fails.

With --baseline, EXE (another build of examples/bench_runtime, such as one of the commit
before a change) is timed too, after nnsign in each round, and its ratio is reported beside:
before and after, from the same run.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# onnxruntime set up as the runtime benchmark does (same threads, sequential).
from bench_runtime import session

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-4

# name: (op, direction, seq, batch, input, hidden, extra attributes)
CASES = {
    "lstm_s100_n1_h256": ("LSTM", "forward", 100, 1, 128, 256, {}),
    "bilstm_s100_n16_h256": ("LSTM", "bidirectional", 100, 16, 128, 256, {}),
    "gru_lbr_s200_n1_h512": ("GRU", "forward", 200, 1, 128, 512, {"linear_before_reset": 1}),
    "lstm_s50_n4_h64": ("LSTM", "forward", 50, 4, 64, 64, {}),
    "bilstm_s16_n256_h32": ("LSTM", "bidirectional", 16, 256, 32, 32, {}),
    "gru_s100_n8_h128": ("GRU", "forward", 100, 8, 64, 128, {}),
}


def model(op, direction, seq, batch, inp, hs, extra, rng):
    dirs = 2 if direction == "bidirectional" else 1
    gates = 4 if op == "LSTM" else 3
    scale = 1 / np.sqrt(hs)
    w = rng.uniform(-scale, scale, (dirs, gates * hs, inp)).astype(np.float32)
    r = rng.uniform(-scale, scale, (dirs, gates * hs, hs)).astype(np.float32)
    b = rng.uniform(-scale, scale, (dirs, 2 * gates * hs)).astype(np.float32)
    node = helper.make_node(op, ["X", "W", "R", "B"], ["Y"], hidden_size=hs,
                            direction=direction, **extra)
    graph = helper.make_graph(
        [node], op.lower(),
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [seq, batch, inp])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [seq, dirs, batch, hs])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R"),
         numpy_helper.from_array(b, "B")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)],
                          producer_name="nnsign scripts/bench_rnn.py")
    onnx.checker.check_model(m)
    return m


def time_ort(sess, x, iters):
    for _ in range(3):
        (y,) = sess.run(None, {"X": x})
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, {"X": x})
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, y


def time_nnsign(exe, work, name, iters, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        [exe, os.path.join(work, f"{name}.onnx"), os.path.join(work, f"{name}_input.npz"),
         os.path.join(work, f"{name}_expected.npy"), str(iters)],
        env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench_rnn: nnsign cannot run {name}: {out.stderr.strip()}")
    ms = float(re.search(r"median_ms=([0-9.]+)", out.stdout).group(1))
    diff = float(re.search(r"max_abs_diff=([0-9.e+-]+)", out.stdout).group(1))
    if not diff <= TOL:
        sys.exit(f"bench_rnn: {name}: nnsign's Y differs from onnxruntime's by {diff:.3g}")
    return ms


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--only", help="comma-separated case names")
    p.add_argument("--baseline", metavar="EXE",
                   help="another build of examples/bench_runtime to time alongside")
    p.add_argument("--keep", metavar="DIR",
                   help="write the models, inputs and expected outputs into DIR and keep them")
    a = p.parse_args()
    names = a.only.split(",") if a.only else list(CASES)
    for n in names:
        if n not in CASES:
            sys.exit(f"bench_rnn: no case {n!r} (cases: {', '.join(CASES)})")

    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "bench_runtime"],
                   cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    exe = os.path.join(target, "release", "examples", "bench_runtime")

    with tempfile.TemporaryDirectory() as tmp:
        work = a.keep or tmp
        os.makedirs(work, exist_ok=True)
        rng = np.random.default_rng(0)
        sessions = {}
        for name in names:
            op, direction, seq, batch, inp, hs, extra = CASES[name]
            path = os.path.join(work, f"{name}.onnx")
            onnx.save(model(op, direction, seq, batch, inp, hs, extra, rng), path)
            x = rng.standard_normal((seq, batch, inp)).astype(np.float32)
            np.savez(os.path.join(work, f"{name}_input.npz"), X=x)
            sessions[name] = (session(path, a.threads), x)

        best = {}
        for r in range(1, a.rounds + 1):
            for name in names:
                sess, x = sessions[name]
                theirs, y = time_ort(sess, x, a.iters)
                np.save(os.path.join(work, f"{name}_expected.npy"), y)
                ours = time_nnsign(exe, work, name, a.iters, a.threads)
                line = f"round {r} {name}: onnxruntime {theirs:.3f} ms, nnsign {ours:.3f} ms"
                base = float("inf")
                if a.baseline:
                    base = time_nnsign(a.baseline, work, name, a.iters, a.threads)
                    line += f", baseline {base:.3f} ms"
                print(line, flush=True)
                o, t, b = best.get(name, (ours, theirs, base))
                best[name] = (min(o, ours), min(t, theirs), min(b, base))

    print(f"best medians of {a.rounds} alternating rounds, {a.threads} threads:")
    for name in names:
        ours, theirs, base = best[name]
        line = (f"{name:22} onnxruntime {theirs:8.3f} ms  nnsign {ours:8.3f} ms  "
                f"ratio {ours / theirs:.2f}")
        if a.baseline:
            line += f"  (baseline {base:8.3f} ms, ratio {base / theirs:.2f})"
        print(line)


if __name__ == "__main__":
    main()
