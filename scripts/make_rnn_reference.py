#!/usr/bin/env python3
"""Writes tests/fixtures/ops3/rnn.json: reference cases for nnsign's ONNX LSTM and GRU
(src/ops/rnn.rs), op-set 22 semantics.

Each case is one LSTM or GRU node with small float32 inputs, its attributes and the expected
outputs (Y, Y_h, and Y_c for an LSTM). Three independent implementations compute them:

  reference    onnx.reference.ReferenceEvaluator, which ignores sequence_lens, clip,
               activations and input_forget: used only for cases without them;
  onnxruntime  the CPU provider, which refuses layout 1: such cases run with X and the states
               transposed to layout 0, and the outputs transposed back;
  numpy        the ONNX equations below, in float64.

The expected values are the reference's where it applies, else onnxruntime's; every case is
checked against every implementation that applies to 1e-5, and the script fails otherwise.
An item of sequence length 0 gets zero Y_h and Y_c, as onnxruntime gives (ONNX does not say).

Run from the repository root:  python3 scripts/make_rnn_reference.py
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

OUT = "tests/fixtures/ops3/rnn.json"
OPSET = 22
TOL = 1e-5
INPUTS = {
    "LSTM": ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"],
    "GRU": ["X", "W", "R", "B", "sequence_lens", "initial_h"],
}
OUTPUTS = {"LSTM": ["Y", "Y_h", "Y_c"], "GRU": ["Y", "Y_h"]}
DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


# ------------------------------------------------------------------------------------------
# numpy, float64, straight from the ONNX operator docs
# ------------------------------------------------------------------------------------------

ACT = {
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "Tanh": np.tanh,
    "Relu": lambda x: np.maximum(x, 0.0),
}


def numpy_rnn(op, attrs, ins):
    hs = attrs["hidden_size"]
    direction = attrs.get("direction", "forward")
    layout = attrs.get("layout", 0)
    clip = attrs.get("clip")
    g = {k: None if v is None else np.asarray(v, np.float64) for k, v in ins.items()}
    x, h0, c0 = g["X"], g.get("initial_h"), g.get("initial_c")
    if layout == 1:
        x = x.transpose(1, 0, 2)
        h0 = None if h0 is None else h0.transpose(1, 0, 2)
        c0 = None if c0 is None else c0.transpose(1, 0, 2)
    seq, batch, _ = x.shape
    dirs = 2 if direction == "bidirectional" else 1
    per = 3 if op == "LSTM" else 2
    acts = attrs.get("activations", DEFAULT_ACTS[op] * dirs)
    lens = ins.get("sequence_lens")
    lens = [seq] * batch if lens is None else [int(v) for v in lens]
    bound = (lambda v: np.clip(v, -clip, clip)) if clip is not None else (lambda v: v)
    y = np.zeros((seq, dirs, batch, hs))
    y_h = np.zeros((dirs, batch, hs))
    y_c = np.zeros((dirs, batch, hs))
    ngates = 4 if op == "LSTM" else 3
    for d in range(dirs):
        f, gg, hh = [ACT[a] for a in acts[per * d:per * d + per]] + [None] * (3 - per)
        w, r = g["W"][d], g["R"][d]
        b = g["B"][d] if g.get("B") is not None else np.zeros(2 * ngates * hs)
        wb, rb = b[:ngates * hs], b[ngates * hs:]
        reverse = direction == "reverse" or d == 1
        for n in range(batch):
            h = h0[d, n].copy() if h0 is not None else np.zeros(hs)
            c = c0[d, n].copy() if c0 is not None else np.zeros(hs)
            steps = range(lens[n] - 1, -1, -1) if reverse else range(lens[n])
            for t in steps:
                xw = w @ x[t, n] + wb
                if op == "LSTM":
                    p = g["P"][d] if g.get("P") is not None else np.zeros(3 * hs)
                    pre = xw + r @ h + rb
                    i, o, fg, cc = np.split(pre, 4)
                    i = f(bound(i + p[:hs] * c))
                    if attrs.get("input_forget", 0):
                        fg = 1.0 - i
                    else:
                        fg = f(bound(fg + p[2 * hs:] * c))
                    c = fg * c + i * gg(bound(cc))
                    o = f(bound(o + p[hs:2 * hs] * c))
                    h = o * hh(c)
                else:
                    z = f(bound(xw[:hs] + r[:hs] @ h + rb[:hs]))
                    rg = f(bound(xw[hs:2 * hs] + r[hs:2 * hs] @ h + rb[hs:2 * hs]))
                    if attrs.get("linear_before_reset", 0):
                        cand = xw[2 * hs:] + rg * (r[2 * hs:] @ h + rb[2 * hs:])
                    else:
                        cand = xw[2 * hs:] + r[2 * hs:] @ (rg * h) + rb[2 * hs:]
                    h = (1.0 - z) * gg(bound(cand)) + z * h
                y[t, d, n] = h
            if lens[n] > 0:
                y_h[d, n], y_c[d, n] = h, c
    outs = [y, y_h, y_c][:len(OUTPUTS[op])]
    if layout == 1:
        outs = [outs[0].transpose(2, 0, 1, 3)] + [o.transpose(1, 0, 2) for o in outs[1:]]
    return outs


# ------------------------------------------------------------------------------------------
# onnx reference and onnxruntime
# ------------------------------------------------------------------------------------------

def model(op, attrs, ins):
    names, infos = [], []
    for k in INPUTS[op]:
        v = ins.get(k)
        if v is None:
            names.append("")
            continue
        names.append(k)
        dtype = TensorProto.INT32 if v.dtype == np.int32 else TensorProto.FLOAT
        infos.append(helper.make_tensor_value_info(k, dtype, v.shape))
    while names and names[-1] == "":
        names.pop()
    outs = OUTPUTS[op]
    node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph(
        [node], "rnn", infos,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * (4 if o == "Y" else 3))
         for o in outs])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    return m


def feeds(ins):
    return {k: v for k, v in ins.items() if v is not None}


def reference_applies(op, attrs, ins):
    return (ins.get("sequence_lens") is None and "clip" not in attrs
            and "activations" not in attrs and not attrs.get("input_forget", 0))


def run_reference(op, attrs, ins):
    return ReferenceEvaluator(model(op, attrs, ins)).run(None, feeds(ins))


def run_ort(op, attrs, ins):
    attrs, ins = dict(attrs), dict(ins)
    layout = attrs.pop("layout", 0)
    if layout == 1:
        for k in ("X", "initial_h", "initial_c"):
            if ins.get(k) is not None:
                ins[k] = np.ascontiguousarray(ins[k].transpose(1, 0, 2))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(model(op, attrs, ins).SerializeToString(), opts,
                             providers=["CPUExecutionProvider"])
    outs = s.run(None, feeds(ins))
    if layout == 1:
        outs = [outs[0].transpose(2, 0, 1, 3)] + [o.transpose(1, 0, 2) for o in outs[1:]]
    return outs


# ------------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------------

CASES = []


def case(name, op, attrs, seq, batch, inp, seed, bias=True, states=False, peep=False,
         lens=None, scale=0.6):
    hs = attrs["hidden_size"]
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    ngates = 4 if op == "LSTM" else 3
    rng = np.random.default_rng(seed)

    def rand(*shape, s=scale):
        return (rng.uniform(-1, 1, shape) * s).astype(np.float32)

    x_shape = (batch, seq, inp) if attrs.get("layout", 0) else (seq, batch, inp)
    s_shape = (batch, dirs, hs) if attrs.get("layout", 0) else (dirs, batch, hs)
    ins = {
        "X": rand(*x_shape, s=2.0),
        "W": rand(dirs, ngates * hs, inp),
        "R": rand(dirs, ngates * hs, hs),
        "B": rand(dirs, 2 * ngates * hs) if bias else None,
        "sequence_lens": None if lens is None else np.array(lens, np.int32),
        "initial_h": rand(*s_shape, s=1.0) if states else None,
    }
    if op == "LSTM":
        ins["initial_c"] = rand(*s_shape, s=1.5) if states else None
        ins["P"] = rand(dirs, 3 * hs) if peep else None
    CASES.append((name, op, attrs, ins))


# LSTM
case("lstm_forward", "LSTM", {"hidden_size": 3}, 4, 2, 3, 1, bias=False)
case("lstm_forward_bias_states", "LSTM", {"hidden_size": 4}, 5, 3, 2, 2, states=True)
case("lstm_reverse", "LSTM", {"hidden_size": 3, "direction": "reverse"}, 4, 2, 3, 3,
     states=True)
case("lstm_bidirectional_peepholes", "LSTM", {"hidden_size": 3, "direction": "bidirectional"},
     4, 3, 2, 4, states=True, peep=True)
case("lstm_bidirectional_no_bias", "LSTM", {"hidden_size": 2, "direction": "bidirectional"},
     3, 2, 4, 5, bias=False)
case("lstm_sequence_lens", "LSTM", {"hidden_size": 3, "direction": "bidirectional"},
     5, 4, 2, 6, states=True, peep=True, lens=[5, 3, 0, 1])
case("lstm_layout1", "LSTM", {"hidden_size": 3, "direction": "bidirectional", "layout": 1},
     4, 3, 2, 7, states=True)
case("lstm_layout1_sequence_lens", "LSTM", {"hidden_size": 2, "direction": "reverse",
                                            "layout": 1}, 4, 3, 3, 8, states=True,
     lens=[2, 4, 1])
case("lstm_clip_input_forget", "LSTM", {"hidden_size": 3, "clip": 0.7, "input_forget": 1},
     5, 2, 3, 9, states=True, peep=True, scale=1.5)
case("lstm_activations", "LSTM", {"hidden_size": 3, "direction": "bidirectional",
                                  "activations": ["Sigmoid", "Relu", "Tanh",
                                                  "Sigmoid", "Tanh", "Relu"]},
     3, 2, 3, 10, states=True)
# GRU
case("gru_forward", "GRU", {"hidden_size": 3}, 4, 2, 3, 11, bias=False)
case("gru_forward_bias_states", "GRU", {"hidden_size": 4}, 5, 3, 2, 12, states=True)
case("gru_linear_before_reset", "GRU", {"hidden_size": 4, "linear_before_reset": 1},
     5, 3, 2, 13, states=True)
case("gru_reverse_linear_before_reset", "GRU", {"hidden_size": 3, "direction": "reverse",
                                                "linear_before_reset": 1}, 4, 2, 3, 14)
case("gru_bidirectional", "GRU", {"hidden_size": 3, "direction": "bidirectional"},
     4, 3, 2, 15, states=True)
case("gru_bidirectional_linear_before_reset", "GRU",
     {"hidden_size": 3, "direction": "bidirectional", "linear_before_reset": 1},
     4, 3, 2, 16, states=True)
case("gru_sequence_lens", "GRU", {"hidden_size": 3, "direction": "bidirectional"},
     5, 4, 2, 17, states=True, lens=[5, 0, 2, 4])
case("gru_sequence_lens_linear_before_reset", "GRU",
     {"hidden_size": 2, "direction": "bidirectional", "linear_before_reset": 1},
     4, 3, 3, 18, lens=[1, 4, 3])
case("gru_layout1", "GRU", {"hidden_size": 3, "direction": "bidirectional", "layout": 1,
                            "linear_before_reset": 1}, 4, 3, 2, 19, states=True)
case("gru_layout1_sequence_lens", "GRU", {"hidden_size": 3, "layout": 1}, 4, 3, 2, 20,
     states=True, lens=[3, 0, 4])
case("gru_clip", "GRU", {"hidden_size": 3, "clip": 0.5, "direction": "reverse"},
     4, 2, 3, 21, states=True, scale=1.5)
case("gru_clip_linear_before_reset", "GRU", {"hidden_size": 3, "clip": 0.5,
                                             "linear_before_reset": 1}, 4, 2, 3, 22,
     states=True, scale=1.5)
case("gru_activations", "GRU", {"hidden_size": 3, "activations": ["Sigmoid", "Relu"]},
     4, 2, 3, 23, states=True)


def as_json(a):
    a = np.asarray(a)
    if a.dtype.kind in "iu":
        data = [int(v) for v in a.ravel()]
    else:
        # 9 significant digits round-trip float32.
        data = [float(f"{float(v):.9g}") for v in a.astype(np.float32).ravel()]
    return {"shape": list(a.shape), "data": data}


def main():
    out = []
    for name, op, attrs, ins in CASES:
        results = {"numpy": numpy_rnn(op, attrs, ins), "onnxruntime": run_ort(op, attrs, ins)}
        if reference_applies(op, attrs, ins):
            results["reference"] = run_reference(op, attrs, ins)
        source = "reference" if "reference" in results else "onnxruntime"
        expected = results[source]
        for other, got in results.items():
            for o, e, g in zip(OUTPUTS[op], expected, got):
                diff = float(np.max(np.abs(np.asarray(e, np.float64) - g), initial=0.0))
                if diff > TOL:
                    raise SystemExit(f"{name}: {o} from {source} and {other} differ by {diff}")
        y = np.asarray(expected[0])
        if np.count_nonzero(y) < y.size // 2 and ins.get("sequence_lens") is None:
            raise SystemExit(f"{name}: Y is mostly zero; the case tests little")
        # Each setting a case is about must change its outputs, or the case tests nothing.
        for key in ("clip", "activations", "input_forget", "linear_before_reset"):
            if key in attrs:
                plain = {k: v for k, v in attrs.items() if k != key}
                moved = max(float(np.max(np.abs(a - b))) for a, b in
                            zip(numpy_rnn(op, plain, ins), numpy_rnn(op, attrs, ins)))
                if moved < 1e-3:
                    raise SystemExit(f"{name}: {key} changes the outputs by only {moved}")
        out.append({
            "name": name,
            "op": op,
            "attrs": attrs,
            "inputs": {k: as_json(v) for k, v in ins.items() if v is not None},
            "outputs": {o: as_json(v) for o, v in zip(OUTPUTS[op], expected)},
            "source": source,
            "checked_against": sorted(k for k in results if k != source),
        })
        print(f"{name}: {source}, checked against {', '.join(out[-1]['checked_against'])}")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({
            "about": "ONNX LSTM and GRU reference cases for src/ops/rnn.rs, written by "
                     "scripts/make_rnn_reference.py (onnx " + onnx.__version__
                     + ", onnxruntime " + ort.__version__ + ", op-set " + str(OPSET) + ")",
            "tolerance": TOL,
            "cases": out,
        }, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(out)} cases to {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
