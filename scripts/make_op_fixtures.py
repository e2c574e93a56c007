#!/usr/bin/env python3
"""Writes the per-op reference fixtures under tests/fixtures/ops/ for nnsign's runtime tests.

Every case is a small graph in the nnsign schema (docs/SCHEMA.md, op-set 2) with its weights,
inputs and expected outputs. The expected outputs are computed here, in float64 NumPy, straight
from the definitions in docs/SCHEMA.md (ONNX opset 17 semantics, with the schema's differences:
Reshape's `shape`, Slice's `starts/ends/axes/steps`, Squeeze/Unsqueeze `axes` are attributes),
from the float32 inputs and weights, and then rounded to float32. No ML framework is used;
erf is the standard library's `math.erf`. `scripts/check_op_fixtures.py` cross-checks every case
against onnxruntime (`Dense`, which is not ONNX, as MatMul, Add and the activation).

Output, in tests/fixtures/ops/:
  cases.json   {"about": ..., "cases": [{"name", "arch", "tolerance"}, ...]}
  <name>.npz   weight.<tensor>, input.<graph input>, output.<graph output> (np.savez)

Run from the repository root:

    pip install numpy && python3 scripts/make_op_fixtures.py
"""
import json
import math
import os
import zlib

import numpy as np

OUT = "tests/fixtures/ops"
DEFAULT_TOL = 1e-5
CASES = []  # filled by the @case decorator, in definition order


# ----------------------------------------------------------------------------------------------
# Reference math (float64)
# ----------------------------------------------------------------------------------------------

def f32(v):
    """A float attribute as the runtime sees it (stored/parsed as float32), widened to float64."""
    return float(np.float32(v))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def erf(x):
    return _erf(np.asarray(x, dtype=np.float64))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def gelu(x, approximate="none"):
    if approximate == "none":
        return x * (1.0 + erf(x / math.sqrt(2.0))) / 2.0
    assert approximate == "tanh"
    return x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))) / 2.0


def leaky_relu(x, alpha=0.01):
    return np.where(x >= 0, x, f32(alpha) * x)


def gemm(a, b, c=None, alpha=1.0, beta=1.0, trans_a=0, trans_b=0):
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    y = f32(alpha) * (a @ b)
    if c is not None:
        y = y + f32(beta) * c
    return y


def dense(x, kernel, bias=None, activation="linear"):
    y = x @ kernel
    if bias is not None:
        y = y + bias
    return {
        "linear": lambda v: v,
        "relu": lambda v: np.maximum(v, 0.0),
        "sigmoid": sigmoid,
        "tanh": np.tanh,
        "softmax": lambda v: softmax(v, -1),
    }[activation](y)


def _out_size(size, before, after, kernel, stride, dilation):
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def conv2d(x, w, b=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    assert c == cg * group and m % group == 0
    top, left, bottom, right = pads
    sh, sw = strides
    dh, dw = dilations
    xp = np.zeros((n, c, h + top + bottom, wd + left + right))
    xp[:, :, top:top + h, left:left + wd] = x
    oh = _out_size(h, top, bottom, kh, sh, dh)
    ow = _out_size(wd, left, right, kw, sw, dw)
    assert oh >= 1 and ow >= 1
    out = np.zeros((n, m, oh, ow))
    mg = m // group
    for oc in range(m):
        g = oc // mg
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg,
                           i * sh:i * sh + dh * (kh - 1) + 1:dh,
                           j * sw:j * sw + dw * (kw - 1) + 1:dw]
                out[:, oc, i, j] = np.sum(patch * w[oc][None], axis=(1, 2, 3))
    if b is not None:
        out += b[None, :, None, None]
    return out


def _pool_windows(x, kernel, strides, pads, dilations, fill):
    """Yields (i, j, window values, window validity mask) for a 2-D pooling."""
    n, c, h, wd = x.shape
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    top, left, bottom, right = pads
    assert all(p < k_ext for p, k_ext in zip(pads, [dh * (kh - 1) + 1, dw * (kw - 1) + 1] * 2))
    xp = np.full((n, c, h + top + bottom, wd + left + right), fill)
    xp[:, :, top:top + h, left:left + wd] = x
    valid = np.zeros((h + top + bottom, wd + left + right), dtype=bool)
    valid[top:top + h, left:left + wd] = True
    oh = _out_size(h, top, bottom, kh, sh, dh)
    ow = _out_size(wd, left, right, kw, sw, dw)
    assert oh >= 1 and ow >= 1
    for i in range(oh):
        for j in range(ow):
            rs = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
            cs = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
            yield i, j, oh, ow, xp[:, :, rs, cs], valid[rs, cs]


def maxpool2d(x, kernel, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1)):
    out = None
    for i, j, oh, ow, win, mask in _pool_windows(x, kernel, strides, pads, dilations, -np.inf):
        if out is None:
            out = np.zeros(x.shape[:2] + (oh, ow))
        assert mask.any()
        out[:, :, i, j] = np.max(win, axis=(2, 3))
    assert np.all(np.isfinite(out))
    return out


def avgpool2d(x, kernel, strides=(1, 1), pads=(0, 0, 0, 0), count_include_pad=0):
    out = None
    for i, j, oh, ow, win, mask in _pool_windows(x, kernel, strides, pads, (1, 1), 0.0):
        if out is None:
            out = np.zeros(x.shape[:2] + (oh, ow))
        divisor = mask.size if count_include_pad else int(mask.sum())
        out[:, :, i, j] = np.sum(win, axis=(2, 3)) / divisor
    return out


def global_avgpool(x):
    return np.mean(x, axis=(2, 3), keepdims=True)


def batchnorm(x, scale, b, mean, var, epsilon=1e-5):
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    r = lambda v: v.reshape(shape)
    return (x - r(mean)) / np.sqrt(r(var) + f32(epsilon)) * r(scale) + r(b)


def layernorm(x, scale, b=None, axis=-1, epsilon=1e-5):
    axis = axis % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = np.mean(x, axis=axes, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + f32(epsilon)) * scale
    return y + b if b is not None else y


def flatten(x, axis=1):
    r = x.ndim
    axis = axis + r if axis < 0 else axis
    assert 0 <= axis <= r
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1 if x.size else 0)


def reshape(x, shape):
    dims = []
    for i, d in enumerate(shape):
        dims.append(x.shape[i] if d == 0 else d)
    if -1 in dims:
        k = dims.index(-1)
        known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
        assert x.size % known == 0
        dims[k] = x.size // known
    assert int(np.prod(dims, dtype=np.int64)) == x.size
    return x.reshape(dims)


def transpose(x, perm=None):
    perm = list(reversed(range(x.ndim))) if perm is None else perm
    return np.transpose(x, perm)


def concat(xs, axis):
    return np.concatenate(xs, axis=axis)


