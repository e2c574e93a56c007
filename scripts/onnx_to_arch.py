#!/usr/bin/env python3
"""Converts an ONNX model (opset 13 to 17) into an nnsign graph (docs/SCHEMA.md, op-set 2).

A stop-gap that makes test fixtures until nnsign imports ONNX itself. Run from anywhere:

    pip install onnx numpy safetensors
    python3 scripts/onnx_to_arch.py MODEL.onnx OUT_DIR [--check INPUTS.npy EXPECTED.npy]

writes OUT_DIR/arch.json and OUT_DIR/weights.safetensors. Nodes map one to one. Every
initializer is written under its ONNX name, in the dtype it is stored in, except the constant
shapes and axes of Reshape, Slice, Squeeze and Unsqueeze, which nnsign takes as attributes. The
first dimension of every graph input and output becomes the symbol "batch" (as does the symbol it
had, wherever else it appears). An op or attribute this script does not map is an error that
names it.

--check runs the written arch.json and weights with a small NumPy interpreter (float64, written
from the ONNX operator definitions, not from nnsign or onnxruntime) on INPUTS.npy (fed to the
lone graph input) and fails unless the output is within 1e-5 of EXPECTED.npy.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper
from safetensors.numpy import load_file, save_file

# The ops of op-set 2 and the attributes nnsign defines for each (docs/SCHEMA.md).
OPS = {op: () for op in ["Add", "Sub", "Mul", "Div", "Pow", "Relu", "Sigmoid", "Tanh", "Exp",
                         "Sqrt", "Erf", "Identity", "MatMul", "GlobalAveragePool", "Slice",
                         "Squeeze", "Unsqueeze"]}
OPS.update({
    "LeakyRelu": ("alpha",), "Gelu": ("approximate",), "Softmax": ("axis",), "Dropout": (),
    "Gemm": ("alpha", "beta", "transA", "transB"),
    "Conv": ("strides", "pads", "dilations", "group", "kernel_shape", "auto_pad"),
    "MaxPool": ("kernel_shape", "strides", "pads", "dilations", "ceil_mode", "storage_order",
                "auto_pad"),
    "AveragePool": ("kernel_shape", "strides", "pads", "ceil_mode", "auto_pad",
                    "count_include_pad"),
    "BatchNormalization": ("epsilon", "momentum", "training_mode"),
    "LayerNormalization": ("axis", "epsilon", "stash_type"),
    "Flatten": ("axis",), "Reshape": ("allowzero",), "Transpose": ("perm",),
    "Concat": ("axis",), "Gather": ("axis",),
    "Constant": ("value_float", "value_floats", "value_int", "value_ints"),
})
# ONNX inputs that nnsign takes as attributes: (op, input position) -> attribute.
INPUT_ATTRS = {("Reshape", 1): "shape", ("Slice", 1): "starts", ("Slice", 2): "ends",
               ("Slice", 3): "axes", ("Slice", 4): "steps", ("Squeeze", 1): "axes",
               ("Unsqueeze", 1): "axes"}
# ONNX inputs and attributes that inference ignores and nnsign does not take.
DROPPED_INPUTS = {("Dropout", 1), ("Dropout", 2)}
DROPPED_ATTRS = {("Dropout", "seed")}
DTYPES = {onnx.TensorProto.FLOAT: "F32", onnx.TensorProto.INT64: "I64"}


def fail(msg):
    sys.exit(f"onnx_to_arch: {msg}")


def value_info(vi, rename):
    """An ONNX graph input or output as an nnsign ValueInfo, its first dimension "batch"."""
    t = vi.type.tensor_type
    if t.elem_type not in DTYPES:
        fail(f"graph value '{vi.name}' has ONNX element type "
             f"{onnx.TensorProto.DataType.Name(t.elem_type)}; nnsign takes F32 or I64")
    if not t.HasField("shape"):
        fail(f"graph value '{vi.name}' has no shape")
    shape = []
    for i, d in enumerate(t.shape.dim):
        if i == 0:
            shape.append("batch")
        elif d.HasField("dim_value"):
            shape.append(d.dim_value)
        elif d.dim_param:
            shape.append(rename.get(d.dim_param, d.dim_param))
        else:
            fail(f"graph value '{vi.name}': dimension {i} has neither a size nor a symbol")
    return {"name": vi.name, "dtype": DTYPES[t.elem_type], "shape": shape}


def attr_value(node, a):
    v = helper.get_attribute_value(a)
    if a.type == onnx.AttributeProto.STRING:
        return v.decode()
    if a.type == onnx.AttributeProto.INTS:
        return [int(x) for x in v]
    if a.type == onnx.AttributeProto.FLOATS:
        return [float(x) for x in v]
    if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT):
        return v
    fail(f"{node.op_type} node '{node.name}': attribute '{a.name}' has a type nnsign lacks")


def constant_array(node):
    (a,) = node.attribute
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    if a.name not in OPS["Constant"]:
        fail(f"Constant node '{node.name}': attribute '{a.name}' is not in nnsign's Constant")
    return np.array(helper.get_attribute_value(a))


def constant_attrs(node):
    """An ONNX Constant's attributes in nnsign's form (a tensor `value` becomes a list + shape)."""
    (a,) = node.attribute
    if a.name != "value":
        return {a.name: attr_value(node, a)}
    arr = constant_array(node)
    kind = "floats" if arr.dtype.kind == "f" else "ints" if arr.dtype.kind in "iu" else None
    if kind is None:
        fail(f"Constant node '{node.name}': a {arr.dtype} value cannot be an nnsign Constant")
    return {"value_" + kind: arr.ravel().tolist(), "shape": list(arr.shape)}


def convert(model):
    """Returns (arch, weights): the nnsign graph as a dict and the weights by name."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not 13 <= opset <= 17:
        fail(f"the model uses ONNX opset {opset}; this script maps opset 13 to 17")
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consts = dict(inits)  # values known before running: initializers and Constant outputs
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = constant_array(n)
    # Initializers and Constants only read as shapes/axes (or dropped) are not written.
    used = {o.name for o in g.output}
    for n in g.node:
        used.update(x for k, x in enumerate(n.input)
                    if (n.op_type, k) not in INPUT_ATTRS and (n.op_type, k) not in DROPPED_INPUTS)
    # The symbol of the first input's first dimension is renamed "batch" everywhere.
    graph_inputs = [vi for vi in g.input if vi.name not in inits]
    first = graph_inputs[0].type.tensor_type.shape.dim if graph_inputs else []
    rename = {first[0].dim_param: "batch"} if first and first[0].dim_param else {}

    nodes, names = [], set()
    for i, n in enumerate(g.node):
        op = n.op_type
        where = f"node #{i}" + (f" '{n.name}'" if n.name else "")
        if n.domain not in ("", "ai.onnx"):
            fail(f"{where} has op {op} from domain '{n.domain}', which nnsign lacks")
        if op not in OPS:
            fail(f"{where} has op {op}, which this script does not map to nnsign")
        if op == "Constant" and n.output[0] not in used:
            continue
        name = n.name if n.name and n.name not in names else f"{op}_{i}"
        if name in names:
            fail(f"node name '{name}' is not unique")
        names.add(name)
        outputs = list(n.output)
        while outputs and outputs[-1] == "":
            outputs.pop()
        if len(outputs) != 1:
            fail(f"{op} node '{name}' has {len(outputs)} outputs; nnsign ops have one")
        attrs = {}
        if op == "Constant":
            attrs = constant_attrs(n)
        for a in n.attribute:
            if op == "Constant" or (op, a.name) in DROPPED_ATTRS:
                continue
            if a.name not in OPS[op]:
                fail(f"{op} node '{name}': attribute '{a.name}' is not in nnsign's {op}")
            attrs[a.name] = attr_value(n, a)
        inputs = []
        for k, x in enumerate(n.input):
            if (op, k) in DROPPED_INPUTS:
                continue
            if (op, k) in INPUT_ATTRS:
                if x == "":
                    continue
                if x not in consts:
                    fail(f"{op} node '{name}': input {k} ('{x}') is computed at run time; "
                         f"nnsign needs it constant, as attribute '{INPUT_ATTRS[op, k]}'")
                attrs[INPUT_ATTRS[op, k]] = [int(v) for v in consts[x].ravel()]
            else:
                inputs.append(x)
        while inputs and inputs[-1] == "":
            inputs.pop()
        node = {"op": op, "name": name, "inputs": inputs, "outputs": outputs}
        if attrs:
            node["attrs"] = attrs
        nodes.append(node)

    arch = {"opset": 2,
            "inputs": [value_info(vi, rename) for vi in graph_inputs],
            "outputs": [value_info(vi, rename) for vi in g.output],
            "nodes": nodes}
    weights = {k: np.ascontiguousarray(v) for k, v in inits.items()
               if k in used or not any(k in n.input for n in g.node)}
    return arch, weights


