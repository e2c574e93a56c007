#!/usr/bin/env python3
"""Writes tests/fixtures/ops3/vision.json: reference cases for nnsign's op-set 3 vision and
layout ops (Resize, ConvTranspose, InstanceNormalization, Pad, Tile, Expand, ConstantOfShape,
Range, Split, Where), read by the unit tests in src/ops/{resize,conv_transpose,layout,norm}.rs.

Each case is one ONNX node (op-set 21; the latest versions of these ops, as in onnx 1.23, only
add element types) run by onnx's reference implementation (`onnx.reference.ReferenceEvaluator`)
and, independently, by onnxruntime's CPU provider. The two must agree within 1e-5 (exactly for
integers and booleans); where they do not, the case says which one it follows and why
(`follows`, `why`), and the expected output is that one's. When PyTorch is importable, the
cases that stand for a torch layer (`torch`) are also checked against the layer itself, so the
attributes the exporter writes are known to mean what torch computes.

Case layout: {"name", "op", "attrs", "inputs": [tensor or null], "outputs": [tensor]}, where a
tensor is {"dtype": "f32" | "i64" | "bool", "shape": [...], "data": [...] (row-major)}; inputs
are in ONNX order, null for an omitted optional input. Parameter inputs (Resize's scales and
sizes, Pad's pads, ...) are ordinary inputs here; the Rust tests pass them as parameters.

Run from the repository root (the torch checks need a Python with torch, e.g. a venv):

    pip install numpy onnx onnxruntime && python3 scripts/make_vision_reference.py
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

try:
    import torch
except ImportError:  # the torch checks are skipped, and say so
    torch = None

OUT = "tests/fixtures/ops3/vision.json"
OPSET = 21
TOL = 1e-5
RNG = np.random.default_rng(20261127)
ONNX_TYPES = {np.float32: TensorProto.FLOAT, np.int64: TensorProto.INT64, np.bool_: TensorProto.BOOL}
NAMES = {np.float32: "f32", np.int64: "i64", np.bool_: "bool"}

CASES = []
TORCH_CHECKED = []


def f32(shape, lo=-2.0, hi=2.0):
    """Random float32 values with 3 decimals (easy to read in the JSON)."""
    return np.round(RNG.uniform(lo, hi, size=shape), 3).astype(np.float32)


def i64(values):
    return np.array(values, dtype=np.int64)


def fl(values):
    return np.array(values, dtype=np.float32)


def encode(a):
    if a is None:
        return None
    kind = a.dtype.type
    if kind is np.float32:
        data = [float(v) for v in a.reshape(-1)]
    elif kind is np.int64:
        data = [int(v) for v in a.reshape(-1)]
    else:
        data = [bool(v) for v in a.reshape(-1)]
    return {"dtype": NAMES[kind], "shape": list(a.shape), "data": data}


def model(op, inputs, attrs, n_out, out_type):
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    outs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info(n, ONNX_TYPES[a.dtype.type], a.shape)
         for n, a in zip(names, inputs) if a is not None],
        [helper.make_tensor_value_info(o, ONNX_TYPES[out_type], None) for o in outs],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    feeds = {n: a for n, a in zip(names, inputs) if a is not None}
    return m, feeds


def agree(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.type is np.float32:
        return bool(np.allclose(a, b, rtol=TOL, atol=TOL))
    return bool(np.array_equal(a, b))


def case(name, op, inputs, attrs=None, n_out=1, follows=None, why=None, torch_check=None,
         out_type=None):
    """Runs one node both ways and records it. `follows` and `why` explain a case where the two
    disagree: "onnxruntime" where its answer is the spec's, "reference" where onnxruntime
    refuses the node; `torch_check`, a function returning torch's output, checks
    a torch pattern. The output's element type is `out_type`, or the first input's."""
    attrs = attrs or {}
    if out_type is None:
        out_type = next(a for a in inputs if a is not None).dtype.type
    m, feeds = model(op, inputs, attrs, n_out, out_type)
    try:
        ref = [np.asarray(o) for o in ReferenceEvaluator(m).run(None, feeds)]
    except Exception as e:  # noqa: BLE001 -- recorded, then judged below
        ref = e
    try:
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        rt = [np.asarray(o) for o in sess.run(None, feeds)]
    except Exception as e:  # noqa: BLE001 -- only allowed where the case says why
        if follows != "reference":
            raise
        rt = e
    same = not isinstance(ref, Exception) and not isinstance(rt, Exception) and all(
        agree(a, b) for a, b in zip(ref, rt))
    if follows == "reference":
        assert why and isinstance(rt, Exception), name
        expected = ref
    elif follows is None:
        if not same:
            raise SystemExit(f"{name}: the reference and onnxruntime disagree:\n{ref}\n{rt}")
        expected = ref
    else:
        assert follows == "onnxruntime" and why, name
        if same:
            raise SystemExit(f"{name}: marked as a disagreement, but both agree")
        expected = rt
    if torch_check is not None and torch is not None:
        want = np.asarray(torch_check())
        if not agree(want.astype(expected[0].dtype), expected[0]):
            raise SystemExit(f"{name}: torch computes\n{want}\nnot\n{expected[0]}")
        TORCH_CHECKED.append(name)
    entry = {
        "name": name,
        "op": op,
        "attrs": attrs,
        "inputs": [encode(a) for a in inputs],
        "outputs": [encode(o) for o in expected],
    }
    if follows:
        entry["follows"], entry["why"] = follows, why
    CASES.append(entry)


def tt(a):
    return torch.from_numpy(np.array(a))


# ----------------------------------------------------------------------------------------------
# Resize: inputs X, roi, scales, sizes
# ----------------------------------------------------------------------------------------------

def resize(name, x, attrs, scales=None, sizes=None, **kw):
    case(name, "Resize",
         [x, None, None if scales is None else fl(scales), None if sizes is None else i64(sizes)],
         attrs, **kw)


x = f32((1, 2, 2, 3))
resize("resize_nearest_default_x2", x, {}, scales=[1, 1, 2, 2])
resize("resize_nearest_asymmetric_floor_x2_torch_upsample", x,
       {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
       scales=[1, 1, 2, 2],
       torch_check=lambda: torch.nn.Upsample(scale_factor=2, mode="nearest")(tt(x)))
x = f32((1, 1, 5, 7))
resize("resize_nearest_half_pixel_prefer_ceil_down", x,
       {"nearest_mode": "round_prefer_ceil"}, scales=[1, 1, 0.6, 0.6])
resize("resize_nearest_align_corners_floor_sizes", x,
       {"coordinate_transformation_mode": "align_corners", "nearest_mode": "floor"},
       sizes=[1, 1, 3, 9])
resize("resize_nearest_asymmetric_ceil_x1_5", x,
       {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "ceil"},
       scales=[1, 1, 1.5, 1.5])
resize("resize_nearest_pytorch_half_pixel_prefer_floor_ties", f32((1, 1, 2, 4)),
       {"coordinate_transformation_mode": "pytorch_half_pixel"}, sizes=[1, 1, 1, 2])
resize("resize_nearest_half_pixel_symmetric", x,
       {"coordinate_transformation_mode": "half_pixel_symmetric"}, scales=[1, 1, 1.7, 0.7])
resize("resize_nearest_x3_rank3", f32((2, 1, 4)), {"coordinate_transformation_mode": "asymmetric"},
       scales=[1, 1, 3])
resize("resize_nearest_axes_negative_sizes", f32((2, 3, 4)), {"axes": [-1, -2]}, sizes=[6, 2],
       follows="onnxruntime", why="the reference implementation cannot take negative axes")

x = f32((1, 2, 3, 4))
# The attributes exactly as torch.onnx.export (dynamo, torch 2.15) writes them for
# F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False).
resize("resize_linear_half_pixel_x2_torch_bilinear", x,
       {"keep_aspect_ratio_policy": "stretch", "antialias": 0, "extrapolation_value": 0.0,
        "exclude_outside": 0, "nearest_mode": "floor", "coordinate_transformation_mode": "half_pixel",
        "cubic_coeff_a": -0.75, "mode": "linear"},
       scales=[1, 1, 2, 2],
       torch_check=lambda: torch.nn.functional.interpolate(
           tt(x), scale_factor=2, mode="bilinear", align_corners=False))
resize("resize_linear_pytorch_half_pixel_sizes_torch_bilinear", x,
       {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
       sizes=[1, 2, 5, 7],
       torch_check=lambda: torch.nn.functional.interpolate(
           tt(x), size=(5, 7), mode="bilinear", align_corners=False))
# pytorch_half_pixel is not what torch computes for an output of length 1 (torch samples the
# middle, as half_pixel does; torch's exporter writes half_pixel).
resize("resize_linear_pytorch_half_pixel_to_one", x,
       {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
       sizes=[1, 2, 1, 3])
resize("resize_linear_half_pixel_to_one_torch", x, {"mode": "linear"}, sizes=[1, 2, 1, 3],
       torch_check=lambda: torch.nn.functional.interpolate(
           tt(x), size=(1, 3), mode="bilinear", align_corners=False))
resize("resize_linear_align_corners_sizes_torch", x,
       {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, sizes=[1, 2, 5, 7],
       torch_check=lambda: torch.nn.functional.interpolate(
           tt(x), size=(5, 7), mode="bilinear", align_corners=True))
resize("resize_linear_asymmetric_down", f32((1, 1, 6, 8)),
       {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, scales=[1, 1, 0.5, 0.4])
resize("resize_linear_half_pixel_down_0_6", f32((1, 1, 5, 7)), {"mode": "linear"},
       scales=[1, 1, 0.6, 0.6])
resize("resize_linear_half_pixel_symmetric", f32((1, 1, 5, 7)),
       {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"},
       scales=[1, 1, 1.7, 0.7])
resize("resize_linear_1d", f32((2, 2, 5)), {"mode": "linear"}, scales=[1, 1, 2.5])
resize("resize_linear_3d_trilinear", f32((1, 2, 2, 3, 2)), {"mode": "linear"},
       scales=[1, 1, 2, 1.5, 2])
resize("resize_linear_axes_scales", f32((2, 2, 3, 3)), {"mode": "linear", "axes": [2, 3]},
       scales=[2, 1.5])
resize("resize_linear_every_axis_rank2", f32((3, 4)), {"mode": "linear"}, sizes=[5, 2])
resize("resize_linear_channel_axis", f32((1, 3, 2, 2)), {"mode": "linear"}, scales=[1, 2, 1, 1])
resize("resize_linear_exclude_outside_no_effect", f32((1, 1, 3, 3)),
       {"mode": "linear", "exclude_outside": 1}, scales=[1, 1, 2, 2],
       follows="reference",
       why="onnxruntime refuses exclude_outside=1 unless the mode is cubic or antialiased; for "
           "linear it changes nothing (an outside neighbour is one of weight 0 or the edge)")
resize("resize_linear_extrapolation_value_unused", f32((1, 1, 3, 3)),
       {"mode": "linear", "extrapolation_value": 7.0}, scales=[1, 1, 0.7, 1.3])
resize("resize_linear_not_larger", f32((1, 1, 4, 6)),
       {"mode": "linear", "keep_aspect_ratio_policy": "not_larger", "axes": [2, 3]},
       sizes=[6, 6])
resize("resize_linear_not_smaller", f32((1, 1, 4, 6)),
       {"mode": "linear", "keep_aspect_ratio_policy": "not_smaller", "axes": [2, 3]},
       sizes=[6, 6])
resize("resize_nearest_not_larger_rounds_half_up", f32((1, 1, 3, 5)),
       {"keep_aspect_ratio_policy": "not_larger", "axes": [2, 3]}, sizes=[5, 9])
resize("resize_linear_align_corners_fractional_scale", f32((1, 1, 5, 5)),
       {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
       scales=[1, 1, 1.5, 1.5],
       follows="onnxruntime",
       why="ONNX defines align_corners with length_resized, the output length (7 here); the "
           "reference implementation uses the fractional 5 * 1.5 = 7.5 instead")
resize("resize_identity_scales_one", f32((1, 2, 2, 2)), {"mode": "linear"}, scales=[1, 1, 1, 1])

# ----------------------------------------------------------------------------------------------
# ConvTranspose: inputs X, W, B
# ----------------------------------------------------------------------------------------------


def conv_t(name, x, w, b, attrs, **kw):
    case(name, "ConvTranspose", [x, w, b], attrs, **kw)


def torch_conv_t(x, w, b, **kw):
    def run():
        layer = torch.nn.functional.conv_transpose2d if x.ndim == 4 else (
            torch.nn.functional.conv_transpose1d if x.ndim == 3
            else torch.nn.functional.conv_transpose3d)
        return layer(tt(x), tt(w), None if b is None else tt(b), **kw)
    return run


x, w, b = f32((1, 3, 3, 4)), f32((3, 2, 2, 2)), f32((2,))
# The attributes exactly as torch.onnx.export (dynamo, torch 2.15) writes them for
# nn.ConvTranspose2d(3, 2, kernel_size=2, stride=2).
conv_t("conv_t_k2_s2_unet", x, w, b,
       {"group": 1, "auto_pad": "NOTSET", "strides": [2, 2], "pads": [0, 0, 0, 0],
        "output_padding": [0, 0], "dilations": [1, 1], "kernel_shape": [2, 2]},
       torch_check=torch_conv_t(x, w, b, stride=2))
x, w, b = f32((1, 2, 3, 3)), f32((2, 3, 3, 3)), f32((3,))
conv_t("conv_t_k3_s2_p1_op1", x, w, b,
       {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
       torch_check=torch_conv_t(x, w, b, stride=2, padding=1, output_padding=1))
x, w, b = f32((2, 4, 3, 3)), f32((4, 3, 3, 3)), f32((6,))
GROUPS = "the reference implementation fails on groups (a reshape error); torch agrees with onnxruntime"
conv_t("conv_t_groups_2", x, w, b, {"group": 2, "pads": [1, 1, 1, 1]},
       torch_check=torch_conv_t(x, w, b, groups=2, padding=1),
       follows="onnxruntime", why=GROUPS)
x, w = f32((1, 3, 4, 4)), f32((3, 1, 3, 3))
conv_t("conv_t_depthwise_s2", x, w, None, {"group": 3, "strides": [2, 2]},
       torch_check=torch_conv_t(x, w, None, groups=3, stride=2))
x, w, b = f32((1, 2, 3, 4)), f32((2, 2, 2, 3)), f32((2,))
conv_t("conv_t_dilations_asym_pads", x, w, b,
       {"dilations": [2, 1], "pads": [0, 1, 1, 0], "strides": [1, 2]})
x, w, b = f32((1, 2, 3, 3)), f32((2, 1, 3, 3)), f32((1,))
conv_t("conv_t_same_upper", x, w, b, {"strides": [2, 2], "auto_pad": "SAME_UPPER"})
conv_t("conv_t_same_lower", x, w, b, {"strides": [2, 2], "auto_pad": "SAME_LOWER"})
conv_t("conv_t_same_upper_output_padding", x, w, b,
       {"strides": [2, 2], "auto_pad": "SAME_UPPER", "output_padding": [1, 0]})
conv_t("conv_t_same_upper_k1_s2_negative_total", f32((1, 2, 3, 3)), f32((2, 1, 1, 1)), None,
       {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
       follows="onnxruntime",
       why="with a total padding of -1 (kernel 1, stride 2), onnxruntime and ONNX's shape "
           "inference pad nothing and give the product's length (5); the reference pads -1 at "
           "the start to reach input * stride (6), shifting the image")
conv_t("conv_t_valid", x, w, b, {"strides": [2, 2], "auto_pad": "VALID"})
conv_t("conv_t_output_shape_odd_total", x, w, b, {"strides": [2, 2], "output_shape": [6, 5]},
       follows="onnxruntime",
       why="the reference ignores output_shape unless auto_pad is SAME_*; onnxruntime derives "
           "the pads from it as the spec says (the odd one at the start)")
conv_t("conv_t_output_shape_larger", x, w, b, {"strides": [2, 2], "output_shape": [8, 7]})
x, w, b = f32((2, 2, 5)), f32((2, 3, 4)), f32((3,))
conv_t("conv_t_1d_s3", x, w, b, {"strides": [3], "pads": [1, 2]},
       torch_check=None)
x, w, b = f32((1, 2, 2, 3, 2)), f32((2, 2, 2, 2, 2)), f32((2,))
conv_t("conv_t_3d_k2_s2", x, w, b, {"strides": [2, 2, 2]},
       torch_check=torch_conv_t(x, w, b, stride=2))
x, w = f32((2, 3, 3, 2)), f32((3, 2, 2, 3))
conv_t("conv_t_batch2_rect_kernel_no_bias", x, w, None,
       {"strides": [1, 2], "kernel_shape": [2, 3]},
       torch_check=torch_conv_t(x, w, None, stride=(1, 2)))

# ----------------------------------------------------------------------------------------------
# InstanceNormalization: inputs X, scale, B
# ----------------------------------------------------------------------------------------------

case("instance_norm_rank4", "InstanceNormalization", [f32((2, 3, 2, 3)), f32((3,)), f32((3,))])
case("instance_norm_rank3_epsilon", "InstanceNormalization",
     [f32((1, 2, 5)), f32((2,)), f32((2,))], {"epsilon": 0.1})
case("instance_norm_rank5_constant_plane", "InstanceNormalization",
     [np.ones((1, 2, 2, 1, 2), np.float32), f32((2,)), f32((2,))])

# ----------------------------------------------------------------------------------------------
# Pad: inputs data, pads, constant_value, axes
# ----------------------------------------------------------------------------------------------

x = f32((2, 3))
case("pad_constant_value", "Pad", [x, i64([0, 2, 1, 0]), fl(1.5), None])
case("pad_constant_default", "Pad", [f32((1, 2, 2)), i64([0, 1, 1, 0, 0, 2]), None, None])
NEGATIVE = "the reference implementation (numpy.pad) cannot take negative pads"
case("pad_negative_crops", "Pad", [f32((3, 4)), i64([-1, 1, 0, -2]), None, None],
     follows="onnxruntime", why=NEGATIVE)
case("pad_reflect", "Pad", [f32((3, 4)), i64([2, 1, 1, 3]), None, None], {"mode": "reflect"})
case("pad_edge", "Pad", [f32((2, 3, 2)), i64([1, 0, 2, 0, 2, 1]), None, None], {"mode": "edge"})
case("pad_wrap", "Pad", [f32((3, 2)), i64([2, 1, 1, 1]), None, None], {"mode": "wrap"})
case("pad_wrap_beyond_size", "Pad", [f32((2, 3)), i64([0, 4, 0, 5]), None, None],
     {"mode": "wrap"})
case("pad_axes", "Pad", [f32((2, 3, 4)), i64([1, 2, 0, 1]), fl(-1.0), i64([2, 0])])
case("pad_axes_negative_reflect", "Pad", [f32((2, 3, 4)), i64([1, 2]), None, i64([-1])],
     {"mode": "reflect"})
case("pad_int64_constant", "Pad", [i64([[1, 2], [3, 4]]), i64([1, 0, 0, 1]), i64(9), None])
case("pad_int64_edge", "Pad", [i64([[1, 2], [3, 4]]), i64([1, 1, 1, 1]), None, None],
     {"mode": "edge"})
case("pad_negative_then_reflect", "Pad", [f32((5, 4)), i64([-1, 2, 1, -1]), None, None],
     {"mode": "reflect"}, follows="onnxruntime", why=NEGATIVE)

# ----------------------------------------------------------------------------------------------
# Tile, Expand, ConstantOfShape, Range
# ----------------------------------------------------------------------------------------------

case("tile_rank2", "Tile", [f32((2, 3)), i64([2, 3])])
case("tile_int64_rank3_ones", "Tile", [i64(np.arange(6).reshape(1, 2, 3)), i64([3, 1, 2])])
case("tile_zero_repeat", "Tile", [f32((2, 2)), i64([0, 2])])
case("expand_bidirectional", "Expand", [f32((3, 1)), i64([2, 1, 4])])
case("expand_shape_smaller_rank", "Expand", [f32((2, 3)), i64([3])])
case("expand_ones_keep_input", "Expand", [f32((2, 1, 3)), i64([1, 4, 1])])
case("expand_int64", "Expand", [i64([[5], [6]]), i64([2, 3])])
case("expand_bool", "Expand", [np.array([True, False]), i64([3, 2])])


def const_of_shape(name, shape, value):
    attrs = {} if value is None else {"value": onnx.numpy_helper.from_array(value)}
    out_type = np.float32 if value is None else value.dtype.type
    case(name, "ConstantOfShape", [i64(shape)], attrs, out_type=out_type)
    if value is not None:  # the tensor attribute as the nnsign schema writes it
        kind = {np.float32: "value_float", np.int64: "value_int", np.bool_: "value_bool"}
        v = value.reshape(-1)[0]
        CASES[-1]["attrs"] = {kind[value.dtype.type]: v.item() if value.dtype.type is not np.bool_
                              else int(v)}


const_of_shape("constant_of_shape_default", [2, 3], None)
const_of_shape("constant_of_shape_f32", [3, 1, 2], fl([2.5]))
const_of_shape("constant_of_shape_i64", [4], i64([-7]))
const_of_shape("constant_of_shape_bool", [2, 2], np.array([True]))
const_of_shape("constant_of_shape_zero_dim", [2, 0], fl([1.0]))
const_of_shape("constant_of_shape_scalar", [], i64([3]))

case("range_f32", "Range", [fl(1.0), fl(5.0), fl(0.5)])
case("range_f32_fractional_count", "Range", [fl(0.0), fl(1.0), fl(0.3)])
case("range_f32_negative_delta", "Range", [fl(2.0), fl(-1.5), fl(-0.75)])
case("range_f32_empty", "Range", [fl(3.0), fl(1.0), fl(1.0)])
case("range_i64", "Range", [i64(3), i64(9), i64(3)])
case("range_i64_negative", "Range", [i64(10), i64(4), i64(-2)])
case("range_i64_uneven", "Range", [i64(-3), i64(4), i64(2)])

# ----------------------------------------------------------------------------------------------
# Split: inputs input, split; several outputs
# ----------------------------------------------------------------------------------------------

case("split_num_outputs_even", "Split", [f32((2, 6)), None], {"axis": 1, "num_outputs": 3},
     n_out=3)
case("split_num_outputs_uneven", "Split", [f32((5, 2)), None], {"num_outputs": 3}, n_out=3)
case("split_sizes", "Split", [f32((2, 7)), i64([2, 0, 5])], {"axis": -1}, n_out=3)
case("split_int64_axis0", "Split", [i64(np.arange(12).reshape(4, 3)), i64([1, 3])], n_out=2)

# ----------------------------------------------------------------------------------------------
# Where: inputs condition, X, Y
# ----------------------------------------------------------------------------------------------

cond = np.array([[True, False, True]])
case("where_three_way_broadcast", "Where", [cond, f32((2, 1)), f32((2, 2, 3))],
     out_type=np.float32)
case("where_same_shape", "Where", [RNG.uniform(size=(2, 3)) > 0.5, f32((2, 3)), f32((2, 3))],
     out_type=np.float32)
case("where_int64_scalar_y", "Where", [np.array([True, False, False, True]),
                                       i64([1, 2, 3, 4]), i64(-1)], out_type=np.int64)
case("where_bool_values", "Where", [np.array([[True], [False]]), np.array([True, False]),
                                    np.array([[False, False]])],
     follows="reference", why="onnxruntime's CPU provider has no Where for boolean values")

os.makedirs(os.path.dirname(OUT), exist_ok=True)
about = (
    "Reference cases for nnsign's vision and layout ops, written by "
    "scripts/make_vision_reference.py with onnx " + onnx.__version__
    + " (ReferenceEvaluator) and cross-checked with onnxruntime " + ort.__version__
    + ("" if torch is None else " and, for the cases named in torch_checked, torch " + torch.__version__)
    + ". Floats agree within 1e-5; integers and booleans exactly."
)
with open(OUT, "w") as f:
    json.dump({"about": about, "torch_checked": TORCH_CHECKED, "cases": CASES}, f, indent=None,
              separators=(",", ":"))
    f.write("\n")
print(f"{len(CASES)} cases ({len(TORCH_CHECKED)} checked against torch) -> {OUT}")