def gather(data, indices, axis=0):
    axis = axis % data.ndim
    dim = data.shape[axis]
    idx = np.asarray(indices, dtype=np.int64)
    assert np.all((idx >= -dim) & (idx < dim))
    idx = np.where(idx < 0, idx + dim, idx)
    return np.take(data, idx, axis=axis)


def slice_onnx(x, starts, ends, axes=None, steps=None):
    """ONNX Slice (opset 13+) with its clamping rules, written out rather than via Python slices."""
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    assert len(starts) == len(ends) == len(axes) == len(steps)
    y = x
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = axis % x.ndim
        dim = x.shape[axis]
        assert step != 0
        if start < 0:
            start += dim
        if end < 0:
            end += dim
        if step > 0:
            start = min(max(start, 0), dim)
            end = min(max(end, 0), dim)
            idx = list(range(start, end, step))
        else:
            start = min(max(start, 0), dim - 1)
            end = min(max(end, -1), dim - 1)
            idx = []
            k = start
            while k > end:
                idx.append(k)
                k += step
        y = np.take(y, np.array(idx, dtype=np.int64), axis=axis)
    return y


def squeeze(x, axes=None):
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    axes = sorted(a % x.ndim for a in axes)
    assert all(x.shape[a] == 1 for a in axes)
    return x.reshape([d for i, d in enumerate(x.shape) if i not in axes])


def unsqueeze(x, axes):
    r = x.ndim + len(axes)
    axes = sorted(a % r for a in axes)
    assert len(set(axes)) == len(axes)
    dims = list(x.shape)
    out = []
    for i in range(r):
        out.append(1 if i in axes else dims.pop(0))
    return x.reshape(out)


# ----------------------------------------------------------------------------------------------
# Case builder
# ----------------------------------------------------------------------------------------------

class Case:
    def __init__(self, name, tolerance=DEFAULT_TOL):
        self.name = name
        self.tolerance = tolerance
        # One stream per case, keyed by its name, so adding a case changes no other case.
        self.rng = np.random.default_rng([1234, zlib.crc32(name.encode())])
        self.inputs, self.outputs, self.nodes = [], [], []
        self.arrays = {}
        self.symbols = {}

    # -- data --
    def uniform(self, shape, lo=-1.0, hi=1.0):
        return self.rng.uniform(lo, hi, size=shape).astype(np.float32)

    def normal(self, shape, scale=1.0):
        return (self.rng.standard_normal(size=shape) * scale).astype(np.float32)

    @staticmethod
    def _wide(arr):
        return arr.astype(np.float64) if arr.dtype == np.float32 else arr.astype(np.int64)

    @staticmethod
    def _dtype(arr):
        if arr.dtype == np.float32:
            return "F32"
        assert arr.dtype == np.int64, arr.dtype
        return "I64"

    def _bind(self, declared, actual, what):
        assert len(declared) == len(actual), (self.name, what, declared, actual)
        for d, a in zip(declared, actual):
            if isinstance(d, str):
                assert self.symbols.setdefault(d, a) == a, (self.name, what, d)
            else:
                assert d == a, (self.name, what, declared, actual)

    def input(self, name, arr, shape=None):
        """Declares a graph input with the given array; returns its float64/int64 value."""
        shape = list(arr.shape) if shape is None else list(shape)
        self._bind(shape, arr.shape, name)
        self.inputs.append({"name": name, "dtype": self._dtype(arr), "shape": shape})
        self.arrays["input." + name] = arr
        return self._wide(arr)

    def weight(self, name, arr):
        self.arrays["weight." + name] = arr
        return self._wide(arr)

    def node(self, op, inputs, outputs, **attrs):
        if isinstance(outputs, str):
            outputs = [outputs]
        n = {"op": op, "name": f"n{len(self.nodes)}_{op.lower()}", "inputs": list(inputs),
             "outputs": list(outputs)}
        if attrs:
            n["attrs"] = attrs
        self.nodes.append(n)

    def output(self, name, value, dtype="F32", shape=None):
        arr = np.asarray(value).astype(np.float32 if dtype == "F32" else np.int64)
        if dtype == "F32":
            assert np.all(np.isfinite(arr)), (self.name, name)
        shape = list(arr.shape) if shape is None else list(shape)
        self._bind(shape, arr.shape, name)
        self.outputs.append({"name": name, "dtype": dtype, "shape": shape})
        self.arrays["output." + name] = arr

    def arch(self):
        return {"opset": 2, "inputs": self.inputs, "outputs": self.outputs, "nodes": self.nodes}


def case(name, tolerance=DEFAULT_TOL):
    def register(fn):
        CASES.append((name, tolerance, fn))
        return fn
    return register


# ----------------------------------------------------------------------------------------------
# Element-wise
# ----------------------------------------------------------------------------------------------

def binary(name, op, fn, a_shape, b_shape, a_is_weight=False, b_is_weight=False,
           a_range=(-2, 2), b_range=(-2, 2), b_away_from_zero=False):
    @case(name)
    def _(c):
        a_arr = c.uniform(a_shape, *a_range)
        b_arr = c.uniform(b_shape, *b_range)
        if b_away_from_zero:  # |b| in [0.5, 2], either sign
            b_arr = (c.uniform(b_shape, 0.5, 2.0) *
                     np.where(c.rng.random(b_shape) < 0.5, -1, 1)).astype(np.float32)
        a = c.weight("a", a_arr) if a_is_weight else c.input("a", a_arr)
        b = c.weight("b", b_arr) if b_is_weight else c.input("b", b_arr)
        c.node(op, ["a", "b"], "y")
        c.output("y", fn(a, b))


binary("add_bcast_vec_weight", "Add", np.add, [2, 3, 4], [4], b_is_weight=True)
binary("add_bcast_2x1x4_3x1", "Add", np.add, [2, 1, 4], [3, 1])
binary("add_bcast_1_2x3", "Add", np.add, [1], [2, 3])
binary("add_same_shape", "Add", np.add, [3, 5], [3, 5])
binary("sub_bcast_vec_weight", "Sub", np.subtract, [2, 3, 4], [4], b_is_weight=True)
binary("sub_bcast_weight_first", "Sub", np.subtract, [4], [2, 3, 4], a_is_weight=True)
binary("sub_bcast_2x1x4_3x1", "Sub", np.subtract, [2, 1, 4], [3, 1])
binary("sub_bcast_1_2x3", "Sub", np.subtract, [1], [2, 3])
binary("mul_bcast_vec_weight", "Mul", np.multiply, [2, 3, 4], [4], b_is_weight=True)
binary("mul_bcast_2x1x4_3x1", "Mul", np.multiply, [2, 1, 4], [3, 1])
binary("mul_bcast_1_weight_2x3", "Mul", np.multiply, [1], [2, 3], a_is_weight=True)
binary("div_bcast_vec_weight", "Div", np.divide, [2, 3, 4], [4], b_is_weight=True,
       b_away_from_zero=True)
