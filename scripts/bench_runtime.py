#!/usr/bin/env python3
"""onnxruntime's side of the CPU inference benchmark: nnsign against onnxruntime, same threads.

    pip install onnx onnxruntime safetensors numpy
    python3 scripts/bench_runtime.py WORK_DIR --threads 2 [--iters 20]

Writes into WORK_DIR the two benchmark models, each as ONNX and in nnsign's form
(arch.json + weights.safetensors, by scripts/onnx_to_arch.py), their inputs and onnxruntime's
outputs for them, so that the nnsign side can run the same models on the same inputs and check
that it computes the same thing:

  mlp.onnx, mlp/{arch.json,weights.safetensors}, mlp_input.npy, mlp_expected.npy
      4 layers of width 1024 (MatMul, Add, Relu; no Relu after the last), random weights
      (seed 0, scaled by 1/sqrt(1024)); input float32 [256, 1024], batch dimension "batch"
  cnn/{arch.json,weights.safetensors}, cnn_input.npy, cnn_expected.npy
      tests/fixtures/onnx_cnn/model.onnx; input its 8 fixture images tiled to [256, 1, 28, 28]
  unet.onnx, bilstm.onnx, transformer.onnx, NAME_input.npz, NAME_expected.npy
      the torch.onnx.export models of tests/fixtures/models3 (issue 13), copied as they are
      (nnsign imports ONNX itself); random inputs (seed 1) at the batch sizes of MODELS3, in an
      .npz whose arrays are named after the graph inputs: unet x [16, 3, 64, 64], bilstm ids
      [256, 16] (int64), transformer x [256, 12, 32] and mask [256, 12] (bool, True = padding,
      at least one real token a row)

Each model is timed in onnxruntime (intra-op threads THREADS, inter-op 1, sequential, default
graph optimizations, CPU provider): 3 warm-up runs, then ITERS timed runs; stdout is a line a
model:

  onnxruntime mlp batch=256 threads=2 median_ms=12.345
  onnxruntime cnn batch=256 threads=2 median_ms=...
  onnxruntime unet batch=16 threads=2 median_ms=...

Then each nnsign form written by onnx_to_arch (mlp, cnn) is run by its NumPy interpreter, which
must agree with onnxruntime's output (max abs difference <= 1e-5 of the largest output), or the
script fails. The models3 graphs have no such second reference here: their fixtures hold
PyTorch's own outputs (scripts/make_runtime_models.py).
"""
import argparse
import os
import shutil
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import onnx_to_arch  # noqa: E402

ROOT = os.path.dirname(HERE)
CNN = os.path.join(ROOT, "tests", "fixtures", "onnx_cnn")
MODELS3 = os.path.join(ROOT, "tests", "fixtures", "models3")
WIDTH, LAYERS, BATCH = 1024, 4, 256
# Batch sizes that take onnxruntime some milliseconds on 2 cores.
MODELS3_BATCH = {"unet": 16, "bilstm": 256, "transformer": 256}


def mlp_model(rng):
    """x [batch, 1024] -> 4 x (MatMul, Add bias, Relu but after the last) -> y [batch, 1024]."""
    nodes, inits, h = [], [], "x"
    for i in range(LAYERS):
        w = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        b = (rng.standard_normal(WIDTH) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"fc{i}.weight"),
                  numpy_helper.from_array(b, f"fc{i}.bias")]
        last = i == LAYERS - 1
        nodes.append(helper.make_node("MatMul", [h, f"fc{i}.weight"], [f"fc{i}.mm"], name=f"fc{i}_matmul"))
        nodes.append(helper.make_node("Add", [f"fc{i}.mm", f"fc{i}.bias"],
                                      ["y" if last else f"fc{i}.pre"], name=f"fc{i}_add"))
        if not last:
            nodes.append(helper.make_node("Relu", [f"fc{i}.pre"], [f"fc{i}.out"], name=f"fc{i}_relu"))
            h = f"fc{i}.out"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="nnsign scripts/bench_runtime.py")
    onnx.checker.check_model(model)
    return model


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def models3_feed(name, n, rng):
    """Inputs for a models3 graph at batch n, named as its graph inputs."""
    if name == "unet":
        return {"x": rng.uniform(0, 1, (n, 3, 64, 64)).astype(np.float32)}
    if name == "bilstm":
        return {"ids": rng.integers(0, 1000, (n, 16), dtype=np.int64)}
    real = rng.integers(1, 13, n)  # real tokens a row, the rest padding
    return {"x": rng.standard_normal((n, 12, 32)).astype(np.float32),
            "mask": np.arange(12)[None, :] >= real[:, None]}


def bench(name, onnx_path, feed, work, threads, iters):
    """Times onnxruntime on `feed` (an array for the lone graph input, or a dict by name)."""
    sess = session(onnx_path, threads)
    if not isinstance(feed, dict):
        feed = {sess.get_inputs()[0].name: feed}
    for _ in range(3):
        (y,) = sess.run(None, feed)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    np.save(os.path.join(work, f"{name}_expected.npy"), y)
    print(f"onnxruntime {name} batch={next(iter(feed.values())).shape[0]} threads={threads} "
          f"median_ms={statistics.median(times) * 1e3:.3f}", flush=True)
    return y


def check(name, work, x, y):
    """The nnsign form, run by onnx_to_arch's NumPy interpreter, must compute what onnxruntime did."""
    arch, weights = onnx_to_arch.load(os.path.join(work, name))
    (ref,) = onnx_to_arch.run_graph(arch, weights, {arch["inputs"][0]["name"]: x})
    rel = float(np.abs(ref - y).max() / np.abs(ref).max())
    if not rel <= 1e-5:
        sys.exit(f"bench_runtime: {name}: nnsign form and onnxruntime differ (relative {rel:.3g})")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("work_dir")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    work = a.work_dir
    os.makedirs(work, exist_ok=True)

    rng = np.random.default_rng(0)
    mlp_path = os.path.join(work, "mlp.onnx")
    onnx.save(mlp_model(rng), mlp_path)
    onnx_to_arch.convert_file(mlp_path, os.path.join(work, "mlp"))
    mlp_x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    np.save(os.path.join(work, "mlp_input.npy"), mlp_x)

    cnn_path = os.path.join(CNN, "model.onnx")
    onnx_to_arch.convert_file(cnn_path, os.path.join(work, "cnn"))
    imgs = np.load(os.path.join(CNN, "inputs.npy"))
    cnn_x = np.ascontiguousarray(np.tile(imgs, (BATCH // len(imgs), 1, 1, 1)))
    np.save(os.path.join(work, "cnn_input.npy"), cnn_x)

    mlp_y = bench("mlp", mlp_path, mlp_x, work, a.threads, a.iters)
    cnn_y = bench("cnn", cnn_path, cnn_x, work, a.threads, a.iters)
    rng = np.random.default_rng(1)
    for name, n in MODELS3_BATCH.items():
        path = os.path.join(work, f"{name}.onnx")
        shutil.copyfile(os.path.join(MODELS3, f"{name}.onnx"), path)
        feed = models3_feed(name, n, rng)
        np.savez(os.path.join(work, f"{name}_input.npz"), **feed)
        bench(name, path, feed, work, a.threads, a.iters)
    check("mlp", work, mlp_x, mlp_y)  # after the timings, so that NumPy's threads stay idle
    check("cnn", work, cnn_x, cnn_y)


if __name__ == "__main__":
    main()
