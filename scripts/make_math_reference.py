#!/usr/bin/env python3
"""Writes tests/fixtures/ops3/math.json: reference cases for nnsign's op-set 3 math ops
(element-wise, logic, Cast, reductions, ArgMax/ArgMin, TopK, LogSoftmax/Hardmax, MatMul,
Einsum), read by the unit tests in src/ops/{elementwise,logic,reduce,linalg,einsum}.rs.

Every case is a one-node ONNX model at the latest op-set of the installed onnx package (28 with
onnx 1.23), run by onnx's reference implementation (`onnx.reference.ReferenceEvaluator`, NumPy)
and again by onnxruntime; the reference evaluator's outputs are stored, and the script stops if
onnxruntime disagrees (floats beyond the tolerance the tests use, anything else not exactly),
except for the cases listed in ORT_SKIP (not compared) and ORT_TRUTH (onnxruntime's outputs
stored), each with its reason. Parameters that ONNX takes
as inputs (Clip's min and max, the Reduce ops' axes, TopK's k) are stored as inputs too; the
Rust tests pass them as the plain parameters nnsign's kernels take.

Output: {"about", "opset", "cases": [{"name", "op", "attrs", "inputs", "outputs"}]}, one case a
line. A tensor is {"dtype": "f32" | "i64" | "bool", "shape", "data"} (data row-major; the
non-finite floats as the strings "NaN", "Infinity", "-Infinity"); an omitted optional input is
null. Inputs come from `np.random.default_rng([7, crc32(case name)])`, rounded to float32.

Run from the repository root (the output is byte-for-byte deterministic):

    pip install numpy onnx onnxruntime && python3 scripts/make_math_reference.py
"""
import json
import math
import os
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

OUT = "tests/fixtures/ops3/math.json"
OPSET = onnx.defs.onnx_opset_version()
TOL = 1e-5  # absolute, relative above 1: what the Rust tests allow for floats

# Cases whose onnxruntime result is not compared, with why.
ORT_SKIP = {
    # onnxruntime's Mod on floats with fmod=0 is not implemented (it refuses the model).
    "mod_f32_fmod0": "onnxruntime refuses fmod=0 on floats",
    # onnxruntime's Python binding has no NumPy type for bfloat16 outputs.
    "cast_f32_to_bf16": "onnxruntime cannot return bfloat16 to Python",
    # onnxruntime's ReduceMax/ReduceMin skip NaN; the reference (NumPy) and nnsign propagate it.
    "reducemax_nan": "onnxruntime ignores NaN",
    "reducemin_nan": "onnxruntime ignores NaN",
    # onnxruntime refuses an explicit output without "..." when an input has one; the
    # reference (np.einsum) sums over those dimensions, and so does nnsign.
    "einsum_ellipsis_sum": "onnxruntime refuses the equation",
}

# Cases whose onnxruntime result is stored instead of the reference evaluator's, with why.
ORT_TRUTH = {
    "logsoftmax_large": "the reference computes log(softmax(x)), whose softmax underflows to 0 "
                        "(-inf after the log); onnxruntime's x - max - log(sum(exp(x - max))) "
                        "is the value (-1005.0067)",
}

NP = {"f32": np.float32, "i64": np.int64, "bool": np.bool_}
ONNX_TYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
             np.dtype(np.bool_): TensorProto.BOOL, np.dtype(np.float16): TensorProto.FLOAT16,
             np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.int32): TensorProto.INT32,
             np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8,
             np.dtype(np.int16): TensorProto.INT16, np.dtype(np.uint16): TensorProto.UINT16,
             np.dtype(np.uint32): TensorProto.UINT32}

CASES = []


def rng(name):
    return np.random.default_rng([7, zlib.crc32(name.encode())])


def f32(name, shape, lo=-3.0, hi=3.0):
    return rng(name).uniform(lo, hi, size=shape).astype(np.float32)


def i64(name, shape, lo=-9, hi=10):
    return rng(name).integers(lo, hi, size=shape).astype(np.int64)