binary("div_bcast_2x1x4_3x1", "Div", np.divide, [2, 1, 4], [3, 1], b_away_from_zero=True)
binary("div_bcast_2x3_1", "Div", np.divide, [2, 3], [1], b_away_from_zero=True)
binary("div_bcast_1_2x3", "Div", np.divide, [1], [2, 3], b_away_from_zero=True)
binary("pow_positive_base", "Pow", np.power, [2, 3, 4], [4], b_is_weight=True,
       a_range=(0.25, 2.0), b_range=(-2.0, 2.0))
binary("pow_bcast_2x1x4_3x1", "Pow", np.power, [2, 1, 4], [3, 1],
       a_range=(0.5, 2.0), b_range=(-1.5, 2.5))


@case("pow_negative_base_integer_exponent")
def _(c):
    # powf of a negative base with an integer exponent is defined (-2 ** 3 = -8).
    a = c.input("a", c.uniform([2, 3], -2.0, 2.0))
    b = c.weight("b", np.array([2.0, 3.0, -1.0], dtype=np.float32))
    c.node("Pow", ["a", "b"], "y")
    c.output("y", np.power(a, b))


def with_specials(arr):
    """Puts an exact 0 and a value of each sign in the first cells (for Relu/LeakyRelu)."""
    flat = arr.reshape(-1)
    flat[:3] = [0.0, -0.5, 0.5]
    return arr


def unary(name, op, fn, shape, lo, hi, specials=False, **attrs):
    @case(name)
    def _(c):
        arr = c.uniform(shape, lo, hi)
        if specials:
            arr = with_specials(arr)
        x = c.input("x", arr)
        c.node(op, ["x"], "y", **attrs)
        c.output("y", fn(x))


unary("relu", "Relu", lambda x: np.maximum(x, 0.0), [2, 3, 4], -2, 2, specials=True)
unary("leaky_relu_default", "LeakyRelu", leaky_relu, [2, 3, 4], -3, 3, specials=True)
unary("leaky_relu_alpha_0_2", "LeakyRelu", lambda x: leaky_relu(x, 0.2), [2, 3, 4], -3, 3,
      specials=True, alpha=0.2)
unary("sigmoid", "Sigmoid", sigmoid, [3, 8], -6, 6)
unary("tanh", "Tanh", np.tanh, [3, 8], -3, 3)
unary("exp", "Exp", np.exp, [3, 8], -3, 2)
unary("sqrt", "Sqrt", np.sqrt, [3, 8], 0.01, 4)
unary("erf", "Erf", erf, [3, 8], -3, 3)
unary("gelu_default", "Gelu", gelu, [3, 8], -4, 4)
unary("gelu_none", "Gelu", gelu, [3, 8], -4, 4, approximate="none")
unary("gelu_tanh", "Gelu", lambda x: gelu(x, "tanh"), [3, 8], -4, 4, approximate="tanh")
unary("softmax_default_axis", "Softmax", softmax, [3, 5], -3, 3)
unary("softmax_axis_neg1_rank3", "Softmax", lambda x: softmax(x, -1), [2, 3, 4], -3, 3, axis=-1)
unary("softmax_axis1_rank3", "Softmax", lambda x: softmax(x, 1), [2, 4, 3], -3, 3, axis=1)
unary("softmax_axis0", "Softmax", lambda x: softmax(x, 0), [4, 3], -3, 3, axis=0)
unary("softmax_axis_neg2_rank3", "Softmax", lambda x: softmax(x, -2), [2, 4, 3], -3, 3, axis=-2)
unary("softmax_large_logits", "Softmax", softmax, [2, 5], 50, 90)  # needs the max subtraction
unary("identity", "Identity", lambda x: x, [2, 3], -2, 2)
unary("dropout_ratio", "Dropout", lambda x: x, [2, 3, 4], -2, 2, ratio=0.5)
unary("dropout_default", "Dropout", lambda x: x, [2, 3], -2, 2)


@case("dropout_ignored_ratio_input")
def _(c):
    # Dropout ignores its second input (ONNX's ratio) at inference.
    x = c.input("x", c.uniform([2, 3]))
    c.weight("ratio", np.array(0.3, dtype=np.float32))
    c.node("Dropout", ["x", "ratio"], "y")
    c.output("y", x)


@case("identity_int64")
def _(c):
    x = c.input("x", np.array([[3, -1, 0], [7, 9, -12]], dtype=np.int64))
    c.node("Identity", ["x"], "y")
    c.output("y", x, dtype="I64")


# ----------------------------------------------------------------------------------------------
# Linear algebra
# ----------------------------------------------------------------------------------------------

def matmul_case(name, a_shape, b_shape, b_is_weight=True, a_decl=None):
    @case(name)
    def _(c):
        a = c.input("a", c.uniform(a_shape), shape=a_decl)
        b_arr = c.uniform(b_shape)
        b = c.weight("b", b_arr) if b_is_weight else c.input("b", b_arr)
        c.node("MatMul", ["a", "b"], "y")
        y = np.matmul(a, b)
        decl = None
        if a_decl is not None and isinstance(a_decl[0], str):
            decl = [a_decl[0]] + list(y.shape[1:])
        c.output("y", y, shape=decl)


matmul_case("matmul_2d_batch", [3, 4], [4, 5], a_decl=["batch", 4])
matmul_case("matmul_2d_two_inputs", [3, 4], [4, 5], b_is_weight=False)
matmul_case("matmul_3d_by_2d_weight", [2, 3, 4], [4, 5], a_decl=["batch", 3, 4])
matmul_case("matmul_3d_by_3d", [2, 3, 4], [2, 4, 5], b_is_weight=False)
matmul_case("matmul_bcast_batch_dims", [2, 1, 3, 4], [5, 4, 6])
matmul_case("matmul_1d_by_2d", [4], [4, 5])
matmul_case("matmul_2d_by_1d", [3, 4], [4])
matmul_case("matmul_1d_by_3d", [4], [2, 4, 5])
matmul_case("matmul_3d_by_1d", [2, 3, 4], [4])
matmul_case("matmul_1d_by_1d", [4], [4])


def gemm_case(name, a_shape, b_shape, c_shape, a_decl=None, empty_c=False, **attrs):
    @case(name)
    def _(c):
        a = c.input("a", c.uniform(a_shape), shape=a_decl)
        b = c.weight("b", c.uniform(b_shape))
        inputs = ["a", "b"]
        cv = None
        if c_shape is not None:
            cv = c.weight("c", c.uniform(c_shape))
            inputs.append("c")
        elif empty_c:
            inputs.append("")
        c.node("Gemm", inputs, "y", **attrs)
        y = gemm(a, b, cv, attrs.get("alpha", 1.0), attrs.get("beta", 1.0),
                 attrs.get("transA", 0), attrs.get("transB", 0))
        decl = None
        if a_decl is not None and isinstance(a_decl[0], str):
            decl = [a_decl[0], y.shape[1]]
        c.output("y", y, shape=decl)


