#!/usr/bin/env python3
"""What a runtime must do to run an ONNX graph: each op type, by what its inputs are.

    pip install onnx
    python3 scripts/describe_onnx.py MODEL.onnx... > OPS.md

Every value is put in one of three classes, from the graph's inputs forward:

  const   an initializer, a Constant node's output, or computed from those alone (an importer
          can fold it once)
  shape   computed from Shape outputs and consts: known as soon as the input shapes are (the
          batch size), whatever the input values
  data    depends on the values of a graph input

A node's class is its highest input's (Shape is always `shape`). For each op type and class the
script prints the input signatures seen (class:dtype per input, `-` for an omitted optional
input) with their counts, the output dtypes, every attribute value with its count, and the
outputs that no node or graph output uses. ONNX shape inference gives the dtypes.
"""
import collections
import os
import sys

import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

ORDER = {"absent": -1, "const": 0, "shape": 1, "data": 2}


def dtype(code):
    return TensorProto.DataType.Name(code).lower()


def attr_text(a):
    v = helper.get_attribute_value(a)
    if isinstance(v, TensorProto):
        arr = numpy_helper.to_array(v)
        return f"{a.name}={arr.dtype}{list(arr.shape)} {arr.ravel().tolist()}"
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, list):
        v = [x.decode() if isinstance(x, bytes) else x for x in v]
    return f"{a.name}={v}"


def describe(path):
    model = shape_inference.infer_shapes(onnx.load(path))
    g = model.graph
    types = {v.name: dtype(v.type.tensor_type.elem_type)
             for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({t.name: dtype(t.data_type) for t in g.initializer})
    cls = {t.name: "const" for t in g.initializer}
    cls.update({i.name: "data" for i in g.input})
    cls[""] = "absent"
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    per = {}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = dtype(a.t.data_type)
            c = "const"
        elif n.op_type == "Shape":
            c = "shape"
        else:
            c = max((cls[i] for i in n.input), key=ORDER.get, default="const")
            c = "const" if c == "absent" else c
        for o in n.output:
            cls[o] = c
        if n.op_type == "Constant":
            continue
        e = per.setdefault((n.op_type, c), {"n": 0, "sig": collections.Counter(),
                                            "attr": collections.Counter(),
                                            "unused": collections.Counter()})
        e["n"] += 1
        ins = ", ".join(f"{cls[i]}:{types.get(i, '?')}" if i else "-" for i in n.input)
        outs = ", ".join(types.get(o, "?") for o in n.output)
        e["sig"][f"({ins}) -> ({outs})"] += 1
        e["attr"].update(attr_text(a) for a in n.attribute)
        e["unused"].update(f"output {k}" for k, o in enumerate(n.output) if o not in used)

    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    print(f"## {os.path.basename(path)}\n")
    print(f"Opset {opsets}; producer {model.producer_name} {model.producer_version}; "
          f"{len(g.node)} nodes, {len(g.initializer)} initializers.\n")
    for kind, vs in (("input", g.input), ("output", g.output)):
        for v in vs:
            dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            print(f"- graph {kind} `{v.name}`: {dtype(v.type.tensor_type.elem_type)} {dims}")
    print()
    for (op, c), e in sorted(per.items()):
        print(f"- **{op}** [{c}] x{e['n']}")
        for s, k in e["sig"].items():
            print(f"  - `{s}` x{k}")
        if e["attr"]:
            print("  - attributes: " + "; ".join(f"`{a}` x{k}" for a, k in e["attr"].items()))
        if e["unused"]:
            print("  - unused: " + "; ".join(f"{u} x{k}" for u, k in e["unused"].items()))
    print()


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: describe_onnx.py MODEL.onnx...")
    for path in sys.argv[1:]:
        describe(path)


if __name__ == "__main__":
    main()