def enc_float(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def enc(a):
    """A tensor as stored: our element types only (F32, I64, Bool)."""
    if a is None:
        return None
    a = np.asarray(a)
    if a.dtype == np.bool_:
        dtype, data = "bool", [bool(v) for v in a.ravel()]
    elif np.issubdtype(a.dtype, np.integer):
        dtype, data = "i64", [int(v) for v in a.ravel()]
    else:
        dtype, data = "f32", [enc_float(np.float32(v)) for v in a.ravel()]
    return {"dtype": dtype, "shape": list(a.shape), "data": data}


def close(x, y):
    if x.shape != y.shape:
        return False
    if np.issubdtype(x.dtype, np.floating):
        x, y = x.astype(np.float64), y.astype(np.float64)
        same_nan = np.isnan(x) == np.isnan(y)
        same_inf = np.where(np.isinf(x) | np.isinf(y), x == y, True)
        fin = np.isfinite(x) & np.isfinite(y)
        ok = np.abs(x - y) <= TOL * np.maximum(1.0, np.abs(y))
        return bool(np.all(same_nan & same_inf & np.where(fin, ok, True)))
    return bool(np.array_equal(x, y))


def case(name, op, inputs, attrs=None, n_out=1, stored=None):
    """Runs `op` on `inputs` (arrays, or None for an omitted optional input) with `attrs`, and
    records the case. `stored` converts each output before storing (e.g. INT32 as int64)."""
    attrs = attrs or {}
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    outs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    given = [(n, a) for n, a in zip(names, inputs) if a is not None]
    graph = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info(n, ONNX_TYPE[np.asarray(a).dtype], np.shape(a))
         for n, a in given],
        [helper.make_empty_tensor_value_info(o) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    feeds = {n: np.asarray(a) for n, a in given}
    ref = ReferenceEvaluator(model).run(None, feeds)
    if name not in ORT_SKIP:
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        got = sess.run(None, feeds)
        if name in ORT_TRUTH:
            ref = got
        for r, g in zip(ref, got):
            assert close(np.asarray(g), np.asarray(r)), (name, r, g)
    ref = [np.asarray(r) for r in ref]
    if stored:
        ref = [stored(r) for r in ref]
    CASES.append({"name": name, "op": op, "attrs": attrs,
                  "inputs": [enc(a) for a in inputs], "outputs": [enc(r) for r in ref]})


def scalar(v, dtype):
    return np.array(v, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Element-wise
# ---------------------------------------------------------------------------------------------

def elementwise():
    x = f32("unary", [2, 3, 4], -4, 4)
    for op in ["HardSigmoid", "HardSwish", "Neg", "Abs", "Floor", "Ceil", "Sin", "Cos"]:
        case(f"{op.lower()}_f32", op, [x])
    case("hardsigmoid_alpha_beta", "HardSigmoid", [x], {"alpha": 0.5, "beta": 0.25})
    pos = f32("positive", [3, 4], 0.1, 5)
    case("log_f32", "Log", [pos])
    case("log_edges", "Log", [np.array([0.0, -1.0, 1.0, np.inf], np.float32)])
    case("reciprocal_f32", "Reciprocal", [x])
    case("reciprocal_zero", "Reciprocal", [np.array([0.0, -0.0, 2.0], np.float32)])
    xi = i64("unary_int", [2, 5], -50, 50)
    case("neg_i64", "Neg", [xi])
    case("abs_i64", "Abs", [xi])
    case("abs_i64_min", "Abs", [np.array([-9223372036854775807 - 1, -3], np.int64)])

    # Clip: min and max are inputs (scalars); an omitted one is an empty input name.
    c = f32("clip", [3, 4], -5, 5)
    case("clip_both", "Clip", [c, scalar(-1.5, np.float32), scalar(2.0, np.float32)])
    case("clip_min_only", "Clip", [c, scalar(0.0, np.float32), None])
    case("clip_max_only", "Clip", [c, None, scalar(1.0, np.float32)])
    case("clip_none", "Clip", [c])
    case("clip_min_above_max", "Clip", [c, scalar(2.0, np.float32), scalar(-1.0, np.float32)])
    case("clip_nan_passes", "Clip",
         [np.array([np.nan, -9.0, 9.0], np.float32), scalar(-1.0, np.float32),
          scalar(1.0, np.float32)])
    ci = i64("clip_int", [2, 6], -20, 20)
    case("clip_i64", "Clip", [ci, scalar(-5, np.int64), scalar(7, np.int64)])
    case("clip_i64_max_only", "Clip", [ci, None, scalar(0, np.int64)])

    # PRelu: slope broadcasts to X (unidirectionally).
    xp = f32("prelu", [2, 3, 2, 2])
    case("prelu_channel_slope", "PRelu", [xp, f32("prelu_s", [3, 1, 1], 0, 1)])
    case("prelu_scalar_slope", "PRelu", [xp, f32("prelu_s1", [1], 0, 1)])
    case("prelu_last_axis_slope", "PRelu", [xp, f32("prelu_s2", [2], 0, 1)])
    case("prelu_full_slope", "PRelu", [xp, f32("prelu_s3", [2, 3, 2, 2], 0, 1)])

    # Integer arithmetic with broadcasting; Div truncates toward zero.
    a = i64("int_a", [2, 3, 4], -40, 40)
    b = i64("int_b", [3, 1], 1, 9) * np.where(i64("int_sign", [3, 1], 0, 2) == 0, -1, 1)
    for op in ["Add", "Sub", "Mul", "Div"]:
        case(f"{op.lower()}_i64_bcast", op, [a, b])
    case("div_i64_truncates", "Div",
         [np.array([7, -7, 7, -7, 0, 1], np.int64), np.array([2, 2, -2, -2, 3, -3], np.int64)])
    case("add_i64_scalar", "Add", [a, scalar(5, np.int64)])
    case("mul_i64_shape_math", "Mul", [np.array([1, 3, 224, 224], np.int64), scalar(2, np.int64)])
    case("mod_i64_fmod0", "Mod",
         [np.array([7, -7, 7, -7, 5, -5], np.int64), np.array([3, 3, -3, -3, 5, 5], np.int64)])
    case("mod_i64_fmod1", "Mod",
         [np.array([7, -7, 7, -7, 5, -5], np.int64), np.array([3, 3, -3, -3, 5, 5], np.int64)],
         {"fmod": 1})
    fa = np.array([5.5, -5.5, 5.5, -5.5, 0.0, -0.0, 3.0], np.float32)
    fb = np.array([2.0, 2.0, -2.0, -2.0, 2.0, -2.0, 1.5], np.float32)
    case("mod_f32_fmod1", "Mod", [fa, fb], {"fmod": 1})
    case("mod_f32_fmod0", "Mod", [fa, fb])


# ---------------------------------------------------------------------------------------------
# Comparisons, logic, Cast
# ---------------------------------------------------------------------------------------------

def logic():
    a = np.round(f32("cmp_a", [2, 3, 4]), 0)  # rounded so that some elements are equal
    b = np.round(f32("cmp_b", [3, 1]), 0)
    nan = np.array([np.nan, 1.0, np.nan, -np.inf], np.float32)
    nb = np.array([np.nan, 1.0, 0.0, -np.inf], np.float32)
    ai, bi = i64("cmpi_a", [2, 5], -3, 3), i64("cmpi_b", [5], -3, 3)
    for op in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]:
        case(f"{op.lower()}_f32_bcast", op, [a, b])
        case(f"{op.lower()}_f32_nan", op, [nan, nb])
        case(f"{op.lower()}_i64_bcast", op, [ai, bi])
    p = rng("bool_p").integers(0, 2, size=[2, 3]).astype(np.bool_)
    q = rng("bool_q").integers(0, 2, size=[3]).astype(np.bool_)
    case("equal_bool", "Equal", [p, q])
    for op in ["And", "Or", "Xor"]:
        case(f"{op.lower()}_bcast", op, [p, q])
        case(f"{op.lower()}_truth_table", op,
             [np.array([False, False, True, True]), np.array([False, True, False, True])])
    case("not", "Not", [p])

    x = np.array([-2.7, -0.5, 0.0, -0.0, 0.5, 2.7, 1e10, -1e10, 65519.0, 3.14159265], np.float32)
    T = TensorProto
    case("cast_f32_to_i64", "Cast", [x[:8]], {"to": T.INT64})
    case("cast_f32_to_bool", "Cast", [np.append(x, [np.nan, np.inf]).astype(np.float32)],
         {"to": T.BOOL})
    case("cast_f32_to_f16", "Cast", [x], {"to": T.FLOAT16},
         stored=lambda r: r.astype(np.float32))
    case("cast_f32_to_bf16", "Cast", [x[:8]], {"to": T.BFLOAT16},
         stored=lambda r: r.astype(np.float32))
    case("cast_f32_to_double", "Cast", [x], {"to": T.DOUBLE},
         stored=lambda r: r.astype(np.float32))
    case("cast_f32_to_f32", "Cast", [x], {"to": T.FLOAT})
    case("cast_f32_to_i32", "Cast", [x[:6]], {"to": T.INT32}, stored=lambda r: r.astype(np.int64))
    xi = np.array([0, 1, -1, 127, 128, 255, 256, -129, 65536, 2**31, -2**31 - 1, 2**40 + 5,
                   16777217], np.int64)
    case("cast_i64_to_f32", "Cast", [xi], {"to": T.FLOAT})
    case("cast_i64_to_bool", "Cast", [xi], {"to": T.BOOL})
    case("cast_i64_to_i64", "Cast", [xi], {"to": T.INT64})
    for to, np_t in [(T.INT32, np.int32), (T.INT16, np.int16), (T.INT8, np.int8),
                     (T.UINT8, np.uint8), (T.UINT16, np.uint16), (T.UINT32, np.uint32)]:
        name = onnx.helper.tensor_dtype_to_np_dtype(to).name
        case(f"cast_i64_to_{name}", "Cast", [xi], {"to": to}, stored=lambda r: r.astype(np.int64))
    case("cast_i64_to_f16", "Cast", [xi[:10]], {"to": T.FLOAT16},
         stored=lambda r: r.astype(np.float32))
    bits = np.array([True, False, True])
    case("cast_bool_to_f32", "Cast", [bits], {"to": T.FLOAT})
    case("cast_bool_to_i64", "Cast", [bits], {"to": T.INT64})
    case("cast_bool_to_bool", "Cast", [bits], {"to": T.BOOL})
    case("cast_bool_to_i8", "Cast", [bits], {"to": T.INT8}, stored=lambda r: r.astype(np.int64))


# ---------------------------------------------------------------------------------------------
# Reductions, ArgMax/ArgMin, TopK, LogSoftmax, Hardmax
# ---------------------------------------------------------------------------------------------

REDUCE = ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
          "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]


def axes(*v):
    return np.array(v, np.int64)


def reduce():
    x = f32("reduce", [2, 3, 4], -2, 2)
    pos = f32("reduce_pos", [2, 3, 4], 0.5, 2)
    for op in REDUCE:
        src = pos if op == "ReduceLogSum" else x
        low = op.lower()
        case(f"{low}_default", op, [src])
        case(f"{low}_last_axis", op, [src, axes(-1)])
        case(f"{low}_first_axis_keep0", op, [src, axes(0)], {"keepdims": 0})
        case(f"{low}_middle_axis", op, [src, axes(1)])
        case(f"{low}_outer_axes", op, [src, axes(0, 2)], {"keepdims": 0})
        case(f"{low}_inner_axes", op, [src, axes(1, 2)])
    case("reducemean_noop_empty_axes", "ReduceMean", [x, axes()], {"noop_with_empty_axes": 1})
    case("reducesum_noop_no_axes", "ReduceSum", [x], {"noop_with_empty_axes": 1})
    case("reducesum_empty_axes_all", "ReduceSum", [x, axes()], {"keepdims": 0})
    case("reducesum_rank0", "ReduceSum", [np.array(2.5, np.float32)])
    case("reducel2_rank0", "ReduceL2", [np.array(-2.5, np.float32)])
    case("reducemean_spatial_nchw", "ReduceMean", [f32("nchw", [2, 3, 4, 5]), axes(2, 3)])
    case("reducemax_all_4d_keep0", "ReduceMax", [f32("all4", [2, 3, 4, 5])], {"keepdims": 0})
    case("reducemax_nan", "ReduceMax",
         [np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 3.0]], np.float32), axes(1)])
    case("reducemin_nan", "ReduceMin",
         [np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 3.0]], np.float32), axes(1)])
    empty = np.zeros([2, 0, 3], np.float32)
    for op in ["ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin", "ReduceSumSquare",
               "ReduceL2"]:
        case(f"{op.lower()}_empty_set", op, [empty, axes(1)])
    xi = i64("reduce_int", [3, 4], -5, 6)
    for op in ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"]:
        case(f"{op.lower()}_i64", op, [xi, axes(1)])
        case(f"{op.lower()}_i64_all", op, [xi], {"keepdims": 0})
    for op in ["ReduceMax", "ReduceMin"]:
        case(f"{op.lower()}_i64_empty_set", op, [np.zeros([2, 0], np.int64), axes(1)])

    # ArgMax / ArgMin, with ties.
    t = np.round(f32("arg", [3, 4, 5], -2, 2))
    for op in ["ArgMax", "ArgMin"]:
        low = op.lower()
        case(f"{low}_default", op, [t])
        case(f"{low}_axis1_keep0", op, [t], {"axis": 1, "keepdims": 0})
        case(f"{low}_last_axis", op, [t], {"axis": -1})
        case(f"{low}_last_index", op, [t], {"axis": 2, "select_last_index": 1})
        case(f"{low}_last_index_axis0", op, [t], {"axis": 0, "select_last_index": 1})
        case(f"{low}_i64", op, [i64("argi", [4, 6], -3, 3)], {"axis": 1})
        case(f"{low}_rank1", op, [t[0, 0]], {"keepdims": 0})

    # TopK: k is an input.
    v = np.round(f32("topk", [3, 7], -3, 3))  # ties
    k = lambda n: np.array([n], np.int64)
    case("topk_largest", "TopK", [v, k(3)], n_out=2)
    case("topk_smallest", "TopK", [v, k(4)], {"largest": 0}, n_out=2)
    case("topk_axis0", "TopK", [v, k(2)], {"axis": 0}, n_out=2)
    case("topk_k_all", "TopK", [v, k(7)], n_out=2)
    case("topk_k0", "TopK", [v, k(0)], n_out=2)
    case("topk_middle_axis", "TopK", [np.round(f32("topk3", [2, 5, 3], -2, 2)), k(2)],
         {"axis": 1}, n_out=2)
    case("topk_i64", "TopK", [i64("topki", [2, 6], -3, 3), k(3)], n_out=2)
    case("topk_i64_smallest", "TopK", [i64("topki", [2, 6], -3, 3), k(3)], {"largest": 0},
         n_out=2)
    case("topk_ties_in_order", "TopK", [np.array([1, 2, 2, 1, 2], np.float32), k(4)], n_out=2)

    s = f32("softmax", [2, 3, 4], -3, 3)
    for axis in [-1, 0, 1]:
        case(f"logsoftmax_axis{axis}", "LogSoftmax", [s], {"axis": axis})
        case(f"hardmax_axis{axis}", "Hardmax", [np.round(s)], {"axis": axis})
    case("logsoftmax_default", "LogSoftmax", [s])
    case("logsoftmax_large", "LogSoftmax",
         [np.array([[1000.0, 1001.0, 999.0], [-1000.0, 0.0, 5.0]], np.float32)])
    case("hardmax_default_ties", "Hardmax", [np.array([[1, 3, 3], [2, 2, 2]], np.float32)])