gemm_case("gemm_default", [3, 4], [4, 5], [3, 5])
gemm_case("gemm_trans_a", [4, 3], [4, 5], [3, 5], transA=1)
gemm_case("gemm_trans_b_alpha_beta_c_vec", [3, 4], [5, 4], [5], a_decl=["batch", 4],
          transB=1, alpha=0.5, beta=2.0)
gemm_case("gemm_c_column", [3, 4], [4, 5], [3, 1])
gemm_case("gemm_c_scalar_trans_both", [4, 3], [5, 4], [1], transA=1, transB=1, alpha=1.5,
          beta=-1.0)
gemm_case("gemm_no_c", [3, 4], [4, 5], None, a_decl=["batch", 4])
gemm_case("gemm_empty_c", [3, 4], [4, 5], None, empty_c=True, alpha=2.0)
gemm_case("gemm_c_default_beta_1x5", [3, 4], [4, 5], [1, 5], beta=0.25)


def dense_case(name, activation, with_bias=True):
    @case(name)
    def _(c):
        x = c.input("x", c.uniform([4, 6]), shape=["batch", 6])
        k = c.weight("kernel", c.uniform([6, 5], -0.8, 0.8))
        inputs = ["x", "kernel"]
        b = None
        if with_bias:
            b = c.weight("bias", c.uniform([5], -0.5, 0.5))
            inputs.append("bias")
        attrs = {} if activation is None else {"activation": activation}
        c.node("Dense", inputs, "y", **attrs)
        c.output("y", dense(x, k, b, activation or "linear"), shape=["batch", 5])


dense_case("dense_relu", "relu")
dense_case("dense_softmax", "softmax")
dense_case("dense_sigmoid", "sigmoid")
dense_case("dense_tanh_no_bias", "tanh", with_bias=False)
dense_case("dense_default_linear", None)


# ----------------------------------------------------------------------------------------------
# Convolution and pooling
# ----------------------------------------------------------------------------------------------

def conv_case(name, x_shape, w_shape, bias=True, x_decl=None, **attrs):
    @case(name)
    def _(c):
        x = c.input("x", c.uniform(x_shape), shape=x_decl)
        fan_in = w_shape[1] * w_shape[2] * w_shape[3]
        w = c.weight("w", c.uniform(w_shape, -1.0, 1.0) / np.float32(math.sqrt(fan_in)))
        inputs = ["x", "w"]
        b = None
        if bias:
            b = c.weight("b", c.uniform([w_shape[0]], -0.5, 0.5))
            inputs.append("b")
        c.node("Conv", inputs, "y", **attrs)
        y = conv2d(x, w, b, attrs.get("strides", (1, 1)), attrs.get("pads", (0, 0, 0, 0)),
                   attrs.get("dilations", (1, 1)), attrs.get("group", 1))
        decl = None
        if x_decl is not None and isinstance(x_decl[0], str):
            decl = [x_decl[0]] + list(y.shape[1:])
        c.output("y", y, shape=decl)


