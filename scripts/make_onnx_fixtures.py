#!/usr/bin/env python3
"""Small ONNX files for the importer's tests (tests/onnx.rs), written with the `onnx` package.

    pip install onnx numpy
    python3 scripts/make_onnx_fixtures.py

Writes tests/fixtures/onnx_misc/:
  unsupported.onnx   MatMul then Tan and Round (ops nnsign does not run); its
                     initializer w [3, 2] = arange(6) / 2 (float32)
  external.onnx      y = x @ w + b with w [4, 3] (arange(12), float32) stored in external.bin
  external.bin       w's bytes at offset 16, after 16 bytes of 0xee (checks offset handling)
  escape.onnx        the same graph, its w's location "../escape.bin" (must be refused)
  shape_inputs.onnx  Reshape, Slice, Squeeze and Unsqueeze with their ONNX-style tensor inputs
                     (initializers and a Constant node), and Dropout with its mask output
                     unused; expected output in shape_inputs_expected.npy for x = arange(24)
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "onnx_misc")
os.makedirs(OUT, exist_ok=True)
OPSET = [helper.make_opsetid("", 17)]


def save(model, name):
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, name))


# Ops nnsign does not run.
w = numpy_helper.from_array((np.arange(6, dtype=np.float32) / 2).reshape(3, 2), "w")
g = helper.make_graph(
    [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
     helper.make_node("Tan", ["h"], ["c"], name="tan"),
     helper.make_node("Round", ["c"], ["y"], name="round")],
    "unsupported",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
    [w])
save(helper.make_model(g, opset_imports=OPSET, producer_name="nnsign fixtures"), "unsupported.onnx")


# External data, and an escaping location.
def external(location):
    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([4, 3])
    w.data_location = TensorProto.EXTERNAL
    for k, v in [("location", location), ("offset", "16"), ("length", "48")]:
        e = w.external_data.add()
        e.key, e.value = k, v
    b = numpy_helper.from_array(np.array([1.0, -1.0, 0.5], dtype=np.float32), "b")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
         helper.make_node("Add", ["h", "b"], ["y"], name="add")],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w, b])
    return helper.make_model(g, opset_imports=OPSET, producer_name="nnsign fixtures")


m = external("external.bin")
onnx.save(m, os.path.join(OUT, "external.onnx"))  # the checker would read the file; it is valid
with open(os.path.join(OUT, "external.bin"), "wb") as f:
    f.write(b"\xee" * 16 + np.arange(12, dtype=np.float32).tobytes())
onnx.save(external("../escape.bin"), os.path.join(OUT, "escape.onnx"))

# Shape inputs folded into attributes.
x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
nodes = [
    helper.make_node("Constant", [], ["shape"], name="shape_const",
                     value=numpy_helper.from_array(np.array([2, 12], dtype=np.int64))),
    helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
    helper.make_node("Slice", ["r", "starts", "ends", "axes", "steps"], ["s"], name="slice"),
    helper.make_node("Unsqueeze", ["s", "uaxes"], ["u"], name="unsqueeze"),
    helper.make_node("Squeeze", ["u", "uaxes"], ["q"], name="squeeze"),
    helper.make_node("Dropout", ["q"], ["y", "mask"], name="dropout"),
]
inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), n) for n, v in
         [("starts", [1]), ("ends", [100]), ("axes", [1]), ("steps", [3]), ("uaxes", [0])]]
g = helper.make_graph(nodes, "shape_inputs",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits)
save(helper.make_model(g, opset_imports=OPSET, producer_name="nnsign fixtures"), "shape_inputs.onnx")
expected = x.reshape(2, 12)[:, 1:100:3]
np.save(os.path.join(OUT, "shape_inputs_expected.npy"), expected)
np.save(os.path.join(OUT, "shape_inputs_x.npy"), x)

# Cross-check with onnxruntime when it is installed.
try:
    import onnxruntime as ort
    got = ort.InferenceSession(os.path.join(OUT, "shape_inputs.onnx")).run(None, {"x": x})[0]
    assert np.array_equal(got, expected), (got, expected)
    got = ort.InferenceSession(os.path.join(OUT, "external.onnx")).run(
        None, {"x": np.eye(4, dtype=np.float32)})[0]
    want = np.arange(12, dtype=np.float32).reshape(4, 3) + np.array([1, -1, 0.5], np.float32)
    assert np.array_equal(got, want), got
    print("onnxruntime agrees")
except ImportError:
    print("onnxruntime not installed: not cross-checked")
print("wrote", sorted(os.listdir(OUT)))
