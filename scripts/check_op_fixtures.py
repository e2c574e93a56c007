#!/usr/bin/env python3
"""Cross-checks tests/fixtures/ops/ (written by scripts/make_op_fixtures.py) against onnxruntime.

Every case is rebuilt as an ONNX model from its nnsign graph (docs/SCHEMA.md) and the weights
in its .npz, run with onnxruntime (graph optimizations off), and its outputs are compared with
the stored references: F32 within the case's absolute tolerance, I64 exactly, shapes equal.
Where the schema gives as attributes what ONNX takes as inputs (Reshape's shape; Slice's starts,
ends, axes and steps; Squeeze's and Unsqueeze's axes; Dropout's ratio), they become int64 (or
float) initializers. `Dense` is not an ONNX op: it becomes MatMul, Add (bias) and the
activation (Softmax over the last axis). Nodes are sorted topologically first (the schema
allows any order, ONNX does not). Models use opset 17, or opset 20 when they contain `Gelu`
(which ONNX added in opset 20). Run from the repository root (DIR defaults to
tests/fixtures/ops):

    pip install numpy onnx onnxruntime && python3 scripts/check_op_fixtures.py [DIR]

Exits 1 if any case disagrees.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

DIR = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ops"
DTYPES = {"F32": TensorProto.FLOAT, "I64": TensorProto.INT64}


def value_info(v):
    return helper.make_tensor_value_info(v["name"], DTYPES[v["dtype"]], v["shape"])


def topological(arch):
    """The nodes in an order where every input is ready (the schema allows any order; ONNX
    wants them sorted)."""
    ready = {v["name"] for v in arch["inputs"]}
    produced = {o for n in arch["nodes"] for o in n["outputs"]}
    pending, order = list(arch["nodes"]), []
    while pending:
        n = next(n for n in pending
                 if all(i in ready or i not in produced for i in n["inputs"]))
        pending.remove(n)
        order.append(n)
        ready.update(n["outputs"])
    return order


def to_onnx(arch, arrays):
    inits = [numpy_helper.from_array(a, name=k[len("weight."):])
             for k, a in arrays.items() if k.startswith("weight.")]
    nodes = []

    def const_input(node, key, values, dtype=np.int64):
        name = f"{node['name']}__{key}"
        inits.append(numpy_helper.from_array(np.array(values, dtype=dtype), name=name))
        return name

    for n in topological(arch):
        op, ins, attrs = n["op"], list(n["inputs"]), dict(n.get("attrs", {}))
        if op == "Dense":  # not ONNX: MatMul, Add of the bias, then the activation
            x, kernel, bias = (ins + ["", ""])[:3]
            y = n["outputs"][0]
            act = attrs.pop("activation", "linear")
            assert not attrs
            steps = [("MatMul", [x, kernel], {})]
            if bias:
                steps.append(("Add", [None, bias], {}))
            if act != "linear":
                op_name = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh",
                           "softmax": "Softmax"}[act]
                steps.append((op_name, [None], {"axis": -1} if act == "softmax" else {}))
            prev = None
            for k, (sop, sins, sattrs) in enumerate(steps):
                out = y if k == len(steps) - 1 else f"{n['name']}__{k}"
                sins = [prev if i is None else i for i in sins]
                nodes.append(helper.make_node(sop, sins, [out], name=f"{n['name']}__{sop}",
                                              **sattrs))
                prev = out
            continue
        if op == "Reshape":
            ins.append(const_input(n, "shape", attrs.pop("shape")))
        elif op == "Slice":
            starts, ends = attrs.pop("starts"), attrs.pop("ends")
            ins += [const_input(n, "starts", starts), const_input(n, "ends", ends)]
            if "axes" in attrs or "steps" in attrs:
                ins.append(const_input(n, "axes", attrs.pop("axes", list(range(len(starts))))))
            if "steps" in attrs:
                ins.append(const_input(n, "steps", attrs.pop("steps")))
        elif op in ("Squeeze", "Unsqueeze") and "axes" in attrs:
            ins.append(const_input(n, "axes", attrs.pop("axes")))
        elif op == "Dropout" and "ratio" in attrs:
            ins.append(const_input(n, "ratio", attrs.pop("ratio"), np.float32))
        elif op == "Constant" and "shape" in attrs:
            shape = attrs.pop("shape")
            if "value_floats" in attrs:
                v = np.array(attrs.pop("value_floats"), dtype=np.float32).reshape(shape)
            else:
                v = np.array(attrs.pop("value_ints"), dtype=np.int64).reshape(shape)
            attrs["value"] = numpy_helper.from_array(v)
        nodes.append(helper.make_node(op, ins, n["outputs"], name=n["name"], **attrs))

    opset = 20 if any(n["op"] == "Gelu" for n in arch["nodes"]) else 17
    graph = helper.make_graph(nodes, "case", [value_info(v) for v in arch["inputs"]],
                              [value_info(v) for v in arch["outputs"]], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    with open(os.path.join(DIR, "cases.json")) as f:
        cases = json.load(f)["cases"]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    failed = []
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    for case in cases:
        name, arch, tol = case["name"], case["arch"], case["tolerance"]
        with np.load(os.path.join(DIR, name + ".npz")) as z:
            arrays = {k: z[k] for k in z.files}
        try:
            model = to_onnx(arch, arrays)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"FAIL  {name}: ONNX model rejected: {e}")
            failed.append(name)
            continue
        try:
            sess = ort.InferenceSession(model.SerializeToString(), opts,
                                        providers=["CPUExecutionProvider"])
            feeds = {v["name"]: arrays["input." + v["name"]] for v in arch["inputs"]}
            got = sess.run([v["name"] for v in arch["outputs"]], feeds)
        except Exception as e:  # noqa: BLE001
            print(f"FAIL  {name}: onnxruntime: {e}")
            failed.append(name)
            continue
        worst, problems = 0.0, []
        for v, g in zip(arch["outputs"], got):
            want = arrays["output." + v["name"]]
            if g.shape != want.shape or g.dtype != want.dtype:
                problems.append(f"{v['name']}: {g.dtype}{list(g.shape)} vs "
                                f"{want.dtype}{list(want.shape)}")
                continue
            if v["dtype"] == "I64":
                if not np.array_equal(g, want):
                    problems.append(f"{v['name']}: int64 values differ")
            else:
                d = float(np.max(np.abs(g.astype(np.float64) - want.astype(np.float64)),
                                 initial=0.0))
                worst = max(worst, d)
                if not d <= tol:
                    problems.append(f"{v['name']}: max abs diff {d:.3g} > {tol:g}")
        if problems:
            print(f"FAIL  {name}: " + "; ".join(problems))
            failed.append(name)
        else:
            print(f"ok    {name}: max abs diff {worst:.3g} (tolerance {tol:g})")
    print(f"{len(cases)} cases, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