conv_case("conv_3x3_nopad", [1, 2, 5, 5], [3, 2, 3, 3])
conv_case("conv_3x3_nopad_no_bias", [1, 2, 5, 5], [3, 2, 3, 3], bias=False)
conv_case("conv_pads_1", [1, 2, 5, 5], [3, 2, 3, 3], pads=[1, 1, 1, 1])
conv_case("conv_pads_asym_0_1_2_1", [1, 2, 5, 6], [3, 2, 3, 3], pads=[0, 1, 2, 1])
conv_case("conv_strides_2", [1, 2, 7, 9], [4, 2, 3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
conv_case("conv_strides_2_1_no_bias", [1, 2, 7, 9], [3, 2, 3, 3], bias=False, strides=[2, 1])
conv_case("conv_dilations_2", [1, 2, 7, 9], [3, 2, 3, 3], dilations=[2, 2])
conv_case("conv_dilations_2_1_pads", [1, 2, 7, 9], [3, 2, 3, 2], dilations=[2, 1],
          pads=[2, 1, 1, 0])
conv_case("conv_group_2", [1, 4, 5, 5], [6, 2, 3, 3], group=2, pads=[1, 1, 1, 1])
conv_case("conv_depthwise", [1, 3, 6, 6], [3, 1, 3, 3], group=3)
conv_case("conv_depthwise_multiplier_2_no_bias", [1, 3, 6, 6], [6, 1, 3, 3], bias=False,
          group=3, pads=[1, 1, 1, 1])
conv_case("conv_groups_strides", [1, 4, 7, 7], [4, 2, 3, 3], group=2, strides=[2, 2],
          pads=[1, 1, 1, 1])
conv_case("conv_batch2_nonsquare", [2, 3, 7, 9], [4, 3, 3, 3], x_decl=["batch", 3, 7, 9],
          pads=[1, 1, 1, 1])
conv_case("conv_1x1", [2, 3, 4, 5], [2, 3, 1, 1], x_decl=["batch", 3, 4, 5])
conv_case("conv_rect_kernel_explicit_attrs", [1, 2, 6, 8], [3, 2, 2, 3], kernel_shape=[2, 3],
          strides=[1, 2], pads=[0, 1, 1, 1], dilations=[1, 1], group=1, auto_pad="NOTSET")
# Enough output channels per group for the direct kernel (blocks of 8 channels by 8 columns):
# a partial channel block, rows wider than a block and not a multiple of it, strides that
# split columns into phases, dilations, asymmetric pads, groups.
conv_case("conv_direct_16ch_strides_2", [2, 3, 11, 13], [16, 3, 3, 3], strides=[2, 2],
          pads=[1, 1, 1, 1])
conv_case("conv_direct_12ch_dilations_asym_pads", [1, 5, 9, 20], [12, 5, 3, 2],
          dilations=[2, 3], pads=[0, 2, 1, 1])
conv_case("conv_direct_groups_strides_1_3", [1, 6, 8, 26], [10, 3, 3, 3], bias=False, group=2,
          strides=[1, 3], pads=[1, 0, 1, 2])
conv_case("conv_direct_5x5_strides_3", [1, 2, 17, 19], [9, 2, 5, 5], strides=[3, 3],
          pads=[2, 2, 2, 2])


def with_negative_region(arr):
    """Makes channel 0 all negative, and the bottom-right 3x3 of channel 1 negative, so that a
    zero from padding would win the max if padding were allowed to."""
    arr[:, 0] = -np.abs(arr[:, 0]) - 0.1
    arr[:, 1, -3:, -3:] = -np.abs(arr[:, 1, -3:, -3:]) - 0.1
    return arr


def maxpool_case(name, x_shape, negative=False, **attrs):
    @case(name)
    def _(c):
        arr = c.uniform(x_shape, -2, 2)
        if negative:
            arr = with_negative_region(arr)
        x = c.input("x", arr)
        c.node("MaxPool", ["x"], "y", **attrs)
        c.output("y", maxpool2d(x, attrs["kernel_shape"], attrs.get("strides", (1, 1)),
                                attrs.get("pads", (0, 0, 0, 0)), attrs.get("dilations", (1, 1))))


maxpool_case("maxpool_2x2_stride_2", [1, 2, 4, 6], kernel_shape=[2, 2], strides=[2, 2])
maxpool_case("maxpool_3x3_stride_1_pads_1", [1, 2, 5, 5], negative=True, kernel_shape=[3, 3],
             pads=[1, 1, 1, 1])
maxpool_case("maxpool_dilations_2", [1, 2, 6, 7], kernel_shape=[2, 2], dilations=[2, 2])
maxpool_case("maxpool_asym_pads_default_strides", [2, 2, 5, 6], negative=True,
             kernel_shape=[2, 3], pads=[1, 0, 0, 2])
maxpool_case("maxpool_explicit_defaults", [1, 2, 5, 5], kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1], dilations=[1, 1], ceil_mode=0, storage_order=0,
             auto_pad="NOTSET")


def avgpool_case(name, x_shape, **attrs):
    @case(name)
    def _(c):
        x = c.input("x", c.uniform(x_shape, -2, 2))
        c.node("AveragePool", ["x"], "y", **attrs)
        c.output("y", avgpool2d(x, attrs["kernel_shape"], attrs.get("strides", (1, 1)),
                                attrs.get("pads", (0, 0, 0, 0)),
                                attrs.get("count_include_pad", 0)))


avgpool_case("avgpool_2x2_stride_2", [1, 2, 4, 6], kernel_shape=[2, 2], strides=[2, 2])
avgpool_case("avgpool_pads_default_exclude", [1, 2, 5, 5], kernel_shape=[3, 3],
             pads=[1, 1, 1, 1])
avgpool_case("avgpool_pads_count_include_pad_0", [1, 2, 5, 6], kernel_shape=[3, 3],
             strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0)
avgpool_case("avgpool_pads_count_include_pad_1", [1, 2, 5, 6], kernel_shape=[3, 3],
             strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
avgpool_case("avgpool_asym_pads_include_pad_1", [2, 2, 5, 5], kernel_shape=[3, 3],
             pads=[0, 1, 2, 1], count_include_pad=1)
avgpool_case("avgpool_asym_pads_include_pad_0", [2, 2, 5, 5], kernel_shape=[3, 3],
             pads=[0, 1, 2, 1], count_include_pad=0)


@case("global_average_pool")
def _(c):
    x = c.input("x", c.uniform([2, 3, 4, 5], -2, 2), shape=["batch", 3, 4, 5])
    c.node("GlobalAveragePool", ["x"], "y")
    c.output("y", global_avgpool(x), shape=["batch", 3, 1, 1])


# ----------------------------------------------------------------------------------------------
# Normalization
# ----------------------------------------------------------------------------------------------

def batchnorm_case(name, x_shape, x_decl=None, **attrs):
    @case(name)
    def _(c):
        ch = x_shape[1]
        x = c.input("x", c.uniform(x_shape, -2, 2), shape=x_decl)
        scale = c.weight("scale", c.uniform([ch], 0.5, 1.5))
        b = c.weight("bias", c.uniform([ch], -0.5, 0.5))
        mean = c.weight("mean", c.uniform([ch], -0.5, 0.5))
        var = c.weight("var", c.uniform([ch], 0.25, 2.0))
        c.node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], "y", **attrs)
        decl = None if x_decl is None else list(x_decl)
        c.output("y", batchnorm(x, scale, b, mean, var, attrs.get("epsilon", 1e-5)), shape=decl)


batchnorm_case("batchnorm_rank4", [2, 3, 4, 5])
batchnorm_case("batchnorm_rank2", [4, 3], x_decl=["batch", 3], epsilon=1e-3, momentum=0.9)
batchnorm_case("batchnorm_rank3_explicit_attrs", [2, 3, 5], epsilon=0.01, momentum=0.99,
               training_mode=0)


@case("batchnorm_small_var_epsilon")
def _(c):
    # var near zero: the epsilon inside the sqrt matters.
    x = c.input("x", c.uniform([1, 2, 3, 3], -0.05, 0.05))
    scale = c.weight("scale", np.array([1.0, 0.5], dtype=np.float32))
    b = c.weight("bias", np.array([0.0, 0.1], dtype=np.float32))
    mean = c.weight("mean", np.array([0.01, -0.01], dtype=np.float32))
    var = c.weight("var", np.array([0.0, 1e-4], dtype=np.float32))
    c.node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], "y", epsilon=1e-3)
    c.output("y", batchnorm(x, scale, b, mean, var, 1e-3))


def layernorm_case(name, x_shape, scale_shape, with_bias=True, x_decl=None, **attrs):
    @case(name)
    def _(c):
        x = c.input("x", c.uniform(x_shape, -2, 2) + np.float32(0.5), shape=x_decl)
        scale = c.weight("scale", c.uniform(scale_shape, 0.5, 1.5))
        inputs = ["x", "scale"]
        b = None
        if with_bias:
            b = c.weight("bias", c.uniform(scale_shape, -0.5, 0.5))
            inputs.append("bias")
        c.node("LayerNormalization", inputs, "y", **attrs)
        c.output("y", layernorm(x, scale, b, attrs.get("axis", -1), attrs.get("epsilon", 1e-5)),
                 shape=None if x_decl is None else list(x_decl))


layernorm_case("layernorm_axis_last", [2, 3, 8], [8], x_decl=["batch", 3, 8])
layernorm_case("layernorm_axis_neg1_no_bias", [2, 3, 8], [8], with_bias=False, axis=-1)
layernorm_case("layernorm_axis1_rank3", [2, 3, 4], [3, 4], axis=1)
layernorm_case("layernorm_axis_neg2_epsilon", [2, 3, 4], [3, 4], axis=-2, epsilon=1e-3,
               stash_type=1)
layernorm_case("layernorm_rank2", [4, 6], [6])
layernorm_case("layernorm_axis1_scale_broadcast", [2, 3, 4], [4], axis=1)


# ----------------------------------------------------------------------------------------------
# Shape and data movement
# ----------------------------------------------------------------------------------------------