def dumps(arch):
    """JSON with one input, output or node per line."""
    parts = [f'  "opset": {arch["opset"]}']
    for key in ("inputs", "outputs", "nodes"):
        items = ",\n".join("    " + json.dumps(v) for v in arch[key])
        parts.append(f'  "{key}": [\n{items}\n  ]' if items else f'  "{key}": []')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def write(arch, weights, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "arch.json"), "w") as f:
        f.write(dumps(arch))
    save_file(weights, os.path.join(out_dir, "weights.safetensors"))


def convert_file(onnx_path, out_dir):
    arch, weights = convert(onnx.load(onnx_path))
    write(arch, weights, out_dir)
    return arch, weights


# --- A small NumPy interpreter of the ops the fixtures use, for --check ---

def _windows(x, kernel, strides, pads, dilations, fill):
    """[n, c, kh, kw, oh, ow]: the input cell under each kernel cell, for each output cell."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    t, l, b, r = pads
    x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    oh = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    return np.stack([np.stack([x[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                                 j * dw:j * dw + sw * (ow - 1) + 1:sw]
                               for j in range(kw)], axis=2) for i in range(kh)], axis=2)


def _conv(x, w, b=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1,
          kernel_shape=None, auto_pad="NOTSET"):
    assert auto_pad == "NOTSET" and kernel_shape in (None, list(w.shape[2:]))
    p = _windows(x, w.shape[2:], strides, pads, dilations, 0.0)
    n, c, kh, kw, oh, ow = p.shape
    p = p.reshape(n, group, c // group, kh, kw, oh, ow)
    wg = w.reshape(group, w.shape[0] // group, *w.shape[1:])
    y = np.einsum("ngcijhw,gmcij->ngmhw", p, wg).reshape(n, w.shape[0], oh, ow)
    return y if b is None else y + b[None, :, None, None]


def _maxpool(x, kernel_shape, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1),
             ceil_mode=0, storage_order=0, auto_pad="NOTSET"):
    assert ceil_mode == 0 and storage_order == 0 and auto_pad == "NOTSET"
    return _windows(x, kernel_shape, strides, pads, dilations, -np.inf).max(axis=(2, 3))


def _batchnorm(x, scale, b, mean, var, epsilon=1e-5, momentum=0.9, training_mode=0):
    c = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(c)) / np.sqrt(var.reshape(c) + epsilon) * scale.reshape(c) + b.reshape(c)


def _gemm(a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
    y = alpha * (a.T if transA else a) @ (b.T if transB else b)
    return y if c is None else y + beta * c


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


KERNELS = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
    "Relu": lambda x: np.maximum(x, 0.0), "MatMul": np.matmul, "Gemm": _gemm,
    "Conv": _conv, "MaxPool": _maxpool, "BatchNormalization": _batchnorm,
    "GlobalAveragePool": lambda x: x.mean(axis=(2, 3), keepdims=True),
    "Flatten": lambda x, axis=1: x.reshape(int(np.prod(x.shape[:axis])), -1),
    "Softmax": _softmax, "Identity": lambda x: x,
}


def run_graph(arch, weights, feeds):
    """Runs an nnsign graph in float64; nodes in any order, as the schema allows."""
    env = {k: np.asarray(v, dtype=np.float64) for k, v in {**weights, **feeds}.items()}
    pending = list(arch["nodes"])
    while pending:
        ready = [n for n in pending if all(x == "" or x in env for x in n["inputs"])]
        if not ready:
            fail("check: nodes " + ", ".join(n["name"] for n in pending) + " never become ready")
        for n in ready:
            if n["op"] not in KERNELS:
                fail(f"check: the interpreter has no {n['op']} (node '{n['name']}')")
            args = [env[x] if x else None for x in n["inputs"]]
            env[n["outputs"][0]] = KERNELS[n["op"]](*args, **n.get("attrs", {}))
            pending.remove(n)
    return [env[o["name"]] for o in arch["outputs"]]


def load(out_dir):
    """(arch, weights) as written to OUT_DIR."""
    with open(os.path.join(out_dir, "arch.json")) as f:
        arch = json.load(f)
    return arch, load_file(os.path.join(out_dir, "weights.safetensors"))


def check(out_dir, inputs_path, expected_path, tol=1e-5):
    """Runs OUT_DIR's arch.json + weights on the inputs; returns the max abs difference."""
    arch, weights = load(out_dir)
    (inp,), (out,) = arch["inputs"], arch["outputs"]  # --check feeds a lone input
    x, expected = np.load(inputs_path), np.load(expected_path)
    bound = {}
    fits = len(inp["shape"]) == x.ndim
    for decl, real in zip(inp["shape"], x.shape):
        fits &= bound.setdefault(decl, real) == real if isinstance(decl, str) else decl == real
    if not fits:
        fail(f"check: input shape {list(x.shape)} does not fit {inp['shape']}")
    (y,) = run_graph(arch, weights, {inp["name"]: x})
    want = [bound.get(d, d) for d in out["shape"]]
    if list(y.shape) != want or y.shape != expected.shape:
        fail(f"check: output shape {list(y.shape)}, declared {want}, expected {list(expected.shape)}")
    diff = float(np.abs(y - expected).max())
    print(f"check {out_dir}: max abs diff {diff:.3g} over {expected.size} values (tolerance {tol:g})")
    if not diff <= tol:
        fail(f"check failed: max abs diff {diff:.3g} > {tol:g}")
    return diff


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="the ONNX model")
    p.add_argument("out_dir", help="where arch.json and weights.safetensors are written")
    p.add_argument("--check", nargs=2, metavar=("INPUTS.npy", "EXPECTED.npy"),
                   help="run the result with NumPy and compare with EXPECTED.npy")
    a = p.parse_args()
    arch, weights = convert_file(a.model, a.out_dir)
    print(f"wrote {a.out_dir}/arch.json ({len(arch['nodes'])} nodes) and "
          f"{a.out_dir}/weights.safetensors ({len(weights)} tensors)")
    if a.check:
        check(a.out_dir, *a.check)


if __name__ == "__main__":
    main()