# ---------------------------------------------------------------------------------------------
# MatMul and Einsum
# ---------------------------------------------------------------------------------------------

def linalg():
    mm = [("bcast_4d_3d", [2, 1, 4, 5], [3, 5, 6]),
          ("bcast_a_batch_1", [1, 4, 5], [3, 5, 2]),
          ("bcast_both_sides", [3, 1, 2, 4], [1, 5, 4, 3]),
          ("2d_by_3d", [4, 5], [3, 5, 2]),
          ("1d_by_3d", [5], [3, 5, 2]),
          ("3d_by_1d", [2, 3, 5], [5]),
          ("1d_by_1d", [5], [5]),
          ("2d_by_2d", [3, 4], [4, 6]),
          ("4d_by_2d", [2, 3, 4, 5], [5, 2]),
          ("batch_zero", [0, 2, 3], [3, 4]),
          ("inner_zero", [2, 0], [0, 3])]
    for name, sa, sb in mm:
        case(f"matmul_{name}", "MatMul", [f32(f"mm_a_{name}", sa), f32(f"mm_b_{name}", sb)])

    eqs = [("matmul", "ij,jk->ik", [[3, 4], [4, 5]]),
           ("batch_matmul", "bij,bjk->bik", [[2, 3, 4], [2, 4, 5]]),
           ("attention_scores", "bhqd,bhkd->bhqk", [[2, 2, 3, 4], [2, 2, 5, 4]]),
           ("attention_values", "bhqk,bhkd->bqhd", [[2, 2, 3, 5], [2, 2, 5, 4]]),
           ("transpose", "ij->ji", [[3, 4]]),
           ("permute_3d", "abc->cab", [[2, 3, 4]]),
           ("row_sum", "ij->i", [[3, 4]]),
           ("total_sum", "ijk->", [[2, 3, 4]]),
           ("diagonal", "ii->i", [[4, 4]]),
           ("trace", "ii", [[4, 4]]),
           ("batch_diagonal", "bii->bi", [[2, 3, 3]]),
           ("implicit_matmul", "ij,jk", [[3, 4], [4, 5]]),
           ("implicit_transpose", "ji", [[3, 4]]),
           ("implicit_sorted", "ba,ca", [[3, 4], [2, 4]]),
           ("outer", "i,j->ij", [[3], [4]]),
           ("dot", "i,i->", [[5], [5]]),
           ("hadamard", "ij,ij->ij", [[3, 4], [3, 4]]),
           ("hadamard_sum_rows", "ij,ij->i", [[3, 4], [3, 4]]),
           ("bilinear_sum_other", "ik,jkl->ij", [[2, 3], [4, 3, 5]]),
           ("ellipsis_matmul", "...ij,...jk->...ik", [[2, 3, 4], [2, 4, 5]]),
           ("ellipsis_broadcast", "...ij,...jk->...ik", [[2, 1, 3, 4], [1, 3, 4, 5]]),
           ("ellipsis_implicit", "...ij,...jk", [[2, 3, 4], [1, 4, 5]]),
           ("ellipsis_sum", "...ij->ij", [[2, 3, 3, 4]]),
           ("ellipsis_middle", "a...c->ca...", [[2, 3, 4, 5]]),
           ("ellipsis_empty", "...ij,jk->...ik", [[3, 4], [4, 2]]),
           ("upper_case", "Bij,BjK->BiK", [[2, 3, 4], [2, 4, 5]]),
           ("spaces", "i j , j k -> i k", [[3, 4], [4, 2]]),
           ("transposed_output", "ij,jk->ki", [[3, 4], [4, 5]]),
           ("both_transposed", "ji,kj->ik", [[4, 3], [5, 4]]),
           ("shared_batch_kept_order", "ibj,jbk->bik", [[3, 2, 4], [4, 2, 5]]),
           ("contract_two", "abij,abjk->ak", [[2, 3, 4, 5], [2, 3, 5, 2]]),
           ("repeated_in_two", "ii,ij->ij", [[3, 3], [3, 4]]),
           ("scalar_operand", ",ij->ij", [[], [2, 3]])]
    for name, eq, shapes in eqs:
        ins = [f32(f"einsum_{name}_{i}", s) for i, s in enumerate(shapes)]
        case(f"einsum_{name}", "Einsum", ins, {"equation": eq})


def main():
    # Some cases compute log(0), inf - inf or out-of-range casts on purpose.
    np.seterr(all="ignore")
    elementwise()
    logic()
    reduce()
    linalg()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    about = (f"Reference cases for nnsign's op-set 3 math ops, computed by onnx "
             f"{onnx.__version__}'s ReferenceEvaluator at op-set {OPSET} and cross-checked "
             f"against onnxruntime {ort.__version__} (scripts/make_math_reference.py)")
    with open(OUT, "w") as f:
        f.write('{"about": %s,\n "opset": %d,\n "cases": [\n' % (json.dumps(about), OPSET))
        f.write(",\n".join("  " + json.dumps(c, sort_keys=True) for c in CASES))
        f.write("\n ]}\n")
    print(f"wrote {len(CASES)} cases to {OUT}")


if __name__ == "__main__":
    main()