def shape_case(name, x_shape, op, fn, dtype="F32", x_decl=None, y_decl=None, **attrs):
    @case(name)
    def _(c):
        if dtype == "F32":
            arr = c.uniform(x_shape, -2, 2)
        else:
            arr = c.rng.integers(-50, 50, size=x_shape).astype(np.int64)
        x = c.input("x", arr, shape=x_decl)
        c.node(op, ["x"], "y", **attrs)
        c.output("y", fn(x), dtype=dtype, shape=y_decl)


shape_case("flatten_axis1", [2, 3, 4], "Flatten", lambda x: flatten(x, 1), axis=1)
shape_case("flatten_default_axis_batch", [2, 3, 4], "Flatten", lambda x: flatten(x, 1),
           x_decl=["batch", 3, 4], y_decl=["batch", 12])
shape_case("flatten_axis0", [2, 3, 4], "Flatten", lambda x: flatten(x, 0), axis=0)
shape_case("flatten_axis2", [2, 3, 4], "Flatten", lambda x: flatten(x, 2), axis=2)
shape_case("flatten_axis_neg1", [2, 3, 4], "Flatten", lambda x: flatten(x, -1), axis=-1)
shape_case("flatten_axis_neg3_rank4", [2, 3, 2, 2], "Flatten", lambda x: flatten(x, -3), axis=-3)
shape_case("flatten_axis_rank", [2, 3, 4], "Flatten", lambda x: flatten(x, 3), axis=3)
shape_case("reshape_zero_and_minus1", [2, 3, 4], "Reshape", lambda x: reshape(x, [0, -1]),
           shape=[0, -1])
shape_case("reshape_minus1_middle_zero_last", [2, 3, 4], "Reshape",
           lambda x: reshape(x, [3, -1, 4]), shape=[3, -1, 4])
shape_case("reshape_zero_zero_split", [2, 3, 4], "Reshape",
           lambda x: reshape(x, [0, 0, 2, 2]), shape=[0, 0, 2, 2])
shape_case("reshape_batch_zero", [2, 3, 4], "Reshape", lambda x: reshape(x, [0, 12]),
           x_decl=["batch", 3, 4], y_decl=["batch", 12], shape=[0, 12])
shape_case("reshape_int64", [6], "Reshape", lambda x: reshape(x, [2, -1]), dtype="I64",
           shape=[2, -1])
shape_case("transpose_perm", [2, 3, 4], "Transpose", lambda x: transpose(x, [1, 2, 0]),
           perm=[1, 2, 0])
shape_case("transpose_default_reverse", [2, 3, 4], "Transpose", transpose)
shape_case("transpose_perm_rank4", [2, 3, 2, 4], "Transpose",
           lambda x: transpose(x, [0, 2, 3, 1]), perm=[0, 2, 3, 1])
shape_case("transpose_int64", [2, 3], "Transpose", transpose, dtype="I64")
shape_case("squeeze_axes", [1, 3, 1, 4], "Squeeze", lambda x: squeeze(x, [0, -2]), axes=[0, -2])
shape_case("squeeze_default", [1, 3, 1, 4], "Squeeze", squeeze)
shape_case("squeeze_one_axis", [2, 1, 3], "Squeeze", lambda x: squeeze(x, [1]), axes=[1])
shape_case("unsqueeze_axes_negative", [3, 4], "Unsqueeze",
           lambda x: unsqueeze(x, [0, -1, 2]), axes=[0, -1, 2])
shape_case("unsqueeze_single_axis", [3, 4], "Unsqueeze", lambda x: unsqueeze(x, [1]), axes=[1])
shape_case("unsqueeze_int64", [3], "Unsqueeze", lambda x: unsqueeze(x, [-1, 0]), dtype="I64",
           axes=[-1, 0])


def slice_case(name, x_shape, starts, ends, axes=None, steps=None, dtype="F32"):
    attrs = {"starts": starts, "ends": ends}
    if axes is not None:
        attrs["axes"] = axes
    if steps is not None:
        attrs["steps"] = steps
    shape_case(name, x_shape, "Slice", lambda x: slice_onnx(x, starts, ends, axes, steps),
               dtype=dtype, **attrs)


slice_case("slice_negative_start_clamped_end", [4, 6], [-3], [1000], axes=[1])
slice_case("slice_default_axes", [4, 6], [1, 2], [3, 5])
slice_case("slice_steps_2", [4, 6], [0, 1], [4, 6], steps=[2, 2])
slice_case("slice_reverse_axis0", [4, 6], [-1], [-1000], axes=[0], steps=[-1])
slice_case("slice_negative_step_2", [3, 7], [5], [0], axes=[1], steps=[-2])
slice_case("slice_negative_step_clamped_start", [3, 7], [100, 2], [-1000, -9], axes=[1, 0],
           steps=[-3, -1])
slice_case("slice_explicit_axes_unordered", [2, 4, 6], [1, 0], [5, 1], axes=[2, 0],
           steps=[2, 1])
slice_case("slice_negative_axis_and_ends", [2, 4, 6], [1, -5], [-1, -1], axes=[-2, -1])
slice_case("slice_start_below_zero_clamped", [5, 3], [-100], [3], axes=[0])
slice_case("slice_int64", [8], [1], [-1], steps=[3], dtype="I64")


@case("concat_axis1_three")
def _(c):
    a = c.input("a", c.uniform([2, 1, 3]))
    b = c.weight("b", c.uniform([2, 2, 3]))
    d = c.input("d", c.uniform([2, 3, 3]))
    c.node("Concat", ["a", "b", "d"], "y", axis=1)
    c.output("y", concat([a, b, d], 1))


@case("concat_axis_neg1")
def _(c):
    a = c.input("a", c.uniform([2, 3]), shape=["batch", 3])
    b = c.input("b", c.uniform([2, 2]), shape=["batch", 2])
    c.node("Concat", ["a", "b"], "y", axis=-1)
    c.output("y", concat([a, b], -1), shape=["batch", 5])


@case("concat_axis0_rank3")
def _(c):
    a = c.input("a", c.uniform([1, 2, 3]))
    b = c.input("b", c.uniform([2, 2, 3]))
    c.node("Concat", ["a", "b"], "y", axis=0)
    c.output("y", concat([a, b], 0))


@case("concat_single_input")
def _(c):
    a = c.input("a", c.uniform([2, 3]))
    c.node("Concat", ["a"], "y", axis=0)
    c.output("y", a)


@case("concat_int64")
def _(c):
    a = c.input("a", np.array([[1, 2], [3, 4]], dtype=np.int64))
    b = c.weight("b", np.array([[-5], [6]], dtype=np.int64))
    c.node("Concat", ["a", "b"], "y", axis=1)
    c.output("y", concat([a, b], 1), dtype="I64")


@case("gather_embedding_axis0")
def _(c):
    table = c.weight("table", c.uniform([10, 4]))
    idx = c.input("ids", np.array([[0, 3, 9], [-1, 5, -10]], dtype=np.int64))
    c.node("Gather", ["table", "ids"], "y")
    c.output("y", gather(table, idx, 0))


@case("gather_embedding_batch")
def _(c):
    table = c.weight("table", c.uniform([10, 4]))
    idx = c.input("ids", np.array([[2, 2, 7, -3], [1, 0, 4, 8]], dtype=np.int64),
                  shape=["batch", 4])
    c.node("Gather", ["table", "ids"], "y", axis=0)
    c.output("y", gather(table, idx, 0), shape=["batch", 4, 4])


@case("gather_axis1_weight_indices")
def _(c):
    data = c.input("x", c.uniform([3, 5, 2]))
    idx = c.weight("idx", np.array([[4, 0], [-2, 1]], dtype=np.int64))
    c.node("Gather", ["x", "idx"], "y", axis=1)
    c.output("y", gather(data, idx, 1))


@case("gather_axis_neg1_scalar_index")
def _(c):
    data = c.input("x", c.uniform([3, 5]))
    idx = c.weight("idx", np.array(-2, dtype=np.int64))  # a 0-d index removes the axis
    c.node("Gather", ["x", "idx"], "y", axis=-1)
    c.output("y", gather(data, idx, -1))


@case("gather_int64_data")
def _(c):
    data = c.input("x", np.array([10, 20, 30, 40, 50], dtype=np.int64))
    idx = c.weight("idx", np.array([[4, -5], [0, 2]], dtype=np.int64))
    c.node("Gather", ["x", "idx"], "y")
    c.output("y", gather(data, idx, 0), dtype="I64")


@case("constant_value_floats_shape_add")
def _(c):
    vals = c.uniform([6])
    x = c.input("x", c.uniform([2, 3]))
    c.node("Constant", [], "k", value_floats=[float(v) for v in vals], shape=[2, 3])
    c.node("Add", ["x", "k"], "y")
    c.output("y", x + vals.astype(np.float64).reshape(2, 3))


@case("constant_value_floats_default_shape")
def _(c):
    vals = c.uniform([4])
    x = c.input("x", c.uniform([3, 4]))
    c.node("Constant", [], "k", value_floats=[float(v) for v in vals])
    c.node("Mul", ["x", "k"], "y")
    c.output("y", x * vals.astype(np.float64))


@case("constant_value_float_scalar")
def _(c):
    # Used only through broadcasting, so the result is the same whether the constant is 0-d
    # (as in ONNX) or [1].
    x = c.input("x", c.uniform([2, 3]))
    c.node("Constant", [], "k", value_float=0.125)
    c.node("Mul", ["x", "k"], "y")
    c.output("y", x * f32(0.125))


@case("constant_value_ints_output")
def _(c):
    x = c.input("x", c.uniform([2, 3]))
    c.node("Relu", ["x"], "y")
    c.node("Constant", [], "k", value_ints=[3, -1, 4, 1, -5, 9], shape=[3, 2])
    c.output("y", np.maximum(x, 0.0))
    c.output("k", np.array([3, -1, 4, 1, -5, 9], dtype=np.int64).reshape(3, 2), dtype="I64")


@case("int64_shape_ops_to_gather")
def _(c):
    # Integer values travel through the shape ops and end as Gather indices.
    table = c.weight("table", c.uniform([10, 3]))
    ids = c.input("ids", np.array([1, -2, 3, 0, 9, -10], dtype=np.int64))
    r = reshape(ids, [2, -1])
    c.node("Reshape", ["ids"], "r", shape=[2, -1])                       # [2, 3]
    t = transpose(r)
    c.node("Transpose", ["r"], "t")                                       # [3, 2]
    u = unsqueeze(t, [0])
    c.node("Unsqueeze", ["t"], "u", axes=[0])                             # [1, 3, 2]
    k = np.array([4, 5, 6, 7, 8, -1], dtype=np.int64).reshape(1, 3, 2)
    c.node("Constant", [], "k", value_ints=[4, 5, 6, 7, 8, -1], shape=[1, 3, 2])
    cat = concat([u, k], 0)
    c.node("Concat", ["u", "k"], "cat", axis=0)                           # [2, 3, 2]
    s = slice_onnx(cat, [-1], [-1000], [1], [-2])
    c.node("Slice", ["cat"], "s", starts=[-1], ends=[-1000], axes=[1], steps=[-2])  # [2, 2, 2]
    f = flatten(s, 1)
    c.node("Flatten", ["s"], "f", axis=1)                                 # [2, 4]
    sq = squeeze(unsqueeze(f, [1]), [1])
    c.node("Unsqueeze", ["f"], "fu", axes=[1])
    c.node("Squeeze", ["fu"], "fs", axes=[1])
    c.node("Identity", ["fs"], "idx")
    c.node("Gather", ["table", "idx"], "y")
    c.output("idx", sq, dtype="I64")
    c.output("y", gather(table, sq, 0))


# ----------------------------------------------------------------------------------------------
# Small multi-node graphs
# ----------------------------------------------------------------------------------------------

@case("graph_transformer_block")
def _(c):
    d, h = 8, 16
    x = c.input("x", c.uniform([2, 3, d], -1.5, 1.5), shape=["batch", 3, d])
    ln_s = c.weight("ln_scale", c.uniform([d], 0.7, 1.3))
    ln_b = c.weight("ln_bias", c.uniform([d], -0.2, 0.2))
    w1 = c.weight("w1", c.uniform([d, h], -1, 1) / np.float32(math.sqrt(d)))
    b1 = c.weight("b1", c.uniform([h], -0.2, 0.2))
    w2 = c.weight("w2", c.uniform([h, d], -1, 1) / np.float32(math.sqrt(h)))
    c.node("LayerNormalization", ["x", "ln_scale", "ln_bias"], "ln", axis=-1, epsilon=1e-5)
    c.node("MatMul", ["ln", "w1"], "h1")
    c.node("Add", ["h1", "b1"], "h2")
    c.node("Gelu", ["h2"], "h3")
    c.node("MatMul", ["h3", "w2"], "h4")
    c.node("Add", ["h4", "x"], "y")
    ref = gelu(layernorm(x, ln_s, ln_b, -1, 1e-5) @ w1 + b1) @ w2 + x
    c.output("y", ref, shape=["batch", 3, d])


@case("graph_tiny_attention")
def _(c):
    # Two heads of width 4 over [2, 4, 8]: per head Slice, Transpose K, scaled QK^T, Softmax,
    # times V; heads joined by Concat, a residual Add, then a Reshape to [2, 32].
    d, heads, hd = 8, 2, 4
    x = c.input("x", c.uniform([2, 4, d]))
    ws = {}
    for nm in ("wq", "wk", "wv"):
        ws[nm] = c.weight(nm, c.uniform([d, d], -1, 1) / np.float32(math.sqrt(d)))
        c.node("MatMul", ["x", nm], nm[1])
    q, k, v = (x @ ws["wq"], x @ ws["wk"], x @ ws["wv"])
    scale = 1.0 / math.sqrt(hd)  # 0.5, exact in float32
    c.node("Constant", [], "scale", value_float=scale)
    outs = []
    for i in range(heads):
        sl = dict(starts=[i * hd], ends=[(i + 1) * hd], axes=[-1])
        for nm in ("q", "k", "v"):
            c.node("Slice", [nm], f"{nm}{i}", **sl)
        c.node("Transpose", [f"k{i}"], f"kt{i}", perm=[0, 2, 1])
        c.node("MatMul", [f"q{i}", f"kt{i}"], f"s{i}")
        c.node("Mul", [f"s{i}", "scale"], f"ss{i}")
        c.node("Softmax", [f"ss{i}"], f"p{i}", axis=-1)
        c.node("MatMul", [f"p{i}", f"v{i}"], f"o{i}")
        qi, ki, vi = (slice_onnx(t, [i * hd], [(i + 1) * hd], [-1]) for t in (q, k, v))
        p = softmax((qi @ transpose(ki, [0, 2, 1])) * scale, -1)
        outs.append(p @ vi)
    c.node("Concat", ["o0", "o1"], "o", axis=-1)
    c.node("Add", ["o", "x"], "res")
    c.node("Reshape", ["res"], "y", shape=[0, -1])
    c.output("y", reshape(concat(outs, -1) + x, [0, -1]))


@case("graph_small_cnn")
def _(c):
    x = c.input("x", c.uniform([2, 1, 8, 8]), shape=["batch", 1, 8, 8])
    w1 = c.weight("conv1_w", c.uniform([4, 1, 3, 3], -1, 1) / np.float32(3.0))
    b1 = c.weight("conv1_b", c.uniform([4], -0.1, 0.1))
    bn = [c.weight("bn_scale", c.uniform([4], 0.8, 1.2)),
          c.weight("bn_bias", c.uniform([4], -0.1, 0.1)),
          c.weight("bn_mean", c.uniform([4], -0.1, 0.1)),
          c.weight("bn_var", c.uniform([4], 0.5, 1.5))]
    w2 = c.weight("conv2_w", c.uniform([6, 4, 3, 3], -1, 1) / np.float32(6.0))
    b2 = c.weight("conv2_b", c.uniform([6], -0.1, 0.1))
    fc_w = c.weight("fc_w", c.uniform([3, 6], -1, 1))
    fc_b = c.weight("fc_b", c.uniform([3], -0.1, 0.1))
    c.node("Conv", ["x", "conv1_w", "conv1_b"], "c1", pads=[1, 1, 1, 1])
    c.node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], "n1")
    c.node("Relu", ["n1"], "r1")
    c.node("MaxPool", ["r1"], "p1", kernel_shape=[2, 2], strides=[2, 2])
    c.node("Conv", ["p1", "conv2_w", "conv2_b"], "c2", strides=[2, 2], pads=[1, 1, 1, 1])
    c.node("Relu", ["c2"], "r2")
    c.node("GlobalAveragePool", ["r2"], "g")
    c.node("Flatten", ["g"], "f")
    c.node("Gemm", ["f", "fc_w", "fc_b"], "logits", transB=1)
    c.node("Softmax", ["logits"], "probs", axis=-1)
    h = conv2d(x, w1, b1, pads=(1, 1, 1, 1))
    h = np.maximum(batchnorm(h, *bn), 0.0)
    h = maxpool2d(h, (2, 2), (2, 2))
    h = np.maximum(conv2d(h, w2, b2, strides=(2, 2), pads=(1, 1, 1, 1)), 0.0)
    h = flatten(global_avgpool(h), 1)
    c.output("probs", softmax(gemm(h, fc_w, fc_b, trans_b=1), -1), shape=["batch", 3])


@case("graph_nodes_out_of_order")
def _(c):
    # The schema allows nodes in any order: these are listed consumers first.
    x = c.input("x", c.uniform([2, 3]))
    w = c.weight("w", c.uniform([3, 3]))
    c.node("Sigmoid", ["h2"], "y")
    c.node("Add", ["h1", "x"], "h2")
    c.node("MatMul", ["x", "w"], "h1")
    c.output("y", sigmoid(x @ w + x))


# ----------------------------------------------------------------------------------------------

def main():
    os.makedirs(OUT, exist_ok=True)
    names = set()
    cases = []
    total = 0
    for name, tol, fn in CASES:
        assert name not in names, name
        names.add(name)
        c = Case(name, tol)
        fn(c)
        # Every weight a node references is in the npz, and nothing else is.
        produced = {o for n in c.nodes for o in n["outputs"]}
        graph_inputs = {i["name"] for i in c.inputs}
        referenced = {i for n in c.nodes for i in n["inputs"] if i} - produced - graph_inputs
        weights = {k[len("weight."):] for k in c.arrays if k.startswith("weight.")}
        assert referenced == weights, (name, referenced, weights)
        assert not (graph_inputs & weights), name
        path = os.path.join(OUT, name + ".npz")
        np.savez(path, **c.arrays)
        size = os.path.getsize(path)
        assert size < 20_000, (name, size)
        total += size
        cases.append({"name": name, "arch": c.arch(), "tolerance": c.tolerance})
    doc = {
        "about": ("Per-op reference cases for the nnsign runtime, made by "
                  "scripts/make_op_fixtures.py. Each case's arch is a graph in the docs/SCHEMA.md "
                  "schema (op-set 2); <name>.npz holds weight.<tensor>, input.<graph input> and "
                  "output.<graph output>. Expected outputs are computed in float64 NumPy from the "
                  "float32 inputs and weights, then rounded to float32; an output matches when "
                  "every element is within the case's absolute tolerance (I64 outputs exactly). "
                  "Symbolic dimensions (\"batch\") are bound from the inputs."),
        "cases": cases,
    }
    # One case a line: compact, and a regenerated case shows up as a one-line diff.
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        f.write('{"about": ' + json.dumps(doc["about"]) + ',\n "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c) for c in doc["cases"]))
        f.write("\n ]\n}\n")
    json.load(open(os.path.join(OUT, "cases.json")))  # still valid JSON
    total += os.path.getsize(os.path.join(OUT, "cases.json"))
    print(f"{len(cases)} cases, {total} bytes in {OUT} (numpy {np.__version__})")


if __name__ == "__main__":
    main()
